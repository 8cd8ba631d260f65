// Blocking waits (decision 0004 point 3): ppoll on {A, this thread's interrupt eventfd}. Never
// busy; signals interrupt the ppoll naturally; close()/dup2() over the fd from another thread
// wakes the waiter through its eventfd. A wait also wakes every kRecheckNs to re-read the slot,
// so a lost readiness byte costs latency, never a hang.
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <unordered_map>

#include "config.h"
#include "ops.h"
#include "real_calls.h"
#include "tosec/rpc/notifier.h"
#include "wait_stats.h"

namespace tosec::guest {

namespace {

constexpr std::int64_t kRecheckNs = 200'000'000;

// Blocking calls spin before they sleep: a TOE that is awake answers a connect, a short
// exchange or a credit return within microseconds, well before a sleeping thread would be
// woken (on a virtual CPU a wake-up from halt costs tens of us). Adaptive (rpc::AdaptiveSpin),
// one budget per thread and kind of wait (below), so never busy while idle.
rpc::SpinPolicy read_spin_policy() {
  // A blocking read (recv, accept) waits for the peer: a whole network round trip through the
  // TOE, tens to hundreds of microseconds. The budget must cover one or spinning never pays
  // (decision 0011); the hit-rate rule then keeps it only while at least half of the recent
  // spins caught their event, else sleeps at once and probes the whole budget every 8 waits,
  // backing off to every 64 while probes keep missing. Often at first: a spinning reader can
  // itself be why its answer is late (it holds the core the peer or the TOE needs), so
  // spinning stops during a busy stretch, and only probes bring it back; with 64 waits between
  // probes a TCP_RR run could sleep through a quarter of its transactions. Backing off: where
  // spinning never pays (the guest and the TOE on one core) each probe costs the whole budget,
  // and one every 8 waits halved TCP_RR (decision 0011, amendment).
  const std::int64_t ns = config().spin_ns;
  if (ns <= 0) return rpc::SpinPolicy::sleep_only();
  rpc::SpinPolicy p;
  p.spin_ns = ns;
  p.max_spin_ns = ns;
  p.probe_ns = ns;
  p.probe_every = 8;
  p.probe_every_max = 64;
  p.hit_rate = true;
  return p;
}

rpc::SpinPolicy write_spin_policy() {
  // A blocked send waits for the TOE to drain (credit) and a connect for the handshake: short
  // (halving) spins, at most 20 us. A longer spin here takes the core the TOE needs to send:
  // TCP_STREAM lost 10% with the read budget (decision 0011).
  const std::int64_t ns = std::min<std::int64_t>(config().spin_ns, 20'000);
  if (ns <= 0) return rpc::SpinPolicy::sleep_only();
  rpc::SpinPolicy p;
  p.spin_ns = 0;
  p.max_spin_ns = ns;
  p.probe_ns = ns;
  p.probe_every = 64;
  return p;
}

// Waiting for a connect is waiting for a network round trip (SYN, SYN-ACK) through the TOE,
// like a read: the read budget, with its own hit-rate record.
rpc::SpinPolicy connect_spin_policy() { return read_spin_policy(); }

struct ThreadWake {
  int efd = -1;
  ~ThreadWake();
};

std::mutex g_waiters_mu;
std::unordered_multimap<std::uint32_t, int>* g_waiters = nullptr;  // socket id -> thread efd

ThreadWake::~ThreadWake() {
  if (efd >= 0) real().close(efd);
}

int thread_efd() {
  static thread_local ThreadWake w;
  if (w.efd < 0) w.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  return w.efd;
}

// Signals whose handler lacks SA_RESTART (bit per signal number < 64).
std::atomic<std::uint64_t> g_norestart{0};

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

int& shim_depth() {
  static thread_local int depth = 0;
  return depth;
}

void note_signal_handler(int sig, bool has_handler, bool restart) {
  if (sig <= 0 || sig >= 64) return;
  const std::uint64_t bit = std::uint64_t{1} << sig;
  if (has_handler && !restart) {
    g_norestart.fetch_or(bit, std::memory_order_relaxed);
  } else {
    g_norestart.fetch_and(~bit, std::memory_order_relaxed);
  }
}

// Handlers installed through the interposed sigaction()/signal() run behind a trampoline that
// records, per thread, whether the signal just handled has SA_RESTART. A signal whose handler
// was installed some other way (raw syscall, before the shim) falls back to: restart only
// while every known handler has SA_RESTART.
namespace {
struct UserHandler {
  std::atomic<void*> fn{nullptr};
  std::atomic<int> flags{0};
};
UserHandler g_user[65];
thread_local int t_handled = 0;  // signals handled by the trampoline on this thread
thread_local bool t_last_restart = true;

void trampoline(int sig, siginfo_t* info, void* ctx) {
  const int saved = errno;
  if (sig <= 0 || sig > 64) return;
  const UserHandler& u = g_user[sig];
  const int flags = u.flags.load(std::memory_order_acquire);
  void* fn = u.fn.load(std::memory_order_acquire);
  t_last_restart = (flags & SA_RESTART) != 0;
  ++t_handled;
  errno = saved;
  if (fn == nullptr) return;
  if ((flags & SA_SIGINFO) != 0) {
    reinterpret_cast<void (*)(int, siginfo_t*, void*)>(fn)(sig, info, ctx);
  } else {
    reinterpret_cast<void (*)(int)>(fn)(sig);
  }
}
}  // namespace

int shim_sigaction(int sig, const struct sigaction* act, struct sigaction* old) {
  const bool wrappable = sig > 0 && sig <= 64 && sig != SIGKILL && sig != SIGSTOP;
  struct sigaction mine {};
  const struct sigaction* use = act;
  void* prev_fn = wrappable ? g_user[sig].fn.load() : nullptr;
  const int prev_flags = wrappable ? g_user[sig].flags.load() : 0;
  bool wrapped = false;
  if (act != nullptr && wrappable) {
    const bool siginfo = (act->sa_flags & SA_SIGINFO) != 0;
    void* fn = siginfo ? reinterpret_cast<void*>(act->sa_sigaction)
                       : reinterpret_cast<void*>(act->sa_handler);
    if (siginfo || (act->sa_handler != SIG_DFL && act->sa_handler != SIG_IGN)) {
      g_user[sig].fn.store(fn, std::memory_order_release);
      g_user[sig].flags.store(act->sa_flags, std::memory_order_release);
      mine = *act;
      mine.sa_flags |= SA_SIGINFO;
      mine.sa_sigaction = trampoline;
      use = &mine;
      wrapped = true;
    }
  }
  const int r = real().sigaction(sig, use, old);
  if (r != 0) return r;
  if (act != nullptr) {
    note_signal_handler(sig,
                        (act->sa_flags & SA_SIGINFO) != 0 ||
                            (act->sa_handler != SIG_DFL && act->sa_handler != SIG_IGN),
                        (act->sa_flags & SA_RESTART) != 0);
    if (!wrapped && wrappable) g_user[sig].fn.store(nullptr, std::memory_order_release);
  }
  if (old != nullptr && old->sa_sigaction == trampoline && prev_fn != nullptr) {
    // Report the user's handler, never our trampoline.
    old->sa_flags = prev_flags;
    if ((prev_flags & SA_SIGINFO) != 0) {
      old->sa_sigaction = reinterpret_cast<void (*)(int, siginfo_t*, void*)>(prev_fn);
    } else {
      old->sa_handler = reinterpret_cast<void (*)(int)>(prev_fn);
    }
  }
  return 0;
}

bool restart_after_signal() { return g_norestart.load(std::memory_order_relaxed) == 0; }

void wake_waiters(std::uint32_t id) {
  std::lock_guard lk(g_waiters_mu);
  if (g_waiters == nullptr) return;
  auto [b, e] = g_waiters->equal_range(id);
  for (auto it = b; it != e; ++it) {
    const std::uint64_t one = 1;
    (void)!real().write(it->second, &one, sizeof one);
  }
}

bool spin_for_connect(const Sock& s, std::int64_t timeout_ns) {
  thread_local rpc::AdaptiveSpin t_spin(connect_spin_policy());
  WaitCounters& counters = wait_stats().connect;
  counters.waits.fetch_add(1, std::memory_order_relaxed);
  // Shared memory only: A is not filled on this path, so its POLLOUT says nothing.
  const bool caught = t_spin.spin(
      [&] {
        return s.slot->state.load(std::memory_order_acquire) != rpc::SocketState::kConnecting ||
               s.slot->error_seq.load(std::memory_order_acquire) != s.slot->guest_error_seq;
      },
      timeout_ns);
  (caught ? counters.spun : counters.slept).fetch_add(1, std::memory_order_relaxed);
  return caught;
}

int wait_placeholder(const Sock& s, short events, std::int64_t timeout_ns) {
  // One budget per thread and direction: waiting to read and waiting to write (connect, send
  // credit) pay off differently.
  thread_local rpc::AdaptiveSpin t_spin_in(read_spin_policy());
  thread_local rpc::AdaptiveSpin t_spin_out(write_spin_policy());
  rpc::AdaptiveSpin& spin = (events & POLLIN) != 0 ? t_spin_in : t_spin_out;
  WaitCounters& counters = (events & POLLIN) != 0 ? wait_stats().read : wait_stats().write;
  counters.waits.fetch_add(1, std::memory_order_relaxed);
  bool caught;
  if ((events & POLLIN) != 0) {
    // Everything that makes A readable is in shared memory (has_rx_work), so the spin makes no
    // system call, and it claims the socket so that the TOE writes no readiness byte that we
    // would then have to drain (guest_channel.h, refinement 1). Only a 0 is claimed: a 1
    // means a byte is (about to be) in A anyway.
    std::uint32_t unsignalled = 0;
    const bool claimed = s.slot->rx_signalled.compare_exchange_strong(unsignalled, rpc::kRxClaimed,
                                                                      std::memory_order_seq_cst);
    caught = spin.spin([&] { return has_rx_work(s); }, timeout_ns);
    if (claimed) {
      // Give the claim back before anything else (a sleeper needs the TOE's byte), then
      // re-check: an arrival the TOE saw claimed has no byte, so we must not sleep on it.
      std::uint32_t mine = rpc::kRxClaimed;
      (void)s.slot->rx_signalled.compare_exchange_strong(mine, 0, std::memory_order_seq_cst);
      std::atomic_thread_fence(std::memory_order_seq_cst);
      if (!caught && has_rx_work(s)) caught = true;
    }
  } else {
    std::uint32_t polls = 0;
    caught = spin.spin(
        [&] {
          if ((++polls & 7) != 0) return false;
          pollfd q{s.fd, events, 0};  // A's writability (what the TOE mirrors), every 8th poll
          const timespec zero{0, 0};
          return real().ppoll(&q, 1, &zero, nullptr) > 0;
        },
        timeout_ns);
  }
  if (caught) {
    counters.spun.fetch_add(1, std::memory_order_relaxed);
    return 0;  // the caller re-checks
  }
  counters.slept.fetch_add(1, std::memory_order_relaxed);
  const int efd = thread_efd();
  if (efd < 0) return -ENOMEM;
  {
    std::lock_guard lk(g_waiters_mu);
    if (g_waiters == nullptr) g_waiters = new std::unordered_multimap<std::uint32_t, int>();
    g_waiters->emplace(s.ref.id, efd);
  }
  auto unregister = [&] {
    std::lock_guard lk(g_waiters_mu);
    auto [b, e] = g_waiters->equal_range(s.ref.id);
    for (auto it = b; it != e; ++it) {
      if (it->second == efd) {
        g_waiters->erase(it);
        break;
      }
    }
  };
  // Re-check after registering: a close() that ran before we registered has already
  // changed the table.
  if (!still_same(s)) {
    unregister();
    return -EBADF;
  }
  std::int64_t slice = kRecheckNs;
  if (timeout_ns >= 0 && timeout_ns < slice) slice = timeout_ns;
  timespec ts{static_cast<time_t>(slice / 1'000'000'000), static_cast<long>(slice % 1'000'000'000)};
  pollfd p[2] = {{s.fd, events, 0}, {efd, POLLIN, 0}};
  const std::int64_t t0 = now_ns();
  const int saved_depth = shim_depth();
  shim_depth() = 0;  // a signal handler running now must get the shim
  const int handled_before = t_handled;
  const int n = real().ppoll(p, 2, &ts, nullptr);
  const int err = errno;
  shim_depth() = saved_depth;
  unregister();
  if (p[1].revents != 0) {
    std::uint64_t v;
    (void)!real().read(efd, &v, sizeof v);
  }
  if (n < 0) {
    if (err == EINTR) {
      const bool restart = t_handled != handled_before ? t_last_restart : restart_after_signal();
      return restart ? 0 : -EINTR;
    }
    return -err;
  }
  if (!still_same(s)) return -EBADF;
  if (s.p->dead()) return -ECONNRESET;
  if (n == 0) {
    if (timeout_ns >= 0 && now_ns() - t0 >= timeout_ns) return -EAGAIN;
    return 0;
  }
  if ((p[0].revents & POLLNVAL) != 0) return -EBADF;
  // POLLHUP: B is gone. Either the TOE closed it on purpose because the connection died
  // (reset, refused: it published kEvError/kEvReset first, the caller finds them on its
  // re-check) or the TOE dropped the socket / died: then returning "re-check" would spin.
  if ((p[0].revents & POLLHUP) != 0) {
    const std::uint32_t ev = s.slot->events.load(std::memory_order_acquire);
    return (ev & (rpc::kEvError | rpc::kEvReset)) != 0 ? 0 : -ECONNRESET;
  }
  return 0;
}

}  // namespace tosec::guest
