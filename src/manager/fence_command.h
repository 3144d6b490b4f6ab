// The configured fence action for a whole node (--fence-command), run like
// STONITH: `sh -c 'CMD NODE'`. Exit status 0 means the node is fenced: no
// process of it can touch the region again (powered off, unbound from the
// CXL fabric, its VM or namespace killed). Anything else means it is not.
#ifndef GISMO_MANAGER_FENCE_COMMAND_H_
#define GISMO_MANAGER_FENCE_COMMAND_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace gismo::manager {

class FenceCommand {
 public:
  enum class State { kIdle, kRunning, kSucceeded, kFailed };

  // Starts `command NODE` unless it is running. Never blocks.
  void Start(const std::string& command, uint32_t node, uint64_t timeout_ns);
  // Reaps the child if it ended (or kills it past its deadline). Never blocks.
  State Poll();
  // The state the last Poll (or Start) left, without reaping.
  State state() const { return state_; }
  // The last failure, for the log.
  const std::string& failure() const { return failure_; }
  ~FenceCommand();

 private:
  // Reaps, without blocking, the children killed at their deadline.
  void ReapKilled();

  pid_t child_ = -1;
  std::vector<pid_t> killed_;  // killed at the deadline, not reaped yet
  uint64_t deadline_ns_ = 0;
  State state_ = State::kIdle;
  std::string failure_;
};

// Runs `command NODE` and waits for it (at most timeout_ms); true on exit 0.
// For the manager's start-up, when it must fence the previous manager.
bool RunFenceCommand(const std::string& command, uint32_t node, uint32_t timeout_ms,
                     std::string* failure);

}  // namespace gismo::manager

#endif  // GISMO_MANAGER_FENCE_COMMAND_H_
