// gismo_index_bench: how the index scales, and what the event ring costs
// seals and deletes (issue #15). Prints numbers, asserts nothing.
//
//  1. get+release latency (median, p99; each pair timed alone, ids drawn
//     uniformly from the live objects) with 1 K, 100 K, 1 M and 10 M live
//     small objects in one region sized for the largest count (the index is
//     formatted once, as a deployment would be; objects are added between
//     the measurements).
//     Then the same in batches of 64 ids got in order and released (the
//     time per object), without and with the index prefetching of a
//     multi-id get (Store::PrefetchBatch).
//     Then single gets again with the lines the lookup reads (the shard
//     header, the hash slot, the record) flushed from the caches before each
//     one: the index's own cost at each count once cache residency is taken
//     away. And the probe distances (slots past home) of every live object.
//  2. seal and delete throughput with 1 and 2 threads (each thread its own
//     client slot and objects; batches of creates untimed, then the batch's
//     seals timed, releases untimed, deletes timed; ops/s summed over the
//     threads).
// It drives the store directly (no manager: slots are activated by hand, as
// the unit tests do), so it runs against older trees too (the "before"
// column of bench/run_suite.sh).
#include <time.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "direct_bench.h"
#include "region/cache_lines.h"
#include "region/region.h"
#include "store/index.h"
#include "store/store.h"

namespace {

using gismo::bench::Check;
using gismo::bench::Die;
using gismo::bench::NowNs;
using gismo::region::Region;
using nlohmann::json;

gismo_id_t IdOf(uint64_t k, uint64_t tag) {
  gismo_id_t id{};
  // Spread the keys like real ids (hashes): the index hashes them anyway.
  std::memcpy(id.bytes, &k, 8);
  std::memcpy(id.bytes + 8, &tag, 8);
  id.bytes[19] = 0x1b;
  return id;
}

double Percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  size_t rank = static_cast<size_t>(p * static_cast<double>(v.size()));
  if (rank >= v.size()) rank = v.size() - 1;
  std::nth_element(v.begin(), v.begin() + static_cast<long>(rank), v.end());
  return v[rank];
}

std::unique_ptr<gismo::store::Store> Activate(Region& r, uint32_t slot) {
  r.slot(slot).state.store(gismo::region::PackSlotState(gismo::region::SlotState::kActive, 1),
                           std::memory_order_release);
  return std::make_unique<gismo::store::Store>(r, slot, 1, 0);
}

// Takes the cache lines a lookup of `id` reads out of every cache: its shard
// header, its hash slot and its record. Single-threaded use only (an
// unlocked Find).
void FlushIndexLines(const Region& r, const gismo_id_t& id) {
  const uint64_t h = gismo::store::HashId(id);
  gismo::store::Located loc;
  const uint32_t shard = r.ShardOf(h);
  if (!gismo::store::Find(r, shard, h, id, &loc)) Die("an object is missing");
  gismo::region::InvalidateLines(&r.shard(shard), sizeof(gismo::region::ShardHeader));
  gismo::region::InvalidateLines(&r.hash_slots(shard)[loc.hslot], sizeof(gismo::region::Word));
  gismo::region::InvalidateLines(loc.rec, sizeof(gismo::region::ObjectRecord));
}

