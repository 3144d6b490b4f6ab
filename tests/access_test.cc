// What a peer that is not a client, or a careless or hostile one, can make
// the manager hold, and who the manager admits (doc/security.md): each test
// failed before the bound or check it names.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <functional>
#include <future>
#include <gismo/gismo.hpp>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "fence/process.h"
#include "manager/manager.h"
#include "manager/metrics.h"
#include "protocol/auth.h"
#include "protocol/wire.h"
#include "raw_peer.h"
#include "region/cache_lines.h"
#include "region/layout.h"
#include "region/region.h"
#include "test_util.h"
#include "testing/in_process_manager.h"
#include "testing/process.h"

namespace gismo {
namespace {

using protocol::FrameHeader;
using protocol::MsgType;
using testing::InProcessManager;
using testing::InProcessManagerOptions;
using testing::IsOk;
using testing::RawPeer;

// A key file of `bytes` random bytes, mode 0600; removed on destruction.
struct KeyFile {
  explicit KeyFile(size_t bytes = 32, mode_t mode = 0600) {
    path = "/tmp/" + testing::UniqueName("key");
    const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    EXPECT_GE(fd, 0);
    std::string b(bytes, '\0');
    for (size_t i = 0; i < bytes; i += protocol::kNonceSize) {
      const auto n = protocol::RandomNonce();
      std::memcpy(b.data() + i, n.data(), std::min(bytes - i, n.size()));
    }
    EXPECT_EQ(write(fd, b.data(), b.size()), static_cast<ssize_t>(b.size()));
    fchmod(fd, mode);
    close(fd);
  }
  ~KeyFile() { unlink(path.c_str()); }
  protocol::Key Load() const {
    auto k = protocol::LoadKey(path);
    EXPECT_TRUE(k.ok()) << k.status().ToString();
    return k.ok() ? *k : protocol::Key();
  }
  std::string path;
};

// Sets an environment variable for one scope.
struct ScopedEnv {
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = getenv(name)) old_ = old;
    setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }
  const char* name_;
  std::optional<std::string> old_;
};

manager::ManagerOptions WithTcp(manager::ManagerOptions o) {
  o.listen.push_back("tcp:127.0.0.1:0");
  return o;
}

// Waits until `done()` holds, for at most 30 s; false if it never does.
template <typename Pred>
bool Eventually(Pred done) {
  for (int i = 0; i < 30000; ++i) {
    if (done()) return true;
    usleep(1000);
  }
  return done();
}

// A kWait frame for `n` distinct ids (made from `salt`), with wait id `id`.
std::vector<uint8_t> WaitFrame(uint32_t n, uint64_t id, uint8_t salt = 0) {
  protocol::Writer w;
  w.U32(n);
  for (uint32_t i = 0; i < n; ++i) {
    gismo_id_t gid{};
    std::memcpy(gid.bytes, &i, sizeof i);
    gid.bytes[GISMO_ID_SIZE - 1] = salt;
    w.Id(gid);
  }
  return w.Frame(MsgType::kWait, id);
}

// The next frame: its header, and its status if it is an error.
Status NextFrame(RawPeer& peer, FrameHeader* h) {
  std::vector<uint8_t> payload;
  if (Status s = peer.Receive(h, &payload); !s.ok()) return s;
  if (h->type != MsgType::kError) return Status();
  protocol::Reader r(payload);
  return protocol::DecodeError(r);
}

// A round trip through the manager's event loop that leaves nothing behind
// (a peer speaking before its hello is refused): whatever the loop was
// doing when it started is done when it returns.
void RoundTrip(const std::string& address) {
  RawPeer peer(address);
  peer.ReadChallenge();
  ASSERT_TRUE(IsOk(peer.Send(protocol::Writer().Frame(MsgType::kHeartbeat, 0))));
  EXPECT_EQ(peer.ExpectError().code(), GISMO_ERR_PROTOCOL);
}

// ---- before admission --------------------------------------------------

// A 16-byte header announcing 16 MiB, before any hello: refused at once,
// nothing allocated for it.
TEST(AdmissionTest, LargeFrameBeforeHelloIsRefusedAtOnce) {
  InProcessManager mgr;
  ASSERT_TRUE(IsOk(mgr.Start()));
  RawPeer peer(mgr.address());
  FrameHeader h;
  h.length = protocol::kMaxPayload;  // what an admitted client may send
  h.type = MsgType::kHello;
  std::vector<uint8_t> bytes(protocol::kHeaderSize);
  protocol::EncodeHeader(h, bytes.data());
  ASSERT_TRUE(IsOk(peer.Send(bytes)));
  EXPECT_TRUE(peer.ClosedByManager(20000));
}

// Silence, and one byte at a time: closed once the admission time is up.
TEST(AdmissionTest, SilentAndSlowPeersAreClosedAfterTheAdmissionTimeout) {
  manager::ManagerOptions o = InProcessManagerOptions();
  o.admission_timeout_ms = 300;
  InProcessManager mgr(o);
  ASSERT_TRUE(IsOk(mgr.Start()));
  RawPeer silent(mgr.address());
  EXPECT_TRUE(silent.ClosedByManager(20000));

  RawPeer slow(mgr.address());
  slow.ReadChallenge();
  const std::vector<uint8_t> hello = protocol::EncodeHello(protocol::Hello{});
  bool closed = false;
  // One byte every 50 ms: the whole hello would take seconds.
  for (size_t i = 0; i < hello.size() && !closed; ++i) {
    if (!slow.Send({hello[i]}).ok()) closed = true;
    pollfd p{slow.fd(), POLLIN, 0};
    if (poll(&p, 1, 50) == 1) closed = slow.ClosedByManager(1000);
  }
  EXPECT_TRUE(closed || slow.ClosedByManager(20000));
  EXPECT_GE(mgr.stats().admission_timeouts.load(std::memory_order_relaxed), 2u);
  // Real clients are served meanwhile.
  auto c = Client::Connect(mgr.address());
  EXPECT_TRUE(c.ok()) << c.status().ToString();
}

// Hellos that never prove the region take no client slot: more of them
// than there are slots, and a real client still gets one.
TEST(AdmissionTest, HellosWithoutRegionProofTakeNoSlot) {
  manager::ManagerOptions o = InProcessManagerOptions();
  o.format.max_clients = 4;  // 3 client slots
  InProcessManager mgr(o);
  ASSERT_TRUE(IsOk(mgr.Start()));
  std::vector<std::unique_ptr<RawPeer>> bare;
  for (int i = 0; i < 8; ++i) {
    bare.push_back(std::make_unique<RawPeer>(mgr.address()));
    bare.back()->SendHello("bare hello");
    bare.back()->ReadAccess();
  }
  auto c = Client::Connect(mgr.address());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(mgr.stats().clients_joined.load(std::memory_order_relaxed), 1u);
}

TEST(AdmissionTest, AWrongRegionProofIsRefused) {
  InProcessManager mgr;
  ASSERT_TRUE(IsOk(mgr.Start()));
  RawPeer peer(mgr.address());
  peer.SendHello();
  peer.ReadAccess();
  protocol::Mac guess{};
  ASSERT_TRUE(IsOk(peer.Send(protocol::EncodeProof(guess))));
  Status s = peer.ExpectError();
  EXPECT_EQ(s.code(), GISMO_ERR_PERMISSION) << s.ToString();
  EXPECT_TRUE(peer.ClosedByManager());
  EXPECT_EQ(mgr.stats().clients_joined.load(std::memory_order_relaxed), 0u);
}

// Over TCP without the key a peer is not told where the region is; over the
// Unix socket it is.
// A re-attach names the slot, session and client id it holds, and comes
// from the node that client joined from: the same names from another node
// are refused (a client of one node cannot take over another's slot, which
// the other node's agent would then be asked to fence).
TEST(AdmissionTest, AReattachFromAnotherNodeIsRefused) {
  InProcessManager mgr(InProcessManagerOptions());
  ASSERT_TRUE(IsOk(mgr.Start()));
  protocol::Welcome joined;
  {
    RawPeer first(mgr.address());
    joined = first.Hello(mgr.region_path());
  }  // its connection closes; it keeps its slot for a while to re-attach
  auto reattach = [&](uint32_t node) {
    auto peer = std::make_unique<RawPeer>(mgr.address());
    peer->SetNode(node);
    peer->SetReattach(joined);
    peer->SendHello("raw peer", nullptr, protocol::Role::kReattach);
    peer->ReadAccess();
    peer->SendProof(mgr.region_path());
    return peer;
  };
  auto other = reattach(joined.node_id + 1);
  Status s = other->ExpectError();
  EXPECT_EQ(s.code(), GISMO_ERR_CONNECTION) << s.ToString();
  EXPECT_NE(s.message().find("not of node " + std::to_string(joined.node_id + 1)),
            std::string::npos)
      << s.ToString();
  auto same = reattach(joined.node_id);
  const protocol::Welcome w = same->ReadWelcome();
  EXPECT_EQ(w.slot, joined.slot);
  EXPECT_EQ(w.session, joined.session);
}

TEST(AdmissionTest, RegionPathOnlyToAuthenticatedPeers) {
  manager::ManagerOptions o = WithTcp(InProcessManagerOptions());
  InProcessManager mgr(o);
  ASSERT_TRUE(IsOk(mgr.Start()));
  const std::vector<std::string> addrs = mgr.listen_addresses();
  ASSERT_EQ(addrs.size(), 2u);
  {
    RawPeer tcp(addrs[1]);
    tcp.SendHello();
    EXPECT_EQ(tcp.ReadAccess().region_path, "");
  }
  {
    RawPeer local(addrs[0]);
    local.SendHello();
    EXPECT_EQ(local.ReadAccess().region_path, mgr.region_path());
  }
  // A TCP client that knows the path itself is admitted.
  ScopedEnv region("GISMO_REGION", mgr.region_path());
  auto c = Client::Connect(addrs[1]);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
}

// The hello's text reaches the log sanitized: no forged lines.
TEST(AdmissionTest, PeerTextCannotForgeLogLines) {
  auto out = std::make_shared<std::ostringstream>();
  auto old = spdlog::default_logger();
  auto logger = std::make_shared<spdlog::logger>(
      "capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(*out));
  spdlog::set_default_logger(logger);
  {
    InProcessManager mgr;
    ASSERT_TRUE(IsOk(mgr.Start()));
    spdlog::set_level(spdlog::level::info);
    RawPeer peer(mgr.address());
    peer.SendHello("x\nFORGED error: all is lost\r\x1b[2J");
    peer.ReadAccess();
    peer.SendProof(mgr.region_path());
    peer.ReadWelcome();
    ASSERT_TRUE(IsOk(peer.Send(protocol::Writer().Frame(MsgType::kGoodbye, 0))));
    FrameHeader h;
    std::vector<uint8_t> payload;
    ASSERT_TRUE(IsOk(peer.Receive(&h, &payload)));
    EXPECT_EQ(h.type, MsgType::kBye);  // it has logged its leaving
    mgr.Stop();
  }
  spdlog::set_default_logger(old);
  const std::string log = out->str();
  EXPECT_NE(log.find("x?FORGED"), std::string::npos) << log;
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);) {
    EXPECT_NE(line.rfind("FORGED", 0), 0u) << log;
    EXPECT_EQ(line.find('\x1b'), std::string::npos) << log;
  }
}

