// gismo fence: an operator's word that a client, or a whole node, can never
// run again, so the manager recovers what it held (doc/failure.md).
#include <cstdio>

#include "commands.h"

namespace gismo::cli {
namespace {

struct FenceArgs {
  CommonOptions common;
  int64_t client = -1;
  int64_t slot = -1;
  int64_t node = -1;
};

int RunFence(const FenceArgs& a) {
  const int given = (a.client >= 0) + (a.slot >= 0) + (a.node >= 0);
  if (given != 1) Fail(kExitUsage, "give exactly one of --client, --slot or --node");
  gismo_fence_target_t target = GISMO_FENCE_CLIENT;
  uint64_t value = static_cast<uint64_t>(a.client);
  if (a.slot >= 0) {
    target = GISMO_FENCE_SLOT;
    value = static_cast<uint64_t>(a.slot);
  } else if (a.node >= 0) {
    target = GISMO_FENCE_NODE;
    value = static_cast<uint64_t>(a.node);
  }
  Client client = Connect(a.common);
  auto r = client.Fence(target, value);
  if (!r.ok()) Fail(r.status(), "the manager refused the fence");
  if (a.common.json) {
    PrintJson({{"fenced", true}, {"report", *r}});
  } else {
    printf("%s\n", r->c_str());
  }
  return kExitOk;
}

}  // namespace

Runner SetupFence(CLI::App* cmd) {
  auto a = std::make_shared<FenceArgs>();
  cmd->add_option("--client", a->client, "Client id (as `gismo status --clients` lists them)")
      ->check(CLI::NonNegativeNumber);
  // Slots and nodes are 32-bit: a larger number is a usage error, not the
  // manager's refusal (exit 1).
  cmd->add_option("--slot", a->slot, "Client slot")
      ->check(CLI::Range(int64_t{0}, int64_t{UINT32_MAX}));
  cmd->add_option("--node", a->node, "Node id: every client of that node")
      ->check(CLI::Range(int64_t{0}, int64_t{UINT32_MAX}));
  cmd->footer(
      "\nSay it only when it is certain: the client's process is gone, or its host is\n"
      "powered off or cut off from the memory pool. The manager then recovers it at once\n"
      "(undoes its interrupted operation, aborts its unsealed objects, drops its references).\n"
      "A client that is merely suspected (lease expired, connection lost) is otherwise left\n"
      "untouched until the manager proves it gone itself: through its own kernel, the node's\n"
      "agent (gismo-agent) or the --fence-command of gismo-manager.\n"
      "\nIn a non-coherent region (CXL 2.0 memory), give it on the fenced client's host when\n"
      "that host has no agent: the lines its process left in this host's caches are written\n"
      "back first (the report says so). Given on another host, it must mean that the\n"
      "client's host is powered off or cut off from the pool.");
  AddCommonOptions(cmd, &a->common);
  return [a] { return RunFence(*a); };
}

}  // namespace gismo::cli
