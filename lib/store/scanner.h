// File: lib/store/scanner.h
//
// The scanner looks at the synced tree through an fs::Root (no symlink is ever followed, a
// swapped parent is refused) and reports what is on disk:
//   scan_one()  one path: lstat, and for a regular file its content hash (codec/content_hash.h; a big
//               file re-hashes only the chunks that changed, store/chunk_cache.h), computed only when the stat
//               fingerprint (type, inode, size, mtime, ctime) differs from what the caller knew.
//               A file that changes while it is read is reported busy (errc::unexpected_target),
//               never as a torn version (SECURITY.md #17). FIFOs, devices and sockets are refused.
//   walk()      a subtree, depth first, parents before children, without hashing.
// syncd's reserved names (.syncd, .syncd.*: temp files, state) are never reported.
// Thread affinity: blocking; call from worker threads, never the loop thread. Shared state: the
// process-wide ChunkCache (locked).
//
//   SYNCD_TRY_ASSIGN(e, scan_one(root, "certs/a.pem", known_fp_or_null, known_hash));
//   if (e && e->hashed) ...;   // e->sha256 is fresh
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "lib/base/bytes.h"
#include "lib/base/result.h"
#include "lib/fs/fingerprint.h"
#include "lib/fs/root.h"
#include "protocol/messages.h"

namespace syncd::store {

struct Entry {
  std::string path;
  protocol::FileType type = protocol::FileType::file;
  fs::Fingerprint fp;
  std::string symlink_target;  // symlinks only
  uint64_t rdev = 0;           // device files only
  uint64_t nlink = 1;          // names of this inode (rsync.hard_links)
  // files: content hash; symlinks: hash of the target; devices, FIFOs, sockets: hash of
  // special_descriptor(); dirs: zero
  protocol::Hash256 sha256{};
  bool hashed = false;         // true when sha256 was computed now (not reused)
  std::vector<protocol::Xattr> xattrs{};  // files and dirs: the root's replicated xattrs (sorted)
  bool via_link = false;       // read through a symlink the tree follows (rsync.copy_links)
};

// What the caller already knows about the path (from the index), to skip hashing.
struct Known {
  fs::Fingerprint fp;
  protocol::Hash256 sha256{};
};

// Files up to this size can be handed back by scan_one along with their hash.
inline constexpr uint64_t kKeepMax = 256 * 1024;

// std::nullopt: nothing at that path. With `keep`: when a regular file of at most kKeepMax bytes
// was hashed now, `*keep` receives exactly the bytes that were hashed (else it is untouched).
Result<std::optional<Entry>> scan_one(const fs::Root& root, std::string_view rel,
                                      const Known* known = nullptr, Bytes* keep = nullptr);

// Calls `visit` for every entry at or below `rel` ("" = the whole tree; the root itself is not
// reported) with its lstat fingerprint. Directories come before their contents. Entries that
// vanish during the walk are skipped. `skip` (may be empty) prunes paths, e.g. excludes.
//
// An entry that is there but cannot be looked at (a failed stat, a directory that cannot be
// opened or listed: EIO, EACCES, EMFILE, ...) is never taken for absent: without `trouble` the
// walk ends with that error; with it, the walk reports the path (what is at or below it is then
// unknown, not gone) and goes on.
using WalkVisitor = std::function<Status(const std::string& rel, const fs::Fingerprint& fp)>;
using WalkFilter = std::function<bool(std::string_view rel, bool is_dir)>;
using WalkTrouble = std::function<void(const std::string& rel, const Error& e)>;
Status walk(const fs::Root& root, std::string_view rel, const WalkVisitor& visit,
            const WalkFilter& skip = {}, const WalkTrouble& trouble = {});

// The file type a stat mode maps to, or nullopt for types syncd cannot replicate at all. Whether
// a tree replicates devices and specials is the Root's say (Root::replicates).
std::optional<protocol::FileType> file_type_of(uint32_t st_mode) noexcept;
// What a device file, FIFO or socket "contains" for the content hash: its kind and device number.
std::string special_descriptor(protocol::FileType t, uint64_t rdev);

// Owner and group names for the record, "" when the id has no name here.
std::string user_name(uint32_t uid);
std::string group_name(uint32_t gid);

}  // namespace syncd::store
