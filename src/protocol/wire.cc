#include "protocol/wire.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>

#include "common/clock.h"

namespace gismo::protocol {

void EncodeHeader(const FrameHeader& h, uint8_t out[kHeaderSize]) {
  uint16_t type = static_cast<uint16_t>(h.type);
  std::memcpy(out, &h.length, 4);
  std::memcpy(out + 4, &type, 2);
  std::memcpy(out + 6, &h.flags, 2);
  std::memcpy(out + 8, &h.request_id, 8);
}

FrameHeader DecodeHeader(const uint8_t in[kHeaderSize]) {
  FrameHeader h;
  uint16_t type;
  std::memcpy(&h.length, in, 4);
  std::memcpy(&type, in + 4, 2);
  std::memcpy(&h.flags, in + 6, 2);
  std::memcpy(&h.request_id, in + 8, 8);
  h.type = static_cast<MsgType>(type);
  return h;
}

std::vector<uint8_t> Writer::Frame(MsgType type, uint64_t request_id) const {
  std::vector<uint8_t> out(kHeaderSize + buf_.size());
  FrameHeader h;
  h.length = static_cast<uint32_t>(buf_.size());
  h.type = type;
  h.request_id = request_id;
  EncodeHeader(h, out.data());
  if (!buf_.empty()) std::memcpy(out.data() + kHeaderSize, buf_.data(), buf_.size());
  return out;
}

namespace {

// The fields of a hello before its MAC: once, for the frame and the MAC.
void WriteHelloFields(Writer& w, const Hello& m) {
  w.U32(m.protocol_version);
  w.U32(m.node_id);
  w.U64(m.pid);
  w.Str(m.host);
  w.Str(m.name);
  for (uint64_t v : m.identity) w.U64(v);
  w.U32(static_cast<uint32_t>(m.role));
  w.U32(m.slot);
  w.U64(m.session);
  w.U64(m.client_id);
  w.U64(m.uuid[0]);
  w.U64(m.uuid[1]);
  w.Raw(m.client_nonce.data(), m.client_nonce.size());
}

void WriteAccessFields(Writer& w, const Access& m) {
  w.U64(m.uuid[0]);
  w.U64(m.uuid[1]);
  w.U64(m.region_size);
  w.Str(m.region_path);
}

std::string AsString(const Writer& w) {
  return std::string(reinterpret_cast<const char*>(w.payload().data()), w.payload().size());
}

}  // namespace

std::vector<uint8_t> EncodeHello(const Hello& m) {
  Writer w;
  WriteHelloFields(w, m);
  w.U8(m.has_mac ? 1 : 0);
  if (m.has_mac) w.Raw(m.mac.data(), m.mac.size());
  return w.Frame(MsgType::kHello, 0);
}

std::string HelloSignedBytes(const Hello& m) {
  Writer w;
  WriteHelloFields(w, m);
  return AsString(w);
}

bool DecodeHello(Reader& r, Hello* m) {
  m->protocol_version = r.U32();
  m->node_id = r.U32();
  m->pid = r.U64();
  m->host = r.Str();
  m->name = r.Str();
  // A peer of another version stops here; the caller reports the version.
  if (!r.ok() || m->protocol_version != kProtocolVersion) return r.ok();
  for (uint64_t& v : m->identity) v = r.U64();
  const uint32_t role = r.U32();
  m->slot = r.U32();
  m->session = r.U64();
  m->client_id = r.U64();
  m->uuid[0] = r.U64();
  m->uuid[1] = r.U64();
  r.Raw(m->client_nonce.data(), m->client_nonce.size());
  const uint8_t has_mac = r.U8();
  if (has_mac > 1) return false;
  m->has_mac = has_mac == 1;
  if (m->has_mac) r.Raw(m->mac.data(), m->mac.size());
  if (role > static_cast<uint32_t>(Role::kNodeAgent)) return false;
  m->role = static_cast<Role>(role);
  return r.ok();
}

std::vector<uint8_t> EncodeFenceOrder(uint64_t request_id, const FenceOrder& m) {
  Writer w;
  w.U32(static_cast<uint32_t>(m.target));
  w.U64(m.value);
  return w.Frame(MsgType::kFence, request_id);
}

bool DecodeFenceOrder(Reader& r, FenceOrder* m) {
  const uint32_t t = r.U32();
  m->value = r.U64();
  if (t < 1 || t > 3) return false;
  m->target = static_cast<FenceOrder::Target>(t);
  return r.ok();
}

std::vector<uint8_t> EncodeFenceProcessOrder(uint64_t request_id, const FenceProcessOrder& m) {
  Writer w;
  w.U32(m.slot);
  w.U64(m.session);
  for (uint64_t v : m.identity) w.U64(v);
  w.U8(m.probe_only ? 1 : 0);
  return w.Frame(MsgType::kFenceProcess, request_id);
}

bool DecodeFenceProcessOrder(Reader& r, FenceProcessOrder* m) {
  m->slot = r.U32();
  m->session = r.U64();
  for (uint64_t& v : m->identity) v = r.U64();
  m->probe_only = r.U8() != 0;
  return r.ok();
}

std::vector<uint8_t> EncodeFenceProcessResult(uint64_t request_id, const FenceProcessResult& m) {
  Writer w;
  w.U32(m.slot);
  w.U64(m.session);
  w.U32(static_cast<uint32_t>(m.status.code()));
  w.Str(m.status.message());
  w.U8(m.killed ? 1 : 0);
  return w.Frame(MsgType::kFenceResult, request_id);
}

bool DecodeFenceProcessResult(Reader& r, FenceProcessResult* m) {
  m->slot = r.U32();
  m->session = r.U64();
  m->status = DecodeStatus(r, "fence result");
  m->killed = r.U8() != 0;
  return r.ok();
}

std::vector<uint8_t> EncodeChallenge(const Challenge& m) {
  Writer w;
  w.U32(m.protocol_version);
  w.Raw(m.nonce.data(), m.nonce.size());
  w.U8(m.key_required ? 1 : 0);
  return w.Frame(MsgType::kChallenge, 0);
}

bool DecodeChallenge(Reader& r, Challenge* m) {
  m->protocol_version = r.U32();
  // A manager of another version stops here; the caller reports the version.
  if (!r.ok() || m->protocol_version != kProtocolVersion) return r.ok();
  r.Raw(m->nonce.data(), m->nonce.size());
  const uint8_t key = r.U8();
  m->key_required = key == 1;
  return r.ok() && key <= 1;
}

std::string AccessSignedBytes(const Access& m) {
  Writer w;
  WriteAccessFields(w, m);
  return AsString(w);
}

std::vector<uint8_t> EncodeAccess(const Access& m) {
  Writer w;
  WriteAccessFields(w, m);
  w.U8(m.has_mac ? 1 : 0);
  if (m.has_mac) w.Raw(m.mac.data(), m.mac.size());
  return w.Frame(MsgType::kAccess, 0);
}

bool DecodeAccess(Reader& r, Access* m) {
  m->uuid[0] = r.U64();
  m->uuid[1] = r.U64();
  m->region_size = r.U64();
  m->region_path = r.Str();
  const uint8_t has_mac = r.U8();
  m->has_mac = has_mac == 1;
  if (m->has_mac) r.Raw(m->mac.data(), m->mac.size());
  return r.ok() && has_mac <= 1;
}

std::vector<uint8_t> EncodeProof(const Mac& proof) {
  Writer w;
  w.Raw(proof.data(), proof.size());
  return w.Frame(MsgType::kProof, 0);
}

bool DecodeProof(Reader& r, Mac* proof) {
  r.Raw(proof->data(), proof->size());
  return r.ok();
}

std::vector<uint8_t> EncodeWelcome(const Welcome& m) {
  Writer w;
  w.U32(m.protocol_version);
  w.U32(m.slot);
  w.U64(m.session);
  w.U64(m.client_id);
  w.U64(m.uuid[0]);
  w.U64(m.uuid[1]);
  w.U64(m.region_size);
  w.U32(m.lease_ms);
  w.U32(m.node_id);
  w.U64(m.manager_epoch);
  w.Str(m.region_path);
  return w.Frame(MsgType::kWelcome, 0);
}

bool DecodeWelcome(Reader& r, Welcome* m) {
  m->protocol_version = r.U32();
  m->slot = r.U32();
  m->session = r.U64();
  m->client_id = r.U64();
  m->uuid[0] = r.U64();
  m->uuid[1] = r.U64();
  m->region_size = r.U64();
  m->lease_ms = r.U32();
  m->node_id = r.U32();
  m->manager_epoch = r.U64();
  m->region_path = r.Str();
  return r.ok();
}

std::vector<uint8_t> EncodeError(uint64_t request_id, const Status& s) {
  Writer w;
  w.U32(static_cast<uint32_t>(s.code()));
  w.Str(s.message());
  return w.Frame(MsgType::kError, request_id);
}

Status DecodeError(Reader& r) {
  Status s = DecodeStatus(r, "error message");
  if (s.ok()) return Status(GISMO_ERR_PROTOCOL, "malformed error message (status OK)");
  return s;
}

gismo_status_t StatusCodeFromWire(uint32_t value) {
  switch (value) {
#define GISMO_STATUS_FROM_WIRE_CASE_(name, short_name, v, message, py_class, py_base) \
  case v:                                                                             \
    return name;
    GISMO_STATUS_CODES(GISMO_STATUS_FROM_WIRE_CASE_)
#undef GISMO_STATUS_FROM_WIRE_CASE_
  }
  return GISMO_ERR_PROTOCOL;
}

Status DecodeStatus(Reader& r, std::string_view what) {
  const uint32_t value = r.U32();
  std::string msg = r.Str();
  if (!r.ok()) return Status(GISMO_ERR_PROTOCOL, "malformed " + std::string(what));
  const gismo_status_t code = StatusCodeFromWire(value);
  if (code == GISMO_ERR_PROTOCOL && value != GISMO_ERR_PROTOCOL) {
    return Status(GISMO_ERR_PROTOCOL, std::string(what) + " carries unknown status code " +
                                          std::to_string(value) + ": " + msg);
  }
  return code == GISMO_OK ? Status() : Status(code, msg);
}

namespace {

// A directory fit to hold a socket: a directory (not a link), owned by us
// or root, not writable by others (nor by its group unless it is root's
// /run/gismo, whose group is the clients').
Status CheckSocketDir(const std::string& dir) {
  struct stat st {};
  if (lstat(dir.c_str(), &st) != 0) {
    return Status(GISMO_ERR_IO, "'" + dir + "': " + std::strerror(errno));
  }
  if (!S_ISDIR(st.st_mode)) {
    return Status(GISMO_ERR_PERMISSION, "'" + dir + "' is not a directory; not using it");
  }
  if (st.st_uid != geteuid() && st.st_uid != 0) {
    return Status(GISMO_ERR_PERMISSION, "'" + dir + "' belongs to another user (uid " +
                                            std::to_string(st.st_uid) + "); not using it");
  }
  if ((st.st_mode & S_IWOTH) != 0 || (st.st_uid != 0 && (st.st_mode & S_IWGRP) != 0)) {
    return Status(GISMO_ERR_PERMISSION, "'" + dir + "' may be written by others; not using it");
  }
  return Status();
}

Result<std::string> SocketIn(const std::string& dir, bool create, mode_t mode) {
  if (create && mkdir(dir.c_str(), mode) != 0 && errno != EEXIST) {
    return Status(GISMO_ERR_IO, "cannot create '" + dir + "': " + std::strerror(errno));
  }
  struct stat st {};
  // A client finds no directory: no manager runs there; connecting says so.
  if (!create && lstat(dir.c_str(), &st) != 0 && errno == ENOENT)
    return "unix:" + dir + "/gismo.sock";
  if (Status s = CheckSocketDir(dir); !s.ok()) return s;
  return "unix:" + dir + "/gismo.sock";
}

}  // namespace

Result<std::string> DefaultAddress(bool create) {
  struct stat st {};
  const std::string run_sock = std::string(kRunDir) + "/gismo.sock";
  if (geteuid() == 0 || (!create && lstat(run_sock.c_str(), &st) == 0)) {
    return SocketIn(kRunDir, create && geteuid() == 0, 0750);
  }
  const char* xdg = getenv("XDG_RUNTIME_DIR");
  if (xdg != nullptr && *xdg == '/') return SocketIn(xdg, false, 0700);
  return SocketIn("/tmp/gismo-" + std::to_string(geteuid()), create, 0700);
}

std::string Address::ToString() const {
  if (kind == Kind::kUnix) return "unix:" + path;
  bool v6 = host.find(':') != std::string::npos;
  return "tcp:" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

Result<Address> ParseAddress(std::string_view text) {
  Address a;
  auto bad = [&](const std::string& why) {
    return Status(GISMO_ERR_INVALID_ARGUMENT,
                  "bad address '" + std::string(text) + "': " + why +
                      " (expected unix:/path/to/socket or tcp:host:port)");
  };
  if (text.rfind("unix:", 0) == 0) {
    a.kind = Address::Kind::kUnix;
    a.path = std::string(text.substr(5));
    if (a.path.empty()) return bad("empty socket path");
    if (a.path.size() >= sizeof(sockaddr_un::sun_path)) return bad("socket path too long");
    return a;
  }
  if (text.rfind("tcp:", 0) == 0) {
    std::string_view rest = text.substr(4);
    size_t colon = rest.rfind(':');
    if (colon == std::string_view::npos) return bad("missing port");
    std::string_view host = rest.substr(0, colon), port = rest.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
      host = host.substr(1, host.size() - 2);
    }
    if (host.empty()) return bad("missing host");
    unsigned p = 0;
    auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (ec != std::errc() || ptr != port.data() + port.size() || p > 65535) {
      return bad("port must be a number in [0, 65535]");
    }
    a.kind = Address::Kind::kTcp;
    a.host = std::string(host);
    a.port = static_cast<uint16_t>(p);
    return a;
  }
  return bad("unknown scheme");
}

namespace {
Status WaitConnected(int fd, int timeout_ms, const std::string& what) {
  pollfd p{fd, POLLOUT, 0};
  int rc;
  do {
    rc = poll(&p, 1, timeout_ms);
  } while (rc < 0 && errno == EINTR);
  if (rc == 0) return Status(GISMO_ERR_TIMEOUT, "timed out connecting to " + what);
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (rc < 0 || err != 0) {
    return Status(GISMO_ERR_CONNECTION, "cannot connect to " + what + ": " +
                                            std::strerror(err ? err : errno) +
                                            " (is gismo-manager running there?)");
  }
  return Status();
}

Status Cancelled(const std::string& what) {
  return Status(GISMO_ERR_CONNECTION, "the connect to " + what + " was cancelled");
}

Result<int> ConnectFd(int family, const sockaddr* sa, socklen_t len, int timeout_ms,
                      const std::string& what, const ConnectCancel* cancel) {
  int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return Status(GISMO_ERR_IO, std::string("socket: ") + std::strerror(errno));
  const bool publishes = cancel != nullptr && cancel->publish;
  // Unpublished before it is closed: a canceller never shuts down a
  // descriptor number that was reused.
  auto discard = [&] {
    if (publishes) (void)cancel->publish(-1);
    close(fd);
  };
  if (publishes && !cancel->publish(fd)) {
    discard();
    errno = ECANCELED;
    return Cancelled(what);
  }
  int rc = connect(fd, sa, len);
  if (rc != 0 && errno != EINPROGRESS) {
    int e = errno;
    discard();
    Status s(GISMO_ERR_CONNECTION, "cannot connect to " + what + ": " + std::strerror(e) +
                                       " (is gismo-manager running there?)");
    errno = e;  // for the caller: EAGAIN is worth another try
    return s;
  }
  if (rc != 0) {
    Status s = WaitConnected(fd, timeout_ms, what);
    if (!s.ok()) {
      discard();
      errno = 0;
      return s;
    }
  }
  int flags = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  if (family != AF_UNIX) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  return fd;
}
// Unix connects that found the listen queue full and tried again.
std::atomic<uint64_t> g_unix_connect_retries{0};
}  // namespace

uint64_t UnixConnectRetries() { return g_unix_connect_retries.load(std::memory_order_relaxed); }

Result<int> ConnectTo(const Address& a, int timeout_ms, const ConnectCancel* cancel) {
  const std::string what = a.ToString();
  auto cancelled = [&] { return cancel != nullptr && cancel->cancelled && cancel->cancelled(); };
  if (a.kind == Address::Kind::kUnix) {
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::strncpy(sa.sun_path, a.path.c_str(), sizeof(sa.sun_path) - 1);
    // EAGAIN: the manager's listen queue is full (a burst of connections);
    // it drains as the manager accepts: try again until the time is up.
    const uint64_t give_up =
        timeout_ms < 0 ? UINT64_MAX : MonotonicNs() / 1000000 + uint64_t(timeout_ms);
    for (int pause_ms = 1;; pause_ms = std::min(pause_ms * 2, 100)) {
      if (cancelled()) return Cancelled(what);
      auto fd =
          ConnectFd(AF_UNIX, reinterpret_cast<sockaddr*>(&sa), sizeof sa, timeout_ms, what, cancel);
      if (fd.ok() || errno != EAGAIN || MonotonicNs() / 1000000 >= give_up) return fd;
      g_unix_connect_retries.fetch_add(1, std::memory_order_relaxed);
      usleep(static_cast<useconds_t>(pause_ms) * 1000);
    }
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::string port = std::to_string(a.port);
  if (cancelled()) return Cancelled(what);
  int rc = getaddrinfo(a.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) {
    return Status(GISMO_ERR_CONNECTION, "cannot resolve '" + a.host + "': " + gai_strerror(rc));
  }
  Status last(GISMO_ERR_CONNECTION, "no address for " + what);
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    if (cancelled()) {
      last = Cancelled(what);
      break;
    }
    auto fd = ConnectFd(ai->ai_family, ai->ai_addr, ai->ai_addrlen, timeout_ms, what, cancel);
    if (fd.ok()) {
      freeaddrinfo(res);
      return fd;
    }
    last = fd.status();
  }
  freeaddrinfo(res);
  return last;
}

Status SendAll(int fd, const void* data, size_t n) {
  auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return Status(GISMO_ERR_CONNECTION,
                    std::string("lost the connection to the manager: ") + std::strerror(errno));
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return Status();
}

namespace {

// Milliseconds left until `deadline_ns` (MonotonicNs), 0 once it passed,
// for poll(); rounded up so a poll never returns just before the deadline.
int RemainingMs(uint64_t deadline_ns) {
  const uint64_t now = MonotonicNs();
  if (now >= deadline_ns) return 0;
  const uint64_t ms = (deadline_ns - now + 999999) / 1000000;
  return static_cast<int>(std::min<uint64_t>(ms, INT32_MAX));
}

// Polls `fd` for `events` until `deadline_ns`: true when ready (or in error:
// the next send or recv says which), false when the time is up.
bool PollUntil(int fd, short events, uint64_t deadline_ns) {
  for (;;) {
    const int ms = RemainingMs(deadline_ns);
    if (ms == 0) return false;
    pollfd p{fd, events, 0};
    const int rc = poll(&p, 1, ms);
    if (rc > 0) return true;
    if (rc < 0 && errno != EINTR) return true;  // let the caller's call fail
  }
}

}  // namespace

uint64_t DeadlineAfterMs(int timeout_ms) {
  return MonotonicNs() + static_cast<uint64_t>(std::max(timeout_ms, 0)) * 1000000;
}

Status SendAllUntil(int fd, const void* data, size_t n, uint64_t deadline_ns) {
  auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    // The send first: a socket with room (the common case) costs no poll.
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (!PollUntil(fd, POLLOUT, deadline_ns)) {
          return Status(GISMO_ERR_TIMEOUT,
                        "the manager stopped reading: its connection's send buffer stayed full");
        }
        continue;
      }
      return Status(GISMO_ERR_CONNECTION,
                    std::string("lost the connection to the manager: ") + std::strerror(errno));
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return Status();
}

