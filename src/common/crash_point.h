// Named crash points for failure tests.
//
// GISMO_CRASH_POINT("name") marks an instruction at which a test may make the
// process die, as a SIGKILL or a power cut would. The points exist only in
// builds that define GISMO_CRASH_POINTS (the test variant of the core,
// gismo_core_testing); in the shipped library the macro compiles to nothing,
// so no environment variable can make an installed program exit there.
//
// In a test build, GISMO_CRASH_AT=<name> in the environment makes the process
// _exit(77) when it reaches that point; GISMO_CRASH_SKIP=N lets it pass N
// times first; with GISMO_CRASH_ACTION=stop it stops itself there (SIGSTOP)
// instead of exiting. GISMO_CRASH_THREAD=<role> limits the point to the
// threads that named that role (GISMO_CRASH_THREAD_ROLE): the manager's owner
// helper threads are "owner-helper", so a test kills the manager inside a
// helper's Txn and never in its io thread.
#ifndef GISMO_COMMON_CRASH_POINT_H_
#define GISMO_COMMON_CRASH_POINT_H_

#include <cstdint>

namespace gismo {

#ifdef GISMO_CRASH_POINTS
// Exits the process with status 77 (or stops it) if `name` is the armed
// point and its skip count is used up.
void CrashPoint(const char* name);
// Arms a crash point from code (tests that fork); nullptr disarms. Call it
// while no other thread of the process can reach a crash point (the armed
// point is read without synchronization).
void ArmCrashPoint(const char* name, long skip = 0);
// Called at the armed point just before the process exits there (not when
// it stops): the persistence simulator's power cut (region/persist_sim.h).
// Set once, before other threads run.
void SetCrashHook(void (*hook)());
#define GISMO_CRASH_POINT(name) ::gismo::CrashPoint(name)
// Names the calling thread's role for GISMO_CRASH_THREAD (`role` must
// outlive the thread: a literal).
void SetCrashPointThreadRole(const char* role);
#define GISMO_CRASH_THREAD_ROLE(role) ::gismo::SetCrashPointThreadRole(role)
// Fault injection for tests: every transaction started after this call has
// an undo log of at most `entries` entries (0: the region's own capacity),
// so a test can make each operation overflow its log at every step. Same
// threading rule as ArmCrashPoint.
void LimitUndoLogForTesting(uint32_t entries);
uint32_t UndoLogLimitForTesting();
#else
#define GISMO_CRASH_POINT(name) ((void)0)
#define GISMO_CRASH_THREAD_ROLE(role) ((void)0)
#endif

}  // namespace gismo

#endif  // GISMO_COMMON_CRASH_POINT_H_
