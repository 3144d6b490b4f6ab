// Child processes for tests, benchmarks and gismo-torture: start a program
// with arguments, environment and redirected or captured output; wait for a
// line it prints, or for its exit, each with a timeout; kill and reap it.
// Not part of the library: never installed.
#ifndef GISMO_TESTING_PROCESS_H_
#define GISMO_TESTING_PROCESS_H_

#include <signal.h>
#include <sys/types.h>

#include <string>
#include <string_view>
#include <vector>

namespace gismo::testing {

// "gismo-[<run>-]<prefix>-<pid>-<n>": unique among the processes running
// now, so regions and sockets of tests and benchmarks running in parallel
// never collide. <run> is $GISMO_TEST_RUN when that is 1-24 letters or
// digits: scripts/test.sh tags its run so that it can remove what tests
// killed before their clean-up left in /dev/shm and /tmp.
std::string UniqueName(const std::string& prefix);
// `path` (made with a UniqueName) after removing what a dead process that
// had our pid left there: a region of another format there would stop a
// manager that opens it.
std::string FreshPath(const std::string& path);

// The exit status as a shell reports it: the exit code, or 128 + the signal
// that ended the process.
int ExitCode(int wait_status);

struct SpawnOptions {
  // argv[0] is a path, or a name looked up in PATH.
  std::vector<std::string> argv;
  // "NAME=value" entries set in the child's environment, after unset_env.
  std::vector<std::string> env;
  std::vector<std::string> unset_env;
  // stdin: this file when set, else inherited.
  std::string stdin_path;
  // stdout: a pipe the parent reads (Process::ReadLine...) when captured;
  // else this file (truncated) when set; else /dev/null if discarded; else
  // inherited.
  bool capture_stdout = false;
  std::string stdout_path;
  bool discard_stdout = false;
  // stderr: where stdout goes when merged; else this file; else inherited.
  bool stderr_to_stdout = false;
  std::string stderr_path;
  bool append_stderr = false;  // open stderr_path for appending, not truncated
  // setpgid(0, 0): a ^C on the terminal does not reach the child.
  bool new_process_group = false;
  // Sent to the child when the thread that started it ends (usually: the
  // parent dies), so that no child outlives a test or benchmark that dies;
  // 0: none.
  int parent_death_signal = 0;
};

// A started child process. It belongs to its Process: destroying a Process
// whose child has not been reaped kills it (SIGKILL) and reaps it.
class Process {
 public:
  Process() = default;
  Process(Process&& other) noexcept;
  Process& operator=(Process&& other) noexcept;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  ~Process();

  // Starts the child; false, with error() saying why, if it could not be
  // forked or its program could not be executed.
  bool Start(const SpawnOptions& options);

  // Reads the captured stdout until a line containing `marker`, which it
  // returns in *line (without the newline). False if the output ends or
  // timeout_s passes first (error() says which); a negative timeout waits
  // without limit. Lines after the one returned stay buffered.
  bool ReadLineContaining(std::string_view marker, double timeout_s, std::string* line);
  // Reads the captured stdout to its end; false if timeout_s passed first
  // (what was read is still returned).
  bool ReadToEnd(double timeout_s, std::string* out);
  // Everything read from the captured stdout so far.
  const std::string& output() const { return output_; }
  // Stops reading stdout (the child gets EPIPE or SIGPIPE if it writes more).
  void CloseStdout();
  // The read end of the captured stdout, handed over to the caller.
  int ReleaseStdout();

  // Sends a signal; false if the child is already reaped.
  bool Signal(int sig) const;
  // Waits until the child exits and reaps it; false if it still runs after
  // timeout_s (negative: no limit). *wait_status receives waitpid's status.
  bool WaitForExit(double timeout_s, int* wait_status = nullptr);
  // Sends `sig`, then waits for the child without limit; its wait status,
  // or -1 if there was no child to stop.
  int KillAndWait(int sig = SIGKILL);
  // Forgets the child without stopping it; returns its pid.
  pid_t Release();

  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }
  const std::string& error() const { return error_; }

 private:
  void Reset();
  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  std::string pending_;  // read from stdout, not yet returned as a line
  std::string output_;
  std::string error_;
};

// Waits until the child `pid` of this process exits and reaps it; false if
// it still runs after timeout_s (negative: no limit).
bool WaitForExit(pid_t pid, double timeout_s, int* wait_status = nullptr);

struct RunResult {
  // ExitCode() of the child; -1 if it could not be started or timed out.
  int exit_code = -1;
  bool timed_out = false;
  std::string output;  // its captured stdout (with stderr if merged)
  std::string error;   // why it could not be started
};
// Runs a program to its end with stdout captured (options.capture_stdout is
// implied); kills it (SIGKILL) once timeout_s has passed.
RunResult Run(SpawnOptions options, double timeout_s);

}  // namespace gismo::testing

#endif  // GISMO_TESTING_PROCESS_H_
