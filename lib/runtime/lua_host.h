// File: lib/runtime/lua_host.h
//
// LuaHost: the loop side of a config's runtime globals (lib/config LuaActions::Hooks) — alarm()
// fires on a loop timer, observefd() polls the fd on the loop, terminate(code) stops the loop
// and hands `code` to the daemon (which exits with it). One per loaded config; destroying it
// detaches the hooks (a SIGHUP reload gets a fresh state and a fresh host).
// Thread affinity: loop thread.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "lib/config/config.h"
#include "lib/uvx/uvx.h"

namespace syncd::runtime {

class LuaHost {
 public:
  LuaHost(uvx::Loop& loop, std::shared_ptr<config::LuaActions> lua, std::function<void(int code)> on_terminate);
  ~LuaHost();
  LuaHost(const LuaHost&) = delete;
  LuaHost& operator=(const LuaHost&) = delete;

 private:
  void next_alarm(std::optional<double> at);
  void observe(int fd, bool read, bool write);
  void on_fd(int fd, int status, int events);

  uvx::Loop& loop_;
  std::shared_ptr<config::LuaActions> lua_;
  std::function<void(int)> on_terminate_;
  std::unique_ptr<uvx::Timer> alarm_;
  std::map<int, std::unique_ptr<uvx::Poll>> polls_;
  std::vector<std::unique_ptr<uvx::Poll>> released_;  // stopped from inside a callback; freed on the next one
  bool terminating_ = false;  // terminate() was called: no more of the config's code runs
};

}  // namespace syncd::runtime
