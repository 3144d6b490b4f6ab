// The one place where status codes become words.
#include <gismo/gismo.h>

#include <string>

#include "common/last_error.h"

namespace gismo {

namespace {
thread_local std::string g_last_error;
}  // namespace

void SetLastError(const std::string& message) { g_last_error = message; }
void ClearLastError() { g_last_error.clear(); }

}  // namespace gismo

extern "C" {

const char* gismo_status_message(gismo_status_t status) {
  switch (status) {
    case GISMO_OK:
      return "OK";
    case GISMO_ERR_INVALID_ARGUMENT:
      return "invalid argument";
    case GISMO_ERR_OBJECT_EXISTS:
      return "object already exists";
    case GISMO_ERR_OBJECT_NOT_FOUND:
      return "object not found";
    case GISMO_ERR_OBJECT_NOT_SEALED:
      return "object is not sealed";
    case GISMO_ERR_OBJECT_ALREADY_SEALED:
      return "object is already sealed";
    case GISMO_ERR_OBJECT_IN_USE:
      return "object is in use";
    case GISMO_ERR_OUT_OF_MEMORY:
      return "store is full";
    case GISMO_ERR_TIMEOUT:
      return "timed out";
    case GISMO_ERR_CONNECTION:
      return "no connection to the manager";
    case GISMO_ERR_PROTOCOL:
      return "protocol error";
    case GISMO_ERR_IO:
      return "I/O error";
    case GISMO_ERR_LIMIT:
      return "limit reached";
    case GISMO_ERR_NOT_CREATOR:
      return "only the creator may do this";
    case GISMO_ERR_NOT_HELD:
      return "object is not held by this client";
    case GISMO_ERR_BAD_REGION:
      return "not a usable gismo region";
    case GISMO_ERR_INTERNAL:
      return "internal error";
    case GISMO_ERR_UNSUPPORTED:
      return "not supported";
    case GISMO_ERR_BUSY:
      return "busy: held by a client that is suspected, not yet fenced";
  }
  return "unknown status";
}

const char* gismo_last_error(void) { return gismo::g_last_error.c_str(); }

const char* gismo_version(void) { return "0.1.0"; }

}  // extern "C"
