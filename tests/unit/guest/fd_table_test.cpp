#include "fd_table.h"

#include <gtest/gtest.h>

namespace tosec::guest {
namespace {

TEST(FdTable, UnknownUntilSet) {
  FdTable t;
  EXPECT_EQ(t.get(5).kind, FdTable::Kind::kUnknown);
  t.set_kernel(5);
  EXPECT_EQ(t.get(5).kind, FdTable::Kind::kKernel);
  t.set_offloaded(6, {42, 7});
  auto l = t.get(6);
  EXPECT_EQ(l.kind, FdTable::Kind::kOffloaded);
  EXPECT_EQ(l.ref.id, 42U);
  EXPECT_EQ(l.ref.generation, 7U);
  EXPECT_EQ(t.high_water(), 7);
}

TEST(FdTable, OutOfRangeIsKernel) {
  FdTable t;
  EXPECT_EQ(t.get(-1).kind, FdTable::Kind::kKernel);
  EXPECT_EQ(t.get(FdTable::kMaxFd).kind, FdTable::Kind::kKernel);
  t.set_offloaded(FdTable::kMaxFd, {1, 1});  // ignored, no crash
  EXPECT_EQ(t.high_water(), 0);
}

TEST(FdTable, CopyAndForget) {
  FdTable t;
  t.set_offloaded(3, {1000, 0xFFFFFFFFU});
  t.copy(3, 9);
  EXPECT_EQ(t.get(9).kind, FdTable::Kind::kOffloaded);
  EXPECT_EQ(t.get(9).ref, (SocketRef{1000, 0xFFFFFFFFU}));
  t.forget(3);
  EXPECT_EQ(t.get(3).kind, FdTable::Kind::kUnknown);
  EXPECT_EQ(t.get(9).kind, FdTable::Kind::kOffloaded);  // the dup keeps the socket
  t.set_kernel(4);
  t.copy(4, 9);  // dup2 of a kernel fd over an offloaded one
  EXPECT_EQ(t.get(9).kind, FdTable::Kind::kKernel);
  t.copy(-1, 9);
  EXPECT_EQ(t.get(9).kind, FdTable::Kind::kUnknown);
}

TEST(FdTable, LargestSocketIdRoundTrips) {
  FdTable t;
  t.set_offloaded(0, {999'999, 123});
  EXPECT_EQ(t.get(0).ref, (SocketRef{999'999, 123}));
  t.clear();
  EXPECT_EQ(t.get(0).kind, FdTable::Kind::kUnknown);
}

}  // namespace
}  // namespace tosec::guest
