// gismo-torture: kills gismo clients at random instructions and proves that
// nothing is lost, leaked or stuck.
//
//   gismo-torture run      start a manager (or use a gismo-cluster), run
//                          workers, SIGKILL random ones every few ms, replace
//                          them, then check the region (see check.cc)
//   gismo-torture worker   one worker (started by run, or by a test)
//   gismo-torture check    the end-of-run check on its own
//   gismo-torture restart-bench   manager restart time with N objects
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <charconv>
#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "args/parse_args.h"
#include "common/atomic.h"
#include "common/clock.h"
#include "content.h"
#include "protocol/wire.h"
#include "testing/manager_process.h"
#include "testing/process.h"
#include "torture.h"

#ifndef GISMO_MANAGER_DEFAULT
#define GISMO_MANAGER_DEFAULT ""
#endif
#ifndef GISMO_FSCK_DEFAULT
#define GISMO_FSCK_DEFAULT ""
#endif

namespace gismo::torture {
namespace {

std::string SelfExe() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, n) : "gismo-torture";
}

bool Executable(const std::string& p) { return !p.empty() && access(p.c_str(), X_OK) == 0; }

// fork + exec; the child's stdout goes to *out_fd (a pipe) when out_fd is
// given, its stderr to `err_path` when not empty. The child is ours to reap.
pid_t Spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env, int* out_fd,
            const std::string& err_path = "") {
  testing::SpawnOptions o;
  o.argv = argv;
  o.env = env;
  o.capture_stdout = out_fd != nullptr;
  o.stderr_path = err_path;
  o.append_stderr = true;
  o.new_process_group = true;  // a stray ^C reaches the run, which stops its children
  // A run that dies (its own client fenced by the manager it started, on a
  // starved machine) leaves no worker running. Spawned on the main thread,
  // which lives as long as the run.
  o.parent_death_signal = SIGKILL;
  testing::Process p;
  if (!p.Start(o)) return -1;
  if (out_fd) *out_fd = p.ReleaseStdout();
  return p.Release();
}

// A gismo-manager on `region` at `address`, its log appended to `log`;
// the region outlives it.
testing::ManagerProcessOptions ManagerOptions(const std::string& bin, const std::string& region,
                                              const std::string& size, const std::string& address,
                                              const std::string& log_level,
                                              const std::vector<std::string>& extra_args,
                                              const std::string& log) {
  testing::ManagerProcessOptions o;
  o.binary = bin;
  o.region = region;
  o.size = size;
  o.listen = {address};
  o.log_level = log_level;
  o.extra_args = extra_args;
  o.stderr_path = log;
  o.keep_region = true;
  o.new_process_group = true;
  o.parent_death_signal = SIGKILL;  // as Spawn's workers: none outlives the run
  return o;
}

// GET /metrics from tcp:HOST:PORT; empty on failure.
std::string Scrape(const std::string& address) {
  const Result<protocol::Address> a = protocol::ParseAddress(address);
  if (!a.ok() || a->kind != protocol::Address::Kind::kTcp || a->port == 0) return {};
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(a->port);
  if (inet_pton(AF_INET, a->host.c_str(), &sa.sin_addr) != 1) return {};
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return {};
  std::string out;
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) {
    std::string req = "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n";
    (void)!write(fd, req.data(), req.size());
    char buf[8192];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, n);
  }
  close(fd);
  return out;
}

