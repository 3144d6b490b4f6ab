// Subscriptions: the initial listing, then seals and deletes read from the
// region's event ring; the event fd is poked by the receiver thread and,
// directly, by the clients that seal or delete.
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstring>

#include "client/client.h"
#include "common/atomic.h"
#include "common/check.h"
#include "common/clock.h"

namespace gismo::client {

using protocol::MsgType;

namespace {
std::array<uint8_t, GISMO_ID_SIZE> IdKey(const gismo_id_t& id) {
  std::array<uint8_t, GISMO_ID_SIZE> key;
  std::memcpy(key.data(), id.bytes, GISMO_ID_SIZE);
  return key;
}
// Reads the wake-up datagrams queued on the subscription socket, at most a
// queue's worth: senders as fast as this reader (a UDP port any host may
// send to) would otherwise keep it here for ever. What is left keeps the
// socket readable, which is only another look at the ring.
void Drain(int efd) {
  constexpr int kMostDatagrams = 1024;
  char b[64];
  for (int n = 0; n < kMostDatagrams && recv(efd, b, sizeof b, MSG_DONTWAIT) >= 0; ++n) {
  }
}
// Sends one wake-up byte to `addr`. A full queue (EAGAIN) already holds a
// wake-up; a name nobody binds any more (ECONNREFUSED) is a stale hint.
void SendWake(int fd, const void* addr, socklen_t len) {
  const char one = 1;
  (void)!sendto(fd, &one, 1, MSG_DONTWAIT | MSG_NOSIGNAL, static_cast<const sockaddr*>(addr), len);
}

// A UDP socket bound to the local IPv4 address of connected socket `conn`
// (the address its peers on the network reach this host at), at a port
// the kernel picks; its address in *addr. -1 if `conn` is not IPv4 or a
// call fails: the caller falls back to AF_UNIX.
int BindUdpBeside(int conn, sockaddr_in* addr) {
  sockaddr_storage local{};
  socklen_t len = sizeof local;
  if (getsockname(conn, reinterpret_cast<sockaddr*>(&local), &len) != 0 ||
      local.ss_family != AF_INET) {
    return -1;
  }
  *addr = *reinterpret_cast<const sockaddr_in*>(&local);
  addr->sin_port = 0;
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  len = sizeof *addr;
  if (bind(fd, reinterpret_cast<const sockaddr*>(addr), sizeof *addr) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(addr), &len) != 0 || addr->sin_port == 0) {
    close(fd);
    return -1;
  }
  return fd;
}
socklen_t AbstractAddress(const std::string& name, sockaddr_un* addr) {
  *addr = sockaddr_un{};
  addr->sun_family = AF_UNIX;
  const size_t n = std::min(name.size(), sizeof addr->sun_path);
  std::memcpy(addr->sun_path, name.data(), n);
  return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + n);
}
}  // namespace

void ClientImpl::WakeSubscriber() {
  if (int efd = LoadAcquire(event_fd_); efd >= 0) SendWake(efd, &event_addr_, event_addr_len_);
}

