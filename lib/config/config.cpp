#include "lib/config/config.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

#include <lua.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>

#include "lib/base/log.h"
#include "lib/config/lua_state.h"
#include "lib/config/prelude.h"

namespace syncd::config {
namespace {

using detail::LuaState;

Error config_error(std::string msg) { return Error::make(errc::unsupported, std::move(msg)); }

// log(cat, msg) from a config: lsyncd's categories onto our levels.
int lua_log(lua_State* L) {
  const std::string cat = luaL_checkstring(L, 1);
  const std::string msg = luaL_checkstring(L, 2);
  auto& lg = log::get(log::Module::config);
  if (cat == "Error") {
    lg.error("{}", msg);
  } else if (cat == "Warn") {
    lg.warn("{}", msg);
  } else if (cat == "Normal") {
    lg.info("{}", msg);
  } else {
    lg.debug("{}: {}", cat, msg);
  }
  return 0;
}

// The daemon's hooks for the runtime globals, kept in the registry under this key's address
// once LuaActions owns the state (absent while the config loads).
const char kHooksKey = 0;

LuaActions::Hooks* hooks_of(lua_State* L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &kHooksKey);
  auto* h = static_cast<LuaActions::Hooks*>(lua_touserdata(L, -1));
  lua_pop(L, 1);
  return h;
}

int lua_clock(lua_State* L) {
  lua_pushnumber(L, LuaActions::clock());
  return 1;
}

// lsyncd's timestamps (now(), alarm times) are userdata named "Lsyncd.jiffies": seconds on the
// monotonic clock here. A number added or subtracted gives another; two subtract to seconds;
// they compare with each other only (lsyncd's own errors otherwise).
constexpr const char* kJiffies = "Lsyncd.jiffies";

void push_jiffies(lua_State* L, double t) {
  *static_cast<double*>(lua_newuserdatauv(L, sizeof(double), 0)) = t;
  luaL_setmetatable(L, kJiffies);
}
double* to_jiffies(lua_State* L, int i) { return static_cast<double*>(luaL_testudata(L, i, kJiffies)); }
double check_jiffies(lua_State* L, int i) { return *static_cast<double*>(luaL_checkudata(L, i, kJiffies)); }

int jiffies_now(lua_State* L) {
  push_jiffies(L, LuaActions::clock());
  return 1;
}
int jiffies_add(lua_State* L) {
  double *a = to_jiffies(L, 1), *b = to_jiffies(L, 2);
  if (a && b) return luaL_error(L, "Cannot add two timestamps!");
  push_jiffies(L, a ? *a + luaL_checknumber(L, 2) : luaL_checknumber(L, 1) + *b);
  return 1;
}
int jiffies_sub(lua_State* L) {
  double *a = to_jiffies(L, 1), *b = to_jiffies(L, 2);
  if (a && b) {
    lua_pushnumber(L, *a - *b);
  } else {
    push_jiffies(L, a ? *a - luaL_checknumber(L, 2) : luaL_checknumber(L, 1) - *b);
  }
  return 1;
}
int jiffies_lt(lua_State* L) {
  lua_pushboolean(L, check_jiffies(L, 1) < check_jiffies(L, 2));
  return 1;
}
int jiffies_le(lua_State* L) {
  lua_pushboolean(L, check_jiffies(L, 1) <= check_jiffies(L, 2));
  return 1;
}
int jiffies_eq(lua_State* L) {
  double *a = to_jiffies(L, 1), *b = to_jiffies(L, 2);
  lua_pushboolean(L, a && b && *a == *b);
  return 1;
}
// The seconds inside one (for the prelude's alarm list).
int jiffies_value(lua_State* L) {
  lua_pushnumber(L, check_jiffies(L, 1));
  return 1;
}
int jiffies_is(lua_State* L) {
  lua_pushboolean(L, to_jiffies(L, 1) != nullptr);
  return 1;
}

void register_jiffies(lua_State* L) {
  luaL_newmetatable(L, kJiffies);  // sets __name
  const luaL_Reg mt[] = {{"__add", jiffies_add}, {"__sub", jiffies_sub}, {"__lt", jiffies_lt},
                         {"__le", jiffies_le},   {"__eq", jiffies_eq},   {nullptr, nullptr}};
  luaL_setfuncs(L, mt, 0);
  lua_pop(L, 1);
  lua_register(L, "now", jiffies_now);
  lua_register(L, "_syncd_jiffies_value", jiffies_value);
  lua_register(L, "_syncd_is_jiffies", jiffies_is);
}

// readdir(path): name -> isdir (d_type, symlinks not followed), or nil and a logged error.
int lua_readdir(lua_State* L) {
  const char* path = luaL_checkstring(L, 1);
  DIR* d = ::opendir(path);
  if (d == nullptr) {
    log::get(log::Module::config).error("cannot open dir [{}].", path);
    lua_pushnil(L);
    return 1;
  }
  lua_newtable(L);
  while (const dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    bool is_dir = e->d_type == DT_DIR;
    if (e->d_type == DT_UNKNOWN) {
      struct stat st {};
      is_dir = ::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
    }
    lua_pushboolean(L, is_dir);
    lua_setfield(L, -2, e->d_name);
  }
  ::closedir(d);
  return 1;
}

// Raised by terminate() once the daemon was told: unwinds the config's function (nothing after
// terminate() runs, as under lsyncd, which exits there); callers treat it as no error.
constexpr const char* kTerminating = "\x01syncd: terminate() called";

int lua_terminate(lua_State* L) {
  const int code = static_cast<int>(luaL_checkinteger(L, 1));
  auto* h = hooks_of(L);
  if (h == nullptr || !h->terminate) {
    std::fflush(nullptr);
    std::exit(code & 0xff);  // while loading, as lsyncd: nothing runs yet that could be cut short
  }
  h->terminated = true;
  h->terminate(code & 0xff);
  lua_pushstring(L, kTerminating);
  return lua_error(L);
}

bool is_terminating(const std::string& message) { return message.find(kTerminating) != std::string::npos; }

int lua_alarm_next(lua_State* L) {
  std::optional<double> t;
  if (lua_isnumber(L, 1)) t = lua_tonumber(L, 1);
  if (auto* h = hooks_of(L); h != nullptr && h->next_alarm) h->next_alarm(t);
  return 0;
}

int lua_observe(lua_State* L) {
  const int fd = static_cast<int>(luaL_checkinteger(L, 1));
  const bool r = lua_toboolean(L, 2), w = lua_toboolean(L, 3);
  if (auto* h = hooks_of(L); h != nullptr && h->observe) h->observe(fd, r, w);
  return 0;
}

Result<std::unique_ptr<LuaState>> new_state() {
  auto st = std::make_unique<LuaState>();
  lua_register(st->get(), "_syncd_log", lua_log);
  lua_register(st->get(), "_syncd_clock", lua_clock);
  register_jiffies(st->get());
  lua_register(st->get(), "_syncd_readdir", lua_readdir);
  lua_register(st->get(), "_syncd_terminate", lua_terminate);
  lua_register(st->get(), "_syncd_alarm_next", lua_alarm_next);
  lua_register(st->get(), "_syncd_observe", lua_observe);
  if (auto err = st->run_chunk(detail::kPrelude, "=syncd-prelude")) {
    return Error::make(errc::internal, "syncd's config prelude failed: " + *err);
  }
  return st;
}

std::string with_slash(std::string p) {
  if (p.empty() || (p.back() != '/' && p.back() != ':')) p += '/';
  return p;
}

// excludeFrom: one pattern per line; blank lines and '#' comments skipped, "+ " lines ignored,
// a leading "- " stripped (lsyncd's reading).
Status read_exclude_file(const std::string& path, std::vector<std::string>& out) {
  std::ifstream in(path);
  if (!in) return config_error("Cannot open exclude file \"" + path + "\": " + path + ": " + std::strerror(errno));
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line[0] == '#' || line[0] == '+') continue;
    if (line.rfind("- ", 0) == 0) line.erase(0, 2);
    if (!line.empty()) out.push_back(line);
  }
  return {};
}

