// Mapping, formatting and validating the shared region, and typed access to
// its areas. A Region is the only thing that turns offsets into addresses.
#ifndef GISMO_REGION_REGION_H_
#define GISMO_REGION_REGION_H_

#include <atomic>
#include <cstdint>
#include <gismo/status.hpp>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "region/layout.h"
#include "region/view_sim.h"

namespace gismo::region {

// The mode a region is formatted in unless told: coherent, except in the
// simulator build (region/view_sim.h), where the whole test suite runs
// against simulated non-coherent regions.
inline constexpr CoherenceMode kDefaultCoherence =
#ifdef GISMO_NONCOHERENT_SIM
    CoherenceMode::kNonCoherent;
#else
    CoherenceMode::kCoherent;
#endif

// Zero means "derived from the size" (see ResolveDefaults).
struct FormatOptions {
  uint64_t size = 1ull << 30;    // bytes; rounded up to 2 MiB
  uint64_t max_objects = 0;      // index capacity; auto: one per 4 KiB
  uint32_t max_clients = 0;      // client slots incl. the manager's; auto
  uint32_t held_capacity = 0;    // distinct objects one client may hold; auto
  uint32_t log_capacity = 1024;  // undo log entries per client
  uint32_t event_capacity = 0;   // event ring entries (power of two); auto
  uint32_t max_names = 0;        // name table entries; auto
  CoherenceMode coherence = kDefaultCoherence;
  // kFeatureDurable: refused on a volatile file system (tmpfs, ramfs,
  // hugetlbfs) and on a PCI BAR; see Region::Persist.
  bool durable = false;
  // Give a regular file its space at format (fallocate; the manager also
  // refuses to serve a sparse region). False leaves it sparse: only the
  // pages written are backed, and one first touched when the file system is
  // full faults (SIGBUS). For benchmarks of a region larger than the memory
  // (bench/alloc_bench.cc), never for serving.
  bool reserve_space = true;
};
// Fills the zero fields of `o` from its size, so that metadata stays a few
// percent of the region.
FormatOptions ResolveDefaults(FormatOptions o);

// The superblock's checksum field as the format computes it: XXH64 of its
// bytes before the field (tests that forge a superblock use it too).
uint64_t SuperblockChecksum(const Superblock& sb);

// Derived sizes and offsets for a set of options: the single definition of
// the layout, used both to format and to validate.
struct Geometry {
  uint32_t num_shards, slots_per_shard, records_per_shard;
  uint64_t client_table_offset, client_slot_size;
  uint64_t index_offset, shard_size;
  uint64_t event_ring_offset, event_ring_capacity;
  uint64_t names_offset;
  uint32_t names_capacity, name_slots;
  uint64_t alloc_offset, class_table_offset, page_bitmap_offset, free_run_offset, page_desc_offset;
  uint64_t heap_offset, heap_size, num_pages;
  uint32_t request_ring_capacity;  // non-coherent regions; 0 in coherent ones
};
Result<Geometry> ComputeGeometry(const FormatOptions& o);
// The options Region::Format formats with: the size rounded up to the heap's
// alignment, the zero fields filled (ResolveDefaults); INVALID_ARGUMENT for
// options that cannot make a region. Format checks them before it touches
// the file, and so can a caller that would create the file first.
Result<FormatOptions> ResolveFormatOptions(const FormatOptions& opts);

// How Region::Persist makes a range reach the medium.
enum class PersistMode : uint8_t {
  kNone,       // not a durable region: Persist is a no-op
  kMsync,      // msync(MS_SYNC) of the page-aligned range (a file through the page cache)
  kFlush,      // CLWB/CLFLUSHOPT/CLFLUSH of the cache lines, then SFENCE (MAP_SYNC DAX, device DAX)
  kSimulated,  // test builds: a shadow file receives only what is persisted (persist_sim.h)
};
const char* PersistModeName(PersistMode m);

// Why `path` (with `fd` open on it) cannot hold a durable region: the name
// of its volatile file system ("tmpfs", ...), or "" if it can.
std::string VolatileMedium(int fd);

class Region {
 public:
  ~Region();
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;

