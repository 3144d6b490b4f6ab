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
// Nodes: four gismo-cluster emulated nodes (nodes 1..4, each in its own
// network, PID, mount and UTS namespace; the manager on node 0), a cluster
// of its own for each configuration, brought up with the region that
// configuration needs. Where namespaces are not permitted (gismo-cluster
// would fall back to plain processes), or with --placement processes, the
// nodes are processes of this host with GISMO_NODE 1..4 and a private
// manager per configuration. The output says which ran. Either way a node
// connects, builds its key stream, prints "ready" and waits for a "go"
// object (a blocking get), so the four start together.
//
// Cache sizes: a gismo cache "of C" holds C of blocks, no more. A region's
// heap is what its metadata leaves, in steps of about the 2 MiB granule of
// region sizes, so the benchmark finds the smallest region whose heap holds
// C of blocks plus one page per node (each node's slab for the 64-byte load
// claims of gismo::Cache), by formatting regions with gismo-manager and
// reading their heap size back (the layout's own arithmetic), and pins the
// rest of the heap with a non-evictable ballast object made before any
// block. The heap, the ballast and what is left for blocks are printed for
// each configuration; the ballast is not counted in the memory figures.
//
//   gismo_cache_bench [--blocks 4096] [--block-kib 64] [--cache-blocks 512]
//                     [--reads 20000] [--delay-us 0] [--json FILE]
//                     [--placement auto|cluster|processes] [--cluster-bin PATH]
//   gismo_cache_bench worker JSON   (a node or a control step; run by the above)
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zstd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <gismo/cache.hpp>
#include <list>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <unordered_map>

#include "bench_util.h"

