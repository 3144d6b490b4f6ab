// gismo-vm-agent: runs commands inside a gismo-cluster virtual machine.
//
//   gismo-vm-agent serve --port PORT --token-file PATH [--ready-line TEXT]
//                        [--max-handlers N (128)]            (in the guest)
//   gismo-vm-agent exec --port PORT --token-file PATH [--cwd DIR] [--env K=V]...
//                       -- CMD [ARGS...]                     (on the host)
//
// `serve` listens on TCP PORT of every guest address (the host reaches it
// through a user-mode network forward on 127.0.0.1) and runs one command per
// connection. `exec` is the host side: it sends the command, relays its
// stdin, stdout and stderr, and exits with the command's status (128 + N when
// signal N killed it), like a local exec would.
//
// The forward on 127.0.0.1 is open to every user of the host, and a command
// runs as root in a guest that maps the region: a connection first proves
// it knows the cluster's token (a file only its owner reads on the host,
// which qemu hands the guest through fw_cfg). Without it, or within 10 s,
// the connection is closed and nothing runs. At most --max-handlers
// connections are served at once; further ones wait in the listen backlog
// until a handler ends, so a flood of connections costs the guest a bounded
// number of processes.
//
// Wire format, both directions: frames of [type: 1 byte][length: u32 LE][data].
//   host -> guest  'A' the token. Sent once, first.
//                  'C' command: NUL-terminated strings: cwd, env entries, an
//                      empty string, then argv.  Sent once, second.
//                  'I' stdin data; an empty 'I' is end of input.
//   guest -> host  'O' stdout data, 'E' stderr data, 'X' exit status (u32 LE).
// Invariants: 'X' is the last frame of a connection, sent only after the
// command exited and its stdout and stderr reached end of file. A connection
// that closes before 'X' means the command (or the guest) is gone: the guest
// side then SIGKILLs the command's whole process group, and the host side
// reports status 255.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <vector>

