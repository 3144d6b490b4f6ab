#include "manager/manager.h"

#include <grp.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <asio.hpp>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <thread>
#include <unordered_map>
#include <utility>

#include "common/atomic.h"
#include "common/background_thread.h"
#include "common/clock.h"
#include "common/crash_point.h"
#include "fence/process.h"
#include "manager/fence_command.h"
#include "manager/listen.h"
#include "manager/manager_lease.h"
#include "manager/metrics.h"
#include "manager/recovery.h"
#include "protocol/auth.h"
#include "protocol/frame_auth.h"
#include "protocol/wire.h"
#include "region/cache_lines.h"
#include "region/owner_sleep.h"
#include "store/event_ring.h"
#include "store/index.h"
#include "store/nc_owner.h"
#include "store/txn.h"

namespace gismo::manager {

using protocol::MsgType;
using region::FenceReason;
using region::PackSlotState;
using region::SlotState;

namespace {
constexpr uint32_t kManagerSlot = 0;
constexpr auto kTick = std::chrono::milliseconds(20);
constexpr uint64_t kMs = 1'000'000;
// A node agent that answers a fence order "ask again" (BUSY) is asked again
// after this long, until the order's time (--agent-timeout-ms) is up.
constexpr uint64_t kAgentRetryMs = 100;
// The shortest client or manager lease (--lease-ms, --manager-lease-ms):
// four client heartbeats (at most one per 50 ms), ten manager ticks.
constexpr uint32_t kMinLeaseMs = 200;
// The longest lease, fence command or agent's fence it takes.
constexpr uint32_t kMaxDurationMs = 3'600'000;
// A fence command that failed is tried again after this long.
constexpr uint64_t kFenceRetryNs = 1000 * kMs;
// How long a refused peer's last frames (its error) may take to be written,
// and how many refused peers may be flushing at once.
constexpr int kFlushBeforeCloseMs = 1000;
constexpr uint32_t kMaxFlushingSessions = 64;

std::string IdKey(const gismo_id_t& id) {
  return std::string(reinterpret_cast<const char*>(id.bytes), GISMO_ID_SIZE);
}

const char* ReasonText(FenceReason r) {
  switch (r) {
    case FenceReason::kProcessGone:
      return "its process is gone (confirmed by this kernel)";
    case FenceReason::kNodeAgent:
      return "its node's agent confirmed its process gone";
    case FenceReason::kNodeFenced:
      return "its node was fenced";
    case FenceReason::kOperator:
      return "an operator fenced it";
    case FenceReason::kDeparted:
      return "it disconnected";
    default:
      return "unknown";
  }
}

// A group by name or number. A number must be a gid (below 2^32 - 1, which
// chown takes for "leave the group as it is").
Result<gid_t> ResolveGroup(const std::string& name) {
  if (!name.empty() && name.find_first_not_of("0123456789") == std::string::npos) {
    uint32_t n = 0;
    const auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), n);
    if (ec != std::errc() || end != name.data() + name.size() || n == ~uint32_t{0}) {
      return Status(GISMO_ERR_INVALID_ARGUMENT, "group id " + name + " is out of range");
    }
    return static_cast<gid_t>(n);
  }
  std::vector<char> buf(16384);
  group g{};
  group* found = nullptr;
  if (getgrnam_r(name.c_str(), &g, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
    return Status(GISMO_ERR_INVALID_ARGUMENT, "no such group: " + name);
  }
  return found->gr_gid;
}

std::string FormatMode(uint32_t mode) {
  char buf[8];
  snprintf(buf, sizeof buf, "%04o", mode & 07777);
  return buf;
}

}  // namespace

class Session;

// What the manager knows of one admitted client, from admission until its
// slot is free again. The slot's state in the region is the durable part;
// this is what a new manager rebuilds from it.
struct Member {
  enum class Phase {
    kConnected,   // its connection is up
    kDetached,    // its connection closed; it may re-attach until `deadline_ns`
    kSuspected,   // may still run: nothing of it is touched; being fenced
    kRecovering,  // fenced: recovery runs (and is retried while a lock is busy)
  };
  uint32_t slot = 0;
  uint64_t session = 0;
  uint64_t client_id = 0;
  uint32_t node = 0;
  fence::ProcessIdentity identity;
  std::string describe;
  std::weak_ptr<Session> conn;
  Phase phase = Phase::kConnected;
  uint64_t deadline_ns = 0;
  // Same kernel and PID namespace as the manager, with its process pinned by
  // a pidfd (of pid `pinned_pid` here): the manager fences it itself, by a
  // SIGKILL through the pidfd if the process maps the region
  // (fence::MapsRegion), else as a client of another node is fenced
  // (`local_kill_refused`).
  std::shared_ptr<asio::posix::stream_descriptor> pidfd;
  pid_t pinned_pid = 0;
  bool killed = false;
  bool local_kill_refused = false;
  uint64_t agent_request = 0;  // outstanding FenceProcess order (0: none)
  uint64_t probe_request = 0;  // outstanding probe of a detached member
  uint64_t agent_deadline_ns = 0;
  uint64_t agent_retry_ns = 0;  // the agent said "ask again" (BUSY): when to (0: no)
  bool agent_failed = false;
  // Its node was fenced while its pinned process ran on: that fence did not
  // reach it (it runs on this kernel, whatever node it claims), so it is not
  // run again for it.
  bool node_fence_missed = false;
  bool operator_hint_logged = false;
  FenceReason reason = FenceReason::kNone;
};

class Manager::Impl {
 public:
  explicit Impl(ManagerOptions o) : opt_(std::move(o)), tick_(io_), signals_(io_) {}
  ~Impl();

  Status CheckOptions() const;  // Manager::CheckOptions
  Status Start();
  void CatchSignals();
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
  bool catching_signals_ = false;  // io thread's (CatchSignals before Run)
  std::vector<std::unique_ptr<asio::local::stream_protocol::acceptor>> unix_acceptors_;
  std::vector<std::unique_ptr<asio::ip::tcp::acceptor>> tcp_acceptors_;
  std::vector<std::string> bound_;
  std::vector<std::string> unix_paths_;
  std::set<std::shared_ptr<Session>> sessions_;
  // The waits on each id, one entry per (session, wait id) however often
  // the wait names the id: a cancel erases its own entries in O(log n), not
  // by a scan of every wait on the id (which made a client's many waits on
  // one id cost the manager quadratic time when it closed).
  using WaitKey = std::pair<const Session*, uint64_t>;
  std::unordered_map<std::string, std::map<WaitKey, std::weak_ptr<Session>>> waits_by_id_;
  std::map<uint32_t, Member> members_;                 // by slot
  std::map<uint32_t, std::weak_ptr<Session>> agents_;  // by node
  std::map<uint32_t, FenceCommand> node_fences_;       // by node
  std::map<uint32_t, uint64_t> node_fence_retry_ns_;
  uint64_t next_agent_request_ = 1;
  uint64_t session_ = 0;  // the manager's own slot session
  std::unique_ptr<ManagerLease> lease_;
  // Set by the io thread when the lease is lost, read by Stop() and by
  // superseded() on any thread: it publishes nothing else (relaxed).
  std::atomic<bool> superseded_{false};
  bool kick_seen_ = false;
  int lock_fd_ = -1;
  bool created_region_file_ = false;  // OpenRegion made the region's file
  fence::ProcessIdentity self_;
  ManagerStats stats_;
  // Sessions flushing before their close (each keeps its descriptor up to
  // kFlushBeforeCloseMs); beyond kMaxFlushingSessions the others close at
  // once, so that a flood of refusals cannot hold descriptors.
  std::set<std::shared_ptr<Session>> flushing_sessions_;
  bool stopped_ = false;
  std::optional<protocol::Key> key_;
  uint32_t max_connections_ = 0;  // opt_.max_connections, resolved
  uint64_t total_wait_ids_ = 0;   // sum of Session::wait_ids
  // Kept open to be closed when accept() finds no descriptor left: one
  // accept then takes the waiting connection off the queue (and drops it),
  // instead of the loop spinning on EMFILE.
  int reserve_fd_ = -1;
  uint64_t last_refusal_log_ns_ = 0;
  uint64_t refusals_unlogged_ = 0;            // since the last summary
  std::unique_ptr<MetricsExporter> metrics_;  // after io_: destroyed before it
  // A non-coherent region (doc/noncoherent.md): this manager owns its
  // metadata and applies its clients' requests: owner thread 0 on this
  // thread (ServeRequests), threads 1.. (opt_.owner_threads) in nc_helpers_,
  // each with its store in nc_owners_[k] (section 9.3).
  struct OwnerThread {
    std::thread thread;
    std::mutex mu;
    std::condition_variable cv;
    bool rung = false;  // a client's kRequests frame came (guarded by mu)
  };
  std::unique_ptr<store::NcOwnerShared> nc_shared_;
  std::vector<std::unique_ptr<store::NcOwnerStore>> nc_owners_;
  std::vector<std::unique_ptr<OwnerThread>> nc_helpers_;  // [k - 1]: owner thread k
  // Set to stop the helper threads (relaxed would do: they also take the
  // thread's mutex before they sleep; acquire/release for clarity).
  std::atomic<bool> nc_stop_{false};
  region::HwLines nc_lines_;
  std::optional<region::OwnerSleep<region::HwLines>> nc_sleep_;
  bool nc_serve_posted_ = false;
  bool nc_asleep_ = false;
  uint64_t nc_idle_since_ns_ = 0;

 private:
  Status OpenRegion();
  // Start's second half: the connection limit, the listening addresses and
  // the metrics exporter.
  Status StartListening();
  void AdoptSlotsOfPreviousManager();
  // Non-coherent regions: applies what the clients published, then stays
  // awake a while (a burst's next request costs no wake-up), then sleeps
  // (owner_sleep.h) until a client's kRequests frame or the next tick.
  void PostServeRequests();
  void ServeRequests();
  // The store of the owner thread that serves client `slot`.
  store::NcOwnerStore& NcOwnerOf(uint32_t slot) const {
    return *nc_owners_[region::OwnerThreadOf(slot, nc_owners_.size())];
  }
  // Owner thread k >= 1: ServeRequests' loop on a thread of its own,
  // sleeping on its own word of the sleep line and its OwnerThread's
  // condition variable.
  void ServeRequestsOnHelper(uint32_t k);
  // On this thread, after any owner thread's pass: the sessions of clients
  // that broke the request protocol end, the waiters of what changed wake.
  void AfterServe(const std::vector<std::pair<uint32_t, Status>>& broken,
                  const std::vector<gismo_id_t>& changed);
  // A client of `slot` published requests while its owner thread slept.
  void WakeOwnerThreadOf(uint32_t slot);
  // The helper threads' Txn slots: what previous managers' helpers left
  // undone is undone and their slots freed (UndoHelpersOfPreviousOwner),
  // then this manager's are claimed and listed (ClaimHelperSlots).
  void UndoHelpersOfPreviousOwner();
  // A fresh slot: empty log (or rings), no held references, no slabs, no
  // locks; persisted.
  void ClearSlotBody(uint32_t slot);
  // Up to `count` free client slots (fewer, with a warning, if fewer are
  // free), each listed, cleared and active: (slot, session) each.
  Result<std::vector<std::pair<uint32_t, uint64_t>>> ClaimHelperSlots(uint32_t count);
  bool IsHelperSlot(uint32_t slot) const;
  void StopHelpers();
  void FreeHelperSlots();
  // The --listen and --metrics addresses parse, are of the right kind, and
  // no listen address is given twice.
  Status CheckAddresses() const;
  Status Listen(const std::string& address);
  void AcceptUnix(asio::local::stream_protocol::acceptor& a);
  void AcceptTcp(asio::ip::tcp::acceptor& a);
  void Adopt(asio::generic::stream_protocol::socket sock, std::string peer, bool is_unix);
  // accept() failed with `ec`: out of descriptors, or something else; the
  // acceptor is armed again after a pause, never at once.
  template <typename Acceptor>
  void AcceptFailed(Acceptor& a, const asio::error_code& ec, void (Impl::*again)(Acceptor&));
  // Room for one more connection: closes the oldest not admitted yet, if
  // any. False if every connection is admitted.
  bool EvictOldestUnadmitted(const std::string& why);
  void Refuse(const std::shared_ptr<Session>& s, const Status& why, const std::string& log,
              bool flush = true);
  Status SetUpFileAccess(const std::string& path, int fd, uint32_t mode, bool set_mode);
  void Tick();
  void Shutdown();
  void HandleHello(const std::shared_ptr<Session>& s, protocol::Reader& r);
  void HandleProof(const std::shared_ptr<Session>& s, protocol::Reader& r);
  void Admit(const std::shared_ptr<Session>& s, const protocol::Hello& hello);
  void Reattach(const std::shared_ptr<Session>& s, const protocol::Hello& hello);
  void AdmitAgent(const std::shared_ptr<Session>& s, const protocol::Hello& hello);
  void SendWelcome(const std::shared_ptr<Session>& s, uint32_t slot, uint64_t session,
                   uint64_t client_id, uint32_t node);
  void HandleWait(const std::shared_ptr<Session>& s, uint64_t wait_id, protocol::Reader& r);
  void CancelWait(const std::shared_ptr<Session>& s, uint64_t wait_id);
  // A waiter counter (diagnostics in a non-coherent region, where nothing
  // else reads it) flushed so that other hosts read what it says.
  void PublishCounter(const region::Word& w) const;
  void WakeWaiters(const gismo_id_t& id);
  void WakeAllWaiters();
  region::ShardHeader& ShardOf(const gismo_id_t& id) const {
    return region_->shard(region_->ShardOf(store::HashId(id)));
  }
  void NotifySubscribers();
  std::set<std::shared_ptr<Session>> subscribers_;
  void DropWaits(const std::shared_ptr<Session>& s);
  // Closes a connection and releases everything it holds: its waits
  // (waits_by_id_, total_wait_ids_, the shards' and the superblock's
  // `waiters`), its subscription (subscribers_, the superblock's
  // `subscribers`) and its place in sessions_. Every path that drops a
  // session ends here (OnClosed, a member's session ended, an agent
  // displaced by a newer one or whose node is fenced, Shutdown), so nothing
  // a closed session held stays counted; a session's later read failure
  // finds it gone from sessions_ and does nothing. What the session meant
  // to others (a member's phase, agents_) is the caller's to change.
  void EndSession(const std::shared_ptr<Session>& s);
  // Ends a member's connection (EndSession) after unbinding it from its
  // slot; the member itself (slot, session, phase) is the caller's.
  void CloseMemberSession(const std::shared_ptr<Session>& s);
  // A warning line, at most one a second; the rest are counted and summed up
  // by Tick (a flood of refusals must not become a flood of log lines).
  void WarnRateLimited(const std::string& line);
  // Ends the session with an error frame (request id 0), written before the
  // connection closes when `flush` (Session::FlushBeforeClose; else the
  // descriptor goes at once, and the frame only if the socket took it).
  void EndWithError(const std::shared_ptr<Session>& s, const Status& why, const std::string& log,
                    bool flush = true);

