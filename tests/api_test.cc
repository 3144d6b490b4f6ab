// The object life cycle through the C++ API (and so the C API beneath it),
// against a manager running inside the test process. Clients in other
// processes and a manager that dies: multiprocess_test.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <gismo/gismo.hpp>
#include <string>
#include <thread>
#include <vector>

#include "region/region.h"
#include "test_util.h"
#include "testing/in_process_manager.h"

namespace gismo {
namespace {

using testing::InProcessManager;
using testing::IsOk;
using testing::MustConnect;

class ApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(IsOk(mgr_.Start()));
    auto c = Client::Connect(mgr_.address());
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    client_ = std::move(*c);
  }
  Client Connect() { return MustConnect(mgr_.address()); }
  InProcessManager mgr_;
  Client client_;
};

std::vector<uint8_t> Bytes(std::string_view s) { return {s.begin(), s.end()}; }

TEST_F(ApiTest, CreateSealGetRelease) {
  ObjectId id = ObjectId::FromName("hello");
  auto meta = Bytes("meta!");
  auto buf = client_.Create(id, 5, meta);
  ASSERT_TRUE(buf.ok()) << buf.status().ToString();
  EXPECT_EQ(reinterpret_cast<uintptr_t>(buf->data()) % 64, 0u);
  std::memcpy(buf->data(), "world", 5);
  EXPECT_FALSE(*client_.Contains(id));  // not sealed yet
  ASSERT_TRUE(buf->Seal().ok());
  EXPECT_TRUE(*client_.Contains(id));

  Client reader = Connect();
  auto got = reader.Get(id, 0);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(got->data()), got->size()), "world");
  EXPECT_EQ(std::string(got->metadata().begin(), got->metadata().end()), "meta!");
  EXPECT_TRUE(reader.InRegion(got->data(), got->size()));  // zero copy
  auto info = client_.Stat(id);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->state, GISMO_STATE_SEALED);
  EXPECT_EQ(info->ref_count, 2u);  // creator + reader
  EXPECT_EQ(info->data_size, 5u);
  EXPECT_EQ(info->metadata_size, 5u);
  ASSERT_TRUE(got->Release().ok());
  ASSERT_TRUE(buf->SealAndRelease().ok());
  EXPECT_EQ(client_.Stat(id)->ref_count, 0u);
}

// The permissions of the mapping that holds address p, from /proc/self/maps
// ("r--s", "rw-s"...), or "" if none does.
std::string MappingPermissions(const void* p) {
  std::ifstream maps("/proc/self/maps");
  const auto a = reinterpret_cast<uintptr_t>(p);
  std::string line;
  while (std::getline(maps, line)) {
    uintptr_t lo = 0, hi = 0;
    char perms[5] = {};
    if (std::sscanf(line.c_str(), "%" SCNxPTR "-%" SCNxPTR " %4s", &lo, &hi, perms) == 3 &&
        a >= lo && a < hi) {
      return perms;
    }
  }
  return "";
}

TEST_F(ApiTest, GetsReadThroughAReadOnlyViewAndCreatesWriteThroughTheMapping) {
  ObjectId id = ObjectId::Random();
  auto created = client_.Create(id, 100, Bytes("md"));
  ASSERT_TRUE(created.ok());
  EXPECT_EQ(MappingPermissions(created->data()), "rw-s");
  std::memset(created->data(), 'q', 100);
  ASSERT_TRUE(created->Seal().ok());
  Client reader = Connect();
  auto got = reader.Get(id, 0);
  ASSERT_TRUE(got.ok());
  // A reader's stray write faults instead of changing the sealed object.
  EXPECT_EQ(MappingPermissions(got->data()), "r--s");
  EXPECT_EQ(MappingPermissions(got->metadata().data()), "r--s");
  EXPECT_EQ(got->data()[99], 'q');
  // The creator's own get too.
  auto own = client_.Get(id, 0);
  ASSERT_TRUE(own.ok());
  EXPECT_EQ(MappingPermissions(own->data()), "r--s");
  // Both views hold the same bytes at the same region offset.
  auto at_create = client_.RegionOffset(created->data(), 100);
  auto at_get = client_.RegionOffset(own->data(), 100);
  ASSERT_TRUE(at_create.has_value());
  EXPECT_EQ(at_create, at_get);
  EXPECT_EQ(reader.RegionOffset(got->data(), 100), at_get);
}

// Pages of [p, p + n) whose backing memory is allocated (mincore).
size_t ResidentPages(const void* p, size_t n) {
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t first = reinterpret_cast<uintptr_t>(p) / page * page;
  const size_t pages = (reinterpret_cast<uintptr_t>(p) + n - first + page - 1) / page;
  std::vector<unsigned char> resident(pages);
  if (mincore(reinterpret_cast<void*>(first), pages * page, resident.data()) != 0) return 0;
  return static_cast<size_t>(std::count_if(resident.begin(), resident.end(),
                                           [](unsigned char r) { return (r & 1) != 0; }));
}

TEST_F(ApiTest, ALargeCreateHasItsPagesBeforeItsFirstWrite) {
  // A fresh region: nothing has touched the heap, so a resident page of the
  // new object can only come from the create populating it.
  constexpr size_t kSize = 8 << 20;
  auto created = client_.Create(ObjectId::Random(), kSize);
  ASSERT_TRUE(created.ok());
  const auto page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  EXPECT_GE(ResidentPages(created->data(), kSize), kSize / page);
  // A small create stays without the system call: its pages come with its
  // first write.
  constexpr size_t kSmall = 256 << 10;
  auto small = client_.Create(ObjectId::Random(), kSmall);
  ASSERT_TRUE(small.ok());
  EXPECT_LT(ResidentPages(small->data(), kSmall), kSmall / page);
}

