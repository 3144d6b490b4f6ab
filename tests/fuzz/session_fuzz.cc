// libFuzzer target: the manager's session handling, in-process. A Manager
// (the shipped code, on a private region and Unix socket) serves on a thread
// of this process; each input is the byte stream of one connection: sent,
// followed by a goodbye frame (so a session that said hello departs and
// frees its slot), then the write side is shut and the harness reads what
// the manager answers until it closes the connection. The manager must
// neither crash nor stop serving (every 64 inputs a real client connects).
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <gismo/gismo.hpp>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "manager/manager.h"
#include "protocol/wire.h"

namespace {

struct Served {
  std::unique_ptr<gismo::manager::Manager> manager;
  std::thread thread;
  std::string socket_path, address;
};

Served* StartManager() {
  auto* s = new Served;
  const std::string name = "gismo-fuzz-session-" + std::to_string(getpid());
  gismo::manager::ManagerOptions o;
  o.region_path = "/dev/shm/" + name;
  s->socket_path = "/tmp/" + name + ".sock";
  o.listen = {"unix:" + s->socket_path};
  o.format.size = 32ull << 20;
  o.format.max_clients = 4096;  // sessions cut inside a frame keep theirs
  o.format.held_capacity = 16;
  o.format.log_capacity = 64;
  o.force_format = true;
  // Every peer is this process: a local fence would kill the fuzzer.
  o.local_fence = false;
  o.lease_ms = 0;
  spdlog::set_level(spdlog::level::off);
  s->manager = std::make_unique<gismo::manager::Manager>(o);
  if (gismo::Status st = s->manager->Start(); !st.ok()) {
    fprintf(stderr, "session_fuzz: the manager did not start: %s\n", st.ToString().c_str());
    abort();
  }
  s->address = s->manager->listen_addresses().front();
  s->thread = std::thread([m = s->manager.get()] { m->Run(/*handle_signals=*/false); });
  // The region and socket go when the fuzzer exits.
  static const std::string region = o.region_path, sock = s->socket_path;
  atexit([] {
    unlink(region.c_str());
    unlink(sock.c_str());
  });
  return s;
}

int Connect(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) abort();
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path.c_str());
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    perror("session_fuzz: connect to the manager");
    abort();  // the manager is gone: a finding
  }
  return fd;
}

// Reads until the manager closes the connection or stays silent for 2 s.
void Drain(int fd) {
  char buf[65536];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 2000) != 1) return;
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Served* served = StartManager();
  static uint64_t runs = 0;
  int fd = Connect(served->socket_path);
  // Send what fits without blocking on a manager that stopped reading (it
  // closes a connection whose frame is too large).
  size_t sent = 0;
  while (sent < size) {
    ssize_t n = send(fd, data + sent, size - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  const std::vector<uint8_t> bye =
      gismo::protocol::Writer().Frame(gismo::protocol::MsgType::kGoodbye, 0);
  (void)send(fd, bye.data(), bye.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  shutdown(fd, SHUT_WR);
  Drain(fd);
  close(fd);
  if (++runs % 64 == 0) {
    // The manager still serves real clients.
    auto c = gismo::Client::Connect(served->address);
    if (!c.ok() && c.status().code() != GISMO_ERR_LIMIT) {
      fprintf(stderr, "session_fuzz: a client cannot connect: %s\n", c.status().ToString().c_str());
      abort();
    }
  }
  return 0;
}
