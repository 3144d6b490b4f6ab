// The per-thread detail behind gismo_last_error().
#ifndef GISMO_COMMON_LAST_ERROR_H_
#define GISMO_COMMON_LAST_ERROR_H_

#include <string>

namespace gismo {
// Called by every C API call that fails, and only then: a call that succeeds
// leaves the detail of the last failure in place (gismo.h, gismo_last_error).
void SetLastError(const std::string& message);
}  // namespace gismo

#endif  // GISMO_COMMON_LAST_ERROR_H_
