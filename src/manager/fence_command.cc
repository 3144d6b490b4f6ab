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
pid_t Spawn(const std::string& command, uint32_t node) {
  const std::string line = command + " " + std::to_string(node);
  pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", line.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
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
  child_ = Spawn(command, node);
  if (child_ < 0) {
    state_ = State::kFailed;
    failure_ = std::string("cannot fork: ") + std::strerror(errno);
    return;
  }
  deadline_ns_ = MonotonicNs() + timeout_ns;
  state_ = State::kRunning;
}

FenceCommand::State FenceCommand::Poll() {
  if (state_ != State::kRunning) return state_;
  int status = 0;
  const pid_t r = waitpid(child_, &status, WNOHANG);
  if (r == child_) {
    child_ = -1;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      state_ = State::kSucceeded;
    } else {
      state_ = State::kFailed;
      failure_ = "the fence command " + Describe(status);
    }
  } else if (MonotonicNs() >= deadline_ns_) {
    kill(child_, SIGKILL);
    waitpid(child_, &status, 0);
    child_ = -1;
    state_ = State::kFailed;
    failure_ = "the fence command did not finish in time";
  }
  return state_;
}

FenceCommand::~FenceCommand() {
  if (child_ > 0) {
    kill(child_, SIGKILL);
    waitpid(child_, nullptr, 0);
  }
}

bool RunFenceCommand(const std::string& command, uint32_t node, int timeout_ms,
                     std::string* failure) {
  FenceCommand c;
  c.Start(command, node, uint64_t(timeout_ms) * 1'000'000);
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
