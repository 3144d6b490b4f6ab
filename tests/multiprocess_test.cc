// Clients in several processes, and managers that die: everything that
// needs a gismo-manager process rather than the in-process manager of the
// unit tests. Mixed operations of several client processes on checksummed
// objects with fixed seeds end in a consistent store with every byte
// accounted for; the client API and notifications across processes; a
// manager killed under its clients.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <gismo/gismo.hpp>
#include <map>
#include <memory>
#include <random>
#include <thread>

#include "region/layout.h"
#include "region/region.h"
#include "test_util.h"

namespace gismo {
namespace {

using testing::ManagerProcess;
using testing::MustConnect;
using testing::MustNext;
using testing::RunInChild;
using testing::StartManagerProcess;

// Content of object k: derived from k, with its checksum in the metadata.
void Fill(uint8_t* p, size_t n, uint64_t k) {
  std::mt19937_64 rng(k);
  for (size_t i = 0; i < n; i += 8) {
    uint64_t v = rng();
    std::memcpy(p + i, &v, std::min<size_t>(8, n - i));
  }
}

int Worker(const std::string& addr, int w, int ops, int ids) {
  auto c = Client::Connect(addr);
  if (!c.ok()) return 10;
  std::mt19937 rng(7 * w + 1);
  std::vector<Buffer> held;
  for (int i = 0; i < ops; ++i) {
    int k = rng() % ids;
    ObjectId id = ObjectId::FromName("mp-" + std::to_string(k));
    switch (rng() % 5) {
      case 0:
      case 1: {
        size_t size = (k % 7 == 0) ? (1 << 20) + k : 64 + k * 131;
        auto b = c->Create(id, size);
        if (!b.ok()) {
          if (b.status().code() != GISMO_ERR_OBJECT_EXISTS) return 11;
          break;
        }
        Fill(b->data(), size, k);
        if (!b->SealAndRelease().ok()) return 12;
        break;
      }
      case 2: {
        auto b = c->Get(id, 0);
        if (b.ok()) {
          std::vector<uint8_t> want(b->size());
          Fill(want.data(), want.size(), k);
          if (std::memcmp(want.data(), b->data(), want.size()) != 0) return 13;
          if (rng() % 2) held.push_back(std::move(*b));
        } else if (b.status().code() != GISMO_ERR_TIMEOUT) {
          return 14;
        }
        break;
      }
      case 3:
        if (!held.empty()) held.pop_back();  // releases
        break;
      case 4: {
        Status s = c->Delete(id);
        if (!s.ok() && s.code() != GISMO_ERR_OBJECT_NOT_FOUND &&
            s.code() != GISMO_ERR_OBJECT_NOT_SEALED) {
          return 15;
        }
        break;
      }
    }
  }
  // Half the workers exit holding references without releasing: the
  // manager must clean up after them.
  if (w % 2) {
    for (auto& b : held) b.Detach();
    _exit(0);
  }
  return 0;
}

TEST(MultiProcessTest, MixedOperationsStayConsistent) {
  ManagerProcess mgr = StartManagerProcess({}, "512MiB");
  constexpr int kWorkers = 4, kOps = 1500, kIds = 40;
  std::vector<pid_t> pids;
  for (int w = 0; w < kWorkers; ++w) {
    pid_t pid = fork();
    if (pid == 0) _exit(Worker(mgr.address(), w, kOps, kIds));
    pids.push_back(pid);
  }
  for (pid_t p : pids) {
    int status = 0;
    waitpid(p, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "worker status " << status;
  }
  auto c = Client::Connect(mgr.address());
  ASSERT_TRUE(c.ok());
  // Wait for the manager to see every worker go.
  while (c->Usage()->client_count != 1) std::this_thread::yield();
  auto list = c->List();
  ASSERT_TRUE(list.ok());
  for (const auto& info : *list) {
    EXPECT_EQ(info.state, GISMO_STATE_SEALED);  // nothing unsealed or half-deleted
    EXPECT_EQ(info.ref_count, 0u);
    ObjectId id(info.id);
    auto b = c->Get(id, 0);
    ASSERT_TRUE(b.ok());
    // Every surviving object is intact.
    bool match = false;
    for (int k = 0; k < kIds && !match; ++k) {
      if (ObjectId::FromName("mp-" + std::to_string(k)) == id) {
        std::vector<uint8_t> want(b->size());
        Fill(want.data(), want.size(), k);
        match = std::memcmp(want.data(), b->data(), want.size()) == 0;
      }
    }
    EXPECT_TRUE(match);
  }
  for (const auto& info : *list) ASSERT_TRUE(c->Delete(ObjectId(info.id)).ok());
  auto u = c->Usage();
  EXPECT_EQ(u->object_count, 0u);
  // Only this client's own current slabs may remain in use.
  EXPECT_EQ(u->used_bytes, 0u);  // every page back: no leak
}

// ---- The client API across processes ---------------------------------------

class ApiProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = Client::Connect(mgr_.address());
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    client_ = std::move(*c);
  }
  Client Connect() { return MustConnect(mgr_.address()); }
  // client_ gets an object that `producer` puts only once the manager
  // counts client_'s wait (in the superblock), so the get cannot be served
  // from the region alone: after a manager restart it proves that client_
  // re-attached (waits are registered over the connection).
  void GetThroughTheManager(Client& producer) {
    ObjectId later = ObjectId::Random();
    Result<Buffer> got = Status(GISMO_ERR_TIMEOUT, "not run");
    std::thread getter([&] { got = client_.Get(later, 60000); });
    auto region = region::Region::Open(mgr_.region());
    ASSERT_TRUE(region.ok()) << region.status().ToString();
    while (testing::ReadShared(**region, (*region)->sb().waiters) == 0) {
      std::this_thread::yield();
    }
    ASSERT_TRUE(producer.Put(later, "later").ok());
    getter.join();
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(got->data()), got->size()), "later");
  }
  ManagerProcess mgr_ = StartManagerProcess();
  Client client_;
};

