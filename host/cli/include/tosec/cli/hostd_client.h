// The `tosec` CLI as a gRPC client of tosec-hostd (HostControl on <runtime_dir>/hostd.sock).
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>

#include "tosec/v1/hostd.grpc.pb.h"

namespace tosec::cli {

std::string hostd_socket(const std::string& runtime_dir);
std::unique_ptr<tosec::v1::HostControl::Stub> connect_hostd(const std::string& runtime_dir);
// A call context with a deadline (live changes wait for the TOEs: give them time).
std::unique_ptr<grpc::ClientContext> call_context(std::chrono::seconds timeout);
// "INVALID_ARGUMENT: policy \"p\": chain: no chain \"x\"".
std::string describe(const grpc::Status& status);
// CLI exit code of a failed call: 2 for bad input (INVALID_ARGUMENT, NOT_FOUND), 3 when hostd is
// not reachable (UNAVAILABLE), else 1.
int exit_code(const grpc::Status& status);

}  // namespace tosec::cli
