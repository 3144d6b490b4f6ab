// The owner election without cross-host atomics (src/region/owner_election.h)
// under the non-coherence simulator: never two owners in any interleaving
// of two candidates, and always one; each piece of the protocol shown
// needed; mutual exclusion among threads under chaos; a dead owner or a
// candidate killed at any line operation blocks the others until it is
// fenced, and only until then.
#include "region/owner_election.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <functional>
#include <thread>

#include "nc_util.h"
#include "region/cache_sim.h"

namespace gismo::region {
namespace {

using gismo::testing::Killed;
using gismo::testing::RunChild;
using gismo::testing::SharedMemory;
using gismo::testing::SteppedLines;

constexpr uint32_t kCandidates = 3;

struct Table {
  SharedMemory m{kCandidates * sizeof(CandidateLine)};
  CandidateLine* lines() const { return reinterpret_cast<CandidateLine*>(m.base()); }
};

CacheSimOptions Quiet(const Table& t, uint64_t seed) {
  CacheSimOptions o;
  o.seed = seed;
  o.versions = t.m.versions();
  return o;
}

CacheSimOptions Chaotic(const Table& t, uint64_t seed) {
  CacheSimOptions o = Quiet(t, seed);
  o.capacity_lines = 2;
  o.evict_ppm = 50000;
  o.early_writeback_ppm = 200000;
  return o;
}

struct Outcome {
  bool hook_ran = false;
  int owners = 0;  // candidates that passed B4 (nobody leaves)
};

// Candidates `a` and `b` (ids 0 and 1 in either role) of a two-line table.
// Candidate a steps one line operation at a time; at its k-th, b takes its
// ticket and polls once. Then both poll in turns until nothing changes.
// Both caches hold the other's (empty) line from before.
Outcome Interleave(uint32_t a, uint64_t k, ElectionFault fault) {
  const uint32_t b = 1 - a;
  Table t;
  CacheSim as(t.m.base(), t.m.size(), Quiet(t, 1)), bs(t.m.base(), t.m.size(), Quiet(t, 2));
  SteppedLines al{as};
  OwnerElection<SteppedLines> ea(al, t.lines(), 2, a);
  OwnerElection<CacheSim> eb(bs, t.lines(), 2, b);
  ea.SetFaultForTesting(fault);
  // A stale read needs a stale copy: b's own copy of a's line is fresh from
  // its doorway, so the missing invalidate is a's alone.
  if (fault != ElectionFault::kSkipPollInvalidate) eb.SetFaultForTesting(fault);
  al.Load(&t.lines()[b].ticket);
  bs.Load(&t.lines()[a].ticket);

  Outcome out;
  bool a_owner = false, b_owner = false;
  al.at = al.ops + k;
  al.hook = [&] {
    out.hook_ran = true;
    eb.Begin(200 + b);
    b_owner = eb.Poll().owner;
  };
  ea.Begin(100 + a);
  a_owner = ea.Poll().owner;
  al.hook = nullptr;
  if (!out.hook_ran) return out;
  for (int round = 0; round < 4; ++round) {
    if (!a_owner) a_owner = ea.Poll().owner;
    if (!b_owner) b_owner = eb.Poll().owner;
  }
  out.owners = a_owner + b_owner;
  return out;
}

struct SweepResult {
  int runs = 0, two_owners = 0, no_owner = 0;
};

SweepResult Sweep(ElectionFault fault) {
  SweepResult r;
  for (uint32_t a : {0u, 1u}) {
    for (uint64_t k = 0;; ++k) {
      const Outcome o = Interleave(a, k, fault);
      if (!o.hook_ran) break;
      ++r.runs;
      r.two_owners += o.owners == 2;
      r.no_owner += o.owners == 0;
    }
  }
  return r;
}

TEST(OwnerElectionTest, EveryInterleavingHasExactlyOneOwner) {
  const SweepResult r = Sweep(ElectionFault::kNone);
  EXPECT_GT(r.runs, 20);
  EXPECT_EQ(r.two_owners, 0);
  EXPECT_EQ(r.no_owner, 0);
}

TEST(OwnerElectionTest, RemovedChoosingIsCaught) {
  EXPECT_GT(Sweep(ElectionFault::kSkipChoosing).two_owners, 0);
}

TEST(OwnerElectionTest, RemovedTicketFlushIsCaught) {
  const SweepResult r = Sweep(ElectionFault::kSkipTicketFlush);
  EXPECT_GT(r.two_owners + r.no_owner, 0);
}

TEST(OwnerElectionTest, RemovedPollInvalidateIsCaught) {
  EXPECT_GT(Sweep(ElectionFault::kSkipPollInvalidate).two_owners, 0);
}

TEST(OwnerElectionTest, LeaveHandsOverInTicketOrder) {
  Table t;
  CacheSim s0(t.m.base(), t.m.size(), Quiet(t, 1)), s1(t.m.base(), t.m.size(), Quiet(t, 2)),
      s2(t.m.base(), t.m.size(), Quiet(t, 3));
  OwnerElection<CacheSim> e0(s0, t.lines(), kCandidates, 0), e1(s1, t.lines(), kCandidates, 1),
      e2(s2, t.lines(), kCandidates, 2);
  e2.Begin(2);
  EXPECT_TRUE(e2.Poll().owner);
  e0.Begin(0);
  e1.Begin(1);
  EXPECT_LT(e0.ticket(), e1.ticket());
  const ElectionState w0 = e0.Poll();
  EXPECT_FALSE(w0.owner);
  EXPECT_EQ(w0.waiting_on, 2u);
  e2.Beat(12345);
  EXPECT_EQ(e0.HeartbeatOf(2), 12345u);
  e2.Leave();
  EXPECT_TRUE(e0.Poll().owner);
  const ElectionState w1 = e1.Poll();
  EXPECT_FALSE(w1.owner);
  EXPECT_EQ(w1.waiting_on, 0u) << "the earlier ticket goes first";
  e0.Leave();
  EXPECT_TRUE(e1.Poll().owner);
}

// A dead owner keeps the others out until it is fenced, then only until its
// line is cleared.
TEST(OwnerElectionTest, ADeadOwnerBlocksUntilFenced) {
  Table t;
  CacheSim s0(t.m.base(), t.m.size(), Quiet(t, 1)), s1(t.m.base(), t.m.size(), Quiet(t, 2));
  OwnerElection<CacheSim> e0(s0, t.lines(), 2, 0), e1(s1, t.lines(), 2, 1);
  e0.Begin(7);
  ASSERT_TRUE(e0.Poll().owner);
  e0.Beat(100);
  s0.DropDirty();  // its host dies
  e1.Begin(8);
  for (int i = 0; i < 5; ++i) {
    const ElectionState w = e1.Poll();
    ASSERT_FALSE(w.owner);
    EXPECT_EQ(w.waiting_on, 0u);
  }
  EXPECT_EQ(e1.HeartbeatOf(0), 100u);  // stale: suspected, not yet fenced
  e1.ClearFenced(0);
  EXPECT_TRUE(e1.Poll().owner);
}

// Writes `ticket` into candidate j's line from a host of its own, as a buggy
// or hostile client of the region could.
void PlantTicket(const Table& t, uint32_t j, uint64_t ticket) {
  CacheSim s(t.m.base(), t.m.size(), Quiet(t, 50 + j));
  s.Store(&t.lines()[j].ticket, ticket);
  s.Flush(&t.lines()[j], sizeof(CandidateLine));
}

// A candidate line holding a ticket at or above 2^63 (no candidate takes
// one: 2^63 elections) is corrupt. UINT64_MAX used to make every newcomer's
// ticket max + 1 wrap to 0, "not a candidate": two newcomers then passed
// each other and that line, and both owned the region. Now newcomers take
// no ticket and wait on that line (T1) until it is cleared (its node
// fenced), and then exactly one is elected.
TEST(OwnerElectionTest, CorruptTicketElectsNobodyUntilItsLineIsCleared) {
  for (const uint64_t corrupt :
       {uint64_t{1} << 63, (uint64_t{1} << 63) - 1, ~uint64_t{0} - 1, ~uint64_t{0}}) {
    SCOPED_TRACE(corrupt);
    Table t;
    CacheSim s0(t.m.base(), t.m.size(), Quiet(t, 1)), s1(t.m.base(), t.m.size(), Quiet(t, 2));
    OwnerElection<CacheSim> e0(s0, t.lines(), kCandidates, 0), e1(s1, t.lines(), kCandidates, 1);
    PlantTicket(t, 2, corrupt);
    e0.Begin(10);
    e1.Begin(11);
    for (int i = 0; i < 3; ++i) {
      const ElectionState w0 = e0.Poll(), w1 = e1.Poll();
      EXPECT_FALSE(w0.owner);
      EXPECT_FALSE(w1.owner);
      EXPECT_EQ(w0.waiting_on, 2u);
      EXPECT_EQ(w1.waiting_on, 2u);
    }
    // Neither newcomer holds a ticket or keeps choosing: nobody waits on it.
    for (uint32_t j : {0u, 1u}) {
      EXPECT_EQ(e0.LineOf(j).ticket, 0u) << j;
      EXPECT_EQ(e0.LineOf(j).choosing, 0u) << j;
    }
    EXPECT_EQ(e0.LineOf(2).ticket, corrupt);
    e0.ClearFenced(2);  // node 2 fenced: its line is zeroed
    const bool first0 = e0.Poll().owner, first1 = e1.Poll().owner;
    EXPECT_EQ(first0 + first1, 1) << "exactly one owner once the line is cleared";
    EXPECT_NE(e0.ticket(), 0u);
    EXPECT_NE(e1.ticket(), 0u);
    EXPECT_LT(e0.ticket(), uint64_t{1} << 63);
    // The other one takes over when it leaves.
    (first0 ? e0 : e1).Leave();
    EXPECT_TRUE((first0 ? e1 : e0).Poll().owner);
  }
}

// An owner's line whose ticket is overwritten with a corrupt one while it
// serves: a waiting candidate with a valid ticket must not pass it (as it
// would a larger ticket), or there are two owners (T2).
TEST(OwnerElectionTest, CorruptTicketOfTheOwnerIsNeverPassed) {
  Table t;
  CacheSim s0(t.m.base(), t.m.size(), Quiet(t, 1)), s2(t.m.base(), t.m.size(), Quiet(t, 3));
  OwnerElection<CacheSim> e0(s0, t.lines(), kCandidates, 0), e2(s2, t.lines(), kCandidates, 2);
  e2.Begin(12);
  ASSERT_TRUE(e2.Poll().owner);
  e0.Begin(10);
  ElectionState w = e0.Poll();
  ASSERT_FALSE(w.owner);
  EXPECT_EQ(w.waiting_on, 2u);
  PlantTicket(t, 2, ~uint64_t{0});
  for (int i = 0; i < 3; ++i) {
    w = e0.Poll();
    EXPECT_FALSE(w.owner) << "passed the serving owner's corrupt line";
    EXPECT_EQ(w.waiting_on, 2u);
  }
  e0.ClearFenced(2);  // node 2 fenced
  EXPECT_TRUE(e0.Poll().owner);
}

// A candidate host killed (SIGKILL, its simulated cache lost) at each line
// operation of taking its ticket and polling: the survivor either passes it
// or waits on it, and after the fence (ClearFenced) becomes the owner.
TEST(OwnerElectionTest, CandidateKilledAtEveryLineOperation) {
  int waited = 0, passed = 0;
  for (uint64_t k = 0; k < 40; ++k) {
    Table t;
    const int status = RunChild([&] {
      CacheSim s(t.m.base(), t.m.size(), Chaotic(t, k + 1));
      SteppedLines dying = gismo::testing::DyingLines(s, k);
      OwnerElection<SteppedLines> e(dying, t.lines(), 2, 0);
      e.Begin(1);
      while (!e.Poll().owner) {
      }
      e.Beat(1);
      raise(SIGKILL);
    });
    ASSERT_TRUE(Killed(status));
    CacheSim s1(t.m.base(), t.m.size(), Quiet(t, 99));
    OwnerElection<CacheSim> e1(s1, t.lines(), 2, 1);
    e1.Begin(2);
    ElectionState st = e1.Poll();
    if (st.owner) {
      ++passed;  // the dead candidate's memory held no claim
    } else {
      ++waited;
      EXPECT_EQ(st.waiting_on, 0u);
      EXPECT_FALSE(e1.Poll().owner) << "a dead candidate's claim does not expire by itself";
      e1.ClearFenced(0);
      st = e1.Poll();
      EXPECT_TRUE(st.owner) << "k=" << k;
    }
  }
  EXPECT_GT(waited, 0);
  EXPECT_GT(passed, 0);
}

// Three candidate threads, each a host with random early write-backs and
// evictions, taking and leaving ownership 1,000 times each: at most one owner
// at any instant (a shadow counter outside the simulated memory).
TEST(OwnerElectionTest, MutualExclusionOnThreadsUnderChaos) {
  Table t;
  std::atomic<int> owners{0};
  std::atomic<int> violations{0};
  std::atomic<uint64_t> terms{0};
  auto candidate = [&](uint32_t me) {
    CacheSim s(t.m.base(), t.m.size(), Chaotic(t, 10 + me));
    OwnerElection<CacheSim> e(s, t.lines(), kCandidates, me);
    for (int round = 0; round < 1000; ++round) {
      e.Begin(me);
      while (!e.Poll().owner) std::this_thread::yield();
      if (owners.fetch_add(1, std::memory_order_seq_cst) != 0) violations.fetch_add(1);
      terms.fetch_add(1, std::memory_order_relaxed);
      std::this_thread::yield();
      owners.fetch_sub(1, std::memory_order_seq_cst);
      e.Leave();
    }
    EXPECT_TRUE(s.conflicting_writes().empty()) << "a line has two writers";
  };
  std::thread c0(candidate, 0), c1(candidate, 1), c2(candidate, 2);
  c0.join();
  c1.join();
  c2.join();
  EXPECT_EQ(violations.load(), 0);
  EXPECT_EQ(terms.load(), 3u * 1000u);
}

}  // namespace
}  // namespace gismo::region
