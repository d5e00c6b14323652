// File: lib/runtime/receiver.h
//
// Receiver: the target side of a sync. It asks the peer for every record newer than the last one
// it applied (INDEX_REQUEST, resumes after restarts), reassembles bodies, and applies each version
// through lib/apply on its JobQueue, in arrival order: the index is updated in the same job right
// after the rename, so this node's own watcher (two-way, later) sees disk == index and nothing
// echoes. Every FILE_VERSION, REMOVE and RENAME is answered with an ACK.
// In mirror mode (lsyncd's -direct / default.rsync with delete), the target is made identical to
// the source: local entries the source does not have are removed after the initial full sync,
// and local edits are overwritten.
// Thread affinity: loop thread (public methods); jobs run on the JobQueue thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <unordered_map>
#include <vector>
#include <memory>
#include <string>

#include "lib/apply/apply.h"
#include "lib/apply/backup.h"
#include "lib/runtime/body_pipe.h"
#include "lib/runtime/connection.h"
#include "lib/runtime/job_queue.h"
#include "lib/store/change.h"
#include "lib/store/index.h"
#include "lib/watch/exclude.h"

namespace syncd::runtime {

// The apply attributes (owner, group, mode, mtime, size) a record asks for.
apply::Attrs attrs_of(const protocol::FileMeta& m);

// What a one-way target does with the source's versions (mirror mode), as lsyncd configures it.
struct MirrorRules {
  // lsyncd's `delete`: entries the source lacks are removed by the initial sync (startup) /
  // deletes made while running are applied (running). Both by default.
  bool delete_startup = true;
  bool delete_running = true;
  // rsync's --existing: versions of paths absent here are not applied (nothing new is created);
  // --update: a regular file here with a newer mtime than the version is kept.
  bool existing = false;
  bool update = false;
  // rsync's --inplace: a delta whose unchanged bytes stay at their offsets (an edit inside a file,
  // not an insertion) is written into the file itself (apply::Applier::patch_in_place): the
  // small edit costs a small write and fsync, hard links are kept; not atomic, as with rsync.
  // Not with backup (what is replaced must be kept whole) or sparse.
  bool inplace = false;
  apply::BackupOptions backup;  // rsync's --backup, --backup-dir, --suffix
  // rsync's --times on directories and symlinks (off: --omit-dir-times / --omit-link-times).
  // A directory's mtime moves with every entry applied inside it, so after each batch the
  // directories it touched get their recorded mtime back, as rsync fixes them up last.
  bool dir_times = true;
  bool link_times = true;
  // rsync's --dry-run: each version, delete and rename is logged ("dry run: not applied") and
  // acknowledged as ignored; nothing on the target changes, the initial sync's extras are only listed.
  bool dry_run = false;
  // The source's excludes and filters: what they match here is protected from the initial
  // sync's delete of extras, as rsync --delete protects excluded files — unless
  // --delete-excluded, which removes them.
  std::vector<std::string> excludes;
  std::vector<watch::FilterRule> filters;
  bool delete_excluded = false;
  // rsync's --prune-empty-dirs: a directory exists here only while something that is not a
  // directory is somewhere below it. A version of one that is not here is recorded, not made;
  // the first entry that needs it creates it (with its recorded metadata), and removing the last
  // one removes the directories it leaves empty. The initial sync's delete (lsyncd's `delete`
  // true or 'startup') also removes the empty directories already here.
  bool prune_empty_dirs = false;
  // The mass-delete brake at the initial sync (SECURITY.md §8 #30), the same share a restart's
  // full scan is held to: when the files here that would go as extras are more than this
  // percentage of the files here, and at least 2 of them with a source that announced no file
  // (its volume not mounted, a fresh filesystem with only lost+found) or at least 10 otherwise
  // (a target directory that is not the mirror's: its parent, another tree), nothing is
  // removed. 100: off. Attach: `-max-delete-share N`, or `-empty-source-prunes` for
  // 100 (what older versions understand).
  int max_delete_share = 50;
  // rsync.cvs_exclude: excludes that are "perishable" in rsync's sense — they protect the paths
  // they match, but not the directories holding them (a directory of the target that the source
  // lacks goes, with them).
  std::vector<std::string> perishable;
  // rsync.cvs_exclude: each directory's ".cvsignore" names more of them (perishable too), read
  // from this target's copy of the file.
  std::string per_dir_excludes;
  // The `syncd attach` arguments that carry these rules to a remote target.
  std::vector<std::string> attach_args() const;
};

struct ReceiverOptions {
  bool mirror = true;
  MirrorRules rules;
  // Two-way (TWO-WAY.md §4.4-4.8): each arriving record is reconciled with this node's own —
  // after a rescan of the path, under the store lock — instead of overwriting it; conflicts keep
  // the loser as a conflict copy. Implies !mirror.
  bool two_way = false;
  // Loop thread, after a batch that wrote records (the peer's, applied; or ones authored or merged
  // here: conflict copies, re-asserted directories, local changes found by its rescans): the
  // node's senders announce them to their peers.
  std::function<void()> on_changed;
  // Loop thread, for each conflict copy this receiver made: the original path and the copy's.
  std::function<void(const std::string& path, const std::string& copy)> on_conflict_copy;
  // Two-way: paths this node does not sync (its excludes); a peer's records for them are ignored.
  watch::Excludes excludes;
  // Two-way, any thread: true while the node's mass-delete brake holds; a file missing from the
  // disk is then not turned into a local delete (the volume may be unmounted).
  std::function<bool()> deletes_held;
  apply::Options apply;
  // Mirror mode, rsync.backup: what a version replaces or a delete removes is kept (opened from
  // rules.backup by the receiver's owner).
  std::shared_ptr<const apply::Backup> backup;
  std::function<void()> on_synced;  // once, on the loop thread, when the initial sync is applied
  // Loop thread: the peer's index went back (rewind_if_behind); its session's sender returns the
  // peer's own versions to it (Sender::return_own_versions).
  std::function<void()> on_peer_went_back;
  // Two-way: files this big (SenderOptions::whole_below) travel as deltas, so what a peer sent
  // is signed here once applied: the next edit made here goes back as a delta, not whole.
  uint64_t sign_from = 64 * 1024;
  // Received and not yet applied: reading the connection pauses above this many bytes and
  // resumes under a quarter of it. -direct, whose sender is the same process, needs less.
  size_t hold_bytes = 64u << 20;
};

class Receiver {
 public:
  Receiver(uvx::Loop& loop, const fs::Root& root, store::Index& index, Connection& conn,
           ReceiverOptions opts = {});
  ~Receiver();
  Receiver(const Receiver&) = delete;
  Receiver& operator=(const Receiver&) = delete;
  void on_message(protocol::Message m);
  bool idle() const noexcept { return jobs_.in_flight() == 0 && transfers_.empty(); }
  uint64_t applied() const noexcept { return applied_; }
  // True once the first INDEX_END (the initial sync) has been applied.
  bool synced() const noexcept { return synced_; }
  // Non-empty while the last initial sync's delete of extras was held back by the mass-delete
  // brake (MirrorRules::max_delete_share): why. Loop thread.
  const std::string& brake() const noexcept { return brake_; }
  // Real content conflicts resolved on this link (either side won).
  uint64_t conflicts() const noexcept { return conflicts_; }
  // Bytes held for the peer (bodies arriving or waiting to be applied), and whether reading the
  // connection is paused because of them or a streamed body's backlog (loop thread).
  size_t held_bytes() const noexcept { return queued_bytes_.load(); }
  bool reading_paused() const noexcept { return paused_; }
  static constexpr size_t kMaxSigRequests = 64;  // a peer's SIG_REQUESTs not yet answered

