// gismo_core_bench: latency and throughput of the object operations and the
// bandwidth of large objects, printed as a table beside the targets. Prints
// numbers, asserts nothing.
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>

#include "bench_util.h"

namespace gismo::bench {
namespace {

constexpr size_t kSmall = 1024;

// Ids unique per process and call: (pid, counter) in the first 12 bytes.
ObjectId NextId() {
  static uint64_t counter = 0;
  std::array<uint8_t, ObjectId::kSize> b{};
  uint32_t pid = static_cast<uint32_t>(getpid());
  uint64_t c = ++counter;
  std::memcpy(b.data(), &pid, 4);
  std::memcpy(b.data() + 4, &c, 8);
  b[19] = 0xcb;
  return ObjectId::FromBytes(b);
}

double TimerOverheadNs() {
  std::vector<double> v;
  for (int i = 0; i < 100000; ++i) {
    int64_t t0 = NowNs();
    int64_t t1 = NowNs();
    v.push_back(static_cast<double>(t1 - t0));
  }
  return Summarize(v).median;
}

// Each create+seal+release timed alone; deletes are outside the timing.
Stats CreateSealRelease(Client& c, size_t n) {
  std::vector<double> lat;
  lat.reserve(n);
  std::vector<ObjectId> ids;
  const size_t batch = 10000;
  for (size_t done = 0; done < n; done += batch) {
    ids.clear();
    for (size_t i = 0; i < batch; ++i) ids.push_back(NextId());
    for (const ObjectId& id : ids) {
      void* data;
      int64_t t0 = NowNs();
      gismo_status_t s = gismo_create(c.c_client(), &id.c_id(), kSmall, nullptr, 0, &data);
      if (s == GISMO_OK) s = gismo_seal(c.c_client(), &id.c_id());
      if (s == GISMO_OK) s = gismo_release(c.c_client(), &id.c_id());
      int64_t t1 = NowNs();
      if (s != GISMO_OK) Die(std::string("create/seal/release: ") + gismo_last_error());
      lat.push_back(static_cast<double>(t1 - t0));
    }
    for (const ObjectId& id : ids) Check(c.Delete(id), "delete");
  }
  return Summarize(lat);
}

// A process blocked in a get (timeout -1) on an object nobody creates, until
// Stop() creates it. While it waits, the region's waiter count is non-zero.
class BlockedWaiter {
 public:
  explicit BlockedWaiter(const std::string& address) : id_(NextId()), address_(address) {
    pid_ = fork();
    if (pid_ == 0) {
      Client c = Must(Client::Connect(address), "connect");
      gismo_buffer_t b;
      _exit(gismo_get(c.c_client(), &id_.c_id(), 1, -1, &b) == GISMO_OK ? 0 : 1);
    }
    usleep(200000);  // let it register its wait with the manager
  }
  void Stop(Client& c) {
    Check(c.Put(id_, "x"), "put");
    int st;
    waitpid(pid_, &st, 0);
    Check(c.Delete(id_), "delete");
  }

