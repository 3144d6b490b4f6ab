// A client dies at every named crash point, and the real manager recovers it.
//
// For each scenario: a setup client seals objects "y" (slab-sized) and "w"
// (a page run) and leaves cleanly; a failure_client runs a short script with
// GISMO_CRASH_AT set and dies (_exit(77)) at the crash point; the manager
// notices the closed connection and recovers its slot. Then must hold:
//  - the manager's client list is back to the checker alone (recovered);
//  - each object is in the state the scenario expects after recovery (an
//    operation cut before its commit is undone, one cut after it stands; the
//    dead client's unsealed objects are aborted, its references dropped);
//  - every object left is sealed, has 0 references and reads back intact;
//  - no lock is left held: a fresh client operating on the same objects and
//    allocator classes finishes within a timeout;
//  - gismo-fsck finds the region sound, online and (after the manager
//    stops) offline;
//  - after deleting everything the heap is empty (used_bytes == 0).
// The list of crash points is read from src/ at configure time; a crash
// point without a scenario fails the suite.
//
// The same scenarios run frozen (suspected is not dead): the client stops
// (SIGSTOP) at the crash point instead of dying; the manager suspects it
// once its lease passes and touches nothing it owns; it is thawed, finishes
// or undoes the operation it was in, and every later call fails with
// GISMO_ERR_CONNECTION (it changes nothing more); once its process has
// exited, the manager recovers it, and the same checks must hold.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <gismo/gismo.hpp>
#include <initializer_list>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "failure/failure_client_run.h"
#include "region/region.h"
#include "test_util.h"

