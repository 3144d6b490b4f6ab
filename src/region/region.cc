#include "region/region.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>

#include "common/clock.h"
#include "region/cache_lines.h"
#include "region/free_runs.h"
#include "region/view_sim.h"
#ifdef GISMO_CRASH_POINTS
#include "region/persist_sim.h"
#endif

#ifndef MAP_SHARED_VALIDATE
#define MAP_SHARED_VALIDATE 0x03
#endif
#ifndef MAP_SYNC
#define MAP_SYNC 0x80000
#endif

namespace gismo::region {
namespace {

constexpr uint64_t AlignUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

uint64_t NextPow2(uint64_t v) {
  uint64_t p = 1;
  while (p < v) p <<= 1;
  return p;
}

std::string Errno(const std::string& what, const std::string& path) {
  return what + " '" + path + "': " + std::strerror(errno);
}

// Size and alignment of a DAX character device, from sysfs.
bool DaxGeometry(const struct stat& st, uint64_t* size, uint64_t* align) {
  if (!S_ISCHR(st.st_mode)) return false;
  std::string dir = "/sys/dev/char/" + std::to_string(major(st.st_rdev)) + ":" +
                    std::to_string(minor(st.st_rdev));
  std::ifstream fs(dir + "/size");
  if (!(fs >> *size)) return false;
  std::ifstream fa(dir + "/align");
  if (!(fa >> *align)) *align = 2ull << 20;
  return true;
}

// Copies the immutable head of the superblock (everything before `state`)
// through a read-only shared mapping of the whole file. The whole length is
// mapped because it is a valid mapping length for every kind of region (a
// hugetlbfs file or a DAX device refuses lengths that are not multiples of
// its page size or alignment); mapping reserves addresses and touches only
// the first page.
bool PeekSuperblockHead(int fd, uint64_t file_size, Superblock* head) {
  void* m = mmap(nullptr, file_size, PROT_READ, MAP_SHARED, fd, 0);
  if (m == MAP_FAILED) return false;
  std::memcpy(static_cast<void*>(head), m, offsetof(Superblock, state));
  munmap(m, file_size);
  return true;
}

// "33538048 B (31.98 MiB)": exact, for messages comparing two sizes that
// FormatSize alone may round to the same text.
std::string ExactSize(uint64_t bytes) {
  return std::to_string(bytes) + " B (" + FormatSize(bytes) + ")";
}

// Gives the first `size` bytes of the regular file `fd` backing store now,
// so that no access to the mapping can fault for lack of space later (a
// sparse file on a full tmpfs raises SIGBUS in whoever touches a new page).
// A file system without fallocate is checked with statvfs instead if
// `statvfs_fallback` (racy, but it catches a region larger than the whole
// file system), else accepted (a device's file: sysfs, DAX).
Status ReserveSpace(int fd, uint64_t size, const std::string& path, bool statvfs_fallback) {
  int rc;
  do {
    rc = fallocate(fd, 0, 0, static_cast<off_t>(size));
  } while (rc != 0 && errno == EINTR);
  if (rc == 0) return Status();
  const int e = errno;
  struct statvfs vfs {};
  const bool have_vfs = fstatvfs(fd, &vfs) == 0;
  const uint64_t avail = have_vfs ? uint64_t{vfs.f_bavail} * vfs.f_frsize : 0;
  if (e == EOPNOTSUPP || e == ENOSYS) {
    if (!statvfs_fallback || !have_vfs || avail >= size) return Status();
  } else if (e != ENOSPC && e != EFBIG && e != EDQUOT) {
    errno = e;
    return Status(GISMO_ERR_IO, Errno("cannot reserve space for region", path));
  }
  return Status(GISMO_ERR_IO, "no room for region '" + path + "' of " + FormatSize(size) +
                                  ": its file system has " + FormatSize(avail) +
                                  " free; give a smaller --size or make room");
}

// File system magic numbers (linux/magic.h) of media that do not outlive
// the host's power, or that are not memory a durable region may use.
constexpr struct {
  uint64_t magic;
  const char* name;
} kVolatileFileSystems[] = {
    {0x01021994, "tmpfs"},
    {0x858458f6, "ramfs"},
    {0x958458f6, "hugetlbfs"},
    {0x62656572, "sysfs (a PCI BAR is device memory, not a durable medium)"},
    {0x9fa0, "procfs"},
};

}  // namespace

uint64_t SuperblockChecksum(const Superblock& sb) {
  return XXH64(&sb, offsetof(Superblock, checksum), 0x6769736d6fULL);
}

Status NonCoherentRefusal(const std::string& path) {
  return Status(GISMO_ERR_UNSUPPORTED,
                "region '" + path +
                    "' is formatted for non-coherent (CXL 2.0) memory, whose protocol needs "
                    "a cache-line flush and invalidate (CLFLUSHOPT or CLFLUSH) that this build "
                    "has not for this CPU (x86-64 only): see doc/noncoherent.md. Use it from "
                    "an x86-64 host, or format the region anew with --coherence coherent");
}

const char* PersistModeName(PersistMode m) {
  switch (m) {
    case PersistMode::kNone:
      return "none";
    case PersistMode::kMsync:
      return "msync";
    case PersistMode::kFlush:
      return "cache-line flush";
    case PersistMode::kSimulated:
      return "simulated (test build)";
  }
  return "?";
}

std::string VolatileMedium(int fd) {
  struct stat st {};
  if (fstat(fd, &st) != 0) return "";
  uint64_t size = 0, align = 0;
  if (S_ISCHR(st.st_mode)) {
    // Device DAX lives on devtmpfs, which says nothing about the device.
    return DaxGeometry(st, &size, &align) ? "" : "a character device that is not device DAX";
  }
  struct statfs fs {};
  if (fstatfs(fd, &fs) != 0) return "";
  for (const auto& v : kVolatileFileSystems) {
    if (static_cast<uint64_t>(fs.f_type) == v.magic) return v.name;
  }
  return "";
}

void Region::SetUpPersist() {
  persist_mode_ = PersistMode::kNone;
  if (simulated_) {
    // The simulator's flush is the only way its writes reach the device.
    persist_mode_ = PersistMode::kFlush;
    return;
  }
  if (!durable()) {
    // A non-coherent region's writers flush what they write: the persist
    // barriers of the Txn and the manager are the order other hosts and a
    // successor see it in (store/txn.h, doc/noncoherent.md).
    if (noncoherent() && NonCoherentSupported()) persist_mode_ = PersistMode::kFlush;
    return;
  }
#ifdef GISMO_CRASH_POINTS
  if (persist_sim::Attach(*this)) {
    persist_mode_ = PersistMode::kSimulated;
    return;
  }
#endif
  struct stat st {};
  uint64_t dsize = 0, align = 0;
  dax_device_ = fstat(fd_, &st) == 0 && DaxGeometry(st, &dsize, &align);
  if (!dax_device_ && S_ISREG(st.st_mode)) {
    // On a DAX file system MAP_SYNC keeps the file's metadata in step with
    // page faults, so flushing the CPU's cache lines is enough. Elsewhere the
    // kernel refuses MAP_SYNC (EOPNOTSUPP), possibly after it has unmapped a
    // MAP_FIXED target, so a probe mapping asks first; the region is mapped
    // again over itself only if the probe succeeded (same file, same bytes).
    void* probe =
        mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED_VALIDATE | MAP_SYNC, fd_, 0);
    if (probe != MAP_FAILED) {
      munmap(probe, 4096);
      void* m = mmap(base_, size_, PROT_READ | PROT_WRITE,
                     MAP_SHARED_VALIDATE | MAP_SYNC | MAP_FIXED, fd_, 0);
      map_sync_ = m == base_;
      if (!map_sync_) {
        // Put the plain mapping back where it was; nothing else can be done.
        map_sync_ = false;
        if (mmap(base_, size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd_, 0) != base_) {
          abort();
        }
      }
    }
  }
  persist_mode_ = (map_sync_ || dax_device_) && FlushInstruction() != FlushInsn::kNone
                      ? PersistMode::kFlush
                      : PersistMode::kMsync;
}

