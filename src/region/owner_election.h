// Who owns the region's metadata in the non-coherent mode, without a
// cross-host atomic (doc/noncoherent.md, 7.4). The coherent mode takes the
// manager lease by CAS on Superblock::manager_owner; rule R5 forbids that
// across hosts. Here the candidates (one manager per node) are ordered by
// Lamport's bakery over a table of one line per node: each candidate writes
// only its own line, and the bakery needs no atomic read-modify-write and
// stays correct when a read overlaps a write (it works on safe registers).
// The owner stays in the bakery's critical section for as long as it
// serves; leaving is its clean exit.
//
// Candidate line (one per node; written by that node's candidate only, and
// by a successor only after the node is fenced):
//   word 0: choosing (1 while the candidate picks its ticket)
//   word 1: ticket (0: not a candidate)
//   word 2: identity (the candidate's session, for the operator and tests)
//   word 3: heartbeat (beats << 1, | 1 while serving as the owner: it
//           changes while the candidate runs, so others can suspect it)
//   words 4-7: process (the candidate's process identity, so a successor
//           can prove it gone)
//
// Candidate i (B1..B4):
//  B1. Store choosing = 1 and flush.
//  B2. For every j: invalidate line j and read ticket[j]; ticket = max + 1
//      (or none, and choosing = 0 again, if a ticket[j] is corrupt: T1).
//  B3. Store ticket, then choosing = 0 (one line: a write-back carries a
//      prefix of the two stores), and flush.
//  B4. For every j != i in turn: invalidate line j until choosing[j] == 0,
//      then until ticket[j] == 0 or (ticket[j], j) > (ticket, i) with
//      ticket[j] valid (T2).
//      Passing every j makes i the owner.
// Leave: store ticket = 0 and flush.
// Each side flushes its own line before it reads the others' (the
// invalidate before a read is a full fence), so Lamport's proof applies:
// two candidates never both pass B4.
//
// Tickets: a valid ticket is in [1, kElectionTicketLimit), 2^63. Each
// doorway takes one more than the largest it reads, so honest candidates
// stay far below the limit (2^63 elections); a line at or above it was
// written by a buggy or hostile client, or is corrupt memory. Ordered like
// any other, such a line breaks the bakery: `max + 1` over UINT64_MAX wraps
// to 0, "not a candidate", so newcomers that each took 0 pass one another
// and the corrupt line too (0 orders before everything): several owners.
// So (safety first; liveness through the blocker handling callers already
// have for a dead candidate):
//  T1. The doorway takes a ticket only if every other line's ticket is
//      below kElectionTicketLimit - 1 (so its own, max + 1, is valid).
//      Else it takes none: it stores choosing = 0 again and leaves its
//      ticket 0, which is what a candidate that has not begun looks like,
//      so no one waits on it; Poll then answers "waiting on" that line and
//      retries the doorway at every call until the line is valid again
//      (zeroed by ClearFenced once its node is fenced, or rewritten by its
//      candidate).
//  T2. B4 never passes a line whose ticket is kElectionTicketLimit or more:
//      it waits on it as on a smaller ticket. The line may be a serving
//      owner's whose ticket word was overwritten, and passing it would make
//      two owners. A caller treats it as any blocker (manager_lease.cc):
//      while it beats as the owner, the caller does not serve; silent, its
//      node is fenced and the line cleared.
// Neither rule lets two candidates pass B4 together: among valid tickets
// the bakery is unchanged, T1's refusing candidate has no ticket to be
// passed with, and T2 only makes a candidate wait longer than the bakery
// requires.
//
// A dead candidate never leaves: its line keeps choosing or a ticket, and
// whoever waits on it waits until it is fenced (its node fenced by the fence
// command, or the operator's word: a stale heartbeat only makes it
// suspected). Then ClearFenced(j) zeroes its line: its writer changed at a
// point where the old one can no longer write (section 3, "what moves").
//
// Lines is the access seam (region/cache_lines.h).
#ifndef GISMO_REGION_OWNER_ELECTION_H_
#define GISMO_REGION_OWNER_ELECTION_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>

#include "region/layout.h"

namespace gismo::region {

// Deliberate protocol faults (owner_election_test). kNone outside tests.
enum class ElectionFault : uint8_t {
  kNone,
  kSkipChoosing,        // B1 and B4's wait on choosing left out
  kSkipTicketFlush,     // B3 without its flush
  kSkipPollInvalidate,  // B4 reads cached copies of the others' lines
};

// The first invalid ticket (T1, T2 above): a candidate line whose ticket is
// at or above it is corrupt.
inline constexpr uint64_t kElectionTicketLimit = uint64_t{1} << 63;

struct ElectionState {
  bool owner = false;
  uint32_t waiting_on = 0;  // when !owner: the candidate that blocks this one
};

template <typename Lines>
class OwnerElection {
 public:
  // `table` holds `n` candidate lines; this candidate is `me` (< n).
  OwnerElection(Lines& lines, CandidateLine* table, uint32_t n, uint32_t me)
      : lines_(lines), t_(table), n_(n), me_(me) {}

  // B1-B3: takes a ticket. REQUIRES: not a candidate now. False if another
  // line holds a ticket at or above kElectionTicketLimit - 1 (T1): then
  // this candidate holds no ticket, and Poll retries the doorway, waiting
  // on that line, until it can take one.
  bool Begin(uint64_t identity, const std::array<uint64_t, 4>& process = {}) {
    identity_ = identity;
    process_ = process;
    doorway_pending_ = true;
    return Doorway();
  }

