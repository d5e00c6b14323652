// File: tests/support/seeds.h
//
// The seeds and rounds a randomized test runs: its defaults in CI, or a soak's from the
// environment (SEEDS_VAR="A-B", ROUNDS_VAR="N").
//
//   const auto r = test::seed_range("SYNCD_DIRECT_SEEDS", "SYNCD_DIRECT_ROUNDS", {1, 3, 3});
//   for (int seed = r.lo; seed <= r.hi; ++seed) ...
#pragma once

#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace syncd::test {

struct SeedRange {
  int lo = 1, hi = 1, rounds = 1;
};

inline SeedRange seed_range(const char* seeds_var, const char* rounds_var, SeedRange r) {
  if (const char* e = std::getenv(seeds_var)) {
    if (std::sscanf(e, "%d-%d", &r.lo, &r.hi) == 1) r.hi = r.lo;
    r.hi = std::max(r.hi, r.lo);
  }
  if (const char* e = std::getenv(rounds_var)) r.rounds = std::max(1, std::atoi(e));
  return r;
}

}  // namespace syncd::test
