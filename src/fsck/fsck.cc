#include "fsck/fsck.h"

#include <sched.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "region/cache_lines.h"
#include "region/free_runs.h"
#include "region/nc_requests.h"
#include "region/owner_election.h"
#include "region/request_ring.h"
#include "store/allocator.h"
#include "store/held.h"
#include "store/index.h"
#include "store/names.h"
#include "store/store.h"
#include "store/txn.h"

namespace gismo::fsck {

using namespace region;  // NOLINT: layout names are this file's vocabulary
using store::Allocator;

// Memory orders: the checker reads the region either with nothing running
// on it (offline) or with every lock held (online: each lock's acquire CAS
// orders the reads after the last holder's release), so plain relaxed loads
// see a region at rest; slot states, read outside any lock, use acquire.
namespace {

constexpr uint64_t AlignUp64(uint64_t v) { return (v + 63) & ~uint64_t{63}; }

std::string IdHex(const ObjectRecord& rec) {
  uint64_t w[3] = {rec.id[0].load(std::memory_order_relaxed),
                   rec.id[1].load(std::memory_order_relaxed),
                   rec.id[2].load(std::memory_order_relaxed)};
  const auto* b = reinterpret_cast<const uint8_t*>(w);
  static const char* d = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < GISMO_ID_SIZE; ++i) {
    s += d[b[i] >> 4];
    s += d[b[i] & 15];
  }
  return s;
}

// A record's state in words: gismo_state_name's for a live object.
const char* StateName(ObjectState s) {
  if (s == ObjectState::kFree) return "free";
  if (s > ObjectState::kDeleting) return "invalid";
  return gismo_state_name(static_cast<gismo_object_state_t>(s));
}

class Checker {
 public:
  Checker(const Region& r, Report* rep, bool online)
      : r_(r), rep_(*rep), online_(online), helpers_(region::OwnerHelperSlots(r)) {}

  void Run() {
    CheckNonCoherentLines();
    CheckSlots();
    CheckLocks();
    CheckIndex();
    CheckNames();
    CheckObjects();
    CheckPages();
    CheckFreeRunSummary();
    CheckPartialLists();
    CheckEventRing();
  }

 private:
  template <typename... Args>
  void Problem(Args&&... parts) {
    std::string s;
    (s.append(ToStr(parts)), ...);
    if (rep_.problems.size() < 1000) rep_.problems.push_back(std::move(s));
  }
  static std::string ToStr(const std::string& s) { return s; }
  static std::string ToStr(const char* s) { return s; }
  template <typename T>
  static std::string ToStr(T v) {
    return std::to_string(v);
  }

  // A Txn slot of the owner's helper threads (format 12), not a client's.
  bool Helper(uint32_t slot) const {
    return std::find(helpers_.begin(), helpers_.end(), slot) != helpers_.end();
  }

  // Active, or dead but not yet recovered: either way it still owns what
  // its slot lists.
  bool Live(uint32_t slot) const {
    if (slot >= r_.max_clients()) return false;
    const SlotState st = region::SlotStateOf(r_.slot(slot).state.load(std::memory_order_acquire));
    return st == SlotState::kActive || st == SlotState::kSuspected || st == SlotState::kRecovering;
  }

  // 7: a non-coherent region's own lines (doc/noncoherent.md): every client
  // slot's request and response rings (indices consistent; for a live
  // session, every published entry validates with its session), the
  // owner's sleep line and the election's candidate lines. This host may
  // hold stale copies of lines other hosts wrote: each is invalidated
  // before it is read.
  // Each client's held summary marks the bucket of every record its table
  // references (memory never holds such an entry with its bucket unmarked:
  // nc_references.h, G3), else the owner could free the object under the
  // client; a free slot's summary is clear. Offline only: a live client
  // drops an entry and then its bit, so a check while it runs could read
  // the table before the drop and the summary after.
  void CheckHeldSummaries(HwLines& lines) {
    if (online_) return;
    const uint32_t records = r_.num_records();
    for (uint32_t i = 1; i < r_.max_clients(); ++i) {
      if (Helper(i)) continue;  // its lock records, not a summary
      const NcTable t = store::NcTableOf(r_, i);
      const NcSummary summary = NcReadSummary(lines, t);
      if (!Live(i)) {
        if (summary != NcSummary{}) Problem("free client slot ", i, "'s held summary is not clear");
        continue;
      }
      NcForEachHeld(lines, t, records, [&](uint32_t record, uint64_t) {
        if (!NcSummaryHas(summary, record)) {
          Problem("client slot ", i, "'s held summary does not mark record ", record,
                  ", which its table references (the owner could free it under the client)");
        }
      });
    }
  }

