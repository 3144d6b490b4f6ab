// Several client processes against one manager: mixed operations on
// checksummed objects with fixed seeds; at the end the store is consistent
// and every byte is accounted for.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include <gismo/gismo.hpp>
#include <random>
#include <thread>

#include "region/layout.h"
#include "test_util.h"

namespace gismo {
namespace {

using testing::ManagerProcess;

// Content of object k: derived from k, with its checksum in the metadata.
void Fill(uint8_t* p, size_t n, uint64_t k) {
  std::mt19937_64 rng(k);
  for (size_t i = 0; i < n; i += 8) {
    uint64_t v = rng();
    std::memcpy(p + i, &v, std::min<size_t>(8, n - i));
  }
}

int Worker(const std::string& addr, int w, int ops, int ids) {
  auto c = Client::Connect(addr);
  if (!c.ok()) return 10;
  std::mt19937 rng(7 * w + 1);
  std::vector<Buffer> held;
  for (int i = 0; i < ops; ++i) {
    int k = rng() % ids;
    ObjectId id = ObjectId::FromName("mp-" + std::to_string(k));
    switch (rng() % 5) {
      case 0:
      case 1: {
        size_t size = (k % 7 == 0) ? (1 << 20) + k : 64 + k * 131;
        auto b = c->Create(id, size);
        if (!b.ok()) {
          if (b.status().code() != GISMO_ERR_OBJECT_EXISTS) return 11;
          break;
        }
        Fill(b->data(), size, k);
        if (!b->SealAndRelease().ok()) return 12;
        break;
      }
      case 2: {
        auto b = c->Get(id, 0);
        if (b.ok()) {
          std::vector<uint8_t> want(b->size());
          Fill(want.data(), want.size(), k);
          if (std::memcmp(want.data(), b->data(), want.size()) != 0) return 13;
          if (rng() % 2) held.push_back(std::move(*b));
        } else if (b.status().code() != GISMO_ERR_TIMEOUT) {
          return 14;
        }
        break;
      }
      case 3:
        if (!held.empty()) held.pop_back();  // releases
        break;
      case 4: {
        Status s = c->Delete(id);
        if (!s.ok() && s.code() != GISMO_ERR_OBJECT_NOT_FOUND &&
            s.code() != GISMO_ERR_OBJECT_NOT_SEALED) {
          return 15;
        }
        break;
      }
    }
  }
  // Half the workers exit holding references without releasing: the
  // manager must clean up after them.
  if (w % 2) {
    for (auto& b : held) b.Detach();
    _exit(0);
  }
  return 0;
}

TEST(MultiProcessTest, MixedOperationsStayConsistent) {
  ManagerProcess mgr({}, "512MiB");
  constexpr int kWorkers = 4, kOps = 1500, kIds = 40;
  std::vector<pid_t> pids;
  for (int w = 0; w < kWorkers; ++w) {
    pid_t pid = fork();
    if (pid == 0) _exit(Worker(mgr.address(), w, kOps, kIds));
    pids.push_back(pid);
  }
  for (pid_t p : pids) {
    int status = 0;
    waitpid(p, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "worker status " << status;
  }
  auto c = Client::Connect(mgr.address());
  ASSERT_TRUE(c.ok());
  // Wait for the manager to see every worker go.
  while (c->Usage()->client_count != 1) std::this_thread::yield();
  auto list = c->List();
  ASSERT_TRUE(list.ok());
  for (const auto& info : *list) {
    EXPECT_EQ(info.state, GISMO_STATE_SEALED);  // nothing unsealed or half-deleted
    EXPECT_EQ(info.ref_count, 0u);
    ObjectId id(info.id);
    auto b = c->Get(id, 0);
    ASSERT_TRUE(b.ok());
    // Every surviving object is intact.
    bool match = false;
    for (int k = 0; k < kIds && !match; ++k) {
      if (ObjectId::FromName("mp-" + std::to_string(k)) == id) {
        std::vector<uint8_t> want(b->size());
        Fill(want.data(), want.size(), k);
        match = std::memcmp(want.data(), b->data(), want.size()) == 0;
      }
    }
    EXPECT_TRUE(match);
  }
  for (const auto& info : *list) ASSERT_TRUE(c->Delete(ObjectId(info.id)).ok());
  auto u = c->Usage();
  EXPECT_EQ(u->object_count, 0u);
  // Only this client's own current slabs may remain in use.
  EXPECT_EQ(u->used_bytes, 0u);  // every page back: no leak
}

}  // namespace
}  // namespace gismo
