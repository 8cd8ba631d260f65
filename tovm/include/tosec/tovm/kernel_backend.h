// KernelBackend: the `kernel` stack: Linux sockets, non-blocking, one epoll set.
//
// Handles are the kernel fds themselves. Interest maps onto EPOLLIN/EPOLLOUT (level-triggered,
// plus EPOLLRDHUP so a half-close is seen even without read interest being useful); poll()
// harvests up to `out.size()` events with one epoll_wait(0) (batched). event_fd() is the epoll
// fd, so a worker nests it in its own epoll set.
#pragma once

#include <memory>
#include <unordered_map>

#include "tosec/rpc/unique_fd.h"
#include "tosec/tovm/stack_backend.h"

namespace tosec::tovm {

class KernelBackend final : public StackBackend {
 public:
  static rpc::Result<std::unique_ptr<KernelBackend>> create();
  ~KernelBackend() override;

  const char* name() const override { return "kernel"; }
  rpc::Result<BackendHandle> open(int domain, int type, int protocol) override;
  void close(BackendHandle h, bool abort) override;
  rpc::Status bind(BackendHandle h, const SockAddr& addr) override;
  rpc::Status listen(BackendHandle h, int backlog) override;
  rpc::Result<BackendHandle> accept(BackendHandle h, SockAddr& peer) override;
  rpc::Status connect(BackendHandle h, const SockAddr& addr) override;
  rpc::Status shutdown(BackendHandle h, int how) override;
  rpc::Status setsockopt(BackendHandle h, int level, int name,
                         std::span<const std::byte> value) override;
  rpc::Result<std::size_t> getsockopt(BackendHandle h, int level, int name,
                                      std::span<std::byte> out) override;
  rpc::Result<SockAddr> local_address(BackendHandle h) override;
  rpc::Result<SockAddr> peer_address(BackendHandle h) override;
  int take_error(BackendHandle h) override;
  rpc::Result<std::size_t> send(BackendHandle h, std::span<const std::byte> data, int flags,
                                const SockAddr* to) override;
  rpc::Result<std::size_t> recv(BackendHandle h, std::span<std::byte> out, SockAddr* from) override;
  bool has_unread(BackendHandle h) override;
  rpc::Status set_interest(BackendHandle h, std::uint64_t token, Interest interest) override;
  int event_fd() const override { return epoll_.get(); }
  std::size_t poll(std::span<BackendEvent> out) override;

  std::size_t open_count() const { return registered_.size(); }

 private:
  KernelBackend() = default;
  struct Reg {
    std::uint64_t token = 0;
    std::uint32_t events = 0;  // current epoll mask; 0 = not in the set
  };
  rpc::UniqueFd epoll_;
  std::unordered_map<int, Reg> registered_;  // every open handle
};

}  // namespace tosec::tovm