  void CheckNonCoherentLines() {
    if (!r_.noncoherent()) return;
    HwLines lines;
    const uint32_t cap = r_.request_ring_capacity();
    const uint64_t records = r_.num_records();
    for (uint32_t i = 1; i < r_.max_clients(); ++i) {
      if (Helper(i)) continue;  // its log area holds an undo log, not rings
      const uint64_t state = r_.slot(i).state.load(std::memory_order_acquire);
      const SlotState st = SlotStateOf(state);
      const bool live =
          st == SlotState::kActive || st == SlotState::kSuspected || st == SlotState::kRecovering;
      const std::pair<const char*, void*> rings[] = {{"request", r_.request_ring(i)},
                                                     {"response", r_.response_ring(i)}};
      for (const auto& [name, ring] : rings) {
        RequestConsumer<HwLines> reader(lines, ring, cap, SlotSessionOf(state));
        auto* hdr = static_cast<RequestRingHeader*>(ring);
        lines.Invalidate(hdr, sizeof(*hdr));
        const uint64_t tail = lines.Load(&hdr->tail.value);
        const uint64_t head = lines.Load(&hdr->head.value);
        if (tail - head > cap) {
          Problem("client slot ", i, "'s ", name, " ring is inconsistent: tail ", tail, ", head ",
                  head, " (capacity ", cap, ")");
          continue;
        }
        if (!live) continue;
        // Read as the owner and the client read them, never committed: each
        // published request or response whole and decoded.
        reader.Attach();
        const bool requests = ring == r_.request_ring(i);
        for (;;) {
          NcRequest request;
          NcResponse response;
          auto got = requests ? TakeNcRequest(reader, records, &request)
                              : TakeNcResponse(reader, records, r_.heap_size(), &response);
          if (!got.ok()) {
            Problem("client slot ", i, "'s ", name, " ring: ", got.status().message());
          }
          if (!got.ok() || !*got) break;
        }
      }
    }
    CheckHeldSummaries(lines);
    Superblock& sb = r_.sb();
    lines.Invalidate(&sb.owner_sleep, sizeof(sb.owner_sleep));
    for (uint32_t k = 0; k < kMaxOwnerThreads; ++k) {
      if (lines.Load(&sb.owner_sleep.sleeping[k]) > 1) {
        Problem("the owner's sleep line holds ", lines.Load(&sb.owner_sleep.sleeping[k]),
                " for owner thread ", k, " (0 or 1 expected)");
      }
    }
    if (lines.Load(&sb.owner_sleep.threads) > kMaxOwnerThreads) {
      Problem("the owner's sleep line counts ", lines.Load(&sb.owner_sleep.threads),
              " owner threads (at most ", kMaxOwnerThreads, ")");
    }
    lines.Invalidate(&sb.owner_helpers, sizeof(sb.owner_helpers));
    for (uint32_t k = 0; k < kMaxOwnerThreads; ++k) {
      const uint64_t v = lines.Load(&sb.owner_helpers.slots[k]);
      if (v != 0 && (k == 0 || v - 1 == 0 || v - 1 >= r_.max_clients())) {
        Problem("the owner's helper line names slot ", v - 1, " for owner thread ", k,
                " (thread 0 is slot 0's; a helper's is a client slot, below ", r_.max_clients(),
                ")");
      }
    }
    for (uint32_t s = 0; s < r_.num_shards() && !online_; ++s) {
      ShardHeader& sh = r_.shard(s);
      lines.Invalidate(&sh, sizeof(sh));
      const uint64_t iv = lines.Load(reinterpret_cast<uint64_t*>(&sh.index_version));
      if ((iv & 1) != 0) {
        Problem("index shard ", s, " is half-changed (index version ", iv,
                "): its owner stopped in the middle of moving hash slots");
      }
    }
    for (uint32_t j = 0; j < kMaxCandidates; ++j) {
      lines.Invalidate(&sb.candidates[j], sizeof(sb.candidates[j]));
      if (lines.Load(&sb.candidates[j].choosing) > 1) {
        Problem("candidate line ", j,
                " of the owner election holds choosing = ", lines.Load(&sb.candidates[j].choosing),
                " (0 or 1 expected)");
      }
      // Every newcomer waits on such a line until its node is fenced and the
      // line cleared (owner_election.h, T1 and T2).
      const uint64_t ticket = lines.Load(&sb.candidates[j].ticket);
      if (ticket >= kElectionTicketLimit) {
        Problem("candidate line ", j, " of the owner election holds ticket ", ticket,
                " (at or above 2^63, which no candidate takes): every candidate waits on it "
                "until its node is fenced and the line cleared");
      }
    }
  }

