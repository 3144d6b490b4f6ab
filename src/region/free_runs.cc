#include "region/free_runs.h"

#include <algorithm>
#include <bit>
#include <vector>

#include "common/crash_point.h"
#include "region/region.h"

namespace gismo::region {

namespace {

constexpr uint64_t kLeafSpan = kPagesPerFreeRunLeaf;

// Pages spanned by node i of a tree of `leaves` leaves (i in [1, 2 * leaves)).
uint64_t Span(uint64_t i, uint64_t leaves) {
  return kLeafSpan * (leaves >> (std::bit_width(i) - 1));
}

// Every summary word is read and written relaxed: writers hold page_lock,
// whose acquire and release order them against other holders; lock-free
// readers (LongestFreeRun) only want a snapshot.
FreeRuns Load(const FreeRunNode& n) {
  const uint64_t ends = n.ends.load(std::memory_order_relaxed);
  return {n.longest.load(std::memory_order_relaxed), FreeRunPrefix(ends), FreeRunSuffix(ends)};
}

void Store(FreeRunNode& n, const FreeRuns& f) {
  n.longest.store(f.longest, std::memory_order_relaxed);
  n.ends.store(PackFreeRunEnds(f.prefix, f.suffix), std::memory_order_relaxed);
}

// The tree of one region. Every index it computes lies in [1, 2 * leaves);
// none is read from the region.
struct Tree {
  explicit Tree(const Region& region)
      : r(region),
        bm(region.page_bitmap()),
        words((region.num_pages() + 63) / 64),
        leaves(FreeRunLeaves(region.num_pages())),
        nodes(region.free_runs()) {}

  // Node i: a leaf (i >= leaves) is computed from its bitmap word.
  FreeRuns Get(uint64_t i) const {
    if (i < leaves) return Load(nodes[i]);
    const uint64_t w = i - leaves;
    return w < words ? LeafFreeRuns(bm[w].load(std::memory_order_relaxed)) : FreeRuns{};
  }
  void Recompute(uint64_t i) const {
    Store(nodes[i], CombineFreeRuns(Get(2 * i), Get(2 * i + 1), Span(i, leaves) / 2));
  }

