#include "waf_stream_inspector.h"

#include <modsecurity/intervention.h>
#include <modsecurity/rules_set_properties.h>

#include <algorithm>

#include "modsec_findings.h"

namespace tosec::svm::waf {
namespace {

const unsigned char* uc(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

const char* c_str(std::string& scratch, std::string_view s) {
  scratch.assign(s.data(), s.size());
  return scratch.c_str();
}

}  // namespace

WafStreamInspector::WafStreamInspector(const WafEngine& engine, const StreamInfo& info)
    : engine_(engine), detect_only_(engine.detect_only()) {
  const Endpoint& client = info.guest_is_client ? info.local : info.remote;
  const Endpoint& server = info.guest_is_client ? info.remote : info.local;
  client_addr_ = http::endpoint_address(client);
  server_addr_ = http::endpoint_address(server);
  client_port_ = client.port;
  server_port_ = server.port;
  http::HttpEvents& events = *this;  // private base: convert here, where it is accessible
  parser_ = std::make_unique<http::HttpStreamParser>(engine.http_config(), events, info);
}

WafStreamInspector::~WafStreamInspector() {
  // Transactions still open get their logging phase (ModSecurity expects it) but no verdict.
  parser_.reset();
  for (HttpTx& tx : txs_) {
    if (tx.t) tx.t->processLogging();
  }
}

Verdict WafStreamInspector::inspect(const Payload& payload) {
  if (blocked_) return {};  // the runtime stops calling once blocked; be safe anyway
  parser_->feed(payload.flow, payload.bytes);
  Verdict out = std::move(verdict_);
  verdict_ = Verdict{};
  return out;
}

Verdict WafStreamInspector::finish() {
  if (!blocked_) {
    parser_->close();
    // What the close did not complete is judged on what arrived: a request cut short still gets
    // its phases 1-2, a response body cut short its phase 4.
    while (!blocked_ && !txs_.empty()) {
      HttpTx& tx = txs_.front();
      complete_request(tx);
      if (!blocked_ && tx.response_headers_done) complete_response(tx);
      if (!blocked_) drop(tx.index);
    }
  }
  Verdict out = std::move(verdict_);
  verdict_ = Verdict{};
  return out;
}

WafStreamInspector::HttpTx* WafStreamInspector::find(std::uint64_t tx) {
  if (blocked_) return nullptr;
  for (HttpTx& t : txs_) {
    if (t.index == tx) return &t;
  }
  return nullptr;
}

WafStreamInspector::HttpTx* WafStreamInspector::start_tx(std::uint64_t tx, std::string_view uri,
                                                         std::string_view method,
                                                         std::string_view version) {
  if (txs_.size() >= engine_.options().max_pipelined) {
    block_with(Action::kBlock, "waf:pipeline-limit",
               "more than " + std::to_string(engine_.options().max_pipelined) +
                   " pipelined HTTP requests waiting for responses");
    return nullptr;
  }
  HttpTx& t = txs_.emplace_back();
  t.index = tx;
  t.t = std::make_unique<modsecurity::Transaction>(engine_.modsec(), engine_.rules(), nullptr);
  if (detect_only_) {
    // Detect mode runs the transaction as if enforcing, so ModSecurity still computes the
    // intervention (in DetectionOnly it records no sign of what it would have done: 949110's
    // message is not even flagged disruptive); judge() reports it as an alert instead.
    t.t->m_secRuleEngine = modsecurity::RulesSetProperties::EnabledRuleEngine;
  }
  t.t->processConnection(client_addr_.c_str(), client_port_, server_addr_.c_str(), server_port_);
  if (!judge(t)) return nullptr;
  t.t->processURI(c_str(scratch_[0], uri), c_str(scratch_[1], method), c_str(scratch_[2], version));
  if (!judge(t)) return nullptr;
  return &t;
}

void WafStreamInspector::on_request_line(std::uint64_t tx, const http::RequestLine& line) {
  if (blocked_) return;
  start_tx(tx, line.uri, line.method, line.version.empty() ? "1.1" : line.version);
}

void WafStreamInspector::on_request_header(std::uint64_t tx, std::string_view name,
                                           std::string_view value) {
  if (HttpTx* t = find(tx)) {
    t->t->addRequestHeader(uc(name), name.size(), uc(value), value.size());
  }
}

void WafStreamInspector::on_request_headers_end(std::uint64_t tx) {
  HttpTx* t = find(tx);
  if (t == nullptr || t->request_headers_done) return;
  t->request_headers_done = true;
  t->t->processRequestHeaders();
  judge(*t);
}

void WafStreamInspector::on_request_body(std::uint64_t tx, std::span<const std::byte> chunk) {
  HttpTx* t = find(tx);
  if (t == nullptr || t->request_done) return;
  // ModSecurity buffers up to SecRequestBodyLimit; past it SecRequestBodyLimitAction decides
  // (Reject intervenes here, ProcessPartial keeps what fits).
  t->t->appendRequestBody(reinterpret_cast<const unsigned char*>(chunk.data()), chunk.size());
  judge(*t);
}

void WafStreamInspector::on_request_complete(std::uint64_t tx) {
  if (HttpTx* t = find(tx)) complete_request(*t);
}

void WafStreamInspector::complete_request(HttpTx& tx) {
  if (tx.request_done) return;
  if (!tx.request_headers_done) {  // HTTP/0.9, or cut short before the blank line
    tx.request_headers_done = true;
    tx.t->processRequestHeaders();
    if (!judge(tx)) return;
  }
  tx.request_done = true;
  tx.t->processRequestBody();
  judge(tx);
}

void WafStreamInspector::on_response_line(std::uint64_t tx, const http::ResponseLine& line) {
  if (blocked_) return;
  HttpTx* t = find(tx);
  if (t == nullptr) {
    // A response without a request (libhtp made up a transaction for it): judge its phases
    // 3-5 alone rather than let it through unseen.
    t = start_tx(tx, "/", "GET", line.version.empty() ? "1.1" : line.version);
    if (t == nullptr) return;
    t->request_headers_done = true;
    t->request_done = true;
  }
  t->interim_response = line.status >= 100 && line.status < 200;
  if (t->interim_response) return;  // 100 Continue etc.: the real response follows
  complete_request(*t);             // a server may answer before the request body is complete
  if (blocked_) return;
  t->status = line.status;
  t->response_protocol = "HTTP ";
  t->response_protocol.append(line.version.empty() ? std::string_view("1.1") : line.version);
}

void WafStreamInspector::on_response_header(std::uint64_t tx, std::string_view name,
                                            std::string_view value) {
  HttpTx* t = find(tx);
  if (t == nullptr || t->interim_response) return;
  t->t->addResponseHeader(uc(name), name.size(), uc(value), value.size());
}

void WafStreamInspector::on_response_headers_end(std::uint64_t tx,
                                                 std::string_view /*content_type*/) {
  HttpTx* t = find(tx);
  if (t == nullptr || t->interim_response || t->response_headers_done) return;
  t->response_headers_done = true;
  // ModSecurity reads Content-Type from the headers itself and only buffers bodies whose type
  // is listed in SecResponseBodyMimeType.
  t->t->processResponseHeaders(t->status, t->response_protocol);
  judge(*t);
}

void WafStreamInspector::on_response_body(std::uint64_t tx, std::span<const std::byte> chunk) {
  HttpTx* t = find(tx);
  if (t == nullptr || !t->response_headers_done) return;
  t->t->appendResponseBody(reinterpret_cast<const unsigned char*>(chunk.data()), chunk.size());
  judge(*t);
}

void WafStreamInspector::on_response_complete(std::uint64_t tx) {
  HttpTx* t = find(tx);
  if (t == nullptr) return;
  if (!t->response_headers_done) {  // e.g. HTTP/0.9 response: no headers
    t->response_headers_done = true;
    t->t->processResponseHeaders(t->status, t->response_protocol);
    if (!judge(*t)) return;
  }
  complete_response(*t);
  if (!blocked_) drop(tx);
}

void WafStreamInspector::complete_response(HttpTx& tx) {
  tx.t->processResponseBody();
  if (!judge(tx)) return;
  tx.t->processLogging();
  judge(tx);
}

void WafStreamInspector::drop(std::uint64_t tx) {
  auto it = std::find_if(txs_.begin(), txs_.end(), [&](const HttpTx& t) { return t.index == tx; });
  if (it == txs_.end()) return;
  if (!it->response_headers_done || !it->request_done) it->t->processLogging();
  txs_.erase(it);
}

void WafStreamInspector::on_anomaly(const http::Anomaly& anomaly) {
  // Non-fatal anomalies (odd folding, invalid header names, ...) are what CRS's protocol rules
  // judge from the parsed request; only a direction libhtp gave up on needs a verdict here.
  if (!anomaly.fatal || blocked_ || parse_error_reported_) return;
  const Action action = engine_.options().parse_error_action;
  if (action == Action::kPass) return;
  parse_error_reported_ = true;
  const char* side = anomaly.side == http::Side::kRequest ? "request" : "response";
  block_with(detect_only_ ? Action::kAlert : action, "waf:http-parse-error",
             std::string("unparsable HTTP ") + side + ": " + std::string(anomaly.message));
}

void WafStreamInspector::block_with(Action action, std::string rule_id, std::string message) {
  verdict_.add(Finding{action, std::move(rule_id), std::move(message), "protocol"});
  if (action == Action::kBlock) blocked_ = true;
}

bool WafStreamInspector::judge(HttpTx& tx) {
  modsecurity::Transaction& t = *tx.t;
  modsecurity::ModSecurityIntervention it;
  modsecurity::intervention::clean(&it);
  // intervention() hands over and resets the transaction's pending intervention.
  if (!t.intervention(&it) || it.disruptive == 0) {
    modsecurity::intervention::free(&it);
    return true;
  }
  const std::string_view log = it.log != nullptr ? std::string_view(it.log) : "";
  if (detect_only_) {
    // Only what is new since this transaction's last alert (a later phase may alert again).
    add_findings(t, Action::kAlert, log, it.status, verdict_, tx.messages_seen);
    tx.messages_seen = t.m_rulesMessages.size();
    modsecurity::intervention::free(&it);
    return true;
  }
  add_findings(t, Action::kBlock, log, it.status, verdict_);
  blocked_ = true;
  modsecurity::intervention::free(&it);
  return false;
}

}  // namespace tosec::svm::waf
