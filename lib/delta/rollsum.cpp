#include "lib/delta/rollsum.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace syncd::delta {

// With t = bytes so far: s1 = sum(p), s2 = sum((n - i) * p[i]) = sum over k of prefix sums.
// The SIMD path takes 16 bytes at a time (SSE2 is in every x86-64, so no dispatch needed):
//   s2 += 16 * s1_before_chunk + sum_j (16 - j) * p[j];   s1 += sum_j p[j]
// psadbw sums bytes, pmaddwd forms the weighted sum in 16-bit lanes (255 * 16 fits), and all
// 32-bit lanes wrap modulo 2^32 exactly like the scalar definition.
void Rollsum::init(const uint8_t* p, size_t len) noexcept {
  uint32_t a = 0;
  uint32_t b = 0;
  size_t i = 0;
#if defined(__SSE2__)
  if (len >= 16) {
    const __m128i zero = _mm_setzero_si128();
    const __m128i w_lo = _mm_setr_epi16(16, 15, 14, 13, 12, 11, 10, 9);
    const __m128i w_hi = _mm_setr_epi16(8, 7, 6, 5, 4, 3, 2, 1);
    __m128i v1 = zero;   // byte sums (two 64-bit lanes)
    __m128i vps = zero;  // sum of s1 before each chunk (two 64-bit lanes, low 32 bits used)
    __m128i v2 = zero;   // weighted sums (four 32-bit lanes)
    for (; i + 16 <= len; i += 16) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
      vps = _mm_add_epi64(vps, v1);
      v1 = _mm_add_epi64(v1, _mm_sad_epu8(v, zero));
      v2 = _mm_add_epi32(v2, _mm_madd_epi16(_mm_unpacklo_epi8(v, zero), w_lo));
      v2 = _mm_add_epi32(v2, _mm_madd_epi16(_mm_unpackhi_epi8(v, zero), w_hi));
    }
    // Horizontal sums: every accumulator is linear in the bytes, so lanes just add up.
    alignas(16) uint64_t l1[2], lps[2];
    alignas(16) uint32_t l2[4];
    _mm_store_si128(reinterpret_cast<__m128i*>(l1), v1);
    _mm_store_si128(reinterpret_cast<__m128i*>(lps), vps);
    _mm_store_si128(reinterpret_cast<__m128i*>(l2), v2);
    a = static_cast<uint32_t>(l1[0] + l1[1]);
    b = static_cast<uint32_t>((lps[0] + lps[1]) * 16) + l2[0] + l2[1] + l2[2] + l2[3];
  }
#endif
  // Tail (and non-SSE2 targets): the textbook recurrence.
  for (; i < len; ++i) {
    a += p[i];
    b += a;
  }
  // b so far is sum_k prefix(k) over the raw bytes = sum((len - i) * p[i]); add the offsets.
  const auto w = static_cast<uint32_t>(len);
  n = w;
  s1 = a + w * kCharOffset;
  s2 = b + kCharOffset * (w * (w + 1) / 2);
}

}  // namespace syncd::delta