 private:
  ObjectId id_;
  std::string address_;
  pid_t pid_;
};

// get+release of sealed 1 KB objects (1000 of them, visited in turn).
Stats GetRelease(Client& c, size_t n) {
  std::vector<ObjectId> ids;
  std::vector<uint8_t> payload(kSmall, 7);
  for (int i = 0; i < 1000; ++i) {
    ids.push_back(NextId());
    Check(c.Put(ids.back(), payload), "put");
  }
  std::vector<double> lat;
  lat.reserve(n);
  gismo_buffer_t b;
  for (size_t i = 0; i < n; ++i) {
    const gismo_id_t* id = &ids[i % ids.size()].c_id();
    int64_t t0 = NowNs();
    gismo_status_t s = gismo_get(c.c_client(), id, 1, 0, &b);
    if (s == GISMO_OK) s = gismo_release(c.c_client(), id);
    int64_t t1 = NowNs();
    if (s != GISMO_OK || b.data == nullptr) Die(std::string("get/release: ") + gismo_last_error());
    lat.push_back(static_cast<double>(t1 - t0));
  }
  for (auto& id : ids) Check(c.Delete(id), "delete");
  return Summarize(lat);
}

// create+write+seal+release+delete of 1 KB in a loop for `seconds`;
// returns operations per second.
double ChurnOpsPerSecond(const std::string& address, double seconds) {
  Client c = Must(Client::Connect(address), "connect");
  std::vector<uint8_t> src(kSmall);
  FillRandom(src.data(), src.size(), 1);
  uint64_t ops = 0;
  int64_t start = NowNs(), end = start + static_cast<int64_t>(seconds * 1e9);
  int64_t now = start;
  while (now < end) {
    for (int i = 0; i < 256; ++i) {
      ObjectId id = NextId();
      void* data;
      gismo_status_t s = gismo_create(c.c_client(), &id.c_id(), kSmall, nullptr, 0, &data);
      if (s == GISMO_OK) {
        std::memcpy(data, src.data(), kSmall);
        s = gismo_seal(c.c_client(), &id.c_id());
      }
      if (s == GISMO_OK) s = gismo_release(c.c_client(), &id.c_id());
      if (s == GISMO_OK) s = gismo_delete(c.c_client(), &id.c_id());
      if (s != GISMO_OK) Die(std::string("churn: ") + gismo_last_error());
    }
    ops += 256;
    now = NowNs();
  }
  return ops / ((now - start) * 1e-9);
}

// Runs the churn loop in `procs` processes at once; returns each one's rate.
std::vector<double> ChurnInProcesses(const std::string& address, int procs, double seconds) {
  std::vector<std::pair<pid_t, int>> kids;
  for (int p = 0; p < procs; ++p) {
    int fds[2];
    if (pipe(fds) != 0) Die("pipe");
    pid_t pid = fork();
    if (pid == 0) {
      close(fds[0]);
      double r = ChurnOpsPerSecond(address, seconds);
      if (write(fds[1], &r, sizeof r) != sizeof r) _exit(1);
      _exit(0);
    }
    close(fds[1]);
    kids.push_back({pid, fds[0]});
  }
  std::vector<double> rates;
  for (auto [pid, fd] : kids) {
    double r = 0;
    if (read(fd, &r, sizeof r) != sizeof r) Die("a churn process failed");
    close(fd);
    int st;
    waitpid(pid, &st, 0);
    rates.push_back(r);
  }
  return rates;
}

struct Large {
  Stats write_gbps, read_gbps, memcpy_gbps, hash_gbps;
  // The allocator places page runs next-fit, so the first pass over the heap
  // lands on pages never touched (cold); later passes reuse faulted pages.
  Stats write_cold_gbps, read_cold_gbps, write_warm_gbps, read_warm_gbps;
};

Large LargeObjects(Client& c, size_t size, int repeats) {
  std::vector<double> w, r, m, h;
  auto* src = static_cast<uint8_t*>(aligned_alloc(4096, size));
  auto* dst = static_cast<uint8_t*>(aligned_alloc(4096, size));
  FillRandom(src, size, 42);
  std::memset(dst, 0, size);  // fault it in: memcpy is measured warm
  uint64_t expect = Hash(src, size);
  auto gbps = [&](int64_t ns) { return size / (ns * 1e-9) / 1e9; };
  for (int i = 0; i < repeats; ++i) {
    int64_t t0 = NowNs();
    std::memcpy(dst, src, size);
    int64_t t1 = NowNs();
    m.push_back(gbps(t1 - t0));
    if (dst[size / 2] != src[size / 2]) Die("memcpy");

    t0 = NowNs();
    volatile uint64_t hh = Hash(dst, size);
    t1 = NowNs();
    h.push_back(gbps(t1 - t0));
    (void)hh;

    ObjectId id = NextId();
    t0 = NowNs();
    MutableBuffer mb = Must(c.Create(id, size), "create 100 MB");
    std::memcpy(mb.data(), src, size);
    Check(mb.SealAndRelease(), "seal");
    t1 = NowNs();
    w.push_back(gbps(t1 - t0));

    t0 = NowNs();
    Buffer b = Must(c.Get(id, 0), "get 100 MB");
    uint64_t got = Hash(b.data(), b.size());
    Check(b.Release(), "release");
    t1 = NowNs();
    r.push_back(gbps(t1 - t0));
    if (got != expect) Die("100 MB object: checksum mismatch");
    Check(c.Delete(id), "delete");
  }
  free(src);
  free(dst);
  size_t k = std::min<size_t>(5, w.size());
  size_t half = w.size() / 2;
  auto part = [](const std::vector<double>& v, size_t a, size_t b) {
    return Summarize(std::vector<double>(v.begin() + a, v.begin() + b));
  };
  return {Summarize(w),
          Summarize(r),
          Summarize(m),
          Summarize(h),
          part(w, 0, k),
          part(r, 0, k),
          part(w, half, w.size()),
          part(r, half, r.size())};
}

}  // namespace
}  // namespace gismo::bench

