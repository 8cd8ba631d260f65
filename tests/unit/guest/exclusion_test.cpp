#include "exclusion.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>

namespace tosec::guest {
namespace {

sockaddr_in v4(const char* a, int port) {
  sockaddr_in s{};
  s.sin_family = AF_INET;
  s.sin_port = htons(static_cast<std::uint16_t>(port));
  inet_pton(AF_INET, a, &s.sin_addr);
  return s;
}
sockaddr_in6 v6(const char* a, int port) {
  sockaddr_in6 s{};
  s.sin6_family = AF_INET6;
  s.sin6_port = htons(static_cast<std::uint16_t>(port));
  inet_pton(AF_INET6, a, &s.sin6_addr);
  return s;
}
template <class T>
bool ex(const ExclusionPolicy& p, const T& a) {
  return p.excludes(reinterpret_cast<const sockaddr*>(&a), sizeof a);
}

TEST(Exclusion, EmptyExcludesNothing) {
  auto p = ExclusionPolicy::parse("");
  ASSERT_TRUE(p);
  EXPECT_TRUE(p->empty());
  EXPECT_FALSE(ex(*p, v4("10.0.0.1", 80)));
}

TEST(Exclusion, CidrsAndPorts) {
  auto p = ExclusionPolicy::parse(" 10.0.0.0/8 , 192.168.1.7, port:53,::1/128,fd00::/8");
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_TRUE(ex(*p, v4("10.200.3.4", 80)));
  EXPECT_FALSE(ex(*p, v4("11.0.0.1", 80)));
  EXPECT_TRUE(ex(*p, v4("192.168.1.7", 1)));
  EXPECT_FALSE(ex(*p, v4("192.168.1.8", 1)));
  EXPECT_TRUE(ex(*p, v4("8.8.8.8", 53)));
  EXPECT_TRUE(ex(*p, v6("::1", 80)));
  EXPECT_FALSE(ex(*p, v6("::2", 80)));
  EXPECT_TRUE(ex(*p, v6("fd12::1", 80)));
  EXPECT_TRUE(ex(*p, v6("::ffff:10.1.1.1", 80)));  // v4-mapped matches the v4 CIDR
  EXPECT_TRUE(ex(*p, v6("2001:db8::1", 53)));
}

TEST(Exclusion, OddPrefixes) {
  auto p = ExclusionPolicy::parse("172.16.0.0/12,0.0.0.0/0");
  ASSERT_TRUE(p);
  EXPECT_TRUE(ex(*p, v4("1.2.3.4", 1)));  // /0 matches everything
  auto q = ExclusionPolicy::parse("172.16.0.0/12");
  ASSERT_TRUE(q);
  EXPECT_TRUE(ex(*q, v4("172.31.255.255", 1)));
  EXPECT_FALSE(ex(*q, v4("172.32.0.0", 1)));
}

TEST(Exclusion, RejectsGarbage) {
  EXPECT_FALSE(ExclusionPolicy::parse("10.0.0.0/33"));
  EXPECT_FALSE(ExclusionPolicy::parse("port:0"));
  EXPECT_FALSE(ExclusionPolicy::parse("port:70000"));
  EXPECT_FALSE(ExclusionPolicy::parse("port:5x"));
  EXPECT_FALSE(ExclusionPolicy::parse("not-an-address"));
  EXPECT_FALSE(ExclusionPolicy::parse("10.0.0.0/"));
  auto e = ExclusionPolicy::parse("10.0.0.0/8,bogus");
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message.find("bogus"), std::string::npos);
}

TEST(Exclusion, NonInetAndShortAddressesNeverMatch) {
  auto p = ExclusionPolicy::parse("0.0.0.0/0,::/0");
  ASSERT_TRUE(p);
  {
    sockaddr s{};
    s.sa_family = AF_UNIX;
    EXPECT_FALSE(p->excludes(&s, sizeof s));
  }
  auto a = v4("1.2.3.4", 1);
  EXPECT_FALSE(p->excludes(reinterpret_cast<const sockaddr*>(&a), 4));
  EXPECT_FALSE(p->excludes(nullptr, 0));
}

}  // namespace
}  // namespace tosec::guest
