// A non-coherence simulator: what one host of a CXL 2.0 pool sees of memory
// that other hosts also cache, without hardware coherence between them.
// Test builds only (gismo_core_testing); the shipped library has none of it.
//
// Model. `memory` (a MAP_SHARED mapping every simulated host maps: a region
// file, or an anonymous shared mapping made before fork) is the device. Each
// CacheSim is one host's private write-back cache of 64-byte lines, kept in
// the process's own heap:
//  - Load of a line not cached fills it from memory (a miss); a Load of a
//    cached line returns the cached copy, however stale.
//  - Store writes the cached copy (filling it first) and marks it dirty; the
//    device does not see it.
//  - Flush writes every dirty line of the range back (the whole 64 bytes,
//    as hardware does) and keeps it cached, clean (CLWB).
//  - Invalidate writes back a dirty line of the range, then drops every line
//    of the range (CLFLUSHOPT), so the next Load reads memory.
//  - At any access, with the configured probabilities and a seeded
//    generator, a random cached line is evicted (written back if dirty) or a
//    random dirty line is written back early: hardware may do either at any
//    moment, so a protocol must be correct whichever happens. A full cache
//    evicts a random line on a miss.
//  - A killed host: its cache vanishes with it, dirty lines unwritten. A
//    process killed by a signal does exactly that (the cache is in its own
//    heap); DropDirty() does it in-process.
// So a read not preceded by the right invalidate may see stale data, and a
// write not flushed is lost when its process dies, as on the hardware.
//
// A line moves whole, as on the hardware (a fill and a write-back are each
// one 64-byte transfer, which the device serializes): a fill never mixes the
// words of two write-backs. That needs checker mode, whose version word per
// line is also the line's seqlock; without it, transfers may tear. A host
// must not die inside a write-back (its line's version would stay odd and
// every filler of that line would spin): tests kill hosts between line
// operations (DyingLines in tests/nc_util.h), never inside one.
//
// Checker mode (CacheSimOptions::versions): a word per line of memory,
// shared by all simulated hosts, counts the line's write-backs (by 2). A Load that
// hits a cached line whose memory version moved since this host filled it
// is recorded as a stale read (another host wrote the line since this
// host's last invalidate), whether or not the stale bytes mattered; a
// write-back of a line whose version moved since the fill is recorded as a
// conflicting write (two hosts write the line: one overwrites the other's
// bytes, the single-writer rule is broken).
//
// Threads: one CacheSim belongs to one thread at a time (a simulated host);
// memory and the version words are accessed with relaxed 64-bit atomics, so
// sims in several threads or processes may share them.
#ifndef GISMO_REGION_CACHE_SIM_H_
#define GISMO_REGION_CACHE_SIM_H_

#include <atomic>
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "region/layout.h"

namespace gismo::region {

struct CacheSimOptions {
  uint64_t seed = 1;
  // Lines the private cache holds; a miss when it is full evicts one.
  uint32_t capacity_lines = 1024;
  // Per access, in parts per million: evict a random cached line (written
  // back if dirty), and write a random dirty line back early.
  uint32_t evict_ppm = 0;
  uint32_t early_writeback_ppm = 0;
  // Checker mode: one word per line of memory (size / 64 words), zeroed
  // before the first sim uses it and shared by every sim of the test.
  std::atomic<uint64_t>* versions = nullptr;
};

class CacheSim {
 public:
  // `memory` is 64-byte aligned; `size` a multiple of 64.
  CacheSim(uint8_t* memory, uint64_t size, const CacheSimOptions& o);
  CacheSim(const CacheSim&) = delete;
  CacheSim& operator=(const CacheSim&) = delete;

  // The line-access seam (region/cache_lines.h). p is 8-byte aligned and
  // lies in memory (checked: a pointer outside it aborts).
  uint64_t Load(const uint64_t* p);
  void Store(uint64_t* p, uint64_t v);
  void Flush(const void* p, uint64_t n);
  void Invalidate(const void* p, uint64_t n);

  // The host dies: every dirty line is dropped unwritten, the cache emptied.
  void DropDirty();
  // An early write-back of the line holding p, now (if cached and dirty):
  // for tests that need one at a chosen instant (a torn multi-word update).
  void WriteBackLine(const void* p);

  struct StaleRead {
    uint64_t offset;          // of the line in memory
    uint64_t filled_version;  // what the line was when this host filled it
    uint64_t memory_version;  // what it is now
  };
  struct Stats {
    uint64_t loads = 0, stores = 0, misses = 0, write_backs = 0, early_write_backs = 0,
             evictions = 0, dropped_dirty = 0;
  };
  const Stats& stats() const { return stats_; }
  // Checker mode only (else empty).
  const std::vector<StaleRead>& stale_reads() const { return stale_reads_; }
  const std::vector<StaleRead>& conflicting_writes() const { return conflicting_writes_; }
  bool Cached(const void* p) const;
  bool Dirty(const void* p) const;

 private:
  struct Line {
    uint64_t w[kCacheLine / 8];
    uint64_t version;  // memory version when filled (checker mode)
    bool dirty;
  };
  uint64_t LineOf(const void* p) const;
  Line& Get(uint64_t line);  // fills on a miss
  void WriteBack(uint64_t line, Line& l);
  void Evict(uint32_t pos);  // by position in keys_
  void Chaos();              // the random early write-backs and evictions
  uint64_t Next();           // xorshift64*

  uint8_t* memory_;
  uint64_t size_;
  CacheSimOptions o_;
  uint64_t rng_;
  // The cached lines: keys_[i] is the line number of lines_[i]; pos_ maps a
  // line number to i (swap-remove keeps both dense for random picks).
  std::vector<uint64_t> keys_;
  std::vector<Line> lines_;
  std::unordered_map<uint64_t, uint32_t> pos_;
  Stats stats_;
  std::vector<StaleRead> stale_reads_, conflicting_writes_;
};

}  // namespace gismo::region

#endif  // GISMO_REGION_CACHE_SIM_H_
