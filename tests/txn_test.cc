// The undo log: rollback in-process, and recovery of a client that died
// inside a transaction.
#include "store/txn.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

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
  EXPECT_EQ(region_->slot(1).log_count.load(), 0u);
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

TEST_F(TxnTest, DeadClientAfterCommitKeepsItsWork) {
  auto st = Activate(2);
  Word& w = region_->alloc().hint;
  w.store(1);
  pid_t pid = fork();
  if (pid == 0) {
    Txn txn(*region_, 2, 1, OpKind::kNone);
    ASSERT_TRUE(txn.Lock(region_->alloc().page_lock));
    txn.Write(w, 42);
    // Commit's first step only (log cleared), then death before unlocking.
    region_->slot(2).log_count.store(0);
    _exit(0);
  }
  int status;
  waitpid(pid, &status, 0);
  UndoDeadClient(*region_, 2);
  EXPECT_EQ(w.load(), 42u);
  EXPECT_EQ(region_->alloc().page_lock.load(), 0u);
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
