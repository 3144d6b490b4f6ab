// How a thread waits for a word of the region that another process, maybe on
// another host, is to change (a lock, an event ring entry). No futex or other
// kernel object spans hosts, so the waiter polls and backs off.
#ifndef GISMO_COMMON_BACKOFF_H_
#define GISMO_COMMON_BACKOFF_H_

#include <sched.h>
#include <time.h>

#include <cstdint>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace gismo {

// Retries that only spin; after them a waiter may look at the clock (a
// system call the busy phase avoids) and gives the CPU away.
inline constexpr uint32_t kBackoffBusySpins = 64;
// Retries after which a waiter sleeps instead of yielding.
inline constexpr uint32_t kBackoffYieldSpins = 2000;

// One pause of a busy wait (x86 PAUSE: the spinning core yields to its
// sibling and leaves the loop without a memory-order mis-speculation).
inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

// The wait before retry `spins` (0, 1, ...): for the first
// kBackoffBusySpins, 2^(spins / 8) pauses (1 to 128); then sched_yield until
// kBackoffYieldSpins; then a 50 µs sleep each time.
inline void Backoff(uint32_t spins) {
  if (spins < kBackoffBusySpins) {
    for (uint32_t i = 0; i < (1u << (spins / 8)); ++i) CpuRelax();
  } else if (spins < kBackoffYieldSpins) {
    sched_yield();
  } else {
    timespec ts{0, 50 * 1000};
    nanosleep(&ts, nullptr);
  }
}

}  // namespace gismo

#endif  // GISMO_COMMON_BACKOFF_H_