  // --- the failure model ---
  void WatchProcess(Member& m, int pidfd, pid_t pid);
  void ArmProcessWatch(Member& m);
  void TryWatchLocal(Member& m, const std::shared_ptr<Session>& s);
  void PostProcessGone(const Member& m);
  void Detach(Member& m, const std::string& why);
  // Whether the member's client left through the region
  // (ClientSlotHeader::departed names its session).
  bool LeftInRegion(const Member& m) const;
  // If it did, recovers it as a departure (may erase it) and returns true.
  bool RecoverIfLeftInRegion(Member& m);
  uint64_t AskAgent(const Member& m, bool probe_only);
  void Suspect(Member& m, const std::string& why);
  void AdvanceFencing(Member& m);
  void Fenced(Member& m, FenceReason reason);
  // Recovers the clients of `node` (all but `spared`, the operator's own
  // client when an operator fences it) and closes its agent; returns how
  // many clients it recovers.
  size_t FenceNode(uint32_t node, FenceReason reason,
                   std::optional<uint32_t> spared = std::nullopt);
  // False while a lock stays busy (retried from Tick).
  bool Recover(Member& m);
  void HandleFenceOrder(const std::shared_ptr<Session>& s, uint64_t request_id,
                        protocol::Reader& r);
  void HandleFenceResult(const std::shared_ptr<Session>& s, uint64_t request_id,
                         protocol::Reader& r);
  void SetSlotState(uint32_t slot, SlotState state, uint64_t session);
  bool IsLocalIdentity(const fence::ProcessIdentity& id) const { return id.SameNamespace(self_); }
};

// One connection: a client, a node agent, or a tool.
//
// What a peer can make the manager hold (doc/security.md):
//  - before admission (stage != kAdmitted): at most kMaxPreAdmissionPayload
//    bytes of input, for at most admission_timeout_ms, and no client slot;
//  - after: one frame of at most kMaxPayload bytes of input (a client's;
//    kMaxPreAdmissionPayload for an agent, or a client after its goodbye),
//    and at most
//    max_output_bytes of output it does not read (wake-ups and
//    notifications are coalesced: a peer that does not read is sent each
//    kind once, never a backlog), beyond which it is disconnected.
class Session : public std::enable_shared_from_this<Session> {
 public:
  enum class Stage {
    kHello,     // challenge sent; waiting for the hello
    kProof,     // access granted; waiting for the client's region proof
    kAdmitted,  // welcomed: a client, an agent
  };

  Session(Manager::Impl& m, asio::generic::stream_protocol::socket sock, std::string peer,
          bool is_unix, uint32_t max_output_bytes)
      : last_heard_ns_(MonotonicNs()),
        accepted_ns(last_heard_ns_),
        is_unix(is_unix),
        m_(m),
        sock_(std::move(sock)),
        peer_(std::move(peer)),
        max_output_bytes_(max_output_bytes) {}

  void Start() { ReadHeader(); }

  // Frames with the same nonzero `coalesce` key are sent once while one of
  // them waits in the queue (a wake-up or a notification says "look
  // again", and one says it as well as many).
  static constexpr uint64_t kNotifyKey = ~uint64_t{0};
  void Send(std::vector<uint8_t> frame, uint64_t coalesce = 0) {
    if (closed_ || overflowed_) return;
    if (coalesce != 0 && !queued_keys_.insert(coalesce).second) return;
    // A frame into an empty queue is always taken: no limit may refuse a
    // peer that reads everything (a reply larger than the limit).
    if (out_bytes_ != 0 && out_bytes_ + frame.size() > max_output_bytes_) return Overflow();
    // Tagged in queue order, which is the order on the wire.
    if (send_tags_) send_tags_->Sign(&frame);
    out_bytes_ += frame.size();
    bool idle = out_.empty();
    out_.push_back({coalesce, std::move(frame)});
    if (idle) WriteNext();
  }

  // A keyed connection (protocol/frame_auth.h): every frame after the
  // access, either way, is tagged. Called right after the access is queued.
  void StartTagging(protocol::FrameAuth auth) {
    send_tags_ = auth.send;
    recv_tags_ = auth.recv;
  }

  // The session's end: no frame is dispatched or queued after it. After
  // FlushBeforeClose, the frames queued (a refusal's error and what came
  // before it, so that the peer learns why) are still written, then the
  // sending side is shut down and the peer's input read and dropped until
  // it closes (a close with unread input would reset the connection, and
  // the peer could lose the error), all within kFlushBeforeCloseMs.
  void FlushBeforeClose() { flush_before_close_ = true; }
  void Close() {
    if (closed_) return;
    closed_ = true;
    if (flush_before_close_ && !overflowed_ &&
        m_.flushing_sessions_.size() < kMaxFlushingSessions) {
      m_.flushing_sessions_.insert(shared_from_this());
      flush_timer_ = std::make_unique<asio::steady_timer>(
          sock_.get_executor(), std::chrono::milliseconds(kFlushBeforeCloseMs));
      flush_timer_->async_wait(
          [this, self = shared_from_this()](asio::error_code) { CloseSocket(); });
      if (out_.empty()) ShutdownSending();
      // A read under way drops what it gets (see ReadHeader); with none
      // (the close came from the frame being handled), OnBody starts one.
      return;
    }
    CloseSocket();
  }

  // Closes the socket now (the end of a close, or of its flush).
  void CloseSocket() {
    if (socket_closed_) return;
    socket_closed_ = true;
    auto self = shared_from_this();  // the set below may hold the last reference
    if (flushing()) m_.flushing_sessions_.erase(self);
    if (flush_timer_) flush_timer_->cancel();
    asio::error_code ec;
    sock_.shutdown(asio::socket_base::shutdown_both, ec);
    sock_.close(ec);
  }

