// nc_bench: what the non-coherent mode's primitives cost on this machine
// (doc/noncoherent.md, "Costs"). Prints numbers; asserts nothing.
//  1. FlushLines and InvalidateLines per line (one line at a time, dirty and
//     clean) and per MiB (one call over a whole MiB).
//  2. The SPSC request ring: requests per second from one producer thread to
//     one consumer thread, on the real primitives (HwLines) and, for
//     scale, under the simulator (CacheSim).
//  3. A request/response round trip through two rings (a client's request
//     ring and its response ring): what one create, seal or delete would pay
//     in the non-coherent mode before the owner does any work.
//  4. The owner's loop (--owner, or always with a short sweep): N producer
//     threads, each with its own ring, and one owner thread that visits the
//     rings in turn and takes every published request (no-op requests):
//     what one owner thread sustains as clients are added.
//  5. Get+release beside the coherent store: the coherent Store::TryGet and
//     Release on a formatted region against the non-coherent get path
//     (region/nc_references.h: seqlock read, table entry flushed, re-check,
//     data invalidated) on a region formatted non-coherent, for a 64-byte and
//     a 1 MiB object, on the real flush and invalidate instructions; and
//     again while the reader already holds a reference (no data invalidate).
//  6. Create+seal through the rings (region/nc_requests.h), beside the
//     coherent store's create+seal+release: a client thread sends a create
//     request and waits for the owner thread's answer (region/nc_requester.h),
//     writes the data, flushes it, sends the seal and waits again; the owner
//     decodes each request, answers it, and publishes the sealed record
//     (NcOwner). The owner's own apply (index, allocator, Txn) is not built
//     yet: it takes records and blocks from a list, so this is the
//     protocol's cost, the part the apply will add to.
//  7. One 1 GiB object from writer to reader: coherent (write, read) and
//     non-coherent (write, flush all of it; invalidate all of it, read).
// Each figure is the median of --runs runs.
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "region/cache_lines.h"
#include "region/cache_sim.h"
#include "region/nc_references.h"
#include "region/nc_requester.h"
#include "region/nc_requests.h"
#include "region/region.h"
#include "region/request_ring.h"
#include "store/store.h"

