// File: lib/runtime/mount_watch.h
//
// Calls back on every mount and unmount in this process's mount namespace: /proc/self/mountinfo
// polls POLLPRI on each change (proc(5)). Used by RootGuard (a volume mounted over a running
// root, or unmounted from it) and by the daemon for a halted sync, which starts again as soon
// as a volume is mounted instead of at its next timed retry.
// Thread affinity: loop thread.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "lib/base/result.h"
#include "lib/base/unique_fd.h"
#include "lib/uvx/uvx.h"

namespace syncd::runtime {

class MountWatch {
 public:
  // `what` names the user in log lines ("the synced roots"). Fails without procfs (a bare
  // container). A kernel that reports changes without end (over 1000 a second) is no longer
  // watched, with a warning: it would spin the loop.
  static Result<std::unique_ptr<MountWatch>> start(uvx::Loop& loop, std::string what, std::function<void()> on_change);
  MountWatch(const MountWatch&) = delete;
  MountWatch& operator=(const MountWatch&) = delete;

 private:
  MountWatch(std::string what, std::function<void()> on_change);
  void on_poll(int status);

  std::string what_;
  std::function<void()> on_change_;
  UniqueFd fd_;
  std::unique_ptr<uvx::Poll> poll_;
  uint64_t burst_start_us_ = 0;  // reports in the current second
  uint32_t burst_ = 0;
};

}  // namespace syncd::runtime
