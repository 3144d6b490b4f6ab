// The owner's sleep and a client's wake-up in the non-coherent mode
// (doc/noncoherent.md, section 4, "Sleeping"). The owner polls the clients'
// request rings while busy; idle, it sleeps on its sockets, and a client that
// publishes a request while it sleeps sends one byte over its connection.
// Neither side may lose the other: a request published while the owner goes
// to sleep is either seen by the owner's last look or answered by a byte.
//
// Lines: the owner's sleep line (a word `sleeping[k]` per owner thread k and
// their count; written by the owner's threads only) and each ring's tail
// line (written by its client only). Each owner thread sleeps on its own
// word and looks at the rings it serves (OwnerThreadOf); a client reads the
// word of its slot's thread.
//
// Owner (S1..S3), when a sweep found nothing:
//  S1. Store sleeping = 1 and flush its line.
//  S2. Look at every ring once more (invalidate tail's line, read it): a
//      request published: store sleeping = 0, flush, and go on polling.
//  S3. Else sleep until a byte (or the next tick) arrives; then store
//      sleeping = 0, flush, and poll.
// Client (W1, W2), after publishing a request (its tail flushed, P2):
//  W1. Invalidate the sleep line and read `sleeping`.
//  W2. Set: send one byte to the owner. Clear: nothing to do.
// S1-S2 and P2-W1 are a Dekker pair: each side stores, flushes, then
// invalidates (a full fence) and loads what the other stores, so either the
// owner's S2 sees the tail or the client's W1 sees `sleeping`. A byte sent
// to an owner that is awake after all costs one spurious wake-up.
//
// Lines is the access seam (region/cache_lines.h).
#ifndef GISMO_REGION_OWNER_SLEEP_H_
#define GISMO_REGION_OWNER_SLEEP_H_

#include <cstdint>

#include "region/layout.h"

namespace gismo::region {

// Deliberate protocol faults (owner_sleep_test). kNone outside tests.
enum class SleepFault : uint8_t {
  kNone,
  kSkipSleepFlush,       // S1 without the flush
  kSkipSleepInvalidate,  // W1 reads the client's cached copy
};

template <typename Lines>
class OwnerSleep {
 public:
  // Owner thread `thread`'s side (< kMaxOwnerThreads).
  OwnerSleep(Lines& lines, OwnerSleepLine* line, uint32_t thread = 0)
      : lines_(lines), line_(line), word_(&line->sleeping[thread]) {}

  // S1 and S2. `any_published()` invalidates and reads every ring's tail and
  // says whether one is ahead of the owner's head. True: the owner may sleep
  // (every request published later rings). False: it stays awake (and the
  // line says so again).
  template <typename AnyPublished>
  bool PrepareToSleep(AnyPublished&& any_published) {
    lines_.Store(word_, 1);
    if (fault_ != SleepFault::kSkipSleepFlush) lines_.Flush(line_, sizeof(*line_));
    if (!any_published()) return true;
    Woke();
    return false;
  }

  // S3: after the sleep, before polling.
  void Woke() {
    lines_.Store(word_, 0);
    lines_.Flush(line_, sizeof(*line_));
  }

  void SetFaultForTesting(SleepFault f) { fault_ = f; }

 private:
  Lines& lines_;
  OwnerSleepLine* line_;
  uint64_t* word_;
  SleepFault fault_ = SleepFault::kNone;
};

// W1: whether a client of slot `slot` that has just published a request
// (its tail flushed) must wake the owner thread that serves it.
template <typename Lines>
bool OwnerNeedsWake(Lines& lines, const OwnerSleepLine* line, uint32_t slot,
                    SleepFault fault = SleepFault::kNone) {
  if (fault != SleepFault::kSkipSleepInvalidate) lines.Invalidate(line, sizeof(*line));
  return lines.Load(&line->sleeping[OwnerThreadOf(slot, lines.Load(&line->threads))]) != 0;
}

}  // namespace gismo::region

#endif  // GISMO_REGION_OWNER_SLEEP_H_
