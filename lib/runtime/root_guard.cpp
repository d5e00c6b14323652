#include "lib/runtime/root_guard.h"

#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "lib/base/log.h"

namespace syncd::runtime {
namespace {

auto& lg() { return log::get(log::Module::runtime); }

// The directory holding `path`'s last component, and that component ("/a/b/" -> "/a", "b").
std::pair<std::string, std::string> split_parent(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return {".", path};
  return {slash == 0 ? "/" : path.substr(0, slash), path.substr(slash + 1)};
}

}  // namespace

RootGuard::RootGuard(std::vector<Watched> roots, OnReplaced on_replaced)
    : roots_(std::move(roots)), on_replaced_(std::move(on_replaced)) {}

std::unique_ptr<RootGuard> RootGuard::start(uvx::Loop& loop, std::vector<Watched> roots, OnReplaced on_replaced) {
  std::unique_ptr<RootGuard> g(new RootGuard(std::move(roots), std::move(on_replaced)));
  RootGuard* self = g.get();
  // Best effort: without it (no inotify instance or watch left) the sync runs as before, and
  // only a mount or unmount makes it look.
  if (auto st = g->watch_parents(loop); !st) {
    lg().warn("a synced root moved or deleted while running will not be noticed: {}", st.error().message());
    g->parents_.reset();
  }
  // Without procfs (a bare container) only the parents' events are seen: no mount-over.
  auto mounts = MountWatch::start(loop, "the synced roots", [self] { self->check_now(); });
  if (mounts.ok()) {
    g->mounts_ = std::move(*mounts);
  } else if (!mounts.error().is_errno(ENOENT)) {
    lg().warn("not watching the mount table for the synced roots: {}", mounts.error().message());
  }
  return g;
}

Status RootGuard::watch_parents(uvx::Loop& loop) {
  SYNCD_TRY_ASSIGN(sub, watch::Subscription::open(loop, [this](const watch::Delivery& d) { on_inotify(d); }));
  parents_ = std::move(sub);
  for (const auto& w : roots_) {
    auto [parent, name] = split_parent(w.root->path());
    names_.push_back(name);
    constexpr uint32_t kMask = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF |
                               IN_ONLYDIR;
    if (auto wd = parents_->add(parent, kMask); !wd) {
      return Error::from_errno("watch " + parent + ", the directory holding " + w.what + " " + w.root->path(),
                               wd.error().code.value());
    }
    // The directories above the parent, for their own move or delete only: an operator moving
    // /opt/acme2certifier aside leaves the root's parent untouched. Their other entries change
    // often (/var, /tmp) and are no business of the guard: no wake-up for them.
    for (std::string dir = split_parent(parent).first; dir != "/" && dir != "."; dir = split_parent(dir).first) {
      if (auto wd = parents_->add(dir, IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR); !wd) {
        lg().warn("{} {}: a move of {} will not be noticed: {}", w.what, w.root->path(), dir, wd.error().message());
        break;
      }
    }
  }
  return {};
}

void RootGuard::on_inotify(const watch::Delivery& d) {
  bool look = false;
  for (const inotify_event* ev : d.events) {
    // A parent moved or deleted (len 0), a lost event, or one about a root's name.
    if (ev->len == 0 || (ev->mask & IN_Q_OVERFLOW) ||
        std::find(names_.begin(), names_.end(), std::string(ev->name)) != names_.end()) {
      look = true;
    }
  }
  if (look) check_now();
}

void RootGuard::check_now() {
  if (fired_) return;
  for (const auto& w : roots_) {
    auto st = w.root->check_identity();
    if (st) continue;
    // A root that cannot be looked at for another reason (EIO, EACCES on an NFS hiccup) is
    // looked at again at the next event; only one that is gone or another directory stops.
    const Error& e = st.error();
    if (!e.is(errc::unexpected_target) && !e.is_errno(ENOENT) && !e.is_errno(ENOTDIR)) {
      lg().debug("root check: {}", e.message());
      continue;
    }
    fired_ = true;
    on_replaced_(w.what + " " + w.root->path() +
                 (e.is(errc::unexpected_target)
                      ? " is another directory than the one this sync opened (moved away and made again, a volume "
                        "mounted over it or unmounted from it, or a symlink pointed elsewhere)"
                      : " is gone (moved away or deleted: " + e.message() + ")"));
    return;  // `this` may be gone
  }
}

}  // namespace syncd::runtime
