// PlaceholderWatch: is a guest's end A still open, once the TOE has let go of end B?
//
// A reset or refused TCP connection must show POLLERR|POLLHUP on the guest's placeholder A
// (decision 0004). An AF_UNIX stream socket reports POLLERR only when its peer is *released*
// with unread data in the peer's receive queue (unix_release_sock sets sk_err = ECONNRESET on
// A and shuts A down completely). So the TOE closes B for a dead connection, and from then on
// it can no longer see EOF on B when the guest closes the last reference to A. This watch
// answers that question through sock_diag (NETLINK_SOCK_DIAG, AF_UNIX, exact lookup by inode
// and cookie): A stays in the kernel's unix socket table until its last reference is closed.
// The cookie makes the answer immune to inode reuse.
//
// Limitation: sock_diag looks up sockets in the caller's network namespace; the TOE and the
// guest processes share one (tosec run starts both).
#pragma once

#include <cstdint>

#include "tosec/rpc/status.h"
#include "tosec/rpc/unique_fd.h"

namespace tosec::tovm {

// One kernel socket, named so that a later lookup cannot mistake another socket for it.
struct UnixSocketRef {
  std::uint32_t ino = 0;
  std::uint32_t cookie[2] = {0, 0};
};

class PlaceholderWatch {
 public:
  // The socket at the other end of the connected AF_UNIX socket `b_fd` (its end A).
  rpc::Result<UnixSocketRef> peer_of(int b_fd);
  // True while `a` is open in some process; false once its last reference is gone.
  rpc::Result<bool> alive(const UnixSocketRef& a);

 private:
  struct Reply {
    bool found = false;
    UnixSocketRef self;
    std::uint32_t peer_ino = 0;
  };
  rpc::Result<Reply> lookup(std::uint32_t ino, const std::uint32_t cookie[2], bool want_peer);
  rpc::UniqueFd nl_;  // opened on first use
  std::uint32_t seq_ = 0;
};

}  // namespace tosec::tovm
