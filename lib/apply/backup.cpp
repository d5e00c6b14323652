#include "lib/apply/backup.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <vector>

#include "lib/apply/apply.h"
#include "lib/base/log.h"
#include "lib/base/unique_fd.h"

namespace syncd::apply {
namespace {

std::string q(std::string_view rel) { return "\"" + log::escape(rel) + "\""; }

Error io_error(const std::string& what, std::string_view rel) { return Error::from_errno(what + " " + q(rel)); }

// Opens (creating each missing component) directory `rel` below `base`, never following symlinks.
Result<UniqueFd> make_dirs(int base, std::string_view rel) {
  UniqueFd cur(::openat(base, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!cur) return io_error("open backup directory", "");
  size_t at = 0;
  while (at < rel.size()) {
    size_t slash = rel.find('/', at);
    if (slash == std::string_view::npos) slash = rel.size();
    const std::string comp(rel.substr(at, slash - at));
    if (::mkdirat(cur.get(), comp.c_str(), 0755) != 0 && errno != EEXIST) return io_error("create backup directory", rel);
    UniqueFd next(::openat(cur.get(), comp.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!next) return io_error("open backup directory", rel);
    cur = std::move(next);
    at = slash + 1;
  }
  return cur;
}

// A copy of the entry `name` in `from` as `to_name` in `to` (owner, mode, mtime kept), for a
// backup directory on another filesystem.
Status copy_entry(int from, const std::string& name, const struct stat& st, int to, const std::string& to_name,
                  std::string_view rel) {
  if (S_ISLNK(st.st_mode)) {
    std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
    const ssize_t n = ::readlinkat(from, name.c_str(), target.data(), target.size());
    if (n < 0) return io_error("read symlink", rel);
    target.resize(static_cast<size_t>(n));
    if (::symlinkat(target.c_str(), to, to_name.c_str()) != 0) return io_error("back up symlink", rel);
    return {};
  }
  if (!S_ISREG(st.st_mode)) return Error::make(errc::unsupported, q(rel) + ": cannot copy this file type to the backup directory");
  UniqueFd in(::openat(from, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!in) return io_error("open for backup", rel);
  UniqueFd out(::openat(to, to_name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!out) return io_error("create backup of", rel);
  // Plain read/write: copy_file_range refuses most cross-filesystem pairs (EXDEV), the only case
  // that comes here.
  std::vector<char> buf(1 << 20);
  for (;;) {
    const ssize_t n = ::read(in.get(), buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return io_error("read for backup", rel);
    if (n == 0) break;
    for (ssize_t done = 0; done < n;) {
      const ssize_t w = ::write(out.get(), buf.data() + done, static_cast<size_t>(n - done));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return io_error("write backup of", rel);
      done += w;
    }
  }
  const struct timespec ts[2] = {st.st_atim, st.st_mtim};
  const int ofd = out.get();
  SYNCD_TRY(set_owner([ofd](uid_t u, gid_t g) { return ::fchown(ofd, u, g); }, st.st_uid, st.st_gid,
                      "set the owner of the backup of", rel));
  if (::fchmod(out.get(), st.st_mode & 07777) != 0 || ::futimens(out.get(), ts) != 0) {
    return io_error("set metadata of backup of", rel);
  }
  return {};
}

}  // namespace

Result<Backup> Backup::open(const fs::Root& target, const BackupOptions& o) {
  const std::string suffix = o.suffix.value_or(o.dir.empty() ? "~" : "");
  if (o.dir.empty()) {
    if (suffix.empty() || suffix.find('/') != std::string::npos) {
      return Error::make(errc::unsupported, "rsync.suffix \"" + suffix + "\": a backup beside the file needs a suffix without '/'");
    }
    return Backup(target, suffix, "", nullptr);
  }
  std::string in_tree;
  std::string path = o.dir;
  if (path[0] != '/') {
    // Relative: inside the target, as rsync's --backup-dir; it must not climb out.
    while (path.size() > 1 && path.back() == '/') path.pop_back();
    if (path == "." || path.find("..") != std::string::npos) {
      return Error::make(errc::path_rejected, "rsync.backup_dir \"" + o.dir + "\": must be a directory below the target");
    }
    in_tree = path;
    SYNCD_TRY_ASSIGN(d, make_dirs(target.fd(), path));
    (void)d;
    path = target.path() + "/" + path;
  } else if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
    return Error::from_errno("create backup directory " + path);
  }
  SYNCD_TRY_ASSIGN(root, fs::Root::open(path));
  return Backup(target, suffix, in_tree, std::make_unique<fs::Root>(std::move(root)));
}

bool Backup::is_backup(std::string_view rel) const {
  if (!dir_in_tree_.empty()) {
    return rel == dir_in_tree_ || (rel.size() > dir_in_tree_.size() && rel.substr(0, dir_in_tree_.size()) == dir_in_tree_ &&
                                   rel[dir_in_tree_.size()] == '/');
  }
  return !dir_ && rel.size() > suffix_.size() && rel.substr(rel.size() - suffix_.size()) == suffix_;
}

Status Backup::keep(std::string_view rel) const {
  auto parent = target_->parent_of(rel);
  if (!parent.ok()) return parent.error().is_errno(ENOENT) ? Status{} : Status(std::move(parent).error());
  const int from = parent->dir.get();
  const std::string& leaf = parent->leaf;
  struct stat st{};
  if (::fstatat(from, leaf.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return errno == ENOENT ? Status{} : io_error("stat", rel);
  if (S_ISDIR(st.st_mode)) return {};
  const std::string name = leaf + suffix_;
  if (name.size() > 255) return Error::make(errc::limit_exceeded, q(rel) + ": the backup name is longer than 255 bytes");
  UniqueFd dir_fd;
  int to = from;
  if (dir_) {
    const size_t slash = rel.rfind('/');
    SYNCD_TRY_ASSIGN(d, make_dirs(dir_->fd(), slash == std::string_view::npos ? std::string_view() : rel.substr(0, slash)));
    dir_fd = std::move(d);
    to = dir_fd.get();
  }
  // The older backup of this name goes (rsync replaces it too); a directory there is an error.
  if (::unlinkat(to, name.c_str(), 0) != 0 && errno != ENOENT) return io_error("replace the older backup of", rel);
  if (::linkat(from, leaf.c_str(), to, name.c_str(), 0) == 0) return {};
  if (errno != EXDEV) return io_error("back up", rel);
  return copy_entry(from, leaf, st, to, name, rel);
}

}  // namespace syncd::apply