TEST_F(ApiProcessTest, BlockingGetWakesOnSealFromAnotherProcess) {
  ObjectId id = ObjectId::Random();
  std::string addr = mgr_.address();
  // Fork with no other thread running (this process's client has a receiver
  // thread): a child forked while another thread holds an allocator lock
  // can hang in malloc, as it did once under ASan.
  client_ = Client();
  pid_t pid = fork();
  if (pid == 0) {
    auto c = Client::Connect(addr);
    if (!c.ok()) _exit(10);
    auto b = c->Get(id, -1);  // forever
    if (!b.ok()) _exit(11);
    _exit(b->data()[0] == 'x' ? 0 : 12);
  }
  // Seal only once the child's wait is registered with the manager, so the
  // wake-up path (not the first look) is what delivers the object.
  auto region = region::Region::Open(mgr_.region());
  ASSERT_TRUE(region.ok()) << region.status().ToString();
  int status = 0;
  while (testing::ReadShared(**region, (*region)->sb().waiters) == 0) {
    ASSERT_EQ(waitpid(pid, &status, WNOHANG), 0) << "the waiting child died: " << status;
    std::this_thread::yield();
  }
  client_ = MustConnect(addr);
  auto b = client_.Create(id, 1);
  ASSERT_TRUE(b.ok());
  b->data()[0] = 'x';
  ASSERT_TRUE(b->SealAndRelease().ok());
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  while (testing::ReadShared(**region, (*region)->sb().waiters) != 0)
    std::this_thread::yield();  // wait cancelled
}

// The library's thread (client_'s receiver) blocks the asynchronous
// signals, so a signal sent to the process is handled where the application
// lets it: `gismo get`, which blocks SIGINT on its one thread while it names
// its replacement file, once had ^C handled on the receiver thread in that
// window, which then left the file behind.
TEST_F(ApiProcessTest, TheLibrarysThreadBlocksAsynchronousSignals) {
  EXPECT_GE(testing::ExpectOnlyTheMainThreadTakesSignals("/proc/self", gettid()), 1)
      << "client_ has no receiver thread to look at";
}

TEST_F(ApiProcessTest, KilledClientIsCleanedUp) {
  ObjectId sealed = ObjectId::Random(), unsealed = ObjectId::Random();
  ASSERT_TRUE(client_.Put(sealed, std::string(1 << 20, 's')).ok());
  auto base = client_.Usage()->used_bytes;
  std::string addr = mgr_.address();
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t pid = fork();
  if (pid == 0) {
    auto c = Client::Connect(addr);
    if (!c.ok()) _exit(10);
    auto held = c->Get(sealed, 0);
    auto b = c->Create(unsealed, 4 << 20);
    if (!held.ok() || !b.ok()) _exit(11);
    held->Detach();
    b->Detach();
    char x = 1;
    (void)!write(ready[1], &x, 1);
    pause();  // killed here, holding a reference and an unsealed object
    _exit(0);
  }
  close(ready[1]);  // a child that dies early gives EOF, not a hang
  ready[1] = -1;
  char x;
  ASSERT_EQ(read(ready[0], &x, 1), 1) << "the child died before it was ready";
  EXPECT_EQ(client_.Stat(sealed)->ref_count, 1u);
  EXPECT_EQ(client_.Stat(unsealed)->state, GISMO_STATE_CREATED);
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  // The manager notices the closed connection and recovers. Wait for its
  // effect (bounded by the test timeout), not for a fixed time.
  while (client_.Stat(unsealed).ok() || client_.Usage()->client_count != 1) {
    std::this_thread::yield();
  }
  EXPECT_EQ(client_.Stat(sealed)->ref_count, 0u);
  EXPECT_TRUE(*client_.Contains(sealed));
  EXPECT_EQ(client_.Usage()->used_bytes, base);
  // The id of the aborted object is free again.
  EXPECT_TRUE(client_.Create(unsealed, 10).ok());
  close(ready[0]);
}