// Minor page faults this thread has taken so far.
long MinorFaults() {
  rusage u{};
  getrusage(RUSAGE_THREAD, &u);
  return u.ru_minflt;
}

// Sums the first byte of every page of [data, data + size). Not
// instrumented: a sanitizer's shadow memory would take page faults of its
// own (ASan: one per 8 pages read), which are not the mapping's.
__attribute__((no_sanitize("address"))) __attribute__((no_sanitize("thread"))) uint64_t
SumFirstBytePerPage(const uint8_t* data, size_t size, size_t page) {
  uint64_t sum = 0;
  for (size_t i = 0; i < size; i += page) sum += static_cast<const volatile uint8_t*>(data)[i];
  return sum;
}

TEST_F(ApiTest, ALargeGetIsReadWithoutAFaultPerPage) {
  constexpr size_t kSize = 8 << 20;
  ObjectId id = ObjectId::Random();
  {
    auto created = client_.Create(id, kSize);
    ASSERT_TRUE(created.ok());
    std::memset(created->data(), 7, kSize);
    ASSERT_TRUE(created->Seal().ok());
  }
  // A fresh reader: its read view has no page tables yet. The get populates
  // them (its own faults, if the kernel counts them, come before `before`),
  // so reading every page afterwards faults almost never; without it, even
  // with the kernel's fault-around, it is one fault per 16 pages or more.
  Client reader = Connect();
  auto got = reader.Get(id, 0);
  ASSERT_TRUE(got.ok());
  const auto page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const long before = MinorFaults();
  const uint64_t sum = SumFirstBytePerPage(got->data(), kSize, page);
  const long faults = MinorFaults() - before;
  EXPECT_EQ(sum, 7 * (kSize / page));
  EXPECT_LT(faults, static_cast<long>(kSize / page / 64)) << "faults while reading " << kSize;
}

TEST_F(ApiTest, CreateExistingFails) {
  ObjectId id = ObjectId::Random();
  auto a = client_.Create(id, 10);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(client_.Create(id, 10).status().code(), GISMO_ERR_OBJECT_EXISTS);  // unsealed
  ASSERT_TRUE(a->Seal().ok());
  EXPECT_EQ(client_.Create(id, 10).status().code(), GISMO_ERR_OBJECT_EXISTS);  // sealed
  Client other = Connect();
  EXPECT_EQ(other.Create(id, 10).status().code(), GISMO_ERR_OBJECT_EXISTS);
}

TEST_F(ApiTest, CreateFlagsAreKeptThroughSealAndDelete) {
  ObjectId id = ObjectId::Random();
  auto a = client_.Create(id, 10, {}, GISMO_CREATE_EVICTABLE);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(client_.Stat(id)->flags, uint32_t{GISMO_CREATE_EVICTABLE});
  ASSERT_TRUE(a->Seal().ok());
  EXPECT_EQ(client_.Stat(id)->flags, uint32_t{GISMO_CREATE_EVICTABLE});
  ASSERT_TRUE(client_.Delete(id).ok());  // still held by the creator: deleting
  auto info = client_.Stat(id);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->state, GISMO_STATE_DELETING);
  EXPECT_EQ(info->flags, uint32_t{GISMO_CREATE_EVICTABLE});
  ObjectId put = ObjectId::Random();
  ASSERT_TRUE(client_.Put(put, "x", GISMO_CREATE_OWNED | GISMO_CREATE_EVICTABLE).ok());
  EXPECT_EQ(client_.Stat(put)->flags, uint32_t{GISMO_CREATE_OWNED | GISMO_CREATE_EVICTABLE});
  ASSERT_TRUE(client_.Put(ObjectId::Random(), "y").ok());
  size_t flagged = 0;
  auto listed = client_.List();
  ASSERT_TRUE(listed.ok());
  for (const auto& o : *listed) flagged += o.flags != 0;
  EXPECT_EQ(flagged, 2u);

  // Unknown bits are refused and create nothing.
  ObjectId bad = ObjectId::Random();
  auto refused = client_.Create(bad, 10, {}, 1u << 7);
  EXPECT_EQ(refused.status().code(), GISMO_ERR_INVALID_ARGUMENT);
  EXPECT_NE(refused.status().message().find("unknown create flag"), std::string::npos);
  EXPECT_EQ(client_.Stat(bad).status().code(), GISMO_ERR_OBJECT_NOT_FOUND);
  EXPECT_EQ(client_.Put(bad, "z", 1u << 31).code(), GISMO_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(client_.Stat(bad).status().code(), GISMO_ERR_OBJECT_NOT_FOUND);
}

