// gismo-agent: the fencing agent of one node.
//
// Runs on every node that has clients but no manager, in the PID namespace
// its clients run in (on the host, not in a container of its own). It keeps
// a connection to the manager; when the manager suspects a client of this
// node (lease expired, connection lost), it asks the agent, which proves the
// client's process gone through this kernel: if it still runs (frozen,
// partitioned) it is SIGKILLed through a pidfd and seen to exit. Only then
// does the manager recover the client. An agent that cannot be reached is
// itself a reason to fence the whole node (gismo-manager --fence-command).
// In a non-coherent region a fence is complete only once the dead process's
// lines are written back from this host (region/nc_fence.h), so the agent
// maps the region (at its first fence order) and does that before it
// confirms. Orders are carried out by a few workers at once, fence orders
// first; the thread that reads the connection only heartbeats and hands
// orders over.
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "args/parse_args.h"
#include "common/background_thread.h"
#include "common/clock.h"
#include "fence/process.h"
#include "protocol/frame_auth.h"
#include "protocol/handshake.h"
#include "protocol/wire.h"
#include "region/cache_lines.h"
#include "region/nc_fence.h"
#include "region/region.h"

namespace {

using gismo::Status;
using gismo::protocol::MsgType;

volatile sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

struct Options {
  std::string manager;  // default: $GISMO_ADDRESS, else the default socket
  uint32_t node = 0;
  std::string region = "/dev/shm/gismo";
  int kill_timeout_ms = 5000;
};

// One line, written with one call: workers log at once.
void Log(const char* fmt, const std::string& a = {}, const std::string& b = {}) {
  char line[1024];
  const int n = snprintf(line, sizeof line, "gismo-agent: ");
  snprintf(line + n, sizeof line - static_cast<size_t>(n), fmt, a.c_str(), b.c_str());
  fprintf(stderr, "%s\n", line);
}

// One connection to the manager: read by the thread that serves it, written
// by it (heartbeats) and by the workers that answer its orders. Closed when
// the last of them lets go.
class Link {
 public:
  Link(int fd, uint32_t lease_ms, std::optional<gismo::protocol::FrameAuth> auth)
      : fd_(fd),
        lease_ms_(lease_ms),
        frame_bound_ms_(gismo::protocol::FrameStallBoundMs(lease_ms)) {
    if (auth) {
      send_tags_ = auth->send;
      recv_tags_ = auth->recv;
    }
  }
  ~Link() { close(fd_); }
  Link(const Link&) = delete;
  Link& operator=(const Link&) = delete;

  int fd() const { return fd_; }
  uint32_t lease_ms() const { return lease_ms_; }

  // Sends one frame (tagged on a keyed connection). A failure breaks the
  // connection for good: the serving thread sees it and connects again.
  Status Send(std::vector<uint8_t> frame) {
    std::lock_guard<std::mutex> lock(send_mu_);
    if (broken_.load(std::memory_order_relaxed)) {
      return Status(GISMO_ERR_CONNECTION, "the connection to the manager is broken");
    }
    if (send_tags_) send_tags_->Sign(&frame);
    Status s = gismo::protocol::SendAllUntil(fd_, frame.data(), frame.size(),
                                             gismo::protocol::DeadlineAfterMs(frame_bound_ms_));
    if (!s.ok()) Break();
    return s;
  }
  // Reads the next frame (its tag checked on a keyed connection). The
  // serving thread alone.
  Status Receive(gismo::protocol::FrameHeader* h, std::vector<uint8_t>* payload) {
    Status s = gismo::protocol::RecvFrameUntil(
        fd_, gismo::protocol::DeadlineAfterMs(frame_bound_ms_), h, payload);
    if (s.ok() && recv_tags_ && !recv_tags_->Verify(h, payload)) {
      s = gismo::protocol::BadFrameTag("the manager");
    }
    return s;
  }
  // No more frames either way: the serving thread's poll wakes, and orders
  // still queued for this connection are dropped (the manager asks the
  // next connection again).
  void Break() {
    broken_.store(true, std::memory_order_relaxed);
    shutdown(fd_, SHUT_RDWR);
  }
  bool broken() const { return broken_.load(std::memory_order_relaxed); }