namespace gismo::bench {
namespace {

constexpr uint64_t kPage = 16384;                 // the heap's page (doc/region-format.md)
constexpr uint64_t kGranule = 2ull << 20;         // regions are sized in steps of 2 MiB
constexpr uint64_t kMinRegion = 8ull << 20;       // gismo-manager's minimum
constexpr uint64_t kBarrierRegion = 32ull << 20;  // private runs: the "go" object only
constexpr int64_t kGoTimeoutMs = 300000;          // a node waits this long for "go"
constexpr double kReadyTimeoutS = 300;

struct Options {
  uint64_t blocks = 4096;       // data set, in blocks
  uint64_t block_kib = 64;      // decompressed block size
  uint64_t cache_blocks = 512;  // C: one node's cache, in blocks
  uint64_t reads = 20000;       // per node per configuration
  uint64_t delay_us = 0;        // added to every load (object storage)
  int nodes = 4;
  std::string placement = "auto";  // auto | cluster | processes
  std::string manager_bin;
  std::string cluster_bin;
  std::string subnet = "10.77.13";
  std::string json_path;
  std::string data_path;
  uint64_t MaxObjects() const { return 4 * blocks + 1024; }
  uint64_t BlockBytes() const { return block_kib << 10; }
  // Heap taken by one block: a run of whole pages (blocks are > 8 KiB).
  uint64_t BlockHeapBytes() const { return (BlockBytes() + kPage - 1) / kPage * kPage; }
};

// The data set: one file of zstd frames, one per block, and an index (JSON:
// offset and length of each frame) that the nodes read.
struct DataSet {
  std::string path;
  std::vector<uint64_t> offset, length;
  uint64_t block_bytes = 0;
};

std::string IndexPath(const std::string& data_path) { return data_path + ".idx.json"; }

DataSet MakeDataSet(const Options& o) {
  DataSet d;
  d.path = o.data_path;
  d.block_bytes = o.BlockBytes();
  int fd = open(d.path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
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
  std::ofstream(IndexPath(d.path))
      << json{{"block_bytes", d.block_bytes}, {"offset", d.offset}, {"length", d.length}}.dump();
  return d;
}

DataSet LoadDataSet(const std::string& path) {
  std::ifstream in(IndexPath(path));
  if (!in) Die("cannot read " + IndexPath(path));
  json j = json::parse(in);
  DataSet d;
  d.path = path;
  d.block_bytes = j["block_bytes"];
  d.offset = j["offset"].get<std::vector<uint64_t>>();
  d.length = j["length"].get<std::vector<uint64_t>>();
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

// Prints the ready line, then waits for the driver's "go" object. The client
// is connected to the configuration's manager (GISMO_ADDRESS, set by the
// driver or by gismo-cluster exec).
void ReadyThenWaitForGo(Client& c, const std::string& go) {
  printf("ready\n");
  fflush(stdout);
  Must(c.Get(ObjectId::FromName(go), kGoTimeoutMs), "wait for go");  // released at once
}

// -- worker roles (run on a node) --------------------------------------------

// One database node's run: its counts, latencies and private memory.
json RunNode(const json& a) {
  const DataSet d = LoadDataSet(a["data"].get<std::string>());
  const std::string mode = a["mode"];
  const int node = a["node"], nodes = a["nodes"];
  const uint64_t reads = a["reads"];
  const bool partitioned = a["partitioned"];
  Storage storage(d, a["delay_us"].get<uint64_t>());
  const uint64_t n_blocks = d.offset.size();
  const uint64_t range = partitioned ? n_blocks / nodes : n_blocks;
  const uint64_t base = partitioned ? range * node : 0;
  Zipf zipf(range, a["zipf"].get<double>(), 1000 + node);
  std::vector<double> lat;
  lat.reserve(reads);
  uint64_t hits = 0, checksum = 0;
  MemInfo m;
  Client c = Must(Client::Connect(), "connect");
  ReadyThenWaitForGo(c, a["go"].get<std::string>());
  const int64_t t0 = NowNs();
  if (mode == "private") {
    c = Client();  // the barrier was its only use
    PrivateLru lru(a["cache_blocks"].get<uint64_t>());
    for (uint64_t i = 0; i < reads; ++i) {
      const uint64_t k = base + zipf.Next();
      const int64_t t = NowNs();
      bool hit = false;
      const auto& b = lru.Get(k, storage, &hit);
      checksum += b[b.size() - 1];
      lat.push_back((NowNs() - t) * 1e-3);
      hits += hit;
    }
    m = ReadMemInfo();  // while the private cache still holds its blocks
  } else {
    Cache cache(c, "bench/");
    auto loader = [&](std::string_view key) -> Result<std::vector<uint8_t>> {
      return storage.Load(std::stoull(std::string(key.substr(1))));
    };
    for (uint64_t i = 0; i < reads; ++i) {
      const uint64_t k = base + zipf.Next();
      const int64_t t = NowNs();
      auto b = Must(cache.Get(Key(k), loader), "cache get");
      checksum += b.data()[b.size() - 1];
      lat.push_back((NowNs() - t) * 1e-3);
    }
    hits = cache.stats().hits + cache.stats().waits;
    m = ReadMemInfo();
  }
  const double secs = SecondsSince(t0);
  Stats st = Summarize(lat);
  return json{{"hits", hits},        {"reads", reads},         {"loads", storage.loads},
              {"p50_us", st.median}, {"p99_us", st.p99},       {"mean_us", st.mean},
              {"seconds", secs},     {"rss_anon", m.rss_anon}, {"checksum", checksum}};
}

// All nodes miss the same block at once, each with a slow load (20 ms), so
// that the others certainly miss meanwhile.
json RunHerdNode(const json& a) {
  const DataSet d = LoadDataSet(a["data"].get<std::string>());
  Storage storage(d, 20000);
  Client c = Must(Client::Connect(), "connect");
  Cache cache(c, "herd/");
  ReadyThenWaitForGo(c, a["go"].get<std::string>());
  const int64_t t0 = NowNs();
  auto b = Must(
      cache.Get("hot",
                [&](std::string_view) -> Result<std::vector<uint8_t>> { return storage.Load(0); }),
      "herd get");
  return json{{"loads", storage.loads}, {"us", (NowNs() - t0) * 1e-3}};
}

// Control steps, run on node 1 against the configuration's manager.
json RunControl(const json& a) {
  Client c = Must(Client::Connect(), "connect");
  const std::string action = a["action"];
  if (action == "prepare") {
    // Pins whatever the heap holds beyond `keep` bytes with a non-evictable
    // object, before any block exists: the blocks get `keep` at most.
    const uint64_t keep = a["keep_bytes"];
    const uint64_t heap = Must(c.Usage(), "usage").capacity_bytes;
    if (heap < keep)
      Die("the heap (" + std::to_string(heap) + " B) is below " + std::to_string(keep));
    const uint64_t ballast = heap - keep;  // both are whole pages
    if (ballast > 0) {
      auto b = Must(c.Create(ObjectId::FromName("bench/ballast"), ballast), "create the ballast");
      Check(b.SealAndRelease(), "seal the ballast");
    }
    return json{{"heap_bytes", heap}, {"ballast_bytes", ballast}};
  }
  if (action == "go") {
    Check(c.Put(ObjectId::FromName(a["go"].get<std::string>()), "go"), "post go");
    return json{{"posted", true}};
  }
  gismo_usage_t u = Must(c.Usage(), "usage");
  return json{{"used_bytes", u.used_bytes},
              {"capacity_bytes", u.capacity_bytes},
              {"evictions", u.evictions},
              {"evicted_bytes", u.evicted_bytes}};
}

// -- the driver ----------------------------------------------------------------

// The cluster taken down if the benchmark dies or is interrupted.
struct ClusterTeardown {
  std::string bin, name;
  std::vector<char*> argv;  // bin --name NAME down, prepared for a signal handler
  std::vector<std::string> storage;
};
ClusterTeardown g_teardown;

void TeardownNow() {
  if (g_teardown.argv.empty()) return;
  pid_t pid = fork();
  if (pid == 0) {
    int null = open("/dev/null", O_WRONLY);
    if (null >= 0) dup2(null, 1);
    execv(g_teardown.argv[0], g_teardown.argv.data());
    _exit(127);
  }
  if (pid > 0) waitpid(pid, nullptr, 0);
}

// The data set's files, removed on the way out.
char g_data_file[128], g_index_file[160];

void RemoveDataSet() {
  unlink(g_data_file);
  unlink(g_index_file);
}

void OnDieCleanUp() {
  TeardownNow();
  RemoveDataSet();
}

void OnSignal(int sig) {
  OnDieCleanUp();  // fork, execv, waitpid and unlink only: async-signal-safe
  _exit(128 + sig);
}

// Where one configuration runs: a gismo-cluster of its own (nodes 1..4 in
// namespaces), or a private manager with the nodes as processes of this host.
class Site {
 public:
  // The first cluster that comes up without namespaces switches every later
  // site to processes: `why` says so.
  Site(const Options& o, uint64_t region_bytes, const std::string& name, bool* use_cluster,
       std::string* why)
      : o_(o) {
    const std::vector<std::string> manager_args = {"--max-objects", std::to_string(o.MaxObjects())};
    if (*use_cluster) {
      name_ = name;
      region_ = "/dev/shm/" + name;
      testing::SpawnOptions so;
      so.argv = {o.cluster_bin, "--name",
                 name_,         "up",
                 "--nodes",     std::to_string(o.nodes),
                 "--region",    region_,
                 "--size",      std::to_string(region_bytes >> 20) + "MiB",
                 "--subnet",    o.subnet,
                 "--log-level", "warn",
                 "--manager",   o.manager_bin,
                 "--"};
      so.argv.insert(so.argv.end(), manager_args.begin(), manager_args.end());
      so.stderr_to_stdout = true;
      ArmTeardown();
      testing::RunResult r = testing::Run(so, 120);
      if (r.exit_code != 0) Die("gismo-cluster up failed: " + r.output);
      if (r.output.find("mode netns") == std::string::npos) {
        // gismo-cluster fell back to plain processes: so do we, with our own.
        std::istringstream lines(r.output);
        for (std::string l; std::getline(lines, l);) {
          if (l.find("falling back") != std::string::npos) *why = l;
        }
        if (why->empty()) *why = "gismo-cluster did not use namespaces: " + r.output;
        Down();
        if (o.placement == "cluster") Die(*why);
        *use_cluster = false;
      } else {
        where_.exec_prefix = o.cluster_bin + " --name " + name_ + " exec {node} --";
        where_.node_base = 1;
        return;
      }
    }
    manager_ = std::make_unique<testing::ManagerProcess>(
        StartManager(o.manager_bin, std::to_string(region_bytes >> 20) + "MiB", {}, manager_args));
    where_.address = manager_->address();
    where_.node_base = 1;
  }
  ~Site() { Down(); }
  Site(const Site&) = delete;
  Site& operator=(const Site&) = delete;

  const Placement& where() const { return where_; }

  // Runs a control step on node 1; its JSON.
  json Control(const json& args) {
    json a = args;
    a["role"] = "control";
    Worker w(where_, 0, a);
    return w.Wait();
  }

 private:
  void ArmTeardown() {
    g_teardown.storage = {o_.cluster_bin, "--name", name_, "down"};
    g_teardown.argv.clear();
    for (auto& s : g_teardown.storage) g_teardown.argv.push_back(s.data());
    g_teardown.argv.push_back(nullptr);
  }
  void Down() {
    if (name_.empty()) return;
    TeardownNow();
    g_teardown.argv.clear();
    unlink(region_.c_str());
    name_.clear();
  }

  const Options& o_;
  std::string name_, region_;
  std::unique_ptr<testing::ManagerProcess> manager_;
  Placement where_;
};

// The heap of a region of `bytes` formatted as the benchmark's managers
// format it: formats one with gismo-manager and reads its heap size back.
uint64_t HeapOf(const Options& o, uint64_t bytes) {
  auto mgr = StartManager(o.manager_bin, std::to_string(bytes >> 20) + "MiB", {},
                          {"--max-objects", std::to_string(o.MaxObjects())});
  Client c = Must(Client::Connect(mgr.address()), "connect");
  return Must(c.Usage(), "usage").capacity_bytes;
}

// The smallest region (a multiple of 2 MiB) whose heap holds `heap` bytes.
// Adding d bytes to a region adds at most d to its heap, so each step adds
// the shortfall rounded up to the granule and never passes the smallest.
uint64_t RegionFor(const Options& o, uint64_t heap) {
  uint64_t size = std::max(kMinRegion, (heap + kGranule - 1) / kGranule * kGranule);
  for (int probe = 0; probe < 64; ++probe) {
    const uint64_t got = HeapOf(o, size);
    if (got >= heap) return size;
    size += (heap - got + kGranule - 1) / kGranule * kGranule;
  }
  Die("no region size found for a heap of " + std::to_string(heap) + " bytes");
}

struct Sizing {
  uint64_t blocks = 0;  // the cache's capacity in blocks
  uint64_t keep = 0;    // heap left to blocks and claim slabs
  uint64_t region = 0;  // region size
};

Sizing SizeFor(const Options& o, uint64_t blocks) {
  Sizing s;
  s.blocks = blocks;
  // One page per node: each node's current slab for the 64-byte claims.
  s.keep = blocks * o.BlockHeapBytes() + uint64_t(o.nodes) * kPage;
  s.region = RegionFor(o, s.keep);
  return s;
}

json BaseArgs(const Options& o, const std::string& go) {
  return json{{"data", o.data_path}, {"go", go}};
}

std::vector<json> RunNodes(Site& site, const Options& o, const json& args, const char* role) {
  std::vector<std::unique_ptr<Worker>> nodes;
  for (int n = 0; n < o.nodes; ++n) {
    json a = args;
    a["role"] = role;
    a["node"] = n;
    nodes.push_back(std::make_unique<Worker>(site.where(), n, a));
  }
  for (auto& w : nodes) w->WaitForLine("ready", kReadyTimeoutS);
  site.Control({{"action", "go"}, {"go", args["go"]}});
  std::vector<json> out;
  for (auto& w : nodes) out.push_back(w->Wait());
  return out;
}

std::string Mib(uint64_t b) {
  char s[32];
  snprintf(s, sizeof s, "%.0f", b / 1048576.0);
  return s;
}
std::string Mib2(uint64_t b) {
  char s[32];
  snprintf(s, sizeof s, "%.2f", b / 1048576.0);
  return s;
}

struct Run {
  bool use_cluster = true;
  std::string why_not;  // why the nodes are processes
  int configs = 0;
  std::string ClusterName() {
    return "gcb" + std::to_string(getpid()) + "-" + std::to_string(configs++);
  }
};

json RunConfig(const Options& o, Run& run, const std::map<std::string, Sizing>& sizes,
               const std::string& mode, double s, bool partitioned) {
  const bool gismo = mode != "private";
  const Sizing* sz = gismo ? &sizes.at(mode) : nullptr;
  Site site(o, gismo ? sz->region : kBarrierRegion, run.ClusterName(), &run.use_cluster,
            &run.why_not);
  json prep = {{"heap_bytes", 0}, {"ballast_bytes", 0}};
  if (gismo) prep = site.Control({{"action", "prepare"}, {"keep_bytes", sz->keep}});
  const std::string go = "bench/go/" + mode;
  json args = BaseArgs(o, go);
  args.update(json{{"mode", mode},
                   {"zipf", s},
                   {"partitioned", partitioned},
                   {"nodes", o.nodes},
                   {"reads", o.reads},
                   {"cache_blocks", o.cache_blocks},
                   {"delay_us", o.delay_us}});
  auto nodes = RunNodes(site, o, args, "node");
  uint64_t hits = 0, reads = 0, loads = 0, rss = 0;
  double secs = 0;
  std::vector<double> p50, p99;
  for (const json& j : nodes) {
    hits += j["hits"].get<uint64_t>();
    reads += j["reads"].get<uint64_t>();
    loads += j["loads"].get<uint64_t>();
    rss += j["rss_anon"].get<uint64_t>();
    secs = std::max(secs, j["seconds"].get<double>());
    p50.push_back(j["p50_us"]);
    p99.push_back(j["p99_us"]);
  }
  uint64_t region_used = 0, evictions = 0;
  uint64_t capacity = o.cache_blocks * o.nodes * o.BlockBytes();  // private: 4 x C
  const uint64_t heap = prep["heap_bytes"], ballast = prep["ballast_bytes"];
  if (gismo) {
    json u = site.Control({{"action", "usage"}});
    region_used = u["used_bytes"].get<uint64_t>() - ballast;
    evictions = u["evictions"];
    capacity = heap - ballast - uint64_t(o.nodes) * kPage;  // for blocks
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
              {"region_bytes", gismo ? sz->region : 0},
              {"heap_bytes", heap},
              {"ballast_bytes", ballast},
              {"rss_anon_bytes", rss},
              {"region_used_bytes", region_used},
              {"memory_bytes", rss + region_used},
              {"p50_us", p50[p50.size() / 2]},  // median over nodes
              {"p99_us", p99.back()},           // worst node
              {"evictions", evictions},
              {"seconds", secs}};
}

// All nodes miss the same block at once: it must be loaded exactly once.
json RunHerd(const Options& o, Run& run) {
  Site site(o, kBarrierRegion, run.ClusterName(), &run.use_cluster, &run.why_not);
  auto nodes = RunNodes(site, o, BaseArgs(o, "bench/go/herd"), "herd");
  uint64_t loads = 0;
  std::vector<double> us;
  for (const json& j : nodes) {
    loads += j["loads"].get<uint64_t>();
    us.push_back(j["us"]);
  }
  return json{{"nodes", o.nodes}, {"loads", loads}, {"latency_us", us}};
}

std::vector<std::string> LoadAverage() {
  std::ifstream f("/proc/loadavg");
  std::vector<std::string> v(3);
  f >> v[0] >> v[1] >> v[2];
  return v;
}

std::string DefaultClusterBin() {
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe");
  auto p = self.parent_path().parent_path() / "tools" / "gismo-cluster" / "gismo-cluster";
  return std::filesystem::exists(p) ? p.string() : "gismo-cluster";
}

int Main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "worker") {
    json a = json::parse(argv[2]);
    const std::string role = a["role"];
    json r = role == "node" ? RunNode(a) : role == "herd" ? RunHerdNode(a) : RunControl(a);
    printf("%s\n", r.dump().c_str());
    return 0;
  }
  Options o;
  CLI::App app{"gismo shared-cache benchmark (4 database nodes, Zipf reads)"};
  app.add_option("--blocks", o.blocks, "data set, in blocks")->capture_default_str();
  app.add_option("--block-kib", o.block_kib, "block size (decompressed), KiB")
      ->check(CLI::Range(16, 1 << 20))
      ->capture_default_str();
  app.add_option("--cache-blocks", o.cache_blocks, "C: one node's cache, in blocks")
      ->check(CLI::Range(1, 1 << 24))
      ->capture_default_str();
  app.add_option("--reads", o.reads, "reads per node per configuration")->capture_default_str();
  app.add_option("--delay-us", o.delay_us, "fixed delay added to every load")
      ->capture_default_str();
  app.add_option("--placement", o.placement,
                 "auto: gismo-cluster nodes in namespaces, else processes; cluster: namespaces "
                 "or fail; processes: processes of this host")
      ->check(CLI::IsMember({"auto", "cluster", "processes"}))
      ->capture_default_str();
  app.add_option("--cluster-bin", o.cluster_bin, "gismo-cluster (default: next to this build's)");
  app.add_option("--subnet", o.subnet, "the clusters' subnet (first three octets)")
      ->capture_default_str();
  app.add_option("--manager", o.manager_bin, "gismo-manager binary");
  app.add_option("--json", o.json_path, "write the results here");
  CLI11_PARSE(app, argc, argv);
  if (o.blocks < uint64_t(o.nodes)) Die("--blocks must be at least the number of nodes");
  if (o.manager_bin.empty()) o.manager_bin = DefaultManagerBin();
  if (o.cluster_bin.empty()) o.cluster_bin = DefaultClusterBin();
  o.manager_bin = std::filesystem::absolute(o.manager_bin).string();
  const std::vector<std::string> load_at_start = LoadAverage();
  o.data_path = "/tmp/gismo-cache-bench-" + std::to_string(getpid()) + ".zst";
  snprintf(g_data_file, sizeof g_data_file, "%s", o.data_path.c_str());
  snprintf(g_index_file, sizeof g_index_file, "%s", IndexPath(o.data_path).c_str());
  OnDie(OnDieCleanUp);
  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);
  DataSet d = MakeDataSet(o);
  Run run;
  run.use_cluster = o.placement != "processes";
  if (!run.use_cluster) run.why_not = "--placement processes";
  std::map<std::string, Sizing> sizes = {{"gismo4C", SizeFor(o, 4 * o.cache_blocks)},
                                         {"gismoC", SizeFor(o, o.cache_blocks)}};
  printf(
      "data set: %llu blocks of %llu KiB (%s MiB; %s MiB compressed); C = %llu blocks "
      "(%s MiB), %llu reads per node, load delay %llu us\n",
      static_cast<unsigned long long>(o.blocks), static_cast<unsigned long long>(o.block_kib),
      Mib(o.blocks * d.block_bytes).c_str(), Mib(d.offset.back() + d.length.back()).c_str(),
      static_cast<unsigned long long>(o.cache_blocks), Mib(o.cache_blocks * d.block_bytes).c_str(),
      static_cast<unsigned long long>(o.reads), static_cast<unsigned long long>(o.delay_us));
  json results = json::array();
  bool header = false;
  for (double s : {0.9, 1.1}) {
    for (bool part : {false, true}) {
      for (const char* mode : {"private", "gismo4C", "gismoC"}) {
        json r = RunConfig(o, run, sizes, mode, s, part);
        if (!header) {
          // Known once the first site is up.
          printf("nodes: %s\n",
                 run.use_cluster
                     ? "4 gismo-cluster emulated nodes (1..4, each its own network, PID, mount "
                       "and UTS namespace), manager on node 0, a cluster per configuration"
                     : ("processes of this host with GISMO_NODE 1..4, a private manager per "
                        "configuration (not emulated nodes: " +
                        run.why_not + ")")
                           .c_str());
          for (const auto& [m, sz] : sizes) {
            printf(
                "%s: region %s MiB, a heap of at least %s MiB kept for %llu blocks (%s MiB) + "
                "%d claim slab pages\n",
                m.c_str(), Mib(sz.region).c_str(), Mib2(sz.keep).c_str(),
                static_cast<unsigned long long>(sz.blocks),
                Mib2(sz.blocks * o.BlockHeapBytes()).c_str(), o.nodes);
          }
          printf(
              "\n| zipf | keys | cache | for blocks MiB (heap - ballast - claim pages) | hit ratio "
              "| loads | "
              "memory MiB (private + region) | p50 us | p99 us |\n"
              "|---|---|---|---:|---:|---:|---:|---:|---:|\n");
          header = true;
        }
        results.push_back(r);
        const std::string m = mode;
        const char* label = m == "private"   ? "private LRU, C per node"
                            : m == "gismo4C" ? "gismo, 4C shared"
                                             : "gismo, C shared";
        const std::string cap =
            m == "private" ? std::to_string(o.nodes) + " x " + Mib2(o.cache_blocks * d.block_bytes)
                           : Mib2(r["cache_capacity_bytes"]) + " (heap " + Mib2(r["heap_bytes"]) +
                                 " - ballast " + Mib2(r["ballast_bytes"]) + ")";
        printf("| %.1f | %s | %s | %s | %.3f | %llu | %s (%s + %s) | %.1f | %.1f |\n", s,
               part ? "partitioned" : "overlapping", label, cap.c_str(),
               r["hit_ratio"].get<double>(),
               static_cast<unsigned long long>(r["loads"].get<uint64_t>()),
               Mib(r["memory_bytes"]).c_str(), Mib(r["rss_anon_bytes"]).c_str(),
               Mib(r["region_used_bytes"]).c_str(), r["p50_us"].get<double>(),
               r["p99_us"].get<double>());
        fflush(stdout);
      }
    }
  }
  json herd = RunHerd(o, run);
  printf("\nherd: %d nodes missed the same block at once: %llu load(s)\n", o.nodes,
         static_cast<unsigned long long>(herd["loads"].get<uint64_t>()));
  RemoveDataSet();
  const std::string placement =
      run.use_cluster ? "gismo-cluster (namespaces)" : "processes (" + run.why_not + ")";
  if (!o.json_path.empty()) {
    json setup = {{"blocks", o.blocks},
                  {"block_kib", o.block_kib},
                  {"cache_blocks", o.cache_blocks},
                  {"reads_per_node", o.reads},
                  {"delay_us", o.delay_us},
                  {"nodes", o.nodes},
                  {"placement", placement},
                  {"cores", sysconf(_SC_NPROCESSORS_ONLN)},
                  {"loadavg_at_start", load_at_start},
                  {"loadavg_at_end", LoadAverage()}};
    for (const auto& [m, sz] : sizes) {
      setup["regions"][m] = {{"region_bytes", sz.region}, {"kept_for_blocks_and_claims", sz.keep}};
    }
    std::ofstream(o.json_path) << json{{"setup", setup}, {"cache", results}, {"herd", herd}}.dump(2)
                               << "\n";
  }
  return herd["loads"].get<uint64_t>() == 1 ? 0 : 1;
}

}  // namespace
}  // namespace gismo::bench

int main(int argc, char** argv) { return gismo::bench::Main(argc, argv); }
