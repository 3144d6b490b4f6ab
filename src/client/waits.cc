// Get: takes what is sealed now, and waits for the rest through the
// manager (a registered wait, woken by a seal anywhere).
#include <chrono>

#include "client/client.h"
#include "common/atomic.h"
#include "common/clock.h"

namespace gismo::client {

using protocol::MsgType;

Status ClientImpl::Get(const gismo_id_t* ids, size_t count, int64_t timeout_ms,
                       gismo_buffer_t* buffers) {
  const uint64_t start = MonotonicNs();
  std::vector<size_t> pending;
  std::vector<size_t> taken;
  auto release_taken = [&] {
    for (size_t i : taken) {
      (void)store_->Release(ids[i]);
      buffers[i] = gismo_buffer_t{};
    }
  };
  // Tries every pending object once; keeps the ones still missing.
  auto sweep = [&]() -> Status {
    std::lock_guard<std::mutex> op(op_mu_);
    if (Status s = CheckAlive(); !s.ok()) return s;
    std::vector<size_t> still;
    for (size_t i : pending) {
      store::GetResult r;
      if (Status s = store_->TryGet(ids[i], &r); !s.ok()) {
        release_taken();
        return s;
      }
      if (r.found) {
        buffers[i] = r.buffer;
        taken.push_back(i);
      } else {
        still.push_back(i);
      }
    }
    pending.swap(still);
    return Status();
  };
  for (size_t i = 0; i < count; ++i) {
    buffers[i] = gismo_buffer_t{};
    pending.push_back(i);
  }
  if (Status s = sweep(); !s.ok()) return s;
  if (pending.empty() || timeout_ms == 0) return Status();

  auto deadline =
      std::chrono::steady_clock::now() +
      std::chrono::nanoseconds(
          timeout_ms < 0 ? 0 : timeout_ms * 1000000 - static_cast<int64_t>(MonotonicNs() - start));
  auto wait_until = [&](std::unique_lock<std::mutex>& lk, auto pred) {
    if (timeout_ms < 0) {
      state_cv_.wait(lk, pred);
      return true;
    }
    return state_cv_.wait_until(lk, deadline, pred);
  };
  // Registers the wait with the manager (again after a re-attach: waits are
  // the manager's memory), then the caller re-checks (see NotifyIfWatched).
  // A send that fails while the connection is being re-established is not
  // an error: the re-attach wakes us and we register again.
  const uint64_t wait_id = IncrementRelaxed(next_request_);
  uint64_t registered_epoch = ~0ull;
  auto register_wait = [&] {
    uint64_t epoch;
    {
      std::lock_guard<std::mutex> lk(state_mu_);
      epoch = connection_epoch_;
    }
    if (epoch == registered_epoch) return;
    registered_epoch = epoch;
    protocol::Writer w;
    w.U32(static_cast<uint32_t>(pending.size()));
    for (size_t i : pending) w.Id(ids[i]);
    if (!Send(w.Frame(MsgType::kWait, wait_id)).ok()) return;
    std::unique_lock<std::mutex> lk(state_mu_);
    wait_until(lk, [&] {
      return acked_waits_.count(wait_id) > 0 || LoadAcquire(lost_) || connection_epoch_ != epoch;
    });
  };
  Status result;
  for (;;) {
    register_wait();
    uint64_t seen;
    {
      std::lock_guard<std::mutex> lk(state_mu_);
      seen = wake_seq_;
    }
    if (Status s = sweep(); !s.ok()) {
      result = s;
      break;
    }
    if (pending.empty()) break;
    std::unique_lock<std::mutex> lk(state_mu_);
    bool woke = wait_until(lk, [&] { return wake_seq_ != seen || LoadAcquire(lost_); });
    if (LoadAcquire(lost_)) {
      result = Status(GISMO_ERR_CONNECTION,
                      "lost the connection to the manager while waiting (" + lost_reason_ + ")");
      lk.unlock();
      std::lock_guard<std::mutex> op(op_mu_);
      release_taken();
      break;
    }
    if (!woke) break;  // timed out; what is missing stays NULL
  }
  {
    std::lock_guard<std::mutex> lk(state_mu_);
    acked_waits_.erase(wait_id);
  }
  if (!LoadAcquire(lost_)) {
    protocol::Writer c;
    (void)Send(c.Frame(MsgType::kCancelWait, wait_id));
  }
  return result;
}

}  // namespace gismo::client
