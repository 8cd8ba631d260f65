#include "proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace tosec::eval {

namespace {

constexpr std::uint64_t kListenerTag = 1ULL << 62;
constexpr std::uint64_t kSignalToken = ~0ULL;
constexpr std::uint32_t kGenMask = 0x3fffffffU;  // bits 62, 63 of a token are never a generation

// epoll token of one side of a connection: generation (so a stale event of a closed and reused
// slot is ignored), slot, side.
std::uint64_t conn_token(std::uint32_t gen, std::size_t slot, bool client_side) {
  return (static_cast<std::uint64_t>(gen) << 32) | (static_cast<std::uint64_t>(slot) << 1) |
         (client_side ? 1U : 0U);
}

svm::Endpoint endpoint_of(const sockaddr_storage& ss) {
  svm::Endpoint e;
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    e.family = AF_INET;
    std::memcpy(e.addr, &a->sin_addr, 4);
    e.port = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    e.family = AF_INET6;
    std::memcpy(e.addr, &a->sin6_addr, 16);
    e.port = ntohs(a->sin6_port);
  }
  return e;
}

void set_nodelay(int fd) {
  // Like Envoy and HAProxy: a relay must not hold back the tail of a message (Nagle + delayed ACK
  // would add tens of ms to every request larger than one segment).
  const int one = 1;
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void set_linger0(int fd) {
  const linger l{1, 0};
  (void)::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
}

}  // namespace

std::string SockAddr::text() const {
  char buf[INET6_ADDRSTRLEN] = "?";
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    ::inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
    return std::string(buf) + ":" + std::to_string(ntohs(a->sin_port));
  }
  const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
  ::inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
  return "[" + std::string(buf) + "]:" + std::to_string(ntohs(a->sin6_port));
}

rpc::Result<SockAddr> parse_sockaddr(const std::string& text, bool allow_port0) {
  std::string host;
  std::string port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return rpc::Error{EINVAL, "address '" + text + "': expected [IPV6]:PORT"};
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string::npos) {
      return rpc::Error{EINVAL, "address '" + text + "': expected ADDR:PORT"};
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  char* end = nullptr;
  errno = 0;
  const long p = port.empty() ? -1 : std::strtol(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || errno != 0 || p < (allow_port0 ? 0 : 1) || p > 65535) {
    return rpc::Error{EINVAL, "address '" + text + "': port '" + port + "' is not in [" +
                                  (allow_port0 ? "0" : "1") + ", 65535]"};
  }
  SockAddr out;
  auto* a4 = reinterpret_cast<sockaddr_in*>(&out.ss);
  auto* a6 = reinterpret_cast<sockaddr_in6*>(&out.ss);
  if (::inet_pton(AF_INET, host.c_str(), &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons(static_cast<std::uint16_t>(p));
    out.len = sizeof(sockaddr_in);
  } else if (::inet_pton(AF_INET6, host.c_str(), &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(static_cast<std::uint16_t>(p));
    out.len = sizeof(sockaddr_in6);
  } else {
    return rpc::Error{
        EINVAL, "address '" + text + "': '" + host + "' is not a numeric IPv4 or IPv6 address"};
  }
  return out;
}

// One direction's source: bytes read from `fd` wait in `buf[off, len)` until the other side
// took them; nothing more is read from `fd` meanwhile.
struct Proxy::Side {
  int fd = -1;
  std::vector<std::byte> buf;
  std::size_t off = 0;
  std::size_t len = 0;
  bool eof = false;          // read returned 0 (the peer sent FIN)
  std::uint64_t offset = 0;  // stream offset of the next byte read from this side
  std::uint32_t events = 0;  // registered epoll events
  bool pending() const { return off < len; }
};

struct Proxy::Conn {
  std::size_t slot = 0;
  std::uint32_t gen = 0;
  std::size_t forward = 0;  // index into ProxyOptions::forwards
  Side client;              // accepted: the guest's end (or the previous proxy)
  Side server;              // connected: the next hop
  bool connected = false;
  svm::StreamInfo info;
  std::unique_ptr<svm::StreamInspector> inspector;
};

Proxy::~Proxy() {
  for (auto& c : conns_) {
    if (c && c->client.fd >= 0) close_conn(*c);
  }
  for (int fd : listeners_) ::close(fd);
  if (signal_fd_ >= 0) ::close(signal_fd_);
  if (epoll_ >= 0) ::close(epoll_);
}

rpc::Result<std::unique_ptr<Proxy>> Proxy::create(ProxyOptions options, svm::Engine* engine,
                                                  svm::AlertLog* alerts) {
  if (options.forwards.empty()) return rpc::Error{EINVAL, "no --forward given"};
  std::unique_ptr<Proxy> p(new Proxy());
  p->opt_ = std::move(options);
  p->engine_ = engine;
  p->alerts_ = alerts;
  if (engine != nullptr) {
    auto t = engine->make_thread();
    if (!t) return t.error();
    p->thread_ = std::move(*t);
  }
  p->epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (p->epoll_ < 0) return rpc::errno_error("epoll_create1");
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  p->signal_fd_ = ::signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
  if (p->signal_fd_ < 0) return rpc::errno_error("signalfd");
  epoll_event sev{};
  sev.events = EPOLLIN;
  sev.data.u64 = kSignalToken;
  if (::epoll_ctl(p->epoll_, EPOLL_CTL_ADD, p->signal_fd_, &sev) != 0) {
    return rpc::errno_error("epoll_ctl(signalfd)");
  }
  for (std::size_t i = 0; i < p->opt_.forwards.size(); ++i) {
    const auto& f = p->opt_.forwards[i];
    const int fd = ::socket(f.listen.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return rpc::errno_error("socket(" + f.listen.text() + ")");
    p->listeners_.push_back(fd);
    const int one = 1;
    (void)::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&f.listen.ss), f.listen.len) != 0) {
      return rpc::errno_error("bind(" + f.listen.text() + ")");
    }
    if (::listen(fd, 1024) != 0) return rpc::errno_error("listen(" + f.listen.text() + ")");
    SockAddr b;
    b.len = sizeof b.ss;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&b.ss), &b.len) != 0) {
      return rpc::errno_error("getsockname(" + f.listen.text() + ")");
    }
    p->bound_.push_back(b);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kListenerTag | i;
    if (::epoll_ctl(p->epoll_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      return rpc::errno_error("epoll_ctl(" + f.listen.text() + ")");
    }
  }
  return p;
}

