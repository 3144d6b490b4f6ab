#include "store/held.h"

#include <string>

#include "common/check.h"

namespace gismo::store {

using namespace region;  // NOLINT: layout names are this file's vocabulary

int64_t HeldFind(const Region& r, uint32_t slot, uint32_t global) {
  HeldEntry* held = r.held(slot);
  const uint32_t cap = r.fixed().held_capacity;
  const uint64_t want = PackHeldKey(global, 0);
  for (uint32_t n = 0, i = HeldHome(want, cap); n < cap; ++n, i = (i + 1) & (cap - 1)) {
    const uint64_t key = held[i].key.load(std::memory_order_relaxed);
    if (key == 0) return -1 - static_cast<int64_t>(i);
    if (HeldKeyRecord(key) == want) return i;
  }
  return kHeldNoRoom;  // a full table (only a corrupt one is)
}

Status HeldAdd(Txn& txn, uint32_t global, uint64_t flags) {
  const Region& r = txn.region();
  GISMO_DCHECK(txn.Holds(r.shard(global / r.records_per_shard()).lock));
  const uint32_t slot = txn.slot();
  HeldEntry* held = r.held(slot);
  const int64_t idx = HeldFind(r, slot, global);
  if (idx >= 0) {
    HeldEntry& e = held[idx];
    txn.Write(e.count, e.count.load(std::memory_order_relaxed) + 1);
    if (flags) txn.Write(e.key, e.key.load(std::memory_order_relaxed) | flags);
    return Status();
  }
  ClientSlotHeader& hdr = r.slot(slot);
  const uint64_t n = hdr.held_count.load(std::memory_order_relaxed);
  const uint32_t cap = r.fixed().held_capacity;
  if (n >= cap - cap / 4 || idx == kHeldNoRoom) {
    return Status(GISMO_ERR_LIMIT,
                  "this client already holds references to " + std::to_string(n) +
                      " objects, the most a client may hold in this region; release some "
                      "(the manager's --max-refs-per-client sets the limit)");
  }
  HeldEntry& e = held[-1 - idx];
  txn.Write(e.key, PackHeldKey(global, flags));
  txn.Write(e.count, 1);
  txn.Write(hdr.held_count, n + 1);
  return Status();
}

void HeldRemove(Txn& txn, uint32_t slot, int64_t idx) {
  const Region& r = txn.region();
  HeldEntry* held = r.held(slot);
  const uint32_t cap = r.fixed().held_capacity;
  const uint32_t mask = cap - 1;
  uint32_t i = static_cast<uint32_t>(idx);
  GISMO_DCHECK(txn.Holds(
      r.shard(HeldKeyGlobal(held[i].key.load(std::memory_order_relaxed)) / r.records_per_shard())
          .lock));
  for (uint32_t j = (i + 1) & mask, n = 0; n < cap; j = (j + 1) & mask, ++n) {
    const uint64_t key = held[j].key.load(std::memory_order_relaxed);
    if (key == 0) break;
    const uint32_t home = HeldHome(key, cap);
    const bool stays = (i <= j) ? (i < home && home <= j) : (i < home || home <= j);
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

}  // namespace gismo::store
