// File: lib/apply/apply.h
//
// Applier: every change syncd makes to a synced tree, each crash-safe and confined under a Root.
// A regular file is applied in the order of SECURITY.md §5.1:
//   1. exclusive 0600 temp file ".syncd.<name>.<random>.tmp" in the target directory (O_EXCL,
//      O_NOFOLLOW; a planted name is skipped, never opened);
//   2. content written (whole, or patched from the old file by the caller's writer) while hashed;
//      content hash (codec/content_hash.h) compared with the announced one (errc::verify_failed);
//   3. fchown, then fchmod (chown clears setuid/setgid), then futimens; fsync; close checked;
//   4. conflict guard: the target must still be what the caller expected (errc::unexpected_target);
//   5. renameat (RENAME_NOREPLACE when the target must be absent); fsync of the directory.
// Any failure removes the temp file and leaves the old target untouched; the error names the path
// and the errno text. Symlinks are created with symlinkat and never followed; metadata is changed
// through fds or AT_SYMLINK_NOFOLLOW, never through a path that could be swapped.
// Owners are applied by name when the name exists locally, else by the numeric id.
//
// Thread affinity: an Applier holds its options and a ChunkMemo (locked); call it from worker threads
// (it blocks on disk I/O and fsync), never from the loop thread.
//
//   Applier ap(root);
//   Attrs a{.mode = 0644, .uid = 0, .gid = 0, .mtime_sec = t, .size = n};
//   SYNCD_TRY_ASSIGN(fp, ap.write_file("certs/a.pem", a, Expected::absent(), sha,
//                                        [&](delta::OutputSink& out) { return out.write(bytes); }));
#pragma once

#include <sys/stat.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <optional>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "lib/fs/fingerprint.h"
#include "lib/fs/root.h"
#include "lib/base/result.h"
#include "lib/codec/content_hash.h"
#include "lib/delta/patch.h"

namespace syncd::apply {

using fs::Fingerprint;
using fs::Resolver;
using fs::Root;

// What the caller believes is at the target now.
struct Expected {
  enum class Kind { any, absent, match } kind = Kind::any;
  Fingerprint fp;
  static Expected any() { return {}; }
  static Expected absent() { return {Kind::absent, {}}; }
  static Expected match(const Fingerprint& f) { return {Kind::match, f}; }
};

struct Attrs {
  uint32_t mode = 0644;  // permission bits (& 07777)
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::string user;   // preferred over uid when it exists locally
  std::string group;
  int64_t mtime_sec = 0;
  uint32_t mtime_nsec = 0;
  uint64_t size = 0;  // expected content size (files): preallocated for an early ENOSPC (≥ 256 KiB)
  // Files and dirs: the replicated xattrs (the root's xattr_names()), set after chown and chmod
  // (an ACL's mask and the group bits agree, as they did at the source).
  std::vector<protocol::Xattr> xattrs{};
  // false: the mtime is left as it is (rsync's --omit-dir-times / --omit-link-times).
  bool set_mtime = true;
};

// A fresh temp-file name for `leaf`: ".syncd.<leaf>.<12 random hex>.tmp" (long leaves are hashed
// to stay within 255 bytes).
std::string temp_name_for(std::string_view leaf);

struct Options {
  bool fsync = true;              // fsync files and directories (off only for benchmarks)
  bool keep_special_bits = true;  // setuid/setgid/sticky kept (lsyncd archive mode); false strips
  bool chown = true;              // needs root or CAP_CHOWN
  // rsync's --sparse: file blocks (4 KiB, aligned) of zeros are skipped, leaving holes; nothing
  // is preallocated.
  bool sparse = false;
  // Names temp entries; tests replace it to plant files at the names it will pick.
  std::string (*temp_namer)(std::string_view leaf) = temp_name_for;
};

using ContentWriter = std::function<Status(delta::OutputSink&)>;

// The chunk digests (codec/content_hash.h) of big files this applier put in place, valid while the
// file still has the fingerprint it had then: a patch of one of them re-hashes only the chunks the
// patch wrote, not the file. Any local change moves mtime or ctime and so drops the entry.
// Thread affinity: any thread (one mutex); bounded.
class ChunkMemo {
 public:
  static constexpr size_t kMaxFiles = 4096;
  // Chunks a patch had to read back and hash (not known from the base): tests and benchmarks.
  std::atomic<uint64_t> chunks_read{0};
  // The chunks of what was put at `rel` if it still has fingerprint `fp`, else empty.
  std::vector<codec::Digest> find(std::string_view rel, const Fingerprint& fp) const;
  void put(std::string_view rel, const Fingerprint& fp, std::vector<codec::Digest> chunks);