TEST_F(ApiTest, SealAndAbortRules) {
  ObjectId id = ObjectId::Random();
  EXPECT_EQ(client_.Seal(id).code(), GISMO_ERR_OBJECT_NOT_FOUND);
  EXPECT_EQ(client_.Abort(id).code(), GISMO_ERR_OBJECT_NOT_FOUND);
  auto b = client_.Create(id, 100);
  ASSERT_TRUE(b.ok());
  Client other = Connect();
  EXPECT_EQ(other.Seal(id).code(), GISMO_ERR_NOT_CREATOR);
  EXPECT_EQ(other.Abort(id).code(), GISMO_ERR_NOT_CREATOR);
  EXPECT_EQ(client_.Release(id).code(), GISMO_ERR_OBJECT_NOT_SEALED);
  EXPECT_EQ(client_.Delete(id).code(), GISMO_ERR_OBJECT_NOT_SEALED);
  ASSERT_TRUE(b->Abort().ok());
  EXPECT_FALSE(*client_.Contains(id));
  EXPECT_EQ(client_.Stat(id).status().code(), GISMO_ERR_OBJECT_NOT_FOUND);
  // After abort the id is free again.
  auto c = client_.Create(id, 100);
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c->Seal().ok());
  EXPECT_EQ(client_.Seal(id).code(), GISMO_ERR_OBJECT_ALREADY_SEALED);
  EXPECT_EQ(client_.Abort(id).code(), GISMO_ERR_OBJECT_ALREADY_SEALED);
  // A sealed MutableBuffer refuses Abort() and keeps the creator's
  // reference, which its destructor gives back: the deleted object goes.
  EXPECT_EQ(c->Abort().code(), GISMO_ERR_OBJECT_ALREADY_SEALED);
  EXPECT_TRUE(c->valid());
  ASSERT_TRUE(client_.Delete(id).ok());
  EXPECT_EQ(client_.Stat(id)->state, GISMO_STATE_DELETING);  // still held
  *c = MutableBuffer();
  EXPECT_EQ(client_.Stat(id).status().code(), GISMO_ERR_OBJECT_NOT_FOUND);
}

// A MutableBuffer whose object was sealed without its Seal() (how a
// non-coherent seal applied after its wait timed out looks to it): its
// Abort() says so and keeps the creator's reference, and its destructor
// gives that reference back (it was held until the client left).
TEST_F(ApiTest, ABufferWhoseObjectWasSealedBehindItsBackGivesItsReferenceBack) {
  const ObjectId dropped = ObjectId::Random(), aborted = ObjectId::Random();
  {
    auto b = client_.Create(dropped, 10);
    ASSERT_TRUE(b.ok());
    ASSERT_TRUE(client_.Seal(dropped).ok());
  }
  EXPECT_EQ(client_.Stat(dropped)->ref_count, 0u);
  auto b = client_.Create(aborted, 10);
  ASSERT_TRUE(b.ok());
  ASSERT_TRUE(client_.Seal(aborted).ok());
  EXPECT_EQ(b->Abort().code(), GISMO_ERR_OBJECT_ALREADY_SEALED);
  EXPECT_TRUE(b->valid());
  EXPECT_EQ(client_.Stat(aborted)->ref_count, 1u);
  *b = MutableBuffer();
  EXPECT_EQ(client_.Stat(aborted)->ref_count, 0u);
}

// A child of fork() copies its parent's generator: without a new seed, the
// parent and every child make the same "random" ids.
TEST(ObjectIdTest, RandomIdsDifferInAChildAfterFork) {
  (void)ObjectId::Random();  // the parent's generator is seeded
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const ObjectId id = ObjectId::Random();
    _exit(write(p[1], id.data(), ObjectId::kSize) == ObjectId::kSize ? 0 : 1);
  }
  const ObjectId mine = ObjectId::Random();
  uint8_t theirs[ObjectId::kSize];
  EXPECT_EQ(read(p[0], theirs, sizeof theirs), static_cast<ssize_t>(sizeof theirs));
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  close(p[0]);
  close(p[1]);
  EXPECT_NE(std::memcmp(mine.data(), theirs, sizeof theirs), 0);
}

TEST_F(ApiTest, GetMissingReturnsEmptyBuffers) {
  ObjectId present = ObjectId::Random(), missing = ObjectId::Random();
  ASSERT_TRUE(client_.Put(present, "abc").ok());
  std::vector<ObjectId> ids = {present, missing};
  auto start = std::chrono::steady_clock::now();
  auto bufs = client_.Get(ids, 50);
  auto waited = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(bufs.ok());
  EXPECT_TRUE((*bufs)[0].valid());
  EXPECT_FALSE((*bufs)[1].valid());
  EXPECT_GE(waited, std::chrono::milliseconds(50));
  auto none = client_.Get(ids, 0);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE((*none)[1].valid());
}

TEST_F(ApiTest, BlockingGetTimesOutAndThenSucceeds) {
  ObjectId id = ObjectId::Random();
  std::thread sealer([&] {
    Client c = Connect();
    auto b = c.Create(id, 8);
    ASSERT_TRUE(b.ok());
    std::memcpy(b->data(), "12345678", 8);
    ASSERT_TRUE(b->SealAndRelease().ok());
  });
  auto got = client_.Get(id, 10000);
  sealer.join();
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(std::memcmp(got->data(), "12345678", 8), 0);
}

