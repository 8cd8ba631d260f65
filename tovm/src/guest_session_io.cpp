// GuestSession: sockets, readiness mirror (end B), the tx and rx data paths, close.
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include "tosec/tovm/guest_session.h"

namespace tosec::tovm {

namespace {
constexpr std::size_t kMaxReadsPerEvent = 16;  // fairness between sockets of one guest
std::uint64_t socket_token(std::uint32_t id, std::uint32_t generation) {
  return std::uint64_t{generation} << 32 | id;
}
}  // namespace

Placeholders& GuestSession::ph(std::uint32_t id) {
  if (sockets_.at(id).agent_held) return *agent_ph_;
  return *local_ph_;
}

rpc::Status GuestSession::setup_socket(std::uint32_t id, std::uint32_t lane,
                                       std::uint64_t request_id, rpc::UniqueFd b_end) {
  TSocket& s = sockets_.at(id);
  rpc::SocketSlot* slot = channel_.slot(id);
  // A fresh rx ring: entries a previous user left behind are gone (their chunks reclaimed).
  auto* base = reinterpret_cast<std::byte*>(slot) + sizeof(rpc::SocketSlot);
  const std::size_t ring_bytes =
      rpc::kRingHeaderSize + std::size_t{opts_.channel.socket_rx_entries} * sizeof(rpc::RxEntry);
  if (auto st = rpc::SpscRing::format({base, ring_bytes}, opts_.channel.socket_rx_entries,
                                      sizeof(rpc::RxEntry));
      !st) {
    return st;
  }
  auto ring = channel_.rx_ring(id, rpc::RingEnd::kProducer);
  if (!ring) return ring.error();
  s.rx = std::move(*ring);
  s.agent_held = lanes_[lane].via_agent;
  if (auto st = ph(id).attach(id, {lane, request_id, s.generation}, std::move(b_end)); !st) {
    s.agent_held = false;
    return st;
  }
  // Publish a clean slot: guest-owned fields reset, then identity, then state (release).
  slot->rx_signalled.store(0, std::memory_order_relaxed);
  slot->rx_bytes_signalled.store(0, std::memory_order_relaxed);
  slot->rx_bytes_drained = 0;
  slot->tx_blocked.store(0, std::memory_order_relaxed);
  slot->rx_lock.store(0, std::memory_order_relaxed);
  slot->rx_offset = 0;
  slot->nonblock.store(0, std::memory_order_relaxed);
  slot->tx_inflight.store(0, std::memory_order_relaxed);
  slot->guest_error_seq = 0;
  slot->events.store(0, std::memory_order_relaxed);
  slot->so_error.store(0, std::memory_order_relaxed);
  slot->error_seq.store(0, std::memory_order_relaxed);
  slot->accept_ready.store(0, std::memory_order_relaxed);
  slot->rx_paused.store(0, std::memory_order_relaxed);
  slot->sndbuf.store(0, std::memory_order_relaxed);
  slot->rcvbuf.store(0, std::memory_order_relaxed);
  slot->family = static_cast<std::uint16_t>(s.domain);
  slot->type = static_cast<std::uint16_t>(s.type);
  slot->protocol = s.protocol;
  slot->local = {};
  slot->peer = {};
  slot->generation.store(s.generation, std::memory_order_relaxed);
  slot->state.store(rpc::SocketState::kOpen, std::memory_order_release);
  return {};
}

void GuestSession::publish_state(std::uint32_t id, rpc::SocketState st) {
  sockets_.at(id).state = st;
  channel_.slot(id)->state.store(st, std::memory_order_release);
}

void GuestSession::publish_addresses(std::uint32_t id, bool with_peer, const SockAddr* local) {
  TSocket& s = sockets_.at(id);
  rpc::SocketSlot* slot = channel_.slot(id);
  auto put = [](rpc::SlotAddress& dst, const rpc::Result<SockAddr>& a) {
    rpc::SlotAddress v{};
    if (a) {
      const std::size_t n = std::min<std::size_t>(a->length, sizeof v.bytes);
      std::memcpy(v.bytes, &a->storage, n);
      v.length = static_cast<std::uint16_t>(n);
    }
    dst = v;
  };
  put(slot->local,
      local != nullptr ? rpc::Result<SockAddr>(*local) : backend_->local_address(s.handle));
  if (with_peer) {
    put(slot->peer, s.known_peer.length > 0 ? rpc::Result<SockAddr>(s.known_peer)
                                            : backend_->peer_address(s.handle));
  } else {
    slot->peer = rpc::SlotAddress{};
  }
  std::atomic_thread_fence(std::memory_order_release);
}

void GuestSession::publish_buffer_sizes(std::uint32_t id, bool fresh) {
  TSocket& s = sockets_.at(id);
  rpc::SocketSlot* slot = channel_.slot(id);
  auto read = [&](int name) {
    std::byte v[16]{};
    auto r = backend_->getsockopt(s.handle, SOL_SOCKET, name, v);
    int out = 0;
    if (r && *r >= sizeof(int)) std::memcpy(&out, v, sizeof out);
    return std::max(out, 0);
  };
  int snd = 0;
  int rcv = 0;
  if (s.state == rpc::SocketState::kOpen && s.handle != kNoHandle) {
    if (fresh) {
      // Defaults change only with sysctl: one read a second per kind spares two getsockopt
      // calls per socket() (netperf TCP_CRR asks for both on every connection).
      BufferDefaults& d =
          buffer_defaults_[(s.domain == AF_INET6 ? 2 : 0) + (s.type == SOCK_DGRAM ? 1 : 0)];
      const auto now = std::chrono::steady_clock::now();
      if (d.domain != s.domain || d.type != s.type || now - d.read_at > std::chrono::seconds(1)) {
        d = {s.domain, s.type, read(SO_SNDBUF), read(SO_RCVBUF), now};
      }
      snd = d.sndbuf;
      rcv = d.rcvbuf;
    } else {
      snd = read(SO_SNDBUF);
      rcv = read(SO_RCVBUF);
    }
  }
  slot->sndbuf.store(snd, std::memory_order_relaxed);
  slot->rcvbuf.store(rcv, std::memory_order_release);
}

void GuestSession::write_readiness_byte(std::uint32_t id) {
  // Counted before the write: the guest skips its drain only when the counts are equal, so a
  // count ahead of the bytes costs it one SIOCINQ, a byte ahead of the count would be missed.
  channel_.slot(id)->rx_bytes_signalled.fetch_add(1, std::memory_order_seq_cst);
  ph(id).signal(id);
}

void GuestSession::signal_readable(std::uint32_t id) {
  // EOF, error, accept queue, kick: one byte unless A has one (1) or a reader spinning on the
  // slot claimed it (kRxClaimed: it sees accept_ready/events itself, and resets the claim and
  // re-checks before it sleeps on A).
  if (!ph(id).attached(id)) return;
  std::atomic_thread_fence(std::memory_order_seq_cst);  // our publication before the flag
  std::uint32_t expected = 0;
  if (!channel_.slot(id)->rx_signalled.compare_exchange_strong(expected, 1,
                                                               std::memory_order_seq_cst)) {
    return;
  }
  write_readiness_byte(id);
}

void GuestSession::signal_arrival(std::uint32_t id) {
  // One byte per batch of RxEntries, even when A is already readable: an EPOLLET waiter on A
  // wakes once per arrival, as on a kernel TCP socket. The guest drains every byte when it
  // empties the ring. EAGAIN on a full B is harmless (A is readable anyway). No byte while a
  // reader claims the socket: the fence orders our ring push before reading the claim, the
  // reader's reset of the claim before its ring re-check (Dekker), so one of us sees the other.
  if (!ph(id).attached(id)) return;
  rpc::SocketSlot* slot = channel_.slot(id);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  std::uint32_t seen = slot->rx_signalled.load(std::memory_order_seq_cst);
  do {
    if (seen == rpc::kRxClaimed) return;
  } while (!slot->rx_signalled.compare_exchange_weak(seen, 1, std::memory_order_seq_cst));
  write_readiness_byte(id);
}

void GuestSession::mirror_peer_fin(std::uint32_t id) {
  // The peer's FIN: A reports POLLIN|POLLRDHUP and reads 0 once the readiness bytes are gone.
  ph(id).shut_write(id);
}

void GuestSession::make_writable(std::uint32_t id) {
  // Only a guest that filled A with junk publishes tx_blocked, after the fill (fence): seeing
  // it clear means there is nothing to drain, or the guest has yet to publish and will then
  // re-check and kick us (its half of the Dekker pattern). A blocking connect that caught the
  // handshake in its spin never filled A: no FIONREAD/peek/recv here for it.
  if (channel_.slot(id)->tx_blocked.exchange(0, std::memory_order_seq_cst) == 0) return;
  // Drain the guest's junk, keeping the sentinel that kill_placeholder relies on.
  ph(id).drain(id);
}

void GuestSession::kill_placeholder(std::uint32_t id) {
  // The connection is dead (reset, refused, timed out). A kernel TCP socket now reports
  // POLLERR|POLLHUP|POLLIN|POLLRDHUP|POLLOUT; an AF_UNIX placeholder reports exactly that when
  // its peer B is *released* while B's receive queue holds unread bytes (unix_release_sock:
  // sk_err = ECONNRESET, sk_shutdown = SHUTDOWN_MASK on A). make_writable keeps the shim's
  // sentinel byte in B for this. Without B, EOF on B can no longer tell us that the guest closed
  // its last reference to A: sock_diag does (check_zombies). In VM mode the agent closes B and
  // watches A itself (kAgentKill, then kAgentHangup).
  TSocket& s = sockets_.at(id);
  if (s.zombie || !ph(id).prepare_kill(id)) return;
  // No readiness byte: closing B makes A readable (RCV_SHUTDOWN) together with the error and
  // the hang-up, atomically for a poller. The guest never recv()s an empty A (it counts with
  // SIOCINQ first), so nothing consumes the ECONNRESET but SO_ERROR.
  channel_.slot(id)->rx_signalled.store(1, std::memory_order_seq_cst);
  ph(id).kill(id);
  s.zombie = true;
  zombies_.push_back(id);
}

bool GuestSession::has_zombies() const {
  return std::any_of(zombies_.begin(), zombies_.end(), [this](std::uint32_t id) {
    const TSocket* s = sockets_.find(id);
    return s != nullptr && !s->agent_held;
  });
}

void GuestSession::check_zombies() {
  if (zombies_.empty()) return;
  const auto now = std::chrono::steady_clock::now();
  if (now < next_zombie_check_) return;
  next_zombie_check_ = now + std::chrono::milliseconds(kZombieCheckMs);
  const auto ids = zombies_;  // begin_close may erase from zombies_
  for (std::uint32_t id : ids) {
    TSocket* s = sockets_.find(id);
    if (s == nullptr || !s->zombie || !ph(id).polls_zombies()) continue;
    auto alive = ph(id).alive(id);
    if (!alive) {
      log(LogLevel::kInfo, "socket " + std::to_string(id) + ": " + alive.error().message);
      continue;  // retried at the next check
    }
    if (!*alive) begin_close(id);  // the guest closed its last reference to A
  }
}

void GuestSession::update_interest(std::uint32_t id) {
  TSocket& s = sockets_.at(id);
  if (s.handle == kNoHandle) return;
  Interest in;
  switch (s.state) {
    case rpc::SocketState::kListening:
      in.read = s.acceptq.size() < static_cast<std::size_t>(std::max(s.backlog, 1));
      break;
    case rpc::SocketState::kConnecting:
      in.write = true;
      break;
    case rpc::SocketState::kOpen:
      if (s.type == SOCK_DGRAM) {
        in.read = !s.rx_paused && !s.read_shut;
        in.write = !s.txq.empty();
      }
      break;
    case rpc::SocketState::kConnected:
      in.read = !s.rx_paused && !s.peer_closed && !s.read_shut && !s.reset && !s.zombie &&
                !s.inspect_rx_stalled;
      in.write = !s.txq.empty();
      // After the peer's FIN a later RST must still reach A (POLLERR); a dead one is done.
      in.error = s.peer_closed && !s.reset && !s.zombie;
      break;
    case rpc::SocketState::kClosing:
      in.write = !s.txq.empty();
      break;
    default:
      break;
  }
  if (s.handle == kNoHandle) return;  // reset by an SVM chain's verdict: nothing to watch
  if (auto st = backend_->set_interest(s.handle, socket_token(id, s.generation), in); !st) {
    log(LogLevel::kError, "socket " + std::to_string(id) + ": " + st.message());
  }
  s.interest = in;
}

std::size_t GuestSession::on_backend_ready() {
  BackendEvent evs[64];
  std::size_t total = 0;
  for (int round = 0; round < 8; ++round) {
    const std::size_t n = backend_->poll(evs);
    total += n;
    for (std::size_t i = 0; i < n; ++i) {
      const auto id = static_cast<std::uint32_t>(evs[i].token & 0xFFFF'FFFFU);
      const auto gen = static_cast<std::uint32_t>(evs[i].token >> 32);
      TSocket* s = sockets_.find(id);
      if (s == nullptr || s->generation != gen) continue;  // closed earlier in this batch
      on_socket_event(id, evs[i]);
    }
    if (n < 64) break;
  }
  return total;
}

void GuestSession::on_socket_event(std::uint32_t id, const BackendEvent& ev) {
  TSocket& s = sockets_.at(id);
  switch (s.state) {
    case rpc::SocketState::kConnecting:
      if (ev.writable || ev.error || ev.hangup) on_connect_done(id, ev);
      return;
    case rpc::SocketState::kListening:
      if (ev.readable) accept_pending(id);
      return;
    case rpc::SocketState::kClosing:
      if (ev.writable || ev.error) flush_tx(id);
      return;
    default:
      break;
  }
  if (ev.writable && !s.txq.empty()) {
    flush_tx(id);
    if (sockets_.find(id) == nullptr) return;
    release_deferred(id, false);
  }
  if (ev.readable && !s.rx_paused && !s.peer_closed) read_socket(id);
  if (ev.error && sockets_.find(id) != nullptr && !s.reset) {
    if (const int err = backend_->take_error(s.handle); err != 0) on_socket_error(id, err);
  }
}

void GuestSession::on_connect_done(std::uint32_t id, const BackendEvent& ev) {
  TSocket& s = sockets_.at(id);
  // Writable with neither error nor hang-up is a connect that succeeded (see BackendEvent): the
  // SO_ERROR read would say 0, and it is one system call of every client connection.
  const int err = ev.writable && !ev.error && !ev.hangup ? 0 : backend_->take_error(s.handle);
  if (err != 0) {
    s.known_peer = SockAddr{};  // not connected after all
    publish_state(id, rpc::SocketState::kOpen);
    on_socket_error(id, err);
    return;
  }
  publish_addresses(id);
  publish_state(id, rpc::SocketState::kConnected);
  update_interest(id);
  make_writable(id);
  inspect_open(id, true);
  if (sockets_.find(id) == nullptr || s.reset) return;
  flush_tx(id);
  if (sockets_.find(id) != nullptr) release_deferred(id, false);
}

void GuestSession::accept_pending(std::uint32_t id) {
  TSocket& s = sockets_.at(id);
  const auto cap = static_cast<std::size_t>(std::max(s.backlog, 1));
  while (s.acceptq.size() < cap) {
    AcceptedConn c;
    auto h = backend_->accept(s.handle, c.peer);
    if (!h) {
      if (h.error().code == ECONNABORTED || h.error().code == EINTR) continue;
      if (h.error().code != EAGAIN) log(LogLevel::kInfo, "accept: " + h.error().message);
      break;
    }
    c.handle = *h;
    s.acceptq.push_back(c);
  }
  channel_.slot(id)->accept_ready.store(static_cast<std::uint32_t>(s.acceptq.size()),
                                        std::memory_order_release);
  if (!s.acceptq.empty()) signal_readable(id);
  update_interest(id);
}

void GuestSession::request_return_doorbells(std::uint32_t id) {
  // Ask for doorbells on kBufferReturn: of this socket (ring full) or, when the pool is empty,
  // of every socket holding chunks (any of their returns can resume us).
  publish_paused(id);
  if (rx_alloc_.free_count() == 0) {
    for (std::uint32_t o = 0; o < sockets_.capacity(); ++o) {
      if (const TSocket* t = sockets_.find(o); t != nullptr && t->rx_lent > 0) publish_paused(o);
    }
  }
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

void GuestSession::publish_peer_fin(std::uint32_t id) {
  // The event first, then A's POLLIN|POLLRDHUP (shutdown of B): a reader woken by A must find
  // the reason in the slot. In the other order a reader woken between the two found an empty
  // ring and no event, and went back to a ppoll that returned at once: it spun until we were
  // scheduled again, a whole time slice (5 ms) when it shares our core.
  channel_.slot(id)->events.fetch_or(rpc::kEvPeerClosed, std::memory_order_seq_cst);
  mirror_peer_fin(id);
  signal_readable(id);
  update_interest(id);
}

void GuestSession::lend_rx_chunk(std::uint32_t id, std::uint32_t chunk, std::uint32_t length) {
  TSocket& s = sockets_.at(id);
  (void)rx_alloc_.lend(chunk);
  rx_owner_[chunk] = {id, s.generation};
  ++s.rx_lent;
  const rpc::RxEntry e{chunk, length};
  (void)s.rx.enqueue_burst(&e, 1);  // room was checked before the chunk was allocated
}

void GuestSession::read_socket(std::uint32_t id) {
  TSocket& s = sockets_.at(id);
  if (s.inspect_stream != 0) return inspect_read(id);
  const std::size_t hdr = s.type == SOCK_DGRAM ? rpc::kDgramRxHeader : 0;
  bool delivered = false;
  for (std::size_t i = 0; i < kMaxReadsPerEvent; ++i) {
    if (s.rx.free_slots() == 0 || rx_alloc_.free_count() == 0) {
      // Backpressure: stop reading; the kernel's window closes. Resumed on kBufferReturn.
      if (!s.rx_paused) {
        s.rx_paused = true;
        paused_.push_back(id);
        ++counters_.rx_backpressure_events;
        update_interest(id);
        request_return_doorbells(id);
      }
      break;
    }
    const std::uint32_t chunk = *rx_alloc_.allocate();
    auto mem = channel_.rx_pool().chunk(chunk);
    SockAddr from;
    auto r = backend_->recv(s.handle, mem.subspan(hdr), hdr != 0 ? &from : nullptr);
    if (!r) {
      (void)rx_alloc_.free(chunk);
      const int err = r.error().code;
      if (err != EAGAIN && err != EINTR) on_socket_error(id, err);
      break;
    }
    if (*r == 0 && s.type == SOCK_STREAM) {
      (void)rx_alloc_.free(chunk);
      s.peer_closed = true;
      publish_peer_fin(id);
      break;
    }
    if (hdr != 0) {
      rpc::SlotAddress src{};
      const std::size_t n = std::min<std::size_t>(from.length, sizeof src.bytes);
      std::memcpy(src.bytes, &from.storage, n);
      src.length = static_cast<std::uint16_t>(n);
      std::memcpy(mem.data(), &src, sizeof src);
    }
    counters_.bytes_rx_wire += *r;
    counters_.bytes_to_guest += *r;
    lend_rx_chunk(id, chunk, static_cast<std::uint32_t>(*r + hdr));
    delivered = true;
    // A short stream read drained the socket: skip the read that would only say EAGAIN
    // (level-triggered readiness reports anything that arrives later).
    if (hdr == 0 && *r < mem.size()) break;
  }
  if (delivered) signal_arrival(id);
}

void GuestSession::flush_tx(std::uint32_t id) {
  TSocket& s = sockets_.at(id);
  while (!s.txq.empty()) {
    TxBuffer& b = s.txq.front();
    const auto rest = std::span<const std::byte>(b.bytes).subspan(b.sent);
    auto r = backend_->send(s.handle, rest, s.txq.size() > 1 ? (b.flags | MSG_MORE) : b.flags,
                            b.has_to ? &b.to : nullptr);
    if (!r) {
      const int err = r.error().code;
      if (err == EAGAIN || err == EINTR) break;
      if (s.type == SOCK_DGRAM) {  // one datagram fails; the socket goes on
        s.tx_bytes -= rest.size();
        s.txq.pop_front();
        rpc::SocketSlot* slot = channel_.slot(id);
        slot->so_error.store(err, std::memory_order_relaxed);
        slot->error_seq.fetch_add(1, std::memory_order_release);
        continue;
      }
      on_socket_error(id, err);
      return;
    }
    b.sent += *r;
    s.tx_bytes -= *r;
    counters_.bytes_tx_wire += *r;
    if (b.sent == b.bytes.size()) {
      if (spare_tx_.size() < 256) spare_tx_.push_back(std::move(b.bytes));
      s.txq.pop_front();
    }
  }
  if (s.txq.empty() && s.inspect_out == 0 && s.shut_wr_pending) {
    s.shut_wr_pending = false;
    (void)backend_->shutdown(s.handle, SHUT_WR);
  }
  if (s.state == rpc::SocketState::kClosing && s.txq.empty() && s.inspect_out == 0) {
    finish_close(id);
    return;
  }
  update_interest(id);
}

void GuestSession::release_deferred(std::uint32_t id, bool all) {
  TSocket& s = sockets_.at(id);
  while (!s.deferred.empty() && (all || s.tx_bytes < s.tx_cap)) {
    const DeferredCompletion& d = s.deferred.front();
    Lane& l = lanes_[d.lane];
    if (l.active && l.epoch == d.lane_epoch) push_completion(d.lane, d.cpl, true);
    s.deferred.pop_front();
  }
}

void GuestSession::on_socket_error(std::uint32_t id, int err) {
  TSocket& s = sockets_.at(id);
  s.so_error = err;
  rpc::SocketSlot* slot = channel_.slot(id);
  slot->so_error.store(err, std::memory_order_relaxed);
  std::uint32_t ev = rpc::kEvError;
  if (err == ECONNRESET || err == EPIPE) {
    ev |= rpc::kEvReset;
    s.reset = true;
  }
  slot->events.fetch_or(ev, std::memory_order_relaxed);
  slot->error_seq.fetch_add(1, std::memory_order_release);
  if (s.type == SOCK_STREAM && s.state != rpc::SocketState::kConnecting) {
    // The connection is gone: queued bytes cannot be sent; their credit goes back.
    s.tx_bytes = 0;
    s.txq.clear();
    s.shut_wr_pending = false;
  }
  release_deferred(id, true);
  if (s.state == rpc::SocketState::kClosing) {
    finish_close(id);
    return;
  }
  // A stream connection that failed is over for good: mirror POLLERR|POLLHUP on A. First, so
  // that A never shows the readiness below without the error (a poller would see POLLIN or
  // POLLOUT alone). Without B the two calls below only clear the guest's flags.
  if (s.type == SOCK_STREAM && s.state != rpc::SocketState::kListening) kill_placeholder(id);
  signal_readable(id);
  make_writable(id);
  update_interest(id);
}

void GuestSession::publish_paused(std::uint32_t id) {
  channel_.slot(id)->rx_paused.store(1, std::memory_order_relaxed);
  paused_hint_.push_back(id);
}

void GuestSession::resume_paused() {
  for (std::uint32_t id : paused_hint_) {
    if (sockets_.find(id) != nullptr)
      channel_.slot(id)->rx_paused.store(0, std::memory_order_relaxed);
  }
  paused_hint_.clear();
  if (paused_.empty()) return;
  auto list = std::move(paused_);
  paused_.clear();
  for (std::uint32_t id : list) {
    TSocket* s = sockets_.find(id);
    if (s == nullptr || !s->rx_paused) continue;
    s->rx_paused = false;
    update_interest(id);  // level-triggered: pending data wakes us on the next poll
  }
}

void GuestSession::begin_close(std::uint32_t id) {
  TSocket* s = sockets_.find(id);
  if (s == nullptr || s->state == rpc::SocketState::kClosing) return;
  ph(id).release(id);
  release_deferred(id, true);
  for (auto& a : s->acceptq) backend_->close(a.handle, true);
  s->acceptq.clear();
  auto ring = s->rx;  // copy: reading the consumer index must not disturb our producer end
  if (s->type == SOCK_STREAM && s->state == rpc::SocketState::kConnected && !s->reset &&
      (ring.free_slots() < ring.capacity() ||
       (!s->peer_closed && backend_->has_unread(s->handle)))) {
    // Closed with received data the application never read: Linux aborts (RST), no FIN.
    // (After the peer's FIN was read nothing can be unread in the stack: no FIONREAD.)
    // (The ring's consumer index is guest-written: a lying guest only resets its own
    // connection.)
    s->linger0 = true;
    s->txq.clear();
    s->tx_bytes = 0;
    s->shut_wr_pending = false;
  }
  const bool flush = s->state == rpc::SocketState::kConnected && !s->linger0 && !s->reset &&
                     (!s->txq.empty() || s->inspect_out > 0);
  publish_state(id, rpc::SocketState::kClosing);
  if (!flush) {
    finish_close(id);
    return;
  }
  flush_tx(id);  // finishes the close once the queue is empty
}

void GuestSession::finish_close(std::uint32_t id) {
  TSocket* s = sockets_.find(id);
  if (s == nullptr) return;
  release_deferred(id, true);
  inspect_forget(id);
  if (s->handle != kNoHandle) backend_->close(s->handle, s->linger0);
  ph(id).release(id);
  if (s->rx_lent > 0) {
    for (std::uint32_t c = 0; c < rx_owner_.size(); ++c) {
      if (rx_owner_[c].socket == id) {
        (void)rx_alloc_.reclaim(c);
        rx_owner_[c] = {};
      }
    }
  }
  if (s->zombie) std::erase(zombies_, id);
  rpc::SocketSlot* slot = channel_.slot(id);
  slot->state.store(rpc::SocketState::kFree, std::memory_order_release);
  slot->generation.store(s->generation + 1, std::memory_order_release);
  sockets_.release(id);
  resume_paused();
}

}  // namespace tosec::tovm
