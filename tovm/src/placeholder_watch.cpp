// PlaceholderWatch: sock_diag lookups of AF_UNIX sockets by inode (see placeholder_watch.h).
#include "tosec/tovm/placeholder_watch.h"

#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <array>
#include <cstring>
#include <string>

namespace tosec::tovm {

namespace {
// NLMSG_ALIGN / NLA_ALIGN without the macros' C-style casts.
constexpr std::size_t align4(std::size_t n) { return (n + 3U) & ~std::size_t{3}; }
constexpr std::uint32_t kNoCookie[2] = {~0U, ~0U};  // INET_DIAG_NOCOOKIE: any socket
}  // namespace

rpc::Result<PlaceholderWatch::Reply> PlaceholderWatch::lookup(std::uint32_t ino,
                                                              const std::uint32_t cookie[2],
                                                              bool want_peer) {
  if (!nl_.valid()) {
    nl_ = rpc::UniqueFd(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
    if (!nl_.valid()) return rpc::errno_error("socket(NETLINK_SOCK_DIAG)");
  }
  struct Request {
    nlmsghdr hdr;
    unix_diag_req req;
  } rq{};
  rq.hdr.nlmsg_len = sizeof rq;
  rq.hdr.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  rq.hdr.nlmsg_flags = NLM_F_REQUEST;  // no NLM_F_DUMP: an exact lookup (unix_diag_get_exact)
  rq.hdr.nlmsg_seq = ++seq_;
  rq.req.sdiag_family = AF_UNIX;
  rq.req.udiag_states = ~0U;
  rq.req.udiag_ino = ino;
  rq.req.udiag_show = want_peer ? UDIAG_SHOW_PEER : 0U;
  rq.req.udiag_cookie[0] = cookie[0];
  rq.req.udiag_cookie[1] = cookie[1];
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(nl_.get(), &rq, sizeof rq, 0, reinterpret_cast<const sockaddr*>(&kernel),
               sizeof kernel) != static_cast<ssize_t>(sizeof rq)) {
    return rpc::errno_error("sock_diag request for unix inode " + std::to_string(ino));
  }
  alignas(nlmsghdr) std::array<std::byte, 1024> buf{};
  for (;;) {
    const ssize_t n = ::recv(nl_.get(), buf.data(), buf.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < static_cast<ssize_t>(sizeof(nlmsghdr))) {
      return rpc::errno_error("sock_diag reply for unix inode " + std::to_string(ino));
    }
    nlmsghdr h{};
    std::memcpy(&h, buf.data(), sizeof h);
    if (h.nlmsg_seq != seq_) continue;  // a late reply to an earlier request
    const auto len = std::min<std::size_t>(h.nlmsg_len, static_cast<std::size_t>(n));
    const std::size_t body = align4(sizeof(nlmsghdr));
    if (h.nlmsg_type == NLMSG_ERROR) {
      nlmsgerr e{};
      if (len < body + sizeof e) return rpc::Error{EPROTO, "sock_diag: short error reply"};
      std::memcpy(&e, buf.data() + body, sizeof e);
      // ENOENT: no such socket (any more); ESTALE: the inode now names another socket.
      if (e.error == -ENOENT || e.error == -ESTALE) return Reply{};
      return rpc::Error{-e.error, "sock_diag lookup of unix inode " + std::to_string(ino) + ": " +
                                      std::strerror(-e.error)};
    }
    if (h.nlmsg_type != SOCK_DIAG_BY_FAMILY || len < body + sizeof(unix_diag_msg)) {
      return rpc::Error{EPROTO, "sock_diag: unexpected reply type " + std::to_string(h.nlmsg_type)};
    }
    unix_diag_msg m{};
    std::memcpy(&m, buf.data() + body, sizeof m);
    Reply r;
    r.found = true;
    r.self.ino = m.udiag_ino;
    r.self.cookie[0] = m.udiag_cookie[0];
    r.self.cookie[1] = m.udiag_cookie[1];
    // Attributes follow the message: UNIX_DIAG_PEER carries the peer's inode (u32).
    for (std::size_t off = body + align4(sizeof m); off + sizeof(nlattr) <= len;) {
      nlattr a{};
      std::memcpy(&a, buf.data() + off, sizeof a);
      if (a.nla_len < sizeof a || off + a.nla_len > len) break;
      if (a.nla_type == UNIX_DIAG_PEER && a.nla_len >= sizeof a + sizeof(std::uint32_t)) {
        std::memcpy(&r.peer_ino, buf.data() + off + sizeof a, sizeof r.peer_ino);
      }
      off += align4(a.nla_len);
    }
    return r;
  }
}

rpc::Result<UnixSocketRef> PlaceholderWatch::peer_of(int b_fd) {
  struct stat st {};
  if (::fstat(b_fd, &st) != 0) return rpc::errno_error("fstat(B)");
  auto b = lookup(static_cast<std::uint32_t>(st.st_ino), kNoCookie, true);
  if (!b) return b.error();
  if (!b->found || b->peer_ino == 0) {
    return rpc::Error{ENOTCONN, "end B (unix inode " + std::to_string(st.st_ino) +
                                    ") has no peer: the guest's end A is already closed"};
  }
  auto a = lookup(b->peer_ino, kNoCookie, false);
  if (!a) return a.error();
  if (!a->found) {
    return rpc::Error{ENOTCONN, "end A (unix inode " + std::to_string(b->peer_ino) + ") is gone"};
  }
  return a->self;
}

rpc::Result<bool> PlaceholderWatch::alive(const UnixSocketRef& a) {
  auto r = lookup(a.ino, a.cookie, false);
  if (!r) return r.error();
  return r->found;
}

}  // namespace tosec::tovm
