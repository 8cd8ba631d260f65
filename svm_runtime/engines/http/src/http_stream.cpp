// HttpStreamParser: one libhtp connection parser, its hooks turned into HttpEvents calls.
#include "tosec/svm/engines/http_stream.h"

#include <arpa/inet.h>
#include <htp/htp.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <string>

#include "htp_glue.h"

namespace tosec::svm::http {

struct HttpStreamParser::Impl {
  Impl(std::shared_ptr<const HttpParserConfig> cfg, HttpEvents& ev)
      : config(std::move(cfg)), events(ev) {}

  std::shared_ptr<const HttpParserConfig> config;
  HttpEvents& events;
  htp_connp_t* connp = nullptr;
  // Bytes libhtp did not consume because it waits for the other direction (HTP_STREAM_DATA_OTHER).
  std::array<std::string, 2> pending;
  std::array<bool, 2> failed{};
  bool closed = false;
  Side current_side = Side::kRequest;  // which direction libhtp is parsing (for log messages)
  std::uint64_t requests = 0;

  static std::size_t index(Flow f) { return f == Flow::kToServer ? 0 : 1; }

  void fail(Flow flow, std::string_view why) {
    failed[index(flow)] = true;
    pending[index(flow)].clear();
    events.on_anomaly(
        {flow == Flow::kToServer ? Side::kRequest : Side::kResponse, /*fatal=*/true, why});
  }

  void run(Flow flow, const unsigned char* data, std::size_t len) {
    if (len == 0) return;  // libhtp treats a zero-length chunk as a close
    const bool req = flow == Flow::kToServer;
    current_side = req ? Side::kRequest : Side::kResponse;
    const int rc = req ? htp_connp_req_data(connp, nullptr, data, len)
                       : htp_connp_res_data(connp, nullptr, data, len);
    switch (rc) {
      case HTP_STREAM_DATA_OTHER: {
        const std::size_t used = std::min(
            len, req ? htp_connp_req_data_consumed(connp) : htp_connp_res_data_consumed(connp));
        if (len - used > config->options().max_pending_bytes) {
          fail(flow, "http: more than max_pending_bytes held while waiting for the other side");
          return;
        }
        pending[index(flow)].assign(reinterpret_cast<const char*>(data) + used, len - used);
        return;
      }
      case HTP_STREAM_ERROR: {
        const htp_log_t* last = htp_connp_get_last_error(connp);
        fail(flow, last != nullptr && last->msg != nullptr ? std::string_view(last->msg)
                                                           : std::string_view("http: parse error"));
        return;
      }
      default:  // DATA, TUNNEL (CONNECT succeeded: no more HTTP), CLOSED, STOP
        return;
    }
  }

