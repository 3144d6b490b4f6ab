// One serving manager per region, across hosts: the lease in the superblock
// (Superblock::manager_owner, manager_beat; see layout.h). A host-local
// `flock` cannot see a manager on another host; this lease can.
#ifndef GISMO_MANAGER_MANAGER_LEASE_H_
#define GISMO_MANAGER_MANAGER_LEASE_H_

#include <cstdint>
#include <gismo/status.hpp>
#include <string>

#include "region/region.h"

namespace gismo::manager {

struct LeaseOptions {
  uint32_t node_id = 0;
  uint32_t lease_ms = 3000;              // how long a silent owner is given
  bool previous_manager_fenced = false;  // the operator's word
  std::string fence_command;             // fences a node (see fence_command.h)
  uint32_t fence_timeout_ms = 30000;
  std::string region_path;  // for proving a local predecessor gone
};

// Takes the lease: refuses (with who holds it) while another manager beats;
// fences a silent predecessor first (a local one through its pidfd, a
// remote one with the fence command or the operator's word); then takes it
// with a compare-and-swap. Returns the new epoch; `fenced` says how the
// predecessor was dealt with ("" if there was none).
Result<uint64_t> AcquireManagerLease(const region::Region& r, const LeaseOptions& o,
                                     std::string* fenced);
// The owner's heartbeat; false if the lease is no longer ours (stop at once).
bool BeatManagerLease(const region::Region& r, uint64_t epoch);
// A clean stop: the next manager need not wait or fence.
void ReleaseManagerLease(const region::Region& r, uint64_t epoch);

}  // namespace gismo::manager

#endif  // GISMO_MANAGER_MANAGER_LEASE_H_
