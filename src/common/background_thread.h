// Threads that serve the process in the background: the library's inside
// an application, a tool's workers.
#ifndef GISMO_COMMON_BACKGROUND_THREAD_H_
#define GISMO_COMMON_BACKGROUND_THREAD_H_

#include <signal.h>

#include <thread>
#include <utility>

namespace gismo {

// The signals a background thread blocks: every asynchronous one (SIGINT,
// SIGTERM, SIGHUP, SIGCHLD, an application's SIGUSR1...), so that a signal
// sent to the process is handled on a thread whose mask the process's own
// code controls. There it interrupts the system call the thread waits in
// (a tool's poll sees EINTR and its stop flag at once), and a step that
// blocks it (gismo get naming its replacement file: tools/gismo/cmd_get.cc)
// is not interrupted on another thread instead. The synchronous signals a
// fault raises stay unblocked: the kernel would otherwise reset their
// handler to the default (a sanitizer's, or an application's SIGBUS handler,
// would not run).
inline sigset_t BackgroundThreadSignalMask() {
  sigset_t set;
  sigfillset(&set);
  for (int sig : {SIGBUS, SIGSEGV, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGABRT}) sigdelset(&set, sig);
  return set;
}

// A Thread (std::thread, std::jthread) running `f` with
// BackgroundThreadSignalMask() blocked from its first instruction (a thread
// inherits its creator's mask). The caller's mask is restored before this
// returns, or throws std::system_error as Thread's constructor does.
template <class Thread = std::thread, class F>
Thread StartBackgroundThread(F&& f) {
  const sigset_t blocked = BackgroundThreadSignalMask();
  sigset_t was;
  pthread_sigmask(SIG_SETMASK, &blocked, &was);
  struct RestoreMask {
    const sigset_t* mask;
    ~RestoreMask() { pthread_sigmask(SIG_SETMASK, mask, nullptr); }
  } restore{&was};
  return Thread(std::forward<F>(f));
}

}  // namespace gismo

#endif  // GISMO_COMMON_BACKGROUND_THREAD_H_
