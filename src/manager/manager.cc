#include "manager/manager.h"

#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <asio.hpp>
#include <cerrno>
#include <cstring>
#include <deque>
#include <map>
#include <set>
#include <unordered_map>

#include "common/clock.h"
#include "manager/listen.h"
#include "manager/metrics.h"
#include "protocol/wire.h"
#include "store/store.h"
#include "store/txn.h"

namespace gismo::manager {

using protocol::MsgType;
using region::SlotState;

namespace {
constexpr uint32_t kManagerSlot = 0;
constexpr auto kTick = std::chrono::milliseconds(20);

std::string IdKey(const gismo_id_t& id) {
  return std::string(reinterpret_cast<const char*>(id.bytes), GISMO_ID_SIZE);
}
uint64_t SlotSession(uint64_t state) { return state >> 8; }
uint64_t SlotStateOf(uint64_t state) { return state & 0xff; }
}  // namespace

class Session;

class Manager::Impl {
 public:
  explicit Impl(ManagerOptions o) : opt_(std::move(o)), tick_(io_), signals_(io_) {}
  ~Impl();

  Status Start();
  void Run(bool handle_signals);
  void Stop() {
    asio::post(io_, [this] { Shutdown(); });
  }

  // Called by sessions.
  void OnFrame(const std::shared_ptr<Session>& s, const protocol::FrameHeader& h,
               const std::vector<uint8_t>& payload);
  void OnClosed(const std::shared_ptr<Session>& s, const std::string& why);

  ManagerOptions opt_;
  std::unique_ptr<region::Region> region_;
  asio::io_context io_;
  asio::steady_timer tick_;
  asio::signal_set signals_;
  std::vector<std::unique_ptr<asio::local::stream_protocol::acceptor>> unix_acceptors_;
  std::vector<std::unique_ptr<asio::ip::tcp::acceptor>> tcp_acceptors_;
  std::vector<std::string> bound_;
  std::vector<std::string> unix_paths_;
  std::set<std::shared_ptr<Session>> sessions_;
  std::unordered_map<std::string, std::vector<std::pair<std::weak_ptr<Session>, uint64_t>>>
      waits_by_id_;
  std::set<uint32_t> pending_recovery_;
  // Orphans found holding a lock at start, and when their grace ends.
  std::map<uint32_t, uint64_t> orphan_grace_;
  static constexpr uint64_t kOrphanGraceNs = 200'000'000;
  bool HoldsLock(uint32_t slot) const {
    uint64_t tag = region::LockTag(slot, SlotSession(region_->slot(slot).state.load()));
    bool held = false;
    store::ForEachLock(*region_, [&](region::Word& w) { held |= w.load() == tag; });
    return held;
  }
  uint64_t session_ = 0;  // the manager's own slot session
  int lock_fd_ = -1;
  ManagerStats stats_;
  bool stopped_ = false;
  std::unique_ptr<MetricsExporter> metrics_;  // after io_: destroyed before it

 private:
  Status OpenRegion();
  Status Listen(const std::string& address);
  void AcceptUnix(asio::local::stream_protocol::acceptor& a);
  void AcceptTcp(asio::ip::tcp::acceptor& a);
  void Adopt(asio::generic::stream_protocol::socket sock, std::string peer);
  void Tick();
  void Shutdown();
  void HandleHello(const std::shared_ptr<Session>& s, protocol::Reader& r);
  void HandleWait(const std::shared_ptr<Session>& s, uint64_t wait_id, protocol::Reader& r);
  void CancelWait(const std::shared_ptr<Session>& s, uint64_t wait_id);
  void WakeWaiters(const gismo_id_t& id);
  region::ShardHeader& ShardOf(const gismo_id_t& id) const {
    const uint64_t h = store::Store::HashId(id);
    return region_->shard(static_cast<uint32_t>(h >> 40) & (region_->num_shards() - 1));
  }
  // Tells every subscriber that the event ring has new entries.
  void NotifySubscribers();
  std::set<std::shared_ptr<Session>> subscribers_;
  // Recovers a client slot; if a lock stays busy, retries from Tick().
  void RecoverSlot(uint32_t slot, const std::string& who);
  void DropWaits(const std::shared_ptr<Session>& s);
};

// One connected client.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Manager::Impl& m, asio::generic::stream_protocol::socket sock, std::string peer)
      : last_heard_ns_(MonotonicNs()), m_(m), sock_(std::move(sock)), peer_(std::move(peer)) {}

