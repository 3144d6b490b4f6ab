#include "manager/recovery.h"

#include "store/allocator.h"
#include "store/event_ring.h"
#include "store/held.h"
#include "store/index.h"
#include "store/store.h"
#include "store/txn.h"

namespace gismo::manager {

using namespace region;  // NOLINT: layout names are this file's vocabulary

namespace {
// How long recovery waits for one lock before it gives up for now (the lock
// may be held by another client that is suspected, not yet fenced).
constexpr uint64_t kRecoveryLockWaitNs = 2'000'000;

// Drops one held-table entry of the dead client, in its own transaction.
// False if the shard lock stayed busy (nothing changed).
// An owned object of the dead slot (kHeldOwned) is deleted in the same Txn;
// *event is then its delete event to publish once committed.
bool DropHeldEntry(const Region& r, uint32_t dead, HeldEntry& entry, uint32_t txn_slot,
                   uint64_t txn_session, RecoveryReport* rep, EventEntry** event,
                   uint64_t* event_seq) {
  *event = nullptr;
  const uint64_t key = entry.key.load(std::memory_order_acquire);
  const uint32_t global = HeldKeyGlobal(key);
  const uint32_t shard = global / r.records_per_shard();
  store::Txn txn(r, txn_slot, txn_session, OpKind::kRecover);
  txn.SetLockWait(kRecoveryLockWaitNs);
  const uint64_t count = entry.count.load(std::memory_order_relaxed);
  const bool in_range = shard < r.num_shards();
  if (in_range && !txn.Lock(r.shard(shard).lock)) return false;
  store::Located loc;
  if (in_range && store::FindByRecord(r, global, &loc)) {
    ObjectRecord& rec = *loc.rec;
    const uint64_t info = rec.info.load(std::memory_order_relaxed);
    ObjectState st = InfoState(info);
    if ((key & kHeldUnsealedCreator) && st == ObjectState::kCreated) {
      // Aborted only if the record names the dead slot as its creator: an
      // entry naming another's unsealed object (corrupt, or forged by a
      // writer of the region) would free a live writer's block. Such an
      // entry is only cleared.
      if (InfoSlot(info) == dead) {
        store::Store::FreeObjectData(txn, rec);
        store::RemoveObject(txn, loc);
        ++rep->aborted;
      } else {
        ++rep->held_entries_forgotten;
      }
    } else {
      // An owned object of the slot is deleted like gismo_delete: freed now
      // if nobody else holds it, else at its last release. Its delete event
      // is published after the commit (or by FinishDeadProducerEvents).
      const bool owned = (key & kHeldOwned) && InfoOwnedBy(info, dead);
      if (owned) {
        *event = store::AppendEvent(txn, EventKind::kDeleted, InfoNode(info), store::IdOf(rec),
                                    rec.sizes.load(std::memory_order_relaxed), event_seq);
        txn.Write(rec.info, PackInfo(ObjectState::kDeleting, InfoSlot(info), InfoNode(info),
                                     InfoFlags(info)));
        st = ObjectState::kDeleting;
        ++rep->owned_deleted;
      }
      uint64_t refs = rec.ref_count.load(std::memory_order_relaxed);
      // An entry that counts more references than the object has is corrupt
      // (each reference is counted in the object and in its holder's table,
      // in one transaction, undone whole above): dropping its count would
      // take other clients' references and free the object under them.
      // None is dropped: the object may keep a count nobody holds (a leak
      // gismo-fsck reports), never a free under a reader.
      if (count > refs) {
        ++rep->held_entries_overcounted;
      } else {
        refs -= count;
        txn.Write(rec.ref_count, refs);
        rep->references_dropped += count;
      }
      if (refs == 0 && st == ObjectState::kDeleting) {
        store::Store::FreeObjectData(txn, rec);
        store::RemoveObject(txn, loc);
        if (!owned) ++rep->freed;
      }
    }
  }
  // The dead client's own table: the manager is its only writer now. A held
  // entry with no shard lock (corrupt index) is still cleared.
  if (!in_range) {
    entry.key.store(0, std::memory_order_relaxed);
    entry.count.store(0, std::memory_order_relaxed);
    return true;
  }
  txn.Write(entry.key, 0);
  txn.Write(entry.count, 0);
  GISMO_CRASH_POINT("recovery.before_commit");
  if (Status s = txn.Commit(); !s.ok()) {
    *event = nullptr;
    if (s.code() != GISMO_ERR_BAD_REGION) return false;
    // The object's record or block is corrupt (rolled back, untouched):
    // drop the dead client's entry only, so that recovery ends.
    entry.key.store(0, std::memory_order_relaxed);
    entry.count.store(0, std::memory_order_relaxed);
  }
  if (*event != nullptr) {
    // An owned object's delete, committed: a manager that dies here leaves
    // its event claimed by the manager's slot, which the next manager's
    // start-up publishes (FinishDeadProducerEvents).
    GISMO_CRASH_POINT("recovery.before_publish");
    store::PublishEvent(*event, *event_seq);
  }
  GISMO_CRASH_POINT("recovery.after_entry");
  return true;
}
}  // namespace

RecoveryReport RecoverSlot(const Region& r, uint32_t dead, uint32_t txn_slot,
                           uint64_t txn_session) {
  RecoveryReport rep;
  rep.locks_released = store::UndoDeadClient(r, dead);
  // Its events: committed ones published, claimed ones skipped, so that no
  // subscriber waits at its entries any longer (event_ring.h, E3/E4).
  store::FinishDeadProducerEvents(r, dead);
  HeldEntry* held = r.held(dead);
  const uint32_t cap = r.fixed().held_capacity;
  for (uint32_t i = 0; i < cap; ++i) {
    if (held[i].key.load(std::memory_order_acquire) == 0) continue;
    EventEntry* event = nullptr;
    uint64_t seq = 0;
    if (!DropHeldEntry(r, dead, held[i], txn_slot, txn_session, &rep, &event, &seq)) return rep;
  }
  r.slot(dead).held_count.store(0, std::memory_order_release);
  rep.complete = store::Allocator(r).DisownSlabs(dead, txn_slot, txn_session, kRecoveryLockWaitNs,
                                                 &rep.slab_words_forgotten);
  return rep;
}

}  // namespace gismo::manager
