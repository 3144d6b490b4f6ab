// The free-run summary: a tree over the page bitmap that finds the lowest
// run of n free pages in O(log pages). Its shape and invariants are stated
// above FreeRunNode in src/region/layout.h; this is the one implementation,
// used by format, the allocator, Txn undo, recovery and gismo-fsck.
#ifndef GISMO_REGION_FREE_RUNS_H_
#define GISMO_REGION_FREE_RUNS_H_

#include <cstdint>

#include "region/layout.h"

namespace gismo::region {

class Region;

// The free runs of a span of pages.
struct FreeRuns {
  uint64_t longest = 0;
  uint64_t prefix = 0;
  uint64_t suffix = 0;
  bool operator==(const FreeRuns&) const = default;
};

// The free runs of one bitmap word (bit set: page in use).
FreeRuns LeafFreeRuns(uint64_t word);
// The free runs of two adjacent spans of `child_span` pages each.
FreeRuns CombineFreeRuns(const FreeRuns& left, const FreeRuns& right, uint64_t child_span);

enum class FreeRunFind {
  kFound,         // *first: the lowest run the summary knows of
  kNone,          // the summary says no run of n free pages exists
  kInconsistent,  // the summary contradicts itself or the bitmap
};
// Descends the summary to the lowest run of `n` (>= 1) free pages. The
// result is only as good as the summary: the caller checks the run against
// the bitmap before it uses it (BitsClear). O(log pages).
// REQUIRES: page_lock is held (else the answer may be stale).
FreeRunFind FindFreeRun(const Region& r, uint64_t n, uint64_t* first);
// Whether bits [first, first + n) of the page bitmap are all 0 and the run
// lies inside the heap.
bool PageRunFree(const Region& r, uint64_t first, uint64_t n);

// Recomputes the nodes above pages [first, first + n) from the bitmap (the
// range is clamped to the heap), bottom up, then persists them (durable
// regions). O(n / 64 + log pages).
// REQUIRES: page_lock is held by the caller (or by the dead client it
// recovers), and the bitmap bits of the range are final.
// `crash_point`: the crash point free_runs.upper_levels may fire after the
// first level (the allocator's updates; not an undo's, so that a test
// client frozen there and resumed is not frozen again by its own rollback).
void UpdateFreeRuns(const Region& r, uint64_t first, uint64_t n, bool crash_point = false);
// Recomputes every node from the bitmap and persists them. O(pages / 64).
// REQUIRES: as UpdateFreeRuns, or the region is not yet shared (format).
void RebuildFreeRuns(const Region& r);

// The longest free run according to the root (a racy read without the lock;
// clamped to the heap's pages).
uint64_t LongestFreeRun(const Region& r);

// Compares every node with a rebuild from the bitmap (without writing).
// Returns the number of nodes that differ; *first_bad (if not null) gets
// the first of them (0: none). For gismo-fsck and tests.
uint64_t CheckFreeRuns(const Region& r, uint64_t* first_bad);

}  // namespace gismo::region

#endif  // GISMO_REGION_FREE_RUNS_H_