namespace {

constexpr uint32_t kMaxFrame = 1u << 20;
// The first frame, before the token is proved: no more than a token.
constexpr uint32_t kMaxTokenFrame = 8192;
constexpr size_t kChunk = 64 * 1024;
// Connections served at once by default (each a forked handler,
// authenticated or not); serve --max-handlers changes it.
constexpr int kDefaultMaxHandlers = 128;
// Input for the command that it has not read yet; beyond, the guest side
// stops reading its connection until the command reads (the host side then
// stops reading its stdin): the flow control a local pipe gives.
constexpr size_t kMaxPendingInput = 1u << 20;

[[noreturn]] void Die(const std::string& what) {
  fprintf(stderr, "gismo-vm-agent: %s\n", what.c_str());
  exit(255);
}

bool WriteAll(int fd, const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool ReadAll(int fd, void* data, size_t n) {
  auto* p = static_cast<uint8_t*>(data);
  while (n > 0) {
    ssize_t r = read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

// The 5-byte header of a frame of `type` and `n` bytes.
std::string FrameHead(char type, uint32_t n) {
  return {type, static_cast<char>(n), static_cast<char>(n >> 8), static_cast<char>(n >> 16),
          static_cast<char>(n >> 24)};
}

bool SendFrame(int fd, char type, const void* data, uint32_t n) {
  const std::string head = FrameHead(type, n);
  return WriteAll(fd, head.data(), head.size()) && (n == 0 || WriteAll(fd, data, n));
}

// Reads one whole frame of at most `max` bytes; false on end of stream or a
// malformed frame.
bool RecvFrame(int fd, char* type, std::vector<char>* data, uint32_t max = kMaxFrame) {
  uint8_t head[5];
  if (!ReadAll(fd, head, sizeof head)) return false;
  uint32_t n = head[1] | head[2] << 8 | head[3] << 16 | static_cast<uint32_t>(head[4]) << 24;
  if (n > max) return false;
  *type = static_cast<char>(head[0]);
  data->resize(n);
  return n == 0 || ReadAll(fd, data->data(), n);
}

uint32_t ExitStatusOf(int wait_status) {
  if (WIFEXITED(wait_status)) return static_cast<uint32_t>(WEXITSTATUS(wait_status));
  if (WIFSIGNALED(wait_status)) return 128u + static_cast<uint32_t>(WTERMSIG(wait_status));
  return 255;
}

// ---- guest side -------------------------------------------------------------

// Whether `a` and `b` are equal, in time that depends on their lengths only.
bool SameToken(const std::string& a, const std::vector<char>& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

// The token in `path`, without trailing white space; dies if there is
// none or it is too short to guess.
std::string ReadToken(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) Die("cannot read the token file " + path + ": " + strerror(errno));
  std::string token;
  char buf[256];
  for (ssize_t r; (r = read(fd, buf, sizeof buf)) != 0;) {
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 || token.size() > 4096) Die("cannot read the token file " + path);
    token.append(buf, static_cast<size_t>(r));
  }
  close(fd);
  while (!token.empty() && isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
  if (token.size() < 16) Die("the token in " + path + " is shorter than 16 bytes");
  return token;
}

// Runs the command of one connection, once it proved it knows `token`.
// Never returns.
[[noreturn]] void ServeConnection(int sock, const std::string& token) {
  signal(SIGCHLD, SIG_DFL);
  signal(SIGPIPE, SIG_IGN);
  char type = 0;
  std::vector<char> req;
  alarm(10);  // a silent connection ends here (SIGALRM's default action)
  if (!RecvFrame(sock, &type, &req, kMaxTokenFrame) || type != 'A' || !SameToken(token, req)) {
    _exit(1);
  }
  if (!RecvFrame(sock, &type, &req) || type != 'C' || req.empty() || req.back() != '\0') _exit(1);
  alarm(0);
  std::vector<std::string> parts;
  for (size_t i = 0; i < req.size();) {
    parts.emplace_back(&req[i]);
    i += parts.back().size() + 1;
  }
  size_t sep = 1;
  while (sep < parts.size() && !parts[sep].empty()) ++sep;
  if (sep + 1 >= parts.size()) _exit(1);  // no argv

  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) _exit(1);
  pid_t child = fork();
  if (child < 0) _exit(1);
  if (child == 0) {
    setpgid(0, 0);
    dup2(in[0], 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    // The host's working directory exists in the guest only if the image
    // has it (binaries are installed at their host paths).
    if (chdir(parts[0].c_str()) != 0 && chdir("/") != 0) _exit(126);
    for (size_t i = 1; i < sep; ++i) putenv(const_cast<char*>(parts[i].c_str()));
    std::vector<char*> argv;
    for (size_t i = sep + 1; i < parts.size(); ++i) argv.push_back(parts[i].data());
    argv.push_back(nullptr);
    execvp(argv[0], argv.data());
    int e = errno;
    fprintf(stderr, "gismo-vm-agent: cannot run '%s' in the guest: %s%s\n", argv[0], strerror(e),
            e == ENOENT ? " (is it in the guest image? gismo-cluster up --vm-binary PATH)" : "");
    _exit(e == ENOENT ? 127 : 126);
  }
  setpgid(child, child);
  close(in[0]);
  close(out[1]);
  close(err[1]);
  int stdin_fd = in[1], stdout_fd = out[0], stderr_fd = err[0];
  // The command's stdin is written when it can take more, never waited
  // for: a command that does not read it must still have its output read.
  fcntl(stdin_fd, F_SETFL, fcntl(stdin_fd, F_GETFL) | O_NONBLOCK);
  std::string input;  // received, not yet taken by the command
  bool input_ended = false;
  std::vector<char> buf(kChunk);
  int status = 0;
  // Until the command exited and its stdout and stderr ended. Once both
  // ended, the command is checked for every 100 ms; the socket is watched
  // throughout (but read only while the command takes its input), so a
  // host side that goes away kills the command.
  for (;;) {
    const bool outputs_done = stdout_fd < 0 && stderr_fd < 0;
    if (outputs_done && waitpid(child, &status, WNOHANG) == child) break;
    if (stdin_fd >= 0 && input_ended && input.empty()) {
      close(stdin_fd);
      stdin_fd = -1;
    }
    // POLLRDHUP: a host side that went away is seen even while its input
    // is not read.
    const short sock_events =
        static_cast<short>((input.size() < kMaxPendingInput ? POLLIN : 0) | POLLRDHUP);
    pollfd fds[4] = {{sock, sock_events, 0},
                     {stdout_fd, POLLIN, 0},
                     {stderr_fd, POLLIN, 0},
                     {input.empty() ? -1 : stdin_fd, POLLOUT, 0}};
    if (poll(fds, 4, outputs_done ? 100 : -1) < 0) {
      if (errno == EINTR) continue;
      kill(-child, SIGKILL);
      _exit(1);
    }
    if (fds[0].revents) {
      if (!RecvFrame(sock, &type, &req) || type != 'I') {
        // The host side is gone: so is everything the command started.
        kill(-child, SIGKILL);
        _exit(1);
      }
      if (req.empty()) {
        input_ended = true;
      } else if (stdin_fd >= 0) {
        input.append(req.data(), req.size());
      }
    }
    if (fds[3].revents && stdin_fd >= 0) {
      const ssize_t w = write(stdin_fd, input.data(), input.size());
      if (w > 0) {
        input.erase(0, static_cast<size_t>(w));
      } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
        close(stdin_fd);  // the command closed its stdin; drop its input
        stdin_fd = -1;
        input.clear();
      }
    }
    for (int i = 1; i <= 2; ++i) {
      int& fd = i == 1 ? stdout_fd : stderr_fd;
      if (fd < 0 || !fds[i].revents) continue;
      ssize_t r = read(fd, buf.data(), buf.size());
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        close(fd);
        fd = -1;
      } else if (!SendFrame(sock, i == 1 ? 'O' : 'E', buf.data(), static_cast<uint32_t>(r))) {
        kill(-child, SIGKILL);
        _exit(1);
      }
    }
  }
  uint8_t code[4];
  uint32_t c = ExitStatusOf(status);
  for (int i = 0; i < 4; ++i) code[i] = static_cast<uint8_t>(c >> (8 * i));
  SendFrame(sock, 'X', code, sizeof code);
  shutdown(sock, SHUT_WR);
  // Input the command left unread may still be coming: closing with unread
  // input would reset the connection, and the host could lose the end of
  // the output and the 'X'. Read and drop it until the host, which has
  // read the 'X', closes; give up only after 10 s in which nothing moved
  // (no input came, and none of the output still queued was taken).
  int still_ms = 0, queued = -1;
  while (still_ms < 10000) {
    pollfd p{sock, POLLIN, 0};
    const int r = poll(&p, 1, 1000);
    if (r < 0 && errno != EINTR) break;
    if (r > 0) {
      if (read(sock, buf.data(), buf.size()) <= 0) break;  // the host closed
      still_ms = 0;
      continue;
    }
    int now_queued = 0;
    if (ioctl(sock, SIOCOUTQ, &now_queued) != 0) break;
    still_ms = now_queued != queued ? 0 : still_ms + 1000;
    queued = now_queued;
  }
  _exit(0);
}

[[noreturn]] void Serve(int port, const std::string& token, const std::string& ready_line,
                        int max_handlers) {
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (ls < 0) Die(std::string("socket: ") + strerror(errno));
  int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  if (bind(ls, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(ls, 64) != 0) {
    Die("cannot listen on port " + std::to_string(port) + ": " + strerror(errno));
  }
  // Handlers are reaped here (each waits for its own command), which counts
  // them: at max_handlers the loop waits for one to end before it accepts.
  // In a guest this process is PID 1 and reaps every orphan too (a killed
  // command's children): only the pids of handlers count.
  signal(SIGCHLD, SIG_DFL);
  signal(SIGPIPE, SIG_IGN);
  if (!ready_line.empty()) {
    printf("%s\n", ready_line.c_str());
    fflush(stdout);
  }
  std::set<pid_t> handlers;
  for (;;) {
    for (;;) {
      const bool full = handlers.size() >= static_cast<size_t>(max_handlers);
      pid_t ended = waitpid(-1, nullptr, full ? 0 : WNOHANG);
      if (ended > 0) {
        handlers.erase(ended);  // an orphan's pid is in no handler's place
      } else if (ended < 0 && errno == EINTR) {
        continue;
      } else {
        if (ended < 0) handlers.clear();  // ECHILD: none left
        break;
      }
    }
    int s = accept4(ls, nullptr, nullptr, SOCK_CLOEXEC);
    if (s < 0) continue;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    pid_t h = fork();
    if (h == 0) {
      close(ls);
      ServeConnection(s, token);
    }
    if (h > 0) handlers.insert(h);
    close(s);
  }
}

// ---- host side --------------------------------------------------------------

[[noreturn]] void Exec(int port, const std::string& token, const std::string& cwd,
                       const std::vector<std::string>& env, const std::vector<std::string>& argv) {
  signal(SIGPIPE, SIG_IGN);
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (s < 0 || connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    Die("cannot reach the guest's agent on 127.0.0.1:" + std::to_string(port) + ": " +
        strerror(errno));
  }
  int one = 1;
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  std::string req = cwd + '\0';
  for (const auto& e : env) req += e + '\0';
  req += '\0';
  for (const auto& arg : argv) req += arg + '\0';
  if (req.size() > kMaxFrame) Die("command line too long");
  if (!SendFrame(s, 'A', token.data(), static_cast<uint32_t>(token.size())) ||
      !SendFrame(s, 'C', req.data(), static_cast<uint32_t>(req.size()))) {
    Die("lost the guest");
  }
  std::vector<char> buf(kChunk);
  bool stdin_open = true;
  // 'I' frames not yet sent: sent when the socket takes them, never waited
  // for, so that the command's output is read meanwhile (the guest stops
  // reading while the command does not take its input). Stdin is read
  // only once they are gone.
  std::string unsent;
  for (;;) {
    pollfd fds[2] = {{s, static_cast<short>(POLLIN | (unsent.empty() ? 0 : POLLOUT)), 0},
                     {stdin_open && unsent.empty() ? 0 : -1, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      Die(std::string("poll: ") + strerror(errno));
    }
    if (fds[1].revents) {
      ssize_t r = read(0, buf.data(), buf.size());
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) stdin_open = false;
      const uint32_t n = r > 0 ? static_cast<uint32_t>(r) : 0;
      unsent += FrameHead('I', n);
      unsent.append(buf.data(), n);
    }
    if ((fds[0].revents & POLLOUT) && !unsent.empty()) {
      // A lost connection shows up on the socket's next read.
      const ssize_t w = send(s, unsent.data(), unsent.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (w > 0) unsent.erase(0, static_cast<size_t>(w));
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      char type = 0;
      std::vector<char> data;
      if (!RecvFrame(s, &type, &data)) {
        fprintf(stderr,
                "gismo-vm-agent: the connection to the guest closed before the command "
                "ended (the guest was killed?)\n");
        exit(255);
      }
      if (type == 'O' || type == 'E') {
        // A reader that went away on the host side ends the command.
        if (!WriteAll(type == 'O' ? 1 : 2, data.data(), data.size())) exit(141);
      } else if (type == 'X' && data.size() == 4) {
        uint32_t c = static_cast<uint8_t>(data[0]) | static_cast<uint8_t>(data[1]) << 8 |
                     static_cast<uint8_t>(data[2]) << 16 |
                     static_cast<uint32_t>(static_cast<uint8_t>(data[3])) << 24;
        exit(static_cast<int>(c & 0xff));
      }
    }
  }
}

// The integer in `text`, which must lie in [min, max]; dies naming `what`
// otherwise.
int ParseInt(const char* text, long min, long max, const char* what) {
  char* end = nullptr;
  errno = 0;
  long v = strtol(text, &end, 10);
  if (end == text || *end != '\0' || errno != 0 || v < min || v > max) {
    Die(std::string("bad ") + what + ": " + text + " (" + std::to_string(min) + " to " +
        std::to_string(max) + ")");
  }
  return static_cast<int>(v);
}

[[noreturn]] void Usage() {
  fprintf(stderr,
          "usage: gismo-vm-agent serve --port PORT --token-file PATH [--ready-line TEXT]\n"
          "                            [--max-handlers N]\n"
          "       gismo-vm-agent exec --port PORT --token-file PATH [--cwd DIR] [--env K=V]...\n"
          "                           -- CMD [ARGS...]\n");
  exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) Usage();
  std::string verb = argv[1];
  int port = 0, max_handlers = kDefaultMaxHandlers;
  std::string ready_line, cwd = "/", token_file;
  std::vector<std::string> env, cmd;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--") {
      for (++i; i < argc; ++i) cmd.emplace_back(argv[i]);
      break;
    }
    if (i + 1 >= argc) Usage();
    if (a == "--port") {
      port = ParseInt(argv[++i], 1, 65535, "port");
    } else if (a == "--max-handlers") {
      max_handlers = ParseInt(argv[++i], 1, 4096, "--max-handlers");
    } else if (a == "--token-file") {
      token_file = argv[++i];
    } else if (a == "--ready-line") {
      ready_line = argv[++i];
    } else if (a == "--cwd") {
      cwd = argv[++i];
    } else if (a == "--env") {
      env.emplace_back(argv[++i]);
      if (env.back().find('=') == std::string::npos) Usage();
    } else {
      Usage();
    }
  }
  if (port == 0 || token_file.empty()) Usage();
  if (verb == "serve" && cmd.empty()) Serve(port, ReadToken(token_file), ready_line, max_handlers);
  if (verb == "exec" && !cmd.empty()) Exec(port, ReadToken(token_file), cwd, env, cmd);
  Usage();
}
