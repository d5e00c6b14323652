// File: lib/fs/root.h
//
// Root: the synced directory, held as an fd opened once, and confinement of every path under it
// (SECURITY.md §2.5). Paths are validated with protocol::validate_path (no "..", no absolute path,
// no empty component, no NUL, nothing reserved), then resolved from the root fd with
// openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV) where the
// kernel has it, else with a component-by-component openat(O_NOFOLLOW | O_DIRECTORY) walk. No
// symlink is ever followed, so a symlinked parent that points outside the root is refused
// (errc::path_escape) instead of written through. The one exception is a tree that is only read
// and whose config asks rsync to copy what links point to (set_follow_links): the links it names
// are followed, on purpose, wherever they lead.
// Thread affinity: a Root is immutable after open(); any thread may resolve through it.
//
//   SYNCD_TRY_ASSIGN(root, Root::open("/opt/acme2certifier/volume"));
//   SYNCD_TRY_ASSIGN(parent, root.parent_of("certs/a.pem"));   // parent.dir is "certs", leaf "a.pem"
//   ::openat(parent.dir.get(), parent.leaf.c_str(), ...);
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "lib/fs/xattrs.h"
#include "lib/base/result.h"
#include "lib/base/unique_fd.h"

namespace syncd::fs {

enum class Resolver { automatic, openat2, walk };

class Root {
 public:
  static Result<Root> open(const std::string& path, Resolver how = Resolver::automatic);

  // Opens directory `rel` ("" = the root itself) for reading, without following any symlink.
  Result<UniqueFd> open_dir(std::string_view rel) const;

  // A parent directory's fd: opened for the caller, or the root's own fd lent to it (a top-level
  // name needs no open("."), and small-file latency is counted in syscalls).
  class DirFd {
   public:
    DirFd() = default;
    explicit DirFd(UniqueFd owned) noexcept : owned_(std::move(owned)), fd_(owned_.get()) {}
    static DirFd borrow(int fd) noexcept {
      DirFd d;
      d.fd_ = fd;
      return d;
    }
    DirFd(DirFd&& o) noexcept : owned_(std::move(o.owned_)), fd_(std::exchange(o.fd_, -1)) {}
    DirFd& operator=(DirFd&& o) noexcept {
      owned_ = std::move(o.owned_);
      fd_ = std::exchange(o.fd_, -1);
      return *this;
    }
    int get() const noexcept { return fd_; }

   private:
    UniqueFd owned_;
    int fd_ = -1;
  };
  struct Parent {
    DirFd dir;         // the parent directory, O_RDONLY|O_DIRECTORY (usable for fsync); never close it
    std::string leaf;  // the validated last component
  };
  // Validates `rel` and opens its parent directory (lends the root's fd for a top-level name:
  // the Parent must not outlive this Root).
  Result<Parent> parent_of(std::string_view rel) const;

  // True if `path_` still names the directory we opened (same device and inode): a root that was
  // unmounted or replaced by a symlink is detected before anything is written (SECURITY.md #30).
  Status check_identity() const;

  // Which extended attributes of this tree are replicated (none by default); the scanner reads
  // and the applier writes exactly these. Set before the tree is shared between threads.
  void set_xattr_names(const XattrNames& n) noexcept { xattrs_ = n; }
  const XattrNames& xattr_names() const noexcept { return xattrs_; }
  // rsync's --one-file-system (lsyncd's rsync.one_file_system): directories on another device
  // than the root (mount points) are replicated as directories, but not entered or watched.
  void set_one_file_system(bool on) noexcept { one_fs_ = on; }
  // True when `st_dev` is a device this tree does not enter.
  bool foreign_device(dev_t st_dev) const noexcept { return one_fs_ && st_dev != dev_; }
  // Whether syncfs(2) on this tree makes its files durable (group commits): not on FUSE.
  bool syncfs_durable() const noexcept { return syncfs_durable_; }
  // rsync's --devices / --specials (lsyncd's archive implies both): device files, FIFOs and
  // sockets are replicated too. Regular files, directories and symlinks always are.
  void set_specials(bool devices, bool specials) noexcept {
    devices_ = devices;
    specials_ = specials;
  }
  bool replicates(mode_t st_mode) const noexcept {
    if (S_ISREG(st_mode) || S_ISDIR(st_mode) || S_ISLNK(st_mode)) return true;
    if (S_ISCHR(st_mode) || S_ISBLK(st_mode)) return devices_;
    return (S_ISFIFO(st_mode) || S_ISSOCK(st_mode)) && specials_;
  }

  // rsync's --copy-links (`all`), --copy-unsafe-links (`unsafe`: an absolute target, or one whose
  // ".." climb out of the tree) and --copy-dirlinks (`dirs`: links to directories): which symlinks
  // of this tree are read as what they point to. Only for a tree that is read (a one-way
  // sender's); a tree that is written never follows one. Set before the tree is shared.
  struct FollowLinks {
    bool all = false;
    bool unsafe = false;
    bool dirs = false;
    bool any() const noexcept { return all || unsafe || dirs; }
  };
  void set_follow_links(FollowLinks f) noexcept { follow_ = f; }
  const FollowLinks& follow_links() const noexcept { return follow_; }
  // rsync's rule: `target` of the link at `rel` is unsafe when absolute or when its ".." climb
  // above the root.
  static bool unsafe_link(std::string_view rel, std::string_view target) noexcept;
  // For the symlink `leaf` in `dir` (the tree's path `rel`): the stat of what it points to when
  // this tree follows it, std::nullopt when it stays a symlink. A followed link without a
  // referent (missing, or a loop) is an error naming the path, as rsync reports it.
  Result<std::optional<struct stat>> followed(int dir, const std::string& leaf, std::string_view rel) const;
  // Opens `leaf` in `dir` (at `rel`) with O_RDONLY|O_CLOEXEC|`flags`, never through a symlink —
  // unless this tree follows that one, then its referent.
  Result<UniqueFd> open_read(int dir, const std::string& leaf, std::string_view rel, int flags) const;

  int fd() const noexcept { return fd_.get(); }
  const std::string& path() const noexcept { return path_; }
  Resolver resolver() const noexcept { return how_; }

 private:
  Result<UniqueFd> resolve_openat2(std::string_view rel) const;
  Result<UniqueFd> resolve_walk(std::string_view rel) const;

  UniqueFd fd_;
  std::string path_;
  dev_t dev_ = 0;
  bool syncfs_durable_ = true;
  ino_t ino_ = 0;
  Resolver how_ = Resolver::walk;
  XattrNames xattrs_;
  bool one_fs_ = false;
  bool devices_ = false;
  bool specials_ = false;
  FollowLinks follow_;
};

}  // namespace syncd::fs
