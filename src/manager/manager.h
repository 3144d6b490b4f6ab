// The manager daemon's core: owns the region's format, registers clients,
// notices when they go (connection closed or lease expired) and recovers
// them, and relays seal/delete wake-ups to waiting clients. It is not on the
// data path: object operations never wait for it.
#ifndef GISMO_MANAGER_MANAGER_H_
#define GISMO_MANAGER_MANAGER_H_

#include <atomic>
#include <cstdint>
#include <gismo/gismo.hpp>
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
};

// Counters the manager keeps (exported by `gismo status` and metrics).
struct ManagerStats {
  std::atomic<uint64_t> clients_joined{0};
  std::atomic<uint64_t> clients_left{0};
  std::atomic<uint64_t> clients_recovered{0};  // died or lease expired
  std::atomic<uint64_t> leases_expired{0};
  std::atomic<uint64_t> wakeups_sent{0};
  std::atomic<uint64_t> recovery_ns_total{0};
};

class Manager {
 public:
  explicit Manager(ManagerOptions options);
  ~Manager();

  // Opens or formats the region, recovers what a previous manager left,
  // and starts listening. After OK, Run() serves clients.
  Status Start();
  // Serves until Stop() or SIGINT/SIGTERM (if handle_signals).
  void Run(bool handle_signals = true);
  // Thread-safe.
  void Stop();

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
