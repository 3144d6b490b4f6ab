// The requests and responses of the non-coherent mode's rings
// (src/region/nc_requests.h): every op round-trips, a request of several
// entries is published whole whatever instant its producer dies at, and a
// decoder, fed what another host wrote, accepts exactly the encodings the
// encoder makes and names what is wrong with anything else.
#include "region/nc_requests.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "nc_util.h"
#include "region/cache_sim.h"

namespace gismo::region {
namespace {

using gismo::testing::Chaotic;
using gismo::testing::Killed;
using gismo::testing::RunChild;
using gismo::testing::SharedMemory;

constexpr uint64_t kRecords = 1000;
constexpr uint64_t kHeap = 1ull << 30;
constexpr uint64_t kSeal = 0x5e55107;

IdWords Id(uint64_t a, uint64_t b, uint64_t c) { return IdWords{{a, b, c}}; }

std::vector<NcRequest> OneOfEach() {
  std::vector<NcRequest> all;
  NcRequest r;
  r.op = NcOp::kCreate;
  r.id = Id(1, 2, 3);
  r.data_size = kMaxDataSize;
  r.metadata_size = kMaxMetadataSize;
  r.create_flags = kObjectFlagsPublic;
  r.flags = kNcGetIfExists;
  all.push_back(r);
  r = NcRequest{};
  r.op = NcOp::kCreate;
  r.id = Id(~0ull, ~0ull, 0xffffffffu);
  all.push_back(r);
  for (NcOp op : {NcOp::kSeal, NcOp::kAbort, NcOp::kReleased}) {
    r = NcRequest{};
    r.op = op;
    r.id = Id(4, 5, 6);
    r.record = kRecords - 1;
    all.push_back(r);
  }
  for (NcOp op : {NcOp::kDelete, NcOp::kTouch}) {
    r = NcRequest{};
    r.op = op;
    r.id = Id(7, 8, 9);
    all.push_back(r);
  }
  r = NcRequest{};
  r.op = NcOp::kEvict;
  r.bytes = ~0ull;
  all.push_back(r);
  r = NcRequest{};
  r.op = NcOp::kGoodbye;
  all.push_back(r);
  // Names of every length that changes the entry count, with and without
  // an expected id.
  for (size_t len : {size_t{1}, size_t{47}, size_t{48}, size_t{49}, size_t{96}, size_t{97},
                     size_t{GISMO_NAME_MAX}}) {
    std::string name;
    for (size_t i = 0; i < len; ++i) name += static_cast<char>(1 + (i * 37) % 255);
    r = NcRequest{};
    r.op = NcOp::kBindName;
    r.id = Id(10, 11, 12);
    r.name = name;
    all.push_back(r);
    r.op = NcOp::kSwapName;
    all.push_back(r);
    r.flags = kNcHasExpected;
    r.expected = Id(13, 14, 15);
    all.push_back(r);
    r = NcRequest{};
    r.op = NcOp::kUnbindName;
    r.name = name;
    all.push_back(r);
    r.flags = kNcHasExpected;
    r.expected = Id(16, 17, 18);
    all.push_back(r);
  }
  return all;
}

void ExpectSame(const NcRequest& a, const NcRequest& b) {
  EXPECT_EQ(a.op, b.op);
  EXPECT_EQ(a.flags, b.flags);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(a.id.w[i], b.id.w[i]);
    EXPECT_EQ(a.expected.w[i], b.expected.w[i]);
  }
  EXPECT_EQ(a.create_flags, b.create_flags);
  EXPECT_EQ(a.data_size, b.data_size);
  EXPECT_EQ(a.metadata_size, b.metadata_size);
  EXPECT_EQ(a.record, b.record);
  EXPECT_EQ(a.bytes, b.bytes);
  EXPECT_EQ(a.name, b.name);
}

struct Encoded {
  RequestPayload e[kNcMaxRequestEntries] = {};
  uint32_t n = 0;
};
Encoded Encode(const NcRequest& r) {
  Encoded out;
  EXPECT_TRUE(EncodeNcRequest(r, out.e).ok()) << NcOpName(r.op);
  out.n = NcRequestEntries(r);
  return out;
}
Status Decode(const Encoded& x, NcRequest* out) {
  return DecodeNcRequest(std::span<const RequestPayload>(x.e, x.n), kRecords, out);
}

TEST(NcRequestsTest, EveryOpRoundTrips) {
  for (const NcRequest& r : OneOfEach()) {
    SCOPED_TRACE(std::string(NcOpName(r.op)) + " name " + std::to_string(r.name.size()));
    const Encoded x = Encode(r);
    ASSERT_GE(x.n, 1u);
    ASSERT_LE(x.n, kNcMaxRequestEntries);
    auto n = NcRequestLength(x.e[0]);
    ASSERT_TRUE(n.ok()) << n.status().ToString();
    EXPECT_EQ(*n, x.n);
    NcRequest back;
    ASSERT_TRUE(Decode(x, &back).ok());
    ExpectSame(r, back);
  }
}

TEST(NcRequestsTest, EntriesPerRequest) {
  NcRequest r;
  r.op = NcOp::kBindName;
  r.name = std::string(48, 'a');
  EXPECT_EQ(NcRequestEntries(r), 2u);
  r.name += 'b';
  EXPECT_EQ(NcRequestEntries(r), 3u);
  r.op = NcOp::kSwapName;
  r.flags = kNcHasExpected;
  r.name = std::string(GISMO_NAME_MAX, 'n');
  EXPECT_EQ(NcRequestEntries(r), kNcMaxRequestEntries);
  r.op = NcOp::kDelete;
  r.flags = 0;
  r.name.clear();
  EXPECT_EQ(NcRequestEntries(r), 1u);
}

TEST(NcRequestsTest, RequestsNoDecoderWouldTakeAreNotEncoded) {
  RequestPayload out[kNcMaxRequestEntries];
  auto refused = [&](NcRequest r, const std::string& says) {
    const Status s = EncodeNcRequest(r, out);
    EXPECT_EQ(s.code(), GISMO_ERR_INVALID_ARGUMENT) << says;
    EXPECT_NE(s.ToString().find(says), std::string::npos) << s.ToString();
  };
  NcRequest r;
  r.op = static_cast<NcOp>(0);
  refused(r, "op 0");
  r.op = static_cast<NcOp>(kNcOpLast + 1);
  refused(r, "op " + std::to_string(kNcOpLast + 1));
  r = NcRequest{};
  r.op = NcOp::kCreate;
  r.data_size = kMaxDataSize + 1;
  refused(r, "data size");
  r.data_size = 1;
  r.metadata_size = kMaxMetadataSize + 1;
  refused(r, "metadata size");
  r.metadata_size = 0;
  r.create_flags = 0x80;
  refused(r, "create flags");
  r.create_flags = 0;
  r.id = Id(1, 2, 1ull << 32);
  refused(r, "id longer than 20 bytes");
  r.id = Id(1, 2, 3);
  r.flags = kNcHasExpected;
  refused(r, "flags");
  r = NcRequest{};
  r.op = NcOp::kBindName;
  refused(r, "a name of 0 bytes");
  r.name = std::string(GISMO_NAME_MAX + 1, 'x');
  refused(r, "a name of 193 bytes");
  r.name = std::string("a\0b", 3);
  refused(r, "NUL");
  r.name = "ok";
  r.flags = kNcHasExpected;
  refused(r, "flags");
  r = NcRequest{};
  r.op = NcOp::kDelete;
  r.name = "x";
  refused(r, "a name");
  r = NcRequest{};
  r.op = NcOp::kSwapName;
  r.name = "x";
  r.flags = kNcHasExpected;
  r.expected = Id(0, 0, 1ull << 40);
  refused(r, "expected id");
}

// Each broken field of what another host wrote is refused with its reason.
TEST(NcRequestsTest, MalformedRequestsAreNamed) {
  auto expect_bad = [](Encoded x, const std::string& says) {
    NcRequest out;
    Status s;
    auto n = NcRequestLength(x.e[0]);
    s = n.ok() ? Decode(x, &out) : n.status();
    EXPECT_EQ(s.code(), GISMO_ERR_PROTOCOL) << says;
    EXPECT_NE(s.ToString().find(says), std::string::npos) << s.ToString();
  };
  NcRequest create;
  create.op = NcOp::kCreate;
  create.id = Id(1, 2, 3);
  create.data_size = 100;
  const Encoded c = Encode(create);
  Encoded x = c;
  x.e[0].w[0] = (x.e[0].w[0] & ~0xffull) | 0;
  expect_bad(x, "unknown op 0");
  x = c;
  x.e[0].w[0] = (x.e[0].w[0] & ~0xffull) | 200;
  expect_bad(x, "unknown op 200");
  x = c;
  x.e[0].w[0] |= 1ull << 40;
  expect_bad(x, "high half");
  x = c;
  x.e[0].w[0] |= uint64_t{kNcHasExpected} << 8;
  expect_bad(x, "flags");
  x = c;
  x.e[0].w[0] |= uint64_t{5} << 16;
  expect_bad(x, "name length of 5");
  x = c;
  x.e[0].w[0] += uint64_t{1} << 24;
  expect_bad(x, "claims 2 entries, not 1");
  x = c;
  x.e[0].w[3] |= 1ull << 63;
  expect_bad(x, "id longer than 20 bytes");
  x = c;
  x.e[0].w[5] = 0x100;
  expect_bad(x, "unknown create flags");

  NcRequest seal;
  seal.op = NcOp::kSeal;
  seal.id = Id(1, 2, 3);
  seal.record = 5;
  x = Encode(seal);
  x.e[0].w[4] = kRecords;
  expect_bad(x, "for record 1000 (the region has 1000)");
  x = Encode(seal);
  x.e[0].w[5] = 1;
  expect_bad(x, "unused words");

  NcRequest evict;
  evict.op = NcOp::kEvict;
  evict.bytes = 1;
  x = Encode(evict);
  x.e[0].w[2] = 9;
  expect_bad(x, "unused words");

  NcRequest swap;
  swap.op = NcOp::kSwapName;
  swap.flags = kNcHasExpected;
  swap.id = Id(1, 2, 3);
  swap.expected = Id(4, 5, 6);
  swap.name = std::string(50, 'q');  // entries: head, expected, 48 + 2 bytes
  const Encoded s = Encode(swap);
  ASSERT_EQ(s.n, 4u);
  x = s;
  x.e[1].w[4] = 1;
  expect_bad(x, "expected id entry");
  x = s;
  x.e[3].w[0] |= uint64_t{0x55} << 16;  // byte 2 of the last entry: padding
  expect_bad(x, "not padded with zeros");
  x = s;
  x.e[2].w[1] &= ~0xffull;  // a NUL inside the name
  expect_bad(x, "NUL byte");
  x = s;
  x.n = 3;
  expect_bad(x, "a request of 4 entries given 3");
}

// Any six words: the head either fails NcRequestLength, or the request
// fails to decode, or it decodes to a request whose encoding is exactly
// those words (one encoding per request: nothing unchecked passes).
TEST(NcRequestsTest, RandomWordsDecodeOnlyAsTheirOwnEncoding) {
  std::mt19937_64 rng(12345);
  int decoded = 0;
  const std::vector<NcRequest> all = OneOfEach();
  for (int iter = 0; iter < 200000; ++iter) {
    // Valid encodings, mutated, so that decoding goes deep.
    Encoded x = Encode(all[iter % all.size()]);
    const int mutations = 1 + iter % 3;
    for (int m = 0; m < mutations; ++m) {
      const uint32_t entry = rng() % x.n, word = rng() % kRequestPayloadWords;
      switch (rng() % 3) {
        case 0:
          x.e[entry].w[word] ^= 1ull << (rng() % 64);
          break;
        case 1:
          x.e[entry].w[word] = rng();
          break;
        default:
          x.e[entry].w[word] = 0;
      }
    }
    auto n = NcRequestLength(x.e[0]);
    if (!n.ok()) {
      EXPECT_EQ(n.status().code(), GISMO_ERR_PROTOCOL);
      continue;
    }
    x.n = std::min<uint32_t>(*n, kNcMaxRequestEntries);
    NcRequest r;
    const Status s = Decode(x, &r);
    if (!s.ok()) {
      EXPECT_EQ(s.code(), GISMO_ERR_PROTOCOL);
      continue;
    }
    ++decoded;
    const Encoded again = Encode(r);
    ASSERT_EQ(again.n, x.n);
    for (uint32_t e = 0; e < x.n; ++e) {
      for (uint32_t w = 0; w < kRequestPayloadWords; ++w) {
        ASSERT_EQ(again.e[e].w[w], x.e[e].w[w]) << "iteration " << iter;
      }
    }
  }
  EXPECT_GT(decoded, 1000) << "the mutations should leave some requests valid";
}

TEST(NcRequestsTest, ResponsesRoundTripAndMalformedOnesAreNamed) {
  NcResponse created;
  created.request_seq = 7;
  created.op = NcOp::kCreate;
  created.record = kRecords - 1;
  created.heap_offset = kHeap - 64;
  NcResponse got;
  ASSERT_TRUE(DecodeNcResponse(EncodeNcResponse(created), kRecords, kHeap, &got).ok());
  EXPECT_EQ(got.request_seq, 7u);
  EXPECT_EQ(got.record, kRecords - 1);
  EXPECT_EQ(got.heap_offset, kHeap - 64);
  EXPECT_FALSE(got.existed);
  NcResponse existed = created;
  existed.existed = true;
  existed.heap_offset = 0;
  ASSERT_TRUE(DecodeNcResponse(EncodeNcResponse(existed), kRecords, kHeap, &got).ok());
  EXPECT_TRUE(got.existed);
  NcResponse full;
  full.request_seq = 8;
  full.op = NcOp::kCreate;
  full.status = GISMO_ERR_OUT_OF_MEMORY;
  ASSERT_TRUE(DecodeNcResponse(EncodeNcResponse(full), kRecords, kHeap, &got).ok());
  EXPECT_EQ(got.status, GISMO_ERR_OUT_OF_MEMORY);
  NcResponse evicted;
  evicted.request_seq = 9;
  evicted.op = NcOp::kEvict;
  evicted.value = 12345;
  ASSERT_TRUE(DecodeNcResponse(EncodeNcResponse(evicted), kRecords, kHeap, &got).ok());
  EXPECT_EQ(got.value, 12345u);

  auto expect_bad = [&](RequestPayload p, const std::string& says) {
    NcResponse out;
    const Status s = DecodeNcResponse(p, kRecords, kHeap, &out);
    EXPECT_EQ(s.code(), GISMO_ERR_PROTOCOL) << says;
    EXPECT_NE(s.ToString().find(says), std::string::npos) << s.ToString();
  };
  RequestPayload p = EncodeNcResponse(created);
  p.w[0] = 0;
  expect_bad(p, "request seq 0");
  p = EncodeNcResponse(created);
  p.w[1] = (p.w[1] & ~0xffull) | 77;
  expect_bad(p, "unknown op 77");
  p = EncodeNcResponse(created);
  p.w[1] |= uint64_t{999} << 8;
  expect_bad(p, "unknown status");
  p = EncodeNcResponse(created);
  p.w[1] |= 1ull << 50;
  expect_bad(p, "high bits");
  p = EncodeNcResponse(created);
  p.w[2] = kRecords;
  expect_bad(p, "naming record 1000");
  p = EncodeNcResponse(created);
  p.w[3] = kHeap;
  expect_bad(p, "block offset");
  p = EncodeNcResponse(existed);
  p.w[3] = 64;
  expect_bad(p, "block offset");
  p = EncodeNcResponse(full);
  p.w[2] = 1;
  expect_bad(p, "a record or a block");
  p = EncodeNcResponse(full);
  p.w[1] |= 1ull << 40;
  expect_bad(p, "existed");
  p = EncodeNcResponse(evicted);
  p.w[5] = 1;
  expect_bad(p, "unused words");
  NcResponse deleted;
  deleted.request_seq = 3;
  deleted.op = NcOp::kDelete;
  p = EncodeNcResponse(deleted);
  p.w[4] = 1;
  expect_bad(p, "with a value");
}

// Requests through a real ring under the simulator's random early
// write-backs and evictions: each arrives whole, and a request of several
// entries that does not fit waits for room instead of publishing part.
TEST(NcRequestsTest, RequestsCrossTheRingWhole) {
  constexpr uint32_t kCap = 8;
  SharedMemory m(RequestRingBytes(kCap));
  CacheSim ps(m.base(), m.size(), Chaotic(m, 5)), cs(m.base(), m.size(), Chaotic(m, 6));
  RequestProducer<CacheSim> p(ps, m.base(), kCap, kSeal);
  RequestConsumer<CacheSim> c(cs, m.base(), kCap, kSeal);
  ASSERT_TRUE(p.Attach());
  c.Attach();
  const std::vector<NcRequest> all = OneOfEach();
  size_t sent = 0, got = 0;
  uint64_t expect_seq = 1;
  while (got < all.size()) {
    // Fill the ring as far as whole requests go.
    while (sent < all.size()) {
      auto pushed = PushNcRequest(p, all[sent]);
      ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
      if (!*pushed) break;
      ++sent;
    }
    ASSERT_GT(sent, got) << "a request that fits an empty ring was refused";
    NcRequest r;
    uint64_t seq = 0;
    auto popped = PopNcRequest(c, kRecords, &r, &seq);
    ASSERT_TRUE(popped.ok()) << popped.status().ToString();
    ASSERT_TRUE(*popped);
    EXPECT_EQ(seq, expect_seq);
    expect_seq += NcRequestEntries(all[got]);
    ExpectSame(all[got], r);
    ++got;
  }
  NcRequest r;
  auto empty = PopNcRequest(c, kRecords, &r);
  ASSERT_TRUE(empty.ok());
  EXPECT_FALSE(*empty);
}

// Exactly once across the owner's death: a request taken and not committed
// (the owner died before its Txn committed head) is taken again by the
// successor; one committed is not. Until head is committed the producer
// does not reuse the entries.
TEST(NcRequestsTest, ARequestTakenButNotCommittedIsTakenAgain) {
  constexpr uint32_t kCap = 8;
  SharedMemory m(RequestRingBytes(kCap));
  CacheSimOptions o;
  o.seed = 9;
  o.versions = m.versions();
  CacheSim ps(m.base(), m.size(), o);
  RequestProducer<CacheSim> p(ps, m.base(), kCap, kSeal);
  ASSERT_TRUE(p.Attach());
  NcRequest bind;
  bind.op = NcOp::kBindName;
  bind.id = Id(1, 2, 3);
  bind.name = std::string(100, 'b');  // 4 entries
  NcRequest del;
  del.op = NcOp::kDelete;
  del.id = Id(4, 5, 6);
  ASSERT_TRUE(*PushNcRequest(p, bind));
  ASSERT_TRUE(*PushNcRequest(p, del));
  NcRequest r;
  uint64_t seq = 0;
  {
    CacheSim cs(m.base(), m.size(), o);
    RequestConsumer<CacheSim> dies(cs, m.base(), kCap, kSeal);
    dies.Attach();
    ASSERT_TRUE(*TakeNcRequest(dies, kRecords, &r, &seq));
    ExpectSame(bind, r);
    EXPECT_EQ(dies.taken(), 4u);
    EXPECT_EQ(dies.head(), 0u);
    // The ring is full for the producer: taken is not consumed.
    NcRequest more = bind;
    auto pushed = PushNcRequest(p, more);
    ASSERT_TRUE(pushed.ok());
    EXPECT_FALSE(*pushed);
  }  // dies without committing
  CacheSimOptions o2 = o;
  o2.seed = 10;
  CacheSim cs2(m.base(), m.size(), o2);
  RequestConsumer<CacheSim> successor(cs2, m.base(), kCap, kSeal);
  successor.Attach();
  ASSERT_TRUE(*TakeNcRequest(successor, kRecords, &r, &seq));
  ExpectSame(bind, r);
  EXPECT_EQ(seq, 1u);
  successor.Commit(successor.taken());
  ASSERT_TRUE(*PushNcRequest(p, bind)) << "committed entries are free again";
  CacheSim cs3(m.base(), m.size(), o2);
  RequestConsumer<CacheSim> third(cs3, m.base(), kCap, kSeal);
  third.Attach();
  ASSERT_TRUE(*PopNcRequest(third, kRecords, &r, &seq));
  ExpectSame(del, r);
  EXPECT_EQ(seq, 5u);
  ASSERT_TRUE(*PopNcRequest(third, kRecords, &r, &seq));
  ExpectSame(bind, r);
  EXPECT_EQ(seq, 6u);
  EXPECT_FALSE(*PopNcRequest(third, kRecords, &r));
}

// A producer killed at every line operation of a request of six entries:
// memory's tail covers all of it or none; the consumer never sees a part.
TEST(NcRequestsTest, AProducerKilledMidRequestPublishesNoneOfIt) {
  constexpr uint32_t kCap = 8;
  NcRequest big;
  big.op = NcOp::kSwapName;
  big.flags = kNcHasExpected;
  big.id = Id(1, 2, 3);
  big.expected = Id(4, 5, 6);
  big.name = std::string(GISMO_NAME_MAX, 'z');
  ASSERT_EQ(NcRequestEntries(big), kNcMaxRequestEntries);
  bool survived = false;
  uint64_t k = 0, whole = 0, none = 0;
  for (; !survived; ++k) {
    ASSERT_LT(k, 1000u);
    SharedMemory m(RequestRingBytes(kCap));
    CacheSimOptions o;
    o.seed = k;
    o.capacity_lines = 4;
    o.evict_ppm = 100000;
    o.early_writeback_ppm = 300000;
    o.versions = m.versions();
    const int status = RunChild([&] {
      CacheSim ps(m.base(), m.size(), o);
      auto dl = gismo::testing::DyingLines(ps, k);
      RequestProducer<gismo::testing::SteppedLines> p(dl, m.base(), kCap, kSeal);
      if (!p.Attach()) _exit(3);
      auto pushed = PushNcRequest(p, big);
      if (!pushed.ok() || !*pushed) _exit(4);
    });
    survived = !Killed(status);
    if (survived) {
      ASSERT_EQ(status, 0);
    }
    CacheSimOptions co = o;
    co.seed = k + 1000;
    CacheSim cs(m.base(), m.size(), co);
    RequestConsumer<CacheSim> c(cs, m.base(), kCap, kSeal);
    c.Attach();
    NcRequest r;
    auto popped = PopNcRequest(c, kRecords, &r);
    ASSERT_TRUE(popped.ok()) << "k=" << k << ": " << popped.status().ToString();
    if (*popped) {
      ExpectSame(big, r);
      ++whole;
    } else {
      ++none;
    }
    if (survived) {
      EXPECT_TRUE(*popped);
    }
  }
  EXPECT_GT(none, 6u * 8) << "every line operation before the tail's flush was a kill point";
  EXPECT_GE(whole, 1u);
}

}  // namespace
}  // namespace gismo::region
