// The shared region's on-media layout (format version: kFormatVersion, below).
//
// The region is a file format: every participant maps the same bytes, at
// different addresses, so nothing in it is a pointer: every reference is a
// byte offset from the start of the region, or an index. doc/region-format.md
// documents this header; keep them in step and bump kFormatVersion on any
// incompatible change.
//
// Layout (all areas 4 KiB aligned, the heap 2 MiB aligned):
//   [superblock 4 KiB][client table][object index][event ring][name table]
//   [allocator: header, class stripes, page bitmap, free-run summary, page
//   descriptors][heap]
//
// Concurrency contract: every word that more than one process mutates is a
// 64-bit std::atomic, written only by a holder of the lock that guards it,
// through a Txn (src/store/txn.h) that undo-logs the old value first. The
// few exceptions are documented where declared.
#ifndef GISMO_REGION_LAYOUT_H_
#define GISMO_REGION_LAYOUT_H_

#include <gismo/gismo.h>

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>

namespace gismo::region {

using Word = std::atomic<uint64_t>;
static_assert(Word::is_always_lock_free, "shared words must be lock-free");
static_assert(sizeof(Word) == 8 && alignof(Word) == 8);

inline constexpr uint64_t kMagic = 0x4e4f474552534d47ull;  // "GMSREGON"
inline constexpr uint32_t kFormatVersion = 13;
inline constexpr uint64_t kCacheLine = 64;
inline constexpr uint64_t kAreaAlign = 4096;
inline constexpr uint64_t kHeapAlign = 2ull << 20;
inline constexpr uint64_t kPageSize = 16 * 1024;  // heap page
inline constexpr uint64_t kMinRegionSize = 8ull << 20;
// The most heap pages a region has (a 32 TiB heap): page indices and run
// lengths fit the 32-bit halves of a bit-range log entry (PackBitRange) and
// of a free-run summary node (PackFreeRunEnds), whose root spans the pages
// rounded up to a power of two leaves: at most kMaxPages.
inline constexpr uint64_t kMaxPages = 1ull << 31;

// Size classes for small objects (data + metadata, rounded). Every class is a
// multiple of 64 so every object starts on a cache line. Up to 8 KiB a slab
// is one heap page of one class; above, classes are spaced by at most 1/8
// (9-16 KiB by 1 KiB, 18-32 KiB by 2 KiB, 36-64 KiB by 4 KiB), so an object
// of 8-64 KiB reserves at most 12.5% more than it asks, and their slabs are
// runs of SlabPages(class) pages (format 6).
inline constexpr uint32_t kNumClasses = 48;
inline constexpr uint32_t kClassSizes[kNumClasses] = {
    64,    128,   192,   256,   320,   384,   448,   512,   640,   768,   896,   1024,
    1280,  1536,  1792,  2048,  2560,  3072,  3584,  4096,  5120,  6144,  7168,  8192,
    9216,  10240, 11264, 12288, 13312, 14336, 15360, 16384, 18432, 20480, 22528, 24576,
    26624, 28672, 30720, 32768, 36864, 40960, 45056, 49152, 53248, 57344, 61440, 65536};
inline constexpr uint64_t kMaxSmallSize = 65536;
inline constexpr uint32_t kMaxBlocksPerSlab = kPageSize / 64;         // 256
inline constexpr uint32_t kSlabBitmapWords = kMaxBlocksPerSlab / 64;  // 4
// Pages of one slab of class `cls`: 1 up to 8 KiB; above, the fewest pages
// (at most 16) that hold at least 4 blocks with nothing left over (every
// class above 8 KiB is a whole number of KiB, so k KiB takes k / gcd(k, 16)
// pages: 9 KiB 9 pages of 16 blocks, 12 KiB 3 pages of 4, 64 KiB 16 of 4).
// The one definition, for allocator and fsck.
inline constexpr uint32_t SlabPages(uint32_t cls) {
  const uint64_t size = kClassSizes[cls];
  if (size <= 8192) return 1;
  for (uint32_t s = 1; s < 16; ++s) {
    if (s * kPageSize % size == 0 && s * kPageSize / size >= 4) return s;
  }
  return 16;
}
inline constexpr uint32_t SlabBlocks(uint32_t cls) {
  return static_cast<uint32_t>(SlabPages(cls) * kPageSize / kClassSizes[cls]);
}
inline constexpr bool ClassesAreSound() {
  for (uint32_t c = 0; c < kNumClasses; ++c) {
    if (kClassSizes[c] % 64 != 0 || SlabBlocks(c) < 2 || SlabBlocks(c) > kMaxBlocksPerSlab) {
      return false;
    }
    if (c > 0 && kClassSizes[c] <= kClassSizes[c - 1]) return false;
    // Multi-page slabs lose nothing at their end.
    if (SlabPages(c) > 1 && SlabPages(c) * kPageSize % kClassSizes[c] != 0) return false;
    // Above 8 KiB: at most 1/8 between neighbours (the waste bound).
    if (c > 0 && kClassSizes[c - 1] >= 8192 && kClassSizes[c] * 8 > kClassSizes[c - 1] * 9) {
      return false;
    }
  }
  return kClassSizes[kNumClasses - 1] == kMaxSmallSize;
}
static_assert(ClassesAreSound());
// Allocation stripes per class: a client allocates from stripe
// (slot % kStripes), so clients rarely share a class lock.
inline constexpr uint32_t kStripes = 8;

inline constexpr uint64_t kMaxDataSize = (1ull << 40) - 1;
inline constexpr uint64_t kMaxMetadataSize = (1ull << 24) - 1;

enum class CoherenceMode : uint32_t {
  kCoherent = 1,     // one host, or hardware-coherent CXL 3: clients mutate
  kNonCoherent = 2,  // CXL 2.0: one writer per line, explicit flushes and
                     // invalidates (doc/noncoherent.md)
};
// The name of Superblock::coherence_mode, for status, metrics and messages.
inline constexpr const char* CoherenceModeName(uint32_t mode) {
  return mode == static_cast<uint32_t>(CoherenceMode::kCoherent)      ? "coherent"
         : mode == static_cast<uint32_t>(CoherenceMode::kNonCoherent) ? "non-coherent"
                                                                      : "unknown";
}

// Superblock::features. A feature bit is set at format and never changes.
// kFeatureDurable: the region lives on a medium that outlives the host's
// power (a disk file, a DAX file or device), and every participant persists
// in the order recovery relies on (Region::Persist; src/store/txn.h,
// "Durable regions"). Bits this build does not know make Open refuse.
inline constexpr uint64_t kFeatureDurable = GISMO_FEATURE_DURABLE;
inline constexpr uint64_t kKnownFeatures = kFeatureDurable;

// ---------------------------------------------------------------------------
// The non-coherent mode's lines (doc/noncoherent.md). Their fields are plain
// words, read and written only through the protocol's line seam
// (region/cache_lines.h: relaxed 64-bit atomic accesses, explicit flush and
// invalidate), each line by one writer.

// A single-producer/single-consumer request ring (region/request_ring.h):
// line 0 the tail (producer's), line 1 the head (consumer's), then
// `capacity` entries, one per line (producer's).
inline constexpr uint32_t kRequestPayloadWords = 6;
struct alignas(kCacheLine) RequestIndex {
  uint64_t value;
  uint64_t reserved[7];
};
static_assert(sizeof(RequestIndex) == kCacheLine);
struct alignas(kCacheLine) RequestEntry {
  uint64_t seq;  // request n is in entry (n - 1) % capacity, seq = n >= 1
  uint64_t payload[kRequestPayloadWords];
  uint64_t check;  // XXH3-64 of words 0..6, seeded with the slot's session
};
static_assert(sizeof(RequestEntry) == kCacheLine);
static_assert(offsetof(RequestEntry, check) == 56);
struct alignas(kCacheLine) RequestRingHeader {
  RequestIndex tail;  // producer's line
  RequestIndex head;  // consumer's line
};
static_assert(sizeof(RequestRingHeader) == 2 * kCacheLine);
// Bytes of a ring of `capacity` entries (a power of two).
inline constexpr uint64_t RequestRingBytes(uint32_t capacity) {
  return sizeof(RequestRingHeader) + uint64_t{capacity} * sizeof(RequestEntry);
}
// A non-coherent region's client slot keeps, where a coherent one keeps its
// undo log, two rings of Superblock::request_ring_capacity entries: the
// request ring (client to owner) at the log's start, the response ring
// (owner to client) right after, then the client's recent-gets line (below,
// format 10). The capacity is the largest power of two, at most
// kMaxRequestRing, whose two rings and that line fit the log; at least
// kMinRequestRing (format refuses a log too small).
inline constexpr uint32_t kMinRequestRing = 8;
inline constexpr uint32_t kMaxRequestRing = 256;
inline constexpr uint32_t RequestRingCapacityFor(uint64_t log_bytes) {
  uint32_t c = kMaxRequestRing;
  while (c >= kMinRequestRing && 2 * RequestRingBytes(c) + kCacheLine > log_bytes) c /= 2;
  return c >= kMinRequestRing ? c : 0;
}
// A non-coherent region's client gets objects without writing a record, so
// it cannot set an evictable object's CLOCK reference bit as a coherent get
// does. It notes the get instead, in the line after its response ring
// (kNcRecentGets words, written by the client alone until it is fenced, then
// zeroed by the owner's recovery; a slot's admission zeroes it too): each
// word 0 or NcRecentGet(record, version), a get of record `record` while
// the record's seqlock version was `version` and its reference bit clear,
// the oldest note overwritten first. The owner reads the line (invalidated
// first) before its eviction hand moves and sets the bit of each noted
// record whose version still ends in the noted 32 bits: the bit's own write
// moves the version on, so a note counts once, and a note that outlived its
// object (the record freed or reused) no longer matches. A lost note (eight
// newer ones overwrote it before the owner looked) only costs the object
// its second chance, as a coherent get's bit cleared by the hand would.
inline constexpr uint32_t kNcRecentGets = kCacheLine / sizeof(uint64_t);
inline constexpr uint64_t NcRecentGet(uint32_t record, uint64_t version) {
  return (uint64_t{record} + 1) << 32 | (version & 0xffffffff);
}
// The record of a recent-get note, + 1 (0: an empty word); its version's
// low 32 bits.
inline constexpr uint64_t NcRecentGetKey(uint64_t note) { return note >> 32; }
inline constexpr uint32_t NcRecentGetVersion(uint64_t note) { return static_cast<uint32_t>(note); }

// The most threads one owner applies requests with (format 12,
// doc/noncoherent.md 9.3): thread k serves the client slots s with
// s % threads == k (OwnerThreadOf).
inline constexpr uint32_t kMaxOwnerThreads = 7;
// The owner thread that serves client slot `slot` when `threads` serve
// (the line's word as memory holds it: 0, before any owner, or out of
// range, is one thread).
inline constexpr uint32_t OwnerThreadOf(uint32_t slot, uint64_t threads) {
  return threads <= 1 || threads > kMaxOwnerThreads ? 0 : static_cast<uint32_t>(slot % threads);
}

// The owner's sleep line (region/owner_sleep.h): written by the owner's
// threads only (one host; each its own word of `sleeping`).
struct alignas(kCacheLine) OwnerSleepLine {
  uint64_t sleeping[kMaxOwnerThreads];  // [k]: 1 while owner thread k may be asleep
  uint64_t threads;                     // how many serve (written before any serves)
};
static_assert(sizeof(OwnerSleepLine) == kCacheLine);

// The Txn slots of the owner's threads other than thread 0 (whose slot is
// 0), so that a successor undoes what any of them left half done: slots[k]
// is thread k's client slot + 1 (0: none; slots[0] is always 0). Written by
// the owner only, each entry persisted before its thread's first Txn.
struct alignas(kCacheLine) OwnerHelpersLine {
  uint64_t slots[kMaxOwnerThreads];
  uint64_t reserved;
};
static_assert(sizeof(OwnerHelpersLine) == kCacheLine);

// One would-be owner's line of the election (region/owner_election.h):
// written by that candidate only, or zeroed by a successor once it is fenced.
struct alignas(kCacheLine) CandidateLine {
  uint64_t choosing;  // 1 while it picks its ticket
  uint64_t ticket;    // 0: not a candidate
  uint64_t identity;  // the candidate's session
  // Beats << 1, | 1 while it serves as the owner: changes while it runs,
  // so others can suspect it (only change is compared, never clocks).
  uint64_t heartbeat;
  // Its ProcessIdentity (boot_id, pid_ns, pid, start_time; format 9), so a
  // successor can prove it gone or name it.
  uint64_t process[4];
};
static_assert(sizeof(CandidateLine) == kCacheLine);
static_assert(offsetof(CandidateLine, ticket) == 8);
inline constexpr uint32_t kMaxCandidates = 32;

// manager_owner while a coherent region's manager is taking the lease
// (format 13, see Superblock): bit 63 set, the claimer's node in bits 32..62
// (kClaimNodeUnknown when its id needs more than 31 bits), the low 32 bits
// of its epoch below. A served lease holds the bare epoch, below 2^63.
inline constexpr uint64_t kOwnerClaimBit = uint64_t{1} << 63;
inline constexpr uint32_t kClaimNodeUnknown = 0x7fffffff;
constexpr uint64_t PackOwnerClaim(uint64_t epoch, uint32_t node) {
  const uint64_t n = node < kClaimNodeUnknown ? node : kClaimNodeUnknown;
  return kOwnerClaimBit | n << 32 | (epoch & 0xffffffffu);
}
constexpr bool IsOwnerClaim(uint64_t owner) { return (owner & kOwnerClaimBit) != 0; }
// The claimer's node, or kClaimNodeUnknown.
constexpr uint32_t OwnerClaimNode(uint64_t claim) {
  return static_cast<uint32_t>(claim >> 32) & kClaimNodeUnknown;
}
static_assert(IsOwnerClaim(PackOwnerClaim(7, 3)) && !IsOwnerClaim(7));
static_assert(OwnerClaimNode(PackOwnerClaim(uint64_t{1} << 40 | 9, 3)) == 3);
static_assert(OwnerClaimNode(PackOwnerClaim(9, 0xffffffffu)) == kClaimNodeUnknown);
static_assert(PackOwnerClaim(uint64_t{1} << 40 | 9, 3) != PackOwnerClaim(9, 4));

enum class RegionState : uint64_t {
  kFormatting = 1,  // format in progress: not usable
  kReady = 2,
};

// ---------------------------------------------------------------------------
// Superblock: offset 0, 4 KiB. The "immutable" part is written once at
// format time and covered by `checksum` (xxh64 of bytes [0, checksum)).
struct alignas(kCacheLine) Superblock {
  // --- immutable ---
  uint64_t magic;
  uint32_t format_version;
  uint32_t superblock_size;
  uint64_t region_size;
  uint64_t format_time_ns;
  uint64_t uuid[2];  // random, identifies this formatting of the region
  uint32_t coherence_mode;
  uint32_t page_size;

