// Corrupted regions: every user of a region (a client's store operations,
// the manager's start-up and recovery, the `gismo` command) must answer a
// corrupt one with errors, never a signal or a hang. Each case below damages
// a populated region in one way gismo-fsck detects; each participant runs in
// a process of its own, bounded in time, and must exit normally.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <random>
#include <string>
#include <vector>

#include "region/region.h"
#include "region_fixture.h"
#include "store/index.h"
#include "store/names.h"
#include "store/store.h"
#include "test_util.h"

namespace gismo::testing {
namespace {

using namespace region;  // NOLINT: layout names are this file's vocabulary

constexpr int kObjects = 300;
constexpr uint32_t kDeadSlot = 3;
constexpr uint64_t kDeadSession = 7;

gismo_id_t ObjectIdOf(int i) { return IdFrom(0x5eed0000u + i, 42); }

// Runs fn in a forked child with an alarm: a hang is killed by SIGALRM and
// shows as a signal. Returns the wait status.
int RunBounded(const std::function<int()>& fn, unsigned seconds = 60) {
  return RunInChild([&] {
    alarm(seconds);
    return fn();
  });
}

std::string Describe(int status) {
  if (WIFSIGNALED(status)) {
    return std::string("killed by signal ") + strsignal(WTERMSIG(status)) +
           (WTERMSIG(status) == SIGALRM ? " (it hung)" : "");
  }
  return "exit status " + std::to_string(WEXITSTATUS(status));
}

// What the child reports in its exit status.
constexpr int kSawBadRegion = 0;  // at least one GISMO_ERR_BAD_REGION
constexpr int kNoBadRegion = 3;   // ran through, no BAD_REGION seen

class CorruptRegionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = "/dev/shm/" + UniqueName("corrupt");
    FormatOptions o;
    o.size = 64ull << 20;
    auto r = Region::Format(path_, o);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    region_ = std::move(*r);
    Populate();
  }
  void TearDown() override {
    region_.reset();
    unlink(path_.c_str());
  }

  // Sealed objects of every size class and some page runs, a third of them
  // deleted again (non-empty free lists and partial slabs), some unsealed
  // objects; then every slot is free again, as after clean departures.
  void Populate() {
    Region& r = *region_;
    r.slot(1).state.store(PackSlotState(SlotState::kActive, 1));
    store::Store s(r, 1, 1, 0);
    for (int i = 0; i < kObjects; ++i) {
      void* data = nullptr;
      const uint64_t size = i % 10 == 0 ? 40000 + i : 17 * i;
      ASSERT_TRUE(IsOk(s.Create(ObjectIdOf(i), size, "m", 1, &data)));
      std::memset(data, i & 0xff, size);
      if (i % 7 == 6) continue;  // left unsealed
      ASSERT_TRUE(IsOk(s.Seal(ObjectIdOf(i))));
      ASSERT_TRUE(IsOk(s.Release(ObjectIdOf(i))));
      if (i % 3 == 0) {
        ASSERT_TRUE(IsOk(s.Delete(ObjectIdOf(i))));
      }
    }
    // The slot goes back to free, keeping nothing (its objects stay).
    std::memset(static_cast<void*>(&r.slot(1)), 0, r.sb().client_slot_size);
  }

  // A client (slot kDeadSlot) that was fenced in the middle of an operation
  // on shard 0: recovering, holding the shard lock, with an undo log.
  void MakeRecoveringSlot() {
    Region& r = *region_;
    ClientSlotHeader& h = r.slot(kDeadSlot);
    h.state.store(PackSlotState(SlotState::kRecovering, kDeadSession));
    h.fenced_by.store(static_cast<uint64_t>(FenceReason::kOperator));
    h.held_locks[0].store(r.OffsetOf(&r.shard(0).lock));
    r.shard(0).lock.store(LockTag(kDeadSlot, kDeadSession));
  }

  std::vector<uint64_t> LiveSlotPositions() {
    std::vector<uint64_t> v;
    Region& r = *region_;
    for (uint32_t s = 0; s < r.num_shards(); ++s) {
      for (uint32_t i = 0; i < r.sb().slots_per_shard; ++i) {
        if (r.hash_slots(s)[i].load() != 0) v.push_back(uint64_t{s} << 32 | i);
      }
    }
    return v;
  }
  Word& HashSlotAt(uint64_t pos) const {
    return region_->hash_slots(static_cast<uint32_t>(pos >> 32))[pos & 0xffffffff];
  }

