// Proving a process gone, on its own kernel: the building block of fencing.
//
// A ProcessIdentity names one process for as long as its kernel runs: the
// kernel's boot id (random at every boot, so two hosts or VMs never share
// one), the inode of its PID namespace, its pid there, and its start time
// (so a reused pid is told apart). It is written into the client's slot at
// admission; any fencer on the same kernel and PID namespace (the manager
// for its local clients, a node agent for its node's) can then prove the
// process gone, or kill it and prove that, with a pidfd. Nothing here works
// across kernels, by design: a fencer elsewhere must fence the whole node.
#ifndef GISMO_FENCE_PROCESS_H_
#define GISMO_FENCE_PROCESS_H_

#include <sys/types.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <gismo/status.hpp>
#include <string>

namespace gismo::fence {

struct ProcessIdentity {
  uint64_t boot_id = 0;     // xxh64 of /proc/sys/kernel/random/boot_id
  uint64_t pid_ns = 0;      // inode of /proc/self/ns/pid
  uint64_t pid = 0;         // in that namespace
  uint64_t start_time = 0;  // clock ticks after boot (/proc/PID/stat field 22)

  bool SameNamespace(const ProcessIdentity& o) const {
    return boot_id == o.boot_id && pid_ns == o.pid_ns && boot_id != 0;
  }
  std::string ToString() const;

  // The four words as every region line and wire frame keeps them, in this
  // order: boot_id, pid_ns, pid, start_time.
  using Words = std::array<uint64_t, 4>;
  Words ToWords() const { return {boot_id, pid_ns, pid, start_time}; }
  // From w[0..3] in that order.
  static ProcessIdentity FromWords(const uint64_t* w) { return {w[0], w[1], w[2], w[3]}; }
  // From four shared words (a region's identity fields), read relaxed.
  static ProcessIdentity FromWords(const std::atomic<uint64_t>* w) {
    return {w[0].load(std::memory_order_relaxed), w[1].load(std::memory_order_relaxed),
            w[2].load(std::memory_order_relaxed), w[3].load(std::memory_order_relaxed)};
  }
};

// This process's identity.
ProcessIdentity Self();
// The identity of process `pid` as this process sees it (same namespace).
// Not found: pid == 0.
ProcessIdentity Lookup(pid_t pid);

// pidfd_open(2) and pidfd_send_signal(2): -1 / false with errno set.
int OpenPidfd(pid_t pid);
bool SignalPidfd(int pidfd, int sig);
// Whether the process of `pidfd` has exited (its pidfd polls readable),
// waiting up to `timeout_ms` for it.
bool PidfdExited(int pidfd, int timeout_ms = 0);

// Whether process `pid` is in this process's time namespace, so that the
// start times both read from /proc compare (each reader sees them shifted by
// its own namespace's boot-time offset). True on a kernel without time
// namespaces; false if its namespace cannot be read (another user's process
// to a fencer without CAP_SYS_PTRACE): a start time then proves nothing,
// and only its pidfd tells its exit.
bool InThisTimeNamespace(pid_t pid);

// Whether the process `who` (of this kernel and PID namespace) has exited,
// or its pid now names another process. False if it runs, or if it is not
// of this namespace (nothing can be told from here). Waits up to `wait_ms`
// for a process that is exiting (its sockets close before it has exited).
bool ProvenGone(const ProcessIdentity& who, int wait_ms = 0);

// Whether process `pid` of this PID namespace maps the region file
// `region_path` (the device and inode stat(2) gives for it, as
// /proc/PID/maps shows them): OK if it does. INVALID_ARGUMENT, naming it, if
// it does not or its maps cannot be read (another user's, or a
// non-dumpable process); IO if the region cannot be stat'ed. Every fencer
// asks this before it kills: a pid that a peer claimed (a hello's identity,
// a slot's words) may name any process of the kernel, and only one that
// maps the region can be a client of it. The answer is about the process
// that holds `pid` now: the caller pins the process it means with a pidfd
// first and kills through that pidfd, so that if its process has exited
// since (and the pid names another), the kill hits nothing.
Status MapsRegion(pid_t pid, const std::string& region_path);

enum class FenceOutcome {
  kWasGone,  // the process had already exited (or its pid is another's now)
  kKilled,   // it was running (or stopped); SIGKILLed and seen to exit
};

// Proves that the process `who` can never run again, from a fencer on the
// same kernel and PID namespace: if it still runs, kills it (SIGKILL through
// a pidfd) and waits up to `timeout_ms` to see it exit. Before it kills, it
// checks that the process maps the region file `region_path` (MapsRegion),
// so a wrong or hostile pid claim cannot kill another program.
// UNSUPPORTED: `who` lives in another kernel or namespace. BUSY: it did not
// exit in time. PERMISSION-style failures and a process that does not map
// the region come back as INVALID_ARGUMENT with the reason.
Result<FenceOutcome> FenceProcess(const ProcessIdentity& who, const std::string& region_path,
                                  int timeout_ms);

}  // namespace gismo::fence

#endif  // GISMO_FENCE_PROCESS_H_