void Region::PersistAll(const std::pair<uint64_t, uint64_t>* ranges, size_t n) const {
  if (persist_mode_ != PersistMode::kFlush) {
    for (size_t i = 0; i < n; ++i) Persist(ranges[i].first, ranges[i].second);
    return;
  }
  for (size_t i = 0; i < n; ++i) {
    const auto [offset, length] = ranges[i];
    if (length == 0 || offset >= size_) continue;
    StartFlushLines(base_ + offset, std::min(length, size_ - offset));
  }
  FlushFence();
}

void Region::PersistSlow(uint64_t offset, uint64_t length) const {
  if (length == 0 || offset >= size_) return;
  if (length > size_ - offset) length = size_ - offset;
  switch (persist_mode_) {
    case PersistMode::kNone:
      return;
    case PersistMode::kMsync: {
      // msync needs a page-aligned start; it writes whole pages back.
      const uint64_t start = offset & ~uint64_t{4095};
      if (msync(base_ + start, offset + length - start, MS_SYNC) != 0) {
        persist_errors_.fetch_add(1, std::memory_order_relaxed);
      }
      return;
    }
    case PersistMode::kFlush:
      FlushLines(base_ + offset, length);
      return;
    case PersistMode::kSimulated:
#ifdef GISMO_CRASH_POINTS
      persist_sim::Persist(*this, offset, length);
#endif
      return;
  }
}

void Region::InvalidateMetadata() const {
  if (noncoherent()) InvalidateLines(base_, fixed_.heap_offset);
}

void Region::FlushMetadata() const {
  if (noncoherent()) FlushLines(base_, fixed_.heap_offset);
}

FormatOptions ResolveDefaults(FormatOptions o) {
  if (o.max_objects == 0) {
    o.max_objects = std::clamp<uint64_t>(o.size / 4096, 1024, 1ull << 26);
  }
  if (o.max_clients == 0) o.max_clients = o.size >= (256ull << 20) ? 129 : 33;
  if (o.held_capacity == 0) o.held_capacity = o.size >= (256ull << 20) ? 4096 : 1024;
  if (o.event_capacity == 0) o.event_capacity = o.size >= (256ull << 20) ? 65536 : 4096;
  if (o.max_names == 0) o.max_names = o.size >= (256ull << 20) ? 4096 : 1024;
  return o;
}

