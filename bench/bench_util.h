// Shared pieces of the benchmarks: timing and statistics, a private manager,
// worker processes placed on nodes, rendezvous through gismo objects, TCP.
#ifndef GISMO_BENCH_BENCH_UTIL_H_
#define GISMO_BENCH_BENCH_UTIL_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <gismo/gismo.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "testing/manager_process.h"
#include "testing/process.h"

struct XXH3_state_s;  // <xxhash.h>: XXH3_state_t

namespace gismo::bench {

using json = nlohmann::json;

inline int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
inline double SecondsSince(int64_t start_ns) { return (NowNs() - start_ns) * 1e-9; }

// Order statistics of a sample. Percentiles use the nearest-rank method.
struct Stats {
  size_t n = 0;
  double min = 0, median = 0, p99 = 0, mean = 0, max = 0;
};
Stats Summarize(std::vector<double> v);
json ToJson(const Stats& s);

// Aborts the process with a message: benchmarks have no error recovery.
// The hook set by OnDie (if any) runs first, e.g. to take down a cluster.
[[noreturn]] void Die(const std::string& what);
void OnDie(void (*hook)());
void Check(const Status& s, const std::string& what);
template <typename T>
T Must(Result<T> r, const std::string& what) {
  if (!r.ok()) Check(r.status(), what);
  return std::move(r).value();
}

// Progress on stderr, overwritten in place.
void Progress(const std::string& line);
void ProgressDone();

// Fills [p, p + n) with pseudo-random bytes derived from seed.
void FillRandom(void* p, size_t n, uint64_t seed);
uint64_t Hash(const void* p, size_t n);  // XXH3-64
// The same checksum as Hash(), fed in pieces.
class StreamingHash {
 public:
  StreamingHash();
  ~StreamingHash();
  StreamingHash(const StreamingHash&) = delete;
  StreamingHash& operator=(const StreamingHash&) = delete;
  void Reset();
  void Update(const void* p, size_t n);
  uint64_t Digest() const;

 private:
  ::XXH3_state_s* state_;
};

// Memory of this process from /proc/self/status, in bytes.
struct MemInfo {
  uint64_t vm_hwm = 0;     // peak resident set
  uint64_t rss_anon = 0;   // private memory
  uint64_t rss_shmem = 0;  // resident shared memory (gismo region pages)
};
MemInfo ReadMemInfo();
json ToJson(const MemInfo& m);

// Starts gismo-manager on a private region in /dev/shm and a private socket
// (or on `listen` when given), and waits for its ready line; dies if it does
// not start. The manager stops, and its region and socket go, when the
// returned launcher is destroyed; it also stops if the benchmark dies.
// `extra_args` go to gismo-manager as they are (e.g. a second --listen).
testing::ManagerProcess StartManager(const std::string& manager_bin, const std::string& size,
                                     const std::string& listen = {},
                                     const std::vector<std::string>& extra_args = {});

// Finds build/tools/gismo-manager next to this benchmark binary.
std::string DefaultManagerBin();

// Where worker processes run: plain child processes with GISMO_NODE set, or
// under a command prefix that places them in an emulated node ("{node}" in
// the prefix is replaced by the node id). Experiments number their nodes from
// 0; worker node k runs on node k + node_base.
struct Placement {
  std::string address;  // manager address every worker connects to
  // GISMO_REGION for the workers, if set: where this host maps the region
  // (a worker over TCP without the cluster key is not told the path).
  std::string region_path;
  std::string exec_prefix;  // empty: fork/exec on this host
  int node_base = 0;
  // A node's IPv4 address: "{node}" is replaced by its id, "{node1}" by id+1.
  std::string host_template = "127.0.0.1";
  int NodeId(int node) const { return node + node_base; }
  std::string HostOf(int node) const;
};

// A running worker: `self worker <json>` on node `node`. Its stdout is one
// JSON line, returned by Wait().
class Worker {
 public:
  Worker(const Placement& where, int node, const json& args);
  // Waits for a line containing `marker` on the worker's stdout (e.g. its
  // ready line); dies if the worker ends or timeout_s passes first. Lines
  // after it stay for Wait().
  void WaitForLine(const std::string& marker, double timeout_s);
  json Wait();

 private:
  testing::Process process_;  // killed if not waited for
};
// Runs a command line on `node` (as Worker does) with stdout discarded.
pid_t SpawnCommand(const Placement& where, int node, const std::vector<std::string>& argv);

// Rendezvous between processes through small sealed gismo objects. Names are
// prefixed with the run's tag so runs never collide.
class Signals {
 public:
  Signals(Client& c, std::string tag) : c_(c), tag_(std::move(tag)) {}
  ObjectId Id(const std::string& name) const { return ObjectId::FromName(tag_ + "/" + name); }
  void Post(const std::string& name, const std::string& payload = "x");
  // Returns `name`'s payload once it is posted (polls every 50 us). Dies
  // if it is not posted within timeout_s (a peer worker failed or hung: a
  // worker whose parent died of that must not wait forever).
  std::string Wait(const std::string& name, double timeout_s = 600);
  void Remove(const std::string& name);

 private:
  Client& c_;
  std::string tag_;
};

// TCP on IPv4. Each of these dies on error.
int TcpListen(const std::string& host, int* port);  // port 0: ephemeral
// A port that is free on `host` now, or one derived from the pid if `host` is
// not an address of this network namespace.
int FreePort(const std::string& host);
int TcpAccept(int listen_fd);
int TcpConnect(const std::string& host, int port);
void SendAll(int fd, const void* p, size_t n);
void RecvAll(int fd, void* p, size_t n);
// Sends n bytes in chunks of `chunk` bytes, as one stream.
void SendChunked(int fd, const void* p, size_t n, size_t chunk);

// Human-readable size: 1KB, 10MB, ... (decimal units like the Plasma paper
// uses, powers of 1024 underneath).
std::string SizeName(uint64_t bytes);

}  // namespace gismo::bench

#endif  // GISMO_BENCH_BENCH_UTIL_H_