  const Region& r;
  Word* bm;
  uint64_t words;
  uint64_t leaves;
  FreeRunNode* nodes;
};

// The lowest start of `n` (1..64) consecutive zero bits of `word`, or 64.
uint64_t ZeroRunIn(uint64_t word, uint64_t n) {
  uint64_t x = ~word;  // bit p set: page p free
  // After the loop bit p is set iff bits [p, p + covered) all were.
  for (uint64_t covered = 1; covered < n && x != 0;) {
    const uint64_t step = std::min(covered, n - covered);
    x &= x >> step;
    covered += step;
  }
  return x == 0 ? 64 : static_cast<uint64_t>(std::countr_zero(x));
}

}  // namespace

FreeRuns LeafFreeRuns(uint64_t word) {
  if (word == 0) return {kLeafSpan, kLeafSpan, kLeafSpan};
  uint64_t longest = 0;
  for (uint64_t x = ~word; x != 0; x &= x >> 1) ++longest;
  return {longest, static_cast<uint64_t>(std::countr_zero(word)),
          static_cast<uint64_t>(std::countl_zero(word))};
}

FreeRuns CombineFreeRuns(const FreeRuns& l, const FreeRuns& r, uint64_t child_span) {
  FreeRuns f;
  f.longest = std::max({l.longest, r.longest, l.suffix + r.prefix});
  f.prefix = l.prefix == child_span ? child_span + r.prefix : l.prefix;
  f.suffix = r.suffix == child_span ? child_span + l.suffix : r.suffix;
  return f;
}

FreeRunFind FindFreeRun(const Region& r, uint64_t n, uint64_t* first) {
  const Tree t(r);
  const FreeRuns root = t.Get(1);
  if (n == 0 || root.longest < n) return FreeRunFind::kNone;
  if (root.longest > t.leaves * kLeafSpan) return FreeRunFind::kInconsistent;
  // First fit: the lowest run lies in the left child if it holds one, else
  // across the middle if the left's suffix and the right's prefix make one
  // (a run wholly in the left would start lower, but there is none), else
  // in the right child.
  uint64_t i = 1, base = 0;
  while (i < t.leaves) {
    const uint64_t half = Span(i, t.leaves) / 2;
    const FreeRuns left = t.Get(2 * i), right = t.Get(2 * i + 1);
    // Values read from the region: each bounded by its span before use.
    if (left.longest > half || left.suffix > half || right.prefix > half) {
      return FreeRunFind::kInconsistent;
    }
    if (left.longest >= n) {
      i = 2 * i;
    } else if (left.suffix + right.prefix >= n) {
      *first = base + half - left.suffix;
      return FreeRunFind::kFound;
    } else {
      base += half;
      i = 2 * i + 1;
    }
  }
  // A leaf whose parent said it holds a run of n: it is in this word.
  const uint64_t w = i - t.leaves;
  if (n > kLeafSpan || w >= t.words) return FreeRunFind::kInconsistent;
  const uint64_t at = ZeroRunIn(t.bm[w].load(std::memory_order_relaxed), n);
  if (at + n > kLeafSpan) return FreeRunFind::kInconsistent;
  *first = base + at;
  return FreeRunFind::kFound;
}

bool PageRunFree(const Region& r, uint64_t first, uint64_t n) {
  if (!r.ValidPageRun(first, n)) return false;
  const Word* bm = r.page_bitmap();
  for (uint64_t p = first, end = first + n; p < end;) {
    const uint64_t bit = p % 64, count = std::min(64 - bit, end - p);
    const uint64_t mask = (count == 64 ? ~0ull : (1ull << count) - 1) << bit;
    if ((bm[p / 64].load(std::memory_order_relaxed) & mask) != 0) return false;
    p += count;
  }
  return true;
}

void UpdateFreeRuns(const Region& r, uint64_t first, uint64_t n, bool crash_point) {
  const uint64_t pages = r.num_pages();
  if (first >= pages || n == 0) return;
  n = std::min(n, pages - first);
  const Tree t(r);
  uint64_t lo = t.leaves + first / kLeafSpan, hi = t.leaves + (first + n - 1) / kLeafSpan;
  while (lo > 1) {
    lo /= 2;
    hi /= 2;
    for (uint64_t i = lo; i <= hi; ++i) t.Recompute(i);
    r.Persist(&t.nodes[lo], (hi - lo + 1) * sizeof(FreeRunNode));
    // A holder dying here leaves the upper levels stale: recovery rebuilds.
    if (crash_point && lo > 1) {
      GISMO_CRASH_POINT("free_runs.upper_levels");
      crash_point = false;  // once per update
    }
  }
}

void RebuildFreeRuns(const Region& r) {
  const Tree t(r);
  for (uint64_t i = t.leaves; i-- > 1;) t.Recompute(i);
  r.Persist(&t.nodes[1], (t.leaves - 1) * sizeof(FreeRunNode));
}

uint64_t LongestFreeRun(const Region& r) {
  return std::min(r.free_runs()[1].longest.load(std::memory_order_relaxed), r.num_pages());
}

uint64_t CheckFreeRuns(const Region& r, uint64_t* first_bad) {
  const Tree t(r);
  std::vector<FreeRuns> want(t.leaves);
  auto expected = [&](uint64_t i) { return i < t.leaves ? want[i] : t.Get(i); };
  uint64_t bad = 0;
  if (first_bad != nullptr) *first_bad = 0;
  for (uint64_t i = t.leaves; i-- > 1;) {
    want[i] = CombineFreeRuns(expected(2 * i), expected(2 * i + 1), Span(i, t.leaves) / 2);
    if (!(Load(t.nodes[i]) == want[i])) {
      ++bad;
      if (first_bad != nullptr) *first_bad = i;  // ends at the lowest index
    }
  }
  return bad;
}

}  // namespace gismo::region