// Refusals are logged one a second, the rest counted: a flood of bad
// peers is not a flood of log lines.
TEST(AdmissionTest, RefusalsDoNotFloodTheLog) {
  auto out = std::make_shared<std::ostringstream>();
  auto old = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>(
      "capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(*out)));
  {
    InProcessManager mgr;
    ASSERT_TRUE(IsOk(mgr.Start()));
    for (int i = 0; i < 200; ++i) {
      RawPeer peer(mgr.address());
      peer.ReadChallenge();
      ASSERT_TRUE(IsOk(peer.Send(protocol::Writer().Frame(MsgType::kHeartbeat, 0))));
      EXPECT_TRUE(peer.ClosedByManager());
    }
    EXPECT_EQ(mgr.stats().peers_refused.load(std::memory_order_relaxed), 200u);
    mgr.Stop();
  }
  spdlog::set_default_logger(old);
  std::istringstream lines(out->str());
  int refused_lines = 0;
  for (std::string line; std::getline(lines, line);) {
    refused_lines += line.find("refused") != std::string::npos;
  }
  EXPECT_GE(refused_lines, 1);
  EXPECT_LT(refused_lines, 50) << out->str();
}

// ---- the cluster key ---------------------------------------------------

TEST(KeyTest, TcpPeersWithoutTheKeyAreRefusedAndHoldNothing) {
  KeyFile key;
  manager::ManagerOptions o = WithTcp(InProcessManagerOptions());
  o.key_file = key.path;
  InProcessManager mgr(o);
  ASSERT_TRUE(IsOk(mgr.Start()));
  const std::string tcp = mgr.listen_addresses()[1];
  {
    RawPeer peer(tcp);
    peer.SendHello();
    Status s = peer.ExpectError();
    EXPECT_EQ(s.code(), GISMO_ERR_PERMISSION) << s.ToString();
    EXPECT_NE(s.message().find("GISMO_KEY_FILE"), std::string::npos) << s.ToString();
    EXPECT_TRUE(peer.ClosedByManager());
  }
  {
    // The library says so too, before it sends anything.
    auto c = Client::Connect(tcp);
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.status().code(), GISMO_ERR_PERMISSION) << c.status().ToString();
  }
  {
    KeyFile wrong;
    ScopedEnv env("GISMO_KEY_FILE", wrong.path);
    auto c = Client::Connect(tcp);
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.status().code(), GISMO_ERR_PERMISSION) << c.status().ToString();
    EXPECT_NE(c.status().message().find("key"), std::string::npos) << c.status().ToString();
  }
  EXPECT_EQ(mgr.stats().clients_joined.load(std::memory_order_relaxed), 0u);
  {
    // With the key: admitted, and told where the region is.
    ScopedEnv env("GISMO_KEY_FILE", key.path);
    auto c = Client::Connect(tcp);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    EXPECT_TRUE(c->Put(ObjectId::FromName("k"), "v").ok());
  }
  {
    // The key given in the options rather than the environment; it wins
    // over a wrong $GISMO_KEY_FILE, and serves every later handshake.
    KeyFile wrong;
    ScopedEnv env("GISMO_KEY_FILE", wrong.path);
    auto with_key = [&](const std::string& file) {
      Client::ConnectOptions o;
      o.address = tcp;
      o.key_file = file;
      return Client::ConnectWith(o);
    };
    auto c = with_key(key.path);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    auto has = c->Contains(ObjectId::FromName("k"));
    EXPECT_TRUE(has.ok() && *has);
    auto bad = with_key(wrong.path);
    EXPECT_EQ(bad.status().code(), GISMO_ERR_PERMISSION) << bad.status().ToString();
    auto missing = with_key("/nonexistent/gismo.key");
    ASSERT_FALSE(missing.ok());
    EXPECT_NE(missing.status().message().find("/nonexistent/gismo.key"), std::string::npos)
        << missing.status().ToString();
  }
  {
    // The Unix socket: file modes protect it; no key needed.
    auto c = Client::Connect(mgr.listen_addresses()[0]);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
  }
}

// Nothing on the network path can change a field of a keyed hello and keep
// its MAC: the manager refuses it as it refuses a wrong key. Protocol
// version 4's MAC covered the nonces, the role and the node only: a
// re-attach could be moved onto another client's slot and session, or a
// client's claimed process (what its node's agent would kill) changed. The
// manager's access is covered whole too: the region it names is its own.
TEST(KeyTest, AKeyedHelloOrAccessChangedOnTheWayIsRefused) {
  KeyFile key;
  const protocol::Key loaded = key.Load();
  manager::ManagerOptions o = WithTcp(InProcessManagerOptions());
  o.key_file = key.path;
  InProcessManager mgr(o);
  ASSERT_TRUE(IsOk(mgr.Start()));
  const std::string tcp = mgr.listen_addresses()[1];
  const std::vector<std::pair<const char*, std::function<void(protocol::Hello&)>>> changes = {
      {"pid", [](protocol::Hello& h) { h.pid += 1; }},
      {"identity", [](protocol::Hello& h) { h.identity[1] ^= 1; }},
      {"host", [](protocol::Hello& h) { h.host = "elsewhere"; }},
      {"name", [](protocol::Hello& h) { h.name += "!"; }},
      {"slot", [](protocol::Hello& h) { h.slot = 7; }},
      {"session", [](protocol::Hello& h) { h.session += 1; }},
      {"client id", [](protocol::Hello& h) { h.client_id += 1; }},
      {"region uuid", [](protocol::Hello& h) { h.uuid[0] ^= 1; }},
      {"role", [](protocol::Hello& h) { h.role = protocol::Role::kReattach; }},
      {"node", [](protocol::Hello& h) { h.node_id += 1; }},
  };
  for (const auto& [field, change] : changes) {
    RawPeer peer(tcp);
    peer.ChangeHelloOnTheWay(change);
    peer.SendHello("raw peer", &loaded);
    Status s = peer.ExpectError();
    EXPECT_EQ(s.code(), GISMO_ERR_PERMISSION) << field << ": " << s.ToString();
    EXPECT_NE(s.message().find("wrong cluster key"), std::string::npos) << field;
    EXPECT_TRUE(peer.ClosedByManager()) << field;
  }
  EXPECT_EQ(mgr.stats().clients_joined.load(std::memory_order_relaxed), 0u);
  // Unchanged, the hello is admitted; the access's MAC holds for the access
  // as sent and for no other region path, size or uuid.
  RawPeer peer(tcp);
  peer.SendHello("raw peer", &loaded);
  protocol::Access access = peer.ReadAccess();
  ASSERT_TRUE(access.has_mac);
  auto mac_of = [&](const protocol::Access& a) {
    return protocol::AccessMac(loaded, peer.server_nonce(), peer.client_nonce(),
                               protocol::AccessSignedBytes(a));
  };
  EXPECT_TRUE(protocol::MacEqual(access.mac, mac_of(access)));
  protocol::Access other = access;
  other.region_path = "/dev/shm/elsewhere";
  EXPECT_FALSE(protocol::MacEqual(access.mac, mac_of(other)));
  other = access;
  other.region_size += 1;
  EXPECT_FALSE(protocol::MacEqual(access.mac, mac_of(other)));
  other = access;
  other.uuid[1] ^= 1;
  EXPECT_FALSE(protocol::MacEqual(access.mac, mac_of(other)));
  peer.SendProof(mgr.region_path());
  EXPECT_NE(peer.ReadWelcome().session, 0u);
}

// A client that holds a key wants the manager to prove it holds it too.
TEST(KeyTest, AClientWithAKeyRefusesAManagerWithout) {
  KeyFile key;
  InProcessManager mgr;
  ASSERT_TRUE(IsOk(mgr.Start()));
  ScopedEnv env("GISMO_KEY_FILE", key.path);
  auto c = Client::Connect(mgr.address());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), GISMO_ERR_PERMISSION) << c.status().ToString();
}

TEST(KeyTest, KeyFilesOthersMayReadOrTooShortAreRefused) {
  KeyFile open_to_group(32, 0640);
  auto k = protocol::LoadKey(open_to_group.path);
  ASSERT_FALSE(k.ok());
  EXPECT_NE(k.status().message().find("chmod 600"), std::string::npos) << k.status().ToString();
  KeyFile shorty(8);
  EXPECT_FALSE(protocol::LoadKey(shorty.path).ok());
  manager::ManagerOptions o = InProcessManagerOptions();
  o.key_file = open_to_group.path;
  InProcessManager mgr(o);
  EXPECT_FALSE(mgr.Start().ok());
}

// A process whose OpenSSL computes no HMAC (its configuration activates
// only the null provider) says so when it loads the key. Before, each MAC
// it made was random bytes, and a node agent retried for ever, every
// handshake refused as if the cluster keys differed.
TEST(KeyTest, AnOpenSslWithoutHmacIsSaidWhenTheKeyIsLoaded) {
  KeyFile key;
  const std::string conf = "/tmp/" + testing::UniqueName("openssl") + ".cnf";
  {
    std::ofstream f(conf);
    f << "openssl_conf = openssl_init\n[openssl_init]\nproviders = provider_sect\n"
         "[provider_sect]\nnull = null_sect\n[null_sect]\nactivate = 1\n";
  }
  manager::ManagerOptions o = InProcessManagerOptions();
  o.key_file = key.path;
  InProcessManager mgr(o);
  ASSERT_TRUE(IsOk(mgr.Start()));
  testing::SpawnOptions options;
  options.argv = {GISMO_AGENT_BIN, "--node",         "7", "--manager", mgr.address(),
                  "--region",      mgr.region_path()};
  options.env = {"GISMO_KEY_FILE=" + key.path, "OPENSSL_CONF=" + conf};
  options.capture_stdout = true;
  options.stderr_to_stdout = true;
  options.parent_death_signal = SIGKILL;
  testing::Process agent;
  ASSERT_TRUE(agent.Start(options)) << agent.error();
  std::string output;
  ASSERT_TRUE(agent.ReadToEnd(60, &output)) << output;
  int status = 0;
  ASSERT_TRUE(agent.WaitForExit(60, &status));
  EXPECT_EQ(testing::ExitCode(status), 1) << output;
  EXPECT_NE(output.find("cannot compute HMAC-SHA-256"), std::string::npos) << output;
  EXPECT_NE(output.find("OPENSSL_CONF"), std::string::npos) << output;
  unlink(conf.c_str());
}

// ---- what an admitted peer can make the manager hold --------------------

// A subscriber that never reads, and a peer sending seal kicks: the
// notifications are coalesced, not queued without bound.
TEST(BoundsTest, ASubscriberThatNeverReadsCostsOneQueuedNotification) {
  InProcessManager mgr;
  ASSERT_TRUE(IsOk(mgr.Start()));
  RawPeer sub(mgr.address());
  sub.Hello(mgr.region_path());
  ASSERT_TRUE(IsOk(sub.Send(protocol::Writer().Frame(MsgType::kSubscribe, 1))));
  RawPeer kicker(mgr.address());
  kicker.Hello(mgr.region_path());
  constexpr int kKicks = 200000;
  std::vector<uint8_t> batch;
  protocol::Writer w;
  gismo_id_t id{};
  w.Id(id);
  const std::vector<uint8_t> kick = w.Frame(MsgType::kSealed, 0);
  for (int i = 0; i < 1000; ++i) batch.insert(batch.end(), kick.begin(), kick.end());
  for (int i = 0; i < kKicks / 1000; ++i) ASSERT_TRUE(IsOk(kicker.Send(batch)));
  // A wait acknowledged after the kicks: the manager has handled them all.
  protocol::Writer wait;
  wait.U32(0);
  ASSERT_TRUE(IsOk(kicker.Send(wait.Frame(MsgType::kWait, 77))));
  FrameHeader h;
  std::vector<uint8_t> payload;
  ASSERT_TRUE(IsOk(kicker.Receive(&h, &payload)));
  EXPECT_EQ(h.type, MsgType::kWaitAck);
  // Now read what was sent to the subscriber: what its socket held, plus
  // at most one queued notification; never one per kick.
  fcntl(sub.fd(), F_SETFL, O_NONBLOCK);
  int notifies = 0;
  for (;;) {
    pollfd p{sub.fd(), POLLIN, 0};
    if (poll(&p, 1, 500) != 1) break;
    Status s = sub.Receive(&h, &payload);
    if (!s.ok()) break;
    if (h.type == MsgType::kNotify) ++notifies;
  }
  EXPECT_GT(notifies, 0);
  EXPECT_LT(notifies, kKicks / 4) << "notifications were queued one per kick";
}

// A kWait frame naming `id` `times` times, with wait id `wait_id`.
std::vector<uint8_t> WaitOnFrame(const gismo_id_t& id, uint32_t times, uint64_t wait_id) {
  protocol::Writer w;
  w.U32(times);
  for (uint32_t i = 0; i < times; ++i) w.Id(id);
  return w.Frame(MsgType::kWait, wait_id);
}

// Sends `frame`, then an empty wait, and reads up to its ack: the manager
// has handled `frame` when this returns.
void SendAndSync(RawPeer& peer, const std::vector<uint8_t>& frame, bool expect_ack = true) {
  ASSERT_TRUE(IsOk(peer.Send(frame)));
  static uint64_t next_sync = 1u << 30;  // a wait id used once
  const uint64_t sync = next_sync++;
  protocol::Writer empty;
  empty.U32(0);
  ASSERT_TRUE(IsOk(peer.Send(empty.Frame(MsgType::kWait, sync))));
  for (;;) {
    FrameHeader h;
    Status s = NextFrame(peer, &h);
    ASSERT_TRUE(s.ok() || h.type == MsgType::kError) << s.ToString();
    if (h.request_id != sync) continue;
    EXPECT_EQ(h.type, expect_ack ? MsgType::kWaitAck : MsgType::kError) << s.ToString();
    return;
  }
}

// An id whose first byte is `b`, the rest zero.
gismo_id_t IdOfByte(uint8_t b) {
  gismo_id_t id{};
  id.bytes[0] = b;
  return id;
}

// Says goodbye on `peer` and reads the manager's answer.
void Depart(RawPeer& peer) {
  ASSERT_TRUE(IsOk(peer.Send(protocol::Writer().Frame(MsgType::kGoodbye, 1))));
  FrameHeader h;
  ASSERT_TRUE(IsOk(NextFrame(peer, &h)));
  ASSERT_EQ(h.type, MsgType::kBye);
}

