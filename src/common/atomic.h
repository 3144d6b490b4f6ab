// Atomic accesses that name their memory order, in the style of mimalloc's
// mi_atomic_load_acquire / mi_atomic_store_release: a reader sees the order
// at the call, and nothing falls back to a sequentially consistent default.
// Accesses that need another order (seq_cst for the store-load pairs of
// waiters and subscribers, see region/layout.h) call the std::atomic member
// with the order spelled out.
#ifndef GISMO_COMMON_ATOMIC_H_
#define GISMO_COMMON_ATOMIC_H_

#include <atomic>
#include <type_traits>

namespace gismo {

// For counters and flags that publish nothing but themselves.
template <typename T>
T LoadRelaxed(const std::atomic<T>& a) {
  return a.load(std::memory_order_relaxed);
}
template <typename T>
void StoreRelaxed(std::atomic<T>& a, std::type_identity_t<T> v) {
  a.store(v, std::memory_order_relaxed);
}
// Returns the value before the increment.
template <typename T>
T IncrementRelaxed(std::atomic<T>& a, std::type_identity_t<T> by = 1) {
  return a.fetch_add(by, std::memory_order_relaxed);
}

// For a value that publishes what was written before it: a LoadAcquire that
// sees a StoreRelease's value sees every write made before that store.
template <typename T>
T LoadAcquire(const std::atomic<T>& a) {
  return a.load(std::memory_order_acquire);
}
template <typename T>
void StoreRelease(std::atomic<T>& a, std::type_identity_t<T> v) {
  a.store(v, std::memory_order_release);
}
template <typename T>
T ExchangeAcqRel(std::atomic<T>& a, std::type_identity_t<T> v) {
  return a.exchange(v, std::memory_order_acq_rel);
}

}  // namespace gismo

#endif  // GISMO_COMMON_ATOMIC_H_
