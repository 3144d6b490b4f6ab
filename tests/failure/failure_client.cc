// failure_client: a gismo client that failure tests drive, and kill.
//
// Runs the commands given with -c in order, then (with --stdin) one command
// per line from stdin. Every command answers exactly one line on stdout,
// flushed at once so that a parent knows how far a killed client got:
// "ok key=value ..." or "err CODE message". The first line, after connecting,
// is "ok node=N slot=S client=ID". Objects are named; the id is
// ObjectId::FromName(name), the content and metadata are those of
// tools/gismo-torture/content.h for key XXH3(name), generation 1, so anyone
// can verify them.
//
// Commands:
//   connect [ADDRESS]      connect again (after the manager was lost)
//   put NAME SIZE          create, fill, seal, release
//   put-evictable NAME SIZE  the same, with GISMO_CREATE_EVICTABLE
//   put-owned NAME SIZE      the same, with GISMO_CREATE_OWNED (deleted when
//                            this client leaves or is recovered)
//   evict BYTES            gismo_evict: evicted=N
//   create NAME SIZE       create and fill; stays unsealed and held
//   seal NAME | abort NAME
//   get NAME TIMEOUT_MS    get and hold (found=0 if not sealed in time)
//   release NAME           give back one held reference
//   delete NAME | contains NAME
//   stat NAME              state=1|2|3 refs=N size=N
//   verify NAME            full read of the object (get, compare, release)
//   check-held NAME        full read of the reference held since `get`
//   bind NAME OBJECT       binds the name NAME to the object named OBJECT
//   swap NAME OLD NEW      binds NAME to NEW if it is bound to OLD
//   unbind NAME            unbinds the name NAME
//   lookup NAME            object=HEX version=N (err 3 if unbound)
//   fence-node NODE        the operator's word: node NODE is fenced
//   usage                  used= objects= sealed= unsealed= deleting= clients=
//   wait-lost SECONDS      until an operation fails with GISMO_ERR_CONNECTION
//   sleep MS | exit
#include <unistd.h>
#include <xxhash.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "content.h"

namespace {

using gismo::Buffer;
using gismo::Client;
using gismo::MutableBuffer;
using gismo::ObjectId;
using gismo::Status;

uint64_t KeyOf(const std::string& name) { return XXH3_64bits(name.data(), name.size()); }

class Agent {
 public:
  explicit Agent(std::string address) : address_(std::move(address)) {}

  std::string Connect(const std::string& address) {
    if (!address.empty()) address_ = address;
    for (auto& [n, v] : held_) {
      for (auto& b : v) (void)b.Detach();  // belongs to a session that is gone
    }
    for (auto& [n, b] : unsealed_) (void)b.Detach();
    held_.clear();
    unsealed_.clear();
    client_ = Client();
    auto c = Client::Connect(address_);
    if (!c.ok()) return Err(c.status());
    client_ = std::move(*c);
    uint32_t node = 0, slot = 0;
    (void)gismo_client_identity(client_.c_client(), &node, &slot);
    uint64_t id = 0;
    if (auto cl = client_.Clients(); cl.ok()) {
      for (const auto& ci : *cl) {
        if (ci.client == slot) id = ci.client_id;
      }
    }
    return "ok node=" + std::to_string(node) + " slot=" + std::to_string(slot) +
           " client=" + std::to_string(id);
  }

