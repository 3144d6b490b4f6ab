// The experiments of gismo-bench. Each has a driver, run by the command line
// process, and worker roles, run in processes placed on nodes. Drivers return
// their results as JSON; workers print one JSON line on stdout.
#ifndef GISMO_BENCH_EXPERIMENTS_H_
#define GISMO_BENCH_EXPERIMENTS_H_

#include <functional>
#include <map>
#include <string>

#include "bench_util.h"

namespace gismo::bench {

struct Options {
  double scale = 1.0;
  int repeats = 0;  // 0: the experiment's default
  int nodes = 4;
  Placement where;
  std::string tag;  // unique per run: prefixes every object name
  // A fresh run tag for one phase of an experiment.
  std::string Tag(const std::string& phase) const { return tag + "/" + phase; }
};

json RunTable1(const Options& o);
json RunTransfer(const Options& o);  // subcommand "gismo"
json RunShuffle(const Options& o);
json RunMemory(const Options& o);
json RunRedis(const Options& o);

using WorkerFn = std::function<json(const json& args)>;
// role name -> worker body.
std::map<std::string, WorkerFn>& WorkerRoles();

// Registers a worker role at static initialization.
struct RegisterRole {
  RegisterRole(const std::string& role, WorkerFn fn) { WorkerRoles()[role] = std::move(fn); }
};

// For workers: the connection every role opens first.
Client ConnectWorker();

}  // namespace gismo::bench

#endif  // GISMO_BENCH_EXPERIMENTS_H_
