#include "tosec/agent/agent_loop.h"

#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <random>
#include <thread>

#include "tosec/agent/agent_core.h"
#include "tosec/agent/log.h"
#include "tosec/agent/shim_sockets.h"
#include "tosec/rpc/region.h"

namespace tosec::agent {

namespace {

// epoll tokens: kind in the top byte. B ends carry (tag, socket) so a stale event is
// recognised (AgentCore::on_b_hangup).
enum class Kind : std::uint64_t {
  kSignal = 1,
  kTimer,
  kDeviceEvents,
  kOwnVector,
  kToeVector,  // low bits: vector
  kIvshmemListen,
  kSidecarListen,
  kIvshmemConn,  // low bits: connection id
  kSidecarConn,
  kBEnd,  // bits 32..55: tag, low 32: socket
};
constexpr std::uint64_t token(Kind k, std::uint64_t low = 0) {
  return static_cast<std::uint64_t>(k) << 56 | (low & ((1ULL << 56) - 1));
}
constexpr Kind kind_of(std::uint64_t t) { return static_cast<Kind>(t >> 56); }
constexpr std::uint64_t low_of(std::uint64_t t) { return t & ((1ULL << 56) - 1); }

constexpr std::int64_t kTimerMs = 100;
constexpr std::int64_t kPollTimerMs = 1;  // device without interrupts
constexpr rpc::PeerId kPciHelloCandidates = 8;

std::uint64_t fresh_generation() {
  std::random_device rd;
  std::uint64_t g =
      (static_cast<std::uint64_t>(rd()) << 32) ^ rd() ^
      static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  return g == 0 ? 1 : g;
}

void drain_eventfd(int fd) {
  std::uint64_t v;
  (void)!::read(fd, &v, sizeof v);
}

class Agent {
 public:
  explicit Agent(const AgentOptions& o) : opts_(o) {}
  int run();

 private:
  struct IvshmemConn {
    rpc::UniqueFd sock;
    pid_t pid = -1;
    rpc::Vector vector = 0;
  };
  struct SidecarConn {
    rpc::UniqueFd sock;  // invalid once the process hung up (reply still awaited)
    pid_t pid = -1;
    rpc::Vector vector = 0;  // 0: no vector held
    bool hello_done = false;
    bool awaiting_reply = false;
    std::optional<std::uint32_t> lane;
  };

  rpc::Status setup();
  rpc::Status attach_region();
  rpc::Status open_shim_sockets();
  void add(int fd, std::uint32_t events, std::uint64_t tok);
  std::vector<rpc::PeerId> hello_candidates() const;
  int vector_fd(rpc::Vector v) const;
  rpc::Status dispatch(std::uint64_t tok, std::uint32_t events);
  void accept_ivshmem();
  void accept_sidecar();
  void on_sidecar(std::uint64_t id);
  void close_sidecar(std::uint64_t id);
  void on_process_reply(std::uint64_t id, std::int64_t result);
  void release_vector(rpc::Vector v);
  void on_timer();
  rpc::Status poll_core();

