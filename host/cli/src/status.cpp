#include "tosec/cli/status.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>

#include "tosec/rpc/json_escape.h"

namespace tosec::cli {

using rpc::Error;
using rpc::Result;

const JsonValue* JsonValue::get(const std::string& key) const {
  if (type != Type::kObject) return nullptr;
  for (const auto& [k, v] : object) {
    if (k == key) return &v;
  }
  return nullptr;
}

namespace {

class JsonReader {
 public:
  explicit JsonReader(const std::string& t) : t_(t) {}

  Result<JsonValue> document() {
    JsonValue v;
    if (!value(&v, 0))
      return Error{EPROTO, "invalid JSON at byte " + std::to_string(i_) + ": " + err_};
    ws();
    if (i_ != t_.size())
      return Error{EPROTO, "trailing data after JSON at byte " + std::to_string(i_)};
    return v;
  }

 private:
  bool fail(const char* m) {
    err_ = m;
    return false;
  }
  void ws() {
    while (i_ < t_.size() && (t_[i_] == ' ' || t_[i_] == '\n' || t_[i_] == '\r' || t_[i_] == '\t'))
      ++i_;
  }
  bool lit(const char* s) {
    const std::size_t n = std::strlen(s);
    if (t_.compare(i_, n, s) != 0) return fail("unexpected token");
    i_ += n;
    return true;
  }
  bool value(JsonValue* v, int depth) {
    if (depth > 64) return fail("nested too deeply");
    ws();
    if (i_ >= t_.size()) return fail("unexpected end");
    const char c = t_[i_];
    if (c == '{') return object(v, depth);
    if (c == '[') return array(v, depth);
    if (c == '"') {
      v->type = JsonValue::Type::kString;
      return string(&v->string);
    }
    if (c == 't') {
      v->type = JsonValue::Type::kBool;
      v->boolean = true;
      return lit("true");
    }
    if (c == 'f') {
      v->type = JsonValue::Type::kBool;
      return lit("false");
    }
    if (c == 'n') return lit("null");
    return number(v);
  }
  bool number(JsonValue* v) {
    const std::size_t start = i_;
    while (i_ < t_.size() && std::strchr("+-0123456789.eE", t_[i_]) != nullptr) ++i_;
    if (start == i_) return fail("expected a value");
    const std::string s = t_.substr(start, i_ - start);
    char* end = nullptr;
    v->number = std::strtod(s.c_str(), &end);
    if (end != s.c_str() + s.size()) return fail("bad number");
    v->type = JsonValue::Type::kNumber;
    return true;
  }
  bool string(std::string* out) {
    ++i_;  // opening quote
    while (i_ < t_.size()) {
      const char c = t_[i_++];
      if (c == '"') return true;
      if (c != '\\') {
        out->push_back(c);
        continue;
      }
      if (i_ >= t_.size()) break;
      const char e = t_[i_++];
      switch (e) {
        case 'n':
          out->push_back('\n');
          break;
        case 't':
          out->push_back('\t');
          break;
        case 'r':
          out->push_back('\r');
          break;
        case 'b':
          out->push_back('\b');
          break;
        case 'f':
          out->push_back('\f');
          break;
        case 'u': {
          if (i_ + 4 > t_.size()) return fail("bad \\u escape");
          const unsigned long cp = std::strtoul(t_.substr(i_, 4).c_str(), nullptr, 16);
          i_ += 4;
          if (cp < 0x80) {
            out->push_back(static_cast<char>(cp));
          } else if (cp < 0x800) {
            out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
            out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
          } else {
            out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
            out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
            out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
          }
          break;
        }
        default:
          out->push_back(e);
      }
    }
    return fail("unterminated string");
  }
  bool array(JsonValue* v, int depth) {
    v->type = JsonValue::Type::kArray;
    ++i_;
    ws();
    if (i_ < t_.size() && t_[i_] == ']') {
      ++i_;
      return true;
    }
    while (true) {
      v->array.emplace_back();
      if (!value(&v->array.back(), depth + 1)) return false;
      ws();
      if (i_ < t_.size() && t_[i_] == ',') {
        ++i_;
        continue;
      }
      if (i_ < t_.size() && t_[i_] == ']') {
        ++i_;
        return true;
      }
      return fail("expected ',' or ']'");
    }
  }
  bool object(JsonValue* v, int depth) {
    v->type = JsonValue::Type::kObject;
    ++i_;
    ws();
    if (i_ < t_.size() && t_[i_] == '}') {
      ++i_;
      return true;
    }
    while (true) {
      ws();
      if (i_ >= t_.size() || t_[i_] != '"') return fail("expected a key");
      std::string key;
      if (!string(&key)) return false;
      ws();
      if (i_ >= t_.size() || t_[i_] != ':') return fail("expected ':'");
      ++i_;
      JsonValue val;
      if (!value(&val, depth + 1)) return false;
      v->object.emplace_back(std::move(key), std::move(val));
      ws();
      if (i_ < t_.size() && t_[i_] == ',') {
        ++i_;
        continue;
      }
      if (i_ < t_.size() && t_[i_] == '}') {
        ++i_;
        return true;
      }
      return fail("expected ',' or '}'");
    }
  }

