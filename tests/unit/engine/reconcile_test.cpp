// The outcomes table of TWO-WAY.md §4.5, case by case, and the order-independence property of §6.
#include <doctest/doctest.h>

#include <algorithm>
#include <random>

#include "lib/engine/reconcile.h"
#include "lib/engine/version.h"

using namespace syncd;
using namespace syncd::engine;
using protocol::FileMeta;

namespace {

constexpr uint64_t A = 0xA000000000000001ull, B = 0xB000000000000002ull, C = 0xC000000000000003ull;

protocol::Hash256 hash_of(uint8_t b) {
  protocol::Hash256 h{};
  h.fill(b);
  return h;
}

// A live file created by `node` at counter `c`, time `t`, content byte `h`.
FileMeta created(uint64_t node, uint64_t c, uint64_t t, uint8_t h, uint32_t mode = 0644) {
  FileMeta m;
  m.path = "certs/a.pem";
  m.size = 10;
  m.mode = mode;
  m.mtime_sec = static_cast<int64_t>(t);
  m.version = {{node, c}};
  m.content_dot = {node, c};
  m.content_ts = t << 16;
  m.meta_dot = {node, c};
  m.meta_ts = t << 16;
  m.sha256 = hash_of(h);
  return m;
}

void bump(FileMeta& m, uint64_t node, uint64_t c) {
  bool found = false;
  for (auto& e : m.version) {
    if (e.node == node) {
      e.counter = c;
      found = true;
    }
  }
  if (!found) {
    m.version.push_back({node, c});
    std::sort(m.version.begin(), m.version.end(), [](auto& x, auto& y) { return x.node < y.node; });
  }
}

FileMeta modified(FileMeta m, uint64_t node, uint64_t c, uint64_t t, uint8_t h) {
  bump(m, node, c);
  m.content_dot = {node, c};
  m.content_ts = t << 16;
  m.sha256 = hash_of(h);
  m.mtime_sec = static_cast<int64_t>(t);
  return m;
}

FileMeta chmodded(FileMeta m, uint64_t node, uint64_t c, uint64_t t, uint32_t mode) {
  bump(m, node, c);
  m.meta_dot = {node, c};
  m.meta_ts = t << 16;
  m.mode = mode;
  return m;
}

// As store::author_delete makes it: the hash of what it deleted stays (TWO-WAY.md §4.11).
FileMeta deleted(FileMeta m, uint64_t node, uint64_t c, uint64_t t) {
  bump(m, node, c);
  m.deleted = true;
  m.size = 0;
  m.content_dot = {node, c};
  m.content_ts = t << 16;
  return m;
}

}  // namespace

