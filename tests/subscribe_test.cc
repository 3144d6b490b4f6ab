// Notifications: order, late subscribers, deletions, other nodes (TCP),
// overflow, a subscriber killed mid-stream, many subscribers.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gismo/gismo.hpp>
#include <map>
#include <thread>

#include "test_util.h"

namespace gismo {
namespace {

using testing::ManagerProcess;

Client MustConnect(const std::string& addr) {
  auto c = Client::Connect(addr);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? std::move(*c) : Client();
}

Notification MustNext(Subscription& sub, int64_t timeout_ms = 10000) {
  auto n = sub.Next(timeout_ms);
  EXPECT_TRUE(n.ok()) << n.status().ToString();
  return n.ok() ? *n : Notification{};
}

TEST(SubscribeTest, LateSubscriberLearnsSealedObjectsThenLiveEvents) {
  ManagerProcess mgr;
  Client producer = MustConnect(mgr.address());
  ObjectId a = ObjectId::FromName("a"), b = ObjectId::FromName("b");
  ASSERT_TRUE(producer.Put(a, "aaaa").ok());
  auto unsealed = producer.Create(b, 2);  // not reported until sealed
  ASSERT_TRUE(unsealed.ok());

  Client sub_client = MustConnect(mgr.address());
  auto sub = sub_client.Subscribe();
  ASSERT_TRUE(sub.ok()) << sub.status().ToString();
  // The fd is readable: the initial listing is waiting.
  pollfd p{sub->fd(), POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 10000), 1);
  Notification n = MustNext(*sub);
  EXPECT_EQ(n.event, GISMO_EVENT_SEALED);
  EXPECT_EQ(n.id, a);
  EXPECT_EQ(n.data_size, 4u);
  EXPECT_EQ(sub->Next(0).status().code(), GISMO_ERR_TIMEOUT);

  ASSERT_TRUE(unsealed->Seal().ok());
  n = MustNext(*sub);
  EXPECT_EQ(n.event, GISMO_EVENT_SEALED);
  EXPECT_EQ(n.id, b);
  EXPECT_GT(n.seq, 0u);
  ASSERT_TRUE(unsealed->SealAndRelease().ok());
  ASSERT_TRUE(producer.Delete(b).ok());
  n = MustNext(*sub);
  EXPECT_EQ(n.event, GISMO_EVENT_DELETED);
  EXPECT_EQ(n.id, b);
  EXPECT_EQ(sub->Next(0).status().code(), GISMO_ERR_TIMEOUT);
}

TEST(SubscribeTest, EventsOfOneObjectArriveInOrder) {
  ManagerProcess mgr;
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

TEST(SubscribeTest, SubscriberOnAnotherNodeOverTcp) {
  ManagerProcess mgr({"--listen", "tcp:127.0.0.1:0"});
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

TEST(SubscribeTest, SlowSubscriberGetsOverflowAndProducersNeverBlock) {
  ManagerProcess mgr({"--event-capacity", "64"});
  Client sub_client = MustConnect(mgr.address());
  auto sub = sub_client.Subscribe();
  ASSERT_TRUE(sub.ok());
  Client producer = MustConnect(mgr.address());
  // 300 seals with nobody reading: the producer is never held up.
  for (int i = 0; i < 300; ++i) {
    ASSERT_TRUE(producer.Put(ObjectId::FromName("ov" + std::to_string(i)), "v").ok());
  }
  Notification n = MustNext(*sub);
  EXPECT_EQ(n.event, GISMO_EVENT_OVERFLOW);
  // After the overflow, live events flow again.
  ObjectId after = ObjectId::FromName("after");
  ASSERT_TRUE(producer.Put(after, "v").ok());
  n = MustNext(*sub);
  EXPECT_EQ(n.event, GISMO_EVENT_SEALED);
  EXPECT_EQ(n.id, after);
}

TEST(SubscribeTest, KilledSubscriberCostsNothing) {
  ManagerProcess mgr;
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

TEST(SubscribeTest, ManySubscribersAllSeeEverything) {
  ManagerProcess mgr;
  constexpr int kSubs = 8, kObjects = 100;
  std::vector<Client> clients;
  std::vector<Subscription> subs;
  for (int i = 0; i < kSubs; ++i) {
    clients.push_back(MustConnect(mgr.address()));
    auto s = clients.back().Subscribe();
    ASSERT_TRUE(s.ok());
    subs.push_back(*s);
  }
  Client producer = MustConnect(mgr.address());
  std::thread t([&] {
    for (int i = 0; i < kObjects; ++i) {
      ASSERT_TRUE(producer.Put(ObjectId::FromName("m" + std::to_string(i)), "z").ok());
    }
  });
  for (auto& s : subs) {
    for (int i = 0; i < kObjects; ++i) {
      Notification n = MustNext(s);
      ASSERT_EQ(n.event, GISMO_EVENT_SEALED);
      EXPECT_EQ(n.id, ObjectId::FromName("m" + std::to_string(i)));  // seal order
    }
  }
  t.join();
}

// A manager restart ends no subscription: the subscriber re-attaches, and
// what was sealed meanwhile (the ring is in the region) is delivered.
TEST(SubscribeTest, SubscriptionSurvivesManagerRestart) {
  ManagerProcess mgr;
  Client c = MustConnect(mgr.address());
  Client producer = MustConnect(mgr.address());
  auto sub = c.Subscribe();
  ASSERT_TRUE(sub.ok());
  EXPECT_EQ(sub->Next(0).status().code(), GISMO_ERR_TIMEOUT);
  mgr.Kill();
  ASSERT_TRUE(producer.Put(ObjectId::FromName("while-down"), "x").ok());
  mgr.Start();
  Notification n = MustNext(*sub);
  EXPECT_EQ(n.event, GISMO_EVENT_SEALED);
  EXPECT_EQ(n.id, ObjectId::FromName("while-down"));
  // And the next seal wakes it through the new manager (fd-only waiters too).
  ASSERT_TRUE(producer.Put(ObjectId::FromName("after"), "y").ok());
  pollfd p{sub->fd(), POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 20000), 1);
  n = MustNext(*sub);
  EXPECT_EQ(n.id, ObjectId::FromName("after"));
}

// A session that ends (here by an operator's fence) makes an fd-only waiter
// readable, and the next call says why.
TEST(SubscribeTest, EndedSessionMakesTheFdReadable) {
  ManagerProcess mgr;
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

TEST(SubscribeTest, WatchCallbackAndRangeFor) {
  ManagerProcess mgr;
  Client producer = MustConnect(mgr.address());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(producer.Put(ObjectId::FromName("w" + std::to_string(i)), "w").ok());
  }
  Client watcher = MustConnect(mgr.address());
  int seen = 0;
  ASSERT_TRUE(watcher.Watch([&](const Notification& n) { return ++seen < 3; }).ok());
  EXPECT_EQ(seen, 3);
  Client ranger = MustConnect(mgr.address());
  auto sub = ranger.Subscribe();
  ASSERT_TRUE(sub.ok());
  int ranged = 0;
  for (const Notification& n : *sub) {
    EXPECT_EQ(n.event, GISMO_EVENT_SEALED);
    if (++ranged == 3) break;
  }
  EXPECT_EQ(ranged, 3);
  // Not subscribed: a clear error.
  gismo_notification_t out;
  EXPECT_EQ(gismo_next_notification(producer.c_client(), &out, 0), GISMO_ERR_INVALID_ARGUMENT);
}

}  // namespace
}  // namespace gismo
