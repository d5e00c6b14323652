#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>

#include "lib/base/scope_guard.h"
#include "lib/store/change.h"
#include "lib/store/index.h"
#include "lib/store/sqlite.h"
#include "tests/support/tmpdir.h"

using namespace syncd;
using namespace syncd::store;

namespace {

Record rec(const std::string& path, uint8_t fill, uint64_t counter = 1) {
  Record r;
  r.meta.path = path;
  r.meta.type = protocol::FileType::file;
  r.meta.size = 10;
  r.meta.mode = 0640;
  r.meta.mtime_sec = 1'700'000'000;
  r.meta.version = {{42, counter}};
  r.meta.content_dot = {42, counter};
  r.meta.sha256.fill(fill);
  r.fp.ino = 1000 + fill;
  r.fp.size = 10;
  r.fp.mode = 0100640;
  return r;
}

// An index with one record and one cached signature, left behind by a syncd of `schema`, then
// opened by this one: ids and records stay, every fingerprint is forgotten (the next scan hashes
// each file once). The caller checks what happened to the signature.
Index reopened_from_schema(const test::TempDir& t, int64_t schema) {
  uint64_t node = 0;
  {
    auto idx = Index::open(t / "state");
    REQUIRE(idx.ok());
    node = idx->node_id();
    Record r = rec("f", 3);
    REQUIRE(idx->put(r).ok());
    REQUIRE(idx->put_signature("f", 7, CachedSignature{{}, Bytes{1, 2, 3}}).ok());
  }
  {
    auto db = Db::open(t / "state/index.db");
    REQUIRE(db.ok());
    const std::string sql = "UPDATE meta SET v = " + std::to_string(schema) + " WHERE k = 'schema'";
    REQUIRE(db->exec(sql.c_str()).ok());
  }
  auto idx = Index::open(t / "state");
  REQUIRE_MESSAGE(idx.ok(), idx.error().message());
  CHECK(idx->node_id() == node);
  auto got = idx->get("f");
  REQUIRE((got.ok() && got->has_value()));
  CHECK((*got)->meta.sha256 == rec("f", 3).meta.sha256);
  CHECK((*got)->fp == fs::Fingerprint{});
  return std::move(*idx);
}

}  // namespace

