#include "tosec/hostd/service.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "tosec/cli/inspection.h"
#include "tosec/cli/platform.h"
#include "tosec/hostd/topology.h"

#ifndef TOSEC_VERSION
#define TOSEC_VERSION "0.0.0"
#endif

namespace tosec::hostd {

namespace v1 = tosec::v1;
using Clock = std::chrono::steady_clock;

grpc::StatusCode grpc_code(int err) {
  switch (err) {
    case EINVAL:
      return grpc::StatusCode::INVALID_ARGUMENT;
    case ENOENT:
      return grpc::StatusCode::NOT_FOUND;
    case EBUSY:
      return grpc::StatusCode::FAILED_PRECONDITION;
    default:
      return grpc::StatusCode::INTERNAL;
  }
}

namespace {

grpc::Status to_grpc(const rpc::Error& e) { return {grpc_code(e.code), e.message}; }

std::int64_t unix_ns_now() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

double number(const cli::JsonValue* v) {
  return v != nullptr && v->type == cli::JsonValue::Type::kNumber ? v->number : 0;
}

std::uint64_t u64(const cli::JsonValue* v) { return static_cast<std::uint64_t>(number(v)); }

// The generation and last reload error a TOE reports for one guest; has = it reports them.
struct Reported {
  bool reachable = false;
  bool has = false;
  std::uint64_t generation = 0;
  std::string error;
};

Reported reported(const std::string& status_socket) {
  Reported r;
  auto text = cli::fetch_status(status_socket, std::chrono::seconds(3));
  if (!text) return r;
  auto j = cli::parse_json(*text);
  if (!j) return r;
  r.reachable = true;
  if (const auto* g = j->get("topology_generation")) {
    r.has = true;
    r.generation = u64(g);
  }
  if (const auto* e = j->get("topology_error");
      e != nullptr && e->type == cli::JsonValue::Type::kString) {
    r.error = e->string;
  }
  return r;
}

}  // namespace

HostControlService::HostControlService(Supervisor& sup, cli::Config cfg, std::string data_dir)
    : sup_(sup),
      runtime_dir_(cfg.platform.runtime_dir),
      cfg_(std::move(cfg)),
      data_dir_(std::move(data_dir)),
      started_unix_ns_(unix_ns_now()) {}

std::uint64_t HostControlService::generation() {
  std::lock_guard lock(sup_.mutex());
  return generation_;
}

grpc::Status HostControlService::Status(grpc::ServerContext*, const v1::StatusRequest*,
                                        v1::StatusResponse* resp) {
  std::lock_guard lock(sup_.mutex());
  resp->set_version(TOSEC_VERSION);
  resp->set_state(stopping_         ? v1::PLATFORM_STATE_STOPPING
                  : sup_.degraded() ? v1::PLATFORM_STATE_DEGRADED
                                    : v1::PLATFORM_STATE_UP);
  resp->set_started_unix_ns(started_unix_ns_);
  resp->set_topology_generation(generation_);
  resp->set_mode("process");
  resp->set_runtime_dir(cfg_.platform.runtime_dir);
  resp->set_pid(::getpid());
  resp->set_metrics_address(metrics_address_);
  for (const auto& r : sup_.roles()) {
    auto* rs = resp->add_roles();
    rs->set_name(r.name);
    rs->set_kind(r.kind);
    rs->set_state(r.state);
    rs->set_pid(r.pid);
    rs->set_restarts(r.restarts);
    rs->set_started_unix_ns(r.started_unix_ns);
  }
  return grpc::Status::OK;
}

grpc::Status HostControlService::GetTopology(grpc::ServerContext*, const v1::GetTopologyRequest*,
                                             v1::Topology* resp) {
  std::lock_guard lock(sup_.mutex());
  *resp = config_to_topology(cfg_, generation_);
  return grpc::Status::OK;
}

grpc::Status HostControlService::commit(const Edit& edit, bool dry_run, std::uint64_t* generation,
                                        std::vector<std::string>* warnings) {
  if (stopping_) return {grpc::StatusCode::FAILED_PRECONDITION, "the platform is stopping"};
  std::lock_guard lock(sup_.mutex());  // one change at a time, never racing a restart
  *generation = generation_;
  rpc::Result<cli::Config> next = edit(cfg_);
  if (!next) return to_grpc(next.error());
  const std::uint64_t gen = generation_ + 1;
  std::vector<std::pair<cli::GuestPlatform*, v1::Topology>> files;
  for (auto* p : sup_.platforms()) {
    auto t = guest_topology(*next, p->guest().name, p->inspection(), data_dir_, gen);
    if (!t) return to_grpc(t.error());
    if (!p->inspection().empty()) files.emplace_back(p, std::move(*t));
  }
  if (dry_run) return grpc::Status::OK;
  std::vector<std::string> guests;
  for (auto& [p, t] : files) {
    // write + rename: a TOE re-reading it never sees half a file.
    if (auto s = cli::write_topology(t, p->inspection_paths().topology_file); !s) {
      return {grpc::StatusCode::INTERNAL, s.message()};
    }
    p->set_topology(std::move(t));
    guests.push_back(p->guest().name);
  }
  cfg_ = std::move(*next);
  generation_ = gen;
  *generation = gen;
  log_line("topology generation %llu applied (%zu inspected guest(s))",
           static_cast<unsigned long long>(gen), guests.size());
  return reload(guests, gen, warnings);
}

grpc::Status HostControlService::reload(const std::vector<std::string>& guests, std::uint64_t gen,
                                        std::vector<std::string>* warnings) {
  const std::string& dir = cfg_.platform.runtime_dir;
  auto socket = [&](const std::string& g) { return cli::guest_paths(dir, g, "").status_socket; };
  std::map<std::string, std::string> before;  // guest -> its TOE's last reload error
  std::set<pid_t> pids;
  for (const auto& g : guests) {
    const pid_t pid = sup_.tovm_pid(g);
    const Reported r = reported(socket(g));
    if (pid == 0 || !r.reachable) {
      warnings->push_back("guest " + g + ": TOE not running; it reads generation " +
                          std::to_string(gen) + " when it restarts");
      continue;
    }
    if (!r.has) {
      warnings->push_back("guest " + g +
                          ": this tosec-tovm does not reload live (no topology_generation in its "
                          "status); the change applies at its next restart");
      continue;
    }
    before[g] = r.error;
    pids.insert(pid);
  }
  for (const pid_t pid : pids) ::kill(pid, SIGHUP);
  const auto deadline = Clock::now() + reload_timeout_;
  for (const auto& [g, old_error] : before) {
    for (;;) {
      const Reported r = reported(socket(g));
      if (r.generation >= gen) break;
      if (!r.error.empty() && r.error != old_error) {
        return {grpc::StatusCode::ABORTED, "guest " + g + ": the TOE rejected generation " +
                                               std::to_string(gen) + ": " + r.error};
      }
      if (Clock::now() >= deadline) {
        return {grpc::StatusCode::DEADLINE_EXCEEDED,
                "guest " + g + ": the TOE did not report generation " + std::to_string(gen) +
                    " (it reports " + std::to_string(r.generation) + ")"};
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  return grpc::Status::OK;
}

grpc::Status HostControlService::ApplyTopology(grpc::ServerContext*,
                                               const v1::ApplyTopologyRequest* req,
                                               v1::ApplyTopologyResponse* resp) {
  std::uint64_t gen = 0;
  std::vector<std::string> warnings;
  auto st = commit([&](const cli::Config& cfg) { return apply_topology(cfg, req->topology()); },
                   req->dry_run(), &gen, &warnings);
  resp->set_generation(gen);
  for (auto& w : warnings) resp->add_warnings(w);
  return st;
}

grpc::Status HostControlService::SetChain(grpc::ServerContext*, const v1::SetChainRequest* req,
                                          v1::SetChainResponse* resp) {
  std::uint64_t gen = 0;
  std::vector<std::string> warnings;
  auto st = commit([&](const cli::Config& cfg) { return set_chain(cfg, req->chain()); }, false,
                   &gen, &warnings);
  resp->set_generation(gen);
  for (auto& w : warnings) resp->add_warnings(w);
  return st;
}

grpc::Status HostControlService::AddPolicy(grpc::ServerContext*, const v1::AddPolicyRequest* req,
                                           v1::AddPolicyResponse* resp) {
  std::uint64_t gen = 0;
  std::vector<std::string> warnings;
  auto st = commit([&](const cli::Config& cfg) { return add_policy(cfg, req->policy()); }, false,
                   &gen, &warnings);
  resp->set_generation(gen);
  for (auto& w : warnings) resp->add_warnings(w);
  return st;
}

grpc::Status HostControlService::RemovePolicy(grpc::ServerContext*,
                                              const v1::RemovePolicyRequest* req,
                                              v1::RemovePolicyResponse* resp) {
  std::uint64_t gen = 0;
  std::vector<std::string> warnings;
  auto st = commit([&](const cli::Config& cfg) { return remove_policy(cfg, req->name()); }, false,
                   &gen, &warnings);
  resp->set_generation(gen);
  for (auto& w : warnings) resp->add_warnings(w);
  return st;
}

std::vector<cli::GuestStatus> HostControlService::guest_status() {
  std::vector<std::string> names;
  std::string dir;
  {
    std::lock_guard lock(sup_.mutex());
    for (const auto& g : cfg_.guests) names.push_back(g.name);
    dir = cfg_.platform.runtime_dir;
  }
  std::vector<cli::GuestStatus> out;
  for (const auto& g : names) {
    cli::GuestStatus gs;
    gs.guest = g;
    auto text =
        cli::fetch_status(cli::guest_paths(dir, g, "").status_socket, std::chrono::seconds(3));
    if (text) {
      gs.json = *text;
      if (auto j = cli::parse_json(gs.json); !j) {
        gs.error = "TOE sent invalid status: " + j.error().message;
        gs.json.clear();
      }
    } else {
      gs.error = "TOE not reachable (restarting?): " + text.error().message;
    }
    out.push_back(std::move(gs));
  }
  return out;
}

grpc::Status HostControlService::GetGuestStatus(grpc::ServerContext*,
                                                const v1::GetGuestStatusRequest* req,
                                                v1::GetGuestStatusResponse* resp) {
  resp->set_runtime_dir(runtime_dir_);
  resp->set_pid(::getpid());
  const std::set<std::string> want(req->guests().begin(), req->guests().end());
  for (auto& gs : guest_status()) {
    if (!want.empty() && !want.contains(gs.guest)) continue;
    auto* g = resp->add_guests();
    g->set_guest(gs.guest);
    g->set_json(gs.json);
    g->set_error(gs.error);
  }
  return grpc::Status::OK;
}

grpc::Status HostControlService::GetStats(grpc::ServerContext*, const v1::GetStatsRequest* req,
                                          v1::Stats* resp) {
  resp->set_timestamp_unix_ns(unix_ns_now());
  resp->set_source("tosec-hostd");
  const std::set<std::string> want(req->guests().begin(), req->guests().end());
  for (const auto& gs : guest_status()) {
    if (!want.empty() && !want.contains(gs.guest)) continue;
    auto j = cli::parse_json(gs.json);
    auto* g = resp->add_guests();
    g->set_guest(gs.guest);
    if (!j) continue;
    if (const auto* s = j->get("sockets")) {
      std::uint64_t open = 0;
      for (const auto& [k, v] : s->object) open += u64(&v);
      g->set_streams_open(open);
    }
    g->set_bytes_out(u64(j->get("bytes_from_guest")));
    g->set_bytes_in(u64(j->get("bytes_to_guest")));
    g->set_bad_descriptors(u64(j->get("bad_descriptors")));
    const auto* m = j->get("metrics");
    if (m == nullptr) continue;
    if (const auto* st = m->get("streams")) g->set_payloads_blocked(u64(st->get("blocked")));
    if (const auto* svms = m->get("svms"); svms != nullptr) {
      for (const auto& sv : svms->array) {
        auto* ps = resp->add_svms();
        if (const auto* n = sv.get("name"); n != nullptr) ps->set_svm(gs.guest + "." + n->string);
        ps->set_svm_id(static_cast<std::uint32_t>(u64(sv.get("node"))));
        ps->set_payloads(u64(sv.get("payloads")));
        ps->set_bytes(u64(sv.get("bytes")));
        ps->set_verdict_pass(u64(sv.get("pass")));
        ps->set_verdict_block(u64(sv.get("block")));
        ps->set_alerts(u64(sv.get("alert")));
      }
    }
  }
  return grpc::Status::OK;
}

namespace {

void fill_alert(const std::string& line, v1::Alert* a) {
  a->set_eve_json(line);
  auto j = cli::parse_json(line);
  if (!j || j->type != cli::JsonValue::Type::kObject) return;
  auto str = [&](const cli::JsonValue* v) {
    return v != nullptr && v->type == cli::JsonValue::Type::kString ? v->string : std::string();
  };
  a->set_guest(str(j->get("guest")));
  a->set_svm(str(j->get("svm")));
  a->set_stream_id(u64(j->get("flow_id")));
  if (const auto* al = j->get("alert")) {
    a->set_message(str(al->get("signature")));
    a->set_rule_id(u64(al->get("signature_id")));
    a->set_category(str(al->get("category")));
    a->set_severity(static_cast<std::uint32_t>(u64(al->get("severity"))));
    const std::string action = str(al->get("action"));
    a->set_action(action == "blocked"   ? v1::ALERT_ACTION_BLOCKED
                  : action == "allowed" ? v1::ALERT_ACTION_ALLOWED
                                        : v1::ALERT_ACTION_UNSPECIFIED);
  }
}

}  // namespace

grpc::Status HostControlService::StreamAlerts(grpc::ServerContext* ctx,
                                              const v1::StreamAlertsRequest* req,
                                              grpc::ServerWriter<v1::Alert>* writer) {
  const std::string path = runtime_dir_ + "/logs/eve.json";
  auto wanted = [&](const v1::Alert& a) {
    return req->guest().empty() || a.guest() == req->guest();
  };
  std::streamoff pos = 0;
  std::string partial;
  // Backlog: the last `backlog` complete lines (of the guest asked for).
  {
    std::ifstream in(path, std::ios::binary);
    std::vector<v1::Alert> all;
    std::string line;
    while (in && std::getline(in, line)) {
      if (in.eof()) {  // no newline yet: the writer is mid-line
        partial = line;
        break;
      }
      v1::Alert a;
      fill_alert(line, &a);
      if (wanted(a)) all.push_back(std::move(a));
    }
    in.clear();
    pos = in.is_open() ? static_cast<std::streamoff>(in.tellg()) : 0;
    if (pos < 0) pos = 0;
    pos -= static_cast<std::streamoff>(partial.size());
    partial.clear();
    const std::size_t n = std::min<std::size_t>(all.size(), req->backlog());
    for (std::size_t i = all.size() - n; i < all.size(); ++i) {
      if (!writer->Write(all[i])) return grpc::Status::OK;
    }
  }
  while (req->follow() && !ctx->IsCancelled() && !stopping_) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) continue;
    if (st.st_size < pos) pos = 0;  // rotated or truncated
    if (st.st_size == pos) continue;
    std::ifstream in(path, std::ios::binary);
    in.seekg(pos);
    std::string chunk(static_cast<std::size_t>(st.st_size - pos), '\0');
    in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    chunk.resize(static_cast<std::size_t>(in.gcount()));
    std::size_t start = 0;
    for (std::size_t nl; (nl = chunk.find('\n', start)) != std::string::npos; start = nl + 1) {
      v1::Alert a;
      fill_alert(chunk.substr(start, nl - start), &a);
      if (wanted(a) && !writer->Write(a)) return grpc::Status::OK;
    }
    pos += static_cast<std::streamoff>(start);  // a partial last line is read again
  }
  return grpc::Status::OK;
}

}  // namespace tosec::hostd