  uint32_t max_clients;        // slots, slot 0 is the manager's
  uint32_t log_capacity;       // undo log entries per client slot
  uint32_t held_capacity;      // held-reference table entries per slot
  uint32_t num_shards;         // index shards (power of two)
  uint32_t slots_per_shard;    // hash slots per shard (power of two)
  uint32_t records_per_shard;  // object records per shard
  uint64_t max_objects;        // num_shards * records_per_shard

  uint64_t client_table_offset;
  uint64_t client_slot_size;
  uint64_t index_offset;
  uint64_t shard_size;
  uint64_t alloc_offset;        // AllocatorHeader
  uint64_t class_table_offset;  // ClassStripe[kNumClasses * kStripes]
  uint64_t page_bitmap_offset;  // Word[ceil(num_pages / 64)]
  uint64_t page_desc_offset;    // PageDesc[num_pages]
  uint64_t heap_offset;
  uint64_t heap_size;
  uint64_t num_pages;
  uint64_t event_ring_offset;    // EventRingHeader, then EventEntry[capacity]
  uint64_t event_ring_capacity;  // power of two
  uint64_t names_offset;         // NameTableHeader, slots, NameEntry[names_capacity]
  uint32_t names_capacity;       // name entries (bound names at most)
  uint32_t name_slots;           // hash slots of the name table (power of two)
  uint64_t features;             // kFeature* bits; a reader refuses bits it does not know
  uint64_t free_run_offset;      // FreeRunNode[FreeRunLeaves(num_pages)] (format 5)
  // Entries of each client slot's request and response rings in a
  // non-coherent region (RequestRingCapacityFor(log bytes)); 0 in a coherent
  // one (format 7).
  uint64_t request_ring_capacity;
  uint64_t reserved[1];
  uint64_t checksum;