namespace gismo::region {
namespace {

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

template <typename Fn>
double Median(int runs, Fn&& fn) {
  std::vector<double> v;
  for (int i = 0; i < runs; ++i) v.push_back(fn());
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

uint8_t* MapShared(uint64_t size) {
  void* m = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) {
    perror("mmap");
    exit(1);
  }
  memset(m, 0, size);
  return static_cast<uint8_t*>(m);
}

void Primitives(int runs) {
  constexpr uint64_t kMiB = 1 << 20;
  constexpr uint64_t kBuf = 64 * kMiB;  // larger than the last-level cache
  uint8_t* buf = MapShared(kBuf);
  volatile uint64_t sink = 0;
  const uint64_t lines = kBuf / kCacheLine;
  printf("flush: %s, invalidate: %s (CPUID)\n", FlushInsnName(FlushInstruction()),
         FlushInsnName(InvalidateInstruction()));

  // One dirty line at a time: store, flush (the ring's per-entry cost).
  const double flush_dirty = Median(runs, [&] {
    constexpr uint64_t kN = 1 << 20;
    const int64_t t0 = NowNs();
    for (uint64_t i = 0; i < kN; ++i) {
      uint64_t* p = reinterpret_cast<uint64_t*>(buf + (i % 4096) * kCacheLine);
      *p = i;
      FlushLines(p, 8);
    }
    return double(NowNs() - t0) / kN;
  });
  // One clean, cached line at a time: read, invalidate (a consumer's cost).
  const double inval_one = Median(runs, [&] {
    constexpr uint64_t kN = 1 << 20;
    const int64_t t0 = NowNs();
    for (uint64_t i = 0; i < kN; ++i) {
      const uint64_t* p = reinterpret_cast<const uint64_t*>(buf + (i % 4096) * kCacheLine);
      sink = sink + *p;
      InvalidateLines(p, 8);
    }
    return double(NowNs() - t0) / kN;
  });
  // A whole MiB per call: write it, flush it (object data before seal).
  const double flush_mib = Median(runs, [&] {
    double total = 0;
    for (uint64_t off = 0; off < kBuf; off += kMiB) {
      memset(buf + off, static_cast<int>(off >> 20), kMiB);
      const int64_t t0 = NowNs();
      FlushLines(buf + off, kMiB);
      total += double(NowNs() - t0);
    }
    return total / (kBuf / kMiB);
  });
  // A whole MiB, cached clean: invalidate before the first read of a get.
  const double inval_mib = Median(runs, [&] {
    double total = 0;
    for (uint64_t off = 0; off < kBuf; off += kMiB) {
      for (uint64_t i = 0; i < kMiB; i += kCacheLine) sink = sink + buf[off + i];
      const int64_t t0 = NowNs();
      InvalidateLines(buf + off, kMiB);
      total += double(NowNs() - t0);
    }
    return total / (kBuf / kMiB);
  });
  // The same MiB read after the invalidate (it now comes from memory).
  const double read_mib = Median(runs, [&] {
    double total = 0;
    for (uint64_t off = 0; off < kBuf; off += kMiB) {
      InvalidateLines(buf + off, kMiB);
      const int64_t t0 = NowNs();
      uint64_t s = 0;
      for (uint64_t i = 0; i < kMiB; i += 8) s += *reinterpret_cast<uint64_t*>(buf + off + i);
      sink = sink + s;
      total += double(NowNs() - t0);
    }
    return total / (kBuf / kMiB);
  });
  printf("FlushLines, one dirty line per call:        %8.1f ns/line\n", flush_dirty);
  printf("InvalidateLines, one cached line per call:  %8.1f ns/line\n", inval_one);
  printf("FlushLines, 1 MiB dirty per call:           %8.1f us/MiB (%.2f ns/line, %.2f GB/s)\n",
         flush_mib / 1e3, flush_mib / (kMiB / kCacheLine), kMiB / flush_mib);
  printf("InvalidateLines, 1 MiB cached per call:     %8.1f us/MiB (%.2f ns/line)\n",
         inval_mib / 1e3, inval_mib / (kMiB / kCacheLine));
  printf("reading 1 MiB after its invalidate:         %8.1f us/MiB (%.2f GB/s)\n", read_mib / 1e3,
         kMiB / read_mib);
  (void)lines;
  munmap(buf, kBuf);
}

constexpr uint64_t kSeal = 1;

// Requests per second through one ring, producer and consumer threads.
template <typename MakeLines>
double RingRate(uint32_t cap, uint64_t n, MakeLines&& make) {
  const uint64_t bytes = RequestRingBytes(cap);
  uint8_t* mem = MapShared(bytes);
  auto pl = make(mem, bytes, 1), cl = make(mem, bytes, 2);
  RequestProducer p(*pl, mem, cap, kSeal);
  RequestConsumer c(*cl, mem, cap, kSeal);
  if (!p.Attach()) abort();
  c.Attach();
  const int64_t t0 = NowNs();
  std::thread producer([&] {
    RequestPayload r{};
    for (uint64_t i = 1; i <= n; ++i) {
      r.w[0] = i;
      while (!p.TryPush(r)) std::this_thread::yield();
    }
  });
  RequestPayload got;
  for (uint64_t i = 1; i <= n;) {
    const PopResult res = c.Pop(&got);
    if (res == PopResult::kRequest) {
      if (got.w[0] != i) abort();
      ++i;
    } else if (res == PopResult::kCorrupt) {
      abort();
    }
  }
  producer.join();
  const double rate = n / (double(NowNs() - t0) * 1e-9);
  munmap(mem, bytes);
  return rate;
}

// Round trips per second: request ring one way, response ring back.
double RoundTrips(uint32_t cap, uint64_t n) {
  const uint64_t bytes = RequestRingBytes(cap);
  uint8_t* req = MapShared(bytes);
  uint8_t* resp = MapShared(bytes);
  HwLines hw;
  RequestProducer cp(hw, req, cap, kSeal), sp(hw, resp, cap, kSeal);
  RequestConsumer sc(hw, req, cap, kSeal), cc(hw, resp, cap, kSeal);
  if (!cp.Attach() || !sp.Attach()) abort();
  sc.Attach();
  cc.Attach();
  std::thread owner([&] {
    RequestPayload r;
    for (uint64_t i = 0; i < n;) {
      if (sc.Pop(&r) == PopResult::kRequest) {
        while (!sp.TryPush(r)) {
        }
        ++i;
      }
    }
  });
  const int64_t t0 = NowNs();
  RequestPayload r{}, back;
  for (uint64_t i = 1; i <= n; ++i) {
    r.w[0] = i;
    if (!cp.TryPush(r)) abort();
    while (cc.Pop(&back) != PopResult::kRequest) {
    }
    if (back.w[0] != i) abort();
  }
  const double rate = n / (double(NowNs() - t0) * 1e-9);
  owner.join();
  munmap(req, bytes);
  munmap(resp, bytes);
  return rate;
}

// Requests per second one owner thread takes from `producers` rings, each
// fed by its own thread, for `seconds`. Producers yield when their ring is
// full (2 cores: a spinning producer would take the owner's core).
struct OwnerRate {
  double requests_per_s;
  double empty_visits;  // share of ring visits that found nothing
};
OwnerRate OwnerLoop(uint32_t producers, uint32_t cap, double seconds) {
  const uint64_t bytes = RequestRingBytes(cap);
  uint8_t* mem = MapShared(bytes * producers);
  HwLines hw;
  std::vector<RequestConsumer<HwLines>> rings;
  for (uint32_t i = 0; i < producers; ++i) {
    rings.emplace_back(hw, mem + i * bytes, cap, kSeal + i);
    rings.back().Attach();
  }
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (uint32_t i = 0; i < producers; ++i) {
    threads.emplace_back([&, i] {
      HwLines lines;
      RequestProducer<HwLines> p(lines, mem + i * bytes, cap, kSeal + i);
      if (!p.Attach()) abort();
      RequestPayload r{};
      while (!stop.load(std::memory_order_relaxed)) {
        ++r.w[0];
        while (!p.TryPush(r)) {
          if (stop.load(std::memory_order_relaxed)) return;
          std::this_thread::yield();
        }
      }
    });
  }
  uint64_t taken = 0, visits = 0, empty = 0;
  const int64_t t0 = NowNs();
  const int64_t end = t0 + static_cast<int64_t>(seconds * 1e9);
  RequestPayload got;
  while (NowNs() < end) {
    for (auto& c : rings) {
      ++visits;
      uint64_t here = 0;
      for (;;) {
        const PopResult res = c.Pop(&got);
        if (res == PopResult::kCorrupt) abort();
        if (res == PopResult::kEmpty) break;
        ++here;
      }
      empty += here == 0;
      taken += here;
    }
  }
  const double elapsed = double(NowNs() - t0) * 1e-9;
  stop.store(true, std::memory_order_relaxed);
  for (auto& t : threads) t.join();
  munmap(mem, bytes * producers);
  return {taken / elapsed, visits == 0 ? 0 : double(empty) / visits};
}

// A region formatted for one measurement, removed when it goes.
struct Scratch {
  std::string path;
  std::unique_ptr<Region> region;
  Scratch(const char* what, uint64_t size, CoherenceMode mode)
      : path("/dev/shm/nc_bench-" + std::string(what) + "-" + std::to_string(getpid())) {
    FormatOptions fo;
    fo.size = size;
    fo.coherence = mode;
    auto r = Region::Format(path, fo);
    if (!r.ok()) {
      fprintf(stderr, "nc_bench: %s\n", r.status().ToString().c_str());
      exit(1);
    }
    region = std::move(*r);
  }
  ~Scratch() {
    region.reset();
    unlink(path.c_str());
  }
};

// ns per get+release of one sealed object of `size` bytes through the
// coherent store (its own shard lock and undo log, no flush).
double CoherentGetRelease(uint64_t size, uint64_t n) {
  Scratch scratch("coherent", 64ull << 20, CoherenceMode::kCoherent);
  Region& region = *scratch.region;
  region.slot(1).state.store(PackSlotState(SlotState::kActive, 1), std::memory_order_release);
  store::Store st(region, 1, 1, 0);
  gismo_id_t id{};
  id.bytes[0] = 7;
  void* data = nullptr;
  if (!st.Create(id, size, nullptr, 0, &data).ok() || !st.Seal(id).ok()) abort();
  memset(data, 1, size);
  const int64_t t0 = NowNs();
  for (uint64_t i = 0; i < n; ++i) {
    store::GetResult g;
    if (!st.TryGet(id, &g).ok() || !g.found || !st.Release(id).ok()) abort();
  }
  const double ns = double(NowNs() - t0) / n;
  return ns;
}

// The same through the non-coherent get path, on a region formatted
// non-coherent: record 0 of shard 0 published by an owner, the reader's
// table is slot 1's held table, the data in the heap.
double NonCoherentGetRelease(uint64_t size, uint64_t n, bool already_held) {
  Scratch scratch("noncoherent", 64ull << 20, CoherenceMode::kNonCoherent);
  Region& region = *scratch.region;
  NcView v{region.records(0), region.records_per_shard(), region.heap(), region.heap_size()};
  HwLines hw;
  NcOwner<HwLines> owner(hw, v);
  NcReader<HwLines> reader(hw, v, gismo::store::NcTableOf(region, 1));
  const IdWords id{{7, 0, 0}};
  memset(region.heap(), 1, size);
  FlushLines(region.heap(), size);
  owner.Publish(0, id, PackInfo(ObjectState::kSealed, 1, 0), NcObject{0, size, 0});
  NcObject first;
  if (already_held && reader.Get(0, id, &first) != NcGet::kFound) abort();
  const int64_t t0 = NowNs();
  for (uint64_t i = 0; i < n; ++i) {
    NcObject o;
    if (reader.Get(0, id, &o) != NcGet::kFound || !reader.Release(0)) abort();
  }
  const double ns = double(NowNs() - t0) / n;
  return ns;
}

// ns per create+seal+release of a `size`-byte object through the coherent
// store (its own Txn), the same scratch region each time.
double CoherentCreateSeal(uint64_t size, uint64_t n) {
  Scratch scratch("coherent-create", 256ull << 20, CoherenceMode::kCoherent);
  Region& region = *scratch.region;
  region.slot(1).state.store(PackSlotState(SlotState::kActive, 1), std::memory_order_release);
  store::Store st(region, 1, 1, 0);
  std::vector<uint8_t> payload(size, 7);
  const int64_t t0 = NowNs();
  for (uint64_t i = 0; i < n; ++i) {
    gismo_id_t id{};
    std::memcpy(id.bytes, &i, sizeof i);
    id.bytes[19] = 1;
    void* data = nullptr;
    if (!st.Create(id, size, nullptr, 0, 0, &data).ok()) abort();
    std::memcpy(data, payload.data(), size);
    if (!st.Seal(id).ok() || !st.Release(id).ok() || !st.Delete(id).ok()) abort();
  }
  const double ns = double(NowNs() - t0) / n;
  return ns;
}

// The same through the non-coherent rings, with a spinning owner thread
// (doc/noncoherent.md section 4; what the owner applies is a stand-in, see
// the file's comment). Delete is not in it (a third round trip).
double NonCoherentCreateSeal(uint64_t size, uint64_t n) {
  Scratch scratch("noncoherent-create", 256ull << 20, CoherenceMode::kNonCoherent);
  Region& region = *scratch.region;
  const uint32_t cap = region.request_ring_capacity();
  const uint64_t records = region.num_records();
  const uint64_t block = (size + 63) & ~uint64_t{63};
  const uint64_t blocks =
      std::min<uint64_t>(region.heap_size() / block, region.records_per_shard());
  HwLines hw;
  NcView v{region.records(0), region.records_per_shard(), region.heap(), region.heap_size()};
  NcRequesterOptions ro;
  ro.request_ring = region.request_ring(1);
  ro.response_ring = region.response_ring(1);
  ro.capacity = cap;
  ro.session = kSeal;
  ro.sleep_line = &region.sb().owner_sleep;  // the owner spins: never set
  ro.record_limit = records;
  ro.heap_size = region.heap_size();
  NcRequester<HwLines> client(hw, ro);
  RequestConsumer<HwLines> owner_in(hw, region.request_ring(1), cap, kSeal);
  RequestProducer<HwLines> owner_out(hw, region.response_ring(1), cap, kSeal);
  if (!client.Attach() || !owner_out.Attach()) abort();
  owner_in.Attach();
  std::thread owner([&] {
    NcOwner<HwLines> publisher(hw, v);
    uint64_t next = 0;
    for (uint64_t applied = 0; applied < 2 * n;) {
      NcRequest q;
      uint64_t seq = 0;
      auto got = PopNcRequest(owner_in, records, &q, &seq);
      if (!got.ok()) abort();
      if (!*got) continue;
      NcResponse a;
      a.request_seq = seq;
      a.op = q.op;
      if (q.op == NcOp::kCreate) {
        a.record = next % blocks;
        a.heap_offset = a.record * block;
        ++next;
      } else if (q.op == NcOp::kSeal) {
        publisher.Publish(static_cast<uint32_t>(q.record), q.id,
                          PackInfo(ObjectState::kSealed, 1, 0),
                          NcObject{q.record * block, size, 0});
      }
      while (!owner_out.TryPush(EncodeNcResponse(a))) {
      }
      ++applied;
    }
  });
  auto ask = [&](const NcRequest& q, NcResponse* a) {
    if (!client.Call(q, a, -1).ok() || a->status != GISMO_OK) abort();
  };
  std::vector<uint8_t> payload(size, 7);
  const int64_t t0 = NowNs();
  for (uint64_t i = 0; i < n; ++i) {
    NcRequest create;
    create.op = NcOp::kCreate;
    create.id = IdWords{{i, 1, 0}};
    create.data_size = size;
    NcResponse made;
    ask(create, &made);
    uint8_t* data = region.heap() + made.heap_offset;
    std::memcpy(data, payload.data(), size);
    FlushLines(data, size);  // the data reaches memory before the seal is asked
    NcRequest seal;
    seal.op = NcOp::kSeal;
    seal.id = create.id;
    seal.record = made.record;
    NcResponse sealed;
    ask(seal, &sealed);
  }
  const double ns = double(NowNs() - t0) / n;
  owner.join();
  return ns;
}

// One `bytes` object written, then read by another thread (the reader on
// another host): seconds for each half, coherent and non-coherent.
struct Transfer {
  double write_s, read_s;
};
Transfer OneObject(uint8_t* mem, uint64_t bytes, bool noncoherent) {
  volatile uint64_t sink = 0;
  const int64_t t0 = NowNs();
  memset(mem, 0x5a, bytes);
  if (noncoherent) FlushLines(mem, bytes);
  const int64_t t1 = NowNs();
  std::thread reader([&] {
    if (noncoherent) InvalidateLines(mem, bytes);
    uint64_t s = 0;
    for (uint64_t i = 0; i < bytes; i += 8) s += *reinterpret_cast<const uint64_t*>(mem + i);
    sink = s;
  });
  reader.join();
  const int64_t t2 = NowNs();
  (void)sink;
  return {double(t1 - t0) * 1e-9, double(t2 - t1) * 1e-9};
}

}  // namespace
}  // namespace gismo::region

