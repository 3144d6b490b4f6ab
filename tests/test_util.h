// Test helpers: a client that must connect, a notification that must come,
// a gismo-manager process of this build, and a function run in a forked
// child. The process helpers themselves live in
// src/testing (shared with the benchmarks and gismo-torture).
#ifndef GISMO_TESTS_TEST_UTIL_H_
#define GISMO_TESTS_TEST_UTIL_H_

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <gismo/gismo.hpp>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "region/cache_lines.h"
#include "region/region.h"
#include "store/index.h"
#include "testing/manager_process.h"
#include "testing/process.h"

namespace gismo::testing {

// For ASSERT_TRUE/EXPECT_TRUE: an OK status, or a failure naming the status.
inline ::testing::AssertionResult IsOk(const Status& s) {
  if (s.ok()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << s.ToString();
}

// A client of the manager at `addr`; a failure to connect fails the test
// (EXPECT) and returns a client that is not connected.
inline Client MustConnect(const std::string& addr) {
  auto c = Client::Connect(addr);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? std::move(*c) : Client();
}

// The next notification within timeout_ms; none fails the test (EXPECT) and
// returns an empty notification.
inline Notification MustNext(Subscription& sub, int64_t timeout_ms = 10000) {
  auto n = sub.Next(timeout_ms);
  EXPECT_TRUE(n.ok()) << n.status().ToString();
  return n.ok() ? *n : Notification{};
}

#ifdef GISMO_MANAGER_BIN
// Starts GISMO_MANAGER_BIN on a private region and socket and waits for its
// ready line; a manager that does not start fails the test. `extra_args` go
// to gismo-manager as they are.
inline ManagerProcess StartManagerProcess(std::vector<std::string> extra_args = {},
                                          std::string size = "256MiB") {
  ManagerProcessOptions o;
  o.binary = GISMO_MANAGER_BIN;
  o.size = std::move(size);
  o.extra_args = std::move(extra_args);
  ManagerProcess m(std::move(o));
  EXPECT_TRUE(m.Start()) << m.error();
  return m;
}
#endif

// Waits until some client's blocking get of `id` is registered with the
// manager (the shard of `id` counts a waiter in `region`); false after
// timeout_s.
// A word other processes write, read as memory holds it: in a non-coherent
// region (every process a host of its own in the simulator build) after an
// invalidate of its line.
inline uint64_t ReadShared(const region::Region& region, const region::Word& w) {
  if (region.noncoherent()) region::InvalidateLines(&w, sizeof w);
  return w.load(std::memory_order_acquire);
}

inline bool WaitForGetWaiter(const region::Region& region, const ObjectId& id,
                             double timeout_s = 20) {
  const region::ShardHeader& shard = region.shard(region.ShardOf(store::HashId(id.c_id())));
  const double t0 = MonotonicS();
  while (ReadShared(region, shard.waiters) == 0) {
    if (MonotonicS() - t0 > timeout_s) return false;
    usleep(1000);
  }
  return true;
}

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

// Checks that every thread of the process whose /proc directory is `proc`
// ("/proc/self", "/proc/1234"), but its main thread `main_tid`, blocks the
// asynchronous signals and not the faults' (common/background_thread.h):
// a signal sent to the process is then handled by the main thread. Returns
// how many threads it looked at (a caller expecting some checks it is not 0).
// Read from each thread's SigBlk: which thread the kernel picks for a signal
// is not something a test can force.
#if defined(__SANITIZE_THREAD__)
inline constexpr bool kSanitizerRunsAThread = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
inline constexpr bool kSanitizerRunsAThread = true;
#else
inline constexpr bool kSanitizerRunsAThread = false;
#endif
#else
inline constexpr bool kSanitizerRunsAThread = false;
#endif

inline int ExpectOnlyTheMainThreadTakesSignals(const std::string& proc, pid_t main_tid) {
  auto blocked_signals = [](const std::filesystem::path& task) -> std::optional<uint64_t> {
    std::ifstream status(task / "status");
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("SigBlk:", 0) == 0) return std::stoull(line.substr(7), nullptr, 16);
    }
    return std::nullopt;
  };
  // A new thread has every signal but SIGKILL and SIGSTOP blocked until its
  // first instructions (glibc's start_thread) set the mask it was created
  // with: wait for those to have run.
  constexpr uint64_t kStarting = ~((uint64_t{1} << (SIGKILL - 1)) | (uint64_t{1} << (SIGSTOP - 1)));
  int others = 0;
  for (const auto& task : std::filesystem::directory_iterator(proc + "/task")) {
    if (task.path().filename() == std::to_string(main_tid)) continue;
    std::optional<uint64_t> blocked;
    while ((blocked = blocked_signals(task.path())) == kStarting) std::this_thread::yield();
    if (!blocked) continue;  // the thread ended
    auto is_blocked = [&](int sig) { return (*blocked >> (sig - 1)) & 1; };
    // ThreadSanitizer's runtime runs a thread of its own, which blocks
    // every signal, the faults' too: not one of the program's.
    if (kSanitizerRunsAThread && is_blocked(SIGSEGV) && is_blocked(SIGBUS)) continue;
    ++others;
    const std::string where = " on thread " + task.path().string();
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGCHLD, SIGPIPE,
                    SIGWINCH}) {
      EXPECT_TRUE(is_blocked(sig)) << strsignal(sig) << where;
    }
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL}) {
      EXPECT_FALSE(is_blocked(sig)) << strsignal(sig) << where;
    }
  }
  return others;
}

}  // namespace gismo::testing

#endif  // GISMO_TESTS_TEST_UTIL_H_