  // How Open maps a region.
  enum class Access {
    kReadWrite,
    // O_RDONLY, mapped PROT_READ: for a reader of the region's contents
    // only (gismo-fsck offline), which then needs no write permission and
    // works on a read-only medium or snapshot. Anything that writes to it
    // faults. Never through the non-coherence simulator (nothing to
    // simulate: no host writes).
    kReadOnly,
  };
  // Maps an existing region and validates it.
  static Result<std::unique_ptr<Region>> Open(const std::string& path,
                                              Access access = Access::kReadWrite);
  // Creates (or, with `format`, overwrites) and formats a region. Refuses to
  // overwrite a file that is not empty unless `format` is set.
  static Result<std::unique_ptr<Region>> Format(const std::string& path, const FormatOptions& opts);
  // Opens `path` if it holds a valid region, else formats it if it is new or
  // empty. With `force_format` always formats.
  static Result<std::unique_ptr<Region>> OpenOrFormat(const std::string& path,
                                                      const FormatOptions& opts, bool force_format,
                                                      bool* formatted);

  // Adds a second, read-only mapping of the whole region (the read view),
  // at the same alignment as the first. Gets hand out object data through it,
  // so a reader cannot write a sealed object by mistake (doc/security.md).
  // Until it is mapped, or if mapping it failed, read_base() is base().
  Status MapReadView();
  const uint8_t* read_base() const { return read_base_; }
  // Where object data at heap offset `off` is read: the read view.
  const uint8_t* read_heap() const { return read_heap_; }

  // Fills this process's page tables for [p, p + n) of the writable mapping
  // in one call (MADV_POPULATE_WRITE, Linux 5.14), allocating backing pages
  // that are not there yet, instead of one page fault per page on first
  // write: on hugetlbfs that turns a first write at fault speed into one at
  // memory speed. Contents are kept. Best effort: a refusal (EINVAL: a
  // kernel before 5.14, or a mapping the kernel cannot populate, such as a
  // PCI BAR) is remembered for this region (no further calls for it) and any
  // other failure only means the writer faults as before. A system call:
  // callers use it for large ranges only (the hot path stays without one).
  void PopulateForWrite(void* p, uint64_t n) const;
  // The same for reading [p, p + n) of the read view (MADV_POPULATE_READ):
  // a large get's first read then runs without a fault per page.
  //
  // Both remember, per kPopulateGranule of each mapping, what they have
  // populated (the range is widened to whole granules), so populating a
  // range again costs no system call: a block reused by a later object
  // keeps its page tables, since the region is never truncated. Should the
  // kernel drop some of them (reclaim), the reader only faults as before.
  void PopulateForRead(const void* p, uint64_t n) const;
  // Fills this process's page tables for reading the whole metadata (the
  // superblock up to the heap) of the writable mapping, in one call
  // (MADV_POPULATE_READ), for a pass that reads all of it (gismo-fsck):
  // about one fault per 4 KiB page fewer. Best effort, as above; not
  // remembered (one pass calls it once).
  void PopulateMetadataForRead() const;
  static constexpr uint64_t kPopulateGranule = uint64_t{64} << 10;

  const std::string& path() const { return path_; }
  uint8_t* base() const { return base_; }
  uint64_t size() const { return size_; }
  Superblock& sb() const { return *sb_; }
  // The superblock's immutable part (magic .. checksum), as validated when
  // the region was opened or formatted: this process's copy, which no later
  // write to the region changes, so every bound taken from it stays the one
  // that was checked. Read geometry here, never through sb(); only the
  // immutable fields are meaningful in it (the rest is zero).
  const Superblock& fixed() const { return fixed_; }

  template <typename T>
  T* At(uint64_t offset) const {
    return reinterpret_cast<T*>(base_ + offset);
  }
  uint64_t OffsetOf(const void* p) const {
    return static_cast<uint64_t>(static_cast<const uint8_t*>(p) - base_);
  }

