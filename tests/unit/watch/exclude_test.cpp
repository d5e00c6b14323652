#include <doctest/doctest.h>

#include "lib/watch/exclude.h"

#include <sys/stat.h>

#include "tests/support/tmpdir.h"

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

TEST_CASE("per-directory files (rsync -C's .cvsignore): names in their own directory, '!' clears, forget() re-reads") {
  using syncd::watch::Excludes;
  syncd::test::TempDir t{"perdir"};
  ::mkdir((t / "sub").c_str(), 0755);
  ::mkdir((t / "sub/deeper").c_str(), 0755);
  syncd::test::write_file(t / ".cvsignore", "build\n");
  syncd::test::write_file(t / "sub/.cvsignore", "old.* *.tmp\n ! secret [ab].bak\n");
  Excludes ex({"*.log"});
  ex.read_per_dir(t.path(), ".cvsignore");
  CHECK(ex.per_dir_file() == ".cvsignore");
  CHECK(ex.excluded("x.log", false));  // the plain patterns still apply
  CHECK(ex.excluded("sub/secret", false));
  CHECK(ex.excluded("sub/a.bak", false));
  CHECK_FALSE(ex.excluded("sub/c.bak", false));
  CHECK_FALSE(ex.excluded("sub/x.tmp", false));  // cleared by '!'
  CHECK_FALSE(ex.excluded("sub/deeper/secret", false));  // not inherited by subdirectories
  CHECK_FALSE(ex.excluded("secret", false));
  CHECK(ex.excluded("build", true));
  CHECK(ex.excluded("build/out/x.c", false));  // below an excluded directory
  CHECK_FALSE(ex.excluded("sub/.cvsignore", false));
  // A copy shares the cache: one forget() is seen by every copy.
  const Excludes copy = ex;
  syncd::test::write_file(t / "sub/.cvsignore", "*.tmp\n");
  CHECK(copy.excluded("sub/secret", false));  // still the cached rules
  ex.forget("sub");
  CHECK_FALSE(copy.excluded("sub/secret", false));
  CHECK(copy.excluded("sub/x.tmp", false));
  Excludes none;
  CHECK(none.per_dir_file().empty());
  CHECK_FALSE(none.excluded("sub/secret", false));
}
