#include "store/event_ring.h"

#include <atomic>
#include <cstring>
#include <string>

#include "common/backoff.h"
#include "common/clock.h"
#include "common/crash_point.h"
#include "region/cache_lines.h"
#include "store/index.h"

namespace gismo::store {

using namespace region;  // NOLINT: layout names are this file's vocabulary

namespace {
// One CAS of head from h to h + 1 (it may already have moved: fine).
void RaiseHead(EventRingHeader& ring, uint64_t h) {
  ring.head.compare_exchange_strong(h, h + 1, std::memory_order_acq_rel, std::memory_order_relaxed);
}

// The full seq of a claimed or pending word: the seq nearest to `head` with
// its low 46 bits (a claimed seq is within a lap of any head read near it,
// even of a stale head read back after a power loss; EventOwnedSeq assumes
// the seq is at most head).
uint64_t NearestOwnedSeq(uint64_t w, uint64_t head) {
  const uint64_t d = (w - head) & kEventShortSeqMask;
  return d > (kEventShortSeqMask >> 1) ? head - (kEventShortSeqMask + 1 - d) : head + d;
}

}  // namespace

void HelpEventHead(const Region& r) {
  EventRingHeader& ring = r.event_ring();
  for (;;) {
    const uint64_t h = ring.head.load(std::memory_order_acquire);
    const uint64_t w = r.event(h).seq.load(std::memory_order_acquire);
    if (!EventWordIsFor(w, h)) return;
    RaiseHead(ring, h);
  }
}

EventEntry* AppendEvent(Txn& txn, EventKind kind, uint32_t node, const gismo_id_t& id,
                        uint64_t sizes, uint64_t* seq, EventReason reason) {
  if (txn.failed()) return nullptr;
  const Region& r = txn.region();
  EventRingHeader& ring = r.event_ring();
  const uint64_t cap = r.fixed().event_ring_capacity;
  uint64_t t0 = 0;
  EventEntry* e = nullptr;
  uint64_t h = 0;
  for (uint32_t spins = 0;; ++spins) {
    h = ring.head.load(std::memory_order_acquire);
    if (h > kEventSeqMask) {
      // Final words keep 62 bits of a seq: every entry would look free and
      // every event published below any subscriber's cursor.
      txn.Fail(r.Corrupt("the event ring's head is " + std::to_string(h) +
                         ", past the 2^62 seqs its entries can hold"));
      return nullptr;
    }
    e = &r.event(h);
    uint64_t w = e->seq.load(std::memory_order_acquire);
    if (EventWordIsFor(w, h)) {  // claimed by another producer: help (E1)
      RaiseHead(ring, h);
      continue;
    }
    if (EventFinal(w) && EventFinalSeq(w) < h) {
      // Free: the event a lap before (h - capacity, or the initial 0) is
      // published or skipped (E1: no other older seq). seq_cst: the
      // claim pairs with recovery's seq_cst slot-state store then scan (E2).
      if (e->seq.compare_exchange_strong(w, EventOwnedWord(EventState::kClaimed, txn.slot(), h),
                                         std::memory_order_seq_cst, std::memory_order_relaxed)) {
        break;
      }
      continue;
    }
    if (!EventFinal(w) && EventWordIsFor(w, h - cap)) {
      // The event a lap before is still being written: wait as for a lock,
      // unless no client could be writing it (recovery would never end it).
      if (EventOwnerOf(w) >= r.max_clients()) {
        txn.Fail(r.Corrupt("event ring entry " + std::to_string(h % cap) +
                           " is claimed by client slot " + std::to_string(EventOwnerOf(w)) +
                           ", past the region's " + std::to_string(r.max_clients()) + " slots"));
        return nullptr;
      }
      const uint64_t now = MonotonicNs();
      if (t0 == 0) t0 = now;
      if (now - t0 >= txn.lock_wait_ns()) {
        txn.Fail(Status(GISMO_ERR_BUSY, "event ring entry " + std::to_string(h % cap) +
                                            " stayed claimed by " + "client slot " +
                                            std::to_string(EventOwnerOf(w)) + " for " +
                                            std::to_string(txn.lock_wait_ns() / 1'000'000) +
                                            " ms (a whole lap of the ring ago); try again later"));
        return nullptr;
      }
      Backoff(spins);
      continue;
    }
    // Else head moved on since we read it. If it did not, the entry is in
    // no state E1 allows at head (every use of entry h % capacity before
    // seq h was seq h - capacity): the region is corrupt. The acquire load
    // of the word keeps this load of head after it.
    if (ring.head.load(std::memory_order_acquire) == h) {
      txn.Fail(r.Corrupt("event ring entry " + std::to_string(h % cap) + " holds state word " +
                         std::to_string(w) + ", not one of seq " + std::to_string(h) +
                         " (the ring's head) or of the seq a lap before it"));
      return nullptr;
    }
  }
  const uint64_t claimed = EventOwnedWord(EventState::kClaimed, txn.slot(), h);
  GISMO_CRASH_POINT("event.after_claim");
  RaiseHead(ring, h);
  // From here a rollback (or recovery) turns the claim into "skipped".
  txn.AttachEvent(&e->seq, claimed, EventFinalWord(EventState::kSkipped, h));
  if (!txn.SessionLiveAfterAcquire()) return nullptr;
  *seq = h;
  // Pairs with ReadEvent's acquire fence (its seqlock-style re-check): a
  // reader whose relaxed load of a field below reads this producer's store
  // (a lapped reader of seq h - capacity) then sees the claim, sequenced
  // before this fence, when it re-reads `seq`, and drops what it copied.
  // The claiming CAS alone does not order the relaxed stores after it (a
  // release orders what precedes it). SessionLiveAfterAcquire's seq_cst
  // fence also does today; this one states the contract where it is
  // needed. Only a compiler barrier on x86; one dmb on Arm.
  std::atomic_thread_fence(std::memory_order_release);
  const IdWords x = ToWords(id);
  e->kind_node.store(PackEventKindNode(kind, node, reason), std::memory_order_relaxed);
  for (int k = 0; k < 3; ++k) e->id[k].store(x.w[k], std::memory_order_relaxed);
  e->data_size.store(SizesData(sizes), std::memory_order_relaxed);
  e->metadata_size.store(SizesMeta(sizes), std::memory_order_relaxed);
  e->time_ns.store(RealtimeNs(), std::memory_order_relaxed);
  // Durable and non-coherent regions: the fields reach the medium before
  // the pending word without a barrier of their own. The entry is one line
  // (layout.h), written back whole, and its fields are stored before the
  // pending word (release, below): a write-back that carries that word
  // carries them (the commit's persist of the word, or an early one).
  GISMO_CRASH_POINT("event.before_pending");
  // Logged (E3); Write stores with release, so whoever sees pending (the
  // recovery that publishes it) sees the fields.
  txn.Write(e->seq, EventOwnedWord(EventState::kPending, txn.slot(), h));
  return e;
}

void PublishEvent(EventEntry* e, uint64_t seq) {
  uint64_t w = e->seq.load(std::memory_order_relaxed);
  if (EventStateOf(w) != EventState::kPending || !EventWordIsFor(w, seq)) return;
  e->seq.compare_exchange_strong(w, EventFinalWord(EventState::kPublished, seq),
                                 std::memory_order_release, std::memory_order_relaxed);
}

void FinishDeadProducerEvents(const Region& r, uint32_t dead) {
  EventRingHeader& ring = r.event_ring();
  const uint64_t cap = r.fixed().event_ring_capacity;
  // A claim of seq s was made while head was s, and head passes s + cap
  // only once s is final, so every entry the dead slot left claimed or
  // pending holds a seq in [head - cap, head] (E1), and it
  // claims nothing more (fenced; a claim it still makes fails its session
  // check and skips itself). On a young ring that is only head entries.
  // Durable regions: after a power loss head may be stale on the medium, so
  // every entry is looked at.
  const uint64_t top = ring.head.load(std::memory_order_seq_cst);
  const bool all = r.persist_mode() != PersistMode::kNone;
  const uint64_t first = all ? top : (top > cap ? top - cap : 1);
  // Counted, not compared with a last seq: head is read from the region,
  // and one near 2^64 would make `seq <= last` hold forever.
  const uint64_t entries = all ? cap : top - first + 1;
  for (uint64_t k = 0; k < entries; ++k) {
    const uint64_t seq = first + k;
    Word& word = r.event(seq).seq;
    uint64_t w = word.load(std::memory_order_seq_cst);
    if (EventFinal(w) || EventOwnerOf(w) != dead) continue;
    const uint64_t s = NearestOwnedSeq(w, ring.head.load(std::memory_order_acquire));
    // E3: after the undo of its Txn, pending means committed.
    const EventState to =
        EventStateOf(w) == EventState::kPending ? EventState::kPublished : EventState::kSkipped;
    if (word.compare_exchange_strong(w, EventFinalWord(to, s), std::memory_order_acq_rel,
                                     std::memory_order_relaxed)) {
      r.Persist(&word, sizeof(Word));
    }
  }
  // A power loss may leave an entry below head unclaimed on the medium (the
  // claim was not written back, head was): no producer is left to claim it.
  const uint64_t head = ring.head.load(std::memory_order_acquire);
  for (uint64_t s = head > cap ? head - cap : 1; s < head; ++s) {
    Word& word = r.event(s).seq;
    uint64_t w = word.load(std::memory_order_acquire);
    if (EventFinal(w) && EventFinalSeq(w) < s &&
        word.compare_exchange_strong(w, EventFinalWord(EventState::kSkipped, s),
                                     std::memory_order_acq_rel, std::memory_order_relaxed)) {
      r.Persist(&word, sizeof(Word));
    }
  }
  HelpEventHead(r);
  r.Persist(&ring.head, sizeof(Word));
}

uint64_t EventHead(const Region& r) {
  Word& head = r.event_ring().head;
  if (r.noncoherent()) region::InvalidateLines(&head, sizeof(head));
  return head.load(std::memory_order_acquire);
}

RingRead ReadEvent(const Region& r, uint64_t* cursor, RingEvent* out) {
  const uint64_t cap = r.fixed().event_ring_capacity;
  for (;;) {
    const uint64_t head = EventHead(r);
    if (*cursor >= head) return RingRead::kNothing;
    if (head - *cursor > cap) return RingRead::kOverflow;
    const EventEntry& e = r.event(*cursor);
    // Non-coherent regions: the entry is one line that the owner writes
    // whole, its state word last (published after the commit); the line
    // read from memory carries every field stored before that word.
    if (r.noncoherent()) region::InvalidateLines(&e, sizeof(e));
    const uint64_t s1 = e.seq.load(std::memory_order_acquire);
    if (!EventFinal(s1)) {
      if (EventWordIsFor(s1, *cursor)) return RingRead::kNothing;  // not yet published
      // A claim of another seq: a later lap (lapped), or (impossible by E1)
      // an earlier one.
      const uint64_t ahead = (s1 - *cursor) & kEventShortSeqMask;
      return ahead < (kEventShortSeqMask >> 1) ? RingRead::kOverflow : RingRead::kNothing;
    }
    const uint64_t owner = EventFinalSeq(s1);
    if (owner > *cursor) return RingRead::kOverflow;
    // Not claimed yet as this reader sees it: E1 rules it out in a coherent
    // region; in a non-coherent one the head's line may reach memory before
    // the entry's (the owner flushes both before it wakes subscribers).
    if (owner < *cursor) return RingRead::kNothing;
    if (EventStateOf(s1) == EventState::kSkipped) {
      ++*cursor;
      continue;
    }
    uint64_t kn = e.kind_node.load(std::memory_order_relaxed);
    uint64_t w[3] = {e.id[0].load(std::memory_order_relaxed),
                     e.id[1].load(std::memory_order_relaxed),
                     e.id[2].load(std::memory_order_relaxed)};
    out->data_size = e.data_size.load(std::memory_order_relaxed);
    out->metadata_size = e.metadata_size.load(std::memory_order_relaxed);
    // Pairs with AppendEvent's release fence between its claim and its
    // field stores: if any field read above is a later producer's, its
    // claim is visible to the re-read of seq below, so a mixed copy is
    // never returned. (s1's acquire pairs with PublishEvent's release CAS:
    // the fields of seq *cursor are visible.)
    std::atomic_thread_fence(std::memory_order_acquire);
    if (e.seq.load(std::memory_order_relaxed) != s1) return RingRead::kOverflow;  // overwritten
    out->seq = *cursor;
    out->kind = EventKindOf(kn);
    out->node = EventNodeOf(kn);
    out->reason = EventReasonOf(kn);
    std::memcpy(out->id.bytes, w, GISMO_ID_SIZE);
    ++*cursor;
    return RingRead::kEvent;
  }
}

}  // namespace gismo::store
