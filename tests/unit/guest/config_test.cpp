// The shim's environment settings that have a syntax of their own.
#include "config.h"

#include <gtest/gtest.h>

namespace tosec::guest {
namespace {

TEST(GuestConfig, SpinNsIsDecimalNanosecondsUpToOneSecond) {
  EXPECT_EQ(parse_spin_ns("0"), 0);
  EXPECT_EQ(parse_spin_ns("200000"), 200000);
  EXPECT_EQ(parse_spin_ns("1000000000"), Config::kMaxSpinNs);
  EXPECT_EQ(parse_spin_ns("1000000001"), std::nullopt);
  EXPECT_EQ(parse_spin_ns("-1"), std::nullopt);
  EXPECT_EQ(parse_spin_ns(" 5"), std::nullopt);
  EXPECT_EQ(parse_spin_ns("5us"), std::nullopt);
  EXPECT_EQ(parse_spin_ns(""), std::nullopt);
  EXPECT_EQ(parse_spin_ns("99999999999999999999999"), std::nullopt);
}

}  // namespace
}  // namespace tosec::guest