// Mean and largest distance of the live objects' hash slots from their home.
struct Probes {
  double mean = 0;
  uint64_t max = 0;
};
Probes ProbeDistances(const Region& r) {
  const uint64_t mask = uint64_t{r.fixed().slots_per_shard} - 1;
  uint64_t sum = 0, n = 0, most = 0;
  for (uint32_t s = 0; s < r.num_shards(); ++s) {
    const gismo::region::Word* slots = r.hash_slots(s);
    for (uint64_t i = 0; i <= mask; ++i) {
      const uint64_t v = slots[i].load(std::memory_order_relaxed);
      if (v == 0) continue;
      const uint64_t distance = (i - gismo::region::HashSlotHash(v)) & mask;  // home: hash & mask
      sum += distance;
      most = std::max(most, distance);
      ++n;
    }
  }
  return Probes{n ? static_cast<double>(sum) / static_cast<double>(n) : 0.0, most};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"gismo index scale and seal/delete throughput"};
  std::vector<uint64_t> counts = {1000, 100000, 1000000, 10000000};
  std::vector<int> threads = {1, 2};
  std::string dir = "/dev/shm";
  std::string json_out;
  uint64_t samples = 200000;
  uint64_t ops = 400000;
  uint64_t object_size = 64;
  size_t batch = 64;
  bool skip_scale = false, skip_throughput = false;
  app.add_option("--counts", counts, "Live object counts for the latency test")->delimiter(',');
  app.add_option("--threads", threads, "Thread counts for seal/delete throughput")->delimiter(',');
  app.add_option("--dir", dir, "Directory of the region file (tmpfs or hugetlbfs)")
      ->capture_default_str();
  app.add_option("--samples", samples, "Timed get+release pairs per count")->capture_default_str();
  app.add_option("--ops", ops, "Seals (and deletes) per thread")->capture_default_str();
  app.add_option(
         "--batch", batch,
         "Ids per batch get (per-object time without and with prefetching; 0 or 1: not measured)")
      ->capture_default_str();
  app.add_option("--object-size", object_size, "Data bytes per object")->capture_default_str();
  app.add_flag("--no-scale", skip_scale, "Skip the index scale test");
  app.add_flag("--no-throughput", skip_throughput, "Skip the seal/delete throughput test");
  app.add_option("--json", json_out, "Also write the results as JSON to this file");
  CLI11_PARSE(app, argc, argv);
  std::sort(counts.begin(), counts.end());
  json out;
  out["dir"] = dir;
  // Format 4 and later: no ring lock on the seal/delete path.
  out["format_version"] = gismo::region::kFormatVersion;
  const std::string path = dir + "/gismo-index-bench-" + std::to_string(getpid());

  auto format = [&](uint64_t max_objects, uint64_t size) {
    gismo::region::FormatOptions o;
    o.size = size;
    o.max_objects = max_objects;
    auto r = Region::Format(path, o);
    if (!r.ok()) Die("format " + path + ": " + r.status().ToString());
    unlink(path.c_str());  // the mapping stays; nothing is left behind
    (*r)->slot(0).state.store(gismo::region::PackSlotState(gismo::region::SlotState::kActive, 1));
    return std::move(*r);
  };

  if (!skip_scale && !counts.empty()) {
    const uint64_t top = counts.back();
    // Index capacity with headroom (the index refuses past ~94% of a shard);
    // heap: the smallest block per object plus slack.
    const uint64_t max_objects = top + top / 4 + 1024;
    const uint64_t size = std::max<uint64_t>(256ull << 20, max_objects * 256);
    auto region = format(max_objects, size);
    auto st = Activate(*region, 1);
    std::printf("index scale: region %.1f GiB in %s, %u shards x %u records, %llu B objects\n",
                static_cast<double>(size) / (1ull << 30), dir.c_str(), region->num_shards(),
                region->records_per_shard(), static_cast<unsigned long long>(object_size));
    std::printf("%12s %10s %10s %11s %12s %10s %11s %8s\n", "objects", "median ns", "p99 ns",
                ("batch" + std::to_string(batch) + " ns").c_str(), "+prefetch ns", "cold ns",
                "probe mean", "fill s");
    uint64_t live = 0;
    std::mt19937_64 rng(42);
    for (uint64_t n : counts) {
      const int64_t f0 = NowNs();
      for (; live < n; ++live) {
        void* d;
        const gismo_id_t id = IdOf(live, 7);
        Check(st->Create(id, object_size, nullptr, 0, &d), "create");
        std::memset(d, 1, object_size);
        Check(st->Seal(id), "seal");
        Check(st->Release(id), "release");
      }
      const double fill_s = static_cast<double>(NowNs() - f0) * 1e-9;
      std::vector<double> lat;
      lat.reserve(samples);
      std::uniform_int_distribution<uint64_t> pick(0, n - 1);
      // Warm-up: the first touches of a fresh page table say nothing of the
      // steady state.
      for (uint64_t i = 0; i < std::min<uint64_t>(samples / 10, 20000); ++i) {
        gismo::store::GetResult g;
        const gismo_id_t id = IdOf(pick(rng), 7);
        Check(st->TryGet(id, &g), "get");
        Check(st->Release(id), "release");
      }
      // One get+release of `id`, timed.
      const auto timed_get_release = [&st](const gismo_id_t& id) {
        gismo::store::GetResult g;
        const int64_t t0 = NowNs();
        gismo::Status s = st->TryGet(id, &g);
        if (s.ok()) s = st->Release(id);
        const int64_t t1 = NowNs();
        Check(s, "get+release");
        if (!g.found) Die("an object is missing");
        return static_cast<double>(t1 - t0);
      };
      for (uint64_t i = 0; i < samples; ++i) lat.push_back(timed_get_release(IdOf(pick(rng), 7)));
      const double med = Percentile(lat, 0.5), p99 = Percentile(lat, 0.99);
      // Batches: `batch` random ids got in order, then released; the time per
      // object, without and with Store::PrefetchBatch (as the client's
      // multi-id get uses it).
      double batch_ns[2] = {0, 0};
      if (batch > 1) {
        std::vector<gismo_id_t> ids(batch);
        const auto id_at = [&](size_t j) -> const gismo_id_t& { return ids[j]; };
        for (int prefetch = 0; prefetch < 2; ++prefetch) {
          std::vector<double> per;
          for (uint64_t b = 0; b < std::max<uint64_t>(samples / batch, 1); ++b) {
            for (auto& id : ids) id = IdOf(pick(rng), 7);
            const int64_t t0 = NowNs();
            for (size_t k = 0; k < batch; ++k) {
              if (prefetch) st->PrefetchBatch(k, batch, id_at);
              gismo::store::GetResult g;
              Check(st->TryGet(ids[k], &g), "get");
              if (!g.found) Die("an object is missing");
            }
            for (const auto& id : ids) Check(st->Release(id), "release");
            per.push_back(static_cast<double>(NowNs() - t0) / static_cast<double>(batch));
          }
          batch_ns[prefetch] = Percentile(per, 0.5);
        }
      }
      // Cold: the same single gets, each after its index lines left the
      // caches (fewer samples: each pays DRAM misses on purpose).
      std::vector<double> cold;
      for (uint64_t i = 0; i < std::max<uint64_t>(samples / 10, 1); ++i) {
        const gismo_id_t id = IdOf(pick(rng), 7);
        FlushIndexLines(*region, id);
        cold.push_back(timed_get_release(id));
      }
      const double cold_med = Percentile(cold, 0.5);
      const Probes probes = ProbeDistances(*region);
      const auto batch_cell = [&](double ns) {
        return batch > 1 ? std::to_string(std::llround(ns)) : std::string("-");
      };
      std::printf("%12llu %10.0f %10.0f %11s %12s %10.0f %7.2f/%-3llu %8.1f\n",
                  static_cast<unsigned long long>(n), med, p99, batch_cell(batch_ns[0]).c_str(),
                  batch_cell(batch_ns[1]).c_str(), cold_med, probes.mean,
                  static_cast<unsigned long long>(probes.max), fill_s);
      std::fflush(stdout);
      json row = {{"objects", n},        {"median_ns", med},          {"p99_ns", p99},
                  {"cold_ns", cold_med}, {"probe_mean", probes.mean}, {"probe_max", probes.max},
                  {"fill_s", fill_s}};
      if (batch > 1) {
        row["batch"] = batch;
        row["batch_ns_per_object"] = batch_ns[0];
        row["batch_prefetch_ns_per_object"] = batch_ns[1];
      }
      out["index_scale"].push_back(row);
    }
  }

  if (!skip_throughput && !threads.empty()) {
    const int most = *std::max_element(threads.begin(), threads.end());
    const uint64_t batch = 1000;  // under the held table's 4096 per client
    auto region = format(uint64_t{16} * batch * static_cast<uint64_t>(most) + 65536, 512ull << 20);
    std::printf("seal/delete throughput (%llu per thread, no subscriber)\n",
                static_cast<unsigned long long>(ops));
    std::printf("%8s %16s %16s\n", "threads", "seals/s", "deletes/s");
    for (int t : threads) {
      std::vector<double> seal_rate(t), delete_rate(t);
      std::vector<std::thread> ths;
      std::atomic<int> ready{0};
      for (int k = 0; k < t; ++k) {
        ths.emplace_back([&, k] {
          auto st = Activate(*region, 2 + k);
          ready.fetch_add(1);
          while (ready.load() < t) {
          }
          int64_t seal_ns = 0, delete_ns = 0;
          std::vector<gismo_id_t> ids(batch);
          for (uint64_t done = 0; done < ops; done += batch) {
            for (uint64_t i = 0; i < batch; ++i) {
              ids[i] = IdOf(done + i, 1000 + k);
              void* d;
              Check(st->Create(ids[i], object_size, nullptr, 0, &d), "create");
            }
            int64_t t0 = NowNs();
            for (const auto& id : ids) Check(st->Seal(id), "seal");
            seal_ns += NowNs() - t0;
            for (const auto& id : ids) Check(st->Release(id), "release");
            t0 = NowNs();
            for (const auto& id : ids) Check(st->Delete(id), "delete");
            delete_ns += NowNs() - t0;
          }
          seal_rate[k] = static_cast<double>(ops) * 1e9 / static_cast<double>(seal_ns);
          delete_rate[k] = static_cast<double>(ops) * 1e9 / static_cast<double>(delete_ns);
        });
      }
      for (auto& th : ths) th.join();
      double seals = 0, deletes = 0;
      for (int k = 0; k < t; ++k) {
        seals += seal_rate[k];
        deletes += delete_rate[k];
      }
      std::printf("%8d %16.0f %16.0f\n", t, seals, deletes);
      std::fflush(stdout);
      out["seal_delete"].push_back(
          {{"threads", t}, {"seals_per_s", seals}, {"deletes_per_s", deletes}});
    }
  }
  if (!json_out.empty()) {
    std::ofstream f(json_out);
    f << out.dump(2) << "\n";
    if (!f) Die("cannot write " + json_out);
  }
  return 0;
}
