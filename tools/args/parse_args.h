// Command-line parsing shared by the gismo programs: one exit status for a
// usage error in every one of them (CLI11's own codes, 105, 106..., are not
// part of gismo's interface).
#ifndef GISMO_TOOLS_ARGS_PARSE_ARGS_H_
#define GISMO_TOOLS_ARGS_PARSE_ARGS_H_

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <charconv>
#include <cstdint>
#include <optional>
#include <string>

namespace gismo::tools {

// The status every gismo program exits with on a usage error.
inline constexpr int kExitUsageError = 2;

// CLI11 (2.1) reads integers with strtoll/strtoull in base 0, so "010" is 8
// and "0x10" 16 (`gismo fence --node 010` would fence node 8), an unsigned
// option takes "-1" as its largest value, and a 64-bit value out of range
// saturates. Every integer option (type INT or UINT) of `app` and its
// subcommands is checked first to be a plain decimal number in range:
// digits, a '-' only where signed, no leading zero, no base prefix.
inline void RequireDecimalIntegers(CLI::App& app) {
  for (CLI::Option* opt : app.get_options()) {
    // The type, without the descriptions of validators CLI11 appends.
    const std::string full = opt->get_type_name();
    const std::string type = full.substr(0, full.find(':'));
    const bool is_signed = type == "INT";
    if (!is_signed && type != "UINT") continue;
    opt->check(CLI::Validator(
        [is_signed](std::string& v) -> std::string {
          const char* begin = v.data();
          const char* end = v.data() + v.size();
          const char* digits = is_signed && begin != end && *begin == '-' ? begin + 1 : begin;
          bool plain = digits != end && (*digits != '0' || digits + 1 == end);
          for (const char* c = digits; plain && c != end; ++c) plain = *c >= '0' && *c <= '9';
          if (!plain)
            return "'" + v + "' is not a " + (is_signed ? "" : "non-negative ") + "decimal integer";
          std::from_chars_result r;
          if (is_signed) {
            int64_t x = 0;
            r = std::from_chars(begin, end, x);
          } else {
            uint64_t x = 0;
            r = std::from_chars(begin, end, x);
          }
          return r.ec == std::errc() ? std::string() : "'" + v + "' is out of range";
        },
        "", "decimal"));
  }
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
    RequireDecimalIntegers(*sub);
  }
}

// Which of stdin, stdout and stderr were closed when the program started
// (TakeStandardDescriptors).
inline bool g_standard_descriptor_closed[3] = {};

// A program started with stdin, stdout or stderr closed would give that
// number to the next descriptor it opens (the manager's socket, a region, a
// listening socket): a printf, or a read of stdin, would then go to it (an
// object's bytes written into the protocol stream). Each closed one is
// opened on /dev/null first; g_standard_descriptor_closed says which were.
// With `refuse_stdout_writes`, a closed stdout is /dev/null opened for
// reading: what the program prints there fails, where it would be lost
// with exit 0 (coreutils fail so: "write error: Bad file descriptor").
// The first call decides; later ones find the descriptors open.
inline void TakeStandardDescriptors(bool refuse_stdout_writes = false) {
  for (int fd = 0; fd < 3; ++fd) {
    if (fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
    g_standard_descriptor_closed[fd] = true;
    const bool read_only = fd == STDIN_FILENO || (fd == STDOUT_FILENO && refuse_stdout_writes);
    // The lowest free number: fd itself, as the ones below it are open.
    const int null_fd = open("/dev/null", read_only ? O_RDONLY : O_WRONLY);
    if (null_fd >= 0 && null_fd != fd) {
      (void)dup2(null_fd, fd);
      close(null_fd);
    }
  }
}

// Parses argv into `app` (after TakeStandardDescriptors). Returns the status to exit with when the
// program must stop here: 0 after --help (printed on stdout), kExitUsageError after a bad option or
// value (CLI11's message on stderr); nullopt to go on.
inline std::optional<int> ParseArgs(CLI::App& app, int argc, char** argv) {
  TakeStandardDescriptors();
  RequireDecimalIntegers(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : kExitUsageError;
  }
  return std::nullopt;
}

}  // namespace gismo::tools

// In main(): parses, or returns the exit status ParseArgs gives.
#define GISMO_PARSE_ARGS(app, argc, argv)                                     \
  do {                                                                        \
    if (auto gismo_exit = ::gismo::tools::ParseArgs((app), (argc), (argv))) { \
      return *gismo_exit;                                                     \
    }                                                                         \
  } while (0)

#endif  // GISMO_TOOLS_ARGS_PARSE_ARGS_H_