Result<Geometry> ComputeGeometry(const FormatOptions& opts) {
  const FormatOptions o = ResolveDefaults(opts);
  if (o.size < kMinRegionSize) {
    return Status(GISMO_ERR_INVALID_ARGUMENT, "region size " + FormatSize(o.size) +
                                                  " is below the minimum " +
                                                  FormatSize(kMinRegionSize));
  }
  if (o.max_clients < 2 || o.max_clients > 65535) {
    return Status(GISMO_ERR_INVALID_ARGUMENT, "max clients must be in [2, 65535]");
  }
  if (o.max_objects < 1 || o.max_objects > (1ull << 31)) {
    return Status(GISMO_ERR_INVALID_ARGUMENT, "max objects must be in [1, 2^31]");
  }
  if (o.held_capacity < 16 || o.held_capacity > (1u << 24) ||
      (o.held_capacity & (o.held_capacity - 1)) != 0) {
    return Status(GISMO_ERR_INVALID_ARGUMENT,
                  "references per client must be a power of two in [16, 2^24]");
  }
  if (o.event_capacity < 64 || o.event_capacity > (1u << 24) ||
      (o.event_capacity & (o.event_capacity - 1)) != 0) {
    return Status(GISMO_ERR_INVALID_ARGUMENT,
                  "event ring capacity must be a power of two in [64, 2^24]");
  }
  if (o.max_names < 16 || o.max_names > (1u << 20)) {
    return Status(GISMO_ERR_INVALID_ARGUMENT, "max names must be in [16, 2^20]");
  }
  if (o.log_capacity < 64 || o.log_capacity > (1u << 20)) {
    return Status(GISMO_ERR_INVALID_ARGUMENT, "log capacity must be in [64, 2^20]");
  }
  Geometry g{};
  // Shards: enough to keep lock contention low, each holding >= 64 records.
  uint64_t shards = 1;
  while (shards < 1024 && shards * 2 * 64 <= o.max_objects) shards *= 2;
  g.num_shards = static_cast<uint32_t>(shards);
  // 25% headroom for uneven hashing; load factor of the hash slots <= 2/3.
  uint64_t per_shard = (o.max_objects + shards - 1) / shards;
  per_shard = per_shard + per_shard / 4 + 8;
  g.records_per_shard = static_cast<uint32_t>(per_shard);
  g.slots_per_shard = static_cast<uint32_t>(NextPow2(per_shard * 3 / 2));

  g.request_ring_capacity = 0;
  if (o.coherence == CoherenceMode::kNonCoherent) {
    g.request_ring_capacity = RequestRingCapacityFor(uint64_t{o.log_capacity} * sizeof(LogEntry));
    if (g.request_ring_capacity == 0) {
      return Status(GISMO_ERR_INVALID_ARGUMENT,
                    "a non-coherent region keeps each client's request and response rings "
                    "and its recent-gets line where its undo log would be: log capacity must "
                    "be at least " +
                        std::to_string((2 * RequestRingBytes(kMinRequestRing) + kCacheLine) /
                                       sizeof(LogEntry)));
    }
  }
  g.client_slot_size = AlignUp(sizeof(ClientSlotHeader) + kNumClasses * sizeof(Word) +
                                   uint64_t{o.log_capacity} * sizeof(LogEntry) +
                                   uint64_t{o.held_capacity} * sizeof(HeldEntry),
                               kAreaAlign);
  g.client_table_offset = kAreaAlign;
  g.index_offset = AlignUp(g.client_table_offset + o.max_clients * g.client_slot_size, kAreaAlign);
  g.shard_size = AlignUp(sizeof(ShardHeader) + uint64_t{g.slots_per_shard} * sizeof(Word) +
                             uint64_t{g.records_per_shard} * sizeof(ObjectRecord),
                         kCacheLine);
  g.event_ring_offset = AlignUp(g.index_offset + shards * g.shard_size, kAreaAlign);
  g.event_ring_capacity = o.event_capacity;
  g.names_offset = AlignUp(g.event_ring_offset + sizeof(EventRingHeader) +
                               uint64_t{o.event_capacity} * sizeof(EventEntry),
                           kAreaAlign);
  g.names_capacity = o.max_names;
  // Load factor of the name slots <= 2/3, as in the index.
  g.name_slots = static_cast<uint32_t>(NextPow2(uint64_t{o.max_names} * 3 / 2));
  g.alloc_offset = AlignUp(g.names_offset + Region::NameEntriesOffset(g.name_slots) +
                               uint64_t{g.names_capacity} * sizeof(NameEntry),
                           kAreaAlign);
  g.class_table_offset = g.alloc_offset + sizeof(AllocatorHeader);
  g.page_bitmap_offset =
      AlignUp(g.class_table_offset + kNumClasses * kStripes * sizeof(ClassStripe), kCacheLine);
  // Pages: solve for the number of pages whose bitmap, descriptors and the
  // pages themselves fit in what is left.
  uint64_t meta_start = g.page_bitmap_offset;
  if (meta_start + kHeapAlign + kPageSize > o.size) {
    return Status(GISMO_ERR_INVALID_ARGUMENT,
                  "region size " + FormatSize(o.size) + " leaves no heap after the metadata (" +
                      FormatSize(meta_start) +
                      "); give a larger --size or fewer --max-objects/--max-clients");
  }
  // A byte per page covers its bitmap bit and its share of the free-run
  // summary (at most 2 * 16 bytes per 64 pages); the loop settles the rest.
  uint64_t pages = (o.size - meta_start) / (kPageSize + sizeof(PageDesc) + 1);
  if (pages > kMaxPages) {
    return Status(GISMO_ERR_INVALID_ARGUMENT,
                  "region size " + FormatSize(o.size) + " is larger than the largest supported (" +
                      FormatSize(kMaxPages * kPageSize) + " of heap, " + std::to_string(kMaxPages) +
                      " pages of " + FormatSize(kPageSize) + ")");
  }
  for (;;) {
    g.free_run_offset =
        AlignUp(g.page_bitmap_offset + (pages + 63) / 64 * sizeof(Word), kCacheLine);
    g.page_desc_offset =
        AlignUp(g.free_run_offset + FreeRunLeaves(pages) * sizeof(FreeRunNode), kCacheLine);
    g.heap_offset = AlignUp(g.page_desc_offset + pages * sizeof(PageDesc), kHeapAlign);
    if (pages == 0 || g.heap_offset + pages * kPageSize <= o.size) break;
    --pages;
  }
  if (pages < 16) {
    return Status(GISMO_ERR_INVALID_ARGUMENT,
                  "region size " + FormatSize(o.size) +
                      " is too small for its metadata; give a larger --size");
  }
  g.num_pages = pages;
  g.heap_size = pages * kPageSize;
  return g;
}

