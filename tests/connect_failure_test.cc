// A connect that fails after the manager admitted it (its receiver thread
// cannot start, as at a thread or pids limit): the client says goodbye, so
// the manager frees its slot at once, instead of keeping a slot for a
// connection that closed without a word, then suspecting (and, on this
// kernel, fencing: killing) a process that is alive. This program replaces
// pthread_create with one that fails on demand; sanitizer runtimes replace
// it too, so it is built in the normal build only (tests/CMakeLists.txt).
#include <dlfcn.h>
#include <errno.h>
#include <gtest/gtest.h>
#include <pthread.h>

#include <atomic>
#include <gismo/gismo.hpp>
#include <string>

#include "test_util.h"

namespace {
std::atomic<bool> g_fail_threads{false};
}  // namespace

extern "C" int pthread_create(pthread_t* thread, const pthread_attr_t* attr, void* (*start)(void*),
                              void* arg) {
  using Create = int (*)(pthread_t*, const pthread_attr_t*, void* (*)(void*), void*);
  static const Create real = reinterpret_cast<Create>(dlsym(RTLD_NEXT, "pthread_create"));
  if (g_fail_threads.load(std::memory_order_relaxed)) return EAGAIN;
  return real(thread, attr, start, arg);
}

namespace gismo {
namespace {

using testing::ManagerProcess;
using testing::MustConnect;
using testing::StartManagerProcess;

TEST(ConnectFailureTest, AClientWhoseThreadCannotStartLeavesNoSlotBehind) {
  ManagerProcess m = StartManagerProcess();
  Client watcher = MustConnect(m.address());
  g_fail_threads.store(true, std::memory_order_relaxed);
  gismo_client_t* failed = nullptr;
  const gismo_status_t st = gismo_connect(m.address().c_str(), &failed);
  const std::string why = gismo_last_error();
  g_fail_threads.store(false, std::memory_order_relaxed);
  EXPECT_EQ(st, GISMO_ERR_LIMIT) << why;
  EXPECT_NE(why.find("receiver thread"), std::string::npos) << why;
  EXPECT_EQ(failed, nullptr);
  // Its goodbye was answered before gismo_connect returned: the manager
  // lists the watcher alone.
  auto clients = watcher.Clients();
  ASSERT_TRUE(clients.ok()) << clients.status().ToString();
  EXPECT_EQ(clients->size(), 1u);
  // And the next client connects and works.
  Client next = MustConnect(m.address());
  const ObjectId id = ObjectId::Random();
  EXPECT_TRUE(next.Put(id, "after").ok());
}

}  // namespace
}  // namespace gismo
