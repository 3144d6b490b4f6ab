// The non-coherent mode's get path and free rule (doc/noncoherent.md,
// section 5): a client takes a reference on a sealed object without a
// request and without writing any line another host writes, and the owner
// (the manager) never frees an object a client relies on. Hosts share the
// region without cache coherence, so every step names its line operation.
//
// Lines written, each by one host (rule R1):
//  - ObjectRecord (one line): the owner. In a non-coherent region the
//    record's `ref_count` word is its seqlock `version`: the owner writes it
//    odd first, then the other words, then even, and flushes the line; a
//    write-back at any moment carries a prefix of those stores, so a line
//    whose version is even is whole.
//  - The client's held table (HeldEntry, key = record index + 1, count; four
//    entries per line) and its held summary (one line, a bit per bucket of
//    records, layout.h): the client alone, from its admission until it is
//    fenced; then the owner (RecoverTable).
//  - Object data: its creator until the seal; nobody while sealed.
//
// Lookup of id in its index shard (client; G0, NcReader::Find): read the
// shard's index_version (invalidated first; odd: retry), probe its hash
// slots (each line invalidated before it is read) and get each candidate
// record by G1..G5; an object found that way is right whatever the slots
// were doing. Found nothing: re-read index_version; unchanged, the object is
// absent; changed, probe again (the owner moved slots meanwhile).
//
// Get of record i for id (client; G1..G5):
//  G1. Invalidate the record's line; read version v. Odd: the owner is
//      writing it; retry (bounded, then BUSY).
//  G2. Read id, info, heap_offset, sizes; re-read version (== v, else retry).
//      Not this id, or not sealed: not found.
//  G3. If the record's bucket bit in the summary is clear, set it and
//      flush the summary's line; then add the reference to the client's
//      table (key first, then count) and flush the entry's line. So memory
//      never holds a referencing entry whose bucket is unmarked.
//  G4. Invalidate the record's line and re-read version: unchanged means the
//      owner had not begun to delete or reuse the record when the entry
//      reached memory. Changed: take the reference back (flush) and retry.
//  G5. Invalidate the object's data lines before the first read (a block is
//      reused, and a prefetcher may hold the previous object's lines). Not
//      when this client already held a reference before G3: the block has
//      held this sealed object, unchanged, since that reference's G5, so
//      every line cached since is current.
//  G6. An evictable object whose reference bit (CLOCK's) the record showed
//      clear in G2: note the get, NcRecentGet(i, v), in the client's
//      recent-gets line and flush it; the owner sets the bit before its
//      eviction hand moves (layout.h, kNcRecentGets). A hint: no order
//      against G3-G5 matters, and a lost note costs a second chance only.
// Release: count - 1 (at 0: count, then key, cleared) and flush the line;
// the bucket's last entry gone, its summary bit cleared and flushed.
//
// Free of record i (owner; O1..O3):
//  O1. Mark it deleting (version odd, state kDeleting, version even) and
//      flush the line.
//  O2. For every active client: invalidate its summary line; if the
//      record's bucket bit is set, invalidate its table and look for the
//      record's key with a count > 0.
//  O3. None: free it (version odd, state kFree, words cleared, version
//      even, flush). Else leave it deleting and look again later (a release,
//      a sweep, or the holder's recovery).
// G3-G4 and O1-O2 are a Dekker pair: each side stores, flushes (the store is
// in memory), then invalidates (a full fence: MFENCE on hardware, a seq_cst
// fence in the simulator) and loads what the other side stores. So at least
// one sees the other: the client sees the new version and takes its
// reference back, or the owner sees the reference and does not free. The
// summary bit is in memory before the entry, so an owner that finds the bit
// clear read before the entry reached memory: the first case. The client
// clears a bit only once no entry of its bucket is left in memory.
//
// A client's host that dies keeps in memory every reference it relied on
// (G3 flushes before G4), and no other: an entry not flushed was never
// relied on. Its table is the owner's to recover once it is fenced.
//
// Lines is the access seam (region/cache_lines.h): HwLines on hardware,
// CacheSim under the simulator.
#ifndef GISMO_REGION_NC_REFERENCES_H_
#define GISMO_REGION_NC_REFERENCES_H_

#include <array>
#include <cstdint>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "region/layout.h"

