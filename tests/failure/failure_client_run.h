// Runs the failure_client test tool (tests/failure/failure_client.cc) for
// the failure tests: its path is FAILURE_CLIENT_BIN, set by the test target.
#ifndef GISMO_TESTS_FAILURE_FAILURE_CLIENT_RUN_H_
#define GISMO_TESTS_FAILURE_FAILURE_CLIENT_RUN_H_

#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "testing/process.h"

namespace gismo::testing {

struct ChildResult {
  int status = -1;  // exit code, 128+signal, or -1 if it timed out (killed)
  std::vector<std::string> lines;
};

// Runs failure_client with `commands` (each one -c) and `env` added to the
// environment; kills it after timeout_s.
inline ChildResult RunClient(const std::string& address, const std::vector<std::string>& commands,
                             const std::vector<std::string>& env, double timeout_s = 20) {
  SpawnOptions o;
  o.argv = {FAILURE_CLIENT_BIN, "--address", address};
  for (const auto& c : commands) o.argv.insert(o.argv.end(), {"-c", c});
  o.env = env;
  RunResult run = Run(o, timeout_s);
  EXPECT_TRUE(run.error.empty()) << run.error;
  ChildResult r;
  r.status = run.exit_code;
  std::istringstream in(run.output);
  for (std::string l; std::getline(in, l);) r.lines.push_back(l);
  return r;
}

}  // namespace gismo::testing

#endif  // GISMO_TESTS_FAILURE_FAILURE_CLIENT_RUN_H_
