// The object store's operations on the shared region, run in the client.
//
// Every operation takes the object's shard lock, works inside one Txn, and
// commits; nothing here talks to the manager or makes a system call unless a
// lock is contended. A Store is bound to one client slot and is not
// thread-safe (the client serializes calls: one undo log per slot).
#ifndef GISMO_STORE_STORE_H_
#define GISMO_STORE_STORE_H_

#include <gismo/gismo.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <gismo/status.hpp>
#include <memory>
#include <vector>

#include "region/region.h"
#include "store/allocator.h"
#include "store/event_ring.h"
#include "store/index.h"
#include "store/nc_client.h"
#include "store/txn.h"

namespace gismo::store {

// What an eviction sweep should free (both, at least) and where.
struct EvictTarget {
  uint64_t bytes = 0;    // block bytes
  uint64_t objects = 0;  // objects
  int64_t shard = -1;    // only this index shard (-1: all)
};
struct EvictResult {
  uint64_t objects = 0;
  uint64_t bytes = 0;  // block bytes freed
};

struct GetResult {
  bool found = false;  // sealed and now referenced
  gismo_buffer_t buffer{};
};

class Store {
 public:
  Store(const region::Region& r, uint32_t slot, uint64_t session, uint32_t node);
  ~Store();

  // In a non-coherent region the operations below are requests to the
  // owner and local reads (NcClientStore) instead of Txns: this client
  // writes only its own lines there. `wake` tells a sleeping owner that a
  // request is published. PROTOCOL if the slot's rings are impossible.
  Status UseNonCoherent(std::function<void()> wake);
  bool noncoherent() const { return nc_ != nullptr; }
  // The non-coherent path (names). REQUIRES: noncoherent().
  NcClientStore& nc() const { return *nc_; }

  // flags: gismo_create_flag_t bits (region::kObjectFlagsKnown).
  Status Create(const gismo_id_t& id, uint64_t data_size, const void* metadata,
                uint64_t metadata_size, uint32_t flags, void** data);
  Status Create(const gismo_id_t& id, uint64_t data_size, const void* metadata,
                uint64_t metadata_size, void** data) {
    return Create(id, data_size, metadata, metadata_size, 0, data);
  }
  Status Seal(const gismo_id_t& id);
  Status Abort(const gismo_id_t& id);
  // Takes a reference if the object is sealed; found == false otherwise.
  Status TryGet(const gismo_id_t& id, GetResult* out);
  // *freed (if set) is true when this was the last reference to a deleted
  // object, whose data and record are free now (coherent regions; in a
  // non-coherent one the owner frees it later and *freed stays false).
  Status Release(const gismo_id_t& id, bool* freed = nullptr);
  // Before the k-th of a batch of n lookups made in order (id_at(j) names
  // the j-th id): prefetches the index lines of the ids a few places ahead,
  // so the batch overlaps its cache misses instead of waiting for each in
  // turn (a lookup in an index larger than the caches takes two dependent
  // misses). Takes no lock and writes nothing. No effect in a non-coherent
  // region, whose reads invalidate their lines first.
  template <typename IdAt>
  void PrefetchBatch(size_t k, size_t n, const IdAt& id_at) const {
    if (nc_ != nullptr || n < 2) return;
    // kSlots this far ahead, kRecord half as far: each stage's lines have
    // the time of a few lookups to arrive.
    constexpr size_t kSlotsAhead = 16, kRecordAhead = 8;
    const size_t slots_from = k == 0 ? 0 : k + kSlotsAhead - 1;
    const size_t record_from = k == 0 ? 0 : k + kRecordAhead - 1;
    for (size_t j = slots_from; j < std::min(n, k + kSlotsAhead); ++j) {
      PrefetchLookup(r_, id_at(j), PrefetchStage::kSlots);
    }
    for (size_t j = record_from; j < std::min(n, k + kRecordAhead); ++j) {
      PrefetchLookup(r_, id_at(j), PrefetchStage::kRecord);
    }
  }
  Status Delete(const gismo_id_t& id);
  Status Contains(const gismo_id_t& id, bool* contains);
  Status Stat(const gismo_id_t& id, gismo_object_info_t* info);

