// SIGHUP topology reload of a TOE with inspection (docs/tovm.md "Reload"): an in-process worker
// with a real inspection region (ivshmem server thread) and topology files written here; reloads
// are requested the way worker 0 relays a SIGHUP to the other workers (Worker::request_reload).
// What streams do across a reload is tested in svm_runtime_unit_tests (LiveChainChange) and
// with the real binaries in svm.live_reload.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "toe_harness.h"
#include "tosec/v1/control.pb.h"

namespace tosec::tovm::test {
namespace {

tosec::v1::Topology topology(std::uint64_t generation, const std::string& chain_svm,
                             const std::string& policy_chain) {
  tosec::v1::Topology t;
  t.set_generation(generation);
  auto* svm = t.add_svms();
  svm->set_name("ids");
  svm->set_id(1);
  svm->set_engine(tosec::v1::ENGINE_TYPE_IDS);
  auto* c = t.add_chains();
  c->set_name("web");
  c->set_id(1);
  c->add_steps()->set_svm(chain_svm);
  auto* p = t.add_policies();
  p->set_name("all");
  p->set_guest("test");
  p->set_chain(policy_chain);
  return t;
}

void write_file(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp";
  std::ofstream(tmp, std::ios::binary | std::ios::trunc) << bytes;
  ASSERT_EQ(std::rename(tmp.c_str(), path.c_str()), 0);  // atomic, as the host daemon does
}

template <class Pred>
bool wait_for(Pred pred) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!pred()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

class TovmReload : public ::testing::Test {
 protected:
  void SetUp() override {
    topo_ = dir_.file("topology.pb");
    write_file(topo_, topology(5, "ids", "web").SerializeAsString());
    ASSERT_TRUE(inspect_.ok()) << inspect_.error();
    toe_ = std::make_unique<ToeHarness>(small_config(), [&](TovmOptions& o) {
      o.inspect_ivshmem = dir_.file("inspect.sock");
      o.topology = topo_;
    });
    ASSERT_TRUE(toe_->ok()) << toe_->error();
  }
  std::string error_field() {
    const std::string st = toe_->status();
    const auto pos = st.find("\"topology_error\":\"");
    if (pos == std::string::npos) return "<absent>";
    const auto start = pos + 18;
    return st.substr(start, st.find("\",\"metrics\"", start) - start);  // JSON-escaped
  }
  std::int64_t generation() { return toe_->stat("topology_generation"); }

  tosec::test::TempDir dir_;
  tosec::test::ServerThread inspect_{host::IvshmemServerConfig{dir_.file("inspect.sock"), 1},
                                     16 << 20};
  std::string topo_;
  std::unique_ptr<ToeHarness> toe_;
};

TEST_F(TovmReload, GenerationAndErrorInStatus) {
  EXPECT_EQ(generation(), 5);
  EXPECT_EQ(error_field(), "");
  const std::string st = toe_->status();
  EXPECT_NE(st.find("\"svms\":[{\"name\":\"ids\",\"node\":1,\"payloads\":0"), std::string::npos)
      << st;
  EXPECT_NE(st.find("{\"name\":\"inspect.0-1\""), std::string::npos) << st;
  EXPECT_NE(st.find("\"streams\":{\"inspected\":0"), std::string::npos) << st;
}

TEST_F(TovmReload, AcceptedFileTakesItsGeneration) {
  write_file(topo_, topology(6, "ids", "").SerializeAsString());
  toe_->worker().request_reload();
  ASSERT_TRUE(wait_for([&] { return generation() == 6; })) << toe_->status();
  EXPECT_EQ(error_field(), "");
}

TEST_F(TovmReload, RejectedFilesKeepTheOldTopology) {
  struct Bad {
    std::string bytes;
    std::string why;
  };
  const std::vector<Bad> bad = {
      {topology(6, "nope", "web").SerializeAsString(), "names svm \\\"nope\\\""},
      {topology(6, "ids", "missing").SerializeAsString(), "no chain \\\"missing\\\""},
      {"\xff\xff\xff not a topology", "is not a tosec.v1.Topology"},
  };
  for (const auto& b : bad) {
    write_file(topo_, b.bytes);
    toe_->worker().request_reload();
    ASSERT_TRUE(wait_for([&] { return error_field().find(b.why) != std::string::npos; }))
        << "expected " << b.why << " in " << toe_->status();
    EXPECT_EQ(generation(), 5);
  }
  // A missing file is rejected too; a good one afterwards clears the error.
  ASSERT_EQ(std::remove(topo_.c_str()), 0);
  toe_->worker().request_reload();
  ASSERT_TRUE(wait_for([&] { return error_field().find("cannot read") != std::string::npos; }))
      << toe_->status();
  write_file(topo_, topology(7, "ids", "web").SerializeAsString());
  toe_->worker().request_reload();
  ASSERT_TRUE(wait_for([&] { return generation() == 7; })) << toe_->status();
  EXPECT_EQ(error_field(), "");
}

}  // namespace
}  // namespace tosec::tovm::test
