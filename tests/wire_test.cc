// The manager <-> client protocol: frames and every message round-tripped,
// truncated and oversized frames, addresses, and what a manager (inside the
// test process) does with a peer that breaks the protocol or goes silent.
#include "protocol/wire.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "protocol/frame_auth.h"
#include "protocol/handshake.h"
#include "raw_peer.h"
#include "region/region.h"
#include "test_util.h"
#include "testing/in_process_manager.h"

namespace gismo::protocol {
namespace {

using gismo::testing::InProcessManager;
using gismo::testing::IsOk;

gismo_id_t IdOf(uint8_t first) {
  gismo_id_t id{};
  for (int i = 0; i < GISMO_ID_SIZE; ++i) id.bytes[i] = static_cast<uint8_t>(first + i);
  return id;
}

bool SameId(const gismo_id_t& a, const gismo_id_t& b) {
  return std::memcmp(a.bytes, b.bytes, GISMO_ID_SIZE) == 0;
}

// A connected pair of stream sockets; both ends closed on destruction.
struct SocketPair {
  SocketPair() { EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fd), 0); }
  ~SocketPair() {
    for (int f : fd) {
      if (f >= 0) close(f);
    }
  }
  void CloseWriter() { close(std::exchange(fd[0], -1)); }
  int fd[2] = {-1, -1};  // [0] writes, [1] reads
};

// Sends `frame` through a socket pair and receives it with RecvFrame.
Status RoundTrip(const std::vector<uint8_t>& frame, FrameHeader* h, std::vector<uint8_t>* payload) {
  SocketPair p;
  if (Status s = SendAll(p.fd[0], frame.data(), frame.size()); !s.ok()) return s;
  return RecvFrame(p.fd[1], h, payload);
}

std::vector<uint8_t> Payload(const std::vector<uint8_t>& frame) {
  return {frame.begin() + kHeaderSize, frame.end()};
}

TEST(WireTest, HeaderIsLittleEndianAndRoundTrips) {
  FrameHeader h;
  h.length = 0x01020304;
  h.type = MsgType::kSubscribeAck;
  h.flags = 0xa0b0;
  h.request_id = 0x1112131415161718ull;
  uint8_t bytes[kHeaderSize];
  EncodeHeader(h, bytes);
  const uint8_t want[kHeaderSize] = {0x04, 0x03, 0x02, 0x01, 14,   0,    0xb0, 0xa0,
                                     0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11};
  EXPECT_EQ(std::memcmp(bytes, want, kHeaderSize), 0);
  FrameHeader back = DecodeHeader(bytes);
  EXPECT_EQ(back.length, h.length);
  EXPECT_EQ(back.type, h.type);
  EXPECT_EQ(back.flags, h.flags);
  EXPECT_EQ(back.request_id, h.request_id);
}

TEST(WireTest, HelloRoundTrips) {
  Hello m;
  m.node_id = 7;
  m.pid = 123456789012ull;
  m.host = "host-a";
  m.name = std::string(300, 'n');
  m.identity[0] = 11;
  m.identity[1] = 12;
  m.identity[2] = 13;
  m.identity[3] = 14;
  m.role = Role::kReattach;
  m.slot = 9;
  m.session = 10;
  m.client_id = 77;
  m.uuid[0] = 0x0123456789abcdefull;
  m.uuid[1] = 5;
  FrameHeader h;
  std::vector<uint8_t> payload;
  ASSERT_TRUE(IsOk(RoundTrip(EncodeHello(m), &h, &payload)));
  EXPECT_EQ(h.type, MsgType::kHello);
  EXPECT_EQ(h.request_id, 0u);
  EXPECT_EQ(h.length, payload.size());
  Reader r(payload);
  Hello back;
  ASSERT_TRUE(DecodeHello(r, &back));
  EXPECT_EQ(r.remaining(), 0u);
  EXPECT_EQ(back.protocol_version, kProtocolVersion);
  EXPECT_EQ(back.node_id, 7u);
  EXPECT_EQ(back.pid, m.pid);
  EXPECT_EQ(back.host, m.host);
  EXPECT_EQ(back.name, m.name);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(back.identity[i], m.identity[i]);
  EXPECT_EQ(back.role, Role::kReattach);
  EXPECT_EQ(back.slot, m.slot);
  EXPECT_EQ(back.session, m.session);
  EXPECT_EQ(back.client_id, m.client_id);
  EXPECT_EQ(back.uuid[0], m.uuid[0]);
  EXPECT_EQ(back.uuid[1], m.uuid[1]);
}

TEST(WireTest, HelloOfAnUnknownRoleIsRejected) {
  Hello m;
  m.role = static_cast<Role>(static_cast<uint32_t>(Role::kNodeAgent) + 1);
  const std::vector<uint8_t> frame = EncodeHello(m);
  Reader r(frame.data() + kHeaderSize, frame.size() - kHeaderSize);
  Hello back;
  EXPECT_FALSE(DecodeHello(r, &back));
}

