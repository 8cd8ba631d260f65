// GuestSession: setup, sidecar handshake, lanes, status. Requests: guest_session_ops.cpp;
// sockets and the data path: guest_session_io.cpp.
#include "tosec/tovm/guest_session.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "tosec/rpc/agent_lane.h"
#include "tosec/rpc/cpu_list.h"
#include "tosec/rpc/json_escape.h"

namespace tosec::tovm {

GuestSession::GuestSession(const TovmOptions& opts, int epoll_fd,
                           std::unique_ptr<StackBackend> backend, std::uint32_t tag)
    : opts_(opts),
      epoll_fd_(epoll_fd),
      tag_(tag),
      backend_(std::move(backend)),
      // VM mode rings the VM's per-process vectors 1..lanes-1 (and the agent's 0): the server's
      // -n must be at least `lanes`, and we keep that many vectors of every peer.
      ivshmem_(rpc::IvshmemClientOptions{opts.vm_agent ? opts.channel.lanes : 1, 5000}),
      lanes_(opts.channel.lanes),
      sockets_(opts.channel.max_sockets),
      tx_held_(opts.channel.lanes * opts.channel.tx_chunks_per_lane),
      rx_alloc_(opts.channel.rx_chunks),
      rx_owner_(opts.channel.rx_chunks),
      started_(std::chrono::steady_clock::now()) {}

GuestSession::~GuestSession() { shutdown(); }

rpc::Result<std::unique_ptr<GuestSession>> GuestSession::create(
    const TovmOptions& opts, int epoll_fd, std::unique_ptr<StackBackend> backend,
    std::uint32_t tag) {
  if (tag >= kMaxSessionsPerWorker) {
    return rpc::Error{
        EINVAL, "more than " + std::to_string(kMaxSessionsPerWorker) + " guests on one worker"};
  }
  std::unique_ptr<GuestSession> s(new GuestSession(opts, epoll_fd, std::move(backend), tag));
  if (auto st = s->init(); !st) return st.error();
  return s;
}

void GuestSession::log(LogLevel level, const std::string& msg) const {
  if (static_cast<int>(level) > static_cast<int>(opts_.log_level)) return;
  static const char* names[] = {"error", "info", "debug"};
  std::fprintf(stderr, "tosec-tovm[%s] %s: %s\n", opts_.guest.c_str(),
               names[static_cast<int>(level)], msg.c_str());
}

void GuestSession::epoll_add(int fd, std::uint32_t events, std::uint64_t token) {
  epoll_event e{};
  e.events = events;
  e.data.u64 = token;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &e) != 0) {
    log(LogLevel::kError, rpc::errno_error("epoll_ctl(ADD)").message);
  }
}

void GuestSession::epoll_del(int fd) { (void)::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr); }

