// GuestSession: consuming request rings, validating and executing requests, completions.
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include "tosec/rpc/notifier.h"
#include "tosec/tovm/guest_session.h"

namespace tosec::tovm {

namespace {
constexpr std::uint32_t kBurst = 32;
constexpr auto op_u16(rpc::Op op) { return static_cast<std::uint16_t>(op); }

// `a` as getsockname/getpeername return it, when it names one IPv4 address and a port (sin_zero
// cleared), so that publishing it needs no system call. Not for anything else: IPv6 (flow
// labels, scopes, mapped addresses) and port 0 (the stack picks) are asked for.
std::optional<SockAddr> exact_ipv4(const SockAddr& a, bool wildcard_ok) {
  if (a.storage.ss_family != AF_INET || a.length < sizeof(sockaddr_in)) return std::nullopt;
  sockaddr_in in{};
  std::memcpy(&in, &a.storage, sizeof in);
  if (in.sin_port == 0 || (!wildcard_ok && in.sin_addr.s_addr == htonl(INADDR_ANY))) {
    return std::nullopt;
  }
  SockAddr out;
  sockaddr_in clean{};
  clean.sin_family = AF_INET;
  clean.sin_port = in.sin_port;
  clean.sin_addr = in.sin_addr;
  std::memcpy(&out.storage, &clean, sizeof clean);
  out.length = sizeof clean;
  return out;
}
}  // namespace

bool GuestSession::drain_lane(std::uint32_t lane) {
  Lane& l = lanes_[lane];
  flush_completions(lane);
  if (!l.out.empty()) return false;  // the guest is not consuming completions: wait for it
  const std::uint32_t room = std::min(kBurst, l.cpl.free_slots());
  if (room == 0) return false;
  rpc::Descriptor batch[kBurst];
  const std::uint32_t n = l.req.dequeue_burst(batch, room);
  if (l.req.broken() || l.cpl.broken()) {
    ++counters_.lanes_closed_broken;
    ++counters_.bad_descriptors;
    log(LogLevel::kError, "lane " + std::to_string(lane) +
                              " closed: " + (l.req.broken() ? l.req.error() : l.cpl.error()));
    mark_lane_dying(lane, "ring broken");
    return false;
  }
  for (std::uint32_t i = 0; i < n; ++i) {
    ++l.requests;
    handle_request(lane, batch[i]);
    if (!l.active) break;
  }
  flush_completions(lane);
  return n > 0;
}

// Why: a posted setsockopt (kDescFlagNoReply) returns before the TOE has seen it, and a child
// forked right after gets a lane of its own; without this its bind on an inherited socket could
// run before the parent's SO_REUSEPORT. Everything the parent posted before fork() is in its
// ring before the child's hello exists, so serving the rings here orders them. Bounded so that a
// guest that keeps posting cannot hold the worker: a ring's worth of bursts per lane. A lane
// whose completion ring is full (its process does not read) is left as it is. Agent lanes are
// skipped: in VM mode this runs inside the agent lane's own batch.
void GuestSession::drain_process_lanes() {
  const std::uint32_t passes = opts_.channel.ring_slots / kBurst + 1;
  for (std::uint32_t i = 0; i < lanes_.size(); ++i) {
    for (std::uint32_t k = 0; k < passes && lanes_[i].active && !lanes_[i].agent; ++k) {
      if (!drain_lane(i)) break;
    }
  }
}

void GuestSession::handle_request(std::uint32_t lane, const rpc::Descriptor& d) {
  Lane& l = lanes_[lane];
  if (l.agent) return handle_agent_request(lane, d);
  ValidationContext ctx;
  ctx.limits = {opts_.channel.max_sockets, &channel_.tx_pool(), &channel_.rx_pool()};
  ctx.sockets = &sockets_;
  ctx.rx = &rx_alloc_;
  ctx.lane = {lane, channel_.lane_tx_first(lane), opts_.channel.tx_chunks_per_lane, &tx_held_};
  if (auto s = validate_guest_request(d, ctx); !s) {
    if (s.code() == EINVAL) {
      ++counters_.bad_descriptors;
      log(LogLevel::kDebug, "lane " + std::to_string(lane) + ": " + s.message());
    }
    // A rejected request still gets its answer. A tx chunk reference is echoed (the guest
    // tracks its send credit by chunk) but the TOE never took it: the guest's own ledger
    // decides whether the chunk is really its own.
    if (d.op != op_u16(rpc::Op::kBufferReturn) && d.op != rpc::kOpKick) {
      rpc::Descriptor c{};
      c.op = d.op;
      c.socket = d.socket;
      c.request_id = d.request_id;
      if (d.pool == static_cast<std::uint16_t>(rpc::PoolId::kTx)) {
        c.pool = d.pool;
        c.chunk = d.chunk;
      }
      c.result = -s.code();
      push_completion(lane, c, false);
    }
    if (d.op == op_u16(rpc::Op::kSocket) || d.op == op_u16(rpc::Op::kAccept)) {
      l.pending_b.erase(d.request_id);  // its B end is closed: the guest sees A hang up
    }
    return;
  }
  // The TOE now holds the tx chunk until the completion is in the ring.
  if (d.pool == static_cast<std::uint16_t>(rpc::PoolId::kTx)) (void)tx_held_.take(d.chunk);
  switch (static_cast<rpc::Op>(d.op)) {
    case rpc::Op::kNop:
      complete(lane, d, 0);
      break;
    case rpc::Op::kSocket:
      op_socket(lane, d);
      break;
    case rpc::Op::kBind:
      op_bind(lane, d);
      break;
    case rpc::Op::kListen:
      op_listen(lane, d);
      break;
    case rpc::Op::kAccept:
      op_accept(lane, d);
      break;
    case rpc::Op::kConnect:
      op_connect(lane, d);
      break;
    case rpc::Op::kSend:
      op_send(lane, d);
      break;
    case rpc::Op::kShutdown:
      op_shutdown(lane, d);
      break;
    case rpc::Op::kSetsockopt:
      op_setsockopt(lane, d);
      break;
    case rpc::Op::kGetsockopt:
      op_getsockopt(lane, d);
      break;
    case rpc::Op::kGetname:
      publish_addresses(d.socket);
      complete(lane, d, 0);
      break;
    case rpc::Op::kBufferReturn:
      op_buffer_return(d);
      break;
    case rpc::Op::kRecv:   // receive is pushed through the rx rings
    case rpc::Op::kClose:  // close is EOF on B (refcounted by the kernel)
      complete(lane, d, -EOPNOTSUPP);
      break;
    default:
      if (d.op == rpc::kOpKick) op_kick(d);
      break;
  }
}

void GuestSession::complete(std::uint32_t lane, const rpc::Descriptor& req, std::int64_t result) {
  rpc::Descriptor c{};
  c.op = req.op;
  c.socket = req.socket;
  c.request_id = req.request_id;
  c.pool = req.pool;
  c.chunk = req.chunk;
  c.result = result;
  push_completion(lane, c, c.pool == static_cast<std::uint16_t>(rpc::PoolId::kTx));
}

void GuestSession::push_completion(std::uint32_t lane, const rpc::Descriptor& c, bool held) {
  lanes_[lane].out.push_back(c);
  lanes_[lane].out_held.push_back(held ? 1 : 0);
}

void GuestSession::flush_completions(std::uint32_t lane) {
  Lane& l = lanes_[lane];
  if (!l.active || l.out.empty()) return;
  const std::uint32_t n =
      l.cpl.enqueue_burst(l.out.data(), static_cast<std::uint32_t>(l.out.size()));
  for (std::uint32_t i = 0; i < n; ++i) {
    const rpc::Descriptor& c = l.out[i];
    if (l.out_held[i] != 0) (void)tx_held_.give(c.chunk);
    if (c.op == op_u16(rpc::Op::kSend)) l.blocked_check.push_back(c.socket);
  }
  l.out.erase(l.out.begin(), l.out.begin() + n);
  l.out_held.erase(l.out_held.begin(), l.out_held.begin() + n);
  if (!l.out.empty()) {
    // The guest must consume completions; ask it to ring us when it does.
    l.cpl.producer_sleeping().store(1, std::memory_order_relaxed);
  }
  if (n > 0) {
    (void)rpc::notify(l.cpl.consumer_sleeping(), ivshmem_.doorbells(), l.peer, l.vector);
  }
}

// kSend completions gave credit back: a guest that filled A (tx_blocked) gets it drained.
void GuestSession::check_tx_blocked(std::uint32_t lane) {
  Lane& l = lanes_[lane];
  if (l.blocked_check.empty()) return;
  std::atomic_thread_fence(std::memory_order_seq_cst);  // Dekker with the guest's tx_blocked
  for (std::uint32_t id : l.blocked_check) {
    TSocket* s = sockets_.find(id);
    if (s == nullptr) continue;
    if (channel_.slot(id)->tx_blocked.load(std::memory_order_relaxed) != 0) make_writable(id);
  }
  l.blocked_check.clear();
}

rpc::UniqueFd GuestSession::take_b_end(std::uint32_t lane, std::uint64_t request_id) {
  Lane& l = lanes_[lane];
  if (l.via_agent) return {};  // VM mode: the agent holds B (kAgentBind names it)
  auto it = l.pending_b.find(request_id);
  if (it == l.pending_b.end()) {
    read_sidecar(lane, request_id);  // the guest sends B before the request: not read yet?
    it = l.pending_b.find(request_id);
    if (it == l.pending_b.end()) return {};
  }
  rpc::UniqueFd fd = std::move(it->second);
  l.pending_b.erase(it);
  return fd;
}

rpc::Result<SockAddr> GuestSession::read_sockaddr(const rpc::Descriptor& d,
                                                  std::uint32_t len) const {
  SockAddr a;
  const auto bytes = channel_.tx_pool().chunk(d.chunk).subspan(d.offset, len);
  std::memcpy(&a.storage, bytes.data(), len);  // copy out first, then look at it
  a.length = static_cast<socklen_t>(len);
  if (a.storage.ss_family == AF_INET && len < sizeof(sockaddr_in)) {
    return rpc::Error{EINVAL, "sockaddr_in too short"};
  }
  if (a.storage.ss_family == AF_INET6 && len < sizeof(sockaddr_in6)) {
    return rpc::Error{EINVAL, "sockaddr_in6 too short"};
  }
  return a;
}

void GuestSession::op_socket(std::uint32_t lane, const rpc::Descriptor& d) {
  rpc::UniqueFd b = take_b_end(lane, d.request_id);
  if (!b.valid() && !lanes_[lane].via_agent) {
    ++counters_.bad_descriptors;
    log(LogLevel::kDebug, "kSocket " + std::to_string(d.request_id) + ": no end B on the sidecar");
    complete(lane, d, -EINVAL);
    return;
  }
  const auto domain = static_cast<int>(d.arg0 & 0xFFFF);
  const auto type = static_cast<int>((d.arg0 >> 16) & 0xFFFF);
  const auto protocol = static_cast<int>(static_cast<std::uint32_t>(d.arg1));
  auto h = backend_->open(domain, type, protocol);
  if (!h) {
    complete(lane, d, -h.error().code);
    return;
  }
  auto id = sockets_.allocate();
  if (!id) {
    backend_->close(*h, false);
    complete(lane, d, -id.error().code);
    return;
  }
  TSocket& s = sockets_.at(*id);
  s.domain = domain;
  s.type = type;
  s.protocol = protocol;
  s.handle = *h;
  if (auto st = setup_socket(*id, lane, d.request_id, std::move(b)); !st) {
    backend_->close(s.handle, false);
    sockets_.release(*id);
    complete(lane, d, -st.code());
    return;
  }
  update_interest(*id);
  publish_buffer_sizes(*id, true);
  rpc::Descriptor c = d;
  c.socket = *id;
  complete(lane, c, *id);
}

void GuestSession::op_bind(std::uint32_t lane, const rpc::Descriptor& d) {
  TSocket& s = sockets_.at(d.socket);
  auto a = read_sockaddr(d, d.length);
  if (!a) return complete(lane, d, -EINVAL);
  if (s.state != rpc::SocketState::kOpen) return complete(lane, d, -EINVAL);
  if (auto st = backend_->bind(s.handle, *a); !st) return complete(lane, d, -st.code());
  const std::optional<SockAddr> bound = exact_ipv4(*a, true);
  publish_addresses(d.socket, false, bound ? &*bound : nullptr);  // kOpen: no peer yet
  if (s.type == SOCK_DGRAM) update_interest(d.socket);
  complete(lane, d, 0);
}

void GuestSession::op_listen(std::uint32_t lane, const rpc::Descriptor& d) {
  TSocket& s = sockets_.at(d.socket);
  if (s.type != SOCK_STREAM) return complete(lane, d, -EOPNOTSUPP);
  if (s.state != rpc::SocketState::kOpen && s.state != rpc::SocketState::kListening) {
    return complete(lane, d, -EINVAL);
  }
  const auto backlog = static_cast<int>(std::clamp<std::uint64_t>(d.arg0, 1, 4096));
  if (auto st = backend_->listen(s.handle, backlog); !st) return complete(lane, d, -st.code());
  s.backlog = backlog;
  publish_state(d.socket, rpc::SocketState::kListening);
  publish_addresses(d.socket, false);
  update_interest(d.socket);
  complete(lane, d, 0);
}

void GuestSession::op_accept(std::uint32_t lane, const rpc::Descriptor& d) {
  rpc::UniqueFd b = take_b_end(lane, d.request_id);
  if (!b.valid() && !lanes_[lane].via_agent) {
    ++counters_.bad_descriptors;
    return complete(lane, d, -EINVAL);
  }
  TSocket& l = sockets_.at(d.socket);
  if (l.state != rpc::SocketState::kListening) return complete(lane, d, -EINVAL);
  if (l.acceptq.empty()) accept_pending(d.socket);
  if (l.acceptq.empty()) return complete(lane, d, -EAGAIN);  // b is closed on return
  auto id = sockets_.allocate();
  if (!id) return complete(lane, d, -EMFILE);
  AcceptedConn conn = l.acceptq.front();
  l.acceptq.pop_front();
  channel_.slot(d.socket)->accept_ready.store(static_cast<std::uint32_t>(l.acceptq.size()),
                                              std::memory_order_release);
  TSocket& s = sockets_.at(*id);
  s.domain = l.domain;
  s.type = l.type;
  s.protocol = l.protocol;
  s.handle = conn.handle;
  s.known_peer = conn.peer;
  if (auto st = setup_socket(*id, lane, d.request_id, std::move(b)); !st) {
    backend_->close(s.handle, true);
    sockets_.release(*id);
    return complete(lane, d, -st.code());
  }
  publish_state(*id, rpc::SocketState::kConnected);
  publish_addresses(*id);
  update_interest(*id);
  update_interest(d.socket);  // room in the accept queue again
  inspect_open(*id, false);
  complete(lane, d, *id);
}

void GuestSession::op_connect(std::uint32_t lane, const rpc::Descriptor& d) {
  TSocket& s = sockets_.at(d.socket);
  auto a = read_sockaddr(d, d.length);
  if (!a) return complete(lane, d, -EINVAL);
  if (s.state == rpc::SocketState::kConnecting) return complete(lane, d, -EALREADY);
  if (s.state == rpc::SocketState::kConnected && s.type == SOCK_STREAM) {
    return complete(lane, d, -EISCONN);
  }
  if (s.state == rpc::SocketState::kListening) return complete(lane, d, -EISCONN);
  // A stream connects once, to exactly this address: the peer address needs no getpeername.
  // (A datagram socket's connect can also dissolve the association, AF_UNSPEC: ask then.)
  s.known_peer = s.type == SOCK_STREAM ? exact_ipv4(*a, false).value_or(SockAddr{}) : SockAddr{};
  auto st = backend_->connect(s.handle, *a);
  if (!st && st.code() == EINPROGRESS) {
    publish_state(d.socket, rpc::SocketState::kConnecting);
    update_interest(d.socket);
    return complete(lane, d, -EINPROGRESS);
  }
  if (!st) {
    s.known_peer = SockAddr{};  // not connected after all
    make_writable(d.socket);    // the guest may have filled A to wait for us
    return complete(lane, d, -st.code());
  }
  publish_state(d.socket, rpc::SocketState::kConnected);
  publish_addresses(d.socket);
  update_interest(d.socket);
  make_writable(d.socket);
  inspect_open(d.socket, true);
  complete(lane, d, 0);
}

void GuestSession::op_send(std::uint32_t lane, const rpc::Descriptor& d) {
  TSocket& s = sockets_.at(d.socket);
  if (s.reset) return complete(lane, d, -ECONNRESET);
  if (s.shut_wr_pending ||
      (channel_.slot(d.socket)->events.load(std::memory_order_relaxed) & rpc::kEvWriteShut) != 0) {
    return complete(lane, d, -EPIPE);
  }
  if (s.type == SOCK_STREAM && s.state != rpc::SocketState::kConnected &&
      s.state != rpc::SocketState::kConnecting) {
    return complete(lane, d, -ENOTCONN);
  }
  // The one copy: out of the guest's chunk into TOE memory, before anything looks at it.
  const auto src = channel_.tx_pool().chunk(d.chunk).subspan(d.offset, d.length);
  TxBuffer buf;
  if (!spare_tx_.empty()) {
    buf.bytes = std::move(spare_tx_.back());
    spare_tx_.pop_back();
  }
  const std::size_t addr_len = s.type == SOCK_DGRAM ? static_cast<std::size_t>(d.arg1) : 0;
  if (addr_len > 0) {
    std::memcpy(&buf.to.storage, src.data(), addr_len);
    buf.to.length = static_cast<socklen_t>(addr_len);
    buf.has_to = true;
  }
  buf.bytes.assign(src.begin() + static_cast<std::ptrdiff_t>(addr_len), src.end());
  buf.flags = (d.arg0 & MSG_MORE) != 0 ? MSG_MORE : 0;
  const std::size_t payload = buf.bytes.size();
  counters_.bytes_from_guest += payload;
  if (s.type == SOCK_DGRAM && !buf.has_to && s.state != rpc::SocketState::kConnected) {
    return complete(lane, d, -EDESTADDRREQ);
  }
  s.tx_bytes += payload;
  if (s.inspect_stream != 0) {
    inspect_submit_out(d.socket, std::move(buf.bytes));  // the chain decides what goes out
  } else {
    s.txq.push_back(std::move(buf));
  }
  rpc::Descriptor c{};
  c.op = d.op;
  c.socket = d.socket;
  c.request_id = d.request_id;
  c.pool = d.pool;
  c.chunk = d.chunk;
  c.result = static_cast<std::int64_t>(d.length);
  s.deferred.push_back({lane, lanes_[lane].epoch, c});
  if (s.state == rpc::SocketState::kConnected || s.type == SOCK_DGRAM) flush_tx(d.socket);
  release_deferred(d.socket, false);
}

void GuestSession::op_shutdown(std::uint32_t lane, const rpc::Descriptor& d) {
  TSocket& s = sockets_.at(d.socket);
  const int how = static_cast<int>(d.arg0);
  if (s.state != rpc::SocketState::kConnected && s.state != rpc::SocketState::kConnecting &&
      s.state != rpc::SocketState::kListening) {
    return complete(lane, d, -ENOTCONN);
  }
  if (how == SHUT_RD || how == SHUT_RDWR) {
    if (auto st = backend_->shutdown(s.handle, SHUT_RD); !st && st.code() != ENOTCONN) {
      return complete(lane, d, -st.code());
    }
    s.read_shut = true;
  }
  if (how == SHUT_WR || how == SHUT_RDWR) {
    if (s.txq.empty() && s.inspect_out == 0) {
      if (auto st = backend_->shutdown(s.handle, SHUT_WR); !st)
        return complete(lane, d, -st.code());
    } else {
      s.shut_wr_pending = true;  // FIN goes after the queued bytes
    }
    channel_.slot(d.socket)->events.fetch_or(rpc::kEvWriteShut, std::memory_order_release);
  }
  update_interest(d.socket);
  complete(lane, d, 0);
}

void GuestSession::op_setsockopt(std::uint32_t lane, const rpc::Descriptor& d) {
  TSocket& s = sockets_.at(d.socket);
  const auto level = static_cast<int>(d.arg0 >> 32);
  const auto name = static_cast<int>(d.arg0 & 0xFFFF'FFFFULL);
  std::byte value[256];
  std::size_t len = std::min<std::size_t>(d.length, sizeof value);
  if (d.pool == static_cast<std::uint16_t>(rpc::PoolId::kTx)) {
    std::memcpy(value, channel_.tx_pool().chunk(d.chunk).subspan(d.offset, len).data(), len);
  } else {
    len = std::min<std::size_t>(len, sizeof d.arg1);  // inline (validated: <= 8 bytes)
    std::memcpy(value, &d.arg1, len);
  }
  const bool reply = (d.flags & rpc::kDescFlagNoReply) == 0;
  auto st = backend_->setsockopt(s.handle, level, name, std::span<const std::byte>(value, len));
  if (!st) {
    if (!reply) {
      // The guest went on believing this cannot fail: say so, it is a shim bug or odd kernel.
      ++counters_.async_setsockopt_failures;
      log(LogLevel::kError, "socket " + std::to_string(d.socket) + ": posted setsockopt(" +
                                std::to_string(level) + ", " + std::to_string(name) +
                                ") failed: " + st.message());
      return;
    }
    return complete(lane, d, -st.code());
  }
  if (level == SOL_SOCKET && name == SO_LINGER && len >= sizeof(linger)) {
    linger lg{};
    std::memcpy(&lg, value, sizeof lg);
    s.linger0 = lg.l_onoff != 0 && lg.l_linger == 0;
  }
  if (level == SOL_SOCKET && name == SO_SNDBUF && len >= sizeof(int)) {
    int v = 0;
    std::memcpy(&v, value, sizeof v);
    s.tx_cap = std::clamp<std::size_t>(static_cast<std::size_t>(std::max(v, 0)) * 2, 16384,
                                       std::size_t{64} << 20);
  }
  if (level == SOL_SOCKET && (name == SO_SNDBUF || name == SO_RCVBUF || name == SO_SNDBUFFORCE ||
                              name == SO_RCVBUFFORCE)) {
    publish_buffer_sizes(d.socket, false);  // the kernel doubled (and clamped) the value
  }
  if (reply) complete(lane, d, 0);
}

void GuestSession::op_getsockopt(std::uint32_t lane, const rpc::Descriptor& d) {
  TSocket& s = sockets_.at(d.socket);
  const auto level = static_cast<int>(d.arg0 >> 32);
  const auto name = static_cast<int>(d.arg0 & 0xFFFF'FFFFULL);
  std::byte value[16]{};
  auto r = backend_->getsockopt(s.handle, level, name, value);
  if (!r) return complete(lane, d, -r.error().code);
  rpc::Descriptor c{};
  c.op = d.op;
  c.socket = d.socket;
  c.request_id = d.request_id;
  c.result = static_cast<std::int64_t>(*r);
  std::memcpy(&c.arg0, value, 8);
  std::memcpy(&c.arg1, value + 8, 8);
  push_completion(lane, c, false);
}

void GuestSession::op_buffer_return(const rpc::Descriptor& d) {
  // d.chunk is in range (validated). The return must end the loan it names: socket and
  // generation. A return that sat in a lane while its socket closed names a loan that ended
  // then (finish_close reclaimed the chunk); the chunk may be lent again by now.
  const RxLoan loan = rx_owner_[d.chunk];
  if (loan.socket != d.socket || loan.generation != static_cast<std::uint32_t>(d.arg0)) {
    // No loan (kNone never equals a validated socket id), an ended one, or another socket's:
    // late, or a guest returning what it does not hold. It must not end someone else's loan.
    ++counters_.stale_buffer_returns;
    log(LogLevel::kDebug, "kBufferReturn: rx chunk " + std::to_string(d.chunk) + " of socket " +
                              std::to_string(d.socket) + " generation " + std::to_string(d.arg0) +
                              ": not its loan, ignored");
    return;
  }
  if (auto st = rx_alloc_.reclaim(d.chunk); !st) {
    ++counters_.bad_descriptors;
    log(LogLevel::kDebug, "kBufferReturn: " + st.message());
    return;
  }
  rx_owner_[d.chunk] = {};
  if (TSocket* s = sockets_.find(loan.socket); s != nullptr && s->rx_lent > 0) --s->rx_lent;
  resume_paused();
}

// A readable if anything is there to read (the guest's flag reset first: whatever it says is
// stale), and a socket paused for want of rx room resumed.
void GuestSession::resignal_readable(std::uint32_t id) {
  TSocket& s = sockets_.at(id);
  auto ring = s.rx;  // copy: reading the consumer index must not disturb our producer end
  const bool data = ring.free_slots() < ring.capacity();
  if (data || s.peer_closed || s.so_error != 0 || s.reset || !s.acceptq.empty()) {
    channel_.slot(id)->rx_signalled.store(0, std::memory_order_relaxed);
    signal_readable(id);
  }
  if (s.rx_paused) resume_paused();
}

void GuestSession::op_kick(const rpc::Descriptor& d) {
  TSocket& s = sockets_.at(d.socket);
  if (d.arg0 == 1) {
    resignal_readable(d.socket);
  } else {
    const bool credit = s.state != rpc::SocketState::kConnecting && s.tx_bytes < s.tx_cap;
    if (credit) make_writable(d.socket);
  }
}

}  // namespace tosec::tovm
