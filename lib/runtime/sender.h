// File: lib/runtime/sender.h
//
// Sender: the source side of a sync. It watches the tree (lib/watch), turns what changed into new
// local versions in the index (lib/store: scan, classify, author; one transaction per batch) and
// sends them to the peer: whole bodies for small files, deltas against the signature cached for
// the peer for large ones (DESIGN.md §5), metadata-only versions without a body, tombstones as
// REMOVE, unchanged-content moves as RENAME. The peer's INDEX_REQUEST{since} is answered with
// every record newer than `since` (initial sync and resume after a restart).
// The connection can be replaced (a push link that reconnects): messages produced for an older
// connection are dropped, never sent on the new one — the new peer session asks for everything
// after its watermark anyway, so nothing is lost.
// Blocking work runs on the node's JobQueue; the loop thread only routes events and messages.
// Thread affinity: loop thread (public methods); its jobs touch the index only on the job thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "lib/base/clock.h"
#include "lib/base/repeats.h"
#include "lib/delta/signature.h"
#include "lib/engine/meta_rules.h"
#include "lib/fs/root.h"
#include "lib/runtime/connection.h"
#include "lib/runtime/job_queue.h"
#include "lib/store/change.h"
#include "lib/store/index.h"
#include "lib/watch/watcher.h"

namespace syncd::runtime {

// A file the peer holds (protocol::Have), by path.
struct HaveStat {
  uint64_t size = 0;
  int64_t mtime_sec = 0;
  uint32_t mtime_nsec = 0;
};
struct HaveMap : std::unordered_map<std::string, HaveStat> {};

struct SenderOptions {
  uint64_t whole_below = 64 * 1024;  // files smaller than this always travel whole
  // Bodies of files above this are streamed from disk in chunks (never held whole in memory),
  // with at most stream_window bytes queued towards the connection at a time.
  uint64_t stream_above = 4u << 20;
  size_t stream_window = 8u << 20;
  watch::WatchOptions watch;
  // lsyncd's `delay` when a config sets one (LSYNCD-COMPAT §5.2): changes are held for this long
  // from the first one of a window, or until max_delays of them wait, then go as one batch.
  // 0 (syncd's default): every watcher batch goes at once.
  uint32_t delay_ms = 0;
  size_t max_delays = 1000;
  // Excluded paths that deserve a warning naming them (once per path), with the reason: SQLite
  // databases in a two-way tree (TWO-WAY.md §4.12).
  watch::Excludes warn_excluded;
  std::string warn_reason;
  // Mass-delete brake (TWO-WAY.md §4.9): a full scan that finds more than this share (percent) of
  // the live records missing (and at least 2) authors no deletes at all and says so — the volume
  // is probably not mounted. 100 turns it off.
  uint32_t max_delete_share = 100;
  // Whether this sender watches the tree and authors local versions. A node with several peers
  // has one such sender; the others only announce what is in the index (announce()).
  bool watch_tree = true;
  // Loop thread, after a batch of local changes was authored and sent: the node tells its other
  // senders to announce them.
  std::function<void()> on_authored;
  // rsync's chmod/chown/usermap/groupmap (one-way only): applied to each version as it leaves,
  // so the target gets the mapped metadata while this index keeps what is on the local disk.
  engine::MetaRules meta_rules;
  // One-way syncs with rsync's times on directories (not --omit-dir-times): a directory's mtime
  // is a version, and the parents of every changed path are looked at again after a batch (a
  // create, delete or rename inside moved their mtime; inotify does not say so).
  bool dir_times = false;
  // rsync's --hard-links (one-way): a file whose inode has other names already sent goes as a
  // FILE_VERSION with link_to, and a content change through one name re-sends the others.
  bool hard_links = false;
  // One-way syncs: the root directory's own owner, group, mode and mtime go as ROOT_META (to
  // peers that negotiated it) after each batch that changed them and in each session's answer to
  // INDEX_REQUEST; rsync -a gives the target root the source root's.
  bool root_meta = false;
  // Two-way: a moved directory goes entry by entry (Sender::process_dir_move), never as one
  // rename the peer would apply to whatever its copy of the directory holds.
  bool two_way = false;
  // Loop thread, each time the peer acknowledges our INDEX_END (it caught up); first == true once.
  std::function<void(bool first)> on_caught_up;
  // Loop thread: versions have awaited the peer for quiet_warn_ms with no answer from it (once
  // per such spell, `quiet_ms` how long), and 0 when it answers after one. A peer's syncd that
  // hangs while SSH stays up ends no session without rsync.timeout; the owner says so in the
  // log, naming the peer. 0 ms or no function: not watched.
  uint64_t quiet_warn_ms = 60000;
  std::function<void(uint64_t quiet_ms, size_t awaiting)> on_quiet;
  // Paths of the tree that are there but could not be read (EIO, EACCES, ...), each with whether
  // it is a directory that could not be listed: the watching sender keeps the set, every sender
  // of the node sends it (UNREADABLE) before its INDEX_END. Shared by a node's senders and used
  // only under the store lock; a sender without one makes its own.
  std::shared_ptr<std::map<std::string, bool>> unreadable;
};

// A source tree's excludes: lsyncd's patterns and filters, and (`per_dir_file` non-empty) the
// per-directory files of rsync -C read from the tree at `root`.
watch::Excludes source_excludes(const std::vector<std::string>& patterns, const std::vector<watch::FilterRule>& filters,
                                const std::string& root, const std::string& per_dir_file);

// A node's pending work and watches, for lsyncd's status file (syncd/status_file.h).
struct LsyncdView;

class Sender {
 public:
  Sender(uvx::Loop& loop, const fs::Root& root, store::Index& index, watch::Excludes excludes,
         Connection* conn, SenderOptions opts = {});
  ~Sender();
  Sender(const Sender&) = delete;
  Sender& operator=(const Sender&) = delete;