  const std::string& t_;
  std::size_t i_ = 0;
  const char* err_ = "";
};

std::string num(const JsonValue* v) {
  if (v == nullptr || v->type != JsonValue::Type::kNumber) return "-";
  char buf[64];
  if (std::fabs(v->number) < 1e15 && v->number == std::floor(v->number)) {
    std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(v->number));
  } else {
    std::snprintf(buf, sizeof buf, "%.1f", v->number);
  }
  return buf;
}

std::string bytes(const JsonValue* v) {
  if (v == nullptr || v->type != JsonValue::Type::kNumber) return "-";
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double x = v->number;
  int u = 0;
  while (x >= 1024 && u < 4) {
    x /= 1024;
    ++u;
  }
  char buf[64];
  if (u == 0) {
    std::snprintf(buf, sizeof buf, "%.0f B", x);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f %s", x, units[u]);
  }
  return buf;
}

std::string duration(const JsonValue* v) {
  if (v == nullptr || v->type != JsonValue::Type::kNumber) return "-";
  long s = static_cast<long>(v->number);
  char buf[64];
  if (s < 60) {
    std::snprintf(buf, sizeof buf, "%lds", s);
  } else if (s < 3600) {
    std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, (s / 60) % 60);
  }
  return buf;
}

}  // namespace

Result<JsonValue> parse_json(const std::string& text) { return JsonReader(text).document(); }

std::string json_quote(const std::string& s) { return rpc::json_quote(s); }

Result<std::string> fetch_status(const std::string& socket_path,
                                 std::chrono::milliseconds timeout) {
  sockaddr_un addr{};
  if (socket_path.size() >= sizeof addr.sun_path) {
    return Error{ENAMETOOLONG, "status socket path too long: " + socket_path};
  }
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return rpc::errno_error("socket");
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) {
    auto e = rpc::errno_error("connect(" + socket_path + ")");
    ::close(fd);
    return e;
  }
  std::string out;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      ::close(fd);
      return Error{ETIMEDOUT, "no complete status from " + socket_path + " within " +
                                  std::to_string(timeout.count()) + " ms"};
    }
    pollfd p{fd, POLLIN, 0};
    const int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    char buf[4096];
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      auto e = rpc::errno_error("read(" + socket_path + ")");
      ::close(fd);
      return e;
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
    if (out.size() > (1U << 24)) {
      ::close(fd);
      return Error{EMSGSIZE, "status from " + socket_path + " is larger than 16 MiB"};
    }
  }
  ::close(fd);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

std::string render_status_json(const std::string& runtime_dir, long supervisor_pid,
                               const std::vector<GuestStatus>& guests) {
  std::string out = "{\"runtime_dir\": " + json_quote(runtime_dir) +
                    ", \"supervisor_pid\": " + std::to_string(supervisor_pid) + ", \"guests\": [";
  bool first = true;
  for (const auto& g : guests) {
    out += first ? "\n  " : ",\n  ";
    first = false;
    if (!g.json.empty() && parse_json(g.json).ok()) {
      out += g.json;
    } else {
      out += "{\"guest\": " + json_quote(g.guest) +
             ", \"error\": " + json_quote(g.error.empty() ? "invalid status JSON" : g.error) + "}";
    }
  }
  out += guests.empty() ? "]}\n" : "\n]}\n";
  return out;
}

