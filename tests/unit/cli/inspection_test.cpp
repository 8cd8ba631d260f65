// Inspection planning (config -> SVM processes + topology), `run --chain`, and alert rendering.
#include "tosec/cli/inspection.h"

#include <gtest/gtest.h>

#include "tosec/cli/alerts.h"
#include "tosec/cli/config.h"

namespace tosec::cli {
namespace {

Config parse(const std::string& text) {
  auto c = parse_config(text, "/etc/tosec/test.toml");
  EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.error().message);
  return c.ok() ? *c : Config{};
}

const char* const kChains = R"(
[[guest]]
name = "web"
[[guest]]
name = "db"
[[svm]]
name = "ids"
engine = "ids"
rules = "rules/my.rules"
workers = 2
options = { window_bytes = 65536, verbose = true }
[[svm]]
name = "waf"
engine = "waf"
mode = "detect"
[[svm]]
name = "av"
engine = "av"
[[svm]]
name = "unused"
engine = "acl"
[[chain]]
name = "web-in"
steps = [["ids"], ["waf", "av"]]
fail = "open"
deadline_ms = 250
[[policy]]
guest = "web"
direction = "in"
chain = "web-in"
port = 80
[[policy]]
guest = "web"
chain = "web-in"
remote = "10.0.0.0/8"
port = "8000-8080"
)";

TEST(InspectionPlan, ConfigFieldsAndRelativeRules) {
  const Config c = parse(kChains);
  ASSERT_EQ(c.svms.size(), 4U);
  EXPECT_EQ(c.svms[0].rules, "/etc/tosec/rules/my.rules");
  EXPECT_EQ(c.svms[0].workers, 2U);
  EXPECT_EQ(c.svms[0].options.at("window_bytes"), "65536");
  EXPECT_EQ(c.svms[0].options.at("verbose"), "true");
  EXPECT_EQ(c.svms[1].mode, "detect");
  EXPECT_EQ(c.chains[0].deadline_ms, 250U);
}

