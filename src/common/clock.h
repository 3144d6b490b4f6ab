// Clocks. Both are vDSO calls on Linux: no system call on the hot path.
#ifndef GISMO_COMMON_CLOCK_H_
#define GISMO_COMMON_CLOCK_H_

#include <time.h>

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

}  // namespace gismo

#endif  // GISMO_COMMON_CLOCK_H_