namespace gismo::region {

// Deliberate protocol faults, for the demonstration that the simulator
// catches each missing flush or invalidate (nc_references_test). kNone
// always outside tests.
enum class NcRefFault : uint8_t {
  kNone,
  kSkipEntryFlush,         // G3 without the flush of the table entry
  kSkipRecheckInvalidate,  // G4 reads its cached copy of the record
  kSkipDataInvalidate,     // G5 skipped
  kSkipMarkFlush,          // O1 without the flush of the record
  kSkipIndexRecheck,       // G0 trusts a probe that found nothing
  kSkipSummaryMark,        // G3 leaves the record's summary bit clear
  kSkipNoteFlush,          // G6 without the flush of the recent-gets line
};

enum class NcGet : uint8_t {
  kFound,     // referenced; *out describes it
  kNotFound,  // no sealed object of that id in the record
  kBusy,      // the owner kept the record odd; try again later
  kFull,      // the client's table has no free entry
};

struct NcObject {
  uint64_t heap_offset = 0;  // from the heap's start
  uint64_t data_size = 0;
  uint64_t metadata_size = 0;
};

// Words of shared structs, for the seam (Word is a lock-free 64-bit atomic).
inline uint64_t* NcWord(Word& w) { return reinterpret_cast<uint64_t*>(&w); }
static_assert(sizeof(Word) == sizeof(uint64_t) && Word::is_always_lock_free);

// A hash slot as memory holds it (a probe's load, ProbeHashSlots): its
// line invalidated, then the word read.
template <typename Lines>
uint64_t NcLoadSlot(Lines& lines, Word& slot) {
  uint64_t* w = NcWord(slot);
  lines.Invalidate(w, sizeof(*w));
  return lines.Load(w);
}

// A record's words as one seqlock read found them (G1-G2).
struct NcRecordWords {
  uint64_t version = 0;  // even
  IdWords id{};
  uint64_t info = 0;
  uint64_t heap_offset = 0;
  uint64_t sizes = 0;
  uint64_t create_time_ns = 0;
};

// G1-G2, the one seqlock read of a record: invalidates its line, reads the
// version, the words, and the version again. False when the owner held the
// version odd or changed it meanwhile (*out is then meaningless).
template <typename Lines>
bool NcReadRecord(Lines& lines, ObjectRecord& rec, NcRecordWords* out) {
  lines.Invalidate(&rec, sizeof(rec));
  uint64_t* version = NcWord(rec.ref_count);
  out->version = lines.Load(version);
  if (out->version & 1) return false;
  for (int k = 0; k < 3; ++k) out->id.w[k] = lines.Load(NcWord(rec.id[k]));
  out->info = lines.Load(NcWord(rec.info));
  out->heap_offset = lines.Load(NcWord(rec.heap_offset));
  out->sizes = lines.Load(NcWord(rec.sizes));
  out->create_time_ns = lines.Load(NcWord(rec.create_time_ns));
  return lines.Load(version) == out->version;
}

// How long a reader keeps trying a seqlock the owner holds odd: 64 tries at
// once (a write in progress ends within these), then yielding between tries
// (the owner may have been preempted mid-write) until `wait_ns` has passed
// since the 65th. for (NcPatience p(ns); !done && p.Again();) ...
class NcPatience {
 public:
  explicit NcPatience(uint64_t wait_ns) : wait_ns_(wait_ns) {}
  bool Again() {
    if (++tries_ <= 64) return true;
    const uint64_t now = MonotonicNs();
    if (deadline_ == 0) deadline_ = now + wait_ns_;
    if (now > deadline_) return false;
    std::this_thread::yield();
    return true;
  }

