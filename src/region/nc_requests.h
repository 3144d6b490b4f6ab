// What a client of a non-coherent region asks the owner of the shared
// metadata, and what the owner answers, as the payloads of the slot's request
// and response rings (doc/noncoherent.md, "Request rings"; the layout is in
// doc/region-format.md, "Requests and responses"). This is the one encoding
// of them: the client's requested mutations, the owner's apply loop, gismo-fsck
// and the tests all use these functions.
//
// A request is one entry, or (names) several: the head entry, the expected
// id (if any), then the name, 48 bytes per entry. A producer publishes all
// of a request's entries with one tail (RequestProducer::TryPushAll), so a
// consumer sees a whole request or none of it, whatever instant the producer
// died at.
//
// Everything here is written by another host, possibly broken or hostile:
// a decoder accepts exactly the encodings its encoder makes (one per request;
// every unused word and bit zero) and names what is wrong otherwise. The
// meaning (does the record exist, is the name bound) is the applier's to check.
#ifndef GISMO_REGION_NC_REQUESTS_H_
#define GISMO_REGION_NC_REQUESTS_H_

#include <gismo/gismo.h>

#include <cstdint>
#include <gismo/status.hpp>
#include <span>
#include <string>

#include "region/layout.h"
#include "region/request_ring.h"

