#include "store/store.h"

#include <xxhash.h>

#include <cstring>
#include <string>
#include <vector>

#include "common/clock.h"

namespace gismo::store {

using namespace region;  // NOLINT: layout names are this file's vocabulary

namespace {

struct IdWords {
  uint64_t w[3];
};

IdWords ToWords(const gismo_id_t& id) {
  IdWords x{};
  std::memcpy(x.w, id.bytes, GISMO_ID_SIZE);
  return x;
}

bool SameId(const ObjectRecord& rec, const IdWords& x) {
  return rec.id[0].load(std::memory_order_relaxed) == x.w[0] &&
         rec.id[1].load(std::memory_order_relaxed) == x.w[1] &&
         rec.id[2].load(std::memory_order_relaxed) == x.w[2];
}

gismo_id_t IdOf(const ObjectRecord& rec) {
  uint64_t w[3] = {rec.id[0].load(std::memory_order_relaxed),
                   rec.id[1].load(std::memory_order_relaxed),
                   rec.id[2].load(std::memory_order_relaxed)};
  gismo_id_t id;
  std::memcpy(id.bytes, w, GISMO_ID_SIZE);
  return id;
}

// How long recovery waits for one lock before it gives up for now.
constexpr uint64_t kRecoveryLockWaitNs = 2'000'000;

constexpr uint64_t AlignUp64(uint64_t v) { return (v + 63) & ~uint64_t{63}; }

uint64_t BlockBytes(uint64_t data_size, uint64_t meta_size) {
  return AlignUp64(data_size) + meta_size;
}

std::string Hex(const gismo_id_t& id) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (uint8_t b : id.bytes) {
    s += d[b >> 4];
    s += d[b & 15];
  }
  return s;
}

inline uint32_t HeldKeyGlobal(uint64_t key) { return static_cast<uint32_t>(key & 0xffffffff) - 1; }

}  // namespace

uint64_t Store::HashId(const gismo_id_t& id) { return XXH3_64bits(id.bytes, GISMO_ID_SIZE); }

Store::Store(const Region& r, uint32_t slot, uint64_t session, uint32_t node)
    : r_(r), alloc_(r), slot_(slot), session_(session), node_(node) {}

namespace {
inline uint32_t ShardOf(const Region& r, uint64_t h) {
  return static_cast<uint32_t>(h >> 40) & (r.num_shards() - 1);
}
inline uint32_t Global(const Region& r, uint32_t shard, uint32_t local) {
  return shard * r.records_per_shard() + local;
}
}  // namespace

bool Store::Find(const Region& r, uint32_t shard, uint64_t h, const gismo_id_t& id, Located* out) {
  const IdWords x = ToWords(id);
  Word* slots = r.hash_slots(shard);
  const uint32_t mask = r.sb().slots_per_shard - 1;
  const uint32_t h32 = static_cast<uint32_t>(h);
  ObjectRecord* recs = r.records(shard);
  out->shard = shard;
  for (uint32_t i = h32 & mask;; i = (i + 1) & mask) {
    uint64_t s = slots[i].load(std::memory_order_relaxed);
    if (s == 0) {
      out->hslot = i;
      out->rec = nullptr;
      return false;
    }
    if (static_cast<uint32_t>(s >> 32) == h32) {
      uint32_t local = static_cast<uint32_t>(s & 0xffffffff) - 1;
      if (SameId(recs[local], x)) {
        out->hslot = i;
        out->local = local;
        out->rec = &recs[local];
        return true;
      }
    }
  }
}

bool Store::LockAndFind(Txn& txn, const gismo_id_t& id, Located* out) {
  const uint64_t h = HashId(id);
  const uint32_t shard = ShardOf(txn.region(), h);
  txn.Lock(txn.region().shard(shard).lock);
  return Find(txn.region(), shard, h, id, out);
}

