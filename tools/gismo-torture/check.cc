// The end-of-run check: what must hold once every worker is gone.
//
//  1. The manager has recovered every other client (its client list holds
//     only the checker) within the idle timeout: nobody is stuck.
//  2. No unsealed object is left (every creator is gone), no deleted object
//     is left (nobody holds anything), every reference count is 0.
//  3. Every object reads back and equals the regenerated content of the
//     generation its metadata names.
//  4. Against the workers' journals: every object is an incarnation some
//     worker started to create; every incarnation whose seal returned OK and
//     that nobody started to delete is present; no incarnation whose delete
//     returned OK is present.
//  5. gismo-fsck (online) finds the region sound.
//  6. After deleting every object the heap is empty (used_bytes == 0): no
//     page leaked, including the slabs of dead clients.
#include <dirent.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <sstream>
#include <unordered_set>

#include "common/clock.h"
#include "content.h"
#include "testing/process.h"
#include "torture.h"

namespace gismo::torture {

namespace {

using Incarnation = std::pair<uint64_t, uint64_t>;  // (key, generation)

struct IncarnationHash {
  size_t operator()(const Incarnation& i) const { return Mix(i.first) ^ i.second; }
};
using IncarnationSet = std::unordered_set<Incarnation, IncarnationHash>;

struct Journals {
  IncarnationSet created, sealed, delete_started, deleted;
  std::vector<std::string> failures;
};

Journals ReadJournals(const std::string& dir) {
  Journals j;
  DIR* d = opendir(dir.c_str());
  if (!d) return j;
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name.size() < 4 || name.substr(name.size() - 4) != ".log") continue;
    std::ifstream f(dir + "/" + name);
    std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    // A record is one write(2), but a SIGKILL may cut a write that crosses a
    // page boundary of the file: only newline-terminated records count.
    text.erase(text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1);
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
      if (line.size() < 2) continue;
      if (line[0] == 'F') {
        j.failures.push_back(name + ": " + line.substr(2));
        continue;
      }
      std::istringstream ls(line.substr(2));
      Incarnation inc;
      if (!(ls >> inc.first >> inc.second)) continue;
      switch (line[0]) {
        case 'C':
          j.created.insert(inc);
          break;
        case 'S':
          j.sealed.insert(inc);
          break;
        case 'D':
          j.delete_started.insert(inc);
          break;
        case 'd':
          j.deleted.insert(inc);
          break;
      }
    }
  }
  closedir(d);
  return j;
}

}  // namespace

int RunProcess(const std::vector<std::string>& argv, double timeout_s, std::string* output) {
  testing::SpawnOptions o;
  o.argv = argv;
  o.stderr_to_stdout = true;
  testing::RunResult r = testing::Run(o, timeout_s);
  if (output) *output = r.output;
  return r.exit_code;
}