 private:
  uint64_t wait_ns_, deadline_ = 0;
  int tries_ = 0;
};

// The region's parts the protocol reads: the records (in runs of
// records_per_shard, shard_stride bytes apart, as the index shards keep
// them), the heap.
struct NcView {
  ObjectRecord* records = nullptr;  // shard 0's first record
  uint32_t num_records = 0;
  uint8_t* heap = nullptr;
  uint64_t heap_size = 0;
  uint32_t records_per_shard = ~0u;  // one run unless set
  uint64_t shard_stride = 0;
  ObjectRecord& Record(uint32_t index) const {
    return reinterpret_cast<ObjectRecord*>(reinterpret_cast<uint8_t*>(records) +
                                           (index / records_per_shard) *
                                               shard_stride)[index % records_per_shard];
  }
};

// The view of a whole region's records and heap.
inline NcView NcRegionView(ObjectRecord* shard0_records, uint32_t num_shards,
                           uint32_t records_per_shard, uint64_t shard_stride, uint8_t* heap,
                           uint64_t heap_size) {
  NcView v;
  v.records = shard0_records;
  v.num_records = num_shards * records_per_shard;
  v.records_per_shard = records_per_shard;
  v.shard_stride = shard_stride;
  v.heap = heap;
  v.heap_size = heap_size;
  return v;
}

// One index shard as the get path reads it: its header line (for
// index_version), its hash slots, and where its records start in the
// region's record numbering.
struct NcShard {
  ShardHeader* header = nullptr;
  Word* slots = nullptr;
  uint32_t mask = 0;          // slots - 1 (a power of two)
  uint32_t first_record = 0;  // global index of the shard's local record 0
  uint32_t records = 0;       // records per shard
};

// Whether a record says an object lies inside the heap (never trust a
// record another host wrote: its words are checked before use).
inline bool NcBlockInHeap(const NcView& v, const NcObject& o) {
  const uint64_t bytes = ((o.data_size + 63) & ~uint64_t{63}) + o.metadata_size;
  return o.heap_offset % kCacheLine == 0 && o.heap_offset <= v.heap_size &&
         bytes <= v.heap_size - o.heap_offset;
}

// One client's held table, its summary (kMaxHeldLocks words, one line) and
// its recent-gets line (kNcRecentGets words; null where nobody notes gets).
struct NcTable {
  HeldEntry* entries = nullptr;
  uint32_t capacity = 0;
  Word* summary = nullptr;
  Word* recent = nullptr;
};

// One line of eight words that a client writes alone (its held summary, its
// recent-gets line), as one value.
inline constexpr uint32_t kNcLineWords = kCacheLine / sizeof(Word);
using NcLine = std::array<uint64_t, kNcLineWords>;
static_assert(kMaxHeldLocks == kNcLineWords && kNcRecentGets == kNcLineWords);
// The line at `line` as memory holds it now (invalidated first).
template <typename Lines>
NcLine NcReadLine(Lines& lines, Word* line) {
  NcLine out;
  lines.Invalidate(line, kCacheLine);
  for (uint32_t i = 0; i < kNcLineWords; ++i) out[i] = lines.Load(NcWord(line[i]));
  return out;
}
// Stores `words` into the line at `line` and flushes it (invalidated
// first: its writer may change, so this host's copy may be old).
template <typename Lines>
void NcWriteLine(Lines& lines, Word* line, const NcLine& words) {
  lines.Invalidate(line, kCacheLine);
  for (uint32_t i = 0; i < kNcLineWords; ++i) lines.Store(NcWord(line[i]), words[i]);
  lines.Flush(line, kCacheLine);
}

using NcSummary = NcLine;
inline bool NcSummaryHas(const NcSummary& s, uint32_t record) {
  const uint32_t bit = HeldSummaryBit(record);
  return (s[bit / 64] >> (bit % 64) & 1) != 0;
}
inline void NcSummaryAdd(NcSummary& s, uint32_t record) {
  const uint32_t bit = HeldSummaryBit(record);
  s[bit / 64] |= uint64_t{1} << (bit % 64);
}
inline bool NcSummaryMeets(const NcSummary& a, const NcSummary& b) {
  for (size_t i = 0; i < a.size(); ++i) {
    if ((a[i] & b[i]) != 0) return true;
  }
  return false;
}

// Table `t`'s summary as memory holds it now (its line invalidated first).
template <typename Lines>
NcSummary NcReadSummary(Lines& lines, const NcTable& t) {
  return NcReadLine(lines, t.summary);
}

// Calls fn(record, count) for each entry of table `t` with references, as
// memory holds the table now (invalidated first); keys naming no record of
// `num_records` are skipped.
template <typename Lines, typename Fn>
void NcForEachHeld(Lines& lines, const NcTable& t, uint32_t num_records, Fn&& fn) {
  lines.Invalidate(t.entries, uint64_t{t.capacity} * sizeof(HeldEntry));
  for (uint32_t i = 0; i < t.capacity; ++i) {
    const uint64_t key = lines.Load(NcWord(t.entries[i].key));
    const uint64_t count = lines.Load(NcWord(t.entries[i].count));
    if (key != 0 && key <= num_records && count != 0) fn(static_cast<uint32_t>(key - 1), count);
  }
}

// O2 for one client: whether table `t` references record `index`. Its
// summary first; the table itself only if the record's bucket is marked.
template <typename Lines>
bool NcTableHolds(Lines& lines, const NcTable& t, uint32_t num_records, uint32_t index) {
  if (!NcSummaryHas(NcReadSummary(lines, t), index)) return false;
  bool held = false;
  NcForEachHeld(lines, t, num_records, [&](uint32_t record, uint64_t) { held |= record == index; });
  return held;
}

// Calls fn(record, version_low32) for each note in table `t`'s recent-gets
// line as memory holds it now (invalidated first); notes naming no record of
// `num_records` are skipped (the line is another host's: checked, not
// trusted).
template <typename Lines, typename Fn>
void NcForEachRecentGet(Lines& lines, const NcTable& t, uint32_t num_records, Fn&& fn) {
  if (t.recent == nullptr) return;
  for (const uint64_t note : NcReadLine(lines, t.recent)) {
    const uint64_t key = NcRecentGetKey(note);
    if (key != 0 && key <= num_records)
      fn(static_cast<uint32_t>(key - 1), NcRecentGetVersion(note));
  }
}

// Zeroes table `t`, its summary and its recent-gets line and flushes them
// (the owner's recovery of a fenced client's slot).
template <typename Lines>
void NcClearTable(Lines& lines, const NcTable& t) {
  lines.Invalidate(t.entries, uint64_t{t.capacity} * sizeof(HeldEntry));
  for (uint32_t i = 0; i < t.capacity; ++i) {
    lines.Store(NcWord(t.entries[i].count), 0);
    lines.Store(NcWord(t.entries[i].key), 0);
  }
  lines.Flush(t.entries, uint64_t{t.capacity} * sizeof(HeldEntry));
  NcWriteLine(lines, t.summary, NcLine{});
  if (t.recent != nullptr) NcWriteLine(lines, t.recent, NcLine{});
}

template <typename Lines>
class NcReader {
 public:
  // `table` is this client's held table and summary. Their lines are this
  // client's alone, so it keeps a private index of them (record index to
  // entry, the free entries, and the entries per summary bucket), read from
  // the table once here; the summary is rewritten from the table.
  NcReader(Lines& lines, const NcView& view, const NcTable& table)
      : lines_(lines),
        v_(view),
        table_(table.entries),
        summary_(table.summary),
        recent_(table.recent) {
    pos_.reserve(table.capacity);
    // The slot's previous client, or the owner's recovery, wrote these
    // lines last; this host may hold older copies (section 3, "what moves").
    lines_.Invalidate(table_, uint64_t{table.capacity} * sizeof(HeldEntry));
    for (uint32_t i = table.capacity; i-- > 0;) {
      const uint64_t key = lines_.Load(NcWord(table_[i].key));
      if (key == 0 || key > v_.num_records || pos_.count(key - 1) != 0) {
        free_.push_back(i);  // empty, or not an entry of this protocol: reused
      } else {
        pos_.emplace(static_cast<uint32_t>(key - 1), i);
      }
    }
    // Entries with count 0 are kept as they are (they name no reference);
    // the summary covers every entry, so it never misses one.
    NcSummary s{};
    for (const auto& [record, entry] : pos_) {
      if (bucket_entries_[HeldSummaryBit(record)]++ == 0) NcSummaryAdd(s, record);
    }
    NcWriteLine(lines_, summary_, s);
    if (recent_ != nullptr) noted_ = NcReadLine(lines_, recent_);
  }

