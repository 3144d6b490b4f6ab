// Admission of a peer on the manager's sockets: the cluster key, the
// challenge-response that proves a peer holds it, and the proof that a peer
// maps the region. Pure functions over bytes; the manager and every client
// (library, agent) call the same ones.
//
// The handshake (protocol version 4; protocol/frame_auth.h tags what
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
//     another connection.
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

// What a peer sends in its hello: HMAC(key, "gismo-hello" | server | client
// | role | node). The manager computes the same and compares in constant
// time.
Mac HelloMac(const Key& key, const Nonce& server, const Nonce& client, uint32_t role,
             uint32_t node);
// What the manager sends in its access message: HMAC(key, "gismo-access" |
// server | client). Proves to the peer that the manager holds the key.
Mac AccessMac(const Key& key, const Nonce& server, const Nonce& client);
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
