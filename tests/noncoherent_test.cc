// A region formatted non-coherent (--coherence non-coherent, issue #14):
// formatted (with its request and response rings, format 7) and readable,
// checked by fsck, and served: the manager owns the metadata and applies
// the clients' requests (doc/noncoherent.md).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <gismo/gismo.hpp>
#include <iostream>
#include <iterator>
#include <optional>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "fsck/fsck.h"
#include "region/cache_lines.h"
#include "region/nc_requests.h"
#include "region/region.h"
#include "region/request_ring.h"
#include "region/view_sim.h"
#include "store/nc_client.h"
#include "testing/in_process_manager.h"
#include "testing/manager_process.h"
#include "testing/process.h"

namespace gismo {
namespace {

using region::CoherenceMode;

TEST(NonCoherent, NamesOfTheModes) {
  EXPECT_STREQ(region::CoherenceModeName(1), "coherent");
  EXPECT_STREQ(region::CoherenceModeName(2), "non-coherent");
  EXPECT_STREQ(region::CoherenceModeName(7), "unknown");
}

std::vector<uint8_t> Pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 7);
  return v;
}

// The manager serves a non-coherent region: clients' creates, seals and
// deletes are requests it applies; gets are local. Through the public API,
// as users meet it.
class NonCoherentServed : public ::testing::Test {
 protected:
  virtual uint32_t OwnerThreads() const { return 1; }
  void SetUp() override {
    ASSERT_TRUE(region::NonCoherentSupported());
    manager::ManagerOptions o = testing::InProcessManagerOptions(64ull << 20);
    o.format.coherence = CoherenceMode::kNonCoherent;
    o.owner_threads = OwnerThreads();
    mgr_ = std::make_unique<testing::InProcessManager>(o);
    ASSERT_TRUE(mgr_->Start().ok());
  }
  Client Connect() {
    auto c = Client::Connect(mgr_->address());
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(*c) : Client();
  }
  std::vector<std::string> Problems() {
    // Offline, as gismo-fsck checks a region no manager serves.
    mgr_->Stop();
    auto r = region::Region::Open(mgr_->region_path());
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok()) return {"no region"};
    auto rep = fsck::Check(**r, nullptr);
    EXPECT_TRUE(rep.ok()) << rep.status().ToString();
    return rep.ok() ? rep->problems : std::vector<std::string>{"fsck failed"};
  }
  std::unique_ptr<testing::InProcessManager> mgr_;
};

TEST_F(NonCoherentServed, ObjectsGoFromOneClientToAnother) {
  Client writer = Connect(), reader = Connect();
  auto usage = writer.Usage();
  ASSERT_TRUE(usage.ok());
  EXPECT_EQ(usage->coherence_mode, static_cast<uint32_t>(CoherenceMode::kNonCoherent));
  const ObjectId id = ObjectId::FromName("nc-object");
  const auto bytes = Pattern(3 << 20, 3);
  auto buf = writer.Create(id, bytes.size(), std::vector<uint8_t>{'m', 'd'});
  ASSERT_TRUE(buf.ok()) << buf.status().ToString();
  std::memcpy(buf->data(), bytes.data(), bytes.size());
  EXPECT_FALSE(*reader.Contains(id)) << "not sealed yet";
  ASSERT_TRUE(buf->SealAndRelease().ok());
  auto got = reader.Get(id, 0);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_EQ(got->size(), bytes.size());
  EXPECT_EQ(std::memcmp(got->data(), bytes.data(), bytes.size()), 0);
  ASSERT_EQ(got->metadata().size(), 2u);
  auto info = writer.Stat(id);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->ref_count, 1u) << "the reader's";
  auto clients = writer.Clients();
  ASSERT_TRUE(clients.ok());
  ASSERT_EQ(clients->size(), 2u);
  const uint32_t reader_slot = reader.Identity()->slot;
  for (const gismo_client_info_t& c : *clients) {
    EXPECT_EQ(c.held_objects, c.client == reader_slot ? 1u : 0u) << "slot " << c.client;
  }
  ASSERT_TRUE(writer.Delete(id).ok());
  EXPECT_EQ(writer.Stat(id)->state, GISMO_STATE_DELETING) << "the reader still holds it";
  ASSERT_TRUE(got->Release().ok());
  // The owner frees it once no table holds it (a sweep on its next pass).
  while (writer.Stat(id).ok()) std::this_thread::yield();
  auto list = reader.List();
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty());
  EXPECT_TRUE(writer.Disconnect().ok());
  EXPECT_TRUE(reader.Disconnect().ok());
  EXPECT_TRUE(Problems().empty());
}

// Several owner threads (doc/noncoherent.md 9.3): each applies the
// requests of the client slots s with s % 3 == its number, in a Txn slot of
// its own, listed for a successor; the deletes one thread makes wait for a
// release another thread serves.
class NonCoherentOwnerThreads : public NonCoherentServed {
 protected:
  uint32_t OwnerThreads() const override { return 3; }
};

TEST_F(NonCoherentOwnerThreads, ClientsOfEveryThreadAreServedTogether) {
  constexpr int kClients = 6, kObjects = 120;
  std::vector<Client> clients;
  std::set<uint32_t> threads;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(Connect());
    threads.insert(clients.back().Identity()->slot % 3);
  }
  EXPECT_EQ(threads.size(), 3u) << "clients of every owner thread";
  {
    auto r = region::Region::Open(mgr_->region_path());
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    const region::Superblock& sb = (*r)->sb();
    EXPECT_EQ(sb.owner_sleep.threads, 3u);
    EXPECT_EQ(sb.owner_helpers.slots[0], 0u);
    for (uint32_t k = 1; k < 3; ++k) {
      const uint64_t slot = sb.owner_helpers.slots[k];
      ASSERT_NE(slot, 0u) << "helper " << k << " is listed";
      EXPECT_EQ(region::SlotStateOf((*r)->slot(slot - 1).state.load()), region::SlotState::kActive);
    }
    EXPECT_EQ(sb.owner_helpers.slots[3], 0u);
  }
  auto id = [](int client, int n) {
    return ObjectId::FromName("t" + std::to_string(client) + "-" + std::to_string(n));
  };
  std::vector<std::thread> workers;
  std::atomic<int> failures{0}, created{0};
  for (int i = 0; i < kClients; ++i) {
    workers.emplace_back([&, i] {
      Client& c = clients[i];
      const int next = (i + 1) % kClients;
      for (int n = 0; n < kObjects; ++n) {
        const auto bytes = Pattern(1000 + 37 * n, static_cast<uint8_t>(i * 16 + n));
        auto buf = c.Create(id(i, n), bytes.size());
        if (!buf.ok()) {
          ADD_FAILURE() << "client " << i << " create " << n << ": " << buf.status().ToString();
          ++failures;
          break;
        }
        std::memcpy(buf->data(), bytes.data(), bytes.size());
        if (!buf->SealAndRelease().ok()) ++failures;
        // The neighbour's object (another owner thread's client): read,
        // deleted by its creator while held here, freed at this release.
        if (n % 3 == 0) {
          auto got = c.Get(id(next, n), 30000);
          if (!got.ok()) {
            ADD_FAILURE() << "client " << i << " get " << n << ": " << got.status().ToString();
            ++failures;
            break;
          }
          const auto want = Pattern(1000 + 37 * n, static_cast<uint8_t>(next * 16 + n));
          if (got->size() != want.size() || std::memcmp(got->data(), want.data(), want.size())) {
            ++failures;
          }
          if (!got->Release().ok()) ++failures;
        }
      }
      // Every neighbour's gets done before any delete.
      created.fetch_add(1);
      while (created.load() < kClients && failures.load() == 0) std::this_thread::yield();
      for (int n = 0; n < kObjects; ++n) {
        if (!c.Delete(id(i, n)).ok()) ++failures;
      }
    });
  }
  for (auto& w : workers) w.join();
  EXPECT_EQ(failures.load(), 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (int i = 0; i < kClients; ++i) {
    for (int n = 0; n < kObjects; ++n) {
      Result<gismo_object_info_t> st = Status();
      while ((st = clients[0].Stat(id(i, n))).ok() && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::yield();
      }
      ASSERT_FALSE(st.ok()) << "object " << i << "-" << n << " is never freed: state " << st->state
                            << ", refs " << st->ref_count;
    }
  }
  auto usage = clients[0].Usage();
  ASSERT_TRUE(usage.ok());
  EXPECT_EQ(usage->object_count, 0u);
  EXPECT_EQ(usage->client_count, static_cast<uint32_t>(kClients)) << "the helpers are no clients";
  auto plain = region::Region::Open(mgr_->region_path());
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(usage->max_clients, (*plain)->max_clients() - OwnerThreads())
      << "slot 0 and the helpers' are no client's";
  for (Client& c : clients) EXPECT_TRUE(c.Disconnect().ok());
  for (auto& p : Problems()) ADD_FAILURE() << p;
  // A clean stop freed the helpers' slots and emptied the list.
  auto r = region::Region::Open(mgr_->region_path());
  ASSERT_TRUE(r.ok());
  for (uint32_t k = 0; k < region::kMaxOwnerThreads; ++k) {
    EXPECT_EQ((*r)->sb().owner_helpers.slots[k], 0u);
  }
}