namespace {

using gismo::Client;
using gismo::ObjectId;
using gismo::testing::ManagerProcess;

using gismo::testing::RunClient;

// What must be true of an object once the dead client is recovered.
enum class Expect { kAbsent, kSealed, kEither };

struct Scenario {
  std::string name;   // test name
  std::string point;  // crash point
  std::vector<std::string> script;
  std::map<std::string, Expect> expect;  // objects the script touches
  bool sweep_skip = false;               // txn.* points: every commit of the script in turn
  // Names the script touches: the object each must be bound to after
  // recovery ("" unbound, "*" either way).
  std::map<std::string, std::string> names = {};
  long skip = 0;  // passes of the point before the death
  // Against a region formatted non-coherent: the client's side of that
  // mode (its requests to the owner, its own table), doc/noncoherent.md.
  bool noncoherent = false;
};

void PrintTo(const Scenario& s, std::ostream* os) { *os << s.name; }

std::vector<Scenario> Scenarios() {
  using E = Expect;
  std::vector<Scenario> v;
  for (const char* p : {"create.before_allocate", "create.after_allocate", "create.after_index",
                        "create.before_commit"}) {
    v.push_back({std::string(p) + "/slab", p, {"create x 3000"}, {{"x", E::kAbsent}}});
    v.push_back({std::string(p) + "/run", p, {"create x 200000"}, {{"x", E::kAbsent}}});
  }
  v.push_back({"seal.before_commit",
               "seal.before_commit",
               {"create x 3000", "seal x"},
               {{"x", E::kAbsent}}});
  // Committed but not yet published: the seal stands.
  v.push_back({"seal.before_publish",
               "seal.before_publish",
               {"create x 3000", "seal x"},
               {{"x", E::kSealed}}});
  // The event ring entry claimed (head not yet raised), or written but not
  // yet pending: the seal or delete is undone, the entry skipped.
  for (const char* p : {"event.after_claim", "event.before_pending"}) {
    v.push_back({std::string(p) + "/seal", p, {"create x 3000", "seal x"}, {{"x", E::kAbsent}}});
    v.push_back({std::string(p) + "/delete", p, {"delete y"}, {{"y", E::kSealed}}});
  }
  for (const char* p : {"abort.after_free", "abort.before_commit"}) {
    v.push_back({std::string(p) + "/slab", p, {"create x 3000", "abort x"}, {{"x", E::kAbsent}}});
    v.push_back({std::string(p) + "/run", p, {"create x 200000", "abort x"}, {{"x", E::kAbsent}}});
  }
  v.push_back({"get.before_commit", "get.before_commit", {"get y 0"}, {{"y", E::kSealed}}});
  for (const char* p : {"release.after_decrement", "release.before_commit"}) {
    v.push_back({p, p, {"get y 0", "release y"}, {{"y", E::kSealed}}});
  }
  // The release that frees a deferred delete: undone, then the recovery
  // drops the dead client's reference and finishes the delete itself.
  v.push_back({"release.after_free",
               "release.after_free",
               {"get y 0", "delete y", "release y"},
               {{"y", E::kAbsent}}});
  v.push_back({"release.after_free/run",
               "release.after_free",
               {"get w 0", "delete w", "release w"},
               {{"w", E::kAbsent}}});
  v.push_back({"delete.after_free", "delete.after_free", {"delete y"}, {{"y", E::kSealed}}});
  v.push_back({"delete.after_free/run", "delete.after_free", {"delete w"}, {{"w", E::kSealed}}});
  v.push_back({"delete.before_commit", "delete.before_commit", {"delete y"}, {{"y", E::kSealed}}});
  v.push_back({"delete.before_commit/deferred",
               "delete.before_commit",
               {"get y 0", "delete y"},
               {{"y", E::kSealed}}});
  // Inside the allocator: the half-made allocation or free is undone.
  v.push_back({"alloc.block_taken", "alloc.block_taken", {"create x 3000"}, {{"x", E::kAbsent}}});
  // A size class no earlier object used, so a new slab page is made.
  v.push_back({"alloc.new_slab", "alloc.new_slab", {"create x 7000"}, {{"x", E::kAbsent}}});
  v.push_back(
      {"alloc.pages_taken/run", "alloc.pages_taken", {"create x 200000"}, {{"x", E::kAbsent}}});
  v.push_back({"free.block_cleared", "free.block_cleared", {"delete y"}, {{"y", E::kSealed}}});
  v.push_back({"free.pages_cleared/run", "free.pages_cleared", {"delete w"}, {{"w", E::kSealed}}});
  // Inside an update of the free-run summary (after its first level): the
  // recovery rebuilds the summary from the restored bitmap (fsck checks it).
  v.push_back({"free_runs.upper_levels/alloc",
               "free_runs.upper_levels",
               {"create x 200000"},
               {{"x", E::kAbsent}}});
  v.push_back(
      {"free_runs.upper_levels/free", "free_runs.upper_levels", {"delete w"}, {{"w", E::kSealed}}});
  // Eviction (one object per Txn): cut before its commit, the object is
  // back, sealed and evictable; after it, gone. "y" and "w" are not
  // evictable and stay whatever happens.
  for (const char* p : {"evict.after_free", "evict.before_commit"}) {
    v.push_back(
        {std::string(p) + "/slab", p, {"put-evictable e 3000", "evict 1"}, {{"e", E::kSealed}}});
    v.push_back(
        {std::string(p) + "/run", p, {"put-evictable e 200000", "evict 1"}, {{"e", E::kSealed}}});
  }
  v.push_back({"evict.before_publish",
               "evict.before_publish",
               {"put-evictable e 3000", "evict 1"},
               {{"e", E::kAbsent}}});
  // Objects it owns (GISMO_CREATE_OWNED): whatever it died in, its recovery
  // deletes them, one being made (undone) or one sealed before.
  v.push_back({"owned/create.before_commit",
               "create.before_commit",
               {"put-owned o 3000"},
               {{"o", E::kAbsent}}});
  v.push_back({"owned/seal.before_publish",
               "seal.before_publish",
               {"put-owned o 3000"},
               {{"o", E::kAbsent}}});
  v.push_back({"owned/get.before_commit",
               "get.before_commit",
               {"put-owned o 200000", "get y 0"},
               {{"o", E::kAbsent}, {"y", E::kSealed}}});
  v.push_back({"owned/delete.before_commit",
               "delete.before_commit",
               {"put-owned o 3000", "delete o"},
               {{"o", E::kAbsent}}});
  // Dies after asking the manager to clean it up: cleaned up all the same.
  v.push_back({"disconnect.after_goodbye",
               "disconnect.after_goodbye",
               {"create x 3000", "get y 0", "disconnect"},
               {{"x", E::kAbsent}, {"y", E::kSealed}}});
  // Names: a bind or unbind cut before its commit is undone whole.
  for (const char* p : {"bind.after_entry", "bind.before_commit"}) {
    v.push_back({std::string(p) + "/new", p, {"bind n y"}, {}, false, {{"n", ""}}});
    // The second bind (a compare-and-swap) dies: the first stands.
    v.push_back(
        {std::string(p) + "/swap", p, {"bind n y", "swap n y w"}, {}, false, {{"n", "y"}}, 1});
  }
  for (const char* p : {"unbind.after_shift", "unbind.before_commit"}) {
    // Two more names, so that the unbind shifts slots or reuses entries.
    v.push_back({p,
                 p,
                 {"bind n y", "bind m w", "bind k y", "unbind n"},
                 {},
                 false,
                 {{"n", "y"}, {"m", "w"}, {"k", "y"}}});
  }
  // Every commit of a mixed script in turn; which one it died in is not
  // modelled, so the outcome of each object may be either where both are
  // legal, and the generic invariants do the rest.
  const std::vector<std::string> mixed = {
      "put x 3000", "get y 0", "release y", "create z 70000", "abort z",  "create v 500", "seal v",
      "bind n v",   "get w 0", "delete w",  "release w",      "unbind n", "delete y"};
  // The non-coherent mode's client: dies between its own steps (its table
  // entry written, its block flushed, the owner's answer taken). The owner
  // recovers its table and its unsealed objects; what the owner applied
  // stands.
  auto nc = [&](std::string name, const char* p, std::vector<std::string> script,
                std::map<std::string, Expect> expect) {
    Scenario s{std::move(name), p, std::move(script), std::move(expect)};
    s.noncoherent = true;
    v.push_back(std::move(s));
  };
  nc("nc_client.create_after_adopt/slab", "nc_client.create_after_adopt", {"create x 3000"},
     {{"x", E::kAbsent}});
  nc("nc_client.create_after_adopt/run", "nc_client.create_after_adopt", {"create x 200000"},
     {{"x", E::kAbsent}});
  nc("nc_client.seal_after_flush", "nc_client.seal_after_flush", {"create x 3000", "seal x"},
     {{"x", E::kAbsent}});
  // The owner applied the seal: it stands.
  nc("nc_client.seal_after_answer", "nc_client.seal_after_answer", {"create x 3000", "seal x"},
     {{"x", E::kSealed}});
  nc("nc_client.abort_after_drop", "nc_client.abort_after_drop", {"create x 3000", "abort x"},
     {{"x", E::kAbsent}});
  // Dies holding the reference its get took: recovery drops it.
  nc("nc_client.get_after_hold", "nc_client.get_after_hold", {"get y 0"}, {{"y", E::kSealed}});
  // Its last release of a deleted object is in memory, the report to the
  // owner never sent: the owner frees it all the same.
  nc("nc_client.release_before_report", "nc_client.release_before_report",
     {"get y 0", "delete y", "release y"}, {{"y", E::kAbsent}});
  for (const char* p : {"txn.before_commit", "txn.after_commit"}) {
    v.push_back({p,
                 p,
                 mixed,
                 {{"x", E::kEither},
                  {"y", E::kEither},
                  {"z", E::kAbsent},
                  {"v", E::kEither},
                  {"w", E::kEither}},
                 true,
                 {{"n", "*"}}});
  }
  return v;
}

std::vector<std::string> CrashPointsInSource() {
  std::vector<std::string> out;
  std::istringstream in(GISMO_CRASH_POINT_NAMES);
  for (std::string s; std::getline(in, s, ',');) {
    if (!s.empty()) out.push_back(s);
  }
  return out;
}

TEST(CrashPoints, EveryCrashPointInSourceHasAScenario) {
  std::set<std::string> covered;
  for (const auto& s : Scenarios()) covered.insert(s.point);
  // The manager's own recovery dying is exercised by store_test (it runs
  // recovery in a child that dies, then recovers the recovery).
  covered.insert("recovery.before_commit");
  covered.insert("recovery.after_entry");
  covered.insert("recovery.before_publish");
  // The non-coherent owner dying in its apply loop: nc_store_test
  // (NcOwnerDeathTest) runs it in a child that dies there, then a successor;
  // noncoherent_test (NonCoherentHelperDeath) kills a manager there.
  covered.insert("nc_owner.before_commit");
  covered.insert("nc_owner.free_before_commit");
  covered.insert("nc_owner.before_answer");
  // A manager stopped between its claim of the lease and saying who it is,
  // and between saying who it is and its bare epoch: failure.two_managers
  // (step 5) and manager_lease_test (CoherentLeaseTest).
  covered.insert("lease.claimed");
  covered.insert("lease.published");
  auto points = CrashPointsInSource();
  ASSERT_FALSE(points.empty());
  for (const auto& p : points) {
    EXPECT_TRUE(covered.count(p)) << "crash point '" << p << "' has no scenario here";
  }
  std::set<std::string> known(points.begin(), points.end());
  for (const auto& p : covered) {
    EXPECT_TRUE(known.count(p)) << "scenario for crash point '" << p << "', not in src/";
  }
}

// A sealer that dies after its seal committed, before it woke anyone: the
// seal stands (recovery publishes its event), and a getter blocked on the
// object and a subscriber are woken by the recovery, not left to time out.
TEST(CrashPoints, GetterAndSubscriberAreWokenWhenTheSealerDiesAfterCommit) {
  ManagerProcess m = gismo::testing::StartManagerProcess();
  auto c = Client::Connect(m.address());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  auto region = gismo::region::Region::Open(m.region());
  ASSERT_TRUE(region.ok());
  auto sub = c->Subscribe();
  ASSERT_TRUE(sub.ok());
  const ObjectId x = ObjectId::FromName("x");
  // The getter's wait is registered (the shard counts it) before the seal.
  gismo::Status got(GISMO_ERR_INTERNAL, "not run");
  std::thread getter([&] {
    auto g = Client::Connect(m.address());
    if (!g.ok()) {
      got = g.status();
      return;
    }
    auto b = g->Get(x, 60000);
    got = b.ok() ? gismo::Status() : b.status();
  });
  ASSERT_TRUE(gismo::testing::WaitForGetWaiter(**region, x))
      << "the getter's wait was never registered";
  auto died =
      RunClient(m.address(), {"create x 3000", "seal x"}, {"GISMO_CRASH_AT=seal.before_publish"});
  EXPECT_EQ(died.status, 77);
  getter.join();
  EXPECT_TRUE(got.ok()) << got.ToString() << ": the getter was not woken by the recovery";
  auto n = sub->Next(30000);
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(n->event, GISMO_EVENT_SEALED);
  EXPECT_EQ(n->id, x);
}

class CrashPointTest : public ::testing::TestWithParam<Scenario> {
 protected:
  static std::vector<std::string> CoherenceArgs(const Scenario& sc) {
    if (!sc.noncoherent) return {};
    return {"--coherence", "non-coherent"};
  }

