// The shared region's on-media layout (format version 1).
//
// The region is a file format: every participant maps the same bytes, at
// different addresses, so nothing in it is a pointer: every reference is a
// byte offset from the start of the region, or an index. doc/region-format.md
// documents this header; keep them in step and bump kFormatVersion on any
// incompatible change.
//
// Layout (all areas 4 KiB aligned, the heap 2 MiB aligned):
//   [superblock 4 KiB][client table][object index][allocator][heap]
//
// Concurrency contract: every word that more than one process mutates is a
// 64-bit std::atomic, written only by a holder of the lock that guards it,
// through a Txn (src/store/txn.h) that undo-logs the old value first. The
// few exceptions are documented where declared.
#ifndef GISMO_REGION_LAYOUT_H_
#define GISMO_REGION_LAYOUT_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace gismo::region {

using Word = std::atomic<uint64_t>;
static_assert(Word::is_always_lock_free, "shared words must be lock-free");
static_assert(sizeof(Word) == 8 && alignof(Word) == 8);

inline constexpr uint64_t kMagic = 0x4e4f474552534d47ull;  // "GMSREGON"
inline constexpr uint32_t kFormatVersion = 1;
inline constexpr uint64_t kCacheLine = 64;
inline constexpr uint64_t kAreaAlign = 4096;
inline constexpr uint64_t kHeapAlign = 2ull << 20;
inline constexpr uint64_t kPageSize = 16 * 1024;  // heap page
inline constexpr uint64_t kMinRegionSize = 8ull << 20;

// Size classes for small objects (data + metadata, rounded). Every class is a
// multiple of 64 so every object starts on a cache line. A slab is one heap
// page of one class.
inline constexpr uint32_t kNumClasses = 24;
inline constexpr uint32_t kClassSizes[kNumClasses] = {
    64,   128,  192,  256,  320,  384,  448,  512,  640,  768,  896,  1024,
    1280, 1536, 1792, 2048, 2560, 3072, 3584, 4096, 5120, 6144, 7168, 8192};
inline constexpr uint64_t kMaxSmallSize = 8192;
inline constexpr uint32_t kMaxBlocksPerSlab = kPageSize / 64;         // 256
inline constexpr uint32_t kSlabBitmapWords = kMaxBlocksPerSlab / 64;  // 4
// Allocation stripes per class: a client allocates from stripe
// (slot % kStripes), so clients rarely share a class lock.
inline constexpr uint32_t kStripes = 8;

inline constexpr uint64_t kMaxDataSize = (1ull << 40) - 1;
inline constexpr uint64_t kMaxMetadataSize = (1ull << 24) - 1;

enum class CoherenceMode : uint32_t {
  kCoherent = 1,     // one host, or hardware-coherent CXL 3: clients mutate
  kNonCoherent = 2,  // CXL 2.0: one writer; reserved, not implemented yet
};

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
  uint64_t reserved[6];
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
};
static_assert(sizeof(Superblock) <= 4096);
static_assert(offsetof(Superblock, state) % kCacheLine == 0);

// ---------------------------------------------------------------------------
// Client table: max_clients slots of client_slot_size bytes.
enum class SlotState : uint64_t { kFree = 0, kActive = 1, kRecovering = 2 };

// The undo log: an entry is written, then `log_count` raised, then the target
// changed; commit sets log_count to 0 before any lock is released. Recovery
// of a dead client undoes its entries newest first while its locks are still
// held, so the words it guarded return to their values before the operation.
enum class LogKind : uint64_t {
  kWord = 1,       // restore the 64-bit word at offset to `value`
  kBitsSet = 2,    // bits [value>>32, +value&0xffffffff) of bitmap at offset
                   // were 0 and are being set: undo clears them
  kBitsClear = 3,  // the bits were 1 and are being cleared: undo sets them
};
inline constexpr int kLogKindShift = 56;
inline constexpr uint64_t kLogOffsetMask = (1ull << kLogKindShift) - 1;

struct LogEntry {
  Word target;  // kind << 56 | region offset
  Word value;
};
static_assert(sizeof(LogEntry) == 16);

// Held-reference table entry. key = record global index + 1 (0: empty) |
// flags << 32. count = references this client holds on that object.
inline constexpr uint64_t kHeldUnsealedCreator = 1ull << 32;  // abort on death
struct HeldEntry {
  Word key;
  Word count;
};
static_assert(sizeof(HeldEntry) == 16);

inline constexpr uint32_t kMaxHeldLocks = 8;

