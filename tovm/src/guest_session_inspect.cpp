// The inspection side of a guest session (docs/svm.md): streams selected by a policy go through
// an SVM chain in the inspection region.
//
//   outgoing: guest tx chunk -> TxBuffer bytes -> InspectionLink::submit (the copy into the
//             inspection region) -> chain -> inspect_deliver -> txq -> the stack
//   incoming: the stack -> inspect_buf_ -> submit -> chain -> inspect_deliver -> rx_held ->
//             guest rx chunks (only what the chain passed ever enters the guest region)
//   block:    the peer gets a RST and the guest ECONNRESET (reset_both_ways); nothing of the
//             stream is sent or delivered afterwards.
//
// Flow control: outgoing bytes in the chain count against the socket's tx cap (tx_bytes), so the
// guest's send credit comes back only as the chain and the stack take them; incoming reading
// stops while the chain plus the held bytes reach kInspectRxCap or the region's pool is empty
// (TCP backpressure, never a drop).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include "tosec/tovm/guest_session.h"

namespace tosec::tovm {

namespace {

constexpr std::size_t kInspectRxCap = 512 * 1024;
constexpr std::size_t kMaxInspectReads = 16;

svm::Endpoint to_endpoint(const rpc::Result<SockAddr>& a) {
  svm::Endpoint e;
  if (!a) return e;
  const auto* sa = reinterpret_cast<const sockaddr*>(&a->storage);
  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&a->storage);
    e.family = AF_INET;
    std::memcpy(e.addr, &in->sin_addr, 4);
    e.port = ntohs(in->sin_port);
  } else if (sa->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&a->storage);
    e.family = AF_INET6;
    std::memcpy(e.addr, &in6->sin6_addr, 16);
    e.port = ntohs(in6->sin6_port);
  }
  return e;
}

}  // namespace

rpc::Status GuestSession::init_inspection() {
  if (opts_.inspect_ivshmem.empty()) return {};
  auto link =
      InspectionLink::create({opts_.inspect_ivshmem, opts_.topology, opts_.alert_log, opts_.guest});
  if (!link) return link.error();
  inspect_ = std::move(*link);
  inspect_buf_.resize(inspect_->chunk_size());
  epoll_add(inspect_->doorbell_fd(), EPOLLIN, token(TokenKind::kInspectDoorbell));
  epoll_add(inspect_->ivshmem_fd(), EPOLLIN, token(TokenKind::kInspectIvshmem));
  log(LogLevel::kInfo,
      "inspection region " + opts_.inspect_ivshmem + ", topology " + opts_.topology);
  return {};
}

void GuestSession::reload_topology() {
  if (!inspect_) return;
  if (auto s = inspect_->reload(); !s) {
    log(LogLevel::kError, "topology " + opts_.topology + " rejected, generation " +
                              std::to_string(inspect_->generation()) +
                              " stays in force: " + s.message());
    return;
  }
  log(LogLevel::kInfo, "topology " + opts_.topology + " reloaded: generation " +
                           std::to_string(inspect_->generation()) + " for new streams");
}

void GuestSession::mark_inspect_waiting(std::uint32_t id) {
  if (std::find(inspect_waiting_.begin(), inspect_waiting_.end(), id) == inspect_waiting_.end())
    inspect_waiting_.push_back(id);
}

bool GuestSession::inspect_rx_room(const TSocket& s) const {
  return s.inspect_in + s.rx_held_bytes < kInspectRxCap && inspect_->stats().pool_free > 0;
}

int GuestSession::inspection_sleep_ms() const {
  if (!inspect_) return -1;
  if (!inspect_waiting_.empty()) return 1;
  return inspect_->max_sleep_ms();
}

