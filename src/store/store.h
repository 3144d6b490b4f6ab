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
#include <gismo/gismo.hpp>

#include "region/region.h"
#include "store/allocator.h"
#include "store/txn.h"

namespace gismo::store {

// One event read from the region's event ring.
struct RingEvent {
  uint64_t seq = 0;
  region::EventKind kind{};
  uint32_t node = 0;
  gismo_id_t id{};
  uint64_t data_size = 0;
  uint64_t metadata_size = 0;
};
enum class RingRead { kEvent, kNothing, kOverflow };
// Reads the event at `cursor` (advancing it on kEvent). kOverflow: the
// reader was lapped; events were lost and it must resynchronize.
RingRead ReadEvent(const region::Region& r, uint64_t* cursor, RingEvent* out);

struct GetResult {
  bool found = false;  // sealed and now referenced
  gismo_buffer_t buffer{};
};

class Store {
 public:
  Store(const region::Region& r, uint32_t slot, uint64_t session, uint32_t node);

  Status Create(const gismo_id_t& id, uint64_t data_size, const void* metadata,
                uint64_t metadata_size, void** data);
  Status Seal(const gismo_id_t& id);
  Status Abort(const gismo_id_t& id);
  // Takes a reference if the object is sealed; found == false otherwise.
  Status TryGet(const gismo_id_t& id, GetResult* out);
  Status Release(const gismo_id_t& id);
  Status Delete(const gismo_id_t& id);
  Status Contains(const gismo_id_t& id, bool* contains);
  Status Stat(const gismo_id_t& id, gismo_object_info_t* info);

  // Visits every object (each read under its shard lock).
  void ForEach(const std::function<void(const gismo_object_info_t&)>& fn) const;
  gismo_usage_t Usage() const;
  void ForEachClient(const std::function<void(const gismo_client_info_t&)>& fn) const;

  // Whether this client's slot is still the live session it was given.
  bool SlotAlive() const;

  uint32_t slot() const { return slot_; }

  // --- manager side ------------------------------------------------------
  // Fully recovers a dead (or departed) client slot: undoes its interrupted
  // operation, aborts its unsealed objects, drops its references (finishing
  // deferred deletes) and gives up its slabs. Runs its transactions as slot
  // `txn_slot`. Idempotent: a recovery cut short can be run again. Never
  // waits long for a lock (another client may be frozen holding it): it
  // stops and reports complete == false instead.
  struct RecoveryReport {
    bool complete = false;  // false: a lock stayed busy; run it again later
    uint32_t locks_released = 0;
    uint64_t aborted = 0;
    uint64_t references_dropped = 0;
    uint64_t freed = 0;
  };
  static RecoveryReport RecoverSlot(const region::Region& r, uint32_t dead_slot, uint32_t txn_slot,
                                    uint64_t txn_session);

  static uint64_t HashId(const gismo_id_t& id);

  // Publishes ring entries whose producer committed but died before it set
  // the entry's seq (see AppendEvent). False if the ring lock stayed busy.
  static bool PublishStrandedEvents(const region::Region& r, uint32_t txn_slot,
                                    uint64_t txn_session);

 private:
  struct Located {
    uint32_t shard;
    uint32_t hslot;  // index in the shard's hash slots
    uint32_t local;  // record index within the shard
    region::ObjectRecord* rec;
  };
  static bool Find(const region::Region& r, uint32_t shard, uint64_t h, const gismo_id_t& id,
                   Located* out);
  // Takes the shard lock of `id` in `txn`, then looks it up.
  static bool LockAndFind(Txn& txn, const gismo_id_t& id, Located* out);
  static bool FindByRecord(const region::Region& r, uint32_t global, Located* out);
  static void RemoveObject(Txn& txn, const Located& loc);
  static void FreeRecordData(Txn& txn, const region::ObjectRecord& rec);

  // Held-reference table of a slot (written in the caller's txn).
  static int64_t HeldFind(const region::Region& r, uint32_t slot, uint32_t global);
  Status HeldAdd(Txn& txn, uint32_t global, uint64_t flags);
  static void HeldRemove(Txn& txn, uint32_t slot, int64_t idx);
  // Appends an event inside `txn`; returns its entry, which the caller
  // publishes with PublishEvent after the commit.
  region::EventEntry* AppendEvent(Txn& txn, region::EventKind kind, const gismo_id_t& id,
                                  uint64_t sizes, uint64_t* seq);
  static void PublishEvent(region::EventEntry* e, uint64_t seq) {
    e->seq.store(seq, std::memory_order_release);
  }

  const region::Region& r_;
  Allocator alloc_;
  uint32_t slot_;
  uint64_t session_;
  uint32_t node_;
};

void FillInfo(const region::ObjectRecord& rec, gismo_object_info_t* info);

}  // namespace gismo::store

#endif  // GISMO_STORE_STORE_H_