TEST(InspectionPlan, BadSvmFieldsNameTheField) {
  auto bad = parse_config("[[svm]]\nname = \"x\"\nengine = \"ids\"\nmode = \"block\"\n", "b.toml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("b.toml:4:8: svm[0].mode"), std::string::npos)
      << bad.error().message;
  auto bad2 =
      parse_config("[[svm]]\nname = \"x\"\nengine = \"ids\"\noptions = { a = [1] }\n", "b.toml");
  ASSERT_FALSE(bad2.ok());
  EXPECT_NE(bad2.error().message.find("svm[0].options.a"), std::string::npos)
      << bad2.error().message;
}

TEST(InspectionPlan, OnlyTheGuestsChainsAndTheirSvmsInOrder) {
  const Config c = parse(kChains);
  auto plan = plan_inspection(c, "web", "/data");
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  ASSERT_EQ(plan->svms.size(), 3U);  // "unused" is in no chain of web
  EXPECT_EQ(plan->svms[0].svm.name, "ids");
  EXPECT_EQ(plan->svms[0].node, 1U);
  EXPECT_EQ(plan->svms[2].svm.name, "av");
  EXPECT_EQ(plan->svms[2].node, 3U);
  EXPECT_EQ(plan->svms[2].svm.rules, "/data/rules/av");  // engine default
  const auto& t = plan->topology;
  ASSERT_EQ(t.chains_size(), 1);
  EXPECT_EQ(t.chains(0).fail_policy(), tosec::v1::FAIL_POLICY_FAIL_OPEN);
  EXPECT_EQ(t.chains(0).deadline_us(), 250'000U);
  ASSERT_EQ(t.chains(0).steps_size(), 2);
  EXPECT_EQ(t.chains(0).steps(0).svm(), "ids");
  EXPECT_EQ(t.chains(0).steps(1).parallel().svms_size(), 2);
  EXPECT_EQ(t.svms(1).mode(), tosec::v1::INSPECTION_MODE_DETECT);
  EXPECT_EQ(t.svms(0).config().at("rules"), "/etc/tosec/rules/my.rules");
  // policy 1: in, local port 80; policy 2 ("both"): out with remote ports, in with local ports.
  ASSERT_EQ(t.policies_size(), 3);
  EXPECT_EQ(t.policies(0).direction(), tosec::v1::DIRECTION_INCOMING);
  EXPECT_EQ(t.policies(0).local_ports().first(), 80U);
  EXPECT_GT(t.policies(0).priority(), t.policies(1).priority());
  EXPECT_EQ(t.policies(1).direction(), tosec::v1::DIRECTION_OUTGOING);
  EXPECT_EQ(t.policies(1).remote_ports().last(), 8080U);
  EXPECT_EQ(t.policies(1).remote().prefix_len(), 8U);
  EXPECT_EQ(t.policies(2).local_ports().first(), 8000U);
  EXPECT_TRUE(plan_inspection(c, "db", "/data")->empty());
}

TEST(InspectionPlan, ChainFlagAddsEnginesAndAFirstPolicy) {
  Config c = parse(kChains);
  ASSERT_TRUE(apply_chain_option(c, "db", "ids,acl+av", "closed").ok());
  auto plan = plan_inspection(c, "db", "/data");
  ASSERT_TRUE(plan.ok());
  ASSERT_EQ(plan->svms.size(), 3U);
  EXPECT_EQ(plan->svms[0].svm.rules, "/etc/tosec/rules/my.rules");  // the config's "ids"
  EXPECT_EQ(plan->svms[1].svm.name, "acl");
  EXPECT_EQ(plan->svms[1].svm.rules, "/data/rules/acl.rules");
  EXPECT_EQ(plan->topology.chains(0).name(), kChainFlagName);
  EXPECT_EQ(c.policies.front().chain, kChainFlagName);
}

TEST(InspectionPlan, ChainFlagErrorsNameTheStep) {
  Config c = parse(kChains);
  auto s = apply_chain_option(c, "web", "ids,,waf", "closed");
  EXPECT_NE(s.message().find("empty step"), std::string::npos) << s.message();
  s = apply_chain_option(c, "web", "ids,nope", "closed");
  EXPECT_NE(s.message().find("\"nope\" is neither"), std::string::npos) << s.message();
  s = apply_chain_option(c, "web", "ids,ids", "closed");
  EXPECT_NE(s.message().find("twice"), std::string::npos) << s.message();
  s = apply_chain_option(c, "web", "ids", "maybe");
  EXPECT_NE(s.message().find("--fail"), std::string::npos) << s.message();
}

TEST(InspectionPlan, SvmArgv) {
  SvmInstance inst{SvmConfig{"waf", "waf", "/r/waf.conf", "detect", 2, {{"k", "v"}}}, 2};
  InspectionPaths p;
  p.ivshmem_socket = "/run/x/inspect.sock";
  p.alert_log = "/run/x/logs/eve.json";
  const auto argv = svm_argv("/bin/tosec-svm", inst, p);
  const std::string joined = [&] {
    std::string j;
    for (const auto& a : argv) j += a + " ";
    return j;
  }();
  EXPECT_NE(joined.find("--engine waf --rules /r/waf.conf --name waf"), std::string::npos);
  EXPECT_NE(joined.find("--node 2 --ivshmem /run/x/inspect.sock"), std::string::npos);
  EXPECT_NE(joined.find("--mode detect --alert-log /run/x/logs/eve.json --option k=v"),
            std::string::npos);
}

TEST(Alerts, RenderLine) {
  const std::string line =
      R"({"timestamp":"2026-11-22T06:00:00.000001Z","event_type":"alert","guest":"web",)"
      R"("stream_id":7,"src_ip":"10.0.0.2","src_port":51000,"dest_ip":"10.0.0.1",)"
      R"("dest_port":80,"proto":"TCP","direction":"to_server","svm":"waf","engine":"waf",)"
      R"("alert":{"action":"blocked","signature_id":"942100","signature":"SQL Injection",)"
      R"("category":"attack-sqli"}})";
  EXPECT_EQ(render_alert_line(line),
            "2026-11-22T06:00:00.000001Z BLOCKED web waf 942100 \"SQL Injection\" "
            "10.0.0.2:51000 -> 10.0.0.1:80 to_server");
  EXPECT_EQ(render_alert_line("not json"), "(unparsed) not json");
}

}  // namespace
}  // namespace tosec::cli