// A SIGKILLed owner's owned objects are deleted by its recovery: at once if
// nobody holds them, at the last release otherwise; its other objects stay.
TEST_F(ApiProcessTest, KilledOwnersObjectsAreDeleted) {
  ObjectId held = ObjectId::Random(), unheld = ObjectId::Random(), plain = ObjectId::Random(),
           unsealed = ObjectId::Random();
  const uint64_t base = client_.Usage()->used_bytes;
  std::string addr = mgr_.address();
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  client_ = Client();  // fork with no other thread running
  pid_t pid = fork();
  if (pid == 0) {
    auto c = Client::Connect(addr);
    if (!c.ok()) _exit(10);
    if (!c->Put(held, std::string(1 << 20, 'h'), GISMO_CREATE_OWNED).ok()) _exit(11);
    if (!c->Put(unheld, std::string(1 << 20, 'u'), GISMO_CREATE_OWNED).ok()) _exit(12);
    if (!c->Put(plain, "plain").ok()) _exit(13);
    auto b = c->Create(unsealed, 4 << 20, {}, GISMO_CREATE_OWNED);
    if (!b.ok()) _exit(14);
    b->Detach();
    char x = 1;
    (void)!write(ready[1], &x, 1);
    pause();  // killed here
    _exit(0);
  }
  close(ready[1]);
  char x;
  ASSERT_EQ(read(ready[0], &x, 1), 1) << "the child died before it was ready";
  close(ready[0]);
  client_ = Connect();
  auto reading = client_.Get(held, 0);
  ASSERT_TRUE(reading.ok()) << reading.status().ToString();
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  while (client_.Stat(unheld).ok() || client_.Usage()->client_count != 1) {
    std::this_thread::yield();
  }
  EXPECT_EQ(client_.Stat(unsealed).status().code(), GISMO_ERR_OBJECT_NOT_FOUND);
  EXPECT_TRUE(*client_.Contains(plain));
  auto info = client_.Stat(held);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->state, GISMO_STATE_DELETING);
  EXPECT_EQ(reading->data()[(1 << 20) - 1], 'h');  // never freed under a reader
  ASSERT_TRUE(reading->Release().ok());
  EXPECT_EQ(client_.Stat(held).status().code(), GISMO_ERR_OBJECT_NOT_FOUND);
  ASSERT_TRUE(client_.Delete(plain).ok());
  EXPECT_EQ(client_.Usage()->used_bytes, base);
}

// A client that re-attaches to a restarted manager keeps its owned objects;
// they go when it leaves.
TEST_F(ApiProcessTest, ReattachedOwnerKeepsItsOwnedObjects) {
  ObjectId owned = ObjectId::Random();
  ASSERT_TRUE(client_.Put(owned, "mine", GISMO_CREATE_OWNED).ok());
  mgr_.Kill();
  ASSERT_TRUE(mgr_.Start()) << mgr_.error();
  Client other = Connect();
  GetThroughTheManager(other);  // client_ has re-attached
  EXPECT_EQ(other.Usage()->client_count, 2u);
  EXPECT_TRUE(*other.Contains(owned));
  ASSERT_TRUE(client_.Disconnect().ok());
  // Its departure is recovered by the manager; wait for the effect (bounded
  // by the test's timeout).
  while (other.Stat(owned).ok()) std::this_thread::yield();
  EXPECT_EQ(other.Stat(owned).status().code(), GISMO_ERR_OBJECT_NOT_FOUND);
}

// A client closed while no manager runs leaves its goodbye in the region
// (ClientSlotHeader::departed): the next manager recovers it as a departure
// (its owned objects go) at once, and never suspects this process, which is
// alive (a manager on the same kernel would kill a suspect: this test would
// die).
TEST_F(ApiProcessTest, DisconnectWhileTheManagerIsAwayIsADeparture) {
  ObjectId owned = ObjectId::Random();
  ASSERT_TRUE(client_.Put(owned, "mine", GISMO_CREATE_OWNED).ok());
  mgr_.Kill();
  ASSERT_TRUE(client_.Disconnect().ok());
  ASSERT_TRUE(mgr_.Start()) << mgr_.error();
  Client other = Connect();
  while (other.Stat(owned).ok()) std::this_thread::yield();
  EXPECT_EQ(other.Stat(owned).status().code(), GISMO_ERR_OBJECT_NOT_FOUND);
  EXPECT_EQ(other.Usage()->client_count, 1u);
}

