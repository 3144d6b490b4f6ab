// A single-producer/single-consumer request ring in shared memory that hosts
// share without cache coherence (doc/noncoherent.md, "Request rings"). In
// the non-coherent mode every client slot has one: the client produces,
// the owner of the shared metadata (the manager) consumes and applies.
//
// Layout (all 64-byte lines; `capacity` a power of two):
//   line 0: tail  — requests published so far; written by the producer only
//   line 1: head  — requests consumed so far; written by the consumer only
//   lines 2..: capacity entries, one per line, written by the producer only
// Request n (n = 1, 2, ...) lives in entry (n - 1) % capacity:
//   word 0: seq = n;  words 1..6: the payload (48 bytes);
//   word 7: check = XXH3-64 of words 0..6, seeded with the ring's `seal`
// `seal` is not stored: both ends know it (the slot's session in the store),
// so an entry left by an earlier session of the slot never validates.
//
// Protocol (each step names the line operation that makes it hold):
//  P1. The producer writes request n only if n - head <= capacity, reading
//      head after invalidating its line (the consumer is done with that
//      entry's previous request). A producer whose consumer moves head in
//      a Txn with the request's effects counts from min(head, requests
//      answered) instead (Answered): head may reach memory before the Txn
//      commits, and a successor of a consumer that died then takes the
//      request again from its entry.
//  P2. It writes the entry (seq, payload, check), flushes the entry's line,
//      and only then writes tail = n and flushes tail's line. So memory never
//      holds a tail that covers an entry not in memory. Several entries may
//      be published with one tail (TryPushAll: a request of several entries).
//      Its two halves may be apart (Stage, then Publish): an entry written
//      and flushed, not yet covered by tail, is taken by no consumer; a
//      successor of its producer may find it (Staged) and publish it.
//  C1. The consumer invalidates tail's line and reads it; tail - head must be
//      in [0, capacity] (else the ring is corrupt).
//  C2. For each request below tail it invalidates the entry's line, reads it
//      and accepts it only if seq == head + 1 and check matches; anything
//      else below a published tail is a broken protocol or a torn line and is
//      reported (Corrupt), never applied.
//  C3. After applying, it writes head and flushes its line (P1's input). A
//      consumer may take requests first and commit head later (Take,
//      Commit): until then a successor takes them again.
// A producer killed at any instant leaves memory with tail = the last request
// whose P2 completed, and entries at or above it possibly half written back
// (early write-backs): never covered by tail, and rejected by seq/check
// should a reader look. A restarted producer re-reads tail and head from
// memory (Attach) and overwrites them. Each index line has one writer, each
// entry line one writer, so no line is ever written by two hosts.
//
// Lines is the access seam (region/cache_lines.h): HwLines on hardware,
// CacheSim under the simulator.
#ifndef GISMO_REGION_REQUEST_RING_H_
#define GISMO_REGION_REQUEST_RING_H_

#include <xxhash.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "region/layout.h"

namespace gismo::region {

struct RequestPayload {
  uint64_t w[kRequestPayloadWords];
};

inline uint64_t RequestCheck(uint64_t seq, const uint64_t* payload, uint64_t seal) {
  uint64_t words[1 + kRequestPayloadWords];
  words[0] = seq;
  std::memcpy(words + 1, payload, sizeof(uint64_t) * kRequestPayloadWords);
  return XXH3_64bits_withSeed(words, sizeof(words), seal);
}

// Deliberate protocol faults, for the demonstration that the simulator
// catches a missing flush or invalidate (request_ring_test). kNone always
// outside tests.
enum class RingFault : uint8_t {
  kNone,
  kSkipEntryFlush,       // P2 without the entry's flush
  kSkipEntryInvalidate,  // C2 without the entry's invalidate
};

// C2 for entry n: its line (invalidated first, unless a test removes
// that), payload in *out; whether it validates as entry n of `seal`.
template <typename Lines>
bool LoadRequestEntry(Lines& lines, const RequestEntry* entries, uint32_t capacity, uint64_t seal,
                      uint64_t n, RequestPayload* out, bool invalidate) {
  const RequestEntry* e = &entries[(n - 1) & (capacity - 1)];
  if (invalidate) lines.Invalidate(e, sizeof(*e));
  const uint64_t seq = lines.Load(&e->seq);
  for (uint32_t i = 0; i < kRequestPayloadWords; ++i) out->w[i] = lines.Load(&e->payload[i]);
  return seq == n && lines.Load(&e->check) == RequestCheck(seq, out->w, seal);
}

template <typename Lines>
class RequestProducer {
 public:
  // `ring` points at RequestRingBytes(capacity) bytes of shared memory.
  RequestProducer(Lines& lines, void* ring, uint32_t capacity, uint64_t seal)
      : lines_(lines),
        hdr_(static_cast<RequestRingHeader*>(ring)),
        entries_(reinterpret_cast<RequestEntry*>(hdr_ + 1)),
        capacity_(capacity),
        seal_(seal) {}