  void Start() { ReadHeader(); }

  void Send(std::vector<uint8_t> frame) {
    if (closed_) return;
    bool idle = out_.empty();
    out_.push_back(std::move(frame));
    if (idle) WriteNext();
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    asio::error_code ec;
    sock_.shutdown(asio::socket_base::shutdown_both, ec);
    sock_.close(ec);
  }

  std::string Describe() const {
    if (slot == 0) return peer_;
    return "client " + std::to_string(client_id) + " (slot " + std::to_string(slot) + ", node " +
           std::to_string(node) + ", pid " + std::to_string(pid) + " on " + host + ", " + name +
           ")";
  }

  uint32_t slot = 0;  // 0: not registered (slot 0 is the manager's own)
  uint64_t client_id = 0;
  uint32_t node = 0;
  uint64_t pid = 0;
  std::string host, name;
  uint64_t last_heard_ns_;
  std::map<uint64_t, std::vector<std::string>> waits;
  bool closed_ = false;

 private:
  void ReadHeader() {
    auto self = shared_from_this();
    asio::async_read(sock_, asio::buffer(hdr_), [this, self](asio::error_code ec, size_t) {
      if (ec) return m_.OnClosed(self, ec == asio::error::eof ? "connection closed" : ec.message());
      head_ = protocol::DecodeHeader(hdr_.data());
      if (head_.length > protocol::kMaxPayload) {
        return m_.OnClosed(self, "oversized frame (not a gismo client?)");
      }
      body_.resize(head_.length);
      if (head_.length == 0) return OnBody();
      asio::async_read(sock_, asio::buffer(body_), [this, self](asio::error_code ec2, size_t) {
        if (ec2) return m_.OnClosed(self, ec2.message());
        OnBody();
      });
    });
  }
  void OnBody() {
    last_heard_ns_ = MonotonicNs();
    auto self = shared_from_this();
    m_.OnFrame(self, head_, body_);
    if (!closed_) ReadHeader();
  }
  void WriteNext() {
    auto self = shared_from_this();
    asio::async_write(sock_, asio::buffer(out_.front()), [this, self](asio::error_code ec, size_t) {
      if (ec) return m_.OnClosed(self, ec.message());
      out_.pop_front();
      if (!out_.empty() && !closed_) WriteNext();
    });
  }

  Manager::Impl& m_;
  asio::generic::stream_protocol::socket sock_;
  std::string peer_;
  std::array<uint8_t, protocol::kHeaderSize> hdr_{};
  protocol::FrameHeader head_;
  std::vector<uint8_t> body_;
  std::deque<std::vector<uint8_t>> out_;
};

Manager::Impl::~Impl() {
  for (const auto& p : unix_paths_) unlink(p.c_str());
  if (lock_fd_ >= 0) close(lock_fd_);
}

