// File: lib/watch/inotify_hub.h
//
// One inotify instance per loop, shared by every watcher and root guard on it. The kernel allows
// a user fs.inotify.max_user_instances instances (128 by default, shared with every other process
// of that user) but max_user_watches watches; an instance per sync (and one per root guard)
// stopped a config at its 65th sync ("inotify_init1: Too many open files"), where lsyncd runs
// any number on one.
//
// Each Subscription adds watches and receives, after every read() of the instance, the events
// of its own watches in the kernel's order (a read is one batch for the watcher's rename
// pairing). Sharing has three consequences handled here:
//   - the kernel gives one inode one watch descriptor per instance: two subscribers watching a
//     directory (nested or overlapping syncs, a guard on a synced directory) share it. Masks are
//     merged (IN_MASK_ADD), each subscriber sees only its own event types, and the watch is
//     removed from the kernel when its last subscriber lets go;
//   - IN_Q_OVERFLOW concerns everyone: every subscriber receives it;
//   - every subscriber hears of every read, with no events if none was its, and whether its
//     events began and ended the read: a MOVED_FROM ending a read may find its MOVED_TO at the
//     start of the next one, and only there.
// A subscriber may destroy itself or others from inside its handler.
// Thread affinity: loop thread (the registry behind of() is locked, for tests with many loops).
#pragma once

#include <sys/inotify.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "lib/base/result.h"
#include "lib/base/unique_fd.h"
#include "lib/uvx/uvx.h"

namespace syncd::watch {

class InotifyHub;

struct Delivery {
  std::vector<const inotify_event*> events;  // valid during the handler call only
  bool starts_read = false;  // events[0] was the read's first event
  bool ends_read = false;    // events.back() was the read's last event
};

class Subscription {
 public:
  using Handler = std::function<void(const Delivery&)>;
  // One per loop, made on first use. Fails (naming fs.inotify.max_user_instances) when the
  // kernel gives no instance.
  static Result<std::unique_ptr<Subscription>> open(uvx::Loop& loop, Handler handler);
  ~Subscription();
  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;

  // inotify_add_watch with `mask` added to what others asked of the same inode; the kernel's
  // errno (ENOSPC: the watch limit) is in the error.
  Result<int> add(const std::string& path, uint32_t mask);
  // This subscriber no longer wants `wd`'s events; the kernel watch goes with its last one.
  void remove(int wd);

 private:
  friend class InotifyHub;
  Subscription(std::shared_ptr<InotifyHub> hub, uint64_t id) : hub_(std::move(hub)), id_(id) {}
  std::shared_ptr<InotifyHub> hub_;
  uint64_t id_;
};

class InotifyHub : public std::enable_shared_from_this<InotifyHub> {
 public:
  ~InotifyHub();
  InotifyHub(const InotifyHub&) = delete;
  InotifyHub& operator=(const InotifyHub&) = delete;

 private:
  friend class Subscription;
  struct Sub {
    std::shared_ptr<Subscription::Handler> handler;
    std::map<int, uint32_t> masks;  // wd -> event types it asked for
  };
  InotifyHub() = default;
  static Result<std::shared_ptr<InotifyHub>> of(uvx::Loop& loop);
  uint64_t subscribe(Subscription::Handler h);
  void unsubscribe(uint64_t id);
  Result<int> add(uint64_t id, const std::string& path, uint32_t mask);
  void remove(uint64_t id, int wd);
  void release(int wd);  // no subscriber left on it
  void on_readable();

  UniqueFd fd_;
  std::unique_ptr<uvx::Poll> poll_;
  std::vector<uint8_t> buf_;
  uint64_t next_id_ = 1;
  std::map<uint64_t, Sub> subs_;                       // ordered: delivery order is subscription order
  std::unordered_map<int, std::set<uint64_t>> by_wd_;  // wd -> its subscribers
};

}  // namespace syncd::watch
