// End B of a guest placeholder: see placeholder_end.h and decision 0004.
#include "tosec/rpc/placeholder_end.h"

#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "tosec/rpc/guest_channel.h"

namespace tosec::rpc {

Result<PlaceholderEnd> PlaceholderEnd::adopt(UniqueFd b) {
  if (!b.valid()) return Error{EBADF, "placeholder end B: no descriptor"};
  return PlaceholderEnd(std::move(b));
}

void PlaceholderEnd::signal() const {
  // After shut_write() A already reports POLLIN for good, and the send would fail (EPIPE).
  if (!b_.valid() || write_shut_) return;
  const char byte = 1;
  (void)::send(b_.get(), &byte, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
}

void PlaceholderEnd::shut_write() const {
  if (!b_.valid() || write_shut_) return;
  (void)::shutdown(b_.get(), SHUT_WR);
  write_shut_ = true;
}

void PlaceholderEnd::drain_keep_sentinel(std::span<std::byte> scratch) const {
  if (!b_.valid() || scratch.empty()) return;
  // The sentinel is a 1-byte skb of its own, so A becomes writable with it left in B; a
  // trailing junk byte is never left (part of a large skb would keep A unwritable).
  for (;;) {
    int queued = 0;
    if (::ioctl(b_.get(), SIOCINQ, &queued) != 0 || queued <= 0) break;
    auto want = static_cast<std::size_t>(queued);
    if (want <= scratch.size()) {
      const ssize_t p = ::recv(b_.get(), scratch.data(), want, MSG_PEEK | MSG_DONTWAIT);
      if (p == queued && scratch[want - 1] == static_cast<std::byte>(kPlaceholderSentinel)) {
        --want;
      }
    }
    if (want == 0) break;
    const ssize_t n =
        ::recv(b_.get(), scratch.data(), std::min(want, scratch.size()), MSG_DONTWAIT);
    if (n > 0) continue;
    if (n < 0 && errno == EINTR) continue;
    break;  // EAGAIN, or EOF (the holder's epoll reports the hang-up)
  }
}

}  // namespace tosec::rpc