// Many waits on one id: each holds one entry however often it names the
// id, a cancel takes away exactly its own, and a seal notice wakes each
// remaining wait once (the manager kept one entry per id named, so a wait
// naming an id 50 times cost 50 wake-ups, and cancels scanned every wait
// on the id: quadratic time when a client with many waits closed).
TEST(BoundsTest, ManyWaitsOnOneIdAreWokenOnceEachAndCancelledAlone) {
  InProcessManager mgr;
  ASSERT_TRUE(IsOk(mgr.Start()));
  RawPeer waiter(mgr.address());
  waiter.Hello(mgr.region_path());
  const gismo_id_t x = IdOfByte(0x77);
  std::vector<uint8_t> frames;
  constexpr uint64_t kWaits = 1000;
  for (uint64_t i = 0; i < kWaits; ++i) {
    const auto f = WaitOnFrame(x, 1, 100 + i);
    frames.insert(frames.end(), f.begin(), f.end());
  }
  for (uint64_t i = 0; i < kWaits; i += 2) {  // every other one cancelled
    const auto f = protocol::Writer().Frame(MsgType::kCancelWait, 100 + i);
    frames.insert(frames.end(), f.begin(), f.end());
  }
  ASSERT_NO_FATAL_FAILURE(SendAndSync(waiter, frames));
  ASSERT_NO_FATAL_FAILURE(SendAndSync(waiter, WaitOnFrame(x, 50, 5000)));
  RawPeer sealer(mgr.address());
  sealer.Hello(mgr.region_path());
  protocol::Writer notice;
  notice.Id(x);
  const uint64_t before = mgr.stats().wakeups_sent.load(std::memory_order_relaxed);
  ASSERT_NO_FATAL_FAILURE(SendAndSync(sealer, notice.Frame(MsgType::kSealed, 0)));
  EXPECT_EQ(mgr.stats().wakeups_sent.load(std::memory_order_relaxed) - before, kWaits / 2 + 1);
}

// A wait id sent again while it waits is registered anew with the ids it
// names now, and acknowledged again (it was ignored: no answer ever came);
// the id notifications are queued under (2^64-1) is a malformed wait.
TEST(BoundsTest, ARepeatedWaitIsAnsweredAndTheNotificationsIdRefused) {
  InProcessManager mgr;
  ASSERT_TRUE(IsOk(mgr.Start()));
  RawPeer waiter(mgr.address());
  waiter.Hello(mgr.region_path());
  const gismo_id_t first = IdOfByte(0x31), second = IdOfByte(0x32);
  ASSERT_TRUE(IsOk(waiter.Send(WaitOnFrame(first, 1, 77))));
  ASSERT_TRUE(IsOk(waiter.Send(WaitOnFrame(second, 1, 77))));
  for (int acks = 0; acks < 2;) {
    FrameHeader h;
    ASSERT_TRUE(IsOk(NextFrame(waiter, &h)));
    ASSERT_EQ(h.type, MsgType::kWaitAck);
    ASSERT_EQ(h.request_id, 77u);
    ++acks;
  }
  // It waits for the second id now, once.
  RawPeer sealer(mgr.address());
  sealer.Hello(mgr.region_path());
  auto woken_by = [&](const gismo_id_t& id) {
    protocol::Writer notice;
    notice.Id(id);
    const uint64_t before = mgr.stats().wakeups_sent.load(std::memory_order_relaxed);
    SendAndSync(sealer, notice.Frame(MsgType::kSealed, 0));
    return mgr.stats().wakeups_sent.load(std::memory_order_relaxed) - before;
  };
  EXPECT_EQ(woken_by(first), 0u);
  EXPECT_EQ(woken_by(second), 1u);
  ASSERT_TRUE(IsOk(waiter.Send(WaitOnFrame(first, 1, ~uint64_t{0}))));
  for (;;) {
    FrameHeader h;
    Status s = NextFrame(waiter, &h);
    if (h.type != MsgType::kError) continue;  // the wake-up of wait 77
    EXPECT_EQ(h.request_id, 0u);
    EXPECT_NE(s.message().find("malformed wait"), std::string::npos) << s.ToString();
    break;
  }
  EXPECT_TRUE(waiter.ClosedByManager());
}

// A client's notices (seal, delete, requests) from a node agent are
// ignored: they wake no waiter. From a client after its goodbye they still
// do: another thread of its may have sealed while one said goodbye.
TEST(BoundsTest, NoticesFromAgentsAreIgnoredAndAfterAGoodbyeStillWake) {
  InProcessManager mgr;
  ASSERT_TRUE(IsOk(mgr.Start()));
  RawPeer waiter(mgr.address());
  waiter.Hello(mgr.region_path());
  const gismo_id_t x = IdOfByte(0x78);
  ASSERT_NO_FATAL_FAILURE(SendAndSync(waiter, WaitOnFrame(x, 1, 10)));
  RawPeer departed(mgr.address());
  departed.Hello(mgr.region_path());
  ASSERT_NO_FATAL_FAILURE(Depart(departed));  // (its recovery woke every wait)
  RawPeer agent(mgr.address());
  agent.AgentHello(7);
  protocol::Writer notice;
  notice.Id(x);
  const uint64_t before = mgr.stats().wakeups_sent.load(std::memory_order_relaxed);
  // (A non-client's wait is refused with an error: still a sync point.)
  ASSERT_NO_FATAL_FAILURE(
      SendAndSync(agent, notice.Frame(MsgType::kSealed, 0), /*expect_ack=*/false));
  EXPECT_EQ(mgr.stats().wakeups_sent.load(std::memory_order_relaxed), before);
  ASSERT_NO_FATAL_FAILURE(
      SendAndSync(departed, notice.Frame(MsgType::kSealed, 0), /*expect_ack=*/false));
  EXPECT_EQ(mgr.stats().wakeups_sent.load(std::memory_order_relaxed), before + 1);
}

// A client that said goodbye and keeps its connection open is closed, even
// while it heartbeats (which refreshed its lease for ever): admitted
// sessions are never evicted to make room for new ones, so it would hold
// its place among max_connections. The heartbeats themselves are not an
// error (its client's beat may cross its goodbye).
TEST(BoundsTest, ADepartedClientThatStaysConnectedIsClosed) {
  manager::ManagerOptions o = InProcessManagerOptions();
  o.lease_ms = 500;
  o.admission_timeout_ms = 1000;  // also how long a connection may outlive its goodbye
  InProcessManager mgr(o);
  ASSERT_TRUE(IsOk(mgr.Start()));
  RawPeer departed(mgr.address());
  departed.Hello(mgr.region_path());
  ASSERT_NO_FATAL_FAILURE(Depart(departed));
  bool closed = false;
  for (int beat = 0; beat < 200 && !closed; ++beat) {  // 20 s at most, heartbeating
    if (!departed.Send(protocol::Writer().Frame(MsgType::kHeartbeat, 0)).ok()) {
      closed = departed.ClosedByManager(20000);  // it closed between two beats
      break;
    }
    pollfd p{departed.fd(), POLLIN, 0};
    if (poll(&p, 1, 100) != 1) continue;
    FrameHeader h;
    std::vector<uint8_t> payload;
    const Status s = departed.Receive(&h, &payload);
    ASSERT_TRUE(s.code() == GISMO_ERR_CONNECTION)
        << "the manager answered a heartbeat: " << static_cast<unsigned>(h.type) << " "
        << s.ToString();
    closed = true;
  }
  EXPECT_TRUE(closed) << "a departed client's connection stays while it heartbeats";
}

// After its goodbye a connection may only close: a wait or a subscription
// (another thread's, crossing the goodbye) gets its own error, another
// goodbye or a fence order ends the connection, with an error that says why.
TEST(BoundsTest, ARequestAfterAGoodbyeEndsTheConnection) {
  InProcessManager mgr;
  ASSERT_TRUE(IsOk(mgr.Start()));
  for (const MsgType type : {MsgType::kGoodbye, MsgType::kFence}) {
    SCOPED_TRACE(static_cast<unsigned>(type));
    RawPeer departed(mgr.address());
    departed.Hello(mgr.region_path());
    ASSERT_NO_FATAL_FAILURE(Depart(departed));
    // 300 ids: larger than a frame of a peer that holds no slot may be.
    ASSERT_TRUE(IsOk(departed.Send(WaitFrame(300, 5))));
    FrameHeader h;
    Status s = NextFrame(departed, &h);
    EXPECT_EQ(h.type, MsgType::kError);
    EXPECT_EQ(h.request_id, 5u) << "the wait's own error";
    EXPECT_NE(s.message().find("said goodbye"), std::string::npos) << s.ToString();
    ASSERT_TRUE(IsOk(departed.Send(protocol::Writer().Frame(type, 6))));
    s = NextFrame(departed, &h);
    EXPECT_EQ(h.type, MsgType::kError);
    EXPECT_EQ(h.request_id, 0u) << "the session ends";
    EXPECT_NE(s.message().find("said goodbye"), std::string::npos) << s.ToString();
    EXPECT_TRUE(departed.ClosedByManager(20000));
  }
}

// A peer with many distinct wake-ups pending that does not read is
// disconnected once its queue passes the limit.
TEST(BoundsTest, APeerThatDoesNotReadIsDisconnectedAtItsOutputLimit) {
  manager::ManagerOptions o = InProcessManagerOptions();
  o.max_output_bytes = 4096;
  InProcessManager mgr(o);
  ASSERT_TRUE(IsOk(mgr.Start()));
  RawPeer waiter(mgr.address());
  waiter.Hello(mgr.region_path());
  int small = 4096;
  setsockopt(waiter.fd(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  constexpr int kWaits = 40000;
  std::vector<uint8_t> frames;
  for (int i = 0; i < kWaits; ++i) {
    protocol::Writer w;
    w.U32(1);
    gismo_id_t id{};
    std::memcpy(id.bytes, &i, sizeof i);
    w.Id(id);
    const auto f = w.Frame(MsgType::kWait, 1000 + i);
    frames.insert(frames.end(), f.begin(), f.end());
  }
  // Their acks go unread too; the manager may cut the connection before
  // it has read them all.
  const Status sent = waiter.Send(frames);
  EXPECT_TRUE(!sent.ok() || waiter.ClosedByManager(60000)) << sent.ToString();
  EXPECT_GE(mgr.stats().output_overflows.load(std::memory_order_relaxed), 1u);
  auto c = Client::Connect(mgr.address());
  EXPECT_TRUE(c.ok()) << c.status().ToString();
}

// A wait over the bound is refused alone: an error frame answering that
// wait (its request id), while the connection and the session stay, and a
// wait within the bound is served.
TEST(BoundsTest, WaitsOverTheLimitAreRefused) {
  manager::ManagerOptions o = InProcessManagerOptions();
  o.max_wait_ids = 100;
  InProcessManager mgr(o);
  ASSERT_TRUE(IsOk(mgr.Start()));
  RawPeer peer(mgr.address());
  peer.Hello(mgr.region_path());
  ASSERT_TRUE(IsOk(peer.Send(WaitFrame(101, 5))));
  FrameHeader h;
  Status s = NextFrame(peer, &h);
  EXPECT_EQ(h.type, MsgType::kError);
  EXPECT_EQ(h.request_id, 5u);
  EXPECT_EQ(s.code(), GISMO_ERR_LIMIT) << s.ToString();
  EXPECT_NE(s.message().find("--max-wait-ids"), std::string::npos) << s.ToString();
  ASSERT_TRUE(IsOk(peer.Send(WaitFrame(100, 6))));
  ASSERT_TRUE(IsOk(NextFrame(peer, &h)));
  EXPECT_EQ(h.type, MsgType::kWaitAck);
  EXPECT_EQ(h.request_id, 6u);
  EXPECT_EQ(mgr.stats().clients_joined.load(std::memory_order_relaxed), 1u);
}

// Two threads of one client whose blocking gets together pass the client's
// bound: the second get fails with GISMO_ERR_LIMIT, and that is all. The
// client stays connected (before, the refusal ended its session for good,
// and a manager on its kernel would have killed it once it was suspected):
// its first get is woken by the seals it waits for, and its next get is
// served.
TEST(BoundsTest, GetsOverTheWaitBoundFailAloneAndTheClientStays) {
  manager::ManagerOptions o = InProcessManagerOptions();
  o.max_wait_ids = 100;
  InProcessManager mgr(o);
  ASSERT_TRUE(IsOk(mgr.Start()));
  auto region = region::Region::Open(mgr.region_path());
  ASSERT_TRUE(region.ok()) << region.status().ToString();
  Client c = testing::MustConnect(mgr.address());
  std::vector<ObjectId> first, second;
  for (int i = 0; i < 60; ++i) {
    first.push_back(ObjectId::Random());
    second.push_back(ObjectId::Random());
  }
  Result<std::vector<Buffer>> got = Status(GISMO_ERR_TIMEOUT, "not yet");
  std::thread waiter([&] { got = c.Get(first, 60000); });
  // The first get's wait is registered (raised before its ack).
  ASSERT_TRUE(
      Eventually([&] { return testing::ReadShared(**region, (*region)->sb().waiters) == 1; }));
  auto refused = c.Get(second, 60000);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), GISMO_ERR_LIMIT) << refused.status().ToString();
  EXPECT_NE(refused.status().message().find("--max-wait-ids"), std::string::npos)
      << refused.status().ToString();
  Client producer = testing::MustConnect(mgr.address());
  for (const ObjectId& id : first) ASSERT_TRUE(IsOk(producer.Put(id, "sealed")));
  waiter.join();
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  for (const Buffer& b : *got) EXPECT_TRUE(b.valid());
  ASSERT_TRUE(IsOk(producer.Put(second[0], "sealed")));
  auto next = c.Get(second[0], 60000);
  EXPECT_TRUE(next.ok()) << next.status().ToString();
  EXPECT_EQ(mgr.stats().clients_reattached.load(std::memory_order_relaxed), 0u);
  EXPECT_EQ(mgr.stats().peers_refused.load(std::memory_order_relaxed), 0u);
}

