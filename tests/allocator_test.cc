// The heap allocator: classes, slabs, page runs, exhaustion, concurrency.
#include "store/allocator.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>
#include <thread>

#include "region_fixture.h"

namespace gismo::store {
namespace {

using region::kPageSize;
using region::OpKind;

class AllocatorTest : public gismo::testing::RegionFixture {
 protected:
  Result<uint64_t> Alloc(uint32_t slot, uint64_t bytes) {
    Txn txn(*region_, slot, 1, OpKind::kCreate);
    auto r = Allocator(*region_).Allocate(txn, bytes);
    if (r.ok()) EXPECT_TRUE(txn.Commit().ok());
    return r;
  }
  void Free(uint32_t slot, uint64_t off, uint64_t bytes) {
    Txn txn(*region_, slot, 1, OpKind::kDelete);
    Allocator(*region_).Free(txn, off, bytes);
    EXPECT_TRUE(txn.Commit().ok());
  }
};

TEST_F(AllocatorTest, ClassesAndBlockSizes) {
  EXPECT_EQ(Allocator::ClassOf(1), 0);
  EXPECT_EQ(Allocator::ClassOf(64), 0);
  EXPECT_EQ(Allocator::ClassOf(65), 1);
  EXPECT_EQ(Allocator::ClassOf(8192), 23);
  EXPECT_EQ(Allocator::ClassOf(8193), -1);
  EXPECT_EQ(Allocator::BlockSize(1000), 1024u);
  EXPECT_EQ(Allocator::BlockSize(8193), kPageSize);
  EXPECT_EQ(Allocator::BlockSize(kPageSize + 1), 2 * kPageSize);
}

TEST_F(AllocatorTest, SmallBlocksAreDistinctAlignedAndReturn) {
  auto s = Activate(1);
  uint64_t free0 = FreePages();
  std::set<uint64_t> seen;
  std::vector<uint64_t> offs;
  for (int i = 0; i < 1000; ++i) {
    auto r = Alloc(1, 100);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(*r % 64, 0u);
    EXPECT_TRUE(seen.insert(*r).second) << "block handed out twice";
    offs.push_back(*r);
  }
  EXPECT_LT(FreePages(), free0);
  for (uint64_t o : offs) Free(1, o, 100);
  // The owner keeps its current slab; everything else is back.
  EXPECT_GE(FreePages() + 1, free0);
  EXPECT_TRUE(Allocator(*region_).DisownSlabs(1, 1, 1, 1000000));
  EXPECT_EQ(FreePages(), free0);
}

TEST_F(AllocatorTest, LargeRunsAndExhaustion) {
  auto s = Activate(1);
  const uint64_t total = region_->num_pages();
  uint64_t free0 = FreePages();
  ASSERT_EQ(free0, total);
  std::vector<uint64_t> offs;
  for (;;) {
    auto r = Alloc(1, 1 << 20);
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), GISMO_ERR_OUT_OF_MEMORY);
      EXPECT_NE(r.status().message().find("largest free extent"), std::string::npos);
      break;
    }
    offs.push_back(*r);
  }
  EXPECT_EQ(offs.size(), total / ((1 << 20) / kPageSize));
  // Free every other one: 1 MiB holes but no 2 MiB run.
  for (size_t i = 0; i < offs.size(); i += 2) Free(1, offs[i], 1 << 20);
  EXPECT_FALSE(Alloc(1, 2 << 20).ok());
  EXPECT_TRUE(Alloc(1, 1 << 20).ok());
  EXPECT_EQ(Allocator(*region_).Stats().largest_free_bytes, 1u << 20);
}

TEST_F(AllocatorTest, FailedAllocationChangesNothing) {
  auto s = Activate(1);
  uint64_t free0 = FreePages();
  auto r = Alloc(1, region_->heap_size() + kPageSize);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(FreePages(), free0);
  EXPECT_EQ(region_->alloc().page_lock.load(), 0u);
}

TEST_F(AllocatorTest, SlabsOfADeadOwnerAreReused) {
  auto a = Activate(1);
  auto b = Activate(9);  // same stripe as slot 1 (9 % 8 == 1)
  uint64_t free0 = FreePages();
  std::vector<uint64_t> offs;
  for (int i = 0; i < 50; ++i) offs.push_back(*Alloc(1, 1000));
  for (int i = 0; i < 50; i += 2) Free(9, offs[i], 1000);  // remote frees
  ASSERT_TRUE(Allocator(*region_).DisownSlabs(1, 0, 1, 1000000));
  // Slot 9 adopts the partial slab instead of taking a new page.
  uint64_t before = FreePages();
  auto r = Alloc(9, 1000);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(FreePages(), before);
  Free(9, *r, 1000);
  for (int i = 1; i < 50; i += 2) Free(9, offs[i], 1000);
  ASSERT_TRUE(Allocator(*region_).DisownSlabs(9, 0, 1, 1000000));
  EXPECT_EQ(FreePages(), free0);
}

// Several threads, each its own client slot, allocate and free random sizes
// (fixed seeds); no block is ever given to two owners at once and all memory
// returns.
TEST_F(AllocatorTest, ConcurrentStressFixedSeeds) {
  constexpr int kThreads = 4, kOps = 3000;
  std::vector<std::unique_ptr<Store>> stores;
  for (int t = 0; t < kThreads; ++t) stores.push_back(Activate(t + 1));
  uint64_t free0 = FreePages();
  std::atomic<int> errors{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      std::mt19937_64 rng(1234 + t);
      std::vector<std::pair<uint64_t, uint64_t>> live;
      uint8_t tag = static_cast<uint8_t>(t + 1);
      for (int i = 0; i < kOps; ++i) {
        if (live.size() < 64 && (live.empty() || rng() % 3 != 0)) {
          uint64_t size = rng() % 4 == 0 ? (rng() % (200 << 10)) + 1 : (rng() % 4000) + 1;
          auto r = Alloc(t + 1, size);
          if (!r.ok()) continue;
          std::memset(region_->heap() + *r, tag, size);
          live.emplace_back(*r, size);
        } else {
          size_t k = rng() % live.size();
          auto [off, size] = live[k];
          for (uint64_t b = 0; b < size; b += 61) {
            if (region_->heap()[off + b] != tag) ++errors;  // someone else wrote here
          }
          Free(t + 1, off, size);
          live.erase(live.begin() + k);
        }
      }
      for (auto [off, size] : live) Free(t + 1, off, size);
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(errors.load(), 0);
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_TRUE(Allocator(*region_).DisownSlabs(t + 1, 0, 1, 1000000));
  }
  EXPECT_EQ(FreePages(), free0);
}

}  // namespace
}  // namespace gismo::store
