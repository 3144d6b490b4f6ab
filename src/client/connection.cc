// Connecting, the handshake, re-attaching after a lost connection,
// disconnecting, and the liveness check every operation starts with.
#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <new>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>

#include "client/client.h"
#include "common/atomic.h"
#include "common/background_thread.h"
#include "common/clock.h"
#include "fence/process.h"
#include "protocol/handshake.h"
#include "region/cache_lines.h"

namespace gismo::client {

using protocol::MsgType;

namespace {

// $GISMO_NODE, a decimal node id (unset or empty: node 0).
Result<uint32_t> NodeFromEnv() {
  const char* n = getenv("GISMO_NODE");
  if (n == nullptr || *n == '\0') return uint32_t{0};
  const std::string_view text(n);
  uint32_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size()) {
    return Status(GISMO_ERR_INVALID_ARGUMENT,
                  "GISMO_NODE must be a node id, a decimal number from 0 to 4294967295; got '" +
                      std::string(text) + "'");
  }
  return v;
}

// The admission handshake (protocol/auth.h): the cluster key, if any, and
// the proof that `region` is mapped here. `refused` (may be null): the
// manager answered, and said no. *auth: a keyed connection's frame tags.
Status Handshake(int fd, const protocol::Hello& hello, const std::optional<protocol::Key>& key,
                 const std::string& addr_text, const protocol::ProveFn& prove,
                 protocol::Welcome* welcome, std::optional<protocol::FrameAuth>* auth,
                 bool* refused = nullptr) {
  protocol::HandshakeResult result;
  Status s =
      protocol::Handshake(fd, hello, key, prove, addr_text, kHandshakeTimeoutMs, &result, refused);
  if (s.ok()) {
    *welcome = result.welcome;
    *auth = std::move(result.auth);
  }
  return s;
}

// RegionProof of the region mapped at `r`.
protocol::Mac ProveRegion(const region::Region& r, const protocol::Nonce& server,
                          const protocol::Nonce& client) {
  // Acquire: pairs with the manager's release store before its Access.
  const region::ClientSlotHeader& m = r.slot(0);
  // A non-coherent region: this host may hold the line as an earlier
  // manager wrote it (a re-attach after a restart).
  if (r.noncoherent()) region::InvalidateLines(&m.admission_secret, sizeof m.admission_secret);
  const uint64_t secret[2] = {m.admission_secret[0].load(std::memory_order_acquire),
                              m.admission_secret[1].load(std::memory_order_acquire)};
  return protocol::RegionProof(secret, server, client);
}

}  // namespace

// The cluster key: the options' file, else $GISMO_KEY_FILE's, else none.
Result<std::optional<protocol::Key>> KeyOf(const ConnectOptions& options) {
  if (options.key_file.empty()) return protocol::KeyFromEnv();
  auto key = protocol::LoadKey(options.key_file);
  if (!key.ok()) return key.status();
  return std::optional<protocol::Key>(std::move(*key));
}

Result<std::string> ManagerAddress(const std::string& given) {
  if (!given.empty()) return given;
  if (const char* env = getenv("GISMO_ADDRESS"); env != nullptr && *env != '\0') {
    return std::string(env);
  }
  return protocol::DefaultAddress(/*create=*/false);
}

