// gismo ls: one line per object, filtered and sorted.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "commands.h"

namespace gismo::cli {
namespace {

struct LsArgs {
  CommonOptions common;
  std::string state;  // empty: every state
  std::optional<uint32_t> node;
  std::string prefix;  // of the hex id, any case
  std::string sort = "id";
  bool reverse = false;
  int64_t limit = 0;   // 0: no limit
  bool names = false;  // the name table instead of the objects
};

// gismo ls --names: the bindings of the name table whose name starts with
// --prefix, sorted by name.
int RunLsNames(const LsArgs& a) {
  if (!a.state.empty() || a.node || a.sort != "id") {
    Fail(kExitUsage, "--names lists names: --state, --node and --sort do not apply");
  }
  Client client = Connect(a.common);
  auto listed = client.ListNames(a.prefix);
  if (!listed.ok()) Fail(listed.status(), "cannot list names");
  std::vector<gismo_name_info_t> rows = std::move(*listed);
  std::sort(rows.begin(), rows.end(), [&](const gismo_name_info_t& x, const gismo_name_info_t& y) {
    const int c = std::string(x.name, x.name_size).compare(std::string(y.name, y.name_size));
    return a.reverse ? c > 0 : c < 0;
  });
  if (a.limit != 0 && rows.size() > static_cast<uint64_t>(a.limit)) rows.resize(a.limit);
  const uint64_t now = NowNs();
  if (a.common.json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& r : rows) {
      j.push_back({{"name", std::string(r.name, r.name_size)},
                   {"id", ObjectId(r.id).Hex()},
                   {"version", r.version},
                   {"bind_time", FormatTime(r.bind_time_ns)}});
    }
    PrintJson(j);
    return kExitOk;
  }
  printf("%-40s  %8s  %-8s  %s\n", "ID", "VERSION", "AGE", "NAME");
  for (const auto& r : rows) {
    const double age = now > r.bind_time_ns ? static_cast<double>(now - r.bind_time_ns) / 1e9 : 0;
    printf("%-40s  %8llu  %-8s  %s\n", ObjectId(r.id).Hex().c_str(),
           static_cast<unsigned long long>(r.version), FormatDuration(age).c_str(),
           Printable(std::string_view(r.name, r.name_size)).c_str());
  }
  return kExitOk;
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

int RunLs(LsArgs a) {
  if (a.limit < 0) Fail(kExitUsage, "--limit must be 0 (all) or more");
  if (a.names) return RunLsNames(a);
  a.prefix = Lower(a.prefix);
  if (a.prefix.size() > 2 * ObjectId::kSize ||
      a.prefix.find_first_not_of("0123456789abcdef") != std::string::npos) {
    Fail(kExitUsage, "--prefix must be at most 40 hex digits, got '" + a.prefix + "'");
  }
  Client client = Connect(a.common);
  auto listed = client.List();
  if (!listed.ok()) Fail(listed.status(), "cannot list objects");

  struct Row {
    gismo_object_info_t info;
    std::string hex;
  };
  std::vector<Row> rows;
  for (const auto& info : *listed) {
    Row r{info, ObjectId(info.id).Hex()};
    if (!a.state.empty() && a.state != gismo_state_name(info.state)) continue;
    if (a.node && *a.node != info.creator_node) continue;
    if (r.hex.compare(0, a.prefix.size(), a.prefix) != 0) continue;
    rows.push_back(std::move(r));
  }
  // Every order ends with the id, so that equal keys list stably.
  auto key_less = [&](const Row& x, const Row& y) {
    if (a.sort == "size" && x.info.data_size != y.info.data_size) {
      return x.info.data_size < y.info.data_size;
    }
    if (a.sort == "refs" && x.info.ref_count != y.info.ref_count) {
      return x.info.ref_count < y.info.ref_count;
    }
    // Youngest first: increasing age.
    if (a.sort == "age" && x.info.create_time_ns != y.info.create_time_ns) {
      return x.info.create_time_ns > y.info.create_time_ns;
    }
    return x.hex < y.hex;
  };
  std::sort(rows.begin(), rows.end(), [&](const Row& x, const Row& y) {
    return a.reverse ? key_less(y, x) : key_less(x, y);
  });
  if (a.limit != 0 && rows.size() > static_cast<uint64_t>(a.limit)) rows.resize(a.limit);

  const uint64_t now = NowNs();
  if (a.common.json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& r : rows) j.push_back(ObjectJson(r.info, now));
    PrintJson(j);
    return kExitOk;
  }
  printf("%-40s  %10s  %10s  %-8s  %5s  %5s  %s\n", "ID", "SIZE", "METADATA", "STATE", "REFS",
         "NODE", "AGE");
  for (const auto& r : rows) {
    const auto& i = r.info;
    double age = now > i.create_time_ns ? static_cast<double>(now - i.create_time_ns) / 1e9 : 0;
    printf("%-40s  %10s  %10s  %-8s  %5llu  %5u  %s\n", r.hex.c_str(),
           FormatSize(i.data_size).c_str(), FormatSize(i.metadata_size).c_str(),
           gismo_state_name(i.state), static_cast<unsigned long long>(i.ref_count), i.creator_node,
           FormatDuration(age).c_str());
  }
  return kExitOk;
}

}  // namespace

Runner SetupLs(CLI::App* cmd) {
  auto a = std::make_shared<LsArgs>();
  cmd->add_option("--state", a->state, "Only objects in this state")
      ->check(CLI::IsMember({gismo_state_name(GISMO_STATE_SEALED),
                             gismo_state_name(GISMO_STATE_UNSEALED),
                             gismo_state_name(GISMO_STATE_DELETING)}));
  cmd->add_option("--node", a->node, "Only objects created on this node");
  cmd->add_option("--prefix", a->prefix,
                  "Only objects whose hex id starts with this (with --names: names)");
  cmd->add_flag("--names", a->names,
                "List the region's name table (names bound to objects, sorted by name) "
                "instead of the objects");
  cmd->add_option("--sort", a->sort, "Order: id, size (smallest first), age (youngest first), refs")
      ->capture_default_str()
      ->check(CLI::IsMember({"id", "size", "age", "refs"}));
  cmd->add_flag("--reverse", a->reverse, "Reverse the order");
  cmd->add_option("--limit", a->limit, "Print at most this many objects (0: all)")
      ->capture_default_str();
  AddCommonOptions(cmd, &a->common);
  return [a] { return RunLs(*a); };
}

}  // namespace gismo::cli