  // --- mutable, written by the manager only (no lock; single writer) ---
  alignas(kCacheLine) Word state;  // RegionState
  Word manager_epoch;              // +1 at every manager start
  Word manager_start_time_ns;
  Word manager_heartbeat_ns;  // refreshed while a manager runs
  Word next_client_id;
  // Number of registered seal waiters and subscribers. A client that seals
  // or deletes checks it (after a seq_cst fence) and, if non-zero, tells the
  // manager, which wakes the waiters. The manager raises it before it
  // acknowledges a wait, so a sealer and a waiter cannot both miss each other.
  alignas(kCacheLine) Word waiters;
  // Live subscriptions. While non-zero, a seal or delete kicks the manager
  // (which wakes the subscribers) unless a kick is already pending: the
  // first producer sets kick_pending and sends; the manager clears it before
  // it wakes anyone, so every event is covered by a wake-up that follows it.
  alignas(kCacheLine) Word subscribers;
  alignas(kCacheLine) Word kick_pending;

  // --- the manager lease (one serving manager per region, across hosts) ---
  // `manager_owner` is the epoch of the manager that serves the region (0:
  // none; a manager that stops cleanly writes 0). It changes only by a
  // compare-and-swap from a value its writer observed, so two managers
  // cannot both take it. The owner raises `manager_beat` at every tick; a
  // would-be manager that sees it stand still for a whole `manager_lease_ms`
  // (measured on its own clock: hosts' clocks are not compared) suspects the
  // owner, fences it (see doc/failure.md), and only then takes over. An owner
  // that finds `manager_owner` changed stops serving at once.
  // A coherent region's newcomer takes it in two steps (format 13): a CAS to
  // its claim (PackOwnerClaim: epoch and node, no process identity yet), then
  // it writes manager_node and manager_identity and a CAS claim -> bare
  // epoch (release) publishes them. The identity words describe
  // `manager_owner` only while it holds a bare epoch; a claim is never judged
  // by them (they are its predecessor's).
  alignas(kCacheLine) Word manager_owner;
  Word manager_beat;
  Word manager_lease_ms;
  Word manager_node;
  Word manager_identity[4];  // ProcessIdentity of the owner (see below)
  // How long a client waits for a busy lock before an operation fails with
  // GISMO_ERR_BUSY (set by the manager; 0: the built-in default).
  alignas(kCacheLine) Word lock_wait_ms;
  // Who claims a coherent region's lease (region/lease_claim.h): the claim
  // word (PackOwnerClaim) a newcomer is about to CAS into manager_owner, its
  // ProcessIdentity, and an XXH3-64 check of those five words. Each claimer
  // writes them just before its claim's CAS (whose release publishes them),
  // so a successor can judge a claim left standing by the process that made
  // it. Claimers that write at once may leave a mix no claim matches: that
  // claim is then judged by its node alone, as before these words were used
  // (they were zero bytes, so the format version is unchanged).
  Word claimer_claim;
  Word claimer_identity[4];
  Word claimer_check;
  // The published owner's check (region/lease_claim.h): XXH3-64 of its
  // epoch, manager_node and manager_identity, written with them before the
  // CAS that publishes its epoch. A claimer that was fenced (wrongly: on an
  // operator's word) and still runs may write those words after its
  // successor published its own; they then fail the successor's epoch's
  // check, and say nothing. 0: written by an older manager (trusted, as
  // before). Zero bytes before, like the claimer record.
  Word manager_identity_check;

  // --- eviction (see src/store/evict.h) ---
  // The CLOCK hand: the global record index (modulo max records) where the
  // next evictor's sweep starts. Any client advances it, without a lock, by
  // a fetch_add that claims a batch of records; the claimed records are then
  // examined under their shard locks, so the hand only spreads the sweep, it
  // guards nothing.
  alignas(kCacheLine) Word evict_hand;
  // How much a create that does not fit evicts at least, in percent of the
  // heap (set by the manager, --evict-percent; 0: the default, 20, as Plasma).
  Word evict_percent;

