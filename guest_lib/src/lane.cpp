// The lane: request submission, leader/follower completion dispatch, the lane's tx chunks.
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "config.h"
#include "platform.h"
#include "real_calls.h"
#include "wait_stats.h"

namespace tosec::guest {

namespace {
constexpr std::int64_t kLeaderSliceNs = 100'000'000;  // re-check TOE liveness this often
}

void Platform::mark_dead(const char* why) {
  if (!dead_.exchange(true, std::memory_order_acq_rel)) {
    log(LogLevel::kError,
        std::string("lost the TOE: ") + why + "; offloaded sockets now fail with ECONNRESET");
  }
}

bool Platform::check_dead() {
  if (dead()) return true;
  const std::int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                               std::chrono::steady_clock::now().time_since_epoch())
                               .count();
  std::int64_t last = last_alive_check_ns_.load(std::memory_order_relaxed);
  if (now - last < 5'000'000) return false;
  if (!last_alive_check_ns_.compare_exchange_strong(last, now, std::memory_order_relaxed)) {
    return false;  // another thread is checking
  }
  pollfd p[2] = {{sidecar_.get(), POLLIN, 0}, {ivshmem_->fd(), POLLIN, 0}};
  timespec zero{0, 0};
  if (real().ppoll(p, 2, &zero, nullptr) > 0) {
    char b;
    if ((p[0].revents & (POLLHUP | POLLERR)) != 0 ||
        ((p[0].revents & POLLIN) != 0 &&
         real().recv(sidecar_.get(), &b, 1, MSG_DONTWAIT | MSG_PEEK) == 0)) {
      mark_dead("sidecar hung up");
    }
    // Other guest processes joining and leaving: take their doorbell fds (and close the ones
    // of peers that left) so the ivshmem server's queue to us never fills up.
    if (p[1].revents != 0) {
      std::unique_lock lk(ivshmem_mu_, std::try_to_lock);
      if (lk.owns_lock()) (void)ivshmem_->process_events();
    }
  }
  return dead();
}

rpc::Status Platform::enqueue(rpc::Descriptor& d, const std::atomic<std::uint32_t>* wake_if) {
  for (int spins = 0;; ++spins) {
    if (dead()) return rpc::Error{ECONNRESET, "TOE gone"};
    {
      std::lock_guard lk(submit_mu_);
      if (req_.raw().broken()) {
        mark_dead("request ring broken");
        return rpc::Error{ECONNRESET, "request ring broken"};
      }
      if (d.request_id == 0) d.request_id = next_id_++;
      if (req_.enqueue(d)) {
        if (wake_if != nullptr) {
          std::atomic_thread_fence(std::memory_order_seq_cst);
          if (wake_if->load(std::memory_order_relaxed) == 0) return {};
        }
        (void)rpc::notify(req_.raw().consumer_sleeping(), ivshmem_->doorbells(), toe_peer_,
                          toe_vector_);
        return {};
      }
    }
    // Ring full: the TOE is behind. Make sure it is awake, consume our completions (it may be
    // waiting for room in the cpl ring), then yield.
    (void)ivshmem_->doorbells().ring(toe_peer_, toe_vector_);
    reap();
    if (spins > 1000) {
      timespec ts{0, 1'000'000};
      (void)real().ppoll(nullptr, 0, &ts, nullptr);
    } else {
      sched_yield();
    }
  }
}

std::uint32_t Platform::drain_cpl() {
  rpc::Descriptor burst[32];
  const std::uint32_t n = cpl_.dequeue_burst(burst);
  if (cpl_.raw().broken()) mark_dead("completion ring broken");
  if (n == 0) return 0;
  std::lock_guard lk(cpl_mu_);
  for (std::uint32_t i = 0; i < n; ++i) dispatch(burst[i]);
  cpl_cv_.notify_all();
  return n;
}

void Platform::dispatch(const rpc::Descriptor& c) {
  if (c.op == static_cast<std::uint16_t>(rpc::Op::kSend)) {
    const std::uint32_t first = channel_.lane_tx_first(lane_);
    const std::uint32_t local_idx = c.chunk - first;  // unsigned wrap rejects chunk < first
    if (local_idx < tx_owner_.size() && tx_.reclaim(local_idx)) {
      const InFlight f = tx_owner_[local_idx];
      if (f.socket < max_sockets()) {
        SocketLocal& l = local(f.socket);
        l.credit.release(f.length);
        rpc::SocketSlot* s = slot(f.socket);
        s->tx_inflight.fetch_sub(std::min(f.length, s->tx_inflight.load(std::memory_order_relaxed)),
                                 std::memory_order_relaxed);
        if (c.result < 0) {
          int expected = 0;
          (void)l.async_error.compare_exchange_strong(expected, static_cast<int>(-c.result));
        }
      }
    }
    return;
  }
  auto it = std::find(waiting_.begin(), waiting_.end(), c.request_id);
  if (it == waiting_.end()) return;  // nobody waits (never happens for our own requests)
  waiting_.erase(it);
  done_.push_back(c);
}

bool Platform::is_done(std::uint64_t id) const {
  return std::any_of(done_.begin(), done_.end(),
                     [id](const rpc::Descriptor& d) { return d.request_id == id; });
}

void Platform::forget_call(std::uint64_t id) {
  waiting_.erase(std::remove(waiting_.begin(), waiting_.end(), id), waiting_.end());
  done_.erase(std::remove_if(done_.begin(), done_.end(),
                             [id](const rpc::Descriptor& d) { return d.request_id == id; }),
              done_.end());
}

