// HostControl over a real gRPC Unix socket, with a supervisor that started nothing: the error
// codes and messages of live changes, the generation they bump, Status and GetTopology.
#include "tosec/hostd/service.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <memory>

namespace {

namespace v1 = tosec::v1;

tosec::cli::Config config() {
  auto c = tosec::cli::parse_config(R"(
[platform]
runtime_dir = "/nonexistent/tosec-hostd-test"
[[guest]]
name = "web"
[[svm]]
name = "ids"
engine = "ids"
rules = "/nonexistent/ids.rules"
[[chain]]
name = "out"
steps = ["ids"]
)",
                                    "test.toml");
  EXPECT_TRUE(c) << c.error().message;
  return *c;
}

class HostdService : public ::testing::Test {
 protected:
  void SetUp() override {
    cfg_ = config();
    sup_ = std::make_unique<tosec::hostd::Supervisor>(
        cfg_, tosec::cli::Binaries{"/nonexistent/s", "/nonexistent/t", "/nonexistent/v"});
    service_ = std::make_unique<tosec::hostd::HostControlService>(*sup_, cfg_, "/nonexistent");
    path_ = "/tmp/tosec-hostd-service-test-" + std::to_string(::getpid()) + ".sock";
    ::unlink(path_.c_str());
    grpc::ServerBuilder b;
    b.AddListeningPort("unix:" + path_, grpc::InsecureServerCredentials());
    b.RegisterService(service_.get());
    server_ = b.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = v1::HostControl::NewStub(
        grpc::CreateChannel("unix:" + path_, grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    if (server_) server_->Shutdown();
    ::unlink(path_.c_str());
  }
  static std::unique_ptr<grpc::ClientContext> ctx() {
    auto c = std::make_unique<grpc::ClientContext>();
    c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    return c;
  }

  tosec::cli::Config cfg_;
  std::unique_ptr<tosec::hostd::Supervisor> sup_;
  std::unique_ptr<tosec::hostd::HostControlService> service_;
  std::string path_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::HostControl::Stub> stub_;
};

TEST_F(HostdService, StatusListsRolesAndGeneration) {
  v1::StatusResponse r;
  ASSERT_TRUE(stub_->Status(ctx().get(), {}, &r).ok());
  EXPECT_EQ(r.topology_generation(), 1U);
  EXPECT_EQ(r.mode(), "process");
  ASSERT_GE(r.roles_size(), 2);
  EXPECT_EQ(r.roles(0).name(), "tovm");
  EXPECT_EQ(r.roles(0).state(), "stopped");
}

TEST_F(HostdService, ChangesBumpTheGenerationAndErrorsAreCoded) {
  v1::SetChainRequest sc;
  sc.mutable_chain()->set_name("out2");
  sc.mutable_chain()->add_steps()->set_svm("nosuch");
  v1::SetChainResponse scr;
  grpc::Status st = stub_->SetChain(ctx().get(), sc, &scr);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("no svm \"nosuch\""), std::string::npos);

  sc.mutable_chain()->mutable_steps(0)->set_svm("ids");
  st = stub_->SetChain(ctx().get(), sc, &scr);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(scr.generation(), 2U);

  v1::RemovePolicyRequest rp;
  rp.set_name("nope");
  v1::RemovePolicyResponse rpr;
  st = stub_->RemovePolicy(ctx().get(), rp, &rpr);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);

  // web had no chain at start: no inspection region, so no chain live.
  v1::AddPolicyRequest ap;
  ap.mutable_policy()->set_name("p");
  ap.mutable_policy()->set_guest("web");
  ap.mutable_policy()->set_chain("out2");
  v1::AddPolicyResponse apr;
  st = stub_->AddPolicy(ctx().get(), ap, &apr);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(st.error_message().find("no inspection region"), std::string::npos);

  v1::Topology t;
  ASSERT_TRUE(stub_->GetTopology(ctx().get(), {}, &t).ok());
  EXPECT_EQ(t.generation(), 2U);
  EXPECT_EQ(t.chains_size(), 2);
  EXPECT_EQ(t.policies_size(), 0);

  // dry_run validates without applying.
  v1::ApplyTopologyRequest at;
  *at.mutable_topology() = t;
  at.mutable_topology()->clear_chains();
  at.set_dry_run(true);
  v1::ApplyTopologyResponse atr;
  ASSERT_TRUE(stub_->ApplyTopology(ctx().get(), at, &atr).ok());
  EXPECT_EQ(atr.generation(), 2U);
  ASSERT_TRUE(stub_->GetTopology(ctx().get(), {}, &t).ok());
  EXPECT_EQ(t.chains_size(), 2);
}

TEST_F(HostdService, GuestStatusReportsUnreachableToes) {
  v1::GetGuestStatusResponse r;
  ASSERT_TRUE(stub_->GetGuestStatus(ctx().get(), {}, &r).ok());
  EXPECT_EQ(r.runtime_dir(), "/nonexistent/tosec-hostd-test");
  ASSERT_EQ(r.guests_size(), 1);
  EXPECT_EQ(r.guests(0).guest(), "web");
  EXPECT_TRUE(r.guests(0).json().empty());
  EXPECT_NE(r.guests(0).error().find("not reachable"), std::string::npos);
}

}  // namespace
