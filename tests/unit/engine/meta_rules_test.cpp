#include "lib/engine/meta_rules.h"

#include <doctest/doctest.h>

namespace syncd::engine {
namespace {

protocol::FileMeta meta(protocol::FileType t, uint32_t mode, std::string user = "alice", uint32_t uid = 1000) {
  protocol::FileMeta m;
  m.path = "x";
  m.type = t;
  m.mode = mode;
  m.user = std::move(user);
  m.uid = uid;
  m.group = "staff";
  m.gid = 50;
  return m;
}

uint32_t chmod_of(const std::string& rule, protocol::FileType t, uint32_t mode) {
  auto r = MetaRules::parse({.chmod = rule});
  REQUIRE_MESSAGE(r.ok(), rule);
  auto m = meta(t, mode);
  r->apply(m);
  return m.mode;
}

}  // namespace

TEST_CASE("chmod: rsync's clauses, D/F prefixes, octal, X, s and t") {
  using T = protocol::FileType;
  CHECK(chmod_of("D2775,F664", T::dir, 0700) == 02775);
  CHECK(chmod_of("D2775,F664", T::file, 0600) == 0664);
  CHECK(chmod_of("Dg+s,ug+w,Fo-w,+X", T::dir, 0755) == 02775);
  CHECK(chmod_of("Dg+s,ug+w,Fo-w,+X", T::file, 0646) == 0664);  // no x bit: X adds none
  CHECK(chmod_of("Dg+s,ug+w,Fo-w,+X", T::file, 0744) == 0775);  // u+x present: X adds all
  CHECK(chmod_of("u=rwX,go=rX", T::file, 0600) == 0644);
  CHECK(chmod_of("u=rwX,go=rX", T::dir, 0700) == 0755);
  CHECK(chmod_of("go-rwx", T::file, 0777) == 0700);
  CHECK(chmod_of("u+s,+t", T::file, 0755) == 05755);
  CHECK(chmod_of("u+r-w", T::file, 0200) == 0400);
  CHECK(chmod_of("F600", T::symlink, 0777) == 0777);  // symlinks keep their mode
}

TEST_CASE("chmod: malformed clauses are errors that name the key and the clause") {
  for (const char* bad : {"u", "g?w", "u+q", "D8", "12345", "a+r,,", "Fz"}) {
    auto r = MetaRules::parse({.chmod = bad});
    REQUIRE_FALSE_MESSAGE(r.ok(), bad);
    CHECK(r.error().message().find("rsync.chmod") != std::string::npos);
  }
}

TEST_CASE("usermap/groupmap: names, wildcards, numbers and ranges, first match wins") {
  auto r = MetaRules::parse({.usermap = "0-99:root,alice:bob,a*:carol,*:2000", .groupmap = "staff:wheel,*:7"});
  REQUIRE(r.ok());
  auto m = meta(protocol::FileType::file, 0644, "alice", 1000);
  r->apply(m);
  CHECK(m.user == "bob");
  CHECK(m.group == "wheel");
  m = meta(protocol::FileType::file, 0644, "anna", 1001);
  r->apply(m);
  CHECK(m.user == "carol");
  m = meta(protocol::FileType::file, 0644, "", 42);  // no name on the source: the number matches
  r->apply(m);
  CHECK(m.user == "root");
  m = meta(protocol::FileType::file, 0644, "zed", 1500);
  m.group = "other";
  r->apply(m);
  CHECK(m.user.empty());
  CHECK(m.uid == 2000);
  CHECK(m.group.empty());
  CHECK(m.gid == 7);
  CHECK(m.mode == 0644);
}

TEST_CASE("chown sets every owner and/or group, tombstones are left alone") {
  auto r = MetaRules::parse({.chown = ":www-data"});
  REQUIRE(r.ok());
  auto m = meta(protocol::FileType::dir, 0755);
  r->apply(m);
  CHECK(m.user == "alice");
  CHECK(m.group == "www-data");
  auto t = meta(protocol::FileType::file, 0644);
  t.deleted = true;
  auto r2 = MetaRules::parse({.chown = "nobody:nogroup"});
  REQUIRE(r2.ok());
  r2->apply(t);
  CHECK(t.user == "alice");
  CHECK_FALSE(MetaRules::parse({.chown = "a:b", .usermap = "*:c"}).ok());
  CHECK_FALSE(MetaRules::parse({.usermap = "alice"}).ok());
  CHECK_FALSE(MetaRules::parse({.usermap = "9-1:root"}).ok());
  auto none = MetaRules::parse({});
  REQUIRE(none.ok());
  CHECK(none->empty());
}

}  // namespace syncd::engine
