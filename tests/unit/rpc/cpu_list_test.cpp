// parse_cpu_list / format_cpu_list: the cpulist syntax of `[tovm] cpus` and tosec-tovm --cpus.
#include "tosec/rpc/cpu_list.h"

#include <gtest/gtest.h>

namespace tosec::rpc {
namespace {

std::vector<unsigned> ok(std::string_view text) {
  auto r = parse_cpu_list(text);
  EXPECT_TRUE(r.ok()) << text << ": " << (r.ok() ? "" : r.error().message);
  return r.ok() ? *r : std::vector<unsigned>{};
}

std::string bad(std::string_view text) {
  auto r = parse_cpu_list(text);
  EXPECT_FALSE(r.ok()) << text;
  if (r.ok()) return {};
  EXPECT_EQ(r.error().code, EINVAL);
  return r.error().message;
}

TEST(CpuList, ParsesSinglesRangesAndMixes) {
  EXPECT_EQ(ok("0"), (std::vector<unsigned>{0}));
  EXPECT_EQ(ok("1,3"), (std::vector<unsigned>{1, 3}));
  EXPECT_EQ(ok("2-4"), (std::vector<unsigned>{2, 3, 4}));
  EXPECT_EQ(ok("7,0-1,5-5"), (std::vector<unsigned>{0, 1, 5, 7}));
  EXPECT_EQ(ok("3,1-3,1"), (std::vector<unsigned>{1, 2, 3}));  // sorted, no repeats
  EXPECT_EQ(ok(std::to_string(kMaxCpus - 1)), (std::vector<unsigned>{kMaxCpus - 1}));
}

TEST(CpuList, RefusesBadTextNamingThePart) {
  EXPECT_EQ(bad(""), "empty CPU list");
  EXPECT_EQ(bad("1,,2"), "empty item in CPU list '1,,2'");
  EXPECT_EQ(bad("1,"), "empty item in CPU list '1,'");
  EXPECT_EQ(bad("x"), "'x' in CPU list 'x' is not a CPU number");
  EXPECT_EQ(bad("1-"), "'' in CPU list '1-' is not a CPU number");
  EXPECT_EQ(bad("-1"), "'' in CPU list '-1' is not a CPU number");
  EXPECT_EQ(bad("0, 1"), "' 1' in CPU list '0, 1' is not a CPU number");
  EXPECT_EQ(bad("4-2"), "range '4-2' in CPU list '4-2' ends below its start");
  EXPECT_NE(bad(std::to_string(kMaxCpus)).find("out of range"), std::string::npos);
  EXPECT_NE(bad("0-" + std::to_string(kMaxCpus)).find("out of range"), std::string::npos);
}

TEST(CpuList, FormatsWithRangesFolded) {
  EXPECT_EQ(format_cpu_list({}), "");
  EXPECT_EQ(format_cpu_list({1}), "1");
  EXPECT_EQ(format_cpu_list({0, 1, 2, 5, 7, 8}), "0-2,5,7-8");
  EXPECT_EQ(format_cpu_list(ok("9,0-3")), "0-3,9");
}

TEST(CpuList, CpusInASetAndTheRoundRobinRule) {
  cpu_set_t set;
  CPU_ZERO(&set);
  EXPECT_TRUE(cpus_in(set).empty());
  for (unsigned c : {5U, 0U, 2U, kMaxCpus - 1}) CPU_SET(c, &set);
  EXPECT_EQ(cpus_in(set), (std::vector<unsigned>{0, 2, 5, kMaxCpus - 1}));
  const std::vector<unsigned> cpus = {2, 3, 6};
  EXPECT_EQ(cpu_for(0, cpus), 2U);
  EXPECT_EQ(cpu_for(2, cpus), 6U);
  EXPECT_EQ(cpu_for(3, cpus), 2U);
  EXPECT_EQ(cpu_for(7, cpus), 3U);
}

TEST(CpuList, ThreadCpusAreTheCallersAffinity) {
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(::sched_getaffinity(0, sizeof set, &set), 0);
  EXPECT_EQ(thread_cpus(), cpus_in(set));
  EXPECT_FALSE(thread_cpus().empty());
}

}  // namespace
}  // namespace tosec::rpc