 private:
  struct Entry {
    Fingerprint fp;
    std::vector<codec::Digest> chunks;
  };
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> files_;
  std::deque<std::string> order_;
};

class Applier {
 public:
  explicit Applier(const Root& root, Options opts = {})
      : root_(root), opts_(opts), memo_(std::make_shared<ChunkMemo>()) {}

  // Writes a regular file atomically (order above). Returns the fingerprint of the new file.
  Result<Fingerprint> write_file(std::string_view rel, const Attrs& attrs, const Expected& expect,
                                 const codec::Digest& sha256, const ContentWriter& writer) const;
  // write_file() for a patch of `base_fd` (the file now at `rel`, opened by the caller): where the
  // filesystem can clone (FICLONE: XFS with reflink, btrfs), the temp file starts as a clone of
  // the base and the writer's sink keeps COPY ranges without moving their bytes (a Patcher with
  // Hashing::off offers them), so a small edit of a big file writes and fsyncs only what
  // changed; elsewhere it is write_file(). The result is verified against `sha256` either way.
  Result<Fingerprint> patch_file(std::string_view rel, const Attrs& attrs, const Expected& expect,
                                 const codec::Digest& sha256, int base_fd, const ContentWriter& writer) const;
  // rsync's --inplace, for a patch held in memory (`delta`, lib/delta form) on the base content now
  // at `rel` (opened by the caller as `base_fd`): when every COPY of the delta takes the base's
  // bytes at the offsets they land on, only the delta's literal bytes are written, into the file
  // itself - no temp file, no copy of the unchanged bytes, the inode (and so hard links) kept;
  // then truncate, verify (chunks the patch left alone are not re-read when their digests are
  // known), owner, mode, time, fsync. Not atomic, as with rsync: a reader may see the file half
  // patched, and a failure (a crash, a full disk, a verify mismatch) leaves it so until the
  // version is re-sent whole. nullopt, with nothing written: the delta moves bytes within the
  // file (patching in place would read bytes it had overwritten), `rel` is no longer the base's
  // inode or cannot be opened for writing (a running program), or sparse files are on.
  Result<std::optional<Fingerprint>> patch_in_place(std::string_view rel, const Attrs& attrs,
                                                    const codec::Digest& sha256, int base_fd, ByteSpan delta) const;
  // Batches (group commit, DESIGN.md targets): stage_file() does steps 1-3 of write_file()
  // except the fsync; commit_staged() then makes all of them durable with one syncfs(2), renames
  // each into place in order (with its guard) and makes the renames durable with one more
  // syncfs. result[i] belongs to staged[i]; a failed one leaves its old target intact.
  struct Staged {
    std::string rel;
    std::string tmp;
    std::string leaf;
    Expected expect;
    std::vector<codec::Digest> chunks{};  // of a big file: remembered once it is in place (ChunkMemo)
  };
  Result<Staged> stage_file(std::string_view rel, const Attrs& attrs, const Expected& expect,
                            const codec::Digest& sha256, const ContentWriter& writer) const;
  // `renamed(i)` runs right after staged[i] is in place (before the next one is).
  std::vector<Result<Fingerprint>> commit_staged(std::vector<Staged>& staged,
                                                 const std::function<void(size_t)>& renamed = {}) const;