  // A client's whole repertoire on the region, as a client process would run
  // it (in a child): every call returns, BAD_REGION is what a corrupt region
  // should say.
  // Every object Populate left sealed is still in the store.
  static void ExpectSealedObjectsStay(store::Store& s) {
    for (int i = 0; i < kObjects; ++i) {
      if (i % 7 == 6 || i % 3 == 0) continue;  // unsealed or deleted by Populate
      bool contains = false;
      ASSERT_TRUE(IsOk(s.Contains(ObjectIdOf(i), &contains)));
      EXPECT_TRUE(contains) << i;
    }
  }

  void RunClient(bool expect_bad_region) {
    const std::string path = path_;
    const int status = RunBounded([&path] {
      auto opened = Region::Open(path);
      if (!opened.ok()) return opened.status().code() == GISMO_ERR_BAD_REGION ? 0 : 2;
      Region& r = **opened;
      const uint32_t slot = r.max_clients() - 1;
      r.slot(slot).state.store(PackSlotState(SlotState::kActive, 1));
      store::Store s(r, slot, 1, 0);
      r.sb().lock_wait_ms.store(50);  // a lock left held by a dead client: BUSY soon
      bool bad = false;
      auto note = [&bad](const Status& st) { bad |= st.code() == GISMO_ERR_BAD_REGION; };
      for (int i = 0; i < kObjects + 20; ++i) {
        const gismo_id_t id = ObjectIdOf(i);
        bool contains = false;
        note(s.Contains(id, &contains));
        gismo_object_info_t info;
        note(s.Stat(id, &info));
        store::GetResult got;
        note(s.TryGet(id, &got));
        if (got.found) {
          volatile uint8_t sum = 0;
          const auto* p = static_cast<const uint8_t*>(got.buffer.data);
          for (uint64_t k = 0; k < got.buffer.data_size; k += 4096) sum = sum + p[k];
          note(s.Release(id));
        }
        note(s.Delete(id));
        note(s.Abort(id));
        void* data = nullptr;
        const gismo_id_t fresh = IdFrom(0xf00d0000u + i, 7);
        const uint64_t size = i % 5 == 0 ? 70000 : 64 * (i % 100);
        Status c = s.Create(fresh, size, "meta", 4, &data);
        note(c);
        if (c.ok()) {
          std::memset(data, 1, size);
          note(s.Seal(fresh));
          note(s.Release(fresh));
          note(s.Delete(fresh));
        }
      }
      uint64_t n = 0;
      note(s.ForEach([&n](const gismo_object_info_t&) { ++n; }));
      gismo_usage_t usage;
      note(s.Usage(&usage));
      return bad ? kSawBadRegion : kNoBadRegion;
    });
    ASSERT_TRUE(WIFEXITED(status)) << "client: " << Describe(status);
    EXPECT_NE(WEXITSTATUS(status), 2) << "Region::Open failed with another code than BAD_REGION";
    if (expect_bad_region) {
      EXPECT_EQ(WEXITSTATUS(status), kSawBadRegion) << "no call said GISMO_ERR_BAD_REGION";
    }
  }