void ClientImpl::WakeSubscribersDirectly() {
  std::call_once(notify_send_once_, [this] {
    notify_send_fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    notify_udp_fd_ = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  });
  const uint32_t me = node_id();
  for (uint32_t i = 1; i < region_->max_clients(); ++i) {
    region::ClientSlotHeader& slot = region_->slot(i);
    // A hint. A subscriber publishes its token before it reads its ring
    // cursor, and this runs after the event's publication (seq_cst fence in
    // NotifyIfWatched), so it sees either the token or the manager wakes it;
    // a stale token costs one refused datagram. Acquire: pairs with the
    // release store of the token, after notify_inet.
    const uint64_t token = slot.notify_token.load(std::memory_order_acquire);
    if (token == 0 ||
        !region::NotifyTokenValid(token, slot.state.load(std::memory_order_relaxed))) {
      continue;
    }
    // Relaxed: written before the token (above). Any value another client
    // wrote here is only an address to send one byte to.
    const uint64_t inet = slot.notify_inet.load(std::memory_order_relaxed);
    const bool udp = region::NotifyInetValid(inet) && notify_udp_fd_ >= 0;
    if (!udp && (slot.node_id.load(std::memory_order_relaxed) != me || notify_send_fd_ < 0)) {
      continue;  // out of reach: the manager wakes it
    }
    // Only a subscriber that is about to sleep needs the datagram, and only
    // one producer sends it. Relaxed: the caller's seq_cst fence, after the
    // event's publication, pairs with the subscriber's fence after it arms
    // (NextNotification); the load first keeps a busy subscriber's line
    // shared.
    if (slot.notify_armed.load(std::memory_order_relaxed) == 0 ||
        slot.notify_armed.exchange(0, std::memory_order_relaxed) == 0) {
      continue;
    }
    if (udp) {
      sockaddr_in to{};
      to.sin_family = AF_INET;
      to.sin_addr.s_addr = htonl(region::NotifyInetAddress(inet));
      to.sin_port = htons(region::NotifyInetPort(inet));
      SendWake(notify_udp_fd_, &to, sizeof to);
    } else {
      sockaddr_un addr;
      const socklen_t len = AbstractAddress(region_->NotifySocketName(i, token), &addr);
      SendWake(notify_send_fd_, &addr, len);
    }
  }
}

