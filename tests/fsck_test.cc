// The region checker: silent on sound regions, specific on broken ones.
#include "fsck/fsck.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "manager/recovery.h"
#include "region/cache_lines.h"
#include "region_fixture.h"
#include "store/index.h"
#include "store/names.h"
#include "store/store.h"
#include "store/txn.h"

namespace gismo::fsck {
namespace {

using gismo::testing::IdFrom;

class FsckTest : public gismo::testing::RegionFixture {
 protected:
  void SetUp() override {
    RegionFixture::SetUp();
    a_ = Activate(1);
    b_ = Activate(2);
    void* d;
    for (int i = 0; i < 20; ++i) {
      const Status s = a_->Create(IdFrom(i), i % 3 == 0 ? 100000 : 500, "m", 1, &d);
      ASSERT_TRUE(s.ok()) << i << ": " << s.ToString();
      if (i % 5 != 0) {
        ASSERT_TRUE(a_->Seal(IdFrom(i)).ok());  // 0, 5, 10, 15 stay unsealed
      }
    }
    store::GetResult g;
    ASSERT_TRUE(b_->TryGet(IdFrom(1), &g).ok());
    ASSERT_TRUE(g.found);
    ASSERT_TRUE(a_->Release(IdFrom(1)).ok());
    ASSERT_TRUE(a_->Delete(IdFrom(1)).ok());  // deferred: b holds it
  }
  std::string Problems(const Report& r) {
    std::string all;
    for (const auto& p : r.problems) all += p + "\n";
    return all;
  }
  bool Mentions(const Report& r, const std::string& what) {
    for (const auto& p : r.problems) {
      if (p.find(what) != std::string::npos) return true;
    }
    return false;
  }
  std::unique_ptr<store::Store> a_, b_;
};

TEST_F(FsckTest, SoundRegionOfflineAndOnline) {
  Report r = *Check(*region_, nullptr);
  EXPECT_TRUE(r.sound()) << Problems(r);
  EXPECT_EQ(r.objects, 20u);
  EXPECT_EQ(r.unsealed, 4u);
  EXPECT_EQ(r.deleting, 1u);
  EXPECT_EQ(r.live_clients, 2u);
  // Offline through a read-only mapping (gismo-fsck's): the same report.
  auto read_only = region::Region::Open(region_->path(), region::Region::Access::kReadOnly);
  ASSERT_TRUE(read_only.ok()) << read_only.status().ToString();
  Report ro = *Check(**read_only, nullptr);
  EXPECT_TRUE(ro.sound()) << Problems(ro);
  EXPECT_EQ(ro.objects, r.objects);
  EXPECT_EQ(ro.unsealed, r.unsealed);
  EXPECT_EQ(ro.deleting, r.deleting);
  EXPECT_EQ(ro.live_clients, r.live_clients);
  EXPECT_EQ(ro.held_references, r.held_references);
  LockAs as{2, 1};
  auto checked = Check(*region_, &as);
  ASSERT_TRUE(checked.ok()) << checked.status().ToString();
  Report online = *checked;
  EXPECT_TRUE(online.sound()) << Problems(online);
  EXPECT_TRUE(online.stopped_the_world);
  EXPECT_EQ(region_->shard(0).lock.load(), 0u);  // all released
}

TEST_F(FsckTest, FindsLeakedSlabBlock) {
  // A block marked in use that no object owns.
  gismo_object_info_t info;
  ASSERT_TRUE(a_->Stat(IdFrom(2), &info).ok());
  for (uint64_t p = 0; p < region_->num_pages(); ++p) {
    auto& d = region_->page(p);
    if (region::PageInfoKind(d.info.load()) == region::PageKind::kSlab) {
      d.bitmap[0].fetch_or(1ull << 20);  // within every class's capacity, unused here
      break;
    }
  }
  Report r = *Check(*region_, nullptr);
  EXPECT_FALSE(r.sound());
  EXPECT_TRUE(Mentions(r, "leaked blocks")) << Problems(r);
}

TEST_F(FsckTest, FindsWrongReferenceCount) {
  store::GetResult g;
  ASSERT_TRUE(b_->TryGet(IdFrom(2), &g).ok());
  region_->slot(2).held_count.fetch_add(0);
  // Drop b's held entry behind the store's back: the count no longer matches.
  auto* held = region_->held(2);
  for (uint32_t k = 0; k < region_->sb().held_capacity; ++k) held[k].count.store(0);
  Report r = *Check(*region_, nullptr);
  EXPECT_TRUE(Mentions(r, "reference count")) << Problems(r);
}

TEST_F(FsckTest, FindsLockOfDeadClientAndLostPages) {
  region_->shard(3).lock.store(region::LockTag(7, 1));
  region_->alloc().free_pages.fetch_sub(1);
  Report r = *Check(*region_, nullptr);
  EXPECT_TRUE(Mentions(r, "held by client slot 7")) << Problems(r);
  EXPECT_TRUE(Mentions(r, "free pages")) << Problems(r);
}

TEST_F(FsckTest, FindsUnsealedObjectOfDepartedClient) {
  // Slot 1 disappears without recovery: its unsealed objects are orphans.
  region_->slot(1).state.store(0);
  Report r = *Check(*region_, nullptr);
  EXPECT_TRUE(Mentions(r, "is unsealed but its creator")) << Problems(r);
  EXPECT_TRUE(Mentions(r, "still lists")) << Problems(r);
  // Recovery puts it right.
  region_->slot(1).state.store(static_cast<uint64_t>(region::SlotState::kActive) | 1 << 8);
  ASSERT_TRUE(manager::RecoverSlot(*region_, 1, 0, 1).complete);
  region_->slot(1).state.store(0);
  Report after = *Check(*region_, nullptr);
  EXPECT_TRUE(after.sound()) << Problems(after);
  EXPECT_EQ(after.unsealed, 0u);
}

// An owned object outlives its owner only if its owner's table stops listing
// it (a slot freed without recovery): reported. Recovery deletes it instead,
// and an owned entry without references is no problem.
TEST_F(FsckTest, FindsOwnedObjectItsOwnerDoesNotList) {
  void* d;
  const gismo_id_t owned = IdFrom(100), held = IdFrom(101);
  ASSERT_TRUE(b_->Create(owned, 500, "m", 1, GISMO_CREATE_OWNED, &d).ok());
  ASSERT_TRUE(b_->Seal(owned).ok());
  ASSERT_TRUE(b_->Release(owned).ok());  // owned, no reference: count 0
  ASSERT_TRUE(b_->Create(held, 500, "m", 1, GISMO_CREATE_OWNED, &d).ok());
  ASSERT_TRUE(b_->Seal(held).ok());
  ASSERT_TRUE(b_->Release(held).ok());
  store::GetResult g;
  ASSERT_TRUE(a_->TryGet(held, &g).ok());  // a reader keeps it past the owner
  Report sound = *Check(*region_, nullptr);
  EXPECT_TRUE(sound.sound()) << Problems(sound);
  // Slot 2 disappears without recovery.
  region_->slot(2).state.store(0);
  Report r = *Check(*region_, nullptr);
  EXPECT_TRUE(Mentions(r, "which does not list it")) << Problems(r);
  region_->slot(2).state.store(static_cast<uint64_t>(region::SlotState::kActive) | 1 << 8);
  const manager::RecoveryReport rep = manager::RecoverSlot(*region_, 2, 0, 1);
  ASSERT_TRUE(rep.complete);
  EXPECT_EQ(rep.owned_deleted, 2u);
  region_->slot(2).state.store(0);
  Report after = *Check(*region_, nullptr);
  EXPECT_TRUE(after.sound()) << Problems(after);
  gismo_object_info_t info;
  EXPECT_EQ(a_->Stat(owned, &info).code(), GISMO_ERR_OBJECT_NOT_FOUND);
  ASSERT_TRUE(a_->Stat(held, &info).ok());
  EXPECT_EQ(info.state, GISMO_STATE_DELETING);
  ASSERT_TRUE(a_->Release(held).ok());
  EXPECT_EQ(a_->Stat(held, &info).code(), GISMO_ERR_OBJECT_NOT_FOUND);
}

// Every lock word of the region, with who holds it (0: free).
std::vector<uint64_t> LockTags(const region::Region& r) {
  std::vector<uint64_t> tags;
  store::ForEachLock(r, [&](region::Word& l) { tags.push_back(l.load()); });
  return tags;
}

// An online check cannot stop the world while a client holds a lock past
// the wait: it says which lock and who holds it, and gives back every lock
// it took (the world does not stay stopped behind a failed check).
TEST_F(FsckTest, OnlineCheckGivesUpOnABusyLockAndReleasesWhatItTook) {
  // Slot 1 holds the page lock, the last in the global order.
  store::Txn holder(*region_, 1, 1, region::OpKind::kNone);
  ASSERT_TRUE(holder.Lock(region_->alloc().page_lock));
  LockAs as{2, 1, /*lock_wait_ms=*/30};
  auto checked = Check(*region_, &as);
  ASSERT_FALSE(checked.ok());
  EXPECT_EQ(checked.status().code(), GISMO_ERR_BUSY);
  EXPECT_NE(checked.status().message().find("page heap"), std::string::npos)
      << checked.status().message();
  EXPECT_NE(checked.status().message().find("client slot 1"), std::string::npos)
      << checked.status().message();
  const uint64_t page_lock_offset = region_->OffsetOf(&region_->alloc().page_lock);
  store::ForEachLock(*region_, [&](region::Word& l) {
    if (region_->OffsetOf(&l) == page_lock_offset) return;
    EXPECT_EQ(l.load(), 0u) << store::DescribeLock(*region_, region_->OffsetOf(&l));
  });
  for (auto& h : region_->slot(2).held_locks) EXPECT_EQ(h.load(), 0u);
  ASSERT_TRUE(holder.Commit().ok());
  auto again = Check(*region_, &as);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_TRUE(again->sound()) << Problems(*again);
}

// A checker that dies with the world stopped: its slot says it held every
// lock, so recovering its slot frees them all (a list of eight offsets could
// not name them).
TEST_F(FsckTest, RecoveryFreesEveryLockOfADeadOnlineChecker) {
  const int status = gismo::testing::RunInChild([&] {
    store::Txn* txn = new store::Txn(*region_, 2, 1, region::OpKind::kCheck);
    if (!txn->LockWorld()) return 1;
    _exit(0);  // dies holding them: no destructor, no rollback
  });
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  const uint64_t tag = region::LockTag(2, 1);
  for (uint64_t t : LockTags(*region_)) ASSERT_EQ(t, tag);
  EXPECT_GT(store::UndoDeadClient(*region_, 2), region::kMaxHeldLocks);
  for (uint64_t t : LockTags(*region_)) EXPECT_EQ(t, 0u);
  for (auto& h : region_->slot(2).held_locks) EXPECT_EQ(h.load(), 0u);
  EXPECT_TRUE(Check(*region_, nullptr)->sound());
}

// A checker whose session the manager ended takes nothing more.
TEST_F(FsckTest, OnlineCheckOfAnEndedSessionChangesNothing) {
  region_->slot(2).state.store(region::PackSlotState(region::SlotState::kSuspected, 1));
  LockAs as{2, 1};
  auto checked = Check(*region_, &as);
  ASSERT_FALSE(checked.ok());
  EXPECT_EQ(checked.status().code(), GISMO_ERR_CONNECTION);
  for (uint64_t t : LockTags(*region_)) EXPECT_EQ(t, 0u);
}

// Names: a sound table is counted (a name whose object is gone too), and a
// broken one is reported: a wrong count, a leaked entry, a corrupt length.
TEST_F(FsckTest, ChecksTheNameTable) {
  store::Names names(*region_, 1, 1);
  ASSERT_TRUE(names.Bind("n2", IdFrom(2), store::BindMode::kAlways, nullptr).ok());
  ASSERT_TRUE(names.Bind("n3", IdFrom(3), store::BindMode::kAlways, nullptr).ok());
  ASSERT_TRUE(names.Bind("n4", IdFrom(4), store::BindMode::kAlways, nullptr).ok());
  ASSERT_TRUE(names.Unbind("n4", nullptr).ok());
  ASSERT_TRUE(a_->Release(IdFrom(3)).ok());
  ASSERT_TRUE(a_->Delete(IdFrom(3)).ok());  // freed now: the name dangles
  Report r = *Check(*region_, nullptr);
  EXPECT_TRUE(r.sound()) << Problems(r);
  EXPECT_EQ(r.names, 2u);
  EXPECT_EQ(r.dangling_names, 1u);

  region::NameTableHeader& t = region_->names();
  t.count.fetch_add(1);
  r = *Check(*region_, nullptr);
  EXPECT_TRUE(Mentions(r, "name table counts 3 names but holds 2")) << Problems(r);
  t.count.fetch_sub(1);

  t.free_head.store(0);  // the unbound entry is no longer on the free list
  r = *Check(*region_, nullptr);
  EXPECT_TRUE(Mentions(r, "leaked entries")) << Problems(r);
  t.free_head.store(3);

  store::NameLocated nl;
  ASSERT_TRUE(store::FindName(*region_, store::HashName("n2"), "n2", &nl));
  nl.e->info.store(region::kMaxNameLength + 1);
  r = *Check(*region_, nullptr);
  EXPECT_TRUE(Mentions(r, "has a name of 193 bytes")) << Problems(r);
  nl.e->info.store(2);
  r = *Check(*region_, nullptr);
  EXPECT_TRUE(r.sound()) << Problems(r);
}

// An event ring entry holding the end of an event past the head:
// the next seal or delete to reach it finds it in no state it may take and
// fails (BAD_REGION), so fsck must not call the region sound.
TEST_F(FsckTest, FindsAnEventEntryEndedPastTheHead) {
  const uint64_t head = region_->event_ring().head.load();
  const uint64_t cap = region_->fixed().event_ring_capacity;
  region_->event(head).seq.store(
      region::EventFinalWord(region::EventState::kPublished, head + cap));
  Report r = *Check(*region_, nullptr);
  EXPECT_FALSE(r.sound());
  EXPECT_TRUE(Mentions(r, "is past the ring's head")) << Problems(r);
  EXPECT_EQ(a_->Seal(IdFrom(0)).code(), GISMO_ERR_BAD_REGION);
}

// The next never-used record of a shard, or entry of the name table, that
// is not free: the create or bind that takes it fails (BAD_REGION).
TEST_F(FsckTest, FindsANeverUsedRecordOrNameEntryThatIsNotFree) {
  region::ShardHeader& sh = region_->shard(0);
  const uint64_t nu = sh.next_unused.load();
  ASSERT_LT(nu, region_->records_per_shard());
  region_->records(0)[nu].info.store(region::PackInfo(region::ObjectState::kSealed, 1, 0));
  const uint64_t entry = region_->names().next_unused.load();
  ASSERT_LT(entry, region_->names_capacity());
  region_->name_entries()[entry].info.store(3);
  Report r = *Check(*region_, nullptr);
  EXPECT_FALSE(r.sound());
  EXPECT_TRUE(Mentions(r, "shard 0: record " + std::to_string(nu) + ", never used")) << Problems(r);
  EXPECT_TRUE(Mentions(r, "name table: entry " + std::to_string(entry) + ", never used"))
      << Problems(r);
}

// A held entry a lookup from its home slot does not reach (an empty slot
// before it): its reference can never be released ("not held"), and fsck
// summed the counts only.
TEST_F(FsckTest, FindsAHeldEntryALookupCannotFind) {
  region::HeldEntry* held = region_->held(2);  // b's: its reference to object 1
  const uint32_t cap = region_->sb().held_capacity;
  uint32_t k = 0;
  while (k < cap && held[k].key.load() == 0) ++k;
  ASSERT_LT(k, cap);
  const uint64_t key = held[k].key.load(), count = held[k].count.load();
  const uint32_t home = region::HeldHome(region::PackHeldKey(region::HeldKeyGlobal(key), 0), cap);
  const uint32_t moved = (home + 2) & (cap - 1);
  ASSERT_EQ(held[(home + 1) & (cap - 1)].key.load(), 0u);
  ASSERT_EQ(held[moved].key.load(), 0u);
  held[k].key.store(0);
  held[k].count.store(0);
  held[moved].key.store(key);
  held[moved].count.store(count);
  Report r = *Check(*region_, nullptr);
  EXPECT_FALSE(r.sound());
  EXPECT_TRUE(Mentions(r, "a lookup does not find it")) << Problems(r);
  EXPECT_EQ(b_->Release(IdFrom(1)).code(), GISMO_ERR_NOT_HELD);
}

// A page run whose length is near 2^64 (a corrupt or hostile descriptor):
// page + length wraps below the page count, and a walk that then adds the
// length moves backwards and never ends. The check reports the page and
// ends. It runs in a child under an alarm, so that a regression fails here
// instead of hanging the suite.
TEST_F(FsckTest, HugeRunLengthIsReportedAndTheCheckEnds) {
  const uint64_t pages = region_->num_pages();
  uint64_t p = pages;
  for (uint64_t q = pages - 1; q >= 8; --q) {
    if (region::PageInfoKind(region_->page(q).info.load()) == region::PageKind::kFree) {
      p = q;
      break;
    }
  }
  ASSERT_LT(p, pages);
  region_->page(p).info.store(region::PackPageInfo(region::PageKind::kRun, 0, 0, 0));
  region_->page(p).used.store(~uint64_t{0} - 4);  // 2^64 - 5: p + n wraps to p - 5
  const std::string want = "page run at page " + std::to_string(p) + " has a bad length";
  const int status = gismo::testing::RunInChild([&] {
    alarm(30);
    const Report r = *Check(*region_, nullptr);
    if (Mentions(r, want)) return 0;
    fprintf(stderr, "%s", Problems(r).c_str());
    return 1;
  });
  ASSERT_TRUE(WIFEXITED(status)) << "the check did not end (killed by signal "
                                 << (WIFSIGNALED(status) ? WTERMSIG(status) : 0) << ")";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "not reported: " << want;
}

// An index entry kMaxProbe or more slots past its home, with no empty slot
// before it: Find stops short of it, so its object cannot be found (a create
// of its id could index a second record). Built from a full run of
// kMaxProbe + 1 slots, each object at its own home, by giving the last one
// an id whose home is the run's first slot.
TEST_F(FsckTest, FindsIndexEntryBeyondTheProbeLimit) {
  const uint32_t mask = region_->sb().slots_per_shard - 1;
  const uint32_t run = region::kMaxProbe + 1;
  // A shard and a first slot h whose run [h, h + run) is empty.
  uint32_t shard = 0, h = 0;
  for (uint64_t i = 0;; ++i) {
    ASSERT_LT(i, 1u << 20);
    const uint64_t hash = store::HashId(IdFrom(i, 4242));
    shard = region_->ShardOf(hash);
    h = static_cast<uint32_t>(hash) & mask;
    bool empty = true;
    for (uint32_t k = 0; k < run; ++k) {
      empty = empty && region_->hash_slots(shard)[(h + k) & mask].load() == 0;
    }
    if (empty) break;
  }
  // An id for each home h + k of the run, and one more (`far`) of home h.
  std::vector<gismo_id_t> at(run);
  std::vector<bool> found(run, false);
  uint32_t missing = run;
  bool have_far = false;
  gismo_id_t far{};
  for (uint64_t i = 0; missing != 0 || !have_far; ++i) {
    ASSERT_LT(i, 1ull << 32);
    const gismo_id_t id = IdFrom(i, 777);
    const uint64_t hash = store::HashId(id);
    if (region_->ShardOf(hash) != shard) continue;
    const uint32_t k = ((static_cast<uint32_t>(hash) & mask) - h) & mask;
    if (k >= run) continue;
    if (!found[k]) {
      found[k] = true;
      at[k] = id;
      --missing;
    } else if (k == 0 && !have_far) {
      far = id;
      have_far = true;
    }
  }
  void* d;
  for (uint32_t k = 0; k < run; ++k) {
    ASSERT_TRUE(a_->Create(at[k], 8, nullptr, 0, &d).ok()) << k;
    ASSERT_TRUE(a_->Seal(at[k]).ok());
    ASSERT_TRUE(a_->Release(at[k]).ok());
    const uint64_t v = region_->hash_slots(shard)[(h + k) & mask].load();
    ASSERT_EQ(region::HashSlotHash(v), static_cast<uint32_t>(store::HashId(at[k]))) << k;
  }
  Report before = *Check(*region_, nullptr);
  EXPECT_TRUE(before.sound()) << Problems(before);
  // The last object of the run becomes `far`: kMaxProbe slots past its home.
  region::Word& last = region_->hash_slots(shard)[(h + run - 1) & mask];
  const uint32_t local = region::HashSlotLocal(last.load());
  const region::IdWords x = store::ToWords(far);
  for (int k = 0; k < 3; ++k) region_->records(shard)[local].id[k].store(x.w[k]);
  last.store(region::PackHashSlot(store::HashId(far), local));
  bool contains = true;
  ASSERT_TRUE(a_->Contains(far, &contains).ok());
  EXPECT_FALSE(contains) << "a lookup reached past the probe limit";
  Report r = *Check(*region_, nullptr);
  EXPECT_FALSE(r.sound());
  EXPECT_TRUE(Mentions(r, "beyond the probe limit")) << Problems(r);
}

// A non-coherent region's candidate line holding a ticket at or above 2^63,
// which no candidate takes (region/owner_election.h, T1 and T2).
class FsckNonCoherentTest : public gismo::testing::RegionFixture {
 protected:
  void SetUp() override {
    region::FormatOptions o;
    o.coherence = region::CoherenceMode::kNonCoherent;
    Format(o);
  }
};

TEST_F(FsckNonCoherentTest, FindsCorruptElectionTicket) {
  Report sound = *Check(*region_, nullptr);
  for (const auto& p : sound.problems) EXPECT_EQ(p.find("ticket"), std::string::npos) << p;
  region::CandidateLine& line = region_->sb().candidates[3];
  line.ticket = ~uint64_t{0};
  region::InvalidateLines(&line, sizeof(line));  // drop this host's stale copy, if any
  const std::string want =
      "candidate line 3 of the owner election holds ticket 18446744073709551615";
  Report r = *Check(*region_, nullptr);
  bool mentioned = false;
  for (const auto& p : r.problems) mentioned = mentioned || p.find(want) != std::string::npos;
  EXPECT_TRUE(mentioned) << want;
  // Through a read-only mapping (gismo-fsck offline), which invalidates
  // the lines it reads too.
  auto read_only = region::Region::Open(region_->path(), region::Region::Access::kReadOnly);
  ASSERT_TRUE(read_only.ok()) << read_only.status().ToString();
  EXPECT_EQ(Check(**read_only, nullptr)->problems, r.problems);
  line.ticket = 5;  // a valid ticket (of a candidate that is waiting or serves)
  r = *Check(*region_, nullptr);
  for (const auto& p : r.problems) EXPECT_EQ(p.find("ticket"), std::string::npos) << p;
}

}  // namespace
}  // namespace gismo::fsck