rpc::Status GuestSession::init() {
  if (auto s = ivshmem_.connect(opts_.ivshmem); !s) {
    return rpc::Error{s.code(), "ivshmem server " + opts_.ivshmem + ": " + s.message()};
  }
  const rpc::RegionLayout layout = rpc::guest_region_layout(opts_.channel);
  const std::uint64_t need = layout.pow2_size();
  const auto region = ivshmem_.region().bytes();
  if (region.size() < need) {
    return rpc::Error{ENOSPC, "guest region is " + std::to_string(region.size()) +
                                  " bytes, this configuration needs " + std::to_string(need) +
                                  " (start the ivshmem server with -l " +
                                  std::to_string(need >> 20) + "M or more)"};
  }
  if (auto s = layout.format(region); !s) return s.error();
  auto view = rpc::RegionView::attach(region);
  if (!view) return view.error();
  view_ = std::move(*view);
  if (auto s = rpc::format_guest_channel(view_, opts_.channel); !s) return s.error();
  auto ch = rpc::GuestChannel::attach_toe(view_, opts_.channel);
  if (!ch) return ch.error();
  channel_ = std::move(*ch);
  auto idx = view_.claim_peer(ivshmem_.self_id(), rpc::PeerRole::kTovm, "tovm",
                              static_cast<std::uint32_t>(::getpid()));
  if (!idx) return idx.error();
  peer_index_ = *idx;
  peer_claimed_ = true;
  // Each socket's rx ring: attach the producer end once; it is re-formatted at every reuse.
  ivshmem_.on_peer_left([this](rpc::PeerId p) { on_peer_left(p); });

  // Sidecar listener.
  sidecar_listen_.reset(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!sidecar_listen_.valid()) return rpc::errno_error("socket(sidecar)");
  // The path appears only once it accepts connections: guests, tests and supervisors take its
  // existence as "the TOE is ready", and a guest joins once per process. So bind and listen on
  // a temporary name and rename() it into place (atomic on one file system).
  const std::string staging = opts_.sidecar + ".new." + std::to_string(::getpid());
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  if (staging.size() >= sizeof sun.sun_path) {
    return rpc::Error{ENAMETOOLONG, "--sidecar path too long (" +
                                        std::to_string(sizeof sun.sun_path - 1 -
                                                       (staging.size() - opts_.sidecar.size())) +
                                        " bytes at most): " + opts_.sidecar};
  }
  std::memcpy(sun.sun_path, staging.c_str(), staging.size() + 1);
  ::unlink(staging.c_str());
  const mode_t old = ::umask(0077);
  const int rc = ::bind(sidecar_listen_.get(), reinterpret_cast<sockaddr*>(&sun), sizeof sun);
  ::umask(old);
  if (rc != 0) return rpc::errno_error("bind(" + staging + ")");
  ::chmod(staging.c_str(), 0600);
  if (::listen(sidecar_listen_.get(), 64) != 0) {
    ::unlink(staging.c_str());
    return rpc::errno_error("listen(sidecar)");
  }
  if (::rename(staging.c_str(), opts_.sidecar.c_str()) != 0) {
    const rpc::Error e = rpc::errno_error("rename(" + staging + ", " + opts_.sidecar + ")");
    ::unlink(staging.c_str());
    return e;
  }

  epoll_add(sidecar_listen_.get(), EPOLLIN, token(TokenKind::kSidecarListen));
  epoll_add(ivshmem_.fd(), EPOLLIN, token(TokenKind::kIvshmem));
  const int bell = ivshmem_.doorbells().own_fd(0);
  if (bell < 0) return rpc::Error{EPROTO, "ivshmem: no own doorbell vector 0"};
  epoll_add(bell, EPOLLIN, token(TokenKind::kDoorbell));
  if (backend_->event_fd() >= 0) {
    epoll_add(backend_->event_fd(), EPOLLIN, token(TokenKind::kBackend));
  }
  if (auto s = init_inspection(); !s) return s;
  local_ph_ = std::make_unique<LocalPlaceholders>(
      opts_.channel.max_sockets, epoll_fd_,
      [this](std::uint32_t id) { return token(TokenKind::kBEnd, id); },
      [this](const std::string& m) { log(LogLevel::kError, m); });
  if (opts_.vm_agent) {
    agent_ph_ = std::make_unique<AgentPlaceholders>(
        opts_.channel.max_sockets, [this](const rpc::Descriptor& d) { emit_to_agent(d); });
    activate_agent_lane();
  }
  log(LogLevel::kInfo, "region " + std::to_string(region.size()) + " bytes, ivshmem peer " +
                           std::to_string(ivshmem_.self_id()) + ", sidecar " + opts_.sidecar +
                           ", backend " + backend_->name());
  return {};
}

void GuestSession::shutdown() {
  if (!sidecar_listen_.valid() && !peer_claimed_) return;
  for (std::uint32_t id = 0; id < sockets_.capacity(); ++id) {
    TSocket* s = sockets_.find(id);
    if (s == nullptr) continue;
    if (s->handle != kNoHandle) backend_->close(s->handle, s->linger0);
    for (auto& a : s->acceptq) backend_->close(a.handle, false);
    ph(id).release(id);
    sockets_.release(id);
  }
  for (auto& l : lanes_) {
    if (l.sidecar.valid()) epoll_del(l.sidecar.get());
    l = Lane{};
  }
  hello_pending_.clear();
  if (sidecar_listen_.valid()) {
    epoll_del(sidecar_listen_.get());
    sidecar_listen_.reset();
    ::unlink(opts_.sidecar.c_str());
  }
  if (peer_claimed_) {
    view_.release_peer(peer_index_);
    peer_claimed_ = false;
  }
}

