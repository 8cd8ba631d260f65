// ControlChannel: protobuf ControlMessages over a ControlRing.
//
// One direction per ring: a pair of roles uses two rings (e.g. "ctl.h2t" and "ctl.t2h") and one
// ControlChannel on each end of each. The channel adds no framing of its own: the ring frame's
// type says what the payload is (kControlMessageFrame) and the ring's CRC guards the bytes, so a
// payload that still does not parse was produced by a broken or hostile peer. That costs one
// error, never the channel.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "tosec/rpc/control_ring.h"
#include "tosec/rpc/status.h"
#include "tosec/v1/control.pb.h"

namespace tosec::rpc {

// Frame type of a serialized tosec.v1.ControlMessage. Other types are reserved for later
// encodings (a new type, never a changed meaning of this one).
inline constexpr std::uint32_t kControlMessageFrame = 1;

class ControlChannel {
 public:
  explicit ControlChannel(ControlRing ring) : ring_(std::move(ring)) {}

  // Serializes `msg` into a reusable buffer and writes one frame. Errors as ControlRing::write
  // (EAGAIN when full: retry later; EMSGSIZE naming the message size).
  Status send(const tosec::v1::ControlMessage& msg);

  // Reads the next message into `out`. EAGAIN when empty; EBADMSG for a frame that was skipped,
  // had an unknown type, or did not parse (message names type and size); the channel stays usable.
  Status receive(tosec::v1::ControlMessage& out);
  Result<tosec::v1::ControlMessage> receive();

  ControlRing& ring() { return ring_; }
  const ControlRing& ring() const { return ring_; }

 private:
  ControlRing ring_;
  std::string send_buf_;
  ControlRing::Frame recv_frame_;
};

}  // namespace tosec::rpc