Status Manager::Impl::OpenRegion() {
  // One manager per region on this host; taken before anything is formatted.
  lock_fd_ = open(opt_.region_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0660);
  if (lock_fd_ < 0) {
    return Status(GISMO_ERR_IO,
                  "cannot open region '" + opt_.region_path + "': " + std::strerror(errno));
  }
  if (flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    return Status(GISMO_ERR_IO,
                  "another gismo-manager is already serving region '" + opt_.region_path + "'");
  }
  bool formatted = false;
  auto r =
      region::Region::OpenOrFormat(opt_.region_path, opt_.format, opt_.force_format, &formatted);
  if (!r.ok()) return r.status();
  region_ = std::move(*r);
  region::Superblock& sb = region_->sb();
  if (formatted) {
    spdlog::info("formatted region {}: {} ({} heap, {} objects, {} clients)", opt_.region_path,
                 region::FormatSize(sb.region_size), region::FormatSize(sb.heap_size),
                 sb.max_objects, sb.max_clients - 1);
  } else {
    spdlog::info("opened region {}: {} ({} heap, {} objects, {} clients)", opt_.region_path,
                 region::FormatSize(sb.region_size), region::FormatSize(sb.heap_size),
                 sb.max_objects, sb.max_clients - 1);
  }
  if (sb.coherence_mode != static_cast<uint32_t>(region::CoherenceMode::kCoherent)) {
    return Status(GISMO_ERR_UNSUPPORTED,
                  "region is formatted for non-coherent (CXL 2.0) mode, which this build does "
                  "not implement yet");
  }
  // Our own slot: a previous manager may have died inside a transaction.
  region::ClientSlotHeader& me = region_->slot(kManagerSlot);
  uint64_t st = me.state.load(std::memory_order_acquire);
  if (SlotStateOf(st) != static_cast<uint64_t>(SlotState::kFree)) {
    store::UndoDeadClient(*region_, kManagerSlot);
  }
  session_ = SlotSession(st) + 1;
  me.client_id.store(0, std::memory_order_relaxed);
  me.node_id.store(opt_.node_id, std::memory_order_relaxed);
  me.pid.store(static_cast<uint64_t>(getpid()), std::memory_order_relaxed);
  me.connect_time_ns.store(RealtimeNs(), std::memory_order_relaxed);
  me.state.store(static_cast<uint64_t>(SlotState::kActive) | session_ << 8,
                 std::memory_order_release);
  sb.manager_epoch.fetch_add(1);
  sb.manager_start_time_ns.store(RealtimeNs());
  sb.manager_heartbeat_ns.store(RealtimeNs());
  // Waits and subscriptions of a previous manager died with its connections.
  sb.waiters.store(0);
  sb.subscribers.store(0);
  sb.kick_pending.store(0);
  for (uint32_t i = 0; i < region_->num_shards(); ++i) region_->shard(i).waiters.store(0);
  // Clients of a previous manager: their connections are gone. Recover them
  // now, except one that holds a lock: it may be a live client finishing an
  // operation it began before it noticed the old manager die; it gets a
  // short grace (Tick recovers it once it lets go, or when the grace ends).
  for (uint32_t i = 1; i < region_->max_clients(); ++i) {
    uint64_t s = region_->slot(i).state.load(std::memory_order_acquire);
    if (SlotStateOf(s) != static_cast<uint64_t>(SlotState::kFree) && HoldsLock(i)) {
      orphan_grace_[i] = MonotonicNs() + kOrphanGraceNs;
      continue;
    }
    if (SlotStateOf(s) != static_cast<uint64_t>(SlotState::kFree)) {
      spdlog::info("client {} (slot {}, node {}) was left by a previous manager; recovering",
                   region_->slot(i).client_id.load(), i, region_->slot(i).node_id.load());
      RecoverSlot(i, "orphaned client in slot " + std::to_string(i));
      ++stats_.clients_recovered;
    }
  }
  return Status();
}

void Manager::Impl::RecoverSlot(uint32_t slot, const std::string& who) {
  region::ClientSlotHeader& h = region_->slot(slot);
  uint64_t st = h.state.load(std::memory_order_acquire);
  uint64_t session = SlotSession(st);
  h.state.store(static_cast<uint64_t>(SlotState::kRecovering) | session << 8,
                std::memory_order_release);
  uint64_t t0 = MonotonicNs();
  auto rep = store::Store::RecoverSlot(*region_, slot, kManagerSlot, session_);
  uint64_t dt = MonotonicNs() - t0;
  stats_.recovery_ns_total += dt;
  if (!rep.complete) {
    if (pending_recovery_.insert(slot).second) {
      spdlog::warn("recovery of {} waits for a busy lock; will retry", who);
    }
    return;
  }
  pending_recovery_.erase(slot);
  h.state.store(static_cast<uint64_t>(SlotState::kFree) | session << 8, std::memory_order_release);
  // Events the dead client committed but had not published are visible now.
  NotifySubscribers();
  if (rep.aborted || rep.references_dropped || rep.locks_released || rep.freed) {
    spdlog::info(
        "recovered {}: {} interrupted operation(s) undone, {} unsealed object(s) aborted, {} "
        "reference(s) dropped, {} deferred delete(s) completed, {:.1f} us",
        who, rep.locks_released ? 1 : 0, rep.aborted, rep.references_dropped, rep.freed, dt / 1e3);
  }
}