bool Store::FindByRecord(const Region& r, uint32_t global, Located* out) {
  const ObjectRecord& rec = r.record(global);
  gismo_id_t id = IdOf(rec);
  uint64_t h = HashId(id);
  uint32_t shard = global / r.records_per_shard();
  return Find(r, shard, h, id, out) && out->local == global % r.records_per_shard();
}

void Store::RemoveObject(Txn& txn, const Located& loc) {
  const Region& r = txn.region();
  ShardHeader& sh = r.shard(loc.shard);
  Word* slots = r.hash_slots(loc.shard);
  const uint32_t mask = r.sb().slots_per_shard - 1;
  // Backward-shift deletion: no tombstones, so probes stay short forever.
  uint32_t i = loc.hslot;
  for (uint32_t j = (i + 1) & mask;; j = (j + 1) & mask) {
    uint64_t s = slots[j].load(std::memory_order_relaxed);
    if (s == 0) break;
    uint32_t home = static_cast<uint32_t>(s >> 32) & mask;
    bool stays = (i <= j) ? (i < home && home <= j) : (i < home || home <= j);
    if (stays) continue;
    txn.Write(slots[i], s);
    i = j;
  }
  txn.Write(slots[i], 0);
  ObjectRecord& rec = *loc.rec;
  txn.Write(rec.info, PackInfo(ObjectState::kFree, 0, 0));
  txn.Write(rec.ref_count, 0);
  txn.Write(rec.heap_offset, sh.free_head.load(std::memory_order_relaxed));
  txn.Write(sh.free_head, loc.local + 1);
  txn.Write(sh.count, sh.count.load(std::memory_order_relaxed) - 1);
}

void Store::FreeRecordData(Txn& txn, const ObjectRecord& rec) {
  uint64_t sizes = rec.sizes.load(std::memory_order_relaxed);
  Allocator(txn.region())
      .Free(txn, rec.heap_offset.load(std::memory_order_relaxed),
            BlockBytes(SizesData(sizes), SizesMeta(sizes)));
}

int64_t Store::HeldFind(const Region& r, uint32_t slot, uint32_t global) {
  HeldEntry* held = r.held(slot);
  const uint32_t cap = r.sb().held_capacity;
  const uint64_t want = uint64_t{global} + 1;
  for (uint32_t i = static_cast<uint32_t>((want * 0x9E3779B97F4A7C15ull) >> 32) & (cap - 1);;
       i = (i + 1) & (cap - 1)) {
    uint64_t key = held[i].key.load(std::memory_order_relaxed);
    if (key == 0) return -1 - static_cast<int64_t>(i);  // -(empty slot) - 1
    if ((key & 0xffffffff) == want) return i;
  }
}

Status Store::HeldAdd(Txn& txn, uint32_t global, uint64_t flags) {
  HeldEntry* held = r_.held(slot_);
  int64_t idx = HeldFind(r_, slot_, global);
  if (idx >= 0) {
    HeldEntry& e = held[idx];
    txn.Write(e.count, e.count.load(std::memory_order_relaxed) + 1);
    if (flags) txn.Write(e.key, e.key.load(std::memory_order_relaxed) | flags);
    return Status();
  }
  ClientSlotHeader& hdr = r_.slot(slot_);
  uint64_t n = hdr.held_count.load(std::memory_order_relaxed);
  uint32_t cap = r_.sb().held_capacity;
  if (n >= cap - cap / 4) {
    return Status(GISMO_ERR_LIMIT,
                  "this client already holds references to " + std::to_string(n) +
                      " objects, the most a client may hold in this region; release some "
                      "(the manager's --max-refs-per-client sets the limit)");
  }
  HeldEntry& e = held[-1 - idx];
  txn.Write(e.key, (uint64_t{global} + 1) | flags);
  txn.Write(e.count, 1);
  txn.Write(hdr.held_count, n + 1);
  return Status();
}

