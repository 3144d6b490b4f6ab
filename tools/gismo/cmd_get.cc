// gismo get: write an object's data to a file or stdout.
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

#include "args/parse_args.h"
#include "commands.h"

namespace gismo::cli {
namespace {

struct GetArgs {
  CommonOptions common;
  ObjectArg object;
  std::string file = "-";   // "-": stdout
  bool file_given = false;  // FILE was on the command line (even as "-")
  int64_t timeout_ms = 0;
};

void WriteAll(int fd, const uint8_t* p, size_t n, const std::string& name) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) Fail(kExitLocalIo, "cannot write " + name + ": " + std::strerror(errno));
    p += w;
    n -= static_cast<size_t>(w);
  }
}

// Writes `size` bytes to `fd` (the file `path`), on the medium first if
// `sync`, and closes it; on a failure calls failed(why), which does not
// return.
template <typename Failed>
void WriteAndClose(int fd, const uint8_t* data, size_t size, const std::string& path, bool sync,
                   const Failed& failed) {
  try {
    WriteAll(fd, data, size, "'" + path + "'");
  } catch (const Error& e) {
    close(fd);
    failed(e.what());
  }
  if (sync && fsync(fd) != 0) {
    const int e = errno;
    close(fd);
    failed("cannot write '" + path + "': " + std::strerror(e));
  }
  if (close(fd) != 0) failed("cannot write '" + path + "': " + std::strerror(errno));
}

// The file this command made and has not finished (a replacement before its
// rename, a new file before its last byte), removed if a signal (^C, a
// kill, a file size limit's SIGXFSZ) ends the command first. A fixed
// buffer: the handler may call async-signal-safe functions only.
char g_unfinished_path[PATH_MAX + 64];

extern "C" void RemoveUnfinishedAndDie(int sig) {
  if (g_unfinished_path[0] != '\0') unlink(g_unfinished_path);
  signal(sig, SIG_DFL);
  raise(sig);
}

// While it lives, SIGINT, SIGTERM, SIGHUP, SIGQUIT and SIGXFSZ remove the
// file Create or CreateNew made before they end the command; those this
// command was started ignoring (nohup, a background job of a script) stay
// ignored. The signals go to this thread: the library's own blocks them
// (common/background_thread.h).
class UnfinishedFileGuard {
 public:
  UnfinishedFileGuard() {
    g_unfinished_path[0] = '\0';
    sigemptyset(&caught_);
    struct sigaction sa {};
    sa.sa_handler = RemoveUnfinishedAndDie;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < kSignals.size(); ++i) {
      struct sigaction was {};
      if (sigaction(kSignals[i], nullptr, &was) != 0 || was.sa_handler == SIG_IGN) continue;
      if (sigaction(kSignals[i], &sa, &old_[i]) != 0) continue;
      installed_[i] = true;
      sigaddset(&caught_, kSignals[i]);
    }
  }
  ~UnfinishedFileGuard() {
    for (size_t i = 0; i < kSignals.size(); ++i) {
      if (installed_[i]) sigaction(kSignals[i], &old_[i], nullptr);
    }
    g_unfinished_path[0] = '\0';
  }
  UnfinishedFileGuard(const UnfinishedFileGuard&) = delete;
  UnfinishedFileGuard& operator=(const UnfinishedFileGuard&) = delete;

  // mkostemp of `temp` (a name ending in XXXXXX), its name recorded for the
  // handler with those signals blocked: none finds a file made and not named.
  // (A name too long for the handler's buffer is not recorded.)
  int Create(std::string* temp) {
    return Recorded(*temp, [&] { return mkostemp(temp->data(), O_CLOEXEC); });
  }
  // A new file at `path` (O_EXCL), recorded the same way.
  int CreateNew(const std::string& path) {
    return Recorded(
        path, [&] { return open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644); });
  }
  // The file is whole (renamed, or written to its end), or gone: a signal
  // now leaves it.
  void Finished() { g_unfinished_path[0] = '\0'; }

 private:
  template <typename Make>
  int Recorded(const std::string& path, const Make& make) {
    sigset_t was;
    pthread_sigmask(SIG_BLOCK, &caught_, &was);
    const int fd = make();
    if (fd >= 0 && path.size() < sizeof g_unfinished_path) {
      std::snprintf(g_unfinished_path, sizeof g_unfinished_path, "%s", path.c_str());
    }
    pthread_sigmask(SIG_SETMASK, &was, nullptr);
    return fd;
  }

  static constexpr std::array<int, 5> kSignals = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGXFSZ};
  std::array<struct sigaction, 5> old_{};
  std::array<bool, 5> installed_{};
  sigset_t caught_;
};