  // Waits until the checker is the only client: every other one recovered.
  void WaitAlone(Client& c, double timeout_s = 15) {
    const double t0 = gismo::MonotonicS();
    for (;;) {
      auto u = c.Usage();
      ASSERT_TRUE(u.ok()) << u.status().ToString();
      if (u->client_count == 1) return;
      ASSERT_LT(gismo::MonotonicS() - t0, timeout_s)
          << u->client_count - 1 << " other client(s) still registered: recovery is stuck";
      usleep(1000);
    }
  }

  void Fsck(const std::string& how, const std::string& arg) {
    const std::string bin = GISMO_FSCK_BIN;
    if (bin.empty() || access(bin.c_str(), X_OK) != 0) return;  // not built yet
    std::string cmd = bin + " " + how + " " + arg + " 2>&1";
    FILE* f = popen(cmd.c_str(), "r");
    ASSERT_NE(f, nullptr);
    std::string out;
    char buf[1024];
    while (fgets(buf, sizeof buf, f)) out += buf;
    int st = pclose(f);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << cmd << ":\n" << out;
  }

  // One death and its recovery; returns false when the crash point was not
  // reached (the script ran to its end).
  bool RunOnce(const Scenario& sc, long skip) {
    SCOPED_TRACE("crash point " + sc.point + " skip " + std::to_string(skip));
    ManagerProcess m = gismo::testing::StartManagerProcess(CoherenceArgs(sc));
    auto c = Client::Connect(m.address());
    EXPECT_TRUE(c.ok());
    if (!c.ok()) return false;
    Client& checker = *c;

    auto setup = RunClient(m.address(), {"put y 3000", "put w 200000"}, {});
    EXPECT_EQ(setup.status, 0);
    for (const auto& l : setup.lines) EXPECT_EQ(l.substr(0, 2), "ok") << l;
    WaitAlone(checker);

    const std::string at = "GISMO_CRASH_AT=" + sc.point;
    const std::string sk = "GISMO_CRASH_SKIP=" + std::to_string(skip + sc.skip);
    auto died = RunClient(m.address(), sc.script, {at, sk});
    if (died.status == 0 && sc.sweep_skip) return false;
    EXPECT_EQ(died.status, 77) << "the client should have died at " << sc.point;
    const size_t done = died.lines.empty() ? 0 : died.lines.size() - 1;
    EXPECT_LT(done, sc.script.size() + 1);
    for (size_t i = 1; i < died.lines.size(); ++i) {
      EXPECT_EQ(died.lines[i].substr(0, 2), "ok") << sc.script[i - 1] << ": " << died.lines[i];
    }

    WaitAlone(checker);
    // Usage counts active clients only: the dead client's slot itself is
    // recovered (free) before its objects are looked at.
    const size_t slot_at = died.lines.empty() ? std::string::npos : died.lines[0].find(" slot=");
    auto region = gismo::region::Region::Open(m.region());
    EXPECT_TRUE(region.ok());
    if (slot_at != std::string::npos && region.ok()) {
      WaitSlotState(**region, static_cast<uint32_t>(std::stoul(died.lines[0].substr(slot_at + 6))),
                    {gismo::region::SlotState::kFree}, "recovered");
    }
    CheckRecovered(m, checker, sc.expect, sc.names);
    return true;
  }