TEST_SUITE("engine.reconcile") {
  TEST_CASE("fast-forward and stale records") {
    const FileMeta v1 = created(A, 1, 100, 1);
    const FileMeta v2 = modified(v1, A, 2, 101, 2);
    auto d = decide(v1, v2);
    CHECK(d.action == Action::apply);
    CHECK(d.target == v2);
    CHECK_FALSE(d.content_conflict);
    d = decide(v2, v1);  // a stale echo never overwrites
    CHECK(d.action == Action::none);
    d = decide(v2, v2);
    CHECK(d.action == Action::none);
    d = decide(std::nullopt, v1);
    CHECK(d.action == Action::apply);
  }

  TEST_CASE("create/create with different content: later content wins, loser copied where held") {
    const FileMeta a = created(A, 1, 100, 1), b = created(B, 1, 200, 2);
    auto at_a = decide(a, b);
    CHECK(at_a.action == Action::keep_copy_then_apply);
    CHECK(at_a.target == b);  // the winner is adopted as it is, vector included
    CHECK(at_a.content_conflict);
    auto at_b = decide(b, a);
    CHECK(at_b.action == Action::none);
    CHECK(at_b.local_wins);
    // Same winner on both nodes, whatever the order the records arrive in.
    CHECK(global_record({a, b}).record == global_record({b, a}).record);
  }

  TEST_CASE("equal times: the node id breaks the tie, then the hash") {
    const FileMeta a = created(A, 1, 100, 1), b = created(B, 1, 100, 2);
    CHECK(global_record({a, b}).record == b);  // B > A
    FileMeta a2 = created(A, 1, 100, 9);
    a2.version = {{A, 1}, {C, 1}};
    FileMeta a3 = created(A, 1, 100, 3);
    a3.version = {{A, 1}, {B, 5}};
    CHECK(global_record({a2, a3}).record.sha256 == hash_of(9));
  }

  TEST_CASE("create/create with the same content and meta merges without a conflict") {
    FileMeta a = created(A, 1, 100, 7), b = created(B, 1, 100, 7);
    auto d = decide(a, b);
    CHECK_FALSE(d.content_conflict);
    CHECK(d.action == Action::apply);  // to the merged vector, no copy
    CHECK(d.content_from_local);
    CHECK(compare(d.target.version, a.version) == Order::after);
    CHECK(compare(d.target.version, b.version) == Order::after);
    CHECK(decide(b, a).target == d.target);  // both nodes compute the same record
  }

  TEST_CASE("modify vs delete: the modification survives, in either order, without a copy") {
    const FileMeta base = created(A, 1, 100, 1);
    const FileMeta mod = modified(base, A, 2, 150, 2);
    const FileMeta del = deleted(base, B, 1, 200);  // later in time, still loses
    auto at_deleter = decide(del, mod);
    CHECK(at_deleter.action == Action::apply);
    CHECK_FALSE(at_deleter.target.deleted);
    CHECK(at_deleter.target.sha256 == hash_of(2));
    auto at_modifier = decide(mod, del);
    CHECK(at_modifier.action == Action::none);
  }

  TEST_CASE("a delete that saw the modification wins everywhere") {
    const FileMeta mod = modified(created(A, 1, 100, 1), A, 2, 150, 2);
    const FileMeta del = deleted(mod, B, 1, 160);
    auto d = decide(mod, del);
    CHECK(d.action == Action::apply);
    CHECK(d.target.deleted);
  }

  TEST_CASE("content found again: a file holding exactly what a concurrent delete removed is deleted, in either order, no copy") {
    // C lost its index (or started on an older copy of the tree): its scan made a version of a
    // file the others deleted meanwhile, later in time. Live beats deleted otherwise.
    const FileMeta base = created(A, 1, 100, 1);
    const FileMeta del = deleted(modified(base, A, 2, 150, 2), B, 1, 200);  // deleted v2
    const FileMeta found = created(C, 1, 900, 2);                        // v2 again, much later
    auto at_c = decide(found, del);
    CHECK(at_c.action == Action::apply);
    CHECK(at_c.target.deleted);
    CHECK_FALSE(at_c.content_conflict);
    CHECK(compare(at_c.target.version, found.version) == Order::after);  // C's version is settled by it
    auto at_b = decide(del, found);
    CHECK(at_b.target == at_c.target);
    CHECK(at_b.target.deleted);
    CHECK(global_record({found, del}).record == global_record({del, found}).record);
    // Other content than what was deleted is a write: it survives the delete, as before.
    const FileMeta other = created(C, 1, 900, 3);
    CHECK_FALSE(decide(other, del).target.deleted);
    CHECK(decide(del, other).target.sha256 == hash_of(3));
    // An older content than the deleted one (v1): also a write here (no history of hashes).
    CHECK_FALSE(decide(created(C, 1, 900, 1), del).target.deleted);
    // A tombstone without the hash (older syncd) decides as before: the live record wins.
    FileMeta bare = del;
    bare.sha256 = {};
    CHECK_FALSE(decide(found, bare).target.deleted);
  }

  TEST_CASE("a directory found again by a node that lost its index stays deleted, in either order, no copy") {
    // C started on an older copy of the tree: its scan made a version of a directory the others
    // deleted meanwhile. Its entries are judged one by one; the directory itself has nothing of
    // its own to keep (before, live beat deleted and it came back, empty, on every node).
    FileMeta dir = created(A, 1, 100, 0);
    dir.type = protocol::FileType::dir;
    dir.sha256 = {};
    dir.size = 0;
    FileMeta del = deleted(dir, B, 1, 200);
    FileMeta found = created(C, 1, 900, 0);
    found.type = protocol::FileType::dir;
    found.sha256 = {};
    found.size = 0;
    for (const auto& [local, remote] : {std::pair{found, del}, std::pair{del, found}}) {
      const Decision d = decide(local, remote);
      CHECK(d.target.deleted);
      CHECK_FALSE(d.content_conflict);
    }
    CHECK(global_record({found, del}).record == global_record({del, found}).record);
    // A file's tombstone at that name is not a directory's: the directory is new there (§4.5,
    // type change: the directory wins).
    const FileMeta file_del = deleted(created(A, 1, 100, 1), B, 1, 200);
    CHECK_FALSE(decide(found, file_del).target.deleted);
    // A directory that saw the delete (re-asserted for a live entry inside, §4.7) is not found
    // again: it dominates the tombstone.
    FileMeta reasserted = del;
    bump(reasserted, C, 1);
    reasserted.deleted = false;
    reasserted.content_dot = {C, 1};
    reasserted.content_ts = 900u << 16;
    CHECK_FALSE(decide(del, reasserted).target.deleted);
  }

  TEST_CASE("content found again never wins a three-way conflict") {
    const FileMeta base = created(A, 1, 100, 1);
    const FileMeta del = deleted(base, A, 2, 150);
    const FileMeta found = created(C, 1, 900, 1);   // what A deleted, found again, latest of all
    const FileMeta write = created(B, 1, 300, 4);   // a real concurrent write
    const Global g = global_record({del, found, write});
    CHECK(g.content_conflict);
    CHECK(g.record.sha256 == hash_of(4));
    CHECK(global_record({write, found, del}).record == g.record);
  }

  TEST_CASE("delete/delete merges") {
    const FileMeta base = created(A, 1, 100, 1);
    auto d = decide(deleted(base, A, 2, 150), deleted(base, B, 1, 151));
    CHECK_FALSE(d.content_conflict);
    CHECK(d.target.deleted);
    CHECK(d.action == Action::apply);  // only the record moves to the merged vector
  }

  TEST_CASE("content change vs chmod merge field by field") {
    const FileMeta base = created(A, 1, 100, 1, 0644);
    const FileMeta content = modified(base, A, 2, 150, 2);
    const FileMeta mode = chmodded(base, B, 1, 160, 0600);
    for (auto [l, r] : {std::pair{content, mode}, std::pair{mode, content}}) {
      auto d = decide(l, r);
      CHECK_FALSE(d.content_conflict);
      CHECK(d.action == Action::apply);
      CHECK(d.target.sha256 == hash_of(2));
      CHECK(d.target.mode == 0600);  // a chmod 0600 on a key is never silently undone
      CHECK(d.target.mtime_sec == 150);  // the mtime of the content that won
    }
    CHECK(decide(content, mode).target == decide(mode, content).target);
  }

  TEST_CASE("chmod vs chmod: last writer wins, no copy") {
    const FileMeta base = created(A, 1, 100, 1, 0644);
    auto d = decide(chmodded(base, A, 2, 150, 0640), chmodded(base, B, 1, 170, 0600));
    CHECK(d.meta_conflict);
    CHECK_FALSE(d.content_conflict);
    CHECK(d.target.mode == 0600);
  }

  TEST_CASE("meta-only change vs delete: the delete stands") {
    const FileMeta base = created(A, 1, 100, 1);
    auto d = decide(chmodded(base, A, 2, 150, 0600), deleted(base, B, 1, 140));
    CHECK(d.target.deleted);
    CHECK(d.action == Action::apply);
  }

  TEST_CASE("a directory beats a file and the file content is copied") {
    FileMeta file = created(A, 1, 300, 1);
    FileMeta dir = created(B, 1, 100, 0);
    dir.type = protocol::FileType::dir;
    dir.sha256 = {};
    dir.size = 0;
    auto d = decide(file, dir);
    CHECK(d.action == Action::keep_copy_then_apply);
    CHECK(d.target.type == protocol::FileType::dir);
  }

  TEST_CASE("an ancestor of the winner is not a loser") {
    // B changed the mode of A's v1 while A wrote v2 and C, having seen v1 only, wrote v3: the
    // winner between v2 and v3 replaces B's copy, whose content (v1) both have seen.
    const FileMeta v1 = created(A, 1, 100, 1);
    const FileMeta b = chmodded(v1, B, 1, 110, 0600);
    FileMeta v3 = modified(v1, C, 1, 300, 3);
    auto d = decide(b, v3);
    CHECK(d.action == Action::apply);  // B's content is v1, seen by v3: no copy
  }

  TEST_CASE("three nodes: the result does not depend on arrival order") {
    const FileMeta base = created(A, 1, 100, 1, 0644);
    std::vector<FileMeta> s = {modified(base, A, 2, 200, 2), chmodded(base, B, 1, 150, 0600),
                               modified(base, C, 1, 250, 3), deleted(base, B, 2, 260)};
    s[3].version = {{A, 1}, {B, 2}};
    const Global ref = global_record(s);
    std::mt19937 rng(42);
    for (int i = 0; i < 50; ++i) {
      std::shuffle(s.begin(), s.end(), rng);
      const Global g = global_record(s);
      CHECK(g.record == ref.record);
      CHECK(g.content_conflict == ref.content_conflict);
    }
    CHECK(ref.content_conflict);
    CHECK(ref.record.sha256 == hash_of(3));  // live, latest content time
  }

  TEST_CASE("conflict copy names are deterministic and bounded") {
    FileMeta loser = created(A, 1, 0, 0xab);
    loser.content_ts = (uint64_t{1795000000123} << 16) | 5;  // 2026-11-18 ...
    const std::string n = conflict_copy_name("ca/issuing_ca_crl.pem", loser);
    CHECK(n.rfind("ca/issuing_ca_crl.pem.sync-conflict-2026", 0) == 0);
    CHECK(n.size() == std::string("ca/issuing_ca_crl.pem.sync-conflict-YYYYMMDD-HHMMSS-NNNNNNN-abababab").size());
    CHECK(n.substr(n.size() - 8) == "abababab");
    CHECK(n == conflict_copy_name("ca/issuing_ca_crl.pem", loser));
    const auto parsed = parse_conflict_copy_name(n);
    REQUIRE(parsed);
    CHECK(parsed->original == "ca/issuing_ca_crl.pem");
    CHECK(parsed->node == node_short(A));
    CHECK(parsed->hash8 == "abababab");
    CHECK_FALSE(parse_conflict_copy_name("ca/issuing_ca_crl.pem"));
    CHECK_FALSE(parse_conflict_copy_name("x.sync-conflict-2026"));
    CHECK_FALSE(parse_conflict_copy_name(n + "x"));
    CHECK(node_short(A) != node_short(B));
    const std::string long_leaf(250, 'x');
    const std::string l = conflict_copy_name("d/" + long_leaf, loser);
    CHECK(l.size() - 2 == 255);
    CHECK(l.find(".sync-conflict-") != std::string::npos);
  }
}