 private:
  const int fd_;
  const uint32_t lease_ms_;
  // A frame whose first byte has come is read whole within this bound, and
  // a send finishes within it, or the connection counts as broken (the
  // agent connects again): a manager that stops in the middle of a frame,
  // drips it, or stops reading, must not hold the agent.
  const int frame_bound_ms_;
  std::mutex send_mu_;
  std::optional<gismo::protocol::FrameTagger> send_tags_;  // under send_mu_
  std::optional<gismo::protocol::FrameTagger> recv_tags_;  // the serving thread's
  // Relaxed: a hint that saves a send or an order's work; the shutdown
  // makes any later send fail anyway.
  std::atomic<bool> broken_{false};
};

// Connects and says hello.
gismo::Result<std::shared_ptr<Link>> Join(const Options& o, const gismo::protocol::Address& addr) {
  auto fd = gismo::protocol::ConnectTo(addr, 5000);
  if (!fd.ok()) return fd.status();
  gismo::protocol::Hello hello;
  hello.role = gismo::protocol::Role::kNodeAgent;
  hello.node_id = o.node;
  hello.pid = static_cast<uint64_t>(getpid());
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  hello.host = host;
  hello.name = "gismo-agent";
  const auto me = gismo::fence::Self();
  const auto words = me.ToWords();
  std::copy(words.begin(), words.end(), hello.identity);
  // The cluster key of $GISMO_KEY_FILE, if set; an agent maps no region:
  // it is welcomed after the hello.
  auto key = gismo::protocol::KeyFromEnv();
  if (!key.ok()) {
    close(*fd);
    return key.status();
  }
  gismo::protocol::HandshakeResult result;
  if (Status s =
          gismo::protocol::Handshake(*fd, hello, *key, nullptr, addr.ToString(), 10000, &result);
      !s.ok()) {
    close(*fd);
    return s;
  }
  return std::make_shared<Link>(*fd, result.welcome.lease_ms, std::move(result.auth));
}

// The region as this node maps it: opened at the first write-back, kept.
// Write-backs run one at a time, under its mutex.
std::mutex g_region_mu;
std::unique_ptr<gismo::region::Region> g_region;

// A fenced process of a non-coherent region: its lines, written back from
// this host before the manager may recover its slot. An agent that cannot
// map the region cannot tell, and says so rather than confirm a fence that
// may be incomplete.
Status WriteBackIfNonCoherent(const Options& o, uint32_t slot) {
  std::lock_guard<std::mutex> lock(g_region_mu);
  if (g_region == nullptr) {
    auto r = gismo::region::Region::Open(o.region);
    if (!r.ok()) {
      return Status(r.status().code(),
                    "the process is gone, but the agent cannot map the region to write its "
                    "lines back (--region " +
                        o.region + "): " + r.status().message());
    }
    g_region = std::move(*r);
  }
  if (!g_region->noncoherent()) return Status();
  if (slot == 0 || slot >= g_region->max_clients()) {
    return Status(GISMO_ERR_INVALID_ARGUMENT, "a fence order for client slot " +
                                                  std::to_string(slot) + ", which " + o.region +
                                                  " does not have");
  }
  gismo::region::HwLines lines;
  const gismo::region::NcWriteBack wb = NcWriteBackDeadClient(lines, *g_region, slot);
  if (wb.busy != 0) {
    return Status(GISMO_ERR_BUSY, std::to_string(wb.busy) +
                                      " records kept changing while the fenced process's "
                                      "lines were written back; ask again");
  }
  Log("wrote back client slot %s's lines (%s)", std::to_string(slot),
      std::to_string(wb.bytes) + " bytes, " + std::to_string(wb.unsealed) + " unsealed objects");
  return Status();
}

// How long a probe waits for the process to be seen gone.
constexpr int kProbeWaitMs = 100;

// Carries out a fence order: proves its process gone (a probe only looks; a
// fence kills it if it still runs), then writes back its lines in a
// non-coherent region. The result to send back.
gismo::protocol::FenceProcessResult CarryOut(const Options& o,
                                             const gismo::protocol::FenceProcessOrder& order) {
  gismo::protocol::FenceProcessResult res;
  res.slot = order.slot;
  res.session = order.session;
  const auto who = gismo::fence::ProcessIdentity::FromWords(order.identity);
  if (order.probe_only) {
    // A probe asks whether a client whose connection closed has exited: its
    // exit closes the connection, then makes it a zombie within
    // milliseconds.
    if (!gismo::fence::ProvenGone(who, kProbeWaitMs)) {
      res.status = Status(GISMO_ERR_BUSY, who.ToString() + " still runs");
      Log("asked whether %s is gone: it still runs", who.ToString());
    }
  } else if (auto f = gismo::fence::FenceProcess(who, o.region, o.kill_timeout_ms); f.ok()) {
    res.killed = *f == gismo::fence::FenceOutcome::kKilled;
    Log("%s: %s", who.ToString(), res.killed ? "killed, and seen to exit" : "already gone");
  } else {
    res.status = f.status();
    Log("cannot fence %s: %s", who.ToString(), f.status().message());
  }
  if (res.status.ok()) {
    res.status = WriteBackIfNonCoherent(o, order.slot);
    if (!res.status.ok()) Log("%s: %s", who.ToString(), res.status.message());
  }
  return res;
}

// An order received, waiting for a worker.
struct QueuedOrder {
  std::shared_ptr<Link> link;
  uint64_t request_id = 0;
  gismo::protocol::FenceProcessOrder order;
};

// Orders are carried out by kWorkers threads at once, fence orders before
// probes (each kind in the order received): a kill may take
// --kill-timeout-ms and a probe of a live process kProbeWaitMs, and a fence
// order queued behind them past the manager's --agent-timeout-ms made it
// fence the whole node.
class Workers {
 public:
  static constexpr int kWorkers = 8;