void Store::HeldRemove(Txn& txn, uint32_t slot, int64_t idx) {
  const Region& r = txn.region();
  HeldEntry* held = r.held(slot);
  const uint32_t mask = r.sb().held_capacity - 1;
  uint32_t i = static_cast<uint32_t>(idx);
  for (uint32_t j = (i + 1) & mask;; j = (j + 1) & mask) {
    uint64_t key = held[j].key.load(std::memory_order_relaxed);
    if (key == 0) break;
    uint32_t home =
        static_cast<uint32_t>((((key & 0xffffffff)) * 0x9E3779B97F4A7C15ull) >> 32) & mask;
    bool stays = (i <= j) ? (i < home && home <= j) : (i < home || home <= j);
    if (stays) continue;
    txn.Write(held[i].key, key);
    txn.Write(held[i].count, held[j].count.load(std::memory_order_relaxed));
    i = j;
  }
  txn.Write(held[i].key, 0);
  txn.Write(held[i].count, 0);
  ClientSlotHeader& hdr = r.slot(slot);
  txn.Write(hdr.held_count, hdr.held_count.load(std::memory_order_relaxed) - 1);
}

bool Store::SlotAlive() const {
  return r_.slot(slot_).state.load(std::memory_order_acquire) ==
         (static_cast<uint64_t>(SlotState::kActive) | session_ << 8);
}

Status Store::Create(const gismo_id_t& id, uint64_t data_size, const void* metadata,
                     uint64_t metadata_size, void** data) {
  if (data_size > kMaxDataSize) {
    return Status(GISMO_ERR_INVALID_ARGUMENT,
                  "object size " + FormatSize(data_size) + " exceeds the format's limit of 1 TiB");
  }
  if (metadata_size > kMaxMetadataSize) {
    return Status(GISMO_ERR_INVALID_ARGUMENT,
                  "metadata size " + FormatSize(metadata_size) + " exceeds the limit of 16 MiB");
  }
  const uint64_t bytes = BlockBytes(data_size, metadata_size);
  if (Allocator::BlockSize(bytes) > r_.heap_size()) {
    return Status(GISMO_ERR_OUT_OF_MEMORY, "an object of " + FormatSize(bytes) +
                                               " can never fit: the store holds " +
                                               FormatSize(r_.heap_size()));
  }
  const uint64_t h = HashId(id);
  const uint32_t shard = ShardOf(r_, h);
  ShardHeader& sh = r_.shard(shard);
  Txn txn(r_, slot_, session_, OpKind::kCreate);
  txn.Lock(sh.lock);
  Located loc;
  if (Find(r_, shard, h, id, &loc)) {
    ObjectState st = InfoState(loc.rec->info.load(std::memory_order_relaxed));
    return Status(GISMO_ERR_OBJECT_EXISTS,
                  "object " + Hex(id) +
                      (st == ObjectState::kSealed    ? " exists (sealed)"
                       : st == ObjectState::kCreated ? " exists (being created)"
                                                     : " is being deleted, still in use"));
  }
  // A record for it.
  uint32_t local;
  if (uint64_t fh = sh.free_head.load(std::memory_order_relaxed); fh != 0) {
    local = static_cast<uint32_t>(fh - 1);
    txn.Write(sh.free_head, r_.records(shard)[local].heap_offset.load(std::memory_order_relaxed));
  } else {
    uint64_t nu = sh.next_unused.load(std::memory_order_relaxed);
    if (nu >= r_.records_per_shard()) {
      return Status(GISMO_ERR_OUT_OF_MEMORY,
                    "the object index is full (" + std::to_string(r_.sb().max_objects) +
                        " objects); format the region with a larger --max-objects");
    }
    local = static_cast<uint32_t>(nu);
    txn.Write(sh.next_unused, nu + 1);
  }
  const uint32_t global = Global(r_, shard, local);
  GISMO_CRASH_POINT("create.before_allocate");
  auto off = alloc_.Allocate(txn, bytes);
  if (!off.ok()) return off.status();
  GISMO_CRASH_POINT("create.after_allocate");
  ObjectRecord& rec = r_.records(shard)[local];
  const IdWords x = ToWords(id);
  for (int k = 0; k < 3; ++k) txn.Write(rec.id[k], x.w[k]);
  txn.Write(rec.info, PackInfo(ObjectState::kCreated, slot_, node_));
  txn.Write(rec.ref_count, 1);
  txn.Write(rec.heap_offset, *off);
  txn.Write(rec.sizes, PackSizes(data_size, metadata_size));
  txn.Write(rec.create_time_ns, RealtimeNs());
  txn.Write(r_.hash_slots(shard)[loc.hslot],
            (static_cast<uint64_t>(static_cast<uint32_t>(h)) << 32) | (local + 1));
  txn.Write(sh.count, sh.count.load(std::memory_order_relaxed) + 1);
  GISMO_CRASH_POINT("create.after_index");
  if (Status s = HeldAdd(txn, global, kHeldUnsealedCreator); !s.ok()) return s;
  if (txn.failed()) {
    return Status(GISMO_ERR_LIMIT,
                  "operation exceeded the undo log; the region's log "
                  "capacity is too small");
  }
  GISMO_CRASH_POINT("create.before_commit");
  txn.Commit();
  uint8_t* block = r_.heap() + *off;
  if (metadata_size > 0) std::memcpy(block + AlignUp64(data_size), metadata, metadata_size);
  *data = block;
  return Status();
}

