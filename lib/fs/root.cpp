#include "lib/fs/root.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "lib/base/log.h"
#include "protocol/path.h"

namespace syncd::fs {
namespace {

constexpr int kDirFlags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
constexpr decltype(statfs::f_type) kFuseSuperMagic = 0x65735546;  // linux/magic.h FUSE_SUPER_MAGIC

Error resolve_error(std::string_view rel, int err) {
  const std::string what = "resolve \"" + log::escape(rel) + "\"";
  // ELOOP: a symlink in the path (RESOLVE_NO_SYMLINKS / O_NOFOLLOW). EXDEV: escape or mount
  // crossing. ENOTDIR with the walk: a component is a symlink or a file. All are refusals.
  if (err == ELOOP || err == EXDEV) {
    return Error::make(errc::path_escape, what + ": symlink or mount point in the path");
  }
  return Error::from_errno(what, err);
}

long sys_openat2(int dirfd, const char* path, open_how* how) {
  return ::syscall(SYS_openat2, dirfd, path, how, sizeof(*how));
}

}  // namespace

Result<Root> Root::open(const std::string& path, Resolver how) {
  Root r;
  r.path_ = path;
  // The configured root may itself be a symlink (an operator's choice); nothing below it may.
  r.fd_ = UniqueFd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!r.fd_) return Error::from_errno("open root " + path);
  struct stat st{};
  if (::fstat(r.fd_.get(), &st) != 0) return Error::from_errno("stat root " + path);
  r.dev_ = st.st_dev;
  r.ino_ = st.st_ino;
  // FUSE answers syncfs(2) without asking its server (only virtiofs passes it on): there, only a
  // per-file fsync reaches the storage.
  struct statfs sf{};
  r.syncfs_durable_ = ::fstatfs(r.fd_.get(), &sf) != 0 || sf.f_type != kFuseSuperMagic;
  if (how == Resolver::automatic) {
    open_how oh{};
    oh.flags = kDirFlags;
    oh.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS;
    long fd = sys_openat2(r.fd_.get(), ".", &oh);
    if (fd >= 0) {
      ::close(static_cast<int>(fd));
      how = Resolver::openat2;
    } else {
      how = Resolver::walk;  // ENOSYS before Linux 5.6, or seccomp denying it
    }
  }
  r.how_ = how;
  return r;
}

Status Root::check_identity() const {
  struct stat st{};
  if (::stat(path_.c_str(), &st) != 0) return Error::from_errno("stat root " + path_);
  if (!S_ISDIR(st.st_mode) || st.st_dev != dev_ || st.st_ino != ino_) {
    return Error::make(errc::unexpected_target,
                       "root " + path_ + " is no longer the directory syncd opened "
                       "(unmounted, replaced or a symlink)");
  }
  return {};
}

Result<UniqueFd> Root::resolve_openat2(std::string_view rel) const {
  const std::string p(rel);
  open_how oh{};
  oh.flags = kDirFlags;
  oh.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
  for (int attempt = 0; attempt < 16; ++attempt) {  // EAGAIN: a concurrent rename; bounded retry
    long fd = sys_openat2(fd_.get(), p.c_str(), &oh);
    if (fd >= 0) return UniqueFd(static_cast<int>(fd));
    // A symlink as the last component gives ENOTDIR (O_NOFOLLOW|O_DIRECTORY), like a file does;
    // the O_NOFOLLOW walk tells the two apart for the error message, opening nothing new.
    // ELOOP: a symlink on the way, which the walk may follow (set_follow_links).
    if (errno == ENOTDIR || (errno == ELOOP && follow_.any())) return resolve_walk(rel);
    if (errno != EAGAIN) return resolve_error(rel, errno);
  }
  return resolve_error(rel, EAGAIN);
}

