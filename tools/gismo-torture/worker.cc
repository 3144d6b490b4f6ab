// A torture worker: random object operations until SIGTERM or its deadline.
//
// Journal (PREFIX.log, appended with write(2) so it survives SIGKILL), one
// record per line:
//   C KEY GEN   written before creating incarnation GEN of KEY
//   S KEY GEN   written after its seal returned OK
//   D KEY GEN   written before deleting it (while holding a reference, so
//               the incarnation cannot change under the delete)
//   d KEY GEN   written after the delete returned OK
//   F TEXT      an invariant violation seen by this worker
// The check derives from these what must and must not be in the region.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <deque>
#include <fstream>
#include <random>

#include "common/clock.h"
#include "content.h"
#include "torture.h"

namespace gismo::torture {

const char* CounterName(uint32_t c) {
  static const char* names[kNumCounters] = {
      "create",        "seal",          "abort",     "put",    "get",
      "get_miss",      "release",       "hold",      "delete", "delete_gone",
      "create_exists", "out_of_memory", "reconnect", "evict",  "failures"};
  return c < kNumCounters ? names[c] : "?";
}

namespace {

// Set by the SIGTERM handler, polled by the worker's loop; it publishes
// nothing (relaxed). Lock-free, so the handler may store to it.
std::atomic<bool> g_stop{false};
static_assert(std::atomic<bool>::is_always_lock_free);

class Worker {
 public:
  explicit Worker(const WorkerOptions& o) : o_(o), rng_(Mix(o.seed)) {}

