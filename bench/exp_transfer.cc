// gismo: get+read of one large object (1 GB at scale 1) on the producer's
// node, on another node, and through the network path, where the producer's
// process streams the bytes over TCP in 5 MB chunks (as Ray's object manager
// does) into memory of the consumer's process. Every variant verifies the
// same XXH3 checksum over all bytes.
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "experiments.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

namespace gismo::bench {
namespace {

constexpr size_t kChunk = 5 << 20;

struct Header {
  uint64_t size;
  uint64_t hash;
};

json Producer(const json& a) {
  Client c = ConnectWorker();
  Signals sig(c, a["tag"]);
  size_t size = a["size"];
  int connections = a["connections"];
  ObjectId id = sig.Id("object");
  MutableBuffer mb = Must(c.Create(id, size), "create");
  FillRandom(mb.data(), size, 1234);
  uint64_t hash = Hash(mb.data(), size);
  Check(mb.SealAndRelease(), "seal");
  Buffer held = Must(c.Get(id, 0), "get own object");
  int port = 0;
  int lfd = TcpListen(a["host"], &port);
  sig.Post("ready", std::to_string(hash) + " " + std::to_string(port));
  for (int i = 0; i < connections; ++i) {
    int fd = TcpAccept(lfd);
    uint64_t request;
    RecvAll(fd, &request, sizeof request);
    Header h{size, hash};
    SendAll(fd, &h, sizeof h);
    SendChunked(fd, held.data(), held.size(), kChunk);
    uint8_t ack;
    RecvAll(fd, &ack, 1);
    close(fd);
  }
  close(lfd);
  Check(held.Release(), "release");
  Check(c.Delete(id), "delete");
  return {{"hash", hash}};
}

// get + read (checksum) + release, `repeats` times; the first is the first
// touch of these pages by this process.
json Reader(const json& a) {
  Client c = ConnectWorker();
  Signals sig(c, a["tag"]);
  uint64_t expect = std::stoull(sig.Wait("ready"));
  ObjectId id = sig.Id("object");
  bool populate = a["populate"];
  std::vector<double> secs;
  for (int r = 0; r < a["repeats"].get<int>(); ++r) {
    int64_t t0 = NowNs();
    Buffer b = Must(c.Get(id, -1), "get");
    if (populate) {
      auto p = reinterpret_cast<uintptr_t>(b.data()) & ~uintptr_t{4095};
      size_t len = reinterpret_cast<uintptr_t>(b.data()) + b.size() - p;
      madvise(reinterpret_cast<void*>(p), len, MADV_POPULATE_READ);
    }
    uint64_t got = Hash(b.data(), b.size());
    Check(b.Release(), "release");
    secs.push_back(SecondsSince(t0));
    if (got != expect) Die("transfer: checksum mismatch on get");
  }
  return {{"seconds", secs}};
}

// The network path: request, then receive the stream into this process's
// memory (already faulted in, as an object store's memory would be), hashing
// each 5 MB chunk as it lands.
json NetConsumer(const json& a) {
  Client c = ConnectWorker();
  Signals sig(c, a["tag"]);
  std::string ready = sig.Wait("ready");
  uint64_t expect = std::stoull(ready);
  int port = std::stoi(ready.substr(ready.find(' ') + 1));
  size_t size = a["size"];
  auto* buf = static_cast<uint8_t*>(aligned_alloc(4096, (size + 4095) & ~size_t{4095}));
  std::memset(buf, 0, size);
  std::vector<double> secs;
  StreamingHash hash;
  for (int r = 0; r < a["repeats"].get<int>(); ++r) {
    int64_t t0 = NowNs();
    int fd = TcpConnect(a["host"], port);
    uint64_t request = 1;
    SendAll(fd, &request, sizeof request);
    Header h;
    RecvAll(fd, &h, sizeof h);
    if (h.size != size) Die("transfer: size mismatch");
    hash.Reset();
    for (size_t off = 0; off < size; off += kChunk) {
      size_t n = std::min(kChunk, size - off);
      RecvAll(fd, buf + off, n);
      hash.Update(buf + off, n);
    }
    uint64_t got = hash.Digest();
    secs.push_back(SecondsSince(t0));
    uint8_t ack = 1;
    SendAll(fd, &ack, 1);
    close(fd);
    if (got != expect || h.hash != expect) Die("transfer: checksum mismatch over TCP");
  }
  free(buf);
  return {{"seconds", secs}};
}

RegisterRole reg_p("xfer.producer", Producer);
RegisterRole reg_r("xfer.reader", Reader);
RegisterRole reg_n("xfer.net", NetConsumer);

}  // namespace

json RunTransfer(const Options& o) {
  int repeats = o.repeats > 0 ? o.repeats : 5;
  size_t size = static_cast<size_t>((1ull << 30) * o.scale) & ~size_t{63};
  std::string tag = o.Tag("transfer");
  json base = {{"tag", tag}, {"size", size}, {"repeats", repeats}, {"host", o.where.HostOf(0)}};
  json p = base;
  p["role"] = "xfer.producer";
  p["connections"] = repeats;
  Worker producer(o.where, 0, p);

  struct Variant {
    const char* name;
    const char* role;
    int node;
    bool populate;
  };
  const Variant variants[] = {{"same_node", "xfer.reader", 0, false},
                              {"other_node", "xfer.reader", 1, false},
                              {"other_node_populate", "xfer.reader", 1, true},
                              {"network", "xfer.net", 1, false}};
  json out = {{"size", size}, {"repeats", repeats}, {"chunk", kChunk}};
  for (const Variant& v : variants) {
    Progress(std::string("[gismo] get+read of ") + SizeName(size) + ": " + v.name);
    json args = base;
    args["role"] = v.role;
    args["populate"] = v.populate;
    json r = Worker(o.where, v.node, args).Wait();
    std::vector<double> s = r["seconds"];
    std::vector<double> warm(s.begin() + 1, s.end());
    Stats ws = Summarize(warm.empty() ? s : warm);
    out[v.name] = {{"first_s", s[0]},
                   {"warm_s", ToJson(ws)},
                   {"all_s", s},
                   {"first_gbps", size / s[0] / 1e9},
                   {"warm_gbps", size / ws.median / 1e9}};
  }
  producer.Wait();
  auto first = [&](const char* v) { return out[v]["first_s"].get<double>(); };
  auto warm = [&](const char* v) { return out[v]["warm_s"]["median"].get<double>(); };
  out["ratios"] = {
      {"other_over_same_first", first("other_node") / first("same_node")},
      {"other_over_same_warm", warm("other_node") / warm("same_node")},
      {"network_over_other_first", first("network") / first("other_node")},
      {"network_over_other_warm", warm("network") / warm("other_node")},
      {"network_over_other_populate_first", first("network") / first("other_node_populate")}};
  out["aims"] = {{"other_over_same_at_most", 1.2},
                 {"network_over_other_at_least", 10.0},
                 {"seeds_network_over_other", 6.75}};
  return out;
}

}  // namespace gismo::bench
