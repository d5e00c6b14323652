#include "lib/runtime/move_log.h"

#include <doctest/doctest.h>

using syncd::runtime::MoveLog;

TEST_CASE("move log: a tombstone's seq finds its move - re-adding replaces it - the oldest go past kMax") {
  MoveLog log;
  CHECK_FALSE(log.find(7));
  log.add(7, 8, "new/name");
  auto m = log.find(7);
  REQUIRE(m);
  CHECK(m->to_seq == 8);
  CHECK(m->to_path == "new/name");
  CHECK_FALSE(log.find(8));  // keyed by the tombstone, not by the moved version

  log.add(7, 9, "other");
  REQUIRE(log.find(7));
  CHECK(log.find(7)->to_seq == 9);

  for (uint64_t s = 100; s < 100 + MoveLog::kMax; ++s) log.add(s, s + 1, "x");
  CHECK_FALSE(log.find(7));  // the oldest entry went first
  CHECK(log.find(100));
  CHECK(log.find(99 + MoveLog::kMax));
  log.add(1'000'000, 1'000'001, "y");
  CHECK_FALSE(log.find(100));
  CHECK(log.find(101));
}
