// Receiver, two-way half (TWO-WAY.md §4.4-4.8): every record a peer announces is reconciled with
// this node's own record for the path — refreshed from the disk first, under the store lock, so a
// local write that the watcher has not reported yet becomes a version instead of being
// overwritten. engine::decide says what to do; this file does it:
//   none                  nothing on disk (a stale or echoed record, or our version won);
//   apply                 make the disk the global record G (fast-forward, field-wise merge, or a
//                         winner over content that was only an ancestor);
//   keep_copy_then_apply  hard-link the losing local content to its conflict-copy name, record
//                         that copy as a new local file, then apply G.
// Writes are guarded by the fingerprint of what was scanned (apply::Expected), so a write racing
// in between makes the apply fail and retry instead of destroying it. A record that is the
// peer's, unchanged, is stored with origin = peer (never echoed back); anything authored or merged
// here is reported through on_authored for the node's senders.
#include <fcntl.h>
#include <sys/stat.h>

#include "lib/base/log.h"
#include "lib/engine/reconcile.h"
#include "lib/engine/version.h"
#include "lib/fs/writers.h"
#include "lib/runtime/receiver.h"
#include "lib/store/change.h"
#include "lib/store/scanner.h"

namespace syncd::runtime {
namespace {

auto& lg() { return log::get(log::Module::runtime); }

protocol::Ack reply(uint64_t seq, protocol::AckStatus st, std::string detail = {}) {
  return protocol::Ack{0, st, seq, std::move(detail)};
}

apply::Expected expected_for(const std::optional<store::Record>& local) {
  if (!local || local->meta.deleted) return apply::Expected::absent();
  return apply::Expected::match(local->fp);
}

// "node ABCDEFG, 2026-11-22 10:00:01 UTC, sha256 0a1b2c3d" for conflict logs.
std::string describe(const protocol::FileMeta& m) {
  if (m.deleted) return "a delete by node " + engine::node_short(m.content_dot.node);
  const std::string n = engine::conflict_copy_name("", m);  // ".sync-conflict-<time>-<node>-<h8>"
  return "node " + engine::node_short(m.content_dot.node) + " at " + n.substr(15, 15) + " UTC, sha256 " +
         n.substr(n.size() - 8);
}

std::string parent_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? std::string() : path.substr(0, slash);
}

}  // namespace

void Receiver::observe_clock(const protocol::FileMeta& m) {
  // Clock skew only changes which side wins a true conflict (TWO-WAY.md §4.1), but a peer more
  // than 5 minutes ahead will keep winning them: say so, once per session.
  const uint64_t ts = std::max(m.content_ts, m.meta_ts);
  const uint64_t now = Hlc::wall_ms();
  if (!skew_warned_ && Hlc::millis(ts) > now + 5 * 60 * 1000) {
    skew_warned_ = true;
    lg().warn("clock skew: a version from the peer is stamped {} s ahead of this node's clock; conflicts "
              "will favour that node until the clocks agree (check NTP)", (Hlc::millis(ts) - now) / 1000);
  }
  index_.hlc().observe(m.content_ts);
  index_.hlc().observe(m.meta_ts);
}

store::Author Receiver::author() {
  return store::author_now(index_);
}

Result<std::optional<store::Record>> Receiver::refresh_local(const std::string& path) {
  SYNCD_TRY_ASSIGN(rec, index_.get(path));
  std::optional<store::Known> known;
  if (rec && !rec->meta.deleted) known = store::Known{rec->fp, rec->meta.sha256};
  SYNCD_TRY_ASSIGN(e, store::scan_one(root_, path, known ? &*known : nullptr));
  if (!e) {
    if (!rec || rec->meta.deleted) return rec;
    if (opts_.deletes_held && opts_.deletes_held()) {
      return Error::make(errc::unexpected_target, "\"" + log::escape(path) + "\" is missing while the mass-delete brake holds");
    }
    store::Record t = store::author_delete(*rec, author());  // deleted here, not yet scanned
    SYNCD_TRY(index_.put(t));
    authored_.push_back(path);
    return std::optional<store::Record>(std::move(t));
  }
  const store::Change kind = store::classify(*e, rec);
  if (kind == store::Change::none) return rec;
  if (kind == store::Change::fingerprint) {
    SYNCD_TRY(index_.set_fingerprint(path, e->fp));
    rec->fp = e->fp;
    return rec;
  }
  // Dated as the node's own scan would date it (before the first scan after a start reached it).
  store::Record r = store::author_version(*e, rec, kind, store::author_of_found(index_, *e, rec, kind));
  SYNCD_TRY(index_.put(r));
  authored_.push_back(path);
  lg().debug("local change found before applying a peer's record: {}", log::escape(path));
  return std::optional<store::Record>(std::move(r));
}

