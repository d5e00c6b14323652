#include "lib/store/index.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>

#include "lib/codec/sha256.h"
#include "protocol/frame.h"
#include "protocol/limits.h"

namespace syncd::store {
namespace {

// 2: files.origin; 3: chunked content hash of big files; 4: racy fingerprints (a flag byte after
// the fields, which a reader of 3 would take for a corrupt column).
constexpr int64_t kSchemaVersion = 4;
constexpr uint64_t kCounterStride = 1024;

Bytes encode_fp(const fs::Fingerprint& f) {
  Bytes b;
  ByteWriter w(b);
  w.u32(f.mode);
  w.u64(f.dev);
  w.u64(f.ino);
  w.u64(f.size);
  w.i64(f.mtime_ns);
  w.i64(f.ctime_ns);
  w.u32(f.uid);
  w.u32(f.gid);
  if (f.racy) w.u8(1);
  return b;
}

Result<fs::Fingerprint> decode_fp(ByteSpan b) {
  ByteReader r(b);
  fs::Fingerprint f;
  if (!r.u32(f.mode) || !r.u64(f.dev) || !r.u64(f.ino) || !r.u64(f.size) || !r.i64(f.mtime_ns) ||
      !r.i64(f.ctime_ns) || !r.u32(f.uid) || !r.u32(f.gid)) {
    return Error::make(errc::corrupt, "index: bad fingerprint column");
  }
  uint8_t racy = 0;
  if (r.remaining() == 1 && (!r.u8(racy) || racy != 1)) return Error::make(errc::corrupt, "index: bad fingerprint flag");
  if (r.remaining() != 0) return Error::make(errc::corrupt, "index: bad fingerprint column");
  f.racy = racy == 1;
  return f;
}

}  // namespace

Bytes encode_meta(const protocol::FileMeta& m) {
  Bytes frame;
  // Encoding validates the record exactly as the wire does; a record we could not send is a bug.
  if (!protocol::encode(protocol::IndexUpdate{0, m}, frame).ok()) return {};
  return Bytes(frame.begin() + protocol::kFrameHeaderBytes, frame.end());
}

Result<protocol::FileMeta> decode_meta(ByteSpan b) {
  SYNCD_TRY_ASSIGN(msg, protocol::decode_payload(protocol::MsgType::index_update, b));
  return std::get<protocol::IndexUpdate>(std::move(msg)).meta;
}

Result<Index> Index::open(const std::string& state_dir, Sharing sharing) {
  if (::mkdir(state_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Error::from_errno("create state directory " + state_dir);
  }
  Index idx;
  idx.path_ = state_dir + "/index.db";
  SYNCD_TRY_ASSIGN(db, Db::open(idx.path_));
  idx.db_ = std::move(db);
  if (sharing == Sharing::exclusive) {
    // Before the first read: then SQLite keeps the WAL index in heap memory, no -shm mapping.
    SYNCD_TRY(idx.db_.exec("PRAGMA locking_mode=EXCLUSIVE"));
  }
  if (auto st = idx.init_schema(); !st) {
    Error e = std::move(st).error();
    if (e.is_errno(EBUSY)) {
      return std::move(e).wrap("index " + idx.path_ + " is held by another process (another syncd on " +
                               state_dir + "?)");
    }
    return e;
  }
  return idx;
}

bool Index::exists(const std::string& state_dir) {
  return ::access((state_dir + "/index.db").c_str(), F_OK) == 0;
}

Status Index::init_schema() {
  SYNCD_TRY(db_.exec("PRAGMA journal_mode=WAL"));
  // NORMAL in WAL mode: a commit survives a crash of the process (kill -9) without an fsync;
  // after a power loss the last commits may be gone, which the startup rescan repairs, and the
  // version counter cannot go back because it never falls behind the wall clock (next_counter).
  SYNCD_TRY(db_.exec("PRAGMA synchronous=NORMAL"));
  SYNCD_TRY(db_.exec(
      "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);"
      "CREATE TABLE IF NOT EXISTS files (path BLOB PRIMARY KEY, seq INTEGER NOT NULL UNIQUE,"
      "  deleted INTEGER NOT NULL, record BLOB NOT NULL, fp BLOB NOT NULL, origin INTEGER NOT NULL DEFAULT 0);"
      "CREATE TABLE IF NOT EXISTS signatures (path BLOB NOT NULL, peer INTEGER NOT NULL,"
      "  base_hash BLOB NOT NULL, sig BLOB NOT NULL, PRIMARY KEY (path, peer));"
      // Added without a schema bump: older versions ignore the table, and its rows are only hints.
      "CREATE TABLE IF NOT EXISTS moves (tomb_seq INTEGER PRIMARY KEY, to_seq INTEGER NOT NULL, to_path BLOB NOT NULL);"));
  SYNCD_TRY_ASSIGN(schema, meta_get("schema"));
  if (schema == 0) {
    // A new database is a new incarnation: fresh node and index ids (TWO-WAY.md §4.1).
    SYNCD_TRY(db_.exec("BEGIN IMMEDIATE"));
    uint64_t node = 0, index = 0;
    while (node == 0) node = codec::random_u64() >> 1;  // SQLite integers are signed
    while (index == 0) index = codec::random_u64() >> 1;
    SYNCD_TRY(meta_set("schema", kSchemaVersion));
    SYNCD_TRY(meta_set("node_id", static_cast<int64_t>(node)));
    SYNCD_TRY(meta_set("index_id", static_cast<int64_t>(index)));
    SYNCD_TRY(meta_set("counter_hw", 0));
    SYNCD_TRY(meta_set("seeding", 1));
    SYNCD_TRY(db_.exec("COMMIT"));
  } else if (schema >= 1 && schema < kSchemaVersion) {
    SYNCD_TRY(db_.exec("BEGIN IMMEDIATE"));
    // Version 1 had no origin column: every record counts as authored here, which only costs one
    // echo message per record after the upgrade.
    if (schema == 1) SYNCD_TRY(db_.exec("ALTER TABLE files ADD COLUMN origin INTEGER NOT NULL DEFAULT 0"));
    // Up to version 3 a fingerprint taken in its file's last clock tick was trusted like any
    // other, and up to 2 a file over 1 MiB was identified by its plain SHA-256: forget every
    // fingerprint so the startup scan hashes each file again (codec/content_hash.h), and every
    // cached signature, whose base_hash may be an old one.
    SYNCD_TRY_ASSIGN(st, db_.prepare("UPDATE files SET fp = ?1"));
    st.bind_blob(1, encode_fp(fs::Fingerprint{}));
    SYNCD_TRY(st.step());
    if (schema <= 2) SYNCD_TRY(db_.exec("DELETE FROM signatures"));
    SYNCD_TRY(meta_set("schema", kSchemaVersion));
    SYNCD_TRY(db_.exec("COMMIT"));
  } else if (schema != kSchemaVersion) {
    return Error::make(errc::unsupported, "index " + path_ + ": schema " + std::to_string(schema) +
                                              ", this syncd reads " + std::to_string(kSchemaVersion));
  }
  SYNCD_TRY_ASSIGN(node, meta_get("node_id"));
  SYNCD_TRY_ASSIGN(index, meta_get("index_id"));
  SYNCD_TRY_ASSIGN(hw, meta_get("counter_hw"));
  SYNCD_TRY_ASSIGN(seeding, meta_get("seeding"));  // 0 in a database made before this was kept
  seeding_ = seeding != 0;
  node_id_ = static_cast<uint64_t>(node);
  index_id_ = static_cast<uint64_t>(index);
  // Restart from the high-water mark: values handed out before a crash are never reused.
  counter_ = counter_hw_ = static_cast<uint64_t>(hw);
  SYNCD_TRY_ASSIGN(st, db_.prepare("SELECT COALESCE(MAX(seq), 0) FROM files"));
  SYNCD_TRY_ASSIGN(row, st.step());
  max_seq_ = row ? static_cast<uint64_t>(st.column_int64(0)) : 0;
  st.reset();
  // The highest record may have been a tombstone that was collected since: its number stays used.
  SYNCD_TRY_ASSIGN(floor, meta_get("seq_floor"));
  max_seq_ = std::max(max_seq_, static_cast<uint64_t>(floor));
  return {};
}

Status Index::first_scan_done() {
  first_scan_ = false;
  if (!seeding_) return {};
  SYNCD_TRY(meta_set("seeding", 0));
  seeding_ = false;
  return {};
}

Result<int64_t> Index::meta_get(const std::string& key) {
  SYNCD_TRY_ASSIGN(st, db_.prepare("SELECT v FROM meta WHERE k = ?"));
  st.bind_text(1, key);
  SYNCD_TRY_ASSIGN(row, st.step());
  const int64_t v = row ? st.column_int64(0) : 0;
  st.reset();
  return v;
}

Status Index::meta_set(const std::string& key, int64_t v) {
  SYNCD_TRY_ASSIGN(st, db_.prepare("INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v"));
  st.bind_text(1, key);
  st.bind_int64(2, v);
  SYNCD_TRY(st.step());
  return {};
}

Result<std::optional<Record>> Index::read_row(Stmt& st, bool single) {
  SYNCD_TRY_ASSIGN(row, st.step());
  if (!row) return std::optional<Record>{};
  Record r;
  r.seq = static_cast<uint64_t>(st.column_int64(0));
  auto meta = decode_meta(st.column_blob(1));
  auto fp = decode_fp(st.column_blob(2));
  r.origin = static_cast<uint64_t>(st.column_int64(3));  // every column before the reset: after it, undefined
  if (single || !meta.ok() || !fp.ok()) st.reset();
  if (!meta.ok()) return std::move(meta).error().wrap("index " + path_ + ": stored record seq " + std::to_string(r.seq));
  if (!fp.ok()) return std::move(fp).error();
  r.meta = std::move(*meta);
  r.fp = *fp;
  return std::optional<Record>(std::move(r));
}

Result<std::optional<Record>> Index::get(std::string_view path) {
  SYNCD_TRY_ASSIGN(st, db_.prepare("SELECT seq, record, fp, origin FROM files WHERE path = ?"));
  st.bind_blob(1, as_bytes(path));
  return read_row(st, true);
}

Status Index::put(Record& r) {
  if (r.meta.path.size() > protocol::kMaxPath) {
    return Error::make(errc::limit_exceeded, "index: the path is longer than " + std::to_string(protocol::kMaxPath) +
                                                 " bytes: not synced");
  }
  const Bytes rec = encode_meta(r.meta);
  if (rec.empty()) return Error::make(errc::internal, "index: record for a path we cannot encode");
  r.seq = max_seq_ + 1;
  SYNCD_TRY_ASSIGN(st, db_.prepare(
      "INSERT INTO files (path, seq, deleted, record, fp, origin) VALUES (?, ?, ?, ?, ?, ?) "
      "ON CONFLICT(path) DO UPDATE SET seq = excluded.seq, deleted = excluded.deleted, "
      "record = excluded.record, fp = excluded.fp, origin = excluded.origin"));
  st.bind_blob(1, as_bytes(r.meta.path));
  st.bind_int64(2, static_cast<int64_t>(r.seq));
  st.bind_int64(3, r.meta.deleted ? 1 : 0);
  st.bind_blob(4, rec);
  st.bind_blob(5, encode_fp(r.fp));
  st.bind_int64(6, static_cast<int64_t>(r.origin));
  SYNCD_TRY(st.step());
  max_seq_ = r.seq;
  return {};
}

Status Index::set_fingerprint(std::string_view path, const fs::Fingerprint& fp) {
  SYNCD_TRY_ASSIGN(st, db_.prepare("UPDATE files SET fp = ? WHERE path = ?"));
  st.bind_blob(1, encode_fp(fp));
  st.bind_blob(2, as_bytes(path));
  SYNCD_TRY(st.step());
  return {};
}

Status Index::for_each_since(uint64_t since, const std::function<Status(const Record&)>& fn) {
  SYNCD_TRY_ASSIGN(st, db_.prepare("SELECT seq, record, fp, origin FROM files WHERE seq > ? ORDER BY seq"));
  st.bind_int64(1, static_cast<int64_t>(since));
  return each_row(st, fn);
}

Status Index::for_each_in_apply_order(const std::function<Status(const Record&)>& fn) {
  {
    SYNCD_TRY_ASSIGN(st, db_.prepare("SELECT seq, record, fp, origin FROM files WHERE deleted = 0 ORDER BY path"));
    SYNCD_TRY(each_row(st, fn));
  }
  SYNCD_TRY_ASSIGN(st, db_.prepare("SELECT seq, record, fp, origin FROM files WHERE deleted = 1 ORDER BY path DESC"));
  return each_row(st, fn);
}

Status Index::each_row(Stmt& st, const std::function<Status(const Record&)>& fn) {
  for (;;) {
    SYNCD_TRY_ASSIGN(r, read_row(st, false));
    if (!r) return {};
    if (auto s = fn(*r); !s) {
      st.reset();
      return s;
    }
  }
}

Status Index::for_each_under(std::string_view dir, const std::function<Status(const Record&)>& fn) {
  // Paths under dir: dir itself, or starting with "dir/". Byte order: '/' + 1 == '0'.
  const std::string d(dir);
  auto prepared = d.empty() ? db_.prepare("SELECT seq, record, fp, origin FROM files ORDER BY path")
                            : db_.prepare("SELECT seq, record, fp, origin FROM files WHERE path = ?1 OR "
                                          "(path >= ?2 AND path < ?3) ORDER BY path");
  if (!prepared.ok()) return std::move(prepared).error();
  Stmt st = std::move(*prepared);
  if (!d.empty()) {
    st.bind_blob(1, as_bytes(d));
    st.bind_blob(2, as_bytes(d + "/"));
    st.bind_blob(3, as_bytes(d + "0"));
  }
  return each_row(st, fn);
}

Result<uint64_t> Index::count_of(const char* sql) {
  SYNCD_TRY_ASSIGN(st, db_.prepare(sql));
  SYNCD_TRY_ASSIGN(row, st.step());
  const auto n = row ? static_cast<uint64_t>(st.column_int64(0)) : 0;
  st.reset();
  return n;
}

Result<uint64_t> Index::count() { return count_of("SELECT COUNT(*) FROM files"); }

Result<uint64_t> Index::live_count() { return count_of("SELECT COUNT(*) FROM files WHERE deleted = 0"); }

Result<uint64_t> Index::peer_seq(uint64_t node) {
  SYNCD_TRY_ASSIGN(v, meta_get("peer_seq:" + std::to_string(node)));
  return static_cast<uint64_t>(v);
}

Status Index::set_peer_seq(uint64_t node, uint64_t seq) {
  return meta_set("peer_seq:" + std::to_string(node), static_cast<int64_t>(seq));
}

Result<uint64_t> Index::peer_acked(uint64_t node) {
  SYNCD_TRY_ASSIGN(v, meta_get("peer_acked:" + std::to_string(node)));
  return static_cast<uint64_t>(v);
}

Status Index::set_peer_acked(uint64_t node, uint64_t seq) {
  return meta_set("peer_acked:" + std::to_string(node), static_cast<int64_t>(seq));
}

Result<uint64_t> Index::link_node(const std::string& link) {
  SYNCD_TRY_ASSIGN(v, meta_get("link_node:" + link));
  return static_cast<uint64_t>(v);
}

Status Index::set_link_node(const std::string& link, uint64_t node) {
  return meta_set("link_node:" + link, static_cast<int64_t>(node));
}

Result<int64_t> Index::root_mount() { return meta_get("root_mount"); }

Status Index::set_root_mount(int64_t kind) { return meta_set("root_mount", kind); }

Result<uint64_t> Index::tombstone_count() { return count_of("SELECT COUNT(*) FROM files WHERE deleted = 1"); }

Result<uint64_t> Index::collect_tombstones(const std::vector<uint64_t>& peers, bool peers_known, uint64_t now_ms,
                                           uint64_t min_age_ms, uint64_t max_age_ms) {
  uint64_t acked_by_all = peers_known ? UINT64_MAX : 0;
  for (uint64_t p : peers) {
    SYNCD_TRY_ASSIGN(a, peer_acked(p));
    acked_by_all = std::min(acked_by_all, a);
  }
  if (peers.empty() && !peers_known) acked_by_all = 0;
  std::vector<std::pair<std::string, uint64_t>> doomed;
  {
    SYNCD_TRY_ASSIGN(st, db_.prepare("SELECT seq, record, fp, origin FROM files WHERE deleted = 1"));
    SYNCD_TRY(each_row(st, [&](const Record& r) -> Status {
      const uint64_t deleted_ms = Hlc::millis(r.meta.content_ts);
      const uint64_t age = now_ms > deleted_ms ? now_ms - deleted_ms : 0;
      if ((r.seq <= acked_by_all && age >= min_age_ms) || age >= max_age_ms) doomed.emplace_back(r.meta.path, r.seq);
      return {};
    }));
  }
  // Sequence numbers are never handed out twice: a peer that applied the collected tombstone
  // resumes after it, and would skip a new record given its number (after a restart MAX(seq)
  // would no longer see it).
  if (!doomed.empty()) SYNCD_TRY(meta_set("seq_floor", static_cast<int64_t>(max_seq_)));
  SYNCD_TRY_ASSIGN(del, db_.prepare("DELETE FROM files WHERE path = ? AND seq = ? AND deleted = 1"));
  for (const auto& [path, seq] : doomed) {
    del.bind_blob(1, as_bytes(path));
    del.bind_int64(2, static_cast<int64_t>(seq));
    SYNCD_TRY(del.step());
    del.reset();
  }
  // Pairings whose tombstone is gone (collected, or replaced by a newer record of its path).
  SYNCD_TRY(db_.exec("DELETE FROM moves WHERE tomb_seq NOT IN (SELECT seq FROM files WHERE deleted = 1)"));
  return static_cast<uint64_t>(doomed.size());
}

Status Index::put_move(uint64_t tomb_seq, uint64_t to_seq, std::string_view to_path) {
  SYNCD_TRY_ASSIGN(st, db_.prepare("INSERT OR REPLACE INTO moves (tomb_seq, to_seq, to_path) VALUES (?, ?, ?)"));
  st.bind_int64(1, static_cast<int64_t>(tomb_seq));
  st.bind_int64(2, static_cast<int64_t>(to_seq));
  st.bind_blob(3, as_bytes(to_path));
  SYNCD_TRY(st.step());
  return {};
}

Result<std::optional<Index::Move>> Index::get_move(uint64_t tomb_seq) {
  SYNCD_TRY_ASSIGN(st, db_.prepare("SELECT to_seq, to_path FROM moves WHERE tomb_seq = ?"));
  st.bind_int64(1, static_cast<int64_t>(tomb_seq));
  SYNCD_TRY_ASSIGN(row, st.step());
  if (!row) return std::optional<Move>{};
  Move m;
  m.to_seq = static_cast<uint64_t>(st.column_int64(0));
  const ByteSpan p = st.column_blob(1);
  m.to_path.assign(reinterpret_cast<const char*>(p.data()), p.size());
  st.reset();
  return std::optional<Move>(std::move(m));
}

Result<uint64_t> Index::next_counter() {
  // Syncthing's rule: max(counter + 1, unix ms). Even if a power loss dropped the last commits
  // (high-water mark included), a counter handed out later is larger than any handed out before.
  const uint64_t wall = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                  std::chrono::system_clock::now().time_since_epoch())
                                                  .count());
  if (wall > counter_) counter_ = wall - 1;
  const uint64_t next = ++counter_;  // handed out even if the mark below cannot be written (author_now)
  if (next > counter_hw_) {
    const uint64_t hw = next - 1 + kCounterStride;
    if (in_txn_) {
      SYNCD_TRY(meta_set("counter_hw", static_cast<int64_t>(hw)));
    } else {
      SYNCD_TRY_ASSIGN(txn, begin());
      SYNCD_TRY(meta_set("counter_hw", static_cast<int64_t>(hw)));
      SYNCD_TRY(txn.commit());
    }
    counter_hw_ = hw;
  }
  return next;
}

