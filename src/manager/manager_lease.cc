#include "manager/manager_lease.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/crash_point.h"
#include "fence/process.h"
#include "manager/fence_command.h"
#include "region/lease_claim.h"
#include "region/nc_references.h"

namespace gismo::manager {

using region::Superblock;

namespace {
fence::ProcessIdentity OwnerIdentity(const Superblock& sb) {
  return fence::ProcessIdentity::FromWords(sb.manager_identity);
}

// A node id that a claim could not record (region::kClaimNodeUnknown).
constexpr uint64_t kNodeUnknown = ~uint64_t{0};

// The lease's owner as a newcomer sees it: its manager_owner word and, for a
// published owner, the identity and node it wrote before its epoch (if they
// pass its check); for a claim, its node and, if the claimer record is the
// claim's, its claimer.
struct OwnerView {
  uint64_t owner = 0;
  bool claim = false;  // taking the lease: not yet published
  // Empty when not known: a claim whose claimer record is another's (or a
  // mix), an owner whose identity words are not its own.
  fence::ProcessIdentity identity;
  uint64_t node = kNodeUnknown;
};
bool Known(const OwnerView& v) { return v.identity.start_time != 0; }

// Reads the owner of a coherent region's lease; false if it changed while
// read (read again). A published owner wrote its identity before its bare
// epoch (release), so loading that epoch (acquire) shows them; a later
// claimer writes them only after its CAS moved manager_owner (its stores
// are release), so a torn read shows in the second load, after the acquire
// fence. A claim is never judged by those words (they are its
// predecessor's), only by the claimer record (region/lease_claim.h), which
// its claimer wrote before the claim's CAS.
bool ReadOwner(const Superblock& sb, OwnerView* v) {
  v->owner = sb.manager_owner.load(std::memory_order_acquire);
  v->claim = region::IsOwnerClaim(v->owner);
  if (v->claim) {
    const uint32_t n = region::OwnerClaimNode(v->owner);
    region::ProcessWords words{};
    v->identity = region::ReadClaimer(sb, v->owner, &words)
                      ? fence::ProcessIdentity::FromWords(words.data())
                      : fence::ProcessIdentity{};
    v->node = n == region::kClaimNodeUnknown ? kNodeUnknown : n;
    return true;
  }
  v->identity = OwnerIdentity(sb);
  v->node = sb.manager_node.load(std::memory_order_relaxed);
  const uint64_t check = sb.manager_identity_check.load(std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_acquire);
  if (sb.manager_owner.load(std::memory_order_relaxed) != v->owner) return false;
  // Words a wrongly fenced claimer wrote over its successor's: neither the
  // process nor the node is the owner's.
  if (!region::OwnerIdentityHolds(check, v->owner, v->node, v->identity.ToWords())) {
    v->identity = {};
    v->node = kNodeUnknown;
  }
  return true;
}

std::string NodeText(uint64_t node) {
  return node == kNodeUnknown ? std::string("an unrecorded node") : "node " + std::to_string(node);
}

std::string OwnerText(const OwnerView& v) {
  if (v.claim) {
    return "manager claiming the lease on " + NodeText(v.node) +
           (Known(v) ? " (" + v.identity.ToString() + ", not yet published)"
                     : " (it has not yet said which process it is)");
  }
  return "manager epoch " + std::to_string(v.owner) + " on " + NodeText(v.node) + " (" +
         (Known(v) ? v.identity.ToString()
                   : std::string("its process and node words are not its own")) +
         ")";
}

// The text of the owner `sb` shows now.
std::string OwnerText(const Superblock& sb) {
  OwnerView v;
  while (!ReadOwner(sb, &v)) {
  }
  return OwnerText(v);
}

// Refuses a live manager (its beat moved) on this manager's own node id
// but another kernel: two hosts given one --node (the default 0 on both,
// say). A node id names one host: FenceSilent takes a silent manager of
// this node on another kernel for one that ran here before a reboot, which
// ended it, so with the id shared this manager would succeed the other
// host's merely frozen manager without fencing it. Seen live, the mix-up is
// told here, before it can matter.
Status CheckNodeIsOurs(const LeaseOptions& o, const fence::ProcessIdentity& self,
                       const fence::ProcessIdentity& live, uint64_t node, const std::string& who) {
  if (node != o.node_id || live.boot_id == 0 || self.boot_id == 0 || live.boot_id == self.boot_id) {
    return Status();
  }
  return Status(GISMO_ERR_INVALID_ARGUMENT,
                "the region's " + who + " runs on another kernel (boot id " +
                    std::to_string(live.boot_id) + ") with this manager's node id " +
                    std::to_string(node) +
                    ": give each host its own --node (a node id names one host; two hosts "
                    "sharing one could not be told from one host that rebooted)");
}

// Proves the silent manager `prev` on node `node` (described by `who`) can
// never serve again. *how says how.
Status FenceSilent(const LeaseOptions& o, const fence::ProcessIdentity& prev, uint64_t node,
                   const std::string& who, std::string* how) {
  const fence::ProcessIdentity self = fence::Self();
  if (prev.SameNamespace(self) && prev.pid == self.pid && prev.start_time == self.start_time) {
    return Status(GISMO_ERR_BUSY, "the region's " + who +
                                      " is this very process, which stopped serving without "
                                      "leaving the lease; start the manager in a new process");
  }
  std::string failed_here;  // why fencing it through its pidfd failed
  if (prev.SameNamespace(self)) {
    auto f = fence::FenceProcess(prev, o.region_path, 5000);
    if (f.ok()) {
      *how = *f == fence::FenceOutcome::kKilled ? "killed the frozen previous manager (pidfd)"
                                                : "the previous manager's process is gone";
      return Status();
    }
    if (f.status().code() != GISMO_ERR_UNSUPPORTED) {
      // Not fenced from here (it maps no region, /proc hides it, SIGKILL
      // was refused or did not end it): only the operator's word remains.
      if (!o.previous_manager_fenced) return f.status();
      failed_here = " (fencing it from here failed: " + f.status().message() + ")";
    }
  } else if (node == o.node_id && prev.boot_id != 0 && prev.boot_id != self.boot_id) {
    // The same node, since rebooted: a reboot ends every process of a host.
    *how = "the previous manager ran on this node before it rebooted";
    return Status();
  }
  if (o.previous_manager_fenced) {
    *how = "the operator declared the previous manager fenced" + failed_here;
    return Status();
  }
  if (!o.fence_command.empty()) {
    if (node == kNodeUnknown) {
      return Status(GISMO_ERR_BUSY, "the region's " + who +
                                        " has stopped, and its node is not known, so the fence "
                                        "command cannot fence it; make sure it can never run "
                                        "again, then start with --previous-manager-fenced");
    }
    // The fence command fences a whole node: never ours (it would fence this
    // manager), as for clients (doc/failure.md).
    if (node == o.node_id) {
      return Status(GISMO_ERR_BUSY,
                    "the region's " + who + " has stopped beating, on this manager's own node " +
                        std::to_string(node) +
                        ", where the fence command would fence this manager too, and it cannot "
                        "be proven stopped from here; make sure it can never run again, then "
                        "start with --previous-manager-fenced");
    }
    std::string failure;
    if (RunFenceCommand(o.fence_command, static_cast<uint32_t>(node), o.fence_timeout_ms,
                        &failure)) {
      *how = "fenced the previous manager's node " + std::to_string(node) + " (fence command)";
      return Status();
    }
    return Status(
        GISMO_ERR_BUSY,
        "the region's " + who + " has stopped beating, and fencing its node failed: " + failure);
  }
  return Status(GISMO_ERR_BUSY,
                "the region's " + who +
                    " has stopped beating, but it cannot be proven stopped from here; make sure "
                    "it can never run again (power off or fence " +
                    NodeText(node) + "), then start with --previous-manager-fenced" +
                    (node == kNodeUnknown ? "" : ", or give --fence-command"));
}

// What a manager that finds another one serving does: refuse, or, with
// --standby, say once that it stands by and wait. A standby's wait ends at
// SIGINT or SIGTERM (the manager catches them only once it serves).
volatile sig_atomic_t g_standby_stop = 0;
extern "C" void OnStandbySignal(int) { g_standby_stop = 1; }
class Standby {
 public:
  explicit Standby(bool on) : on_(on) {
    if (!on_) return;
    g_standby_stop = 0;
    struct sigaction sa {};
    sa.sa_handler = OnStandbySignal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~Standby() {
    if (!on_) return;
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }
  bool stopped() const { return on_ && g_standby_stop != 0; }
  static Status Stopped() {
    return Status(GISMO_ERR_BUSY, "stopped by a signal while standing by for the region");
  }
  // `who` serves the region and beats: BUSY naming it, or OK to wait.
  Status Serving(const std::string& who) {
    if (!on_) {
      return Status(GISMO_ERR_BUSY,
                    "another gismo-manager serves this region: " + who + " (its lease is live)");
    }
    if (!said_) spdlog::info("standing by: the region's {} serves", who);
    said_ = true;
    return Status();
  }

 private:
  bool on_;
  bool said_ = false;
  struct sigaction old_int_ {
  }, old_term_{};
};

void Sleep5ms() {
  timespec ts{0, 5'000'000};
  nanosleep(&ts, nullptr);
}

// A candidate line's process identity and its description.
fence::ProcessIdentity ProcessOf(const region::CandidateLine& c) {
  return fence::ProcessIdentity::FromWords(c.process);
}
std::string CandidateText(uint32_t node, const region::CandidateLine& c) {
  return "manager of node " + std::to_string(node) + " (" + ProcessOf(c).ToString() + ")";
}
constexpr uint64_t kServing = 1;  // the heartbeat's low bit (layout.h)

// Watches the candidate that blocks a newcomer, on the newcomer's clock
// (doc/noncoherent.md 7.4, step 3): its heartbeat changing with the serving
// bit set means it holds the region; changing without it, that it is a live
// candidate ahead in the queue; standing still for a whole lease, that it
// is suspected (only then may it be fenced).
class BlockerWatch {
 public:
  enum Verdict { kWait, kServing, kGone, kSilent };
  explicit BlockerWatch(uint64_t lease_ns) : lease_ns_(lease_ns) {}
  Verdict Look(uint32_t j, const region::CandidateLine& c) {
    const uint64_t now = MonotonicNs();
    if (j != who_) {
      who_ = j;
      moved_ = false;
      seen_ = c.heartbeat;
      until_ = now + lease_ns_;
      // A process of this kernel that is gone needs no lease.
      return c.process[2] != 0 && fence::ProvenGone(ProcessOf(c)) ? kGone : kWait;
    }
    if (c.heartbeat != seen_) {
      moved_ = true;
      seen_ = c.heartbeat;
      until_ = now + lease_ns_;
      return c.heartbeat & kServing ? kServing : kWait;
    }
    return now >= until_ ? kSilent : kWait;
  }
  void Forget() { who_ = kNobody; }
  // Whether the candidate watched has beaten since it was first looked at
  // (it runs).
  bool moved() const { return moved_; }

