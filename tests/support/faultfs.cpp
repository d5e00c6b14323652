// File: tests/support/faultfs.cpp
#include "tests/support/faultfs.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/sysmacros.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "tests/support/tmpdir.h"

#ifndef SYNCD_FAULTFS
#error "SYNCD_FAULTFS (the path of syncd_faultfs) must be defined"
#endif

namespace syncd::test {
namespace {

bool is_mount_point(const std::string& path) {
  struct stat a{}, b{};
  return ::stat(path.c_str(), &a) == 0 && ::stat((path + "/..").c_str(), &b) == 0 && a.st_dev != b.st_dev;
}

// Waits until `mnt` is a mount point or `child` exited: woken by the kernel on every change of the
// mount table (poll on /proc/self/mountinfo), not by a timer.
bool wait_mounted(const std::string& mnt, pid_t child, int timeout_ms) {
  const int fd = ::open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  bool ok = false;
  char buf[4096];
  for (;;) {
    // Reading it to the end re-arms the notification.
    ::lseek(fd, 0, SEEK_SET);
    while (::read(fd, buf, sizeof buf) > 0) {
    }
    if (is_mount_point(mnt)) {
      ok = true;
      break;
    }
    if (::kill(child, 0) != 0) break;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLPRI, 0};
    // The child may fail without changing the mount table: wake at least every 100 ms to see it.
    ::poll(&p, 1, static_cast<int>(std::min<long>(left.count(), 100)));
  }
  ::close(fd);
  return ok;
}

}  // namespace

FaultFs::FaultFs(const std::string& backing, const std::string& mountpoint, const std::string& work)
    : mnt_(mountpoint), rules_(work + "/faultfs.rules"), log_(work + "/faultfs.log") {
  require_root();
  // A kernel with FUSE built in has the device; a minimal /dev may lack the node.
  if (::access("/dev/fuse", F_OK) != 0) (void)::mknod("/dev/fuse", S_IFCHR | 0666, makedev(10, 229));
  if (const int probe = ::open("/dev/fuse", O_RDWR | O_CLOEXEC); probe >= 0) {
    ::close(probe);
  } else {
    // As for sshd: skipped here, and CI (which fails on any skip) must have it.
    std::fprintf(stderr, "SKIP: this test needs FUSE (/dev/fuse: %s)\n", std::strerror(errno));
    std::exit(77);
  }
  ::mkdir(mnt_.c_str(), 0755);
  write_rules();
  proc_ = std::make_unique<Child>(std::vector<std::string>{SYNCD_FAULTFS, backing, mnt_, rules_}, log_);
  mounted_ = wait_mounted(mnt_, proc_->pid(), 20000);
  REQUIRE_MESSAGE(mounted_, "the FUSE fault injector did not mount " << mnt_ << ": " << read_file(log_));
}

FaultFs::~FaultFs() {
  // Detach first: the injector's exit then cannot leave a dead mount that later path walks (the
  // TempDir's removal) would trip over.
  if (mounted_) ::umount2(mnt_.c_str(), MNT_DETACH);
  if (proc_) proc_->stop_within(SIGTERM, 5000);
}

void FaultFs::write_rules() {
  // Renamed into place: the injector never reads a half-written file, and the new inode tells it
  // the rules changed.
  const std::string tmp = rules_ + ".new";
  write_file(tmp, text_);
  REQUIRE(::rename(tmp.c_str(), rules_.c_str()) == 0);
}

void FaultFs::fail(const std::string& op, const std::string& err, const std::string& needle) {
  text_ += op + " " + err + " " + needle + "\n";
  write_rules();
}

void FaultFs::clear() {
  text_.clear();
  write_rules();
}

size_t FaultFs::injected() const { return count_text(log_, "fault: "); }

}  // namespace syncd::test
