// A client's requests in the non-coherent mode (src/region/nc_requester.h)
// against an owner thread that applies them to a small stand-in store and
// sleeps when idle (region/owner_sleep.h), each on its own simulated host
// with random early write-backs and evictions: every call gets the answer to
// its own request, a sleeping owner is woken, a late answer to a request
// whose wait timed out is dropped, and an owner that breaks the protocol is
// reported, never believed.
#include "region/nc_requester.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <thread>

#include "nc_util.h"
#include "region/cache_lines.h"
#include "region/cache_sim.h"

namespace gismo::region {
namespace {

using gismo::testing::Chaotic;
using gismo::testing::SharedMemory;

constexpr uint32_t kCap = 8;
constexpr uint64_t kSession = 77;
constexpr uint64_t kRecords = 4096;
constexpr uint64_t kHeap = 1ull << 30;

// The shared memory of one client slot's two rings and the owner's sleep line.
struct Slot {
  SharedMemory m{2 * RequestRingBytes(kCap) + kCacheLine};
  void* requests() const { return m.base(); }
  void* responses() const { return m.base() + RequestRingBytes(kCap); }
  OwnerSleepLine* sleep() const {
    return reinterpret_cast<OwnerSleepLine*>(m.base() + 2 * RequestRingBytes(kCap));
  }
};

std::string Key(const IdWords& id) {
  return std::string(reinterpret_cast<const char*>(id.w), sizeof id.w);
}

// The owner: applies creates, seals and deletes to a map, answers each,
// sleeps on an eventfd when the ring is empty. `hold` answers nothing while
// set (a slow owner).
struct Owner {
  Slot& slot;
  CacheSim sim;
  int bell = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  std::atomic<bool> stop{false}, hold{false};
  std::atomic<bool> asleep{false};  // between its S2 and its wake-up
  std::atomic<uint64_t> sleeps{0}, applied{0};
  std::thread thread;
  std::map<std::string, std::pair<uint64_t, bool>> objects;  // id -> record, sealed
  uint64_t next_record = 0;