Status Store::Seal(const gismo_id_t& id) {
  Txn txn(r_, slot_, session_, OpKind::kSeal);
  Located loc;
  if (!LockAndFind(txn, id, &loc)) {
    return Status(GISMO_ERR_OBJECT_NOT_FOUND, "no object " + Hex(id));
  }
  uint64_t info = loc.rec->info.load(std::memory_order_relaxed);
  switch (InfoState(info)) {
    case ObjectState::kSealed:
      return Status(GISMO_ERR_OBJECT_ALREADY_SEALED, "object " + Hex(id) + " is already sealed");
    case ObjectState::kCreated:
      break;
    default:
      return Status(GISMO_ERR_OBJECT_NOT_FOUND, "object " + Hex(id) + " was deleted");
  }
  if (InfoSlot(info) != slot_) {
    return Status(GISMO_ERR_NOT_CREATOR,
                  "object " + Hex(id) + " is being created by another client; only it can seal");
  }
  txn.Write(loc.rec->info, PackInfo(ObjectState::kSealed, slot_, InfoNode(info)));
  const uint32_t global = Global(r_, loc.shard, loc.local);
  int64_t idx = HeldFind(r_, slot_, global);
  if (idx >= 0) {
    HeldEntry& e = r_.held(slot_)[idx];
    txn.Write(e.key, e.key.load(std::memory_order_relaxed) & ~kHeldUnsealedCreator);
  }
  uint64_t seq = 0;
  EventEntry* ev = AppendEvent(txn, EventKind::kSealed, id,
                               loc.rec->sizes.load(std::memory_order_relaxed), &seq);
  GISMO_CRASH_POINT("seal.before_commit");
  txn.Commit();
  GISMO_CRASH_POINT("seal.before_publish");
  PublishEvent(ev, seq);
  return Status();
}

Status Store::Abort(const gismo_id_t& id) {
  Txn txn(r_, slot_, session_, OpKind::kAbort);
  Located loc;
  if (!LockAndFind(txn, id, &loc)) {
    return Status(GISMO_ERR_OBJECT_NOT_FOUND, "no object " + Hex(id));
  }
  uint64_t info = loc.rec->info.load(std::memory_order_relaxed);
  if (InfoState(info) == ObjectState::kSealed) {
    return Status(GISMO_ERR_OBJECT_ALREADY_SEALED,
                  "object " + Hex(id) + " is sealed; only unsealed objects can be aborted");
  }
  if (InfoState(info) != ObjectState::kCreated) {
    return Status(GISMO_ERR_OBJECT_NOT_FOUND, "object " + Hex(id) + " was deleted");
  }
  if (InfoSlot(info) != slot_) {
    return Status(GISMO_ERR_NOT_CREATOR,
                  "object " + Hex(id) + " is being created by another client; only it can abort");
  }
  int64_t idx = HeldFind(r_, slot_, Global(r_, loc.shard, loc.local));
  if (idx >= 0) HeldRemove(txn, slot_, idx);
  FreeRecordData(txn, *loc.rec);
  GISMO_CRASH_POINT("abort.after_free");
  RemoveObject(txn, loc);
  GISMO_CRASH_POINT("abort.before_commit");
  txn.Commit();
  return Status();
}

