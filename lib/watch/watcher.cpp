#include "lib/watch/watcher.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <fstream>
#include <unordered_map>
#include <unordered_set>

#include "lib/base/log.h"
#include "protocol/limits.h"
#include "protocol/path.h"

namespace syncd::watch {
namespace {

constexpr uint32_t kMask = IN_CREATE | IN_CLOSE_WRITE | IN_MODIFY | IN_ATTRIB | IN_DELETE |
                           IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF |
                           IN_ONLYDIR | IN_EXCL_UNLINK;
constexpr uint64_t kHeldAtEnd = UINT64_MAX;  // marks a MOVED_FROM that ended its read

bool has(uint32_t mask, uint32_t bits) noexcept { return (mask & bits) != 0; }

bool under(const std::string& path, const std::string& dir) {
  if (dir.empty()) return true;
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
                         path[dir.size()] == '/');
}

std::string child(const std::string& dir, const std::string& name) {
  return dir.empty() ? name : dir + "/" + name;
}

long read_limit() {
  std::ifstream f("/proc/sys/fs/inotify/max_user_watches");
  long v = -1;
  f >> v;
  return v;
}

// Counts the directories at or below `dfd` (for the watch-limit message).
size_t count_dirs(int dfd, int depth = 0) {
  if (depth > 2048) return 0;
  int it = ::openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (it < 0) return 0;
  DIR* d = ::fdopendir(it);
  if (!d) {
    ::close(it);
    return 0;
  }
  size_t n = 1;
  while (struct dirent* e = ::readdir(d)) {
    std::string_view name(e->d_name);
    if (name == "." || name == ".." || e->d_type != DT_DIR) continue;
    int sub = ::openat(dfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0) continue;
    n += count_dirs(sub, depth + 1);
    ::close(sub);
  }
  ::closedir(d);
  return n;
}

}  // namespace

Watcher::Watcher(uvx::Loop& loop, const fs::Root& root, Excludes excludes, Sink sink,
                 WatchOptions opts)
    : loop_(loop), root_(root), excludes_(std::move(excludes)), sink_(std::move(sink)), opts_(opts) {}

Watcher::~Watcher() {
  sub_.reset();  // gives back its watches: the kernel's go with their last subscriber
  timer_.reset();
}

Status Watcher::start() {
  SYNCD_TRY_ASSIGN(sub, Subscription::open(loop_, [this](const Delivery& d) { on_events(d); }));
  sub_ = std::move(sub);
  timer_ = std::make_unique<uvx::Timer>(loop_, [this] { on_timer(); });
  std::vector<std::string> ignored;
  return add_tree("", &ignored);
}

std::string Watcher::join(int wd, const char* name) const {
  auto it = by_wd_.find(wd);
  if (it == by_wd_.end()) return {};
  return child(it->second, name);
}

Status Watcher::add_one(const std::string& rel) {
  SYNCD_TRY_ASSIGN(dir, root_.open_dir(rel));
  // Through the confined fd: whatever the path's components are now, the watch is on the
  // directory we opened beneath the root.
  const std::string proc = "/proc/self/fd/" + std::to_string(dir.get());
  auto added = sub_->add(proc, kMask);
  if (!added.ok()) {
    if (added.error().is_errno(ENOSPC)) {
      const size_t need = by_wd_.size() + count_dirs(dir.get());
      return Error::from_errno(
          "inotify watch limit reached adding \"" + log::escape(rel) + "\": " +
              std::to_string(by_wd_.size()) + " watches in use, about " + std::to_string(need) +
              " needed; fs.inotify.max_user_watches is " + std::to_string(read_limit()) +
              " (raise it: sysctl fs.inotify.max_user_watches=" + std::to_string(need * 2 + 8192) + ")",
          ENOSPC);
    }
    return Error::from_errno("inotify_add_watch \"" + log::escape(rel) + "\"", added.error().code.value());
  }
  const int wd = *added;
  // The same inode may already be watched under an old name (a rename we saw late).
  if (auto old = by_wd_.find(wd); old != by_wd_.end() && old->second != rel) by_path_.erase(old->second);
  by_wd_[wd] = rel;
  by_path_[rel] = wd;
  return {};
}

