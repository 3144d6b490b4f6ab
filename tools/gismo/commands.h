// The commands of `gismo`, one per cmd_<name>.cc. A new command (e.g.
// `watch`, `fsck`) adds its file, declares its Setup function here and adds
// one row to kCommands in main.cc; nothing else changes.
#ifndef GISMO_TOOLS_GISMO_COMMANDS_H_
#define GISMO_TOOLS_GISMO_COMMANDS_H_

#include "cli.h"

namespace gismo::cli {

Runner SetupStatus(CLI::App* cmd);
Runner SetupLs(CLI::App* cmd);
Runner SetupStat(CLI::App* cmd);
Runner SetupPut(CLI::App* cmd);
Runner SetupGet(CLI::App* cmd);
Runner SetupRm(CLI::App* cmd);
Runner SetupWatch(CLI::App* cmd);
Runner SetupFsck(CLI::App* cmd);
Runner SetupFence(CLI::App* cmd);
Runner SetupBind(CLI::App* cmd);
Runner SetupUnbind(CLI::App* cmd);

}  // namespace gismo::cli

#endif  // GISMO_TOOLS_GISMO_COMMANDS_H_