  // After the scenario's client is gone and recovered: objects in the states
  // `expect` allows (untouched "y" and "w" sealed), no reference or unsealed
  // object left, no lock held, fsck sound online and offline, and the heap
  // empty once everything is deleted. Stops the manager.
  void CheckRecovered(ManagerProcess& m, Client& checker, std::map<std::string, Expect> expect,
                      const std::map<std::string, std::string>& names) {
    // Names: bound as the scenario says (a rolled-back bind left nothing).
    for (const auto& [name, object] : names) {
      if (object == "*") continue;
      auto b = checker.LookupName(name);
      if (object.empty()) {
        EXPECT_EQ(b.status().code(), GISMO_ERR_OBJECT_NOT_FOUND)
            << "name '" << name << "' should be unbound: " << b.status().ToString();
      } else {
        EXPECT_TRUE(b.ok()) << "name '" << name << "': " << b.status().ToString();
        if (b.ok()) {
          EXPECT_EQ(ObjectId(b->id), ObjectId::FromName(object)) << "name '" << name << "'";
        }
      }
    }
    // States after recovery.
    expect.emplace("y", Expect::kSealed);
    expect.emplace("w", Expect::kSealed);
    for (const auto& [name, want] : expect) {
      auto st = checker.Stat(ObjectId::FromName(name));
      if (!st.ok()) {
        EXPECT_EQ(st.status().code(), GISMO_ERR_OBJECT_NOT_FOUND) << st.status().ToString();
        EXPECT_NE(want, Expect::kSealed) << "sealed object '" << name << "' was lost";
        continue;
      }
      EXPECT_NE(want, Expect::kAbsent)
          << "object '" << name << "' should be gone, state " << st->state;
      EXPECT_EQ(st->state, GISMO_STATE_SEALED) << "object '" << name << "'";
      EXPECT_EQ(st->ref_count, 0u) << "object '" << name << "' keeps the dead client's refs";
    }
    auto u = checker.Usage();
    EXPECT_TRUE(u.ok());
    if (u.ok()) {
      EXPECT_EQ(u->unsealed_count, 0u);
      EXPECT_EQ(u->deleting_count, 0u);
    }
    auto list = checker.List();
    EXPECT_TRUE(list.ok());
    for (const auto& info : list.ok() ? *list : std::vector<gismo_object_info_t>{}) {
      EXPECT_EQ(info.ref_count, 0u) << ObjectId(info.id).Hex();
    }

    // Locks: a fresh client works on the same objects, shards and classes.
    std::vector<std::string> probe;
    for (const auto& [name, want] : expect) {
      probe.push_back("stat " + name);
      probe.push_back("contains " + name);
    }
    probe.insert(probe.end(), {"put p1 3000", "put p2 200000", "put p3 500", "bind probe p3",
                               "lookup probe", "unbind probe", "delete p1", "delete p2",
                               "delete p3", "create x2 70000", "abort x2"});
    for (const auto& [name, want] : expect) {
      probe.push_back("get " + name + " 0");
      probe.push_back("verify " + name);
    }
    auto lock_probe = RunClient(m.address(), probe, {}, 10);
    EXPECT_EQ(lock_probe.status, 0) << "a client operating on the same objects did not finish "
                                       "in 10 s (-1): a lock is still held";
    for (size_t i = 1; i < lock_probe.lines.size(); ++i) {
      const std::string& l = lock_probe.lines[i];
      // A gone object: not found, or (get) not sealed in time.
      if (l.rfind("err 3 ", 0) == 0 || l.rfind("err 8 ", 0) == 0) continue;
      EXPECT_EQ(l.substr(0, 2), "ok") << probe[i - 1] << ": " << l;
      EXPECT_EQ(l.find("hash_ok=0"), std::string::npos) << probe[i - 1] << ": " << l;
    }
    WaitAlone(checker);
    Fsck("--address", m.address());

    // Everything back: delete what is left; the heap must be empty.
    for (const auto& [name, want] : expect) {
      Status s = checker.Delete(ObjectId::FromName(name));
      EXPECT_TRUE(s.ok() || s.code() == GISMO_ERR_OBJECT_NOT_FOUND) << s.ToString();
    }
    u = checker.Usage();
    EXPECT_TRUE(u.ok());
    if (u.ok()) {
      EXPECT_EQ(u->object_count, 0u);
      EXPECT_EQ(u->used_bytes, 0u) << "heap pages leaked";
    }
    (void)checker.Disconnect();
    EXPECT_EQ(m.Stop(), 0);
    Fsck("--region", m.region());
  }

