// The last step of fencing a process of a non-coherent region on its own
// host (doc/noncoherent.md, 7.3): a killed process's dirty lines stay in
// its host's caches, and the host may write them back at any later moment,
// over what the owner wrote after it recovered the slot (a cleared table, an
// emptied ring, a reused block). So the fencer on that host (the node
// agent), once it has proven the process gone, writes back and drops every
// line the process may have written:
//  - its slot header's client lines (line 1: log_epoch .. departed; line 2:
//    the held summary),
//  - its held table, its request ring and its response ring (whose head is
//    the client's), and its recent-gets line after them,
//  - the block of each object it was creating (records in state kCreated
//    naming its slot; each record read under its seqlock, invalidated first,
//    its block checked to lie in the heap).
// Writing a line back from any process of a host writes back that host's
// copy (CLFLUSHOPT acts on the physical line in every cache of the host),
// which is why the fencer need not be the dead process. Lines of sealed
// objects need nothing: their creator flushed them before the seal and
// nobody writes them since.
//
// Only on the dead process's host: the owner's own host shares its caches
// with the owner, so a local fence needs none of this. The owner recovers
// the slot only after the fencer has said the process is fenced.
#ifndef GISMO_REGION_NC_FENCE_H_
#define GISMO_REGION_NC_FENCE_H_

#include <cstdint>

#include "region/layout.h"
#include "region/nc_references.h"
#include "region/region.h"

namespace gismo::region {

struct NcWriteBack {
  uint64_t bytes = 0;     // of the slot's own lines and the blocks below
  uint32_t unsealed = 0;  // blocks of objects it was creating
  uint32_t busy = 0;      // records the owner kept changing (not looked at)
};

// Writes back and drops the lines of client slot `slot` that its client
// writes (its slot header's client lines, held table, rings and recent-gets
// line); returns their bytes. Serves a fencer for a dead process (below) and
// a client that leaves through the region for itself.
template <typename Lines>
uint64_t NcWriteBackClientLines(Lines& lines, const Region& r, uint32_t slot) {
  uint64_t bytes = 0;
  auto drop = [&](const void* p, uint64_t n) {
    lines.Invalidate(p, n);  // a dirty line is written back first
    bytes += n;
  };
  const auto* header = reinterpret_cast<const uint8_t*>(&r.slot(slot));
  drop(header + kCacheLine, 2 * kCacheLine);
  drop(r.held(slot), uint64_t{r.fixed().held_capacity} * sizeof(HeldEntry));
  // Its request and response rings, and its recent-gets line after them.
  const auto* rings = static_cast<const uint8_t*>(r.request_ring(slot));
  drop(rings, reinterpret_cast<const uint8_t*>(r.recent_gets(slot) + kNcRecentGets) - rings);
  return bytes;
}

// Writes back and drops the lines client slot `slot` may have written (see
// above). REQUIRES: the slot's process is proven gone, and this runs on its
// host. `r` is the region as this host maps it.
template <typename Lines>
NcWriteBack NcWriteBackDeadClient(Lines& lines, const Region& r, uint32_t slot) {
  NcWriteBack out;
  auto drop = [&](const void* p, uint64_t n) {
    lines.Invalidate(p, n);  // a dirty line is written back first
    out.bytes += n;
  };
  out.bytes += NcWriteBackClientLines(lines, r, slot);
  const uint32_t records = r.num_records();
  // The owner holds a record's version odd only while it writes the
  // record: the waits for busy records take a second in all, not a second
  // each (an owner holding every record odd would stall the fence for as
  // many seconds as the region has records).
  uint64_t give_up_ns = 0;  // set at the first busy record
  for (uint32_t g = 0; g < records; ++g) {
    ObjectRecord& rec = r.record(g);
    NcRecordWords w;
    bool read = NcReadRecord(lines, rec, &w);
    if (!read) {
      const uint64_t now = MonotonicNs();
      if (give_up_ns == 0) give_up_ns = now + 1'000'000'000;
      for (NcPatience p(give_up_ns > now ? give_up_ns - now : 0); !read && p.Again();) {
        read = NcReadRecord(lines, rec, &w);
      }
    }
    if (!read) {
      ++out.busy;
      continue;
    }
    if (InfoState(w.info) != ObjectState::kCreated || InfoSlot(w.info) != slot) continue;
    const uint64_t bytes = ((SizesData(w.sizes) + 63) & ~uint64_t{63}) + SizesMeta(w.sizes);
    if (!r.ValidHeapBlock(w.heap_offset, bytes)) continue;  // a corrupt record: never followed
    drop(r.heap() + w.heap_offset, bytes);
    ++out.unsealed;
  }
  return out;
}

}  // namespace gismo::region

#endif  // GISMO_REGION_NC_FENCE_H_
