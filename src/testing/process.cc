#include "testing/process.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <set>
#include <utility>

#include "common/clock.h"

extern char** environ;

namespace gismo::testing {

namespace {

// Milliseconds left until `deadline` for poll(): -1 (no limit) when the
// deadline is negative, else at least 0.
int MsLeft(double deadline) {
  if (deadline < 0) return -1;
  double left = (deadline - MonotonicS()) * 1000;
  return left <= 0 ? 0 : static_cast<int>(left) + 1;
}

double DeadlineAfter(double timeout_s) { return timeout_s < 0 ? -1 : MonotonicS() + timeout_s; }

bool Expired(double deadline) { return deadline >= 0 && MonotonicS() >= deadline; }

std::string NameOf(const std::string& entry) { return entry.substr(0, entry.find('=')); }

// The child's environment: ours, less `unset` and the names `set` gives,
// plus `set`.
std::vector<std::string> ChildEnvironment(const std::vector<std::string>& set,
                                          const std::vector<std::string>& unset) {
  std::set<std::string> dropped(unset.begin(), unset.end());
  for (const auto& e : set) dropped.insert(NameOf(e));
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    if (!dropped.count(NameOf(*e))) env.emplace_back(*e);
  }
  env.insert(env.end(), set.begin(), set.end());
  return env;
}

std::vector<char*> CStrings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// In the child, between fork and exec: only async-signal-safe calls.
[[noreturn]] void ExecChild(const SpawnOptions& o, pid_t parent, int stdout_pipe, int error_pipe,
                            char* const* argv, char* const* envp) {
  auto fail = [&](int err) {
    (void)!write(error_pipe, &err, sizeof err);
    _exit(127);
  };
  if (o.parent_death_signal != 0) {
    prctl(PR_SET_PDEATHSIG, o.parent_death_signal);
    if (getppid() != parent) _exit(127);  // the parent died before prctl
  }
  if (o.new_process_group) setpgid(0, 0);
  if (!o.stdin_path.empty()) {
    int fd = open(o.stdin_path.c_str(), O_RDONLY);
    if (fd < 0 || dup2(fd, STDIN_FILENO) < 0) fail(errno);
  }
  if (stdout_pipe >= 0) {
    if (dup2(stdout_pipe, STDOUT_FILENO) < 0) fail(errno);
  } else if (!o.stdout_path.empty() || o.discard_stdout) {
    const char* path = o.stdout_path.empty() ? "/dev/null" : o.stdout_path.c_str();
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0) fail(errno);
  }
  if (o.stderr_to_stdout) {
    if (dup2(STDOUT_FILENO, STDERR_FILENO) < 0) fail(errno);
  } else if (!o.stderr_path.empty()) {
    int flags = O_WRONLY | O_CREAT | (o.append_stderr ? O_APPEND : O_TRUNC);
    int fd = open(o.stderr_path.c_str(), flags, 0644);
    if (fd < 0 || dup2(fd, STDERR_FILENO) < 0) fail(errno);
  }
  execvpe(argv[0], argv, envp);
  fail(errno);
  _exit(127);  // fail() never returns; says so to the compiler
}

// GISMO_TEST_RUN (scripts/test.sh sets it), when it is a short word, goes
// into every name: the script removes what a run's killed tests left behind.
std::string TestRunTag() {
  const char* tag = std::getenv("GISMO_TEST_RUN");
  if (tag == nullptr || *tag == '\0' || std::strlen(tag) > 24) return "";
  for (const char* c = tag; *c != '\0'; ++c) {
    if (!std::isalnum(static_cast<unsigned char>(*c))) return "";
  }
  return std::string(tag) + "-";
}

}  // namespace

std::string UniqueName(const std::string& prefix) {
  static std::atomic<int> counter{0};
  static const std::string run_tag = TestRunTag();
  return "gismo-" + run_tag + prefix + "-" + std::to_string(getpid()) + "-" +
         std::to_string(counter.fetch_add(1, std::memory_order_relaxed) + 1);
}

std::string FreshPath(const std::string& path) {
  unlink(path.c_str());
  return path;
}

int ExitCode(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return -1;
}

bool WaitForExit(pid_t pid, double timeout_s, int* wait_status) {
  int status = 0;
  const double deadline = DeadlineAfter(timeout_s);
  // A pidfd becomes readable when the process exits: no polling loop.
  int pidfd = deadline < 0 ? -1 : static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  for (;;) {
    pid_t r = waitpid(pid, &status, deadline < 0 ? 0 : WNOHANG);
    if (r == pid || (r < 0 && errno != EINTR)) break;  // reaped, or not our child
    if (r < 0) continue;
    if (Expired(deadline)) {
      if (pidfd >= 0) close(pidfd);
      return false;
    }
    if (pidfd >= 0) {
      pollfd p{pidfd, POLLIN, 0};
      poll(&p, 1, MsLeft(deadline));
    } else {
      usleep(1000);  // kernels before 5.3 have no pidfd
    }
  }
  if (pidfd >= 0) close(pidfd);
  if (wait_status) *wait_status = status;
  return true;
}

Process::Process(Process&& other) noexcept { *this = std::move(other); }

