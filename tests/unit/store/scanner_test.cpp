#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <random>
#include <unistd.h>

#include "lib/base/unique_fd.h"
#include "lib/codec/content_hash.h"
#include "lib/store/change.h"
#include "lib/store/chunk_cache.h"
#include "lib/store/scanner.h"
#include "tests/support/faultfs.h"
#include "tests/support/tmpdir.h"

using namespace syncd;
using namespace syncd::store;

namespace {

struct Tree {
  test::TempDir t{"scan"};
  std::string root_path = t / "root";
  fs::Root root;
  Tree() : root(make()) {}
  fs::Root make() {
    ::mkdir(root_path.c_str(), 0755);
    ::mkdir((t / "outside").c_str(), 0755);
    test::write_file(t / "outside/secret", "shadow");
    auto r = fs::Root::open(root_path);
    REQUIRE(r.ok());
    return std::move(*r);
  }
  std::string p(const std::string& rel) const { return root_path + "/" + rel; }
};

protocol::Hash256 sha(const std::string& s) { return codec::content_hash(as_bytes(s)); }

// What walk() visits under `rel`, in visiting order.
std::vector<std::string> walked(const fs::Root& root, const std::string& rel = "") {
  std::vector<std::string> seen;
  REQUIRE(walk(root, rel, [&](const std::string& r, const fs::Fingerprint&) -> Status {
    seen.push_back(r);
    return {};
  }).ok());
  return seen;
}

void set_mtime(const std::string& path, int64_t sec, long nsec) {
  const struct timespec ts[2] = {{0, UTIME_OMIT}, {sec, nsec}};
  REQUIRE(::utimensat(AT_FDCWD, path.c_str(), ts, AT_SYMLINK_NOFOLLOW) == 0);
}

}  // namespace