Status parse_filter(const std::string& rule, std::vector<std::pair<char, std::string>>& out) {
  if (rule.size() < 3 || (rule[0] != '+' && rule[0] != '-') || rule[1] != ' ') {
    return config_error("Unknown filter rule: \"" + rule + "\"");
  }
  out.emplace_back(rule[0], rule.substr(2));
  return {};
}

Status read_filter_file(const std::string& path, std::vector<std::pair<char, std::string>>& out) {
  std::ifstream in(path);
  if (!in) return config_error("Cannot open filter file \"" + path + "\": " + path + ": " + std::strerror(errno));
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    SYNCD_TRY(parse_filter(line, out));
  }
  return {};
}

// Reads the sub-table `key` of the table at `t` as key -> text (non-table values only).
std::map<std::string, std::string> read_flat(lua_State* L, int t, const char* key) {
  std::map<std::string, std::string> r;
  lua_getfield(L, t, key);
  if (lua_type(L, -1) == LUA_TTABLE) {
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
      if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) != LUA_TTABLE) {
        r[lua_tostring(L, -2)] = detail::to_text(L, -1);
      }
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  return r;
}

Result<Sync> read_sync(lua_State* L, int t, size_t n, std::vector<std::string>& warnings) {
  Sync s;
  s.name = "Sync" + std::to_string(n);
  s.where = detail::field_string(L, t, "_syncd_where").value_or("?");
  const std::string kind = detail::field_string(L, t, "_syncd_kind").value_or("custom");
  s.kind = kind == "rsync" ? Kind::rsync : kind == "rsyncssh" ? Kind::rsyncssh : kind == "direct" ? Kind::direct : Kind::custom;

  const auto src = detail::field_string(L, t, "source");
  if (!src) return config_error("source missing from sync.");
  char buf[PATH_MAX];
  if (::realpath(src->c_str(), buf) == nullptr) return config_error("Cannot access source directory: " + *src);
  s.source = with_slash(buf);
  if (auto v = detail::field_string(L, t, "target")) s.target = s.kind == Kind::custom ? *v : with_slash(*v);  // lsyncd: custom syncs keep it
  if (auto v = detail::field_string(L, t, "host")) s.host = *v;
  if (auto v = detail::field_string(L, t, "targetdir")) s.targetdir = with_slash(*v);

  s.delay = detail::field_number(L, t, "delay").value_or(0);
  s.delay_given = detail::field_bool(L, t, "_syncd_delay_given").value_or(false);
  s.max_delays = static_cast<long>(detail::field_number(L, t, "maxDelays").value_or(1000));
  s.max_processes = static_cast<long>(detail::field_number(L, t, "maxProcesses").value_or(1));

  lua_getfield(L, t, "delete");
  if (lua_type(L, -1) == LUA_TBOOLEAN) {
    s.del = lua_toboolean(L, -1) ? DeleteMode::all : DeleteMode::none;
    s.delete_raw = lua_toboolean(L, -1) ? "true" : "false";
  } else if (lua_isnil(L, -1)) {
    s.del = DeleteMode::all;
    s.delete_raw = "true";
  } else {
    s.delete_raw = detail::to_text(L, -1);
    if (s.delete_raw == "startup" && lua_type(L, -1) == LUA_TSTRING) {
      s.del = DeleteMode::startup;
    } else if (s.delete_raw == "running" && lua_type(L, -1) == LUA_TSTRING) {
      s.del = DeleteMode::running;
    } else {
      s.del = DeleteMode::none;
      warnings.push_back(s.where + ": delete = " + s.delete_raw +
                         " is not true, false, 'startup' or 'running'; like lsyncd 2.2.3, nothing is deleted");
    }
  }
  lua_pop(L, 1);
  s.init = detail::field_type(L, t, "init") != "boolean" || detail::field_bool(L, t, "init").value_or(true);

  bool bad = false;
  if (auto v = detail::field_strings(L, t, "exclude", bad)) s.excludes = *v;
  if (bad) return config_error("type for exclude must be table or string");
  if (auto v = detail::field_string(L, t, "excludeFrom")) SYNCD_TRY(read_exclude_file(*v, s.excludes));
  if (auto v = detail::field_strings(L, t, "filter", bad)) {
    for (const auto& rule : *v) SYNCD_TRY(parse_filter(rule, s.filters));
  }
  if (bad) return config_error("type for filter must be table or string");
  if (auto v = detail::field_string(L, t, "filterFrom")) SYNCD_TRY(read_filter_file(*v, s.filters));

  s.rsync = read_flat(L, t, "rsync");
  lua_getfield(L, t, "rsync");
  if (lua_type(L, -1) == LUA_TTABLE) {
    if (auto v = detail::field_strings(L, lua_gettop(L), "_extra", bad)) s.rsync_extra = *v;
  }
  lua_pop(L, 1);

  lua_getfield(L, t, "ssh");
  if (lua_type(L, -1) == LUA_TTABLE) {
    const int st = lua_gettop(L);
    if (auto v = detail::field_string(L, st, "binary")) s.ssh.binary = *v;
    s.ssh.identity_file = detail::field_string(L, st, "identityFile");
    if (auto v = detail::field_number(L, st, "port")) s.ssh.port = static_cast<long>(*v);
    if (auto v = detail::field_string(L, st, "port"); v && !s.ssh.port) s.ssh.port = std::atol(v->c_str());
    for (auto& [k, v] : read_flat(L, st, "options")) s.ssh.options.emplace_back(k, v);
    if (auto v = detail::field_strings(L, st, "_extra", bad)) s.ssh.extra = *v;
    s.ssh.given = s.ssh.identity_file || s.ssh.port || !s.ssh.options.empty() || !s.ssh.extra.empty();
  }
  lua_pop(L, 1);

  if (detail::field_type(L, t, "bidirectional") == "boolean") s.bidirectional = detail::field_bool(L, t, "bidirectional");

  lua_getfield(L, t, "syncd");
  if (lua_type(L, -1) == LUA_TTABLE) {
    const int st = lua_gettop(L);
    auto& k = s.syncd;
    k.state_dir = detail::field_string(L, st, "stateDir");
    k.rundir = detail::field_string(L, st, "rundir");
    k.remote_syncd = detail::field_string(L, st, "remoteSyncd");
    k.remote_state_dir = detail::field_string(L, st, "remoteStateDir");
    k.remote_rundir = detail::field_string(L, st, "remoteRundir");
    k.transport = detail::field_string(L, st, "transport");
    k.conflict_hook = detail::field_string(L, st, "conflictHook");
    auto num = [&](const char* key) -> std::optional<long> {
      if (auto v = detail::field_number(L, st, key)) return static_cast<long>(*v);
      return std::nullopt;
    };
    k.max_delete_share = num("maxDeleteShare");
    k.tombstone_min_age = num("tombstoneMinAge");
    k.tombstone_max_age = num("tombstoneMaxAge");
    k.fsync = detail::field_bool(L, st, "fsync");
    lua_getfield(L, st, "peers");
    if (lua_type(L, -1) == LUA_TTABLE) {
      const lua_Integer cnt = static_cast<lua_Integer>(lua_rawlen(L, -1));
      for (lua_Integer i = 1; i <= cnt; ++i) {
        lua_rawgeti(L, -1, i);
        const int p = lua_gettop(L);
        auto host = lua_type(L, p) == LUA_TTABLE ? detail::field_string(L, p, "host") : std::nullopt;
        auto dir = lua_type(L, p) == LUA_TTABLE ? detail::field_string(L, p, "targetdir") : std::nullopt;
        lua_pop(L, 1);
        if (!host || !dir) return config_error(s.where + ": syncd.peers entries need host and targetdir");
        k.peers.emplace_back(*host, with_slash(*dir));
      }
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);

  s.user_actions = read_flat(L, t, "_syncd_user");
  for (const auto& [key, type] : s.user_actions) {
    if (type == "string") s.string_actions[key] = detail::field_string(L, t, key.c_str()).value_or("");
  }
  return s;
}

Result<Config> finish(LuaState& st, Config cfg, const CommandLine& cl) {
  lua_State* L = st.get();
  if (auto err = st.call_global("_syncd_finish", 2)) return config_error(*err);
  const int settings = lua_gettop(L) - 1, syncs = lua_gettop(L);
  auto& s = cfg.settings;
  s.logfile = detail::field_string(L, settings, "logfile");
  s.pidfile = detail::field_string(L, settings, "pidfile");
  s.status_file = detail::field_string(L, settings, "statusFile");
  s.logfacility = detail::field_string(L, settings, "logfacility");
  s.logident = detail::field_string(L, settings, "logident");
  s.inotify_mode = detail::field_string(L, settings, "inotifyMode");
  auto truthy = [&](const char* key) {
    lua_getfield(L, settings, key);
    const bool r = lua_toboolean(L, -1) != 0;
    lua_pop(L, 1);
    return r;
  };
  s.nodaemon = truthy("nodaemon");
  s.insist = truthy("insist");
  s.onepass = truthy("onepass");
  s.status_interval = detail::field_number(L, settings, "statusInterval").value_or(10);
  if (auto v = detail::field_number(L, settings, "maxProcesses")) s.max_processes = static_cast<long>(*v);
  if (auto v = detail::field_number(L, settings, "maxDelays")) s.max_delays = static_cast<long>(*v);
  if (s.inotify_mode && *s.inotify_mode != "CloseWrite" && *s.inotify_mode != "Modify" &&
      *s.inotify_mode != "CloseWrite or Modify") {
    if (*s.inotify_mode == "CloseWrite after Modify") return config_error("inotifyMode \"CloseWrite after Modify\" not implemented.");
    return config_error("inotifyMode \"" + *s.inotify_mode + "\" not known.");
  }
  // The command line wins over settings{} (lsyncd's clSettings).
  if (cl.logfile) s.logfile = cl.logfile;
  if (cl.pidfile) s.pidfile = cl.pidfile;
  if (cl.nodaemon) s.nodaemon = true;
  if (cl.insist) s.insist = true;
  if (cl.onepass) s.onepass = true;

  const lua_Integer n = static_cast<lua_Integer>(lua_rawlen(L, syncs));
  for (lua_Integer i = 1; i <= n; ++i) {
    lua_rawgeti(L, syncs, i);
    auto sync = read_sync(L, lua_gettop(L), static_cast<size_t>(i), cfg.warnings);
    lua_pop(L, 1);
    if (!sync.ok()) return sync.error();
    if (cl.delay) {
      sync->delay = *cl.delay;
      sync->delay_given = true;
    }
    cfg.syncs.push_back(std::move(*sync));
  }
  lua_pop(L, 2);
  if (cfg.syncs.empty()) return config_error("Nothing to watch!");
  return cfg;
}

bool has_function_actions(const Config& cfg) {
  for (const auto& s : cfg.syncs) {
    for (const auto& [k, type] : s.user_actions) {
      if (type == "function" && k.rfind("on", 0) == 0) return true;
    }
  }
  return false;
}

void push_event(lua_State* L, const LuaActions::Event& e) {
  lua_newtable(L);
  lua_pushstring(L, e.etype.c_str());
  lua_setfield(L, -2, "etype");
  lua_pushboolean(L, e.is_dir);
  lua_setfield(L, -2, "isdir");
  for (const auto& [k, v] : e.fields) {
    lua_pushlstring(L, v.data(), v.size());
    lua_setfield(L, -2, k.c_str());
  }
}

}  // namespace