  // Takes a reference on the sealed object `id` if record `index` holds it.
  NcGet Get(uint32_t index, const IdWords& id, NcObject* out) {
    if (index >= v_.num_records) return NcGet::kNotFound;
    ObjectRecord& rec = v_.Record(index);
    uint64_t* version = NcWord(rec.ref_count);
    for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
      NcRecordWords w;
      if (!NcReadRecord(lines_, rec, &w)) continue;  // G1-G2
      const uint64_t v = w.version;
      NcObject o;
      o.heap_offset = w.heap_offset;
      o.data_size = SizesData(w.sizes);
      o.metadata_size = SizesMeta(w.sizes);
      const bool same_id = w.id.w[0] == id.w[0] && w.id.w[1] == id.w[1] && w.id.w[2] == id.w[2];
      if (!same_id || InfoState(w.info) != ObjectState::kSealed) return NcGet::kNotFound;
      if (!NcBlockInHeap(v_, o)) return NcGet::kNotFound;  // a corrupt record: never followed
      bool held_before = false;
      auto held = Hold(index, &held_before);  // G3
      if (held == pos_.end()) return NcGet::kFull;
      if (fault_ != NcRefFault::kSkipRecheckInvalidate) lines_.Invalidate(&rec, sizeof(rec));  // G4
      if (lines_.Load(version) != v) {
        Drop(held);
        continue;
      }
      if (!held_before && fault_ != NcRefFault::kSkipDataInvalidate) {  // G5
        lines_.Invalidate(v_.heap + o.heap_offset,
                          ((o.data_size + 63) & ~uint64_t{63}) + o.metadata_size);
      }
      if ((InfoFlags(w.info) & (kObjectFlagEvictable | kObjectFlagReferenced)) ==
          kObjectFlagEvictable) {
        NoteGot(index, v);  // G6
      }
      *out = o;
      return NcGet::kFound;
    }
    return NcGet::kBusy;
  }

