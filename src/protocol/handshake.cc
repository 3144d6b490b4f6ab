#include "protocol/handshake.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>

namespace gismo::protocol {

namespace {

// The next frame, of type `want` (its payload in *payload), or the
// manager's error (sets *refused), or a protocol error. `tags`: a keyed
// connection's received frames' tags, checked (null before the access).
Status Expect(int fd, int timeout_ms, MsgType want, const std::string& addr_text,
              std::vector<uint8_t>* payload, bool* refused, FrameTagger* tags = nullptr) {
  FrameHeader h;
  if (Status s = RecvFrameWithin(fd, timeout_ms, &h, payload); !s.ok()) return s;
  if (tags != nullptr && !tags->Verify(&h, payload))
    return BadFrameTag("the manager at " + addr_text);
  if (h.type == MsgType::kError) {
    if (refused) *refused = true;
    Reader rd(*payload);
    return DecodeError(rd);
  }
  if (h.type != want) {
    return Status(GISMO_ERR_PROTOCOL, addr_text + " did not answer like a gismo manager");
  }
  return Status();
}

}  // namespace

Result<std::optional<Key>> KeyFromEnv() {
  const char* path = getenv("GISMO_KEY_FILE");
  if (path == nullptr || *path == '\0') return std::optional<Key>();
  auto key = LoadKey(path);
  if (!key.ok()) return Status(key.status().code(), key.status().message() + " ($GISMO_KEY_FILE)");
  return std::optional<Key>(std::move(*key));
}

bool RetryableRefusal(const Status& s) {
  return s.code() == GISMO_ERR_LIMIT || s.code() == GISMO_ERR_TIMEOUT;
}

Status RecvFrameWithin(int fd, int timeout_ms, FrameHeader* h, std::vector<uint8_t>* payload) {
  // One deadline for the first byte and the rest of the frame: a peer that
  // stops in the middle of one, or drips it a byte at a time, must not hang
  // the handshake past timeout_ms.
  const uint64_t deadline = DeadlineAfterMs(timeout_ms);
  pollfd p{fd, POLLIN, 0};
  int rc;
  do {
    rc = poll(&p, 1, timeout_ms);
  } while (rc < 0 && errno == EINTR);
  if (rc == 0) return Status(GISMO_ERR_TIMEOUT, "the manager did not answer in time");
  return RecvFrameUntil(fd, deadline, h, payload);
}

Status Handshake(int fd, Hello hello, const std::optional<Key>& key, const ProveFn& prove,
                 const std::string& addr_text, int timeout_ms, HandshakeResult* out,
                 bool* refused) {
  std::vector<uint8_t> payload;
  Challenge challenge;
  if (Status s = Expect(fd, timeout_ms, MsgType::kChallenge, addr_text, &payload, refused);
      !s.ok()) {
    return s;
  }
  {
    Reader rd(payload);
    if (!DecodeChallenge(rd, &challenge)) {
      return Status(GISMO_ERR_PROTOCOL, addr_text + " sent a malformed challenge");
    }
  }
  if (challenge.protocol_version != kProtocolVersion) {
    return Status(GISMO_ERR_PROTOCOL, "manager speaks protocol version " +
                                          std::to_string(challenge.protocol_version) +
                                          ", this library " + std::to_string(kProtocolVersion));
  }
  if (challenge.key_required && !key) {
    if (refused) *refused = true;
    return Status(GISMO_ERR_PERMISSION,
                  "the manager at " + addr_text +
                      " requires the cluster key: set GISMO_KEY_FILE to its key file");
  }
  hello.client_nonce = RandomNonce();
  hello.has_mac = key.has_value();
  if (key) {
    hello.mac = HelloMac(*key, challenge.nonce, HelloSignedBytes(hello));
  }
  const std::vector<uint8_t> hello_frame = EncodeHello(hello);
  if (Status s = SendAll(fd, hello_frame.data(), hello_frame.size()); !s.ok()) return s;

  if (Status s = Expect(fd, timeout_ms, MsgType::kAccess, addr_text, &payload, refused); !s.ok()) {
    return s;
  }
  {
    Reader rd(payload);
    if (!DecodeAccess(rd, &out->access)) {
      return Status(GISMO_ERR_PROTOCOL, addr_text + " sent a malformed access message");
    }
  }
  if (key) {
    // We hold the key: so must the manager, or it is not ours.
    if (!out->access.has_mac ||
        !MacEqual(out->access.mac, AccessMac(*key, challenge.nonce, hello.client_nonce,
                                             AccessSignedBytes(out->access)))) {
      return Status(GISMO_ERR_PERMISSION,
                    "the manager at " + addr_text + " did not prove it holds the cluster key");
    }
    out->auth = MakeFrameAuth(*key, challenge.nonce, hello.client_nonce, FrameSide::kPeer);
  }
  if (prove) {
    auto proof = prove(out->access, challenge.nonce, hello.client_nonce);
    if (!proof.ok()) return proof.status();
    std::vector<uint8_t> frame = EncodeProof(*proof);
    if (out->auth) out->auth->send.Sign(&frame);
    if (Status s = SendAll(fd, frame.data(), frame.size()); !s.ok()) return s;
  }
  if (Status s = Expect(fd, timeout_ms, MsgType::kWelcome, addr_text, &payload, refused,
                        out->auth ? &out->auth->recv : nullptr);
      !s.ok()) {
    return s;
  }
  Reader rd(payload);
  if (!DecodeWelcome(rd, &out->welcome)) {
    return Status(GISMO_ERR_PROTOCOL, addr_text + " sent a malformed welcome");
  }
  if (out->welcome.protocol_version != kProtocolVersion) {
    return Status(GISMO_ERR_PROTOCOL, "manager speaks protocol version " +
                                          std::to_string(out->welcome.protocol_version) +
                                          ", this library " + std::to_string(kProtocolVersion));
  }
  return Status();
}

}  // namespace gismo::protocol
