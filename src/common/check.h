// Contract checks. GISMO_DCHECK(cond) aborts with the failed condition when
// contract checks are compiled in (debug builds, and every test build through
// GISMO_CONTRACT_CHECKS); it compiles to nothing in a release library.
// A function that needs a lock says so in a `REQUIRES:` comment and checks it
// with GISMO_DCHECK at its entry.
#ifndef GISMO_COMMON_CHECK_H_
#define GISMO_COMMON_CHECK_H_

#include <cstdio>
#include <cstdlib>

#if !defined(NDEBUG) || defined(GISMO_CONTRACT_CHECKS)
#define GISMO_DCHECK(cond)                                                               \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "%s:%d: contract violated: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)
#else
#define GISMO_DCHECK(cond) ((void)0)
#endif

#endif  // GISMO_COMMON_CHECK_H_