TEST_F(ApiProcessTest, ProducerAndConsumerInDifferentProcesses) {
  constexpr int kObjects = 200;
  std::string addr = mgr_.address();
  // Fork with no client thread running (ThreadSanitizer cannot follow threads
  // started in a child forked from a multi-threaded parent).
  ASSERT_TRUE(client_.Disconnect().ok());
  int status = RunInChild([&] {
    auto c = Client::Connect(addr);
    if (!c.ok()) return 10;
    for (int i = 0; i < kObjects; ++i) {
      size_t size = 100 + i * 997;
      auto b = c->Create(ObjectId::FromName("obj" + std::to_string(i)), size);
      if (!b.ok()) return 11;
      for (size_t k = 0; k < size; ++k) b->data()[k] = static_cast<uint8_t>(i + k);
      if (!b->SealAndRelease().ok()) return 12;
    }
    return 0;
  });
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  client_ = Connect();
  for (int i = 0; i < kObjects; ++i) {
    auto b = client_.Get(ObjectId::FromName("obj" + std::to_string(i)), 0);
    ASSERT_TRUE(b.ok()) << i;
    ASSERT_EQ(b->size(), 100u + i * 997);
    for (size_t k = 0; k < b->size(); ++k) {
      ASSERT_EQ(b->data()[k], static_cast<uint8_t>(i + k));
    }
  }
}

// A manager restart recovers nobody who is alive: the client keeps working on
// shared memory while no manager runs, re-attaches to the next one with its
// slot and references, and what it holds is never freed under it.
TEST_F(ApiProcessTest, ManagerRestartKeepsLiveClients) {
  ObjectId id = ObjectId::Random();
  ASSERT_TRUE(client_.Put(id, "survives").ok());
  auto held = std::make_unique<Result<Buffer>>(client_.Get(id, 0));
  ASSERT_TRUE(held->ok()) << held->status().ToString();
  const void* where = (*held)->data();
  mgr_.Kill();
  // Object operations need no manager.
  auto c = client_.Contains(id);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(*c);
  ASSERT_TRUE(mgr_.Start()) << mgr_.error();
  Client other = Connect();
  // The reader's reference survived the restart: a delete is deferred.
  ASSERT_TRUE(other.Delete(id).ok());
  ASSERT_TRUE(other.Put(ObjectId::Random(), std::string(8, 'x')).ok());
  EXPECT_EQ(std::string(static_cast<const char*>(where), 8), "survives");
  auto info = other.Stat(id);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->state, GISMO_STATE_DELETING);
  EXPECT_EQ(info->ref_count, 1u);
  GetThroughTheManager(other);  // client_ has re-attached
  EXPECT_EQ(other.Usage()->client_count, 2u);
  held.reset();  // releases the last reference
  for (;;) {
    auto gone = other.Stat(id);
    if (!gone.ok()) {
      EXPECT_EQ(gone.status().code(), GISMO_ERR_OBJECT_NOT_FOUND);
      break;
    }
    std::this_thread::yield();
  }
}

// ---- Notifications across processes -----------------------------------------

TEST(SubscribeProcessTest, EventsOfOneObjectArriveInOrder) {
  ManagerProcess mgr = StartManagerProcess();
  Client sub_client = MustConnect(mgr.address());
  auto sub = sub_client.Subscribe();
  ASSERT_TRUE(sub.ok());
  // Two processes: one seals, the other deletes as soon as it can get the
  // object: seal then delete must come in that order for every object.
  constexpr int kObjects = 200;
  std::string addr = mgr.address();
  pid_t deleter = fork();
  if (deleter == 0) {
    auto c = Client::Connect(addr);
    if (!c.ok()) _exit(10);
    for (int i = 0; i < kObjects; ++i) {
      ObjectId id = ObjectId::FromName("ord" + std::to_string(i));
      auto b = c->Get(id, 20000);
      if (!b.ok()) _exit(11);
      (void)b->Release();
      if (!c->Delete(id).ok()) _exit(12);
    }
    _exit(0);
  }
  Client producer = MustConnect(addr);
  for (int i = 0; i < kObjects; ++i) {
    ASSERT_TRUE(producer.Put(ObjectId::FromName("ord" + std::to_string(i)), "x").ok());
  }
  std::map<std::string, int> state;  // 0 none, 1 sealed, 2 deleted
  uint64_t last_seq = 0;
  for (int got = 0; got < 2 * kObjects; ++got) {
    auto next = sub->Next(20000);
    ASSERT_TRUE(next.ok()) << next.status().ToString() << " after " << got << " events";
    Notification n = *next;
    ASSERT_NE(n.event, GISMO_EVENT_OVERFLOW);
    EXPECT_GT(n.seq, last_seq);  // one global order
    last_seq = n.seq;
    int& st = state[n.id.Hex()];
    if (n.event == GISMO_EVENT_SEALED) {
      EXPECT_EQ(st, 0);
      st = 1;
    } else {
      EXPECT_EQ(st, 1) << "deleted before sealed";
      st = 2;
    }
  }
  int status;
  waitpid(deleter, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(state.size(), static_cast<size_t>(kObjects));
}

// Freezes the manager once it has taken every kick (kick_pending clear, as
// after any quiet moment), so that the next seal wakes subscribers directly
// (ClientImpl::NotifyIfWatched) and nothing else wakes them.
void FreezeManagerOnceKicksAreTaken(ManagerProcess& mgr) {
  auto region = region::Region::Open(mgr.region());
  ASSERT_TRUE(region.ok()) << region.status().ToString();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while ((*region)->sb().kick_pending.load(std::memory_order_seq_cst) != 0) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the manager never took a kick";
    std::this_thread::yield();
  }
  ASSERT_EQ(kill(mgr.pid(), SIGSTOP), 0);
}

