// Frames of a keyed connection: after the handshake's Access, every frame
// either way carries a tag under the cluster key, so that nobody on the
// network path can inject, change, replay, reorder or reflect one (a forged
// fence result would make the manager recover a live client; a forged fence
// order would make an agent kill one).
//
// A connection is *keyed* when the peer's hello carried a HelloMac and the
// manager's access an AccessMac, both verified: the manager and the peer
// hold the same cluster key. On a keyed connection:
//   tag = HMAC-SHA-256(direction key, u64 sequence | header | payload)[0..16)
//   direction key = HMAC-SHA-256(cluster key, "gismo-frames" | direction |
//                                server nonce | client nonce)
// where the header is the frame's 16 bytes as sent (its length counts the
// tag) and the sequence counts the frames of that direction from 0, the
// first after the Access (a client's proof; the manager's welcome or
// refusal). The tag ends the payload. A frame whose tag is missing or wrong
// ends the connection: the stream cannot be trusted after it.
// Connections without a key (Unix-socket peers without one, a manager
// without --key-file) carry no tags.
#ifndef GISMO_PROTOCOL_FRAME_AUTH_H_
#define GISMO_PROTOCOL_FRAME_AUTH_H_

#include <cstdint>
#include <gismo/status.hpp>
#include <string>
#include <vector>

#include "protocol/auth.h"
#include "protocol/wire.h"

namespace gismo::protocol {

inline constexpr uint32_t kFrameTagSize = 16;

// One direction of a keyed connection: signs the frames a side sends, or
// verifies those it receives, in order. Not thread-safe: the caller orders
// its frames (they are tagged in the order they are sent).
class FrameTagger {
 public:
  explicit FrameTagger(const Mac& direction_key)
      : key_(direction_key.data(), direction_key.size()) {}

  // Appends the next frame's tag to `frame` (a whole frame: header and
  // payload) and adds it to the header's length.
  void Sign(std::vector<uint8_t>* frame);
  // Checks and removes the tag that ends a received frame's payload (its
  // header `h` as received): false when it is missing or wrong, or it is
  // not the next frame of this direction.
  bool Verify(FrameHeader* h, std::vector<uint8_t>* payload);

 private:
  HmacKey key_;
  uint64_t seq_ = 0;
};

// Both directions of one keyed connection, for the side given.
struct FrameAuth {
  FrameTagger send;
  FrameTagger recv;
};
enum class FrameSide { kManager, kPeer };
FrameAuth MakeFrameAuth(const Key& key, const Nonce& server, const Nonce& client, FrameSide side);

// The error of a keyed connection's frame from `peer` whose tag is missing
// or wrong (GISMO_ERR_PERMISSION).
Status BadFrameTag(const std::string& peer);

}  // namespace gismo::protocol

#endif  // GISMO_PROTOCOL_FRAME_AUTH_H_
