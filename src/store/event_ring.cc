#include "store/event_ring.h"

#include <cstring>

#include "common/clock.h"
#include "store/index.h"

namespace gismo::store {

using namespace region;  // NOLINT: layout names are this file's vocabulary

EventEntry* AppendEvent(Txn& txn, EventKind kind, uint32_t node, const gismo_id_t& id,
                        uint64_t sizes, uint64_t* seq, EventReason reason) {
  const Region& r = txn.region();
  EventRingHeader& ring = r.event_ring();
  if (!txn.Lock(ring.lock)) return nullptr;
  *seq = ring.head.load(std::memory_order_relaxed);
  EventEntry& e = r.event(*seq);
  // Unpublished until the commit: a reader at this seq waits; a reader at
  // the older seq this entry held is lapped and reports an overflow.
  e.seq.store(*seq | kEventPending, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  const IdWords x = ToWords(id);
  e.kind_node.store(PackEventKindNode(kind, node, reason), std::memory_order_relaxed);
  for (int k = 0; k < 3; ++k) e.id[k].store(x.w[k], std::memory_order_relaxed);
  e.data_size.store(SizesData(sizes), std::memory_order_relaxed);
  e.metadata_size.store(SizesMeta(sizes), std::memory_order_relaxed);
  e.time_ns.store(RealtimeNs(), std::memory_order_relaxed);
  // Durable regions: the entry is on the medium before the head that covers it.
  r.Persist(&e, sizeof(EventEntry));
  txn.Write(ring.head, *seq + 1);
  return &e;
}

bool PublishStrandedEvents(const Region& r, uint32_t txn_slot, uint64_t txn_session,
                           uint64_t lock_wait_ns) {
  Txn txn(r, txn_slot, txn_session, OpKind::kRecover);
  txn.SetLockWait(lock_wait_ns);
  EventRingHeader& ring = r.event_ring();
  if (!txn.Lock(ring.lock)) return false;
  // Holding the lock, every entry below head belongs to a committed event.
  const uint64_t head = ring.head.load(std::memory_order_acquire);
  const uint64_t cap = r.sb().event_ring_capacity;
  for (uint64_t seq = head > cap ? head - cap : 1; seq < head; ++seq) {
    PublishEvent(&r.event(seq), seq);
  }
  return txn.Commit().ok();
}

RingRead ReadEvent(const Region& r, uint64_t* cursor, RingEvent* out) {
  const uint64_t head = r.event_ring().head.load(std::memory_order_acquire);
  const uint64_t cap = r.sb().event_ring_capacity;
  if (*cursor >= head) return RingRead::kNothing;
  if (head - *cursor > cap) return RingRead::kOverflow;
  const EventEntry& e = r.event(*cursor);
  const uint64_t s1 = e.seq.load(std::memory_order_acquire);
  const uint64_t owner = s1 & ~kEventPending;
  if (owner > *cursor) return RingRead::kOverflow;
  if (s1 != *cursor) return RingRead::kNothing;  // committed, not yet published
  uint64_t kn = e.kind_node.load(std::memory_order_relaxed);
  uint64_t w[3] = {e.id[0].load(std::memory_order_relaxed), e.id[1].load(std::memory_order_relaxed),
                   e.id[2].load(std::memory_order_relaxed)};
  out->data_size = e.data_size.load(std::memory_order_relaxed);
  out->metadata_size = e.metadata_size.load(std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_acquire);
  if (e.seq.load(std::memory_order_relaxed) != s1) return RingRead::kOverflow;  // overwritten
  out->seq = s1;
  out->kind = EventKindOf(kn);
  out->node = EventNodeOf(kn);
  out->reason = EventReasonOf(kn);
  std::memcpy(out->id.bytes, w, GISMO_ID_SIZE);
  ++*cursor;
  return RingRead::kEvent;
}

}  // namespace gismo::store
