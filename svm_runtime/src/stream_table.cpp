#include "tosec/svm/stream_table.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

namespace tosec::svm {

namespace {

rpc::Result<Hop> hop_from(const tosec::v1::NextHop& h, std::uint32_t nodes, const char* which) {
  Hop out;
  switch (h.kind()) {
    case tosec::v1::HOP_KIND_SVM:
      out.kind = Hop::Kind::kSvm;
      break;
    case tosec::v1::HOP_KIND_TOE:
    case tosec::v1::HOP_KIND_GUEST:
    case tosec::v1::HOP_KIND_UNSPECIFIED:
      out.kind = Hop::Kind::kToe;
      return out;
    default:
      return rpc::Error{EINVAL, std::string(which) + ": hop kind " + std::to_string(h.kind())};
  }
  if (h.step() > 255) {
    return rpc::Error{EINVAL, std::string(which) + ": step " + std::to_string(h.step())};
  }
  out.step = static_cast<std::uint8_t>(h.step());
  if (h.svm_ids().empty()) return rpc::Error{EINVAL, std::string(which) + ": no svm_ids"};
  for (std::uint32_t id : h.svm_ids()) {
    if (id == 0 || id >= nodes) {
      return rpc::Error{EINVAL, std::string(which) + ": svm id " + std::to_string(id) +
                                    " out of [1, " + std::to_string(nodes) + ")"};
    }
    out.nodes.push_back(static_cast<std::uint16_t>(id));
  }
  return out;
}

void hop_to(const Hop& h, tosec::v1::NextHop* out) {
  if (h.kind == Hop::Kind::kToe) {
    out->set_kind(tosec::v1::HOP_KIND_TOE);
    return;
  }
  out->set_kind(tosec::v1::HOP_KIND_SVM);
  out->set_step(h.step);
  for (auto n : h.nodes) out->add_svm_ids(n);
}

rpc::Status endpoint_from(const std::string& ip, std::uint32_t port, Endpoint& e,
                          const char* which) {
  if (ip.size() == 4) {
    e.family = AF_INET;
  } else if (ip.size() == 16) {
    e.family = AF_INET6;
  } else if (ip.empty()) {
    e.family = 0;
  } else {
    return rpc::Error{EINVAL, std::string(which) + ": address of " + std::to_string(ip.size()) +
                                  " bytes (expected 4 or 16)"};
  }
  std::memcpy(e.addr, ip.data(), ip.size());
  if (port > 65535)
    return rpc::Error{EINVAL, std::string(which) + ": port " + std::to_string(port)};
  e.port = static_cast<std::uint16_t>(port);
  return {};
}

std::string endpoint_bytes(const Endpoint& e) {
  const std::size_t n = e.family == AF_INET ? 4 : e.family == AF_INET6 ? 16 : 0;
  return std::string(reinterpret_cast<const char*>(e.addr), n);
}

}  // namespace

rpc::Result<StreamRoute> route_from_entry(const tosec::v1::StreamEntry& e, std::uint32_t nodes) {
  StreamRoute r;
  const std::string who = "stream " + std::to_string(e.stream_id());
  r.info.stream_id = e.stream_id();
  r.info.guest = e.guest();
  r.info.guest_is_client = e.guest_is_client();
  const int proto = static_cast<int>(e.flow().protocol());
  r.info.protocol = static_cast<std::uint8_t>(proto == 0 ? static_cast<int>(IPPROTO_TCP) : proto);
  // flow.src is the guest's end (local), flow.dest the peer's (remote), whoever connected.
  if (auto s = endpoint_from(e.flow().src_ip(), e.flow().src_port(), r.info.local,
                             (who + " src").c_str());
      !s) {
    return s.error();
  }
  if (auto s = endpoint_from(e.flow().dest_ip(), e.flow().dest_port(), r.info.remote,
                             (who + " dest").c_str());
      !s) {
    return s.error();
  }
  r.chain_id = e.chain_id();
  if (e.step() > 255) return rpc::Error{EINVAL, who + ": step " + std::to_string(e.step())};
  r.step = static_cast<std::uint8_t>(e.step());
  auto out = hop_from(e.next_hop(), nodes, (who + " next_hop").c_str());
  if (!out) return out.error();
  r.outbound = std::move(*out);
  if (e.has_next_hop_incoming()) {
    auto in = hop_from(e.next_hop_incoming(), nodes, (who + " next_hop_incoming").c_str());
    if (!in) return in.error();
    r.inbound = std::move(*in);
  } else {
    r.inbound = r.outbound;
  }
  return r;
}

tosec::v1::StreamEntry entry_from_route(const StreamRoute& r) {
  tosec::v1::StreamEntry e;
  e.set_stream_id(r.info.stream_id);
  e.set_guest(r.info.guest);
  e.set_guest_is_client(r.info.guest_is_client);
  e.set_chain_id(r.chain_id);
  e.set_step(r.step);
  auto* f = e.mutable_flow();
  f->set_src_ip(endpoint_bytes(r.info.local));
  f->set_src_port(r.info.local.port);
  f->set_dest_ip(endpoint_bytes(r.info.remote));
  f->set_dest_port(r.info.remote.port);
  f->set_protocol(r.info.protocol == IPPROTO_UDP ? tosec::v1::PROTOCOL_UDP
                                                 : tosec::v1::PROTOCOL_TCP);
  hop_to(r.outbound, e.mutable_next_hop());
  hop_to(r.inbound, e.mutable_next_hop_incoming());
  return e;
}

std::size_t StreamTable::apply(const tosec::v1::StreamTableUpdate& u, std::string* errors) {
  for (std::uint64_t id : u.remove()) routes_.erase(id);
  std::size_t rejected = 0;
  for (const auto& e : u.add()) {
    auto r = route_from_entry(e, nodes_);
    if (!r) {
      ++rejected;
      if (errors != nullptr) *errors = r.error().message;
      continue;
    }
    routes_[e.stream_id()] = std::make_shared<const StreamRoute>(std::move(*r));
  }
  return rejected;
}

std::shared_ptr<const StreamRoute> StreamTable::find(std::uint64_t stream_id) const {
  auto it = routes_.find(stream_id);
  return it == routes_.end() ? nullptr : it->second;
}

}  // namespace tosec::svm
