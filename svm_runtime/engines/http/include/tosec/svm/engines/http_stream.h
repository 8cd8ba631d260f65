// HTTP/1.x stream parsing for the security VMs: one parser per TCP connection turns the two byte
// streams (to_server, to_client) into request and response events. Used by the WAF (to drive
// ModSecurity) and by the AV engine (to scan bodies).
//
// libhtp (Suricata's HTTP parser) does the work: it tolerates what real servers tolerate,
// normalizes the path like the IDS personality, removes chunked framing, inflates gzip/deflate
// response bodies and pairs pipelined responses with their requests in order.
//
// Contract:
//   * feed() takes each direction's bytes in stream order, in chunks of any size; the bytes need
//     to stay valid only for the duration of the call (what the parser still needs is copied).
//   * Events are delivered synchronously from inside feed()/close(), on the caller's thread, so
//     a consumer that reacts to an event knows which payload completed it.
//   * Every string_view/span in an event is valid only during that callback.
//   * Transactions are numbered from 0 per connection in request order; a response carries the
//     number of the request it answers.
//   * Malformed input never crashes or throws: it becomes an on_anomaly() event. After a fatal
//     anomaly on one direction that direction is no longer parsed (the other one still is).
//
// Threading: an HttpParserConfig is immutable once created and may be shared by all threads;
// an HttpStreamParser belongs to one thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "tosec/rpc/status.h"
#include "tosec/svm/inspector.h"

namespace tosec::svm::http {

struct RequestLine {
  std::string_view method;   // "GET"
  std::string_view uri;      // as sent: "/a/../b?q=%3C"
  std::string_view path;     // normalized by libhtp: "/b" (empty if the URI had no path)
  std::string_view query;    // "q=%3C" (not decoded; empty if none)
  std::string_view version;  // "1.1", "1.0", "0.9" (or what followed "HTTP/" if unusual)
};

struct ResponseLine {
  int status = 0;            // 200; negative if libhtp could not parse the status code
  std::string_view version;  // "1.1"
  std::string_view reason;   // "OK"
};

enum class Side : std::uint8_t { kRequest = 0, kResponse = 1 };

struct Anomaly {
  Side side = Side::kRequest;
  bool fatal = false;        // true: this direction is no longer parsed
  std::string_view message;  // libhtp's text, or ours for the wrapper's own limits
};

// Event sink. Every method has an empty default so a consumer overrides only what it needs.
class HttpEvents {
 public:
  virtual ~HttpEvents() = default;

  virtual void on_request_line(std::uint64_t /*tx*/, const RequestLine& /*line*/) {}
  // Repeated headers arrive once, their values joined with ", " (libhtp's folding).
  virtual void on_request_header(std::uint64_t /*tx*/, std::string_view /*name*/,
                                 std::string_view /*value*/) {}
  virtual void on_request_headers_end(std::uint64_t /*tx*/) {}
  // De-chunked body bytes (and inflated if request decompression is on).
  virtual void on_request_body(std::uint64_t /*tx*/, std::span<const std::byte> /*chunk*/) {}
  virtual void on_request_complete(std::uint64_t /*tx*/) {}

  virtual void on_response_line(std::uint64_t /*tx*/, const ResponseLine& /*line*/) {}
  virtual void on_response_header(std::uint64_t /*tx*/, std::string_view /*name*/,
                                  std::string_view /*value*/) {}
  // content_type: lowercased media type without parameters ("text/html"), empty if none.
  virtual void on_response_headers_end(std::uint64_t /*tx*/, std::string_view /*content_type*/) {}
  // De-chunked and, for Content-Encoding gzip/deflate, inflated body bytes.
  virtual void on_response_body(std::uint64_t /*tx*/, std::span<const std::byte> /*chunk*/) {}
  virtual void on_response_complete(std::uint64_t /*tx*/) {}

  virtual void on_anomaly(const Anomaly& /*anomaly*/) {}
};

enum class Personality : std::uint8_t { kIds, kApache2, kIis7, kMinimal };

struct HttpParserOptions {
  Personality personality = Personality::kIds;
  bool decompress_responses = true;
  bool decompress_requests = false;
  // Request/response line and header sizes: above the soft limit libhtp warns, above the hard
  // limit the direction fails.
  std::size_t field_soft_limit = 9000;
  std::size_t field_hard_limit = 18000;
  // Most bytes one direction may hold back while it waits for the other (libhtp asks for that
  // around CONNECT and when a response outruns its request). Above it the direction fails.
  std::size_t max_pending_bytes = 1 << 20;
  // Reports libhtp warnings (not only errors) as anomalies.
  bool report_warnings = true;
};

// The libhtp configuration with our hooks registered: build once, share read-only.
class HttpParserConfig {
 public:
  static rpc::Result<std::shared_ptr<const HttpParserConfig>> create(
      const HttpParserOptions& options = {});
  ~HttpParserConfig();
  HttpParserConfig(const HttpParserConfig&) = delete;
  HttpParserConfig& operator=(const HttpParserConfig&) = delete;

  const HttpParserOptions& options() const { return options_; }
  void* native() const { return cfg_; }  // htp_cfg_t*, for the parser only

 private:
  HttpParserConfig(const HttpParserOptions& options, void* cfg) : options_(options), cfg_(cfg) {}
  HttpParserOptions options_;
  void* cfg_;
};

// One HTTP connection, both directions.
class HttpStreamParser {
 public:
  // info supplies the addresses libhtp records; events must outlive the parser.
  HttpStreamParser(std::shared_ptr<const HttpParserConfig> config, HttpEvents& events,
                   const StreamInfo& info);
  ~HttpStreamParser();
  HttpStreamParser(const HttpStreamParser&) = delete;
  HttpStreamParser& operator=(const HttpStreamParser&) = delete;

  void feed(Flow flow, std::span<const std::byte> bytes);
  void to_server(std::span<const std::byte> bytes) { feed(Flow::kToServer, bytes); }
  void to_client(std::span<const std::byte> bytes) { feed(Flow::kToClient, bytes); }
  // End of the connection: completes a response delimited by the close, flushes what is left.
  // Idempotent; feed() after close() is ignored.
  void close();

  bool failed(Flow flow) const;
  std::uint64_t requests_seen() const;

  struct Impl;  // public so the libhtp hook trampolines (C functions) can reach it

 private:
  std::unique_ptr<Impl> impl_;
};

// "a.b.c.d" / "::1" for an Endpoint; "" for an unknown family.
std::string endpoint_address(const Endpoint& endpoint);

}  // namespace tosec::svm::http
