// table1: the Plasma paper's Table 1. A writer on node 0 creates, writes and
// seals a batch of objects; a reader on the same node or on another node gets
// every object (buffer only), then reads all its bytes. The three phases are
// timed separately, per batch.
#include <cstdlib>
#include <cstring>

#include "experiments.h"

namespace gismo::bench {
namespace {

struct Row {
  size_t count;
  size_t size;
};

std::vector<Row> Rows(double scale) {
  const std::vector<Row> plasma = {{1000, 1 << 10}, {500, 10 << 10}, {200, 100 << 10},
                                   {100, 1 << 20},  {50, 10 << 20},  {10, 100 << 20}};
  std::vector<Row> rows;
  for (Row r : plasma) {
    rows.push_back({std::max<size_t>(1, static_cast<size_t>(r.count * scale)), r.size});
  }
  return rows;
}

std::vector<ObjectId> BatchIds(const std::string& tag, size_t row, int rep, size_t count) {
  std::vector<ObjectId> ids;
  for (size_t i = 0; i < count; ++i) {
    ids.push_back(ObjectId::FromName(tag + "/o/" + std::to_string(row) + "/" + std::to_string(rep) +
                                     "/" + std::to_string(i)));
  }
  return ids;
}

std::string Step(size_t row, int rep) { return std::to_string(row) + "/" + std::to_string(rep); }

json Writer(const json& a) {
  Client c = ConnectWorker();
  std::string tag = a["tag"];
  Signals sig(c, tag);
  // Repeat r is read by reader r % 2 (0: same node, 1: other node), so both
  // readers see the heap in the same state on average.
  int repeats = 2 * a["repeats"].get<int>();
  std::vector<Row> rows;
  size_t max_size = 0;
  for (auto& r : a["rows"]) {
    rows.push_back({r[0], r[1]});
    max_size = std::max<size_t>(max_size, r[1]);
  }
  auto* src = static_cast<uint8_t*>(aligned_alloc(4096, max_size));
  FillRandom(src, max_size, 7);
  json out = json::array();
  for (size_t k = 0; k < rows.size(); ++k) {
    const Row& row = rows[k];
    // The expected checksum rides in each object's metadata.
    uint64_t expect = Hash(src, row.size);
    std::vector<double> create_s[2];
    for (int rep = 0; rep < repeats; ++rep) {
      Progress("[table1] " + std::to_string(row.count) + " x " + SizeName(row.size) + "  repeat " +
               std::to_string(rep + 1) + "/" + std::to_string(repeats));
      std::vector<ObjectId> ids = BatchIds(tag, k, rep, row.count);
      int64_t t0 = NowNs();
      for (const ObjectId& id : ids) {
        void* data;
        gismo_status_t s =
            gismo_create(c.c_client(), &id.c_id(), row.size, &expect, sizeof expect, &data);
        if (s == GISMO_OK) {
          std::memcpy(data, src, row.size);
          s = gismo_seal(c.c_client(), &id.c_id());
        }
        if (s == GISMO_OK) s = gismo_release(c.c_client(), &id.c_id());
        if (s != GISMO_OK) Die(std::string("table1 create: ") + gismo_last_error());
      }
      create_s[rep % 2].push_back(SecondsSince(t0));
      sig.Post("ready/" + Step(k, rep));
      sig.Wait("done/" + Step(k, rep));
      for (const ObjectId& id : ids) Check(c.Delete(id), "delete");
      sig.Remove("ready/" + Step(k, rep));
      sig.Remove("done/" + Step(k, rep));
    }
    out.push_back({create_s[0], create_s[1]});
  }
  free(src);
  return {{"create_s", out}};
}

json Reader(const json& a) {
  Client c = ConnectWorker();
  std::string tag = a["tag"];
  Signals sig(c, tag);
  int repeats = 2 * a["repeats"].get<int>();
  const int parity = a["parity"];
  json get_out = json::array(), read_out = json::array();
  size_t k = 0;
  for (auto& r : a["rows"]) {
    Row row{r[0], r[1]};
    std::vector<double> get_s, read_s;
    std::vector<gismo_buffer_t> bufs(row.count);
    for (int rep = parity; rep < repeats; rep += 2) {
      std::vector<ObjectId> ids = BatchIds(tag, k, rep, row.count);
      sig.Wait("ready/" + Step(k, rep));
      int64_t t0 = NowNs();
      for (size_t i = 0; i < row.count; ++i) {
        if (gismo_get(c.c_client(), &ids[i].c_id(), 1, 0, &bufs[i]) != GISMO_OK ||
            bufs[i].data == nullptr) {
          Die(std::string("table1 get: ") + gismo_last_error());
        }
      }
      int64_t t1 = NowNs();
      size_t bad = 0;
      for (size_t i = 0; i < row.count; ++i) {
        uint64_t expect;
        std::memcpy(&expect, bufs[i].metadata, sizeof expect);
        bad += Hash(bufs[i].data, bufs[i].data_size) != expect;
      }
      int64_t t2 = NowNs();
      if (bad) Die("table1: " + std::to_string(bad) + " objects failed verification");
      for (size_t i = 0; i < row.count; ++i) Check(c.Release(ids[i]), "release");
      get_s.push_back((t1 - t0) * 1e-9);
      read_s.push_back((t2 - t1) * 1e-9);
      sig.Post("done/" + Step(k, rep));
    }
    get_out.push_back(get_s);
    read_out.push_back(read_s);
    ++k;
  }
  return {{"get_s", get_out}, {"read_s", read_out}};
}

RegisterRole reg_writer("table1.writer", Writer);
RegisterRole reg_reader("table1.reader", Reader);

}  // namespace

json RunTable1(const Options& o) {
  int repeats = o.repeats > 0 ? o.repeats : 20;
  std::vector<Row> rows = Rows(o.scale);
  json jrows = json::array();
  for (Row r : rows) jrows.push_back({r.count, r.size});
  json out = {{"repeats", repeats}, {"rows", json::array()}};
  for (Row r : rows) out["rows"].push_back({{"count", r.count}, {"size", r.size}});
  // One writer on node 0; readers on node 0 and node 1 take turns.
  json args = {{"tag", o.Tag("table1")}, {"repeats", repeats}, {"rows", jrows}};
  args["role"] = "table1.writer";
  Worker w(o.where, 0, args);
  args["role"] = "table1.reader";
  args["parity"] = 0;
  Worker same(o.where, 0, args);
  args["parity"] = 1;
  Worker other(o.where, 1, args);
  json wr = w.Wait(), rr[2] = {same.Wait(), other.Wait()};
  int p = 0;
  for (const char* label : {"same_node", "other_node"}) {
    for (size_t k = 0; k < rows.size(); ++k) {
      auto stats = [&](const json& v) { return Summarize(v.get<std::vector<double>>()); };
      Stats cs = stats(wr["create_s"][k][p]), gs = stats(rr[p]["get_s"][k]),
            rs = stats(rr[p]["read_s"][k]);
      double bytes = static_cast<double>(rows[k].count) * rows[k].size;
      out["rows"][k][label] = {{"create_s", ToJson(cs)},
                               {"get_s", ToJson(gs)},
                               {"read_s", ToJson(rs)},
                               {"create_gbps", bytes / cs.median / 1e9},
                               {"read_gbps", bytes / rs.median / 1e9},
                               {"get_us_per_object", gs.median / rows[k].count * 1e6}};
    }
    ++p;
  }
  out["aims"] = {{"other_node_vs_same_node", "reader on another node as fast as the local one"}};
  return out;
}

}  // namespace gismo::bench
