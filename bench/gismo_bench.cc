// gismo-bench: the seeds' experiments, gismo beside the network path.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>
#include <random>

#include "experiments.h"

namespace gismo::bench {

std::map<std::string, WorkerFn>& WorkerRoles() {
  static std::map<std::string, WorkerFn> roles;
  return roles;
}

Client ConnectWorker() { return Must(Client::Connect(), "connect"); }

namespace {
std::string LoadAverage() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return a + " " + b + " " + c;
}
}  // namespace

}  // namespace gismo::bench

int main(int argc, char** argv) {
  using namespace gismo::bench;
  // Worker processes: `gismo-bench worker <json>`; not part of the user CLI.
  if (argc == 3 && std::string(argv[1]) == "worker") {
    json args = json::parse(argv[2]);
    auto it = WorkerRoles().find(args.at("role").get<std::string>());
    if (it == WorkerRoles().end()) Die("unknown worker role " + args.at("role").dump());
    json result = it->second(args);
    std::cout << result.dump() << std::endl;
    return 0;
  }

  CLI::App app{
      "gismo-bench: the seeds' experiments (Plasma Table 1, 1 GB transfer, shuffle, memory, "
      "Redis), gismo beside the network path. Results are JSON on stdout (or --output)."};
  app.require_subcommand(1);
  app.fallthrough();  // global options may also follow the subcommand
  Options o;
  std::string manager_bin = DefaultManagerBin(), region_size = "8GiB", output;
  app.add_option("--scale", o.scale, "Multiplies every data size / operation count")
      ->capture_default_str();
  app.add_option("--nodes", o.nodes, "Nodes for shuffle and memory")->capture_default_str();
  app.add_option("--address", o.where.address,
                 "Manager to use (default: start a private one on a region in /dev/shm)");
  app.add_option("--exec-prefix", o.where.exec_prefix,
                 "Command prefix placing a worker on a node, {node} = node id "
                 "(e.g. 'gismo-cluster exec {node} --'); default: plain processes");
  app.add_option("--node-base", o.where.node_base,
                 "Id of the first node workers run on (experiment node k runs on k + base)")
      ->capture_default_str();
  app.add_option("--host-template", o.where.host_template,
                 "IPv4 address of a node for TCP: {node} = node id, {node1} = node id + 1")
      ->capture_default_str();
  app.add_option("--manager", manager_bin, "gismo-manager binary")->capture_default_str();
  app.add_option("--region-size", region_size, "Size of the private region")->capture_default_str();
  app.add_option("--output", output, "Write the JSON result here instead of stdout");

  std::map<std::string, std::function<json(const Options&)>> runs = {{"table1", RunTable1},
                                                                     {"gismo", RunTransfer},
                                                                     {"shuffle", RunShuffle},
                                                                     {"memory", RunMemory},
                                                                     {"redis", RunRedis}};
  const std::map<std::string, std::string> help = {
      {"table1",
       "Plasma paper Table 1: create+write+seal, get, read; reader on the same or another node"},
      {"gismo",
       "get+read of a 1 GB object: same node, other node, network path (TCP, 5 MB chunks)"},
      {"shuffle", "map/reduce shuffle on N nodes: references through gismo vs partitions over TCP"},
      {"memory", "one object read by N nodes: pool bytes with gismo vs N copies"},
      {"redis", "set/get of 1 KB values from two nodes: gismo vs redis-server"}};
  for (auto& [name, fn] : runs) {
    CLI::App* sub = app.add_subcommand(name, help.at(name));
    sub->add_option("--repeats", o.repeats, "Repeats (default: the experiment's own)");
  }
  CLI11_PARSE(app, argc, argv);

  std::mt19937_64 rng{std::random_device{}()};
  o.tag = "gismo-bench-" + std::to_string(getpid()) + "-" + std::to_string(rng());
  std::optional<gismo::testing::ManagerProcess> manager;
  if (o.where.address.empty()) {
    manager.emplace(StartManager(manager_bin, region_size));
    o.where.address = manager->address();
  }
  json result;
  for (auto& [name, fn] : runs) {
    if (app.got_subcommand(name)) {
      result = fn(o);
      result["experiment"] = name;
    }
  }
  ProgressDone();
  result["setup"] = {{"scale", o.scale},
                     {"placement", o.where.exec_prefix.empty() ? "processes" : o.where.exec_prefix},
                     {"host_template", o.where.host_template},
                     {"node_base", o.where.node_base},
                     {"loadavg_at_end", LoadAverage()},
                     {"cores", sysconf(_SC_NPROCESSORS_ONLN)}};
  if (output.empty()) {
    std::cout << result.dump(2) << std::endl;
  } else {
    std::ofstream(output) << result.dump(2) << "\n";
  }
  return 0;
}