std::vector<SockAddr> Proxy::bound() const { return bound_; }

rpc::Status Proxy::run() {
  epoll_event evs[64];
  for (;;) {
    const int n = ::epoll_wait(epoll_, evs, 64, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return rpc::errno_error("epoll_wait");
    }
    for (int i = 0; i < n; ++i) {
      const std::uint64_t tok = evs[i].data.u64;
      if (tok == kSignalToken) return {};
      if ((tok & kListenerTag) != 0) {
        accept_all(static_cast<std::size_t>(tok & 0xffffffffULL));
        continue;
      }
      const std::size_t slot = static_cast<std::size_t>((tok & 0xffffffffULL) >> 1);
      const auto gen = static_cast<std::uint32_t>(tok >> 32);
      if (slot >= conns_.size() || !conns_[slot] || conns_[slot]->gen != gen) continue;
      handle(*conns_[slot], (tok & 1U) != 0, evs[i].events);
    }
  }
}

void Proxy::accept_all(std::size_t forward) {
  const Forward& f = opt_.forwards[forward];
  for (;;) {
    sockaddr_storage peer{};
    socklen_t plen = sizeof peer;
    const int cfd = ::accept4(listeners_[forward], reinterpret_cast<sockaddr*>(&peer), &plen,
                              SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (cfd < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED) {
        std::fprintf(stderr, "tosec-nfv-proxy: %s: accept: %s\n", opt_.name.c_str(),
                     std::strerror(errno));
      }
      return;
    }
    const int sfd =
        ::socket(f.next_hop.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (sfd < 0) {
      std::fprintf(stderr, "tosec-nfv-proxy: %s: socket: %s\n", opt_.name.c_str(),
                   std::strerror(errno));
      set_linger0(cfd);
      ::close(cfd);
      continue;
    }
    set_nodelay(cfd);
    set_nodelay(sfd);
    const int rc =
        ::connect(sfd, reinterpret_cast<const sockaddr*>(&f.next_hop.ss), f.next_hop.len);
    if (rc != 0 && errno != EINPROGRESS) {
      std::fprintf(stderr, "tosec-nfv-proxy: %s: connect(%s): %s\n", opt_.name.c_str(),
                   f.next_hop.text().c_str(), std::strerror(errno));
      ++stats_.connect_failures;
      set_linger0(cfd);
      ::close(cfd);
      ::close(sfd);
      continue;
    }
    std::size_t slot;
    if (!free_slots_.empty()) {
      slot = free_slots_.back();
      free_slots_.pop_back();
    } else {
      slot = conns_.size();
      conns_.emplace_back();
    }
    auto c = std::make_unique<Conn>();
    c->slot = slot;
    c->gen = static_cast<std::uint32_t>(next_stream_id_) & kGenMask;  // differs per use of a slot
    c->forward = forward;
    c->client.fd = cfd;
    c->server.fd = sfd;
    c->client.buf.resize(opt_.buffer_bytes);
    c->server.buf.resize(opt_.buffer_bytes);
    c->info.stream_id = next_stream_id_++;
    c->info.guest = opt_.guest;
    c->info.protocol = IPPROTO_TCP;
    c->info.local = endpoint_of(peer);
    c->info.remote = endpoint_of(f.next_hop.ss);
    c->info.guest_is_client = true;
    ++stats_.connections;
    epoll_event ev{};
    ev.events = 0;  // the client is read once the next hop answered
    ev.data.u64 = conn_token(c->gen, slot, true);
    (void)::epoll_ctl(epoll_, EPOLL_CTL_ADD, cfd, &ev);
    ev.events = EPOLLOUT;
    ev.data.u64 = conn_token(c->gen, slot, false);
    (void)::epoll_ctl(epoll_, EPOLL_CTL_ADD, sfd, &ev);
    c->server.events = EPOLLOUT;
    conns_[slot] = std::move(c);
  }
}

void Proxy::handle(Conn& c, bool client_side, std::uint32_t events) {
  const std::size_t slot = c.slot;
  const std::uint32_t gen = c.gen;
  const auto alive = [&] { return conns_[slot] && conns_[slot]->gen == gen; };
  if (!client_side && !c.connected) {
    int err = 0;
    socklen_t elen = sizeof err;
    (void)::getsockopt(c.server.fd, SOL_SOCKET, SO_ERROR, &err, &elen);
    if (err != 0 || (events & (EPOLLERR | EPOLLHUP)) != 0) {
      std::fprintf(stderr, "tosec-nfv-proxy: %s: connect(%s): %s\n", opt_.name.c_str(),
                   opt_.forwards[c.forward].next_hop.text().c_str(),
                   std::strerror(err != 0 ? err : ECONNREFUSED));
      ++stats_.connect_failures;
      reset(c);
      return;
    }
    c.connected = true;
    if (thread_) c.inspector = thread_->open_stream(c.info);
    rearm(c);
    return;
  }
  if (client_side && !c.connected) {
    if ((events & (EPOLLERR | EPOLLHUP)) != 0) reset(c);  // the client gave up first
    return;
  }
  Side& me = client_side ? c.client : c.server;
  Side& other = client_side ? c.server : c.client;
  if ((events & EPOLLERR) != 0) {
    reset(c);
    return;
  }
  // Writable (or hung up): bytes from the other side waiting for this one.
  if ((events & (EPOLLOUT | EPOLLHUP)) != 0 && other.pending()) {
    if (!flush(c, client_side)) return;
  }
  if (!alive()) return;
  if ((events & (EPOLLIN | EPOLLHUP)) != 0 && !me.eof && !me.pending()) {
    pump(c, client_side);
    if (!alive()) return;
  }
  rearm(c);
  maybe_finish(c);
}

// Reads one chunk from one side, inspects it and forwards it to the other side.
void Proxy::pump(Conn& c, bool from_client) {
  Side& src = from_client ? c.client : c.server;
  const ssize_t n = ::recv(src.fd, src.buf.data(), src.buf.size(), 0);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
    reset(c);
    return;
  }
  if (n == 0) {
    src.eof = true;
    Side& dst = from_client ? c.server : c.client;
    (void)::shutdown(dst.fd, SHUT_WR);
    return;
  }
  const auto len = static_cast<std::size_t>(n);
  if (c.inspector) {
    svm::Payload p;
    p.direction = from_client ? svm::Direction::kOutbound : svm::Direction::kInbound;
    p.flow = c.info.flow_of(p.direction);
    p.stream_offset = src.offset;
    p.bytes = std::span<const std::byte>(src.buf.data(), len);
    ++stats_.payloads;
    if (!apply(c, c.inspector->inspect(p), p.direction)) {
      reset(c);
      return;
    }
  }
  src.offset += len;
  (from_client ? stats_.bytes_to_server : stats_.bytes_to_client) += len;
  src.off = 0;
  src.len = len;
  (void)flush(c, !from_client);
}