  std::string Run(const std::string& line) {
    std::istringstream in(line);
    std::string cmd, name;
    in >> cmd;
    if (cmd == "connect") {
      std::string a;
      in >> a;
      return Connect(a);
    }
    if (cmd == "disconnect") {
      Status s = client_.Disconnect();
      return s.ok() ? "ok" : Err(s);
    }
    if (cmd == "usage") {
      auto u = client_.Usage();
      if (!u.ok()) return Err(u.status());
      return "ok used=" + std::to_string(u->used_bytes) +
             " objects=" + std::to_string(u->object_count) +
             " sealed=" + std::to_string(u->sealed_count) +
             " unsealed=" + std::to_string(u->unsealed_count) +
             " deleting=" + std::to_string(u->deleting_count) +
             " clients=" + std::to_string(u->client_count);
    }
    if (cmd == "evict") {
      uint64_t bytes = 0;
      in >> bytes;
      auto r = client_.Evict(bytes);
      return r.ok() ? "ok evicted=" + std::to_string(*r) : Err(r.status());
    }
    if (cmd == "fence-node") {
      uint64_t node = 0;
      in >> node;
      auto r = client_.Fence(GISMO_FENCE_NODE, node);
      return r.ok() ? "ok" : Err(r.status());
    }
    if (cmd == "sleep") {
      int ms = 0;
      in >> ms;
      usleep(ms * 1000);
      return "ok";
    }
    if (cmd == "wait-lost") {
      double secs = 30;
      in >> secs;
      for (int i = 0; i < secs * 100; ++i) {
        auto c = client_.Contains(ObjectId::FromName("failure-client-probe"));
        if (!c.ok() && c.status().code() == GISMO_ERR_CONNECTION) return "ok lost=1";
        usleep(10000);
      }
      return "err 8 the connection was not lost";
    }
    in >> name;
    if (name.empty()) return "err 1 no object name";
    if (cmd == "bind" || cmd == "swap") {
      std::string a, b;
      in >> a >> b;
      Status s = cmd == "bind"
                     ? client_.BindName(name, ObjectId::FromName(a))
                     : client_.SwapName(name, ObjectId::FromName(a), ObjectId::FromName(b));
      return s.ok() ? "ok" : Err(s);
    }
    if (cmd == "unbind") {
      Status s = client_.UnbindName(name);
      return s.ok() ? "ok" : Err(s);
    }
    if (cmd == "lookup") {
      auto b = client_.LookupName(name);
      if (!b.ok()) return Err(b.status());
      return "ok object=" + ObjectId(b->id).Hex() + " version=" + std::to_string(b->version);
    }
    const ObjectId id = ObjectId::FromName(name);
    const uint64_t key = KeyOf(name);
    if (cmd == "put" || cmd == "create" || cmd == "put-evictable" || cmd == "put-owned") {
      size_t size = 0;
      in >> size;
      const uint32_t flags = cmd == "put-evictable" ? GISMO_CREATE_EVICTABLE
                             : cmd == "put-owned"   ? GISMO_CREATE_OWNED
                                                    : 0;
      std::vector<uint8_t> data(size);
      gismo::torture::Fill(key, 1, data.data(), size);
      auto meta = gismo::torture::MakeMeta(key, 1, data.data(), size);
      auto b =
          client_.Create(id, size, {reinterpret_cast<const uint8_t*>(&meta), sizeof meta}, flags);
      if (!b.ok()) return Err(b.status());
      std::memcpy(b->data(), data.data(), size);
      if (cmd == "create") {
        unsealed_[name] = std::move(*b);
        return "ok";
      }
      if (Status s = b->SealAndRelease(); !s.ok()) return Err(s);
      return "ok";
    }
    if (cmd == "seal") {
      Status s = client_.Seal(id);
      if (!s.ok()) return Err(s);
      // The creator's reference stays held, as after gismo_seal.
      auto it = unsealed_.find(name);
      if (it != unsealed_.end()) {
        (void)it->second.Detach();
        unsealed_.erase(it);
      }
      return "ok";
    }
    if (cmd == "abort") {
      Status s = client_.Abort(id);
      if (!s.ok()) return Err(s);
      auto it = unsealed_.find(name);
      if (it != unsealed_.end()) {
        (void)it->second.Detach();
        unsealed_.erase(it);
      }
      return "ok";
    }
    if (cmd == "get") {
      int64_t timeout = 0;
      in >> timeout;
      auto b = client_.Get(id, timeout);
      if (!b.ok()) {
        if (b.status().code() == GISMO_ERR_TIMEOUT) return "ok found=0";
        return Err(b.status());
      }
      std::string bad = gismo::torture::Verify(key, b->data(), b->size(), b->metadata().data(),
                                               b->metadata().size(), true);
      held_[name].push_back(std::move(*b));
      return std::string("ok found=1 hash_ok=") + (bad.empty() ? "1" : "0");
    }
    if (cmd == "release") {
      auto it = held_.find(name);
      if (it != held_.end() && !it->second.empty()) {
        Status s = it->second.back().Release();
        it->second.pop_back();
        return s.ok() ? "ok" : Err(s);
      }
      Status s = client_.Release(id);  // e.g. the creator's reference
      return s.ok() ? "ok" : Err(s);
    }
    if (cmd == "delete") {
      Status s = client_.Delete(id);
      return s.ok() ? "ok" : Err(s);
    }
    if (cmd == "contains") {
      auto c = client_.Contains(id);
      if (!c.ok()) return Err(c.status());
      return std::string("ok contains=") + (*c ? "1" : "0");
    }
    if (cmd == "stat") {
      auto st = client_.Stat(id);
      if (!st.ok()) return Err(st.status());
      return "ok state=" + std::to_string(st->state) + " refs=" + std::to_string(st->ref_count) +
             " size=" + std::to_string(st->data_size);
    }
    if (cmd == "check-held") {  // the bytes of a reference held since `get`
      auto it = held_.find(name);
      if (it == held_.end() || it->second.empty()) return "err 14 not held";
      const auto& b = it->second.front();
      std::string bad = gismo::torture::Verify(key, b.data(), b.size(), b.metadata().data(),
                                               b.metadata().size(), true);
      return bad.empty() ? "ok hash_ok=1" : "ok hash_ok=0 problem=" + bad;
    }
    if (cmd == "verify") {
      auto b = client_.Get(id, 0);
      if (!b.ok()) return Err(b.status());
      std::string bad = gismo::torture::Verify(key, b->data(), b->size(), b->metadata().data(),
                                               b->metadata().size(), true);
      (void)b->Release();
      return bad.empty() ? "ok hash_ok=1" : "ok hash_ok=0 problem=" + bad;
    }
    return "err 1 unknown command '" + cmd + "'";
  }

