// The per-thread detail behind gismo_last_error().
#ifndef GISMO_COMMON_LAST_ERROR_H_
#define GISMO_COMMON_LAST_ERROR_H_

#include <string_view>

namespace gismo {
// Called by every C API call that fails, and only then: a call that succeeds
// leaves the detail of the last failure in place (gismo.h, gismo_last_error).
// Never throws: out of memory for the copy, the detail is a fixed sentence
// saying so (a C caller's frames cannot unwind).
void SetLastError(std::string_view message) noexcept;
}  // namespace gismo

#endif  // GISMO_COMMON_LAST_ERROR_H_
