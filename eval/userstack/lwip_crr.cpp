// lwIP side of the probe. Debian's liblwip is built with NO_SYS=0 (for the Hurd), but its raw API
// and sys_check_timeouts() work from one thread when tcpip_init() is never called: nothing else
// touches the stack, so no core lock is needed, and this thread runs the timers itself.
#include <chrono>
#include <cstdio>
#include <cstring>

#include "crr_loop.h"
#include "dpdk_port.h"
#include "lwip/etharp.h"
#include "lwip/init.h"
#include "lwip/ip4_addr.h"
#include "lwip/netif.h"
#include "lwip/pbuf.h"
#include "lwip/tcp.h"
#include "lwip/timeouts.h"
#include "netif/ethernet.h"

namespace tosec::eval {
namespace {
using Clock = std::chrono::steady_clock;

double us(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::micro>(b - a).count();
}

// lwIP's callbacks carry one void*: this is the whole state of the loop.
struct Loop {
  DpdkPort port;
  netif nif{};
  ip_addr_t peer{};
  const CrrSpec* spec = nullptr;
  std::vector<char> request;
  CrrResult* result = nullptr;
  bool busy = false;   // a connection is open
  bool timed = false;  // false during the warm-up connection (ARP)
  long done = 0;
  std::size_t got = 0;
  Clock::time_point t0, t_connected;
};
Loop* g_loop = nullptr;  // netif callbacks get no argument of ours

err_t link_output(netif*, pbuf* p) {
  const bool ok = g_loop->port.queue_frame(
      p->tot_len,
      [](void* dst, void* arg) {
        auto* q = static_cast<pbuf*>(arg);
        pbuf_copy_partial(q, dst, q->tot_len, 0);
      },
      p);
  return ok ? ERR_OK : ERR_MEM;
}

err_t netif_setup(netif* n) {
  n->name[0] = 'd';
  n->name[1] = 'p';
  n->mtu = 1500;
  n->hwaddr_len = 6;
  // A MAC of its own (the port's, locally administered and with the last bit flipped): frames to
  // lwIP are then "other host" for the kernel on the same interface, which drops them at once
  // instead of routing them.
  std::memcpy(n->hwaddr, g_loop->port.mac(), 6);
  n->hwaddr[0] = static_cast<u8_t>(n->hwaddr[0] | 0x02);
  n->hwaddr[5] = static_cast<u8_t>(n->hwaddr[5] ^ 0x01);
  n->flags = NETIF_FLAG_BROADCAST | NETIF_FLAG_ETHARP | NETIF_FLAG_ETHERNET | NETIF_FLAG_LINK_UP;
  n->output = etharp_output;
  n->linkoutput = link_output;
  return ERR_OK;
}

void on_frame(const void* frame, std::uint16_t len, void* arg) {
  auto* loop = static_cast<Loop*>(arg);
  pbuf* p = pbuf_alloc(PBUF_RAW, len, PBUF_RAM);
  if (p == nullptr) return;  // out of memory: dropped, as a NIC would; TCP retransmits
  pbuf_take(p, frame, len);
  if (loop->nif.input(p, &loop->nif) != ERR_OK) pbuf_free(p);
}

// One polling iteration; true if a frame came in or went out.
bool poll(Loop& loop) {
  const std::uint16_t in = loop.port.receive(on_frame, &loop);
  sys_check_timeouts();
  return loop.port.flush() > 0 || in > 0;
}

void finish(Loop& loop) {
  loop.busy = false;
  ++loop.done;
}

// Detaches `pcb` from the loop and closes it: lwIP finishes the close (FIN, TIME_WAIT) on its
// own. When lwIP has no memory for the FIN it is aborted (RST) instead; the return value is what
// a callback must return then (ERR_ABRT after tcp_abort).
err_t close_detached(tcp_pcb* pcb) {
  tcp_arg(pcb, nullptr);
  tcp_recv(pcb, nullptr);
  tcp_err(pcb, nullptr);
  if (tcp_close(pcb) == ERR_OK) return ERR_OK;
  tcp_abort(pcb);
  return ERR_ABRT;
}

err_t on_recv(void* arg, tcp_pcb* pcb, pbuf* p, err_t) {
  auto& loop = *static_cast<Loop*>(arg);
  if (p == nullptr) {  // the peer closed before answering
    ++loop.result->failed;
    finish(loop);
    return close_detached(pcb);
  }
  loop.got += p->tot_len;
  tcp_recved(pcb, p->tot_len);
  pbuf_free(p);
  if (loop.got < loop.spec->size) return ERR_OK;
  const auto t_answer = Clock::now();
  const err_t closed = close_detached(pcb);
  if (loop.timed) {
    loop.result->connect_us.push_back(us(loop.t0, loop.t_connected));
    loop.result->answer_us.push_back(us(loop.t_connected, t_answer));
    loop.result->close_us.push_back(us(t_answer, Clock::now()));
  }
  finish(loop);
  return closed;
}

void on_error(void* arg, err_t e) {  // the pcb is already freed
  auto& loop = *static_cast<Loop*>(arg);
  ++loop.result->failed;
  std::fprintf(stderr, "tosec-userstack-crr: lwIP connection error %d\n", static_cast<int>(e));
  finish(loop);
}

err_t on_connected(void* arg, tcp_pcb* pcb, err_t) {
  auto& loop = *static_cast<Loop*>(arg);
  loop.t_connected = Clock::now();
  const err_t e = tcp_write(pcb, loop.request.data(), static_cast<u16_t>(loop.request.size()),
                            TCP_WRITE_FLAG_COPY);
  if (e != ERR_OK) {
    std::fprintf(stderr, "tosec-userstack-crr: tcp_write: lwIP error %d\n", static_cast<int>(e));
    ++loop.result->failed;
    finish(loop);
    close_detached(pcb);
    return ERR_ABRT;  // the pcb may be gone: tell lwIP not to touch it
  }
  // A failed output leaves the segment queued; lwIP's timers send it.
  (void)tcp_output(pcb);
  return ERR_OK;
}

bool start(Loop& loop) {
  loop.got = 0;
  loop.t0 = Clock::now();
  tcp_pcb* pcb = tcp_new();
  if (pcb == nullptr) {
    loop.result->error = "tcp_new: out of memory";
    return false;
  }
  tcp_nagle_disable(pcb);
  tcp_arg(pcb, &loop);
  tcp_recv(pcb, on_recv);
  tcp_err(pcb, on_error);
  const err_t e = tcp_connect(pcb, &loop.peer, loop.spec->port, on_connected);
  if (e != ERR_OK) {
    tcp_abort(pcb);
    loop.result->error = "tcp_connect: lwIP error " + std::to_string(e) +
                         (e == ERR_BUF ? " (no free local port: TIME_WAIT)" : "");
    return false;
  }
  loop.busy = true;
  return true;
}

// Runs connections until `until` are done; false (with result->error) on a stall or failure.
bool run_until(Loop& loop, long until) {
  auto last_progress = Clock::now();
  long last_done = loop.done;
  while (loop.done < until) {
    const auto t = Clock::now();
    const bool opened = !loop.busy;
    if (opened && !start(loop)) return false;
    if (poll(loop) || opened)
      loop.result->work_seconds += std::chrono::duration<double>(Clock::now() - t).count();
    if (loop.done != last_done) {
      last_done = loop.done;
      last_progress = Clock::now();
    } else if (Clock::now() - last_progress > std::chrono::seconds(5)) {
      loop.result->error =
          "no connection finished in 5 s (is the peer reachable on this link, with TX checksum "
          "offload off? af_packet sees the veth's unchecksummed frames and lwIP drops them)";
      return false;
    }
  }
  return true;
}
}  // namespace

CrrResult run_lwip_crr(const CrrSpec& spec, const std::string& iface, std::uint32_t local_ip) {
  CrrResult result;
  static Loop loop;  // lwIP keeps pointers to the netif: it lives as long as the process
  g_loop = &loop;
  loop.spec = &spec;
  loop.result = &result;
  loop.request.assign(spec.size, 'x');
  if (std::string e = loop.port.open(iface); !e.empty()) {
    result.error = "DPDK: " + e;
    return result;
  }
  lwip_init();
  ip4_addr_t ip, mask, gw;
  ip.addr = local_ip;
  IP4_ADDR(&mask, 255, 255, 255, 0);
  ip4_addr_set_zero(&gw);
  netif_add(&loop.nif, &ip, &mask, &gw, nullptr, netif_setup, ethernet_input);
  netif_set_default(&loop.nif);
  netif_set_up(&loop.nif);
  ip_addr_set_ip4_u32(&loop.peer, spec.peer_ip);

  // One connection first, untimed: it resolves the peer's MAC (ARP).
  if (run_until(loop, 1)) {
    loop.timed = true;
    loop.done = 0;
    result.failed = 0;
    result.work_seconds = 0;
    const double cpu0 = cpu_seconds_now();
    const auto begin = Clock::now();
    run_until(loop, spec.connections);
    result.seconds = std::chrono::duration<double>(Clock::now() - begin).count();
    result.cpu_seconds = cpu_seconds_now() - cpu0;
    // Let the last FIN and ACKs out before the port goes away.
    const auto linger = Clock::now() + std::chrono::milliseconds(100);
    while (Clock::now() < linger) (void)poll(loop);
  }
  loop.port.close();
  return result;
}

}  // namespace tosec::eval
