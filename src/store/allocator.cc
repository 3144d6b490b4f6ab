#include "store/allocator.h"

#include <algorithm>
#include <string>

#include "common/check.h"
#include "region/free_runs.h"

namespace gismo::store {

using namespace region;  // NOLINT: layout names are this file's vocabulary

namespace {
constexpr uint32_t BlocksPerSlab(int cls) { return SlabBlocks(static_cast<uint32_t>(cls)); }

std::string PageName(uint64_t page) { return "heap page " + std::to_string(page); }
std::string ClassName(int cls) { return std::to_string(kClassSizes[cls]) + " B"; }

// The lowest free block of slab `d` of class `cls` (a clear bit of its
// bitmap below its capacity), or the capacity if it has none. Reads only.
uint32_t FirstFreeBlock(const PageDesc& d, int cls) {
  const uint32_t cap = BlocksPerSlab(cls);
  for (uint32_t w = 0; w * 64 < cap; ++w) {
    const uint32_t valid = std::min<uint32_t>(64, cap - w * 64);
    const uint64_t mask = valid == 64 ? ~0ull : ((1ull << valid) - 1);
    const uint64_t free_bits = ~d.bitmap[w].load(std::memory_order_relaxed) & mask;
    if (free_bits != 0) return w * 64 + static_cast<uint32_t>(__builtin_ctzll(free_bits));
  }
  return cap;
}

// Whether slab `d` marks no block in use: its count and every bit of its
// bitmap (past its capacity too) are 0.
bool SlabEmpty(const PageDesc& d) {
  uint64_t any = d.used.load(std::memory_order_relaxed);
  for (const Word& w : d.bitmap) any |= w.load(std::memory_order_relaxed);
  return any == 0;
}

// Whether bits [first, first + n) of the page bitmap are all 1: every page
// of the run is in use. REQUIRES: r.ValidPageRun(first, n), page_lock.
bool PageRunUsed(const Region& r, uint64_t first, uint64_t n) {
  const Word* bm = r.page_bitmap();
  for (uint64_t p = first, end = first + n; p < end;) {
    const uint64_t bit = p % 64, count = std::min(64 - bit, end - p);
    const uint64_t mask = (count == 64 ? ~0ull : (1ull << count) - 1) << bit;
    if ((bm[p / 64].load(std::memory_order_relaxed) & mask) != mask) return false;
    p += count;
  }
  return true;
}
}  // namespace

int Allocator::ClassOf(uint64_t bytes) {
  if (bytes > kMaxSmallSize) return -1;
  // Classes are few; a branchy binary search is not worth it.
  for (uint32_t c = 0; c < kNumClasses; ++c) {
    if (bytes <= kClassSizes[c]) return static_cast<int>(c);
  }
  return -1;
}

uint64_t Allocator::BlockSize(uint64_t bytes) {
  int cls = ClassOf(bytes);
  if (cls >= 0) return kClassSizes[cls];
  return (bytes + kPageSize - 1) / kPageSize * kPageSize;
}

Result<uint64_t> Allocator::Allocate(Txn& txn, uint64_t bytes) {
  return Allocate(txn, bytes, txn.slot());
}

Result<uint64_t> Allocator::Allocate(Txn& txn, uint64_t bytes, uint32_t for_slot) {
  int cls = ClassOf(bytes == 0 ? 1 : bytes);
  uint64_t off = 0, block = 0;
  if (cls >= 0) {
    auto small = AllocateSmall(txn, cls, for_slot);
    if (!small.ok()) return small;
    off = *small;
    block = kClassSizes[cls];
  } else {
    uint64_t npages = (bytes + kPageSize - 1) / kPageSize;
    auto first = AllocatePages(txn, npages);
    if (!first.ok()) return first.status();
    PageDesc& d = r_.page(*first);
    txn.Write(d.info, PackPageInfo(PageKind::kRun, 0, 0, 0));
    txn.Write(d.used, npages);
    off = *first * kPageSize;
    block = npages * kPageSize;
  }
  if (txn.failed()) return txn.failure();  // a corrupt slab, list or page
  // Every page and block index above was checked; this is the last check
  // before the caller writes into the block.
  if (!r_.ValidHeapBlock(off, block)) {
    txn.Fail(r_.Corrupt("a block of " + std::to_string(block) + " B at heap offset " +
                        std::to_string(off) + " would end past the heap"));
    return txn.failure();
  }
  return off;
}

namespace {
// Takes `lock` unless this Txn already holds it. False if the Txn failed.
bool LockOnce(Txn& txn, Word& lock) { return txn.Holds(lock) || txn.Lock(lock); }
}  // namespace

void Allocator::Free(Txn& txn, uint64_t heap_offset, uint64_t bytes) {
  // An object of no bytes still has a block (of the smallest class), so it
  // too must start inside the heap: its page descriptor is read below.
  if (!r_.ValidHeapBlock(heap_offset, std::max<uint64_t>(bytes, 1))) {
    txn.Fail(r_.Corrupt("an object's block (heap offset " + std::to_string(heap_offset) + ", " +
                        std::to_string(bytes) + " B) lies outside the heap"));
    return;
  }
  uint64_t page = heap_offset / kPageSize;
  int cls = ClassOf(bytes == 0 ? 1 : bytes);
  if (cls < 0) {
    const uint64_t npages = (bytes + kPageSize - 1) / kPageSize;
    // A4: the run is as long as its head says (page_lock guards the head):
    // a record that claims more pages than its run has would free the
    // pages after it, another object's; FreePages checks that every page
    // is in use. Both before anything is written.
    if (heap_offset % kPageSize != 0) {
      txn.Fail(r_.Corrupt("an object of " + std::to_string(npages) + " pages at heap offset " +
                          std::to_string(heap_offset) + " does not start on a page"));
      return;
    }
    if (!LockOnce(txn, r_.alloc().page_lock)) return;
    const PageDesc& d = r_.page(page);
    const uint64_t info = d.info.load(std::memory_order_relaxed);
    const uint64_t run = d.used.load(std::memory_order_relaxed);
    if (PageInfoKind(info) != PageKind::kRun || run != npages) {
      txn.Fail(
          r_.Corrupt("an object of " + std::to_string(npages) + " pages at " + PageName(page) +
                     (PageInfoKind(info) != PageKind::kRun
                          ? " is not the head of a page run"
                          : " has a page run of " + std::to_string(run) + " pages, not as many")));
      return;
    }
    FreePages(txn, page, npages);
    return;
  }
  // A block in page 1.. of a multi-page slab: its tail names the head, which
  // holds the slab's descriptor. Checked before use: a head below the page,
  // less than the slab's page count away.
  const uint64_t block_page = page;
  auto head_of = [&](uint64_t p) -> uint64_t {
    const PageDesc& t = r_.page(p);
    const uint64_t ti = t.info.load(std::memory_order_relaxed);
    if (PageInfoKind(ti) != PageKind::kSlabTail) return p;
    const uint64_t head = t.used.load(std::memory_order_relaxed);
    if (PageInfoClass(ti) != static_cast<uint32_t>(cls) || head >= p ||
        p - head >= SlabPages(static_cast<uint32_t>(cls))) {
      return ~0ull;
    }
    return head;
  };
  page = head_of(block_page);
  if (page == ~0ull) {
    txn.Fail(r_.Corrupt(PageName(block_page) + " is a slab tail that names no slab of class " +
                        std::to_string(kClassSizes[cls]) + " B"));
    return;
  }
  PageDesc& d = r_.page(page);
  // The page's class and stripe say which lock guards it; read them again
  // under that lock. While a block of the slab is in use the slab stays,
  // but a record naming a block that is not (corrupt) may race with the
  // slab's page being freed and made a slab of another stripe: the stripe
  // read again must be the one locked.
  uint64_t info = d.info.load(std::memory_order_relaxed);
  const uint32_t stripe = PageInfoStripe(info);
  auto is_our_slab = [&](uint64_t i) {
    return PageInfoKind(i) == PageKind::kSlab && PageInfoClass(i) == static_cast<uint32_t>(cls) &&
           PageInfoStripe(i) == stripe && stripe < kStripes;
  };
  if (!is_our_slab(info)) {
    txn.Fail(r_.Corrupt("an object of class " + std::to_string(kClassSizes[cls]) + " B lies in " +
                        PageName(page) + ", which is not a slab of that class"));
    return;
  }
  ClassStripe& cs = r_.class_stripe(PageInfoClass(info), stripe);
  if (!LockOnce(txn, cs.lock)) return;
  info = d.info.load(std::memory_order_relaxed);  // stable under the lock
  uint64_t used = d.used.load(std::memory_order_relaxed);
  if (!is_our_slab(info) || used == 0 || used > BlocksPerSlab(cls) || head_of(block_page) != page) {
    txn.Fail(r_.Corrupt(PageName(page) + ": a slab of class " + std::to_string(kClassSizes[cls]) +
                        " B counts " + std::to_string(used) + " blocks in use"));
    return;
  }
  const uint64_t in_slab = heap_offset - page * kPageSize;
  if (in_slab % kClassSizes[cls] != 0 || in_slab / kClassSizes[cls] >= BlocksPerSlab(cls)) {
    txn.Fail(r_.Corrupt("an object at heap offset " + std::to_string(heap_offset) +
                        " is not on a block of its slab at " + PageName(page)));
    return;
  }
  uint32_t idx = static_cast<uint32_t>(in_slab / kClassSizes[cls]);
  Word& bw = d.bitmap[idx / 64];
  const uint64_t bits = bw.load(std::memory_order_relaxed);
  const uint64_t bit = 1ull << (idx % 64);
  // A3: only a block in use is freed. A record naming a free block (freed
  // twice, or another's) would lower the count below the slab's live
  // blocks, and a later free would return the slab under them.
  if ((bits & bit) == 0) {
    txn.Fail(r_.Corrupt("an object at heap offset " + std::to_string(heap_offset) +
                        " names block " + std::to_string(idx) + " of the slab at " +
                        PageName(page) + ", which is free"));
    return;
  }
  // One batch: one persist barrier pair where the region needs them.
  txn.WriteAll({{&bw, bits & ~bit}, {&d.used, used - 1}});
  GISMO_CRASH_POINT("free.block_cleared");
  if (PageInfoOwner(info) != 0) return;  // its owner allocates from it
  bool was_full = used == BlocksPerSlab(cls);
  if (used - 1 > 0) {
    if (was_full) PushPartial(txn, cs, page);
    return;
  }
  // Empty and unowned: the slab's pages go back to the page heap.
  if (!was_full) UnlinkPartial(txn, cs, page);
  ReleaseSlab(txn, cs, page, cls);
}

void Allocator::ReleaseSlab(Txn& txn, ClassStripe& cs, uint64_t page, int cls) {
  GISMO_DCHECK(txn.Holds(cs.lock));  // REQUIRES: the stripe's lock
  const uint32_t n = SlabPages(static_cast<uint32_t>(cls));
  if (!r_.ValidPageRun(page, n)) {
    txn.Fail(r_.Corrupt("a slab of " + std::to_string(n) + " pages at " + PageName(page) +
                        " ends past the heap"));
    return;
  }
  // A3, checked before anything is written: the bitmap (not only the
  // count) says the slab holds no block; the stripe counts it; the pages
  // after the head, cleared below, are its tails (not another's pages).
  const uint64_t slabs = cs.slab_count.load(std::memory_order_relaxed);
  if (!SlabEmpty(r_.page(page)) || slabs == 0) {
    txn.Fail(r_.Corrupt(PageName(page) + ": a slab of class " + ClassName(cls) +
                        (slabs == 0 ? " is returned while its stripe counts no slab"
                                    : " is returned while it marks blocks in use")));
    return;
  }
  for (uint64_t q = page + 1; q < page + n; ++q) {
    const uint64_t ti = r_.page(q).info.load(std::memory_order_relaxed);
    if (PageInfoKind(ti) != PageKind::kSlabTail ||
        PageInfoClass(ti) != static_cast<uint32_t>(cls) ||
        r_.page(q).used.load(std::memory_order_relaxed) != page) {
      txn.Fail(r_.Corrupt(PageName(q) + " is not a tail of the slab of class " + ClassName(cls) +
                          " at " + PageName(page)));
      return;
    }
  }
  txn.Write(cs.slab_count, slabs - 1);
  for (uint64_t q = page + 1; q < page + n; ++q) {
    txn.Write(r_.page(q).info, 0);
    txn.Write(r_.page(q).used, 0);
  }
  FreePages(txn, page, n);
}

uint64_t Allocator::TakeBlock(Txn& txn, uint64_t page, int cls) {
  PageDesc& d = r_.page(page);
  const uint32_t b = FirstFreeBlock(d, cls);
  if (b == BlocksPerSlab(cls)) {
    // The caller checked used < cap: only a corrupt slab gets here.
    txn.Fail(r_.Corrupt(PageName(page) + ": a slab counting " +
                        std::to_string(d.used.load(std::memory_order_relaxed)) +
                        " blocks in use has no free block"));
    return ~0ull;
  }
  Word& w = d.bitmap[b / 64];
  txn.WriteAll({{&w, w.load(std::memory_order_relaxed) | (1ull << (b % 64))},
                {&d.used, d.used.load(std::memory_order_relaxed) + 1}});
  GISMO_CRASH_POINT("alloc.block_taken");
  // Inside the slab (b < its capacity), whose pages IsSlab found in the heap.
  return page * kPageSize + uint64_t{b} * kClassSizes[cls];
}

bool Allocator::IsSlab(uint64_t page, int cls, uint32_t stripe, uint32_t owner_plus1) const {
  // One comparison of the whole word: kind, class, stripe and owner, and
  // no stray bits.
  return r_.ValidPageRun(page, SlabPages(static_cast<uint32_t>(cls))) &&
         r_.page(page).info.load(std::memory_order_relaxed) ==
             PackPageInfo(PageKind::kSlab, static_cast<uint32_t>(cls), stripe, owner_plus1);
}

bool Allocator::CheckPartialHead(Txn& txn, uint64_t head, int cls, uint32_t stripe) {
  GISMO_DCHECK(txn.Holds(r_.class_stripe(cls, stripe).lock));  // REQUIRES: the stripe's lock
  const uint64_t page = head - 1;
  if (IsSlab(page, cls, stripe, 0)) {
    const PageDesc& d = r_.page(page);
    const uint32_t cap = BlocksPerSlab(cls);
    if (d.prev.load(std::memory_order_relaxed) == 0 &&
        d.used.load(std::memory_order_relaxed) < cap && FirstFreeBlock(d, cls) < cap) {
      return true;
    }
  }
  txn.Fail(r_.Corrupt("the partial-slab list of class " + ClassName(cls) + ", stripe " +
                      std::to_string(stripe) + ", starts at " + PageName(page) +
                      ", which is not an unowned slab of it with a free block"));
  return false;
}

bool Allocator::CheckLink(Txn& txn, uint64_t page_plus1, const char* what) {
  if (page_plus1 == 0 || r_.ValidPage(page_plus1 - 1)) return true;
  txn.Fail(r_.Corrupt(std::string(what) + " names page " + std::to_string(page_plus1 - 1) +
                      ", past the heap's " + std::to_string(r_.num_pages())));
  return false;
}

void Allocator::PushPartial(Txn& txn, ClassStripe& cs, uint64_t page) {
  GISMO_DCHECK(txn.Holds(cs.lock));  // REQUIRES: the stripe's lock
  PageDesc& d = r_.page(page);
  uint64_t head = cs.partial_head.load(std::memory_order_relaxed);
  if (!CheckLink(txn, head, "a partial-slab list head")) return;
  txn.Write(d.prev, 0);
  txn.Write(d.next, head);
  if (head != 0) txn.Write(r_.page(head - 1).prev, page + 1);
  txn.Write(cs.partial_head, page + 1);
}

void Allocator::UnlinkPartial(Txn& txn, ClassStripe& cs, uint64_t page) {
  GISMO_DCHECK(txn.Holds(cs.lock));  // REQUIRES: the stripe's lock
  PageDesc& d = r_.page(page);
  uint64_t prev = d.prev.load(std::memory_order_relaxed);
  uint64_t next = d.next.load(std::memory_order_relaxed);
  if (!CheckLink(txn, prev, ("the partial-slab link of " + PageName(page)).c_str()) ||
      !CheckLink(txn, next, ("the partial-slab link of " + PageName(page)).c_str())) {
    return;
  }
  if (prev != 0) {
    txn.Write(r_.page(prev - 1).next, next);
  } else if (cs.partial_head.load(std::memory_order_relaxed) == page + 1) {
    txn.Write(cs.partial_head, next);
  }
  if (next != 0) txn.Write(r_.page(next - 1).prev, prev);
  txn.Write(d.prev, 0);
  txn.Write(d.next, 0);
}

Result<uint64_t> Allocator::AllocateSmall(Txn& txn, int cls, uint32_t slot) {
  uint32_t stripe = slot % kStripes;
  ClassStripe& cs = r_.class_stripe(cls, stripe);
  if (!LockOnce(txn, cs.lock)) return txn.failure();
  Word& cur = r_.current_slabs(slot)[cls];
  const uint32_t cap = BlocksPerSlab(cls);
  if (uint64_t p1 = cur.load(std::memory_order_relaxed); p1 != 0) {
    // A1: a slab this slot owns, else nothing of it is taken or let go (it
    // may be another client's, or a live object's run).
    if (!IsSlab(p1 - 1, cls, stripe, slot + 1)) {
      txn.Fail(r_.Corrupt("client slot " + std::to_string(slot) + "'s current slab of class " +
                          ClassName(cls) + " names " + PageName(p1 - 1) +
                          ", which is not a slab it owns"));
      return txn.failure();
    }
    PageDesc& d = r_.page(p1 - 1);
    if (d.used.load(std::memory_order_relaxed) < cap) return TakeBlock(txn, p1 - 1, cls);
    // Full: let it go; frees will put it on the partial list.
    txn.Write(d.info, PackPageInfo(PageKind::kSlab, cls, stripe, 0));
    txn.Write(cur, 0);
  }
  if (uint64_t head = cs.partial_head.load(std::memory_order_relaxed); head != 0) {
    if (!CheckPartialHead(txn, head, cls, stripe)) return txn.failure();  // A2
    uint64_t page = head - 1;
    UnlinkPartial(txn, cs, page);
    txn.Write(r_.page(page).info, PackPageInfo(PageKind::kSlab, cls, stripe, slot + 1));
    txn.Write(cur, page + 1);
    return TakeBlock(txn, page, cls);
  }
  const uint32_t slab_pages = SlabPages(static_cast<uint32_t>(cls));
  auto pages = AllocatePages(txn, slab_pages);
  if (pages.ok()) {
    uint64_t page = *pages;
    PageDesc& d = r_.page(page);
    for (uint64_t q = page + 1; q < page + slab_pages; ++q) {
      txn.Write(r_.page(q).info, PackPageInfo(PageKind::kSlabTail, cls, stripe, 0));
      txn.Write(r_.page(q).used, page);
    }
    txn.Write(d.info, PackPageInfo(PageKind::kSlab, cls, stripe, slot + 1));
    GISMO_CRASH_POINT("alloc.new_slab");
    txn.Write(cs.slab_count, cs.slab_count.load(std::memory_order_relaxed) + 1);
    txn.Write(cur, page + 1);
    return TakeBlock(txn, page, cls);
  }
  // The page heap is full: borrow a block from another stripe's partial slab
  // (try-lock only, so two clients doing this cannot deadlock). A stripe
  // whose list emptied before its lock was taken stays locked until the
  // commit: once the slot can record no more locks, the heap is full.
  for (uint32_t s = 1; s < kStripes && txn.HasRoomForLock(); ++s) {
    ClassStripe& other = r_.class_stripe(cls, (stripe + s) % kStripes);
    if (other.partial_head.load(std::memory_order_relaxed) == 0) continue;
    if (!txn.TryLock(other.lock)) {
      if (txn.failed()) return txn.failure();
      continue;
    }
    uint64_t head = other.partial_head.load(std::memory_order_relaxed);
    if (head == 0) continue;  // lock stays held until commit
    if (!CheckPartialHead(txn, head, cls, (stripe + s) % kStripes)) return txn.failure();  // A2
    uint64_t page = head - 1;
    uint64_t off = TakeBlock(txn, page, cls);
    if (r_.page(page).used.load(std::memory_order_relaxed) == cap) {
      UnlinkPartial(txn, other, page);  // full slabs are not on the list
    }
    return off;
  }
  return pages.status();
}

Result<uint64_t> Allocator::AllocatePages(Txn& txn, uint64_t npages) {
  AllocatorHeader& a = r_.alloc();
  if (!LockOnce(txn, a.page_lock)) return txn.failure();
  const uint64_t total = r_.num_pages();
  uint64_t free_pages = a.free_pages.load(std::memory_order_relaxed);
  auto full = [&]() {
    return Status(GISMO_ERR_OUT_OF_MEMORY,
                  "store is full: the object needs " + FormatSize(npages * kPageSize) + ", " +
                      FormatSize(free_pages * kPageSize) + " free, largest free extent " +
                      FormatSize(LargestFreeRun() * kPageSize) + " of " +
                      FormatSize(r_.heap_size()));
  };
  if (npages == 0 || npages > free_pages || npages > total) return full();
  // First fit, the lowest free run: freed pages low in the heap are reused
  // before pages never used, so objects land on pages the file system has
  // already materialized (warm), and large runs stay available at the top.
  // The free-run summary finds it in O(log pages); what it says is checked
  // against the bitmap, and a summary that disagrees (torn by a bug, or a
  // corrupt region) is rebuilt from the bitmap once, under this lock.
  uint64_t start = 0;
  for (int attempt = 0;; ++attempt) {
    const FreeRunFind found = FindFreeRun(r_, npages, &start);
    if (found == FreeRunFind::kNone) return full();
    if (found == FreeRunFind::kFound && PageRunFree(r_, start, npages)) break;
    if (attempt > 0) {
      txn.Fail(r_.Corrupt("the page bitmap and its free-run summary disagree after a rebuild"));
      return txn.failure();
    }
    RebuildFreeRuns(r_);
  }
  txn.SetBits(r_.page_bitmap(), start, npages);
  GISMO_CRASH_POINT("alloc.pages_taken");
  // Invariant 2 of FreeRunNode: the summary follows the bitmap under the
  // lock (it reads the bits back, so a failed SetBits leaves it right too).
  UpdateFreeRuns(r_, start, npages, /*crash_point=*/true);
  txn.Write(a.free_pages, free_pages - npages);
  return start;
}

void Allocator::FreePages(Txn& txn, uint64_t first, uint64_t npages) {
  if (npages == 0 || !r_.ValidPageRun(first, npages)) {
    txn.Fail(r_.Corrupt("a run of " + std::to_string(npages) + " pages at " + PageName(first) +
                        " ends past the heap's " + std::to_string(r_.num_pages())));
    return;
  }
  AllocatorHeader& a = r_.alloc();
  if (!LockOnce(txn, a.page_lock)) return;
  // A4, under the lock and before anything is written: every page of the
  // run is in use (a run freed twice, or longer than it was taken, would
  // free free pages or another owner's), and the free count has room.
  const uint64_t free_pages = a.free_pages.load(std::memory_order_relaxed);
  if (!PageRunUsed(r_, first, npages) || free_pages > r_.num_pages() - npages) {
    txn.Fail(r_.Corrupt("a run of " + std::to_string(npages) + " pages at " + PageName(first) +
                        " to be freed holds pages that are not in use"));
    return;
  }
  PageDesc& d = r_.page(first);
  txn.Write(d.info, 0);
  txn.Write(d.used, 0);
  txn.ClearBits(r_.page_bitmap(), first, npages);
  GISMO_CRASH_POINT("free.pages_cleared");
  UpdateFreeRuns(r_, first, npages, /*crash_point=*/true);  // coalesces with free neighbours
  txn.Write(a.free_pages, free_pages + npages);
}

bool Allocator::DisownSlabs(uint32_t owner_slot, uint32_t txn_slot, uint64_t txn_session,
                            uint64_t lock_timeout_ns, uint64_t* forgotten) {
  Word* cur = r_.current_slabs(owner_slot);
  const uint32_t stripe = owner_slot % kStripes;
  for (uint32_t c = 0; c < kNumClasses; ++c) {
    if (cur[c].load(std::memory_order_acquire) == 0) continue;
    const int cls = static_cast<int>(c);
    ClassStripe& cs = r_.class_stripe(c, stripe);
    // First the slab is given back, if the word names one this slot owns
    // (A1). If it names anything else (past the heap, a run, a free page,
    // another client's slab: that client may be only suspected), or the
    // give-back finds the slab corrupt (BAD_REGION: rolled back), a second
    // transaction forgets the word only, so that recovery goes on; the page
    // it names is left as it is.
    for (bool give_back = true;; give_back = false) {
      Txn txn(r_, txn_slot, txn_session, OpKind::kRecover);
      txn.SetLockWait(lock_timeout_ns);
      if (!txn.Lock(cs.lock)) return false;
      const uint64_t p1 = cur[c].load(std::memory_order_relaxed);
      const bool owned = give_back && p1 != 0 && IsSlab(p1 - 1, cls, stripe, owner_slot + 1);
      if (owned) {
        const uint64_t page = p1 - 1;
        PageDesc& d = r_.page(page);
        const uint64_t used = d.used.load(std::memory_order_relaxed);
        if (used > BlocksPerSlab(cls)) {
          txn.Fail(r_.Corrupt(PageName(page) + ": a slab of class " + ClassName(cls) + " counts " +
                              std::to_string(used) + " blocks in use"));
        } else {
          txn.Write(d.info, PackPageInfo(PageKind::kSlab, c, stripe, 0));
          if (used == 0) {
            ReleaseSlab(txn, cs, page, cls);  // if its bitmap is empty too (A3)
          } else if (used < BlocksPerSlab(cls)) {
            PushPartial(txn, cs, page);
          }
        }
      }
      if (p1 != 0) txn.Write(cur[c], 0);
      const Status s = txn.Commit();
      if (s.ok()) {
        if (p1 != 0 && !owned && forgotten != nullptr) ++*forgotten;
        break;
      }
      if (s.code() != GISMO_ERR_BAD_REGION || !give_back) return false;
    }
  }
  return true;
}

uint64_t Allocator::LargestFreeRun() const { return LongestFreeRun(r_); }

HeapStats Allocator::Stats() const {
  HeapStats s;
  s.capacity_bytes = r_.heap_size();
  s.free_bytes = r_.alloc().free_pages.load(std::memory_order_relaxed) * kPageSize;
  s.used_bytes = s.capacity_bytes - std::min(s.capacity_bytes, s.free_bytes);
  s.largest_free_bytes = LargestFreeRun() * kPageSize;
  return s;
}

}  // namespace gismo::store
