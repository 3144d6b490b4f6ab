// Txn: the one seam through which every shared metadata mutation passes.
//
// A Txn belongs to one client slot. It acquires locks in the region (spin
// locks whose word holds the owner's tag), undo-logs every word before it
// changes it, and on Commit() clears the log *before* releasing any lock.
//
// Invariants that make a client's death at any instruction recoverable
// (recovery runs only once the client is fenced: see doc/failure.md):
//  1. A word guarded by lock L is written only by the holder of L, only via
//     Write/SetBits/ClearBits, after its undo entry is in the log.
//  2. A lock's offset is recorded in the slot's held_locks before the CAS
//     that takes it, and stays there until after the lock is released.
//  3. The log is emptied (log_epoch moved on, region/layout.h) before the
//     first lock is released.
//  4. After a lock's CAS and before the first write under it, the client
//     re-reads its slot state (after a seq_cst fence): if the manager has
//     ended its session, it lets go and writes nothing. The manager stores
//     the new slot state before it looks at locks (also seq_cst), so a
//     client either sees the change or its lock is seen.
// So a dead client either holds locks and has a log that restores exactly
// the words those locks guard (recovery undoes it, then releases the locks),
// or it holds none and everything it did is committed.
//
// Durable regions (kFeatureDurable; Region::Persist is a no-op otherwise).
// The medium receives writes in an order of its own (a page or line may be
// written back at any moment after its store), so the Txn adds persist
// barriers that make the medium obey the invariants above at every instant,
// as if power could fail between any two of them:
//  D1. A lock word and its held_locks record are persisted after the CAS and
//      before the first log entry under it (by that Log(): a Txn that
//      writes nothing persists nothing).
//  D2. A log entry (which carries the epoch's stamp: no count covers it) is
//      persisted before its target is written.
//  D3. Every target is persisted before the commit record (log_epoch moved
//      on); in a rollback or an undo by recovery, every restored word is.
//  D4. The commit record is persisted before Commit() returns and before
//      any lock is released.
//  D5. A lock persisted as taken is persisted as released before its
//      held_locks record is cleared (else, after a power loss, a lock word
//      would carry the slot's tag with no record for recovery to find).
// So on the medium a slot either holds a lock with a log that restores
// exactly what it changed, or has committed; recovery after a power loss is
// the recovery of a fenced client. Unlogged writes that a logged one makes
// visible (an event entry above the ring's head, an object's bytes before
// its seal) are persisted before that logged write.
//
// This is also the seam for the non-coherent (CXL 2.0) mode
// (doc/noncoherent.md, section 9.1): there, a client opens no Txn; its
// mutating operations become requests on its slot's ring, and the owner (the
// manager) applies each with a Txn in its own slot, whose persist barriers
// D1-D5, made cache-line flushes (Region::Persist in PersistMode::kFlush),
// are the order that recovery from what reached memory needs after the
// owner's host dies.
#ifndef GISMO_STORE_TXN_H_
#define GISMO_STORE_TXN_H_

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "common/crash_point.h"
#include "region/region.h"

namespace gismo::store {

class Txn {
 public:
  Txn(const region::Region& r, uint32_t slot, uint64_t session, region::OpKind op);
  ~Txn();  // rolls back unless committed
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;

  // Takes `lock`, waiting at most the lock wait (the region's lock_wait_ms,
  // or SetLockWait). False, and the Txn failed, if the lock stayed busy
  // (GISMO_ERR_BUSY: its holder is slow, or suspected and not yet fenced;
  // nothing of a suspected client is ever taken from it), if the undo log
  // has no room, or if this client's session has ended
  // (GISMO_ERR_CONNECTION: it must change nothing more).
  [[nodiscard]] bool Lock(region::Word& lock);
  // One attempt; false if someone else holds it (the Txn does not fail,
  // except when the session has ended).
  [[nodiscard]] bool TryLock(region::Word& lock);
  // Takes every lock of the region in the global lock order (ForEachLock),
  // each waiting at most the lock wait, for a check that must see the
  // region at rest. The slot's held_locks say "every lock" first (invariant
  // 2 for a set too large to list), so recovery frees them all if this
  // client dies holding them. False as Lock; Commit() or Rollback() then
  // releases what was taken. REQUIRES: this Txn holds no lock yet.
  [[nodiscard]] bool LockWorld();
  void SetLockWait(uint64_t wait_ns) { lock_wait_ns_ = wait_ns; }
  bool Holds(const region::Word& lock) const;
  // Whether one more lock can be taken (a slot records kMaxHeldLocks).
  bool HasRoomForLock() const { return world_ || nlocks_ < region::kMaxHeldLocks; }

