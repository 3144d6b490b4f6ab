// The heap allocator, in the region and usable by every client.
//
// Shape (after mimalloc): the heap is cut into 16 KiB pages. Objects up to
// 64 KiB come from slabs, a run of SlabPages(class) pages of one size class
// each (one page up to 8 KiB; layout.h); a client allocates
// from its own current slab per class (recorded in its slot), so two clients
// rarely touch the same slab. Frees from any client go to the slab's bitmap.
// A slab whose owner moves on (full) or dies is unowned; once non-full it
// sits on its (class, stripe) partial list for the next client to adopt, and
// once empty its page returns to the page heap. Larger objects take a run of
// whole pages, found first-fit in the page bitmap: the lowest free run, found
// in O(log pages) by the free-run summary, a tree over the bitmap kept under
// page_lock and rebuilt from the bitmap by whoever recovers a dead holder of
// that lock (layout.h, FreeRunNode; region/free_runs.h).
//
// Locks (always taken in this order, after the object's shard lock):
//   ClassStripe.lock  guards the slabs of that class and stripe
//   AllocatorHeader.page_lock  guards the page bitmap, free_pages, run heads
//                              and the free-run summary
//
// Everything read from the region is checked before it is used (another
// client may be buggy or hostile): every page named by a partial list, a
// client's current slab word or an object's record, a run's length, a
// slab's count and bitmap. A bad one fails the operation's Txn with
// GISMO_ERR_BAD_REGION (Region::Corrupt) before the writes that depend on
// it, and the Txn rolls back what the operation wrote before; so no block
// is handed out twice or outside its slab, no live object's pages are
// freed, and no page is freed twice. The invariants the checks rely on:
//  A1. A client slot's current slab word for class c names page p + 1
//      exactly while p heads a slab of class c, stripe slot % kStripes and
//      owner slot + 1 (PageDesc.info); both change together, under the
//      stripe's lock.
//  A2. A partial list names only unowned slabs of its class and stripe
//      with a free block; its head's prev link is 0.
//  A3. A slab's bitmap says which of its blocks are in use (its count
//      follows it): a block is freed only if its bit is set, a slab returns
//      its pages only if no bit is.
//  A4. A run head's `used` is its length; a run is freed only with that
//      length, and only if every one of its pages is in use in the bitmap.
#ifndef GISMO_STORE_ALLOCATOR_H_
#define GISMO_STORE_ALLOCATOR_H_

#include <cstdint>

#include "region/region.h"
#include "store/txn.h"

namespace gismo::store {

struct HeapStats {
  uint64_t capacity_bytes = 0;
  uint64_t used_bytes = 0;  // pages in use (slabs and runs)
  uint64_t free_bytes = 0;
  uint64_t largest_free_bytes = 0;  // largest run of free pages
};

class Allocator {
 public:
  explicit Allocator(const region::Region& r) : r_(r) {}

  // Size class index for `bytes`, or -1 if it takes a page run.
  static int ClassOf(uint64_t bytes);
  // Bytes actually reserved for an object of `bytes`.
  static uint64_t BlockSize(uint64_t bytes);

  // Returns the heap offset of a block of at least `bytes` (64-byte aligned),
  // or OUT_OF_MEMORY. Everything it changes is logged in `txn`. A small
  // block comes from the current slab of client slot `for_slot` (of the
  // txn's slot unless given: a non-coherent region's owner allocates for
  // the client that asked, so the client's recovery gives its slabs back
  // as in a coherent region).
  Result<uint64_t> Allocate(Txn& txn, uint64_t bytes);
  Result<uint64_t> Allocate(Txn& txn, uint64_t bytes, uint32_t for_slot);
  void Free(Txn& txn, uint64_t heap_offset, uint64_t bytes);

  // Gives up the current slabs of a (dead or departing) client slot. Each
  // class in its own transaction run by `txn_slot`. False if a class lock
  // stayed busy for `lock_timeout_ns` (call again later). Only a slab the
  // slot owns (A1) is given back; a word that names anything else (a page
  // past the heap, a run, a free page, another client's slab: that client
  // may be only suspected), or a slab too corrupt to give back, is cleared
  // and nothing else touched: the page stays as it is (gismo-fsck reports
  // it), and `*forgotten` (if given) counts the word.
  bool DisownSlabs(uint32_t owner_slot, uint32_t txn_slot, uint64_t txn_session,
                   uint64_t lock_timeout_ns, uint64_t* forgotten = nullptr);

  // A racy but consistent-enough snapshot (reads without locks).
  HeapStats Stats() const;

  // The page heap under slabs and large objects: the lowest run of `npages`
  // free pages (taken in `txn`, with page_lock), and its return. They leave
  // the run's descriptors to the caller (run head or slab), except that
  // FreePages clears the first page's. FreePages fails `txn` with
  // BAD_REGION, writing nothing, unless every page of the run is in use.
  Result<uint64_t> AllocatePages(Txn& txn, uint64_t npages);
  void FreePages(Txn& txn, uint64_t first, uint64_t npages);

 private:
  Result<uint64_t> AllocateSmall(Txn& txn, int cls, uint32_t slot);
  // Takes a free block from slab `page` (caller holds its class lock).
  // REQUIRES: IsSlab(page, cls, ...) under that lock, or a slab just made.
  uint64_t TakeBlock(Txn& txn, uint64_t page, int cls);
  // Whether `page` (read from the region) heads a slab of class `cls` in
  // `stripe` owned by `owner_plus1` (client slot + 1; 0: unowned) whose
  // pages lie in the heap. Reads one descriptor; meaningful under the
  // stripe's lock.
  bool IsSlab(uint64_t page, int cls, uint32_t stripe, uint32_t owner_plus1) const;
  // True if `head` (the page + 1 that the partial list of (`cls`,
  // `stripe`) starts with; not 0) may be adopted or borrowed from (A2): an
  // unowned slab of that class and stripe, first on its list, not full and
  // with a free block. Else fails `txn` with BAD_REGION. Reads only.
  // REQUIRES: the stripe's lock.
  bool CheckPartialHead(Txn& txn, uint64_t head, int cls, uint32_t stripe);
  void PushPartial(Txn& txn, region::ClassStripe& cs, uint64_t page);
  void UnlinkPartial(Txn& txn, region::ClassStripe& cs, uint64_t page);
  // Returns the pages of the empty, unlisted slab headed by `page` (its
  // tails cleared) to the page heap. Fails `txn` with BAD_REGION, writing
  // nothing, if the slab's bitmap or count says a block is in use, if the
  // stripe counts no slab, or if a page after the head is not its tail.
  // REQUIRES: the stripe's lock.
  void ReleaseSlab(Txn& txn, region::ClassStripe& cs, uint64_t page, int cls);
  // From the summary's root: O(1), a racy read without the lock.
  uint64_t LargestFreeRun() const;
  // True if `page_plus1` (a page index + 1 read from the region, 0: none)
  // names a heap page; else fails `txn` with BAD_REGION naming `what`.
  bool CheckLink(Txn& txn, uint64_t page_plus1, const char* what);

  const region::Region& r_;
};

}  // namespace gismo::store

#endif  // GISMO_STORE_ALLOCATOR_H_