// A manager (the test variant, whose crash points GISMO_CRASH_AT arms) of a
// non-coherent region with two owner threads, dying at `point`: in any of
// its threads, or (helper_only) in its helper thread only; its region stays
// for a successor. Client a is in slot 2 (thread 0), b in slot 3 (the
// helper took slot 1, and serves b).
struct DyingTwoThreadManager {
  testing::ManagerProcessOptions options;
  testing::ManagerProcess first;
  std::optional<Client> a, b;

  void Start(const std::string& point, bool helper_only) {
    options.binary = GISMO_MANAGER_TESTING_BIN;
    options.size = "64MiB";
    options.keep_region = true;
    options.extra_args = {"--coherence", "non-coherent", "--owner-threads", "2"};
    options.env = {"GISMO_CRASH_AT=" + point};
    if (helper_only) options.env.push_back("GISMO_CRASH_THREAD=owner-helper");
    first = testing::ManagerProcess(options);
    ASSERT_TRUE(first.Start()) << first.error();
    auto ca = Client::Connect(first.address());
    auto cb = Client::Connect(first.address());
    ASSERT_TRUE(ca.ok() && cb.ok());
    a.emplace(std::move(*ca));
    b.emplace(std::move(*cb));
    ASSERT_EQ(b->Identity()->slot % 2, 1u) << "b's requests go to the helper";
  }
};

// The manager dies inside a helper thread's Txn (a create of a client it
// serves, before the commit): its successor, with one thread, undoes that
// Txn (the shard lock it held is free again, the create never happened),
// frees the helper's slot, and takes the create again from the client's
// ring (its head was not committed), which the client then seals.
TEST(NonCoherentOwnerThreadsProcess, ASuccessorUndoesWhatAHelperLeftHalfDone) {
  ASSERT_TRUE(region::NonCoherentSupported());
  DyingTwoThreadManager m;
  ASSERT_NO_FATAL_FAILURE(m.Start("nc_owner.before_commit", false));
  testing::ManagerProcess& first = m.first;
  const testing::ManagerProcessOptions& mo = m.options;
  std::optional<Client>&a = m.a, &b = m.b;
  const ObjectId x = ObjectId::FromName("helper-made");
  EXPECT_FALSE(b->Create(x, 5000).ok()) << "the owner died before it answered";
  int status = 0;
  ASSERT_TRUE(first.StopWithin(30, &status));
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 77) << "died at the crash point";
  {
    auto r = region::Region::Open(first.region());
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    const uint64_t helper = (*r)->sb().owner_helpers.slots[1];
    ASSERT_EQ(helper, 2u) << "the helper listed slot 1";
    uint32_t held = 0;
    for (uint32_t s = 0; s < (*r)->num_shards(); ++s) {
      held += (*r)->shard(s).lock.load() != 0;
    }
    EXPECT_EQ(held, 1u) << "the dead helper holds the shard lock of its create";
  }
  testing::ManagerProcessOptions so = mo;
  so.region = first.region();
  so.env.clear();
  so.extra_args = {"--coherence", "non-coherent"};
  so.listen = {first.address()};
  so.log_level = "info";
  so.stderr_path = "/tmp/" + testing::UniqueName("successor") + ".log";
  testing::ManagerProcess successor(so);
  ASSERT_TRUE(successor.Start()) << successor.error();
  std::ifstream log_file(so.stderr_path);
  const std::string log((std::istreambuf_iterator<char>(log_file)), {});
  EXPECT_NE(log.find("owner thread 1 of the previous manager (slot 1): its Txn undone"),
            std::string::npos)
      << log;
  unlink(so.stderr_path.c_str());
  // b asks again: answered with the object the successor made from b's
  // ring (its head was not committed), then sealed and read by a.
  const auto bytes = Pattern(5000, 9);
  Result<MutableBuffer> buf = Status(GISMO_ERR_TIMEOUT, "");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!(buf = b->Create(x, bytes.size())).ok() && std::chrono::steady_clock::now() < deadline) {
  }
  ASSERT_TRUE(buf.ok()) << buf.status().ToString();
  std::memcpy(buf->data(), bytes.data(), bytes.size());
  ASSERT_TRUE(buf->SealAndRelease().ok());
  auto got = a->Get(x, 30000);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(std::memcmp(got->data(), bytes.data(), bytes.size()), 0);
  ASSERT_TRUE(got->Release().ok());
  EXPECT_TRUE(a->Disconnect().ok());
  EXPECT_TRUE(b->Disconnect().ok());
  successor.Stop();
  auto r = region::Region::Open(first.region());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(region::SlotStateOf((*r)->slot(1).state.load()), region::SlotState::kFree);
  EXPECT_EQ((*r)->sb().owner_helpers.slots[1], 0u);
  auto rep = fsck::Check(**r, nullptr);
  ASSERT_TRUE(rep.ok());
  EXPECT_TRUE(rep->problems.empty()) << rep->problems.front();
  unlink(first.region().c_str());
}

// The manager dies at each crash point a helper thread's request passes
// (GISMO_CRASH_THREAD=owner-helper: never in its io thread), in the middle of
// a client's script of creates, seals, name changes, a deferred delete and a
// delete. A successor with one thread undoes the helper's Txn; then every
// step the client saw succeed still holds, the step it saw fail either
// happened whole or not at all, another client reads every sealed object,
// and once the clients leave, fsck finds the region sound.
class NonCoherentHelperDeath : public ::testing::TestWithParam<const char*> {};

