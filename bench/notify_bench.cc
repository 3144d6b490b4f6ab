// notify_bench: latency from gismo_seal to the subscriber's Next() returning,
// on the same node and across emulated nodes, and notifications per second to
// 1 and to 8 subscribers. Prints numbers beside the aims; asserts nothing.
//
// Every measurement runs in worker processes (`notify_bench worker <json>`),
// placed on nodes by gismo-cluster when it works (each node its own network,
// PID, mount and UTS namespace; TCP to the manager over a bridge), else as
// plain processes on this host with their own GISMO_NODE (the manager's node
// over its Unix socket, other nodes over TCP on 127.0.0.1).
//
// Latency: the sealer writes CLOCK_MONOTONIC into the object's first 8 bytes
// just before gismo_seal; the subscriber reads CLOCK_MONOTONIC as soon as
// Next() returns, then reads the stamp with a get. Same kernel, same clock.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <regex>

#include "bench_util.h"

namespace gismo::bench {
namespace {

constexpr size_t kObjectSize = 64;
constexpr int64_t kStallMs = 10000;  // a worker gives up after this long without an event
constexpr double kAimSameNodeUs = 20;
constexpr double kAimOtherNodeUs = 50;

int64_t MonoNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// Measurement objects: the run's 8-byte prefix, then the index.
ObjectId MakeId(uint64_t prefix, uint64_t index) {
  std::array<uint8_t, ObjectId::kSize> b{};
  std::memcpy(b.data(), &prefix, 8);
  std::memcpy(b.data() + 8, &index, 8);
  return ObjectId::FromBytes(b);
}
bool HasPrefix(const ObjectId& id, uint64_t prefix) {
  return std::memcmp(id.data(), &prefix, 8) == 0;
}

// Discards what is waiting: the initial listing of already sealed objects.
void Drain(Subscription& sub) {
  while (sub.Next(0).ok()) {
  }
}

Notification MustNext(Subscription& sub, const std::string& what) {
  auto n = sub.Next(kStallMs);
  if (!n.ok()) Die(what + ": " + n.status().ToString());
  return *n;
}

// ----- workers ------------------------------------------------------------

// {tag, prefix, index, count, warmup}: records seal -> Next() latency of
// count SEALED events of the prefix after warmup ones.
json LatencySubscriber(const json& a) {
  Client c = Must(Client::Connect(), "connect");
  Subscription sub = Must(c.Subscribe(), "subscribe");
  Drain(sub);
  Signals sig(c, a.at("tag"));
  const std::string k = std::to_string(a.at("index").get<int>());
  sig.Post("ready-" + k);
  const uint64_t prefix = a.at("prefix");
  const size_t count = a.at("count"), warmup = a.at("warmup");
  std::vector<double> lat;
  lat.reserve(count);
  size_t seen = 0, overflows = 0;
  while (seen < count + warmup) {
    Notification n = MustNext(sub, "latency subscriber");
    const int64_t t1 = MonoNs();
    if (n.overflow()) {
      ++overflows;
      continue;
    }
    if (n.event != GISMO_EVENT_SEALED || !HasPrefix(n.id, prefix)) continue;
    Buffer b = Must(c.Get(n.id, 0), "get " + n.id.Hex());
    int64_t t0;
    std::memcpy(&t0, b.data(), sizeof t0);
    if (seen++ >= warmup) lat.push_back(static_cast<double>(t1 - t0));
  }
  sig.Post("done-" + k);
  return {{"latency_ns", ToJson(Summarize(lat))}, {"overflows", overflows}};
}

// {tag, prefix, subscribers, count, interval_us}: one seal every interval,
// timed; then waits for the subscribers and deletes its objects.
json LatencySealer(const json& a) {
  Client c = Must(Client::Connect(), "connect");
  Signals sig(c, a.at("tag"));
  const int subs = a.at("subscribers");
  for (int k = 0; k < subs; ++k) sig.Wait("ready-" + std::to_string(k));
  const uint64_t prefix = a.at("prefix");
  const size_t count = a.at("count");
  const int64_t interval = a.at("interval_us").get<int64_t>() * 1000;
  std::vector<double> seal;
  seal.reserve(count);
  int64_t next = MonoNs();
  for (size_t i = 0; i < count; ++i) {
    MutableBuffer b = Must(c.Create(MakeId(prefix, i), kObjectSize), "create");
    next += interval;
    if (int64_t now = MonoNs(); next < now) next = now;  // late: no burst to catch up
    timespec ts{static_cast<time_t>(next / 1000000000), static_cast<long>(next % 1000000000)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
    }
    const int64_t t0 = MonoNs();
    std::memcpy(b.data(), &t0, sizeof t0);
    Check(b.Seal(), "seal");
    seal.push_back(static_cast<double>(MonoNs() - t0));
    Check(b.SealAndRelease(), "release");
  }
  for (int k = 0; k < subs; ++k) sig.Wait("done-" + std::to_string(k));
  for (size_t i = 0; i < count; ++i) Check(c.Delete(MakeId(prefix, i)), "delete");
  return {{"seal_ns", ToJson(Summarize(seal))}};
}

// {tag, prefix, index, count}: counts SEALED events of the prefix.
json RateSubscriber(const json& a) {
  Client c = Must(Client::Connect(), "connect");
  Subscription sub = Must(c.Subscribe(), "subscribe");
  Drain(sub);
  Signals sig(c, a.at("tag"));
  const std::string k = std::to_string(a.at("index").get<int>());
  sig.Post("ready-" + k);
  const uint64_t prefix = a.at("prefix");
  const size_t count = a.at("count");
  size_t got = 0, overflows = 0;
  int64_t last = 0;
  while (got < count) {
    auto n = sub.Next(kStallMs);
    if (!n.ok()) break;  // events were lost: reported as a short count
    if (n->overflow()) ++overflows;
    if (n->event != GISMO_EVENT_SEALED || !HasPrefix(n->id, prefix)) continue;
    ++got;
    last = MonoNs();
  }
  sig.Post("done-" + k);
  return {{"received", got}, {"last_ns", last}, {"overflows", overflows}};
}

// {tag, prefix, subscribers, count}: puts count objects back to back.
json RateSealer(const json& a) {
  Client c = Must(Client::Connect(), "connect");
  Signals sig(c, a.at("tag"));
  const int subs = a.at("subscribers");
  for (int k = 0; k < subs; ++k) sig.Wait("ready-" + std::to_string(k));
  const uint64_t prefix = a.at("prefix");
  const size_t count = a.at("count");
  uint8_t data[kObjectSize] = {};
  const int64_t start = MonoNs();
  for (size_t i = 0; i < count; ++i) {
    int64_t t = MonoNs();
    std::memcpy(data, &t, sizeof t);
    Check(c.Put(MakeId(prefix, i), std::span<const uint8_t>(data, sizeof data)), "put");
  }
  const int64_t end = MonoNs();
  for (int k = 0; k < subs; ++k) sig.Wait("done-" + std::to_string(k));
  for (size_t i = 0; i < count; ++i) Check(c.Delete(MakeId(prefix, i)), "delete");
  return {{"start_ns", start}, {"end_ns", end}};
}

const std::map<std::string, std::function<json(const json&)>>& Roles() {
  static const std::map<std::string, std::function<json(const json&)>> roles = {
      {"lat_sub", LatencySubscriber},
      {"lat_seal", LatencySealer},
      {"rate_sub", RateSubscriber},
      {"rate_seal", RateSealer}};
  return roles;
}

// ----- placement -----------------------------------------------------------

// Where workers run. Node 0 is the manager's node.
struct Nodes {
  std::string description;
  std::string exec_prefix;                // gismo-cluster exec, or empty
  std::string unix_address, tcp_address;  // plain processes only
  std::string region;                     // plain processes only
  Placement On(int node) const {
    Placement p;
    p.exec_prefix = exec_prefix;
    if (exec_prefix.empty()) {
      p.address = node == 0 ? unix_address : tcp_address;
      p.region_path = region;
    }
    return p;
  }
};

// A manager serving a Unix socket and TCP on 127.0.0.1 (plain processes).
class LocalManager {
 public:
  LocalManager(const std::string& bin, const std::string& size)
      : manager_(StartManager(bin, size, {}, {"--listen", "tcp:127.0.0.1:0"})) {
    std::smatch m;
    if (!std::regex_search(manager_.ready_line(), m, std::regex("tcp:127\\.0\\.0\\.1:[0-9]+"))) {
      Die("gismo-manager (" + bin + ") did not start with TCP: " + manager_.ready_line());
    }
    tcp_ = m[0];
  }
  const std::string& unix_address() const { return manager_.address(); }
  const std::string& tcp_address() const { return tcp_; }
  const std::string& region() const { return manager_.region(); }