struct LuaHolder {
  std::unique_ptr<LuaState> st;
  LuaActions::Hooks hooks{};
};

LuaActions::LuaActions(std::unique_ptr<LuaHolder> state) : state_(std::move(state)) {}
LuaActions::~LuaActions() { clear_hooks(); }

void LuaActions::set_hooks(Hooks h) {
  lua_State* L = state_->st->get();
  state_->hooks = std::move(h);
  lua_pushlightuserdata(L, &state_->hooks);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &kHooksKey);
  if (auto err = state_->st->call_global("_syncd_announce", 0)) {
    log::get(log::Module::config).error("in Lua: {}", *err);
  }
}

void LuaActions::clear_hooks() {
  lua_State* L = state_->st->get();
  lua_pushnil(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &kHooksKey);
  state_->hooks = Hooks{};
}

std::vector<std::string> LuaActions::run_alarms(double now) {
  lua_State* L = state_->st->get();
  std::vector<std::string> errors;
  if (state_->hooks.terminated) return errors;
  lua_getglobal(L, "_syncd_run_alarms");
  lua_pushnumber(L, now);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    errors.push_back(lua_isstring(L, -1) ? lua_tostring(L, -1) : "error");
    lua_pop(L, 1);
    return errors;
  }
  const lua_Integer n = static_cast<lua_Integer>(lua_rawlen(L, -1));
  for (lua_Integer i = 1; i <= n; ++i) {
    lua_rawgeti(L, -1, i);
    if (std::string e = detail::to_text(L, -1); !is_terminating(e)) errors.push_back(std::move(e));
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return errors;
}