int main(int argc, char** argv) {
  using namespace gismo::bench;
  CLI::App app{"gismo_core_bench: latency, throughput and bandwidth of the core object operations"};
  std::string address, manager_bin = DefaultManagerBin(), json_out;
  size_t iterations = 200000;
  double seconds = 2.0;
  size_t large_mb = 100;
  int repeats = 30;
  app.add_option("--address", address, "Use this running manager instead of starting one");
  app.add_option("--manager", manager_bin, "gismo-manager binary")->capture_default_str();
  app.add_option("--iterations", iterations, "Timed operations per latency test")
      ->capture_default_str();
  app.add_option("--seconds", seconds, "Duration of each throughput test")->capture_default_str();
  app.add_option("--large-mb", large_mb, "Size of the large object in MiB")->capture_default_str();
  app.add_option("--repeats", repeats, "Repeats of the large-object test")->capture_default_str();
  app.add_option("--json", json_out, "Also write the results as JSON to this file");
  CLI11_PARSE(app, argc, argv);

  std::optional<gismo::testing::ManagerProcess> manager;
  if (address.empty()) {
    manager.emplace(StartManager(manager_bin, "1GiB"));
    address = manager->address();
  }
  json out;
  const size_t large = large_mb << 20;
  {
    gismo::Client c = Must(gismo::Client::Connect(address), "connect to " + address);
    double timer = TimerOverheadNs();
    Progress("create+seal+release 1 KB");
    Stats csr = CreateSealRelease(c, iterations);
    Progress("create+seal+release 1 KB, another client blocked in get");
    BlockedWaiter waiter(address);
    Stats csr_waiting = CreateSealRelease(c, std::min<size_t>(iterations, 20000));
    waiter.Stop(c);
    Progress("get+release 1 KB");
    Stats gr = GetRelease(c, iterations);
    Progress("throughput, 1 process");
    std::vector<double> one = ChurnInProcesses(address, 1, seconds);
    Progress("throughput, 2 processes");
    std::vector<double> two = ChurnInProcesses(address, 2, seconds);
    Progress("large objects");
    Large lg = LargeObjects(c, large, repeats);
    ProgressDone();

    double two_total = two[0] + two[1];
    printf("gismo_core_bench  (timer overhead %.0f ns per measurement, included below)\n\n", timer);
    printf("%-44s %12s %12s   %s\n", "operation (1 KB objects)", "median", "p99", "target");
    printf("%-44s %9.3f us %9.3f us   %s\n", "create+seal+release", csr.median / 1e3, csr.p99 / 1e3,
           "-");
    printf("%-44s %9.3f us %9.3f us   %s\n", "create+seal+release, a client blocked in get",
           csr_waiting.median / 1e3, csr_waiting.p99 / 1e3, "-");
    printf("%-44s %9.3f us %9.3f us   %s\n", "get+release", gr.median / 1e3, gr.p99 / 1e3,
           "< 0.5 us median");
    printf("\n%-44s %12s   %s\n", "throughput: create+write+seal+release+delete", "ops/s/core",
           "target");
    printf("%-44s %12.0f   %s\n", "1 process", one[0], "> 1,000,000 (without delete)");
    printf("%-44s %12.0f   (both: %.0f ops/s)\n", "2 processes (per process)", two_total / 2,
           two_total);
    printf("%-44s %12.0f   %s\n", "1 / create+seal+release median (1 core)", 1e9 / csr.median,
           "> 1,000,000");
    printf("\n%-44s %12s %12s   %s\n", ("large object " + SizeName(large)).c_str(), "GB/s median",
           "of memcpy", "target");
    printf("%-44s %12.2f %11.0f%%   %s\n", "create+write(memcpy)+seal+release",
           lg.write_gbps.median, 100 * lg.write_gbps.median / lg.memcpy_gbps.median,
           ">= 80% of memcpy");
    printf("%-44s %12.2f %11.0f%%   %s\n", "get+read(XXH3)+release", lg.read_gbps.median,
           100 * lg.read_gbps.median / lg.memcpy_gbps.median, ">= 80% of memcpy");
    printf("%-44s %12.2f %11s\n", "memcpy, private warm buffers", lg.memcpy_gbps.median, "100%");
    printf("%-44s %12.2f %11.0f%%   (read baseline)\n", "XXH3 of a private warm buffer",
           lg.hash_gbps.median, 100 * lg.hash_gbps.median / lg.memcpy_gbps.median);
    printf("%-44s %12.2f %11.0f%%\n", "  write, first 5 repeats (fresh heap pages)",
           lg.write_cold_gbps.median, 100 * lg.write_cold_gbps.median / lg.memcpy_gbps.median);
    printf("%-44s %12.2f %11.0f%%\n", "  write, last half (heap pages reused)",
           lg.write_warm_gbps.median, 100 * lg.write_warm_gbps.median / lg.memcpy_gbps.median);
    printf("%-44s %12.2f %11.0f%%\n", "  read, first 5 repeats", lg.read_cold_gbps.median,
           100 * lg.read_cold_gbps.median / lg.memcpy_gbps.median);
    printf("%-44s %12.2f %11.0f%%\n", "  read, last half", lg.read_warm_gbps.median,
           100 * lg.read_warm_gbps.median / lg.memcpy_gbps.median);

    out = {{"timer_overhead_ns", timer},
           {"create_seal_release_1k_ns", ToJson(csr)},
           {"create_seal_release_1k_while_waiter_ns", ToJson(csr_waiting)},
           {"get_release_1k_ns", ToJson(gr)},
           {"churn_1proc_ops_per_s", one[0]},
           {"churn_2proc_ops_per_s", two},
           {"large_bytes", large},
           {"large_write_gbps", ToJson(lg.write_gbps)},
           {"large_read_gbps", ToJson(lg.read_gbps)},
           {"memcpy_gbps", ToJson(lg.memcpy_gbps)},
           {"xxh3_gbps", ToJson(lg.hash_gbps)},
           {"large_write_cold_gbps", ToJson(lg.write_cold_gbps)},
           {"large_write_warm_gbps", ToJson(lg.write_warm_gbps)},
           {"large_read_cold_gbps", ToJson(lg.read_cold_gbps)},
           {"large_read_warm_gbps", ToJson(lg.read_warm_gbps)},
           {"targets",
            {{"get_release_median_ns_below", 500},
             {"create_write_seal_release_per_s_above", 1000000},
             {"large_fraction_of_memcpy_above", 0.8}}}};
  }
  if (!json_out.empty()) std::ofstream(json_out) << out.dump(2) << "\n";
  return 0;
}
