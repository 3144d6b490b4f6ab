#include "region/cache_lines.h"

#include <atomic>

#include "region/view_sim.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif
#if defined(GISMO_LINES_TSAN)
#include <sanitizer/tsan_interface.h>
#endif

namespace gismo::region {
namespace {

struct Insns {
  FlushInsn flush, invalidate;
};

Insns Detect() {
#if defined(__x86_64__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  bool clwb = false, clflushopt = false;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
    clwb = (b & (1u << 24)) != 0;
    clflushopt = (b & (1u << 23)) != 0;
  }
  const FlushInsn opt = clflushopt ? FlushInsn::kClflushopt : FlushInsn::kClflush;
  return {clwb ? FlushInsn::kClwb : opt, opt};  // every x86-64 has CLFLUSH
#else
  return {FlushInsn::kNone, FlushInsn::kNone};
#endif
}

// Set once at load time, read-only afterwards.
const Insns g_insns = Detect();

#if defined(GISMO_LINES_TSAN)
// `sync` (__tsan_release or __tsan_acquire) on every cache line of
// [p, p + n), as the flush or invalidate of that line orders it
// (cache_lines.h).
void TsanSyncLines(void (*sync)(void*), const void* p, uint64_t n) {
  const uintptr_t end = reinterpret_cast<uintptr_t>(p) + n;
  for (uintptr_t a = reinterpret_cast<uintptr_t>(p) & ~uintptr_t{kCacheLine - 1}; a < end;
       a += kCacheLine) {
    sync(reinterpret_cast<void*>(a));
  }
}
#endif

#if defined(__x86_64__)
__attribute__((target("clwb"))) void Clwb(const uint8_t* p, const uint8_t* end) {
  for (; p < end; p += kCacheLine) _mm_clwb(const_cast<uint8_t*>(p));
}
__attribute__((target("clflushopt"))) void Clflushopt(const uint8_t* p, const uint8_t* end) {
  for (; p < end; p += kCacheLine) _mm_clflushopt(const_cast<uint8_t*>(p));
}
void Clflush(const uint8_t* p, const uint8_t* end) {
  for (; p < end; p += kCacheLine) _mm_clflush(p);
}
void Lines(FlushInsn f, const void* p, uint64_t n) {
  const auto* start =
      reinterpret_cast<const uint8_t*>(reinterpret_cast<uintptr_t>(p) & ~(kCacheLine - 1));
  const auto* end = static_cast<const uint8_t*>(p) + n;
  switch (f) {
    case FlushInsn::kClwb:
      Clwb(start, end);
      return;
    case FlushInsn::kClflushopt:
      Clflushopt(start, end);
      return;
    default:
      Clflush(start, end);
      return;
  }
}
#endif

}  // namespace

FlushInsn FlushInstruction() { return g_insns.flush; }
FlushInsn InvalidateInstruction() { return g_insns.invalidate; }
bool NonCoherentSupported() { return g_insns.invalidate != FlushInsn::kNone; }

const char* FlushInsnName(FlushInsn f) {
  switch (f) {
    case FlushInsn::kClwb:
      return "CLWB";
    case FlushInsn::kClflushopt:
      return "CLFLUSHOPT";
    case FlushInsn::kClflush:
      return "CLFLUSH";
    case FlushInsn::kNone:
      return "none";
  }
  return "?";
}

void FlushLines(const void* p, uint64_t n) {
  StartFlushLines(p, n);
  FlushFence();
}

void StartFlushLines(const void* p, uint64_t n) {
#if defined(GISMO_LINES_TSAN)
  TsanSyncLines(__tsan_release, p, n);
#endif
  if (view_sim::Flush(p, n)) return;  // the simulator's write-back is complete at once
#if defined(__x86_64__)
  if (n != 0) Lines(g_insns.flush, p, n);
#endif
}

void FlushFence() {
  // Later stores of this thread are ordered after the write-backs it began
  // (the SFENCE), and after the flushed stores for the C++ model.
#if defined(__x86_64__)
  _mm_sfence();
#endif
  std::atomic_thread_fence(std::memory_order_release);
}

void InvalidateLines(const void* p, uint64_t n) {
  if (view_sim::Invalidate(p, n)) {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    return;
  }
#if defined(__x86_64__)
  if (n != 0) Lines(g_insns.invalidate, p, n);
#endif
  // MFENCE: later loads wait for the flushes (an SFENCE would not hold them).
  std::atomic_thread_fence(std::memory_order_seq_cst);
#if defined(GISMO_LINES_TSAN)
  TsanSyncLines(__tsan_acquire, p, n);
#endif
}

}  // namespace gismo::region
