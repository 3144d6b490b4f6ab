// Compiled only into the test variant of the core (see crash_point.h).
#include "common/crash_point.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#ifndef GISMO_CRASH_POINTS
#error "crash_point.cc belongs to test builds only (GISMO_CRASH_POINTS)"
#endif

namespace gismo {

namespace {
// The armed point: from the environment at load, or set by ArmCrashPoint
// while no other thread runs. Each pass of the armed point takes one skip
// (relaxed: the count is the only shared state; which of several threads
// passing at once crashes is not ordered).
const char* g_crash_target = getenv("GISMO_CRASH_AT");
std::atomic<long> g_crash_skip{getenv("GISMO_CRASH_SKIP") ? atol(getenv("GISMO_CRASH_SKIP")) : 0};
// With GISMO_CRASH_THREAD set, only threads of that role pass the armed point
// (and take its skips).
const char* g_crash_thread = getenv("GISMO_CRASH_THREAD");
thread_local const char* t_crash_role = nullptr;
uint32_t g_undo_log_limit = 0;
void (*g_crash_hook)() = nullptr;
}  // namespace

void LimitUndoLogForTesting(uint32_t entries) { g_undo_log_limit = entries; }
uint32_t UndoLogLimitForTesting() { return g_undo_log_limit; }

void ArmCrashPoint(const char* name, long skip) {
  g_crash_target = name;
  g_crash_skip.store(skip, std::memory_order_relaxed);
}

void SetCrashHook(void (*hook)()) { g_crash_hook = hook; }

void SetCrashPointThreadRole(const char* role) { t_crash_role = role; }

void CrashPoint(const char* name) {
  if (g_crash_target == nullptr || strcmp(g_crash_target, name) != 0) return;
  if (g_crash_thread != nullptr &&
      (t_crash_role == nullptr || strcmp(t_crash_role, g_crash_thread) != 0)) {
    return;
  }
  if (g_crash_skip.fetch_sub(1, std::memory_order_relaxed) > 0) return;
  // GISMO_CRASH_ACTION=stop: freeze here instead (a client frozen at any
  // instruction, for the failure model's "suspected is not dead" tests).
  if (const char* a = getenv("GISMO_CRASH_ACTION"); a != nullptr && strcmp(a, "stop") == 0) {
    // Said first, so a test can wait for the line rather than poll /proc.
    static constexpr char kSay[] = "gismo: stopping at crash point ";
    [[maybe_unused]] ssize_t w = write(STDERR_FILENO, kSay, sizeof kSay - 1);
    w = write(STDERR_FILENO, name, strlen(name));
    w = write(STDERR_FILENO, "\n", 1);
    raise(SIGSTOP);
    return;
  }
  if (g_crash_hook != nullptr) g_crash_hook();
  _exit(77);
}

}  // namespace gismo
