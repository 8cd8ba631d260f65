// fd -> socket resolution, including the lazy rebuild after exec (decision 0004 point 7).
#include <sys/stat.h>

#include "config.h"
#include "ops.h"
#include "real_calls.h"

namespace tosec::guest {

namespace {

// A placeholder is recognisable without the platform: an AF_UNIX stream socket whose
// SO_RCVBUF we set to this odd value (the kernel reports it doubled). Only such sockets make
// an exec'd process join the platform to look their inode up.
constexpr int kPlaceholderRcvbuf = 4099;

bool looks_like_placeholder(int fd) {
  int v = 0;
  socklen_t l = sizeof v;
  if (real().getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &l) != 0 || v != AF_UNIX) return false;
  l = sizeof v;
  if (real().getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &l) != 0 || v != SOCK_STREAM) return false;
  l = sizeof v;
  if (real().getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, &l) != 0) return false;
  return v == 2 * kPlaceholderRcvbuf;
}

std::optional<Sock> make_sock(Platform* p, int fd, SocketRef ref) {
  rpc::SocketSlot* slot = p->slot(ref.id);
  if (slot == nullptr) return std::nullopt;
  return Sock{p, fd, ref, slot, &p->local(ref.id)};
}

}  // namespace

int placeholder_rcvbuf() { return kPlaceholderRcvbuf; }

std::optional<Sock> resolve(int fd) {
  FdTable& t = fd_table();
  FdTable::Lookup l = t.get(fd);
  if (l.kind == FdTable::Kind::kKernel) return std::nullopt;
  if (l.kind == FdTable::Kind::kOffloaded) {
    Platform* p = Platform::current();
    if (p == nullptr) p = Platform::get();  // fork child: rejoin lazily
    if (p == nullptr) {
      // Inherited socket but no platform: the fd is a placeholder nobody serves. Leave it to
      // the kernel (reads see readiness bytes): the only alternative is failing every call.
      return std::nullopt;
    }
    return make_sock(p, fd, l.ref);
  }
  // Unknown: never seen in this process image.
  if (!config().offload) {
    t.set_kernel(fd);
    return std::nullopt;
  }
  struct stat st {};
  if (fstat(fd, &st) != 0) return std::nullopt;  // not open: the real call reports EBADF
  if (!S_ISSOCK(st.st_mode) || !looks_like_placeholder(fd)) {
    t.set_kernel(fd);
    return std::nullopt;
  }
  Platform* p = Platform::get();
  if (p == nullptr) {
    t.set_kernel(fd);
    return std::nullopt;
  }
  for (std::uint32_t id = 0; id < p->max_sockets(); ++id) {
    rpc::SocketSlot* s = p->slot(id);
    if (s->placeholder_ino == st.st_ino && s->placeholder_dev == st.st_dev &&
        s->state.load(std::memory_order_acquire) != rpc::SocketState::kFree) {
      const SocketRef ref{id, s->generation.load(std::memory_order_acquire)};
      SocketLocal& loc = p->local(id);
      if (loc.generation.load() != ref.generation) {
        loc.generation = ref.generation;
        loc.credit.reset();
      }
      t.set_offloaded(fd, ref);
      log(LogLevel::kDebug,
          "fd " + std::to_string(fd) + " is inherited socket " + std::to_string(id));
      return make_sock(p, fd, ref);
    }
  }
  t.set_kernel(fd);
  return std::nullopt;
}

bool still_same(const Sock& s) {
  const FdTable::Lookup l = fd_table().get(s.fd);
  return l.kind == FdTable::Kind::kOffloaded && l.ref == s.ref;
}

void fd_replaced(int fd) {
  const FdTable::Lookup l = fd_table().get(fd);
  fd_table().forget(fd);
  if (l.kind == FdTable::Kind::kOffloaded) wake_waiters(l.ref.id);
}

}  // namespace tosec::guest
