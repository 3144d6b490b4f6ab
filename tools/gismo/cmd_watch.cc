// gismo watch: one line per notification (seal, delete, overflow) as it
// comes.
#include <time.h>

#include <cinttypes>
#include <cstdio>
#include <iostream>
#include <string>

#include "commands.h"

namespace gismo::cli {
namespace {

struct WatchArgs {
  CommonOptions common;
  int64_t count = 0;        // 0: no limit
  int64_t timeout_ms = -1;  // idle time that ends the watch; -1: never
  bool no_initial = false;
};

const char* EventName(const Notification& n) {
  if (n.event == GISMO_EVENT_DELETED && n.evicted()) return "evicted";
  switch (n.event) {
    case GISMO_EVENT_SEALED:
      return "sealed";
    case GISMO_EVENT_DELETED:
      return "deleted";
    case GISMO_EVENT_OVERFLOW:
      return "overflow";
  }
  return "unknown";
}

// "2024-05-01T12:00:00.123456Z".
std::string FormatTimeUs(uint64_t realtime_ns) {
  time_t t = static_cast<time_t>(realtime_ns / 1000000000);
  struct tm tm {};
  gmtime_r(&t, &tm);
  char date[32];
  strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
  char buf[48];
  snprintf(buf, sizeof buf, "%s.%06uZ", date,
           static_cast<unsigned>(realtime_ns % 1000000000 / 1000));
  return buf;
}

void PrintHuman(const Notification& n, uint64_t now) {
  if (n.overflow()) {
    printf("%-27s  %-8s  %-40s  events were lost: resynchronize with 'gismo ls'\n",
           FormatTimeUs(now).c_str(), EventName(n), "-");
  } else {
    printf("%-27s  %-8s  %-40s  %10s  %10s  %5u  %" PRIu64 "\n", FormatTimeUs(now).c_str(),
           EventName(n), n.id.Hex().c_str(), FormatSize(n.data_size).c_str(),
           FormatSize(n.metadata_size).c_str(), n.node, n.seq);
  }
  CheckStdout();
}

void PrintJsonLine(const Notification& n, uint64_t now) {
  nlohmann::json j = {
      {"time", FormatTimeUs(now)},
      {"time_ns", now},
      {"event", EventName(n)},
      {"id", n.overflow() ? nlohmann::json(nullptr) : nlohmann::json(n.id.Hex())},
      {"size", n.data_size},
      {"metadata_size", n.metadata_size},
      {"node", n.node},
      {"seq", n.seq},
  };
  std::cout << j.dump() << std::endl;
  CheckStdout();
}

int RunWatch(const WatchArgs& a) {
  if (a.count < 0) Fail(kExitUsage, "--count must be 0 (no limit) or more");
  if (a.timeout_ms < -1) Fail(kExitUsage, "--timeout-ms must be -1 (forever), 0 or more");
  Client client = Connect(a.common);
  auto sub = client.Subscribe();
  if (!sub.ok()) Fail(sub.status(), "cannot subscribe");
  if (!a.common.json) {
    printf("%-27s  %-8s  %-40s  %10s  %10s  %5s  %s\n", "TIME", "EVENT", "ID", "SIZE", "METADATA",
           "NODE", "SEQ");
    CheckStdout();
  }
  int64_t printed = 0;
  while (a.count == 0 || printed < a.count) {
    auto n = sub->Next(a.timeout_ms);
    if (!n.ok()) {
      if (n.status().code() != GISMO_ERR_TIMEOUT) Fail(n.status(), "lost the subscription");
      if (a.count == 0) return kExitOk;  // idle for --timeout-ms: done
      Fail(kExitTimeout, "got " + std::to_string(printed) + " of " + std::to_string(a.count) +
                             " notifications: none for " + std::to_string(a.timeout_ms) +
                             " ms (--timeout-ms)");
    }
    // The initial listing is the only source of seq 0 besides overflows.
    if (a.no_initial && n->event == GISMO_EVENT_SEALED && n->seq == 0) continue;
    const uint64_t now = NowNs();
    if (a.common.json) {
      PrintJsonLine(*n, now);
    } else {
      PrintHuman(*n, now);
    }
    ++printed;
  }
  return kExitOk;
}

}  // namespace

Runner SetupWatch(CLI::App* cmd) {
  auto a = std::make_shared<WatchArgs>();
  cmd->add_option("--count", a->count, "Stop after printing this many notifications (0: no limit)")
      ->capture_default_str();
  cmd->add_option("--timeout-ms", a->timeout_ms,
                  "Stop when no notification came for this long (-1: never). With --count, "
                  "stopping before COUNT notifications exits with status 5")
      ->capture_default_str();
  cmd->add_flag("--no-initial", a->no_initial,
                "Skip the objects already sealed when the watch starts (listed first, seq 0)");
  AddCommonOptions(cmd, &a->common);
  cmd->footer(
      "\nOne line per notification: the time it was received (UTC), the event (sealed, deleted, "
      "overflow: events were lost), the id, data and metadata sizes, the node that sealed or "
      "deleted it, and seq (the store's event order; 0 for objects already sealed when the "
      "watch started). --json prints one JSON object per line.\n" +
      cmd->get_footer());
  return [a] { return RunWatch(*a); };
}

}  // namespace gismo::cli
