#include "fence/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

namespace gismo::fence {

bool InThisTimeNamespace(pid_t pid) {
  struct stat mine = {};
  struct stat its = {};
  if (stat("/proc/self/ns/time", &mine) != 0) return true;  // a kernel without them
  // Unreadable (another user's process, to a fencer without CAP_SYS_PTRACE;
  // or it exited): not known to be ours, so its start time proves nothing.
  if (stat(("/proc/" + std::to_string(pid) + "/ns/time").c_str(), &its) != 0) return false;
  return mine.st_dev == its.st_dev && mine.st_ino == its.st_ino;
}

namespace {

// The whole of a /proc file, or false. /proc/PID files of a process that
// exits between open() and read() fail with ESRCH; libstdc++'s filebuf
// throws on that error through istreambuf_iterator, so these reads go
// through read(2) and report it as "no such process" instead.
bool ReadProcFile(const std::string& path, std::string* out) {
  out->clear();
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[4096];
  bool ok = true;
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) {
      out->append(buf, static_cast<size_t>(n));
    } else if (n == 0) {
      break;
    } else if (errno != EINTR) {
      ok = false;
      break;
    }
  }
  close(fd);
  return ok;
}

uint64_t ReadBootId() {
  std::ifstream f("/proc/sys/kernel/random/boot_id");
  std::string s;
  if (!std::getline(f, s) || s.empty()) return 0;
  return XXH64(s.data(), s.size(), 0);
}

