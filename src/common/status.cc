// The one place where status codes and object states become words.
#include <gismo/gismo.h>

#include <string>

#include "common/last_error.h"

namespace gismo {

namespace {
thread_local std::string g_last_error;
// Non-null when the last detail could not be copied: what gismo_last_error
// returns instead of g_last_error.
thread_local const char* g_last_error_fixed = nullptr;
}  // namespace

void SetLastError(std::string_view message) noexcept {
  try {
    g_last_error.assign(message);
    g_last_error_fixed = nullptr;
  } catch (...) {
    g_last_error_fixed = "(the detail of this error was lost: out of process memory)";
  }
}

}  // namespace gismo

extern "C" {

const char* gismo_status_message(gismo_status_t status) {
  switch (status) {
#define GISMO_STATUS_MESSAGE_CASE_(name, short_name, value, message, py_class, py_base) \
  case name:                                                                            \
    return message;
    GISMO_STATUS_CODES(GISMO_STATUS_MESSAGE_CASE_)
#undef GISMO_STATUS_MESSAGE_CASE_
  }
  return "unknown status";
}

const char* gismo_state_name(gismo_object_state_t state) {
  switch (state) {
    case GISMO_STATE_UNSEALED:
      return "unsealed";
    case GISMO_STATE_SEALED:
      return "sealed";
    case GISMO_STATE_DELETING:
      return "deleting";
  }
  return "unknown";
}

const char* gismo_last_error(void) {
  return gismo::g_last_error_fixed != nullptr ? gismo::g_last_error_fixed
                                              : gismo::g_last_error.c_str();
}

const char* gismo_version(void) { return "0.1.0"; }

}  // extern "C"