  // B4, resumable: passes as many candidates as it can now. Call again
  // while !owner (a manager does so on its tick, and looks at the blocking
  // candidate's heartbeat to decide whether to suspect it). After a refused
  // doorway (T1) it first retries the doorway.
  ElectionState Poll() {
    if (doorway_pending_ && !Doorway()) return {false, blocker_};
    for (; next_ < n_; ++next_) {
      if (next_ == me_) continue;
      CandidateLine& other = t_[next_];
      if (fault_ != ElectionFault::kSkipPollInvalidate) lines_.Invalidate(&other, sizeof(other));
      if (fault_ != ElectionFault::kSkipChoosing && lines_.Load(&other.choosing) != 0) {
        return {false, next_};
      }
      const uint64_t tj = lines_.Load(&other.ticket);
      if (tj == 0) continue;
      // T2: a corrupt ticket blocks as a smaller one does, never passed.
      if (tj >= kElectionTicketLimit || tj < ticket_ || (tj == ticket_ && next_ < me_)) {
        return {false, next_};
      }
    }
    return {true, 0};
  }

  // The owner's clean exit (or a candidate giving up).
  void Leave() {
    lines_.Store(&t_[me_].ticket, 0);
    lines_.Flush(&t_[me_], sizeof(t_[me_]));
    ticket_ = 0;
    doorway_pending_ = false;
  }

  // This candidate's heartbeat, in its own line (see word 3).
  void Beat(uint64_t heartbeat) {
    lines_.Store(&t_[me_].heartbeat, heartbeat);
    lines_.Flush(&t_[me_], sizeof(t_[me_]));
  }

  // Candidate j's line as memory holds it now.
  CandidateLine LineOf(uint32_t j) {
    lines_.Invalidate(&t_[j], sizeof(t_[j]));
    CandidateLine c{};
    c.choosing = lines_.Load(&t_[j].choosing);
    c.ticket = lines_.Load(&t_[j].ticket);
    c.identity = lines_.Load(&t_[j].identity);
    c.heartbeat = lines_.Load(&t_[j].heartbeat);
    for (int k = 0; k < 4; ++k) c.process[k] = lines_.Load(&t_[j].process[k]);
    return c;
  }
  // Candidate j's heartbeat as memory holds it now.
  uint64_t HeartbeatOf(uint32_t j) { return LineOf(j).heartbeat; }

  // Zeroes candidate j's line. REQUIRES: j is fenced (it can write no more,
  // and on its host its lines were written back or dropped).
  void ClearFenced(uint32_t j) {
    CandidateLine& l = t_[j];
    lines_.Invalidate(&l, sizeof(l));
    for (uint64_t* w : {&l.choosing, &l.ticket, &l.identity, &l.heartbeat}) lines_.Store(w, 0);
    for (uint64_t& w : l.process) lines_.Store(&w, 0);
    lines_.Flush(&l, sizeof(l));
  }

  // This candidate's ticket; 0 before Begin, after Leave, and while its
  // doorway is refused (T1).
  uint64_t ticket() const { return ticket_; }
  void SetFaultForTesting(ElectionFault f) { fault_ = f; }

 private:
  // B1-B3 for the identity and process Begin was given. On success the
  // ticket is stored and B4 starts over; refused (T1), the line holds
  // choosing = 0 and ticket 0 again and blocker_ names the line at fault.
  bool Doorway() {
    CandidateLine& mine = t_[me_];
    if (fault_ != ElectionFault::kSkipChoosing) {
      lines_.Store(&mine.choosing, 1);
      lines_.Flush(&mine, sizeof(mine));
    }
    uint64_t max = 0;
    for (uint32_t j = 0; j < n_; ++j) {
      if (j == me_) continue;
      lines_.Invalidate(&t_[j], sizeof(t_[j]));
      const uint64_t tj = lines_.Load(&t_[j].ticket);
      if (tj >= kElectionTicketLimit - 1) {  // T1: no valid ticket orders after it
        blocker_ = j;
        lines_.Store(&mine.choosing, 0);
        lines_.Flush(&mine, sizeof(mine));
        return false;
      }
      if (tj > max) max = tj;
    }
    ticket_ = max + 1;  // below kElectionTicketLimit: max < kElectionTicketLimit - 1
    lines_.Store(&mine.identity, identity_);
    for (int k = 0; k < 4; ++k) lines_.Store(&mine.process[k], process_[k]);
    lines_.Store(&mine.ticket, ticket_);
    lines_.Store(&mine.choosing, 0);
    if (fault_ != ElectionFault::kSkipTicketFlush) lines_.Flush(&mine, sizeof(mine));
    doorway_pending_ = false;
    next_ = 0;
    return true;
  }

  Lines& lines_;
  CandidateLine* t_;
  uint32_t n_, me_;
  uint64_t ticket_ = 0;
  uint32_t next_ = 0;  // B4: the candidates below it are passed
  // Begin's arguments, for a doorway retried by Poll (T1).
  uint64_t identity_ = 0;
  std::array<uint64_t, 4> process_{};
  bool doorway_pending_ = false;  // Begin was refused (T1) and not yet retried with success
  uint32_t blocker_ = 0;          // while doorway_pending_: the line that refused it
  ElectionFault fault_ = ElectionFault::kNone;
};

}  // namespace gismo::region

#endif  // GISMO_REGION_OWNER_ELECTION_H_