Region::~Region() {
  if (read_view_) munmap(read_view_, map_len_);
  if (simulated_) {
    view_sim::Unmap(map_start_);
  } else if (map_start_) {
    munmap(map_start_, map_len_);
  }
  if (fd_ >= 0) close(fd_);
}

Status Region::Corrupt(const std::string& what) const {
  return Status(GISMO_ERR_BAD_REGION,
                "region '" + path_ + "' is corrupt: " + what + " (gismo-fsck lists every problem)");
}

Result<std::unique_ptr<Region>> Region::Map(const std::string& path, int fd, uint64_t size,
                                            CoherenceMode coherence, Access access) {
  std::unique_ptr<Region> region(new Region());
  Result<uint8_t*> m = nullptr;
  const bool writable = access == Access::kReadWrite;
  if (view_sim::kEnabled && coherence == CoherenceMode::kNonCoherent && writable) {
    // A simulator build: this process is a host of its own with a private
    // cache of the region (region/view_sim.h).
    if (uint8_t* view = view_sim::Map(fd, size, MapAlignment(fd))) {
      m = view;
      region->simulated_ = true;
    }
  }
  if (!region->simulated_) {
    m = MapAligned(path, fd, size, writable ? PROT_READ | PROT_WRITE : PROT_READ);
  }
  if (!m.ok()) return m.status();
  region->path_ = path;
  region->fd_ = fd;
  region->base_ = *m;
  region->map_start_ = region->base_;
  region->map_len_ = size;
  region->populated_write_.Size(size);
  region->populated_read_.Size(size);
  region->size_ = size;
  region->sb_ = reinterpret_cast<Superblock*>(*m);
  region->read_base_ = region->base_;
  return region;
}

std::string Region::NotifySocketName(uint32_t slot, uint64_t token) const {
  char name[96];
  const int n = std::snprintf(name, sizeof name,
                              "%cgismo-notify-%016" PRIx64 "%016" PRIx64 "-%" PRIu32 "-%" PRIx64,
                              '\0', fixed_.uuid[0], fixed_.uuid[1], slot, token);
  return std::string(name, static_cast<size_t>(n));
}

void Region::PopulatedGranules::Size(uint64_t mapping_len) {
  count = (mapping_len + kPopulateGranule - 1) / kPopulateGranule;
  words.reset(new std::atomic<uint64_t>[(count + 63) / 64]());  // all clear
}

void Region::Populate(const uint8_t* mapping, PopulatedGranules* done, const void* p, uint64_t n,
                      int advice) const {
  const auto* b = static_cast<const uint8_t*>(p);
  if (n == 0 || simulated_ || populate_refused_.load(std::memory_order_relaxed) || b < mapping ||
      static_cast<uint64_t>(b - mapping) + n > map_len_) {
    return;
  }
  uint64_t first = static_cast<uint64_t>(b - mapping) / kPopulateGranule;
  uint64_t end = (static_cast<uint64_t>(b - mapping) + n - 1) / kPopulateGranule + 1;
  if (done != nullptr) {
    while (first < end && done->Has(first)) ++first;
    while (end > first && done->Has(end - 1)) --end;
    if (first == end) return;  // populated before: no system call
  }
  const uint64_t from = first * kPopulateGranule;
  const uint64_t to = std::min(end * kPopulateGranule, map_len_);
  if (madvise(const_cast<uint8_t*>(mapping) + from, to - from, advice) != 0) {
    // The kernel does not know the advice (both came in Linux 5.14) or
    // cannot populate this mapping (VM_IO, VM_PFNMAP: a PCI BAR, some
    // device memory); another region of the process may still be populated.
    if (errno == EINVAL) populate_refused_.store(true, std::memory_order_relaxed);
    return;  // the reader or writer faults as before
  }
  if (done == nullptr) return;
  for (uint64_t g = first; g < end; ++g) done->Add(g);
}

namespace {
constexpr int kMadvPopulateRead = 22;  // <sys/mman.h> of older libcs lacks them
constexpr int kMadvPopulateWrite = 23;
}  // namespace

void Region::PopulateForWrite(void* p, uint64_t n) const {
  Populate(map_start_, &populated_write_, p, n, kMadvPopulateWrite);
}

void Region::PopulateForRead(const void* p, uint64_t n) const {
  Populate(read_base_, &populated_read_, p, n, kMadvPopulateRead);
}

void Region::PopulateMetadataForRead() const {
  Populate(map_start_, nullptr, base_, std::min(heap_offset(), size_), kMadvPopulateRead);
}

Status Region::MapReadView() {
  // A simulated host reads its cache: a second mapping of the file would
  // read memory itself, past the simulator.
  if (read_view_ || simulated_) return Status();
  auto m = MapAligned(path_, fd_, map_len_, PROT_READ);
  if (!m.ok()) return m.status();
  read_view_ = *m;
  read_base_ = read_view_;
  populated_read_.Size(map_len_);  // what it marked was of the writable mapping
  read_heap_ = read_base_ + (heap_ - base_);
  return Status();
}

uint64_t Region::MapAlignment(int fd) {
  struct stat st {};
  uint64_t align = kHeapAlign, dax_size = 0;
  if (fstat(fd, &st) == 0) DaxGeometry(st, &dax_size, &align);
  return align < 4096 || (align & (align - 1)) != 0 ? kHeapAlign : align;
}

