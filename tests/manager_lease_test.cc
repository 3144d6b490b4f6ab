// The manager lease of a non-coherent region: the owner election as the
// manager runs it (src/manager/manager_lease.cc, doc/noncoherent.md 7.4).
// Candidates here live in this one process; the ones that stand for another
// manager's process get a line written by the test with that process's
// identity (gone, or in another PID namespace), as a host of their own
// would have left it. failure.two_managers.noncoherent runs the same rules
// with real manager processes. The last test is the process lookup the
// lease and the node agent fence by (src/fence/process.cc).
#include "manager/manager_lease.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>

#include "fence/process.h"
#include "manager/fence_command.h"
#include "region/lease_claim.h"
#include "region/nc_references.h"
#include "testing/process.h"

namespace gismo::manager {
namespace {

using region::CandidateLine;
using region::CoherenceMode;

// Beats `lease` as its owner's tick does, on a thread of its own, until
// destroyed.
class Beating {
 public:
  explicit Beating(ManagerLease& lease)
      : thread_([this, &lease] {
          while (!stop_.load(std::memory_order_relaxed)) {
            EXPECT_TRUE(lease.Beat());
            std::this_thread::yield();
          }
        }) {}
  ~Beating() {
    stop_.store(true, std::memory_order_relaxed);
    thread_.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// A region of its own for each test, formatted `coherence`, and what both
// kinds of lease test need.
class LeaseRegionTest : public ::testing::Test {
 protected:
  explicit LeaseRegionTest(CoherenceMode coherence) : coherence_(coherence) {}
  void SetUp() override {
    path_ = "/dev/shm/" + testing::UniqueName("lease");
    region::FormatOptions fo;
    fo.size = 16ull << 20;
    fo.coherence = coherence_;
    auto r = region::Region::Format(path_, fo);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    r_ = std::move(*r);
  }
  void TearDown() override { unlink(path_.c_str()); }

  LeaseOptions On(uint32_t node) {
    LeaseOptions o;
    o.node_id = node;
    o.lease_ms = 50;
    o.region_path = path_;
    return o;
  }
  // A process of this kernel's namespace that is gone: our pid with
  // another start time (the pid is someone else's now).
  static fence::ProcessIdentity Gone() {
    fence::ProcessIdentity id = fence::Self();
    id.start_time += 1;
    return id;
  }
  uint64_t Owner() { return r_->sb().manager_owner.load(std::memory_order_relaxed); }
  // Acquire as a standby on `node` while another thread runs `beat` every
  // 5 ms, at most 200 times (a standby that misses what it should refuse
  // then finds the owner silent).
  Result<std::string> AcquireAsStandbyWhileBeating(uint32_t node,
                                                   const std::function<void()>& beat) {
    std::atomic<bool> stop{false};
    std::thread other([&] {
      for (int i = 0; i < 200 && !stop.load(std::memory_order_relaxed); ++i) {
        beat();
        usleep(5000);
      }
    });
    LeaseOptions o = On(node);
    o.standby = true;
    o.lease_ms = 1000;  // not 50: a beater stalled by a loaded machine is not silence
    ManagerLease b(*r_, o);
    Result<std::string> how = b.Acquire();
    stop.store(true, std::memory_order_relaxed);
    other.join();
    return how;
  }
  static void ExpectNodeMixUpRefused(const Result<std::string>& how) {
    ASSERT_FALSE(how.ok()) << "took over from another kernel's manager of this node: " << *how;
    EXPECT_EQ(how.status().code(), GISMO_ERR_INVALID_ARGUMENT);
    EXPECT_NE(how.status().message().find("give each host its own --node"), std::string::npos)
        << how.status().message();
  }

  const CoherenceMode coherence_;
  std::string path_;
  std::unique_ptr<region::Region> r_;
};

class ManagerLeaseTest : public LeaseRegionTest {
 protected:
  ManagerLeaseTest() : LeaseRegionTest(CoherenceMode::kNonCoherent) {}
  // Writes node `node`'s candidate line as a manager with identity `id`
  // would have left it: a ticket, and `serving` in its heartbeat.
  void LeaveLine(uint32_t node, const fence::ProcessIdentity& id, uint64_t ticket) {
    CandidateLine& l = r_->sb().candidates[node];
    l.ticket = ticket;
    l.heartbeat = 7 << 1 | 1;
    l.process[0] = id.boot_id;
    l.process[1] = id.pid_ns;
    l.process[2] = id.pid;
    l.process[3] = id.start_time;
  }
  // A process of another host: nothing here can prove it stopped.
  static fence::ProcessIdentity Elsewhere() {
    fence::ProcessIdentity id = fence::Self();
    id.boot_id ^= 0x5a5a;
    return id;
  }
};

TEST_F(ManagerLeaseTest, TheFirstCandidateIsElectedAndReleases) {
  ManagerLease a(*r_, On(3));
  auto how = a.Acquire();
  ASSERT_TRUE(how.ok()) << how.status().ToString();
  EXPECT_EQ(*how, "");
  EXPECT_NE(a.epoch(), 0u);
  EXPECT_EQ(Owner(), a.epoch());
  EXPECT_NE(r_->sb().candidates[3].ticket, 0u);
  EXPECT_EQ(r_->sb().candidates[3].heartbeat & 1, 1u);  // serving
  EXPECT_TRUE(a.Beat());
  a.Release();
  EXPECT_EQ(Owner(), 0u);
  EXPECT_EQ(r_->sb().candidates[3].ticket, 0u);
  // The next one needs neither to wait nor to fence.
  ManagerLease b(*r_, On(4));
  auto hb = b.Acquire();
  ASSERT_TRUE(hb.ok()) << hb.status().ToString();
  EXPECT_EQ(*hb, "");
  EXPECT_EQ(b.epoch(), a.epoch() + 1);
  b.Release();
}

TEST_F(ManagerLeaseTest, ANodeWithoutACandidateLineIsRefused) {
  ManagerLease a(*r_, On(region::kMaxCandidates));
  auto how = a.Acquire();
  ASSERT_FALSE(how.ok());
  EXPECT_EQ(how.status().code(), GISMO_ERR_INVALID_ARGUMENT);
  EXPECT_NE(how.status().message().find("--node below 32"), std::string::npos)
      << how.status().message();
}

TEST_F(ManagerLeaseTest, ALiveOwnerKeepsANewcomerOut) {
  ManagerLease a(*r_, On(1));
  ASSERT_TRUE(a.Acquire().ok());
  auto beating = std::make_unique<Beating>(a);
  ManagerLease b(*r_, On(2));
  auto how = b.Acquire();
  beating.reset();
  ASSERT_FALSE(how.ok());
  EXPECT_EQ(how.status().code(), GISMO_ERR_BUSY);
  EXPECT_NE(how.status().message().find("serves this region: manager of node 1"), std::string::npos)
      << how.status().message();
  EXPECT_EQ(r_->sb().candidates[2].ticket, 0u);  // the newcomer left the queue
  EXPECT_EQ(Owner(), a.epoch());
  a.Release();
}

// A manager serving on the newcomer's own node (the host lock skipped, or
// the region reached by another path) is not taken for a left line: its
// beat keeps the newcomer out, and it serves on.
TEST_F(ManagerLeaseTest, ALiveManagerOfTheSameNodeKeepsItsLine) {
  ManagerLease a(*r_, On(12));
  ASSERT_TRUE(a.Acquire().ok());
  auto beating = std::make_unique<Beating>(a);
  ManagerLease b(*r_, On(12));
  auto how = b.Acquire();
  beating.reset();
  ASSERT_FALSE(how.ok());
  EXPECT_NE(how.status().message().find("serves this region: manager of node 12"),
            std::string::npos)
      << how.status().message();
  EXPECT_TRUE(a.Beat()) << "the serving manager lost its line";
  a.Release();
}

// A standby waits while the owner serves and beats, and takes over when it
// stops cleanly, with nothing to fence.
TEST_F(ManagerLeaseTest, AStandbyTakesOverWhenTheOwnerStops) {
  // Leases far longer than a stall of the beating thread, so only a wrong
  // standby takes over in the 200 ms it is watched.
  LeaseOptions owner = On(14);
  owner.lease_ms = 2000;
  ManagerLease a(*r_, owner);
  ASSERT_TRUE(a.Acquire().ok());
  auto beating = std::make_unique<Beating>(a);
  LeaseOptions o = On(15);
  o.lease_ms = 2000;
  o.standby = true;
  ManagerLease b(*r_, o);
  Result<std::string> how = std::string("not yet");
  std::atomic<bool> done{false};
  std::thread standby([&] {
    how = b.Acquire();
    done.store(true, std::memory_order_release);
  });
  // It waits as long as the owner beats: a few leases' worth of beats.
  for (int i = 0; i < 20 && !done.load(std::memory_order_acquire); ++i) usleep(10'000);
  EXPECT_FALSE(done.load(std::memory_order_acquire)) << "took over from a live owner";
  beating.reset();
  a.Release();
  standby.join();
  ASSERT_TRUE(how.ok()) << how.status().ToString();
  EXPECT_EQ(*how, "");
  EXPECT_EQ(Owner(), b.epoch());
  b.Release();
}

// A live candidate on the newcomer's own line but another kernel: two
// hosts given one --node. Refused, standby or not: silent, it would be taken
// for this host's manager before a reboot and succeeded unfenced. (It beats
// for a bounded time: a standby that missed the mix-up then takes over.)
TEST_F(ManagerLeaseTest, ALiveManagerOfThisNodeOnAnotherKernelIsAMisconfiguration) {
  LeaveLine(12, Elsewhere(), 1);
  ExpectNodeMixUpRefused(AcquireAsStandbyWhileBeating(12, [&] {
    uint64_t& beat = r_->sb().candidates[12].heartbeat;  // a plain word, read atomically
    __atomic_store_n(&beat, __atomic_load_n(&beat, __ATOMIC_RELAXED) + 2, __ATOMIC_RELEASE);
  }));
}

// A candidate whose process is gone (a manager killed on this kernel) is
// passed at once: its line is cleared, nobody waits for a lease.
TEST_F(ManagerLeaseTest, AGoneCandidateIsClearedAndPassed) {
  LeaveLine(5, Gone(), 1);
  ManagerLease b(*r_, On(6));
  auto how = b.Acquire();
  ASSERT_TRUE(how.ok()) << how.status().ToString();
  EXPECT_EQ(*how, "the previous manager's process is gone");
  EXPECT_EQ(r_->sb().candidates[5].ticket, 0u);
  b.Release();
}

// The node's own line left by its previous manager (killed, or before a
// restart): proven gone, cleared, then the newcomer takes a ticket.
TEST_F(ManagerLeaseTest, ItsOwnNodesLeftLineIsReclaimedOnceProvenGone) {
  LeaveLine(7, Gone(), 3);
  ManagerLease b(*r_, On(7));
  auto how = b.Acquire();
  ASSERT_TRUE(how.ok()) << how.status().ToString();
  EXPECT_EQ(*how, "the previous manager's process is gone");
  b.Release();
}

// A silent owner on another host is suspected after a lease, never
// succeeded without being fenced: here nothing can fence it, so the
// newcomer refuses; on the operator's word it takes over, and the old
// owner, should it run again, finds itself superseded at its next beat.
TEST_F(ManagerLeaseTest, ASilentOwnerElsewhereIsSucceededOnlyOnceFenced) {
  ManagerLease a(*r_, On(8));
  ASSERT_TRUE(a.Acquire().ok());
  const uint64_t old_epoch = a.epoch();
  // `a` now stands for a manager of another host that stopped beating.
  LeaveLine(8, Elsewhere(), r_->sb().candidates[8].ticket);
  ManagerLease b(*r_, On(9));
  auto refused = b.Acquire();
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("cannot be proven stopped"), std::string::npos)
      << refused.status().message();
  EXPECT_EQ(Owner(), old_epoch);

  LeaseOptions word = On(9);
  word.previous_manager_fenced = true;
  ManagerLease c(*r_, word);
  auto how = c.Acquire();
  ASSERT_TRUE(how.ok()) << how.status().ToString();
  EXPECT_EQ(*how, "the operator declared the previous manager fenced");
  EXPECT_EQ(c.epoch(), old_epoch + 1);
  EXPECT_EQ(r_->sb().candidates[8].ticket, 0u);
  EXPECT_FALSE(a.Beat());  // superseded: it must stop, writing nothing
  EXPECT_EQ(Owner(), c.epoch());
  c.Release();
}

// A candidate that waits and beats, not serving, is ahead in the queue:
// the newcomer waits for it instead of fencing it, and is elected once it
// leaves.
TEST_F(ManagerLeaseTest, AWaitingCandidateIsWaitedForNotFenced) {
  LeaveLine(10, Elsewhere(), 1);
  CandidateLine& l = r_->sb().candidates[10];
  l.heartbeat = 2;  // waiting
  std::thread waiter([&] {
    // Beats as a waiting candidate for a few leases, then leaves.
    for (uint64_t i = 2; i < 2000; ++i) {
      __atomic_store_n(&l.heartbeat, i << 1, __ATOMIC_RELAXED);
      usleep(200);
    }
    __atomic_store_n(&l.ticket, 0, __ATOMIC_RELAXED);
  });
  LeaseOptions o = On(11);
  o.lease_ms = 2000;  // far longer than the waiter's pauses between beats
  ManagerLease b(*r_, o);
  auto how = b.Acquire();
  waiter.join();
  ASSERT_TRUE(how.ok()) << how.status().ToString();
  EXPECT_EQ(*how, "");  // nobody fenced
  b.Release();
}

// The coherent lease (manager_owner taken by CAS). A newcomer pairs an
// owner's epoch with the identity words only once that owner has published
// them: a claim (layout.h, PackOwnerClaim) still shows its predecessor's
// there, and is judged by its claimer record (region/lease_claim.h) if that
// is the claim's, else watched and fenced like a silent owner by its node.
class CoherentLeaseTest : public LeaseRegionTest {
 protected:
  CoherentLeaseTest() : LeaseRegionTest(CoherenceMode::kCoherent) {}
  // The lease as a manager with identity `id` on `node` left it, owning it
  // (`owner`: an epoch, or a claim) for a lease of `lease_ms`. A published
  // owner's identity words carry their check, as a manager writes it.
  void LeaveLease(uint64_t owner, const fence::ProcessIdentity& id, uint64_t node,
                  uint64_t lease_ms = 50) {
    region::Superblock& sb = r_->sb();
    WriteWho(id, node);
    sb.manager_identity_check.store(
        region::IsOwnerClaim(owner) ? 0 : region::OwnerIdentityCheck(owner, node, id.ToWords()),
        std::memory_order_relaxed);
    sb.manager_lease_ms.store(lease_ms, std::memory_order_relaxed);
    sb.manager_epoch.store(owner & 0xffffffffu, std::memory_order_relaxed);
    sb.manager_owner.store(owner, std::memory_order_release);
  }
  // Writes the lease's identity and node words as an owner publishes them
  // (release, before its epoch).
  void WriteWho(const fence::ProcessIdentity& id, uint64_t node) {
    region::Superblock& sb = r_->sb();
    const fence::ProcessIdentity::Words w = id.ToWords();
    for (int k = 0; k < 4; ++k) sb.manager_identity[k].store(w[k], std::memory_order_release);
    sb.manager_node.store(node, std::memory_order_release);
  }
  fence::ProcessIdentity Identity() {
    return fence::ProcessIdentity::FromWords(r_->sb().manager_identity);
  }
};

TEST_F(CoherentLeaseTest, AnOwnerPublishesWhoItIsAndReleases) {
  ManagerLease a(*r_, On(3));
  auto how = a.Acquire();
  ASSERT_TRUE(how.ok()) << how.status().ToString();
  EXPECT_EQ(*how, "");
  EXPECT_EQ(Owner(), a.epoch());
  EXPECT_FALSE(region::IsOwnerClaim(Owner()));
  const fence::ProcessIdentity self = fence::Self();
  EXPECT_EQ(Identity().pid, self.pid);
  EXPECT_EQ(Identity().start_time, self.start_time);
  EXPECT_EQ(r_->sb().manager_node.load(std::memory_order_relaxed), 3u);
  EXPECT_TRUE(a.Beat());
  a.Release();
  EXPECT_EQ(Owner(), 0u);
}

// A published owner whose process is gone needs no lease; nor does a claim
// whose claimer record (region/lease_claim.h) is its own and names a gone
// process, whatever the identity words beside the claim say (here: this
// live process, the claim's predecessor).
TEST_F(CoherentLeaseTest, AnOwnerOrClaimerWhoseProcessIsGoneIsSucceededAtOnce) {
  for (const bool claim : {false, true}) {
    SCOPED_TRACE(claim ? "a claim" : "a published owner");
    if (claim) {
      const uint64_t owner = region::PackOwnerClaim(6, 3);
      LeaveLease(owner, fence::Self(), 3, /*lease_ms=*/10'000);
      region::WriteClaimer(r_->sb(), owner, Gone().ToWords());
    } else {
      LeaveLease(5, Gone(), 2, /*lease_ms=*/10'000);
    }
    ManagerLease b(*r_, On(3));
    auto how = b.Acquire();
    ASSERT_TRUE(how.ok()) << how.status().ToString();
    EXPECT_EQ(*how, "the previous manager's process is gone");
    EXPECT_EQ(Owner(), b.epoch());
    EXPECT_EQ(Identity().pid, fence::Self().pid);
    b.Release();
  }
}

// The race of a newcomer that read the new owner's epoch before it wrote
// who it is: the identity words are still its predecessor's, whose process
// is gone. The claim is suspected only after a lease of silence, and then
// (no claimer record, as an older manager's claim) cannot be proven stopped
// from here: refused, the claim left as it is.
TEST_F(CoherentLeaseTest, AClaimIsNeverJudgedByItsPredecessorsIdentity) {
  const uint64_t claim = region::PackOwnerClaim(6, 4);
  LeaveLease(claim, Gone(), 2);
  ManagerLease b(*r_, On(3));
  auto how = b.Acquire();
  ASSERT_FALSE(how.ok()) << "took a claim over as gone: " << *how;
  EXPECT_EQ(how.status().code(), GISMO_ERR_BUSY);
  const std::string& m = how.status().message();
  EXPECT_NE(m.find("manager claiming the lease on node 4"), std::string::npos) << m;
  EXPECT_NE(m.find("cannot be proven stopped"), std::string::npos) << m;
  EXPECT_NE(m.find("fence node 4"), std::string::npos) << m;
  EXPECT_EQ(Owner(), claim);
}

// A claim that is published meanwhile is a live owner: refused while it
// beats.
TEST_F(CoherentLeaseTest, AClaimThatIsPublishedWhileWatchedServes) {
  LeaveLease(region::PackOwnerClaim(6, 4), Gone(), 2, /*lease_ms=*/5000);
  std::atomic<bool> stop{false};
  std::thread owner([&] {
    usleep(20'000);
    region::Superblock& sb = r_->sb();
    WriteWho(fence::Self(), 4);
    sb.manager_owner.store(6, std::memory_order_release);
    while (!stop.load(std::memory_order_relaxed)) {
      sb.manager_beat.fetch_add(1, std::memory_order_release);
      usleep(1000);
    }
  });
  ManagerLease b(*r_, On(3));
  auto how = b.Acquire();
  stop.store(true, std::memory_order_relaxed);
  owner.join();
  ASSERT_FALSE(how.ok()) << "took over from a live owner: " << *how;
  EXPECT_NE(how.status().message().find("serves this region: manager epoch 6 on node 4"),
            std::string::npos)
      << how.status().message();
  EXPECT_EQ(Owner(), 6u);
}

// The same in a coherent region: a live owner with the newcomer's node id
// on another kernel is refused, standby or not.
TEST_F(CoherentLeaseTest, ALiveManagerOfThisNodeOnAnotherKernelIsAMisconfiguration) {
  fence::ProcessIdentity elsewhere = fence::Self();
  elsewhere.boot_id ^= 0x5a5a;
  LeaveLease(6, elsewhere, 3, /*lease_ms=*/1000);
  ExpectNodeMixUpRefused(AcquireAsStandbyWhileBeating(
      3, [&] { r_->sb().manager_beat.fetch_add(1, std::memory_order_release); }));
  EXPECT_EQ(Owner(), 6u);
}

// A claim silent for a lease is fenced like any silent owner: on the
// operator's word, or by the fence command on the node the claim names.
TEST_F(CoherentLeaseTest, ASilentClaimIsSucceededOnlyOnceFenced) {
  LeaveLease(region::PackOwnerClaim(6, 4), Gone(), 2);
  LeaseOptions fence = On(3);
  fence.fence_command = "test 4 -eq";  // run as `test 4 -eq NODE`: succeeds for node 4 only
  ManagerLease b(*r_, fence);
  auto how = b.Acquire();
  ASSERT_TRUE(how.ok()) << how.status().ToString();
  EXPECT_EQ(*how, "fenced the previous manager's node 4 (fence command)");
  EXPECT_EQ(Owner(), b.epoch());
  b.Release();

  LeaveLease(region::PackOwnerClaim(8, 0xffffffffu), Gone(), 2);
  ManagerLease c(*r_, fence);
  how = c.Acquire();
  ASSERT_FALSE(how.ok());
  EXPECT_NE(how.status().message().find("its node is not known"), std::string::npos)
      << how.status().message();
  LeaseOptions word = On(3);
  word.previous_manager_fenced = true;
  ManagerLease d(*r_, word);
  how = d.Acquire();
  ASSERT_TRUE(how.ok()) << how.status().ToString();
  EXPECT_EQ(*how, "the operator declared the previous manager fenced");
  EXPECT_EQ(Owner(), d.epoch());
  EXPECT_GT(d.epoch(), 8u);
  d.Release();
}

// A record that is not wholly the claim's (another claim's, or a mix of
// two claimers' writes) says nothing about it, even where it names a gone
// process: the claim is judged by its node alone, refused here after a
// lease as it cannot be proven stopped. (The mix: a live claimer's record,
// this process's, whose start time another writer changed.)
TEST_F(CoherentLeaseTest, AClaimerRecordThatIsNotTheClaimsIsIgnored) {
  const uint64_t claim = region::PackOwnerClaim(6, 4);
  for (int mix = 0; mix < 2; ++mix) {
    LeaveLease(claim, Gone(), 2);
    region::Superblock& sb = r_->sb();
    if (mix == 0) {
      region::WriteClaimer(sb, region::PackOwnerClaim(5, 4), Gone().ToWords());
    } else {
      region::WriteClaimer(sb, claim, fence::Self().ToWords());
      sb.claimer_identity[3].store(Gone().start_time, std::memory_order_relaxed);
    }
    ManagerLease b(*r_, On(3));
    auto how = b.Acquire();
    ASSERT_FALSE(how.ok()) << "took over by a record that is not the claim's: " << *how;
    const std::string& m = how.status().message();
    EXPECT_NE(m.find("it has not yet said which process it is"), std::string::npos) << m;
    EXPECT_NE(m.find("cannot be proven stopped"), std::string::npos) << m;
    EXPECT_EQ(Owner(), claim);
  }
}

// A claimer of this kernel frozen between its claim and its publication,
// on the newcomer's own node (where no fence command may run): suspected
// after a lease, it is killed through its pidfd, then succeeded, with no
// operator's word.
TEST_F(CoherentLeaseTest, AFrozenClaimerOfThisKernelIsKilledThenSucceeded) {
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Maps the region (inherited), as a manager does: the fence kills only
    // a process that maps it.
    for (;;) pause();
  }
  // Whatever fails below, the child does not outlive the test.
  struct Reaper {
    pid_t pid;
    ~Reaper() {
      if (pid > 0 && kill(pid, SIGKILL) == 0) waitpid(pid, nullptr, 0);
    }
  } reaper{child};
  const fence::ProcessIdentity claimer = fence::Lookup(child);  // listed once fork returns
  ASSERT_NE(claimer.start_time, 0u);
  ASSERT_EQ(kill(child, SIGSTOP), 0);
  const uint64_t claim = region::PackOwnerClaim(6, 3);
  LeaveLease(claim, Gone(), 2);
  region::WriteClaimer(r_->sb(), claim, claimer.ToWords());
  LeaseOptions fence = On(3);
  fence.fence_command = "false";  // never run for node 3, its own
  ManagerLease b(*r_, fence);
  auto how = b.Acquire();
  // The fence waits for the child's exit: it is to be reaped at once.
  int status = 0;
  const pid_t reaped = waitpid(child, &status, WNOHANG);
  if (reaped == child) reaper.pid = 0;
  ASSERT_TRUE(how.ok()) << how.status().ToString();
  EXPECT_EQ(*how, "killed the frozen previous manager (pidfd)");
  ASSERT_EQ(reaped, child) << "the frozen claimer still ran after the take-over";
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
  EXPECT_EQ(Owner(), b.epoch());
  b.Release();
}

// A silent owner of this kernel that cannot be fenced from here (a live
// process that maps no region is not killed as its manager): refused,
// naming why, until the operator's word, which stands over the failure.
TEST_F(CoherentLeaseTest, AnOwnerThatCannotBeFencedHereIsSucceededOnTheOperatorsWord) {
  testing::Process sleeper;
  testing::SpawnOptions so;
  so.argv = {"sleep", "600"};
  // Start returns once the child has exec'd sleep: it maps nothing of ours
  // (its fork did, briefly).
  ASSERT_TRUE(sleeper.Start(so)) << sleeper.error();
  const fence::ProcessIdentity other = fence::Lookup(sleeper.pid());
  ASSERT_NE(other.start_time, 0u);
  for (const bool claim : {false, true}) {
    const uint64_t owner = claim ? region::PackOwnerClaim(6, 3) : 6;
    LeaveLease(owner, other, 3);
    if (claim) region::WriteClaimer(r_->sb(), owner, other.ToWords());
    ManagerLease b(*r_, On(3));
    auto how = b.Acquire();
    ASSERT_FALSE(how.ok()) << "took over from a live process: " << *how;
    EXPECT_NE(how.status().message().find("does not map the region"), std::string::npos)
        << how.status().message();
    LeaseOptions word = On(3);
    word.previous_manager_fenced = true;
    ManagerLease c(*r_, word);
    how = c.Acquire();
    ASSERT_TRUE(how.ok()) << how.status().ToString();
    EXPECT_NE(how->find("the operator declared the previous manager fenced (fencing it from "
                        "here failed: "),
              std::string::npos)
        << *how;
    EXPECT_EQ(Owner(), c.epoch());
    c.Release();
    EXPECT_TRUE(fence::Lookup(sleeper.pid()).start_time == other.start_time) << "killed";
  }
}

// A claimer fenced on a wrong word of the operator's may still write its
// identity and node over its successor's (its check is for its own epoch):
// those words then say nothing of the owner, which is neither taken for
// gone (the words name a gone process) nor fenced by the node they name.
TEST_F(CoherentLeaseTest, IdentityWordsThatAreNotTheOwnersSayNothing) {
  LeaveLease(6, Gone(), 2);
  r_->sb().manager_identity_check.store(region::OwnerIdentityCheck(5, 2, Gone().ToWords()),
                                        std::memory_order_relaxed);
  LeaseOptions fence = On(3);
  fence.fence_command = "test 2 -eq";  // would fence node 2, the words' node
  ManagerLease b(*r_, fence);
  auto how = b.Acquire();
  ASSERT_FALSE(how.ok()) << "took over by words that are not the owner's: " << *how;
  const std::string& m = how.status().message();
  EXPECT_NE(m.find("manager epoch 6 on an unrecorded node (its process and node words are not "
                   "its own)"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("its node is not known"), std::string::npos) << m;
  EXPECT_EQ(Owner(), 6u);
}

// The fence command fences whole nodes: never the newcomer's own, which
// holds the newcomer itself. A claim left on its own node waits for the
// operator's word.
TEST_F(CoherentLeaseTest, TheFenceCommandIsNeverRunForTheNewcomersOwnNode) {
  const uint64_t claim = region::PackOwnerClaim(6, 3);
  LeaveLease(claim, Gone(), 2);
  LeaseOptions fence = On(3);
  fence.fence_command = "true";
  ManagerLease b(*r_, fence);
  auto how = b.Acquire();
  ASSERT_FALSE(how.ok()) << "fenced its own node: " << *how;
  EXPECT_NE(how.status().message().find("on this manager's own node 3"), std::string::npos)
      << how.status().message();
  EXPECT_EQ(Owner(), claim);
}

// The fence command holds nothing of the manager's open (a hung fence
// action would keep its sockets), and at its deadline its whole process
// group is killed, not only the shell.
TEST(FenceCommandTest, ItInheritsNoDescriptorAndItsGroupIsKilledAtTheDeadline) {
  const std::string out = "/tmp/" + testing::UniqueName("fence-out");
  const int inheritable = open("/dev/null", O_RDONLY);  // no O_CLOEXEC
  ASSERT_GE(inheritable, 3);
  std::string failure;
  const std::string fd = "/proc/self/fd/" + std::to_string(inheritable);  // the shell's
  ASSERT_TRUE(RunFenceCommand(
      "if [ -e " + fd + " ]; then echo held; else echo clean; fi > " + out + "; true", 4, 10'000,
      &failure))
      << failure;
  close(inheritable);
  std::stringstream said;
  said << std::ifstream(out).rdbuf();
  EXPECT_EQ(said.str(), "clean\n") << "the fence command inherited a descriptor";
  EXPECT_FALSE(RunFenceCommand("sleep 600 & echo $! > " + out + "; wait; true", 4, 1500, &failure));
  EXPECT_NE(failure.find("did not finish in time"), std::string::npos) << failure;
  pid_t left = 0;
  std::ifstream(out) >> left;
  ASSERT_GT(left, 0);
  // Killed: gone, or a zombie its new parent has yet to reap.
  const auto ended = [left] {
    std::ifstream stat("/proc/" + std::to_string(left) + "/stat");
    std::string pid, comm, state;
    return !(stat >> pid >> comm >> state) || state == "Z";
  };
  bool gone = ended();
  for (int i = 0; i < 10'000 && !gone; ++i) {
    usleep(1000);
    gone = ended();
  }
  EXPECT_TRUE(gone) << "the fence command's child " << left << " outlived its deadline";
  if (!gone) kill(left, SIGKILL);
  unlink(out.c_str());
}

// /proc/PID/stat shows a start time shifted by the reader's time namespace,
// and a process records its own: a live client in another time namespace
// (unshare -T, a CRIU restore) records another start time than the fencer
// reads, and must not be taken for a reuse of its pid (proven gone), nor
// killed on that word.
TEST(ProcessIdentityTest, AProcessInAnotherTimeNamespaceIsNotProvenGone) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (a time namespace)";
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t outer = fork();
  ASSERT_GE(outer, 0);
  if (outer == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    close(fds[0]);
    // Its children start in a time namespace whose boot time is 1000 s on.
    if (unshare(CLONE_NEWTIME) != 0) _exit(10);
    const int offsets = open("/proc/self/timens_offsets", O_WRONLY);
    if (offsets < 0 || write(offsets, "boottime 1000 0", 15) != 15) _exit(10);
    close(offsets);
    const pid_t inner = fork();
    if (inner == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      const fence::ProcessIdentity::Words w = fence::Self().ToWords();
      if (write(fds[1], w.data(), sizeof w) != sizeof w) _exit(11);
      pause();
      _exit(0);
    }
    int st = 0;
    waitpid(inner, &st, 0);
    _exit(0);
  }
  close(fds[1]);
  struct Reap {
    pid_t pid;
    ~Reap() {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  } reap{outer};
  fence::ProcessIdentity::Words w{};
  if (read(fds[0], w.data(), sizeof w) != sizeof w) {
    close(fds[0]);
    GTEST_SKIP() << "no time namespace here";
  }
  close(fds[0]);
  const fence::ProcessIdentity who = fence::ProcessIdentity::FromWords(w.data());
  ASSERT_NE(fence::Lookup(static_cast<pid_t>(who.pid)).start_time, who.start_time)
      << "the offset did not shift its start time";
  EXPECT_FALSE(fence::InThisTimeNamespace(static_cast<pid_t>(who.pid)));
  EXPECT_FALSE(fence::ProvenGone(who, 0)) << "a live process was proven gone";
  const Result<fence::FenceOutcome> f = fence::FenceProcess(who, "/proc/self/exe", 1000);
  EXPECT_FALSE(f.ok() && *f == fence::FenceOutcome::kWasGone) << "a live process was said gone";
  EXPECT_EQ(kill(static_cast<pid_t>(who.pid), 0), 0) << "it was killed";
}

// A process whose /proc files vanish between their open and their read (it
// exited and was reaped meanwhile): the node agent died of this once, as
// libstdc++'s filebuf threw on the read's ESRCH. A lookup must answer, and a
// child that exited must end up reported gone.
TEST(ProcessIdentityTest, AProcessReapedWhileItsProcFilesAreReadIsReportedGone) {
  // Children are reaped by the kernel as they exit, not by a waitpid here,
  // so they vanish at any point of a lookup.
  struct IgnoreChildren {
    struct sigaction old = {};
    IgnoreChildren() {
      struct sigaction ignore = {};
      ignore.sa_handler = SIG_IGN;
      sigaction(SIGCHLD, &ignore, &old);
    }
    ~IgnoreChildren() { sigaction(SIGCHLD, &old, nullptr); }
  } ignore_children;
  constexpr int kChildren = 100;
  constexpr int kLookupsAtMost = 1'000'000;
  for (int i = 0; i < kChildren; ++i) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) _exit(0);
    // The first identity seen, judged until it is gone (a pid reused
    // meanwhile has another start time, which also proves it gone).
    const fence::ProcessIdentity first = fence::Lookup(pid);
    bool gone = first.start_time == 0;
    for (int n = 0; n < kLookupsAtMost && !gone; ++n) {
      gone = fence::Lookup(pid).start_time == 0 || fence::ProvenGone(first, 0);
    }
    EXPECT_TRUE(gone) << "child " << pid << " was never reported gone";
  }
}

// A fencer that /proc hides a live process from (mounted hidepid, the
// fencer another user) must not take the unreadable start time for a
// different one: the process is not proven gone, and is not killed.
TEST(ProcessIdentityTest, AProcessHiddenByProcIsNeitherProvenGoneNorKilled) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (a private /proc mount, then another user)";
  const pid_t target = fork();
  ASSERT_GE(target, 0);
  if (target == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlives the test
    pause();
    _exit(0);
  }
  struct Reap {
    pid_t pid;
    ~Reap() {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  } reap_target{target};
  const fence::ProcessIdentity who = fence::Lookup(target);
  ASSERT_NE(who.start_time, 0u);
  enum : int { kHidden = 0, kSetUpFailed = 10, kSaidGone = 11, kNotRefused = 12 };
  const pid_t checker = fork();
  ASSERT_GE(checker, 0);
  if (checker == 0) {
    // A /proc of its own (per-mount hidepid: Linux 5.8, which knows
    // "invisible"; older kernels refuse it and the test is skipped rather
    // than hide every /proc of the namespace), then another user.
    if (unshare(CLONE_NEWNS) != 0 ||
        mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        mount("proc", "/proc", "proc", 0, "hidepid=invisible") != 0 || setgid(65534) != 0 ||
        setuid(65534) != 0 || fence::Lookup(target).start_time != 0) {
      _exit(kSetUpFailed);
    }
    if (fence::ProvenGone(who, 0)) _exit(kSaidGone);
    const Result<fence::FenceOutcome> f = fence::FenceProcess(who, "/proc/self/exe", 1000);
    _exit(!f.ok() && f.status().code() == GISMO_ERR_PERMISSION ? kHidden : kNotRefused);
  }
  int st = 0;
  ASSERT_EQ(waitpid(checker, &st, 0), checker);
  // Still running: not exited, not even a zombie (WNOWAIT leaves it be).
  siginfo_t exited = {};
  ASSERT_EQ(waitid(P_PID, target, &exited, WEXITED | WNOHANG | WNOWAIT), 0);
  ASSERT_TRUE(WIFEXITED(st));
  if (WEXITSTATUS(st) == kSetUpFailed) GTEST_SKIP() << "no private hidepid /proc here";
  EXPECT_NE(WEXITSTATUS(st), kSaidGone) << "a hidden live process was proven gone";
  EXPECT_EQ(WEXITSTATUS(st), kHidden) << "fencing a hidden process was not refused";
  EXPECT_EQ(exited.si_pid, 0) << "the hidden process was killed";
}

}  // namespace
}  // namespace gismo::manager
