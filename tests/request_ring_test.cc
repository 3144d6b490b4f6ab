// The SPSC request ring (src/region/request_ring.h) under the non-coherence
// simulator: delivery in order with random early write-backs and evictions,
// a producer killed at every line operation, a torn entry rejected, and
// the demonstration that removing one flush or one invalidate breaks it.
#include "region/request_ring.h"

#include <gtest/gtest.h>

#include <thread>

#include "nc_util.h"
#include "region/cache_lines.h"
#include "region/cache_sim.h"

namespace gismo::region {
namespace {

using gismo::testing::Chaotic;
using gismo::testing::Killed;
using gismo::testing::RunChild;
using gismo::testing::SharedMemory;
using gismo::testing::SteppedLines;

constexpr uint64_t kSeal = 0x5e55107;  // both ends' session

RequestPayload PayloadOf(uint64_t n, uint64_t salt = 0) {
  RequestPayload p;
  for (uint32_t i = 0; i < kRequestPayloadWords; ++i) p.w[i] = n * 1000 + i + salt;
  return p;
}

// Pops the next request, which must be request n with PayloadOf(n, salt).
template <typename Lines>
void ExpectPop(RequestConsumer<Lines>& c, uint64_t n, uint64_t salt = 0) {
  RequestPayload got;
  ASSERT_EQ(c.Pop(&got), PopResult::kRequest) << "request " << n;
  const RequestPayload want = PayloadOf(n, salt);
  for (uint32_t i = 0; i < kRequestPayloadWords; ++i) ASSERT_EQ(got.w[i], want.w[i]);
}

TEST(RequestRingTest, DeliversInOrderUnderChaos) {
  constexpr uint32_t kCap = 4;
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    SharedMemory m(RequestRingBytes(kCap));
    CacheSim ps(m.base(), m.size(), Chaotic(m, seed)), cs(m.base(), m.size(), Chaotic(m, ~seed));
    RequestProducer<CacheSim> p(ps, m.base(), kCap, kSeal);
    RequestConsumer<CacheSim> c(cs, m.base(), kCap, kSeal);
    ASSERT_TRUE(p.Attach());
    c.Attach();
    uint64_t pushed = 0, popped = 0;
    uint64_t r = seed;
    while (popped < 500) {
      r = r * 6364136223846793005ull + 1442695040888963407ull;
      for (uint64_t k = (r >> 33) % 6; k > 0 && p.TryPush(PayloadOf(pushed + 1)); --k) ++pushed;
      for (uint64_t k = (r >> 40) % 6; k > 0 && popped < pushed; --k) {
        ExpectPop(c, ++popped);
        if (::testing::Test::HasFatalFailure()) return;
      }
    }
    RequestPayload none;
    if (popped == pushed) {
      EXPECT_EQ(c.Pop(&none), PopResult::kEmpty);
    }
    EXPECT_TRUE(ps.stale_reads().empty());
    EXPECT_TRUE(cs.stale_reads().empty()) << "the consumer read a line without invalidating it";
    EXPECT_TRUE(ps.conflicting_writes().empty());
    EXPECT_TRUE(cs.conflicting_writes().empty()) << "a line has two writers";
  }
}

// Two threads, each a host with its own simulated cache.
TEST(RequestRingTest, TwoThreadsUnderChaos) {
  constexpr uint32_t kCap = 8;
  constexpr uint64_t kRequests = 20000;
  SharedMemory m(RequestRingBytes(kCap));
  CacheSim ps(m.base(), m.size(), Chaotic(m, 7)), cs(m.base(), m.size(), Chaotic(m, 8));
  RequestProducer<CacheSim> p(ps, m.base(), kCap, kSeal);
  RequestConsumer<CacheSim> c(cs, m.base(), kCap, kSeal);
  ASSERT_TRUE(p.Attach());
  c.Attach();
  std::thread producer([&] {
    for (uint64_t n = 1; n <= kRequests; ++n) {
      while (!p.TryPush(PayloadOf(n))) std::this_thread::yield();
    }
  });
  uint64_t bad = 0;
  for (uint64_t n = 1; n <= kRequests && bad == 0;) {
    RequestPayload got;
    switch (c.Pop(&got)) {
      case PopResult::kEmpty:
        std::this_thread::yield();
        break;
      case PopResult::kCorrupt:
        bad = n;
        break;
      case PopResult::kRequest:
        if (got.w[0] != PayloadOf(n).w[0]) bad = n;
        ++n;
        break;
    }
  }
  producer.join();
  EXPECT_EQ(bad, 0u);
  EXPECT_TRUE(cs.stale_reads().empty());
  EXPECT_TRUE(cs.conflicting_writes().empty());
  EXPECT_TRUE(ps.conflicting_writes().empty());
}

// The same on the real primitives (coherent here, so this checks the code
// path and the memory-ordering contract, not non-coherence).
TEST(RequestRingTest, TwoThreadsOnHardwareLines) {
  constexpr uint32_t kCap = 64;
  constexpr uint64_t kRequests = 100000;
  SharedMemory m(RequestRingBytes(kCap));
  HwLines hw;
  RequestProducer<HwLines> p(hw, m.base(), kCap, kSeal);
  RequestConsumer<HwLines> c(hw, m.base(), kCap, kSeal);
  ASSERT_TRUE(p.Attach());
  c.Attach();
  std::thread producer([&] {
    for (uint64_t n = 1; n <= kRequests; ++n) {
      while (!p.TryPush(PayloadOf(n))) std::this_thread::yield();
    }
  });
  uint64_t bad = 0;
  for (uint64_t n = 1; n <= kRequests && bad == 0;) {
    RequestPayload got;
    const PopResult r = c.Pop(&got);
    if (r == PopResult::kEmpty) {
      std::this_thread::yield();
    } else if (r == PopResult::kCorrupt || got.w[5] != PayloadOf(n).w[5]) {
      bad = n;
    } else {
      ++n;
    }
  }
  producer.join();
  EXPECT_EQ(bad, 0u);
}

// The ring's crash-point sweep: a producer host killed at each of its line
// operations (DyingLines).
TEST(RequestRingTest, ProducerKilledAtEveryLineOperation) {
  constexpr uint32_t kCap = 2;
  constexpr uint64_t kFirst = 3;  // requests the dying producer tries
  bool survived = false;
  uint64_t k = 0;
  for (; !survived; ++k) {
    ASSERT_LT(k, 200u);
    SharedMemory m(RequestRingBytes(kCap));
    CacheSim cs(m.base(), m.size(), Chaotic(m, k + 100));
    RequestConsumer<CacheSim> c(cs, m.base(), kCap, kSeal);
    uint64_t popped = 0;
    // The producer runs in a child that dies at its k-th line operation;
    // a stand-in consumer moves head so that the 2-entry ring wraps.
    const int status = RunChild([&] {
      CacheSim ps(m.base(), m.size(), Chaotic(m, k));
      SteppedLines dl = gismo::testing::DyingLines(ps, k);
      RequestProducer<SteppedLines> p(dl, m.base(), kCap, kSeal);
      if (!p.Attach()) _exit(3);
      for (uint64_t n = 1; n <= kFirst; ++n) {
        if (n > kCap) {
          // Stand in for the consumer: pretend head moved (it is read, never
          // written, by the producer), so the producer never waits.
          __atomic_store_n(&reinterpret_cast<RequestRingHeader*>(m.base())->head.value, n - kCap,
                           __ATOMIC_RELAXED);
        }
        if (!p.TryPush(PayloadOf(n))) _exit(4);
      }
    });
    survived = !Killed(status);
    if (survived) {
      ASSERT_EQ(status, 0);
    }
    // The consumer takes up where the stand-in left head, and drains: every
    // request memory says was published arrives whole, in order.
    const auto* hdr = reinterpret_cast<const RequestRingHeader*>(m.base());
    const uint64_t tail = hdr->tail.value;
    ASSERT_LE(tail, kFirst);
    c.Attach();
    popped = c.head();
    ASSERT_LE(popped, tail);
    RequestPayload got;
    PopResult r;
    while ((r = c.Pop(&got)) == PopResult::kRequest) {
      ++popped;
      ASSERT_EQ(got.w[0], PayloadOf(popped).w[0]) << "k=" << k;
    }
    ASSERT_EQ(r, PopResult::kEmpty) << "k=" << k << ": a published entry did not validate";
    ASSERT_EQ(popped, tail);
    if (survived) {
      EXPECT_EQ(tail, kFirst);
    }
    // A restarted producer takes up from memory and its requests arrive.
    CacheSim ps2(m.base(), m.size(), Chaotic(m, k + 200));
    RequestProducer<CacheSim> p2(ps2, m.base(), kCap, kSeal);
    ASSERT_TRUE(p2.Attach());
    EXPECT_EQ(p2.tail(), tail);
    ASSERT_TRUE(p2.TryPush(PayloadOf(tail + 1, 7)));
    ExpectPop(c, tail + 1, 7);
  }
  EXPECT_GT(k, 3 * 11u) << "every line operation of three requests was a kill point";
}

// A producer killed in the middle of writing an entry, after an early
// write-back put half of it in memory: the line has the right seq but the
// wrong check. tail does not cover it, and a reader that looked anyway
// would reject it; the restarted producer overwrites it.
TEST(RequestRingTest, TornEntryOfAKilledProducerIsRejected) {
  constexpr uint32_t kCap = 4;
  SharedMemory m(RequestRingBytes(kCap));
  const int status = RunChild([&] {
    CacheSim ps(m.base(), m.size(), {});
    RequestProducer<CacheSim> p(ps, m.base(), kCap, kSeal);
    if (!p.Attach()) _exit(3);
    for (uint64_t n = 1; n <= 2; ++n) {
      if (!p.TryPush(PayloadOf(n))) _exit(4);
    }
    // Request 3, cut short: seq and half the payload written, an early
    // write-back of the line, then death before the check word.
    RequestEntry* e = reinterpret_cast<RequestEntry*>(m.base() + sizeof(RequestRingHeader)) + 2;
    ps.Store(&e->seq, 3);
    for (uint32_t i = 0; i < 3; ++i) ps.Store(&e->payload[i], PayloadOf(3).w[i]);
    ps.WriteBackLine(e);
    ps.Store(&e->payload[3], PayloadOf(3).w[3]);
    raise(SIGKILL);
  });
  ASSERT_TRUE(Killed(status));
  const RequestEntry* torn =
      reinterpret_cast<const RequestEntry*>(m.base() + sizeof(RequestRingHeader)) + 2;
  ASSERT_EQ(torn->seq, 3u) << "the half-written line reached memory";
  ASSERT_EQ(torn->payload[3], 0u) << "its unflushed rest did not";

  CacheSim cs(m.base(), m.size(), {});
  RequestConsumer<CacheSim> c(cs, m.base(), kCap, kSeal);
  c.Attach();
  ExpectPop(c, 1);
  ExpectPop(c, 2);
  RequestPayload got;
  EXPECT_EQ(c.Pop(&got), PopResult::kEmpty) << "tail does not cover the torn entry";
  EXPECT_FALSE(c.EntryValid(3)) << "seq matches, the check does not";

  CacheSim ps2(m.base(), m.size(), {});
  RequestProducer<CacheSim> p2(ps2, m.base(), kCap, kSeal);
  ASSERT_TRUE(p2.Attach());
  ASSERT_TRUE(p2.TryPush(PayloadOf(3, 9)));
  ExpectPop(c, 3, 9);
  // An entry of an earlier session of the slot (another seal) never validates.
  RequestConsumer<CacheSim> other(cs, m.base(), kCap, kSeal + 1);
  EXPECT_FALSE(other.EntryValid(3));
}

// The demonstration that the simulator catches a removed flush: the producer
// publishes tail without flushing the entry, then its host dies. Memory says
// three requests were published and holds none of them.
TEST(RequestRingTest, RemovedEntryFlushIsCaught) {
  constexpr uint32_t kCap = 4;
  for (RingFault fault : {RingFault::kNone, RingFault::kSkipEntryFlush}) {
    SCOPED_TRACE(fault == RingFault::kNone ? "protocol as written" : "entry flush removed");
    SharedMemory m(RequestRingBytes(kCap));
    CacheSim ps(m.base(), m.size(), {}), cs(m.base(), m.size(), {});
    RequestProducer<CacheSim> p(ps, m.base(), kCap, kSeal);
    RequestConsumer<CacheSim> c(cs, m.base(), kCap, kSeal);
    ASSERT_TRUE(p.Attach());
    c.Attach();
    p.SetFaultForTesting(fault);
    for (uint64_t n = 1; n <= 3; ++n) ASSERT_TRUE(p.TryPush(PayloadOf(n)));
    ps.DropDirty();  // the producer's host dies
    RequestPayload got;
    if (fault == RingFault::kNone) {
      for (uint64_t n = 1; n <= 3; ++n) ExpectPop(c, n);
      EXPECT_EQ(c.Pop(&got), PopResult::kEmpty);
    } else {
      EXPECT_EQ(c.Pop(&got), PopResult::kCorrupt) << "published, never written back";
    }
  }
}

// ... and a removed invalidate: a consumer that does not invalidate an
// entry's line before reading it reads its own copy from the ring's
// previous lap.
TEST(RequestRingTest, RemovedEntryInvalidateIsCaught) {
  constexpr uint32_t kCap = 2;
  for (RingFault fault : {RingFault::kNone, RingFault::kSkipEntryInvalidate}) {
    SCOPED_TRACE(fault == RingFault::kNone ? "protocol as written" : "entry invalidate removed");
    SharedMemory m(RequestRingBytes(kCap));
    CacheSimOptions checked;
    checked.versions = m.versions();
    CacheSim ps(m.base(), m.size(), checked), cs(m.base(), m.size(), checked);
    RequestProducer<CacheSim> p(ps, m.base(), kCap, kSeal);
    RequestConsumer<CacheSim> c(cs, m.base(), kCap, kSeal);
    ASSERT_TRUE(p.Attach());
    c.Attach();
    c.SetFaultForTesting(fault);
    for (uint64_t n = 1; n <= 2; ++n) ASSERT_TRUE(p.TryPush(PayloadOf(n)));
    for (uint64_t n = 1; n <= 2; ++n) ExpectPop(c, n);  // lap 1: lines filled fresh
    for (uint64_t n = 3; n <= 4; ++n) ASSERT_TRUE(p.TryPush(PayloadOf(n)));
    RequestPayload got;
    if (fault == RingFault::kNone) {
      ExpectPop(c, 3);
      ExpectPop(c, 4);
      EXPECT_TRUE(cs.stale_reads().empty());
    } else {
      EXPECT_EQ(c.Pop(&got), PopResult::kCorrupt) << "request 1's stale copy read as request 3";
      EXPECT_FALSE(cs.stale_reads().empty()) << "and the checker names the line";
    }
  }
}

}  // namespace
}  // namespace gismo::region