  // Takes up where the ring's memory says (a new or restarted producer).
  // False if the indices are inconsistent (tail - head outside [0, capacity]).
  [[nodiscard]] bool Attach() {
    lines_.Invalidate(hdr_, sizeof(*hdr_));
    tail_ = lines_.Load(&hdr_->tail.value);
    head_ = lines_.Load(&hdr_->head.value);
    answered_ = head_;
    return tail_ - head_ <= capacity_;
  }

  // P1 for a producer whose consumer commits head in a Txn with the
  // request's effects (a client's requests to the owner): head's line may
  // reach memory before that Txn's commit record (an early write-back), and
  // should the consumer die before the commit, its successor takes the
  // request again from its entry. Such a producer counts room only up to
  // the requests it knows consumed for good: those answered (an answer is
  // published only after its request's head committed). After
  // CountRoomByAnswers, room is counted from min(head, answered), where
  // Answered(n) says requests 1..n are answered (Attach counts those below
  // head as answered).
  void CountRoomByAnswers() { bounded_ = true; }
  void Answered(uint64_t n) { answered_ = std::max(answered_, n); }

  // Publishes one request; false if the ring is full (the consumer is behind).
  [[nodiscard]] bool TryPush(const RequestPayload& p) { return TryPushAll(&p, 1); }

  // Publishes requests p[0..n) with one tail (P2 for each entry, then the
  // tail once): memory's tail covers all of them or none, whatever instant
  // the producer dies at. false if the ring has no room for all n now; n is
  // at most the capacity.
  [[nodiscard]] bool TryPushAll(const RequestPayload* p, uint32_t n) {
    if (n == 0 || n > capacity_ || !HasRoomFor(n)) return false;
    for (uint32_t k = 0; k < n; ++k) WriteEntry(tail_ + 1 + k, p[k]);
    PublishTail(tail_ + n);
    return true;
  }

  // The same in two steps, for a producer that must be able to leave one
  // entry written but not published (the owner's answer to a request,
  // staged before the request's head commits: doc/noncoherent.md, "Request
  // rings"). Stage is P2's entry half for entry tail + 1, Publish its tail
  // half. REQUIRES (Stage): HasRoomFor(1) was true since the last Publish
  // (the consumer only makes more room). Staging again overwrites the entry.
  [[nodiscard]] bool HasRoomFor(uint32_t n) {
    const uint64_t last = tail_ + n;
    if (last - Consumed() <= capacity_) return true;
    lines_.Invalidate(&hdr_->head, sizeof(RequestIndex));  // P1
    head_ = lines_.Load(&hdr_->head.value);
    return last - Consumed() <= capacity_;
  }
  void Stage(const RequestPayload& p) { WriteEntry(tail_ + 1, p); }
  void Publish() { PublishTail(tail_ + 1); }
  // Whether memory holds a staged entry (entry tail + 1 validates as
  // entry tail + 1 of this seal): what a successor of a producer that died
  // between Stage and Publish finds, in *out.
  bool Staged(RequestPayload* out) {
    return LoadRequestEntry(lines_, entries_, capacity_, seal_, tail_ + 1, out,
                            /*invalidate=*/true);
  }

  uint64_t tail() const { return tail_; }
  void SetFaultForTesting(RingFault f) { fault_ = f; }

 private:
  // P2's first half for entry `seq`: payload and seq, then the check word
  // that covers them, then the entry's line flushed.
  void WriteEntry(uint64_t seq, const RequestPayload& p) {
    RequestEntry* e = &entries_[(seq - 1) & (capacity_ - 1)];
    for (uint32_t i = 0; i < kRequestPayloadWords; ++i) lines_.Store(&e->payload[i], p.w[i]);
    lines_.Store(&e->seq, seq);
    lines_.Store(&e->check, RequestCheck(seq, p.w, seal_));
    if (fault_ != RingFault::kSkipEntryFlush) lines_.Flush(e, sizeof(*e));
  }
  // P2's second half: tail = last, its line flushed after the entries'.
  void PublishTail(uint64_t last) {
    lines_.Store(&hdr_->tail.value, last);
    lines_.Flush(&hdr_->tail, sizeof(RequestIndex));
    tail_ = last;
  }

