// gismo: inspect and operate a gismo store from the shell.
#include <cstdio>
#include <exception>
#include <iterator>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "args/parse_args.h"
#include "cli.h"
#include "commands.h"

namespace gismo::cli {
namespace {

// Every command, in the order --help lists them.
const CommandSpec kCommands[] = {
    {"status", "Capacity, usage, objects, clients per node, manager and versions", SetupStatus},
    {"ls", "List objects, with filters and sorting", SetupLs},
    {"stat", "Show one object", SetupStat},
    {"put", "Store a file (or stdin) as a sealed object", SetupPut},
    {"get", "Write an object's data to a file (or stdout)", SetupGet},
    {"rm", "Delete an object", SetupRm},
    {"bind", "Bind a name of the region's name table to an object", SetupBind},
    {"unbind", "Unbind a name of the region's name table", SetupUnbind},
    {"watch", "Print seals and deletes as they happen, anywhere in the cluster", SetupWatch},
    {"fsck", "Verify every invariant of the region (online, or offline with --region)", SetupFsck},
    {"fence", "Declare a client or node fenced (it can never run again): recover it now",
     SetupFence},
};

int Main(int argc, char** argv) {
  CLI::App app{
      "gismo: inspect and operate a gismo shared-memory object store.\n"
      "Object IDs are 40 hex digits; --name NAME selects the object whose id derives from NAME."};
  app.require_subcommand(1);
  app.footer(std::string("\n") + kExitCodeHelp +
             "\nRun 'gismo COMMAND --help' for a command's options.");

  std::vector<std::pair<CLI::App*, Runner>> commands;
  for (const CommandSpec& spec : kCommands) {
    CLI::App* cmd = app.add_subcommand(spec.name, spec.summary);
    cmd->footer(std::string("\n") + kExitCodeHelp);
    commands.emplace_back(cmd, spec.setup(cmd));
  }

  // CLI11 reports an unknown command only as a missing one.
  if (argc > 1 && argv[1][0] != '-') {
    std::string names;
    bool known = false;
    for (const CommandSpec& spec : kCommands) {
      known = known || std::string(argv[1]) == spec.name;
      names += (names.empty() ? "" : ", ") + std::string(spec.name);
    }
    if (!known) {
      fprintf(stderr, "gismo: unknown command '%s' (commands: %s; see gismo --help)\n", argv[1],
              names.c_str());
      return kExitUsage;
    }
  }
  // Nor an unknown option before the command ("A subcommand is required").
  if (argc > 1 && argv[1][0] == '-' && std::string(argv[1]) != "-h" &&
      std::string(argv[1]) != "--help") {
    fprintf(stderr,
            "gismo: unknown option '%s' (the command comes first: gismo COMMAND [OPTIONS])\n"
            "Run with --help for more information.\n",
            argv[1]);
    return kExitUsage;
  }
  static_assert(kExitUsage == tools::kExitUsageError);
  // A command's output to a stdout closed at the start fails (CheckStdout).
  tools::TakeStandardDescriptors(/*refuse_stdout_writes=*/true);
  GISMO_PARSE_ARGS(app, argc, argv);
  for (auto& [cmd, run] : commands) {
    if (!cmd->parsed()) continue;
    try {
      const int code = run();
      CheckStdout();
      return code;
    } catch (const Error& e) {
      fprintf(stderr, "gismo %s: %s\n", cmd->get_name().c_str(), e.what());
      return e.code();
    } catch (const std::bad_alloc&) {
      fprintf(stderr, "gismo %s: out of memory\n", cmd->get_name().c_str());
      return kExitStore;
    } catch (const std::exception& e) {
      fprintf(stderr, "gismo %s: %s\n", cmd->get_name().c_str(), e.what());
      return kExitStore;
    }
  }
  return kExitUsage;  // unreachable: require_subcommand(1)
}

}  // namespace
}  // namespace gismo::cli

int main(int argc, char** argv) { return gismo::cli::Main(argc, argv); }
