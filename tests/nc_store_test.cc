// The non-coherent mode end to end at the store level: clients (Store in
// non-coherent use: requests and the local get path) against the owner's
// apply loop (NcOwnerStore) on a real non-coherent region, with the
// machine's real flushes and invalidates (HwLines).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "common/crash_point.h"
#include "region/cache_lines.h"
#include "region/nc_requests.h"
#include "region/request_ring.h"
#include "region_fixture.h"
#include "store/event_ring.h"
#include "store/nc_owner.h"
#include "store/txn.h"

namespace gismo::testing {
namespace {

using region::CoherenceMode;
using store::GetResult;
using store::NcOwnerStore;
using store::Store;

class NcStoreTest : public RegionFixture {
 protected:
  void SetUp() override {
    if (!region::NonCoherentSupported()) GTEST_SKIP() << "no cache line invalidate on this CPU";
    region::FormatOptions o;
    o.coherence = CoherenceMode::kNonCoherent;
    o.max_clients = 8;
    Format(o);
    owner_ = std::make_unique<NcOwnerStore>(*region_, 1);
  }
  void TearDown() override {
    StopOwner();
    RegionFixture::TearDown();
  }
  // A client in slot `slot`, admitted by the owner.
  std::unique_ptr<Store> Client(uint32_t slot) {
    auto s = Activate(slot, /*node=*/slot);
    region_->slot(slot).node_id.store(slot);
    {
      std::lock_guard<std::mutex> lk(owner_mu_);  // the owner is one thread's
      owner_->Admit(slot, 1);
    }
    EXPECT_TRUE(s->UseNonCoherent(nullptr).ok());
    return s;
  }
  // The owner's loop on its own thread: serves every admitted slot, sweeps.
  void StartOwner() {
    stop_ = false;
    owner_thread_ = std::thread([this] {
      while (!stop_.load(std::memory_order_acquire)) {
        std::lock_guard<std::mutex> lk(owner_mu_);
        bool any = false;
        for (uint32_t i = 1; i < region_->max_clients(); ++i) {
          auto n = owner_->Serve(i, 16);
          ASSERT_TRUE(n.ok()) << n.status().ToString();
          any |= *n > 0;
        }
        if (!any) {
          owner_->Sweep();
          std::this_thread::yield();
        }
      }
    });
  }
  void StopOwner() {
    if (!owner_thread_.joinable()) return;
    stop_.store(true, std::memory_order_release);
    owner_thread_.join();
    // The owner role may move to another host (a forked child) now.
    region_->FlushMetadata();
  }
  // Writes `n` bytes of `fill` as object id, seals it.
  void Put(Store& s, const gismo_id_t& id, uint64_t n, uint8_t fill) {
    void* data = nullptr;
    ASSERT_TRUE(s.Create(id, n, "m", 1, &data).ok());
    std::memset(data, fill, n);
    ASSERT_TRUE(s.Seal(id).ok());
  }