  // gismo-manager started on the region (it recovers a recovering slot at
  // start), then the `gismo` command against it. Both must end normally.
  void RunManagerAndCli() {
    region_.reset();  // unmapped: the manager opens the file itself
    const std::string sock = "/tmp/" + UniqueName("corrupt") + ".sock";
    Process mgr;
    SpawnOptions o;
    o.argv = {GISMO_MANAGER_BIN,  "--region",    path_,  "--listen",       "unix:" + sock,
              "--no-local-fence", "--log-level", "warn", "--lock-wait-ms", "50"};
    o.capture_stdout = true;
    o.parent_death_signal = SIGKILL;
    ASSERT_TRUE(mgr.Start(o)) << mgr.error();
    std::string ready;
    const bool started = mgr.ReadLineContaining("gismo-manager ready", 30, &ready);
    if (!started) {
      int status = 0;
      ASSERT_TRUE(mgr.WaitForExit(30, &status)) << "the manager neither started nor exited";
      EXPECT_TRUE(WIFEXITED(status)) << "manager at start: " << Describe(status);
      unlink(sock.c_str());
      return;
    }
    const std::vector<std::vector<std::string>> commands = {
        {"ls"},
        {"ls", "--json"},
        {"status"},
        {"status", "--json"},
        {"ls", "--state", "sealed", "--sort", "size"},
        {"stat", store::Hex(ObjectIdOf(1))},
        {"get", store::Hex(ObjectIdOf(1)), "-", "--timeout-ms", "0"},
        {"put", "--name", "after-corruption", "/etc/hostname"},
        {"rm", store::Hex(ObjectIdOf(2))},
    };
    for (const auto& args : commands) {
      Process cli;
      SpawnOptions c;
      c.argv = {GISMO_CLI_BIN};
      c.argv.insert(c.argv.end(), args.begin(), args.end());
      c.env = {"GISMO_ADDRESS=unix:" + sock};
      c.discard_stdout = true;
      c.stderr_path = "/dev/null";
      c.parent_death_signal = SIGKILL;
      ASSERT_TRUE(cli.Start(c)) << cli.error();
      int status = 0;
      if (!cli.WaitForExit(60, &status)) status = cli.KillAndWait(SIGKILL);
      std::string what = "gismo";
      for (const auto& a : args) what += " " + a;
      EXPECT_LT(ExitCode(status), 128) << what << ": " << Describe(status);
    }
    EXPECT_TRUE(mgr.running()) << "the manager died while serving the corrupt region";
    mgr.Signal(SIGTERM);
    int status = 0;
    if (!mgr.WaitForExit(30, &status)) status = mgr.KillAndWait(SIGKILL);
    EXPECT_TRUE(WIFEXITED(status)) << "manager: " << Describe(status);
    unlink(sock.c_str());
  }

  std::string path_;
  std::unique_ptr<Region> region_;
};

TEST_F(CorruptRegionTest, HashSlotsNamingRecordsOutOfRange) {
  const uint32_t rps = region_->records_per_shard();
  for (uint64_t pos : LiveSlotPositions()) {
    Word& w = HashSlotAt(pos);
    const uint64_t v = w.load();
    w.store((v & ~0xffffffffull) | ((pos & 1) ? uint64_t{rps} + 5 : 0xffffffffull));
  }
  RunClient(false);
  RunManagerAndCli();
}

TEST_F(CorruptRegionTest, IndexWhoseSlotsAreAllTaken) {
  std::mt19937_64 rng(16);
  for (uint32_t s = 0; s < region_->num_shards(); ++s) {
    for (uint32_t i = 0; i < region_->sb().slots_per_shard; ++i) {
      region_->hash_slots(s)[i].store(rng() | 1);
    }
  }
  RunClient(false);
  RunManagerAndCli();
}

TEST_F(CorruptRegionTest, RandomFlipsInHashSlots) {
  std::mt19937_64 rng(20260612);
  const std::vector<uint64_t> live = LiveSlotPositions();
  ASSERT_FALSE(live.empty());
  for (int k = 0; k < 2000; ++k) {
    Word& w = HashSlotAt(live[rng() % live.size()]);
    w.store(w.load() ^ (1ull << (rng() % 64)));
  }
  RunClient(false);
  RunManagerAndCli();
}

TEST_F(CorruptRegionTest, BadFreeListHeads) {
  Region& r = *region_;
  for (uint32_t s = 0; s < r.num_shards(); ++s) {
    // A record free list whose head, or whose second entry, is out of range.
    if (s % 2 == 0) {
      r.shard(s).free_head.store(uint64_t{r.records_per_shard()} + 100);
    } else if (uint64_t fh = r.shard(s).free_head.load(); fh != 0) {
      r.records(s)[fh - 1].heap_offset.store(1ull << 40);
    }
  }
  for (uint32_t c = 0; c < kNumClasses; ++c) {
    for (uint32_t st = 0; st < kStripes; ++st) {
      r.class_stripe(c, st).partial_head.store((1ull << 40) + c);
    }
  }
  RunClient(true);
  RunManagerAndCli();
}

