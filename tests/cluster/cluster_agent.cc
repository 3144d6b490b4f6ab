// cluster_agent: a gismo client that a cluster test drives line by line.
//
// Reads one command per line on stdin and answers each with exactly one line
// on stdout: "ok key=value ..." or "err CODE message". Objects are named; the
// id is ObjectId::FromName(name). Content is a pure function of (name, size),
// and its XXH3-64 is stored as the object's 8-byte metadata, so any node can
// verify what it reads. On EOF the agent disconnects and exits 0.
//
// Commands:
//   connect | disconnect
//   put NAME SIZE [keep]   create, fill, seal; release unless "keep"
//   create NAME SIZE       create and fill, leave unsealed (held by the agent)
//   seal NAME              seal an object made by create; reports seal_ns
//   get NAME TIMEOUT_MS    get and hold; found=0 when not sealed in time
//   verify NAME            re-hash a held object
//   release NAME           give back one held reference
//   delete NAME | contains NAME | stat NAME | usage | mapping
//   id NAME                the object id of NAME, in hex
//   subscribe              start this client's subscription
//   next TIMEOUT_MS        the next notification: event=sealed|deleted|overflow
//                          id=HEX size=N node=K seq=S, or event=none on timeout
//   hammer NAME COUNT [zero]  COUNT atomic increments of the first 8 bytes of
//                          the held object NAME (a scratch word shared by every
//                          node: checks that read-modify-writes are atomic
//                          across nodes), after setting it to 0 with "zero";
//                          reports the word after them
//   bind NAME OBJ          bind the name NAME to the object OBJ
//   swap NAME OLD NEW      rebind NAME from object OLD to object NEW (CAS)
//   unbind NAME
//   waitname NAME KNOWN TIMEOUT_MS  gismo_wait_name: until NAME is bound to
//                          another object than KNOWN ("-": bound at all);
//                          reports id=HEX version=N start_ns return_ns
//   exit
#include <time.h>
#include <xxhash.h>

#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <gismo/gismo.hpp>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace {

uint64_t RealtimeNs() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

uint64_t SplitMix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Byte i of the content of (name, size) depends only on name and i.
void Fill(const std::string& name, uint8_t* data, size_t size, size_t offset = 0) {
  const uint64_t seed = XXH3_64bits(name.data(), name.size());
  for (size_t i = 0; i < size; i += 8) {
    uint64_t w = SplitMix(seed ^ ((offset + i) / 8));
    std::memcpy(data + i, &w, std::min<size_t>(8, size - i));
  }
}

// XXH3-64 of the content of (name, size), computed without the object.
uint64_t ExpectedHash(const std::string& name, size_t size) {
  XXH3_state_t* st = XXH3_createState();
  XXH3_64bits_reset(st);
  std::vector<uint8_t> chunk(1 << 20);
  for (size_t off = 0; off < size; off += chunk.size()) {
    size_t n = std::min(chunk.size(), size - off);
    Fill(name, chunk.data(), n, off);
    XXH3_64bits_update(st, chunk.data(), n);
  }
  uint64_t h = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  return h;
}

std::string Hex(uint64_t v) {
  char b[17];
  snprintf(b, sizeof b, "%016" PRIx64, v);
  return b;
}

class Agent {
 public:
  void Run() {
    std::string line;
    Reply(Connect());
    while (std::getline(std::cin, line)) {
      std::istringstream in(line);
      std::string cmd;
      in >> cmd;
      if (cmd.empty()) continue;
      if (cmd == "exit") break;
      Reply(Dispatch(cmd, in));
    }
    held_.clear();
    unsealed_.clear();
    (void)client_.Disconnect();
  }