  // G0, then G1-G5: finds `id` (whose hash's low 32 bits are h32) in
  // `shard` and takes a reference on it; *index is its record. A probe that
  // meets the object's record gets it under the record's seqlock, so a found
  // object is right whatever the slots looked like; a probe that finds
  // nothing is trusted only if the shard's index_version, read (after an
  // invalidate) before the probe and again after it, is even and unchanged:
  // the owner may be moving slots (backward-shift deletion), and a reader
  // must not call an object that exists absent. Every slot line is
  // invalidated before it is read; slots naming a record outside the shard
  // are skipped.
  NcGet Find(const NcShard& shard, uint32_t h32, const IdWords& id, NcObject* out,
             uint32_t* index) {
    uint64_t* iv = NcWord(shard.header->index_version);
    for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
      lines_.Invalidate(shard.header, sizeof(ShardHeader));
      const uint64_t before = lines_.Load(iv);
      if (before & 1) continue;
      NcGet got = NcGet::kNotFound;
      (void)ProbeHashSlots(
          h32, shard.mask, shard.records,
          [&](uint32_t i) { return NcLoadSlot(lines_, shard.slots[i]); },
          [&](uint32_t local) {
            const uint32_t global = shard.first_record + local;
            got = Get(global, id, out);
            if (got != NcGet::kNotFound) *index = global;
            return got != NcGet::kNotFound;
          });
      if (got != NcGet::kNotFound) return got;
      if (fault_ == NcRefFault::kSkipIndexRecheck) return NcGet::kNotFound;
      lines_.Invalidate(shard.header, sizeof(ShardHeader));
      if (lines_.Load(iv) == before) return NcGet::kNotFound;
    }
    return NcGet::kBusy;
  }

  // The creator's own reference on record `index`, whose unsealed object
  // the owner just made for this client (the create's answer): nobody but
  // this client or its recovery can free an unsealed object, so no re-check
  // (G4) is needed; the entry is flushed before the create returns, so it
  // reaches memory before the seal request can make the object deletable.
  // False if the table is full.
  bool Adopt(uint32_t index) {
    bool held_before = false;
    return Hold(index, &held_before) != pos_.end();
  }

  // Drops one reference on record `index`; false if this client holds none.
  bool Release(uint32_t index) {
    auto it = pos_.find(index);
    if (it == pos_.end()) return false;
    Drop(it);
    return true;
  }

  // References this client holds on record `index` (its own lines: no
  // invalidate).
  uint64_t Held(uint32_t index) {
    auto it = pos_.find(index);
    return it == pos_.end() ? 0 : lines_.Load(NcWord(table_[it->second].count));
  }

  void SetFaultForTesting(NcRefFault f) { fault_ = f; }

 private:
  static constexpr int kMaxAttempts = 64;
  using Positions = std::unordered_map<uint32_t, uint32_t>;

  // G3: count + 1 on the record's entry (a free one if none), flushed. A
  // new entry's bucket is marked in the summary first, flushed before the
  // entry is written: memory never holds an entry whose bucket is unmarked
  // (an early write-back of the entry's line cannot precede the mark).
  // *held_before: the count was above 0 already.
  Positions::iterator Hold(uint32_t index, bool* held_before) {
    auto it = pos_.find(index);
    // An entry of count 0 (found so at construction: a torn one) holds
    // nothing: the block may have been freed and reused since.
    *held_before = it != pos_.end() && lines_.Load(NcWord(table_[it->second].count)) != 0;
    if (it == pos_.end()) {
      if (free_.empty()) return pos_.end();
      if (bucket_entries_[HeldSummaryBit(index)]++ == 0 && fault_ != NcRefFault::kSkipSummaryMark) {
        SetSummaryBit(index, true);
        lines_.Flush(summary_, sizeof(Word) * kMaxHeldLocks);
      }
      it = pos_.emplace(index, free_.back()).first;
      free_.pop_back();
      HeldEntry& e = table_[it->second];
      lines_.Store(NcWord(e.count), 0);
      lines_.Store(NcWord(e.key), index + 1);  // key first: a torn line shows count 0
    }
    HeldEntry& e = table_[it->second];
    lines_.Store(NcWord(e.count), lines_.Load(NcWord(e.count)) + 1);
    if (fault_ != NcRefFault::kSkipEntryFlush) lines_.Flush(&e, sizeof(e));
    return it;
  }

  // count - 1; at 0 the entry is cleared, count before key, and once that
  // is in memory the bucket's bit with its last entry. Flushed: the owner
  // may free the object once this reaches memory.
  void Drop(Positions::iterator it) {
    HeldEntry& e = table_[it->second];
    const uint64_t count = lines_.Load(NcWord(e.count)) - 1;
    lines_.Store(NcWord(e.count), count);
    if (count != 0) {
      lines_.Flush(&e, sizeof(e));
      return;
    }
    lines_.Store(NcWord(e.key), 0);
    const uint32_t index = it->first;
    free_.push_back(it->second);
    pos_.erase(it);
    lines_.Flush(&e, sizeof(e));
    // The bit is stored only now: an early write-back of the summary's line
    // cannot reach memory before the cleared entry.
    if (--bucket_entries_[HeldSummaryBit(index)] == 0) {
      SetSummaryBit(index, false);
      lines_.Flush(summary_, sizeof(Word) * kMaxHeldLocks);
    }
  }

  // G6: a get of an evictable object whose reference bit the record showed
  // clear, noted in this client's recent-gets line (layout.h, NcRecentGet)
  // over its oldest note and flushed, unless the line notes that record at
  // that version already (the owner has not set the bit yet). Its own line:
  // no invalidate, and `noted_` mirrors it.
  void NoteGot(uint32_t index, uint64_t version) {
    if (recent_ == nullptr) return;
    const uint64_t note = NcRecentGet(index, version);
    for (uint64_t n : noted_) {
      if (n == note) return;
    }
    const uint32_t i = next_note_++ % kNcRecentGets;
    noted_[i] = note;
    lines_.Store(NcWord(recent_[i]), note);
    if (fault_ != NcRefFault::kSkipNoteFlush) lines_.Flush(recent_, sizeof(Word) * kNcRecentGets);
  }

  // Sets or clears record `index`'s bucket bit in this client's own
  // summary line (no invalidate: only this client writes it).
  void SetSummaryBit(uint32_t index, bool set) {
    const uint32_t bit = HeldSummaryBit(index);
    uint64_t* word = NcWord(summary_[bit / 64]);
    const uint64_t mask = uint64_t{1} << (bit % 64);
    const uint64_t old = lines_.Load(word);
    lines_.Store(word, set ? old | mask : old & ~mask);
  }

  Lines& lines_;
  NcView v_;
  HeldEntry* table_;
  Word* summary_;
  Word* recent_;
  NcLine noted_{};  // the recent-gets line
  uint32_t next_note_ = 0;
  Positions pos_;               // record index to its entry (count > 0)
  std::vector<uint32_t> free_;  // entries with key 0
  std::array<uint32_t, kHeldSummaryBits> bucket_entries_{};  // entries per summary bit
  NcRefFault fault_ = NcRefFault::kNone;
};

