// The shared-cache benchmark (issue 18): four "database nodes" read blocks
// by key with a Zipf pattern over a data set larger than one node's cache;
// a miss loads the block for real (pread of a zstd-compressed chunk from a
// file, then decompression), plus an optional fixed delay standing for
// object storage. Compared in one run, with the same total memory:
//   private  a private LRU cache per node of capacity C (what each node of a
//            scale-out database keeps today);
//   gismo4C  one gismo cache (gismo::Cache, evictable objects) of 4C shared
//            by the four nodes;
//   gismoC   one gismo cache of C.
// For Zipf 0.9 and 1.1, with the nodes reading the same key range
// (overlapping) or each its own quarter (partitioned). Then the herd test:
// the four nodes miss the same block at the same moment; it must be loaded
// once.
//
// Nodes are processes with distinct GISMO_NODE on this host (the region is
// the same memory either way; no network is on the data path).
//
//   gismo_cache_bench [--blocks 4096] [--block-kib 64] [--cache-blocks 512]
//                     [--reads 20000] [--delay-us 0] [--json FILE]
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zstd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <gismo/cache.hpp>
#include <list>
#include <random>
#include <unordered_map>

#include "bench_util.h"

namespace gismo::bench {
namespace {

struct Options {
  uint64_t blocks = 4096;       // data set, in blocks
  uint64_t block_kib = 64;      // decompressed block size
  uint64_t cache_blocks = 512;  // C: one node's cache, in blocks
  uint64_t reads = 20000;       // per node per configuration
  uint64_t delay_us = 0;        // added to every load (object storage)
  int nodes = 4;
  std::string manager_bin;
  std::string json_path;
  std::string data_path;
};

// The data set: one file of zstd frames, one per block.
struct DataSet {
  std::string path;
  std::vector<uint64_t> offset, length;
  uint64_t block_bytes = 0;
};

DataSet MakeDataSet(const Options& o) {
  DataSet d;
  d.path = o.data_path;
  d.block_bytes = o.block_kib << 10;
  int fd = open(d.path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0) Die("cannot write " + d.path);
  std::vector<uint8_t> block(d.block_bytes), frame(ZSTD_compressBound(d.block_bytes));
  std::mt19937_64 rng(18);
  static const char* words[] = {"select", "lineitem",          "orders", "1995-03-15", "BUILDING",
                                "0.04",   "DELIVER IN PERSON", "AIR",    "|",          "urgent",
                                "42"};
  uint64_t off = 0;
  for (uint64_t b = 0; b < o.blocks; ++b) {
    // Table-like text: compresses about 3x, like columnar pages do.
    size_t i = 0;
    while (i < block.size()) {
      const char* w = words[rng() % 11];
      for (const char* p = w; *p && i < block.size(); ++p) block[i++] = static_cast<uint8_t>(*p);
      if (i < block.size()) block[i++] = static_cast<uint8_t>('0' + rng() % 10);
    }
    std::memcpy(block.data(), &b, sizeof b);  // each block is its own
    size_t n = ZSTD_compress(frame.data(), frame.size(), block.data(), block.size(), 3);
    if (ZSTD_isError(n)) Die("zstd: " + std::string(ZSTD_getErrorName(n)));
    if (write(fd, frame.data(), n) != static_cast<ssize_t>(n)) Die("write " + d.path);
    d.offset.push_back(off);
    d.length.push_back(n);
    off += n;
  }
  close(fd);
  return d;
}

// A load from "storage": read the compressed chunk, decompress it.
class Storage {
 public:
  Storage(const DataSet& d, uint64_t delay_us) : d_(d), delay_us_(delay_us) {
    fd_ = open(d.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) Die("cannot read " + d.path);
    dctx_ = ZSTD_createDCtx();
  }
  ~Storage() {
    ZSTD_freeDCtx(dctx_);
    close(fd_);
  }
  std::vector<uint8_t> Load(uint64_t block) {
    ++loads;
    std::vector<uint8_t> frame(d_.length[block]);
    if (pread(fd_, frame.data(), frame.size(), static_cast<off_t>(d_.offset[block])) !=
        static_cast<ssize_t>(frame.size())) {
      Die("pread");
    }
    std::vector<uint8_t> out(d_.block_bytes);
    size_t n = ZSTD_decompressDCtx(dctx_, out.data(), out.size(), frame.data(), frame.size());
    if (ZSTD_isError(n) || n != out.size()) Die("zstd: corrupt block");
    if (delay_us_ > 0) usleep(static_cast<useconds_t>(delay_us_));
    return out;
  }
  uint64_t loads = 0;

