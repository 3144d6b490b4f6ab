// Eviction: CLOCK over the object records, for objects created with
// GISMO_CREATE_EVICTABLE.
//
// Invariants:
//  1. Only a record that is sealed, evictable and has ref_count 0 is ever
//     evicted, and all three are read under its shard lock in the evicting
//     Txn. A reference is taken only under that lock too (TryGet), so an
//     object someone holds, or is creating, is never evicted; a suspected
//     client's references stay counted until it is fenced and recovered, so
//     its objects are not evicted either. Non-evictable objects never are.
//  2. An eviction is a delete: in one Txn under the shard lock it appends a
//     "deleted" event (reason evicted), frees the block and unindexes the
//     record, in the lock order of Delete (shard -> event ring -> class
//     stripe -> page lock), and raises the shard's eviction counters. One
//     object per Txn, so the undo log stays bounded (a delete's worth of
//     entries) and no Txn holds two shard locks, or two class stripes.
//  3. The reference bit (kObjectFlagReferenced, in the record's info word)
//     is set by create, by every get that takes a reference, and by touch,
//     all under the shard lock; a sweep clears it under the same lock and
//     evicts only a record it finds clear: a second chance for anything used
//     since the hand last passed. No get touches any other shared word.
//  4. The hand (Superblock::evict_hand) is advanced by fetch_add without a
//     lock: each evictor claims a batch of record indexes. It guards nothing
//     (every decision is made under a shard lock); it only spreads
//     concurrent sweeps over different records, across hosts.
// A client that dies in an eviction is recovered like one that dies in a
// delete: its Txn is undone, the object is back, sealed, with its bit as
// it was.
#include <algorithm>
#include <string>

#include "common/check.h"
#include "store/store.h"

