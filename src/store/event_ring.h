// The event ring (layout.h, EventRingHeader/EventEntry): every seal and
// delete appends one entry inside its operation's Txn, under the ring lock
// taken after the shard lock, so the ring's order is the operations' order.
//
// Publication protocol. AppendEvent stores seq | kEventPending in the entry,
// then its fields, then raises head (undo-logged). After its Txn commits the
// producer publishes with a CAS from seq | kEventPending to seq, so:
//  - a rolled-back append leaves seq >= head, which nobody publishes;
//  - a producer that committed and then died is published by the manager's
//    recovery (PublishStrandedEvents), which only looks below head;
//  - a slow producer can never overwrite a newer event (its CAS fails).
#ifndef GISMO_STORE_EVENT_RING_H_
#define GISMO_STORE_EVENT_RING_H_

#include <gismo/gismo.h>

#include <cstdint>

#include "region/region.h"
#include "store/txn.h"

namespace gismo::store {

// One event read from the ring.
struct RingEvent {
  uint64_t seq = 0;
  region::EventKind kind{};
  uint32_t node = 0;
  gismo_id_t id{};
  uint64_t data_size = 0;
  uint64_t metadata_size = 0;
  region::EventReason reason = region::EventReason::kNone;
};
enum class RingRead { kEvent, kNothing, kOverflow };
// Reads the event at `cursor` (advancing it on kEvent). kOverflow: the
// reader was lapped; events were lost and it must resynchronize.
RingRead ReadEvent(const region::Region& r, uint64_t* cursor, RingEvent* out);

// Appends an event inside `txn` (takes the ring lock). Returns its entry
// and seq for PublishEvent after the commit; nullptr if the Txn failed.
region::EventEntry* AppendEvent(Txn& txn, region::EventKind kind, uint32_t node,
                                const gismo_id_t& id, uint64_t sizes, uint64_t* seq,
                                region::EventReason reason = region::EventReason::kNone);
inline void PublishEvent(region::EventEntry* e, uint64_t seq) {
  uint64_t pending = seq | region::kEventPending;
  e->seq.compare_exchange_strong(pending, seq, std::memory_order_release,
                                 std::memory_order_relaxed);
}
// Publishes the entries below head whose producer committed but never
// published (it was fenced). False if the ring lock stayed busy.
bool PublishStrandedEvents(const region::Region& r, uint32_t txn_slot, uint64_t txn_session,
                           uint64_t lock_wait_ns);

}  // namespace gismo::store

#endif  // GISMO_STORE_EVENT_RING_H_