std::optional<protocol::Ack> Receiver::held_by_writer(uint64_t seq, const std::optional<store::Record>& local) {
  if (!local || local->meta.deleted || local->meta.type != protocol::FileType::file) return std::nullopt;
  const std::string& path = local->meta.path;
  auto p = root_.parent_of(path);
  if (!p.ok()) return std::nullopt;  // the apply reports it
  auto fd = root_.open_read(p->dir.get(), p->leaf, path, O_NONBLOCK | O_NOCTTY);
  if (!fd.ok() || fs::writers_of(fd->get()) != fs::Writers::some) return std::nullopt;
  lg().info("{} is open for writing here: the peer's record waits until it is closed", log::escape(path));
  return reply(seq, protocol::AckStatus::failed, "\"" + log::escape(path) + "\" is open for writing on the peer; will retry");
}

Status Receiver::keep_conflict_copy(const store::Record& loser, const protocol::FileMeta& winner) {
  const std::string name = engine::conflict_copy_name(loser.meta.path, loser.meta);
  ++conflicts_;
  lg().warn("conflict: {}: {} loses to {}; its content is kept as {}", log::escape(loser.meta.path),
            describe(loser.meta), describe(winner), log::escape(name));
  if (loser.meta.type == protocol::FileType::dir) return {};  // no content to keep
  auto fp = applier_.link(loser.meta.path, name, apply::Expected::match(loser.fp));
  if (!fp.ok() && fp.error().is(errc::unexpected_target)) {
    // Another holder of the same loser made this copy first and it reached us (TWO-WAY.md §4.5):
    // the name says whose content at what time, so the same bytes there mean it is kept already.
    auto there = store::scan_one(root_, name);
    if (there.ok() && *there && (*there)->type == loser.meta.type && (*there)->sha256 == loser.meta.sha256) return {};
  }
  if (!fp.ok()) return std::move(fp).error().wrap("keep conflict copy");
  const store::Known known{*fp, loser.meta.sha256};
  SYNCD_TRY_ASSIGN(e, store::scan_one(root_, name, &known));
  if (!e) return Error::make(errc::unexpected_target, "conflict copy " + name + " vanished");
  SYNCD_TRY_ASSIGN(prev, index_.get(name));
  store::Record c = store::author_version(*e, prev && !prev->meta.deleted ? prev : std::nullopt,
                                          store::Change::both, author());
  if (prev) c.meta.version = engine::merge(c.meta.version, prev->meta.version);
  SYNCD_TRY(index_.put(c));
  authored_.push_back(name);
  copies_.emplace_back(loser.meta.path, name);
  return {};
}

Status Receiver::reassert_dir(const std::string& path, const protocol::FileMeta& tombstone) {
  SYNCD_TRY_ASSIGN(e, store::scan_one(root_, path));
  if (!e) return Error::make(errc::unexpected_target, "directory " + path + " vanished");
  store::Record prev{tombstone, 0, {}, 0};
  // Dominates the tombstone: the directory lives on with what is still inside (TWO-WAY.md §4.7).
  store::Record r = store::author_version(*e, prev, store::Change::both, author());
  SYNCD_TRY(index_.put(r));
  authored_.push_back(path);
  lg().info("directory {} kept: a peer deleted it while this node still has live entries inside",
            log::escape(path));
  return {};
}