void GuestSession::on_event(std::uint64_t token, std::uint32_t events) {
  const std::uint64_t idx = token_index(token);
  switch (token_kind(token)) {
    case TokenKind::kDoorbell: {
      std::uint64_t v;  // one read takes the whole eventfd counter
      (void)!::read(ivshmem_.doorbells().own_fd(0), &v, sizeof v);
      break;
    }
    case TokenKind::kIvshmem: {
      auto r = ivshmem_.process_events();
      if (!r) {
        log(LogLevel::kError, "ivshmem server connection lost: " + r.error().message);
        epoll_del(ivshmem_.fd());
      }
      break;
    }
    case TokenKind::kSidecarListen:
      accept_sidecars();
      break;
    case TokenKind::kSidecarNew:
      on_sidecar_new(idx);
      break;
    case TokenKind::kSidecarLane:
      read_sidecar(static_cast<std::uint32_t>(idx));
      break;
    case TokenKind::kBEnd: {
      const auto id = static_cast<std::uint32_t>(idx);
      TSocket* s = sockets_.find(id);
      if (s == nullptr || s->agent_held) break;
      if (local_ph_->on_hangup(id, events)) closing_.push_back(id);
      break;
    }
    case TokenKind::kBackend:
      on_backend_ready();
      break;
    case TokenKind::kInspectDoorbell: {
      std::uint64_t v;  // the verdicts themselves are taken in run_once()
      (void)!::read(inspect_->doorbell_fd(), &v, sizeof v);
      break;
    }
    case TokenKind::kInspectIvshmem:
      if (auto st = inspect_->on_ivshmem_event(); !st) {
        // Without the server no SVM can join or be seen leaving; deadlines still apply.
        log(LogLevel::kError, "inspection ivshmem server connection lost: " + st.message());
        epoll_del(inspect_->ivshmem_fd());
      }
      break;
    default:
      break;
  }
}

// ---- sidecar ----------------------------------------------------------------------------

void GuestSession::accept_sidecars() {
  for (;;) {
    const int fd = ::accept4(sidecar_listen_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno != EAGAIN && errno != EINTR)
        log(LogLevel::kError, rpc::errno_error("accept(sidecar)").message);
      if (errno == EINTR) continue;
      return;
    }
    const std::uint64_t conn = next_conn_++;
    epoll_add(fd, EPOLLIN, token(TokenKind::kSidecarNew, conn));
    hello_pending_.emplace(conn, rpc::UniqueFd(fd));
  }
}

namespace {
// One SEQPACKET message with at most one fd. Returns bytes (0 = EOF), -1 with errno.
ssize_t recv_with_fd(int sock, void* buf, std::size_t len, rpc::UniqueFd& fd_out) {
  iovec iov{buf, len};
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * 4)];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = cbuf;
  msg.msg_controllen = sizeof cbuf;
  const ssize_t n = ::recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  if (n < 0) return n;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t nfds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < nfds; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      if (!fd_out.valid()) {
        fd_out.reset(fd);
      } else {
        ::close(fd);  // one fd per message: extras are dropped
      }
    }
  }
  if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0) {
    fd_out.reset();
    errno = EPROTO;
    return -1;
  }
  return n;
}
}  // namespace

