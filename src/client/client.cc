#include "client/client.h"

#include <errno.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>

#include "common/clock.h"
#include "fence/process.h"
#include "protocol/handshake.h"

namespace gismo::client {

using protocol::MsgType;

namespace {

constexpr int kConnectTimeoutMs = 5000;
constexpr int kHandshakeTimeoutMs = 10000;
constexpr int kGoodbyeTimeoutMs = 10000;

uint32_t NodeFromEnv() {
  const char* n = getenv("GISMO_NODE");
  if (n == nullptr || *n == '\0') return 0;
  char* end = nullptr;
  unsigned long v = strtoul(n, &end, 10);
  return (end && *end == '\0' && v <= 0xffffffffUL) ? static_cast<uint32_t>(v) : 0;
}

Status RecvFrameWithin(int fd, int timeout_ms, protocol::FrameHeader* h,
                       std::vector<uint8_t>* payload) {
  pollfd p{fd, POLLIN, 0};
  int rc;
  do {
    rc = poll(&p, 1, timeout_ms);
  } while (rc < 0 && errno == EINTR);
  if (rc == 0) return Status(GISMO_ERR_TIMEOUT, "the manager did not answer in time");
  return protocol::RecvFrame(fd, h, payload);
}

// The admission handshake (protocol/auth.h): the cluster key of
// $GISMO_KEY_FILE if set, and the proof that `region` is mapped here.
// `refused` (may be null): the manager answered, and said no.
Status Handshake(int fd, const protocol::Hello& hello, const std::string& addr_text,
                 const protocol::ProveFn& prove, protocol::Welcome* welcome,
                 bool* refused = nullptr) {
  auto key = protocol::KeyFromEnv();
  if (!key.ok()) return key.status();
  protocol::HandshakeResult result;
  Status s =
      protocol::Handshake(fd, hello, *key, prove, addr_text, kHandshakeTimeoutMs, &result, refused);
  if (s.ok()) *welcome = result.welcome;
  return s;
}

// RegionProof of the region mapped at `r`.
protocol::Mac ProveRegion(const region::Region& r, const protocol::Nonce& server,
                          const protocol::Nonce& client) {
  // Acquire: pairs with the manager's release store before its Access.
  const region::ClientSlotHeader& m = r.slot(0);
  const uint64_t secret[2] = {m.admission_secret[0].load(std::memory_order_acquire),
                              m.admission_secret[1].load(std::memory_order_acquire)};
  return protocol::RegionProof(secret, server, client);
}

}  // namespace

Result<std::unique_ptr<ClientImpl>> ClientImpl::Connect(const char* address) {
  std::string addr_text;
  if (address != nullptr && *address != '\0') {
    addr_text = address;
  } else if (const char* env = getenv("GISMO_ADDRESS"); env != nullptr && *env != '\0') {
    addr_text = env;
  } else {
    auto def = protocol::DefaultAddress(/*create=*/false);
    if (!def.ok()) return def.status();
    addr_text = *def;
  }
  auto addr = protocol::ParseAddress(addr_text);
  if (!addr.ok()) return addr.status();
  auto fd = protocol::ConnectTo(*addr, kConnectTimeoutMs);
  if (!fd.ok()) return fd.status();

  std::unique_ptr<ClientImpl> c(new ClientImpl());
  c->fd_ = *fd;
  c->address_ = *addr;
  c->address_text_ = addr_text;
  protocol::Hello hello;
  hello.node_id = NodeFromEnv();
  hello.pid = static_cast<uint64_t>(getpid());
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  hello.host = host;
  hello.name = program_invocation_short_name;
  const fence::ProcessIdentity me = fence::Self();
  hello.identity[0] = me.boot_id;
  hello.identity[1] = me.pid_ns;
  hello.identity[2] = me.pid;
  hello.identity[3] = me.start_time;
  c->hello_ = hello;
  // The region is mapped before the manager gives a slot: the proof.
  std::unique_ptr<region::Region> mapped;
  std::string path;
  auto prove = [&](const protocol::Access& access, const protocol::Nonce& server,
                   const protocol::Nonce& client) -> Result<protocol::Mac> {
    // A host may see the shared device under another path.
    path = access.region_path;
    if (const char* env = getenv("GISMO_REGION"); env != nullptr && *env != '\0') path = env;
    if (path.empty()) {
      return Status(GISMO_ERR_PERMISSION,
                    "the manager at " + addr_text +
                        " does not tell a peer without the cluster key where the region is: set "
                        "GISMO_REGION to its path here (or GISMO_KEY_FILE)");
    }
    auto region = region::Region::Open(path);
    if (!region.ok()) return region.status();
    const region::Superblock& sb = (*region)->sb();
    if (sb.uuid[0] != access.uuid[0] || sb.uuid[1] != access.uuid[1] ||
        sb.region_size != access.region_size) {
      return Status(GISMO_ERR_BAD_REGION, "the region at '" + path +
                                              "' is not the one the manager at " + addr_text +
                                              " serves (set GISMO_REGION to its path here)");
    }
    mapped = std::move(*region);
    return ProveRegion(*mapped, server, client);
  };
  if (Status s = Handshake(c->fd_, hello, addr_text, prove, &c->welcome_); !s.ok()) return s;
  const protocol::Welcome& w = c->welcome_;
  // Admitted but unable to go on: say goodbye, so the manager frees the slot
  // now instead of suspecting a live process that went quiet.
  auto abandon = [&c](Status why) {
    protocol::Writer bye;
    const auto frame = bye.Frame(MsgType::kGoodbye, 0);
    if (protocol::SendAll(c->fd_, frame.data(), frame.size()).ok()) {
      protocol::FrameHeader h;
      std::vector<uint8_t> payload;
      (void)RecvFrameWithin(c->fd_, kGoodbyeTimeoutMs, &h, &payload);
    }
    return why;
  };
  const region::Superblock& sb = mapped->sb();
  if (sb.uuid[0] != w.uuid[0] || sb.uuid[1] != w.uuid[1] || sb.region_size != w.region_size) {
    return abandon(Status(GISMO_ERR_BAD_REGION, "the region at '" + path +
                                                    "' is not the one the manager at " + addr_text +
                                                    " serves (set GISMO_REGION to its path here)"));
  }
  c->region_ = std::move(mapped);
  c->store_ = std::make_unique<store::Store>(*c->region_, w.slot, w.session, w.node_id);
  if (!c->store_->SlotAlive()) {
    return abandon(
        Status(GISMO_ERR_PROTOCOL, "the manager assigned a client slot that is not active"));
  }
  c->hello_.role = protocol::Role::kReattach;
  c->hello_.slot = w.slot;
  c->hello_.session = w.session;
  c->hello_.client_id = w.client_id;
  c->hello_.uuid[0] = w.uuid[0];
  c->hello_.uuid[1] = w.uuid[1];
  c->receiver_ = std::thread([raw = c.get()] { raw->ReceiverLoop(); });
  return c;
}

ClientImpl::~ClientImpl() {
  closing_ = true;
  ShutdownConnection();
  if (receiver_.joinable()) receiver_.join();
  if (fd_ >= 0) close(fd_);
  if (int efd = event_fd_.exchange(-1); efd >= 0) close(efd);
}

Status ClientImpl::Disconnect() {
  Status result;
  if (!lost_.load()) {
    std::lock_guard<std::mutex> op(op_mu_);  // let a running operation finish
    protocol::Writer w;
    if (Send(w.Frame(MsgType::kGoodbye, 0)).ok()) {
      GISMO_CRASH_POINT("disconnect.after_goodbye");
      std::unique_lock<std::mutex> lk(state_mu_);
      bool done = state_cv_.wait_for(lk, std::chrono::milliseconds(kGoodbyeTimeoutMs),
                                     [&] { return bye_ || lost_.load(); });
      if (!done) result = Status(GISMO_ERR_TIMEOUT, "the manager did not confirm the disconnect");
    }
  }
  closing_ = true;
  ShutdownConnection();
  if (receiver_.joinable()) receiver_.join();
  return result;
}

Status ClientImpl::CheckAlive() const {
  if (lost_.load(std::memory_order_relaxed)) {
    std::lock_guard<std::mutex> lk(state_mu_);
    return Status(GISMO_ERR_CONNECTION,
                  "the connection to the manager is lost (" + lost_reason_ + "); connect again");
  }
  if (!store_->SlotAlive()) {
    return Status(GISMO_ERR_CONNECTION,
                  "the manager has ended this client's session (lease expired?); connect again");
  }
  return Status();
}

Status ClientImpl::Send(const std::vector<uint8_t>& frame) {
  std::lock_guard<std::mutex> lk(send_mu_);
  return protocol::SendAll(fd_, frame.data(), frame.size());
}

void ClientImpl::MarkLost(const std::string& why) {
  std::lock_guard<std::mutex> lk(state_mu_);
  if (!lost_.load()) lost_reason_ = why;
  lost_ = true;
  state_cv_.notify_all();
  // A subscriber waiting on the fd learns it from the next call.
  if (int efd = event_fd_.load(); efd >= 0) {
    uint64_t one = 1;
    (void)!write(efd, &one, sizeof one);
  }
}

void ClientImpl::ShutdownConnection() {
  std::lock_guard<std::mutex> lk(send_mu_);
  if (fd_ >= 0) shutdown(fd_, SHUT_RDWR);
}

// The connection is gone but this client is not: its slot, references and
// unsealed objects live in the region, and object operations need no
// manager. It re-attaches (to the same manager, or a new one on the same
// address) for as long as its session is live there; a manager that has
// suspected it refuses, and only then is the client lost.
bool ClientImpl::Reattach(std::string* why) {
  uint32_t backoff_ms = 10;
  while (!closing_.load(std::memory_order_relaxed)) {
    if (!store_->SlotAlive()) {
      *why = "the manager ended this client's session (its lease expired?)";
      return false;
    }
    auto fd = protocol::ConnectTo(address_, kConnectTimeoutMs);
    if (fd.ok()) {
      protocol::Welcome w;
      bool refused = false;
      Status s = Handshake(
          *fd, hello_, address_text_,
          [this](const protocol::Access&, const protocol::Nonce& server,
                 const protocol::Nonce& client) -> Result<protocol::Mac> {
            return ProveRegion(*region_, server, client);
          },
          &w, &refused);
      if (s.ok()) {
        int old;
        {
          std::lock_guard<std::mutex> lk(send_mu_);
          old = fd_;
          fd_ = *fd;
        }
        close(old);
        welcome_.lease_ms = w.lease_ms;
        welcome_.manager_epoch = w.manager_epoch;
        std::lock_guard<std::mutex> lk(state_mu_);
        ++connection_epoch_;
        acked_waits_.clear();
        ++wake_seq_;  // waiters register again and re-check
        state_cv_.notify_all();
        return true;
      }
      close(*fd);
      if (refused) {
        *why = s.message();
        return false;
      }
    }
    std::unique_lock<std::mutex> lk(state_mu_);
    state_cv_.wait_for(lk, std::chrono::milliseconds(backoff_ms),
                       [&] { return closing_.load(std::memory_order_relaxed); });
    backoff_ms = std::min<uint32_t>(backoff_ms * 2, 500);
  }
  *why = "disconnected";
  return false;
}

void ClientImpl::ReceiverLoop() {
  std::vector<uint8_t> payload;
  for (;;) {
    std::string why;
    if (RunConnection(&payload, &why) || closing_.load()) {
      MarkLost(closing_.load() ? "disconnected" : why);
      return;
    }
    if (!Reattach(&why)) {
      MarkLost(why);
      return;
    }
    // Subscriptions are the manager's memory: tell the new one.
    bool resubscribe;
    {
      std::lock_guard<std::mutex> lk(state_mu_);
      resubscribe = subscribe_acked_;
    }
    if (resubscribe) {
      protocol::Writer w;
      (void)Send(w.Frame(MsgType::kSubscribe, next_request_.fetch_add(1)));
      if (int efd = event_fd_.load(); efd >= 0) {
        uint64_t one = 1;
        (void)!write(efd, &one, sizeof one);
      }
    }
  }
}

// Serves one connection until it fails (returns false, `why` says how) or
// the manager ends the session (returns true).
bool ClientImpl::RunConnection(std::vector<uint8_t>* payload, std::string* why) {
  const int heartbeat_ms = welcome_.lease_ms > 0 ? std::max<int>(50, welcome_.lease_ms / 4) : -1;
  uint64_t last_beat = MonotonicNs();
  const int fd = fd_;  // only this thread replaces it
  while (!closing_.load()) {
    int wait_ms = heartbeat_ms;
    if (heartbeat_ms > 0) {
      uint64_t since = (MonotonicNs() - last_beat) / 1000000;
      wait_ms =
          since >= static_cast<uint64_t>(heartbeat_ms) ? 0 : heartbeat_ms - static_cast<int>(since);
    }
    pollfd p{fd, POLLIN, 0};
    int rc = poll(&p, 1, wait_ms);
    if (rc < 0 && errno == EINTR) continue;
    if (rc == 0 || (heartbeat_ms > 0 &&
                    (MonotonicNs() - last_beat) / 1000000 >= static_cast<uint64_t>(heartbeat_ms))) {
      protocol::Writer w;
      if (!Send(w.Frame(MsgType::kHeartbeat, 0)).ok()) {
        *why = "cannot reach the manager";
        return false;
      }
      last_beat = MonotonicNs();
      if (rc == 0) continue;
    }
    protocol::FrameHeader h;
    Status s = protocol::RecvFrame(fd, &h, payload);
    if (!s.ok()) {
      *why = s.message();
      return false;
    }
    std::lock_guard<std::mutex> lk(state_mu_);
    switch (h.type) {
      case MsgType::kWaitAck:
        acked_waits_.insert(h.request_id);
        break;
      case MsgType::kWake:
        ++wake_seq_;
        break;
      case MsgType::kBye:
        bye_ = true;
        break;
      case MsgType::kSubscribeAck:
        subscribe_acked_ = true;
        break;
      case MsgType::kFenceReply: {
        protocol::Reader rd(*payload);
        const auto code = static_cast<gismo_status_t>(rd.U32());
        std::string msg = rd.Str();
        fence_replies_[h.request_id] =
            rd.ok() ? (code == GISMO_OK ? Status(GISMO_OK, msg) : Status(code, msg))
                    : Status(GISMO_ERR_PROTOCOL, "malformed fence reply");
        break;
      }
      case MsgType::kNotify:
        if (int efd = event_fd_.load(); efd >= 0) {
          uint64_t one = 1;
          (void)!write(efd, &one, sizeof one);
        }
        break;
      case MsgType::kError: {
        protocol::Reader rd(*payload);
        Status err = protocol::DecodeError(rd);
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

Status ClientImpl::Fence(const protocol::FenceOrder& order, std::string* what) {
  if (Status s = CheckAlive(); !s.ok()) return s;
  const uint64_t id = next_request_.fetch_add(1);
  if (Status s = Send(protocol::EncodeFenceOrder(id, order)); !s.ok()) return s;
  std::unique_lock<std::mutex> lk(state_mu_);
  const bool done = state_cv_.wait_for(lk, std::chrono::milliseconds(kHandshakeTimeoutMs), [&] {
    return fence_replies_.count(id) > 0 || lost_.load();
  });
  if (!done) return Status(GISMO_ERR_TIMEOUT, "the manager did not answer the fence order");
  if (!fence_replies_.count(id)) return Status(GISMO_ERR_CONNECTION, "lost the manager");
  Status r = fence_replies_[id];
  fence_replies_.erase(id);
  if (r.code() != GISMO_OK) return r;
  *what = r.message();
  return Status();
}

void ClientImpl::NotifyIfWatched(MsgType type, const gismo_id_t& id, bool ring_event) {
  // Pairs with the manager raising a shard's `waiters` (or `subscribers`)
  // before it acknowledges a wait (or subscription): either the waiter's
  // re-check sees our change, or we see its registration.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  region::Superblock& sb = region_->sb();
  const uint32_t shard = region_->ShardOf(store::HashId(id));
  bool tell = region_->shard(shard).waiters.load(std::memory_order_relaxed) != 0;
  if (!tell && ring_event && sb.subscribers.load(std::memory_order_relaxed) != 0) {
    // One pending kick covers every event published before the manager
    // clears it (see Superblock::kick_pending).
    tell = !sb.kick_pending.exchange(1, std::memory_order_seq_cst);
  }
  if (!tell) return;
  protocol::Writer w;
  w.Id(id);
  (void)Send(w.Frame(type, 0));
}

Status ClientImpl::Create(const gismo_id_t& id, size_t data_size, const void* metadata,
                          size_t metadata_size, void** data) {
  std::lock_guard<std::mutex> op(op_mu_);
  if (Status s = CheckAlive(); !s.ok()) return s;
  return store_->Create(id, data_size, metadata, metadata_size, data);
}

Status ClientImpl::Seal(const gismo_id_t& id) {
  {
    std::lock_guard<std::mutex> op(op_mu_);
    if (Status s = CheckAlive(); !s.ok()) return s;
    if (Status s = store_->Seal(id); !s.ok()) return s;
  }
  NotifyIfWatched(MsgType::kSealed, id);
  return Status();
}

Status ClientImpl::Abort(const gismo_id_t& id) {
  {
    std::lock_guard<std::mutex> op(op_mu_);
    if (Status s = CheckAlive(); !s.ok()) return s;
    if (Status s = store_->Abort(id); !s.ok()) return s;
  }
  // Getters waiting for it re-check (one of them may create it now).
  NotifyIfWatched(MsgType::kDeleted, id, /*ring_event=*/false);
  return Status();
}

Status ClientImpl::Release(const gismo_id_t& id) {
  std::lock_guard<std::mutex> op(op_mu_);
  if (Status s = CheckAlive(); !s.ok()) return s;
  return store_->Release(id);
}

Status ClientImpl::Delete(const gismo_id_t& id) {
  {
    std::lock_guard<std::mutex> op(op_mu_);
    if (Status s = CheckAlive(); !s.ok()) return s;
    if (Status s = store_->Delete(id); !s.ok()) return s;
  }
  NotifyIfWatched(MsgType::kDeleted, id);
  return Status();
}

Status ClientImpl::Contains(const gismo_id_t& id, bool* contains) {
  std::lock_guard<std::mutex> op(op_mu_);
  if (Status s = CheckAlive(); !s.ok()) return s;
  return store_->Contains(id, contains);
}

Status ClientImpl::Stat(const gismo_id_t& id, gismo_object_info_t* info) {
  std::lock_guard<std::mutex> op(op_mu_);
  if (Status s = CheckAlive(); !s.ok()) return s;
  return store_->Stat(id, info);
}

Status ClientImpl::List(gismo_object_info_t* infos, size_t capacity, size_t* count) {
  std::lock_guard<std::mutex> op(op_mu_);
  if (Status s = CheckAlive(); !s.ok()) return s;
  size_t n = 0;
  Status listed = store_->ForEach([&](const gismo_object_info_t& info) {
    if (n < capacity) infos[n] = info;
    ++n;
  });
  *count = n;
  return listed;
}

Status ClientImpl::Usage(gismo_usage_t* usage) {
  std::lock_guard<std::mutex> op(op_mu_);
  if (Status s = CheckAlive(); !s.ok()) return s;
  return store_->Usage(usage);
}

namespace {
std::string IdKey(const gismo_id_t& id) {
  return std::string(reinterpret_cast<const char*>(id.bytes), GISMO_ID_SIZE);
}
void Poke(int efd) {
  uint64_t one = 1;
  (void)!write(efd, &one, sizeof one);
}
void Drain(int efd) {
  uint64_t v;
  (void)!read(efd, &v, sizeof v);
}
}  // namespace

Status ClientImpl::Subscribe(int* fd) {
  std::lock_guard<std::mutex> sub(sub_mu_);
  if (Status s = CheckAlive(); !s.ok()) return s;
  if (subscribed_) {
    *fd = event_fd_.load();
    return Status();
  }
  int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (efd < 0) return Status(GISMO_ERR_IO, std::string("eventfd: ") + std::strerror(errno));
  event_fd_ = efd;
  // Once the manager acknowledges, `waiters` is raised: every seal or delete
  // after our ring cursor is read below will wake us (see NotifyIfWatched).
  protocol::Writer w;
  if (Status s = Send(w.Frame(MsgType::kSubscribe, next_request_.fetch_add(1))); !s.ok()) {
    return s;
  }
  {
    std::unique_lock<std::mutex> lk(state_mu_);
    state_cv_.wait_for(lk, std::chrono::milliseconds(kHandshakeTimeoutMs),
                       [&] { return subscribe_acked_ || lost_.load(); });
    if (!subscribe_acked_) {
      return Status(GISMO_ERR_CONNECTION, "the manager did not acknowledge the subscription");
    }
  }
  cursor_ = region_->event_ring().head.load(std::memory_order_acquire);
  {
    std::lock_guard<std::mutex> op(op_mu_);
    Status listed = store_->ForEach([&](const gismo_object_info_t& info) {
      if (info.state != GISMO_STATE_SEALED) return;
      gismo_notification_t n{};
      n.event = GISMO_EVENT_SEALED;
      n.id = info.id;
      n.data_size = info.data_size;
      n.metadata_size = info.metadata_size;
      n.node = info.creator_node;
      initial_.push_back(n);
      initial_ids_.insert(IdKey(info.id));
    });
    if (!listed.ok()) return listed;
  }
  snapshot_end_ = region_->event_ring().head.load(std::memory_order_acquire);
  subscribed_ = true;
  if (!initial_.empty() || cursor_ < region_->event_ring().head.load(std::memory_order_acquire)) {
    Poke(efd);
  }
  *fd = efd;
  return Status();
}

Status ClientImpl::NextNotification(gismo_notification_t* out, int64_t timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    int efd;
    {
      std::lock_guard<std::mutex> sub(sub_mu_);
      if (!subscribed_) {
        return Status(GISMO_ERR_INVALID_ARGUMENT, "this client has not subscribed");
      }
      efd = event_fd_.load();
      if (!initial_.empty()) {
        *out = initial_.front();
        initial_.pop_front();
        return Status();
      }
      // Two passes: drain the fd between them, so a wake that arrives after
      // the second look leaves the fd readable for the poll below.
      for (int pass = 0; pass < 2; ++pass) {
        store::RingEvent ev;
        for (;;) {
          store::RingRead rr = store::ReadEvent(*region_, &cursor_, &ev);
          if (rr == store::RingRead::kOverflow) {
            cursor_ = region_->event_ring().head.load(std::memory_order_acquire);
            initial_ids_.clear();
            window_sealed_.clear();
            *out = gismo_notification_t{};
            out->event = GISMO_EVENT_OVERFLOW;
            return Status();
          }
          if (rr == store::RingRead::kNothing) break;
          if (ev.seq < snapshot_end_) {
            const std::string key = IdKey(ev.id);
            const bool listed = initial_ids_.count(key) > 0;
            if (ev.kind == region::EventKind::kSealed) {
              if (listed) continue;  // the initial listing reported it
              window_sealed_.insert(key);
            } else {
              if (!listed && !window_sealed_.count(key)) continue;  // never seen sealed
              initial_ids_.erase(key);
              window_sealed_.erase(key);
            }
          } else if (!initial_ids_.empty() || !window_sealed_.empty()) {
            initial_ids_.clear();
            window_sealed_.clear();
          }
          *out = gismo_notification_t{};
          out->event =
              ev.kind == region::EventKind::kSealed ? GISMO_EVENT_SEALED : GISMO_EVENT_DELETED;
          out->id = ev.id;
          out->data_size = ev.data_size;
          out->metadata_size = ev.metadata_size;
          out->node = ev.node;
          out->seq = ev.seq;
          return Status();
        }
        if (pass == 0) Drain(efd);
      }
    }
    if (Status s = CheckAlive(); !s.ok()) return s;
    int wait_ms = -1;
    if (timeout_ms >= 0) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return Status(GISMO_ERR_TIMEOUT, "no notification");
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

Status ClientImpl::ListClients(gismo_client_info_t* infos, size_t capacity, size_t* count) {
  if (Status s = CheckAlive(); !s.ok()) return s;
  size_t n = 0;
  store_->ForEachClient([&](const gismo_client_info_t& info) {
    if (n < capacity) infos[n] = info;
    ++n;
  });
  *count = n;
  return Status();
}

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
  const uint64_t wait_id = next_request_.fetch_add(1);
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
      return acked_waits_.count(wait_id) > 0 || lost_.load() || connection_epoch_ != epoch;
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
    bool woke = wait_until(lk, [&] { return wake_seq_ != seen || lost_.load(); });
    if (lost_.load()) {
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
  if (!lost_.load()) {
    protocol::Writer c;
    (void)Send(c.Frame(MsgType::kCancelWait, wait_id));
  }
  return result;
}

}  // namespace gismo::client