TEST_F(CorruptRegionTest, BadRecordOffsetsAndSizes) {
  Region& r = *region_;
  int k = 0;
  for (uint64_t pos : LiveSlotPositions()) {
    const uint32_t shard = static_cast<uint32_t>(pos >> 32);
    ObjectRecord& rec = r.records(shard)[HashSlotLocal(HashSlotAt(pos).load())];
    switch (k++ % 3) {
      case 0:
        rec.heap_offset.store((1ull << 50) + 64);
        break;
      case 1:
        rec.heap_offset.store(r.heap_size() - 64);
        rec.sizes.store(PackSizes(1ull << 30, 100));
        break;
      default:
        rec.sizes.store(~0ull);
        break;
    }
  }
  RunClient(true);
  RunManagerAndCli();
}

TEST_F(CorruptRegionTest, BadPageDescriptors) {
  Region& r = *region_;
  for (uint64_t p = 0; p < r.num_pages(); ++p) {
    PageDesc& d = r.page(p);
    if (d.info.load() == 0) continue;
    d.info.store(PackPageInfo(PageKind::kSlab, 200 + p % 50, 77, 0));
    d.prev.store(~0ull);
    d.next.store(1ull << 60);
    d.used.store(0);
  }
  RunClient(true);
  RunManagerAndCli();
}

// Event-ring entries whose state words belong to no seq the ring's head
// allows there (a seq ahead of head, a claim of a seq far away): a seal or
// delete must say BAD_REGION, not wait forever for the entry to change.
TEST_F(CorruptRegionTest, EventEntriesOfNoSeqNearHead) {
  Region& r = *region_;
  const uint64_t cap = r.sb().event_ring_capacity;
  const uint64_t head = r.event_ring().head.load();
  for (uint64_t k = 0; k < cap; ++k) {
    const uint64_t seq = head + k;
    r.event(seq).seq.store(k % 2 ? EventFinalWord(EventState::kPublished, seq + 3 * cap)
                                 : EventOwnedWord(EventState::kClaimed, 1, seq + 5));
  }
  RunClient(true);
  RunManagerAndCli();
}

// A recovering client whose undo log, held table and current slabs are
// garbage: the manager recovers it at start.
TEST_F(CorruptRegionTest, BadUndoEntriesOfARecoveringClient) {
  Region& r = *region_;
  MakeRecoveringSlot();
  ClientSlotHeader& h = r.slot(kDeadSlot);
  LogEntry* log = r.log(kDeadSlot);
  // Stamped with the slot's epoch: the prefix recovery undoes.
  const uint64_t stamp = LogStamp(h.log_epoch.load());
  auto target = [&](LogKind k, uint64_t off) {
    return StampLogTarget(PackLogTarget(k, off), stamp);
  };
  // Words within the metadata restored to values that point nowhere.
  log[0].target.store(target(LogKind::kWord, r.OffsetOf(&r.shard(0).free_head)));
  log[0].value.store(1ull << 40);
  log[1].target.store(target(LogKind::kWord, r.OffsetOf(&r.current_slabs(kDeadSlot)[0])));
  log[1].value.store(1ull << 40);
  log[2].target.store(target(LogKind::kWord, r.OffsetOf(&r.class_stripe(3, 1).partial_head)));
  log[2].value.store(~0ull);
  log[3].target.store(target(LogKind::kBitsSet, r.sb().page_bitmap_offset));
  log[3].value.store(~0ull);
  log[4].target.store(target(LogKind::kWord, r.OffsetOf(&r.hash_slots(0)[0])));
  log[4].value.store(PackHashSlot(0x1234, r.records_per_shard() + 9));
  log[5].target.store(StampLogTarget(~0ull, stamp));
  log[5].value.store(~0ull);
  log[6].target.store(target(LogKind::kWord, r.OffsetOf(&r.records(0)[0].heap_offset)));
  log[6].value.store(~0ull);
  log[7].target.store(target(LogKind::kWord, r.OffsetOf(&r.records(0)[0].info)));
  log[7].value.store(PackInfo(ObjectState::kDeleting, 0, 0));
  // Held references to records that are not there, or garbage.
  HeldEntry* held = r.held(kDeadSlot);
  held[0].key.store(PackHeldKey(~0u - 1, 0));
  held[0].count.store(1);
  held[1].key.store(PackHeldKey(5, kHeldUnsealedCreator));
  held[1].count.store(~0ull);
  held[2].key.store(PackHeldKey(0, 0));
  held[2].count.store(3);
  h.held_count.store(3);
  for (uint32_t c = 0; c < kNumClasses; ++c) r.current_slabs(kDeadSlot)[c].store(~0ull - c);
  RunManagerAndCli();
}

