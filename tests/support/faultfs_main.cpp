// File: tests/support/faultfs_main.cpp
//
// syncd_faultfs BACKING MOUNTPOINT RULES: a FUSE passthrough of BACKING at MOUNTPOINT that fails
// chosen operations with a chosen errno, so tests can see what syncd does when a disk returns
// EIO (SECURITY.md §8 #28) on a kernel without device-mapper or fault injection.
//
// RULES is a file outside the mount, re-read whenever it changes; each line is
//   OP ERRNO SUBSTRING     e.g.  "fsync EIO victim"  or  "read EIO .pem"
// and makes OP fail with ERRNO (a number or EIO/ENOSPC/EROFS/EPERM/EACCES) for every path whose
// last component contains SUBSTRING. OP is one of read, write, fsync, open, create, rename
// (matched against the destination), unlink, stat (a lookup or stat by name), readdir. An empty file fails nothing. Each injected failure
// is written to stderr as "fault: OP ERRNO PATH", so a test can tell a fault fired.
//
// Attribute and entry caching is off and inode numbers pass through, so syncd sees the backing
// files as they are; unlinking an open file removes it (no .fuse_hidden names in the tree).
#define FUSE_USE_VERSION 31

#include <fuse3/fuse.h>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

namespace {

std::string g_backing;
std::string g_rules_path;

struct Rule {
  std::string op;
  int err = EIO;
  std::string needle;
};

std::mutex g_mu;
std::vector<Rule> g_rules;
timespec g_rules_mtime{};
off_t g_rules_size = -1;
ino_t g_rules_ino = 0;

int errno_named(const std::string& s) {
  if (s == "EIO") return EIO;
  if (s == "ENOSPC") return ENOSPC;
  if (s == "EROFS") return EROFS;
  if (s == "EPERM") return EPERM;
  if (s == "EACCES") return EACCES;
  const int n = std::atoi(s.c_str());
  return n > 0 ? n : EIO;
}

// Re-reads RULES when it changed (tests replace it by a rename: a new inode each time).
void reload_rules() {
  struct stat st{};
  if (::stat(g_rules_path.c_str(), &st) != 0) {
    g_rules.clear();
    g_rules_size = -1;
    return;
  }
  if (st.st_ino == g_rules_ino && st.st_size == g_rules_size && st.st_mtim.tv_sec == g_rules_mtime.tv_sec &&
      st.st_mtim.tv_nsec == g_rules_mtime.tv_nsec) {
    return;
  }
  g_rules_ino = st.st_ino;
  g_rules_size = st.st_size;
  g_rules_mtime = st.st_mtim;
  g_rules.clear();
  std::ifstream in(g_rules_path);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    Rule r;
    std::string err;
    if (ls >> r.op >> err >> r.needle) {
      r.err = errno_named(err);
      g_rules.push_back(r);
    }
  }
}

// 0, or the negative errno a rule injects for `op` on `path`.
int fault(const char* op, const char* path) {
  const char* slash = std::strrchr(path, '/');
  const std::string leaf = slash != nullptr ? slash + 1 : path;
  std::lock_guard lk(g_mu);
  reload_rules();
  for (const auto& r : g_rules) {
    if (r.op == op && (r.needle == "*" || leaf.find(r.needle) != std::string::npos)) {
      std::fprintf(stderr, "fault: %s %d %s\n", op, r.err, path);
      std::fflush(stderr);
      return -r.err;
    }
  }
  return 0;
}

std::string real(const char* path) { return g_backing + path; }

int neg(int rc) { return rc == 0 ? 0 : -errno; }

void* ff_init(fuse_conn_info*, fuse_config* cfg) {
  cfg->use_ino = 1;
  cfg->entry_timeout = 0;
  cfg->attr_timeout = 0;
  cfg->negative_timeout = 0;
  cfg->hard_remove = 1;
  return nullptr;
}

int ff_getattr(const char* path, struct stat* st, fuse_file_info* fi) {
  if (int f = fi == nullptr ? fault("stat", path) : 0) return f;
  if (fi != nullptr) return neg(::fstat(static_cast<int>(fi->fh), st));
  return neg(::lstat(real(path).c_str(), st));
}