TEST(WireTest, FenceMessagesRoundTrip) {
  for (auto target :
       {FenceOrder::Target::kClient, FenceOrder::Target::kSlot, FenceOrder::Target::kNode}) {
    FenceOrder order;
    order.target = target;
    order.value = 0xfeedull;
    FrameHeader h;
    std::vector<uint8_t> payload;
    ASSERT_TRUE(IsOk(RoundTrip(EncodeFenceOrder(21, order), &h, &payload)));
    EXPECT_EQ(h.type, MsgType::kFence);
    EXPECT_EQ(h.request_id, 21u);
    Reader r(payload);
    FenceOrder back;
    ASSERT_TRUE(DecodeFenceOrder(r, &back));
    EXPECT_EQ(back.target, target);
    EXPECT_EQ(back.value, order.value);
  }
  for (uint32_t bad_target : {0u, 4u}) {
    Writer w;
    w.U32(bad_target);
    w.U64(1);
    Reader r(w.payload());
    FenceOrder back;
    EXPECT_FALSE(DecodeFenceOrder(r, &back)) << "target " << bad_target;
  }

  FenceProcessOrder order;
  order.slot = 3;
  order.session = 4;
  for (int i = 0; i < 4; ++i) order.identity[i] = 100 + i;
  FrameHeader h;
  std::vector<uint8_t> payload;
  ASSERT_TRUE(IsOk(RoundTrip(EncodeFenceProcessOrder(22, order), &h, &payload)));
  EXPECT_EQ(h.type, MsgType::kFenceProcess);
  EXPECT_EQ(h.request_id, 22u);
  Reader order_reader(payload);
  FenceProcessOrder order_back;
  ASSERT_TRUE(DecodeFenceProcessOrder(order_reader, &order_back));
  EXPECT_EQ(order_back.slot, 3u);
  EXPECT_EQ(order_back.session, 4u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(order_back.identity[i], 100u + i);

  for (const Status& status : {Status(), Status(GISMO_ERR_BUSY, "still running")}) {
    FenceProcessResult result;
    result.slot = 3;
    result.session = 4;
    result.status = status;
    result.killed = status.ok();
    ASSERT_TRUE(IsOk(RoundTrip(EncodeFenceProcessResult(23, result), &h, &payload)));
    EXPECT_EQ(h.type, MsgType::kFenceResult);
    EXPECT_EQ(h.request_id, 23u);
    Reader result_reader(payload);
    FenceProcessResult back;
    ASSERT_TRUE(DecodeFenceProcessResult(result_reader, &back));
    EXPECT_EQ(back.slot, 3u);
    EXPECT_EQ(back.session, 4u);
    EXPECT_EQ(back.status.code(), status.code());
    EXPECT_EQ(back.status.message(), status.message());
    EXPECT_EQ(back.killed, status.ok());
  }
}

TEST(WireTest, WelcomeRoundTrips) {
  Welcome m;
  m.slot = 5;
  m.session = 77;
  m.client_id = 1234;
  m.uuid[0] = 0xdeadbeefcafef00dull;
  m.uuid[1] = 42;
  m.region_size = 256ull << 20;
  m.lease_ms = 10000;
  m.node_id = 3;
  m.manager_epoch = 9;
  m.region_path = "/dev/shm/gismo";
  FrameHeader h;
  std::vector<uint8_t> payload;
  ASSERT_TRUE(IsOk(RoundTrip(EncodeWelcome(m), &h, &payload)));
  EXPECT_EQ(h.type, MsgType::kWelcome);
  Reader r(payload);
  Welcome back;
  ASSERT_TRUE(DecodeWelcome(r, &back));
  EXPECT_EQ(r.remaining(), 0u);
  EXPECT_EQ(back.protocol_version, kProtocolVersion);
  EXPECT_EQ(back.slot, m.slot);
  EXPECT_EQ(back.session, m.session);
  EXPECT_EQ(back.client_id, m.client_id);
  EXPECT_EQ(back.uuid[0], m.uuid[0]);
  EXPECT_EQ(back.uuid[1], m.uuid[1]);
  EXPECT_EQ(back.region_size, m.region_size);
  EXPECT_EQ(back.lease_ms, m.lease_ms);
  EXPECT_EQ(back.node_id, m.node_id);
  EXPECT_EQ(back.manager_epoch, m.manager_epoch);
  EXPECT_EQ(back.region_path, m.region_path);
}

TEST(WireTest, AdmissionMessagesRoundTrip) {
  Challenge c;
  c.nonce = RandomNonce();
  c.key_required = true;
  FrameHeader h;
  std::vector<uint8_t> payload;
  ASSERT_TRUE(IsOk(RoundTrip(EncodeChallenge(c), &h, &payload)));
  EXPECT_EQ(h.type, MsgType::kChallenge);
  {
    Reader r(payload);
    Challenge back;
    ASSERT_TRUE(DecodeChallenge(r, &back));
    EXPECT_EQ(r.remaining(), 0u);
    EXPECT_EQ(back.protocol_version, kProtocolVersion);
    EXPECT_EQ(back.nonce, c.nonce);
    EXPECT_TRUE(back.key_required);
  }
  Access a;
  a.uuid[0] = 1;
  a.uuid[1] = 2;
  a.region_size = 3;
  a.region_path = "/dev/shm/x";
  a.has_mac = true;
  a.mac[5] = 9;
  ASSERT_TRUE(IsOk(RoundTrip(EncodeAccess(a), &h, &payload)));
  EXPECT_EQ(h.type, MsgType::kAccess);
  {
    Reader r(payload);
    Access back;
    ASSERT_TRUE(DecodeAccess(r, &back));
    EXPECT_EQ(r.remaining(), 0u);
    EXPECT_EQ(back.uuid[0], 1u);
    EXPECT_EQ(back.uuid[1], 2u);
    EXPECT_EQ(back.region_size, 3u);
    EXPECT_EQ(back.region_path, a.region_path);
    EXPECT_TRUE(back.has_mac);
    EXPECT_EQ(back.mac, a.mac);
  }
  Mac proof{};
  proof[0] = 1;
  ASSERT_TRUE(IsOk(RoundTrip(EncodeProof(proof), &h, &payload)));
  EXPECT_EQ(h.type, MsgType::kProof);
  {
    Reader r(payload);
    Mac back{};
    ASSERT_TRUE(DecodeProof(r, &back));
    EXPECT_EQ(back, proof);
  }
  // A hello's nonce and MAC travel too.
  Hello hello;
  hello.client_nonce = RandomNonce();
  hello.has_mac = true;
  hello.mac[31] = 7;
  ASSERT_TRUE(IsOk(RoundTrip(EncodeHello(hello), &h, &payload)));
  {
    Reader r(payload);
    Hello back;
    ASSERT_TRUE(DecodeHello(r, &back));
    EXPECT_EQ(back.client_nonce, hello.client_nonce);
    EXPECT_TRUE(back.has_mac);
    EXPECT_EQ(back.mac, hello.mac);
  }
}

TEST(WireTest, ErrorRoundTrips) {
  FrameHeader h;
  std::vector<uint8_t> payload;
  ASSERT_TRUE(IsOk(RoundTrip(EncodeError(99, Status(GISMO_ERR_LIMIT, "too many")), &h, &payload)));
  EXPECT_EQ(h.type, MsgType::kError);
  EXPECT_EQ(h.request_id, 99u);
  Reader r(payload);
  Status back = DecodeError(r);
  EXPECT_EQ(back.code(), GISMO_ERR_LIMIT);
  EXPECT_EQ(back.message(), "too many");
  // An "error" that says OK is itself malformed.
  Writer w;
  w.U32(GISMO_OK);
  w.Str("fine");
  Reader ok_reader(w.payload());
  EXPECT_EQ(DecodeError(ok_reader).code(), GISMO_ERR_PROTOCOL);
}

// A peer cannot make a call return a value outside gismo_status_t: unknown
// codes read from the wire become GISMO_ERR_PROTOCOL.
TEST(WireTest, UnknownStatusCodesFromTheWireAreProtocolErrors) {
  for (uint32_t value : {21u, 777u, 0x7fffffffu, 0xdeadbeefu, 0xffffffffu}) {
    EXPECT_EQ(StatusCodeFromWire(value), GISMO_ERR_PROTOCOL) << value;
    Writer w;
    w.U32(value);
    w.Str("made up");
    Reader r(w.payload());
    Status s = DecodeError(r);
    EXPECT_EQ(s.code(), GISMO_ERR_PROTOCOL) << value;
    EXPECT_NE(s.message().find("unknown status code"), std::string::npos) << s.ToString();
  }
  for (const StatusCodeInfo& info : kStatusCodes) {
    EXPECT_EQ(StatusCodeFromWire(static_cast<uint32_t>(info.code)), info.code) << info.name;
  }
  FenceProcessResult res;
  Writer w;
  w.U32(1);
  w.U64(2);
  w.U32(4242);
  w.Str("odd");
  w.U8(1);
  Reader r(w.payload());
  ASSERT_TRUE(DecodeFenceProcessResult(r, &res));
  EXPECT_EQ(res.status.code(), GISMO_ERR_PROTOCOL);
}

// A "manager" on a Unix socket that speaks as its test says; at most four
// connections.
class FakeManager {
 public:
  // `serve` talks to each accepted connection (the client may try more than
  // once); the connection is closed when the client hangs up.
  explicit FakeManager(std::function<void(int fd)> serve) {
    EXPECT_NE(mkdtemp(dir_), nullptr);
    path_ = std::string(dir_) + "/fake.sock";
    lfd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::strncpy(sa.sun_path, path_.c_str(), sizeof sa.sun_path - 1);
    EXPECT_EQ(bind(lfd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
    EXPECT_EQ(listen(lfd_, 4), 0);
    thread_ = std::thread([this, serve] {
      for (int n = 0; n < 4; ++n) {
        pollfd p{lfd_, POLLIN, 0};
        if (poll(&p, 1, 20000) != 1) return;
        int fd = accept4(lfd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) return;
        serve(fd);
        // Until the client hangs up (it may say goodbye first).
        FrameHeader h;
        std::vector<uint8_t> payload;
        pollfd q{fd, POLLIN, 0};
        while (poll(&q, 1, 5000) == 1 && RecvFrame(fd, &h, &payload).ok()) {
        }
        close(fd);
      }
    });
  }
  ~FakeManager() {
    shutdown(lfd_, SHUT_RDWR);
    close(lfd_);
    thread_.join();
    unlink(path_.c_str());
    rmdir(dir_);
  }
  std::string address() const { return "unix:" + path_; }

  static void Send(int fd, const std::vector<uint8_t>& frame) {
    (void)SendAll(fd, frame.data(), frame.size());
  }
  // Reads one frame; false if the client hung up or sent garbage.
  static bool Receive(int fd, MsgType want) {
    FrameHeader h;
    std::vector<uint8_t> payload;
    pollfd q{fd, POLLIN, 0};
    return poll(&q, 1, 10000) == 1 && RecvFrame(fd, &h, &payload).ok() && h.type == want;
  }

 private:
  char dir_[32] = "/tmp/gismo-wire-XXXXXX";
  std::string path_;
  int lfd_ = -1;
  std::thread thread_;
};

// A "manager" that refuses with a status code no library knows: the
// client reports a protocol error, not a code outside the enum.
TEST(WireTest, ConnectMapsAnUnknownRefusalToProtocol) {
  FakeManager fake([](int fd) {
    FakeManager::Send(fd, EncodeChallenge(Challenge{}));
    if (!FakeManager::Receive(fd, MsgType::kHello)) return;
    Writer w;
    w.U32(31337);
    w.Str("go away");
    FakeManager::Send(fd, w.Frame(MsgType::kError, 0));
  });
  gismo_client_t* c = nullptr;
  gismo_status_t st = gismo_connect(fake.address().c_str(), &c);
  EXPECT_EQ(st, GISMO_ERR_PROTOCOL) << gismo_last_error();
  if (st == GISMO_OK) gismo_disconnect(c);
}

// A "manager" whose welcome names a client slot the region does not have:
// a clear error, not an access past the client table.
TEST(WireTest, ConnectRefusesASlotOutsideTheRegion) {
  const std::string region_path = "/dev/shm/" + gismo::testing::UniqueName("fake-welcome");
  region::FormatOptions o;
  o.size = 16ull << 20;
  auto r = region::Region::Format(region_path, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  Access access;
  access.uuid[0] = (*r)->sb().uuid[0];
  access.uuid[1] = (*r)->sb().uuid[1];
  access.region_size = (*r)->sb().region_size;
  access.region_path = region_path;
  Welcome w;
  w.slot = 1u << 30;
  w.session = 1;
  w.uuid[0] = access.uuid[0];
  w.uuid[1] = access.uuid[1];
  w.region_size = access.region_size;
  w.region_path = region_path;
  FakeManager fake([&](int fd) {
    FakeManager::Send(fd, EncodeChallenge(Challenge{}));
    if (!FakeManager::Receive(fd, MsgType::kHello)) return;
    FakeManager::Send(fd, EncodeAccess(access));
    if (!FakeManager::Receive(fd, MsgType::kProof)) return;
    FakeManager::Send(fd, EncodeWelcome(w));
  });
  gismo_client_t* c = nullptr;
  gismo_status_t st = gismo_connect(fake.address().c_str(), &c);
  EXPECT_EQ(st, GISMO_ERR_PROTOCOL) << gismo_last_error();
  EXPECT_NE(std::string(gismo_last_error()).find("slot"), std::string::npos) << gismo_last_error();
  if (st == GISMO_OK) gismo_disconnect(c);
  r->reset();
  unlink(region_path.c_str());
}

// The messages without an encoder of their own, each as its sender writes
// it: type, request id, payload, and a check of the payload received.
struct PlainMessage {
  MsgType type;
  uint64_t request_id;
  std::function<void(Writer&)> write;
  std::function<void(Reader&)> check;
};

std::vector<PlainMessage> PlainMessages() {
  auto none = [](Writer&) {};
  auto empty = [](Reader& r) { EXPECT_EQ(r.remaining(), 0u); };
  auto write_id = [](Writer& w) { w.Id(IdOf(40)); };
  auto check_id = [](Reader& r) {
    EXPECT_TRUE(SameId(r.Id(), IdOf(40)));
    EXPECT_TRUE(r.ok());
    EXPECT_EQ(r.remaining(), 0u);
  };
  return {
      // A wait: the ids waited for; the request id is the wait id.
      {MsgType::kWait, 17,
       [](Writer& w) {
         w.U32(3);
         for (uint8_t i = 0; i < 3; ++i) w.Id(IdOf(10 * i));
       },
       [](Reader& r) {
         ASSERT_EQ(r.U32(), 3u);
         for (uint8_t i = 0; i < 3; ++i) EXPECT_TRUE(SameId(r.Id(), IdOf(10 * i)));
         EXPECT_TRUE(r.ok());
         EXPECT_EQ(r.remaining(), 0u);
       }},
      {MsgType::kWaitAck, 17, none, empty},
      {MsgType::kCancelWait, 17, none, empty},
      {MsgType::kWake, 17, none, empty},
      {MsgType::kSealed, 0, write_id, check_id},
      {MsgType::kHeartbeat, 0, none, empty},
      {MsgType::kGoodbye, 0, none, empty},
      {MsgType::kBye, 0, none, empty},
      {MsgType::kDeleted, 0, write_id, check_id},
      {MsgType::kSubscribe, 5, none, empty},
      {MsgType::kSubscribeAck, 5, none, empty},
      {MsgType::kNotify, 0, none, empty},
      // The manager's answer to a fence order: status code and message.
      {MsgType::kFenceReply, 21,
       [](Writer& w) {
         w.U32(GISMO_ERR_INVALID_ARGUMENT);
         w.Str("no such client");
       },
       [](Reader& r) {
         EXPECT_EQ(r.U32(), static_cast<uint32_t>(GISMO_ERR_INVALID_ARGUMENT));
         EXPECT_EQ(r.Str(), "no such client");
         EXPECT_TRUE(r.ok());
         EXPECT_EQ(r.remaining(), 0u);
       }},
  };
}

TEST(WireTest, EveryOtherMessageRoundTrips) {
  for (const PlainMessage& m : PlainMessages()) {
    SCOPED_TRACE("message type " + std::to_string(static_cast<unsigned>(m.type)));
    Writer w;
    m.write(w);
    FrameHeader h;
    std::vector<uint8_t> payload;
    ASSERT_TRUE(IsOk(RoundTrip(w.Frame(m.type, m.request_id), &h, &payload)));
    EXPECT_EQ(h.type, m.type);
    EXPECT_EQ(h.request_id, m.request_id);
    EXPECT_EQ(h.flags, 0u);
    EXPECT_EQ(h.length, payload.size());
    Reader r(payload);
    m.check(r);
  }
}

TEST(WireTest, EveryMessageTypeIsCovered) {
  // Messages with encoders of their own are round-tripped by the tests
  // above; the rest are plain.
  constexpr int kLast = static_cast<int>(MsgType::kProof);
  std::vector<bool> seen(kLast + 1, false);
  for (MsgType t : {MsgType::kHello, MsgType::kWelcome, MsgType::kError, MsgType::kFence,
                    MsgType::kFenceProcess, MsgType::kFenceResult, MsgType::kChallenge,
                    MsgType::kAccess, MsgType::kProof}) {
    seen[static_cast<int>(t)] = true;
  }
  for (const auto& m : PlainMessages()) seen[static_cast<int>(m.type)] = true;
  for (int t = static_cast<int>(MsgType::kHello); t <= kLast; ++t) {
    EXPECT_TRUE(seen[t]) << "message type " << t << " is not round-tripped";
  }
}

// Every strict prefix of a message's payload fails to decode, and reads past
// the end give zeros and empty strings.
TEST(WireTest, TruncatedPayloadsAreRejected) {
  Hello hello;
  hello.host = "h";
  hello.name = "client";
  const std::vector<uint8_t> hello_payload = Payload(EncodeHello(hello));
  for (size_t n = 0; n < hello_payload.size(); ++n) {
    Reader r(hello_payload.data(), n);
    Hello back;
    EXPECT_FALSE(DecodeHello(r, &back)) << n << " of " << hello_payload.size() << " bytes";
  }
  Welcome welcome;
  welcome.region_path = "/dev/shm/x";
  const std::vector<uint8_t> welcome_payload = Payload(EncodeWelcome(welcome));
  for (size_t n = 0; n < welcome_payload.size(); ++n) {
    Reader r(welcome_payload.data(), n);
    Welcome back;
    EXPECT_FALSE(DecodeWelcome(r, &back)) << n << " of " << welcome_payload.size() << " bytes";
  }
  const std::vector<uint8_t> error_payload =
      Payload(EncodeError(1, Status(GISMO_ERR_IO, "disk on fire")));
  for (size_t n = 0; n < error_payload.size(); ++n) {
    Reader r(error_payload.data(), n);
    EXPECT_EQ(DecodeError(r).code(), GISMO_ERR_PROTOCOL) << n << " bytes";
  }
  // A string whose length runs past the end.
  Writer w;
  w.U32(1000);
  w.Raw("abc", 3);
  Reader r(w.payload());
  EXPECT_EQ(r.Str(), "");
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.U64(), 0u);  // and everything after it
  gismo_id_t zero{};
  EXPECT_TRUE(SameId(r.Id(), zero));
}

TEST(WireTest, TruncatedFramesEndInAConnectionError) {
  const std::vector<uint8_t> frame = EncodeHello(Hello{});
  for (size_t cut : {size_t{0}, size_t{7}, kHeaderSize, frame.size() - 1}) {
    SCOPED_TRACE("frame cut after " + std::to_string(cut) + " bytes");
    SocketPair p;
    ASSERT_TRUE(IsOk(SendAll(p.fd[0], frame.data(), cut)));
    p.CloseWriter();
    FrameHeader h;
    std::vector<uint8_t> payload;
    EXPECT_EQ(RecvFrame(p.fd[1], &h, &payload).code(), GISMO_ERR_CONNECTION);
  }
}

// A peer that stops in the middle of a frame (its writer kept open) ends a
// bounded receive with a timeout instead of hanging it; the socket's own
// receive timeout is as it was after.
TEST(WireTest, AFrameCutShortTimesOutWithinTheBound) {
  const std::vector<uint8_t> frame = EncodeHello(Hello{});
  for (size_t cut : {size_t{7}, kHeaderSize, frame.size() - 1}) {
    SCOPED_TRACE("frame stopped after " + std::to_string(cut) + " bytes");
    SocketPair p;
    ASSERT_TRUE(IsOk(SendAll(p.fd[0], frame.data(), cut)));
    FrameHeader h;
    std::vector<uint8_t> payload;
    Status s = RecvFrameWithin(p.fd[1], 50, &h, &payload);
    EXPECT_EQ(s.code(), GISMO_ERR_TIMEOUT) << s.ToString();
    timeval tv{1, 1};
    socklen_t len = sizeof tv;
    ASSERT_EQ(getsockopt(p.fd[1], SOL_SOCKET, SO_RCVTIMEO, &tv, &len), 0);
    EXPECT_EQ(tv.tv_sec, 0);
    EXPECT_EQ(tv.tv_usec, 0);
  }
}

// A peer that drips a frame, each byte well within the bound, still ends a
// bounded receive at the bound: it is one deadline for the whole frame, not
// one per receive (which this frame, a byte per 100 ms, would stretch to
// seconds).
TEST(WireTest, AFrameDrippedByteByByteTimesOutWithinTheBound) {
  const std::vector<uint8_t> frame = EncodeHello(Hello{});
  SocketPair p;
  std::atomic<bool> done{false};
  std::thread dripper([&] {
    for (size_t i = 0; i < frame.size() && !done.load(std::memory_order_relaxed); ++i) {
      if (send(p.fd[0], &frame[i], 1, MSG_NOSIGNAL) != 1) return;
      pollfd q{p.fd[0], POLLIN, 0};
      (void)poll(&q, 1, 100);  // the pause; ends early if the reader closes
    }
  });
  FrameHeader h;
  std::vector<uint8_t> payload;
  Status s = RecvFrameWithin(p.fd[1], 300, &h, &payload);
  done.store(true, std::memory_order_relaxed);
  dripper.join();
  EXPECT_EQ(s.code(), GISMO_ERR_TIMEOUT) << s.ToString();
}

// A peer that stops reading: a bounded send fills the socket's buffer and
// then ends with a timeout instead of blocking; one with room sends at once.
TEST(WireTest, ASendToAPeerThatStopsReadingTimesOut) {
  SocketPair p;
  const std::vector<uint8_t> frame = Writer().Frame(MsgType::kHeartbeat, 0);
  ASSERT_TRUE(IsOk(SendAllUntil(p.fd[0], frame.data(), frame.size(), DeadlineAfterMs(100))));
  std::vector<uint8_t> big(1 << 16, 0x5a);
  Status s;
  for (int i = 0; i < 1024 && s.ok(); ++i) {
    s = SendAllUntil(p.fd[0], big.data(), big.size(), DeadlineAfterMs(100));
  }
  EXPECT_EQ(s.code(), GISMO_ERR_TIMEOUT) << s.ToString();
}

TEST(WireTest, OversizedFramesAreRejectedBeforeTheirPayload) {
  for (uint32_t length : {kMaxPayload + 1, uint32_t{0xffffffff}}) {
    SCOPED_TRACE("length " + std::to_string(length));
    FrameHeader h;
    h.length = length;
    h.type = MsgType::kWelcome;
    uint8_t bytes[kHeaderSize];
    EncodeHeader(h, bytes);
    SocketPair p;
    ASSERT_TRUE(IsOk(SendAll(p.fd[0], bytes, kHeaderSize)));
    FrameHeader got;
    std::vector<uint8_t> payload;
    Status s = RecvFrame(p.fd[1], &got, &payload);
    EXPECT_EQ(s.code(), GISMO_ERR_PROTOCOL);
    EXPECT_TRUE(payload.empty());
  }
  // The largest frame allowed is read whole.
  Writer w;
  std::vector<uint8_t> big(kMaxPayload, 0x5a);
  w.Raw(big.data(), big.size());
  std::vector<uint8_t> frame = w.Frame(MsgType::kNotify, 3);
  SocketPair p;
  std::thread writer([&] { EXPECT_TRUE(IsOk(SendAll(p.fd[0], frame.data(), frame.size()))); });
  FrameHeader got;
  std::vector<uint8_t> payload;
  EXPECT_TRUE(IsOk(RecvFrame(p.fd[1], &got, &payload)));
  writer.join();
  EXPECT_EQ(payload, big);
}

// A burst of connections fills a Unix socket's listen queue and connect()
// fails with EAGAIN; the client tries again until the manager has accepted
// enough, instead of failing.
TEST(WireTest, UnixConnectWaitsOutAFullListenQueue) {
  const std::string path = "/tmp/" + testing::UniqueName("backlog") + ".sock";
  const int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(listener, 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::strncpy(sa.sun_path, path.c_str(), sizeof(sa.sun_path) - 1);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  ASSERT_EQ(listen(listener, 0), 0);
  // Fill the queue: non-blocking connects until one is refused with EAGAIN.
  std::vector<int> queued;
  for (int i = 0; i < 64; ++i) {
    const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
      ASSERT_EQ(errno, EAGAIN) << std::strerror(errno);
      close(fd);
      break;
    }
    queued.push_back(fd);
  }
  ASSERT_FALSE(queued.empty());
  auto address = protocol::ParseAddress("unix:" + path);
  ASSERT_TRUE(address.ok());
  const uint64_t retries_before = protocol::UnixConnectRetries();
  std::atomic<bool> done{false};
  Result<int> connected = Status(GISMO_ERR_INTERNAL, "not run");
  std::thread client([&] {
    connected = protocol::ConnectTo(*address, 30000);
    done.store(true, std::memory_order_release);
  });
  // Until the client has found the queue full at least once (or gave up),
  // nobody accepts; then everything queued is accepted.
  while (protocol::UnixConnectRetries() == retries_before &&
         !done.load(std::memory_order_acquire)) {
    std::this_thread::yield();
  }
  EXPECT_FALSE(done.load(std::memory_order_acquire)) << "the client gave up at the first EAGAIN";
  std::vector<int> accepted;
  while (!done.load(std::memory_order_acquire)) {
    pollfd p{listener, POLLIN, 0};
    if (poll(&p, 1, 100) == 1) {
      const int fd = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd >= 0) accepted.push_back(fd);
    }
  }
  client.join();
  ASSERT_TRUE(connected.ok()) << connected.status().ToString();
  EXPECT_GT(protocol::UnixConnectRetries(), retries_before);
  close(*connected);
  for (int fd : queued) close(fd);
  for (int fd : accepted) close(fd);
  close(listener);
  unlink(path.c_str());
}

// A connect to a host that drops its SYNs (here: a listener whose queue is
// full) waits for its whole timeout, unless it is cancelled: the socket it
// published is shut down, and the connect in progress ends at once. (A
// client's Disconnect during a re-attach to a black-holed manager waited
// out that timeout, 5 s per address.)
TEST(WireTest, AConnectInProgressEndsWhenItsSocketIsShutDown) {
  const int hole = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(hole, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(hole, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  ASSERT_EQ(listen(hole, 0), 0);
  socklen_t len = sizeof sa;
  ASSERT_EQ(getsockname(hole, reinterpret_cast<sockaddr*>(&sa), &len), 0);
  // One connection fills a backlog of 0: the kernel drops the SYNs after it.
  const int filler = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_EQ(connect(filler, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  pollfd queued{hole, POLLIN, 0};  // it is in the accept queue: the queue is full
  ASSERT_EQ(poll(&queued, 1, 10000), 1);
  auto address = protocol::ParseAddress("tcp:127.0.0.1:" + std::to_string(ntohs(sa.sin_port)));
  ASSERT_TRUE(address.ok());

  std::atomic<int> published{-1};
  protocol::ConnectCancel cancel;
  cancel.publish = [&](int fd) {
    if (fd >= 0) published.store(fd, std::memory_order_release);
    return true;
  };
  Result<int> got = Status(GISMO_ERR_INTERNAL, "not run");
  // A minute: a connect the shutdown does not end fails this test with
  // TIMEOUT (below) rather than hanging it.
  std::thread connecting([&] { got = protocol::ConnectTo(*address, 60000, &cancel); });
  // Its SYN is out, and dropped.
  int fd = -1;
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (;;) {
    if (std::chrono::steady_clock::now() > give_up) {
      ADD_FAILURE() << "the connect never waited in SYN_SENT";
      break;
    }
    fd = published.load(std::memory_order_acquire);
    tcp_info info{};
    socklen_t n = sizeof info;
    if (fd >= 0 && getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &n) == 0 &&
        info.tcpi_state == TCP_SYN_SENT) {
      break;
    }
    std::this_thread::yield();
  }
  if (fd >= 0) {
    EXPECT_EQ(shutdown(fd, SHUT_RDWR), 0);
  }
  connecting.join();
  EXPECT_EQ(got.status().code(), GISMO_ERR_CONNECTION) << got.status().ToString();

  // Cancelled before it began: no socket is made.
  published.store(-1);
  cancel.cancelled = [] { return true; };
  got = protocol::ConnectTo(*address, 60000, &cancel);
  EXPECT_EQ(got.status().code(), GISMO_ERR_CONNECTION);
  EXPECT_NE(got.status().message().find("cancelled"), std::string::npos) << got.status().ToString();
  EXPECT_EQ(published.load(), -1);
  close(filler);
  close(hole);
}

TEST(WireTest, ParseAddressAcceptsUnixAndTcp) {
  auto unix_address = ParseAddress("unix:/tmp/gismo.sock");
  ASSERT_TRUE(unix_address.ok());
  EXPECT_EQ(unix_address->kind, Address::Kind::kUnix);
  EXPECT_EQ(unix_address->path, "/tmp/gismo.sock");
  EXPECT_EQ(unix_address->ToString(), "unix:/tmp/gismo.sock");
  // The longest path a sockaddr_un holds (with its terminating NUL).
  const std::string longest = "/" + std::string(sizeof(sockaddr_un::sun_path) - 2, 'p');
  EXPECT_TRUE(ParseAddress("unix:" + longest).ok());

  auto tcp = ParseAddress("tcp:127.0.0.1:7070");
  ASSERT_TRUE(tcp.ok());
  EXPECT_EQ(tcp->kind, Address::Kind::kTcp);
  EXPECT_EQ(tcp->host, "127.0.0.1");
  EXPECT_EQ(tcp->port, 7070);
  EXPECT_EQ(tcp->ToString(), "tcp:127.0.0.1:7070");
  auto any_port = ParseAddress("tcp:localhost:0");
  ASSERT_TRUE(any_port.ok());
  EXPECT_EQ(any_port->port, 0);
  auto top = ParseAddress("tcp:h:65535");
  ASSERT_TRUE(top.ok());
  EXPECT_EQ(top->port, 65535);
}

TEST(WireTest, ParseAddressTakesIpv6InBrackets) {
  auto v6 = ParseAddress("tcp:[::1]:7070");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 7070);
  EXPECT_EQ(v6->ToString(), "tcp:[::1]:7070");
  auto full = ParseAddress("tcp:[fe80::1:2:3]:1");
  ASSERT_TRUE(full.ok());
  EXPECT_EQ(full->host, "fe80::1:2:3");
  // Round trip of what ToString writes.
  auto again = ParseAddress(full->ToString());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->host, full->host);
  EXPECT_EQ(again->port, full->port);
  // Without brackets the last colon still separates the port.
  auto bare = ParseAddress("tcp:::1:7070");
  ASSERT_TRUE(bare.ok());
  EXPECT_EQ(bare->host, "::1");
  EXPECT_EQ(bare->port, 7070);
}

// The tags of a keyed connection's frames (protocol/frame_auth.h): what one
// side signs the other verifies, in order; anything else fails and leaves
// the verifier where it was.
TEST(FrameAuthTest, WhatOneSideSignsTheOtherVerifiesInOrderAndNothingElse) {
  Key key{std::string(32, 'k')};
  const Nonce server = RandomNonce(), client = RandomNonce();
  FrameAuth peer = MakeFrameAuth(key, server, client, FrameSide::kPeer);
  FrameAuth manager = MakeFrameAuth(key, server, client, FrameSide::kManager);
  // A received frame as a reader sees it: its header and payload.
  const auto split = [](const std::vector<uint8_t>& frame, FrameHeader* h) {
    *h = DecodeHeader(frame.data());
    return std::vector<uint8_t>(frame.begin() + kHeaderSize, frame.end());
  };
  Writer w;
  w.U64(42);
  std::vector<uint8_t> first = w.Frame(MsgType::kWait, 7);
  const size_t plain = first.size();
  peer.send.Sign(&first);
  ASSERT_EQ(first.size(), plain + kFrameTagSize);
  std::vector<uint8_t> second = Writer().Frame(MsgType::kHeartbeat, 0);
  peer.send.Sign(&second);
  FrameHeader h;
  std::vector<uint8_t> payload;
  // Out of order (the second first), replayed, reflected back to its
  // sender, under another key or another connection's nonces, changed
  // anywhere, or without its tag: refused.
  payload = split(second, &h);
  EXPECT_FALSE(manager.recv.Verify(&h, &payload));
  payload = split(first, &h);
  EXPECT_FALSE(peer.recv.Verify(&h, &payload)) << "reflected";
  FrameAuth other_key =
      MakeFrameAuth(Key{std::string(32, 'K')}, server, client, FrameSide::kManager);
  payload = split(first, &h);
  EXPECT_FALSE(other_key.recv.Verify(&h, &payload));
  FrameAuth other_connection = MakeFrameAuth(key, server, RandomNonce(), FrameSide::kManager);
  payload = split(first, &h);
  EXPECT_FALSE(other_connection.recv.Verify(&h, &payload));
  for (size_t i = 0; i < first.size(); ++i) {
    std::vector<uint8_t> changed = first;
    changed[i] ^= 0x01;
    payload = split(changed, &h);
    EXPECT_FALSE(manager.recv.Verify(&h, &payload)) << "byte " << i;
  }
  const std::vector<uint8_t> untagged = w.Frame(MsgType::kWait, 7);
  payload = split(untagged, &h);
  EXPECT_FALSE(manager.recv.Verify(&h, &payload));
  std::vector<uint8_t> short_frame = Writer().Frame(MsgType::kHeartbeat, 0);
  payload = split(short_frame, &h);
  EXPECT_FALSE(manager.recv.Verify(&h, &payload)) << "shorter than a tag";
  // In order: verified, the tag taken off.
  payload = split(first, &h);
  ASSERT_TRUE(manager.recv.Verify(&h, &payload));
  EXPECT_EQ(h.type, MsgType::kWait);
  EXPECT_EQ(h.request_id, 7u);
  EXPECT_EQ(h.length, 8u);
  EXPECT_EQ(payload, w.payload());
  payload = split(first, &h);
  EXPECT_FALSE(manager.recv.Verify(&h, &payload)) << "replayed";
  payload = split(second, &h);
  ASSERT_TRUE(manager.recv.Verify(&h, &payload));
  EXPECT_EQ(h.length, 0u);
  EXPECT_TRUE(payload.empty());
  // The other direction has keys of its own.
  std::vector<uint8_t> reply = Writer().Frame(MsgType::kWaitAck, 7);
  manager.send.Sign(&reply);
  payload = split(reply, &h);
  EXPECT_TRUE(peer.recv.Verify(&h, &payload));
}

TEST(WireTest, ParseAddressRejectsWhatItCannotUse) {
  const std::string too_long = "unix:/" + std::string(sizeof(sockaddr_un::sun_path) - 1, 'p');
  for (const std::string& bad : {
           std::string(""),               // empty
           std::string("gismo.sock"),     // no scheme
           std::string("http://x:80"),    // unknown scheme
           std::string("UNIX:/tmp/s"),    // schemes are lower case
           std::string("unix:"),          // empty path
           too_long,                      // longer than sun_path
           std::string("tcp:localhost"),  // no port
           std::string("tcp::7070"),      // no host
           std::string("tcp:[]:7070"),    // no host in brackets
           std::string("tcp:h:"),         // empty port
           std::string("tcp:h:http"),     // port not a number
           std::string("tcp:h:-1"),       // negative port
           std::string("tcp:h:65536"),    // port out of range
           std::string("tcp:h:99999999999"),
           std::string("tcp:h:80x"),  // trailing junk
           std::string("tcp:h: 80"),  // space
       }) {
    auto a = ParseAddress(bad);
    EXPECT_FALSE(a.ok()) << "'" << bad << "' was accepted";
    if (!a.ok()) {
      EXPECT_EQ(a.status().code(), GISMO_ERR_INVALID_ARGUMENT) << bad;
      EXPECT_NE(a.status().message().find("bad address"), std::string::npos) << bad;
    }
  }
}

// ---- A manager and peers that break the protocol ----------------------------

using gismo::testing::RawPeer;

// The next frame from the manager is an error; its status.
Status ExpectError(RawPeer& peer) { return peer.ExpectError(); }

TEST(ManagerProtocolTest, OversizedFrameClosesTheConnection) {
  InProcessManager mgr;
  ASSERT_TRUE(IsOk(mgr.Start()));
  RawPeer peer(mgr.address());
  FrameHeader h;
  h.length = kMaxPayload + 1;
  h.type = MsgType::kHello;
  std::vector<uint8_t> bytes(kHeaderSize);
  EncodeHeader(h, bytes.data());
  ASSERT_TRUE(IsOk(peer.Send(bytes)));
  EXPECT_TRUE(peer.ClosedByManager());
  // The manager goes on serving.
  auto c = Client::Connect(mgr.address());
  EXPECT_TRUE(c.ok()) << c.status().ToString();
}

TEST(ManagerProtocolTest, PeerMustSayHelloFirst) {
  InProcessManager mgr;
  ASSERT_TRUE(IsOk(mgr.Start()));
  RawPeer peer(mgr.address());
  peer.ReadChallenge();
  ASSERT_TRUE(IsOk(peer.Send(Writer().Frame(MsgType::kHeartbeat, 0))));
  Status s = ExpectError(peer);
  EXPECT_EQ(s.code(), GISMO_ERR_PROTOCOL);
  EXPECT_NE(s.message().find("hello"), std::string::npos) << s.ToString();
  EXPECT_TRUE(peer.ClosedByManager());
}

TEST(ManagerProtocolTest, MalformedHelloAndOtherVersionsAreRefused) {
  InProcessManager mgr;
  ASSERT_TRUE(IsOk(mgr.Start()));
  {
    RawPeer peer(mgr.address());
    peer.ReadChallenge();
    std::vector<uint8_t> hello = EncodeHello(Hello{});
    hello.resize(kHeaderSize + 10);  // cut inside its fields, length adjusted
    uint32_t length = 10;
    std::memcpy(hello.data(), &length, sizeof length);
    ASSERT_TRUE(IsOk(peer.Send(hello)));
    EXPECT_EQ(ExpectError(peer).code(), GISMO_ERR_PROTOCOL);
    EXPECT_TRUE(peer.ClosedByManager());
  }
  {
    RawPeer peer(mgr.address());
    peer.ReadChallenge();
    Hello future;
    future.protocol_version = kProtocolVersion + 1;
    ASSERT_TRUE(IsOk(peer.Send(EncodeHello(future))));
    Status s = ExpectError(peer);
    EXPECT_EQ(s.code(), GISMO_ERR_PROTOCOL);
    EXPECT_NE(s.message().find("protocol version"), std::string::npos) << s.ToString();
    EXPECT_TRUE(peer.ClosedByManager());
  }
  EXPECT_EQ(mgr.stats().clients_joined.load(std::memory_order_relaxed), 0u);
}

// A client that stops heartbeating: the manager notices when its lease
// expires. (What it does then is another matter; only the noticing is
// asserted.)
TEST(ManagerProtocolTest, SilentClientsLeaseExpires) {
  manager::ManagerOptions options = gismo::testing::InProcessManagerOptions();
  options.lease_ms = 200;  // gismo-manager --lease-ms 200
  InProcessManager mgr(options);
  ASSERT_TRUE(IsOk(mgr.Start()));
  RawPeer silent(mgr.address());
  Welcome w = silent.Hello(mgr.region_path());
  EXPECT_EQ(w.lease_ms, 200u);
  EXPECT_NE(w.slot, 0u);
  EXPECT_EQ(mgr.stats().leases_expired.load(std::memory_order_relaxed), 0u);
  // Never a heartbeat: the manager closes the connection once the lease
  // has expired.
  ASSERT_TRUE(silent.ClosedByManager());
  EXPECT_EQ(mgr.stats().leases_expired.load(std::memory_order_relaxed), 1u);
}

}  // namespace
}  // namespace gismo::protocol
