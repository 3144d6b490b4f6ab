#include "store/txn.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

#include "common/backoff.h"
#include "common/check.h"
#include "common/clock.h"
#include "region/free_runs.h"

namespace gismo::store {

using region::LogEntry;
using region::LogKind;
using region::Word;

namespace {
// Frees `lock` if `tag` still holds it (a lock is taken from a client only
// once it is fenced; the CAS is a second guard). True if it did.
bool ReleaseIfHeldBy(Word& lock, uint64_t tag) {
  uint64_t expected = tag;
  return lock.compare_exchange_strong(expected, 0, std::memory_order_release,
                                      std::memory_order_relaxed);
}

}  // namespace

Txn::Txn(const region::Region& r, uint32_t slot, uint64_t session, region::OpKind op)
    : r_(r),
      slot_(slot),
      session_(session),
      tag_(region::LockTag(slot, session)),
      hdr_(r.slot(slot)),
      log_(r.log(slot)),
      log_capacity_(r.fixed().log_capacity),
      stamp_(region::LogStamp(hdr_.log_epoch.load(std::memory_order_relaxed))),
      lock_wait_ns_(region::LockWaitNs(r)) {
  hdr_.op.store(static_cast<uint64_t>(op), std::memory_order_relaxed);
#ifdef GISMO_CRASH_POINTS
  if (const uint32_t limit = UndoLogLimitForTesting(); limit != 0 && limit < log_capacity_) {
    log_capacity_ = limit;
  }
#endif
}

Txn::~Txn() {
  if (!done_) Rollback();
}

void Txn::Fail(Status why) {
  if (failure_.ok()) failure_ = std::move(why);
}

bool Txn::SessionLive() const {
  return hdr_.state.load(std::memory_order_relaxed) ==
         region::PackSlotState(region::SlotState::kActive, session_);
}

bool Txn::TryLock(Word& lock) {
  if (failed()) return false;
  if (!world_ && nlocks_ == region::kMaxHeldLocks) {
    Fail(Status(GISMO_ERR_INTERNAL, "an operation took more locks than a slot can record"));
    return false;
  }
  uint64_t expected = 0;
  if (lock.load(std::memory_order_relaxed) != 0) return false;
  // Invariant 2: record before the CAS (a world lock is recorded already).
  if (!world_) hdr_.held_locks[nlocks_].store(r_.OffsetOf(&lock), std::memory_order_release);
  if (!lock.compare_exchange_strong(expected, tag_, std::memory_order_acquire,
                                    std::memory_order_relaxed)) {
    if (!world_) hdr_.held_locks[nlocks_].store(0, std::memory_order_relaxed);
    return false;
  }
  if (!world_) locks_[nlocks_++] = &lock;
  // Invariant 4: pairs with the manager's seq_cst store of a new slot state
  // followed by its reading of lock words.
  return SessionLiveAfterAcquire();
}

bool Txn::SessionLiveAfterAcquire() {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (!SessionLive()) {
    Fail(Status(GISMO_ERR_CONNECTION,
                "the manager has ended this client's session (its lease expired or its "
                "connection closed); connect again"));
    return false;
  }
  return true;
}

bool Txn::LockWorld() {
  GISMO_DCHECK(nlocks_ == 0 && !world_);  // REQUIRES: no lock held yet
  if (failed()) return false;
  hdr_.held_locks[0].store(region::kHeldLocksWorld, std::memory_order_release);
  r_.Persist(&hdr_.held_locks[0], sizeof(Word));
  world_ = true;
  bool ok = true;
  ForEachLock(r_, [&](Word& lock) { ok = ok && Lock(lock); });
  return ok;
}

bool Txn::Lock(Word& lock) {
  GISMO_DCHECK(!Holds(lock));
  uint64_t t0 = 0;
  for (uint32_t spins = 0;; ++spins) {
    if (TryLock(lock)) return true;
    if (failed()) return false;
    if (spins < kBackoffBusySpins) {
      Backoff(spins);
      continue;
    }
    const uint64_t now = MonotonicNs();
    if (t0 == 0) t0 = now;
    if (now - t0 >= lock_wait_ns_) {
      const uint64_t holder = lock.load(std::memory_order_relaxed);
      std::string who = "nobody now";
      if (holder != 0) {
        const uint32_t hs = region::LockTagSlot(holder);
        who = "client slot " + std::to_string(hs);
        if (hs < r_.max_clients()) {
          const uint64_t st = r_.slot(hs).state.load(std::memory_order_relaxed);
          if (region::SlotStateOf(st) == region::SlotState::kSuspected) {
            who += " (suspected dead, waiting to be fenced)";
          }
        }
      }
      Fail(Status(GISMO_ERR_BUSY, "the lock of " + DescribeLock(r_, r_.OffsetOf(&lock)) +
                                      " stayed busy for " +
                                      std::to_string(lock_wait_ns_ / 1'000'000) +
                                      " ms; it is held by " + who + "; try again later"));
      return false;
    }
    Backoff(spins);
  }
}

bool Txn::Holds(const Word& lock) const {
  if (world_) return lock.load(std::memory_order_relaxed) == tag_;
  for (uint32_t i = 0; i < nlocks_; ++i) {
    if (locks_[i] == &lock) return true;
  }
  return false;
}

bool Txn::Append(uint64_t target, uint64_t value) {
  if (failed()) return false;
  GISMO_DCHECK(nlocks_ > 0 || world_);  // REQUIRES: the guarding lock is held
  if (log_count_ == log_capacity_) {
    Fail(Status(GISMO_ERR_LIMIT, "the operation is too large for this client's undo log (" +
                                     std::to_string(log_capacity_) +
                                     " entries); nothing was changed"));
    return false;
  }
  // Durable invariant D1 for a stop-the-world Txn (its locks are not in
  // locks_; Publish persists those): every lock it holds on the medium
  // before its first entry.
  if (world_ && !world_persisted_ && r_.persist_mode() != region::PersistMode::kNone) {
    ForEachLock(r_, [&](Word& lock) {
      if (lock.load(std::memory_order_relaxed) == tag_) r_.Persist(&lock, sizeof(Word));
    });
    world_persisted_ = true;
  }
  LogEntry& e = log_[log_count_++];
  appended_ = true;
  // The value first (release: before the stamp that makes it an entry).
  e.value.store(value, std::memory_order_relaxed);
  e.target.store(region::StampLogTarget(target, stamp_), std::memory_order_release);
  return true;
}

void Txn::Publish(uint32_t first) {
  if (first == log_count_ || r_.persist_mode() == region::PersistMode::kNone) return;
  // Durable invariant D1: the locks taken since the last publish and their
  // records reach the medium before an entry made under them changes its
  // target (recovery undoes a log only under a lock that carries the slot's
  // tag). Done here, not at the CAS, so a Txn that writes nothing persists
  // nothing; with the entries, under one barrier (D1 and D2 ask only that
  // all of them precede the targets' stores).
  std::array<std::pair<uint64_t, uint64_t>, region::kMaxHeldLocks + 2> ranges;
  size_t n = 0;
  if (persisted_locks_ < nlocks_) {
    ranges[n++] = {r_.OffsetOf(&hdr_.held_locks[persisted_locks_]),
                   (nlocks_ - persisted_locks_) * sizeof(Word)};
    for (uint32_t i = persisted_locks_; i < nlocks_; ++i) {
      ranges[n++] = {r_.OffsetOf(locks_[i]), sizeof(Word)};
    }
    persisted_locks_ = nlocks_;
  }
  // Durable invariant D2: the entries are on the medium before a target
  // changes (the target's line may be written back at any moment after its
  // store); their stamps say they are this Txn's, no count is needed.
  ranges[n++] = {r_.OffsetOf(&log_[first]), (log_count_ - first) * sizeof(LogEntry)};
  r_.PersistAll(ranges.data(), n);
}

bool Txn::Log(uint64_t target, uint64_t value) {
  const uint32_t first = log_count_;
  if (!Append(target, value)) return false;
  Publish(first);
  return true;
}

void Txn::Write(Word& word, uint64_t value) {
  uint64_t old = word.load(std::memory_order_relaxed);
  if (old == value || failed()) return;
  if (!Log(region::PackLogTarget(LogKind::kWord, r_.OffsetOf(&word)), old)) {
    return;
  }
  // ...and the entry is complete before the word changes (release orders
  // its stores before this one).
  word.store(value, std::memory_order_release);
}

// A version word only grows, to region::kVersionLimit at most; one whose next
// value would pass it holds what no writer wrote in 2^63 changes: the region
// is corrupt.
Status Txn::VersionAtLimit(const Word& word, uint64_t old) const {
  return r_.Corrupt("the version word at offset " + std::to_string(r_.OffsetOf(&word)) + " holds " +
                    std::to_string(old) + ", past the values a seqlock takes");
}

void Txn::WriteAll(const Change* changes, size_t n) {
  if (failed()) return;
  const uint32_t first = log_count_;
  for (size_t i = 0; i < n; ++i) {
    const Change& c = changes[i];
    // What the word holds when this change comes: the last earlier change
    // of the same word, or memory.
    uint64_t old = c.word->load(std::memory_order_relaxed);
    for (size_t j = i; j-- > 0;) {
      if (changes[j].word == c.word) {
        old = changes[j].value;
        break;
      }
    }
    if (c.version && !region::VersionMayFollow(old, c.value)) {
      log_count_ = first;
      Fail(VersionAtLimit(*c.word, old));
      return;
    }
    if (!c.version && old == c.value) continue;
    const LogKind kind = c.version ? LogKind::kVersion : LogKind::kWord;
    if (!Append(region::PackLogTarget(kind, r_.OffsetOf(c.word)), old)) {
      log_count_ = first;  // nothing of the batch was published or stored
      return;
    }
  }
  Publish(first);
  // ...and the entries are complete before the words change (release
  // orders their stores before these).
  for (size_t i = 0; i < n; ++i)
    changes[i].word->store(changes[i].value, std::memory_order_release);
}

void Txn::WriteVersion(Word& word, uint64_t value) {
  const uint64_t old = word.load(std::memory_order_relaxed);
  if (failed()) return;
  if (!region::VersionMayFollow(old, value)) {
    Fail(VersionAtLimit(word, old));
    return;
  }
  if (!Log(region::PackLogTarget(LogKind::kVersion, r_.OffsetOf(&word)), old)) return;
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
  if (!Log(region::PackLogTarget(LogKind::kBitsSet, r_.OffsetOf(bitmap)),
           region::PackBitRange(first, n))) {
    return;
  }
  FillBits(bitmap, first, n, true);
}

void Txn::ClearBits(Word* bitmap, uint64_t first, uint64_t n) {
  if (!Log(region::PackLogTarget(LogKind::kBitsClear, r_.OffsetOf(bitmap)),
           region::PackBitRange(first, n))) {
    return;
  }
  FillBits(bitmap, first, n, false);
}

void Txn::ReleaseLocks() {
  // Durable invariant D5: a lock persisted as taken (D1) is persisted as
  // released before its record is cleared, so the medium never holds a
  // lock with this slot's tag that no record of the slot names (nobody
  // would release it after a power loss). All of them under one barrier,
  // then the records.
  std::array<std::pair<uint64_t, uint64_t>, region::kMaxHeldLocks> released;
  size_t n = 0;
  for (uint32_t i = nlocks_; i-- > 0;) {
    ReleaseIfHeldBy(*locks_[i], tag_);  // only if still ours
    if (i < persisted_locks_) released[n++] = {r_.OffsetOf(locks_[i]), sizeof(Word)};
  }
  if (n != 0) r_.PersistAll(released.data(), n);
  for (uint32_t i = nlocks_; i-- > 0;) hdr_.held_locks[i].store(0, std::memory_order_relaxed);
  nlocks_ = 0;
  persisted_locks_ = 0;
  if (world_) {
    // Every lock still carrying this Txn's tag (the CAS leaves others'), then
    // the mark: it covers the locks until the last is released (invariant 2;
    // D5: on the medium too).
    ForEachLock(r_, [&](Word& lock) {
      if (ReleaseIfHeldBy(lock, tag_) && world_persisted_) r_.Persist(&lock, sizeof(Word));
    });
    world_persisted_ = false;
    hdr_.held_locks[0].store(0, std::memory_order_release);
    world_ = false;
  }
  hdr_.op.store(0, std::memory_order_relaxed);
}

namespace {
// Whether a log entry's target lies in the region's metadata (never the
// superblock's immutable part), is of a kind this build writes, and its bit
// range, if any, fits there: the one check of a logged target, for commit
// and undo. *off and *len: the bytes it covers.
bool LoggedRange(const region::Region& r, uint64_t target, uint64_t value, uint64_t* off,
                 uint64_t* len) {
  const LogKind kind = region::LogTargetKind(target);
  *off = region::LogTargetOffset(target);
  if (*off < r.fixed().client_table_offset || *off >= r.heap_offset() || *off % 8 != 0)
    return false;
  switch (kind) {
    case LogKind::kWord:
    case LogKind::kVersion:
      *len = sizeof(Word);
      return true;
    case LogKind::kBitsSet:
    case LogKind::kBitsClear: {
      const uint64_t first = region::BitRangeFirst(value), n = region::BitRangeCount(value);
      if (*off + (first + n + 63) / 64 * 8 > r.heap_offset()) return false;
      *off += first / 64 * 8;
      *len = (first + n + 63) / 64 * 8 - first / 64 * 8;
      return true;
    }
    default:
      return false;
  }
}

// Persists the words that log entries [0, count) name (durable invariant
// D3); nothing on a region that is not durable. Where the barrier is a line
// flush (a non-coherent region), each line once and all with one fence:
// they need no order among themselves, only before the commit record.
void PersistTargets(const region::Region& r, const LogEntry* log, uint64_t count) {
  if (r.persist_mode() == region::PersistMode::kNone) return;
  const bool by_line = r.persist_mode() == region::PersistMode::kFlush;
  std::vector<std::pair<uint64_t, uint64_t>> lines;  // [first, end) of whole lines
  if (by_line) lines.reserve(count);
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t off = 0, len = 0;
    if (!LoggedRange(r, log[i].target.load(std::memory_order_relaxed),
                     log[i].value.load(std::memory_order_relaxed), &off, &len)) {
      continue;
    }
    if (!by_line) {
      r.Persist(off, len);  // msync, or the crash simulation's word-exact persist
      continue;
    }
    const uint64_t first = off & ~(region::kCacheLine - 1);
    lines.emplace_back(first, (off + len + region::kCacheLine - 1) & ~(region::kCacheLine - 1));
  }
  if (!by_line) return;
  // Merged in place into (offset, length) ranges: a range ends where the
  // next sorted line starts past it.
  std::sort(lines.begin(), lines.end());
  size_t merged = 0;
  for (const auto& [first, end] : lines) {
    if (merged != 0 && first <= lines[merged - 1].first + lines[merged - 1].second) {
      auto& last = lines[merged - 1];
      last.second = std::max(last.second, end - last.first);
    } else {
      lines[merged++] = {first, end - first};
    }
  }
  lines.resize(merged);
  r.PersistAll(lines);
}
}  // namespace