Status Store::TryGet(const gismo_id_t& id, GetResult* out) {
  out->found = false;
  Txn txn(r_, slot_, session_, OpKind::kGet);
  Located loc;
  if (!LockAndFind(txn, id, &loc) ||
      InfoState(loc.rec->info.load(std::memory_order_relaxed)) != ObjectState::kSealed) {
    txn.Commit();
    return Status();
  }
  if (Status s = HeldAdd(txn, Global(r_, loc.shard, loc.local), 0); !s.ok()) return s;
  ObjectRecord& rec = *loc.rec;
  txn.Write(rec.ref_count, rec.ref_count.load(std::memory_order_relaxed) + 1);
  GISMO_CRASH_POINT("get.before_commit");
  const uint64_t sizes = rec.sizes.load(std::memory_order_relaxed);
  const uint8_t* block = r_.heap() + rec.heap_offset.load(std::memory_order_relaxed);
  txn.Commit();
  out->found = true;
  out->buffer.data = block;
  out->buffer.data_size = SizesData(sizes);
  out->buffer.metadata = block + AlignUp64(SizesData(sizes));
  out->buffer.metadata_size = SizesMeta(sizes);
  return Status();
}

Status Store::Release(const gismo_id_t& id) {
  Txn txn(r_, slot_, session_, OpKind::kRelease);
  Located loc;
  if (!LockAndFind(txn, id, &loc)) {
    return Status(GISMO_ERR_OBJECT_NOT_FOUND, "no object " + Hex(id));
  }
  int64_t idx = HeldFind(r_, slot_, Global(r_, loc.shard, loc.local));
  if (idx < 0) {
    return Status(GISMO_ERR_NOT_HELD, "this client holds no reference to object " + Hex(id));
  }
  HeldEntry& e = r_.held(slot_)[idx];
  if (e.key.load(std::memory_order_relaxed) & kHeldUnsealedCreator) {
    return Status(GISMO_ERR_OBJECT_NOT_SEALED,
                  "object " + Hex(id) + " is not sealed yet; seal or abort it first");
  }
  uint64_t count = e.count.load(std::memory_order_relaxed);
  if (count > 1) {
    txn.Write(e.count, count - 1);
  } else {
    HeldRemove(txn, slot_, idx);
  }
  ObjectRecord& rec = *loc.rec;
  uint64_t refs = rec.ref_count.load(std::memory_order_relaxed) - 1;
  txn.Write(rec.ref_count, refs);
  GISMO_CRASH_POINT("release.after_decrement");
  if (refs == 0 && InfoState(rec.info.load(std::memory_order_relaxed)) == ObjectState::kDeleting) {
    FreeRecordData(txn, rec);
    GISMO_CRASH_POINT("release.after_free");
    RemoveObject(txn, loc);
  }
  GISMO_CRASH_POINT("release.before_commit");
  txn.Commit();
  return Status();
}