  // Client table.
  uint32_t max_clients() const { return fixed_.max_clients; }
  ClientSlotHeader& slot(uint32_t i) const {
    return *At<ClientSlotHeader>(client_table_ + i * slot_size_);
  }
  // The abstract Unix socket address (first byte NUL) at which the
  // subscriber in `slot` with notify_token `token` takes same-node wake-ups
  // (ClientSlotHeader::notify_token). Abstract names live in a network
  // namespace, so they never reach another node.
  std::string NotifySocketName(uint32_t slot, uint64_t token) const;
  Word* current_slabs(uint32_t i) const {
    return At<Word>(client_table_ + i * slot_size_ + sizeof(ClientSlotHeader));
  }
  LogEntry* log(uint32_t i) const {
    return At<LogEntry>(client_table_ + i * slot_size_ + sizeof(ClientSlotHeader) +
                        kNumClasses * sizeof(Word));
  }
  // A non-coherent region's request ring of slot i (client to owner) and
  // its response ring (owner to client), each RequestRingBytes(
  // request_ring_capacity()) in the slot's log area (layout.h).
  bool noncoherent() const {
    return fixed_.coherence_mode == static_cast<uint32_t>(CoherenceMode::kNonCoherent);
  }
  uint32_t request_ring_capacity() const {
    return static_cast<uint32_t>(fixed_.request_ring_capacity);
  }
  void* request_ring(uint32_t i) const { return log(i); }
  void* response_ring(uint32_t i) const {
    return reinterpret_cast<uint8_t*>(log(i)) + RequestRingBytes(request_ring_capacity());
  }
  // A non-coherent region's client slot `i`: its recent-gets line, after
  // the response ring (layout.h, NcRecentGet).
  Word* recent_gets(uint32_t i) const {
    return reinterpret_cast<Word*>(static_cast<uint8_t*>(response_ring(i)) +
                                   RequestRingBytes(request_ring_capacity()));
  }
  HeldEntry* held(uint32_t i) const {
    return At<HeldEntry>(client_table_ + i * slot_size_ + sizeof(ClientSlotHeader) +
                         kNumClasses * sizeof(Word) + fixed_.log_capacity * sizeof(LogEntry));
  }
  // A non-coherent region's client slot `i`: its held summary (layout.h).
  Word* held_summary(uint32_t i) const { return slot(i).held_locks; }

  // Object index.
  uint32_t num_shards() const { return num_shards_; }
  ShardHeader& shard(uint32_t s) const { return *At<ShardHeader>(index_ + s * shard_size_); }
  Word* hash_slots(uint32_t s) const {
    return At<Word>(index_ + s * shard_size_ + sizeof(ShardHeader));
  }
  ObjectRecord* records(uint32_t s) const {
    return At<ObjectRecord>(index_ + s * shard_size_ + sizeof(ShardHeader) +
                            uint64_t{fixed_.slots_per_shard} * sizeof(Word));
  }
  ObjectRecord& record(uint32_t global_index) const {
    return records(global_index / records_per_shard_)[global_index % records_per_shard_];
  }
  uint32_t records_per_shard() const { return records_per_shard_; }
  // Records of the index, every shard's: below 2^32 (Validate derives the
  // geometry from max_objects <= 2^31).
  uint32_t num_records() const { return num_shards_ * records_per_shard_; }

  // Event ring.
  EventRingHeader& event_ring() const { return *At<EventRingHeader>(fixed_.event_ring_offset); }
  EventEntry& event(uint64_t seq) const {
    return At<EventEntry>(fixed_.event_ring_offset +
                          sizeof(EventRingHeader))[seq & (fixed_.event_ring_capacity - 1)];
  }