 private:
  testing::ManagerProcess manager_;
  std::string tcp_;
};

// Runs argv; its stdout, and its exit status in *status.
std::string RunCapture(const std::vector<std::string>& argv, int* status) {
  testing::SpawnOptions o;
  o.argv = argv;
  o.capture_stdout = true;
  testing::Process p;
  if (!p.Start(o)) Die(p.error());
  std::string out;
  p.ReadToEnd(-1, &out);
  p.WaitForExit(-1, status);
  return out;
}

std::string ClusterBin() {
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe");
  auto p = self.parent_path().parent_path() / "tools" / "gismo-cluster" / "gismo-cluster";
  return std::filesystem::exists(p) ? p.string() : std::string();
}

// ----- measurements --------------------------------------------------------

struct Options {
  size_t samples = 2000;
  size_t warmup = 100;
  int64_t interval_us = 1000;
  size_t objects = 20000;
  bool latency_only = false;
  std::string json_out;
};

struct Run {
  std::mt19937_64 rng{std::random_device{}()};
  std::string tag_base = "notify-bench-" + std::to_string(getpid());
  int runs = 0;
  std::pair<std::string, uint64_t> Next() {
    ++runs;
    return {tag_base + "-" + std::to_string(runs), rng()};
  }
};

json Latency(const Nodes& nodes, const Options& o, Run& run, int seal_node, int sub_node) {
  auto [tag, prefix] = run.Next();
  Worker sub(nodes.On(sub_node), sub_node,
             {{"role", "lat_sub"},
              {"tag", tag},
              {"prefix", prefix},
              {"index", 0},
              {"count", o.samples},
              {"warmup", o.warmup}});
  Worker sealer(nodes.On(seal_node), seal_node,
                {{"role", "lat_seal"},
                 {"tag", tag},
                 {"prefix", prefix},
                 {"subscribers", 1},
                 {"count", o.samples + o.warmup},
                 {"interval_us", o.interval_us}});
  json s = sub.Wait();
  json w = sealer.Wait();
  return {{"sealer_node", seal_node},
          {"subscriber_node", sub_node},
          {"latency_ns", s["latency_ns"]},
          {"overflows", s["overflows"]},
          {"seal_ns", w["seal_ns"]}};
}

json Rate(const Nodes& nodes, const Options& o, Run& run, int subscribers, int node) {
  auto [tag, prefix] = run.Next();
  std::vector<Worker> subs;
  for (int k = 0; k < subscribers; ++k) {
    subs.emplace_back(nodes.On(node), node,
                      json{{"role", "rate_sub"},
                           {"tag", tag},
                           {"prefix", prefix},
                           {"index", k},
                           {"count", o.objects}});
  }
  Worker sealer(nodes.On(node), node,
                {{"role", "rate_seal"},
                 {"tag", tag},
                 {"prefix", prefix},
                 {"subscribers", subscribers},
                 {"count", o.objects}});
  std::vector<json> got;
  for (auto& w : subs) got.push_back(w.Wait());
  json s = sealer.Wait();
  const int64_t start = s["start_ns"], end = s["end_ns"];
  double total = 0, slowest = 1e300;
  size_t received = 0, overflows = 0;
  for (const json& g : got) {
    const double secs = (g["last_ns"].get<int64_t>() - start) * 1e-9;
    const double rate = secs > 0 ? g["received"].get<double>() / secs : 0;
    total += rate;
    slowest = std::min(slowest, rate);
    received += g["received"].get<size_t>();
    overflows += g["overflows"].get<size_t>();
  }
  return {{"subscribers", subscribers},
          {"node", node},
          {"objects", o.objects},
          {"per_subscriber_per_s", total / subscribers},
          {"slowest_subscriber_per_s", slowest},
          {"all_subscribers_per_s", total},
          {"sealer_puts_per_s", o.objects / ((end - start) * 1e-9)},
          {"received", received},
          {"expected", o.objects * subscribers},
          {"overflows", overflows}};
}

std::string Us(double ns) {
  char b[32];
  snprintf(b, sizeof b, "%.1f µs", ns / 1000);
  return b;
}
std::string PerS(double v) {
  char b[32];
  snprintf(b, sizeof b, "%.0f", v);
  std::string s = b, out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i > 0 && (s.size() - i) % 3 == 0) out += ',';
    out += s[i];
  }
  return out;
}

