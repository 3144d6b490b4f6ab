// gismo_alloc_bench: the cost of a create that needs a page run on a large,
// fragmented heap, and the space the allocator reserves for objects of
// 8-64 KiB (issue #15). Prints a table; --json writes what bench/plot.py and
// bench/run_suite.sh read ($OUT/alloc.json). Asserts nothing.
//
//  1. Formats a sparse region file (default 1 TiB in /dev/shm: only the pages
//     written are backed; the 4 GiB of page descriptors, the index and the
//     heap stay holes unless touched).
//  2. Fragments the heap: every other page of the lowest (1 - free_share)
//     of the pages is marked in use, written straight into the page bitmap
//     (8 MiB for 1 TiB: 32 Mi objects through the store would take minutes
//     and back 2 GiB of descriptors). What is left is 1-page holes below
//     and one free area at the top. Then the region's own allocator state
//     is made to match: free_pages, and (format 5) the free-run summary,
//     rebuilt from the bitmap as recovery would.
//  3. Times, one operation at a time, create (an object of --object-size,
//     default 96 KiB: above the largest size class (64 KiB), so it takes a
//     run of 6 pages, larger than any hole), get+release and
//     delete of the same object, --samples times; median, p99 and max.
// It drives the store directly (no manager: a slot is activated by hand, as
// the unit tests do), so the same source measures an older tree (the
// "before" column): there the create is the version-4 bitmap scan.
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "direct_bench.h"
#include "region/region.h"
#include "store/allocator.h"
#include "store/store.h"
#if __has_include("region/free_runs.h")
#include "region/free_runs.h"
#define GISMO_BENCH_FREE_RUNS 1
#endif

namespace {

using gismo::bench::Check;
using gismo::bench::Die;
using gismo::bench::NowNs;
using gismo::region::Region;
using nlohmann::json;

gismo_id_t IdOf(uint64_t k) {
  gismo_id_t id{};
  std::memcpy(id.bytes, &k, 8);
  id.bytes[19] = 0xa1;
  return id;
}

struct Stats {
  double median = 0, p99 = 0, max = 0;
};

Stats Summarize(std::vector<double> v) {
  Stats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  auto at = [&](double p) {
    size_t i = static_cast<size_t>(p * static_cast<double>(v.size()));
    return v[std::min(i, v.size() - 1)];
  };
  s.median = at(0.5);
  s.p99 = at(0.99);
  s.max = v.back();
  return s;
}

json ToJson(const Stats& s) { return {{"median", s.median}, {"p99", s.p99}, {"max", s.max}}; }

// Resident memory of this process (the region's touched pages count: it is
// a MAP_SHARED tmpfs mapping), in bytes.
uint64_t MaxRssBytes() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<uint64_t>(ru.ru_maxrss) * 1024;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"gismo allocator: create on a fragmented heap, space waste of 8-64 KiB objects"};
  std::string size_text = "1TiB";
  std::string dir = "/dev/shm";
  std::string json_out;
  uint64_t samples = 2000;
  uint64_t object_size = 96 << 10;
  double free_share = 0.01;
  uint64_t max_objects = 1 << 20;
  app.add_option("--size", size_text, "Region size (a sparse file)")->capture_default_str();
  app.add_option("--dir", dir, "Directory of the region file")->capture_default_str();
  app.add_option("--samples", samples, "Timed create/get/delete of one object each")
      ->capture_default_str();
  app.add_option("--object-size", object_size, "Data bytes of the timed objects (> 64 KiB)")
      ->capture_default_str();
  app.add_option("--free-share", free_share, "Share of the heap left free at its top")
      ->capture_default_str();
  app.add_option("--max-objects", max_objects, "Index capacity")->capture_default_str();
  app.add_option("--json", json_out, "Also write the results as JSON to this file");
  CLI11_PARSE(app, argc, argv);
  auto size = gismo::region::ParseSize(size_text);
  if (!size.ok()) Die(size.status().ToString());

  // --- 1. a sparse region ---
  const std::string path = dir + "/gismo-alloc-bench-" + std::to_string(getpid());
  gismo::region::FormatOptions o;
  o.size = *size;
  o.max_objects = max_objects;
  o.reserve_space = false;
  int64_t t0 = NowNs();
  auto fr = Region::Format(path, o);
  if (!fr.ok()) Die("format " + path + ": " + fr.status().ToString());
  const double format_s = static_cast<double>(NowNs() - t0) / 1e9;
  unlink(path.c_str());  // the mapping stays; nothing is left behind
  Region& r = **fr;
  r.slot(0).state.store(gismo::region::PackSlotState(gismo::region::SlotState::kActive, 1));
  r.slot(1).state.store(gismo::region::PackSlotState(gismo::region::SlotState::kActive, 1));
  gismo::store::Store st(r, 1, 1, 0);
  const uint64_t pages = r.num_pages();

  // --- 2. fragment: every other page of the low part in use ---
  t0 = NowNs();
  const uint64_t frag_words =
      static_cast<uint64_t>(static_cast<double>(pages / 64) * (1 - free_share));
  gismo::region::Word* bm = r.page_bitmap();
  for (uint64_t w = 0; w < frag_words; ++w) {
    bm[w].store(0x5555555555555555ull, std::memory_order_relaxed);  // even pages used
  }
  const uint64_t used = frag_words * 32;
  r.alloc().free_pages.store(pages - used, std::memory_order_relaxed);
  r.alloc().hint.store(0, std::memory_order_relaxed);  // format 4: the scan starts at page 0