Result<uint8_t*> Region::MapAligned(const std::string& path, int fd, uint64_t size, int prot) {
  const uint64_t align = MapAlignment(fd);
  // Reserve an aligned range, then map the region over it, so that the heap
  // (2 MiB aligned in the file) is 2 MiB aligned in memory too (huge pages,
  // DAX devices).
  uint64_t reserve = size + align;
  void* r = mmap(nullptr, reserve, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (r == MAP_FAILED) {
    return Status(GISMO_ERR_IO, Errno("cannot reserve address space for", path));
  }
  auto start = reinterpret_cast<uintptr_t>(r);
  uintptr_t aligned = (start + align - 1) / align * align;
  void* m = mmap(reinterpret_cast<void*>(aligned), size, prot, MAP_SHARED | MAP_FIXED, fd, 0);
  if (m == MAP_FAILED) {
    int e = errno;
    munmap(r, reserve);
    errno = e;
    return Status(GISMO_ERR_IO, Errno("cannot map region", path));
  }
  // Give back the unused head and tail of the reservation.
  if (aligned > start) munmap(r, aligned - start);
  uintptr_t end = aligned + size, rend = start + reserve;
  if (rend > end) munmap(reinterpret_cast<void*>(end), rend - end);
  return static_cast<uint8_t*>(m);
}

void Region::SnapshotSuperblock() {
  // Only the immutable part: the words after it change while the region is
  // in use and are read where they live.
  std::memcpy(static_cast<void*>(&fixed_), sb_, offsetof(Superblock, state));
}

void Region::CacheOffsets() {
  client_table_ = fixed_.client_table_offset;
  slot_size_ = fixed_.client_slot_size;
  index_ = fixed_.index_offset;
  shard_size_ = fixed_.shard_size;
  num_shards_ = fixed_.num_shards;
  records_per_shard_ = fixed_.records_per_shard;
  heap_ = base_ + fixed_.heap_offset;
  read_heap_ = read_base_ + fixed_.heap_offset;
}

Status Region::Validate(uint64_t file_size) const {
  const Superblock& sb = fixed_;  // one copy: a concurrent writer cannot change it mid-check
  if (sb.magic != kMagic) {
    return Status(GISMO_ERR_BAD_REGION, "'" + path_ + "' is not a gismo region (bad magic number)");
  }
  if (sb.format_version != kFormatVersion) {
    return Status(GISMO_ERR_BAD_REGION,
                  "'" + path_ + "' has region format version " + std::to_string(sb.format_version) +
                      ", this build reads version " + std::to_string(kFormatVersion));
  }
  // The live word (the snapshot stops before it): a format that stopped
  // before its checksum is said to be one, not "corrupt".
  if (sb_->state.load(std::memory_order_acquire) ==
      static_cast<uint64_t>(RegionState::kFormatting)) {
    return Status(GISMO_ERR_BAD_REGION,
                  "'" + path_ + "' was not completely formatted; format it again");
  }
  if (sb.superblock_size != sizeof(Superblock) || sb.checksum != SuperblockChecksum(sb)) {
    return Status(GISMO_ERR_BAD_REGION,
                  "'" + path_ + "': superblock checksum mismatch (corrupt region)");
  }
  if (sb.region_size % kHeapAlign != 0) {
    return Status(GISMO_ERR_BAD_REGION, "'" + path_ + "': its size, " + ExactSize(sb.region_size) +
                                            ", is not a multiple of 2 MiB (corrupt region)");
  }
  if (sb.region_size > file_size || sb.region_size > size_) {
    return Status(GISMO_ERR_BAD_REGION, "'" + path_ + "' is truncated: superblock says " +
                                            ExactSize(sb.region_size) + ", file holds " +
                                            ExactSize(file_size));
  }
  if ((sb.features & ~kKnownFeatures) != 0) {
    char bits[32];
    snprintf(bits, sizeof bits, "0x%llx",
             static_cast<unsigned long long>(sb.features & ~kKnownFeatures));
    return Status(GISMO_ERR_BAD_REGION, "'" + path_ + "' uses region features " + bits +
                                            " that this build does not know; use a newer gismo");
  }
  if (sb.coherence_mode != static_cast<uint32_t>(CoherenceMode::kCoherent) &&
      sb.coherence_mode != static_cast<uint32_t>(CoherenceMode::kNonCoherent)) {
    return Status(GISMO_ERR_BAD_REGION, "'" + path_ + "': unknown coherence mode");
  }
  // Zero in these means "derived from the size" to ComputeGeometry, so a
  // superblock holding 0 could match a default layout and yet say 0 to every
  // reader of fixed() (max_clients - 1 wrapping, a held table of no entries).
  if (sb.max_objects == 0 || sb.max_clients == 0 || sb.held_capacity == 0) {
    return Status(GISMO_ERR_BAD_REGION, "'" + path_ + "': superblock holds no " +
                                            (sb.max_objects == 0   ? "max_objects"
                                             : sb.max_clients == 0 ? "max_clients"
                                                                   : "held_capacity") +
                                            " (corrupt region)");
  }
  FormatOptions o;
  o.size = sb.region_size;
  o.max_objects = sb.max_objects;
  o.max_clients = sb.max_clients;
  o.held_capacity = sb.held_capacity;
  o.log_capacity = sb.log_capacity;
  o.event_capacity = static_cast<uint32_t>(sb.event_ring_capacity);
  o.max_names = sb.names_capacity;
  o.coherence = static_cast<CoherenceMode>(sb.coherence_mode);
  auto g = ComputeGeometry(o);
  if (!g.ok()) return Status(GISMO_ERR_BAD_REGION, "'" + path_ + "': " + g.status().message());
  const Geometry& e = *g;
  bool same = e.num_shards == sb.num_shards && e.slots_per_shard == sb.slots_per_shard &&
              e.records_per_shard == sb.records_per_shard &&
              e.client_table_offset == sb.client_table_offset &&
              e.client_slot_size == sb.client_slot_size && e.index_offset == sb.index_offset &&
              e.shard_size == sb.shard_size && e.alloc_offset == sb.alloc_offset &&
              e.event_ring_offset == sb.event_ring_offset &&
              e.event_ring_capacity == sb.event_ring_capacity &&
              e.names_offset == sb.names_offset && e.names_capacity == sb.names_capacity &&
              e.name_slots == sb.name_slots && e.class_table_offset == sb.class_table_offset &&
              e.page_bitmap_offset == sb.page_bitmap_offset &&
              e.free_run_offset == sb.free_run_offset &&
              e.page_desc_offset == sb.page_desc_offset && e.heap_offset == sb.heap_offset &&
              e.heap_size == sb.heap_size && e.num_pages == sb.num_pages &&
              sb.page_size == kPageSize && e.request_ring_capacity == sb.request_ring_capacity;
  if (!same) {
    return Status(GISMO_ERR_BAD_REGION,
                  "'" + path_ + "': layout does not match its parameters (corrupt region)");
  }
  if (sb_->state.load(std::memory_order_acquire) != static_cast<uint64_t>(RegionState::kReady)) {
    return Status(GISMO_ERR_BAD_REGION,
                  "'" + path_ + "' was not completely formatted; format it again");
  }
  return Status();
}

Result<std::unique_ptr<Region>> Region::Open(const std::string& path, Access access) {
  // O_NONBLOCK read-only: a FIFO given as the region would block the open
  // until a writer came (one opened O_RDWR does not); it is refused below.
  int fd = open(path.c_str(),
                (access == Access::kReadWrite ? O_RDWR : O_RDONLY | O_NONBLOCK) | O_CLOEXEC);
  if (fd < 0) {
    gismo_status_t code = errno == ENOENT ? GISMO_ERR_BAD_REGION : GISMO_ERR_IO;
    return Status(code, Errno("cannot open region", path));
  }
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    close(fd);
    return Status(GISMO_ERR_IO, Errno("cannot stat region", path));
  }
  uint64_t file_size = static_cast<uint64_t>(st.st_size), align = 0;
  DaxGeometry(st, &file_size, &align);
  if (file_size < sizeof(Superblock)) {
    close(fd);
    return Status(GISMO_ERR_BAD_REGION, "'" + path + "' is not a gismo region (too small: " +
                                            FormatSize(file_size) + ")");
  }
  // The superblock is read through a mapping, never with read(): a PCI BAR's
  // resource file fails read() with EIO and device DAX has no read() at all;
  // mmap is the one access every kind of region supports.
  Superblock head{};
  if (!PeekSuperblockHead(fd, file_size, &head)) {
    close(fd);
    return Status(GISMO_ERR_IO, Errno("cannot map the superblock of", path));
  }
  if (head.magic != kMagic) {
    close(fd);
    return Status(GISMO_ERR_BAD_REGION, "'" + path + "' is not a gismo region (bad magic number)");
  }
  uint64_t size = head.region_size;
  if (size < kMinRegionSize || size > file_size) size = file_size;
  // Mapped in whole 2 MiB units whatever the superblock says (Validate then
  // refuses one that says otherwise): on hugetlbfs the kernel rounds a
  // mapping up to its huge page, so a length between two would run past the
  // address range MapAligned reserved, over whatever is mapped above it.
  if (const uint64_t whole = size / kHeapAlign * kHeapAlign; whole >= kMinRegionSize) size = whole;
  auto r = Map(path, fd, size, static_cast<CoherenceMode>(head.coherence_mode), access);
  if (!r.ok()) {
    close(fd);
    return r.status();
  }
  (*r)->SnapshotSuperblock();
  Status s = (*r)->Validate(file_size);
  if (!s.ok()) return s;
  (*r)->CacheOffsets();
  if ((*r)->durable()) (*r)->volatile_medium_ = VolatileMedium(fd);
  // A non-coherent region flushes what its writers write (the Txn's persist
  // barriers), whether this process formatted it or opened it. A read-only
  // opener writes nothing to persist.
  if (access == Access::kReadWrite) (*r)->SetUpPersist();
  return std::move(*r);
}