Status Manager::Impl::Listen(const std::string& address) {
  auto a = protocol::ParseAddress(address);
  if (!a.ok()) return a.status();
  try {
    if (a->kind == protocol::Address::Kind::kUnix) {
      // A socket file left by a dead manager is removed; a live one is not.
      struct stat st {};
      if (lstat(a->path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
          return Status(GISMO_ERR_INVALID_ARGUMENT,
                        "'" + a->path + "' exists and is not a socket; not replacing it");
        }
        auto probe = protocol::ConnectTo(*a, 1000);
        if (probe.ok()) {
          close(*probe);
          return Status(GISMO_ERR_IO, "another gismo-manager is listening at " + address);
        }
        unlink(a->path.c_str());
      }
      auto acc = std::make_unique<asio::local::stream_protocol::acceptor>(
          io_, asio::local::stream_protocol::endpoint(a->path));
      chmod(a->path.c_str(), 0666);
      unix_paths_.push_back(a->path);
      bound_.push_back(a->ToString());
      AcceptUnix(*acc);
      unix_acceptors_.push_back(std::move(acc));
    } else {
      protocol::Address bound;
      auto acc = ListenTcp(io_, *a, &bound);
      if (!acc.ok()) return acc.status();
      bound_.push_back(bound.ToString());
      AcceptTcp(**acc);
      tcp_acceptors_.push_back(std::move(*acc));
    }
  } catch (const std::system_error& e) {
    return Status(GISMO_ERR_IO, "cannot listen on " + address + ": " + e.what());
  }
  return Status();
}

void Manager::Impl::AcceptUnix(asio::local::stream_protocol::acceptor& a) {
  a.async_accept([this, &a](asio::error_code ec, asio::local::stream_protocol::socket sock) {
    if (ec) {
      if (ec != asio::error::operation_aborted) AcceptUnix(a);
      return;
    }
    auto proto = sock.local_endpoint().protocol();
    asio::generic::stream_protocol::socket g(io_, asio::generic::stream_protocol(proto),
                                             sock.release());
    Adopt(std::move(g), "unix peer");
    AcceptUnix(a);
  });
}

void Manager::Impl::AcceptTcp(asio::ip::tcp::acceptor& a) {
  a.async_accept([this, &a](asio::error_code ec, asio::ip::tcp::socket sock) {
    if (ec) {
      if (ec != asio::error::operation_aborted) AcceptTcp(a);
      return;
    }
    asio::error_code ignore;
    sock.set_option(asio::ip::tcp::no_delay(true), ignore);
    std::string peer = "tcp peer";
    auto ep = sock.remote_endpoint(ignore);
    if (!ignore) peer = ep.address().to_string() + ":" + std::to_string(ep.port());
    auto proto = sock.local_endpoint().protocol();
    asio::generic::stream_protocol::socket g(io_, asio::generic::stream_protocol(proto),
                                             sock.release());
    Adopt(std::move(g), peer);
    AcceptTcp(a);
  });
}

void Manager::Impl::Adopt(asio::generic::stream_protocol::socket sock, std::string peer) {
  auto s = std::make_shared<Session>(*this, std::move(sock), std::move(peer));
  sessions_.insert(s);
  s->Start();
}

