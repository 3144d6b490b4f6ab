// A manager inside the test process, for unit tests of the store and the
// client (in the manner of iceoryx's RouDi environment): a
// gismo::manager::Manager on a private region and socket, served by a thread
// of its own. Clients of the same process connect to address() as to any
// manager; no gismo-manager binary is needed. Tests whose clients live in
// other processes, or that kill the manager, use ManagerProcess instead.
//
// Threads: Start(), the accessors and the destructor belong to the thread
// that owns the InProcessManager; the serving thread runs Manager::Run and
// touches nothing else. stats() are atomics, safe to read at any time.
#ifndef GISMO_TESTING_IN_PROCESS_MANAGER_H_
#define GISMO_TESTING_IN_PROCESS_MANAGER_H_

#include <gismo/gismo.hpp>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "manager/manager.h"

namespace gismo::testing {

// Options like those gismo-manager gets from its command line by default,
// on a private region (/dev/shm) and Unix socket (/tmp), with a region of
// `region_size` bytes; but never a local fence (gismo-manager
// --no-local-fence), since every local client is the test process itself.
manager::ManagerOptions InProcessManagerOptions(uint64_t region_size = 256ull << 20);

class InProcessManager {
 public:
  explicit InProcessManager(manager::ManagerOptions options = InProcessManagerOptions());
  // Stops the manager, joins its thread, removes its region and socket.
  ~InProcessManager();
  InProcessManager(const InProcessManager&) = delete;
  InProcessManager& operator=(const InProcessManager&) = delete;

  // Opens or formats the region, listens, and starts serving on a thread of
  // its own. The status of Manager::Start.
  Status Start();
  // Stops serving and joins the thread (clients see their connection
  // close); the region stays, and a new InProcessManager may open it.
  void Stop();

  const std::string& address() const { return address_; }
  std::vector<std::string> listen_addresses() const { return manager_->listen_addresses(); }
  const std::string& region_path() const { return options_.region_path; }
  const manager::ManagerStats& stats() const { return manager_->stats(); }

 private:
  manager::ManagerOptions options_;
  std::unique_ptr<manager::Manager> manager_;
  std::thread serving_;
  std::string address_;
};

}  // namespace gismo::testing

#endif  // GISMO_TESTING_IN_PROCESS_MANAGER_H_
