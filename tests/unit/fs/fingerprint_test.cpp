// Fingerprint: the mtime split the protocol carries (seconds rounded down, nanoseconds 0..999,999,999),
// which the receiver's HAVE list and the sender's records must compute alike.
#include <doctest/doctest.h>

#include "lib/fs/fingerprint.h"

using syncd::fs::Fingerprint;

TEST_CASE("mtime_parts: seconds rounded down and nanoseconds in range - also before 1970") {
  auto parts = [](int64_t ns) {
    Fingerprint f;
    f.mtime_ns = ns;
    return f.mtime_parts();
  };
  CHECK(parts(0) == std::pair<int64_t, uint32_t>{0, 0});
  CHECK(parts(1'700'000'000'123'456'789) == std::pair<int64_t, uint32_t>{1'700'000'000, 123'456'789});
  CHECK(parts(-1) == std::pair<int64_t, uint32_t>{-1, 999'999'999});
  CHECK(parts(-1'000'000'000) == std::pair<int64_t, uint32_t>{-1, 0});
  CHECK(parts(-1'500'000'000) == std::pair<int64_t, uint32_t>{-2, 500'000'000});
  for (int64_t ns : {int64_t{-3'000'000'001}, int64_t{42}, int64_t{999'999'999}, int64_t{-999'999'999}}) {
    const auto [sec, nsec] = parts(ns);
    CHECK(sec * 1'000'000'000 + nsec == ns);
    CHECK(nsec <= 999'999'999u);
  }
}