protocol::Ack Receiver::reconcile_version(const protocol::FileVersion& fv, const Bytes& body,
                                          const protocol::Hash256& base, BodyPipe* pipe) {
  const auto& m = fv.meta;
  if (opts_.excludes.excluded(m.path, m.type == protocol::FileType::dir)) {
    advance_or_log(fv.seq);
    return reply(fv.seq, protocol::AckStatus::ignored, "excluded here");
  }
  for (const auto& w : staged_) {
    if (w.meta.path == m.path) {
      flush_staged();  // the disk must show the earlier version of this path before we look
      break;
    }
  }
  auto local = refresh_local(m.path);
  if (!local.ok()) {
    // A file still being written here is never written over: the peer retries after it settles.
    return reply(fv.seq, protocol::AckStatus::failed, local.error().message());
  }
  observe_clock(m);
  std::optional<protocol::FileMeta> lm;
  if (*local) lm = (*local)->meta;
  const engine::Decision d = engine::decide(lm, m);
  if (d.action == engine::Action::none) {
    if (d.local_wins && lm && !lm->deleted && !m.deleted) {
      ++conflicts_;
      lg().warn("conflict: {}: {} wins over {}; the peer keeps its content as {}", log::escape(m.path),
                describe(*lm), describe(m), log::escape(engine::conflict_copy_name(m.path, m)));
    }
    advance_or_log(fv.seq);
    return reply(fv.seq, d.local_wins ? protocol::AckStatus::conflict : protocol::AckStatus::ignored);
  }
  const protocol::FileMeta& g = d.target;
  // A version without bytes whose content wins must already be here (the peer's metadata change,
  // or its first-start probe of a copy it saw listed). When it is not, the bytes are asked for
  // before anything is done, so that a conflict is resolved (and its copy kept) once, with them.
  if (fv.body == protocol::BodyKind::none && fv.link_to.empty() && g.type == protocol::FileType::file &&
      !g.deleted && !d.content_from_local) {
    return reply(fv.seq, protocol::AckStatus::base_mismatch, "content not held");
  }
  if (d.meta_conflict) {
    lg().info("metadata conflict on {}: the later change (node {}) wins", log::escape(m.path),
              engine::node_short(g.meta_dot.node));
  }
  // Only a change of metadata keeps the local inode; anything else replaces or removes it.
  const bool same_inode = d.content_from_local && !g.deleted && d.action == engine::Action::apply;
  if (!same_inode) {
    if (auto busy = held_by_writer(fv.seq, *local)) return *busy;
  }
  apply::Expected expect = expected_for(*local);
  if (d.action == engine::Action::keep_copy_then_apply) {
    if (auto st = keep_conflict_copy(**local, g); !st) {
      return reply(fv.seq, protocol::AckStatus::failed, st.error().message());
    }
    if ((*local)->meta.type != protocol::FileType::dir) {
      auto fp = applier_.stat(m.path);  // the link moved the original's ctime
      if (!fp.ok()) return reply(fv.seq, protocol::AckStatus::failed, fp.error().message());
      expect = apply::Expected::match(*fp);
    }
  }
  const uint64_t origin = g == m ? peer_node_.load() : 0;
  if (g.deleted) return apply_delete(fv.seq, *local, g, origin);
  // Directories G needs that this node deleted meanwhile come back, re-asserted with the metadata
  // they had (TWO-WAY.md §4.7, "applying a child whose parent is missing"), outermost first.
  std::vector<std::string> parents;
  for (std::string p = parent_of(g.path); !p.empty(); p = parent_of(p)) parents.push_back(p);
  for (auto it = parents.rbegin(); it != parents.rend(); ++it) {
    auto revive = [&](const std::string& dir) -> Status {
      auto cur = applier_.stat(dir);
      if (cur.ok()) return {};
      if (!cur.error().is_errno(ENOENT)) return std::move(cur).error();
      SYNCD_TRY_ASSIGN(rec, index_.get(dir));
      protocol::FileMeta dm;
      if (rec) dm = rec->meta;
      apply::Attrs a = attrs_of(dm);  // the metadata it had when it was deleted here
      if (!rec) a.mode = 0755;
      SYNCD_TRY(applier_.make_dir(dir, a));
      if (!rec) dm.path = dir;
      return reassert_dir(dir, dm);
    };
    if (auto st = revive(*it); !st) return reply(fv.seq, protocol::AckStatus::failed, st.error().message());
  }
  if (origin == 0) authored_.push_back(g.path);
  const bool held = d.content_from_local && *local && !(*local)->meta.deleted;
  protocol::Ack a = write_version(fv, g, expect, held, body, base, pipe, origin);
  // Merged with the peer's own copy of the same bytes (two nodes seeded alike, or the same file
  // written on both): the peer holds them, so they are the base of the next delta to it, and the
  // merged record reaches it without a body (Sender::emit_record).
  if (a.status == protocol::AckStatus::applied && origin == 0 && held && engine::same_content(m, g)) {
    auto rec = index_.get(g.path);
    if (rec.ok() && *rec) {
      if (auto st = keep_peer_signature((*rec)->meta, (*rec)->fp, peer_node_.load()); !st) {
        lg().debug("no delta base for {}: {}", log::escape(g.path), st.error().message());
      }
    }
  }
  return a;
}

protocol::Ack Receiver::apply_delete(uint64_t seq, const std::optional<store::Record>& local,
                                     const protocol::FileMeta& g, uint64_t origin) {
  auto cur = applier_.stat(g.path);
  if (cur.ok()) {
    if (S_ISDIR(cur->mode)) {
      Status st = applier_.remove_dir(g.path, false);
      if (!st.ok() && (st.error().is_errno(ENOTEMPTY) || st.error().is_errno(EEXIST))) {
        if (auto r = reassert_dir(g.path, g); !r) return reply(seq, protocol::AckStatus::failed, r.error().message());
        advance_or_log(seq);
        return reply(seq, protocol::AckStatus::conflict, "directory kept: live entries inside");
      }
      if (!st.ok() && !st.error().is_errno(ENOENT)) return reply(seq, protocol::AckStatus::failed, st.error().message());
    } else {
      Status st = applier_.unlink(g.path, expected_for(local));
      if (!st.ok() && !st.error().is_errno(ENOENT)) return reply(seq, protocol::AckStatus::failed, st.error().message());
    }
  }
  if (auto st = record(g, seq, {}, origin); !st) return reply(seq, protocol::AckStatus::failed, st.error().message());
  if (origin == 0) authored_.push_back(g.path);
  return reply(seq, protocol::AckStatus::applied);
}