// Waits and subscriptions are a client's: a node agent's are refused, each
// alone, and hold nothing. An agent replaced by a newer one of its node (a
// hello as the agent of the same node) holds nothing either, however often
// that is repeated: a client may still wait for the whole bound, and the
// region's counters say no one else waits or subscribes. (Before, each
// replaced agent's wait stayed counted for ever, and one such wait filled
// the bound of all clients.)
TEST(BoundsTest, AgentsHoldNoWaitsAndAReplacedAgentLeavesNothingCounted) {
  manager::ManagerOptions o = InProcessManagerOptions();
  o.max_wait_ids = 100;
  o.max_total_wait_ids = 100;
  InProcessManager mgr(o);
  ASSERT_TRUE(IsOk(mgr.Start()));
  auto region = region::Region::Open(mgr.region_path());
  ASSERT_TRUE(region.ok()) << region.status().ToString();
  std::vector<std::unique_ptr<RawPeer>> agents;
  for (uint64_t i = 0; i < 3; ++i) {
    agents.push_back(std::make_unique<RawPeer>(mgr.address()));
    RawPeer& agent = *agents.back();
    agent.AgentHello(7);
    if (i > 0) {
      EXPECT_TRUE(agents[i - 1]->ClosedByManager()) << "a replaced agent stays";
    }
    ASSERT_TRUE(IsOk(agent.Send(WaitFrame(100, 10 + i))));
    ASSERT_TRUE(IsOk(agent.Send(protocol::Writer().Frame(MsgType::kSubscribe, 20 + i))));
    FrameHeader h;
    Status s = NextFrame(agent, &h);
    EXPECT_EQ(h.type, MsgType::kError);
    EXPECT_EQ(h.request_id, 10 + i);
    EXPECT_EQ(s.code(), GISMO_ERR_PROTOCOL) << s.ToString();
    EXPECT_NE(s.message().find("node agent"), std::string::npos) << s.ToString();
    s = NextFrame(agent, &h);
    EXPECT_EQ(h.type, MsgType::kError);
    EXPECT_EQ(h.request_id, 20 + i);
    EXPECT_EQ(s.code(), GISMO_ERR_PROTOCOL) << s.ToString();
  }
  EXPECT_EQ(testing::ReadShared(**region, (*region)->sb().waiters), 0u);
  EXPECT_EQ(testing::ReadShared(**region, (*region)->sb().subscribers), 0u);
  RawPeer client(mgr.address());
  client.Hello(mgr.region_path());
  ASSERT_TRUE(IsOk(client.Send(WaitFrame(100, 30))));
  FrameHeader h;
  Status s = NextFrame(client, &h);
  EXPECT_TRUE(IsOk(s));
  EXPECT_EQ(h.type, MsgType::kWaitAck);
  EXPECT_EQ(testing::ReadShared(**region, (*region)->sb().waiters), 1u);
}

// Node agents are admitted without proving the region and never evicted:
// agents of new nodes take at most half the connections (a peer saying
// hello as the agent of node after node filled them all, and no client got
// in). A new agent of a node that has one replaces it as before.
TEST(BoundsTest, AgentsOfNewNodesTakeAtMostHalfTheConnections) {
  manager::ManagerOptions o = InProcessManagerOptions();
  o.max_connections = 8;
  InProcessManager mgr(o);
  ASSERT_TRUE(IsOk(mgr.Start()));
  std::vector<std::unique_ptr<RawPeer>> agents;
  for (uint32_t node = 1; node <= 4; ++node) {
    agents.push_back(std::make_unique<RawPeer>(mgr.address()));
    agents.back()->AgentHello(node);
  }
  RawPeer fifth(mgr.address());
  fifth.SetNode(5);
  fifth.SendHello("agent", nullptr, protocol::Role::kNodeAgent);
  fifth.ReadAccess();
  const Status s = fifth.ExpectError();
  EXPECT_EQ(s.code(), GISMO_ERR_LIMIT) << s.ToString();
  EXPECT_NE(s.message().find("node agents of 4 nodes"), std::string::npos) << s.ToString();
  EXPECT_TRUE(fifth.ClosedByManager(20000));
  RawPeer again(mgr.address());
  again.AgentHello(2);  // replaces node 2's
  EXPECT_TRUE(agents[1]->ClosedByManager(20000)) << "a replaced agent stays";
  auto c = Client::Connect(mgr.address());
  EXPECT_TRUE(c.ok()) << c.status().ToString();
}

// A node agent is admitted without proving the region: its frames are
// held to the pre-admission size (a header announcing a client's 16 MiB
// closes it at once, before anything is allocated).
TEST(BoundsTest, ANodeAgentsFramesAreSmall) {
  InProcessManager mgr;
  ASSERT_TRUE(IsOk(mgr.Start()));
  RawPeer agent(mgr.address());
  agent.AgentHello(7);
  FrameHeader h;
  h.length = protocol::kMaxPreAdmissionPayload + 1;
  h.type = MsgType::kHeartbeat;
  std::vector<uint8_t> bytes(protocol::kHeaderSize);
  protocol::EncodeHeader(h, bytes.data());
  ASSERT_TRUE(IsOk(agent.Send(bytes)));
  EXPECT_TRUE(agent.ClosedByManager(20000));
  // After a goodbye too (it took a client's 16 MiB limit then: a 16-byte
  // header made the manager allocate 16 MiB, for as long as the admission
  // timeout left the connection open).
  RawPeer leaving(mgr.address());
  leaving.AgentHello(8);
  ASSERT_TRUE(IsOk(leaving.Send(protocol::Writer().Frame(MsgType::kGoodbye, 1))));
  FrameHeader bye;
  std::vector<uint8_t> payload;
  ASSERT_TRUE(IsOk(leaving.Receive(&bye, &payload)));
  EXPECT_EQ(bye.type, MsgType::kBye);
  // The whole frame, then a goodbye that a session still open would answer:
  // the manager closes the connection at the header instead.
  std::vector<uint8_t> frame = bytes;
  frame.resize(frame.size() + h.length);
  const std::vector<uint8_t> again = protocol::Writer().Frame(MsgType::kGoodbye, 2);
  frame.insert(frame.end(), again.begin(), again.end());
  (void)leaving.Send(frame);  // may fail part-way once the manager closes
  Status after = leaving.Receive(&bye, &payload);
  EXPECT_EQ(after.code(), GISMO_ERR_CONNECTION)
      << "the oversized frame was taken: " << after.ToString() << ", frame type "
      << static_cast<int>(bye.type);
}

// More connections than the manager takes, none of them admitted: the
// oldest go, and a real client is served.
// The metrics server keeps track of the connections still reading their
// request (to close the oldest when full): behind one request that never
// ends, the connections served meanwhile are forgotten, not kept (each kept
// about 4 KiB until the slow one ended, so the memory grew with the rate).
TEST(BoundsTest, MetricsConnectionsServedBehindASlowOneAreNotKept) {
  const std::string path = "/dev/shm/" + testing::UniqueName("metrics");
  region::FormatOptions fo;
  fo.size = 16ull << 20;
  auto region = region::Region::Format(path, fo);
  ASSERT_TRUE(region.ok()) << region.status().ToString();
  asio::io_context io;
  manager::ManagerStats stats;
  manager::MetricsExporter exporter(io, **region, stats, 0, 0);
  ASSERT_TRUE(IsOk(exporter.Listen("tcp:127.0.0.1:0")));
  const uint16_t port = static_cast<uint16_t>(
      std::stoi(exporter.address().substr(exporter.address().rfind(':') + 1)));
  std::thread served([&] { io.run(); });
  auto open_to = [&] {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
    return fd;
  };
  const int slow = open_to();
  ASSERT_EQ(send(slow, "G", 1, MSG_NOSIGNAL), 1);  // a request begun, never ended
  for (int i = 0; i < 200; ++i) {
    const int fd = open_to();
    const std::string request = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    ASSERT_EQ(send(fd, request.data(), request.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(request.size()));
    std::string response;
    char buf[512];
    for (ssize_t n; (n = recv(fd, buf, sizeof buf, 0)) > 0;) response.append(buf, n);
    close(fd);
    ASSERT_EQ(response.rfind("HTTP/1.1 200", 0), 0u) << i << ": " << response;
  }
  // One more connection makes it look again; what it keeps is read on the
  // io thread.
  const int last = open_to();
  std::promise<size_t> kept;
  asio::post(io, [&] { kept.set_value(exporter.reading_connections()); });
  // The slow one and the last (if it was accepted before the count):
  // never the 200 served.
  EXPECT_LE(kept.get_future().get(), 2u);
  close(last);
  close(slow);
  asio::post(io, [&] { exporter.Close(); });
  io.stop();
  served.join();
  unlink(path.c_str());
}

TEST(BoundsTest, ConnectionFloodsLeaveRoomForRealClients) {
  manager::ManagerOptions o = InProcessManagerOptions();
  o.max_connections = 16;
  o.max_unadmitted = 8;
  InProcessManager mgr(o);
  ASSERT_TRUE(IsOk(mgr.Start()));
  std::vector<std::unique_ptr<RawPeer>> flood;
  for (int i = 0; i < 40; ++i) flood.push_back(std::make_unique<RawPeer>(mgr.address()));
  auto c = Client::Connect(mgr.address());
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_LE(mgr.stats().connections.load(std::memory_order_relaxed), 16u);
}

// Out of file descriptors: the accept loop drops what it cannot take
// (instead of spinning on EMFILE) and closes the oldest peers not admitted,
// so that a real client gets in.
TEST(BoundsTest, OutOfDescriptorsRealClientsAreStillServed) {
  manager::ManagerOptions o = InProcessManagerOptions();
  o.max_connections = 100000;  // the descriptor limit is what runs out
  o.max_unadmitted = 100000;
  InProcessManager mgr(o);
  ASSERT_TRUE(IsOk(mgr.Start()));
  // The flood comes from another process: only the manager (this process)
  // runs out.
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t flood = fork();
  if (flood == 0) {
    close(ready[0]);
    std::vector<int> fds;
    auto a = protocol::ParseAddress(mgr.address());
    for (int i = 0; i < 300; ++i) {
      auto fd = protocol::ConnectTo(*a, 2000);
      if (fd.ok()) fds.push_back(*fd);
    }
    char x = 1;
    (void)!write(ready[1], &x, 1);
    pause();
    _exit(0);
  }
  close(ready[1]);
  rlimit old{};
  getrlimit(RLIMIT_NOFILE, &old);
  // Descriptors open now, plus a few: the flood takes the rest.
  int open_now = 0;
  for (int fd = 0; fd < 4096; ++fd) open_now += fcntl(fd, F_GETFD) != -1;
  rlimit low = old;
  low.rlim_cur = static_cast<rlim_t>(open_now + 40);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  char x;
  EXPECT_EQ(read(ready[0], &x, 1), 1);
  close(ready[0]);
  // The real client is another process with descriptors of its own (in
  // this process it would compete with the manager for the last ones).
  const std::string address = mgr.address();
  const int status = gismo::testing::RunInChild([&] {
    setrlimit(RLIMIT_NOFILE, &old);
    auto c = Client::Connect(address);
    if (!c.ok()) fprintf(stderr, "connect: %s\n", c.status().ToString().c_str());
    return c.ok() ? 0 : 1;
  });
  setrlimit(RLIMIT_NOFILE, &old);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "a real client was not served";
  EXPECT_GT(mgr.stats().accept_errors.load(std::memory_order_relaxed), 0u);
  kill(flood, SIGKILL);
  waitpid(flood, nullptr, 0);
}

// A client whose connection closed re-attaches even when the manager
// first turns it away for a passing reason (GISMO_ERR_LIMIT: at its
// connection limit, "try again later"): it tries again, as after a failed
// connect, and gets in once there is room. (Before, any refusal ended the
// re-attach, and the client was lost for good.)
TEST(BoundsTest, AReattachRefusedForNowIsTriedAgain) {
  manager::ManagerOptions o = InProcessManagerOptions();
  o.reattach_ms = 60000;  // the next manager's window for re-attaching
  InProcessManager first(o);
  ASSERT_TRUE(IsOk(first.Start()));
  Client c = testing::MustConnect(first.address());
  first.Stop();  // c's connection closes: it tries to re-attach
  // The next manager of the region serves one connection, and a peer takes
  // it first, through an address of its own (so c cannot come first).
  manager::ManagerOptions o2 = o;
  o2.skip_host_lock = true;  // `first` holds the host's lock until destroyed
  const std::string side = testing::FreshPath("/tmp/" + testing::UniqueName("side") + ".sock");
  o2.listen = {"unix:" + side};
  o2.max_connections = 1;
  InProcessManager second(o2);
  ASSERT_TRUE(IsOk(second.Start()));
  auto peer = std::make_unique<RawPeer>(second.address());
  peer->Hello(second.region_path());
  // Now c's address leads to the second manager, which refuses it.
  ASSERT_EQ(rename(side.c_str(), first.address().substr(5).c_str()), 0) << strerror(errno);
  ASSERT_TRUE(
      Eventually([&] { return second.stats().peers_refused.load(std::memory_order_relaxed) > 0; }));
  peer.reset();  // room for c
  ASSERT_TRUE(Eventually(
      [&] { return second.stats().clients_reattached.load(std::memory_order_relaxed) > 0; }));
  // A lost client's get would fail with GISMO_ERR_CONNECTION.
  auto missing = c.Get(ObjectId::Random(), 10);
  EXPECT_EQ(missing.status().code(), GISMO_ERR_TIMEOUT) << missing.status().ToString();
}

// A Unix socket bound to a fresh path under /tmp (named after `what`,
// into *path) and listening: connects succeed before anyone accepts, so
// no wait for readiness.
int ListenAtFreshPath(const std::string& what, std::string* path) {
  *path = testing::FreshPath("/tmp/" + testing::UniqueName(what) + ".sock");
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path->c_str());
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << strerror(errno);
  EXPECT_EQ(listen(fd, 8), 0);
  return fd;
}