Status Txn::Commit() {
  if (failed()) {
    Rollback();
    return failure_;
  }
  // Durable invariant D3: every target is on the medium before the commit
  // record (the next epoch) can be.
  PersistTargets(r_, log_, log_count_);
  GISMO_CRASH_POINT("txn.before_commit");
  // Invariant 3: the log is empty before any lock is released.
  EndLog();
  GISMO_CRASH_POINT("txn.after_commit");
  event_word_ = nullptr;  // committed: the caller publishes it
  ReleaseLocks();
  done_ = true;
  return Status();
}

namespace {
// Restores the words of `count` entries, last first; an entry whose target
// LoggedRange refuses is skipped. Durable regions, D3 for an undo: each
// restored range is persisted right after its store, so all of them are on
// the medium before the caller empties the log.
void UndoEntries(const region::Region& r, LogEntry* log, uint64_t count) {
  for (uint64_t i = count; i-- > 0;) {
    const uint64_t target = log[i].target.load(std::memory_order_acquire);
    const uint64_t value = log[i].value.load(std::memory_order_relaxed);
    uint64_t covered = 0, len = 0;
    if (!LoggedRange(r, target, value, &covered, &len)) continue;
    Word* word = r.At<Word>(region::LogTargetOffset(target));
    const LogKind kind = region::LogTargetKind(target);
    if (kind == LogKind::kWord) {
      word->store(value, std::memory_order_release);
    } else if (kind == LogKind::kVersion) {
      // A logged version past kVersionLimit was never written
      // (VersionMayFollow): UndoneVersion of it would wrap to 0 or 1, and a
      // reader would see the version go back. It is undone as the opening
      // entry it most likely was (an even value at most the current one),
      // so the word still ends even and above every value it held, and
      // readers do not find it odd (busy) for good. A current value past
      // the limit has no value above it: left as it is.
      const uint64_t current = word->load(std::memory_order_relaxed);
      if (current > region::kVersionLimit) continue;
      const uint64_t logged = value <= region::kVersionLimit ? value : current & ~uint64_t{1};
      word->store(region::UndoneVersion(logged, current), std::memory_order_release);
    } else {
      FillBits(word, region::BitRangeFirst(value), region::BitRangeCount(value),
               kind == LogKind::kBitsClear);
    }
    r.Persist(covered, len);
    // Page-bitmap bits: the free-run summary above them follows (FreeRunNode
    // invariant 2; the undoer holds page_lock, or recovers its dead holder).
    if ((kind == LogKind::kBitsSet || kind == LogKind::kBitsClear) &&
        region::LogTargetOffset(target) == r.fixed().page_bitmap_offset) {
      region::UpdateFreeRuns(r, region::BitRangeFirst(value), region::BitRangeCount(value));
    }
  }
}

// Calls fn(lock word) for each lock recorded in `slot`'s held_locks that
// really is a lock word of the region; for every lock of the region if the
// slot took them all (kHeldLocksWorld).
template <typename Fn>
void ForEachRecordedLock(const region::Region& r, uint32_t slot, Fn&& fn) {
  for (auto& rec : r.slot(slot).held_locks) {
    const uint64_t off = rec.load(std::memory_order_acquire);
    if (off == region::kHeldLocksWorld) {
      ForEachLock(r, fn);
      return;
    }
    if (off != 0 && r.IsLockOffset(off)) fn(*r.At<Word>(off));
  }
}
}  // namespace

