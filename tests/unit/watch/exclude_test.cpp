#include <doctest/doctest.h>

#include "lib/watch/exclude.h"

using namespace syncd::watch;

TEST_SUITE("watch.exclude") {
  TEST_CASE("lsyncd pattern semantics") {
    Excludes ex({"*.tmp", "/cache/", "foo", "a?c", "/logs/**/old"});
    CHECK(ex.excluded("x.tmp", false));
    CHECK(ex.excluded("d/x.tmp", false));
    CHECK_FALSE(ex.excluded("x.tmpl", false));
    CHECK(ex.excluded("cache", true));
    CHECK(ex.excluded("cache/x", false));        // below an excluded directory
    CHECK_FALSE(ex.excluded("cache", false));    // a file named cache: the pattern wants a dir
    CHECK_FALSE(ex.excluded("sub/cache", true));  // anchored at the root
    CHECK(ex.excluded("foo", false));
    CHECK(ex.excluded("a/foo", true));
    CHECK(ex.excluded("a/foo/x", false));
    CHECK_FALSE(ex.excluded("a/foobar", false));
    CHECK(ex.excluded("abc", false));
    CHECK_FALSE(ex.excluded("a/c", false));  // ? never matches '/'
    CHECK(ex.excluded("logs/x/y/old", false));
    CHECK_FALSE(ex.excluded("logs/old2", false));
    CHECK_FALSE(Excludes().excluded("anything", false));
  }
  TEST_CASE("regex metacharacters in patterns are literal") {
    Excludes ex({"a+b(1).txt"});
    CHECK(ex.excluded("a+b(1).txt", false));
    CHECK_FALSE(ex.excluded("aab1.txt", false));
  }
}
