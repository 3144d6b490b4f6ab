// gismo fsck: the region checker (gismo-fsck, installed beside gismo), run
// online through the manager at --address, or offline on --region.
#include <limits.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "commands.h"

namespace gismo::cli {
namespace {

struct FsckArgs {
  CommonOptions common;
  std::string region;
  bool quiet = false;
  bool online = false;
  bool offline_while_served = false;
};

// gismo-fsck's status for "could not open the region or the manager".
constexpr int kFsckCannotCheck = 2;

// gismo-fsck in the directory of this executable, else on PATH.
std::string CheckerPath() {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) {
    self[n] = '\0';
    std::string dir(self);
    dir.resize(dir.rfind('/') + 1);
    for (const char* rel : {"gismo-fsck", "../gismo-fsck/gismo-fsck"}) {
      std::string p = dir + rel;
      if (access(p.c_str(), X_OK) == 0) return p;
    }
  }
  return "gismo-fsck";
}

int RunFsck(const FsckArgs& a) {
  if (!a.region.empty() && !a.common.address.empty()) {
    Fail(kExitUsage, "--region checks offline, --address online: give one or the other");
  }
  std::vector<std::string> args = {CheckerPath()};
  if (!a.region.empty()) {
    args.insert(args.end(), {"--region", a.region});
    if (a.offline_while_served) args.push_back("--offline-while-served");
  } else {
    args.push_back("--online");
    if (!a.common.address.empty()) args.insert(args.end(), {"--address", a.common.address});
  }
  if (a.quiet) args.push_back("--quiet");
  if (a.common.json) args.push_back("--json");
  std::vector<char*> argv;
  for (auto& s : args) argv.push_back(s.data());
  argv.push_back(nullptr);
  fflush(stdout);
  execvp(argv[0], argv.data());
  Fail(kFsckCannotCheck,
       "cannot run the region checker '" + args[0] + "': " + std::strerror(errno));
}

}  // namespace

Runner SetupFsck(CLI::App* cmd) {
  auto a = std::make_shared<FsckArgs>();
  cmd->add_option("--region", a->region,
                  "Check this region offline (nothing may run on it) instead of online "
                  "through the manager");
  cmd->add_flag("--online", a->online,
                "Check online through the manager (the default without --region)")
      ->excludes("--region");
  cmd->add_flag("--offline-while-served", a->offline_while_served,
                "With --region: check even though a manager on this host serves the region "
                "(its clients' operations in flight show as problems)")
      ->needs("--region");
  cmd->add_flag("-q,--quiet", a->quiet, "Print problems only");
  cmd->add_flag("--json", a->common.json, "Print the report as one JSON object");
  cmd->add_option("--address", a->common.address,
                  "Manager to check through (default $GISMO_ADDRESS, else the default socket)");
  cmd->footer(
      "\nRuns gismo-fsck, and exits with its status: 0 the region is sound, 1 problems\n"
      "were found (each printed as 'problem: ...'), 2 the region or the manager could not\n"
      "be opened, 3 online: the check could not finish (a lock stayed busy). These are\n"
      "gismo-fsck's, not the other commands' (where 3 is 'cannot connect').");
  return [a] { return RunFsck(*a); };
}

}  // namespace gismo::cli
