// Disk faults (SECURITY.md §8 #27, #28): a full or read-only filesystem (a small tmpfs the test
// mounts and always unmounts), EIO at write and fsync (the FUSE fault injector,
// tests/support/faultfs.h): nothing is renamed after a failure, the old file stays, no temp remains.
#include <doctest/doctest.h>

#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>

#include "lib/apply/apply.h"
#include "tests/support/faultfs.h"
#include "tests/support/tmpdir.h"

using namespace syncd;
using namespace syncd::apply;

namespace {

struct SmallFs {
  test::TempDir t{"enospc"};
  std::string mnt = t / "mnt";
  bool mounted = false;
  SmallFs() {
    test::require_root();
    ::mkdir(mnt.c_str(), 0755);
    REQUIRE_MESSAGE(::mount("syncd-test", mnt.c_str(), "tmpfs", 0, "size=256k,mode=0755") == 0,
                    "mount tmpfs: " << std::strerror(errno));
    mounted = true;
  }
  ~SmallFs() {
    if (mounted) ::umount2(mnt.c_str(), MNT_DETACH);
  }
};

struct FaultyTree {
  test::TempDir t{"eio"};
  std::string backing = t / "backing";
  std::string mnt = t / "mnt";
  std::unique_ptr<test::FaultFs> fs;
  FaultyTree() {
    test::require_root();
    ::mkdir(backing.c_str(), 0755);
    fs = std::make_unique<test::FaultFs>(backing, mnt, t.path());
  }
  ~FaultyTree() { fs.reset(); }  // unmounted before the TempDir goes
  // Names in the backing directory that are syncd temp files.
  std::vector<std::string> temps() const {
    std::vector<std::string> v;
    for (const auto& n : test::list_dir(backing)) {
      if (n.rfind(".syncd.", 0) == 0) v.push_back(n);
    }
    return v;
  }
};

ContentWriter writer_of(const Bytes& b) {
  return [&b](delta::OutputSink& out) { return out.write(b); };
}

Bytes bytes_of(std::string_view s) { return Bytes(s.begin(), s.end()); }

Attrs file_attrs(uint64_t size) {
  Attrs a;
  a.mode = 0644;
  a.mtime_sec = 1;
  a.size = size;
  return a;
}

}  // namespace