CheckResult RunCheck(const CheckOptions& o) {
  CheckResult res;
  auto problem = [&res](const std::string& p) {
    ++res.failures;
    if (res.problems.size() < 50) res.problems.push_back(p);
    fprintf(stderr, "gismo-torture check: FAILURE: %s\n", p.c_str());
  };

  Client client;
  for (double give_up = MonotonicS() + 30;;) {
    auto c = Client::Connect(o.address);
    if (c.ok()) {
      client = std::move(*c);
      break;
    }
    if (MonotonicS() > give_up) {
      problem("cannot connect to the manager: " + c.status().ToString());
      return res;
    }
    usleep(20000);
  }
  uint32_t my_node = 0, my_slot = 0;
  (void)gismo_client_identity(client.c_client(), &my_node, &my_slot);

  // 1. Everybody else recovered.
  const double t0 = MonotonicS();
  for (;;) {
    auto cl = client.Clients();
    if (!cl.ok()) {
      problem("listing clients: " + cl.status().ToString());
      return res;
    }
    size_t others = 0;
    for (const auto& ci : *cl) others += ci.client != my_slot;
    if (others <= o.others) break;
    if (MonotonicS() - t0 > o.idle_timeout_s) {
      problem(std::to_string(others) + " client(s) still registered " +
              std::to_string(o.idle_timeout_s) + " s after the workers were stopped");
      break;
    }
    usleep(2000);
  }

  // 2. States and reference counts.
  std::map<std::string, uint64_t> key_of;  // id hex -> key
  for (uint64_t k = 0; k < o.keys; ++k) key_of[KeyId(o.tag, k).Hex()] = k;
  auto list = client.List();
  if (!list.ok()) {
    problem("listing objects: " + list.status().ToString());
    return res;
  }
  uint64_t foreign = 0;
  std::map<uint64_t, uint64_t> present;  // key -> generation
  std::vector<ObjectId> ours;
  for (const auto& info : *list) {
    ObjectId id(info.id);
    auto it = key_of.find(id.Hex());
    if (it == key_of.end()) {
      ++foreign;
      continue;
    }
    const std::string what = "object of key " + std::to_string(it->second);
    if (info.state == GISMO_STATE_UNSEALED) {
      problem(what + " is still unsealed (creator client " + std::to_string(info.creator_client) +
              ") although every worker is gone");
      continue;
    }
    if (info.state == GISMO_STATE_DELETING) {
      problem(what + " was deleted but never freed (" + std::to_string(info.ref_count) +
              " references)");
      continue;
    }
    if (info.ref_count != 0) {
      problem(what + " has " + std::to_string(info.ref_count) +
              " references although every worker is gone");
    }
    ours.push_back(id);
  }

  // 3. Full read.
  for (const auto& id : ours) {
    const uint64_t key = key_of[id.Hex()];
    auto b = client.Get(id, 0);
    if (!b.ok()) {
      problem("sealed object of key " + std::to_string(key) +
              " cannot be read: " + b.status().ToString());
      continue;
    }
    uint64_t gen = 0;
    std::string bad = Verify(key, b->data(), b->size(), b->metadata().data(), b->metadata().size(),
                             /*full=*/true, &gen);
    if (!bad.empty()) {
      problem("object of key " + std::to_string(key) + ": " + bad);
    } else {
      ++res.objects_verified;
      present[key] = gen;
    }
    (void)b->Release();
  }

  // 4. Against the journals.
  if (!o.journal_dir.empty()) {
    Journals j = ReadJournals(o.journal_dir);
    for (const auto& f : j.failures) problem("a worker reported: " + f);
    for (const auto& [key, gen] : present) {
      if (!j.created.count({key, gen})) {
        problem("object of key " + std::to_string(key) + " has generation " + std::to_string(gen) +
                ", which no worker created");
      }
      if (j.deleted.count({key, gen})) {
        problem("object of key " + std::to_string(key) + " generation " + std::to_string(gen) +
                " is present although its delete returned OK");
      }
    }
    // No sealed object lost, for keys that are not evictable; an evictable
    // key's incarnation may have been evicted (and the key created again).
    for (const auto& inc : j.sealed) {
      if (j.delete_started.count(inc)) continue;
      if (KeyEvictable(inc.first)) continue;
      auto it = present.find(inc.first);
      if (it == present.end() || it->second != inc.second) {
        problem("sealed object lost: key " + std::to_string(inc.first) + " generation " +
                std::to_string(inc.second) + " was sealed and never deleted, but " +
                (it == present.end()
                     ? "it is gone"
                     : "generation " + std::to_string(it->second) + " is there instead"));
      }
    }
  }

  // 5. The region checker, online.
  if (!o.fsck.empty()) {
    std::string out;
    int rc =
        RunProcess(o.address.empty() ? std::vector<std::string>{o.fsck, "--online"}
                                     : std::vector<std::string>{o.fsck, "--address", o.address},
                   120, &out);
    if (rc != 0) {
      problem("gismo-fsck online at " + o.address + " exited " + std::to_string(rc) + ":\n" + out);
    } else {
      res.fsck_line = out.substr(0, out.find('\n'));
    }
  }

  // 6. Everything deleted: the heap must be empty.
  if (o.delete_all) {
    for (const auto& id : ours) {
      Status s = client.Delete(id);
      if (!s.ok()) problem("deleting " + id.Hex() + ": " + s.ToString());
    }
    auto u = client.Usage();
    if (!u.ok()) {
      problem("usage: " + u.status().ToString());
    } else if (u->unsealed_count || u->deleting_count) {
      problem("after deleting everything: " + std::to_string(u->unsealed_count) + " unsealed and " +
              std::to_string(u->deleting_count) + " deleting objects left");
    } else if (foreign == 0 && u->client_count == 1 &&
               (u->object_count != 0 || u->used_bytes != 0)) {
      problem("after deleting every object: " + std::to_string(u->object_count) + " objects and " +
              std::to_string(u->used_bytes) + " heap bytes still in use (leaked pages)");
    }
  }
  (void)client.Disconnect();
  return res;
}

}  // namespace gismo::torture