void Manager::Impl::OnFrame(const std::shared_ptr<Session>& s, const protocol::FrameHeader& h,
                            const std::vector<uint8_t>& payload) {
  protocol::Reader r(payload);
  if (s->slot == 0 && h.type != MsgType::kHello) {
    s->Send(protocol::EncodeError(h.request_id, Status(GISMO_ERR_PROTOCOL, "say hello first")));
    return OnClosed(s, "spoke before hello");
  }
  switch (h.type) {
    case MsgType::kHello:
      return HandleHello(s, r);
    case MsgType::kWait:
      return HandleWait(s, h.request_id, r);
    case MsgType::kCancelWait:
      return CancelWait(s, h.request_id);
    case MsgType::kSealed:
    case MsgType::kDeleted: {
      gismo_id_t id = r.Id();
      if (r.ok()) WakeWaiters(id);
      // Cleared before the wake-ups go out: a producer that finds it clear
      // kicks again (see Superblock::kick_pending).
      region_->sb().kick_pending.store(0, std::memory_order_seq_cst);
      NotifySubscribers();
      return;
    }
    case MsgType::kSubscribe:
      if (subscribers_.insert(s).second) {
        // Raised before the ack, as for waits: see ClientImpl::Subscribe.
        region_->sb().subscribers.fetch_add(1, std::memory_order_seq_cst);
      }
      s->Send(protocol::Writer().Frame(MsgType::kSubscribeAck, h.request_id));
      return;
    case MsgType::kHeartbeat:
      return;
    case MsgType::kGoodbye: {
      uint32_t slot = s->slot;
      DropWaits(s);
      RecoverSlot(slot, s->Describe());
      ++stats_.clients_left;
      spdlog::info("{} disconnected", s->Describe());
      s->slot = 0;
      s->Send(protocol::Writer().Frame(MsgType::kBye, h.request_id));
      return;
    }
    default:
      spdlog::warn("{} sent unknown message type {}", s->Describe(), static_cast<unsigned>(h.type));
      return;
  }
}

void Manager::Impl::HandleHello(const std::shared_ptr<Session>& s, protocol::Reader& r) {
  protocol::Hello hello;
  if (s->slot != 0 || !protocol::DecodeHello(r, &hello)) {
    s->Send(protocol::EncodeError(0, Status(GISMO_ERR_PROTOCOL, "malformed hello")));
    return OnClosed(s, "malformed hello");
  }
  if (hello.protocol_version != protocol::kProtocolVersion) {
    s->Send(protocol::EncodeError(
        0, Status(GISMO_ERR_PROTOCOL, "manager speaks protocol version " +
                                          std::to_string(protocol::kProtocolVersion) + ", client " +
                                          std::to_string(hello.protocol_version))));
    return OnClosed(s, "protocol version mismatch");
  }
  const region::Region& r_ = *region_;
  uint32_t slot = 0;
  for (uint32_t i = 1; i < r_.max_clients(); ++i) {
    if (SlotStateOf(r_.slot(i).state.load(std::memory_order_acquire)) ==
            static_cast<uint64_t>(SlotState::kFree) &&
        !pending_recovery_.count(i)) {
      slot = i;
      break;
    }
  }
  if (slot == 0) {
    s->Send(protocol::EncodeError(
        0, Status(GISMO_ERR_LIMIT, "all " + std::to_string(r_.max_clients() - 1) +
                                       " client slots are in use (gismo-manager --max-clients)")));
    return OnClosed(s, "no free client slot");
  }
  region::ClientSlotHeader& h = r_.slot(slot);
  uint64_t session = SlotSession(h.state.load(std::memory_order_acquire)) + 1;
  // A fresh slot: empty log, no held references, no slabs.
  uint8_t* base = reinterpret_cast<uint8_t*>(&h);
  size_t clear_from = offsetof(region::ClientSlotHeader, log_count);
  std::memset(base + clear_from, 0, r_.sb().client_slot_size - clear_from);
  uint64_t client_id = r_.sb().next_client_id.fetch_add(1);
  h.client_id.store(client_id, std::memory_order_relaxed);
  h.node_id.store(hello.node_id, std::memory_order_relaxed);
  h.pid.store(hello.pid, std::memory_order_relaxed);
  h.connect_time_ns.store(RealtimeNs(), std::memory_order_relaxed);
  h.heartbeat_ns.store(RealtimeNs(), std::memory_order_relaxed);
  h.state.store(static_cast<uint64_t>(SlotState::kActive) | session << 8,
                std::memory_order_release);
  s->slot = slot;
  s->client_id = client_id;
  s->node = hello.node_id;
  s->pid = hello.pid;
  s->host = hello.host;
  s->name = hello.name;
  protocol::Welcome w;
  w.slot = slot;
  w.session = session;
  w.client_id = client_id;
  w.uuid[0] = r_.sb().uuid[0];
  w.uuid[1] = r_.sb().uuid[1];
  w.region_size = r_.sb().region_size;
  w.lease_ms = opt_.lease_ms;
  w.node_id = hello.node_id;
  w.manager_epoch = r_.sb().manager_epoch.load();
  w.region_path = region_->path();
  s->Send(protocol::EncodeWelcome(w));
  ++stats_.clients_joined;
  spdlog::info("{} joined", s->Describe());
}