  // 5 (and the inputs of 3 and 4): the client slots.
  void CheckSlots() {
    const uint32_t cap = r_.fixed().held_capacity;
    for (uint32_t i = 1; i < r_.max_clients(); ++i) {
      const ClientSlotHeader& h = r_.slot(i);
      SlotState st = SlotStateOf(h.state.load(std::memory_order_acquire));
      const bool recovering = st == SlotState::kRecovering;
      // A suspected client may still run: it owns all it lists until fenced.
      if (st == SlotState::kSuspected) st = SlotState::kActive;
      if (recovering) {
        if (!online_) Problem("client slot ", i, " was being recovered when its manager stopped");
        st = SlotState::kActive;  // still owns what it lists
      }
      const HeldEntry* held = r_.held(i);
      uint64_t entries = 0;
      for (uint32_t k = 0; k < cap; ++k) {
        const uint64_t key = held[k].key.load(std::memory_order_acquire);
        if (key == 0) continue;
        ++entries;
        const uint32_t global = HeldKeyGlobal(key);
        const uint64_t count = held[k].count.load(std::memory_order_relaxed);
        if (st != SlotState::kActive) continue;
        if (global >= r_.num_records()) {
          Problem("client slot ", i, " holds a reference to record ", global,
                  ", which is outside the index");
          continue;
        }
        // An owned entry may hold no reference (kHeldOwned).
        if (count == 0 && !(key & kHeldOwned)) {
          Problem("client slot ", i, " has a held entry with count 0");
        }
        // Where a lookup from its home slot finds it: else (an empty slot
        // on the way, or a second entry for the record before it) a release
        // says "not held" and a get adds another entry.
        if (!r_.noncoherent()) {
          if (const int64_t at = store::HeldFind(r_, i, global); at != int64_t{k}) {
            Problem("client slot ", i, "'s held entry ", k, " for record ", global,
                    at >= 0 ? " comes after another entry for that record"
                            : " is past an empty slot from its home",
                    ": a lookup does not find it");
          }
        }
        held_by_record_[global] += count;
        if (key & kHeldUnsealedCreator) unsealed_creator_[global] = i;
        if (key & kHeldOwned) owner_listing_[global] = i;
        rep_.held_references += count;
      }
      if (st == SlotState::kActive) {
        ++rep_.live_clients;
        // A non-coherent region's clients keep only their table (held_count
        // is unused there).
        if (!r_.noncoherent() && entries != h.held_count.load(std::memory_order_relaxed)) {
          Problem("client slot ", i, " counts ", h.held_count.load(std::memory_order_relaxed),
                  " held objects but its table has ", entries);
        }
      } else if (st == SlotState::kFree) {
        if (entries != 0) {
          Problem("free client slot ", i, " still lists ", entries,
                  " held objects (references of a departed client were not dropped)");
        }
        for (uint32_t c = 0; c < kNumClasses; ++c) {
          if (r_.current_slabs(i)[c].load(std::memory_order_relaxed) != 0) {
            Problem("free client slot ", i, " still owns a slab (class ", c, ")");
          }
        }
      } else {
        Problem("client slot ", i, " has an unknown state");
      }
      // A non-coherent region's clients log nothing: their log areas hold
      // their rings (the owner's helper threads' slots hold undo logs).
      const uint32_t logged = r_.noncoherent() && !Helper(i) ? 0 : store::LoggedEntries(r_, i);
      if (logged != 0 && (!online_ || recovering)) {
        Problem("client slot ", i, " has an interrupted operation (", logged,
                " undo entries) that recovery has not undone");
      }
    }
  }

  void CheckLocks() {
    store::ForEachLock(r_, [&](const Word& lock) {
      uint64_t tag = lock.load(std::memory_order_relaxed);
      if (tag == 0) return;
      uint32_t owner = LockTagSlot(tag);
      if (online_ && owner == checker_slot_) return;
      if (!online_) {
        Problem("a lock at region offset ", r_.OffsetOf(&lock), " is held by client slot ", owner,
                " (an interrupted operation; the manager undoes it when it starts)");
      } else if (!Live(owner) && owner != 0) {
        Problem("a lock at region offset ", r_.OffsetOf(&lock), " is held by client slot ", owner,
                ", which is not live");
      }
    });
  }

  // 2: the index.
  void CheckIndex() {
    const uint32_t nslots = r_.fixed().slots_per_shard, mask = nslots - 1;
    const uint32_t rps = r_.records_per_shard();
    for (uint32_t s = 0; s < r_.num_shards(); ++s) {
      const ShardHeader& sh = r_.shard(s);
      const Word* slots = r_.hash_slots(s);
      const ObjectRecord* recs = r_.records(s);
      const uint64_t next_unused = sh.next_unused.load(std::memory_order_relaxed);
      if (next_unused > rps) {
        Problem("shard ", s, ": next unused record ", next_unused, " is beyond its ", rps);
        continue;
      }
      std::vector<uint8_t> seen(next_unused, 0);
      uint64_t live = 0;
      for (uint32_t i = 0; i < nslots; ++i) {
        uint64_t v = slots[i].load(std::memory_order_relaxed);
        if (v == 0) continue;
        const uint32_t local = HashSlotLocal(v);
        if (local >= next_unused) {
          Problem("shard ", s, " slot ", i, " names record ", local, ", never allocated");
          continue;
        }
        if (seen[local]++) {
          Problem("shard ", s, ": record ", local, " is named by two index slots");
          continue;
        }
        ++live;
        const ObjectRecord& rec = recs[local];
        ObjectState st = InfoState(rec.info.load(std::memory_order_relaxed));
        if (st == ObjectState::kFree || st > ObjectState::kDeleting) {
          Problem("shard ", s, " slot ", i, " names record ", local, " whose state is ",
                  StateName(st));
          continue;
        }
        const uint64_t h = store::HashId(store::IdOf(rec));
        if (ShardOfHash(h, r_.num_shards()) != s || static_cast<uint32_t>(h) != HashSlotHash(v)) {
          Problem("object ", IdHex(rec), " is filed under the wrong hash");
          continue;
        }
        // Reachable: fewer than kMaxProbe slots past its home (Find stops
        // there, so an entry farther away is invisible: a create of its id
        // could index a second record), and no empty slot in between.
        const uint32_t home = static_cast<uint32_t>(h) & mask;
        const uint32_t distance = (i - home) & mask;
        if (distance >= kMaxProbe) {
          Problem("object ", IdHex(rec), " sits ", distance, " slots past its home slot, beyond ",
                  "the probe limit of ", kMaxProbe,
                  ": lookups cannot find it (a create of its id could index it twice)");
        } else {
          for (uint32_t j = home; j != i; j = (j + 1) & mask) {
            if (slots[j].load(std::memory_order_relaxed) == 0) {
              Problem("object ", IdHex(rec), " cannot be found from its id (probe gap)");
              break;
            }
          }
        }
        if (!ids_.insert(std::string(reinterpret_cast<const char*>(store::IdOf(rec).bytes),
                                     GISMO_ID_SIZE))
                 .second) {
          Problem("object ", IdHex(rec), " is in the index twice");
        }
        live_.push_back(s * rps + local);
      }
      if (live != sh.count.load(std::memory_order_relaxed)) {
        Problem("shard ", s, " counts ", sh.count.load(std::memory_order_relaxed),
                " objects but indexes ", live);
      }
      // The free record list.
      uint64_t free_count = 0;
      for (uint64_t f = sh.free_head.load(std::memory_order_relaxed); f != 0;) {
        uint64_t local = f - 1;
        if (local >= next_unused) {
          Problem("shard ", s, ": free record list points outside the used records");
          break;
        }
        if (seen[local]) {
          Problem("shard ", s, ": record ", local,
                  seen[local] == 1 ? " is both live and on the free list"
                                   : " is on the free list twice (cycle)");
          break;
        }
        seen[local] = 2;
        if (InfoState(recs[local].info.load(std::memory_order_relaxed)) != ObjectState::kFree) {
          Problem("shard ", s, ": record ", local, " on the free list is not free");
        }
        ++free_count;
        f = recs[local].heap_offset.load(std::memory_order_relaxed);
      }
      if (live + free_count != next_unused) {
        Problem("shard ", s, ": ", next_unused - live - free_count,
                " record(s) are neither live nor free (leaked records)");
      }
      // Never used, so as the format left them: a create that takes one
      // that is not free fails.
      for (uint64_t local = next_unused; local < rps; ++local) {
        if (InfoState(recs[local].info.load(std::memory_order_relaxed)) != ObjectState::kFree) {
          Problem("shard ", s, ": record ", local, ", never used (next unused is ", next_unused,
                  "), is not free");
          break;
        }
      }
    }
  }

