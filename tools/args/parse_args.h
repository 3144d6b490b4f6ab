// Command-line parsing shared by the gismo programs: one exit status for a
// usage error in every one of them (CLI11's own codes, 105, 106..., are not
// part of gismo's interface).
#ifndef GISMO_TOOLS_ARGS_PARSE_ARGS_H_
#define GISMO_TOOLS_ARGS_PARSE_ARGS_H_

#include <CLI/CLI.hpp>
#include <optional>

namespace gismo::tools {

// The status every gismo program exits with on a usage error.
inline constexpr int kExitUsageError = 2;

// Parses argv into `app`. Returns the status to exit with when the program
// must stop here: 0 after --help (printed on stdout), kExitUsageError after a
// bad option or value (CLI11's message on stderr); nullopt to go on.
inline std::optional<int> ParseArgs(CLI::App& app, int argc, char** argv) {
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