void Manager::Impl::HandleWait(const std::shared_ptr<Session>& s, uint64_t wait_id,
                               protocol::Reader& r) {
  uint32_t n = r.U32();
  if (!r.ok() || n > (1u << 20) || r.remaining() < uint64_t{n} * GISMO_ID_SIZE) {
    s->Send(protocol::EncodeError(wait_id, Status(GISMO_ERR_PROTOCOL, "malformed wait")));
    return OnClosed(s, "malformed wait");
  }
  if (s->waits.count(wait_id)) return;
  std::vector<std::string> keys;
  keys.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    gismo_id_t id = r.Id();
    keys.push_back(IdKey(id));
    waits_by_id_[keys.back()].emplace_back(s, wait_id);
    // Raised before the ack: see ClientImpl::NotifyIfWatched.
    ShardOf(id).waiters.fetch_add(1, std::memory_order_seq_cst);
  }
  s->waits.emplace(wait_id, std::move(keys));
  region_->sb().waiters.fetch_add(1, std::memory_order_seq_cst);
  s->Send(protocol::Writer().Frame(MsgType::kWaitAck, wait_id));
}

void Manager::Impl::CancelWait(const std::shared_ptr<Session>& s, uint64_t wait_id) {
  auto it = s->waits.find(wait_id);
  if (it == s->waits.end()) return;
  for (const auto& key : it->second) {
    gismo_id_t id;
    std::memcpy(id.bytes, key.data(), GISMO_ID_SIZE);
    ShardOf(id).waiters.fetch_sub(1, std::memory_order_seq_cst);
    auto w = waits_by_id_.find(key);
    if (w == waits_by_id_.end()) continue;
    auto& v = w->second;
    v.erase(std::remove_if(v.begin(), v.end(),
                           [&](const auto& e) {
                             auto sp = e.first.lock();
                             return !sp || (sp == s && e.second == wait_id);
                           }),
            v.end());
    if (v.empty()) waits_by_id_.erase(w);
  }
  s->waits.erase(it);
  region_->sb().waiters.fetch_sub(1, std::memory_order_seq_cst);
}

void Manager::Impl::DropWaits(const std::shared_ptr<Session>& s) {
  while (!s->waits.empty()) CancelWait(s, s->waits.begin()->first);
  if (subscribers_.erase(s)) region_->sb().subscribers.fetch_sub(1, std::memory_order_seq_cst);
}

void Manager::Impl::NotifySubscribers() {
  for (const auto& sub : subscribers_) {
    sub->Send(protocol::Writer().Frame(MsgType::kNotify, 0));
  }
}

void Manager::Impl::WakeWaiters(const gismo_id_t& id) {
  auto it = waits_by_id_.find(IdKey(id));
  if (it == waits_by_id_.end()) return;
  for (const auto& [weak, wait_id] : it->second) {
    if (auto sp = weak.lock()) {
      sp->Send(protocol::Writer().Frame(MsgType::kWake, wait_id));
      ++stats_.wakeups_sent;
    }
  }
}