uint64_t PidNamespace(const std::string& proc_dir) {
  struct stat st {};
  if (stat((proc_dir + "/ns/pid").c_str(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_ino);
}

// Field 22 of /proc/PID/stat (the command name, field 2, may hold spaces
// and parentheses: parse after its last ')').
uint64_t StartTime(pid_t pid) {
  std::string s;
  if (!ReadProcFile("/proc/" + std::to_string(pid) + "/stat", &s)) return 0;
  const size_t close = s.rfind(')');
  if (close == std::string::npos || close + 2 > s.size()) return 0;
  std::istringstream rest(s.substr(close + 2));
  std::string field;
  // After ')' come fields 3.. ; start time is field 22, the 20th of them.
  for (int i = 3; i <= 22; ++i) {
    if (!(rest >> field)) return 0;
  }
  return std::strtoull(field.c_str(), nullptr, 10);
}

// Whether /proc shows that `pid` is not the process that started at
// `start_time`: its start time read and different. A /proc this process may
// not read (mounted hidepid=, or a PID the fencer's user cannot see) proves
// nothing, so an unreadable start time is not a difference: the pidfd, which
// needs no /proc, is what then tells an exit.
// Nor does a start time of a process in another time namespace
// (CLONE_NEWTIME): /proc/PID/stat shifts it by the reader's boot-time
// offset, and a process records its own.
bool StartTimeDiffers(pid_t pid, uint64_t start_time) {
  const uint64_t now = StartTime(pid);
  return now != 0 && now != start_time && InThisTimeNamespace(pid);
}

// Whether process `pid` maps the file with this device and inode.
bool MapsFile(pid_t pid, dev_t dev, ino_t ino) {
  std::string maps;
  if (!ReadProcFile("/proc/" + std::to_string(pid) + "/maps", &maps)) return false;
  std::istringstream f(maps);
  std::string line;
  char want_dev[32];
  std::snprintf(want_dev, sizeof want_dev, "%02x:%02x", major(dev), minor(dev));
  const std::string want_ino = std::to_string(ino);
  while (std::getline(f, line)) {
    std::istringstream in(line);
    std::string range, perms, offset, devs, inode;
    if (!(in >> range >> perms >> offset >> devs >> inode)) continue;
    if (inode == want_ino && devs == want_dev) return true;
  }
  return false;
}

}  // namespace

bool PidfdExited(int pidfd, int timeout_ms) {
  pollfd p{pidfd, POLLIN, 0};
  int rc;
  do {
    rc = poll(&p, 1, timeout_ms);
  } while (rc < 0 && errno == EINTR);
  return rc > 0;
}

int OpenPidfd(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

bool SignalPidfd(int pidfd, int sig) {
  return syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0) == 0;
}

std::string ProcessIdentity::ToString() const {
  char buf[128];
  std::snprintf(buf, sizeof buf, "pid %llu (pid namespace %llu, kernel %016llx)",
                static_cast<unsigned long long>(pid), static_cast<unsigned long long>(pid_ns),
                static_cast<unsigned long long>(boot_id));
  return buf;
}

ProcessIdentity Self() {
  ProcessIdentity id;
  id.boot_id = ReadBootId();
  id.pid_ns = PidNamespace("/proc/self");
  id.pid = static_cast<uint64_t>(getpid());
  id.start_time = StartTime(getpid());
  return id;
}

ProcessIdentity Lookup(pid_t pid) {
  ProcessIdentity id;
  id.start_time = StartTime(pid);
  if (id.start_time == 0) return id;
  id.boot_id = ReadBootId();
  id.pid_ns = PidNamespace("/proc/self");
  id.pid = static_cast<uint64_t>(pid);
  return id;
}

bool ProvenGone(const ProcessIdentity& who, int wait_ms) {
  // Without a start time (a damaged or forged identity) a live process could
  // not be told from a reuse of its pid.
  if (!Self().SameNamespace(who) || who.pid == 0 || who.pid > 0x3fffffff || who.start_time == 0) {
    return false;
  }
  const pid_t pid = static_cast<pid_t>(who.pid);
  const int pidfd = OpenPidfd(pid);
  if (pidfd < 0) return errno == ESRCH;
  const bool gone = StartTimeDiffers(pid, who.start_time) || PidfdExited(pidfd, wait_ms);
  close(pidfd);
  return gone;
}

Status MapsRegion(pid_t pid, const std::string& region_path) {
  struct stat rs {};
  if (stat(region_path.c_str(), &rs) != 0) {
    return Status(GISMO_ERR_IO,
                  "cannot stat region '" + region_path + "': " + std::strerror(errno));
  }
  if (!MapsFile(pid, rs.st_dev, rs.st_ino)) {
    return Status(GISMO_ERR_INVALID_ARGUMENT,
                  "pid " + std::to_string(pid) + " does not map the region '" + region_path +
                      "' (or its /proc/" + std::to_string(pid) +
                      "/maps cannot be read); refusing to kill a process that is not its client");
  }
  return Status();
}

Result<FenceOutcome> FenceProcess(const ProcessIdentity& who, const std::string& region_path,
                                  int timeout_ms) {
  const ProcessIdentity me = Self();
  if (!me.SameNamespace(who)) {
    return Status(GISMO_ERR_UNSUPPORTED, who.ToString() + " is not in this kernel's PID namespace");
  }
  if (who.pid == 0 || who.pid > 0x3fffffff) {
    return Status(GISMO_ERR_INVALID_ARGUMENT, "no valid pid recorded for the process");
  }
  if (who.start_time == 0) {
    return Status(GISMO_ERR_INVALID_ARGUMENT,
                  "no start time recorded for " + who.ToString() +
                      ": it cannot be told from another process with its pid; not killed");
  }
  const pid_t pid = static_cast<pid_t>(who.pid);
  // The pidfd pins the process it names; the start time then tells whether
  // that is still the process we mean (and not a new one with its pid).
  const int pidfd = OpenPidfd(pid);
  if (pidfd < 0) {
    if (errno == ESRCH) return FenceOutcome::kWasGone;
    return Status(GISMO_ERR_IO, std::string("pidfd_open: ") + std::strerror(errno));
  }
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{pidfd};
  if (PidfdExited(pidfd, 0)) return FenceOutcome::kWasGone;
  const uint64_t start_time = StartTime(pid);
  if (start_time != 0 && start_time != who.start_time) {
    if (InThisTimeNamespace(pid)) return FenceOutcome::kWasGone;
    return Status(GISMO_ERR_UNSUPPORTED,
                  "pid " + std::to_string(pid) +
                      " runs in another time namespace, whose start times cannot be compared "
                      "with the one recorded for " +
                      who.ToString() + "; not killed");
  }
  if (start_time == 0) {
    // Exited since (its /proc entry went with it), or hidden from us.
    if (PidfdExited(pidfd, 0)) return FenceOutcome::kWasGone;
    return Status(GISMO_ERR_PERMISSION,
                  "cannot read /proc/" + std::to_string(pid) +
                      "/stat (is /proc mounted with hidepid=?), so cannot tell whether that pid "
                      "is still " +
                      who.ToString() + "; not killed");
  }
  if (Status maps = MapsRegion(pid, region_path); !maps.ok()) {
    if (maps.code() == GISMO_ERR_INVALID_ARGUMENT && PidfdExited(pidfd, 0)) {
      return FenceOutcome::kWasGone;
    }
    return Status(maps.code(), who.ToString() + ": " + maps.message());
  }
  if (!SignalPidfd(pidfd, SIGKILL) && errno != ESRCH) {
    return Status(GISMO_ERR_IO, std::string("pidfd_send_signal: ") + std::strerror(errno));
  }
  if (!PidfdExited(pidfd, timeout_ms)) {
    return Status(GISMO_ERR_BUSY, who.ToString() + " did not exit within " +
                                      std::to_string(timeout_ms) + " ms of SIGKILL");
  }
  return FenceOutcome::kKilled;
}

}  // namespace gismo::fence
