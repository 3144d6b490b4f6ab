// libFuzzer target: corrupted regions. A small region is formatted and
// populated once (sealed, deleted and unsealed objects, and a fenced client
// left in the middle of an operation); each input is a list of patches
// (u32 offset, u64 value: 12 bytes each) applied to a fresh copy of its
// metadata. Then what every user of a region does runs on it: Region::Open
// validates it; if it opens, gismo-fsck's offline check, the manager's
// recovery of the fenced client, a client's operations and the listing.
// Each must return a status (BAD_REGION for a corrupt region), never crash,
// hang, or touch memory outside it.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "fsck/fsck.h"
#include "manager/recovery.h"
#include "region/region.h"
#include "store/index.h"
#include "store/store.h"

namespace {

using namespace gismo::region;  // NOLINT: layout names are this file's vocabulary

constexpr int kObjects = 64;
constexpr uint32_t kDeadSlot = 2;
constexpr uint64_t kDeadSession = 5;

gismo_id_t IdOf(int i) {
  gismo_id_t id{};
  std::memcpy(id.bytes, &i, sizeof i);
  id.bytes[19] = 0x9f;
  return id;
}

struct Template {
  std::string path;
  std::unique_ptr<Region> region;  // the file, mapped for writing
  std::vector<uint8_t> metadata;   // [0, heap_offset) after populating
};

Template* Make() {
  auto* t = new Template;
  t->path = "/dev/shm/gismo-fuzz-region-" + std::to_string(getpid());
  FormatOptions o;
  o.size = 8ull << 20;
  o.max_objects = 256;
  o.max_clients = 4;
  o.held_capacity = 64;
  o.log_capacity = 64;
  o.event_capacity = 64;
  auto r = Region::Format(t->path, o);
  if (!r.ok()) {
    fprintf(stderr, "region_fuzz: %s\n", r.status().ToString().c_str());
    abort();
  }
  t->region = std::move(*r);
  Region& reg = *t->region;
  reg.sb().lock_wait_ms.store(1);  // a lock left held fails fast (BUSY)
  reg.slot(0).state.store(PackSlotState(SlotState::kActive, 1));
  reg.slot(1).state.store(PackSlotState(SlotState::kActive, 1));
  gismo::store::Store s(reg, 1, 1, 0);
  for (int i = 0; i < kObjects; ++i) {
    void* data = nullptr;
    const uint64_t size = i % 8 == 0 ? 20000 : 40 * i;
    if (gismo::Status c = s.Create(IdOf(i), size, "md", 2, &data); !c.ok()) {
      fprintf(stderr, "region_fuzz: populating: %s\n", c.ToString().c_str());
      abort();
    }
    if (i % 5 == 4) continue;  // unsealed, held by slot 1
    if (!s.Seal(IdOf(i)).ok() || !s.Release(IdOf(i)).ok()) abort();
    if (i % 3 == 0 && !s.Delete(IdOf(i)).ok()) abort();
  }
  // Slot 1's objects become those of a client fenced in the middle of an
  // operation: recovering, holding shard 0's lock, with a log entry.
  std::memcpy(static_cast<void*>(&reg.slot(kDeadSlot)), &reg.slot(1), reg.sb().client_slot_size);
  std::memset(static_cast<void*>(&reg.slot(1)), 0, reg.sb().client_slot_size);
  ClientSlotHeader& h = reg.slot(kDeadSlot);
  h.state.store(PackSlotState(SlotState::kRecovering, kDeadSession));
  h.held_locks[0].store(reg.OffsetOf(&reg.shard(0).lock));
  reg.shard(0).lock.store(LockTag(kDeadSlot, kDeadSession));
  reg.log(kDeadSlot)[0].target.store(
      StampLogTarget(PackLogTarget(LogKind::kWord, reg.OffsetOf(&reg.shard(0).count)),
                     LogStamp(h.log_epoch.load())));
  reg.log(kDeadSlot)[0].value.store(reg.shard(0).count.load());
  const uint8_t* base = reg.base();
  t->metadata.assign(base, base + reg.heap_offset());
  atexit([] { unlink(("/dev/shm/gismo-fuzz-region-" + std::to_string(getpid())).c_str()); });
  return t;
}

void ClientOperations(const Region& r) {
  const uint32_t slot = r.max_clients() - 1;
  r.slot(slot).state.store(PackSlotState(SlotState::kActive, 1));
  gismo::store::Store s(r, slot, 1, 0);
  for (int i = 0; i < kObjects + 4; ++i) {
    const gismo_id_t id = IdOf(i);
    bool contains = false;
    (void)s.Contains(id, &contains);
    gismo_object_info_t info;
    (void)s.Stat(id, &info);
    gismo::store::GetResult got;
    if (s.TryGet(id, &got).ok() && got.found) {
      // Reads the buffer's bytes (ASan checks each read); the volatile sink
      // keeps the reads.
      uint8_t sum = 0;
      const auto* p = static_cast<const uint8_t*>(got.buffer.data);
      for (uint64_t k = 0; k < got.buffer.data_size; k += 1024) sum += p[k];
      if (got.buffer.metadata_size) sum += static_cast<const uint8_t*>(got.buffer.metadata)[0];
      volatile uint8_t sink = sum;
      (void)sink;
      (void)s.Release(id);
    }
    if (i % 4 == 0) (void)s.Delete(id);
    void* data = nullptr;
    gismo_id_t fresh = IdOf(1000 + i);
    const uint64_t size = i % 6 == 0 ? 33000 : 24 * i;
    if (s.Create(fresh, size, "x", 1, &data).ok()) {
      std::memset(data, 0x5a, size);
      (void)s.Seal(fresh);
      (void)s.Release(fresh);
      (void)s.Delete(fresh);
    }
  }
  uint64_t n = 0;
  (void)s.ForEach([&n](const gismo_object_info_t&) { ++n; });
  gismo_usage_t u;
  (void)s.Usage(&u);
  s.ForEachClient([](const gismo_client_info_t&) {});
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Template* t = Make();
  uint8_t* base = t->region->base();
  std::memcpy(base, t->metadata.data(), t->metadata.size());
  const uint64_t span = t->metadata.size() / 8;
  for (size_t pos = 0; pos + 12 <= size; pos += 12) {
    uint32_t where;
    uint64_t value;
    std::memcpy(&where, data + pos, 4);
    std::memcpy(&value, data + pos + 4, 8);
    std::memcpy(base + (where % span) * 8, &value, 8);
  }
  auto opened = Region::Open(t->path);
  if (!opened.ok()) {
    if (opened.status().code() != GISMO_ERR_BAD_REGION) {
      fprintf(stderr, "region_fuzz: Open: %s\n", opened.status().ToString().c_str());
      abort();
    }
    return 0;
  }
  const Region& r = **opened;
  // As the manager sets it (a patch may have changed it): a lock left held
  // by a client costs each operation 1 ms, then BUSY.
  r.sb().lock_wait_ms.store(1, std::memory_order_relaxed);
  // The offline checker reads every structure (it reports, never crashes,
  // hangs or reads outside the region); then the manager's recovery of the
  // fenced client (as slot 0), then a client.
  (void)gismo::fsck::Check(r, nullptr);
  r.slot(0).state.store(PackSlotState(SlotState::kActive, 1));
  (void)gismo::manager::RecoverSlot(r, kDeadSlot, 0, 1);
  ClientOperations(r);
  return 0;
}