Result<std::unique_ptr<ClientImpl>> ClientImpl::Connect(const ConnectOptions& options) {
  auto key = KeyOf(options);
  if (!key.ok()) return key.status();
  auto address = ManagerAddress(options.address);
  if (!address.ok()) return address.status();
  const std::string& addr_text = *address;
  auto addr = protocol::ParseAddress(addr_text);
  if (!addr.ok()) return addr.status();
  auto node = NodeFromEnv();
  if (!node.ok()) return node.status();
  auto fd = protocol::ConnectTo(*addr, kConnectTimeoutMs);
  if (!fd.ok()) return fd.status();

  std::unique_ptr<ClientImpl> c(new ClientImpl());
  c->fd_ = *fd;
  c->address_ = *addr;
  c->address_text_ = addr_text;
  c->key_ = std::move(*key);
  protocol::Hello hello;
  hello.node_id = *node;
  hello.pid = static_cast<uint64_t>(getpid());
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  hello.host = host;
  hello.name = program_invocation_short_name;
  const fence::ProcessIdentity me = fence::Self();
  const fence::ProcessIdentity::Words words = me.ToWords();
  std::copy(words.begin(), words.end(), hello.identity);
  c->hello_ = hello;
  // The region is mapped before the manager gives a slot: the proof.
  std::unique_ptr<region::Region> mapped;
  std::string path;
  auto prove = [&](const protocol::Access& access, const protocol::Nonce& server,
                   const protocol::Nonce& client) -> Result<protocol::Mac> {
    // A host may see the shared device under another path.
    path = access.region_path;
    if (const char* env = getenv("GISMO_REGION"); env != nullptr && *env != '\0') path = env;
    if (!options.region_path.empty()) path = options.region_path;
    if (path.empty()) {
      return Status(GISMO_ERR_PERMISSION,
                    "the manager at " + addr_text +
                        " does not tell a peer without the cluster key where the region is: set "
                        "GISMO_REGION to its path here (or GISMO_KEY_FILE)");
    }
    auto region = region::Region::Open(path);
    if (!region.ok()) return region.status();
    const region::Superblock& sb = (*region)->fixed();
    // A non-coherent region needs the CPU's cache line invalidate
    // (doc/noncoherent.md): this client then writes only lines of its own.
    if ((*region)->noncoherent() && !region::NonCoherentSupported()) {
      return region::NonCoherentRefusal(path);
    }
    if (sb.uuid[0] != access.uuid[0] || sb.uuid[1] != access.uuid[1] ||
        sb.region_size != access.region_size) {
      return Status(GISMO_ERR_BAD_REGION, "the region at '" + path +
                                              "' is not the one the manager at " + addr_text +
                                              " serves (set GISMO_REGION to its path here)");
    }
    mapped = std::move(*region);
    return ProveRegion(*mapped, server, client);
  };
  std::optional<protocol::FrameAuth> auth;
  if (Status s = Handshake(c->fd_, hello, c->key_, addr_text, prove, &c->welcome_, &auth);
      !s.ok()) {
    return s;
  }
  if (auth) {
    c->send_tags_ = auth->send;
    c->recv_tags_ = auth->recv;
  }
  const protocol::Welcome& w = c->welcome_;
  // Admitted but unable to go on: say goodbye, so the manager frees the slot
  // now instead of suspecting a live process that went quiet.
  auto abandon = [&c](Status why) {
    if (c->Send(protocol::Writer().Frame(MsgType::kGoodbye, 0), kRequestSendMs).ok()) {
      protocol::FrameHeader h;
      std::vector<uint8_t> payload;
      (void)protocol::RecvFrameWithin(c->fd_, kGoodbyeTimeoutMs, &h, &payload);
    }
    return why;
  };
  const region::Superblock& sb = mapped->fixed();
  if (sb.uuid[0] != w.uuid[0] || sb.uuid[1] != w.uuid[1] || sb.region_size != w.region_size) {
    return abandon(Status(GISMO_ERR_BAD_REGION, "the region at '" + path +
                                                    "' is not the one the manager at " + addr_text +
                                                    " serves (set GISMO_REGION to its path here)"));
  }
  if (w.slot == 0 || w.slot >= sb.max_clients) {
    return abandon(Status(GISMO_ERR_PROTOCOL, "the manager assigned client slot " +
                                                  std::to_string(w.slot) + ", which the region (" +
                                                  std::to_string(sb.max_clients) +
                                                  " slots) does not have"));
  }
  // Gets read through a read-only view. Without one (no address space left
  // for a second mapping) they use the writable mapping: protection from
  // stray writes is lost, nothing else.
  (void)mapped->MapReadView();
  c->region_ = std::move(mapped);
  // What is left can throw (an allocation; the receiver thread, at a thread
  // or pids limit): admitted, this client says goodbye on those too.
  Status started;
  try {
    started = c->StartSession();
  } catch (const std::system_error& e) {
    started = Status(GISMO_ERR_LIMIT,
                     std::string("cannot start this client's receiver thread: ") + e.what());
  } catch (const std::bad_alloc&) {
    started = Status(GISMO_ERR_LIMIT, "this process is out of memory");
  }
  if (!started.ok()) return abandon(started);
  return c;
}

