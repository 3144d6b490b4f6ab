#include "store/names.h"

#include <xxhash.h>

#include <cstring>
#include <vector>

#include "common/check.h"
#include "common/clock.h"
#include "store/index.h"

namespace gismo::store {

using namespace region;  // NOLINT: layout names are this file's vocabulary

namespace {

constexpr uint32_t kNoSlot = ~0u;

std::string Quote(std::string_view name) {
  std::string q = "'";
  for (unsigned char ch : name) {
    if (ch >= 0x20 && ch != 0x7f) {
      q += static_cast<char>(ch);
    } else {
      static const char* d = "0123456789abcdef";
      q += "\\x";
      q += d[ch >> 4];
      q += d[ch & 15];
    }
  }
  return q + "'";
}

gismo_id_t EntryId(const NameEntry& e) {
  uint64_t w[3] = {e.id[0].load(std::memory_order_relaxed), e.id[1].load(std::memory_order_relaxed),
                   e.id[2].load(std::memory_order_relaxed)};
  gismo_id_t id;
  std::memcpy(id.bytes, w, GISMO_ID_SIZE);
  return id;
}

bool SameId(const gismo_id_t& a, const gismo_id_t& b) {
  return std::memcmp(a.bytes, b.bytes, GISMO_ID_SIZE) == 0;
}

// The name's bytes as the table stores them: kNameWords words, zero padded.
struct NameWords {
  uint64_t w[kNameWords];
};
NameWords ToNameWords(std::string_view name) {
  NameWords x{};
  std::memcpy(x.w, name.data(), std::min<size_t>(name.size(), kMaxNameLength));
  return x;
}

void FillBinding(const NameEntry& e, NameBinding* out) {
  out->name = EntryName(e);
  out->id = EntryId(e);
  out->version = e.version.load(std::memory_order_relaxed);
  out->bind_time_ns = e.bind_time_ns.load(std::memory_order_relaxed);
}

}  // namespace

Status CheckName(std::string_view name) {
  if (name.empty()) return Status(GISMO_ERR_INVALID_ARGUMENT, "a name may not be empty");
  if (name.size() > kMaxNameLength) {
    return Status(GISMO_ERR_INVALID_ARGUMENT, "name of " + std::to_string(name.size()) +
                                                  " bytes is longer than the limit of " +
                                                  std::to_string(kMaxNameLength) + " bytes");
  }
  if (name.find('\0') != std::string_view::npos) {
    return Status(GISMO_ERR_INVALID_ARGUMENT, "a name may not contain a NUL byte");
  }
  return Status();
}

uint64_t HashName(std::string_view name) { return XXH3_64bits(name.data(), name.size()); }

gismo_id_t NameWatchId(std::string_view name) {
  static constexpr char kTag[10] = {'g', 'i', 's', 'm', 'o', '-', 'n', 'a', 'm', 'e'};
  static_assert(sizeof kTag + 10 == GISMO_ID_SIZE);
  const XXH128_hash_t h = XXH3_128bits(name.data(), name.size());
  gismo_id_t id{};
  std::memcpy(id.bytes, kTag, sizeof kTag);
  std::memcpy(id.bytes + sizeof kTag, &h.low64, 8);
  std::memcpy(id.bytes + sizeof kTag + 8, &h.high64, 2);
  return id;
}

std::string EntryName(const NameEntry& e) {
  const uint32_t len =
      std::min(NameInfoLength(e.info.load(std::memory_order_relaxed)), kMaxNameLength);
  uint64_t w[kNameWords];
  for (uint32_t k = 0; k < kNameWords; ++k) w[k] = e.name[k].load(std::memory_order_relaxed);
  return std::string(reinterpret_cast<const char*>(w), len);
}

bool FindName(const Region& r, uint64_t h, std::string_view name, NameLocated* out) {
  const NameWords x = ToNameWords(name);
  const Word* slots = r.name_slots();
  NameEntry* entries = r.name_entries();
  out->e = nullptr;
  const ProbeStop stop = ProbeHashSlots(
      static_cast<uint32_t>(h), r.fixed().name_slots - 1, r.names_capacity(),
      [&](uint32_t i) { return slots[i].load(std::memory_order_relaxed); },
      [&](uint32_t entry) {
        const NameEntry& e = entries[entry];
        if (NameInfoLength(e.info.load(std::memory_order_relaxed)) != name.size()) return false;
        for (uint32_t k = 0; k < kNameWords; ++k) {
          if (e.name[k].load(std::memory_order_relaxed) != x.w[k]) return false;
        }
        out->entry = entry;
        out->e = &entries[entry];
        return true;
      });
  out->hslot = stop.end == ProbeEnd::kExhausted ? kNoSlot : stop.slot;
  return stop.end == ProbeEnd::kTaken;
}

Status Names::Bind(std::string_view name, const gismo_id_t& id, BindMode mode,
                   const gismo_id_t* expected) {
  Txn txn(r_, slot_, session_, OpKind::kBindName);
  if (Status s = BindIn(txn, name, id, mode, expected, nullptr); !s.ok()) return s;
  GISMO_CRASH_POINT("bind.before_commit");
  return txn.Commit();
}

Status Names::Unbind(std::string_view name, const gismo_id_t* expected) {
  Txn txn(r_, slot_, session_, OpKind::kUnbindName);
  if (Status s = UnbindIn(txn, name, expected); !s.ok()) return s;
  GISMO_CRASH_POINT("unbind.before_commit");
  return txn.Commit();
}

void Names::OpenTable(Txn& txn) const {
  if (!r_.noncoherent()) return;
  // The table's seqlock (non-coherent regions): odd in memory before any
  // entry or slot line of this change can be.
  NameTableHeader& t = r_.names();
  txn.OpenVersion(t.version);
  r_.Persist(&t.version, sizeof(Word));
}

void Names::CloseTable(Txn& txn, const NameEntry* entry, uint32_t first_slot,
                       uint32_t slots) const {
  NameTableHeader& t = r_.names();
  if (!r_.noncoherent()) {
    txn.Write(t.version, t.version.load(std::memory_order_relaxed) + 1);
    return;
  }
  // Every changed line in memory before the version is even again.
  if (entry != nullptr) r_.Persist(entry, sizeof(NameEntry));
  const uint32_t mask = r_.fixed().name_slots - 1;
  for (uint32_t n = 0; n < slots && n <= mask; ++n) {
    r_.Persist(&r_.name_slots()[(first_slot + n) & mask], sizeof(Word));
  }
  txn.CloseVersion(t.version);
  r_.Persist(&t.version, sizeof(Word));
}

Status Names::BindIn(Txn& txn, std::string_view name, const gismo_id_t& id, BindMode mode,
                     const gismo_id_t* expected, uint64_t* version) const {
  if (Status s = CheckName(name); !s.ok()) return s;
  if (mode == BindMode::kIfBoundTo && expected == nullptr) {
    return Status(GISMO_ERR_INVALID_ARGUMENT, "a compare-and-swap of a name needs the expected id");
  }
  // The object first (shard lock), then the table: the global lock order.
  Located loc;
  bool found = false;
  if (!LockAndFind(txn, id, &found, &loc)) return txn.failure();
  if (!found) {
    return Status(GISMO_ERR_OBJECT_NOT_FOUND,
                  "no object " + Hex(id) + " to bind the name " + Quote(name) + " to");
  }
  switch (InfoState(loc.rec->info.load(std::memory_order_relaxed))) {
    case ObjectState::kSealed:
      break;
    case ObjectState::kCreated:
      return Status(GISMO_ERR_OBJECT_NOT_SEALED, "object " + Hex(id) +
                                                     " is not sealed; a name is bound only "
                                                     "to a sealed object");
    default:
      return Status(GISMO_ERR_OBJECT_NOT_FOUND, "object " + Hex(id) + " was deleted");
  }
  NameTableHeader& t = r_.names();
  if (!txn.Lock(t.lock)) return txn.failure();
  const uint64_t h = HashName(name);
  NameLocated nl;
  const IdWords x = ToWords(id);
  uint32_t new_slot = 0, new_slots = 0;
  const NameEntry* changed = nullptr;
  if (FindName(r_, h, name, &nl)) {
    NameEntry& e = *nl.e;
    const gismo_id_t cur = EntryId(e);
    if (mode == BindMode::kIfUnbound) {
      return Status(GISMO_ERR_CONFLICT, "name " + Quote(name) + " is bound (to " + Hex(cur) + ")");
    }
    if (mode == BindMode::kIfBoundTo && !SameId(cur, *expected)) {
      return Status(GISMO_ERR_CONFLICT, "name " + Quote(name) + " is bound to " + Hex(cur) +
                                            ", not to " + Hex(*expected));
    }
    OpenTable(txn);
    for (int k = 0; k < 3; ++k) txn.Write(e.id[k], x.w[k]);
    txn.Write(e.version, e.version.load(std::memory_order_relaxed) + 1);
    txn.Write(e.bind_time_ns, RealtimeNs());
    GISMO_CRASH_POINT("bind.after_entry");
    changed = &e;
  } else {
    if (mode == BindMode::kIfBoundTo) {
      return Status(
          GISMO_ERR_CONFLICT,
          "name " + Quote(name) + " is not bound (expected it bound to " + Hex(*expected) + ")");
    }
    if (nl.hslot == kNoSlot) {
      return Status(GISMO_ERR_LIMIT, "too many names hash to the same place as " + Quote(name) +
                                         "; unbind some, or choose names that differ more");
    }
    const uint32_t cap = r_.names_capacity();
    const uint64_t fh = t.free_head.load(std::memory_order_relaxed);
    const uint64_t nu = t.next_unused.load(std::memory_order_relaxed);
    if (nu > cap) {
      return r_.Corrupt("the name table says it used " + std::to_string(nu) +
                        " entries, more than the " + std::to_string(cap) + " it has");
    }
    if (fh == 0 && nu == cap) {
      return Status(GISMO_ERR_LIMIT, "the name table is full (" + std::to_string(cap) +
                                         " names); unbind some, or format the region with a "
                                         "larger --max-names");
    }
    // The entry to take, checked before anything is written (not even the
    // seqlock's OpenTable): from the free list, one that was used (below
    // next_unused, itself within the table) and is free now, as UnbindIn
    // leaves it (info and version 0); else the first never used. A head
    // naming a bound entry would rebind it under its old hash slot; one at
    // or past next_unused would be taken again once next_unused reached
    // it. The next link is checked by the bind that takes it.
    const uint32_t entry = static_cast<uint32_t>(fh != 0 ? fh - 1 : nu);
    if (fh != 0 && fh > nu) {
      return r_.Corrupt("the name table's free list names entry " + std::to_string(fh - 1) +
                        ", past the " + std::to_string(nu) + " entries ever used");
    }
    // Free, whichever way it was found: a never-used entry is as the format
    // left it, and a next_unused lowered below a bound entry would rebind it.
    const NameEntry& taken = r_.name_entries()[entry];
    const uint64_t info = taken.info.load(std::memory_order_relaxed);
    const uint64_t version = taken.version.load(std::memory_order_relaxed);
    if (info != 0 || version != 0) {
      return r_.Corrupt(std::string(fh != 0 ? "the name table's free list names entry "
                                            : "the name table's next never-used entry, ") +
                        std::to_string(entry) + ", which is not free (info " +
                        std::to_string(info) + ", version " + std::to_string(version) + ")");
    }
    OpenTable(txn);
    if (fh != 0) {
      txn.Write(t.free_head, r_.name_entries()[entry].next_free.load(std::memory_order_relaxed));
    } else {
      txn.Write(t.next_unused, nu + 1);
    }
    NameEntry& e = r_.name_entries()[entry];
    const NameWords nw = ToNameWords(name);
    for (int k = 0; k < 3; ++k) txn.Write(e.id[k], x.w[k]);
    txn.Write(e.info, PackNameInfo(static_cast<uint32_t>(name.size())));
    txn.Write(e.version, 1);
    txn.Write(e.bind_time_ns, RealtimeNs());
    txn.Write(e.next_free, 0);
    for (uint32_t k = 0; k < kNameWords; ++k) txn.Write(e.name[k], nw.w[k]);
    GISMO_CRASH_POINT("bind.after_entry");
    txn.Write(r_.name_slots()[nl.hslot], PackHashSlot(h, entry));
    txn.Write(t.count, t.count.load(std::memory_order_relaxed) + 1);
    changed = &e;
    new_slot = nl.hslot;
    new_slots = 1;
  }
  CloseTable(txn, changed, new_slot, new_slots);
  if (version != nullptr) *version = changed->version.load(std::memory_order_relaxed);
  return txn.failed() ? txn.failure() : Status();
}

Status Names::UnbindIn(Txn& txn, std::string_view name, const gismo_id_t* expected) const {
  if (Status s = CheckName(name); !s.ok()) return s;
  NameTableHeader& t = r_.names();
  if (!txn.Lock(t.lock)) return txn.failure();
  NameLocated nl;
  if (!FindName(r_, HashName(name), name, &nl)) {
    return Status(GISMO_ERR_OBJECT_NOT_FOUND, "no name " + Quote(name));
  }
  NameEntry& e = *nl.e;
  if (expected != nullptr && !SameId(EntryId(e), *expected)) {
    return Status(GISMO_ERR_CONFLICT, "name " + Quote(name) + " is bound to " + Hex(EntryId(e)) +
                                          ", not to " + Hex(*expected));
  }
  OpenTable(txn);
  const uint32_t shifted =
      RemoveHashSlot(txn, r_.name_slots(), r_.fixed().name_slots - 1, nl.hslot);
  GISMO_CRASH_POINT("unbind.after_shift");
  txn.Write(e.info, 0);
  txn.Write(e.version, 0);
  txn.Write(e.next_free, t.free_head.load(std::memory_order_relaxed));
  txn.Write(t.free_head, nl.entry + 1);
  txn.Write(t.count, t.count.load(std::memory_order_relaxed) - 1);
  CloseTable(txn, &e, nl.hslot, shifted);
  return txn.failed() ? txn.failure() : Status();
}

Status Names::Lookup(std::string_view name, NameBinding* out) const {
  if (Status s = CheckName(name); !s.ok()) return s;
  Txn txn(r_, slot_, session_, OpKind::kNone);
  if (!txn.Lock(r_.names().lock)) return txn.Commit();
  NameLocated nl;
  if (!FindName(r_, HashName(name), name, &nl)) {
    return Status(GISMO_ERR_OBJECT_NOT_FOUND, "no name " + Quote(name));
  }
  FillBinding(*nl.e, out);
  return txn.Commit();
}

Status Names::List(std::string_view prefix,
                   const std::function<void(const NameBinding&)>& fn) const {
  if (prefix.size() > kMaxNameLength) return Status();  // no name is that long
  std::vector<NameBinding> batch;
  {
    Txn txn(r_, slot_, session_, OpKind::kNone);
    if (!txn.Lock(r_.names().lock)) return txn.Commit();
    Word* slots = r_.name_slots();
    const uint32_t cap = r_.names_capacity();
    for (uint32_t i = 0; i < r_.fixed().name_slots; ++i) {
      const uint64_t s = slots[i].load(std::memory_order_relaxed);
      if (s == 0 || HashSlotLocal(s) >= cap) continue;
      const NameEntry& e = r_.name_entries()[HashSlotLocal(s)];
      NameBinding b;
      FillBinding(e, &b);
      if (b.name.compare(0, prefix.size(), prefix) == 0) batch.push_back(std::move(b));
    }
    if (Status st = txn.Commit(); !st.ok()) return st;
  }
  for (const auto& b : batch) fn(b);
  return Status();
}

}  // namespace gismo::store
