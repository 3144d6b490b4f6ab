// A persistence simulator behind Region::Persist, for tests of the order in
// which a durable region reaches its medium. Test builds only
// (GISMO_CRASH_POINTS); the shipped library has none of it.
//
// Model. The "medium" is a shadow file of the region's size. It receives
// exactly the cache lines that Persist() is asked for (at the moment of the
// call, from the live region), and nothing else. At a power cut (a crash
// point reached with GISMO_CRASH_AT, see common/crash_point.h) every other
// dirty line, i.e. every line that differs between the region and the
// shadow, is also written with probability 1/2 from a seeded generator:
// the kernel may write any dirty page back early, and a CPU any dirty line.
// The result is written to SHADOW.cut: "the file after power loss". A test
// opens it as a region, recovers it and checks it.
//
// Environment: GISMO_PERSIST_SHADOW=path enables it for every durable
// region a process maps (the manager and the clients of one test share the
// shadow; each Persist copies under an exclusive flock of the shadow, so
// copies of different processes do not interleave within a range);
// GISMO_PERSIST_SEED=n seeds the power cut's choice (with the pid).
//
// Granularity: a cache line (64 B), the weakest guarantee of any medium the
// region supports (CLWB persists lines; msync persists whole pages, which
// is a case of "other dirty lines written early").
#ifndef GISMO_REGION_PERSIST_SIM_H_
#define GISMO_REGION_PERSIST_SIM_H_

#include <cstdint>

namespace gismo::region {
class Region;
}

namespace gismo::region::persist_sim {

// Attaches the simulator to `r` if GISMO_PERSIST_SHADOW is set (the first
// region of the process only): maps the shadow (created zero-filled: nothing
// persisted yet) and arms the power cut at crash points. True if attached.
bool Attach(const Region& r);
// Copies the lines covering [offset, offset + length) of `r` to the shadow.
void Persist(const Region& r, uint64_t offset, uint64_t length);
// Writes SHADOW.cut: the shadow plus a random half of the other dirty lines.
void PowerCut();

}  // namespace gismo::region::persist_sim

#endif  // GISMO_REGION_PERSIST_SIM_H_