int main(int argc, char** argv) {
  using namespace gismo::region;
  CLI::App app{"nc_bench: cost of the non-coherent mode's flushes, invalidations and ring"};
  int runs = 3;
  uint64_t requests = 200000;
  uint32_t capacity = 256;
  app.add_option("--runs", runs, "Runs per figure (the median is printed)")->capture_default_str();
  app.add_option("--requests", requests, "Requests per ring run")->capture_default_str();
  app.add_option("--capacity", capacity, "Ring entries (a power of two)")->capture_default_str();
  std::vector<uint32_t> owner_producers = {1, 2, 4, 8, 16, 32, 64};
  double owner_seconds = 0.3;
  app.add_option("--owner-producers", owner_producers, "Producer counts of the owner loop sweep")
      ->capture_default_str();
  app.add_option("--owner-seconds", owner_seconds, "Seconds per owner loop point")
      ->capture_default_str();
  uint64_t transfer_mib = 1024;
  app.add_option("--transfer-mib", transfer_mib, "Size of the one-object transfer, in MiB")
      ->capture_default_str()
      ->check(CLI::Range(uint64_t{1}, uint64_t{16384}));
  CLI11_PARSE(app, argc, argv);
  if (capacity == 0 || (capacity & (capacity - 1)) != 0) {
    fprintf(stderr, "nc_bench: --capacity must be a power of two\n");
    return 2;
  }
  printf("== flush and invalidate (%u cores online)\n", std::thread::hardware_concurrency());
  Primitives(runs);

  printf("== SPSC request ring, %u entries, one producer thread, one consumer thread\n", capacity);
  const double hw = Median(runs, [&] {
    return RingRate(capacity, requests,
                    [](uint8_t*, uint64_t, int) { return std::make_unique<HwLines>(); });
  });
  printf("ring, real flush/invalidate:   %10.0f requests/s (%.0f ns/request)\n", hw, 1e9 / hw);
  const double sim = Median(runs, [&] {
    return RingRate(capacity, requests / 10, [](uint8_t* mem, uint64_t bytes, int seed) {
      CacheSimOptions o;
      o.seed = seed;
      return std::make_unique<CacheSim>(mem, bytes, o);
    });
  });
  printf("ring, under the simulator:     %10.0f requests/s (for scale only)\n", sim);
  const double rt = Median(runs, [&] { return RoundTrips(capacity, requests / 10); });
  printf("request+response round trip:   %10.0f /s (%.2f us each; owner thread spinning)\n", rt,
         1e6 / rt);

  printf(
      "== the owner's loop: one owner thread, N producer threads with a ring each (%u "
      "entries),\n   no-op requests, %.1f s per point; producers yield when their ring is "
      "full\n",
      capacity, owner_seconds);
  printf("| producers | requests/s taken by the owner | ring visits that found nothing |\n");
  printf("|---|---|---|\n");
  for (uint32_t n : owner_producers) {
    if (n == 0 || n > 4096) continue;
    std::vector<OwnerRate> got;
    for (int i = 0; i < runs; ++i) got.push_back(OwnerLoop(n, capacity, owner_seconds));
    std::sort(got.begin(), got.end(), [](const OwnerRate& a, const OwnerRate& b) {
      return a.requests_per_s < b.requests_per_s;
    });
    const OwnerRate& m = got[got.size() / 2];
    printf("| %u | %.0f | %.0f%% |\n", n, m.requests_per_s, 100 * m.empty_visits);
    fflush(stdout);
  }

  printf("== get+release of one sealed object, one thread (ns each)\n");
  printf(
      "| object | coherent store (shard lock, undo log) | non-coherent get path (real "
      "flush/invalidate) | non-coherent, a reference already held |\n");
  printf("|---|---|---|---|\n");
  for (uint64_t size : {uint64_t{64}, uint64_t{1} << 20}) {
    const uint64_t n = size <= 4096 ? 200000 : 2000;
    const double coherent = Median(runs, [&] { return CoherentGetRelease(size, n); });
    const double noncoherent = Median(runs, [&] { return NonCoherentGetRelease(size, n, false); });
    const double again = Median(runs, [&] { return NonCoherentGetRelease(size, n * 10, true); });
    printf("| %s | %.0f | %.0f | %.0f |\n", size <= 4096 ? "64 B" : "1 MiB", coherent, noncoherent,
           again);
  }
  printf("== create+seal of one object, one client thread and one owner thread (ns each)\n");
  printf(
      "| object | coherent store: create, write, seal, release, delete | non-coherent rings: "
      "create, write, flush, seal (owner's apply a stand-in) |\n");
  printf("|---|---|---|\n");
  for (uint64_t size : {uint64_t{1024}, uint64_t{1} << 20}) {
    const uint64_t n = size <= 4096 ? 100000 : 500;
    const double coherent = Median(runs, [&] { return CoherentCreateSeal(size, n); });
    const double noncoherent = Median(runs, [&] { return NonCoherentCreateSeal(size, n); });
    printf("| %s | %.0f | %.0f |\n", size <= 4096 ? "1 KiB" : "1 MiB", coherent, noncoherent);
    fflush(stdout);
  }

  const uint64_t transfer_bytes = transfer_mib << 20;
  printf("== one %" PRIu64 " MiB object, written by one thread, then read by another\n",
         transfer_mib);
  printf("| mode | write (+ flush) | read (invalidate +) | total |\n|---|---|---|---|\n");
  uint8_t* big = MapShared(transfer_bytes);  // touched: no page faults below
  for (bool nc : {false, true}) {
    std::vector<Transfer> got;
    for (int i = 0; i < runs; ++i) got.push_back(OneObject(big, transfer_bytes, nc));
    std::sort(got.begin(), got.end(), [](const Transfer& a, const Transfer& b) {
      return a.write_s + a.read_s < b.write_s + b.read_s;
    });
    const Transfer& m = got[got.size() / 2];
    const double gb = double(transfer_bytes) / 1e9;
    printf("| %s | %.1f ms (%.1f GB/s) | %.1f ms (%.1f GB/s) | %.1f ms |\n",
           nc ? "non-coherent" : "coherent", m.write_s * 1e3, gb / m.write_s, m.read_s * 1e3,
           gb / m.read_s, (m.write_s + m.read_s) * 1e3);
    fflush(stdout);
  }
  munmap(big, transfer_bytes);
  return 0;
}