std::string render_status_table(const std::string& runtime_dir, long supervisor_pid,
                                const std::vector<GuestStatus>& guests) {
  std::string out = "platform: " + runtime_dir + " (supervisor pid " +
                    std::to_string(supervisor_pid) + "), " + std::to_string(guests.size()) +
                    " guest(s)\n";
  char line[512];
  std::snprintf(line, sizeof line,
                "\n%-16s %-10s %-8s %-5s %-30s %-10s %-10s %-10s %-10s %-6s %-6s\n", "GUEST",
                "TOE PID/W", "UPTIME", "LANES", "SOCKETS open/conn'g/conn/lsn/cls", "FROM GUEST",
                "TO GUEST", "TX WIRE", "RX WIRE", "BKPR", "BAD");
  out += line;
  std::string details;
  for (const auto& g : guests) {
    Result<JsonValue> j =
        g.json.empty() ? Result<JsonValue>(Error{EIO, g.error}) : parse_json(g.json);
    if (!j) {
      std::snprintf(line, sizeof line, "%-16s %s\n", g.guest.c_str(),
                    ("unreachable: " + (g.error.empty() ? j.error().message : g.error)).c_str());
      out += line;
      continue;
    }
    const JsonValue& v = *j;
    std::string lanes = "-";
    std::string pids;
    if (const JsonValue* l = v.get("lanes")) {
      if (l->type == JsonValue::Type::kArray) {
        lanes = std::to_string(l->array.size());
        for (const auto& e : l->array) {
          if (const JsonValue* p = e.get("pid")) pids += (pids.empty() ? "" : " ") + num(p);
        }
      } else {
        lanes = num(l);
      }
    }
    std::string sockets = "-";
    if (const JsonValue* s = v.get("sockets");
        s != nullptr && s->type == JsonValue::Type::kObject) {
      sockets = num(s->get("open")) + "/" + num(s->get("connecting")) + "/" +
                num(s->get("connected")) + "/" + num(s->get("listening")) + "/" +
                num(s->get("closing"));
    }
    // The TOE process and its worker thread serving this guest (several guests may share one).
    std::string toe = num(v.get("pid"));
    if (const JsonValue* w = v.get("worker")) toe += "/" + num(w);
    std::snprintf(
        line, sizeof line, "%-16s %-10s %-8s %-5s %-30s %-10s %-10s %-10s %-10s %-6s %-6s\n",
        g.guest.c_str(), toe.c_str(), duration(v.get("uptime_s")).c_str(), lanes.c_str(),
        sockets.c_str(), bytes(v.get("bytes_from_guest")).c_str(),
        bytes(v.get("bytes_to_guest")).c_str(), bytes(v.get("bytes_tx_wire")).c_str(),
        bytes(v.get("bytes_rx_wire")).c_str(), num(v.get("rx_backpressure_events")).c_str(),
        num(v.get("bad_descriptors")).c_str());
    out += line;
    if (!pids.empty()) details += "  " + g.guest + ": guest processes (lanes): " + pids + "\n";
    // Where the worker may run ([tovm] cpus; all of the TOE's CPUs when not pinned).
    if (const JsonValue* c = v.get("cpus");
        c != nullptr && c->type == JsonValue::Type::kString && !c->string.empty()) {
      details +=
          "  " + g.guest + ": TOE worker " + num(v.get("worker")) + " on CPUs " + c->string + "\n";
    }
    if (const JsonValue* r = v.get("guests_reclaimed"); r != nullptr && num(r) != "0") {
      details += "  " + g.guest + ": guest processes reclaimed: " + num(r) + "\n";
    }
    // Not 0 means a process died inside a receive on a socket it shared (docs/guest-lib.md).
    if (const JsonValue* r = v.get("rx_locks_released"); r != nullptr && num(r) != "0") {
      details +=
          "  " + g.guest + ": receive locks freed after their process died: " + num(r) + "\n";
    }
  }
  if (!details.empty()) out += "\n" + details;
  out +=
      "\nTOE PID/W = the TOE process / its worker thread serving the guest; BKPR = rx "
      "backpressure events, BAD = bad descriptors; `tosec status --json` for all fields\n";
  return out;
}

}  // namespace tosec::cli
