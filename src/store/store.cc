#include "store/store.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "common/check.h"
#include "common/clock.h"
#include "store/held.h"

namespace gismo::store {

using namespace region;  // NOLINT: layout names are this file's vocabulary

Store::Store(const Region& r, uint32_t slot, uint64_t session, uint32_t node)
    : r_(r), alloc_(r), slot_(slot), session_(session), node_(node) {}

Store::~Store() = default;

Status Store::UseNonCoherent(std::function<void()> wake) {
  // An answer waits as long as a lock would (the owner holds none for long),
  // at least 1 s. The owner wrote the line: read it from memory.
  region::InvalidateLines(&r_.sb().lock_wait_ms, sizeof(Word));
  const int64_t timeout_ms =
      static_cast<int64_t>(std::max<uint64_t>(region::LockWaitNs(r_) / 1'000'000, 1000));
  auto nc = std::make_unique<NcClientStore>(r_, slot_, session_, std::move(wake), timeout_ms);
  if (Status s = nc->Attach(); !s.ok()) return s;
  nc_ = std::move(nc);
  return Status();
}

Status CheckCreateArgs(uint32_t flags, uint64_t data_size, uint64_t metadata_size) {
  if ((flags & ~kObjectFlagsPublic) != 0) {
    return Status(GISMO_ERR_INVALID_ARGUMENT,
                  "unknown create flag bits " + std::to_string(flags & ~kObjectFlagsPublic) +
                      " (known: GISMO_CREATE_OWNED, GISMO_CREATE_EVICTABLE)");
  }
  if (data_size > kMaxDataSize) {
    return Status(GISMO_ERR_INVALID_ARGUMENT, "object size " + FormatSize(data_size) + " (" +
                                                  std::to_string(data_size) +
                                                  " bytes) exceeds the format's limit of 1 TiB (" +
                                                  std::to_string(kMaxDataSize) + " bytes)");
  }
  if (metadata_size > kMaxMetadataSize) {
    return Status(GISMO_ERR_INVALID_ARGUMENT, "metadata size " + FormatSize(metadata_size) + " (" +
                                                  std::to_string(metadata_size) +
                                                  " bytes) exceeds the limit of 16 MiB (" +
                                                  std::to_string(kMaxMetadataSize) + " bytes)");
  }
  return Status();
}

void Store::FreeObjectData(Txn& txn, const ObjectRecord& rec) {
  // REQUIRES: the shard lock of the record's shard.
  GISMO_DCHECK(([&] {
    const Region& r = txn.region();
    for (uint32_t s = 0; s < r.num_shards(); ++s) {
      const ObjectRecord* first = r.records(s);
      if (&rec >= first && &rec < first + r.records_per_shard()) return txn.Holds(r.shard(s).lock);
    }
    return false;
  }()));
  const uint64_t sizes = rec.sizes.load(std::memory_order_relaxed);
  Allocator(txn.region())
      .Free(txn, rec.heap_offset.load(std::memory_order_relaxed),
            BlockBytes(SizesData(sizes), SizesMeta(sizes)));
}

bool Store::SlotAlive() const {
  // The manager writes the slot's state: read it from memory.
  if (nc_) region::InvalidateLines(&r_.slot(slot_).state, sizeof(Word));
  return r_.slot(slot_).state.load(std::memory_order_acquire) ==
         PackSlotState(SlotState::kActive, session_);
}

void Store::FlushBeforeLeaving() {
  if (nc_) nc_->FlushUnsealed();
}

bool Store::MarkDeparted() {
  if (nc_) return nc_->MarkDeparted();
  region::ClientSlotHeader& h = r_.slot(slot_);
  const uint64_t st = h.state.load(std::memory_order_acquire);
  const SlotState state = region::SlotStateOf(st);
  if (region::SlotSessionOf(st) != session_ ||
      (state != SlotState::kActive && state != SlotState::kSuspected)) {
    return false;
  }
  // Release: every earlier write of this client (its log, held table,
  // objects) is visible to a manager that reads the mark with acquire.
  h.departed.store(session_, std::memory_order_release);
  r_.Persist(&h.departed, sizeof(h.departed));
  return true;
}

Status Store::Create(const gismo_id_t& id, uint64_t data_size, const void* metadata,
                     uint64_t metadata_size, uint32_t flags, void** data) {
  if (nc_) return nc_->Create(id, data_size, metadata, metadata_size, flags, data);
  if (Status s = CheckCreateArgs(flags, data_size, metadata_size); !s.ok()) return s;
  // A create that does not fit evicts (evict.cc), in transactions of its
  // own after its own has rolled back (no shard lock is held across them),
  // then tries again; it gives up once a sweep finds nothing to evict. The
  // bound on attempts only guards against creators that refill the room
  // faster than it is made.
  constexpr int kMaxAttempts = 16;
  for (int attempt = 0;; ++attempt) {
    int64_t full_shard = -1;
    Status s = CreateOnce(id, data_size, metadata, metadata_size, flags, data, &full_shard);
    if (s.code() != GISMO_ERR_OUT_OF_MEMORY || attempt == kMaxAttempts) return s;
    EvictTarget want;
    if (full_shard >= 0) {
      want.shard = full_shard;
      want.objects = std::max<uint64_t>(
          1, r_.records_per_shard() * EvictShareBytes() / std::max<uint64_t>(1, r_.heap_size()));
    } else {
      want.bytes =
          std::max(Allocator::BlockSize(BlockBytes(data_size, metadata_size)), EvictShareBytes());
    }
    EvictResult got;
    if (Status e = Evict(want, &got); !e.ok()) return e;
    if (got.objects == 0) {
      return Status(GISMO_ERR_OUT_OF_MEMORY, s.message() + "; nothing could be evicted");
    }
  }
}

Status CheckFits(const Region& r, uint64_t bytes) {
  if (Allocator::BlockSize(bytes) <= r.heap_size()) return Status();
  return Status(GISMO_ERR_OUT_OF_MEMORY, "an object of " + FormatSize(bytes) +
                                             " can never fit: the store holds " +
                                             FormatSize(r.heap_size()));
}

Status Store::CreateOnce(const gismo_id_t& id, uint64_t data_size, const void* metadata,
                         uint64_t metadata_size, uint32_t flags, void** data, int64_t* full_shard) {
  const uint64_t bytes = BlockBytes(data_size, metadata_size);
  if (Status s = CheckFits(r_, bytes); !s.ok()) return s;
  PruneOwnedIfFull();
  const uint64_t h = HashId(id);
  const uint32_t shard = r_.ShardOf(h);
  Txn txn(r_, slot_, session_, OpKind::kCreate);
  if (!txn.Lock(r_.shard(shard).lock)) return txn.Commit();
  Located loc;
  if (Find(r_, shard, h, id, &loc)) {
    const ObjectState st = InfoState(loc.rec->info.load(std::memory_order_relaxed));
    return Status(GISMO_ERR_OBJECT_EXISTS,
                  "object " + Hex(id) +
                      (st == ObjectState::kSealed    ? " exists (sealed)"
                       : st == ObjectState::kCreated ? " exists (being created)"
                                                     : " is being deleted, still in use"));
  }
  if (loc.hslot == kNoHashSlot) {
    return Status(GISMO_ERR_LIMIT, "too many objects in the index hash to the same place as " +
                                       Hex(id) + "; choose ids that differ more, or delete some");
  }
  auto local = TakeRecord(txn, shard);
  if (!local.ok()) {
    if (local.status().code() == GISMO_ERR_OUT_OF_MEMORY) *full_shard = shard;
    return local.status();
  }
  const uint32_t global = GlobalIndex(r_, shard, *local);
  GISMO_CRASH_POINT("create.before_allocate");
  auto off = alloc_.Allocate(txn, bytes);
  if (!off.ok()) return off.status();
  if (txn.failed()) return txn.Commit();
  GISMO_CRASH_POINT("create.after_allocate");
  ObjectRecord& rec = r_.records(shard)[*local];
  const IdWords x = ToWords(id);
  for (int k = 0; k < 3; ++k) txn.Write(rec.id[k], x.w[k]);
  // An evictable object starts with its reference bit set: one turn of the
  // hand passes before it can go (evict.cc, invariant 3).
  const uint32_t stored = (flags & kObjectFlagEvictable) ? flags | kObjectFlagReferenced : flags;
  txn.Write(rec.info, PackInfo(ObjectState::kCreated, slot_, node_, stored));
  txn.Write(rec.ref_count, 1);
  txn.Write(rec.heap_offset, *off);
  txn.Write(rec.sizes, PackSizes(data_size, metadata_size));
  txn.Write(rec.create_time_ns, RealtimeNs());
  txn.Write(r_.hash_slots(shard)[loc.hslot], PackHashSlot(h, *local));
  ShardHeader& sh = r_.shard(shard);
  txn.Write(sh.count, sh.count.load(std::memory_order_relaxed) + 1);
  GISMO_CRASH_POINT("create.after_index");
  const uint64_t held_flags =
      kHeldUnsealedCreator | ((flags & kObjectFlagOwned) != 0 ? kHeldOwned : 0);
  if (Status s = HeldAdd(txn, global, held_flags); !s.ok()) return s;
  GISMO_CRASH_POINT("create.before_commit");
  if (Status s = txn.Commit(); !s.ok()) return s;
  uint8_t* block = r_.heap() + *off;
  if (metadata_size > 0) std::memcpy(block + PaddedData(data_size), metadata, metadata_size);
  *data = block;
  return Status();
}

void Store::PruneOwnedIfFull() {
  const uint32_t cap = r_.fixed().held_capacity;
  if (r_.slot(slot_).held_count.load(std::memory_order_relaxed) + 1 < cap - cap / 4) return;
  HeldEntry* held = r_.held(slot_);
  for (uint32_t i = 0; i < cap; ++i) {
    const uint64_t key = held[i].key.load(std::memory_order_relaxed);
    if (!(key & kHeldOwned) || held[i].count.load(std::memory_order_relaxed) != 0) continue;
    const uint32_t global = HeldKeyGlobal(key);
    const uint32_t shard = global / r_.records_per_shard();
    if (shard >= r_.num_shards()) continue;
    Txn txn(r_, slot_, session_, OpKind::kRelease);
    if (!txn.Lock(r_.shard(shard).lock)) return;
    // Only this client writes its table, so entry i still holds `key`.
    Located loc;
    if (FindByRecord(r_, global, &loc) &&
        InfoOwnedBy(loc.rec->info.load(std::memory_order_relaxed), slot_)) {
      continue;  // still owned (the Txn commits nothing)
    }
    HeldRemove(txn, slot_, i);
    if (!txn.Commit().ok()) return;
    --i;  // the backward shift may have moved another entry into i
  }
}

Status Store::Seal(const gismo_id_t& id) {
  if (nc_) return nc_->Seal(id);
  Txn txn(r_, slot_, session_, OpKind::kSeal);
  Located loc;
  bool found = false;
  if (!LockAndFind(txn, id, &found, &loc)) return txn.Commit();
  if (!found) return Status(GISMO_ERR_OBJECT_NOT_FOUND, "no object " + Hex(id));
  const uint64_t info = loc.rec->info.load(std::memory_order_relaxed);
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
  // Durable regions: the object's bytes (data and metadata) are on the
  // medium before its sealed state can be (the state's line may be written
  // back as soon as it is stored).
  if (r_.persist_mode() != PersistMode::kNone) {
    const uint64_t off = loc.rec->heap_offset.load(std::memory_order_relaxed);
    const uint64_t sizes = loc.rec->sizes.load(std::memory_order_relaxed);
    const uint64_t bytes = BlockBytes(SizesData(sizes), SizesMeta(sizes));
    if (!r_.ValidHeapBlock(off, bytes)) {
      return r_.Corrupt("object " + Hex(id) + " has a block outside the heap");
    }
    r_.Persist(r_.heap_offset() + off, bytes);
  }
  txn.Write(loc.rec->info, PackInfo(ObjectState::kSealed, slot_, InfoNode(info), InfoFlags(info)));
  const int64_t idx = HeldFind(r_, slot_, GlobalIndex(r_, loc.shard, loc.local));
  if (idx >= 0) {
    HeldEntry& e = r_.held(slot_)[idx];
    txn.Write(e.key, e.key.load(std::memory_order_relaxed) & ~kHeldUnsealedCreator);
  }
  uint64_t seq = 0;
  EventEntry* ev = AppendEvent(txn, EventKind::kSealed, node_, id,
                               loc.rec->sizes.load(std::memory_order_relaxed), &seq);
  GISMO_CRASH_POINT("seal.before_commit");
  if (Status s = txn.Commit(); !s.ok()) return s;
  GISMO_CRASH_POINT("seal.before_publish");
  PublishEvent(ev, seq);
  return Status();
}

Status Store::Abort(const gismo_id_t& id) {
  if (nc_) return nc_->Abort(id);
  Txn txn(r_, slot_, session_, OpKind::kAbort);
  Located loc;
  bool found = false;
  if (!LockAndFind(txn, id, &found, &loc)) return txn.Commit();
  if (!found) return Status(GISMO_ERR_OBJECT_NOT_FOUND, "no object " + Hex(id));
  const uint64_t info = loc.rec->info.load(std::memory_order_relaxed);
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
  const int64_t idx = HeldFind(r_, slot_, GlobalIndex(r_, loc.shard, loc.local));
  if (idx >= 0) HeldRemove(txn, slot_, idx);
  FreeObjectData(txn, *loc.rec);
  GISMO_CRASH_POINT("abort.after_free");
  RemoveObject(txn, loc);
  GISMO_CRASH_POINT("abort.before_commit");
  return txn.Commit();
}

Status Store::TryGet(const gismo_id_t& id, GetResult* out) {
  if (nc_) return nc_->TryGet(id, out);
  out->found = false;
  PruneOwnedIfFull();
  Txn txn(r_, slot_, session_, OpKind::kGet);
  Located loc;
  bool found = false;
  if (!LockAndFind(txn, id, &found, &loc)) return txn.Commit();
  if (!found || InfoState(loc.rec->info.load(std::memory_order_relaxed)) != ObjectState::kSealed) {
    return txn.Commit();
  }
  if (Status s = HeldAdd(txn, GlobalIndex(r_, loc.shard, loc.local), 0); !s.ok()) return s;
  ObjectRecord& rec = *loc.rec;
  txn.Write(rec.ref_count, rec.ref_count.load(std::memory_order_relaxed) + 1);
  MarkReferenced(txn, rec);
  GISMO_CRASH_POINT("get.before_commit");
  const uint64_t sizes = rec.sizes.load(std::memory_order_relaxed);
  const uint64_t offset = rec.heap_offset.load(std::memory_order_relaxed);
  if (!r_.ValidHeapBlock(offset, BlockBytes(SizesData(sizes), SizesMeta(sizes)))) {
    return r_.Corrupt("object " + Hex(id) + "'s record points outside the heap");
  }
  if (Status s = txn.Commit(); !s.ok()) return s;
  const uint8_t* block = r_.read_heap() + offset;
  out->found = true;
  out->buffer.data = block;
  out->buffer.data_size = SizesData(sizes);
  out->buffer.metadata = block + PaddedData(SizesData(sizes));
  out->buffer.metadata_size = SizesMeta(sizes);
  return Status();
}

Status Store::Release(const gismo_id_t& id, bool* freed) {
  if (freed != nullptr) *freed = false;
  if (nc_) return nc_->Release(id);
  Txn txn(r_, slot_, session_, OpKind::kRelease);
  Located loc;
  bool found = false;
  if (!LockAndFind(txn, id, &found, &loc)) return txn.Commit();
  if (!found) return Status(GISMO_ERR_OBJECT_NOT_FOUND, "no object " + Hex(id));
  const int64_t idx = HeldFind(r_, slot_, GlobalIndex(r_, loc.shard, loc.local));
  if (idx < 0) {
    return Status(GISMO_ERR_NOT_HELD, "this client holds no reference to object " + Hex(id));
  }
  HeldEntry& e = r_.held(slot_)[idx];
  const uint64_t key = e.key.load(std::memory_order_relaxed);
  if (key & kHeldUnsealedCreator) {
    return Status(GISMO_ERR_OBJECT_NOT_SEALED,
                  "object " + Hex(id) + " is not sealed yet; seal or abort it first");
  }
  const uint64_t count = e.count.load(std::memory_order_relaxed);
  if (count == 0) {  // an owned entry without references
    return Status(GISMO_ERR_NOT_HELD, "this client holds no reference to object " + Hex(id));
  }
  ObjectRecord& rec = *loc.rec;
  if (count > 1) {
    txn.Write(e.count, count - 1);
  } else if ((key & kHeldOwned) && InfoOwnedBy(rec.info.load(std::memory_order_relaxed), slot_)) {
    txn.Write(e.count, 0);  // still owned: its entry stays (kHeldOwned invariant 1)
  } else {
    HeldRemove(txn, slot_, idx);
  }
  const uint64_t held_refs = rec.ref_count.load(std::memory_order_relaxed);
  if (held_refs == 0) {
    return Status(GISMO_ERR_BAD_REGION,
                  "object " + Hex(id) + " has no references although this client holds one");
  }
  const uint64_t refs = held_refs - 1;
  txn.Write(rec.ref_count, refs);
  GISMO_CRASH_POINT("release.after_decrement");
  const bool frees =
      refs == 0 && InfoState(rec.info.load(std::memory_order_relaxed)) == ObjectState::kDeleting;
  if (frees) {
    FreeObjectData(txn, rec);
    GISMO_CRASH_POINT("release.after_free");
    RemoveObject(txn, loc);
  }
  GISMO_CRASH_POINT("release.before_commit");
  Status committed = txn.Commit();
  if (committed.ok() && frees && freed != nullptr) *freed = true;
  return committed;
}

Status Store::Delete(const gismo_id_t& id) {
  if (nc_) return nc_->Delete(id);
  Txn txn(r_, slot_, session_, OpKind::kDelete);
  Located loc;
  bool found = false;
  if (!LockAndFind(txn, id, &found, &loc)) return txn.Commit();
  if (!found) return Status(GISMO_ERR_OBJECT_NOT_FOUND, "no object " + Hex(id));
  ObjectRecord& rec = *loc.rec;
  const uint64_t info = rec.info.load(std::memory_order_relaxed);
  switch (InfoState(info)) {
    case ObjectState::kCreated:
      return Status(GISMO_ERR_OBJECT_NOT_SEALED,
                    "object " + Hex(id) + " is not sealed; its creator may abort it");
    case ObjectState::kDeleting:
      return Status(GISMO_ERR_OBJECT_NOT_FOUND, "object " + Hex(id) + " was already deleted");
    default:
      break;
  }
  if (InfoOwnedBy(info, slot_)) {
    const int64_t idx = HeldFind(r_, slot_, GlobalIndex(r_, loc.shard, loc.local));
    if (idx >= 0) {
      HeldEntry& e = r_.held(slot_)[idx];
      if (e.count.load(std::memory_order_relaxed) == 0) {
        HeldRemove(txn, slot_, idx);
      } else {
        txn.Write(e.key, e.key.load(std::memory_order_relaxed) & ~kHeldOwned);
      }
    }
  }
  uint64_t seq = 0;
  EventEntry* ev = AppendEvent(txn, EventKind::kDeleted, node_, id,
                               rec.sizes.load(std::memory_order_relaxed), &seq);
  if (rec.ref_count.load(std::memory_order_relaxed) == 0) {
    FreeObjectData(txn, rec);
    GISMO_CRASH_POINT("delete.after_free");
    RemoveObject(txn, loc);
  } else {
    txn.Write(rec.info,
              PackInfo(ObjectState::kDeleting, InfoSlot(info), InfoNode(info), InfoFlags(info)));
  }
  GISMO_CRASH_POINT("delete.before_commit");
  if (Status s = txn.Commit(); !s.ok()) return s;
  PublishEvent(ev, seq);
  return Status();
}

Status Store::Contains(const gismo_id_t& id, bool* contains) {
  if (nc_) return nc_->Contains(id, contains);
  *contains = false;
  Txn txn(r_, slot_, session_, OpKind::kNone);
  Located loc;
  bool found = false;
  if (!LockAndFind(txn, id, &found, &loc)) return txn.Commit();
  *contains =
      found && InfoState(loc.rec->info.load(std::memory_order_relaxed)) == ObjectState::kSealed;
  return txn.Commit();
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
  info->flags = InfoFlags(i) & kObjectFlagsPublic;
  info->create_time_ns = rec.create_time_ns.load(std::memory_order_relaxed);
}

Status Store::Stat(const gismo_id_t& id, gismo_object_info_t* info) {
  if (nc_) return nc_->Stat(id, info);
  Txn txn(r_, slot_, session_, OpKind::kNone);
  Located loc;
  bool found = false;
  if (!LockAndFind(txn, id, &found, &loc)) return txn.Commit();
  if (!found) return Status(GISMO_ERR_OBJECT_NOT_FOUND, "no object " + Hex(id));
  FillInfo(*loc.rec, info);
  return txn.Commit();
}

Status Store::ForEach(const std::function<void(const gismo_object_info_t&)>& fn) const {
  if (nc_) return nc_->ForEach(fn);
  std::vector<gismo_object_info_t> batch;
  const uint32_t nslots = r_.fixed().slots_per_shard;
  const uint32_t nrec = r_.records_per_shard();
  for (uint32_t s = 0; s < r_.num_shards(); ++s) {
    batch.clear();
    {
      Txn txn(r_, slot_, session_, OpKind::kNone);
      if (!txn.Lock(r_.shard(s).lock)) return txn.Commit();
      Word* slots = r_.hash_slots(s);
      ObjectRecord* recs = r_.records(s);
      for (uint32_t i = 0; i < nslots; ++i) {
        const uint64_t v = slots[i].load(std::memory_order_relaxed);
        if (v == 0 || HashSlotLocal(v) >= nrec) continue;
        gismo_object_info_t info;
        FillInfo(recs[HashSlotLocal(v)], &info);
        batch.push_back(info);
      }
      if (Status st = txn.Commit(); !st.ok()) return st;
    }
    for (const auto& info : batch) fn(info);
  }
  return Status();
}

Status Store::Usage(gismo_usage_t* out) const {
  gismo_usage_t u{};
  // The owner writes the allocator's counters: read them from memory.
  if (nc_) {
    region::InvalidateLines(&r_.alloc(), sizeof(region::AllocatorHeader));
    region::InvalidateLines(&r_.free_runs()[1], sizeof(region::FreeRunNode));  // the longest run
  }
  HeapStats hs = alloc_.Stats();
  u.capacity_bytes = hs.capacity_bytes;
  u.used_bytes = hs.used_bytes;
  u.free_bytes = hs.free_bytes;
  u.largest_free_bytes = hs.largest_free_bytes;
  u.max_objects = r_.fixed().max_objects;
  // Slot 0 is the manager's, and its helper threads' slots are theirs.
  u.max_clients = region::SlotsForClients(r_, region::OwnerHelperSlots(r_).size());
  u.region_size = r_.size();
  Status listed = ForEach([&u](const gismo_object_info_t& info) {
    ++u.object_count;
    switch (info.state) {
      case GISMO_STATE_SEALED:
        ++u.sealed_count;
        break;
      default:
        ++u.unsealed_count;
        break;
      case GISMO_STATE_DELETING:
        ++u.deleting_count;
        break;
    }
  });
  if (!listed.ok()) return listed;
  for (uint32_t s = 0; s < r_.num_shards(); ++s) {
    if (nc_) region::InvalidateLines(&r_.shard(s), sizeof(ShardHeader));  // the owner's
    u.evictions += r_.shard(s).evictions.load(std::memory_order_relaxed);
    u.evicted_bytes += r_.shard(s).evicted_bytes.load(std::memory_order_relaxed);
  }
  ForEachClient([&u](const gismo_client_info_t&) { ++u.client_count; });
  const Superblock& sb = r_.sb();
  u.manager_start_time_ns = sb.manager_start_time_ns.load(std::memory_order_relaxed);
  u.manager_heartbeat_ns = sb.manager_heartbeat_ns.load(std::memory_order_relaxed);
  u.manager_epoch = sb.manager_epoch.load(std::memory_order_relaxed);
  const Superblock& fixed = r_.fixed();
  u.format_time_ns = fixed.format_time_ns;
  u.region_uuid[0] = fixed.uuid[0];
  u.region_uuid[1] = fixed.uuid[1];
  u.format_version = fixed.format_version;
  u.coherence_mode = fixed.coherence_mode;
  u.region_features = fixed.features;
  *out = u;
  return Status();
}

void Store::ForEachClient(const std::function<void(const gismo_client_info_t&)>& fn) const {
  const std::vector<uint32_t> helpers = region::OwnerHelperSlots(r_);
  for (uint32_t i = 1; i < r_.max_clients(); ++i) {
    if (std::find(helpers.begin(), helpers.end(), i) != helpers.end()) continue;
    const ClientSlotHeader& h = r_.slot(i);
    // A non-coherent region: the header is the manager's line, and the
    // count of held objects is the client's table itself (held_count is
    // unused there).
    if (nc_) region::InvalidateLines(&h, sizeof(h));
    if (SlotStateOf(h.state.load(std::memory_order_acquire)) != SlotState::kActive) {
      continue;
    }
    gismo_client_info_t info{};
    info.client = i;
    info.node = static_cast<uint32_t>(h.node_id.load(std::memory_order_relaxed));
    info.client_id = h.client_id.load(std::memory_order_relaxed);
    info.pid = h.pid.load(std::memory_order_relaxed);
    info.connect_time_ns = h.connect_time_ns.load(std::memory_order_relaxed);
    info.held_objects = nc_ ? nc_->HeldObjects(i) : h.held_count.load(std::memory_order_relaxed);
    fn(info);
  }
}

}  // namespace gismo::store
