// The non-coherent get path and free rule (src/region/nc_references.h)
// under the non-coherence simulator: the owner never frees an object a
// reader relies on, whatever the interleaving; a reader never reads a
// reused block's previous bytes; a reader whose host dies keeps exactly the
// references it relied on; and removing any one flush or invalidate of the
// protocol is caught.
#include "region/nc_references.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <thread>

#include "nc_util.h"
#include "region/cache_lines.h"
#include "region/cache_sim.h"
#include "region/nc_fence.h"
#include "region/region.h"
#include "testing/process.h"

namespace gismo::region {
namespace {

using gismo::testing::Killed;
using gismo::testing::RunChild;
using gismo::testing::SharedMemory;
using gismo::testing::SteppedLines;

constexpr uint32_t kRecords = 4;
constexpr uint32_t kTableCap = 8;  // two lines
constexpr uint32_t kClients = 2;
constexpr uint64_t kObjBytes = 256;  // four lines
constexpr uint64_t kHeap = kRecords * kObjBytes;

// The "device": records, then each client's held table, then each
// client's summary line, then each client's recent-gets line, then the heap.
class World {
 public:
  static constexpr uint64_t kTables = kRecords * sizeof(ObjectRecord);
  static constexpr uint64_t kSummaries = kTables + kClients * kTableCap * sizeof(HeldEntry);
  static constexpr uint64_t kRecents = kSummaries + kClients * kCacheLine;
  static constexpr uint64_t kHeapStart = kRecents + kClients * kCacheLine;
  World() : m_(kHeapStart + kHeap) {}
  NcView view() const {
    NcView v;
    v.records = reinterpret_cast<ObjectRecord*>(m_.base());
    v.num_records = kRecords;
    v.heap = m_.base() + kHeapStart;
    v.heap_size = kHeap;
    return v;
  }
  NcTable table(uint32_t client, uint32_t capacity = kTableCap) const {
    return {reinterpret_cast<HeldEntry*>(m_.base() + kTables) + client * kTableCap, capacity,
            reinterpret_cast<Word*>(m_.base() + kSummaries + client * kCacheLine),
            reinterpret_cast<Word*>(m_.base() + kRecents + client * kCacheLine)};
  }
  std::vector<NcTable> tables() const {
    std::vector<NcTable> t;
    for (uint32_t c = 0; c < kClients; ++c) t.push_back(table(c));
    return t;
  }
  const SharedMemory& memory() const { return m_; }
  uint8_t* base() const { return m_.base(); }
  uint64_t size() const { return m_.size(); }

