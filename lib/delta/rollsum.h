// File: lib/delta/rollsum.h
//
// rsync's rolling weak checksum (Adler-32 style, with rsync's CHAR_OFFSET): O(1) to slide the
// window by one byte, so the delta search can test a block match at every offset.
//   s1 = sum(b[i] + C),  s2 = sum((n - i) * (b[i] + C)),  digest = (s1 & 0xffff) | (s2 << 16).
// All arithmetic wraps modulo 2^32, which is consistent between init() and roll().
// Thread affinity: plain value.
//
//   Rollsum r; r.init(window); r.roll(window[0], next_byte); uint32_t w = r.digest();
#pragma once

#include <cstddef>
#include <cstdint>

namespace syncd::delta {

inline constexpr uint32_t kCharOffset = 31;

struct Rollsum {
  uint32_t s1 = 0;
  uint32_t s2 = 0;
  uint32_t n = 0;

  // Sums a whole window. This runs once per block when signing and after every match when
  // searching, so it bounds both; see rollsum.cpp for the SIMD version.
  void init(const uint8_t* p, size_t len) noexcept;

  // Slides the window one byte: `out` leaves at the front, `in` enters at the back.
  void roll(uint8_t out, uint8_t in) noexcept {
    s1 += static_cast<uint32_t>(in) - out;
    s2 += s1 - n * (static_cast<uint32_t>(out) + kCharOffset);
  }

  uint32_t digest() const noexcept { return (s1 & 0xffff) | (s2 << 16); }

  static uint32_t of(const uint8_t* p, size_t len) noexcept {
    Rollsum r;
    r.init(p, len);
    return r.digest();
  }
};

}  // namespace syncd::delta
