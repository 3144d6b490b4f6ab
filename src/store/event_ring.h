// The event ring (layout.h, EventRingHeader/EventEntry/EventWord): every
// seal and delete appends one entry inside its operation's Txn, with no
// ring-wide lock (format 4; before, a ring lock serialized every seal and
// delete in the region).
//
// Append (AppendEvent), by a producer that holds the object's shard lock:
//  1. read h = head; if entry(h) is already claimed for h, help: CAS head
//     h -> h + 1 and start again;
//  2. claim: CAS entry(h).seq from a final word of seq h - capacity (or the
//     initial 0) to claimed(owner = its slot, h). If that older event is
//     still claimed/pending, wait for it like for a lock (at most the lock
//     wait, then GISMO_ERR_BUSY: its producer is slow or awaits fencing);
//  3. CAS head h -> h + 1 (if nobody helped already);
//  4. after a seq_cst fence, check that its session is live (as after a lock:
//     txn.h invariant 4); if it ended, mark the entry skipped and fail;
//  5. after a release fence, write the fields (relaxed), then (release) a
//     *logged* write claimed -> pending. The fence keeps the claim before
//     the fields for a lapped reader: ReadEvent copies the fields, then an
//     acquire fence, then re-reads seq; if it copied a field of this
//     producer, it sees the claim there and drops the copy (a seqlock);
//  6. commit the Txn, then publish: CAS pending -> published(h).
// If the Txn rolls back (the producer's own rollback, or recovery's undo of
// a dead one), the logged write is undone, the word is claimed again, and
// the Txn (Txn::Rollback) or recovery (FinishDeadProducerEvents) turns it
// into skipped(h).
//
// Invariants:
//  E1. Entry(s) is claimed for s before head passes s, and an entry's seq
//      only grows; so every entry below head holds the state of its own seq
//      or of a later one (the reader was lapped).
//  E2. Only the producer named in a claimed/pending word changes it, except
//      once that producer's slot is being recovered (fenced: it writes
//      nothing more, and any write it still makes is a CAS from its own
//      claimed/pending word, which recovery's CAS has already replaced).
//  E3. pending means the Txn that wrote it either committed or is to be
//      undone by its own rollback or by recovery (the write is logged); so
//      after recovery's undo, pending == committed, claimed == not.
//  E4. The events of one object are claimed while its shard lock is held,
//      so they have increasing seqs in the order of its operations (seal
//      before delete); readers read seqs in order and wait at a claimed or
//      pending entry, so no subscriber sees them out of order, and a
//      rolled-back or abandoned claim becomes "skipped", never a stall once
//      its producer is fenced and recovered.
//  E5. A reader that finds an entry of a later seq than its cursor (or head
//      more than a capacity ahead) was lapped: overflow, as before.
// Durable regions: the fields are persisted before the logged pending word
// (D2 then orders it before the commit); after a power loss recovery fills
// any entry below head that was never claimed on the medium with "skipped".
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
// The ring's head as memory holds it (acquire). In a non-coherent region
// its line, which the owner writes, is invalidated first.
uint64_t EventHead(const region::Region& r);
// Reads the event at `cursor`, passing skipped entries (advancing the
// cursor past what it returns or skips). kNothing: no event yet, or the one
// at the cursor is not published yet. kOverflow: the reader was lapped;
// events were lost and it must resynchronize.
RingRead ReadEvent(const region::Region& r, uint64_t* cursor, RingEvent* out);

// Appends an event inside `txn` (see above). Returns its entry and seq for
// PublishEvent after the commit; nullptr if the Txn failed (busy ring entry,
// ended session). REQUIRES: txn holds the shard lock of the object `id`.
region::EventEntry* AppendEvent(Txn& txn, region::EventKind kind, uint32_t node,
                                const gismo_id_t& id, uint64_t sizes, uint64_t* seq,
                                region::EventReason reason = region::EventReason::kNone);
// Publishes a committed event: pending(seq) -> published(seq). Does nothing
// if the entry no longer holds seq's pending word (recovery published it).
void PublishEvent(region::EventEntry* e, uint64_t seq);

// Recovery of slot `dead` (fenced, its Txn undone by UndoDeadClient): every
// entry it left pending is published, every entry it left claimed is
// skipped; entries below head never claimed (a power loss) are skipped; and
// head is raised past claimed entries. Needs no lock.
void FinishDeadProducerEvents(const region::Region& r, uint32_t dead);

// Raises head past entries that are already claimed for their seq.
void HelpEventHead(const region::Region& r);

}  // namespace gismo::store

#endif  // GISMO_STORE_EVENT_RING_H_
