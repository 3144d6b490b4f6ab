// A raw connection to a manager, speaking the protocol by hand: for tests of
// what a manager does with peers that break the protocol, go silent, or
// never prove anything.
#ifndef GISMO_TESTS_RAW_PEER_H_
#define GISMO_TESTS_RAW_PEER_H_

#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "fence/process.h"
#include "protocol/auth.h"
#include "protocol/frame_auth.h"
#include "protocol/wire.h"
#include "region/region.h"
#include "test_util.h"

namespace gismo::testing {

class RawPeer {
 public:
  explicit RawPeer(const std::string& address) {
    auto a = protocol::ParseAddress(address);
    EXPECT_TRUE(a.ok());
    if (!a.ok()) return;
    auto fd = protocol::ConnectTo(*a, 10000);
    EXPECT_TRUE(fd.ok()) << fd.status().ToString();
    if (fd.ok()) fd_ = *fd;
  }
  ~RawPeer() {
    if (fd_ >= 0) close(fd_);
  }
  RawPeer(const RawPeer&) = delete;
  RawPeer& operator=(const RawPeer&) = delete;

  int fd() const { return fd_; }
  // What the next hello says besides the defaults: the node, and the
  // process identity claimed (fence::ProcessIdentity words; none if unset).
  void SetNode(uint32_t node) { hello_.node_id = node; }
  // The slot, session and client id of a welcome, in the region `uuid`: what
  // a re-attaching hello (Role::kReattach) names.
  void SetReattach(const protocol::Welcome& w) {
    hello_.slot = w.slot;
    hello_.session = w.session;
    hello_.client_id = w.client_id;
    hello_.uuid[0] = w.uuid[0];
    hello_.uuid[1] = w.uuid[1];
  }
  void SetIdentity(const fence::ProcessIdentity& who) {
    const fence::ProcessIdentity::Words w = who.ToWords();
    std::copy(w.begin(), w.end(), hello_.identity);
  }
  // After the access of a hello with a key, frames either way carry tags
  // (protocol/frame_auth.h): Send tags, Receive checks (a wrong tag is
  // GISMO_ERR_PERMISSION). SendUntagged sends a frame as it is.
  Status Send(std::vector<uint8_t> frame) { return SendUntagged(Tagged(std::move(frame))); }
  // `frame` with the tag it takes next (the next frame sent is tagged as
  // the one after it): to send forged, changed or replayed copies.
  std::vector<uint8_t> Tagged(std::vector<uint8_t> frame) {
    if (auth_ && tagging_) auth_->send.Sign(&frame);
    return frame;
  }
  Status SendUntagged(const std::vector<uint8_t>& frame) {
    return protocol::SendAll(fd_, frame.data(), frame.size());
  }
  Status Receive(protocol::FrameHeader* h, std::vector<uint8_t>* payload) {
    Status s = protocol::RecvFrame(fd_, h, payload);
    if (s.ok() && auth_ && tagging_ && !auth_->recv.Verify(h, payload)) {
      return protocol::BadFrameTag("the manager");
    }
    return s;
  }
  // The manager's first frame: its challenge.
  protocol::Challenge ReadChallenge() {
    protocol::FrameHeader h;
    std::vector<uint8_t> payload;
    protocol::Challenge c;
    EXPECT_TRUE(IsOk(Receive(&h, &payload)));
    EXPECT_EQ(h.type, protocol::MsgType::kChallenge);
    protocol::Reader r(payload);
    EXPECT_TRUE(protocol::DecodeChallenge(r, &c));
    challenge_ = c;
    return c;
  }
  // Reads the challenge and sends a client's hello (with a MAC under `key`
  // if given); the manager's answer is read by the caller.
  void SendHello(const std::string& name = "raw peer", const protocol::Key* key = nullptr,
                 protocol::Role role = protocol::Role::kClient) {
    ReadChallenge();
    hello_.pid = static_cast<uint64_t>(getpid());
    hello_.host = "test";
    hello_.name = name;
    hello_.role = role;
    hello_.client_nonce = protocol::RandomNonce();
    if (key) {
      hello_.has_mac = true;
      hello_.mac = protocol::HelloMac(*key, challenge_.nonce, protocol::HelloSignedBytes(hello_));
      auth_ = protocol::MakeFrameAuth(*key, challenge_.nonce, hello_.client_nonce,
                                      protocol::FrameSide::kPeer);
    }
    protocol::Hello sent = hello_;
    if (change_on_the_way_) change_on_the_way_(sent);
    EXPECT_TRUE(IsOk(Send(protocol::EncodeHello(sent))));
  }
  // Changes the next hello after its MAC is computed, as someone on the
  // network path would.
  void ChangeHelloOnTheWay(std::function<void(protocol::Hello&)> change) {
    change_on_the_way_ = std::move(change);
  }
  // The nonces of this connection: the manager's, then this peer's.
  const protocol::Nonce& server_nonce() const { return challenge_.nonce; }
  const protocol::Nonce& client_nonce() const { return hello_.client_nonce; }
  // The next frame, which must be an Access.
  protocol::Access ReadAccess() {
    protocol::FrameHeader h;
    std::vector<uint8_t> payload;
    protocol::Access a;
    EXPECT_TRUE(IsOk(Receive(&h, &payload)));
    EXPECT_EQ(h.type, protocol::MsgType::kAccess);
    protocol::Reader r(payload);
    EXPECT_TRUE(protocol::DecodeAccess(r, &a));
    tagging_ = true;  // from the next frame, when keyed
    return a;
  }
  // Proves the region mapped from `region_path`.
  void SendProof(const std::string& region_path) {
    auto region = region::Region::Open(region_path);
    ASSERT_TRUE(region.ok()) << region.status().ToString();
    const region::ClientSlotHeader& m = (*region)->slot(0);
    const uint64_t secret[2] = {m.admission_secret[0].load(std::memory_order_acquire),
                                m.admission_secret[1].load(std::memory_order_acquire)};
    ASSERT_TRUE(IsOk(Send(protocol::EncodeProof(
        protocol::RegionProof(secret, challenge_.nonce, hello_.client_nonce)))));
  }
  protocol::Welcome ReadWelcome() {
    protocol::FrameHeader h;
    std::vector<uint8_t> payload;
    protocol::Welcome w;
    EXPECT_TRUE(IsOk(Receive(&h, &payload)));
    EXPECT_EQ(h.type, protocol::MsgType::kWelcome);
    protocol::Reader r(payload);
    EXPECT_TRUE(protocol::DecodeWelcome(r, &w));
    return w;
  }
  // Registers as a client of the region at `region_path`: hello, proof;
  // the manager's welcome.
  protocol::Welcome Hello(const std::string& region_path, const protocol::Key* key = nullptr) {
    SendHello("raw peer", key);
    ReadAccess();
    SendProof(region_path);
    return ReadWelcome();
  }
  // Joins as the node agent of `node` (an agent proves no region): hello;
  // the manager's access and welcome.
  protocol::Welcome AgentHello(uint32_t node, const protocol::Key* key = nullptr) {
    SetNode(node);
    SendHello("agent", key, protocol::Role::kNodeAgent);
    ReadAccess();
    return ReadWelcome();
  }
  // The next frame is an error: its status.
  Status ExpectError() {
    protocol::FrameHeader h;
    std::vector<uint8_t> payload;
    if (Status s = Receive(&h, &payload); !s.ok()) return s;
    EXPECT_EQ(h.type, protocol::MsgType::kError);
    protocol::Reader r(payload);
    return protocol::DecodeError(r);
  }
  // True once the manager has closed the connection (after at most
  // timeout_ms); frames it sends before that are skipped.
  bool ClosedByManager(int timeout_ms = 30000) {
    for (;;) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, timeout_ms) != 1) return false;
      protocol::FrameHeader h;
      std::vector<uint8_t> payload;
      Status s = Receive(&h, &payload);
      if (s.code() == GISMO_ERR_CONNECTION) return true;
      if (!s.ok()) return false;
    }
  }

 private:
  int fd_ = -1;
  protocol::Challenge challenge_;
  protocol::Hello hello_;
  std::function<void(protocol::Hello&)> change_on_the_way_;
  std::optional<protocol::FrameAuth> auth_;  // a hello with a key
  bool tagging_ = false;                     // the access has been read
};

}  // namespace gismo::testing

#endif  // GISMO_TESTS_RAW_PEER_H_