  explicit Workers(const Options& o) : o_(o) {
    for (int i = 0; i < kWorkers; ++i) {
      threads_.push_back(
          gismo::StartBackgroundThread<std::jthread>([this](std::stop_token stop) { Work(stop); }));
    }
  }
  ~Workers() {
    for (auto& t : threads_) t.request_stop();
    cv_.notify_all();
  }

  void Push(QueuedOrder q) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      (q.order.probe_only ? probes_ : fences_).push_back(std::move(q));
    }
    cv_.notify_one();
  }

 private:
  void Work(std::stop_token stop) {
    for (;;) {
      QueuedOrder q;
      {
        std::unique_lock<std::mutex> lock(mu_);
        if (!cv_.wait(lock, stop, [&] { return !fences_.empty() || !probes_.empty(); })) return;
        auto& from = fences_.empty() ? probes_ : fences_;
        q = std::move(from.front());
        from.pop_front();
      }
      // The connection broke while it waited: the manager asks the next one.
      if (q.link->broken()) continue;
      const gismo::protocol::FenceProcessResult res = CarryOut(o_, q.order);
      (void)q.link->Send(gismo::protocol::EncodeFenceProcessResult(q.request_id, res));
    }
  }

  const Options& o_;
  std::mutex mu_;
  std::condition_variable_any cv_;
  std::deque<QueuedOrder> fences_;  // under mu_
  std::deque<QueuedOrder> probes_;  // under mu_
  std::vector<std::jthread> threads_;
};

