// File: lib/store/change.h
//
// Local change detection (TWO-WAY.md §4.2-4.3): what is on disk (scanner Entry) against this
// node's index Record, and the new version this node authors when they differ.
//   content group: type, deleted, content hash, size, symlink target
//   meta group:    mode, uid, gid, mtime, replicated xattrs (fs/xattrs.h)
// Departure from TWO-WAY.md §4.2, which ignores an mtime-only change: issue #3 requires `touch -d`
// to reach the mirror, so mtime belongs to the meta group. Equal content and meta: only the
// fingerprint is refreshed (an echo of our own write, or a rewrite with identical bytes).
// Pure functions; any thread.
#pragma once

#include <cstdint>
#include <optional>

#include "lib/store/index.h"
#include "lib/store/scanner.h"

namespace syncd::store {

enum class Change : uint8_t {
  none,         // disk equals the record, fingerprint included
  fingerprint,  // same version, different inode/ctime: refresh the fingerprint only
  content,
  meta,
  both,
};

// `dir_mtimes`: a directory's mtime is part of its metadata (one-way syncs that replicate directory
// times); otherwise it moves with every entry added or removed inside and is not a version.
Change classify(const Entry& disk, const std::optional<Record>& rec, bool dir_mtimes = false);

// This node's identity and clock reading for one authored change.
struct Author {
  uint64_t node = 0;
  uint64_t counter = 0;  // from Index::next_counter()
  uint64_t hlc = 0;
};
// The author of a change made now on this node. A counter is always handed out: when its
// high-water mark cannot be written (a full or failing state disk), that is logged and the
// counter still comes from memory (the wall-clock rule keeps counters increasing after a crash);
// a counter of 0 would make the new version look older than the one it replaces.
Author author_now(Index& index);
// The author of a version found on disk with no record of it by the first scan after a start
// (a seeding node's tree, Index::seeding, or a file made while syncd was stopped): dated by the
// file's mtime, never later than now. A seeding node cannot tell an old copy of the
// tree from a new write, and a scan's own time made a stale copy win every conflict with the
// newer versions its peers held; the file's time lets the newer write win (the other is kept
// as a conflict copy either way). The part of the mtime below a millisecond fills the clock's
// logical bits, so two writes a millisecond apart still order by time.
Author author_found(Index& index, const Entry& disk);
// The author of a change to `disk.path` found on disk, scanner and two-way receiver alike; `prev`
// is the index's record of it. During the first full scan after a start (Index::first_scan) it is
// author_found: the change was made while no daemon watched — an offline edit on a node whose
// syncd was stopped, or anything a seeding node finds — and the scan's own time made an edit
// made hours before win against the newer versions the peers authored meanwhile. A metadata-only
// change (`kind` meta) of a recorded name is dated by ctime. Never dated before the version it
// replaces. author_now otherwise (a live change).
Author author_of_found(Index& index, const Entry& disk, const std::optional<Record>& prev, Change kind);

// The new local version of disk.path: version[node] = counter, dots and timestamps of the groups
// that changed, metadata from disk. `kind` must be content, meta or both.
Record author_version(const Entry& disk, const std::optional<Record>& prev, Change kind,
                      const Author& a);
// The record at the new name of a move: `disk` there, holding what `from` (this node's record of
// the old name) held; `prev` is this node's record of the new name. A move is a new content event
// at the new name (TWO-WAY.md §4.5: rename = tombstone + create), so the content gets a fresh dot:
// keeping `from`'s would let a peer whose record of the new name has seen that older dot take the
// moved content as superseded and drop it. The version is `prev`'s (this node's history of the
// name) plus the new dot. When `prev` already holds this content live (a peer's record for the
// new name made this node record the disk before its watcher reported the move) its content dot
// stays: peers may have judged a conflict by it, and a different time now could make them judge
// the other way.
Record author_move(const Entry& disk, const Record& from, const std::optional<Record>& prev, const Author& a);
// A tombstone for `prev` (which must be live).
Record author_delete(const Record& prev, const Author& a);

}  // namespace syncd::store