Process& Process::operator=(Process&& other) noexcept {
  if (this != &other) {
    Reset();
    pid_ = std::exchange(other.pid_, -1);
    stdout_fd_ = std::exchange(other.stdout_fd_, -1);
    pending_ = std::move(other.pending_);
    output_ = std::move(other.output_);
    error_ = std::move(other.error_);
  }
  return *this;
}

Process::~Process() { Reset(); }

void Process::Reset() {
  if (pid_ > 0) KillAndWait(SIGKILL);
  CloseStdout();
  pending_.clear();
  output_.clear();
  error_.clear();
}

bool Process::Start(const SpawnOptions& options) {
  Reset();
  if (options.argv.empty()) {
    error_ = "no program to run";
    return false;
  }
  std::vector<std::string> args = options.argv;
  std::vector<std::string> env = ChildEnvironment(options.env, options.unset_env);
  std::vector<char*> argv = CStrings(args), envp = CStrings(env);
  int out[2] = {-1, -1}, err[2] = {-1, -1};
  if ((options.capture_stdout && pipe2(out, O_CLOEXEC) != 0) || pipe2(err, O_CLOEXEC) != 0) {
    error_ = std::string("pipe: ") + strerror(errno);
    for (int fd : {out[0], out[1]}) {
      if (fd >= 0) close(fd);
    }
    return false;
  }
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) ExecChild(options, parent, out[1], err[1], argv.data(), envp.data());
  const int fork_errno = errno;
  close(err[1]);
  if (out[1] >= 0) close(out[1]);
  if (pid < 0) {
    close(err[0]);
    if (out[0] >= 0) close(out[0]);
    error_ = std::string("fork: ") + strerror(fork_errno);
    return false;
  }
  // The error pipe closes on exec; before that, the child reports a failure.
  int child_errno = 0;
  ssize_t n;
  do {
    n = read(err[0], &child_errno, sizeof child_errno);
  } while (n < 0 && errno == EINTR);
  close(err[0]);
  if (n == static_cast<ssize_t>(sizeof child_errno)) {
    waitpid(pid, nullptr, 0);
    if (out[0] >= 0) close(out[0]);
    error_ = "cannot run " + options.argv[0] + ": " + strerror(child_errno);
    return false;
  }
  pid_ = pid;
  stdout_fd_ = out[0];
  return true;
}

bool Process::ReadLineContaining(std::string_view marker, double timeout_s, std::string* line) {
  const double deadline = DeadlineAfter(timeout_s);
  for (;;) {
    for (size_t nl; (nl = pending_.find('\n')) != std::string::npos;) {
      std::string l = pending_.substr(0, nl);
      pending_.erase(0, nl + 1);
      if (l.find(marker) != std::string::npos) {
        *line = std::move(l);
        return true;
      }
    }
    if (stdout_fd_ < 0) {
      error_ = "stdout is not captured";
      return false;
    }
    pollfd p{stdout_fd_, POLLIN, 0};
    int rc = poll(&p, 1, MsLeft(deadline));
    if (rc < 0 && errno == EINTR) continue;
    if (rc == 0) {
      error_ = "no line containing '" + std::string(marker) + "' within " +
               std::to_string(timeout_s) + " s";
      return false;
    }
    char buf[4096];
    ssize_t n = read(stdout_fd_, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      error_ = "the output ended before a line containing '" + std::string(marker) + "'";
      return false;
    }
    pending_.append(buf, n);
    output_.append(buf, n);
  }
}

bool Process::ReadToEnd(double timeout_s, std::string* out) {
  const double deadline = DeadlineAfter(timeout_s);
  bool ended = stdout_fd_ < 0;
  while (!ended) {
    pollfd p{stdout_fd_, POLLIN, 0};
    int rc = poll(&p, 1, MsLeft(deadline));
    if (rc < 0 && errno == EINTR) continue;
    if (rc == 0) break;
    char buf[4096];
    ssize_t n = read(stdout_fd_, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ended = true;
      break;
    }
    pending_.append(buf, n);
    output_.append(buf, n);
  }
  *out = std::move(pending_);
  pending_.clear();
  return ended;
}

void Process::CloseStdout() {
  if (stdout_fd_ >= 0) close(std::exchange(stdout_fd_, -1));
}

int Process::ReleaseStdout() { return std::exchange(stdout_fd_, -1); }

bool Process::Signal(int sig) const { return pid_ > 0 && kill(pid_, sig) == 0; }

bool Process::WaitForExit(double timeout_s, int* wait_status) {
  if (pid_ <= 0) return true;
  if (!testing::WaitForExit(pid_, timeout_s, wait_status)) return false;
  pid_ = -1;
  return true;
}

int Process::KillAndWait(int sig) {
  if (pid_ <= 0) return -1;
  kill(pid_, sig);
  int status = 0;
  WaitForExit(-1, &status);
  return status;
}

pid_t Process::Release() { return std::exchange(pid_, -1); }

RunResult Run(SpawnOptions options, double timeout_s) {
  options.capture_stdout = true;
  RunResult r;
  Process p;
  if (!p.Start(options)) {
    r.error = p.error();
    return r;
  }
  r.timed_out = !p.ReadToEnd(timeout_s, &r.output);
  if (r.timed_out) {
    p.KillAndWait(SIGKILL);
    return r;
  }
  int status = 0;
  p.WaitForExit(-1, &status);
  r.exit_code = ExitCode(status);
  return r;
}

}  // namespace gismo::testing
