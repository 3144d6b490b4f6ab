// A client's side of a request in the non-coherent mode (doc/noncoherent.md,
// section 4): publish the request whole on the slot's request ring, wake the
// owner if it sleeps, and wait for the answer to that request on the
// response ring. What the `Mutations` seam's requested implementation calls
// for create, seal, abort, delete, touch, evict, the names and goodbye.
//
// Answers are matched by the ring seq of the request's head entry. A request
// whose wait timed out may still be applied; its answer, when it comes, is
// older than the request being waited for and is dropped (the owner answers
// in request order). Anything else on the response ring (a malformed answer,
// an answer to a request never sent or to another op) is the owner breaking
// the protocol: PROTOCOL, never a wrong result.
//
// While it waits the client polls its response ring: spinning first, then
// sleeping in growing steps (at most kMaxNap), so a slow owner costs this
// thread little CPU and a fast one costs a round trip.
//
// Lines is the access seam (region/cache_lines.h). One thread at a time per
// requester (the slot's rings are single-producer, single-consumer).
#ifndef GISMO_REGION_NC_REQUESTER_H_
#define GISMO_REGION_NC_REQUESTER_H_

#include <chrono>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <utility>

#include "region/nc_requests.h"
#include "region/owner_sleep.h"
#include "region/request_ring.h"

namespace gismo::region {

struct NcRequesterOptions {
  void* request_ring = nullptr;   // the slot's request ring (this client produces)
  void* response_ring = nullptr;  // the slot's response ring (this client consumes)
  uint32_t capacity = 0;          // entries of each ring
  uint64_t session = 0;           // the slot's session: both rings' seal
  const OwnerSleepLine* sleep_line = nullptr;
  uint32_t slot = 0;          // the client's slot (its owner thread: OwnerThreadOf)
  uint64_t record_limit = 0;  // the region's records (answers are checked against it)
  uint64_t heap_size = 0;
  // Sends the sleeping owner one byte (over the client's connection). A
  // failure to send leaves the owner to its next tick.
  std::function<void()> wake;
};

template <typename Lines>
class NcRequester {
 public:
  static constexpr int kSpins = 2000;
  static constexpr std::chrono::microseconds kMaxNap{200};

  NcRequester(Lines& lines, NcRequesterOptions o)
      : lines_(lines),
        o_(std::move(o)),
        out_(lines, o_.request_ring, o_.capacity, o_.session),
        in_(lines, o_.response_ring, o_.capacity, o_.session) {}

  // Takes up where the rings' memory says. False if the request ring's
  // indices are impossible.
  [[nodiscard]] bool Attach() {
    in_.Attach();
    sent_.clear();
    out_.CountRoomByAnswers();
    return out_.Attach();
  }

  // Sends `q` and waits up to `timeout_ms` (< 0: forever) for its answer.
  // INVALID_ARGUMENT: `q` cannot be encoded. TIMEOUT: no room on the ring or
  // no answer in time (the request may still be applied later). PROTOCOL:
  // the owner broke the protocol. Otherwise the answer is in *out (its own
  // status says how the request went).
  //
  // A request asked again as the very next call after its answer timed out
  // is not sent again: the first one is on the ring and will be applied
  // exactly once (by the owner, or by its successor), so its answer is the
  // outcome, waited for again. Any other call forgets it (its answer, when
  // it comes, is dropped).
  Status Call(const NcRequest& q, NcResponse* out, int64_t timeout_ms) {
    const auto deadline =
        timeout_ms < 0 ? std::chrono::steady_clock::time_point::max()
                       : std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    Unanswered sent;
    if (Status s = EncodeNcRequest(q, sent.entries); !s.ok()) return s;
    sent.count = NcRequestEntries(q);
    Backoff wait;
    if (unanswered_.count != 0 && unanswered_.Same(sent)) {
      sent.seq = unanswered_.seq;  // asked again: wait for the first one's answer
    } else {
      unanswered_ = Unanswered();  // forgotten: its answer, when it comes, is dropped
      sent.seq = out_.tail() + 1;
      while (!out_.TryPushAll(sent.entries, sent.count)) {
        // Room is counted from the answered requests (RequestProducer::
        // Answered): the late answers of timed-out calls make it.
        if (Status s = DropLateAnswers(); !s.ok()) return s;
        if (out_.TryPushAll(sent.entries, sent.count)) break;
        if (!wait.Next(deadline)) {
          return Status(GISMO_ERR_TIMEOUT, std::string("the owner took no ") + NcOpName(q.op) +
                                               " request in time: its request ring stayed full");
        }
      }
      sent_.push_back({sent.seq, sent.seq + sent.count - 1});
      if (OwnerNeedsWake(lines_, o_.sleep_line, o_.slot) && o_.wake) o_.wake();  // W1, W2
    }
    unanswered_ = Unanswered();
    const uint64_t seq = sent.seq;
    wait = Backoff();
    for (;;) {
      NcResponse a;
      auto got = TakeNcResponse(in_, o_.record_limit, o_.heap_size, &a);
      // An answer read is consumed, good or bad (one that does not validate
      // is not read: Take leaves it).
      if (in_.taken() != in_.head()) in_.Commit(in_.taken());
      if (!got.ok()) {
        return Status(GISMO_ERR_PROTOCOL, "response ring: " + got.status().message());
      }
      const auto timed_out = [&] {
        unanswered_ = sent;
        return Status(GISMO_ERR_TIMEOUT,
                      std::string("no answer to the ") + NcOpName(q.op) + " request " +
                          std::to_string(seq) +
                          " in time (it may still be applied; asking the same again next "
                          "waits for its outcome)");
      };
      if (!*got) {
        if (!wait.Next(deadline)) return timed_out();
        continue;
      }
      if (a.request_seq < seq) {
        ++dropped_;  // the late answer to a request whose wait timed out
        Answered(a.request_seq);
        // An owner that writes late answers without end must not hold the
        // call past its deadline.
        if (std::chrono::steady_clock::now() >= deadline) return timed_out();
        continue;
      }
      if (a.request_seq > seq || a.op != q.op) {
        return Status(GISMO_ERR_PROTOCOL, "answer to " + std::string(NcOpName(a.op)) + " request " +
                                              std::to_string(a.request_seq) + " while request " +
                                              std::to_string(seq) + " (" + NcOpName(q.op) +
                                              ") was awaited");
      }
      Answered(seq);
      *out = a;
      return Status();
    }
  }

