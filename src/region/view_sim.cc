#include "region/view_sim.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>

#include "common/clock.h"
#include "region/layout.h"

namespace gismo::region::view_sim {
namespace {

constexpr uint64_t kLine = kCacheLine;
constexpr uint64_t kWords = kLine / sizeof(uint64_t);
constexpr uint64_t kPage = 4096;
// One lock word per stripe of lines: 2 MiB of locks, a multiple of every
// page size a regular file is mapped with.
constexpr uint64_t kStripes = uint64_t{1} << 18;
constexpr uint64_t kLockBytes = kStripes * sizeof(uint64_t);
constexpr uint64_t kLockAlign = uint64_t{2} << 20;

// One simulated view. `view` is published last (release) and cleared first,
// so a lookup that sees it sees the rest.
struct Sim {
  std::atomic<uint8_t*> view{nullptr};
  uint64_t size = 0;
  uint8_t* clean = nullptr;
  uint8_t* device = nullptr;
  std::atomic<uint64_t>* locks = nullptr;
  void* view_reservation = nullptr;
  uint64_t view_reservation_len = 0;
  // An open file description of the region file of this process's own,
  // holding the write lock on byte kLiveBase + Token() while it lives:
  // others see it die (any PID namespace), -1 if it could not be made.
  int live_fd = -1;
};
constexpr int kMaxSims = 64;
Sim g_sims[kMaxSims];
std::mutex g_map_mu;  // serializes Map and Unmap

// The lock holder's mark: a random token of this process (set again in a
// forked child), below 2^48. A process holds a lock on byte kLiveBase +
// token of each region file it maps (Sim::live_fd) for as long as it lives,
// so a waiter in any PID namespace of the kernel can tell a dead holder
// from a live one (a pid cannot: pids repeat across namespaces).
constexpr off_t kLiveBase = off_t{1} << 62;
std::atomic<uint64_t> g_token{0};
uint64_t NewToken() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t z = static_cast<uint64_t>(getpid()) * 0x9E3779B97F4A7C15ull ^
               static_cast<uint64_t>(ts.tv_nsec) ^ (static_cast<uint64_t>(ts.tv_sec) << 30);
  z = (z ^ (z >> 31)) * 0xBF58476D1CE4E5B9ull;
  z ^= z >> 29;
  return (z & ((uint64_t{1} << 48) - 1)) | 1;
}
// Opens a new description of what this process's `fd` refers to (through
// /proc/self/fd; async-signal-safe). -1 if it cannot.
int Reopen(int fd) {
  static constexpr char kPrefix[] = "/proc/self/fd/";
  char path[32];
  std::memcpy(path, kPrefix, sizeof kPrefix);
  char digits[12];
  int n = 0;
  for (unsigned v = static_cast<unsigned>(fd); n == 0 || v != 0; v /= 10) {
    digits[n++] = static_cast<char>('0' + v % 10);
  }
  size_t at = sizeof kPrefix - 1;
  while (n > 0) path[at++] = digits[--n];
  path[at] = '\0';
  return open(path, O_RDWR | O_CLOEXEC);
}
bool HoldLive(int fd, uint64_t token) {
  struct flock l {};
  l.l_type = F_WRLCK;
  l.l_whence = SEEK_SET;
  l.l_start = kLiveBase + static_cast<off_t>(token);
  l.l_len = 1;
  return fcntl(fd, F_OFD_SETLK, &l) == 0;
}
// A forked child shares its parent's open file descriptions, and with
// them the parent's live locks: it gives its copies up for descriptions
// of its own, locked under a token of its own. (Only async-signal-safe
// calls; no lock is taken: another thread of the parent may have held one.)
void AfterForkInChild() {
  const uint64_t token = NewToken();
  g_token.store(token, std::memory_order_relaxed);
  for (Sim& s : g_sims) {
    if (s.view.load(std::memory_order_relaxed) == nullptr || s.live_fd < 0) continue;
    const int fd = Reopen(s.live_fd);
    close(s.live_fd);
    s.live_fd = -1;
    if (fd >= 0 && HoldLive(fd, token)) {
      s.live_fd = fd;
    } else if (fd >= 0) {
      close(fd);
    }
  }
}
uint64_t Token() {
  uint64_t t = g_token.load(std::memory_order_relaxed);
  if (t == 0) {
    static std::once_flag once;
    std::call_once(once, [] {
      pthread_atfork(nullptr, nullptr, AfterForkInChild);
      g_token.store(NewToken(), std::memory_order_relaxed);
    });
    t = g_token.load(std::memory_order_relaxed);
  }
  return t;
}

uint64_t EnvOr(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const unsigned long long x = std::strtoull(v, &end, 10);
  return end != nullptr && *end == '\0' ? x : fallback;
}

const uint64_t g_seed = EnvOr("GISMO_SIM_SEED", 1);
const uint64_t g_chaos_ppm = EnvOr("GISMO_SIM_CHAOS_PPM", 20000);
std::atomic<uint64_t> g_draws{0};

// A seeded draw (splitmix64 of a process-wide counter): the sequence is the
// seed's, the interleaving of threads is not.
uint64_t Draw() {
  uint64_t z = g_seed * 0x9E3779B97F4A7C15ull + g_draws.fetch_add(1, std::memory_order_relaxed);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The stripe lock of the line at `off`. Holder: its process's token
// (acquire on taking, release on leaving, so the line's words move under
// it). A holder that died inside a write-back is taken over as soon as it
// is seen gone (HolderGone, in any PID namespace), or after 5 s whatever is
// seen. A holder that is only stopped keeps it for those 5 s, as a host
// would keep a line it is writing back.
std::atomic<uint64_t>& StripeOf(const Sim& s, uint64_t off) {
  return s.locks[(off / kLine) & (kStripes - 1)];
}
// The process that marked a lock with `token` is gone: nothing holds its
// live byte of the region file (its descriptions closed when it died,
// before any zombie state). Never for this process's own token (another
// of its threads holds the lock).
bool HolderGone(const Sim& s, uint64_t token) {
  if (token == Token() || s.live_fd < 0) return false;
  struct flock l {};
  l.l_type = F_WRLCK;
  l.l_whence = SEEK_SET;
  l.l_start = kLiveBase + static_cast<off_t>(token);
  l.l_len = 1;
  return fcntl(s.live_fd, F_OFD_GETLK, &l) == 0 && l.l_type == F_UNLCK;
}

void Lock(const Sim& s, std::atomic<uint64_t>& w) {
  const uint64_t me = Token();
  uint64_t seen = 0;
  if (w.compare_exchange_strong(seen, me, std::memory_order_acquire, std::memory_order_relaxed)) {
    return;
  }
  const uint64_t start = MonotonicNs();
  for (uint64_t spins = 1;; ++spins) {
    seen = 0;
    if (w.compare_exchange_weak(seen, me, std::memory_order_acquire, std::memory_order_relaxed)) {
      return;
    }
    if (spins % 64 == 0) sched_yield();
    if (spins % 4096 != 0 || seen == 0) continue;
    const uint64_t waited = MonotonicNs() - start;
    if (HolderGone(s, seen) || waited > 5'000'000'000) {
      if (w.compare_exchange_strong(seen, me, std::memory_order_acquire,
                                    std::memory_order_relaxed)) {
        return;
      }
    }
  }
}
void Unlock(std::atomic<uint64_t>& w) { w.store(0, std::memory_order_release); }

uint64_t* Words(uint8_t* base, uint64_t off) { return reinterpret_cast<uint64_t*>(base + off); }

// REQUIRES: the line's stripe lock. Writes the line back whole if it is
// dirty (its view differs from its clean image).
void WriteBackLocked(const Sim& s, uint64_t off) {
  uint64_t* view = Words(s.view.load(std::memory_order_relaxed), off);
  uint64_t* clean = Words(s.clean, off);
  uint64_t* device = Words(s.device, off);
  uint64_t now[kWords];
  bool dirty = false;
  for (uint64_t i = 0; i < kWords; ++i) {
    // Relaxed: other threads of this host may store into the line meanwhile;
    // what they store after this load stays dirty for their own flush.
    now[i] = __atomic_load_n(&view[i], __ATOMIC_RELAXED);
    dirty |= now[i] != clean[i];
  }
  if (!dirty) return;
  for (uint64_t i = 0; i < kWords; ++i) {
    __atomic_store_n(&device[i], now[i], __ATOMIC_RELAXED);
    clean[i] = now[i];
  }
}

// REQUIRES: the line's stripe lock, and the line clean as of the caller's
// write-back. Fills the line from the device. A word a thread of this host
// stored into since the write-back keeps that store (the swap expects the
// clean image), and stays dirty.
void FillLocked(const Sim& s, uint64_t off) {
  uint64_t* view = Words(s.view.load(std::memory_order_relaxed), off);
  uint64_t* clean = Words(s.clean, off);
  const uint64_t* device = Words(s.device, off);
  for (uint64_t i = 0; i < kWords; ++i) {
    const uint64_t memory = __atomic_load_n(&device[i], __ATOMIC_RELAXED);
    uint64_t expected = clean[i];
    if (memory != expected) {
      __atomic_compare_exchange_n(&view[i], &expected, memory, false, __ATOMIC_RELAXED,
                                  __ATOMIC_RELAXED);
    }
    clean[i] = memory;
  }
}

void WriteBack(const Sim& s, uint64_t off) {
  std::atomic<uint64_t>& lock = StripeOf(s, off);
  Lock(s, lock);
  WriteBackLocked(s, off);
  Unlock(lock);
}

void Evict(const Sim& s, uint64_t off) {
  std::atomic<uint64_t>& lock = StripeOf(s, off);
  Lock(s, lock);
  WriteBackLocked(s, off);
  FillLocked(s, off);
  Unlock(lock);
}

// What the hardware may do at any moment: write a line back early, or evict
// one. Both pick a line of the page the caller works in, where its dirty
// lines are.
void Chaos(const Sim& s, uint64_t off) {
  if (g_chaos_ppm == 0) return;
  const uint64_t page = off & ~(kPage - 1);
  const uint64_t r = Draw();
  if (r % 1'000'000 < g_chaos_ppm) {
    const uint64_t line = page + ((r >> 20) % (kPage / kLine)) * kLine;
    if (line < s.size) WriteBack(s, line);
  }
  const uint64_t q = Draw();
  if (q % 1'000'000 < g_chaos_ppm) {
    const uint64_t line = page + ((q >> 20) % (kPage / kLine)) * kLine;
    if (line < s.size) Evict(s, line);
  }
}

const Sim* Find(const void* p) {
  const auto* b = static_cast<const uint8_t*>(p);
  for (const Sim& s : g_sims) {
    const uint8_t* v = s.view.load(std::memory_order_acquire);
    if (v != nullptr && b >= v && b < v + s.size) return &s;
  }
  return nullptr;
}

// The lines of [p, p + n) as offsets into `s`.
void LineRange(const Sim& s, const void* p, uint64_t n, uint64_t* first, uint64_t* end) {
  const uint64_t off = static_cast<uint64_t>(static_cast<const uint8_t*>(p) -
                                             s.view.load(std::memory_order_relaxed));
  *first = off & ~(kLine - 1);
  uint64_t last = n == 0 ? off : off + n;
  if (last > s.size) last = s.size;
  *end = (last + kLine - 1) & ~(kLine - 1);
}

// Applies `op` to every line of [p, p + n), then (with `chaos`) lets the
// hardware's own write-backs and evictions happen. False if the range is
// not in a simulated view.
bool ForEachLine(const void* p, uint64_t n, void (*op)(const Sim&, uint64_t), bool chaos) {
  const Sim* s = Find(p);
  if (s == nullptr) return false;
  uint64_t first = 0, end = 0;
  LineRange(*s, p, n, &first, &end);
  for (uint64_t off = first; off < end; off += kLine) op(*s, off);
  if (chaos) Chaos(*s, first);
  return true;
}

bool AllZero(const uint8_t* p, uint64_t n) {
  const auto* w = reinterpret_cast<const uint64_t*>(p);
  for (uint64_t i = 0; i < n / sizeof(uint64_t); ++i) {
    if (w[i] != 0) return false;
  }
  return true;
}

// Copies each page of the first `size` bytes of `fd` that is not all
// zeros into `view` and `clean` (which start zero). Only the file's data
// extents are read (SEEK_DATA/SEEK_HOLE: a hole reads as zeros), through
// pread into a bounce buffer rather than through a mapping: in a VM a first
// touch of each page of a mapping costs several microseconds, and a mostly
// zero 256 MiB region took 0.4 s per attach that way. (Only regular files
// are simulated; the product itself reads regions through mappings only.)
// A file system that cannot tell holes, or a pread that fails, falls back
// to the mapping `device`, page by page.
void Fill(int fd, uint64_t size, const uint8_t* device, uint8_t* view, uint8_t* clean) {
  constexpr uint64_t kChunk = uint64_t{1} << 20;
  std::unique_ptr<uint8_t[]> buffer(new uint8_t[kChunk]);
  const auto copy_page = [&](uint64_t off, const uint8_t* src) {
    if (AllZero(src, kPage)) return;
    std::memcpy(view + off, src, kPage);
    std::memcpy(clean + off, src, kPage);
  };
  const off_t file_offset = lseek(fd, 0, SEEK_CUR);  // the caller's: kept as it was
  uint64_t at = 0;
  while (at < size) {
    const off_t data = lseek(fd, static_cast<off_t>(at), SEEK_DATA);
    if ((data < 0 && errno == ENXIO) || (data >= 0 && static_cast<uint64_t>(data) >= size)) {
      at = size;  // nothing but holes past `at`
      break;
    }
    if (data < 0) break;  // holes not told: the mapping
    const off_t hole = lseek(fd, data, SEEK_HOLE);
    const uint64_t begin = static_cast<uint64_t>(data) & ~(kPage - 1);
    const uint64_t end =
        hole < 0 ? size : std::min(size, (static_cast<uint64_t>(hole) + kPage - 1) & ~(kPage - 1));
    for (at = begin; at < end;) {
      const uint64_t want = std::min(kChunk, end - at);
      const ssize_t got = pread(fd, buffer.get(), want, static_cast<off_t>(at));
      if (got <= 0) break;
      const uint64_t pages = static_cast<uint64_t>(got) / kPage;
      if (pages == 0) break;
      for (uint64_t i = 0; i < pages; ++i) copy_page(at + i * kPage, buffer.get() + i * kPage);
      at += pages * kPage;
    }
    if (at < end) break;  // a short read: the mapping from here
  }
  for (; at < size; at += kPage) copy_page(at, device + at);
  if (file_offset >= 0) lseek(fd, file_offset, SEEK_SET);
}

}  // namespace

uint8_t* Map(int fd, uint64_t size, uint64_t align) {
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || size % kPage != 0) return nullptr;
  const uint64_t lock_offset = (size + kLockAlign - 1) / kLockAlign * kLockAlign;
  if (static_cast<uint64_t>(st.st_size) < lock_offset + kLockBytes &&
      ftruncate(fd, static_cast<off_t>(lock_offset + kLockBytes)) != 0) {
    return nullptr;
  }
  std::lock_guard<std::mutex> guard(g_map_mu);
  Sim* slot = nullptr;
  for (Sim& s : g_sims) {
    if (s.view.load(std::memory_order_relaxed) == nullptr) {
      slot = &s;
      break;
    }
  }
  if (slot == nullptr) {
    errno = EMFILE;
    return nullptr;
  }
  void* device = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  void* locks = mmap(nullptr, kLockBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
                     static_cast<off_t>(lock_offset));
  void* clean = mmap(nullptr, size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  const uint64_t reserve = size + align;
  void* r = mmap(nullptr, reserve, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  void* view = MAP_FAILED;
  if (r != MAP_FAILED) {
    const uintptr_t aligned = (reinterpret_cast<uintptr_t>(r) + align - 1) / align * align;
    view = mmap(reinterpret_cast<void*>(aligned), size, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  }
  if (device == MAP_FAILED || locks == MAP_FAILED || clean == MAP_FAILED || view == MAP_FAILED) {
    const int e = errno;
    if (device != MAP_FAILED) munmap(device, size);
    if (locks != MAP_FAILED) munmap(locks, kLockBytes);
    if (clean != MAP_FAILED) munmap(clean, size);
    if (r != MAP_FAILED) munmap(r, reserve);
    errno = e;
    return nullptr;
  }
  // The host's cache starts holding every line as memory holds it now
  // (pages of zeros stay unallocated): every read the protocol does not
  // precede with an invalidate sees this attach-time copy unless an
  // eviction refreshed it.
  Fill(fd, size, static_cast<const uint8_t*>(device), static_cast<uint8_t*>(view),
       static_cast<uint8_t*>(clean));
  slot->size = size;
  slot->clean = static_cast<uint8_t*>(clean);
  slot->device = static_cast<uint8_t*>(device);
  slot->locks = static_cast<std::atomic<uint64_t>*>(locks);
  slot->view_reservation = r;
  slot->view_reservation_len = reserve;
  // A description of this process's own (`fd` may be shared, or closed
  // after the mapping): its live byte says this process lives.
  slot->live_fd = Reopen(fd);
  if (slot->live_fd >= 0 && !HoldLive(slot->live_fd, Token())) {
    close(slot->live_fd);
    slot->live_fd = -1;
  }
  slot->view.store(static_cast<uint8_t*>(view), std::memory_order_release);
  return static_cast<uint8_t*>(view);
}

void Unmap(uint8_t* view) {
  std::lock_guard<std::mutex> guard(g_map_mu);
  for (Sim& s : g_sims) {
    if (s.view.load(std::memory_order_relaxed) != view) continue;
    s.view.store(nullptr, std::memory_order_release);
    munmap(s.device, s.size);
    munmap(s.locks, kLockBytes);
    munmap(s.clean, s.size);
    munmap(s.view_reservation, s.view_reservation_len);
    s.size = 0;
    s.clean = s.device = nullptr;
    s.locks = nullptr;
    s.view_reservation = nullptr;
    s.view_reservation_len = 0;
    if (s.live_fd >= 0) close(s.live_fd);
    s.live_fd = -1;
    return;
  }
}

bool Flush(const void* p, uint64_t n) { return ForEachLine(p, n, WriteBack, true); }

bool HoldLineLockForTesting(const void* p) {
  const Sim* s = Find(p);
  if (s == nullptr) return false;
  const uint64_t off = static_cast<const uint8_t*>(p) - s->view.load(std::memory_order_relaxed);
  Lock(*s, StripeOf(*s, off));
  return true;
}

bool LineLockHolderGoneForTesting(const void* p) {
  const Sim* s = Find(p);
  if (s == nullptr) return false;
  const uint64_t off = static_cast<const uint8_t*>(p) - s->view.load(std::memory_order_relaxed);
  const uint64_t holder = StripeOf(*s, off).load(std::memory_order_acquire);
  return holder != 0 && HolderGone(*s, holder);
}

void Refresh(const void* p, uint64_t n) { (void)ForEachLine(p, n, Evict, false); }

bool Invalidate(const void* p, uint64_t n) { return ForEachLine(p, n, Evict, true); }

}  // namespace gismo::region::view_sim
