// The two Unix sockets the agent serves to the shims of the VM, speaking exactly the protocols
// a shim already knows (guest_lib/src/platform_connection.cpp is the client):
//  - the ivshmem-server protocol on --ivshmem-socket (docs/ivshmem-protocol.md),
//  - the sidecar on --toe-socket (SidecarHello/SidecarWelcome/SidecarFd, guest_channel.h).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <span>
#include <string>

#include "tosec/rpc/doorbell.h"
#include "tosec/rpc/guest_channel.h"
#include "tosec/rpc/status.h"
#include "tosec/rpc/unique_fd.h"

namespace tosec::agent {

// A listening AF_UNIX socket of `type` at `path` (stale file replaced, parent directory
// created, mode 0666: any process of the VM may offload, as any process may open a socket),
// non-blocking and close-on-exec.
rpc::Result<rpc::UniqueFd> listen_unix(const std::string& path, int type);

// The pid of the process at the other end of a connected Unix socket (SO_PEERCRED), -1 if
// unknown.
pid_t peer_pid(int fd);

// What one shim is told when it joins as an ivshmem peer.
struct ShimJoin {
  rpc::PeerId self = 0;          // the VM's peer id: the shim is part of this peer
  rpc::PeerId toe_peer = 0;      // announced as the only other peer ...
  std::span<const int> toe_fds;  // ... with these vectors (local eventfds the agent forwards)
  int region_fd = -1;
  int own_fd = -1;  // sent as every one of the shim's own vectors (it uses the one it is told)
};
// Sends the whole server side of the handshake: version, id, region, the TOE's vectors, then
// the shim's own vectors (as many as toe_fds: a shim asking for fewer closes the rest, as the
// ivshmem spec says). Blocks at most a second per message.
rpc::Status send_ivshmem_join(int sock, const ShimJoin& join);

// One message read from a sidecar connection.
struct SidecarMessage {
  enum class Kind { kHello, kFd, kEof, kAgain, kBad } kind = Kind::kAgain;
  rpc::SidecarHello hello{};
  rpc::SidecarFd fd_msg{};
  rpc::UniqueFd fd;   // kFd: end B
  std::string error;  // kBad: what was wrong
};
// The first message of a connection is its hello, every later one a SidecarFd (both are 16
// bytes: the position tells them apart, as in the TOE).
SidecarMessage read_sidecar(int sock, bool first);
rpc::Status send_welcome(int sock, const rpc::SidecarWelcome& w);

}  // namespace tosec::agent
