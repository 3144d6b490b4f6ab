// A client's object operations on a non-coherent region (doc/noncoherent.md):
// the requested mutations and the local get path. The client writes only its
// own lines: its request ring (nc_requester.h), its held table
// (nc_references.h) and the data of its unsealed objects; everything else it
// reads after invalidating, under the owner's seqlocks.
//
//  - create, seal, abort, delete: a request to the owner (NcOwnerStore), and
//    its answer. The create's answer names the record and block; the creator
//    adds its own reference to its table (flushed) before the create returns,
//    writes the data, and flushes the whole block before it asks for the
//    seal (section 6). An abort flushes the block too, so no line this host
//    wrote can reach memory after the block is reused.
//  - get: NcReader::Find (G0-G5): no request, no write to a line another
//    host writes. release: the table entry, flushed; the last reference on
//    an object it then finds deleting is reported to the owner (kReleased),
//    which frees the object before the release returns, as a coherent
//    release does.
//  - contains, stat, list: reads under the seqlocks, no reference taken.
//  - evict and touch: requests (a get sets no CLOCK bit here: it writes no
//    line of the owner's).
// Not thread-safe (Store's callers serialize).
#ifndef GISMO_STORE_NC_CLIENT_H_
#define GISMO_STORE_NC_CLIENT_H_

#include <gismo/gismo.h>

#include <cstdint>
#include <functional>
#include <gismo/status.hpp>
#include <memory>
#include <string_view>
#include <unordered_map>

#include "region/cache_lines.h"
#include "region/nc_references.h"
#include "region/nc_requester.h"
#include "region/region.h"
#include "store/names.h"

namespace gismo::store {

struct GetResult;

// Client slot `slot`'s held table, summary and recent-gets line in a
// non-coherent region.
inline region::NcTable NcTableOf(const region::Region& r, uint32_t slot) {
  return {r.held(slot), r.fixed().held_capacity, r.held_summary(slot), r.recent_gets(slot)};
}

class NcClientStore {
 public:
  // `wake` tells a sleeping owner that requests are published (a frame on
  // the client's connection); `timeout_ms` bounds the wait for an answer.
  NcClientStore(const region::Region& r, uint32_t slot, uint64_t session,
                std::function<void()> wake, int64_t timeout_ms);
  // PROTOCOL if the slot's rings are impossible.
  Status Attach();

  Status Create(const gismo_id_t& id, uint64_t data_size, const void* metadata,
                uint64_t metadata_size, uint32_t flags, void** data);
  Status Seal(const gismo_id_t& id);
  Status Abort(const gismo_id_t& id);
  // Writes back the blocks of every object this client is creating
  // (Store::FlushBeforeLeaving).
  void FlushUnsealed();
  // Leaves through the region (Store::MarkDeparted): writes back every line
  // this client wrote (the blocks of its unsealed objects, its slot's client
  // lines, held table and rings), then sets its departure mark and writes it
  // back, so no line of it reaches memory after the owner has recovered the
  // slot (R1). False if the slot is no longer this session's. REQUIRES: no
  // operation of this client runs now or later.
  bool MarkDeparted();
  Status TryGet(const gismo_id_t& id, GetResult* out);
  Status Release(const gismo_id_t& id);
  Status Delete(const gismo_id_t& id);
  Status Contains(const gismo_id_t& id, bool* contains);
  // Asks the owner to evict `bytes` of unheld evictable objects; *evicted:
  // the block bytes it evicted.
  Status Evict(uint64_t bytes, uint64_t* evicted);
  // Sets an evictable object's reference bit (a request: gets do not).
  Status Touch(const gismo_id_t& id);
  // Objects client `slot`'s table holds (read from memory unless it is this
  // client's own).
  uint64_t HeldObjects(uint32_t slot);
  Status Stat(const gismo_id_t& id, gismo_object_info_t* info);
  // Every indexed object, each read under its record's seqlock.
  Status ForEach(const std::function<void(const gismo_object_info_t&)>& fn);