// Timeouts that mean "forever" in effect (INT64_MAX, 10^13 ms) saturate: the
// get waits for the seal (timeout_ms * 10^6 overflowed, and it returned at
// once with no data).
TEST_F(ApiTest, EndlessTimeoutsWait) {
  for (int64_t forever : {INT64_MAX, int64_t{10'000'000'000'000}, INT64_MAX / 1000}) {
    ObjectId id = ObjectId::Random();
    std::atomic<bool> sealed{false};
    std::thread sealer([&] {
      Client c = Connect();
      // Let the get wait first (a bounded pause, not an assertion on time).
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      ASSERT_TRUE(c.Put(id, "late").ok());
      sealed = true;
    });
    gismo_buffer_t buf{};
    EXPECT_EQ(gismo_get(client_.c_client(), &id.c_id(), 1, forever, &buf), GISMO_OK)
        << gismo_last_error();
    sealer.join();
    ASSERT_NE(buf.data, nullptr) << forever << ": returned without the object";
    EXPECT_TRUE(sealed.load());
    EXPECT_EQ(std::string(static_cast<const char*>(buf.data), buf.data_size), "late");
    EXPECT_EQ(gismo_release(client_.c_client(), &id.c_id()), GISMO_OK);
  }
  // And a subscriber waiting "forever" gets the next event.
  auto sub = client_.Subscribe();
  ASSERT_TRUE(sub.ok());
  gismo_notification_t n{};
  while (gismo_next_notification(client_.c_client(), &n, 0) == GISMO_OK) {
  }
  ObjectId id = ObjectId::Random();
  std::thread producer([&] {
    Client c = Connect();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ASSERT_TRUE(c.Put(id, "event").ok());
  });
  EXPECT_EQ(gismo_next_notification(client_.c_client(), &n, INT64_MAX), GISMO_OK)
      << gismo_last_error();
  producer.join();
  EXPECT_EQ(n.event, GISMO_EVENT_SEALED);
  EXPECT_TRUE(ObjectId(n.id) == id);
}

// A forked child must not use its parent's client: every call there fails
// with a clear status and leaves the parent's session alone (it hung a lock
// or left held_count at 2^64-1).
TEST_F(ApiTest, ForkedChildIsRefusedAndTheParentGoesOn) {
  ObjectId held = ObjectId::FromName("held-across-fork");
  ASSERT_TRUE(client_.Put(held, "parent").ok());
  auto got = client_.Get(held, 0);
  ASSERT_TRUE(got.ok());
  const int status = testing::RunInChild([&] {
    gismo_client_t* c = client_.c_client();
    bool contains = false;
    if (gismo_contains(c, &held.c_id(), &contains) != GISMO_ERR_INVALID_ARGUMENT) return 10;
    if (std::string(gismo_last_error()).find("forked child") == std::string::npos) return 11;
    if (gismo_release(c, &held.c_id()) != GISMO_ERR_INVALID_ARGUMENT) return 12;
    ObjectId mine = ObjectId::FromName("child");
    void* data = nullptr;
    if (gismo_create(c, &mine.c_id(), 4, nullptr, 0, &data) != GISMO_ERR_INVALID_ARGUMENT) {
      return 13;
    }
    if (gismo_disconnect(c) != GISMO_ERR_INVALID_ARGUMENT) return 14;
    return 0;
  });
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "10/11: contains, 12: release, 13: create, 14: disconnect";
  // The parent's session is intact: its reference, its calls.
  auto info = client_.Stat(held);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->ref_count, 1u);
  ASSERT_TRUE(got->Release().ok());
  EXPECT_EQ(client_.Stat(held)->ref_count, 0u);
  EXPECT_TRUE(client_.Put(ObjectId::FromName("after-fork"), "ok").ok());
}

