// InspectionLink: the TOE's connection to its inspection region (docs/svm.md).
//
// Owns the ivshmem client of the inspection region, the InspectionPlane (TOE side of the mesh),
// the chain table and the policies of the topology file the CLI wrote, and the alert log for the
// plane's own lines (fail-open bypasses). The GuestSession asks it, per new connection, whether
// a chain inspects the stream, then submits payloads and receives delivered or blocked ones in
// poll(). Single-threaded: the guest's worker calls everything.
//
// Live changes (docs/tovm.md, "Reload"): reload() re-reads the topology file; a file that parses
// and validates replaces the policies and chains for streams opened afterwards (open streams keep
// the chain definition they were opened with); a rejected one changes nothing and is kept in
// last_reload_error(). The SVMs of the mesh are fixed when the region is formatted: a chain
// naming an SVM the mesh does not have is rejected (restart the TOE to add SVMs).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "tosec/rpc/ivshmem_client.h"
#include "tosec/rpc/status.h"
#include "tosec/svm/alert_log.h"
#include "tosec/svm/inspection_plane.h"
#include "tosec/tovm/policy_matcher.h"

namespace tosec::tovm {

struct InspectionLinkOptions {
  std::string ivshmem_socket;  // --inspect-ivshmem
  std::string topology_file;   // --topology
  std::string alert_log;       // --alert-log (may be empty: no bypass lines)
  std::string guest;
};

class InspectionLink {
 public:
  static rpc::Result<std::unique_ptr<InspectionLink>> create(const InspectionLinkOptions& opts);

  int doorbell_fd() { return client_.doorbells().own_fd(0); }
  int ivshmem_fd() const { return client_.fd(); }
  // Peers joining/leaving the inspection region (an SVM that dies leaves). Error: the server
  // is gone, which the TOE reports (inspection can no longer work).
  rpc::Status on_ivshmem_event() { return client_.process_events().status(); }

  // A new connection: its stream id if a policy selects a chain (stream_id is filled in), or
  // nullopt (not inspected). EHOSTUNREACH: the chain is down under fail-closed (refuse it).
  rpc::Result<std::optional<std::uint64_t>> open(svm::StreamInfo& info);
  rpc::Result<std::uint64_t> submit(std::uint64_t stream, svm::Direction dir,
                                    std::span<const std::byte> bytes) {
    return plane_->submit(stream, dir, bytes);
  }
  rpc::Status close(std::uint64_t stream) { return plane_->close_stream(stream); }
  std::size_t poll(const svm::PlaneCallbacks& cb) { return plane_->poll(cb); }
  bool prepare_sleep() { return plane_->prepare_sleep(); }
  void after_wake() { plane_->after_wake(); }
  bool has_work() { return plane_->has_work(); }
  int max_sleep_ms() const { return plane_->max_sleep_ms(); }
  std::uint32_t chunk_size() const { return chunk_size_; }
  svm::PlaneStats stats() const { return plane_->stats(); }
  std::string status_json() const;

  // Re-reads the topology file (SIGHUP). Error: the file was rejected, the old one stays.
  rpc::Status reload();
  std::uint64_t generation() const { return generation_; }
  const std::string& last_reload_error() const { return reload_error_; }
  // "svms":[...] and the mesh rings for the status JSON's "metrics" object.
  std::string svms_json() const;
  void append_rings_json(std::string& out, bool& first);

 private:
  InspectionLink() = default;
  rpc::IvshmemClient client_{{.vectors = 1}};
  std::unique_ptr<svm::AlertLog> alerts_;
  std::unique_ptr<svm::InspectionPlane> plane_;
  // Validates `topo` against the mesh and, if it passes, makes it the topology in force.
  rpc::Status apply(const tosec::v1::Topology& topo);

  InspectionLinkOptions opts_;
  std::optional<PolicyMatcher> policies_;
  std::vector<svm::SvmNode> mesh_;        // the SVMs the region was formatted for
  std::vector<std::uint32_t> chain_ids_;  // chains in the plane (removed when a reload drops them)
  std::uint64_t generation_ = 0;
  std::string reload_error_;
  std::uint64_t next_stream_ = 1;
  std::uint32_t chunk_size_ = 0;
};

}  // namespace tosec::tovm