Result<FormatOptions> ResolveFormatOptions(const FormatOptions& opts) {
  FormatOptions o = opts;
  if (o.size > (1ull << 62)) {  // rounding up below would wrap around
    return Status(GISMO_ERR_INVALID_ARGUMENT,
                  "region size " + FormatSize(o.size) + " is too large");
  }
  const uint64_t asked = o.size;
  o.size = (o.size + kHeapAlign - 1) / kHeapAlign * kHeapAlign;
  // Said with the size asked for, not the 2 MiB it rounds up to ("--size 1"
  // was "region size 2.00 MiB is below the minimum").
  if (o.size < kMinRegionSize) {
    return Status(
        GISMO_ERR_INVALID_ARGUMENT,
        "region size " + ExactSize(asked) + " is below the minimum " + FormatSize(kMinRegionSize));
  }
  o = ResolveDefaults(o);
  if (auto g = ComputeGeometry(o); !g.ok()) return g.status();
  return o;
}

Result<std::unique_ptr<Region>> Region::Format(const std::string& path, const FormatOptions& opts) {
  // Options that cannot make a region are refused before the file is
  // touched: an existing region keeps its contents, and no file is sized
  // (allocated, on tmpfs) for nothing. (Checked again below, with the size
  // a device or a file that keeps its size gives.)
  auto resolved = ResolveFormatOptions(opts);
  if (!resolved.ok()) return resolved.status();
  FormatOptions o = *resolved;
  struct stat before {};
  const bool existed = stat(path.c_str(), &before) == 0;
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0660);
  if (fd < 0) return Status(GISMO_ERR_IO, Errno("cannot create region", path));
  if (o.durable) {
    if (const std::string medium = VolatileMedium(fd); !medium.empty()) {
      // Leave no file behind that was not there with contents before (the
      // manager creates an empty one to lock it).
      if (!existed || (S_ISREG(before.st_mode) && before.st_size == 0)) unlink(path.c_str());
      close(fd);
      return Status(GISMO_ERR_UNSUPPORTED,
                    "cannot format '" + path + "' as a durable region: it lies on " + medium +
                        ", which does not outlive the host's power; put it on a disk file "
                        "system, a DAX file system or a device DAX node, or drop --durable");
    }
  }
  struct stat st {};
  fstat(fd, &st);
  uint64_t dax_size = 0, align = 0;
  bool dax = DaxGeometry(st, &dax_size, &align);
  if (!dax && !S_ISREG(st.st_mode)) {
    // A block device or another character device has no size a mapping
    // could be checked against (writes past its end fault), and Open
    // refuses it.
    close(fd);
    return Status(GISMO_ERR_UNSUPPORTED,
                  "cannot format '" + path +
                      "': it is neither a regular file nor a device DAX node (regions live in "
                      "files on tmpfs, hugetlbfs or a DAX file system, or on /dev/daxN.M)");
  }
  // True when truncation emptied the file: its metadata areas read as zeros.
  bool emptied = false;
  if (dax) {
    if (o.size > dax_size) o.size = dax_size / kHeapAlign * kHeapAlign;
  } else if (S_ISREG(st.st_mode)) {
    // Drop old contents so every metadata area starts zeroed, then size it.
    // A PCI BAR's resource file (sysfs) takes ftruncate and ignores it: it
    // keeps its size and contents, and is formatted like a device.
    struct stat after {};
    if (ftruncate(fd, 0) != 0 || fstat(fd, &after) != 0) {
      Status s(GISMO_ERR_IO, Errno("cannot size region", path));
      close(fd);
      return s;
    }
    emptied = after.st_size == 0;
    if (!emptied) {
      uint64_t fixed = static_cast<uint64_t>(after.st_size) / kHeapAlign * kHeapAlign;
      if (o.size > fixed) o.size = fixed;
    } else if (ftruncate(fd, static_cast<off_t>(o.size)) != 0) {
      Status s(GISMO_ERR_IO,
               Errno("cannot size region", path) + " (is there room on its file system?)");
      close(fd);
      return s;
    } else if (Status s = o.reserve_space ? ReserveSpace(fd, kHeapAlign, path, true) : Status();
               !s.ok()) {
      // The first 2 MiB (the superblock the mark below is written to) now,
      // the rest after the mark: a write to a page a full file system
      // cannot give is a SIGBUS. An empty file is left, not a sparse one.
      (void)!ftruncate(fd, 0);
      close(fd);
      return s;
    }
  }
  auto g = ComputeGeometry(o);
  if (!g.ok()) {
    close(fd);
    return g.status();
  }
  auto r = Map(path, fd, o.size, o.coherence, Access::kReadWrite);
  if (!r.ok()) {
    close(fd);
    return r.status();
  }
  Region& region = **r;
  Superblock& sb = region.sb();
  const Geometry& e = *g;
  // A device, or a file that truncation did not empty, is not zeroed.
  if (!emptied) std::memset(region.base(), 0, e.heap_offset);
  // The mark of a format in progress, before its long steps (the space's
  // allocation, the bitmaps): a format that a signal or a crash stops from
  // here on is said to be one ("not completely formatted"), not "not a gismo
  // region". It is not done again without --format: its formatter may run
  // still, on another host or as a standby's. kReady, last, ends it.
  sb.state.store(static_cast<uint64_t>(RegionState::kFormatting), std::memory_order_release);
  sb.magic = kMagic;
  sb.format_version = kFormatVersion;
  if (emptied && o.reserve_space) {
    if (Status s = ReserveSpace(fd, o.size, path, true); !s.ok()) {
      // Leave the file empty, not a sparse file that faults when touched.
      (void)!ftruncate(fd, 0);
      return s;
    }
  }
  sb.superblock_size = sizeof(Superblock);
  sb.region_size = o.size;
  sb.format_time_ns = RealtimeNs();
  std::random_device rd;
  sb.uuid[0] = (uint64_t{rd()} << 32) ^ rd() ^ sb.format_time_ns;
  sb.uuid[1] = (uint64_t{rd()} << 32) ^ rd();
  sb.coherence_mode = static_cast<uint32_t>(o.coherence);
  sb.page_size = kPageSize;
  sb.max_clients = o.max_clients;
  sb.log_capacity = o.log_capacity;
  sb.held_capacity = o.held_capacity;
  sb.num_shards = e.num_shards;
  sb.slots_per_shard = e.slots_per_shard;
  sb.records_per_shard = e.records_per_shard;
  sb.max_objects = o.max_objects;
  sb.client_table_offset = e.client_table_offset;
  sb.client_slot_size = e.client_slot_size;
  sb.index_offset = e.index_offset;
  sb.shard_size = e.shard_size;
  sb.event_ring_offset = e.event_ring_offset;
  sb.event_ring_capacity = e.event_ring_capacity;
  sb.names_offset = e.names_offset;
  sb.names_capacity = e.names_capacity;
  sb.name_slots = e.name_slots;
  sb.alloc_offset = e.alloc_offset;
  sb.class_table_offset = e.class_table_offset;
  sb.page_bitmap_offset = e.page_bitmap_offset;
  sb.free_run_offset = e.free_run_offset;
  sb.page_desc_offset = e.page_desc_offset;
  sb.heap_offset = e.heap_offset;
  sb.heap_size = e.heap_size;
  sb.num_pages = e.num_pages;
  sb.features = o.durable ? kFeatureDurable : 0;
  sb.request_ring_capacity = e.request_ring_capacity;
  sb.checksum = SuperblockChecksum(sb);
  region.SnapshotSuperblock();
  region.CacheOffsets();
  region.SetUpPersist();
  region.alloc().free_pages.store(e.num_pages, std::memory_order_relaxed);
  // Bits past the last page are permanently "in use".
  uint64_t words = (e.num_pages + 63) / 64;
  if (e.num_pages % 64) {
    region.page_bitmap()[words - 1].store(~0ull << (e.num_pages % 64), std::memory_order_relaxed);
  }
  // The summary of the bitmap above (O(pages / 64): 16 MiB for a 1 TiB heap).
  RebuildFreeRuns(region);
  sb.next_client_id.store(1, std::memory_order_relaxed);
  region.event_ring().head.store(1, std::memory_order_relaxed);
  if (region.persist_mode() == PersistMode::kNone || region.persist_mode() == PersistMode::kMsync) {
    if (msync(region.base(), e.heap_offset, MS_SYNC) != 0 && errno != EINVAL && errno != ENOMEM) {
      return Status(GISMO_ERR_IO, Errno("cannot flush region", path));
    }
  } else {
    region.Persist(uint64_t{0}, e.heap_offset);
  }
  sb.state.store(static_cast<uint64_t>(RegionState::kReady), std::memory_order_release);
  // A durable region is ready on the medium only after all of the above.
  region.Persist(uint64_t{0}, sizeof(Superblock));
  if (region.persist_errors() != 0) {
    return Status(GISMO_ERR_IO, "cannot write region '" + path + "' to its medium (msync failed)");
  }
  return std::move(*r);
}

