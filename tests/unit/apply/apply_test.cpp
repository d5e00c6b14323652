#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <random>

#include "lib/apply/apply.h"
#include "lib/delta/delta.h"
#include "tests/support/tmpdir.h"

using namespace syncd;
using namespace syncd::apply;

namespace {

struct Fixture {
  test::TempDir t{"apply"};
  std::string root_path = t / "root";
  Root root;
  Fixture() : root(make()) {}
  Root make() {
    test::require_root();
    ::mkdir(root_path.c_str(), 0755);
    ::mkdir((t / "outside").c_str(), 0755);
    test::write_file(t / "outside/sentinel", "keep");
    auto r = Root::open(root_path);
    REQUIRE(r.ok());
    return std::move(*r);
  }
  std::string p(const std::string& rel) const { return root_path + "/" + rel; }
  void outside_intact() {
    CHECK(test::read_file(t / "outside/sentinel") == "keep");
    CHECK(test::list_dir(t / "outside") == std::vector<std::string>{"sentinel"});
  }
  // No ".syncd.*" temp entries left anywhere under `dir`.
  void no_temps(const std::string& rel = "") {
    for (const auto& n : test::list_dir(rel.empty() ? root_path : p(rel))) {
      CHECK_MESSAGE(n.rfind(".syncd.", 0) != 0, "temp left behind: " << n);
    }
  }
};

ContentWriter bytes_writer(const std::string& s) {
  return [s](delta::OutputSink& out) { return out.write(as_bytes(s)); };
}

Attrs attrs(uint32_t mode, uint32_t uid, uint32_t gid, int64_t sec, uint32_t nsec, uint64_t size) {
  Attrs a;
  a.mode = mode;
  a.uid = uid;
  a.gid = gid;
  a.mtime_sec = sec;
  a.mtime_nsec = nsec;
  a.size = size;
  return a;
}

struct stat lst(const std::string& path) {
  struct stat st{};
  REQUIRE(::lstat(path.c_str(), &st) == 0);
  return st;
}

}  // namespace

