#include "bench_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>
#ifdef GISMO_BENCH_XXH3_DISPATCH
#define XXH_DISPATCH_DISABLE_REPLACE  // the dispatcher is called by name
#include <xxh_x86dispatch.h>
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

namespace gismo::bench {

Stats Summarize(std::vector<double> v) {
  Stats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.n = v.size();
  s.min = v.front();
  s.max = v.back();
  auto rank = [&](double q) {
    size_t r = static_cast<size_t>(std::ceil(q * v.size()));
    return v[std::clamp<size_t>(r, 1, v.size()) - 1];
  };
  s.median = v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  s.p99 = rank(0.99);
  double sum = 0;
  for (double x : v) sum += x;
  s.mean = sum / v.size();
  return s;
}

json ToJson(const Stats& s) {
  return {{"n", s.n},     {"min", s.min},   {"median", s.median},
          {"p99", s.p99}, {"mean", s.mean}, {"max", s.max}};
}

namespace {
void (*die_hook)() = nullptr;
}  // namespace

void OnDie(void (*hook)()) { die_hook = hook; }

void Die(const std::string& what) {
  if (auto hook = std::exchange(die_hook, nullptr)) hook();
  fprintf(stderr, "\ngismo-bench: %s\n", what.c_str());
  fflush(stderr);
  _exit(2);
}

void Check(const Status& s, const std::string& what) {
  if (!s.ok()) Die(what + ": " + s.ToString());
}

void Progress(const std::string& line) {
  fprintf(stderr, "\r\033[K%s", line.c_str());
  fflush(stderr);
}
void ProgressDone() {
  fprintf(stderr, "\r\033[K");
  fflush(stderr);
}

void FillRandom(void* p, size_t n, uint64_t seed) {
  // xorshift64*: fast enough that filling is bound by memory bandwidth.
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  auto* q = static_cast<uint8_t*>(p);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    uint64_t v = x * 0x2545f4914f6cdd1dull;
    std::memcpy(q + i, &v, 8);
  }
  for (; i < n; ++i) q[i] = static_cast<uint8_t>(x >> (8 * (i & 7)));
}

uint64_t Hash(const void* p, size_t n) {
#ifdef GISMO_BENCH_XXH3_DISPATCH
  return XXH3_64bits_dispatch(p, n);
#else
  return XXH3_64bits(p, n);
#endif
}

StreamingHash::StreamingHash() : state_(XXH3_createState()) {
  if (state_ == nullptr) Die("XXH3_createState: out of memory");
  Reset();
}
StreamingHash::~StreamingHash() { XXH3_freeState(state_); }
void StreamingHash::Reset() { XXH3_64bits_reset(state_); }
void StreamingHash::Update(const void* p, size_t n) {
#ifdef GISMO_BENCH_XXH3_DISPATCH
  XXH3_64bits_update_dispatch(state_, p, n);
#else
  XXH3_64bits_update(state_, p, n);
#endif
}
uint64_t StreamingHash::Digest() const { return XXH3_64bits_digest(state_); }

MemInfo ReadMemInfo() {
  MemInfo m;
  std::ifstream f("/proc/self/status");
  std::string key;
  uint64_t kb;
  std::string line;
  while (std::getline(f, line)) {
    std::istringstream ls(line);
    if (!(ls >> key >> kb)) continue;
    if (key == "VmHWM:") m.vm_hwm = kb * 1024;
    if (key == "RssAnon:") m.rss_anon = kb * 1024;
    if (key == "RssShmem:") m.rss_shmem = kb * 1024;
  }
  return m;
}

json ToJson(const MemInfo& m) {
  return {{"vm_hwm", m.vm_hwm}, {"rss_anon", m.rss_anon}, {"rss_shmem", m.rss_shmem}};
}

std::string DefaultManagerBin() {
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe");
  for (auto p : {self.parent_path().parent_path() / "tools" / "gismo-manager",
                 self.parent_path() / "gismo-manager"}) {
    if (std::filesystem::exists(p)) return p.string();
  }
  return "gismo-manager";
}

testing::ManagerProcess StartManager(const std::string& manager_bin, const std::string& size,
                                     const std::string& listen,
                                     const std::vector<std::string>& extra_args) {
  testing::ManagerProcessOptions o;
  o.binary = manager_bin;
  o.size = size;
  if (!listen.empty()) o.listen = {listen};
  o.extra_args = extra_args;
  o.parent_death_signal = SIGTERM;  // a benchmark that dies takes its manager along
  testing::ManagerProcess m(std::move(o));
  if (!m.Start()) Die("gismo-manager (" + manager_bin + "): " + m.error());
  return m;
}

namespace {
void ReplaceAll(std::string& s, const std::string& from, const std::string& to) {
  for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) {
    s.replace(p, from.size(), to);
  }
}
}  // namespace

std::string Placement::HostOf(int node) const {
  std::string h = host_template;
  ReplaceAll(h, "{node1}", std::to_string(NodeId(node) + 1));
  ReplaceAll(h, "{node}", std::to_string(NodeId(node)));
  return h;
}