// Relays each connection made to its own Unix socket to the manager at
// `upstream`. Told to (StallNext), it passes the client only the first
// byte of the manager's next answer on the connection open then, and
// nothing more that way: the link stalls in the middle of a frame, open
// (a close by the manager is not passed on either); what the client sends
// still goes through. Connections made later are relayed whole.
class StallingRelay {
 public:
  explicit StallingRelay(std::string upstream) : upstream_(std::move(upstream)) {
    listen_ = ListenAtFreshPath("relay", &path_);
    thread_ = std::thread([this] { Run(); });
  }
  ~StallingRelay() {
    stop_.store(true, std::memory_order_relaxed);
    thread_.join();
    for (const Pair& p : pairs_) {
      close(p.client);
      close(p.manager);
    }
    close(listen_);
    unlink(path_.c_str());
  }
  std::string address() const { return "unix:" + path_; }
  void StallNext() { stall_next_.store(true, std::memory_order_relaxed); }
  int connections() const { return accepted_.load(std::memory_order_relaxed); }
  // From now on, what the clients of the open connections send is lost on
  // the way (a link that fails silently); returns once the relay does so.
  void DropFromClients() {
    const int before = drops_applied_.load(std::memory_order_acquire);
    drop_.store(true, std::memory_order_release);
    while (drops_applied_.load(std::memory_order_acquire) == before) usleep(1000);
  }
  // Closes the open connections, both ways.
  void Cut() { cut_.store(true, std::memory_order_release); }

 private:
  struct Pair {
    int client, manager;
    bool stalled = false, closed = false, dropping = false;
  };
  void Run() {
    char buf[4096];
    while (!stop_.load(std::memory_order_relaxed)) {
      if (drop_.exchange(false, std::memory_order_acq_rel)) {
        for (Pair& p : pairs_) p.dropping = true;
        drops_applied_.fetch_add(1, std::memory_order_release);
      }
      if (cut_.exchange(false, std::memory_order_acq_rel)) {
        for (Pair& p : pairs_) {
          if (p.closed) continue;
          shutdown(p.client, SHUT_RDWR);
          shutdown(p.manager, SHUT_RDWR);
          p.closed = true;
        }
      }
      std::vector<pollfd> fds{{listen_, POLLIN, 0}};
      for (const Pair& p : pairs_) {
        fds.push_back({p.closed ? -1 : p.client, POLLIN, 0});
        fds.push_back({p.closed || p.stalled ? -1 : p.manager, POLLIN, 0});
      }
      if (poll(fds.data(), fds.size(), 20) <= 0) continue;
      if (fds[0].revents & POLLIN) Accept();
      for (size_t i = 0; i < pairs_.size() && 1 + 2 * i < fds.size(); ++i) {
        Pair& p = pairs_[i];
        if (fds[1 + 2 * i].revents != 0) {
          const ssize_t n = read(p.client, buf, sizeof buf);
          if (n > 0 && p.dropping) continue;
          if (n <= 0 || !protocol::SendAll(p.manager, buf, static_cast<size_t>(n)).ok()) {
            shutdown(p.manager, SHUT_RDWR);
            p.closed = true;
            continue;
          }
        }
        if (fds[2 + 2 * i].revents != 0) {
          const ssize_t n = read(p.manager, buf, sizeof buf);
          if (n <= 0) {
            shutdown(p.client, SHUT_RDWR);
            p.closed = true;
            continue;
          }
          if (stall_next_.exchange(false, std::memory_order_relaxed)) {
            p.stalled = true;
            (void)protocol::SendAll(p.client, buf, 1);
          } else if (!protocol::SendAll(p.client, buf, static_cast<size_t>(n)).ok()) {
            shutdown(p.manager, SHUT_RDWR);
            p.closed = true;
          }
        }
      }
    }
  }
  void Accept() {
    const int c = accept4(listen_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) return;
    auto m = protocol::ParseAddress(upstream_);
    auto fd = m.ok() ? protocol::ConnectTo(*m, 5000) : Result<int>(m.status());
    if (!fd.ok()) {
      close(c);
      return;
    }
    pairs_.push_back(Pair{c, *fd});
    accepted_.fetch_add(1, std::memory_order_relaxed);
  }

  std::string upstream_, path_;
  int listen_ = -1;
  std::vector<Pair> pairs_;  // the relay thread's
  std::atomic<bool> stop_{false}, stall_next_{false}, drop_{false}, cut_{false};
  std::atomic<int> accepted_{0}, drops_applied_{0};
  std::thread thread_;
};

// An in-process manager (with `lease_ms`, if given) and a relay in front of
// it, through which the tests below connect the client they break.
struct RelayedManager {
  static manager::ManagerOptions Options(uint32_t lease_ms) {
    manager::ManagerOptions o = InProcessManagerOptions();
    if (lease_ms != 0) o.lease_ms = lease_ms;
    return o;
  }
  explicit RelayedManager(uint32_t lease_ms = 0) : mgr(Options(lease_ms)) {
    started = IsOk(mgr.Start());
    if (started) relay = std::make_unique<StallingRelay>(mgr.address());
  }
  InProcessManager mgr;
  bool started = false;
  std::unique_ptr<StallingRelay> relay;
};

// A client with the key: its waits, their acknowledgements and wake-ups go
// as tagged frames, and a re-attach (its connection cut) starts the tags
// anew on the new connection, with its new nonces.
TEST(KeyTest, AKeyedClientWaitsAndReattachesWithTaggedFrames) {
  KeyFile key_file;
  manager::ManagerOptions o = InProcessManagerOptions();
  o.key_file = key_file.path;
  InProcessManager mgr(o);
  ASSERT_TRUE(IsOk(mgr.Start()));
  StallingRelay relay(mgr.address());
  ScopedEnv env("GISMO_KEY_FILE", key_file.path);
  Client waiter = testing::MustConnect(relay.address());
  Client sealer = testing::MustConnect(mgr.address());
  auto region = region::Region::Open(mgr.region_path());
  ASSERT_TRUE(region.ok()) << region.status().ToString();
  for (int round = 0; round < 2; ++round) {
    SCOPED_TRACE(round);
    const ObjectId id = ObjectId::Random();
    Result<Buffer> got(Status(GISMO_ERR_INTERNAL, "not run"));
    std::thread waiting([&] { got = waiter.Get(id, 30000); });
    ASSERT_TRUE(testing::WaitForGetWaiter(**region, id));
    ASSERT_TRUE(sealer.Put(id, "sealed").ok());
    waiting.join();
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    if (round == 0) {
      relay.Cut();
      ASSERT_TRUE(Eventually(
          [&] { return mgr.stats().clients_reattached.load(std::memory_order_relaxed) == 1; }));
    }
  }
  EXPECT_EQ(relay.connections(), 2);
  EXPECT_EQ(mgr.stats().bad_frame_tags.load(std::memory_order_relaxed), 0u);
}

// A sealer whose connection fails silently cannot pass its seal's notice
// on (it is lost on the way, without an error); the manager, when the
// sealer re-attaches, wakes every waiter, and a blocking get of the object
// elsewhere gets it. (Before, nothing woke the get: it slept to its
// timeout.)
TEST(BoundsTest, ASealWhoseNoticeWasLostWakesItsWaitersWhenTheSealerReattaches) {
  RelayedManager m;
  ASSERT_TRUE(m.started);
  InProcessManager& mgr = m.mgr;
  StallingRelay& relay = *m.relay;
  Client sealer = testing::MustConnect(relay.address());
  Client getter = testing::MustConnect(mgr.address());
  auto region = region::Region::Open(mgr.region_path());
  ASSERT_TRUE(region.ok()) << region.status().ToString();
  const ObjectId id = ObjectId::Random();
  Result<Buffer> got(Status(GISMO_ERR_INTERNAL, "not run"));
  std::thread waiting([&] { got = getter.Get(id, 30000); });
  ASSERT_TRUE(testing::WaitForGetWaiter(**region, id));
  relay.DropFromClients();  // the seal's notice is lost
  ASSERT_TRUE(sealer.Put(id, "sealed while cut off").ok());
  relay.Cut();  // the sealer finds its connection gone and re-attaches
  ASSERT_TRUE(Eventually([&] { return relay.connections() == 2; }));
  waiting.join();
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(got->data()), got->size()),
            "sealed while cut off");
}

// A fake manager at a Unix socket of its own that sends each peer its
// challenge one byte at a time, `pause_ms` apart, until the peer goes away
// or it is destroyed. Each pause is shorter than any bound on one receive.
class DrippingServer {
 public:
  explicit DrippingServer(int pause_ms) : pause_ms_(pause_ms) {
    listen_ = ListenAtFreshPath("drip", &path_);
    thread_ = std::thread([this] { Run(); });
  }
  ~DrippingServer() {
    Stop();
    thread_.join();
    close(listen_);
    unlink(path_.c_str());
  }
  std::string address() const { return "unix:" + path_; }
  void Stop() { stop_.store(true, std::memory_order_relaxed); }

 private:
  void Run() {
    const std::vector<uint8_t> frame = protocol::EncodeChallenge(protocol::Challenge{});
    while (!stop_.load(std::memory_order_relaxed)) {
      pollfd l{listen_, POLLIN, 0};
      if (poll(&l, 1, 20) <= 0) continue;
      const int c = accept4(listen_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      for (size_t i = 0; i < frame.size() && !stop_.load(std::memory_order_relaxed); ++i) {
        if (send(c, &frame[i], 1, MSG_NOSIGNAL) != 1) break;
        // The pause, cut short when the peer closes (or sends: the client
        // sends nothing before the challenge is whole) or the test ends.
        bool gone = false;
        for (int waited = 0; waited < pause_ms_ && !gone; waited += 20) {
          if (stop_.load(std::memory_order_relaxed)) break;
          pollfd p{c, POLLIN, 0};
          gone = poll(&p, 1, 20) != 0;
        }
        if (gone) break;
      }
      close(c);
    }
  }

  const int pause_ms_;
  std::string path_;
  int listen_ = -1;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// A manager (or anything at its address) that drips its first frame, a
// byte at a time well within any bound on one receive, cannot hold a
// connecting client past the handshake's bound (client::kHandshakeTimeoutMs,
// 10 s): the bound is on the whole frame. (Before, each byte restarted it:
// this challenge would have taken over a minute.)
TEST(BoundsTest, AManagerThatDripsItsChallengeCannotStretchTheHandshake) {
  DrippingServer server(/*pause_ms=*/2000);
  auto connecting =
      std::async(std::launch::async, [&] { return Client::Connect(server.address()); });
  const bool ended = connecting.wait_for(std::chrono::seconds(40)) == std::future_status::ready;
  server.Stop();  // a connect still running ends now: the server closes
  auto c = connecting.get();
  EXPECT_TRUE(ended) << "the dripped handshake outlasted its bound";
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), GISMO_ERR_TIMEOUT) << c.status().ToString();
}

