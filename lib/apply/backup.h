// File: lib/apply/backup.h
//
// Backup: rsync's --backup, --backup-dir and --suffix (lsyncd's rsync.backup, .backup_dir,
// .suffix) for a one-way target. Before a file, symlink or device is replaced or deleted, keep()
// gives its current inode a second name — NAME + suffix beside it (suffix "~" by default), or
// DIR/PATH + suffix under the backup directory (suffix "" by default; a relative DIR is inside
// the target, as with rsync) — replacing an older backup of that name. A hard link costs nothing
// and cannot be torn; across filesystems the entry is copied instead. Directories are never
// backed up (their files are, one by one, as rsync does).
// Thread affinity: blocking; the receiver's job thread.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "lib/base/result.h"
#include "lib/fs/root.h"

namespace syncd::apply {

struct BackupOptions {
  bool enabled = false;
  std::string dir;                    // "" = beside the file; relative = inside the target
  std::optional<std::string> suffix;  // unset: "~" beside the file, "" with a dir
};

class Backup {
 public:
  // Opens (creating if missing) the backup directory. An error names it and the errno text.
  static Result<Backup> open(const fs::Root& target, const BackupOptions& o);

  // Keeps what is at `rel` now, if anything that is not a directory.
  Status keep(std::string_view rel) const;
  // True for a backup name the mirror must not treat as an extra (rsync's protect rule).
  bool is_backup(std::string_view rel) const;

 private:
  Backup(const fs::Root& target, std::string suffix, std::string dir_in_tree, std::unique_ptr<fs::Root> dir)
      : target_(&target), suffix_(std::move(suffix)), dir_in_tree_(std::move(dir_in_tree)), dir_(std::move(dir)) {}
  const fs::Root* target_;
  std::string suffix_;
  std::string dir_in_tree_;       // the backup directory relative to the target, if inside it
  std::unique_ptr<fs::Root> dir_;  // null: beside the file
};

}  // namespace syncd::apply
