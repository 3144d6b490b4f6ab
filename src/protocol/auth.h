// Admission of a peer on the manager's sockets: the cluster key, the
// challenge-response that proves a peer holds it, and the proof that a peer
// maps the region. Pure functions over bytes; the manager and every client
// (library, agent) call the same ones.
//
// The handshake (protocol version 5; protocol/frame_auth.h tags what
// follows it on a keyed connection):
//   manager -> peer  Challenge {version, server nonce, key required?}
//   peer -> manager  Hello {..., client nonce, HelloMac or nothing}
//   manager -> peer  Access {region uuid and size, region path only to an
//                    authenticated peer, AccessMac when the manager has a key}
//   peer -> manager  Proof {RegionProof}             (clients only, not agents)
//   manager -> peer  Welcome {slot, session, ...}
// Invariants:
//  1. A peer is *authenticated* when it came through the Unix socket (file
//     modes decide who can connect) or its HelloMac verified under the
//     cluster key. An unauthenticated peer learns nothing but the region's
//     uuid and size, and only when the manager has no key.
//  2. No client slot is taken before RegionProof verified: only a process
//     that can read the region (the manager writes a fresh secret into its
//     own slot at every start, `ClientSlotHeader::admission_secret`) can
//     compute it for this connection's server nonce.
//  3. Every MAC covers both nonces, so no answer is worth anything on
//     another connection, and the HelloMac and AccessMac cover every field
//     of their message (version 4 covered only the nonces, role and node).
#ifndef GISMO_PROTOCOL_AUTH_H_
#define GISMO_PROTOCOL_AUTH_H_

#include <openssl/types.h>

#include <array>
#include <cstdint>
#include <gismo/status.hpp>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>

namespace gismo::protocol {

inline constexpr size_t kNonceSize = 16;
inline constexpr size_t kMacSize = 32;  // HMAC-SHA-256
inline constexpr size_t kMinKeySize = 16;
inline constexpr size_t kMaxKeySize = 4096;

using Nonce = std::array<uint8_t, kNonceSize>;
using Mac = std::array<uint8_t, kMacSize>;

// The cluster secret: the bytes of a key file.
struct Key {
  std::string bytes;
  bool empty() const { return bytes.empty(); }
};

// Reads a key file. Refuses a file that is not a regular file, that group or
// others may read or write (like ssh with its keys), or that is shorter than
// kMinKeySize or longer than kMaxKeySize bytes. A trailing newline is part
// of the key: a file is used byte for byte. GISMO_ERR_UNSUPPORTED if this
// process's OpenSSL cannot compute HMAC-SHA-256 with it (its configuration).
Result<Key> LoadKey(const std::string& path);

// HMAC-SHA-256 under `key` of the concatenation of `parts`. Should it fail
// (no memory), the result is random: it matches no peer's MAC.
Mac HmacSha256(const void* key, size_t key_size, std::initializer_list<std::string_view> parts);

// The same under one key set up once, for many MACs (a connection's frame
// tags). Copies share the set-up; Compute may run in one thread at a time
// per copy.
class HmacKey {
 public:
  HmacKey(const void* key, size_t key_size);
  // False if OpenSSL could not set the key up (error() says why); Compute
  // then returns random bytes, which match no peer's MAC.
  bool ok() const { return keyed_ != nullptr; }
  const std::string& error() const { return error_; }
  Mac Compute(std::initializer_list<std::string_view> parts) const;

 private:
  std::shared_ptr<EVP_MAC_CTX> keyed_;  // initialized with the key; null if that failed
  std::string error_;
};

// Random bytes from the kernel (getrandom).
Nonce RandomNonce();

// What a peer sends in its hello: HMAC(key, "gismo-hello" | server |
// hello), where `hello` is every field of the hello as the wire encodes it,
// the client nonce included, the MAC left out (protocol::HelloSignedBytes).
// The manager computes the same and compares in constant time. Nothing on
// the network path can change a field of a keyed hello (its role, node, pid,
// identity, or the slot and session it re-attaches to) and keep the MAC.
Mac HelloMac(const Key& key, const Nonce& server, std::string_view hello);
// What the manager sends in its access message: HMAC(key, "gismo-access" |
// server | client | access), `access` its fields as the wire encodes them
// (protocol::AccessSignedBytes). Proves to the peer that the manager holds
// the key, and that the region it names is the manager's.
Mac AccessMac(const Key& key, const Nonce& server, const Nonce& client, std::string_view access);
// What a client sends to prove it maps the region: HMAC(secret,
// "gismo-region" | server | client), secret = the 16 bytes of
// ClientSlotHeader::admission_secret of slot 0.
Mac RegionProof(const uint64_t secret[2], const Nonce& server, const Nonce& client);

// Constant-time comparison.
bool MacEqual(const Mac& a, const Mac& b);

// Host and program names from a peer, fit for one log line: at most 64
// bytes, printable ASCII only (anything else becomes '?'), never empty.
std::string SanitizeForLog(const std::string& text);

}  // namespace gismo::protocol

#endif  // GISMO_PROTOCOL_AUTH_H_
