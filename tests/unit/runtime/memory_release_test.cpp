#include "lib/runtime/memory_release.h"

#include <doctest/doctest.h>

#include <functional>

#include "lib/uvx/uvx.h"
#include "tests/unit/runtime/loop_pair.h"

using namespace syncd;

namespace {

// One turn of the loop with something to do (a timer firing after `ms`), as a watch event or a
// peer's frame would give.
void turn(uvx::Loop& loop, uint64_t ms = 0) {
  bool fired = false;
  uvx::Timer t(loop, [&] { fired = true; });
  t.start(ms);
  while (!fired) loop.run_once();
}

}  // namespace

TEST_CASE("MemoryRelease: a node that stays idle runs no timer for it") {
  uvx::Loop loop;
  int calls = 0;
  runtime::MemoryRelease r(loop, [] { return true; }, 20, [&] { ++calls; });
  turn(loop);
  turn(loop, 60);  // longer than the delay: a release armed by the first turn would have run
  CHECK_FALSE(r.pending());
  CHECK(calls == 0);
}

TEST_CASE("MemoryRelease: one release, counted from the end of the work, and none after it") {
  uvx::Loop loop;
  constexpr uint64_t kAfter = 200;  // far above the 25 ms turn: a slow machine cannot blur the two
  bool idle = false;
  int calls = 0;
  uint64_t released_at = 0;
  runtime::MemoryRelease r(loop, [&] { return idle; }, kAfter, [&] {
    ++calls;
    released_at = loop.now_ms();
  });
  turn(loop);                 // busy
  CHECK(r.pending());
  turn(loop, 25);             // still busy: the pending release stays where it was
  idle = true;
  const uint64_t ended_at = loop.now_ms();
  turn(loop);                 // the work ended: due kAfter from now, not from the first turn
  REQUIRE(r.pending());
  REQUIRE(test::run_turns_until(loop, [&] { return calls > 0; }));
  CHECK(calls == 1);
  CHECK(released_at >= ended_at + kAfter);
  CHECK_FALSE(r.pending());   // nothing re-arms it while the node stays idle
  turn(loop, kAfter + 50);
  CHECK(calls == 1);
  CHECK_FALSE(r.pending());
}

TEST_CASE("MemoryRelease: a node that never turns idle is released once per burst of turns, not on its own") {
  uvx::Loop loop;
  int calls = 0;
  runtime::MemoryRelease r(loop, [] { return false; }, 20, [&] { ++calls; });
  turn(loop);
  REQUIRE(test::run_turns_until(loop, [&] { return calls > 0; }));
  // The release's own turn is not work: it does not arm the next one; the next work does.
  CHECK_FALSE(r.pending());
  turn(loop);
  CHECK(r.pending());
  REQUIRE(test::run_turns_until(loop, [&] { return calls > 1; }));
  CHECK(calls == 2);
}