// Makes a rename in `dir` durable (the directory's entry on the medium).
void SyncDirectory(const std::string& dir) {
  const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  (void)fsync(fd);
  close(fd);
}

constexpr char kAclXattr[] = "system.posix_acl_access";

// Gives the new file `fd` what the file `target` it replaces has beyond its
// bytes: its mode, its group and its access control list. False if it
// cannot (a group this user is not in, an ACL the file system refuses):
// the file is then written in place, which keeps them.
bool TakeOverAttributes(int fd, const std::string& target, const struct stat& there) {
  // The group, then the ACL, then the mode: a chown clears the setuid and
  // setgid bits, and setting or removing an ACL rewrites the group bits,
  // which the original's mode (its ACL's mask) then sets as they were.
  struct stat made {};
  if (fstat(fd, &made) != 0) return false;
  if (made.st_gid != there.st_gid && fchown(fd, static_cast<uid_t>(-1), there.st_gid) != 0) {
    return false;
  }
  const ssize_t acl_size = getxattr(target.c_str(), kAclXattr, nullptr, 0);
  if (acl_size < 0) {
    // None to keep (nor one the new file inherited from its directory's
    // default ACL), or none on this file system.
    if (errno != ENOTSUP &&
        !(errno == ENODATA && (fremovexattr(fd, kAclXattr) == 0 || errno == ENODATA))) {
      return false;
    }
  } else {
    std::string acl(static_cast<size_t>(acl_size), '\0');
    const ssize_t got = getxattr(target.c_str(), kAclXattr, acl.data(), acl.size());
    if (got < 0 || fsetxattr(fd, kAclXattr, acl.data(), static_cast<size_t>(got), 0) != 0) {
      return false;
    }
  }
  return fchmod(fd, there.st_mode & 07777) == 0;
}

// Writes `size` bytes to `path`. A regular file of this user's that is
// there, writable and with no other hard link, is replaced whole or not at
// all: the bytes go to a new file beside it (with its mode, group and ACL),
// renamed over it once written and synced, so a write that fails, a signal
// that ends the command (the new file is removed) or a crash leaves it as
// it was (a symbolic link is followed: the file it names is replaced). Any
// other file (another user's, read-only, with more links, or one whose
// group or ACL a new file cannot take), a device, a pipe, or one beside
// which no file can be made, is written in place, as its permissions allow.
// A failed write, or a signal, removes a file this command created, never
// one that was there.
void WriteToFile(const std::string& path, const uint8_t* data, size_t size) {
  UnfinishedFileGuard guard;
  struct stat there {};
  char resolved[PATH_MAX];
  if (stat(path.c_str(), &there) == 0 && S_ISREG(there.st_mode) && there.st_nlink == 1 &&
      there.st_uid == geteuid() && access(path.c_str(), W_OK) == 0 &&
      realpath(path.c_str(), resolved) != nullptr) {
    const std::string target = resolved;
    const size_t slash = target.rfind('/');
    std::string temp =
        target.substr(0, slash + 1) + "." + target.substr(slash + 1) + ".gismo-XXXXXX";
    const int fd = guard.Create(&temp);
    if (fd >= 0 && !TakeOverAttributes(fd, target, there)) {
      close(fd);
      unlink(temp.c_str());
      guard.Finished();
    } else if (fd >= 0) {
      auto failed = [&](const std::string& why) {
        unlink(temp.c_str());
        Fail(kExitLocalIo, why + "; '" + path + "' is unchanged");
      };
      WriteAndClose(fd, data, size, path, /*sync=*/true, failed);
      if (rename(temp.c_str(), target.c_str()) != 0) {
        failed("cannot replace '" + path + "': " + std::strerror(errno));
      }
      guard.Finished();
      SyncDirectory(target.substr(0, slash + 1));
      return;
    }
  }
  bool created = true;
  int fd = guard.CreateNew(path);
  if (fd < 0 && errno == EEXIST) {
    created = false;
    fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  }
  if (fd < 0) Fail(kExitLocalIo, "cannot create '" + path + "': " + std::strerror(errno));
  struct stat st {};
  const bool regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  // A file this command created goes; one that was there (truncated by the
  // open: no file could be made beside it) stays, and the message says it
  // is partial.
  auto failed = [&](const std::string& why) {
    if (created) unlink(path.c_str());
    Fail(kExitLocalIo, why + (!created && regular ? "; '" + path +
                                                        "' was there before: its old contents "
                                                        "are gone and it now holds a part of "
                                                        "the object"
                                                  : ""));
  };
  WriteAndClose(fd, data, size, path, /*sync=*/false, failed);
  guard.Finished();
}

