// memory: one object read by N nodes at once. With gismo the pool holds one
// copy (gismo_usage used_bytes grows by the object's size once) and readers
// map it; the baseline gives every other node its own copy over TCP, so the
// cluster holds N copies.
#include <unistd.h>

#include <cstring>

#include "experiments.h"

namespace gismo::bench {
namespace {

json Producer(const json& a) {
  Client c = ConnectWorker();
  Signals sig(c, a["tag"]);
  const size_t size = a["size"];
  const int readers = a["readers"];
  const bool tcp = a["mode"] == "tcp";
  uint64_t used_before = Must(c.Usage(), "usage").used_bytes;
  ObjectId id = sig.Id("object");
  std::vector<uint8_t> local;
  uint64_t hash;
  int lfd = -1, port = 0;
  if (!tcp) {
    MutableBuffer mb = Must(c.Create(id, size), "create");
    FillRandom(mb.data(), size, 99);
    hash = Hash(mb.data(), size);
    Check(mb.SealAndRelease(), "seal");
  } else {
    local.resize(size);
    FillRandom(local.data(), size, 99);
    hash = Hash(local.data(), size);
    lfd = TcpListen(a["host"], &port);
  }
  sig.Post("ready", std::to_string(hash) + " " + std::to_string(port));
  if (tcp) {
    for (int k = 0; k < readers; ++k) {
      int fd = TcpAccept(lfd);
      SendChunked(fd, local.data(), size, 5 << 20);
      close(fd);
    }
    close(lfd);
  }
  for (int k = 0; k < readers; ++k) sig.Wait("held/" + std::to_string(k));
  uint64_t used_during = Must(c.Usage(), "usage").used_bytes;
  MemInfo mem = ReadMemInfo();
  sig.Post("release");
  for (int k = 0; k < readers; ++k) sig.Wait("released/" + std::to_string(k));
  if (!tcp) Check(c.Delete(id), "delete");
  return {{"used_before", used_before}, {"used_during", used_during}, {"mem", ToJson(mem)}};
}

json Reader(const json& a) {
  Client c = ConnectWorker();
  Signals sig(c, a["tag"]);
  const size_t size = a["size"];
  const int index = a["index"];
  const bool tcp = a["mode"] == "tcp";
  std::string ready = sig.Wait("ready");
  uint64_t expect = std::stoull(ready);
  int port = std::stoi(ready.substr(ready.find(' ') + 1));
  MemInfo before = ReadMemInfo();
  int64_t t0 = NowNs();
  Buffer held;
  std::vector<uint8_t> copy;
  uint64_t got;
  if (!tcp) {
    held = Must(c.Get(sig.Id("object"), -1), "get");
    got = Hash(held.data(), held.size());
  } else {
    copy.resize(size);
    int fd = TcpConnect(a["host"], port);
    RecvAll(fd, copy.data(), size);
    close(fd);
    got = Hash(copy.data(), size);
  }
  double secs = SecondsSince(t0);
  if (got != expect) Die("memory: checksum mismatch");
  MemInfo after = ReadMemInfo();
  sig.Post("held/" + std::to_string(index));
  sig.Wait("release");
  Check(held.Release(), "release");
  sig.Post("released/" + std::to_string(index));
  return {{"seconds", secs},
          {"mem", ToJson(after)},
          {"private_growth", after.rss_anon - std::min(after.rss_anon, before.rss_anon)}};
}

RegisterRole reg_p("memory.producer", Producer);
RegisterRole reg_r("memory.reader", Reader);

}  // namespace

json RunMemory(const Options& o) {
  const int nodes = o.nodes;
  const size_t size = static_cast<size_t>((256ull << 20) * o.scale) & ~size_t{63};
  json out = {{"nodes", nodes}, {"size", size}};
  for (const char* mode : {"gismo", "tcp"}) {
    Progress(std::string("[memory ") + mode + "] one " + SizeName(size) + " object, " +
             std::to_string(nodes) + " nodes reading");
    // gismo: a reader on every node (the producer's too); tcp: the
    // producer's node reads its own copy, every other node receives one.
    const int readers = std::string(mode) == "gismo" ? nodes : nodes - 1;
    json base = {{"tag", o.Tag(std::string("memory-") + mode)},
                 {"size", size},
                 {"mode", mode},
                 {"host", o.where.HostOf(0)},
                 {"readers", readers}};
    json p = base;
    p["role"] = "memory.producer";
    Worker producer(o.where, 0, p);
    std::vector<Worker> rs;
    for (int k = 0; k < readers; ++k) {
      json r = base;
      r["role"] = "memory.reader";
      r["index"] = k;
      rs.emplace_back(o.where, readers == nodes ? k : k + 1, r);
    }
    std::vector<json> rres;
    for (auto& w : rs) rres.push_back(w.Wait());
    json pres = producer.Wait();
    uint64_t private_sum = 0;
    for (auto& j : rres) private_sum += j["private_growth"].get<uint64_t>();
    if (std::string(mode) == "gismo") {
      uint64_t pool = pres["used_during"].get<uint64_t>() - pres["used_before"].get<uint64_t>();
      out[mode] = {{"pool_bytes_for_object", pool},
                   {"copies", static_cast<double>(pool) / size},
                   {"readers_private_growth_sum", private_sum},
                   {"readers", rres}};
    } else {
      // The producer's own copy plus every received copy.
      uint64_t total = size + private_sum;
      out[mode] = {{"bytes_held", total},
                   {"copies", static_cast<double>(total) / size},
                   {"readers_private_growth_sum", private_sum},
                   {"readers", rres}};
    }
  }
  return out;
}

}  // namespace gismo::bench