// Fixed header of a client slot; followed in the slot by
// Word current_slab[kNumClasses], LogEntry log[log_capacity],
// HeldEntry held[held_capacity].
struct alignas(kCacheLine) ClientSlotHeader {
  // Written by the manager when it assigns or frees the slot.
  Word state;  // SlotState | session << 8
  Word client_id;
  Word node_id;
  Word pid;  // informational only: never used across nodes
  Word connect_time_ns;
  Word heartbeat_ns;
  Word reserved0[2];
  // Written by the owning client (and by recovery once it is dead).
  alignas(kCacheLine) Word log_count;
  Word op;          // the operation in progress (OpKind), for diagnostics
  Word held_count;  // live entries in the held table
  Word reserved1[5];
  // Offsets of locks being acquired or held, written before the acquiring CAS.
  alignas(kCacheLine) Word held_locks[kMaxHeldLocks];
};
static_assert(sizeof(ClientSlotHeader) == 192);
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
  Word reserved[3];
};
static_assert(sizeof(ShardHeader) == 64);

enum class ObjectState : uint64_t {
  kFree = 0,
  kCreated = 1,  // unsealed; only the creator writes its data
  kSealed = 2,
  kDeleting = 3,  // deleted while held: freed at the last release
};

// One object. 64 bytes, one cache line. Guarded by its shard's lock.
struct alignas(kCacheLine) ObjectRecord {
  Word id[3];  // 20 id bytes, 4 zero bytes
  // state (8 bits) | creator slot (16) << 8 | creator node (32) << 24
  Word info;
  Word ref_count;    // sum over clients of their held counts
  Word heap_offset;  // data offset from heap start; next free record if kFree
  Word sizes;        // data_size (40 bits) | metadata_size << 40 (24 bits)
  Word create_time_ns;
};
static_assert(sizeof(ObjectRecord) == 64);

inline constexpr uint64_t PackInfo(ObjectState s, uint32_t slot, uint32_t node) {
  return static_cast<uint64_t>(s) | (uint64_t{slot & 0xffff} << 8) | (uint64_t{node} << 24);
}
inline constexpr ObjectState InfoState(uint64_t info) {
  return static_cast<ObjectState>(info & 0xff);
}
inline constexpr uint32_t InfoSlot(uint64_t info) { return (info >> 8) & 0xffff; }
inline constexpr uint32_t InfoNode(uint64_t info) { return static_cast<uint32_t>(info >> 24); }
inline constexpr uint64_t PackSizes(uint64_t data, uint64_t meta) { return data | (meta << 40); }
inline constexpr uint64_t SizesData(uint64_t s) { return s & kMaxDataSize; }
inline constexpr uint64_t SizesMeta(uint64_t s) { return s >> 40; }

// ---------------------------------------------------------------------------
// Allocator. Heap pages of kPageSize. A page is free, the head of a run of
// pages holding one large object, or a slab of one size class.
struct alignas(kCacheLine) AllocatorHeader {
  Word page_lock;  // guards the page bitmap, free_pages and run heads
  Word free_pages;
  Word hint;  // no page below it is free (first-fit starts here)
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

enum class PageKind : uint64_t { kFree = 0, kSlab = 1, kRun = 2 };

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

// ---------------------------------------------------------------------------
// Event ring: every seal and delete appends one entry, inside the operation's
// transaction and under the ring lock taken after the shard lock, so the
// ring's order is the order in which those operations happened (per object,
// and globally). Subscribers on any node read it directly; the manager only
// wakes them. The ring never blocks a producer: old entries are overwritten,
// and a reader that is lapped sees it (entry.seq changed) and reports an
// overflow.
struct alignas(kCacheLine) EventRingHeader {
  Word lock;
  Word head;  // seq of the next event; events are numbered from 1
  Word reserved[6];
};
static_assert(sizeof(EventRingHeader) == 64);

enum class EventKind : uint64_t { kSealed = 1, kDeleted = 2 };

// Written by the ring lock's holder: seq is set to 0 first and to the
// event's seq last (release), so a reader that sees the same non-zero seq
// before and after copying the fields has a consistent entry.
struct alignas(kCacheLine) EventEntry {
  Word seq;
  Word kind_node;  // EventKind | node << 8
  Word id[3];
  Word data_size;
  Word metadata_size;
  Word time_ns;
};
static_assert(sizeof(EventEntry) == 64);

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
};

// Lock words hold 0 when free, else the owner's tag.
inline constexpr uint64_t LockTag(uint32_t slot, uint64_t session) {
  return (session << 32) | (uint64_t{slot} + 1);
}
inline constexpr uint32_t LockTagSlot(uint64_t tag) {
  return static_cast<uint32_t>(tag & 0xffffffff) - 1;
}

}  // namespace gismo::region

#endif  // GISMO_REGION_LAYOUT_H_
