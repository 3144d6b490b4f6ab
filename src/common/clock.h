// Clocks. Both are vDSO calls on Linux: no system call on the hot path.
#ifndef GISMO_COMMON_CLOCK_H_
#define GISMO_COMMON_CLOCK_H_

#include <time.h>

#include <chrono>
#include <cstdint>

namespace gismo {

inline uint64_t RealtimeNs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + ts.tv_nsec;
}

inline uint64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + ts.tv_nsec;
}

// The monotonic clock in seconds, for deadlines and durations in tools and
// tests (not for the hot path: a double loses nanoseconds after ~100 days).
inline double MonotonicS() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

// The steady-clock deadline `timeout_ms` after `from`, saturated: a
// negative timeout ("forever") or one past what the clock can count
// (INT64_MAX or 10^13 ms: "forever" in effect; timeout_ms * 10^6 would
// overflow) gives time_point::max(), which callers treat as no deadline.
inline std::chrono::steady_clock::time_point SteadyDeadline(
    int64_t timeout_ms, std::chrono::steady_clock::time_point from) {
  using std::chrono::steady_clock;
  constexpr auto kNever = steady_clock::time_point::max();
  if (timeout_ms < 0) return kNever;
  const int64_t room_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(kNever - from).count();
  if (timeout_ms >= room_ms) return kNever;
  return from + std::chrono::milliseconds(timeout_ms);
}

}  // namespace gismo

#endif  // GISMO_COMMON_CLOCK_H_