TEST_SUITE("apply.faults") {
  TEST_CASE("ENOSPC: the old file stays intact - no temp file remains - the error names path and errno") {
    SmallFs fs;
    test::write_file(fs.mnt + "/ca.key", "old key");
    auto root = Root::open(fs.mnt);
    REQUIRE(root.ok());
    Applier ap(*root);
    std::mt19937_64 rng(1);
    const Bytes big = test::random_bytes(rng, 1 << 20);  // 1 MiB into a 256 KiB filesystem
    for (bool prealloc : {true, false}) {
      CAPTURE(prealloc);
      Attrs a = file_attrs(prealloc ? big.size() : 0);  // without size: fails during write()
      auto r = ap.write_file("ca.key", a, Expected::any(), codec::content_hash(big), writer_of(big));
      REQUIRE_FALSE(r.ok());
      CHECK(r.error().is_errno(ENOSPC));
      CHECK(r.error().cond() == Cond::needs_operator);
      CHECK(r.error().message().find("ca.key") != std::string::npos);
      CHECK(r.error().message().find("No space left on device") != std::string::npos);
      CHECK(test::read_file(fs.mnt + "/ca.key") == "old key");
      CHECK(test::list_dir(fs.mnt) == std::vector<std::string>{"ca.key"});
    }
    // After the failures, space was given back: a small write still works.
    const Bytes small(1000, 'k');
    CHECK(ap.write_file("ca.key", file_attrs(small.size()), Expected::any(), codec::content_hash(small),
                        writer_of(small)).ok());
  }

  TEST_CASE("ENOSPC when creating a directory or symlink leaves nothing half-made") {
    SmallFs fs;
    // Fill the filesystem.
    std::mt19937_64 rng(2);
    const Bytes filler = test::random_bytes(rng, 64 * 1024);
    for (int i = 0; i < 64; ++i) {
      std::FILE* fp = std::fopen((fs.mnt + "/fill" + std::to_string(i)).c_str(), "wb");
      if (!fp) break;
      size_t w = std::fwrite(filler.data(), 1, filler.size(), fp);
      std::fclose(fp);
      if (w < filler.size()) break;
    }
    auto root = Root::open(fs.mnt);
    REQUIRE(root.ok());
    Applier ap(*root);
    const Bytes data(50000, 'd');
    auto r = ap.write_file("new.pem", file_attrs(data.size()), Expected::absent(),
                           codec::content_hash(data), writer_of(data));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().is_errno(ENOSPC));
    CHECK_FALSE(test::exists(fs.mnt + "/new.pem"));
    for (const auto& n : test::list_dir(fs.mnt)) CHECK(n.rfind(".syncd.", 0) != 0);
  }

  TEST_CASE("EROFS: a read-only filesystem refuses cleanly and keeps the old file") {
    SmallFs fs;
    test::write_file(fs.mnt + "/crl.pem", "old crl");
    REQUIRE(::mount(nullptr, fs.mnt.c_str(), nullptr, MS_REMOUNT | MS_RDONLY, nullptr) == 0);
    auto root = Root::open(fs.mnt);
    REQUIRE(root.ok());
    Applier ap(*root);
    const Bytes data(100, 'n');
    auto r = ap.write_file("crl.pem", file_attrs(data.size()), Expected::any(), codec::content_hash(data),
                           writer_of(data));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().is_errno(EROFS));
    CHECK(r.error().message().find("crl.pem") != std::string::npos);
    CHECK(test::read_file(fs.mnt + "/crl.pem") == "old crl");
    CHECK_FALSE(ap.make_dir("d", file_attrs(0)).ok());
    CHECK_FALSE(ap.unlink("crl.pem", Expected::any()).ok());
    CHECK(test::read_file(fs.mnt + "/crl.pem") == "old crl");
  }
}

TEST_SUITE("apply.faults") {
TEST_CASE("EACCES: an unprivileged writer is refused cleanly and the old file is kept") {
  test::require_root();
  test::TempDir t("eacces");
  const std::string dir = t / "root";
  ::chmod(t.path().c_str(), 0755);  // mkdtemp made it 0700: let the unprivileged child reach root/
  ::mkdir(dir.c_str(), 0755);       // root-owned: others may not create entries here
  test::write_file(dir + "/cfg", "old");
  int pipefd[2];
  REQUIRE(::pipe(pipefd) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // Child: drop to nobody, then try to apply. Reports "errno|message" through the pipe.
    ::close(pipefd[0]);
    int code = 1;
    if (::setgid(65534) == 0 && ::setuid(65534) == 0) {
      auto root = Root::open(dir);
      if (root.ok()) {
        Options o;
        o.chown = false;
        Applier ap(*root, o);
        const Bytes data(10, 'x');
        auto r = ap.write_file("cfg", file_attrs(data.size()), Expected::any(), codec::content_hash(data),
                               writer_of(data));
        if (!r.ok()) {
          std::string msg = std::to_string(r.error().code.value()) + "|" + r.error().message();
          (void)!::write(pipefd[1], msg.data(), msg.size());
          code = 0;
        }
      }
    }
    ::_exit(code);
  }
  ::close(pipefd[1]);
  std::string got;
  char buf[512];
  for (ssize_t n; (n = ::read(pipefd[0], buf, sizeof buf)) > 0;) got.append(buf, static_cast<size_t>(n));
  ::close(pipefd[0]);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(got.rfind(std::to_string(EACCES) + "|", 0) == 0);
  CHECK(got.find("cfg") != std::string::npos);
  CHECK(got.find("Permission denied") != std::string::npos);
  CHECK(test::read_file(dir + "/cfg") == "old");
  CHECK(test::list_dir(dir) == std::vector<std::string>{"cfg"});
}
}  // TEST_SUITE

