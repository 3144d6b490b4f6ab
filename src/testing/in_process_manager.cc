#include "testing/in_process_manager.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include "testing/process.h"

namespace gismo::testing {

manager::ManagerOptions InProcessManagerOptions(uint64_t region_size) {
  const std::string name = UniqueName("inproc");
  manager::ManagerOptions o;
  o.region_path = FreshPath("/dev/shm/" + name);
  o.listen = {"unix:" + FreshPath("/tmp/" + name + ".sock")};
  o.format.size = region_size;
  // Its clients share its process: fencing a suspected one by killing its
  // pid would kill the test. A suspected client stays suspected instead.
  o.local_fence = false;
  return o;
}

InProcessManager::InProcessManager(manager::ManagerOptions options)
    : options_(std::move(options)), manager_(std::make_unique<manager::Manager>(options_)) {}

InProcessManager::~InProcessManager() {
  Stop();
  manager_.reset();  // unlinks its sockets
  unlink(options_.region_path.c_str());
}

Status InProcessManager::Start() {
  // As gismo-manager --log-level warn: one line per client event is noise.
  spdlog::set_level(spdlog::level::warn);
  if (Status s = manager_->Start(); !s.ok()) return s;
  address_ = manager_->listen_addresses().front();
  // Everything Start() wrote happens before the thread starts.
  serving_ = std::thread([m = manager_.get()] { m->Run(/*handle_signals=*/false); });
  return Status();
}

void InProcessManager::Stop() {
  if (!serving_.joinable()) return;
  manager_->Stop();  // posted to the serving thread: thread-safe
  serving_.join();
}

}  // namespace gismo::testing