// A blocking get of more missing ids than a wait frame may name is refused
// up front; the caller keeps its session (the manager used to drop the
// connection for the oversized frame and recover the caller).
TEST_F(ApiTest, HugeBlockingGetIsRefusedAndTheSessionStays) {
  ObjectId unsealed = ObjectId::FromName("kept-unsealed");
  auto buf = client_.Create(unsealed, 8);
  ASSERT_TRUE(buf.ok());
  ObjectId present = ObjectId::FromName("present");
  ASSERT_TRUE(client_.Put(present, "here").ok());
  std::vector<gismo_id_t> ids(900'000);
  for (size_t i = 0; i < ids.size(); ++i)
    ids[i] = ObjectId::FromName("missing" + std::to_string(i)).c_id();
  ids[17] = present.c_id();
  std::vector<gismo_buffer_t> out(ids.size());
  EXPECT_EQ(gismo_get(client_.c_client(), ids.data(), ids.size(), 10, out.data()), GISMO_ERR_LIMIT);
  EXPECT_NE(std::string(gismo_last_error()).find("smaller groups"), std::string::npos)
      << gismo_last_error();
  EXPECT_EQ(out[17].data, nullptr);  // nothing taken
  EXPECT_EQ(client_.Stat(present)->ref_count, 0u);
  // Without waiting, any number is fine.
  EXPECT_EQ(gismo_get(client_.c_client(), ids.data(), ids.size(), 0, out.data()), GISMO_OK);
  ASSERT_NE(out[17].data, nullptr);
  EXPECT_EQ(gismo_release(client_.c_client(), &present.c_id()), GISMO_OK);
  // The session is the same: its unsealed object is still its own.
  ASSERT_TRUE(buf->SealAndRelease().ok());
  EXPECT_TRUE(*client_.Contains(unsealed));
}

// An abort wakes the getters blocked on that id (one of them may want to
// create it now, as a loader taking over): the manager sends them a wake-up,
// they re-check and go on waiting for a seal.
TEST_F(ApiTest, AbortWakesTheGettersOfThatId) {
  auto region = region::Region::Open(mgr_.region_path());
  ASSERT_TRUE(region.ok());
  const ObjectId x = ObjectId::FromName("aborted-then-sealed");
  Client getter = Connect();
  Status got(GISMO_ERR_INTERNAL, "not run");
  std::thread waiting([&] {
    auto b = getter.Get(x, 60000);
    got = b.ok() ? Status() : b.status();
  });
  ASSERT_TRUE(testing::WaitForGetWaiter(**region, x)) << "the get never registered its wait";
  const uint64_t wakeups = mgr_.stats().wakeups_sent.load(std::memory_order_relaxed);
  auto created = client_.Create(x, 8);
  ASSERT_TRUE(created.ok());
  ASSERT_TRUE(created->Abort().ok());
  for (int i = 0; mgr_.stats().wakeups_sent.load(std::memory_order_relaxed) == wakeups; ++i) {
    ASSERT_LT(i, 20000) << "the abort woke nobody";
    usleep(1000);
  }
  // Still waiting, and served by the next seal.
  ASSERT_TRUE(client_.Put(x, "sealed").ok());
  waiting.join();
  EXPECT_TRUE(got.ok()) << got.ToString();
}

TEST_F(ApiTest, GetOwnUnsealedObjectDoesNotDeadlock) {
  ObjectId id = ObjectId::Random();
  auto b = client_.Create(id, 4);
  ASSERT_TRUE(b.ok());
  auto got = client_.Get(id, 20);  // not sealed: times out, nobody blocked
  EXPECT_EQ(got.status().code(), GISMO_ERR_TIMEOUT);
  // Another thread of the same client seals it while we wait.
  std::thread t([&] { ASSERT_TRUE(b->Seal().ok()); });
  auto got2 = client_.Get(id, 10000);
  t.join();
  EXPECT_TRUE(got2.ok()) << got2.status().ToString();
}

TEST_F(ApiTest, DeleteIsDeferredUntilLastRelease) {
  ObjectId id = ObjectId::Random();
  ASSERT_TRUE(client_.Put(id, std::string(100000, 'z')).ok());
  auto used_before = client_.Usage()->used_bytes;
  Client reader = Connect();
  auto held = reader.Get(id, 0);
  ASSERT_TRUE(held.ok());
  ASSERT_TRUE(client_.Delete(id).ok());
  EXPECT_FALSE(*client_.Contains(id));
  EXPECT_FALSE(reader.Get(id, 0).ok());  // cannot be got any more
  EXPECT_EQ(client_.Delete(id).code(), GISMO_ERR_OBJECT_NOT_FOUND);
  EXPECT_EQ(client_.Create(id, 1).status().code(), GISMO_ERR_OBJECT_EXISTS);  // still held
  EXPECT_EQ(client_.Stat(id)->state, GISMO_STATE_DELETING);
  // The reader can still read it.
  EXPECT_EQ(held->data()[99999], 'z');
  EXPECT_EQ(client_.Usage()->used_bytes, used_before);
  ASSERT_TRUE(held->Release().ok());
  EXPECT_EQ(client_.Stat(id).status().code(), GISMO_ERR_OBJECT_NOT_FOUND);
  EXPECT_LT(client_.Usage()->used_bytes, used_before);
  EXPECT_EQ(client_.Delete(ObjectId::Random()).code(), GISMO_ERR_OBJECT_NOT_FOUND);
}

TEST_F(ApiTest, ReleaseErrors) {
  ObjectId id = ObjectId::Random();
  EXPECT_EQ(client_.Release(id).code(), GISMO_ERR_OBJECT_NOT_FOUND);
  ASSERT_TRUE(client_.Put(id, "x").ok());
  EXPECT_EQ(client_.Release(id).code(), GISMO_ERR_NOT_HELD);
  auto a = client_.Get(id);
  auto b = client_.Get(id);  // two references
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(client_.Stat(id)->ref_count, 2u);
  ASSERT_TRUE(a->Release().ok());
  ASSERT_TRUE(b->Release().ok());
  EXPECT_EQ(client_.Release(id).code(), GISMO_ERR_NOT_HELD);
}

TEST_F(ApiTest, FullStoreReportsOutOfMemoryAndKeepsWorking) {
  auto usage = client_.Usage();
  ASSERT_TRUE(usage.ok());
  // Bigger than the whole heap: can never fit.
  auto huge = client_.Create(ObjectId::Random(), usage->capacity_bytes + 1);
  EXPECT_EQ(huge.status().code(), GISMO_ERR_OUT_OF_MEMORY);
  EXPECT_NE(huge.status().message().find("never fit"), std::string::npos);
  // Fill it with 8 MiB objects.
  std::vector<ObjectId> ids;
  for (;;) {
    ObjectId id = ObjectId::Random();
    auto b = client_.Create(id, 8 << 20);
    if (!b.ok()) {
      EXPECT_EQ(b.status().code(), GISMO_ERR_OUT_OF_MEMORY) << b.status().ToString();
      break;
    }
    ASSERT_TRUE(b->SealAndRelease().ok());
    ids.push_back(id);
    ASSERT_LT(ids.size(), 1000u);
  }
  EXPECT_GT(ids.size(), 10u);
  // Small objects still fit where slabs have room; then free some and retry.
  for (size_t i = 0; i < ids.size(); i += 2) ASSERT_TRUE(client_.Delete(ids[i]).ok());
  auto b = client_.Create(ObjectId::Random(), 8 << 20);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  ASSERT_TRUE(b->Seal().ok());
}

TEST_F(ApiTest, ListAndUsage) {
  auto before = client_.Usage();
  ASSERT_TRUE(before.ok());
  EXPECT_EQ(before->object_count, 0u);
  EXPECT_EQ(before->client_count, 1u);
  ObjectId a = ObjectId::FromName("a"), b = ObjectId::FromName("b"), c = ObjectId::FromName("c");
  ASSERT_TRUE(client_.Put(a, "1").ok());
  ASSERT_TRUE(client_.Put(b, std::string(50000, 'b')).ok());
  auto unsealed = client_.Create(c, 3);
  ASSERT_TRUE(unsealed.ok());
  auto list = client_.List();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 3u);
  int sealed = 0, created = 0;
  for (auto& info : *list) {
    if (info.state == GISMO_STATE_SEALED) ++sealed;
    if (info.state == GISMO_STATE_CREATED) ++created;
  }
  EXPECT_EQ(sealed, 2);
  EXPECT_EQ(created, 1);
  auto after = client_.Usage();
  EXPECT_EQ(after->object_count, 3u);
  EXPECT_EQ(after->sealed_count, 2u);
  EXPECT_EQ(after->unsealed_count, 1u);
  EXPECT_GT(after->used_bytes, before->used_bytes);
  EXPECT_EQ(after->used_bytes + after->free_bytes, after->capacity_bytes);
  // A too-small array gets the count.
  size_t count = 0;
  gismo_object_info_t one;
  ASSERT_EQ(gismo_list(client_.c_client(), &one, 1, &count), GISMO_OK);
  EXPECT_EQ(count, 3u);
}

