// File: lib/store/index.h
//
// Index: the durable per-path state of one synced root (TWO-WAY.md §4.2), an SQLite database in
// WAL mode in a state directory outside the tree (default /var/lib/syncd/<name>/index.db).
//   - one Record per path: the version this node holds (protocol::FileMeta: metadata, version
//     vector, dots, content hash, tombstone flag), its local sequence number, and the fingerprint
//     of what was on disk when it was last confirmed (how syncd recognises its own writes);
//   - this node's identity: node_id and index_id, random u64s created with the database;
//   - this node's version counter: max(previous + 1, Unix ms), with a persisted high-water mark,
//     so no value is ever handed out twice, not even after losing the last commits;
//   - the block signature of the last version sent to each peer (zero-RTT deltas, DESIGN.md §5);
//   - two-way moves: which tombstone a rename left and which version it made (put_move), so the
//     pair can go to any peer as one RENAME.
// Every put() gets the next sequence number. Writes inside one Txn commit together (group commit);
// WAL with synchronous=NORMAL: a committed record survives kill -9; a power loss may drop the
// last commits, which the startup rescan re-creates (the counter rule keeps versions unique).
//
// Thread affinity: an Index is used from one thread at a time (the runtime's store thread).
//
//   SYNCD_TRY_ASSIGN(idx, Index::open("/var/lib/syncd/acme"));
//   { SYNCD_TRY_ASSIGN(txn, idx.begin()); SYNCD_TRY(idx.put(rec)); SYNCD_TRY(txn.commit()); }
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lib/base/bytes.h"
#include "lib/base/clock.h"
#include "lib/base/result.h"
#include "lib/fs/fingerprint.h"
#include "lib/store/sqlite.h"
#include "protocol/messages.h"

namespace syncd::store {

struct Record {
  protocol::FileMeta meta;
  uint64_t seq = 0;      // local sequence number, assigned by put()
  fs::Fingerprint fp;    // disk state when last confirmed; zero for tombstones
  // The peer whose announced record this is a copy of (0: authored or merged here). A record is
  // never sent back to the peer it came from: that would only be an echo.
  uint64_t origin = 0;
  bool operator==(const Record&) const = default;
};

struct CachedSignature {
  protocol::Hash256 base_hash{};  // SHA-256 of the version the signature describes
  Bytes signature;                // lib/delta wire form
};

class Index {
 public:
  // shared: every transaction takes and drops SQLite's file locks (several processes may use the
  // index, as concurrent `attach` sessions without a daemon do). exclusive: the locks are taken
  // once and held while the index is open — a daemon owns its state directory, a second process
  // on it gets an error instead of a turn, and each commit saves about ten fcntl calls.
  enum class Sharing { shared, exclusive };
  // Opens or creates `state_dir` (mode 0700) and `state_dir`/index.db.
  static Result<Index> open(const std::string& state_dir, Sharing sharing = Sharing::shared);
  // Whether `state_dir` holds an index already (a sync that has written before), without opening it.
  static bool exists(const std::string& state_dir);

  uint64_t node_id() const noexcept { return node_id_; }
  uint64_t index_id() const noexcept { return index_id_; }
  uint64_t max_seq() const noexcept { return max_seq_; }
  // The store lock: every job that reads or writes this index holds it, so the scanner
  // (authoring local versions) and the appliers (peers' versions) of one root take turns per
  // batch — one local writer per path (TWO-WAY.md §6).
  std::mutex& mutex() const noexcept { return *mu_; }
  // This node's hybrid logical clock (guarded by the store lock).
  Hlc& hlc() noexcept { return hlc_; }
  // A new database whose first full scan has not been recorded yet (TWO-WAY.md §4.11, a fresh
  // join or a lost index): what that scan finds is dated by its files' times (author_found),
  // since this node cannot tell an old copy from a new write. Guarded by the store lock.
  bool seeding() const noexcept { return seeding_; }
  // This process's first full scan of the tree is not recorded yet (in memory: true at every
  // open). What that scan finds changed was changed while no daemon watched (an offline edit, a
  // restore), at a time the file's mtime tells better than the scan's clock (author_of_found).
  bool first_scan() const noexcept { return first_scan_; }
  // The first full scan is recorded (call once its transaction committed): later versions are
  // dated by the clock, and the index is no longer seeding.
  Status first_scan_done();

  Result<std::optional<Record>> get(std::string_view path);
  // Stores `r` under r.meta.path with the next sequence number (written back into r.seq).
  Status put(Record& r);
  // Refreshes only the fingerprint (a touch or our own write): no new sequence number.
  Status set_fingerprint(std::string_view path, const fs::Fingerprint& fp);
  // Records with seq > `since`, ascending. Stops early if `fn` fails.
  Status for_each_since(uint64_t since, const std::function<Status(const Record&)>& fn);
  // Every record in the order a peer applies a whole index: live ones by path (a parent before
  // what is under it), then tombstones deepest first (by path, descending). SQLite sorts, so a
  // caller streams the index without holding it. `fn` may use the index (other statements).
  Status for_each_in_apply_order(const std::function<Status(const Record&)>& fn);
  // Live and deleted records whose path is `dir` or lies below it ("" = all).
  Status for_each_under(std::string_view dir, const std::function<Status(const Record&)>& fn);
  Result<uint64_t> count();
  Result<uint64_t> live_count();  // records that are not tombstones

