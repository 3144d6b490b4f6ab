// The manager <-> client protocol: length-prefixed binary frames over a
// stream socket (Unix or TCP). Only membership, liveness, waits and
// notifications travel here; object data never does.
//
// Frame: u32 payload length | u16 type | u16 flags | u64 request id | payload
// All integers little-endian. Strings are u32 length + bytes.
#ifndef GISMO_PROTOCOL_WIRE_H_
#define GISMO_PROTOCOL_WIRE_H_

#include <gismo/gismo.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <gismo/status.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/auth.h"

namespace gismo::protocol {

// 3: the admission handshake of protocol/auth.h (challenge, access, proof).
// 4: a keyed connection's frames after the access carry tags
//    (protocol/frame_auth.h).
// 5: the hello's and the access's MACs cover every field of their message
//    (protocol/auth.h, HelloMac and AccessMac).
inline constexpr uint32_t kProtocolVersion = 5;
inline constexpr uint32_t kMaxPayload = 16u << 20;
// The largest frame a manager reads from a peer it has not admitted yet (a
// hello, a proof): an unknown peer cannot make it hold more.
inline constexpr uint32_t kMaxPreAdmissionPayload = 4096;
inline constexpr size_t kHeaderSize = 16;
// The most ids a client names in one wait (kWait): far below what a frame
// can carry (kMaxPayload / GISMO_ID_SIZE) and what the manager accepts.
// gismo_get refuses a blocking get of more missing objects (GISMO_ERR_LIMIT).
inline constexpr uint32_t kMaxWaitIds = 1u << 16;

enum class MsgType : uint16_t {
  kHello = 1,          // client -> manager: version, node, pid, host, name
  kWelcome = 2,        // manager -> client: slot, session, region ...
  kError = 3,          // either way: status + message
  kWait = 4,           // client -> manager: ids it waits for (request id = wait id)
  kWaitAck = 5,        // manager -> client: the wait is registered
  kCancelWait = 6,     // client -> manager: done waiting (request id = wait id)
  kWake = 7,           // manager -> client: something it waits for may be ready
  kSealed = 8,         // client -> manager: this object was sealed (waiters exist)
  kHeartbeat = 9,      // client -> manager: still alive
  kGoodbye = 10,       // client -> manager: disconnecting, clean me up
  kBye = 11,           // manager -> client: cleaned up
  kDeleted = 12,       // client -> manager: this object was deleted (waiters exist)
  kSubscribe = 13,     // client -> manager: wake me on every seal and delete
  kSubscribeAck = 14,  // manager -> client: subscribed (waiters raised)
  kNotify = 15,        // manager -> subscriber: new events in the event ring; payload:
                       // u64 ring head when sent (absent from older managers)
  kFence = 16,         // operator's client -> manager: FenceOrder (gismo fence)
  kFenceReply = 17,    // manager -> client: status + what was fenced
  kFenceProcess = 18,  // manager -> node agent: FenceProcessOrder
  kFenceResult = 19,   // node agent -> manager: FenceProcessResult
  kChallenge = 20,     // manager -> peer, first on every connection: Challenge
  kAccess = 21,        // manager -> peer: Access (the hello is accepted)
  kProof = 22,         // client -> manager: RegionProof (see protocol/auth.h)
  kRequests = 23,      // client -> manager: requests published on its ring while
                       // the owner slept (non-coherent regions; no payload)
};

struct FrameHeader {
  uint32_t length = 0;
  MsgType type{};
  uint16_t flags = 0;
  uint64_t request_id = 0;
};

void EncodeHeader(const FrameHeader& h, uint8_t out[kHeaderSize]);
FrameHeader DecodeHeader(const uint8_t in[kHeaderSize]);

class Writer {
 public:
  void U8(uint8_t v) { buf_.push_back(v); }
  void U16(uint16_t v) { Raw(&v, 2); }
  void U32(uint32_t v) { Raw(&v, 4); }
  void U64(uint64_t v) { Raw(&v, 8); }
  void Str(std::string_view s) {
    U32(static_cast<uint32_t>(s.size()));
    Raw(s.data(), s.size());
  }
  void Id(const gismo_id_t& id) { Raw(id.bytes, GISMO_ID_SIZE); }
  void Raw(const void* p, size_t n) {
    if (n == 0) return;
    const size_t at = buf_.size();
    buf_.resize(at + n);  // (not insert: gcc 12 misreads it as a write past an empty buffer)
    std::memcpy(buf_.data() + at, p, n);
  }
  // A complete frame with this payload.
  std::vector<uint8_t> Frame(MsgType type, uint64_t request_id) const;
  const std::vector<uint8_t>& payload() const { return buf_; }

