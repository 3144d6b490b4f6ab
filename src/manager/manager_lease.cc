#include "manager/manager_lease.h"

#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "fence/process.h"
#include "manager/fence_command.h"

namespace gismo::manager {

using region::Superblock;

namespace {
fence::ProcessIdentity OwnerIdentity(const Superblock& sb) {
  fence::ProcessIdentity id;
  id.boot_id = sb.manager_identity[0].load(std::memory_order_relaxed);
  id.pid_ns = sb.manager_identity[1].load(std::memory_order_relaxed);
  id.pid = sb.manager_identity[2].load(std::memory_order_relaxed);
  id.start_time = sb.manager_identity[3].load(std::memory_order_relaxed);
  return id;
}

std::string OwnerText(const Superblock& sb, uint64_t owner) {
  return "manager epoch " + std::to_string(owner) + " on node " +
         std::to_string(sb.manager_node.load(std::memory_order_relaxed)) + " (" +
         OwnerIdentity(sb).ToString() + ")";
}

// Proves the silent previous owner can never serve again.
Status FencePredecessor(const region::Region& r, const LeaseOptions& o, uint64_t owner,
                        std::string* how) {
  const Superblock& sb = r.sb();
  const fence::ProcessIdentity prev = OwnerIdentity(sb);
  if (prev.SameNamespace(fence::Self())) {
    auto f = fence::FenceProcess(prev, o.region_path, 5000);
    if (f.ok()) {
      *how = *f == fence::FenceOutcome::kKilled ? "killed the frozen previous manager (pidfd)"
                                                : "the previous manager's process is gone";
      return Status();
    }
    if (f.status().code() != GISMO_ERR_UNSUPPORTED) return f.status();
  }
  // The same node, since rebooted: a reboot ends every process of a host.
  const uint64_t prev_node = sb.manager_node.load(std::memory_order_relaxed);
  if (prev_node == o.node_id && prev.boot_id != 0 && prev.boot_id != fence::Self().boot_id) {
    *how = "the previous manager ran on this node before it rebooted";
    return Status();
  }
  if (o.previous_manager_fenced) {
    *how = "the operator declared the previous manager fenced";
    return Status();
  }
  const uint32_t node = static_cast<uint32_t>(sb.manager_node.load(std::memory_order_relaxed));
  if (!o.fence_command.empty()) {
    std::string failure;
    if (RunFenceCommand(o.fence_command, node, static_cast<int>(o.fence_timeout_ms), &failure)) {
      *how = "fenced the previous manager's node " + std::to_string(node) + " (fence command)";
      return Status();
    }
    return Status(GISMO_ERR_BUSY,
                  "the region's " + OwnerText(sb, owner) +
                      " has stopped beating, and fencing its node failed: " + failure);
  }
  return Status(GISMO_ERR_BUSY,
                "the region's " + OwnerText(sb, owner) +
                    " has stopped beating, but it cannot be proven stopped from here; make sure "
                    "it can never run again (power off or fence node " +
                    std::to_string(node) +
                    "), then start with --previous-manager-fenced, or give --fence-command");
}
}  // namespace

Result<uint64_t> AcquireManagerLease(const region::Region& r, const LeaseOptions& o,
                                     std::string* fenced) {
  Superblock& sb = r.sb();
  fenced->clear();
  uint64_t owner = sb.manager_owner.load(std::memory_order_acquire);
  if (owner != 0 && fence::ProvenGone(OwnerIdentity(sb))) {
    *fenced = "the previous manager's process is gone";
  } else if (owner != 0) {
    // Watch the owner's beat for a whole lease, on our own clock.
    uint64_t lease_ms = sb.manager_lease_ms.load(std::memory_order_relaxed);
    if (lease_ms == 0 || lease_ms > 600'000) lease_ms = o.lease_ms;
    const uint64_t beat = sb.manager_beat.load(std::memory_order_acquire);
    const uint64_t until = MonotonicNs() + lease_ms * 1'000'000;
    while (MonotonicNs() < until) {
      if (sb.manager_beat.load(std::memory_order_acquire) != beat ||
          sb.manager_owner.load(std::memory_order_acquire) != owner) {
        return Status(GISMO_ERR_BUSY,
                      "another gismo-manager serves this region: " +
                          OwnerText(sb, sb.manager_owner.load(std::memory_order_acquire)) +
                          " (its lease is live)");
      }
      timespec ts{0, 5'000'000};
      nanosleep(&ts, nullptr);
    }
    if (Status s = FencePredecessor(r, o, owner, fenced); !s.ok()) return s;
  }
  const uint64_t epoch = sb.manager_epoch.fetch_add(1, std::memory_order_acq_rel) + 1;
  if (!sb.manager_owner.compare_exchange_strong(owner, epoch, std::memory_order_acq_rel,
                                                std::memory_order_acquire)) {
    return Status(GISMO_ERR_BUSY,
                  "another gismo-manager took this region first: " + OwnerText(sb, owner));
  }
  const fence::ProcessIdentity me = fence::Self();
  sb.manager_identity[0].store(me.boot_id, std::memory_order_relaxed);
  sb.manager_identity[1].store(me.pid_ns, std::memory_order_relaxed);
  sb.manager_identity[2].store(me.pid, std::memory_order_relaxed);
  sb.manager_identity[3].store(me.start_time, std::memory_order_relaxed);
  sb.manager_node.store(o.node_id, std::memory_order_relaxed);
  sb.manager_lease_ms.store(o.lease_ms, std::memory_order_relaxed);
  sb.manager_beat.fetch_add(1, std::memory_order_release);
  return epoch;
}

bool BeatManagerLease(const region::Region& r, uint64_t epoch) {
  Superblock& sb = r.sb();
  if (sb.manager_owner.load(std::memory_order_acquire) != epoch) return false;
  sb.manager_beat.fetch_add(1, std::memory_order_release);
  return true;
}

void ReleaseManagerLease(const region::Region& r, uint64_t epoch) {
  uint64_t expected = epoch;
  if (r.sb().manager_owner.compare_exchange_strong(expected, 0, std::memory_order_acq_rel,
                                                   std::memory_order_relaxed)) {
    r.Persist(&r.sb().manager_owner, sizeof(region::Word));
  }
}

}  // namespace gismo::manager
