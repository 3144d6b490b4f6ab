// Compiled only into the test variant of the core (see cache_sim.h).
#include "region/cache_sim.h"

#include <cstdio>
#include <cstdlib>

namespace gismo::region {
namespace {
constexpr uint64_t kWordsPerLine = kCacheLine / 8;

std::atomic<uint64_t>* Words(uint8_t* p) { return reinterpret_cast<std::atomic<uint64_t>*>(p); }
}  // namespace

CacheSim::CacheSim(uint8_t* memory, uint64_t size, const CacheSimOptions& o)
    : memory_(memory), size_(size), o_(o), rng_(o.seed * 0x9E3779B97F4A7C15ull | 1) {
  if (reinterpret_cast<uintptr_t>(memory) % kCacheLine != 0 || size % kCacheLine != 0 ||
      o_.capacity_lines == 0) {
    fprintf(stderr, "CacheSim: memory must be whole 64-byte lines, capacity > 0\n");
    abort();
  }
  keys_.reserve(o_.capacity_lines);
  lines_.reserve(o_.capacity_lines);
}

uint64_t CacheSim::Next() {
  rng_ ^= rng_ >> 12;
  rng_ ^= rng_ << 25;
  rng_ ^= rng_ >> 27;
  return rng_ * 0x2545F4914F6CDD1Dull;
}

uint64_t CacheSim::LineOf(const void* p) const {
  const auto* b = static_cast<const uint8_t*>(p);
  if (b < memory_ || b >= memory_ + size_) {
    fprintf(stderr, "CacheSim: access outside the simulated memory\n");
    abort();
  }
  return static_cast<uint64_t>(b - memory_) / kCacheLine;
}

CacheSim::Line& CacheSim::Get(uint64_t line) {
  auto it = pos_.find(line);
  if (it != pos_.end()) return lines_[it->second];
  ++stats_.misses;
  if (keys_.size() >= o_.capacity_lines) Evict(static_cast<uint32_t>(Next() % keys_.size()));
  Line l{};
  std::atomic<uint64_t>* src = Words(memory_ + line * kCacheLine);
  if (o_.versions == nullptr) {
    for (uint64_t i = 0; i < kWordsPerLine; ++i) l.w[i] = src[i].load(std::memory_order_relaxed);
  } else {
    // A line moves whole: the version word is the line's seqlock (odd while
    // a write-back is storing it), so a fill never mixes two write-backs.
    std::atomic<uint64_t>& version = o_.versions[line];
    for (;;) {
      const uint64_t before = version.load(std::memory_order_acquire);
      if (before & 1) continue;
      for (uint64_t i = 0; i < kWordsPerLine; ++i) {
        l.w[i] = src[i].load(std::memory_order_relaxed);
      }
      std::atomic_thread_fence(std::memory_order_acquire);
      if (version.load(std::memory_order_relaxed) == before) {
        l.version = before;
        break;
      }
    }
  }
  pos_.emplace(line, static_cast<uint32_t>(keys_.size()));
  keys_.push_back(line);
  lines_.push_back(l);
  return lines_.back();
}

void CacheSim::WriteBack(uint64_t line, Line& l) {
  if (!l.dirty) return;
  std::atomic<uint64_t>* dst = Words(memory_ + line * kCacheLine);
  l.dirty = false;
  ++stats_.write_backs;
  if (o_.versions == nullptr) {
    for (uint64_t i = 0; i < kWordsPerLine; ++i) dst[i].store(l.w[i], std::memory_order_relaxed);
    return;
  }
  // The line's seqlock (see Get): odd while the words are stored, then the
  // next even value (release: a filler that reads it reads these words).
  std::atomic<uint64_t>& version = o_.versions[line];
  uint64_t was = version.load(std::memory_order_relaxed);
  while ((was & 1) != 0 || !version.compare_exchange_weak(was, was + 1, std::memory_order_acquire,
                                                          std::memory_order_relaxed)) {
    was = version.load(std::memory_order_relaxed);
  }
  std::atomic_thread_fence(std::memory_order_release);
  for (uint64_t i = 0; i < kWordsPerLine; ++i) dst[i].store(l.w[i], std::memory_order_relaxed);
  version.store(was + 2, std::memory_order_release);
  if (was != l.version) conflicting_writes_.push_back({line * kCacheLine, l.version, was});
  l.version = was + 2;
}

void CacheSim::Evict(uint32_t pos) {
  const uint64_t line = keys_[pos];
  WriteBack(line, lines_[pos]);
  ++stats_.evictions;
  const uint32_t last = static_cast<uint32_t>(keys_.size() - 1);
  if (pos != last) {
    keys_[pos] = keys_[last];
    lines_[pos] = lines_[last];
    pos_[keys_[pos]] = pos;
  }
  keys_.pop_back();
  lines_.pop_back();
  pos_.erase(line);
}

void CacheSim::Chaos() {
  if (keys_.empty()) return;
  if (o_.early_writeback_ppm != 0 && Next() % 1000000 < o_.early_writeback_ppm) {
    const uint32_t pos = static_cast<uint32_t>(Next() % keys_.size());
    if (lines_[pos].dirty) {
      WriteBack(keys_[pos], lines_[pos]);
      ++stats_.early_write_backs;
    }
  }
  if (o_.evict_ppm != 0 && Next() % 1000000 < o_.evict_ppm) {
    Evict(static_cast<uint32_t>(Next() % keys_.size()));
  }
}

uint64_t CacheSim::Load(const uint64_t* p) {
  const uint64_t line = LineOf(p);
  Chaos();
  ++stats_.loads;
  const bool hit = pos_.count(line) != 0;
  Line& l = Get(line);
  if (hit && o_.versions != nullptr) {
    const uint64_t now = o_.versions[line].load(std::memory_order_acquire);
    if (now != l.version) stale_reads_.push_back({line * kCacheLine, l.version, now});
  }
  return l.w[(reinterpret_cast<uintptr_t>(p) % kCacheLine) / 8];
}

void CacheSim::Store(uint64_t* p, uint64_t v) {
  const uint64_t line = LineOf(p);
  Chaos();
  ++stats_.stores;
  Line& l = Get(line);
  l.w[(reinterpret_cast<uintptr_t>(p) % kCacheLine) / 8] = v;
  l.dirty = true;
}

void CacheSim::Flush(const void* p, uint64_t n) {
  if (n != 0) {
    const uint64_t first = LineOf(p);
    const uint64_t last = LineOf(static_cast<const uint8_t*>(p) + n - 1);
    for (uint64_t line = first; line <= last; ++line) {
      auto it = pos_.find(line);
      if (it != pos_.end()) WriteBack(line, lines_[it->second]);
    }
  }
  std::atomic_thread_fence(std::memory_order_release);
}

void CacheSim::Invalidate(const void* p, uint64_t n) {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (n != 0) {
    const uint64_t first = LineOf(p);
    const uint64_t last = LineOf(static_cast<const uint8_t*>(p) + n - 1);
    for (uint64_t line = first; line <= last; ++line) {
      auto it = pos_.find(line);
      if (it != pos_.end()) {
        Evict(it->second);
        --stats_.evictions;  // asked for, not a random eviction
      }
    }
  }
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

void CacheSim::DropDirty() {
  for (const Line& l : lines_) stats_.dropped_dirty += l.dirty ? 1 : 0;
  keys_.clear();
  lines_.clear();
  pos_.clear();
}

void CacheSim::WriteBackLine(const void* p) {
  const uint64_t line = LineOf(p);
  auto it = pos_.find(line);
  if (it != pos_.end() && lines_[it->second].dirty) {
    WriteBack(line, lines_[it->second]);
    ++stats_.early_write_backs;
  }
}

bool CacheSim::Cached(const void* p) const { return pos_.count(LineOf(p)) != 0; }

bool CacheSim::Dirty(const void* p) const {
  auto it = pos_.find(LineOf(p));
  return it != pos_.end() && lines_[it->second].dirty;
}

}  // namespace gismo::region
