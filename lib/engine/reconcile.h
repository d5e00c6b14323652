// File: lib/engine/reconcile.h
//
// The two-way rules of TWO-WAY.md §4.4-4.6 as pure functions of records:
//   global_record(S)  the record every node computes for a path from the same set of records
//                     (frontier, per-group dots, field-wise merge, or the winner of a real
//                     content conflict adopted as it is);
//   decide(L, R)      what this node does when a peer announces R and it holds L;
//   conflict_copy_name(path, loser)  the deterministic name the loser's bytes are kept under.
// Groups: content = type, deleted, SHA-256, size, symlink target; meta = mode, uid, gid, xattrs
// and mtime (mtime is a meta change here so `touch -d` replicates; see lib/store/change.h).
// No I/O, no clock: the same inputs give the same answer on every node, whatever their order.
// Thread affinity: pure; any thread.
//
//   auto d = decide(local, remote);
//   if (d.action == Action::keep_copy_then_apply) { link(path, conflict_copy_name(path, *local)); ... }
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/messages.h"

namespace syncd::engine {

struct Global {
  protocol::FileMeta record;       // G
  bool content_conflict = false;   // step 5: concurrent, different content; G is the winner
  bool meta_conflict = false;      // concurrent meta changes settled by last writer wins
};

// G for one path from all records known for it (this node's and each peer's last announced).
// `records` must be non-empty and all for the same path.
Global global_record(std::vector<protocol::FileMeta> records);

enum class Action : uint8_t {
  none,                  // G is what this node holds: nothing to write
  apply,                 // make the disk G (fast-forward, merge, or adopt a winner over an ancestor)
  keep_copy_then_apply,  // local content loses a real conflict: keep it as a conflict copy, apply G
};

struct Decision {
  Action action = Action::none;
  protocol::FileMeta target;       // G
  bool content_conflict = false;   // a real conflict was resolved (whichever side won)
  bool meta_conflict = false;
  bool local_wins = false;         // content conflict won by what this node holds
  // Where G's content comes from when applying: the same as the local one (metadata only, or a
  // no-op), or the remote record's (its body is needed).
  bool content_from_local = false;
};

// `local`: this node's record for the path (nullopt: never seen). `remote`: what the peer announced.
Decision decide(const std::optional<protocol::FileMeta>& local, const protocol::FileMeta& remote);

// True when both records hold the same content group (type, tombstone, hash, symlink target).
bool same_content(const protocol::FileMeta& a, const protocol::FileMeta& b) noexcept;
// True when `v` has seen the event `d` (v[d.node] >= d.counter).
bool has_seen(const protocol::VersionVector& v, const protocol::Dot& d) noexcept;

// <path>.sync-conflict-<YYYYMMDD-HHMMSS>-<NODE7>-<H8> (TWO-WAY.md §4.6): the loser's content
// time (UTC), the first 7 base32 characters of its content author's node id, and the first 8 hex
// digits of its SHA-256. The leaf stays within 255 bytes (the stem is shortened, the suffix kept).
std::string conflict_copy_name(std::string_view path, const protocol::FileMeta& loser);
// What a conflict-copy name says (the inverse of conflict_copy_name); nullopt for other names.
struct ConflictCopyName {
  std::string original;  // the path the copy was made from
  std::string when;      // YYYYMMDD-HHMMSS, UTC: the losing content's time
  std::string node;      // NODE7 of the losing content's author
  std::string hash8;     // first 8 hex digits of its SHA-256
};
std::optional<ConflictCopyName> parse_conflict_copy_name(std::string_view path);
// The 7-character display form of a node id.
std::string node_short(uint64_t node);

}  // namespace syncd::engine
