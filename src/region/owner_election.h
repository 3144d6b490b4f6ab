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
//  B2. For every j: invalidate line j and read ticket[j]; ticket = max + 1.
//  B3. Store ticket, then choosing = 0 (one line: a write-back carries a
//      prefix of the two stores), and flush.
//  B4. For every j != i in turn: invalidate line j until choosing[j] == 0,
//      then until ticket[j] == 0 or (ticket[j], j) > (ticket, i).
//      Passing every j makes i the owner.
// Leave: store ticket = 0 and flush.
// Each side flushes its own line before it reads the others' (the
// invalidate before a read is a full fence), so Lamport's proof applies:
// two candidates never both pass B4.
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

  // B1-B3: takes a ticket. REQUIRES: not a candidate now.
  void Begin(uint64_t identity, const std::array<uint64_t, 4>& process = {}) {
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
      if (tj > max) max = tj;
    }
    ticket_ = max + 1;
    lines_.Store(&mine.identity, identity);
    for (int k = 0; k < 4; ++k) lines_.Store(&mine.process[k], process[k]);
    lines_.Store(&mine.ticket, ticket_);
    lines_.Store(&mine.choosing, 0);
    if (fault_ != ElectionFault::kSkipTicketFlush) lines_.Flush(&mine, sizeof(mine));
    next_ = 0;
  }

  // B4, resumable: passes as many candidates as it can now. Call again
  // while !owner (a manager does so on its tick, and looks at the blocking
  // candidate's heartbeat to decide whether to suspect it).
  ElectionState Poll() {
    for (; next_ < n_; ++next_) {
      if (next_ == me_) continue;
      CandidateLine& other = t_[next_];
      if (fault_ != ElectionFault::kSkipPollInvalidate) lines_.Invalidate(&other, sizeof(other));
      if (fault_ != ElectionFault::kSkipChoosing && lines_.Load(&other.choosing) != 0) {
        return {false, next_};
      }
      const uint64_t tj = lines_.Load(&other.ticket);
      if (tj != 0 && (tj < ticket_ || (tj == ticket_ && next_ < me_))) return {false, next_};
    }
    return {true, 0};
  }

  // The owner's clean exit (or a candidate giving up).
  void Leave() {
    lines_.Store(&t_[me_].ticket, 0);
    lines_.Flush(&t_[me_], sizeof(t_[me_]));
    ticket_ = 0;
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

  uint64_t ticket() const { return ticket_; }
  void SetFaultForTesting(ElectionFault f) { fault_ = f; }

 private:
  Lines& lines_;
  CandidateLine* t_;
  uint32_t n_, me_;
  uint64_t ticket_ = 0;
  uint32_t next_ = 0;  // B4: the candidates below it are passed
  ElectionFault fault_ = ElectionFault::kNone;
};

}  // namespace gismo::region

#endif  // GISMO_REGION_OWNER_ELECTION_H_
