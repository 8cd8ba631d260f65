#include "tosec/cli/hostd_client.h"

#include "tosec/cli/supervisor.h"

namespace tosec::cli {

std::string hostd_socket(const std::string& runtime_dir) {
  return runtime_dir + "/" + kHostdSocketName;
}

std::unique_ptr<tosec::v1::HostControl::Stub> connect_hostd(const std::string& runtime_dir) {
  return tosec::v1::HostControl::NewStub(
      grpc::CreateChannel("unix:" + hostd_socket(runtime_dir), grpc::InsecureChannelCredentials()));
}

std::unique_ptr<grpc::ClientContext> call_context(std::chrono::seconds timeout) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + timeout);
  return ctx;
}

std::string describe(const grpc::Status& status) {
  const char* code = "ERROR";
  switch (status.error_code()) {
    case grpc::StatusCode::INVALID_ARGUMENT:
      code = "INVALID_ARGUMENT";
      break;
    case grpc::StatusCode::NOT_FOUND:
      code = "NOT_FOUND";
      break;
    case grpc::StatusCode::FAILED_PRECONDITION:
      code = "FAILED_PRECONDITION";
      break;
    case grpc::StatusCode::UNAVAILABLE:
      code = "UNAVAILABLE";
      break;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      code = "DEADLINE_EXCEEDED";
      break;
    case grpc::StatusCode::ABORTED:
      code = "ABORTED";
      break;
    default:
      break;
  }
  return std::string(code) + ": " + status.error_message();
}

int exit_code(const grpc::Status& status) {
  switch (status.error_code()) {
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::NOT_FOUND:
      return 2;
    case grpc::StatusCode::UNAVAILABLE:
      return 3;
    default:
      return 1;
  }
}

}  // namespace tosec::cli