Status ClientImpl::OpenEventSocket(const std::unique_lock<std::mutex>& sub) {
  GISMO_DCHECK(sub.owns_lock() && sub.mutex() == &sub_mu_);  // REQUIRES: sub_mu_
  GISMO_DCHECK(LoadAcquire(event_fd_) < 0);
  // The fd the subscriber polls: a datagram socket that sealers and
  // deleters wake directly, without the manager. Over TCP, a UDP socket
  // beside this client's end of the connection, published in the slot
  // (notify_inet) for every node; else one at this slot's abstract notify
  // name, for this node. Should the name be taken (a process of the same
  // node holding it), the kernel picks one and only the manager's wake-ups
  // arrive. The session, hence the token, is this client's for life: a
  // re-attach keeps it.
  const uint64_t token = region::NotifyToken(session());
  int efd = -1;
  if (address_.kind == protocol::Address::Kind::kTcp) {
    sockaddr_in udp{};
    {
      std::lock_guard<std::mutex> lk(fd_mu_);  // fd_ is replaced under it
      efd = BindUdpBeside(fd_, &udp);
    }
    if (efd >= 0) {
      notify_inet_ = region::NotifyInetWord(ntohl(udp.sin_addr.s_addr), ntohs(udp.sin_port));
      std::memcpy(&event_addr_, &udp, sizeof udp);
      event_addr_len_ = sizeof udp;
      notify_token_ = token;
    }
  }
  if (efd < 0) {
    efd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (efd < 0) return Status(GISMO_ERR_IO, std::string("socket: ") + std::strerror(errno));
    sockaddr_un addr;
    socklen_t len = AbstractAddress(region_->NotifySocketName(slot(), token), &addr);
    notify_token_ = token;
    if (bind(efd, reinterpret_cast<const sockaddr*>(&addr), len) != 0) {
      notify_token_ = 0;
      sockaddr_un any{};
      any.sun_family = AF_UNIX;
      len = sizeof any;
      if (bind(efd, reinterpret_cast<const sockaddr*>(&any), sizeof(sa_family_t)) != 0 ||
          getsockname(efd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        const int err = errno;
        close(efd);
        return Status(GISMO_ERR_IO,
                      std::string("binding the subscription socket: ") + std::strerror(err));
      }
    }
    std::memcpy(&event_addr_, &addr, len);
    event_addr_len_ = len;
  }
  StoreRelease(event_fd_, efd);
  return Status();
}

Status ClientImpl::Subscribe(int* fd) {
  std::unique_lock<std::mutex> sub(sub_mu_);
  if (Status s = CheckAlive(); !s.ok()) return s;
  if (subscribed_) {
    *fd = LoadAcquire(event_fd_);
    return Status();
  }
  // A retry after a failed attempt (no acknowledgement in time) keeps that
  // attempt's socket: the receiver thread may be sending to it, so it is
  // never closed before the client is, and one client holds one.
  if (LoadAcquire(event_fd_) < 0) {
    if (Status s = OpenEventSocket(sub); !s.ok()) return s;
  }
  const int efd = LoadAcquire(event_fd_);
  // Written before the token is published (release, below), which guards
  // them; armed from the start, as the fd may be polled before any Next.
  // A non-coherent region's slot header is the manager's line: there the
  // owner's kNotify is the only wake-up (sealers wake nobody directly).
  const bool direct = !store_->noncoherent();
  if (direct) {
    region_->slot(slot()).notify_inet.store(notify_inet_, std::memory_order_relaxed);
    region_->slot(slot()).notify_armed.store(1, std::memory_order_relaxed);
  }
  // Once the manager acknowledges, `waiters` is raised: every seal or delete
  // after our ring cursor is read below will wake us (see NotifyIfWatched).
  // Subscriptions are the manager's memory: a connection that breaks before
  // the acknowledgement took the request with it, so it is sent again on
  // the next one (as RegisterWait does), until acknowledged or the bound.
  {
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(kHandshakeTimeoutMs);
    std::unique_lock<std::mutex> lk(state_mu_);
    for (;;) {
      const uint64_t epoch = connection_epoch_;
      const uint64_t id = IncrementRelaxed(next_request_);
      // Open until acknowledged (the receiver erases it then), refused, or
      // given up here; a re-attach drops it too, and moves the epoch on.
      open_requests_.emplace(id, MsgType::kSubscribe);
      lk.unlock();
      // A failed send means the connection is down: the re-attach moves
      // the epoch on, and we send again.
      protocol::Writer w;
      (void)Send(w.Frame(MsgType::kSubscribe, id), kRequestSendMs);
      lk.lock();
      // subscribe_acked_: the manager acknowledged a subscription of ours
      // (this one, or a late one of an earlier attempt); from then on every
      // re-attach subscribes again (ReceiverLoop).
      state_cv_.wait_until(lk, deadline, [&] {
        return subscribe_acked_ || request_errors_.count(id) || LoadAcquire(lost_) ||
               connection_epoch_ != epoch;
      });
      Status refused;
      if (auto e = request_errors_.find(id); e != request_errors_.end()) refused = e->second;
      open_requests_.erase(id);
      request_errors_.erase(id);
      if (!refused.ok()) return refused;
      if (subscribe_acked_) break;
      if (LoadAcquire(lost_)) {
        return Status(GISMO_ERR_CONNECTION, "the connection to the manager is lost (" +
                                                lost_reason_ + "); connect again");
      }
      if (connection_epoch_ == epoch || std::chrono::steady_clock::now() >= deadline) {
        return Status(GISMO_ERR_CONNECTION, "the manager did not acknowledge the subscription");
      }
    }
  }
  // Published before the cursor is read (and the fence orders the two): an
  // event after the cursor finds the token and wakes us directly.
  if (direct) region_->slot(slot()).notify_token.store(notify_token_, std::memory_order_release);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  cursor_ = store::EventHead(*region_);
  StoreRelease(cursor_seen_, cursor_);
  {
    std::lock_guard<std::mutex> op(op_mu_);
    initial_.clear();  // a failed attempt may have listed part of it
    ForgetWindow(sub);
    Status listed = store_->ForEach([&](const gismo_object_info_t& info) {
      if (info.state != GISMO_STATE_SEALED) return;
      gismo_notification_t n{};
      n.event = GISMO_EVENT_SEALED;
      n.id = info.id;
      n.data_size = info.data_size;
      n.metadata_size = info.metadata_size;
      n.node = info.creator_node;
      initial_.push_back(n);
      initial_ids_.push_back(IdKey(info.id));
    });
    if (!listed.ok()) return listed;
    std::sort(initial_ids_.begin(), initial_ids_.end());
  }
  snapshot_end_ = store::EventHead(*region_);
  subscribed_ = true;
  if (!initial_.empty() || cursor_ < store::EventHead(*region_)) {
    WakeSubscriber();
  }
  *fd = efd;
  return Status();
}

void ClientImpl::ForgetWindow(const std::unique_lock<std::mutex>& sub) {
  GISMO_DCHECK(sub.owns_lock() && sub.mutex() == &sub_mu_);
  std::vector<std::array<uint8_t, GISMO_ID_SIZE>>().swap(initial_ids_);  // its memory too
  initial_deleted_.clear();
  window_sealed_.clear();
}

Status ClientImpl::NextNotification(gismo_notification_t* out, int64_t timeout_ms) {
  const auto deadline = SteadyDeadline(timeout_ms, std::chrono::steady_clock::now());
  const bool forever = deadline == std::chrono::steady_clock::time_point::max();
  for (;;) {
    int efd;
    {
      std::unique_lock<std::mutex> sub(sub_mu_);
      if (!subscribed_) {
        return Status(GISMO_ERR_INVALID_ARGUMENT, "this client has not subscribed");
      }
      efd = LoadAcquire(event_fd_);
      if (!initial_.empty()) {
        *out = initial_.front();
        initial_.pop_front();
        return Status();
      }
      // Two passes: drain the fd and arm between them, so a wake that
      // arrives after the second look leaves the fd readable for the poll
      // below, and a producer that publishes after it sends one.
      for (int pass = 0; pass < 2; ++pass) {
        store::RingEvent ev;
        for (;;) {
          store::RingRead rr = store::ReadEvent(*region_, &cursor_, &ev);
          if (rr == store::RingRead::kOverflow) {
            cursor_ = store::EventHead(*region_);
            StoreRelease(cursor_seen_, cursor_);
            ForgetWindow(sub);
            *out = gismo_notification_t{};
            out->event = GISMO_EVENT_OVERFLOW;
            return Status();
          }
          if (rr == store::RingRead::kNothing) break;
          if (ev.seq < snapshot_end_) {
            const auto key = IdKey(ev.id);
            const bool listed = std::binary_search(initial_ids_.begin(), initial_ids_.end(), key) &&
                                initial_deleted_.count(key) == 0;
            if (ev.kind == region::EventKind::kSealed) {
              if (listed) continue;  // the initial listing reported it
              window_sealed_.insert(key);
            } else {
              if (!listed && !window_sealed_.count(key)) continue;  // never seen sealed
              if (listed) initial_deleted_.insert(key);
              window_sealed_.erase(key);
            }
          } else if (!initial_ids_.empty() || !window_sealed_.empty()) {
            ForgetWindow(sub);
          }
          *out = gismo_notification_t{};
          out->event =
              ev.kind == region::EventKind::kSealed ? GISMO_EVENT_SEALED : GISMO_EVENT_DELETED;
          out->id = ev.id;
          out->data_size = ev.data_size;
          out->metadata_size = ev.metadata_size;
          out->node = ev.node;
          out->reason = static_cast<uint32_t>(ev.reason);
          out->seq = ev.seq;
          return Status();
        }
        if (pass == 0) {
          StoreRelease(cursor_seen_, cursor_);
          Drain(efd);
          // Pairs with the producer's fence before it reads notify_armed:
          // either the second pass sees its event or it sees us armed.
          if (!store_->noncoherent()) {
            region_->slot(slot()).notify_armed.store(1, std::memory_order_relaxed);
          }
          std::atomic_thread_fence(std::memory_order_seq_cst);
        }
      }
    }
    if (Status s = CheckAlive(); !s.ok()) return s;
    int wait_ms = -1;
    if (!forever) {
      const auto now = std::chrono::steady_clock::now();
      if (now >= deadline) return Status(GISMO_ERR_TIMEOUT, "no notification");
      // Rounded up: a wait of less than a millisecond left still polls
      // (rounded down it would be 0, and a 1 ms timeout would never wait).
      auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - now);
      wait_ms = static_cast<int>(std::min<int64_t>(left.count(), 1000));
    } else {
      wait_ms = 1000;  // re-check the connection now and then
    }
    pollfd p{efd, POLLIN, 0};
    int rc = poll(&p, 1, wait_ms);
    if (rc < 0 && errno != EINTR) {
      return Status(GISMO_ERR_IO, std::string("poll: ") + std::strerror(errno));
    }
  }
}

}  // namespace gismo::client