template <class Pred>
rpc::Status Platform::wait_until(std::unique_lock<std::mutex>& lk, Pred pred) {
  while (!pred()) {
    if (dead()) return rpc::Error{ECONNRESET, "TOE gone"};
    if (leader_) {
      cpl_cv_.wait(lk);
      continue;
    }
    leader_ = true;
    lk.unlock();
    auto ready = [this] { return cpl_.raw().available() > 0 || cpl_.raw().broken(); };
    const rpc::Waiter::Stats before = waiter_->stats();
    auto r = waiter_->wait(cpl_.raw().consumer_sleeping(), ready, kLeaderSliceNs);
    WaitCounters& c = wait_stats().call;
    c.waits.fetch_add(1, std::memory_order_relaxed);
    if (waiter_->stats().spin_hits != before.spin_hits)
      c.spun.fetch_add(1, std::memory_order_relaxed);
    if (waiter_->stats().sleeps != before.sleeps) c.slept.fetch_add(1, std::memory_order_relaxed);
    if (!r) mark_dead(r.error().message.c_str());
    if (r && !*r) (void)check_dead();  // a slice without completions: is the TOE alive?
    (void)drain_cpl();
    lk.lock();
    leader_ = false;
    cpl_cv_.notify_all();  // hand leadership to whoever still waits
  }
  return {};
}

rpc::Result<rpc::Descriptor> Platform::call(rpc::Descriptor d, int b_end) {
  {
    std::lock_guard lk(submit_mu_);
    d.request_id = next_id_++;
  }
  {
    std::lock_guard lk(cpl_mu_);
    waiting_.push_back(d.request_id);
  }
  auto unregister = [&] {
    std::lock_guard lk(cpl_mu_);
    forget_call(d.request_id);
  };
  if (b_end >= 0) {
    rpc::SidecarFd m{rpc::kSidecarMagic, 0, d.request_id};
    iovec iov{&m, sizeof m};
    alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int))] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl;
    msg.msg_controllen = sizeof ctl;
    cmsghdr* cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cm), &b_end, sizeof(int));
    // Sidecar messages of one process are serialised by submit order: hold submit_mu_ so the
    // fd and its descriptor go out in the same order as other threads' pairs.
    std::lock_guard lk(submit_mu_);
    if (real().sendmsg(sidecar_.get(), &msg, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof m)) {
      mark_dead("sidecar send failed");
      unregister();
      return rpc::Error{ECONNRESET, "sidecar send failed"};
    }
  }
  if (auto s = enqueue(d); !s) {
    unregister();
    return s.error();
  }
  std::unique_lock lk(cpl_mu_);
  auto st = wait_until(lk, [&] { return is_done(d.request_id); });
  if (!st) {
    forget_call(d.request_id);
    return st.error();
  }
  rpc::Descriptor c{};
  for (const auto& x : done_) {
    if (x.request_id == d.request_id) c = x;
  }
  forget_call(d.request_id);
  return c;
}

rpc::Status Platform::post(rpc::Descriptor d) { return enqueue(d); }

rpc::Status Platform::post_lazy(rpc::Descriptor d, const std::atomic<std::uint32_t>* wake_if) {
  return enqueue(d, wake_if);
}

void Platform::reap() {
  {
    std::lock_guard lk(cpl_mu_);
    if (leader_) return;  // the leader consumes for everyone
    leader_ = true;
  }
  (void)drain_cpl();
  std::lock_guard lk(cpl_mu_);
  leader_ = false;
  cpl_cv_.notify_all();
}

rpc::Result<std::uint32_t> Platform::tx_alloc(bool wait) {
  std::unique_lock lk(cpl_mu_);
  if (tx_.free_count() == 0) {
    lk.unlock();
    reap();
    lk.lock();
  }
  if (tx_.free_count() == 0) {
    if (!wait) return rpc::Error{ENOBUFS, "no free tx chunk"};
    if (auto s = wait_until(lk, [&] { return tx_.free_count() > 0; }); !s) return s.error();
  }
  auto c = tx_.allocate();
  if (!c) return c.error();
  return channel_.lane_tx_first(lane_) + *c;
}

void Platform::tx_free(std::uint32_t chunk) {
  std::lock_guard lk(cpl_mu_);
  (void)tx_.free(chunk - channel_.lane_tx_first(lane_));
}

rpc::Status Platform::send_async(std::uint32_t id, std::uint32_t chunk, std::uint32_t len,
                                 std::uint64_t flags, std::uint32_t addr_len) {
  const std::uint32_t local_idx = chunk - channel_.lane_tx_first(lane_);
  {
    std::lock_guard lk(cpl_mu_);
    tx_owner_[local_idx] = {id, len - addr_len};
    (void)tx_.lend(local_idx);
  }
  slot(id)->tx_inflight.fetch_add(len - addr_len, std::memory_order_relaxed);
  rpc::Descriptor d{};
  d.op = static_cast<std::uint16_t>(rpc::Op::kSend);
  d.socket = id;
  d.pool = static_cast<std::uint16_t>(rpc::PoolId::kTx);
  d.chunk = chunk;
  d.offset = 0;
  d.length = len;
  d.arg0 = flags;
  d.arg1 = addr_len;
  if (auto s = enqueue(d); !s) {
    std::lock_guard lk(cpl_mu_);
    (void)tx_.reclaim(local_idx);
    local(id).credit.release(len - addr_len);
    return s;
  }
  return {};
}

}  // namespace tosec::guest
