#include "lib/engine/reconcile.h"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <tuple>

#include "lib/engine/version.h"

namespace syncd::engine {
namespace {

using protocol::FileMeta;

uint64_t counter_of(const protocol::VersionVector& v, uint64_t node) noexcept {
  for (const auto& e : v) {
    if (e.node == node) return e.counter;
  }
  return 0;
}

bool same_meta(const FileMeta& a, const FileMeta& b) noexcept {
  // A directory's mtime moves with every entry added or removed: never part of its version.
  const bool dir = a.type == protocol::FileType::dir && b.type == protocol::FileType::dir;
  return a.mode == b.mode && a.uid == b.uid && a.gid == b.gid && a.xattrs == b.xattrs &&
         (dir || (a.mtime_sec == b.mtime_sec && a.mtime_nsec == b.mtime_nsec));
}

// The winner key of §4.4 step 5: live > deleted, dir > non-dir, content time, author, hash.
auto winner_key(const FileMeta& m) {
  return std::make_tuple(m.deleted ? 0 : 1, m.type == protocol::FileType::dir ? 1 : 0, m.content_ts,
                         m.content_dot.node, m.sha256);
}

// A total order on records, used only to make choices among equal keys independent of input order.
bool total_less(const FileMeta& a, const FileMeta& b) {
  if (winner_key(a) != winner_key(b)) return winner_key(a) < winner_key(b);
  return std::tie(a.meta_ts, a.meta_dot.node, a.mode, a.uid, a.gid, a.mtime_sec, a.mtime_nsec) <
         std::tie(b.meta_ts, b.meta_dot.node, b.mode, b.uid, b.gid, b.mtime_sec, b.mtime_nsec);
}

enum class Group { content, meta };

const protocol::Dot& dot(const FileMeta& m, Group g) { return g == Group::content ? m.content_dot : m.meta_dot; }
uint64_t ts(const FileMeta& m, Group g) { return g == Group::content ? m.content_ts : m.meta_ts; }
bool same_value(const FileMeta& a, const FileMeta& b, Group g) {
  return g == Group::content ? same_content(a, b) : same_meta(a, b);
}

// TWO-WAY.md §4.11: a live file or link holding exactly what a concurrent tombstone deleted (the
// tombstone keeps the deleted content's hash) is that content found again — by a node that lost
// its index, or one started on an older copy of the tree — not a new write: the delete stands.
// Otherwise the live record would win (live > deleted) and bring the deleted file back.
// A directory has no content but its entries, each judged on its own: a live directory concurrent
// with a directory's tombstone is found again too, and the delete stands. It comes back only
// with a live entry inside, which the applier re-asserts it for (§4.7); before, such a node
// brought every directory deleted since back, empty, on every node.
template <typename Range, typename Get>
bool found_again(const FileMeta& x, const Range& others, Get get) {
  if (x.deleted) return false;
  const bool dir = x.type == protocol::FileType::dir;
  if (!dir && x.sha256 == protocol::Hash256{}) return false;
  return std::any_of(others.begin(), others.end(), [&](const auto& o) {
    const FileMeta& t = get(o);
    return t.deleted && t.type == x.type && (dir || t.sha256 == x.sha256);
  });
}

struct GroupChoice {
  const FileMeta* from = nullptr;  // the member whose value (and dot) the group takes
  bool conflict = false;           // candidates disagree
};

// Step 3 for one group over the frontier `f`.
GroupChoice choose(const std::vector<FileMeta>& f, Group g) {
  std::vector<const FileMeta*> cand;
  for (const auto& x : f) {
    bool superseded = false;
    for (const auto& y : f) {
      if (&x == &y) continue;
      if (has_seen(y.version, dot(x, g)) && !(dot(y, g) == dot(x, g))) {
        superseded = true;
        break;
      }
    }
    if (!superseded) cand.push_back(&x);
  }
  if (cand.empty()) {  // cannot happen with consistent records; stay total anyway
    for (const auto& x : f) cand.push_back(&x);
  }
  if (g == Group::content) {
    std::vector<const FileMeta*> kept;
    for (const FileMeta* x : cand) {
      if (!found_again(*x, cand, [](const FileMeta* t) -> const FileMeta& { return *t; })) kept.push_back(x);
    }
    cand = std::move(kept);  // never empty: the tombstones stay
  }
  GroupChoice c;
  for (const FileMeta* x : cand) {
    if (!same_value(*x, *cand.front(), g)) c.conflict = true;
  }
  // Largest (ts, author) wins the group: the newest value when they agree, last writer when not.
  c.from = *std::max_element(cand.begin(), cand.end(), [&](const FileMeta* a, const FileMeta* b) {
    const auto ka = std::make_tuple(ts(*a, g), dot(*a, g).node);
    const auto kb = std::make_tuple(ts(*b, g), dot(*b, g).node);
    return ka != kb ? ka < kb : total_less(*a, *b);
  });
  return c;
}

}  // namespace

bool same_content(const FileMeta& a, const FileMeta& b) noexcept {
  if (a.deleted || b.deleted) return a.deleted == b.deleted;
  return a.type == b.type && a.sha256 == b.sha256 && a.size == b.size && a.symlink_target == b.symlink_target;
}

bool has_seen(const protocol::VersionVector& v, const protocol::Dot& d) noexcept {
  return d.counter != 0 && counter_of(v, d.node) >= d.counter;
}

Global global_record(std::vector<FileMeta> s) {
  Global out;
  // Equal versions count once (the largest record by total order, so input order never matters).
  std::sort(s.begin(), s.end(), total_less);
  std::vector<FileMeta> f;
  for (size_t i = 0; i < s.size(); ++i) {
    bool dominated = false;
    for (size_t j = 0; j < s.size() && !dominated; ++j) {
      if (i == j) continue;
      const Order o = compare(s[i].version, s[j].version);
      dominated = o == Order::before || (o == Order::equal && j > i);
    }
    if (!dominated) f.push_back(s[i]);
  }
  if (f.size() == 1) {
    out.record = f.front();
    return out;
  }
  const GroupChoice content = choose(f, Group::content);
  if (content.conflict) {
    out.content_conflict = true;
    // Content found again never wins (see found_again); a tombstone is then always there.
    std::vector<FileMeta> contenders;
    for (const auto& x : f) {
      if (!found_again(x, f, [](const FileMeta& t) -> const FileMeta& { return t; })) contenders.push_back(x);
    }
    out.record = *std::max_element(contenders.begin(), contenders.end(), total_less);
    return out;
  }
  const GroupChoice meta = choose(f, Group::meta);
  out.meta_conflict = meta.conflict;
  FileMeta g = *content.from;  // content group, and everything else when it is a tombstone
  protocol::VersionVector v;
  for (const auto& x : f) v = merge(v, x.version);
  g.version = std::move(v);
  if (!g.deleted) {
    const FileMeta& m = *meta.from;
    g.mode = m.mode;
    g.uid = m.uid;
    g.gid = m.gid;
    g.user = m.user;
    g.group = m.group;
    g.xattrs = m.xattrs;
    g.meta_dot = m.meta_dot;
    g.meta_ts = m.meta_ts;
    if (same_content(m, g)) {
      g.mtime_sec = m.mtime_sec;
      g.mtime_nsec = m.mtime_nsec;
    } else {
      // The meta side never held this content: the latest mtime of the members that did.
      for (const auto& x : f) {
        if (same_content(x, g) && std::tie(x.mtime_sec, x.mtime_nsec) > std::tie(g.mtime_sec, g.mtime_nsec)) {
          g.mtime_sec = x.mtime_sec;
          g.mtime_nsec = x.mtime_nsec;
        }
      }
    }
  }
  out.record = std::move(g);
  return out;
}

Decision decide(const std::optional<FileMeta>& local, const FileMeta& remote) {
  Decision d;
  if (!local) {
    d.action = Action::apply;
    d.target = remote;
    return d;
  }
  const Global g = global_record({*local, remote});
  d.target = g.record;
  d.content_conflict = g.content_conflict;
  d.meta_conflict = g.meta_conflict;
  d.content_from_local = same_content(g.record, *local);
  const Order o = compare(g.record.version, local->version);
  if (o == Order::equal) {
    // G is what we hold (possibly the winner of a conflict); a differing state under an equal
    // version would be corruption, and the record that is on disk stays.
    d.local_wins = g.content_conflict;
    d.action = Action::none;
    return d;
  }
  d.action = Action::apply;
  if (o == Order::concurrent && g.content_conflict && !local->deleted && !same_content(*local, g.record) &&
      !has_seen(g.record.version, local->content_dot)) {
    d.action = Action::keep_copy_then_apply;
  }
  return d;
}

std::string node_short(uint64_t node) {
  static constexpr char kB32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  std::string s;
  for (int i = 0; i < 7; ++i) s += kB32[(node >> (59 - 5 * i)) & 31];
  return s;
}

std::optional<ConflictCopyName> parse_conflict_copy_name(std::string_view path) {
  static constexpr std::string_view kMark = ".sync-conflict-";
  const size_t at = path.rfind(kMark);
  // <when 15>-<node 7>-<h8 8> after the mark, nothing else.
  if (at == std::string_view::npos || path.size() - at - kMark.size() != 15 + 1 + 7 + 1 + 8) return std::nullopt;
  const std::string_view rest = path.substr(at + kMark.size());
  auto all = [](std::string_view v, auto pred) { return std::all_of(v.begin(), v.end(), pred); };
  const auto digit = [](char ch) { return ch >= '0' && ch <= '9'; };
  const auto b32 = [](char ch) { return (ch >= 'A' && ch <= 'Z') || (ch >= '2' && ch <= '7'); };
  const auto hex = [](char ch) { return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'); };
  if (!all(rest.substr(0, 8), digit) || rest[8] != '-' || !all(rest.substr(9, 6), digit) || rest[15] != '-' ||
      !all(rest.substr(16, 7), b32) || rest[23] != '-' || !all(rest.substr(24, 8), hex)) {
    return std::nullopt;
  }
  return ConflictCopyName{std::string(path.substr(0, at)), std::string(rest.substr(0, 15)),
                          std::string(rest.substr(16, 7)), std::string(rest.substr(24, 8))};
}

std::string conflict_copy_name(std::string_view path, const FileMeta& loser) {
  const time_t secs = static_cast<time_t>((loser.content_ts >> 16) / 1000);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char when[32];
  std::snprintf(when, sizeof when, "%04d%02d%02d-%02d%02d%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec);
  char h8[9];
  std::snprintf(h8, sizeof h8, "%02x%02x%02x%02x", loser.sha256[0], loser.sha256[1], loser.sha256[2], loser.sha256[3]);
  const std::string suffix = std::string(".sync-conflict-") + when + "-" + node_short(loser.content_dot.node) + "-" + h8;
  const size_t slash = path.rfind('/');
  const std::string_view dir = slash == std::string_view::npos ? std::string_view() : path.substr(0, slash + 1);
  std::string_view leaf = slash == std::string_view::npos ? path : path.substr(slash + 1);
  if (leaf.size() + suffix.size() > 255) leaf = leaf.substr(0, 255 - suffix.size());
  return std::string(dir) + std::string(leaf) + suffix;
}

}  // namespace syncd::engine