TEST_P(NonCoherentHelperDeath, ASuccessorLeavesEveryStepWholeOrUndone) {
  ASSERT_TRUE(region::NonCoherentSupported());
  DyingTwoThreadManager m;
  ASSERT_NO_FATAL_FAILURE(m.Start(GetParam(), true));
  testing::ManagerProcess& first = m.first;
  const testing::ManagerProcessOptions& mo = m.options;
  std::optional<Client>&a = m.a, &b = m.b;
  const ObjectId small = ObjectId::FromName("helper-small");
  const ObjectId large = ObjectId::FromName("helper-large");
  const auto small_bytes = Pattern(3000, 3), large_bytes = Pattern(300000, 5);
  auto put = [&](const ObjectId& id, const std::vector<uint8_t>& bytes) -> Status {
    auto buf = b->Create(id, bytes.size());
    if (!buf.ok()) return buf.status();
    std::memcpy(buf->data(), bytes.data(), bytes.size());
    return buf->SealAndRelease();
  };
  std::optional<Buffer> held;
  auto hold = [&]() -> Status {
    auto got = b->Get(small, 0);
    if (!got.ok()) return got.status();
    held = std::move(*got);
    return Status();
  };
  // The script; `done` steps succeeded, step `done` (if any) failed.
  const std::vector<std::function<Status()>> steps = {
      [&] { return put(small, small_bytes); },
      [&] { return put(large, large_bytes); },
      [&] { return b->BindName("helper-name", large); },
      [&] { return b->UnbindName("helper-name"); },
      hold,
      [&] { return b->Delete(small); },  // deferred: b holds it
      [&] { return held->Release(); },   // the last release frees it
      [&] { return b->Delete(large); },
  };
  size_t done = 0;
  while (done < steps.size() && steps[done]().ok()) ++done;
  int status = 0;
  ASSERT_TRUE(first.StopWithin(30, &status));
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 77)
      << GetParam() << ": the script ran " << done << " steps and the manager did not die there";
  ASSERT_LT(done, steps.size());

  testing::ManagerProcessOptions so = mo;
  so.region = first.region();
  so.env.clear();
  so.extra_args = {"--coherence", "non-coherent"};
  so.listen = {first.address()};
  testing::ManagerProcess successor(so);
  ASSERT_TRUE(successor.Start()) << successor.error();
  // b is served again (it re-attaches on its next call).
  // Each try its own id: a try whose seal timed out (a successor slow to
  // start, under a sanitizer) may leave its create applied, and the same id
  // would then be refused as existing until the deadline.
  std::vector<ObjectId> afters;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  Status again;
  do {
    if (!afters.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(10));  // backoff
    afters.push_back(ObjectId::FromName("helper-after-" + std::to_string(afters.size())));
    again = b->Put(afters.back(), "after");
  } while (!again.ok() && std::chrono::steady_clock::now() < deadline);
  ASSERT_TRUE(again.ok()) << again.ToString();

  // What each object may be after `done` steps: absent, unsealed (b's create
  // failed after the successor made it from b's ring), sealed with its
  // bytes, or deleting (a delete of a held object, or a free that failed).
  enum : int { kAbsent = 1, kUnsealed = 2, kSealed = 4, kDeleting = 8 };
  auto expect_object = [&](const ObjectId& id, const std::vector<uint8_t>& bytes, int allowed,
                           const char* what) {
    auto info = a->Stat(id);
    int state = kAbsent;
    if (info.ok()) {
      state = info->state == GISMO_STATE_SEALED     ? kSealed
              : info->state == GISMO_STATE_UNSEALED ? kUnsealed
                                                    : kDeleting;
    } else {
      EXPECT_EQ(info.status().code(), GISMO_ERR_OBJECT_NOT_FOUND) << what;
    }
    EXPECT_NE(state & allowed, 0) << what << " after " << done << " steps: state " << state
                                  << ", allowed " << allowed;
    if (state != kSealed) return;
    auto got = a->Get(id, 0);
    ASSERT_TRUE(got.ok()) << what << ": " << got.status().ToString();
    ASSERT_EQ(got->size(), bytes.size()) << what;
    EXPECT_EQ(std::memcmp(got->data(), bytes.data(), bytes.size()), 0) << what;
    EXPECT_TRUE(got->Release().ok());
  };
  const int kMade = kAbsent | kUnsealed | kSealed;  // its put failed
  const int small_states[] = {
      kMade,   kSealed, kSealed, kSealed, kSealed, kSealed | kDeleting, kDeleting | kAbsent,
      kAbsent, kAbsent};
  const int large_states[] = {kAbsent, kMade,   kSealed, kSealed,
                              kSealed, kSealed, kSealed, kSealed | kDeleting | kAbsent,
                              kAbsent};
  expect_object(small, small_bytes, small_states[done], "the small object");
  expect_object(large, large_bytes, large_states[done], "the large object");
  // The name: bound by step 2, unbound by step 3; either after one of them failed.
  auto name = a->LookupName("helper-name");
  if (done != 2 && done != 3) {
    EXPECT_FALSE(name.ok()) << "the name after " << done << " steps";
  }
  if (held && done < 6) {
    EXPECT_TRUE(held->Release().ok());
  }
  held.reset();
  std::vector<ObjectId> made = {small, large};
  made.insert(made.end(), afters.begin(), afters.end());
  for (const ObjectId& id : made) {
    // An object the successor made from b's ring for a create b saw fail
    // is unsealed and b's: b's departure aborts it (below).
    Status s = b->Delete(id);
    EXPECT_TRUE(s.ok() || s.code() == GISMO_ERR_OBJECT_NOT_FOUND ||
                s.code() == GISMO_ERR_OBJECT_NOT_SEALED)
        << s.ToString();
  }
  (void)b->UnbindName("helper-name");
  // b leaves, with a goodbye or (if it has not re-attached yet) a
  // departure mark; either way the successor aborts what b left unsealed.
  EXPECT_TRUE(b->Disconnect().ok());
  // The successor recovers b's slot once it has its goodbye or reads its
  // mark: it is never suspected (on this kernel that would kill this test).
  auto unsealed_left = [&] {
    for (const ObjectId& id : {small, large}) {
      auto info = a->Stat(id);
      if (info.ok() && info->state == GISMO_STATE_UNSEALED) return true;
    }
    return false;
  };
  const auto left_by = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (unsealed_left() && std::chrono::steady_clock::now() < left_by) {
    std::this_thread::yield();
  }
  EXPECT_FALSE(unsealed_left()) << "an object b's departure left unsealed";
  EXPECT_TRUE(a->Disconnect().ok());
  successor.Stop();
  auto r = region::Region::Open(first.region());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)->sb().owner_helpers.slots[1], 0u);
  auto rep = fsck::Check(**r, nullptr);
  ASSERT_TRUE(rep.ok());
  EXPECT_TRUE(rep->problems.empty()) << GetParam() << ": " << rep->problems.front();
  EXPECT_EQ(rep->sealed + rep->unsealed, 0u) << "every object was deleted";
  unlink(first.region().c_str());
}

INSTANTIATE_TEST_SUITE_P(EveryPointOfARequest, NonCoherentHelperDeath,
                         ::testing::Values("nc_owner.before_commit", "nc_owner.free_before_commit",
                                           "nc_owner.before_answer", "txn.before_commit",
                                           "txn.after_commit", "alloc.new_slab",
                                           "alloc.block_taken", "alloc.pages_taken",
                                           "bind.after_entry", "unbind.after_shift",
                                           "free.block_cleared", "free.pages_cleared",
                                           "event.after_claim", "event.before_pending"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           std::string n = info.param;
                           for (char& c : n) {
                             if (c == '.') c = '_';
                           }
                           return n;
                         });