double Metric(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name + " ", 0) != 0) continue;
    double value = -1;
    const char* end = line.data() + line.size();
    const auto [ptr, ec] = std::from_chars(line.data() + name.size() + 1, end, value);
    if (ec != std::errc() || ptr != end) return -1;
    return value;
  }
  return -1;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * (v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

// ---- run ------------------------------------------------------------------

struct RunOptions {
  std::string manager_bin = GISMO_MANAGER_DEFAULT;
  std::string fsck = GISMO_FSCK_DEFAULT;
  std::string region, size = "256MiB", work_dir;
  std::string cluster, cluster_bin;
  uint32_t workers = 6, nodes = 3;
  double seconds = 20;
  uint64_t seed = 0;
  uint32_t kill_min_ms = 2, kill_max_ms = 20;
  uint64_t keys = 256, max_size = 256 << 10;
  uint32_t lease_ms = 0;
  bool keep = false;
  // Freeze mode (suspected is not dead): this share of the events SIGSTOPs a
  // worker instead of killing it, for less than a lease or for 2-3 leases,
  // then SIGCONTs it; once a node's workers all at once. A worker frozen
  // past its lease is fenced by the manager (killed: its own kernel) and
  // recovered; one frozen for less must simply go on.
  uint32_t freeze_percent = 0;
  // Crash point names: a third of the worker incarnations stop themselves
  // (SIGSTOP) at a random one of these, inside an operation.
  std::vector<std::string> stop_points;
};

struct WorkerProc {
  pid_t pid = -1;     // what we spawned (gismo-cluster exec may stand between)
  pid_t target = -1;  // the worker process itself, once known
  int fd = -1;
  std::string buf;
  uint64_t client_id = 0;
  uint32_t node = 0;
  double thaw_at = 0;  // > 0: frozen by us until then
};

class Run {
 public:
  explicit Run(RunOptions o) : o_(std::move(o)), rng_(Mix(o_.seed ^ 0x6b696c6c)) {}

  int Main() {
    self_ = SelfExe();
    if (o_.work_dir.empty()) {
      char tmpl[] = "/tmp/gismo-torture.XXXXXX";
      if (!mkdtemp(tmpl)) return Fatal("cannot make a work directory");
      o_.work_dir = tmpl;
    } else {
      mkdir(o_.work_dir.c_str(), 0755);
    }
    journal_dir_ = o_.work_dir + "/journal";
    mkdir(journal_dir_.c_str(), 0755);
    tag_ = std::to_string(o_.seed);
    printf("gismo-torture: seed %" PRIu64 " (repeat with --seed %" PRIu64
           "), %u workers on %u "
           "nodes, %.0f s, a kill every %u-%u ms, work dir %s\n",
           o_.seed, o_.seed, o_.workers, o_.nodes, o_.seconds, o_.kill_min_ms, o_.kill_max_ms,
           o_.work_dir.c_str());
    fflush(stdout);
    if (!SetUpManager()) return Fatal("cannot start the manager");
    monitor_ = std::thread([this] { Monitor(); });
    for (uint32_t i = 0; i < o_.workers; ++i) SpawnWorker();
    KillLoop();
    StopWorkers();
    StoreRelease(running_, false);
    monitor_.join();

    const double check_t0 = MonotonicS();
    CheckOptions co;
    co.address = address_;
    co.tag = tag_;
    co.journal_dir = journal_dir_;
    co.keys = o_.keys;
    co.fsck = Executable(o_.fsck) ? o_.fsck : "";
    CheckResult cr = RunCheck(co);
    const double check_s = MonotonicS() - check_t0;

    std::string metrics = Scrape(metrics_address_);
    StopManager(&cr);
    Summary(cr, metrics, check_s);
    const bool failed = cr.failures != 0 || LoadRelaxed(failures_) != 0;
    if (failed && !o_.keep) {
      // The workers' and the manager's logs are what a failure is read from.
      fprintf(stderr, "gismo-torture: failed; kept the work directory %s and the region %s\n",
              o_.work_dir.c_str(), o_.region.c_str());
    } else if (!o_.keep) {
      if (o_.cluster.empty()) unlink(o_.region.c_str());
      std::string out;
      RunProcess({"rm", "-rf", o_.work_dir}, 60, &out);
    }
    return failed ? 1 : 0;
  }

 private:
  int Fatal(const std::string& why) {
    fprintf(stderr, "gismo-torture: %s\n", why.c_str());
    manager_.Kill();
    return 2;
  }

  bool SetUpManager() {
    if (!o_.cluster.empty()) {
      // The cluster's manager, reached from here through node 0's socket.
      std::string out;
      if (RunProcess({o_.cluster_bin, "--name", o_.cluster, "env", "0"}, 30, &out) != 0) {
        fprintf(stderr, "gismo-torture: %s env 0 failed: %s\n", o_.cluster_bin.c_str(),
                out.c_str());
        return false;
      }
      size_t p = out.find("GISMO_ADDRESS=");
      if (p == std::string::npos) return false;
      address_ = out.substr(p + 14, out.find('\n', p) - p - 14);
      if (!address_.empty() && address_.front() == '\'') {
        address_ = address_.substr(1, address_.size() - 2);
      }
      return true;
    }
    if (!Executable(o_.manager_bin)) {
      fprintf(stderr, "gismo-torture: no gismo-manager at '%s' (--manager-bin)\n",
              o_.manager_bin.c_str());
      return false;
    }
    if (o_.region.empty()) o_.region = "/dev/shm/gismo-torture-" + std::to_string(getpid());
    address_ = "unix:" + o_.work_dir + "/manager.sock";
    std::vector<std::string> args{"--format", "--metrics", "tcp:127.0.0.1:0"};
    if (o_.lease_ms) args.insert(args.end(), {"--lease-ms", std::to_string(o_.lease_ms)});
    manager_ = testing::ManagerProcess(ManagerOptions(o_.manager_bin, o_.region, o_.size, address_,
                                                      "info", args, o_.work_dir + "/manager.log"));
    if (!manager_.Start()) {
      fprintf(stderr, "gismo-torture: %s\n", manager_.error().c_str());
      return false;
    }
    metrics_address_ = manager_.ReadyField("metrics");
    return true;
  }

  void SpawnWorker() {
    WorkerProc w;
    const uint64_t incarnation = incarnations_++;
    w.node = o_.nodes ? 1 + incarnation % o_.nodes : 0;
    std::vector<std::string> argv{self_,        "worker",
                                  "--tag",      tag_,
                                  "--seed",     std::to_string(Mix(o_.seed + incarnation)),
                                  "--keys",     std::to_string(o_.keys),
                                  "--max-size", std::to_string(o_.max_size),
                                  "--journal",  journal_dir_ + "/w" + std::to_string(incarnation)};
    std::vector<std::string> env;
    if (!o_.stop_points.empty() && rng_() % 3 == 0) {
      env.push_back("GISMO_CRASH_AT=" + o_.stop_points[rng_() % o_.stop_points.size()]);
      env.push_back("GISMO_CRASH_SKIP=" + std::to_string(rng_() % 40));
      env.push_back("GISMO_CRASH_ACTION=stop");
      ++armed_;
    }
    if (o_.cluster.empty()) {
      argv.insert(argv.end(), {"--address", address_});
      env.push_back("GISMO_NODE=" + std::to_string(w.node));
    } else {
      argv.insert(argv.begin(),
                  {o_.cluster_bin, "--name", o_.cluster, "exec", std::to_string(w.node), "--"});
    }
    w.pid = Spawn(argv, env, &w.fd, o_.work_dir + "/workers.err");
    if (w.pid < 0) {
      fprintf(stderr, "gismo-torture: cannot start a worker\n");
      IncrementRelaxed(failures_);
      return;
    }
    fcntl(w.fd, F_SETFL, O_NONBLOCK);
    workers_.push_back(std::move(w));
  }

  // The worker's own pid: under gismo-cluster exec (nsenter) it is a
  // descendant of what we spawned.
  pid_t FindTarget(pid_t pid) {
    for (int depth = 0; depth < 4; ++depth) {
      char exe[4096];
      std::string link = "/proc/" + std::to_string(pid) + "/exe";
      ssize_t n = readlink(link.c_str(), exe, sizeof exe - 1);
      if (n > 0 && std::string(exe, n) == self_) return pid;
      std::ifstream ch("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) +
                       "/children");
      pid_t child = -1;
      if (!(ch >> child)) return -1;
      pid = child;
    }
    return -1;
  }

  void ReadOutput(WorkerProc& w) {
    char buf[512];
    ssize_t n;
    while ((n = read(w.fd, buf, sizeof buf)) > 0) w.buf.append(buf, n);
    size_t nl;
    while ((nl = w.buf.find('\n')) != std::string::npos) {
      std::string line = w.buf.substr(0, nl);
      w.buf.erase(0, nl + 1);
      unsigned long id = 0;
      if (sscanf(line.c_str(), "client %lu", &id) == 1) {
        w.client_id = id;
        if (w.target < 0) w.target = FindTarget(w.pid);
      }
    }
  }

  void KillLoop() {
    const double end = MonotonicS() + o_.seconds;
    double next_kill = MonotonicS() + Interval();
    while (MonotonicS() < end) {
      std::vector<pollfd> pfds;
      for (auto& w : workers_) pfds.push_back({w.fd, POLLIN, 0});
      int wait_ms = std::max(0, static_cast<int>((std::min(next_kill, end) - MonotonicS()) * 1000));
      poll(pfds.data(), pfds.size(), wait_ms);
      for (auto& w : workers_) ReadOutput(w);
      ReapUnexpected();
      ThawDue();
      if (o_.freeze_percent > 0 && !node_frozen_ && MonotonicS() >= end - o_.seconds / 2) {
        FreezeNode(1);
        node_frozen_ = true;
      }
      if (MonotonicS() >= next_kill) {
        if (rng_() % 100 < o_.freeze_percent) {
          FreezeOne();
        } else {
          KillOne();
        }
        next_kill = MonotonicS() + Interval();
      }
    }
  }

  double Interval() {
    return (o_.kill_min_ms + rng_() % (o_.kill_max_ms - o_.kill_min_ms + 1)) / 1000.0;
  }

  // Freeze mode: SIGSTOP a worker for less than a lease, or for 2-3 leases.
  void FreezeOne() {
    std::vector<size_t> running;
    for (size_t i = 0; i < workers_.size(); ++i) {
      if (workers_[i].thaw_at == 0) running.push_back(i);
    }
    if (running.empty()) return;
    Freeze(workers_[running[rng_() % running.size()]], rng_() % 2 == 0);
  }
  void FreezeNode(uint32_t node) {
    uint32_t n = 0;
    for (auto& w : workers_) {
      if (w.node == node) {
        Freeze(w, true);
        ++n;
      }
    }
    fprintf(stderr, "gismo-torture: froze node %u (%u workers) for 2-3 leases\n", node, n);
  }
  void Freeze(WorkerProc& w, bool past_lease) {
    if (w.target < 0) w.target = FindTarget(w.pid);
    if (w.target <= 0) return;
    const double lease = o_.lease_ms / 1000.0;
    // A short freeze plus the time since the worker's last heartbeat (a
    // quarter lease) stays well inside the lease.
    const double secs = past_lease ? lease * (2 + (rng_() % 1000) / 1000.0)
                                   : lease * (0.05 + (rng_() % 250) / 1000.0);
    kill(w.target, SIGSTOP);
    w.thaw_at = MonotonicS() + secs;
    ++(past_lease ? long_freezes_ : short_freezes_);
  }
  void ThawDue() {
    for (auto& w : workers_) {
      if (w.thaw_at > 0 && MonotonicS() >= w.thaw_at) {
        kill(w.target, SIGCONT);
        w.thaw_at = 0;
      }
    }
  }

  // A worker that exits by itself failed (it runs until SIGTERM), unless it
  // was SIGKILLed: the manager fences a client unheard for a lease (frozen
  // by us, stopped at a stop point, or starved) by killing it.
  void ReapUnexpected() {
    for (size_t i = 0; i < workers_.size();) {
      int st = 0;
      if (waitpid(workers_[i].pid, &st, WNOHANG) == workers_[i].pid) {
        const bool killed = (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) ||
                            (WIFEXITED(st) && WEXITSTATUS(st) == 128 + SIGKILL);
        // Not only those we froze: on a loaded machine a live worker may go
        // unheard for a lease too, and is then fenced like any suspect.
        if (killed) {
          ++fenced_;
          close(workers_[i].fd);
          workers_.erase(workers_.begin() + i);
          SpawnWorker();
          continue;
        }
        fprintf(stderr, "gismo-torture: worker pid %d ended on its own (status %d)\n",
                workers_[i].pid, st);
        IncrementRelaxed(failures_);
        close(workers_[i].fd);
        workers_.erase(workers_.begin() + i);
        SpawnWorker();
        continue;
      }
      ++i;
    }
  }

  void KillOne() {
    if (workers_.empty()) return;
    size_t i = rng_() % workers_.size();
    if (workers_[i].thaw_at > 0) return;  // frozen: left to its freeze
    WorkerProc w = std::move(workers_[i]);
    workers_.erase(workers_.begin() + i);
    ReadOutput(w);
    if (w.target < 0) w.target = FindTarget(w.pid);
    const double t = MonotonicS();
    kill(w.target > 0 ? w.target : w.pid, SIGKILL);
    if (!testing::WaitForExit(w.pid, 10)) {
      kill(w.pid, SIGKILL);
      waitpid(w.pid, nullptr, 0);
    }
    close(w.fd);
    ++kills_;
    if (w.client_id) {
      std::lock_guard<std::mutex> lk(mu_);
      pending_[w.client_id] = t;
    } else {
      ++kills_before_connect_;
    }
    SpawnWorker();
  }

  void StopWorkers() {
    // Frozen ones (by us, or by themselves at a stop point) resume first.
    for (auto& w : workers_) {
      if (w.target < 0) w.target = FindTarget(w.pid);
      if (w.target > 0) kill(w.target, SIGCONT);
    }
    for (auto& w : workers_) kill(w.target > 0 ? w.target : w.pid, SIGTERM);
    for (auto& w : workers_) {
      if (!testing::WaitForExit(w.pid, 20)) {
        fprintf(stderr, "gismo-torture: worker pid %d ignored SIGTERM for 20 s (stuck?)\n", w.pid);
        IncrementRelaxed(failures_);
        kill(w.target > 0 ? w.target : w.pid, SIGKILL);
        kill(w.pid, SIGKILL);
        waitpid(w.pid, nullptr, 0);
      }
      close(w.fd);
    }
    workers_.clear();
  }

  // Moves the killed clients that have left the manager's list of active
  // clients from pending_ to recovery_ms_; false if the list cannot be read.
  // REQUIRES: mu_ is held.
  bool CountRecovered(Client& c) {
    auto cl = c.Clients();
    if (!cl.ok()) return false;
    std::set<uint64_t> live;
    for (const auto& ci : *cl) live.insert(ci.client_id);
    const double now = MonotonicS();
    for (auto it = pending_.begin(); it != pending_.end();) {
      if (!live.count(it->first)) {
        recovery_ms_.push_back((now - it->second) * 1000);
        it = pending_.erase(it);
      } else {
        ++it;
      }
    }
    return true;
  }

  // Recovery latency: from the SIGKILL to the client leaving the manager's
  // list of active clients.
  void Monitor() {
    Client c;
    for (double give_up = MonotonicS() + 30; MonotonicS() < give_up;) {
      auto r = Client::Connect(address_);
      if (r.ok()) {
        c = std::move(*r);
        break;
      }
      usleep(10000);
    }
    if (!c.connected()) {
      fprintf(stderr, "gismo-torture: the monitor cannot connect\n");
      IncrementRelaxed(failures_);
      return;
    }
    for (;;) {
      bool last = !LoadAcquire(running_);
      {
        std::lock_guard<std::mutex> lk(mu_);
        if (!pending_.empty()) (void)CountRecovered(c);
        if (last) break;
      }
      usleep(500);
    }
    // Survivors of the last poll are measured by the check's idle wait.
    std::lock_guard<std::mutex> lk(mu_);
    for (double give_up = MonotonicS() + 60; !pending_.empty() && MonotonicS() < give_up;) {
      if (!CountRecovered(c)) break;
      usleep(1000);
    }
    for (const auto& [id, t] : pending_) {
      fprintf(stderr, "gismo-torture: killed client %" PRIu64 " was never recovered\n", id);
      IncrementRelaxed(failures_);
    }
    (void)c.Disconnect();
  }

  void StopManager(CheckResult* cr) {
    if (!manager_.running()) return;
    if (!manager_.StopWithin(30)) {
      cr->problems.push_back("the manager did not stop within 30 s of SIGTERM");
      ++cr->failures;
    }
    if (Executable(o_.fsck)) {
      std::string out;
      int rc = RunProcess({o_.fsck, "--region", o_.region}, 120, &out);
      if (rc != 0) {
        cr->problems.push_back("gismo-fsck --region " + o_.region + " (offline) exited " +
                               std::to_string(rc) + ":\n" + out);
        ++cr->failures;
      } else {
        offline_fsck_ = out.substr(0, out.find('\n'));
      }
    }
  }

  void Summary(const CheckResult& cr, const std::string& metrics, double check_s) {
    uint64_t counts[kNumCounters] = {};
    for (uint64_t i = 0; i < incarnations_; ++i) {
      std::string p = journal_dir_ + "/w" + std::to_string(i) + ".stats";
      std::ifstream in(p, std::ios::binary);
      uint64_t v[kNumCounters] = {};
      in.read(reinterpret_cast<char*>(v), sizeof v);
      for (uint32_t c = 0; c < kNumCounters; ++c) counts[c] += v[c];
    }
    uint64_t total = 0;
    for (uint32_t c = 0; c < kFailures; ++c) total += c == kOpReconnect ? 0 : counts[c];
    printf("\n=== gismo-torture summary (seed %" PRIu64 ") ===\n", o_.seed);
    printf("kills survived:     %" PRIu64 " (%" PRIu64
           " before the victim had connected), "
           "%" PRIu64 " worker incarnations\n",
           kills_, kills_before_connect_, incarnations_);
    if (o_.freeze_percent > 0 || !o_.stop_points.empty()) {
      printf("freezes survived:   %" PRIu64 " shorter than a lease, %" PRIu64
             " of 2-3 leases; %" PRIu64 " workers armed to stop inside an operation; %" PRIu64
             " fenced (killed by the manager) and recovered\n",
             short_freezes_, long_freezes_, armed_, fenced_);
    }
    printf("operations:         %" PRIu64 " in %.0f s\n", total, o_.seconds);
    for (uint32_t c = 0; c < kFailures; ++c) {
      printf("  %-16s %" PRIu64 "\n", CounterName(c), counts[c]);
    }
    printf("objects verified:   %" PRIu64 " (full read at the end)\n", cr.objects_verified);
    printf(
        "recovery latency:   %zu measured, median %.2f ms, p99 %.2f ms, max %.2f ms "
        "(SIGKILL to the client leaving the manager's client list)\n",
        recovery_ms_.size(), Percentile(recovery_ms_, 0.5), Percentile(recovery_ms_, 0.99),
        Percentile(recovery_ms_, 1.0));
    double recovered = Metric(metrics, "gismo_manager_clients_recovered_total");
    double rsec = Metric(metrics, "gismo_manager_recovery_seconds_total");
    if (recovered > 0 && rsec >= 0) {
      printf(
          "manager recovery:   %.0f clients recovered, %.1f us of recovery work each on "
          "average (metrics; clean departures included)\n",
          recovered, rsec * 1e6 / std::max(1.0, recovered));
    }
    printf("final check:        %.2f s\n", check_s);
    if (!cr.fsck_line.empty()) printf("gismo-fsck online:  %s\n", cr.fsck_line.c_str());
    if (!offline_fsck_.empty()) printf("gismo-fsck offline: %s\n", offline_fsck_.c_str());
    if (!Executable(o_.fsck)) printf("gismo-fsck:         not available, not run\n");
    const uint64_t failures = cr.failures + LoadRelaxed(failures_);
    printf("failures:           %" PRIu64 "\n", failures);
    for (const auto& p : cr.problems) printf("  - %s\n", p.c_str());
    printf("result:             %s\n", failures == 0 ? "PASS" : "FAIL");
    fflush(stdout);
  }

  RunOptions o_;
  std::mt19937_64 rng_;
  std::string self_, journal_dir_, tag_, address_, metrics_address_, offline_fsck_;
  testing::ManagerProcess manager_;
  std::vector<WorkerProc> workers_;
  uint64_t incarnations_ = 0, kills_ = 0, kills_before_connect_ = 0;
  uint64_t short_freezes_ = 0, long_freezes_ = 0, fenced_ = 0, armed_ = 0;
  bool node_frozen_ = false;
  // Counted by the run and the monitor thread, read once both are done
  // (relaxed: the join orders the last read).
  std::atomic<uint64_t> failures_{0};
  // Cleared (StoreRelease) when the workers are stopped; the monitor takes
  // one more count after it reads it clear (LoadAcquire).
  std::atomic<bool> running_{true};
  std::thread monitor_;
  std::mutex mu_;
  std::map<uint64_t, double> pending_;  // killed client id -> kill time
  std::vector<double> recovery_ms_;
};

// ---- restart-bench ----------------------------------------------------------

int RestartBench(const std::string& manager_bin, const std::string& size,
                 const std::vector<uint64_t>& counts, uint32_t repeats, const std::string& fsck) {
  char tmpl[] = "/tmp/gismo-restart.XXXXXX";
  if (!mkdtemp(tmpl)) return 2;
  const std::string dir = tmpl;
  const std::string region = "/dev/shm/gismo-restart-" + std::to_string(getpid());
  const std::string address = "unix:" + dir + "/m.sock";
  const std::string log = dir + "/manager.log";
  printf("%10s %12s %14s %14s %14s\n", "objects", "populate_s", "first_ms", "median_ms", "max_ms");
  int rc = 0;
  for (uint64_t n : counts) {
    unlink(region.c_str());
    testing::ManagerProcess m(ManagerOptions(
        manager_bin, region, size, address, "warn",
        {"--format", "--max-objects", std::to_string(std::max<uint64_t>(n * 2, 1024))}, log));
    if (!m.Start()) return 2;
    const double p0 = MonotonicS();
    {
      auto c = Client::Connect(address);
      if (!c.ok()) return 2;
      uint8_t data[64];
      for (uint64_t i = 0; i < n; ++i) {
        Fill(i, 1, data, sizeof data);
        Meta meta = MakeMeta(i, 1, data, sizeof data);
        Status s = c->Put(KeyId("restart", i), {data, sizeof data},
                          {reinterpret_cast<const uint8_t*>(&meta), sizeof meta});
        if (!s.ok()) {
          fprintf(stderr, "populate: %s\n", s.ToString().c_str());
          return 2;
        }
      }
      // The manager dies with this client connected and holding references:
      // the first restart also recovers it as an orphan.
      std::vector<Buffer> held;
      for (uint64_t i = 0; i < std::min<uint64_t>(n, 512); ++i) {
        auto b = c->Get(KeyId("restart", i), 0);
        if (b.ok()) held.push_back(std::move(*b));
      }
      const double populate_s = MonotonicS() - p0;
      m.Kill();
      for (auto& b : held) (void)b.Detach();
      std::vector<double> ms;
      for (uint32_t r = 0; r < repeats; ++r) {
        m = testing::ManagerProcess(
            ManagerOptions(manager_bin, region, size, address, "warn", {}, log));
        const double t0 = MonotonicS();
        if (!m.Start()) return 2;
        ms.push_back((MonotonicS() - t0) * 1000);
        if (r + 1 < repeats) m.Kill();
      }
      // The last manager is up: every object still there, references dropped.
      auto c2 = Client::Connect(address);
      if (!c2.ok()) return 2;
      auto u = c2->Usage();
      auto st = c2->Stat(KeyId("restart", 0));
      if (!u.ok() || u->sealed_count != n || !st.ok() || st->ref_count != 0) {
        fprintf(stderr, "after restart: %" PRIu64 " sealed of %" PRIu64 ", refs %" PRIu64 "\n",
                u.ok() ? u->sealed_count : 0, n, st.ok() ? st->ref_count : 0);
        rc = 1;
      }
      (void)c2->Disconnect();
      std::vector<double> rest(ms.begin() + 1, ms.end());
      printf("%10" PRIu64 " %12.2f %14.1f %14.1f %14.1f\n", n, populate_s, ms[0],
             Percentile(rest.empty() ? ms : rest, 0.5), Percentile(ms, 1.0));
      fflush(stdout);
    }
    m.Stop(SIGTERM);
    if (Executable(fsck)) {
      std::string out;
      if (RunProcess({fsck, "--region", region}, 300, &out) != 0) {
        fprintf(stderr, "gismo-fsck failed after the restarts:\n%s\n", out.c_str());
        rc = 1;
      }
    }
  }
  unlink(region.c_str());
  std::string out;
  RunProcess({"rm", "-rf", dir}, 30, &out);
  return rc;
}

}  // namespace
}  // namespace gismo::torture