// An event ring whose head is at the end of the seq space: the manager's
// scan for events a dead producer left (at start, and recovering a fenced
// client) must end; it looped forever when it compared seqs with a last one.
TEST_F(CorruptRegionTest, AnEventRingHeadAtTheEndOfTheSeqSpace) {
  MakeRecoveringSlot();
  region_->event_ring().head.store(~0ull);
  RunManagerAndCli();
}

// A sealed record of no bytes whose block is at the heap's end: deleting it
// is BAD_REGION, and the page descriptor one past the array (the padding
// or data after it) is neither read as a slab nor written.
TEST_F(CorruptRegionTest, AnEmptyObjectsBlockAtTheHeapsEnd) {
  Region& r = *region_;
  r.slot(1).state.store(PackSlotState(SlotState::kActive, 1));
  store::Store s(r, 1, 1, 0);
  const gismo_id_t id = IdFrom(0xe0e0, 1);
  void* data = nullptr;
  ASSERT_TRUE(IsOk(s.Create(id, 0, nullptr, 0, &data)));
  ASSERT_TRUE(IsOk(s.Seal(id)));
  ASSERT_TRUE(IsOk(s.Release(id)));
  store::Located loc;
  const uint64_t h = store::HashId(id);
  ASSERT_TRUE(store::Find(r, r.ShardOf(h), h, id, &loc));
  loc.rec->heap_offset.store(r.heap_size());
  // Past the descriptor array: what the descriptor of a slab of the
  // smallest class with its first two blocks in use would hold.
  PageDesc& past = *reinterpret_cast<PageDesc*>(&r.page(r.num_pages() - 1) + 1);
  past.info.store(PackPageInfo(PageKind::kSlab, 0, 0, 0));
  past.used.store(2);
  past.bitmap[0].store(3);
  PageDesc before;
  std::memcpy(static_cast<void*>(&before), &past, sizeof before);
  EXPECT_EQ(s.Delete(id).code(), GISMO_ERR_BAD_REGION);
  EXPECT_EQ(std::memcmp(&before, &past, sizeof before), 0)
      << "the descriptor past the array was written";
}

// Shards and the name table whose next never-used record or entry is a
// live one (next_unused lowered, no free list): a create or a bind there is
// BAD_REGION instead of taking the live record or the bound entry.
TEST_F(CorruptRegionTest, ANextNeverUsedRecordOrEntryThatIsLive) {
  Region& r = *region_;
  r.slot(1).state.store(PackSlotState(SlotState::kActive, 1));
  store::Store s(r, 1, 1, 0);
  store::Names names(r, 1, 1);
  const gismo_id_t target = ObjectIdOf(1);  // sealed, not deleted (Populate)
  ASSERT_TRUE(IsOk(names.Bind("first", target, store::BindMode::kIfUnbound, nullptr)));
  r.names().next_unused.store(0);
  r.names().free_head.store(0);
  EXPECT_EQ(names.Bind("second", target, store::BindMode::kIfUnbound, nullptr).code(),
            GISMO_ERR_BAD_REGION);
  store::NameBinding first;
  ASSERT_TRUE(IsOk(names.Lookup("first", &first)));
  EXPECT_EQ(std::memcmp(first.id.bytes, target.bytes, sizeof target.bytes), 0);
  for (uint32_t sh = 0; sh < r.num_shards(); ++sh) {
    if (r.shard(sh).count.load() == 0) continue;
    r.shard(sh).next_unused.store(0);
    r.shard(sh).free_head.store(0);
  }
  // Live records 0 of the shards with objects: creates of new ids must
  // say BAD_REGION wherever they land in such a shard, and the objects stay.
  int refused = 0;
  for (int i = 0; i < 64; ++i) {
    const gismo_id_t fresh = IdFrom(0xabc000u + i, 9);
    const uint32_t sh = r.ShardOf(store::HashId(fresh));
    if (r.shard(sh).count.load() == 0) continue;
    void* data = nullptr;
    const Status st = s.Create(fresh, 8, nullptr, 0, &data);
    EXPECT_EQ(st.code(), GISMO_ERR_BAD_REGION) << st.ToString();
    refused += st.code() == GISMO_ERR_BAD_REGION;
  }
  EXPECT_GT(refused, 0);
  ExpectSealedObjectsStay(s);
}

