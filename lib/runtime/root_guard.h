// File: lib/runtime/root_guard.h
//
// Notices that a synced root was replaced under a running node: the directory at the configured
// path is no longer the one the node opened (moved away, deleted, made again, a volume mounted
// over it or unmounted from it, a symlink pointed elsewhere). The node works through the fd it
// opened, so it would go on syncing a directory nobody looks at, or fail every apply with ENOENT,
// while the directory at the path is never synced. Its owner stops the node and starts it again
// on the path (syncd/main.cpp), which compares the trees as any start does.
//
// Event-driven, so an idle node sleeps: an inotify watch on each root's parent directory (a name
// there moved, deleted or made), one on each directory above it (moved or deleted itself: the
// events of their other entries would wake the node for nothing) and the mount table (/proc/self/mountinfo polls POLLPRI on every
// mount and unmount). Each event makes it compare the path's device and inode with the open root.
// Thread affinity: loop thread.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "lib/base/result.h"
#include "lib/fs/root.h"
#include "lib/runtime/mount_watch.h"
#include "lib/uvx/uvx.h"
#include "lib/watch/inotify_hub.h"

namespace syncd::runtime {

class RootGuard {
 public:
  struct Watched {
    const fs::Root* root;
    std::string what;  // "the source", "the target"
  };
  using OnReplaced = std::function<void(const std::string& why)>;
  // Calls `on_replaced` once, with the reason, on the loop thread. The roots must outlive it.
  // What it cannot watch (no inotify instance or watch left, no procfs) is logged, not an error.
  static std::unique_ptr<RootGuard> start(uvx::Loop& loop, std::vector<Watched> roots, OnReplaced on_replaced);
  RootGuard(const RootGuard&) = delete;
  RootGuard& operator=(const RootGuard&) = delete;
  void check_now();

 private:
  RootGuard(std::vector<Watched> roots, OnReplaced on_replaced);
  Status watch_parents(uvx::Loop& loop);
  void on_inotify(const watch::Delivery& d);

  std::vector<Watched> roots_;
  std::vector<std::string> names_;  // each root's last component, as its parent's events name it
  OnReplaced on_replaced_;
  bool fired_ = false;
  std::unique_ptr<watch::Subscription> parents_;  // the loop's shared inotify instance
  std::unique_ptr<MountWatch> mounts_;
};

}  // namespace syncd::runtime
