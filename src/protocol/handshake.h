// The peer's side of the admission handshake (protocol/auth.h), shared by
// the client library and gismo-agent: blocking, on a connected socket.
#ifndef GISMO_PROTOCOL_HANDSHAKE_H_
#define GISMO_PROTOCOL_HANDSHAKE_H_

#include <functional>
#include <gismo/status.hpp>
#include <optional>
#include <string>

#include "protocol/auth.h"
#include "protocol/frame_auth.h"
#include "protocol/wire.h"

namespace gismo::protocol {

// The cluster key named by $GISMO_KEY_FILE: none if it is unset or empty,
// an error if the file cannot be used.
Result<std::optional<Key>> KeyFromEnv();

// Computes the region proof once the manager has granted access: maps the
// region (access.region_path, or where this host sees it) and returns
// RegionProof of its admission secret. Called at most once.
using ProveFn =
    std::function<Result<Mac>(const Access& access, const Nonce& server, const Nonce& client)>;

struct HandshakeResult {
  Access access;
  Welcome welcome;
  // A keyed connection (protocol/frame_auth.h): the tags of the frames
  // after the welcome, which the caller sends and receives.
  std::optional<FrameAuth> auth;
};

// Waits at most timeout_ms for the next frame (GISMO_ERR_TIMEOUT: "the
// manager did not answer in time"), then reads it.
Status RecvFrameWithin(int fd, int timeout_ms, FrameHeader* h, std::vector<uint8_t>* payload);

// Whether a manager's refusal (`refused` set by Handshake) says only "not
// now": GISMO_ERR_LIMIT (it is at its connection limit, or closed this peer
// for a newer one waiting for admission: "try again") or GISMO_ERR_TIMEOUT
// (this peer was not admitted in time). The same handshake may succeed
// later; every other refusal (a session that has ended, a wrong key or
// region proof) stands.
bool RetryableRefusal(const Status& s);

// Reads the challenge, sends `hello` (with its nonce and, given a key, its
// MAC), reads the access (checking the manager's MAC when we hold a key),
// proves the region through `prove` (clients; null for an agent), and reads
// the welcome. With a key, the frames after the access are tagged both
// ways (out->auth goes on with the tags). Each answer is awaited at most
// timeout_ms. `refused` (may be null): the manager answered, and said no.
Status Handshake(int fd, Hello hello, const std::optional<Key>& key, const ProveFn& prove,
                 const std::string& addr_text, int timeout_ms, HandshakeResult* out,
                 bool* refused = nullptr);

}  // namespace gismo::protocol

#endif  // GISMO_PROTOCOL_HANDSHAKE_H_
