#include "testing/manager_process.h"

#include <unistd.h>

#include <utility>

namespace gismo::testing {

ManagerProcess::ManagerProcess(ManagerProcessOptions options) : options_(std::move(options)) {
  const std::string name = UniqueName("mgr");
  if (options_.region.empty()) options_.region = FreshPath("/dev/shm/" + name);
  if (options_.listen.empty()) {
    socket_path_ = FreshPath("/tmp/" + name + ".sock");
    options_.listen.push_back("unix:" + socket_path_);
  }
  owns_files_ = true;
}

ManagerProcess::ManagerProcess(ManagerProcess&& other) noexcept { *this = std::move(other); }

ManagerProcess& ManagerProcess::operator=(ManagerProcess&& other) noexcept {
  if (this != &other) {
    Cleanup();
    options_ = std::move(other.options_);
    socket_path_ = std::move(other.socket_path_);
    process_ = std::move(other.process_);
    ready_line_ = std::move(other.ready_line_);
    error_ = std::move(other.error_);
    owns_files_ = std::exchange(other.owns_files_, false);
  }
  return *this;
}

ManagerProcess::~ManagerProcess() { Cleanup(); }

void ManagerProcess::Cleanup() {
  Stop(SIGTERM);
  if (!owns_files_) return;
  owns_files_ = false;
  if (!options_.keep_region) unlink(options_.region.c_str());
  if (!socket_path_.empty()) unlink(socket_path_.c_str());
}

bool ManagerProcess::Start() {
  Stop(SIGKILL);
  SpawnOptions spawn;
  spawn.argv = {options_.binary, "--region", options_.region, "--size", options_.size};
  for (const auto& a : options_.listen) spawn.argv.insert(spawn.argv.end(), {"--listen", a});
  spawn.argv.insert(spawn.argv.end(), {"--log-level", options_.log_level});
  spawn.argv.insert(spawn.argv.end(), options_.extra_args.begin(), options_.extra_args.end());
  spawn.env = options_.env;
  spawn.capture_stdout = true;
  spawn.stderr_path = options_.stderr_path;
  spawn.append_stderr = true;
  spawn.new_process_group = options_.new_process_group;
  spawn.parent_death_signal = options_.parent_death_signal;
  ready_line_.clear();
  error_.clear();
  if (!process_.Start(spawn)) {
    error_ = process_.error();
    return false;
  }
  if (!process_.ReadLineContaining("gismo-manager ready", options_.ready_timeout_s, &ready_line_)) {
    error_ = options_.binary + " did not start: " + process_.error();
    if (!process_.output().empty()) error_ += "; it printed: " + process_.output();
    process_.KillAndWait(SIGKILL);
    return false;
  }
  // The manager prints nothing more on stdout.
  process_.CloseStdout();
  return true;
}

int ManagerProcess::Stop(int sig) { return process_.KillAndWait(sig); }

bool ManagerProcess::StopWithin(double timeout_s, int* wait_status) {
  if (!process_.running()) return true;
  process_.Signal(SIGTERM);
  if (process_.WaitForExit(timeout_s, wait_status)) return true;
  int status = process_.KillAndWait(SIGKILL);
  if (wait_status) *wait_status = status;
  return false;
}

std::string ManagerProcess::ReadyField(const std::string& key) const {
  size_t p = ready_line_.find(" " + key + "=");
  if (p == std::string::npos) return {};
  p += key.size() + 2;
  return ready_line_.substr(p, ready_line_.find(' ', p) - p);
}

}  // namespace gismo::testing