  // The name table (store/names.h): changes are requests to the owner;
  // lookups read the table under its seqlock (the table's version, odd
  // while the owner changes it), invalidating each line before it is read.
  Status BindName(std::string_view name, const gismo_id_t& id, BindMode mode,
                  const gismo_id_t* expected);
  Status UnbindName(std::string_view name, const gismo_id_t* expected);
  Status LookupName(std::string_view name, NameBinding* out);
  Status ListNames(std::string_view prefix, const std::function<void(const NameBinding&)>& fn);

 private:
  struct IdHash {
    size_t operator()(const region::IdWords& x) const { return x.w[0] ^ x.w[1] * 31 ^ x.w[2]; }
  };
  struct IdEq {
    bool operator()(const region::IdWords& a, const region::IdWords& b) const {
      return a.w[0] == b.w[0] && a.w[1] == b.w[1] && a.w[2] == b.w[2];
    }
  };
  struct Unsealed {
    uint32_t record;
    uint64_t heap_offset;
    uint64_t bytes;  // data (64-byte aligned) and metadata
  };
  // Writes the block of an object this client creates back to memory (its
  // seal, abort or departure: section 6 and R1).
  void FlushBlock(const Unsealed& u);
  // A record as read whole under its seqlock.
  struct Snapshot {
    uint32_t record = 0;
    region::IdWords id{};
    uint64_t info = 0;
    uint64_t heap_offset = 0;
    uint64_t sizes = 0;
    uint64_t create_time_ns = 0;
  };

  region::NcShard ShardOf(uint64_t hash) const;
  // The object `id` as memory holds it now; OBJECT_NOT_FOUND if it is not
  // indexed, BUSY if the owner kept changing it.
  Status Peek(const gismo_id_t& id, Snapshot* out);
  // Sends `q` and waits for its answer; the answer's own status as a Status
  // with a message that names the object.
  Status Call(const region::NcRequest& q, const gismo_id_t& id, region::NcResponse* out);
  // Asks the owner for `op` on `id`, which carries nothing else.
  Status CallOnId(region::NcOp op, const gismo_id_t& id);
  // Record `global` read whole under its seqlock (its line invalidated
  // first); false if the owner was writing it.
  bool ReadRecord(uint32_t global, Snapshot* snap);
  // Tells the owner this client dropped its last reference on `record`,
  // which it saw deleting (kReleased), and waits a little for the answer.
  void ReportRelease(uint32_t record, const region::IdWords& x);
  // References every table holds on `record` (each table invalidated).
  uint64_t References(uint32_t record);

  // Runs `read` until it overlapped no change of the name table (its
  // version even and the same before and after); BUSY if the owner kept
  // changing it.
  template <typename Read>
  Status ReadNames(Read&& read);
  // The binding in name entry `entry`, read from memory; false if it is
  // free.
  bool ReadNameEntry(uint32_t entry, NameBinding* out);
  // A name request's answer as a Status that names the name.
  Status CallName(const region::NcRequest& q, std::string_view name, const gismo_id_t* id);
  // The status for an op on `id` that this client did not create, or that
  // the owner refused: why, from the record as memory holds it.
  Status NotMine(const gismo_id_t& id, const char* op);

  const region::Region& r_;
  uint32_t slot_;
  uint64_t session_;
  int64_t timeout_ms_;
  uint64_t patience_ns_;  // a seqlock reader's wait (region::NcPatience)
  region::HwLines lines_;
  region::NcView view_;
  region::NcRequester<region::HwLines> requester_;
  region::NcReader<region::HwLines> reader_;
  // Test builds (GISMO_CRASH_POINTS) only: GISMO_NC_FAULT=skip-seal-flush
  // leaves an object's bytes unflushed at its seal, =skip-data-invalidate
  // makes gets read the data lines without invalidating them (G5), so the
  // simulator build shows what each costs (NonCoherentServed.
  // TheSimulatorShowsAMissingFlushOrInvalidate). Never set otherwise.
  bool skip_seal_flush_ = false;
  // The last ReportRelease timed out and no Call has been answered since.
  bool owner_slow_ = false;
  std::unordered_map<region::IdWords, uint32_t, IdHash, IdEq> held_;  // id -> record
  std::unordered_map<region::IdWords, Unsealed, IdHash, IdEq> unsealed_;
};

}  // namespace gismo::store

#endif  // GISMO_STORE_NC_CLIENT_H_