// Writes what the other side read to side `to_client`; false if the connection was reset.
bool Proxy::flush(Conn& c, bool to_client) {
  Side& dst = to_client ? c.client : c.server;
  Side& src = to_client ? c.server : c.client;
  while (src.pending()) {
    const ssize_t n = ::send(dst.fd, src.buf.data() + src.off, src.len - src.off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
      if (errno == EINTR) continue;
      reset(c);
      return false;
    }
    src.off += static_cast<std::size_t>(n);
  }
  src.off = src.len = 0;
  return true;
}

void Proxy::rearm(Conn& c) {
  const auto want = [&](const Side& me, const Side& other) {
    std::uint32_t e = 0;
    if (c.connected && !me.eof && !me.pending()) e |= EPOLLIN;
    if (other.pending()) e |= EPOLLOUT;
    return e;
  };
  const auto update = [&](Side& side, std::uint32_t events, bool client_side) {
    if (events == side.events) return;
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = conn_token(c.gen, c.slot, client_side);
    (void)::epoll_ctl(epoll_, EPOLL_CTL_MOD, side.fd, &ev);
    side.events = events;
  };
  update(c.client, want(c.client, c.server), true);
  update(c.server, c.connected ? want(c.server, c.client) : EPOLLOUT, false);
}

void Proxy::maybe_finish(Conn& c) {
  if (!(c.client.eof && c.server.eof && !c.client.pending() && !c.server.pending())) return;
  if (c.inspector) {
    // Everything was delivered already; a finding at the end can only be reported.
    (void)apply(c, c.inspector->finish(), svm::Direction::kOutbound);
  }
  close_conn(c);
}

