// gismo fence: an operator's fence order, sent through this client's
// connection to the manager. In a non-coherent region it first writes back,
// from this host, the lines of each fenced client whose process ran here and
// is gone (doc/noncoherent.md 7.3: what a node agent does before it
// confirms a fence), so an operator on the dead process's host needs no
// agent there.
#include <chrono>
#include <string>

#include "client/client.h"
#include "common/atomic.h"
#include "fence/process.h"
#include "region/cache_lines.h"
#include "region/nc_fence.h"

namespace gismo::client {
namespace {

// Whether client slot `i` (its manager-written lines read from memory) is
// one the order names.
bool Named(const region::ClientSlotHeader& h, uint32_t i, const protocol::FenceOrder& order) {
  using Target = protocol::FenceOrder::Target;
  switch (order.target) {
    case Target::kSlot:
      return i == order.value;
    case Target::kClient:
      return h.client_id.load(std::memory_order_relaxed) == order.value;
    case Target::kNode:
      return h.node_id.load(std::memory_order_relaxed) == order.value;
  }
  return false;
}

}  // namespace

Status ClientImpl::WriteBackFencedHere(const protocol::FenceOrder& order, std::string* note) {
  const region::Region& r = *region_;
  const fence::ProcessIdentity me = fence::Self();
  region::HwLines lines;
  for (uint32_t i = 1; i < r.max_clients(); ++i) {
    region::ClientSlotHeader& h = r.slot(i);
    // The manager's lines: its current words, not this host's copies.
    lines.Invalidate(&h, region::kCacheLine);
    lines.Invalidate(&h.identity, region::kCacheLine);
    if (i == slot() ||
        region::SlotStateOf(h.state.load(std::memory_order_acquire)) == region::SlotState::kFree) {
      continue;
    }
    if (!Named(h, i, order)) continue;
    const fence::ProcessIdentity who = fence::ProcessIdentity::FromWords(h.identity);
    if (!who.SameNamespace(me)) continue;  // its host's caches are not ours to write back
    const std::string slot_name = "client slot " + std::to_string(i);
    if (!fence::ProvenGone(who)) {
      *note += "; " + slot_name + "'s process (" + who.ToString() +
               ") still runs on this host: its lines were not written back";
      continue;
    }
    const region::NcWriteBack wb = region::NcWriteBackDeadClient(lines, r, i);
    if (wb.busy != 0) {
      return Status(GISMO_ERR_BUSY, std::to_string(wb.busy) + " records of " + slot_name +
                                        " kept changing while its lines were written back; "
                                        "fence again");
    }
    *note += "; wrote back " + slot_name + "'s lines on this host (" + std::to_string(wb.bytes) +
             " bytes, " + std::to_string(wb.unsealed) + " unsealed objects)";
  }
  return Status();
}

Status ClientImpl::Fence(const protocol::FenceOrder& order, std::string* what) {
  if (Status s = CheckAlive(); !s.ok()) return s;
  std::string note;
  if (region_ && region_->noncoherent()) {
    if (Status s = WriteBackFencedHere(order, &note); !s.ok()) return s;
  }
  const uint64_t id = IncrementRelaxed(next_request_);
  {
    std::lock_guard<std::mutex> lk(state_mu_);
    open_requests_.emplace(id, protocol::MsgType::kFence);
  }
  // A send that fails did not deliver the whole order (the connection is
  // shut down after a partial one), so the manager never acts on it. The
  // epoch is the connection's it went on, which may be a re-attach's whose
  // epoch is not published yet.
  uint64_t epoch = 0;
  Status sent = Send(protocol::EncodeFenceOrder(id, order), kRequestSendMs, &epoch);
  std::unique_lock<std::mutex> lk(state_mu_);
  // Whatever the outcome, the request is done with here.
  struct Done {
    ClientImpl* c;
    uint64_t id;
    ~Done() {
      c->open_requests_.erase(id);
      c->request_errors_.erase(id);
      c->fence_replies_.erase(id);
    }
  } done_with{this, id};
  if (!sent.ok()) return sent;
  // Only the connection the order went on can bring its reply: once it
  // broke (connection_down_ until the re-attach, then a new epoch) none
  // comes. The order is not sent again: the manager may have carried it out.
  auto broke = [&] {
    return connection_epoch_ > epoch || (connection_epoch_ == epoch && connection_down_);
  };
  const bool done = state_cv_.wait_for(lk, std::chrono::milliseconds(kHandshakeTimeoutMs), [&] {
    return fence_replies_.count(id) > 0 || request_errors_.count(id) > 0 || LoadAcquire(lost_) ||
           broke();
  });
  if (!done) return Status(GISMO_ERR_TIMEOUT, "the manager did not answer the fence order");
  if (!fence_replies_.count(id) && !request_errors_.count(id) && broke()) {
    return Status(GISMO_ERR_CONNECTION,
                  "the connection to the manager broke before it answered the fence order: "
                  "whether it was carried out is unknown (see gismo status; fence again if "
                  "needed)");
  }
  // The manager refused the order itself (a malformed one).
  if (auto e = request_errors_.find(id); e != request_errors_.end()) return e->second;
  if (!fence_replies_.count(id)) return Status(GISMO_ERR_CONNECTION, "lost the manager");
  Status r = fence_replies_[id];
  if (r.code() != GISMO_OK) return r;
  *what = r.message() + note;
  return Status();
}

}  // namespace gismo::client