  // 6: the name table (layout.h, "Name table", invariants 1-3). A name
  // whose object is gone is no problem (a name is not a reference): counted.
  void CheckNames() {
    const NameTableHeader& t = r_.names();
    const uint32_t nslots = r_.fixed().name_slots, mask = nslots - 1;
    const uint32_t cap = r_.names_capacity();
    const Word* slots = r_.name_slots();
    const NameEntry* entries = r_.name_entries();
    const uint64_t next_unused = t.next_unused.load(std::memory_order_relaxed);
    if (next_unused > cap) {
      Problem("name table: next unused entry ", next_unused, " is beyond its ", cap);
      return;
    }
    std::vector<uint8_t> seen(next_unused, 0);
    std::unordered_set<std::string> names;
    uint64_t live = 0;
    for (uint32_t i = 0; i < nslots; ++i) {
      const uint64_t v = slots[i].load(std::memory_order_relaxed);
      if (v == 0) continue;
      const uint32_t entry = HashSlotLocal(v);
      if (entry >= next_unused) {
        Problem("name table slot ", i, " names entry ", entry, ", never allocated");
        continue;
      }
      if (seen[entry]++) {
        Problem("name table: entry ", entry, " is named by two slots");
        continue;
      }
      ++live;
      const NameEntry& e = entries[entry];
      const uint32_t len = NameInfoLength(e.info.load(std::memory_order_relaxed));
      if (len == 0 || len > kMaxNameLength) {
        Problem("name table: entry ", entry, " has a name of ", len, " bytes");
        continue;
      }
      const std::string name = store::EntryName(e);
      bool padded = true;
      for (uint32_t k = (len + 7) / 8; k < kNameWords; ++k) {
        padded = padded && e.name[k].load(std::memory_order_relaxed) == 0;
      }
      if (len % 8 != 0) {
        const uint64_t last = e.name[len / 8].load(std::memory_order_relaxed);
        padded = padded && (last >> (8 * (len % 8))) == 0;
      }
      if (!padded || name.find('\0') != std::string::npos) {
        Problem("name table: entry ", entry, " holds bytes past its name or a NUL byte");
      }
      const uint64_t h = store::HashName(name);
      if (static_cast<uint32_t>(h) != HashSlotHash(v)) {
        Problem("name '", name, "' is filed under the wrong hash");
        continue;
      }
      for (uint32_t j = static_cast<uint32_t>(h) & mask, n = 0; j != i; j = (j + 1) & mask, ++n) {
        if (slots[j].load(std::memory_order_relaxed) == 0 || n + 1 >= kMaxProbe) {
          Problem("name '", name, "' cannot be found from its hash (probe gap or too far)");
          break;
        }
      }
      if (!names.insert(name).second) Problem("name '", name, "' is in the table twice");
      if (e.version.load(std::memory_order_relaxed) == 0) {
        Problem("name '", name, "' is bound with version 0");
      }
      gismo_id_t id;
      uint64_t w[3] = {e.id[0].load(std::memory_order_relaxed),
                       e.id[1].load(std::memory_order_relaxed),
                       e.id[2].load(std::memory_order_relaxed)};
      std::memcpy(id.bytes, w, GISMO_ID_SIZE);
      if (!ids_.count(std::string(reinterpret_cast<const char*>(id.bytes), GISMO_ID_SIZE))) {
        ++rep_.dangling_names;
      }
    }
    rep_.names = live;
    if (live != t.count.load(std::memory_order_relaxed)) {
      Problem("name table counts ", t.count.load(std::memory_order_relaxed), " names but holds ",
              live);
    }
    uint64_t free_count = 0;
    for (uint64_t f = t.free_head.load(std::memory_order_relaxed); f != 0;) {
      const uint64_t entry = f - 1;
      if (entry >= next_unused) {
        Problem("name table: free entry list points outside the used entries");
        break;
      }
      if (seen[entry]) {
        Problem("name table: entry ", entry,
                seen[entry] == 1 ? " is both bound and on the free list"
                                 : " is on the free list twice (cycle)");
        break;
      }
      seen[entry] = 2;
      // Free as UnbindIn leaves it (and format): a bind takes it only so.
      const uint64_t info = entries[entry].info.load(std::memory_order_relaxed);
      const uint64_t version = entries[entry].version.load(std::memory_order_relaxed);
      if (info != 0 || version != 0) {
        Problem("name table: entry ", entry, " on the free list is not free (info ", info,
                ", version ", version, ")");
      }
      ++free_count;
      f = entries[entry].next_free.load(std::memory_order_relaxed);
    }
    if (live + free_count != next_unused) {
      Problem("name table: ", next_unused - live - free_count,
              " entr(ies) are neither bound nor free (leaked entries)");
    }
    for (uint64_t entry = next_unused; entry < cap; ++entry) {
      if (entries[entry].info.load(std::memory_order_relaxed) != 0 ||
          entries[entry].version.load(std::memory_order_relaxed) != 0) {
        Problem("name table: entry ", entry, ", never used (next unused is ", next_unused,
                "), is not free (binds that reach it fail)");
        break;
      }
    }
  }