Status Store::Delete(const gismo_id_t& id) {
  Txn txn(r_, slot_, session_, OpKind::kDelete);
  Located loc;
  if (!LockAndFind(txn, id, &loc)) {
    return Status(GISMO_ERR_OBJECT_NOT_FOUND, "no object " + Hex(id));
  }
  ObjectRecord& rec = *loc.rec;
  uint64_t info = rec.info.load(std::memory_order_relaxed);
  switch (InfoState(info)) {
    case ObjectState::kCreated:
      return Status(GISMO_ERR_OBJECT_NOT_SEALED,
                    "object " + Hex(id) + " is not sealed; its creator may abort it");
    case ObjectState::kDeleting:
      return Status(GISMO_ERR_OBJECT_NOT_FOUND, "object " + Hex(id) + " was already deleted");
    default:
      break;
  }
  uint64_t seq = 0;
  EventEntry* ev =
      AppendEvent(txn, EventKind::kDeleted, id, rec.sizes.load(std::memory_order_relaxed), &seq);
  if (rec.ref_count.load(std::memory_order_relaxed) == 0) {
    FreeRecordData(txn, rec);
    GISMO_CRASH_POINT("delete.after_free");
    RemoveObject(txn, loc);
  } else {
    txn.Write(rec.info, PackInfo(ObjectState::kDeleting, InfoSlot(info), InfoNode(info)));
  }
  GISMO_CRASH_POINT("delete.before_commit");
  txn.Commit();
  PublishEvent(ev, seq);
  return Status();
}

Status Store::Contains(const gismo_id_t& id, bool* contains) {
  Txn txn(r_, slot_, session_, OpKind::kNone);
  Located loc;
  *contains = LockAndFind(txn, id, &loc) &&
              InfoState(loc.rec->info.load(std::memory_order_relaxed)) == ObjectState::kSealed;
  txn.Commit();
  return Status();
}

void FillInfo(const ObjectRecord& rec, gismo_object_info_t* info) {
  uint64_t i = rec.info.load(std::memory_order_relaxed);
  uint64_t sizes = rec.sizes.load(std::memory_order_relaxed);
  info->id = IdOf(rec);
  info->state = static_cast<gismo_object_state_t>(InfoState(i));
  info->data_size = SizesData(sizes);
  info->metadata_size = SizesMeta(sizes);
  info->ref_count = rec.ref_count.load(std::memory_order_relaxed);
  info->creator_node = InfoNode(i);
  info->creator_client = InfoSlot(i);
  info->create_time_ns = rec.create_time_ns.load(std::memory_order_relaxed);
}

Status Store::Stat(const gismo_id_t& id, gismo_object_info_t* info) {
  Txn txn(r_, slot_, session_, OpKind::kNone);
  Located loc;
  if (!LockAndFind(txn, id, &loc)) {
    return Status(GISMO_ERR_OBJECT_NOT_FOUND, "no object " + Hex(id));
  }
  FillInfo(*loc.rec, info);
  txn.Commit();
  return Status();
}

void Store::ForEach(const std::function<void(const gismo_object_info_t&)>& fn) const {
  std::vector<gismo_object_info_t> batch;
  const uint32_t nslots = r_.sb().slots_per_shard;
  for (uint32_t s = 0; s < r_.num_shards(); ++s) {
    batch.clear();
    {
      Txn txn(r_, slot_, session_, OpKind::kNone);
      txn.Lock(r_.shard(s).lock);
      Word* slots = r_.hash_slots(s);
      ObjectRecord* recs = r_.records(s);
      for (uint32_t i = 0; i < nslots; ++i) {
        uint64_t v = slots[i].load(std::memory_order_relaxed);
        if (v == 0) continue;
        gismo_object_info_t info;
        FillInfo(recs[(v & 0xffffffff) - 1], &info);
        batch.push_back(info);
      }
      txn.Commit();
    }
    for (const auto& info : batch) fn(info);
  }
}