 private:
  const DataSet& d_;
  uint64_t delay_us_;
  int fd_ = -1;
  ZSTD_DCtx* dctx_ = nullptr;
};

// Zipf(s) over [0, n): rank r has weight 1 / (r + 1)^s. Ranks are spread
// over the key space by a fixed permutation, so hot keys are not adjacent.
class Zipf {
 public:
  Zipf(uint64_t n, double s, uint64_t seed) : rng_(seed), perm_(n) {
    cdf_.resize(n);
    double sum = 0;
    for (uint64_t r = 0; r < n; ++r) cdf_[r] = (sum += 1.0 / std::pow(double(r + 1), s));
    for (double& c : cdf_) c /= sum;
    for (uint64_t i = 0; i < n; ++i) perm_[i] = i;
    std::mt19937_64 p(7);
    std::shuffle(perm_.begin(), perm_.end(), p);
  }
  uint64_t Next() {
    double u = std::uniform_real_distribution<double>(0, 1)(rng_);
    auto it = std::lower_bound(cdf_.begin(), cdf_.end(), u);
    return perm_[std::min<size_t>(it - cdf_.begin(), cdf_.size() - 1)];
  }

 private:
  std::mt19937_64 rng_;
  std::vector<double> cdf_;
  std::vector<uint64_t> perm_;
};

// A node's private LRU cache of `capacity` blocks.
class PrivateLru {
 public:
  explicit PrivateLru(uint64_t capacity) : cap_(capacity) {}
  const std::vector<uint8_t>& Get(uint64_t key, Storage& s, bool* hit) {
    auto it = map_.find(key);
    if (it != map_.end()) {
      order_.splice(order_.begin(), order_, it->second);
      *hit = true;
      return it->second->second;
    }
    *hit = false;
    if (map_.size() >= cap_) {
      map_.erase(order_.back().first);
      order_.pop_back();
    }
    order_.emplace_front(key, s.Load(key));
    map_[key] = order_.begin();
    return order_.front().second;
  }