  Lines& lines_;
  RequestRingHeader* hdr_;
  RequestEntry* entries_;
  uint32_t capacity_;
  uint64_t seal_;
  // Requests consumed for P1: head, or at most the answered (Answered).
  uint64_t Consumed() const { return bounded_ ? std::min(head_, answered_) : head_; }

  uint64_t tail_ = 0, head_ = 0;  // head_: the last head read (may lag)
  uint64_t answered_ = 0;         // see Answered
  bool bounded_ = false;          // see CountRoomByAnswers
  RingFault fault_ = RingFault::kNone;
};

enum class PopResult : uint8_t {
  kRequest,  // *out holds the next request, consumed
  kEmpty,    // nothing published beyond head
  kCorrupt,  // a published entry does not validate, or tail is impossible:
             // nothing consumed; the producer broke the protocol
};

template <typename Lines>
class RequestConsumer {
 public:
  RequestConsumer(Lines& lines, void* ring, uint32_t capacity, uint64_t seal)
      : lines_(lines),
        hdr_(static_cast<RequestRingHeader*>(ring)),
        entries_(reinterpret_cast<RequestEntry*>(hdr_ + 1)),
        capacity_(capacity),
        seal_(seal) {}

  // Takes up where the ring's memory says (a restarted consumer): requests
  // taken and not committed are taken again.
  void Attach() {
    lines_.Invalidate(&hdr_->head, sizeof(RequestIndex));
    head_ = taken_ = tail_ = lines_.Load(&hdr_->head.value);
  }

  // Reads the next request without consuming it: memory's head stays until
  // Commit, so a consumer that dies before it commits leaves the request to
  // its successor (which Attaches and takes it again).
  PopResult Take(RequestPayload* out) {
    if (taken_ == tail_) {  // C1
      lines_.Invalidate(&hdr_->tail, sizeof(RequestIndex));
      tail_ = lines_.Load(&hdr_->tail.value);
      if (tail_ - head_ > capacity_ || tail_ - taken_ > capacity_) {
        tail_ = taken_;
        return PopResult::kCorrupt;
      }
      if (taken_ == tail_) return PopResult::kEmpty;
    }
    const uint64_t n = taken_ + 1;
    if (!LoadEntry(n, out, fault_ != RingFault::kSkipEntryInvalidate)) return PopResult::kCorrupt;
    taken_ = n;
    return PopResult::kRequest;
  }

  // C3: requests up to n (taken) are consumed: head = n, flushed. An owner
  // that applies requests in a Txn writes head_word() in that Txn instead
  // (its effects and its head commit together) and then calls Committed.
  void Commit(uint64_t n) {
    lines_.Store(&hdr_->head.value, n);
    lines_.Flush(&hdr_->head, sizeof(RequestIndex));
    Committed(n);
  }
  void Committed(uint64_t n) { head_ = n; }
  uint64_t* head_word() { return &hdr_->head.value; }

  // Whether a request beyond those taken is published (tail's line
  // invalidated and read): an owner's last look before it sleeps.
  bool Pending() {
    lines_.Invalidate(&hdr_->tail, sizeof(RequestIndex));
    return lines_.Load(&hdr_->tail.value) != taken_;
  }

  // Take and Commit.
  PopResult Pop(RequestPayload* out) {
    const PopResult r = Take(out);
    if (r == PopResult::kRequest) Commit(taken_);
    return r;
  }

  // Whether entry `n`'s line, as memory holds it now, validates as request
  // n, without consuming it: what a reader that skipped tail would accept.
  bool EntryValid(uint64_t n) {
    RequestPayload p;
    return LoadEntry(n, &p, /*invalidate=*/true);
  }

  uint64_t head() const { return head_; }    // consumed (committed)
  uint64_t taken() const { return taken_; }  // read, head < n <= taken not yet committed
  void SetFaultForTesting(RingFault f) { fault_ = f; }

 private:
  bool LoadEntry(uint64_t n, RequestPayload* out, bool invalidate) {
    return LoadRequestEntry(lines_, entries_, capacity_, seal_, n, out, invalidate);
  }

  Lines& lines_;
  RequestRingHeader* hdr_;
  RequestEntry* entries_;
  uint32_t capacity_;
  uint64_t seal_;
  uint64_t head_ = 0, taken_ = 0, tail_ = 0;  // tail_: the last tail read
  RingFault fault_ = RingFault::kNone;
};

}  // namespace gismo::region

#endif  // GISMO_REGION_REQUEST_RING_H_
