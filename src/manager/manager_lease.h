// One serving manager per region, across hosts. A host-local `flock` cannot
// see a manager on another host; the lease in the region can:
//  - a coherent region: Superblock::manager_owner, taken by compare-and-swap
//    (layout.h);
//  - a non-coherent region, where no cross-host atomic can be trusted: the
//    owner election (region/owner_election.h, doc/noncoherent.md 7.4), one
//    candidate line per node, the manager's node id its candidate number.
// Either way a silent predecessor is only suspected: it is fenced (its
// process proven gone, its node fenced by the fence command, or the
// operator's word) before anyone takes over.
#ifndef GISMO_MANAGER_MANAGER_LEASE_H_
#define GISMO_MANAGER_MANAGER_LEASE_H_

#include <cstdint>
#include <gismo/status.hpp>
#include <memory>
#include <string>

#include "fence/process.h"
#include "region/cache_lines.h"
#include "region/owner_election.h"
#include "region/region.h"

namespace gismo::manager {

// The longest manager lease a region's word may name (a longer one is
// taken for damage, and the newcomer's own lease used instead).
inline constexpr uint32_t kMaxManagerLeaseMs = 600'000;

struct LeaseOptions {
  uint32_t node_id = 0;
  uint32_t lease_ms = 3000;              // how long a silent owner is given
  bool previous_manager_fenced = false;  // the operator's word
  bool standby = false;                  // wait while another manager serves
  std::string fence_command;             // fences a node (see fence_command.h)
  uint32_t fence_timeout_ms = 30000;
  std::string region_path;  // for proving a local predecessor gone
};

class ManagerLease {
 public:
  ManagerLease(const region::Region& r, LeaseOptions o);
  ~ManagerLease();
  ManagerLease(const ManagerLease&) = delete;
  ManagerLease& operator=(const ManagerLease&) = delete;

  // Takes the lease: refuses (with who holds it) while another manager
  // beats, or with `standby` waits until it stops or falls silent (SIGINT
  // or SIGTERM end the wait: BUSY); fences a silent predecessor first; then
  // takes it. Returns how the predecessor was dealt with ("" if there was
  // none). REQUIRES: not taken.
  Result<std::string> Acquire();
  // The epoch this manager serves under (manager_epoch after its start).
  uint64_t epoch() const { return epoch_; }
  // The owner's heartbeat; false if the lease is no longer ours (a
  // successor took over after fencing us: stop at once, write nothing).
  bool Beat();
  // Who holds the lease now, for a log line: a manager by epoch, node and
  // process, or a claim by its node (and its claimer, if its record says).
  std::string Holder() const;
  // A clean stop: the next manager need not wait or fence.
  void Release();

 private:
  Result<std::string> AcquireByCas();
  Result<std::string> AcquireByElection();
  // Publishes this manager as the owner: epoch, identity, node, lease.
  void PublishOwner();

  const region::Region& r_;
  const LeaseOptions o_;
  // This process, read from /proc once, before any step of the lease (so
  // none falls between a claim and its publication).
  const fence::ProcessIdentity self_;
  uint64_t epoch_ = 0;
  region::HwLines lines_;
  // The non-coherent mode's election (null in a coherent region).
  std::unique_ptr<region::OwnerElection<region::HwLines>> election_;
  uint64_t beats_ = 0;
};

}  // namespace gismo::manager

#endif  // GISMO_MANAGER_MANAGER_LEASE_H_