  AgentOptions opts_;
  std::unique_ptr<Device> dev_;
  std::optional<rpc::RegionView> view_;
  std::optional<rpc::GuestChannel> channel_;
  std::optional<AgentCore> core_;
  rpc::UniqueFd ep_, sigfd_, timer_;
  std::vector<rpc::UniqueFd> toe_fds_;   // the TOE's vectors as the shims see them
  std::vector<rpc::UniqueFd> tick_fds_;  // our vectors, when the device has no eventfds
  std::vector<unsigned> vector_refs_;    // connections holding each vector (0: free)
  rpc::UniqueFd iv_listen_, sc_listen_;
  std::map<std::uint64_t, IvshmemConn> iv_conns_;
  std::map<std::uint64_t, SidecarConn> sc_conns_;
  std::map<pid_t, std::uint64_t> iv_by_pid_;
  std::uint64_t next_conn_ = 1;
  bool stop_ = false;
  bool polling_ = false;
};

void Agent::add(int fd, std::uint32_t events, std::uint64_t tok) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = tok;
  if (::epoll_ctl(ep_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
    log_line(rpc::errno_error("epoll_ctl(add fd " + std::to_string(fd) + ")").message);
  }
}

int Agent::vector_fd(rpc::Vector v) const {
  const int fd = dev_->vector_fd(v);
  return fd >= 0 ? fd : tick_fds_.at(v).get();
}

std::vector<rpc::PeerId> Agent::hello_candidates() const {
  if (opts_.toe_peer) return {*opts_.toe_peer};
  if (opts_.device.kind == DeviceSpec::Kind::kSocket) return dev_->peers();
  // A VM sees no peer list. The guest's server hands out the lowest free id, so the TOE is one
  // of the first few; a ring to an absent peer is dropped by QEMU, and the guest's region has
  // no other peers that a stray ring could bother.
  std::vector<rpc::PeerId> c;
  for (rpc::PeerId p = 0; p < kPciHelloCandidates; ++p) {
    if (p != dev_->self()) c.push_back(p);
  }
  return c;
}

rpc::Status Agent::attach_region() {
  // The TOE formats the region after it joins: wait for it, as a shim does.
  bool said = false;
  for (;;) {
    auto v = rpc::RegionView::attach(dev_->region());
    if (v) {
      auto ch = rpc::GuestChannel::attach_guest(*v);
      if (!ch) return ch.error();
      view_.emplace(std::move(*v));
      channel_.emplace(std::move(*ch));
      return {};
    }
    if (!said) {
      log_line("waiting for the TOE to format the region (" + v.error().message + ")");
      said = true;
    }
    sigset_t pending;
    if (::sigpending(&pending) == 0 &&
        (sigismember(&pending, SIGTERM) == 1 || sigismember(&pending, SIGINT) == 1)) {
      return rpc::Error{EINTR, "stopped before the region was formatted"};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

rpc::Status Agent::setup() {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  auto dev = open_device(opts_.device, opts_.vectors, opts_.irq);
  if (!dev) return dev.error();
  dev_ = std::move(*dev);
  log_line("device: " + dev_->describe() + ", " + std::to_string(dev_->vectors()) + " vectors");
  if (auto s = attach_region(); !s) return s;

  ep_.reset(::epoll_create1(EPOLL_CLOEXEC));
  sigfd_.reset(::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC));
  timer_.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  if (!ep_.valid() || !sigfd_.valid() || !timer_.valid()) return rpc::errno_error("epoll setup");
  add(sigfd_.get(), EPOLLIN, token(Kind::kSignal));
  add(timer_.get(), EPOLLIN, token(Kind::kTimer));
  if (dev_->events_fd() >= 0) add(dev_->events_fd(), EPOLLIN, token(Kind::kDeviceEvents));

  tick_fds_.resize(dev_->vectors());
  for (rpc::Vector v = 0; v < dev_->vectors(); ++v) {
    if (dev_->vector_fd(v) >= 0) continue;
    polling_ = true;
    auto e = rpc::make_eventfd();
    if (!e) return e.error();
    tick_fds_[v] = std::move(*e);
  }
  vector_refs_.assign(dev_->vectors(), 0);
  vector_refs_[rpc::kAgentVector] = 1;  // ours for good
  add(vector_fd(rpc::kAgentVector), EPOLLIN, token(Kind::kOwnVector));
  const std::int64_t ms = polling_ ? kPollTimerMs : kTimerMs;
  itimerspec its{};
  its.it_interval.tv_sec = ms / 1000;
  its.it_interval.tv_nsec = (ms % 1000) * 1'000'000;
  its.it_value = its.it_interval;
  if (::timerfd_settime(timer_.get(), 0, &its, nullptr) != 0) return rpc::errno_error("timerfd");

  AgentCore::Hooks hooks;
  hooks.process_reply = [this](std::uint64_t id, std::int64_t r) { on_process_reply(id, r); };
  hooks.watch_b = [this](int fd, std::uint32_t socket, std::uint32_t tag) {
    add(fd, EPOLLRDHUP, token(Kind::kBEnd, std::uint64_t{tag} << 32 | socket));
  };
  auto core = AgentCore::attach(*channel_, *dev_, dev_->self(), fresh_generation(), dev_->vectors(),
                                std::move(hooks));
  if (!core) return core.error();
  core_.emplace(std::move(*core));
  const auto candidates = hello_candidates();
  if (auto s = core_->send_hello(candidates); !s) return s;
  log_line("hello sent (generation " + std::to_string(core_->generation()) +
           "), waiting for the TOE (tosec-tovm --vm-agent)");
  return {};
}

rpc::Status Agent::open_shim_sockets() {
  for (rpc::Vector v = 0; v < dev_->vectors(); ++v) {
    auto e = rpc::make_eventfd();
    if (!e) return e.error();
    add(e->get(), EPOLLIN, token(Kind::kToeVector, v));
    toe_fds_.push_back(std::move(*e));
  }
  auto iv = listen_unix(opts_.ivshmem_socket, SOCK_STREAM);
  if (!iv) return iv.error();
  auto sc = listen_unix(opts_.toe_socket, SOCK_SEQPACKET);
  if (!sc) return sc.error();
  iv_listen_ = std::move(*iv);
  sc_listen_ = std::move(*sc);
  add(iv_listen_.get(), EPOLLIN, token(Kind::kIvshmemListen));
  add(sc_listen_.get(), EPOLLIN, token(Kind::kSidecarListen));
  const std::size_t procs = std::min<std::size_t>(dev_->vectors(), channel_->config().lanes) - 1;
  log_line("serving shims on " + opts_.ivshmem_socket + " and " + opts_.toe_socket + " (up to " +
           std::to_string(procs) + " processes)");
  return {};
}

rpc::Status Agent::poll_core() {
  if (auto s = core_->poll(); !s) return s;
  if (core_->ready() && !iv_listen_.valid()) return open_shim_sockets();
  return {};
}

void Agent::accept_ivshmem() {
  for (;;) {
    rpc::UniqueFd c(::accept4(iv_listen_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!c.valid()) return;
    const pid_t pid = peer_pid(c.get());
    // Process vectors are 1..lanes-1: the TOE keeps `lanes` vectors of the VM's peer and has
    // lanes - 1 process lanes, so a vector beyond that could never get a lane.
    const std::size_t limit = std::min<std::size_t>(vector_refs_.size(), channel_->config().lanes);
    rpc::Vector v = 1;
    while (v < limit && vector_refs_[v] != 0) ++v;
    if (v >= limit) {
      // Closing makes the shim's join fail: it stays on the kernel stack, as with no free lane.
      log_line("pid " + std::to_string(pid) + ": every vector is in use (" +
               std::to_string(limit - 1) + " processes): refused, its sockets stay on the kernel");
      continue;
    }
    auto region = dev_->region_fd();
    if (!region) {
      log_line("pid " + std::to_string(pid) + ": " + region.error().message);
      continue;
    }
    std::vector<int> toe;
    for (const auto& f : toe_fds_) toe.push_back(f.get());
    ShimJoin j{dev_->self(), core_->toe_peer(), toe, region->get(), vector_fd(v)};
    if (auto s = send_ivshmem_join(c.get(), j); !s) {
      log_line("pid " + std::to_string(pid) + ": " + s.message());
      continue;
    }
    const std::uint64_t id = next_conn_++;
    vector_refs_[v] = 1;
    add(c.get(), EPOLLIN | EPOLLRDHUP, token(Kind::kIvshmemConn, id));
    iv_by_pid_[pid] = id;
    iv_conns_[id] = IvshmemConn{std::move(c), pid, v};
    log_debug("pid " + std::to_string(pid) + " joined as ivshmem peer, vector " +
              std::to_string(v));
  }
}

void Agent::release_vector(rpc::Vector v) {
  if (v != 0 && v < vector_refs_.size() && vector_refs_[v] > 0) --vector_refs_[v];
}

void Agent::accept_sidecar() {
  for (;;) {
    rpc::UniqueFd c(::accept4(sc_listen_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!c.valid()) return;
    const std::uint64_t id = next_conn_++;
    add(c.get(), EPOLLIN | EPOLLRDHUP, token(Kind::kSidecarConn, id));
    SidecarConn sc;
    sc.pid = peer_pid(c.get());
    sc.sock = std::move(c);
    sc_conns_[id] = std::move(sc);
  }
}

void Agent::on_sidecar(std::uint64_t id) {
  auto it = sc_conns_.find(id);
  if (it == sc_conns_.end() || !it->second.sock.valid()) return;
  SidecarConn& sc = it->second;
  for (;;) {
    SidecarMessage m = read_sidecar(sc.sock.get(), !sc.hello_done);
    using K = SidecarMessage::Kind;
    if (m.kind == K::kAgain) return;
    if (m.kind == K::kEof || m.kind == K::kBad) {
      if (m.kind == K::kBad) {
        log_line("sidecar of pid " + std::to_string(sc.pid) + ": " + m.error + ": closed");
      }
      close_sidecar(id);
      return;
    }
    if (m.kind == K::kHello) {
      sc.hello_done = true;
      rpc::SidecarWelcome w{};
      w.magic = rpc::kSidecarMagic;
      auto iv = iv_by_pid_.find(sc.pid);
      if (m.hello.version != rpc::kGuestChannelVersion) {
        w.status = -EPROTO;
      } else if (iv == iv_by_pid_.end()) {
        w.status = -ENOENT;  // it never joined as an ivshmem peer: no vector to give it
      }
      if (w.status != 0) {
        log_line("sidecar of pid " + std::to_string(sc.pid) + ": refused (" +
                 std::to_string(w.status) + ")");
        (void)send_welcome(sc.sock.get(), w);
        close_sidecar(id);
        return;
      }
      sc.vector = iv_conns_.at(iv->second).vector;
      ++vector_refs_[sc.vector];
      sc.awaiting_reply = true;
      if (auto s = core_->send_process(id, static_cast<std::uint32_t>(sc.pid), sc.vector); !s) {
        log_line(s.message());
      }
      continue;
    }
    // kFd: end B of a new placeholder. It must be a connected AF_UNIX stream socket.
    int type = 0, domain = 0;
    socklen_t len = sizeof type;
    const bool ok = ::getsockopt(m.fd.get(), SOL_SOCKET, SO_TYPE, &type, &len) == 0 &&
                    (len = sizeof domain,
                     ::getsockopt(m.fd.get(), SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0) &&
                    type == SOCK_STREAM && domain == AF_UNIX;
    if (!sc.lane || !ok) {
      log_line("sidecar of pid " + std::to_string(sc.pid) +
               (sc.lane ? ": SidecarFd is not an AF_UNIX stream socket"
                        : ": SidecarFd before its welcome") +
               ": closed");
      close_sidecar(id);
      return;
    }
    core_->add_b(*sc.lane, m.fd_msg.request_id, std::move(m.fd));
  }
}

void Agent::close_sidecar(std::uint64_t id) {
  auto it = sc_conns_.find(id);
  if (it == sc_conns_.end()) return;
  SidecarConn& sc = it->second;
  sc.sock.reset();
  if (sc.lane) (void)core_->send_gone(*sc.lane);
  if (sc.awaiting_reply) return;  // on_process_reply finishes it
  release_vector(sc.vector);
  sc_conns_.erase(it);
}

void Agent::on_process_reply(std::uint64_t id, std::int64_t result) {
  auto it = sc_conns_.find(id);
  if (it == sc_conns_.end() || !it->second.awaiting_reply) {
    log_line("kAgentProcess reply for unknown token " + std::to_string(id) + ": dropped");
    return;
  }
  SidecarConn& sc = it->second;
  sc.awaiting_reply = false;
  if (!sc.sock.valid()) {  // the process left while we asked
    if (result >= 0) (void)core_->send_gone(static_cast<std::uint32_t>(result));
    release_vector(sc.vector);
    sc_conns_.erase(it);
    return;
  }
  rpc::SidecarWelcome w{};
  w.magic = rpc::kSidecarMagic;
  w.status = result < 0 ? static_cast<std::int32_t>(result) : 0;
  w.lane = result < 0 ? 0 : static_cast<std::uint32_t>(result);
  w.toe_peer = core_->toe_peer();
  w.toe_vector = core_->toe_vector();
  // The shim's own vectors are all one fd (the MSI-X eventfd of sc.vector): it waits on its
  // vector 0, so a shim with the default TOSEC_IVSHMEM_VECTORS=1 works. The TOE rings
  // sc.vector of the VM peer (told in kAgentProcess).
  w.guest_vector = 0;
  if (auto s = send_welcome(sc.sock.get(), w); !s || result < 0) {
    if (!s) log_line("pid " + std::to_string(sc.pid) + ": " + s.message());
    if (result < 0) {
      log_line("pid " + std::to_string(sc.pid) + ": the TOE refused a lane (" +
               std::to_string(result) + ")");
    } else {
      sc.lane = static_cast<std::uint32_t>(result);
    }
    close_sidecar(id);
    return;
  }
  sc.lane = static_cast<std::uint32_t>(result);
  log_line("pid " + std::to_string(sc.pid) + " -> lane " + std::to_string(*sc.lane) + ", vector " +
           std::to_string(sc.vector));
  on_sidecar(id);  // B ends may already wait behind the hello
}

void Agent::on_timer() {
  if (!core_->ready()) core_->ring_hello_again(hello_candidates());
  core_->check_killed();
  if (polling_) {
    // No interrupts: wake every process in case the TOE completed something (spurious
    // wake-ups are allowed by the shim's waiter).
    for (rpc::Vector v = 1; v < tick_fds_.size(); ++v) {
      if (tick_fds_[v].valid() && vector_refs_[v] != 0) {
        const std::uint64_t one = 1;
        (void)!::write(tick_fds_[v].get(), &one, sizeof one);
      }
    }
  }
}

rpc::Status Agent::dispatch(std::uint64_t tok, std::uint32_t events) {
  const std::uint64_t low = low_of(tok);
  switch (kind_of(tok)) {
    case Kind::kSignal: {
      signalfd_siginfo si{};
      (void)!::read(sigfd_.get(), &si, sizeof si);
      log_line("signal " + std::to_string(si.ssi_signo) + ": closing every B and exiting");
      stop_ = true;
      return {};
    }
    case Kind::kTimer:
      drain_eventfd(timer_.get());
      on_timer();
      return poll_core();
    case Kind::kDeviceEvents: {
      if (auto s = dev_->process_events(); !s) return s;
      if (!core_->ready()) {
        core_->ring_hello_again(hello_candidates());
        return {};
      }
      // The TOE left the server: every lane and B of ours is void. Exit and let the
      // supervisor restart us with a fresh generation (a VM sees this as a reformatted region:
      // the ring check in poll() ends the agent the same way).
      const auto peers = dev_->peers();
      if (std::find(peers.begin(), peers.end(), core_->toe_peer()) == peers.end()) {
        return rpc::Error{ECONNRESET,
                          "the TOE (peer " + std::to_string(core_->toe_peer()) + ") left"};
      }
      return {};
    }
    case Kind::kOwnVector:
      drain_eventfd(vector_fd(rpc::kAgentVector));
      return poll_core();
    case Kind::kToeVector:
      drain_eventfd(toe_fds_.at(low).get());
      if (auto s = dev_->ring(core_->toe_peer(), static_cast<rpc::Vector>(low)); !s) {
        log_debug("ringing the TOE for a shim: " + s.message());
      }
      return {};
    case Kind::kIvshmemListen:
      accept_ivshmem();
      return {};
    case Kind::kSidecarListen:
      accept_sidecar();
      return {};
    case Kind::kIvshmemConn: {
      // A shim never writes here: any event is its hang-up (or garbage, handled alike).
      auto it = iv_conns_.find(low);
      if (it == iv_conns_.end()) return {};
      release_vector(it->second.vector);
      if (auto p = iv_by_pid_.find(it->second.pid); p != iv_by_pid_.end() && p->second == low) {
        iv_by_pid_.erase(p);
      }
      iv_conns_.erase(it);
      return {};
    }
    case Kind::kSidecarConn:
      on_sidecar(low);
      if ((events & (EPOLLHUP | EPOLLERR)) != 0) close_sidecar(low);
      return {};
    case Kind::kBEnd:
      core_->on_b_hangup(static_cast<std::uint32_t>(low), static_cast<std::uint32_t>(low >> 32));
      core_->flush();
      return {};
  }
  return {};
}

int Agent::run() {
  if (auto s = setup(); !s) {
    log_line(s.message());
    return 1;
  }
  epoll_event evs[64];
  int rc = 0;
  while (!stop_) {
    if (auto s = poll_core(); !s) {
      log_line("fatal: " + s.message());
      rc = 1;
      break;
    }
    const int n = ::epoll_wait(ep_.get(), evs, 64, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      log_line(rpc::errno_error("epoll_wait").message);
      rc = 1;
      break;
    }
    for (int i = 0; i < n && !stop_; ++i) {
      if (auto s = dispatch(evs[i].data.u64, evs[i].events); !s) {
        log_line("fatal: " + s.message());
        stop_ = true;
        rc = 1;
      }
    }
  }
  if (core_) core_->close_all();
  if (iv_listen_.valid()) ::unlink(opts_.ivshmem_socket.c_str());
  if (sc_listen_.valid()) ::unlink(opts_.toe_socket.c_str());
  return rc;
}

}  // namespace

int run_agent(const AgentOptions& options) {
  Agent a(options);
  return a.run();
}

}  // namespace tosec::agent
