// Joining the platform: ivshmem region, guest channel, sidecar handshake, lane rings.
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "config.h"
#include "platform.h"
#include "real_calls.h"

namespace tosec::guest {

namespace {

std::mutex g_join_mu;
std::atomic<Platform*> g_platform{nullptr};
bool g_tried = false;  // under g_join_mu
SocketLocal* g_locals = nullptr;
std::uint32_t g_locals_n = 0;

// Our doorbell, plus the sidecar: the TOE dying hangs the sidecar up, which must wake a
// waiting leader instead of leaving it asleep forever.
class LaneDoorbell final : public rpc::DoorbellWaiter {
 public:
  LaneDoorbell(int efd, int sidecar) : efd_(efd), sidecar_(sidecar) {}
  rpc::Result<bool> wait(rpc::Vector, std::int64_t timeout_ns) override {
    pollfd p[2] = {{efd_, POLLIN, 0}, {sidecar_, POLLIN, 0}};
    timespec ts{};
    timespec* tsp = nullptr;
    if (timeout_ns >= 0) {
      ts.tv_sec = static_cast<time_t>(timeout_ns / 1'000'000'000);
      ts.tv_nsec = static_cast<long>(timeout_ns % 1'000'000'000);
      tsp = &ts;
    }
    const int n = real().ppoll(p, 2, tsp, nullptr);
    if (n < 0) return false;  // EINTR: the Waiter re-checks and sleeps again
    if (p[1].revents != 0) {
      char b;
      const ssize_t r = real().recv(sidecar_, &b, 1, MSG_DONTWAIT | MSG_PEEK);
      if (r == 0 || (p[1].revents & (POLLHUP | POLLERR)) != 0) {
        return rpc::Error{ECONNRESET, "sidecar: the TOE hung up"};
      }
    }
    if (p[0].revents != 0) {
      std::uint64_t v;
      (void)!real().read(efd_, &v, sizeof v);
      return true;
    }
    return false;
  }

 private:
  int efd_;
  int sidecar_;
};

rpc::Error fail(const std::string& what) { return rpc::Error{ENOTCONN, what}; }

rpc::Result<rpc::UniqueFd> sidecar_connect(const std::string& path) {
  rpc::UniqueFd fd(real().socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return rpc::errno_error("sidecar socket");
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.size() >= sizeof sa.sun_path) return fail("sidecar path too long: " + path);
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  if (real().connect(fd.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0) {
    return rpc::errno_error("sidecar connect(" + path + ")");
  }
  return fd;
}

}  // namespace

std::unique_ptr<Platform> Platform::join() {
  const Config& cfg = config();
  if (!cfg.offload) return nullptr;
  if (cfg.ivshmem_socket.empty() || cfg.toe_socket.empty()) {
    log(LogLevel::kInfo,
        "platform not configured (TOSEC_IVSHMEM_SOCKET/TOSEC_TOE_SOCKET unset): "
        "sockets stay on the kernel");
    return nullptr;
  }
  std::unique_ptr<Platform> p(new Platform());
  auto report = [](const rpc::Error& e) {
    log(LogLevel::kInfo, "platform unreachable, sockets stay on the kernel: " + e.message);
  };
  p->ivshmem_ =
      std::make_unique<rpc::IvshmemClient>(rpc::IvshmemClientOptions{cfg.ivshmem_vectors, 5000});
  if (auto s = p->ivshmem_->connect(cfg.ivshmem_socket); !s) {
    report(s.error());
    return nullptr;
  }
  // The TOE formats the region after creating it: retry while it is not ready yet.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (;;) {
    auto v = rpc::RegionView::attach(p->ivshmem_->region().bytes());
    if (v) {
      p->view_ = std::move(*v);
      break;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      report(v.error());
      return nullptr;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  auto ch = rpc::GuestChannel::attach_guest(p->view_);
  if (!ch) {
    report(ch.error());
    return nullptr;
  }
  p->channel_ = std::move(*ch);

  auto sc = sidecar_connect(cfg.toe_socket);
  if (!sc) {
    report(sc.error());
    return nullptr;
  }
  p->sidecar_ = std::move(*sc);
  rpc::SidecarHello hello{rpc::kSidecarMagic, rpc::kGuestChannelVersion,
                          static_cast<std::uint32_t>(::getpid()), p->ivshmem_->self_id(), 0};
  if (real().send(p->sidecar_.get(), &hello, sizeof hello, MSG_NOSIGNAL) !=
      static_cast<ssize_t>(sizeof hello)) {
    report(rpc::errno_error("sidecar hello"));
    return nullptr;
  }
  rpc::SidecarWelcome w{};
  pollfd pf{p->sidecar_.get(), POLLIN, 0};
  timespec five{5, 0};
  if (real().ppoll(&pf, 1, &five, nullptr) <= 0) {
    report(fail("sidecar: no welcome from the TOE within 5 s"));
    return nullptr;
  }
  if (real().recv(p->sidecar_.get(), &w, sizeof w, 0) != static_cast<ssize_t>(sizeof w) ||
      w.magic != rpc::kSidecarMagic) {
    report(fail("sidecar: bad welcome"));
    return nullptr;
  }
  if (w.status != 0) {
    report(rpc::Error{-w.status,
                      "sidecar: TOE refused us a lane: " + std::string(std::strerror(-w.status))});
    return nullptr;
  }
  const auto& gc = p->channel_.config();
  if (w.lane >= gc.lanes || w.guest_vector >= cfg.ivshmem_vectors) {
    report(fail("sidecar: welcome names lane " + std::to_string(w.lane) + " / vector " +
                std::to_string(w.guest_vector) + " outside our geometry"));
    return nullptr;
  }
  p->lane_ = w.lane;
  p->toe_peer_ = w.toe_peer;
  p->toe_vector_ = w.toe_vector;
  p->guest_vector_ = w.guest_vector;
  auto req = p->channel_.lane_ring(w.lane, true, rpc::RingEnd::kProducer);
  auto cpl = p->channel_.lane_ring(w.lane, false, rpc::RingEnd::kConsumer);
  if (!req || !cpl) {
    report(!req ? req.error() : cpl.error());
    return nullptr;
  }
  p->req_ = rpc::TypedRing<rpc::Descriptor>(std::move(*req));
  p->cpl_ = rpc::TypedRing<rpc::Descriptor>(std::move(*cpl));
  p->tx_ = rpc::ChunkAllocator(gc.tx_chunks_per_lane);
  p->tx_owner_.assign(gc.tx_chunks_per_lane, {0, 0});
  // The TOE may have joined the ivshmem server after us: wait for its doorbells.
  if (!p->ivshmem_->doorbells().has_peer(p->toe_peer_)) {
    auto peer = p->ivshmem_->wait_for_peer(p->toe_peer_, 5000);
    if (!peer) {
      report(peer.error());
      return nullptr;
    }
  }
  const int efd = p->ivshmem_->doorbells().own_fd(p->guest_vector_);
  if (efd < 0) {
    report(fail("ivshmem: no eventfd for our vector " + std::to_string(p->guest_vector_)));
    return nullptr;
  }
  p->doorbell_ = std::make_unique<LaneDoorbell>(efd, p->sidecar_.get());
  // Completions of socket calls: a TOE that is awake (or busy-polling, --spin-ns) answers
  // socket/bind/connect/setsockopt in a few us, well before a sleeping caller would even be
  // woken. The notifier's default probe (1 us) is too short to ever see that, so probe with
  // the whole ceiling; the budget still halves to zero when the TOE is slow to answer.
  rpc::SpinPolicy calls;
  calls.max_spin_ns = 50'000;
  calls.spin_ns = calls.max_spin_ns;
  calls.probe_ns = calls.max_spin_ns;
  calls.probe_every = 64;
  calls.hit_rate = true;
  p->waiter_ = std::make_unique<rpc::Waiter>(*p->doorbell_, p->guest_vector_, calls);
  if (g_locals == nullptr) {
    g_locals = new SocketLocal[gc.max_sockets];
    g_locals_n = gc.max_sockets;
  } else if (g_locals_n < gc.max_sockets) {
    report(fail("guest region geometry changed across fork"));
    return nullptr;
  }
  p->locals_ = g_locals;
  log(LogLevel::kInfo, "joined the platform: ivshmem peer " +
                           std::to_string(p->ivshmem_->self_id()) + ", lane " +
                           std::to_string(p->lane_));
  return p;
}

Platform* Platform::current() { return g_platform.load(std::memory_order_acquire); }

Platform* Platform::get() {
  if (Platform* p = g_platform.load(std::memory_order_acquire)) return p;
  std::lock_guard lk(g_join_mu);
  if (Platform* p = g_platform.load(std::memory_order_acquire)) return p;
  if (g_tried) return nullptr;
  g_tried = true;
  std::unique_ptr<Platform> p = join();
  if (!p) return nullptr;
  g_platform.store(p.release(), std::memory_order_release);
  return g_platform.load(std::memory_order_relaxed);
}

void Platform::fork_prepare() {
  g_join_mu.lock();
  if (Platform* p = g_platform.load(std::memory_order_acquire)) {
    p->submit_mu_.lock();
    p->cpl_mu_.lock();
  }
}

void Platform::fork_parent() {
  if (Platform* p = g_platform.load(std::memory_order_acquire)) {
    p->cpl_mu_.unlock();
    p->submit_mu_.unlock();
  }
  g_join_mu.unlock();
}

void Platform::drop_after_fork() {
  // Single-threaded here (fork child). The mutexes may have been copied locked: rebuild them.
  new (&g_join_mu) std::mutex();
  Platform* p = g_platform.exchange(nullptr, std::memory_order_acq_rel);
  g_tried = false;
  if (p != nullptr) {
    new (&p->submit_mu_) std::mutex();
    new (&p->cpl_mu_) std::mutex();
    new (&p->cpl_cv_) std::condition_variable();
    delete p;  // closes the child's copies of the ivshmem socket, eventfds, sidecar; unmaps
  }
  if (g_locals != nullptr) {
    for (std::uint32_t i = 0; i < g_locals_n; ++i) {
      g_locals[i].credit.reset();  // the parent's in-flight sends are the parent's
      new (&g_locals[i].opts_mu) std::mutex();
    }
  }
}

RxRing Platform::rx_ring(std::uint32_t id) const { return make_rx_ring(channel_, id); }

Platform::~Platform() = default;

}  // namespace tosec::guest
