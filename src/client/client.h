// The client library's core: one connection to the manager, one mapping of
// the region, one client slot. The object operations run against shared
// memory (store::Store); the connection carries only membership, liveness,
// waits and wake-ups.
#ifndef GISMO_CLIENT_CLIENT_H_
#define GISMO_CLIENT_CLIENT_H_

#include <gismo/gismo.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <gismo/status.hpp>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "protocol/auth.h"
#include "protocol/frame_auth.h"
#include "protocol/wire.h"
#include "region/region.h"
#include "store/names.h"
#include "store/store.h"

namespace gismo::client {

// How long the client waits for the manager: to connect, to answer a hello,
// a subscription or a fence order, and to confirm a goodbye.
inline constexpr int kConnectTimeoutMs = 5000;
inline constexpr int kHandshakeTimeoutMs = 10000;
inline constexpr int kGoodbyeTimeoutMs = 10000;
// How long a frame may wait for room in the connection's send buffer (and
// for send_mu_) before the connection counts as broken: the manager reads
// every connection at once, so a buffer that stays full means it stopped.
// Notices (kSealed, kDeleted, kRequests), heartbeats and cancels are sent
// by object operations and the receiver thread, which must not block on
// the manager: a short bound. Requests the caller waits on anyway (waits,
// subscriptions, fence orders, the goodbye) may be large (a wait names up
// to kMaxWaitIds ids): a longer one.
inline constexpr int kNoticeSendMs = 250;
inline constexpr int kRequestSendMs = 2000;
// While no manager can be reached, blocking gets and name waits look at the
// region this often (no wake-up can come: seals notify through the manager).
inline constexpr int kLookWhileDownMs = 1000;
// Creates and gets of at least this many bytes populate the object's page
// tables in one system call (Region::PopulateForWrite / PopulateForRead), the
// first time this process maps that range; smaller ones stay without one.
inline constexpr size_t kPopulateBytes = size_t{1} << 20;

// The implementation is split by concern: connection.cc (connect, handshake,
// re-attach, disconnect), receiver.cc (the receiver thread), objects.cc
// (object operations), names.cc (the name table), waits.cc (get),
// subscriptions.cc, fence_order.cc.
// What gismo_connect_with_options carries; an empty field means its
// environment variable, then the default (gismo.h).
struct ConnectOptions {
  std::string address;      // $GISMO_ADDRESS
  std::string key_file;     // $GISMO_KEY_FILE
  std::string region_path;  // $GISMO_REGION
};

// The address a connect with `given` (ConnectOptions::address) goes to:
// `given`, else $GISMO_ADDRESS, else the default (gismo.h).
Result<std::string> ManagerAddress(const std::string& given);

class ClientImpl {
 public:
  static Result<std::unique_ptr<ClientImpl>> Connect(const ConnectOptions& options);
  ~ClientImpl();

  Status Disconnect();

  Status Create(const gismo_id_t& id, size_t data_size, const void* metadata, size_t metadata_size,
                uint32_t flags, void** data);
  Status Seal(const gismo_id_t& id);
  Status Abort(const gismo_id_t& id);
  Status Get(const gismo_id_t* ids, size_t count, int64_t timeout_ms, gismo_buffer_t* buffers);
  // gismo_get_or_create: *data set (this client loads) or *buffer held.
  Status GetOrCreate(const gismo_id_t& id, size_t data_size, const void* metadata,
                     size_t metadata_size, uint32_t flags, int64_t timeout_ms,
                     gismo_buffer_t* buffer, void** data);
  Status Evict(uint64_t bytes, uint64_t* evicted);
  Status Touch(const gismo_id_t& id);
  Status Release(const gismo_id_t& id);
  Status Delete(const gismo_id_t& id);
  Status Contains(const gismo_id_t& id, bool* contains);
  Status Stat(const gismo_id_t& id, gismo_object_info_t* info);
  // *count is set only on success (gismo_list's contract).
  Status List(gismo_object_info_t* infos, size_t capacity, size_t* count);
  Status Usage(gismo_usage_t* usage);
  Status ListClients(gismo_client_info_t* infos, size_t capacity, size_t* count);