 private:
  struct Transfer {
    protocol::FileVersion fv;
    Bytes body;
    uint64_t received = 0;
    protocol::Hash256 base{};
    std::shared_ptr<BodyPipe> pipe;  // large bodies stream to the job instead of into `body`
  };
  void apply_version(protocol::FileVersion fv, Bytes body, protocol::Hash256 base);
  // Loop: starts receiving a body (replacing an unfinished transfer with the same id).
  void open_transfer(Transfer t);
  // Queues one apply; everything queued while the job thread is busy is applied by one job in
  // one index transaction (group commit), in arrival order.
  // `path`: what the job changes (a failed apply holds the resume point back until it succeeds).
  // `bytes`: the file content the job holds in memory (each job counts at least kMinCost).
  void post(std::string path, std::function<protocol::Ack()> job, size_t bytes = 0);
  // Loop: `bytes` more are held for the peer (reading pauses above opts_.hold_bytes).
  void hold(size_t bytes);
  // Loop or job thread: held bytes are gone (a posted job ran, a received body was posted).
  void release(size_t cost);
  // Job thread.
  protocol::Ack do_version(const protocol::FileVersion& fv, const Bytes& body,
                           const protocol::Hash256& base, BodyPipe* pipe = nullptr);
  // Writes record `m` (type, content, metadata) at m.path and records it with `origin`. The
  // content comes from the message body, or is already there (`content_held`: metadata only).
  protocol::Ack write_version(const protocol::FileVersion& fv, const protocol::FileMeta& m,
                              const apply::Expected& expect, bool content_held, const Bytes& body,
                              const protocol::Hash256& base, BodyPipe* pipe, uint64_t origin);
  protocol::Ack do_remove(const protocol::Remove& r);
  protocol::Ack do_rename(const protocol::Rename& r);
  // `source_live`: the live versions the source announced in this full sync.
  // `announced`: with rsync.dry_run, the live paths the source announced in this full sync (a
  // dry run records nothing in the index, so only this tells them from extras); with
  // `only_announced` (a source that went back announced every path it has), all of them.
  Status prune_extras(uint64_t source_live, const std::set<std::string, std::less<>>& announced, bool only_announced);
  // Job thread: the regular files here with their size and mtime (at most kMaxHave), offered to
  // the peer before asking for all its records; it leaves out the bytes of those it holds alike.
  std::vector<protocol::Have> held_files();
  static constexpr size_t kMaxHave = 1u << 20;
  // Job thread, store lock: a one-way target resuming — is its tree still what the index says?
  // lsyncd's startup rsync repairs a target changed behind its back (files deleted, edited,
  // chmod'ed or added there; a volume remounted empty); a resume would not. Returns the first
  // difference found ("missing x", "changed x", "extra x"), empty when there is none.
  std::string drift();
  // At INDEX_END (job thread, store lock held): the resume point moves back to the peer's last
  // record when its index went back behind it.
  bool rewind_if_behind(uint64_t max_seq);
  // What the initial sync's delete leaves alone here: the source's excludes and filters (with
  // rsync.cvs_exclude's perishable ones and per-directory files), none with delete_excluded.
  watch::Excludes delete_protection() const;
  // rsync's quick check for a dry run's list: `m` is here already (same type; a file's size and
  // mtime, a link's target). Job thread.
  bool quick_check_here(const protocol::FileMeta& m);
  // SIG_REQUEST (protocol/SPEC.md §5.2): the file here is signed on the job queue, after what
  // was posted before, and the SIGNATURE chunks go back (empty: nothing to sign). A peer may
  // have at most kMaxSigRequests unanswered; more is a protocol error (each holds a signature).
  void answer_signature(protocol::SigRequest q);
  size_t sig_requests_ = 0;  // loop thread: unanswered
  // Job thread: what the files signed for the peer were (stat and content hash), for the delta
  // that follows: its base is checked by stat instead of being read a second time (local_hash).
  std::unordered_map<std::string, store::Known> peer_signed_;
  static constexpr size_t kPeerSignedMax = 256;
  // rsync.dry_run: logs what a message would do and acknowledges it as ignored.
  protocol::Ack dry_run(uint64_t seq, const char* what, const std::string& path);
  std::set<std::string> kept_newer_;  // job thread: files rsync.update kept in this full sync
  // Job thread: paths the source could not read (UNREADABLE), kept by this full sync's prune with
  // what is below them; "" (or more than kMaxUnreadable of them): nothing is pruned.
  std::set<std::string> unreadable_;
  static constexpr size_t kMaxUnreadable = 1u << 16;
  // The initial sync's brake, for a source that has files: fewer extras than this go regardless.
  static constexpr size_t kFirstStartBrakeMin = 10;
  // Mirror mode deletes; with rsync.backup what goes is kept first (remove_dir: file by file).
  Status remove_file(const std::string& path);
  Status remove_dir(const std::string& path);
  // The SHA-256 of the regular file at `path` (nullopt: none there). `for_delta_base`: a record
  // taken in its file's last clock tick still counts (see local_hash).
  Result<std::optional<protocol::Hash256>> local_hash(const std::string& path, bool for_delta_base = false);
  // Puts m as this node's record (its local seq in *put_seq when given) and acknowledges seq.
  Status record(const protocol::FileMeta& m, uint64_t seq, const fs::Fingerprint& fp, uint64_t origin = 0,
                uint64_t* put_seq = nullptr);
  // Two-way: the block signature of what `peer` now holds at m.path (the file at `fp` here), kept
  // as the base of this node's next delta to it; forgotten when it cannot be made.
  Status keep_peer_signature(const protocol::FileMeta& m, const fs::Fingerprint& fp, uint64_t peer);
  // Two-way (receiver_two_way.cpp), job thread, store lock held.
  protocol::Ack reconcile_version(const protocol::FileVersion& fv, const Bytes& body,
                                  const protocol::Hash256& base, BodyPipe* pipe);
  protocol::Ack reconcile_remove(uint64_t seq, const protocol::FileMeta& m);
  protocol::Ack reconcile_rename(const protocol::Rename& r);
  // Makes G (a tombstone) true on disk: unlink guarded by the local fingerprint; a directory is
  // removed only when empty, else re-asserted (TWO-WAY.md §4.7).
  protocol::Ack apply_delete(uint64_t seq, const std::optional<store::Record>& local,
                             const protocol::FileMeta& g, uint64_t origin);
  // After a directory moved from `from` to `to` on disk: the records of everything below follow.
  Status move_children_records(const std::string& from, const std::string& to, uint64_t origin);
  // One-way: the index after the peer's rename `r` was applied (`fp`: what is at r.to now).
  Status record_move(const protocol::Rename& r, const fs::Fingerprint& fp);
  // This node's record for `path` after looking at the disk: a change not yet scanned becomes a
  // local version first, so a peer's record is reconciled with what is really there.
  Result<std::optional<store::Record>> refresh_local(const std::string& path);
  // A failed ACK (the peer retries) when a local program has `local`'s file open for writing
  // (fs/writers.h): replacing or removing it now would send that program's next writes to an
  // inode nobody watches. By the retry, what it wrote is a version of its own.
  std::optional<protocol::Ack> held_by_writer(uint64_t seq, const std::optional<store::Record>& local);
  // Keeps the losing local content under its conflict-copy name (a hard link: same bytes, owner,
  // mode, mtime) with a record of its own, before the winner replaces the original.
  Status keep_conflict_copy(const store::Record& loser, const protocol::FileMeta& winner);
  // A directory tombstone that cannot apply (something live inside): a new live version of it.
  Status reassert_dir(const std::string& path, const protocol::FileMeta& tombstone);
  store::Author author();
  // Job thread: folds a peer record's timestamps into our HLC; warns about a far-ahead clock.
  void observe_clock(const protocol::FileMeta& m);
  bool skew_warned_ = false;  // job thread
  std::unique_lock<std::mutex>* held_ = nullptr;  // job thread: the batch's store lock
  Result<std::optional<Bytes>> pop_body(BodyPipe& pipe);
  std::vector<std::string> authored_;     // job thread: paths authored or merged in this batch
  std::vector<std::pair<std::string, std::string>> copies_;  // job thread: conflict copies made
  std::atomic<uint64_t> peer_node_{0};
  std::atomic<uint64_t> acked_{0};   // job thread writes: our durable resume point in the peer's sequence
  uint64_t acked_sent_ = 0;          // loop: the last one reported to the peer (INDEX_SUMMARY)
  void report_acked();               // loop
  std::atomic<uint64_t> conflicts_{0};
  // Job thread: the point moves to the highest seq applied in order, but never past a version
  // still missing (failed_).
  Status advance(uint64_t seq);
  uint64_t reached_ = 0;  // job thread: the highest seq advance() was given in this session
  // advance() where nothing else depends on it: a failure is logged, not acked.
  void advance_or_log(uint64_t seq);

