#include "lib/runtime/sender.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <cstring>
#include <optional>
#include <set>
#include <string_view>
#include <utility>

#include "lib/base/log.h"
#include "lib/codec/content_hash.h"
#include "lib/fs/accounts.h"
#include "lib/delta/delta.h"
#include "lib/runtime/file_signature.h"
#include "lib/store/change.h"
#include "lib/store/chunk_cache.h"
#include "lib/store/scanner.h"
#include "protocol/limits.h"

namespace syncd::runtime {
namespace {

// A failure's text without the path it names: the key under which failures of many paths for
// one cause (the peer's disk full) are collapsed in the log.
std::string failure_kind(std::string why, const std::string& path) {
  if (path.empty()) return why;
  constexpr std::string_view kMark = "<path>";
  for (size_t at = why.find(path); at != std::string::npos; at = why.find(path, at + kMark.size())) {
    why.replace(at, path.size(), kMark);
  }
  return why;
}

void log_send(const protocol::Message& m) {
  if (const auto* fv = std::get_if<protocol::FileVersion>(&m)) {
    log::get(log::Module::runtime).debug("send seq={} path={} body={} del={}", fv->seq, log::escape(fv->meta.path),
                                         static_cast<int>(fv->body), fv->meta.deleted);
  } else if (const auto* r = std::get_if<protocol::Remove>(&m)) {
    log::get(log::Module::runtime).debug("send seq={} remove path={}", r->seq, log::escape(r->meta.path));
  } else if (const auto* rn = std::get_if<protocol::Rename>(&m)) {
    log::get(log::Module::runtime).debug("send seq={} rename {} -> {}", rn->seq, log::escape(rn->from.path),
                                         log::escape(rn->to.path));
  }
}

size_t queued_size(const protocol::Message& m) {
  if (const auto* d = std::get_if<protocol::Data>(&m)) return d->chunk.size() + 32;
  if (const auto* d = std::get_if<protocol::Delta>(&m)) return d->chunk.size() + 64;
  return 256;
}

auto& lg() { return log::get(log::Module::runtime); }

// Reads a whole regular file through the root, refusing anything that is not the version we
// announce (a newer write will produce its own event).
Result<Bytes> read_content(const fs::Root& root, const store::Record& r) {
  auto opened = [&]() -> Result<UniqueFd> {
    SYNCD_TRY_ASSIGN(p, root.parent_of(r.meta.path));
    return root.open_read(p.dir.get(), p.leaf, r.meta.path, O_NONBLOCK);
  }();
  if (!opened.ok() && opened.error().is_errno(ENOENT)) {
    // Gone since it was scanned (a temp file renamed on, a lock file removed): the event of its
    // going follows, as for a file that changed. Not a warning.
    return Error::make(errc::unexpected_target, "\"" + log::escape(r.meta.path) + "\" gone since it was scanned");
  }
  SYNCD_TRY_ASSIGN(fd, std::move(opened));
  Bytes content(r.meta.size);
  size_t got = 0;
  while (got < content.size()) {
    const ssize_t n = ::read(fd.get(), content.data() + got, content.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::from_errno("read \"" + log::escape(r.meta.path) + "\"");
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  uint8_t extra = 0;
  if (got != content.size() || ::read(fd.get(), &extra, 1) != 0 ||
      codec::content_hash(content) != r.meta.sha256) {
    codec::wipe(content.data(), content.size());
    return Error::make(errc::unexpected_target, "\"" + log::escape(r.meta.path) + "\" changed since it was scanned");
  }
  return content;
}

void chunked(std::vector<protocol::Message>& msgs, uint32_t xfer, const Bytes& body, bool delta,
             const protocol::Hash256& base) {
  for (size_t off = 0; off < body.size(); off += protocol::kMaxChunk) {
    const size_t n = std::min(protocol::kMaxChunk, body.size() - off);
    Bytes chunk(body.begin() + static_cast<ptrdiff_t>(off), body.begin() + static_cast<ptrdiff_t>(off + n));
    if (delta) {
      msgs.emplace_back(protocol::Delta{xfer, base, off, std::move(chunk)});
    } else {
      msgs.emplace_back(protocol::Data{xfer, off, std::move(chunk)});
    }
  }
}

// Removals first (deepest first), then live records by mtime, each after its changed ancestors.
void order_by_mtime(std::vector<store::Record>& recs) {
  std::vector<store::Record> gone, live;
  for (auto& r : recs) (r.meta.deleted ? gone : live).push_back(std::move(r));
  std::sort(gone.begin(), gone.end(),
            [](const store::Record& a, const store::Record& b) { return a.meta.path > b.meta.path; });
  std::stable_sort(live.begin(), live.end(), [](const store::Record& a, const store::Record& b) {
    return std::pair(a.meta.mtime_sec, a.meta.mtime_nsec) < std::pair(b.meta.mtime_sec, b.meta.mtime_nsec);
  });
  std::map<std::string, size_t> at;
  for (size_t i = 0; i < live.size(); ++i) at[live[i].meta.path] = i;
  std::vector<char> done(live.size(), 0);
  recs = std::move(gone);
  std::function<void(size_t)> put = [&](size_t i) {
    if (done[i]) return;
    done[i] = 1;
    const std::string& p = live[i].meta.path;
    const size_t slash = p.rfind('/');
    if (slash != std::string::npos) {
      if (auto it = at.find(p.substr(0, slash)); it != at.end()) put(it->second);
    }
    recs.push_back(live[i]);
  };
  for (size_t i = 0; i < live.size(); ++i) put(i);
}

}  // namespace

watch::WatchOptions Sender::with_on_excluded(watch::WatchOptions w, Sender* self) {
  w.on_excluded = [self](const std::string& rel, bool is_dir) { self->note_excluded(rel, is_dir); };
  return w;
}

watch::Excludes source_excludes(const std::vector<std::string>& patterns, const std::vector<watch::FilterRule>& filters,
                                const std::string& root, const std::string& per_dir_file) {
  watch::Excludes ex(patterns, filters);
  if (!per_dir_file.empty()) ex.read_per_dir(root, per_dir_file);
  return ex;
}

void Sender::note_excluded(const std::string& rel, bool is_dir) {
  if (opts_.warn_excluded.empty() || !opts_.warn_excluded.excluded(rel, is_dir)) return;
  {
    std::lock_guard lk(warned_mu_);
    if (!warned_.insert(rel).second) return;
  }
  lg().warn("not replicated: {}: {}", log::escape(rel), opts_.warn_reason);
}

// Bytes scanned but not shipped (superseded within the batch, or held back before the index
// answer) are wiped like every other copy of file content.
void Sender::wipe_fresh(Outbox& out) {
  for (auto& [path, f] : out.fresh) codec::wipe(f.bytes.data(), f.bytes.size());
  out.fresh.clear();
  out.fresh_bytes = 0;
}

Sender::Sender(uvx::Loop& loop, const fs::Root& root, store::Index& index, watch::Excludes excludes,
               Connection* conn, SenderOptions opts)
    : loop_(loop), root_(root), index_(index), conn_(conn), opts_(opts), excludes_(excludes),
      watcher_(opts.watch_tree ? std::make_unique<watch::Watcher>(
                                     loop, root, std::move(excludes),
                                     [this](watch::Batch b) { hold(std::move(b)); },
                                     with_on_excluded(opts.watch, this))
                               : nullptr),
      stream_wake_(std::make_unique<uvx::Async>(loop, [this] { drain_stream(finished_job_ + 1); })),
      jobs_(loop, "syncd-send") {
  if (!opts_.unreadable) opts_.unreadable = std::make_shared<std::map<std::string, bool>>();
  if (conn_) set_connection(conn_);
}

Sender::~Sender() {
  // A job waiting for room in the stream queue must not keep the worker from joining.
  stopping_ = true;
  {
    std::lock_guard lk(stream_mu_);
  }
  stream_cv_.notify_all();
  jobs_.stop();  // before any member a job uses is destroyed
}

Status Sender::start() {
  // Watch first, then scan: nothing written between the two is missed (DESIGN.md §4).
  if (!watcher_) return {};  // announces only
  SYNCD_TRY(watcher_->start());
  watch::Batch startup;
  startup.overflow = true;  // "rescan everything"
  post_batch(std::move(startup));
  return {};
}

size_t Sender::queued() const noexcept {
  return jobs_.in_flight() + (watcher_ ? watcher_->pending_count() : 0) + held_.events.size() + (held_.overflow ? 1 : 0);
}

std::vector<Sender::Delay> Sender::delays() const {
  std::vector<Delay> v;
  for (const auto& e : held_.events) {
    using K = watch::Event::Kind;
    const char* t = e.kind == K::removed ? "Delete" : e.kind == K::renamed ? "Move" : e.kind == K::rescan ? "Create" : "Modify";
    v.push_back({"wait", t, e.kind == K::renamed ? e.from : e.path, e.kind == K::renamed ? e.path : std::string(), e.is_dir});
  }
  for (const auto& [path, r] : retry_) v.push_back({"wait", "Modify", path, {}, false});
  std::vector<std::pair<uint64_t, std::string>> sent(in_flight_.begin(), in_flight_.end());
  std::sort(sent.begin(), sent.end());
  for (const auto& [seq, path] : sent) v.push_back({"active", "Modify", path, {}, false});
  return v;
}

void Sender::add_to(LsyncdView& v) const {
  auto d = delays();
  v.delays.insert(v.delays.end(), d.begin(), d.end());
  if (watcher_) v.watches = watcher_->watches();
}

std::vector<std::pair<int, std::string>> Sender::watches() const {
  return watcher_ ? watcher_->watches() : std::vector<std::pair<int, std::string>>{};
}

void Sender::hold(watch::Batch b) {
  if (opts_.delay_ms == 0 || !b.error.empty()) {
    if (!held_.events.empty() || held_.overflow || held_.root_attrib) release_held();  // keep the order
    return post_batch(std::move(b));
  }
  const bool first = held_.events.empty() && !held_.overflow && !held_.root_attrib;
  held_.overflow = held_.overflow || b.overflow;
  held_.root_attrib = held_.root_attrib || b.root_attrib;
  held_.events.insert(held_.events.end(), std::make_move_iterator(b.events.begin()), std::make_move_iterator(b.events.end()));
  if (held_.events.size() >= opts_.max_delays) return release_held();
  if (first) {
    if (!held_timer_) held_timer_ = std::make_unique<uvx::Timer>(loop_, [this] { release_held(); });
    held_timer_->start(opts_.delay_ms);
  }
}

void Sender::release_held() {
  if (held_timer_) held_timer_->stop();
  watch::Batch b = std::move(held_);
  held_ = {};
  if (!b.events.empty() || b.overflow || b.root_attrib) post_batch(std::move(b));
}

bool Sender::idle() const noexcept {
  // A failed apply is not in sync, nor a version waiting for the peer's signature, nor a file
  // that could not be read.
  return queued() == 0 && in_flight_.empty() && retry_.empty() && sig_asked_.empty() && relook_.empty() &&
         reauthor_.empty();
}

void Sender::watch_quiet() {
  if (opts_.quiet_warn_ms == 0 || !opts_.on_quiet || in_flight_.empty()) return;
  if (!quiet_timer_) quiet_timer_ = std::make_unique<uvx::Timer>(loop_, [this] { check_quiet(); });
  if (!quiet_timer_->active()) quiet_timer_->start(opts_.quiet_warn_ms);
}

void Sender::check_quiet() {
  if (in_flight_.empty()) return;  // everything answered: the next send starts the watch again
  const uint64_t quiet = unanswered_ms();
  if (quiet >= opts_.quiet_warn_ms && !quiet_said_) {
    quiet_said_ = true;
    opts_.on_quiet(quiet, in_flight_.size());
  }
  // Looked at again when the current spell (counted from the last answer) would reach the mark.
  quiet_timer_->start(quiet < opts_.quiet_warn_ms ? opts_.quiet_warn_ms - quiet : opts_.quiet_warn_ms);
}

uint64_t Sender::unanswered_ms() const {
  uint64_t oldest = UINT64_MAX;
  for (const auto& [seq, path] : in_flight_) {
    if (auto t = sent_at_us_.find(seq); t != sent_at_us_.end()) oldest = std::min(oldest, t->second);
  }
  if (oldest == UINT64_MAX) return 0;
  const uint64_t since = std::max(oldest, answered_at_us_), now = mono_us();
  return now > since ? (now - since) / 1000 : 0;
}

store::Author Sender::author() {
  return store::author_now(index_);
}

void Sender::post_batch(watch::Batch b, bool reauthor) {
  if (!b.error.empty()) lg().error("watcher: {}", b.error);
  post_job([this, b = std::move(b), reauthor]() -> JobQueue::Done {
    StoreLock lk(this);
    auto out = std::make_shared<Outbox>();
    out->reauthor = reauthor;
    process_batch(b, *out);
    return [this, out] { deliver(std::move(*out)); };
  });
}

std::vector<double> Sender::latency_samples() const {
  std::vector<double> v = latency_ring_;
  std::sort(v.begin(), v.end());
  return v;
}

void Sender::set_connection(Connection* conn) {
  conn_ = conn;
  sent_at_us_.clear();
  answered_at_us_ = 0;
  quiet_said_ = false;
  if (quiet_timer_) quiet_timer_->stop();
  retry_.clear();  // a new session resends from the peer's resume point, failures included
  {
    std::lock_guard lk(stream_mu_);
    ++gen_;
    conn_backlog_ = 0;
  }
  stream_cv_.notify_all();  // a streaming job for the old session gives up
  if (conn_) {
    conn_->set_on_written([this] {
      conn_backlog_ = conn_ ? conn_->pending_out() : 0;
      stream_cv_.notify_all();
    });
  }
  in_flight_.clear();  // the next session's INDEX_REQUEST covers whatever was not acknowledged
  rename_from_.clear();
  sig_asked_.clear();  // their answers would come on the old session
  sig_asked_bytes_ = 0;
  sig_tried_.clear();
  caps_ = 0;
  caught_up_ = false;
  startup_pending_ = false;  // the next session's INDEX_END acknowledgement decides again
  have_ = std::make_shared<HaveMap>();
}

bool Sender::stream_push(uint64_t gen, protocol::Message m, size_t bytes) {
  std::unique_lock lk(stream_mu_);
  auto room = [&] {
    return stopping_ || gen_.load() != gen || stream_queued_ + conn_backlog_.load() < opts_.stream_window;
  };
  if (!room()) {
    // Waiting on the peer: let this root's appliers use the index meanwhile (two peers streaming
    // large files at each other must not wait on each other's store locks).
    // Only a job that holds the store lock lets go of it here: read while it still does.
    const uint64_t at_release = store_lock_ != nullptr ? index_.max_seq() : 0;
    if (store_lock_ != nullptr) store_lock_->unlock();
    stream_cv_.wait(lk, room);
    if (store_lock_ != nullptr) {
      lk.unlock();
      store_lock_->lock();
      // What they wrote meanwhile is not this job's to skip (send_foreign).
      if (index_.max_seq() > at_release) foreign_.emplace_back(at_release, index_.max_seq());
      lk.lock();
    }
  }
  if (stopping_ || gen_.load() != gen) return false;
  stream_q_.push_back(Streamed{job_seq_, gen, std::move(m), bytes});
  stream_queued_ += bytes;
  lk.unlock();
  stream_wake_->send();
  return true;
}

void Sender::maybe_spill(Outbox& out) {
  // File bytes plus an allowance per message (a record's metadata, the message around it): a
  // tree of many small files weighs by its count too. What the connection has not written yet
  // counts as well: many small batches in a row (cp -r of a tree) would otherwise each go
  // straight into its buffer while the peer falls behind, and the buffer held the whole tree.
  if (out.body_bytes + out.msgs.size() * kMessageCost + conn_backlog_.load() >= opts_.stream_window) (void)spill(out);
}

bool Sender::spill(Outbox& out) {
  bool alive = true;
  for (auto& msg : out.msgs) {
    const size_t sz = queued_size(msg);
    if (!alive || !stream_push(out.gen, std::move(msg), sz)) alive = false;
  }
  out.msgs.clear();
  out.resendable.clear();  // the stream tracks the ACKs of what it sends (drain_stream)
  out.body_bytes = 0;
  // The next deltas' signatures of what went out: 4 % of the bytes for 512-byte blocks. A job
  // announcing a whole tree writes them as it goes instead of holding them all to its end.
  if (sig_pending_bytes_ > kSigPendingMax) persist_signatures();
  return alive;
}

void Sender::announce() {
  const uint64_t gen = gen_.load();
  post_job([this, gen]() -> JobQueue::Done {
    StoreLock lk(this);
    auto out = std::make_shared<Outbox>();
    out->gen = gen;
    if (answered_gen_ != gen) return {};  // the answer to the peer's INDEX_REQUEST carries them
    catch_up(*out);
    return [this, out] { deliver(std::move(*out)); };
  });
}

void Sender::return_own_versions() {
  const uint64_t gen = gen_.load();
  post_job([this, gen]() -> JobQueue::Done {
    StoreLock lk(this);
    if (answered_gen_ != gen) {
      own_versions_owed_gen_ = gen;  // the answer to the peer's INDEX_REQUEST, still to come, sends them
      return {};
    }
    auto out = std::make_shared<Outbox>();
    out->gen = gen;
    catch_up(*out);  // what the index gained meanwhile goes first, in its order
    emit_own_versions(*out);
    return [this, out] { deliver(std::move(*out)); };
  });
}

void Sender::emit_own_versions(Outbox& out) {
  const uint64_t peer = peer_node_.load();
  if (peer == 0) return;
  size_t n = 0;
  auto st = index_.for_each_in_apply_order([&](const store::Record& r) -> Status {
    if (r.origin != peer) return {};
    emit_record_to_author(r, true, true, out);
    maybe_spill(out);
    ++n;
    return {};
  });
  if (!st) {
    out.fatal = std::move(st).error().wrap("returning the peer's own versions");
    return;
  }
  lg().info("the peer went back: {} of its own versions held here sent back to it", n);
}

void Sender::send_foreign(Outbox& out) {
  // Sending them may wait again, and others may write again meanwhile: until nothing is left.
  while (!foreign_.empty() && !out.fatal) {
    const auto ranges = std::exchange(foreign_, {});
    uint64_t from = UINT64_MAX;
    for (const auto& [after, upto] : ranges) from = std::min(from, after);
    std::vector<store::Record> recs;
    auto st = index_.for_each_since(from, [&](const store::Record& r) -> Status {
      for (const auto& [after, upto] : ranges) {
        if (r.seq > after && r.seq <= upto) {
          recs.push_back(r);
          break;
        }
      }
      return {};
    });
    if (!st) {
      out.fatal = std::move(st).error().wrap("announcing peers' versions applied while this node waited");
      return;
    }
    if (!recs.empty()) lg().debug("{} record(s) applied here while the stream waited go out now", recs.size());
    emit_records(recs, false, true, out);
  }
}

void Sender::catch_up(Outbox& out) {
  std::vector<store::Record> recs;
  if (auto st = index_.for_each_since(cursor_, [&](const store::Record& r) -> Status {
        recs.push_back(r);
        return {};
      });
      !st) {
    out.fatal = std::move(st).error().wrap("announcing local changes");
    return;
  }
  cursor_ = index_.max_seq();
  emit_records(recs, false, true, out);
}

void Sender::pair_move(uint64_t tomb_seq, uint64_t to_seq, const std::string& to) {
  // Only a hint (a move without it goes as tombstone + version): a failure costs bytes, not data.
  if (auto st = index_.put_move(tomb_seq, to_seq, to); !st) {
    lg().debug("move to {} not paired in the index: {}", log::escape(to), st.error().message());
  }
}

void Sender::emit_records(const std::vector<store::Record>& recs, bool force_whole, bool pair_moves, Outbox& out) {
  // A move whose tombstone and version are both here goes as one RENAME, in the version's place.
  std::set<uint64_t> here;
  for (const auto& r : recs) here.insert(r.seq);
  std::map<uint64_t, const store::Record*> tomb_of;  // moved version's seq -> its tombstone
  std::set<uint64_t> paired;                         // those tombstones' seqs
  for (const auto& r : recs) {
    if (!pair_moves) break;
    if (auto to = move_of(r); to && here.count(to->seq) != 0) {
      tomb_of[to->seq] = &r;
      paired.insert(r.seq);
    }
  }
  for (const auto& r : recs) {
    if (paired.count(r.seq) != 0) continue;
    if (auto it = tomb_of.find(r.seq); it != tomb_of.end()) {
      emit_rename(r.seq, it->second->meta, r.meta, out);
      continue;
    }
    emit_record(r, true, force_whole, out);
    maybe_spill(out);
  }
}

std::optional<store::Record> Sender::move_of(const store::Record& tomb) {
  if (!opts_.two_way || !tomb.meta.deleted) return std::nullopt;
  if (tomb.origin != 0 && tomb.origin == peer_node_.load()) return std::nullopt;  // the peer's own move
  auto found = index_.get_move(tomb.seq);
  if (!found.ok() || !*found) return std::nullopt;
  const auto& mv = *found;
  // Only while the moved version is still the one at the new path (not edited, moved on or
  // deleted since) and came from where the tombstone came from: else the records go as they are.
  auto cur = index_.get(mv->to_path);
  if (!cur.ok() || !*cur || (*cur)->seq != mv->to_seq || (*cur)->meta.deleted || (*cur)->origin != tomb.origin) {
    return std::nullopt;
  }
  return std::move(**cur);
}

void Sender::post_job(JobQueue::Job job) {
  jobs_.post([this, job = std::move(job)]() -> JobQueue::Done {
    const uint64_t k = ++job_seq_;
    foreign_.clear();
    JobQueue::Done done = job();
    return [this, k, done = std::move(done)] {
      drain_stream(k);  // what this job streamed goes before what it leaves for its completion
      if (done) done();
      finished_job_ = k;
      drain_stream(k + 1);  // the running job's entries may go now
    };
  });
}

void Sender::drain_stream(uint64_t upto_job) {
  std::vector<Streamed> q;
  {
    std::lock_guard lk(stream_mu_);
    while (!stream_q_.empty() && stream_q_.front().job <= upto_job) {
      stream_queued_ -= stream_q_.front().bytes;
      q.push_back(std::move(stream_q_.front()));
      stream_q_.pop_front();
    }
  }
  bool sent = false;
  const uint64_t now_us = mono_us();
  for (auto& e : q) {
    const uint64_t gen = e.gen;
    protocol::Message& m = e.m;
    if (conn_ == nullptr || gen != gen_.load()) continue;  // for a session that is gone
    // Awaiting its ACK from the moment it leaves: registering it later (when the job that
    // streamed it is delivered) loses an ACK that overtakes the job's end - the path would wait
    // for it forever, and so would the node's idle state and a retry of the path.
    if (const auto* fv = std::get_if<protocol::FileVersion>(&m)) {
      in_flight_[fv->seq] = fv->meta.path;
      sent_at_us_[fv->seq] = now_us;
    } else if (const auto* rm = std::get_if<protocol::Remove>(&m)) {
      in_flight_[rm->seq] = rm->meta.path;
      sent_at_us_[rm->seq] = now_us;
    } else if (const auto* rn = std::get_if<protocol::Rename>(&m)) {
      in_flight_[rn->seq] = rn->to.path;
      rename_from_[rn->seq] = rn->from.path;
      sent_at_us_[rn->seq] = now_us;
    }
    log_send(m);
    shape(m);
    conn_->send(m);
    sent = true;
  }
  if (sent) conn_->flush();
  watch_quiet();
  conn_backlog_ = conn_ ? conn_->pending_out() : 0;
  stream_cv_.notify_all();
}

void Sender::remember_signature(const std::string& path, uint64_t peer, store::CachedSignature sig, Outbox& out) {
  sig_pending_bytes_ += sig.signature.size();
  sig_pending_.insert_or_assign(path, PendingSignature{peer, std::move(sig)});
  out.signatures = true;
}

void Sender::forget_signature(const std::string& path, Outbox& out) {
  const uint64_t peer = peer_node_.load();
  if (peer == 0) return;
  if (auto it = sig_pending_.find(path); it != sig_pending_.end()) {
    sig_pending_bytes_ -= it->second.sig.signature.size();
    it->second = PendingSignature{peer, {}};
    out.signatures = true;
    return;
  }
  // Most paths never had one (small files): only those that do cost a write. (An index that
  // cannot tell gets the forget: a stale base is the thing to avoid.)
  auto has = index_.has_signature(path, peer);
  if (has.ok() && !*has) return;
  sig_pending_.emplace(path, PendingSignature{peer, {}});
  out.signatures = true;
}

void Sender::emit_rename(uint64_t seq, const protocol::FileMeta& from, const protocol::FileMeta& to, Outbox& out) {
  out.msgs.emplace_back(protocol::Rename{seq, from, to});
  out.resendable.emplace_back(seq, to.path);
  const uint64_t peer = peer_node_.load();
  auto sig = peer != 0 && to.type == protocol::FileType::file ? cached_signature(from.path, peer) : std::nullopt;
  forget_signature(from.path, out);
  if (sig) {
    remember_signature(to.path, peer, std::move(*sig), out);
  } else {
    forget_signature(to.path, out);
  }
}

std::optional<store::CachedSignature> Sender::cached_signature(const std::string& path, uint64_t peer) {
  if (auto it = sig_pending_.find(path); it != sig_pending_.end()) {
    // Newer than what the index holds: a forget, or one for another peer, is none.
    if (it->second.peer == peer && !it->second.sig.signature.empty()) return it->second.sig;
    return std::nullopt;
  }
  auto c = index_.get_signature(path, peer);
  if (!c.ok()) return std::nullopt;
  return std::move(*c);
}

std::optional<protocol::Hash256> Sender::peer_content(const std::string& path, uint64_t peer) {
  if (auto it = sig_pending_.find(path); it != sig_pending_.end()) {
    if (it->second.peer == peer && !it->second.sig.signature.empty()) return it->second.sig.base_hash;
    return std::nullopt;
  }
  auto h = index_.signature_base(path, peer);
  if (!h.ok()) return std::nullopt;
  return *h;
}

void Sender::persist_signatures() {
  for (auto& [path, p] : sig_pending_) {
    // Best effort: without a signature the next change of this file goes whole; a stale one
    // left behind costs one base_mismatch round trip.
    auto st = p.sig.signature.empty() ? index_.forget_signature(path, p.peer) : index_.put_signature(path, p.peer, p.sig);
    if (!st) lg().debug("keep signature of {}: {}", log::escape(path), st.error().message());
  }
  sig_pending_.clear();
  sig_pending_bytes_ = 0;
}

void Sender::persist_signatures_committed() {
  auto txn = index_.begin();  // one commit for all of them
  persist_signatures();
  if (txn.ok()) {
    if (auto st = txn->commit(); !st) lg().debug("keep signatures: {}", st.error().message());
  }
}

void Sender::deliver(Outbox out) {
  if (out.signatures) {
    // After this job's messages (sent below, on this thread), not before them.
    post_job([this]() -> JobQueue::Done {
      StoreLock lk(this);
      persist_signatures_committed();
      return {};
    });
  }
  for (const auto& e : out.errors) {
    // Each batch on a full state disk fails its commit the same way: said once per window.
    if (auto line = repeats_.pass(e, e, loop_.now_ms())) lg().warn("{}", *line);
  }
  // Unreadable paths are the tree's, not the session's: looked at again whatever the connection.
  for (const auto& p : out.readable) relook_.erase(p);
  for (const auto& [p, dir] : out.unreadable) schedule_relook(p, dir);
  if (out.reauthor && out.committed) {
    for (auto it = reauthor_.begin(); it != reauthor_.end();) it = it->second.due_ms == UINT64_MAX ? reauthor_.erase(it) : std::next(it);
    if (reauthor_.empty()) unrecorded_why_.clear();
  }
  if (!out.uncommitted.empty()) {
    if (!out.errors.empty()) unrecorded_why_ = out.errors.back();
    const uint64_t now = loop_.now_ms();
    uint64_t wait_ms = 0;
    for (const auto& [p, dir] : out.uncommitted) {
      Backoff& r = reauthor_[p];
      r.next(now);
      r.dir = r.dir || dir;
      wait_ms = std::max(wait_ms, r.backoff_ms);
    }
    if (auto line = repeats_.pass("uncommitted",
                                  "changes under " + std::to_string(out.uncommitted.size()) +
                                      (out.uncommitted.size() == 1 ? " path are" : " paths are") +
                                      " not recorded (the index did not commit): looked at again in " + std::to_string(wait_ms / 1000) + " s",
                                  loop_.now_ms())) {
      lg().warn("{}", *line);
    }
    arm(reauthor_timer_, reauthor_, &Sender::run_reauthors);
  }
  if (out.rescanned) lg().info("full rescan done: {} new versions", out.versions);
  // A rename is authored too: a node whose peer dialed it sends on that peer's session, which
  // announces only when told (this sender's own connection may be the one that closed).
  if ((out.versions > 0 || out.moved) && opts_.on_authored) opts_.on_authored();
  if (conn_ == nullptr || out.gen != gen_.load()) return;  // for a session that is gone
  if (!out.to_sign.empty()) sign_held(std::move(out.to_sign), out.gen);
  if (out.fatal) {
    conn_->close(*out.fatal);
    return;
  }
  // Versions that could not be read as recorded (the file changed under the read). Usually the
  // watcher's event for that change brings a new version; but when the change was a peer's
  // version applied here (an echo, dropped), nothing would: so the path is looked at again later
  // (a retry settles once the record is the peer's own, or sends the current one).
  for (const auto& p : out.unsent) schedule_retry(p, "changed while it was read");
  for (const auto& m : out.msgs) log_send(m);
  const uint64_t now_us = mono_us();
  for (auto& [seq, path] : out.resendable) {
    in_flight_[seq] = path;
    sent_at_us_[seq] = now_us;
  }
  watch_quiet();
  const auto& peer = conn_->peer();
  const bool root_meta_ok = peer && (peer->capabilities & protocol::kCapRootMeta) != 0;
  // A failed send or flush ends the session at once (Push::lost), and conn_ goes with it.
  for (auto& m : out.msgs) {
    if (conn_ == nullptr) return;
    if (std::holds_alternative<protocol::RootMeta>(m) && !root_meta_ok) continue;  // an older peer
    if (const auto* rn = std::get_if<protocol::Rename>(&m)) rename_from_[rn->seq] = rn->from.path;
    shape(m);
    conn_->send(m);
  }
  if (conn_ != nullptr && !out.msgs.empty()) conn_->flush();
  conn_backlog_ = conn_ ? conn_->pending_out() : 0;  // for the next job's maybe_spill
  if (startup_pending_) finish_startup();
}

void Sender::shape(protocol::Message& m) const {
  if (opts_.meta_rules.empty()) return;
  if (auto* fv = std::get_if<protocol::FileVersion>(&m)) {
    opts_.meta_rules.apply(fv->meta);
  } else if (auto* rn = std::get_if<protocol::Rename>(&m)) {
    opts_.meta_rules.apply(rn->to);
  }
}

void Sender::process_batch(const watch::Batch& b, Outbox& out) {
  std::vector<store::Record> changed;
  // What other parts of the node wrote since we last looked goes first (it is older).
  out.gen = gen_.load();
  if (answered_gen_ == out.gen) {
    catch_up(out);
    send_foreign(out);  // older than this batch's own changes: before them
  }
  const size_t caught_msgs = out.msgs.size(), caught_resend = out.resendable.size();
  // Nothing of the batch recorded: its events are spent, so its paths are looked at again.
  const auto spent = [&] {
    if (b.overflow) out.uncommitted.emplace_back("", true);
    for (const auto& e : b.events) {
      out.uncommitted.emplace_back(e.path, e.kind != watch::Event::Kind::changed);
      if (e.kind == watch::Event::Kind::renamed) out.uncommitted.emplace_back(e.from, true);
    }
  };
  auto txn = index_.begin();
  if (!txn.ok()) {
    out.errors.push_back("index: " + txn.error().message());
    spent();
    return;
  }
  if (b.overflow) {
    process_rescan("", out, changed);
  } else {
    for (const auto& e : b.events) {
      const size_t before = changed.size();
      switch (e.kind) {
        case watch::Event::Kind::changed: process_path(e.path, out, changed); break;
        case watch::Event::Kind::removed: process_gone(e.path, out, changed); break;
        case watch::Event::Kind::rescan: process_rescan(e.path, out, changed); break;
        case watch::Event::Kind::renamed:
          if (!process_rename(e.from, e.path, out)) {
            process_gone(e.from, out, changed);
            if (e.is_dir) {
              process_rescan(e.path, out, changed);
            } else {
              process_path(e.path, out, changed);
            }
          } else if (e.is_dir && opts_.two_way) {
            // The move covers what the index held under the old name; an entry it did not hold
            // live went along too (a peer's delete of it, applied just before the move was
            // reported, had this node record it as gone): looking finds it.
            process_rescan(e.path, out, changed);
          }
          break;
      }
      // What this event changed besides its own path goes right after it, before later events
      // (a barrier written after the change must not overtake these).
      if (opts_.hard_links) revisit_links(out, changed, before);
      if (opts_.dir_times) revisit_parents(e, out, changed);
    }
  }
  if (auto st = txn->commit(); !st) {
    out.errors.push_back("index commit: " + st.error().message());
    out.msgs.resize(caught_msgs);  // what catch_up found was committed by others: still valid
    out.resendable.resize(caught_resend);
    spent();
    return;
  }
  out.committed = true;
  if (b.overflow && index_.first_scan()) {
    // The first full scan is recorded: what changes from now on is dated by this node's clock.
    if (auto st = index_.first_scan_done(); !st) out.errors.push_back("index: " + st.error().message());
  }
  // Until the peer's INDEX_REQUEST is answered, nothing goes out live: the answer carries every
  // record in the index, these included, in an order the peer can apply (parents first). Sending
  // them early would let a later change overtake the initial sync.
  out.rescanned = b.overflow;
  out.versions = changed.size();
  if (answered_gen_ != out.gen) {
    out.msgs.clear();
    out.resendable.clear();
    wipe_fresh(out);
    return;
  }
  // After an overflow the order of the changes is lost; replay them in modification-time order
  // (what was written first goes first), parents still before children.
  if (b.overflow) order_by_mtime(changed);
  // Only now, with the versions durable, do they go out.
  for (const auto& r : changed) {
    emit_record(r, true, false, out);
    maybe_spill(out);
  }
  send_foreign(out);
  cursor_ = index_.max_seq();  // what this batch wrote and did not send (renames' parts) stays unsent
  wipe_fresh(out);
  // Last: an entry created, removed or renamed at the top moved the root's mtime.
  note_root(out);
}

void Sender::note_root(Outbox& out) {
  if (!opts_.root_meta) return;
  struct stat st{};
  if (::fstat(root_.fd(), &st) != 0) {
    out.errors.push_back("stat of the root " + root_.path() + ": " + std::strerror(errno));
    return;
  }
  // The rules (rsync.chmod, usermap, ...) as for any directory leaving this node.
  protocol::FileMeta m;
  m.type = protocol::FileType::dir;
  m.mode = st.st_mode & 07777;
  m.uid = st.st_uid;
  m.gid = st.st_gid;
  m.user = fs::user_name(st.st_uid);
  m.group = fs::group_name(st.st_gid);
  m.mtime_sec = st.st_mtim.tv_sec;
  m.mtime_nsec = static_cast<uint32_t>(st.st_mtim.tv_nsec);
  opts_.meta_rules.apply(m);
  protocol::RootMeta r{m.mode, m.uid, m.gid, m.user, m.group, m.mtime_sec, m.mtime_nsec};
  if (root_sent_gen_ == out.gen && root_sent_ == r) return;
  root_sent_ = r;
  root_sent_gen_ = out.gen;
  out.msgs.emplace_back(std::move(r));
}

void Sender::process_path(const std::string& path, Outbox& out,
                          std::vector<store::Record>& changed, bool walking) {
  auto rec = index_.get(path);
  if (!rec.ok()) {
    out.errors.push_back(log::escape(path) + " not looked at: " + rec.error().message());
    return;
  }
  std::optional<store::Known> known;
  if (*rec && !(*rec)->meta.deleted) known = store::Known{(*rec)->fp, (*rec)->meta.sha256};
  Bytes bytes;
  auto entry = store::scan_one(root_, path, known ? &*known : nullptr, &bytes);
  if (!entry.ok() && entry.error().is(errc::unsupported)) {
    // A device, FIFO or socket this sync does not replicate: as for the walk (and rsync without
    // -D), the name is not there — a file it replaced goes. (It was taken for unreadable and
    // looked at again forever: never idle.)
    lg().debug("{}: skipping non-regular file", log::escape(path));
    entry = std::optional<store::Entry>{};
  } else if (!entry.ok() && entry.error().is_errno(ENOENT) && vanished(path)) {
    // Gone between its stat and its open (a temp file renamed into place, a lock file removed):
    // not there, as the walk says of a name that vanishes under it; the event of its going
    // follows. (It was logged as a warning and looked at again: 66 warnings for 2000 saves.)
    // A name made again since (the next save) has its own events to come. A followed link
    // without a referent (ENOENT too, and still there) stays an error.
    entry = std::optional<store::Entry>{};
  }
  if (!entry.ok()) {
    // Busy files come back with their close event. Anything else (EIO, EACCES) is there but
    // unreadable: looked at again later, never taken for gone.
    if (!entry.error().is(errc::unexpected_target)) note_unreadable(path, false, entry.error(), out);
    return;
  }
  if (!*entry) {
    process_gone(path, out, changed);
    return;
  }
  note_readable(path, false, false, out);
  if (opts_.hard_links && (*entry)->type == protocol::FileType::file && (*entry)->nlink > 1) {
    const std::pair<uint64_t, uint64_t> inode{(*entry)->fp.dev, (*entry)->fp.ino};
    links_[inode].insert(path);  // so a write through another name finds it
    if (links_[inode].size() < (*entry)->nlink) find_links(inode, (*entry)->nlink);
  }
  const store::Change kind = store::classify(**entry, *rec, opts_.dir_times);
  if (kind == store::Change::none) return;
  if (kind == store::Change::fingerprint) {
    // Only a cache (the next look re-hashes the file if it is lost), but say so.
    if (auto st = index_.set_fingerprint(path, (*entry)->fp); !st) out.errors.push_back(st.error().message());
    return;
  }
  // What the first scan after a start finds is dated by the file (TWO-WAY.md §4.9, §4.11).
  store::Record r = store::author_version(**entry, *rec, kind, store::author_of_found(index_, **entry, *rec, kind));
  if (!record(r, out)) return;
  // A metadata-only change carries no body; the marker is a content dot older than this version.
  // Kept only when this batch will send it (before the peer's INDEX_REQUEST is answered, the
  // answer sends what the index holds) and within kFreshMax.
  if ((*entry)->hashed && r.meta.type == protocol::FileType::file && bytes.size() == r.meta.size &&
      answered_gen_ == out.gen && out.fresh_bytes + bytes.size() <= kFreshMax) {
    out.fresh_bytes += bytes.size();
    out.fresh[path] = Outbox::Fresh{r.meta.sha256, std::move(bytes)};
  }
  const bool enter = !walking && (*entry)->via_link && r.meta.type == protocol::FileType::dir;
  changed.push_back(std::move(r));
  // A followed link to a directory (rsync.copy_links): nothing watches inside it and no event
  // says it has content, so its tree is read now (a walk already in progress reads it itself).
  if (enter) process_rescan(path, out, changed);
}

bool Sender::vanished(const std::string& path) const {
  auto p = root_.parent_of(path);
  if (!p.ok()) return p.error().is_errno(ENOENT);
  struct stat st{};
  if (::fstatat(p->dir.get(), p->leaf.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return errno == ENOENT;
  // Something there now that is not a link was made after the open failed (the next save's
  // temp file): its own events follow. A link is the one ENOENT of a name that stays: a
  // followed link without a referent.
  return !S_ISLNK(st.st_mode);
}

std::optional<std::string> Sender::link_source(const store::Record& r, const Outbox& out) {
  auto p = root_.parent_of(r.meta.path);
  struct stat st{};
  if (!p.ok() || ::fstatat(p->dir.get(), p->leaf.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return std::nullopt;
  if (!S_ISREG(st.st_mode) || st.st_nlink < 2 || st.st_ino != r.fp.ino || st.st_dev != r.fp.dev) return std::nullopt;
  auto& names = links_[{st.st_dev, st.st_ino}];
  std::optional<std::string> found;
  for (const auto& q : names) {
    if (q == r.meta.path) continue;
    auto rec = index_.get(q);
    if (!rec.ok() || !*rec || (*rec)->meta.deleted || (*rec)->fp.ino != st.st_ino || (*rec)->fp.dev != st.st_dev ||
        (*rec)->meta.sha256 != r.meta.sha256) {
      continue;
    }
    // The peer has it: sent in this session, or held before the session began.
    auto sent = link_sent_.find(q);
    if ((sent != link_sent_.end() && sent->second == std::make_pair(out.gen, r.meta.sha256)) ||
        (link_since_gen_ == out.gen && (*rec)->seq <= link_since_)) {
      found = q;
      break;
    }
  }
  names.insert(r.meta.path);
  link_sent_[r.meta.path] = {out.gen, r.meta.sha256};
  return found;
}

void Sender::find_links(const std::pair<uint64_t, uint64_t>& inode, uint64_t nlink) {
  const uint64_t now = index_.max_seq();
  if (auto it = links_looked_up_.find(inode); it != links_looked_up_.end() && it->second == now) return;
  if (links_looked_up_.size() > 100000) links_looked_up_.clear();
  links_looked_up_[inode] = now;
  auto& names = links_[inode];
  auto st = index_.for_each_under("", [&](const store::Record& r) -> Status {
    if (!r.meta.deleted && r.meta.type == protocol::FileType::file && r.fp.dev == inode.first && r.fp.ino == inode.second) {
      names.insert(r.meta.path);
    }
    return names.size() >= nlink ? Error::make(errc::truncated, "all names found") : Status{};  // stops the walk
  });
  if (!st && !st.error().is(errc::truncated)) {
    links_looked_up_.erase(inode);  // looked up again next time
    lg().warn("hard links: the other names of an inode not looked up: {}", st.error().message());
  }
}

void Sender::revisit_links(Outbox& out, std::vector<store::Record>& changed, size_t from) {
  std::set<std::string> done;
  std::vector<std::string> others;
  for (size_t i = from; i < changed.size(); ++i) {
    const auto& r = changed[i];
    done.insert(r.meta.path);
    if (r.meta.deleted || r.meta.type != protocol::FileType::file) continue;
    auto it = links_.find({r.fp.dev, r.fp.ino});
    if (it == links_.end()) continue;
    others.insert(others.end(), it->second.begin(), it->second.end());
  }
  for (const auto& q : others) {
    if (done.insert(q).second) process_path(q, out, changed);
  }
}

void Sender::revisit_parents(const watch::Event& e, Outbox& out, std::vector<store::Record>& changed) {
  std::set<std::string> parents;
  auto add = [&](const std::string& p) {
    const size_t slash = p.rfind('/');
    if (slash != std::string::npos) parents.insert(p.substr(0, slash));  // the root has no record
  };
  add(e.path);
  if (e.kind == watch::Event::Kind::renamed) add(e.from);
  // After the children: the target restores a directory's time once what is inside is applied.
  // (Unchanged parents cost a stat and an index lookup.)
  for (const auto& p : parents) process_path(p, out, changed);
}

bool Sender::record(store::Record& r, Outbox& out) {
  if (auto st = index_.put(r); !st) {
    out.errors.push_back(log::escape_long(r.meta.path) + " not recorded: " + st.error().message());
    return false;
  }
  return true;
}

void Sender::process_gone(const std::string& path, Outbox& out, std::vector<store::Record>& changed) {
  note_readable(path, true, true, out);  // nothing left there to read
  // The path and everything the index knows below it, deepest first.
  std::vector<store::Record> live;
  if (auto st = index_.for_each_under(path, [&](const store::Record& r) -> Status {
        if (!r.meta.deleted) live.push_back(r);
        return {};
      });
      !st) {
    // Nothing is deleted on a partial list: the next full rescan sees what is gone.
    out.errors.push_back("removal of " + log::escape(path) + " not recorded: " + st.error().message());
    return;
  }
  std::sort(live.begin(), live.end(),
            [](const store::Record& a, const store::Record& b) { return a.meta.path > b.meta.path; });
  for (const auto& r : live) {
    // It may exist again already (deleted and re-created): then it is a change, not a removal.
    auto again = store::scan_one(root_, r.meta.path);
    if (again.ok() && *again) continue;
    store::Record t = store::author_delete(r, author());
    if (record(t, out)) changed.push_back(std::move(t));
  }
}

void Sender::process_rescan(const std::string& dir, Outbox& out, std::vector<store::Record>& changed) {
  std::set<std::string> seen;
  // What was unreadable at or below `dir` is looked at now; what still is comes back below.
  note_readable(dir, true, true, out);
  if (!dir.empty()) {
    seen.insert(dir);
    process_path(dir, out, changed);
  }
  std::set<std::string> unknown;  // paths the walk could not look into: their contents are not gone
  auto st = store::walk(
      root_, dir,
      [&](const std::string& rel, const fs::Fingerprint&) -> Status {
        seen.insert(rel);
        process_path(rel, out, changed, true);
        return {};
      },
      [&](std::string_view rel, bool is_dir) {
        if (!excludes_.excluded(rel, is_dir)) return false;
        note_excluded(std::string(rel), is_dir);
        return true;
      },
      [&](const std::string& rel, const Error& e) {
        unknown.insert(rel);
        note_unreadable(rel, true, e, out);
      });
  // A walk cut short (the directory could not be opened, a tree too deep) found only part of
  // what is there: nothing it did not find may be taken for gone. A directory that vanished, or
  // is a file now, has nothing below it.
  if (!st.ok() && !st.error().is_errno(ENOENT) && !st.error().is_errno(ENOTDIR)) {
    note_unreadable(dir, true, st.error(), out);
    return;
  }
  // What the index holds under dir but the walk did not find is gone.
  std::vector<std::string> gone;
  if (auto listed = index_.for_each_under(dir, [&](const store::Record& r) -> Status {
        // An excluded path is not gone, only no longer ours to sync: never a tombstone that
        // would delete the peer's copy. Nor is what sits in a directory that could not be read.
        if (!r.meta.deleted && !seen.count(r.meta.path) && !covered(r.meta.path, unknown) &&
            !excludes_.excluded(r.meta.path, r.meta.type == protocol::FileType::dir)) {
          gone.push_back(r.meta.path);
        }
        return {};
      });
      !listed) {
    out.errors.push_back("rescan of " + (dir.empty() ? root_.path() : log::escape(dir)) +
                         ": removals not looked for: " + listed.error().message());
    return;
  }
  if (!brake_holds(dir, gone.size())) {
    for (const auto& g : gone) process_gone(g, out, changed);
  }
}

std::string Sender::brake() const {
  std::lock_guard lk(warned_mu_);
  return brake_;
}

bool Sender::brake_holds(const std::string& dir, size_t missing) {
  if (!dir.empty() || opts_.max_delete_share >= 100 || missing < 2) return false;
  size_t live = 0;
  if (auto st = index_.for_each_under("", [&](const store::Record& r) -> Status {
        if (!r.meta.deleted) ++live;
        return {};
      });
      !st) {
    // Without the count there is no telling a mass delete from a small one: none goes out.
    lg().error("rescan: {} removals held back, the index could not be counted: {}", missing, st.error().message());
    return true;
  }
  if (missing * 100 <= static_cast<size_t>(opts_.max_delete_share) * live) {
    std::lock_guard lk(warned_mu_);
    brake_.clear();
    return false;
  }
  std::string why = "a full scan of " + root_.path() + " found " + std::to_string(missing) + " of " +
                    std::to_string(live) + " files missing (more than " + std::to_string(opts_.max_delete_share) +
                    "%): is the volume mounted? No delete is propagated; if they were deleted on purpose, "
                    "restart once with -max-delete-share 100";
  lg().error("MASS-DELETE BRAKE: {}", why);
  std::lock_guard lk(warned_mu_);
  brake_ = std::move(why);
  return true;
}

bool Sender::process_rename(const std::string& from, const std::string& to, Outbox& out) {
  auto rec = index_.get(from);
  if (!rec.ok() || !*rec || (*rec)->meta.deleted) return false;
  auto entry = store::scan_one(root_, to);
  if (!entry.ok() || !*entry) return false;
  const store::Record& old = **rec;
  if ((*entry)->type != old.meta.type) return false;
  // Same inode: the content did not change in the move (a rename does not touch the bytes).
  if ((*entry)->fp.ino != old.fp.ino || (*entry)->fp.size != old.fp.size ||
      (*entry)->fp.mtime_ns != old.fp.mtime_ns) {
    return false;
  }
  // Children of a moved directory: tombstones at the old paths, versions at the new ones.
  std::vector<store::Record> below;
  if (old.meta.type == protocol::FileType::dir) {
    if (auto st = index_.for_each_under(from, [&](const store::Record& r) -> Status {
          if (r.meta.path != from && !r.meta.deleted) below.push_back(r);
          return {};
        });
        !st) {
      out.errors.push_back("move of " + log::escape(from) + ": " + st.error().message());
      return false;
    }
  }
  if (opts_.two_way && old.meta.type == protocol::FileType::dir) return process_dir_move(old, **entry, below, out);
  const auto a = author();
  store::Record tomb = store::author_delete(old, a);
  auto prev_to = index_.get(to);
  if (!prev_to.ok()) {
    out.errors.push_back("move to " + log::escape(to) + ": " + prev_to.error().message());
    return false;
  }
  store::Record moved = store::author_move(**entry, old, *prev_to, a);
  if (!record(tomb, out) || !record(moved, out)) return false;
  emit_rename(moved.seq, tomb.meta, moved.meta, out);
  out.moved = true;
  if (opts_.two_way) pair_move(tomb.seq, moved.seq, to);
  lg().debug("move recorded: {} -> {}", log::escape(from), log::escape(to));
  for (const auto& c : below) {
    // The peer moves these with the directory. Here: a tombstone at the old path and a new
    // version at the new one, sent without a body (same content, new path).
    store::Record ct = store::author_delete(c, author());
    auto cn = moved_child(c, from, to, out);
    if (!cn) continue;
    if (record(ct, out) && record(*cn, out)) emit_record(*cn, false, false, out);
  }
  return true;
}

std::optional<store::Record> Sender::moved_child(const store::Record& c, const std::string& from, const std::string& to,
                                                 Outbox& out) {
  const std::string np = to + c.meta.path.substr(from.size());
  auto prev = index_.get(np);
  if (!prev.ok()) {
    out.errors.push_back("move of " + log::escape_long(c.meta.path) + ": " + prev.error().message());
    return std::nullopt;
  }
  // Same bytes and metadata at the new path (a rename changes neither).
  const store::Entry at_new{np, c.meta.type, c.fp, c.meta.symlink_target, c.meta.rdev, 1, c.meta.sha256, false, c.meta.xattrs};
  return store::author_move(at_new, c, *prev, author());
}

// Two-way: a peer must not move a whole directory, which would carry along entries it added
// there that this node never saw (they stay at the old name: TWO-WAY.md §4.5, rename = tombstone
// + create; §4.7, a directory with live entries unknown to the deleter is kept). So the move goes
// as the new directory, then one RENAME per file below (the peer moves the bytes it holds) and a
// new version per directory below, then the old directories' tombstones, deepest first. Authored
// in that order, so senders that announce from the index send the same order.
bool Sender::process_dir_move(const store::Record& old, const store::Entry& at_new, const std::vector<store::Record>& below,
                              Outbox& out) {
  const std::string& from = old.meta.path;
  const std::string& to = at_new.path;
  auto prev_to = index_.get(to);
  if (!prev_to.ok()) {
    out.errors.push_back("move to " + log::escape(to) + ": " + prev_to.error().message());
    return false;
  }
  out.moved = true;
  store::Record moved = store::author_move(at_new, old, *prev_to, author());
  if (!record(moved, out)) return false;
  emit_record(moved, false, false, out);
  std::vector<const store::Record*> dirs;  // parents first (index order)
  for (const auto& c : below) {
    auto moved_c = moved_child(c, from, to, out);
    if (!moved_c) continue;
    store::Record& cn = *moved_c;
    const std::string& np = cn.meta.path;
    if (c.meta.type == protocol::FileType::dir) {
      if (!record(cn, out)) continue;
      emit_record(cn, false, false, out);
      dirs.push_back(&c);
      continue;
    }
    store::Record ct = store::author_delete(c, author());
    if (!record(ct, out) || !record(cn, out)) continue;
    emit_rename(cn.seq, ct.meta, cn.meta, out);
    pair_move(ct.seq, cn.seq, np);
  }
  for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) {
    store::Record t = store::author_delete(**it, author());
    if (record(t, out)) emit_record(t, false, false, out);
  }
  store::Record tomb = store::author_delete(old, author());
  if (!record(tomb, out)) return false;
  emit_record(tomb, false, false, out);
  lg().debug("move recorded: {} -> {} ({} entries below)", log::escape(from), log::escape(to), below.size());
  return true;
}

void Sender::emit_record(const store::Record& r, bool with_body, bool force_whole, Outbox& out) {
  if (r.origin != 0 && r.origin == peer_node_.load()) return;  // the peer's own record: an echo
  emit_record_to_author(r, with_body, force_whole, out);
}

void Sender::emit_record_to_author(const store::Record& r, bool with_body, bool force_whole, Outbox& out) {
  const auto& m = r.meta;
  if (m.deleted) {
    out.msgs.emplace_back(protocol::Remove{r.seq, m});
    out.resendable.emplace_back(r.seq, m.path);  // one the peer fails is retried too
    forget_signature(m.path, out);
    return;
  }
  const bool content_now = m.content_dot.node == index_.node_id() &&
                           !m.version.empty() && m.content_dot.counter == [&] {
                             for (const auto& v : m.version) {
                               if (v.node == index_.node_id()) return v.counter;
                             }
                             return uint64_t{0};
                           }();
  // A version authored here carries its body only when its content changed with it; one that
  // came from another peer always does (this peer may never have seen that content).
  const bool body = m.type == protocol::FileType::file &&
                    (force_whole || out.resend || (with_body && (content_now || r.origin != 0)));
  if (!body) {
    out.msgs.emplace_back(protocol::FileVersion{0, r.seq, m, protocol::BodyKind::none, 0});
    // Directories, links and specials are awaited too: one that fails is retried, and a retry
    // (of a rename that failed, say) that sends one is settled by its ACK.
    out.resendable.emplace_back(r.seq, m.path);
    if (m.type != protocol::FileType::file) forget_signature(m.path, out);  // no longer a file there
    return;
  }
  // The peer holds these very bytes (a version merged here with its own copy of the same
  // content, two-way): metadata only. Known only from the base of our next delta to it, so only
  // for files that have one; a wrong belief costs a base_mismatch round trip, never a wrong file.
  if (!force_whole && !out.resend && keeps_base(m.size)) {
    if (auto held = peer_content(m.path, peer_node_.load()); held && *held == m.sha256) {
      out.msgs.emplace_back(protocol::FileVersion{0, r.seq, m, protocol::BodyKind::none, 0});
      out.resendable.emplace_back(r.seq, m.path);
      return;
    }
  }
  if (opts_.hard_links && !out.resend) {
    // Another name of this inode went first: the peer links to it (if it lacks that content it
    // answers base_mismatch and the bytes follow).
    if (auto to = link_source(r, out)) {
      out.msgs.emplace_back(protocol::FileVersion{0, r.seq, m, protocol::BodyKind::none, 0, *to});
      out.resendable.emplace_back(r.seq, m.path);
      forget_signature(m.path, out);
      return;
    }
  }
  if (out.have != nullptr) {
    if (auto h = out.have->find(m.path); h != out.have->end()) {
      if (h->second.size == m.size && h->second.mtime_sec == m.mtime_sec && h->second.mtime_nsec == m.mtime_nsec) {
        emit_held(r, out);
        return;
      }
      // Another copy there. The same size under another mtime is most likely the same bytes
      // (a copy made without -p): the peer checks. A big one otherwise is probably an older
      // version: rsync would send a delta against it. (Two-way, a differing copy is a concurrent
      // version: the peer asks for the bytes before it decides, then keeps the loser as usual.)
      const bool big = (caps_.load() & protocol::kCapSignature) != 0 && keeps_base(m.size);
      if (peer_node_.load() != 0 && (h->second.size == m.size || big)) {
        emit_probe(r, out);
        return;
      }
    }
  }
  if (m.size > opts_.stream_above && !out.fresh.count(m.path)) {
    const uint32_t xfer = next_xfer_++;
    out.resendable.emplace_back(r.seq, m.path);
    if (!stream_body(r, xfer, force_whole, out)) {
      out.resendable.pop_back();
      out.unsent.push_back(m.path);
    }
    return;
  }
  Result<Bytes> content = Bytes();
  if (auto f = out.fresh.find(m.path); f != out.fresh.end() && f->second.sha256 == m.sha256) {
    content = std::move(f->second.bytes);  // hashed by this batch's scan: exactly this version
    out.fresh_bytes -= content->size();
    out.fresh.erase(f);
  } else {
    content = read_content(root_, r);
  }
  if (!content.ok()) {
    if (!content.error().is(errc::unexpected_target)) out.errors.push_back(content.error().message());
    out.unsent.push_back(m.path);
    return;
  }
  const uint32_t xfer = next_xfer_++;
  const uint64_t peer = peer_node_.load();
  std::optional<store::CachedSignature> cached;
  if (!force_whole && keeps_base(m.size)) {
    cached = cached_signature(m.path, peer);
  }
  bool sent = false;
  if (cached) {
    auto sig = delta::Signature::parse(cached->signature);
    if (sig.ok()) {
      Bytes d = delta::make_delta(*sig, *content);
      if (d.size() < m.size) {
        out.msgs.emplace_back(protocol::FileVersion{xfer, r.seq, m, protocol::BodyKind::delta, d.size()});
        chunked(out.msgs, xfer, d, true, cached->base_hash);
        out.body_bytes += d.size();
        sent = true;
      }
    }
  }
  if (!sent) {
    out.msgs.emplace_back(protocol::FileVersion{xfer, r.seq, m, protocol::BodyKind::whole, m.size});
    chunked(out.msgs, xfer, *content, false, {});
    out.body_bytes += content->size();
  }
  out.resendable.emplace_back(r.seq, m.path);
  // Cache the signature of what the peer will now hold, for the next change's delta.
  if (keeps_base(m.size)) {
    auto sig = delta::sign(*content, delta::cached_block_len(m.size), codec::HashKey::random());
    remember_signature(m.path, peer, store::CachedSignature{m.sha256, sig.serialize()}, out);
  } else {
    forget_signature(m.path, out);
  }
  codec::wipe(content->data(), content->size());
}

// rsync's quick check: the peer has a file of this size and mtime at the path. It applies the
// version as metadata if its content hash is the version's, and answers base_mismatch if not
// (resend_whole: the bytes follow), so a wrong guess costs a round trip, never a wrong file.
void Sender::emit_held(const store::Record& r, Outbox& out) {
  const auto& m = r.meta;
  out.msgs.emplace_back(protocol::FileVersion{0, r.seq, m, protocol::BodyKind::none, 0});
  out.resendable.emplace_back(r.seq, m.path);
  ++out.quick;
  out.quick_bytes += m.size;
  forget_signature(m.path, out);  // what an older session left describes no known bytes
  // The next edit of a big file goes as a delta against these bytes, as after sending them.
  if (keeps_base(m.size)) {
    out.to_sign.push_back(Outbox::Held{m.path, r.fp, m.size, m.sha256});
  }
}

void Sender::sign_held(std::vector<Outbox::Held> files, uint64_t gen) {
  auto list = std::make_shared<std::vector<Outbox::Held>>(std::move(files));
  post_job([this, list, gen]() -> JobQueue::Done {
    auto out = std::make_shared<Outbox>();
    out->gen = gen;
    const uint64_t peer = peer_node_.load();
    size_t done = 0;
    for (const auto& h : *list) {
      if (stopping_ || gen_.load() != gen || peer == 0) break;  // a new session's answer signs anew
      auto sig = sign_unchanged_file(root_, h.path, h.fp, h.size);
      if (!sig.ok()) {
        lg().debug("no delta base for {}: {}", log::escape(h.path), sig.error().message());
        continue;
      }
      remember_signature(h.path, peer, store::CachedSignature{h.sha256, std::move(*sig)}, *out);
      ++done;
      if (sig_pending_bytes_ > kSigPendingMax) {
        StoreLock lk(this);
        persist_signatures_committed();
      }
    }
    lg().debug("initial sync: {} of {} files already at the peer signed as delta bases", done, list->size());
    return [this, out] { deliver(std::move(*out)); };
  });
}

// The peer holds another copy of this file: announced without bytes, it answers base_mismatch
// (at once when the sizes differ; after hashing its copy when only the times do, and if the
// bytes are the same it applies the version as metadata); for a big file the answer asks for
// its signature, a small one then goes whole.
void Sender::emit_probe(const store::Record& r, Outbox& out) {
  const auto& m = r.meta;
  out.msgs.emplace_back(protocol::FileVersion{0, r.seq, m, protocol::BodyKind::none, 0});
  out.resendable.emplace_back(r.seq, m.path);
  forget_signature(m.path, out);  // what the peer holds is not known yet
  ++out.probed;
  out.probed_bytes += m.size;
}

namespace {

// Roughly what a message costs in the queue (bodies dominate).
// Reads up to buf.size() bytes (fewer only at end of file).
Result<size_t> read_full(int fd, uint8_t* p, size_t n) {
  size_t got = 0;
  while (got < n) {
    const ssize_t r = ::read(fd, p + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return Error::from_errno("read");
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  return got;
}

}  // namespace

bool Sender::stream_body(const store::Record& r, uint32_t xfer, bool force_whole, Outbox& out) {
  const auto& m = r.meta;
  const uint64_t peer = peer_node_.load();
  const uint64_t gen = out.gen;
  const std::string qpath = "\"" + log::escape(m.path) + "\"";
  auto parent = root_.parent_of(m.path);
  if (!parent.ok()) {
    out.errors.push_back(parent.error().message());
    return false;
  }
  auto opened = root_.open_read(parent->dir.get(), parent->leaf, m.path, O_NONBLOCK);
  UniqueFd fd = opened.ok() ? std::move(*opened) : UniqueFd();
  struct stat st{};
  if (!fd || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) return false;  // gone or changed since
  if (static_cast<uint64_t>(st.st_size) != m.size) return false;                 // it was scanned
  // What was read is the scanned version only if nothing wrote to the file since the scan (its
  // mtime; a chmod moves only ctime). Else the peer's check of the content hash refuses the
  // copy, so its signature must not become a delta base, and a delta built on it is not sent.
  auto as_scanned = [&] {
    struct stat now{};
    return ::fstat(fd.get(), &now) == 0 && r.fp.same_bytes(fs::Fingerprint::of(now));
  };
  const bool sig_wanted = keeps_base(m.size);
  std::optional<store::CachedSignature> cached;
  std::optional<delta::Signature> base_sig;
  if (!force_whole && sig_wanted) {
    cached = cached_signature(m.path, peer);
    if (cached) {
      if (auto s = delta::Signature::parse(cached->signature); s.ok()) base_sig = std::move(*s);
    }
  }
  // Chunks the scanner found unchanged since the version the peer holds (store/chunk_cache.h):
  // the delta copies them and the next signature reuses their blocks, without reading them.
  // That needs the base's blocks to tile the chunks and the next signature to use its key.
  std::optional<std::vector<bool>> same;
  if (base_sig && base_sig->header.block_len == delta::cached_block_len(m.size) &&
      codec::kContentChunk % base_sig->header.block_len == 0) {
    same = store::ChunkCache::shared().same_since(store::ChunkCache::file_name(root_.path(), m.path), m.sha256,
                                                  cached->base_hash);
  }
  std::optional<delta::SignatureBuilder> builder;
  auto new_builder = [&](bool reuse_key) {
    builder.reset();
    if (sig_wanted) {
      builder.emplace(m.size, delta::cached_block_len(m.size),
                      reuse_key ? codec::HashKey::from_seed(base_sig->header.seed) : codec::HashKey::random());
    }
  };
  new_builder(same.has_value());
  Bytes buf(protocol::kMaxChunk);

  // A delta against what the peer holds, if it stays small (bounded memory); else whole.
  if (base_sig) {
    const uint64_t limit = std::min<uint64_t>(m.size / 2, 64u << 20);
    delta::DeltaGenerator g(*base_sig);
    Bytes d;
    uint64_t total = 0;
    bool ok = true;
    uint64_t skipped = 0;
    while (ok && total < m.size) {
      const uint64_t i = total / codec::kContentChunk;
      const auto want = static_cast<size_t>(std::min<uint64_t>(codec::kContentChunk - total % codec::kContentChunk, m.size - total));
      if (same && total % codec::kContentChunk == 0 && i < same->size() && (*same)[i]) {
        ok = g.feed_same(want, d).ok() && builder->feed_same(*base_sig, want).ok() &&
             ::lseek(fd.get(), static_cast<off_t>(want), SEEK_CUR) >= 0;
        total += want;
        skipped += want;
        continue;
      }
      auto n = read_full(fd.get(), buf.data(), want);
      if (!n.ok() || *n == 0) {
        ok = n.ok();
        break;
      }
      const ByteSpan chunk(buf.data(), *n);
      ok = g.feed(chunk, d).ok() && builder->feed(chunk).ok() && d.size() <= limit;
      total += *n;
    }
    ok = ok && total == m.size && g.finish(d).ok() && d.size() <= limit;
    if (ok && !as_scanned()) return false;  // written to since the scan: the watcher has that change
    if (ok) {
      if (skipped > 0) lg().debug("delta {}: {} of {} bytes unchanged since the peer's version, not read", qpath, skipped, m.size);
      out.msgs.emplace_back(protocol::FileVersion{xfer, r.seq, m, protocol::BodyKind::delta, d.size()});
      chunked(out.msgs, xfer, d, true, cached->base_hash);
      if (auto sg = std::move(*builder).finish(); sg.ok()) {
        remember_signature(m.path, peer, store::CachedSignature{m.sha256, sg->serialize()}, out);
      } else {
        forget_signature(m.path, out);
      }
      return true;
    }
    if (::lseek(fd.get(), 0, SEEK_SET) != 0) {
      out.errors.push_back("rewind " + qpath + ": " + std::strerror(errno));
      return false;
    }
    new_builder(false);
  }

  // Whole, streamed: what this job produced so far goes first, then header and chunks.
  // (The caller's resendable entry for `r` goes with the spill: the stream tracks the ACK.) A
  // session gone meanwhile leaves nothing to retry on it: the next one announces anew.
  if (!spill(out)) return true;
  if (!stream_push(gen, protocol::FileVersion{xfer, r.seq, m, protocol::BodyKind::whole, m.size}, 256)) return true;
  bool short_read = false;
  for (uint64_t off = 0; off < m.size;) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(protocol::kMaxChunk, m.size - off));
    Bytes chunk(want);
    auto n = short_read ? Result<size_t>(size_t{0}) : read_full(fd.get(), chunk.data(), want);
    if (!n.ok() || *n < want) {
      // The file shrank (or failed) under us after the header went out: the announced length
      // must still be sent. Zeros fail the receiver's SHA-256 check; its ACK brings the resend,
      // and the watcher has the change that shrank it.
      if (!short_read) lg().info("{} changed while being sent; the peer will reject this copy", qpath);
      short_read = true;
      builder.reset();
    }
    if (builder) (void)builder->feed(ByteSpan(chunk.data(), chunk.size()));
    if (!stream_push(gen, protocol::Data{xfer, off, std::move(chunk)}, want + 32)) return true;  // session gone
    off += want;
  }
  bool remembered = false;
  if (builder && as_scanned()) {
    if (auto sg = std::move(*builder).finish(); sg.ok()) {
      remember_signature(m.path, peer, store::CachedSignature{m.sha256, sg->serialize()}, out);
      remembered = true;
    }
  }
  // None wanted (too small), or a copy the peer will reject (short or torn): no base is certain.
  if (!remembered) forget_signature(m.path, out);
  return true;
}

void Sender::resend(const std::string& path, bool ask) {
  const uint64_t gen = gen_.load();
  post_job([this, path, gen, ask]() -> JobQueue::Done {
    StoreLock lk(this);
    auto out = std::make_shared<Outbox>();
    out->gen = gen;
    out->resend = true;
    auto rec = index_.get(path);
    const bool live = rec.ok() && *rec && !(*rec)->meta.deleted;
    if (rec.ok() && *rec && !live) emit_record(**rec, false, false, *out);  // a removal, again
    if (live && ask) {
      const auto& m = (*rec)->meta;
      if (m.type == protocol::FileType::file && keeps_base(m.size)) {
        return [this, path, gen] { ask_signature(path, gen); };
      }
    }
    if (live) emit_record(**rec, true, true, *out);
    // Nothing awaited — no record, or the record is now the peer's own (a conflict it won): no
    // ACK will settle the retry, so it is settled here.
    const bool settled = out->resendable.empty();
    return [this, out, path, settled] {
      if (settled) retry_.erase(path);
      deliver(std::move(*out));
    };
  });
}

void Sender::resend_removals(const std::string& from) {
  const uint64_t gen = gen_.load();
  post_job([this, from, gen]() -> JobQueue::Done {
    StoreLock lk(this);
    auto out = std::make_shared<Outbox>();
    out->gen = gen;
    out->resend = true;
    std::vector<store::Record> gone;
    auto st = index_.for_each_under(from, [&](const store::Record& r) -> Status {
      if (r.meta.deleted) gone.push_back(r);
      return {};
    });
    if (!st) lg().warn("index: the entries that moved away from {} not read: {}", log::escape(from), st.error().message());
    // Deepest first (a path sorts after its directory), as a removal of a tree goes.
    for (auto r = gone.rbegin(); r != gone.rend(); ++r) emit_record(*r, false, false, *out);
    return [this, out] { deliver(std::move(*out)); };
  });
}

void Sender::ask_signature(const std::string& path, uint64_t gen) {
  if (conn_ == nullptr || gen != gen_.load()) return;  // the next session's answer covers it
  if (sig_asked_.size() >= kMaxSigAsked) return resend_whole(path);
  const uint32_t id = next_sig_req_++;
  sig_asked_[id] = SigAsked{path, {}, 0, 0, false, {}};
  sig_tried_.insert(path);
  lg().debug("peer lacks the base of {}: asking for its signature (request {})", log::escape(path), id);
  conn_->send(protocol::SigRequest{id, path, {}});
  conn_->flush();
}

void Sender::on_signature(const protocol::SignatureMsg& s) {
  auto it = sig_asked_.find(s.req_id);
  if (conn_ == nullptr) return;
  if (it == sig_asked_.end() || it->second.path != s.path) {
    conn_->close(Error::make(errc::corrupt, "SIGNATURE answering no SIG_REQUEST (request " + std::to_string(s.req_id) + ")"));
    return;
  }
  SigAsked& a = it->second;
  const bool first = a.received == 0;
  if (s.offset != a.received || (!first && (s.total_len != a.total || s.file_hash != a.file_hash)) ||
      (s.chunk.empty() && s.total_len != 0)) {
    conn_->close(Error::make(errc::corrupt, "SIGNATURE chunks of \"" + log::escape(s.path) + "\" out of order"));
    return;
  }
  if (first) {
    a.total = s.total_len;
    a.file_hash = s.file_hash;
  }
  a.received += s.chunk.size();
  if (!a.dropped && sig_asked_bytes_ + s.chunk.size() > kMaxSigAskedBytes) {
    a.dropped = true;  // bounded memory: this one goes whole
    sig_asked_bytes_ -= a.sig.size();
    Bytes().swap(a.sig);
  }
  if (!a.dropped) {
    a.sig.insert(a.sig.end(), s.chunk.begin(), s.chunk.end());
    sig_asked_bytes_ += s.chunk.size();
  }
  if (a.received < a.total) return;
  SigAsked done = std::move(a);
  sig_asked_.erase(it);
  sig_asked_bytes_ -= done.sig.size();
  if (done.total == 0 || done.dropped) {
    lg().debug("no signature of {} from the peer: sending it whole", log::escape(done.path));
    return resend_whole(done.path);
  }
  send_against(done.path, done.file_hash, std::move(done.sig));
}

void Sender::send_against(const std::string& path, const protocol::Hash256& base, Bytes sig) {
  const uint64_t gen = gen_.load();
  auto bytes = std::make_shared<Bytes>(std::move(sig));
  post_job([this, path, base, bytes, gen]() -> JobQueue::Done {
    auto parsed = delta::Signature::parse(*bytes);
    if (!parsed.ok()) {
      // SECURITY.md §2: a malformed signature header is fatal for the session.
      auto why = std::make_shared<Error>(std::move(parsed).error().wrap("SIGNATURE of \"" + log::escape(path) + "\""));
      return [this, gen, why] {
        if (conn_ != nullptr && gen == gen_.load()) conn_->close(Error::make(errc::corrupt, why->message()));
      };
    }
    StoreLock lk(this);
    auto out = std::make_shared<Outbox>();
    out->gen = gen;
    out->resend = true;
    auto rec = index_.get(path);
    const uint64_t peer = peer_node_.load();
    if (rec.ok() && *rec && !(*rec)->meta.deleted && peer != 0) {
      // The base of this delta (and, if none goes, of the next one): what the peer holds.
      remember_signature(path, peer, store::CachedSignature{base, std::move(*bytes)}, *out);
      emit_record(**rec, true, false, *out);
    }
    const bool settled = out->resendable.empty();
    return [this, out, path, settled] {
      if (settled) retry_.erase(path);
      deliver(std::move(*out));
    };
  });
}

void Sender::note_unreadable(const std::string& path, bool dir, const Error& why, Outbox& out) {
  out.errors.push_back(why.message() + (dir ? ": its contents are not taken for gone" : ": not sent") +
                       ", looked at again later");
  auto& set = *opts_.unreadable;
  set[path] = set[path] || dir;
  // Found readable earlier in this job (a rescan clears before it looks): still unreadable.
  std::erase(out.readable, path);
  // Once per look (a rescan finds it twice in a row: as a path, then as the directory it cannot
  // walk), so its backoff grows once.
  if (!out.unreadable.empty() && out.unreadable.back().first == path) {
    out.unreadable.back().second = set[path];
    return;
  }
  out.unreadable.emplace_back(path, set[path]);
}

void Sender::note_readable(const std::string& path, bool dir_too, bool below, Outbox& out) {
  // Called for every path looked at: usually the set is empty, and a lookup is all it costs.
  auto& set = *opts_.unreadable;
  // Everything with `path` as a string prefix (itself, what is below it, and "path-x" names that
  // sort between) is one run of the sorted set.
  for (auto it = set.lower_bound(path); it != set.end() && it->first.compare(0, path.size(), path) == 0;) {
    const bool at = it->first.size() == path.size();
    const bool under = below && (path.empty() || it->first[path.size()] == '/');
    if (!below && !at) break;  // the path itself is first in the run
    if ((at && (dir_too || !it->second)) || under) {
      out.readable.push_back(it->first);
      it = set.erase(it);
    } else {
      ++it;
    }
  }
}

void Sender::announce_unreadable(Outbox& out) {
  const auto& set = *opts_.unreadable;
  if (set.empty() || opts_.two_way) return;  // a two-way peer prunes nothing
  if ((caps_.load() & protocol::kCapUnreadable) == 0) {
    lg().warn("{} paths here could not be read; the peer is too old to be told, and a mirror's initial "
              "sync removes its copies of them", set.size());
    return;
  }
  lg().warn("{} paths here could not be read: the peer keeps its copies of them", set.size());
  if (set.size() > kMaxUnreadable) {
    out.msgs.emplace_back(protocol::Unreadable{""});  // too many to list: keep everything
    return;
  }
  for (const auto& [path, dir] : set) out.msgs.emplace_back(protocol::Unreadable{path});
}

bool Sender::covered(const std::string& path, const std::set<std::string>& set) {
  if (set.empty()) return false;
  if (set.count("") || set.count(path)) return true;
  for (size_t slash = path.find('/'); slash != std::string::npos; slash = path.find('/', slash + 1)) {
    if (set.count(path.substr(0, slash))) return true;
  }
  return false;
}

void Sender::arm(std::unique_ptr<uvx::Timer>& timer, const Schedule& s, void (Sender::*fire)()) {
  if (!timer) timer = std::make_unique<uvx::Timer>(loop_, [this, fire] { (this->*fire)(); });
  uint64_t next = UINT64_MAX;
  for (const auto& [p, x] : s) next = std::min(next, x.due_ms);
  if (next == UINT64_MAX) {
    timer->stop();
    return;
  }
  timer->start(next > loop_.now_ms() ? next - loop_.now_ms() : 0);
}

void Sender::schedule_relook(const std::string& path, bool dir) {
  Backoff& r = relook_[path];
  r.next(loop_.now_ms());
  r.dir = r.dir || dir;
  lg().info("will look at {} again in {} s (it could not be read)", path.empty() ? "the tree" : log::escape(path),
            r.backoff_ms / 1000);
  arm(relook_timer_, relook_, &Sender::run_relooks);
}

watch::Batch Sender::take_due(Schedule& s) {
  // The same path as a watcher event: looked at again (a directory walked).
  watch::Batch b;
  const uint64_t now = loop_.now_ms();
  for (auto& [path, r] : s) {
    if (r.due_ms > now) continue;
    r.due_ms = UINT64_MAX;  // until the job says how it went (scheduled again, or erased)
    watch::Event e;
    e.kind = r.dir ? watch::Event::Kind::rescan : watch::Event::Kind::changed;
    e.path = path;
    b.events.push_back(std::move(e));
  }
  return b;
}

void Sender::run_relooks() {
  // Read again, sent if it can be read now.
  if (auto b = take_due(relook_); !b.events.empty()) post_batch(std::move(b));
  arm(relook_timer_, relook_, &Sender::run_relooks);
}

void Sender::finish_startup() {
  if (!startup_pending_ || !caught_up_ || !reauthor_.empty() || !in_flight_.empty()) return;
  startup_pending_ = false;
  ever_caught_up_ = true;
  if (opts_.on_caught_up) opts_.on_caught_up(true);
}

void Sender::run_reauthors() {
  if (auto b = take_due(reauthor_); !b.events.empty()) post_batch(std::move(b), true);
  arm(reauthor_timer_, reauthor_, &Sender::run_reauthors);
}

void Sender::schedule_retry(const std::string& path, const std::string& why) {
  Backoff& r = retry_[path];
  r.next(loop_.now_ms());
  r.failed_ms = loop_.now_ms();
  r.why = why;
  if (auto line = repeats_.pass("retry: " + failure_kind(why, path),
                                fmt::format("will send {} again in {} s ({})", log::escape(path), r.backoff_ms / 1000, why),
                                loop_.now_ms())) {
    lg().info("{}", *line);
  }
  arm(retry_timer_, retry_, &Sender::run_retries);
}

Sender::LastFailure Sender::last_failure() const {
  const Schedule::value_type* last = nullptr;
  for (const auto& e : retry_) {
    if (last == nullptr || e.second.failed_ms >= last->second.failed_ms) last = &e;
  }
  if (last == nullptr) return {};
  const uint64_t now = loop_.now_ms(), due = last->second.due_ms;
  return {last->first, last->second.why, due == UINT64_MAX || due <= now ? 0 : due - now};
}

void Sender::run_retries() {
  const uint64_t now = loop_.now_ms();
  for (auto& [path, r] : retry_) {
    if (r.due_ms > now) continue;
    r.due_ms = UINT64_MAX;  // until its ACK reschedules or clears it
    if (conn_ != nullptr) resend_whole(path);
  }
  arm(retry_timer_, retry_, &Sender::run_retries);
}

void Sender::on_message(const protocol::Message& msg) {
  if (const auto* h = std::get_if<protocol::Hello>(&msg)) {
    peer_node_ = h->node_id;
    caps_ = conn_ != nullptr ? conn_->capabilities() : 0;
    return;
  }
  if (const auto* sg = std::get_if<protocol::SignatureMsg>(&msg)) return on_signature(*sg);
  if (const auto* h = std::get_if<protocol::Have>(&msg)) {
    if (have_ && have_->size() < kMaxHave) {
      (*have_)[h->path] = HaveStat{h->size, h->mtime_sec, h->mtime_nsec};
    }
    return;
  }
  if (const auto* req = std::get_if<protocol::IndexRequest>(&msg)) {
    const uint64_t since = req->index_id == index_.index_id() ? req->since_seq : 0;
    lg().debug("index request since={} (asked {})", since, req->since_seq);
    const uint64_t gen = gen_.load();
    std::shared_ptr<HaveMap> have = since == 0 && have_ && !have_->empty() ? std::move(have_) : nullptr;
    have_.reset();
    post_job([this, asked = since, gen, have]() -> JobQueue::Done {
      StoreLock lk(this);
      auto out = std::make_shared<Outbox>();
      out->gen = gen;
      out->have = have.get();
      uint64_t from = asked;
      if (from > index_.max_seq()) {
        // The peer applied records of ours this index no longer has: it went back (a snapshot
        // or backup restored, commits lost in a power failure), and numbers it hands out again
        // may already lie behind the peer's point. Everything goes; the peer's INDEX_END
        // handling moves its point back (receiver.h, rewind_if_behind).
        lg().warn("the peer applied records of this node up to {}, but its index ends at {}: it went back "
                  "(restored from a snapshot or backup, or its last commits lost in a power failure); "
                  "announcing every record", from, index_.max_seq());
        from = 0;
      }
      link_since_ = from;
      link_since_gen_ = gen;
      // Parents before children for creations; removals deepest first.
      Status st;
      if (from == 0) {
        // A peer asking for everything never applied our records: it holds no old name to move
        // (a RENAME would only cost it a round trip to ask for the bytes), so nothing needs
        // pairing and the index streams out in SQLite's order, never held whole (it is the
        // initial sync of the whole tree: 100,000 records held ~50 MB).
        st = index_.for_each_in_apply_order([&](const store::Record& r) -> Status {
          emit_record(r, true, true, *out);
          maybe_spill(*out);
          return {};
        });
      } else {
        std::vector<store::Record> recs;
        st = index_.for_each_since(from, [&](const store::Record& r) -> Status {
          recs.push_back(r);
          return {};
        });
        std::stable_sort(recs.begin(), recs.end(), [](const store::Record& a, const store::Record& b) {
          if (a.meta.deleted != b.meta.deleted) return !a.meta.deleted;
          return a.meta.deleted ? a.meta.path > b.meta.path : a.meta.path < b.meta.path;
        });
        if (st) emit_records(recs, true, true, *out);
      }
      if (!st) {
        // No INDEX_END: it would tell the peer it has everything up to our last record.
        out->fatal = std::move(st).error().wrap("answering the peer's index request");
        return [this, out] { deliver(std::move(*out)); };
      }
      if (out->probed > 0) {
        lg().info("initial sync: {} files ({} bytes) differ from the peer's copies in size or time: announced "
                  "without their bytes, the peer checks its copy and asks for a delta or the bytes", out->probed,
                  out->probed_bytes);
      }
      if (out->quick > 0) {
        lg().info("initial sync: {} files ({} bytes) already at the peer with the same size and time: "
                  "announced without their bytes, the peer checks their content", out->quick, out->quick_bytes);
      }
      out->have = nullptr;  // the live changes that follow carry their bytes
      send_foreign(*out);
      if (out->fatal) return [this, out] { deliver(std::move(*out)); };
      if (own_versions_owed_gen_ == gen) emit_own_versions(*out);
      if (out->fatal) return [this, out] { deliver(std::move(*out)); };
      cursor_ = index_.max_seq();
      note_root(*out);  // a new session: out->gen differs from what the last one was sent
      announce_unreadable(*out);
      out->msgs.emplace_back(protocol::IndexEnd{index_.index_id(), index_.max_seq()});
      answered_gen_ = gen;
      return [this, out] { deliver(std::move(*out)); };
    });
    return;
  }
  if (const auto* sum = std::get_if<protocol::IndexSummary>(&msg)) {
    // The peer has applied (durably) every record of ours up to acked_seq.
    if (sum->index_id != index_.index_id() || peer_node_.load() == 0) return;
    const uint64_t node = peer_node_.load(), acked = sum->acked_seq;
    post_job([this, node, acked]() -> JobQueue::Done {
      StoreLock lk(this);
      // Only tombstone collection waits on it: a failure delays that, and is logged.
      auto keep = [&]() -> Status {
        SYNCD_TRY_ASSIGN(prev, index_.peer_acked(node));
        if (acked > prev) SYNCD_TRY(index_.set_peer_acked(node, acked));
        return {};
      };
      if (auto st = keep(); !st) lg().warn("index: the peer's acknowledged position not kept: {}", st.error().message());
      return {};
    });
    return;
  }
  if (const auto* ack = std::get_if<protocol::Ack>(&msg)) {
    if (ack->xfer_id == protocol::kIndexEndAck) {
      caught_up_ = true;
      if (!ever_caught_up_ && !reauthor_.empty()) {
        // The index answer lacked what the startup scan could not record: not finished yet.
        startup_pending_ = true;
        return;
      }
      const bool first = !ever_caught_up_;
      ever_caught_up_ = true;
      if (opts_.on_caught_up) opts_.on_caught_up(first);
      return;
    }
    answered_at_us_ = mono_us();
    if (quiet_said_) {
      quiet_said_ = false;
      if (opts_.on_quiet) opts_.on_quiet(0, in_flight_.size());
    }
    auto it = in_flight_.find(ack->seq);
    std::string path = it != in_flight_.end() ? it->second : std::string();
    if (it != in_flight_.end()) {
      in_flight_.erase(it);
      // All answered: the watch stops (an idle node runs no timer), the next send starts it.
      if (in_flight_.empty() && quiet_timer_) quiet_timer_->stop();
      if (startup_pending_) finish_startup();
    }
    if (auto rn = rename_from_.find(ack->seq); rn != rename_from_.end()) {
      // A move the peer did not make left the old name's entries there (a name in the way at
      // the target, a swap of two names, a source it did not hold): they go as removals.
      if (ack->status == protocol::AckStatus::failed || ack->status == protocol::AckStatus::base_mismatch) {
        resend_removals(rn->second);
      }
      rename_from_.erase(rn);
    }
    if (auto t = sent_at_us_.find(ack->seq); t != sent_at_us_.end()) {
      const double ms = static_cast<double>(mono_us() - t->second) / 1000.0;
      sent_at_us_.erase(t);
      if (latency_ring_.size() < kLatencySamples) {
        latency_ring_.push_back(ms);
      } else {
        latency_ring_[latency_next_] = ms;
        latency_next_ = (latency_next_ + 1) % kLatencySamples;
      }
    }
    ++sent_;
    if (ack->status == protocol::AckStatus::base_mismatch && !path.empty()) {
      // The peer lacks the base we assumed: a delta against its own copy (rsync's round trip),
      // once per path and session; else, or for a small file, the current version whole.
      const bool ask = (caps_.load() & protocol::kCapSignature) != 0 && !sig_tried_.count(path);
      lg().debug("peer lacks the base of seq={} path={} ({})", ack->seq, log::escape(path), ack->detail);
      resend(path, ask);
    } else if (ack->status == protocol::AckStatus::verify_failed && !path.empty()) {
      lg().debug("peer's copy of seq={} path={} failed verification ({}): sending it whole", ack->seq,
                 log::escape(path), ack->detail);
      resend_whole(path);
    } else if (ack->status == protocol::AckStatus::failed) {
      // A full disk or read-only state directory on the peer fails every path the same way:
      // said once per window for each kind of failure, not once per path and retry.
      if (auto line = repeats_.pass("apply: " + failure_kind(ack->detail, path),
                                    fmt::format("peer could not apply seq={} path={}: {}", ack->seq, log::escape(path), ack->detail),
                                    loop_.now_ms())) {
        lg().warn("{}", *line);
      }
      if (!path.empty()) schedule_retry(path, ack->detail);
    } else if (!path.empty()) {
      retry_.erase(path);  // applied (or already there): nothing left to retry
      sig_tried_.erase(path);
    }
  }
}

}  // namespace syncd::runtime