  // Name table.
  NameTableHeader& names() const { return *At<NameTableHeader>(fixed_.names_offset); }
  Word* name_slots() const { return At<Word>(fixed_.names_offset + sizeof(NameTableHeader)); }
  NameEntry* name_entries() const {
    return At<NameEntry>(fixed_.names_offset + NameEntriesOffset(fixed_.name_slots));
  }
  uint32_t names_capacity() const { return fixed_.names_capacity; }
  // Where the entries start past the table header (the one definition).
  static constexpr uint64_t NameEntriesOffset(uint64_t slots) {
    return (sizeof(NameTableHeader) + slots * sizeof(Word) + kCacheLine - 1) / kCacheLine *
           kCacheLine;
  }

  // Allocator.
  AllocatorHeader& alloc() const { return *At<AllocatorHeader>(fixed_.alloc_offset); }
  ClassStripe& class_stripe(uint32_t cls, uint32_t stripe) const {
    return At<ClassStripe>(fixed_.class_table_offset)[cls * kStripes + stripe];
  }
  Word* page_bitmap() const { return At<Word>(fixed_.page_bitmap_offset); }
  // The free-run summary's nodes (layout.h, FreeRunNode; region/free_runs.h).
  FreeRunNode* free_runs() const { return At<FreeRunNode>(fixed_.free_run_offset); }
  PageDesc& page(uint64_t p) const { return At<PageDesc>(fixed_.page_desc_offset)[p]; }
  uint8_t* heap() const { return heap_; }
  uint64_t heap_size() const { return fixed_.heap_size; }
  uint64_t num_pages() const { return fixed_.num_pages; }
  uint64_t heap_offset() const { return fixed_.heap_offset; }

  // Whether `off` is the offset of one of the region's lock words (a shard,
  // the event ring, the name table, a class stripe or the page heap). For offsets read from
  // the region (a slot's held_locks) before they are used.
  bool IsLockOffset(uint64_t off) const {
    if (off >= index_ && off < index_ + uint64_t{num_shards_} * shard_size_) {
      return (off - index_) % shard_size_ == offsetof(ShardHeader, lock);
    }
    if (off == fixed_.event_ring_offset + offsetof(EventRingHeader, lock)) return true;
    if (off == fixed_.names_offset + offsetof(NameTableHeader, lock)) return true;
    if (off == fixed_.alloc_offset + offsetof(AllocatorHeader, page_lock)) return true;
    const uint64_t classes = fixed_.class_table_offset;
    return off >= classes &&
           off < classes + uint64_t{kNumClasses} * kStripes * sizeof(ClassStripe) &&
           (off - classes) % sizeof(ClassStripe) == offsetof(ClassStripe, lock);
  }

  // Checks of indices and offsets read from the region, made before they
  // are used: the region is a file format, and a corrupt one must give
  // GISMO_ERR_BAD_REGION (Corrupt) naming the place, never an access outside
  // the area the value indexes. gismo-fsck reports the same conditions.
  bool ValidPage(uint64_t page) const { return page < fixed_.num_pages; }
  bool ValidPageRun(uint64_t first, uint64_t n) const {
    return first < fixed_.num_pages && n <= fixed_.num_pages - first;
  }
  // [offset, offset + bytes) lies inside the heap.
  bool ValidHeapBlock(uint64_t offset, uint64_t bytes) const {
    return offset <= fixed_.heap_size && bytes <= fixed_.heap_size - offset;
  }
  // A record's global index.
  bool ValidRecord(uint64_t global) const {
    return global < uint64_t{num_shards_} * records_per_shard_;
  }
  // GISMO_ERR_BAD_REGION: "region 'PATH' is corrupt: WHAT; run gismo-fsck".
  Status Corrupt(const std::string& what) const;