// A put while the manager is frozen, which cannot pass a wake-up on: the
// sealer's own datagram must make the subscriber's fd readable, and the
// notification follows.
void ExpectADirectWakeUp(ManagerProcess& mgr, Client& producer, Subscription& sub,
                         uint32_t producer_node = 0) {
  ASSERT_NO_FATAL_FAILURE(FreezeManagerOnceKicksAreTaken(mgr));
  ObjectId id = ObjectId::FromName("while frozen");
  Status put = producer.Put(id, "y");
  pollfd p{sub.fd(), POLLIN, 0};
  const int ready = poll(&p, 1, 20000);
  auto next = sub.Next(0);
  ASSERT_EQ(kill(mgr.pid(), SIGCONT), 0);
  ASSERT_TRUE(put.ok()) << put.ToString();
  EXPECT_EQ(ready, 1) << "the subscriber's fd did not become readable";
  ASSERT_TRUE(next.ok()) << next.status().ToString();
  EXPECT_EQ(next->event, GISMO_EVENT_SEALED);
  EXPECT_EQ(next->id, id);
  EXPECT_EQ(next->node, producer_node);
}

TEST(SubscribeProcessTest, ASameNodeSealWakesTheSubscriberWithoutTheManager) {
  ManagerProcess mgr = StartManagerProcess();
  Client sub_client = MustConnect(mgr.address());
  auto sub = sub_client.Subscribe();
  ASSERT_TRUE(sub.ok());
  Client producer = MustConnect(mgr.address());
  ASSERT_TRUE(producer.Put(ObjectId::FromName("before"), "x").ok());
  ASSERT_EQ(MustNext(*sub).id, ObjectId::FromName("before"));
  ASSERT_EQ(sub->Next(0).status().code(), GISMO_ERR_TIMEOUT);  // the fd is drained
  // A frozen manager cannot pass the wake-up on: the sealer on the same node
  // sends it to the subscriber's socket itself.
  ASSERT_NO_FATAL_FAILURE(ExpectADirectWakeUp(mgr, producer, *sub));
}

// Datagrams queued on a subscription fd, read off it.
int CountWakeUps(int fd) {
  int n = 0;
  char b[64];
  while (recv(fd, b, sizeof b, MSG_DONTWAIT) >= 0) ++n;
  return n;
}

TEST(SubscribeProcessTest, ABusySubscriberCostsSealersOneWakeUpUntilItLooksAgain) {
  ManagerProcess mgr = StartManagerProcess();
  Client sub_client = MustConnect(mgr.address());
  auto sub = sub_client.Subscribe();
  ASSERT_TRUE(sub.ok());
  Client producer = MustConnect(mgr.address());
  // The manager frozen, the datagrams on the fd are the sealer's own: the
  // first seal wakes the subscriber directly (and kicks the manager); the
  // others find the kick pending and the subscriber not re-armed.
  ASSERT_NO_FATAL_FAILURE(FreezeManagerOnceKicksAreTaken(mgr));
  constexpr int kPuts = 40;
  Status put;
  for (int i = 0; i < kPuts && put.ok(); ++i) {
    put = producer.Put(ObjectId::FromName("busy " + std::to_string(i)), "x");
  }
  const int direct = CountWakeUps(sub->fd());
  // Thawed, the manager takes the kick (clearing kick_pending) and wakes
  // the subscriber once more; the subscriber reads every event, and its
  // last look finds nothing: armed again.
  ASSERT_EQ(kill(mgr.pid(), SIGCONT), 0);
  pollfd p{sub->fd(), POLLIN, 0};
  const int manager_woke = poll(&p, 1, 20000);
  int events = 0;
  while (sub->Next(0).ok()) ++events;
  ASSERT_NO_FATAL_FAILURE(FreezeManagerOnceKicksAreTaken(mgr));
  Status after = producer.Put(ObjectId::FromName("after"), "y");
  p.revents = 0;
  const int ready = poll(&p, 1, 20000);
  const int second = CountWakeUps(sub->fd());
  auto next = sub->Next(0);
  ASSERT_EQ(kill(mgr.pid(), SIGCONT), 0);
  ASSERT_TRUE(put.ok()) << put.ToString();
  ASSERT_TRUE(after.ok()) << after.ToString();
  EXPECT_EQ(direct, 1) << "wake-ups for " << kPuts << " seals the subscriber did not look at";
  EXPECT_EQ(manager_woke, 1) << "the manager did not pass its wake-up on";
  EXPECT_EQ(events, kPuts);
  EXPECT_EQ(ready, 1) << "the re-armed subscriber was not woken";
  EXPECT_EQ(second, 1);
  ASSERT_TRUE(next.ok()) << next.status().ToString();
  EXPECT_EQ(next->id, ObjectId::FromName("after"));
}

