// The av engine's inspector for scan=http: HTTP/1.x message bodies as libclamav objects.
//
// Both directions go through the shared HTTP parser (tosec_svm_http, libhtp): bodies arrive
// de-chunked, and response bodies inflated (gzip/deflate), so a compressed download is scanned
// as the file it is. Each request or response body is one object, scanned whole when the
// parser reports the message complete, i.e. inside the inspect() of the payload that completed
// it: a block stops that last payload (prevention, unlike plain object mode, which decides only
// when the peer answers). Headers are not scanned (the WAF's job).
//
// libhtp is tolerant: it parses almost anything (an SSH banner becomes an HTTP/0.9 request), so
// "parsed" does not mean "HTTP". A direction counts as HTTP once its first request line has an
// upper-case method and version 1.x (response: status 100-599, version 1.x). Until then, and for
// good when that line is not HTTP/1.x or the parser fails (fatal anomaly), the direction's raw
// bytes are window-scanned instead, so nothing on the stream goes unscanned.
#pragma once

#include <array>
#include <memory>

#include "av_shared.h"
#include "direction_scanner.h"
#include "tosec/svm/engines/http_stream.h"
#include "tosec/svm/inspector.h"

namespace tosec::svm::av {

class AvHttpInspector final : public StreamInspector, private http::HttpEvents {
 public:
  AvHttpInspector(std::shared_ptr<const AvShared> shared, std::shared_ptr<ScanScratch> scratch,
                  std::shared_ptr<const http::HttpParserConfig> http_config,
                  const StreamInfo& info);

  Verdict inspect(const Payload& payload) override;
  Verdict finish() override;

 private:
  enum class Protocol : std::uint8_t { kUnknown, kHttp, kOther };

  void on_request_line(std::uint64_t tx, const http::RequestLine& line) override;
  void on_response_line(std::uint64_t tx, const http::ResponseLine& line) override;
  void on_request_headers_end(std::uint64_t tx) override;
  void on_request_body(std::uint64_t tx, std::span<const std::byte> chunk) override;
  void on_request_complete(std::uint64_t tx) override;
  void on_response_headers_end(std::uint64_t tx, std::string_view content_type) override;
  void on_response_body(std::uint64_t tx, std::span<const std::byte> chunk) override;
  void on_response_complete(std::uint64_t tx) override;

  void body(http::Side side, std::span<const std::byte> chunk);
  void complete(http::Side side);

  std::shared_ptr<const AvShared> shared_;
  std::shared_ptr<ScanScratch> scratch_;
  std::array<DirectionScanner, 2> bodies_;  // indexed by http::Side: the body being collected
  std::array<DirectionScanner, 2> raw_;     // indexed by Flow: while not (known to be) HTTP
  std::array<Protocol, 2> protocol_{};      // indexed by Flow, decided by the first line
  Verdict* current_ = nullptr;              // the verdict of the inspect()/finish() running now
  http::HttpStreamParser parser_;           // last: destroyed first, it calls back into us
};

}  // namespace tosec::svm::av
