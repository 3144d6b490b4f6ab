// redis: set and get of 1 KB values from two nodes, with gismo (put =
// create+write+seal+release, get = get+read+release) and with Redis over TCP
// (Debian's redis-server on node 0, hiredis, one request at a time). Each
// node sets its own keys, then gets the keys the other node set.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "experiments.h"

#ifdef GISMO_BENCH_HIREDIS
#include <hiredis/hiredis.h>
#endif

namespace gismo::bench {
namespace {

constexpr size_t kValue = 1024;

// The value of key (node, i): its coordinates, then fixed pseudo-random bytes.
void MakeValue(uint8_t* v, int node, uint64_t i) {
  static const std::vector<uint8_t> filler = [] {
    std::vector<uint8_t> f(kValue);
    FillRandom(f.data(), f.size(), 5);
    return f;
  }();
  std::memcpy(v, filler.data(), kValue);
  uint64_t k = (static_cast<uint64_t>(node) << 40) | i;
  std::memcpy(v, &k, sizeof k);
}

ObjectId KeyId(uint64_t tag_hash, int node, uint64_t i) {
  std::array<uint8_t, ObjectId::kSize> b{};
  std::memcpy(b.data(), &tag_hash, 8);
  uint32_t n = static_cast<uint32_t>(node);
  std::memcpy(b.data() + 8, &n, 4);
  std::memcpy(b.data() + 12, &i, 8);
  return ObjectId::FromBytes(b);
}

std::string KeyName(int node, uint64_t i) {
  return "k:" + std::to_string(node) + ":" + std::to_string(i);
}

json Client2(const json& a) {
  Client c = ConnectWorker();
  Signals sig(c, a["tag"]);
  const int me = a["index"], other = 1 - me;
  const uint64_t ops = a["ops"];
  const bool use_redis = a["mode"] == "redis";
  const uint64_t tag_hash =
      Hash(a["tag"].get<std::string>().data(), a["tag"].get<std::string>().size());
  std::vector<double> set_ns, get_ns;
  set_ns.reserve(ops);
  get_ns.reserve(ops);
  uint8_t value[kValue], expect[kValue];
  uint64_t bad = 0;
  double set_wall = 0, get_wall = 0;

#ifdef GISMO_BENCH_HIREDIS
  redisContext* rc = nullptr;
  if (use_redis) {
    for (int attempt = 0; attempt < 500; ++attempt) {  // until redis-server listens
      rc = redisConnect(a["host"].get<std::string>().c_str(), a["port"].get<int>());
      if (rc && !rc->err) break;
      if (rc) redisFree(rc);
      rc = nullptr;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (!rc) Die("cannot connect to redis-server");
  }
#else
  if (use_redis) Die("gismo-bench was built without hiredis");
#endif

  auto barrier = [&](const std::string& name) {
    sig.Post(name + "/" + std::to_string(me));
    sig.Wait(name + "/" + std::to_string(other));
  };
  barrier("start");
  int64_t t_phase = NowNs();
  for (uint64_t i = 0; i < ops; ++i) {
    MakeValue(value, me, i);
    int64_t t0 = NowNs();
    if (!use_redis) {
      ObjectId id = KeyId(tag_hash, me, i);
      void* data;
      gismo_status_t s = gismo_create(c.c_client(), &id.c_id(), kValue, nullptr, 0, &data);
      if (s == GISMO_OK) {
        std::memcpy(data, value, kValue);
        s = gismo_seal(c.c_client(), &id.c_id());
      }
      if (s == GISMO_OK) s = gismo_release(c.c_client(), &id.c_id());
      if (s != GISMO_OK) Die(std::string("redis/gismo set: ") + gismo_last_error());
    } else {
#ifdef GISMO_BENCH_HIREDIS
      std::string key = KeyName(me, i);
      auto* r = static_cast<redisReply*>(
          redisCommand(rc, "SET %b %b", key.data(), key.size(), value, kValue));
      if (!r || r->type == REDIS_REPLY_ERROR) Die("redis SET failed");
      freeReplyObject(r);
#endif
    }
    set_ns.push_back(static_cast<double>(NowNs() - t0));
  }
  set_wall = SecondsSince(t_phase);
  barrier("set");
  t_phase = NowNs();
  for (uint64_t i = 0; i < ops; ++i) {
    MakeValue(expect, other, i);
    int64_t t0 = NowNs();
    if (!use_redis) {
      ObjectId id = KeyId(tag_hash, other, i);
      gismo_buffer_t b;
      if (gismo_get(c.c_client(), &id.c_id(), 1, 0, &b) != GISMO_OK || !b.data) {
        Die(std::string("redis/gismo get: ") + gismo_last_error());
      }
      bad += b.data_size != kValue || std::memcmp(b.data, expect, kValue) != 0;
      if (gismo_release(c.c_client(), &id.c_id()) != GISMO_OK) Die("release");
    } else {
#ifdef GISMO_BENCH_HIREDIS
      std::string key = KeyName(other, i);
      auto* r = static_cast<redisReply*>(redisCommand(rc, "GET %b", key.data(), key.size()));
      if (!r || r->type != REDIS_REPLY_STRING) Die("redis GET failed");
      bad += r->len != kValue || std::memcmp(r->str, expect, kValue) != 0;
      freeReplyObject(r);
#endif
    }
    get_ns.push_back(static_cast<double>(NowNs() - t0));
  }
  get_wall = SecondsSince(t_phase);
  barrier("get");
  if (bad) Die("redis experiment: " + std::to_string(bad) + " values failed verification");
  if (!use_redis) {
    for (uint64_t i = 0; i < ops; ++i) Check(c.Delete(KeyId(tag_hash, me, i)), "delete");
  }
#ifdef GISMO_BENCH_HIREDIS
  if (rc) {
    barrier("stop");
    if (me == 0) {
      redisReply* r = static_cast<redisReply*>(redisCommand(rc, "SHUTDOWN NOSAVE"));
      if (r) freeReplyObject(r);
    }
    redisFree(rc);
  }
#endif
  return {{"set_ns", ToJson(Summarize(set_ns))},
          {"get_ns", ToJson(Summarize(get_ns))},
          {"set_wall_s", set_wall},
          {"get_wall_s", get_wall}};
}

RegisterRole reg_c("redis.client", Client2);

}  // namespace

json RunRedis(const Options& o) {
  const uint64_t ops = std::max<uint64_t>(1000, static_cast<uint64_t>(50000 * o.scale));
  json out = {{"ops_per_node", ops}, {"value_bytes", kValue}, {"nodes", 2}};
  for (const char* mode : {"gismo", "redis"}) {
    Progress(std::string("[redis] ") + mode + ": " + std::to_string(ops) +
             " sets then gets of 1 KB per node, 2 nodes");
    json base = {{"role", "redis.client"},
                 {"tag", o.Tag(std::string("redis-") + mode)},
                 {"ops", ops},
                 {"mode", mode}};
    pid_t server = -1;
    if (std::string(mode) == "redis") {
      int port = FreePort(o.where.HostOf(0));
      base["host"] = o.where.HostOf(0);
      base["port"] = port;
      server = SpawnCommand(
          o.where, 0,
          {"redis-server", "--port", std::to_string(port), "--bind", o.where.HostOf(0), "--save",
           "", "--appendonly", "no", "--protected-mode", "no", "--loglevel", "warning"});
    }
    std::vector<Worker> ws;
    for (int k = 0; k < 2; ++k) {
      json a = base;
      a["index"] = k;
      ws.emplace_back(o.where, k, a);
    }
    std::vector<json> res;
    for (auto& w : ws) res.push_back(w.Wait());
    if (server > 0) {
      kill(server, SIGTERM);  // normally gone already (SHUTDOWN NOSAVE)
      int st;
      waitpid(server, &st, 0);
    }
    double set_wall =
        std::max(res[0]["set_wall_s"].get<double>(), res[1]["set_wall_s"].get<double>());
    double get_wall =
        std::max(res[0]["get_wall_s"].get<double>(), res[1]["get_wall_s"].get<double>());
    out[mode] = {{"per_node", res},
                 {"set_median_ns", res[0]["set_ns"]["median"]},
                 {"set_p99_ns", res[0]["set_ns"]["p99"]},
                 {"get_median_ns", res[0]["get_ns"]["median"]},
                 {"get_p99_ns", res[0]["get_ns"]["p99"]},
                 {"set_ops_per_s", 2 * ops / set_wall},
                 {"get_ops_per_s", 2 * ops / get_wall}};
  }
  auto r = [&](const char* k) {
    return out["redis"][k].get<double>() / out["gismo"][k].get<double>();
  };
  out["ratios"] = {{"set_latency", r("set_median_ns")},
                   {"get_latency", r("get_median_ns")},
                   {"set_throughput", 1 / r("set_ops_per_s")},
                   {"get_throughput", 1 / r("get_ops_per_s")}};
  out["aims"] = {{"gismo_faster_than_redis_at_least", 20.0}};
  return out;
}

}  // namespace gismo::bench
