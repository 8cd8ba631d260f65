#include "pingpong.h"

#include <algorithm>
#include <chrono>
#include <numeric>

namespace tosec::eval {

using namespace tosec::rpc;

namespace {
struct Message {
  std::uint64_t seq;
  std::uint64_t t_send_ns;
  std::uint64_t body[6];
};
static_assert(sizeof(Message) == 64);

constexpr std::int64_t kTimeoutNs = 10'000'000'000;  // a peer that stops answering

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

Status send(PingPongEnd& e, const Message& m) {
  if (e.out.enqueue_burst(&m, 1) != 1) {
    return Error{ENOBUFS, "ring '" + e.out.name() + "' full or broken: " + e.out.error()};
  }
  return notify(e.out.consumer_sleeping(), *e.ringer, e.peer, e.peer_vector);
}

Status receive(PingPongEnd& e, Waiter& w, Message& m) {
  auto r = w.wait(
      e.in.consumer_sleeping(), [&] { return e.in.available() > 0; }, kTimeoutNs);
  if (!r) return r.error();
  if (!*r) return Error{ETIMEDOUT, "no message on ring '" + e.in.name() + "' for 10 s"};
  if (e.in.dequeue_burst(&m, 1) != 1) return Error{EPROTO, "ring '" + e.in.name() + "' broken"};
  return {};
}
}  // namespace

RegionLayout pingpong_layout() {
  RegionLayout l;
  l.add_ring("ping", 64, sizeof(Message)).add_ring("pong", 64, sizeof(Message));
  return l;
}

Result<PingPongEnd> attach_end(const RegionView& view, bool pinger) {
  PingPongEnd e;
  auto out = SpscRing::attach(view, pinger ? "ping" : "pong", RingEnd::kProducer);
  if (!out) return out.error();
  auto in = SpscRing::attach(view, pinger ? "pong" : "ping", RingEnd::kConsumer);
  if (!in) return in.error();
  e.out = std::move(*out);
  e.in = std::move(*in);
  return e;
}

Status Pinger::round_trip() {
  Message m{};
  m.seq = seq_;
  if (auto s = send(end_, m); !s) return s;
  Message r{};
  if (auto s = receive(end_, waiter_, r); !s) return s;
  if (r.seq != seq_) {
    return Error{EPROTO, "echo out of order: sent " + std::to_string(seq_) + ", got " +
                             std::to_string(r.seq)};
  }
  ++seq_;
  return {};
}

Result<std::vector<std::int64_t>> ping(PingPongEnd& e, std::uint64_t rounds) {
  Pinger p(e);
  std::vector<std::int64_t> rtt;
  rtt.reserve(rounds);
  for (std::uint64_t i = 0; i < rounds; ++i) {
    const std::int64_t t0 = now_ns();
    if (auto s = p.round_trip(); !s) return s.error();
    rtt.push_back(now_ns() - t0);
  }
  return rtt;
}

Status pong(PingPongEnd& e, std::uint64_t rounds) {
  Waiter w(*e.waiter, e.own_vector, e.policy);
  Message m{};
  for (std::uint64_t i = 0; i < rounds; ++i) {
    if (auto s = receive(e, w, m); !s) return s;
    if (m.seq == kStopSeq) return {};
    if (auto s = send(e, m); !s) return s;
  }
  return {};
}

Status stop_ponger(PingPongEnd& e) {
  Message m{};
  m.seq = kStopSeq;
  return send(e, m);
}

Result<std::vector<std::int64_t>> doorbell_ping(PingPongEnd& e, std::uint64_t rounds) {
  std::vector<std::int64_t> rtt;
  rtt.reserve(rounds);
  for (std::uint64_t i = 0; i < rounds; ++i) {
    const std::int64_t t0 = now_ns();
    if (auto s = e.ringer->ring(e.peer, e.peer_vector); !s) return s.error();
    auto r = e.waiter->wait(e.own_vector, kTimeoutNs);
    if (!r) return r.error();
    if (!*r) return Error{ETIMEDOUT, "doorbell ping: no answer for 10 s"};
    rtt.push_back(now_ns() - t0);
  }
  return rtt;
}

Status doorbell_pong(PingPongEnd& e, std::uint64_t rounds) {
  for (std::uint64_t i = 0; i < rounds; ++i) {
    auto r = e.waiter->wait(e.own_vector, kTimeoutNs);
    if (!r) return r.error();
    if (!*r) return Error{ETIMEDOUT, "doorbell pong: no ping for 10 s"};
    if (auto s = e.ringer->ring(e.peer, e.peer_vector); !s) return s;
  }
  return {};
}

Summary summarize(std::vector<std::int64_t> s) {
  if (s.empty()) return {0, 0, 0, 0};
  std::sort(s.begin(), s.end());
  auto at = [&](double q) {
    return static_cast<double>(s[static_cast<std::size_t>(q * static_cast<double>(s.size() - 1))]);
  };
  const double mean = std::accumulate(s.begin(), s.end(), 0.0) / static_cast<double>(s.size());
  return {at(0.5), at(0.9), at(0.99), mean};
}

}  // namespace tosec::eval