 private:
  uint64_t cap_;
  std::list<std::pair<uint64_t, std::vector<uint8_t>>> order_;
  std::unordered_map<uint64_t, decltype(order_)::iterator> map_;
};

std::string Key(uint64_t block) { return "b" + std::to_string(block); }

// One node's run; its result as JSON on `out_fd`.
json RunNode(const Options& o, const DataSet& d, const std::string& mode, double zipf_s,
             bool partitioned, int node, const std::string& address) {
  Storage storage(d, o.delay_us);
  const uint64_t range = partitioned ? o.blocks / o.nodes : o.blocks;
  const uint64_t base = partitioned ? range * node : 0;
  Zipf zipf(range, zipf_s, 1000 + node);
  std::vector<double> lat;
  lat.reserve(o.reads);
  uint64_t hits = 0, checksum = 0;
  MemInfo m;
  if (mode == "private") {
    PrivateLru lru(o.cache_blocks);
    for (uint64_t i = 0; i < o.reads; ++i) {
      const uint64_t k = base + zipf.Next();
      const int64_t t0 = NowNs();
      bool hit = false;
      const auto& b = lru.Get(k, storage, &hit);
      checksum += b[b.size() - 1];
      lat.push_back((NowNs() - t0) * 1e-3);
      hits += hit;
    }
    m = ReadMemInfo();  // while the private cache still holds its blocks
  } else {
    Client c = Must(Client::Connect(address), "connect");
    Cache cache(c, "bench/");
    auto loader = [&](std::string_view key) -> Result<std::vector<uint8_t>> {
      return storage.Load(std::stoull(std::string(key.substr(1))));
    };
    for (uint64_t i = 0; i < o.reads; ++i) {
      const uint64_t k = base + zipf.Next();
      const int64_t t0 = NowNs();
      auto b = Must(cache.Get(Key(k), loader), "cache get");
      checksum += b.data()[b.size() - 1];
      lat.push_back((NowNs() - t0) * 1e-3);
    }
    hits = cache.stats().hits + cache.stats().waits;
    m = ReadMemInfo();
  }
  Stats st = Summarize(lat);
  return json{{"hits", hits},           {"reads", o.reads},    {"loads", storage.loads},
              {"p50_us", st.median},    {"p99_us", st.p99},    {"mean_us", st.mean},
              {"rss_anon", m.rss_anon}, {"checksum", checksum}};
}

// Runs `fn(node)` in one child per node; returns each child's JSON.
template <typename Fn>
std::vector<json> ForkNodes(int nodes, Fn fn) {
  std::vector<std::pair<pid_t, int>> kids;
  for (int n = 0; n < nodes; ++n) {
    int p[2];
    if (pipe(p) != 0) Die("pipe");
    pid_t pid = fork();
    if (pid < 0) Die("fork");
    if (pid == 0) {
      close(p[0]);
      setenv("GISMO_NODE", std::to_string(n + 1).c_str(), 1);
      std::string line = fn(n).dump() + "\n";
      (void)!write(p[1], line.data(), line.size());
      _exit(0);
    }
    close(p[1]);
    kids.emplace_back(pid, p[0]);
  }
  std::vector<json> out;
  for (auto& [pid, fd] : kids) {
    std::string s;
    char buf[4096];
    for (ssize_t r; (r = read(fd, buf, sizeof buf)) > 0;) s.append(buf, r);
    close(fd);
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || s.empty()) Die("a node failed");
    out.push_back(json::parse(s));
  }
  return out;
}

// Region size whose heap holds `blocks` blocks (metadata is ~10 MiB here).
std::string RegionFor(const Options& o, uint64_t blocks) {
  return std::to_string((blocks * (o.block_kib << 10) >> 20) + 12) + "MiB";
}

json RunConfig(const Options& o, const DataSet& d, const std::string& mode, double s,
               bool partitioned) {
  std::unique_ptr<testing::ManagerProcess> mgr;
  std::string address;
  uint64_t capacity = o.cache_blocks * o.nodes * d.block_bytes;  // private: 4 x C
  if (mode != "private") {
    const uint64_t blocks = mode == "gismo4C" ? 4 * o.cache_blocks : o.cache_blocks;
    mgr = std::make_unique<testing::ManagerProcess>(
        StartManager(o.manager_bin, RegionFor(o, blocks), {},
                     {"--max-objects", std::to_string(4 * o.blocks + 1024)}));
    address = mgr->address();
  }
  const int64_t t0 = NowNs();
  auto nodes =
      ForkNodes(o.nodes, [&](int n) { return RunNode(o, d, mode, s, partitioned, n, address); });
  const double secs = SecondsSince(t0);
  uint64_t hits = 0, reads = 0, loads = 0, rss = 0;
  std::vector<double> p50, p99;
  for (const json& j : nodes) {
    hits += j["hits"].get<uint64_t>();
    reads += j["reads"].get<uint64_t>();
    loads += j["loads"].get<uint64_t>();
    rss += j["rss_anon"].get<uint64_t>();
    p50.push_back(j["p50_us"]);
    p99.push_back(j["p99_us"]);
  }
  uint64_t region_used = 0, evictions = 0;
  if (mgr) {
    Client c = Must(Client::Connect(address), "connect");
    gismo_usage_t u = Must(c.Usage(), "usage");
    region_used = u.used_bytes;
    capacity = u.capacity_bytes;
    evictions = u.evictions;
  }
  std::sort(p50.begin(), p50.end());
  std::sort(p99.begin(), p99.end());
  return json{{"mode", mode},
              {"zipf", s},
              {"keys", partitioned ? "partitioned" : "overlapping"},
              {"hit_ratio", double(hits) / double(reads)},
              {"loads", loads},
              {"reads", reads},
              {"cache_capacity_bytes", capacity},
              {"rss_anon_bytes", rss},
              {"region_used_bytes", region_used},
              {"memory_bytes", rss + region_used},
              {"p50_us", p50[p50.size() / 2]},  // median over nodes
              {"p99_us", p99.back()},           // worst node
              {"evictions", evictions},
              {"seconds", secs}};
}

// All nodes miss the same block at once: it must be loaded exactly once.
json RunHerd(const Options& o, const DataSet& d) {
  auto mgr = StartManager(o.manager_bin, RegionFor(o, 4 * o.cache_blocks));
  const std::string address = mgr.address();
  const int64_t start_at = NowNs() + 300'000'000;  // a common start, after every connect
  auto nodes = ForkNodes(o.nodes, [&](int) {
    Options slow = o;
    slow.delay_us = 20000;  // a slow load: the others certainly miss meanwhile
    Storage storage(d, slow.delay_us);
    Client c = Must(Client::Connect(address), "connect");
    Cache cache(c, "herd/");
    while (NowNs() < start_at) {
    }
    const int64_t t0 = NowNs();
    auto b = Must(cache.Get("hot",
                            [&](std::string_view) -> Result<std::vector<uint8_t>> {
                              return storage.Load(0);
                            }),
                  "herd get");
    return json{{"loads", storage.loads}, {"us", (NowNs() - t0) * 1e-3}};
  });
  uint64_t loads = 0;
  std::vector<double> us;
  for (const json& j : nodes) {
    loads += j["loads"].get<uint64_t>();
    us.push_back(j["us"]);
  }
  return json{{"nodes", o.nodes}, {"loads", loads}, {"latency_us", us}};
}

std::string Mib(uint64_t b) {
  char s[32];
  snprintf(s, sizeof s, "%.0f", b / 1048576.0);
  return s;
}

}  // namespace
}  // namespace gismo::bench

