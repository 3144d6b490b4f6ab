// Compiled only into the test variant of the core (see persist_sim.h).
#include "region/persist_sim.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/crash_point.h"
#include "region/region.h"

#ifndef GISMO_CRASH_POINTS
#error "persist_sim.cc belongs to test builds only (GISMO_CRASH_POINTS)"
#endif

namespace gismo::region::persist_sim {
namespace {

// One simulator per process: set by Attach before any other thread of the
// process uses the region, read-only afterwards.
struct Sim {
  const Region* region = nullptr;
  std::string path;
  int fd = -1;
  uint8_t* shadow = nullptr;
  uint64_t size = 0;
  uint64_t seed = 0;
};
Sim g_sim;

// Exclusive flock of the shadow for the scope: a Persist's copy and the
// power cut's reading of the shadow never interleave.
class ShadowLock {
 public:
  explicit ShadowLock(int fd) : fd_(fd) {
    while (flock(fd_, LOCK_EX) != 0 && errno == EINTR) {
    }
  }
  ~ShadowLock() { flock(fd_, LOCK_UN); }

 private:
  int fd_;
};

void CutHook() { PowerCut(); }

}  // namespace

bool Attach(const Region& r) {
  const char* path = getenv("GISMO_PERSIST_SHADOW");
  if (path == nullptr || *path == '\0' || g_sim.region != nullptr) return false;
  const int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    fprintf(stderr, "persist_sim: cannot open shadow '%s': %s\n", path, strerror(errno));
    abort();
  }
  {
    ShadowLock lock(fd);
    struct stat st {};
    if (fstat(fd, &st) != 0 ||
        (static_cast<uint64_t>(st.st_size) < r.size() && ftruncate(fd, r.size()) != 0)) {
      fprintf(stderr, "persist_sim: cannot size shadow '%s': %s\n", path, strerror(errno));
      abort();
    }
  }
  void* m = mmap(nullptr, r.size(), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (m == MAP_FAILED) {
    fprintf(stderr, "persist_sim: cannot map shadow '%s': %s\n", path, strerror(errno));
    abort();
  }
  g_sim.region = &r;
  g_sim.path = path;
  g_sim.fd = fd;
  g_sim.shadow = static_cast<uint8_t*>(m);
  g_sim.size = r.size();
  const char* seed = getenv("GISMO_PERSIST_SEED");
  g_sim.seed = (seed ? strtoull(seed, nullptr, 10) : 1) * 1000003 + static_cast<uint64_t>(getpid());
  SetCrashHook(&CutHook);
  return true;
}

void Persist(const Region& r, uint64_t offset, uint64_t length) {
  if (&r != g_sim.region) return;
  const uint64_t start = offset & ~(kCacheLine - 1);
  const uint64_t end = std::min(g_sim.size, (offset + length + kCacheLine - 1) & ~(kCacheLine - 1));
  if (start >= end) return;
  ShadowLock lock(g_sim.fd);
  // Word by word with relaxed loads: other processes write the region
  // concurrently, as they would while a real cache line is written back.
  const auto* src = reinterpret_cast<const std::atomic<uint64_t>*>(r.base() + start);
  auto* dst = reinterpret_cast<uint64_t*>(g_sim.shadow + start);
  for (uint64_t i = 0; i < (end - start) / 8; ++i) dst[i] = src[i].load(std::memory_order_relaxed);
}

void PowerCut() {
  if (g_sim.region == nullptr) return;
  const uint8_t* live = g_sim.region->base();
  std::vector<uint8_t> medium(g_sim.size);
  std::mt19937_64 rng(g_sim.seed);
  uint64_t dirty = 0, written = 0;
  {
    ShadowLock lock(g_sim.fd);
    std::memcpy(medium.data(), g_sim.shadow, g_sim.size);
    for (uint64_t off = 0; off < g_sim.size; off += kCacheLine) {
      if (std::memcmp(live + off, medium.data() + off, kCacheLine) == 0) continue;
      ++dirty;
      if (rng() & 1) {
        std::memcpy(medium.data() + off, live + off, kCacheLine);
        ++written;
      }
    }
  }
  const std::string tmp = g_sim.path + ".cut.tmp", cut = g_sim.path + ".cut";
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  bool ok = fd >= 0;
  for (uint64_t done = 0; ok && done < g_sim.size;) {
    const ssize_t n = write(fd, medium.data() + done, g_sim.size - done);
    ok = n > 0;
    if (ok) done += static_cast<uint64_t>(n);
  }
  if (fd >= 0) close(fd);
  if (!ok || rename(tmp.c_str(), cut.c_str()) != 0) {
    fprintf(stderr, "persist_sim: cannot write '%s': %s\n", cut.c_str(), strerror(errno));
    return;
  }
  fprintf(stderr, "persist_sim: power cut: %llu dirty lines, %llu of them written early\n",
          static_cast<unsigned long long>(dirty), static_cast<unsigned long long>(written));
}

}  // namespace gismo::region::persist_sim
