// WafStreamInspector: one TCP connection through libhtp into ModSecurity transactions.
//
// The HTTP parser calls back synchronously from inside inspect(), so the phase that blocks runs
// while the payload that completed it is being inspected: that inspect() returns the verdict and
// the TOE holds back exactly those bytes.
//
// Phases per HTTP transaction (one modsecurity::Transaction each, created at its request line):
//   request line      processConnection + processURI
//   request headers   addRequestHeader..., processRequestHeaders          (phase 1)
//   request complete  appendRequestBody... (as chunks come), processRequestBody (phase 2, always:
//                     CRS scores query-string attacks and blocks in phase 2, even for a GET)
//   response headers  addResponseHeader..., processResponseHeaders         (phase 3)
//   response complete appendResponseBody..., processResponseBody, processLogging (phases 4, 5)
// The intervention is checked after each step. Pipelined requests queue up in order; libhtp
// pairs each response with its request.
#pragma once

#include <modsecurity/transaction.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>

#include "tosec/svm/engines/http_stream.h"
#include "tosec/svm/inspector.h"
#include "waf_engine.h"

namespace tosec::svm::waf {

class WafStreamInspector final : public StreamInspector, private http::HttpEvents {
 public:
  WafStreamInspector(const WafEngine& engine, const StreamInfo& info);
  ~WafStreamInspector() override;

  Verdict inspect(const Payload& payload) override;
  Verdict finish() override;

 private:
  struct HttpTx {
    std::uint64_t index = 0;
    std::unique_ptr<modsecurity::Transaction> t;
    bool request_headers_done = false;
    bool request_done = false;
    bool interim_response = false;  // a 1xx is being parsed: its headers are not the response's
    bool response_headers_done = false;
    int status = 0;
    std::string response_protocol;  // "HTTP 1.1", as ModSecurity wants it
    std::size_t messages_seen = 0;  // m_rulesMessages already judged (detect mode)
  };

  // http::HttpEvents
  void on_request_line(std::uint64_t tx, const http::RequestLine& line) override;
  void on_request_header(std::uint64_t tx, std::string_view name, std::string_view value) override;
  void on_request_headers_end(std::uint64_t tx) override;
  void on_request_body(std::uint64_t tx, std::span<const std::byte> chunk) override;
  void on_request_complete(std::uint64_t tx) override;
  void on_response_line(std::uint64_t tx, const http::ResponseLine& line) override;
  void on_response_header(std::uint64_t tx, std::string_view name, std::string_view value) override;
  void on_response_headers_end(std::uint64_t tx, std::string_view content_type) override;
  void on_response_body(std::uint64_t tx, std::span<const std::byte> chunk) override;
  void on_response_complete(std::uint64_t tx) override;
  void on_anomaly(const http::Anomaly& anomaly) override;

  // The in-flight transaction with libhtp's index `tx`, or nullptr (already finished, or the
  // stream is blocked).
  HttpTx* find(std::uint64_t tx);
  HttpTx* start_tx(std::uint64_t tx, std::string_view uri, std::string_view method,
                   std::string_view version);
  // Runs the request phases that did not run yet (a response or the end of the stream came
  // before the request was complete).
  void complete_request(HttpTx& tx);
  void complete_response(HttpTx& tx);
  void drop(std::uint64_t tx);
  // After each ModSecurity step: turns an intervention (or, in detect mode, a disruptive match)
  // into the verdict. Returns false once the stream is blocked.
  bool judge(HttpTx& tx);
  void block_with(Action action, std::string rule_id, std::string message);

  const WafEngine& engine_;
  const bool detect_only_;
  std::string client_addr_;
  std::string server_addr_;
  int client_port_ = 0;
  int server_port_ = 0;
  std::deque<HttpTx> txs_;
  std::string scratch_[3];  // NUL-terminated copies for ModSecurity's C-string calls
  Verdict verdict_;         // filled by the callbacks during one inspect()/finish()
  bool blocked_ = false;
  bool parse_error_reported_ = false;
  std::unique_ptr<http::HttpStreamParser> parser_;  // last: destroyed first, stops callbacks
};

}  // namespace tosec::svm::waf