  // Starts watching, then scans the whole tree against the index (the startup scan).
  Status start();
  void on_message(const protocol::Message& m);
  // No changed path waits to be recorded again (an index commit that failed): part of idle(),
  // and what a passive link's authoring sender adds to its joined session's idleness.
  bool recorded() const noexcept { return reauthor_.empty(); }
  // For `syncd status`: how many such paths, and the commit error. Loop thread.
  size_t unrecorded() const noexcept { return reauthor_.size(); }
  const std::string& unrecorded_why() const noexcept { return unrecorded_why_; }
  bool idle() const noexcept;
  uint64_t versions_sent() const noexcept { return sent_; }
  // Sends every record the index gained since this sender last looked (versions other parts of
  // the node wrote: another peer's records applied here, conflict copies, merged records), except
  // the peer's own. Loop thread.
  void announce();
  // The peer's index went back (restored from a snapshot or backup; the receiver of the same
  // session saw it at INDEX_END): the records of the peer's own versions held here, which are
  // otherwise never echoed back, are sent to it once, whole — its restored copies may be older.
  // Loop thread.
  void return_own_versions();
  // A new (started) connection, or nullptr while there is none. Loop thread.
  void set_connection(Connection* conn);
  bool caught_up() const noexcept { return caught_up_; }
  // Sync latency: from a version leaving (queued to the connection) to the peer's ACK that it is
  // applied and durable, over the last kLatencySamples acknowledged versions; ms, sorted copy.
  static constexpr size_t kLatencySamples = 1000;
  std::vector<double> latency_samples() const;
  uint64_t acked() const noexcept { return sent_; }
  size_t awaiting_ack() const noexcept { return in_flight_.size(); }
  // How long the versions awaiting an ACK have had no answer from the peer: ms since its last
  // ACK, or since the oldest of them left if that is later; 0 when none awaits. A peer whose
  // syncd hangs while SSH stays up shows only here (rsync.timeout ends such a session).
  uint64_t unanswered_ms() const;
  // Paths the peer failed to apply, waiting for their resend (schedule_retry). Loop thread.
  size_t retrying() const noexcept { return retry_.size(); }
  // For `syncd status`: the path that failed last among those waiting for a resend, why, and
  // when it is tried again (none: `path` empty). Loop thread.
  struct LastFailure {
    std::string path, why;
    uint64_t next_try_ms = 0;  // from now; 0 while the resend is under way
  };
  LastFailure last_failure() const;
  // Paths of the tree that could not be read, waiting to be read again (relook). Loop thread.
  size_t unreadable() const noexcept { return relook_.size(); }
  // What lsyncd's status file calls delays: changes held or waiting ("wait"), sent and not yet
  // acknowledged ("active"). Paths relative to the root.
  struct Delay {
    const char* status;  // "wait" / "active"
    const char* etype;   // "Create", "Modify", "Delete", "Move"
    std::string path, path2;
    bool is_dir = false;
  };
  std::vector<Delay> delays() const;
  // The watcher's directories (empty for a sender that does not watch).
  std::vector<std::pair<int, std::string>> watches() const;
  // Adds this sender's delays (and, if it watches, its watches) to `v`.
  void add_to(LsyncdView& v) const;
  // Local work not yet turned into messages: batches queued for the worker, files still open.
  size_t queued() const noexcept;
  // Non-empty while the mass-delete brake holds deletes back: why.
  std::string brake() const;