// Serves one connection until it fails: heartbeats, and hands each order
// to the workers.
Status Serve(const std::shared_ptr<Link>& link, Workers& workers) {
  const uint32_t lease_ms = link->lease_ms();
  const int beat_ms = lease_ms > 0 ? std::max<int>(50, static_cast<int>(lease_ms) / 4) : 1000;
  uint64_t last_beat = gismo::MonotonicNs();
  std::vector<uint8_t> payload;
  while (!g_stop) {
    const uint64_t since = (gismo::MonotonicNs() - last_beat) / 1'000'000;
    const int wait = since >= uint64_t(beat_ms) ? 0 : beat_ms - static_cast<int>(since);
    pollfd p{link->fd(), POLLIN, 0};
    const int rc = poll(&p, 1, wait);
    if (rc < 0 && errno == EINTR) continue;
    if ((gismo::MonotonicNs() - last_beat) / 1'000'000 >= uint64_t(beat_ms)) {
      if (Status s = link->Send(gismo::protocol::Writer().Frame(MsgType::kHeartbeat, 0)); !s.ok()) {
        return s;
      }
      last_beat = gismo::MonotonicNs();
    }
    if (rc <= 0) continue;
    gismo::protocol::FrameHeader h;
    if (Status s = link->Receive(&h, &payload); !s.ok()) return s;
    gismo::protocol::Reader rd(payload);
    if (h.type == MsgType::kError) return gismo::protocol::DecodeError(rd);
    if (h.type != MsgType::kFenceProcess) continue;
    QueuedOrder q;
    q.link = link;
    q.request_id = h.request_id;
    if (!gismo::protocol::DecodeFenceProcessOrder(rd, &q.order)) {
      gismo::protocol::FenceProcessResult res;
      res.status = Status(GISMO_ERR_PROTOCOL, "malformed fence order");
      if (Status s = link->Send(gismo::protocol::EncodeFenceProcessResult(h.request_id, res));
          !s.ok()) {
        return s;
      }
      continue;
    }
    workers.Push(std::move(q));
  }
  return Status();
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (const char* a = getenv("GISMO_ADDRESS"); a && *a) o.manager = a;
  if (const char* r = getenv("GISMO_REGION"); r && *r) o.region = r;
  CLI::App app{
      "gismo-agent: the fencing agent of one node. The manager asks it to prove a suspected\n"
      "client of this node gone (killing it if it still runs) before it recovers the client.\n"
      "Run one per node, in the PID namespace of the node's clients."};
  app.add_option("--manager", o.manager, "Manager address (default $GISMO_ADDRESS)")
      ->capture_default_str();
  app.add_option("--node", o.node, "This node's id (as its clients' GISMO_NODE)")->required();
  app.add_option("--region", o.region,
                 "The region as this node sees it (default $GISMO_REGION); a process is only "
                 "killed if it maps it")
      ->capture_default_str();
  app.add_option("--kill-timeout-ms", o.kill_timeout_ms,
                 "How long to wait for a killed process to exit (at most an hour)")
      ->capture_default_str()
      ->check(CLI::Range(0, 3'600'000));
  GISMO_PARSE_ARGS(app, argc, argv);
  if (o.manager.empty()) {
    auto def = gismo::protocol::DefaultAddress(/*create=*/false);
    if (!def.ok()) {
      fprintf(stderr, "gismo-agent: %s\n", def.status().message().c_str());
      return 2;
    }
    o.manager = *def;
  }
  auto addr = gismo::protocol::ParseAddress(o.manager);
  if (!addr.ok()) {
    fprintf(stderr, "gismo-agent: %s\n", addr.status().message().c_str());
    return 2;
  }
  // Every fence order needs the region (a process is killed only if it maps
  // it): an agent that could carry out none says so now, not at the first
  // order, when a suspected client waits for it.
  struct stat region_stat {};
  if (o.region.empty()) {
    fprintf(stderr,
            "gismo-agent: no region: give --region PATH (the region as this node maps it) or "
            "set GISMO_REGION\n");
    return 2;
  }
  if (stat(o.region.c_str(), &region_stat) != 0) {
    fprintf(stderr, "gismo-agent: --region %s: %s (the region as this node maps it)\n",
            o.region.c_str(), strerror(errno));
    return 2;
  }
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  bool ready = false;
  uint32_t backoff_ms = 20;
  // A manager it cannot reach is said at the first failure, then once a
  // minute while it lasts: never a silent retry loop (a mistyped address).
  constexpr uint64_t kUnreachableLogNs = 60'000'000'000;
  uint64_t unreachable_logged_ns = 0;
  bool unreachable = false;
  Workers workers(o);
  while (!g_stop) {
    auto link = Join(o, *addr);
    if (!link.ok()) {
      if (!ready && (link.status().code() == GISMO_ERR_PROTOCOL ||
                     link.status().code() == GISMO_ERR_PERMISSION ||
                     link.status().code() == GISMO_ERR_INVALID_ARGUMENT ||
                     link.status().code() == GISMO_ERR_UNSUPPORTED)) {
        fprintf(stderr, "gismo-agent: %s\n", link.status().message().c_str());
        return 1;
      }
      const uint64_t now = gismo::MonotonicNs();
      if (!unreachable || now - unreachable_logged_ns >= kUnreachableLogNs) {
        Log("cannot reach the manager at %s (%s); retrying", o.manager, link.status().message());
        unreachable_logged_ns = now;
      }
      unreachable = true;
      usleep(backoff_ms * 1000);
      backoff_ms = std::min<uint32_t>(backoff_ms * 2, 1000);
      continue;
    }
    backoff_ms = 20;
    if (unreachable) Log("reached the manager at %s", o.manager);
    unreachable = false;
    if (!ready) {
      ready = true;
      printf("gismo-agent ready: node=%u manager=%s pid=%d\n", o.node, o.manager.c_str(), getpid());
      fflush(stdout);
    }
    Status s = Serve(*link, workers);
    // Workers still carrying out its orders hold the connection until they
    // are done; their answers are dropped.
    (*link)->Break();
    if (!g_stop) Log("lost the manager (%s); reconnecting", s.message());
  }
  // A worker may be in a kill's wait (up to --kill-timeout-ms): the agent
  // does not wait for it. Nothing is left to clean up: its connection and
  // the region's mapping end with the process.
  fflush(stdout);
  fflush(stderr);
  std::_Exit(0);
}
