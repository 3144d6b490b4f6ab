// Recovery of a fenced client: the manager's side of the failure model.
//
// REQUIRES of every caller: the client in `dead_slot` is *fenced* (it can
// never run again: its process is confirmed gone, its node fenced, or an
// operator said so) and its slot is kRecovering. A client that is only
// suspected is never recovered: see doc/failure.md.
#ifndef GISMO_MANAGER_RECOVERY_H_
#define GISMO_MANAGER_RECOVERY_H_

#include <cstdint>

#include "region/region.h"

namespace gismo::manager {

struct RecoveryReport {
  bool complete = false;  // false: a lock stayed busy; run it again later
  uint32_t locks_released = 0;
  uint64_t aborted = 0;
  uint64_t references_dropped = 0;
  uint64_t freed = 0;          // deferred deletes completed
  uint64_t owned_deleted = 0;  // its owned objects deleted (GISMO_CREATE_OWNED)
  // Slab words of its stripe that named no slab of its own (a corrupt or
  // forged word): cleared, their pages left as they are for gismo-fsck.
  uint64_t slab_words_forgotten = 0;
  // Entries of its held table that named another client's unsealed object
  // as its own (corrupt or forged): cleared, the object left to its creator.
  uint64_t held_entries_forgotten = 0;
  // Entries that counted more references than their object had (corrupt or
  // forged): cleared, the object's count left as it was.
  uint64_t held_entries_overcounted = 0;
};

// Undoes the fenced client's interrupted operation, aborts its unsealed
// objects, deletes its owned sealed objects (kHeldOwned; freed at their last
// release if others hold them), drops its references (finishing deferred
// deletes), gives up its
// slabs and publishes events it committed but never published. Runs its
// transactions as the manager (`txn_slot`, `txn_session`). Idempotent: a
// recovery cut short (a lock held by another, suspected client) is run again.
RecoveryReport RecoverSlot(const region::Region& r, uint32_t dead_slot, uint32_t txn_slot,
                           uint64_t txn_session);

}  // namespace gismo::manager

#endif  // GISMO_MANAGER_RECOVERY_H_
