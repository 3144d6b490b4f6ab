// gismo stat: one object's state, sizes, references and creator.
#include <cstdio>

#include "commands.h"

namespace gismo::cli {
namespace {

struct StatArgs {
  CommonOptions common;
  ObjectArg object;
};

int RunStat(const StatArgs& a) {
  if (a.object.bound.empty()) (void)a.object.Resolve();  // usage errors before connecting
  Client client = Connect(a.common);
  const ObjectId id = a.object.Resolve(client);
  auto info = client.Stat(id);
  if (!info.ok()) Fail(info.status(), "cannot stat object " + id.Hex());
  const uint64_t now = NowNs();
  if (a.common.json) {
    nlohmann::json j = ObjectJson(*info, now);
    if (!a.object.name.empty()) j["name"] = a.object.name;
    PrintJson(j);
    return kExitOk;
  }
  const gismo_object_info_t& i = *info;
  double age = now > i.create_time_ns ? static_cast<double>(now - i.create_time_ns) / 1e9 : 0;
  printf("id:        %s\n", id.Hex().c_str());
  if (!a.object.name.empty()) printf("name:      %s\n", a.object.name.c_str());
  printf("state:     %s\n", gismo_state_name(i.state));
  printf("size:      %s (%llu bytes)\n", FormatSize(i.data_size).c_str(),
         static_cast<unsigned long long>(i.data_size));
  printf("metadata:  %s\n", FormatSize(i.metadata_size).c_str());
  printf("refs:      %llu\n", static_cast<unsigned long long>(i.ref_count));
  printf("creator:   node %u, client slot %u\n", i.creator_node, i.creator_client);
  if (i.flags != 0) {
    printf("flags:    %s%s\n", (i.flags & GISMO_CREATE_OWNED) ? " owned" : "",
           (i.flags & GISMO_CREATE_EVICTABLE) ? " evictable" : "");
  }
  printf("created:   %s (%s ago)\n", FormatTime(i.create_time_ns).c_str(),
         FormatDuration(age).c_str());
  return kExitOk;
}

}  // namespace

Runner SetupStat(CLI::App* cmd) {
  auto a = std::make_shared<StatArgs>();
  cmd->add_option("ID", a->object.hex, "Object id, 40 hex digits");
  a->object.AddNameOption(cmd);
  AddCommonOptions(cmd, &a->common);
  return [a] { return RunStat(*a); };
}

}  // namespace gismo::cli
