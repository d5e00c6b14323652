#include "lib/runtime/receiver.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <set>

#include "lib/base/log.h"
#include "lib/base/scope_guard.h"
#include "lib/codec/sha256.h"
#include "lib/delta/patch.h"
#include "lib/delta/signature.h"
#include "lib/engine/version.h"
#include "lib/runtime/file_signature.h"
#include "lib/store/scanner.h"
#include "protocol/limits.h"

namespace syncd::runtime {
namespace {

// Bodies larger than this are applied while they arrive (BodyPipe), never held whole in memory.
constexpr uint64_t kStreamAbove = 4u << 20;

auto& lg() { return log::get(log::Module::runtime); }

}  // namespace

std::vector<std::string> MirrorRules::attach_args() const {
  std::vector<std::string> a;
  if (!delete_startup || !delete_running) {
    a.insert(a.end(), {"-delete", delete_startup ? "startup" : delete_running ? "running" : "false"});
  }
  if (existing) a.push_back("-existing");
  if (update) a.push_back("-update");
  if (inplace) a.push_back("-inplace");
  if (!dir_times) a.push_back("-omit-dir-times");
  if (!link_times) a.push_back("-omit-link-times");
  if (dry_run) a.push_back("-dry-run");
  for (const auto& e : excludes) a.insert(a.end(), {"-exclude", e});
  for (const auto& e : perishable) a.insert(a.end(), {"-perishable-exclude", e});
  for (const auto& f : filters) a.insert(a.end(), {"-filter", std::string(f.include ? "+ " : "- ") + f.pattern});
  if (delete_excluded) a.push_back("-delete-excluded");
  if (prune_empty_dirs) a.push_back("-prune-empty-dirs");
  if (max_delete_share >= 100) {
    a.push_back("-empty-source-prunes");
  } else if (max_delete_share != 50) {
    a.insert(a.end(), {"-max-delete-share", std::to_string(max_delete_share)});
  }
  if (!per_dir_excludes.empty()) a.insert(a.end(), {"-per-dir-exclude", per_dir_excludes});
  if (backup.enabled) {
    a.push_back("-backup");
    if (!backup.dir.empty()) a.insert(a.end(), {"-backup-dir", backup.dir});
    if (backup.suffix) a.insert(a.end(), {"-suffix", *backup.suffix});
  }
  return a;
}

apply::Attrs attrs_of(const protocol::FileMeta& m) {
  apply::Attrs a;
  a.mode = m.mode;
  a.uid = m.uid;
  a.gid = m.gid;
  a.user = m.user;
  a.group = m.group;
  a.mtime_sec = m.mtime_sec;
  a.mtime_nsec = m.mtime_nsec;
  a.size = m.size;
  a.xattrs = m.xattrs;
  return a;
}

namespace {

protocol::Ack ack(uint64_t seq, protocol::AckStatus st, std::string detail = {}) {
  return protocol::Ack{0, st, seq, std::move(detail)};
}

}  // namespace

Receiver::Receiver(uvx::Loop& loop, const fs::Root& root, store::Index& index, Connection& conn,
                   ReceiverOptions opts)
    : loop_(loop), root_(root), index_(index), conn_(conn), opts_(opts),
      applier_(root, opts.apply),
      resume_(std::make_unique<uvx::Async>(loop, [this] {
        // Under the high mark, not the low one: a streamed body's job may be waiting for its next
        // chunk while the queue sits between the two (a push past the mark pauses again).
        if (paused_ && queued_bytes_.load() < opts_.hold_bytes) {
          paused_ = false;
          conn_.pause_reading(false);
        }
      })),
      jobs_(loop, "syncd-apply") {
  if (opts_.two_way) opts_.mirror = false;
}

Receiver::~Receiver() {
  // A job blocked on a streamed body must not keep the worker from joining.
  for (auto& [id, t] : transfers_) {
    if (t.pipe) t.pipe->abort();
  }
  jobs_.stop();  // before any member a job uses is destroyed
}

void Receiver::release(size_t cost) {
  const size_t before = queued_bytes_.fetch_sub(cost);
  const size_t low = opts_.hold_bytes / 4;
  if (before >= low && before - cost < low) resume_->send();
}

void Receiver::hold(size_t bytes) {
  if (queued_bytes_.fetch_add(bytes) + bytes > opts_.hold_bytes && !paused_) {
    paused_ = true;  // the disk is behind: let the peer's writes back up
    conn_.pause_reading(true);
  }
}

void Receiver::open_transfer(Transfer t) {
  const uint32_t id = t.fv.xfer_id;
  if (auto old = transfers_.find(id); old != transfers_.end()) {
    // The peer reused the id of a transfer it never finished: that one is void.
    if (old->second.pipe) old->second.pipe->abort();
    if (!old->second.pipe) release(static_cast<size_t>(old->second.fv.body_len));
    transfers_.erase(old);
  }
  if (!t.pipe) {
    // Counted from the header on (the buffer is reserved now): a peer interleaving many
    // unfinished transfers is held to the same bound as versions waiting to be applied.
    hold(static_cast<size_t>(t.fv.body_len));
    t.body.reserve(static_cast<size_t>(t.fv.body_len));
  }
  transfers_[id] = std::move(t);
}

void Receiver::post(std::string path, std::function<protocol::Ack()> job, size_t bytes) {
  const size_t cost = std::max(bytes, kMinCost);
  hold(cost);
  {
    std::lock_guard<std::mutex> lk(batch_mu_);
    batch_.push_back(Posted{std::move(path), std::move(job), cost});
    if (batch_posted_) return;
    batch_posted_ = true;
  }
  jobs_.post([this]() -> JobQueue::Done {
    std::unique_lock store_lock(index_.mutex());
    held_ = &store_lock;
    auto unheld = ScopeGuard([this]() noexcept { held_ = nullptr; });
    std::vector<Posted> todo;
    {
      std::lock_guard<std::mutex> lk(batch_mu_);
      todo.swap(batch_);
      batch_posted_ = false;
    }
    auto acks = std::make_shared<std::vector<protocol::Ack>>();
    auto txn = index_.begin();
    if (txn.ok()) txn_.emplace(std::move(*txn));
    // Small batches apply file by file (fsync each); larger ones stage and sync as a group.
    batch_acks_ = todo.size() > 4 ? acks.get() : nullptr;
    for (auto& [what, j, held] : todo) {
      acks->push_back(j());
      j = nullptr;  // its body is written (or refused): the memory goes now, not with the batch
      release(held);
      note_result(what, acks->back());  // a staged write's final word comes from flush_staged()
      // A staged write's parent gets its time back after its rename, in flush_staged. Anything
      // else is in place now, before the next entry is applied.
      if (staged_.empty() || staged_.back().st.rel != what) {
        touch_parent(what);
        restore_dir_times();
      }
    }
    flush_staged();
    batch_acks_ = nullptr;
    if (txn_) {
      auto st = txn_->commit();
      txn_.reset();
      if (!st.ok()) {
        // The files are on disk but their records are not: report it; the next rescan repairs.
        for (size_t i = 0; i < acks->size(); ++i) {
          auto& a = (*acks)[i];
          a.status = protocol::AckStatus::failed;
          a.detail = "index: " + st.error().message();
          note_result(todo[i].path, a);
        }
      }
    }
    for (const auto& a : *acks) {
      lg().debug("applied seq={} status={} {}", a.seq, static_cast<int>(a.status), a.detail);
    }
    bool changed = !authored_.empty();
    for (const auto& a : *acks) changed = changed || a.status == protocol::AckStatus::applied;
    authored_.clear();
    auto copies = std::make_shared<std::vector<std::pair<std::string, std::string>>>(std::move(copies_));
    copies_.clear();
    return [this, acks, changed, copies] {
      for (const auto& a : *acks) {
        ++applied_;
        conn_.send(a);
      }
      report_acked();
      conn_.flush();
      if (changed && opts_.on_changed) opts_.on_changed();
      for (const auto& [original, copy] : *copies) {
        if (opts_.on_conflict_copy) opts_.on_conflict_copy(original, copy);
      }
    };
  });
}

void Receiver::on_message(protocol::Message msg) {
  if (auto* h = std::get_if<protocol::Hello>(&msg)) {
    peer_index_ = h->index_id;
    peer_node_ = h->node_id;
    const bool quick = (conn_.capabilities() & protocol::kCapHave) != 0;
    // Resume where we left off with this incarnation of the peer's index.
    jobs_.post([this, quick]() -> JobQueue::Done {
      std::unique_lock store_lock(index_.mutex());
      in_order_ = false;
      reached_ = 0;
      unreadable_.clear();  // a session cut short before its INDEX_END: the next one says again
      // Temp files of applies cut short by a crash (ours: nothing else writes that pattern).
      if (auto st = applier_.remove_stale_temps(); !st) lg().warn("temp cleanup: {}", st.error().message());
      auto since = index_.peer_seq(peer_index_);
      if (!since.ok()) lg().error("index: where the peer's records were left unknown, asking for all: {}", since.error().message());
      uint64_t s = since.ok() ? *since : 0;
      if (s > 0 && opts_.mirror && !opts_.two_way) {
        if (const std::string d = drift(); !d.empty()) {
          lg().warn("the target is not what this node last wrote ({}): asking for a full sync, as lsyncd's startup "
                    "rsync would", log::escape(d));
          s = 0;
        }
      }
      // Asking for everything: the files already here go first, so that the peer can leave out
      // the bytes of those it holds the same way (protocol/SPEC.md §5.2, HAVE).
      // Listing the tree needs no index: the node's own sender may use it meanwhile.
      store_lock.unlock();
      auto have = std::make_shared<std::vector<protocol::Have>>();
      if (s == 0 && quick) *have = held_files();
      return [this, s, have] {
        full_sync_ = s == 0;
        answering_ = true;
        asked_since_ = s;
        went_back_answer_ = false;
        full_sync_live_ = 0;
        dry_announced_.clear();
        for (auto& held : *have) conn_.send(std::move(held));
        conn_.send(protocol::IndexRequest{peer_index_.load(), s});
        conn_.flush();
      };
    });
    return;
  }
  if (auto* fv = std::get_if<protocol::FileVersion>(&msg)) {
    note_answer_seq(fv->seq);
    if (answering_ && !fv->meta.deleted && fv->meta.type != protocol::FileType::dir) ++full_sync_live_;
    if (answering_ && !fv->meta.deleted && (opts_.rules.dry_run || went_back_answer_)) dry_announced_.insert(fv->meta.path);
    if (fv->body == protocol::BodyKind::none) {
      apply_version(std::move(*fv), {}, {});
    } else {
      Transfer t;
      t.fv = std::move(*fv);
      if (t.fv.body_len == 0) {
        apply_version(std::move(t.fv), {}, {});
      } else if (t.fv.body_len > kStreamAbove) {
        // Applied while it arrives: the job starts now and pulls chunks from the pipe.
        t.pipe = std::make_shared<BodyPipe>([this] { resume_->send(); }, opts_.hold_bytes / 4);
        auto pipe = t.pipe;
        const protocol::FileVersion fv_copy = t.fv;
        open_transfer(std::move(t));
        post(fv_copy.meta.path, [this, fv = fv_copy, pipe]() {
          auto done = ScopeGuard([&]() noexcept { pipe->close_reader(); });
          return do_version(fv, {}, {}, pipe.get());
        });
      } else {
        open_transfer(std::move(t));
      }
    }
    return;
  }
  auto body_chunk = [&](uint32_t xfer, uint64_t offset, Bytes& chunk, const protocol::Hash256* base) {
    auto it = transfers_.find(xfer);
    if (it == transfers_.end() || offset != it->second.received ||
        chunk.size() > it->second.fv.body_len - it->second.received) {
      conn_.close(Error::make(errc::corrupt, "body chunk out of order or beyond body_len"));
      return;
    }
    Transfer& t = it->second;
    if (base) t.base = *base;
    t.received += chunk.size();
    if (t.pipe) {
      if (base && offset == 0) t.pipe->set_base(*base);
      if (t.pipe->push(std::move(chunk)) > opts_.hold_bytes && !paused_) {
        paused_ = true;  // the disk is behind: let the peer's writes back up
        conn_.pause_reading(true);
      }
      if (t.received == t.fv.body_len) {
        t.pipe->finish();
        transfers_.erase(it);
      }
      return;
    }
    if (t.body.empty()) {
      t.body = std::move(chunk);  // the common case: the whole body in one chunk, nothing copied
    } else {
      t.body.insert(t.body.end(), chunk.begin(), chunk.end());
    }
    if (t.received == t.fv.body_len) {
      Transfer done = std::move(t);
      transfers_.erase(it);
      const auto held = static_cast<size_t>(done.fv.body_len);
      apply_version(std::move(done.fv), std::move(done.body), done.base);  // counted again as posted
      release(held);
    }
  };
  if (auto* d = std::get_if<protocol::Data>(&msg)) return body_chunk(d->xfer_id, d->offset, d->chunk, nullptr);
  if (auto* d = std::get_if<protocol::Delta>(&msg)) return body_chunk(d->xfer_id, d->offset, d->chunk, &d->base_hash);
  if (auto* q = std::get_if<protocol::SigRequest>(&msg)) {
    if ((conn_.capabilities() & protocol::kCapSignature) == 0) {
      conn_.close(Error::make(errc::corrupt, "SIG_REQUEST without the signature capability"));
      return;
    }
    if (sig_requests_ >= kMaxSigRequests) {
      conn_.close(Error::make(errc::limit_exceeded, "more than " + std::to_string(kMaxSigRequests) +
                                                        " SIG_REQUESTs unanswered"));
      return;
    }
    answer_signature(std::move(*q));
    return;
  }
  if (auto* r = std::get_if<protocol::Remove>(&msg)) {
    note_answer_seq(r->seq);
    std::string path = r->meta.path;
    post(std::move(path), [this, r = std::move(*r)] { return do_remove(r); });
    return;
  }
  if (auto* r = std::get_if<protocol::Rename>(&msg)) {
    note_answer_seq(r->seq);
    if (answering_ && r->to.type != protocol::FileType::dir) ++full_sync_live_;
    if (answering_ && (opts_.rules.dry_run || went_back_answer_)) dry_announced_.insert(r->to.path);
    std::string path = r->to.path;
    post(std::move(path), [this, r = std::move(*r)] { return do_rename(r); });
    return;
  }
  if (auto* rm = std::get_if<protocol::RootMeta>(&msg)) {
    const auto& peer = conn_.peer();
    if (!peer || !(peer->capabilities & protocol::kCapRootMeta)) {
      conn_.close(Error::make(errc::corrupt, "ROOT_META without the root_meta capability"));
      return;
    }
    if (!opts_.mirror || opts_.two_way) return;  // each two-way node keeps its own root
    protocol::FileMeta m;
    m.type = protocol::FileType::dir;
    m.mode = rm->mode;
    m.uid = rm->uid;
    m.gid = rm->gid;
    m.user = rm->user;
    m.group = rm->group;
    m.mtime_sec = rm->mtime_sec;
    m.mtime_nsec = rm->mtime_nsec;
    apply::Attrs a = mirror_attrs(m);
    // After what came before it (a job of its own, like INDEX_END's).
    jobs_.post([this, a]() -> JobQueue::Done {
      std::lock_guard store_lock(index_.mutex());
      if (opts_.rules.dry_run) {
        lg().info("dry run (rsync.dry_run): not applied: owner, mode and time of the root");
        return {};
      }
      root_attrs_ = a;
      root_touched_ = false;
      if (auto st = applier_.set_root_meta(a); !st) lg().warn("root metadata: {}", st.error().message());
      return {};
    });
    return;
  }
  if (auto* u = std::get_if<protocol::Unreadable>(&msg)) {
    if ((conn_.capabilities() & protocol::kCapUnreadable) == 0) {
      conn_.close(Error::make(errc::corrupt, "UNREADABLE without the unreadable capability"));
      return;
    }
    if (opts_.two_way) return;  // nothing is pruned two-way
    // In order with INDEX_END's prune, which it is for.
    jobs_.post([this, path = std::move(u->path)]() mutable -> JobQueue::Done {
      std::lock_guard store_lock(index_.mutex());
      if (unreadable_.size() <= kMaxUnreadable) unreadable_.insert(std::move(path));
      return {};
    });
    return;
  }
  if (auto* end = std::get_if<protocol::IndexEnd>(&msg)) {
    const bool full = full_sync_, listed = went_back_answer_;
    const uint64_t max_seq = end->max_seq, source_live = full_sync_live_;
    full_sync_ = answering_ = went_back_answer_ = false;
    auto announced = std::make_shared<std::set<std::string, std::less<>>>(std::move(dry_announced_));
    dry_announced_.clear();
    jobs_.post([this, full, listed, max_seq, source_live, announced]() -> JobQueue::Done {
      std::lock_guard store_lock(index_.mutex());
      held_brake_.clear();
      // A source whose index went back answered with every record (Sender, INDEX_REQUEST): a
      // mirror then prunes as after any full sync.
      const bool went_back = rewind_if_behind(max_seq);
      if ((full || went_back) && opts_.mirror && opts_.rules.delete_startup && !opts_.two_way) {
        // After a went-back answer, what the index holds from before is no proof the source still
        // has it: only what the answer announced stays.
        if (auto st = prune_extras(source_live, *announced, went_back && listed && !full); !st) lg().error("initial sync: {}", st.error().message());
        unreadable_.clear();
        if (pruning()) prune_all_empty();
        root_touched_ = true;  // extras removed at the top moved the root's time
        restore_dir_times();
      }
      in_order_ = true;
      if (auto st = advance(max_seq); !st) lg().error("index: {}", st.error().message());
      return [this, max_seq, brake = held_brake_, went_back] {
        if (went_back && opts_.on_peer_went_back) opts_.on_peer_went_back();
        const bool first = !synced_;
        synced_ = true;
        brake_ = brake;
        conn_.send(protocol::Ack{protocol::kIndexEndAck, protocol::AckStatus::applied, max_seq, {}});
        report_acked();
        conn_.flush();
        if (first && opts_.on_synced) opts_.on_synced();
      };
    });
  }
}

void Receiver::apply_version(protocol::FileVersion fv, Bytes body, protocol::Hash256 base) {
  std::string path = fv.meta.path;
  const size_t bytes = body.size();
  post(std::move(path), [this, fv = std::move(fv), body = std::move(body), base] { return do_version(fv, body, base); },
       bytes);
}

void Receiver::answer_signature(protocol::SigRequest q) {
  ++sig_requests_;
  jobs_.post([this, q = std::move(q)]() -> JobQueue::Done {
    // No store lock: the file is read through one descriptor and refused if written meanwhile;
    // a version applied over it later only makes the peer's delta miss (base_mismatch).
    std::optional<PeerSignature> sig;
    // A two-way node's excluded files are its own (its SQLite databases): not described.
    if (!(opts_.two_way && opts_.excludes.excluded(q.path, false))) {
      auto s = sign_for_peer(root_, q.path);
      if (s.ok()) {
        sig = std::move(*s);
      } else {
        lg().info("signature of {} for the peer: {}; it will send the file whole", log::escape(q.path),
                  s.error().message());
      }
    }
    if (sig) {
      if (peer_signed_.size() >= kPeerSignedMax) peer_signed_.clear();  // only a shortcut
      peer_signed_[q.path] = store::Known{sig->fp, sig->sha256};
    }
    auto msgs = std::make_shared<std::vector<protocol::SignatureMsg>>();
    if (!sig) {
      msgs->push_back(protocol::SignatureMsg{q.req_id, q.path, {}, 0, 0, {}});
    } else if (sig->signature.size() <= protocol::kMaxChunk) {
      // The usual case (files up to tens of GiB): one chunk, the signature moved, not copied.
      const uint64_t n = sig->signature.size();
      msgs->push_back(protocol::SignatureMsg{q.req_id, q.path, sig->sha256, n, 0, std::move(sig->signature)});
    } else {
      const Bytes& b = sig->signature;
      for (size_t off = 0; off < b.size(); off += protocol::kMaxChunk) {
        const size_t n = std::min(protocol::kMaxChunk, b.size() - off);
        msgs->push_back(protocol::SignatureMsg{q.req_id, q.path, sig->sha256, b.size(), off,
                                               Bytes(b.begin() + static_cast<std::ptrdiff_t>(off),
                                                     b.begin() + static_cast<std::ptrdiff_t>(off + n))});
      }
    }
    lg().debug("signature of {} for the peer: {} bytes", log::escape(q.path), msgs->front().total_len);
    return [this, msgs] {
      --sig_requests_;
      for (auto& m : *msgs) conn_.send(std::move(m));
      conn_.flush();
    };
  });
}

namespace {

// The target's entry is still what was written there: type, permissions, owner; a file's (or
// link's) size and mtime — rsync's quick check, plus mode; a directory's mtime, which entries
// landing in it move, is the record's own (restore_dir_times puts it back) when times are kept.
bool as_written(const fs::Fingerprint& here, const store::Record& r, bool dir_times) {
  const fs::Fingerprint& recorded = r.fp;
  if (here.mode != recorded.mode || here.uid != recorded.uid || here.gid != recorded.gid) return false;
  if (S_ISDIR(here.mode)) return !dir_times || here.mtime_ns == fs::ns_of(r.meta.mtime_sec, r.meta.mtime_nsec);
  return here.size == recorded.size && here.mtime_ns == recorded.mtime_ns;
}

}  // namespace

std::string Receiver::drift() {
  std::string found;
  // What the index says is here.
  auto st = index_.for_each_under("", [&](const store::Record& r) -> Status {
    if (r.meta.deleted || r.meta.path.empty()) return {};
    if (pruning() && r.meta.type == protocol::FileType::dir) return {};  // recorded, made when needed
    auto here = applier_.stat(r.meta.path);
    if (!here.ok()) {
      found = (here.error().is_errno(ENOENT) ? "missing " : "unreadable ") + r.meta.path;
    } else if (!as_written(*here, r, opts_.rules.dir_times) &&
               !(opts_.rules.update && S_ISREG(here->mode) && here->mtime_ns > r.fp.mtime_ns)) {  // rsync.update keeps it
      found = "changed " + r.meta.path;
    }
    return found.empty() ? Status{} : Error::make(errc::unexpected_target, found);
  });
  if (!found.empty()) return found;
  if (!st) return "index: " + st.error().message();
  // What is here and the index does not know: an extra the startup delete would take.
  if (!opts_.rules.delete_startup) return {};
  st = store::walk(root_, "", [&](const std::string& rel, const fs::Fingerprint&) -> Status {
    auto r = index_.get(rel);
    if (r.ok() && *r && !(*r)->meta.deleted) return {};
    found = "extra " + rel;
    return Error::make(errc::unexpected_target, found);
  }, [&, protect = delete_protection()](std::string_view rel, bool is_dir) {
    return (opts_.backup && opts_.backup->is_backup(rel)) || protect.excluded(rel, is_dir);
  });
  if (!found.empty()) return found;
  if (!st) return "walk: " + st.error().message();
  return {};
}

watch::Excludes Receiver::delete_protection() const {
  const auto& rules = opts_.rules;
  if (rules.delete_excluded) return {};
  std::vector<std::string> all = rules.excludes;
  all.insert(all.end(), rules.perishable.begin(), rules.perishable.end());
  watch::Excludes protect(all, rules.filters);
  if (!rules.per_dir_excludes.empty()) protect.read_per_dir(root_.path(), rules.per_dir_excludes);
  return protect;
}

std::vector<protocol::Have> Receiver::held_files() {
  std::vector<protocol::Have> out;
  auto st = store::walk(root_, "", [&](const std::string& rel, const fs::Fingerprint& fp) -> Status {
    if (!S_ISREG(fp.mode) || out.size() >= kMaxHave) return {};
    const auto [sec, nsec] = fp.mtime_parts();  // as the sender's record has it (store::Change)
    out.push_back(protocol::Have{rel, fp.size, sec, nsec});
    return {};
  }, [&](std::string_view rel, bool is_dir) { return opts_.two_way && opts_.excludes.excluded(rel, is_dir); });
  // Only bytes are at stake: without the list every file comes whole, as it always did.
  if (!st) lg().warn("initial sync: the files already here not listed, all will be sent: {}", st.error().message());
  if (out.size() >= kMaxHave) lg().info("initial sync: {} files already here listed, the rest will be sent whole", kMaxHave);
  lg().debug("initial sync: {} files already here offered to the peer", out.size());
  return out;
}

// The resume point may only move over a contiguous prefix of the peer's sequence: the answer to
// INDEX_REQUEST comes in path order (parents first), so during it nothing moves and INDEX_END
// moves the point to the peer's max_seq at once; after it, versions arrive in sequence order.
// A version not applied for want of bytes (base_mismatch, verify_failed) holds the point back as
// a failure does: the sender answers with the whole file, and if the session ends first, only a
// resume point still before it brings that file again.
void Receiver::note_result(const std::string& path, const protocol::Ack& a) {
  if (a.status == protocol::AckStatus::failed || a.status == protocol::AckStatus::base_mismatch ||
      a.status == protocol::AckStatus::verify_failed) {
    failed_[a.seq] = path;
    return;
  }
  // Applied (or already there): an older failure of the same path is settled.
  bool settled = false;
  for (auto it = failed_.begin(); it != failed_.end();) {
    if (it->second == path && it->first <= a.seq) {
      it = failed_.erase(it);
      settled = true;
    } else {
      ++it;
    }
  }
  if (settled) advance_or_log(0);  // the point moves on to what was reached meanwhile
}

// Tells the sender how far its records are durably applied here (tombstone collection waits for
// every peer's word). The ACK that is sent anyway carries the data; this is one small message per
// batch, only when the point moved.
void Receiver::report_acked() {
  const uint64_t a = acked_.load();
  if (a == acked_sent_ || a == 0) return;
  acked_sent_ = a;
  conn_.send(protocol::IndexSummary{peer_index_.load(), 0, a, 0});
}

// The peer's index ends before what this node applied from it: it went back (a VM snapshot or a
// backup of its state directory restored, or commits lost in a power failure). The records it
// numbers from there on are new to us; resuming after the old point would skip them for good.
bool Receiver::rewind_if_behind(uint64_t max_seq) {
  auto prev = index_.peer_seq(peer_index_);
  if (!prev.ok() || *prev <= max_seq) return false;
  lg().warn("the peer's index ends at record {}, but this node applied its records up to {}: it went back "
            "(restored from a snapshot or backup, or its last commits lost in a power failure); its records "
            "are taken from {} on", max_seq, *prev, max_seq + 1);
  if (auto st = index_.set_peer_seq(peer_index_, max_seq); !st) lg().error("index: {}", st.error().message());
  return true;
}

Status Receiver::advance(uint64_t seq) {
  if (!in_order_) return {};
  reached_ = std::max(reached_, seq);
  SYNCD_TRY_ASSIGN(prev, index_.peer_seq(peer_index_));
  uint64_t next = std::max(prev, reached_);
  // Never past a version that failed: after a reconnect the peer resends from there.
  if (!failed_.empty()) next = std::min(next, failed_.begin()->first - 1);
  if (next != prev) SYNCD_TRY(index_.set_peer_seq(peer_index_, next));
  acked_ = next;
  return {};
}

// Waiting for a streamed body's next chunk must not hold the store lock: the chunk comes through
// the loop thread, which may itself be waiting (joining an ended session's job thread) for a job
// that needs the lock.
Result<std::optional<Bytes>> Receiver::pop_body(BodyPipe& pipe) {
  if (held_ == nullptr) return pipe.pop();
  // Whoever takes the lock meanwhile must not find our transaction open on the shared index:
  // what this batch recorded so far is committed first (it is applied already).
  if (txn_) {
    if (auto st = txn_->commit(); !st) lg().error("index commit: {}", st.error().message());
    txn_.reset();
  }
  held_->unlock();
  auto c = pipe.pop();
  held_->lock();
  if (auto t = index_.begin(); t.ok()) txn_.emplace(std::move(*t));
  return c;
}

Status Receiver::record(const protocol::FileMeta& m, uint64_t seq, const fs::Fingerprint& fp, uint64_t origin,
                        uint64_t* put_seq) {
  store::Record r{m, 0, fp, origin};
  SYNCD_TRY(index_.put(r));
  // The peer holds this now, not what our sender last sent it: a delta on that signature would
  // be refused (two-way; a mirror's target has none).
  if (origin != 0) SYNCD_TRY(keep_peer_signature(m, fp, origin));
  if (put_seq != nullptr) *put_seq = r.seq;
  return advance(seq);
}

Status Receiver::keep_peer_signature(const protocol::FileMeta& m, const fs::Fingerprint& fp, uint64_t peer) {
  const bool wanted = opts_.two_way && !m.deleted && m.type == protocol::FileType::file &&
                      m.size >= opts_.sign_from && delta::delta_supported(m.size);
  if (!wanted) return index_.forget_signature(m.path, peer);
  // A metadata-only change leaves the bytes, and so a signature of them, as they were.
  if (auto have = index_.get_signature(m.path, peer); have.ok() && *have && (*have)->base_hash == m.sha256) return {};
  // The signature this node's sender made after sending stands for what it sent; the peer's own
  // version replaces that. Signing reads the file just written (page cache); a file written to
  // here since (another inode, size or time than applied) is not what the peer holds: none then.
  auto sig = sign_unchanged_file(root_, m.path, fp, m.size);
  if (!sig.ok()) {
    lg().debug("no delta base for {}: {}", log::escape(m.path), sig.error().message());
    return index_.forget_signature(m.path, peer);
  }
  return index_.put_signature(m.path, peer, store::CachedSignature{m.sha256, std::move(*sig)});
}

// The SHA-256 of what is at `path` now: from the index when the stat fingerprint still matches,
// else by reading it. nullopt: no regular file there.
Result<std::optional<protocol::Hash256>> Receiver::local_hash(const std::string& path, bool for_delta_base) {
  auto rec = index_.get(path);
  std::optional<store::Known> known;
  if (rec.ok() && *rec && !(*rec)->meta.deleted) known = store::Known{(*rec)->fp, (*rec)->meta.sha256};
  if (for_delta_base) {
    // Just signed for the peer (read then): the delta built on that signature is checked
    // against what that read found, by stat (a file changed since is read again).
    if (auto it = peer_signed_.find(path); it != peer_signed_.end()) {
      known = it->second;
      peer_signed_.erase(it);
    }
  }
  // A racy record (taken within a clock tick of its file's last change, as every file this
  // receiver just wrote is) would make each delta re-read its whole base. For a delta's base the
  // stat match is enough: a same-tick local write it misses makes the patched result fail its
  // verification (the version is then re-sent whole); it can never be recorded as applied.
  if (known && for_delta_base) known->fp.racy = false;
  SYNCD_TRY_ASSIGN(e, store::scan_one(root_, path, known ? &*known : nullptr));
  if (!e || e->type != protocol::FileType::file) return std::optional<protocol::Hash256>{};
  return std::optional<protocol::Hash256>(e->sha256);
}

apply::Attrs Receiver::mirror_attrs(const protocol::FileMeta& m) const {
  apply::Attrs a = attrs_of(m);
  if (opts_.mirror && m.type == protocol::FileType::dir) a.set_mtime = opts_.rules.dir_times;
  if (opts_.mirror && m.type == protocol::FileType::symlink) a.set_mtime = opts_.rules.link_times;
  return a;
}

void Receiver::touch_parent(const std::string& path) {
  if (!opts_.mirror || !opts_.rules.dir_times) return;
  const size_t slash = path.rfind('/');
  if (slash != std::string::npos) {
    touched_dirs_.insert(path.substr(0, slash));
  } else {
    root_touched_ = true;  // the root has no record: its time is the last ROOT_META's
  }
}

bool Receiver::quick_check_here(const protocol::FileMeta& m) {
  auto here = applier_.stat(m.path);
  if (!here.ok()) return false;
  const auto t = store::file_type_of(here->mode);
  if (!t || *t != m.type) return false;
  switch (m.type) {
    case protocol::FileType::dir:
      return true;
    case protocol::FileType::file:
      return here->size == m.size && here->mtime_ns == fs::ns_of(m.mtime_sec, m.mtime_nsec);
    case protocol::FileType::symlink: {
      auto entry = store::scan_one(root_, m.path);  // a link's "content" is its target
      return entry.ok() && *entry && (*entry)->sha256 == m.sha256;
    }
    default:
      return false;
  }
}

protocol::Ack Receiver::dry_run(uint64_t seq, const char* what, const std::string& path) {
  flush_staged();
  lg().info("dry run (rsync.dry_run): not applied: {} {}", what, log::escape(path));
  return ack(seq, protocol::AckStatus::ignored, "dry run (rsync.dry_run)");
}

void Receiver::restore_dir_times() {
  for (const auto& d : touched_dirs_) {
    auto rec = index_.get(d);
    if (!rec.ok() || !*rec || (*rec)->meta.deleted || (*rec)->meta.type != protocol::FileType::dir) continue;
    const auto& m = (*rec)->meta;
    // A failure costs only the time: the directory may have gone with a later change.
    if (auto fp = applier_.set_mtime(d, m.mtime_sec, m.mtime_nsec); !fp) {
      lg().debug("directory time of {}: {}", log::escape(d), fp.error().message());
    }
  }
  touched_dirs_.clear();
  if (root_touched_ && root_attrs_ && root_attrs_->set_mtime) {
    if (auto st = applier_.set_root_mtime(root_attrs_->mtime_sec, root_attrs_->mtime_nsec); !st) {
      lg().debug("time of the root: {}", st.error().message());
    }
  }
  root_touched_ = false;
}

void Receiver::flush_staged() {
  if (staged_.empty()) return;
  std::vector<apply::Applier::Staged> sts;
  sts.reserve(staged_.size());
  for (auto& w : staged_) sts.push_back(w.st);
  // A directory's time goes back right after each entry lands in it, before the next is visible.
  auto results = applier_.commit_staged(sts, [this](size_t i) {
    touch_parent(staged_[i].meta.path);
    restore_dir_times();
  });
  for (size_t i = 0; i < staged_.size(); ++i) {
    auto& w = staged_[i];
    protocol::Ack& a = (*batch_acks_)[w.ack];
    if (!results[i].ok()) {
      a.status = protocol::AckStatus::failed;
      a.detail = results[i].error().message();
      lg().warn("apply path={} failed: {}", log::escape(w.meta.path), a.detail);
    } else if (auto st = record(w.meta, w.seq, *results[i], w.origin); !st) {
      a.status = protocol::AckStatus::failed;
      a.detail = st.error().message();
    }
    note_result(w.meta.path, a);
  }
  staged_.clear();
}

protocol::Ack Receiver::do_version(const protocol::FileVersion& fv, const Bytes& body,
                                   const protocol::Hash256& base_in, BodyPipe* pipe) {
  if (opts_.two_way) return reconcile_version(fv, body, base_in, pipe);
  const auto& m = fv.meta;
  if (opts_.rules.dry_run) {
    if (!quick_check_here(m)) return dry_run(fv.seq, "write", m.path);
    flush_staged();  // rsync -n lists only what its quick check would transfer
    return ack(fv.seq, protocol::AckStatus::ignored, "dry run (rsync.dry_run): already here");
  }
  auto local = index_.get(m.path);
  if (local.ok() && *local) {
    const auto order = engine::compare((*local)->meta.version, m.version);
    // The same version again (a full sync after drift(), a resend) is nothing to do only while
    // the file here is still what was written: else it is written again.
    const auto still_written = [&](const store::Record& r) {
      auto here = applier_.stat(r.meta.path);
      return here.ok() && as_written(*here, r, opts_.rules.dir_times);
    };
    const bool same = order == engine::Order::equal && (*local)->meta == m;
    // A version older than what was written here (`after`) is written too: it only comes from a
    // source that went back (a snapshot restored), and a mirror follows its source, as rsync would.
    if (same && still_written(**local)) {
      flush_staged();
      advance_or_log(fv.seq);  // remember the seq; nothing else to do
      return ack(fv.seq, protocol::AckStatus::ignored);
    }
  }
  if (opts_.rules.existing || opts_.rules.update) {
    // rsync's --existing (nothing new is created) and --update (a newer file here is kept).
    auto cur = applier_.stat(m.path);
    const bool absent = !cur.ok() && cur.error().is_errno(ENOENT);
    const bool newer_here = cur.ok() && S_ISREG(cur->mode) && m.type == protocol::FileType::file &&
                            cur->mtime_ns > fs::ns_of(m.mtime_sec, m.mtime_nsec);
    if ((opts_.rules.existing && absent) || (opts_.rules.update && newer_here)) {
      // A file kept by --update is in the source, so the startup delete must not take it.
      if (newer_here) kept_newer_.insert(m.path);
      flush_staged();
      advance_or_log(fv.seq);
      return ack(fv.seq, protocol::AckStatus::ignored, absent ? "absent here (rsync.existing)" : "newer here (rsync.update)");
    }
  }
  return write_version(fv, m, apply::Expected::any(), false, body, base_in, pipe, peer_node_.load());
}

protocol::Ack Receiver::write_version(const protocol::FileVersion& fv, const protocol::FileMeta& m,
                                      const apply::Expected& expect, bool content_held, const Bytes& body,
                                      const protocol::Hash256& base_in, BodyPipe* pipe, uint64_t origin) {
  // The body: in memory, or (large) pulled from the pipe as it arrives. A delta's base comes
  // with its first chunk, so that chunk is taken before anything is decided.
  protocol::Hash256 base = base_in;
  std::optional<Bytes> first;
  if (pipe != nullptr && fv.body == protocol::BodyKind::delta && !content_held) {
    auto c = pop_body(*pipe);
    if (!c.ok()) return ack(fv.seq, protocol::AckStatus::failed, c.error().message());
    first = std::move(*c);
    base = pipe->base();
  }
  auto each_chunk = [&](const std::function<Status(ByteSpan)>& f) -> Status {
    if (pipe == nullptr) return f(body);
    if (first) {
      SYNCD_TRY(f(*first));
      first.reset();
    }
    for (;;) {
      SYNCD_TRY_ASSIGN(c, pop_body(*pipe));
      if (!c) return {};
      SYNCD_TRY(f(*c));
    }
  };
  // A whole new file joins the batch's group commit; anything else first settles what is staged.
  const bool stageable = batch_acks_ != nullptr && m.type == protocol::FileType::file && !content_held &&
                         fv.body == protocol::BodyKind::whole && pipe == nullptr;
  if (!stageable) flush_staged();
  const apply::Attrs a = mirror_attrs(m);
  Result<fs::Fingerprint> done = Error::make(errc::internal, "unset");
  const bool meta_only = content_held || (m.type == protocol::FileType::file && fv.body == protocol::BodyKind::none);
  if (opts_.backup && !opts_.two_way && !meta_only && m.type != protocol::FileType::dir) {
    // rsync.backup: what this version replaces is kept first (not when it is the same content;
    // a file's hash comes from the index when its fingerprint is unchanged).
    bool same = false;
    if (m.type == protocol::FileType::file) {
      auto h = local_hash(m.path);
      same = h.ok() && *h && **h == m.sha256;
    } else {
      auto here = store::scan_one(root_, m.path);
      same = here.ok() && *here && (*here)->type == m.type && (*here)->sha256 == m.sha256;
    }
    if (!same) {
      if (auto st = opts_.backup->keep(m.path); !st) return ack(fv.seq, protocol::AckStatus::failed, st.error().message());
    }
  }
  // A different type is in the way: the record being applied says what belongs here (in two-way
  // the caller has kept the loser first).
  auto cur = applier_.stat(m.path);
  if (cur.ok() && (opts_.mirror || opts_.two_way)) {
    const auto t = store::file_type_of(cur->mode);
    if (!t || *t != m.type) {
      Status cleared;
      if (opts_.two_way) {
        cleared = S_ISDIR(cur->mode) ? applier_.remove_dir(m.path, false) : applier_.unlink(m.path, expect);
      } else {  // mirror: through the helpers that keep backups (rsync.backup)
        cleared = S_ISDIR(cur->mode) ? remove_dir(m.path) : remove_file(m.path);
      }
      if (!cleared.ok()) return ack(fv.seq, protocol::AckStatus::failed, cleared.error().message());
    }
  }
  if (pruning()) {
    auto now_here = m.type == protocol::FileType::dir ? applier_.stat(m.path) : cur;  // after a type change cleared it
    if (m.type == protocol::FileType::dir && !now_here.ok() && now_here.error().is_errno(ENOENT)) {
      // Made when something that is not a directory needs it (rsync --prune-empty-dirs).
      if (auto st = record(m, fv.seq, {}, origin); !st) return ack(fv.seq, protocol::AckStatus::failed, st.error().message());
      return ack(fv.seq, protocol::AckStatus::applied);
    }
    if (m.type != protocol::FileType::dir) {
      if (auto st = make_parents(m.path); !st) return ack(fv.seq, protocol::AckStatus::failed, st.error().message());
    }
  }
  const apply::Expected& ex = expect;
  switch (m.type) {
    case protocol::FileType::dir: done = applier_.make_dir(m.path, a); break;
    case protocol::FileType::symlink: done = applier_.make_symlink(m.path, m.symlink_target, a, ex); break;
    case protocol::FileType::chardev: done = applier_.make_special(m.path, S_IFCHR, m.rdev, a, ex); break;
    case protocol::FileType::blockdev: done = applier_.make_special(m.path, S_IFBLK, m.rdev, a, ex); break;
    case protocol::FileType::fifo: done = applier_.make_special(m.path, S_IFIFO, 0, a, ex); break;
    case protocol::FileType::socket: done = applier_.make_special(m.path, S_IFSOCK, 0, a, ex); break;
    case protocol::FileType::file:
      if (!fv.link_to.empty() && !content_held) {
        // rsync.hard_links: another name of the same inode, whose content we must already hold.
        auto have = local_hash(fv.link_to);
        if (!have.ok() || !*have || **have != m.sha256) {
          return ack(fv.seq, protocol::AckStatus::base_mismatch, "link source not held");
        }
        done = applier_.link_into(fv.link_to, m.path, ex);  // two-way: only over what reconcile saw
        if (done.ok()) done = applier_.set_meta(m.path, a, apply::Expected::any());
      } else if (content_held || fv.body == protocol::BodyKind::none) {
        // Metadata only: the content must already be the announced one (another size is not:
        // the sender probing a file it would rather send as a delta; not read to find out).
        if (cur.ok() && S_ISREG(cur->mode) && cur->size != m.size) {
          return ack(fv.seq, protocol::AckStatus::base_mismatch, "content not held");
        }
        auto have = local_hash(m.path);
        if (!have.ok() || !*have || **have != m.sha256) {
          return ack(fv.seq, protocol::AckStatus::base_mismatch, "content not held");
        }
        done = applier_.set_meta(m.path, a, ex);
      } else if (stageable) {
        auto st = applier_.stage_file(m.path, a, ex, m.sha256,
                                      [&](delta::OutputSink& out) { return out.write(body); });
        if (!st.ok()) {
          done = std::move(st).error();
          break;
        }
        staged_.push_back(StagedWrite{std::move(*st), m, fv.seq, batch_acks_->size(), origin});
        return ack(fv.seq, protocol::AckStatus::applied);  // settled by flush_staged()
      } else if (fv.body == protocol::BodyKind::whole) {
        done = applier_.write_file(m.path, a, ex, m.sha256, [&](delta::OutputSink& out) {
          return each_chunk([&](ByteSpan c) { return out.write(c); });
        });
      } else {
        auto have = local_hash(m.path, true);
        if (!have.ok() || !*have || **have != base) {
          return ack(fv.seq, protocol::AckStatus::base_mismatch, "delta base not held");
        }
        auto p = root_.parent_of(m.path);
        if (!p.ok()) return ack(fv.seq, protocol::AckStatus::failed, p.error().message());
        UniqueFd bfd(::openat(p->dir.get(), p->leaf.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
        struct stat bst{};
        if (!bfd || ::fstat(bfd.get(), &bst) != 0) {
          return ack(fv.seq, protocol::AckStatus::base_mismatch, "delta base vanished");
        }
        if (opts_.rules.inplace && opts_.mirror && !opts_.backup && pipe == nullptr) {  // mirror: never two-way
          auto in = applier_.patch_in_place(m.path, a, m.sha256, bfd.get(), body);
          if (!in.ok() || *in) {
            done = in.ok() ? Result<fs::Fingerprint>(**in) : Result<fs::Fingerprint>(std::move(in).error());
            break;
          }
          lg().debug("patch {}: its delta moves bytes within the file; into a copy instead (rsync.inplace)", log::escape(m.path));
        }
        done = applier_.patch_file(m.path, a, ex, m.sha256, bfd.get(), [&](delta::OutputSink& out) -> Status {
          delta::FdBaseReader br(bfd.get(), static_cast<uint64_t>(bst.st_size));
          // The applier hashes what lands in the file; one SHA-256 pass is enough.
          delta::Patcher patcher(br, out, m.size, delta::Patcher::Hashing::off);
          SYNCD_TRY(each_chunk([&](ByteSpan c) { return patcher.feed(c); }));
          SYNCD_TRY(patcher.finish());
          return {};
        });
      }
      break;
  }
  if (!done.ok()) {
    const auto& e = done.error();
    lg().warn("apply path={} failed: {}", log::escape(m.path), e.message());
    return ack(fv.seq, e.is(errc::verify_failed) ? protocol::AckStatus::verify_failed
                                                  : protocol::AckStatus::failed,
               e.message());
  }
  if (auto st = record(m, fv.seq, *done, origin); !st) {
    return ack(fv.seq, protocol::AckStatus::failed, st.error().message());
  }
  return ack(fv.seq, protocol::AckStatus::applied);
}

protocol::Ack Receiver::do_remove(const protocol::Remove& r) {
  flush_staged();
  if (opts_.two_way) return reconcile_remove(r.seq, r.meta);
  const auto& m = r.meta;
  if (opts_.rules.dry_run) return dry_run(r.seq, "delete", m.path);
  auto cur = applier_.stat(m.path);
  if (cur.ok() && !opts_.rules.delete_running) {
    lg().debug("delete path={} not applied (delete = false or 'startup')", log::escape(m.path));
  } else if (cur.ok()) {
    Status st = S_ISDIR(cur->mode) ? remove_dir(m.path) : remove_file(m.path);
    if (!st.ok() && !st.error().is_errno(ENOENT)) {
      return ack(r.seq, protocol::AckStatus::failed, st.error().message());
    }
    if (pruning()) prune_parents(m.path);
  }
  if (auto st = record(m, r.seq, {}, peer_node_.load()); !st) return ack(r.seq, protocol::AckStatus::failed, st.error().message());
  return ack(r.seq, protocol::AckStatus::applied);
}

protocol::Ack Receiver::do_rename(const protocol::Rename& r) {
  flush_staged();
  if (opts_.two_way) return reconcile_rename(r);
  if (opts_.rules.dry_run) return dry_run(r.seq, "rename", r.from.path + " -> " + r.to.path);
  auto have = index_.get(r.from.path);
  const bool dir = r.to.type == protocol::FileType::dir;
  if (!dir) {
    // What is at `from` must be what moved: a file's bytes, a symlink's target, a device's number.
    bool held = false;
    if (r.to.type == protocol::FileType::file) {
      auto h = local_hash(r.from.path);
      held = h.ok() && *h && **h == r.to.sha256;
    } else {
      auto e = store::scan_one(root_, r.from.path);
      held = e.ok() && *e && (*e)->type == r.to.type && (*e)->sha256 == r.to.sha256;
    }
    if (!held) return ack(r.seq, protocol::AckStatus::base_mismatch, "rename source not held");
  }
  if (opts_.backup) {
    // rsync has no renames: the old name is deleted (kept as a backup) and the new one replaced.
    for (const auto* path : {&r.from.path, &r.to.path}) {
      if (auto kept = opts_.backup->keep(*path); !kept) return ack(r.seq, protocol::AckStatus::failed, kept.error().message());
    }
  }
  if (pruning() && dir) {
    auto here = applier_.stat(r.from.path);
    if (!here.ok() && here.error().is_errno(ENOENT)) {
      // A pruned directory moved: only its records move (nothing below it is here either).
      if (auto st = record_move(r, {}); !st) return ack(r.seq, protocol::AckStatus::failed, st.error().message());
      return ack(r.seq, protocol::AckStatus::applied);
    }
  }
  if (pruning()) {
    if (auto st = make_parents(r.to.path); !st) return ack(r.seq, protocol::AckStatus::failed, st.error().message());
  }
  touch_parent(r.from.path);
  auto moved = applier_.rename(r.from.path, r.to.path, apply::Expected::any(), apply::Expected::any());
  if (!moved.ok()) {
    return ack(r.seq, moved.error().is_errno(ENOENT) ? protocol::AckStatus::base_mismatch
                                                      : protocol::AckStatus::failed,
               moved.error().message());
  }
  auto meta = applier_.set_meta(r.to.path, mirror_attrs(r.to), apply::Expected::any());
  if (pruning()) prune_parents(r.from.path);
  if (auto st = record_move(r, meta.ok() ? *meta : *moved); !st) {
    return ack(r.seq, protocol::AckStatus::failed, st.error().message());
  }
  return ack(r.seq, protocol::AckStatus::applied);
}

Status Receiver::record_move(const protocol::Rename& r, const fs::Fingerprint& fp) {
  const uint64_t peer = peer_node_.load();
  if (r.to.type == protocol::FileType::dir) SYNCD_TRY(move_children_records(r.from.path, r.to.path, peer));
  store::Record from{r.from, 0, {}, peer};
  SYNCD_TRY(index_.put(from));
  return record(r.to, r.seq, fp, peer);
}

Status Receiver::move_children_records(const std::string& from, const std::string& to, uint64_t origin) {
  // The index follows the disk: everything that was under `from` now lives under `to`, with the
  // versions it had (the source sends each child's new version right after).
  std::vector<store::Record> below;
  SYNCD_TRY(index_.for_each_under(from, [&](const store::Record& x) -> Status {
    if (x.meta.path != from && !x.meta.deleted) below.push_back(x);
    return {};
  }));
  for (auto& x : below) {
    store::Record t = x;
    t.meta.deleted = true;
    if (t.meta.type == protocol::FileType::dir) t.meta.sha256 = {};  // as store::author_delete keeps it
    t.meta.symlink_target.clear();
    t.meta.size = 0;
    t.origin = origin;
    SYNCD_TRY(index_.put(t));
    x.meta.path = to + x.meta.path.substr(from.size());
    // Moved past the bound on paths with its directory (the source logs it and sends nothing
    // more of it): the entry is there, but no record can name it.
    if (x.meta.path.size() > protocol::kMaxPath) continue;
    x.origin = origin;
    auto fp = applier_.stat(x.meta.path);
    if (fp.ok()) x.fp = *fp;
    SYNCD_TRY(index_.put(x));
  }
  return {};
}

void Receiver::advance_or_log(uint64_t seq) {
  // Where nothing else was recorded: a failure only means that after a restart the peer resends
  // from an older position (applying a record again changes nothing).
  if (auto st = advance(seq); !st) lg().error("index: the peer's position not kept: {}", st.error().message());
}

Status Receiver::remove_file(const std::string& path) {
  touch_parent(path);
  if (opts_.backup) SYNCD_TRY(opts_.backup->keep(path));
  return applier_.unlink(path, apply::Expected::any());
}

Status Receiver::remove_dir(const std::string& path) {
  touch_parent(path);
  if (!opts_.backup) return applier_.remove_dir(path, opts_.mirror);
  // rsync --backup: each file below is kept, deepest first; a directory still holding backups
  // stays ("cannot delete non-empty directory"), as with rsync.
  std::vector<std::pair<std::string, bool>> below;
  SYNCD_TRY(store::walk(root_, path, [&](const std::string& rel, const fs::Fingerprint& fp) -> Status {
    below.emplace_back(rel, S_ISDIR(fp.mode));
    return {};
  }));
  below.emplace_back(path, true);
  std::sort(below.begin(), below.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  for (const auto& [rel, dir] : below) {
    if (!dir && opts_.backup->is_backup(rel)) continue;
    Status st = dir ? applier_.remove_dir(rel, false) : remove_file(rel);
    if (!st.ok() && dir && st.error().is_errno(ENOTEMPTY)) {
      lg().info("cannot delete non-empty directory: {} (it holds backups)", log::escape(rel));
    } else if (!st.ok() && !st.error().is_errno(ENOENT)) {
      return st;
    }
  }
  return {};
}

Status Receiver::make_parents(const std::string& path) {
  for (size_t slash = path.find('/'); slash != std::string::npos; slash = path.find('/', slash + 1)) {
    const std::string dir = path.substr(0, slash);
    auto here = applier_.stat(dir);
    if (here.ok() || !here.error().is_errno(ENOENT)) continue;  // there (anything else fails below)
    auto rec = index_.get(dir);
    if (!rec.ok() || !*rec || (*rec)->meta.deleted || (*rec)->meta.type != protocol::FileType::dir) {
      return Error::make(errc::unexpected_target, "directory \"" + log::escape(dir) + "\" for \"" + log::escape(path) +
                                              "\" has no record here (rsync.prune_empty_dirs)");
    }
    SYNCD_TRY_ASSIGN(fp, applier_.make_dir(dir, mirror_attrs((*rec)->meta)));
    SYNCD_TRY(index_.set_fingerprint(dir, fp));
    touch_parent(dir);
  }
  return {};
}

void Receiver::prune_parents(const std::string& path) {
  for (size_t slash = path.rfind('/'); slash != std::string::npos && slash > 0; slash = path.rfind('/', slash - 1)) {
    const std::string dir = path.substr(0, slash);
    if (!applier_.remove_dir(dir, false).ok()) return;  // not empty (or gone): its parents stay too
    touch_parent(dir);
  }
}

void Receiver::prune_all_empty() {
  std::vector<std::string> dirs;
  if (auto st = index_.for_each_under("", [&](const store::Record& r) -> Status {
        if (!r.meta.deleted && r.meta.type == protocol::FileType::dir) dirs.push_back(r.meta.path);
        return {};
      });
      !st) {
    lg().error("prune_empty_dirs: empty directories not looked for: {}", st.error().message());
    return;
  }
  std::sort(dirs.begin(), dirs.end(), std::greater<>());  // deepest first: a parent can go after its children
  for (const auto& d : dirs) {
    if (opts_.rules.dry_run) break;
    if (applier_.remove_dir(d, false).ok()) touch_parent(d);
  }
}

// Loop thread: a record numbered at or below the point this session resumed from can only come
// from a source that went back and answers with every record (Sender, INDEX_REQUEST); from
// then on the answer's paths are kept, for a mirror's prune.
void Receiver::note_answer_seq(uint64_t seq) {
  if (answering_ && !went_back_answer_ && asked_since_ > 0 && seq <= asked_since_ && opts_.mirror) went_back_answer_ = true;
}

Status Receiver::prune_extras(uint64_t source_live, const std::set<std::string, std::less<>>& announced, bool only_announced) {
  // Mirror mode after a full sync: what is here but not live in the index came from nowhere.
  std::vector<std::pair<std::string, bool>> extra;
  std::set<std::string, std::less<>> holds_protected;  // directories kept because something inside is protected
  const auto& rules = opts_.rules;
  const watch::Excludes protect = delete_protection();
  const watch::Excludes lasting = rules.delete_excluded ? watch::Excludes() : watch::Excludes(rules.excludes, rules.filters);
  // Versions the source sent that are not applied yet (failed, or waiting for their bytes after
  // base_mismatch): the source has those paths, and what is here may be the base of their delta.
  std::set<std::string, std::less<>> pending;
  for (const auto& [seq, path] : failed_) pending.insert(path);
  // Paths the source holds but could not read: what is here at or below them may be all that is
  // left of them (rsync: "IO error encountered -- skipping file deletion", per path here).
  if (unreadable_.count("") || unreadable_.size() > kMaxUnreadable) {
    lg().warn("initial sync: the source could not read its tree: nothing here is removed");
    kept_newer_.clear();
    return {};
  }
  const auto unreadable = [&](std::string_view rel) {
    for (size_t end = rel.size(); end != std::string_view::npos && end > 0; end = rel.rfind('/', end - 1)) {
      if (unreadable_.count(std::string(rel.substr(0, end)))) return true;
    }
    return false;
  };
  for (const auto& u : unreadable_) {
    for (auto slash = u.rfind('/'); slash != std::string::npos && slash > 0; slash = u.rfind('/', slash - 1)) {
      if (!holds_protected.emplace(u.substr(0, slash)).second) break;
    }
  }
  if (!unreadable_.empty()) {
    lg().warn("initial sync: {} paths the source could not read: kept here, with what is below them", unreadable_.size());
  }
  size_t files_here = 0;  // what is not a directory, outside what is protected (the brake's base)
  SYNCD_TRY(store::walk(root_, "", [&](const std::string& rel, const fs::Fingerprint& fp) -> Status {
    if (!S_ISDIR(fp.mode)) ++files_here;
    if (pending.count(rel) || unreadable(rel)) return {};
    auto r = index_.get(rel);
    if (!r.ok()) return std::move(r).error().wrap(log::escape(rel) + ": not known to be extra, nothing pruned");
    const bool unknown = only_announced || !*r || (*r)->meta.deleted;
    if (unknown && !kept_newer_.count(rel) && !announced.count(rel)) extra.emplace_back(rel, S_ISDIR(fp.mode));
    return {};
  }, [&](std::string_view rel, bool is_dir) {
    // Excluded at the source: not ours to delete here (rsync --delete protects them), nor are the
    // directories that hold them.
    const bool backup = opts_.backup && opts_.backup->is_backup(rel);
    if (!backup && !protect.excluded(rel, is_dir)) return false;
    if (!backup && !lasting.excluded(rel, is_dir)) return true;  // perishable: its directory may still go
    for (auto slash = rel.rfind('/'); slash != std::string_view::npos && slash > 0; slash = rel.rfind('/', slash - 1)) {
      if (!holds_protected.emplace(rel.substr(0, slash)).second) break;  // its ancestors are in already
    }
    return true;
  }));
  kept_newer_.clear();
  std::erase_if(extra, [&](const auto& e) { return e.second && holds_protected.count(e.first); });
  // Files, not directories: a freshly made filesystem mounted at the source holds lost+found.
  const auto extra_files = static_cast<size_t>(std::count_if(extra.begin(), extra.end(), [](const auto& e) { return !e.second; }));
  const auto share = static_cast<size_t>(std::max(opts_.rules.max_delete_share, 0));
  // A source with files is held to the share only from kFirstStartBrakeMin files on: a few
  // extras are what an older copy of the tree has (rsync --delete's ordinary work).
  const size_t at_least = source_live == 0 ? 2 : kFirstStartBrakeMin;
  if (share < 100 && extra_files >= at_least && extra_files * 100 > share * files_here) {
    held_brake_ = source_live == 0
        ? fmt::format("the source announced no file at all (is its volume mounted?): the {} files here are kept; "
                      "if the source is empty on purpose, restart with -max-delete-share 100", extra_files)
        : fmt::format("the initial sync would remove {} of the {} files here as extras (more than {}%; the source "
                      "has {}): is this the right target directory, is the source's volume mounted? Nothing is "
                      "removed; if it is meant, restart with -max-delete-share 100",
                      extra_files, files_here, share, source_live);
    lg().error("MASS-DELETE BRAKE: {}", held_brake_);
    return {};
  }
  // Deepest first; a directory removed takes its contents along.
  std::sort(extra.begin(), extra.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  for (const auto& [path, is_dir] : extra) {
    if (opts_.rules.dry_run) {
      lg().info("dry run (rsync.dry_run): not applied: delete {}", log::escape(path));
      continue;
    }
    Status st = is_dir ? remove_dir(path) : remove_file(path);
    if (!st.ok() && !st.error().is_errno(ENOENT)) lg().warn("prune {}: {}", log::escape(path), st.error().message());
  }
  return {};
}

}  // namespace syncd::runtime