  // Runs `flow` on its held-back bytes followed by `bytes`.
  void run_with_pending(Flow flow, std::span<const std::byte> bytes) {
    std::string& held = pending[index(flow)];
    if (held.empty()) {
      run(flow, reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
      return;
    }
    if (held.size() + bytes.size() > config->options().max_pending_bytes) {
      fail(flow, "http: more than max_pending_bytes held while waiting for the other side");
      return;
    }
    std::string buf = std::move(held);
    held.clear();
    buf.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    run(flow, reinterpret_cast<const unsigned char*>(buf.data()), buf.size());
  }

  void feed(Flow flow, std::span<const std::byte> bytes) {
    if (closed || failed[index(flow)] || bytes.empty()) return;
    run_with_pending(flow, bytes);
    // Progress on this side may be what the other side waited for.
    const Flow other = flow == Flow::kToServer ? Flow::kToClient : Flow::kToServer;
    if (!failed[index(other)] && !pending[index(other)].empty()) run_with_pending(other, {});
  }
};

namespace {

HttpStreamParser::Impl* impl_of(const htp_connp_t* connp) {
  return connp == nullptr ? nullptr
                          : static_cast<HttpStreamParser::Impl*>(htp_connp_get_user_data(connp));
}

std::string_view version_of(const bstr* protocol, int number) {
  switch (number) {
    case HTP_PROTOCOL_1_1:
      return "1.1";
    case HTP_PROTOCOL_1_0:
      return "1.0";
    case HTP_PROTOCOL_0_9:
      return "0.9";
    default:
      break;
  }
  std::string_view p = detail::view(protocol);
  if (p.size() > 5 && p.substr(0, 5) == "HTTP/") p.remove_prefix(5);
  return p;
}

std::span<const std::byte> bytes_of(const htp_tx_data_t* d) {
  return {reinterpret_cast<const std::byte*>(d->data), d->len};
}

template <class Fn>
void each_header(const htp_table_t* table, Fn&& fn) {
  if (table == nullptr) return;
  const std::size_t n = htp_table_size(table);
  for (std::size_t i = 0; i < n; ++i) {
    const auto* h = static_cast<const htp_header_t*>(htp_table_get_index(table, i, nullptr));
    if (h != nullptr) fn(detail::view(h->name), detail::view(h->value));
  }
}

int on_request_line(htp_tx_t* tx) {
  HttpStreamParser::Impl* p = impl_of(tx->connp);
  if (p == nullptr) return HTP_OK;
  ++p->requests;
  RequestLine line;
  line.method = detail::view(tx->request_method);
  line.uri = detail::view(tx->request_uri);
  if (tx->parsed_uri != nullptr) {
    line.path = detail::view(tx->parsed_uri->path);
    line.query = detail::view(tx->parsed_uri->query);
  }
  line.version = tx->is_protocol_0_9 != 0
                     ? std::string_view("0.9")
                     : version_of(tx->request_protocol, tx->request_protocol_number);
  p->events.on_request_line(tx->index, line);
  return HTP_OK;
}

int on_request_headers(htp_tx_t* tx) {
  HttpStreamParser::Impl* p = impl_of(tx->connp);
  if (p == nullptr) return HTP_OK;
  each_header(tx->request_headers, [&](std::string_view name, std::string_view value) {
    p->events.on_request_header(tx->index, name, value);
  });
  p->events.on_request_headers_end(tx->index);
  return HTP_OK;
}

int on_request_body(htp_tx_data_t* d) {
  HttpStreamParser::Impl* p = impl_of(d->tx->connp);
  // libhtp signals the end of a body with an empty chunk; on_request_complete says that.
  if (p != nullptr && d->data != nullptr && d->len > 0) {
    p->events.on_request_body(d->tx->index, bytes_of(d));
  }
  return HTP_OK;
}

int on_request_complete(htp_tx_t* tx) {
  HttpStreamParser::Impl* p = impl_of(tx->connp);
  if (p != nullptr) p->events.on_request_complete(tx->index);
  return HTP_OK;
}

int on_response_line(htp_tx_t* tx) {
  HttpStreamParser::Impl* p = impl_of(tx->connp);
  if (p == nullptr) return HTP_OK;
  ResponseLine line;
  line.status = tx->response_status_number;
  line.version = version_of(tx->response_protocol, tx->response_protocol_number);
  line.reason = detail::view(tx->response_message);
  p->events.on_response_line(tx->index, line);
  return HTP_OK;
}

int on_response_headers(htp_tx_t* tx) {
  HttpStreamParser::Impl* p = impl_of(tx->connp);
  if (p == nullptr) return HTP_OK;
  each_header(tx->response_headers, [&](std::string_view name, std::string_view value) {
    p->events.on_response_header(tx->index, name, value);
  });
  p->events.on_response_headers_end(tx->index, detail::view(tx->response_content_type));
  return HTP_OK;
}

int on_response_body(htp_tx_data_t* d) {
  HttpStreamParser::Impl* p = impl_of(d->tx->connp);
  if (p != nullptr && d->data != nullptr && d->len > 0) {
    p->events.on_response_body(d->tx->index, bytes_of(d));
  }
  return HTP_OK;
}

int on_response_complete(htp_tx_t* tx) {
  HttpStreamParser::Impl* p = impl_of(tx->connp);
  if (p != nullptr) p->events.on_response_complete(tx->index);
  return HTP_OK;
}

int on_log(htp_log_t* log) {
  HttpStreamParser::Impl* p = impl_of(log->connp);
  if (p == nullptr || log->msg == nullptr) return HTP_OK;
  p->events.on_anomaly({p->current_side, /*fatal=*/false, std::string_view(log->msg)});
  return HTP_OK;
}

}  // namespace

void detail::register_hooks(htp_cfg_t* cfg) {
  htp_config_register_request_line(cfg, on_request_line);
  htp_config_register_request_headers(cfg, on_request_headers);
  htp_config_register_request_body_data(cfg, on_request_body);
  htp_config_register_request_complete(cfg, on_request_complete);
  htp_config_register_response_line(cfg, on_response_line);
  htp_config_register_response_headers(cfg, on_response_headers);
  htp_config_register_response_body_data(cfg, on_response_body);
  htp_config_register_response_complete(cfg, on_response_complete);
  htp_config_register_log(cfg, on_log);
}

std::string endpoint_address(const Endpoint& endpoint) {
  char buf[INET6_ADDRSTRLEN] = {};
  const int family = endpoint.family;
  if (family != AF_INET && family != AF_INET6) return {};
  if (inet_ntop(family, endpoint.addr, buf, sizeof buf) == nullptr) return {};
  return buf;
}

HttpStreamParser::HttpStreamParser(std::shared_ptr<const HttpParserConfig> config,
                                   HttpEvents& events, const StreamInfo& info)
    : impl_(std::make_unique<Impl>(std::move(config), events)) {
  impl_->connp = htp_connp_create(static_cast<htp_cfg_t*>(impl_->config->native()));
  if (impl_->connp == nullptr) {
    impl_->failed = {true, true};
    events.on_anomaly({Side::kRequest, /*fatal=*/true, "http: htp_connp_create failed"});
    return;
  }
  htp_connp_set_user_data(impl_->connp, impl_.get());
  const Endpoint& client = info.guest_is_client ? info.local : info.remote;
  const Endpoint& server = info.guest_is_client ? info.remote : info.local;
  const std::string client_addr = endpoint_address(client);
  const std::string server_addr = endpoint_address(server);
  htp_connp_open(impl_->connp, client_addr.empty() ? nullptr : client_addr.c_str(), client.port,
                 server_addr.empty() ? nullptr : server_addr.c_str(), server.port, nullptr);
}

HttpStreamParser::~HttpStreamParser() {
  if (impl_->connp != nullptr) {
    // No events from teardown: the consumer may already be half destroyed.
    htp_connp_set_user_data(impl_->connp, nullptr);
    htp_connp_destroy_all(impl_->connp);
  }
}

void HttpStreamParser::feed(Flow flow, std::span<const std::byte> bytes) {
  impl_->feed(flow, bytes);
}

void HttpStreamParser::close() {
  if (impl_->closed || impl_->connp == nullptr) return;
  impl_->closed = true;
  // Held-back bytes get a last chance: the other side may have arrived since.
  for (Flow f : {Flow::kToServer, Flow::kToClient}) {
    if (!impl_->failed[Impl::index(f)] && !impl_->pending[Impl::index(f)].empty()) {
      std::string buf = std::move(impl_->pending[Impl::index(f)]);
      impl_->pending[Impl::index(f)].clear();
      impl_->run(f, reinterpret_cast<const unsigned char*>(buf.data()), buf.size());
    }
  }
  htp_connp_close(impl_->connp, nullptr);
}

bool HttpStreamParser::failed(Flow flow) const { return impl_->failed[Impl::index(flow)]; }

std::uint64_t HttpStreamParser::requests_seen() const { return impl_->requests; }

}  // namespace tosec::svm::http
