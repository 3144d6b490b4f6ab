// The undo log: rollback in-process, and recovery of a client that died
// inside a transaction.
#include "store/txn.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "region_fixture.h"

namespace gismo::store {
namespace {

using region::OpKind;
using region::Word;

class TxnTest : public gismo::testing::RegionFixture {};

TEST_F(TxnTest, RollbackRestoresWordsAndBits) {
  auto st = Activate(1);
  Word* bm = region_->page_bitmap();
  Word& w = region_->alloc().hint;
  uint64_t bits_before = bm[0].load(), w_before = w.load();
  {
    Txn txn(*region_, 1, 1, OpKind::kNone);
    ASSERT_TRUE(txn.Lock(region_->alloc().page_lock));
    txn.Write(w, 777);
    txn.SetBits(bm, 3, 70);
    EXPECT_EQ(w.load(), 777u);
    EXPECT_NE(bm[0].load(), bits_before);
    // Destroyed without commit: rolled back, lock released.
  }
  EXPECT_EQ(w.load(), w_before);
  EXPECT_EQ(bm[0].load(), bits_before);
  EXPECT_EQ(bm[1].load(), 0u);
  EXPECT_EQ(region_->alloc().page_lock.load(), 0u);
  EXPECT_EQ(LoggedEntries(*region_, 1), 0u);
}

TEST_F(TxnTest, CommitKeepsWritesAndReleasesLocks) {
  auto st = Activate(1);
  Word& w = region_->alloc().hint;
  Txn txn(*region_, 1, 1, OpKind::kNone);
  ASSERT_TRUE(txn.Lock(region_->alloc().page_lock));
  EXPECT_TRUE(txn.Holds(region_->alloc().page_lock));
  txn.Write(w, 5);
  EXPECT_TRUE(txn.Commit().ok());
  EXPECT_EQ(w.load(), 5u);
  EXPECT_EQ(region_->alloc().page_lock.load(), 0u);
  for (auto& h : region_->slot(1).held_locks) EXPECT_EQ(h.load(), 0u);
}

TEST_F(TxnTest, LogOverflowFailsTheTxn) {
  auto st = Activate(1);
  Txn txn(*region_, 1, 1, OpKind::kNone);
  ASSERT_TRUE(txn.Lock(region_->alloc().page_lock));
  for (uint64_t i = 0; i < region_->sb().log_capacity + 5; ++i) {
    txn.Write(region_->page(i % region_->num_pages()).used, i + 1);
  }
  EXPECT_TRUE(txn.failed());
  txn.Rollback();
  EXPECT_EQ(region_->page(0).used.load(), 0u);
}

TEST_F(TxnTest, DeadClientHoldingALockIsUndone) {
  auto st = Activate(2);
  Word& w = region_->alloc().hint;
  w.store(11);
  // The child takes the lock, changes the word and dies without commit.
  pid_t pid = fork();
  if (pid == 0) {
    Txn txn(*region_, 2, 1, OpKind::kNone);
    ASSERT_TRUE(txn.Lock(region_->alloc().page_lock));
    txn.Write(w, 99);
    txn.SetBits(region_->page_bitmap(), 0, 10);
    _exit(0);  // no destructor runs
  }
  int status;
  waitpid(pid, &status, 0);
  EXPECT_EQ(w.load(), 99u);
  EXPECT_NE(region_->alloc().page_lock.load(), 0u);
  EXPECT_EQ(UndoDeadClient(*region_, 2), 1u);
  EXPECT_EQ(w.load(), 11u);
  EXPECT_EQ(region_->page_bitmap()[0].load(), 0u);
  EXPECT_EQ(region_->alloc().page_lock.load(), 0u);
  // Idempotent.
  EXPECT_EQ(UndoDeadClient(*region_, 2), 0u);
  EXPECT_EQ(w.load(), 11u);
}

// The log keeps no count (format 11): a dead client's entries are the
// prefix stamped with its slot's epoch. A longer Txn's entries left behind
// it are stale, and undoing them would put back values other Txns have
// changed since.
TEST_F(TxnTest, ADeadClientsLogIsTheEntriesOfItsEpochOnly) {
  auto st = Activate(2);
  Word* w[8];  // eight words nobody else changes here
  for (int i = 0; i < 8; ++i) {
    w[i] = &region_->page(i).used;
    w[i]->store(100 + i);
  }
  {
    Txn txn(*region_, 2, 1, OpKind::kNone);
    ASSERT_TRUE(txn.Lock(region_->alloc().page_lock));
    for (int i = 0; i < 6; ++i) txn.Write(*w[i], 200 + i);
    ASSERT_TRUE(txn.Commit().ok());
  }
  // Changed since, as another client's Txn would.
  for (int i = 2; i < 6; ++i) w[i]->store(300 + i);
  pid_t pid = fork();
  if (pid == 0) {
    Txn txn(*region_, 2, 1, OpKind::kNone);
    if (!txn.Lock(region_->alloc().page_lock)) _exit(1);
    txn.Write(*w[6], 406);
    txn.Write(*w[7], 407);
    _exit(0);  // dies inside the Txn
  }
  int status;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(LoggedEntries(*region_, 2), 2u);
  EXPECT_EQ(UndoDeadClient(*region_, 2), 1u);
  EXPECT_EQ(w[6]->load(), 106u);
  EXPECT_EQ(w[7]->load(), 107u);
  for (int i = 0; i < 2; ++i) EXPECT_EQ(w[i]->load(), 200u + i) << i;
  for (int i = 2; i < 6; ++i)
    EXPECT_EQ(w[i]->load(), 300u + i) << "a stale entry was undone: " << i;
  EXPECT_EQ(LoggedEntries(*region_, 2), 0u);
}

// Stamps come round every kLogStamps epochs; the log is zeroed before they
// can, so an entry of a long Txn never passes for a later one's.
TEST_F(TxnTest, AStaleEntryNeverCarriesTheStampOfALaterEpoch) {
  auto st = Activate(1);
  auto run = [&](int entries, bool commit) {
    Txn txn(*region_, 1, 1, OpKind::kNone);
    EXPECT_TRUE(txn.Lock(region_->alloc().page_lock));
    for (int i = 0; i < entries; ++i) {
      Word& w = region_->page(i).used;
      txn.Write(w, w.load() + 1);
    }
    if (commit) {
      EXPECT_TRUE(txn.Commit().ok());
    } else {
      EXPECT_EQ(LoggedEntries(*region_, 1), uint32_t(entries));
    }
  };
  // Each round starts 97 epochs further from a zeroing than the last.
  for (int round = 0; round < 11; ++round) {
    for (int k = 0; k < 97; ++k) run(1, true);
    SCOPED_TRACE(region_->slot(1).log_epoch.load());
    const uint64_t epoch = region_->slot(1).log_epoch.load();
    run(10, true);
    // The same stamp again, kLogStamps epochs on.
    for (uint64_t k = 1; k < region::kLogStamps; ++k) run(1, true);
    EXPECT_EQ(region::LogStamp(region_->slot(1).log_epoch.load()), region::LogStamp(epoch));
    run(1, false);  // rolled back
  }
}

TEST_F(TxnTest, DeadClientAfterCommitKeepsItsWork) {
  auto st = Activate(2);
  Word& w = region_->alloc().hint;
  w.store(1);
  pid_t pid = fork();
  if (pid == 0) {
    Txn txn(*region_, 2, 1, OpKind::kNone);
    ASSERT_TRUE(txn.Lock(region_->alloc().page_lock));
    txn.Write(w, 42);
    // Commit's first step only (log emptied), then death before unlocking.
    EndLogOf(*region_, 2);
    _exit(0);
  }
  int status;
  waitpid(pid, &status, 0);
  UndoDeadClient(*region_, 2);
  EXPECT_EQ(w.load(), 42u);
  EXPECT_EQ(region_->alloc().page_lock.load(), 0u);
}

// A record written as a seqlock in a Txn (the non-coherent owner's write:
// version odd, the words, version even) and undone: the words return, and
// the version does not. It ends even and above every value it held, so a
// reader that saw a version before the write and checks it after the undo
// reads again; and it is odd while the words are being restored.
TEST_F(TxnTest, AnUndoneVersionOnlyGrows) {
  auto st = Activate(1);
  region::ObjectRecord& rec = region_->records(0)[0];
  rec.ref_count.store(10);
  rec.info.store(1);
  rec.heap_offset.store(2);
  {
    Txn txn(*region_, 1, 1, OpKind::kNone);
    ASSERT_TRUE(txn.Lock(region_->shard(0).lock));
    txn.WriteVersion(rec.ref_count, 11);
    txn.Write(rec.info, 100);
    txn.Write(rec.heap_offset, 200);
    txn.WriteVersion(rec.ref_count, 12);
  }  // rolled back
  EXPECT_EQ(rec.info.load(), 1u);
  EXPECT_EQ(rec.heap_offset.load(), 2u);
  EXPECT_EQ(rec.ref_count.load(), 14u);
  // Committed: the new words and the even version stay.
  Txn txn(*region_, 1, 1, OpKind::kNone);
  ASSERT_TRUE(txn.Lock(region_->shard(0).lock));
  txn.WriteVersion(rec.ref_count, 15);
  txn.Write(rec.info, 100);
  txn.WriteVersion(rec.ref_count, 16);
  ASSERT_TRUE(txn.Commit().ok());
  EXPECT_EQ(rec.info.load(), 100u);
  EXPECT_EQ(rec.ref_count.load(), 16u);
}

// A version word read from the region at the top of its range (a corrupt
// record, a hostile client) has no next value: the seqlock write, or its
// undo, would wrap to 0 or 1, below values readers saw. The Txn fails (BAD_REGION) and leaves
// the words as they were, one write at a time or in a batch, where the
// open or the close would wrap (contract builds aborted here before).
TEST_F(TxnTest, AVersionWordAtTheTopOfItsRangeFailsTheTxnAsACorruptRegion) {
  auto st = Activate(1);
  region::ObjectRecord& rec = region_->records(0)[5];
  rec.info.store(1);
  for (const uint64_t top : {~uint64_t{0}, ~uint64_t{0} - 1, region::kVersionLimit}) {
    SCOPED_TRACE(top);
    rec.ref_count.store(top);
    {
      Txn txn(*region_, 1, 1, OpKind::kNone);
      ASSERT_TRUE(txn.Lock(region_->shard(0).lock));
      txn.OpenVersion(rec.ref_count);
      txn.Write(rec.info, 100);
      txn.CloseVersion(rec.ref_count);
      Status s = txn.Commit();
      EXPECT_EQ(s.code(), GISMO_ERR_BAD_REGION) << s.ToString();
      EXPECT_NE(s.message().find("version word"), std::string::npos) << s.message();
    }
    EXPECT_EQ(rec.info.load(), 1u);
    EXPECT_EQ(rec.ref_count.load(), top);
    {
      Txn txn(*region_, 1, 1, OpKind::kNone);
      ASSERT_TRUE(txn.Lock(region_->shard(0).lock));
      const uint64_t odd = Txn::NextOddVersion(top);
      txn.WriteAll(
          {{&rec.ref_count, odd, true}, {&rec.info, 100}, {&rec.ref_count, odd + 1, true}});
      EXPECT_EQ(txn.Commit().code(), GISMO_ERR_BAD_REGION);
    }
    EXPECT_EQ(rec.info.load(), 1u);
    EXPECT_EQ(rec.ref_count.load(), top);
  }
}

// A batch (WriteAll: the non-coherent owner's record write) is the same as
// its writes one by one: the words stored in order, a word changed twice
// undone to its value before the batch, the version only moving forward;
// a word whose value does not change is not logged; and a batch the log
// has no room for changes nothing and fails the Txn.
TEST_F(TxnTest, ABatchIsItsWritesOneByOne) {
  auto st = Activate(1);
  region::ObjectRecord& rec = region_->records(0)[3];
  rec.ref_count.store(30);
  rec.info.store(1);
  rec.sizes.store(2);
  rec.heap_offset.store(3);
  {
    Txn txn(*region_, 1, 1, OpKind::kNone);
    ASSERT_TRUE(txn.Lock(region_->shard(0).lock));
    txn.WriteAll({{&rec.ref_count, 31, true},
                  {&rec.info, 100},
                  {&rec.info, 101},
                  {&rec.sizes, 2},
                  {&rec.heap_offset, 300},
                  {&rec.ref_count, 32, true}});
    EXPECT_EQ(rec.ref_count.load(), 32u);
    EXPECT_EQ(rec.info.load(), 101u);
    EXPECT_EQ(rec.heap_offset.load(), 300u);
    EXPECT_EQ(LoggedEntries(*region_, 1), 5u) << "the unchanged sizes is not logged";
  }  // rolled back
  EXPECT_EQ(rec.info.load(), 1u);
  EXPECT_EQ(rec.sizes.load(), 2u);
  EXPECT_EQ(rec.heap_offset.load(), 3u);
  EXPECT_GT(rec.ref_count.load(), 32u);
  EXPECT_EQ(rec.ref_count.load() % 2, 0u);
  {
    Txn txn(*region_, 1, 1, OpKind::kNone);
    ASSERT_TRUE(txn.Lock(region_->shard(0).lock));
    txn.WriteAll({{&rec.info, 7}, {&rec.heap_offset, 8}});
    ASSERT_TRUE(txn.Commit().ok());
  }
  EXPECT_EQ(rec.info.load(), 7u);
  EXPECT_EQ(rec.heap_offset.load(), 8u);
  // The log full but for one entry: a batch of two fits nowhere.
  Txn txn(*region_, 1, 1, OpKind::kNone);
  ASSERT_TRUE(txn.Lock(region_->alloc().page_lock));
  for (uint64_t i = 0; i + 1 < region_->sb().log_capacity; ++i) {
    txn.Write(region_->page(i % region_->num_pages()).used, i + 1);
  }
  ASSERT_FALSE(txn.failed());
  txn.WriteAll({{&rec.info, 70}, {&rec.heap_offset, 80}});
  EXPECT_TRUE(txn.failed());
  EXPECT_EQ(rec.info.load(), 7u);
  EXPECT_EQ(rec.heap_offset.load(), 8u);
  // The batch's first entry may be stored (its target untouched): an undo
  // of it restores what is there.
  EXPECT_GE(LoggedEntries(*region_, 1), region_->sb().log_capacity - 1);
  txn.Rollback();
  EXPECT_EQ(region_->page(0).used.load(), 0u);
}

// A dead writer's version entry whose logged value is past kVersionLimit
// (corrupt: no version word ever held it) is undone as an opening entry:
// the word ends even and above what it held, where the undo wrapped it to
// 0 or 1, below the versions readers saw. The other words are restored.
TEST_F(TxnTest, AnUndoOfALoggedVersionPastItsLimitLeavesTheWord) {
  auto st = Activate(2);
  region::ObjectRecord& rec = region_->records(0)[2];
  rec.ref_count.store(30);
  rec.info.store(1);
  const pid_t pid = fork();
  if (pid == 0) {
    Txn txn(*region_, 2, 1, OpKind::kNone);
    if (!txn.Lock(region_->shard(0).lock)) _exit(3);
    txn.WriteVersion(rec.ref_count, 31);
    txn.Write(rec.info, 100);
    _exit(0);  // dies without commit
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_EQ(status, 0);
  region::LogEntry* log = region_->log(2);
  const uint32_t logged = LoggedEntries(*region_, 2);
  bool corrupted = false;
  for (uint32_t i = 0; i < logged; ++i) {
    if (region::LogTargetKind(log[i].target.load()) != region::LogKind::kVersion) continue;
    log[i].value.store(~uint64_t{0});
    corrupted = true;
  }
  ASSERT_TRUE(corrupted);
  EXPECT_EQ(UndoDeadClient(*region_, 2), 1u);
  EXPECT_EQ(rec.info.load(), 1u);
  EXPECT_EQ(rec.ref_count.load(), 32u) << "the version went back, or stayed odd (busy)";
  region_->slot(2).state.store(region::PackSlotState(region::SlotState::kFree, 1));
}

// The writer dies after each of its four writes; the successor's undo
// leaves the old words and an even version above every one it held, and
// undoing again (a successor that died in the undo) only raises it.
TEST_F(TxnTest, AVersionWriterKilledAtEveryStepIsUndoneForward) {
  for (int steps = 1; steps <= 4; ++steps) {
    SCOPED_TRACE(steps);
    auto st = Activate(2);
    region::ObjectRecord& rec = region_->records(0)[1];
    rec.ref_count.store(20);
    rec.info.store(1);
    rec.sizes.store(2);
    const pid_t pid = fork();
    if (pid == 0) {
      Txn txn(*region_, 2, 1, OpKind::kNone);
      if (!txn.Lock(region_->shard(0).lock)) _exit(3);
      txn.WriteVersion(rec.ref_count, 21);
      if (steps > 1) txn.Write(rec.info, 100);
      if (steps > 2) txn.Write(rec.sizes, 200);
      if (steps > 3) txn.WriteVersion(rec.ref_count, 22);
      _exit(0);  // dies without commit
    }
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_EQ(status, 0);
    const uint64_t held = rec.ref_count.load();
    EXPECT_EQ(UndoDeadClient(*region_, 2), 1u);
    EXPECT_EQ(rec.info.load(), 1u);
    EXPECT_EQ(rec.sizes.load(), 2u);
    const uint64_t after = rec.ref_count.load();
    EXPECT_EQ(after % 2, 0u);
    EXPECT_GT(after, held);
    EXPECT_GT(after, 20u);
    region_->slot(2).state.store(region::PackSlotState(region::SlotState::kFree, 1));
  }
}

// A reader of the record as a seqlock (version, words, version) while a
// writer's Txns write it and roll back, again and again: an even version
// unchanged across the read always comes with words of one state, never a
// mix of the write's and the undo's. (A rare interleaving breaks an undo that
// restores the version; the two tests above are the ones that catch it.)
TEST_F(TxnTest, AReaderNeverAcceptsAHalfUndoneRecord) {
  auto st = Activate(1);
  region::ObjectRecord& rec = region_->records(0)[2];
  rec.ref_count.store(0);
  rec.info.store(1);
  rec.heap_offset.store(1);
  rec.sizes.store(1);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> accepted{0}, torn{0};
  std::thread reader([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      const uint64_t v1 = rec.ref_count.load(std::memory_order_acquire);
      const uint64_t a = rec.info.load(std::memory_order_acquire);
      const uint64_t b = rec.heap_offset.load(std::memory_order_acquire);
      const uint64_t c = rec.sizes.load(std::memory_order_acquire);
      std::atomic_thread_fence(std::memory_order_acquire);
      const uint64_t v2 = rec.ref_count.load(std::memory_order_relaxed);
      if (v1 % 2 != 0 || v1 != v2) continue;
      accepted.fetch_add(1, std::memory_order_relaxed);
      if (a != b || b != c) torn.fetch_add(1, std::memory_order_relaxed);
    }
  });
  // Until the reader has accepted enough reads, at least 20,000 writes.
  for (uint64_t i = 2; i < 20000 || (accepted.load() < 2000 && i < 2000000); ++i) {
    Txn txn(*region_, 1, 1, OpKind::kNone);
    ASSERT_TRUE(txn.Lock(region_->shard(0).lock));
    const uint64_t v = rec.ref_count.load();
    txn.WriteVersion(rec.ref_count, v + 1);
    txn.Write(rec.info, i);
    txn.Write(rec.heap_offset, i);
    txn.Write(rec.sizes, i);
    txn.WriteVersion(rec.ref_count, v + 2);
    if (i % 2 == 0) {
      txn.Rollback();
    } else {
      ASSERT_TRUE(txn.Commit().ok());
    }
  }
  stop.store(true);
  reader.join();
  EXPECT_EQ(torn.load(), 0u);
  EXPECT_GT(accepted.load(), 0u);
}

TEST_F(TxnTest, BoundedLockGivesUp) {
  auto a = Activate(1);
  auto b = Activate(2);
  Txn holder(*region_, 1, 1, OpKind::kNone);
  ASSERT_TRUE(holder.Lock(region_->alloc().page_lock));
  Txn waiter(*region_, 2, 1, OpKind::kNone);
  waiter.SetLockWait(1000000);
  EXPECT_FALSE(waiter.Lock(region_->alloc().page_lock));
  EXPECT_TRUE(waiter.failed());
  EXPECT_EQ(waiter.Commit().code(), GISMO_ERR_BUSY);
  EXPECT_TRUE(holder.Commit().ok());
}

}  // namespace
}  // namespace gismo::store
