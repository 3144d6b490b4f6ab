// gismo-manager: the daemon that owns a gismo region and serves its clients.
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "args/parse_args.h"
#include "manager/manager.h"
#include "region/cache_lines.h"
#include "region/region.h"

namespace {

// Materializes every heap page of `region` (MADV_POPULATE_WRITE, Linux
// 5.14: tmpfs and hugetlbfs allocate them now, contents kept), in chunks,
// logging progress. Returns false, leaving the rest, once one of
// `stop_signals` (blocked by the caller) is pending: the madvise itself
// stops for fatal signals only, and a large region takes minutes.
bool Prefault(const gismo::region::Region& region, const sigset_t& stop_signals) {
  constexpr uint64_t kChunk = uint64_t{256} << 20;  // a multiple of any page size
  constexpr auto kProgressEvery = std::chrono::seconds(2);
  const uint64_t total = region.heap_size();
  const auto start = std::chrono::steady_clock::now();
  auto last_progress = start;
  spdlog::info("prefaulting {} of heap", gismo::region::FormatSize(total));
  for (uint64_t done = 0; done < total;) {
    sigset_t pending;
    sigpending(&pending);
    for (int sig = 1; sig < NSIG; ++sig) {
      if (sigismember(&stop_signals, sig) == 1 && sigismember(&pending, sig) == 1) {
        spdlog::info("prefault stopped by signal {} after {} of {}", sig,
                     gismo::region::FormatSize(done), gismo::region::FormatSize(total));
        return false;
      }
    }
    const uint64_t n = std::min(kChunk, total - done);
    if (madvise(region.heap() + done, n, 23 /* MADV_POPULATE_WRITE */) != 0) {
      spdlog::warn("--prefault: madvise(MADV_POPULATE_WRITE) failed after {}: {}",
                   gismo::region::FormatSize(done), strerror(errno));
      return true;
    }
    done += n;
    const auto now = std::chrono::steady_clock::now();
    if (done < total && now - last_progress >= kProgressEvery) {
      last_progress = now;
      spdlog::info("prefaulted {} of {}", gismo::region::FormatSize(done),
                   gismo::region::FormatSize(total));
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  spdlog::info("prefaulted {} of heap in {:.2f} s", gismo::region::FormatSize(total), seconds);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  // A SIGCHLD ignored by whoever started us would have the kernel reap the
  // fence command's shell: its exit status, which proves a node fenced,
  // would be lost (waitpid fails).
  signal(SIGCHLD, SIG_DFL);
  gismo::manager::ManagerOptions opt;
  std::string size_text = "1GiB";
  std::string log_level = "info";
  std::string coherence =
      gismo::region::kDefaultCoherence == gismo::region::CoherenceMode::kNonCoherent
          ? "non-coherent"
          : "coherent";
  uint64_t max_objects = 0;
  uint32_t max_clients = 0;
  uint32_t max_refs = 0;

  CLI::App app{
      "gismo-manager: owns a gismo shared-memory region and serves the clients of every node.\n"
      "It formats the region if it is new, recovers clients that die, and relays wake-ups;\n"
      "object data never passes through it."};
  app.add_option("--region", opt.region_path,
                 "Region: a file in /dev/shm, on hugetlbfs or a DAX file system, or a DAX "
                 "device (/dev/daxX.Y)")
      ->capture_default_str();
  app.add_option("--size", size_text, "Size of a new region (512MiB, 4GiB, ...)")
      ->capture_default_str();
  app.add_flag("--format", opt.force_format,
               "Format the region even if it holds a gismo region or other data (destroys it); "
               "refused while another manager serves it");
  app.add_option("--listen", opt.listen,
                 "Address to serve: unix:/path or tcp:host:port (repeatable; default "
                 "unix:/run/gismo/gismo.sock as root, else unix:$XDG_RUNTIME_DIR/gismo.sock)");
  app.add_option("--key-file", opt.key_file,
                 "Cluster key (16-4096 bytes, mode 0600): TCP peers must prove they hold it; "
                 "clients read it from $GISMO_KEY_FILE (doc/security.md)");
  std::string socket_mode = "0660", region_mode;
  app.add_option("--socket-mode", socket_mode, "Mode of the Unix sockets (octal)")
      ->capture_default_str();
  app.add_option("--region-mode", region_mode,
                 "Mode of the region file (octal; default 0660 for a region it creates, an "
                 "existing one is left as it is)");
  app.add_option("--group", opt.group,
                 "Group (name or number) of the sockets, the region and /run/gismo: its members "
                 "may connect");
  app.add_option("--admission-timeout-ms", opt.admission_timeout_ms,
                 "Time a new connection has to complete its hello and region proof, and a client's "
                 "connection may stay open after its goodbye")
      ->capture_default_str();
  app.add_option("--max-unadmitted", opt.max_unadmitted,
                 "Connections waiting for admission; beyond, the oldest is closed")
      ->capture_default_str();
  app.add_option("--max-connections", opt.max_connections,
                 "All connections (0: from the file descriptor limit, at most 4096)")
      ->capture_default_str();
  app.add_option("--max-output-bytes", opt.max_output_bytes,
                 "Bytes queued to a peer that does not read before it is disconnected (at "
                 "least 4096; a frame into an empty queue is always taken)")
      ->capture_default_str()
      ->check(CLI::Range(uint32_t{4096}, uint32_t{1} << 31));
  // At least 1: with 0 every get that waits would be refused.
  app.add_option("--max-wait-ids", opt.max_wait_ids, "Ids one client may wait for at once")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--max-total-wait-ids", opt.max_total_wait_ids,
                 "Ids all clients together may wait for at once")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--max-objects", max_objects,
                 "Object index capacity of a new region (default: one per 4 KiB of --size). "
                 "Ids hash to shards and the first full shard ends creates: expect the index "
                 "to refuse at 90-105% of this; ask 15% more than you need")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 31));
  app.add_option("--max-clients", max_clients,
                 "Client slots of a new region (default: 128, or 32 below 256 MiB)")
      ->check(CLI::Range(1u, 65534u));
  app.add_option("--max-refs-per-client", max_refs,
                 "Distinct objects one client may hold at once, a power of two (default: "
                 "4096, or 1024 below 256 MiB)");
  bool prefault = false;
  app.add_flag("--prefault", prefault,
               "Materialize every heap page of the region at start (tmpfs/hugetlbfs allocate "
               "them now, not on first write), without changing their contents");
  uint32_t events = 0;
  app.add_option("--event-capacity", events,
                 "Event ring entries of a new region, a power of two (default: 65536, or 4096 "
                 "below 256 MiB); a subscriber further behind is told it overflowed");
  uint32_t names = 0;
  app.add_option("--max-names", names,
                 "Name table capacity of a new region: names bound to objects at once "
                 "(default: 4096, or 1024 below 256 MiB)")
      ->check(CLI::Range(16u, 1u << 20));
  app.add_flag("--durable", opt.format.durable,
               "Format a durable region: on a file that outlives the host's power (a disk file "
               "system, a DAX file system or device), committed metadata and sealed data reach "
               "the medium in an order recovery relies on (slower: doc/operations.md). Refused "
               "on tmpfs, ramfs and hugetlbfs. An existing region keeps what it was formatted as");
  app.add_option(
         "--coherence", coherence,
         "Coherence of a new region: coherent (one host or CXL 3) or non-coherent (CXL 2.0: "
         "each client writes only lines of its own and this manager applies their requests; "
         "doc/noncoherent.md)")
      ->capture_default_str()
      ->check(CLI::IsMember({"coherent", "non-coherent"}));
  app.add_option("--lease-ms", opt.lease_ms,
                 "A client not heard from for this long is suspected, then fenced and recovered "
                 "(0: only a closed connection counts; else 200 to 3600000)")
      ->capture_default_str();
  app.add_option("--reattach-ms", opt.reattach_ms,
                 "A client whose connection closed keeps its slot this long to re-attach "
                 "before it is suspected (default: the lease, or 3000)");
  app.add_option("--fence-command", opt.fence_command,
                 "Fences a whole node, like STONITH: run as 'sh -c \"CMD NODE\"'; exit status 0 "
                 "means no process of NODE can touch the region again. Used for a suspected "
                 "client that neither this kernel nor its node's gismo-agent can prove gone");
  bool no_local_fence = false;
  app.add_flag("--no-local-fence", no_local_fence,
               "Never kill a suspected client of the manager's own kernel; wait for its exit, "
               "its node's agent, the fence command or an operator");
  app.add_option("--fence-timeout-ms", opt.fence_timeout_ms,
                 "Time limit of the fence command (at most 3600000)")
      ->capture_default_str();
  app.add_option("--agent-timeout-ms", opt.agent_timeout_ms,
                 "How long a node agent may take to fence a process (at most 3600000)")
      ->capture_default_str();
  app.add_option("--manager-lease-ms", opt.manager_lease_ms,
                 "A manager not beating in the region for this long may be taken over (after it "
                 "is fenced; 200 to 600000)")
      ->capture_default_str();
  app.add_flag("--previous-manager-fenced", opt.previous_manager_fenced,
               "The operator's word that the region's previous manager can never run again "
               "(when this manager cannot prove it)");
  app.add_flag("--standby", opt.standby,
               "While another manager serves the region, wait instead of refusing: take over "
               "when it stops, or once it has stopped beating for --manager-lease-ms and is "
               "fenced (the ready line comes then; SIGINT or SIGTERM stop the wait)");
  app.add_flag("--skip-host-lock", opt.skip_host_lock,
               "Do not take the same-host lock on the region file (for tests that emulate "
               "separate hosts on one kernel; the region's manager lease still holds)");
  app.add_option("--lock-wait-ms", opt.lock_wait_ms,
                 "How long a client operation waits for a busy lock before it fails with "
                 "GISMO_ERR_BUSY (default 2000, at most an hour)")
      ->check(CLI::Range(uint32_t{0}, static_cast<uint32_t>(gismo::region::kMaxLockWaitMs)));
  app.add_option("--evict-percent", opt.evict_percent,
                 "What a create that does not fit evicts at least, in percent of the heap "
                 "(evictable objects only; default 20, as Plasma)")
      ->check(CLI::Range(1, 100));
  app.add_option("--owner-threads", opt.owner_threads,
                 "Non-coherent regions: threads that apply the clients' creates, seals and "
                 "deletes; client slot s is served by thread s % N, each thread beyond the "
                 "first takes a client slot of its own (default 1)")
      ->check(CLI::Range(1u, gismo::region::kMaxOwnerThreads));
  app.add_option("--metrics", opt.metrics_address,
                 "Serve Prometheus metrics over HTTP at tcp:HOST:PORT, path /metrics (port 0: any "
                 "free port, shown in the ready line; default: off)");
  app.add_option("--node", opt.node_id, "Node id of the manager's own node")->capture_default_str();
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, off")
      ->capture_default_str()
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  GISMO_PARSE_ARGS(app, argc, argv);

  auto logger = spdlog::stderr_color_mt("gismo-manager");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ gismo-manager: %v");
  spdlog::set_level(spdlog::level::from_str(log_level));

  opt.local_fence = !no_local_fence;
  auto parse_mode = [](const std::string& text, const char* flag) -> int32_t {
    char* end = nullptr;
    const unsigned long v = strtoul(text.c_str(), &end, 8);
    if (text.empty() || *end != '\0' || v > 07777) {
      fprintf(stderr, "gismo-manager: %s: '%s' is not an octal mode (e.g. 0660)\n", flag,
              text.c_str());
      return -1;
    }
    return static_cast<int32_t>(v);
  };
  const int32_t sm = parse_mode(socket_mode, "--socket-mode");
  if (sm < 0) return 2;
  opt.socket_mode = static_cast<uint32_t>(sm);
  if (!region_mode.empty()) {
    opt.region_mode = parse_mode(region_mode, "--region-mode");
    if (opt.region_mode < 0) return 2;
  }
  auto size = gismo::region::ParseSize(size_text);
  if (!size.ok()) {
    fprintf(stderr, "gismo-manager: --size: %s\n", size.status().message().c_str());
    return 2;
  }
  opt.format.size = *size;
  opt.format.max_objects = max_objects;
  opt.format.max_clients = max_clients ? max_clients + 1 : 0;
  opt.format.held_capacity = max_refs;
  opt.format.event_capacity = events;
  opt.format.max_names = names;
  if (coherence == "non-coherent") {
    // Formatted and served only where the mode's flushes and invalidations
    // exist (region::NonCoherentRefusal).
    if (!gismo::region::NonCoherentSupported()) {
      fprintf(stderr,
              "gismo-manager: --coherence non-coherent: this build has no cache-line flush and "
              "invalidate for this CPU (x86-64 only)\n");
      return 2;
    }
    opt.format.coherence = gismo::region::CoherenceMode::kNonCoherent;
  } else {
    opt.format.coherence = gismo::region::CoherenceMode::kCoherent;
  }

  gismo::manager::Manager manager(opt);
  // A value no region or address can take is a usage error, like one CLI11
  // refuses (--event-capacity 3, --listen bogus:x).
  if (gismo::Status bad = manager.CheckOptions(); !bad.ok()) {
    fprintf(stderr, "gismo-manager: %s\n", bad.message().c_str());
    return 2;
  }
  gismo::Status s = manager.Start();
  if (!s.ok()) {
    fprintf(stderr, "gismo-manager: %s\n", s.message().c_str());
    return 1;
  }
  // From here a SIGINT or SIGTERM stops the manager cleanly (its socket
  // removed, its lease given back), the prefault included: the signals wait
  // blocked until Run, and the prefault looks for them between chunks.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  manager.CatchSignals();
  const bool stopping = prefault && !Prefault(manager.region(), stop_signals);
  pthread_sigmask(SIG_UNBLOCK, &stop_signals, nullptr);
  std::string listen;
  for (const auto& a : manager.listen_addresses()) listen += (listen.empty() ? "" : ",") + a;
  std::string metrics;
  if (!manager.metrics_address().empty()) metrics = " metrics=" + manager.metrics_address();
  const auto& sb = manager.region().fixed();
  // The one ready line scripts wait for (none when a signal came first: Run
  // then stops at once).
  if (!stopping) {
    printf("gismo-manager ready: region=%s size=%s heap=%s listen=%s%s pid=%d\n",
           opt.region_path.c_str(), gismo::region::FormatSize(sb.region_size).c_str(),
           gismo::region::FormatSize(sb.heap_size).c_str(), listen.c_str(), metrics.c_str(),
           getpid());
    fflush(stdout);
  }
  manager.Run();
  if (manager.superseded()) {
    spdlog::critical("stopped: another manager took over the region");
    return 3;
  }
  spdlog::info("stopped");
  return 0;
}
