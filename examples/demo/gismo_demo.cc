// gismo_demo: one producer, many consumers, one copy.
//
//   gismo_demo produce --run NAME --count N --size BYTES
//   gismo_demo consume --run NAME --count N [--timeout-ms MS]
//   gismo_demo report  --run NAME --count N --size BYTES [--delete]
//
// Object i of run NAME has the id ObjectId::FromName("NAME/i"). Its last 8
// bytes are the XXH3-64 of the bytes before them, so a consumer on any node
// checks the content without any other channel to the producer. Each role
// connects with gismo_connect(NULL): GISMO_ADDRESS and GISMO_NODE say where.
#include <xxhash.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <gismo/gismo.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string role;
  std::string run = "demo";
  size_t count = 16;
  size_t size = 16 << 20;
  int64_t timeout_ms = 30000;
  bool remove = false;
};

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
double Mib(uint64_t bytes) { return static_cast<double>(bytes) / (1 << 20); }
double GBps(uint64_t bytes, double s) { return s > 0 ? static_cast<double>(bytes) / s / 1e9 : 0; }

gismo::ObjectId IdOf(const Options& o, size_t i) {
  return gismo::ObjectId::FromName(o.run + "/" + std::to_string(i));
}

int Fail(const char* what, const gismo::Status& s) {
  std::fprintf(stderr, "gismo_demo: %s: %s\n", what, s.ToString().c_str());
  return 1;
}

uint32_t NodeOf(gismo::Client& c) {
  auto identity = c.Identity();
  return identity.ok() ? identity->node : 0;
}

// Writes object content: a cheap pattern, then the trailer checksum.
void Fill(uint8_t* data, size_t size, uint64_t seed) {
  const size_t body = size - sizeof(uint64_t);
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  size_t i = 0;
  for (; i + 8 <= body; i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::memcpy(data + i, &x, 8);
  }
  for (; i < body; ++i) data[i] = static_cast<uint8_t>(i);
  const uint64_t h = XXH3_64bits(data, body);
  std::memcpy(data + body, &h, sizeof h);
}

bool Verify(const uint8_t* data, size_t size) {
  if (size < sizeof(uint64_t)) return false;
  const size_t body = size - sizeof(uint64_t);
  uint64_t want = 0;
  std::memcpy(&want, data + body, sizeof want);
  return XXH3_64bits(data, body) == want;
}

int Produce(const Options& o) {
  auto c = gismo::Client::Connect();
  if (!c.ok()) return Fail("connect", c.status());
  const uint32_t node = NodeOf(*c);
  const auto t0 = Clock::now();
  for (size_t i = 0; i < o.count; ++i) {
    auto b = c->Create(IdOf(o, i), o.size);
    if (!b.ok()) return Fail("create", b.status());
    Fill(b->data(), b->size(), i);
    if (gismo::Status s = b->SealAndRelease(); !s.ok()) return Fail("seal", s);
  }
  const double s = Seconds(Clock::now() - t0);
  const uint64_t bytes = uint64_t{o.count} * o.size;
  std::printf(
      "node %u produce: %zu objects of %.1f MiB (%.1f MiB) created, written and sealed in "
      "%.3f s: %.2f GB/s\n",
      node, o.count, Mib(o.size), Mib(bytes), s, GBps(bytes, s));
  return 0;
}