  // Names (names.cc; store/names.h says what they mean).
  Status BindName(std::string_view name, const gismo_id_t& id, store::BindMode mode,
                  const gismo_id_t* expected);
  Status UnbindName(std::string_view name, const gismo_id_t* expected);
  Status LookupName(std::string_view name, store::NameBinding* out);
  Status ListNames(std::string_view prefix, std::vector<store::NameBinding>* out);
  // gismo_wait_name (waits.cc): blocks until `name` is bound to another id
  // than `known` (nullptr: bound at all) and returns that binding in `out`.
  // OBJECT_NOT_FOUND if `known` is given and the name is or becomes unbound;
  // TIMEOUT if it has not changed by the deadline.
  Status WaitName(std::string_view name, const gismo_id_t* known, int64_t timeout_ms,
                  store::NameBinding* out);

  Status Subscribe(int* fd);
  // The subscription's datagram socket, into event_fd_ (and its address,
  // token and UDP word into the members below).
  // REQUIRES: `sub` holds sub_mu_; event_fd_ < 0.
  Status OpenEventSocket(const std::unique_lock<std::mutex>& sub);
  Status NextNotification(gismo_notification_t* out, int64_t timeout_ms);
  // Drops the initial listing's ids and the window's (their memory too).
  // REQUIRES: `sub` holds sub_mu_.
  void ForgetWindow(const std::unique_lock<std::mutex>& sub);

  // gismo fence: declares a client or node fenced (the operator's word).
  // `what` receives the manager's account of what it recovered.
  Status Fence(const protocol::FenceOrder& order, std::string* what);

  uint32_t node_id() const { return welcome_.node_id; }
  uint32_t slot() const { return welcome_.slot; }
  uint64_t session() const { return welcome_.session; }
  const region::Region& region() const { return *region_; }

 private:
  ClientImpl() = default;
  // After the manager admitted this client and its region is mapped: its
  // store, names and receiver thread. May throw (an allocation, the thread);
  // Connect says goodbye on any failure.
  Status StartSession();
  Status CheckAlive() const;
  // Fence's first step in a non-coherent region: writes back, from this
  // host, the lines of each client the order names whose process ran in
  // this kernel and PID namespace and is proven gone (region/nc_fence.h);
  // one still running is noted in `note`, and one of another host is left
  // to that host (its agent, or its power-off). BUSY if the owner kept a
  // record odd throughout.
  Status WriteBackFencedHere(const protocol::FenceOrder& order, std::string* note);
  // Sends `frame` on the connection of the moment within bound_ms. A frame
  // that cannot go out in time (the manager stopped reading, or another
  // sender holds send_mu_ that long) shuts the connection down: the
  // receiver thread re-attaches, and the manager, on a re-attach, wakes
  // every waiter and subscriber (so a lost notice delays no one for good).
  // Any failure means the connection is down or going down. `sent_on`, if
  // given, receives the epoch of the connection the frame went on (see
  // fd_epoch_): a reply can come only on that one.
  Status Send(std::vector<uint8_t> frame, int bound_ms = kNoticeSendMs,
              uint64_t* sent_on = nullptr);
  // Tells the manager about a seal or delete if anyone waits for one.
  // `ring_event`: the operation appended to the event ring (subscribers care).
  void NotifyIfWatched(protocol::MsgType type, const gismo_id_t& id, bool ring_event = true);
  // NotifyIfWatched for every object the store evicted. Call without op_mu_.
  void NotifyEvicted(std::vector<gismo_id_t> ids);
  // Get, and with `create` (one id only), GetOrCreate: a sweep that finds
  // the id absent creates it, and ends the wait if that succeeded.
  struct CreateSpec {
    size_t data_size;
    const void* metadata;
    size_t metadata_size;
    uint32_t flags;
    void** data;  // out: set when this client created it
  };
  // Populates the page tables of the large objects a get returned
  // (kPopulateBytes), outside every lock.
  void PopulateLarge(const gismo_buffer_t* buffers, size_t count) const;
  Status GetImpl(const gismo_id_t* ids, size_t count, int64_t timeout_ms, gismo_buffer_t* buffers,
                 const CreateSpec* create);
  // The blocking waits (GetImpl, WaitName), waits.cc. A wait for `deadline`
  // (time_point::max(): for ever) on state_cv_ until `pred`; false on timeout.
  // REQUIRES: lk holds state_mu_.
  template <typename Pred>
  bool WaitOnState(std::unique_lock<std::mutex>& lk, std::chrono::steady_clock::time_point deadline,
                   Pred pred);
  // Registers wait `wait_id` on `ids` with the manager unless it is
  // registered on this connection already (*registered_epoch), and waits
  // for its ack: after that every seal or name change of those ids wakes
  // state_cv_ (waits are the manager's memory, so a re-attach needs a new
  // registration; a send that fails means a re-attach, which wakes us).
  // The manager's refusal of this wait (GISMO_ERR_LIMIT: over its bound on
  // waits), which ends the wait but not the session, is returned.
  // *seen_wake_seq is wake_seq_ read under the same hold of state_mu_ that
  // found the wait registered on the connection of the moment: a re-attach
  // after it (which drops the registration) raises wake_seq_ past it, so a
  // caller that sleeps until wake_seq_ differs wakes and registers again. A
  // snapshot taken under a later hold could include that re-attach and
  // sleep on a wait no manager has.
  Status RegisterWait(uint64_t wait_id, const std::vector<gismo_id_t>& ids,
                      uint64_t* registered_epoch, std::chrono::steady_clock::time_point deadline,
                      uint64_t* seen_wake_seq);
  // Whether blocking waits look at the region themselves while the
  // connection is down: in a coherent region only. A non-coherent region's
  // seals and creates go through its owner (the manager): nothing can change
  // while it is away, and a GetOrCreate's create would time out.
  bool LooksWhileDown() const;
  // The time a blocking wait sleeps until: `deadline`, or while the
  // connection is down (no wake-up can come) at most kLookWhileDownMs, after
  // which the caller looks at the region again (LooksWhileDown). REQUIRES:
  // lk holds state_mu_.
  std::chrono::steady_clock::time_point WakeOrLookAgain(
      const std::unique_lock<std::mutex>& lk, std::chrono::steady_clock::time_point deadline) const;
  // Forgets wait `wait_id` here and at the manager.
  void EndWait(uint64_t wait_id);
  void ReceiverLoop();
  bool RunConnection(std::vector<uint8_t>* payload, std::string* why);
  // Whether the region still has the manager that welcomed this client: a
  // new manager (a restart, a failover) puts its epoch in sb.manager_owner,
  // and the connection to the old one is then dead, whether or not it says
  // so.
  bool SameManager() const;
  bool Reattach(std::string* why);
  // Shuts down the connection of the moment and a re-attach's handshake in
  // progress, so that the receiver thread (and any sender) returns at once.
  // Takes fd_mu_ only: never waits for a sender.
  void ShutdownConnection();
  // Sets closing_ under state_mu_ and wakes state_cv_: a re-attach's
  // backoff (up to 500 ms) ends at once.
  void BeginClosing();
  void MarkLost(const std::string& why);
  // Makes the subscription's event fd readable, if there is one: the
  // subscriber's next call reads the ring (or learns the client is lost).
  void WakeSubscriber();
  // The fast path of a ring event: a datagram straight to every subscriber
  // whose slot publishes a notify_token (see Subscribe): over UDP to its
  // notify_inet address from any node, else to its abstract socket on this
  // node. The manager is still kicked: it wakes those this cannot reach.
  void WakeSubscribersDirectly();