// A regular file of `size` bytes in /dev/shm for the simulator's own tests,
// mapped as a simulated host's view by Map; unmapped, closed and removed
// when the test ends, whatever it asserted.
struct SimulatedFile {
  SimulatedFile(const std::string& name, uint64_t size)
      : path("/dev/shm/" + testing::UniqueName(name)), size(size) {
    fd = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0 && ftruncate(fd, static_cast<off_t>(size)) != 0) {
      close(fd);
      fd = -1;
    }
  }
  ~SimulatedFile() {
    if (view != nullptr) region::view_sim::Unmap(view);
    if (fd >= 0) close(fd);
    unlink(path.c_str());
  }
  uint8_t* Map() { return view = region::view_sim::Map(fd, size, 4096); }
  std::string path;
  uint64_t size;
  int fd = -1;
  uint8_t* view = nullptr;
};

// The simulator's line locks (region/view_sim.h): a host killed inside a
// line's write-back leaves the line's lock held. A waiter takes it over as
// soon as the holder is dead, whether it ran in the waiter's PID namespace
// or another (where its pid means nothing here), even before it is reaped,
// and never while it lives or when the holder is the waiter's own process.
TEST(NonCoherent, TheSimulatorSeesADeadLineLockHolderInAnyPidNamespace) {
  if (!region::view_sim::kEnabled) {
    GTEST_SKIP() << "needs the simulator build (cmake -DGISMO_NONCOHERENT_SIM=ON)";
  }
  SimulatedFile file("simlocks", 1 << 20);
  ASSERT_GE(file.fd, 0);
  uint8_t* view = file.Map();
  ASSERT_NE(view, nullptr);
  // A holder in a child: in this PID namespace, or (as root) in a new one,
  // where it is pid 1. The pipe carries the holder's pid as this namespace
  // knows it, then a byte once the holder holds the line's lock.
  auto holder = [&](uint8_t* line, bool own_namespace, int* pipe_read) -> pid_t {
    int p[2];
    EXPECT_EQ(pipe(p), 0);
    const pid_t child = fork();
    if (child != 0) {
      close(p[1]);
      *pipe_read = p[0];
      return child;
    }
    close(p[0]);
    if (!own_namespace) {
      if (unshare(CLONE_NEWPID) != 0) _exit(2);
      // The holder waits for the end of `go` before it writes: its pid,
      // which only this process can say, comes first on the pipe.
      int go[2];
      if (pipe(go) != 0) _exit(2);
      const pid_t inner = fork();
      if (inner != 0) {
        const pid_t global = inner;  // fork's answer is in this (outer) namespace
        (void)!write(p[1], &global, sizeof global);
        close(go[1]);
        int st = 0;
        waitpid(inner, &st, 0);
        _exit(0);
      }
      // Killed with this process, so that a failed test leaves no holder.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      close(go[1]);
      char end = 0;
      (void)!read(go[0], &end, 1);
    } else {
      const pid_t me = getpid();
      (void)!write(p[1], &me, sizeof me);
    }
    region::view_sim::HoldLineLockForTesting(line);
    const char held = 'x';
    (void)!write(p[1], &held, 1);
    pause();
    _exit(0);
  };
  for (const bool own_namespace : {true, false}) {
    SCOPED_TRACE(own_namespace ? "this PID namespace" : "another PID namespace");
    uint8_t* line = view + (own_namespace ? 0 : 4096);
    int from = -1;
    const pid_t child = holder(line, own_namespace, &from);
    // Whatever the test asserts, the holder is gone before the file is
    // unmapped (which would wait for the line's lock while it lives).
    struct Reaper {
      pid_t pid;
      ~Reaper() {
        if (pid <= 0) return;
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
      }
    } reaper{child};
    pid_t victim = 0;
    if (read(from, &victim, sizeof victim) != sizeof victim) {
      int st = 0;
      waitpid(child, &st, 0);
      reaper.pid = 0;
      close(from);
      ASSERT_FALSE(own_namespace);
      std::cerr << "skipped: a new PID namespace needs root\n";
      continue;
    }
    char held = 0;
    ASSERT_EQ(read(from, &held, 1), 1);
    close(from);
    EXPECT_FALSE(region::view_sim::LineLockHolderGoneForTesting(line)) << "the holder lives";
    ASSERT_EQ(kill(victim, SIGKILL), 0);
    siginfo_t info{};
    if (own_namespace) {
      // Dead but not reaped (a zombie): its descriptions are closed already.
      ASSERT_EQ(waitid(P_PID, child, &info, WEXITED | WNOWAIT), 0);
      EXPECT_TRUE(region::view_sim::LineLockHolderGoneForTesting(line));
    }
    int st = 0;
    ASSERT_EQ(waitpid(child, &st, 0), child);
    reaper.pid = 0;
    EXPECT_TRUE(region::view_sim::LineLockHolderGoneForTesting(line)) << "the holder died";
    EXPECT_TRUE(region::view_sim::Flush(line, 64));  // takes the lock over
  }
  // This process's own hold (another of its threads, as far as a waiter
  // knows) is never taken for a dead one's.
  ASSERT_TRUE(region::view_sim::HoldLineLockForTesting(view + 8192));
  EXPECT_FALSE(region::view_sim::LineLockHolderGoneForTesting(view + 8192));
}

// A simulated host's cache starts as memory holds the region when it maps
// it: bytes before, between and after the file's holes, and in a page
// written with zeros, are all seen; its lines start clean, so memory that
// changes later is seen only after an invalidate. The caller's file offset
// is left as it was.
TEST(NonCoherent, TheSimulatorsViewStartsAsMemoryHoldsItAroundHoles) {
  if (!region::view_sim::kEnabled) {
    GTEST_SKIP() << "needs the simulator build (cmake -DGISMO_NONCOHERENT_SIM=ON)";
  }
  constexpr uint64_t kSize = 8 << 20;
  SimulatedFile file("simfill", kSize);
  ASSERT_GE(file.fd, 0);
  const int fd = file.fd;
  const std::vector<uint8_t> zeros(4096, 0);
  ASSERT_EQ(pwrite(fd, zeros.data(), zeros.size(), 1 << 20), 4096);
  const std::pair<uint64_t, uint8_t> marks[] = {
      {0, 1}, {(3 << 20) + 100, 2}, {(5 << 20) + 4095, 3}, {(5 << 20) + 4096, 4}, {kSize - 1, 5}};
  for (const auto& [off, byte] : marks) {
    ASSERT_EQ(pwrite(fd, &byte, 1, static_cast<off_t>(off)), 1);
  }
  ASSERT_EQ(lseek(fd, 12345, SEEK_SET), 12345);
  uint8_t* view = file.Map();
  ASSERT_NE(view, nullptr);
  EXPECT_EQ(lseek(fd, 0, SEEK_CUR), 12345);
  uint64_t nonzero = 0;
  for (uint64_t i = 0; i < kSize; ++i) nonzero += view[i] != 0;
  EXPECT_EQ(nonzero, std::size(marks));
  for (const auto& [off, byte] : marks) EXPECT_EQ(view[off], byte) << "offset " << off;
  // Memory changes: the cache keeps its copy until it invalidates, and its
  // line, clean, is not written back over memory's.
  const uint8_t later = 9;
  ASSERT_EQ(pwrite(fd, &later, 1, (3 << 20) + 100), 1);
  EXPECT_EQ(view[(3 << 20) + 100], 2);
  EXPECT_TRUE(region::view_sim::Invalidate(view + (3 << 20) + 64, 64));
  EXPECT_EQ(view[(3 << 20) + 100], 9);
}