  // The peer's pid in the manager's PID namespace (Unix sockets only; 0 if
  // unknown), as the kernel reports it.
  pid_t PeerPid() {
    if (!is_unix || closed_) return 0;
    ucred cred{};
    socklen_t len = sizeof cred;
    if (getsockopt(sock_.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return 0;
    return cred.pid;
  }

  std::string Describe() const {
    if (agent_node >= 0) return "agent of node " + std::to_string(agent_node) + " (" + peer_ + ")";
    if (slot == 0) return peer_;
    return "client " + std::to_string(client_id) + " (slot " + std::to_string(slot) + ", node " +
           std::to_string(node) + ", pid " + std::to_string(pid) + " on " + host + ", " + name +
           ")";
  }

  uint32_t slot = 0;  // 0: not a client (slot 0 is the manager's own)
  uint64_t client_id = 0;
  uint32_t node = 0;
  uint64_t pid = 0;
  int64_t agent_node = -1;     // >= 0: the fencing agent of that node
  uint64_t goodbye_ns = 0;     // when its client said goodbye (0: it has not)
  bool proved_region = false;  // admitted as a client: it proved it maps the region
  fence::ProcessIdentity identity;
  std::string host, name;  // sanitized for the log
  uint64_t last_heard_ns_;
  std::map<uint64_t, std::vector<std::string>> waits;
  uint64_t wait_ids = 0;  // ids in `waits` (a wait for none counts one)
  bool closed_ = false;
  Stage stage = Stage::kHello;
  const uint64_t accepted_ns;
  protocol::Nonce server_nonce{};
  // Came through the Unix socket, or proved the cluster key.
  bool authenticated = false;
  protocol::Hello hello;  // kept from the hello until the proof
  const bool is_unix;

 private:
  void ReadHeader() {
    auto self = shared_from_this();
    asio::async_read(sock_, asio::buffer(hdr_), [this, self](asio::error_code ec, size_t) {
      if (closed_) return ec ? CloseSocket() : DropInput();  // never dispatched
      if (ec) return m_.OnClosed(self, ec == asio::error::eof ? "connection closed" : ec.message());
      head_ = protocol::DecodeHeader(hdr_.data());
      // A client's frames may be large (a get of many ids), until its
      // connection closes after its goodbye (another thread's wait may
      // still be on its way); a node agent's, admitted without proving the
      // region, never are (fence results, heartbeats), even after a goodbye
      // of its own.
      const uint32_t limit =
          (stage == Stage::kAdmitted && proved_region ? protocol::kMaxPayload
                                                      : protocol::kMaxPreAdmissionPayload) +
          (recv_tags_ ? protocol::kFrameTagSize : 0);
      if (head_.length > limit) {
        return m_.OnClosed(self, "oversized frame of " + std::to_string(head_.length) +
                                     " bytes, limit " + std::to_string(limit) +
                                     " (not a gismo client?)");
      }
      body_.resize(head_.length);
      if (head_.length == 0) return OnBody();
      asio::async_read(sock_, asio::buffer(body_), [this, self](asio::error_code ec2, size_t) {
        if (closed_) return ec2 ? CloseSocket() : DropInput();
        if (ec2) return m_.OnClosed(self, ec2.message());
        OnBody();
      });
    });
  }
  void OnBody() {
    auto self = shared_from_this();
    // A frame that fails its tag is not heard: it may be anyone's.
    if (recv_tags_ && !recv_tags_->Verify(&head_, &body_)) {
      IncrementRelaxed(m_.stats_.bad_frame_tags);
      return m_.OnClosed(self, protocol::BadFrameTag("this peer").message());
    }
    last_heard_ns_ = MonotonicNs();
    m_.OnFrame(self, head_, body_);
    // A large frame's buffer is not kept for the next one.
    if (body_.capacity() > protocol::kMaxPreAdmissionPayload) std::vector<uint8_t>().swap(body_);
    if (!closed_) return ReadHeader();
    if (flushing()) DropInput();
  }
  // While flushing before the close: reads and drops the peer's input until
  // it ends (then the socket closes) or the flush's time is up.
  void DropInput() {
    if (!flushing() || socket_closed_) return CloseSocket();
    body_.resize(4096);
    sock_.async_read_some(asio::buffer(body_),
                          [this, self = shared_from_this()](asio::error_code ec, size_t) {
                            if (ec) return CloseSocket();
                            DropInput();
                          });
  }
  void ShutdownSending() {
    asio::error_code ec;
    sock_.shutdown(asio::socket_base::shutdown_send, ec);
  }
  void WriteNext() {
    auto self = shared_from_this();
    // From now on the front frame is on its way: a new frame of its kind
    // is queued after it.
    if (out_.front().first != 0) queued_keys_.erase(out_.front().first);
    asio::async_write(sock_, asio::buffer(out_.front().second),
                      [this, self](asio::error_code ec, size_t) {
                        if (ec) return closed_ ? CloseSocket() : m_.OnClosed(self, ec.message());
                        out_bytes_ -= out_.front().second.size();
                        out_.pop_front();
                        // Closed: the rest is written only while flushing
                        // before the close (else the socket is closed, and
                        // the write fails); then the peer is told the end.
                        if (!out_.empty()) return WriteNext();
                        if (flushing()) ShutdownSending();
                      });
  }
  // Its queue is full: it does not read. Disconnected from the event loop
  // (the caller may be iterating over sessions).
  void Overflow();

  Manager::Impl& m_;
  asio::generic::stream_protocol::socket sock_;
  std::string peer_;
  std::array<uint8_t, protocol::kHeaderSize> hdr_{};
  protocol::FrameHeader head_;
  std::vector<uint8_t> body_;
  std::deque<std::pair<uint64_t, std::vector<uint8_t>>> out_;  // coalesce key, frame
  std::set<uint64_t> queued_keys_;  // keys of queued frames not yet being written
  size_t out_bytes_ = 0;
  const uint32_t max_output_bytes_;
  bool overflowed_ = false;
  bool flush_before_close_ = false;
  bool socket_closed_ = false;
  std::unique_ptr<asio::steady_timer> flush_timer_;  // bounds the flush before a close
  std::optional<protocol::FrameTagger> send_tags_;   // a keyed connection's (StartTagging)
  std::optional<protocol::FrameTagger> recv_tags_;
  // Closed, writing what was queued (FlushBeforeClose): the flush's timer
  // exists exactly then.
  bool flushing() const { return flush_timer_ != nullptr; }
};

void Session::Overflow() {
  overflowed_ = true;
  IncrementRelaxed(m_.stats_.output_overflows);
  asio::post(m_.io_, [this, self = shared_from_this()] {
    m_.OnClosed(self, "it does not read its connection: over " + std::to_string(max_output_bytes_) +
                          " bytes queued for it");
  });
}

Manager::Impl::~Impl() {
  StopHelpers();
  for (const auto& p : unix_paths_) unlink(p.c_str());
  if (lock_fd_ >= 0) close(lock_fd_);
  if (reserve_fd_ >= 0) close(reserve_fd_);
}

void Manager::Impl::ClearSlotBody(uint32_t slot) {
  // Everything its owner writes (log or rings, held table, slabs, lock
  // records) cleared, in memory before the caller changes its state.
  uint8_t* base = reinterpret_cast<uint8_t*>(&region_->slot(slot));
  const size_t clear_from = offsetof(region::ClientSlotHeader, log_epoch);
  std::memset(base + clear_from, 0, region_->fixed().client_slot_size - clear_from);
  region_->Persist(base, region_->fixed().client_slot_size);
}

void Manager::Impl::SetSlotState(uint32_t slot, SlotState state, uint64_t session) {
  // seq_cst: Txn invariant 4 (a client re-reads its state after each CAS).
  region_->slot(slot).state.store(PackSlotState(state, session), std::memory_order_seq_cst);
  // Durable regions: the slot's header (state, identity) is on the medium
  // before the client is told it may use the slot, and a recovery that
  // frees it is.
  region_->Persist(&region_->slot(slot), sizeof(region::ClientSlotHeader));
}

namespace {

// The lease as this manager's options say to take it.
LeaseOptions LeaseOptionsOf(const ManagerOptions& opt) {
  LeaseOptions lo;
  lo.node_id = opt.node_id;
  lo.lease_ms = opt.manager_lease_ms;
  lo.previous_manager_fenced = opt.previous_manager_fenced;
  lo.standby = opt.standby;
  lo.fence_command = opt.fence_command;
  lo.fence_timeout_ms = opt.fence_timeout_ms;
  lo.region_path = opt.region_path;
  return lo;
}

}  // namespace

Status Manager::Impl::OpenRegion() {
  // One manager per region on this host: a shortcut; the lease below is
  // what holds across hosts.
  // O_EXCL first: whether this start made the file is decided by the
  // kernel, not by a look before another process's open.
  bool created = true;
  lock_fd_ = open(opt_.region_path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0660);
  if (lock_fd_ < 0 && errno == EEXIST) {
    created = false;
    lock_fd_ = open(opt_.region_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0660);
  }
  if (lock_fd_ < 0) {
    return Status(GISMO_ERR_IO,
                  "cannot open region '" + opt_.region_path + "': " + std::strerror(errno));
  }
  // A standby waits for the lease instead (the lock's holder may be frozen
  // and must be fenced through the lease first), and takes the lock after.
  bool host_lock_deferred = false;
  if (!opt_.skip_host_lock && flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    if (!opt_.standby) {
      return Status(GISMO_ERR_IO,
                    "another gismo-manager is already serving region '" + opt_.region_path + "'");
    }
    host_lock_deferred = true;
  }
  // Removed again if the start fails (Start) only while this host's lock
  // keeps every other manager of this host from mapping it; a standby's or
  // a --skip-host-lock start leaves it.
  created_region_file_ = created && !opt_.skip_host_lock && !host_lock_deferred;
  // --format wipes what the region holds, so not under a manager that
  // serves it from another host (this host's holds the lock above). A
  // region that opens is first taken as a start without --format takes it:
  // a live holder of its lease refuses the format, a silent one is fenced.
  // The formatting then clears the lease, which is taken anew below.
  // If the format then fails before it wipes the region (--durable on
  // tmpfs), that lease is given back.
  std::unique_ptr<region::Region> existing;
  std::unique_ptr<ManagerLease> previous;
  if (opt_.force_format) {
    if (auto opened = region::Region::Open(opt_.region_path); opened.ok()) {
      existing = std::move(*opened);
      previous = std::make_unique<ManagerLease>(*existing, LeaseOptionsOf(opt_));
      if (auto taken = previous->Acquire(); !taken.ok()) {
        return Status(taken.status().code(),
                      "--format: " + taken.status().message() +
                          "; stop that manager first (formatting would wipe the region it serves)");
      }
    }
  }
  bool formatted = false;
  auto r =
      region::Region::OpenOrFormat(opt_.region_path, opt_.format, opt_.force_format, &formatted);
  if (!r.ok() && previous) previous->Release();
  previous.reset();
  existing.reset();
  if (!r.ok()) return r.status();
  region_ = std::move(*r);
  if (formatted || opt_.region_mode >= 0) {
    const uint32_t mode = opt_.region_mode >= 0 ? static_cast<uint32_t>(opt_.region_mode) : 0660;
    if (Status s = SetUpFileAccess(opt_.region_path, lock_fd_, mode, true); !s.ok()) {
      // A device (PCI BAR) or hugetlbfs file may refuse: only an explicit
      // request is an error.
      if (opt_.region_mode >= 0 || !opt_.group.empty()) return s;
      spdlog::warn("{}", s.message());
    }
  }
  region::Superblock& sb = region_->sb();
  const region::Superblock& fixed = region_->fixed();
  spdlog::info("{} region {}: {} ({} heap, {} objects, {} clients)",
               formatted ? "formatted" : "opened", opt_.region_path,
               region::FormatSize(fixed.region_size), region::FormatSize(fixed.heap_size),
               fixed.max_objects, fixed.max_clients - 1);
  if (region_->durable()) {
    // A durable region copied to a volatile file system lost what it was
    // formatted for: refuse rather than serve it as if it were durable.
    if (!region_->volatile_medium().empty()) {
      return Status(GISMO_ERR_UNSUPPORTED,
                    "region '" + opt_.region_path +
                        "' was formatted durable (--durable) but lies on " +
                        region_->volatile_medium() +
                        ", which does not outlive the host's power; move it to a disk or DAX "
                        "file system, or format it anew without --durable");
    }
    spdlog::info("durable region: metadata and sealed data persisted by {}",
                 region::PersistModeName(region_->persist_mode()));
  }
  if (region_->noncoherent() && !region::NonCoherentSupported()) {
    return region::NonCoherentRefusal(opt_.region_path);
  }
  self_ = fence::Self();
  lease_ = std::make_unique<ManagerLease>(*region_, LeaseOptionsOf(opt_));
  auto fenced = lease_->Acquire();
  if (!fenced.ok()) return fenced.status();
  if (host_lock_deferred) {
    // The previous manager of this host stopped or was fenced: its process
    // ends (and its lock with it) within the fence's wait.
    const uint64_t until = MonotonicNs() + uint64_t{opt_.fence_timeout_ms} * 1'000'000;
    while (flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
      if (MonotonicNs() > until) {
        lease_->Release();
        return Status(GISMO_ERR_BUSY,
                      "took the region's lease, but the previous manager of this "
                      "host still holds the region file's lock");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  const std::string& how = *fenced;
  if (!how.empty()) spdlog::warn("took over the region: {}", how);
  // The previous owner is fenced: what it flushed is in memory, and this
  // host reads it afresh (non-coherent regions).
  region_->InvalidateMetadata();
  // Our own slot: the previous manager (fenced now) may have died inside a
  // transaction.
  region::ClientSlotHeader& me = region_->slot(kManagerSlot);
  const uint64_t st = me.state.load(std::memory_order_acquire);
  if (region::SlotStateOf(st) != SlotState::kFree) {
    store::UndoDeadClient(*region_, kManagerSlot);
    store::FinishDeadProducerEvents(*region_, kManagerSlot);
  }
  UndoHelpersOfPreviousOwner();
  session_ = region::SlotSessionOf(st) + 1;
  me.client_id.store(0, std::memory_order_relaxed);
  me.node_id.store(opt_.node_id, std::memory_order_relaxed);
  me.pid.store(static_cast<uint64_t>(getpid()), std::memory_order_relaxed);
  me.connect_time_ns.store(RealtimeNs(), std::memory_order_relaxed);
  // A fresh admission secret: proofs computed for a previous manager are
  // worth nothing here. Release: written before any Access is sent, which
  // is what tells a client to read it.
  const protocol::Nonce secret = protocol::RandomNonce();
  uint64_t words[2];
  std::memcpy(words, secret.data(), sizeof words);
  me.admission_secret[0].store(words[0], std::memory_order_release);
  me.admission_secret[1].store(words[1], std::memory_order_release);
  SetSlotState(kManagerSlot, SlotState::kActive, session_);
  sb.manager_start_time_ns.store(RealtimeNs(), std::memory_order_relaxed);
  sb.manager_heartbeat_ns.store(RealtimeNs(), std::memory_order_relaxed);
  sb.lock_wait_ms.store(opt_.lock_wait_ms, std::memory_order_relaxed);
  sb.evict_percent.store(opt_.evict_percent, std::memory_order_relaxed);
  // Waits and subscriptions of a previous manager died with its connections
  // (clients that re-attach register theirs again).
  sb.waiters.store(0, std::memory_order_seq_cst);
  sb.subscribers.store(0, std::memory_order_seq_cst);
  sb.kick_pending.store(0, std::memory_order_seq_cst);
  for (uint32_t i = 0; i < region_->num_shards(); ++i) {
    region_->shard(i).waiters.store(0, std::memory_order_seq_cst);
  }
  // Durable regions: the lease and this manager's identity are on the
  // medium (a manager after a power loss fences this one by them).
  region_->Persist(uint64_t{0}, sizeof(region::Superblock));
  if (!region_->noncoherent() && opt_.owner_threads > 1) {
    spdlog::warn(
        "--owner-threads {} has no effect on a coherent region (its clients apply their "
        "own operations)",
        opt_.owner_threads);
  }
  if (region_->noncoherent()) {
    auto helpers = ClaimHelperSlots(opt_.owner_threads - 1);
    if (!helpers.ok()) return helpers.status();
    nc_shared_ = std::make_unique<store::NcOwnerShared>();
    for (const auto& helper : *helpers) nc_shared_->helper_slots.push_back(helper.first);
    nc_owners_.push_back(
        std::make_unique<store::NcOwnerStore>(*region_, kManagerSlot, session_, nc_shared_.get()));
    for (const auto& [slot, session] : *helpers) {
      nc_owners_.push_back(
          std::make_unique<store::NcOwnerStore>(*region_, slot, session, nc_shared_.get()));
    }
    nc_owners_[0]->AdoptDeleting();
    // Every thread awake, and their count in memory before any client is
    // served (a client reads it to find its thread's word, W1).
    region::OwnerSleepLine& line = sb.owner_sleep;
    for (uint32_t k = 0; k < region::kMaxOwnerThreads; ++k) nc_lines_.Store(&line.sleeping[k], 0);
    const uint32_t threads = static_cast<uint32_t>(nc_owners_.size());
    nc_lines_.Store(&line.threads, threads);
    nc_lines_.Flush(&line, sizeof(line));
    nc_sleep_.emplace(nc_lines_, &line, 0);
    for (uint32_t k = 1; k < threads; ++k) nc_helpers_.push_back(std::make_unique<OwnerThread>());
    for (uint32_t k = 1; k < threads; ++k) {
      nc_helpers_[k - 1]->thread = StartBackgroundThread([this, k] { ServeRequestsOnHelper(k); });
    }
    spdlog::info("non-coherent region: this manager applies the clients' requests ({} thread{})",
                 nc_owners_.size(), nc_owners_.size() == 1 ? "" : "s");
  }
  AdoptSlotsOfPreviousManager();
  return Status();
}

void Manager::Impl::UndoHelpersOfPreviousOwner() {
  // The previous owner is fenced, and its helper threads with it (one
  // process): each listed slot's Txn is undone, its events finished, and
  // the slot freed; then the list is cleared, before any client is admitted
  // (so a slot it names is never a client's).
  region::OwnerHelpersLine& line = region_->sb().owner_helpers;
  region::HwLines lines;
  lines.Invalidate(&line, sizeof(line));
  for (uint32_t k = 1; k < region::kMaxOwnerThreads; ++k) {
    const uint64_t v = lines.Load(&line.slots[k]);
    if (v == 0) continue;
    if (v - 1 == kManagerSlot || v - 1 >= region_->max_clients()) {
      spdlog::warn(
          "the owner's helper line names slot {} for thread {}: not a client slot; "
          "ignored",
          v - 1, k);
      continue;
    }
    const uint32_t slot = static_cast<uint32_t>(v - 1);
    const uint64_t st = region_->slot(slot).state.load(std::memory_order_acquire);
    if (region::SlotStateOf(st) == SlotState::kFree) continue;
    // A helper's slot has client id 0 (ClaimHelperSlots, before the slot is
    // active); a client's never does (ids start at 1). A line naming a
    // client's slot is corrupt: that client is left alone, its table kept.
    if (const uint64_t id = region_->slot(slot).client_id.load(std::memory_order_relaxed);
        id != 0) {
      spdlog::warn(
          "the owner's helper line names slot {} for thread {}: a client's slot (client id "
          "{}), not a helper's; ignored",
          slot, k, id);
      continue;
    }
    const uint32_t released = store::UndoDeadClient(*region_, slot);
    store::FinishDeadProducerEvents(*region_, slot);
    ClearSlotBody(slot);
    SetSlotState(slot, SlotState::kFree, region::SlotSessionOf(st));
    spdlog::info(
        "owner thread {} of the previous manager (slot {}): its Txn undone, {} lock{} "
        "released",
        k, slot, released, released == 1 ? "" : "s");
  }
  for (uint32_t k = 0; k < region::kMaxOwnerThreads; ++k) lines.Store(&line.slots[k], 0);
  region_->Persist(&line, sizeof(line));
}

Result<std::vector<std::pair<uint32_t, uint64_t>>> Manager::Impl::ClaimHelperSlots(uint32_t count) {
  std::vector<std::pair<uint32_t, uint64_t>> claimed;
  region::OwnerHelpersLine& line = region_->sb().owner_helpers;
  region::HwLines lines;
  for (uint32_t i = 1; i < region_->max_clients() && claimed.size() < count; ++i) {
    region::ClientSlotHeader& h = region_->slot(i);
    const uint64_t st = h.state.load(std::memory_order_acquire);
    if (region::SlotStateOf(st) != SlotState::kFree) continue;
    const uint64_t session = region::SlotSessionOf(st) + 1;
    // Listed (and persisted) before it is active: a successor finds every
    // helper slot that may hold a Txn.
    lines.Store(&line.slots[claimed.size() + 1], uint64_t{i} + 1);
    region_->Persist(&line, sizeof(line));
    ClearSlotBody(i);
    h.client_id.store(0, std::memory_order_relaxed);
    h.node_id.store(opt_.node_id, std::memory_order_relaxed);
    h.pid.store(static_cast<uint64_t>(getpid()), std::memory_order_relaxed);
    h.connect_time_ns.store(RealtimeNs(), std::memory_order_relaxed);
    h.heartbeat_ns.store(RealtimeNs(), std::memory_order_relaxed);
    h.fenced_by.store(0, std::memory_order_relaxed);
    const auto words = self_.ToWords();
    for (int k = 0; k < 4; ++k) h.identity[k].store(words[k], std::memory_order_relaxed);
    region_->Persist(&h, region_->fixed().client_slot_size);
    SetSlotState(i, SlotState::kActive, session);
    claimed.emplace_back(i, session);
  }
  if (claimed.size() < count) {
    // Serving with fewer threads beats not serving (a successor taking over
    // a region whose clients hold most slots).
    spdlog::warn(
        "--owner-threads {}: only {} client slot{} free for helper threads; serving "
        "with {} thread{}",
        count + 1, claimed.size(), claimed.size() == 1 ? " is" : "s are", claimed.size() + 1,
        claimed.empty() ? "" : "s");
  }
  return claimed;
}

bool Manager::Impl::IsHelperSlot(uint32_t slot) const {
  for (size_t k = 1; k < nc_owners_.size(); ++k) {
    if (nc_owners_[k]->txn_slot() == slot) return true;
  }
  return false;
}

void Manager::Impl::StopHelpers() {
  nc_stop_.store(true, std::memory_order_release);
  for (auto& h : nc_helpers_) {
    {
      std::lock_guard<std::mutex> lk(h->mu);
      h->rung = true;
    }
    h->cv.notify_one();
  }
  for (auto& h : nc_helpers_) {
    if (h->thread.joinable()) h->thread.join();
  }
}

void Manager::Impl::FreeHelperSlots() {
  // A clean stop: the helpers' Txns all ended (StopHelpers), so their
  // slots are free again and the list empty.
  region::OwnerHelpersLine& line = region_->sb().owner_helpers;
  for (size_t k = 1; k < nc_owners_.size(); ++k) {
    const uint32_t slot = nc_owners_[k]->txn_slot();
    const uint64_t st = region_->slot(slot).state.load(std::memory_order_acquire);
    ClearSlotBody(slot);  // its log: a client's rings once it is given out
    SetSlotState(slot, SlotState::kFree, region::SlotSessionOf(st));
    nc_lines_.Store(&line.slots[k], 0);
  }
  region_->Persist(&line, sizeof(line));
}

void Manager::Impl::PostServeRequests() {
  if (nc_owners_.empty() || nc_serve_posted_ || stopped_) return;
  nc_serve_posted_ = true;
  asio::post(io_, [this] { ServeRequests(); });
}

void Manager::Impl::ServeRequests() {
  nc_serve_posted_ = false;
  if (stopped_) return;
  if (nc_asleep_) {
    nc_sleep_->Woke();  // S3
    nc_asleep_ = false;
  }
  constexpr uint32_t kBatch = 64;
  // How long the owner stays awake after its last request.
  constexpr uint64_t kStayAwakeNs = 200 * 1000;
  store::NcOwnerStore& owner = *nc_owners_[0];
  std::vector<std::pair<uint32_t, Status>> broken;
  const uint32_t applied = owner.ServeAll(kBatch, &broken);
  AfterServe(broken, owner.TakeChanged());
  const uint64_t now = MonotonicNs();
  owner.SweepIfDue(now);
  if (applied > 0) {
    nc_idle_since_ns_ = now;
    return PostServeRequests();
  }
  if (now - nc_idle_since_ns_ < kStayAwakeNs) return PostServeRequests();
  // S1, S2: every request published from now on rings (kRequests).
  if (nc_sleep_->PrepareToSleep([&owner] { return owner.AnyPending(); })) {
    nc_asleep_ = true;
  } else {
    PostServeRequests();
  }
}

void Manager::Impl::ServeRequestsOnHelper(uint32_t k) {
  GISMO_CRASH_THREAD_ROLE("owner-helper");
  constexpr uint32_t kBatch = 64;
  constexpr uint64_t kStayAwakeNs = 200 * 1000;
  // A wake-up that never came costs at most this (the tick of thread 0).
  constexpr auto kNap = std::chrono::milliseconds(20);
  store::NcOwnerStore& owner = *nc_owners_[k];
  OwnerThread& me = *nc_helpers_[k - 1];
  region::HwLines lines;
  region::OwnerSleep<region::HwLines> sleep(lines, &region_->sb().owner_sleep, k);
  uint64_t idle_since = MonotonicNs();
  while (!nc_stop_.load(std::memory_order_acquire)) {
    std::vector<std::pair<uint32_t, Status>> broken;
    const uint32_t applied = owner.ServeAll(kBatch, &broken);
    std::vector<gismo_id_t> changed = owner.TakeChanged();
    if (!changed.empty()) {
      // Nobody to wake (no wait, no subscription registered): this thread
      // does not wake the io thread for each seal and delete. A wait or a
      // subscription registered after these loads re-reads the object (or
      // the ring) after its ack, which comes after its counter's raise
      // (seq_cst, paired with this fence after the commits).
      std::atomic_thread_fence(std::memory_order_seq_cst);
      const region::Superblock& sb = region_->sb();
      if (sb.waiters.load(std::memory_order_seq_cst) == 0 &&
          sb.subscribers.load(std::memory_order_seq_cst) == 0) {
        changed.clear();
      }
    }
    if (!broken.empty() || !changed.empty()) {
      asio::post(io_, [this, broken = std::move(broken), changed = std::move(changed)] {
        AfterServe(broken, changed);
      });
    }
    const uint64_t now = MonotonicNs();
    owner.SweepIfDue(now);
    if (applied > 0) {
      idle_since = now;
      continue;
    }
    if (now - idle_since < kStayAwakeNs) {
      std::this_thread::yield();
      continue;
    }
    // S1, S2 on this thread's word; S3 after the wait.
    if (!sleep.PrepareToSleep([&owner] { return owner.AnyPending(); })) continue;
    {
      std::unique_lock<std::mutex> lk(me.mu);
      me.cv.wait_for(lk, kNap, [&] { return me.rung; });
      me.rung = false;
    }
    sleep.Woke();
    idle_since = MonotonicNs();
  }
}

void Manager::Impl::AfterServe(const std::vector<std::pair<uint32_t, Status>>& broken,
                               const std::vector<gismo_id_t>& changed) {
  for (const auto& [slot, why] : broken) {
    auto it = members_.find(slot);
    if (it == members_.end()) continue;
    spdlog::warn("{} broke the request protocol: {}; ending its session", it->second.describe,
                 why.message());
    if (auto conn = it->second.conn.lock()) {
      asio::post(io_, [this, conn, why = why] { Refuse(conn, why, "broke the request protocol"); });
    }
  }
  for (const gismo_id_t& id : changed) WakeWaiters(id);
  if (!changed.empty()) NotifySubscribers();  // the owner appended their events
}

void Manager::Impl::WakeOwnerThreadOf(uint32_t slot) {
  const uint32_t k = region::OwnerThreadOf(slot, nc_owners_.size());
  if (k == 0) return PostServeRequests();
  OwnerThread& h = *nc_helpers_[k - 1];
  {
    std::lock_guard<std::mutex> lk(h.mu);
    h.rung = true;
  }
  h.cv.notify_one();
}

// Clients of a previous manager are not dead because it is: each gets the
// re-attach window, exactly like a client whose connection closed. Only
// those that do not come back are suspected, and recovered once fenced.
void Manager::Impl::AdoptSlotsOfPreviousManager() {
  const uint64_t grace =
      uint64_t{std::max<uint32_t>(opt_.reattach_ms ? opt_.reattach_ms : 3000, opt_.lease_ms)} * kMs;
  for (uint32_t i = 1; i < region_->max_clients(); ++i) {
    region::ClientSlotHeader& h = region_->slot(i);
    const uint64_t st = h.state.load(std::memory_order_acquire);
    const SlotState state = region::SlotStateOf(st);
    if (state == SlotState::kFree || IsHelperSlot(i)) continue;
    Member m;
    m.slot = i;
    m.session = region::SlotSessionOf(st);
    m.client_id = h.client_id.load(std::memory_order_relaxed);
    m.node = static_cast<uint32_t>(h.node_id.load(std::memory_order_relaxed));
    m.identity = fence::ProcessIdentity::FromWords(h.identity);
    m.describe = "client " + std::to_string(m.client_id) + " (slot " + std::to_string(i) +
                 ", node " + std::to_string(m.node) + ", left by a previous manager)";
    auto [it, _] = members_.emplace(i, std::move(m));
    Member& mm = it->second;
    switch (state) {
      case SlotState::kActive:
        if (!nc_owners_.empty()) NcOwnerOf(i).Admit(i, mm.session);
        mm.phase = Member::Phase::kDetached;
        mm.deadline_ns = MonotonicNs() + grace;
        TryWatchLocal(mm, nullptr);
        spdlog::info("{}: waiting {} ms for it to re-attach", mm.describe, grace / kMs);
        break;
      case SlotState::kSuspected:
        mm.phase = Member::Phase::kSuspected;
        spdlog::warn("{} was suspected by the previous manager; fencing it", mm.describe);
        TryWatchLocal(mm, nullptr);
        break;
      default:  // kRecovering: it was fenced; finish its recovery
        mm.phase = Member::Phase::kRecovering;
        mm.reason = static_cast<FenceReason>(h.fenced_by.load(std::memory_order_relaxed));
        break;
    }
  }
}

// --- the failure model ------------------------------------------------------

void Manager::Impl::WatchProcess(Member& m, int pidfd, pid_t pid) {
  m.pidfd = std::make_shared<asio::posix::stream_descriptor>(io_, pidfd);
  m.pinned_pid = pid;
  ArmProcessWatch(m);
}

// A pidfd turns readable when its process has exited: it can never run again,
// so its slot can be recovered at once. The reactor's word that it is
// readable is only a hint (a readiness left over from a closed descriptor
// whose number the pidfd reuses has been seen to reach it): the kernel is
// asked again, and a process that still runs is watched on.
void Manager::Impl::ArmProcessWatch(Member& m) {
  const uint32_t slot = m.slot;
  const uint64_t session = m.session;
  m.pidfd->async_wait(asio::posix::stream_descriptor::wait_read,
                      [this, slot, session, watched = std::weak_ptr(m.pidfd)](asio::error_code ec) {
                        if (ec) return;
                        auto it = members_.find(slot);
                        if (it == members_.end() || it->second.session != session) return;
                        Member& mm = it->second;
                        if (mm.phase == Member::Phase::kRecovering || mm.pidfd != watched.lock())
                          return;
                        if (!fence::PidfdExited(mm.pidfd->native_handle())) {
                          spdlog::debug("{}: its pidfd was reported readable, but it runs",
                                        mm.describe);
                          return ArmProcessWatch(mm);
                        }
                        spdlog::info("{}: its process has exited", mm.describe);
                        Fenced(mm, FenceReason::kProcessGone);
                      });
}

// Fences the member (its process is gone) from the event loop, if the slot
// still holds that session then.
void Manager::Impl::PostProcessGone(const Member& m) {
  asio::post(io_, [this, slot = m.slot, session = m.session] {
    auto it = members_.find(slot);
    if (it != members_.end() && it->second.session == session &&
        it->second.phase != Member::Phase::kRecovering) {
      Fenced(it->second, FenceReason::kProcessGone);
    }
  });
}

// Pins the member's process with a pidfd when it runs in this kernel and
// PID namespace: proven by the kernel for a Unix-socket peer (SO_PEERCRED),
// else by its claimed identity (same boot id, namespace, and start time).
// A claimed identity (a TCP client's hello, or the words a previous manager
// left in the slot) is only the peer's word, and a start time is readable by
// anyone in /proc/PID/stat: pinning proves nothing about whose process it
// is, so AdvanceFencing kills a pinned process only if it maps the region.
void Manager::Impl::TryWatchLocal(Member& m, const std::shared_ptr<Session>& s) {
  if (m.pidfd) return;
  pid_t pid = s ? s->PeerPid() : 0;
  if (pid == 0) {
    if (!IsLocalIdentity(m.identity) || m.identity.pid == 0 || m.identity.pid > 0x3fffffff) {
      return;
    }
    pid = static_cast<pid_t>(m.identity.pid);
  }
  const int fd = fence::OpenPidfd(pid);
  if (fd < 0) {
    // Its process is gone already (ESRCH), if the identity was ours.
    if (errno == ESRCH && IsLocalIdentity(m.identity) && pid == pid_t(m.identity.pid) &&
        m.phase != Member::Phase::kConnected) {
      PostProcessGone(m);
    }
    return;
  }
  // Without the kernel's word (no peer credentials), the start time tells
  // whether the pid still names the same process.
  if (!s || s->PeerPid() == 0) {
    const uint64_t start_time = fence::Lookup(pid).start_time;
    if (start_time == 0 || start_time != m.identity.start_time) {
      close(fd);
      // Another start time: the pid names another process, the member's is
      // gone. None (0: /proc hides the process from this manager, mounted
      // hidepid=), or none claimed: nothing shows that the pidfd pins the
      // member's process, so it is not pinned (a SIGKILL through it could
      // hit a stranger) and the member is fenced as a remote one is.
      if (start_time != 0 && m.identity.start_time != 0 && m.phase != Member::Phase::kConnected &&
          fence::InThisTimeNamespace(pid)) {
        PostProcessGone(m);
      }
      return;
    }
  }
  WatchProcess(m, fd, pid);
}

bool Manager::Impl::LeftInRegion(const Member& m) const {
  const region::Word& departed = region_->slot(m.slot).departed;
  // The client writes it (its own line in a non-coherent region).
  if (region_->noncoherent()) region::InvalidateLines(&departed, sizeof departed);
  return departed.load(std::memory_order_acquire) == m.session;
}

bool Manager::Impl::RecoverIfLeftInRegion(Member& m) {
  if (!LeftInRegion(m)) return false;
  spdlog::info("{} disconnected (its goodbye was left in the region)", m.describe);
  Fenced(m, FenceReason::kDeparted);
  return true;
}

void Manager::Impl::Detach(Member& m, const std::string& why) {
  if (m.phase != Member::Phase::kConnected) return;
  m.conn.reset();
  if (RecoverIfLeftInRegion(m)) return;
  if (!m.pidfd && fence::ProvenGone(m.identity)) {
    spdlog::info("{}: {}, and its process is gone", m.describe, why);
    return Fenced(m, FenceReason::kProcessGone);
  }
  const uint64_t grace =
      uint64_t{opt_.reattach_ms ? opt_.reattach_ms : (opt_.lease_ms ? opt_.lease_ms : 3000)} * kMs;
  m.phase = Member::Phase::kDetached;
  m.deadline_ns = MonotonicNs() + grace;
  spdlog::info("{}: {}; it keeps its slot for {} ms to re-attach", m.describe, why, grace / kMs);
  // Did it die? Its node's agent can tell at once (no kill: it may be alive
  // and about to re-attach).
  m.probe_request = AskAgent(m, /*probe_only=*/true);
}

// Sends the member's node agent a FenceProcess order; its request id, or 0
// if the node has no agent that shares the member's PID namespace.
uint64_t Manager::Impl::AskAgent(const Member& m, bool probe_only) {
  auto it = agents_.find(m.node);
  auto agent = it == agents_.end() ? nullptr : it->second.lock();
  if (!agent || !agent->identity.SameNamespace(m.identity)) return 0;
  protocol::FenceProcessOrder order;
  order.slot = m.slot;
  order.session = m.session;
  const fence::ProcessIdentity::Words who = m.identity.ToWords();
  std::copy(who.begin(), who.end(), order.identity);
  order.probe_only = probe_only;
  const uint64_t request = next_agent_request_++;
  agent->Send(protocol::EncodeFenceProcessOrder(request, order));
  if (!probe_only) spdlog::info("{}: asked {} to fence it", m.describe, agent->Describe());
  return request;
}

void Manager::Impl::Suspect(Member& m, const std::string& why) {
  if (m.phase == Member::Phase::kSuspected || m.phase == Member::Phase::kRecovering) return;
  if (auto s = m.conn.lock()) CloseMemberSession(s);
  m.conn.reset();
  m.phase = Member::Phase::kSuspected;
  SetSlotState(m.slot, SlotState::kSuspected, m.session);
  IncrementRelaxed(stats_.clients_suspected);
  spdlog::warn("{} is suspected ({}); nothing it owns is touched until it is fenced", m.describe,
               why);
  AdvanceFencing(m);
}

// Tries, in order: the manager's own kernel (pidfd), the node's agent, the
// node's fence command; else waits for an operator.
void Manager::Impl::AdvanceFencing(Member& m) {
  if (m.phase != Member::Phase::kSuspected) return;
  if (RecoverIfLeftInRegion(m)) return;
  const uint64_t now = MonotonicNs();
  // Its process may be gone already (and reaped, so no pidfd could pin it).
  if (!m.pidfd && fence::ProvenGone(m.identity)) return Fenced(m, FenceReason::kProcessGone);
  if (m.pidfd && opt_.local_fence && !m.local_kill_refused) {
    if (!m.killed) {
      // Pinned by the pidfd: this is its process, not a reuse of its pid.
      // Killed only if it maps the region, as a node agent checks
      // (fence::FenceProcess): its pid may be a peer's claim, naming any
      // process of this kernel. Should the pinned process have exited
      // since, the check reads another's maps, and the kill through the
      // pidfd hits nothing.
      if (Status maps = fence::MapsRegion(m.pinned_pid, region_->path()); !maps.ok()) {
        if (fence::PidfdExited(m.pidfd->native_handle())) return;  // the watch fences it
        m.local_kill_refused = true;
        spdlog::warn("{}: not killed: {}; it is fenced as a client of another node", m.describe,
                     maps.message());
      } else if (fence::SignalPidfd(m.pidfd->native_handle(), SIGKILL) || errno == ESRCH) {
        m.killed = true;
        spdlog::warn(
            "{}: killed it (it runs on the manager's own kernel); recovery follows "
            "its exit",
            m.describe);
      } else {
        m.local_kill_refused = true;
        spdlog::warn("{}: not killed: SIGKILL was refused ({})", m.describe, std::strerror(errno));
      }
    }
    if (!m.local_kill_refused) return;  // WatchProcess fences it when it has exited
  }
  if (m.agent_request == 0 && !m.agent_failed) {
    m.agent_request = AskAgent(m, /*probe_only=*/false);
    if (m.agent_request != 0) {
      m.agent_deadline_ns = now + uint64_t{opt_.agent_timeout_ms} * kMs;
      return;
    }
  }
  if (m.agent_request != 0) {
    if (now < m.agent_deadline_ns) {
      // Asked again within the first order's time (a new request id; the
      // answer to the old one is ignored).
      if (m.agent_retry_ns != 0 && now >= m.agent_retry_ns) {
        m.agent_retry_ns = 0;
        if (const uint64_t again = AskAgent(m, /*probe_only=*/false); again != 0) {
          m.agent_request = again;
        }
      }
      return;
    }
    spdlog::warn("{}: the agent of node {} did not answer in time", m.describe, m.node);
    m.agent_request = 0;
    m.agent_retry_ns = 0;
    m.agent_failed = true;
  }
  if (!opt_.fence_command.empty() && m.node != opt_.node_id && !m.node_fence_missed) {
    FenceCommand& fc = node_fences_[m.node];
    // Not polled here: a result is Tick's to act on (FenceNode, or the
    // retry after a failure), or it would be lost to a new start.
    if (fc.state() == FenceCommand::State::kIdle && now >= node_fence_retry_ns_[m.node]) {
      spdlog::warn("fencing node {} for {}: {} {}", m.node, m.describe, opt_.fence_command, m.node);
      fc.Start(opt_.fence_command, m.node, uint64_t{opt_.fence_timeout_ms} * kMs);
    }
    return;
  }
  if (!m.operator_hint_logged) {
    m.operator_hint_logged = true;
    spdlog::error(
        "{} cannot be fenced from here ({}); its objects stay untouched. Once it certainly "
        "cannot run again, run: gismo fence --client {} (or --node {})",
        m.describe,
        m.node_fence_missed
            ? "its node was fenced, but its process runs on the manager's own kernel"
        : opt_.fence_command.empty() ? "no node agent, no --fence-command"
                                     : "its node is the manager's own",
        m.client_id, m.node);
  }
}

void Manager::Impl::Fenced(Member& m, FenceReason reason) {
  if (m.phase == Member::Phase::kRecovering) return;
  if (auto s = m.conn.lock()) CloseMemberSession(s);
  m.conn.reset();
  m.pidfd.reset();
  m.reason = reason;
  m.phase = Member::Phase::kRecovering;
  region_->slot(m.slot).fenced_by.store(static_cast<uint64_t>(reason), std::memory_order_relaxed);
  SetSlotState(m.slot, SlotState::kRecovering, m.session);
  if (reason != FenceReason::kDeparted) {
    IncrementRelaxed(stats_.clients_fenced);
    spdlog::info("{} is fenced: {}", m.describe, ReasonText(reason));
  }
  const uint32_t slot = m.slot;
  // Recover now; a busy lock makes Tick retry it.
  if (Recover(m)) members_.erase(slot);
}

size_t Manager::Impl::FenceNode(uint32_t node, FenceReason reason, std::optional<uint32_t> spared) {
  IncrementRelaxed(stats_.nodes_fenced);
  std::vector<uint32_t> slots;
  for (auto& [slot, m] : members_) {
    if (m.node != node || m.phase == Member::Phase::kRecovering || slot == spared) continue;
    // Pinned on this kernel and still running: the fence of the node it
    // claims did not stop it (an emulated node's fence may kill it: it is
    // then fenced by its exit). Recovered when it exits, or on the
    // operator's word; the fence command is not run for it again. The same
    // for one whose identity says this kernel (boot and pid namespace) but
    // that could not be pinned (its /proc entry unreadable: hidepid,
    // another user): fencing another node proves nothing about it.
    const bool here =
        m.pidfd ? !fence::PidfdExited(m.pidfd->native_handle()) : IsLocalIdentity(m.identity);
    if (reason == FenceReason::kNodeFenced && here) {
      spdlog::warn(
          "{} claims node {} but runs on the manager's own kernel, and fencing node {} "
          "did not stop it: it is not recovered",
          m.describe, node, node);
      m.node_fence_missed = true;  // the next AdvanceFencing gives the operator's hint
      continue;
    }
    slots.push_back(slot);
  }
  spdlog::warn("node {} is fenced ({}): recovering its {} client(s)", node,
               reason == FenceReason::kOperator ? "an operator said so" : "fence command",
               slots.size());
  for (uint32_t slot : slots) {
    auto it = members_.find(slot);
    if (it != members_.end()) Fenced(it->second, reason);
  }
  if (auto it = agents_.find(node); it != agents_.end()) {
    if (auto a = it->second.lock()) EndSession(a);
    agents_.erase(it);
  }
  return slots.size();
}

bool Manager::Impl::Recover(Member& m) {
  const uint64_t t0 = MonotonicNs();
  RecoveryReport rep;
  if (!nc_owners_.empty()) {
    // Its references are entries of its table and its unsealed objects are
    // records naming its slot: the owner's to clear and free, by the store
    // of the thread that served it (which does not serve it meanwhile).
    store::NcOwnerStore& owner = NcOwnerOf(m.slot);
    const uint64_t freed = owner.stats().freed;
    if (Status s = owner.Recover(m.slot); !s.ok()) {
      spdlog::warn("recovery of {} failed: {}; will retry", m.describe, s.message());
      return false;
    }
    rep.complete = true;
    rep.freed = owner.stats().freed - freed;
  } else {
    rep = RecoverSlot(*region_, m.slot, kManagerSlot, session_);
  }
  const uint64_t dt = MonotonicNs() - t0;
  IncrementRelaxed(stats_.recovery_ns_total, dt);
  if (!rep.complete) {
    spdlog::warn("recovery of {} waits for a busy lock; will retry", m.describe);
    return false;
  }
  SetSlotState(m.slot, SlotState::kFree, m.session);
  if (m.reason == FenceReason::kDeparted) {
    IncrementRelaxed(stats_.clients_left);
  } else {
    IncrementRelaxed(stats_.clients_recovered);
  }
  if (rep.aborted || rep.references_dropped || rep.locks_released || rep.freed ||
      rep.owned_deleted) {
    spdlog::info(
        "recovered {}: {} interrupted operation(s) undone, {} unsealed object(s) aborted, {} "
        "owned object(s) deleted, {} reference(s) dropped, {} deferred delete(s) completed, "
        "{:.1f} us",
        m.describe, rep.locks_released ? 1 : 0, rep.aborted, rep.owned_deleted,
        rep.references_dropped, rep.freed, dt / 1e3);
  }
  // What the dead client's own words claimed that recovery would not do
  // (corrupt, or written by another client): each left for gismo-fsck.
  const std::pair<uint64_t, const char*> distrusted[] = {
      {rep.slab_words_forgotten,
       "slab word(s) of its stripe named no slab of its own; cleared, their pages left as they "
       "are"},
      {rep.held_entries_forgotten,
       "entr(y/ies) of its held table named another client's unsealed object as its own; "
       "cleared, the objects left to their creators"},
      {rep.held_entries_overcounted,
       "entr(y/ies) of its held table counted more references than their object had; cleared, "
       "the objects' counts left as they were"},
  };
  for (const auto& [count, what] : distrusted) {
    if (count == 0) continue;
    spdlog::warn("recovery of {}: {} {} (corrupt, or written by another client): run gismo-fsck",
                 m.describe, count, what);
  }
  // Events it committed but never published are published now; a getter
  // waiting for an object it sealed (or aborted) re-checks.
  NotifySubscribers();
  WakeAllWaiters();
  return true;
}

void Manager::Impl::HandleFenceOrder(const std::shared_ptr<Session>& s, uint64_t request_id,
                                     protocol::Reader& r) {
  protocol::FenceOrder order;
  if (!protocol::DecodeFenceOrder(r, &order)) {
    s->Send(protocol::EncodeError(request_id, Status(GISMO_ERR_PROTOCOL, "malformed fence")));
    return;
  }
  auto reply = [&](const Status& st) {
    protocol::Writer w;
    w.U32(static_cast<uint32_t>(st.code()));
    w.Str(st.message());
    s->Send(w.Frame(MsgType::kFenceReply, request_id));
  };
  // The operator's word comes through a client of the region (gismo fence),
  // which proved it maps the region: not from a node agent, admitted without
  // that proof, nor from a client after its goodbye.
  if (s->slot == 0) {
    WarnRateLimited("refused a fence order of " + s->Describe() + ": it is not a client");
    return reply(Status(GISMO_ERR_PERMISSION,
                        std::string("fence orders come from a client of the region (gismo "
                                    "fence); this connection is ") +
                            (s->agent_node >= 0 ? "a node agent's" : "no client's")));
  }
  if (order.target == protocol::FenceOrder::Target::kNode) {
    if (order.value > UINT32_MAX) {
      return reply(Status(GISMO_ERR_INVALID_ARGUMENT, "node " + std::to_string(order.value) +
                                                          " is out of range (0.." +
                                                          std::to_string(UINT32_MAX) + ")"));
    }
    const uint32_t node = static_cast<uint32_t>(order.value);
    spdlog::warn("{} declares node {} fenced", s->Describe(), node);
    // As a fence command's success: its clients recovered, its agent closed
    // (the operator's word left the agent connected). The operator's own
    // client is not on a node it fences (it would be dead).
    const size_t recovered = FenceNode(node, FenceReason::kOperator, s->slot);
    return reply(Status(GISMO_OK, "node " + std::to_string(node) + " fenced: " +
                                      std::to_string(recovered) + " client(s) recovered"));
  }
  Member* target = nullptr;
  for (auto& [slot, m] : members_) {
    if ((order.target == protocol::FenceOrder::Target::kSlot && slot == order.value) ||
        (order.target == protocol::FenceOrder::Target::kClient && m.client_id == order.value)) {
      target = &m;
    }
  }
  if (target == nullptr) {
    return reply(Status(GISMO_ERR_OBJECT_NOT_FOUND, "no such client is connected or suspected"));
  }
  if (target->slot == s->slot) {
    return reply(Status(GISMO_ERR_INVALID_ARGUMENT, "a client cannot fence itself"));
  }
  const std::string who = target->describe;
  spdlog::warn("{} declares {} fenced", s->Describe(), who);
  Fenced(*target, FenceReason::kOperator);
  reply(Status(GISMO_OK, who + " fenced and recovered"));
}

void Manager::Impl::HandleFenceResult(const std::shared_ptr<Session>& s, uint64_t request_id,
                                      protocol::Reader& r) {
  protocol::FenceProcessResult res;
  if (s->agent_node < 0 || !protocol::DecodeFenceProcessResult(r, &res)) {
    WarnRateLimited(s->Describe() + " sent a malformed or unexpected fence result; ignored");
    return;
  }
  auto it = members_.find(res.slot);
  if (it == members_.end()) return;
  Member& m = it->second;
  if (m.session != res.session) return;
  // Only the agent of the member's own node speaks for its process.
  if (s->agent_node != int64_t{m.node}) {
    WarnRateLimited(s->Describe() + " sent a fence result for " + m.describe +
                    ", which is not of its node; ignored");
    return;
  }
  // Request ids start at 1: an answer with id 0 answers no order (it
  // matched "none outstanding").
  if (request_id == 0) {
    WarnRateLimited(s->Describe() + " sent a fence result for no order; ignored");
    return;
  }
  if (m.phase == Member::Phase::kDetached && m.probe_request == request_id) {
    m.probe_request = 0;
    if (res.status.ok()) {
      spdlog::info("{}: {} confirms its process gone", m.describe, s->Describe());
      Fenced(m, FenceReason::kNodeAgent);
    }
    return;
  }
  if (m.agent_request != request_id || m.phase != Member::Phase::kSuspected) return;
  if (res.status.code() == GISMO_ERR_BUSY) {
    // Not a failure: the agent could not finish yet (a non-coherent
    // write-back whose records kept changing) and says to ask again. It is,
    // until the order's time is up.
    m.agent_retry_ns = MonotonicNs() + kAgentRetryMs * kMs;
    spdlog::info("{}: {} asks to be asked again: {}", m.describe, s->Describe(),
                 res.status.message());
    return;
  }
  m.agent_request = 0;
  if (res.status.ok()) {
    spdlog::info("{}: {} confirms its process gone{}", m.describe, s->Describe(),
                 res.killed ? " (it killed it)" : "");
    Fenced(m, FenceReason::kNodeAgent);
  } else {
    m.agent_failed = true;
    spdlog::warn("{}: {} could not fence it: {}", m.describe, s->Describe(), res.status.message());
    AdvanceFencing(m);
  }
}

Status Manager::Impl::CheckAddresses() const {
  std::set<std::string> seen;
  for (const std::string& text : opt_.listen) {
    auto a = protocol::ParseAddress(text);
    if (!a.ok()) return a.status();
    // Port 0 twice is two ports the kernel picks.
    const bool any_port = a->kind == protocol::Address::Kind::kTcp && a->port == 0;
    if (!any_port && !seen.insert(a->ToString()).second) {
      return Status(GISMO_ERR_INVALID_ARGUMENT, "--listen " + text + " is given twice");
    }
  }
  if (!opt_.metrics_address.empty()) {
    if (auto a = MetricsExporter::ParseAddress(opt_.metrics_address); !a.ok()) return a.status();
  }
  return Status();
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
      unix_paths_.push_back(a->path);
      // Until this, the socket has the mode of the umask; whoever may write
      // to it may connect.
      if (Status s = SetUpFileAccess(a->path, -1, opt_.socket_mode, true); !s.ok()) return s;
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
    if (ec) return AcceptFailed(a, ec, &Impl::AcceptUnix);
    auto proto = sock.local_endpoint().protocol();
    asio::generic::stream_protocol::socket g(io_, asio::generic::stream_protocol(proto),
                                             sock.release());
    Adopt(std::move(g), "unix peer", true);
    AcceptUnix(a);
  });
}

void Manager::Impl::AcceptTcp(asio::ip::tcp::acceptor& a) {
  a.async_accept([this, &a](asio::error_code ec, asio::ip::tcp::socket sock) {
    if (ec) return AcceptFailed(a, ec, &Impl::AcceptTcp);
    asio::error_code ignore;
    sock.set_option(asio::ip::tcp::no_delay(true), ignore);
    std::string peer = "tcp peer";
    auto ep = sock.remote_endpoint(ignore);
    if (!ignore) peer = ep.address().to_string() + ":" + std::to_string(ep.port());
    auto proto = sock.local_endpoint().protocol();
    asio::generic::stream_protocol::socket g(io_, asio::generic::stream_protocol(proto),
                                             sock.release());
    Adopt(std::move(g), peer, false);
    AcceptTcp(a);
  });
}

template <typename Acceptor>
void Manager::Impl::AcceptFailed(Acceptor& a, const asio::error_code& ec,
                                 void (Impl::*again)(Acceptor&)) {
  if (ec == asio::error::operation_aborted || stopped_) return;
  IncrementRelaxed(stats_.accept_errors);
  if (ec == asio::error::no_descriptors || ec.value() == ENFILE) {
    ++refusals_unlogged_;
    // Room for the waiting connection (which may be a real client): close
    // the peer not admitted that matters least, and accept again at once.
    if (EvictOldestUnadmitted("the manager is out of file descriptors")) {
      asio::post(io_, [this, &a, again] {
        if (!stopped_) (this->*again)(a);
      });
      return;
    }
    // Every connection is admitted: the waiting one would make accept fail
    // again at once; take it with the reserve descriptor and drop it.
    if (reserve_fd_ >= 0) {
      close(reserve_fd_);
      const int fd = accept4(a.native_handle(), nullptr, nullptr, SOCK_CLOEXEC);
      if (fd >= 0) close(fd);
      reserve_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    spdlog::debug("accept: out of file descriptors ({} connections, all admitted); dropped one",
                  sessions_.size());
  } else {
    spdlog::warn("accept: {}", ec.message());
  }
  // Never at once: an error that persists must not spin the loop.
  auto timer = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(50));
  timer->async_wait([this, &a, again, timer](asio::error_code e) {
    if (!e && !stopped_) (this->*again)(a);
  });
}

bool Manager::Impl::EvictOldestUnadmitted(const std::string& why) {
  // Peers that have not said hello go first (a connection flood), oldest
  // first; a client proving the region goes last.
  std::shared_ptr<Session> oldest;
  auto before = [](const Session& a, const Session& b) {
    const bool a_silent = a.stage == Session::Stage::kHello;
    const bool b_silent = b.stage == Session::Stage::kHello;
    if (a_silent != b_silent) return a_silent;
    return a.accepted_ns < b.accepted_ns;
  };
  for (const auto& s : sessions_) {
    if (s->stage != Session::Stage::kAdmitted && (!oldest || before(*s, *oldest))) oldest = s;
  }
  if (!oldest) return false;
  // Closed at once, without the flush before the close: its descriptor and
  // its place are what is wanted.
  Refuse(oldest, Status(GISMO_ERR_LIMIT, why + "; try again"), why, /*flush=*/false);
  return true;
}

void Manager::Impl::Adopt(asio::generic::stream_protocol::socket sock, std::string peer,
                          bool is_unix) {
  auto s = std::make_shared<Session>(*this, std::move(sock), std::move(peer), is_unix,
                                     opt_.max_output_bytes);
  uint32_t unadmitted = 0;
  for (const auto& o : sessions_) unadmitted += o->stage != Session::Stage::kAdmitted;
  // Bounds: peers waiting for admission first (the oldest goes), then
  // every connection (a new one is turned away if all are admitted).
  if (unadmitted >= opt_.max_unadmitted) {
    EvictOldestUnadmitted("too many connections wait for admission");
  }
  if (sessions_.size() >= max_connections_ &&
      !EvictOldestUnadmitted("the manager has too many connections")) {
    IncrementRelaxed(stats_.peers_refused);
    ++refusals_unlogged_;
    spdlog::debug("refused {}: {} connections (gismo-manager --max-connections)", s->Describe(),
                  sessions_.size());
    sessions_.insert(s);  // OnClosed erases it
    s->Start();           // its input is read (and dropped) while its error is written
    return EndWithError(
        s,
        Status(GISMO_ERR_LIMIT, "the manager serves " + std::to_string(sessions_.size() - 1) +
                                    " connections, its limit; try again later"),
        "too many connections");
  }
  sessions_.insert(s);
  stats_.connections.store(sessions_.size(), std::memory_order_relaxed);
  s->server_nonce = protocol::RandomNonce();
  protocol::Challenge ch;
  ch.nonce = s->server_nonce;
  ch.key_required = key_.has_value() && !is_unix;
  s->Send(protocol::EncodeChallenge(ch));
  s->Start();
}

void Manager::Impl::OnFrame(const std::shared_ptr<Session>& s, const protocol::FrameHeader& h,
                            const std::vector<uint8_t>& payload) {
  protocol::Reader r(payload);
  if (s->stage != Session::Stage::kAdmitted && h.type != MsgType::kHello &&
      h.type != MsgType::kProof) {
    return Refuse(s, Status(GISMO_ERR_PROTOCOL, "say hello first"), "spoke before hello");
  }
  // After its goodbye a client only closes its connection (on the Bye).
  // What its other threads sent meanwhile may still be on its way: a
  // heartbeat, a cancel or a request to its owner is ignored, a seal's or
  // delete's notice still wakes (below), a wait or a subscription gets its
  // own error (below); anything else (another goodbye, a hello, a fence
  // order) ends the session. Tick closes one kept open.
  if (s->goodbye_ns != 0) {
    switch (h.type) {
      case MsgType::kHeartbeat:
      case MsgType::kCancelWait:
      case MsgType::kRequests:
        return;
      case MsgType::kSealed:
      case MsgType::kDeleted:
      case MsgType::kWait:
      case MsgType::kSubscribe:
        break;
      default:
        return Refuse(s, Status(GISMO_ERR_PROTOCOL, "this connection said goodbye; connect again"),
                      "sent message type " + std::to_string(static_cast<unsigned>(h.type)) +
                          " after its goodbye");
    }
  }
  // A client's notices of its own seals, deletes and requests (they wake
  // waiters and subscribers, clear the region's kick_pending and wake the
  // owner): from a node agent, ignored.
  if ((h.type == MsgType::kSealed || h.type == MsgType::kDeleted || h.type == MsgType::kRequests) &&
      s->agent_node >= 0) {
    WarnRateLimited("ignored a client's notice (message type " +
                    std::to_string(static_cast<unsigned>(h.type)) + ") from " + s->Describe() +
                    ": it is not a client");
    return;
  }
  // Waits and subscriptions are a client's (they cost the manager memory
  // and raise counters in the region that clients read): a node agent, or a
  // client after its goodbye, gets a per-request error, and holds nothing.
  if ((h.type == MsgType::kWait || h.type == MsgType::kSubscribe) && s->slot == 0) {
    s->Send(protocol::EncodeError(
        h.request_id,
        Status(GISMO_ERR_PROTOCOL,
               std::string(h.type == MsgType::kWait ? "waiting for objects"
                                                    : "subscribing to events") +
                   " is for clients; this connection is " +
                   (s->agent_node >= 0 ? "a node agent's" : "no client's (it said goodbye)"))));
    WarnRateLimited("refused a " + std::string(h.type == MsgType::kWait ? "wait" : "subscription") +
                    " of " + s->Describe() + ": it is not a client");
    return;
  }
  switch (h.type) {
    case MsgType::kHello:
      return HandleHello(s, r);
    case MsgType::kProof:
      return HandleProof(s, r);
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
    case MsgType::kRequests:
      if (!nc_owners_.empty()) WakeOwnerThreadOf(s->slot);
      return;
    case MsgType::kFence:
      return HandleFenceOrder(s, h.request_id, r);
    case MsgType::kFenceResult:
      return HandleFenceResult(s, h.request_id, r);
    case MsgType::kGoodbye: {
      const uint32_t slot = s->slot;
      DropWaits(s);
      spdlog::info("{} disconnected", s->Describe());
      s->slot = 0;
      s->goodbye_ns = std::max<uint64_t>(MonotonicNs(), 1);
      if (auto it = members_.find(slot); slot != 0 && it != members_.end()) {
        it->second.conn.reset();
        Fenced(it->second, FenceReason::kDeparted);
      }
      s->Send(protocol::Writer().Frame(MsgType::kBye, h.request_id));
      return;
    }
    default:
      WarnRateLimited(s->Describe() + " sent unknown message type " +
                      std::to_string(static_cast<unsigned>(h.type)) + "; ignored");
      return;
  }
}

void Manager::Impl::Refuse(const std::shared_ptr<Session>& s, const Status& why,
                           const std::string& log, bool flush) {
  IncrementRelaxed(stats_.peers_refused);
  WarnRateLimited("refused " + s->Describe() + ": " + log);
  EndWithError(s, why, log, flush);
}

void Manager::Impl::EndWithError(const std::shared_ptr<Session>& s, const Status& why,
                                 const std::string& log, bool flush) {
  // Request id 0: the session ends (a nonzero id would answer one request).
  s->Send(protocol::EncodeError(0, why));
  if (flush) s->FlushBeforeClose();
  OnClosed(s, log);
}

void Manager::Impl::WarnRateLimited(const std::string& line) {
  const uint64_t now = MonotonicNs();
  if (now - last_refusal_log_ns_ >= 1000 * kMs) {
    last_refusal_log_ns_ = now;
    spdlog::warn("{}", line);
  } else {
    ++refusals_unlogged_;
    spdlog::debug("{}", line);
  }
}

void Manager::Impl::HandleHello(const std::shared_ptr<Session>& s, protocol::Reader& r) {
  protocol::Hello hello;
  if (s->stage != Session::Stage::kHello || !protocol::DecodeHello(r, &hello)) {
    return Refuse(s, Status(GISMO_ERR_PROTOCOL, "malformed hello"), "malformed hello");
  }
  if (hello.protocol_version != protocol::kProtocolVersion) {
    return Refuse(
        s,
        Status(GISMO_ERR_PROTOCOL, "manager speaks protocol version " +
                                       std::to_string(protocol::kProtocolVersion) + ", client " +
                                       std::to_string(hello.protocol_version)),
        "protocol version mismatch");
  }
  // The cluster key: required over TCP when the manager has one; checked
  // whenever a peer offers a MAC.
  bool key_ok = false;
  if (key_ && hello.has_mac) {
    key_ok = protocol::MacEqual(
        hello.mac, protocol::HelloMac(*key_, s->server_nonce, protocol::HelloSignedBytes(hello)));
    if (!key_ok) {
      return Refuse(s, Status(GISMO_ERR_PERMISSION, "wrong cluster key"), "wrong cluster key");
    }
  }
  if (key_ && !s->is_unix && !key_ok) {
    return Refuse(s,
                  Status(GISMO_ERR_PERMISSION,
                         "this manager admits TCP peers with the cluster key only: set "
                         "GISMO_KEY_FILE to the key file of gismo-manager --key-file"),
                  "no cluster key");
  }
  s->authenticated = s->is_unix || key_ok;
  s->node = hello.node_id;
  s->pid = hello.pid;
  // Peer text reaches the log only sanitized: no forged lines.
  s->host = protocol::SanitizeForLog(hello.host);
  s->name = protocol::SanitizeForLog(hello.name);
  s->identity = fence::ProcessIdentity::FromWords(hello.identity);
  protocol::Access access;
  const region::Superblock& sb = region_->fixed();
  access.uuid[0] = sb.uuid[0];
  access.uuid[1] = sb.uuid[1];
  access.region_size = sb.region_size;
  if (s->authenticated) access.region_path = region_->path();
  if (key_) {
    access.has_mac = true;
    access.mac = protocol::AccessMac(*key_, s->server_nonce, hello.client_nonce,
                                     protocol::AccessSignedBytes(access));
  }
  s->Send(protocol::EncodeAccess(access));
  if (key_ok) {
    s->StartTagging(protocol::MakeFrameAuth(*key_, s->server_nonce, hello.client_nonce,
                                            protocol::FrameSide::kManager));
  }
  if (hello.role == protocol::Role::kNodeAgent) {
    s->stage = Session::Stage::kAdmitted;
    return AdmitAgent(s, hello);
  }
  // A client takes no slot before it proves it maps the region.
  s->hello = std::move(hello);
  s->stage = Session::Stage::kProof;
}

void Manager::Impl::HandleProof(const std::shared_ptr<Session>& s, protocol::Reader& r) {
  protocol::Mac proof{};
  if (s->stage != Session::Stage::kProof || !protocol::DecodeProof(r, &proof)) {
    return Refuse(s, Status(GISMO_ERR_PROTOCOL, "unexpected or malformed region proof"),
                  "malformed region proof");
  }
  const region::ClientSlotHeader& me = region_->slot(kManagerSlot);
  const uint64_t secret[2] = {me.admission_secret[0].load(std::memory_order_relaxed),
                              me.admission_secret[1].load(std::memory_order_relaxed)};
  if (!protocol::MacEqual(proof,
                          protocol::RegionProof(secret, s->server_nonce, s->hello.client_nonce))) {
    return Refuse(s,
                  Status(GISMO_ERR_PERMISSION,
                         "wrong region proof: this process does not map the region this "
                         "manager serves (GISMO_REGION names another file?)"),
                  "wrong region proof");
  }
  s->stage = Session::Stage::kAdmitted;
  const protocol::Hello hello = std::move(s->hello);
  s->hello = protocol::Hello();
  if (hello.role == protocol::Role::kReattach) return Reattach(s, hello);
  return Admit(s, hello);
}

void Manager::Impl::SendWelcome(const std::shared_ptr<Session>& s, uint32_t slot, uint64_t session,
                                uint64_t client_id, uint32_t node) {
  const region::Superblock& sb = region_->fixed();
  protocol::Welcome w;
  w.slot = slot;
  w.session = session;
  w.client_id = client_id;
  w.uuid[0] = sb.uuid[0];
  w.uuid[1] = sb.uuid[1];
  w.region_size = sb.region_size;
  w.lease_ms = opt_.lease_ms;
  w.node_id = node;
  w.manager_epoch = lease_->epoch();
  if (s->authenticated) w.region_path = region_->path();
  s->Send(protocol::EncodeWelcome(w));
}

void Manager::Impl::Admit(const std::shared_ptr<Session>& s, const protocol::Hello& hello) {
  const region::Region& r = *region_;
  uint32_t slot = 0;
  for (uint32_t i = 1; i < r.max_clients(); ++i) {
    if (region::SlotStateOf(r.slot(i).state.load(std::memory_order_acquire)) == SlotState::kFree &&
        !members_.count(i)) {
      slot = i;
      break;
    }
  }
  if (slot == 0) {
    return EndWithError(
        s,
        Status(GISMO_ERR_LIMIT, "all " + std::to_string(r.max_clients() - 1) +
                                    " client slots are in use (gismo-manager --max-clients)"),
        "no free client slot");
  }
  region::ClientSlotHeader& h = r.slot(slot);
  const uint64_t session = region::SlotSessionOf(h.state.load(std::memory_order_acquire)) + 1;
  ClearSlotBody(slot);
  const uint64_t client_id = r.sb().next_client_id.fetch_add(1, std::memory_order_relaxed);
  h.client_id.store(client_id, std::memory_order_relaxed);
  h.node_id.store(hello.node_id, std::memory_order_relaxed);
  h.pid.store(hello.pid, std::memory_order_relaxed);
  h.connect_time_ns.store(RealtimeNs(), std::memory_order_relaxed);
  h.heartbeat_ns.store(RealtimeNs(), std::memory_order_relaxed);
  h.fenced_by.store(0, std::memory_order_relaxed);
  for (int k = 0; k < 4; ++k) h.identity[k].store(hello.identity[k], std::memory_order_relaxed);
  // Durable regions: the cleared slot is on the medium before it is active.
  r.Persist(&h, r.fixed().client_slot_size);
  SetSlotState(slot, SlotState::kActive, session);
  if (!nc_owners_.empty()) NcOwnerOf(slot).Admit(slot, session);
  s->slot = slot;
  s->proved_region = true;
  s->client_id = client_id;
  Member m;
  m.slot = slot;
  m.session = session;
  m.client_id = client_id;
  m.node = hello.node_id;
  m.identity = s->identity;
  m.describe = s->Describe();
  m.conn = s;
  auto [it, _] = members_.emplace(slot, std::move(m));
  TryWatchLocal(it->second, s);
  // Counted before the welcome: a client that has its welcome finds itself
  // counted (AdmissionTest reads the count right after Connect returns).
  IncrementRelaxed(stats_.clients_joined);
  SendWelcome(s, slot, session, client_id, hello.node_id);
  spdlog::info("{} joined{}", s->Describe(), it->second.pidfd ? "" : " (remote)");
}

void Manager::Impl::Reattach(const std::shared_ptr<Session>& s, const protocol::Hello& hello) {
  const region::Superblock& sb = region_->fixed();
  auto refuse = [&](const std::string& why) {
    EndWithError(s, Status(GISMO_ERR_CONNECTION, "cannot re-attach: " + why + "; connect again"),
                 "re-attach refused");
  };
  if (hello.uuid[0] != sb.uuid[0] || hello.uuid[1] != sb.uuid[1]) {
    return refuse("this manager serves another region");
  }
  auto it = members_.find(hello.slot);
  if (it == members_.end() || it->second.session != hello.session ||
      it->second.client_id != hello.client_id) {
    return refuse("its session has ended");
  }
  Member& m = it->second;
  if (m.node != hello.node_id) {
    return refuse("slot " + std::to_string(m.slot) + " is a client's of node " +
                  std::to_string(m.node) + ", not of node " + std::to_string(hello.node_id));
  }
  if (m.phase == Member::Phase::kSuspected || m.phase == Member::Phase::kRecovering) {
    return refuse("it was suspected dead and is being fenced");
  }
  if (auto old = m.conn.lock(); old && old != s) {
    // Its previous connection is dead though we have not noticed yet.
    CloseMemberSession(old);
  }
  s->slot = m.slot;
  s->proved_region = true;
  s->client_id = m.client_id;
  m.conn = s;
  m.phase = Member::Phase::kConnected;
  if (!nc_owners_.empty()) NcOwnerOf(m.slot).Admit(m.slot, m.session);
  m.describe = s->Describe();
  TryWatchLocal(m, s);
  IncrementRelaxed(stats_.clients_reattached);  // before the welcome, as a join
  SendWelcome(s, m.slot, m.session, m.client_id, m.node);
  spdlog::info("{} re-attached", s->Describe());
  // What it sealed, deleted or bound while its connection was down, it
  // could not tell us (a notice sent into a dead connection is lost without
  // an error): every waiter and subscriber looks again. Waiters register
  // before they look, so none misses a change made before this.
  WakeAllWaiters();
  NotifySubscribers();
}

void Manager::Impl::AdmitAgent(const std::shared_ptr<Session>& s, const protocol::Hello& hello) {
  // Agents are admitted without proving the region, and admitted sessions
  // are never evicted: agents of new nodes take at most half the
  // connections, so that clients always find room.
  if (!agents_.count(hello.node_id) &&
      agents_.size() >= std::max<size_t>(1, max_connections_ / 2)) {
    return Refuse(s,
                  Status(GISMO_ERR_LIMIT, "the manager serves node agents of " +
                                              std::to_string(agents_.size()) +
                                              " nodes, the most it takes (half of its " +
                                              std::to_string(max_connections_) + " connections)"),
                  "too many node agents");
  }
  s->agent_node = hello.node_id;
  if (auto it = agents_.find(hello.node_id); it != agents_.end()) {
    if (auto old = it->second.lock(); old && old != s) {
      spdlog::warn("{} is replaced by a new agent of node {} ({})", old->Describe(), hello.node_id,
                   s->Describe());
      EndSession(old);
    }
  }
  agents_[hello.node_id] = s;
  SendWelcome(s, 0, 0, 0, hello.node_id);
  spdlog::info("{} joined ({})", s->Describe(), s->identity.ToString());
  // Suspects of that node waiting for a way to be fenced get one. Their
  // slots first: AdvanceFencing may recover a member (its departed mark, its
  // process proven gone), which erases it from members_.
  std::vector<uint32_t> suspects;
  for (const auto& [slot, m] : members_) {
    if (m.node == hello.node_id && m.phase == Member::Phase::kSuspected) suspects.push_back(slot);
  }
  for (const uint32_t slot : suspects) {
    auto it = members_.find(slot);
    if (it == members_.end() || it->second.phase != Member::Phase::kSuspected) continue;
    // An order to the agent it replaces is never answered: this one is
    // asked at once (before, the manager waited for the old order's
    // deadline, then fenced the whole node, with a live agent connected),
    // within that order's time (an agent restarted again and again must
    // not put off the node's fence for ever). One whose agent failed or ran
    // out of time is asked anew.
    Member& m = it->second;
    if (m.agent_request != 0) {
      m.agent_retry_ns = MonotonicNs();
    } else {
      m.agent_failed = false;
    }
    AdvanceFencing(m);
  }
}

void Manager::Impl::HandleWait(const std::shared_ptr<Session>& s, uint64_t wait_id,
                               protocol::Reader& r) {
  uint32_t n = r.U32();
  // Wait id 0 is malformed too: an error frame with request id 0 ends a
  // session, so a refusal of that wait could not be told from it; and
  // 2^64-1, the key the session's queue coalesces notifications under (a
  // wake-up of that wait and a notification would replace each other).
  if (!r.ok() || wait_id == 0 || wait_id == Session::kNotifyKey || n > (1u << 20) ||
      r.remaining() < uint64_t{n} * GISMO_ID_SIZE) {
    // A broken peer: the session ends (request id 0).
    return EndWithError(s, Status(GISMO_ERR_PROTOCOL, "malformed wait"), "malformed wait");
  }
  // A wait id that is waiting already is registered anew, with the ids it
  // names now, and acknowledged again: every wait is answered (a repeated
  // one was ignored, and its sender waited for an acknowledgement that never
  // came). The library repeats one only when a re-attach races its send,
  // with the same ids.
  if (s->waits.count(wait_id)) CancelWait(s, wait_id);
  // Every registered id costs the manager memory: bounded per client and
  // in total. A wait beyond is refused alone (an error frame with its wait
  // id: the client's get fails with GISMO_ERR_LIMIT); the session and its
  // connection stay, since threads of one client, or clients together, may
  // pass the bound without anyone misbehaving.
  const uint64_t cost = std::max<uint32_t>(n, 1);
  if (s->wait_ids + cost > opt_.max_wait_ids || total_wait_ids_ + cost > opt_.max_total_wait_ids) {
    const bool mine = s->wait_ids + cost > opt_.max_wait_ids;
    const std::string why =
        "the manager refused to wait for " + std::to_string(n) + " more ids: " +
        (mine ? "this client would wait for more than " + std::to_string(opt_.max_wait_ids) +
                    " ids at once (gismo-manager --max-wait-ids)"
              : "all clients together would wait for more than " +
                    std::to_string(opt_.max_total_wait_ids) +
                    " ids (gismo-manager --max-total-wait-ids)") +
        "; get fewer objects at once, or get them with timeout 0";
    s->Send(protocol::EncodeError(wait_id, Status(GISMO_ERR_LIMIT, why)));
    WarnRateLimited("refused a wait of " + s->Describe() + ": " + why);
    return;
  }
  s->wait_ids += cost;
  total_wait_ids_ += cost;
  std::vector<std::string> keys;
  keys.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    gismo_id_t id = r.Id();
    keys.push_back(IdKey(id));
    waits_by_id_[keys.back()].emplace(WaitKey(s.get(), wait_id), s);
    // Raised before the ack: see ClientImpl::NotifyIfWatched.
    ShardOf(id).waiters.fetch_add(1, std::memory_order_seq_cst);
    PublishCounter(ShardOf(id).waiters);
  }
  s->waits.emplace(wait_id, std::move(keys));
  region_->sb().waiters.fetch_add(1, std::memory_order_seq_cst);
  PublishCounter(region_->sb().waiters);
  s->Send(protocol::Writer().Frame(MsgType::kWaitAck, wait_id));
}

void Manager::Impl::CancelWait(const std::shared_ptr<Session>& s, uint64_t wait_id) {
  auto it = s->waits.find(wait_id);
  if (it == s->waits.end()) return;
  for (const auto& key : it->second) {
    gismo_id_t id;
    std::memcpy(id.bytes, key.data(), GISMO_ID_SIZE);
    ShardOf(id).waiters.fetch_sub(1, std::memory_order_seq_cst);
    PublishCounter(ShardOf(id).waiters);
    auto w = waits_by_id_.find(key);
    if (w == waits_by_id_.end()) continue;
    w->second.erase(WaitKey(s.get(), wait_id));  // gone already if the wait named it twice
    if (w->second.empty()) waits_by_id_.erase(w);
  }
  const uint64_t cost = std::max<uint64_t>(it->second.size(), 1);
  s->wait_ids -= cost;
  total_wait_ids_ -= cost;
  s->waits.erase(it);
  region_->sb().waiters.fetch_sub(1, std::memory_order_seq_cst);
  PublishCounter(region_->sb().waiters);
}

void Manager::Impl::PublishCounter(const region::Word& w) const {
  if (region_->noncoherent()) region::FlushLines(&w, sizeof w);
}

void Manager::Impl::CloseMemberSession(const std::shared_ptr<Session>& s) {
  s->slot = 0;
  EndSession(s);
}

void Manager::Impl::EndSession(const std::shared_ptr<Session>& s) {
  DropWaits(s);
  s->Close();
  sessions_.erase(s);
  stats_.connections.store(sessions_.size(), std::memory_order_relaxed);
}

void Manager::Impl::DropWaits(const std::shared_ptr<Session>& s) {
  while (!s->waits.empty()) CancelWait(s, s->waits.begin()->first);
  if (subscribers_.erase(s)) region_->sb().subscribers.fetch_sub(1, std::memory_order_seq_cst);
}

void Manager::Impl::NotifySubscribers() {
  if (subscribers_.empty()) return;
  // The head tells a subscriber that has read that far already (a sealer
  // woke it directly) that this wake-up has nothing for it. Acquire: pairs
  // with the producers' claims.
  protocol::Writer w;
  w.U64(region_->event_ring().head.load(std::memory_order_acquire));
  const std::vector<uint8_t> frame = w.Frame(MsgType::kNotify, 0);
  for (const auto& sub : subscribers_) sub->Send(frame, Session::kNotifyKey);
}

void Manager::Impl::WakeWaiters(const gismo_id_t& id) {
  auto it = waits_by_id_.find(IdKey(id));
  if (it == waits_by_id_.end()) return;
  for (const auto& [key, weak] : it->second) {
    const uint64_t wait_id = key.second;
    if (auto sp = weak.lock()) {
      sp->Send(protocol::Writer().Frame(MsgType::kWake, wait_id), wait_id);
      IncrementRelaxed(stats_.wakeups_sent);
    }
  }
}

void Manager::Impl::WakeAllWaiters() {
  for (const auto& s : sessions_) {
    for (const auto& [wait_id, keys] : s->waits) {
      s->Send(protocol::Writer().Frame(MsgType::kWake, wait_id), wait_id);
      IncrementRelaxed(stats_.wakeups_sent);
    }
  }
}

void Manager::Impl::OnClosed(const std::shared_ptr<Session>& s, const std::string& why) {
  if (!sessions_.count(s)) return;
  DropWaits(s);
  if (s->agent_node >= 0) {
    auto it = agents_.find(static_cast<uint32_t>(s->agent_node));
    if (it != agents_.end() && it->second.lock() == s) {
      agents_.erase(it);
      spdlog::warn("{} is gone ({})", s->Describe(), why);
    }
  }
  if (s->slot != 0) {
    auto it = members_.find(s->slot);
    if (it != members_.end() && it->second.conn.lock() == s) {
      Detach(it->second, "its connection closed (" + why + ")");
    }
    s->slot = 0;
  }
  EndSession(s);
}

void Manager::Impl::Tick() {
  // The lease first: a manager that lost it must not write anything more.
  if (!lease_->Beat()) {
    StoreRelaxed(superseded_, true);
    nc_stop_.store(true, std::memory_order_release);
    spdlog::critical(
        "another manager has taken over this region (lease epoch {} -> {}); stopping at once",
        lease_->epoch(), lease_->Holder());
    stopped_ = true;
    io_.stop();
    return;
  }
  region_->sb().manager_heartbeat_ns.store(RealtimeNs(), std::memory_order_relaxed);
  // A wake-up that never came (a client that died before it sent it, a
  // connection down) costs at most a tick.
  PostServeRequests();
  const uint64_t now = MonotonicNs();
  {
    // Peers not admitted in time (silent, one byte a second, or never
    // proving the region) hold nothing longer.
    std::vector<std::shared_ptr<Session>> late;
    for (const auto& s : sessions_) {
      if (s->stage != Session::Stage::kAdmitted &&
          now - s->accepted_ns > uint64_t{opt_.admission_timeout_ms} * kMs) {
        late.push_back(s);
      }
    }
    if (refusals_unlogged_ > 0 && now - last_refusal_log_ns_ >= 1000 * kMs) {
      spdlog::warn("refused {} more peer(s) or request(s) (see --log-level debug)",
                   refusals_unlogged_);
      refusals_unlogged_ = 0;
      last_refusal_log_ns_ = now;
    }
    for (const auto& s : late) {
      IncrementRelaxed(stats_.admission_timeouts);
      Refuse(s,
             Status(GISMO_ERR_TIMEOUT,
                    "not admitted within " + std::to_string(opt_.admission_timeout_ms) + " ms"),
             "not admitted within " + std::to_string(opt_.admission_timeout_ms) + " ms");
    }
  }
  {
    // A connection kept open after its goodbye (its client closes it on the
    // Bye) would hold a place among max_connections for ever, heartbeats
    // and all: no eviction takes admitted sessions. It gets as long as a
    // handshake does.
    std::vector<std::shared_ptr<Session>> lingering;
    for (const auto& s : sessions_) {
      if (s->goodbye_ns != 0 && now - s->goodbye_ns > uint64_t{opt_.admission_timeout_ms} * kMs) {
        lingering.push_back(s);
      }
    }
    for (const auto& s : lingering) {
      WarnRateLimited("closed " + s->Describe() + ": its connection stayed open " +
                      std::to_string(opt_.admission_timeout_ms) + " ms after its goodbye");
      OnClosed(s, "kept open after its goodbye");
    }
  }
  if (opt_.lease_ms > 0) {
    std::vector<std::shared_ptr<Session>> expired;
    // Every admitted session: a client's and an agent's.
    for (const auto& s : sessions_) {
      if (s->stage == Session::Stage::kAdmitted && s->goodbye_ns == 0 &&
          now - s->last_heard_ns_ > uint64_t{opt_.lease_ms} * kMs) {
        expired.push_back(s);
      }
    }
    for (const auto& s : expired) {
      IncrementRelaxed(stats_.leases_expired);
      const std::string why = "nothing heard for " +
                              std::to_string((now - s->last_heard_ns_) / kMs) + " ms, lease " +
                              std::to_string(opt_.lease_ms) + " ms";
      if (s->slot != 0) {
        auto it = members_.find(s->slot);
        if (it != members_.end()) Suspect(it->second, "its lease expired: " + why);
      } else {
        spdlog::warn("lease of {} expired ({})", s->Describe(), why);
        OnClosed(s, "lease expired");
      }
    }
  }
  // Node fence commands that finished.
  for (auto& [node, fc] : node_fences_) {
    const auto was = fc.Poll();
    if (was == FenceCommand::State::kSucceeded) {
      fc = FenceCommand();
      FenceNode(node, FenceReason::kNodeFenced);
      break;  // members_ changed
    }
    if (was == FenceCommand::State::kFailed) {
      spdlog::error("fencing node {} failed: {}; trying again", node, fc.failure());
      fc = FenceCommand();
      node_fence_retry_ns_[node] = now + kFenceRetryNs;
    }
  }
  std::vector<uint32_t> recovered;
  std::vector<uint32_t> to_suspect;
  std::vector<uint32_t> departed;
  std::vector<uint32_t> to_advance;
  for (auto& [slot, m] : members_) {
    switch (m.phase) {
      case Member::Phase::kDetached:
        if (LeftInRegion(m)) {
          departed.push_back(slot);
        } else if (now >= m.deadline_ns) {
          to_suspect.push_back(slot);
        }
        break;
      case Member::Phase::kSuspected:
        to_advance.push_back(slot);  // may recover it, and so erase it
        break;
      case Member::Phase::kRecovering:
        if (Recover(m)) recovered.push_back(slot);
        break;
      default:
        break;
    }
  }
  for (uint32_t slot : recovered) members_.erase(slot);
  for (uint32_t slot : to_advance) {
    if (auto it = members_.find(slot); it != members_.end()) AdvanceFencing(it->second);
  }
  for (uint32_t slot : departed) {
    if (auto it = members_.find(slot); it != members_.end()) RecoverIfLeftInRegion(it->second);
  }
  for (uint32_t slot : to_suspect) {
    if (auto it = members_.find(slot); it != members_.end()) {
      Suspect(it->second, "its connection closed and it did not re-attach in time");
    }
  }
  // A producer that raised kick_pending and died (or stalled) before its
  // kick arrived must not leave subscribers to their slow poll.
  const bool kick = region_->sb().kick_pending.load(std::memory_order_seq_cst) != 0;
  if (kick && kick_seen_) {
    region_->sb().kick_pending.store(0, std::memory_order_seq_cst);
    NotifySubscribers();
  }
  kick_seen_ = kick;
  tick_.expires_after(kTick);
  tick_.async_wait([this](asio::error_code ec) {
    if (!ec) Tick();
  });
}

Status Manager::Impl::SetUpFileAccess(const std::string& path, int fd, uint32_t mode,
                                      bool set_mode) {
  gid_t gid = static_cast<gid_t>(-1);
  if (!opt_.group.empty()) {
    auto g = ResolveGroup(opt_.group);
    if (!g.ok()) return g.status();
    gid = *g;
  }
  const int rc_own = gid == static_cast<gid_t>(-1)
                         ? 0
                         : (fd >= 0 ? fchown(fd, static_cast<uid_t>(-1), gid)
                                    : chown(path.c_str(), static_cast<uid_t>(-1), gid));
  if (rc_own != 0) {
    return Status(GISMO_ERR_IO, "cannot give '" + path + "' to group " + opt_.group + ": " +
                                    std::strerror(errno));
  }
  if (set_mode && (fd >= 0 ? fchmod(fd, mode) : chmod(path.c_str(), mode)) != 0) {
    return Status(GISMO_ERR_IO, "cannot set the mode of '" + path + "' to " + FormatMode(mode) +
                                    ": " + std::strerror(errno));
  }
  return Status();
}

Status Manager::Impl::CheckOptions() const {
  // Durations a manager cannot keep to: a client beats every max(50 ms,
  // lease / 4) and this manager every tick (20 ms), so a shorter lease
  // expires between beats, and the live client (or manager) is fenced.
  // (A lease of 0, no lease at all, is its own minimum.)
  struct Bound {
    uint32_t value, min, max;
    const char* flag;
    const char* why;
  };
  const Bound bounds[] = {
      {opt_.lease_ms, opt_.lease_ms == 0 ? 0 : kMinLeaseMs, kMaxDurationMs, "--lease-ms",
       " (or 0: a closed connection only); a shorter lease expires between a live client's "
       "heartbeats"},
      {opt_.manager_lease_ms, kMinLeaseMs, kMaxManagerLeaseMs, "--manager-lease-ms",
       "; a shorter lease expires between a live manager's beats"},
      {opt_.fence_timeout_ms, 1, kMaxDurationMs, "--fence-timeout-ms", ""},
      {opt_.agent_timeout_ms, 1, kMaxDurationMs, "--agent-timeout-ms", ""},
  };
  for (const Bound& b : bounds) {
    if (b.value < b.min || b.value > b.max) {
      return Status(GISMO_ERR_INVALID_ARGUMENT,
                    std::string(b.flag) + " must be " + std::to_string(b.min) + " to " +
                        std::to_string(b.max) + ", not " + std::to_string(b.value) + b.why);
    }
  }
  if (opt_.force_format && opt_.standby) {
    return Status(GISMO_ERR_INVALID_ARGUMENT,
                  "--format and --standby: a standby takes over the region another manager "
                  "serves, which --format would wipe; give one of them");
  }
  if (opt_.owner_threads < 1 || opt_.owner_threads > region::kMaxOwnerThreads) {
    return Status(GISMO_ERR_INVALID_ARGUMENT, "--owner-threads must be 1 to " +
                                                  std::to_string(region::kMaxOwnerThreads) +
                                                  ", not " + std::to_string(opt_.owner_threads));
  }
  // A group that is not there (Start would fail on it after making the
  // region's file) and a key file that cannot be read are usage errors too.
  if (!opt_.group.empty()) {
    if (auto g = ResolveGroup(opt_.group); !g.ok())
      return Status(g.status().code(), "--group: " + g.status().message());
  }
  if (!opt_.key_file.empty()) {
    if (auto key = protocol::LoadKey(opt_.key_file); !key.ok()) return key.status();
  }
  // Addresses first: a typo must cost no formatted region (with --format,
  // no region's contents).
  if (Status s = CheckAddresses(); !s.ok()) return s;
  // A region it would format (Region::OpenOrFormat) with options that cannot
  // make one is refused before OpenRegion's lock creates an empty file.
  struct stat before {};
  const bool exists = stat(opt_.region_path.c_str(), &before) == 0;
  if (opt_.force_format || !exists || (S_ISREG(before.st_mode) && before.st_size == 0)) {
    if (auto o = region::ResolveFormatOptions(opt_.format); !o.ok()) return o.status();
  }
  return Status();
}

Status Manager::Impl::Start() {
  if (Status s = CheckOptions(); !s.ok()) return s;
  if (!opt_.key_file.empty()) {
    auto key = protocol::LoadKey(opt_.key_file);
    if (!key.ok()) return key.status();
    key_ = std::move(*key);
  }
  Status s = OpenRegion();
  if (s.ok()) s = StartListening();
  // A start that fails leaves no region it made (a 1 GiB file in /dev/shm
  // is memory). Only while this host's lock is held (OpenRegion): no other
  // manager of this host has mapped it. (A client cannot have: nothing
  // listened.)
  if (!s.ok() && created_region_file_) {
    if (lease_) lease_->Release();
    unlink(opt_.region_path.c_str());
  }
  return s;
}

Status Manager::Impl::StartListening() {
  // The reserve descriptor, and the connection limit: below the
  // descriptor limit, with room for the pidfds of local clients, metrics
  // scrapes and fence commands.
  reserve_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
  max_connections_ = opt_.max_connections;
  if (max_connections_ == 0) {
    rlimit rl{};
    uint64_t fds = 1024;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) fds = rl.rlim_cur;
    const uint64_t reserved = 64 + uint64_t{region_->max_clients()};
    max_connections_ = static_cast<uint32_t>(
        std::clamp<uint64_t>(fds > reserved + 16 ? fds - reserved : 16, 16, 4096));
  }
  std::vector<std::string> addrs = opt_.listen;
  if (addrs.empty()) {
    auto def = protocol::DefaultAddress(/*create=*/true);
    if (!def.ok()) return def.status();
    addrs.push_back(*def);
  }
  // /run/gismo, for the default socket as root or one named there, is made
  // here (0750) and is the group's way in.
  const std::string run_prefix = std::string("unix:") + protocol::kRunDir + "/";
  for (const auto& a : addrs) {
    if (a.rfind(run_prefix, 0) != 0 || a.find('/', run_prefix.size()) != std::string::npos) {
      continue;
    }
    if (geteuid() == 0 && mkdir(protocol::kRunDir, 0750) != 0 && errno != EEXIST) {
      return Status(GISMO_ERR_IO, std::string("cannot create '") + protocol::kRunDir +
                                      "': " + std::strerror(errno));
    }
    if (!opt_.group.empty()) {
      if (Status s = SetUpFileAccess(protocol::kRunDir, -1, 0750, true); !s.ok()) return s;
    }
    break;
  }
  for (const auto& a : addrs) {
    if (Status s = Listen(a); !s.ok()) return s;
    if (a.rfind("tcp:", 0) == 0 && !key_) {
      spdlog::warn(
          "{}: no --key-file: any peer that reaches this address may join as a node agent, "
          "and as a client once it maps the region (doc/security.md)",
          a);
    }
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
    EndSession(s);
  }
  // Refused peers still flushing their error: closed now, not at the end of
  // a flush that the stopped loop would never finish.
  for (const auto& s : std::vector<std::shared_ptr<Session>>(flushing_sessions_.begin(),
                                                             flushing_sessions_.end())) {
    s->CloseSocket();
  }
  for (auto& [slot, m] : members_) m.pidfd.reset();
  StopHelpers();
  // Clients keep their slots and re-attach to the next manager; sealed
  // objects stay. The next manager need not wait for our lease to run out.
  // A non-coherent region's owner flushes every line it wrote first (a
  // superseded one writes nothing more).
  if (region_ && lease_ && lease_->epoch() != 0 && !LoadRelaxed(superseded_)) {
    FreeHelperSlots();
    region_->FlushMetadata();
    lease_->Release();
  }
  io_.stop();
}

void Manager::Impl::CatchSignals() {
  if (catching_signals_) return;
  catching_signals_ = true;
  // The handlers are installed here; a signal before io_.run() is queued.
  signals_.add(SIGINT);
  signals_.add(SIGTERM);
  signals_.async_wait([this](asio::error_code ec, int sig) {
    if (ec) return;
    spdlog::info("received signal {}; shutting down", sig);
    Shutdown();
  });
}

void Manager::Impl::Run(bool handle_signals) {
  if (handle_signals) CatchSignals();
  Tick();
  io_.run();
}

Manager::Manager(ManagerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Manager::~Manager() = default;
Status Manager::CheckOptions() const { return impl_->CheckOptions(); }
Status Manager::Start() { return impl_->Start(); }
void Manager::Run(bool handle_signals) { impl_->Run(handle_signals); }
void Manager::CatchSignals() { impl_->CatchSignals(); }
void Manager::Stop() { impl_->Stop(); }
bool Manager::superseded() const { return LoadRelaxed(impl_->superseded_); }
std::vector<std::string> Manager::listen_addresses() const { return impl_->bound_; }
std::string Manager::metrics_address() const {
  return impl_->metrics_ ? impl_->metrics_->address() : std::string();
}
const region::Region& Manager::region() const { return *impl_->region_; }
const ManagerStats& Manager::stats() const { return impl_->stats_; }

}  // namespace gismo::manager