  // --- the non-coherent mode (format 7; zero and unused in a coherent region) ---
  OwnerSleepLine owner_sleep;
  // The owner election: one line per candidate manager (by node).
  CandidateLine candidates[kMaxCandidates];
  // The Txn slots of the owner's helper threads (format 12).
  OwnerHelpersLine owner_helpers;
};
static_assert(sizeof(Superblock) <= 4096);
static_assert(offsetof(Superblock, request_ring_capacity) == 224);
static_assert(offsetof(Superblock, owner_sleep) == 704);
static_assert(offsetof(Superblock, candidates) == 768);
static_assert(offsetof(Superblock, owner_helpers) == 768 + kMaxCandidates * kCacheLine);
static_assert(sizeof(Superblock) == 768 + (kMaxCandidates + 1) * kCacheLine);
static_assert(offsetof(Superblock, state) % kCacheLine == 0);
static_assert(offsetof(Superblock, manager_owner) % kCacheLine == 0);
// The format is little-endian and these offsets are part of it.
static_assert(std::endian::native == std::endian::little, "the region format is little-endian");
static_assert(offsetof(Superblock, magic) == 0);
static_assert(offsetof(Superblock, format_version) == 8);
static_assert(offsetof(Superblock, superblock_size) == 12);
static_assert(offsetof(Superblock, region_size) == 16);
static_assert(offsetof(Superblock, format_time_ns) == 24);
static_assert(offsetof(Superblock, uuid) == 32);
static_assert(offsetof(Superblock, coherence_mode) == 48);
static_assert(offsetof(Superblock, page_size) == 52);
static_assert(offsetof(Superblock, max_clients) == 56);
static_assert(offsetof(Superblock, log_capacity) == 60);
static_assert(offsetof(Superblock, held_capacity) == 64);
static_assert(offsetof(Superblock, num_shards) == 68);
static_assert(offsetof(Superblock, slots_per_shard) == 72);
static_assert(offsetof(Superblock, records_per_shard) == 76);
static_assert(offsetof(Superblock, max_objects) == 80);
static_assert(offsetof(Superblock, client_table_offset) == 88);
static_assert(offsetof(Superblock, client_slot_size) == 96);
static_assert(offsetof(Superblock, index_offset) == 104);
static_assert(offsetof(Superblock, shard_size) == 112);
static_assert(offsetof(Superblock, alloc_offset) == 120);
static_assert(offsetof(Superblock, class_table_offset) == 128);
static_assert(offsetof(Superblock, page_bitmap_offset) == 136);
static_assert(offsetof(Superblock, page_desc_offset) == 144);
static_assert(offsetof(Superblock, heap_offset) == 152);
static_assert(offsetof(Superblock, heap_size) == 160);
static_assert(offsetof(Superblock, num_pages) == 168);
static_assert(offsetof(Superblock, event_ring_offset) == 176);
static_assert(offsetof(Superblock, event_ring_capacity) == 184);
static_assert(offsetof(Superblock, names_offset) == 192);
static_assert(offsetof(Superblock, names_capacity) == 200);
static_assert(offsetof(Superblock, name_slots) == 204);
static_assert(offsetof(Superblock, features) == 208);
static_assert(offsetof(Superblock, free_run_offset) == 216);
static_assert(offsetof(Superblock, checksum) == 240);
static_assert(offsetof(Superblock, state) == 256);
static_assert(offsetof(Superblock, manager_epoch) == 264);
static_assert(offsetof(Superblock, manager_start_time_ns) == 272);
static_assert(offsetof(Superblock, manager_heartbeat_ns) == 280);
static_assert(offsetof(Superblock, next_client_id) == 288);
static_assert(offsetof(Superblock, waiters) == 320);
static_assert(offsetof(Superblock, subscribers) == 384);
static_assert(offsetof(Superblock, kick_pending) == 448);
static_assert(offsetof(Superblock, manager_owner) == 512);
static_assert(offsetof(Superblock, manager_beat) == 520);
static_assert(offsetof(Superblock, manager_lease_ms) == 528);
static_assert(offsetof(Superblock, manager_node) == 536);
static_assert(offsetof(Superblock, manager_identity) == 544);
static_assert(offsetof(Superblock, lock_wait_ms) == 576);
static_assert(offsetof(Superblock, claimer_claim) == 584);
static_assert(offsetof(Superblock, claimer_identity) == 592);
static_assert(offsetof(Superblock, claimer_check) == 624);
static_assert(offsetof(Superblock, manager_identity_check) == 632);
static_assert(offsetof(Superblock, evict_hand) == 640);
static_assert(offsetof(Superblock, evict_percent) == 648);

// ---------------------------------------------------------------------------
// Client table: max_clients slots of client_slot_size bytes.
//
// A slot's life: kFree -> kActive (the manager admits a client) ->
// kSuspected (its lease expired, or its connection closed and it did not
// re-attach in time: it may still run, so nothing it owns is touched) ->
// kRecovering (it is *fenced*: proven unable to run again; the manager undoes
// and releases what it held) -> kFree. A client whose slot is not kActive
// with its own session changes nothing more: it checks after taking every
// lock (see Txn::TryLock).
enum class SlotState : uint64_t { kFree = 0, kActive = 1, kRecovering = 2, kSuspected = 3 };
// The slot's state word: state (8 bits) | session << 8.
inline constexpr uint64_t PackSlotState(SlotState s, uint64_t session) {
  return static_cast<uint64_t>(s) | session << 8;
}
inline constexpr SlotState SlotStateOf(uint64_t word) {
  return static_cast<SlotState>(word & 0xff);
}
inline constexpr uint64_t SlotSessionOf(uint64_t word) { return word >> 8; }
// ClientSlotHeader::notify_token of a subscriber of `session`; valid only
// while the slot's state word carries the same session.
inline constexpr uint64_t NotifyToken(uint64_t session) { return session << 1 | 1; }
inline constexpr bool NotifyTokenValid(uint64_t token, uint64_t slot_state) {
  return (token & 1) != 0 && token >> 1 == SlotSessionOf(slot_state) &&
         SlotStateOf(slot_state) == SlotState::kActive;
}

// ClientSlotHeader::notify_inet: IPv4 address << 32 | UDP port << 16 | 1,
// address and port in host byte order. 0: none.
inline constexpr uint64_t NotifyInetWord(uint32_t ipv4, uint16_t port) {
  return uint64_t{ipv4} << 32 | uint64_t{port} << 16 | 1;
}
// False for 0 and for words no subscriber writes (port 0, bits 1..15 set).
inline constexpr bool NotifyInetValid(uint64_t word) {
  return (word & 0xffff) == 1 && ((word >> 16) & 0xffff) != 0;
}
inline constexpr uint32_t NotifyInetAddress(uint64_t word) {
  return static_cast<uint32_t>(word >> 32);
}
inline constexpr uint16_t NotifyInetPort(uint64_t word) {
  return static_cast<uint16_t>(word >> 16);
}
static_assert(NotifyInetPort(NotifyInetWord(0x7f000001, 4242)) == 4242);
static_assert(NotifyInetValid(NotifyInetWord(0x0a4d0902, 1)) && !NotifyInetValid(0));

// Why a client was fenced (ClientSlotHeader::fenced_by).
enum class FenceReason : uint64_t {
  kNone = 0,
  kProcessGone = 1,  // its node's kernel confirmed the process is gone (pidfd)
  kNodeAgent = 2,    // its node's agent killed it and confirmed (pidfd)
  kNodeFenced = 3,   // its whole node was fenced by the fence command
  kOperator = 4,     // an operator said so (gismo fence)
  kDeparted = 5,     // it said goodbye: nothing of it runs in the region
};

// The undo log (format 11): an entry is written, carrying the stamp of the
// slot's `log_epoch` (LogStamp), then the target changed; commit moves
// log_epoch on before any lock is released, which makes every entry stale at
// once. The Txn's entries are the log's prefix whose stamps match the epoch
// (LoggedEntries in txn.h): no count is kept, so a logged write needs one
// persist barrier (the entry) rather than two (the entry, then a count).
// Recovery of a dead client undoes its entries newest first while its locks
// are still held, so the words it guarded return to their values before the
// operation.
//
// Stamps are 10 bits, so epochs alias every 1023; the log is zeroed (and
// persisted) whenever the epoch reaches a multiple of kLogZeroEvery, so every
// nonzero entry was written in the last kLogZeroEvery epochs, fewer than an
// alias apart: a stale entry never carries the current stamp. A stamp is
// never 0 (the zeroed entry's).
enum class LogKind : uint64_t {
  kWord = 1,       // restore the 64-bit word at offset to `value`
  kBitsSet = 2,    // bits [value>>32, +value&0xffffffff) of bitmap at offset
                   // were 0 and are being set: undo clears them
  kBitsClear = 3,  // the bits were 1 and are being cleared: undo sets them
  // A seqlock version word (a non-coherent region's ObjectRecord::ref_count)
  // that was `value`: it only grows, even across an undo, or a reader that
  // saw a version before the write could accept words read during the undo.
  // Undo of the write that opened it (`value` even) sets it to the next even
  // value above both `value` and its current value; of the write that closed
  // it (`value` odd), to the next odd value above both, so it stays odd while
  // the words between the two are restored (newest first).
  kVersion = 4,
};
// The largest value a version word takes: a write that would go past it
// fails (the word is corrupt; 2^63 writes never reach it), so UndoneVersion,
// which adds at most 2 to a value at most this, never wraps.
inline constexpr uint64_t kVersionLimit = 1ull << 63;
// Whether a version word holding `old` may take `next`: above it, and not
// past kVersionLimit.
inline constexpr bool VersionMayFollow(uint64_t old, uint64_t next) {
  return next > old && next <= kVersionLimit;
}
// What an undo of a kVersion entry leaves in a word that holds `current`.
inline constexpr uint64_t UndoneVersion(uint64_t logged, uint64_t current) {
  const uint64_t top = logged > current ? logged : current;
  const uint64_t next = top + 1;
  return (next & 1) == (logged & 1) ? next : next + 1;
}
static_assert(UndoneVersion(10, 11) == 12 && UndoneVersion(10, 13) == 14);
static_assert(UndoneVersion(11, 12) == 13 && UndoneVersion(11, 13) == 15);
inline constexpr int kLogKindShift = 56;
inline constexpr int kLogStampShift = 46;
inline constexpr uint64_t kLogOffsetMask = (1ull << kLogStampShift) - 1;
inline constexpr uint64_t kLogStampMask = (1ull << (kLogKindShift - kLogStampShift)) - 1;
inline constexpr uint64_t kLogStamps = kLogStampMask;  // 1 .. kLogStamps
inline constexpr uint64_t kLogZeroEvery = 512;
static_assert(kLogZeroEvery < kLogStamps);
// A logged word is metadata, below the heap; the largest heap alone is
// 2^45 bytes and the format refuses a heap offset past the mask.
static_assert(kMaxPages * kPageSize <= kLogOffsetMask);
// LogEntry::target: kind << 56 | stamp << 46 | region offset.
inline constexpr uint64_t PackLogTarget(LogKind kind, uint64_t offset) {
  return static_cast<uint64_t>(kind) << kLogKindShift | (offset & kLogOffsetMask);
}
inline constexpr uint64_t LogStamp(uint64_t epoch) { return epoch % kLogStamps + 1; }
inline constexpr uint64_t StampLogTarget(uint64_t target, uint64_t stamp) {
  return (target & ~(kLogStampMask << kLogStampShift)) | (stamp & kLogStampMask) << kLogStampShift;
}
inline constexpr uint64_t LogTargetStamp(uint64_t target) {
  return target >> kLogStampShift & kLogStampMask;
}
static_assert(LogStamp(0) == 1 && LogStamp(kLogStamps - 1) == kLogStamps &&
              LogStamp(kLogStamps) == 1);
static_assert(LogTargetStamp(StampLogTarget(PackLogTarget(LogKind::kVersion, 4096), 1023)) == 1023);
inline constexpr LogKind LogTargetKind(uint64_t target) {
  return static_cast<LogKind>(target >> kLogKindShift);
}
inline constexpr uint64_t LogTargetOffset(uint64_t target) { return target & kLogOffsetMask; }
// LogEntry::value of a bit-range entry: first << 32 | count.
inline constexpr uint64_t PackBitRange(uint64_t first, uint64_t count) {
  return first << 32 | (count & 0xffffffff);
}
inline constexpr uint64_t BitRangeFirst(uint64_t value) { return value >> 32; }
inline constexpr uint64_t BitRangeCount(uint64_t value) { return value & 0xffffffff; }

struct LogEntry {
  Word target;  // kind << 56 | stamp << 46 | region offset (PackLogTarget, StampLogTarget)
  Word value;
};
static_assert(sizeof(LogEntry) == 16);

// Held-reference table entry. key = record global index + 1 (0: empty) |
// flags << 32. count = references this client holds on that object.
inline constexpr uint64_t kHeldUnsealedCreator = 1ull << 32;  // abort on death
// Owned objects (GISMO_CREATE_OWNED). The owner's table lists every object it
// created owned, from its create on, with kHeldOwned set; such an entry may
// have count 0 (owned, no reference held). Invariants:
//  1. A sealed record whose info has kObjectFlagOwned is listed, with
//     kHeldOwned, in the table of its creator slot while that slot's session
//     lasts; recovery of the slot (a clean departure or a fenced death)
//     deletes it, in the same Txn that clears the entry, so a sweep cut
//     anywhere is resumed by the next recovery and deletes nothing twice.
//  2. An entry with kHeldOwned names the owner's object only while its record
//     is sealed, has kObjectFlagOwned and names this slot as creator: another
//     client's delete cannot write the owner's table, so the entry may
//     outlive the object (and its record be reused). Every reader of the bit
//     checks the record first; a stale entry is dropped when met.
//  3. A table is zeroed when its slot is assigned, so a later session in the
//     same slot never sees its predecessor's entries; a re-attach keeps the
//     session, and so its table.
inline constexpr uint64_t kHeldOwned = 1ull << 33;
struct HeldEntry {
  Word key;
  Word count;
};
static_assert(sizeof(HeldEntry) == 16);

inline constexpr uint32_t kMaxHeldLocks = 8;
// held_locks[0] may instead hold kHeldLocksWorld (never a lock offset: those
// are multiples of 8 past the superblock): the slot is taking, or holds,
// every lock of the region (a stop-the-world check, Txn::LockWorld). Written
// before the first CAS and cleared after the last release; recovery then
// releases every lock word that carries the slot's tag.
inline constexpr uint64_t kHeldLocksWorld = 1;

// A non-coherent region's clients take no region lock: there a client
// slot's held_locks line is its held summary instead (nc_references.h), a
// bit per bucket of records, bit HeldSummaryBit(record) set while the slot's
// held table has an entry with references on some record of that bucket.
// Written by the slot's client alone (a clear bit is a promise, a set bit
// only a hint), then by the owner when it recovers the slot; read by the
// owner before it looks into the table, so a delete or a sweep reads one
// line per client instead of the whole table. The slot 0 (the owner's)
// keeps its locks there, as in a coherent region.
inline constexpr uint32_t kHeldSummaryBits = kMaxHeldLocks * 64;
inline constexpr uint32_t HeldSummaryBit(uint32_t record) {
  // Fibonacci hashing: the top 9 bits of the product, so that records of
  // different shards with the same local index fall in different buckets.
  return static_cast<uint32_t>((uint64_t{record} * 0x9E3779B97F4A7C15ull) >> 55);
}
static_assert(kHeldSummaryBits == 512 && HeldSummaryBit(~0u) < kHeldSummaryBits);

// Fixed header of a client slot; followed in the slot by
// Word current_slab[kNumClasses], LogEntry log[log_capacity],
// HeldEntry held[held_capacity].
struct alignas(kCacheLine) ClientSlotHeader {
  // Written by the manager when it assigns or frees the slot.
  Word state;  // SlotState | session << 8
  Word client_id;
  Word node_id;
  Word pid;  // as the client sees itself; see `identity`
  Word connect_time_ns;
  Word heartbeat_ns;
  Word fenced_by;  // FenceReason, set when it leaves kSuspected
  Word reserved0;
  // Written by the owning client (and by recovery once it is dead).
  // The undo log's epoch (LogStamp, above): moved on by every commit,
  // rollback or undo of a Txn that logged anything.
  alignas(kCacheLine) Word log_epoch;
  Word op;          // the operation in progress (OpKind), for diagnostics
  Word held_count;  // live entries in the held table
  // 0, or NotifyToken(session) while the client subscribes and takes
  // same-node wake-ups at NotifySocketName (region.h): a sealer or deleter
  // on the same node (node_id) sends it a datagram itself, rather than
  // through the manager. Read by other clients only as a hint: a stale or
  // foreign value costs one failed datagram (release store; relaxed loads).
  Word notify_token;
  // 0, or NotifyInetWord(ipv4, port): a subscriber connected over TCP also
  // takes wake-ups as UDP datagrams at this address, from sealers and
  // deleters of any node. Written before notify_token (which guards it:
  // read only after a valid token, acquire); a hint like the token.
  Word notify_inet;
  // 1 while the subscriber is about to sleep on its socket (it found its
  // ring cursor at head after setting it), else 0. A sealer or deleter sends
  // a direct wake-up only if it swaps 1 to 0, so a subscriber that is busy
  // costs it one load, and one wake-up covers every event until it looks
  // again. Protocol (fences, seq_cst): the subscriber stores 1, fences,
  // reads the ring; a producer publishes, fences, reads this word.
  Word notify_armed;
  // 0, or this slot's session once its client has left without a manager
  // to say goodbye to (Disconnect while its connection is down, or when no
  // manager confirmed the goodbye in time): the client promises that it
  // writes nothing more to the region, so a manager recovers the slot as it
  // would after a goodbye (FenceReason::kDeparted) instead of suspecting a
  // process that is alive. Written once, last, by the owning client
  // (release; persisted on durable regions); a manager reads it (acquire)
  // and trusts it only if it names the member's session, so a late write
  // into a slot already given to another session changes nothing.
  Word departed;
  Word reserved1;
  // Offsets of locks being acquired or held, written before the acquiring
  // CAS; in a non-coherent region's client slots, the held summary.
  alignas(kCacheLine) Word held_locks[kMaxHeldLocks];
  // Written by the manager at admission: the client's ProcessIdentity, so
  // that a fencer on the same kernel (the manager, a node agent, even a
  // manager started later) can prove the process gone or kill it.
  alignas(kCacheLine) Word identity[4];
  // Slot 0 (the manager's) only: 16 random bytes written by each manager at
  // its start, read by a client to prove it maps the region
  // (protocol::RegionProof); never sent over a socket. Zero elsewhere.
  Word admission_secret[2];
  Word reserved2[2];
};
static_assert(sizeof(ClientSlotHeader) == 256);
static_assert(offsetof(ClientSlotHeader, notify_token) == 88);
static_assert(offsetof(ClientSlotHeader, notify_inet) == 96);
static_assert(offsetof(ClientSlotHeader, notify_armed) == 104);
static_assert(offsetof(ClientSlotHeader, departed) == 112);
static_assert(alignof(ClientSlotHeader) == kCacheLine);

// ---------------------------------------------------------------------------
// Object index: num_shards shards, each an independent linear-probing hash
// table guarded by its lock. A hash slot is 0 (empty) or
// (hash_low32 << 32 | (record local index + 1)); records do not move while an
// object lives, so a record index is a stable handle.
struct alignas(kCacheLine) ShardHeader {
  Word lock;
  Word count;        // live records in this shard
  Word free_head;    // free record list, local index + 1 (0: empty)
  Word next_unused;  // records [next_unused, records_per_shard) never used
  // Registered waits for ids of this shard; written by the manager only
  // (atomic add/sub, no lock). A sealer reads it after a seq_cst fence and
  // tells the manager only if it is non-zero.
  Word waiters;
  // Objects of this shard evicted so far, and their bytes (block sizes);
  // written under the shard lock inside the evicting Txn, so they are exact.
  Word evictions;
  Word evicted_bytes;
  // Non-coherent regions (format 7): the shard's index seqlock, odd while
  // the owner changes the shard's hash slots, only growing; a reader that
  // found nothing re-reads it before it says so (region/nc_references.h).
  // 0 and unused in a coherent region.
  Word index_version;
};
static_assert(sizeof(ShardHeader) == 64);
static_assert(offsetof(ShardHeader, index_version) == 56);

enum class ObjectState : uint64_t {
  kFree = 0,
  kCreated = 1,  // unsealed; only the creator writes its data
  kSealed = 2,
  kDeleting = 3,  // deleted while held: freed at the last release
};
// A live record's state is the gismo_object_state_t of the same value.
static_assert(static_cast<uint64_t>(ObjectState::kCreated) == GISMO_STATE_UNSEALED);
static_assert(static_cast<uint64_t>(ObjectState::kSealed) == GISMO_STATE_SEALED);
static_assert(static_cast<uint64_t>(ObjectState::kDeleting) == GISMO_STATE_DELETING);

// One object. 64 bytes, one cache line. Guarded by its shard's lock.
struct alignas(kCacheLine) ObjectRecord {
  Word id[3];  // 20 id bytes, 4 zero bytes
  // state (8 bits) | creator slot (16) << 8 | creator node (32) << 24 |
  // flags (8) << 56
  Word info;
  // Coherent region: the sum over clients of their held counts.
  // Non-coherent region: the record's seqlock version (odd while the owner
  // writes the record; only grows), region/nc_references.h.
  Word ref_count;
  Word heap_offset;  // data offset from heap start; next free record if kFree
  Word sizes;        // data_size (40 bits) | metadata_size << 40 (24 bits)
  Word create_time_ns;
};
static_assert(sizeof(ObjectRecord) == 64);

// Object flags: the top byte of info, chosen at create and kept for the
// object's life (a v2 region written before flags existed has them all 0).
// The public bits are the GISMO_CREATE_* flags of gismo.h; the others are
// the store's own and never shown to users.
inline constexpr uint32_t kObjectFlagOwned = GISMO_CREATE_OWNED;
inline constexpr uint32_t kObjectFlagEvictable = GISMO_CREATE_EVICTABLE;
inline constexpr uint32_t kObjectFlagsPublic = kObjectFlagOwned | kObjectFlagEvictable;
// The CLOCK reference bit of an evictable object (src/store/evict.h): set at
// create, by every successful get and by touch; cleared by a passing
// eviction sweep, which evicts the object only if it finds the bit clear.
// Written under the shard lock, in the Txn of the get that already writes
// the record's line (ref_count), so it costs no extra cache line.
inline constexpr uint32_t kObjectFlagReferenced = 0x04;
inline constexpr uint32_t kObjectFlagsKnown = kObjectFlagsPublic | kObjectFlagReferenced;
static_assert(kObjectFlagsKnown <= 0xff);
static_assert((kObjectFlagsPublic & kObjectFlagReferenced) == 0);

inline constexpr uint64_t PackInfo(ObjectState s, uint32_t slot, uint32_t node,
                                   uint32_t flags = 0) {
  return static_cast<uint64_t>(s) | (uint64_t{slot & 0xffff} << 8) |
         (uint64_t{node & 0xffffffff} << 24) | (uint64_t{flags & 0xff} << 56);
}
inline constexpr ObjectState InfoState(uint64_t info) {
  return static_cast<ObjectState>(info & 0xff);
}
inline constexpr uint32_t InfoSlot(uint64_t info) { return (info >> 8) & 0xffff; }
inline constexpr uint32_t InfoNode(uint64_t info) {
  return static_cast<uint32_t>((info >> 24) & 0xffffffff);
}
inline constexpr uint32_t InfoFlags(uint64_t info) { return static_cast<uint32_t>(info >> 56); }
// Whether a record's info makes it a live owned object of `slot` (kHeldOwned,
// invariant 2): sealed, created owned, by that slot.
inline constexpr bool InfoOwnedBy(uint64_t info, uint32_t slot) {
  return InfoState(info) == ObjectState::kSealed && (InfoFlags(info) & kObjectFlagOwned) != 0 &&
         InfoSlot(info) == slot;
}
inline constexpr uint64_t InfoWithFlags(uint64_t info, uint32_t flags) {
  return (info & ((1ull << 56) - 1)) | (uint64_t{flags & 0xff} << 56);
}
inline constexpr uint64_t PackSizes(uint64_t data, uint64_t meta) { return data | (meta << 40); }
inline constexpr uint64_t SizesData(uint64_t s) { return s & kMaxDataSize; }
inline constexpr uint64_t SizesMeta(uint64_t s) { return s >> 40; }

// ---------------------------------------------------------------------------
// Allocator. Heap pages of kPageSize. A page is free, the head of a run of
// pages holding one large object, or a slab of one size class.
struct alignas(kCacheLine) AllocatorHeader {
  // Guards the page bitmap, free_pages, run heads and the free-run summary.
  Word page_lock;
  Word free_pages;
  // Unused since format 5 (the free-run summary finds the lowest free run);
  // formatted 0, read by nothing. A word under page_lock for txn tests.
  Word hint;
  Word reserved[5];
};
static_assert(sizeof(AllocatorHeader) == 64);

// One (class, stripe): its lock guards the slabs of that class and stripe:
// their bitmaps, counts, owners and the partial list.
struct alignas(kCacheLine) ClassStripe {
  Word lock;
  Word partial_head;  // page index + 1 of the first unowned, non-full slab
  Word slab_count;
  Word reserved[5];
};
static_assert(sizeof(ClassStripe) == 64);

// kSlabTail (format 6): page 1.. of a slab of SlabPages(class) > 1 pages;
// its `used` is the slab's first page (the head, which holds the slab's
// descriptor: bitmap, count, links). Tails are written with the head when the
// slab is made (under its class stripe lock and page_lock) and cleared when
// it is released (under its class stripe lock, before page_lock frees its
// pages: nothing reads the tails of an empty slab); a free finds the head
// from the block's page.
enum class PageKind : uint64_t { kFree = 0, kSlab = 1, kRun = 2, kSlabTail = 3 };

// info = kind | class << 8 | stripe << 16 | (owner slot + 1) << 24
// For kRun heads `used` is the run length in pages (page_lock guards it).
struct alignas(kCacheLine) PageDesc {
  Word info;
  Word used;  // blocks in use (slab)
  Word prev;  // partial list links: page index + 1, 0 = none
  Word next;
  Word bitmap[kSlabBitmapWords];
};
static_assert(sizeof(PageDesc) == 64);

inline constexpr uint64_t PackPageInfo(PageKind k, uint32_t cls, uint32_t stripe,
                                       uint32_t owner_plus1) {
  return static_cast<uint64_t>(k) | (uint64_t{cls} << 8) | (uint64_t{stripe} << 16) |
         (uint64_t{owner_plus1} << 24);
}
inline constexpr PageKind PageInfoKind(uint64_t i) { return static_cast<PageKind>(i & 0xff); }
inline constexpr uint32_t PageInfoClass(uint64_t i) { return (i >> 8) & 0xff; }
inline constexpr uint32_t PageInfoStripe(uint64_t i) { return (i >> 16) & 0xff; }
inline constexpr uint32_t PageInfoOwner(uint64_t i) { return static_cast<uint32_t>(i >> 24); }

// The free-run summary (format 5): a binary tree over the page bitmap that
// finds the lowest run of n free pages in O(log pages) (src/region/free_runs.h).
//
// Shape: L = FreeRunLeaves(num_pages) leaves, a power of two; leaf w is
// bitmap word w (64 pages), computed from the word itself and never stored;
// leaves at or past the bitmap's end are "all in use". Internal node i in
// [1, L) (node 1 the root; children 2i and 2i + 1, a child >= L being leaf
// child - L) is FreeRunNode i of the array, whose entry 0 is unused. A node
// at depth d spans 64 * (L >> d) pages.
//
// Invariants:
//  1. Derived: every internal node holds, over the pages it spans, the
//     longest run of free pages, the free run its span starts with (prefix)
//     and the one it ends with (suffix), as computed from the bitmap by
//     CombineFreeRuns. It is never logged.
//  2. Written only by a holder of AllocatorHeader.page_lock, right after that
//     holder changes bitmap bits (relaxed stores: the lock orders them), and
//     by a Txn undo of page-bitmap bits (which still holds the lock). So
//     while page_lock is free, invariant 1 holds.
//  3. A holder that dies may leave it torn: whoever recovers a dead holder of
//     page_lock rebuilds it from the bitmap (UndoDeadClient) before the lock
//     is released. On a durable region the nodes a Txn wrote are persisted
//     before its commit record, so invariant 1 holds on the medium whenever
//     page_lock is free there.
//  4. Read from the region, so never trusted: a run it points to is checked
//     against the bitmap before use, and a disagreement rebuilds it (under
//     page_lock); gismo-fsck reports any node that differs from a rebuild.
// Lock-free readers (HeapStats) read the root relaxed: a racy snapshot.
struct FreeRunNode {
  Word longest;  // longest free run (pages)
  Word ends;     // PackFreeRunEnds(prefix, suffix)
};
static_assert(sizeof(FreeRunNode) == 16);
static_assert(alignof(FreeRunNode) == 8);
inline constexpr uint64_t kPagesPerFreeRunLeaf = 64;  // one bitmap word
// Number of leaves for a heap of `pages` pages (a power of two, >= 2 so the
// root is always an internal node).
inline constexpr uint64_t FreeRunLeaves(uint64_t pages) {
  const uint64_t words = (pages + kPagesPerFreeRunLeaf - 1) / kPagesPerFreeRunLeaf;
  return words < 2 ? 2 : std::bit_ceil(words);
}
// The root of the largest heap spans kMaxPages pages: every prefix and
// suffix fits 32 bits.
static_assert(FreeRunLeaves(kMaxPages) * kPagesPerFreeRunLeaf == kMaxPages);
static_assert(kMaxPages < (1ull << 32), "a node's prefix and suffix fit 32 bits");
inline constexpr uint64_t PackFreeRunEnds(uint64_t prefix, uint64_t suffix) {
  return (prefix & 0xffffffff) | suffix << 32;
}
inline constexpr uint64_t FreeRunPrefix(uint64_t ends) { return ends & 0xffffffff; }
inline constexpr uint64_t FreeRunSuffix(uint64_t ends) { return ends >> 32; }

// ---------------------------------------------------------------------------
// Event ring: every seal and delete appends one entry, inside the operation's
// transaction and while it holds the object's shard lock, so the events of
// one object are in the ring in the order of its operations. There is no
// ring lock on this path: a producer claims the entry of seq `head` by a
// compare-and-swap of the entry's state word (which names it), then raises
// `head` by a compare-and-swap that any producer may do for it. Subscribers
// on any node read it directly; the manager only wakes them. Old entries are
// overwritten, and a reader that is lapped sees it (the entry's seq changed)
// and reports an overflow. The protocol and its invariants are in
// src/store/event_ring.h; the word's encoding is below (EventWord).
struct alignas(kCacheLine) EventRingHeader {
  // Not taken by producers since format 4; kept (and taken by LockWorld) so
  // that the global lock order and every lock offset are unchanged.
  Word lock;
  // Seq of the next event to claim; events are numbered from 1. Raised only
  // by a compare-and-swap from h to h + 1 after entry h was claimed, so
  // every entry below head has been claimed for its seq (not logged).
  Word head;
  Word reserved[6];
};
static_assert(sizeof(EventRingHeader) == 64);

enum class EventKind : uint64_t { kSealed = 1, kDeleted = 2 };

// Entry of seq s is event(s) = entries[s % capacity]. Its fields are written
// by the producer that claimed it, while `seq` (the state word, EventWord)
// says "claimed" or "pending"; readers copy them only while `seq` says
// "published" and re-check it afterwards.
struct alignas(kCacheLine) EventEntry {
  Word seq;        // state word: EventWord
  Word kind_node;  // EventKind | node << 8 | reason << 40
  Word id[3];
  Word data_size;
  Word metadata_size;
  Word time_ns;
};
// One line: a write-back of its state word carries the fields stored
// before it (store::AppendEvent persists no fields apart).
static_assert(sizeof(EventEntry) == kCacheLine && alignof(EventEntry) == kCacheLine);

// ---------------------------------------------------------------------------
// Name table: a flat namespace of names bound to object ids, so that a
// standby on another host finds the newest checkpoint by name. It has the
// index's shape: one lock, `name_slots` linear-probing hash slots (0 empty,
// else name_hash_low32 << 32 | (entry index + 1)), and `names_capacity`
// entries with a free list.
//
// Invariants (all words guarded by `lock`, written only through a Txn, so
// a writer that dies mid-change is rolled back by recovery):
//  1. A live entry is referenced by exactly one hash slot, at most
//     kMaxProbe - 1 slots past its home (XXH3 of the name bytes); slots are
//     removed by backward shift, so every probe ends within kMaxProbe steps.
//  2. `count` is the number of live entries; free entries are on the list
//     from `free_head` (linked through `next_free`) or at or above
//     `next_unused`: live + listed + never used == names_capacity.
//  3. A live entry's `info` holds its name length in [1, kMaxNameLength] and
//     its name bytes are the first `length` bytes of `name` (the rest zero).
//  4. A name is bound to an id that was sealed when it was bound; deleting
//     the object does not unbind it (a name is not a reference), so a
//     lookup may return the id of an object that is gone.
//  5. `version` (table) rises by one with every committed change; an
//     entry's `version` rises by one with every (re)bind of that name. A
//     compare-and-swap of a name is one Txn: a reader under the lock sees
//     the old binding or the new one, never neither.
// Lock order: shard -> event ring -> name table -> class stripe -> page.
struct alignas(kCacheLine) NameTableHeader {
  Word lock;
  Word count;        // live entries
  Word free_head;    // free entry list, entry index + 1 (0: empty)
  Word next_unused;  // entries [next_unused, names_capacity) never used
  Word version;      // +1 at every committed bind or unbind
  Word reserved[3];
};
static_assert(sizeof(NameTableHeader) == 64);

inline constexpr uint32_t kMaxNameLength = 192;
inline constexpr uint32_t kNameWords = kMaxNameLength / 8;

struct alignas(kCacheLine) NameEntry {
  Word id[3];         // the bound object's 20 id bytes, 4 zero bytes
  Word info;          // name length (8 bits) | flags (0) << 8
  Word version;       // binds of this name since it was last unbound
  Word bind_time_ns;  // CLOCK_REALTIME of the last bind
  Word next_free;     // free list link (entry index + 1) while free
  Word reserved;
  Word name[kNameWords];  // the name's bytes, zero padded
};
static_assert(sizeof(NameEntry) == 256);
static_assert(alignof(NameEntry) == kCacheLine);

inline constexpr uint32_t NameInfoLength(uint64_t info) { return info & 0xff; }
inline constexpr uint64_t PackNameInfo(uint32_t length) { return length & 0xff; }

// What the client is doing, recorded in its slot for diagnostics and tests.
enum class OpKind : uint64_t {
  kNone = 0,
  kCreate,
  kSeal,
  kAbort,
  kGet,
  kRelease,
  kDelete,
  kRecover,
  kCheck,  // an online check holding every lock (gismo-fsck)
  kEvict,  // an eviction sweep: one evicted object (or cleared bits) per Txn
  kTouch,
  kBindName,
  kUnbindName,
};

// ---------------------------------------------------------------------------
// Encodings of shared words, written once here; every reader and writer
// (store, client, manager, fsck) uses these.

// Which shard an id's 64-bit hash belongs to (num_shards is a power of two).
inline constexpr uint32_t ShardOfHash(uint64_t hash, uint32_t num_shards) {
  return static_cast<uint32_t>(hash >> 40) & (num_shards - 1);
}
// A hash slot: 0 (empty) or hash_low32 << 32 | (record local index + 1).
inline constexpr uint64_t PackHashSlot(uint64_t hash, uint32_t local) {
  return (hash & 0xffffffffull) << 32 | (uint64_t{local} + 1);
}
inline constexpr uint32_t HashSlotHash(uint64_t slot) { return static_cast<uint32_t>(slot >> 32); }
inline constexpr uint32_t HashSlotLocal(uint64_t slot) {
  return static_cast<uint32_t>(slot & 0xffffffff) - 1;
}
// No object sits farther than this from its home hash slot: an insert that
// would is refused, so every probe is bounded whatever ids users choose.
inline constexpr uint32_t kMaxProbe = 64;

// How a probe of a table of hash slots (the index's or the name table's)
// ended: at the slot the visitor took, at an empty slot (where an insert
// would go), or after kMaxProbe slots with neither.
enum class ProbeEnd : uint8_t { kTaken, kEmpty, kExhausted };
struct ProbeStop {
  ProbeEnd end;
  uint32_t slot;  // the slot it ended at; ~0u if kExhausted
};
// The probe sequence of hash `h32` in a table of `mask + 1` slots, written
// once for every reader: from its home slot on, one slot after another, to
// the first empty one, at most kMaxProbe slots. `load(i)` reads slot i (a
// relaxed load under the table's lock, or an invalidate and a load in a
// non-coherent region); `visit(local)` is called with the entry index of
// each slot of hash `h32` whose index is below `limit` (one at or past it is
// corrupt and never followed; fsck reports it) and ends the probe by
// returning true.
template <typename Load, typename Visit>
inline ProbeStop ProbeHashSlots(uint32_t h32, uint32_t mask, uint32_t limit, Load&& load,
                                Visit&& visit) {
  for (uint32_t n = 0, i = h32 & mask; n < kMaxProbe; ++n, i = (i + 1) & mask) {
    const uint64_t s = load(i);
    if (s == 0) return {ProbeEnd::kEmpty, i};
    if (HashSlotHash(s) != h32 || HashSlotLocal(s) >= limit) continue;
    if (visit(HashSlotLocal(s))) return {ProbeEnd::kTaken, i};
  }
  return {ProbeEnd::kExhausted, ~0u};
}

// A held-reference key: record global index + 1 (0: empty) | flags.
inline constexpr uint64_t PackHeldKey(uint32_t global, uint64_t flags) {
  return (uint64_t{global} + 1) | flags;
}
inline constexpr uint32_t HeldKeyGlobal(uint64_t key) {
  return static_cast<uint32_t>(key & 0xffffffff) - 1;
}
// The key without its flags (equal for every key of one record).
inline constexpr uint64_t HeldKeyRecord(uint64_t key) { return key & 0xffffffff; }
inline constexpr uint32_t HeldHome(uint64_t key, uint32_t capacity) {
  return static_cast<uint32_t>(((key & 0xffffffff) * 0x9E3779B97F4A7C15ull) >> 32) & (capacity - 1);
}

// An event entry's kind_node word: EventKind | node << 8 | reason << 40.
// The reason (EventReason) says why a delete happened; 0 for a seal and an
// ordinary delete (so entries written before reasons existed read as such).
enum class EventReason : uint64_t { kNone = 0, kEvicted = 1 };
inline constexpr uint64_t PackEventKindNode(EventKind kind, uint32_t node,
                                            EventReason reason = EventReason::kNone) {
  return static_cast<uint64_t>(kind) | uint64_t{node} << 8 |
         (static_cast<uint64_t>(reason) & 0xff) << 40;
}
inline constexpr EventReason EventReasonOf(uint64_t kind_node) {
  return static_cast<EventReason>((kind_node >> 40) & 0xff);
}
inline constexpr EventKind EventKindOf(uint64_t kind_node) {
  return static_cast<EventKind>(kind_node & 0xff);
}
inline constexpr uint32_t EventNodeOf(uint64_t kind_node) {
  return static_cast<uint32_t>(kind_node >> 8);
}

// An object id (GISMO_ID_SIZE = 20 bytes) in three words, the last 4 bytes 0.
struct IdWords {
  uint64_t w[3];
};

// An event entry's state word. Bits 63..62 are the state:
//   published (0) | seq (62 bits)  the event, readable
//   skipped   (1) | seq (62 bits)  no event at this seq (its Txn rolled back)
//   claimed   (2) | owner << 46 | seq % 2^46   being written; not committed
//   pending   (3) | owner << 46 | seq % 2^46   written; committed iff its
//                                              Txn committed (logged write)
// `owner` is the client slot of the producer (max_clients <= 65536). The
// initial word 0 is "published, seq 0": free for the first lap. Published
// and skipped are final: the entry is free for seq + capacity.
enum class EventState : uint64_t { kPublished = 0, kSkipped = 1, kClaimed = 2, kPending = 3 };
inline constexpr uint64_t kEventSeqMask = (1ull << 62) - 1;
inline constexpr uint64_t kEventShortSeqMask = (1ull << 46) - 1;
inline constexpr EventState EventStateOf(uint64_t w) { return static_cast<EventState>(w >> 62); }
inline constexpr bool EventFinal(uint64_t w) { return (w >> 63) == 0; }
// Final words only.
inline constexpr uint64_t EventFinalSeq(uint64_t w) { return w & kEventSeqMask; }
// Claimed or pending words only.
inline constexpr uint32_t EventOwnerOf(uint64_t w) {
  return static_cast<uint32_t>((w >> 46) & 0xffff);
}
inline constexpr uint64_t EventFinalWord(EventState st, uint64_t seq) {
  return (static_cast<uint64_t>(st) << 62) | (seq & kEventSeqMask);
}
inline constexpr uint64_t EventOwnedWord(EventState st, uint32_t owner, uint64_t seq) {
  return (static_cast<uint64_t>(st) << 62) | (uint64_t{owner & 0xffff} << 46) |
         (seq & kEventShortSeqMask);
}
// Whether word `w` (any state) is the state of seq `seq`'s event.
inline constexpr bool EventWordIsFor(uint64_t w, uint64_t seq) {
  return EventFinal(w) ? EventFinalSeq(w) == seq : ((w ^ seq) & kEventShortSeqMask) == 0;
}
// The full seq of a claimed or pending word, given any head read after it
// was claimed (a claimed seq is at most head and above head - 2^46).
inline constexpr uint64_t EventOwnedSeq(uint64_t w, uint64_t head) {
  return head - ((head - w) & kEventShortSeqMask);
}
static_assert(EventOwnedSeq(EventOwnedWord(EventState::kClaimed, 7, 5), 9) == 5);
static_assert(EventWordIsFor(EventOwnedWord(EventState::kPending, 65535, 1ull << 50), 1ull << 50));

// Lock words hold 0 when free, else the owner's tag.
inline constexpr uint64_t LockTag(uint32_t slot, uint64_t session) {
  return (session << 32) | (uint64_t{slot} + 1);
}
inline constexpr uint32_t LockTagSlot(uint64_t tag) {
  return static_cast<uint32_t>(tag & 0xffffffff) - 1;
}

}  // namespace gismo::region

#endif  // GISMO_REGION_LAYOUT_H_
