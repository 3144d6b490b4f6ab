#include "protocol/frame_auth.h"

#include <openssl/crypto.h>

#include <string_view>

namespace gismo::protocol {

namespace {

std::string_view Bytes(const void* p, size_t n) { return {static_cast<const char*>(p), n}; }

Mac TagOf(const HmacKey& key, uint64_t seq, std::string_view header_and_payload_start,
          std::string_view payload_rest) {
  return key.Compute({Bytes(&seq, sizeof seq), header_and_payload_start, payload_rest});
}

Mac DirectionKey(const Key& key, char direction, const Nonce& server, const Nonce& client) {
  return HmacSha256(key.bytes.data(), key.bytes.size(),
                    {"gismo-frames", Bytes(&direction, 1), Bytes(server.data(), server.size()),
                     Bytes(client.data(), client.size())});
}

}  // namespace

void FrameTagger::Sign(std::vector<uint8_t>* frame) {
  FrameHeader h = DecodeHeader(frame->data());
  h.length += kFrameTagSize;
  EncodeHeader(h, frame->data());
  const Mac tag = TagOf(key_, seq_++, Bytes(frame->data(), frame->size()), {});
  frame->insert(frame->end(), tag.begin(), tag.begin() + kFrameTagSize);
}

bool FrameTagger::Verify(FrameHeader* h, std::vector<uint8_t>* payload) {
  if (h->length != payload->size() || payload->size() < kFrameTagSize) return false;
  uint8_t header[kHeaderSize];
  EncodeHeader(*h, header);
  const size_t body = payload->size() - kFrameTagSize;
  const Mac tag = TagOf(key_, seq_, Bytes(header, kHeaderSize), Bytes(payload->data(), body));
  if (CRYPTO_memcmp(tag.data(), payload->data() + body, kFrameTagSize) != 0) return false;
  ++seq_;
  payload->resize(body);
  h->length = static_cast<uint32_t>(body);
  return true;
}

Status BadFrameTag(const std::string& peer) {
  return Status(GISMO_ERR_PERMISSION, "a frame from " + peer +
                                          " failed its cluster-key tag (forged, or changed on the "
                                          "way): connection closed");
}

FrameAuth MakeFrameAuth(const Key& key, const Nonce& server, const Nonce& client, FrameSide side) {
  const Mac to_peer = DirectionKey(key, 'p', server, client);
  const Mac to_manager = DirectionKey(key, 'm', server, client);
  return side == FrameSide::kManager ? FrameAuth{FrameTagger(to_peer), FrameTagger(to_manager)}
                                     : FrameAuth{FrameTagger(to_manager), FrameTagger(to_peer)};
}

}  // namespace gismo::protocol