template <typename Lines>
class NcOwner {
 public:
  NcOwner(Lines& lines, const NcView& view) : lines_(lines), v_(view) {}

  // Writes record `index` as sealed object `id` (the seal's last step: the
  // creator flushed the data before it asked). The record is the owner's:
  // its current words are its own, no invalidate.
  void Publish(uint32_t index, const IdWords& id, uint64_t info, const NcObject& o) {
    ObjectRecord& rec = v_.Record(index);
    Write(rec, [&] {
      for (int i = 0; i < 3; ++i) lines_.Store(NcWord(rec.id[i]), id.w[i]);
      lines_.Store(NcWord(rec.info), info);
      lines_.Store(NcWord(rec.heap_offset), o.heap_offset);
      lines_.Store(NcWord(rec.sizes), PackSizes(o.data_size, o.metadata_size));
    });
  }

  // The index seqlock around the owner's changes of a shard's hash slots:
  // BeginIndexChange makes index_version odd and flushes it before the
  // first slot is written; EndIndexChange flushes the changed slots
  // [first, first + count) (wrapping at the mask), then makes the version
  // even and flushes it. A reader's probe that overlaps either sees an odd
  // or a changed version and looks again.
  void BeginIndexChange(const NcShard& shard) {
    uint64_t* iv = NcWord(shard.header->index_version);
    lines_.Store(iv, (lines_.Load(iv) + 1) | 1);
    lines_.Flush(shard.header, sizeof(ShardHeader));
  }
  void EndIndexChange(const NcShard& shard, uint32_t first, uint32_t count) {
    for (uint32_t n = 0; n < count && n <= shard.mask; ++n) {
      lines_.Flush(&shard.slots[(first + n) & shard.mask], sizeof(Word));
    }
    uint64_t* iv = NcWord(shard.header->index_version);
    lines_.Store(iv, lines_.Load(iv) + 1);
    lines_.Flush(shard.header, sizeof(ShardHeader));
  }

