#include "lib/runtime/target_volume.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

namespace syncd::runtime {

namespace {
constexpr int64_t kPlainDir = 1, kMountRoot = 2;
}

Result<bool> is_mount_root(const fs::Root& root) {
  struct statx sx{};
  if (::statx(root.fd(), "", AT_EMPTY_PATH, STATX_BASIC_STATS, &sx) != 0) {
    return Error::from_errno("statx " + root.path());
  }
  if (sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) return (sx.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0;
  struct stat parent{};
  if (::fstatat(root.fd(), "..", &parent, 0) != 0) return Error::from_errno("stat the parent of " + root.path());
  return makedev(sx.stx_dev_major, sx.stx_dev_minor) != parent.st_dev;
}

Status check_target_volume(const fs::Root& root, store::Index& index, const std::string& state_dir) {
  SYNCD_TRY_ASSIGN(mounted, is_mount_root(root));
  SYNCD_TRY_ASSIGN(was, index.root_mount());
  if (was == kMountRoot && !mounted) {
    SYNCD_TRY_ASSIGN(files, index.live_count());
    if (files > 0) {
      return Error::make(errc::wrong_volume,
                         "the directory " + root.path() + " was the root of a mounted filesystem when this node last wrote it (" +
                             std::to_string(files) + " entries) and is a plain directory now: is its volume mounted? "
                             "Nothing is written into it. Mount it; if it is meant to be a plain directory from now on, "
                             "remove the state directory " + state_dir + " (the next start is a first start: it compares the "
                             "trees and sends only what differs)");
    }
  }
  const int64_t now = mounted ? kMountRoot : kPlainDir;
  if (was != now) SYNCD_TRY(index.set_root_mount(now));
  return {};
}

}  // namespace syncd::runtime