void GuestSession::on_sidecar_new(std::uint64_t conn) {
  auto it = hello_pending_.find(conn);
  if (it == hello_pending_.end()) return;
  rpc::SidecarHello hello{};
  rpc::UniqueFd extra;
  const ssize_t n = recv_with_fd(it->second.get(), &hello, sizeof hello, extra);
  if (n < 0 && errno == EAGAIN) return;
  rpc::UniqueFd fd = std::move(it->second);
  hello_pending_.erase(it);
  epoll_del(fd.get());
  if (n != static_cast<ssize_t>(sizeof hello) || hello.magic != rpc::kSidecarMagic) {
    log(LogLevel::kInfo, "sidecar: connection without a valid hello dropped");
    return;
  }
  rpc::SidecarWelcome w{};
  w.magic = rpc::kSidecarMagic;
  w.toe_peer = ivshmem_.self_id();
  if (hello.version != rpc::kGuestChannelVersion) {
    w.status = -EPROTO;
    (void)::send(fd.get(), &w, sizeof w, MSG_NOSIGNAL | MSG_DONTWAIT);
    log(LogLevel::kError, "sidecar: pid " + std::to_string(hello.pid) + " speaks version " +
                              std::to_string(hello.version));
    return;
  }
  auto opened = open_lane(hello.pid, hello.ivshmem_peer, 0, false);
  if (!opened) {
    w.status = -opened.error().code;
    (void)::send(fd.get(), &w, sizeof w, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w.status == -EBUSY) {
      log(LogLevel::kError, "sidecar: no free lane for pid " + std::to_string(hello.pid));
    }
    return;
  }
  const std::uint32_t lane = *opened;
  Lane& l = lanes_[lane];
  l.sidecar = std::move(fd);
  w.status = 0;
  w.lane = lane;
  w.toe_vector = 0;
  w.guest_vector = 0;
  if (::send(l.sidecar.get(), &w, sizeof w, MSG_NOSIGNAL | MSG_DONTWAIT) != sizeof w) {
    log(LogLevel::kError, rpc::errno_error("sidecar: welcome").message);
    l.active = false;
    l.sidecar.reset();
    return;
  }
  epoll_add(l.sidecar.get(), EPOLLIN | EPOLLRDHUP, token(TokenKind::kSidecarLane, lane));
  log(LogLevel::kInfo, "lane " + std::to_string(lane) + " -> pid " + std::to_string(l.pid) +
                           " (ivshmem peer " + std::to_string(l.peer) + ")");
  // B ends may already be queued behind the hello.
  read_sidecar(lane);
}

bool GuestSession::format_lane_rings(std::uint32_t lane, rpc::SpscRing& req, rpc::SpscRing& cpl) {
  // Fresh rings: whatever a previous owner left in them is gone.
  const auto area = lane_area(lane);
  const std::size_t ring_bytes =
      rpc::kRingHeaderSize + std::size_t{opts_.channel.ring_slots} * sizeof(rpc::Descriptor);
  (void)rpc::SpscRing::format(area.first(ring_bytes), opts_.channel.ring_slots,
                              sizeof(rpc::Descriptor));
  (void)rpc::SpscRing::format(area.subspan(ring_bytes, ring_bytes), opts_.channel.ring_slots,
                              sizeof(rpc::Descriptor));
  auto r = channel_.lane_ring(lane, true, rpc::RingEnd::kConsumer);
  auto c = channel_.lane_ring(lane, false, rpc::RingEnd::kProducer);
  if (!r || !c) return false;
  req = std::move(*r);
  cpl = std::move(*c);
  return true;
}

rpc::Result<std::uint32_t> GuestSession::open_lane(std::uint32_t pid, rpc::PeerId peer,
                                                   std::uint16_t vector, bool via_agent) {
  // In VM mode the last lane is the agent's (rpc/agent_lane.h): never a process lane.
  const auto limit =
      opts_.vm_agent ? rpc::agent_lane(opts_.channel) : static_cast<std::uint32_t>(lanes_.size());
  std::uint32_t lane = 0;
  while (lane < limit && (lanes_[lane].active || lanes_[lane].dying)) ++lane;
  if (lane == limit) return rpc::Error{EBUSY, "no free lane"};
  // Before the new process can send its first request; only for a lane that opens, so that a
  // refused hello costs nothing. Draining cannot take `lane`: it is not active.
  drain_process_lanes();
  rpc::SpscRing req, cpl;
  if (!format_lane_rings(lane, req, cpl)) return rpc::Error{EIO, "lane rings"};
  Lane& l = lanes_[lane];
  const std::uint32_t epoch = l.epoch;
  l = Lane{};
  l.epoch = epoch;
  l.active = true;
  l.pid = pid;
  l.peer = peer;
  l.vector = vector;
  l.via_agent = via_agent;
  l.req = std::move(req);
  l.cpl = std::move(cpl);
  if (!ivshmem_.doorbells().has_peer(l.peer)) (void)ivshmem_.process_events();
  return lane;
}

