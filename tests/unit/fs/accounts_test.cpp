#include "lib/fs/accounts.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <string>

#include "lib/base/scope_guard.h"
#include "tests/support/tmpdir.h"

using namespace syncd;

TEST_CASE("accounts: known ids and names both ways") {
  CHECK(fs::user_name(0) == "root");
  CHECK(fs::group_name(0) == "root");
  CHECK(fs::uid_of("root") == 0u);
  CHECK(fs::gid_of("root") == 0u);
  CHECK(fs::uid_of("nobody").has_value());
  CHECK(fs::user_name(*fs::uid_of("nobody")) == "nobody");
  // Repeated lookups come from the cache and still agree.
  for (int i = 0; i < 100; ++i) CHECK(fs::uid_of("root") == 0u);
}

TEST_CASE("accounts: unknown names and ids") {
  CHECK_FALSE(fs::uid_of("syncd-no-such-user-x").has_value());
  CHECK_FALSE(fs::gid_of("syncd-no-such-group-x").has_value());
  CHECK(fs::user_name(3999999999u).empty());
  CHECK(fs::group_name(3999999999u).empty());
}

TEST_CASE("accounts: an account added after a miss is seen at once") {
  test::require_root();
  const std::string name = "syncdtst" + std::to_string(::getpid() % 100000);
  (void)test::run("userdel " + name + " 2>/dev/null; groupdel " + name + " 2>/dev/null");
  // The miss is cached first; the database edit must drop it.
  REQUIRE_FALSE(fs::uid_of(name).has_value());
  REQUIRE_FALSE(fs::gid_of(name).has_value());
  REQUIRE(test::run("groupadd -g 3777 " + name + " && useradd -M -N -g 3777 -u 3777 " + name) == 0);
  auto cleanup = ScopeGuard([&]() noexcept { (void)test::run("userdel " + name + "; groupdel " + name); });
  CHECK(fs::uid_of(name) == 3777u);
  CHECK(fs::gid_of(name) == 3777u);
  CHECK(fs::user_name(3777) == name);
  CHECK(fs::group_name(3777) == name);
}
