// gismo status: the state of the store and its manager in one screen.
#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "commands.h"

namespace gismo::cli {
namespace {

// A manager heartbeat older than this means no manager is serving.
constexpr double kStaleHeartbeatSeconds = 2.0;

struct StatusArgs {
  CommonOptions common;
  bool list_clients = false;  // --clients: one line per client
};

std::string Percent(uint64_t part, uint64_t whole) {
  char buf[16];
  snprintf(buf, sizeof buf, "%.1f%%", whole ? 100.0 * static_cast<double>(part) / whole : 0.0);
  return buf;
}

int RunStatus(const StatusArgs& a) {
  Client client = Connect(a.common);
  auto usage = client.Usage();
  if (!usage.ok()) Fail(usage.status(), "cannot read the store's usage");
  auto clients = client.Clients();
  if (!clients.ok()) Fail(clients.status(), "cannot list clients");
  const gismo_usage_t& u = *usage;
  const uint64_t now = NowNs();
  auto since = [now](uint64_t t) { return now > t ? static_cast<double>(now - t) / 1e9 : 0.0; };
  // Our own connection is one of the clients: leave it out.
  uint32_t my_node = 0, my_slot = 0;
  bool know_self = gismo_client_identity(client.c_client(), &my_node, &my_slot) == GISMO_OK;
  std::map<uint32_t, uint64_t> per_node;
  std::vector<gismo_client_info_t> listed;  // the others, by client id
  for (const auto& c : *clients) {
    if (know_self && c.client == my_slot) continue;
    ++per_node[c.node];
    listed.push_back(c);
  }
  const uint64_t others = listed.size();
  std::sort(listed.begin(), listed.end(),
            [](const gismo_client_info_t& x, const gismo_client_info_t& y) {
              return x.client_id < y.client_id;
            });
  const double uptime = since(u.manager_start_time_ns);
  const double heartbeat_age = since(u.manager_heartbeat_ns);
  // The values of gismo_usage_t::coherence_mode (region-format.md).
  const char* coherence = u.coherence_mode == 1   ? "coherent"
                          : u.coherence_mode == 2 ? "non-coherent"
                                                  : "unknown";
  const bool durable = (u.region_features & GISMO_FEATURE_DURABLE) != 0;

  if (a.common.json) {
    nlohmann::json nodes = nlohmann::json::object();
    for (const auto& [node, n] : per_node) nodes[std::to_string(node)] = n;
    nlohmann::json client_list = nlohmann::json::array();
    for (const auto& c : listed) {
      client_list.push_back({{"client_id", c.client_id},
                             {"slot", c.client},
                             {"node", c.node},
                             {"pid", c.pid},
                             {"connect_time_ns", c.connect_time_ns},
                             {"held_objects", c.held_objects}});
    }
    nlohmann::json client_summary = {{"total", others}, {"max", u.max_clients}, {"by_node", nodes}};
    if (a.list_clients) client_summary["list"] = std::move(client_list);
    PrintJson({
        {"address", EffectiveAddress(a.common)},
        {"capacity_bytes", u.capacity_bytes},
        {"used_bytes", u.used_bytes},
        {"free_bytes", u.free_bytes},
        {"largest_free_bytes", u.largest_free_bytes},
        {"region_size_bytes", u.region_size},
        {"objects",
         {{"total", u.object_count},
          {"sealed", u.sealed_count},
          {"unsealed", u.unsealed_count},
          {"deleting", u.deleting_count},
          {"max", u.max_objects}}},
        {"evictions", {{"objects", u.evictions}, {"bytes", u.evicted_bytes}}},
        {"clients", client_summary},
        {"manager",
         {{"start_time_ns", u.manager_start_time_ns},
          {"uptime_seconds", uptime},
          {"heartbeat_age_seconds", heartbeat_age},
          {"epoch", u.manager_epoch}}},
        {"region",
         {{"format_version", u.format_version},
          {"format_time_ns", u.format_time_ns},
          {"uuid", gismo::RegionUuidHex(u)},
          {"coherence", coherence},
          {"durable", durable}}},
        {"library_version", gismo_version()},
    });
    return kExitOk;
  }

  printf("address:        %s\n", EffectiveAddress(a.common).c_str());
  printf("capacity:       %s\n", FormatSize(u.capacity_bytes).c_str());
  printf("used:           %s (%s)\n", FormatSize(u.used_bytes).c_str(),
         Percent(u.used_bytes, u.capacity_bytes).c_str());
  printf("free:           %s\n", FormatSize(u.free_bytes).c_str());
  printf("largest free:   %s\n", FormatSize(u.largest_free_bytes).c_str());
  printf("objects:        %llu of %llu (%llu sealed, %llu unsealed, %llu pending delete)\n",
         static_cast<unsigned long long>(u.object_count),
         static_cast<unsigned long long>(u.max_objects),
         static_cast<unsigned long long>(u.sealed_count),
         static_cast<unsigned long long>(u.unsealed_count),
         static_cast<unsigned long long>(u.deleting_count));
  printf("evicted:        %llu objects, %s\n", static_cast<unsigned long long>(u.evictions),
         FormatSize(u.evicted_bytes).c_str());
  printf("clients:        %llu of %u (not counting this one)\n",
         static_cast<unsigned long long>(others), u.max_clients);
  for (const auto& [node, n] : per_node) {
    printf("  node %-8u  %llu\n", node, static_cast<unsigned long long>(n));
  }
  if (a.list_clients) {
    // The ids `gismo fence --client` takes.
    printf("  %-10s  %-6s  %-6s  %-10s  %-12s  %s\n", "CLIENT", "SLOT", "NODE", "PID", "CONNECTED",
           "HOLDS");
    for (const auto& c : listed) {
      printf("  %-10llu  %-6u  %-6u  %-10llu  %-12s  %llu\n",
             static_cast<unsigned long long>(c.client_id), c.client, c.node,
             static_cast<unsigned long long>(c.pid),
             (FormatDuration(since(c.connect_time_ns)) + " ago").c_str(),
             static_cast<unsigned long long>(c.held_objects));
    }
  }
  printf("manager:        up %s, epoch %llu%s\n", FormatDuration(uptime).c_str(),
         static_cast<unsigned long long>(u.manager_epoch),
         heartbeat_age > kStaleHeartbeatSeconds ? " (heartbeat stale: manager not running?)" : "");
  printf("region:         %s, format version %u, %s, %s, formatted %s\n",
         FormatSize(u.region_size).c_str(), u.format_version, coherence,
         durable ? "durable" : "not durable", FormatTime(u.format_time_ns).c_str());
  printf("region uuid:    %s\n", gismo::RegionUuidHex(u).c_str());
  printf("library:        %s\n", gismo_version());
  return kExitOk;
}

}  // namespace

Runner SetupStatus(CLI::App* cmd) {
  auto a = std::make_shared<StatusArgs>();
  cmd->add_flag("--clients", a->list_clients,
                "List the connected clients: id (as gismo fence --client takes it), slot, node, "
                "pid on its node, time since it connected, objects it holds");
  AddCommonOptions(cmd, &a->common);
  return [a] { return RunStatus(*a); };
}

}  // namespace gismo::cli