  // The connection. Replaced only by the receiver thread (Reattach), under
  // both send_mu_ and fd_mu_: read under either, or by that thread alone.
  int fd_ = -1;
  // The connection_epoch_ that fd_ has (or is about to have: a re-attach
  // sets it with fd_, then publishes connection_epoch_ under state_mu_).
  // Written with fd_; read under send_mu_.
  uint64_t fd_epoch_ = 0;
  // A re-attach's connection while its handshake runs, or -1. Written by
  // the receiver thread under fd_mu_.
  int connecting_fd_ = -1;
  protocol::Address address_;
  std::string address_text_;
  protocol::Hello hello_;             // after the welcome: a re-attach hello
  std::optional<protocol::Key> key_;  // the cluster key, for every handshake
  // A keyed connection's tags (protocol/frame_auth.h): of the frames sent
  // on fd_ (under send_mu_), and of those received (the receiver thread
  // alone). Replaced with fd_.
  std::optional<protocol::FrameTagger> send_tags_;
  std::optional<protocol::FrameTagger> recv_tags_;
  protocol::Welcome welcome_;
  std::unique_ptr<region::Region> region_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<store::Names> names_;

  // Serializes the object operations (one undo log per client slot).
  std::mutex op_mu_;
  // Serializes frames on fd_. A sender waits for it no longer than its
  // send bound (see Send). Order: send_mu_ before fd_mu_.
  std::mutex send_mu_;
  // Guards the fds that ShutdownConnection shuts down against their
  // replacement and close; held only for a shutdown() or an assignment.
  std::mutex fd_mu_;