void GuestSession::inspect_open(std::uint32_t id, bool guest_is_client) {
  TSocket& s = sockets_.at(id);
  if (!inspect_ || s.type != SOCK_STREAM || s.inspect_stream != 0) return;
  svm::StreamInfo info;
  info.guest = opts_.guest;
  info.protocol = IPPROTO_TCP;
  info.local = to_endpoint(backend_->local_address(s.handle));
  info.remote = to_endpoint(backend_->peer_address(s.handle));
  info.guest_is_client = guest_is_client;
  auto r = inspect_->open(info);
  if (!r) {
    // Fail-closed chain with an SVM down (or the region full): this connection cannot be
    // inspected, so it does not happen.
    log(LogLevel::kError, "socket " + std::to_string(id) + ": refused: " + r.error().message);
    reset_both_ways(id);
    return;
  }
  if (!*r) return;  // no policy selects a chain
  s.inspect_stream = **r;
  inspect_ids_[s.inspect_stream] = id;
  ++counters_.streams_inspected;
  // Bytes the guest sent while connecting were queued before the stream existed.
  if (!s.txq.empty()) {
    auto q = std::move(s.txq);
    s.txq.clear();
    for (auto& b : q) {
      const auto rest = std::span<const std::byte>(b.bytes).subspan(b.sent);
      inspect_submit_out(id, std::vector<std::byte>(rest.begin(), rest.end()));
    }
  }
}

void GuestSession::inspect_submit_out(std::uint32_t id, std::vector<std::byte> bytes) {
  TSocket& s = sockets_.at(id);
  s.inspect_out += bytes.size();
  const std::size_t chunk = inspect_->chunk_size();
  std::size_t off = 0;
  while (off < bytes.size()) {
    const std::size_t n = std::min(chunk, bytes.size() - off);
    const auto piece = std::span<const std::byte>(bytes).subspan(off, n);
    if (s.inspect_out_wait.empty()) {
      auto r = inspect_->submit(s.inspect_stream, svm::Direction::kOutbound, piece);
      if (r) {
        off += n;
        continue;
      }
      if (r.error().code != ENOBUFS) {
        // ECONNRESET: the stream is blocked (its block event comes in poll()); these bytes
        // are dropped with it.
        s.inspect_out -= bytes.size() - off;
        return;
      }
    }
    s.inspect_out_wait.emplace_back(piece.begin(), piece.end());
    mark_inspect_waiting(id);
    off += n;
  }
}

void GuestSession::inspect_read(std::uint32_t id) {
  TSocket& s = sockets_.at(id);
  for (std::size_t i = 0; i < kMaxInspectReads; ++i) {
    if (!inspect_rx_room(s)) {
      if (!s.inspect_rx_stalled) {
        s.inspect_rx_stalled = true;
        ++counters_.rx_backpressure_events;
        mark_inspect_waiting(id);
        update_interest(id);
      }
      return;
    }
    auto r = backend_->recv(s.handle, inspect_buf_, nullptr);
    if (!r) {
      const int err = r.error().code;
      if (err != EAGAIN && err != EINTR) on_socket_error(id, err);
      return;
    }
    if (*r == 0) {
      s.peer_closed = true;
      if (s.inspect_in > 0 || s.rx_held_bytes > 0) {
        s.fin_deferred = true;  // the guest sees EOF after the bytes before it
        update_interest(id);
      } else {
        publish_peer_fin(id);
      }
      return;
    }
    counters_.bytes_rx_wire += *r;
    auto t = inspect_->submit(s.inspect_stream, svm::Direction::kInbound,
                              std::span<const std::byte>(inspect_buf_).first(*r));
    if (!t) return;  // blocked: its block event resets the connection in poll()
    s.inspect_in += *r;
    if (*r < inspect_buf_.size()) return;
  }
}

bool GuestSession::inspect_poll() {
  if (!inspect_) return false;
  const svm::PlaneCallbacks cb{
      [this](std::uint64_t stream, svm::Direction dir, std::span<const std::byte> b) {
        inspect_deliver(stream, dir, b);
      },
      [this](const svm::BlockInfo& info) { inspect_block(info); }};
  bool progress = inspect_->poll(cb) > 0;
  // Retry what waited for a pool chunk or for guest rx room.
  auto waiting = std::move(inspect_waiting_);
  inspect_waiting_.clear();
  for (std::uint32_t id : waiting) {
    TSocket* s = sockets_.find(id);
    if (s == nullptr || s->inspect_stream == 0) continue;
    while (!s->inspect_out_wait.empty()) {
      auto r = inspect_->submit(s->inspect_stream, svm::Direction::kOutbound,
                                s->inspect_out_wait.front());
      if (!r && r.error().code == ENOBUFS) break;
      if (!r) s->inspect_out -= s->inspect_out_wait.front().size();
      s->inspect_out_wait.pop_front();
      progress = true;
    }
    drain_rx_held(id);
    if ((s = sockets_.find(id)) == nullptr) continue;
    if (s->inspect_rx_stalled && inspect_rx_room(*s)) {
      s->inspect_rx_stalled = false;
      update_interest(id);  // level-triggered: data already waiting wakes us
      progress = true;
    }
    if (!s->inspect_out_wait.empty() || !s->rx_held.empty() || s->inspect_rx_stalled) {
      mark_inspect_waiting(id);
    }
  }
  return progress;
}

