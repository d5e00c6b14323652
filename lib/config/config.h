// File: lib/config/config.h
//
// An lsyncd configuration (LSYNCD-COMPAT.md §1-3), read by executing it: the config file runs
// in an embedded Lua 5.4 (with the whole standard library, loaded by its own path so
// debug.getinfo, dofile and os.getenv work as under lsyncd) after syncd's prelude
// (lib/config/prelude.lua) defined settings{}, sync{} and default.rsync/rsyncssh/direct. The
// command-line forms (-rsync, -rsyncssh, -direct) go through the same sync{} so they get the same
// defaults and checks. The result is plain values; what syncd does with them is syncd/'s job.
// Errors read like lsyncd's ("error preparing F: F:3: setting \"logfil\" unknown.").
// Thread affinity: plain values and pure functions (each load uses its own Lua state).
//
//   SYNCD_TRY_ASSIGN(cfg, config::load_file("/etc/lsyncd.conf", {}));
//   for (auto& s : cfg.syncs) ... s.kind, s.source, s.host, s.targetdir ...
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "lib/base/result.h"

namespace syncd::config {

// settings{} (and what the command line overrides in it).
struct Settings {
  std::optional<std::string> logfile, pidfile, status_file, logfacility, logident, inotify_mode;
  bool nodaemon = false;
  bool insist = false;
  bool onepass = false;
  double status_interval = 10;  // seconds
  std::optional<long> max_processes, max_delays;
};

enum class Kind { rsync, rsyncssh, direct, custom };
const char* kind_name(Kind k) noexcept;  // "default.rsync", ...

// lsyncd's `delete`: true (both), false (never), 'startup', 'running'. Anything else is false,
// as lsyncd 2.2.3 treats it (a warning says so).
enum class DeleteMode { all, none, startup, running };

struct SshSpec {
  std::string binary = "/usr/bin/ssh";
  std::optional<std::string> identity_file;
  std::optional<long> port;
  std::vector<std::pair<std::string, std::string>> options;  // ssh.options, sorted by key
  std::vector<std::string> extra;                           // ssh._extra
  bool given = false;  // any ssh.* key besides the defaults
};

// syncd's own keys: `syncd = { ... }` inside sync{} (README.md "Configuration").
struct SyncdKeys {
  std::optional<std::string> state_dir, rundir, remote_syncd, remote_state_dir, remote_rundir,
      transport, conflict_hook;
  std::optional<long> max_delete_share, tombstone_min_age, tombstone_max_age;
  std::optional<bool> fsync;
  // Further nodes of a two-way mesh: { { host = "n3", targetdir = "/opt/x" }, ... }.
  std::vector<std::pair<std::string, std::string>> peers;
};

struct Sync {
  std::string name;   // Sync1, Sync2, ... in sync{} order
  std::string where;  // "file:line" of the sync{} call
  Kind kind = Kind::custom;
  std::string source;  // realpath, with a trailing '/' (as lsyncd stores it)
  std::string target;  // rsync, direct (a trailing '/' added unless it ends in '/' or ':')
  std::string host, targetdir;  // rsyncssh
  double delay = 0;             // seconds: the config's, or the default's
  bool delay_given = false;     // the config (or -delay) set it, rather than a default
  long max_delays = 1000;
  long max_processes = 1;
  DeleteMode del = DeleteMode::all;
  std::string delete_raw;  // as written, for messages
  bool init = true;        // false: no startup transfer
  std::vector<std::string> excludes;                    // exclude + excludeFrom
  std::vector<std::pair<char, std::string>> filters;    // filter + filterFrom: '+'/'-', pattern
  // rsync = { ... } as strings ("true", "false", numbers, strings); _extra separately.
  std::map<std::string, std::string> rsync;
  std::vector<std::string> rsync_extra;
  SshSpec ssh;
  std::optional<bool> bidirectional;
  SyncdKeys syncd;
  // Actions the config wrote itself (key -> Lua type: "string", "function", "boolean").
  std::map<std::string, std::string> user_actions;
  std::map<std::string, std::string> string_actions;  // layer 3: key -> command template
};

// The config's Lua state kept for layer-2 actions (on* functions): calls a sync's handler for an
// event and returns the commands it spawn()ed (argv each; spawnShell is /bin/sh -c CMD ...).
class LuaActions {
 public:
  struct Event {
    std::string etype;  // Create, Modify, Attrib, Delete, Move, Init
    bool is_dir = false;
    std::map<std::string, std::string> fields;  // path, pathname, sourcePath, ... (lsyncd's names)
  };
  explicit LuaActions(std::unique_ptr<struct LuaHolder> state);
  ~LuaActions();
  LuaActions(const LuaActions&) = delete;
  LuaActions& operator=(const LuaActions&) = delete;
  // One spawn()ed command: argv, and the text spawn(..., '<', text) gives its stdin.
  struct Spawned {
    std::vector<std::string> argv;
    std::optional<std::string> stdin_text;
  };
  // `sync` is 1-based (Sync1 = 1). Loop thread only.
  Result<std::vector<Spawned>> call(size_t sync, const std::string& handler, const Event& e, const Event* dest = nullptr);

  // What the config's runtime globals need from the daemon (lib/runtime/lua_host.h provides it):
  // the time of the soonest alarm() (clock() seconds; nullopt: none), terminate(code), and
  // observefd()/nonobservefd() (read = write = false: stop watching fd).
  struct Hooks {
    std::function<void(std::optional<double>)> next_alarm;
    std::function<void(int code)> terminate;
    std::function<void(int fd, bool read, bool write)> observe;
    bool terminated = false;  // set once terminate() was called: nothing of the config runs after
  };
  // Installs the hooks and replays what the config set up while loading (alarms, fds). Until
  // then (and after clear_hooks) terminate() exits the process, as lsyncd's does.
  void set_hooks(Hooks h);
  void clear_hooks();
  // Runs the alarms due at `now` (a clock() time); the errors they raised, one per alarm.
  std::vector<std::string> run_alarms(double now);
  // fd became readable / writable: calls the config's ready / writey function.
  Status fd_ready(int fd, bool readable, bool writable);
  // The clock now() and alarm times use: CLOCK_MONOTONIC in seconds.
  static double clock();

 private:
  std::unique_ptr<struct LuaHolder> state_;
};

struct Config {
  std::string file;  // absolute path of the config file ("" for command-line syncs)
  // Set when a sync has on* functions (layer 2): the Lua state they live in.
  std::shared_ptr<LuaActions> lua;
  Settings settings;
  std::vector<Sync> syncs;
  std::vector<std::string> warnings;  // accepted, but not what lsyncd would do exactly
};

// What lsyncd's command line sets (it wins over settings{}).
struct CommandLine {
  std::optional<std::string> logfile, pidfile;
  bool nodaemon = false;
  bool insist = false;
  bool onepass = false;
  std::optional<double> delay;
  struct ClSync {
    Kind kind;
    std::vector<std::string> args;  // SRC TGT | SRC HOST DIR | SRC DIR
  };
  std::vector<ClSync> syncs;
};

// A config error: the text lsyncd prints after "Error: " (exit code 255).
Result<Config> load_file(const std::string& path, const CommandLine& cl);
Result<Config> from_command_line(const CommandLine& cl);

// lsyncd's rsync.rsh plus ssh.{identityFile, port, options, _extra}: one ssh command line used
// for every operation (LSYNCD-COMPAT §2.4 "decision for syncd"). Words are shell-quoted.
std::string ssh_command_line(const Sync& s);

}  // namespace syncd::config
