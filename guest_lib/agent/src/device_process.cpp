// The process device: the agent joins a host tosec-ivshmem-server as an ordinary peer, so the
// whole agent runs on the host in tests. Unlike rpc::IvshmemClient it keeps the region fd: the
// agent hands it on to its shims, as the real server would.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <map>

#include "device_impl.h"
#include "tosec/rpc/ivshmem_protocol.h"
#include "tosec/rpc/shm_mapping.h"

namespace tosec::agent {

namespace {

constexpr int kHandshakeMs = 5000;

class ProcessDevice final : public Device {
 public:
  rpc::Status join(const std::string& path, unsigned vectors) {
    vectors_ = vectors;
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (path.size() >= sizeof sa.sun_path) return rpc::Error{ENAMETOOLONG, "socket path " + path};
    std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
    sock_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!sock_.valid()) return rpc::errno_error("socket");
    if (::connect(sock_.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0) {
      return rpc::errno_error("connect(" + path + ")");
    }
    path_ = path;
    auto version = rpc::ivshmem::recv_msg(sock_.get(), kHandshakeMs);
    if (!version) return version.error();
    if (version->value != rpc::ivshmem::kProtocolVersion) {
      return rpc::Error{EPROTO, path + ": protocol version " + std::to_string(version->value)};
    }
    auto id = rpc::ivshmem::recv_msg(sock_.get(), kHandshakeMs);
    if (!id) return id.error();
    if (id->fd.valid() || id->value < 0 || id->value > rpc::ivshmem::kMaxPeerId) {
      return rpc::Error{EPROTO, path + ": bad peer id message " + std::to_string(id->value)};
    }
    self_ = static_cast<rpc::PeerId>(id->value);
    while (own_.size() < vectors_ || !region_fd_.valid()) {
      auto m = rpc::ivshmem::recv_msg(sock_.get(), kHandshakeMs);
      if (!m) {
        return rpc::Error{m.error().code,
                          path + ": handshake (" + std::to_string(own_.size()) + " of " +
                              std::to_string(vectors_) +
                              " own vectors; is the server's -n smaller?): " + m.error().message};
      }
      if (auto s = apply(m->value, std::move(m->fd)); !s) return s;
    }
    doorbells_.set_own(self_, dup_all(own_));
    return {};
  }

  std::span<std::byte> region() const override { return map_.bytes(); }
  rpc::Result<rpc::UniqueFd> region_fd() const override {
    rpc::UniqueFd fd(::fcntl(region_fd_.get(), F_DUPFD_CLOEXEC, 0));
    if (!fd.valid()) return rpc::errno_error("dup(region fd)");
    return fd;
  }
  rpc::PeerId self() const override { return self_; }
  unsigned vectors() const override { return vectors_; }
  int vector_fd(rpc::Vector v) const override { return v < own_.size() ? own_[v].get() : -1; }
  int events_fd() const override { return sock_.get(); }
  rpc::Status process_events() override {
    for (;;) {
      auto m = rpc::ivshmem::try_recv_msg(sock_.get());
      if (!m) return rpc::Error{m.error().code, path_ + ": " + m.error().message};
      if (!m->has_value()) return {};
      if (auto s = apply((*m)->value, std::move((*m)->fd)); !s) return s;
    }
  }
  std::vector<rpc::PeerId> peers() const override {
    std::vector<rpc::PeerId> out;
    for (const auto& [id, n] : peer_vecs_) {
      if (n >= vectors_) out.push_back(id);
    }
    return out;
  }
  rpc::Status ring(rpc::PeerId peer, rpc::Vector v) override { return doorbells_.ring(peer, v); }
  std::string describe() const override {
    return "process peer " + std::to_string(self_) + " of " + path_;
  }

 private:
  static std::vector<rpc::UniqueFd> dup_all(const std::vector<rpc::UniqueFd>& fds) {
    std::vector<rpc::UniqueFd> out;
    for (const auto& f : fds) out.emplace_back(::fcntl(f.get(), F_DUPFD_CLOEXEC, 0));
    return out;
  }

  rpc::Status apply(std::int64_t value, rpc::UniqueFd fd) {
    if (value < rpc::ivshmem::kShmMessage || value > rpc::ivshmem::kMaxPeerId) {
      return rpc::Error{EPROTO, path_ + ": invalid message " + std::to_string(value)};
    }
    if (value == rpc::ivshmem::kShmMessage) {
      if (region_fd_.valid() || !fd.valid()) {
        return rpc::Error{EPROTO, path_ + ": unexpected shared memory message"};
      }
      auto map = rpc::ShmMapping::map(fd.get());
      if (!map) return map.error();
      map_ = std::move(*map);
      region_fd_ = std::move(fd);
      return {};
    }
    const auto id = static_cast<rpc::PeerId>(value);
    if (id == self_) {
      if (!fd.valid()) return rpc::Error{EPROTO, path_ + ": server says we left"};
      if (own_.size() < vectors_) own_.push_back(std::move(fd));
      return {};  // extra vectors (server -n larger than ours) are closed
    }
    if (!fd.valid()) {
      peer_vecs_.erase(id);
      doorbells_.remove_peer(id);
      return {};
    }
    unsigned& n = peer_vecs_[id];
    if (n < vectors_) {
      doorbells_.add_peer_vector(id, std::move(fd));
      ++n;
    }
    return {};
  }

  std::string path_;
  unsigned vectors_ = 0;
  rpc::UniqueFd sock_;
  rpc::PeerId self_ = 0;
  rpc::UniqueFd region_fd_;
  rpc::ShmMapping map_;
  std::vector<rpc::UniqueFd> own_;
  std::map<rpc::PeerId, unsigned> peer_vecs_;
  rpc::EventfdDoorbells doorbells_;
};

}  // namespace

rpc::Result<std::unique_ptr<Device>> open_process_device(const std::string& path,
                                                         unsigned vectors) {
  auto d = std::make_unique<ProcessDevice>();
  if (auto s = d->join(path, vectors); !s) return s.error();
  return std::unique_ptr<Device>(std::move(d));
}

}  // namespace tosec::agent