namespace gismo::store {

using namespace region;  // NOLINT: layout names are this file's vocabulary

namespace {

// Records claimed from the hand at a time.
constexpr uint64_t kEvictBatch = 64;
// How long an evictor waits for a shard lock before it skips the record: a
// busy shard is being used, and CLOCK is approximate anyway. Never the full
// lock wait: a sweep must not stall behind a frozen client.
constexpr uint64_t kEvictLockWaitNs = 1'000'000;
// Default share of the heap a create that does not fit evicts (Plasma: 20%).
constexpr uint64_t kDefaultEvictPercent = 20;

uint64_t BlockOf(uint64_t sizes) {
  const uint64_t data = (SizesData(sizes) + 63) & ~uint64_t{63};
  return Allocator::BlockSize(data + SizesMeta(sizes));
}

// Sealed, evictable, not held: what a sweep may consider.
bool Candidate(uint64_t info, uint64_t refs) {
  return InfoState(info) == ObjectState::kSealed && (InfoFlags(info) & kObjectFlagEvictable) &&
         refs == 0;
}

}  // namespace

uint64_t Store::EvictShareBytes() const {
  uint64_t pct = r_.sb().evict_percent.load(std::memory_order_relaxed);
  if (pct == 0 || pct > 100) pct = kDefaultEvictPercent;
  return r_.heap_size() / 100 * pct;
}

Status Store::EvictOne(uint32_t shard, uint32_t local, EvictResult* out) {
  ObjectRecord& rec = r_.records(shard)[local];
  // A racy look first, so that a sweep over free or pinned records takes no
  // lock; decided again under the lock (invariant 1).
  if (!Candidate(rec.info.load(std::memory_order_relaxed),
                 rec.ref_count.load(std::memory_order_relaxed))) {
    return Status();
  }
  Txn txn(r_, slot_, session_, OpKind::kEvict);
  txn.SetLockWait(kEvictLockWaitNs);
  if (!txn.Lock(r_.shard(shard).lock)) return txn.Commit();
  const uint64_t info = rec.info.load(std::memory_order_relaxed);
  if (!Candidate(info, rec.ref_count.load(std::memory_order_relaxed))) return txn.Commit();
  if (InfoFlags(info) & kObjectFlagReferenced) {
    txn.Write(rec.info, InfoWithFlags(info, InfoFlags(info) & ~kObjectFlagReferenced));
    return txn.Commit();
  }
  const uint32_t global = GlobalIndex(r_, shard, local);
  Located loc;
  if (!FindByRecord(r_, global, &loc)) {
    return r_.Corrupt("sealed object record " + std::to_string(global) + " is not in the index");
  }
  const gismo_id_t id = IdOf(rec);
  const uint64_t sizes = rec.sizes.load(std::memory_order_relaxed);
  const uint64_t block = BlockOf(sizes);
  uint64_t seq = 0;
  EventEntry* ev =
      AppendEvent(txn, EventKind::kDeleted, node_, id, sizes, &seq, EventReason::kEvicted);
  FreeObjectData(txn, rec);
  GISMO_CRASH_POINT("evict.after_free");
  RemoveObject(txn, loc);
  ShardHeader& sh = r_.shard(shard);
  txn.Write(sh.evictions, sh.evictions.load(std::memory_order_relaxed) + 1);
  txn.Write(sh.evicted_bytes, sh.evicted_bytes.load(std::memory_order_relaxed) + block);
  GISMO_CRASH_POINT("evict.before_commit");
  if (Status s = txn.Commit(); !s.ok()) return s;
  GISMO_CRASH_POINT("evict.before_publish");
  PublishEvent(ev, seq);
  ++out->objects;
  out->bytes += block;
  evicted_.push_back(id);
  return Status();
}

Status Store::Evict(const EvictTarget& want, EvictResult* out) {
  if (nc_) {
    uint64_t evicted = 0;
    Status s = nc_->Evict(want.bytes, &evicted);
    out->bytes += evicted;
    return s;
  }
  const uint32_t rps = r_.records_per_shard();
  const bool one_shard = want.shard >= 0;
  if (one_shard && static_cast<uint64_t>(want.shard) >= r_.num_shards()) {
    return Status(GISMO_ERR_INVALID_ARGUMENT, "no shard " + std::to_string(want.shard));
  }
  const uint64_t total = one_shard ? rps : uint64_t{r_.num_shards()} * rps;
  // Two whole turns: the first may only clear reference bits.
  const uint64_t limit = 2 * total + kEvictBatch;
  Word& hand = r_.sb().evict_hand;
  uint64_t cursor = hand.load(std::memory_order_relaxed);
  auto done = [&] { return out->bytes >= want.bytes && out->objects >= want.objects; };
  for (uint64_t scanned = 0; !done() && scanned < limit;) {
    // A sweep of the whole index shares the hand with every other evictor
    // (invariant 4); a sweep of one shard (its records are full) keeps its
    // own cursor there, starting where the hand points.
    const uint64_t start =
        one_shard ? cursor : hand.fetch_add(kEvictBatch, std::memory_order_relaxed);
    cursor = start + kEvictBatch;
    for (uint64_t i = 0; i < kEvictBatch && !done(); ++i, ++scanned) {
      const uint64_t g = (start + i) % total;
      const uint32_t shard =
          one_shard ? static_cast<uint32_t>(want.shard) : static_cast<uint32_t>(g / rps);
      const uint32_t local = static_cast<uint32_t>(one_shard ? g : g % rps);
      Status s = EvictOne(shard, local, out);
      if (s.ok()) continue;
      // A busy shard or a full undo log costs only this record; a session
      // that ended or a corrupt region ends the sweep.
      if (s.code() == GISMO_ERR_BUSY || s.code() == GISMO_ERR_LIMIT) continue;
      return s;
    }
  }
  return Status();
}

Status Store::Touch(const gismo_id_t& id) {
  if (nc_) return nc_->Touch(id);
  Txn txn(r_, slot_, session_, OpKind::kTouch);
  Located loc;
  bool found = false;
  if (!LockAndFind(txn, id, &found, &loc)) return txn.Commit();
  if (!found ||
      InfoState(loc.rec->info.load(std::memory_order_relaxed)) == ObjectState::kDeleting) {
    return Status(GISMO_ERR_OBJECT_NOT_FOUND, "no object " + Hex(id));
  }
  MarkReferenced(txn, *loc.rec);
  return txn.Commit();
}

void Store::MarkReferenced(Txn& txn, ObjectRecord& rec) {
  // REQUIRES: the record's shard lock (invariant 3).
  const uint64_t info = rec.info.load(std::memory_order_relaxed);
  const uint32_t flags = InfoFlags(info);
  if ((flags & kObjectFlagEvictable) && !(flags & kObjectFlagReferenced)) {
    txn.Write(rec.info, InfoWithFlags(info, flags | kObjectFlagReferenced));
  }
}

std::vector<gismo_id_t> Store::TakeEvicted() {
  std::vector<gismo_id_t> v;
  v.swap(evicted_);
  return v;
}

}  // namespace gismo::store