// A manager, or the link to it, that stops in the middle of a frame to a
// client: the client's receiver waits for the rest at most half a lease
// (at least 1 s), then takes the connection for broken and re-attaches,
// and a blocking get it was serving registers again and is woken. (Before,
// the receiver waited for the rest for ever: no heartbeat, no wake-up, no
// re-attach. And a wait whose acknowledgement the broken connection took
// along was not registered on the next one: the get slept to its timeout.)
TEST(BoundsTest, AFrameThatStopsHalfwayBreaksTheConnectionAndTheClientReattaches) {
  RelayedManager m(2000);
  ASSERT_TRUE(m.started);
  InProcessManager& mgr = m.mgr;
  StallingRelay& relay = *m.relay;
  Client c = testing::MustConnect(relay.address());
  Client producer = testing::MustConnect(mgr.address());
  ASSERT_EQ(relay.connections(), 1);
  relay.StallNext();  // the wait's acknowledgement stops after its first byte
  const ObjectId id = ObjectId::Random();
  Result<Buffer> got(Status(GISMO_ERR_INTERNAL, "not run"));
  std::thread getter([&] { got = c.Get(id, 60000); });
  ASSERT_TRUE(Eventually([&] { return relay.connections() == 2; }))
      << "the client never left the stalled connection";
  ASSERT_TRUE(Eventually(
      [&] { return mgr.stats().clients_reattached.load(std::memory_order_relaxed) > 0; }));
  ASSERT_TRUE(producer.Put(id, "after the stall").ok());
  getter.join();
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(got->data()), got->size()),
            "after the stall");
}

// Writes what a successor's take-over leaves in the region's owner word:
// another epoch. In a non-coherent region (the simulator's) the word is read
// after an invalidate and written back with a flush, as a manager does.
void NameAnotherManager(region::Region& r) {
  region::Word& owner = r.sb().manager_owner;
  region::InvalidateLines(&owner, sizeof owner);
  owner.store(owner.load(std::memory_order_acquire) + 1000, std::memory_order_release);
  region::FlushLines(&owner, sizeof owner);
}

// A region whose manager_owner names another manager is served by it: the
// connection to the one that welcomed the client may be alive but frozen
// (its socket open, nobody reading), which no timeout of a Unix socket ever
// ends. The client's heartbeat sees the owner word and leaves, to re-attach
// at the address.
TEST(BoundsTest, AClientLeavesAManagerTheRegionNoLongerNames) {
  RelayedManager m(2000);
  ASSERT_TRUE(m.started);
  Client c = testing::MustConnect(m.relay->address());
  ASSERT_EQ(m.relay->connections(), 1);
  auto region = region::Region::Open(m.mgr.region_path());
  ASSERT_TRUE(region.ok()) << region.status().ToString();
  // The manager stops serving at its next tick, but keeps its connections
  // open, nobody reading them, as a frozen one does.
  NameAnotherManager(**region);
  EXPECT_TRUE(Eventually([&] { return m.relay->connections() >= 2; }))
      << "the client stayed on the connection of a manager the region no longer names";
}

// The same without leases (--lease-ms 0: the manager wants no heartbeats):
// the client still looks at the owner word, once a second. (Before, it
// looked only when it beat, so it never left.)
TEST(BoundsTest, AClientWithoutALeaseLeavesAManagerTheRegionNoLongerNames) {
  manager::ManagerOptions o = InProcessManagerOptions();
  o.lease_ms = 0;
  InProcessManager mgr(o);
  ASSERT_TRUE(IsOk(mgr.Start()));
  StallingRelay relay(mgr.address());
  Client c = testing::MustConnect(relay.address());
  ASSERT_EQ(relay.connections(), 1);
  auto region = region::Region::Open(mgr.region_path());
  ASSERT_TRUE(region.ok()) << region.status().ToString();
  NameAnotherManager(**region);
  EXPECT_TRUE(Eventually([&] { return relay.connections() >= 2; }))
      << "the client stayed on the connection of a manager the region no longer names";
}

// While no manager runs nothing can wake a blocking get or a name wait
// (seals and binds notify through the manager), so they look at the region
// themselves, once a second: an object sealed and a name bound meanwhile (a
// coherent region's clients need no manager for either) are seen. (Before,
// they slept until a manager came back: with no timeout, for ever.)
TEST(BoundsTest, BlockingWaitsLookAtTheRegionWhileNoManagerRuns) {
  InProcessManager mgr;
  ASSERT_TRUE(IsOk(mgr.Start()));
  auto region = region::Region::Open(mgr.region_path());
  ASSERT_TRUE(region.ok()) << region.status().ToString();
  if ((*region)->noncoherent()) {
    GTEST_SKIP() << "a non-coherent region's seals and binds go through its manager";
  }
  Client waiter = testing::MustConnect(mgr.address());
  Client sealer = testing::MustConnect(mgr.address());
  const ObjectId id = ObjectId::Random();
  std::atomic<int> done{0};
  Result<Buffer> got(Status(GISMO_ERR_INTERNAL, "not run"));
  Result<gismo_name_info_t> named(Status(GISMO_ERR_INTERNAL, "not run"));
  std::thread getter([&] {
    got = waiter.Get(id, 60000);
    done.fetch_add(1);
  });
  std::thread name_waiter([&] {
    named = waiter.WaitName("while-away", nullptr, 60000);
    done.fetch_add(1);
  });
  // Both waits are registered (the manager raised `waiters`), and then the
  // manager goes: they are asleep when the object and the name come.
  const bool registered =
      Eventually([&] { return testing::ReadShared(**region, (*region)->sb().waiters) == 2; });
  mgr.Stop();
  EXPECT_TRUE(sealer.Put(id, "sealed while no manager runs").ok());
  EXPECT_TRUE(IsOk(sealer.BindName("while-away", id)));
  const bool returned = Eventually([&] { return done.load() == 2; });
  getter.join();
  name_waiter.join();
  ASSERT_TRUE(registered);
  EXPECT_TRUE(returned) << "the waits slept until their timeout";
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->size(), 28u);
  ASSERT_TRUE(named.ok()) << named.status().ToString();
  EXPECT_EQ(std::memcmp(named->id.bytes, id.c_id().bytes, GISMO_ID_SIZE), 0);
}

// Every would-be manager of a coherent region raises manager_epoch before
// its CAS on manager_owner, and one that loses that race to a manager that
// then serves leaves manager_epoch past the server's epoch for good. The
// server's clients stay with it. (Before, each took the raised epoch for a
// new manager and re-attached at every heartbeat, for as long as that
// manager served.)
TEST(BoundsTest, AClaimerThatLostTheLeaseLeavesTheClientsWithTheirManager) {
  RelayedManager m(2000);  // a heartbeat, and a look at the region, every 500 ms
  ASSERT_TRUE(m.started);
  Client c = testing::MustConnect(m.relay->address());
  auto region = region::Region::Open(m.mgr.region_path());
  ASSERT_TRUE(region.ok()) << region.status().ToString();
  region::Word& epoch = (*region)->sb().manager_epoch;
  region::InvalidateLines(&epoch, sizeof epoch);
  epoch.fetch_add(1, std::memory_order_acq_rel);  // the loser's raise
  region::FlushLines(&epoch, sizeof epoch);
  // A wait of 2.5 s: five heartbeats.
  auto missing = c.Get(ObjectId::Random(), 2500);
  EXPECT_EQ(missing.status().code(), GISMO_ERR_TIMEOUT) << missing.status().ToString();
  EXPECT_EQ(m.relay->connections(), 1);
  EXPECT_EQ(m.mgr.stats().clients_reattached.load(std::memory_order_relaxed), 0u);
}

// A fence order whose connection breaks before the reply comes says that
// its outcome is unknown (the manager may have carried it out; it is not
// sent again), at once, not after the reply's timeout.
TEST(BoundsTest, AFenceOrderWhoseReplyIsLostSaysItsOutcomeIsUnknown) {
  RelayedManager m(2000);
  ASSERT_TRUE(m.started);
  Client c = testing::MustConnect(m.relay->address());
  m.relay->StallNext();  // the reply stops after its first byte
  auto fenced = c.Fence(GISMO_FENCE_NODE, 77);
  ASSERT_FALSE(fenced.ok());
  EXPECT_EQ(fenced.status().code(), GISMO_ERR_CONNECTION) << fenced.status().ToString();
  EXPECT_NE(fenced.status().message().find("unknown"), std::string::npos)
      << fenced.status().ToString();
  // The client re-attaches and goes on: an order sent once it has is
  // answered (one sent before fails, as the connection is down).
  Result<std::string> again(Status(GISMO_ERR_INTERNAL, "not run"));
  EXPECT_TRUE(Eventually([&] {
    again = c.Fence(GISMO_FENCE_NODE, 77);
    return again.status().code() != GISMO_ERR_CONNECTION;
  }));
  EXPECT_TRUE(again.ok()) << again.status().ToString();
}

// ---- what a peer's claim can make the manager kill ---------------------

// The identity a client claims at its hello (doc/failure.md), as a process
// of this kernel: `pid`, with its start time as anyone reads it in /proc.
fence::ProcessIdentity ClaimOf(pid_t pid) {
  fence::ProcessIdentity who = fence::Lookup(pid);
  EXPECT_NE(who.start_time, 0u);
  return who;
}

// A child of this process that maps what this process maps (the in-process
// manager's region among it) and waits to be killed.
pid_t ForkSleeper() {
  const pid_t pid = fork();
  if (pid == 0) {
    for (;;) pause();
  }
  return pid;
}

// How `pid` ended after this process sends it SIGTERM: SIGKILL if a SIGKILL
// reached it first.
int EndedBy(pid_t pid) {
  kill(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}

// A TCP client of the manager's kernel, suspected: its connection closes and
// it does not re-attach. Its pid is only its word (a TCP peer has no
// SO_PEERCRED) and the manager kills the process it names only if that
// process maps the region, as a node agent checks: a client claiming
// another program's identity has that program left alone; one naming a
// process that maps the region has it killed. Returns when the manager has
// suspected it (and so decided).
void SuspectTcpClientClaiming(InProcessManager& mgr, pid_t pid) {
  const uint64_t suspected = mgr.stats().clients_suspected.load(std::memory_order_relaxed);
  {
    RawPeer liar(mgr.listen_addresses()[1]);
    liar.SetIdentity(ClaimOf(pid));
    liar.Hello(mgr.region_path());
  }
  ASSERT_TRUE(Eventually(
      [&] { return mgr.stats().clients_suspected.load(std::memory_order_relaxed) > suspected; }));
  RoundTrip(mgr.address());  // the manager's handling of the suspect is over
}

manager::ManagerOptions LocalFenceOptions() {
  manager::ManagerOptions o = WithTcp(InProcessManagerOptions());
  o.local_fence = true;  // only processes named by TCP claims are at stake
  o.reattach_ms = 50;
  o.lease_ms = 0;
  return o;
}

// Fence orders are the operator's word, through a client of the region: a
// node agent, admitted without proving the region, is refused, and the
// node it named keeps its clients.
TEST(FenceClaimTest, ANodeAgentCannotOrderAFence) {
  InProcessManager mgr;
  ASSERT_TRUE(IsOk(mgr.Start()));
  RawPeer client(mgr.address());
  client.SetNode(5);
  client.Hello(mgr.region_path());
  RawPeer agent(mgr.address());
  agent.AgentHello(7);
  protocol::FenceOrder order;
  order.target = protocol::FenceOrder::Target::kNode;
  order.value = 5;
  ASSERT_TRUE(IsOk(agent.Send(protocol::EncodeFenceOrder(3, order))));
  FrameHeader h;
  std::vector<uint8_t> payload;
  ASSERT_TRUE(IsOk(agent.Receive(&h, &payload)));
  EXPECT_EQ(h.type, MsgType::kFenceReply);
  EXPECT_EQ(h.request_id, 3u);
  protocol::Reader r(payload);
  EXPECT_EQ(r.U32(), static_cast<uint32_t>(GISMO_ERR_PERMISSION));
  EXPECT_NE(r.Str().find("node agent"), std::string::npos);
  // The reply follows the fence it would have done.
  EXPECT_EQ(mgr.stats().nodes_fenced.load(std::memory_order_relaxed), 0u);
  EXPECT_EQ(mgr.stats().clients_recovered.load(std::memory_order_relaxed), 0u);
}

// An operator's fence of a node does what a fence command's success does:
// its clients recovered (the operator's own spared), and its node agent
// closed (it stayed connected; security.md: an agent whose node is fenced
// is closed).
TEST(FenceClaimTest, AnOperatorsNodeFenceClosesThatNodesAgent) {
  InProcessManager mgr;
  ASSERT_TRUE(IsOk(mgr.Start()));
  RawPeer client(mgr.address());
  client.SetNode(5);
  client.Hello(mgr.region_path());
  RawPeer agent(mgr.address());
  agent.AgentHello(5);
  RawPeer other_agent(mgr.address());
  other_agent.AgentHello(6);
  RawPeer operator_client(mgr.address());
  operator_client.SetNode(5);  // its own client is spared
  operator_client.Hello(mgr.region_path());
  protocol::FenceOrder order;
  order.target = protocol::FenceOrder::Target::kNode;
  order.value = 5;
  ASSERT_TRUE(IsOk(operator_client.Send(protocol::EncodeFenceOrder(3, order))));
  for (;;) {
    FrameHeader h;
    std::vector<uint8_t> payload;
    ASSERT_TRUE(IsOk(operator_client.Receive(&h, &payload)));
    if (h.type != MsgType::kFenceReply) continue;
    protocol::Reader r(payload);
    EXPECT_EQ(r.U32(), static_cast<uint32_t>(GISMO_OK));
    EXPECT_NE(r.Str().find("1 client(s) recovered"), std::string::npos);
    break;
  }
  EXPECT_TRUE(agent.ClosedByManager());
  EXPECT_TRUE(client.ClosedByManager());
  // Another node's agent, and the operator, stay.
  SendAndSync(operator_client, protocol::Writer().Frame(MsgType::kCancelWait, 99));
  pollfd p{other_agent.fd(), POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 0), 0) << "another node's agent was closed";
}