 private:
  struct Outbox {
    std::vector<protocol::Message> msgs;
    std::vector<std::pair<uint64_t, std::string>> resendable;  // seq -> path (live entries: their ACKs are awaited)
    std::vector<std::string> errors;
    uint64_t gen = 0;         // the connection generation these messages are for
    bool rescanned = false;   // a whole-tree rescan (startup or after an overflow) ran
    size_t versions = 0;      // new local versions authored
    bool moved = false;       // renames authored (records the node's other senders announce too)
    // A resend after base_mismatch: the bytes (even of a metadata-only version), never link_to.
    bool resend = false;
    std::vector<std::string> unsent;  // versions not sent: their file changed under the read
    // Paths this job found there but could not read (`dir`: a directory it could not list), and
    // paths of the unreadable set it found readable (or gone) again: the loop looks at the first
    // again later (relook) and stops looking at the second.
    std::vector<std::pair<std::string, bool>> unreadable;
    std::vector<std::string> readable;
    // A batch of changes whose index commit failed (the state directory's disk full, ...): its
    // paths (`dir`: walked), looked at again later; and whether this job's batch committed.
    std::vector<std::pair<std::string, bool>> uncommitted;
    bool committed = false;
    bool reauthor = false;  // this job was run_reauthors' batch
    // Small files' bytes as the scan hashed them, by path: shipped without a second read.
    struct Fresh {
      protocol::Hash256 sha256;
      Bytes bytes;
    };
    std::unordered_map<std::string, Fresh> fresh;
    size_t fresh_bytes = 0;  // their size, at most kFreshMax
    bool signatures = false;  // signatures were remembered: persist them once this is delivered
    // The answer to a full INDEX_REQUEST: the files the peer said it holds (HAVE). A version of
    // one with the same size and mtime goes without its bytes (`quick` of them, `quick_bytes`).
    const HaveMap* have = nullptr;
    size_t quick = 0;
    uint64_t quick_bytes = 0;
    // Big files the peer holds alike (emit_held), to sign after the answer without the store
    // lock (sign_held): the base of the next delta to the peer.
    struct Held {
      std::string path;
      fs::Fingerprint fp;
      uint64_t size = 0;
      protocol::Hash256 sha256{};
    };
    std::vector<Held> to_sign;
    // Files the peer holds at the same size under another mtime, and (kCapSignature)
    // big ones at another size, announced without bytes (`probed`, `probed_bytes`): the peer
    // takes the metadata if the bytes are the same, else its base_mismatch brings its signature
    // (a big file) or the bytes (a small one).
    size_t probed = 0;
    uint64_t probed_bytes = 0;
    // File bytes in msgs. With kMessageCost per message, past stream_window they are spilled
    // into the stream queue (maybe_spill), so a job that announces a whole tree (the answer to
    // INDEX_REQUEST) never holds all of it at once.
    size_t body_bytes = 0;
    // The session cannot go on truthfully (the index could not be read while announcing: what
    // was not read would be skipped for good, the peer's cursor moving past it): deliver closes
    // it with this reason instead of sending, and the next session asks again.
    std::optional<Error> fatal;
  };
  // Job thread: the signature of what the peer will hold once the messages of a job arrive, by
  // path, for the next change's delta. Kept here and written to the index by a job posted after
  // the messages went out (a 100 MiB file's signature is 4 MB: writing it first delayed every
  // delta by that much); read here before the index.
  struct PendingSignature {
    uint64_t peer = 0;
    store::CachedSignature sig;
  };
  // What one batch keeps of small files' bytes (Outbox::fresh). A rescan of a new tree is one
  // batch: past this, files are read again when they go out instead of all being held at once.
  static constexpr size_t kFreshMax = 16u << 20;
  std::unordered_map<std::string, PendingSignature> sig_pending_;
  size_t sig_pending_bytes_ = 0;  // job thread: their size (a spill writes them past kSigPendingMax)
  static constexpr size_t kSigPendingMax = 32u << 20;
  // The cached signature of (path, peer) is the base of the next delta, so it must describe
  // what the peer holds at `path`: every message that changes that either remembers the new
  // content's signature or forgets the old one (a stale base costs a base_mismatch round trip,
  // and the whole file arrives after anything sent behind it). A pending entry with an empty
  // signature is a forget.
  void remember_signature(const std::string& path, uint64_t peer, store::CachedSignature sig, Outbox& out);
  void forget_signature(const std::string& path, Outbox& out);
  // A RENAME moves the bytes at the peer, and with them the signature of what it holds.
  void emit_rename(uint64_t seq, const protocol::FileMeta& from, const protocol::FileMeta& to, Outbox& out);
  std::optional<store::CachedSignature> cached_signature(const std::string& path, uint64_t peer);
  // The content the peer holds at `path` as far as this node knows: its signature's base_hash.
  std::optional<protocol::Hash256> peer_content(const std::string& path, uint64_t peer);
  void persist_signatures();
  // Store lock held: persist_signatures() in one transaction of its own.
  void persist_signatures_committed();
  // A file of `size` bytes gets a cached signature for the peer (the base of its next delta): at
  // least whole_below, small enough to sign (delta::delta_supported), and a peer known by id.
  bool keeps_base(uint64_t size) const noexcept {
    return size >= opts_.whole_below && delta::delta_supported(size) && peer_node_.load() != 0;
  }
  // Job-thread side.
  void process_batch(const watch::Batch& b, Outbox& out);
  void process_path(const std::string& path, Outbox& out,
                    std::vector<store::Record>& changed, bool walking = false);
  void process_gone(const std::string& path, Outbox& out, std::vector<store::Record>& changed);
  // Puts a record this node authored into the index; false with the reason in out.errors (the
  // change is then not sent; the next full rescan finds it again).
  bool record(store::Record& r, Outbox& out);
  // opts_.hard_links, job thread: the names seen per multiply-linked inode (dev, ino).
  std::map<std::pair<uint64_t, uint64_t>, std::set<std::string>> links_;
  // Job thread: names of an inode with more links than links_ knows are looked up in the index
  // (names this node never sent itself: made here by a peer's link, two-way) — once per inode
  // until the index changes (a name outside the tree would otherwise cost a lookup every time).
  void find_links(const std::pair<uint64_t, uint64_t>& inode, uint64_t nlink);
  std::map<std::pair<uint64_t, uint64_t>, uint64_t> links_looked_up_;  // inode -> index max_seq then
  // Job thread: the generation in which each name was last sent (with bytes or as a link) and
  // with which content, and what the peer held when that generation began (its INDEX_REQUEST's
  // since).
  std::map<std::string, std::pair<uint64_t, protocol::Hash256>> link_sent_;
  uint64_t link_since_ = 0, link_since_gen_ = 0;
  // A name of the inode of `r` that the peer has with r's content (nullopt: send the bytes).
  std::optional<std::string> link_source(const store::Record& r, const Outbox& out);
  // The other names of inodes whose content this batch changed (inotify reports only the name
  // written through): looked at again so they follow.
  void revisit_links(Outbox& out, std::vector<store::Record>& changed, size_t from);
  // opts_.dir_times: the directories holding an event's paths, whose mtimes the change moved.
  void revisit_parents(const watch::Event& e, Outbox& out, std::vector<store::Record>& changed);
  void process_rescan(const std::string& dir, Outbox& out, std::vector<store::Record>& changed);
  // Sends a RENAME (and body-less versions for a directory's children) when `to` is `from`
  // moved unchanged; false when it is not, and the caller treats it as remove + create.
  bool process_rename(const std::string& from, const std::string& to, Outbox& out);
  // The record of `c` (an entry below a directory moved from `from` to `to`) at its new path,
  // authored, not yet put; nullopt (reason in out.errors) when the index could not be read.
  std::optional<store::Record> moved_child(const store::Record& c, const std::string& from, const std::string& to,
                                           Outbox& out);
  bool process_dir_move(const store::Record& old, const store::Entry& at_new, const std::vector<store::Record>& below,
                        Outbox& out);
  // A record as a message into `out`; the peer's own records are left out (an echo) — except by
  // emit_record_to_author, which only return_own_versions uses.
  void emit_record(const store::Record& r, bool with_body, bool force_whole, Outbox& out);
  void emit_record_to_author(const store::Record& r, bool with_body, bool force_whole, Outbox& out);
  static void wipe_fresh(Outbox& out);
  // Job thread: a large file's body read from disk chunk by chunk into the stream queue (or a
  // bounded delta). Messages already in `out` go into the queue first, to keep the order.
  // False when nothing for `r` went out (the file changed since it was scanned, or an error).
  bool stream_body(const store::Record& r, uint32_t xfer, bool force_whole, Outbox& out);
  // Job thread: queue one message for the session `gen`; waits while the queue and the
  // connection hold more than stream_window bytes. False when that session is gone.
  bool stream_push(uint64_t gen, protocol::Message m, size_t bytes);
  // Job thread: moves what `out` holds so far into the stream queue, in order (stream_push: it
  // waits while the peer is behind). False when the session is gone (`out` is emptied anyway).
  bool spill(Outbox& out);
  // Job thread, between records and outside any index transaction (a spill may wait for the
  // peer with the store lock released): spills once `out` weighs stream_window.
  void maybe_spill(Outbox& out);
  static constexpr size_t kMessageCost = 512;
  // Loop thread: hands what the job queued to the connection.
  void drain_stream(uint64_t upto_job);  // loop: sends queued entries of jobs up to this one
  store::Author author();
  // Loop-thread side.
  void post_batch(watch::Batch b, bool reauthor = false);
  void deliver(Outbox out);
  // Loop thread, just before a message goes: the meta rules (SenderOptions::meta_rules).
  void shape(protocol::Message& m) const;