  // 1, 3, 4: every live object, its memory and its references.
  void CheckObjects() {
    const uint64_t pages = r_.num_pages();
    page_object_.assign(pages, 0);
    for (uint32_t global : live_) {
      const ObjectRecord& rec = r_.record(global);
      const uint64_t info = rec.info.load(std::memory_order_relaxed);
      const ObjectState st = InfoState(info);
      const uint64_t sizes = rec.sizes.load(std::memory_order_relaxed);
      const uint64_t bytes = AlignUp64(SizesData(sizes)) + SizesMeta(sizes);
      const uint64_t off = rec.heap_offset.load(std::memory_order_relaxed);
      ++rep_.objects;
      rep_.object_bytes += SizesData(sizes) + SizesMeta(sizes);
      if (st == ObjectState::kSealed) ++rep_.sealed;
      if (st == ObjectState::kCreated) ++rep_.unsealed;
      if (st == ObjectState::kDeleting) ++rep_.deleting;
      const std::string who = "object " + IdHex(rec);
      // References.
      const uint64_t refs = rec.ref_count.load(std::memory_order_relaxed);
      auto it = held_by_record_.find(global);
      const uint64_t held = it == held_by_record_.end() ? 0 : it->second;
      if (r_.noncoherent()) {
        // ref_count is the record's seqlock version there: odd only while
        // the owner writes the record.
        if ((refs & 1) != 0 && !online_) {
          Problem(who, "'s record is half-written (version ", refs,
                  "): its owner stopped in the middle of changing it");
        }
      } else if (refs != held) {
        Problem(who, " has reference count ", refs, " but live clients hold ", held);
      }
      if (st == ObjectState::kDeleting && (r_.noncoherent() ? held : refs) == 0) {
        Problem(who, " was deleted and nobody holds it, but it was not freed");
      }
      if (st == ObjectState::kCreated && r_.noncoherent()) {
        // The owner names the creator in the record; the creator's own
        // reference reaches its table only after the create's answer.
        if (!Live(InfoSlot(info))) {
          Problem(who, " is unsealed but its creator (slot ", InfoSlot(info),
                  ") is not a live client");
        }
      } else if (st == ObjectState::kCreated) {
        auto c = unsealed_creator_.find(global);
        if (c == unsealed_creator_.end() || c->second != InfoSlot(info) || !Live(InfoSlot(info))) {
          Problem(who, " is unsealed but its creator (slot ", InfoSlot(info),
                  ") is not a live client holding it");
        }
      } else if (unsealed_creator_.count(global)) {
        Problem(who, " is ", StateName(st), " but a client still marks it as its unsealed object");
      }
      // A sealed owned object that its creator slot does not list would
      // never be deleted with its owner: a leak (kHeldOwned invariant 1).
      // Its slot may be kRecovering online: it still lists what it owns.
      if (InfoOwnedBy(info, InfoSlot(info))) {
        auto o = owner_listing_.find(global);
        if (o == owner_listing_.end() || o->second != InfoSlot(info) || !Live(InfoSlot(info))) {
          Problem(who, " is owned by client slot ", InfoSlot(info),
                  ", which does not list it: it would outlive its owner");
        }
      }
      if ((InfoFlags(info) & ~kObjectFlagsKnown) != 0) {
        Problem(who, " has unknown flag bits ", InfoFlags(info) & ~kObjectFlagsKnown);
      }
      // Memory.
      const uint64_t block = Allocator::BlockSize(bytes == 0 ? 1 : bytes);
      if (off >= r_.heap_size() || block > r_.heap_size() - off) {
        Problem(who, " lies outside the heap");
        continue;
      }
      uint64_t page = off / kPageSize;
      const int cls = Allocator::ClassOf(bytes == 0 ? 1 : bytes);
      if (cls >= 0) {
        // A block past a multi-page slab's first page: its tail names the head.
        const uint64_t tinfo = r_.page(page).info.load(std::memory_order_relaxed);
        if (PageInfoKind(tinfo) == PageKind::kSlabTail) {
          const uint64_t head = r_.page(page).used.load(std::memory_order_relaxed);
          if (head >= page || page - head >= SlabPages(static_cast<uint32_t>(cls))) {
            Problem(who, " lies in a slab tail page that names no head");
            continue;
          }
          page = head;
        }
      }
      const PageDesc& d = r_.page(page);
      const uint64_t pinfo = d.info.load(std::memory_order_relaxed);
      if (cls >= 0) {
        if (PageInfoKind(pinfo) != PageKind::kSlab || PageInfoClass(pinfo) != uint32_t(cls)) {
          Problem(who, " (", bytes, " bytes) is not in a slab of its size class");
          continue;
        }
        const uint64_t in_page = off - page * kPageSize;
        if (in_page % kClassSizes[cls] != 0 ||
            in_page / kClassSizes[cls] >= SlabBlocks(static_cast<uint32_t>(cls))) {
          Problem(who, " is not at a block boundary of its slab");
          continue;
        }
        const uint32_t b = static_cast<uint32_t>(in_page / kClassSizes[cls]);
        if (!((d.bitmap[b / 64].load(std::memory_order_relaxed) >> (b % 64)) & 1)) {
          Problem(who, " occupies a slab block marked free (it could be handed out again)");
        }
        if (!blocks_.insert(off).second) Problem(who, " shares its block with another object");
        ++slab_objects_[page];
      } else {
        if (off % kPageSize != 0 || PageInfoKind(pinfo) != PageKind::kRun ||
            d.used.load(std::memory_order_relaxed) != block / kPageSize) {
          Problem(who, " (", bytes, " bytes) does not match its page run");
          continue;
        }
        for (uint64_t p = page; p < page + block / kPageSize; ++p) {
          if (page_object_[p]) {
            Problem(who, " overlaps another object's pages");
            break;
          }
          page_object_[p] = 1;
        }
      }
    }
  }

