// A gismo-manager process on a private region and socket, for tests,
// benchmarks and gismo-torture: started, waited for (its ready line, never a
// sleep), stopped or killed, restarted on the same region. Never installed.
#ifndef GISMO_TESTING_MANAGER_PROCESS_H_
#define GISMO_TESTING_MANAGER_PROCESS_H_

#include <signal.h>

#include <string>
#include <vector>

#include "testing/process.h"

namespace gismo::testing {

struct ManagerProcessOptions {
  std::string binary;  // the gismo-manager to run (a path, or a name in PATH)
  std::string region;  // default: /dev/shm/<unique name>
  std::string size = "256MiB";
  // Default: one Unix socket, /tmp/<unique name>.sock.
  std::vector<std::string> listen;
  std::vector<std::string> extra_args;  // passed as they are (--format, --lease-ms ...)
  std::vector<std::string> env;         // "NAME=value" set in its environment (each Start)
  std::string log_level = "warn";
  std::string stderr_path;   // appended to; default: inherited
  bool keep_region = false;  // else the region file is removed on destruction
  bool new_process_group = false;
  int parent_death_signal = SIGKILL;  // 0: the manager may outlive its starter
  double ready_timeout_s = 60;
};

class ManagerProcess {
 public:
  ManagerProcess() = default;
  explicit ManagerProcess(ManagerProcessOptions options);
  ManagerProcess(ManagerProcess&& other) noexcept;
  ManagerProcess& operator=(ManagerProcess&& other) noexcept;
  // Stops the manager (SIGTERM) and removes its socket and, unless kept,
  // its region.
  ~ManagerProcess();

  // Starts the manager (again, after Stop or Kill: on the same region) and
  // waits for its ready line; false, with error(), if it did not start.
  bool Start();
  // Sends `sig` and reaps the manager; its wait status, -1 if not running.
  int Stop(int sig = SIGTERM);
  int Kill() { return Stop(SIGKILL); }
  // Sends SIGTERM and waits at most timeout_s; false if the manager had to
  // be killed (SIGKILL) after that. *wait_status receives its wait status.
  bool StopWithin(double timeout_s, int* wait_status = nullptr);

  bool running() const { return process_.running(); }
  pid_t pid() const { return process_.pid(); }
  const std::string& region() const { return options_.region; }
  // The first address it listens on.
  const std::string& address() const { return options_.listen.front(); }
  // "gismo-manager ready: ..." (without the newline); it names every
  // address bound, the metrics address and the pid.
  const std::string& ready_line() const { return ready_line_; }
  // The value of `key=` in the ready line ("" if absent).
  std::string ReadyField(const std::string& key) const;
  const std::string& error() const { return error_; }

 private:
  void Cleanup();

  ManagerProcessOptions options_;
  std::string socket_path_;  // the default socket, removed on destruction
  Process process_;
  std::string ready_line_, error_;
  bool owns_files_ = false;  // false once moved from
};

}  // namespace gismo::testing

#endif  // GISMO_TESTING_MANAGER_PROCESS_H_