void GuestSession::inspect_deliver(std::uint64_t stream, svm::Direction dir,
                                   std::span<const std::byte> b) {
  auto it = inspect_ids_.find(stream);
  if (it == inspect_ids_.end()) return;
  const std::uint32_t id = it->second;
  TSocket& s = sockets_.at(id);
  counters_.inspect_passed_bytes += b.size();
  if (dir == svm::Direction::kOutbound) {
    s.inspect_out -= std::min(s.inspect_out, b.size());
    TxBuffer buf;
    if (!spare_tx_.empty()) {
      buf.bytes = std::move(spare_tx_.back());
      spare_tx_.pop_back();
    }
    buf.bytes.assign(b.begin(), b.end());
    s.txq.push_back(std::move(buf));
    flush_tx(id);
    if (sockets_.find(id) != nullptr) release_deferred(id, false);
    return;
  }
  s.inspect_in -= std::min(s.inspect_in, b.size());
  s.rx_held.emplace_back(b.begin(), b.end());
  s.rx_held_bytes += b.size();
  drain_rx_held(id);
}

void GuestSession::drain_rx_held(std::uint32_t id) {
  TSocket& s = sockets_.at(id);
  bool delivered = false;
  while (!s.rx_held.empty() && s.rx.free_slots() > 0 && rx_alloc_.free_count() > 0) {
    const std::uint32_t chunk = *rx_alloc_.allocate();
    auto mem = channel_.rx_pool().chunk(chunk);
    const auto& front = s.rx_held.front();
    const std::size_t n = std::min(mem.size(), front.size() - s.rx_held_off);
    std::memcpy(mem.data(), front.data() + s.rx_held_off, n);
    lend_rx_chunk(id, chunk, static_cast<std::uint32_t>(n));
    counters_.bytes_to_guest += n;
    s.rx_held_bytes -= n;
    s.rx_held_off += n;
    if (s.rx_held_off == front.size()) {
      s.rx_held.pop_front();
      s.rx_held_off = 0;
    }
    delivered = true;
  }
  if (delivered) signal_arrival(id);
  if (!s.rx_held.empty()) {
    request_return_doorbells(id);  // the guest's kBufferReturn wakes us to go on
    mark_inspect_waiting(id);
  } else if (s.inspect_in == 0 && s.fin_deferred) {
    s.fin_deferred = false;
    publish_peer_fin(id);
  }
}

void GuestSession::inspect_block(const svm::BlockInfo& info) {
  auto it = inspect_ids_.find(info.stream_id);
  if (it == inspect_ids_.end()) return;
  const std::uint32_t id = it->second;
  log(LogLevel::kInfo, "socket " + std::to_string(id) + ": stream " +
                           std::to_string(info.stream_id) + " blocked: " + info.reason);
  ++counters_.streams_blocked;
  reset_both_ways(id);
}

void GuestSession::reset_both_ways(std::uint32_t id) {
  TSocket& s = sockets_.at(id);
  inspect_forget(id);
  s.txq.clear();
  s.tx_bytes = 0;
  s.shut_wr_pending = false;
  s.inspect_out = s.inspect_in = 0;
  s.inspect_out_wait.clear();
  s.rx_held.clear();
  s.rx_held_bytes = s.rx_held_off = 0;
  s.fin_deferred = false;
  s.inspect_rx_stalled = false;
  // The peer gets a RST now (close with SO_LINGER 0); the guest gets ECONNRESET and its
  // placeholder POLLERR|POLLHUP, as for a reset from the peer.
  if (s.handle != kNoHandle) {
    backend_->close(s.handle, true);
    s.handle = kNoHandle;
  }
  on_socket_error(id, ECONNRESET);
}

void GuestSession::inspect_forget(std::uint32_t id) {
  TSocket* s = sockets_.find(id);
  if (s == nullptr || s->inspect_stream == 0) return;
  const std::uint64_t stream = s->inspect_stream;
  s->inspect_stream = 0;
  inspect_ids_.erase(stream);
  if (inspect_) (void)inspect_->close(stream);
}

}  // namespace tosec::tovm