  void Close() {
    held_.clear();
    unsealed_.clear();
    (void)client_.Disconnect();
  }

 private:
  static std::string Err(const Status& s) {
    return "err " + std::to_string(s.code()) + " " + s.ToString();
  }

  std::string address_;
  Client client_;
  std::map<std::string, std::vector<Buffer>> held_;
  std::map<std::string, MutableBuffer> unsealed_;
};

void Reply(const std::string& s) {
  std::fputs((s + "\n").c_str(), stdout);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  std::string address;
  std::vector<std::string> commands;
  bool from_stdin = false;
  CLI::App app{"failure_client: a gismo client driven (and killed) by failure tests"};
  app.add_option("--address", address, "Manager address (default $GISMO_ADDRESS)");
  app.add_option("-c", commands, "A command (repeatable, run in order)");
  app.add_flag("--stdin", from_stdin,
               "Then read commands from stdin, one per line (the default without -c)");
  CLI11_PARSE(app, argc, argv);

  if (commands.empty()) from_stdin = true;
  Agent agent(address);
  std::string hello = agent.Connect("");
  Reply(hello);
  if (hello.rfind("ok", 0) != 0) return 3;
  for (const auto& c : commands) Reply(agent.Run(c));
  if (from_stdin) {
    std::string line;
    while (std::getline(std::cin, line)) {
      if (line.empty()) continue;
      if (line == "exit") break;
      Reply(agent.Run(line));
    }
  }
  agent.Close();
  return 0;
}
