// EIO from the filesystem (SECURITY.md §8 #28), through the FUSE fault injector
// (tests/support/faultfs.h): a failed write or fsync renames nothing, and in a batch only the
// file that failed is held back.
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <cerrno>
#include <string>
#include <vector>

#include "lib/apply/apply.h"
#include "tests/support/faultfs.h"
#include "tests/support/tmpdir.h"

using namespace syncd;
using namespace syncd::apply;

namespace {

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

ContentWriter writer_of(const std::string& s) {
  return [s](delta::OutputSink& out) { return out.write(as_bytes(s)); };
}

Attrs attrs_of(size_t size) {
  Attrs a;
  a.mode = 0640;
  a.mtime_sec = 1700000000;
  a.size = size;
  return a;
}

}  // namespace

TEST_SUITE("apply.faults") {
  TEST_CASE("EIO at fsync: the temp is never renamed over the old file and is removed - the error names path and errno") {
    FaultyTree f;
    test::write_file(f.backing + "/ca.pem", "old cert");
    auto root = Root::open(f.mnt);
    REQUIRE(root.ok());
    CHECK_FALSE(root->syncfs_durable());  // FUSE: syncfs(2) does not reach the server
    Applier ap(*root);
    f.fs->fail("fsync", "EIO", "ca.pem");
    const std::string body = "new cert";
    auto r = ap.write_file("ca.pem", attrs_of(body.size()), Expected::any(), codec::content_hash(as_bytes(body)),
                           writer_of(body));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().is_errno(EIO));
    CHECK(r.error().message().find("ca.pem") != std::string::npos);
    CHECK(r.error().message().find("Input/output error") != std::string::npos);
    CHECK(f.fs->injected() >= 1);
    CHECK(test::read_file(f.backing + "/ca.pem") == "old cert");
    CHECK(f.temps().empty());
    // The disk recovers: the same write goes through.
    f.fs->clear();
    REQUIRE(ap.write_file("ca.pem", attrs_of(body.size()), Expected::any(), codec::content_hash(as_bytes(body)),
                          writer_of(body)).ok());
    CHECK(test::read_file(f.backing + "/ca.pem") == body);
  }

  TEST_CASE("EIO at write: the old file stays - no temp remains") {
    FaultyTree f;
    test::write_file(f.backing + "/crl.pem", "old crl");
    auto root = Root::open(f.mnt);
    REQUIRE(root.ok());
    Applier ap(*root);
    f.fs->fail("write", "EIO", "crl.pem");
    const std::string body(5000, 'c');
    auto r = ap.write_file("crl.pem", attrs_of(body.size()), Expected::any(), codec::content_hash(as_bytes(body)),
                           writer_of(body));
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
    std::vector<Applier::Staged> staged;
    for (int i = 0; i < 10; ++i) {  // more than a group: on FUSE each is still fsynced
      const std::string name = "n" + std::to_string(i), body = "new " + std::to_string(i);
      auto st = ap.stage_file(name, attrs_of(body.size()), Expected::any(), codec::content_hash(as_bytes(body)),
                              writer_of(body));
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