void Txn::EndLog() {
  log_count_ = 0;
  // D4: committed on the medium before the Txn returns (and before any lock
  // is released: a later Txn's entries then never mix with this one's). A
  // Txn that stored no entry leaves the epoch as it is: no entry has its
  // stamp (D4 of the last Txn that stored one).
  if (std::exchange(appended_, false)) EndLogOf(r_, slot_);
}

void Txn::Rollback() {
  UndoEntries(r_, log_, log_count_);  // restored, and persisted (D3)
  EndLog();
  // The undo restored the claimed word of an attached event (if its pending
  // write was logged): no event at that seq (event_ring.h).
  if (event_word_ != nullptr) {
    uint64_t claimed = event_claimed_;
    if (event_word_->compare_exchange_strong(claimed, event_skipped_, std::memory_order_release,
                                             std::memory_order_relaxed)) {
      r_.Persist(event_word_, sizeof(region::Word));
    }
    event_word_ = nullptr;
  }
  ReleaseLocks();
  done_ = true;
}

bool HoldsAnyLock(const region::Region& r, uint32_t slot) {
  const uint64_t session =
      region::SlotSessionOf(r.slot(slot).state.load(std::memory_order_acquire));
  const uint64_t tag = region::LockTag(slot, session);
  bool held = false;
  ForEachRecordedLock(r, slot,
                      [&](Word& lock) { held |= lock.load(std::memory_order_acquire) == tag; });
  return held;
}