int Consume(const Options& o) {
  auto c = gismo::Client::Connect();
  if (!c.ok()) return Fail("connect", c.status());
  const uint32_t node = NodeOf(*c);
  const void* base = nullptr;
  size_t map_size = 0;
  (void)gismo_region_read_view(c->c_client(), &base, &map_size);

  std::printf("node %u consume: connected, waiting for %s/0\n", node, o.run.c_str());
  std::fflush(stdout);
  // Pass 1: each object as soon as it is sealed (get blocks until then).
  std::vector<gismo::Buffer> held;
  uint64_t bytes = 0;
  size_t in_mapping = 0, verified = 0;
  uint64_t first_offset = 0;
  uint32_t creator = 0;
  Clock::duration first_wait{}, read{};
  const auto start = Clock::now();
  for (size_t i = 0; i < o.count; ++i) {
    const auto t0 = Clock::now();
    auto b = c->Get(IdOf(o, i), o.timeout_ms);
    const auto t1 = Clock::now();
    if (!b.ok()) return Fail("get", b.status());
    if (i == 0) first_wait = t1 - t0;
    if (c->InRegion(b->data(), b->size())) ++in_mapping;
    if (Verify(b->data(), b->size())) ++verified;
    read += Clock::now() - t1;
    if (i == 0) {
      first_offset = c->RegionOffset(b->data()).value_or(0);
      if (auto info = c->Stat(b->id()); info.ok()) creator = info->creator_node;
    }
    bytes += b->size();
    held.push_back(std::move(*b));
  }
  const double streamed = Seconds(Clock::now() - start);
  // Pass 2: the same objects again, all sealed now: the cost of a get alone.
  const auto t2 = Clock::now();
  for (size_t i = 0; i < o.count; ++i) {
    auto b = c->Get(IdOf(o, i), 0);
    if (!b.ok()) return Fail("get", b.status());
  }
  const double get_us = Seconds(Clock::now() - t2) * 1e6 / static_cast<double>(o.count);
  std::printf(
      "node %u consume: %zu objects (%.1f MiB) from node %u, each taken as it was sealed: "
      "first after %.1f ms, all in %.3f s; read and checksummed at %.2f GB/s: %zu/%zu ok; a get "
      "of a sealed object takes %.1f us whatever its size\n",
      node, o.count, Mib(bytes), creator, Seconds(first_wait) * 1e3, streamed,
      GBps(bytes, Seconds(read)), verified, o.count, get_us);
  std::printf(
      "node %u consume: %zu/%zu pointers inside this node's read-only view of the region [%p, "
      "+%.0f MiB), object 0 at region offset %#" PRIx64 ": zero copy\n",
      node, in_mapping, o.count, base, Mib(map_size), first_offset);
  if (auto u = c->Usage(); u.ok()) {
    std::printf(
        "node %u consume: while holding all %zu objects the pool uses %.1f MiB for %.1f MiB of "
        "objects (%" PRIu64 " objects in the pool)\n",
        node, o.count, Mib(u->used_bytes), Mib(bytes), u->object_count);
  }
  return verified == o.count && in_mapping == o.count ? 0 : 1;
}

int Report(const Options& o) {
  auto c = gismo::Client::Connect();
  if (!c.ok()) return Fail("connect", c.status());
  auto u = c->Usage();
  if (!u.ok()) return Fail("usage", u.status());
  const uint64_t bytes = uint64_t{o.count} * o.size;
  size_t present = 0;
  for (size_t i = 0; i < o.count; ++i) {
    if (auto info = c->Stat(IdOf(o, i)); info.ok()) ++present;
  }
  std::printf("pool: %" PRIu64
              " objects, %.1f MiB used of %.1f MiB for %.1f MiB of objects read by "
              "every node: %.2f copies; %u client(s) connected\n",
              u->object_count, Mib(u->used_bytes), Mib(u->capacity_bytes), Mib(bytes),
              bytes ? static_cast<double>(u->used_bytes) / static_cast<double>(bytes) : 0.0,
              u->client_count);
  if (present != o.count) {
    std::fprintf(stderr, "gismo_demo: %zu of %zu objects are in the pool\n", present, o.count);
    return 1;
  }
  if (o.remove) {
    for (size_t i = 0; i < o.count; ++i) {
      if (gismo::Status s = c->Delete(IdOf(o, i)); !s.ok()) return Fail("delete", s);
    }
  }
  return 0;
}

int Usage(int rc) {
  std::fprintf(rc ? stderr : stdout,
               "usage: gismo_demo produce|consume|report [--run NAME] [--count N] "
               "[--size BYTES] [--timeout-ms MS] [--delete]\n");
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (argc < 2) return Usage(2);
  o.role = argv[1];
  if (o.role == "-h" || o.role == "--help") return Usage(0);
  for (int i = 2; i < argc; ++i) {
    std::string_view a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    char* end = nullptr;
    if (a == "--delete") {
      o.remove = true;
      continue;
    }
    if (!v) return Usage(2);
    ++i;
    if (a == "--run") {
      o.run = v;
    } else if (a == "--count") {
      o.count = std::strtoull(v, &end, 10);
    } else if (a == "--size") {
      o.size = std::strtoull(v, &end, 10);
    } else if (a == "--timeout-ms") {
      o.timeout_ms = std::strtoll(v, &end, 10);
    } else {
      return Usage(2);
    }
    if (end && *end != '\0') return Usage(2);
  }
  if (o.count == 0 || o.size < sizeof(uint64_t)) return Usage(2);
  if (o.role == "produce") return Produce(o);
  if (o.role == "consume") return Consume(o);
  if (o.role == "report") return Report(o);
  return Usage(2);
}
