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

TEST_CASE("filter rules: tried in order before the excludes, the first match decides") {
  using syncd::watch::Excludes;
  Excludes f({"*.log"}, {{true, "/keep/"}, {true, "*.c"}, {false, "*"}});
  CHECK_FALSE(f.excluded("a.c", false));
  CHECK(f.excluded("a.o", false));
  CHECK_FALSE(f.excluded("keep", true));
  CHECK_FALSE(f.excluded("keep/x.o", false));  // under an included directory
  CHECK(f.excluded("src", true));
  Excludes g({"*.log"}, {{false, "*.o"}});
  CHECK(g.excluded("x.o", false));
  CHECK(g.excluded("x.log", false));  // no rule matched: the excludes decide
  CHECK_FALSE(g.excluded("x.c", false));
}
