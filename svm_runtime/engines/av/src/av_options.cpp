#include "av_options.h"

#include <algorithm>
#include <charconv>
#include <set>

namespace tosec::svm::av {
namespace {

rpc::Error bad(const std::string& key, const std::string& value, const std::string& why) {
  return rpc::Error{EINVAL, "av option '" + key + "' = '" + value + "': " + why};
}

rpc::Result<std::uint64_t> parse_u64(const std::string& key, const std::string& value,
                                     std::uint64_t min, std::uint64_t max) {
  std::uint64_t v = 0;
  const char* end = value.data() + value.size();
  auto [ptr, ec] = std::from_chars(value.data(), end, v);
  if (ec != std::errc{} || ptr != end || value.empty()) return bad(key, value, "not a number");
  if (v < min || v > max) {
    return bad(key, value,
               "out of range [" + std::to_string(min) + ", " + std::to_string(max) + "]");
  }
  return v;
}

rpc::Result<bool> parse_choice(const std::string& key, const std::string& value,
                               const char* if_true, const char* if_false) {
  if (value == if_true) return true;
  if (value == if_false) return false;
  return bad(key, value, std::string("expected ") + if_true + " or " + if_false);
}

}  // namespace

rpc::Result<AvOptions> parse_av_options(const std::map<std::string, std::string>& options) {
  AvOptions o;
  // The scan mode decides two defaults, so it is read first.
  bool parsers_set = false;
  bool cache_set = false;
  if (auto it = options.find("scan"); it != options.end()) {
    if (it->second == "window") {
      o.scan = ScanMode::kWindow;
    } else if (it->second == "object") {
      o.scan = ScanMode::kObject;
    } else if (it->second == "http") {
#if TOSEC_AV_WITH_HTTP
      o.scan = ScanMode::kHttp;
#else
      return bad("scan", it->second, "this build has no HTTP parser (tosec_svm_http)");
#endif
    } else {
      return bad("scan", it->second, "expected window, object or http");
    }
  }
  static const std::set<std::string> kKnown = {
      "mode",  "scan",         "overlap_bytes", "max_object_bytes", "over_limit", "parsers",
      "cache", "max_filesize", "max_scansize",  "max_scantime_ms",  "tmpdir"};
  constexpr std::uint64_t kGiB = 1ULL << 30;
  for (const auto& [key, value] : options) {
    if (!kKnown.contains(key)) return bad(key, value, "unknown option");
    if (key == "mode") {
      auto block = parse_choice(key, value, "block", "detect");
      if (!block) return block.error();
      o.on_virus = *block ? Action::kBlock : Action::kAlert;
    } else if (key == "overlap_bytes") {
      // At least 1: a window of 0 would silently miss every split signature.
      auto v = parse_u64(key, value, 1, 1 << 20);
      if (!v) return v.error();
      o.overlap_bytes = static_cast<std::size_t>(*v);
    } else if (key == "max_object_bytes") {
      auto v = parse_u64(key, value, 1, kGiB);
      if (!v) return v.error();
      o.max_object_bytes = static_cast<std::size_t>(*v);
    } else if (key == "over_limit") {
      auto block = parse_choice(key, value, "block", "alert");
      if (!block) return block.error();
      o.on_over_limit = *block ? Action::kBlock : Action::kAlert;
    } else if (key == "parsers") {
      auto all = parse_choice(key, value, "all", "raw");
      if (!all) return all.error();
      o.all_parsers = *all;
      parsers_set = true;
    } else if (key == "cache") {
      auto on = parse_choice(key, value, "on", "off");
      if (!on) return on.error();
      o.cache = *on;
      cache_set = true;
    } else if (key == "max_filesize" || key == "max_scansize") {
      auto v = parse_u64(key, value, 1, 4 * kGiB);
      if (!v) return v.error();
      (key == "max_filesize" ? o.max_filesize : o.max_scansize) = *v;
    } else if (key == "max_scantime_ms") {
      auto v = parse_u64(key, value, 1, 3'600'000);
      if (!v) return v.error();
      o.max_scantime_ms = static_cast<std::uint32_t>(*v);
    } else if (key == "tmpdir") {
      if (value.empty() || value.front() != '/') return bad(key, value, "not an absolute path");
      o.tmpdir_base = value;
    }
  }
  // Window scans see stream fragments: file parsers rarely find a whole file there and cost a
  // lot, and windows are never repeated, so the MD5 cache is pure overhead. Objects are the
  // opposite on both counts.
  const bool objects = o.scan != ScanMode::kWindow;
  if (!parsers_set) o.all_parsers = objects;
  if (!cache_set) o.cache = objects;
  // libclamav silently skips files over its limits; never let it skip what we hand it.
  const std::uint64_t biggest_scan =
      std::max<std::uint64_t>(objects ? o.max_object_bytes : 0, o.overlap_bytes + (1u << 20));
  if (o.max_filesize == 0) o.max_filesize = std::max<std::uint64_t>(biggest_scan, 25u << 20);
  if (o.max_scansize == 0) o.max_scansize = std::max<std::uint64_t>(4 * o.max_filesize, 100u << 20);
  return o;
}

}  // namespace tosec::svm::av
