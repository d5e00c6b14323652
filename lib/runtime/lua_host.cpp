#include "lib/runtime/lua_host.h"

#include <cmath>

#include "lib/base/log.h"

namespace syncd::runtime {
namespace {
auto& lg() { return log::get(log::Module::config); }
}  // namespace

LuaHost::LuaHost(uvx::Loop& loop, std::shared_ptr<config::LuaActions> lua, std::function<void(int)> on_terminate)
    : loop_(loop), lua_(std::move(lua)), on_terminate_(std::move(on_terminate)) {
  alarm_ = std::make_unique<uvx::Timer>(loop_, [this] {
    released_.clear();
    if (terminating_) return;  // the loop stops after this turn; a re-armed timer may still fire in it
    // lsyncd logs a failing user function as "in Lua: ..."; syncd keeps running.
    for (const auto& e : lua_->run_alarms(config::LuaActions::clock())) lg().error("in Lua: alarm: {}", e);
  });
  config::LuaActions::Hooks h;
  h.next_alarm = [this](std::optional<double> at) { next_alarm(at); };
  h.terminate = [this](int code) {
    terminating_ = true;
    lg().info("terminate({}) called by the config", code);
    if (on_terminate_) on_terminate_(code);
  };
  h.observe = [this](int fd, bool r, bool w) { observe(fd, r, w); };
  lua_->set_hooks(std::move(h));
}

LuaHost::~LuaHost() { lua_->clear_hooks(); }

void LuaHost::next_alarm(std::optional<double> at) {
  if (!at) {
    alarm_->stop();
    return;
  }
  const double wait_s = *at - config::LuaActions::clock();
  // Rounded up: a timer that fires a little early would find nothing due and wait again.
  alarm_->start(wait_s <= 0 ? 0 : static_cast<uint64_t>(std::ceil(wait_s * 1000)));
}

void LuaHost::observe(int fd, bool read, bool write) {
  if (auto it = polls_.find(fd); it != polls_.end()) {
    it->second->stop();
    released_.push_back(std::move(it->second));  // this may be that poll's own callback
    polls_.erase(it);
  }
  if (!read && !write) return;
  auto p = std::make_unique<uvx::Poll>(loop_, fd, [this, fd](int status, int events) { on_fd(fd, status, events); });
  if (auto st = p->start((read ? UV_READABLE : 0) | (write ? UV_WRITABLE : 0)); !st) {
    lg().error("observefd({}): {}", fd, st.error().message());
    return;
  }
  polls_[fd] = std::move(p);
}

void LuaHost::on_fd(int fd, int status, int events) {
  released_.clear();
  if (terminating_) return;
  if (status < 0) {
    lg().error("observefd({}): {}", fd, uv_strerror(status));
    observe(fd, false, false);
    return;
  }
  if (auto st = lua_->fd_ready(fd, (events & UV_READABLE) != 0, (events & UV_WRITABLE) != 0); !st) {
    lg().error("in Lua: {}", st.error().context);
  }
}

}  // namespace syncd::runtime