  Owner(Slot& s, uint64_t seed) : slot(s), sim(s.m.base(), s.m.size(), Chaotic(s.m, seed)) {
    thread = std::thread([this] { Run(); });
  }
  ~Owner() {
    stop.store(true, std::memory_order_relaxed);
    Ring();
    thread.join();
    close(bell);
  }
  void Ring() {
    const uint64_t one = 1;
    (void)!write(bell, &one, sizeof one);
  }
  NcResponse Apply(const NcRequest& q, uint64_t seq) {
    NcResponse a;
    a.request_seq = seq;
    a.op = q.op;
    auto it = objects.find(Key(q.id));
    switch (q.op) {
      case NcOp::kCreate:
        if (it != objects.end()) {
          a.status = GISMO_ERR_OBJECT_EXISTS;
          break;
        }
        a.record = next_record++ % kRecords;
        a.heap_offset = a.record * 4096;
        objects[Key(q.id)] = {a.record, false};
        break;
      case NcOp::kSeal:
        if (it == objects.end() || it->second.first != q.record) {
          a.status = GISMO_ERR_OBJECT_NOT_FOUND;
        } else if (it->second.second) {
          a.status = GISMO_ERR_OBJECT_ALREADY_SEALED;
        } else {
          it->second.second = true;
        }
        break;
      case NcOp::kDelete:
        if (it == objects.end()) {
          a.status = GISMO_ERR_OBJECT_NOT_FOUND;
        } else {
          objects.erase(it);
        }
        break;
      default:
        a.status = GISMO_ERR_UNSUPPORTED;
    }
    return a;
  }
  void Run() {
    RequestConsumer<CacheSim> in(sim, slot.requests(), kCap, kSession);
    RequestProducer<CacheSim> out(sim, slot.responses(), kCap, kSession);
    OwnerSleep<CacheSim> sleeper(sim, slot.sleep());
    in.Attach();
    if (!out.Attach()) abort();
    while (!stop.load(std::memory_order_relaxed)) {
      if (hold.load(std::memory_order_relaxed)) {
        std::this_thread::sleep_for(std::chrono::microseconds(50));
        continue;
      }
      NcRequest q;
      uint64_t seq = 0;
      auto got = TakeNcRequest(in, kRecords, &q, &seq);
      if (!got.ok()) abort();
      if (*got) {
        const NcResponse a = Apply(q, seq);
        in.Commit(in.taken());
        while (!out.TryPush(EncodeNcResponse(a))) std::this_thread::yield();
        applied.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      // Rings for requests already taken are spent: dropped before S1, so
      // only a ring after it ends the sleep.
      uint64_t spent;
      (void)!read(bell, &spent, sizeof spent);
      if (!sleeper.PrepareToSleep([&] { return in.Pending(); })) continue;
      sleeps.fetch_add(1, std::memory_order_relaxed);
      asleep.store(true);
      pollfd p{bell, POLLIN, 0};
      (void)poll(&p, 1, 10000);
      asleep.store(false);
      uint64_t count;
      (void)!read(bell, &count, sizeof count);
      sleeper.Woke();
    }
  }
};

NcRequesterOptions BaseOptions(Slot& s) {
  NcRequesterOptions o;
  o.request_ring = s.requests();
  o.response_ring = s.responses();
  o.capacity = kCap;
  o.session = kSession;
  o.sleep_line = s.sleep();
  o.record_limit = kRecords;
  o.heap_size = kHeap;
  return o;
}

// With a wake-up that rings `owner` and counts.
NcRequesterOptions OptionsFor(Slot& s, Owner& owner, std::atomic<uint64_t>* wakes) {
  NcRequesterOptions o = BaseOptions(s);
  o.wake = [&owner, wakes] {
    wakes->fetch_add(1, std::memory_order_relaxed);
    owner.Ring();
  };
  return o;
}

// A client and a live owner, each on its own simulated host.
struct Rig {
  Slot s;
  Owner owner;
  CacheSim cs;
  std::atomic<uint64_t> wakes{0};
  NcRequester<CacheSim> client;
  explicit Rig(uint64_t seed)
      : owner(s, seed),
        cs(s.m.base(), s.m.size(), Chaotic(s.m, seed + 1)),
        client(cs, OptionsFor(s, owner, &wakes)) {}
};

NcRequest Make(NcOp op, uint64_t n, uint64_t record = 0) {
  NcRequest q;
  q.op = op;
  q.id = IdWords{{n, n * 7, 0}};
  q.record = record;
  if (op == NcOp::kCreate) q.data_size = 100 + n;
  return q;
}

// Creates, seals (one twice) and deletes (one of a missing object), with
// pauses that let the owner fall asleep: every answer is its request's.
TEST(NcRequesterTest, EveryCallGetsItsOwnAnswerAndASleepingOwnerIsWoken) {
  Rig rig(1);
  auto& [s, owner, cs, wakes, client] = rig;
  ASSERT_TRUE(client.Attach());
  constexpr uint64_t kObjects = 300;
  for (uint64_t n = 1; n <= kObjects; ++n) {
    NcResponse made, sealed, again, gone;
    ASSERT_TRUE(client.Call(Make(NcOp::kCreate, n), &made, 10000).ok());
    ASSERT_EQ(made.status, GISMO_OK);
    ASSERT_EQ(made.op, NcOp::kCreate);
    ASSERT_EQ(made.heap_offset, made.record * 4096);
    ASSERT_TRUE(client.Call(Make(NcOp::kSeal, n, made.record), &sealed, 10000).ok());
    ASSERT_EQ(sealed.status, GISMO_OK) << n;
    if (n % 50 == 0) {
      ASSERT_TRUE(client.Call(Make(NcOp::kSeal, n, made.record), &again, 10000).ok());
      EXPECT_EQ(again.status, GISMO_ERR_OBJECT_ALREADY_SEALED);
      ASSERT_TRUE(client.Call(Make(NcOp::kDelete, n + 100000), &gone, 10000).ok());
      EXPECT_EQ(gone.status, GISMO_ERR_OBJECT_NOT_FOUND);
      // Let the owner fall asleep: the next request must wake it.
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (!owner.asleep.load() && std::chrono::steady_clock::now() < until) {
        std::this_thread::yield();
      }
      ASSERT_TRUE(owner.asleep.load()) << "the idle owner never went to sleep";
      const uint64_t woken = wakes.load();
      ASSERT_TRUE(client.Call(Make(NcOp::kDelete, n + 200000), &gone, 10000).ok());
      EXPECT_EQ(wakes.load(), woken + 1) << "a request to a sleeping owner wakes it";
    }
    if (n % 3 == 0) {
      ASSERT_TRUE(client.Call(Make(NcOp::kDelete, n), &gone, 10000).ok());
      EXPECT_EQ(gone.status, GISMO_OK);
    }
  }
  EXPECT_EQ(client.dropped(), 0u);
  EXPECT_GT(owner.sleeps.load(), 0u);
  EXPECT_GT(wakes.load(), 0u) << "the owner slept, so some request had to wake it";
  EXPECT_TRUE(cs.conflicting_writes().empty());
}

// A wait that times out leaves its request to be applied; its answer comes
// later and is dropped, and the next call gets its own answer.
TEST(NcRequesterTest, ALateAnswerIsDroppedAndTheNextCallGetsItsOwn) {
  Rig rig(3);
  auto& [s, owner, cs, wakes, client] = rig;
  ASSERT_TRUE(client.Attach());
  owner.hold.store(true);
  NcResponse a;
  const Status late = client.Call(Make(NcOp::kCreate, 1), &a, 20);
  EXPECT_EQ(late.code(), GISMO_ERR_TIMEOUT);
  EXPECT_NE(late.message().find("no answer to the create request 1"), std::string::npos)
      << late.message();
  owner.hold.store(false);
  owner.Ring();
  ASSERT_TRUE(client.Call(Make(NcOp::kCreate, 2), &a, 10000).ok());
  EXPECT_EQ(a.request_seq, 2u);
  EXPECT_EQ(a.status, GISMO_OK);
  EXPECT_EQ(client.dropped(), 1u);
  // The timed-out create was applied all the same.
  ASSERT_TRUE(client.Call(Make(NcOp::kCreate, 1), &a, 10000).ok());
  EXPECT_EQ(a.status, GISMO_ERR_OBJECT_EXISTS);
}

// The same request asked again as the next call after its wait timed out
// is not sent again: it waits for the first one's answer (the owner applied
// it once), even across a second timeout.
TEST(NcRequesterTest, ARequestAskedAgainAfterItsTimeoutGetsTheFirstOnesAnswer) {
  Rig rig(4);
  auto& [s, owner, cs, wakes, client] = rig;
  ASSERT_TRUE(client.Attach());
  NcResponse a;
  ASSERT_TRUE(client.Call(Make(NcOp::kCreate, 1), &a, 10000).ok());
  ASSERT_EQ(a.status, GISMO_OK);
  owner.hold.store(true);
  EXPECT_EQ(client.Call(Make(NcOp::kDelete, 1), &a, 20).code(), GISMO_ERR_TIMEOUT);
  const Status twice = client.Call(Make(NcOp::kDelete, 1), &a, 20);
  EXPECT_EQ(twice.code(), GISMO_ERR_TIMEOUT);
  EXPECT_NE(twice.message().find("delete request 2 "), std::string::npos) << twice.message();
  owner.hold.store(false);
  owner.Ring();
  ASSERT_TRUE(client.Call(Make(NcOp::kDelete, 1), &a, 10000).ok());
  EXPECT_EQ(a.request_seq, 2u);
  EXPECT_EQ(a.status, GISMO_OK) << "the first delete's outcome, not a second delete's";
  EXPECT_EQ(owner.applied.load(), 2u) << "sent once";
  EXPECT_EQ(client.dropped(), 0u);
  // Asked again now, after its answer, it is a new request.
  ASSERT_TRUE(client.Call(Make(NcOp::kDelete, 1), &a, 10000).ok());
  EXPECT_EQ(a.request_seq, 3u);
  EXPECT_EQ(a.status, GISMO_ERR_OBJECT_NOT_FOUND);
}

// An owner that takes nothing: the ring fills, and a call says so in time.
TEST(NcRequesterTest, AFullRingTimesOutWithItsReason) {
  Rig rig(5);
  auto& [s, owner, cs, wakes, client] = rig;
  ASSERT_TRUE(client.Attach());
  owner.hold.store(true);
  NcResponse a;
  Status st;
  for (uint64_t n = 1; n <= kCap + 1; ++n) {
    st = client.Call(Make(NcOp::kDelete, n), &a, 5);
    ASSERT_EQ(st.code(), GISMO_ERR_TIMEOUT);
  }
  EXPECT_NE(st.message().find("its request ring stayed full"), std::string::npos) << st.message();
}

// A client's requester and the response ring of its slot, with no owner
// running: the test writes the owner's answers itself.
struct AnswersByHand {
  Slot s;
  HwLines hw;
  NcRequester<HwLines> client{hw, BaseOptions(s)};
  RequestProducer<HwLines> owner_out{hw, s.responses(), kCap, kSession};

