#include "lib/store/sqlite.h"

#include <doctest/doctest.h>

#include "tests/support/tmpdir.h"

using namespace syncd;

namespace {
constexpr const char* kSelect = "SELECT x FROM t ORDER BY x";
}

TEST_CASE("sqlite: a cached statement comes back reset - a nested use gets its own") {
  test::TempDir dir;
  auto db = store::Db::open(dir.path() + "/t.db");
  REQUIRE(db.ok());
  REQUIRE(db->exec("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1), (2), (3)").ok());
  {
    auto outer = db->prepare(kSelect);
    REQUIRE(outer.ok());
    REQUIRE(*outer->step() == true);
    CHECK(outer->column_int64(0) == 1);
    {
      // Same SQL while the outer statement is mid-iteration: must not share its cursor.
      auto inner = db->prepare(kSelect);
      REQUIRE(inner.ok());
      REQUIRE(*inner->step() == true);
      CHECK(inner->column_int64(0) == 1);
    }
    REQUIRE(*outer->step() == true);
    CHECK(outer->column_int64(0) == 2);
  }  // abandoned after two rows: returned to the cache reset
  auto again = db->prepare(kSelect);
  REQUIRE(again.ok());
  REQUIRE(*again->step() == true);
  CHECK(again->column_int64(0) == 1);
}

TEST_CASE("sqlite: bindings do not leak from one use of a cached statement to the next") {
  test::TempDir dir;
  auto db = store::Db::open(dir.path() + "/t.db");
  REQUIRE(db.ok());
  REQUIRE(db->exec("CREATE TABLE t (x INTEGER)").ok());
  {
    auto ins = db->prepare("INSERT INTO t VALUES (?)");
    REQUIRE(ins.ok());
    ins->bind_int64(1, 7);
    REQUIRE(ins->step().ok());
  }
  {
    auto ins = db->prepare("INSERT INTO t VALUES (?)");
    REQUIRE(ins.ok());
    REQUIRE(ins->step().ok());  // unbound: NULL, not the 7 of the previous use
  }
  auto st = db->prepare("SELECT COUNT(*) FROM t WHERE x IS NULL");
  REQUIRE(st.ok());
  REQUIRE(*st->step() == true);
  CHECK(st->column_int64(0) == 1);
}

TEST_CASE("sqlite: a statement that fails to prepare is an error every time - not cached") {
  test::TempDir dir;
  auto db = store::Db::open(dir.path() + "/t.db");
  REQUIRE(db.ok());
  for (int i = 0; i < 2; ++i) {
    auto st = db->prepare("SELECT nope FROM missing");
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().message().find("missing") != std::string::npos);
  }
}
