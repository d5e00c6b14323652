#include "lib/apply/backup.h"

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/support/tmpdir.h"

using namespace syncd;

namespace {

ino_t inode(const std::string& p) {
  struct stat st{};
  return ::lstat(p.c_str(), &st) == 0 ? st.st_ino : 0;
}

}  // namespace

TEST_SUITE("apply.backup") {
  TEST_CASE("beside the file: NAME~ by default, an older backup replaced, directories never") {
    test::TempDir t("backup");
    test::write_file(t / "a", "one");
    ::mkdir((t / "d").c_str(), 0755);
    auto root = fs::Root::open(t.path());
    REQUIRE(root.ok());
    auto b = apply::Backup::open(*root, {.enabled = true, .dir = "", .suffix = std::nullopt});
    REQUIRE(b.ok());
    REQUIRE(b->keep("a").ok());
    CHECK(inode(t / "a~") == inode(t / "a"));  // a hard link: free and never torn
    test::write_file(t / "a.new", "two");
    REQUIRE(::rename((t / "a.new").c_str(), (t / "a").c_str()) == 0);
    REQUIRE(b->keep("a").ok());
    CHECK(test::read_file(t / "a~") == "two");
    REQUIRE(b->keep("d").ok());
    CHECK_FALSE(test::exists(t / "d~"));
    REQUIRE(b->keep("missing").ok());
    CHECK(b->is_backup("x/a~"));
    CHECK_FALSE(b->is_backup("x/a"));
    CHECK_FALSE(apply::Backup::open(*root, {.enabled = true, .dir = "", .suffix = ""}).ok());
  }

  TEST_CASE("backup_dir inside the target (relative) keeps the path and is protected - outside it too") {
    test::TempDir t("backup");
    ::mkdir((t / "tree").c_str(), 0755);
    ::mkdir((t / "tree/sub").c_str(), 0755);
    test::write_file(t / "tree/sub/a", "one");
    auto root = fs::Root::open(t / "tree");
    REQUIRE(root.ok());
    auto in = apply::Backup::open(*root, {.enabled = true, .dir = "old/versions", .suffix = std::nullopt});
    REQUIRE(in.ok());
    REQUIRE(in->keep("sub/a").ok());
    CHECK(test::read_file(t / "tree/old/versions/sub/a") == "one");  // suffix "" with a dir
    CHECK(in->is_backup("old/versions"));
    CHECK(in->is_backup("old/versions/sub/a"));
    CHECK_FALSE(in->is_backup("old/versionsX"));
    CHECK_FALSE(in->is_backup("sub/a"));
    CHECK_FALSE(apply::Backup::open(*root, {.enabled = true, .dir = "../escape", .suffix = std::nullopt}).ok());
    auto out = apply::Backup::open(*root, {.enabled = true, .dir = t / "elsewhere", .suffix = ".1"});
    REQUIRE(out.ok());
    REQUIRE(out->keep("sub/a").ok());
    CHECK(test::read_file(t / "elsewhere/sub/a.1") == "one");
    CHECK_FALSE(out->is_backup("sub/a.1"));
  }

  TEST_CASE("a backup directory on another filesystem gets a copy with owner, mode and mtime") {
    test::require_root();
    struct stat shm{}, tmp{};
    test::TempDir t("backup");
    if (::stat("/dev/shm", &shm) != 0 || ::stat(t.path().c_str(), &tmp) != 0 || shm.st_dev == tmp.st_dev) {
      MESSAGE("no second filesystem at /dev/shm; the EXDEV path is not exercised");
      return;
    }
    test::write_file(t / "a", "content");
    REQUIRE(::chown((t / "a").c_str(), 1234, 5678) == 0);
    REQUIRE(::chmod((t / "a").c_str(), 0640) == 0);
    auto root = fs::Root::open(t.path());
    REQUIRE(root.ok());
    test::TempDir shm_dir("backup");  // its name only; the directory used is under /dev/shm
    const std::string dir = "/dev/shm/" + shm_dir.path().substr(shm_dir.path().rfind('/') + 1);
    auto b = apply::Backup::open(*root, {.enabled = true, .dir = dir, .suffix = std::nullopt});
    REQUIRE(b.ok());
    auto kept = b->keep("a");
    REQUIRE_MESSAGE(kept.ok(), kept.error().message());
    struct stat st{}, orig{};
    REQUIRE(::stat((dir + "/a").c_str(), &st) == 0);
    REQUIRE(::stat((t / "a").c_str(), &orig) == 0);
    CHECK(test::read_file(dir + "/a") == "content");
    CHECK(st.st_uid == 1234);
    CHECK(st.st_gid == 5678);
    CHECK((st.st_mode & 07777) == 0640);
    CHECK(st.st_mtim.tv_sec == orig.st_mtim.tv_sec);
    CHECK(st.st_mtim.tv_nsec == orig.st_mtim.tv_nsec);
    CHECK(test::run("rm -rf '" + dir + "'") == 0);
  }
}