  void CheckPages() {
    const uint64_t pages = r_.num_pages();
    const Word* bm = r_.page_bitmap();
    auto bit = [&](uint64_t p) {
      return (bm[p / 64].load(std::memory_order_relaxed) >> (p % 64)) & 1;
    };
    uint64_t used = 0;
    std::map<std::pair<uint32_t, uint32_t>, uint64_t> slabs_per_stripe;
    for (uint64_t p = 0; p < pages;) {
      const PageDesc& d = r_.page(p);
      const uint64_t info = d.info.load(std::memory_order_relaxed);
      switch (PageInfoKind(info)) {
        case PageKind::kRun: {
          const uint64_t n = d.used.load(std::memory_order_relaxed);
          // n > pages - p, never p + n > pages: a corrupt n near 2^64 wraps
          // that sum below `pages`, and `p += n` below would then move p
          // backwards (the check would never end). p < pages here.
          if (n == 0 || n > pages - p) {
            Problem("page run at page ", p, " has a bad length ", n);
            ++p;
            continue;
          }
          for (uint64_t q = p; q < p + n; ++q) {
            if (!bit(q)) Problem("page ", q, " belongs to an object run but is marked free");
            if (!page_object_[q]) {
              Problem("page run at page ", p, " (", n, " pages) belongs to no object (leak)");
              break;
            }
          }
          used += n;
          rep_.run_pages += n;
          p += n;
          continue;
        }
        case PageKind::kSlab: {
          const uint32_t cls = PageInfoClass(info), stripe = PageInfoStripe(info);
          if (cls >= kNumClasses || stripe >= kStripes) {
            Problem("slab page ", p, " has a bad class or stripe");
            ++p;
            continue;
          }
          const uint32_t cap = SlabBlocks(cls);
          const uint32_t slab_pages = SlabPages(cls);
          if (slab_pages > pages - p) {
            Problem("slab page ", p, " (class ", kClassSizes[cls], " B) has ", slab_pages,
                    " pages, past the heap");
            ++p;
            continue;
          }
          for (uint64_t q = p + 1; q < p + slab_pages; ++q) {
            const uint64_t ti = r_.page(q).info.load(std::memory_order_relaxed);
            if (PageInfoKind(ti) != PageKind::kSlabTail || PageInfoClass(ti) != cls ||
                r_.page(q).used.load(std::memory_order_relaxed) != p) {
              Problem("page ", q, " of the slab at page ", p, " is not its tail");
            }
            if (!bit(q)) Problem("slab tail page ", q, " is marked free in the page bitmap");
          }
          uint64_t ones = 0;
          for (uint32_t w = 0; w < kSlabBitmapWords; ++w) {
            uint64_t v = d.bitmap[w].load(std::memory_order_relaxed);
            uint32_t valid = w * 64 >= cap ? 0 : std::min<uint32_t>(64, cap - w * 64);
            uint64_t mask = valid == 64 ? ~0ull : ((1ull << valid) - 1);
            if (v & ~mask) Problem("slab page ", p, " marks blocks beyond its capacity");
            ones += __builtin_popcountll(v & mask);
          }
          const uint64_t objects = slab_objects_.count(p) ? slab_objects_[p] : 0;
          if (d.used.load(std::memory_order_relaxed) != ones || ones != objects) {
            Problem("slab page ", p, " (class ", kClassSizes[cls], " B) counts ",
                    d.used.load(std::memory_order_relaxed), " blocks in use, its bitmap ", ones,
                    ", and ", objects, " objects live in it",
                    ones > objects ? " (leaked blocks)" : "");
          }
          if (!bit(p)) Problem("slab page ", p, " is marked free in the page bitmap");
          const uint32_t owner = PageInfoOwner(info);
          if (owner != 0) {
            if (!Live(owner - 1)) {
              Problem("slab page ", p, " is owned by client slot ", owner - 1,
                      ", which is not live");
            } else if (r_.current_slabs(owner - 1)[cls].load(std::memory_order_relaxed) != p + 1) {
              Problem("slab page ", p, " is owned by slot ", owner - 1,
                      " but is not its current slab");
            }
          } else if (ones == 0) {
            Problem("slab page ", p, " is empty and unowned but was not returned (leak)");
          } else if (ones < cap) {
            unowned_partial_.insert(p);
          }
          ++slabs_per_stripe[{cls, stripe}];
          used += slab_pages;
          rep_.slab_pages += slab_pages;
          p += slab_pages;
          continue;
        }
        case PageKind::kSlabTail:
          Problem("page ", p, " is a slab tail outside any slab");
          ++p;
          continue;
        case PageKind::kFree:
          if (bit(p)) Problem("page ", p, " is marked in use but belongs to nothing (leak)");
          ++p;
          continue;
        default:
          Problem("page ", p, " has an unknown kind");
          ++p;
      }
    }
    rep_.pages_used = used;
    rep_.pages_free = pages - used;
    if (r_.alloc().free_pages.load(std::memory_order_relaxed) != pages - used) {
      Problem("the allocator counts ", r_.alloc().free_pages.load(std::memory_order_relaxed),
              " free pages, the pages say ", pages - used);
    }
    for (uint32_t c = 0; c < kNumClasses; ++c) {
      for (uint32_t st = 0; st < kStripes; ++st) {
        uint64_t want = slabs_per_stripe.count({c, st}) ? slabs_per_stripe[{c, st}] : 0;
        if (r_.class_stripe(c, st).slab_count.load(std::memory_order_relaxed) != want) {
          Problem("size class ", kClassSizes[c], " B stripe ", st, " counts ",
                  r_.class_stripe(c, st).slab_count.load(std::memory_order_relaxed),
                  " slabs, the pages say ", want);
        }
      }
    }
    // Slabs still owned by clients, from the clients' side.
    for (uint32_t i = 1; i < r_.max_clients(); ++i) {
      if (!Live(i)) continue;
      for (uint32_t c = 0; c < kNumClasses; ++c) {
        uint64_t p1 = r_.current_slabs(i)[c].load(std::memory_order_relaxed);
        if (p1 == 0) continue;
        if (p1 - 1 >= pages ||
            PageInfoKind(r_.page(p1 - 1).info.load(std::memory_order_relaxed)) != PageKind::kSlab ||
            PageInfoOwner(r_.page(p1 - 1).info.load(std::memory_order_relaxed)) != i + 1) {
          Problem("client slot ", i, "'s current slab for class ", kClassSizes[c],
                  " B is not a slab it owns");
        }
      }
    }
  }

