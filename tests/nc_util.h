// Helpers of the non-coherence tests: shared memory that survives fork, and
// a child run to its death.
#ifndef GISMO_TESTS_NC_UTIL_H_
#define GISMO_TESTS_NC_UTIL_H_

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <utility>

#include "region/cache_sim.h"

namespace gismo::testing {

// An anonymous MAP_SHARED mapping (zeroed): the "device" every simulated
// host (thread or forked process) sees, plus the checker's version words.
class SharedMemory {
 public:
  explicit SharedMemory(uint64_t size) : size_(size) {
    void* m = mmap(nullptr, size + size / 64 * 8, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) abort();
    base_ = static_cast<uint8_t*>(m);
  }
  ~SharedMemory() { munmap(base_, size_ + size_ / 64 * 8); }
  uint8_t* base() const { return base_; }
  uint64_t size() const { return size_; }
  std::atomic<uint64_t>* versions() const {
    return reinterpret_cast<std::atomic<uint64_t>*>(base_ + size_);
  }
  uint64_t* word(uint64_t i) const { return reinterpret_cast<uint64_t*>(base_) + i; }

 private:
  uint8_t* base_;
  uint64_t size_;
};

// A simulated host's cache of 8 lines with random early write-backs (20% of
// accesses) and evictions (10%), in checker mode over m's version words: the
// setting the ring protocols' tests run under.
inline region::CacheSimOptions Chaotic(const SharedMemory& m, uint64_t seed) {
  region::CacheSimOptions o;
  o.seed = seed;
  o.capacity_lines = 8;  // small: evictions happen on their own too
  o.evict_ppm = 100000;
  o.early_writeback_ppm = 200000;
  o.versions = m.versions();
  return o;
}

// Runs fn in a forked child and waits for it. Returns the child's wait
// status: a child that ends by `raise(SIGKILL)` is a host that died.
template <typename Fn>
int RunChild(Fn&& fn) {
  const pid_t pid = fork();
  if (pid == 0) {
    fn();
    _exit(0);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
  }
  return status;
}

inline bool Killed(int status) { return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL; }

// A simulated host whose line operation number `at` (counting from 0) first
// runs `hook`: another host's whole step sequence at that instant, for an
// interleaving sweep, or the host's death (DyingLines).
struct SteppedLines {
  region::CacheSim& sim;
  uint64_t ops = 0;
  uint64_t at = ~uint64_t{0};
  std::function<void()> hook = nullptr;
  void Tick() {
    if (ops++ == at && hook) {
      auto h = std::move(hook);
      hook = nullptr;
      h();
    }
  }
  uint64_t Load(const uint64_t* p) {
    Tick();
    return sim.Load(p);
  }
  void Store(uint64_t* p, uint64_t v) {
    Tick();
    sim.Store(p, v);
  }
  void Flush(const void* p, uint64_t n) {
    Tick();
    sim.Flush(p, n);
  }
  void Invalidate(const void* p, uint64_t n) {
    Tick();
    sim.Invalidate(p, n);
  }
};

// A host that dies at its line operation number k: SIGKILL, which takes its
// simulated cache (in its heap), dirty lines included, with it. Use in a
// RunChild.
inline SteppedLines DyingLines(region::CacheSim& sim, uint64_t k) {
  return SteppedLines{sim, 0, k, [] { raise(SIGKILL); }};
}

}  // namespace gismo::testing

#endif  // GISMO_TESTS_NC_UTIL_H_