  // Evicts sealed, unreferenced, evictable objects (CLOCK, see evict.cc)
  // until `want` is met or two turns of the hand found nothing more; what
  // was evicted is added to *out (which may fall short: nothing else was
  // evictable). A create that does not fit calls it by itself.
  Status Evict(const EvictTarget& want, EvictResult* out);
  // Sets an evictable object's reference bit, as a get does.
  Status Touch(const gismo_id_t& id);
  // The ids evicted since the last call (their waiters and subscribers are
  // the caller's to notify, outside the store).
  std::vector<gismo_id_t> TakeEvicted();
  // What a create that does not fit evicts at least: the region's
  // evict_percent of the heap.
  uint64_t EvictShareBytes() const;

  // Visits every object (each read under its shard lock). BUSY if a shard
  // lock stayed busy (the objects before it were visited).
  Status ForEach(const std::function<void(const gismo_object_info_t&)>& fn) const;
  Status Usage(gismo_usage_t* usage) const;
  void ForEachClient(const std::function<void(const gismo_client_info_t&)>& fn) const;

  // Whether this client's slot is still the live session it was given.
  bool SlotAlive() const;
  // Leaves through the region (ClientSlotHeader::departed), for a client
  // that cannot reach a manager to say goodbye: false if the slot is no
  // longer this session's, or already being recovered. REQUIRES: no
  // operation of this client runs now or later (Disconnect holds op_mu_).
  bool MarkDeparted();
  // Before this client leaves (its goodbye or its departure mark): in a
  // non-coherent region, writes back the lines of the objects it was
  // creating, which the owner frees once it has left. A line it leaves dirty
  // would reach memory whenever its host evicts it, over the block's next
  // creator's bytes (R1: a line changes writer only once flushed).
  // REQUIRES: as MarkDeparted.
  void FlushBeforeLeaving();
  // Frees an object record's block. REQUIRES: its shard lock.
  static void FreeObjectData(Txn& txn, const region::ObjectRecord& rec);

  uint32_t slot() const { return slot_; }

 private:
  // Drops this client's owned entries whose object another client deleted
  // (kHeldOwned invariant 2), when its held table is nearly full; each in a
  // Txn of its own. Best effort: stops at a busy lock.
  void PruneOwnedIfFull();
  // One attempt; *full_shard is the index shard whose records ran out, or
  // -1 if the heap did (OUT_OF_MEMORY only).
  Status CreateOnce(const gismo_id_t& id, uint64_t data_size, const void* metadata,
                    uint64_t metadata_size, uint32_t flags, void** data, int64_t* full_shard);
  // Examines one record for the sweep: clears its reference bit, or evicts
  // it (one Txn either way).
  Status EvictOne(uint32_t shard, uint32_t local, EvictResult* out);
  // REQUIRES: the record's shard lock.
  static void MarkReferenced(Txn& txn, region::ObjectRecord& rec);

  const region::Region& r_;
  Allocator alloc_;
  uint32_t slot_;
  uint64_t session_;
  uint32_t node_;
  std::vector<gismo_id_t> evicted_;
  std::unique_ptr<NcClientStore> nc_;  // a non-coherent region's path
};

void FillInfo(const region::ObjectRecord& rec, gismo_object_info_t* info);
// An object's heap block holds its data, padded to a cache line, then its
// metadata (layout.h): where the metadata starts, and the bytes in all.
inline constexpr uint64_t PaddedData(uint64_t data_size) {
  return (data_size + 63) & ~uint64_t{63};
}
inline constexpr uint64_t BlockBytes(uint64_t data_size, uint64_t metadata_size) {
  return PaddedData(data_size) + metadata_size;
}
// INVALID_ARGUMENT if a create's flags or sizes are out of the format's
// range, naming which.
Status CheckCreateArgs(uint32_t flags, uint64_t data_size, uint64_t metadata_size);
// OUT_OF_MEMORY if a block of `bytes` is larger than the whole heap (no
// eviction can ever make room), else OK.
Status CheckFits(const region::Region& r, uint64_t bytes);

}  // namespace gismo::store

#endif  // GISMO_STORE_STORE_H_