  // O1..O3: true if record `index` is free now; false if a table still
  // references it (it stays kDeleting: call again after a release or the
  // holder's recovery).
  bool Delete(uint32_t index, const std::vector<NcTable>& tables) {
    ObjectRecord& rec = v_.Record(index);
    if (InfoState(lines_.Load(NcWord(rec.info))) != ObjectState::kDeleting) {
      const uint64_t info = lines_.Load(NcWord(rec.info));
      Write(
          rec,
          [&] {
            lines_.Store(NcWord(rec.info),
                         (info & ~uint64_t{0xff}) | static_cast<uint64_t>(ObjectState::kDeleting));
          },
          fault_ != NcRefFault::kSkipMarkFlush);
    }
    if (Referenced(index, tables)) return false;  // O2
    Write(rec, [&] {                              // O3
      for (int i = 0; i < 3; ++i) lines_.Store(NcWord(rec.id[i]), 0);
      lines_.Store(NcWord(rec.info), static_cast<uint64_t>(ObjectState::kFree));
      lines_.Store(NcWord(rec.heap_offset), 0);
      lines_.Store(NcWord(rec.sizes), 0);
    });
    return true;
  }

  // O2: whether any table holds a reference on record `index`, as memory
  // holds the tables (their summaries first) now.
  bool Referenced(uint32_t index, const std::vector<NcTable>& tables) {
    for (const NcTable& t : tables) {
      if (NcTableHolds(lines_, t, v_.num_records, index)) return true;
    }
    return false;
  }

  // A fenced client's table becomes the owner's: the records it referenced
  // (index, count), as memory holds them, and the table and its summary
  // zeroed and flushed for the slot's next client. REQUIRES: the client is
  // fenced, and on its host its lines were written back or dropped
  // (doc/noncoherent.md 7.3).
  std::vector<std::pair<uint32_t, uint64_t>> RecoverTable(const NcTable& t) {
    std::vector<std::pair<uint32_t, uint64_t>> held;
    NcForEachHeld(lines_, t, v_.num_records,
                  [&](uint32_t record, uint64_t count) { held.emplace_back(record, count); });
    NcClearTable(lines_, t);
    return held;
  }

  void SetFaultForTesting(NcRefFault f) { fault_ = f; }

 private:
  // The seqlock write: version odd, the words, version even, then the line
  // flushed (O1's flush is the one the Dekker pair needs). The version only
  // grows, so a reader never mistakes a rewritten record for the one it read.
  template <typename Fn>
  void Write(ObjectRecord& rec, Fn&& words, bool flush = true) {
    uint64_t* version = NcWord(rec.ref_count);
    // The next even value at or above the current one (odd only if a
    // previous owner died half-way through a write).
    const uint64_t base = (lines_.Load(version) + 1) & ~uint64_t{1};
    lines_.Store(version, base + 1);
    words();
    lines_.Store(version, base + 2);
    if (flush) lines_.Flush(&rec, sizeof(rec));
  }

  Lines& lines_;
  NcView v_;
  NcRefFault fault_ = NcRefFault::kNone;
};

}  // namespace gismo::region

#endif  // GISMO_REGION_NC_REFERENCES_H_