Status RecvAllUntil(int fd, void* data, size_t n, uint64_t deadline_ns) {
  auto* p = static_cast<uint8_t*>(data);
  while (n > 0) {
    // The receive first: bytes already there (the common case) cost no poll.
    ssize_t r = recv(fd, p, n, MSG_DONTWAIT);
    if (r == 0) return Status(GISMO_ERR_CONNECTION, "the manager closed the connection");
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (!PollUntil(fd, POLLIN, deadline_ns)) {
          return Status(GISMO_ERR_TIMEOUT, "the manager stopped in the middle of a frame");
        }
        continue;
      }
      return Status(GISMO_ERR_CONNECTION,
                    std::string("lost the connection to the manager: ") + std::strerror(errno));
    }
    p += r;
    n -= static_cast<size_t>(r);
  }
  return Status();
}

Status RecvAll(int fd, void* data, size_t n) {
  auto* p = static_cast<uint8_t*>(data);
  while (n > 0) {
    ssize_t r = recv(fd, p, n, 0);
    if (r == 0) return Status(GISMO_ERR_CONNECTION, "the manager closed the connection");
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {  // a non-blocking socket
        return Status(GISMO_ERR_TIMEOUT, "the manager stopped in the middle of a frame");
      }
      return Status(GISMO_ERR_CONNECTION,
                    std::string("lost the connection to the manager: ") + std::strerror(errno));
    }
    p += r;
    n -= static_cast<size_t>(r);
  }
  return Status();
}

