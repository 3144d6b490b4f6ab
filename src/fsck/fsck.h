// The region checker: walks a region and verifies every invariant the store
// promises after any failure, plus the format's own invariants.
//
//  1. Every heap page is free or belongs to exactly one slab or object run;
//     every slab block in use belongs to exactly one live object; free-page
//     and slab counts agree with the bitmaps.
//  2. Every live object is reachable through the index from its id (no
//     empty slot between its home and its slot, fewer than kMaxProbe slots
//     past its home), and every index entry names a live record; the free
//     record list is sound.
//  3. Reference counts equal the references held by live client slots;
//     a deleted object with no reference left has been freed.
//  4. Unsealed objects belong to a live creator that holds them.
//  5. No lock is held by a client that is not live; no dead client has an
//     interrupted operation left in its log.
//  6. The name table is sound: every bound name is reachable from its hash,
//     once, with a valid length; the free entry list is sound and no entry
//     is leaked. (A name whose object is gone is counted, not a problem.)
//  7. A non-coherent region's own lines are sound: every client slot's
//     request and response rings have consistent indices and, for a live
//     session, only entries that validate below their tail; the owner's
//     sleep line and the election's candidate lines hold 0 or 1 where a flag
//     is, and no candidate's ticket is at or above 2^63; no record or index
//     shard is half-written (its version even).
//     There, invariant 3 reads: a deleted object no table holds has been
//     freed.
#ifndef GISMO_FSCK_FSCK_H_
#define GISMO_FSCK_FSCK_H_

#include <cstdint>
#include <gismo/status.hpp>
#include <string>
#include <vector>

#include "region/region.h"

namespace gismo::fsck {

struct Report {
  std::vector<std::string> problems;  // each a plain sentence
  uint64_t objects = 0, sealed = 0, unsealed = 0, deleting = 0;
  uint64_t object_bytes = 0;  // data + metadata of live objects
  uint64_t pages_used = 0, pages_free = 0, slab_pages = 0, run_pages = 0;
  uint64_t live_clients = 0, held_references = 0;
  uint64_t names = 0, dangling_names = 0;  // bound; bound to an object that is gone
  bool stopped_the_world = false;
  bool sound() const { return problems.empty(); }
};

// Who the checker acts as when it must stop the world: a live client slot
// (its tag marks the locks, so the manager frees them if the checker dies).
struct LockAs {
  uint32_t slot;
  uint64_t session;
  uint64_t lock_wait_ms = 0;  // per lock; 0: the region's lock wait
};
// The longest lock wait an online check takes (every client waits while
// the checker holds the locks): an hour.
inline constexpr uint64_t kMaxLockWaitMs = 3'600'000;

// Offline (lock_as == nullptr): nothing may run on the region (no manager,
// no client); locks found held are reported as interrupted operations.
// Online: takes every lock of the region in the global lock order, checks,
// and releases them; clients wait meanwhile (milliseconds). A lock that stays
// busy past the lock wait (its holder slow, or suspected and not yet fenced)
// gives GISMO_ERR_BUSY naming it, with every lock taken released again; an
// ended session gives GISMO_ERR_CONNECTION.
Result<Report> Check(const region::Region& r, const LockAs* lock_as);

}  // namespace gismo::fsck

#endif  // GISMO_FSCK_FSCK_H_