Status Watcher::add_tree(const std::string& rel, std::vector<std::string>* new_dirs) {
  SYNCD_TRY_ASSIGN(dir, root_.open_dir(rel));
  if (struct stat st{}; !rel.empty() && ::fstat(dir.get(), &st) == 0 && root_.foreign_device(st.st_dev)) {
    return {};  // a mount point under one_file_system: its parent's events cover the directory itself
  }
  SYNCD_TRY(add_one(rel));
  if (new_dirs) new_dirs->push_back(rel);
  DIR* d = ::fdopendir(dir.get());
  if (!d) return Error::from_errno("read directory \"" + log::escape(rel) + "\"");
  (void)dir.release();
  std::vector<std::string> subdirs;
  while (struct dirent* e = ::readdir(d)) {
    std::string_view name(e->d_name);
    if (name == "." || name == ".." || protocol::is_reserved_name(name)) continue;
    bool is_dir = e->d_type == DT_DIR;
    if (e->d_type == DT_UNKNOWN) {
      struct stat st{};
      is_dir = ::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
    }
    if (!is_dir) continue;
    const std::string sub = child(rel, std::string(name));
    if (excludes_.excluded(sub, true)) continue;
    if (sub.size() > protocol::kMaxPath) continue;  // never synced (the walk says so): nothing below is either
    subdirs.push_back(sub);
  }
  ::closedir(d);
  for (const auto& s : subdirs) {
    auto st = add_tree(s, new_dirs);
    // A directory removed or replaced while we walked is not an error: its events say so.
    if (!st.ok() && !st.error().is_errno(ENOENT) && !st.error().is_errno(ENOTDIR) &&
        !st.error().is(errc::path_escape)) {
      return st;
    }
  }
  return {};
}

void Watcher::drop_tree(const std::string& rel) {
  for (auto it = by_path_.begin(); it != by_path_.end();) {
    if (under(it->first, rel)) {
      by_wd_.erase(it->second);
      it = by_path_.erase(it);
    } else {
      ++it;
    }
  }
}