TEST(SubscribeProcessTest, ASealOnAnotherNodeWakesATcpSubscriberWithoutTheManager) {
  ManagerProcess mgr = StartManagerProcess({"--listen", "tcp:127.0.0.1:0"});
  std::string line = mgr.ready_line();
  size_t pos = line.find("tcp:127.0.0.1:");
  ASSERT_NE(pos, std::string::npos) << line;
  const std::string tcp = line.substr(pos, line.find_first_of(", \n", pos) - pos);
  // Over TCP without a cluster key the manager does not say where the
  // region is (doc/security.md).
  setenv("GISMO_REGION", mgr.region().c_str(), 1);
  setenv("GISMO_NODE", "3", 1);
  auto sub_client = Client::Connect(tcp);
  setenv("GISMO_NODE", "1", 1);
  auto producer = Client::Connect(tcp);
  unsetenv("GISMO_NODE");
  unsetenv("GISMO_REGION");
  ASSERT_TRUE(sub_client.ok()) << sub_client.status().ToString();
  ASSERT_TRUE(producer.ok()) << producer.status().ToString();
  auto sub = sub_client->Subscribe();
  ASSERT_TRUE(sub.ok());
  ASSERT_TRUE(producer->Put(ObjectId::FromName("before"), "x").ok());
  ASSERT_EQ(MustNext(*sub).id, ObjectId::FromName("before"));
  ASSERT_EQ(sub->Next(0).status().code(), GISMO_ERR_TIMEOUT);  // the fd is drained
  // A frozen manager cannot pass the wake-up on: the sealer on node 1 sends
  // it to the node-3 subscriber's UDP address (its slot's notify_inet).
  ASSERT_NO_FATAL_FAILURE(ExpectADirectWakeUp(mgr, *producer, *sub, 1));
}

TEST(SubscribeProcessTest, SubscriberOnAnotherNodeOverTcp) {
  ManagerProcess mgr = StartManagerProcess({"--listen", "tcp:127.0.0.1:0"});
  // The ready line names the TCP port the manager bound.
  std::string line = mgr.ready_line();
  size_t pos = line.find("tcp:127.0.0.1:");
  ASSERT_NE(pos, std::string::npos) << line;
  std::string tcp = line.substr(pos, line.find_first_of(", \n", pos) - pos);
  int pipefd[2];
  ASSERT_EQ(pipe(pipefd), 0);
  pid_t pid = fork();
  if (pid == 0) {
    setenv("GISMO_NODE", "3", 1);
    // Over TCP without a cluster key the manager does not say where the
    // region is (doc/security.md).
    setenv("GISMO_REGION", mgr.region().c_str(), 1);
    auto c = Client::Connect(tcp);
    if (!c.ok()) _exit(10);
    auto sub = c->Subscribe();
    if (!sub.ok()) _exit(11);
    char x = 1;
    (void)!write(pipefd[1], &x, 1);
    auto n = sub->Next(20000);
    if (!n.ok() || n->event != GISMO_EVENT_SEALED || n->node != 1) _exit(12);
    _exit(0);
  }
  close(pipefd[1]);  // a child that dies early gives EOF, not a hang
  char x;
  ASSERT_EQ(read(pipefd[0], &x, 1), 1) << "the child died before it was ready";
  setenv("GISMO_NODE", "1", 1);
  Client producer = MustConnect(mgr.address());
  unsetenv("GISMO_NODE");
  ASSERT_TRUE(producer.Put(ObjectId::Random(), "from node 1").ok());
  int status;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  close(pipefd[0]);
}

