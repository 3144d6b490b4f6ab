// gismo fence: an operator's fence order, sent through this client's
// connection to the manager.
#include <chrono>

#include "client/client.h"
#include "common/atomic.h"

namespace gismo::client {

Status ClientImpl::Fence(const protocol::FenceOrder& order, std::string* what) {
  if (Status s = CheckAlive(); !s.ok()) return s;
  const uint64_t id = IncrementRelaxed(next_request_);
  if (Status s = Send(protocol::EncodeFenceOrder(id, order)); !s.ok()) return s;
  std::unique_lock<std::mutex> lk(state_mu_);
  const bool done = state_cv_.wait_for(lk, std::chrono::milliseconds(kHandshakeTimeoutMs), [&] {
    return fence_replies_.count(id) > 0 || LoadAcquire(lost_);
  });
  if (!done) return Status(GISMO_ERR_TIMEOUT, "the manager did not answer the fence order");
  if (!fence_replies_.count(id)) return Status(GISMO_ERR_CONNECTION, "lost the manager");
  Status r = fence_replies_[id];
  fence_replies_.erase(id);
  if (r.code() != GISMO_OK) return r;
  *what = r.message();
  return Status();
}

}  // namespace gismo::client