  int Run() {
    log_fd_ = open((o_.journal + ".log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int sfd = open((o_.journal + ".stats").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (log_fd_ < 0 || sfd < 0 || ftruncate(sfd, kNumCounters * 8) != 0) {
      perror("gismo-torture worker: journal");
      return 2;
    }
    void* p = mmap(nullptr, kNumCounters * 8, PROT_READ | PROT_WRITE, MAP_SHARED, sfd, 0);
    if (p == MAP_FAILED) return 2;
    stats_ = static_cast<std::atomic<uint64_t>*>(p);
    deadline_ = o_.seconds > 0 ? MonotonicS() + o_.seconds : 1e300;
    if (!Connect()) return 3;
    while (!g_stop.load(std::memory_order_relaxed) && MonotonicS() < deadline_) {
      if (!Step()) {
        if (!Reconnect()) break;
      }
    }
    // A clean exit: give everything back, then disconnect.
    unsealed_.clear();
    held_.clear();
    (void)client_.Disconnect();
    return 0;
  }

 private:
  struct Held {
    uint64_t key;
    Buffer buf;
  };
  struct Unsealed {
    uint64_t key, gen;
    MutableBuffer buf;
  };

  void Journal(char kind, uint64_t key, uint64_t gen) {
    char line[64];
    int n = snprintf(line, sizeof line, "%c %lu %lu\n", kind, static_cast<unsigned long>(key),
                     static_cast<unsigned long>(gen));
    (void)!write(log_fd_, line, n);
  }
  void Fail(const std::string& what) {
    Count(kFailures);
    std::string line = "F " + what + "\n";
    (void)!write(log_fd_, line.data(), line.size());
    fprintf(stderr, "gismo-torture worker %d: FAILURE: %s\n", getpid(), what.c_str());
  }
  void Count(Counter c) { stats_[c].fetch_add(1, std::memory_order_relaxed); }

  bool Connect() {
    const double give_up = MonotonicS() + 60;
    for (;;) {
      std::string address = o_.address;
      if (!o_.address_file.empty()) {
        std::ifstream in(o_.address_file);
        std::getline(in, address);
      }
      auto c = Client::Connect(address);
      if (c.ok()) {
        client_ = std::move(*c);
        break;
      }
      if (g_stop.load(std::memory_order_relaxed) || MonotonicS() > give_up ||
          MonotonicS() > deadline_) {
        fprintf(stderr, "gismo-torture worker: cannot connect: %s\n",
                c.status().ToString().c_str());
        return false;
      }
      usleep(10000);  // the manager is restarting
    }
    uint32_t node = 0, slot = 0;
    (void)gismo_client_identity(client_.c_client(), &node, &slot);
    uint64_t client_id = 0;
    if (auto cl = client_.Clients(); cl.ok()) {
      for (const auto& ci : *cl) {
        if (ci.client == slot) client_id = ci.client_id;
      }
    }
    // The run reads this line to know whom it kills.
    printf("client %lu slot %u node %u\n", static_cast<unsigned long>(client_id), slot, node);
    fflush(stdout);
    return true;
  }

  // After the manager was lost: what this client held belongs to a session
  // the next manager recovers, so it is forgotten, not given back.
  bool Reconnect() {
    for (auto& h : held_) (void)h.buf.Detach();
    for (auto& u : unsealed_) (void)u.buf.Detach();
    held_.clear();
    unsealed_.clear();
    client_ = Client();
    Count(kOpReconnect);
    return Connect();
  }

  uint64_t Size() {
    uint64_t r = rng_() % 100;
    if (r < 60) return 1 + rng_() % 4096;
    if (r < 90) return 4096 + rng_() % (32 << 10);
    return 1 + rng_() % o_.max_size;
  }

  // False when the connection to the manager is lost.
  bool Lost(const Status& s) { return s.code() == GISMO_ERR_CONNECTION; }

  // True to go on: `s` is OK, or an error that is recorded as a failure.
  // False when the connection to the manager is lost.
  bool Handle(const char* op, const Status& s) {
    if (s.ok()) return true;
    if (Lost(s)) return false;
    Fail(std::string(op) + ": unexpected " + s.ToString());
    return true;
  }

  bool Step() {
    const uint64_t key = rng_() % o_.keys;
    const uint32_t r = rng_() % 100;
    if (r < 30) return CreateOp(key, /*put=*/false);
    if (r < 36) return CreateOp(key, /*put=*/true);
    if (r < 62) return GetOp(key, /*hold=*/false);
    if (r < 72) return held_.size() < o_.hold_max ? GetOp(key, true) : ReleaseHeld();
    if (r < 80) return ReleaseHeld();
    if (r < 92) return DeleteOp(key);
    if (r < 94) return EvictOp();
    return FinishUnsealed();
  }

  bool CreateOp(uint64_t key, bool put) {
    const uint64_t gen = rng_();
    const uint64_t size = Size();
    ObjectId id = KeyId(o_.tag, key);
    Journal('C', key, gen);
    if (put) {
      std::vector<uint8_t> data(size);
      Fill(key, gen, data.data(), size);
      Meta m = MakeMeta(key, gen, data.data(), size);
      Status s =
          client_.Put(id, data, {reinterpret_cast<const uint8_t*>(&m), sizeof m}, KeyFlags(key));
      if (s.ok()) {
        Journal('S', key, gen);
        Count(kOpPut);
        return true;
      }
      return CreateError(s);
    }
    // The checksum goes into the metadata at create, so fill a copy first.
    std::vector<uint8_t> data(size);
    Fill(key, gen, data.data(), size);
    Meta m = MakeMeta(key, gen, data.data(), size);
    auto mb =
        client_.Create(id, size, {reinterpret_cast<const uint8_t*>(&m), sizeof m}, KeyFlags(key));
    if (!mb.ok()) return CreateError(mb.status());
    Count(kOpCreate);
    std::memcpy(mb->data(), data.data(), size);
    const uint32_t r = rng_() % 100;
    if (r < 8) {
      Status s = mb->Abort();
      if (s.ok()) Count(kOpAbort);
      return Handle("abort", s);
    }
    if (r < 16 && unsealed_.size() < 2) {
      unsealed_.push_back({key, gen, std::move(*mb)});  // sealed or aborted later
      return true;
    }
    Status s = mb->Seal();
    if (!s.ok()) return Handle("seal", s);
    Journal('S', key, gen);
    Count(kOpSeal);
    if (rng_() % 4 == 0 && held_.size() < o_.hold_max) {
      // A second reference, kept: the sealed object must be gettable at once.
      // (Another worker may have deleted it already: then it is not found.)
      auto b = client_.Get(id, 0);
      if (b.ok()) {
        held_.push_back({key, std::move(*b)});
        Count(kOpHold);
      } else if (b.status().code() != GISMO_ERR_TIMEOUT && !Handle("get after seal", b.status())) {
        return false;
      }
    }
    s = mb->SealAndRelease();
    return Handle("release after seal", s);
  }

  bool CreateError(const Status& s) {
    switch (s.code()) {
      case GISMO_ERR_OBJECT_EXISTS:
        Count(kOpExists);
        return true;
      case GISMO_ERR_OUT_OF_MEMORY:
      case GISMO_ERR_LIMIT:
        Count(kOpOutOfMemory);
        return true;
      default:
        return Handle("create", s);
    }
  }

  bool FinishUnsealed() {
    if (unsealed_.empty()) return ReleaseHeld();
    Unsealed u = std::move(unsealed_.front());
    unsealed_.pop_front();
    if (rng_() % 3 == 0) {
      Status s = u.buf.Abort();
      if (s.ok()) Count(kOpAbort);
      return Handle("abort", s);
    }
    Status s = u.buf.Seal();
    if (!s.ok()) return Handle("seal", s);
    Journal('S', u.key, u.gen);
    Count(kOpSeal);
    s = u.buf.SealAndRelease();
    return Handle("release after seal", s);
  }

  // A verified get; false in *ok when the object was not there.
  bool VerifiedGet(uint64_t key, Buffer* out, bool* found, uint64_t* gen) {
    *found = false;
    auto b = client_.Get(KeyId(o_.tag, key), 0);
    if (!b.ok()) {
      if (b.status().code() == GISMO_ERR_TIMEOUT) {
        Count(kOpGetMiss);
        return true;
      }
      return Handle("get", b.status());
    }
    std::string bad = torture::Verify(key, b->data(), b->size(), b->metadata().data(),
                                      b->metadata().size(), rng_() % 8 == 0, gen);
    if (!bad.empty()) {
      // A buffer of a session the manager has ended may be reused memory.
      if (auto c = client_.Contains(KeyId(o_.tag, key)); !c.ok() && Lost(c.status())) {
        return false;
      }
      Fail("get of key " + std::to_string(key) + ": " + bad);
    }
    Count(kOpGet);
    *found = true;
    *out = std::move(*b);
    return true;
  }

  bool GetOp(uint64_t key, bool hold) {
    Buffer b;
    bool found = false;
    uint64_t gen = 0;
    if (!VerifiedGet(key, &b, &found, &gen)) return false;
    if (!found) return true;
    if (hold) {
      Count(kOpHold);
      held_.push_back({key, std::move(b)});
      return true;
    }
    Status s = b.Release();
    if (s.ok()) Count(kOpRelease);
    return Handle("release", s);
  }

  // Evicts up to a few objects' worth (and what creates that do not fit
  // evict by themselves): under the kills, nothing held may be evicted.
  bool EvictOp() {
    auto r = client_.Evict(1 + rng_() % (256 << 10));
    if (!r.ok()) return Handle("evict", r.status());
    Count(kOpEvict);
    return true;
  }

  bool ReleaseHeld() {
    if (held_.empty()) return true;
    size_t i = rng_() % held_.size();
    Held h = std::move(held_[i]);
    held_.erase(held_.begin() + i);
    // Whoever deleted or evicted meanwhile, the bytes held never changed.
    if (auto bad = torture::Verify(h.key, h.buf.data(), h.buf.size(), h.buf.metadata().data(),
                                   h.buf.metadata().size(), rng_() % 4 == 0);
        !bad.empty()) {
      if (auto c = client_.Contains(KeyId(o_.tag, h.key)); !c.ok() && Lost(c.status())) {
        return false;  // a session the manager ended: its buffers are not protected
      }
      Fail("held object changed, key " + std::to_string(h.key) + ": " + bad);
    }
    Status s = h.buf.Release();
    if (s.ok()) Count(kOpRelease);
    return Handle("release", s);
  }

  bool DeleteOp(uint64_t key) {
    Buffer b;
    bool found = false;
    uint64_t gen = 0;
    if (!VerifiedGet(key, &b, &found, &gen)) return false;
    if (!found) return true;
    Journal('D', key, gen);
    Status s = client_.Delete(KeyId(o_.tag, key));
    if (s.ok()) {
      Journal('d', key, gen);
      Count(kOpDelete);
    } else if (s.code() == GISMO_ERR_OBJECT_NOT_FOUND) {
      Count(kOpDeleteGone);
    } else if (!Handle("delete", s)) {
      return false;
    }
    // Holding the deleted object: it stays readable until the release.
    if (auto bad = torture::Verify(key, b.data(), b.size(), b.metadata().data(),
                                   b.metadata().size(), false);
        !bad.empty()) {
      Fail("deleted object still held, key " + std::to_string(key) + ": " + bad);
    }
    s = b.Release();
    if (s.ok()) Count(kOpRelease);
    return Handle("release after delete", s);
  }

  const WorkerOptions& o_;
  std::mt19937_64 rng_;
  Client client_;
  int log_fd_ = -1;
  std::atomic<uint64_t>* stats_ = nullptr;
  double deadline_ = 0;
  std::vector<Held> held_;
  std::deque<Unsealed> unsealed_;
};

}  // namespace

int RunWorker(const WorkerOptions& o) {
  struct sigaction sa {};
  sa.sa_handler = [](int) { g_stop.store(true, std::memory_order_relaxed); };
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  Worker w(o);
  return w.Run();
}

}  // namespace gismo::torture