void GuestSession::read_sidecar(std::uint32_t lane, std::uint64_t want) {
  Lane& l = lanes_[lane];
  if (!l.active || !l.sidecar.valid()) return;
  // Stop at the B end a request waits for: the sidecar is level-triggered in our epoll set, so
  // whatever follows is read at the next wake-up, and the recv that would end in EAGAIN is
  // saved on every socket()/accept().
  while (want == 0 || l.pending_b.find(want) == l.pending_b.end()) {
    rpc::SidecarFd m{};
    rpc::UniqueFd fd;
    const ssize_t n = recv_with_fd(l.sidecar.get(), &m, sizeof m, fd);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n == 0 || n < 0) {
      mark_lane_dying(lane, n == 0 ? "sidecar closed" : "sidecar error");
      return;
    }
    if (n != static_cast<ssize_t>(sizeof m) || m.magic != rpc::kSidecarMagic || !fd.valid()) {
      ++counters_.bad_descriptors;
      log(LogLevel::kInfo, "lane " + std::to_string(lane) + ": malformed sidecar message");
      continue;
    }
    // A B end must be a Unix stream socket; anything else (a file, a TCP socket) is refused.
    int type = 0;
    socklen_t tl = sizeof type;
    sockaddr_storage ss{};
    socklen_t sl = sizeof ss;
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_TYPE, &type, &tl) != 0 || type != SOCK_STREAM ||
        ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &sl) != 0 ||
        ss.ss_family != AF_UNIX) {
      ++counters_.bad_descriptors;
      log(LogLevel::kInfo, "lane " + std::to_string(lane) + ": sidecar fd is not a socketpair end");
      continue;
    }
    // Parked until its kSocket/kAccept arrives; bounded, so a guest that sends B ends without
    // requests cannot make the TOE hoard fds.
    if (l.pending_b.size() >= std::max<std::size_t>(64, opts_.channel.max_sockets) &&
        l.pending_b.find(m.request_id) == l.pending_b.end()) {
      ++counters_.bad_descriptors;
      log(LogLevel::kInfo, "lane " + std::to_string(lane) + ": too many unclaimed B ends");
      continue;
    }
    l.pending_b[m.request_id] = std::move(fd);  // a repeated id replaces (and closes) the old
  }
}

void GuestSession::mark_lane_dying(std::uint32_t lane, const char* why) {
  Lane& l = lanes_[lane];
  if (!l.active || l.dying) return;
  l.dying = true;
  if (l.sidecar.valid()) epoll_del(l.sidecar.get());
  dying_lanes_.push_back(lane);
  log(LogLevel::kInfo, "lane " + std::to_string(lane) + " (pid " + std::to_string(l.pid) +
                           "): " + why + ", reclaiming");
}

void GuestSession::on_peer_left(rpc::PeerId peer) {
  for (std::uint32_t i = 0; i < lanes_.size(); ++i) {
    if (lanes_[i].active && lanes_[i].peer == peer) mark_lane_dying(i, "ivshmem peer left");
  }
}

void GuestSession::reclaim_lane(std::uint32_t lane) {
  Lane& l = lanes_[lane];
  if (!l.active) return;
  // Requests it queued before dying are still honoured (data it sent goes out).
  if (!l.req.broken()) {
    while (drain_lane(lane)) {
    }
  }
  const std::uint32_t first = channel_.lane_tx_first(lane);
  for (std::uint32_t c = first; c < first + opts_.channel.tx_chunks_per_lane; ++c) {
    if (tx_held_.holds(c)) (void)tx_held_.give(c);
  }
  release_rx_locks(lane);
  const std::uint32_t epoch = l.epoch + 1;
  if (l.sidecar.valid()) epoll_del(l.sidecar.get());
  const bool agent = l.agent;
  l = Lane{};
  l.epoch = epoch;
  ++counters_.guests_reclaimed;
  if (agent) {
    // The agent lane is never given up: the VM's agent (or its next start) says hello again
    // on fresh rings. Whatever the agent held goes with it.
    drop_agent();
    activate_agent_lane();
  }
}

