// A client slot's held-reference table (layout.h, HeldEntry): an open
// addressing table of (record global index + 1 | flags, count). Written only
// by its client, in a Txn that holds the object's shard lock, or by the
// manager's recovery once that client is fenced.
#ifndef GISMO_STORE_HELD_H_
#define GISMO_STORE_HELD_H_

#include <cstdint>

#include "region/region.h"
#include "store/txn.h"

namespace gismo::store {

inline constexpr int64_t kHeldNoRoom = INT64_MIN;
// The index of `global`'s entry in `slot`'s table, or -(free entry) - 1, or
// kHeldNoRoom. Bounded by the table's capacity even if it is corrupt.
int64_t HeldFind(const region::Region& r, uint32_t slot, uint32_t global);
// One more reference of `txn`'s slot on `global` (adds `flags` to the key).
// LIMIT when the table is three quarters full. REQUIRES: `txn` holds the
// shard lock of record `global`.
Status HeldAdd(Txn& txn, uint32_t global, uint64_t flags);
// Removes entry `idx` of `slot`'s table (backward shift). REQUIRES: `txn`
// holds the shard lock of the entry's record.
void HeldRemove(Txn& txn, uint32_t slot, int64_t idx);

}  // namespace gismo::store

#endif  // GISMO_STORE_HELD_H_