TEST_F(ApiTest, DisconnectDropsReferencesAndAbortsUnsealed) {
  ObjectId sealed = ObjectId::Random(), unsealed = ObjectId::Random();
  ASSERT_TRUE(client_.Put(sealed, "data").ok());
  {
    Client c = Connect();
    auto held = c.Get(sealed);
    ASSERT_TRUE(held.ok());
    held->Detach();  // never released by hand
    auto b = c.Create(unsealed, 10);
    ASSERT_TRUE(b.ok());
    b->Detach();
    EXPECT_EQ(client_.Stat(sealed)->ref_count, 1u);
    ASSERT_TRUE(c.Disconnect().ok());
  }
  // Disconnect is synchronous: cleaned up already.
  EXPECT_EQ(client_.Stat(sealed)->ref_count, 0u);
  EXPECT_EQ(client_.Stat(unsealed).status().code(), GISMO_ERR_OBJECT_NOT_FOUND);
}

// Clients of the manager's own process that come and go in quick succession
// reuse descriptor numbers: a readiness the reactor reports for a closed one
// can reach the pidfd that now has its number. Only the kernel's word that
// the process exited fences a client; none of these is taken for dead (with
// the reactor's word alone, one in a few hundred runs of this loop under load
// saw a live client recovered and its next call fail).
TEST_F(ApiTest, ClientsThatComeAndGoAreNeverTakenForDead) {
  constexpr int kThreads = 4, kRounds = 100;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kRounds; ++i) {
        Client c = Connect();
        if (!c.connected()) return;
        EXPECT_TRUE(c.Contains(ObjectId::Random()).ok());
        EXPECT_TRUE(IsOk(c.Disconnect()));
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(mgr_.stats().clients_fenced.load(std::memory_order_relaxed), 0u);
  EXPECT_EQ(mgr_.stats().clients_recovered.load(std::memory_order_relaxed), 0u);
  EXPECT_EQ(mgr_.stats().clients_left.load(std::memory_order_relaxed),
            uint64_t{kThreads * kRounds});
}

// GISMO_CREATE_OWNED: the owner's clean departure deletes its owned objects
// (sealed: like gismo_delete, deferred while others hold them; unsealed:
// aborted) and nothing else; each delete is notified.
TEST_F(ApiTest, OwnedObjectsAreDeletedWhenTheirOwnerDisconnects) {
  ObjectId held = ObjectId::Random(), free_now = ObjectId::Random(), kept = ObjectId::Random(),
           owner_holds = ObjectId::Random(), unsealed = ObjectId::Random();
  const uint64_t base = client_.Usage()->used_bytes;
  auto sub = client_.Subscribe();
  ASSERT_TRUE(sub.ok()) << sub.status().ToString();
  Client reader = Connect();
  {
    Client owner = Connect();
    ASSERT_TRUE(owner.Put(held, std::string(100000, 'h'), GISMO_CREATE_OWNED).ok());
    ASSERT_TRUE(owner.Put(free_now, std::string(100000, 'f'), GISMO_CREATE_OWNED).ok());
    ASSERT_TRUE(owner.Put(kept, "not owned").ok());
    ASSERT_TRUE(owner.Put(owner_holds, "o", GISMO_CREATE_OWNED).ok());
    auto mine = owner.Get(owner_holds, 0);
    ASSERT_TRUE(mine.ok());
    mine->Detach();  // never released by hand
    auto b = owner.Create(unsealed, 10, {}, GISMO_CREATE_OWNED);
    ASSERT_TRUE(b.ok());
    b->Detach();
    auto r = reader.Get(held, 0);
    ASSERT_TRUE(r.ok());
    r->Detach();
    EXPECT_EQ(client_.Stat(free_now)->ref_count, 0u);  // owned, not referenced
    ASSERT_TRUE(owner.Disconnect().ok());
  }
  // Disconnect is synchronous: done already.
  EXPECT_EQ(client_.Stat(free_now).status().code(), GISMO_ERR_OBJECT_NOT_FOUND);
  EXPECT_EQ(client_.Stat(owner_holds).status().code(), GISMO_ERR_OBJECT_NOT_FOUND);
  EXPECT_EQ(client_.Stat(unsealed).status().code(), GISMO_ERR_OBJECT_NOT_FOUND);
  EXPECT_TRUE(*client_.Contains(kept));
  auto h = client_.Stat(held);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->state, GISMO_STATE_DELETING);  // the reader still reads it
  ASSERT_TRUE(reader.Release(held).ok());
  EXPECT_EQ(client_.Stat(held).status().code(), GISMO_ERR_OBJECT_NOT_FOUND);
  ASSERT_TRUE(client_.Delete(kept).ok());
  EXPECT_EQ(client_.Usage()->used_bytes, base);
  // Seals of 4 objects, then deletes of the 3 sealed owned ones and `kept`.
  std::vector<ObjectId> deleted;
  while (deleted.size() < 4) {
    auto n = sub->Next(10000);
    ASSERT_TRUE(n.ok()) << n.status().ToString();
    if (n->event == GISMO_EVENT_DELETED) deleted.push_back(n->id);
  }
  for (const ObjectId& id : {held, free_now, owner_holds, kept}) {
    EXPECT_NE(std::find(deleted.begin(), deleted.end(), id), deleted.end()) << id.Hex();
  }
}