int ff_readlink(const char* path, char* buf, size_t size) {
  const ssize_t n = ::readlink(real(path).c_str(), buf, size - 1);
  if (n < 0) return -errno;
  buf[n] = '\0';
  return 0;
}

int ff_mknod(const char* path, mode_t mode, dev_t rdev) { return neg(::mknod(real(path).c_str(), mode, rdev)); }
int ff_mkdir(const char* path, mode_t mode) { return neg(::mkdir(real(path).c_str(), mode)); }

int ff_unlink(const char* path) {
  if (int f = fault("unlink", path)) return f;
  return neg(::unlink(real(path).c_str()));
}

int ff_rmdir(const char* path) { return neg(::rmdir(real(path).c_str())); }
int ff_symlink(const char* target, const char* path) { return neg(::symlink(target, real(path).c_str())); }

int ff_rename(const char* from, const char* to, unsigned int flags) {
  if (int f = fault("rename", to)) return f;
  return neg(::renameat2(AT_FDCWD, real(from).c_str(), AT_FDCWD, real(to).c_str(), flags));
}

int ff_link(const char* from, const char* to) { return neg(::link(real(from).c_str(), real(to).c_str())); }

int ff_chmod(const char* path, mode_t mode, fuse_file_info* fi) {
  if (fi != nullptr) return neg(::fchmod(static_cast<int>(fi->fh), mode));
  return neg(::fchmodat(AT_FDCWD, real(path).c_str(), mode, 0));
}

int ff_chown(const char* path, uid_t uid, gid_t gid, fuse_file_info* fi) {
  if (int f = fault("chown", path != nullptr ? path : "")) return f;
  if (fi != nullptr) return neg(::fchown(static_cast<int>(fi->fh), uid, gid));
  return neg(::lchown(real(path).c_str(), uid, gid));
}

int ff_truncate(const char* path, off_t size, fuse_file_info* fi) {
  if (fi != nullptr) return neg(::ftruncate(static_cast<int>(fi->fh), size));
  return neg(::truncate(real(path).c_str(), size));
}

int ff_utimens(const char* path, const timespec tv[2], fuse_file_info* fi) {
  if (fi != nullptr) return neg(::futimens(static_cast<int>(fi->fh), tv));
  return neg(::utimensat(AT_FDCWD, real(path).c_str(), tv, AT_SYMLINK_NOFOLLOW));
}

int ff_open(const char* path, fuse_file_info* fi) {
  if (int f = fault("open", path)) return f;
  const int fd = ::open(real(path).c_str(), fi->flags);
  if (fd < 0) return -errno;
  fi->fh = static_cast<uint64_t>(fd);
  return 0;
}

int ff_create(const char* path, mode_t mode, fuse_file_info* fi) {
  if (int f = fault("create", path)) return f;
  const int fd = ::open(real(path).c_str(), fi->flags | O_CREAT, mode);
  if (fd < 0) return -errno;
  fi->fh = static_cast<uint64_t>(fd);
  return 0;
}

int ff_read(const char* path, char* buf, size_t size, off_t off, fuse_file_info* fi) {
  if (int f = fault("read", path)) return f;
  const ssize_t n = ::pread(static_cast<int>(fi->fh), buf, size, off);
  return n < 0 ? -errno : static_cast<int>(n);
}

int ff_write(const char* path, const char* buf, size_t size, off_t off, fuse_file_info* fi) {
  if (int f = fault("write", path)) return f;
  const ssize_t n = ::pwrite(static_cast<int>(fi->fh), buf, size, off);
  return n < 0 ? -errno : static_cast<int>(n);
}

int ff_statfs(const char* path, struct statvfs* st) { return neg(::statvfs(real(path).c_str(), st)); }

int ff_flush(const char*, fuse_file_info* fi) {
  // close() of a dup reports write-back errors the way a close on the backing file would.
  const int fd = ::dup(static_cast<int>(fi->fh));
  if (fd < 0) return -errno;
  return neg(::close(fd));
}

int ff_release(const char*, fuse_file_info* fi) {
  ::close(static_cast<int>(fi->fh));
  return 0;
}

int ff_fsync(const char* path, int datasync, fuse_file_info* fi) {
  if (int f = fault("fsync", path)) return f;
  const int fd = static_cast<int>(fi->fh);
  return neg(datasync != 0 ? ::fdatasync(fd) : ::fsync(fd));
}