int main(int argc, char** argv) {
  using namespace gismo::torture;  // NOLINT
  CLI::App app{
      "gismo-torture: SIGKILLs gismo clients at random instructions while they create, seal,\n"
      "get, release, delete and abort checksummed objects, then proves that nothing was lost,\n"
      "leaked or left locked. Exit status 0: every check passed; 1: a failure was found."};
  app.require_subcommand(1);

  RunOptions ro;
  // Bounds that keep the workers' arithmetic (key and size picks modulo
  // these) and the check's table of keys finite.
  const CLI::Range kKeysRange(uint64_t{1}, uint64_t{1} << 24);
  const CLI::Range kSizeRange(uint64_t{1}, uint64_t{1} << 40);
  auto* run = app.add_subcommand("run", "Run workers under a killer, then check the region");
  run->add_option("--seconds", ro.seconds, "How long the killer runs")->capture_default_str();
  run->add_option("--freeze-percent", ro.freeze_percent,
                  "Share of the events that freeze a worker (SIGSTOP, < 1 or 2-3 leases) instead "
                  "of killing it; needs --lease-ms")
      ->check(CLI::Range(0u, 100u));
  run->add_option("--stop-points", ro.stop_points,
                  "Crash point names where a third of the workers stop themselves (freeze mode)")
      ->delimiter(',');
  run->add_option("--seed", ro.seed, "Seed of every random choice (default: from the clock)");
  run->add_option("--workers", ro.workers, "Concurrent workers")->capture_default_str();
  run->add_option("--nodes", ro.nodes, "Workers are spread over nodes 1..N")->capture_default_str();
  run->add_option("--kill-min-ms", ro.kill_min_ms, "Shortest time between kills")
      ->check(CLI::Range(0u, 3600000u))
      ->capture_default_str();
  run->add_option("--kill-max-ms", ro.kill_max_ms, "Longest time between kills")
      ->check(CLI::Range(0u, 3600000u))
      ->capture_default_str();
  run->add_option("--keys", ro.keys, "Object names the workers share")
      ->capture_default_str()
      ->check(kKeysRange);
  run->add_option("--max-size", ro.max_size, "Largest object in bytes")
      ->capture_default_str()
      ->check(kSizeRange);
  run->add_option("--manager-bin", ro.manager_bin, "gismo-manager to start")->capture_default_str();
  run->add_option("--region", ro.region, "Region file (default /dev/shm/gismo-torture-PID)");
  run->add_option("--size", ro.size, "Region size")->capture_default_str();
  run->add_option("--lease-ms", ro.lease_ms, "The manager's client lease (0: none)");
  run->add_option("--fsck", ro.fsck, "gismo-fsck to run at the end (empty: skip)")
      ->capture_default_str();
  run->add_option("--cluster", ro.cluster,
                  "Run the workers on the nodes of this gismo-cluster (already up)");
  run->add_option("--cluster-bin", ro.cluster_bin, "The gismo-cluster script");
  run->add_option("--work-dir", ro.work_dir, "Journals and logs (default: a new /tmp dir)");
  run->add_flag("--keep", ro.keep,
                "Keep the region and the work directory (kept anyway after a failure)");

  WorkerOptions wo;
  auto* worker = app.add_subcommand("worker", "One worker (normally started by run)");
  worker->add_option("--address", wo.address, "Manager address (default $GISMO_ADDRESS)");
  worker->add_option("--tag", wo.tag, "Object namespace shared by the run")->required();
  worker->add_option("--journal", wo.journal, "Journal path prefix")->required();
  worker->add_option("--seed", wo.seed, "Seed")->capture_default_str();
  worker->add_option("--keys", wo.keys, "Object names")->capture_default_str()->check(kKeysRange);
  worker->add_option("--max-size", wo.max_size, "Largest object")
      ->capture_default_str()
      ->check(kSizeRange);
  worker->add_option("--seconds", wo.seconds, "Stop after this long (0: at SIGTERM)");
  worker->add_option("--address-file", wo.address_file,
                     "Read the manager address from this file at each (re)connect");

  CheckOptions co;
  co.fsck = GISMO_FSCK_DEFAULT;
  bool keep_objects = false;
  auto* check = app.add_subcommand("check", "Check a region after the workers are gone");
  check->add_option("--address", co.address, "Manager address (default $GISMO_ADDRESS)");
  check->add_option("--tag", co.tag, "The run's object namespace")->required();
  check->add_option("--journal-dir", co.journal_dir, "Directory of the workers' journals");
  check->add_option("--keys", co.keys, "Object names")->capture_default_str()->check(kKeysRange);
  check
      ->add_option("--idle-timeout", co.idle_timeout_s,
                   "Seconds to wait for every other client to be gone")
      ->capture_default_str();
  check->add_option("--fsck", co.fsck, "gismo-fsck to run (empty: skip)")->capture_default_str();
  check->add_flag("--keep-objects", keep_objects, "Do not delete the objects at the end");
  check
      ->add_option("--others", co.others,
                   "Clients besides the checker that may stay connected (not workers)")
      ->capture_default_str();

  std::string rb_manager = GISMO_MANAGER_DEFAULT, rb_size = "1GiB", rb_fsck = GISMO_FSCK_DEFAULT;
  std::vector<uint64_t> rb_counts{1000, 10000, 100000};
  uint32_t rb_repeats = 5;
  auto* rb = app.add_subcommand("restart-bench",
                                "Time from exec to ready of a manager restarted after SIGKILL "
                                "on a region holding N objects");
  rb->add_option("--manager-bin", rb_manager, "gismo-manager")->capture_default_str();
  rb->add_option("--size", rb_size, "Region size")->capture_default_str();
  rb->add_option("--objects", rb_counts, "Object counts")->delimiter(',')->capture_default_str();
  rb->add_option("--repeats", rb_repeats, "Restarts per count")->capture_default_str();
  rb->add_option("--fsck", rb_fsck, "gismo-fsck to run after (empty: skip)");

  GISMO_PARSE_ARGS(app, argc, argv);

  if (*worker) return RunWorker(wo);
  if (*check) {
    co.delete_all = !keep_objects;
    CheckResult r = RunCheck(co);
    printf("objects verified: %" PRIu64 "\n", r.objects_verified);
    if (!r.fsck_line.empty()) printf("gismo-fsck: %s\n", r.fsck_line.c_str());
    printf("failures: %" PRIu64 "\n", r.failures);
    for (const auto& p : r.problems) printf("  - %s\n", p.c_str());
    return r.failures == 0 ? 0 : 1;
  }
  if (*rb) return RestartBench(rb_manager, rb_size, rb_counts, std::max(rb_repeats, 2u), rb_fsck);
  if (ro.seed == 0) {
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ro.seed = Mix(ts.tv_sec * 1000000000ull + ts.tv_nsec) % 1000000000ull + 1;
  }
  if (ro.kill_max_ms < ro.kill_min_ms) ro.kill_max_ms = ro.kill_min_ms;
  if (!ro.cluster.empty() && ro.cluster_bin.empty()) {
    fprintf(stderr, "gismo-torture: --cluster needs --cluster-bin\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  return Run(ro).Main();
}