  // Waits until `slot` is in one of `states` and returns that state (a
  // failure, and kFree, after timeout_s). Reads the slot state in the
  // region: a call through the store could wait on a frozen client's locks.
  gismo::region::SlotState WaitSlotState(const gismo::region::Region& r, uint32_t slot,
                                         std::initializer_list<gismo::region::SlotState> states,
                                         const char* what, double timeout_s = 15) {
    const double t0 = gismo::MonotonicS();
    for (;;) {
      // As memory holds it (this process is a host of its own under the
      // simulator).
      const gismo::region::SlotState st =
          gismo::region::SlotStateOf(gismo::testing::ReadShared(r, r.slot(slot).state));
      for (auto want : states) {
        if (st == want) return st;
      }
      if (gismo::MonotonicS() - t0 > timeout_s) {
        ADD_FAILURE() << "slot " << slot << " was not " << what << " after " << timeout_s << " s";
        return gismo::region::SlotState::kFree;
      }
      usleep(1000);
    }
  }

  // One freeze at the crash point, suspicion, thaw, exit and recovery;
  // false when the point was not reached (the script ran to its end).
  bool RunFrozenOnce(const Scenario& sc, long skip) {
    SCOPED_TRACE("frozen at " + sc.point + " skip " + std::to_string(skip));
    // No local fencing: the manager must not kill the frozen client, only
    // suspect it and wait for proof that it is gone.
    std::vector<std::string> args = CoherenceArgs(sc);
    args.insert(args.end(), {"--lease-ms", "300", "--reattach-ms", "300", "--no-local-fence"});
    ManagerProcess m = gismo::testing::StartManagerProcess(args);
    auto c = Client::Connect(m.address());
    EXPECT_TRUE(c.ok());
    if (!c.ok()) return false;
    Client& checker = *c;
    auto region = gismo::region::Region::Open(m.region());
    EXPECT_TRUE(region.ok());
    if (!region.ok()) return false;

    auto setup = RunClient(m.address(), {"put y 3000", "put w 200000"}, {});
    EXPECT_EQ(setup.status, 0);
    WaitAlone(checker);

    gismo::testing::SpawnOptions o;
    o.argv = {FAILURE_CLIENT_BIN, "--address", m.address()};
    for (const auto& cmd : sc.script) o.argv.insert(o.argv.end(), {"-c", cmd});
    o.env = {"GISMO_CRASH_AT=" + sc.point, "GISMO_CRASH_SKIP=" + std::to_string(skip + sc.skip),
             "GISMO_CRASH_ACTION=stop"};
    o.capture_stdout = true;
    gismo::testing::Process client;
    EXPECT_TRUE(client.Start(o)) << client.error();
    std::string hello;
    EXPECT_TRUE(client.ReadLineContaining("ok node=", 20, &hello)) << client.error();
    const size_t at = hello.find(" slot=");
    const uint32_t slot = at == std::string::npos ? 0 : std::stoul(hello.substr(at + 6));
    EXPECT_GT(slot, 0u) << hello;
    if (slot == 0 || slot >= (*region)->max_clients()) return false;
    // Until it stops at the point, or ends without reaching it. WNOWAIT
    // leaves an exited child for `client` to reap.
    siginfo_t si{};
    const double t0 = gismo::MonotonicS();
    for (;;) {
      si = {};
      EXPECT_EQ(waitid(P_PID, client.pid(), &si, WEXITED | WSTOPPED | WNOHANG | WNOWAIT), 0);
      if (si.si_pid != 0) break;
      if (gismo::MonotonicS() - t0 > 20) {
        ADD_FAILURE() << "the client neither stopped nor exited";
        return false;
      }
      usleep(1000);
    }
    if (si.si_code != CLD_STOPPED) {
      int status = 0;
      EXPECT_TRUE(client.WaitForExit(10, &status));
      if (sc.sweep_skip && WIFEXITED(status) && WEXITSTATUS(status) == 0) return false;
      ADD_FAILURE() << "the client should have stopped at " << sc.point;
      return false;
    }

    // Suspected (or let go, if it said goodbye before it froze), and left
    // alone without proof that it is gone: nothing it owns is touched.
    using gismo::region::SlotState;
    if (WaitSlotState(**region, slot, {SlotState::kSuspected, SlotState::kFree},
                      "suspected or gone") == SlotState::kSuspected) {
      const uint64_t log_epoch = (*region)->slot(slot).log_epoch.load(std::memory_order_acquire);
      const uint64_t held = (*region)->slot(slot).held_count.load(std::memory_order_acquire);
      // The manager's ticks pass meanwhile; still suspected, still its own.
      auto clients = checker.Clients();
      EXPECT_TRUE(clients.ok());
      EXPECT_EQ(gismo::region::SlotStateOf((*region)->slot(slot).state.load()),
                gismo::region::SlotState::kSuspected);
      EXPECT_EQ((*region)->slot(slot).log_epoch.load(), log_epoch);
      EXPECT_EQ((*region)->slot(slot).held_count.load(), held);
    }

    // What it finished before it froze: script[0, done).
    std::string before;
    (void)client.ReadToEnd(0, &before);
    const size_t done = std::count(before.begin(), before.end(), '\n');
    EXPECT_LT(done, sc.script.size());

    // Thawed: it ends the operation it was frozen in (or undoes it: then
    // GISMO_ERR_CONNECTION), and every later call fails with
    // GISMO_ERR_CONNECTION: its session has ended, it changes nothing more.
    EXPECT_TRUE(client.Signal(SIGCONT));
    std::string after;
    EXPECT_TRUE(client.ReadToEnd(20, &after));
    int status = 0;
    EXPECT_TRUE(client.WaitForExit(10, &status));
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
    std::vector<std::string> lines;
    std::istringstream in(before + after);
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    EXPECT_EQ(lines.size(), sc.script.size()) << before << after;
    for (size_t i = 0; i < lines.size() && i < sc.script.size(); ++i) {
      const std::string& cmd = sc.script[i];
      if (i < done) {
        EXPECT_EQ(lines[i].rfind("ok", 0), 0u) << cmd << ": " << lines[i];
      } else if (i == done) {
        EXPECT_TRUE(lines[i].rfind("ok", 0) == 0 || lines[i].rfind("err 9 ", 0) == 0)
            << cmd << " (frozen in it): " << lines[i];
      } else if (cmd != "disconnect") {
        EXPECT_EQ(lines[i].rfind("err 9 ", 0), 0u)
            << cmd << " after the session ended: " << lines[i];
      }
    }

    // Its process is gone: the manager proves it and recovers the slot
    // (Usage counts active clients only: wait for the slot itself).
    WaitSlotState(**region, slot, {gismo::region::SlotState::kFree}, "recovered");
    WaitAlone(checker);
    std::map<std::string, Expect> expect;
    for (auto [name, want] : sc.expect) {
      // It may have finished the operation it was frozen in.
      if (want == Expect::kAbsent) want = Expect::kEither;
      bool evictable = false, evicting = false;
      for (const auto& cmd : sc.script) {
        if (cmd == "delete " + name) want = Expect::kEither;
        if (cmd.rfind("put-evictable " + name + " ", 0) == 0) evictable = true;
        if (cmd.rfind("evict ", 0) == 0) evicting = true;
      }
      // ... an eviction, which may take any evictable object.
      if (evictable && evicting) want = Expect::kEither;
      expect.emplace(name, want);
    }
    // It may have finished the name operation it was frozen in.
    std::map<std::string, std::string> names;
    for (const auto& [name, object] : sc.names) names.emplace(name, "*");
    CheckRecovered(m, checker, expect, names);
    return true;
  }
  using Status = gismo::Status;
};

TEST_P(CrashPointTest, ClientDiesAndIsRecovered) {
  const Scenario& sc = GetParam();
  if (!sc.sweep_skip) {
    EXPECT_TRUE(RunOnce(sc, 0));
    return;
  }
  long skip = 0;
  for (; skip < 40 && !HasFailure(); ++skip) {
    if (!RunOnce(sc, skip)) break;
  }
  EXPECT_GT(skip, 5) << "the script should pass " << sc.point << " several times";
}

TEST_P(CrashPointTest, ClientFrozenThenResumed) {
  const Scenario& sc = GetParam();
  if (!sc.sweep_skip) {
    EXPECT_TRUE(RunFrozenOnce(sc, 0));
    return;
  }
  long skip = 0;
  for (; skip < 40 && !HasFailure(); ++skip) {
    if (!RunFrozenOnce(sc, skip)) break;
  }
  EXPECT_GT(skip, 5) << "the script should pass " << sc.point << " several times";
}

INSTANTIATE_TEST_SUITE_P(Failure, CrashPointTest, ::testing::ValuesIn(Scenarios()),
                         [](const ::testing::TestParamInfo<Scenario>& i) {
                           std::string n = i.param.name;
                           for (char& ch : n) {
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return n;
                         });

}  // namespace
