// gRPC wiring end to end: a HostControl server on a Unix socket with real handlers, and a client
// stub calling it, as the host daemon and the `tosec` CLI will.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>

#include "tosec/v1/hostd.grpc.pb.h"

namespace {

namespace v1 = tosec::v1;

class HostControlImpl final : public v1::HostControl::Service {
 public:
  grpc::Status Status(grpc::ServerContext* /*ctx*/, const v1::StatusRequest* /*req*/,
                      v1::StatusResponse* resp) override {
    resp->set_version(TOSEC_VERSION);
    resp->set_state(v1::PLATFORM_STATE_UP);
    resp->set_mode("process");
    return grpc::Status::OK;
  }

  grpc::Status StreamAlerts(grpc::ServerContext* /*ctx*/, const v1::StreamAlertsRequest* req,
                            grpc::ServerWriter<v1::Alert>* writer) override {
    for (std::uint32_t i = 0; i < req->backlog(); ++i) {
      v1::Alert a;
      a.set_rule_id(1000 + i);
      a.set_guest(req->guest());
      if (!writer->Write(a)) break;
    }
    return grpc::Status::OK;
  }
};

std::chrono::system_clock::time_point deadline() {
  return std::chrono::system_clock::now() + std::chrono::seconds(10);
}

class HostdGrpc : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = "/tmp/tosec-hostd-test-" + std::to_string(::getpid()) + ".sock";
    ::unlink(path_.c_str());
    grpc::ServerBuilder builder;
    builder.AddListeningPort("unix:" + path_, grpc::InsecureServerCredentials());
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr) << "cannot listen on unix:" << path_;
    stub_ = v1::HostControl::NewStub(
        grpc::CreateChannel("unix:" + path_, grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    if (server_) server_->Shutdown();
    ::unlink(path_.c_str());
  }

  std::string path_;
  HostControlImpl service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::HostControl::Stub> stub_;
};

TEST_F(HostdGrpc, StatusReturnsServerVersion) {
  grpc::ClientContext ctx;
  ctx.set_deadline(deadline());
  v1::StatusResponse resp;
  grpc::Status st = stub_->Status(&ctx, v1::StatusRequest{}, &resp);
  ASSERT_TRUE(st.ok()) << st.error_code() << ": " << st.error_message();
  EXPECT_EQ(resp.version(), TOSEC_VERSION);
  EXPECT_EQ(resp.state(), v1::PLATFORM_STATE_UP);
}

TEST_F(HostdGrpc, UnimplementedRpcSaysSo) {
  grpc::ClientContext ctx;
  ctx.set_deadline(deadline());
  v1::Topology topo;
  grpc::Status st = stub_->GetTopology(&ctx, v1::GetTopologyRequest{}, &topo);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNIMPLEMENTED);
}

TEST_F(HostdGrpc, StreamAlertsDeliversBacklog) {
  grpc::ClientContext ctx;
  ctx.set_deadline(deadline());
  v1::StreamAlertsRequest req;
  req.set_backlog(3);
  req.set_guest("web");
  auto reader = stub_->StreamAlerts(&ctx, req);
  v1::Alert a;
  std::uint64_t expect = 1000;
  while (reader->Read(&a)) {
    EXPECT_EQ(a.rule_id(), expect++);
    EXPECT_EQ(a.guest(), "web");
  }
  grpc::Status st = reader->Finish();
  EXPECT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(expect, 1003U);
}

}  // namespace
