#include "lib/watch/inotify_hub.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <mutex>

#include "lib/base/log.h"

namespace syncd::watch {
namespace {

constexpr size_t kReadBuffer = 256 * 1024;

long instance_limit() {
  std::ifstream f("/proc/sys/fs/inotify/max_user_instances");
  long v = -1;
  f >> v;
  return v;
}

// Loop -> its hub while any subscription holds it. Locked: tests run loops on several threads.
std::mutex registry_mu;
std::unordered_map<uvx::Loop*, std::weak_ptr<InotifyHub>>& registry() {
  static std::unordered_map<uvx::Loop*, std::weak_ptr<InotifyHub>> r;
  return r;
}

}  // namespace

Result<std::unique_ptr<Subscription>> Subscription::open(uvx::Loop& loop, Handler handler) {
  SYNCD_TRY_ASSIGN(hub, InotifyHub::of(loop));
  const uint64_t id = hub->subscribe(std::move(handler));
  return std::unique_ptr<Subscription>(new Subscription(std::move(hub), id));
}

Subscription::~Subscription() { hub_->unsubscribe(id_); }

Result<int> Subscription::add(const std::string& path, uint32_t mask) { return hub_->add(id_, path, mask); }

void Subscription::remove(int wd) { hub_->remove(id_, wd); }

Result<std::shared_ptr<InotifyHub>> InotifyHub::of(uvx::Loop& loop) {
  std::lock_guard lk(registry_mu);
  auto& r = registry();
  for (auto it = r.begin(); it != r.end();) it = it->second.expired() ? r.erase(it) : std::next(it);
  if (auto it = r.find(&loop); it != r.end()) return it->second.lock();
  std::shared_ptr<InotifyHub> hub(new InotifyHub());
  hub->fd_ = UniqueFd(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (!hub->fd_) {
    const int err = errno;
    if (err == EMFILE) {
      return Error::from_errno("inotify_init1: every inotify instance this user may have is in use "
                               "(fs.inotify.max_user_instances is " + std::to_string(instance_limit()) +
                                   ", shared with the user's other processes; syncd needs one: raise it, "
                                   "sysctl fs.inotify.max_user_instances=" + std::to_string(instance_limit() * 2) + ")",
                               err);
    }
    return Error::from_errno("inotify_init1", err);
  }
  hub->buf_.resize(kReadBuffer);
  InotifyHub* self = hub.get();
  hub->poll_ = std::make_unique<uvx::Poll>(loop, hub->fd_.get(), [self](int status, int) {
    if (status < 0) {
      log::get(log::Module::watch).error("inotify poll failed: {}", uv_strerror(status));
      return;
    }
    self->on_readable();
  });
  SYNCD_TRY(hub->poll_->start(UV_READABLE));
  r[&loop] = hub;
  return hub;
}

InotifyHub::~InotifyHub() {
  poll_.reset();  // before the fd closes (libuv poll.rst); closing the fd drops every watch
}

uint64_t InotifyHub::subscribe(Subscription::Handler h) {
  const uint64_t id = next_id_++;
  subs_[id].handler = std::make_shared<Subscription::Handler>(std::move(h));
  return id;
}

void InotifyHub::unsubscribe(uint64_t id) {
  auto it = subs_.find(id);
  if (it == subs_.end()) return;
  const auto masks = std::move(it->second.masks);
  subs_.erase(it);
  for (const auto& [wd, mask] : masks) {
    auto w = by_wd_.find(wd);
    if (w == by_wd_.end()) continue;
    w->second.erase(id);
    if (w->second.empty()) release(wd);
  }
}

Result<int> InotifyHub::add(uint64_t id, const std::string& path, uint32_t mask) {
  // IN_MASK_ADD: a second subscriber on the same inode must not narrow the first one's events.
  // (The kernel's mask only grows; a subscriber leaving does not shrink it. Extra event types
  // cost a filter here, nothing else.)
  const int wd = ::inotify_add_watch(fd_.get(), path.c_str(), mask | IN_MASK_ADD);
  if (wd < 0) return Error::from_errno("inotify_add_watch");
  subs_.at(id).masks[wd] |= mask & IN_ALL_EVENTS;
  by_wd_[wd].insert(id);
  return wd;
}

void InotifyHub::remove(uint64_t id, int wd) {
  auto s = subs_.find(id);
  if (s == subs_.end() || s->second.masks.erase(wd) == 0) return;
  auto w = by_wd_.find(wd);
  if (w == by_wd_.end()) return;
  w->second.erase(id);
  if (w->second.empty()) release(wd);
}

void InotifyHub::release(int wd) {
  by_wd_.erase(wd);
  ::inotify_rm_watch(fd_.get(), wd);  // EINVAL if the kernel dropped it already: nothing to do
}

void InotifyHub::on_readable() {
  auto keep = shared_from_this();  // a handler may drop the last subscription
  for (;;) {
    const ssize_t n = ::read(fd_.get(), buf_.data(), buf_.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) log::get(log::Module::watch).error("inotify read: {}", std::strerror(errno));
      return;
    }
    if (n == 0) return;
    std::vector<const inotify_event*> all;
    for (ssize_t off = 0; off < n;) {
      const auto* ev = reinterpret_cast<const inotify_event*>(buf_.data() + off);
      all.push_back(ev);
      off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
    }
    // Who gets what is decided for the whole read before any handler runs (they add and remove
    // watches): each subscriber gets the events of the watches it held when they were read.
    std::vector<std::pair<uint64_t, Delivery>> out;
    std::vector<std::shared_ptr<Subscription::Handler>> handlers;
    for (const auto& [id, sub] : subs_) {
      Delivery d;
      for (size_t i = 0; i < all.size(); ++i) {
        const inotify_event* ev = all[i];
        bool mine = (ev->mask & IN_Q_OVERFLOW) != 0;
        if (!mine) {
          auto m = sub.masks.find(ev->wd);
          mine = m != sub.masks.end() && ((ev->mask & (IN_IGNORED | IN_UNMOUNT)) || (ev->mask & m->second));
        }
        if (!mine) continue;
        if (d.events.empty()) d.starts_read = i == 0;
        d.ends_read = i + 1 == all.size();
        d.events.push_back(ev);
      }
      out.emplace_back(id, std::move(d));
      handlers.push_back(sub.handler);
    }
    // The kernel dropped these watches (the directory went, or it was removed): forget them.
    for (const inotify_event* ev : all) {
      if (!(ev->mask & IN_IGNORED)) continue;
      auto w = by_wd_.find(ev->wd);
      if (w == by_wd_.end()) continue;
      for (uint64_t id : w->second) {
        if (auto s = subs_.find(id); s != subs_.end()) s->second.masks.erase(ev->wd);
      }
      by_wd_.erase(w);
    }
    for (size_t k = 0; k < out.size(); ++k) {
      if (subs_.count(out[k].first) == 0) continue;  // unsubscribed by an earlier handler
      (*handlers[k])(out[k].second);
    }
    if (subs_.empty()) return;
  }
}

}  // namespace syncd::watch