  // The highest sequence number of peer `node` whose record this index has applied: what to ask
  // that peer for after a restart or reconnect (INDEX_REQUEST since).
  Result<uint64_t> peer_seq(uint64_t node);
  Status set_peer_seq(uint64_t node, uint64_t seq);

  // Everything of ours up to this sequence number is applied at peer `node` (its receiver says so
  // with INDEX_SUMMARY): what tombstone collection waits for.
  Result<uint64_t> peer_acked(uint64_t node);
  Status set_peer_acked(uint64_t node, uint64_t seq);
  // Which node a configured link (e.g. "host\ntarget") reached last time; 0 if never.
  Result<uint64_t> link_node(const std::string& link);
  Status set_link_node(const std::string& link, uint64_t node);
  Result<uint64_t> tombstone_count();
  // What the root was when this index last saw it (runtime/target_volume.h): 0 unknown (a new
  // index, or one from before this was kept), 1 a plain directory, 2 the root of a mount.
  Result<int64_t> root_mount();
  Status set_root_mount(int64_t kind);
  // Tombstone collection (TWO-WAY.md §4.11): removes a tombstone once every peer in `peers`
  // acknowledged it (its seq <= their peer_acked) and it is older than min_age_ms, or — whatever
  // the peers say — older than max_age_ms. `peers_known` false (a configured peer never reached)
  // allows only the max-age rule. Ages are from the delete's HLC time to `now_ms`. Returns how
  // many were removed.
  Result<uint64_t> collect_tombstones(const std::vector<uint64_t>& peers, bool peers_known, uint64_t now_ms,
                                      uint64_t min_age_ms, uint64_t max_age_ms);

  // Moves (two-way): the tombstone a rename left at the old path, paired with the version it
  // made at the new one. A sender announcing from the index sends such a pair as one RENAME (the
  // peer moves the bytes it holds) while that version is still current (Sender::move_of). A pair
  // is dropped with its tombstone (collect_tombstones), or once a newer record replaced it.
  struct Move {
    uint64_t to_seq = 0;
    std::string to_path;
  };
  Status put_move(uint64_t tomb_seq, uint64_t to_seq, std::string_view to_path);
  Result<std::optional<Move>> get_move(uint64_t tomb_seq);

  // This node's next version counter (strictly increasing across restarts and crashes). On an
  // error (its high-water mark not written) the counter was still handed out: counter() has it.
  Result<uint64_t> next_counter();
  uint64_t counter() const noexcept { return counter_; }  // the last one handed out

  Status put_signature(std::string_view path, uint64_t peer, const CachedSignature& sig);
  Result<std::optional<CachedSignature>> get_signature(std::string_view path, uint64_t peer);
  Result<bool> has_signature(std::string_view path, uint64_t peer);
  // The base_hash of (path, peer)'s signature, without reading the signature itself.
  Result<std::optional<protocol::Hash256>> signature_base(std::string_view path, uint64_t peer);
  Status forget_signature(std::string_view path, uint64_t peer);

  class Txn {
   public:
    explicit Txn(Index* idx) : idx_(idx) {}
    Txn(Txn&& o) noexcept : idx_(std::exchange(o.idx_, nullptr)) {}
    Txn(const Txn&) = delete;
    Txn& operator=(const Txn&) = delete;
    Txn& operator=(Txn&&) = delete;
    ~Txn();  // rolls back unless committed
    Status commit();

   private:
    Index* idx_;
  };
  // Starts a write transaction; nested begin() is an error.
  Result<Txn> begin();

 private:
  Index() = default;
  Status init_schema();
  // Steps `st` once; `single` resets it after the row (lookups), else it stays on the row (scans).
  Result<std::optional<Record>> read_row(Stmt& st, bool single);
  // Calls `fn` for every remaining row of `st`, stopping at its first error.
  Status each_row(Stmt& st, const std::function<Status(const Record&)>& fn);
  Result<uint64_t> count_of(const char* sql);  // a one-number query
  Result<int64_t> meta_get(const std::string& key);
  Status meta_set(const std::string& key, int64_t v);

  Db db_;
  std::unique_ptr<std::mutex> mu_ = std::make_unique<std::mutex>();
  Hlc hlc_;
  bool seeding_ = false;
  bool first_scan_ = true;
  std::string path_;
  uint64_t node_id_ = 0;
  uint64_t index_id_ = 0;
  uint64_t max_seq_ = 0;
  uint64_t counter_ = 0;
  uint64_t counter_hw_ = 0;
  bool in_txn_ = false;
  uint64_t txn_max_seq_ = 0;  // max_seq_ before the transaction, restored on rollback
  uint64_t txn_counter_hw_ = 0;
};

// Record <-> bytes (the IndexUpdate payload of protocol/SPEC.md, so a stored record passes the
// same validation as one from the wire).
Bytes encode_meta(const protocol::FileMeta& m);
Result<protocol::FileMeta> decode_meta(ByteSpan b);

}  // namespace syncd::store
