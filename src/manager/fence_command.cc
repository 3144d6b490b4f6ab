#include "manager/fence_command.h"

#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/clock.h"

namespace gismo::manager {

namespace {
// The command runs in a process group of its own, with nothing open but
// stdin, stdout and stderr: a fence action that hangs (or leaves a child
// behind) must not keep the manager's listening sockets and client
// connections open (a restarted manager could not bind them, and clients
// it closed would see no end), and its whole group is killed at the
// deadline, not only the shell.
pid_t Spawn(const std::string& command, uint32_t node) {
  const std::string line = command + " " + std::to_string(node);
  pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    close_range(3, ~0u, 0);
    signal(SIGCHLD, SIG_DFL);
    execl("/bin/sh", "sh", "-c", line.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  if (pid > 0) setpgid(pid, pid);  // also here: the deadline may come first
  return pid;
}

std::string Describe(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "was killed by signal " + std::to_string(WTERMSIG(status));
  return "ended oddly";
}
}  // namespace

void FenceCommand::Start(const std::string& command, uint32_t node, uint64_t timeout_ns) {
  if (state_ == State::kRunning) return;
  // One killed at its deadline that has not exited (stuck in the kernel)
  // would only be joined by another copy, and another at each retry.
  ReapKilled();
  if (!killed_.empty()) {
    state_ = State::kFailed;
    failure_ = "the fence command killed at its deadline (pid " + std::to_string(killed_.front()) +
               ") has not exited yet";
    return;
  }
  child_ = Spawn(command, node);
  if (child_ < 0) {
    state_ = State::kFailed;
    failure_ = std::string("cannot fork: ") + std::strerror(errno);
    return;
  }
  deadline_ns_ = MonotonicNs() + timeout_ns;
  state_ = State::kRunning;
}

void FenceCommand::ReapKilled() {
  std::erase_if(killed_, [](pid_t pid) {
    int status = 0;
    const pid_t r = waitpid(pid, &status, WNOHANG);
    return r == pid || (r < 0 && errno == ECHILD);
  });
}

FenceCommand::State FenceCommand::Poll() {
  ReapKilled();
  if (state_ != State::kRunning) return state_;
  int status = 0;
  const pid_t r = waitpid(child_, &status, WNOHANG);
  if (r < 0 && errno != EINTR) {
    // ECHILD: reaped by no one we know (SIGCHLD ignored); its pid may name
    // another process by now, so it is not killed.
    child_ = -1;
    state_ = State::kFailed;
    failure_ = std::string("cannot wait for the fence command: ") + std::strerror(errno);
  } else if (r == child_) {
    child_ = -1;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      state_ = State::kSucceeded;
    } else {
      state_ = State::kFailed;
      failure_ = "the fence command " + Describe(status);
    }
  } else if (MonotonicNs() >= deadline_ns_) {
    kill(-child_, SIGKILL);  // its group: the shell and what it started
    // Reaped by a later Poll, never waited for here: a fence tool in an
    // uninterruptible sleep (a hung NFS mount, an IPMI driver) ends only
    // when that does, and the manager's one thread must go on (its lease).
    killed_.push_back(child_);
    ReapKilled();
    child_ = -1;
    state_ = State::kFailed;
    failure_ = "the fence command did not finish in time";
  }
  return state_;
}

FenceCommand::~FenceCommand() {
  if (child_ > 0) {
    kill(-child_, SIGKILL);
    killed_.push_back(child_);
  }
  // Without blocking, as in Poll: one still in the kernel is left to init.
  ReapKilled();
}

bool RunFenceCommand(const std::string& command, uint32_t node, uint32_t timeout_ms,
                     std::string* failure) {
  FenceCommand c;
  c.Start(command, node, uint64_t{timeout_ms} * 1'000'000);
  for (;;) {
    switch (c.Poll()) {
      case FenceCommand::State::kSucceeded:
        return true;
      case FenceCommand::State::kFailed:
        *failure = c.failure();
        return false;
      default: {
        timespec ts{0, 10'000'000};
        nanosleep(&ts, nullptr);
      }
    }
  }
}

}  // namespace gismo::manager