  uvx::Loop& loop_;
  const fs::Root& root_;
  store::Index& index_;
  Connection* conn_;
  SenderOptions opts_;
  watch::Excludes excludes_;
  std::unique_ptr<watch::Watcher> watcher_;
  // The delay window (opts_.delay_ms): events held since the first one.
  void hold(watch::Batch b);
  void release_held();
  watch::Batch held_;
  std::unique_ptr<uvx::Timer> held_timer_;
  mutable std::mutex warned_mu_;
  std::string brake_;  // guarded by warned_mu_
  std::set<std::string> warned_;  // guarded by warned_mu_
  // Any thread: an excluded path was seen; warns about it once if opts_.warn_excluded matches.
  void note_excluded(const std::string& rel, bool is_dir);
  static watch::WatchOptions with_on_excluded(watch::WatchOptions w, Sender* self);
  // Job thread: true when a whole-tree scan missing `missing` records must not delete them.
  bool brake_holds(const std::string& dir, size_t missing);
  // The stream queue (job -> loop) for large bodies and spilled outboxes. Each entry carries the
  // number of the job that queued it: the loop sends a job's entries only once every earlier
  // job's completion (its deliver) ran, so the wire order is the jobs' order even when the next
  // job streams before the previous one's completion reached the loop.
  struct Streamed {
    uint64_t job = 0;
    uint64_t gen = 0;
    protocol::Message m;
    size_t bytes = 0;
  };
  std::mutex stream_mu_;
  std::condition_variable stream_cv_;
  std::deque<Streamed> stream_q_;
  size_t stream_queued_ = 0;                 // bytes in stream_q_
  uint64_t job_seq_ = 0;                     // job thread: the number of the running job
  uint64_t finished_job_ = 0;                // loop: the last job whose completion ran
  // Every job goes through here: numbered on the worker; its completion sends the job's streamed
  // entries, runs the job's own completion, then lets the next job's entries go.
  void post_job(JobQueue::Job job);
  std::atomic<size_t> conn_backlog_{0};      // bytes the connection has not written yet
  std::atomic<bool> stopping_{false};
  std::unique_ptr<uvx::Async> stream_wake_;
  JobQueue jobs_;
  // Job thread: the store lock this job holds (released while a stream waits for the peer).
  std::unique_lock<std::mutex>* store_lock_ = nullptr;
  struct StoreLock {
    explicit StoreLock(Sender* s) : s_(s), lk_(s->index_.mutex()) { s_->store_lock_ = &lk_; }
    ~StoreLock() { s_->store_lock_ = nullptr; }
    StoreLock(const StoreLock&) = delete;
    StoreLock& operator=(const StoreLock&) = delete;
    Sender* s_;
    std::unique_lock<std::mutex> lk_;
  };
  uint32_t next_xfer_ = 1;    // job thread
  // Job thread: every record with seq <= cursor_ was sent (or deliberately not) in this session.
  uint64_t cursor_ = 0;
  // Job thread, store lock held: emits the records after cursor_ and moves it to the index's end.
  void catch_up(Outbox& out);
  // Job thread: seq ranges (after, upto] that others wrote (peers' versions applied here) while
  // a job of ours waited in stream_push with the store lock released. A job that then moves
  // cursor_ to the index's end sends them first (send_foreign); cleared when a job starts.
  std::vector<std::pair<uint64_t, uint64_t>> foreign_;
  void send_foreign(Outbox& out);
  // Job thread, store lock held: emit_record() for each, except that (with pair_moves) a move's
  // tombstone and version (move_of) go as one RENAME.
  void emit_records(const std::vector<store::Record>& recs, bool force_whole, bool pair_moves, Outbox& out);
  // Job thread, store lock held: pairs a move's tombstone with its version (Index::put_move).
  void pair_move(uint64_t tomb_seq, uint64_t to_seq, const std::string& to);
  // Job thread, store lock held: the moved version a tombstone pairs with (Index::get_move),
  // while that version is still current at its path.
  std::optional<store::Record> move_of(const store::Record& tomb);
  std::atomic<uint64_t> gen_{0};  // bumped (loop) by set_connection
  uint64_t answered_gen_ = UINT64_MAX;  // job thread: generation whose INDEX_REQUEST was answered
  // Job thread: return_own_versions() came before the answer; the answer sends them.
  uint64_t own_versions_owed_gen_ = UINT64_MAX;
  // Job thread, store lock held: every record of the peer's own versions, whole.
  void emit_own_versions(Outbox& out);
  // Loop thread: the HAVE of this session, until its INDEX_REQUEST (at most kMaxHave kept; the
  // rest only cost their bytes). Null outside that window: later ones are ignored.
  std::shared_ptr<HaveMap> have_;
  static constexpr size_t kMaxHave = 1u << 20;
  // Job thread, the initial answer: `r` is already at the peer (HAVE); announces it without its
  // bytes, and a big one joins out.to_sign.
  void emit_held(const store::Record& r, Outbox& out);
  // Loop: a job signs these files as they are on disk (unchanged since their record) and keeps
  // the signatures as the base of the next delta to the peer. It holds the store lock only to
  // write them, so the node's receivers are not kept waiting while a seeded tree is read.
  void sign_held(std::vector<Outbox::Held> files, uint64_t gen);
  // Job thread: appends ROOT_META when the root's metadata differs from what this session got.
  void note_root(Outbox& out);
  std::optional<protocol::RootMeta> root_sent_;  // job thread, for session root_sent_gen_
  uint64_t root_sent_gen_ = UINT64_MAX;
  bool caught_up_ = false;            // loop: the current peer acknowledged our INDEX_END
  bool ever_caught_up_ = false;
  // Loop: the peer acknowledged INDEX_END while part of the startup scan was not yet recorded
  // (its index commit failed): the startup is finished, and said so, once those paths are
  // recorded and acknowledged (finish_startup).
  bool startup_pending_ = false;
  void finish_startup();
  std::string unrecorded_why_;  // loop: why the last batch of reauthor_ did not commit
  std::atomic<uint64_t> peer_node_{0};  // set from the peer's HELLO (loop), read by jobs
  std::unordered_map<uint64_t, std::string> in_flight_;  // loop: seq -> path awaiting ACK
  std::unordered_map<uint64_t, std::string> rename_from_;  // loop: a Rename's seq -> its from path
  std::unordered_map<uint64_t, uint64_t> sent_at_us_;    // loop: seq -> when it left
  uint64_t answered_at_us_ = 0;                           // loop: the peer's last ACK (this session)
  std::unique_ptr<uvx::Timer> quiet_timer_;               // loop: runs while versions await an ACK
  bool quiet_said_ = false;                               // loop: on_quiet told of this spell
  void watch_quiet();
  void check_quiet();
  // Loop: a path's place in a backoff schedule (1 s, doubling to 60 s). `due_ms` is UINT64_MAX
  // while its attempt is under way (taken, not yet rescheduled or erased).
  struct Backoff {
    uint64_t due_ms = 0;
    uint64_t backoff_ms = 0;
    bool dir = false;  // relook_: a directory to walk again, not a file to read
    uint64_t failed_ms = 0;  // retry_: when the latest attempt failed, and why
    std::string why;
    void next(uint64_t now_ms) noexcept {
      backoff_ms = backoff_ms == 0 ? 1000 : std::min<uint64_t>(backoff_ms * 2, 60000);
      due_ms = now_ms + backoff_ms;
    }
  };
  using Schedule = std::map<std::string, Backoff>;
  // Starts `timer` (made on first use, firing `fire`) for the earliest waiting entry of `s`, or
  // stops it when none waits.
  void arm(std::unique_ptr<uvx::Timer>& timer, const Schedule& s, void (Sender::*fire)());
  // The entries of `s` that are due, as a batch of events (`dir`: a rescan); each marked as in
  // flight until its job reports.
  watch::Batch take_due(Schedule& s);
  // Loop: paths the peer failed to apply (disk full, permissions), retried with backoff until it
  // succeeds or a newer version replaces them.
  Schedule retry_;
  std::unique_ptr<uvx::Timer> retry_timer_;
  void schedule_retry(const std::string& path, const std::string& why);
  void run_retries();
  void resend_whole(const std::string& path) { resend(path, false); }
  // Job thread, after an ENOENT from opening `path`: it counts as gone — nothing there now
  // (also for a directory on the way), or something made since that is not a link, whose own
  // events follow. A link stays (a followed link without a referent).
  bool vanished(const std::string& path) const;
  Repeats repeats_;  // loop thread: warnings every batch repeats (a full state disk)
  // A rename the peer could not make: what the move took from `from` (its tombstones there and
  // below) goes as removals, as if it had not been a move.
  void resend_removals(const std::string& from);
  // Job thread, store lock: a path there but unreadable (`why` logged once per job) joins the
  // unreadable set; `readable` takes it out again (a directory only if `dir_too`: a directory's
  // own stat working says nothing about its listing), with everything below it when `below`.
  void note_unreadable(const std::string& path, bool dir, const Error& why, Outbox& out);
  void note_readable(const std::string& path, bool dir_too, bool below, Outbox& out);
  // Job thread, store lock, answering INDEX_REQUEST: UNREADABLE for each unreadable path.
  void announce_unreadable(Outbox& out);
  // True when `path` or one of its parents is in `set` (paths whose contents are unknown).
  static bool covered(const std::string& path, const std::set<std::string>& set);
  // Loop: unreadable paths are looked at again with backoff (1 s, doubling to 60 s), as rsync's
  // next run would read them again: a disk error may pass, and no event would bring the file.
  Schedule relook_;
  std::unique_ptr<uvx::Timer> relook_timer_;
  void schedule_relook(const std::string& path, bool dir);
  void run_relooks();
  // Loop: paths of batches whose index commit failed, looked at again with backoff (1 s,
  // doubling to 60 s) until a batch of them commits: the watcher's events were consumed, and
  // nothing else would bring those changes before the next full scan.
  Schedule reauthor_;
  std::unique_ptr<uvx::Timer> reauthor_timer_;
  void run_reauthors();
  // At most this many UNREADABLE in one answer; one more (the root) says "keep everything".
  static constexpr size_t kMaxUnreadable = 1u << 16;
  // Job, then loop: sends the current version of `path` again with its bytes; `ask_signature`
  // (after a base_mismatch, kCapSignature): a big file's signature is asked of the peer first.
  void resend(const std::string& path, bool ask_signature);
  // rsync's round trip (protocol/SPEC.md §5.2): the peer signs its own copy of a file whose base
  // it lacks, and the version goes as a delta against that. Loop thread, by req_id.
  struct SigAsked {
    std::string path;
    protocol::Hash256 file_hash{};
    uint64_t total = 0;
    uint64_t received = 0;
    bool dropped = false;  // past kMaxSigAskedBytes: not kept, the file goes whole
    Bytes sig;
  };
  void ask_signature(const std::string& path, uint64_t gen);
  void on_signature(const protocol::SignatureMsg& s);
  // Job: remembers `sig` (the peer's, of content `base`) and sends the version of `path` as a
  // delta against it (whole if that is not smaller).
  void send_against(const std::string& path, const protocol::Hash256& base, Bytes sig);
  std::unordered_map<uint32_t, SigAsked> sig_asked_;
  size_t sig_asked_bytes_ = 0;
  uint32_t next_sig_req_ = 1;
  // Paths sent against the peer's own signature this session, until one applies: another
  // base_mismatch (its copy changed again meanwhile) sends the file whole, never a third round.
  std::set<std::string> sig_tried_;
  static constexpr size_t kMaxSigAsked = 64;  // unanswered; the receiver allows as many
  static constexpr size_t kMaxSigAskedBytes = 256u << 20;
  std::atomic<uint64_t> caps_{0};  // the session's capabilities (loop sets at HELLO, jobs read)
  // Job thread, the initial answer: announces `r` without bytes to a peer holding another
  // copy (HAVE): the same bytes cost nothing, other bytes a round trip (then a delta if big).
  void emit_probe(const store::Record& r, Outbox& out);
  std::vector<double> latency_ring_;                     // loop: ms, ring of kLatencySamples
  size_t latency_next_ = 0;
  uint64_t sent_ = 0;
};

struct LsyncdView {
  std::vector<Sender::Delay> delays;
  std::vector<std::pair<int, std::string>> watches;
};

}  // namespace syncd::runtime