TEST(SubscribeProcessTest, KilledSubscriberCostsNothing) {
  ManagerProcess mgr = StartManagerProcess();
  std::string addr = mgr.address();
  int pipefd[2];
  ASSERT_EQ(pipe(pipefd), 0);
  pid_t pid = fork();
  if (pid == 0) {
    auto c = Client::Connect(addr);
    if (!c.ok()) _exit(10);
    auto sub = c->Subscribe();
    if (!sub.ok()) _exit(11);
    char x = 1;
    (void)!write(pipefd[1], &x, 1);
    for (;;) (void)sub->Next(-1);  // reading when killed
  }
  close(pipefd[1]);  // a child that dies early gives EOF, not a hang
  char x;
  ASSERT_EQ(read(pipefd[0], &x, 1), 1) << "the child died before it was ready";
  Client producer = MustConnect(addr);
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(producer.Put(ObjectId::Random(), "a").ok());
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  // The manager drops the subscription; producers go on unaffected, and a
  // new subscriber still works.
  while (producer.Usage()->client_count != 1) std::this_thread::yield();
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(producer.Put(ObjectId::Random(), "b").ok());
  Client again = MustConnect(addr);
  auto sub = again.Subscribe();
  ASSERT_TRUE(sub.ok());
  int initial = 0;
  while (sub->Next(0).ok()) ++initial;
  EXPECT_EQ(initial, 100);
  close(pipefd[0]);
}

// A manager restart ends no subscription: the subscriber re-attaches, and
// what was sealed meanwhile (the ring is in the region) is delivered.
TEST(SubscribeProcessTest, SubscriptionSurvivesManagerRestart) {
  ManagerProcess mgr = StartManagerProcess();
  Client c = MustConnect(mgr.address());
  Client producer = MustConnect(mgr.address());
  auto sub = c.Subscribe();
  ASSERT_TRUE(sub.ok());
  EXPECT_EQ(sub->Next(0).status().code(), GISMO_ERR_TIMEOUT);
  mgr.Kill();
  ASSERT_TRUE(producer.Put(ObjectId::FromName("while-down"), "x").ok());
  ASSERT_TRUE(mgr.Start()) << mgr.error();
  auto first = sub->Next(10000);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  Notification n = *first;
  EXPECT_EQ(n.event, GISMO_EVENT_SEALED);
  EXPECT_EQ(n.id, ObjectId::FromName("while-down"));
  // And the next seal wakes it through the new manager (fd-only waiters too).
  ASSERT_TRUE(producer.Put(ObjectId::FromName("after"), "y").ok());
  pollfd p{sub->fd(), POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 20000), 1);
  auto second = sub->Next(10000);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  n = *second;
  EXPECT_EQ(n.id, ObjectId::FromName("after"));
}

// A session that ends (here by an operator's fence) makes an fd-only waiter
// readable, and the next call says why.
TEST(SubscribeProcessTest, EndedSessionMakesTheFdReadable) {
  ManagerProcess mgr = StartManagerProcess();
  Client c = MustConnect(mgr.address());
  Client op = MustConnect(mgr.address());
  auto sub = c.Subscribe();
  ASSERT_TRUE(sub.ok());
  EXPECT_EQ(sub->Next(0).status().code(), GISMO_ERR_TIMEOUT);
  uint32_t node = 0, slot = 0;
  ASSERT_EQ(gismo_client_identity(c.c_client(), &node, &slot), GISMO_OK);
  ASSERT_TRUE(op.Fence(GISMO_FENCE_SLOT, slot).ok());
  pollfd p{sub->fd(), POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 20000), 1);  // an fd-only waiter is not left hanging
  Status s = sub->Next(0).status();
  for (int i = 0; i < 1000 && s.code() == GISMO_ERR_TIMEOUT; ++i) s = sub->Next(10).status();
  EXPECT_EQ(s.code(), GISMO_ERR_CONNECTION);
}