 private:
  static constexpr uint32_t kNobody = ~0u;
  uint64_t lease_ns_;
  uint32_t who_ = kNobody;
  uint64_t seen_ = 0, until_ = 0;
  bool moved_ = false;
};
}  // namespace

ManagerLease::ManagerLease(const region::Region& r, LeaseOptions o)
    : r_(r), o_(std::move(o)), self_(fence::Self()) {}
ManagerLease::~ManagerLease() = default;

Result<std::string> ManagerLease::Acquire() {
  return r_.noncoherent() ? AcquireByElection() : AcquireByCas();
}

// The coherent lease (layout.h, Superblock::manager_owner). A newcomer
// judges a published owner by the identity words beside it, and a claim (an
// owner that has not yet published who it is) by the claimer record its
// claimer wrote first, never by those words (its predecessor's). A claim
// completes within microseconds unless its process stopped in between; one
// still standing after a lease is fenced like any silent owner (through its
// pidfd when its record names a process of this kernel) before it is taken.
Result<std::string> ManagerLease::AcquireByCas() {
  Superblock& sb = r_.sb();
  Standby standby(o_.standby);
  for (;;) {
    std::string fenced;
    OwnerView v;
    if (!ReadOwner(sb, &v)) continue;
    uint64_t owner = v.owner;
    if (owner != 0 && Known(v) && fence::ProvenGone(v.identity)) {
      fenced = "the previous manager's process is gone";
    } else if (owner != 0) {
      // Watch the owner's beat (a claim's word) for a whole lease, on our
      // own clock: silent that long, it is suspected; another owner, or its
      // leaving, means looking again from the top.
      uint64_t lease_ms = sb.manager_lease_ms.load(std::memory_order_relaxed);
      if (lease_ms == 0 || lease_ms > kMaxManagerLeaseMs) lease_ms = o_.lease_ms;
      uint64_t beat = sb.manager_beat.load(std::memory_order_acquire);
      uint64_t until = MonotonicNs() + lease_ms * 1'000'000;
      bool silent = false;
      for (;;) {
        if (standby.stopped()) return Standby::Stopped();
        const uint64_t now_owner = sb.manager_owner.load(std::memory_order_acquire);
        if (now_owner == 0) break;  // it left
        const uint64_t now_beat = sb.manager_beat.load(std::memory_order_acquire);
        if (now_owner != owner || now_beat != beat) {
          if (now_owner == owner && Known(v)) {
            Status s = CheckNodeIsOurs(o_, self_, v.identity, v.node, OwnerText(v));
            if (!s.ok()) return s;
          }
          if (Status s = standby.Serving(OwnerText(sb)); !s.ok()) return s;
          if (now_owner != owner) break;
          beat = now_beat;
          until = MonotonicNs() + lease_ms * 1'000'000;
        } else if (MonotonicNs() >= until) {
          silent = true;
          break;
        }
        Sleep5ms();
      }
      if (!silent) continue;
      // Still the owner we watched (the loop saw no change): read it again
      // for the identity its silence leaves.
      if (!ReadOwner(sb, &v) || v.owner != owner) continue;
      if (Status s = FenceSilent(o_, v.identity, v.node, OwnerText(v), &fenced); !s.ok()) {
        return s;
      }
    }
    const uint64_t epoch = sb.manager_epoch.fetch_add(1, std::memory_order_acq_rel) + 1;
    if (region::IsOwnerClaim(epoch)) {
      return Status(GISMO_ERR_BAD_REGION, "the region's manager epoch (" + std::to_string(epoch) +
                                              ") is out of range: the superblock is damaged");
    }
    // The claim first, then who we are, then the bare epoch: a newcomer never
    // pairs our epoch with our predecessor's identity. Who makes the claim
    // goes in the claimer record first (the CAS publishes it), so a claim
    // left standing by this process can be judged by it.
    const uint64_t claim = region::PackOwnerClaim(epoch, o_.node_id);
    region::WriteClaimer(sb, claim, self_.ToWords());
    if (!sb.manager_owner.compare_exchange_strong(owner, claim, std::memory_order_acq_rel,
                                                  std::memory_order_acquire)) {
      // Another one took it first: stand by it. Or the one we fenced changed
      // the lease before it was stopped (it published its claim): look again.
      if (o_.standby || !fenced.empty()) continue;
      return Status(GISMO_ERR_BUSY,
                    "another gismo-manager took this region first: " + OwnerText(sb));
    }
    GISMO_CRASH_POINT("lease.claimed");
    // A claim is taken from us only once we are fenced. On a wrong word of
    // the operator's we may still run here: this check narrows what we then
    // write over our successor's identity, and what we write anyway fails
    // the successor's check (its epoch's), so it is not taken for its.
    if (sb.manager_owner.load(std::memory_order_acquire) == claim) {
      epoch_ = epoch;
      PublishOwner();
      GISMO_CRASH_POINT("lease.published");
      uint64_t expected = claim;
      if (sb.manager_owner.compare_exchange_strong(expected, epoch, std::memory_order_acq_rel,
                                                   std::memory_order_relaxed)) {
        sb.manager_beat.fetch_add(1, std::memory_order_release);
        return fenced;
      }
      epoch_ = 0;
    }
    return Status(GISMO_ERR_BUSY,
                  "another gismo-manager took this region over while this one was claiming it "
                  "(this one was declared fenced): " +
                      OwnerText(sb));
  }
}

// The election (doc/noncoherent.md 7.4). Candidates beat while they wait
// (heartbeat low bit 0) and while they serve (1). A candidate that blocks
// this one is watched: serving and beating, it holds the region (refuse);
// waiting and beating, it is ahead of us in the queue (wait on); silent for
// a whole lease, it is suspected and fenced, and only then its line cleared.
// Tickets order the waits, so a chain of waiting candidates ends at the
// lowest ticket, which serves, dies (and is fenced) or gives up.
Result<std::string> ManagerLease::AcquireByElection() {
  using region::CandidateLine;
  using region::kMaxCandidates;
  if (o_.node_id >= kMaxCandidates) {
    return Status(GISMO_ERR_INVALID_ARGUMENT,
                  "a non-coherent region elects its manager among nodes 0.." +
                      std::to_string(kMaxCandidates - 1) + " (one candidate line each); node " +
                      std::to_string(o_.node_id) + " has none: run it as --node below " +
                      std::to_string(kMaxCandidates));
  }
  Superblock& sb = r_.sb();
  election_ = std::make_unique<region::OwnerElection<region::HwLines>>(lines_, sb.candidates,
                                                                       kMaxCandidates, o_.node_id);
  auto& e = *election_;
  std::string fenced;
  const uint64_t lease_ms = [&] {
    lines_.Invalidate(&sb.manager_owner, sizeof(region::Word));
    const uint64_t ms = lines_.Load(region::NcWord(sb.manager_lease_ms));
    return ms == 0 || ms > kMaxManagerLeaseMs ? uint64_t{o_.lease_ms} : ms;
  }();
  // Settles candidate j, whose line holds a claim that blocks this manager,
  // once it can be: true when its line has been cleared (it was proven gone,
  // or fenced), false while it must be waited for; an error when it serves
  // and beats (its lease is live) or is silent and cannot be fenced.
  BlockerWatch watch(lease_ms * 1'000'000);
  Standby standby(o_.standby);
  auto settle = [&](uint32_t j) -> Result<bool> {
    if (standby.stopped()) return Standby::Stopped();
    const CandidateLine c = e.LineOf(j);
    if (c.choosing == 0 && c.ticket == 0) return true;  // it left meanwhile
    const BlockerWatch::Verdict verdict = watch.Look(j, c);
    if (watch.moved() && c.process[2] != 0) {
      Status s = CheckNodeIsOurs(o_, self_, ProcessOf(c), j, CandidateText(j, c));
      if (!s.ok()) return s;
    }
    switch (verdict) {
      case BlockerWatch::kWait:
        return false;
      case BlockerWatch::kServing:
        if (Status s = standby.Serving(CandidateText(j, c)); !s.ok()) return s;
        return false;
      case BlockerWatch::kGone:
        fenced = "the previous manager's process is gone";
        break;
      case BlockerWatch::kSilent:
        if (Status s = FenceSilent(o_, ProcessOf(c), j, CandidateText(j, c), &fenced); !s.ok()) {
          return s;
        }
        break;
    }
    e.ClearFenced(j);
    watch.Forget();
    return true;
  };
  // Our node's own line may hold a claim: one left by an earlier manager of
  // this node (dead, or frozen), or one of a manager serving now (the host
  // lock was skipped, or the region reached by another path). It is settled
  // as any other blocker, before this manager writes the line.
  for (;;) {
    const CandidateLine own = e.LineOf(o_.node_id);
    if (own.choosing == 0 && own.ticket == 0) break;
    auto settled = settle(o_.node_id);
    if (!settled.ok()) {
      election_.reset();
      return settled.status();
    }
    if (!*settled) Sleep5ms();
  }
  const fence::ProcessIdentity& me = self_;
  e.Begin(me.pid ^ (me.start_time << 20) ^ me.boot_id, me.ToWords());
  e.Beat(++beats_ << 1);
  // A candidate line whose ticket is past the limit (T1, T2) blocks this
  // manager as a live candidate would, until it is settled: said when the
  // wait moves to such a line, as nothing else would show why the election
  // does not end.
  uint32_t corrupt_said = UINT32_MAX;
  for (;;) {
    const region::ElectionState st = e.Poll();
    if (st.owner) break;
    if (st.waiting_on != corrupt_said) {
      const uint64_t ticket = e.LineOf(st.waiting_on).ticket;
      if (ticket >= region::kElectionTicketLimit - 1) {
        corrupt_said = st.waiting_on;
        spdlog::warn(
            "election: node {}'s candidate line holds ticket {:#x}, past the limit (corrupt, or "
            "written by something other than a manager); waiting on it until that node is "
            "fenced or its line cleared (gismo-fsck reports it)",
            st.waiting_on, ticket);
      }
    }
    auto settled = settle(st.waiting_on);
    if (!settled.ok()) {
      e.Leave();
      election_.reset();
      return settled.status();
    }
    if (*settled) continue;
    e.Beat(++beats_ << 1);
    Sleep5ms();
  }
  // The owner: the superblock's owner lines are ours to write now (their
  // previous writer is fenced or left).
  lines_.Invalidate(&sb.manager_epoch, sizeof(region::Word));
  epoch_ = lines_.Load(region::NcWord(sb.manager_epoch)) + 1;
  lines_.Store(region::NcWord(sb.manager_epoch), epoch_);
  lines_.Flush(&sb.manager_epoch, sizeof(region::Word));
  PublishOwner();
  e.Beat((++beats_ << 1) | kServing);
  spdlog::info("elected owner of the non-coherent region: node {}, ticket {}, epoch {}", o_.node_id,
               e.ticket(), epoch_);
  return fenced;
}

void ManagerLease::PublishOwner() {
  Superblock& sb = r_.sb();
  const fence::ProcessIdentity::Words words = self_.ToWords();
  // Release: a newcomer that reads any of these after our claim's CAS also
  // sees that CAS (ReadOwner's second load).
  for (int k = 0; k < 4; ++k) sb.manager_identity[k].store(words[k], std::memory_order_release);
  sb.manager_node.store(o_.node_id, std::memory_order_release);
  sb.manager_lease_ms.store(o_.lease_ms, std::memory_order_relaxed);
  if (!election_) {
    sb.manager_identity_check.store(region::OwnerIdentityCheck(epoch_, o_.node_id, words),
                                    std::memory_order_release);
  } else {
    // One writer: the owner. The line holds manager_owner .. manager_identity.
    sb.manager_owner.store(epoch_, std::memory_order_relaxed);
    sb.manager_beat.store(sb.manager_beat.load(std::memory_order_relaxed) + 1,
                          std::memory_order_relaxed);
    lines_.Flush(&sb.manager_owner, region::kCacheLine);
  }
}

std::string ManagerLease::Holder() const { return OwnerText(r_.sb()); }

bool ManagerLease::Beat() {
  Superblock& sb = r_.sb();
  if (!election_) {
    if (sb.manager_owner.load(std::memory_order_acquire) != epoch_) return false;
    sb.manager_beat.fetch_add(1, std::memory_order_release);
    return true;
  }
  // A successor writes manager_owner only after it fenced us and cleared
  // our line: either change means we were fenced (by the operator's word,
  // wrongly, since we still run) and must write nothing more.
  lines_.Invalidate(&sb.manager_owner, region::kCacheLine);
  if (lines_.Load(region::NcWord(sb.manager_owner)) != epoch_) return false;
  if (election_->LineOf(o_.node_id).ticket != election_->ticket()) return false;
  lines_.Store(region::NcWord(sb.manager_beat), lines_.Load(region::NcWord(sb.manager_beat)) + 1);
  lines_.Flush(&sb.manager_owner, region::kCacheLine);
  election_->Beat((++beats_ << 1) | kServing);
  return true;
}

void ManagerLease::Release() {
  if (epoch_ == 0) return;  // never taken
  Superblock& sb = r_.sb();
  if (!election_) {
    uint64_t expected = epoch_;
    if (sb.manager_owner.compare_exchange_strong(expected, 0, std::memory_order_acq_rel,
                                                 std::memory_order_relaxed)) {
      r_.Persist(&sb.manager_owner, sizeof(region::Word));
    }
    return;
  }
  lines_.Invalidate(&sb.manager_owner, region::kCacheLine);
  if (lines_.Load(region::NcWord(sb.manager_owner)) != epoch_) return;  // superseded
  lines_.Store(region::NcWord(sb.manager_owner), 0);
  lines_.Flush(&sb.manager_owner, region::kCacheLine);
  election_->Leave();
}

}  // namespace gismo::manager