 private:
  static void Reply(const std::string& s) {
    std::fputs(s.c_str(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
  }
  static std::string Err(const gismo::Status& s) {
    return "err " + std::to_string(s.code()) + " " + s.ToString();
  }

  std::string Connect() {
    auto c = gismo::Client::Connect();
    if (!c.ok()) return Err(c.status());
    client_ = std::move(*c);
    uint32_t node = 0, slot = 0;
    (void)gismo_client_identity(client_.c_client(), &node, &slot);
    return "ok node=" + std::to_string(node) + " client=" + std::to_string(slot);
  }

  // Offset of p from this client's mapping base: equal on every node for the
  // same bytes of the one shared region.
  uint64_t Offset(const void* p) const { return client_.RegionOffset(p).value_or(UINT64_MAX); }

  std::string Create(const std::string& name, size_t size, gismo::MutableBuffer* out) {
    uint64_t h = ExpectedHash(name, size);
    auto b = client_.Create(gismo::ObjectId::FromName(name), size,
                            {reinterpret_cast<const uint8_t*>(&h), sizeof h});
    if (!b.ok()) return Err(b.status());
    Fill(name, b->data(), size);
    *out = std::move(*b);
    return "hash=" + Hex(h) + " offset=" + std::to_string(Offset(out->data()));
  }

  std::string Describe(const std::string& name, const gismo::Buffer& b) {
    uint64_t want = 0;
    if (b.metadata().size() == sizeof want) std::memcpy(&want, b.metadata().data(), sizeof want);
    uint64_t got = XXH3_64bits(b.data(), b.size());
    auto info = client_.Stat(b.id());
    return "size=" + std::to_string(b.size()) + " hash=" + Hex(got) +
           " hash_ok=" + (got == want && got == ExpectedHash(name, b.size()) ? "1" : "0") +
           " in_region=" + (client_.InRegion(b.data(), b.size()) ? "1" : "0") +
           " offset=" + std::to_string(Offset(b.data())) +
           " creator=" + (info.ok() ? std::to_string(info->creator_node) : "?");
  }

  std::string Dispatch(const std::string& cmd, std::istringstream& in) {
    std::string name;
    in >> name;
    const gismo::ObjectId id = gismo::ObjectId::FromName(name);
    if (cmd == "connect") return Connect();
    if (cmd == "fence-node" || cmd == "fence-client") {
      // The operator's word (gismo fence): `name` is the node or client id.
      auto r = client_.Fence(cmd == "fence-node" ? GISMO_FENCE_NODE : GISMO_FENCE_CLIENT,
                             std::stoull(name));
      return r.ok() ? "ok" : Err(r.status());
    }
    if (cmd == "disconnect") {
      held_.clear();
      unsealed_.clear();
      gismo::Status s = client_.Disconnect();
      return s.ok() ? "ok" : Err(s);
    }
    if (cmd == "put" || cmd == "create") {
      size_t size = 0;
      std::string keep;
      in >> size >> keep;
      gismo::MutableBuffer b;
      std::string r = Create(name, size, &b);
      if (!b.valid()) return r;
      if (cmd == "create") {
        unsealed_[name] = std::move(b);
        return "ok " + r;
      }
      if (gismo::Status s = b.Seal(); !s.ok()) return Err(s);
      uint64_t seal_ns = RealtimeNs();
      if (keep != "keep") {
        if (gismo::Status s = b.SealAndRelease(); !s.ok()) return Err(s);
      } else {
        creator_refs_[name].push_back(std::move(b));
      }
      return "ok " + r + " seal_ns=" + std::to_string(seal_ns);
    }
    if (cmd == "seal") {
      auto it = unsealed_.find(name);
      if (it == unsealed_.end()) return "err 14 no unsealed object " + name + " here";
      if (gismo::Status s = it->second.Seal(); !s.ok()) return Err(s);
      uint64_t seal_ns = RealtimeNs();
      creator_refs_[name].push_back(std::move(it->second));
      unsealed_.erase(it);
      return "ok seal_ns=" + std::to_string(seal_ns);
    }
    if (cmd == "get") {
      int64_t timeout_ms = 0;
      in >> timeout_ms;
      uint64_t t0 = RealtimeNs();
      auto r = client_.Get(std::span<const gismo::ObjectId>(&id, 1), timeout_ms);
      uint64_t t1 = RealtimeNs();
      if (!r.ok()) return Err(r.status());
      std::string times = " start_ns=" + std::to_string(t0) + " return_ns=" + std::to_string(t1);
      if (!(*r)[0].valid()) return "ok found=0" + times;
      std::string d = Describe(name, (*r)[0]);
      held_[name].push_back(std::move((*r)[0]));
      return "ok found=1 " + d + times;
    }
    if (cmd == "bind") {
      std::string obj;
      in >> obj;
      gismo::Status s = client_.BindName(name, gismo::ObjectId::FromName(obj));
      return s.ok() ? "ok" : Err(s);
    }
    if (cmd == "swap") {
      std::string from, to;
      in >> from >> to;
      gismo::Status s =
          client_.SwapName(name, gismo::ObjectId::FromName(from), gismo::ObjectId::FromName(to));
      return s.ok() ? "ok" : Err(s);
    }
    if (cmd == "unbind") {
      gismo::Status s = client_.UnbindName(name);
      return s.ok() ? "ok" : Err(s);
    }
    if (cmd == "waitname") {
      std::string known;
      int64_t timeout_ms = 0;
      in >> known >> timeout_ms;
      const gismo::ObjectId k = gismo::ObjectId::FromName(known);
      uint64_t t0 = RealtimeNs();
      auto r = client_.WaitName(name, known == "-" ? nullptr : &k, timeout_ms);
      uint64_t t1 = RealtimeNs();
      if (!r.ok()) return Err(r.status());
      return "ok id=" + gismo::ObjectId(r->id).Hex() + " version=" + std::to_string(r->version) +
             " start_ns=" + std::to_string(t0) + " return_ns=" + std::to_string(t1);
    }
    if (cmd == "verify") {
      auto it = held_.find(name);
      if (it == held_.end() || it->second.empty()) return "err 14 not held here: " + name;
      return "ok " + Describe(name, it->second.back());
    }
    if (cmd == "release") {
      if (auto it = held_.find(name); it != held_.end() && !it->second.empty()) {
        gismo::Status s = it->second.back().Release();
        it->second.pop_back();
        return s.ok() ? "ok" : Err(s);
      }
      if (auto it = creator_refs_.find(name); it != creator_refs_.end() && !it->second.empty()) {
        gismo::Status s = it->second.back().SealAndRelease();
        it->second.pop_back();
        return s.ok() ? "ok" : Err(s);
      }
      return "err 14 not held here: " + name;
    }
    if (cmd == "delete") {
      gismo::Status s = client_.Delete(id);
      return s.ok() ? "ok" : Err(s);
    }
    if (cmd == "contains") {
      auto r = client_.Contains(id);
      if (!r.ok()) return Err(r.status());
      return std::string("ok contains=") + (*r ? "1" : "0");
    }
    if (cmd == "stat") {
      auto r = client_.Stat(id);
      if (!r.ok()) return Err(r.status());
      return "ok state=" + std::to_string(r->state) + " refs=" + std::to_string(r->ref_count) +
             " size=" + std::to_string(r->data_size) +
             " creator=" + std::to_string(r->creator_node);
    }
    if (cmd == "usage") {
      auto r = client_.Usage();
      if (!r.ok()) return Err(r.status());
      return "ok used=" + std::to_string(r->used_bytes) +
             " objects=" + std::to_string(r->object_count) +
             " sealed=" + std::to_string(r->sealed_count) +
             " unsealed=" + std::to_string(r->unsealed_count) +
             " deleting=" + std::to_string(r->deleting_count) +
             " clients=" + std::to_string(r->client_count) +
             " capacity=" + std::to_string(r->capacity_bytes);
    }
    if (cmd == "id") return "ok id=" + id.Hex();
    if (cmd == "subscribe") {
      auto sub = client_.Subscribe();
      if (!sub.ok()) return Err(sub.status());
      subscription_.emplace(std::move(*sub));
      return "ok fd=" + std::to_string(subscription_->fd());
    }
    if (cmd == "next") {
      // The name was read as the first argument: here it is the timeout.
      if (!subscription_) return "err 14 not subscribed";
      auto n = subscription_->Next(std::stoll(name));
      if (!n.ok() && n.status().code() == GISMO_ERR_TIMEOUT) return "ok event=none";
      if (!n.ok()) return Err(n.status());
      const char* event = n->event == GISMO_EVENT_SEALED    ? "sealed"
                          : n->event == GISMO_EVENT_DELETED ? "deleted"
                                                            : "overflow";
      return std::string("ok event=") + event + " id=" + n->id.Hex() +
             " size=" + std::to_string(n->data_size) + " node=" + std::to_string(n->node) +
             " seq=" + std::to_string(n->seq);
    }
    if (cmd == "hammer") {
      uint64_t count = 0;
      std::string zero;
      in >> count >> zero;
      auto it = held_.find(name);
      if (it == held_.end() || it->second.empty()) return "err 14 not held here: " + name;
      const gismo::Buffer& b = it->second.back();
      if (b.size() < sizeof(uint64_t)) return "err 1 object too small";
      // Deliberately writes a sealed object, through the writable alias of
      // its read-only get pointer: its first word is the scratch counter of
      // this check, and nothing reads it as content.
      const void* base = nullptr;
      size_t size = 0;
      if (gismo_region_mapping(client_.c_client(), &base, &size) != GISMO_OK) {
        return "err 1 no mapping";
      }
      auto* word = reinterpret_cast<std::atomic<uint64_t>*>(
          static_cast<uint8_t*>(const_cast<void*>(base)) + Offset(b.data()));
      if (zero == "zero") word->store(0);
      for (uint64_t i = 0; i < count; ++i) word->fetch_add(1, std::memory_order_relaxed);
      return "ok value=" + std::to_string(word->load());
    }
    if (cmd == "mapping") {
      const void* base = nullptr;
      size_t size = 0;
      gismo_status_t s = gismo_region_mapping(client_.c_client(), &base, &size);
      if (s != GISMO_OK) return Err(gismo::Status(s, gismo_last_error()));
      char b[32];
      snprintf(b, sizeof b, "%p", base);
      return std::string("ok base=") + b + " size=" + std::to_string(size);
    }
    return "err 1 unknown command '" + cmd + "'";
  }

  gismo::Client client_;
  std::optional<gismo::Subscription> subscription_;
  // Members are destroyed in reverse order: buffers before the client.
  std::map<std::string, gismo::MutableBuffer> unsealed_;
  std::map<std::string, std::vector<gismo::MutableBuffer>> creator_refs_;
  std::map<std::string, std::vector<gismo::Buffer>> held_;
};

}  // namespace

int main() {
  Agent().Run();
  return 0;
}