TEST_SUITE("store.index") {
  TEST_CASE("tombstones are collected only when every peer applied them and they are old enough") {
    test::TempDir t("idx");
    auto idx = Index::open(t / "state");
    REQUIRE(idx.ok());
    const uint64_t day = 86400000, now = 1'800'000'000'000;
    auto tomb = [&](const std::string& path, uint64_t deleted_ms) {
      Record r = rec(path, 1);
      r.meta.deleted = true;
      r.meta.sha256 = {};
      r.meta.content_ts = Hlc::pack(deleted_ms, 0);
      REQUIRE(idx->put(r).ok());
      return r.seq;
    };
    const uint64_t old_seq = tomb("old", now - 10 * day);
    const uint64_t new_seq = tomb("new", now - 1 * day);
    const uint64_t ancient = tomb("ancient", now - 200 * day);
    Record live = rec("live", 2);
    REQUIRE(idx->put(live).ok());
    (void)new_seq;
    (void)ancient;
    // Peer 7 applied everything, peer 8 only up to before "old": nothing but the max-age rule.
    REQUIRE(idx->set_peer_acked(7, idx->max_seq()).ok());
    REQUIRE(idx->set_peer_acked(8, old_seq - 1).ok());
    auto n = idx->collect_tombstones({7, 8}, true, now, 7 * day, 180 * day);
    REQUIRE(n.ok());
    CHECK(*n == 1);
    CHECK_FALSE(idx->get("ancient")->has_value());
    CHECK(idx->get("old")->has_value());
    // A configured peer never reached: still only the max-age rule.
    REQUIRE(idx->set_peer_acked(8, idx->max_seq()).ok());
    CHECK(*idx->collect_tombstones({7, 8}, false, now, 7 * day, 180 * day) == 0);
    // Both applied everything: "old" (10 days) goes, "new" (1 day) stays, live records stay.
    CHECK(*idx->collect_tombstones({7, 8}, true, now, 7 * day, 180 * day) == 1);
    CHECK_FALSE(idx->get("old")->has_value());
    CHECK(idx->get("new")->has_value());
    CHECK(idx->get("live")->has_value());
    CHECK(*idx->tombstone_count() == 1);
  }

  TEST_CASE("a collected tombstone's sequence number is never handed out again - also after reopening") {
    test::TempDir t("idx");
    const uint64_t day = 86400000, now = 1'800'000'000'000;
    uint64_t top = 0;
    {
      auto idx = Index::open(t / "state");
      REQUIRE(idx.ok());
      Record live = rec("live", 1);
      REQUIRE(idx->put(live).ok());
      Record gone = rec("gone", 2);
      gone.meta.deleted = true;
      gone.meta.content_ts = Hlc::pack(now - 10 * day, 0);
      REQUIRE(idx->put(gone).ok());  // the highest record, a peer resumes after it
      top = gone.seq;
      REQUIRE(idx->set_peer_acked(7, top).ok());
      REQUIRE(*idx->collect_tombstones({7}, true, now, 7 * day, 180 * day) == 1);
    }
    auto idx = Index::open(t / "state");
    REQUIRE(idx.ok());
    CHECK(idx->max_seq() == top);
    Record next = rec("next", 3);
    REQUIRE(idx->put(next).ok());
    CHECK(next.seq == top + 1);
  }

  TEST_CASE("a move's pairing survives reopening and goes once its tombstone is collected or replaced") {
    test::TempDir t("idx");
    const uint64_t day = 86400000, now = 1'800'000'000'000;
    uint64_t tomb_a = 0, tomb_b = 0, moved_a = 0;
    {
      auto idx = Index::open(t / "s");
      REQUIRE(idx.ok());
      auto gone = [&](const std::string& path) {
        Record r = rec(path, 1);
        r.meta.deleted = true;
        r.meta.sha256 = {};
        r.meta.content_ts = Hlc::pack(now - 10 * day, 0);
        REQUIRE(idx->put(r).ok());
        return r.seq;
      };
      tomb_a = gone("a");
      Record ma = rec("moved/a", 1);
      REQUIRE(idx->put(ma).ok());
      moved_a = ma.seq;
      tomb_b = gone("b");
      REQUIRE(idx->put_move(tomb_a, moved_a, "moved/a").ok());
      REQUIRE(idx->put_move(tomb_b, 99, "moved/b").ok());
      CHECK_FALSE(*idx->get_move(moved_a));  // keyed by the tombstone
    }
    auto idx = Index::open(t / "s");
    REQUIRE(idx.ok());
    auto m = idx->get_move(tomb_a);
    REQUIRE(m.ok());
    REQUIRE(m->has_value());
    CHECK((*m)->to_seq == moved_a);
    CHECK((*m)->to_path == "moved/a");
    // "b" is written again: its tombstone (and so its pairing) is gone at the next collection,
    // which also collects "a"'s tombstone (every peer applied it, old enough).
    Record again = rec("b", 2);
    REQUIRE(idx->put(again).ok());
    REQUIRE(idx->get_move(tomb_b)->has_value());
    REQUIRE(idx->set_peer_acked(7, tomb_a).ok());
    CHECK(*idx->collect_tombstones({7}, true, now, 7 * day, 180 * day) == 1);
    CHECK_FALSE(*idx->get_move(tomb_a));
    CHECK_FALSE(*idx->get_move(tomb_b));
  }

  TEST_CASE("identity is created once and survives reopening") {
    test::TempDir t("idx");
    uint64_t node = 0, index = 0;
    {
      auto idx = Index::open(t / "state");
      REQUIRE_MESSAGE(idx.ok(), idx.error().message());
      node = idx->node_id();
      index = idx->index_id();
      CHECK(node != 0);
      CHECK(index != 0);
      CHECK(node != index);
    }
    auto again = Index::open(t / "state");
    REQUIRE(again.ok());
    CHECK(again->node_id() == node);
    CHECK(again->index_id() == index);
    // A new database is a new incarnation.
    auto other = Index::open(t / "other");
    REQUIRE(other.ok());
    CHECK(other->node_id() != node);
    struct stat st{};
    REQUIRE(::stat((t / "state").c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0700);
  }

  TEST_CASE("records round-trip with ascending sequence numbers") {
    test::TempDir t("idx");
    auto idx = Index::open(t / "s");
    REQUIRE(idx.ok());
    Record a = rec("certs/a.pem", 1), b = rec("certs/b.pem", 2), a2 = rec("certs/a.pem", 3, 2);
    a2.origin = 0x5eed'0000'0000'0001;  // a peer's record: get() must return whose (echo rule)
    REQUIRE(idx->put(a).ok());
    REQUIRE(idx->put(b).ok());
    REQUIRE(idx->put(a2).ok());
    CHECK(a.seq == 1);
    CHECK(b.seq == 2);
    CHECK(a2.seq == 3);
    CHECK(idx->max_seq() == 3);
    auto got = idx->get("certs/a.pem");
    REQUIRE(got.ok());
    REQUIRE(got->has_value());
    CHECK(**got == a2);
    CHECK((*got)->origin == a2.origin);
    auto none = idx->get("certs/none.pem");
    REQUIRE(none.ok());
    CHECK_FALSE(none->has_value());
    std::vector<std::string> since;
    REQUIRE(idx->for_each_since(1, [&](const Record& r) -> Status {
      since.push_back(r.meta.path + "@" + std::to_string(r.seq) + (r.origin != 0 ? "<-peer" : ""));
      return {};
    }).ok());
    CHECK(since == std::vector<std::string>{"certs/b.pem@2", "certs/a.pem@3<-peer"});
    CHECK(*idx->count() == 2);
  }

  TEST_CASE("for_each_under selects a directory and what lies below it - nothing else") {
    test::TempDir t("idx");
    auto idx = Index::open(t / "s");
    REQUIRE(idx.ok());
    for (const char* p : {"d", "d/x", "d/sub/y", "d0", "d.txt", "dd/z", "e"}) {
      Record r = rec(p, 1);
      REQUIRE(idx->put(r).ok());
    }
    std::vector<std::string> under;
    REQUIRE(idx->for_each_under("d", [&](const Record& r) -> Status {
      under.push_back(r.meta.path);
      return {};
    }).ok());
    CHECK(under == std::vector<std::string>{"d", "d/sub/y", "d/x"});
    size_t all = 0;
    REQUIRE(idx->for_each_under("", [&](const Record&) -> Status {
      ++all;
      return {};
    }).ok());
    CHECK(all == 7);
  }

  TEST_CASE("for_each_in_apply_order: live records parents first - then tombstones deepest first - whatever the seq order") {
    test::TempDir t("idx");
    auto idx = Index::open(t / "s");
    REQUIRE(idx.ok());
    // Written children first and interleaved, so sequence order is no help.
    for (const char* p : {"x/y/z", "b/c", "x/y", "a-", "b", "x", "a", "a/\xff"}) {
      Record r = rec(p, 1);
      r.meta.deleted = p[0] == 'x';
      REQUIRE(idx->put(r).ok());
    }
    std::vector<std::string> order;
    REQUIRE(idx->for_each_in_apply_order([&](const Record& r) -> Status {
      order.push_back(r.meta.path);
      return {};
    }).ok());
    // Byte order: '-' (0x2D) < '/' (0x2F); 0xFF sorts last, not first (no signed chars).
    CHECK(order == std::vector<std::string>{"a", "a-", "a/\xff", "b", "b/c", "x/y/z", "x/y", "x"});
    // A failing callback stops it and its error comes back.
    size_t seen = 0;
    auto st = idx->for_each_in_apply_order([&](const Record&) -> Status {
      return ++seen == 2 ? Status(Error::make(errc::internal, "stop")) : Status();
    });
    CHECK_FALSE(st.ok());
    CHECK(seen == 2);
  }

  TEST_CASE("the version counter never repeats across restarts and crashes") {
    test::TempDir t("idx");
    uint64_t last = 0;
    {
      auto idx = Index::open(t / "s");
      REQUIRE(idx.ok());
      for (int i = 0; i < 5; ++i) {
        auto c = idx->next_counter();
        REQUIRE(c.ok());
        CHECK(*c > last);
        last = *c;
      }
    }  // "crash": nothing flushed but the high-water mark
    auto idx = Index::open(t / "s");
    REQUIRE(idx.ok());
    auto c = idx->next_counter();
    REQUIRE(c.ok());
    CHECK(*c > last);
  }

  TEST_CASE("a counter is handed out even when its high-water mark cannot be written - and never repeats") {
    test::require_root();  // chattr +i
    test::TempDir t("idx");
    auto idx = Index::open(t / "s");
    REQUIRE(idx.ok());
    auto first = idx->next_counter();  // writes the mark: the WAL exists from here on
    REQUIRE(first.ok());
    // Every write to the index now fails (EPERM), as on a failing state disk.
    const std::string wal = t / "s/index.db-wal";
    REQUIRE(std::system(("chattr +i " + wal).c_str()) == 0);
    auto writable = ScopeGuard([&]() noexcept { (void)std::system(("chattr -i " + wal).c_str()); });
    uint64_t last = *first;
    bool failed = false;
    for (int i = 0; i < 3000 && !failed; ++i) {  // the mark is written once per 1024 counters
      failed = !idx->next_counter().ok();
      CHECK(idx->counter() > last);
      last = idx->counter();
    }
    REQUIRE(failed);
    const Author a = author_now(*idx);  // logs the error, still a fresh counter
    CHECK(a.counter > last);
    CHECK(a.node == idx->node_id());
  }

  TEST_CASE("a rolled-back transaction leaves no trace and sequence numbers are reused") {
    test::TempDir t("idx");
    auto idx = Index::open(t / "s");
    REQUIRE(idx.ok());
    Record a = rec("a", 1);
    REQUIRE(idx->put(a).ok());
    {
      auto txn = idx->begin();
      REQUIRE(txn.ok());
      Record b = rec("b", 2);
      REQUIRE(idx->put(b).ok());
      CHECK(b.seq == 2);
      CHECK_FALSE(idx->begin().ok());  // no nesting
    }  // destroyed without commit
    CHECK_FALSE(idx->get("b")->has_value());
    CHECK(idx->max_seq() == 1);
    {
      auto txn = idx->begin();
      REQUIRE(txn.ok());
      Record b = rec("b", 2);
      REQUIRE(idx->put(b).ok());
      CHECK(b.seq == 2);
      REQUIRE(txn->commit().ok());
    }
    CHECK(idx->get("b")->has_value());
  }

  TEST_CASE("fingerprint refresh keeps the sequence number") {
    test::TempDir t("idx");
    auto idx = Index::open(t / "s");
    REQUIRE(idx.ok());
    Record a = rec("a", 1);
    REQUIRE(idx->put(a).ok());
    fs::Fingerprint fp = a.fp;
    fp.ino = 99;
    fp.ctime_ns = 5;
    REQUIRE(idx->set_fingerprint("a", fp).ok());
    auto got = idx->get("a");
    REQUIRE(got.ok());
    CHECK((*got)->fp == fp);
    CHECK((*got)->seq == a.seq);
    // A racy fingerprint stays racy: reopened, it still proves nothing (fs/fingerprint.h).
    fp.racy = true;
    REQUIRE(idx->set_fingerprint("a", fp).ok());
    CHECK((*idx->get("a"))->fp.racy);
    fp.racy = false;
    REQUIRE(idx->set_fingerprint("a", fp).ok());
    CHECK_FALSE((*idx->get("a"))->fp.racy);
  }

  TEST_CASE("cached signatures per path and peer") {
    test::TempDir t("idx");
    auto idx = Index::open(t / "s");
    REQUIRE(idx.ok());
    CachedSignature s;
    s.base_hash.fill(7);
    s.signature = {1, 2, 3};
    REQUIRE(idx->put_signature("big.bin", 11, s).ok());
    auto got = idx->get_signature("big.bin", 11);
    REQUIRE(got.ok());
    REQUIRE(got->has_value());
    CHECK((*got)->base_hash == s.base_hash);
    CHECK((*got)->signature == s.signature);
    CHECK_FALSE(idx->get_signature("big.bin", 12)->has_value());
    s.signature = {9};
    REQUIRE(idx->put_signature("big.bin", 11, s).ok());
    CHECK((*idx->get_signature("big.bin", 11))->signature == Bytes{9});
    CHECK(*idx->has_signature("big.bin", 11));
    REQUIRE(idx->signature_base("big.bin", 11).ok());
    CHECK(*idx->signature_base("big.bin", 11) == std::optional<protocol::Hash256>(s.base_hash));
    CHECK_FALSE(idx->signature_base("big.bin", 12)->has_value());
    REQUIRE(idx->forget_signature("big.bin", 11).ok());
    CHECK_FALSE(*idx->has_signature("big.bin", 11));
    CHECK_FALSE(idx->signature_base("big.bin", 11)->has_value());
    CHECK_FALSE(idx->get_signature("big.bin", 11)->has_value());
    CHECK(idx->forget_signature("never.bin", 11).ok());  // nothing to forget is fine
  }

  TEST_CASE("a corrupted stored record is reported - never trusted") {
    test::TempDir t("idx");
    {
      auto idx = Index::open(t / "s");
      REQUIRE(idx.ok());
      Record a = rec("a", 1);
      REQUIRE(idx->put(a).ok());
    }
    auto db = Db::open(t / "s/index.db");
    REQUIRE(db.ok());
    // Damage the stored record: it must fail the same validation as bytes from the wire.
    REQUIRE(db->exec("UPDATE files SET record = X'0000' WHERE path = CAST('a' AS BLOB)").ok());
    auto idx = Index::open(t / "s");
    REQUIRE(idx.ok());
    auto got = idx->get("a");
    REQUIRE_FALSE(got.ok());
    CHECK(got.error().message().find("stored record") != std::string::npos);
  }

  TEST_CASE("an exclusively opened index refuses a second user until it is closed") {
    test::TempDir t("idx");
    {
      auto owner = Index::open(t / "s", Index::Sharing::exclusive);
      REQUIRE(owner.ok());
      Record a = rec("a", 1);
      REQUIRE(owner->put(a).ok());
      auto other = Index::open(t / "s");
      REQUIRE_FALSE(other.ok());
      CHECK(other.error().message().find("held by another process") != std::string::npos);
      // A lock, not damage: the operator must not be told the index is corrupt.
      CHECK(other.error().is_errno(EBUSY));
      CHECK(other.error().message().find("corrupt") == std::string::npos);
      // The owner goes on working after the refusal.
      Record b = rec("b", 1);
      REQUIRE(owner->put(b).ok());
    }
    auto again = Index::open(t / "s", Index::Sharing::exclusive);
    REQUIRE(again.ok());
    auto b = again->get("b");
    REQUIRE(b.ok());
    CHECK(b->has_value());
    // No shared-memory WAL index next to the database: the exclusive lock keeps it in the heap.
    CHECK_FALSE(test::exists(t / "s/index.db-shm"));
  }

  TEST_CASE("kill -9 in the middle of writes: every committed record is there after reopening") {
    test::TempDir t("idx");
    int pipefd[2];
    REQUIRE(::pipe(pipefd) == 0);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(pipefd[0]);
      auto idx = Index::open(t / "s");
      if (!idx.ok()) ::_exit(1);
      for (int i = 0;; ++i) {
        auto txn = idx->begin();
        if (!txn.ok()) ::_exit(2);
        Record r = rec("f" + std::to_string(i % 500), static_cast<uint8_t>(i), static_cast<uint64_t>(i + 1));
        if (!idx->put(r).ok() || !txn->commit().ok()) ::_exit(3);
        // Report the commit only after it returned.
        const uint32_t n = static_cast<uint32_t>(i + 1);
        if (::write(pipefd[1], &n, sizeof n) != sizeof n) ::_exit(4);
      }
    }
    ::close(pipefd[1]);
    uint32_t committed = 0, n = 0;
    while (committed < 300 && ::read(pipefd[0], &n, sizeof n) == sizeof n) committed = n;
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    while (::read(pipefd[0], &n, sizeof n) == sizeof n) committed = n;  // reported before death
    ::close(pipefd[0]);
    REQUIRE(committed >= 300);
    auto idx = Index::open(t / "s");
    REQUIRE_MESSAGE(idx.ok(), idx.error().message());
    CHECK(idx->max_seq() >= committed);
    // The last reported commit is readable with its content.
    const uint32_t last = committed - 1;
    auto got = idx->get("f" + std::to_string(last % 500));
    REQUIRE(got.ok());
    REQUIRE(got->has_value());
    CHECK((*got)->meta.version[0].counter >= last + 1);
  }

  TEST_CASE("a new index is seeding until its first full scan is recorded - what it finds then is dated by its files' times") {
    test::TempDir t("idx");
    {
      auto idx = Index::open(t / "state");
      REQUIRE(idx.ok());
      CHECK(idx->seeding());
      Entry old;
      old.fp.mtime_ns = 1'700'000'000'123'456'789;  // 2023: an older copy of the tree
      const Author a = author_found(*idx, old);
      CHECK(a.hlc == Hlc::pack(1'700'000'000'123, 456'789ull * 65536 / 1'000'000));
      CHECK(a.counter == idx->counter());  // a counter is still handed out
      // Never later than now: a file dated in the future (a skewed writer), or before 1970.
      Entry future;
      future.fp.mtime_ns = static_cast<int64_t>(Hlc::wall_ms() + 86'400'000) * 1'000'000;
      const Author f = author_found(*idx, future);
      CHECK(Hlc::millis(f.hlc) <= Hlc::wall_ms());
      CHECK(f.hlc > a.hlc);
      Entry ancient;
      ancient.fp.mtime_ns = -5;
      CHECK(author_found(*idx, ancient).hlc > f.hlc);
      CHECK(idx->first_scan());
      REQUIRE(idx->first_scan_done().ok());
      CHECK_FALSE(idx->seeding());
      CHECK_FALSE(idx->first_scan());
    }
    auto again = Index::open(t / "state");
    REQUIRE(again.ok());
    CHECK_FALSE(again->seeding());
    {
      // Each start's first scan dates what it finds by the file (changed while no daemon
      // watched), never before the version it replaces; afterwards the clock dates changes.
      REQUIRE(again->first_scan());
      Entry offline;
      offline.fp.mtime_ns = 1'700'000'000'123'456'789;
      Record prev;
      CHECK(author_of_found(*again, offline, prev, Change::content).hlc == Hlc::pack(1'700'000'000'123, 456'789ull * 65536 / 1'000'000));
      prev.meta.content_ts = Hlc::pack(1'700'000'001'000, 0);  // replaced a later version
      CHECK(author_of_found(*again, offline, prev, Change::content).hlc == prev.meta.content_ts + 1);
      prev.meta.meta_ts = prev.meta.content_ts + 7;
      CHECK(author_of_found(*again, offline, prev, Change::content).hlc == prev.meta.meta_ts + 1);
      CHECK(author_of_found(*again, offline, std::nullopt, Change::both).hlc < prev.meta.content_ts);
      // A chmod, chown or touch: dated by ctime (a touch -d sets mtime to anything).
      offline.fp.ctime_ns = 1'700'000'005'000'000'000;
      CHECK(author_of_found(*again, offline, prev, Change::meta).hlc == Hlc::pack(1'700'000'005'000, 0));
      CHECK(author_of_found(*again, offline, prev, Change::content).hlc == prev.meta.meta_ts + 1);
      REQUIRE(again->first_scan_done().ok());
      CHECK(Hlc::millis(author_of_found(*again, offline, prev, Change::content).hlc) >= Hlc::wall_ms() - 60'000);
    }
    // An index made before the flag was kept has been scanned: never seeding.
    {
      auto made = Index::open(t / "older");
      REQUIRE(made.ok());
      CHECK(made->seeding());
    }
    {
      auto db = Db::open(t / "older/index.db");
      REQUIRE(db.ok());
      REQUIRE(db->exec("DELETE FROM meta WHERE k = 'seeding'").ok());
    }
    auto older = Index::open(t / "older");
    REQUIRE(older.ok());
    CHECK_FALSE(older->seeding());
  }

  TEST_CASE("an index from before racy fingerprints forgets fingerprints only - signatures, records and ids stay") {
    test::TempDir t("idx");
    // Version 3 trusted every fingerprint: one taken in its file's last tick may hide a write.
    Index idx = reopened_from_schema(t, 3);
    CHECK(*idx.has_signature("f", 7));
  }

  TEST_CASE("an index from before the chunked content hash forgets fingerprints and signatures - records and ids stay") {
    test::TempDir t("idx");
    // Up to version 2 a big file's hash was its plain SHA-256: signatures' base hashes are stale.
    Index idx = reopened_from_schema(t, 2);
    auto sig = idx.get_signature("f", 7);
    REQUIRE(sig.ok());
    CHECK_FALSE(sig->has_value());
  }
}