int main(int argc, char** argv) {
  using namespace gismo::bench;
  Options o;
  CLI::App app{"gismo shared-cache benchmark (4 database nodes, Zipf reads)"};
  app.add_option("--blocks", o.blocks, "data set, in blocks");
  app.add_option("--block-kib", o.block_kib, "block size (decompressed), KiB");
  app.add_option("--cache-blocks", o.cache_blocks, "C: one node's cache, in blocks");
  app.add_option("--reads", o.reads, "reads per node per configuration");
  app.add_option("--delay-us", o.delay_us, "fixed delay added to every load");
  app.add_option("--manager", o.manager_bin, "gismo-manager binary");
  app.add_option("--json", o.json_path, "write the results here");
  CLI11_PARSE(app, argc, argv);
  if (o.manager_bin.empty()) o.manager_bin = DefaultManagerBin();
  o.data_path = "/tmp/gismo-cache-bench-" + std::to_string(getpid()) + ".zst";
  DataSet d = MakeDataSet(o);
  json results = json::array();
  printf(
      "data set: %llu blocks of %llu KiB (%s MiB; %s MiB compressed); C = %llu blocks "
      "(%s MiB), %llu reads per node, load delay %llu us\n\n",
      static_cast<unsigned long long>(o.blocks), static_cast<unsigned long long>(o.block_kib),
      Mib(o.blocks * d.block_bytes).c_str(), Mib(d.offset.back() + d.length.back()).c_str(),
      static_cast<unsigned long long>(o.cache_blocks), Mib(o.cache_blocks * d.block_bytes).c_str(),
      static_cast<unsigned long long>(o.reads), static_cast<unsigned long long>(o.delay_us));
  printf(
      "| zipf | keys | cache | hit ratio | loads | memory MiB (private + region) | p50 us | "
      "p99 us |\n|---|---|---|---:|---:|---:|---:|---:|\n");
  for (double s : {0.9, 1.1}) {
    for (bool part : {false, true}) {
      for (const char* mode : {"private", "gismo4C", "gismoC"}) {
        json r = RunConfig(o, d, mode, s, part);
        results.push_back(r);
        const char* label = std::string(mode) == "private"   ? "private LRU, C per node"
                            : std::string(mode) == "gismo4C" ? "gismo, 4C shared"
                                                             : "gismo, C shared";
        printf("| %.1f | %s | %s | %.3f | %llu | %s (%s + %s) | %.1f | %.1f |\n", s,
               part ? "partitioned" : "overlapping", label, r["hit_ratio"].get<double>(),
               static_cast<unsigned long long>(r["loads"].get<uint64_t>()),
               Mib(r["memory_bytes"]).c_str(), Mib(r["rss_anon_bytes"]).c_str(),
               Mib(r["region_used_bytes"]).c_str(), r["p50_us"].get<double>(),
               r["p99_us"].get<double>());
        fflush(stdout);
      }
    }
  }
  json herd = RunHerd(o, d);
  printf("\nherd: %d nodes missed the same block at once: %llu load(s)\n", o.nodes,
         static_cast<unsigned long long>(herd["loads"].get<uint64_t>()));
  unlink(o.data_path.c_str());
  if (!o.json_path.empty()) {
    std::ofstream(o.json_path) << json{{"cache", results}, {"herd", herd}}.dump(2) << "\n";
  }
  return herd["loads"].get<uint64_t>() == 1 ? 0 : 1;
}
