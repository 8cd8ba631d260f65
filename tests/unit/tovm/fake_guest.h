// A fake guest process for the TOE tests: it speaks the real wire contract (guest_channel.h)
// with the real region structures: joins the ivshmem server, attaches the guest channel, says
// hello on the sidecar, passes end B of each placeholder with SCM_RIGHTS, and drives its lane.
// Deliberately simple (polls with short sleeps, one thread): the tests judge the TOE.
#pragma once

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tosec/rpc/guest_channel.h"
#include "tosec/rpc/ivshmem_client.h"
#include "tosec/rpc/notifier.h"
#include "tosec/rpc/region.h"
#include "tosec/rpc/unique_fd.h"

namespace tosec::tovm::test {

inline constexpr int kWaitMs = 10000;

inline bool wait_for(const std::function<bool()>& cond, int timeout_ms = kWaitMs) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!cond()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  return true;
}

class FakeGuest {
 public:
  // Returns nullptr with `error` set on failure.
  // `after_hello` runs once the hello is sent, before the wait for the welcome.
  static std::unique_ptr<FakeGuest> join(const std::string& ivshmem, const std::string& sidecar,
                                         std::string& error,
                                         const std::function<void()>& after_hello = {}) {
    std::unique_ptr<FakeGuest> g(new FakeGuest());
    if (auto s = g->ivs_.connect(ivshmem); !s) {
      error = "ivshmem: " + s.message();
      return nullptr;
    }
    auto view = rpc::RegionView::attach(g->ivs_.region().bytes());
    if (!view) {
      error = "region: " + view.error().message;
      return nullptr;
    }
    g->view_ = std::move(*view);
    auto ch = rpc::GuestChannel::attach_guest(g->view_);
    if (!ch) {
      error = "channel: " + ch.error().message;
      return nullptr;
    }
    g->ch_ = std::move(*ch);
    g->side_.reset(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    std::strncpy(sun.sun_path, sidecar.c_str(), sizeof sun.sun_path - 1);
    if (::connect(g->side_.get(), reinterpret_cast<sockaddr*>(&sun), sizeof sun) != 0) {
      error = "sidecar connect: " + std::string(std::strerror(errno));
      return nullptr;
    }
    rpc::SidecarHello hello{rpc::kSidecarMagic, rpc::kGuestChannelVersion,
                            static_cast<std::uint32_t>(::getpid()), g->ivs_.self_id(), 0};
    if (::send(g->side_.get(), &hello, sizeof hello, MSG_NOSIGNAL) != sizeof hello) {
      error = "sidecar hello: " + std::string(std::strerror(errno));
      return nullptr;
    }
    if (after_hello) after_hello();
    pollfd p{g->side_.get(), POLLIN, 0};
    if (::poll(&p, 1, kWaitMs) != 1 ||
        ::recv(g->side_.get(), &g->welcome_, sizeof g->welcome_, 0) != sizeof g->welcome_) {
      error = "no welcome";
      return nullptr;
    }
    if (g->welcome_.status != 0) {
      error = "welcome status " + std::to_string(g->welcome_.status);
      return nullptr;
    }
    g->lane_ = g->welcome_.lane;
    auto req = g->ch_.lane_ring(g->lane_, true, rpc::RingEnd::kProducer);
    auto cpl = g->ch_.lane_ring(g->lane_, false, rpc::RingEnd::kConsumer);
    if (!req || !cpl) {
      error = "lane rings";
      return nullptr;
    }
    g->req_ = std::move(*req);
    g->cpl_ = std::move(*cpl);
    const std::uint32_t first = g->ch_.lane_tx_first(g->lane_);
    for (std::uint32_t i = g->ch_.config().tx_chunks_per_lane; i > 0; --i) {
      g->free_tx_.push_back(first + i - 1);
    }
    return g;
  }

  std::uint32_t lane() const { return lane_; }
  const rpc::GuestChannel& channel() const { return ch_; }
  const rpc::RegionView& view() const { return view_; }
  rpc::SpscRing& req_ring() { return req_; }
  rpc::SocketSlot* slot(std::uint32_t id) const { return ch_.slot(id); }
  std::uint64_t next_id() { return next_request_++; }

  // ---- raw lane access ----
  void ring_toe() {
    (void)rpc::notify(req_.consumer_sleeping(), ivs_.doorbells(), welcome_.toe_peer,
                      welcome_.toe_vector);
  }
  bool post(const rpc::Descriptor& d) { return post_many(&d, 1); }
  bool post_many(const rpc::Descriptor* d, std::uint32_t n) {
    const bool ok = req_.enqueue_burst(d, n) == n;
    ring_toe();
    return ok;
  }
  // Drains the completion ring into the backlog; returns the completion for `request_id`.
  std::optional<rpc::Descriptor> wait_cpl(std::uint64_t request_id, int timeout_ms = kWaitMs) {
    std::optional<rpc::Descriptor> out;
    wait_for(
        [&] {
          poll_cpl();
          for (auto it = backlog_.begin(); it != backlog_.end(); ++it) {
            if (it->request_id == request_id) {
              out = *it;
              backlog_.erase(it);
              return true;
            }
          }
          return false;
        },
        timeout_ms);
    return out;
  }
  void poll_cpl() {
    rpc::Descriptor d[32];
    for (;;) {
      const std::uint32_t n = cpl_.dequeue_burst(d, 32);
      for (std::uint32_t i = 0; i < n; ++i) {
        const std::uint32_t first = ch_.lane_tx_first(lane_);
        if (d[i].pool == static_cast<std::uint16_t>(rpc::PoolId::kTx) && d[i].chunk >= first &&
            d[i].chunk - first < ch_.config().tx_chunks_per_lane &&
            std::find(free_tx_.begin(), free_tx_.end(), d[i].chunk) == free_tx_.end()) {
          free_tx_.push_back(d[i].chunk);  // the TOE gave the chunk back (our ledger agrees)
        }
        backlog_.push_back(d[i]);
      }
      if (n < 32) return;
    }
  }
  std::optional<rpc::Descriptor> call(rpc::Descriptor d) {
    d.request_id = next_id();
    if (!post(d)) return std::nullopt;
    return wait_cpl(d.request_id);
  }
  std::size_t backlog_size() const { return backlog_.size(); }
  void clear_backlog() { backlog_.clear(); }

  // ---- tx chunks ----
  std::optional<std::uint32_t> alloc_tx() {
    if (free_tx_.empty()) {
      wait_for([&] {
        poll_cpl();
        return !free_tx_.empty();
      });
      if (free_tx_.empty()) return std::nullopt;
    }
    const std::uint32_t c = free_tx_.back();
    free_tx_.pop_back();
    return c;
  }
  std::span<std::byte> tx_bytes(std::uint32_t chunk) const { return ch_.tx_pool().chunk(chunk); }

  // ---- socket calls ----
  // Creates a placeholder pair, passes B, returns the socket id (or -errno); `a` gets end A.
  std::int64_t socket(int domain, int type, rpc::UniqueFd& a) {
    const std::uint64_t rid = next_id();
    rpc::UniqueFd b;
    if (!make_pair(a, b) || !send_b(rid, b.get())) return -EIO;
    b.reset();
    rpc::Descriptor d{};
    d.op = static_cast<std::uint16_t>(rpc::Op::kSocket);
    d.request_id = rid;
    d.arg0 = static_cast<std::uint64_t>(domain) | static_cast<std::uint64_t>(type) << 16;
    if (!post(d)) return -EIO;
    auto c = wait_cpl(rid);
    return c ? c->result : -ETIMEDOUT;
  }
  std::int64_t accept(std::uint32_t listener, rpc::UniqueFd& a) {
    const std::uint64_t rid = next_id();
    rpc::UniqueFd b;
    if (!make_pair(a, b) || !send_b(rid, b.get())) return -EIO;
    b.reset();
    rpc::Descriptor d{};
    d.op = static_cast<std::uint16_t>(rpc::Op::kAccept);
    d.socket = listener;
    d.request_id = rid;
    if (!post(d)) return -EIO;
    auto c = wait_cpl(rid);
    return c ? c->result : -ETIMEDOUT;
  }
  // kBind / kConnect with the address in a tx chunk.
  std::int64_t addr_op(rpc::Op op, std::uint32_t id, const void* addr, std::size_t len) {
    auto chunk = alloc_tx();
    if (!chunk) return -ENOBUFS;
    std::memcpy(tx_bytes(*chunk).data(), addr, len);
    rpc::Descriptor d{};
    d.op = static_cast<std::uint16_t>(op);
    d.socket = id;
    d.pool = static_cast<std::uint16_t>(rpc::PoolId::kTx);
    d.chunk = *chunk;
    d.length = static_cast<std::uint32_t>(len);
    auto c = call(d);
    return c ? c->result : -ETIMEDOUT;
  }
  std::int64_t setsockopt(std::uint32_t id, int level, int name, const void* value,
                          std::size_t len) {
    auto chunk = alloc_tx();
    if (!chunk) return -ENOBUFS;
    std::memcpy(tx_bytes(*chunk).data(), value, len);
    rpc::Descriptor d{};
    d.op = static_cast<std::uint16_t>(rpc::Op::kSetsockopt);
    d.socket = id;
    d.pool = static_cast<std::uint16_t>(rpc::PoolId::kTx);
    d.chunk = *chunk;
    d.length = static_cast<std::uint32_t>(len);
    d.arg0 = static_cast<std::uint64_t>(static_cast<std::uint32_t>(level)) << 32 |
             static_cast<std::uint32_t>(name);
    auto c = call(d);
    return c ? c->result : -ETIMEDOUT;
  }
  // A setsockopt with its int value inline (pool kNone); reply = false posts it with
  // kDescFlagNoReply and returns 0 without waiting (the TOE sends no completion).
  std::int64_t setsockopt_inline(std::uint32_t id, int level, int name, int value, bool reply) {
    rpc::Descriptor d{};
    d.op = static_cast<std::uint16_t>(rpc::Op::kSetsockopt);
    d.socket = id;
    d.length = sizeof value;
    d.arg0 = static_cast<std::uint64_t>(static_cast<std::uint32_t>(level)) << 32 |
             static_cast<std::uint32_t>(name);
    d.arg1 = static_cast<std::uint32_t>(value);
    if (reply) {
      auto c = call(d);
      return c ? c->result : -ETIMEDOUT;
    }
    d.flags = rpc::kDescFlagNoReply;
    d.request_id = next_id();
    return post(d) ? 0 : -EIO;
  }
  // kGetsockopt of an int option: the value, or -errno.
  std::int64_t getsockopt_int(std::uint32_t id, int level, int name) {
    rpc::Descriptor d{};
    d.op = static_cast<std::uint16_t>(rpc::Op::kGetsockopt);
    d.socket = id;
    d.arg0 = static_cast<std::uint64_t>(static_cast<std::uint32_t>(level)) << 32 |
             static_cast<std::uint32_t>(name);
    auto c = call(d);
    if (!c) return -ETIMEDOUT;
    if (c->result < 0) return c->result;
    int v = 0;
    std::memcpy(&v, &c->arg0, sizeof v);
    return v;
  }
  void kick(std::uint32_t id, std::uint64_t what) {
    rpc::Descriptor d{};
    d.op = rpc::kOpKick;
    d.socket = id;
    d.arg0 = what;
    (void)post(d);
  }
  std::int64_t simple(rpc::Op op, std::uint32_t id, std::uint64_t arg0 = 0) {
    rpc::Descriptor d{};
    d.op = static_cast<std::uint16_t>(op);
    d.socket = id;
    d.arg0 = arg0;
    auto c = call(d);
    return c ? c->result : -ETIMEDOUT;
  }
  // Posts a kSend of `data` (<= chunk size) without waiting; false if no chunk.
  bool send_async(std::uint32_t id, std::span<const std::byte> data, std::uint64_t addr_len = 0) {
    auto chunk = alloc_tx();
    if (!chunk) return false;
    std::memcpy(tx_bytes(*chunk).data(), data.data(), data.size());
    rpc::Descriptor d{};
    d.op = static_cast<std::uint16_t>(rpc::Op::kSend);
    d.socket = id;
    d.request_id = next_id();
    d.pool = static_cast<std::uint16_t>(rpc::PoolId::kTx);
    d.chunk = *chunk;
    d.length = static_cast<std::uint32_t>(data.size());
    d.arg1 = addr_len;
    return post(d);
  }
  // Gives rx chunk `chunk` of socket `id` back, naming the loan by the socket's current
  // generation (or `generation`, to replay a late return).
  void return_rx(std::uint32_t id, std::uint32_t chunk) {
    return_rx(id, chunk, ch_.slot(id)->generation.load(std::memory_order_acquire));
  }
  void return_rx(std::uint32_t id, std::uint32_t chunk, std::uint32_t generation) {
    rpc::Descriptor d{};
    d.op = static_cast<std::uint16_t>(rpc::Op::kBufferReturn);
    d.socket = id;
    d.pool = static_cast<std::uint16_t>(rpc::PoolId::kRx);
    d.chunk = chunk;
    d.arg0 = generation;
    (void)post(d);
  }
  // Takes up to `max` entries from the socket's rx ring.
  std::vector<rpc::RxEntry> take_rx(std::uint32_t id, std::uint32_t max = 1024) {
    auto& r = rx_rings_[id];
    if (!r) {
      auto ring = ch_.rx_ring(id, rpc::RingEnd::kConsumer);
      if (!ring) return {};
      r = std::make_unique<rpc::SpscRing>(std::move(*ring));
    }
    std::vector<rpc::RxEntry> out(max);
    out.resize(r->dequeue_burst(out.data(), max));
    return out;
  }
  void forget_rx_ring(std::uint32_t id) { rx_rings_.erase(id); }

 private:
  FakeGuest() : ivs_(rpc::IvshmemClientOptions{1, kWaitMs}) {}
  static bool make_pair(rpc::UniqueFd& a, rpc::UniqueFd& b) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) return false;
    a.reset(sv[0]);
    b.reset(sv[1]);
    return true;
  }
  bool send_b(std::uint64_t rid, int fd) {
    rpc::SidecarFd m{rpc::kSidecarMagic, 0, rid};
    iovec iov{&m, sizeof m};
    alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int))];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf;
    msg.msg_controllen = sizeof cbuf;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
    return ::sendmsg(side_.get(), &msg, MSG_NOSIGNAL) == sizeof m;
  }

  rpc::IvshmemClient ivs_;
  rpc::RegionView view_;
  rpc::GuestChannel ch_;
  rpc::UniqueFd side_;
  rpc::SidecarWelcome welcome_{};
  std::uint32_t lane_ = 0;
  rpc::SpscRing req_, cpl_;
  std::vector<std::uint32_t> free_tx_;
  std::deque<rpc::Descriptor> backlog_;
  std::map<std::uint32_t, std::unique_ptr<rpc::SpscRing>> rx_rings_;
  std::uint64_t next_request_ = 1;
};

}  // namespace tosec::tovm::test
