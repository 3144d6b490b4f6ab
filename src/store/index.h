// The object index: per-shard linear-probing hash tables of object records,
// in the region (layout.h, "Object index"). Every function here works on one
// shard and, unless it says otherwise, REQUIRES that shard's lock.
//
// Invariant: an object's hash slot is at most kMaxProbe - 1 slots past its
// home slot. Insertion refuses to go farther and backward-shift deletion only
// moves entries toward home, so every probe ends within kMaxProbe steps,
// whatever ids users choose.
#ifndef GISMO_STORE_INDEX_H_
#define GISMO_STORE_INDEX_H_

#include <gismo/gismo.h>

#include <cstdint>
#include <string>

#include "region/region.h"
#include "store/txn.h"

namespace gismo::store {

uint64_t HashId(const gismo_id_t& id);
region::IdWords ToWords(const gismo_id_t& id);
gismo_id_t IdOf(const region::ObjectRecord& rec);
gismo_id_t FromWords(const region::IdWords& x);
// Whether record `rec` holds the id `x` (its words as the record keeps them).
bool SameId(const region::ObjectRecord& rec, const region::IdWords& x);
std::string Hex(const gismo_id_t& id);

inline constexpr uint32_t kNoHashSlot = ~0u;

struct Located {
  uint32_t shard = 0;
  uint32_t hslot = kNoHashSlot;  // found: its slot; not found: where it would go
  uint32_t local = 0;            // record index within the shard
  region::ObjectRecord* rec = nullptr;
};

inline uint32_t GlobalIndex(const region::Region& r, uint32_t shard, uint32_t local) {
  return shard * r.records_per_shard() + local;
}

// Looks `id` (hash `h`) up in `shard`. Not found: loc->hslot is the free
// slot an insert would use, or kNoHashSlot if none is within kMaxProbe.
// Slots naming a record out of range are skipped (never followed).
bool Find(const region::Region& r, uint32_t shard, uint64_t h, const gismo_id_t& id, Located* out);
// Prefetch hints for a lookup of `id` that comes soon, taking no lock and
// writing nothing. kSlots asks for its shard header (the lock a get will
// CAS) and home hash slot; kRecord reads the probe sequence now (relaxed
// loads, racing with writers: only a hint, the locked Find decides) and asks
// for the record the first slot of the same hash names (only a local index
// in range is followed). Issue kSlots for an id some lookups before its
// kRecord, and that some lookups before the lookup itself.
enum class PrefetchStage { kSlots, kRecord };
void PrefetchLookup(const region::Region& r, const gismo_id_t& id, PrefetchStage stage);
// Takes the shard lock of `id` in `txn`, then looks it up. False with the
// Txn failed if the lock could not be taken (txn.Commit() says why).
bool LockAndFind(Txn& txn, const gismo_id_t& id, bool* found, Located* out);
// The object whose record has global index `global`, if it is indexed.
bool FindByRecord(const region::Region& r, uint32_t global, Located* out);
// Takes a record for a new object in `shard` (from its free list, else a
// never-used one). OUT_OF_MEMORY when the shard is full.
Result<uint32_t> TakeRecord(Txn& txn, uint32_t shard);
// Unindexes the object at `loc` and returns its record to the free list.
void RemoveObject(Txn& txn, const Located& loc);
// Empties hash slot `hslot` of a linear-probing table of mask + 1 slots by
// backward-shift deletion: no tombstones, so probes stay short forever, and
// entries only move toward their home slot (the kMaxProbe invariant). Serves
// the index shards and the name table. Returns how many slots, from `hslot`
// on (wrapping), it wrote. REQUIRES: the table's lock.
uint32_t RemoveHashSlot(Txn& txn, region::Word* slots, uint32_t mask, uint32_t hslot);

}  // namespace gismo::store

#endif  // GISMO_STORE_INDEX_H_
