// The non-coherence simulator itself (src/region/cache_sim.h): what a host
// of a CXL 2.0 pool sees when it forgets a flush or an invalidate. Hosts are
// CacheSims over one shared mapping, in one process or in forked ones.
#include "region/cache_sim.h"

#include <gtest/gtest.h>

#include "nc_util.h"
#include "region/cache_lines.h"

namespace gismo::region {
namespace {

using gismo::testing::Killed;
using gismo::testing::RunChild;
using gismo::testing::SharedMemory;

constexpr uint64_t kSize = 64 * 1024;

CacheSimOptions Checked(const SharedMemory& m, uint64_t seed = 1) {
  CacheSimOptions o;
  o.seed = seed;
  o.versions = m.versions();
  return o;
}

TEST(CacheSimTest, ReadWithoutInvalidateIsStale) {
  SharedMemory m(kSize);
  CacheSim a(m.base(), kSize, Checked(m)), b(m.base(), kSize, Checked(m));
  uint64_t* x = m.word(8);
  EXPECT_EQ(a.Load(x), 0u);  // a caches the line
  b.Store(x, 42);
  EXPECT_EQ(*x, 0u) << "a store stays in the writer's cache until flushed";
  b.Flush(x, 8);
  EXPECT_EQ(*x, 42u);
  EXPECT_EQ(a.Load(x), 0u) << "a's cached copy is stale";
  ASSERT_EQ(a.stale_reads().size(), 1u);
  EXPECT_EQ(a.stale_reads()[0].offset, 64u);
  a.Invalidate(x, 8);
  EXPECT_EQ(a.Load(x), 42u);
  EXPECT_EQ(a.stale_reads().size(), 1u) << "no stale read after the invalidate";
  EXPECT_TRUE(b.conflicting_writes().empty());
}

TEST(CacheSimTest, FlushKeepsTheLineCleanInvalidateDropsIt) {
  SharedMemory m(kSize);
  CacheSim a(m.base(), kSize, {});
  uint64_t* x = m.word(0);
  a.Store(x, 1);
  EXPECT_TRUE(a.Dirty(x));
  a.Flush(x, 8);
  EXPECT_TRUE(a.Cached(x));
  EXPECT_FALSE(a.Dirty(x));
  a.Store(x, 2);
  a.Invalidate(x, 8);  // CLFLUSHOPT writes a dirty line back first
  EXPECT_FALSE(a.Cached(x));
  EXPECT_EQ(*x, 2u);
}

TEST(CacheSimTest, DroppedDirtyLinesAreLost) {
  SharedMemory m(kSize);
  CacheSim a(m.base(), kSize, {});
  a.Store(m.word(0), 1);
  a.Store(m.word(8), 2);
  a.Flush(m.word(8), 8);
  a.DropDirty();
  EXPECT_EQ(*m.word(0), 0u);
  EXPECT_EQ(*m.word(8), 2u);
  EXPECT_EQ(a.stats().dropped_dirty, 1u);
}

// The host is a real process killed by SIGKILL: its private cache dies
// with it, so what it did not flush never reaches memory.
TEST(CacheSimTest, KilledProcessLosesUnflushedWrites) {
  SharedMemory m(kSize);
  const int status = RunChild([&] {
    CacheSim sim(m.base(), kSize, {});
    sim.Store(m.word(0), 11);  // never flushed
    sim.Store(m.word(8), 22);
    sim.Flush(m.word(8), 8);
    sim.Store(m.word(16), 33);
    sim.Invalidate(m.word(16), 8);  // written back, as CLFLUSHOPT does
    raise(SIGKILL);
  });
  ASSERT_TRUE(Killed(status));
  EXPECT_EQ(*m.word(0), 0u);
  EXPECT_EQ(*m.word(8), 22u);
  EXPECT_EQ(*m.word(16), 33u);
}

TEST(CacheSimTest, FlushThenInvalidateCrossesProcesses) {
  SharedMemory m(kSize);
  CacheSim reader(m.base(), kSize, Checked(m));
  uint64_t* x = m.word(24);
  EXPECT_EQ(reader.Load(x), 0u);
  ASSERT_EQ(RunChild([&] {
              CacheSim writer(m.base(), kSize, Checked(m, 2));
              writer.Store(x, 7);
              writer.Flush(x, 8);
            }),
            0);
  EXPECT_EQ(reader.Load(x), 0u) << "no invalidate: the reader's copy is stale";
  EXPECT_EQ(reader.stale_reads().size(), 1u);
  reader.Invalidate(x, 8);
  EXPECT_EQ(reader.Load(x), 7u);
}

// Two hosts writing different words of one line: each write-back carries
// the whole line, so one host's word is lost, and the checker says so.
TEST(CacheSimTest, TwoWritersOfOneLineLoseAWrite) {
  SharedMemory m(kSize);
  CacheSim a(m.base(), kSize, Checked(m)), b(m.base(), kSize, Checked(m, 2));
  a.Store(m.word(0), 1);
  b.Store(m.word(1), 2);
  a.Flush(m.word(0), 8);
  b.Flush(m.word(1), 8);
  EXPECT_EQ(*m.word(0), 0u) << "b's write-back overwrote a's word with b's stale copy";
  EXPECT_EQ(*m.word(1), 2u);
  EXPECT_TRUE(a.conflicting_writes().empty());
  ASSERT_EQ(b.conflicting_writes().size(), 1u);
  EXPECT_EQ(b.conflicting_writes()[0].offset, 0u);
}

// Random early write-backs: an unflushed store *may* reach memory (so a
// protocol cannot rely on a write staying private either).
TEST(CacheSimTest, EarlyWriteBacksAndEvictions) {
  SharedMemory m(kSize);
  CacheSimOptions o;
  o.early_writeback_ppm = 1000000;  // at every access
  CacheSim a(m.base(), kSize, o);
  a.Store(m.word(0), 5);
  EXPECT_EQ(*m.word(0), 0u);
  a.Load(m.word(64));  // any access may write a dirty line back
  EXPECT_EQ(*m.word(0), 5u);
  EXPECT_EQ(a.stats().early_write_backs, 1u);

  CacheSimOptions small;
  small.capacity_lines = 2;
  CacheSim b(m.base(), kSize, small);
  b.Store(m.word(8 * 10), 1);
  b.Store(m.word(8 * 11), 2);
  b.Store(m.word(8 * 12), 3);  // the cache is full: one line is evicted
  EXPECT_EQ(b.stats().evictions, 1u);
  // The victim (line 10 or 11) was written back and left the cache.
  EXPECT_NE(b.Cached(m.word(80)), b.Cached(m.word(88)));
  EXPECT_EQ((*m.word(80) != 0) + (*m.word(88) != 0), 1);
  EXPECT_TRUE(b.Cached(m.word(96)));
}

// The seeded chaos is reproducible: the same seed, the same write-backs.
TEST(CacheSimTest, SeededChaosIsReproducible) {
  auto run = [](uint64_t seed) {
    SharedMemory m(kSize);
    CacheSimOptions o;
    o.seed = seed;
    o.capacity_lines = 16;
    o.evict_ppm = 200000;
    o.early_writeback_ppm = 200000;
    CacheSim a(m.base(), kSize, o);
    for (uint64_t i = 0; i < 2000; ++i) a.Store(m.word((i * 37) % (kSize / 8)), i + 1);
    uint64_t sum = 0;
    for (uint64_t i = 0; i < kSize / 8; ++i) sum = sum * 31 + *m.word(i);
    return std::pair(sum, a.stats().write_backs);
  };
  EXPECT_EQ(run(3), run(3));
  EXPECT_NE(run(3), run(4));
}

// The hardware primitives run (their effect cannot be observed on a
// coherent machine; bench/nc_bench.cc prints their cost).
TEST(CacheLinesTest, FlushAndInvalidateRunOnThisCpu) {
  alignas(64) uint64_t buf[64] = {};
  buf[0] = 1;
  FlushLines(buf, sizeof(buf));
  InvalidateLines(buf, sizeof(buf));
  FlushLines(buf, 0);
  EXPECT_EQ(buf[0], 1u);
#if defined(__x86_64__)
  EXPECT_TRUE(NonCoherentSupported());
  EXPECT_NE(FlushInstruction(), FlushInsn::kNone);
  EXPECT_NE(InvalidateInstruction(), FlushInsn::kClwb) << "CLWB does not invalidate";
#endif
}

}  // namespace
}  // namespace gismo::region
