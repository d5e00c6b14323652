// Applier::patch_file on a filesystem that clones (XFS with reflink, on a loop device the test
// mounts and always unmounts) and on one that does not (the test's own temp dir).
#include <doctest/doctest.h>

#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>

#include "lib/apply/apply.h"
#include "lib/base/unique_fd.h"
#include "lib/delta/delta.h"
#include "tests/support/tmpdir.h"
#include "tests/unit/apply/owned_attrs.h"

using namespace syncd;
using namespace syncd::apply;

namespace {

struct XfsFs {
  test::TempDir t{"clone"};
  std::string mnt = t / "mnt";
  bool mounted = false;
  XfsFs() {
    test::require_root();
    if (test::run("command -v mkfs.xfs >/dev/null") != 0) {
      std::fprintf(stderr, "SKIP: mkfs.xfs (xfsprogs) is not installed\n");
      std::exit(77);
    }
    ::mkdir(mnt.c_str(), 0755);
    const std::string img = t / "xfs.img";
    // 320 MiB: mkfs.xfs's minimum; the image is sparse, so it costs a few MiB of /tmp.
    REQUIRE(test::run("truncate -s 320M " + img + " && mkfs.xfs -q -m reflink=1 " + img) == 0);
    REQUIRE(test::run("mount -o loop " + img + " " + mnt) == 0);
    mounted = true;
  }
  ~XfsFs() {
    // The loop device goes with the mount (mount -o loop sets autoclear).
    if (mounted) ::umount2(mnt.c_str(), MNT_DETACH);
  }
};

// Bytes of the file that share their blocks with another file.
uint64_t shared_bytes(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  REQUIRE(fd);
  constexpr unsigned kMax = 512;
  std::vector<uint8_t> buf(sizeof(fiemap) + kMax * sizeof(fiemap_extent));
  auto* fm = reinterpret_cast<fiemap*>(buf.data());
  fm->fm_start = 0;
  fm->fm_length = FIEMAP_MAX_OFFSET;
  fm->fm_flags = FIEMAP_FLAG_SYNC;
  fm->fm_extent_count = kMax;
  REQUIRE_MESSAGE(::ioctl(fd.get(), FS_IOC_FIEMAP, fm) == 0, std::strerror(errno));
  uint64_t shared = 0;
  for (unsigned i = 0; i < fm->fm_mapped_extents; ++i) {
    if (fm->fm_extents[i].fe_flags & FIEMAP_EXTENT_SHARED) shared += fm->fm_extents[i].fe_length;
  }
  return shared;
}

// Patches `dir`/big.bin (holding `base`) into `target` as the receiver does: the patcher leaves
// hashing to the applier and offers it the COPY ranges.
Result<fs::Fingerprint> patch_with(const Applier& ap, const std::string& dir, const Bytes& base, const Bytes& target,
                                   const codec::Digest& announced) {
  auto sig = delta::sign(base, 4096, codec::HashKey::random());
  const Bytes d = delta::make_delta(sig, target);
  UniqueFd bfd(::open((dir + "/big.bin").c_str(), O_RDONLY | O_CLOEXEC));
  REQUIRE(bfd);
  return ap.patch_file("big.bin", test::owned_file_attrs(target.size()), Expected::any(), announced, bfd.get(),
                       [&](delta::OutputSink& out) -> Status {
                         delta::FdBaseReader br(bfd.get(), base.size());
                         delta::Patcher p(br, out, target.size(), delta::Patcher::Hashing::off);
                         SYNCD_TRY(p.feed(d));
                         SYNCD_TRY(p.finish());
                         return {};
                       });
}

Result<fs::Fingerprint> patch(const Root& root, const std::string& dir, const Bytes& base, const Bytes& target,
                              const codec::Digest& announced) {
  return patch_with(Applier(root), dir, base, target, announced);
}

std::string str(const Bytes& b) { return std::string(b.begin(), b.end()); }

}  // namespace