gismo_usage_t Store::Usage() const {
  gismo_usage_t u{};
  HeapStats hs = alloc_.Stats();
  u.capacity_bytes = hs.capacity_bytes;
  u.used_bytes = hs.used_bytes;
  u.free_bytes = hs.free_bytes;
  u.largest_free_bytes = hs.largest_free_bytes;
  u.max_objects = r_.sb().max_objects;
  u.max_clients = r_.max_clients() - 1;  // slot 0 is the manager's
  u.region_size = r_.size();
  ForEach([&u](const gismo_object_info_t& info) {
    ++u.object_count;
    switch (info.state) {
      case GISMO_STATE_SEALED:
        ++u.sealed_count;
        break;
      case GISMO_STATE_CREATED:
        ++u.unsealed_count;
        break;
      case GISMO_STATE_DELETING:
        ++u.deleting_count;
        break;
    }
  });
  ForEachClient([&u](const gismo_client_info_t&) { ++u.client_count; });
  const Superblock& sb = r_.sb();
  u.manager_start_time_ns = sb.manager_start_time_ns.load(std::memory_order_relaxed);
  u.manager_heartbeat_ns = sb.manager_heartbeat_ns.load(std::memory_order_relaxed);
  u.manager_epoch = sb.manager_epoch.load(std::memory_order_relaxed);
  u.format_time_ns = sb.format_time_ns;
  u.format_version = sb.format_version;
  u.coherence_mode = sb.coherence_mode;
  return u;
}

void Store::ForEachClient(const std::function<void(const gismo_client_info_t&)>& fn) const {
  for (uint32_t i = 1; i < r_.max_clients(); ++i) {
    const ClientSlotHeader& h = r_.slot(i);
    if ((h.state.load(std::memory_order_acquire) & 0xff) !=
        static_cast<uint64_t>(SlotState::kActive)) {
      continue;
    }
    gismo_client_info_t info{};
    info.client = i;
    info.node = static_cast<uint32_t>(h.node_id.load(std::memory_order_relaxed));
    info.client_id = h.client_id.load(std::memory_order_relaxed);
    info.pid = h.pid.load(std::memory_order_relaxed);
    info.connect_time_ns = h.connect_time_ns.load(std::memory_order_relaxed);
    info.held_objects = h.held_count.load(std::memory_order_relaxed);
    fn(info);
  }
}

