#include "store/txn.h"

#include <sched.h>
#include <time.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define GISMO_CPU_RELAX() _mm_pause()
#else
#define GISMO_CPU_RELAX() ((void)0)
#endif

namespace gismo::store {

using region::LogEntry;
using region::LogKind;
using region::Word;

#ifdef GISMO_CRASH_POINTS
namespace {
const char* g_crash_target = getenv("GISMO_CRASH_AT");
long g_crash_skip = getenv("GISMO_CRASH_SKIP") ? atol(getenv("GISMO_CRASH_SKIP")) : 0;
}  // namespace

void ArmCrashPoint(const char* name, long skip) {
  g_crash_target = name;
  g_crash_skip = skip;
}

void CrashPoint(const char* name) {
  if (g_crash_target == nullptr || strcmp(g_crash_target, name) != 0) return;
  if (g_crash_skip-- > 0) return;
  _exit(77);
}
#endif

Txn::Txn(const region::Region& r, uint32_t slot, uint64_t session, region::OpKind op)
    : r_(r),
      slot_(slot),
      tag_(region::LockTag(slot, session)),
      hdr_(r.slot(slot)),
      log_(r.log(slot)),
      log_capacity_(r.sb().log_capacity) {
  hdr_.op.store(static_cast<uint64_t>(op), std::memory_order_relaxed);
}

Txn::~Txn() {
  if (!done_) Rollback();
}

bool Txn::TryLock(Word& lock) {
  if (nlocks_ == region::kMaxHeldLocks) return false;
  uint64_t expected = 0;
  if (lock.load(std::memory_order_relaxed) != 0) return false;
  // Invariant 2: record before the CAS.
  hdr_.held_locks[nlocks_].store(r_.OffsetOf(&lock), std::memory_order_release);
  if (!lock.compare_exchange_strong(expected, tag_, std::memory_order_acquire,
                                    std::memory_order_relaxed)) {
    hdr_.held_locks[nlocks_].store(0, std::memory_order_relaxed);
    return false;
  }
  locks_[nlocks_++] = &lock;
  return true;
}

void Txn::Lock(Word& lock) {
  if (lock_timeout_ns_ != 0) {
    if (!LockWithin(lock, lock_timeout_ns_)) failed_ = true;
    return;
  }
  for (uint32_t spins = 0;; ++spins) {
    if (TryLock(lock)) return;
    if (spins < 64) {
      for (uint32_t i = 0; i < (1u << (spins / 8)); ++i) GISMO_CPU_RELAX();
    } else if (spins < 2000) {
      sched_yield();
    } else {
      // The holder is slow or dead; recovery will free the lock.
      timespec ts{0, 50 * 1000};
      nanosleep(&ts, nullptr);
    }
  }
}

bool Txn::LockWithin(Word& lock, uint64_t timeout_ns) {
  timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (uint32_t spins = 0;; ++spins) {
    if (TryLock(lock)) return true;
    timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    uint64_t elapsed = static_cast<uint64_t>(t1.tv_sec - t0.tv_sec) * 1000000000ull +
                       static_cast<uint64_t>(t1.tv_nsec) - static_cast<uint64_t>(t0.tv_nsec);
    if (elapsed >= timeout_ns) return false;
    if (spins < 64) {
      GISMO_CPU_RELAX();
    } else {
      sched_yield();
    }
  }
}

bool Txn::Holds(const Word& lock) const {
  for (uint32_t i = 0; i < nlocks_; ++i) {
    if (locks_[i] == &lock) return true;
  }
  return false;
}

bool Txn::Log(uint64_t target, uint64_t value) {
  if (failed_ || log_count_ == log_capacity_) {
    failed_ = true;
    return false;
  }
  LogEntry& e = log_[log_count_];
  e.target.store(target, std::memory_order_relaxed);
  e.value.store(value, std::memory_order_relaxed);
  // The entry is complete before the count covers it...
  hdr_.log_count.store(++log_count_, std::memory_order_release);
  return true;
}

void Txn::Write(Word& word, uint64_t value) {
  uint64_t old = word.load(std::memory_order_relaxed);
  if (old == value) return;
  if (!Log(static_cast<uint64_t>(LogKind::kWord) << region::kLogKindShift | r_.OffsetOf(&word),
           old)) {
    return;
  }
  // ...and the count covers it before the word changes (release orders the
  // count store before this one).
  word.store(value, std::memory_order_release);
}

void FillBits(Word* bitmap, uint64_t first, uint64_t n, bool value) {
  uint64_t end = first + n;
  while (first < end) {
    uint64_t w = first / 64, b = first % 64;
    uint64_t len = std::min<uint64_t>(64 - b, end - first);
    uint64_t mask = (len == 64 ? ~0ull : ((1ull << len) - 1)) << b;
    uint64_t cur = bitmap[w].load(std::memory_order_relaxed);
    bitmap[w].store(value ? (cur | mask) : (cur & ~mask), std::memory_order_release);
    first += len;
  }
}

void Txn::SetBits(Word* bitmap, uint64_t first, uint64_t n) {
  if (!Log(static_cast<uint64_t>(LogKind::kBitsSet) << region::kLogKindShift | r_.OffsetOf(bitmap),
           first << 32 | n)) {
    return;
  }
  FillBits(bitmap, first, n, true);
}

void Txn::ClearBits(Word* bitmap, uint64_t first, uint64_t n) {
  if (!Log(
          static_cast<uint64_t>(LogKind::kBitsClear) << region::kLogKindShift | r_.OffsetOf(bitmap),
          first << 32 | n)) {
    return;
  }
  FillBits(bitmap, first, n, false);
}

void Txn::ReleaseLocks() {
  for (uint32_t i = nlocks_; i-- > 0;) {
    // Only if still ours: a client whose lease expired while it was frozen
    // has had its locks released by recovery, maybe taken by others since.
    uint64_t expected = tag_;
    locks_[i]->compare_exchange_strong(expected, 0, std::memory_order_release,
                                       std::memory_order_relaxed);
    hdr_.held_locks[i].store(0, std::memory_order_relaxed);
  }
  nlocks_ = 0;
  hdr_.op.store(0, std::memory_order_relaxed);
}

void Txn::Commit() {
  GISMO_CRASH_POINT("txn.before_commit");
  // Invariant 3: the log is empty before any lock is released.
  hdr_.log_count.store(0, std::memory_order_release);
  log_count_ = 0;
  GISMO_CRASH_POINT("txn.after_commit");
  ReleaseLocks();
  done_ = true;
}

namespace {
void UndoEntries(const region::Region& r, LogEntry* log, uint64_t count) {
  for (uint64_t i = count; i-- > 0;) {
    uint64_t target = log[i].target.load(std::memory_order_acquire);
    uint64_t value = log[i].value.load(std::memory_order_relaxed);
    auto kind = static_cast<LogKind>(target >> region::kLogKindShift);
    uint64_t off = target & region::kLogOffsetMask;
    if (off == 0 || off >= r.size()) continue;  // never written by us
    switch (kind) {
      case LogKind::kWord:
        r.At<Word>(off)->store(value, std::memory_order_release);
        break;
      case LogKind::kBitsSet:
        FillBits(r.At<Word>(off), value >> 32, value & 0xffffffff, false);
        break;
      case LogKind::kBitsClear:
        FillBits(r.At<Word>(off), value >> 32, value & 0xffffffff, true);
        break;
    }
  }
}
}  // namespace

void Txn::Rollback() {
  UndoEntries(r_, log_, log_count_);
  hdr_.log_count.store(0, std::memory_order_release);
  log_count_ = 0;
  ReleaseLocks();
  done_ = true;
}

uint32_t UndoDeadClient(const region::Region& r, uint32_t slot) {
  region::ClientSlotHeader& hdr = r.slot(slot);
  uint64_t session = hdr.state.load(std::memory_order_acquire) >> 8;
  uint64_t tag = region::LockTag(slot, session);
  bool holds_any = false;
  ForEachLock(r, [&](Word& lock) {
    if (lock.load(std::memory_order_acquire) == tag) holds_any = true;
  });
  // Its log is only meaningful while it holds the locks guarding the words.
  uint64_t count = hdr.log_count.load(std::memory_order_acquire);
  if (holds_any && count <= r.sb().log_capacity) UndoEntries(r, r.log(slot), count);
  hdr.log_count.store(0, std::memory_order_release);
  uint32_t released = 0;
  ForEachLock(r, [&](Word& lock) {
    uint64_t expected = tag;
    if (lock.compare_exchange_strong(expected, 0, std::memory_order_release)) ++released;
  });
  for (auto& held : hdr.held_locks) held.store(0, std::memory_order_relaxed);
  hdr.op.store(0, std::memory_order_relaxed);
  return released;
}

}  // namespace gismo::store