bool Proxy::apply(Conn& c, const svm::Verdict& v, svm::Direction d) {
  if (v.action == svm::Action::kPass) return true;
  const bool block = v.blocked() && !opt_.detect_only;
  for (const auto& f : v.findings) {
    if (f.action == svm::Action::kPass) continue;
    ++stats_.alerts;
    if (alerts_ != nullptr) {
      svm::AlertRecord r;
      r.stream = &c.info;
      r.direction = d;
      r.svm = opt_.name;
      r.engine = engine_ != nullptr ? engine_->kind() : std::string_view("none");
      r.blocked = block && f.action == svm::Action::kBlock;
      r.rule_id = f.rule_id;
      r.signature = f.message;
      r.category = f.category;
      alerts_->write(r);
    }
    if (block && f.action == svm::Action::kBlock) {
      std::fprintf(stderr, "tosec-nfv-proxy: %s: stream %llu blocked by %s: %s\n",
                   opt_.name.c_str(), static_cast<unsigned long long>(c.info.stream_id),
                   f.rule_id.c_str(), f.message.c_str());
    }
  }
  if (block) ++stats_.blocked;
  return !block;
}

void Proxy::reset(Conn& c) {
  set_linger0(c.client.fd);
  set_linger0(c.server.fd);
  close_conn(c);
}

void Proxy::close_conn(Conn& c) {
  (void)::epoll_ctl(epoll_, EPOLL_CTL_DEL, c.client.fd, nullptr);
  (void)::epoll_ctl(epoll_, EPOLL_CTL_DEL, c.server.fd, nullptr);
  ::close(c.client.fd);
  ::close(c.server.fd);
  c.client.fd = c.server.fd = -1;
  const std::size_t slot = c.slot;
  free_slots_.push_back(slot);
  conns_[slot].reset();  // destroys c
}

}  // namespace tosec::eval