  // Both ends take up where the rings' memory says.
  bool Attach() { return client.Attach() && owner_out.Attach(); }

  // The owner takes the next `n` entries of the request ring and its head
  // reaches memory (as an owner's Txn writes it, committed or not); the
  // last entry's payload in *taken.
  void TakeAndMoveHead(uint32_t n, RequestPayload* taken) {
    RequestConsumer<HwLines> owner_in(hw, s.requests(), kCap, kSession);
    owner_in.Attach();
    for (uint32_t k = 0; k < n; ++k) ASSERT_EQ(owner_in.Take(taken), PopResult::kRequest);
    owner_in.Commit(owner_in.taken());
  }
  // The owner answers request `seq` (an `op`) with OK.
  void Answer(uint64_t seq, NcOp op) {
    NcResponse a;
    a.request_seq = seq;
    a.op = op;
    ASSERT_TRUE(owner_out.TryPush(EncodeNcResponse(a)));
  }
};

// What an owner might wrongly put on the response ring: an answer to a
// request never sent, to another op, or one that does not decode.
TEST(NcRequesterTest, AnOwnerThatBreaksTheProtocolIsReported) {
  AnswersByHand rig;
  auto& [s, hw, client, owner_out] = rig;
  ASSERT_TRUE(rig.Attach());
  NcResponse a;

  NcResponse ahead;
  ahead.request_seq = 5;  // request 1 is the one awaited
  ahead.op = NcOp::kDelete;
  ASSERT_TRUE(owner_out.TryPush(EncodeNcResponse(ahead)));
  Status st = client.Call(Make(NcOp::kDelete, 1), &a, 1000);
  EXPECT_EQ(st.code(), GISMO_ERR_PROTOCOL);
  EXPECT_NE(st.message().find("answer to delete request 5 while request 1"), std::string::npos)
      << st.message();

  NcResponse other_op;
  other_op.request_seq = 2;
  other_op.op = NcOp::kTouch;
  ASSERT_TRUE(owner_out.TryPush(EncodeNcResponse(other_op)));
  st = client.Call(Make(NcOp::kDelete, 2), &a, 1000);
  EXPECT_EQ(st.code(), GISMO_ERR_PROTOCOL);
  EXPECT_NE(st.message().find("(delete) was awaited"), std::string::npos) << st.message();

  NcResponse wild;
  wild.request_seq = 3;
  wild.op = NcOp::kCreate;
  wild.record = kRecords;  // beyond the region
  ASSERT_TRUE(owner_out.TryPush(EncodeNcResponse(wild)));
  st = client.Call(Make(NcOp::kCreate, 3), &a, 1000);
  EXPECT_EQ(st.code(), GISMO_ERR_PROTOCOL);
  EXPECT_NE(st.message().find("malformed response"), std::string::npos) << st.message();
}

// Late answers (to an earlier request) do not hold a call past its
// deadline: it looks at the clock after each one it drops (it did only when
// the ring was empty, so an owner that kept writing late answers held the
// call for as long as it wrote them). Late answers queued, a call that may
// not wait: it drops one and times out.
TEST(NcRequesterTest, LateAnswersDoNotHoldACallPastItsDeadline) {
  AnswersByHand rig;
  auto& [s, hw, client, owner_out] = rig;
  ASSERT_TRUE(rig.Attach());
  NcResponse a;
  NcResponse first;
  first.request_seq = 1;
  first.op = NcOp::kDelete;
  ASSERT_TRUE(owner_out.TryPush(EncodeNcResponse(first)));
  ASSERT_TRUE(client.Call(Make(NcOp::kDelete, 1), &a, 1000).ok());
  int queued = 0;
  while (queued < 4 && owner_out.TryPush(EncodeNcResponse(first))) ++queued;
  ASSERT_GE(queued, 2);
  const Status st = client.Call(Make(NcOp::kDelete, 2), &a, 0);
  EXPECT_EQ(st.code(), GISMO_ERR_TIMEOUT) << st.ToString();
  EXPECT_EQ(client.dropped(), 1u);
}

// The owner moves a request's head in the Txn that applies it, and head's
// line may reach memory before that Txn commits; should the owner die then,
// its successor takes the request again from its entry. A client whose ring
// is full must not count that head as room: it waits for the request's
// answer, published only after the commit. (It wrote its next request over
// that entry, and the successor found the ring corrupt.)
TEST(NcRequesterTest, AHeadWithoutItsAnswerMakesNoRoom) {
  AnswersByHand rig;
  auto& [s, hw, client, owner_out] = rig;
  ASSERT_TRUE(rig.Attach());
  NcResponse a;
  for (uint64_t n = 1; n <= kCap; ++n) {  // calls that time out fill the ring
    ASSERT_EQ(client.Call(Make(NcOp::kDelete, n), &a, 0).code(), GISMO_ERR_TIMEOUT);
  }
  // The owner takes request 1, and its head reaches memory; the Txn that
  // moved it never commits.
  RequestPayload taken;
  ASSERT_NO_FATAL_FAILURE(rig.TakeAndMoveHead(1, &taken));
  const Status full = client.Call(Make(NcOp::kDelete, 100), &a, 5);
  EXPECT_EQ(full.code(), GISMO_ERR_TIMEOUT);
  EXPECT_NE(full.message().find("its request ring stayed full"), std::string::npos)
      << full.message();
  const auto* entries =
      reinterpret_cast<const RequestEntry*>(static_cast<RequestRingHeader*>(s.requests()) + 1);
  RequestPayload again;
  ASSERT_TRUE(LoadRequestEntry(hw, entries, kCap, kSession, 1, &again, /*invalidate=*/true))
      << "request 1's entry was overwritten before its answer";
  EXPECT_EQ(std::memcmp(again.w, taken.w, sizeof again.w), 0);
  // Its answer makes the room: the next call drops it and sends.
  ASSERT_NO_FATAL_FAILURE(rig.Answer(1, NcOp::kDelete));
  const Status sent = client.Call(Make(NcOp::kDelete, 101), &a, 0);
  EXPECT_EQ(sent.code(), GISMO_ERR_TIMEOUT);
  EXPECT_NE(sent.message().find("delete request 9 "), std::string::npos) << sent.message();
  EXPECT_EQ(client.dropped(), 1u);
}

// A request of several entries (a bind with a long name) answered late
// frees all of its entries: room was counted up to its first entry only,
// and a client sending such requests on a small ring never had room again.
TEST(NcRequesterTest, ALateAnswerFreesEveryEntryOfItsRequest) {
  AnswersByHand rig;
  auto& [s, hw, client, owner_out] = rig;
  ASSERT_TRUE(rig.Attach());
  const auto bind = [](char c) {
    NcRequest q = Make(NcOp::kBindName, 1);
    q.name = std::string(GISMO_NAME_MAX, c);
    return q;
  };
  const uint32_t entries = NcRequestEntries(bind('a'));
  ASSERT_GT(2 * entries, kCap) << "two of them must not fit the ring at once";
  NcResponse a;
  ASSERT_EQ(client.Call(bind('a'), &a, 0).code(), GISMO_ERR_TIMEOUT);
  RequestPayload taken;
  ASSERT_NO_FATAL_FAILURE(rig.TakeAndMoveHead(entries, &taken));
  ASSERT_NO_FATAL_FAILURE(rig.Answer(1, NcOp::kBindName));
  const Status sent = client.Call(bind('b'), &a, 0);
  EXPECT_EQ(sent.code(), GISMO_ERR_TIMEOUT);
  EXPECT_NE(sent.message().find("bind name request " + std::to_string(entries + 1) + " "),
            std::string::npos)
      << sent.message();
  EXPECT_EQ(client.dropped(), 1u);
}

}  // namespace
}  // namespace gismo::region
