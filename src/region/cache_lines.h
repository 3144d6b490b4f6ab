// Cache-line write-back and invalidation for memory that hosts share without
// hardware coherence (CXL 2.0 pools; see doc/noncoherent.md), and the
// access seam that the non-coherent protocol is written against.
//
// Contracts (x86-64; the only architecture the region supports today):
//  - FlushLines(p, n): every line overlapping [p, p + n) that this CPU holds
//    dirty is written back to memory, and every store this thread made
//    before the call is in memory before any store it makes after the call
//    returns. It uses CLWB if CPUID says so (the line may stay cached,
//    clean), else CLFLUSHOPT, else CLFLUSH, then SFENCE. A release fence
//    orders the same for the C++ memory model (coherent test machines).
//  - InvalidateLines(p, n): no line overlapping [p, p + n) stays in this
//    CPU's cache, so the next load of it reads memory. CLFLUSHOPT (else
//    CLFLUSH) of each line, then MFENCE: an SFENCE does not keep a later
//    load from passing the flush, an MFENCE does (and is a seq_cst fence for
//    the C++ model). A dirty line is written back first, as CLFLUSHOPT
//    does: callers invalidate only lines they do not write.
// Both are plain instructions, no system call; their cost per line and per
// MiB is printed by bench/nc_bench.cc.
#ifndef GISMO_REGION_CACHE_LINES_H_
#define GISMO_REGION_CACHE_LINES_H_

#include <cstdint>

#include "region/layout.h"

namespace gismo::region {

// The instruction FlushLines uses on this CPU.
enum class FlushInsn : uint8_t { kClwb, kClflushopt, kClflush, kNone };
FlushInsn FlushInstruction();
// The instruction InvalidateLines uses (kClflushopt or kClflush).
FlushInsn InvalidateInstruction();
const char* FlushInsnName(FlushInsn f);
// Whether this build and CPU can run the non-coherent protocol's flushes
// and invalidations (x86-64: always, CLFLUSH is architectural).
bool NonCoherentSupported();

void FlushLines(const void* p, uint64_t n);
void InvalidateLines(const void* p, uint64_t n);
// FlushLines in two halves, for a writer with several ranges that need no
// order among themselves, only all before its next store: StartFlushLines
// begins the write-backs of one range (CLWB or CLFLUSHOPT, no fence);
// FlushFence returns once every write-back this thread began is complete,
// and orders them before its later stores (SFENCE).
void StartFlushLines(const void* p, uint64_t n);
void FlushFence();

// The line-access seam of the non-coherent protocol. Every shared word the
// protocol touches is read with Load and written with Store; Flush and
// Invalidate are FlushLines and InvalidateLines. Two implementations:
//  - HwLines (here): real memory; loads and stores are relaxed 64-bit atomic
//    accesses (on a coherent machine other threads may touch the same words
//    at once), flushes and invalidations the instructions above.
//  - CacheSim (region/cache_sim.h, test builds): a simulated private
//    write-back cache per process, so a missing flush or invalidate shows.
// Code written against the seam is a template on it (request_ring.h), so the
// hardware path pays no virtual call.
//
// What orders these words with the data around them is the fences inside
// Flush (release) and Invalidate (seq_cst). ThreadSanitizer does not model
// standalone fences (GCC says so with -Wtsan), so in a TSan build FlushLines
// and InvalidateLines tell it what they stand for instead: a release, then
// an acquire, on each cache line of their range (cache_lines.cc). A reader
// then happens after the writer exactly when it invalidated the lines the
// writer flushed, after the writer flushed them; a flush or invalidate that
// is missing or misplaced still shows as a race.
#if defined(__SANITIZE_THREAD__)  // GCC; clang: __has_feature(thread_sanitizer)
#define GISMO_LINES_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define GISMO_LINES_TSAN 1
#endif
#endif
struct HwLines {
  static uint64_t Load(const uint64_t* p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
  static void Store(uint64_t* p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
  static void Flush(const void* p, uint64_t n) { FlushLines(p, n); }
  static void Invalidate(const void* p, uint64_t n) { InvalidateLines(p, n); }
};

}  // namespace gismo::region

#endif  // GISMO_REGION_CACHE_LINES_H_
