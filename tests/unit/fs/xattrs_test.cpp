#include "lib/fs/xattrs.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>

#include "lib/base/unique_fd.h"
#include "tests/support/tmpdir.h"

using namespace syncd;

namespace {

UniqueFd open_file(const std::string& path) {
  test::write_file(path, "x");
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  REQUIRE(fd);
  return fd;
}

void set(int fd, const std::string& name, const std::string& value) {
  REQUIRE_MESSAGE(::fsetxattr(fd, name.c_str(), value.data(), value.size(), 0) == 0, name << ": " << std::strerror(errno));
}

// A POSIX ACL in the kernel's xattr form: user::rw- user:1234:r-- group::r-- mask::r-- other::---.
std::string acl_bytes() {
  std::string b;
  auto u16 = [&](uint16_t v) { b.push_back(char(v & 0xff)); b.push_back(char(v >> 8)); };
  auto u32 = [&](uint32_t v) { for (int i = 0; i < 4; ++i) b.push_back(char((v >> (8 * i)) & 0xff)); };
  u32(2);
  struct Entry {
    uint16_t tag, perm;
    uint32_t id;
  };
  for (const Entry& e : {Entry{0x01, 6, ~0u}, Entry{0x02, 4, 1234u}, Entry{0x04, 4, ~0u}, Entry{0x10, 4, ~0u}, Entry{0x20, 0, ~0u}}) {
    u16(e.tag);
    u16(e.perm);
    u32(e.id);
  }
  return b;
}

std::vector<std::string> names_of(const std::vector<protocol::Xattr>& xs) {
  std::vector<std::string> n;
  for (const auto& x : xs) n.push_back(x.name);
  return n;
}

}  // namespace

TEST_SUITE("fs.xattrs") {
  TEST_CASE("only the configured names are read, sorted, trusted.* and unconfigured ACLs are not") {
    test::require_root();
    test::TempDir t("xattr");
    auto fd = open_file(t / "f");
    set(fd.get(), "user.b", "2");
    set(fd.get(), "user.a", "1");
    set(fd.get(), "trusted.node-local", "keep");
    set(fd.get(), "system.posix_acl_access", acl_bytes());
    auto user = fs::read_xattrs(fd.get(), {.user = true, .acls = false}, "f");
    REQUIRE(user.ok());
    CHECK(names_of(*user) == std::vector<std::string>{"user.a", "user.b"});
    CHECK((*user)[1].value == Bytes{'2'});
    auto both = fs::read_xattrs(fd.get(), {.user = true, .acls = true}, "f");
    REQUIRE(both.ok());
    CHECK(names_of(*both) == std::vector<std::string>{"system.posix_acl_access", "user.a", "user.b"});
    auto none = fs::read_xattrs(fd.get(), {}, "f");
    REQUIRE(none.ok());
    CHECK(none->empty());
  }

  TEST_CASE("write makes the covered names exactly the wanted ones and leaves the rest alone") {
    test::require_root();
    test::TempDir t("xattr");
    auto src = open_file(t / "src");
    set(src.get(), "user.a", "new");
    set(src.get(), "system.posix_acl_access", acl_bytes());
    const fs::XattrNames names{.user = true, .acls = true};
    auto want = fs::read_xattrs(src.get(), names, "src");
    REQUIRE(want.ok());
    auto dst = open_file(t / "dst");
    set(dst.get(), "user.a", "old");
    set(dst.get(), "user.stale", "gone after the write");
    set(dst.get(), "trusted.node-local", "keep");
    REQUIRE(fs::write_xattrs(dst.get(), *want, names, "dst").ok());
    auto got = fs::read_xattrs(dst.get(), names, "dst");
    REQUIRE(got.ok());
    CHECK(*got == *want);
    char v[16] = {};
    CHECK(::fgetxattr(dst.get(), "trusted.node-local", v, sizeof v) == 4);
    // A peer's name this node does not replicate is not written.
    REQUIRE(fs::write_xattrs(dst.get(), {{"user.only-user", Bytes{'1'}}}, {.user = false, .acls = true}, "dst").ok());
    CHECK(::fgetxattr(dst.get(), "user.only-user", v, sizeof v) < 0);
    CHECK(::fgetxattr(dst.get(), "user.a", v, sizeof v) == 3);  // user.* untouched by an acls-only write
  }

  TEST_CASE("more attributes than the protocol carries is a clear error naming the path") {
    test::require_root();
    test::TempDir t("xattr");
    auto fd = open_file(t / "many");
    for (int i = 0; i < 65; ++i) set(fd.get(), "user.n" + std::to_string(i), "v");
    auto r = fs::read_xattrs(fd.get(), {.user = true, .acls = false}, "dir/many");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().is(errc::limit_exceeded));
    CHECK(r.error().message().find("\"dir/many\": more than 64 xattrs") != std::string::npos);
  }
}
