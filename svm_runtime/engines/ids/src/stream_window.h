// The last `max` bytes of one stream direction, kept for post-match verification (Hyperscan's
// stream state does not keep data). A ring that starts small and doubles up to `max`, so short
// streams stay cheap; once at `max` it never allocates again.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>

namespace tosec::svm::ids {

class StreamWindow {
 public:
  static constexpr std::size_t kInitial = 4096;

  explicit StreamWindow(std::size_t max) : max_(max) {}

  // Appends bytes; `total_` counts every byte ever appended (= stream offset of the end).
  void append(std::span<const std::byte> bytes) {
    const auto* p = reinterpret_cast<const std::uint8_t*>(bytes.data());
    std::size_t n = bytes.size();
    if (n == 0) return;
    total_ += n;
    if (n >= max_) {  // only the tail survives
      reserve(max_);
      std::memcpy(buf_.get(), p + (n - max_), max_);
      head_ = 0;
      size_ = max_;
      return;
    }
    if (size_ + n > cap_ && cap_ < max_) {
      std::size_t want = std::max(cap_ == 0 ? kInitial : cap_ * 2, size_ + n);
      reserve(std::min(want, max_));
    }
    // Drop the oldest bytes that no longer fit.
    if (size_ + n > cap_) {
      const std::size_t drop = size_ + n - cap_;
      head_ = (head_ + drop) % cap_;
      size_ -= drop;
    }
    std::size_t tail = (head_ + size_) % cap_;
    const std::size_t first = std::min(n, cap_ - tail);
    std::memcpy(buf_.get() + tail, p, first);
    std::memcpy(buf_.get(), p + first, n - first);
    size_ += n;
  }

  // Copies the retained bytes, oldest first, into out (capacity >= size()).
  void linearize(std::uint8_t* out) const {
    const std::size_t first = std::min(size_, cap_ - head_);
    if (first > 0) std::memcpy(out, buf_.get() + head_, first);
    if (size_ > first) std::memcpy(out + first, buf_.get(), size_ - first);
  }

  std::size_t size() const { return size_; }
  std::uint64_t total() const { return total_; }
  std::uint64_t start() const { return total_ - size_; }  // stream offset of the oldest byte

 private:
  void reserve(std::size_t cap) {
    if (cap <= cap_) return;
    auto next = std::make_unique_for_overwrite<std::uint8_t[]>(cap);
    linearize(next.get());
    buf_ = std::move(next);
    cap_ = cap;
    head_ = 0;
  }

  std::size_t max_;
  std::unique_ptr<std::uint8_t[]> buf_;
  std::size_t cap_ = 0;
  std::size_t head_ = 0;
  std::size_t size_ = 0;
  std::uint64_t total_ = 0;
};

}  // namespace tosec::svm::ids