Status Index::put_signature(std::string_view path, uint64_t peer, const CachedSignature& sig) {
  SYNCD_TRY_ASSIGN(st, db_.prepare(
      "INSERT INTO signatures (path, peer, base_hash, sig) VALUES (?, ?, ?, ?) "
      "ON CONFLICT(path, peer) DO UPDATE SET base_hash = excluded.base_hash, sig = excluded.sig"));
  st.bind_blob(1, as_bytes(path));
  st.bind_int64(2, static_cast<int64_t>(peer));
  st.bind_blob(3, ByteSpan(sig.base_hash));
  st.bind_blob(4, sig.signature);
  SYNCD_TRY(st.step());
  return {};
}

Result<std::optional<CachedSignature>> Index::get_signature(std::string_view path, uint64_t peer) {
  SYNCD_TRY_ASSIGN(st, db_.prepare("SELECT base_hash, sig FROM signatures WHERE path = ? AND peer = ?"));
  st.bind_blob(1, as_bytes(path));
  st.bind_int64(2, static_cast<int64_t>(peer));
  SYNCD_TRY_ASSIGN(row, st.step());
  if (!row) return std::optional<CachedSignature>{};
  CachedSignature c;
  ByteSpan h = st.column_blob(0);
  ByteSpan s = st.column_blob(1);
  if (h.size() != c.base_hash.size()) {
    st.reset();
    return Error::make(errc::corrupt, "index: bad signature hash column");
  }
  std::copy(h.begin(), h.end(), c.base_hash.begin());
  c.signature.assign(s.begin(), s.end());
  st.reset();
  return std::optional<CachedSignature>(std::move(c));
}

