// The claimer record of a coherent region's manager lease (layout.h,
// Superblock::claimer_*): who made the claim that manager_owner holds while
// its manager has not yet published itself (doc/failure.md, "One manager per
// region, across hosts"); and the check that ties a published owner's
// identity words to its epoch (Superblock::manager_identity_check).
//
// Writers: every would-be manager, just before its claim's compare-and-swap
// (acq_rel), which publishes the record's relaxed stores. Several may write
// at once; nothing orders them, so the record may end up a mix of two
// writes. A reader therefore takes the record only as a whole that matches
// the claim it read from manager_owner (acquire): the claim word equal, and
// the check an XXH3-64 of all five words. A claim word names its node and
// the low 32 bits of its epoch, so two claims share one only 2^32 manager
// starts apart: a record that matches was written by that claim's claimer
// (unless a claimer that old left it, and the claim's own claimer, an older
// manager, wrote none), and a mix passes only by a 64-bit hash collision.
#ifndef GISMO_REGION_LEASE_CLAIM_H_
#define GISMO_REGION_LEASE_CLAIM_H_

#include <xxhash.h>

#include <array>
#include <cstdint>

#include "region/layout.h"

namespace gismo::region {

// A process's identity as the region keeps it (fence::ProcessIdentity's
// words: boot id hash, PID namespace, pid, start time).
using ProcessWords = std::array<uint64_t, 4>;

inline uint64_t ClaimerCheck(uint64_t claim, const ProcessWords& id) {
  const uint64_t words[5] = {claim, id[0], id[1], id[2], id[3]};
  return XXH3_64bits_withSeed(words, sizeof(words), kMagic);
}

// Records `id` as the claimer of `claim`. Call before the CAS that installs
// `claim`; that CAS's release orders these stores before it.
inline void WriteClaimer(Superblock& sb, uint64_t claim, const ProcessWords& id) {
  sb.claimer_claim.store(claim, std::memory_order_relaxed);
  for (int k = 0; k < 4; ++k) sb.claimer_identity[k].store(id[k], std::memory_order_relaxed);
  sb.claimer_check.store(ClaimerCheck(claim, id), std::memory_order_relaxed);
}

// The identity of `claim`'s claimer, if the record is that claimer's whole
// write. REQUIRES: `claim` was read from manager_owner with acquire (which
// makes its claimer's record visible), before this call.
inline bool ReadClaimer(const Superblock& sb, uint64_t claim, ProcessWords* id) {
  if (!IsOwnerClaim(claim) || sb.claimer_claim.load(std::memory_order_relaxed) != claim) {
    return false;
  }
  for (int k = 0; k < 4; ++k) (*id)[k] = sb.claimer_identity[k].load(std::memory_order_relaxed);
  return sb.claimer_check.load(std::memory_order_relaxed) == ClaimerCheck(claim, *id);
}

// The published owner: the check over its epoch, node and identity words.
// The owner stores it after those words, all before the CAS that publishes
// its epoch. Seeded apart from ClaimerCheck.
inline uint64_t OwnerIdentityCheck(uint64_t epoch, uint64_t node, const ProcessWords& id) {
  const uint64_t words[6] = {epoch, node, id[0], id[1], id[2], id[3]};
  return XXH3_64bits_withSeed(words, sizeof(words), ~kMagic);
}

// Whether `node` and `id`, read beside manager_identity_check's value
// `check` after loading the owner's `epoch` (acquire), are that owner's:
// the check matches, or is 0 (an older manager's, which wrote none).
inline bool OwnerIdentityHolds(uint64_t check, uint64_t epoch, uint64_t node,
                               const ProcessWords& id) {
  return check == 0 || check == OwnerIdentityCheck(epoch, node, id);
}

}  // namespace gismo::region

#endif  // GISMO_REGION_LEASE_CLAIM_H_