// The owner's own get and release keep its ownership; a release past its
// references is refused; its own delete ends the ownership.
TEST_F(ApiTest, OwnerGetReleaseAndDelete) {
  ObjectId a = ObjectId::Random(), b = ObjectId::Random();
  Client owner = Connect();
  ASSERT_TRUE(owner.Put(a, "a", GISMO_CREATE_OWNED).ok());
  ASSERT_TRUE(owner.Put(b, "b", GISMO_CREATE_OWNED).ok());
  EXPECT_EQ(owner.Release(a).code(), GISMO_ERR_NOT_HELD);
  {
    auto got = owner.Get(a, 0);
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(client_.Stat(a)->ref_count, 1u);
  }
  EXPECT_EQ(client_.Stat(a)->ref_count, 0u);
  EXPECT_EQ(owner.Release(a).code(), GISMO_ERR_NOT_HELD);
  ASSERT_TRUE(owner.Delete(b).ok());
  EXPECT_EQ(client_.Stat(b).status().code(), GISMO_ERR_OBJECT_NOT_FOUND);
  ASSERT_TRUE(client_.Put(b, "someone else's").ok());  // same id, same record
  ASSERT_TRUE(owner.Disconnect().ok());
  EXPECT_EQ(client_.Stat(a).status().code(), GISMO_ERR_OBJECT_NOT_FOUND);
  EXPECT_TRUE(*client_.Contains(b));
}

// Another client deletes an owned object and the record is reused for an
// object of its own: the owner's departure must not delete that one.
TEST_F(ApiTest, OwnedObjectDeletedByAnotherLeavesItsSuccessorAlone) {
  ObjectId id = ObjectId::Random();
  Client owner = Connect();
  ASSERT_TRUE(owner.Put(id, "first", GISMO_CREATE_OWNED).ok());
  ASSERT_TRUE(client_.Delete(id).ok());
  ASSERT_TRUE(client_.Put(id, "second", GISMO_CREATE_OWNED).ok());  // the freed record
  ASSERT_TRUE(owner.Disconnect().ok());
  auto got = client_.Get(id, 0);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(got->data()), got->size()), "second");
}

// Slots are reused: the next client in the owner's slot loses nothing it did
// not own, and its own owned objects go with it.
TEST_F(ApiTest, NextClientInTheSlotKeepsWhatItDidNotOwn) {
  ObjectId old_owned = ObjectId::Random(), plain = ObjectId::Random(),
           new_owned = ObjectId::Random();
  Client reader = Connect();
  uint32_t slot = 0;
  {
    Client owner = Connect();
    ASSERT_TRUE(owner.Put(old_owned, "old", GISMO_CREATE_OWNED).ok());
    slot = client_.Stat(old_owned)->creator_client;
    ASSERT_TRUE(reader.Get(old_owned, 0).ok());  // Buffer released at once
    auto held = reader.Get(old_owned, 0);
    ASSERT_TRUE(held.ok());
    held->Detach();
    ASSERT_TRUE(owner.Disconnect().ok());
  }
  EXPECT_EQ(client_.Stat(old_owned)->state, GISMO_STATE_DELETING);
  Client next = Connect();
  ASSERT_TRUE(next.Put(plain, "plain").ok());
  ASSERT_TRUE(next.Put(new_owned, "new", GISMO_CREATE_OWNED).ok());
  ASSERT_EQ(client_.Stat(plain)->creator_client, slot) << "the slot was not reused";
  ASSERT_TRUE(next.Disconnect().ok());
  EXPECT_TRUE(*client_.Contains(plain));
  EXPECT_EQ(client_.Stat(new_owned).status().code(), GISMO_ERR_OBJECT_NOT_FOUND);
  EXPECT_EQ(client_.Stat(old_owned)->state, GISMO_STATE_DELETING);
  ASSERT_TRUE(reader.Release(old_owned).ok());
  EXPECT_EQ(client_.Stat(old_owned).status().code(), GISMO_ERR_OBJECT_NOT_FOUND);
}

// Owned entries of objects others deleted do not fill the owner's table: a
// create near the limit drops them first.
TEST(OwnedTableTest, EntriesOfObjectsOthersDeletedAreDropped) {
  manager::ManagerOptions o = testing::InProcessManagerOptions();
  o.format.held_capacity = 16;  // a client may hold 12 objects
  InProcessManager mgr(o);
  ASSERT_TRUE(IsOk(mgr.Start()));
  Client owner = MustConnect(mgr.address());
  Client other = MustConnect(mgr.address());
  for (int round = 0; round < 3; ++round) {
    std::vector<ObjectId> ids;
    for (int i = 0; i < 12; ++i) {
      ids.push_back(ObjectId::Random());
      Status s = owner.Put(ids.back(), "x", GISMO_CREATE_OWNED);
      ASSERT_TRUE(s.ok()) << "round " << round << " object " << i << ": " << s.ToString();
    }
    for (const ObjectId& id : ids) ASSERT_TRUE(other.Delete(id).ok());
  }
  // A table really full of live owned objects is still refused.
  for (int i = 0; i < 12; ++i)
    ASSERT_TRUE(owner.Put(ObjectId::Random(), "y", GISMO_CREATE_OWNED).ok());
  EXPECT_EQ(owner.Put(ObjectId::Random(), "z", GISMO_CREATE_OWNED).code(), GISMO_ERR_LIMIT);
}