// A process that died inside a receive left its socket's rx_lock naming its lane; the processes
// that share the socket would wait for it forever. Clear it (retrying while the word still names
// the lane: a waiter may be setting the waiters bit), wake waiters that share our kernel (others
// see it at their next slice), and re-signal the socket: the dead reader may have drained A, or
// claimed the socket (kRxClaimed), without publishing it. The lane cannot be given out again
// before this returns, so the owner value names only the dead. Only sockets that exist are
// looked at: a guest cannot make this log or count for slots it filled with its own values.
void GuestSession::release_rx_locks(std::uint32_t lane) {
  const std::uint32_t owner = rpc::rx_lock_owner(lane);
  std::uint32_t released = 0;
  for (std::uint32_t id = 0; id < opts_.channel.max_sockets; ++id) {
    if (sockets_.find(id) == nullptr) continue;
    rpc::SocketSlot* slot = channel_.slot(id);
    const std::uint32_t was = rpc::rx_lock_release(slot->rx_lock, owner);
    if (was == 0) continue;
    ++released;
    if ((was & rpc::kRxLockWaiters) != 0) rpc::rx_lock_wake(slot->rx_lock, INT32_MAX);
    slot->rx_signalled.store(0, std::memory_order_relaxed);
    resignal_readable(id);
  }
  if (released == 0) return;
  counters_.rx_locks_released += released;
  log(LogLevel::kInfo, "lane " + std::to_string(lane) + " died holding " +
                           std::to_string(released) + " socket rx lock(s): released");
}

std::span<std::byte> GuestSession::lane_area(std::uint32_t lane) const {
  auto a = view_.find("lanes", rpc::AreaKind::kRaw);
  const std::size_t stride = rpc::lane_stride(opts_.channel.ring_slots);
  return view_.area_bytes(*a).subspan(std::size_t{lane} * stride, stride);
}

// ---- iteration ---------------------------------------------------------------------------

bool GuestSession::run_once() {
  bool progress = false;
  if (peer_claimed_) view_.heartbeat(peer_index_);  // advisory: a stuck value = a stuck TOE
  for (std::uint32_t i = 0; i < lanes_.size(); ++i) {
    if (lanes_[i].active && drain_lane(i)) progress = true;
  }
  if (inspect_poll()) progress = true;
  // Reclaiming the agent lane marks the agent's process lanes dying: loop until none is left.
  while (!dying_lanes_.empty()) {
    auto dying = std::move(dying_lanes_);
    dying_lanes_.clear();
    for (std::uint32_t lane : dying) reclaim_lane(lane);
  }
  // Last references gone: requests for these sockets were drained above.
  auto closing = std::move(closing_);
  closing_.clear();
  for (std::uint32_t id : closing) begin_close(id);
  check_zombies();
  for (std::uint32_t i = 0; i < lanes_.size(); ++i) {
    if (lanes_[i].active) {
      flush_completions(i);
      check_tx_blocked(i);
    }
  }
  return progress;
}

bool GuestSession::prepare_sleep() {
  bool ready = false;
  for (auto& l : lanes_) {
    if (l.active) l.req.consumer_sleeping().store(1, std::memory_order_relaxed);
  }
  std::atomic_thread_fence(std::memory_order_seq_cst);
  for (auto& l : lanes_) {
    if (l.active && l.req.available() > 0) ready = true;
  }
  if (!ready && inspect_ && !inspect_->prepare_sleep()) ready = true;
  if (ready) after_wake();
  return !ready;
}