namespace gismo::region {

enum class NcOp : uint8_t {
  kCreate = 1,      // a block and an unsealed record for id
  kSeal = 2,        // the creator's object, whose data it has flushed
  kAbort = 3,       // the creator's unsealed object
  kDelete = 4,      // a sealed object (freed at its last reference)
  kTouch = 5,       // an evictable object's CLOCK bit
  kEvict = 6,       // unheld evictable objects, until `bytes` are free
  kBindName = 7,    // name -> id, whatever it was bound to
  kSwapName = 8,    // name -> id if bound to `expected` (or, without, unbound)
  kUnbindName = 9,  // name, if bound (to `expected`, with one)
  kGoodbye = 10,    // the client leaves: recover its slot as a departure
  kReleased = 11,   // the client dropped its last reference on a deleting object
};
inline constexpr uint8_t kNcOpLast = static_cast<uint8_t>(NcOp::kReleased);
// "create" for kCreate, ...; "" for a value that is not an op.
const char* NcOpName(NcOp op);

// Request flags (the head word's second byte).
inline constexpr uint32_t kNcGetIfExists = 1u << 0;  // kCreate: gismo_get_or_create
inline constexpr uint32_t kNcHasExpected = 1u << 1;  // kSwapName, kUnbindName

// Entries a request takes at most: head, expected id, 192 name bytes.
inline constexpr uint32_t kNcNameBytesPerEntry = 8 * kRequestPayloadWords;
inline constexpr uint32_t kNcMaxRequestEntries =
    2 + (GISMO_NAME_MAX + kNcNameBytesPerEntry - 1) / kNcNameBytesPerEntry;
static_assert(kNcMaxRequestEntries <= kMinRequestRing, "a request must fit the smallest ring");

struct NcRequest {
  NcOp op = NcOp::kGoodbye;
  uint32_t flags = 0;          // kNcGetIfExists, kNcHasExpected
  IdWords id{};                // the object; the name's new target; 0 for unbind
  IdWords expected{};          // with kNcHasExpected
  uint32_t create_flags = 0;   // kCreate: GISMO_CREATE_* (kObjectFlagsPublic)
  uint64_t data_size = 0;      // kCreate
  uint64_t metadata_size = 0;  // kCreate
  uint64_t record = 0;         // kSeal, kAbort: the record the create's answer named;
                               // kReleased: the record the reference was on
  uint64_t bytes = 0;          // kEvict
  std::string name;            // names: 1..GISMO_NAME_MAX bytes, no NUL
};

// The ring entries `r` takes; 0 if it cannot be encoded (EncodeNcRequest
// says why).
uint32_t NcRequestEntries(const NcRequest& r);
// Encodes `r` into out[0 .. NcRequestEntries(r)); INVALID_ARGUMENT, naming
// the field, for a request no decoder would accept (a size or a name out of
// range, an unknown flag, an id whose padding is not zero).
Status EncodeNcRequest(const NcRequest& r, std::span<RequestPayload, kNcMaxRequestEntries> out);

// From a request's head entry: how many entries the whole request takes;
// PROTOCOL if the head is malformed.
Result<uint32_t> NcRequestLength(const RequestPayload& head);
// Decodes a whole request (NcRequestLength(entries[0]) entries). A record
// index must be below `record_limit` (the region's records). PROTOCOL with
// the reason for anything its encoder would not have written.
Status DecodeNcRequest(std::span<const RequestPayload> entries, uint64_t record_limit,
                       NcRequest* out);

// The owner's answer to the request that began at ring seq `request_seq`.
struct NcResponse {
  uint64_t request_seq = 0;
  NcOp op = NcOp::kGoodbye;
  gismo_status_t status = GISMO_OK;
  bool existed = false;      // kCreate with kNcGetIfExists: the object exists and is sealed
  uint64_t record = 0;       // kCreate: the object's record
  uint64_t heap_offset = 0;  // kCreate (not existed): its data block, from the heap's start
  uint64_t value = 0;        // kEvict: bytes evicted; names: the name's version;
                             // kCreate refused with LIMIT: the owned-objects
                             // limit it met (0: the index hash was full)
};
RequestPayload EncodeNcResponse(const NcResponse& r);
// PROTOCOL unless `p` is an encoding EncodeNcResponse makes, with a record
// below `record_limit` and a heap offset below `heap_size` where they count.
Status DecodeNcResponse(const RequestPayload& p, uint64_t record_limit, uint64_t heap_size,
                        NcResponse* out);

// Publishes request `r` whole (one tail for all its entries). false: the ring
// has no room now (the owner is behind); an error: `r` cannot be encoded.
template <typename Lines>
Result<bool> PushNcRequest(RequestProducer<Lines>& ring, const NcRequest& r) {
  RequestPayload entries[kNcMaxRequestEntries];
  if (Status s = EncodeNcRequest(r, entries); !s.ok()) return s;
  return ring.TryPushAll(entries, NcRequestEntries(r));
}

// What TakeNcRequest and TakeNcResponse report: entry `n` (published)
// does not validate as what its producer writes; the request or response
// (`kind`) that begins at entry `n` is not what an encoder writes.
Status NcEntryInvalid(uint64_t n);
Status NcMalformed(const char* kind, uint64_t n, const Status& why);

// Takes the next whole request off the ring without committing it
// (RequestConsumer::Take: the applier commits head = ring.taken() with its
// effects; gismo-fsck never commits). false: none is published; an error:
// the ring or the request is corrupt (the client broke the protocol: nothing
// of it is to be applied).
template <typename Lines>
Result<bool> TakeNcRequest(RequestConsumer<Lines>& ring, uint64_t record_limit, NcRequest* out,
                           uint64_t* seq = nullptr) {
  RequestPayload entries[kNcMaxRequestEntries];
  const uint64_t first = ring.taken() + 1;
  switch (ring.Take(&entries[0])) {
    case PopResult::kEmpty:
      return false;
    case PopResult::kCorrupt:
      return NcEntryInvalid(first);
    case PopResult::kRequest:
      break;
  }
  auto n = NcRequestLength(entries[0]);
  if (!n.ok()) return NcMalformed("request", first, n.status());
  for (uint32_t i = 1; i < *n; ++i) {
    switch (ring.Take(&entries[i])) {
      case PopResult::kEmpty:
        return NcMalformed("request", first,
                           Status(GISMO_ERR_PROTOCOL,
                                  "takes " + std::to_string(*n) + " entries, fewer are published"));
      case PopResult::kCorrupt:
        return NcMalformed("request", first, NcEntryInvalid(first + i));
      case PopResult::kRequest:
        break;
    }
  }
  if (Status s = DecodeNcRequest(std::span<const RequestPayload>(entries, *n), record_limit, out);
      !s.ok()) {
    return NcMalformed("request", first, s);
  }
  if (seq != nullptr) *seq = first;
  return true;
}

// The same for the response ring: the next answer, decoded (DecodeNcResponse),
// not committed.
template <typename Lines>
Result<bool> TakeNcResponse(RequestConsumer<Lines>& ring, uint64_t record_limit, uint64_t heap_size,
                            NcResponse* out) {
  RequestPayload p;
  const uint64_t at = ring.taken() + 1;
  switch (ring.Take(&p)) {
    case PopResult::kEmpty:
      return false;
    case PopResult::kCorrupt:
      return NcEntryInvalid(at);
    case PopResult::kRequest:
      break;
  }
  if (Status s = DecodeNcResponse(p, record_limit, heap_size, out); !s.ok()) {
    return NcMalformed("response", at, s);
  }
  return true;
}

// TakeNcRequest, then commits head (a consumer without a Txn of its own).
template <typename Lines>
Result<bool> PopNcRequest(RequestConsumer<Lines>& ring, uint64_t record_limit, NcRequest* out,
                          uint64_t* seq = nullptr) {
  auto got = TakeNcRequest(ring, record_limit, out, seq);
  if (got.ok() && *got) ring.Commit(ring.taken());
  return got;
}

}  // namespace gismo::region

#endif  // GISMO_REGION_NC_REQUESTS_H_
