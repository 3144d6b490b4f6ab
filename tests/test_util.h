// Test helpers: a client that must connect, a notification that must come,
// a gismo-manager process of this build, and a function run in a forked
// child. The process helpers themselves live in
// src/testing (shared with the benchmarks and gismo-torture).
#ifndef GISMO_TESTS_TEST_UTIL_H_
#define GISMO_TESTS_TEST_UTIL_H_

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gismo/gismo.hpp>
#include <string>
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

}  // namespace gismo::testing

#endif  // GISMO_TESTS_TEST_UTIL_H_
