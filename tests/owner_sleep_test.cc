// The owner's sleep and a client's wake-up (src/region/owner_sleep.h) under
// the non-coherence simulator: no interleaving loses a wake-up, each flush
// and invalidate of the protocol is needed, and an owner that really sleeps
// on a file descriptor applies every request of a client thread.
#include "region/owner_sleep.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <thread>

#include "nc_util.h"
#include "region/cache_lines.h"
#include "region/cache_sim.h"

namespace gismo::region {
namespace {

using gismo::testing::SharedMemory;
using gismo::testing::SteppedLines;

// The device: the owner's sleep line, then a ring's tail line (the client's).
struct Lines2 {
  SharedMemory m{2 * kCacheLine};
  OwnerSleepLine* sleep() const { return reinterpret_cast<OwnerSleepLine*>(m.base()); }
  uint64_t* tail() const { return reinterpret_cast<uint64_t*>(m.base() + kCacheLine); }
};

CacheSimOptions Quiet(const Lines2& d, uint64_t seed) {
  CacheSimOptions o;
  o.seed = seed;
  o.versions = d.m.versions();
  return o;
}

struct Outcome {
  bool hook_ran = false;
  bool slept = false;  // the owner went to sleep
  bool rang = false;   // the client sent its byte
  bool Lost() const { return slept && !rang; }
};

// The owner has applied request 1 and is going to sleep while the client
// publishes request 2; one side steps, the other runs whole at its k-th line
// operation. Both caches hold the other's line from before (the owner read
// tail = 1, the client read sleeping = 0).
Outcome Interleave(bool step_owner, uint64_t k, SleepFault owner_fault, SleepFault client_fault) {
  Lines2 d;
  CacheSim os(d.m.base(), d.m.size(), Quiet(d, 1)), cs(d.m.base(), d.m.size(), Quiet(d, 2));
  SteppedLines ol{os}, cl{cs};
  OwnerSleep<SteppedLines> owner(ol, d.sleep());
  owner.SetFaultForTesting(owner_fault);
  cl.Store(d.tail(), 1);
  cl.Flush(d.tail(), 8);
  EXPECT_FALSE(OwnerNeedsWake(cl, d.sleep(), 1));
  ol.Invalidate(d.tail(), 8);
  EXPECT_EQ(ol.Load(d.tail()), 1u);
  const uint64_t head = 1;

  Outcome out;
  auto owner_side = [&] {
    out.slept = owner.PrepareToSleep([&] {
      ol.Invalidate(d.tail(), 8);
      return ol.Load(d.tail()) != head;
    });
  };
  auto client_side = [&] {
    cl.Store(d.tail(), 2);  // P2: the entry was flushed before; now the tail
    cl.Flush(d.tail(), 8);
    out.rang = OwnerNeedsWake(cl, d.sleep(), 1, client_fault);
  };
  SteppedLines& stepped = step_owner ? ol : cl;
  stepped.at = stepped.ops + k;
  stepped.hook = [&] {
    out.hook_ran = true;
    step_owner ? client_side() : owner_side();
  };
  step_owner ? owner_side() : client_side();
  stepped.hook = nullptr;
  return out;
}

struct SweepResult {
  int runs = 0, slept = 0, stayed_awake = 0, lost = 0;
};

SweepResult Sweep(SleepFault owner_fault, SleepFault client_fault) {
  SweepResult r;
  for (bool step_owner : {true, false}) {
    for (uint64_t k = 0;; ++k) {
      const Outcome o = Interleave(step_owner, k, owner_fault, client_fault);
      if (!o.hook_ran) break;
      ++r.runs;
      r.slept += o.slept;
      r.stayed_awake += !o.slept;
      r.lost += o.Lost();
    }
  }
  return r;
}

TEST(OwnerSleepTest, NoInterleavingLosesAWakeUp) {
  const SweepResult r = Sweep(SleepFault::kNone, SleepFault::kNone);
  EXPECT_GE(r.runs, 8);  // four line operations on each side
  EXPECT_GT(r.slept, 0);
  EXPECT_GT(r.stayed_awake, 0);
  EXPECT_EQ(r.lost, 0);
}

TEST(OwnerSleepTest, RemovedSleepFlushIsCaught) {
  EXPECT_GT(Sweep(SleepFault::kSkipSleepFlush, SleepFault::kNone).lost, 0);
}

TEST(OwnerSleepTest, RemovedWakeInvalidateIsCaught) {
  EXPECT_GT(Sweep(SleepFault::kNone, SleepFault::kSkipSleepInvalidate).lost, 0);
}

TEST(OwnerSleepTest, WokenOwnerClearsTheLine) {
  Lines2 d;
  CacheSim os(d.m.base(), d.m.size(), Quiet(d, 1)), cs(d.m.base(), d.m.size(), Quiet(d, 2));
  OwnerSleep<CacheSim> owner(os, d.sleep());
  EXPECT_TRUE(owner.PrepareToSleep([] { return false; }));
  EXPECT_TRUE(OwnerNeedsWake(cs, d.sleep(), 1));
  owner.Woke();
  EXPECT_FALSE(OwnerNeedsWake(cs, d.sleep(), 1));
  EXPECT_FALSE(owner.PrepareToSleep([] { return true; })) << "a published request keeps it awake";
  EXPECT_FALSE(OwnerNeedsWake(cs, d.sleep(), 1));
  EXPECT_TRUE(cs.stale_reads().empty());
}

// Several owner threads: each sleeps on its own word, and a client reads
// the word of the thread that serves its slot (slot % threads), as memory
// holds the count; a line that names no count (or an impossible one) is
// one thread's.
TEST(OwnerSleepTest, EachOwnerThreadSleepsOnItsOwnWord) {
  Lines2 d;
  CacheSim os(d.m.base(), d.m.size(), Quiet(d, 1)), cs(d.m.base(), d.m.size(), Quiet(d, 2));
  os.Store(&d.sleep()->threads, 3);
  os.Flush(d.sleep(), sizeof(OwnerSleepLine));
  OwnerSleep<CacheSim> t0(os, d.sleep(), 0), t2(os, d.sleep(), 2);
  EXPECT_TRUE(t2.PrepareToSleep([] { return false; }));
  for (uint32_t slot = 1; slot < 10; ++slot) {
    EXPECT_EQ(OwnerNeedsWake(cs, d.sleep(), slot), slot % 3 == 2) << "slot " << slot;
  }
  EXPECT_TRUE(t0.PrepareToSleep([] { return false; }));
  t2.Woke();
  for (uint32_t slot = 1; slot < 10; ++slot) {
    EXPECT_EQ(OwnerNeedsWake(cs, d.sleep(), slot), slot % 3 == 0) << "slot " << slot;
  }
  for (uint64_t threads :
       {uint64_t{0}, uint64_t{1}, uint64_t{kMaxOwnerThreads + 1}, ~uint64_t{0}}) {
    os.Store(&d.sleep()->threads, threads);
    os.Flush(d.sleep(), sizeof(OwnerSleepLine));
    for (uint32_t slot = 1; slot < 10; ++slot) {
      EXPECT_TRUE(OwnerNeedsWake(cs, d.sleep(), slot))
          << "threads " << threads << ", slot " << slot;
    }
  }
  EXPECT_TRUE(cs.stale_reads().empty());
}

// An owner thread that sleeps in poll(2) on an eventfd (the client's byte)
// and a client thread publishing requests in bursts, each host with its own
// simulated cache and random early write-backs and evictions. A lost
// wake-up leaves the owner asleep with a request published: the poll's
// bound (10 s, never reached otherwise) turns that into a failure instead
// of a hang.
TEST(OwnerSleepTest, OwnerSleepsAndEveryRequestIsApplied) {
  constexpr uint64_t kRequests = 3000;
  Lines2 d;
  const int bell = eventfd(0, EFD_CLOEXEC);
  ASSERT_GE(bell, 0);
  CacheSimOptions chaos = Quiet(d, 7);
  chaos.evict_ppm = 20000;
  chaos.early_writeback_ppm = 300000;
  std::atomic<uint64_t> rings{0};
  std::thread client([&] {
    CacheSimOptions o = chaos;
    o.seed = 8;
    CacheSim cs(d.m.base(), d.m.size(), o);
    uint64_t r = 8;
    for (uint64_t n = 1; n <= kRequests; ++n) {
      cs.Store(d.tail(), n);
      cs.Flush(d.tail(), 8);
      if (OwnerNeedsWake(cs, d.sleep(), 1)) {
        const uint64_t one = 1;
        ASSERT_EQ(write(bell, &one, sizeof(one)), static_cast<ssize_t>(sizeof(one)));
        rings.fetch_add(1, std::memory_order_relaxed);
      }
      r = r * 6364136223846793005ull + 1442695040888963407ull;
      if ((r >> 60) == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  });
  CacheSim os(d.m.base(), d.m.size(), chaos);
  OwnerSleep<CacheSim> owner(os, d.sleep());
  uint64_t head = 0, sleeps = 0, lost = 0;
  auto published = [&] {
    os.Invalidate(d.tail(), 8);
    return os.Load(d.tail());
  };
  while (head < kRequests && lost == 0) {
    const uint64_t tail = published();
    if (tail != head) {
      head = tail;  // applied
      continue;
    }
    if (!owner.PrepareToSleep([&] { return published() != head; })) continue;
    ++sleeps;
    pollfd p{bell, POLLIN, 0};
    if (poll(&p, 1, 10000) == 1) {
      uint64_t count;
      ASSERT_EQ(read(bell, &count, sizeof(count)), static_cast<ssize_t>(sizeof(count)));
    } else if (published() != head) {
      ++lost;
    }
    owner.Woke();
  }
  client.join();
  close(bell);
  EXPECT_EQ(lost, 0u) << "the owner slept through a published request";
  EXPECT_EQ(head, kRequests);
  EXPECT_GT(sleeps, 0u);
  EXPECT_GT(rings.load(), 0u);
  EXPECT_TRUE(os.conflicting_writes().empty());
}

}  // namespace
}  // namespace gismo::region