void GuestSession::after_wake() {
  for (auto& l : lanes_) {
    if (l.active) l.req.consumer_sleeping().store(0, std::memory_order_relaxed);
  }
  if (inspect_) inspect_->after_wake();
}

bool GuestSession::has_requests() {
  for (auto& l : lanes_) {
    if (l.active && l.req.available() > 0) return true;
  }
  // Verdicts too: while the worker busy-polls, SVMs see no sleeping flag and ring no doorbell,
  // so a verdict that arrives mid-spin is found here or not until the spin budget runs out.
  return inspect_ != nullptr && inspect_->has_work();
}

bool GuestSession::has_stalled_output() const {
  for (const auto& l : lanes_) {
    if (l.active && !l.out.empty()) return true;
  }
  return false;
}

// The CPUs the calling thread may run on: the worker's ([tovm] cpus), since the worker that
// serves this session answers its status requests. "" if the kernel does not say.
std::string GuestSession::thread_cpus() { return rpc::format_cpu_list(rpc::thread_cpus()); }

std::string GuestSession::status_json() {
  std::ostringstream o;
  const auto up =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started_)
          .count();
  o << "{\"guest\":" << rpc::json_quote(opts_.guest) << ",\"pid\":" << ::getpid()
    << ",\"worker\":" << worker_index_ << ",\"cpus\":" << rpc::json_quote(thread_cpus())
    << ",\"uptime_s\":" << up << ",\"lanes\":[";
  bool first = true;
  for (std::uint32_t i = 0; i < lanes_.size(); ++i) {
    const Lane& l = lanes_[i];
    if (!l.active) continue;
    if (!first) o << ',';
    first = false;
    o << "{\"lane\":" << i << ",\"pid\":" << l.pid << ",\"peer\":" << l.peer
      << ",\"requests\":" << l.requests;
    if (l.agent) o << ",\"agent\":true";
    if (l.via_agent) o << ",\"vector\":" << l.vector;
    o << '}';
  }
  const auto c = sockets_.count_by_state();
  auto n = [&](rpc::SocketState s) { return c[static_cast<std::size_t>(s)]; };
  o << "],\"sockets\":{\"open\":" << sockets_.open_count()
    << ",\"connecting\":" << n(rpc::SocketState::kConnecting)
    << ",\"connected\":" << n(rpc::SocketState::kConnected)
    << ",\"listening\":" << n(rpc::SocketState::kListening)
    << ",\"closing\":" << n(rpc::SocketState::kClosing) << '}'
    << ",\"bytes_from_guest\":" << counters_.bytes_from_guest
    << ",\"bytes_to_guest\":" << counters_.bytes_to_guest
    << ",\"bytes_tx_wire\":" << counters_.bytes_tx_wire
    << ",\"bytes_rx_wire\":" << counters_.bytes_rx_wire
    << ",\"rx_backpressure_events\":" << counters_.rx_backpressure_events
    << ",\"bad_descriptors\":" << counters_.bad_descriptors
    << ",\"stale_buffer_returns\":" << counters_.stale_buffer_returns
    << ",\"async_setsockopt_failures\":" << counters_.async_setsockopt_failures
    << ",\"guests_reclaimed\":" << counters_.guests_reclaimed
    << ",\"rx_locks_released\":" << counters_.rx_locks_released
    << ",\"rx_chunks_lent\":" << rx_alloc_.lent_count()
    << ",\"tx_chunks_held\":" << tx_held_.held_count()
    << ",\"streams_blocked\":" << counters_.streams_blocked;
  if (opts_.vm_agent) {
    o << ",\"agent_peer\":" << agent_peer_ << ",\"agent_generation\":" << agent_generation_;
  }
  if (inspect_) {
    o << ",\"inspected_streams\":" << inspect_ids_.size()
      << ",\"inspection\":" << inspect_->status_json()
      << ",\"topology_generation\":" << inspect_->generation()
      << ",\"topology_error\":" << rpc::json_quote(inspect_->last_reload_error());
  }
  o << ",\"metrics\":" << metrics_json() << "}";
  return o.str();
}

}  // namespace tosec::tovm