TEST_SUITE("apply.faults") {
  TEST_CASE("EIO at fsync: the temp is never renamed over the old file and is removed - the error names path and errno") {
    FaultyTree f;
    test::write_file(f.backing + "/ca.pem", "old cert");
    auto root = Root::open(f.mnt);
    REQUIRE(root.ok());
    CHECK_FALSE(root->syncfs_durable());  // FUSE: syncfs(2) does not reach the server
    Applier ap(*root);
    f.fs->fail("fsync", "EIO", "ca.pem");
    const Bytes body = bytes_of("new cert");
    auto r = ap.write_file("ca.pem", file_attrs(body.size()), Expected::any(), codec::content_hash(body), writer_of(body));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().is_errno(EIO));
    CHECK(r.error().message().find("ca.pem") != std::string::npos);
    CHECK(r.error().message().find("Input/output error") != std::string::npos);
    CHECK(f.fs->injected() >= 1);
    CHECK(test::read_file(f.backing + "/ca.pem") == "old cert");
    CHECK(f.temps().empty());
    // The disk recovers: the same write goes through.
    f.fs->clear();
    REQUIRE(ap.write_file("ca.pem", file_attrs(body.size()), Expected::any(), codec::content_hash(body), writer_of(body)).ok());
    CHECK(test::read_file(f.backing + "/ca.pem") == "new cert");
  }

  TEST_CASE("EIO at write: the old file stays - no temp remains") {
    FaultyTree f;
    test::write_file(f.backing + "/crl.pem", "old crl");
    auto root = Root::open(f.mnt);
    REQUIRE(root.ok());
    Applier ap(*root);
    f.fs->fail("write", "EIO", "crl.pem");
    const Bytes body(5000, 'c');
    auto r = ap.write_file("crl.pem", file_attrs(body.size()), Expected::any(), codec::content_hash(body), writer_of(body));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().is_errno(EIO));
    CHECK(test::read_file(f.backing + "/crl.pem") == "old crl");
    CHECK(f.temps().empty());
  }

  TEST_CASE("a batch where one file's fsync fails: that one keeps its old content - the others land") {
    FaultyTree f;
    test::write_file(f.backing + "/n3", "old 3");
    auto root = Root::open(f.mnt);
    REQUIRE(root.ok());
    Applier ap(*root);
    f.fs->fail("fsync", "EIO", "n3");  // a needle no temp name's random hex part can hold
    std::vector<Bytes> bodies;
    for (int i = 0; i < 10; ++i) bodies.push_back(bytes_of("new " + std::to_string(i)));
    std::vector<Applier::Staged> staged;
    for (int i = 0; i < 10; ++i) {  // more than a group: on FUSE each is still fsynced
      const Bytes& body = bodies[static_cast<size_t>(i)];
      auto st = ap.stage_file("n" + std::to_string(i), file_attrs(body.size()), Expected::any(),
                              codec::content_hash(body), writer_of(body));
      REQUIRE(st.ok());
      staged.push_back(std::move(*st));
    }
    auto results = ap.commit_staged(staged);
    REQUIRE(results.size() == 10);
    for (int i = 0; i < 10; ++i) {
      CAPTURE(i);
      const std::string path = f.backing + "/n" + std::to_string(i);
      if (i == 3) {
        REQUIRE_FALSE(results[3].ok());
        CHECK(results[3].error().is_errno(EIO));
        CHECK(test::read_file(path) == "old 3");
      } else {
        CHECK(results[static_cast<size_t>(i)].ok());
        CHECK(test::read_file(path) == "new " + std::to_string(i));
      }
    }
    CHECK(f.temps().empty());
  }
}
