#include "tosec/tovm/socket_table.h"

namespace tosec::tovm {

SocketTable::SocketTable(std::uint32_t max_sockets) : sockets_(max_sockets) {
  free_.reserve(max_sockets);
  for (std::uint32_t i = max_sockets; i > 0; --i) free_.push_back(i - 1);
}

rpc::Result<std::uint32_t> SocketTable::allocate() {
  if (free_.empty()) return rpc::Error{ENFILE, "socket table full"};
  const std::uint32_t id = free_.back();
  free_.pop_back();
  TSocket& s = sockets_[id];
  const std::uint32_t gen = s.generation + 1;
  s = TSocket{};
  s.generation = gen;
  s.state = rpc::SocketState::kOpen;
  ++open_;
  return id;
}

void SocketTable::release(std::uint32_t id) {
  if (id >= sockets_.size() || sockets_[id].state == rpc::SocketState::kFree) return;
  TSocket& s = sockets_[id];
  const std::uint32_t gen = s.generation + 1;
  s = TSocket{};
  s.generation = gen;
  --open_;
  // Keep `free_` sorted descending so ids are reused lowest first (like fds: easy to debug).
  auto it = free_.begin();
  while (it != free_.end() && *it > id) ++it;
  free_.insert(it, id);
}

TSocket* SocketTable::find(std::uint32_t id) {
  if (id >= sockets_.size() || sockets_[id].state == rpc::SocketState::kFree) return nullptr;
  return &sockets_[id];
}

const TSocket* SocketTable::find(std::uint32_t id) const {
  if (id >= sockets_.size() || sockets_[id].state == rpc::SocketState::kFree) return nullptr;
  return &sockets_[id];
}

std::vector<std::uint32_t> SocketTable::count_by_state() const {
  std::vector<std::uint32_t> c(6, 0);
  for (const auto& s : sockets_) ++c[static_cast<std::size_t>(s.state)];
  return c;
}

}  // namespace tosec::tovm
