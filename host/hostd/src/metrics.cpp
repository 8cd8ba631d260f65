#include "tosec/hostd/metrics.h"

#include <cctype>
#include <charconv>
#include <cstdio>
#include <map>

namespace tosec::hostd {

namespace {

using cli::JsonValue;

// Label values escape backslash, double quote and newline (exposition format 0.0.4).
std::string label(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

// Shortest text that reads back as the same double ("1e-06", not "9.9999999999999995e-07").
std::string num(double v) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

const JsonValue* number_field(const JsonValue& o, const char* key) {
  const JsonValue* v = o.get(key);
  return v != nullptr && v->type == JsonValue::Type::kNumber ? v : nullptr;
}

// Collects samples per metric family so that each family is written once, HELP and TYPE first.
class Families {
 public:
  void add(const std::string& name, const char* type, const char* help, const std::string& labels,
           double value) {
    auto& f = families_[name];
    if (f.type.empty()) {
      f.type = type;
      f.help = help;
      order_.push_back(name);
    }
    f.samples += name + (labels.empty() ? "" : "{" + labels + "}") + " " + num(value) + "\n";
  }
  // Histogram samples (_bucket, _sum, _count) under one family.
  void add_raw(const std::string& name, const char* type, const char* help,
               const std::string& sample) {
    auto& f = families_[name];
    if (f.type.empty()) {
      f.type = type;
      f.help = help;
      order_.push_back(name);
    }
    f.samples += sample;
  }
  std::string text() const {
    std::string out;
    for (const auto& n : order_) {
      const auto& f = families_.at(n);
      out += "# HELP " + n + " " + f.help + "\n# TYPE " + n + " " + f.type + "\n" + f.samples;
    }
    return out;
  }

 private:
  struct Family {
    std::string type, help, samples;
  };
  std::map<std::string, Family> families_;
  std::vector<std::string> order_;
};

void guest_metrics(Families& f, const std::string& guest, const JsonValue& j) {
  const std::string g = "guest=\"" + label(guest) + "\"";
  f.add("tosec_guest_up", "gauge", "1 if the guest's TOE answered its status socket", g, 1);
  struct Counter {
    const char* key;
    const char* name;
    const char* help;
  };
  static constexpr Counter kCounters[] = {
      {"bytes_from_guest", "tosec_guest_bytes_from_guest_total", "Bytes the guest sent"},
      {"bytes_to_guest", "tosec_guest_bytes_to_guest_total", "Bytes delivered to the guest"},
      {"bytes_tx_wire", "tosec_guest_bytes_tx_wire_total", "Bytes the TOE sent on the wire"},
      {"bytes_rx_wire", "tosec_guest_bytes_rx_wire_total", "Bytes the TOE received"},
      {"rx_backpressure_events", "tosec_guest_rx_backpressure_events_total",
       "Times the guest's rx ring was full"},
      {"bad_descriptors", "tosec_guest_bad_descriptors_total",
       "Guest requests rejected by validation"},
      {"guests_reclaimed", "tosec_guest_reclaimed_total",
       "Guest processes whose sockets were reclaimed"},
      {"rx_locks_released", "tosec_guest_rx_locks_released_total",
       "Socket receive locks freed after their holder process died"},
  };
  for (const auto& c : kCounters) {
    if (const auto* v = number_field(j, c.key)) f.add(c.name, "counter", c.help, g, v->number);
  }
  if (const auto* v = number_field(j, "uptime_s")) {
    f.add("tosec_guest_toe_uptime_seconds", "gauge", "Uptime of the TOE serving the guest", g,
          v->number);
  }
  if (const auto* lanes = j.get("lanes");
      lanes != nullptr && lanes->type == JsonValue::Type::kArray) {
    f.add("tosec_guest_lanes", "gauge", "Guest processes attached (lanes in use)", g,
          static_cast<double>(lanes->array.size()));
  }
  if (const auto* s = j.get("sockets"); s != nullptr && s->type == JsonValue::Type::kObject) {
    for (const auto& [state, v] : s->object) {
      if (v.type != JsonValue::Type::kNumber) continue;
      f.add("tosec_guest_sockets", "gauge", "Offloaded sockets by state",
            g + ",state=\"" + label(state) + "\"", v.number);
    }
  }
  if (const auto* v = number_field(j, "topology_generation")) {
    f.add("tosec_guest_topology_generation", "gauge", "Topology generation in force in the TOE", g,
          v->number);
  }
  // The TOE's inspection counters (docs/tovm.md): gauges for the two levels, counters otherwise.
  if (const auto* in = j.get("inspection"); in != nullptr && in->type == JsonValue::Type::kObject) {
    for (const auto& [key, v] : in->object) {
      if (v.type != JsonValue::Type::kNumber) continue;
      bool valid = !key.empty();
      for (char c : key) valid = valid && (std::isalnum(static_cast<unsigned char>(c)) || c == '_');
      if (!valid) continue;
      const bool level = key == "inflight" || key == "pool_free";
      f.add("tosec_inspection_" + key + (level ? "" : "_total"), level ? "gauge" : "counter",
            "TOE inspection counter (docs/tovm.md)", g, v.number);
    }
  }
  const JsonValue* m = j.get("metrics");
  if (m == nullptr || m->type != JsonValue::Type::kObject) return;
  if (const auto* st = m->get("streams"); st != nullptr) {
    if (const auto* v = number_field(*st, "inspected")) {
      f.add("tosec_streams_inspected_total", "counter", "Streams given a chain", g, v->number);
    }
    if (const auto* v = number_field(*st, "blocked")) {
      f.add("tosec_streams_blocked_total", "counter", "Streams reset by a verdict", g, v->number);
    }
    if (const auto* v = number_field(*st, "passed_bytes")) {
      f.add("tosec_streams_passed_bytes_total", "counter", "Bytes passed by the chains", g,
            v->number);
    }
  }
  if (const auto* svms = m->get("svms"); svms != nullptr && svms->type == JsonValue::Type::kArray) {
    for (const auto& s : svms->array) {
      const JsonValue* name = s.get("name");
      if (name == nullptr || name->type != JsonValue::Type::kString) continue;
      const std::string l = g + ",svm=\"" + label(name->string) + "\"";
      if (const auto* v = number_field(s, "payloads")) {
        f.add("tosec_svm_payloads_total", "counter", "Payloads handed to the SVM", l, v->number);
      }
      if (const auto* v = number_field(s, "bytes")) {
        f.add("tosec_svm_bytes_total", "counter", "Payload bytes handed to the SVM", l, v->number);
      }
      for (const char* verdict : {"pass", "alert", "block"}) {
        if (const auto* v = number_field(s, verdict)) {
          f.add("tosec_svm_verdicts_total", "counter", "SVM verdicts by kind",
                l + ",verdict=\"" + verdict + "\"", v->number);
        }
      }
      const JsonValue* lat = s.get("latency_us");
      if (lat == nullptr) continue;
      const JsonValue* buckets = lat->get("buckets");
      const JsonValue* sum = number_field(*lat, "sum");
      const JsonValue* count = number_field(*lat, "count");
      if (buckets == nullptr || sum == nullptr || count == nullptr) continue;
      // The TOE reports microseconds; Prometheus convention is seconds.
      const std::string name_h = "tosec_svm_latency_seconds";
      std::string sample;
      for (const auto& b : buckets->array) {
        if (b.array.size() != 2 || b.array[1].type != JsonValue::Type::kNumber) continue;
        const auto& le = b.array[0];
        const std::string le_text =
            le.type == JsonValue::Type::kString ? le.string : num(le.number / 1e6);
        sample += name_h + "_bucket{" + l + ",le=\"" + label(le_text) + "\"} " +
                  num(b.array[1].number) + "\n";
      }
      sample += name_h + "_sum{" + l + "} " + num(sum->number / 1e6) + "\n";
      sample += name_h + "_count{" + l + "} " + num(count->number) + "\n";
      f.add_raw(name_h, "histogram", "Time from hand-off to verdict per SVM step", sample);
    }
  }
  if (const auto* rings = m->get("rings");
      rings != nullptr && rings->type == JsonValue::Type::kArray) {
    for (const auto& r : rings->array) {
      const JsonValue* name = r.get("name");
      if (name == nullptr || name->type != JsonValue::Type::kString) continue;
      const std::string l = g + ",ring=\"" + label(name->string) + "\"";
      if (const auto* v = number_field(r, "capacity")) {
        f.add("tosec_ring_capacity", "gauge", "Ring slots", l, v->number);
      }
      if (const auto* v = number_field(r, "occupancy")) {
        f.add("tosec_ring_occupancy", "gauge", "Ring slots in use", l, v->number);
      }
      if (const auto* v = number_field(r, "drops")) {
        f.add("tosec_ring_drops_total", "counter", "Entries a full ring could not take", l,
              v->number);
      }
    }
  }
}

}  // namespace

std::string render_metrics(const std::vector<cli::GuestStatus>& guests,
                           const std::vector<RoleInfo>& roles, std::uint64_t generation) {
  Families f;
  f.add("tosec_hostd_up", "gauge", "1 while tosec-hostd serves", "", 1);
  f.add("tosec_topology_generation", "gauge", "Topology generation hostd applied last", "",
        static_cast<double>(generation));
  for (const auto& r : roles) {
    const std::string l = "role=\"" + label(r.name) + "\",kind=\"" + label(r.kind) + "\"";
    f.add("tosec_role_up", "gauge", "1 if the supervised process runs", l,
          r.state == "running" ? 1 : 0);
    f.add("tosec_role_restarts_total", "counter", "Deaths of the supervised process", l,
          r.restarts);
  }
  for (const auto& g : guests) {
    if (g.json.empty()) {
      f.add("tosec_guest_up", "gauge", "1 if the guest's TOE answered its status socket",
            "guest=\"" + label(g.guest) + "\"", 0);
      continue;
    }
    auto j = cli::parse_json(g.json);
    if (j && j->type == JsonValue::Type::kObject) guest_metrics(f, g.guest, *j);
  }
  return f.text();
}

}  // namespace tosec::hostd