int ff_opendir(const char* path, fuse_file_info* fi) {
  DIR* d = ::opendir(real(path).c_str());
  if (d == nullptr) return -errno;
  fi->fh = reinterpret_cast<uint64_t>(d);
  return 0;
}

int ff_readdir(const char* path, void* buf, fuse_fill_dir_t fill, off_t, fuse_file_info* fi, fuse_readdir_flags) {
  if (int f = fault("readdir", path)) return f;
  DIR* d = reinterpret_cast<DIR*>(fi->fh);
  ::rewinddir(d);
  while (dirent* e = ::readdir(d)) {
    struct stat st{};
    st.st_ino = e->d_ino;
    st.st_mode = static_cast<mode_t>(DTTOIF(e->d_type));
    if (fill(buf, e->d_name, &st, 0, static_cast<fuse_fill_dir_flags>(0)) != 0) break;
  }
  return 0;
}

int ff_releasedir(const char*, fuse_file_info* fi) {
  ::closedir(reinterpret_cast<DIR*>(fi->fh));
  return 0;
}

int ff_fsyncdir(const char* path, int, fuse_file_info*) {
  if (int f = fault("fsync", path)) return f;
  const int fd = ::open(real(path).c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return -errno;
  const int rc = neg(::fsync(fd));
  ::close(fd);
  return rc;
}

int ff_setxattr(const char* path, const char* name, const char* value, size_t size, int flags) {
  return neg(::lsetxattr(real(path).c_str(), name, value, size, flags));
}

int ff_getxattr(const char* path, const char* name, char* value, size_t size) {
  const ssize_t n = ::lgetxattr(real(path).c_str(), name, value, size);
  return n < 0 ? -errno : static_cast<int>(n);
}

int ff_listxattr(const char* path, char* list, size_t size) {
  const ssize_t n = ::llistxattr(real(path).c_str(), list, size);
  return n < 0 ? -errno : static_cast<int>(n);
}

int ff_removexattr(const char* path, const char* name) { return neg(::lremovexattr(real(path).c_str(), name)); }

int ff_access(const char* path, int mask) { return neg(::faccessat(AT_FDCWD, real(path).c_str(), mask, AT_SYMLINK_NOFOLLOW)); }

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s BACKING MOUNTPOINT RULES\n", argv[0]);
    return 2;
  }
  g_backing = argv[1];
  g_rules_path = argv[3];
  ::umask(0);  // the modes callers ask for are passed on as they are
  fuse_operations ops{};
  ops.init = ff_init;
  ops.getattr = ff_getattr;
  ops.readlink = ff_readlink;
  ops.mknod = ff_mknod;
  ops.mkdir = ff_mkdir;
  ops.unlink = ff_unlink;
  ops.rmdir = ff_rmdir;
  ops.symlink = ff_symlink;
  ops.rename = ff_rename;
  ops.link = ff_link;
  ops.chmod = ff_chmod;
  ops.chown = ff_chown;
  ops.truncate = ff_truncate;
  ops.utimens = ff_utimens;
  ops.open = ff_open;
  ops.create = ff_create;
  ops.read = ff_read;
  ops.write = ff_write;
  ops.statfs = ff_statfs;
  ops.flush = ff_flush;
  ops.release = ff_release;
  ops.fsync = ff_fsync;
  ops.opendir = ff_opendir;
  ops.readdir = ff_readdir;
  ops.releasedir = ff_releasedir;
  ops.fsyncdir = ff_fsyncdir;
  ops.setxattr = ff_setxattr;
  ops.getxattr = ff_getxattr;
  ops.listxattr = ff_listxattr;
  ops.removexattr = ff_removexattr;
  ops.access = ff_access;
  // Foreground, multi-threaded; root mounts it for root's tests, permissions checked by the kernel.
  std::vector<std::string> args = {argv[0], "-f", "-o", "default_permissions,allow_other,fsname=syncd_faultfs",
                                   argv[2]};
  std::vector<char*> cargs;
  for (auto& a : args) cargs.push_back(a.data());
  return fuse_main(static_cast<int>(cargs.size()), cargs.data(), &ops, nullptr);
}