Result<bool> Index::has_signature(std::string_view path, uint64_t peer) {
  SYNCD_TRY_ASSIGN(st, db_.prepare("SELECT 1 FROM signatures WHERE path = ? AND peer = ?"));
  st.bind_blob(1, as_bytes(path));
  st.bind_int64(2, static_cast<int64_t>(peer));
  SYNCD_TRY_ASSIGN(row, st.step());
  st.reset();
  return row;
}

Result<std::optional<protocol::Hash256>> Index::signature_base(std::string_view path, uint64_t peer) {
  SYNCD_TRY_ASSIGN(st, db_.prepare("SELECT base_hash FROM signatures WHERE path = ? AND peer = ?"));
  st.bind_blob(1, as_bytes(path));
  st.bind_int64(2, static_cast<int64_t>(peer));
  SYNCD_TRY_ASSIGN(row, st.step());
  if (!row) return std::optional<protocol::Hash256>{};
  protocol::Hash256 h{};
  ByteSpan c = st.column_blob(0);
  if (c.size() != h.size()) {
    st.reset();
    return Error::make(errc::corrupt, "index: bad signature hash column");
  }
  std::copy(c.begin(), c.end(), h.begin());
  st.reset();
  return std::optional<protocol::Hash256>(h);
}

Status Index::forget_signature(std::string_view path, uint64_t peer) {
  SYNCD_TRY_ASSIGN(st, db_.prepare("DELETE FROM signatures WHERE path = ? AND peer = ?"));
  st.bind_blob(1, as_bytes(path));
  st.bind_int64(2, static_cast<int64_t>(peer));
  SYNCD_TRY(st.step());
  return {};
}

Result<Index::Txn> Index::begin() {
  if (in_txn_) return Error::make(errc::internal, "index: nested transaction");
  SYNCD_TRY(db_.exec("BEGIN IMMEDIATE"));
  in_txn_ = true;
  txn_max_seq_ = max_seq_;
  txn_counter_hw_ = counter_hw_;
  return Txn(this);
}

Status Index::Txn::commit() {
  if (!idx_) return Error::make(errc::internal, "index: commit of a finished transaction");
  Index* idx = std::exchange(idx_, nullptr);
  idx->in_txn_ = false;
  if (auto st = idx->db_.exec("COMMIT"); !st) {
    (void)idx->db_.exec("ROLLBACK");
    idx->max_seq_ = idx->txn_max_seq_;
    idx->counter_hw_ = idx->txn_counter_hw_;
    return st;
  }
  return {};
}

Index::Txn::~Txn() {
  if (!idx_) return;
  (void)idx_->db_.exec("ROLLBACK");
  idx_->in_txn_ = false;
  idx_->max_seq_ = idx_->txn_max_seq_;
  idx_->counter_hw_ = idx_->txn_counter_hw_;
}

}  // namespace syncd::store
