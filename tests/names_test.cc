// Names bound to objects (store/names.h) through the C++ API, against a
// manager in the test process: bind, compare-and-swap, unbind, lookup, list,
// the errors for bad names and a full table, and that names outlive their
// client and the manager. A client killed inside a bind or an unbind is
// covered by the crash point test (bind.*, unbind.*).
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <gismo/gismo.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "region/region.h"
#include "test_util.h"
#include "testing/in_process_manager.h"
#include "testing/manager_process.h"

namespace gismo {
namespace {

using testing::InProcessManager;
using testing::IsOk;
using testing::MustConnect;

ObjectId Put(Client& c, const std::string& name, const std::string& data = "x") {
  const ObjectId id = ObjectId::FromName(name);
  auto b = c.Create(id, data.size());
  EXPECT_TRUE(b.ok()) << b.status().ToString();
  if (!b.ok()) return id;
  std::memcpy(b->data(), data.data(), data.size());
  EXPECT_TRUE(IsOk(b->SealAndRelease()));
  return id;
}

class NamesTest : public ::testing::Test {
 protected:
  void SetUp() override { Start(testing::InProcessManagerOptions()); }
  void Start(manager::ManagerOptions o) {
    mgr_ = std::make_unique<InProcessManager>(std::move(o));
    ASSERT_TRUE(IsOk(mgr_->Start()));
    client_ = MustConnect(mgr_->address());
  }
  std::unique_ptr<InProcessManager> mgr_;
  Client client_;
};

TEST_F(NamesTest, BindLookupRebindUnbind) {
  const ObjectId a = Put(client_, "a"), b = Put(client_, "b");
  EXPECT_EQ(client_.LookupName("ckpt").status().code(), GISMO_ERR_OBJECT_NOT_FOUND);
  ASSERT_TRUE(IsOk(client_.BindName("ckpt", a)));
  auto got = client_.LookupName("ckpt");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(ObjectId(got->id), a);
  EXPECT_EQ(got->version, 1u);
  EXPECT_STREQ(got->name, "ckpt");
  EXPECT_EQ(got->name_size, 4u);
  EXPECT_GT(got->bind_time_ns, 0u);
  ASSERT_TRUE(IsOk(client_.BindName("ckpt", b)));
  got = client_.LookupName("ckpt");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(ObjectId(got->id), b);
  EXPECT_EQ(got->version, 2u);
  ASSERT_TRUE(IsOk(client_.UnbindName("ckpt")));
  EXPECT_EQ(client_.LookupName("ckpt").status().code(), GISMO_ERR_OBJECT_NOT_FOUND);
  EXPECT_EQ(client_.UnbindName("ckpt").code(), GISMO_ERR_OBJECT_NOT_FOUND);
  // Unbinding leaves the object alone.
  EXPECT_TRUE(*client_.Contains(b));
}

TEST_F(NamesTest, CompareAndSwap) {
  const ObjectId a = Put(client_, "a"), b = Put(client_, "b"), c = Put(client_, "c");
  // Bind only if unbound.
  ASSERT_TRUE(IsOk(client_.BindNameIfUnbound("n", a)));
  Status s = client_.BindNameIfUnbound("n", b);
  EXPECT_EQ(s.code(), GISMO_ERR_CONFLICT) << s.ToString();
  // Swap from the binding it has, not from another.
  s = client_.SwapName("n", b, c);
  EXPECT_EQ(s.code(), GISMO_ERR_CONFLICT) << s.ToString();
  EXPECT_EQ(ObjectId(client_.LookupName("n")->id), a);
  ASSERT_TRUE(IsOk(client_.SwapName("n", a, b)));
  EXPECT_EQ(ObjectId(client_.LookupName("n")->id), b);
  // A swap of an unbound name conflicts.
  EXPECT_EQ(client_.SwapName("other", a, b).code(), GISMO_ERR_CONFLICT);
  // Unbind only from the expected binding.
  EXPECT_EQ(client_.UnbindName("n", &a).code(), GISMO_ERR_CONFLICT);
  EXPECT_TRUE(IsOk(client_.UnbindName("n", &b)));
}

// Threads race to advance one name by compare-and-swap: every advance is
// won by exactly one of them, so the wins add up to the advances.
TEST_F(NamesTest, ConcurrentSwapsEachWinOnce) {
  constexpr int kThreads = 4, kSteps = 200;
  std::vector<ObjectId> ids;
  for (int i = 0; i <= kSteps; ++i) ids.push_back(Put(client_, "v" + std::to_string(i)));
  ASSERT_TRUE(IsOk(client_.BindName("counter", ids[0])));
  std::atomic<int> wins{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      Client c = MustConnect(mgr_->address());
      for (;;) {
        auto cur = c.LookupName("counter");
        if (!cur.ok()) return;
        int at = 0;
        while (at < kSteps && !(ids[at] == ObjectId(cur->id))) ++at;
        if (at >= kSteps) return;
        Status s = c.SwapName("counter", ids[at], ids[at + 1]);
        if (s.ok()) {
          wins.fetch_add(1, std::memory_order_relaxed);
        } else if (s.code() != GISMO_ERR_CONFLICT) {
          ADD_FAILURE() << s.ToString();
          return;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wins.load(), kSteps);
  auto last = client_.LookupName("counter");
  ASSERT_TRUE(last.ok());
  EXPECT_EQ(ObjectId(last->id), ids[kSteps]);
  EXPECT_EQ(last->version, uint64_t{kSteps} + 1);
}

TEST_F(NamesTest, BadNamesAndObjects) {
  const ObjectId a = Put(client_, "a");
  EXPECT_EQ(client_.BindName("", a).code(), GISMO_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(client_.BindName(std::string(GISMO_NAME_MAX + 1, 'n'), a).code(),
            GISMO_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(client_.BindName(std::string("a\0b", 3), a).code(), GISMO_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(client_.LookupName("").status().code(), GISMO_ERR_INVALID_ARGUMENT);
  const std::string longest(GISMO_NAME_MAX, 'n');
  ASSERT_TRUE(IsOk(client_.BindName(longest, a)));
  auto got = client_.LookupName(longest);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(std::string(got->name, got->name_size), longest);
  // Bytes beyond ASCII are kept as they are.
  const std::string utf8 = "\xc3\xa9t\xc3\xa9/\xe2\x82\xac";
  ASSERT_TRUE(IsOk(client_.BindName(utf8, a)));
  EXPECT_EQ(std::string(client_.LookupName(utf8)->name), utf8);
  // Only a sealed object may be named.
  EXPECT_EQ(client_.BindName("x", ObjectId::FromName("missing")).code(),
            GISMO_ERR_OBJECT_NOT_FOUND);
  const ObjectId u = ObjectId::FromName("unsealed");
  auto buf = client_.Create(u, 10);
  ASSERT_TRUE(buf.ok());
  EXPECT_EQ(client_.BindName("x", u).code(), GISMO_ERR_OBJECT_NOT_SEALED);
  EXPECT_EQ(client_.LookupName("x").status().code(), GISMO_ERR_OBJECT_NOT_FOUND);
  // The C API refuses NULLs.
  EXPECT_EQ(gismo_bind_name(client_.c_client(), nullptr, &a.c_id()), GISMO_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(gismo_lookup_name(client_.c_client(), "n", nullptr), GISMO_ERR_INVALID_ARGUMENT);
}

// A name is not a reference: the object may be deleted under it, and the
// lookup still gives its id (a get then finds nothing).
TEST_F(NamesTest, DeletedObjectLeavesTheNameBound) {
  const ObjectId a = Put(client_, "a");
  ASSERT_TRUE(IsOk(client_.BindName("n", a)));
  ASSERT_TRUE(IsOk(client_.Delete(a)));
  auto got = client_.LookupName("n");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(ObjectId(got->id), a);
  EXPECT_EQ(client_.Get(a, 0).status().code(), GISMO_ERR_TIMEOUT);
}

TEST_F(NamesTest, ListByPrefix) {
  const ObjectId a = Put(client_, "a");
  for (const char* n : {"ckpt/job1", "ckpt/job2", "ckpt2", "other"}) {
    ASSERT_TRUE(IsOk(client_.BindName(n, a)));
  }
  auto all = client_.ListNames();
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 4u);
  auto some = client_.ListNames("ckpt/");
  ASSERT_TRUE(some.ok());
  std::set<std::string> names;
  for (const auto& i : *some) names.insert(i.name);
  EXPECT_EQ(names, (std::set<std::string>{"ckpt/job1", "ckpt/job2"}));
  EXPECT_TRUE(client_.ListNames("zzz")->empty());
  EXPECT_TRUE(client_.ListNames(std::string(300, 'c'))->empty());
}

// The table is full at its capacity; unbinding makes room again, and the
// freed entries are reused (many rounds never run out).
TEST_F(NamesTest, FullTableAndReuse) {
  client_ = Client();
  mgr_.reset();
  manager::ManagerOptions o = testing::InProcessManagerOptions(32ull << 20);
  o.format.max_names = 16;
  Start(o);
  const ObjectId a = Put(client_, "a");
  for (int i = 0; i < 16; ++i) ASSERT_TRUE(IsOk(client_.BindName("n" + std::to_string(i), a)));
  Status s = client_.BindName("one-more", a);
  EXPECT_EQ(s.code(), GISMO_ERR_LIMIT) << s.ToString();
  EXPECT_NE(s.message().find("--max-names"), std::string::npos) << s.ToString();
  for (int round = 0; round < 20; ++round) {
    for (int i = 0; i < 16; ++i) ASSERT_TRUE(IsOk(client_.UnbindName("n" + std::to_string(i))));
    for (int i = 0; i < 16; ++i) {
      ASSERT_TRUE(IsOk(client_.BindName("n" + std::to_string(i), a))) << round << " " << i;
    }
  }
  EXPECT_EQ(client_.ListNames()->size(), 16u);
}

// gismo_wait_name. The waits below that must be woken (not satisfied by the
// first look) start the change only once the manager holds the wait: the
// region's `waiters` counts registered waits (raised before the ack).
class WaitNameTest : public NamesTest {
 protected:
  void SetUp() override {
    NamesTest::SetUp();
    auto r = region::Region::Open(mgr_->region_path());
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    region_ = std::move(*r);
  }
  // Returns once some wait is registered with the manager (bounded: a wait
  // that never registers fails the test at ctest's timeout).
  void AwaitRegisteredWait() {
    while (testing::ReadShared(*region_, region_->sb().waiters) == 0) std::this_thread::yield();
  }
  std::unique_ptr<region::Region> region_;
};

TEST_F(WaitNameTest, ChangeBeforeTheWaitReturnsAtOnce) {
  const ObjectId a = Put(client_, "a"), b = Put(client_, "b");
  ASSERT_TRUE(IsOk(client_.BindName("ckpt", a)));
  ASSERT_TRUE(IsOk(client_.SwapName("ckpt", a, b)));
  // Known a, bound to b: no wait at all, even with no timeout.
  auto got = client_.WaitName("ckpt", &a, -1);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(ObjectId(got->id), b);
  EXPECT_EQ(got->version, 2u);
  // Known nothing, bound: the binding at once; with timeout 0 too.
  got = client_.WaitName("ckpt", nullptr, 0);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(ObjectId(got->id), b);
  EXPECT_EQ(testing::ReadShared(*region_, region_->sb().waiters), 0u);  // never registered
}

TEST_F(WaitNameTest, TimesOutWhileUnchanged) {
  const ObjectId a = Put(client_, "a");
  ASSERT_TRUE(IsOk(client_.BindName("ckpt", a)));
  auto got = client_.WaitName("ckpt", &a, 0);
  EXPECT_EQ(got.status().code(), GISMO_ERR_TIMEOUT) << got.status().ToString();
  got = client_.WaitName("ckpt", &a, 50);
  EXPECT_EQ(got.status().code(), GISMO_ERR_TIMEOUT) << got.status().ToString();
  got = client_.WaitName("never-bound", nullptr, 50);
  EXPECT_EQ(got.status().code(), GISMO_ERR_TIMEOUT) << got.status().ToString();
  // The timed-out waits are cancelled: nothing stays registered.
  while (testing::ReadShared(*region_, region_->sb().waiters) != 0) std::this_thread::yield();
}

TEST_F(WaitNameTest, SwapByAnotherClientWakesTheWaiter) {
  const ObjectId a = Put(client_, "a"), b = Put(client_, "b");
  ASSERT_TRUE(IsOk(client_.BindName("ckpt", a)));
  Client other = MustConnect(mgr_->address());
  Result<gismo_name_info_t> got = Status(GISMO_ERR_INTERNAL, "not run");
  std::thread waiter([&] { got = client_.WaitName("ckpt", &a, 60000); });
  AwaitRegisteredWait();
  ASSERT_TRUE(IsOk(other.SwapName("ckpt", a, b)));
  waiter.join();
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(ObjectId(got->id), b);
}

TEST_F(WaitNameTest, FirstBindWakesAWaiterWithoutKnownId) {
  const ObjectId a = Put(client_, "a");
  Client other = MustConnect(mgr_->address());
  Result<gismo_name_info_t> got = Status(GISMO_ERR_INTERNAL, "not run");
  std::thread waiter([&] { got = client_.WaitName("fresh", nullptr, 60000); });
  AwaitRegisteredWait();
  ASSERT_TRUE(IsOk(other.BindNameIfUnbound("fresh", a)));
  waiter.join();
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(ObjectId(got->id), a);
  EXPECT_EQ(got->version, 1u);
}

TEST_F(WaitNameTest, UnbindEndsTheWaitWithNotFound) {
  const ObjectId a = Put(client_, "a");
  ASSERT_TRUE(IsOk(client_.BindName("ckpt", a)));
  Client other = MustConnect(mgr_->address());
  Result<gismo_name_info_t> got = Status(GISMO_ERR_INTERNAL, "not run");
  std::thread waiter([&] { got = client_.WaitName("ckpt", &a, 60000); });
  AwaitRegisteredWait();
  ASSERT_TRUE(IsOk(other.UnbindName("ckpt")));
  waiter.join();
  EXPECT_EQ(got.status().code(), GISMO_ERR_OBJECT_NOT_FOUND) << got.status().ToString();
  // Already unbound when the wait starts: the same, at once.
  got = client_.WaitName("ckpt", &a, -1);
  EXPECT_EQ(got.status().code(), GISMO_ERR_OBJECT_NOT_FOUND) << got.status().ToString();
}

TEST_F(WaitNameTest, OtherNamesDoNotEndTheWait) {
  const ObjectId a = Put(client_, "a"), b = Put(client_, "b");
  ASSERT_TRUE(IsOk(client_.BindName("ckpt", a)));
  Client other = MustConnect(mgr_->address());
  Result<gismo_name_info_t> got = Status(GISMO_ERR_INTERNAL, "not run");
  std::thread waiter([&] { got = client_.WaitName("ckpt", &a, 60000); });
  AwaitRegisteredWait();
  // Changes of other names, and a rebind to the same id, leave it waiting.
  ASSERT_TRUE(IsOk(other.BindName("ckpt2", b)));
  ASSERT_TRUE(IsOk(other.BindName("ckpt", a)));
  ASSERT_TRUE(IsOk(other.SwapName("ckpt", a, b)));
  waiter.join();
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(ObjectId(got->id), b);
  EXPECT_EQ(got->version, 3u);
}

TEST_F(WaitNameTest, BadArguments) {
  EXPECT_EQ(client_.WaitName("", nullptr, 0).status().code(), GISMO_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(client_.WaitName(std::string(GISMO_NAME_MAX + 1, 'n'), nullptr, 0).status().code(),
            GISMO_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(client_.WaitName("n", nullptr, -2).status().code(), GISMO_ERR_INVALID_ARGUMENT);
  gismo_name_info_t info;
  EXPECT_EQ(gismo_wait_name(client_.c_client(), nullptr, nullptr, 0, &info),
            GISMO_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(gismo_wait_name(client_.c_client(), "n", nullptr, 0, nullptr),
            GISMO_ERR_INVALID_ARGUMENT);
}

// Bindings live in the region: they outlive the client that made them and
// a manager killed and started again on the same region.
TEST(NamesProcessTest, NamesOutliveTheClientAndTheManager) {
  testing::ManagerProcess mgr = testing::StartManagerProcess();
  {
    Client writer = MustConnect(mgr.address());
    const ObjectId a = Put(writer, "a");
    ASSERT_TRUE(IsOk(writer.BindName("kept", a)));
    ASSERT_TRUE(IsOk(writer.Disconnect()));
  }
  mgr.Kill();
  ASSERT_TRUE(mgr.Start()) << mgr.error();
  Client c = MustConnect(mgr.address());
  auto got = c.LookupName("kept");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(ObjectId(got->id), ObjectId::FromName("a"));
  EXPECT_EQ(got->version, 1u);
}

}  // namespace
}  // namespace gismo