  std::unique_ptr<NcOwnerStore> owner_;
  std::mutex owner_mu_;
  std::thread owner_thread_;
  std::atomic<bool> stop_{false};
};

TEST_F(NcStoreTest, ObjectsCrossFromCreatorToReaderAndAreFreed) {
  StartOwner();
  auto a = Client(1), b = Client(2);
  const uint64_t free_before = FreePages();
  const gismo_id_t id = IdFrom(1);
  Put(*a, id, 100000, 0x5a);
  GetResult got;
  ASSERT_TRUE(b->TryGet(id, &got).ok());
  ASSERT_TRUE(got.found);
  ASSERT_EQ(got.buffer.data_size, 100000u);
  ASSERT_EQ(got.buffer.metadata_size, 1u);
  EXPECT_EQ(static_cast<const char*>(got.buffer.metadata)[0], 'm');
  const auto* p = static_cast<const uint8_t*>(got.buffer.data);
  for (uint64_t i = 0; i < 100000; i += 997) ASSERT_EQ(p[i], 0x5a) << i;
  bool contains = false;
  ASSERT_TRUE(b->Contains(id, &contains).ok());
  EXPECT_TRUE(contains);
  gismo_object_info_t info;
  ASSERT_TRUE(b->Stat(id, &info).ok());
  EXPECT_EQ(info.state, GISMO_STATE_SEALED);
  EXPECT_EQ(info.ref_count, 2u) << "the creator's and the reader's";
  EXPECT_EQ(info.creator_client, 1u);
  EXPECT_EQ(info.creator_node, 1u);
  ASSERT_TRUE(a->Release(id).ok());
  ASSERT_TRUE(b->Release(id).ok());
  EXPECT_EQ(b->Release(id).code(), GISMO_ERR_NOT_HELD);
  ASSERT_TRUE(a->Delete(id).ok());
  ASSERT_TRUE(b->TryGet(id, &got).ok());
  EXPECT_FALSE(got.found);
  ASSERT_TRUE(b->Contains(id, &contains).ok());
  EXPECT_FALSE(contains);
  // The owner's next sweep gives the block back to the heap.
  while (FreePages() != free_before) std::this_thread::yield();
  // The id can be created again at once.
  Put(*b, id, 64, 1);
  ASSERT_TRUE(b->Release(id).ok());
  StopOwner();
  ExpectSound();
}

TEST_F(NcStoreTest, ADeleteWaitsForTheLastReferenceAnywhere) {
  StartOwner();
  auto a = Client(1), b = Client(2);
  const gismo_id_t id = IdFrom(2);
  Put(*a, id, 4096, 0x11);
  ASSERT_TRUE(a->Release(id).ok());
  GetResult got;
  ASSERT_TRUE(b->TryGet(id, &got).ok());
  ASSERT_TRUE(got.found);
  ASSERT_TRUE(a->Delete(id).ok());
  gismo_object_info_t info;
  ASSERT_TRUE(a->Stat(id, &info).ok());
  EXPECT_EQ(info.state, GISMO_STATE_DELETING);
  EXPECT_EQ(a->Delete(id).code(), GISMO_ERR_OBJECT_NOT_FOUND) << "already deleted";
  void* data = nullptr;
  EXPECT_EQ(a->Create(id, 10, nullptr, 0, &data).code(), GISMO_ERR_OBJECT_EXISTS);
  // The reader's bytes stay while it holds them.
  EXPECT_EQ(static_cast<const uint8_t*>(got.buffer.data)[4095], 0x11);
  ASSERT_TRUE(b->Release(id).ok());
  // The owner's sweep frees it.
  while (a->Stat(id, &info).code() != GISMO_ERR_OBJECT_NOT_FOUND) std::this_thread::yield();
  StopOwner();
  ExpectSound();
}

// A client that publishes requests and never reads its answers: once a
// ring of its answers waits unsent, its requests are no pending work (the
// owner thread spun on them for ever, never sleeping); once it reads, they
// are served again.
TEST_F(NcStoreTest, AClientThatReadsNoAnswersKeepsNoOwnerAwake) {
  auto c = Client(1);
  region::HwLines hw;
  const uint64_t cap = region_->request_ring_capacity();
  region::RequestProducer<region::HwLines> out(hw, region_->request_ring(1), cap, /*seal=*/1);
  ASSERT_TRUE(out.Attach());
  region::NcRequest q;
  q.op = region::NcOp::kTouch;
  q.id = store::ToWords(IdFrom(77));
  std::array<region::RequestPayload, region::kNcMaxRequestEntries> entries;
  ASSERT_TRUE(region::EncodeNcRequest(q, entries).ok());
  const uint32_t n = region::NcRequestEntries(q);
  // Answers fill the response ring, then the owner's backlog; then the
  // owner takes no more, and requests fill the request ring.
  uint64_t published = 0;
  bool full = false;
  for (uint64_t round = 0; round < 4 * cap && !full; ++round) {
    full = !out.TryPushAll(entries.data(), n);
    published += !full;
    ASSERT_TRUE(owner_->Serve(1, 1 << 20).ok());
  }
  ASSERT_TRUE(full) << published << " requests published, all taken";
  EXPECT_FALSE(owner_->AnyPending()) << "requests the owner will not serve keep it awake";
  // The client reads every answer there is: its requests are work again.
  region::RequestConsumer<region::HwLines> in(hw, region_->response_ring(1), cap, /*seal=*/1);
  in.Attach();
  region::RequestPayload answer;
  while (in.Take(&answer) == region::PopResult::kRequest) {
  }
  in.Commit(in.taken());
  EXPECT_TRUE(owner_->AnyPending());
}

TEST_F(NcStoreTest, EachMisuseGetsItsError) {
  StartOwner();
  auto a = Client(1), b = Client(2);
  const gismo_id_t id = IdFrom(3);
  void* data = nullptr;
  ASSERT_TRUE(a->Create(id, 128, nullptr, 0, &data).ok());
  EXPECT_EQ(a->Create(id, 128, nullptr, 0, &data).code(), GISMO_ERR_OBJECT_EXISTS);
  EXPECT_EQ(b->Create(id, 128, nullptr, 0, &data).code(), GISMO_ERR_OBJECT_EXISTS);
  EXPECT_EQ(b->Seal(id).code(), GISMO_ERR_NOT_CREATOR);
  EXPECT_EQ(b->Abort(id).code(), GISMO_ERR_NOT_CREATOR);
  EXPECT_EQ(a->Release(id).code(), GISMO_ERR_OBJECT_NOT_SEALED);
  EXPECT_EQ(b->Delete(id).code(), GISMO_ERR_OBJECT_NOT_SEALED);
  GetResult got;
  ASSERT_TRUE(b->TryGet(id, &got).ok());
  EXPECT_FALSE(got.found) << "unsealed objects are not gotten";
  ASSERT_TRUE(a->Seal(id).ok());
  EXPECT_EQ(a->Seal(id).code(), GISMO_ERR_OBJECT_ALREADY_SEALED);
  EXPECT_EQ(a->Abort(id).code(), GISMO_ERR_OBJECT_ALREADY_SEALED);
  EXPECT_EQ(b->Delete(IdFrom(99)).code(), GISMO_ERR_OBJECT_NOT_FOUND);
  EXPECT_EQ(b->Seal(IdFrom(99)).code(), GISMO_ERR_OBJECT_NOT_FOUND);
  EXPECT_EQ(b->Create(IdFrom(4), 1, nullptr, 0, 1u << 20, &data).code(),
            GISMO_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(b->Create(IdFrom(4), region_->heap_size() * 2, nullptr, 0, &data).code(),
            GISMO_ERR_OUT_OF_MEMORY);
  store::EvictResult evicted;
  ASSERT_TRUE(b->Evict(store::EvictTarget{1, 0, -1}, &evicted).ok());
  EXPECT_EQ(evicted.bytes, 0u) << "nothing is evictable";
  // An abort frees the block.
  const uint64_t free_before = FreePages();
  ASSERT_TRUE(b->Create(IdFrom(5), 1 << 20, nullptr, 0, &data).ok());
  EXPECT_LT(FreePages(), free_before);
  ASSERT_TRUE(b->Abort(IdFrom(5)).ok());
  EXPECT_EQ(FreePages(), free_before);
  ASSERT_TRUE(a->Release(id).ok());
  StopOwner();
  ExpectSound();
}

TEST_F(NcStoreTest, ARecoveredClientsObjectsAndReferencesAreFreed) {
  StartOwner();
  auto a = Client(1), b = Client(2);
  const uint64_t free_before = FreePages();
  Put(*a, IdFrom(6), 1 << 20, 6);
  ASSERT_TRUE(a->Release(IdFrom(6)).ok());
  GetResult got;
  ASSERT_TRUE(b->TryGet(IdFrom(6), &got).ok());
  ASSERT_TRUE(got.found);
  void* data = nullptr;
  ASSERT_TRUE(b->Create(IdFrom(7), 1 << 20, nullptr, 0, &data).ok());  // never sealed
  ASSERT_TRUE(a->Delete(IdFrom(6)).ok());                              // b still holds it
  StopOwner();
  ExpectSound();  // a deleted object still held, an unsealed one of a live client
  // b is fenced (it can never run again): its slot is the owner's.
  b.reset();
  ASSERT_TRUE(owner_->Recover(2).ok());
  region_->slot(2).state.store(0);
  bool contains = true;
  ASSERT_TRUE(a->Contains(IdFrom(7), &contains).ok());
  EXPECT_FALSE(contains);
  gismo_object_info_t info;
  EXPECT_EQ(a->Stat(IdFrom(6), &info).code(), GISMO_ERR_OBJECT_NOT_FOUND);
  EXPECT_EQ(a->Stat(IdFrom(7), &info).code(), GISMO_ERR_OBJECT_NOT_FOUND);
  EXPECT_EQ(FreePages(), free_before);
  ExpectSound();
  // The slot's next session starts with empty rings.
  StartOwner();
  auto c = Client(2);
  Put(*c, IdFrom(8), 100, 8);
  ASSERT_TRUE(c->Release(IdFrom(8)).ok());
  StopOwner();
  ExpectSound();
}

// Clients on threads create, seal, get, release and delete at once against
// the owner's thread; every byte read is the creator's, and at the end the
// heap and index are as they began.
// A get in a non-coherent region writes no record, so it sets no CLOCK
// reference bit itself: it notes the get in its client's recent-gets line,
// and the owner sets the bit before its hand moves. So the objects a client
// got outlive the one nobody got, as in a coherent region, whichever of
// them the hand meets first.
TEST_F(NcStoreTest, AGotEvictableObjectGetsItsSecondChance) {
  StartOwner();
  auto a = Client(1), b = Client(2);
  constexpr uint64_t kObjects = 5;
  for (uint64_t i = 0; i < kObjects; ++i) {
    void* data = nullptr;
    ASSERT_TRUE(a->Create(IdFrom(100 + i), 4096, nullptr, 0, GISMO_CREATE_EVICTABLE, &data).ok());
    std::memset(data, static_cast<int>(i), 4096);
    ASSERT_TRUE(a->Seal(IdFrom(100 + i)).ok());
    ASSERT_TRUE(a->Release(IdFrom(100 + i)).ok());
  }
  // Records do not move while their objects live: where each one is.
  const uint32_t records = region_->num_records();
  std::vector<std::pair<uint32_t, gismo_id_t>> left;  // record, id
  for (uint64_t i = 0; i < kObjects; ++i) {
    const gismo_id_t id = IdFrom(100 + i);
    for (uint32_t g = 0; g < records; ++g) {
      const gismo_id_t there = store::IdOf(region_->record(g));
      if (std::memcmp(&there, &id, sizeof(id)) == 0) left.emplace_back(g, id);
    }
  }
  ASSERT_EQ(left.size(), kObjects);
  // Each create set its object's bit: the hand's first turn clears them
  // all, its second evicts the first object it meets.
  store::EvictResult evicted;
  ASSERT_TRUE(b->Evict(store::EvictTarget{1, 0, -1}, &evicted).ok());
  ASSERT_GT(evicted.bytes, 0u);
  std::optional<uint32_t> gone;
  for (auto it = left.begin(); it != left.end();) {
    bool contains = true;
    ASSERT_TRUE(b->Contains(it->second, &contains).ok());
    if (contains) {
      ++it;
    } else {
      ASSERT_FALSE(gone.has_value()) << "one object is evicted";
      gone = it->first;
      it = left.erase(it);
    }
  }
  ASSERT_TRUE(gone.has_value());
  // The survivors in the order the hand meets them from where it stopped.
  std::sort(left.begin(), left.end(), [&](const auto& x, const auto& y) {
    return (x.first + records - *gone) % records < (y.first + records - *gone) % records;
  });
  // b gets every survivor but the one the hand meets last.
  for (size_t i = 0; i + 1 < left.size(); ++i) {
    GetResult got;
    ASSERT_TRUE(b->TryGet(left[i].second, &got).ok());
    ASSERT_TRUE(got.found);
    ASSERT_TRUE(b->Release(left[i].second).ok());
  }
  ASSERT_TRUE(b->Evict(store::EvictTarget{1, 0, -1}, &evicted).ok());
  ASSERT_GT(evicted.bytes, 0u);
  for (size_t i = 0; i < left.size(); ++i) {
    bool contains = false;
    ASSERT_TRUE(b->Contains(left[i].second, &contains).ok());
    EXPECT_EQ(contains, i + 1 < left.size()) << "survivor " << i << " of " << left.size();
  }
  {
    std::lock_guard<std::mutex> lk(owner_mu_);
    EXPECT_EQ(owner_->stats().noted_gets, left.size() - 1);
  }
  StopOwner();
  ExpectSound();
}

// The owner's hand passes the records that hold evictable objects (its
// ring), not the whole index: listed by one scan at its first eviction (so
// a successor finds what its predecessor created), then by their creates;
// a record freed and taken by an object that is not evictable is dropped
// from the ring, never evicted.
TEST_F(NcStoreTest, TheHandPassesEvictableObjectsOnlyAndASuccessorFindsThem) {
  StartOwner();
  auto a = Client(1), b = Client(2);
  auto put = [&](uint64_t k, uint32_t flags) {
    void* data = nullptr;
    ASSERT_TRUE(a->Create(IdFrom(k), 4096, nullptr, 0, flags, &data).ok());
    std::memset(data, static_cast<int>(k), 4096);
    ASSERT_TRUE(a->Seal(IdFrom(k)).ok());
    ASSERT_TRUE(a->Release(IdFrom(k)).ok());
  };
  auto contains = [&](uint64_t k) {
    bool c = false;
    EXPECT_TRUE(b->Contains(IdFrom(k), &c).ok());
    return c;
  };
  auto evict_all = [&] {
    store::EvictResult evicted;
    EXPECT_TRUE(b->Evict(store::EvictTarget{uint64_t{1} << 40, 0, -1}, &evicted).ok());
    return evicted.bytes;
  };
  // Created before this owner's first eviction, then by a successor.
  for (uint64_t k = 200; k < 203; ++k) put(k, GISMO_CREATE_EVICTABLE);
  for (uint64_t k = 300; k < 303; ++k) put(k, 0);
  StopOwner();
  {
    // The successor: slot 0's next session, serving the same clients.
    std::lock_guard<std::mutex> lk(owner_mu_);
    region_->slot(0).state.store(region::PackSlotState(region::SlotState::kActive, 2));
    owner_ = std::make_unique<NcOwnerStore>(*region_, 2);
    owner_->Admit(1, 1);
    owner_->Admit(2, 1);
  }
  StartOwner();
  EXPECT_GT(evict_all(), 0u);
  for (uint64_t k = 200; k < 203; ++k) {
    // Freed by the eviction or, held by nobody, by the owner's next sweep.
    while (contains(k)) std::this_thread::yield();
  }
  for (uint64_t k = 300; k < 303; ++k) EXPECT_TRUE(contains(k)) << "not evictable: " << k;
  // The freed records are taken again (the free list is LIFO): by objects
  // that are not evictable, then one that is, created after the first
  // eviction (listed by its create).
  for (uint64_t k = 400; k < 403; ++k) put(k, 0);
  put(500, GISMO_CREATE_EVICTABLE);
  EXPECT_GT(evict_all(), 0u);
  while (contains(500)) std::this_thread::yield();
  for (uint64_t k : {300, 301, 302, 400, 401, 402}) EXPECT_TRUE(contains(k)) << k;
  EXPECT_EQ(evict_all(), 0u) << "nothing evictable is left";
  StopOwner();
  ExpectSound();
}

TEST_F(NcStoreTest, ClientsOnThreadsAgainstTheOwner) {
  StartOwner();
  constexpr int kClients = 3, kRounds = 300;
  std::vector<std::unique_ptr<Store>> stores;
  for (int c = 0; c < kClients; ++c) stores.push_back(Client(1 + c));
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      Store& s = *stores[c];
      for (int k = 0; k < kRounds; ++k) {
        const gismo_id_t mine = IdFrom(1000 + c, k);
        const uint64_t n = 64 + (k % 7) * 1000;
        void* data = nullptr;
        if (!s.Create(mine, n, nullptr, 0, &data).ok()) {
          ++bad;
          return;
        }
        std::memset(data, static_cast<int>(c * 31 + k), n);
        if (!s.Seal(mine).ok() || !s.Release(mine).ok()) {
          ++bad;
          return;
        }
        // Read a neighbour's latest object, if it is there.
        const gismo_id_t theirs = IdFrom(1000 + (c + 1) % kClients, k);
        GetResult got;
        if (!s.TryGet(theirs, &got).ok()) {
          ++bad;
          return;
        }
        if (got.found) {
          const auto* p = static_cast<const uint8_t*>(got.buffer.data);
          const uint8_t want = static_cast<uint8_t>(((c + 1) % kClients) * 31 + k);
          for (uint64_t i = 0; i < got.buffer.data_size; i += 61) bad += p[i] != want;
          if (!s.Release(theirs).ok()) ++bad;
        }
        Status d = s.Delete(mine);
        if (!d.ok()) {
          ++bad;
          return;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0);
  // Deletes of objects a neighbour held are freed by the owner's sweeps
  // (the checker then finds every block of the heap free or an object's).
  auto objects = [&] {
    int n = 0;
    EXPECT_TRUE(stores[0]->ForEach([&](const gismo_object_info_t&) { ++n; }).ok());
    return n;
  };
  for (int spins = 0; objects() != 0 && spins < 1000000; ++spins) std::this_thread::yield();
  EXPECT_EQ(objects(), 0);
  StopOwner();
  // Create, seal and delete of each object, and the releases of a
  // neighbour's object that found it deleted meanwhile (reported).
  EXPECT_GE(owner_->stats().applied, uint64_t{kClients} * kRounds * 3);
  EXPECT_LE(owner_->stats().applied, uint64_t{kClients} * kRounds * 4);
  ExpectSound();
}

// The owner dies (its process exits) at each of its crash points while it
// applies a request; a successor undoes its interrupted Txn (as the next
// manager does with slot 0's log) and serves on. A request whose head was
// not committed is applied again, once; one whose effects committed is not;
// a delete committed but not yet freed is freed by the successor's sweep.
// The region is sound after each.
class NcOwnerDeathTest : public NcStoreTest {
 protected:
  // Runs the owner in a child that dies at `point`; `call` runs meanwhile
  // in this process. Then the successor.
  void DieAt(const char* point, const std::function<void()>& call) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ArmCrashPoint(point);
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
      while (std::chrono::steady_clock::now() < deadline) {
        for (uint32_t i = 1; i < 4; ++i) (void)owner_->Serve(i, 16);
        owner_->Sweep();
      }
      _exit(1);  // the point was never reached
    }
    call();
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_EQ(ExitCode(status), 77) << "the owner did not die at " << point;
    // The successor: slot 0's next session, after the undo of its log,
    // reading what the dead owner flushed (this host cached older lines).
    region_->InvalidateMetadata();
    store::UndoDeadClient(*region_, 0);
    store::FinishDeadProducerEvents(*region_, 0);
    region_->slot(0).state.store(region::PackSlotState(region::SlotState::kActive, 2));
    owner_ = std::make_unique<NcOwnerStore>(*region_, 2);
    owner_->AdoptDeleting();
    for (uint32_t i = 1; i < 4; ++i) {
      if (region::SlotStateOf(region_->slot(i).state.load()) == region::SlotState::kActive) {
        owner_->Admit(i, 1);
      }
    }
  }
};

TEST_F(NcOwnerDeathTest, ACreateNotCommittedIsAppliedOnceBySuccessor) {
  auto a = Client(1);
  const gismo_id_t x = IdFrom(10);
  DieAt("nc_owner.before_commit", [&] {
    void* data = nullptr;
    EXPECT_EQ(a->Create(x, 3000, nullptr, 0, &data).code(), GISMO_ERR_TIMEOUT);
  });
  gismo_object_info_t info;
  EXPECT_EQ(a->Stat(x, &info).code(), GISMO_ERR_OBJECT_NOT_FOUND) << "undone";
  ExpectSound();
  StartOwner();
  // The successor took the create again (its head was not committed); the
  // client, which gave up waiting, drops that late answer at its next call.
  while (a->Stat(x, &info).code() != GISMO_OK) std::this_thread::yield();
  EXPECT_EQ(info.state, GISMO_STATE_CREATED);
  EXPECT_EQ(info.creator_client, 1u);
  Put(*a, IdFrom(11), 100, 1);
  ASSERT_TRUE(a->Release(IdFrom(11)).ok());
  StopOwner();
  // Its creator's recovery frees the object it never learned it made.
  a.reset();
  ASSERT_TRUE(owner_->Recover(1).ok());
  region_->slot(1).state.store(0);
  const uint32_t records = region_->num_records();
  for (uint32_t g = 0; g < records; ++g) {
    EXPECT_NE(region::InfoState(region_->record(g).info.load()), region::ObjectState::kCreated)
        << "record " << g << " is left unsealed";
  }
  ExpectSound();
}

// A client whose create timed out asks again: the successor applied the
// first (its head was not committed) and answers the second with the same
// object, which the client then writes and seals; an abort asked after a
// create it never learned of frees the object.
TEST_F(NcOwnerDeathTest, ATimedOutCreateAskedAgainGivesTheObjectItMade) {
  auto a = Client(1);
  const gismo_id_t x = IdFrom(20), y = IdFrom(21);
  DieAt("nc_owner.before_commit", [&] {
    void* data = nullptr;
    EXPECT_EQ(a->Create(x, 3000, nullptr, 0, &data).code(), GISMO_ERR_TIMEOUT);
  });
  StartOwner();
  void* data = nullptr;
  ASSERT_TRUE(a->Create(x, 3000, nullptr, 0, &data).ok());
  std::memset(data, 7, 3000);
  ASSERT_TRUE(a->Seal(x).ok());
  GetResult got;
  ASSERT_TRUE(a->TryGet(x, &got).ok() && got.found);
  EXPECT_EQ(static_cast<const uint8_t*>(got.buffer.data)[2999], 7);
  ASSERT_TRUE(a->Release(x).ok());
  ASSERT_TRUE(a->Release(x).ok());
  // Sealed now: another create of it is refused.
  EXPECT_EQ(a->Create(x, 100, nullptr, 0, &data).code(), GISMO_ERR_OBJECT_EXISTS);
  StopOwner();
  DieAt("nc_owner.before_commit",
        [&] { EXPECT_EQ(a->Create(y, 500, nullptr, 0, &data).code(), GISMO_ERR_TIMEOUT); });
  StartOwner();
  gismo_object_info_t info;
  while (a->Stat(y, &info).code() != GISMO_OK) std::this_thread::yield();
  Status seal = a->Seal(y);
  EXPECT_EQ(seal.code(), GISMO_ERR_OBJECT_EXISTS);
  EXPECT_NE(seal.message().find("create it again"), std::string::npos) << seal.message();
  ASSERT_TRUE(a->Abort(y).ok());
  EXPECT_EQ(a->Stat(y, &info).code(), GISMO_ERR_OBJECT_NOT_FOUND);
  StopOwner();
  ExpectSound();
}

// A seal whose answer the client did not get (the owner died before its
// commit) asked again is applied once, and answered OK.
TEST_F(NcOwnerDeathTest, ATimedOutSealAskedAgainSeals) {
  auto a = Client(1);
  const gismo_id_t x = IdFrom(22);
  StartOwner();
  void* data = nullptr;
  ASSERT_TRUE(a->Create(x, 1000, nullptr, 0, &data).ok());
  std::memset(data, 9, 1000);
  StopOwner();
  DieAt("nc_owner.before_commit", [&] { EXPECT_EQ(a->Seal(x).code(), GISMO_ERR_TIMEOUT); });
  StartOwner();
  ASSERT_TRUE(a->Seal(x).ok());
  gismo_object_info_t info;
  ASSERT_TRUE(a->Stat(x, &info).ok());
  EXPECT_EQ(info.state, GISMO_STATE_SEALED);
  EXPECT_EQ(a->Seal(x).code(), GISMO_ERR_OBJECT_ALREADY_SEALED) << "a second seal it knows of";
  ASSERT_TRUE(a->Release(x).ok());
  ASSERT_TRUE(a->Delete(x).ok());
  EXPECT_EQ(a->Stat(x, &info).code(), GISMO_ERR_OBJECT_NOT_FOUND) << "freed before it returned";
  StopOwner();
  ExpectSound();
}

// A delete whose answer the client did not get, asked again as its next
// call, is not sent again: the first is applied once (by the successor
// here) and its answer (deleted) is the outcome, where a second delete
// would say the object was never there. A delete asked after that is new.
TEST_F(NcOwnerDeathTest, ATimedOutDeleteAskedAgainSaysItDeleted) {
  auto a = Client(1);
  const gismo_id_t x = IdFrom(23);
  StartOwner();
  Put(*a, x, 2000, 4);
  ASSERT_TRUE(a->Release(x).ok());
  StopOwner();
  DieAt("nc_owner.before_commit", [&] { EXPECT_EQ(a->Delete(x).code(), GISMO_ERR_TIMEOUT); });
  StartOwner();
  EXPECT_TRUE(a->Delete(x).ok()) << "the first delete's outcome";
  gismo_object_info_t info;
  EXPECT_EQ(a->Stat(x, &info).code(), GISMO_ERR_OBJECT_NOT_FOUND);
  EXPECT_EQ(a->Delete(x).code(), GISMO_ERR_OBJECT_NOT_FOUND) << "a new delete";
  StopOwner();
  ExpectSound();
}

// The same for names: a bind-if-unbound that timed out, asked again, is
// answered with the first one's outcome (bound), not with the conflict a
// second bind would meet; so is an unbind.
TEST_F(NcOwnerDeathTest, ATimedOutNameChangeAskedAgainGetsItsOutcome) {
  auto a = Client(1);
  const gismo_id_t x = IdFrom(24);
  StartOwner();
  Put(*a, x, 100, 5);
  StopOwner();
  DieAt("nc_owner.before_commit", [&] {
    EXPECT_EQ(a->nc().BindName("latest", x, store::BindMode::kIfUnbound, nullptr).code(),
              GISMO_ERR_TIMEOUT);
  });
  StartOwner();
  EXPECT_TRUE(a->nc().BindName("latest", x, store::BindMode::kIfUnbound, nullptr).ok());
  EXPECT_EQ(a->nc().BindName("latest", x, store::BindMode::kIfUnbound, nullptr).code(),
            GISMO_ERR_CONFLICT)
      << "a new bind meets the binding";
  StopOwner();
  DieAt("nc_owner.before_commit",
        [&] { EXPECT_EQ(a->nc().UnbindName("latest", &x).code(), GISMO_ERR_TIMEOUT); });
  StartOwner();
  EXPECT_TRUE(a->nc().UnbindName("latest", &x).ok());
  store::NameBinding b;
  EXPECT_EQ(a->nc().LookupName("latest", &b).code(), GISMO_ERR_OBJECT_NOT_FOUND);
  ASSERT_TRUE(a->Release(x).ok());
  StopOwner();
  ExpectSound();
}

// The owner dies after a create's head committed (the record is made)
// and before its answer went out: the successor finds the answer it
// staged and sends it, so the create asked again gets the object the first
// one made. (Before, no owner ever answered that request again: every ask
// again timed out, and the object stayed unsealed until its creator left.)
TEST_F(NcOwnerDeathTest, ACreateCommittedButNotAnsweredIsAnsweredBySuccessor) {
  auto a = Client(1);
  const gismo_id_t x = IdFrom(25);
  DieAt("nc_owner.before_answer", [&] {
    void* data = nullptr;
    EXPECT_EQ(a->Create(x, 3000, nullptr, 0, &data).code(), GISMO_ERR_TIMEOUT);
  });
  EXPECT_EQ(owner_->stats().answers_found, 1u);
  gismo_object_info_t info;
  ASSERT_TRUE(a->Stat(x, &info).ok()) << "the create committed";
  EXPECT_EQ(info.state, GISMO_STATE_CREATED);
  StartOwner();
  void* data = nullptr;
  Status again = a->Create(x, 3000, nullptr, 0, &data);
  ASSERT_TRUE(again.ok()) << again.message();
  std::memset(data, 6, 3000);
  ASSERT_TRUE(a->Seal(x).ok());
  GetResult got;
  ASSERT_TRUE(a->TryGet(x, &got).ok() && got.found);
  EXPECT_EQ(static_cast<const uint8_t*>(got.buffer.data)[2999], 6);
  ASSERT_TRUE(a->Release(x).ok());
  ASSERT_TRUE(a->Release(x).ok());
  StopOwner();
  ExpectSound();
}

// The same for a delete whose answer was lost, and for a failed request
// (its head commits alone): each asked again gets the first one's answer.
TEST_F(NcOwnerDeathTest, ADeleteAndARefusalNotAnsweredAreAnsweredBySuccessor) {
  auto a = Client(1);
  const gismo_id_t x = IdFrom(26), missing = IdFrom(27);
  StartOwner();
  Put(*a, x, 1000, 8);
  ASSERT_TRUE(a->Release(x).ok());
  StopOwner();
  DieAt("nc_owner.before_answer", [&] { EXPECT_EQ(a->Delete(x).code(), GISMO_ERR_TIMEOUT); });
  StartOwner();
  EXPECT_TRUE(a->Delete(x).ok()) << "the first delete's outcome";
  gismo_object_info_t info;
  EXPECT_EQ(a->Stat(x, &info).code(), GISMO_ERR_OBJECT_NOT_FOUND);
  StopOwner();
  DieAt("nc_owner.before_answer", [&] { EXPECT_EQ(a->Delete(missing).code(), GISMO_ERR_TIMEOUT); });
  StartOwner();
  EXPECT_EQ(a->Delete(missing).code(), GISMO_ERR_OBJECT_NOT_FOUND) << "the refusal, answered";
  StopOwner();
  ExpectSound();
}

TEST_F(NcOwnerDeathTest, ADeleteCommittedButNotFreedIsFreedBySuccessor) {
  auto a = Client(1);
  const gismo_id_t y = IdFrom(12);
  StartOwner();
  Put(*a, y, 200000, 2);
  ASSERT_TRUE(a->Release(y).ok());
  StopOwner();
  const uint64_t free_after_put = FreePages();
  // The owner dies in the free it does before it answers: the mark is
  // committed, the client's wait for the answer times out.
  DieAt("nc_owner.free_before_commit", [&] { EXPECT_EQ(a->Delete(y).code(), GISMO_ERR_TIMEOUT); });
  gismo_object_info_t info;
  Status st = a->Stat(y, &info);
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(info.state, GISMO_STATE_DELETING) << "the mark committed, the free did not";
  EXPECT_EQ(FreePages(), free_after_put);
  EXPECT_EQ(owner_->Sweep(), 1u);
  EXPECT_EQ(a->Stat(y, &info).code(), GISMO_ERR_OBJECT_NOT_FOUND);
  EXPECT_GT(FreePages(), free_after_put);
  StartOwner();
  Put(*a, IdFrom(13), 100, 3);
  ASSERT_TRUE(a->Release(IdFrom(13)).ok());
  StopOwner();
  ExpectSound();
}

}  // namespace
}  // namespace gismo::testing
