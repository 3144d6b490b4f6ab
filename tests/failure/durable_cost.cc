// durable_cost: what a durable region costs. Against a running manager
// (--address), for each object size: N times create, write every byte,
// seal, release, delete; prints the rate of the whole cycle and the seal's
// latency (median, p99). Run it once against a manager on a normal region
// and once against one formatted --durable (doc/operations.md, "Durable
// regions"). Prints numbers, asserts nothing; not registered with ctest.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <gismo/gismo.hpp>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  std::string address;
  int count = 500;
  std::vector<std::string> sizes = {"1024", "65536", "1048576"};
  CLI::App app{"durable_cost: create rate and seal latency of a region"};
  app.add_option("--address", address, "The manager to use")->required();
  app.add_option("--count", count, "Objects per size")->capture_default_str();
  app.add_option("--sizes", sizes, "Object sizes in bytes")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  auto client = gismo::Client::Connect(address);
  if (!client.ok()) {
    fprintf(stderr, "durable_cost: %s\n", client.status().ToString().c_str());
    return 1;
  }
  auto u = client->Usage();
  printf("region: %s\n",
         u.ok() && (u->region_features & GISMO_FEATURE_DURABLE) ? "durable" : "not durable");
  printf("%10s %8s %14s %14s %14s\n", "size", "objects", "cycles/s", "seal p50 us", "seal p99 us");
  using Clock = std::chrono::steady_clock;
  for (const auto& size_text : sizes) {
    const size_t size = std::stoull(size_text);
    std::vector<double> seal_us;
    const auto t0 = Clock::now();
    for (int i = 0; i < count; ++i) {
      const auto id =
          gismo::ObjectId::FromName("durable-cost-" + size_text + "-" + std::to_string(i));
      auto b = client->Create(id, size);
      if (!b.ok()) {
        fprintf(stderr, "durable_cost: %s\n", b.status().ToString().c_str());
        return 1;
      }
      std::memset(b->data(), i & 0xff, size);
      const auto s0 = Clock::now();
      gismo::Status s = b->Seal();
      seal_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - s0).count());
      if (s.ok()) s = b->SealAndRelease();
      if (s.ok()) s = client->Delete(id);
      if (!s.ok()) {
        fprintf(stderr, "durable_cost: %s\n", s.ToString().c_str());
        return 1;
      }
    }
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    std::sort(seal_us.begin(), seal_us.end());
    printf("%10zu %8d %14.0f %14.1f %14.1f\n", size, count, count / secs,
           seal_us[seal_us.size() / 2], seal_us[seal_us.size() * 99 / 100]);
  }
  return 0;
}
