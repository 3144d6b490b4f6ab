// Test helpers: a real gismo-manager process on a private region and socket.
#ifndef GISMO_TESTS_TEST_UTIL_H_
#define GISMO_TESTS_TEST_UTIL_H_

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace gismo::testing {

// A unique name for this test process (regions and sockets of parallel tests
// must not collide).
inline std::string UniqueName(const std::string& tag) {
  static int counter = 0;
  return "gismo-test-" + tag + "-" + std::to_string(getpid()) + "-" + std::to_string(++counter);
}

// Starts gismo-manager and waits for its ready line (no sleeps). Stops it
// (SIGTERM, then SIGKILL) and removes the region when destroyed.
class ManagerProcess {
 public:
  explicit ManagerProcess(std::vector<std::string> extra_args = {}, std::string size = "256MiB",
                          std::string region = {}, bool keep_region = false)
      : keep_region_(keep_region) {
    name_ = UniqueName("mgr");
    region_ = region.empty() ? "/dev/shm/" + name_ : region;
    socket_ = "/tmp/" + name_ + ".sock";
    args_ = {GISMO_MANAGER_BIN, "--region",        region_,       "--size", size,
             "--listen",        "unix:" + socket_, "--log-level", "warn"};
    for (auto& a : extra_args) args_.push_back(a);
    Start();
  }
  ~ManagerProcess() {
    Stop();
    if (!keep_region_) unlink(region_.c_str());
    unlink(socket_.c_str());
  }

  void Start() {
    int fds[2];
    ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
    pid_ = fork();
    ASSERT_GE(pid_, 0);
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlives a test that dies
      dup2(fds[1], STDOUT_FILENO);
      std::vector<char*> argv;
      for (auto& a : args_) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(fds[1]);
    // Wait for the ready line, bounded by the manager's own exit.
    FILE* f = fdopen(fds[0], "r");
    char line[1024];
    ready_line_.clear();
    while (fgets(line, sizeof line, f)) {
      ready_line_ = line;
      if (ready_line_.find("gismo-manager ready") != std::string::npos) break;
    }
    fclose(f);
    ASSERT_NE(ready_line_.find("gismo-manager ready"), std::string::npos)
        << "manager did not start: " << ready_line_;
  }

  // Stops it cleanly; returns its exit status.
  int Stop(int sig = SIGTERM) {
    if (pid_ <= 0) return -1;
    kill(pid_, sig);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }
  void Kill() { Stop(SIGKILL); }

  const std::string& region() const { return region_; }
  std::string address() const { return "unix:" + socket_; }
  const std::string& ready_line() const { return ready_line_; }
  pid_t pid() const { return pid_; }

 private:
  std::vector<std::string> args_;
  std::string name_, region_, socket_, ready_line_;
  pid_t pid_ = -1;
  bool keep_region_;
};

// Runs fn in a forked child; returns its exit status (wait status).
template <typename Fn>
int RunInChild(Fn&& fn) {
  pid_t pid = fork();
  if (pid == 0) {
    int rc = 1;
    try {
      rc = fn();
    } catch (...) {
      rc = 3;
    }
    _exit(rc);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

}  // namespace gismo::testing

#endif  // GISMO_TESTS_TEST_UTIL_H_
