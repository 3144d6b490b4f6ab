/*
 * gismo: the list of status codes. Compiles as C99 and C++.
 *
 * GISMO_STATUS_CODES(X) expands X(name, short_name, value, message, py_class,
 * py_base) once per code, in value order:
 *   name        the enumerator of gismo_status_t
 *   short_name  the name without its prefix (gismo.Status.<short_name> in
 *               Python, gismo::StatusCodeName in C++)
 *   value       the code's number: never changed or reused (ABI); a new code
 *               is appended with the next free value
 *   message     what gismo_status_message() returns
 *   py_class    the gismo.Error subclass Python raises ("" for GISMO_OK)
 *   py_base     a Python builtin exception that class also derives from, or ""
 *
 * Every other list of status codes is generated from this one: the enum in
 * gismo.h, gismo_status_message(), gismo::kStatusCodes in status.hpp, and
 * gismo.Status and the exception classes of the Python package. A value used
 * twice does not compile (gismo_status_message switches over the list).
 */
#ifndef GISMO_STATUS_CODES_H_
#define GISMO_STATUS_CODES_H_

/* clang-format off */
#define GISMO_STATUS_CODES(X)                                                                      \
  X(GISMO_OK, OK, 0, "OK", "", "")                                                                 \
  X(GISMO_ERR_INVALID_ARGUMENT, INVALID_ARGUMENT, 1, "invalid argument",                           \
    "InvalidArgument", "ValueError")                                                               \
  X(GISMO_ERR_OBJECT_EXISTS, OBJECT_EXISTS, 2, "object already exists", "ObjectExists", "")        \
  X(GISMO_ERR_OBJECT_NOT_FOUND, OBJECT_NOT_FOUND, 3, "object not found", "ObjectNotFound",         \
    "LookupError")                                                                                 \
  X(GISMO_ERR_OBJECT_NOT_SEALED, OBJECT_NOT_SEALED, 4, "object is not sealed",                     \
    "ObjectNotSealed", "")                                                                         \
  X(GISMO_ERR_OBJECT_ALREADY_SEALED, OBJECT_ALREADY_SEALED, 5, "object is already sealed",         \
    "ObjectAlreadySealed", "")                                                                     \
  /* Reserved: never returned. Kept so that no other code takes its value. */                      \
  X(GISMO_ERR_OBJECT_IN_USE, OBJECT_IN_USE, 6, "object is in use", "ObjectInUse", "")              \
  /* The store (its heap or its object index) is full. */                                          \
  X(GISMO_ERR_OUT_OF_MEMORY, OUT_OF_MEMORY, 7, "store is full", "StoreFull", "MemoryError")        \
  X(GISMO_ERR_TIMEOUT, TIMEOUT, 8, "timed out", "Timeout", "TimeoutError")                         \
  /* The manager is unreachable or gone, or this client's lease was lost. */                       \
  X(GISMO_ERR_CONNECTION, CONNECTION, 9, "no connection to the manager", "ConnectionError",        \
    "ConnectionError")                                                                             \
  /* The peer speaks a different protocol or protocol version. */                                  \
  X(GISMO_ERR_PROTOCOL, PROTOCOL, 10, "protocol error", "ProtocolError", "")                       \
  X(GISMO_ERR_IO, IO, 11, "I/O error", "IOError", "OSError")                                       \
  /* A configured limit was reached. */                                                            \
  X(GISMO_ERR_LIMIT, LIMIT, 12, "limit reached", "LimitReached", "")                               \
  /* Only the client that created the object may do this. */                                       \
  X(GISMO_ERR_NOT_CREATOR, NOT_CREATOR, 13, "only the creator may do this", "NotCreator",          \
    "PermissionError")                                                                             \
  /* The client holds no reference to the object. */                                               \
  X(GISMO_ERR_NOT_HELD, NOT_HELD, 14, "object is not held by this client", "NotHeld", "")          \
  /* The region is not gismo's, of another format version, or corrupt. */                          \
  X(GISMO_ERR_BAD_REGION, BAD_REGION, 15, "not a usable gismo region", "BadRegion", "")            \
  /* A bug: please report it. */                                                                   \
  X(GISMO_ERR_INTERNAL, INTERNAL, 16, "internal error", "InternalError", "")                       \
  /* The feature is not available in this mode. */                                                 \
  X(GISMO_ERR_UNSUPPORTED, UNSUPPORTED, 17, "not supported", "Unsupported",                        \
    "NotImplementedError")                                                                         \
  /* A lock is held by a client that is suspected dead but not yet fenced off; once the         \
   * manager has recovered that client (or found it alive), the call may succeed. */              \
  X(GISMO_ERR_BUSY, BUSY, 18,                                                                      \
    "a lock is held by a client that is suspected dead but not yet fenced; try again later",       \
    "Busy", "")                                                                                    \
  /* The manager refused this peer: no cluster key, a wrong one, or no access to the region. */  \
  X(GISMO_ERR_PERMISSION, PERMISSION, 19, "permission denied", "PermissionDenied",              \
    "PermissionError")                                                                             \
  /* A conditional bind found the name bound otherwise than it expected. */                        \
  X(GISMO_ERR_CONFLICT, CONFLICT, 20, "the name is bound otherwise than expected", "Conflict", "")
/* clang-format on */

#endif /* GISMO_STATUS_CODES_H_ */