  // The free-run summary is derived from the page bitmap (layout.h,
  // FreeRunNode): every node must equal its rebuild from the bitmap. A wrong
  // one is never used out of bounds (the allocator checks a run it names
  // against the bitmap and rebuilds the summary), but it would make a
  // create fail or search in vain.
  void CheckFreeRunSummary() {
    uint64_t first_bad = 0;
    const uint64_t bad = region::CheckFreeRuns(r_, &first_bad);
    if (bad != 0) {
      Problem("the free-run summary disagrees with the page bitmap in ", bad,
              " nodes (first: node ", first_bad,
              "); the allocator rebuilds it when a run it names is not free");
    }
  }

  void CheckPartialLists() {
    const uint64_t pages = r_.num_pages();
    std::unordered_set<uint64_t> listed;
    for (uint32_t c = 0; c < kNumClasses; ++c) {
      for (uint32_t st = 0; st < kStripes; ++st) {
        uint64_t prev = 0;
        for (uint64_t p1 = r_.class_stripe(c, st).partial_head.load(std::memory_order_relaxed);
             p1 != 0;) {
          uint64_t p = p1 - 1;
          if (p >= pages || !listed.insert(p).second) {
            Problem("the partial slab list of class ", kClassSizes[c], " B stripe ", st,
                    " is broken (bad page or cycle)");
            break;
          }
          const PageDesc& d = r_.page(p);
          const uint64_t info = d.info.load(std::memory_order_relaxed);
          if (PageInfoKind(info) != PageKind::kSlab || PageInfoClass(info) != c ||
              PageInfoStripe(info) != st || PageInfoOwner(info) != 0 ||
              !unowned_partial_.count(p)) {
            Problem("page ", p, " is on the partial slab list of class ", kClassSizes[c],
                    " B stripe ", st, " but is not an unowned, partly used slab of it");
          }
          if (d.prev.load(std::memory_order_relaxed) != prev)
            Problem("page ", p, " has a wrong back link");
          prev = p1;
          p1 = d.next.load(std::memory_order_relaxed);
        }
      }
    }
    for (uint64_t p : unowned_partial_) {
      if (!listed.count(p)) {
        Problem("unowned slab page ", p,
                " has free blocks but is on no partial list (its space is lost)");
      }
    }
  }

