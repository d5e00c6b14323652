#include "lib/runtime/mount_watch.h"

#include <fcntl.h>

#include "lib/base/clock.h"
#include "lib/base/log.h"

namespace syncd::runtime {
namespace {

auto& lg() { return log::get(log::Module::runtime); }

}  // namespace

MountWatch::MountWatch(std::string what, std::function<void()> on_change)
    : what_(std::move(what)), on_change_(std::move(on_change)) {}

Result<std::unique_ptr<MountWatch>> MountWatch::start(uvx::Loop& loop, std::string what, std::function<void()> on_change) {
  std::unique_ptr<MountWatch> w(new MountWatch(std::move(what), std::move(on_change)));
  w->fd_ = UniqueFd(::open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC));
  if (!w->fd_) return Error::from_errno("open /proc/self/mountinfo");
  MountWatch* self = w.get();
  w->poll_ = std::make_unique<uvx::Poll>(loop, w->fd_.get(), [self](int st, int) { self->on_poll(st); });
  SYNCD_TRY(w->poll_->start(UV_PRIORITIZED));
  return w;
}

void MountWatch::on_poll(int status) {
  // Depending on the libuv version a change comes as POLLPRI, or as POLLERR handed over as an
  // error with the handle stopped: polled again, it is quiet until the next change.
  const uint64_t now = mono_us();
  if (now - burst_start_us_ > 1'000'000) {
    burst_start_us_ = now;
    burst_ = 0;
  }
  if (++burst_ > 1000) {
    lg().warn("not watching the mount table for {} any more: it reports a change without end", what_);
    poll_->stop();  // not destroyed inside its own callback
    return;
  }
  if (status < 0) {
    if (auto st = poll_->start(UV_PRIORITIZED); !st) {
      lg().warn("not watching the mount table for {} any more: {}", what_, st.error().message());
    }
  }
  on_change_();
}

}  // namespace syncd::runtime
