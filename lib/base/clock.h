// File: lib/base/clock.h
//
// Hlc: a hybrid logical clock (TWO-WAY.md §4.1): u64 = 48 bits of Unix milliseconds, 16 bits of
// logical counter. now() never goes backwards and always exceeds every timestamp observed, so a
// change made after seeing another orders after it even when this node's wall clock is behind.
// Used only to order concurrent versions and to age tombstones, never to decide whether
// something changed.
// Thread affinity: one Hlc per node, used from one thread.
//
//   Hlc clock;  uint64_t t = clock.now();  clock.observe(remote_ts);
#pragma once

#include <chrono>
#include <cstdint>

namespace syncd {

// Monotonic microseconds (latency samples, rate limits); never wall time.
inline uint64_t mono_us() noexcept {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}

class Hlc {
 public:
  static constexpr uint64_t kLogicalBits = 16;
  static uint64_t pack(uint64_t ms, uint64_t logical) noexcept { return (ms << kLogicalBits) | logical; }
  static uint64_t millis(uint64_t ts) noexcept { return ts >> kLogicalBits; }

  // A timestamp greater than every one returned or observed before.
  uint64_t now() noexcept { return now_at(wall_ms()); }
  uint64_t now_at(uint64_t wall) noexcept {
    const uint64_t last_ms = millis(last_);
    if (wall > last_ms) {
      last_ = pack(wall, 0);
    } else {
      ++last_;  // same or earlier millisecond: count up (overflow carries into the ms field)
    }
    return last_;
  }
  // Folds in a timestamp from a peer.
  void observe(uint64_t ts) noexcept {
    if (ts > last_) last_ = ts;
  }
  uint64_t last() const noexcept { return last_; }

  static uint64_t wall_ms() noexcept {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
  }

 private:
  uint64_t last_ = 0;
};

}  // namespace syncd