Status ClientImpl::StartSession() {
  const protocol::Welcome& w = welcome_;
  store_ = std::make_unique<store::Store>(*region_, w.slot, w.session, w.node_id);
  names_ = std::make_unique<store::Names>(*region_, w.slot, w.session);
  if (region_->noncoherent()) {
    // Requests go on the slot's ring; a sleeping owner is told on the
    // connection (a lost frame costs the owner's tick).
    Status nc = store_->UseNonCoherent(
        [this] { (void)Send(protocol::Writer().Frame(MsgType::kRequests, 0)); });
    if (!nc.ok()) return nc;
  }
  if (!store_->SlotAlive()) {
    return Status(GISMO_ERR_PROTOCOL, "the manager assigned a client slot that is not active");
  }
  hello_.role = protocol::Role::kReattach;
  hello_.slot = w.slot;
  hello_.session = w.session;
  hello_.client_id = w.client_id;
  hello_.uuid[0] = w.uuid[0];
  hello_.uuid[1] = w.uuid[1];
  receiver_ = StartBackgroundThread([this] { ReceiverLoop(); });
  return Status();
}

ClientImpl::~ClientImpl() {
  BeginClosing();
  ShutdownConnection();
  if (receiver_.joinable()) receiver_.join();
  if (fd_ >= 0) close(fd_);
  if (int efd = ExchangeAcqRel(event_fd_, -1); efd >= 0) {
    // Same-node sealers stop sending to this slot (only a hint: they also
    // check the slot's session). A CAS: should the slot be another client's
    // by now, its token differs (another session) and stays.
    if (notify_token_ != 0 && region_ && store_ && !store_->noncoherent()) {
      uint64_t mine = notify_token_;
      region_->slot(slot()).notify_token.compare_exchange_strong(mine, 0, std::memory_order_release,
                                                                 std::memory_order_relaxed);
    }
    close(efd);
  }
  if (notify_send_fd_ >= 0) close(notify_send_fd_);
  if (notify_udp_fd_ >= 0) close(notify_udp_fd_);
}

// Says goodbye to the manager. When it cannot (the connection is down, the
// receiver re-attaching, or no manager confirms in time), it says so in the
// region instead (Store::MarkDeparted): either way the slot is recovered as
// a departure, and this process is never suspected, let alone killed, for a
// client it closed. op_mu_ is held to the end: an operation running now
// finishes first, and none starts after (they find lost_ set).
Status ClientImpl::Disconnect() {
  std::lock_guard<std::mutex> op(op_mu_);
  bool confirmed = false;
  uint64_t epoch;
  bool down;
  {
    std::lock_guard<std::mutex> lk(state_mu_);
    epoch = connection_epoch_;
    down = connection_down_;
  }
  store_->FlushBeforeLeaving();
  protocol::Writer w;
  // The goodbye's request id: only a kBye that answers it confirms it.
  const uint64_t bye_id = IncrementRelaxed(next_request_);
  if (!down && !LoadAcquire(lost_)) {
    std::lock_guard<std::mutex> lk(state_mu_);
    open_requests_.emplace(bye_id, MsgType::kGoodbye);
  }
  if (!down && !LoadAcquire(lost_) &&
      Send(w.Frame(MsgType::kGoodbye, bye_id), kRequestSendMs).ok()) {
    GISMO_CRASH_POINT("disconnect.after_goodbye");
    std::unique_lock<std::mutex> lk(state_mu_);
    // A connection that broke, or a new one (a re-attach), never carries
    // the goodbye's answer.
    state_cv_.wait_for(lk, std::chrono::milliseconds(kGoodbyeTimeoutMs), [&] {
      return bye_ || LoadAcquire(lost_) || connection_down_ || connection_epoch_ != epoch;
    });
    confirmed = bye_;
  }
  {
    std::lock_guard<std::mutex> lk(state_mu_);
    open_requests_.erase(bye_id);
  }
  // False only if its session has ended already: nothing is left to leave.
  if (!confirmed) (void)store_->MarkDeparted();
  BeginClosing();
  ShutdownConnection();
  if (receiver_.joinable()) receiver_.join();
  MarkLost("disconnected");
  return Status();
}