void Manager::Impl::OnClosed(const std::shared_ptr<Session>& s, const std::string& why) {
  if (!sessions_.count(s)) return;
  DropWaits(s);
  if (s->slot != 0) {
    spdlog::info("{} is gone ({}); recovering", s->Describe(), why);
    RecoverSlot(s->slot, s->Describe());
    ++stats_.clients_recovered;
    s->slot = 0;
  }
  s->Close();
  sessions_.erase(s);
}

void Manager::Impl::Tick() {
  region_->sb().manager_heartbeat_ns.store(RealtimeNs(), std::memory_order_relaxed);
  uint64_t now = MonotonicNs();
  if (opt_.lease_ms > 0) {
    std::vector<std::shared_ptr<Session>> expired;
    for (const auto& s : sessions_) {
      if (s->slot != 0 && now - s->last_heard_ns_ > uint64_t{opt_.lease_ms} * 1000000) {
        expired.push_back(s);
      }
    }
    for (const auto& s : expired) {
      ++stats_.leases_expired;
      spdlog::warn("lease of {} expired (nothing heard for {} ms)", s->Describe(),
                   (now - s->last_heard_ns_) / 1000000);
      OnClosed(s, "lease expired");
    }
  }
  for (uint32_t slot : std::vector<uint32_t>(pending_recovery_.begin(), pending_recovery_.end())) {
    RecoverSlot(slot, "slot " + std::to_string(slot));
  }
  for (auto it = orphan_grace_.begin(); it != orphan_grace_.end();) {
    if (now >= it->second || !HoldsLock(it->first)) {
      ++stats_.clients_recovered;
      RecoverSlot(it->first, "orphaned client in slot " + std::to_string(it->first));
      it = orphan_grace_.erase(it);
    } else {
      ++it;
    }
  }
  tick_.expires_after(kTick);
  tick_.async_wait([this](asio::error_code ec) {
    if (!ec) Tick();
  });
}

Status Manager::Impl::Start() {
  if (Status s = OpenRegion(); !s.ok()) return s;
  std::vector<std::string> addrs = opt_.listen;
  if (addrs.empty()) addrs.push_back(protocol::kDefaultAddress);
  for (const auto& a : addrs) {
    if (Status s = Listen(a); !s.ok()) return s;
  }
  if (!opt_.metrics_address.empty()) {
    // Scrapes run on this thread, as slot kManagerSlot (see metrics.h).
    metrics_ = std::make_unique<MetricsExporter>(io_, *region_, stats_, kManagerSlot, session_);
    if (Status s = metrics_->Listen(opt_.metrics_address); !s.ok()) return s;
  }
  return Status();
}

void Manager::Impl::Shutdown() {
  if (stopped_) return;
  stopped_ = true;
  asio::error_code ec;
  for (auto& a : unix_acceptors_) a->close(ec);
  for (auto& a : tcp_acceptors_) a->close(ec);
  tick_.cancel();
  signals_.cancel(ec);
  for (const auto& s : std::vector<std::shared_ptr<Session>>(sessions_.begin(), sessions_.end())) {
    DropWaits(s);
    s->Close();
  }
  sessions_.clear();
  // Clients still connected keep their slots: a manager started again on this
  // region recovers them. Sealed objects stay in the region.
  io_.stop();
}

void Manager::Impl::Run(bool handle_signals) {
  if (handle_signals) {
    signals_.add(SIGINT);
    signals_.add(SIGTERM);
    signals_.async_wait([this](asio::error_code ec, int sig) {
      if (ec) return;
      spdlog::info("received signal {}; shutting down", sig);
      Shutdown();
    });
  }
  Tick();
  io_.run();
}

Manager::Manager(ManagerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Manager::~Manager() = default;
Status Manager::Start() { return impl_->Start(); }
void Manager::Run(bool handle_signals) { impl_->Run(handle_signals); }
void Manager::Stop() { impl_->Stop(); }
std::vector<std::string> Manager::listen_addresses() const { return impl_->bound_; }
std::string Manager::metrics_address() const {
  return impl_->metrics_ ? impl_->metrics_->address() : std::string();
}
const region::Region& Manager::region() const { return *impl_->region_; }
const ManagerStats& Manager::stats() const { return impl_->stats_; }

}  // namespace gismo::manager
