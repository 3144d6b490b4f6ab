#include "store/index.h"

#include <xxhash.h>

#include <cstring>

#include "common/check.h"

namespace gismo::store {

using namespace region;  // NOLINT: layout names are this file's vocabulary

uint64_t HashId(const gismo_id_t& id) { return XXH3_64bits(id.bytes, GISMO_ID_SIZE); }

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

gismo_id_t FromWords(const IdWords& x) {
  gismo_id_t id;
  std::memcpy(id.bytes, x.w, GISMO_ID_SIZE);
  return id;
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

bool Find(const Region& r, uint32_t shard, uint64_t h, const gismo_id_t& id, Located* out) {
  const IdWords x = ToWords(id);
  const Word* slots = r.hash_slots(shard);
  ObjectRecord* recs = r.records(shard);
  out->shard = shard;
  out->rec = nullptr;
  const ProbeStop stop = ProbeHashSlots(
      static_cast<uint32_t>(h), r.fixed().slots_per_shard - 1, r.records_per_shard(),
      [&](uint32_t i) { return slots[i].load(std::memory_order_relaxed); },
      [&](uint32_t local) {
        if (!SameId(recs[local], x)) return false;
        out->local = local;
        out->rec = &recs[local];
        return true;
      });
  out->hslot = stop.end == ProbeEnd::kExhausted ? kNoHashSlot : stop.slot;
  return stop.end == ProbeEnd::kTaken;
}

void PrefetchLookup(const Region& r, const gismo_id_t& id, PrefetchStage stage) {
  const uint64_t h = HashId(id);
  const uint32_t shard = r.ShardOf(h);
  const uint32_t mask = r.fixed().slots_per_shard - 1;
  const uint32_t h32 = static_cast<uint32_t>(h);
  const Word* slots = r.hash_slots(shard);
  if (stage == PrefetchStage::kSlots) {
    __builtin_prefetch(&r.shard(shard).lock, /*rw=*/1, /*locality=*/3);
    __builtin_prefetch(&slots[h32 & mask], 0, 3);
    return;
  }
  // The first record of the id's hash: almost always the id's own.
  ObjectRecord* recs = r.records(shard);
  (void)ProbeHashSlots(
      h32, mask, r.records_per_shard(),
      [&](uint32_t i) { return slots[i].load(std::memory_order_relaxed); },
      [&](uint32_t local) {
        __builtin_prefetch(&recs[local], /*rw=*/1, 3);  // a get writes ref_count
        return true;
      });
}

bool LockAndFind(Txn& txn, const gismo_id_t& id, bool* found, Located* out) {
  const Region& r = txn.region();
  const uint64_t h = HashId(id);
  const uint32_t shard = r.ShardOf(h);
  if (!txn.Lock(r.shard(shard).lock)) return false;
  *found = Find(r, shard, h, id, out);
  return true;
}

bool FindByRecord(const Region& r, uint32_t global, Located* out) {
  if (global / r.records_per_shard() >= r.num_shards()) return false;
  const ObjectRecord& rec = r.record(global);
  const gismo_id_t id = IdOf(rec);
  const uint32_t shard = global / r.records_per_shard();
  return Find(r, shard, HashId(id), id, out) && out->local == global % r.records_per_shard();
}

Result<uint32_t> TakeRecord(Txn& txn, uint32_t shard) {
  const Region& r = txn.region();
  ShardHeader& sh = r.shard(shard);
  GISMO_DCHECK(txn.Holds(sh.lock));  // REQUIRES: the shard lock
  const uint64_t nu = sh.next_unused.load(std::memory_order_relaxed);
  if (const uint64_t fh = sh.free_head.load(std::memory_order_relaxed); fh != 0) {
    // Checked before anything is written (the Txn then has nothing of
    // ours to undo): the head names a record that was used (below
    // next_unused, itself within the shard) and is free now. A head naming
    // a live record would hand it to a second object while its hash slot,
    // and the held entries of its readers, still name it; one at or past
    // next_unused would be handed out again once next_unused reached it.
    // The next link is checked by the take that uses it.
    if (fh > nu || nu > r.records_per_shard()) {
      return r.Corrupt("index shard " + std::to_string(shard) +
                       "'s free record list names record " + std::to_string(fh - 1) +
                       ", past the " + std::to_string(nu) + " records ever used");
    }
    const uint32_t local = static_cast<uint32_t>(fh - 1);
    const ObjectRecord& rec = r.records(shard)[local];
    if (const ObjectState st = InfoState(rec.info.load(std::memory_order_relaxed));
        st != ObjectState::kFree) {
      return r.Corrupt("index shard " + std::to_string(shard) +
                       "'s free record list names record " + std::to_string(local) +
                       ", which is not free (state " + std::to_string(static_cast<uint64_t>(st)) +
                       ")");
    }
    txn.Write(sh.free_head, rec.heap_offset.load(std::memory_order_relaxed));
    return local;
  }
  if (nu > r.records_per_shard()) {
    // Not a full shard (whose creates would evict to make room): a count
    // no shard can reach.
    return r.Corrupt("index shard " + std::to_string(shard) + " says it used " +
                     std::to_string(nu) + " records, more than the " +
                     std::to_string(r.records_per_shard()) + " it has");
  }
  if (nu == r.records_per_shard()) {
    // Ids hash to shards; the first shard to fill ends creates of its ids
    // while others still have room: with random ids that happens at about
    // 90-105% of max_objects (doc/region-format.md, "Object index").
    uint64_t live = 0;
    for (uint32_t s = 0; s < r.num_shards(); ++s) {
      live += r.shard(s).count.load(std::memory_order_relaxed);
    }
    return Status(GISMO_ERR_OUT_OF_MEMORY,
                  "the object index is full where this id hashes (shard " + std::to_string(shard) +
                      " holds its " + std::to_string(r.records_per_shard()) + " records; " +
                      std::to_string(live) + " objects in all, format capacity " +
                      std::to_string(r.fixed().max_objects) +
                      "); delete some, or format the region with a larger --max-objects");
  }
  // Never used, so free: a next_unused lowered below a live record would
  // hand that record to a second object.
  if (const ObjectState st = InfoState(r.records(shard)[nu].info.load(std::memory_order_relaxed));
      st != ObjectState::kFree) {
    return r.Corrupt("index shard " + std::to_string(shard) + "'s next never-used record, " +
                     std::to_string(nu) + ", is not free (state " +
                     std::to_string(static_cast<uint64_t>(st)) + ")");
  }
  txn.Write(sh.next_unused, nu + 1);
  return static_cast<uint32_t>(nu);
}

void RemoveObject(Txn& txn, const Located& loc) {
  const Region& r = txn.region();
  ShardHeader& sh = r.shard(loc.shard);
  GISMO_DCHECK(txn.Holds(sh.lock));  // REQUIRES: the shard lock
  RemoveHashSlot(txn, r.hash_slots(loc.shard), r.fixed().slots_per_shard - 1, loc.hslot);
  ObjectRecord& rec = *loc.rec;
  txn.Write(rec.info, PackInfo(ObjectState::kFree, 0, 0));
  txn.Write(rec.ref_count, 0);
  txn.Write(rec.heap_offset, sh.free_head.load(std::memory_order_relaxed));
  txn.Write(sh.free_head, loc.local + 1);
  txn.Write(sh.count, sh.count.load(std::memory_order_relaxed) - 1);
}

uint32_t RemoveHashSlot(Txn& txn, Word* slots, uint32_t mask, uint32_t hslot) {
  uint32_t i = hslot;
  for (uint32_t j = (i + 1) & mask, n = 0; n <= mask; j = (j + 1) & mask, ++n) {
    const uint64_t s = slots[j].load(std::memory_order_relaxed);
    if (s == 0) break;
    const uint32_t home = HashSlotHash(s) & mask;
    const bool stays = (i <= j) ? (i < home && home <= j) : (i < home || home <= j);
    if (stays) continue;
    txn.Write(slots[i], s);
    i = j;
  }
  txn.Write(slots[i], 0);
  return ((i - hslot) & mask) + 1;
}

}  // namespace gismo::store