namespace {

std::vector<std::string> PrefixArgs(const Placement& where, int node) {
  std::vector<std::string> out;
  std::istringstream in(where.exec_prefix);
  std::string tok;
  while (in >> tok) {
    ReplaceAll(tok, "{node}", std::to_string(where.NodeId(node)));
    out.push_back(tok);
  }
  return out;
}

testing::Process Spawn(const Placement& where, int node, const std::vector<std::string>& cmd,
                       bool capture_stdout) {
  testing::SpawnOptions o;
  o.argv = PrefixArgs(where, node);
  o.argv.insert(o.argv.end(), cmd.begin(), cmd.end());
  o.env = {"GISMO_NODE=" + std::to_string(where.NodeId(node))};
  if (!where.address.empty()) o.env.push_back("GISMO_ADDRESS=" + where.address);
  if (!where.region_path.empty()) o.env.push_back("GISMO_REGION=" + where.region_path);
  o.capture_stdout = capture_stdout;
  o.discard_stdout = !capture_stdout;
  testing::Process p;
  if (!p.Start(o)) Die(p.error());
  return p;
}

}  // namespace

pid_t SpawnCommand(const Placement& where, int node, const std::vector<std::string>& argv) {
  return Spawn(where, node, argv, false).Release();
}

Worker::Worker(const Placement& where, int node, const json& args) {
  std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  process_ = Spawn(where, node, {self, "worker", args.dump()}, true);
}

void Worker::WaitForLine(const std::string& marker, double timeout_s) {
  std::string line;
  if (!process_.ReadLineContaining(marker, timeout_s, &line)) {
    Die("a worker printed no '" + marker + "' line: " + process_.error() +
        "; its output: " + process_.output());
  }
}

json Worker::Wait() {
  std::string out;
  process_.ReadToEnd(-1, &out);
  int st = 0;
  process_.WaitForExit(-1, &st);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    Die("a worker failed (status " + std::to_string(st) + ")");
  // The result is the last line that starts a JSON object.
  std::string last;
  std::istringstream lines(out);
  for (std::string l; std::getline(lines, l);) {
    if (!l.empty() && l[0] == '{') last = l;
  }
  try {
    return json::parse(last);
  } catch (...) {
    Die("a worker printed no JSON result: " + out);
  }
}

void Signals::Post(const std::string& name, const std::string& payload) {
  Check(c_.Put(Id(name), payload), "post " + name);
}

std::string Signals::Wait(const std::string& name, double timeout_s) {
  // Polls instead of a blocking get: while any client blocks in a get, every
  // seal and delete in the cluster also messages the manager, which would
  // distort the operations being measured.
  const ObjectId id = Id(name);
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                            std::chrono::duration<double>(timeout_s));
  for (;;) {
    if (std::chrono::steady_clock::now() > deadline) {
      Die("wait " + name + ": not posted within " + std::to_string(static_cast<int>(timeout_s)) +
          " s (a peer worker failed or hung)");
    }
    gismo_buffer_t b{};
    if (gismo_get(c_.c_client(), &id.c_id(), 1, 0, &b) != GISMO_OK) {
      Die("wait " + name + ": " + gismo_last_error());
    }
    if (b.data != nullptr) {
      std::string payload(static_cast<const char*>(b.data), b.data_size);
      Check(c_.Release(id), "release " + name);
      return payload;
    }
    usleep(50);
  }
}

void Signals::Remove(const std::string& name) { (void)c_.Delete(Id(name)); }

namespace {
sockaddr_in Addr(const std::string& host, int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &a.sin_addr) != 1) Die("bad IPv4 address " + host);
  return a;
}
void Tune(int fd) {
  int one = 1, buf = 8 << 20;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
}
}  // namespace

int TcpListen(const std::string& host, int* port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  Tune(fd);
  sockaddr_in a = Addr(host, *port);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) Die("bind " + host);
  if (listen(fd, 64) != 0) Die("listen");
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

int FreePort(const std::string& host) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a = Addr(host, 0);
  int port = 20000 + getpid() % 20000;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    socklen_t len = sizeof a;
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }
  close(fd);
  return port;
}

int TcpAccept(int listen_fd) {
  int fd = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) Die("accept");
  Tune(fd);
  return fd;
}

int TcpConnect(const std::string& host, int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  Tune(fd);
  sockaddr_in a = Addr(host, port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    Die("connect " + host + ":" + std::to_string(port) + ": " + strerror(errno));
  }
  return fd;
}

void SendAll(int fd, const void* p, size_t n) {
  auto* q = static_cast<const uint8_t*>(p);
  while (n > 0) {
    ssize_t w = send(fd, q, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) Die(std::string("send: ") + strerror(errno));
    q += w;
    n -= static_cast<size_t>(w);
  }
}

void RecvAll(int fd, void* p, size_t n) {
  auto* q = static_cast<uint8_t*>(p);
  while (n > 0) {
    ssize_t r = recv(fd, q, n, MSG_WAITALL);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) Die(std::string("recv: ") + (r == 0 ? "peer closed" : strerror(errno)));
    q += r;
    n -= static_cast<size_t>(r);
  }
}

void SendChunked(int fd, const void* p, size_t n, size_t chunk) {
  auto* q = static_cast<const uint8_t*>(p);
  for (size_t off = 0; off < n; off += chunk) SendAll(fd, q + off, std::min(chunk, n - off));
}

std::string SizeName(uint64_t b) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  int u = 0;
  double v = static_cast<double>(b);
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  snprintf(buf, sizeof buf, v == std::floor(v) ? "%.0f%s" : "%.1f%s", v, units[u]);
  return buf;
}

}  // namespace gismo::bench
