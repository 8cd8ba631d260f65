#include "av_http_inspector.h"

namespace tosec::svm::av {

AvHttpInspector::AvHttpInspector(std::shared_ptr<const AvShared> shared,
                                 std::shared_ptr<ScanScratch> scratch,
                                 std::shared_ptr<const http::HttpParserConfig> http_config,
                                 const StreamInfo& info)
    : shared_(std::move(shared)),
      scratch_(std::move(scratch)),
      bodies_{DirectionScanner(*shared_, *scratch_), DirectionScanner(*shared_, *scratch_)},
      raw_{DirectionScanner(*shared_, *scratch_), DirectionScanner(*shared_, *scratch_)},
      parser_(std::move(http_config), *this, info) {}

namespace {

bool is_http1_version(std::string_view v) { return v == "1.0" || v == "1.1"; }

bool is_method(std::string_view m) {
  if (m.empty() || m.size() > 24) return false;
  for (char c : m) {
    if (c < 'A' || c > 'Z') return false;
  }
  return true;
}

}  // namespace

Verdict AvHttpInspector::inspect(const Payload& payload) {
  Verdict v;
  const auto flow = static_cast<std::size_t>(payload.flow);
  if (protocol_[flow] == Protocol::kOther || parser_.failed(payload.flow)) {
    raw_[flow].scan_window(payload.bytes, v);
    return v;
  }
  current_ = &v;
  parser_.feed(payload.flow, payload.bytes);
  current_ = nullptr;
  // Not (yet) known to be HTTP, or it just turned out not to be: the body events do not cover
  // these bytes, so check them raw.
  if (!v.blocked() && (protocol_[flow] != Protocol::kHttp || parser_.failed(payload.flow))) {
    raw_[flow].scan_window(payload.bytes, v);
  }
  return v;
}

void AvHttpInspector::on_request_line(std::uint64_t, const http::RequestLine& line) {
  auto& p = protocol_[static_cast<std::size_t>(Flow::kToServer)];
  if (p != Protocol::kUnknown) return;
  p = is_method(line.method) && is_http1_version(line.version) ? Protocol::kHttp : Protocol::kOther;
}

void AvHttpInspector::on_response_line(std::uint64_t, const http::ResponseLine& line) {
  auto& p = protocol_[static_cast<std::size_t>(Flow::kToClient)];
  if (p != Protocol::kUnknown) return;
  p = line.status >= 100 && line.status <= 599 && is_http1_version(line.version) ? Protocol::kHttp
                                                                                 : Protocol::kOther;
}

Verdict AvHttpInspector::finish() {
  Verdict v;
  current_ = &v;
  parser_.close();  // completes a response delimited by the connection's end
  for (std::size_t side = 0; side < 2 && !v.blocked(); ++side) {
    complete(static_cast<http::Side>(side));  // a body cut short by the close
  }
  current_ = nullptr;
  return v;
}

void AvHttpInspector::body(http::Side side, std::span<const std::byte> chunk) {
  if (current_ == nullptr || current_->blocked()) return;
  bodies_[static_cast<std::size_t>(side)].add_to_object(chunk, *current_);
}

void AvHttpInspector::complete(http::Side side) {
  if (current_ == nullptr || current_->blocked()) return;
  DirectionScanner& d = bodies_[static_cast<std::size_t>(side)];
  if (d.has_object()) d.complete_object(*current_);
}

// A new message starts with an empty object (a previous one was completed or had no body).
void AvHttpInspector::on_request_headers_end(std::uint64_t) { complete(http::Side::kRequest); }
void AvHttpInspector::on_request_body(std::uint64_t, std::span<const std::byte> chunk) {
  body(http::Side::kRequest, chunk);
}
void AvHttpInspector::on_request_complete(std::uint64_t) { complete(http::Side::kRequest); }
void AvHttpInspector::on_response_headers_end(std::uint64_t, std::string_view) {
  complete(http::Side::kResponse);
}
void AvHttpInspector::on_response_body(std::uint64_t, std::span<const std::byte> chunk) {
  body(http::Side::kResponse, chunk);
}
void AvHttpInspector::on_response_complete(std::uint64_t) { complete(http::Side::kResponse); }

}  // namespace tosec::svm::av
