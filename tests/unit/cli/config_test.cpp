#include "tosec/cli/config.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

namespace tosec::cli {
namespace {

std::string parse_error(const std::string& text) {
  auto c = parse_config(text, "t.toml");
  EXPECT_FALSE(c.ok()) << "expected an error for:\n" << text;
  return c.ok() ? "" : c.error().message;
}

TEST(CliConfig, EveryExampleParses) {
  const std::filesystem::path dir = std::filesystem::path(TOSEC_SOURCE_DIR) / "examples/config";
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".toml" || e.path().filename() == "bad.toml") continue;
    auto c = load_config(e.path().string());
    EXPECT_TRUE(c.ok()) << e.path() << ": " << (c.ok() ? "" : c.error().message);
    ++n;
  }
  EXPECT_GE(n, 3);
}

TEST(CliConfig, BadExampleNamesFileLineColumnAndField) {
  const std::string path = std::string(TOSEC_SOURCE_DIR) + "/examples/config/bad.toml";
  auto c = load_config(path);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().message, path + ":10:9: guest[1].lanes: must be in [1, 256], got 0");
}

TEST(CliConfig, DefaultsMatchGuestChannelConfig) {
  auto c = parse_config("[[guest]]\nname = \"g0\"\n", "t.toml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  const rpc::GuestChannelConfig d;
  const auto& g = c->guests.at(0).channel;
  EXPECT_EQ(g.lanes, d.lanes);
  EXPECT_EQ(g.ring_slots, d.ring_slots);
  EXPECT_EQ(g.max_sockets, d.max_sockets);
  EXPECT_EQ(g.socket_rx_entries, d.socket_rx_entries);
  EXPECT_EQ(g.chunk_size, d.chunk_size);
  EXPECT_EQ(g.tx_chunks_per_lane, d.tx_chunks_per_lane);
  EXPECT_EQ(g.rx_chunks, d.rx_chunks);
  EXPECT_EQ(c->platform.runtime_dir, "/run/tosec");
  EXPECT_EQ(c->tovm.workers, 1U);
  EXPECT_EQ(c->tovm.spin_ns, 50'000U);
  EXPECT_EQ(c->tovm.log_level, "error");
  EXPECT_EQ(c->tovm.cpus, "");  // not pinned
}

TEST(CliConfig, EmptyFileAndBuiltInDefaultsHaveOneDefaultGuest) {
  auto c = parse_config("", "t.toml");
  ASSERT_TRUE(c.ok());
  ASSERT_EQ(c->guests.size(), 1U);
  EXPECT_EQ(c->guests[0].name, "default");
  const Config d = default_config();
  ASSERT_EQ(d.guests.size(), 1U);
  EXPECT_EQ(d.guests[0].name, "default");
  EXPECT_EQ(d.platform.runtime_dir, "/run/tosec");
}

TEST(CliConfig, ReadsEveryField) {
  auto c = parse_config(R"(
[platform]
runtime_dir = "/tmp/x/"
[tovm]
workers = 3
cpus = "1,4-5"
spin_ns = 2000
log_level = "debug"
[[guest]]
name = "a"
lanes = 4
max_sockets = 100
ring_slots = 64
socket_rx_entries = 16
chunk_size = 4096
tx_chunks_per_lane = 8
rx_chunks = 32
exclude = ["10.0.0.0/8", "::1", "port:53"]
spin_ns = 150000
)",
                        "t.toml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->platform.runtime_dir, "/tmp/x");  // trailing slash dropped
  EXPECT_EQ(c->tovm.workers, 3U);
  EXPECT_EQ(c->tovm.cpus, "1,4-5");
  EXPECT_EQ(c->tovm.spin_ns, 2000U);
  EXPECT_EQ(c->tovm.log_level, "debug");
  const auto& g = c->guests.at(0);
  EXPECT_EQ(g.name, "a");
  EXPECT_EQ(g.channel.lanes, 4U);
  EXPECT_EQ(g.channel.max_sockets, 100U);
  EXPECT_EQ(g.channel.ring_slots, 64U);
  EXPECT_EQ(g.channel.socket_rx_entries, 16U);
  EXPECT_EQ(g.channel.chunk_size, 4096U);
  EXPECT_EQ(g.channel.tx_chunks_per_lane, 8U);
  EXPECT_EQ(g.channel.rx_chunks, 32U);
  EXPECT_EQ(g.exclude, (std::vector<std::string>{"10.0.0.0/8", "::1", "port:53"}));
  EXPECT_EQ(g.spin_ns, 150000);
}

TEST(CliConfig, RangeErrorsNameLineColumnAndField) {
  EXPECT_EQ(parse_error("[[guest]]\nname = \"g\"\nspin_ns = -1\n"),
            "t.toml:3:11: guest[0].spin_ns: must be in [0, 1000000000], got -1");
  EXPECT_EQ(parse_error("[[guest]]\nname = \"g\"\nlanes = 0\n"),
            "t.toml:3:9: guest[0].lanes: must be in [1, 256], got 0");
  EXPECT_EQ(parse_error("[[guest]]\nname = \"g\"\nlanes = 257\n"),
            "t.toml:3:9: guest[0].lanes: must be in [1, 256], got 257");
  EXPECT_EQ(parse_error("[[guest]]\nname = \"g\"\nmax_sockets = -1\n"),
            "t.toml:3:15: guest[0].max_sockets: must be in [1, 1000000], got -1");
  EXPECT_EQ(parse_error("[tovm]\nworkers = 0\n"),
            "t.toml:2:11: tovm.workers: must be in [1, 64], got 0");
  EXPECT_EQ(parse_error("[tovm]\ncpus = \"1-x\"\n"),
            "t.toml:2:8: tovm.cpus: 'x' in CPU list '1-x' is not a CPU number");
  EXPECT_EQ(parse_error("[tovm]\ncpus = \"3-1\"\n"),
            "t.toml:2:8: tovm.cpus: range '3-1' in CPU list '3-1' ends below its start");
  ASSERT_TRUE(parse_config("[tovm]\ncpus = \"\"\n", "t.toml").ok());  // the default, not pinned
  EXPECT_EQ(parse_error("[tovm]\ncpus = 1\n"),
            "t.toml:2:8: tovm.cpus: expected a string, got an integer");
}

TEST(CliConfig, PowerOfTwoAndMultipleErrors) {
  EXPECT_EQ(parse_error("[[guest]]\nname = \"g\"\nring_slots = 100\n"),
            "t.toml:3:14: guest[0].ring_slots: must be a power of two in [8, 65536], got 100");
  EXPECT_EQ(parse_error("[[guest]]\nname = \"g\"\nsocket_rx_entries = 2\n"),
            "t.toml:3:21: guest[0].socket_rx_entries: must be a power of two in [4, 4096], got 2");
  EXPECT_EQ(parse_error("[[guest]]\nname = \"g\"\nchunk_size = 1000\n"),
            "t.toml:3:14: guest[0].chunk_size: must be a multiple of 64, got 1000");
}

TEST(CliConfig, TxChunksBoundDependsOnLanes) {
  EXPECT_TRUE(
      parse_config(
          "[[guest]]\nname = \"g\"\nlanes = 256\nchunk_size = 64\ntx_chunks_per_lane = 65536\n",
          "t.toml")
          .ok());
  EXPECT_EQ(parse_error("[[guest]]\nname = \"g\"\nlanes = 256\ntx_chunks_per_lane = 65537\n"),
            "t.toml:4:22: guest[0].tx_chunks_per_lane: must be in [1, 65536], got 65537");
}

TEST(CliConfig, RegionSizeIsBounded) {
  EXPECT_EQ(parse_error("[[guest]]\nname = \"g\"\nchunk_size = 16777216\nrx_chunks = 8192\n"),
            "t.toml:1:1: guest[0]: the guest region would be 262144 MiB, more than the 64 GiB "
            "limit; lower rx_chunks, tx_chunks_per_lane, lanes, chunk_size or max_sockets");
}

TEST(CliConfig, TypeErrors) {
  EXPECT_EQ(parse_error("[[guest]]\nname = \"g\"\nlanes = \"4\"\n"),
            "t.toml:3:9: guest[0].lanes: expected an integer, got a string");
  EXPECT_EQ(parse_error("[[guest]]\nname = 5\n"),
            "t.toml:2:8: guest[0].name: expected a string, got an integer");
  EXPECT_EQ(parse_error("[[guest]]\nname = \"g\"\nexclude = \"port:53\"\n"),
            "t.toml:3:11: guest[0].exclude: expected an array of strings, got a string");
  EXPECT_EQ(parse_error("[guest]\nname = \"g\"\n"),
            "t.toml:1:1: guest: expected an array of tables ([[guest]]), got a table");
  EXPECT_EQ(parse_error("platform = 3\n"),
            "t.toml:1:12: platform: expected a table ([platform]), got an integer");
}

TEST(CliConfig, UnknownKeysAreErrors) {
  EXPECT_EQ(parse_error("[[guest]]\nname = \"g\"\nlane = 4\n"),
            "t.toml:3:1: guest[0].lane: unknown key (did you mean 'lanes'?)");
  EXPECT_EQ(parse_error("[tovm]\nworkerz = 2\n"),
            "t.toml:2:1: tovm.workerz: unknown key (did you mean 'workers'?)");
  const std::string top = parse_error("[platfrom]\nruntime_dir = \"/x\"\n");
  EXPECT_EQ(top, "t.toml:1:2: platfrom: unknown key (did you mean 'platform'?)");
  const std::string far = parse_error("colour = 1\n");
  EXPECT_NE(far.find("t.toml:1:1: colour: unknown key (known keys: platform host tovm guest"),
            std::string::npos)
      << far;
}

TEST(CliConfig, GuestNames) {
  EXPECT_EQ(parse_error("[[guest]]\nlanes = 2\n"),
            "t.toml:1:1: guest[0]: missing required key 'name'");
  EXPECT_EQ(parse_error("[[guest]]\nname = \"a/b\"\n"),
            "t.toml:2:8: guest[0].name: may only hold letters, digits, '_', '-' and '.', got "
            "\"a/b\"");
  EXPECT_EQ(parse_error("[[guest]]\nname = \".x\"\n"),
            "t.toml:2:8: guest[0].name: must start with a letter or digit, got \".x\"");
  EXPECT_EQ(parse_error("[[guest]]\nname = \"g\"\n[[guest]]\nname = \"g\"\n"),
            "t.toml:4:8: guest[1].name: duplicate guest name \"g\"");
}

TEST(CliConfig, ExcludeEntries) {
  EXPECT_EQ(parse_error("[[guest]]\nname = \"g\"\nexclude = [\"127.0.0.0/8\", \"port:0\"]\n"),
            "t.toml:3:27: guest[0].exclude[1]: \"port:0\": port must be in [1, 65535]");
  EXPECT_EQ(parse_error("[[guest]]\nname = \"g\"\nexclude = [\"10.0.0.0/33\"]\n"),
            "t.toml:3:12: guest[0].exclude[0]: \"10.0.0.0/33\": prefix length must be in [0, 32]");
  EXPECT_NE(parse_error("[[guest]]\nname = \"g\"\nexclude = [\"example.com\"]\n")
                .find("is not an IPv4/IPv6 address or CIDR"),
            std::string::npos);
  EXPECT_TRUE(check_exclude_entry("::/0").ok());
  EXPECT_TRUE(check_exclude_entry("fe80::1/64").ok());
  EXPECT_FALSE(check_exclude_entry("::1/129").ok());
  EXPECT_FALSE(check_exclude_entry("port:65536").ok());
  EXPECT_FALSE(check_exclude_entry("port:x").ok());
  auto list = parse_exclude_list(" 127.0.0.0/8 ,port:53,,::1 ");
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(*list, (std::vector<std::string>{"127.0.0.0/8", "port:53", "::1"}));
  EXPECT_FALSE(parse_exclude_list("127.0.0.0/8,nonsense").ok());
}

TEST(CliConfig, PlatformAndTovmValues) {
  EXPECT_EQ(parse_error("[platform]\nruntime_dir = \"run/tosec\"\n"),
            "t.toml:2:15: platform.runtime_dir: must be an absolute path, got \"run/tosec\"");
  EXPECT_NE(parse_error("[platform]\nruntime_dir = \"/" + std::string(80, 'x') + "\"\n")
                .find("must be at most 52 characters"),
            std::string::npos);
  EXPECT_EQ(parse_error("[tovm]\nlog_level = \"loud\"\n"),
            "t.toml:2:13: tovm.log_level: must be one of \"error\", \"info\", "
            "\"debug\", got \"loud\"");
}

TEST(CliConfig, TomlSyntaxErrorsHavePositions) {
  const std::string e = parse_error("[[guest]]\nname = \"g\nlanes = 2\n");
  EXPECT_TRUE(e.starts_with("t.toml:2:")) << e;
}

TEST(CliConfig, MissingFileIsAClearError) {
  auto c = load_config("/nonexistent/tosec.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message.find("cannot read config /nonexistent/tosec.toml"),
            std::string::npos);
}

TEST(CliConfig, SvmChainPolicy) {
  const std::string svms =
      "[[svm]]\nname = \"ids\"\nengine = \"ids\"\n"
      "[[svm]]\nname = \"waf\"\nengine = \"waf\"\n";
  auto ok = parse_config("[[guest]]\nname = \"g\"\n" + svms +
                             "[[chain]]\nname = \"c\"\nsteps = [[\"ids\"], [\"waf\"]]\n"
                             "[[policy]]\nguest = \"g\"\nchain = \"c\"\nport = 80\n",
                         "t.toml");
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok->chains.at(0).steps.size(), 2U);
  EXPECT_EQ(ok->chains.at(0).fail, "closed");
  EXPECT_EQ(ok->policies.at(0).port, "80");
  EXPECT_EQ(ok->policies.at(0).direction, "both");

  EXPECT_EQ(parse_error("[[svm]]\nname = \"x\"\nengine = \"firewall\"\n"),
            "t.toml:3:10: svm[0].engine: must be one of \"ids\", \"waf\", \"av\", \"acl\", got "
            "\"firewall\"");
  EXPECT_EQ(parse_error("[[svm]]\nname = \"x\"\n"),
            "t.toml:1:1: svm[0]: missing required key 'engine'");
  EXPECT_EQ(parse_error(svms + "[[chain]]\nname = \"c\"\nsteps = [[\"ids\"], [\"waf\", \"av\"]]\n"),
            "t.toml:9:27: chain[0].steps[1][1]: no [[svm]] named \"av\"");
  EXPECT_EQ(parse_error(svms + "[[chain]]\nname = \"c\"\nsteps = [\"ids\", \"ids\"]\n"),
            "t.toml:9:17: chain[0].steps[1]: svm \"ids\" appears twice in the chain");
  EXPECT_EQ(parse_error(svms + "[[chain]]\nname = \"c\"\nsteps = []\n"),
            "t.toml:9:9: chain[0].steps: expected a non-empty array of steps (like [[\"ids\"], "
            "[\"waf\", \"av\"]])");
  EXPECT_EQ(parse_error(svms + "[[chain]]\nname = \"c\"\nsteps = [\"ids\"]\nfail = \"maybe\"\n"),
            "t.toml:10:8: chain[0].fail: must be one of \"closed\", \"open\", got \"maybe\"");
  const std::string chain = svms + "[[chain]]\nname = \"c\"\nsteps = [\"ids\"]\n";
  EXPECT_EQ(parse_error(chain + "[[policy]]\nguest = \"nope\"\nchain = \"c\"\n"),
            "t.toml:11:9: policy[0].guest: no [[guest]] named \"nope\"");
  EXPECT_EQ(parse_error(chain + "[[policy]]\nguest = \"default\"\nchain = \"d\"\n"),
            "t.toml:12:9: policy[0].chain: no [[chain]] named \"d\"");
  EXPECT_EQ(
      parse_error(chain + "[[policy]]\nguest = \"default\"\nchain = \"c\"\nport = \"90-80\"\n"),
      "t.toml:13:8: policy[0].port: \"90-80\" is not a port or port range in [1, 65535] (like 80, "
      "8000-8080)");
  EXPECT_EQ(
      parse_error(chain + "[[policy]]\nguest = \"default\"\nchain = \"c\"\ndirection = \"up\"\n"),
      "t.toml:13:13: policy[0].direction: must be one of \"out\", \"in\", \"both\", got "
      "\"up\"");
  EXPECT_NE(parse_error(chain + "[[policy]]\nguest = \"default\"\nchain = \"c\"\nremote = \"x\"\n")
                .find("t.toml:13:10: policy[0].remote:"),
            std::string::npos);
  EXPECT_EQ(parse_error(chain + "[[policy]]\nguest = \"default\"\nchain = \"c\"\nlocal_port = 1\n"),
            "t.toml:13:1: policy[0].local_port: unknown key (known keys: name guest direction "
            "chain protocol remote local port)");
}

TEST(CliConfig, PolicyNamesAndHostMetrics) {
  auto c = parse_config(
      "[host]\nmetrics_listen = \"127.0.0.1:9464\"\n[[svm]]\nname = \"ids\"\nengine = "
      "\"ids\"\n[[chain]]\nname = \"c\"\nsteps = [\"ids\"]\n[[policy]]\nguest = "
      "\"default\"\nchain = \"c\"\n[[policy]]\nname = \"mine\"\nguest = \"default\"\nchain = "
      "\"c\"\n",
      "t.toml");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->host.metrics_listen, "127.0.0.1:9464");
  ASSERT_EQ(c->policies.size(), 2U);
  EXPECT_EQ(c->policies[0].name, "policy-1");
  EXPECT_EQ(c->policies[1].name, "mine");
  EXPECT_EQ(parse_error("[host]\nmetrics_listen = \"localhost:80\"\n"),
            "t.toml:2:18: host.metrics_listen: \"localhost:80\" is not an IPv4 address and port "
            "(like 127.0.0.1:9464; port 0 picks a free one)");
  EXPECT_TRUE(default_config().host.metrics_listen.empty());
}

}  // namespace
}  // namespace tosec::cli