#ifdef GISMO_BENCH_FREE_RUNS
  gismo::region::RebuildFreeRuns(r);
#endif
  const double fragment_s = static_cast<double>(NowNs() - t0) / 1e9;

  // --- 3. create / get / delete, each alone ---
  std::vector<double> create_ns, get_ns, delete_ns;
  create_ns.reserve(samples);
  get_ns.reserve(samples);
  delete_ns.reserve(samples);
  for (uint64_t i = 0; i < samples; ++i) {
    const gismo_id_t id = IdOf(i + 1);
    void* data = nullptr;
    int64_t a = NowNs();
    Check(st.Create(id, object_size, nullptr, 0, &data), "create");
    int64_t b = NowNs();
    create_ns.push_back(static_cast<double>(b - a));
    Check(st.Seal(id), "seal");
    Check(st.Release(id), "release");
    gismo::store::GetResult g;
    a = NowNs();
    Check(st.TryGet(id, &g), "get");
    Check(st.Release(id), "release");
    b = NowNs();
    if (!g.found) Die("get: the sealed object is not there");
    get_ns.push_back(static_cast<double>(b - a));
    a = NowNs();
    Check(st.Delete(id), "delete");
    b = NowNs();
    delete_ns.push_back(static_cast<double>(b - a));
  }
  const Stats c = Summarize(create_ns), g = Summarize(get_ns), d = Summarize(delete_ns);

  // --- waste of 8-64 KiB objects: what the allocator reserves ---
  // Sizes are data + metadata as the allocator sees them (BlockSize): every
  // 512 B step, and the worst size (one byte past a block) of each step.
  json waste = json::object();
  double worst = 0;
  uint64_t worst_size = 0;
  for (uint64_t s = (8 << 10) + 1; s <= (64 << 10); ++s) {
    const uint64_t block = gismo::store::Allocator::BlockSize(s);
    const double w = static_cast<double>(block) / static_cast<double>(s) - 1;
    if (w > worst) {
      worst = w;
      worst_size = s;
    }
    if (s % 512 == 0 || s % 4096 == 1) waste[std::to_string(s)] = w;
  }

  std::printf(
      "region %s (%llu heap pages of 16 KiB), sparse in %s: formatted in %.2f s, "
      "fragmented in %.2f s\n",
      gismo::region::FormatSize(r.size()).c_str(), static_cast<unsigned long long>(pages),
      dir.c_str(), format_s, fragment_s);
  std::printf(
      "heap: %llu pages in use (every other page below page %llu), %llu free: 1-page "
      "holes below it, one free area above\n",
      static_cast<unsigned long long>(used), static_cast<unsigned long long>(frag_words * 64),
      static_cast<unsigned long long>(pages - used));
  std::printf("%llu samples of a %llu B object (%llu pages)\n",
              static_cast<unsigned long long>(samples),
              static_cast<unsigned long long>(object_size),
              static_cast<unsigned long long>(gismo::store::Allocator::BlockSize(object_size) /
                                              gismo::region::kPageSize));
  std::printf("%-28s %12s %12s %12s\n", "operation", "median ns", "p99 ns", "max ns");
  std::printf("%-28s %12.0f %12.0f %12.0f\n", "create (fragmented heap)", c.median, c.p99, c.max);
  std::printf("%-28s %12.0f %12.0f %12.0f\n", "get+release", g.median, g.p99, g.max);
  std::printf("%-28s %12.0f %12.0f %12.0f\n", "delete", d.median, d.p99, d.max);
  std::printf("space waste 8-64 KiB: worst %.1f%% (at %llu B)\n", 100 * worst,
              static_cast<unsigned long long>(worst_size));
  std::printf("max resident set: %s\n", gismo::region::FormatSize(MaxRssBytes()).c_str());

  if (!json_out.empty()) {
    json out;
    out["format_version"] = gismo::region::kFormatVersion;
    out["region_bytes"] = r.size();
    out["heap_pages"] = pages;
    out["object_size"] = object_size;
    out["samples"] = samples;
    out["create_fragmented_1tib_ns"] = ToJson(c);
    out["get_ns"] = ToJson(g);
    out["delete_ns"] = ToJson(d);
    out["waste_8_64k"] = waste;
    out["waste_8_64k_worst"] = {{"fraction", worst}, {"size", worst_size}};
    out["max_rss_bytes"] = MaxRssBytes();
    out["format_s"] = format_s;
    std::ofstream(json_out) << out.dump(2) << "\n";
  }
  return 0;
}
