#include "tosec/rpc/control_channel.h"

#include <cstddef>
#include <limits>
#include <span>
#include <utility>

namespace tosec::rpc {

namespace {

// "alert", "stats", ...: the oneof field in use, for error messages.
std::string body_name(const tosec::v1::ControlMessage& msg) {
  const auto* field = msg.GetDescriptor()->FindFieldByNumber(static_cast<int>(msg.body_case()));
  return field != nullptr ? std::string(field->name()) : std::string("empty");
}

}  // namespace

Status ControlChannel::send(const tosec::v1::ControlMessage& msg) {
  const std::size_t size = msg.ByteSizeLong();
  if (size > ring_.max_payload() || size > std::size_t{std::numeric_limits<int>::max()}) {
    return Error{EMSGSIZE, "control channel '" + ring_.name() + "': ControlMessage (" +
                               body_name(msg) + ") of " + std::to_string(size) +
                               " bytes exceeds the ring's maximum of " +
                               std::to_string(ring_.max_payload())};
  }
  // resize() keeps the capacity, so steady-state sends do not allocate.
  send_buf_.resize(size);
  if (!msg.SerializeWithCachedSizesToArray(reinterpret_cast<std::uint8_t*>(send_buf_.data()))) {
    return Error{EINVAL, "control channel '" + ring_.name() + "': serialization failed"};
  }
  return ring_.write(kControlMessageFrame, std::as_bytes(std::span(send_buf_)));
}

Status ControlChannel::receive(tosec::v1::ControlMessage& out) {
  if (Status s = ring_.read_into(recv_frame_); !s) return s;
  const auto& payload = recv_frame_.payload;
  if (recv_frame_.type != kControlMessageFrame) {
    return Error{EBADMSG, "control channel '" + ring_.name() + "': unexpected frame type " +
                              std::to_string(recv_frame_.type) + " (" +
                              std::to_string(payload.size()) + " bytes), skipped"};
  }
  // The ring already made the payload a private copy, so parsing cannot race with the peer.
  if (!out.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return Error{EBADMSG, "control channel '" + ring_.name() + "': frame type " +
                              std::to_string(recv_frame_.type) + " of " +
                              std::to_string(payload.size()) +
                              " bytes is not a valid tosec.v1.ControlMessage, skipped"};
  }
  return {};
}

Result<tosec::v1::ControlMessage> ControlChannel::receive() {
  tosec::v1::ControlMessage msg;
  if (Status s = receive(msg); !s) return s.error();
  return msg;
}

}  // namespace tosec::rpc