  // The persist seam (durable regions, kFeatureDurable). Persist(off, len)
  // returns once bytes [off, off + len) of the region, as they are now, are
  // on the medium: a write that happens-before the call is durable when it
  // returns, and Persist orders it before every later store by this thread.
  // On a region that is not durable it is a no-op: one predictable branch,
  // no call, no syscall, so the coherent hot path keeps its speed. Callers
  // (Txn, Store::Seal, the manager) state the order they need; see
  // src/store/txn.h. A failure of the medium (msync EIO) is counted in
  // persist_errors(); the write stands in memory.
  bool durable() const { return (fixed_.features & kFeatureDurable) != 0; }
  PersistMode persist_mode() const { return persist_mode_; }
  void Persist(uint64_t offset, uint64_t length) const {
    if (persist_mode_ != PersistMode::kNone) [[unlikely]]
      PersistSlow(offset, length);
  }
  void Persist(const void* p, uint64_t length) const { Persist(OffsetOf(p), length); }
  // Persist of every range [offset, offset + length) in `ranges`, returning
  // once all are on the medium; no order among them. Where the barrier is a
  // line flush, the write-backs overlap and one fence ends them all.
  void PersistAll(const std::pair<uint64_t, uint64_t>* ranges, size_t n) const;
  void PersistAll(const std::vector<std::pair<uint64_t, uint64_t>>& ranges) const {
    PersistAll(ranges.data(), ranges.size());
  }
  uint64_t persist_errors() const { return persist_errors_.load(std::memory_order_relaxed); }
  // Non-coherent regions: drops this host's cached copy of every metadata
  // line (superblock to heap), so the next read of each reads memory. A
  // manager that takes the owner role does it once the previous owner is
  // fenced: its host may hold lines it (or a client on it) read before.
  void InvalidateMetadata() const;
  // Non-coherent regions: writes back every metadata line this host holds
  // dirty. An owner that hands its role on (a clean stop) does it last: a
  // line it wrote but did not flush (a released lock's record, say) would
  // otherwise reach memory whenever this host evicts it, over what the
  // successor wrote there (doc/noncoherent.md, 7.3).
  void FlushMetadata() const;
  // The caller is about to write [p, p + n) afresh (a block given to its
  // creator in a non-coherent region). Nothing on the hardware; in the
  // simulator build, lets the simulator see every store (view_sim::Refresh).
  void WillOverwrite(const void* p, uint64_t n) const {
    if (simulated_) view_sim::Refresh(p, n);
  }
  // Why this durable region's medium does not outlive power ("" if it does,
  // or if the region is not durable): set by Open.
  const std::string& volatile_medium() const { return volatile_medium_; }

  // Where a hashed id lives (see layout.h for the encodings).
  uint32_t ShardOf(uint64_t hash) const { return ShardOfHash(hash, num_shards_); }

 private:
  Region() = default;
  // Maps the region; a non-coherent one through the simulator in a
  // GISMO_NONCOHERENT_SIM build (region/view_sim.h), unless read-only.
  static Result<std::unique_ptr<Region>> Map(const std::string& path, int fd, uint64_t size,
                                             CoherenceMode coherence, Access access);
  // The address alignment the region's heap needs in memory (huge pages, DAX
  // devices): the device's alignment, else kHeapAlign.
  static uint64_t MapAlignment(int fd);
  // Maps `size` bytes of `fd` with `prot` at an address aligned as the
  // region's heap needs (MapAlignment).
  static Result<uint8_t*> MapAligned(const std::string& path, int fd, uint64_t size, int prot);
  // Copies the superblock's immutable part from the mapping into fixed_.
  void SnapshotSuperblock();
  // Validates fixed_ (and the region's state word) against the file.
  Status Validate(uint64_t file_size) const;
  void CacheOffsets();
  // Chooses persist_mode_ for a durable region (MAP_SYNC, device DAX, the
  // simulator in test builds); leaves kNone otherwise.
  void SetUpPersist();
  void PersistSlow(uint64_t offset, uint64_t length) const;
  // Granules of one mapping that this process has populated (bit per
  // kPopulateGranule; relaxed: a lost race costs one more system call).
  struct PopulatedGranules {
    std::unique_ptr<std::atomic<uint64_t>[]> words;
    uint64_t count = 0;  // granules in the mapping
    void Size(uint64_t mapping_len);
    bool Has(uint64_t g) const {
      return words[g / 64].load(std::memory_order_relaxed) >> (g % 64) & 1;
    }
    void Add(uint64_t g) {
      words[g / 64].fetch_or(uint64_t{1} << (g % 64), std::memory_order_relaxed);
    }
  };
  // `done` null: populate without remembering.
  void Populate(const uint8_t* mapping, PopulatedGranules* done, const void* p, uint64_t n,
                int advice) const;