  // Late answers dropped so far.
  uint64_t dropped() const { return dropped_; }

 private:
  // Reads the answers on the response ring, all late ones (no call waits
  // for them): each is dropped, and says its request and those before it
  // were consumed. PROTOCOL for an answer that does not decode or names a
  // request not sent.
  Status DropLateAnswers() {
    for (;;) {
      NcResponse a;
      auto got = TakeNcResponse(in_, o_.record_limit, o_.heap_size, &a);
      if (in_.taken() != in_.head()) in_.Commit(in_.taken());
      if (!got.ok()) return Status(GISMO_ERR_PROTOCOL, "response ring: " + got.status().message());
      if (!*got) return Status();
      if (a.request_seq > out_.tail()) {
        return Status(GISMO_ERR_PROTOCOL, "answer to " + std::string(NcOpName(a.op)) + " request " +
                                              std::to_string(a.request_seq) +
                                              ", which was not sent (" +
                                              std::to_string(out_.tail()) + " were)");
      }
      ++dropped_;
      Answered(a.request_seq);
    }
  }

  // Request `seq` is answered: it and those before it are consumed, each
  // with all of its entries.
  void Answered(uint64_t seq) {
    while (!sent_.empty() && sent_.front().first <= seq) {
      out_.Answered(sent_.front().last);
      sent_.pop_front();
    }
  }

  // Spin, then nap in growing steps; false once the deadline has passed.
  class Backoff {
   public:
    bool Next(std::chrono::steady_clock::time_point deadline) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      if (spins_ < kSpins) {
        // Yielding, not burning: on a host with fewer cores than spinning
        // clients plus the owner, a spinning client would take the owner's
        // core for a whole time slice.
        if (++spins_ % 16 == 0) std::this_thread::yield();
        return true;
      }
      std::this_thread::sleep_for(nap_);
      nap_ = std::min(nap_ * 2, std::chrono::microseconds(kMaxNap));
      return true;
    }

   private:
    int spins_ = 0;
    std::chrono::microseconds nap_{1};
  };

  // A request sent whose answer did not come in time (count 0: none).
  struct Unanswered {
    uint64_t seq = 0;
    uint32_t count = 0;
    RequestPayload entries[kNcMaxRequestEntries];
    bool Same(const Unanswered& o) const {
      return count == o.count && std::memcmp(entries, o.entries, count * sizeof(entries[0])) == 0;
    }
  };

  // A request on the ring whose answer has not been read: its first and
  // last entries' seqs. At most one per entry of the ring.
  struct Sent {
    uint64_t first, last;
  };

  Lines& lines_;
  NcRequesterOptions o_;
  Unanswered unanswered_;
  std::deque<Sent> sent_;  // in seq order
  RequestProducer<Lines> out_;
  RequestConsumer<Lines> in_;
  uint64_t dropped_ = 0;
};

}  // namespace gismo::region

#endif  // GISMO_REGION_NC_REQUESTER_H_
