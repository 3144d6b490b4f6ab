// The region-wide non-coherence simulator (doc/noncoherent.md, section 10):
// in a GISMO_NONCOHERENT_SIM build, every process that maps a region
// formatted non-coherent works on a simulated host's private cache of the
// whole region instead of on the shared memory itself, so the product's code
// (which reads and writes the region through pointers) runs unchanged and a
// missing flush or invalidate shows.
//
// Model. Three images of the region per process, plus one table shared by
// every process:
//  - the device: the region file, MAP_SHARED (what every host's memory
//    controller sees);
//  - the view: private anonymous memory, filled from the device when the
//    region is mapped. Region::base() points here, so every load and store
//    of the process (and every atomic) hits this host's cache, however stale;
//  - the clean image: private, what each line of the view held when this
//    host last filled or wrote it back. A line whose view differs from its
//    clean image is dirty;
//  - the line locks: one word per stripe of lines, in the region file past
//    the region's end (so every process maps the same ones and they go when
//    the file goes). A write-back or fill of a line holds its stripe's lock,
//    so a line moves whole, as on the hardware (a fill never mixes the words
//    of two write-backs), and two threads of one host never interleave
//    operations on one line.
// FlushLines and InvalidateLines (region/cache_lines.h) act on the images
// when their range lies in a simulated view:
//  - flush: each dirty line is written back whole (all 64 bytes, as the
//    hardware does: bytes this host did not store overwrite whatever another
//    host wrote there) and becomes clean (CLWB);
//  - invalidate: each dirty line is written back, then the line is filled
//    from the device (CLFLUSHOPT then a load). A word that a thread of this
//    host stores into while the fill runs keeps the store (compare-and-swap
//    against the clean image), as a coherent host orders the two;
//  - at each call, with GISMO_SIM_CHAOS_PPM parts per million (default
//    20000) drawn from a seeded generator (GISMO_SIM_SEED, default 1), a
//    random line of the same 4 KiB page is written back early, and another
//    is evicted (written back if dirty, then refilled): hardware may do
//    either at any moment, so a protocol must be correct whichever happens.
// A process killed by a signal loses its view with every line it did not
// flush: a dead host. Closing a region does not write anything back either:
// what a protocol did not flush is never assumed to reach memory.
//
// Limits: a word stored with the value it already held leaves its line clean
// (the hardware would write the line back, possibly over another host's
// bytes; Refresh covers the one place this matters, a block given to a new
// creator); a host killed inside a write-back leaves its line's lock held,
// which the next locker takes over as soon as the holder is gone (every
// process holds a lock on a byte of the region file named by its token
// while it lives, which any PID namespace can test), or after 5 s; only
// regular files are simulated (hugetlbfs, DAX devices and PCI BARs are
// mapped directly).
#ifndef GISMO_REGION_VIEW_SIM_H_
#define GISMO_REGION_VIEW_SIM_H_

#include <cstdint>
#include <string>

namespace gismo::region::view_sim {

// Whether this build simulates non-coherent regions (GISMO_NONCOHERENT_SIM).
constexpr bool kEnabled =
#ifdef GISMO_NONCOHERENT_SIM
    true;
#else
    false;
#endif

#ifdef GISMO_NONCOHERENT_SIM
// Maps `size` bytes of `fd` (a regular file) as a simulated host's view, at
// an address aligned to `align`: the device mapping, the view and its clean
// image, and the line locks past `size` in the file (grown if needed).
// Returns the view, or nullptr if the file cannot be simulated (the caller
// maps it directly); errno is kept.
uint8_t* Map(int fd, uint64_t size, uint64_t align);
// Unmaps what Map made for `view` (nothing is written back).
void Unmap(uint8_t* view);

// The simulated flush and invalidate of [p, p + n); false (nothing done) if
// the range is not in a simulated view.
bool Flush(const void* p, uint64_t n);
bool Invalidate(const void* p, uint64_t n);
// The caller is about to write [p, p + n) afresh (a heap block given to its
// creator): each line is written back if dirty and filled from memory, so a
// later store of the value a stale copy already held still differs from
// the clean image. On the hardware any store makes its line dirty; the
// comparison this simulator uses cannot see such a store otherwise, and a
// creator re-creating an object with the bytes it once wrote in the same
// block would lose its write. Nothing if the range is not simulated.
void Refresh(const void* p, uint64_t n);
// Tests only: takes the lock of the line at `p` and keeps it, as a host
// that dies inside a write-back does; false if `p` is not simulated.
bool HoldLineLockForTesting(const void* p);
// Tests only: whether the holder of the line lock at `p` is known gone
// (what lets a waiter take the lock over at once).
bool LineLockHolderGoneForTesting(const void* p);
#else
// Other builds: nothing is simulated.
inline uint8_t* Map(int, uint64_t, uint64_t) { return nullptr; }
inline void Unmap(uint8_t*) {}
inline bool Flush(const void*, uint64_t) { return false; }
inline bool Invalidate(const void*, uint64_t) { return false; }
inline void Refresh(const void*, uint64_t) {}
inline bool HoldLineLockForTesting(const void*) { return false; }
inline bool LineLockHolderGoneForTesting(const void*) { return false; }
#endif

}  // namespace gismo::region::view_sim

#endif  // GISMO_REGION_VIEW_SIM_H_
