// The common start of the TOE tests: an in-process TOE (toe_harness.h) with the small default
// channel, and one fake guest (fake_guest.h) joined to it. Suites derive their fixture from it.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "fake_guest.h"
#include "toe_harness.h"

namespace tosec::tovm::test {

class ToeWithGuest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(toe_.ok()) << toe_.error();
    std::string err;
    g_ = FakeGuest::join(toe_.options().ivshmem, toe_.options().sidecar, err);
    ASSERT_TRUE(g_) << err;
  }

  // Declared in start-up order: the guest leaves before the TOE stops.
  ToeHarness toe_;
  std::unique_ptr<FakeGuest> g_;
};

}  // namespace tosec::tovm::test
