// The manager daemon's core: owns the region's format, registers clients,
// notices when they go (connection closed or lease expired) and recovers
// them, and relays seal/delete wake-ups to waiting clients. It is not on the
// data path: object operations never wait for it.
#ifndef GISMO_MANAGER_MANAGER_H_
#define GISMO_MANAGER_MANAGER_H_

#include <atomic>
#include <cstdint>
#include <gismo/status.hpp>
#include <memory>
#include <string>
#include <vector>

#include "region/region.h"

namespace gismo::manager {

struct ManagerOptions {
  std::string region_path = "/dev/shm/gismo";
  region::FormatOptions format;
  bool force_format = false;
  std::vector<std::string> listen;  // empty: the default unix socket
  uint32_t lease_ms = 10000;        // 0: connection close only
  uint32_t node_id = 0;             // the manager's own node
  std::string metrics_address;      // tcp:HOST:PORT for Prometheus; empty: off

  // --- failure model (doc/failure.md) ---
  // A client whose connection closed keeps its slot this long, waiting for
  // it to re-attach, before it is suspected (0: the lease, or 3 s).
  uint32_t reattach_ms = 0;
  // Kill a suspected client that runs on the manager's own kernel (and PID
  // namespace), proven through a pidfd. Off: wait for it to exit, an agent,
  // the fence command or an operator.
  bool local_fence = true;
  // Fences a whole node: run as `sh -c 'CMD NODE'`, exit 0 = fenced.
  std::string fence_command;
  uint32_t fence_timeout_ms = 30000;
  // How long an agent may take to fence a process before other means.
  uint32_t agent_timeout_ms = 5000;
  // The superblock lease: a silent manager is given this long.
  uint32_t manager_lease_ms = 3000;
  // The operator's word that the region's previous manager can never run
  // again (when it cannot be proven from here).
  bool previous_manager_fenced = false;
  // Stand by while another manager serves the region: wait (instead of
  // refusing) until it stops, or stops beating and is fenced, then take over.
  bool standby = false;
  // Skip the same-host flock (tests that emulate hosts on one kernel).
  bool skip_host_lock = false;
  // How long client operations wait for a busy lock (0: 2 s).
  uint32_t lock_wait_ms = 0;
  // What a create that does not fit evicts at least, in percent of the heap
  // (0: 20).
  uint32_t evict_percent = 0;
  // Non-coherent regions: how many threads apply the clients' requests
  // (1..7, doc/noncoherent.md 9.3); thread k serves the client slots s with
  // s % owner_threads == k, each beyond the first in a client slot of its
  // own (so owner_threads - 1 fewer clients fit).
  uint32_t owner_threads = 1;

  // --- access (doc/security.md) ---
  // The cluster key: TCP peers must prove they hold it (empty: TCP is open
  // to anyone who reaches it; the manager warns).
  std::string key_file;
  // Unix sockets: mode, and group (name or number; empty: the manager's).
  uint32_t socket_mode = 0660;
  std::string group;
  // The region file: mode given to a region the manager creates, and to an
  // existing one when set explicitly (-1: 0660 when created, else untouched).
  int32_t region_mode = -1;

  // --- what a peer can make the manager hold (doc/security.md) ---
  // From accept to welcome (challenge, hello, region proof); also from a
  // client's goodbye to the close of its connection.
  uint32_t admission_timeout_ms = 5000;
  // Connections not admitted yet; beyond, the oldest is closed.
  uint32_t max_unadmitted = 64;
  // All connections (0: from the descriptor limit, at most 4096).
  uint32_t max_connections = 0;
  // Frames queued to one peer that does not read; beyond, it is disconnected.
  uint32_t max_output_bytes = 1u << 20;
  // Ids one client may wait for at once, and all clients together.
  // (About 200 bytes of manager memory each.)
  uint32_t max_wait_ids = 1u << 16;
  uint32_t max_total_wait_ids = 1u << 19;
};

// Counters the manager keeps (exported by `gismo status` and metrics). The
// io thread counts (IncrementRelaxed), the metrics exporter and tests read
// (LoadRelaxed): each counter is a value of its own, ordered with nothing.
struct ManagerStats {
  std::atomic<uint64_t> clients_joined{0};
  std::atomic<uint64_t> clients_left{0};
  std::atomic<uint64_t> clients_recovered{0};  // fenced, then recovered
  std::atomic<uint64_t> clients_suspected{0};  // lease expired, or gone without re-attaching
  std::atomic<uint64_t> clients_reattached{0};
  std::atomic<uint64_t> clients_fenced{0};
  std::atomic<uint64_t> nodes_fenced{0};  // by the fence command or an operator
  std::atomic<uint64_t> leases_expired{0};
  std::atomic<uint64_t> wakeups_sent{0};
  std::atomic<uint64_t> recovery_ns_total{0};
  // Peers turned away: no key or a wrong one, no region proof, too slow to
  // be admitted, too many waiting for admission, not reading their
  // connection, over a limit.
  std::atomic<uint64_t> peers_refused{0};
  std::atomic<uint64_t> admission_timeouts{0};
  std::atomic<uint64_t> output_overflows{0};
  // Keyed connections closed at a frame whose tag was missing or wrong
  // (protocol/frame_auth.h): forged, or changed on the way.
  std::atomic<uint64_t> bad_frame_tags{0};
  std::atomic<uint64_t> accept_errors{0};  // e.g. out of descriptors
  std::atomic<uint64_t> connections{0};    // open now
};

class Manager {
 public:
  explicit Manager(ManagerOptions options);
  ~Manager();

  // INVALID_ARGUMENT for options no region or address can take (a listen
  // address that does not parse or is given twice, format options for a
  // region it would format that cannot make one), found before anything is
  // touched. Start checks them first too.
  Status CheckOptions() const;
  // Opens or formats the region, recovers what a previous manager left,
  // and starts listening. After OK, Run() serves clients.
  Status Start();
  // From now on SIGINT and SIGTERM stop the manager cleanly once Run()
  // serves (a signal that comes earlier waits for it). Call before telling
  // anyone the manager is ready: until then they would kill it uncleanly.
  void CatchSignals();
  // Serves until Stop() or SIGINT/SIGTERM (if handle_signals: catches them,
  // as CatchSignals).
  void Run(bool handle_signals = true);
  // Thread-safe.
  void Stop();
  // True once another manager has taken the region's lease from this one
  // (it stopped serving at once).
  bool superseded() const;

  // The addresses actually bound (a tcp port 0 resolved).
  std::vector<std::string> listen_addresses() const;
  // The metrics address actually bound ("" when metrics are off).
  std::string metrics_address() const;
  const region::Region& region() const;
  const ManagerStats& stats() const;

  class Impl;  // public so that its helper classes can name it

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace gismo::manager

#endif  // GISMO_MANAGER_MANAGER_H_
