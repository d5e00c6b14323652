// File: lib/runtime/actions.h
//
// ActionSync: lsyncd's layer-2 and layer-3 syncs. Layer 2: on* functions, called with lsyncd's
// event fields; what they spawn() / spawnShell() runs (lib/config keeps their Lua state). Layer 3 — a sync{} whose onCreate / onModify / onAttrib / onDelete /
// onMove / onStartup are command strings ("cp -r ^sourcePathname ^targetPathname"), run the way
// lsyncd 2.2.3 runs them (observed with -log Exec):
//   * each distinct ^variable becomes "$N" and its value the N-th positional argument of
//     `/bin/sh -c CMD /bin/sh ARGS...` (so values are never re-parsed by the shell); a command
//     starting with '/' is run directly, its words split on blanks, ^variables substituted;
//   * variables: source (with '/'), target (as written), path / pathname (relative; path of a
//     directory ends in '/'), sourcePath, sourcePathname, sourcePathdir, targetPath,
//     targetPathname, targetPathdir (SOURCE + "/" + path, as lsyncd builds them, double slash
//     included); a move has o.X (origin) and d.X (destination); unknown names stay as written;
//   * onStartup runs first, events wait behind it; one command at a time (maxProcesses = 1);
//     with a delay each event waits that long from its arrival; without one it runs at once;
//   * a move without onMove is a delete plus a create; an event without its handler is dropped.
// Differences, from syncd's watcher: a file created and written is one Create (lsyncd sends
// Create, then Modify), and a chmod is a Modify (lsyncd: Attrib; onAttrib runs only for
// directories' attribute changes syncd reports as such — none today).
// Thread affinity: loop thread.
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "lib/config/config.h"
#include "lib/fs/root.h"
#include "lib/runtime/sender.h"
#include "lib/uvx/uvx.h"
#include "lib/watch/watcher.h"

namespace syncd::runtime {

struct ActionOptions {
  std::string source;  // absolute, without a trailing '/'
  std::string target;  // as configured
  std::map<std::string, std::string> actions;  // "onCreate" -> command template, ...
  std::vector<std::string> excludes;
  std::vector<watch::FilterRule> filters;
  uint32_t delay_ms = 0;
  // Layer 2: handlers that are Lua functions, and how to call one (config::LuaActions::call for
  // this sync): the commands it spawn()ed, run one after the other.
  std::set<std::string> functions;
  std::function<Result<std::vector<config::LuaActions::Spawned>>(const std::string& handler, const config::LuaActions::Event& e,
                                                              const config::LuaActions::Event* dest)>
      call;
};

// The argv lsyncd runs for `tmpl` with these variable values (exposed for tests).
std::vector<std::string> action_argv(const std::string& tmpl, const std::map<std::string, std::string>& vars);
// The command as lsyncd logs it: the values written in place of the variables.
std::string action_text(const std::string& tmpl, const std::map<std::string, std::string>& vars);

class ActionSync {
 public:
  ActionSync(uvx::Loop& loop, ActionOptions opts);
  ~ActionSync();
  ActionSync(const ActionSync&) = delete;
  ActionSync& operator=(const ActionSync&) = delete;

  Status start();
  bool idle() const noexcept;
  LsyncdView lsyncd_view() const;

 private:
  struct Ev {
    std::string etype;  // Create, Modify, Delete, Move, Startup
    std::string path, path2;
    bool is_dir = false;
    uint64_t due_ms = 0;
  };
  void on_batch(watch::Batch b);
  void queue(Ev e);
  void pump();
  struct Cmd {
    std::vector<std::string> argv;
    std::optional<std::string> stdin_text{};  // layer 2: spawn(..., '<', text)
  };
  std::vector<Cmd> commands_for(const Ev& e);
  void finished(int code);  // logs the end of running_ev_
  std::deque<Cmd> cmds_;    // the running event's commands still to start
  void learn_tree(const std::string& rel);  // adds every entry below rel to known_
  std::map<std::string, std::string> vars_for(const Ev& e) const;

  uvx::Loop& loop_;
  ActionOptions opts_;
  std::unique_ptr<fs::Root> root_;
  std::unique_ptr<watch::Watcher> watcher_;
  std::unique_ptr<uvx::Timer> timer_;
  std::unique_ptr<uvx::Process> running_;
  std::unique_ptr<uvx::Process> released_;  // finished; freed on the next turn, not in its own callback
  Ev running_ev_;
  std::deque<Ev> queue_;
  std::set<std::string> known_;  // paths seen, so a change is a Create or a Modify
};

}  // namespace syncd::runtime