// A program that maps no region (`sleep`), killed if the test dies first.
void StartNonClient(testing::Process* victim) {
  testing::SpawnOptions so;
  so.argv = {"sleep", "600"};
  so.parent_death_signal = SIGKILL;
  ASSERT_TRUE(victim->Start(so)) << victim->error();
}

TEST(FenceClaimTest, ATcpClientCannotGetAnotherProgramKilled) {
  testing::Process victim;
  ASSERT_NO_FATAL_FAILURE(StartNonClient(&victim));
  InProcessManager mgr(LocalFenceOptions());
  ASSERT_TRUE(IsOk(mgr.Start()));
  SuspectTcpClientClaiming(mgr, victim.pid());
  const int status = victim.KillAndWait(SIGTERM);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM)
      << "the manager killed a program that does not map its region";
}

TEST(FenceClaimTest, ATcpClientOfThisKernelThatMapsTheRegionIsKilled) {
  InProcessManager mgr(LocalFenceOptions());
  ASSERT_TRUE(IsOk(mgr.Start()));
  const pid_t client = ForkSleeper();  // maps the region, as this process does
  ASSERT_GT(client, 0);
  SuspectTcpClientClaiming(mgr, client);
  EXPECT_EQ(EndedBy(client), SIGKILL) << "the suspect was not killed";
}

// A client pinned on the manager's kernel (its identity names a running
// process here, which maps no region and so is not killed) that claims
// another node is not on that node: a fence of that node that leaves its
// process running does not recover it (nor is the fence command run for it
// again), whether the fence was run for it or for a client that is there.
// It is recovered when its process exits.
TEST(FenceClaimTest, AClientOfThisKernelIsNotFencedThroughTheNodeItClaims) {
  testing::Process local;
  ASSERT_NO_FATAL_FAILURE(StartNonClient(&local));
  const std::string fenced_nodes = "/tmp/" + testing::UniqueName("fenced-nodes");
  manager::ManagerOptions o = LocalFenceOptions();
  o.fence_command = "echo >> " + fenced_nodes;  // the node is its last word
  InProcessManager mgr(o);
  ASSERT_TRUE(IsOk(mgr.Start()));
  auto region = region::Region::Open(mgr.region_path());
  ASSERT_TRUE(region.ok()) << region.status().ToString();
  uint32_t pinned_slot = 0;
  {
    RawPeer liar(mgr.listen_addresses()[1]);
    liar.SetNode(3);
    liar.SetIdentity(ClaimOf(local.pid()));
    pinned_slot = liar.Hello(mgr.region_path()).slot;
  }
  ASSERT_GT(pinned_slot, 0u);
  const auto pinned_state = [&] {
    return region::SlotStateOf(testing::ReadShared(**region, (*region)->slot(pinned_slot).state));
  };
  ASSERT_TRUE(Eventually([&] { return pinned_state() == region::SlotState::kSuspected; }));
  {
    fence::ProcessIdentity elsewhere = fence::Self();
    elsewhere.boot_id ^= 0x5a5a;
    RawPeer remote(mgr.listen_addresses()[1]);
    remote.SetNode(3);
    remote.SetIdentity(elsewhere);
    remote.Hello(mgr.region_path());
  }
  ASSERT_TRUE(
      Eventually([&] { return mgr.stats().clients_fenced.load(std::memory_order_relaxed) >= 1; }));
  RoundTrip(mgr.address());
  EXPECT_EQ(pinned_state(), region::SlotState::kSuspected)
      << "the client of this kernel was recovered by a fence of the node it claims";
  EXPECT_EQ(mgr.stats().clients_fenced.load(std::memory_order_relaxed), 1u);
  local.KillAndWait(SIGKILL);
  EXPECT_TRUE(Eventually([&] { return pinned_state() != region::SlotState::kSuspected; }));
  std::ifstream in(fenced_nodes);
  std::stringstream runs;
  runs << in.rdbuf();
  // Once or twice (for each suspect, unless the second came while the
  // first's ran), never again for a fence that missed.
  EXPECT_TRUE(runs.str() == "3\n" || runs.str() == "3\n3\n")
      << "fence command runs: " << runs.str();
  unlink(fenced_nodes.c_str());
}

// The identities a previous manager left in the region's slots are claims
// too (anyone who maps the region can write them): the next manager kills
// only a process that maps the region.
TEST(FenceClaimTest, AnIdentityLeftInTheRegionCannotGetAnotherProgramKilled) {
  testing::Process victim;
  ASSERT_NO_FATAL_FAILURE(StartNonClient(&victim));
  manager::ManagerOptions o = LocalFenceOptions();
  InProcessManager first(o);
  ASSERT_TRUE(IsOk(first.Start()));
  first.Stop();
  {
    auto region = region::Region::Open(o.region_path);
    ASSERT_TRUE(region.ok()) << region.status().ToString();
    region::ClientSlotHeader& h = (*region)->slot(1);
    const fence::ProcessIdentity::Words w = ClaimOf(victim.pid()).ToWords();
    for (int k = 0; k < 4; ++k) h.identity[k].store(w[k], std::memory_order_relaxed);
    h.client_id.store(99, std::memory_order_relaxed);
    h.state.store(region::PackSlotState(region::SlotState::kActive, 1), std::memory_order_seq_cst);
  }
  o.skip_host_lock = true;  // `first` holds the host's lock until destroyed
  InProcessManager second(o);
  ASSERT_TRUE(IsOk(second.Start()));
  // It waits for the slot's client to re-attach, then suspects it.
  ASSERT_TRUE(Eventually(
      [&] { return second.stats().clients_suspected.load(std::memory_order_relaxed) > 0; }));
  RoundTrip(second.address());
  const int status = victim.KillAndWait(SIGTERM);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM)
      << "the manager killed a program that does not map its region";
}

// --format wipes the region, so never under a manager that serves it: one
// of another host (emulated here: the host's lock skipped) keeps it, and
// --standby with --format is refused outright. Before, a second manager
// with --format formatted the region the first one served, its objects
// gone and the first one ended by the lost lease.
TEST(ModesTest, FormatIsRefusedWhileAnotherManagerServesTheRegion) {
  manager::ManagerOptions o = InProcessManagerOptions();
  InProcessManager first(o);
  ASSERT_TRUE(IsOk(first.Start()));
  Client c = testing::MustConnect(first.address());
  ASSERT_TRUE(c.Put(ObjectId::FromName("kept"), "kept").ok());
  manager::ManagerOptions wipe = o;
  wipe.skip_host_lock = true;  // `first` holds the host's lock
  wipe.force_format = true;
  wipe.listen = {"unix:" + testing::FreshPath("/tmp/" + testing::UniqueName("wipe") + ".sock")};
  {
    // A Manager, not an InProcessManager: that one removes its region.
    manager::Manager second(wipe);
    Status s = second.Start();
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.message().find("--format"), std::string::npos) << s.ToString();
  }
  manager::ManagerOptions standby = wipe;
  standby.standby = true;
  {
    manager::Manager third(standby);
    Status s = third.Start();
    EXPECT_EQ(s.code(), GISMO_ERR_INVALID_ARGUMENT) << s.ToString();
  }
  auto kept = c.Get(ObjectId::FromName("kept"), 0);
  ASSERT_TRUE(kept.ok()) << kept.status().ToString();
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(kept->data()), kept->size()), "kept");
  EXPECT_TRUE(c.Contains(ObjectId::FromName("kept")).ok());
}

// ---- files and modes ---------------------------------------------------