int Measure(const Nodes& nodes, const Options& o) {
  Run run;
  json result = {{"placement", nodes.description},
                 {"samples", o.samples},
                 {"interval_us", o.interval_us},
                 {"cores", sysconf(_SC_NPROCESSORS_ONLN)}};
  struct Case {
    const char* label;
    int seal_node, sub_node;
    double aim_us;
  };
  const Case cases[] = {
      {"same node (node 0, Unix socket to the manager)", 0, 0, kAimSameNodeUs},
      {"across nodes: sealer node 0, subscriber node 1 (TCP)", 0, 1, kAimOtherNodeUs},
      {"across nodes: sealer node 1, subscriber node 2 (both TCP)", 1, 2, kAimOtherNodeUs},
  };
  printf("notify_bench: %s; %zu samples per case, one seal every %" PRId64 " us\n\n",
         nodes.description.c_str(), o.samples, o.interval_us);
  printf("| seal -> Next() returns | median | p99 | aim | | seal call median |\n");
  printf("|---|---|---|---|---|---|\n");
  for (const Case& c : cases) {
    Progress(std::string("latency: ") + c.label);
    json r = Latency(nodes, o, run, c.seal_node, c.sub_node);
    ProgressDone();
    const double med = r["latency_ns"]["median"], p99 = r["latency_ns"]["p99"];
    printf("| %s | %s | %s | < %.0f µs median | %s | %s |\n", c.label, Us(med).c_str(),
           Us(p99).c_str(), c.aim_us, med < c.aim_us * 1000 ? "met" : "**not met**",
           Us(r["seal_ns"]["median"]).c_str());
    fflush(stdout);
    r["case"] = c.label;
    r["aim_median_us"] = c.aim_us;
    result["latency"].push_back(r);
  }
  if (o.latency_only) {
    if (!o.json_out.empty()) std::ofstream(o.json_out) << result.dump(2) << "\n";
    fflush(stdout);
    return 0;
  }
  printf(
      "\n| subscribers (node 0) | notifications/s per subscriber | all subscribers | "
      "sealer puts/s | received / expected |\n|---|---|---|---|---|\n");
  for (int subs : {1, 8}) {
    Progress("throughput: " + std::to_string(subs) + " subscriber(s)");
    json r = Rate(nodes, o, run, subs, 0);
    ProgressDone();
    printf("| %d | %s | %s | %s | %zu / %zu%s |\n", subs, PerS(r["per_subscriber_per_s"]).c_str(),
           PerS(r["all_subscribers_per_s"]).c_str(), PerS(r["sealer_puts_per_s"]).c_str(),
           r["received"].get<size_t>(), r["expected"].get<size_t>(),
           r["overflows"].get<size_t>() ? " (overflowed)" : "");
    fflush(stdout);
    result["throughput"].push_back(r);
  }
  double load[3] = {0, 0, 0};
  if (getloadavg(load, 3) == 3) {
    printf("\nload average at the end: %.2f %.2f %.2f\n", load[0], load[1], load[2]);
    result["loadavg_at_end"] = {load[0], load[1], load[2]};
  }
  if (!o.json_out.empty()) std::ofstream(o.json_out) << result.dump(2) << "\n";
  fflush(stdout);  // the caller leaves with _exit
  return 0;
}

