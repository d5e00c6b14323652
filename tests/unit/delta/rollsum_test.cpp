#include <doctest/doctest.h>

#include <random>

#include "lib/delta/rollsum.h"
#include "tests/support/tmpdir.h"

using namespace syncd;
using namespace syncd::delta;

namespace {

// The definition, computed the slow way.
uint32_t naive(const uint8_t* p, size_t n) {
  uint32_t s1 = 0, s2 = 0;
  for (size_t i = 0; i < n; ++i) {
    s1 += p[i] + kCharOffset;
    s2 += s1;
  }
  return (s1 & 0xffff) | (s2 << 16);
}

}  // namespace

TEST_SUITE("delta.rollsum") {
  TEST_CASE("known answers") {
    CHECK(Rollsum::of(nullptr, 0) == 0);
    const uint8_t abc[] = {'a', 'b', 'c'};
    // s1 = (97+31)+(98+31)+(99+31) = 387; s2 = 128 + 257 + 387 = 772
    CHECK(Rollsum::of(abc, 3) == (387u | (772u << 16)));
  }

  TEST_CASE("init matches the definition for every length") {
    std::mt19937_64 rng(1);
    Bytes d = test::random_bytes(rng, 5000);
    for (size_t n : {1, 2, 3, 15, 16, 17, 64, 700, 4096, 5000}) CHECK(Rollsum::of(d.data(), n) == naive(d.data(), n));
  }

  TEST_CASE("rolling equals recomputing at every offset") {
    std::mt19937_64 rng(2);
    Bytes d = test::random_bytes(rng, 20000);
    for (size_t win : {1, 7, 512, 4096}) {
      Rollsum r;
      r.init(d.data(), win);
      for (size_t off = 1; off + win <= d.size(); ++off) {
        r.roll(d[off - 1], d[off + win - 1]);
        if (r.digest() != Rollsum::of(d.data() + off, win)) {
          FAIL("mismatch at offset " << off << " window " << win);
        }
      }
    }
  }
}
