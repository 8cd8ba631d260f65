#include "tosec/svm/alert_log.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>

#include "tosec/rpc/json_escape.h"

namespace tosec::svm {

std::string json_escape(std::string_view s) { return rpc::json_escape(s); }

std::uint64_t signature_number(std::string_view rule_id) {
  std::uint64_t v = 0;
  bool any = false;
  for (char c : rule_id) {
    if (c >= '0' && c <= '9') {
      v = v * 10 + static_cast<std::uint64_t>(c - '0');
      any = true;
      if (v > (1ULL << 53)) return 0;  // not an id a JSON reader can hold exactly
    } else if (any) {
      break;  // first run of digits only: "sid:1001:rev2" -> 1001
    }
  }
  return v;
}

std::string endpoint_address(const Endpoint& e) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (e.family == AF_INET) {
    ::inet_ntop(AF_INET, e.addr, buf, sizeof buf);
  } else if (e.family == AF_INET6) {
    ::inet_ntop(AF_INET6, e.addr, buf, sizeof buf);
  }
  return buf;
}

namespace {

std::string iso8601(std::chrono::system_clock::time_point t) {
  const auto us =
      std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(us / 1'000'000);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char buf[64];
  const std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%06lld+0000", static_cast<long long>(us % 1'000'000));
  return buf;
}

const char* proto_name(std::uint8_t p) {
  switch (p) {
    case IPPROTO_TCP:
      return "TCP";
    case IPPROTO_UDP:
      return "UDP";
    default:
      return "IP";
  }
}

}  // namespace

std::string format_alert_json(const AlertRecord& r) {
  static const StreamInfo kNone{};
  const StreamInfo& s = r.stream != nullptr ? *r.stream : kNone;
  // EVE orientation: src is the client, dest the server.
  const Endpoint& src = s.guest_is_client ? s.local : s.remote;
  const Endpoint& dst = s.guest_is_client ? s.remote : s.local;
  const bool to_server = s.flow_of(r.direction) == Flow::kToServer;
  std::string line;
  line.reserve(512);
  line += "{\"timestamp\":\"" + iso8601(r.time) + "\",\"event_type\":\"alert\"";
  line += ",\"flow_id\":" + std::to_string(s.stream_id);
  line += ",\"guest\":\"" + json_escape(s.guest) + "\"";
  line += ",\"stream_id\":" + std::to_string(s.stream_id);
  line += ",\"src_ip\":\"" + endpoint_address(src) + "\",\"src_port\":" + std::to_string(src.port);
  line +=
      ",\"dest_ip\":\"" + endpoint_address(dst) + "\",\"dest_port\":" + std::to_string(dst.port);
  line += std::string(",\"proto\":\"") + proto_name(s.protocol) + "\"";
  line += std::string(",\"direction\":\"") +
          (r.direction == Direction::kOutbound ? "outbound" : "inbound") + "\"";
  line += std::string(",\"flow\":\"") + (to_server ? "to_server" : "to_client") + "\"";
  line += ",\"svm\":\"" + json_escape(r.svm) + "\"";
  line += ",\"engine\":\"" + json_escape(r.engine) + "\"";
  line += std::string(",\"alert\":{\"action\":\"") + (r.blocked ? "blocked" : "allowed") + "\"";
  line += ",\"signature_id\":" + std::to_string(signature_number(r.rule_id));
  line += ",\"rule\":\"" + json_escape(r.rule_id) + "\"";
  line += ",\"signature\":\"" + json_escape(r.signature) + "\"";
  line += ",\"category\":\"" + json_escape(r.category) + "\"}}\n";
  return line;
}

rpc::Result<std::unique_ptr<AlertLog>> AlertLog::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return rpc::errno_error("alert log: open(" + path + ")");
  return std::unique_ptr<AlertLog>(new AlertLog(rpc::UniqueFd(fd)));
}

void AlertLog::write(const AlertRecord& r) {
  const std::string line = format_alert_json(r);
  // One write() per line: O_APPEND makes each write land whole at the end, even with several
  // processes appending to the same file.
  const ssize_t n = ::write(fd_.get(), line.data(), line.size());
  if (n != static_cast<ssize_t>(line.size())) {
    errors_.fetch_add(1, std::memory_order_relaxed);
  } else {
    written_.fetch_add(1, std::memory_order_relaxed);
  }
}

}  // namespace tosec::svm