void Watcher::move_tree(const std::string& from, const std::string& to) {
  std::vector<std::pair<std::string, int>> moved;
  for (auto it = by_path_.begin(); it != by_path_.end();) {
    if (under(it->first, from)) {
      moved.emplace_back(to + it->first.substr(from.size()), it->second);
      it = by_path_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& [path, wd] : moved) {
    by_wd_[wd] = path;
    by_path_[path] = wd;
  }
  std::vector<std::pair<std::string, Pending>> pend;
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (under(it->first, from)) {
      pend.emplace_back(to + it->first.substr(from.size()), it->second);
      it = pending_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& [p, v] : pend) pending_[p] = v;
}

void Watcher::flush_held_move(Batch& b) {
  // A MOVED_FROM whose partner never came: moved out of the tree, i.e. removed.
  const uint64_t now = loop_.now_ms();
  for (auto it = held_.begin(); it != held_.end();) {
    if (force_held_ || now - it->at_ms >= opts_.move_pair_ms) {
      if (it->is_dir) {
        for (auto& [path, wd] : by_path_) {
          if (under(path, it->path)) sub_->remove(wd);  // it lives outside now
        }
        drop_tree(it->path);
      }
      pending_.erase(it->path);
      b.events.push_back({Event::Kind::removed, it->path, {}, it->is_dir});
      it = held_.erase(it);
    } else {
      ++it;
    }
  }
}

void Watcher::on_events(const Delivery& d) {
  // Events held back behind a MOVED_FROM that ended the previous read come first.
  Batch b = std::move(deferred_);
  deferred_ = Batch{};
  const uint64_t now = loop_.now_ms();
  // A held MOVED_FROM's partner, if any, is the very next event of the instance, the first of
  // this read: anything else means it left the tree.
  if (!held_.empty() && !(d.starts_read && has(d.events.front()->mask, IN_MOVED_TO) &&
                          d.events.front()->cookie == held_.back().cookie)) {
    force_held_ = true;
    flush_held_move(b);
    force_held_ = false;
  }
  for (size_t i = 0; i < d.events.size(); ++i) {
    const inotify_event* ev = d.events[i];
    const bool ends_read = d.ends_read && i + 1 == d.events.size();
    const uint32_t m = ev->mask;
    if (has(m, IN_Q_OVERFLOW)) {
      log::get(log::Module::watch).warn("inotify queue overflow: rescanning the whole tree");
      b.overflow = true;
      continue;
    }
    if (has(m, IN_IGNORED)) {
      if (auto it = by_wd_.find(ev->wd); it != by_wd_.end()) {
        by_path_.erase(it->second);
        by_wd_.erase(it);
      }
      continue;
    }
    if (ev->len == 0) {  // events about the watched directory itself
      auto it = by_wd_.find(ev->wd);
      if (it != by_wd_.end() && it->second.empty() && has(m, IN_DELETE_SELF | IN_MOVE_SELF)) {
        b.error = "the synced root was removed or moved";
        b.overflow = true;
      }
      if (it != by_wd_.end() && it->second.empty() && has(m, IN_ATTRIB)) b.root_attrib = true;
      continue;
    }
    if (by_wd_.find(ev->wd) == by_wd_.end()) continue;  // a watch we already dropped
    const std::string name(ev->name);
    const bool is_dir = has(m, IN_ISDIR);
    if (protocol::is_reserved_name(name)) continue;  // our temp files and state
    const std::string rel = join(ev->wd, ev->name);
    if (rel.size() > protocol::kMaxPath) {
      // Beyond what a path may be on the wire: a lone MOVED_FROM or MOVED_TO of it becomes a
      // removal or a creation of the name that can be synced, as for a move out of the tree.
      if (too_long_.size() < 1000 && too_long_.insert(rel).second) {
        log::get(log::Module::watch).error("not synced: the path is longer than {} bytes: {}", protocol::kMaxPath,
                                           log::escape_long(rel));
      }
      continue;
    }
    if (!is_dir && !excludes_.per_dir_file().empty() && name == excludes_.per_dir_file()) {
      // Its directory's per-directory rules changed (rsync -C's .cvsignore): entries there
      // may be in or out now; the directory is watched and scanned again with the new ones.
      const size_t slash = rel.rfind('/');
      const std::string dir = slash == std::string::npos ? std::string() : rel.substr(0, slash);
      excludes_.forget(dir);
      if (auto st = add_tree(dir, nullptr); !st.ok()) b.error = st.error().message();
      b.events.push_back({Event::Kind::rescan, dir, {}, true});
    }
    const bool excluded = excludes_.excluded(rel, is_dir);

    if (has(m, IN_MOVED_FROM)) {
      if (!excluded) held_.push_back({ev->cookie, rel, is_dir, ends_read ? kHeldAtEnd : now});
      continue;
    }
    if (has(m, IN_MOVED_TO)) {
      auto h = std::find_if(held_.begin(), held_.end(),
                            [&](const HeldMove& x) { return x.cookie == ev->cookie; });
      if (excluded) {  // its MOVED_FROM, if any, becomes a removal
        if (opts_.on_excluded) opts_.on_excluded(rel, is_dir);
        continue;
      }
      if (h != held_.end()) {
        const std::string from = h->path;
        held_.erase(h);
        if (is_dir) move_tree(from, rel);
        if (auto p = pending_.find(from); p != pending_.end()) {
          pending_[rel] = p->second;
          pending_.erase(p);
        }
        b.events.push_back({Event::Kind::renamed, rel, from, is_dir});
      } else if (is_dir) {  // moved in from outside the tree
        if (auto st = add_tree(rel, nullptr); !st.ok()) b.error = st.error().message();
        b.events.push_back({Event::Kind::rescan, rel, {}, true});
      } else {
        b.events.push_back({Event::Kind::changed, rel, {}, false});
      }
      continue;
    }
    if (excluded) {
      if (has(m, IN_CREATE) && opts_.on_excluded) opts_.on_excluded(rel, is_dir);
      continue;
    }
    if (has(m, IN_CREATE)) {
      if (is_dir) {
        // Watch first, then report: the consumer's walk finds what was written before.
        if (auto st = add_tree(rel, nullptr); !st.ok()) {
          if (st.error().is_errno(ENOSPC)) {
            log::get(log::Module::watch).error("{}", st.error().message());
            b.error = st.error().message();
          }
        }
        b.events.push_back({Event::Kind::rescan, rel, {}, true});
      } else if (being_written(rel)) {
        // open(O_CREAT): its CLOSE_WRITE follows and ships it. Shipping it now would send
        // (and fsync on the peer) an empty or partial version that lives for microseconds.
        auto& p = pending_[rel];
        if (p.first_ms == 0) p.first_ms = now;
        p.last_ms = now;
      } else {
        b.events.push_back({Event::Kind::changed, rel, {}, false});
      }
    } else if (has(m, IN_MODIFY)) {
      auto& p = pending_[rel];
      if (p.first_ms == 0) p.first_ms = now;
      p.last_ms = now;
    } else if (has(m, IN_CLOSE_WRITE)) {
      pending_.erase(rel);
      b.events.push_back({Event::Kind::changed, rel, {}, false, true, false});
    } else if (has(m, IN_ATTRIB)) {
      b.events.push_back({Event::Kind::changed, rel, {}, is_dir, false, true});
    } else if (has(m, IN_DELETE)) {
      pending_.erase(rel);
      if (is_dir) drop_tree(rel);
      b.events.push_back({Event::Kind::removed, rel, {}, is_dir});
    }
  }
  // A rename queues MOVED_FROM and MOVED_TO together, so a MOVED_FROM that is not the last
  // event of the read has no partner: it is a removal, now. One at the very end may have its
  // partner at the start of the next read; then this batch waits for that read (or a few ms)
  // so that nothing after the move overtakes it.
  if (!held_.empty() && held_.back().at_ms == kHeldAtEnd) {
    held_.back().at_ms = now;
    deferred_ = std::move(b);
  } else {
    force_held_ = true;
    flush_held_move(b);
    force_held_ = false;
    emit(std::move(b));
  }
  arm_timer();
}


bool Watcher::being_written(const std::string& rel) const {
  // A regular file with one link that just appeared was made by open(O_CREAT): its writer holds
  // it open (even if bytes are already in), and its CLOSE_WRITE will come. A symlink or a new
  // hard link ships at once; anything else that never closes ships after the settle window.
  auto parent = root_.parent_of(rel);
  if (!parent.ok()) return false;
  struct stat st{};
  if (::fstatat(parent->dir.get(), parent->leaf.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return false;
  return S_ISREG(st.st_mode) && st.st_nlink == 1;
}

void Watcher::emit(Batch b) {
  // Coalesce: one `changed` per path, and nothing under a directory that will be rescanned.
  std::vector<std::string> rescans;
  for (const auto& e : b.events) {
    if (e.kind == Event::Kind::rescan) rescans.push_back(e.path);
  }
  std::unordered_map<std::string, size_t> changed;  // path -> its event in `out`
  std::vector<Event> out;
  out.reserve(b.events.size());
  for (auto& e : b.events) {
    if (e.kind == Event::Kind::changed) {
      const bool covered = std::any_of(rescans.begin(), rescans.end(), [&](const std::string& r) {
        return e.path != r && under(e.path, r);
      });
      if (covered) continue;
      if (auto it = changed.find(e.path); it != changed.end()) {
        Event& kept = out[it->second];  // one event per path: what each of them said
        kept.written = kept.written || e.written;
        kept.attrib_only = kept.attrib_only && e.attrib_only;
        continue;
      }
      changed.emplace(e.path, out.size());
    } else {
      changed.erase(e.path);  // a later change after a removal or rename must show again
    }
    out.push_back(std::move(e));
  }
  b.events = std::move(out);
  if (b.events.empty() && !b.overflow && b.error.empty() && !b.root_attrib) return;
  sink_(std::move(b));
}

void Watcher::arm_timer() {
  if (pending_.empty() && held_.empty()) {
    timer_->stop();
    return;
  }
  const uint64_t now = loop_.now_ms();
  uint64_t due = UINT64_MAX;
  for (const auto& [path, p] : pending_) {
    due = std::min({due, p.last_ms + opts_.settle_ms, p.first_ms + opts_.max_delay_ms});
  }
  for (const auto& h : held_) due = std::min(due, h.at_ms + opts_.move_pair_ms);
  timer_->start(due > now ? due - now : 0);
}

void Watcher::on_timer() {
  Batch b;
  const uint64_t now = loop_.now_ms();
  for (auto it = pending_.begin(); it != pending_.end();) {
    const Pending& p = it->second;
    if (now - p.last_ms >= opts_.settle_ms || now - p.first_ms >= opts_.max_delay_ms) {
      b.events.push_back({Event::Kind::changed, it->first, {}, false, true, false});
      it = pending_.erase(it);
    } else {
      ++it;
    }
  }
  // The partner of a MOVED_FROM that ended a read never came: the deferred batch goes first.
  if (!held_.empty() || !deferred_.events.empty()) {
    Batch d = std::move(deferred_);
    deferred_ = Batch{};
    force_held_ = !held_.empty() && now - held_.back().at_ms >= opts_.move_pair_ms;
    flush_held_move(d);
    force_held_ = false;
    if (!held_.empty()) {
      deferred_ = std::move(d);  // still waiting
    } else {
      d.events.insert(d.events.end(), std::make_move_iterator(b.events.begin()),
                      std::make_move_iterator(b.events.end()));
      d.overflow |= b.overflow;
      b = std::move(d);
    }
  }
  emit(std::move(b));
  arm_timer();
}

std::vector<std::pair<int, std::string>> Watcher::watches() const {
  std::vector<std::pair<int, std::string>> v(by_wd_.begin(), by_wd_.end());
  std::sort(v.begin(), v.end());
  return v;
}

}  // namespace syncd::watch