// In the simulator build (GISMO_NONCOHERENT_SIM, region/view_sim.h) every
// client and the manager is a host with its own write-back cache of the
// region: the creator's flush before the seal and the reader's invalidate
// before its first read of the data (G5) are what carry the bytes across.
// Without either, the reader sees what its cache or memory held before (the
// test-build knob GISMO_NC_FAULT removes one).
TEST_F(NonCoherentServed, TheSimulatorShowsAMissingFlushOrInvalidate) {
  if (!region::view_sim::kEnabled) {
    GTEST_SKIP() << "needs the simulator build (cmake -DGISMO_NONCOHERENT_SIM=ON)";
  }
  auto wrong_bytes = [&](const char* fault, uint8_t seed) -> size_t {
    if (fault != nullptr) setenv("GISMO_NC_FAULT", fault, 1);
    // The reader's cache holds the heap as memory holds it now.
    Client writer = Connect(), reader = Connect();
    unsetenv("GISMO_NC_FAULT");
    const ObjectId id = ObjectId::FromName("sim-" + std::to_string(seed));
    const auto bytes = Pattern(64 << 10, seed);
    auto buf = writer.Create(id, bytes.size());
    EXPECT_TRUE(buf.ok()) << buf.status().ToString();
    if (!buf.ok()) return 0;
    std::memcpy(buf->data(), bytes.data(), bytes.size());
    EXPECT_TRUE(buf->SealAndRelease().ok());
    auto got = reader.Get(id, 0);
    EXPECT_TRUE(got.ok()) << got.status().ToString();
    if (!got.ok()) return 0;
    size_t wrong = 0;
    for (size_t i = 0; i < bytes.size(); ++i) wrong += got->data()[i] != bytes[i];
    EXPECT_TRUE(got->Release().ok());
    EXPECT_TRUE(writer.Delete(id).ok());
    EXPECT_TRUE(writer.Disconnect().ok());
    EXPECT_TRUE(reader.Disconnect().ok());
    return wrong;
  };
  EXPECT_EQ(wrong_bytes(nullptr, 1), 0u) << "flushed, then invalidated: the reader sees the bytes";
  EXPECT_GT(wrong_bytes("skip-seal-flush", 2), 0u) << "the bytes stayed in the creator's cache";
  EXPECT_GT(wrong_bytes("skip-data-invalidate", 3), 0u) << "the reader read its stale copy";
  EXPECT_EQ(wrong_bytes(nullptr, 4), 0u);
}

// A get that waits is woken when the owner applies the seal.
TEST_F(NonCoherentServed, AWaitingGetIsWokenByTheSeal) {
  Client writer = Connect(), reader = Connect();
  const ObjectId id = ObjectId::FromName("nc-later");
  std::thread late([&] {
    auto buf = writer.Create(id, 4096);
    ASSERT_TRUE(buf.ok()) << buf.status().ToString();
    std::memset(buf->data(), 0x42, 4096);
    ASSERT_TRUE(buf->SealAndRelease().ok());
  });
  auto got = reader.Get(id, 60000);
  late.join();
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->data()[4095], 0x42);
}

// Evictable objects: a create that does not fit makes the owner evict
// unheld ones (CLOCK); one a client holds is never evicted; an explicit
// evict and a touch are requests. An owned object goes with its creator.
TEST_F(NonCoherentServed, EvictionAndOwnedObjects) {
  Client a = Connect(), b = Connect();
  const ObjectId kept = ObjectId::FromName("kept");
  ASSERT_TRUE(a.Put(kept, "held by b", GISMO_CREATE_EVICTABLE).ok());
  auto held = b.Get(kept, 0);
  ASSERT_TRUE(held.ok());
  ASSERT_TRUE(a.Touch(kept).ok());
  const size_t mib = 1 << 20;
  std::vector<uint8_t> block(4 * mib, 7);
  int made = 0;
  // Far more than the heap holds (64 MiB region): only eviction lets it.
  for (int i = 0; i < 40; ++i) {
    Status s =
        a.Put(ObjectId::FromName("e" + std::to_string(i)), block, {}, GISMO_CREATE_EVICTABLE);
    ASSERT_TRUE(s.ok()) << i << ": " << s.ToString();
    ++made;
  }
  EXPECT_EQ(made, 40);
  auto usage = a.Usage();
  ASSERT_TRUE(usage.ok());
  EXPECT_GT(usage->evictions, 0u) << "some were evicted";
  EXPECT_TRUE(*b.Contains(kept)) << "a held object is never evicted";
  EXPECT_EQ(held->data()[0], 'h');
  ASSERT_TRUE(held->Release().ok());
  auto evicted = a.Evict(64 * mib);
  ASSERT_TRUE(evicted.ok()) << evicted.status().ToString();
  EXPECT_GT(*evicted, 0u);
  // An owned object is deleted when its creator leaves.
  const ObjectId owned = ObjectId::FromName("owned");
  ASSERT_TRUE(b.Put(owned, "mine", GISMO_CREATE_OWNED).ok());
  EXPECT_TRUE(*a.Contains(owned));
  EXPECT_TRUE(b.Disconnect().ok());
  while (a.Stat(owned).ok()) std::this_thread::yield();
  EXPECT_TRUE(a.Disconnect().ok());
  EXPECT_TRUE(Problems().empty());
}

// Names: changed by the owner on request, looked up locally under the
// table's seqlock; a wait for a name is woken when the owner applies the
// change.
TEST_F(NonCoherentServed, NamesAreBoundLookedUpAndWaitedFor) {
  Client a = Connect(), b = Connect();
  const ObjectId x = ObjectId::FromName("x"), y = ObjectId::FromName("y");
  ASSERT_TRUE(a.Put(x, "first").ok());
  ASSERT_TRUE(a.Put(y, "second").ok());
  EXPECT_EQ(b.LookupName("cfg").status().code(), GISMO_ERR_OBJECT_NOT_FOUND);
  ASSERT_TRUE(a.BindName("cfg", x).ok());
  auto got = b.LookupName("cfg");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(ObjectId(got->id), x);
  EXPECT_EQ(got->version, 1u);
  EXPECT_EQ(a.BindNameIfUnbound("cfg", y).code(), GISMO_ERR_CONFLICT);
  EXPECT_EQ(a.SwapName("cfg", y, x).code(), GISMO_ERR_CONFLICT) << "bound to x, not y";
  EXPECT_EQ(a.BindName("other", ObjectId::FromName("nothing")).code(), GISMO_ERR_OBJECT_NOT_FOUND);
  EXPECT_EQ(a.BindName("", x).code(), GISMO_ERR_INVALID_ARGUMENT);
  // b waits for a change of "cfg" from x; a swaps it to y.
  std::thread swapper([&] { EXPECT_TRUE(a.SwapName("cfg", x, y).ok()); });
  auto changed = b.WaitName("cfg", &x, 60000);
  swapper.join();
  ASSERT_TRUE(changed.ok()) << changed.status().ToString();
  EXPECT_EQ(ObjectId(changed->id), y);
  EXPECT_EQ(changed->version, 2u);
  ASSERT_TRUE(a.BindName("cfg2", x).ok());
  auto listed = b.ListNames("cfg");
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->size(), 2u);
  EXPECT_EQ(a.UnbindName("cfg", &x).code(), GISMO_ERR_CONFLICT);
  ASSERT_TRUE(a.UnbindName("cfg", &y).ok());
  ASSERT_TRUE(a.UnbindName("cfg2").ok());
  EXPECT_EQ(a.UnbindName("cfg2").code(), GISMO_ERR_OBJECT_NOT_FOUND);
  EXPECT_TRUE(b.ListNames()->empty());
  EXPECT_TRUE(a.Disconnect().ok());
  EXPECT_TRUE(b.Disconnect().ok());
  EXPECT_TRUE(Problems().empty());
}