// The descriptor FILE names when it is one this command was started with
// (/dev/stdout, /dev/stderr, /dev/fd/N, /proc/self/fd/N): written through,
// it is what the shell redirected, at its offset and with its O_APPEND.
// Opened by name it would be the file behind it, replaced under the shell
// (`gismo get ID /dev/stdout >> log` left the log holding the object
// alone). Asked before the command connects, so that N is not a descriptor
// of its own.
std::optional<int> InheritedDescriptor(const std::string& path) {
  if (path == "/dev/stdout") return STDOUT_FILENO;
  if (path == "/dev/stderr") return STDERR_FILENO;
  const std::string prefixes[] = {"/dev/fd/", "/proc/self/fd/", "/proc/thread-self/fd/",
                                  "/proc/" + std::to_string(getpid()) + "/fd/"};
  for (const std::string& prefix : prefixes) {
    if (path.rfind(prefix, 0) != 0) continue;
    const char* first = path.data() + prefix.size();
    const char* last = path.data() + path.size();
    int fd = -1;
    auto [end, ec] = std::from_chars(first, last, fd);
    if (ec == std::errc() && end == last && first != last && fd >= 0) return fd;
  }
  return std::nullopt;
}

int RunGet(GetArgs a) {
  // With --name or --bound the one positional is the file; two are an ID
  // and a file, which Resolve refuses beside a name.
  if (a.object.by_name() && !a.object.hex.empty() && !a.file_given) {
    a.file = std::move(a.object.hex);
    a.object.hex.clear();
  }
  if (a.object.bound.empty()) (void)a.object.Resolve();  // usage errors before connecting
  const std::optional<int> descriptor =
      a.file == "-" ? std::optional<int>(STDOUT_FILENO) : InheritedDescriptor(a.file);
  const std::string descriptor_name = a.file == "-" ? "stdout" : "'" + a.file + "'";
  if (a.common.json && descriptor == STDOUT_FILENO) {
    Fail(kExitUsage, "--json needs an output FILE (the data would mix with the JSON on stdout)");
  }
  if (a.timeout_ms < -1) Fail(kExitUsage, "--timeout-ms must be -1 (forever), 0 or more");
  // Closed, stdin, stdout or stderr is /dev/null now (TakeStandardDescriptors):
  // the object would be thrown away with exit 0.
  if (descriptor && (*descriptor <= STDERR_FILENO ? tools::g_standard_descriptor_closed[*descriptor]
                                                  : fcntl(*descriptor, F_GETFD) < 0)) {
    Fail(kExitLocalIo, (a.file == "-" ? std::string("stdout") : descriptor_name) +
                           " is closed: nowhere to write the object" +
                           (a.file == "-" ? " (give a FILE)" : ""));
  }
  Client client = Connect(a.common);
  const ObjectId id = a.object.Resolve(client);
  auto buf = client.Get(id, a.timeout_ms);
  if (!buf.ok()) {
    Status s = buf.status();
    if (s.code() == GISMO_ERR_TIMEOUT) {
      // Tell "does not exist" from "not sealed yet".
      auto info = client.Stat(id);
      if (!info.ok() && info.status().code() == GISMO_ERR_OBJECT_NOT_FOUND) {
        Fail(kExitNotFound, "no object " + id.Hex());
      }
      Fail(kExitTimeout, "object " + id.Hex() + " was not sealed within " +
                             std::to_string(a.timeout_ms) + " ms (--timeout-ms to wait longer)");
    }
    Fail(s, "cannot get object " + id.Hex());
  }
  if (descriptor) {
    WriteAll(*descriptor, buf->data(), buf->size(), descriptor_name);
  } else {
    WriteToFile(a.file, buf->data(), buf->size());
  }
  if (a.common.json) {
    nlohmann::json j = {{"id", id.Hex()},
                        {"size", buf->size()},
                        {"metadata_size", buf->metadata().size()},
                        {"file", a.file}};
    if (!a.object.name.empty()) j["name"] = a.object.name;
    PrintJson(j);
  }
  return kExitOk;
}

}  // namespace

Runner SetupGet(CLI::App* cmd) {
  auto a = std::make_shared<GetArgs>();
  cmd->add_option("ID", a->object.hex, "Object id, 40 hex digits (omit with --name or --bound)");
  CLI::Option* file =
      cmd->add_option("FILE", a->file, "Output file, or - for stdout")->capture_default_str();
  a->object.AddNameOption(cmd);
  cmd->add_option("--timeout-ms", a->timeout_ms,
                  "Wait this long for the object to be sealed (0: no wait, -1: forever)")
      ->capture_default_str();
  AddCommonOptions(cmd, &a->common);
  return [a, file] {
    a->file_given = file->count() > 0;
    return RunGet(*a);
  };
}

}  // namespace gismo::cli