Status LuaActions::fd_ready(int fd, bool readable, bool writable) {
  if (state_->hooks.terminated) return {};
  lua_State* L = state_->st->get();
  lua_getglobal(L, "_syncd_fd_ready");
  lua_pushinteger(L, fd);
  lua_pushboolean(L, readable);
  lua_pushboolean(L, writable);
  if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
    std::string m = lua_isstring(L, -1) ? lua_tostring(L, -1) : "error";
    lua_pop(L, 1);
    if (is_terminating(m)) return {};
    return config_error("observefd " + std::to_string(fd) + ": " + m);
  }
  return {};
}

double LuaActions::clock() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

Result<std::vector<LuaActions::Spawned>> LuaActions::call(size_t sync, const std::string& handler, const Event& e,
                                                          const Event* dest) {
  if (state_->hooks.terminated) return std::vector<Spawned>{};
  lua_State* L = state_->st->get();
  lua_getglobal(L, "_syncd_call");
  lua_pushinteger(L, static_cast<lua_Integer>(sync));
  lua_pushstring(L, handler.c_str());
  push_event(L, e);
  if (dest) {
    push_event(L, *dest);
  } else {
    lua_pushnil(L);
  }
  if (lua_pcall(L, 4, 1, 0) != LUA_OK) {
    std::string m = lua_isstring(L, -1) ? lua_tostring(L, -1) : "error";
    lua_pop(L, 1);
    if (is_terminating(m)) return std::vector<Spawned>{};  // what it spawned before does not run either
    return config_error(handler + ": " + m);
  }
  std::vector<Spawned> out;
  const lua_Integer n = static_cast<lua_Integer>(lua_rawlen(L, -1));
  for (lua_Integer i = 1; i <= n; ++i) {
    lua_rawgeti(L, -1, i);
    Spawned s;
    const lua_Integer m = static_cast<lua_Integer>(lua_rawlen(L, -1));
    for (lua_Integer j = 1; j <= m; ++j) {
      lua_rawgeti(L, -1, j);
      s.argv.push_back(detail::to_text(L, -1));
      lua_pop(L, 1);
    }
    lua_getfield(L, -1, "stdin");
    if (lua_isstring(L, -1)) s.stdin_text = detail::to_text(L, -1);
    lua_pop(L, 2);
    if (!s.argv.empty()) out.push_back(std::move(s));
  }
  lua_pop(L, 1);
  lua_gc(L, LUA_GCSTEP, 0);
  return out;
}