  std::string path_;
  int fd_ = -1;
  uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  uint64_t map_len_ = 0;
  uint8_t* map_start_ = nullptr;
  Superblock* sb_ = nullptr;
  Superblock fixed_{};  // see fixed()
  // Cached from fixed_ for the hot path.
  uint64_t client_table_ = 0, slot_size_ = 0, index_ = 0, shard_size_ = 0;
  uint32_t num_shards_ = 0, records_per_shard_ = 0;
  uint8_t* heap_ = nullptr;
  uint8_t* read_view_ = nullptr;  // the read view's own mapping, if any
  const uint8_t* read_base_ = nullptr;
  const uint8_t* read_heap_ = nullptr;
  PersistMode persist_mode_ = PersistMode::kNone;
  bool map_sync_ = false;  // the mapping is MAP_SYNC (a DAX file system)
  bool dax_device_ = false;
  bool simulated_ = false;  // base_ is a simulated host's view (view_sim.h)
  std::string volatile_medium_;
  mutable std::atomic<uint64_t> persist_errors_{0};
  mutable PopulatedGranules populated_write_, populated_read_;
  // Set (relaxed: a racing caller may make one more failing call) once the
  // kernel refused to populate this region's mappings (Populate).
  mutable std::atomic<bool> populate_refused_{false};
};

// Why this host cannot serve or use a region formatted non-coherent (its
// CPU has no cache-line invalidate this build knows, NonCoherentSupported):
// a GISMO_ERR_UNSUPPORTED status naming the region. The manager refuses to
// serve such a region with it, and a client refuses to use one with it.
Status NonCoherentRefusal(const std::string& path);

// The client slots the owner's helper threads run their Txns in
// (OwnerHelpersLine, format 12): not clients, so not listed or counted as
// clients. The line as memory holds it (invalidated first in a
// non-coherent region); entries that name no client slot are ignored.
std::vector<uint32_t> OwnerHelperSlots(const Region& r);

// The client slots left for clients: all but the manager's (slot 0) and the
// `helper_slots` its owner's helper threads run in (OwnerHelperSlots), never
// below 0 (a corrupt helper list may name a slot twice).
inline uint32_t SlotsForClients(const Region& r, size_t helper_slots) {
  const uint64_t reserved = 1 + uint64_t{helper_slots};
  return r.max_clients() > reserved ? static_cast<uint32_t>(r.max_clients() - reserved) : 0;
}

// The longest lock wait a region may ask for: an hour. The manager takes
// no more (--lock-wait-ms); a larger lock_wait_ms in a region (a corrupt or
// hostile write) counts as this much, so a deadline never overflows.
inline constexpr uint64_t kMaxLockWaitMs = 3'600'000;

// How long an operation waits for what another writer holds (a busy lock,
// a seqlock held odd, the non-coherent owner's answer): the superblock's
// lock_wait_ms, where 0 means the default of 2 s, at most kMaxLockWaitMs.
// Read as this host's cache holds it: a non-coherent client invalidates the
// line first (the owner wrote it; the owner's own Txns read their own write).
uint64_t LockWaitNs(const Region& r);

// Parses "512MiB", "4GiB", "1G", "65536" (bytes). IEC and SI suffixes.
Result<uint64_t> ParseSize(const std::string& text);
// "1.5 GiB" style.
std::string FormatSize(uint64_t bytes);

}  // namespace gismo::region

#endif  // GISMO_REGION_REGION_H_
