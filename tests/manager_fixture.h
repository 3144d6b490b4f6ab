// A manager inside the test process (src/testing/in_process_manager.h) and
// clients of it: the fixture of the client-level unit tests that need no
// manager process (tests that kill or restart a manager use ManagerProcess).
#ifndef GISMO_TESTS_MANAGER_FIXTURE_H_
#define GISMO_TESTS_MANAGER_FIXTURE_H_

#include <gtest/gtest.h>

#include <gismo/gismo.hpp>
#include <memory>
#include <optional>

#include "region/region.h"
#include "test_util.h"
#include "testing/in_process_manager.h"

namespace gismo::testing {

class InProcessManagerTest : public ::testing::Test {
 protected:
  // The manager's options; a fixture that needs others overrides this.
  virtual manager::ManagerOptions Options() const { return InProcessManagerOptions(); }

  void SetUp() override {
    mgr_.emplace(Options());
    ASSERT_TRUE(IsOk(mgr_->Start()));
  }

  // A new client of the manager; a failure to connect fails the test.
  Client Connect() { return MustConnect(mgr_->address()); }

  // The manager's region, mapped by the test to look at shared words; a
  // failure fails the test and returns null.
  std::unique_ptr<region::Region> OpenRegion() {
    auto r = region::Region::Open(mgr_->region_path());
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(*r) : nullptr;
  }

  std::optional<InProcessManager> mgr_;
};

}  // namespace gismo::testing

#endif  // GISMO_TESTS_MANAGER_FIXTURE_H_