const char* kind_name(Kind k) noexcept {
  switch (k) {
    case Kind::rsync: return "default.rsync";
    case Kind::rsyncssh: return "default.rsyncssh";
    case Kind::direct: return "default.direct";
    case Kind::custom: break;
  }
  return "a custom sync";
}

Result<Config> load_file(const std::string& path, const CommandLine& cl) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf) == nullptr) return config_error("Cannot find config file at '" + path + "'.");
  Config cfg;
  cfg.file = buf;
  SYNCD_TRY_ASSIGN(st, new_state());
  if (auto err = st->run_file(cfg.file)) {
    return config_error((err->loading ? "error loading " : "error preparing ") + cfg.file + ": " + err->message);
  }
  auto done = finish(*st, std::move(cfg), cl);
  // The state stays for on* functions, and for alarms / observed fds the config set up itself.
  bool pending = false;
  if (done.ok() && !st->call_global("_syncd_announce", 1)) {
    pending = lua_toboolean(st->get(), -1);
    lua_pop(st->get(), 1);
  }
  if (done.ok() && (pending || has_function_actions(*done))) {
    done->lua = std::make_shared<LuaActions>(std::make_unique<LuaHolder>(LuaHolder{std::move(st)}));
  }
  return done;
}

Result<Config> from_command_line(const CommandLine& cl) {
  SYNCD_TRY_ASSIGN(st, new_state());
  lua_State* L = st->get();
  for (const auto& s : cl.syncs) {
    const char* def = s.kind == Kind::rsyncssh ? "rsyncssh" : s.kind == Kind::direct ? "direct" : "rsync";
    const size_t want = s.kind == Kind::rsyncssh ? 3 : 2;
    if (s.args.size() != want) return config_error(std::string("-") + def + " needs " + std::to_string(want) + " arguments");
    lua_getglobal(L, "sync");
    lua_newtable(L);
    lua_getglobal(L, "default");
    lua_getfield(L, -1, def);
    lua_rawseti(L, -3, 1);
    lua_pop(L, 1);
    auto set = [&](const char* key, const std::string& v) {
      lua_pushstring(L, v.c_str());
      lua_setfield(L, -2, key);
    };
    set("source", s.args[0]);
    if (s.kind == Kind::rsyncssh) {
      set("host", s.args[1]);
      set("targetdir", s.args[2]);
    } else {
      set("target", s.args[1]);
    }
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
      std::string m = lua_tostring(L, -1);
      lua_pop(L, 1);
      return config_error(m);
    }
  }
  return finish(*st, Config{}, cl);
}

namespace {
std::string quote(const std::string& w) {
  const bool plain = !w.empty() && std::all_of(w.begin(), w.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || std::strchr("@%+=:,./_-", c) != nullptr;
  });
  if (plain) return w;
  std::string q = "'";
  for (char c : w) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}
}  // namespace

std::string ssh_command_line(const Sync& s) {
  auto it = s.rsync.find("rsh");
  std::string line = it != s.rsync.end() ? it->second : quote(s.ssh.binary);
  if (s.ssh.identity_file) line += " -i " + quote(*s.ssh.identity_file);
  if (s.ssh.port) line += " -p " + std::to_string(*s.ssh.port);
  for (const auto& [k, v] : s.ssh.options) line += " -o " + quote(k + "=" + v);
  for (const auto& w : s.ssh.extra) line += " " + quote(w);
  if (auto v = s.rsync.find("ipv4"); v != s.rsync.end() && v->second == "true") line += " -4";
  if (auto v = s.rsync.find("ipv6"); v != s.rsync.end() && v->second == "true") line += " -6";
  return line;
}

}  // namespace syncd::config
