// File: lib/watch/watcher.h
//
// Watcher: recursive inotify on the libuv loop for one synced root (DESIGN.md §4).
//   - Every directory not excluded is watched; its watch is added through a confined fd
//     (fs::Root, /proc/self/fd/N), so a swapped symlink never puts a watch outside the root.
//     A new directory is watched *then* reported for a rescan, so files created in it before the
//     watch existed are found by the walk.
//   - Everything one read() of the inotify fd returns becomes one Batch, delivered at once: no
//     timer on the common path. Duplicates merge; MOVED_FROM/MOVED_TO pair by cookie into a
//     rename (a lone MOVED_FROM waits a few ms for its partner across reads, then is a removal;
//     a lone MOVED_TO is a create); directory renames move their watches.
//   - A file written but not yet closed (IN_MODIFY without IN_CLOSE_WRITE) is held until it is
//     closed, or until no write was seen for `settle_ms`, or at most `max_delay_ms` after the
//     first write, so a log that is never closed still ships. A regular file just created by
//     open(O_CREAT) counts as written-but-not-closed (one lstat on the loop decides), so it ships
//     once, with its content, at its CLOSE_WRITE.
//   - IN_Q_OVERFLOW: a warning and a Batch with `overflow` set (the consumer rescans everything).
//     ENOSPC from inotify_add_watch: Batch::error names fs.inotify.max_user_watches and the count
//     needed; the directory is reported, never silently unwatched.
//   - syncd's reserved names (.syncd, .syncd.*) and excluded paths produce no events.
// Thread affinity: loop thread only.
//
//   Watcher w(loop, root, excludes, [&](watch::Batch b) { engine.local(std::move(b)); });
//   SYNCD_TRY(w.start());   // watches the whole tree; the caller then does its initial scan
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "lib/base/result.h"
#include "lib/base/unique_fd.h"
#include "lib/fs/root.h"
#include "lib/uvx/uvx.h"
#include "lib/watch/exclude.h"
#include "lib/watch/inotify_hub.h"

namespace syncd::watch {

struct Event {
  enum class Kind : uint8_t {
    changed,  // look at `path` (created, written and closed, attributes changed)
    removed,  // `path` is gone (for a directory: with everything below it)
    renamed,  // `from` became `path` (for a directory: with everything below it)
    rescan,   // walk the subtree at `path` (a directory that appeared or moved in)
  };
  Kind kind = Kind::changed;
  std::string path;
  std::string from;  // renamed only
  bool is_dir = false;
  // changed only, for consumers that report lsyncd's event types (the sender rescans anyway):
  // the file was closed after writing (lsyncd's Modify), or only its attributes changed (Attrib).
  bool written = false;
  bool attrib_only = false;
  bool operator==(const Event&) const = default;
};

struct Batch {
  std::vector<Event> events;
  bool overflow = false;  // the kernel dropped events: rescan the whole tree
  std::string error;      // a watch could not be added (e.g. the watch limit); see the text
  bool root_attrib = false;  // the root directory's own owner, mode or times changed
};

struct WatchOptions {
  uint32_t settle_ms = 20;     // quiet time after the last write of a file still open
  uint32_t max_delay_ms = 1000;  // cap on how long such a file is held
  uint32_t move_pair_ms = 5;   // how long a lone MOVED_FROM waits for its MOVED_TO
  // Loop thread: an excluded entry appeared (created or moved in); it gets no event.
  std::function<void(const std::string& rel, bool is_dir)> on_excluded;
};

class Watcher {
 public:
  using Sink = std::function<void(Batch)>;
  Watcher(uvx::Loop& loop, const fs::Root& root, Excludes excludes, Sink sink,
          WatchOptions opts = {});
  ~Watcher();
  Watcher(const Watcher&) = delete;
  Watcher& operator=(const Watcher&) = delete;

  // Joins the loop's inotify instance (inotify_hub.h) and watches the whole tree.
  Status start();
  size_t watch_count() const noexcept { return by_wd_.size(); }
  // (watch descriptor, directory relative to the root: "" for the root), for lsyncd's status file.
  std::vector<std::pair<int, std::string>> watches() const;
  // Paths held because they are still open for writing.
  size_t pending_count() const noexcept { return pending_.size(); }

 private:
  struct Pending {
    uint64_t first_ms = 0;
    uint64_t last_ms = 0;
  };
  struct HeldMove {
    uint32_t cookie = 0;
    std::string path;
    bool is_dir = false;
    uint64_t at_ms = 0;
  };

  Status add_tree(const std::string& rel, std::vector<std::string>* new_dirs);
  Status add_one(const std::string& rel);
  void drop_tree(const std::string& rel);
  void move_tree(const std::string& from, const std::string& to);
  void on_events(const Delivery& d);
  void flush_held_move(Batch& b);
  void on_timer();
  void arm_timer();
  void emit(Batch b);
  bool being_written(const std::string& rel) const;
  std::string join(int wd, const char* name) const;

  uvx::Loop& loop_;
  const fs::Root& root_;
  Excludes excludes_;
  Sink sink_;
  WatchOptions opts_;
  std::unique_ptr<Subscription> sub_;
  std::unique_ptr<uvx::Timer> timer_;
  std::unordered_map<int, std::string> by_wd_;
  std::unordered_map<std::string, int> by_path_;
  std::unordered_map<std::string, Pending> pending_;
  std::vector<HeldMove> held_;
  Batch deferred_;           // events held back behind a MOVED_FROM awaiting its partner
  bool force_held_ = false;  // flush every held MOVED_FROM regardless of age
  std::unordered_set<std::string> too_long_;  // paths over protocol::kMaxPath already logged
};

}  // namespace syncd::watch
