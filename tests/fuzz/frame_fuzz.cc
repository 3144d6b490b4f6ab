// libFuzzer target: the wire decoders. An input is a byte stream as a peer
// would send it: frames (16-byte header, payload) decoded with every message
// decoder, as the manager, a client and a node agent do; then the whole
// input as an address. Nothing may crash, read out of bounds or allocate
// more than the payload it was given.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "protocol/wire.h"

namespace gismo::protocol {
namespace {

void DecodeEverything(const uint8_t* p, size_t n) {
  {
    Reader r(p, n);
    Hello m;
    (void)DecodeHello(r, &m);
  }
  {
    Reader r(p, n);
    Welcome m;
    (void)DecodeWelcome(r, &m);
  }
  {
    Reader r(p, n);
    FenceOrder m;
    (void)DecodeFenceOrder(r, &m);
  }
  {
    Reader r(p, n);
    FenceProcessOrder m;
    (void)DecodeFenceProcessOrder(r, &m);
  }
  {
    Reader r(p, n);
    FenceProcessResult m;
    if (DecodeFenceProcessResult(r, &m) && !m.status.ok()) {
      // A status from the wire is always one of the list.
      if (StatusCodeName(m.status.code()).empty()) __builtin_trap();
    }
  }
  {
    Reader r(p, n);
    Status s = DecodeError(r);
    if (s.ok() || StatusCodeName(s.code()).empty()) __builtin_trap();
  }
  {
    // The generic readers, in the order the wait and notify frames use them.
    Reader r(p, n);
    const uint32_t count = r.U32();
    for (uint32_t i = 0; i < count && r.ok(); ++i) (void)r.Id();
    (void)r.Str();
    (void)r.U64();
  }
}

}  // namespace
}  // namespace gismo::protocol

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace gismo::protocol;  // NOLINT
  size_t pos = 0;
  while (size - pos >= kHeaderSize) {
    const FrameHeader h = DecodeHeader(data + pos);
    pos += kHeaderSize;
    if (h.length > kMaxPayload) break;  // the receiver closes the connection
    const size_t n = std::min<size_t>(h.length, size - pos);
    DecodeEverything(data + pos, n);
    pos += n;
  }
  DecodeEverything(data, size);
  (void)ParseAddress(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