TEST_SUITE("store.scanner") {
  TEST_CASE("devices and specials: skipped unless the root replicates them - never opened - hashed by kind and number") {
    test::require_root();
    Tree tr;
    REQUIRE(::mkfifo(tr.p("fifo").c_str(), 0640) == 0);
    REQUIRE(::mknod(tr.p("null").c_str(), S_IFCHR | 0666, ::makedev(1, 3)) == 0);
    test::write_file(tr.p("f"), "x");
    auto names = [&] {
      auto seen = walked(tr.root);
      std::sort(seen.begin(), seen.end());
      return seen;
    };
    CHECK(names() == std::vector<std::string>{"f"});
    auto off = scan_one(tr.root, "fifo");
    REQUIRE_FALSE(off.ok());
    CHECK(off.error().is(errc::unsupported));
    tr.root.set_specials(true, false);
    CHECK(names() == std::vector<std::string>{"f", "null"});
    tr.root.set_specials(true, true);
    CHECK(names() == std::vector<std::string>{"f", "fifo", "null"});
    // A FIFO with no writer: opening it for reading would not block (O_NONBLOCK), but it is not
    // even opened; scanning returns at once.
    auto fifo = scan_one(tr.root, "fifo");
    REQUIRE(fifo.ok());
    CHECK((*fifo)->type == protocol::FileType::fifo);
    CHECK((*fifo)->rdev == 0);
    CHECK((*fifo)->sha256 == sha("fifo"));
    auto dev = scan_one(tr.root, "null");
    REQUIRE(dev.ok());
    CHECK((*dev)->type == protocol::FileType::chardev);
    CHECK((*dev)->rdev == ::makedev(1, 3));
    CHECK((*dev)->sha256 == sha("character device 1:3"));
    // The record carries the number; another number is a content change.
    const Record r = author_version(**dev, std::nullopt, Change::both, Author{1, 1, 1});
    CHECK(r.meta.rdev == ::makedev(1, 3));
    Entry other = **dev;
    other.rdev = ::makedev(1, 5);
    other.sha256 = sha(special_descriptor(protocol::FileType::chardev, other.rdev));
    CHECK(classify(other, r) == Change::content);
  }

  TEST_CASE("files - directories - symlinks are reported with hashes and fingerprints") {
    Tree tr;
    test::write_file(tr.p("a.pem"), "cert");
    ::mkdir(tr.p("d").c_str(), 0750);
    REQUIRE(::symlink("../a.pem", tr.p("d/link").c_str()) == 0);
    auto f = scan_one(tr.root, "a.pem");
    REQUIRE(f.ok());
    REQUIRE(f->has_value());
    CHECK((*f)->type == protocol::FileType::file);
    CHECK((*f)->sha256 == sha("cert"));
    CHECK((*f)->hashed);
    CHECK((*f)->fp.size == 4);
    auto d = scan_one(tr.root, "d");
    REQUIRE(d.ok());
    CHECK((*d)->type == protocol::FileType::dir);
    CHECK(((*d)->fp.mode & 07777) == 0750);
    auto l = scan_one(tr.root, "d/link");
    REQUIRE(l.ok());
    CHECK((*l)->type == protocol::FileType::symlink);
    CHECK((*l)->symlink_target == "../a.pem");
    auto gone = scan_one(tr.root, "missing/x");
    REQUIRE(gone.ok());
    CHECK_FALSE(gone->has_value());
  }

  TEST_CASE("hashing is skipped only when every stat measure is unchanged") {
    Tree tr;
    test::write_file(tr.p("f"), "aaaa");
    set_mtime(tr.p("f"), 1'700'000'000, 0);
    auto first = scan_one(tr.root, "f");
    REQUIRE(first.ok());
    CHECK((*first)->fp.racy);  // ctime is now, whatever mtime says
    Known k{(*first)->fp, (*first)->sha256};
    k.fp.racy = false;         // as if looked at a tick later
    auto again = scan_one(tr.root, "f", &k);
    REQUIRE(again.ok());
    CHECK_FALSE((*again)->hashed);
    CHECK((*again)->sha256 == sha("aaaa"));
    // Same size, same mtime (restored), new bytes: ctime moved, so it is hashed again.
    test::write_file(tr.p("f"), "bbbb");
    set_mtime(tr.p("f"), 1'700'000'000, 0);
    auto changed = scan_one(tr.root, "f", &k);
    REQUIRE(changed.ok());
    CHECK((*changed)->hashed);
    CHECK((*changed)->sha256 == sha("bbbb"));
    CHECK((*changed)->fp.size == k.fp.size);
    CHECK((*changed)->fp.mtime_ns == k.fp.mtime_ns);
  }

  TEST_CASE("a fingerprint taken within the racy window of its file's ctime is racy - only regular files") {
    struct stat st{};
    st.st_mode = S_IFREG | 0644;
    st.st_ctim.tv_sec = 1'700'000'000;
    const int64_t ctime = int64_t{1'700'000'000} * 1'000'000'000;
    CHECK(fs::Fingerprint::observed(st, ctime).racy);
    CHECK(fs::Fingerprint::observed(st, ctime + fs::Fingerprint::kRacyWindowNs - 1).racy);
    CHECK_FALSE(fs::Fingerprint::observed(st, ctime + fs::Fingerprint::kRacyWindowNs).racy);
    // A racy fingerprint proves nothing, even against an identical stat.
    fs::Fingerprint f = fs::Fingerprint::observed(st, ctime);
    CHECK_FALSE(f.same_content_stat(fs::Fingerprint::of(st)));
    f.racy = false;
    CHECK(f.same_content_stat(fs::Fingerprint::of(st)));
    st.st_mode = S_IFDIR | 0755;
    CHECK_FALSE(fs::Fingerprint::observed(st, ctime).racy);
  }

  // ext2 stamps with the clock tick (no multigrain timestamps, as on every kernel before 6.13):
  // a same-size write in the tick of the scan leaves the whole stat as the scan saw it.
  TEST_CASE("a same-size rewrite in the clock tick of the scan is hashed again (coarse timestamps)") {
    test::require_root();
    test::TempDir t{"racy"};
    const std::string img = t / "ext2.img", dir = t / "mnt";
    ::mkdir(dir.c_str(), 0755);
    REQUIRE(test::run("truncate -s 8M " + img + " && mkfs.ext2 -q -F " + img) == 0);
    REQUIRE(test::run("mount -o loop -t ext2 " + img + " " + dir) == 0);
    struct Unmount {
      std::string dir;
      ~Unmount() { (void)test::run("umount -l " + dir); }
    } unmount{dir};
    auto root = fs::Root::open(dir);
    REQUIRE(root.ok());
    // A tick is milliseconds, one attempt microseconds: the first almost always stays in its
    // tick; one that crossed into the next cannot show the trap and is not counted.
    bool shown = false;
    for (int i = 0; i < 100 && !shown; ++i) {
      const std::string name = "f" + std::to_string(i);
      test::write_file(dir + "/" + name, "aaaa");
      auto first = scan_one(*root, name);
      REQUIRE(first.ok());
      CHECK((*first)->fp.racy);  // just written
      const Known k{(*first)->fp, (*first)->sha256};
      {
        UniqueFd fd(::open((dir + "/" + name).c_str(), O_WRONLY | O_CLOEXEC));
        REQUIRE(fd);
        REQUIRE(::pwrite(fd.get(), "bbbb", 4, 0) == 4);
      }
      struct stat now{};
      REQUIRE(::stat((dir + "/" + name).c_str(), &now) == 0);
      if (fs::Fingerprint::of(now).ctime_ns != k.fp.ctime_ns) continue;
      shown = true;
      // The trap: trusted, the unchanged stat would keep the old hash.
      Known trusted = k;
      trusted.fp.racy = false;
      auto stale = scan_one(*root, name, &trusted);
      REQUIRE(stale.ok());
      CHECK((*stale)->sha256 == sha("aaaa"));
      auto again = scan_one(*root, name, &k);
      REQUIRE(again.ok());
      CHECK((*again)->hashed);
      CHECK((*again)->sha256 == sha("bbbb"));
    }
    CHECK(shown);
  }

  TEST_CASE("FIFOs are refused - never opened (no hang) - and symlinked parents never followed") {
    Tree tr;
    REQUIRE(::mkfifo(tr.p("fifo").c_str(), 0644) == 0);
    auto r = scan_one(tr.root, "fifo");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().is(errc::unsupported));
    REQUIRE(::symlink((tr.t / "outside").c_str(), tr.p("esc").c_str()) == 0);
    auto e = scan_one(tr.root, "esc/secret");
    REQUIRE_FALSE(e.ok());
    CHECK(e.error().is(errc::path_escape));
  }

  TEST_CASE("walk visits parents before children and skips reserved names and special files") {
    Tree tr;
    ::mkdir(tr.p("a").c_str(), 0755);
    ::mkdir(tr.p("a/b").c_str(), 0755);
    test::write_file(tr.p("a/b/c"), "c");
    test::write_file(tr.p("top"), "t");
    test::write_file(tr.p(".syncd.top.123.tmp"), "temp");
    ::mkdir(tr.p(".syncd").c_str(), 0700);
    test::write_file(tr.p(".syncd/cookie"), "x");
    REQUIRE(::mkfifo(tr.p("a/fifo").c_str(), 0644) == 0);
    REQUIRE(::symlink((tr.t / "outside").c_str(), tr.p("a/out").c_str()) == 0);
    auto seen = walked(tr.root);
    std::sort(seen.begin(), seen.end());
    CHECK(seen == std::vector<std::string>{"a", "a/b", "a/b/c", "a/out", "top"});
    // Order: a directory before anything inside it.
    const auto order = walked(tr.root, "a");
    auto pos = [&](const std::string& s) { return std::find(order.begin(), order.end(), s) - order.begin(); };
    CHECK(pos("a/b") < pos("a/b/c"));
    CHECK(std::find(order.begin(), order.end(), "a/out/secret") == order.end());  // not followed
    // A filter prunes a whole subtree.
    std::vector<std::string> pruned;
    REQUIRE(walk(tr.root, "", [&](const std::string& rel, const fs::Fingerprint&) -> Status {
      pruned.push_back(rel);
      return {};
    }, [](std::string_view rel, bool) { return rel == "a"; }).ok());
    CHECK(pruned == std::vector<std::string>{"top"});
  }
}

TEST_SUITE("store.change") {
  TEST_CASE("creation - content - meta - mtime - and echo are told apart") {
    Tree tr;
    test::write_file(tr.p("f"), "v1");
    auto e1 = scan_one(tr.root, "f");
    REQUIRE(e1.ok());
    const Entry disk = **e1;
    CHECK(classify(disk, std::nullopt) == Change::both);
    Record r = author_version(disk, std::nullopt, Change::both, Author{7, 1, 100});
    CHECK(r.meta.version == protocol::VersionVector{{7, 1}});
    CHECK(r.meta.content_dot == protocol::Dot{7, 1});
    CHECK(r.meta.meta_dot == protocol::Dot{7, 1});
    CHECK(r.meta.sha256 == sha("v1"));
    CHECK(classify(disk, r) == Change::none);  // our own write echoed back

    Entry moved = disk;
    moved.fp.ino += 1;  // same bytes and metadata, new inode (e.g. replaced by an identical copy)
    CHECK(classify(moved, r) == Change::fingerprint);

    Entry content = disk;
    content.sha256 = sha("v2");
    CHECK(classify(content, r) == Change::content);
    Entry meta = disk;
    meta.fp.mode = (meta.fp.mode & ~07777u) | 0600;
    CHECK(classify(meta, r) == Change::meta);
    Entry touched = disk;
    touched.fp.mtime_ns += 1;
    CHECK(classify(touched, r) == Change::meta);
    Entry both = content;
    both.fp.uid = 1234;
    CHECK(classify(both, r) == Change::both);

    // A second node's change keeps the first node's entry and moves only the changed group's dot.
    Record r2 = author_version(meta, r, Change::meta, Author{3, 9, 200});
    CHECK(r2.meta.version == protocol::VersionVector{{3, 9}, {7, 1}});
    CHECK(r2.meta.content_dot == protocol::Dot{7, 1});
    CHECK(r2.meta.meta_dot == protocol::Dot{3, 9});
    CHECK(r2.meta.meta_ts == 200);
    CHECK(r2.meta.content_ts == 100);

    Record tomb = author_delete(r2, Author{7, 2, 300});
    CHECK(tomb.meta.deleted);
    CHECK(tomb.meta.version == protocol::VersionVector{{3, 9}, {7, 2}});
    CHECK(tomb.meta.content_dot == protocol::Dot{7, 2});
    CHECK(classify(disk, tomb) == Change::both);  // resurrection
    // Every authored record is valid on the wire.
    CHECK_FALSE(encode_meta(r2.meta).empty());

    // A directory's mtime is a version only where directory times are replicated (one-way).
    REQUIRE(::mkdir(tr.p("d").c_str(), 0755) == 0);
    auto de = scan_one(tr.root, "d");
    REQUIRE(de.ok());
    const Record dr = author_version(**de, std::nullopt, Change::both, Author{7, 3, 400});
    Entry dir_touched = **de;
    dir_touched.fp.mtime_ns += 1;
    CHECK(classify(dir_touched, dr) == Change::fingerprint);
    CHECK(classify(dir_touched, dr, true) == Change::meta);
    CHECK(classify(**de, dr, true) == Change::none);
    CHECK_FALSE(encode_meta(tomb.meta).empty());
  }

  TEST_CASE("a move is a new content event at the new name - unless that name already records the content") {
    Tree tr;
    test::write_file(tr.p("f"), "moved bytes");
    auto e = scan_one(tr.root, "f");
    REQUIRE(e.ok());
    Entry at_g = **e;
    at_g.path = "g";
    const Record from = author_version(**e, std::nullopt, Change::both, Author{7, 2, 100});
    // g was written (counter 5) and deleted (6) after f: a peer's record of g has seen f's dot.
    Entry old_g = at_g;
    old_g.sha256 = sha("old g");
    const Record g_live = author_version(old_g, std::nullopt, Change::both, Author{7, 5, 150});
    const Record g_tomb = author_delete(g_live, Author{7, 6, 160});

    const Record m = author_move(at_g, from, g_tomb, Author{7, 9, 300});
    CHECK(m.meta.path == "g");
    CHECK_FALSE(m.meta.deleted);
    CHECK(m.meta.sha256 == from.meta.sha256);
    CHECK(m.meta.content_dot == protocol::Dot{7, 9});  // not f's {7, 2}, which g's history has seen
    CHECK(m.meta.content_ts == 300);
    CHECK(m.meta.version == protocol::VersionVector{{7, 9}});

    // Over a live name holding other bytes: the same, dominating that record.
    const Record over = author_move(at_g, from, g_live, Author{7, 10, 310});
    CHECK(over.meta.content_dot == protocol::Dot{7, 10});
    CHECK(over.meta.sha256 == from.meta.sha256);

    // g already recorded with these bytes (the receiver looked at the disk before the watcher
    // reported the move): its content dot and time stay, only the metadata group moves.
    const Record seen = author_version(at_g, g_tomb, Change::both, Author{7, 8, 250});
    const Record kept = author_move(at_g, from, seen, Author{7, 11, 320});
    CHECK(kept.meta.content_dot == protocol::Dot{7, 8});
    CHECK(kept.meta.content_ts == 250);
    CHECK(kept.meta.meta_dot == protocol::Dot{7, 11});
    CHECK(kept.meta.version == protocol::VersionVector{{7, 11}});
  }

  TEST_CASE("a directory's mtime moving with its entries is not a version") {
    Tree tr;
    ::mkdir(tr.p("d").c_str(), 0755);
    auto e = scan_one(tr.root, "d");
    REQUIRE(e.ok());
    Record r = author_version(**e, std::nullopt, Change::both, Author{1, 1, 1});
    test::write_file(tr.p("d/new"), "x");
    auto after = scan_one(tr.root, "d");
    REQUIRE(after.ok());
    CHECK((*after)->fp.mtime_ns != (*e)->fp.mtime_ns);
    CHECK(classify(**after, r) == Change::fingerprint);
  }
}

TEST_CASE("scan_one hands back the bytes it hashed for small files only") {
  Tree tr;
  std::mt19937_64 rng(1);
  const Bytes small_b = test::random_bytes(rng, 3000);
  const Bytes big_b = test::random_bytes(rng, kKeepMax + 1);
  const std::string small(small_b.begin(), small_b.end());
  const std::string big(big_b.begin(), big_b.end());
  test::write_file(tr.p("small"), small);
  test::write_file(tr.p("big"), big);
  test::write_file(tr.p("empty"), "");

  Bytes kept;
  auto e = scan_one(tr.root, "small", nullptr, &kept);
  REQUIRE(e.ok());
  REQUIRE(*e);
  CHECK((*e)->sha256 == sha(small));
  CHECK(std::string(kept.begin(), kept.end()) == small);

  // Unchanged since the index saw it: nothing is read, nothing handed back.
  Known known{(*e)->fp, (*e)->sha256};
  known.fp.racy = false;  // looked at past its write's clock tick
  Bytes again{9};
  auto u = scan_one(tr.root, "small", &known, &again);
  REQUIRE(u.ok());
  CHECK_FALSE((*u)->hashed);
  CHECK(again == Bytes{9});

  Bytes big_kept{7};
  auto b = scan_one(tr.root, "big", nullptr, &big_kept);
  REQUIRE(b.ok());
  CHECK((*b)->sha256 == sha(big));
  CHECK(big_kept == Bytes{7});  // above kKeepMax: hashed in chunks, not kept

  Bytes none{5};
  auto z = scan_one(tr.root, "empty", nullptr, &none);
  REQUIRE(z.ok());
  CHECK((*z)->sha256 == sha(""));
  CHECK(none.empty());
}

TEST_SUITE("store.scanner") {
  TEST_CASE("a big file re-hashes only the chunks that changed since it was last hashed - the hash is the whole content's") {
    Tree tr;
    std::mt19937_64 rng(21);
    std::string content;
    {
      const Bytes b = test::random_bytes(rng, 4 * codec::kContentChunk);
      content.assign(b.begin(), b.end());
    }
    auto& cache = ChunkCache::shared();
    auto rescan = [&](const std::string& now, uint64_t want_hashed) {
      test::write_file(tr.p("big.bin"), now);
      const uint64_t before = cache.chunks_hashed;
      auto e = scan_one(tr.root, "big.bin");
      REQUIRE(e.ok());
      REQUIRE(*e);
      CHECK((*e)->hashed);
      CHECK((*e)->sha256 == sha(now));
      CHECK(cache.chunks_hashed - before == want_hashed);
    };
    rescan(content, 4);  // first sight: every chunk
    content[codec::kContentChunk + 5] ^= 1;
    rescan(content, 1);  // an in-place edit of chunk 1
    content += "appended";
    rescan(content, 1);  // a new last chunk; the four full ones are unchanged
    content.resize(2 * codec::kContentChunk + 512 * 1024);
    rescan(content, 1);  // truncated into chunk 2: that one is shorter now
    content[0] ^= 1;
    content[2 * codec::kContentChunk + 1] ^= 1;
    rescan(content, 2);
    // Another root's file of the same name is another file.
    test::TempDir other{"scan2"};
    test::write_file(other / "big.bin", content);
    auto oroot = fs::Root::open(other.path());
    REQUIRE(oroot.ok());
    const uint64_t before = cache.chunks_hashed;
    auto e = scan_one(*oroot, "big.bin");
    REQUIRE((e.ok() && *e));
    CHECK((*e)->sha256 == sha(content));
    CHECK(cache.chunks_hashed - before == 3);
  }

  TEST_CASE("a file read in several parts by two threads has the same hash, and still re-hashes only changed chunks") {
    Tree tr;
    std::mt19937_64 rng(22);
    const Bytes b = test::random_bytes(rng, 19 * codec::kContentChunk + 300 * 1024);  // 20 chunks: halves of 10, parts of 4
    std::string content(b.begin(), b.end());
    auto& cache = ChunkCache::shared();
    auto rescan = [&](uint64_t want_hashed) {
      test::write_file(tr.p("huge.bin"), content);
      const uint64_t before = cache.chunks_hashed;
      auto e = scan_one(tr.root, "huge.bin");
      REQUIRE((e.ok() && *e));
      CHECK((*e)->sha256 == sha(content));
      CHECK(cache.chunks_hashed - before == want_hashed);
    };
    rescan(20);
    content[9 * codec::kContentChunk] ^= 1;       // the first half's last chunk
    content[17 * codec::kContentChunk + 7] ^= 1;  // the second half's last full part
    content.back() ^= 1;                          // the short last chunk
    rescan(3);
  }
}

TEST_SUITE("store.walk") {
  TEST_CASE("an entry there but unreadable (EIO) is never taken for absent: the walk stops, or reports it and goes on") {
    test::require_root();
    test::TempDir t("walkeio");
    const std::string backing = t / "backing", mnt = t / "mnt";
    ::mkdir(backing.c_str(), 0755);
    ::mkdir((backing + "/dir").c_str(), 0755);
    ::mkdir((backing + "/ok").c_str(), 0755);
    test::write_file(backing + "/dir/inside", "x");
    test::write_file(backing + "/ok/inside", "y");
    test::write_file(backing + "/bad", "z");
    test::write_file(backing + "/good", "w");
    test::FaultFs fs(backing, mnt, t.path());
    auto root = fs::Root::open(mnt);
    REQUIRE(root.ok());
    const auto visit_all = [&](const WalkTrouble& trouble, std::vector<std::string>& seen) {
      return walk(*root, "", [&](const std::string& r, const fs::Fingerprint&) -> Status {
        seen.push_back(r);
        return {};
      }, {}, trouble);
    };
    std::vector<std::string> seen;
    REQUIRE(visit_all({}, seen).ok());  // nothing failing yet
    CHECK(seen.size() == 6);

    fs.fail("readdir", "EIO", "dir");  // a directory that cannot be listed
    fs.fail("stat", "EIO", "bad");     // a file whose stat fails
    // Without `trouble`: the walk ends with the error (before, the listing's end and its failure
    // looked alike, and "dir" seemed empty).
    seen.clear();
    auto st = visit_all({}, seen);
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().is_errno(EIO));
    // With it: both reported, everything else visited.
    seen.clear();
    std::vector<std::string> troubled;
    REQUIRE(visit_all([&](const std::string& rel, const Error& e) {
      CHECK(e.is_errno(EIO));
      troubled.push_back(rel);
    }, seen).ok());
    std::sort(seen.begin(), seen.end());
    std::sort(troubled.begin(), troubled.end());
    CHECK(seen == std::vector<std::string>{"dir", "good", "ok", "ok/inside"});
    CHECK(troubled == std::vector<std::string>{"bad", "dir"});
  }
}
