#include <doctest/doctest.h>

#include "lib/engine/version.h"

using namespace syncd;
using namespace syncd::engine;
using VV = protocol::VersionVector;

TEST_SUITE("engine.version") {
  TEST_CASE("dominance - equality - concurrency") {
    CHECK(compare(VV{}, VV{}) == Order::equal);
    CHECK(compare(VV{{1, 1}}, VV{{1, 1}}) == Order::equal);
    CHECK(compare(VV{}, VV{{1, 1}}) == Order::before);
    CHECK(compare(VV{{1, 2}}, VV{{1, 1}}) == Order::after);
    CHECK(compare(VV{{1, 1}}, VV{{1, 1}, {2, 1}}) == Order::before);
    CHECK(compare(VV{{1, 2}}, VV{{1, 1}, {2, 1}}) == Order::concurrent);
    CHECK(compare(VV{{1, 1}, {3, 5}}, VV{{2, 1}}) == Order::concurrent);
    CHECK(compare(VV{{1, 3}, {2, 4}}, VV{{1, 3}, {2, 2}}) == Order::after);
  }
  TEST_CASE("merge takes the entry-wise maximum") {
    CHECK(merge(VV{{1, 2}, {3, 1}}, VV{{1, 1}, {2, 7}}) == VV{{1, 2}, {2, 7}, {3, 1}});
    CHECK(merge(VV{}, VV{{4, 4}}) == VV{{4, 4}});
    const VV a{{1, 2}}, b{{1, 1}, {2, 1}};
    CHECK(compare(merge(a, b), a) == Order::after);
    CHECK(compare(merge(a, b), b) == Order::after);
  }
}