// A subscriber sees what existed when it subscribed, then every seal and
// delete the owner applies, in order (the owner appends the events and
// wakes the subscriber).
TEST_F(NonCoherentServed, SubscribersSeeTheOwnersEvents) {
  Client a = Connect(), sub_client = Connect();
  const ObjectId before = ObjectId::FromName("before"), x = ObjectId::FromName("x");
  ASSERT_TRUE(a.Put(before, "b").ok());
  auto sub = sub_client.Subscribe();
  ASSERT_TRUE(sub.ok()) << sub.status().ToString();
  auto next = [&] {
    auto n = sub->Next(60000);
    EXPECT_TRUE(n.ok()) << n.status().ToString();
    return n.ok() ? *n : Notification{GISMO_EVENT_OVERFLOW, ObjectId(), 0, 0, 0, 0, 0};
  };
  Notification n = next();
  EXPECT_EQ(n.event, GISMO_EVENT_SEALED);
  EXPECT_EQ(n.id, before) << "the initial listing";
  EXPECT_EQ(sub->Next(0).status().code(), GISMO_ERR_TIMEOUT);
  ASSERT_TRUE(a.Put(x, "four").ok());
  n = next();
  EXPECT_EQ(n.event, GISMO_EVENT_SEALED);
  EXPECT_EQ(n.id, x);
  EXPECT_EQ(n.data_size, 4u);
  ASSERT_TRUE(a.Delete(x).ok());
  n = next();
  EXPECT_EQ(n.event, GISMO_EVENT_DELETED);
  EXPECT_EQ(n.id, x);
  const uint64_t seq = n.seq;
  ASSERT_TRUE(a.Delete(before).ok());
  n = next();
  EXPECT_EQ(n.id, before);
  EXPECT_GT(n.seq, seq);
}

// A client that dies is fenced (its process confirmed gone by the manager on
// its kernel) and recovered: its unsealed object freed, its references
// dropped, so a delete it held up completes.
TEST_F(NonCoherentServed, ADeadClientsObjectsAreRecovered) {
  Client survivor = Connect();
  const ObjectId held = ObjectId::FromName("held");
  ASSERT_TRUE(survivor.Put(held, "x").ok());
  // A client in another process takes both, then is killed (SIGKILL).
  const std::string fifo = "/tmp/" + testing::UniqueName("nc-stdin");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  testing::SpawnOptions so;
  so.argv = {FAILURE_CLIENT_BIN,    "--address", mgr_->address(), "-c",
             "create unsealed 100", "-c",        "get held 0",    "--stdin"};
  so.stdin_path = fifo;  // held open below: it waits for more commands
  so.capture_stdout = true;
  so.parent_death_signal = SIGKILL;
  // Opened read-write first, so the child's open of its stdin does not wait
  // for a writer.
  const int keep_open = open(fifo.c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(keep_open, 0);
  testing::Process child;
  ASSERT_TRUE(child.Start(so)) << child.error();
  std::string line;
  for (int i = 0; i < 3; ++i) {  // its hello and both commands
    ASSERT_TRUE(child.ReadLineContaining("ok", 30, &line)) << child.output();
  }
  ASSERT_NE(line.find("found=1"), std::string::npos) << line;
  child.KillAndWait(SIGKILL);
  close(keep_open);
  unlink(fifo.c_str());
  ASSERT_TRUE(survivor.Delete(held).ok());
  while (survivor.Stat(held).ok() || survivor.Stat(ObjectId::FromName("unsealed")).ok()) {
    std::this_thread::yield();
  }
  EXPECT_TRUE(survivor.Disconnect().ok());
  EXPECT_TRUE(Problems().empty());
}

// The operator's side of a host without an agent, run in a PID namespace of
// its own, so the manager outside cannot prove its processes gone: two
// clients, each with an object it is creating; one is killed; then this
// host's operator fences both. Writes the two fence reports, a line each,
// to `out`. Runs in a forked child: no thread of the test is here.
void OperatorsHost(const std::string& address, int out) {
  int slots[2];
  if (pipe(slots) != 0) _exit(2);
  auto start_client = [&](const char* object) -> pid_t {
    const pid_t pid = fork();
    if (pid != 0) return pid;
    auto c = Client::Connect(address);
    if (!c.ok()) _exit(3);
    auto creating = c->Create(ObjectId::FromName(object), 100);
    if (!creating.ok()) _exit(4);
    uint32_t node = 0, slot = 0;
    if (gismo_client_identity(c->c_client(), &node, &slot) != GISMO_OK) _exit(5);
    (void)!write(slots[1], &slot, sizeof slot);
    pause();
    _exit(0);
  };
  uint32_t gone_slot = 0, alive_slot = 0;
  const pid_t gone = start_client("of-the-gone-one");
  if (read(slots[0], &gone_slot, sizeof gone_slot) != sizeof gone_slot) _exit(6);
  const pid_t alive = start_client("of-the-live-one");
  if (read(slots[0], &alive_slot, sizeof alive_slot) != sizeof alive_slot) _exit(6);
  kill(gone, SIGKILL);
  waitpid(gone, nullptr, 0);
  std::string reports;
  {
    auto op = Client::Connect(address);
    if (!op.ok()) _exit(7);
    for (const uint32_t slot : {gone_slot, alive_slot}) {
      auto r = op->Fence(GISMO_FENCE_SLOT, slot);
      reports += std::to_string(slot) + " " + (r.ok() ? *r : "error: " + r.status().ToString());
      reports += "\n";
    }
  }
  kill(alive, SIGKILL);
  waitpid(alive, nullptr, 0);
  (void)!write(out, reports.data(), reports.size());
}

// An operator's fence given on the fenced process's host, where no agent
// runs (a PID namespace the manager cannot see into): the library writes
// back, from that host, the lines of a process that is gone before the
// manager recovers it (doc/noncoherent.md 7.3, what an agent does), and says
// so; of one that still runs it writes nothing back and says that too.
TEST(NonCoherentOperator, AFenceOnTheProcesssHostWritesBackTheLinesOfAGoneOne) {
  ASSERT_TRUE(region::NonCoherentSupported());
  if (geteuid() != 0) GTEST_SKIP() << "a PID namespace of its own needs root";
  testing::ManagerProcessOptions mo;
  mo.binary = GISMO_MANAGER_BIN;
  mo.size = "64MiB";
  // The host's clients connect over TCP, as from another host: the manager
  // learns no pid from their connection.
  mo.extra_args = {"--coherence", "non-coherent", "--listen", "tcp:127.0.0.1:0"};
  testing::ManagerProcess mgr(mo);
  ASSERT_TRUE(mgr.Start()) << mgr.error();
  const std::string ready = mgr.ready_line();
  const size_t at = ready.find("tcp:127.0.0.1:");
  ASSERT_NE(at, std::string::npos) << ready;
  const std::string tcp = ready.substr(at, ready.find_first_of(", \n", at) - at);
  // Over TCP without a cluster key the manager does not say where the
  // region is (doc/security.md): this host sees it at its path.
  setenv("GISMO_REGION", mgr.region().c_str(), 1);
  int reports[2];
  ASSERT_EQ(pipe(reports), 0);
  const pid_t host = fork();
  if (host == 0) {
    close(reports[0]);
    if (unshare(CLONE_NEWPID) != 0) _exit(2);
    const pid_t init = fork();  // pid 1 of the new namespace
    if (init == 0) {
      OperatorsHost(tcp, reports[1]);
      _exit(0);
    }
    int st = 0;
    waitpid(init, &st, 0);
    _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 9);
  }
  close(reports[1]);
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = read(reports[0], buf, sizeof buf)) > 0;) text.append(buf, n);
  close(reports[0]);
  int st = 0;
  ASSERT_EQ(waitpid(host, &st, 0), host);
  ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "the host's processes failed: " << st;
  std::istringstream lines(text);
  std::string gone, alive;
  ASSERT_TRUE(std::getline(lines, gone) && std::getline(lines, alive)) << text;
  const std::string gone_slot = gone.substr(0, gone.find(' '));
  EXPECT_NE(gone.find("wrote back client slot " + gone_slot + "'s lines on this host"),
            std::string::npos)
      << gone;
  EXPECT_NE(gone.find("1 unsealed objects"), std::string::npos) << gone;
  EXPECT_NE(alive.find("still runs on this host: its lines were not written back"),
            std::string::npos)
      << alive;
  EXPECT_EQ(alive.find("wrote back"), std::string::npos) << alive;
  // Both recovered: the objects they were creating are gone.
  Client c = Client();
  auto connected = Client::Connect(mgr.address());
  ASSERT_TRUE(connected.ok()) << connected.status().ToString();
  c = std::move(*connected);
  for (const char* name : {"of-the-gone-one", "of-the-live-one"}) {
    while (c.Stat(ObjectId::FromName(name)).ok()) std::this_thread::yield();
  }
  unsetenv("GISMO_REGION");
}

