#include "store/nc_client.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common/crash_point.h"
#include "region/nc_fence.h"
#include "store/index.h"
#include "store/store.h"

namespace gismo::store {

using namespace region;  // NOLINT: layout names are this file's vocabulary

namespace {

NcView ViewOf(const Region& r) {
  const uint64_t stride = r.num_shards() > 1
                              ? static_cast<uint64_t>(reinterpret_cast<uint8_t*>(r.records(1)) -
                                                      reinterpret_cast<uint8_t*>(r.records(0)))
                              : 0;
  return NcRegionView(r.records(0), r.num_shards(), r.records_per_shard(), stride, r.heap(),
                      r.heap_size());
}

NcRequesterOptions RequesterOptions(const Region& r, uint32_t slot, uint64_t session,
                                    std::function<void()> wake) {
  NcRequesterOptions o;
  o.request_ring = r.request_ring(slot);
  o.response_ring = r.response_ring(slot);
  o.capacity = r.request_ring_capacity();
  o.session = session;
  o.sleep_line = &r.sb().owner_sleep;
  o.slot = slot;
  o.record_limit = r.num_records();
  o.heap_size = r.heap_size();
  o.wake = std::move(wake);
  return o;
}

// How long a reader waits for a seqlock the owner holds odd: as long as a
// coherent client waits for a lock. The owner's line is read from memory.
uint64_t PatienceNs(const Region& r) {
  InvalidateLines(&r.sb().lock_wait_ms, sizeof(Word));
  return LockWaitNs(r);
}
}  // namespace

NcClientStore::NcClientStore(const Region& r, uint32_t slot, uint64_t session,
                             std::function<void()> wake, int64_t timeout_ms)
    : r_(r),
      slot_(slot),
      session_(session),
      timeout_ms_(timeout_ms),
      patience_ns_(PatienceNs(r)),
      view_(ViewOf(r)),
      requester_(lines_, RequesterOptions(r, slot, session, std::move(wake))),
      reader_(lines_, view_, NcTableOf(r, slot)) {
#ifdef GISMO_CRASH_POINTS
  if (const char* f = std::getenv("GISMO_NC_FAULT"); f != nullptr) {
    skip_seal_flush_ = std::strcmp(f, "skip-seal-flush") == 0;
    if (std::strcmp(f, "skip-data-invalidate") == 0) {
      reader_.SetFaultForTesting(region::NcRefFault::kSkipDataInvalidate);
    }
  }
#endif
}

Status NcClientStore::Attach() {
  if (!requester_.Attach()) {
    return Status(GISMO_ERR_PROTOCOL, "client slot " + std::to_string(slot_) +
                                          "'s request ring is inconsistent (tail and head)");
  }
  return Status();
}

NcShard NcClientStore::ShardOf(uint64_t hash) const {
  const uint32_t s = r_.ShardOf(hash);
  NcShard shard;
  shard.header = &r_.shard(s);
  shard.slots = r_.hash_slots(s);
  shard.mask = r_.fixed().slots_per_shard - 1;
  shard.first_record = s * r_.records_per_shard();
  shard.records = r_.records_per_shard();
  return shard;
}

Status NcClientStore::Call(const NcRequest& q, const gismo_id_t& id, NcResponse* out) {
  if (Status s = requester_.Call(q, out, timeout_ms_); !s.ok()) return s;
  owner_slow_ = false;
  const std::string obj = "object " + Hex(id);
  switch (out->status) {
    case GISMO_OK:
      return Status();
    case GISMO_ERR_OBJECT_EXISTS:
      return Status(out->status, obj + " exists");
    case GISMO_ERR_OBJECT_NOT_FOUND:
      return Status(out->status, "no object " + Hex(id));
    case GISMO_ERR_OBJECT_NOT_SEALED:
      return Status(out->status, obj + " is not sealed; its creator may abort it");
    case GISMO_ERR_OBJECT_ALREADY_SEALED:
      return Status(out->status, obj + " is already sealed");
    case GISMO_ERR_NOT_CREATOR:
      return Status(out->status,
                    obj + " is being created by another client; only it can " + NcOpName(q.op));
    case GISMO_ERR_OUT_OF_MEMORY:
      return Status(out->status, "no room for " + obj + " of " +
                                     FormatSize(q.data_size + q.metadata_size) +
                                     "; nothing could be evicted");
    case GISMO_ERR_LIMIT:
      if (out->value != 0) {
        return Status(out->status, "this client already owns " + std::to_string(out->value) +
                                       " objects, the most a client may own in this region; "
                                       "delete some (the manager's --max-refs-per-client sets "
                                       "the limit)");
      }
      return Status(out->status, "too many objects in the index hash to the same place as " +
                                     Hex(id) + "; choose ids that differ more, or delete some");
    case GISMO_ERR_UNSUPPORTED:
      return Status(out->status, std::string("the owner does not serve ") + NcOpName(q.op) +
                                     " requests in non-coherent regions yet");
    default:
      return Status(out->status,
                    std::string("the owner refused the ") + NcOpName(q.op) + " of " + obj);
  }
}

Status NcClientStore::Create(const gismo_id_t& id, uint64_t data_size, const void* metadata,
                             uint64_t metadata_size, uint32_t flags, void** data) {
  if (Status s = CheckCreateArgs(flags, data_size, metadata_size); !s.ok()) return s;
  if (Status s = CheckFits(r_, BlockBytes(data_size, metadata_size)); !s.ok()) return s;
  const IdWords x = ToWords(id);
  if (unsealed_.count(x) != 0) {
    return Status(GISMO_ERR_OBJECT_EXISTS, "object " + Hex(id) + " exists (being created)");
  }
  NcRequest q;
  q.op = NcOp::kCreate;
  q.id = x;
  q.data_size = data_size;
  q.metadata_size = metadata_size;
  q.create_flags = flags;
  NcResponse a;
  if (Status s = Call(q, id, &a); !s.ok()) return s;
  const uint64_t bytes = BlockBytes(data_size, metadata_size);
  if (a.existed || !r_.ValidHeapBlock(a.heap_offset, bytes)) {
    return Status(GISMO_ERR_PROTOCOL,
                  "the owner answered a create of " + Hex(id) + " with a block outside the heap");
  }
  const uint32_t record = static_cast<uint32_t>(a.record);
  if (!reader_.Adopt(record)) {
    // The object exists and only this client can end it: abort it.
    NcRequest abort;
    abort.op = NcOp::kAbort;
    abort.id = x;
    abort.record = record;
    NcResponse ignored;
    (void)Call(abort, id, &ignored);
    return Status(GISMO_ERR_LIMIT, "this client holds " + std::to_string(r_.fixed().held_capacity) +
                                       " objects, its table's capacity; release some");
  }
  held_[x] = record;
  unsealed_[x] = Unsealed{record, a.heap_offset, bytes};
  GISMO_CRASH_POINT("nc_client.create_after_adopt");
  uint8_t* block = r_.heap() + a.heap_offset;
  r_.WillOverwrite(block, bytes);
  if (metadata_size > 0) std::memcpy(block + PaddedData(data_size), metadata, metadata_size);
  *data = block;
  return Status();
}

Status NcClientStore::Seal(const gismo_id_t& id) {
  const IdWords x = ToWords(id);
  auto it = unsealed_.find(x);
  if (it == unsealed_.end()) return NotMine(id, "seal");
  // Section 6: the object's bytes are in memory before it can be sealed.
  if (!skip_seal_flush_) FlushBlock(it->second);
  GISMO_CRASH_POINT("nc_client.seal_after_flush");
  NcRequest q;
  q.op = NcOp::kSeal;
  q.id = x;
  q.record = it->second.record;
  NcResponse a;
  if (Status s = Call(q, id, &a); !s.ok()) return s;
  GISMO_CRASH_POINT("nc_client.seal_after_answer");
  unsealed_.erase(it);
  return Status();
}

void NcClientStore::FlushBlock(const Unsealed& u) {
  lines_.Flush(r_.heap() + u.heap_offset, u.bytes);
}

void NcClientStore::FlushUnsealed() {
  for (const auto& [id, u] : unsealed_) FlushBlock(u);
}

bool NcClientStore::MarkDeparted() {
  ClientSlotHeader& h = r_.slot(slot_);
  // The owner writes the slot's state line.
  lines_.Invalidate(&h.state, sizeof(Word));
  const uint64_t st = h.state.load(std::memory_order_acquire);
  const SlotState state = SlotStateOf(st);
  if (SlotSessionOf(st) != session_ ||
      (state != SlotState::kActive && state != SlotState::kSuspected)) {
    return false;
  }
  FlushUnsealed();
  region::NcWriteBackClientLines(lines_, r_, slot_);
  // The write-backs above are complete (InvalidateLines ends with a full
  // fence) before the mark is stored; an owner that reads the mark after
  // invalidating its line (acquire) finds every line of this client in
  // memory. Written back at once: nothing of this client is dirty after it.
  h.departed.store(session_, std::memory_order_release);
  lines_.Flush(&h.departed, sizeof(Word));
  return true;
}

Status NcClientStore::Abort(const gismo_id_t& id) {
  const IdWords x = ToWords(id);
  auto it = unsealed_.find(x);
  if (it == unsealed_.end()) {
    // This client's own unsealed object that it never learned of (its
    // create's or its abort's answer timed out): the owner takes the abort.
    Snapshot snap;
    if (Peek(id, &snap).ok() && InfoState(snap.info) == ObjectState::kCreated &&
        InfoSlot(snap.info) == slot_) {
      NcRequest q;
      q.op = NcOp::kAbort;
      q.id = x;
      q.record = snap.record;
      NcResponse a;
      return Call(q, id, &a);
    }
    return NotMine(id, "abort");
  }
  // No line of the block written here may reach memory after its reuse.
  FlushBlock(it->second);
  NcRequest q;
  q.op = NcOp::kAbort;
  q.id = x;
  q.record = it->second.record;
  // The creator's reference goes first: once the owner frees the record,
  // an entry naming it would hold up the free of the record's next object.
  reader_.Release(it->second.record);
  GISMO_CRASH_POINT("nc_client.abort_after_drop");
  held_.erase(x);
  const Unsealed u = it->second;
  unsealed_.erase(it);
  NcResponse a;
  if (Status s = Call(q, id, &a); !s.ok()) {
    if (s.code() == GISMO_ERR_TIMEOUT || s.code() == GISMO_ERR_PROTOCOL) return s;
    // Refused (it cannot be, for a create this client made): keep holding.
    if (reader_.Adopt(u.record)) {
      held_[x] = u.record;
      unsealed_[x] = u;
    }
    return s;
  }
  return Status();
}

Status NcClientStore::NotMine(const gismo_id_t& id, const char* op) {
  Snapshot snap;
  if (Status s = Peek(id, &snap); !s.ok()) return s;
  switch (InfoState(snap.info)) {
    case ObjectState::kSealed:
      return Status(
          GISMO_ERR_OBJECT_ALREADY_SEALED,
          "object " + Hex(id) + " is already sealed" +
              (std::string(op) == "abort" ? "; only unsealed objects can be aborted" : ""));
    case ObjectState::kCreated:
      if (InfoSlot(snap.info) == slot_) {
        return Status(GISMO_ERR_OBJECT_EXISTS,
                      "object " + Hex(id) +
                          " was created by this client in a request whose answer it did not wait "
                          "for (timed out); create it again with the same sizes to write it, or "
                          "abort it");
      }
      return Status(GISMO_ERR_NOT_CREATOR,
                    "object " + Hex(id) + " is being created by another client; only it can " + op);
    default:
      return Status(GISMO_ERR_OBJECT_NOT_FOUND, "object " + Hex(id) + " was deleted");
  }
}

Status NcClientStore::TryGet(const gismo_id_t& id, GetResult* out) {
  out->found = false;
  const uint64_t h = HashId(id);
  const IdWords x = ToWords(id);
  NcObject o;
  uint32_t index = 0;
  NcGet got = NcGet::kBusy;
  for (NcPatience p(patience_ns_); got == NcGet::kBusy && p.Again();) {
    got = reader_.Find(ShardOf(h), static_cast<uint32_t>(h), x, &o, &index);
  }
  switch (got) {
    case NcGet::kNotFound:
      return Status();
    case NcGet::kBusy:
      return Status(GISMO_ERR_BUSY,
                    "object " + Hex(id) + "'s record kept changing while it was read; try again");
    case NcGet::kFull:
      return Status(GISMO_ERR_LIMIT, "this client holds " +
                                         std::to_string(r_.fixed().held_capacity) +
                                         " objects, its table's capacity; release some");
    case NcGet::kFound:
      break;
  }
  GISMO_CRASH_POINT("nc_client.get_after_hold");
  held_[x] = index;
  const uint8_t* block = r_.read_heap() + o.heap_offset;
  out->found = true;
  out->buffer.data = block;
  out->buffer.data_size = o.data_size;
  out->buffer.metadata = block + PaddedData(o.data_size);
  out->buffer.metadata_size = o.metadata_size;
  return Status();
}

Status NcClientStore::Release(const gismo_id_t& id) {
  const IdWords x = ToWords(id);
  if (unsealed_.count(x) != 0) {
    return Status(GISMO_ERR_OBJECT_NOT_SEALED,
                  "object " + Hex(id) + " is not sealed yet; seal or abort it first");
  }
  auto it = held_.find(x);
  if (it == held_.end() || !reader_.Release(it->second)) {
    // As in coherent mode: an id that names no object is not found.
    Snapshot snap;
    if (Peek(id, &snap).code() == GISMO_ERR_OBJECT_NOT_FOUND) {
      return Status(GISMO_ERR_OBJECT_NOT_FOUND, "no object " + Hex(id));
    }
    return Status(GISMO_ERR_NOT_HELD, "this client holds no reference to object " + Hex(id));
  }
  const uint32_t record = it->second;
  if (reader_.Held(record) != 0) return Status();
  held_.erase(it);
  GISMO_CRASH_POINT("nc_client.release_before_report");
  // The last reference. The owner may have deleted the object meanwhile and
  // left it for this release: tell it, so that it frees the object before
  // the release returns. The entry's flush (in Release) precedes this read
  // of the record (a Dekker pair with the owner's mark and table read: if
  // this read misses the mark, the owner's read of the table sees the entry
  // gone and frees the object itself). Best effort: the owner's sweeps free
  // whatever this misses.
  Snapshot snap;
  bool read = false;
  for (NcPatience p(patience_ns_); !read && p.Again();) read = ReadRecord(record, &snap);
  if (read && IdEq{}(snap.id, x) && InfoState(snap.info) == ObjectState::kDeleting) {
    ReportRelease(record, x);
  }
  return Status();
}

void NcClientStore::ReportRelease(uint32_t record, const IdWords& x) {
  // An owner that did not answer the last report in time (away, or
  // failing over) is not waited for again until a request of this client
  // was answered: a release never waits on the owner for long.
  if (owner_slow_) return;
  NcRequest q;
  q.op = NcOp::kReleased;
  q.id = x;
  q.record = record;
  NcResponse a;
  constexpr int64_t kReportWaitMs = 100;
  Status s = requester_.Call(q, &a, std::min<int64_t>(timeout_ms_, kReportWaitMs));
  owner_slow_ = s.code() == GISMO_ERR_TIMEOUT;
}

Status NcClientStore::CallOnId(NcOp op, const gismo_id_t& id) {
  NcRequest q;
  q.op = op;
  q.id = ToWords(id);
  NcResponse a;
  return Call(q, id, &a);
}

Status NcClientStore::Delete(const gismo_id_t& id) { return CallOnId(NcOp::kDelete, id); }

Status NcClientStore::Evict(uint64_t bytes, uint64_t* evicted) {
  *evicted = 0;
  NcRequest q;
  q.op = NcOp::kEvict;
  q.bytes = bytes;
  NcResponse a;
  if (Status s = Call(q, gismo_id_t{}, &a); !s.ok()) return s;
  *evicted = a.value;
  return Status();
}

Status NcClientStore::Touch(const gismo_id_t& id) { return CallOnId(NcOp::kTouch, id); }

Status NcClientStore::Peek(const gismo_id_t& id, Snapshot* out) {
  const uint64_t h = HashId(id);
  const IdWords x = ToWords(id);
  const NcShard shard = ShardOf(h);
  const uint32_t h32 = static_cast<uint32_t>(h);
  uint64_t* iv = NcWord(shard.header->index_version);
  for (NcPatience p(patience_ns_); p.Again();) {
    lines_.Invalidate(shard.header, sizeof(ShardHeader));
    const uint64_t before = lines_.Load(iv);
    if (before & 1) continue;
    bool torn = false;
    const ProbeStop stop = ProbeHashSlots(
        h32, shard.mask, shard.records,
        [&](uint32_t i) { return NcLoadSlot(lines_, shard.slots[i]); },
        [&](uint32_t local) {
          Snapshot snap;
          if (!ReadRecord(shard.first_record + local, &snap)) {
            torn = true;  // the owner is writing it: look again
            return true;
          }
          if (!IdEq{}(snap.id, x) || InfoState(snap.info) == ObjectState::kFree) return false;
          *out = snap;
          return true;
        });
    if (torn) continue;
    if (stop.end == ProbeEnd::kTaken) return Status();
    lines_.Invalidate(shard.header, sizeof(ShardHeader));
    if (lines_.Load(iv) == before)
      return Status(GISMO_ERR_OBJECT_NOT_FOUND, "no object " + Hex(id));
  }
  return Status(GISMO_ERR_BUSY,
                "object " + Hex(id) + "'s index shard kept changing while it was read; try again");
}

bool NcClientStore::ReadRecord(uint32_t global, Snapshot* snap) {
  NcRecordWords w;
  if (!NcReadRecord(lines_, view_.Record(global), &w)) return false;
  snap->record = global;
  snap->id = w.id;
  snap->info = w.info;
  snap->heap_offset = w.heap_offset;
  snap->sizes = w.sizes;
  snap->create_time_ns = w.create_time_ns;
  return true;
}

Status NcClientStore::Contains(const gismo_id_t& id, bool* contains) {
  *contains = false;
  Snapshot snap;
  Status s = Peek(id, &snap);
  if (s.code() == GISMO_ERR_OBJECT_NOT_FOUND) return Status();
  if (!s.ok()) return s;
  *contains = InfoState(snap.info) == ObjectState::kSealed;
  return Status();
}

uint64_t NcClientStore::References(uint32_t record) {
  uint64_t refs = reader_.Held(record);  // this client's own lines
  for (uint32_t i = 1; i < r_.max_clients(); ++i) {
    if (i == slot_) continue;
    // The owner writes the slot's state line (admission, recovery).
    lines_.Invalidate(&r_.slot(i), kCacheLine);
    if (SlotStateOf(r_.slot(i).state.load(std::memory_order_acquire)) == SlotState::kFree) {
      continue;
    }
    // A table whose summary does not mark the record's bucket holds none.
    const NcTable t = NcTableOf(r_, i);
    if (!NcSummaryHas(NcReadSummary(lines_, t), record)) continue;
    NcForEachHeld(lines_, t, view_.num_records, [&](uint32_t held, uint64_t count) {
      if (held == record) refs += count;
    });
  }
  return refs;
}

uint64_t NcClientStore::HeldObjects(uint32_t slot) {
  const uint32_t cap = r_.fixed().held_capacity;
  HeldEntry* t = r_.held(slot);
  if (slot != slot_) lines_.Invalidate(t, uint64_t{cap} * sizeof(HeldEntry));
  uint64_t n = 0;
  for (uint32_t k = 0; k < cap; ++k) {
    n += lines_.Load(NcWord(t[k].key)) != 0 && lines_.Load(NcWord(t[k].count)) != 0;
  }
  return n;
}

Status NcClientStore::Stat(const gismo_id_t& id, gismo_object_info_t* info) {
  Snapshot snap;
  if (Status s = Peek(id, &snap); !s.ok()) return s;
  *info = gismo_object_info_t{};
  info->id = id;
  info->state = static_cast<gismo_object_state_t>(InfoState(snap.info));
  info->data_size = SizesData(snap.sizes);
  info->metadata_size = SizesMeta(snap.sizes);
  // References live in the clients' tables (the record's counter word is
  // its seqlock version here): counted as memory holds them now.
  info->ref_count = References(snap.record);
  info->creator_node = InfoNode(snap.info);
  info->creator_client = InfoSlot(snap.info);
  info->flags = InfoFlags(snap.info) & kObjectFlagsPublic;
  info->create_time_ns = snap.create_time_ns;
  return Status();
}

Status NcClientStore::ForEach(const std::function<void(const gismo_object_info_t&)>& fn) {
  const uint32_t nslots = r_.fixed().slots_per_shard;
  for (uint32_t s = 0; s < r_.num_shards(); ++s) {
    Word* slots = r_.hash_slots(s);
    lines_.Invalidate(slots, uint64_t{nslots} * sizeof(Word));
    for (uint32_t i = 0; i < nslots; ++i) {
      const uint64_t v = lines_.Load(NcWord(slots[i]));
      if (v == 0 || HashSlotLocal(v) >= r_.records_per_shard()) continue;
      const uint32_t global = s * r_.records_per_shard() + HashSlotLocal(v);
      Snapshot snap;
      bool read = false;
      for (NcPatience p(patience_ns_); !read && p.Again();) read = ReadRecord(global, &snap);
      if (!read) {
        return Status(GISMO_ERR_BUSY, "record " + std::to_string(global) +
                                          " kept changing while the objects were listed; try "
                                          "again");
      }
      if (InfoState(snap.info) == ObjectState::kFree) continue;
      gismo_object_info_t info{};
      std::memcpy(info.id.bytes, snap.id.w, GISMO_ID_SIZE);
      info.state = static_cast<gismo_object_state_t>(InfoState(snap.info));
      info.data_size = SizesData(snap.sizes);
      info.metadata_size = SizesMeta(snap.sizes);
      info.creator_node = InfoNode(snap.info);
      info.creator_client = InfoSlot(snap.info);
      info.flags = InfoFlags(snap.info) & kObjectFlagsPublic;
      info.create_time_ns = snap.create_time_ns;
      fn(info);
    }
  }
  return Status();
}

template <typename Read>
Status NcClientStore::ReadNames(Read&& read) {
  NameTableHeader& t = r_.names();
  uint64_t* version = NcWord(t.version);
  for (NcPatience p(patience_ns_); p.Again();) {
    lines_.Invalidate(&t, sizeof(t));
    const uint64_t before = lines_.Load(version);
    if (before & 1) continue;
    read();
    lines_.Invalidate(&t, sizeof(t));
    if (lines_.Load(version) == before) return Status();
  }
  return Status(GISMO_ERR_BUSY, "the name table kept changing while it was read; try again");
}

bool NcClientStore::ReadNameEntry(uint32_t entry, NameBinding* out) {
  NameEntry& e = r_.name_entries()[entry];
  lines_.Invalidate(&e, sizeof(e));
  const uint64_t info = lines_.Load(NcWord(e.info));
  const uint32_t length = std::min<uint32_t>(NameInfoLength(info), kMaxNameLength);
  if (length == 0) return false;
  uint64_t words[kNameWords];
  for (uint32_t k = 0; k < kNameWords; ++k) words[k] = lines_.Load(NcWord(e.name[k]));
  out->name.assign(reinterpret_cast<const char*>(words), length);
  IdWords id;
  for (int k = 0; k < 3; ++k) id.w[k] = lines_.Load(NcWord(e.id[k]));
  out->id = FromWords(id);
  out->version = lines_.Load(NcWord(e.version));
  out->bind_time_ns = lines_.Load(NcWord(e.bind_time_ns));
  return true;
}

Status NcClientStore::LookupName(std::string_view name, NameBinding* out) {
  if (Status s = CheckName(name); !s.ok()) return s;
  const uint32_t h32 = static_cast<uint32_t>(HashName(name));
  const uint32_t mask = r_.fixed().name_slots - 1;
  const uint32_t cap = r_.names_capacity();
  bool found = false;
  Status read = ReadNames([&] {
    const ProbeStop stop = ProbeHashSlots(
        h32, mask, cap, [&](uint32_t i) { return NcLoadSlot(lines_, r_.name_slots()[i]); },
        [&](uint32_t entry) { return ReadNameEntry(entry, out) && out->name == name; });
    found = stop.end == ProbeEnd::kTaken;
  });
  if (!read.ok()) return read;
  if (!found) return Status(GISMO_ERR_OBJECT_NOT_FOUND, "no name '" + std::string(name) + "'");
  return Status();
}

Status NcClientStore::ListNames(std::string_view prefix,
                                const std::function<void(const NameBinding&)>& fn) {
  if (prefix.size() > kMaxNameLength) return Status();  // no name is that long
  std::vector<NameBinding> batch;
  const uint32_t nslots = r_.fixed().name_slots;
  const uint32_t cap = r_.names_capacity();
  Status read = ReadNames([&] {
    batch.clear();
    Word* slots = r_.name_slots();
    lines_.Invalidate(slots, uint64_t{nslots} * sizeof(Word));
    for (uint32_t i = 0; i < nslots; ++i) {
      const uint64_t v = lines_.Load(NcWord(slots[i]));
      if (v == 0 || HashSlotLocal(v) >= cap) continue;
      NameBinding b;
      if (ReadNameEntry(HashSlotLocal(v), &b) && b.name.compare(0, prefix.size(), prefix) == 0) {
        batch.push_back(std::move(b));
      }
    }
  });
  if (!read.ok()) return read;
  for (const auto& b : batch) fn(b);
  return Status();
}

Status NcClientStore::CallName(const NcRequest& q, std::string_view name, const gismo_id_t* id) {
  NcResponse a;
  if (Status s = requester_.Call(q, &a, timeout_ms_); !s.ok()) return s;
  const std::string quoted = "name '" + std::string(name) + "'";
  switch (a.status) {
    case GISMO_OK:
      return Status();
    case GISMO_ERR_CONFLICT:
      return Status(a.status, q.op == NcOp::kSwapName && (q.flags & kNcHasExpected) == 0
                                  ? quoted + " is bound"
                                  : quoted + " is not bound to " + Hex(FromWords(q.expected)));
    case GISMO_ERR_OBJECT_NOT_FOUND:
      return Status(a.status, q.op == NcOp::kUnbindName || id == nullptr
                                  ? "no " + quoted
                                  : "no object " + Hex(*id) + " to bind the " + quoted + " to");
    case GISMO_ERR_OBJECT_NOT_SEALED:  // (an owner's answer to an unbind, id null, is no bind's)
      return Status(a.status, (id == nullptr ? std::string("the object") : "object " + Hex(*id)) +
                                  " is not sealed; a name is bound only to a sealed object");
    case GISMO_ERR_LIMIT:
      return Status(a.status, "the name table has no room for " + quoted +
                                  " (too many names hash to the same place, or it is full: "
                                  "unbind some, or format the region with a larger "
                                  "--max-names)");
    default:
      return Status(a.status,
                    std::string("the owner refused the ") + NcOpName(q.op) + " of " + quoted);
  }
}

Status NcClientStore::BindName(std::string_view name, const gismo_id_t& id, BindMode mode,
                               const gismo_id_t* expected) {
  if (Status s = CheckName(name); !s.ok()) return s;
  if (mode == BindMode::kIfBoundTo && expected == nullptr) {
    return Status(GISMO_ERR_INVALID_ARGUMENT, "a compare-and-swap of a name needs the expected id");
  }
  NcRequest q;
  q.op = mode == BindMode::kAlways ? NcOp::kBindName : NcOp::kSwapName;
  q.id = ToWords(id);
  q.name = std::string(name);
  if (mode == BindMode::kIfBoundTo) {
    q.flags |= kNcHasExpected;
    q.expected = ToWords(*expected);
  }
  return CallName(q, name, &id);
}

Status NcClientStore::UnbindName(std::string_view name, const gismo_id_t* expected) {
  if (Status s = CheckName(name); !s.ok()) return s;
  NcRequest q;
  q.op = NcOp::kUnbindName;
  q.name = std::string(name);
  if (expected != nullptr) {
    q.flags |= kNcHasExpected;
    q.expected = ToWords(*expected);
  }
  return CallName(q, name, nullptr);
}

}  // namespace gismo::store
