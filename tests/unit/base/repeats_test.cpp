// Repeats: a warning repeated every batch is said once per window, then with the count left out.
#include <doctest/doctest.h>

#include "lib/base/repeats.h"

using syncd::Repeats;

TEST_CASE("a repeated warning is logged once per window - the next says how many were left out") {
  Repeats r(10'000);
  CHECK(r.pass("commit", "disk full", 1000) == "disk full");
  for (uint64_t t = 1001; t < 11'000; t += 10) CHECK_FALSE(r.pass("commit", "disk full", t).has_value());
  CHECK(r.pass("other", "another warning", 5000) == "another warning");  // keys are apart
  CHECK(r.pass("commit", "disk full", 11'000) == "disk full (and 1000 more like this in the last 10 s)");
  CHECK_FALSE(r.pass("commit", "disk full", 11'001).has_value());
  // Quiet for a window: the next one is logged as it is, with what was left out since.
  CHECK(r.pass("commit", "disk full", 30'000) == "disk full (and 1 more like this in the last 19 s)");
  CHECK(r.pass("commit", "disk full", 50'000) == "disk full");
}