// Shards and the name table that say they used more records or entries
// than they have: a create or a bind there is BAD_REGION, not "full" (a
// full shard's create evicts objects to make room).
TEST_F(CorruptRegionTest, ANextNeverUsedCountPastTheEnd) {
  Region& r = *region_;
  r.slot(1).state.store(PackSlotState(SlotState::kActive, 1));
  store::Store s(r, 1, 1, 0);
  store::Names names(r, 1, 1);
  for (uint32_t sh = 0; sh < r.num_shards(); ++sh) {
    r.shard(sh).next_unused.store(r.records_per_shard() + 1);
    r.shard(sh).free_head.store(0);
  }
  r.names().next_unused.store(r.names_capacity() + 1);
  r.names().free_head.store(0);
  for (int i = 0; i < 16; ++i) {
    void* data = nullptr;
    const Status st = s.Create(IdFrom(0xabc100u + i, 9), 8, nullptr, 0, &data);
    EXPECT_EQ(st.code(), GISMO_ERR_BAD_REGION) << st.ToString();
  }
  EXPECT_EQ(names.Bind("n", ObjectIdOf(1), store::BindMode::kIfUnbound, nullptr).code(),
            GISMO_ERR_BAD_REGION);
  ExpectSealedObjectsStay(s);
}

// An event entry claimed, a lap before head, by a slot the region does not
// have (no client can finish it, no recovery will), and a head past the 2^62
// seqs an entry's word holds (every entry would look free, every event fall
// below the subscribers' cursors): a seal says BAD_REGION, not BUSY after a
// wait, nor success.
TEST_F(CorruptRegionTest, AnEventEntryClaimedByNoSlotAndAHeadPastTheSeqSpace) {
  Region& r = *region_;
  r.slot(1).state.store(PackSlotState(SlotState::kActive, 1));
  store::Store s(r, 1, 1, 0);
  const gismo_id_t id = IdFrom(0xc1a1, 1);
  void* data = nullptr;
  ASSERT_TRUE(IsOk(s.Create(id, 8, nullptr, 0, &data)));
  const uint64_t cap = r.sb().event_ring_capacity;
  const uint64_t head = r.event_ring().head.load();
  const uint64_t word = r.event(head).seq.load();
  ASSERT_LT(r.max_clients(), 65535u);
  r.event(head).seq.store(EventOwnedWord(EventState::kClaimed, 65535, head - cap));
  EXPECT_EQ(s.Seal(id).code(), GISMO_ERR_BAD_REGION);
  r.event(head).seq.store(word);
  r.event_ring().head.store((1ull << 62) + 5);
  EXPECT_EQ(s.Seal(id).code(), GISMO_ERR_BAD_REGION);
  r.event_ring().head.store(head);
  EXPECT_TRUE(IsOk(s.Seal(id)));
}

// A list of the owner's helper slots that names one slot six times, in a
// region of four slots: the usage reports no slot left for clients instead
// of a count wrapped below zero.
TEST(CorruptRegionUsageTest, AHelperListNamingASlotTwiceLeavesNoClientsNotBillions) {
  const std::string path = "/dev/shm/" + UniqueName("helpers");
  FormatOptions o;
  o.size = 16ull << 20;
  o.max_clients = 4;
  auto formatted = Region::Format(path, o);
  ASSERT_TRUE(formatted.ok()) << formatted.status().ToString();
  Region& r = **formatted;
  for (uint32_t k = 1; k < kMaxOwnerThreads; ++k) r.sb().owner_helpers.slots[k] = 1 + 1;
  r.slot(3).state.store(PackSlotState(SlotState::kActive, 1));
  store::Store s(r, 3, 1, 0);
  gismo_usage_t usage;
  ASSERT_TRUE(IsOk(s.Usage(&usage)));
  EXPECT_EQ(usage.max_clients, 0u);
  formatted->reset();
  unlink(path.c_str());
}

}  // namespace
}  // namespace gismo::testing