// A client of a coherent manager given a non-coherent region's path learns
// that the region is not the one that manager serves.
TEST(NonCoherent, AClientChecksTheRegionItIsGiven) {
  testing::InProcessManager coherent;
  ASSERT_TRUE(coherent.Start().ok());
  const std::string path = "/dev/shm/" + testing::UniqueName("noncoherent");
  region::FormatOptions fo;
  fo.size = 16ull << 20;
  fo.coherence = CoherenceMode::kNonCoherent;
  ASSERT_TRUE(region::Region::Format(path, fo).ok());
  Client::ConnectOptions co;
  co.address = coherent.address();
  co.region_path = path;  // "this host sees the region here"
  auto c = Client::ConnectWith(co);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), GISMO_ERR_BAD_REGION) << c.status().ToString();
  unlink(path.c_str());
}

class NonCoherentFormat : public ::testing::Test {
 protected:
  void SetUp() override { path_ = "/dev/shm/" + testing::UniqueName("ncformat"); }
  void TearDown() override { unlink(path_.c_str()); }
  std::unique_ptr<region::Region> Format(uint32_t log_capacity = 1024) {
    region::FormatOptions fo;
    fo.size = 16ull << 20;
    fo.max_clients = 8;
    fo.log_capacity = log_capacity;
    fo.coherence = CoherenceMode::kNonCoherent;
    auto r = region::Region::Format(path_, fo);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(*r) : nullptr;
  }
  std::vector<std::string> Problems(const region::Region& r) {
    auto rep = fsck::Check(r, nullptr);
    EXPECT_TRUE(rep.ok()) << rep.status().ToString();
    return rep.ok() ? rep->problems : std::vector<std::string>{"fsck failed"};
  }
  static bool Mentions(const std::vector<std::string>& problems, const std::string& part) {
    for (const std::string& p : problems) {
      if (p.find(part) != std::string::npos) return true;
    }
    return false;
  }
  std::string path_;
};

// Each client slot's two rings and its recent-gets line fill its log area
// (the largest power of two that fits: 64 entries in 16 KiB), where a
// coherent region has none.
TEST_F(NonCoherentFormat, EachClientSlotHasItsRings) {
  auto r = Format();
  ASSERT_NE(r, nullptr);
  EXPECT_TRUE(r->noncoherent());
  EXPECT_EQ(r->request_ring_capacity(), 64u);
  EXPECT_EQ(r->sb().request_ring_capacity, 64u);
  for (uint32_t i = 1; i < r->max_clients(); ++i) {
    auto* req = static_cast<uint8_t*>(r->request_ring(i));
    auto* resp = static_cast<uint8_t*>(r->response_ring(i));
    EXPECT_EQ(req, reinterpret_cast<uint8_t*>(r->log(i)));
    EXPECT_EQ(resp, req + region::RequestRingBytes(64));
    auto* recent = reinterpret_cast<uint8_t*>(r->recent_gets(i));
    EXPECT_EQ(recent, resp + region::RequestRingBytes(64));
    EXPECT_LE(recent + region::kCacheLine, reinterpret_cast<uint8_t*>(r->held(i)));
    EXPECT_EQ(reinterpret_cast<uintptr_t>(req) % region::kCacheLine, 0u);
  }
  EXPECT_TRUE(Problems(*r).empty());
  // Opened again: the same layout, validated.
  r.reset();
  auto again = region::Region::Open(path_);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ((*again)->request_ring_capacity(), 64u);

  region::FormatOptions fo;
  fo.size = 16ull << 20;
  fo.coherence = CoherenceMode::kCoherent;  // not the default in the simulator build
  const std::string coherent = path_ + ".coherent";
  auto c = region::Region::Format(coherent, fo);
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE((*c)->noncoherent());
  EXPECT_EQ((*c)->request_ring_capacity(), 0u);
  unlink(coherent.c_str());
}

TEST_F(NonCoherentFormat, ALogTooSmallForTheRingsIsRefused) {
  region::FormatOptions fo;
  fo.size = 16ull << 20;
  fo.log_capacity = 64;
  fo.coherence = CoherenceMode::kNonCoherent;
  auto r = region::Region::Format(path_, fo);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), GISMO_ERR_INVALID_ARGUMENT);
  EXPECT_NE(r.status().message().find("log capacity must be at least 84"), std::string::npos)
      << r.status().message();
  auto smallest = Format(84);
  ASSERT_NE(smallest, nullptr);
  EXPECT_EQ(smallest->request_ring_capacity(), region::kMinRequestRing);
}

