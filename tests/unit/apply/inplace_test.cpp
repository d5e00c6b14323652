// Applier::patch_in_place (rsync.inplace): a delta whose unchanged bytes stay at their offsets is
// written into the file itself; anything else is left to patch_file with the file untouched.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <random>

#include "lib/apply/apply.h"
#include "lib/base/unique_fd.h"
#include "lib/delta/delta.h"
#include "tests/support/tmpdir.h"
#include "tests/unit/apply/owned_attrs.h"

using namespace syncd;
using namespace syncd::apply;

namespace {

struct Case {
  test::TempDir t{"inplace"};
  Result<Root> root = Root::open(t.path());
  Applier ap{*root};

  explicit Case(const Bytes& base) {
    REQUIRE(root.ok());
    test::write_file(t / "big.bin", base);
  }
  // The receiver's call: the base opened read-only, the delta in memory.
  Result<std::optional<fs::Fingerprint>> patch(const Bytes& base, const Bytes& target, const codec::Digest& announced) {
    const Bytes d = delta::make_delta(delta::sign(base, 4096, codec::HashKey::random()), target);
    UniqueFd bfd(::open((t / "big.bin").c_str(), O_RDONLY | O_CLOEXEC));
    REQUIRE(bfd);
    return ap.patch_in_place("big.bin", test::owned_file_attrs(target.size()), announced, bfd.get(), d);
  }
  struct stat stat_of(const std::string& name) {
    struct stat st{};
    REQUIRE(::stat((t / name).c_str(), &st) == 0);
    return st;
  }
};

std::string str(const Bytes& b) { return std::string(b.begin(), b.end()); }

}  // namespace

TEST_SUITE("apply.inplace") {
  TEST_CASE("an edit inside the file is written into it: same inode - hard link sees it - owner, mode, mtime set - no temp") {
    std::mt19937_64 rng(21);
    const Bytes base = test::random_bytes(rng, 3 * codec::kContentChunk + 777);
    Case c(base);
    REQUIRE(::link((c.t / "big.bin").c_str(), (c.t / "other-name").c_str()) == 0);
    const ino_t ino = c.stat_of("big.bin").st_ino;
    Bytes target = base;
    for (size_t i = 0; i < 1024; ++i) target[codec::kContentChunk + 5000 + i] ^= 0x3c;
    auto r = c.patch(base, target, codec::content_hash(target));
    REQUIRE_MESSAGE(r.ok(), r.error().message());
    REQUIRE(r->has_value());
    const struct stat st = c.stat_of("big.bin");
    CHECK(st.st_ino == ino);
    CHECK(test::read_file(c.t / "big.bin") == str(target));
    CHECK(test::read_file(c.t / "other-name") == str(target));
    CHECK((st.st_mode & 07777) == 0640);
    CHECK(st.st_uid == 1234);
    CHECK(st.st_gid == 4321);
    CHECK(st.st_mtim.tv_sec == 1700000000);
    CHECK((*r)->same_content_stat(fs::Fingerprint::of(st)));
    CHECK(test::list_dir(c.t.path()) == std::vector<std::string>{"big.bin", "other-name"});
  }

  TEST_CASE("a file that shrinks or grows at its end is patched in place too") {
    std::mt19937_64 rng(22);
    const Bytes base = test::random_bytes(rng, 200000);
    Case c(base);
    const ino_t ino = c.stat_of("big.bin").st_ino;
    Bytes shorter(base.begin(), base.begin() + 150000);
    shorter[100] ^= 1;
    auto r = c.patch(base, shorter, codec::content_hash(shorter));
    REQUIRE_MESSAGE(r.ok(), r.error().message());
    REQUIRE(r->has_value());
    CHECK(test::read_file(c.t / "big.bin") == str(shorter));
    Bytes longer = shorter;
    const Bytes tail = test::random_bytes(rng, 70000);
    longer.insert(longer.end(), tail.begin(), tail.end());
    r = c.patch(shorter, longer, codec::content_hash(longer));
    REQUIRE_MESSAGE(r.ok(), r.error().message());
    REQUIRE(r->has_value());
    CHECK(test::read_file(c.t / "big.bin") == str(longer));
    CHECK(c.stat_of("big.bin").st_ino == ino);
  }

  TEST_CASE("a delta that moves bytes (an insertion) is not applied in place: the file is untouched") {
    std::mt19937_64 rng(23);
    const Bytes base = test::random_bytes(rng, 300000);
    Case c(base);
    const struct stat before = c.stat_of("big.bin");
    Bytes target = base;
    target.insert(target.begin() + 1000, {1, 2, 3});  // every later block lands 3 bytes further
    auto r = c.patch(base, target, codec::content_hash(target));
    REQUIRE_MESSAGE(r.ok(), r.error().message());
    CHECK_FALSE(r->has_value());
    const struct stat after = c.stat_of("big.bin");
    CHECK(test::read_file(c.t / "big.bin") == str(base));
    CHECK(after.st_mtim.tv_nsec == before.st_mtim.tv_nsec);
    CHECK(after.st_mtim.tv_sec == before.st_mtim.tv_sec);
  }

  TEST_CASE("a name that is no longer the base's inode is not written through") {
    std::mt19937_64 rng(24);
    const Bytes base = test::random_bytes(rng, 100000);
    Case c(base);
    Bytes target = base;
    target[5] ^= 1;
    const Bytes d = delta::make_delta(delta::sign(base, 4096, codec::HashKey::random()), target);
    UniqueFd bfd(::open((c.t / "big.bin").c_str(), O_RDONLY | O_CLOEXEC));
    REQUIRE(bfd);
    // Replaced between the base's open and the patch (a local program saved a new file).
    test::write_file(c.t / "new.bin", "someone else's file");
    REQUIRE(::rename((c.t / "new.bin").c_str(), (c.t / "big.bin").c_str()) == 0);
    auto r = c.ap.patch_in_place("big.bin", test::owned_file_attrs(target.size()), codec::content_hash(target), bfd.get(), d);
    REQUIRE_MESSAGE(r.ok(), r.error().message());
    CHECK_FALSE(r->has_value());
    CHECK(test::read_file(c.t / "big.bin") == "someone else's file");
  }

  TEST_CASE("a result that does not match the announced hash is an error naming the file (the version is re-sent whole)") {
    std::mt19937_64 rng(25);
    const Bytes base = test::random_bytes(rng, 100000);
    Case c(base);
    Bytes target = base;
    target[99] ^= 1;
    auto r = c.patch(base, target, codec::content_hash(base));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().is(errc::verify_failed));
    CHECK(r.error().message().find("big.bin") != std::string::npos);
  }

  TEST_CASE("a patch of a file this applier patched before re-hashes only the chunk it wrote") {
    std::mt19937_64 rng(26);
    const Bytes base = test::random_bytes(rng, 6 * codec::kContentChunk);
    Case c(base);
    auto w = c.ap.write_file("big.bin", test::owned_file_attrs(base.size()), Expected::any(), codec::content_hash(base),
                             [&](delta::OutputSink& out) { return out.write(base); });
    REQUIRE_MESSAGE(w.ok(), w.error().message());
    Bytes second = base;
    second[4 * codec::kContentChunk + 10] ^= 0xff;
    const uint64_t read = c.ap.chunk_memo().chunks_read;
    auto r = c.patch(base, second, codec::content_hash(second));
    REQUIRE_MESSAGE(r.ok(), r.error().message());
    REQUIRE(r->has_value());
    CHECK(c.ap.chunk_memo().chunks_read - read == 1);
    CHECK(test::read_file(c.t / "big.bin") == str(second));
  }
}