EventEntry* Store::AppendEvent(Txn& txn, EventKind kind, const gismo_id_t& id, uint64_t sizes,
                               uint64_t* seq) {
  EventRingHeader& ring = r_.event_ring();
  txn.Lock(ring.lock);
  *seq = ring.head.load(std::memory_order_relaxed);
  EventEntry& e = r_.event(*seq);
  // Unpublished until the commit: a reader seeing seq 0 (or an older seq)
  // waits; one lapped by a seq beyond its cursor reports an overflow.
  e.seq.store(0, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  const IdWords x = ToWords(id);
  e.kind_node.store(static_cast<uint64_t>(kind) | uint64_t{node_} << 8, std::memory_order_relaxed);
  for (int k = 0; k < 3; ++k) e.id[k].store(x.w[k], std::memory_order_relaxed);
  e.data_size.store(SizesData(sizes), std::memory_order_relaxed);
  e.metadata_size.store(SizesMeta(sizes), std::memory_order_relaxed);
  e.time_ns.store(RealtimeNs(), std::memory_order_relaxed);
  txn.Write(ring.head, *seq + 1);
  return &e;
}

bool Store::PublishStrandedEvents(const Region& r, uint32_t txn_slot, uint64_t txn_session) {
  Txn txn(r, txn_slot, txn_session, OpKind::kRecover);
  txn.SetLockTimeout(kRecoveryLockWaitNs);
  EventRingHeader& ring = r.event_ring();
  txn.Lock(ring.lock);
  if (txn.failed()) return false;
  // Holding the lock, every entry below head belongs to a committed event.
  const uint64_t head = ring.head.load(std::memory_order_acquire);
  const uint64_t cap = r.sb().event_ring_capacity;
  for (uint64_t seq = head > cap ? head - cap : 1; seq < head; ++seq) {
    EventEntry& e = r.event(seq);
    if (e.seq.load(std::memory_order_acquire) == 0) PublishEvent(&e, seq);
  }
  txn.Commit();
  return true;
}

RingRead ReadEvent(const Region& r, uint64_t* cursor, RingEvent* out) {
  const uint64_t head = r.event_ring().head.load(std::memory_order_acquire);
  const uint64_t cap = r.sb().event_ring_capacity;
  if (*cursor >= head) return RingRead::kNothing;
  if (head - *cursor > cap) return RingRead::kOverflow;
  const EventEntry& e = r.event(*cursor);
  uint64_t s1 = e.seq.load(std::memory_order_acquire);
  if (s1 > *cursor) return RingRead::kOverflow;
  if (s1 != *cursor) return RingRead::kNothing;  // committed, not yet published
  uint64_t kn = e.kind_node.load(std::memory_order_relaxed);
  uint64_t w[3] = {e.id[0].load(std::memory_order_relaxed), e.id[1].load(std::memory_order_relaxed),
                   e.id[2].load(std::memory_order_relaxed)};
  out->data_size = e.data_size.load(std::memory_order_relaxed);
  out->metadata_size = e.metadata_size.load(std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_acquire);
  if (e.seq.load(std::memory_order_relaxed) != s1) return RingRead::kOverflow;  // overwritten
  out->seq = s1;
  out->kind = static_cast<EventKind>(kn & 0xff);
  out->node = static_cast<uint32_t>(kn >> 8);
  std::memcpy(out->id.bytes, w, GISMO_ID_SIZE);
  ++*cursor;
  return RingRead::kEvent;
}

Store::RecoveryReport Store::RecoverSlot(const Region& r, uint32_t dead, uint32_t txn_slot,
                                         uint64_t txn_session) {
  RecoveryReport rep;
  rep.locks_released = UndoDeadClient(r, dead);
  HeldEntry* held = r.held(dead);
  const uint32_t cap = r.sb().held_capacity;
  for (uint32_t i = 0; i < cap; ++i) {
    uint64_t key = held[i].key.load(std::memory_order_acquire);
    if (key == 0) continue;
    uint32_t global = HeldKeyGlobal(key);
    uint32_t shard = global / r.records_per_shard();
    Txn txn(r, txn_slot, txn_session, OpKind::kRecover);
    txn.SetLockTimeout(kRecoveryLockWaitNs);
    uint64_t count = held[i].count.load(std::memory_order_relaxed);
    Located loc;
    if (shard < r.num_shards()) txn.Lock(r.shard(shard).lock);
    if (txn.failed()) return rep;  // incomplete: try again later
    if (shard < r.num_shards() && FindByRecord(r, global, &loc)) {
      ObjectRecord& rec = *loc.rec;
      ObjectState st = InfoState(rec.info.load(std::memory_order_relaxed));
      if ((key & kHeldUnsealedCreator) && st == ObjectState::kCreated) {
        FreeRecordData(txn, rec);
        RemoveObject(txn, loc);
        ++rep.aborted;
      } else {
        uint64_t refs = rec.ref_count.load(std::memory_order_relaxed);
        refs = refs >= count ? refs - count : 0;
        txn.Write(rec.ref_count, refs);
        rep.references_dropped += count;
        if (refs == 0 && st == ObjectState::kDeleting) {
          FreeRecordData(txn, rec);
          RemoveObject(txn, loc);
          ++rep.freed;
        }
      }
    }
    txn.Write(held[i].key, 0);
    txn.Write(held[i].count, 0);
    if (txn.failed()) return rep;  // a lock stayed busy: rolled back, retried later
    GISMO_CRASH_POINT("recovery.before_commit");
    txn.Commit();
    GISMO_CRASH_POINT("recovery.after_entry");
  }
  r.slot(dead).held_count.store(0, std::memory_order_release);
  rep.complete = Allocator(r).DisownSlabs(dead, txn_slot, txn_session, kRecoveryLockWaitNs) &&
                 PublishStrandedEvents(r, txn_slot, txn_session);
  return rep;
}

}  // namespace gismo::store