// The listings of a client whose session ended fail, and say 0 in *count
// (gismo_list and gismo_list_clients left it as it was, or partial), as a
// listing whose arguments are refused does.
TEST(MultiProcessTest, ListingsThatFailCountZero) {
  ManagerProcess mgr = StartManagerProcess();
  Client c = MustConnect(mgr.address());
  Client op = MustConnect(mgr.address());
  ASSERT_TRUE(c.Put(ObjectId::FromName("listed"), "x").ok());
  size_t refused = 77;  // an argument refused: 0 as well
  EXPECT_EQ(gismo_list(c.c_client(), nullptr, 5, &refused), GISMO_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(refused, 0u);
  uint32_t node = 0, slot = 0;
  ASSERT_EQ(gismo_client_identity(c.c_client(), &node, &slot), GISMO_OK);
  ASSERT_TRUE(op.Fence(GISMO_FENCE_SLOT, slot).ok());
  size_t count = 77;
  gismo_status_t s = GISMO_OK;
  for (int i = 0; i < 2000 && s == GISMO_OK; ++i) {
    s = gismo_list(c.c_client(), nullptr, 0, &count);
    if (s == GISMO_OK) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(s, GISMO_ERR_CONNECTION);
  EXPECT_EQ(count, 0u);
  count = 77;
  EXPECT_EQ(gismo_list_clients(c.c_client(), nullptr, 0, &count), GISMO_ERR_CONNECTION);
  EXPECT_EQ(count, 0u);
  count = 77;
  EXPECT_NE(gismo_list_names(c.c_client(), "", nullptr, 0, &count), GISMO_OK);
  EXPECT_EQ(count, 0u);
}

// Descriptors this process has open.
int OpenDescriptors() {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    (void)e;
    ++n;
  }
  return n;
}

// A subscribe the manager does not acknowledge in time fails; the retry
// keeps the first attempt's socket rather than opening (and leaking)
// another, and the subscription then works. A long lease: the manager,
// frozen past it, would otherwise suspect the client when it resumes.
TEST(SubscribeProcessTest, ARetryAfterAnUnacknowledgedSubscribeKeepsItsSocket) {
  ManagerProcess mgr = StartManagerProcess({"--lease-ms", "120000"});
  Client c = MustConnect(mgr.address());
  Client producer = MustConnect(mgr.address());
  const int before = OpenDescriptors();
  ASSERT_EQ(kill(mgr.pid(), SIGSTOP), 0);
  auto refused = c.Subscribe();
  ASSERT_EQ(kill(mgr.pid(), SIGCONT), 0);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), GISMO_ERR_CONNECTION) << refused.status().ToString();
  EXPECT_EQ(OpenDescriptors(), before + 1);  // the attempt's socket, kept
  auto sub = c.Subscribe();
  ASSERT_TRUE(sub.ok()) << sub.status().ToString();
  EXPECT_EQ(OpenDescriptors(), before + 1);
  ASSERT_TRUE(producer.Put(ObjectId::FromName("after the retry"), "x").ok());
  EXPECT_EQ(MustNext(*sub).id, ObjectId::FromName("after the retry"));
}

// A manager that stops reading (frozen here) while a waiter makes every
// seal and delete of its shard a notice on the connection: the notices fill
// the socket's buffer, and then the connection counts as broken (the client
// re-attaches later) instead of blocking the producer, whose object
// operations never wait for the manager; and it disconnects. A long lease:
// the manager, thawed, must not suspect the clients.
TEST(ManagerProcessTest, AManagerThatStopsReadingBlocksNeitherObjectOperationsNorDisconnect) {
  ManagerProcess mgr = StartManagerProcess({"--lease-ms", "120000"});
  Client waiter = MustConnect(mgr.address());
  Client producer = MustConnect(mgr.address());
  auto region = region::Region::Open(mgr.region());
  ASSERT_TRUE(region.ok()) << region.status().ToString();
  // The producer's object shares the waited-for object's shard: each of its
  // seals and deletes finds a waiter there and tells the manager.
  const ObjectId never = ObjectId::FromName("never sealed");
  const uint32_t shard = (*region)->ShardOf(store::HashId(never.c_id()));
  ObjectId churn;
  for (int i = 0;; ++i) {
    churn = ObjectId::FromName("churn " + std::to_string(i));
    if ((*region)->ShardOf(store::HashId(churn.c_id())) == shard) break;
  }
  std::thread wait([&] { (void)waiter.Get(never, 60000); });
  ASSERT_TRUE(testing::WaitForGetWaiter(**region, never));
  ASSERT_EQ(kill(mgr.pid(), SIGSTOP), 0);
  // Far more notices (2 per operation) than a socket buffer holds.
  constexpr int kOps = 5000;
  std::packaged_task<Status()> churning([&] {
    for (int i = 0; i < kOps; ++i) {
      if (Status s = producer.Put(churn, "x"); !s.ok()) return s;
      if (Status s = producer.Delete(churn); !s.ok()) return s;
    }
    return Status();
  });
  std::future<Status> churned = churning.get_future();
  std::thread churner(std::move(churning));
  const bool churn_done = churned.wait_for(std::chrono::seconds(30)) == std::future_status::ready;
  std::future<Status> left;
  bool left_done = false;
  if (churn_done) {
    left = std::async(std::launch::async, [&] { return producer.Disconnect(); });
    left_done = left.wait_for(std::chrono::seconds(30)) == std::future_status::ready;
  }
  ASSERT_EQ(kill(mgr.pid(), SIGCONT), 0);
  churner.join();
  EXPECT_TRUE(churn_done) << "object operations blocked on a manager that stopped reading";
  if (churn_done) {
    EXPECT_TRUE(testing::IsOk(churned.get()));
    EXPECT_TRUE(left_done) << "disconnect blocked on a manager that stopped reading";
    EXPECT_TRUE(testing::IsOk(left.get()));
  }
  // Thawed, the manager serves the waiter again.
  Client other = MustConnect(mgr.address());
  ASSERT_TRUE(other.Put(never, "at last").ok());
  wait.join();
}

}  // namespace
}  // namespace gismo
