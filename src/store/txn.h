// Txn: the one seam through which every shared metadata mutation passes.
//
// A Txn belongs to one client slot. It acquires locks in the region (spin
// locks whose word holds the owner's tag), undo-logs every word before it
// changes it, and on Commit() clears the log *before* releasing any lock.
//
// Invariants that make a client's death at any instruction recoverable:
//  1. A word guarded by lock L is written only by the holder of L, only via
//     Write/SetBits/ClearBits, after its undo entry is in the log.
//  2. A lock's offset is recorded in the slot's held_locks before the CAS
//     that takes it, and stays there until after the lock is released.
//  3. The log is cleared (log_count = 0) before the first lock is released.
// So a dead client either holds locks and has a log that restores exactly
// the words those locks guard (recovery undoes it, then releases the locks),
// or it holds none and everything it did is committed.
//
// This is also the seam for the non-coherent (CXL 2.0) mode: there, a Txn
// would ship its writes to the single writer instead of storing them.
#ifndef GISMO_STORE_TXN_H_
#define GISMO_STORE_TXN_H_

#include <cstdint>

#include "region/region.h"

namespace gismo::store {

// Crash points for failure tests: compiled in only with GISMO_CRASH_POINTS.
// GISMO_CRASH_AT=<name> in the environment makes the process _exit(77) when
// it reaches that point (GISMO_CRASH_SKIP=N passes it N times first).
#ifdef GISMO_CRASH_POINTS
void CrashPoint(const char* name);
// Arms a crash point from code (tests that fork); nullptr disarms.
void ArmCrashPoint(const char* name, long skip = 0);
#define GISMO_CRASH_POINT(name) ::gismo::store::CrashPoint(name)
#else
#define GISMO_CRASH_POINT(name) ((void)0)
#endif

class Txn {
 public:
  Txn(const region::Region& r, uint32_t slot, uint64_t session, region::OpKind op);
  ~Txn();  // rolls back unless committed
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;

  // Spins until the lock is ours. A lock held by a dead client is freed by
  // the manager's recovery; meanwhile we back off to sleeping. In a bounded
  // Txn (SetLockTimeout) a lock that stays busy fails the Txn instead.
  void Lock(region::Word& lock);
  void SetLockTimeout(uint64_t timeout_ns) { lock_timeout_ns_ = timeout_ns; }
  // Spins at most `timeout_ns`; false if the lock stayed busy (the manager
  // uses it so that a lock held by a frozen client cannot stall it).
  bool LockWithin(region::Word& lock, uint64_t timeout_ns);
  // One attempt; false if someone else holds it.
  bool TryLock(region::Word& lock);
  bool Holds(const region::Word& lock) const;

  // Logged writes. They do nothing once the Txn has failed (log overflow,
  // or a bounded lock that stayed busy); the operation must then check
  // failed() and give up (the destructor rolls back what was done).
  void Write(region::Word& word, uint64_t value);
  // Bits [first, first + n) of `bitmap`, all 0 now, become 1.
  void SetBits(region::Word* bitmap, uint64_t first, uint64_t n);
  // Bits [first, first + n), all 1 now, become 0.
  void ClearBits(region::Word* bitmap, uint64_t first, uint64_t n);

  bool failed() const { return failed_; }
  void Commit();
  void Rollback();

  const region::Region& region() const { return r_; }
  uint32_t slot() const { return slot_; }
  uint64_t tag() const { return tag_; }

 private:
  bool Log(uint64_t target, uint64_t value);
  void ReleaseLocks();

  const region::Region& r_;
  uint32_t slot_;
  uint64_t tag_;
  region::ClientSlotHeader& hdr_;
  region::LogEntry* log_;
  uint32_t log_capacity_;
  uint32_t log_count_ = 0;
  uint32_t nlocks_ = 0;
  region::Word* locks_[region::kMaxHeldLocks];
  bool done_ = false;
  bool failed_ = false;
  uint64_t lock_timeout_ns_ = 0;
};

// Sets or clears bits [first, first + n) of a bitmap (caller holds its lock).
void FillBits(region::Word* bitmap, uint64_t first, uint64_t n, bool value);

// Calls fn on every lock word in the region, in the global lock order
// (shards ascending, event ring, class stripes ascending, page lock).
template <typename Fn>
void ForEachLock(const region::Region& r, Fn&& fn) {
  for (uint32_t s = 0; s < r.num_shards(); ++s) fn(r.shard(s).lock);
  fn(r.event_ring().lock);
  for (uint32_t c = 0; c < region::kNumClasses; ++c) {
    for (uint32_t st = 0; st < region::kStripes; ++st) fn(r.class_stripe(c, st).lock);
  }
  fn(r.alloc().page_lock);
}

// Phase one of recovering a dead client: if it died holding locks, undoes its
// log and releases them (every lock word carrying its tag, wherever taken). Needs no lock; must run
// before anything else touches the dead client's state. Idempotent. Returns the number of locks
// released.
uint32_t UndoDeadClient(const region::Region& r, uint32_t slot);

}  // namespace gismo::store

#endif  // GISMO_STORE_TXN_H_