 private:
  std::vector<uint8_t> buf_;
};

// Reads a payload; any read past the end sets !ok() and returns zeros.
class Reader {
 public:
  Reader(const uint8_t* p, size_t n) : p_(p), n_(n) {}
  explicit Reader(const std::vector<uint8_t>& v) : Reader(v.data(), v.size()) {}
  uint8_t U8() {
    uint8_t v = 0;
    Raw(&v, 1);
    return v;
  }
  uint16_t U16() {
    uint16_t v = 0;
    Raw(&v, 2);
    return v;
  }
  uint32_t U32() {
    uint32_t v = 0;
    Raw(&v, 4);
    return v;
  }
  uint64_t U64() {
    uint64_t v = 0;
    Raw(&v, 8);
    return v;
  }
  std::string Str() {
    uint32_t n = U32();
    if (!ok_ || n > n_ - pos_) {
      ok_ = false;
      return {};
    }
    std::string s(reinterpret_cast<const char*>(p_ + pos_), n);
    pos_ += n;
    return s;
  }
  gismo_id_t Id() {
    gismo_id_t id{};
    Raw(id.bytes, GISMO_ID_SIZE);
    return id;
  }
  void Raw(void* out, size_t n) {
    if (!ok_ || n > n_ - pos_) {
      ok_ = false;
      std::memset(out, 0, n);
      return;
    }
    std::memcpy(out, p_ + pos_, n);
    pos_ += n;
  }
  bool ok() const { return ok_; }
  size_t remaining() const { return n_ - pos_; }