Result<std::unique_ptr<Region>> Region::OpenOrFormat(const std::string& path,
                                                     const FormatOptions& opts, bool force_format,
                                                     bool* formatted) {
  *formatted = false;
  if (!force_format) {
    struct stat st {};
    bool exists = stat(path.c_str(), &st) == 0;
    bool empty_file = exists && S_ISREG(st.st_mode) && st.st_size == 0;
    if (exists && !empty_file) {
      auto r = Open(path);
      if (!r.ok() && r.status().code() == GISMO_ERR_BAD_REGION) {
        return Status(GISMO_ERR_BAD_REGION,
                      r.status().message() +
                          ". Refusing to overwrite it; pass --format to format it anew "
                          "(this destroys its contents)");
      }
      // A sparse region file (formatted by an older build, or copied) is
      // given its space now: the manager refuses to serve a region whose
      // next page may not exist (SIGBUS in whoever touches it).
      if (r.ok() && S_ISREG(st.st_mode) &&
          static_cast<uint64_t>(st.st_blocks) * 512 < (*r)->size()) {
        if (Status s = ReserveSpace((*r)->fd_, (*r)->size(), path, false); !s.ok()) return s;
      }
      return r;
    }
  }
  *formatted = true;
  return Format(path, opts);
}

uint64_t LockWaitNs(const Region& r) {
  constexpr uint64_t kDefaultLockWaitNs = 2'000'000'000;  // lock_wait_ms == 0
  const uint64_t ms = r.sb().lock_wait_ms.load(std::memory_order_relaxed);
  return ms == 0 ? kDefaultLockWaitNs : std::min(ms, kMaxLockWaitMs) * 1'000'000;
}