  // State shared with the receiver thread.
  mutable std::mutex state_mu_;
  std::condition_variable state_cv_;
  uint64_t wake_seq_ = 0;
  std::set<uint64_t> acked_waits_;
  uint64_t connection_epoch_ = 0;  // +1 at every re-attach
  bool connection_down_ = false;   // from a broken connection to the re-attach
  std::map<uint64_t, Status> fence_replies_;
  // Requests sent and not yet done with, by id, with the type of frame each
  // was (kWait, kFence, kSubscribe, kGoodbye): a reply is accepted only for
  // an open request of the type it answers, so a reply nobody asked for
  // (or one for a request of a connection gone) changes nothing. Also the
  // manager's refusals of some of them: an Error frame with a nonzero
  // request id answers that request alone (one with id 0 ends the session).
  // A refusal is kept only for an open request, so the manager cannot make
  // this map grow.
  std::map<uint64_t, protocol::MsgType> open_requests_;
  std::map<uint64_t, Status> request_errors_;
  bool bye_ = false;  // the manager confirmed our goodbye (its request id)
  std::string lost_reason_;
  // Set once (StoreRelease), under state_mu_, after lost_reason_; read with
  // LoadAcquire, also without state_mu_ as a fast check.
  std::atomic<bool> lost_{false};
  // Set once (StoreRelease, in BeginClosing) by Disconnect or the destructor
  // before they shut the connection down; the receiver thread reads it (LoadAcquire) when its
  // poll, recv or re-attach backoff returns.
  std::atomic<bool> closing_{false};
  // Request ids: only their uniqueness matters (IncrementRelaxed).
  std::atomic<uint64_t> next_request_{1};

  // Subscription. The event fd is a datagram socket: UDP bound to this
  // client's address on its TCP connection to the manager, else AF_UNIX at
  // an abstract address. The receiver thread sends it a byte on kNotify,
  // and clients that seal or delete send it one themselves (any node over
  // UDP, this node over AF_UNIX).
  std::mutex sub_mu_;
  // Stored (StoreRelease) after the socket is bound and event_addr_ set,
  // loaded (LoadAcquire) by the receiver thread to send to it, taken
  // (ExchangeAcqRel) at the end.
  std::atomic<int> event_fd_{-1};
  sockaddr_storage event_addr_{};  // the socket's own address (written before event_fd_)
  socklen_t event_addr_len_ = 0;
  uint64_t notify_token_ = 0;  // published in this slot, or 0 (bind failed)
  uint64_t notify_inet_ = 0;   // NotifyInetWord of the UDP socket, or 0 (AF_UNIX)
  // Unbound datagram sockets (AF_UNIX, UDP) that WakeSubscribersDirectly
  // sends from; made once, on the first ring event seen while someone
  // subscribes.
  std::once_flag notify_send_once_;
  int notify_send_fd_ = -1;
  int notify_udp_fd_ = -1;
  bool subscribed_ = false;
  uint64_t cursor_ = 0;  // next event ring seq to read
  // cursor_ as of the subscriber's last look at the ring (StoreRelease by
  // the subscriber, LoadAcquire by the receiver thread): a manager wake-up
  // for a head at or below it is for events read already, and is dropped.
  std::atomic<uint64_t> cursor_seen_{0};
  std::deque<gismo_notification_t> initial_;  // sealed before subscribing
  // Events in [subscription cursor, snapshot_end_) raced with the initial
  // listing: a seal there may repeat a listed object (dropped), a delete may
  // be of an object the subscriber never saw (dropped). Cleared after.
  uint64_t snapshot_end_ = 0;
  // The listed ids, sorted (20 bytes each: a subscriber of a store of 10 M
  // objects holds 200 MB of them until the window is read, where a set of
  // strings took five times that), and the few of them a delete in the
  // window took back; then the ids the window sealed.
  std::vector<std::array<uint8_t, GISMO_ID_SIZE>> initial_ids_;
  std::set<std::array<uint8_t, GISMO_ID_SIZE>> initial_deleted_;
  std::set<std::array<uint8_t, GISMO_ID_SIZE>> window_sealed_;
  // Guarded by state_mu_. Set when the manager acknowledges a subscribe
  // request of this client, then for good: every re-attach subscribes
  // again, and wakes the subscriber when that is acknowledged.
  bool subscribe_acked_ = false;
  std::thread receiver_;
};

}  // namespace gismo::client

#endif  // GISMO_CLIENT_CLIENT_H_