 private:
  SharedMemory m_;
};

IdWords IdOf(uint64_t tag) { return {{tag, tag ^ 0x5555, 0}}; }
uint64_t Pattern(uint64_t tag, uint64_t word) { return tag * 0x9E3779B97F4A7C15ull + word; }
NcObject BlockOf(uint32_t record) { return {record * kObjBytes, kObjBytes, 0}; }
uint64_t SealedInfo() { return PackInfo(ObjectState::kSealed, 1, 0); }

// The creator's host writes object `tag` into its block and flushes it
// before asking for the seal (doc/noncoherent.md, section 6).
template <typename Lines>
void WriteObject(Lines& creator, const World& w, const NcObject& o, uint64_t tag) {
  auto* words = reinterpret_cast<uint64_t*>(w.view().heap + o.heap_offset);
  for (uint64_t i = 0; i < o.data_size / 8; ++i) creator.Store(&words[i], Pattern(tag, i));
  creator.Flush(words, o.data_size);
}

template <typename Lines>
bool ReadObject(Lines& reader, const World& w, const NcObject& o, uint64_t tag) {
  const auto* words = reinterpret_cast<const uint64_t*>(w.view().heap + o.heap_offset);
  bool same = o.data_size == kObjBytes;
  for (uint64_t i = 0; i < o.data_size / 8; ++i) same &= reader.Load(&words[i]) == Pattern(tag, i);
  return same;
}

CacheSimOptions Quiet(const World& w, uint64_t seed) {
  CacheSimOptions o;
  o.seed = seed;
  o.versions = w.memory().versions();
  return o;
}

CacheSimOptions Chaotic(const World& w, uint64_t seed) {
  CacheSimOptions o = Quiet(w, seed);
  o.capacity_lines = 16;
  o.evict_ppm = 50000;
  o.early_writeback_ppm = 200000;
  return o;
}

constexpr uint64_t kA = 0xA, kB = 0xB;

struct Outcome {
  bool hook_ran = false;
  NcGet got = NcGet::kNotFound;
  bool freed = false;    // the owner's first delete freed the record
  bool data_ok = true;   // a found reader read A's bytes
  bool reuse_ok = true;  // the reader then read B's bytes in the reused block
  bool FreedWhileHeld() const { return got == NcGet::kFound && freed; }
};

// One interleaving. The reader has read object A (record 0) before, so its
// lines may be in the reader's cache. Then the reader gets A while the owner
// deletes A and, once it is free, the creator reuses its record and block
// for B: the stepped side runs one line operation at a time, the other side
// runs whole at the stepped side's k-th operation. Afterwards the reader
// gets B and must read B's bytes.
Outcome Interleave(bool step_reader, uint64_t k, NcRefFault reader_fault, NcRefFault owner_fault) {
  World w;
  CacheSim rs(w.base(), w.size(), Quiet(w, 1)), os(w.base(), w.size(), Quiet(w, 2)),
      cs(w.base(), w.size(), Quiet(w, 3));
  SteppedLines rl{rs}, ol{os};
  NcReader<SteppedLines> reader(rl, w.view(), w.table(0));
  NcOwner<SteppedLines> owner(ol, w.view());
  reader.SetFaultForTesting(reader_fault);
  owner.SetFaultForTesting(owner_fault);

  WriteObject(cs, w, BlockOf(0), kA);
  owner.Publish(0, IdOf(kA), SealedInfo(), BlockOf(0));
  NcObject o;
  Outcome out;
  if (reader.Get(0, IdOf(kA), &o) != NcGet::kFound || !ReadObject(rl, w, o, kA) ||
      !reader.Release(0)) {
    ADD_FAILURE() << "the warm-up get of A failed";
    return out;
  }
  auto reuse_for_b = [&] {
    WriteObject(cs, w, BlockOf(0), kB);
    owner.Publish(0, IdOf(kB), SealedInfo(), BlockOf(0));
  };
  auto reader_side = [&] {
    out.got = reader.Get(0, IdOf(kA), &o);
    if (out.got == NcGet::kFound) out.data_ok = ReadObject(rl, w, o, kA);
  };
  auto owner_side = [&] {
    out.freed = owner.Delete(0, w.tables());
    if (out.freed) reuse_for_b();
  };
  SteppedLines& stepped = step_reader ? rl : ol;
  stepped.at = stepped.ops + k;
  stepped.hook = [&] {
    out.hook_ran = true;
    step_reader ? owner_side() : reader_side();
  };
  step_reader ? reader_side() : owner_side();
  stepped.hook = nullptr;
  if (!out.hook_ran) return out;

  if (out.got == NcGet::kFound) reader.Release(0);
  if (!out.freed) {
    if (!owner.Delete(0, w.tables())) {
      ADD_FAILURE() << "the record stayed referenced after the release";
      return out;
    }
    reuse_for_b();
  }
  out.reuse_ok = reader.Get(0, IdOf(kB), &o) == NcGet::kFound && ReadObject(rl, w, o, kB);
  return out;
}

struct SweepResult {
  int runs = 0, found = 0, not_found = 0, freed_while_held = 0, bad_data = 0, bad_reuse = 0;
};

SweepResult Sweep(NcRefFault reader_fault, NcRefFault owner_fault) {
  SweepResult r;
  for (bool step_reader : {true, false}) {
    for (uint64_t k = 0;; ++k) {
      const Outcome o = Interleave(step_reader, k, reader_fault, owner_fault);
      if (::testing::Test::HasFailure() || !o.hook_ran) break;
      ++r.runs;
      r.found += o.got == NcGet::kFound;
      r.not_found += o.got == NcGet::kNotFound;
      r.freed_while_held += o.FreedWhileHeld();
      r.bad_data += !o.data_ok;
      r.bad_reuse += !o.reuse_ok;
    }
  }
  return r;
}

TEST(NcReferencesTest, GetReadsWhatTheOwnerPublished) {
  World w;
  CacheSim rs(w.base(), w.size(), Quiet(w, 1)), os(w.base(), w.size(), Quiet(w, 2));
  NcReader<CacheSim> reader(rs, w.view(), w.table(0));
  NcOwner<CacheSim> owner(os, w.view());
  NcObject o;
  EXPECT_EQ(reader.Get(1, IdOf(kA), &o), NcGet::kNotFound);  // nothing published
  WriteObject(os, w, BlockOf(1), kA);
  owner.Publish(1, IdOf(kA), SealedInfo(), BlockOf(1));
  ASSERT_EQ(reader.Get(1, IdOf(kA), &o), NcGet::kFound);
  EXPECT_EQ(o.heap_offset, BlockOf(1).heap_offset);
  EXPECT_TRUE(ReadObject(rs, w, o, kA));
  EXPECT_EQ(reader.Get(1, IdOf(kB), &o), NcGet::kNotFound);         // another id
  EXPECT_EQ(reader.Get(kRecords, IdOf(kA), &o), NcGet::kNotFound);  // no such record
  EXPECT_EQ(reader.Held(1), 1u);
  EXPECT_TRUE(reader.Release(1));
  EXPECT_FALSE(reader.Release(1));
  EXPECT_TRUE(owner.Delete(1, w.tables()));
  EXPECT_TRUE(rs.stale_reads().empty());
  EXPECT_TRUE(rs.conflicting_writes().empty() && os.conflicting_writes().empty());
}

TEST(NcReferencesTest, DeleteWaitsForTheLastRelease) {
  World w;
  CacheSim rs(w.base(), w.size(), Quiet(w, 1)), os(w.base(), w.size(), Quiet(w, 2));
  NcReader<CacheSim> reader(rs, w.view(), w.table(1));
  NcOwner<CacheSim> owner(os, w.view());
  WriteObject(os, w, BlockOf(2), kA);
  owner.Publish(2, IdOf(kA), SealedInfo(), BlockOf(2));
  NcObject o;
  ASSERT_EQ(reader.Get(2, IdOf(kA), &o), NcGet::kFound);
  ASSERT_EQ(reader.Get(2, IdOf(kA), &o), NcGet::kFound);
  EXPECT_EQ(reader.Held(2), 2u);
  EXPECT_FALSE(owner.Delete(2, w.tables()));
  EXPECT_EQ(reader.Get(2, IdOf(kA), &o), NcGet::kNotFound) << "a deleting object is not gettable";
  EXPECT_TRUE(reader.Release(2));
  EXPECT_FALSE(owner.Delete(2, w.tables())) << "one reference is still held";
  EXPECT_TRUE(reader.Release(2));
  EXPECT_TRUE(owner.Delete(2, w.tables()));
  EXPECT_EQ(reader.Held(2), 0u);
}

// A second get of an object this client still holds does not invalidate
// the data again (the block cannot have changed); a get after the last
// release does.
TEST(NcReferencesTest, AHeldObjectIsNotInvalidatedAgain) {
  World w;
  CacheSim rs(w.base(), w.size(), Quiet(w, 1)), os(w.base(), w.size(), Quiet(w, 2));
  NcReader<CacheSim> reader(rs, w.view(), w.table(0));
  NcOwner<CacheSim> owner(os, w.view());
  WriteObject(os, w, BlockOf(1), kA);
  owner.Publish(1, IdOf(kA), SealedInfo(), BlockOf(1));
  const uint8_t* data = w.view().heap + BlockOf(1).heap_offset;
  NcObject o;
  ASSERT_EQ(reader.Get(1, IdOf(kA), &o), NcGet::kFound);
  ASSERT_TRUE(ReadObject(rs, w, o, kA));
  ASSERT_TRUE(rs.Cached(data));
  ASSERT_EQ(reader.Get(1, IdOf(kA), &o), NcGet::kFound);
  EXPECT_TRUE(rs.Cached(data)) << "held: its lines are current";
  EXPECT_TRUE(ReadObject(rs, w, o, kA));
  EXPECT_TRUE(reader.Release(1));
  EXPECT_TRUE(reader.Release(1));
  ASSERT_EQ(reader.Get(1, IdOf(kA), &o), NcGet::kFound);
  EXPECT_FALSE(rs.Cached(data)) << "not held since: invalidated before the first read";
}

// An entry found in the table with count 0 (a torn entry: key written,
// count not yet; nothing else leaves one) names no reference: the first get
// of its record invalidates the data (G5) like any first get. Taken as held,
// it skipped G5 and read this host's stale lines of a reused block.
TEST(NcReferencesTest, AnEntryLeftWithCountZeroIsNotHeld) {
  World w;
  CacheSim rs(w.base(), w.size(), Quiet(w, 1)), os(w.base(), w.size(), Quiet(w, 2));
  NcOwner<CacheSim> owner(os, w.view());
  WriteObject(os, w, BlockOf(1), kA);
  owner.Publish(1, IdOf(kA), SealedInfo(), BlockOf(1));
  NcObject o;
  {
    NcReader<CacheSim> first(rs, w.view(), w.table(0));
    ASSERT_EQ(first.Get(1, IdOf(kA), &o), NcGet::kFound);
    ASSERT_TRUE(ReadObject(rs, w, o, kA));  // this host now caches A's lines
    ASSERT_TRUE(first.Release(1));
  }
  ASSERT_TRUE(owner.Delete(1, w.tables()));
  WriteObject(os, w, BlockOf(1), kB);  // the block and the record reused
  owner.Publish(1, IdOf(kB), SealedInfo(), BlockOf(1));
  HeldEntry& e = w.table(0).entries[0];
  os.Store(NcWord(e.key), 1 + 1);  // record 1, count 0
  os.Flush(&e, sizeof e);
  NcReader<CacheSim> reader(rs, w.view(), w.table(0));
  ASSERT_EQ(reader.Get(1, IdOf(kB), &o), NcGet::kFound);
  EXPECT_TRUE(ReadObject(rs, w, o, kB)) << "read the block's old lines";
  EXPECT_EQ(reader.Held(1), 1u);
  EXPECT_TRUE(reader.Release(1));
}

// G6: a get of an evictable object whose CLOCK reference bit is clear is
// noted in the reader's recent-gets line, once per record version, and the
// note is in memory when the get returns, where the owner (another host)
// reads it; gets of objects that are not evictable, or whose bit is set,
// write nothing. Without the note's flush the owner finds nothing.
TEST(NcReferencesTest, AGetOfAnUnreferencedEvictableObjectIsNotedForTheOwner) {
  for (const NcRefFault fault : {NcRefFault::kNone, NcRefFault::kSkipNoteFlush}) {
    SCOPED_TRACE(fault == NcRefFault::kNone ? "as built" : "without the note's flush");
    World w;
    CacheSim rs(w.base(), w.size(), Quiet(w, 1)), os(w.base(), w.size(), Quiet(w, 2));
    NcReader<CacheSim> reader(rs, w.view(), w.table(0));
    reader.SetFaultForTesting(fault);
    NcOwner<CacheSim> owner(os, w.view());
    const uint64_t evictable = PackInfo(ObjectState::kSealed, 1, 0, kObjectFlagEvictable);
    owner.Publish(0, IdOf(kA), evictable, BlockOf(0));
    owner.Publish(1, IdOf(kB),
                  evictable | PackInfo(ObjectState::kFree, 0, 0, kObjectFlagReferenced),
                  BlockOf(1));
    owner.Publish(2, IdOf(kA + 2), SealedInfo(), BlockOf(2));
    NcObject o;
    ASSERT_EQ(reader.Get(0, IdOf(kA), &o), NcGet::kFound);
    ASSERT_EQ(reader.Get(0, IdOf(kA), &o), NcGet::kFound);
    ASSERT_EQ(reader.Get(1, IdOf(kB), &o), NcGet::kFound);
    ASSERT_EQ(reader.Get(2, IdOf(kA + 2), &o), NcGet::kFound);
    std::vector<std::pair<uint32_t, uint32_t>> notes;
    NcForEachRecentGet(os, w.table(0), kRecords,
                       [&](uint32_t record, uint32_t v) { notes.emplace_back(record, v); });
    if (fault == NcRefFault::kNone) {
      const auto version = static_cast<uint32_t>(os.Load(NcWord(w.view().Record(0).ref_count)));
      EXPECT_EQ(notes, (std::vector<std::pair<uint32_t, uint32_t>>{{0, version}}));
    } else {
      EXPECT_TRUE(notes.empty()) << "the note is still in the reader's cache only";
    }
  }
}

TEST(NcReferencesTest, AFullTableAndACorruptRecordAreRefused) {
  World w;
  CacheSim rs(w.base(), w.size(), Quiet(w, 1)), os(w.base(), w.size(), Quiet(w, 2));
  NcReader<CacheSim> reader(rs, w.view(), w.table(0, 2));
  NcOwner<CacheSim> owner(os, w.view());
  for (uint32_t i = 0; i < 3; ++i) owner.Publish(i, IdOf(kA + i), SealedInfo(), BlockOf(i));
  NcObject o;
  ASSERT_EQ(reader.Get(0, IdOf(kA), &o), NcGet::kFound);
  ASSERT_EQ(reader.Get(1, IdOf(kA + 1), &o), NcGet::kFound);
  EXPECT_EQ(reader.Get(2, IdOf(kA + 2), &o), NcGet::kFull);
  EXPECT_EQ(reader.Held(2), 0u);
  // A record whose block lies outside the heap is never followed.
  for (const NcObject bad : {NcObject{kHeap, 64, 0}, NcObject{kHeap - 64, 128, 0},
                             NcObject{8, 64, 0}, NcObject{0, ~uint64_t{0} >> 24, 0}}) {
    owner.Publish(3, IdOf(kB), SealedInfo(), bad);
    EXPECT_EQ(reader.Get(3, IdOf(kB), &o), NcGet::kNotFound) << bad.heap_offset;
  }
}

// Both directions, every instant: the reader that gets A reads A's bytes
// and keeps them until its release; the owner frees A only when no reader
// relies on it; the reused block reads as B.
TEST(NcReferencesTest, EveryInterleavingKeepsItsPromise) {
  const SweepResult r = Sweep(NcRefFault::kNone, NcRefFault::kNone);
  ASSERT_FALSE(::testing::Test::HasFailure());
  EXPECT_GT(r.runs, 40);
  EXPECT_GT(r.found, 0) << "the sweep never let the reader win";
  EXPECT_GT(r.not_found, 0) << "the sweep never let the owner win";
  EXPECT_EQ(r.freed_while_held, 0);
  EXPECT_EQ(r.bad_data, 0);
  EXPECT_EQ(r.bad_reuse, 0);
}

// Each line operation of the protocol is needed: without it some
// interleaving breaks a promise.
TEST(NcReferencesTest, RemovedEntryFlushIsCaught) {
  const SweepResult r = Sweep(NcRefFault::kSkipEntryFlush, NcRefFault::kNone);
  EXPECT_GT(r.freed_while_held + r.bad_data, 0);
}

TEST(NcReferencesTest, RemovedRecheckInvalidateIsCaught) {
  const SweepResult r = Sweep(NcRefFault::kSkipRecheckInvalidate, NcRefFault::kNone);
  EXPECT_GT(r.freed_while_held, 0);
  EXPECT_GT(r.bad_data, 0) << "the reader read B's bytes as A's";
}

TEST(NcReferencesTest, RemovedMarkFlushIsCaught) {
  const SweepResult r = Sweep(NcRefFault::kNone, NcRefFault::kSkipMarkFlush);
  EXPECT_GT(r.freed_while_held, 0);
}

TEST(NcReferencesTest, RemovedSummaryMarkIsCaught) {
  const SweepResult r = Sweep(NcRefFault::kSkipSummaryMark, NcRefFault::kNone);
  EXPECT_GT(r.freed_while_held, 0) << "the owner trusted a summary that missed the reference";
}

// The summary line marks the bucket of each record the table references,
// and only those: set by a get, cleared by the last release of its bucket,
// rebuilt from the table by a reader that attaches to it, zeroed by the
// owner's recovery of the table.
TEST(NcReferencesTest, TheSummaryMarksExactlyTheHeldBuckets) {
  for (uint32_t i = 0; i < kRecords; ++i) {
    for (uint32_t j = 0; j < i; ++j) ASSERT_NE(HeldSummaryBit(i), HeldSummaryBit(j));
  }
  World w;
  CacheSim rs(w.base(), w.size(), Quiet(w, 1)), os(w.base(), w.size(), Quiet(w, 2));
  NcOwner<CacheSim> owner(os, w.view());
  for (uint32_t i = 0; i < kRecords; ++i) owner.Publish(i, IdOf(kA + i), SealedInfo(), BlockOf(i));
  auto marked = [&] {
    const NcSummary s = NcReadSummary(os, w.table(0));
    std::vector<uint32_t> records;
    for (uint32_t i = 0; i < kRecords; ++i) {
      if (NcSummaryHas(s, i)) records.push_back(i);
    }
    int bits = 0;
    for (uint64_t word : s) bits += __builtin_popcountll(word);
    EXPECT_EQ(bits, static_cast<int>(records.size())) << "a bit no held record explains";
    return records;
  };
  EXPECT_EQ(marked(), std::vector<uint32_t>{});
  NcObject o;
  {
    NcReader<CacheSim> reader(rs, w.view(), w.table(0));
    ASSERT_EQ(reader.Get(1, IdOf(kA + 1), &o), NcGet::kFound);
    ASSERT_EQ(reader.Get(2, IdOf(kA + 2), &o), NcGet::kFound);
    ASSERT_EQ(reader.Get(2, IdOf(kA + 2), &o), NcGet::kFound);
    EXPECT_EQ(marked(), (std::vector<uint32_t>{1, 2}));
    EXPECT_TRUE(reader.Release(1));
    EXPECT_TRUE(reader.Release(2));
    EXPECT_EQ(marked(), std::vector<uint32_t>{2}) << "record 2 is still held once";
  }
  // Memory loses the summary (as a re-attaching client may find it); the
  // reader that attaches to the table marks what the table holds.
  for (uint32_t i = 0; i < kMaxHeldLocks; ++i) {
    __atomic_store_n(NcWord(w.table(0).summary[i]), ~0ull, __ATOMIC_RELAXED);  // the device
  }
  NcReader<CacheSim> again(rs, w.view(), w.table(0));
  EXPECT_EQ(marked(), std::vector<uint32_t>{2});
  EXPECT_FALSE(owner.Delete(2, w.tables()));
  EXPECT_TRUE(owner.Delete(1, w.tables()));
  const auto held = owner.RecoverTable(w.table(0));
  ASSERT_EQ(held.size(), 1u);
  EXPECT_EQ(held[0], (std::pair<uint32_t, uint64_t>{2, 1}));
  EXPECT_EQ(marked(), std::vector<uint32_t>{});
  EXPECT_TRUE(owner.Delete(2, w.tables()));
  EXPECT_TRUE(rs.conflicting_writes().empty() && os.conflicting_writes().empty());
}

TEST(NcReferencesTest, RemovedDataInvalidateIsCaught) {
  const SweepResult r = Sweep(NcRefFault::kSkipDataInvalidate, NcRefFault::kNone);
  EXPECT_EQ(r.freed_while_held, 0);
  EXPECT_GT(r.bad_reuse, 0) << "the reader read A's cached bytes in B's block";
}

// G0 on a real region formatted non-coherent: three objects A, B, C whose
// hashes share one home slot sit in slots 5, 6, 7 of a shard. The owner
// deletes A and shifts B and C back (backward-shift deletion) under the
// shard's index_version while a reader looks C up, one line operation at a
// time, the owner's whole change run at each of them.
class NcIndexTest : public ::testing::Test {
 protected:
  static constexpr uint32_t kHome = 5;
  void SetUp() override {
    path_ = "/dev/shm/" + gismo::testing::UniqueName("nc-index");
    FormatOptions fo;
    fo.size = 16ull << 20;
    fo.max_objects = 1024;
    fo.max_clients = 4;
    fo.coherence = CoherenceMode::kNonCoherent;
    auto r = Region::Format(path_, fo);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    region_ = std::move(*r);
    versions_.reset(new std::atomic<uint64_t>[region_->size() / kCacheLine]());
    const Region& g = *region_;
    view_ = NcRegionView(
        g.records(0), g.num_shards(), g.records_per_shard(),
        reinterpret_cast<uint8_t*>(g.records(1)) - reinterpret_cast<uint8_t*>(g.records(0)),
        g.heap(), g.heap_size());
    shard_.header = &g.shard(1);
    shard_.slots = g.hash_slots(1);
    shard_.mask = g.sb().slots_per_shard - 1;
    shard_.first_record = g.records_per_shard();
    shard_.records = g.records_per_shard();
  }
  void TearDown() override {
    region_.reset();
    unlink(path_.c_str());
  }
  CacheSimOptions Sim(uint64_t seed) {
    CacheSimOptions o;
    o.seed = seed;
    o.capacity_lines = 4096;
    o.versions = versions_.get();
    return o;
  }
  uint8_t* base() const { return region_->base(); }
  uint64_t size() const { return region_->size(); }
  // Object k (0: A, 1: B, 2: C): hash low bits on the shared home slot.
  static uint32_t H32(uint32_t k) { return kHome + (k + 1) * 4096; }
  uint32_t Global(uint32_t k) const { return shard_.first_record + k; }
  // The owner puts A, B, C in slots 5, 6, 7, and their records.
  template <typename Lines>
  void PutThree(NcOwner<Lines>& owner, Lines& ol) {
    owner.BeginIndexChange(shard_);
    for (uint32_t k = 0; k < 3; ++k) {
      owner.Publish(Global(k), IdOf(kA + k), SealedInfo(), NcObject{k * 4096ull, 64, 0});
      ol.Store(NcWord(shard_.slots[kHome + k]), PackHashSlot(H32(k), k));
    }
    owner.EndIndexChange(shard_, kHome, 3);
  }
  // The owner deletes A: frees its record, then shifts B and C back.
  template <typename Lines>
  void DeleteA(NcOwner<Lines>& owner, Lines& ol) {
    ASSERT_TRUE(owner.Delete(Global(0), {}));
    owner.BeginIndexChange(shard_);
    ol.Store(NcWord(shard_.slots[kHome]), PackHashSlot(H32(1), 1));
    ol.Store(NcWord(shard_.slots[kHome + 1]), PackHashSlot(H32(2), 2));
    ol.Store(NcWord(shard_.slots[kHome + 2]), 0);
    owner.EndIndexChange(shard_, kHome, 3);
  }

