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

TEST_CASE("a time beyond int64 nanoseconds (ext4 keeps 2446, tmpfs any second) saturates at the end - it does not wrap") {
  using syncd::fs::ns_of;
  CHECK(ns_of(1'700'000'000, 5) == 1'700'000'000'000'000'005);
  CHECK(ns_of(-1, 999'999'999) == -1);
  CHECK(ns_of(9'223'372'036, 854'775'807) == INT64_MAX);  // the last representable ns
  // 2446-05-10, ext4's last second: wrapped to 1901-12-13 at the target before.
  CHECK(ns_of(15'032'385'535, 0) == INT64_MAX);
  CHECK(ns_of(9'223'372'036, 854'775'808) == INT64_MAX);  // one ns past by the addition alone
  CHECK(ns_of(INT64_MAX, 999'999'999) == INT64_MAX);      // what a hostile peer may send
  CHECK(ns_of(-15'032'385'536, 0) == INT64_MIN);
  CHECK(ns_of(INT64_MIN, 0) == INT64_MIN);
  struct stat st{};
  st.st_mtim.tv_sec = 15'032'385'535;
  st.st_ctim.tv_sec = 1'700'000'000;
  const Fingerprint f = Fingerprint::of(st);
  CHECK(f.mtime_ns == INT64_MAX);
  CHECK(f.mtime_parts() == std::pair<int64_t, uint32_t>{9'223'372'036, 854'775'807});  // 2262-04-11, not 1901
  CHECK(f.ctime_ns == 1'700'000'000'000'000'000);
}