TEST_SUITE("apply.times") {
  TEST_CASE("set_mtime gives a directory its time back - set_mtime = false leaves times alone") {
    Fixture f;
    Applier ap(f.root);
    auto d = ap.make_dir("d", attrs(0755, 0, 0, 1'000'000'000, 5, 0));
    REQUIRE(d.ok());
    CHECK(lst(f.p("d")).st_mtim.tv_sec == 1'000'000'000);
    REQUIRE(ap.write_file("d/f", attrs(0644, 0, 0, 1'200'000'000, 0, 1), Expected::absent(), codec::content_hash(as_bytes(std::string("x"))),
                          bytes_writer("x")).ok());
    CHECK(lst(f.p("d")).st_mtim.tv_sec != 1'000'000'000);  // the entry made inside moved it
    auto fp = ap.set_mtime("d", 1'000'000'000, 5);
    REQUIRE(fp.ok());
    CHECK(lst(f.p("d")).st_mtim.tv_sec == 1'000'000'000);
    CHECK(lst(f.p("d")).st_mtim.tv_nsec == 5);
    CHECK(fp->mtime_ns == 1'000'000'000'000'000'005);
    // Not followed: a symlink's own time is set, not its target's.
    REQUIRE(::symlink("d", f.p("l").c_str()) == 0);
    REQUIRE(ap.set_mtime("l", 1'100'000'000, 0).ok());
    CHECK(lst(f.p("l")).st_mtim.tv_sec == 1'100'000'000);
    CHECK(lst(f.p("d")).st_mtim.tv_sec == 1'000'000'000);
    CHECK_FALSE(ap.set_mtime("missing", 1, 0).ok());
    // rsync's --omit-dir-times / --omit-link-times: the applied version's time is not set.
    Attrs keep = attrs(0700, 0, 0, 1'000'000'000, 0, 0);
    keep.set_mtime = false;
    REQUIRE(ap.make_dir("d", keep).ok());
    CHECK(lst(f.p("d")).st_mode % 01000 == 0700);
    CHECK(lst(f.p("d")).st_mtim.tv_sec == 1'000'000'000);  // unchanged, not re-set
    REQUIRE(ap.make_dir("e", keep).ok());
    CHECK(lst(f.p("e")).st_mtim.tv_sec > 1'700'000'000);  // a new directory keeps "now"
    REQUIRE(ap.make_symlink("s", "d", keep, Expected::absent()).ok());
    CHECK(lst(f.p("s")).st_mtim.tv_sec > 1'700'000'000);
    f.outside_intact();
  }
}

TEST_SUITE("apply.special") {
  TEST_CASE("devices - FIFOs - sockets: made at a temp name with owner - mode - mtime - renamed into place") {
    Fixture f;
    Applier ap(f.root);
    Attrs a = attrs(0640, 1234, 5678, 1'000'000'000, 7, 0);
    auto c = ap.make_special("null", S_IFCHR, ::makedev(1, 3), a, Expected::absent());
    REQUIRE_MESSAGE(c.ok(), c.error().message());
    struct stat st = lst(f.p("null"));
    CHECK(S_ISCHR(st.st_mode));
    CHECK(st.st_rdev == ::makedev(1, 3));
    CHECK((st.st_mode & 07777) == 0640);
    CHECK(st.st_uid == 1234);
    CHECK(st.st_gid == 5678);
    CHECK(st.st_mtim.tv_sec == 1'000'000'000);
    CHECK(st.st_mtim.tv_nsec == 7);
    for (const mode_t t : {S_IFIFO, S_IFSOCK, S_IFBLK}) {
      const std::string name = "s" + std::to_string(t);
      REQUIRE(ap.make_special(name, t, ::makedev(7, 9), a, Expected::absent()).ok());
      CHECK((lst(f.p(name)).st_mode & S_IFMT) == t);
    }
    // Replacing: another device number at the same name, atomically; the guard still applies.
    REQUIRE(ap.make_special("null", S_IFCHR, ::makedev(1, 5), a, Expected::any()).ok());
    CHECK(lst(f.p("null")).st_rdev == ::makedev(1, 5));
    CHECK_FALSE(ap.make_special("null", S_IFCHR, ::makedev(1, 3), a, Expected::absent()).ok());
    CHECK_FALSE(ap.make_special("file", S_IFREG, 0, a, Expected::absent()).ok());
    // Metadata only: chmod/chown/mtime by name, never following.
    Attrs b = attrs(0600, 0, 0, 1'100'000'000, 0, 0);
    REQUIRE(ap.set_meta("s" + std::to_string(S_IFIFO), b, Expected::any()).ok());
    st = lst(f.p("s" + std::to_string(S_IFIFO)));
    CHECK((st.st_mode & 07777) == 0600);
    CHECK(st.st_uid == 0);
    CHECK(st.st_mtim.tv_sec == 1'100'000'000);
    f.no_temps();
    f.outside_intact();
  }
}

TEST_SUITE("apply.sparse") {
  TEST_CASE("sparse: aligned zero blocks become holes - the bytes are the same - odd chunk sizes too") {
    Fixture f;
    // 1 MiB: data, 512 KiB of zeros, data, and 96 KiB of zeros at the end.
    std::string content(1 << 20, '\0');
    for (size_t i = 0; i < 200'000; ++i) content[i] = static_cast<char>('a' + i % 26);
    for (size_t i = 200'000 + 512 * 1024; i < content.size() - 96 * 1024; ++i) content[i] = static_cast<char>('A' + i % 7);
    const auto sha = codec::content_hash(as_bytes(content));
    for (const bool sparse : {false, true}) {
      CAPTURE(sparse);
      Options o;
      o.sparse = sparse;
      o.fsync = false;
      Applier ap(f.root, o);
      const std::string name = sparse ? "sparse" : "dense";
      auto done = ap.write_file(name, attrs(0644, 0, 0, 1'000'000'000, 0, content.size()), Expected::absent(), sha,
                                [&](delta::OutputSink& out) -> Status {
                                  // 1000-byte chunks: no write is aligned to a block
                                  for (size_t at = 0; at < content.size(); at += 1000) {
                                    const size_t n = std::min<size_t>(1000, content.size() - at);
                                    SYNCD_TRY(out.write(as_bytes(std::string_view(content).substr(at, n))));
                                  }
                                  return {};
                                });
      REQUIRE_MESSAGE(done.ok(), done.error().message());
      CHECK(test::read_file(f.p(name)) == content);
      const struct stat st = lst(f.p(name));
      CHECK(st.st_size == static_cast<off_t>(content.size()));
      const uint64_t allocated = static_cast<uint64_t>(st.st_blocks) * 512;
      if (sparse) {
        CHECK(allocated <= content.size() - 512 * 1024);  // the holes hold no blocks
      } else {
        CHECK(allocated >= content.size());
      }
    }
    f.no_temps();
  }
}

TEST_SUITE("apply.file") {
  TEST_CASE("a file lands with content - owner - group - mode incl. setgid - and nanosecond mtime") {
    Fixture f;
    Applier ap(f.root);
    const std::string content = "-----BEGIN CERTIFICATE-----\nabc\n";
    auto fp = ap.write_file("cert.pem", attrs(02640, 12345, 54321, 1'700'000'000, 123'456'789, content.size()),
                            Expected::absent(), codec::content_hash(as_bytes(content)),
                            bytes_writer(content));
    REQUIRE_MESSAGE(fp.ok(), fp.error().message());
    CHECK(test::read_file(f.p("cert.pem")) == content);
    struct stat st = lst(f.p("cert.pem"));
    CHECK((st.st_mode & 07777) == 02640);
    CHECK(st.st_uid == 12345);
    CHECK(st.st_gid == 54321);
    CHECK(st.st_mtim.tv_sec == 1'700'000'000);
    CHECK(st.st_mtim.tv_nsec == 123'456'789);
    CHECK(fp->ino == st.st_ino);
    CHECK(fp->size == content.size());
    // Just written (ctime is now, whatever mtime says): a local write in the same clock tick
    // must not pass for ours, so the fingerprint is racy (fs/fingerprint.h).
    CHECK(fp->racy);
    f.no_temps();
  }

  TEST_CASE("owner and group by name win over numeric ids - unknown names fall back to the id") {
    Fixture f;
    Applier ap(f.root);
    Attrs a = attrs(0644, 4242, 4242, 1, 0, 1);
    a.user = "nobody";
    a.group = "no-such-group-here";
    REQUIRE(ap.write_file("n", a, Expected::any(), codec::content_hash(as_bytes("x")), bytes_writer("x")).ok());
    struct stat st = lst(f.p("n"));
    CHECK(st.st_uid == resolve_uid("nobody", 1));
    CHECK(st.st_uid != 4242);
    CHECK(st.st_gid == 4242);
  }

  TEST_CASE("special bits are stripped when the option says so") {
    Fixture f;
    Options o;
    o.keep_special_bits = false;
    Applier ap(f.root, o);
    REQUIRE(ap.write_file("s", attrs(04755, 0, 0, 1, 0, 1), Expected::any(),
                          codec::content_hash(as_bytes("x")), bytes_writer("x")).ok());
    CHECK((lst(f.p("s")).st_mode & 07777) == 0755);
  }

  TEST_CASE("SHA-256 mismatch: old file intact - no temp file - verify_failed") {
    Fixture f;
    test::write_file(f.p("a"), "old");
    Applier ap(f.root);
    auto r = ap.write_file("a", attrs(0644, 0, 0, 1, 0, 3), Expected::any(),
                           codec::content_hash(as_bytes("new")), bytes_writer("bad"));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().is(errc::verify_failed));
    CHECK(test::read_file(f.p("a")) == "old");
    f.no_temps();
  }

  TEST_CASE("conflict guard: a target changed since it was indexed is not overwritten") {
    Fixture f;
    test::write_file(f.p("a"), "v1");
    Applier ap(f.root);
    auto fp = ap.stat("a");
    REQUIRE(fp.ok());
    test::write_file(f.p("a"), "local edit");  // slips in after the index looked
    auto r = ap.write_file("a", attrs(0644, 0, 0, 1, 0, 2), Expected::match(*fp),
                           codec::content_hash(as_bytes("v2")), bytes_writer("v2"));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().is(errc::unexpected_target));
    CHECK(test::read_file(f.p("a")) == "local edit");
    f.no_temps();
    // Expected absent but present.
    auto r2 = ap.write_file("a", attrs(0644, 0, 0, 1, 0, 2), Expected::absent(),
                            codec::content_hash(as_bytes("v2")), bytes_writer("v2"));
    REQUIRE_FALSE(r2.ok());
    CHECK(r2.error().is(errc::unexpected_target));
    // With the current fingerprint it goes through.
    auto now = ap.stat("a");
    REQUIRE(now.ok());
    CHECK(ap.write_file("a", attrs(0644, 0, 0, 1, 0, 2), Expected::match(*now),
                        codec::content_hash(as_bytes("v2")), bytes_writer("v2")).ok());
    CHECK(test::read_file(f.p("a")) == "v2");
  }

  TEST_CASE("a delta is patched from the old file into a new one - atomically") {
    Fixture f;
    std::mt19937_64 rng(3);
    Bytes old_bytes = test::random_bytes(rng, 200000);
    Bytes new_bytes = old_bytes;
    new_bytes[100000] ^= 0xFF;
    new_bytes.insert(new_bytes.begin() + 5000, 77);
    test::write_file(f.p("big.bin"), old_bytes);
    auto sig = delta::sign(old_bytes, 700, codec::HashKey::random());
    Bytes d = delta::make_delta(sig, new_bytes);
    Applier ap(f.root);
    UniqueFd base(::open(f.p("big.bin").c_str(), O_RDONLY | O_CLOEXEC));
    REQUIRE(base);
    auto r = ap.write_file("big.bin", attrs(0600, 0, 0, 5, 0, new_bytes.size()), Expected::any(),
                           codec::content_hash(new_bytes), [&](delta::OutputSink& out) -> Status {
                             delta::FdBaseReader br(base.get(), old_bytes.size());
                             delta::Patcher p(br, out, new_bytes.size());
                             SYNCD_TRY(p.feed(d));
                             SYNCD_TRY(p.finish());
                             return {};
                           });
    REQUIRE_MESSAGE(r.ok(), r.error().message());
    CHECK(test::read_file(f.p("big.bin")) == std::string(new_bytes.begin(), new_bytes.end()));
    CHECK(d.size() < 3000);
  }

  TEST_CASE("a file is never written through a symlink: the link itself is replaced") {
    Fixture f;
    REQUIRE(::symlink((f.t / "outside/sentinel").c_str(), f.p("link").c_str()) == 0);
    Applier ap(f.root);
    REQUIRE(ap.write_file("link", attrs(0644, 0, 0, 1, 0, 3), Expected::any(),
                          codec::content_hash(as_bytes("new")), bytes_writer("new")).ok());
    CHECK(S_ISREG(lst(f.p("link")).st_mode));
    f.outside_intact();
  }

  TEST_CASE("hostile paths: nothing created anywhere") {
    Fixture f;
    REQUIRE(::symlink((f.t / "outside").c_str(), f.p("d").c_str()) == 0);
    Applier ap(f.root);
    for (const char* p : {"../x", "/etc/passwd", "a/../../b", "d/cron.d", "d/new", ".syncd.x.1.tmp"}) {
      CAPTURE(p);
      auto r = ap.write_file(p, attrs(0644, 0, 0, 1, 0, 1), Expected::any(),
                             codec::content_hash(as_bytes("x")), bytes_writer("x"));
      REQUIRE_FALSE(r.ok());
      CHECK_MESSAGE((r.error().is(errc::path_rejected) || r.error().is(errc::path_escape)),
                    r.error().message());
      CHECK_FALSE(ap.make_dir(p, attrs(0755, 0, 0, 1, 0, 0)).ok());
      CHECK_FALSE(ap.unlink(p, Expected::any()).ok());
      CHECK_FALSE(ap.set_meta(p, attrs(0777, 0, 0, 1, 0, 0), Expected::any()).ok());
    }
    f.outside_intact();
    CHECK((lst(f.t / "outside").st_mode & 0777) == 0755);
    CHECK(test::list_dir(f.root_path) == std::vector<std::string>{"d"});
  }

  TEST_CASE("a path component that is a file: ENOTDIR error naming the path - nothing written") {
    Fixture f;
    test::write_file(f.p("plain"), "p");
    Applier ap(f.root);
    auto r = ap.write_file("plain/x", attrs(0644, 0, 0, 1, 0, 1), Expected::any(),
                           codec::content_hash(as_bytes("x")), bytes_writer("x"));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().is_errno(ENOTDIR));
    CHECK(r.error().message().find("plain/x") != std::string::npos);
    CHECK(r.error().message().find("Not a directory") != std::string::npos);
    CHECK(test::read_file(f.p("plain")) == "p");
  }

  TEST_CASE("long names get a hashed temp name within 255 bytes") {
    std::string leaf(255, 'n');
    std::string tmp = temp_name_for(leaf);
    CHECK(tmp.size() <= 255);
    CHECK(tmp.rfind(".syncd.", 0) == 0);
    CHECK(tmp.size() > 4);
    CHECK(tmp.substr(tmp.size() - 4) == ".tmp");
    CHECK(temp_name_for("a") != temp_name_for("a"));
    Fixture f;
    Applier ap(f.root);
    CHECK(ap.write_file(leaf, attrs(0644, 0, 0, 1, 0, 1), Expected::absent(),
                        codec::content_hash(as_bytes("x")), bytes_writer("x")).ok());
    CHECK(test::read_file(f.p(leaf)) == "x");
  }
}

TEST_SUITE("apply.dirs_links") {
  TEST_CASE("directories: mkdir with setgid and sticky bits - owner - mtime - idempotent") {
    Fixture f;
    Applier ap(f.root);
    auto r = ap.make_dir("shared", attrs(03775, 1000, 2000, 1'600'000'000, 999'999'999, 0));
    REQUIRE_MESSAGE(r.ok(), r.error().message());
    struct stat st = lst(f.p("shared"));
    CHECK(S_ISDIR(st.st_mode));
    CHECK((st.st_mode & 07777) == 03775);
    CHECK(st.st_uid == 1000);
    CHECK(st.st_gid == 2000);
    CHECK(st.st_mtim.tv_nsec == 999'999'999);
    CHECK(ap.make_dir("shared", attrs(0700, 0, 0, 5, 0, 0)).ok());
    CHECK((lst(f.p("shared")).st_mode & 07777) == 0700);
    CHECK(ap.make_dir("shared/deep", attrs(0755, 0, 0, 5, 0, 0)).ok());
    CHECK_FALSE(ap.make_dir("missing/deep", attrs(0755, 0, 0, 5, 0, 0)).ok());
  }

  TEST_CASE("symlinks are created and changed without ever following them") {
    Fixture f;
    Applier ap(f.root);
    const std::string target = f.t / "outside/sentinel";  // absolute and escaping: stored, not followed
    auto r = ap.make_symlink("l", target, attrs(0777, 1234, 4321, 1'000'000, 5, 0), Expected::absent());
    REQUIRE_MESSAGE(r.ok(), r.error().message());
    struct stat st = lst(f.p("l"));
    CHECK(S_ISLNK(st.st_mode));
    CHECK(st.st_uid == 1234);
    CHECK(st.st_gid == 4321);
    CHECK(st.st_mtim.tv_sec == 1'000'000);
    CHECK(st.st_mtim.tv_nsec == 5);
    char buf[4096];
    ssize_t n = ::readlink(f.p("l").c_str(), buf, sizeof buf);
    CHECK(std::string(buf, static_cast<size_t>(n)) == target);
    // Metadata changes act on the link, not its target.
    struct stat before = lst(target);
    REQUIRE(ap.set_meta("l", attrs(0600, 7, 7, 2'000'000, 0, 0), Expected::any()).ok());
    struct stat after = lst(target);
    CHECK(after.st_uid == before.st_uid);
    CHECK(after.st_mode == before.st_mode);
    CHECK(after.st_mtim.tv_sec == before.st_mtim.tv_sec);
    CHECK(lst(f.p("l")).st_uid == 7);
    // Replace the link atomically.
    REQUIRE(ap.make_symlink("l", "relative/target", attrs(0777, 0, 0, 1, 0, 0), Expected::any()).ok());
    n = ::readlink(f.p("l").c_str(), buf, sizeof buf);
    CHECK(std::string(buf, static_cast<size_t>(n)) == "relative/target");
    CHECK_FALSE(ap.make_symlink("l2", "", attrs(0777, 0, 0, 1, 0, 0), Expected::any()).ok());
    f.outside_intact();
    f.no_temps();
  }

  TEST_CASE("set_meta on a file changes owner - mode and mtime - and honours the guard") {
    Fixture f;
    test::write_file(f.p("m"), "data");
    Applier ap(f.root);
    auto fp = ap.stat("m");
    REQUIRE(fp.ok());
    REQUIRE(ap.set_meta("m", attrs(01750, 11, 22, 42, 7, 0), Expected::match(*fp)).ok());
    struct stat st = lst(f.p("m"));
    CHECK((st.st_mode & 07777) == 01750);
    CHECK(st.st_uid == 11);
    CHECK(st.st_gid == 22);
    CHECK(st.st_mtim.tv_sec == 42);
    CHECK(test::read_file(f.p("m")) == "data");
    // The old fingerprint is stale now (ctime changed).
    CHECK(ap.set_meta("m", attrs(0644, 0, 0, 1, 0, 0), Expected::match(*fp)).error().is(errc::unexpected_target));
  }

  TEST_CASE("unlink - rename and recursive rmdir stay inside the root") {
    Fixture f;
    Applier ap(f.root);
    ::mkdir(f.p("tree").c_str(), 0755);
    ::mkdir(f.p("tree/a").c_str(), 0755);
    test::write_file(f.p("tree/a/x"), "x");
    test::write_file(f.p("tree/y"), "y");
    REQUIRE(::symlink((f.t / "outside").c_str(), f.p("tree/a/out").c_str()) == 0);
    auto r = ap.rename("tree/y", "moved", Expected::any(), Expected::absent());
    REQUIRE(r.ok());
    CHECK(test::read_file(f.p("moved")) == "y");
    CHECK_FALSE(test::exists(f.p("tree/y")));
    // Rename onto an existing name when absence was expected: refused.
    test::write_file(f.p("other"), "o");
    CHECK(ap.rename("moved", "other", Expected::any(), Expected::absent()).error().is(errc::unexpected_target));
    CHECK(test::read_file(f.p("other")) == "o");
    CHECK(ap.unlink("moved", Expected::any()).ok());
    CHECK_FALSE(test::exists(f.p("moved")));
    CHECK_FALSE(ap.unlink("tree", Expected::any()).ok());  // a directory is not unlinked
    CHECK_FALSE(ap.remove_dir("tree", false).ok());         // not empty
    REQUIRE(ap.remove_dir("tree", true).ok());
    CHECK_FALSE(test::exists(f.p("tree")));
    f.outside_intact();
  }
}

TEST_SUITE("apply.batch") {
  TEST_CASE("staged files land together - a failed guard keeps its old target - temps are gone") {
    Fixture f;
    Applier ap(f.root);
    test::write_file(f.p("keep"), "local");
    std::vector<Applier::Staged> staged;
    for (int i = 0; i < 50; ++i) {
      const std::string body = "file " + std::to_string(i);
      auto st = ap.stage_file("f" + std::to_string(i), attrs(0640, 0, 0, 7, 7, body.size()),
                              Expected::absent(), codec::content_hash(as_bytes(body)), bytes_writer(body));
      REQUIRE(st.ok());
      staged.push_back(std::move(*st));
    }
    // Expected absent, but "keep" exists: this one must fail and leave "local" in place.
    auto bad = ap.stage_file("keep", attrs(0644, 0, 0, 1, 0, 3), Expected::absent(),
                             codec::content_hash(as_bytes("new")), bytes_writer("new"));
    REQUIRE(bad.ok());
    staged.push_back(std::move(*bad));
    // Nothing is visible before the commit.
    CHECK_FALSE(test::exists(f.p("f0")));
    auto results = ap.commit_staged(staged);
    REQUIRE(results.size() == 51);
    for (int i = 0; i < 50; ++i) {
      REQUIRE(results[static_cast<size_t>(i)].ok());
      CHECK(test::read_file(f.p("f" + std::to_string(i))) == "file " + std::to_string(i));
      CHECK((lst(f.p("f" + std::to_string(i))).st_mode & 07777) == 0640);
    }
    REQUIRE_FALSE(results[50].ok());
    CHECK(results[50].error().is(errc::unexpected_target));
    CHECK(test::read_file(f.p("keep")) == "local");
    f.no_temps();
  }

  TEST_CASE("a staged write with the wrong SHA-256 fails at staging and leaves nothing") {
    Fixture f;
    Applier ap(f.root);
    auto st = ap.stage_file("x", attrs(0644, 0, 0, 1, 0, 3), Expected::any(),
                            codec::content_hash(as_bytes("abc")), bytes_writer("xyz"));
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().is(errc::verify_failed));
    f.no_temps();
    CHECK_FALSE(test::exists(f.p("x")));
  }
}