  // Logged writes. REQUIRES: this Txn holds the lock guarding the word (a
  // contract check verifies that it holds at least one). They do nothing
  // once the Txn has failed; Commit() then rolls back and says why.
  void Write(region::Word& word, uint64_t value);
  // A seqlock version word (LogKind::kVersion): `value` odd opens a write of
  // the words it guards, even closes it. An undo never takes it back to a
  // value a reader may have seen (region::UndoneVersion). A value not
  // above the word's current one, or above region::kVersionLimit (a corrupt
  // word), fails the transaction with BAD_REGION.
  void WriteVersion(region::Word& word, uint64_t value);
  // The seqlock's bracket around a write of the words it guards:
  // OpenVersion makes `word` the next odd value above every value it held
  // (odd already only if a writer died mid-write), CloseVersion the even
  // value after it.
  void OpenVersion(region::Word& word) {
    WriteVersion(word, NextOddVersion(word.load(std::memory_order_relaxed)));
  }
  // The odd value OpenVersion gives a version word that holds `v`.
  static uint64_t NextOddVersion(uint64_t v) { return ((v + 1) & ~uint64_t{1}) + 1; }
  void CloseVersion(region::Word& word) {
    WriteVersion(word, word.load(std::memory_order_relaxed) + 1);
  }
  // Several logged writes at once: the same as Write (WriteVersion for a
  // `version` change) of each in the order given, but their undo entries
  // are made durable together (D2 once: one persist of the entries, one of
  // the count), then the words are stored in that order. A word may appear
  // more than once (a seqlock's odd and even values). REQUIRES: as Write.
  struct Change {
    region::Word* word = nullptr;
    uint64_t value = 0;
    bool version = false;
  };
  void WriteAll(std::initializer_list<Change> changes) {
    WriteAll(changes.begin(), changes.size());
  }
  void WriteAll(const Change* changes, size_t n);
  // Bits [first, first + n) of `bitmap`, all 0 now, become 1.
  void SetBits(region::Word* bitmap, uint64_t first, uint64_t n);
  // Bits [first, first + n), all 1 now, become 0.
  void ClearBits(region::Word* bitmap, uint64_t first, uint64_t n);

  // Marks the Txn failed (the first reason is kept): the writes after it do
  // nothing and Commit() rolls back and returns `why`. For callees that find
  // the region corrupt where they cannot return a status.
  void Fail(Status why);
  // BAD_REGION: version `word`, holding `old`, has no greater value to take.
  Status VersionAtLimit(const region::Word& word, uint64_t old) const;
  bool failed() const { return !failure_.ok(); }
  const Status& failure() const { return failure_; }
  // Commits, or, if the Txn failed, rolls back and returns why.
  [[nodiscard]] Status Commit();
  void Rollback();

  // An event ring entry claimed by this Txn (event_ring.h): if the Txn
  // rolls back, its state word goes from `claimed` (restored by the undo)
  // to `skipped`, by a CAS that fails harmlessly if recovery got there
  // first. Cleared by a successful Commit().
  void AttachEvent(region::Word* word, uint64_t claimed, uint64_t skipped) {
    event_word_ = word;
    event_claimed_ = claimed;
    event_skipped_ = skipped;
  }
  // After taking something lock-like without a lock word (an event entry):
  // invariant 4's seq_cst fence and session check. False, and the Txn
  // failed with GISMO_ERR_CONNECTION, if the session has ended.
  [[nodiscard]] bool SessionLiveAfterAcquire();
  uint64_t lock_wait_ns() const { return lock_wait_ns_; }