TEST(ModesTest, SocketAndRegionModesAndGroupAreThoseConfigured) {
  manager::ManagerOptions o = InProcessManagerOptions();
  o.socket_mode = 0600;
  o.region_mode = 0640;
  o.group = std::to_string(getgid());
  InProcessManager mgr(o);
  ASSERT_TRUE(IsOk(mgr.Start()));
  struct stat st {};
  ASSERT_EQ(stat(mgr.address().substr(5).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_gid, getgid());
  ASSERT_EQ(stat(mgr.region_path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  // The default: group members may connect.
  InProcessManager dflt;
  ASSERT_TRUE(IsOk(dflt.Start()));
  ASSERT_EQ(stat(dflt.address().substr(5).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  ASSERT_EQ(stat(dflt.region_path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0660u);
}

TEST(ModesTest, DefaultSocketIsNeverInAWorldWritableDirectory) {
  if (geteuid() == 0) {
    auto a = protocol::DefaultAddress(/*create=*/false);
    ASSERT_TRUE(a.ok()) << a.status().ToString();
    EXPECT_EQ(*a, "unix:/run/gismo/gismo.sock");
    return;
  }
  const std::string dir = "/tmp/" + testing::UniqueName("xdg");
  ASSERT_EQ(mkdir(dir.c_str(), 0700), 0);
  {
    ScopedEnv xdg("XDG_RUNTIME_DIR", dir);
    auto a = protocol::DefaultAddress(/*create=*/true);
    ASSERT_TRUE(a.ok()) << a.status().ToString();
    EXPECT_EQ(*a, "unix:" + dir + "/gismo.sock");
    chmod(dir.c_str(), 0777);
    auto bad = protocol::DefaultAddress(/*create=*/true);
    EXPECT_FALSE(bad.ok());
  }
  rmdir(dir.c_str());
}

// ---- the node agent --------------------------------------------------------

// Starts gismo-agent for node 7 of the manager at `address`, and waits for
// its ready line. `env`: more "NAME=value" for it (its key file).
void StartAgent(testing::Process* agent, const std::string& address, const std::string& region,
                std::vector<std::string> env = {}) {
  testing::SpawnOptions options;
  options.argv = {GISMO_AGENT_BIN, "--node", "7", "--manager", address, "--region", region};
  options.env = std::move(env);
  options.capture_stdout = true;
  options.stderr_to_stdout = true;
  options.parent_death_signal = SIGKILL;
  ASSERT_TRUE(agent->Start(options)) << agent->error();
  std::string line;
  ASSERT_TRUE(agent->ReadLineContaining("gismo-agent ready", 60, &line)) << line;
}

// A node agent heartbeats while it works on fence orders (its reader thread
// does, while workers carry the orders out): a kill takes up to
// --kill-timeout-ms. Here the lease is 400 ms: a client of its node whose
// connection closes while its process runs is probed. When one thread
// did both and a probe took 500 ms, the manager dropped the agent in the
// middle of it (its answer lost, the agent reconnecting).
TEST(NodeAgentTest, AnAgentBusyWithAFenceOrderKeepsItsLease) {
  manager::ManagerOptions o = InProcessManagerOptions();
  o.lease_ms = 400;
  o.reattach_ms = 600000;  // a detached client is probed, never suspected here
  InProcessManager mgr(o);
  ASSERT_TRUE(IsOk(mgr.Start()));
  testing::Process agent;
  ASSERT_NO_FATAL_FAILURE(StartAgent(&agent, mgr.address(), mgr.region_path()));
  testing::Process runs;  // the clients' process, as they claim: it runs
  ASSERT_NO_FATAL_FAILURE(StartNonClient(&runs));
  std::string line;
  const uint64_t expired = mgr.stats().leases_expired.load(std::memory_order_relaxed);
  {
    RawPeer client(mgr.address());
    client.SetNode(7);
    client.SetIdentity(ClaimOf(runs.pid()));
    client.Hello(mgr.region_path());
  }  // it closes here: detached, and its process probed
  ASSERT_TRUE(agent.ReadLineContaining("it still runs", 60, &line)) << line;
  RoundTrip(mgr.address());  // the manager's loop has run since
  EXPECT_EQ(mgr.stats().leases_expired.load(std::memory_order_relaxed), expired)
      << "the manager dropped the agent while it probed";
  // Its workers block SIGTERM and SIGINT: the reader thread takes them, its
  // poll interrupted, and stops at once (a worker's handler only set the
  // stop flag, which the reader saw at its next heartbeat).
  EXPECT_EQ(testing::ExpectOnlyTheMainThreadTakesSignals("/proc/" + std::to_string(agent.pid()),
                                                         agent.pid()),
            8);
  agent.KillAndWait(SIGKILL);
}

// After the access, a keyed connection's frames carry tags either way
// (protocol/frame_auth.h). A frame injected by anyone on the network path
// (here: an agent's result that says a live, detached client is gone),
// replayed, or changed, ends the connection unheard. Without the tags, the
// injected result had the client recovered while it ran.
TEST(KeyTest, AKeyedConnectionsFramesAreTaggedAndAForgedOneIsNotHeard) {
  KeyFile key_file;
  const protocol::Key key = key_file.Load();
  manager::ManagerOptions o = WithTcp(InProcessManagerOptions());
  o.key_file = key_file.path;
  o.local_fence = false;
  o.reattach_ms = 600000;  // detached, never suspected here
  o.lease_ms = 0;
  InProcessManager mgr(o);
  ASSERT_TRUE(IsOk(mgr.Start()));
  const std::string tcp = mgr.listen_addresses()[1];
  {
    // Tagged both ways: the welcome verifies (ReadWelcome), a tagged
    // goodbye is answered with a tagged bye.
    RawPeer peer(tcp);
    EXPECT_NE(peer.Hello(mgr.region_path(), &key).slot, 0u);
    ASSERT_TRUE(IsOk(peer.Send(protocol::Writer().Frame(MsgType::kGoodbye, 1))));
    FrameHeader h;
    std::vector<uint8_t> payload;
    ASSERT_TRUE(IsOk(peer.Receive(&h, &payload)));
    EXPECT_EQ(h.type, MsgType::kBye);
  }
  // A detached client of node 7, whose process runs: its agent is asked
  // whether it is gone.
  const auto detach_client = [&] {
    RawPeer client(mgr.address());
    client.SetNode(7);
    client.SetIdentity(ClaimOf(getpid()));
    return client.Hello(mgr.region_path());
  };
  enum class Forgery { kUntagged, kReplayed, kChanged };
  uint64_t bad_tags = 0;
  for (const Forgery forgery : {Forgery::kUntagged, Forgery::kReplayed, Forgery::kChanged}) {
    SCOPED_TRACE(static_cast<int>(forgery));
    RawPeer agent(tcp);
    agent.SetIdentity(ClaimOf(getpid()));
    agent.AgentHello(7, &key);
    const protocol::Welcome client = detach_client();
    FrameHeader h;
    std::vector<uint8_t> payload;
    do {
      ASSERT_TRUE(IsOk(agent.Receive(&h, &payload)));  // tagged
    } while (h.type != MsgType::kFenceProcess);
    protocol::FenceProcessResult gone;
    gone.slot = client.slot;
    gone.session = client.session;
    const std::vector<uint8_t> result = protocol::EncodeFenceProcessResult(h.request_id, gone);
    switch (forgery) {
      case Forgery::kUntagged:
        ASSERT_TRUE(IsOk(agent.SendUntagged(result)));
        break;
      case Forgery::kReplayed: {
        // A heartbeat's tagged bytes, sent twice: the copy carries the tag
        // of the frame before it.
        const auto beat = agent.Tagged(protocol::Writer().Frame(MsgType::kHeartbeat, 0));
        ASSERT_TRUE(IsOk(agent.SendUntagged(beat)));
        ASSERT_TRUE(IsOk(agent.SendUntagged(beat)));
        ASSERT_TRUE(IsOk(agent.Send(result)));  // never read
        break;
      }
      case Forgery::kChanged: {
        // The agent's own answer that the process still runs, made to say
        // it is gone: the status code is the payload's 13th byte on.
        protocol::FenceProcessResult runs = gone;
        runs.status = Status(GISMO_ERR_BUSY, "still runs");
        auto frame = agent.Tagged(protocol::EncodeFenceProcessResult(h.request_id, runs));
        const uint32_t ok = GISMO_OK;
        std::memcpy(frame.data() + protocol::kHeaderSize + 12, &ok, sizeof ok);
        ASSERT_TRUE(IsOk(agent.SendUntagged(frame)));
        break;
      }
    }
    EXPECT_TRUE(agent.ClosedByManager());
    EXPECT_EQ(mgr.stats().bad_frame_tags.load(std::memory_order_relaxed), ++bad_tags);
    EXPECT_EQ(mgr.stats().clients_recovered.load(std::memory_order_relaxed), 0u)
        << "a forged fence result recovered a live client";
  }
}

// A node agent carries out fence orders before probes, several at once: a
// fence order queued behind probes of live processes (100 ms each) past
// --agent-timeout-ms had the whole node fenced, or, without a fence
// command, its client left suspected for an operator. Here 200 clients of
// the node detach while their process runs (200 probes: 20 s one after
// the other, 2.5 s on 8 workers first come first served), then a client's
// lease expires, and its agent has 1 s to fence it. The agent is keyed,
// over TCP: its frames carry tags both ways.
TEST(NodeAgentTest, AFenceOrderIsNotQueuedBehindProbes) {
  KeyFile key_file;
  manager::ManagerOptions o = WithTcp(InProcessManagerOptions());
  o.key_file = key_file.path;
  o.local_fence = false;
  o.format.max_clients = 256;
  o.lease_ms = 400;
  o.reattach_ms = 600000;  // the detached are probed, never suspected here
  o.agent_timeout_ms = 1000;
  InProcessManager mgr(o);
  ASSERT_TRUE(IsOk(mgr.Start()));
  testing::Process agent;
  ASSERT_NO_FATAL_FAILURE(StartAgent(&agent, mgr.listen_addresses()[1], mgr.region_path(),
                                     {"GISMO_KEY_FILE=" + key_file.path}));
  testing::Process runs;  // the detached clients' process, as they claim
  ASSERT_NO_FATAL_FAILURE(StartNonClient(&runs));
  for (int i = 0; i < 200; ++i) {
    RawPeer client(mgr.address());
    client.SetNode(7);
    client.SetIdentity(ClaimOf(runs.pid()));
    client.Hello(mgr.region_path());
  }                                             // each closes: detached, and its process probed
  const pid_t suspect_process = ForkSleeper();  // maps the region: the agent kills it
  ASSERT_GT(suspect_process, 0);
  RawPeer suspect(mgr.address());  // connected, silent: its lease expires
  suspect.SetNode(7);
  suspect.SetIdentity(ClaimOf(suspect_process));
  suspect.Hello(mgr.region_path());
  EXPECT_TRUE(Eventually([&] {
    return mgr.stats().clients_recovered.load(std::memory_order_relaxed) == 1;
  })) << "the suspect was not fenced through its agent";
  EXPECT_EQ(EndedBy(suspect_process), SIGKILL);
  EXPECT_EQ(mgr.stats().bad_frame_tags.load(std::memory_order_relaxed), 0u);
  agent.KillAndWait(SIGKILL);
}

// The next fence order (not a probe) `agent` gets: its request id, and the
// order in *order; 0 if the connection ends first.
uint64_t NextFenceOrder(RawPeer& agent, protocol::FenceProcessOrder* order) {
  for (;;) {
    FrameHeader h;
    std::vector<uint8_t> payload;
    if (!IsOk(agent.Receive(&h, &payload))) return 0;
    if (h.type != MsgType::kFenceProcess) continue;
    protocol::Reader r(payload);
    if (!protocol::DecodeFenceProcessOrder(r, order)) return 0;
    if (!order->probe_only) return h.request_id;
  }
}

// A fence result answers an order: one with request id 0, which no order
// has, is ignored. (It matched a member with no probe outstanding, and an
// agent could have a live, detached client recovered without being asked.)
TEST(NodeAgentTest, AFenceResultForNoOrderIsIgnored) {
  manager::ManagerOptions o = InProcessManagerOptions();
  o.local_fence = false;
  o.reattach_ms = 600000;  // detached, never suspected here
  o.lease_ms = 0;
  InProcessManager mgr(o);
  ASSERT_TRUE(IsOk(mgr.Start()));
  RawPeer agent(mgr.address());
  agent.SetIdentity(ClaimOf(getpid()));
  agent.AgentHello(7);
  uint32_t slot = 0;
  uint64_t session = 0;
  {
    RawPeer client(mgr.address());
    client.SetNode(7);
    client.SetIdentity(ClaimOf(getpid()));
    const protocol::Welcome w = client.Hello(mgr.region_path());
    slot = w.slot;
    session = w.session;
  }  // it closes here: detached, and its process probed
  FrameHeader h;
  std::vector<uint8_t> payload;
  ASSERT_TRUE(IsOk(agent.Receive(&h, &payload)));
  ASSERT_EQ(h.type, MsgType::kFenceProcess);
  protocol::FenceProcessResult result;
  result.slot = slot;
  result.session = session;
  result.status = Status(GISMO_ERR_BUSY, "it still runs");
  ASSERT_TRUE(IsOk(agent.Send(protocol::EncodeFenceProcessResult(h.request_id, result))));
  result.status = Status();
  ASSERT_TRUE(IsOk(agent.Send(protocol::EncodeFenceProcessResult(0, result))));
  // A goodbye on the same connection: its answer comes after the result is
  // handled.
  ASSERT_TRUE(IsOk(agent.Send(protocol::Writer().Frame(MsgType::kGoodbye, 9))));
  do {
    ASSERT_TRUE(IsOk(agent.Receive(&h, &payload)));
  } while (h.type != MsgType::kBye);
  EXPECT_EQ(mgr.stats().clients_recovered.load(std::memory_order_relaxed), 0u)
      << "a result for no order recovered a live client";
}

// An agent that replaces one to which a fence order is outstanding (a
// restart) is asked at once: the manager used to wait out the old order's
// time, then fence the whole node with a live agent connected. An agent
// that answers "ask again" (BUSY: a non-coherent write-back that could not
// finish yet) is asked again, not taken for one that failed. Orders not
// answered are waited for longer than this test runs, so a manager that
// did not ask would leave it waiting.
TEST(NodeAgentTest, AReplacingAgentIsAskedAtOnceAndOneThatSaysAskAgainIs) {
  manager::ManagerOptions o = InProcessManagerOptions();
  o.local_fence = false;
  o.reattach_ms = 50;
  o.lease_ms = 0;
  o.agent_timeout_ms = 3'600'000;
  InProcessManager mgr(o);
  ASSERT_TRUE(IsOk(mgr.Start()));
  testing::Process runs;  // the client's process, as it claims: it runs
  ASSERT_NO_FATAL_FAILURE(StartNonClient(&runs));
  auto first = std::make_unique<RawPeer>(mgr.address());
  first->SetIdentity(ClaimOf(getpid()));  // of the clients' PID namespace
  first->AgentHello(7);
  {
    RawPeer client(mgr.address());
    client.SetNode(7);
    client.SetIdentity(ClaimOf(runs.pid()));
    client.Hello(mgr.region_path());
  }  // it closes here: detached, then suspected, and its agent ordered to fence it
  protocol::FenceProcessOrder order;
  ASSERT_NE(NextFenceOrder(*first, &order), 0u);
  first.reset();  // gone without an answer
  RawPeer second(mgr.address());
  second.SetIdentity(ClaimOf(getpid()));
  second.AgentHello(7);
  uint64_t id = NextFenceOrder(second, &order);
  ASSERT_NE(id, 0u) << "the new agent was not asked";
  protocol::FenceProcessResult result;
  result.slot = order.slot;
  result.session = order.session;
  result.status = Status(GISMO_ERR_BUSY, "records kept changing; ask again");
  ASSERT_TRUE(IsOk(second.Send(protocol::EncodeFenceProcessResult(id, result))));
  id = NextFenceOrder(second, &order);
  ASSERT_NE(id, 0u) << "the agent was not asked again";
  EXPECT_EQ(mgr.stats().clients_recovered.load(std::memory_order_relaxed), 0u);
  result.status = Status();
  ASSERT_TRUE(IsOk(second.Send(protocol::EncodeFenceProcessResult(id, result))));
  EXPECT_TRUE(Eventually(
      [&] { return mgr.stats().clients_recovered.load(std::memory_order_relaxed) == 1; }));
  EXPECT_EQ(mgr.stats().nodes_fenced.load(std::memory_order_relaxed), 0u);
}

}  // namespace
}  // namespace gismo
