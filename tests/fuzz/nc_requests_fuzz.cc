// libFuzzer target: the non-coherent mode's ring payloads
// (region/nc_requests.h), which another host writes. An input is up to
// kNcMaxRequestEntries payloads of 48 bytes (a short last one is zero-filled).
// Decoded as a request and as a response, nothing may crash or read out of
// bounds, and whatever decodes must be the exact encoding of what it decodes
// to (one encoding per request: an unchecked bit is a finding).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>

#include "region/nc_requests.h"

namespace gismo::region {
namespace {

constexpr uint64_t kRecords = 1u << 20;
constexpr uint64_t kHeap = 1ull << 34;

void Check(const uint8_t* p, size_t n) {
  RequestPayload entries[kNcMaxRequestEntries] = {};
  const size_t bytes = std::min(n, sizeof entries);
  std::memcpy(entries, p, bytes);
  const uint32_t given = std::max<uint32_t>(
      1, static_cast<uint32_t>((bytes + sizeof(RequestPayload) - 1) / sizeof(RequestPayload)));
  auto len = NcRequestLength(entries[0]);
  if (len.ok() && *len <= given) {
    NcRequest r;
    if (DecodeNcRequest(std::span<const RequestPayload>(entries, *len), kRecords, &r).ok()) {
      RequestPayload again[kNcMaxRequestEntries] = {};
      if (!EncodeNcRequest(r, again).ok() || NcRequestEntries(r) != *len ||
          std::memcmp(again, entries, *len * sizeof(RequestPayload)) != 0) {
        abort();  // accepted words its encoder would not write
      }
    }
  }
  NcResponse resp;
  if (DecodeNcResponse(entries[0], kRecords, kHeap, &resp).ok()) {
    const RequestPayload again = EncodeNcResponse(resp);
    if (std::memcmp(&again, &entries[0], sizeof again) != 0) abort();
  }
}

}  // namespace
}  // namespace gismo::region

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  gismo::region::Check(data, size);
  return 0;
}
