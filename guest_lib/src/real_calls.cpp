#include "real_calls.h"

#include <dlfcn.h>
#include <unistd.h>

#include <atomic>

namespace tosec::guest {

namespace {

RealCalls g_real{};
std::atomic<bool> g_resolved{false};

template <class F>
void resolve_one(F& slot, const char* name) {
  // dlsym returns void*; POSIX guarantees it converts to a function pointer.
  void* p = dlsym(RTLD_NEXT, name);
  slot = reinterpret_cast<F>(p);
}

void resolve_all() {
  RealCalls& r = g_real;
  resolve_one(r.socket, "socket");
  resolve_one(r.socketpair, "socketpair");
  resolve_one(r.bind, "bind");
  resolve_one(r.listen, "listen");
  resolve_one(r.accept, "accept");
  resolve_one(r.accept4, "accept4");
  resolve_one(r.connect, "connect");
  resolve_one(r.shutdown, "shutdown");
  resolve_one(r.close, "close");
  resolve_one(r.close_range, "close_range");
  resolve_one(r.closefrom, "closefrom");
  resolve_one(r.getsockname, "getsockname");
  resolve_one(r.getpeername, "getpeername");
  resolve_one(r.getsockopt, "getsockopt");
  resolve_one(r.setsockopt, "setsockopt");
  resolve_one(r.read, "read");
  resolve_one(r.readv, "readv");
  resolve_one(r.recv, "recv");
  resolve_one(r.recvfrom, "recvfrom");
  resolve_one(r.recvmsg, "recvmsg");
  resolve_one(r.recvmmsg, "recvmmsg");
  resolve_one(r.write, "write");
  resolve_one(r.writev, "writev");
  resolve_one(r.send, "send");
  resolve_one(r.sendto, "sendto");
  resolve_one(r.sendmsg, "sendmsg");
  resolve_one(r.sendmmsg, "sendmmsg");
  resolve_one(r.sendfile, "sendfile");
  resolve_one(r.fcntl, "fcntl");
  resolve_one(r.ioctl, "ioctl");
  resolve_one(r.dup, "dup");
  resolve_one(r.dup2, "dup2");
  resolve_one(r.dup3, "dup3");
  resolve_one(r.fork, "fork");
  resolve_one(r.ppoll, "ppoll");
  resolve_one(r.pread, "pread");
  resolve_one(r.pwrite, "pwrite");
  resolve_one(r.preadv, "preadv");
  resolve_one(r.pwritev, "pwritev");
  resolve_one(r.sigaction, "sigaction");
  resolve_one(r.signal, "signal");
  g_resolved.store(true, std::memory_order_release);
}

// Resolve as early as possible: before main, while the process is single-threaded.
[[gnu::constructor]] void resolve_at_load() {
  if (!g_resolved.load(std::memory_order_acquire)) resolve_all();
}

}  // namespace

const RealCalls& real() {
  // Racing first calls resolve twice and store identical pointers: harmless.
  if (!g_resolved.load(std::memory_order_acquire)) resolve_all();
  return g_real;
}

}  // namespace tosec::guest
