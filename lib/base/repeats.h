// File: lib/base/repeats.h
//
// Repeats: collapses a warning that comes again and again with the same key (a full disk under
// the index fails every batch's commit: 3,564 identical lines in 30 s here). The first is logged;
// the same key within the window after it is only counted; the next one after the window is
// logged with how many were left out.
// Thread affinity: one thread (the owner's).
//
//   if (auto line = repeats.pass("index commit", text, now_ms)) lg().warn("{}", *line);
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>

namespace syncd {

class Repeats {
 public:
  explicit Repeats(uint64_t window_ms = 10'000) : window_ms_(window_ms) {}
  // The line to log now, or nullopt while the key repeats within the window.
  std::optional<std::string> pass(const std::string& key, std::string text, uint64_t now_ms) {
    auto [it, fresh] = seen_.try_emplace(key, Seen{now_ms, 0});
    if (!fresh && now_ms - it->second.logged_ms < window_ms_) {
      ++it->second.left_out;
      return std::nullopt;
    }
    if (!fresh && it->second.left_out > 0) {
      text += " (and " + std::to_string(it->second.left_out) + " more like this in the last " +
              std::to_string((now_ms - it->second.logged_ms) / 1000) + " s)";
    }
    it->second = Seen{now_ms, 0};
    if (seen_.size() > kMaxKeys) seen_.clear();  // keys are a few fixed kinds; this is a bound only
    return text;
  }

 private:
  static constexpr size_t kMaxKeys = 64;
  struct Seen {
    uint64_t logged_ms;
    size_t left_out;
  };
  uint64_t window_ms_;
  std::unordered_map<std::string, Seen> seen_;
};

}  // namespace syncd
