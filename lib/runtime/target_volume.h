// File: lib/runtime/target_volume.h
//
// The guard against writing a one-way target into the directory under its unmounted volume.
// A target that was the root of a mount (its own filesystem, or a bind mount) when this node
// last wrote it, and is a plain directory now, is most likely a volume that did not mount: the
// drift repair (receiver.h) would otherwise copy the whole tree into the filesystem below it
// (the root filesystem, as lsyncd's startup rsync does), where it fills the disk and is hidden
// again once the volume mounts. The way back is to mount it; a target that is meant to be a
// plain directory from now on needs its state directory removed (the next start compares the
// trees and sends only what differs).
//
// Thread affinity: call before the receiver starts (it uses the index without the store lock).
#pragma once

#include <string>

#include "lib/base/result.h"
#include "lib/fs/root.h"
#include "lib/store/index.h"

namespace syncd::runtime {

// Whether `root` is the root of a mount (statx STATX_ATTR_MOUNT_ROOT; where the kernel does not
// say, a device different from its parent's).
Result<bool> is_mount_root(const fs::Root& root);

// Checks `root` against what `index` recorded (an error naming the target and `state_dir` if it
// was a mount root and is not now, and the index holds files), then records what it is now.
Status check_target_volume(const fs::Root& root, store::Index& index, const std::string& state_dir);

}  // namespace syncd::runtime