protocol::Ack Receiver::reconcile_remove(uint64_t seq, const protocol::FileMeta& m) {
  if (opts_.excludes.excluded(m.path, m.type == protocol::FileType::dir)) {
    advance_or_log(seq);
    return reply(seq, protocol::AckStatus::ignored, "excluded here");
  }
  auto local = refresh_local(m.path);
  if (!local.ok()) return reply(seq, protocol::AckStatus::failed, local.error().message());
  observe_clock(m);
  std::optional<protocol::FileMeta> lm;
  if (*local) lm = (*local)->meta;
  const engine::Decision d = engine::decide(lm, m);
  if (d.action == engine::Action::none || !d.target.deleted) {
    // Our live version was not seen by the deleter: it stays (and reaches the peer as a version).
    advance_or_log(seq);
    return reply(seq, protocol::AckStatus::ignored);
  }
  if (auto busy = held_by_writer(seq, *local)) return *busy;
  return apply_delete(seq, *local, d.target, d.target == m ? peer_node_.load() : 0);
}

protocol::Ack Receiver::reconcile_rename(const protocol::Rename& r) {
  auto from = refresh_local(r.from.path);
  auto to = refresh_local(r.to.path);
  if (!from.ok()) return reply(r.seq, protocol::AckStatus::failed, from.error().message());
  if (!to.ok()) return reply(r.seq, protocol::AckStatus::failed, to.error().message());
  observe_clock(r.from);
  observe_clock(r.to);
  std::optional<protocol::FileMeta> lf, lt;
  if (*from) lf = (*from)->meta;
  if (*to) lt = (*to)->meta;
  const engine::Decision df = engine::decide(lf, r.from);
  const engine::Decision dt = engine::decide(lt, r.to);
  const uint64_t peer = peer_node_.load();
  // The bytes move by rename when this node holds the old path's content unchanged and the new
  // path is new here: no transfer, as on the node that renamed.
  const bool movable = df.action == engine::Action::apply && df.target.deleted &&
                       dt.action == engine::Action::apply && dt.target == r.to && lf && !lf->deleted &&
                       lf->type == r.to.type && (lf->type == protocol::FileType::dir || lf->sha256 == r.to.sha256) &&
                       (!lt || lt->deleted);
  if (movable) {
    auto moved = applier_.rename(r.from.path, r.to.path, expected_for(*from), apply::Expected::absent());
    if (moved.ok()) {
      auto meta = applier_.set_meta(r.to.path, attrs_of(r.to), apply::Expected::match(*moved));
      const bool same_origin = df.target == r.from;  // else a merged tombstone, authored here
      uint64_t gone_seq = 0, to_seq = 0;
      Status st = r.to.type == protocol::FileType::dir ? move_children_records(r.from.path, r.to.path, peer) : Status{};
      if (st) st = record(df.target, 0, {}, same_origin ? peer : 0, &gone_seq);
      if (st) st = record(r.to, r.seq, meta.ok() ? *meta : *moved, peer, &to_seq);
      if (!st) return reply(r.seq, protocol::AckStatus::failed, st.error().message());
      // Paired in the index, so this node's senders pass the move on as a RENAME too (a relay).
      if (same_origin && r.to.type == protocol::FileType::file) {
        if (auto paired = index_.put_move(gone_seq, to_seq, r.to.path); !paired) {
          lg().debug("move to {} not paired in the index: {}", log::escape(r.to.path), paired.error().message());
        }
      }
      return reply(r.seq, protocol::AckStatus::applied);
    }
    lg().debug("rename {} -> {} not applied as a move: {}", log::escape(r.from.path), log::escape(r.to.path),
               moved.error().message());
  }
  // Otherwise: the old path's tombstone by the rules, then the new path as a version (whose bytes
  // the sender supplies when they are not here: base_mismatch asks for them).
  if (df.action != engine::Action::none && df.target.deleted) {
    if (auto busy = held_by_writer(r.seq, *from)) return *busy;
    auto a = apply_delete(0, *from, df.target, df.target == r.from ? peer : 0);
    if (a.status == protocol::AckStatus::failed) return reply(r.seq, a.status, a.detail);
  }
  const protocol::FileVersion fv{0, r.seq, r.to, protocol::BodyKind::none, 0};
  return reconcile_version(fv, {}, {}, nullptr);
}

}  // namespace syncd::runtime