uint32_t LoggedEntries(const region::Region& r, uint32_t slot) {
  const uint64_t stamp = region::LogStamp(r.slot(slot).log_epoch.load(std::memory_order_acquire));
  const LogEntry* log = r.log(slot);
  const uint32_t capacity = r.fixed().log_capacity;
  uint32_t n = 0;
  while (n < capacity &&
         region::LogTargetStamp(log[n].target.load(std::memory_order_acquire)) == stamp) {
    ++n;
  }
  return n;
}

void EndLogOf(const region::Region& r, uint32_t slot) {
  region::ClientSlotHeader& hdr = r.slot(slot);
  const uint64_t next = hdr.log_epoch.load(std::memory_order_relaxed) + 1;
  if (next % region::kLogZeroEvery == 0) {
    // No entry of the last kLogZeroEvery epochs may outlive them (layout.h):
    // zeroed, and on the medium before the epoch that relies on it.
    LogEntry* log = r.log(slot);
    const uint32_t capacity = r.fixed().log_capacity;
    for (uint32_t i = 0; i < capacity; ++i) {
      log[i].target.store(0, std::memory_order_relaxed);
      log[i].value.store(0, std::memory_order_relaxed);
    }
    r.Persist(log, uint64_t{capacity} * sizeof(LogEntry));
  }
  // Release: after the zeroed entries, for a reader of the epoch.
  hdr.log_epoch.store(next, std::memory_order_release);
  r.Persist(&hdr.log_epoch, sizeof(Word));
}

