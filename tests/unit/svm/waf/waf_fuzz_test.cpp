// Malformed HTTP never crashes the WAF: random bytes and mutated requests/responses through the
// real engine, in random chunks. (Also run under ASan+UBSan.)
#include <gtest/gtest.h>

#include <random>

#include "waf_test_support.h"

namespace tosec::svm::waf {
namespace {

using namespace testing;

void send_in_chunks(Connection& c, bool to_server, const std::string& data, std::mt19937& rng) {
  std::size_t at = 0;
  while (at < data.size()) {
    const std::size_t n = std::min<std::size_t>(data.size() - at, 1 + rng() % 100);
    const std::string_view part = std::string_view(data).substr(at, n);
    const Verdict v = to_server ? c.to_server(part) : c.to_client(part);
    if (v.blocked()) return;  // the runtime stops feeding a blocked stream
    at += n;
  }
}

TEST(WafFuzz, RandomAndMutatedTrafficNeverCrashes) {
  auto t = shared_engine().make_thread();
  ASSERT_TRUE(t.ok());
  std::mt19937 rng(4242);
  const std::string req = post_form("/a.php?x=1", "a=1&b=%41%42") + get("/next");
  const std::string res = html_response("<p>hi</p>") + html_response("<p>again</p>");
  int blocked = 0;
  for (int round = 0; round < 150; ++round) {
    Connection c(**t, static_cast<std::uint64_t>(round));
    std::string r = req;
    std::string s = res;
    if (round % 3 == 0) {  // pure junk
      r.assign(1 + rng() % 400, '\0');
      for (char& ch : r) ch = static_cast<char>(rng() & 0xff);
      s.assign(1 + rng() % 400, '\0');
      for (char& ch : s) ch = static_cast<char>(rng() & 0xff);
    } else {
      for (int m = 0; m < 1 + static_cast<int>(rng() % 5); ++m) {
        std::string& x = (rng() & 1) != 0 ? r : s;
        const std::size_t at = rng() % x.size();
        if ((rng() & 1) != 0) {
          x[at] = static_cast<char>(rng() & 0xff);
        } else {
          x.insert(at, std::string(1 + rng() % 6, static_cast<char>(rng() & 0xff)));
        }
      }
    }
    send_in_chunks(c, true, r, rng);
    send_in_chunks(c, false, s, rng);
    if (c.finish().blocked()) ++blocked;
  }
  // Junk rounds are not HTTP a WAF can vouch for: some must have been blocked.
  SUCCEED() << blocked << " streams blocked";
}

}  // namespace
}  // namespace tosec::svm::waf
