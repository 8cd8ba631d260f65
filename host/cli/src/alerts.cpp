#include "tosec/cli/alerts.h"

#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "tosec/cli/status.h"

namespace tosec::cli {

namespace {

std::string field(const JsonValue& v, const std::string& key) {
  const JsonValue* f = v.get(key);
  if (f == nullptr) return "-";
  if (f->type == JsonValue::Type::kString) return f->string;
  if (f->type == JsonValue::Type::kNumber) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.0f", f->number);
    return buf;
  }
  return "-";
}

}  // namespace

std::string render_alert_line(const std::string& json_line) {
  auto j = parse_json(json_line);
  if (!j || j->type != JsonValue::Type::kObject) return "(unparsed) " + json_line;
  const JsonValue* alert = j->get("alert");
  const JsonValue empty;
  const JsonValue& a = alert != nullptr ? *alert : empty;
  std::string action = field(a, "action");
  for (auto& c : action) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return field(*j, "timestamp") + " " + action + " " + field(*j, "guest") + " " + field(*j, "svm") +
         " " + field(a, "signature_id") + " \"" + field(a, "signature") + "\" " +
         field(*j, "src_ip") + ":" + field(*j, "src_port") + " -> " + field(*j, "dest_ip") + ":" +
         field(*j, "dest_port") + " " + field(*j, "direction");
}

rpc::Status show_alerts(const AlertsOptions& opts, std::FILE* out, const std::atomic<bool>* stop) {
  std::ifstream in;
  std::streamoff pos = 0;
  std::string partial;  // a line the writer has not finished yet
  for (;;) {
    if (!in.is_open()) {
      in.open(opts.path, std::ios::binary);
      if (!in.is_open()) {
        if (!opts.follow) {
          std::fprintf(out, "no alerts (%s does not exist yet)\n", opts.path.c_str());
          return {};
        }
      }
    }
    if (in.is_open()) {
      in.clear();
      in.seekg(pos);
      std::string chunk;
      char buf[8192];
      while (in.read(buf, sizeof buf) || in.gcount() > 0) {
        chunk.append(buf, static_cast<std::size_t>(in.gcount()));
        if (in.eof()) break;
      }
      pos += static_cast<std::streamoff>(chunk.size());
      partial += chunk;
      std::size_t start = 0;
      for (std::size_t nl; (nl = partial.find('\n', start)) != std::string::npos; start = nl + 1) {
        const std::string line = partial.substr(start, nl - start);
        if (line.empty()) continue;
        const std::string shown = opts.raw ? line : render_alert_line(line);
        std::fprintf(out, "%s\n", shown.c_str());
      }
      partial.erase(0, start);
      std::fflush(out);
      // A truncated or replaced log (rotation) starts over.
      struct stat st {};
      if (::stat(opts.path.c_str(), &st) == 0 && st.st_size < pos) {
        in.close();
        pos = 0;
        partial.clear();
      }
    }
    if (!opts.follow) return {};
    if (stop != nullptr && stop->load()) return {};
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

}  // namespace tosec::cli
