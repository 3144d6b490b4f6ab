// The per-thread detail behind gismo_last_error().
#ifndef GISMO_COMMON_LAST_ERROR_H_
#define GISMO_COMMON_LAST_ERROR_H_

#include <string>

namespace gismo {
void SetLastError(const std::string& message);
void ClearLastError();
}  // namespace gismo

#endif  // GISMO_COMMON_LAST_ERROR_H_