Result<UniqueFd> Root::resolve_walk(std::string_view rel) const {
  UniqueFd cur(::fcntl(fd_.get(), F_DUPFD_CLOEXEC, 0));
  if (!cur) return Error::from_errno("dup root fd");
  size_t start = 0;
  while (start < rel.size()) {
    size_t slash = rel.find('/', start);
    if (slash == std::string_view::npos) slash = rel.size();
    const std::string comp(rel.substr(start, slash - start));
    // O_NOFOLLOW|O_DIRECTORY: a symlink component fails (ELOOP/ENOTDIR), never followed.
    UniqueFd next(::openat(cur.get(), comp.c_str(), kDirFlags));
    if (!next) {
      struct stat st{};
      if ((errno == ENOTDIR || errno == ELOOP) &&
          ::fstatat(cur.get(), comp.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) {
        // A link this tree follows to a directory is entered (the kernel resolves it).
        auto f = follow_.any() ? followed(cur.get(), comp, rel.substr(0, slash))
                               : Result<std::optional<struct stat>>(std::optional<struct stat>{});
        if (f.ok() && *f && S_ISDIR((*f)->st_mode)) {
          next.reset(::openat(cur.get(), comp.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
          if (next) {
            cur = std::move(next);
            start = slash + 1;
            continue;
          }
        }
        return resolve_error(rel, ELOOP);
      }
      return resolve_error(rel, errno);
    }
    cur = std::move(next);
    start = slash + 1;
  }
  return cur;
}

bool Root::unsafe_link(std::string_view rel, std::string_view target) noexcept {
  if (target.empty() || target.front() == '/') return true;
  // Depth of the link's directory below the root, then walk the target's components.
  long depth = static_cast<long>(std::count(rel.begin(), rel.end(), '/'));
  size_t start = 0;
  while (start <= target.size()) {
    size_t slash = target.find('/', start);
    if (slash == std::string_view::npos) slash = target.size();
    const std::string_view comp = target.substr(start, slash - start);
    if (comp == "..") {
      if (--depth < 0) return true;
    } else if (!comp.empty() && comp != ".") {
      ++depth;
    }
    start = slash + 1;
  }
  return false;
}

Result<std::optional<struct stat>> Root::followed(int dir, const std::string& leaf, std::string_view rel) const {
  if (!follow_.any()) return std::optional<struct stat>{};
  char buf[4097];
  const ssize_t n = ::readlinkat(dir, leaf.c_str(), buf, sizeof buf);
  if (n < 0) return Error::from_errno("readlink \"" + log::escape(rel) + "\"");
  const bool unsafe = unsafe_link(rel, std::string_view(buf, static_cast<size_t>(n)));
  struct stat st{};
  if (::fstatat(dir, leaf.c_str(), &st, 0) != 0) {
    // Without a referent only copy_dirlinks cannot tell: such a link stays a link.
    if (follow_.all || (follow_.unsafe && unsafe)) {
      return Error::from_errno("\"" + log::escape(rel) + "\": symlink has no referent");
    }
    return std::optional<struct stat>{};
  }
  if (follow_.all || (follow_.unsafe && unsafe) || (follow_.dirs && S_ISDIR(st.st_mode))) {
    return std::optional<struct stat>(st);
  }
  return std::optional<struct stat>{};
}

Result<UniqueFd> Root::open_read(int dir, const std::string& leaf, std::string_view rel, int flags) const {
  UniqueFd fd(::openat(dir, leaf.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | flags));
  if (fd) return fd;
  const int err = errno;
  if (err == ELOOP && follow_.any()) {
    SYNCD_TRY_ASSIGN(f, followed(dir, leaf, rel));
    if (f) {
      fd.reset(::openat(dir, leaf.c_str(), O_RDONLY | O_CLOEXEC | flags));
      if (fd) return fd;
      return Error::from_errno("open \"" + log::escape(rel) + "\"");
    }
  }
  return Error::from_errno("open \"" + log::escape(rel) + "\"", err);
}

Result<UniqueFd> Root::open_dir(std::string_view rel) const {
  if (rel.empty()) {
    UniqueFd d(::openat(fd_.get(), ".", kDirFlags));
    if (!d) return Error::from_errno("open root " + path_);
    return d;
  }
  SYNCD_TRY(protocol::validate_path(rel));
  return how_ == Resolver::openat2 ? resolve_openat2(rel) : resolve_walk(rel);
}

Result<Root::Parent> Root::parent_of(std::string_view rel) const {
  SYNCD_TRY(protocol::validate_path(rel));
  const size_t slash = rel.rfind('/');
  Parent p;
  if (slash == std::string_view::npos) {
    p.leaf = std::string(rel);
    p.dir = DirFd::borrow(fd_.get());
    return p;
  }
  p.leaf = std::string(rel.substr(slash + 1));
  auto d = open_dir(rel.substr(0, slash));
  // Name the whole path the caller asked for, not only the directory that failed.
  if (!d.ok()) return std::move(d).error().wrap("\"" + log::escape(rel) + "\"");
  p.dir = DirFd(std::move(*d));
  return p;
}

}  // namespace syncd::fs