 private:
  const uint8_t* p_;
  size_t n_;
  size_t pos_ = 0;
  bool ok_ = true;
};

// Who says hello.
enum class Role : uint32_t {
  kClient = 0,     // a new client: gets a fresh slot
  kReattach = 1,   // a client of a previous connection (or manager) that
                   // keeps its slot and session, if they are still live
  kNodeAgent = 2,  // the fencing agent of node `node_id` (gismo-agent)
};

struct Hello {
  uint32_t protocol_version = kProtocolVersion;
  uint32_t node_id = 0;
  uint64_t pid = 0;
  std::string host;
  std::string name;
  uint64_t identity[4] = {0, 0, 0, 0};  // fence::ProcessIdentity of the sender
  Role role = Role::kClient;
  // kReattach: the slot and session it holds, and the region it holds them in.
  uint32_t slot = 0;
  uint64_t session = 0;
  uint64_t client_id = 0;
  uint64_t uuid[2] = {0, 0};
  Nonce client_nonce{};
  bool has_mac = false;  // HelloMac under the cluster key
  Mac mac{};
};
std::vector<uint8_t> EncodeHello(const Hello& m);
bool DecodeHello(Reader& r, Hello* m);
// What HelloMac covers: the hello's encoding up to its MAC (every field).
std::string HelloSignedBytes(const Hello& m);

// The manager's first frame on every connection.
struct Challenge {
  uint32_t protocol_version = kProtocolVersion;
  Nonce nonce{};
  bool key_required = false;  // this connection must prove the cluster key
};
std::vector<uint8_t> EncodeChallenge(const Challenge& m);
bool DecodeChallenge(Reader& r, Challenge* m);

// The hello is accepted. A client proves next that it maps the region; an
// agent is welcomed at once.
struct Access {
  uint64_t uuid[2] = {0, 0};
  uint64_t region_size = 0;
  std::string region_path;  // empty for an unauthenticated peer
  bool has_mac = false;     // AccessMac: the manager holds the cluster key
  Mac mac{};
};
std::vector<uint8_t> EncodeAccess(const Access& m);
bool DecodeAccess(Reader& r, Access* m);
// What AccessMac covers: the access's encoding up to its MAC.
std::string AccessSignedBytes(const Access& m);

std::vector<uint8_t> EncodeProof(const Mac& proof);
bool DecodeProof(Reader& r, Mac* proof);

struct Welcome {
  uint32_t protocol_version = kProtocolVersion;
  uint32_t slot = 0;
  uint64_t session = 0;
  uint64_t client_id = 0;
  uint64_t uuid[2] = {0, 0};
  uint64_t region_size = 0;
  uint32_t lease_ms = 0;
  uint32_t node_id = 0;
  uint64_t manager_epoch = 0;
  std::string region_path;  // empty for an unauthenticated peer
};
std::vector<uint8_t> EncodeWelcome(const Welcome& m);
bool DecodeWelcome(Reader& r, Welcome* m);

// gismo fence: what the operator declares fenced.
struct FenceOrder {
  enum class Target : uint32_t { kClient = 1, kSlot = 2, kNode = 3 } target = Target::kClient;
  uint64_t value = 0;  // client id, slot, or node id
};
std::vector<uint8_t> EncodeFenceOrder(uint64_t request_id, const FenceOrder& m);
bool DecodeFenceOrder(Reader& r, FenceOrder* m);

// Manager -> agent: prove this process of your node gone (kill it if not).
// probe_only: only say whether it is gone (its connection closed: did it
// die?); never kill it.
struct FenceProcessOrder {
  uint32_t slot = 0;
  uint64_t session = 0;
  uint64_t identity[4] = {0, 0, 0, 0};
  bool probe_only = false;
};
std::vector<uint8_t> EncodeFenceProcessOrder(uint64_t request_id, const FenceProcessOrder& m);
bool DecodeFenceProcessOrder(Reader& r, FenceProcessOrder* m);

// Agent -> manager: the outcome. status OK means the process can never run
// again (killed: it had to be SIGKILLed; otherwise it was already gone).
struct FenceProcessResult {
  uint32_t slot = 0;
  uint64_t session = 0;
  Status status;
  bool killed = false;
};
std::vector<uint8_t> EncodeFenceProcessResult(uint64_t request_id, const FenceProcessResult& m);
bool DecodeFenceProcessResult(Reader& r, FenceProcessResult* m);

std::vector<uint8_t> EncodeError(uint64_t request_id, const Status& s);
Status DecodeError(Reader& r);

// A status code read from a peer: a value of the list in
// gismo/status_codes.h, else GISMO_ERR_PROTOCOL (a peer cannot make a call
// return a value outside gismo_status_t).
gismo_status_t StatusCodeFromWire(uint32_t value);
// Reads a status as written on the wire (u32 code, string message). A code
// that is not in the list, or a truncated payload, gives GISMO_ERR_PROTOCOL
// naming `what`.
Status DecodeStatus(Reader& r, std::string_view what);

// A parsed "unix:/path" or "tcp:host:port" address.
struct Address {
  enum class Kind { kUnix, kTcp } kind = Kind::kUnix;
  std::string path;  // unix
  std::string host;  // tcp
  uint16_t port = 0;
  std::string ToString() const;
};
// The default manager address, when neither an address nor $GISMO_ADDRESS
// is given: never in world-writable /tmp, where another local user could
// start a manager first.
//  1. unix:/run/gismo/gismo.sock: a manager run by root creates /run/gismo
//     (0750; its group is --group); a client uses it if the socket exists.
//  2. unix:$XDG_RUNTIME_DIR/gismo.sock: a manager run by another user.
//  3. unix:/tmp/gismo-UID/gismo.sock, the directory 0700: without
//     $XDG_RUNTIME_DIR.
// A directory that is not ours (or root's), or that others may write to,
// is refused. `create`: the manager's side, which creates the directory.
inline constexpr const char* kRunDir = "/run/gismo";
Result<std::string> DefaultAddress(bool create);
Result<Address> ParseAddress(std::string_view text);

// Blocking client-side socket helpers (the manager uses asio).
//
// How a caller cancels a connect from another thread: `publish` gets each
// socket before its connect, and -1 before that socket is closed; the
// caller shuts a published socket down (shutdown(2)) to cancel, which
// ends a connect in progress at once. `publish` returning false cancels
// before the connect (the canceller has already run). `cancelled` is asked
// before each attempt (each address, each retry). Either may be empty.
// A socket connected stays published: the caller unpublishes it.
struct ConnectCancel {
  std::function<bool(int fd)> publish;
  std::function<bool()> cancelled;
};
// A cancelled connect fails with GISMO_ERR_CONNECTION.
Result<int> ConnectTo(const Address& a, int timeout_ms, const ConnectCancel* cancel = nullptr);
// How many times a Unix connect found the manager's listen queue full
// (EAGAIN) and tried again, in this process so far.
uint64_t UnixConnectRetries();
// Writes all bytes (retries on EINTR / partial writes). MSG_NOSIGNAL.
// Blocks for as long as the peer does not read: for a peer that cannot
// stall us (tests, the manager's own tools); a client uses SendAllUntil.
Status SendAll(int fd, const void* data, size_t n);
// Reads exactly n bytes. GISMO_ERR_CONNECTION on EOF. Blocks for as long
// as the peer sends nothing: a reader of a peer it does not control uses
// RecvAllUntil / RecvFrameUntil.
Status RecvAll(int fd, void* data, size_t n);
// Reads one whole frame (blocking, as RecvAll).
Status RecvFrame(int fd, FrameHeader* h, std::vector<uint8_t>* payload);

// Absolute deadlines, in MonotonicNs (common/clock.h): a bound on a whole
// frame, not on each system call, so a peer that drips a byte now and then
// cannot stretch it.
uint64_t DeadlineAfterMs(int timeout_ms);
// Writes all n bytes by `deadline_ns`: GISMO_ERR_TIMEOUT when the socket's
// send buffer stays full until then (the peer stopped reading). A timeout
// may leave part of the bytes sent: the stream is then out of step, and
// the caller must treat the connection as broken. Tries the send first
// (MSG_DONTWAIT) and polls only when the buffer is full.
Status SendAllUntil(int fd, const void* data, size_t n, uint64_t deadline_ns);
// Reads exactly n bytes by `deadline_ns`: GISMO_ERR_TIMEOUT when they have
// not all come by then, GISMO_ERR_CONNECTION on EOF. Tries the receive
// first (MSG_DONTWAIT) and polls only when nothing is there.
Status RecvAllUntil(int fd, void* data, size_t n, uint64_t deadline_ns);
// Reads one whole frame by `deadline_ns` (as RecvAllUntil).
Status RecvFrameUntil(int fd, uint64_t deadline_ns, FrameHeader* h, std::vector<uint8_t>* payload);
// On a TCP socket, bounds how long sent data may stay unacknowledged before
// the kernel drops the connection (TCP_USER_TIMEOUT): a peer that vanished
// silently (its host powered off, the link cut) is noticed within about
// timeout_ms instead of the kernel's retransmission limit (~15 minutes).
// Does nothing on other sockets; best effort.
void BoundUnacknowledgedSends(int fd, int timeout_ms);
// How long a connection's reader (a client's receiver thread, an agent)
// waits for the rest of a frame from the manager: half the lease it sends
// heartbeats for, within 1–10 s (10 s without a lease). While it waits it
// sends no heartbeat.
int FrameStallBoundMs(uint32_t lease_ms);

}  // namespace gismo::protocol

#endif  // GISMO_PROTOCOL_WIRE_H_