  const region::Region& region() const { return r_; }
  uint32_t slot() const { return slot_; }
  uint64_t tag() const { return tag_; }

 private:
  // Append then Publish of one entry.
  bool Log(uint64_t target, uint64_t value);
  // Stores entry (target, value), stamped with the epoch, at
  // log_[log_count_] (its value first: an entry written back in between
  // carries its old, stale stamp), after D1. False, and the Txn failed, if
  // the log is full.
  bool Append(uint64_t target, uint64_t value);
  // D1 and D2 for entries [first, log_count_): they and the locks taken
  // since the last publish on the medium, under one barrier, before any of
  // their targets changes.
  void Publish(uint32_t first);
  // Empties the log for the next Txn (D4 when it logged anything).
  void EndLog();
  bool SessionLive() const;
  void ReleaseLocks();

  const region::Region& r_;
  uint32_t slot_;
  uint64_t session_;
  uint64_t tag_;
  region::ClientSlotHeader& hdr_;
  region::LogEntry* log_;
  uint32_t log_capacity_;
  uint64_t stamp_;          // LogStamp of the slot's epoch
  uint32_t log_count_ = 0;  // this Txn's entries
  bool appended_ = false;   // an entry was stored (some may be past log_count_)
  uint32_t nlocks_ = 0;
  uint32_t persisted_locks_ = 0;  // locks_[0, this) are on the medium (durable D1)
  region::Word* locks_[region::kMaxHeldLocks];
  bool world_ = false;            // LockWorld: held_locks[0] says every lock
  bool world_persisted_ = false;  // the world's locks are on the medium (durable D1)
  bool done_ = false;
  Status failure_;
  uint64_t lock_wait_ns_;
  region::Word* event_word_ = nullptr;  // AttachEvent
  uint64_t event_claimed_ = 0;
  uint64_t event_skipped_ = 0;
};

// What a lock word guards, for messages ("shard 3", "the page heap", ...).
std::string DescribeLock(const region::Region& r, uint64_t lock_offset);

// Sets or clears bits [first, first + n) of a bitmap (caller holds its lock).
void FillBits(region::Word* bitmap, uint64_t first, uint64_t n, bool value);

// Calls fn on every lock word in the region, in the global lock order
// (shards ascending, event ring, name table, class stripes ascending, page
// lock).
template <typename Fn>
void ForEachLock(const region::Region& r, Fn&& fn) {
  for (uint32_t s = 0; s < r.num_shards(); ++s) fn(r.shard(s).lock);
  fn(r.event_ring().lock);
  fn(r.names().lock);
  for (uint32_t c = 0; c < region::kNumClasses; ++c) {
    for (uint32_t st = 0; st < region::kStripes; ++st) fn(r.class_stripe(c, st).lock);
  }
  fn(r.alloc().page_lock);
}

// Phase one of recovering a *fenced* client (one that can never run again):
// if it died holding locks, undoes its log and releases them. It finds them
// in the slot's held_locks (each is recorded before the CAS that takes it,
// invariant 2, and checked to be a lock word before use). Needs no lock;
// must run before anything else touches the dead client's state. Idempotent.
// Returns the number of locks released.
uint32_t UndoDeadClient(const region::Region& r, uint32_t slot);
// The entries of `slot`'s log that its running Txn wrote (and, at most, one
// it was writing): the prefix stamped with the slot's epoch.
uint32_t LoggedEntries(const region::Region& r, uint32_t slot);
// Moves `slot`'s log epoch on (zeroing the log where layout.h says) and
// persists it: every entry in the log is stale after it.
void EndLogOf(const region::Region& r, uint32_t slot);
// Whether `slot`'s current session holds any lock (from its held_locks).
bool HoldsAnyLock(const region::Region& r, uint32_t slot);

}  // namespace gismo::store

#endif  // GISMO_STORE_TXN_H_