TEST_F(ApiTest, BadArgumentsAreReported) {
  gismo_client_t* c = client_.c_client();
  gismo_id_t id{};
  void* data = nullptr;
  EXPECT_EQ(gismo_create(nullptr, &id, 1, nullptr, 0, &data), GISMO_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(gismo_create(c, nullptr, 1, nullptr, 0, &data), GISMO_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(gismo_create(c, &id, 1, nullptr, 5, &data), GISMO_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(gismo_create(c, &id, 1, nullptr, 0, nullptr), GISMO_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(gismo_last_error()), "");
  EXPECT_EQ(gismo_create(c, &id, size_t{1} << 41, nullptr, 0, &data), GISMO_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(gismo_get(c, nullptr, 1, 0, nullptr), GISMO_ERR_INVALID_ARGUMENT);
  gismo_buffer_t buf;
  EXPECT_EQ(gismo_get(c, &id, 1, -5, &buf), GISMO_ERR_INVALID_ARGUMENT);
  // Every timeout below -1 is refused, not taken as "forever".
  EXPECT_EQ(gismo_get_or_create(c, &id, 1, nullptr, 0, 0, -2, &buf, &data),
            GISMO_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(data, nullptr);
  EXPECT_NE(std::string(gismo_last_error()).find("timeout_ms"), std::string::npos);
  EXPECT_EQ(gismo_get_or_create(c, &id, 1, nullptr, 0, 0, INT64_MIN, &buf, &data),
            GISMO_ERR_INVALID_ARGUMENT);
  // A get-or-create's create arguments are checked whether or not it
  // creates: unknown flags or a size past the limit fail on a sealed
  // object too.
  const ObjectId there = ObjectId::FromName("there");
  ASSERT_TRUE(client_.Put(there, "x").ok());
  EXPECT_EQ(gismo_get_or_create(c, &there.c_id(), 1, nullptr, 0, 0x80000000u, 0, &buf, &data),
            GISMO_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(gismo_get_or_create(c, &there.c_id(), size_t{1} << 41, nullptr, 0, 0, 0, &buf, &data),
            GISMO_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(data, nullptr);
  EXPECT_EQ(client_.Stat(there)->ref_count, 0u);  // nothing held
  bool created = true;
  EXPECT_EQ(gismo_contains(c, &id, &created), GISMO_OK);
  EXPECT_FALSE(created);
  EXPECT_EQ(gismo_contains(c, &id, nullptr), GISMO_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(gismo_seal(c, nullptr), GISMO_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(gismo_get(c, nullptr, 0, 0, nullptr), GISMO_OK);  // nothing asked
  // Bad addresses.
  gismo_client_t* other = nullptr;
  EXPECT_EQ(gismo_connect("bogus:thing", &other), GISMO_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(gismo_connect("tcp:localhost", &other), GISMO_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(gismo_connect("unix:/nonexistent/gismo.sock", &other), GISMO_ERR_CONNECTION);
  EXPECT_NE(std::string(gismo_last_error()).find("gismo-manager"), std::string::npos);
  EXPECT_EQ(other, nullptr);
  EXPECT_EQ(gismo_connect(nullptr, nullptr), GISMO_ERR_INVALID_ARGUMENT);
  // Ids.
  EXPECT_FALSE(ObjectId::FromHex("zz").ok());
  EXPECT_FALSE(ObjectId::FromHex(std::string(40, 'g')).ok());
  auto round = ObjectId::FromHex(ObjectId::FromName("x").Hex());
  ASSERT_TRUE(round.ok());
  EXPECT_EQ(*round, ObjectId::FromName("x"));
}

TEST_F(ApiTest, ClosedClientIsReported) {
  gismo_client_t* c = nullptr;
  ASSERT_EQ(gismo_connect(mgr_.address().c_str(), &c), GISMO_OK);
  ASSERT_EQ(gismo_disconnect(c), GISMO_OK);
  gismo_id_t id{};
  bool b;
  EXPECT_EQ(gismo_contains(c, &id, &b), GISMO_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(gismo_last_error()).find("disconnected"), std::string::npos);
  EXPECT_EQ(gismo_disconnect(c), GISMO_ERR_INVALID_ARGUMENT);
}

TEST_F(ApiTest, ManyThreadsShareOneClient) {
  constexpr int kThreads = 4, kOps = 300;
  std::vector<std::thread> ts;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < kOps; ++i) {
        ObjectId id = ObjectId::FromName("t" + std::to_string(t) + "-" + std::to_string(i));
        if (!client_.Put(id, std::string(64 + i, 'q')).ok()) ++failures;
        auto b = client_.Get(id, 0);
        if (!b.ok() || b->size() != 64u + i) ++failures;
        if (b.ok() && !b->Release().ok()) ++failures;
        if (!client_.Delete(id).ok()) ++failures;
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(client_.Usage()->object_count, 0u);
}

}  // namespace
}  // namespace gismo
