// The object store's operations on the shared region, run in the client.
//
// Every operation takes the object's shard lock, works inside one Txn, and
// commits; nothing here talks to the manager or makes a system call unless a
// lock is contended. A Store is bound to one client slot and is not
// thread-safe (the client serializes calls: one undo log per slot).
#ifndef GISMO_STORE_STORE_H_
#define GISMO_STORE_STORE_H_

#include <gismo/gismo.h>

#include <cstdint>
#include <functional>
#include <gismo/status.hpp>

#include "region/region.h"
#include "store/allocator.h"
#include "store/event_ring.h"
#include "store/index.h"
#include "store/txn.h"

namespace gismo::store {

struct GetResult {
  bool found = false;  // sealed and now referenced
  gismo_buffer_t buffer{};
};

class Store {
 public:
  Store(const region::Region& r, uint32_t slot, uint64_t session, uint32_t node);

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
  Status Release(const gismo_id_t& id);
  Status Delete(const gismo_id_t& id);
  Status Contains(const gismo_id_t& id, bool* contains);
  Status Stat(const gismo_id_t& id, gismo_object_info_t* info);

  // Visits every object (each read under its shard lock). BUSY if a shard
  // lock stayed busy (the objects before it were visited).
  Status ForEach(const std::function<void(const gismo_object_info_t&)>& fn) const;
  Status Usage(gismo_usage_t* usage) const;
  void ForEachClient(const std::function<void(const gismo_client_info_t&)>& fn) const;

  // Whether this client's slot is still the live session it was given.
  bool SlotAlive() const;
  // Frees an object record's block. REQUIRES: its shard lock.
  static void FreeObjectData(Txn& txn, const region::ObjectRecord& rec);

  uint32_t slot() const { return slot_; }

 private:
  // Drops this client's owned entries whose object another client deleted
  // (kHeldOwned invariant 2), when its held table is nearly full; each in a
  // Txn of its own. Best effort: stops at a busy lock.
  void PruneOwnedIfFull();

  const region::Region& r_;
  Allocator alloc_;
  uint32_t slot_;
  uint64_t session_;
  uint32_t node_;
};

void FillInfo(const region::ObjectRecord& rec, gismo_object_info_t* info);

}  // namespace gismo::store

#endif  // GISMO_STORE_STORE_H_
