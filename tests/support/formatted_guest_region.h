// Test helper: a guest region in private memory, formatted with a guest channel the way the
// TOE leaves it, for tests that play the TOE's end themselves (guest rx path, agent core).
#pragma once

#include <cstdlib>
#include <cstring>
#include <string>

#include "tosec/rpc/guest_channel.h"
#include "tosec/rpc/region.h"

namespace tosec::test {

class FormattedGuestRegion {
 public:
  FormattedGuestRegion() = default;
  FormattedGuestRegion(const FormattedGuestRegion&) = delete;
  FormattedGuestRegion& operator=(const FormattedGuestRegion&) = delete;
  ~FormattedGuestRegion() { std::free(mem_); }

  // Lays out, formats and attaches the region and the TOE's and the guest's channel ends.
  // Returns "" or what failed.
  std::string format(const rpc::GuestChannelConfig& cfg) {
    auto layout = rpc::guest_region_layout(cfg);
    const std::size_t size = layout.required_size();
    mem_ = static_cast<std::byte*>(std::aligned_alloc(4096, (size + 4095) / 4096 * 4096));
    if (mem_ == nullptr) return "aligned_alloc failed";
    std::memset(mem_, 0, size);
    if (auto st = layout.format({mem_, size}); !st) return "layout: " + st.message();
    auto view = rpc::RegionView::attach({mem_, size});
    if (!view) return "attach: " + view.error().message;
    view_ = std::move(*view);
    if (auto st = rpc::format_guest_channel(view_, cfg); !st) return "channel: " + st.message();
    auto toe = rpc::GuestChannel::attach_toe(view_, cfg);
    if (!toe) return "TOE end: " + toe.error().message;
    toe_ = std::move(*toe);
    auto guest = rpc::GuestChannel::attach_guest(view_);  // geometry from the published area
    if (!guest) return "guest end: " + guest.error().message;
    guest_ = std::move(*guest);
    return {};
  }

  rpc::RegionView& view() { return view_; }
  rpc::GuestChannel& toe() { return toe_; }      // the end the test plays
  rpc::GuestChannel& guest() { return guest_; }  // the end under test

 private:
  std::byte* mem_ = nullptr;
  rpc::RegionView view_;
  rpc::GuestChannel toe_;
  rpc::GuestChannel guest_;
};

}  // namespace tosec::test
