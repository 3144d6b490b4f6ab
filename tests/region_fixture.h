// An in-process region with hand-activated client slots, for unit tests of
// the store and allocator without a manager, and the region checker's
// verdict on it.
#ifndef GISMO_TESTS_REGION_FIXTURE_H_
#define GISMO_TESTS_REGION_FIXTURE_H_

#include <gtest/gtest.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "fsck/fsck.h"
#include "region/region.h"
#include "store/store.h"
#include "test_util.h"

namespace gismo::testing {

class RegionFixture : public ::testing::Test {
 protected:
  void Format(region::FormatOptions o = {}) {
    path_ = "/dev/shm/" + UniqueName("unit");
    if (o.size == region::FormatOptions{}.size) o.size = 64ull << 20;
    auto r = region::Region::Format(path_, o);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    region_ = std::move(*r);
    // Slot 0 is the manager's, active with session 1 (recovery runs as it).
    region_->slot(0).state.store(region::PackSlotState(region::SlotState::kActive, 1));
  }
  void SetUp() override { Format(); }
  void TearDown() override {
    region_.reset();
    unlink(path_.c_str());
  }
  // Marks slot `i` active with session 1, as the manager would.
  std::unique_ptr<store::Store> Activate(uint32_t slot, uint32_t node = 0) {
    region_->slot(slot).state.store(static_cast<uint64_t>(region::SlotState::kActive) |
                                    (uint64_t{1} << 8));
    return std::make_unique<store::Store>(*region_, slot, 1, node);
  }
  uint64_t FreePages() const { return region_->alloc().free_pages.load(); }
  // The region checker finds nothing wrong (offline: no manager runs here).
  void ExpectSound() {
    fsck::Report rep = *fsck::Check(*region_, nullptr);
    std::string all;
    for (const auto& p : rep.problems) all += p + "\n";
    EXPECT_TRUE(rep.sound()) << all;
  }

  std::string path_;
  std::unique_ptr<region::Region> region_;
};

inline gismo_id_t IdFrom(uint64_t a, uint64_t b = 0) {
  gismo_id_t id{};
  std::memcpy(id.bytes, &a, 8);
  std::memcpy(id.bytes + 8, &b, 8);
  return id;
}

}  // namespace gismo::testing

#endif  // GISMO_TESTS_REGION_FIXTURE_H_
