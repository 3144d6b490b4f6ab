// Helpers of the benchmarks that drive the store directly on the shipped
// core (gismo_index_bench, gismo_alloc_bench), without bench_util's
// manager, cluster and test-support pieces.
#ifndef GISMO_BENCH_DIRECT_BENCH_H_
#define GISMO_BENCH_DIRECT_BENCH_H_

#include <errno.h>
#include <time.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <gismo/status.hpp>
#include <string>

namespace gismo::bench {

// CLOCK_MONOTONIC in nanoseconds.
inline int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1'000'000'000LL + ts.tv_nsec;
}

// Ends the benchmark with a message naming it: benchmarks have no error
// recovery.
[[noreturn]] inline void Die(const std::string& what) {
  std::fprintf(stderr, "%s: %s\n", program_invocation_short_name, what.c_str());
  std::exit(1);
}

inline void Check(const Status& s, const char* what) {
  if (!s.ok()) Die(std::string(what) + ": " + s.ToString());
}

}  // namespace gismo::bench

#endif  // GISMO_BENCH_DIRECT_BENCH_H_