// Runs Measure in a child, so that the cluster or manager is always taken
// down after it, even when a worker fails (Die exits at once).
int MeasureInChild(const Nodes& nodes, const Options& o) {
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) Die("fork");
  if (pid == 0) _exit(Measure(nodes, o));
  signal(SIGINT, SIG_IGN);  // Ctrl-C stops the measurement; we clean up
  int st = 0;
  waitpid(pid, &st, 0);
  signal(SIGINT, SIG_DFL);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

}  // namespace
}  // namespace gismo::bench

int main(int argc, char** argv) {
  using namespace gismo::bench;
  if (argc == 3 && std::string(argv[1]) == "worker") {
    json args = json::parse(argv[2]);
    auto it = Roles().find(args.at("role").get<std::string>());
    if (it == Roles().end()) Die("unknown worker role " + args.at("role").dump());
    std::cout << it->second(args).dump() << std::endl;
    return 0;
  }

  Options o;
  bool no_cluster = false;
  std::string manager_bin = DefaultManagerBin(), cluster_bin = ClusterBin();
  CLI::App app{
      "notify_bench: seal -> notification latency on one node and across emulated nodes, and "
      "notifications per second to 1 and 8 subscribers. Prints numbers beside the aims."};
  app.add_option("--samples", o.samples, "Latency samples per case")->capture_default_str();
  app.add_option("--warmup", o.warmup, "Seals not counted at the start of each case")
      ->capture_default_str();
  app.add_option("--interval-us", o.interval_us, "Time between seals in the latency cases")
      ->capture_default_str();
  app.add_option("--objects", o.objects, "Objects put in each throughput case")
      ->capture_default_str();
  app.add_flag("--latency-only", o.latency_only, "Skip the throughput cases");
  app.add_flag("--no-cluster", no_cluster, "Plain processes on this host, even as root");
  app.add_option("--manager", manager_bin, "gismo-manager binary")->capture_default_str();
  app.add_option("--cluster", cluster_bin, "gismo-cluster script")->capture_default_str();
  app.add_option("--json", o.json_out, "Also write the results as JSON to this file");
  CLI11_PARSE(app, argc, argv);

  const std::string size = "512MiB";
  if (!no_cluster && !cluster_bin.empty() && geteuid() == 0) {
    const std::string name = "nb" + std::to_string(getpid());
    const std::string region = "/dev/shm/gismo-" + name;
    int st = 0;
    std::string up = RunCapture({cluster_bin, "--name", name, "up", "--nodes", "2", "--region",
                                 region, "--size", size, "--manager", manager_bin},
                                &st);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
      Nodes nodes;
      const bool netns = up.find("mode netns") != std::string::npos;
      nodes.description =
          netns ? "gismo-cluster, 3 nodes (0: manager; 1, 2), each its own network, PID, mount "
                  "and UTS namespace; TCP over a veth bridge"
                : "gismo-cluster fallback: plain processes, TCP on 127.0.0.1 between nodes";
      nodes.exec_prefix = cluster_bin + " --name " + name + " exec {node} --";
      int rc = MeasureInChild(nodes, o);
      RunCapture({cluster_bin, "--name", name, "down"}, &st);
      return rc;
    }
    fprintf(stderr, "notify_bench: gismo-cluster up failed; using plain processes\n");
    RunCapture({cluster_bin, "--name", name, "down"}, &st);
  }
  LocalManager manager(manager_bin, size);
  Nodes nodes;
  nodes.description =
      "plain processes on one host: node 0 over the manager's Unix socket, nodes 1 and 2 "
      "(GISMO_NODE) over TCP on 127.0.0.1";
  nodes.unix_address = manager.unix_address();
  nodes.tcp_address = manager.tcp_address();
  nodes.region = manager.region();
  return MeasureInChild(nodes, o);
}