  // Creates a directory (mode/owner/mtime applied), or updates the metadata of an existing one.
  Result<Fingerprint> make_dir(std::string_view rel, const Attrs& attrs) const;
  // Creates or replaces a symlink atomically. The target is stored, never followed.
  Result<Fingerprint> make_symlink(std::string_view rel, std::string_view target,
                                   const Attrs& attrs, const Expected& expect) const;
  // Creates or replaces a device file, FIFO or socket (`st_type`: S_IFCHR, S_IFBLK, S_IFIFO or
  // S_IFSOCK) atomically, like a symlink: made at a temp name, owner/mode/mtime set there without
  // following anything, renamed into place. Devices need CAP_MKNOD.
  Result<Fingerprint> make_special(std::string_view rel, mode_t st_type, uint64_t rdev, const Attrs& attrs,
                                   const Expected& expect) const;
  // Changes owner, group, mode and mtime of an existing entry (no mode on symlinks).
  Result<Fingerprint> set_meta(std::string_view rel, const Attrs& attrs,
                               const Expected& expect) const;
  // Sets only the mtime of what is at `rel` (never followed): a directory's, after entries
  // applied inside it moved it (rsync restores directory times the same way, last).
  Result<Fingerprint> set_mtime(std::string_view rel, int64_t sec, uint32_t nsec) const;
  // The root directory's own owner, group, mode and (if attrs.set_mtime) mtime, through the
  // root's fd — rsync -a gives the target root the source root's. xattrs are left alone.
  Status set_root_meta(const Attrs& attrs) const;
  // Only the root's mtime (after entries applied inside it moved it).
  Status set_root_mtime(int64_t sec, uint32_t nsec) const;
  // Removes a non-directory entry after the conflict guard.
  Status unlink(std::string_view rel, const Expected& expect) const;
  // Removes a directory; with `recursive`, everything below it (symlinks removed, never followed).
  Status remove_dir(std::string_view rel, bool recursive) const;
  // Renames `from` to `to` after checking both against expectations (`to` usually absent).
  Result<Fingerprint> rename(std::string_view from, std::string_view to, const Expected& expect_from,
                             const Expected& expect_to) const;

  // Makes `to` another name of the file at `from` (rsync's --hard-links), replacing what is at
  // `to` atomically: linked at a temp name, renamed over it. Nothing to do when it already is.
  Result<Fingerprint> link_into(std::string_view from, std::string_view to, const Expected& expect_to = Expected::any()) const;
  // A second name for the entry at `from` (a conflict copy keeps the losing bytes this way, so the
  // original path never disappears: TWO-WAY.md §4.6). `to` must not exist.
  Result<Fingerprint> link(std::string_view from, std::string_view to, const Expected& expect_from) const;

  // Removes temp entries of applies that were cut short (a crash between create and rename):
  // regular files named .syncd.*.tmp and owned by this process's user, anywhere in the tree.
  // Call only when no apply is running on this root.
  Status remove_stale_temps() const;

  // Looks at what is at `rel` now (lstat semantics); errno ENOENT if nothing.
  Result<Fingerprint> stat(std::string_view rel) const;

  const ChunkMemo& chunk_memo() const noexcept { return *memo_; }

 private:
  // Steps 1-3 with `fill(temp_fd)` doing the content, owner, mode and mtime.
  Result<Staged> stage_with(std::string_view rel, const Expected& expect,
                            const std::function<Status(int)>& fill) const;
  Status guard(int dir, const std::string& leaf, std::string_view rel, const Expected& e) const;
  Status apply_owner_mode_time(int fd, std::string_view rel, const Attrs& a, bool xattrs = true) const;
  Status fsync_dir(int dir, std::string_view rel) const;
  // Steps 1-3 of SECURITY.md §5.1 into a fresh temp fd: preallocate, write while hashing,
  // verify, owner before mode, mtime.
  Status fill_temp(int fd, std::string_view rel, const Attrs& attrs, const codec::Digest& sha256,
                   const ContentWriter& writer, std::vector<codec::Digest>* chunks) const;
  // Owner, mode, mtime of a device/FIFO/socket by name, never following (they are not opened).
  Status apply_special_meta(int dir, const std::string& name, std::string_view rel, const Attrs& a) const;
  Status apply_link_meta(int dir, const std::string& name, std::string_view rel,
                         const Attrs& a) const;
  // Steps 4-5 of the order above for a prepared temp entry: guard, rename, directory fsync.
  Result<Fingerprint> commit_temp(int dir, const std::string& tmp, const std::string& leaf,
                                  std::string_view rel, const Expected& expect) const;

  const Root& root_;
  Options opts_;
  std::shared_ptr<ChunkMemo> memo_;  // shared by copies of this applier
};

// Resolves a user/group name to an id, falling back to the numeric id when the name is empty or
// unknown here.
uint32_t resolve_uid(const std::string& name, uint32_t fallback);
uint32_t resolve_gid(const std::string& name, uint32_t fallback);

// Gives a file `uid` and `gid` as rsync -a does: as root, both. Without root (no right to give a
// file away) the owner stays this process's user and the group is set only when it is one of
// this user's groups — never an error, as rsync and cp -p run by a normal user do not fail a
// file for it (said once in the log). `chown_fn(uid, gid)`: fchown/fchownat on the file, -1
// with errno set on failure.
Status set_owner(const std::function<int(uid_t, gid_t)>& chown_fn, uint32_t uid, uint32_t gid, const char* what,
                 std::string_view rel);

}  // namespace syncd::apply
