#include "region/nc_requests.h"

#include <algorithm>
#include <cstring>

namespace gismo::region {

namespace {

// The head entry's word 0: op | flags << 8 | name length << 16 | entries << 24.
constexpr uint64_t HeadWord(NcOp op, uint32_t flags, uint32_t name_len, uint32_t entries) {
  return uint64_t{static_cast<uint8_t>(op)} | uint64_t{flags & 0xff} << 8 |
         uint64_t{name_len & 0xff} << 16 | uint64_t{entries & 0xff} << 24;
}
static_assert(GISMO_NAME_MAX <= 0xff, "the name length is one byte of the head word");

// HeadWord's fields, as read back.
struct Head {
  NcOp op;
  uint32_t flags, name_len, entries;
};
constexpr Head ParseHead(uint64_t w) {
  return {static_cast<NcOp>(w & 0xff), static_cast<uint32_t>((w >> 8) & 0xff),
          static_cast<uint32_t>((w >> 16) & 0xff), static_cast<uint32_t>((w >> 24) & 0xff)};
}

bool IsNameOp(NcOp op) {
  return op == NcOp::kBindName || op == NcOp::kSwapName || op == NcOp::kUnbindName;
}
bool HasId(NcOp op) {
  return op != NcOp::kEvict && op != NcOp::kGoodbye && op != NcOp::kUnbindName;
}

// The flags an op may carry.
uint32_t AllowedFlags(NcOp op) {
  switch (op) {
    case NcOp::kCreate:
      return kNcGetIfExists;
    case NcOp::kSwapName:
    case NcOp::kUnbindName:
      return kNcHasExpected;
    default:
      return 0;
  }
}

uint32_t EntriesFor(NcOp op, uint32_t flags, uint32_t name_len) {
  if (!IsNameOp(op)) return 1;
  return 1 + ((flags & kNcHasExpected) ? 1 : 0) +
         (name_len + kNcNameBytesPerEntry - 1) / kNcNameBytesPerEntry;
}

// An id's last 4 bytes (of 24) are zero: GISMO_ID_SIZE is 20.
constexpr uint64_t kIdPadMask = ~uint64_t{0} << (8 * (GISMO_ID_SIZE - 16));
static_assert(GISMO_ID_SIZE > 16 && GISMO_ID_SIZE <= 24);

bool IdPadded(const IdWords& id) { return (id.w[2] & kIdPadMask) == 0; }

Status Bad(const std::string& what) {
  return Status(GISMO_ERR_PROTOCOL, "malformed request: " + what);
}

Status BadResponse(const std::string& what) {
  return Status(GISMO_ERR_PROTOCOL, "malformed response: " + what);
}

// Words [from, kRequestPayloadWords) of p are zero.
bool ZeroFrom(const RequestPayload& p, uint32_t from) {
  for (uint32_t i = from; i < kRequestPayloadWords; ++i) {
    if (p.w[i] != 0) return false;
  }
  return true;
}

bool KnownStatus(uint64_t v) {
  return v <= 0xffffffffu && !StatusCodeName(static_cast<gismo_status_t>(v)).empty();
}

}  // namespace

const char* NcOpName(NcOp op) {
  switch (op) {
    case NcOp::kCreate:
      return "create";
    case NcOp::kSeal:
      return "seal";
    case NcOp::kAbort:
      return "abort";
    case NcOp::kDelete:
      return "delete";
    case NcOp::kTouch:
      return "touch";
    case NcOp::kEvict:
      return "evict";
    case NcOp::kBindName:
      return "bind name";
    case NcOp::kSwapName:
      return "swap name";
    case NcOp::kUnbindName:
      return "unbind name";
    case NcOp::kGoodbye:
      return "goodbye";
    case NcOp::kReleased:
      return "released";
  }
  return "";
}

namespace {
// Whether a decoder would take `r` once encoded; INVALID_ARGUMENT naming the
// field if not.
Status CheckEncodable(const NcRequest& r) {
  auto invalid = [&](const std::string& what) {
    return Status(GISMO_ERR_INVALID_ARGUMENT,
                  std::string("cannot encode a ") + NcOpName(r.op) + " request: " + what);
  };
  if (*NcOpName(r.op) == '\0') {
    return Status(GISMO_ERR_INVALID_ARGUMENT,
                  "cannot encode request op " + std::to_string(static_cast<unsigned>(r.op)));
  }
  if ((r.flags & ~AllowedFlags(r.op)) != 0) return invalid("flags it cannot carry");
  if (IsNameOp(r.op)) {
    if (r.name.empty() || r.name.size() > GISMO_NAME_MAX) {
      return invalid("a name of " + std::to_string(r.name.size()) + " bytes (1 to " +
                     std::to_string(GISMO_NAME_MAX) + ")");
    }
    if (r.name.find('\0') != std::string::npos) return invalid("a name with a NUL byte");
  } else if (!r.name.empty()) {
    return invalid("a name");
  }
  if (HasId(r.op) && !IdPadded(r.id)) return invalid("an id longer than 20 bytes");
  if ((r.flags & kNcHasExpected) && !IdPadded(r.expected)) {
    return invalid("an expected id longer than 20 bytes");
  }
  if (r.op == NcOp::kCreate) {
    if (r.data_size > kMaxDataSize) return invalid("a data size above 2^40 - 1");
    if (r.metadata_size > kMaxMetadataSize) return invalid("a metadata size above 2^24 - 1");
    if ((r.create_flags & ~kObjectFlagsPublic) != 0) return invalid("unknown create flags");
  }
  return Status();
}
}  // namespace

uint32_t NcRequestEntries(const NcRequest& r) {
  if (!CheckEncodable(r).ok()) return 0;
  return EntriesFor(r.op, r.flags, static_cast<uint32_t>(r.name.size()));
}

Status EncodeNcRequest(const NcRequest& r, std::span<RequestPayload, kNcMaxRequestEntries> out) {
  if (Status s = CheckEncodable(r); !s.ok()) return s;
  const bool named = IsNameOp(r.op);
  const uint32_t n = EntriesFor(r.op, r.flags, static_cast<uint32_t>(r.name.size()));
  for (uint32_t i = 0; i < n; ++i) out[i] = RequestPayload{};
  RequestPayload& head = out[0];
  head.w[0] = HeadWord(r.op, r.flags, named ? static_cast<uint32_t>(r.name.size()) : 0, n);
  if (HasId(r.op)) {
    for (int i = 0; i < 3; ++i) head.w[1 + i] = r.id.w[i];
  }
  switch (r.op) {
    case NcOp::kCreate:
      head.w[4] = PackSizes(r.data_size, r.metadata_size);
      head.w[5] = r.create_flags;
      break;
    case NcOp::kSeal:
    case NcOp::kAbort:
    case NcOp::kReleased:
      head.w[4] = r.record;
      break;
    case NcOp::kEvict:
      head.w[1] = r.bytes;
      break;
    default:
      break;
  }
  if (!named) return Status();
  uint32_t at = 1;
  if (r.flags & kNcHasExpected) {
    for (int i = 0; i < 3; ++i) out[at].w[i] = r.expected.w[i];
    ++at;
  }
  for (size_t off = 0; off < r.name.size(); off += kNcNameBytesPerEntry, ++at) {
    std::memcpy(out[at].w, r.name.data() + off,
                std::min<size_t>(kNcNameBytesPerEntry, r.name.size() - off));
  }
  return Status();
}

Result<uint32_t> NcRequestLength(const RequestPayload& head) {
  const uint64_t w = head.w[0];
  const auto [op, flags, name_len, entries] = ParseHead(w);
  if ((w >> 32) != 0) return Bad("the head word's high half is not zero");
  if (*NcOpName(op) == '\0') return Bad("unknown op " + std::to_string(w & 0xff));
  if ((flags & ~AllowedFlags(op)) != 0) {
    return Bad(std::string("a ") + NcOpName(op) + " request with flags " + std::to_string(flags) +
               " it cannot carry");
  }
  if (IsNameOp(op) ? (name_len == 0 || name_len > GISMO_NAME_MAX) : name_len != 0) {
    return Bad(std::string("a ") + NcOpName(op) + " request with a name length of " +
               std::to_string(name_len));
  }
  if (entries != EntriesFor(op, flags, name_len)) {
    return Bad(std::string("a ") + NcOpName(op) + " request that claims " +
               std::to_string(entries) + " entries, not " +
               std::to_string(EntriesFor(op, flags, name_len)));
  }
  return entries;
}

Status DecodeNcRequest(std::span<const RequestPayload> entries, uint64_t record_limit,
                       NcRequest* out) {
  if (entries.empty()) return Bad("no entries");
  auto n = NcRequestLength(entries[0]);
  if (!n.ok()) return n.status();
  if (entries.size() != *n) {
    return Bad("a request of " + std::to_string(*n) + " entries given " +
               std::to_string(entries.size()));
  }
  const RequestPayload& head = entries[0];
  const Head fields = ParseHead(head.w[0]);
  NcRequest r;
  r.op = fields.op;
  r.flags = fields.flags;
  const uint32_t name_len = fields.name_len;
  const std::string what = std::string("a ") + NcOpName(r.op) + " request";
  uint32_t used = 1;  // head words used, after word 0
  if (HasId(r.op)) {
    for (int i = 0; i < 3; ++i) r.id.w[i] = head.w[1 + i];
    if (!IdPadded(r.id)) return Bad(what + " with an id longer than 20 bytes");
    used = 4;
  }
  switch (r.op) {
    case NcOp::kCreate: {
      const uint64_t sizes = head.w[4];
      r.data_size = SizesData(sizes);
      r.metadata_size = SizesMeta(sizes);
      r.create_flags = static_cast<uint32_t>(head.w[5] & 0xffffffffu);
      if (head.w[5] > 0xffffffffu || (r.create_flags & ~kObjectFlagsPublic) != 0) {
        return Bad(what + " with unknown create flags " + std::to_string(head.w[5]));
      }
      used = 6;
      break;
    }
    case NcOp::kSeal:
    case NcOp::kAbort:
    case NcOp::kReleased:
      r.record = head.w[4];
      if (r.record >= record_limit) {
        return Bad(what + " for record " + std::to_string(r.record) + " (the region has " +
                   std::to_string(record_limit) + ")");
      }
      used = 5;
      break;
    case NcOp::kEvict:
      r.bytes = head.w[1];
      used = 2;
      break;
    default:
      break;
  }
  if (!ZeroFrom(head, used)) return Bad(what + " with unused words not zero");
  if (!IsNameOp(r.op)) {
    *out = std::move(r);
    return Status();
  }
  uint32_t at = 1;
  if (r.flags & kNcHasExpected) {
    for (int i = 0; i < 3; ++i) r.expected.w[i] = entries[at].w[i];
    if (!IdPadded(r.expected) || !ZeroFrom(entries[at], 3)) {
      return Bad(what + " whose expected id entry is not one id and zeros");
    }
    ++at;
  }
  r.name.resize(name_len);
  for (uint32_t off = 0; off < name_len; off += kNcNameBytesPerEntry, ++at) {
    const uint32_t take = std::min<uint32_t>(kNcNameBytesPerEntry, name_len - off);
    const auto* bytes = reinterpret_cast<const uint8_t*>(entries[at].w);
    std::memcpy(r.name.data() + off, bytes, take);
    for (uint32_t b = take; b < kNcNameBytesPerEntry; ++b) {
      if (bytes[b] != 0) return Bad(what + " whose name is not padded with zeros");
    }
  }
  if (r.name.find('\0') != std::string::npos) return Bad(what + " whose name has a NUL byte");
  *out = std::move(r);
  return Status();
}

Status NcEntryInvalid(uint64_t n) {
  return Status(GISMO_ERR_PROTOCOL,
                "published entry " + std::to_string(n) +
                    " does not validate (torn, not written by this session, or the ring's "
                    "indices are impossible)");
}

Status NcMalformed(const char* kind, uint64_t n, const Status& why) {
  return Status(GISMO_ERR_PROTOCOL, std::string("the ") + kind + " at entry " + std::to_string(n) +
                                        " is malformed (" + why.message() + ")");
}

RequestPayload EncodeNcResponse(const NcResponse& r) {
  RequestPayload p{};
  p.w[0] = r.request_seq;
  p.w[1] = uint64_t{static_cast<uint8_t>(r.op)} | uint64_t{static_cast<uint32_t>(r.status)} << 8 |
           uint64_t{r.existed ? 1u : 0u} << 40;
  p.w[2] = r.record;
  p.w[3] = r.heap_offset;
  p.w[4] = r.value;
  return p;
}

Status DecodeNcResponse(const RequestPayload& p, uint64_t record_limit, uint64_t heap_size,
                        NcResponse* out) {
  NcResponse r;
  r.request_seq = p.w[0];
  if (r.request_seq == 0) return BadResponse("request seq 0");
  const uint64_t w = p.w[1];
  r.op = static_cast<NcOp>(w & 0xff);
  if (*NcOpName(r.op) == '\0') return BadResponse("unknown op " + std::to_string(w & 0xff));
  if (!KnownStatus((w >> 8) & 0xffffffffu)) {
    return BadResponse("unknown status " + std::to_string((w >> 8) & 0xffffffffu));
  }
  r.status = static_cast<gismo_status_t>((w >> 8) & 0xffffffffu);
  if ((w >> 41) != 0) return BadResponse("the op word's high bits are not zero");
  r.existed = (w >> 40) & 1;
  r.record = p.w[2];
  r.heap_offset = p.w[3];
  r.value = p.w[4];
  const std::string what = std::string("the answer to a ") + NcOpName(r.op) + " request";
  if (!ZeroFrom(p, 5)) return BadResponse(what + " with unused words not zero");
  const bool ok = r.status == GISMO_OK;
  const bool creates = ok && r.op == NcOp::kCreate;
  if (r.existed && !creates) return BadResponse(what + " that says the object existed");
  if (!creates && (r.record != 0 || r.heap_offset != 0)) {
    return BadResponse(what + " with a record or a block");
  }
  if (creates && r.record >= record_limit) {
    return BadResponse(what + " naming record " + std::to_string(r.record) + " (the region has " +
                       std::to_string(record_limit) + ")");
  }
  if (creates && (r.existed ? r.heap_offset != 0 : r.heap_offset >= heap_size)) {
    return BadResponse(what + " with block offset " + std::to_string(r.heap_offset) +
                       " (the heap has " + std::to_string(heap_size) + " bytes)");
  }
  const bool has_value = (ok && (r.op == NcOp::kEvict || r.op == NcOp::kBindName ||
                                 r.op == NcOp::kSwapName || r.op == NcOp::kUnbindName)) ||
                         (r.op == NcOp::kCreate && r.status == GISMO_ERR_LIMIT);
  if (!has_value && r.value != 0) return BadResponse(what + " with a value");
  *out = r;
  return Status();
}

}  // namespace gismo::region