// fsck reads the rings as the owner would: published requests of a live
// session validate and decode; a torn entry below the tail, a request or a
// response no encoder makes, a request published in parts, impossible
// indices, and flags that are neither 0 nor 1 are problems.
TEST_F(NonCoherentFormat, FsckChecksTheRingsAndLines) {
  auto r = Format();
  ASSERT_NE(r, nullptr);
  constexpr uint32_t kSlot = 3;
  constexpr uint64_t kSession = 41;
  r->slot(kSlot).state.store(region::PackSlotState(region::SlotState::kActive, kSession),
                             std::memory_order_release);
  region::HwLines hw;
  const uint32_t cap = r->request_ring_capacity();
  region::RequestProducer<region::HwLines> requests(hw, r->request_ring(kSlot), cap, kSession);
  region::RequestProducer<region::HwLines> responses(hw, r->response_ring(kSlot), cap, kSession);
  ASSERT_TRUE(requests.Attach() && responses.Attach());
  region::NcRequest del;
  del.op = region::NcOp::kDelete;
  del.id = region::IdWords{{1, 2, 3}};
  region::NcRequest bind;
  bind.op = region::NcOp::kBindName;
  bind.id = del.id;
  bind.name = std::string(60, 'n');  // requests 2..4: its head and two name entries
  ASSERT_TRUE(*region::PushNcRequest(requests, del) && *region::PushNcRequest(requests, bind));
  region::NcResponse deleted;
  deleted.request_seq = 1;
  deleted.op = region::NcOp::kDelete;
  ASSERT_TRUE(responses.TryPush(region::EncodeNcResponse(deleted)));
  EXPECT_TRUE(Problems(*r).empty());

  auto* entries = reinterpret_cast<region::RequestEntry*>(
      static_cast<region::RequestRingHeader*>(r->request_ring(kSlot)) + 1);
  entries[1].payload[3] ^= 1;  // request 2, as a torn write-back leaves it
  EXPECT_TRUE(Mentions(Problems(*r), "client slot 3's request ring: published entry 2"));
  entries[1].payload[3] ^= 1;
  EXPECT_TRUE(Problems(*r).empty());
  // Another session's requests do not validate for this one.
  r->slot(kSlot).state.store(region::PackSlotState(region::SlotState::kActive, kSession + 1),
                             std::memory_order_release);
  EXPECT_TRUE(Mentions(Problems(*r), "not written by this session"));
  r->slot(kSlot).state.store(region::PackSlotState(region::SlotState::kActive, kSession),
                             std::memory_order_release);

  // Entries that validate but are not requests an encoder makes: what the
  // owner would refuse, named.
  region::RequestPayload junk{{0, 2, 3, 4, 5, 6}};
  ASSERT_TRUE(requests.TryPush(junk));
  EXPECT_TRUE(Mentions(Problems(*r),
                       "client slot 3's request ring: the request at entry 5 is malformed "
                       "(malformed request: unknown op 0)"));
  region::NcResponse wild;
  wild.request_seq = 2;
  wild.op = region::NcOp::kCreate;
  wild.record = r->num_records();
  ASSERT_TRUE(responses.TryPush(region::EncodeNcResponse(wild)));
  EXPECT_TRUE(Mentions(Problems(*r), "the response at entry 2 is malformed"));
  auto* req = static_cast<region::RequestRingHeader*>(r->request_ring(kSlot));
  req->tail.value = 4;
  auto* resp = static_cast<region::RequestRingHeader*>(r->response_ring(kSlot));
  resp->tail.value = 1;
  EXPECT_TRUE(Problems(*r).empty());
  // A request whose entries the tail does not all cover was published in
  // parts (a producer publishes a request with one tail).
  req->tail.value = 3;
  EXPECT_TRUE(Mentions(Problems(*r), "the request at entry 2 is malformed (takes 3 entries"));
  req->tail.value = 4;
  resp->tail.value = cap + 5;
  EXPECT_TRUE(Mentions(Problems(*r), "client slot 3's response ring is inconsistent: tail 69"));
  resp->tail.value = 1;
  r->sb().owner_sleep.sleeping[3] = 2;
  EXPECT_TRUE(Mentions(Problems(*r), "the owner's sleep line holds 2 for owner thread 3"));
  r->sb().owner_sleep.sleeping[3] = 1;
  r->sb().owner_sleep.threads = 9;
  EXPECT_TRUE(Mentions(Problems(*r), "the owner's sleep line counts 9 owner threads"));
  r->sb().owner_sleep.threads = 2;
  r->sb().owner_helpers.slots[1] = 1000;
  EXPECT_TRUE(Mentions(Problems(*r), "the owner's helper line names slot 999 for owner thread 1"));
  r->sb().owner_helpers.slots[1] = 2;
  r->sb().candidates[7].choosing = 9;
  EXPECT_TRUE(Mentions(Problems(*r), "candidate line 7 of the owner election"));
  r->sb().candidates[7].choosing = 0;
  r->shard(2).index_version.store(5, std::memory_order_relaxed);
  EXPECT_TRUE(Mentions(Problems(*r), "index shard 2 is half-changed (index version 5)"));
  r->shard(2).index_version.store(6, std::memory_order_relaxed);
  EXPECT_TRUE(Problems(*r).empty());
  // A held entry whose bucket the slot's summary does not mark: the owner
  // would free the object under the client.
  const region::NcTable table = store::NcTableOf(*r, kSlot);
  constexpr uint32_t kRecord = 5;
  const uint32_t bit = region::HeldSummaryBit(kRecord);
  table.entries[0].key.store(kRecord + 1, std::memory_order_relaxed);
  table.entries[0].count.store(1, std::memory_order_relaxed);
  EXPECT_TRUE(Mentions(Problems(*r), "client slot 3's held summary does not mark record 5"));
  table.summary[bit / 64].store(uint64_t{1} << (bit % 64), std::memory_order_relaxed);
  EXPECT_FALSE(Mentions(Problems(*r), "held summary"));
  table.entries[0].key.store(0, std::memory_order_relaxed);
  table.entries[0].count.store(0, std::memory_order_relaxed);
  // A free slot's summary is clear (its recovery cleared it).
  r->slot(kSlot).state.store(0, std::memory_order_release);
  EXPECT_TRUE(Mentions(Problems(*r), "free client slot 3's held summary is not clear"));
  table.summary[bit / 64].store(0, std::memory_order_relaxed);
  EXPECT_FALSE(Mentions(Problems(*r), "held summary"));
}

// gismo-manager --coherence non-coherent formats and serves the region.
// A helper line that names a client's slot (corrupt: a helper's slot has
// client id 0, a client's never) leaves that client alone: its slot was
// undone as a dead helper's and freed, its held table with it.
TEST(NonCoherentOwnerThreadsProcess, AHelperLineNamingAClientsSlotLeavesTheClient) {
  ASSERT_TRUE(region::NonCoherentSupported());
  const std::string path = "/dev/shm/" + testing::UniqueName("helper-line");
  {
    region::FormatOptions o;
    o.size = 16ull << 20;
    o.coherence = region::CoherenceMode::kNonCoherent;
    auto r = region::Region::Format(path, o);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    region::ClientSlotHeader& h = (*r)->slot(2);
    h.client_id.store(7);
    h.state.store(region::PackSlotState(region::SlotState::kActive, 1));
    region::OwnerHelpersLine& line = (*r)->sb().owner_helpers;
    line.slots[1] = 2 + 1;
    region::FlushLines(&h, sizeof h);
    region::FlushLines(&line, sizeof line);
  }
  testing::ManagerProcessOptions mo;
  mo.binary = GISMO_MANAGER_BIN;
  mo.region = path;
  mo.size = "16MiB";
  mo.extra_args = {"--coherence", "non-coherent"};
  mo.log_level = "info";
  mo.stderr_path = "/tmp/" + testing::UniqueName("helper-line") + ".log";
  testing::ManagerProcess m(mo);
  ASSERT_TRUE(m.Start()) << m.error();
  std::ifstream log_file(mo.stderr_path);
  const std::string log((std::istreambuf_iterator<char>(log_file)), {});
  unlink(mo.stderr_path.c_str());
  EXPECT_NE(log.find("names slot 2 for thread 1: a client's slot (client id 7)"), std::string::npos)
      << log;
  auto r = region::Region::Open(path);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  region::ClientSlotHeader& h = (*r)->slot(2);
  region::InvalidateLines(&h, sizeof h);
  EXPECT_EQ(region::SlotStateOf(h.state.load()), region::SlotState::kActive);
  EXPECT_EQ(h.client_id.load(), 7u);
}

TEST(NonCoherent, ManagerProgramServesTheMode) {
  testing::ManagerProcessOptions mo;
  mo.binary = GISMO_MANAGER_BIN;
  mo.region = "/dev/shm/" + testing::UniqueName("noncoherent");
  mo.size = "16MiB";
  mo.extra_args = {"--coherence", "non-coherent"};
  mo.log_level = "info";  // XXX
  mo.ready_timeout_s = 20;
  testing::ManagerProcess m(mo);
  ASSERT_TRUE(m.Start());
  auto c = Client::Connect(m.address());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_TRUE(c->Put(ObjectId::FromName("a"), "served").ok());
  auto got = c->Get(ObjectId::FromName("a"), 0);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(got->data()), got->size()), "served");
}

}  // namespace
}  // namespace gismo
