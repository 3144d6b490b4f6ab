// The receiver thread: serves the connection (heartbeats, acknowledgements,
// wake-ups, notifications, fence replies) and re-attaches when it breaks.
#include <errno.h>
#include <poll.h>
#include <unistd.h>

#include "client/client.h"
#include "common/atomic.h"
#include "common/clock.h"

namespace gismo::client {

using protocol::MsgType;

void ClientImpl::ReceiverLoop() {
  std::vector<uint8_t> payload;
  for (;;) {
    std::string why;
    if (RunConnection(&payload, &why) || LoadAcquire(closing_)) {
      MarkLost(LoadAcquire(closing_) ? "disconnected" : why);
      return;
    }
    // Nobody reads this connection any more: an order sent on it now could
    // be carried out with its reply lost. Shut down, sends on it fail at
    // once (nothing delivered) until the re-attach replaces it.
    ShutdownConnection();
    {
      std::lock_guard<std::mutex> lk(state_mu_);
      connection_down_ = true;  // a goodbye sent now would not arrive
      // Waiters look again, and on at kLookWhileDownMs until the re-attach:
      // no wake-up comes through a connection that is down.
      if (LooksWhileDown()) ++wake_seq_;
    }
    state_cv_.notify_all();
    if (!Reattach(&why)) {
      MarkLost(why);
      return;
    }
    // Subscriptions are the manager's memory: tell the new one. Its
    // acknowledgement (RunConnection) wakes the subscriber, who then reads
    // the ring: every event from then on wakes it again. A send that fails
    // means this connection is broken too, and the next re-attach retries.
    uint64_t resubscribe = 0;
    {
      std::lock_guard<std::mutex> lk(state_mu_);
      if (subscribe_acked_) {
        resubscribe = IncrementRelaxed(next_request_);
        open_requests_.emplace(resubscribe, MsgType::kSubscribe);
      }
    }
    if (resubscribe != 0) {
      protocol::Writer w;
      (void)Send(w.Frame(MsgType::kSubscribe, resubscribe), kRequestSendMs);
    }
  }
}

// Serves one connection until it fails (returns false, `why` says how) or
// the manager ends the session (returns true).
bool ClientImpl::RunConnection(std::vector<uint8_t>* payload, std::string* why) {
  const int heartbeat_ms = welcome_.lease_ms > 0 ? std::max<int>(50, welcome_.lease_ms / 4) : -1;
  // How often the region's owner word is looked at (SameManager): at every
  // heartbeat, else (a manager without leases, which wants none) once a
  // second, so that a client still leaves a manager that was replaced while
  // its connection stayed open.
  const int look_ms = heartbeat_ms > 0 ? heartbeat_ms : 1000;
  uint64_t last_beat = MonotonicNs();
  const int fd = fd_;  // only this thread replaces it
  // A frame whose first byte has come is read whole within this bound (one
  // deadline for the frame, not per receive), or the connection counts as
  // broken and the client re-attaches: a manager that stops in the middle
  // of one, drips it, or a link that fails there, must not hold this thread
  // (and with it every heartbeat) for ever.
  const int frame_bound_ms = protocol::FrameStallBoundMs(welcome_.lease_ms);
  // A TCP manager that vanishes without a word (its host powered off, the
  // link cut) leaves our heartbeats unacknowledged: the kernel drops the
  // connection after half a lease instead of ~15 minutes of retransmits.
  if (welcome_.lease_ms > 0) {
    protocol::BoundUnacknowledgedSends(fd, static_cast<int>(welcome_.lease_ms / 2));
  }
  while (!LoadAcquire(closing_)) {
    const uint64_t since = (MonotonicNs() - last_beat) / 1000000;
    const int wait_ms =
        since >= static_cast<uint64_t>(look_ms) ? 0 : look_ms - static_cast<int>(since);
    pollfd p{fd, POLLIN, 0};
    int rc = poll(&p, 1, wait_ms);
    if (rc < 0 && errno == EINTR) continue;
    if (rc == 0 || (MonotonicNs() - last_beat) / 1000000 >= static_cast<uint64_t>(look_ms)) {
      // A region whose manager_owner moved has another manager: this
      // connection's may be gone without a word (or frozen): re-attach to
      // the one at the address now.
      if (!SameManager()) {
        *why = "a new manager took over the region";
        return false;
      }
      protocol::Writer w;
      if (heartbeat_ms > 0 && !Send(w.Frame(MsgType::kHeartbeat, 0)).ok()) {
        *why = "cannot reach the manager";
        return false;
      }
      last_beat = MonotonicNs();
      if (rc == 0) continue;
    }
    protocol::FrameHeader h;
    Status s = protocol::RecvFrameUntil(fd, protocol::DeadlineAfterMs(frame_bound_ms), &h, payload);
    if (s.ok() && recv_tags_ && !recv_tags_->Verify(&h, payload)) {
      s = protocol::BadFrameTag("the manager at " + address_text_);
    }
    if (!s.ok()) {
      *why = s.message();
      return false;
    }
    std::lock_guard<std::mutex> lk(state_mu_);
    // The type of the open request this frame's request id names, if any: a
    // reply is trusted only for a request of the type it answers.
    const auto open = open_requests_.find(h.request_id);
    const MsgType asked = open == open_requests_.end() ? MsgType{} : open->second;
    switch (h.type) {
      case MsgType::kWaitAck:  // kept only for a wait still open, as below
        if (asked == MsgType::kWait) acked_waits_.insert(h.request_id);
        break;
      case MsgType::kWake:
        ++wake_seq_;
        break;
      case MsgType::kBye:
        if (asked == MsgType::kGoodbye) bye_ = true;
        break;
      case MsgType::kSubscribeAck:
        if (asked != MsgType::kSubscribe) break;
        open_requests_.erase(open);  // answered
        // A re-attach's subscription (the subscriber subscribed before): the
        // events since the connection broke are in the ring; the subscriber
        // reads them now, and the manager wakes it for every later one.
        if (subscribe_acked_) WakeSubscriber();
        subscribe_acked_ = true;
        break;
      case MsgType::kFenceReply: {
        protocol::Reader rd(*payload);
        const gismo_status_t code = protocol::StatusCodeFromWire(rd.U32());
        std::string msg = rd.Str();
        // Kept only for an order still waiting (not one that gave up, nor
        // one never sent): the manager cannot make this map grow.
        if (asked != MsgType::kFence) break;
        fence_replies_[h.request_id] =
            rd.ok() ? (code == GISMO_OK ? Status(GISMO_OK, msg) : Status(code, msg))
                    : Status(GISMO_ERR_PROTOCOL, "malformed fence reply");
        break;
      }
      case MsgType::kNotify: {
        // A wake-up for events the subscriber has read already (a sealer's
        // direct one came first) would leave its fd readable with nothing
        // to read.
        protocol::Reader rd(*payload);
        const uint64_t head = rd.remaining() >= 8 ? rd.U64() : UINT64_MAX;
        if (head > LoadAcquire(cursor_seen_)) WakeSubscriber();
        break;
      }
      case MsgType::kError: {
        protocol::Reader rd(*payload);
        Status err = protocol::DecodeError(rd);
        // A nonzero request id: the manager refuses that request only (a
        // wait over its bound), and the session goes on.
        if (h.request_id != 0) {
          if (open != open_requests_.end()) request_errors_[h.request_id] = std::move(err);
          break;
        }
        *why = err.message();
        state_cv_.notify_all();
        return true;
      }
      default:
        break;  // newer managers may send more; ignore what we do not know
    }
    state_cv_.notify_all();
  }
  *why = "disconnected";
  return true;
}

}  // namespace gismo::client
