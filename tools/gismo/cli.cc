#include "cli.h"

#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>

#include "args/parse_args.h"

namespace gismo::cli {

const char* const kExitCodeHelp =
    "Exit status:\n"
    "  0  success\n"
    "  1  the store refused or failed the operation (full, object exists, in use, ...)\n"
    "  2  usage error: unknown option, missing argument, bad object id or address\n"
    "  3  cannot connect to the gismo manager (or lost it)\n"
    "  4  no such object\n"
    "  5  the object was not sealed within --timeout-ms\n"
    "  6  cannot read the input file or write the output file\n";

void Fail(int code, const std::string& message) { throw Error(code, message); }

int ExitCodeFor(const Status& s) {
  switch (s.code()) {
    case GISMO_OK:
      return kExitOk;
    case GISMO_ERR_OBJECT_NOT_FOUND:
      return kExitNotFound;
    case GISMO_ERR_TIMEOUT:
      return kExitTimeout;
    case GISMO_ERR_CONNECTION:
    case GISMO_ERR_PROTOCOL:
      return kExitConnect;
    default:
      return kExitStore;
  }
}

void Fail(const Status& s, const std::string& context) {
  Fail(ExitCodeFor(s), context + ": " + s.ToString());
}

void AddCommonOptions(CLI::App* cmd, CommonOptions* common) {
  cmd->add_option("--address", common->address,
                  "Manager address, unix:/path or tcp:host:port (default: $GISMO_ADDRESS, else "
                  "unix:/run/gismo/gismo.sock or unix:$XDG_RUNTIME_DIR/gismo.sock)")
      ->envname("GISMO_ADDRESS");
  cmd->add_flag("--json", common->json, "Print JSON for scripts instead of text");
}

std::string EffectiveAddress(const CommonOptions& common) {
  if (!common.address.empty()) return common.address;
  // As gismo_connect(NULL) chooses (a copy of its rules here once named an
  // address the library never tried, as root).
  const std::string address = gismo_default_address();
  return address.empty() ? "the default address (" + std::string(gismo_last_error()) + ")"
                         : address;
}

Client Connect(const CommonOptions& common) {
  auto c = Client::Connect(common.address);
  if (!c.ok()) {
    Status s = c.status();
    Fail(
        s.code() == GISMO_ERR_INVALID_ARGUMENT ? kExitUsage : kExitConnect,
        "cannot connect to the gismo manager at " + EffectiveAddress(common) + ": " + s.ToString());
  }
  return std::move(*c);
}

ObjectId ParseId(std::string_view hex) {
  auto id = ObjectId::FromHex(hex);
  if (!id.ok()) {
    Fail(kExitUsage, "bad object id '" + std::string(hex) + "': " + id.status().message() +
                         " (or use --name NAME)");
  }
  return *id;
}

void CheckTableName(const std::string& name, const std::string& what) {
  if (name.empty() || name.size() > GISMO_NAME_MAX || name.find('\0') != std::string::npos) {
    Fail(kExitUsage,
         what + ": a name is 1 to " + std::to_string(GISMO_NAME_MAX) + " bytes without a NUL byte");
  }
}

ObjectId ObjectArg::Resolve() const {
  if ((!name.empty()) + (!hex.empty()) + (!bound.empty()) > 1) {
    Fail(kExitUsage, "give one of an object ID, --name or --bound");
  }
  if (!bound.empty()) {
    CheckTableName(bound, "--bound");
    Fail(kExitUsage, "--bound needs a connection to look the name up");
  }
  if (!name.empty()) return ObjectId::FromName(name);
  if (hex.empty()) Fail(kExitUsage, "missing object ID (40 hex digits) or --name NAME");
  return ParseId(hex);
}

ObjectId ObjectArg::Resolve(Client& client) const {
  if (bound.empty()) return Resolve();
  if (!name.empty() || !hex.empty())
    Fail(kExitUsage, "give one of an object ID, --name or --bound");
  CheckTableName(bound, "--bound");
  auto b = client.LookupName(bound);
  if (!b.ok()) Fail(b.status(), "cannot look up the name '" + bound + "'");
  return ObjectId(b->id);
}

void ObjectArg::AddNameOption(CLI::App* cmd, bool with_bound) {
  cmd->add_option("--name", name,
                  "Select the object by name instead of ID (the id derived from the name, as "
                  "ObjectId::FromName does in every binding)");
  if (!with_bound) return;
  cmd->add_option("--bound", bound,
                  "Select the object the name is bound to in the region's name table (gismo "
                  "bind; gismo ls --names lists them)");
}

std::string FormatSize(uint64_t bytes) {
  static const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  double v = static_cast<double>(bytes) / 1024;
  int u = 0;
  while (v >= 1024 && u < 5) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  snprintf(buf, sizeof buf, "%.2f %s", v, kUnits[u]);
  return buf;
}

std::string FormatDuration(double seconds) {
  if (seconds < 0) seconds = 0;
  auto s = static_cast<uint64_t>(seconds);
  char buf[48];
  if (s < 60) {
    snprintf(buf, sizeof buf, "%" PRIu64 "s", s);
  } else if (s < 3600) {
    snprintf(buf, sizeof buf, "%" PRIu64 "m%02" PRIu64 "s", s / 60, s % 60);
  } else if (s < 86400) {
    snprintf(buf, sizeof buf, "%" PRIu64 "h%02" PRIu64 "m", s / 3600, s / 60 % 60);
  } else {
    snprintf(buf, sizeof buf, "%" PRIu64 "d%02" PRIu64 "h", s / 86400, s / 3600 % 24);
  }
  return buf;
}

std::string FormatTime(uint64_t realtime_ns) {
  time_t t = static_cast<time_t>(realtime_ns / 1000000000);
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string Printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto b = static_cast<unsigned char>(c);
    if (b < 0x20 || b == 0x7f || c == '\\') {
      char buf[5];
      snprintf(buf, sizeof buf, "\\x%02x", b);
      out += buf;
    } else {
      out += c;
    }
  }
  return out;
}

uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

nlohmann::json ObjectJson(const gismo_object_info_t& info, uint64_t now_ns) {
  uint64_t age_ns = now_ns > info.create_time_ns ? now_ns - info.create_time_ns : 0;
  return {
      {"id", ObjectId(info.id).Hex()},
      {"state", gismo_state_name(info.state)},
      {"size", info.data_size},
      {"metadata_size", info.metadata_size},
      {"refs", info.ref_count},
      {"node", info.creator_node},
      {"client", info.creator_client},
      {"create_time_ns", info.create_time_ns},
      {"age_seconds", static_cast<double>(age_ns) / 1e9},
      {"owned", (info.flags & GISMO_CREATE_OWNED) != 0},
      {"evictable", (info.flags & GISMO_CREATE_EVICTABLE) != 0},
  };
}

void CheckStdout() {
  std::cout.flush();
  errno = 0;
  const bool flushed = std::fflush(stdout) == 0;
  const int why = errno;
  if (std::cout.fail() || !flushed || std::ferror(stdout)) {
    if (tools::g_standard_descriptor_closed[STDOUT_FILENO]) {
      Fail(kExitLocalIo, "stdout is closed: the output was lost");
    }
    Fail(kExitLocalIo, std::string("cannot write stdout") +
                           (why != 0 ? std::string(": ") + std::strerror(why) : ""));
  }
}

void PrintJson(const nlohmann::json& j) {
  // Names and paths come from the user and need not be UTF-8, which JSON
  // requires: bytes that are not valid UTF-8 are printed as U+FFFD instead
  // of aborting (dump() would throw after the object or file was written).
  std::cout << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
}

}  // namespace gismo::cli