Status ClientImpl::CheckAlive() const {
  if (LoadAcquire(lost_)) {
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

Status ClientImpl::Send(std::vector<uint8_t> frame, int bound_ms, uint64_t* sent_on) {
  const uint64_t deadline_ns = protocol::DeadlineAfterMs(bound_ms);
  // Taken by try_lock with a growing pause rather than a timed lock:
  // std::timed_mutex's try_lock_until (pthread_mutex_clocklock) is invisible
  // to the thread sanitizer of GCC 12, which then reports every unlock. The
  // lock is held for one send, so a pause is rare and short.
  std::unique_lock<std::mutex> lk(send_mu_, std::try_to_lock);
  for (uint32_t pause_us = 1; !lk.owns_lock(); pause_us = std::min<uint32_t>(pause_us * 2, 1000)) {
    if (MonotonicNs() >= deadline_ns) {
      // Another sender held the connection for our whole bound: it is
      // stuck on a full socket (and will shut it down itself), or about to be.
      ShutdownConnection();
      return Status(GISMO_ERR_CONNECTION,
                    "the manager stopped reading this client's connection; re-attaching");
    }
    std::this_thread::sleep_for(std::chrono::microseconds(pause_us));
    lk.try_lock();
  }
  if (sent_on != nullptr) *sent_on = fd_epoch_;
  // Tagged in the order frames go out: under send_mu_, with fd_.
  if (send_tags_) send_tags_->Sign(&frame);
  Status s = protocol::SendAllUntil(fd_, frame.data(), frame.size(), deadline_ns);
  if (s.code() == GISMO_ERR_TIMEOUT) {
    // Part of the frame may have gone: the stream is out of step for good.
    // The receiver thread finds the connection closed and re-attaches. fd_
    // cannot change while we hold send_mu_.
    shutdown(fd_, SHUT_RDWR);
    return Status(GISMO_ERR_CONNECTION, s.message() + "; re-attaching");
  }
  return s;
}

void ClientImpl::MarkLost(const std::string& why) {
  std::lock_guard<std::mutex> lk(state_mu_);
  if (!LoadAcquire(lost_)) lost_reason_ = why;
  StoreRelease(lost_, true);
  state_cv_.notify_all();
  // A subscriber waiting on the fd learns it from the next call.
  WakeSubscriber();
}

void ClientImpl::BeginClosing() {
  {
    std::lock_guard<std::mutex> lk(state_mu_);
    StoreRelease(closing_, true);
  }
  state_cv_.notify_all();
}

void ClientImpl::ShutdownConnection() {
  std::lock_guard<std::mutex> lk(fd_mu_);
  if (fd_ >= 0) shutdown(fd_, SHUT_RDWR);
  if (connecting_fd_ >= 0) shutdown(connecting_fd_, SHUT_RDWR);
}

bool ClientImpl::SameManager() const {
  region::Superblock& sb = region_->sb();
  // manager_owner, not manager_epoch: every would-be manager of a coherent
  // region raises manager_epoch before its CAS on manager_owner, and one
  // that loses that race leaves manager_epoch past the winner's epoch for
  // good; manager_owner holds the serving manager's epoch (a claim word or 0
  // while none serves: not ours either way).
  // A non-coherent region: this host may hold the line as the manager that
  // welcomed us wrote it; a new manager wrote it to memory.
  if (region_->noncoherent()) region::InvalidateLines(&sb.manager_owner, sizeof sb.manager_owner);
  // Acquire: pairs with the new manager's acq_rel CAS (nothing is read
  // after it here, but a stale value only delays the check to the next beat).
  return sb.manager_owner.load(std::memory_order_acquire) == welcome_.manager_epoch;
}

// The connection is gone but this client is not: its slot, references and
// unsealed objects live in the region, and object operations need no
// manager. It re-attaches (to the same manager, or a new one on the same
// address) for as long as its session is live there; a manager that has
// suspected it refuses, and only then is the client lost. Failed connects
// and refusals that only say "not now" are retried, backing off to 500 ms.
bool ClientImpl::Reattach(std::string* why) {
  uint32_t backoff_ms = 10;
  while (!LoadAcquire(closing_)) {
    if (!store_->SlotAlive()) {
      *why = "the manager ended this client's session (its lease expired?)";
      return false;
    }
    // The socket is published for ShutdownConnection before its connect,
    // then closing_ checked: a Disconnect that set closing_ before we took
    // fd_mu_ is seen here, one that sets it after shuts the socket down (its
    // shutdown takes fd_mu_), which ends a connect in progress at once (a
    // black-holed manager held Disconnect for the connect's whole timeout).
    protocol::ConnectCancel cancel;
    cancel.publish = [this](int socket) {
      std::lock_guard<std::mutex> lk(fd_mu_);
      connecting_fd_ = socket;
      return socket < 0 || !LoadAcquire(closing_);
    };
    cancel.cancelled = [this] { return LoadAcquire(closing_); };
    auto fd = protocol::ConnectTo(address_, kConnectTimeoutMs, &cancel);
    if (fd.ok()) {
      protocol::Welcome w;
      std::optional<protocol::FrameAuth> auth;
      bool refused = false;
      Status s = LoadAcquire(closing_)
                     ? Status(GISMO_ERR_CONNECTION, "disconnected")
                     : Handshake(
                           *fd, hello_, key_, address_text_,
                           [this](const protocol::Access&, const protocol::Nonce& server,
                                  const protocol::Nonce& client) -> Result<protocol::Mac> {
                             return ProveRegion(*region_, server, client);
                           },
                           &w, &auth, &refused);
      // The manager re-attached this client's own slot and session, or it
      // is not the session this client holds (a manager that confused two
      // clients): that stands, as a refusal.
      if (s.ok() && (w.slot != hello_.slot || w.session != hello_.session ||
                     w.client_id != hello_.client_id)) {
        s = Status(GISMO_ERR_PROTOCOL, "the manager at " + address_text_ + " re-attached slot " +
                                           std::to_string(w.slot) + ", not this client's slot " +
                                           std::to_string(hello_.slot));
        refused = true;
      }
      if (s.ok()) {
        int old;
        {
          std::lock_guard<std::mutex> send(send_mu_);
          std::lock_guard<std::mutex> lk(fd_mu_);
          old = fd_;
          fd_ = *fd;
          send_tags_.reset();
          if (auth) send_tags_ = auth->send;
          // This thread alone writes connection_epoch_: its own read.
          fd_epoch_ = connection_epoch_ + 1;
          connecting_fd_ = -1;
        }
        close(old);
        recv_tags_.reset();
        if (auth) recv_tags_ = auth->recv;
        welcome_.lease_ms = w.lease_ms;
        welcome_.manager_epoch = w.manager_epoch;
        std::lock_guard<std::mutex> lk(state_mu_);
        ++connection_epoch_;
        connection_down_ = false;
        acked_waits_.clear();
        // Subscribe and goodbye requests of the old connection are never
        // answered now (waits and fence orders watch the epoch themselves).
        std::erase_if(open_requests_, [](const auto& r) {
          return r.second == MsgType::kSubscribe || r.second == MsgType::kGoodbye;
        });
        ++wake_seq_;  // waiters register again and re-check
        state_cv_.notify_all();
        return true;
      }
      {
        std::lock_guard<std::mutex> lk(fd_mu_);
        connecting_fd_ = -1;
      }
      close(*fd);
      // A refusal for a passing condition (the manager at its connection
      // limit, or out of room for peers waiting for admission: LIMIT;
      // this handshake too slow: TIMEOUT) is tried again like a failed
      // connect; any other (its session has ended, a wrong key or region)
      // stands.
      if (refused && !protocol::RetryableRefusal(s)) {
        *why = s.message();
        return false;
      }
    }
    std::unique_lock<std::mutex> lk(state_mu_);
    state_cv_.wait_for(lk, std::chrono::milliseconds(backoff_ms),
                       [&] { return LoadAcquire(closing_); });
    backoff_ms = std::min<uint32_t>(backoff_ms * 2, 500);
  }
  *why = "disconnected";
  return false;
}

}  // namespace gismo::client
