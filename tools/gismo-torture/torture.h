// gismo-torture: workers, the end-of-run check, and the orchestrating run.
#ifndef GISMO_TOOLS_TORTURE_TORTURE_H_
#define GISMO_TOOLS_TORTURE_TORTURE_H_

#include <cstdint>
#include <string>
#include <vector>

namespace gismo::torture {

// Operation counters. A worker keeps them in a file it maps shared, so the
// counts of a SIGKILLed worker survive it.
enum Counter : uint32_t {
  kOpCreate,  // create returned a writable object
  kOpSeal,
  kOpAbort,
  kOpPut,
  kOpGet,      // get found the object and it verified
  kOpGetMiss,  // not sealed / not there
  kOpRelease,
  kOpHold,        // a get kept for later
  kOpDelete,      // delete returned OK
  kOpDeleteGone,  // someone else deleted it first
  kOpExists,      // create of a key that exists
  kOpOutOfMemory,
  kOpReconnect,  // connection lost (manager death) and connected again
  kOpEvict,      // gismo_evict calls (objects evicted: gismo status, metrics)
  kFailures,     // invariant violations seen by the worker
  kNumCounters
};
const char* CounterName(uint32_t c);

struct WorkerOptions {
  std::string address;
  std::string address_file;  // if set, read the address from it at each connect
  std::string tag;
  std::string journal;  // path prefix: PREFIX.log and PREFIX.stats
  uint64_t seed = 1;
  uint64_t keys = 256;
  uint64_t max_size = 256 << 10;
  uint32_t hold_max = 8;
  double seconds = 0;  // 0: until SIGTERM
};
int RunWorker(const WorkerOptions& o);

struct CheckOptions {
  std::string address;
  std::string tag;
  std::string journal_dir;  // every *.log in it is a worker journal
  uint64_t keys = 256;
  double idle_timeout_s = 60;  // for every other client to be gone
  uint32_t others = 0;         // clients that may stay (not workers)
  bool delete_all = true;      // then require an empty heap
  std::string fsck;            // gismo-fsck binary, empty: skip
};
struct CheckResult {
  uint64_t objects_verified = 0;
  uint64_t failures = 0;
  std::vector<std::string> problems;
  std::string fsck_line;  // gismo-fsck's summary when it ran and passed
};
// Verifies the region after the workers are gone (see RunCheck in check.cc).
CheckResult RunCheck(const CheckOptions& o);

// Runs a child to completion; its exit status (128+sig if killed), -1 if it
// could not be started or did not end within timeout_s (then it is killed).
int RunProcess(const std::vector<std::string>& argv, double timeout_s, std::string* output);

}  // namespace gismo::torture

#endif  // GISMO_TOOLS_TORTURE_TORTURE_H_