TEST_SUITE("apply.clone") {
  TEST_CASE("XFS: a patched file starts as a clone - only the edit gets new blocks - owner, mode, mtime set") {
    XfsFs fs;
    std::mt19937_64 rng(11);
    const Bytes base = test::random_bytes(rng, 8 << 20);
    test::write_file(fs.mnt + "/big.bin", base);
    // A second name keeps the base's blocks alive after the rename, so sharing stays visible.
    REQUIRE(::link((fs.mnt + "/big.bin").c_str(), (fs.mnt + "/keep.bin").c_str()) == 0);
    Bytes target = base;
    for (size_t i = 0; i < 1024; ++i) target[(3u << 20) + 100 + i] ^= 0xa5;
    auto root = Root::open(fs.mnt);
    REQUIRE(root.ok());
    auto r = patch(*root, fs.mnt, base, target, codec::content_hash(target));
    REQUIRE_MESSAGE(r.ok(), r.error().message());
    CHECK(test::read_file(fs.mnt + "/big.bin") == str(target));
    CHECK(test::read_file(fs.mnt + "/keep.bin") == str(base));
    // Everything but the edited 4 KiB block (plus the filesystem's extent rounding) is shared.
    const uint64_t shared = shared_bytes(fs.mnt + "/big.bin");
    CHECK(shared >= (8u << 20) - (64u << 10));
    CHECK(shared < (8u << 20));
    struct stat st{};
    REQUIRE(::stat((fs.mnt + "/big.bin").c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0640);
    CHECK(st.st_uid == 1234);
    CHECK(st.st_gid == 4321);
    CHECK(st.st_mtim.tv_sec == 1700000000);
    CHECK(test::list_dir(fs.mnt) == std::vector<std::string>{"big.bin", "keep.bin"});
  }

  TEST_CASE("XFS: shifted, moved, shrunk and grown content patches correctly from a clone") {
    XfsFs fs;
    std::mt19937_64 rng(12);
    const Bytes base = test::random_bytes(rng, 3 << 20);
    auto root = Root::open(fs.mnt);
    REQUIRE(root.ok());
    Bytes inserted = base;  // every later block moves by 3 bytes: copy_file_range, not the clone
    inserted.insert(inserted.begin() + 5000, {1, 2, 3});
    Bytes moved(base.begin() + (1 << 20), base.end());  // blocks move to other offsets
    moved.insert(moved.end(), base.begin(), base.begin() + (1 << 20));
    Bytes shrunk(base.begin(), base.begin() + (2 << 20) + 77);
    Bytes grown = base;
    const Bytes tail = test::random_bytes(rng, 100000);
    grown.insert(grown.end(), tail.begin(), tail.end());
    for (const Bytes* target : {&inserted, &moved, &shrunk, &grown}) {
      test::write_file(fs.mnt + "/big.bin", base);
      auto r = patch(*root, fs.mnt, base, *target, codec::content_hash(*target));
      REQUIRE_MESSAGE(r.ok(), r.error().message());
      CHECK(r->size == target->size());
      CHECK(test::read_file(fs.mnt + "/big.bin") == str(*target));
    }
    CHECK(test::list_dir(fs.mnt) == std::vector<std::string>{"big.bin"});
  }

  TEST_CASE("a patch whose result does not match its SHA-256 is discarded - clone or not - the old file stays") {
    std::mt19937_64 rng(13);
    const Bytes base = test::random_bytes(rng, 1 << 20);
    Bytes target = base;
    target[500000] ^= 1;
    auto check = [&](const std::string& dir) {
      test::write_file(dir + "/big.bin", base);
      auto root = Root::open(dir);
      REQUIRE(root.ok());
      auto r = patch(*root, dir, base, target, codec::content_hash(base));  // announces the wrong hash
      REQUIRE_FALSE(r.ok());
      CHECK(r.error().is(errc::verify_failed));
      CHECK(r.error().message().find("big.bin") != std::string::npos);
      CHECK(test::read_file(dir + "/big.bin") == str(base));
      CHECK(test::list_dir(dir) == std::vector<std::string>{"big.bin"});
    };
    {
      XfsFs fs;
      check(fs.mnt);
    }
    test::TempDir plain{"noclone"};  // the test machine's /tmp: ext4 or tmpfs, neither clones
    check(plain.path());
  }

  TEST_CASE("where the filesystem cannot clone, patch_file writes the whole result") {
    test::TempDir t{"noclone"};
    std::mt19937_64 rng(14);
    const Bytes base = test::random_bytes(rng, 2 << 20);
    Bytes target = base;
    target.insert(target.begin() + 70000, 9);
    target[1500000] ^= 0x80;
    test::write_file(t / "big.bin", base);
    auto root = Root::open(t.path());
    REQUIRE(root.ok());
    auto r = patch(*root, t.path(), base, target, codec::content_hash(target));
    REQUIRE_MESSAGE(r.ok(), r.error().message());
    CHECK(test::read_file(t / "big.bin") == str(target));
    CHECK(test::list_dir(t.path()) == std::vector<std::string>{"big.bin"});
  }

  TEST_CASE("a patch of a file this applier put in place re-hashes only the chunks it wrote - a base changed since is hashed whole") {
    std::mt19937_64 rng(15);
    const Bytes base = test::random_bytes(rng, 6 * codec::kContentChunk);
    Bytes second = base;
    for (size_t i = 0; i < 1024; ++i) second[2 * codec::kContentChunk + 300 + i] ^= 0x5a;
    Bytes third = second;
    third[5 * codec::kContentChunk + 7] ^= 1;
    auto check = [&](const std::string& dir) {
      auto root = Root::open(dir);
      REQUIRE(root.ok());
      Applier ap(*root);
      auto w = ap.write_file("big.bin", test::owned_file_attrs(base.size()), Expected::any(), codec::content_hash(base),
                             [&](delta::OutputSink& out) { return out.write(base); });
      REQUIRE_MESSAGE(w.ok(), w.error().message());
      const auto& memo = ap.chunk_memo();
      uint64_t read = memo.chunks_read;
      auto r = patch_with(ap, dir, base, second, codec::content_hash(second));
      REQUIRE_MESSAGE(r.ok(), r.error().message());
      CHECK(test::read_file(dir + "/big.bin") == str(second));
      CHECK(memo.chunks_read - read == 1);  // chunk 2; the other five are the base's
      // The patched result is remembered as well.
      read = memo.chunks_read;
      r = patch_with(ap, dir, second, third, codec::content_hash(third));
      REQUIRE_MESSAGE(r.ok(), r.error().message());
      CHECK(test::read_file(dir + "/big.bin") == str(third));
      CHECK(memo.chunks_read - read == 1);
      // Someone else rewrites chunk 4 in place and puts the mtime back: ctime still moved, so
      // nothing remembered is trusted. A sender that believes the target holds `third` sends a
      // patch whose COPY of chunk 4 now copies the local bytes: that result must fail to verify.
      {
        UniqueFd fd(::open((dir + "/big.bin").c_str(), O_WRONLY | O_CLOEXEC));
        REQUIRE(fd);
        struct stat st{};
        REQUIRE(::fstat(fd.get(), &st) == 0);
        const uint8_t x = static_cast<uint8_t>(third[4 * codec::kContentChunk + 1] ^ 0xff);
        REQUIRE(::pwrite(fd.get(), &x, 1, 4 * codec::kContentChunk + 1) == 1);
        const struct timespec ts[2] = {st.st_atim, st.st_mtim};
        REQUIRE(::futimens(fd.get(), ts) == 0);
      }
      Bytes fourth = third;
      fourth[100] ^= 1;
      read = memo.chunks_read;
      r = patch_with(ap, dir, third, fourth, codec::content_hash(fourth));
      REQUIRE_FALSE(r.ok());
      CHECK(r.error().is(errc::verify_failed));
      CHECK(memo.chunks_read - read == 6);
      CHECK(test::list_dir(dir) == std::vector<std::string>{"big.bin"});
    };
    {
      XfsFs fs;
      check(fs.mnt);
    }
    test::TempDir plain{"noclone"};
    check(plain.path());
  }
}