std::vector<uint32_t> OwnerHelperSlots(const Region& r) {
  const OwnerHelpersLine& line = r.sb().owner_helpers;
  if (r.noncoherent()) InvalidateLines(&line, sizeof(line));
  std::vector<uint32_t> slots;
  for (uint32_t k = 1; k < kMaxOwnerThreads; ++k) {
    const uint64_t v = __atomic_load_n(&line.slots[k], __ATOMIC_RELAXED);
    if (v > 1 && v - 1 < r.max_clients()) slots.push_back(static_cast<uint32_t>(v - 1));
  }
  return slots;
}

Result<uint64_t> ParseSize(const std::string& text) {
  size_t pos = 0;
  double value = 0;
  try {
    value = std::stod(text, &pos);
  } catch (...) {
    return Status(GISMO_ERR_INVALID_ARGUMENT, "not a size: '" + text + "'");
  }
  std::string unit = text.substr(pos);
  while (!unit.empty() && unit.front() == ' ') unit.erase(0, 1);
  double mult = 0;
  static const std::pair<const char*, double> kUnits[] = {{"", 1},
                                                          {"B", 1},
                                                          {"K", 1024.0},
                                                          {"KiB", 1024.0},
                                                          {"KB", 1e3},
                                                          {"M", 1048576.0},
                                                          {"MiB", 1048576.0},
                                                          {"MB", 1e6},
                                                          {"G", 1073741824.0},
                                                          {"GiB", 1073741824.0},
                                                          {"GB", 1e9},
                                                          {"T", 1099511627776.0},
                                                          {"TiB", 1099511627776.0},
                                                          {"TB", 1e12},
                                                          {"k", 1024.0},
                                                          {"m", 1048576.0},
                                                          {"g", 1073741824.0}};
  for (auto& [name, m] : kUnits) {
    if (unit == name) mult = m;
  }
  if (mult == 0 || !(value >= 0) || std::isinf(value)) {
    return Status(GISMO_ERR_INVALID_ARGUMENT,
                  "not a size: '" + text + "' (examples: 512MiB, 4GiB, 1048576)");
  }
  // 2^64 is exact as a double; anything at or above it does not fit (the
  // conversion would be undefined, and gave 0).
  if (value * mult >= 18446744073709551616.0) {
    return Status(GISMO_ERR_INVALID_ARGUMENT, "size '" + text + "' is too large");
  }
  return static_cast<uint64_t>(value * mult);
}

std::string FormatSize(uint64_t bytes) {
  static const char* kNames[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(bytes);
  int i = 0;
  while (v >= 1024 && i < 5) {
    v /= 1024;
    ++i;
  }
  char buf[32];
  if (i == 0) {
    snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
  } else {
    snprintf(buf, sizeof buf, v < 10 ? "%.2f %s" : (v < 100 ? "%.1f %s" : "%.0f %s"), v, kNames[i]);
  }
  return buf;
}

}  // namespace gismo::region
