// Notifications: order, late subscribers, deletions, overflow, many
// subscribers, against a manager inside the test process. Subscribers in
// other processes, on other nodes, killed, or outliving the manager:
// multiprocess_test.
#include <gtest/gtest.h>
#include <poll.h>

#include <atomic>
#include <chrono>
#include <gismo/gismo.hpp>
#include <map>
#include <thread>

#include "manager_fixture.h"

namespace gismo {
namespace {

using testing::MustNext;

class SubscribeTest : public testing::InProcessManagerTest {};

// A ring of 64 events (gismo-manager --event-capacity 64).
class SubscribeSmallRingTest : public testing::InProcessManagerTest {
  manager::ManagerOptions Options() const override {
    manager::ManagerOptions options = testing::InProcessManagerOptions();
    options.format.event_capacity = 64;
    return options;
  }
};

TEST_F(SubscribeTest, LateSubscriberLearnsSealedObjectsThenLiveEvents) {
  Client producer = Connect();
  ObjectId a = ObjectId::FromName("a"), b = ObjectId::FromName("b");
  ASSERT_TRUE(producer.Put(a, "aaaa").ok());
  auto unsealed = producer.Create(b, 2);  // not reported until sealed
  ASSERT_TRUE(unsealed.ok());

  Client sub_client = Connect();
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

// A timeout is the least a Next waits: one of 1 ms polls for that long
// (its milliseconds are rounded up, never down to a wait of 0).
TEST_F(SubscribeTest, ANextWithAOneMillisecondTimeoutWaitsThatLong) {
  Client sub_client = Connect();
  auto sub = sub_client.Subscribe();
  ASSERT_TRUE(sub.ok()) << sub.status().ToString();
  for (int i = 0; i < 5; ++i) {
    const auto start = std::chrono::steady_clock::now();
    EXPECT_EQ(sub->Next(1).status().code(), GISMO_ERR_TIMEOUT);
    EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(1)) << i;
  }
}

TEST_F(SubscribeSmallRingTest, SlowSubscriberGetsOverflowAndProducersNeverBlock) {
  Client sub_client = Connect();
  auto sub = sub_client.Subscribe();
  ASSERT_TRUE(sub.ok());
  Client producer = Connect();
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

TEST_F(SubscribeTest, ManySubscribersAllSeeEverything) {
  constexpr int kSubs = 8, kObjects = 100;
  std::vector<Client> clients;
  std::vector<Subscription> subs;
  for (int i = 0; i < kSubs; ++i) {
    clients.push_back(Connect());
    auto s = clients.back().Subscribe();
    ASSERT_TRUE(s.ok());
    subs.push_back(*s);
  }
  Client producer = Connect();
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

// Subscribers that join while objects are sealed and deleted: events that
// race with the initial listing are neither repeated nor invented. Per id,
// a subscriber sees seals and deletes alternate, starting with a seal
// (whether the race is hit in a run or not, this must hold). At most 2001
// events: the ring (65536 in this region) never overflows, so every
// subscriber reads up to "done".
TEST_F(SubscribeTest, SubscribersJoiningDuringSealsAndDeletesSeeEachChangeOnce) {
  constexpr int kSubs = 12, kLive = 8, kRounds = 1000;
  Client producer = Connect();
  std::atomic<bool> stop{false};
  std::thread t([&] {
    for (int k = 0; k < kRounds && !stop.load(std::memory_order_relaxed); ++k) {
      // Ids come back (k % 64): a delete and a new seal of one id.
      ASSERT_TRUE(producer.Put(ObjectId::FromName("r" + std::to_string(k % 64)), "r").ok());
      if (k >= kLive) {
        ASSERT_TRUE(
            producer.Delete(ObjectId::FromName("r" + std::to_string((k - kLive) % 64))).ok());
      }
    }
  });
  std::vector<Client> clients;
  std::vector<Subscription> subs;
  for (int i = 0; i < kSubs; ++i) {
    clients.push_back(Connect());
    auto sub = clients.back().Subscribe();
    ASSERT_TRUE(sub.ok()) << sub.status().ToString();
    subs.push_back(*sub);
  }
  stop.store(true, std::memory_order_relaxed);
  t.join();
  const ObjectId done = ObjectId::FromName("done");
  ASSERT_TRUE(producer.Put(done, "d").ok());
  for (int i = 0; i < kSubs; ++i) {
    std::map<ObjectId, bool> sealed;  // what the subscriber has been told
    for (;;) {
      auto n = subs[i].Next(10000);
      ASSERT_TRUE(n.ok()) << "subscriber " << i << ": " << n.status().ToString();
      ASSERT_FALSE(n->overflow()) << "subscriber " << i;
      if (n->id == done) break;
      auto it = sealed.emplace(n->id, false).first;
      if (n->event == GISMO_EVENT_SEALED) {
        EXPECT_FALSE(it->second) << "subscriber " << i << ": " << n->id.Hex() << " sealed twice";
        it->second = true;
      } else {
        EXPECT_TRUE(it->second) << "subscriber " << i << ": " << n->id.Hex()
                                << " deleted, never seen sealed";
        it->second = false;
      }
    }
  }
}

TEST_F(SubscribeTest, WatchCallbackAndRangeFor) {
  Client producer = Connect();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(producer.Put(ObjectId::FromName("w" + std::to_string(i)), "w").ok());
  }
  Client watcher = Connect();
  int seen = 0;
  ASSERT_TRUE(watcher.Watch([&](const Notification& n) { return ++seen < 3; }).ok());
  EXPECT_EQ(seen, 3);
  Client ranger = Connect();
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

// A producer raised kick_pending and died before its kick reached the
// manager: later producers see the kick pending and do not send their own.
// The manager notices a kick_pending left set over two ticks and notifies
// the subscribers itself, so they are not left waiting.
TEST_F(SubscribeTest, KickLeftPendingByADeadProducerIsCleared) {
  auto region = OpenRegion();
  ASSERT_NE(region, nullptr);
  Client sub_client = Connect();
  auto sub = sub_client.Subscribe();
  ASSERT_TRUE(sub.ok()) << sub.status().ToString();
  Client producer = Connect();
  EXPECT_EQ(sub->Next(0).status().code(), GISMO_ERR_TIMEOUT);  // nothing yet
  // The dead producer's state: the kick marked pending, never sent.
  region->sb().kick_pending.store(1, std::memory_order_seq_cst);
  const ObjectId id = ObjectId::FromName("after-a-lost-kick");
  ASSERT_TRUE(producer.Put(id, "data").ok());
  // The subscription's fd turns readable only when the manager notifies.
  pollfd p{sub->fd(), POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 30000), 1) << "the subscriber was never notified";
  auto n = sub->Next(0);
  ASSERT_TRUE(n.ok()) << n.status().ToString() << ": the subscriber was never notified";
  EXPECT_EQ(n->event, GISMO_EVENT_SEALED);
  EXPECT_EQ(n->id, id);
}

}  // namespace
}  // namespace gismo