  // The event ring (store/event_ring.h): every entry below head is claimed
  // for its seq or a later one (E1); a claimed or pending entry names a
  // client slot, which must be live (or, offline, is an interrupted
  // operation that the manager's recovery finishes when it starts).
  void CheckEventRing() {
    const uint64_t head = r_.event_ring().head.load(std::memory_order_relaxed);
    if (head == 0) Problem("the event ring's head is 0");
    const uint64_t cap = r_.fixed().event_ring_capacity;
    for (uint64_t seq = head > cap ? head - cap : 1; seq < head; ++seq) {
      const uint64_t w = r_.event(seq).seq.load(std::memory_order_acquire);
      if (EventFinal(w) && EventFinalSeq(w) < seq) {
        Problem("event ", seq, " is below the ring's head but was never claimed");
        break;
      }
    }
    for (uint64_t i = 0; i < cap; ++i) {
      const uint64_t w = r_.event(i).seq.load(std::memory_order_acquire);
      if (EventFinal(w)) {
        // Entry i holds seqs i, i + capacity, ...; a final one is at most
        // head (or 0, never used; at head: a producer's recovery skipped
        // it before the head moved on, which the next producer does). Else
        // a producer that reaches it finds it in no state it may take, and
        // every seal and delete fails there.
        const uint64_t s = EventFinalSeq(w);
        if (s != 0 && (s % cap != i || s > head)) {
          Problem("event ring entry ", i, " holds the end of event ", s, ", which ",
                  s % cap != i ? "is not one of that entry's" : "is past the ring's head",
                  " (seals and deletes that reach it fail)");
        }
        continue;
      }
      const uint32_t owner = EventOwnerOf(w);
      const char* what = EventStateOf(w) == EventState::kPending ? "pending" : "claimed";
      if (owner >= r_.max_clients()) {
        Problem("event ring entry ", i, " is ", what, " by client slot ", owner,
                ", which does not exist");
      } else if (!online_) {
        Problem("event ring entry ", i, " is ", what, " by client slot ", owner,
                " (an interrupted operation; the manager finishes it when it starts)");
      } else if (!Live(owner) && owner != 0) {
        Problem("event ring entry ", i, " is ", what, " by client slot ", owner,
                ", which is not live (subscribers wait at it)");
      }
    }
  }

 public:
  uint32_t checker_slot_ = ~0u;

 private:
  const Region& r_;
  Report& rep_;
  bool online_;
  std::vector<uint32_t> helpers_;  // region::OwnerHelperSlots at the start
  std::unordered_map<uint32_t, uint64_t> held_by_record_;
  std::unordered_map<uint32_t, uint32_t> unsealed_creator_;
  std::unordered_map<uint32_t, uint32_t> owner_listing_;  // record → slot with kHeldOwned
  std::unordered_set<std::string> ids_;
  std::vector<uint32_t> live_;
  std::vector<uint8_t> page_object_;
  std::unordered_set<uint64_t> blocks_;
  std::unordered_map<uint64_t, uint64_t> slab_objects_;
  std::unordered_set<uint64_t> unowned_partial_;
};

}  // namespace

Result<Report> Check(const Region& r, const LockAs* lock_as) {
  // The check reads every metadata page: map them in one call rather than
  // one fault each (and before an online check stops the world).
  r.PopulateMetadataForRead();
  Report rep;
  Checker c(r, &rep, lock_as != nullptr);
  if (lock_as == nullptr) {
    c.Run();
    return rep;
  }
  // Stop the world as a client of the region: every lock, each waited for
  // at most the lock wait, marked with this client's tag so that the
  // manager frees them all if the checker dies (Txn::LockWorld).
  if (lock_as->lock_wait_ms > kMaxLockWaitMs) {
    return Status(GISMO_ERR_INVALID_ARGUMENT,
                  "a lock wait of " + std::to_string(lock_as->lock_wait_ms) +
                      " ms is more than the online check allows (" +
                      std::to_string(kMaxLockWaitMs) + " ms): every client waits meanwhile");
  }
  c.checker_slot_ = lock_as->slot;
  store::Txn txn(r, lock_as->slot, lock_as->session, region::OpKind::kCheck);
  if (lock_as->lock_wait_ms != 0) txn.SetLockWait(lock_as->lock_wait_ms * 1'000'000);
  if (!txn.LockWorld()) {
    Status why = txn.Commit();  // rolls back: releases what was taken
    return Status(why.code(), "could not stop the world for an online check: " + why.message());
  }
  rep.stopped_the_world = true;
  c.Run();
  if (Status s = txn.Commit(); !s.ok()) return s;
  return rep;
}

}  // namespace gismo::fsck
