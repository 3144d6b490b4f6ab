// shuffle: one map task and one reduce task per node. Each map task writes
// one partition per reducer; each reducer reads its partition from every map
// task and sums the values by key. With gismo the partitions are objects and
// reducers get them by reference; the baseline sends every remote partition
// over TCP to the reducer's process (the local one is read in place).
//
// Partition layout: `count` records {key, value} (16 bytes each), then the
// 8-byte sum of the values, which the reducer checks. A key carries its
// partition in its low byte (key = k << 8 | partition, up to 256 nodes): the
// map task picks the partition once, as a hash partitioner does, and the
// reducer finds k and checks the partition with a shift and a mask. (Keys
// were k * nodes + partition before: two integer divisions per record in
// the reducer cost more than moving the record, in both variants, and hid
// the difference between them.)
#include <unistd.h>

#include <cstring>
#include <thread>

#include "experiments.h"

namespace gismo::bench {
namespace {

constexpr uint64_t kKeys = 1 << 16;  // distinct keys per reducer
constexpr int kPartitionBits = 8;
constexpr int kMaxNodes = 1 << kPartitionBits;

struct Rec {
  uint64_t key;
  uint64_t value;
};

// Writes partition `part` of map task `map`.
void FillPartition(uint8_t* p, size_t count, int map, int part) {
  uint64_t x = 0x9e3779b97f4a7c15ull * (map * 131 + part + 1);
  auto* r = reinterpret_cast<Rec*>(p);
  uint64_t sum = 0;
  for (size_t i = 0; i < count; ++i) {
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    uint64_t v = x * 0x2545f4914f6cdd1dull;
    r[i].key = (v % kKeys) << kPartitionBits | static_cast<uint64_t>(part);
    r[i].value = v >> 48;
    sum += r[i].value;
  }
  std::memcpy(p + count * sizeof(Rec), &sum, sizeof sum);
}

// Adds a partition into `totals`; returns false if it fails verification.
bool Reduce(const uint8_t* p, size_t bytes, int part, std::vector<uint64_t>& totals) {
  size_t count = (bytes - 8) / sizeof(Rec);
  auto* r = reinterpret_cast<const Rec*>(p);
  uint64_t sum = 0, expect;
  bool keys_ok = true;
  for (size_t i = 0; i < count; ++i) {
    keys_ok &= (r[i].key & (kMaxNodes - 1)) == static_cast<uint64_t>(part);
    totals[(r[i].key >> kPartitionBits) % kKeys] += r[i].value;
    sum += r[i].value;
  }
  std::memcpy(&expect, p + count * sizeof(Rec), sizeof expect);
  return keys_ok && sum == expect;
}

json Node(const json& a) {
  Client c = ConnectWorker();
  Signals sig(c, a["tag"]);
  const int me = a["node"], nodes = a["nodes"];
  const size_t count = a["records"];  // per partition
  const size_t bytes = count * sizeof(Rec) + 8;
  const bool tcp = a["mode"] == "tcp";
  const std::vector<std::string> hosts = a["hosts"];
  std::vector<uint64_t> totals(kKeys, 0);
  uint64_t expected_total = 0, reduced_total = 0;
  int64_t start = 0, map_end = 0, end = 0;
  MemInfo mem;
  uint64_t pool_used = 0;
  bool ok = true;

  if (!tcp) {
    auto id = [&](int map, int part) {
      return sig.Id("part/" + std::to_string(map) + "/" + std::to_string(part));
    };
    sig.Post("up/" + std::to_string(me));
    for (int k = 0; k < nodes; ++k) sig.Wait("up/" + std::to_string(k));
    if (me == 0) Progress("[shuffle gismo] map and reduce");
    start = NowNs();
    for (int part = 0; part < nodes; ++part) {
      MutableBuffer mb = Must(c.Create(id(me, part), bytes), "create partition");
      FillPartition(mb.data(), count, me, part);
      Check(mb.SealAndRelease(), "seal partition");
    }
    map_end = NowNs();
    for (int map = 0; map < nodes; ++map) {
      // Waits for the map task's seal: the only synchronization needed.
      Buffer b = Must(c.Get(id(map, me), -1), "get partition");
      ok &= Reduce(b.data(), b.size(), me, totals);
      uint64_t s;
      std::memcpy(&s, b.data() + b.size() - 8, 8);
      expected_total += s;
    }
    end = NowNs();
    mem = ReadMemInfo();
    pool_used = Must(c.Usage(), "usage").used_bytes;
    sig.Post("reduced/" + std::to_string(me));
    for (int k = 0; k < nodes; ++k) sig.Wait("reduced/" + std::to_string(k));
    for (int part = 0; part < nodes; ++part) Check(c.Delete(id(me, part)), "delete");
  } else {
    int port = 0;
    int lfd = TcpListen(hosts[me], &port);
    sig.Post("port/" + std::to_string(me), std::to_string(port));
    std::vector<int> ports(nodes);
    for (int k = 0; k < nodes; ++k) ports[k] = std::stoi(sig.Wait("port/" + std::to_string(k)));
    if (me == 0) Progress("[shuffle tcp] map, send, reduce");
    start = NowNs();
    // Receivers: one thread per incoming map task.
    std::vector<std::vector<uint8_t>> received(nodes);
    std::thread acceptor([&] {
      std::vector<std::thread> conns;
      for (int k = 0; k < nodes - 1; ++k) {
        int fd = TcpAccept(lfd);
        conns.emplace_back([fd, &received] {
          uint64_t hdr[2];
          RecvAll(fd, hdr, sizeof hdr);
          std::vector<uint8_t>& dst = received[hdr[0]];
          dst.resize(hdr[1]);
          RecvAll(fd, dst.data(), dst.size());
          close(fd);
        });
      }
      for (auto& t : conns) t.join();
    });
    std::vector<std::vector<uint8_t>> parts(nodes);
    for (int part = 0; part < nodes; ++part) {
      parts[part].resize(bytes);
      FillPartition(parts[part].data(), count, me, part);
    }
    map_end = NowNs();
    for (int d = 1; d < nodes; ++d) {
      int to = (me + d) % nodes;
      int fd = TcpConnect(hosts[to], ports[to]);
      uint64_t hdr[2] = {static_cast<uint64_t>(me), bytes};
      SendAll(fd, hdr, sizeof hdr);
      SendChunked(fd, parts[to].data(), bytes, 5 << 20);
      close(fd);
      std::vector<uint8_t>().swap(parts[to]);  // a sent map output is dropped
    }
    acceptor.join();
    close(lfd);
    received[me] = std::move(parts[me]);
    for (int map = 0; map < nodes; ++map) {
      const std::vector<uint8_t>& b = received[map];
      ok &= Reduce(b.data(), b.size(), me, totals);
      uint64_t s;
      std::memcpy(&s, b.data() + b.size() - 8, 8);
      expected_total += s;
    }
    end = NowNs();
    mem = ReadMemInfo();
    sig.Post("reduced/" + std::to_string(me));
    for (int k = 0; k < nodes; ++k) sig.Wait("reduced/" + std::to_string(k));
  }
  for (uint64_t t : totals) reduced_total += t;
  if (!ok || reduced_total != expected_total) Die("shuffle: reduce output failed verification");
  return {{"start_ns", start},  {"map_end_ns", map_end},  {"end_ns", end},
          {"mem", ToJson(mem)}, {"pool_used", pool_used}, {"reduced_total", reduced_total}};
}

RegisterRole reg_node("shuffle.node", Node);

}  // namespace

json RunShuffle(const Options& o) {
  int repeats = o.repeats > 0 ? o.repeats : 2;
  const int nodes = o.nodes;
  if (nodes > kMaxNodes) Die("shuffle: at most " + std::to_string(kMaxNodes) + " nodes");
  const size_t per_map = static_cast<size_t>((512ull << 20) * o.scale);
  const size_t records = per_map / nodes / sizeof(Rec);
  const double total_bytes = static_cast<double>(records) * sizeof(Rec) * nodes * nodes;
  std::vector<std::string> hosts;
  for (int k = 0; k < nodes; ++k) hosts.push_back(o.where.HostOf(k));
  json out = {{"nodes", nodes}, {"bytes", total_bytes}, {"repeats", repeats}};
  for (const char* mode : {"gismo", "tcp"}) {
    std::vector<double> secs;
    json last_nodes;
    for (int r = 0; r < repeats; ++r) {
      std::vector<Worker> ws;
      for (int k = 0; k < nodes; ++k) {
        ws.emplace_back(o.where, k,
                        json{{"role", "shuffle.node"},
                             {"tag", o.Tag(std::string("shuffle-") + mode + std::to_string(r))},
                             {"node", k},
                             {"nodes", nodes},
                             {"records", records},
                             {"mode", mode},
                             {"hosts", hosts}});
      }
      std::vector<json> res;
      for (auto& w : ws) res.push_back(w.Wait());
      int64_t start = INT64_MAX, end = 0;
      for (auto& j : res) {
        start = std::min<int64_t>(start, j["start_ns"]);
        end = std::max<int64_t>(end, j["end_ns"]);
      }
      secs.push_back((end - start) * 1e-9);
      last_nodes = res;
    }
    Stats s = Summarize(secs);
    uint64_t hwm_sum = 0, anon_sum = 0, pool = 0;
    for (auto& j : last_nodes) {
      hwm_sum += j["mem"]["vm_hwm"].get<uint64_t>();
      anon_sum += j["mem"]["rss_anon"].get<uint64_t>();
      pool = std::max<uint64_t>(pool, j["pool_used"]);
    }
    out[mode] = {{"seconds", ToJson(s)},
                 {"gbps", total_bytes / s.median / 1e9},
                 {"per_node", last_nodes},
                 {"peak_rss_sum", hwm_sum},
                 {"rss_anon_sum_at_end", anon_sum},
                 {"pool_used_at_end", pool}};
  }
  out["ratio_tcp_over_gismo"] = out["tcp"]["seconds"]["median"].get<double>() /
                                out["gismo"]["seconds"]["median"].get<double>();
  out["aims"] = {{"tcp_over_gismo_at_least", 4.0}, {"seeds_tcp_over_gismo", 2.8}};
  return out;
}

}  // namespace gismo::bench