namespace {

// RecvFrame and RecvFrameUntil: `recv_all` reads exactly n bytes.
template <typename RecvAllFn>
Status RecvFrameWith(RecvAllFn recv_all, FrameHeader* h, std::vector<uint8_t>* payload) {
  uint8_t hdr[kHeaderSize];
  if (Status s = recv_all(hdr, kHeaderSize); !s.ok()) return s;
  *h = DecodeHeader(hdr);
  if (h->length > kMaxPayload) {
    return Status(GISMO_ERR_PROTOCOL, "frame of " + std::to_string(h->length) +
                                          " bytes from the manager: not a gismo peer?");
  }
  payload->resize(h->length);
  if (h->length == 0) return Status();
  return recv_all(payload->data(), h->length);
}

}  // namespace

Status RecvFrame(int fd, FrameHeader* h, std::vector<uint8_t>* payload) {
  return RecvFrameWith([fd](void* p, size_t n) { return RecvAll(fd, p, n); }, h, payload);
}

Status RecvFrameUntil(int fd, uint64_t deadline_ns, FrameHeader* h, std::vector<uint8_t>* payload) {
  return RecvFrameWith(
      [fd, deadline_ns](void* p, size_t n) { return RecvAllUntil(fd, p, n, deadline_ns); }, h,
      payload);
}

void BoundUnacknowledgedSends(int fd, int timeout_ms) {
  int domain = 0;
  socklen_t len = sizeof domain;
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0 ||
      (domain != AF_INET && domain != AF_INET6)) {
    return;
  }
  const unsigned int ms = static_cast<unsigned int>(std::max(timeout_ms, 1));
  (void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof ms);
}

int FrameStallBoundMs(uint32_t lease_ms) {
  if (lease_ms == 0) return 10000;
  return static_cast<int>(std::clamp<uint32_t>(lease_ms / 2, 1000, 10000));
}

}  // namespace gismo::protocol