  std::string path_;
  std::unique_ptr<Region> region_;
  std::unique_ptr<std::atomic<uint64_t>[]> versions_;
  NcView view_;
  NcShard shard_;
};

TEST_F(NcIndexTest, FindsWhatIsIndexedAndNothingElse) {
  CacheSim rs(base(), size(), Sim(1)), os(base(), size(), Sim(2));
  NcOwner<CacheSim> owner(os, view_);
  NcReader<CacheSim> reader(rs, view_, NcTable{region_->held(1), 64, region_->held_summary(1)});
  PutThree(owner, os);
  for (uint32_t k = 0; k < 3; ++k) {
    NcObject o;
    uint32_t index = 0;
    ASSERT_EQ(reader.Find(shard_, H32(k), IdOf(kA + k), &o, &index), NcGet::kFound) << k;
    EXPECT_EQ(index, Global(k));
    EXPECT_EQ(o.heap_offset, k * 4096ull);
    EXPECT_TRUE(reader.Release(index));
  }
  NcObject o;
  uint32_t index = 0;
  EXPECT_EQ(reader.Find(shard_, H32(3), IdOf(kA + 3), &o, &index), NcGet::kNotFound);
  EXPECT_EQ(reader.Find(shard_, H32(1), IdOf(kA + 7), &o, &index), NcGet::kNotFound)
      << "same hash, another id";
  // A slot naming a record outside the shard is never followed.
  os.Store(NcWord(shard_.slots[kHome + 3]), PackHashSlot(H32(3), shard_.records + 5));
  os.Flush(&shard_.slots[kHome + 3], 8);
  EXPECT_EQ(reader.Find(shard_, H32(3), IdOf(kA + 3), &o, &index), NcGet::kNotFound);
  DeleteA(owner, os);
  EXPECT_EQ(reader.Find(shard_, H32(0), IdOf(kA), &o, &index), NcGet::kNotFound);
  ASSERT_EQ(reader.Find(shard_, H32(2), IdOf(kA + 2), &o, &index), NcGet::kFound);
  EXPECT_EQ(index, Global(2));
}

// Every instant of the reader's lookup of C, with the owner's whole delete
// of A and shift of B and C at that instant: C is always found. Without
// the re-read of index_version after an empty probe, some instant reports C
// absent.
TEST_F(NcIndexTest, ALookupDuringAShiftNeverMissesAnObject) {
  auto sweep = [&](NcRefFault fault) {
    int runs = 0, missed = 0;
    for (uint64_t k = 0;; ++k) {
      TearDown();
      SetUp();
      CacheSim rs(base(), size(), Sim(1)), os(base(), size(), Sim(2));
      SteppedLines rl{rs};
      NcOwner<CacheSim> owner(os, view_);
      NcReader<SteppedLines> reader(rl, view_,
                                    NcTable{region_->held(1), 64, region_->held_summary(1)});
      reader.SetFaultForTesting(fault);
      PutThree(owner, os);
      NcObject o;
      uint32_t index = 0;
      // The reader has looked C up before: the slot lines are in its cache.
      if (reader.Find(shard_, H32(2), IdOf(kA + 2), &o, &index) != NcGet::kFound ||
          !reader.Release(index)) {
        ADD_FAILURE() << "the first lookup of C failed";
        return std::make_pair(runs, missed);
      }
      bool ran = false;
      rl.at = rl.ops + k;
      rl.hook = [&] {
        ran = true;
        DeleteA(owner, os);
      };
      const NcGet got = reader.Find(shard_, H32(2), IdOf(kA + 2), &o, &index);
      rl.hook = nullptr;
      if (!ran) break;
      ++runs;
      missed += got != NcGet::kFound;
      if (got == NcGet::kFound) {
        EXPECT_EQ(index, Global(2));
        reader.Release(index);
      }
    }
    return std::make_pair(runs, missed);
  };
  const auto [runs, missed] = sweep(NcRefFault::kNone);
  EXPECT_GT(runs, 10);
  EXPECT_EQ(missed, 0);
  const auto [fault_runs, fault_missed] = sweep(NcRefFault::kSkipIndexRecheck);
  EXPECT_GT(fault_runs, 10);
  EXPECT_GT(fault_missed, 0) << "a lookup that found nothing during the shift was trusted";
}

// A client of a non-coherent region dies on a live host with dirty lines
// in that host's cache: an entry of its held table, a word of its request
// ring, the bytes of the object it was creating. The host writes them back
// whenever it likes, here after the owner recovered the slot and reused the
// block: without the agent's write-back (NcWriteBackDeadClient, run on the
// dead client's host before it confirms the fence) that overwrites the
// owner's lines; with it, nothing is left to write back.
using NcFenceTest = NcIndexTest;

TEST_F(NcFenceTest, TheAgentsWriteBackLeavesNothingToOverwriteTheRecovery) {
  for (bool agent : {false, true}) {
    SCOPED_TRACE(agent ? "with the agent's write-back" : "without it");
    TearDown();
    SetUp();
    const Region& g = *region_;
    CacheSim host(base(), size(), Sim(1)), os(base(), size(), Sim(2));
    NcOwner<CacheSim> owner(os, view_);
    constexpr uint32_t kSlot = 1;
    const uint32_t u = Global(0);
    const NcObject block{0, 256, 0};
    owner.Publish(u, IdOf(kA), PackInfo(ObjectState::kCreated, kSlot, 0), block);
    // The client's host, mid-operation: every store dirty, none flushed.
    const NcTable table{g.held(kSlot), g.sb().held_capacity, g.held_summary(kSlot)};
    host.Store(NcWord(table.entries[0].key), u + 1);
    host.Store(NcWord(table.entries[0].count), 1);
    auto* ring_end = reinterpret_cast<uint64_t*>(static_cast<uint8_t*>(g.request_ring(kSlot)) +
                                                 RequestRingBytes(g.request_ring_capacity())) -
                     1;
    host.Store(ring_end, 0xbad);
    auto* data = reinterpret_cast<uint64_t*>(view_.heap + block.heap_offset);
    for (int i = 0; i < 32; ++i) host.Store(&data[i], 0xdead);
    if (agent) {
      const NcWriteBack wb = NcWriteBackDeadClient(host, g, kSlot);
      EXPECT_EQ(wb.unsealed, 1u);
      EXPECT_EQ(wb.busy, 0u);
      EXPECT_FALSE(host.Dirty(data) || host.Dirty(ring_end) || host.Dirty(table.entries));
    }
    // The owner recovers the slot (table and ring) and reuses the block.
    owner.RecoverTable(table);
    os.Invalidate(ring_end, sizeof(uint64_t));
    os.Store(ring_end, 0);
    os.Flush(ring_end, sizeof(uint64_t));
    EXPECT_TRUE(owner.Delete(u, {}));
    for (int i = 0; i < 32; ++i) os.Store(&data[i], Pattern(kB, i));
    os.Flush(data, 256);
    // Later the dead client's host writes back what it still holds.
    host.Flush(base(), size());
    const bool overwritten = __atomic_load_n(&data[0], __ATOMIC_RELAXED) != Pattern(kB, 0) ||
                             __atomic_load_n(ring_end, __ATOMIC_RELAXED) != 0 ||
                             table.entries[0].key.load(std::memory_order_relaxed) != 0;
    EXPECT_EQ(overwritten, !agent);
    EXPECT_EQ(host.conflicting_writes().empty(), agent);
  }
}

// An owner that holds every record's seqlock version odd (a broken one, or
// one frozen mid-write): the fence's write-back counts them busy after a
// second in all, where it waited a second for each (hours for a region of
// many records, with the dead client's recovery waiting on it).
TEST_F(NcFenceTest, RecordsHeldBusyCostTheWriteBackOneSecondInAll) {
  const Region& g = *region_;
  const uint32_t records = g.num_records();
  ASSERT_GE(records, 100u);
  for (uint32_t i = 0; i < records; ++i) g.record(i).ref_count.store(1);  // odd: being written
  CacheSim host(base(), size(), Sim(1));
  const NcWriteBack wb = NcWriteBackDeadClient(host, g, /*slot=*/1);
  EXPECT_EQ(wb.busy, records);
  EXPECT_EQ(wb.unsealed, 0u);
}

// A reader host that dies (SIGKILL: its simulated cache, dirty lines
// included, dies with it) at each line operation of a get. Whatever memory
// holds afterwards, a reference the reader relied on (its get returned) is
// there for the owner to see; after the recovery of its table the object is
// freed and nothing else is held.
TEST(NcReferencesTest, ReaderKilledAtEveryLineOperation) {
  int killed = 0, relied = 0;
  for (uint64_t k = 0;; ++k) {
    World w;
    SharedMemory said(64);  // word 0: the reader's get returned kFound
    CacheSim os(w.base(), w.size(), Quiet(w, 2));
    NcOwner<CacheSim> owner(os, w.view());
    WriteObject(os, w, BlockOf(0), kA);
    owner.Publish(0, IdOf(kA), SealedInfo(), BlockOf(0));
    const int status = RunChild([&] {
      CacheSim rs(w.base(), w.size(), Chaotic(w, k + 1));
      SteppedLines dl = gismo::testing::DyingLines(rs, k);
      NcReader<SteppedLines> reader(dl, w.view(), w.table(1));
      NcObject o;
      if (reader.Get(0, IdOf(kA), &o) == NcGet::kFound) {
        __atomic_store_n(said.word(0), 1, __ATOMIC_SEQ_CST);
        ReadObject(dl, w, o, kA);  // uses the reference, then dies holding it
      }
      raise(SIGKILL);
    });
    ASSERT_TRUE(Killed(status));
    const bool get_returned = __atomic_load_n(said.word(0), __ATOMIC_SEQ_CST) == 1;
    const bool deleted = owner.Delete(0, w.tables());
    if (get_returned) {
      EXPECT_FALSE(deleted) << "freed under a dead reader's reference, k=" << k;
    }
    const auto held = owner.RecoverTable(w.table(1));
    if (get_returned) {
      ASSERT_EQ(held.size(), 1u);
      EXPECT_EQ(held[0].first, 0u);
      EXPECT_EQ(held[0].second, 1u);
    }
    if (!deleted) {
      EXPECT_TRUE(owner.Delete(0, w.tables())) << "k=" << k;
    }
    EXPECT_TRUE(os.conflicting_writes().empty());
    ++killed;
    relied += get_returned;
    // Past the get and the reads of the data: every operation was a kill point.
    if (get_returned && k > 40) break;
    ASSERT_LT(k, 200u);
  }
  EXPECT_GT(relied, 0);
  EXPECT_GT(killed - relied, 0);
}

// Readers and the owner on their own threads (hosts), with random early
// write-backs and evictions: readers get, read and release while the owner
// deletes and the creator reuses records and blocks. A shadow count per
// record (plain atomics, outside the simulated memory) says which records a
// reader relies on at each instant; the owner must never free one of them.
TEST(NcReferencesTest, ReadersAndOwnerOnThreadsUnderChaos) {
  World w;
  std::atomic<int> relied_on[kRecords] = {};
  std::atomic<uint64_t> tag_of[kRecords] = {};
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> violations{0}, bad_bytes{0}, gets{0};
  {
    CacheSim os(w.base(), w.size(), Quiet(w, 99));
    NcOwner<CacheSim> owner(os, w.view());
    for (uint32_t i = 0; i < kRecords; ++i) {
      WriteObject(os, w, BlockOf(i), 100 + i);
      owner.Publish(i, IdOf(100 + i), SealedInfo(), BlockOf(i));
      tag_of[i].store(100 + i, std::memory_order_release);
    }
  }
  auto reader_host = [&](uint32_t client, uint64_t seed) {
    CacheSim rs(w.base(), w.size(), Chaotic(w, seed));
    NcReader<CacheSim> reader(rs, w.view(), w.table(client));
    uint64_t r = seed;
    while (!stop.load(std::memory_order_acquire)) {
      r = r * 6364136223846793005ull + 1442695040888963407ull;
      const uint32_t i = (r >> 33) % kRecords;
      const uint64_t tag = tag_of[i].load(std::memory_order_acquire);
      NcObject o;
      if (reader.Get(i, IdOf(tag), &o) != NcGet::kFound) continue;
      relied_on[i].fetch_add(1, std::memory_order_seq_cst);
      gets.fetch_add(1, std::memory_order_relaxed);
      if (!ReadObject(rs, w, o, tag)) bad_bytes.fetch_add(1, std::memory_order_relaxed);
      relied_on[i].fetch_sub(1, std::memory_order_seq_cst);
      reader.Release(i);
    }
  };
  std::thread r0(reader_host, 0, 11), r1(reader_host, 1, 12);
  {
    CacheSim os(w.base(), w.size(), Chaotic(w, 21));
    NcOwner<CacheSim> owner(os, w.view());
    uint64_t next_tag = 1000;
    // 3000 rounds, and on until the readers got something (on a loaded
    // machine they may not have run at all in the first 3000).
    for (int round = 0;
         round < 3000 || (gets.load(std::memory_order_relaxed) < 16 && round < 3'000'000);
         ++round) {
      const uint32_t i = round % kRecords;
      // The reader's count rises after its get returned (G4 passed) and
      // falls before its release: a free while it is up is a violation.
      if (!owner.Delete(i, w.tables())) {
        std::this_thread::yield();
        while (!owner.Delete(i, w.tables())) std::this_thread::yield();
      }
      if (relied_on[i].load(std::memory_order_seq_cst) != 0) violations.fetch_add(1);
      ++next_tag;
      WriteObject(os, w, BlockOf(i), next_tag);
      owner.Publish(i, IdOf(next_tag), SealedInfo(), BlockOf(i));
      tag_of[i].store(next_tag, std::memory_order_release);
    }
    EXPECT_TRUE(os.conflicting_writes().empty()) << "a line has two writers";
  }
  stop.store(true, std::memory_order_release);
  r0.join();
  r1.join();
  EXPECT_EQ(violations.load(), 0u);
  EXPECT_EQ(bad_bytes.load(), 0u);
  EXPECT_GT(gets.load(), 0u);
}

// The same code on the real primitives (coherent here: this checks the path
// and its memory-ordering contract, not non-coherence).
TEST(NcReferencesTest, ReaderAndOwnerOnHardwareLines) {
  World w;
  HwLines hw;
  NcOwner<HwLines> owner(hw, w.view());
  std::atomic<uint64_t> tag{500};
  std::atomic<int> relied_on{0};
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> violations{0}, bad_bytes{0}, gets{0};
  WriteObject(hw, w, BlockOf(0), 500);
  owner.Publish(0, IdOf(500), SealedInfo(), BlockOf(0));
  std::thread reader_host([&] {
    HwLines lines;
    NcReader<HwLines> reader(lines, w.view(), w.table(0));
    while (!stop.load(std::memory_order_acquire)) {
      const uint64_t t = tag.load(std::memory_order_acquire);
      NcObject o;
      if (reader.Get(0, IdOf(t), &o) != NcGet::kFound) continue;
      relied_on.fetch_add(1, std::memory_order_seq_cst);
      gets.fetch_add(1, std::memory_order_relaxed);
      if (!ReadObject(lines, w, o, t)) bad_bytes.fetch_add(1, std::memory_order_relaxed);
      relied_on.fetch_sub(1, std::memory_order_seq_cst);
      reader.Release(0);
    }
  });
  for (uint64_t t = 501; t < 20501; ++t) {
    while (!owner.Delete(0, w.tables())) std::this_thread::yield();
    if (relied_on.load(std::memory_order_seq_cst) != 0) violations.fetch_add(1);
    WriteObject(hw, w, BlockOf(0), t);
    owner.Publish(0, IdOf(t), SealedInfo(), BlockOf(0));
    tag.store(t, std::memory_order_release);
  }
  stop.store(true, std::memory_order_release);
  reader_host.join();
  EXPECT_EQ(violations.load(), 0u);
  EXPECT_EQ(bad_bytes.load(), 0u);
}

}  // namespace
}  // namespace gismo::region