  uvx::Loop& loop_;
  const fs::Root& root_;
  store::Index& index_;
  Connection& conn_;
  ReceiverOptions opts_;
  apply::Applier applier_;
  // A streamed body's backlog fell: read again. Declared before jobs_ so that it outlives the
  // worker thread, which may signal it until it is joined.
  std::unique_ptr<uvx::Async> resume_;
  JobQueue jobs_;
  std::map<uint32_t, Transfer> transfers_;
  bool paused_ = false;
  std::atomic<uint64_t> peer_index_{0};  // set from the peer's HELLO (loop), read by jobs
  bool full_sync_ = false;
  bool answering_ = false;  // loop: between this session's INDEX_REQUEST and the peer's INDEX_END
  uint64_t asked_since_ = 0;  // loop: where that INDEX_REQUEST resumed from
  bool went_back_answer_ = false;  // loop: the answer holds records at or below it (the source went back)
  void note_answer_seq(uint64_t seq);
  uint64_t full_sync_live_ = 0;  // loop: live non-directory versions in the answer (the brake above)
  std::set<std::string, std::less<>> dry_announced_;  // loop: rsync.dry_run, live paths of the answer
  bool synced_ = false;
  std::string brake_;       // loop: brake() (copied from held_brake_ when the initial sync ends)
  std::string held_brake_;  // job thread: this initial sync's brake, if it held
  uint64_t applied_ = 0;
  bool in_order_ = false;  // job thread: past INDEX_END, versions arrive in sequence order
  std::mutex batch_mu_;
  struct Posted {
    std::string path;
    std::function<protocol::Ack()> job;
    size_t cost = 0;
  };
  std::vector<Posted> batch_;  // guarded by batch_mu_
  // What arriving bodies and posted jobs hold and have not yet released. Above hold_bytes the
  // loop stops reading the connection until it falls under a quarter of it: a peer announcing faster
  // than this disk applies (a whole tree at the initial sync, a flood of small messages, many
  // unfinished bodies) never fills the memory.
  static constexpr size_t kMinCost = 1024;
  std::atomic<size_t> queued_bytes_{0};
  // Job thread: versions that could not be applied (disk full, permissions, a base or content not
  // held here), seq -> path. The resume point never passes the oldest of them, so a reconnect
  // resends it; a later successful apply of the same path (the sender retries) clears it.
  std::map<uint64_t, std::string> failed_;
  void note_result(const std::string& path, const protocol::Ack& a);
  bool batch_posted_ = false;                         // guarded by batch_mu_
  std::optional<store::Index::Txn> txn_;              // job thread: the batch's transaction
  // Job thread: whole-file writes of the current batch, staged and committed together (one
  // syncfs for all of them) before anything else in the batch runs, and at its end.
  struct StagedWrite {
    apply::Applier::Staged st;
    protocol::FileMeta meta;
    uint64_t seq = 0;
    size_t ack = 0;
    uint64_t origin = 0;
  };
  std::vector<StagedWrite> staged_;
  std::vector<protocol::Ack>* batch_acks_ = nullptr;
  void flush_staged();
  // Mirror mode with rules.dir_times, job thread: directories whose entries this batch changed.
  // restore_dir_times() gives each its recorded mtime back once the batch is applied.
  std::set<std::string> touched_dirs_;
  // Job thread, mirror mode: the root's metadata from the last ROOT_META, and whether an entry
  // applied at the top moved its mtime since (restore_dir_times() puts it back).
  std::optional<apply::Attrs> root_attrs_;
  bool root_touched_ = false;
  // The version's attributes as this target applies them (mirror rules: omitted times).
  apply::Attrs mirror_attrs(const protocol::FileMeta& m) const;
  void touch_parent(const std::string& path);
  // rules.prune_empty_dirs (mirror): the directories above `path` that are not here yet, made
  // from their records; and those left empty above `path` after it went.
  bool pruning() const noexcept { return opts_.mirror && !opts_.two_way && opts_.rules.prune_empty_dirs; }
  Status make_parents(const std::string& path);
  void prune_parents(const std::string& path);
  void prune_all_empty();
  void restore_dir_times();
};

}  // namespace syncd::runtime
