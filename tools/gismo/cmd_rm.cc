// gismo rm: delete a sealed object (freed at its last release).
#include <cstdio>

#include "commands.h"

namespace gismo::cli {
namespace {

struct RmArgs {
  CommonOptions common;
  ObjectArg object;
};

int RunRm(const RmArgs& a) {
  if (a.object.bound.empty()) (void)a.object.Resolve();  // usage errors before connecting
  Client client = Connect(a.common);
  const ObjectId id = a.object.Resolve(client);
  if (Status s = client.Delete(id); !s.ok()) Fail(s, "cannot delete object " + id.Hex());
  if (a.common.json) {
    nlohmann::json j = {{"id", id.Hex()}, {"deleted", true}};
    if (!a.object.name.empty()) j["name"] = a.object.name;
    PrintJson(j);
  } else {
    printf("deleted %s\n", id.Hex().c_str());
  }
  return kExitOk;
}

}  // namespace

Runner SetupRm(CLI::App* cmd) {
  auto a = std::make_shared<RmArgs>();
  cmd->add_option("ID", a->object.hex, "Object id, 40 hex digits");
  a->object.AddNameOption(cmd);
  AddCommonOptions(cmd, &a->common);
  return [a] { return RunRm(*a); };
}

}  // namespace gismo::cli
