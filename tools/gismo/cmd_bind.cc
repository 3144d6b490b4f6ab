// gismo bind / gismo unbind: the region's name table (names bound to
// objects; gismo.h, "names"). `gismo ls --names` lists it.
#include <cstdio>
#include <string>

#include "commands.h"

namespace gismo::cli {
namespace {

struct BindArgs {
  CommonOptions common;
  std::string name;
  ObjectArg object;
  std::string if_bound_to;  // hex id: compare-and-swap
  bool if_unbound = false;
};

int RunBind(const BindArgs& a) {
  if (!a.if_bound_to.empty() && a.if_unbound) {
    Fail(kExitUsage, "give --if-bound-to or --if-unbound, not both");
  }
  CheckTableName(a.name, "NAME");
  if (a.object.bound.empty()) (void)a.object.Resolve();  // usage errors before connecting
  const ObjectId expected = a.if_bound_to.empty() ? ObjectId() : ParseId(a.if_bound_to);
  Client client = Connect(a.common);
  const ObjectId id = a.object.Resolve(client);
  Status s = !a.if_bound_to.empty() ? client.SwapName(a.name, expected, id)
             : a.if_unbound         ? client.BindNameIfUnbound(a.name, id)
                                    : client.BindName(a.name, id);
  if (!s.ok()) Fail(s, "cannot bind the name '" + a.name + "' to " + id.Hex());
  auto b = client.LookupName(a.name);
  if (a.common.json) {
    nlohmann::json j = {{"name", a.name}, {"id", id.Hex()}};
    if (b.ok()) j["version"] = b->version;
    PrintJson(j);
  } else {
    printf("bound '%s' to %s\n", a.name.c_str(), id.Hex().c_str());
  }
  return kExitOk;
}

struct UnbindArgs {
  CommonOptions common;
  std::string name;
  std::string if_bound_to;
};

int RunUnbind(const UnbindArgs& a) {
  CheckTableName(a.name, "NAME");
  const ObjectId expected = a.if_bound_to.empty() ? ObjectId() : ParseId(a.if_bound_to);
  Client client = Connect(a.common);
  Status s = client.UnbindName(a.name, a.if_bound_to.empty() ? nullptr : &expected);
  if (!s.ok()) Fail(s, "cannot unbind the name '" + a.name + "'");
  if (a.common.json) {
    PrintJson({{"name", a.name}, {"unbound", true}});
  } else {
    printf("unbound '%s'\n", a.name.c_str());
  }
  return kExitOk;
}

}  // namespace

Runner SetupBind(CLI::App* cmd) {
  auto a = std::make_shared<BindArgs>();
  cmd->add_option("NAME", a->name, "The name (1 to 192 bytes)")->required();
  cmd->add_option("ID", a->object.hex, "Object id, 40 hex digits (omit with --name or --bound)");
  a->object.AddNameOption(cmd);
  cmd->add_option("--if-bound-to", a->if_bound_to,
                  "Only if NAME is bound to this id now (compare-and-swap; exit 1 otherwise)");
  cmd->add_flag("--if-unbound", a->if_unbound, "Only if NAME is not bound (exit 1 otherwise)");
  AddCommonOptions(cmd, &a->common);
  return [a] { return RunBind(*a); };
}

Runner SetupUnbind(CLI::App* cmd) {
  auto a = std::make_shared<UnbindArgs>();
  cmd->add_option("NAME", a->name, "The name")->required();
  cmd->add_option("--if-bound-to", a->if_bound_to,
                  "Only if NAME is bound to this id now (exit 1 otherwise)");
  AddCommonOptions(cmd, &a->common);
  return [a] { return RunUnbind(*a); };
}

}  // namespace gismo::cli