uint32_t UndoDeadClient(const region::Region& r, uint32_t slot) {
  region::ClientSlotHeader& hdr = r.slot(slot);
  const uint64_t tag =
      region::LockTag(slot, region::SlotSessionOf(hdr.state.load(std::memory_order_acquire)));
  // Its log is only meaningful while it holds the locks guarding the words
  // (an entry is stored only under them, and the log emptied before the
  // first is released: a slot that holds none has no entry of its epoch).
  if (HoldsAnyLock(r, slot)) {
    UndoEntries(r, r.log(slot), LoggedEntries(r, slot));  // restored, and persisted (D3)
    EndLogOf(r, slot);
  }
  // FreeRunNode invariant 3: a dead holder of page_lock may have left the
  // free-run summary torn anywhere on the paths it was updating; rebuild it
  // from the (restored) bitmap while the lock is still held in its name.
  // O(pages / 64): a few ms for a 1 TiB heap, paid only in this recovery.
  bool held_page_lock = false;
  ForEachRecordedLock(r, slot, [&](Word& lock) {
    held_page_lock |= &lock == &r.alloc().page_lock && lock.load(std::memory_order_acquire) == tag;
  });
  if (held_page_lock) region::RebuildFreeRuns(r);  // persisted before the release (D5)
  uint32_t released = 0;
  ForEachRecordedLock(r, slot, [&](Word& lock) {
    if (!ReleaseIfHeldBy(lock, tag)) return;
    r.Persist(&lock, sizeof(Word));  // D5: released on the medium before the record goes
    ++released;
  });
  for (auto& held : hdr.held_locks) held.store(0, std::memory_order_relaxed);
  hdr.op.store(0, std::memory_order_relaxed);
  return released;
}

std::string DescribeLock(const region::Region& r, uint64_t off) {
  for (uint32_t s = 0; s < r.num_shards(); ++s) {
    if (r.OffsetOf(&r.shard(s).lock) == off) return "index shard " + std::to_string(s);
  }
  if (r.OffsetOf(&r.event_ring().lock) == off) return "the event ring";
  if (r.OffsetOf(&r.names().lock) == off) return "the name table";
  if (r.OffsetOf(&r.alloc().page_lock) == off) return "the page heap";
  for (uint32_t c = 0; c < region::kNumClasses; ++c) {
    for (uint32_t st = 0; st < region::kStripes; ++st) {
      if (r.OffsetOf(&r.class_stripe(c, st).lock) == off) {
        return "size class " + std::to_string(region::kClassSizes[c]) + " B (stripe " +
               std::to_string(st) + ")";
      }
    }
  }
  return "offset " + std::to_string(off);
}

}  // namespace gismo::store
