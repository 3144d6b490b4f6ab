// Shared pieces of the `gismo` command: exit codes, errors, the options
// every command takes, object id parsing and output formatting.
//
// The command uses only the public API (gismo.hpp); it links libgismo.so.
#ifndef GISMO_TOOLS_GISMO_CLI_H_
#define GISMO_TOOLS_GISMO_CLI_H_

#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
#include <gismo/gismo.hpp>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>

namespace gismo::cli {

// Exit statuses. Stable: scripts rely on them (listed in `gismo --help` and
// doc/operations.md).
enum ExitCode : int {
  kExitOk = 0,
  kExitStore = 1,     // the store refused or failed the operation
  kExitUsage = 2,     // bad command line: unknown option, bad id, missing argument
  kExitConnect = 3,   // cannot reach the manager (or lost it)
  kExitNotFound = 4,  // no such object
  kExitTimeout = 5,   // the object was not sealed within --timeout-ms
  kExitLocalIo = 6,   // cannot read the input file or write the output file
};

// The text of the exit status table, for --help.
extern const char* const kExitCodeHelp;

// A failed command: main() prints "gismo: <what>" on stderr and exits with
// code().
class Error : public std::runtime_error {
 public:
  Error(int code, const std::string& message) : std::runtime_error(message), code_(code) {}
  int code() const { return code_; }

 private:
  int code_;
};

[[noreturn]] void Fail(int code, const std::string& message);
// The exit code for a failed store call.
int ExitCodeFor(const Status& s);
// Fails with ExitCodeFor(s) and "<context>: <s>".
[[noreturn]] void Fail(const Status& s, const std::string& context);

// Options every command takes.
struct CommonOptions {
  std::string address;  // empty: $GISMO_ADDRESS, else the library default
  bool json = false;
};
void AddCommonOptions(CLI::App* cmd, CommonOptions* common);
// The address the library will use, for messages.
std::string EffectiveAddress(const CommonOptions& common);
// Connects or fails with kExitConnect (kExitUsage for a malformed address).
Client Connect(const CommonOptions& common);

// Selecting one object: a 40-hex-digit id, --name (the id ObjectId::FromName
// derives from a string; no lookup), or --bound (the object a name of the
// region's name table is bound to: `gismo bind`, gismo_bind_name).
struct ObjectArg {
  std::string hex;
  std::string name;
  std::string bound;
  // Without --bound; fails with kExitUsage.
  ObjectId Resolve() const;
  // With --bound too: looks the name up (kExitNotFound if it is not bound).
  ObjectId Resolve(Client& client) const;
  // Adds --name and --bound to `cmd` (the positional ID is added by the
  // command, as its position depends on the command's other arguments).
  // `with_bound` false: --name only (put names a new object; it binds with
  // --bind instead).
  void AddNameOption(CLI::App* cmd, bool with_bound = true);
  bool by_name() const { return !name.empty() || !bound.empty(); }
};
// Fails with kExitUsage unless `name` is one the region's name table can
// hold (1 to GISMO_NAME_MAX bytes, no NUL byte); `what` names the argument.
void CheckTableName(const std::string& name, const std::string& what);

// Parses exactly 40 hex digits or fails with kExitUsage.
ObjectId ParseId(std::string_view hex);

// "512 B", "1.50 GiB".
std::string FormatSize(uint64_t bytes);
// "45s", "12m05s", "3h07m", "2d04h".
std::string FormatDuration(double seconds);
// "2024-05-01T12:00:00Z".
std::string FormatTime(uint64_t realtime_ns);
// Text another client wrote (a name), fit for a terminal: each control
// byte and backslash as \xNN, so that it can neither forge rows nor send
// escape sequences.
std::string Printable(std::string_view text);
uint64_t NowNs();

// One object as JSON (the same keys in ls, stat and put).
nlohmann::json ObjectJson(const gismo_object_info_t& info, uint64_t now_ns);
// Prints `j` on stdout, indented.
void PrintJson(const nlohmann::json& j);
// Flushes std::cout and stdout; throws Error (kExitLocalIo) if either failed
// to write (a full disk, /dev/full, a stdout closed at the start): output
// that was lost is never exit 0.
void CheckStdout();

// A command: Setup adds its options to `cmd` and returns the function that
// runs it once the command line is parsed. Run returns an exit code or
// throws Error.
using Runner = std::function<int()>;
struct CommandSpec {
  const char* name;
  const char* summary;
  Runner (*setup)(CLI::App* cmd);
};

}  // namespace gismo::cli

#endif  // GISMO_TOOLS_GISMO_CLI_H_
