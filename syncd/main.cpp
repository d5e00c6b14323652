// syncd's entry point: lsyncd's command line and config files (syncd/cli.h, lib/config) -> a
// plan of runtime nodes (syncd/plan.h) -> the daemon: logs in lsyncd's formats, daemonizing,
// pidfile, statusFile, SIGHUP reload, SIGTERM/SIGINT drain; plus syncd's subcommands `attach`
// (run by sshd for a peer), `status` and `conflicts`.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <limits.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "lib/base/log.h"
#include "lib/base/memory.h"
#include "lib/codec/sha256.h"
#include "lib/config/config.h"
#include "lib/runtime/attach.h"
#include "lib/runtime/conflicts.h"
#include "lib/runtime/control.h"
#include "lib/runtime/direct.h"
#include "lib/runtime/lua_host.h"
#include "lib/runtime/memory_release.h"
#include "lib/runtime/mount_watch.h"
#include "lib/runtime/push.h"
#include "lib/uvx/uvx.h"
#include "syncd/cli.h"
#include "syncd/daemon.h"
#include "syncd/plan.h"
#include "syncd/status_file.h"

namespace {

constexpr const char* kVersion = "0.1.0";
constexpr const char* kLsyncdCompat = "2.2.3";

// Where state directories go by default: root's /var/lib/syncd; a normal user cannot write
// there, so theirs go where XDG puts a user's state (as `syncd attach` run by a peer's session
// logged in as that user needs one).
std::string state_base() {
  if (::geteuid() == 0) return "/var/lib/syncd";
  if (const char* x = std::getenv("XDG_STATE_HOME"); x != nullptr && x[0] == '/') return std::string(x) + "/syncd";
  if (const char* h = std::getenv("HOME"); h != nullptr && h[0] == '/') return std::string(h) + "/.local/state/syncd";
  return "/var/lib/syncd";  // nowhere better: the error names it, and -statedir moves it
}

std::string default_state_dir(const std::string& kind, const std::string& key) {
  auto h = syncd::codec::Sha256::of(syncd::as_bytes(key));
  return state_base() + "/" + kind + "-" + syncd::codec::to_hex(syncd::ByteSpan(h.data(), 6));
}

// The missing ancestors of a state directory (mode 0700; the directory itself is the index's to
// make): a host where no daemon ran yet has no /var/lib/syncd, and `attach` failed there.
void make_parents(const std::string& dir) {
  for (size_t slash = dir.find('/', 1); slash != std::string::npos; slash = dir.find('/', slash + 1)) {
    (void)::mkdir(dir.substr(0, slash).c_str(), 0700);  // what fails shows when the index opens
  }
}

// SIGTERM, SIGINT and SIGHUP handles for the daemon's whole life, routed to the running
// serve(). libuv puts SIG_DFL back when the last handle of a signal stops, so handles made per
// serve() left a window at each reload in which a second SIGHUP (or a SIGTERM) killed the daemon
// outright, without a log line (two SIGHUPs in quick succession did). A signal that arrives while
// no serve() listens is kept and handed to the next one.
class Signals {
 public:
  explicit Signals(syncd::uvx::Loop& loop)
      : term_(loop, SIGTERM, [this](int s) { deliver(s); }),
        intr_(loop, SIGINT, [this](int s) { deliver(s); }),
        hup_(loop, SIGHUP, [this](int s) { deliver(s); }) {}
  // While `h` is set, signals go to it; those that came while none was set wait in take_kept().
  void route(std::function<void(int)> h) { handler_ = std::move(h); }
  std::vector<int> take_kept() { return std::exchange(kept_, {}); }
  void keep(int sig) { kept_.push_back(sig); }

 private:
  void deliver(int sig) {
    if (handler_) return handler_(sig);
    kept_.push_back(sig);
  }
  std::function<void(int)> handler_;
  std::vector<int> kept_;
  syncd::uvx::Signal term_, intr_, hup_;
};

// Runs the loop until it ends on its own or a signal asks: SIGTERM/SIGINT let in-flight work
// finish (bounded by 5 s, checked through `faded`), then the exit code is 128+signal. SIGHUP
// calls on_hup (which may stop the loop for a reload: the result is then kReload); without one
// it ends the run as SIGTERM does. `idle`: nothing to do, when freed memory goes back to the
// system.
constexpr int kReload = -2;
int run_until_signal(syncd::uvx::Loop& loop, Signals& signals, const std::function<bool()>& faded,
                     const std::function<bool()>& idle, const std::function<bool()>& on_hup = {}) {
  using namespace syncd;
  auto& lg = log::get(log::Module::main);
  int got_signal = 0;
  bool reload = false;
  std::unique_ptr<uvx::Timer> drain;
  auto on_signal = [&](int sig) {
    if (sig == SIGHUP && on_hup) {
      if (reload) return signals.keep(sig);  // after this reload, another: the config may have changed again
      if (!got_signal && on_hup()) {
        reload = true;
        loop.stop();
      }
      return;
    }
    if (got_signal) return;
    got_signal = sig;
    lg.info("--- {} signal, fading ---", sig == SIGINT ? "INT" : sig == SIGHUP ? "HUP" : "TERM");
    auto start = loop.now_ms();
    drain = std::make_unique<uvx::Timer>(loop, [&, start] {
      if (faded() || loop.now_ms() - start > 5000) loop.stop();
    });
    drain->start(0, 10);
  };
  signals.route(on_signal);
  // Signals that came while no serve() listened (during a reload), handled from the loop.
  uvx::Timer kept(loop, [&] {
    for (int sig : signals.take_kept()) on_signal(sig);
  });
  kept.start(0);
  // What a burst of work freed goes back to the system once it is over (base/memory.h).
  runtime::MemoryRelease release(loop, idle);
  loop.run();
  signals.route({});
  if (got_signal) return 128 + got_signal;
  return reload ? kReload : 0;
}

// `--wait-idle` for one directory: a daemon that is still starting (no socket yet, or one not yet
// listening) is waited for within the same time, so `syncd -nodaemon ... & syncd status DIR
// --wait-idle` needs no retry loop of its own.
syncd::Result<std::string> wait_idle_request(const std::string& sock, const std::string& fmt,
                                            std::chrono::steady_clock::time_point deadline) {
  using namespace std::chrono;
  for (;;) {
    const long left = std::max<long>(duration_cast<milliseconds>(deadline - steady_clock::now()).count(), 0);
    auto r = syncd::runtime::control_request(sock, "wait-idle " + std::to_string(left) + " " + fmt, static_cast<int>(left) + 5000);
    const bool starting = !r.ok() && (r.error().is_errno(ENOENT) || r.error().is_errno(ECONNREFUSED));
    if (!starting || left == 0) return r;
    std::this_thread::sleep_for(milliseconds(std::min<long>(left, 20)));
  }
}

// `syncd status [DIR] [-rundir D] [--json] [--wait-idle [MS]]`: asks the daemon owning DIR, or
// every daemon with a socket in the run directory. Exit 0; 1 if --wait-idle timed out; 3 if no
// daemon answered.
int status_main(const std::vector<std::string>& args) {
  using namespace syncd;
  std::string rundir = runtime::kDefaultRunDir, dir;
  bool json = false;
  long wait_ms = -1;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "-rundir" && i + 1 < args.size()) {
      rundir = args[++i];
    } else if (a == "-json") {
      json = true;
    } else if (a == "-wait-idle") {
      wait_ms = 30000;
      if (i + 1 < args.size() && !args[i + 1].empty() && std::isdigit(static_cast<unsigned char>(args[i + 1][0]))) {
        wait_ms = std::atol(args[++i].c_str());
      }
    } else if (dir.empty() && !a.empty() && a[0] != '-') {
      dir = a;
    } else {
      std::fprintf(stderr, "usage: syncd status [DIR] [-rundir D] [--json] [--wait-idle [MS]]\n");
      return 255;
    }
  }
  // The run directory and the daemons' sockets are root's: a normal user is told so, not "no
  // daemon found".
  auto hint = [](const Error& e) {
    return e.is_errno(EACCES) ? std::string(" (the daemons' sockets are root's: run syncd status as root, or give -rundir)")
                              : std::string();
  };
  std::vector<std::string> sockets;
  std::string why_none;
  if (!dir.empty()) {
    auto p = runtime::control_socket_path(rundir, dir);
    if (!p.ok()) {
      std::fprintf(stderr, "syncd status: %s\n", p.error().message().c_str());
      return 3;
    }
    sockets.push_back(*p);
  } else if (DIR* d = ::opendir(rundir.c_str())) {
    while (auto* e = ::readdir(d)) {
      const std::string n = e->d_name;
      if (n.rfind("root-", 0) == 0 && n.size() > 5 && n.compare(n.size() - 5, 5, ".sock") == 0) sockets.push_back(rundir + "/" + n);
    }
    ::closedir(d);
    std::sort(sockets.begin(), sockets.end());
  } else if (errno != ENOENT) {
    const Error e = Error::from_errno("cannot list " + rundir);
    why_none = ": " + e.message() + hint(e);
  }
  const std::string fmt = json ? "json" : "text";
  const auto start = std::chrono::steady_clock::now();
  int answered = 0, code = 0;
  if (json && sockets.size() != 1) std::printf("[");
  for (const auto& sock : sockets) {
    auto r = wait_ms >= 0 && !dir.empty() ? wait_idle_request(sock, fmt, start + std::chrono::milliseconds(wait_ms))
                                          : runtime::control_request(sock, wait_ms >= 0 ? "wait-idle " + std::to_string(wait_ms) + " " + fmt : "status " + fmt,
                                                                     static_cast<int>(std::max<long>(wait_ms, 0) + 5000));
    if (!r.ok()) {
      if (!dir.empty()) {
        std::fprintf(stderr, "syncd status: no daemon answers for %s: %s%s\n", dir.c_str(), r.error().message().c_str(),
                     hint(r.error()).c_str());
      } else {
        why_none = "; " + r.error().message() + hint(r.error());  // the last socket's reason
      }
      continue;
    }
    if (json && sockets.size() != 1 && answered > 0) std::printf(",");
    ++answered;
    std::fputs(r->c_str(), stdout);
    const bool idle = r->find(json ? "\"idle\": true" : "idle: yes") != std::string::npos;
    if (wait_ms >= 0 && !idle) code = 1;
  }
  if (json && sockets.size() != 1) std::printf("]\n");
  if (answered == 0) {
    if (dir.empty()) std::fprintf(stderr, "syncd status: no syncd daemon found in %s%s\n", rundir.c_str(), why_none.c_str());
    return 3;
  }
  return code;
}

// `syncd conflicts DIR [--json]`: the conflict copies in the tree. Exit 0 with none, 1 with some
// (so monitoring can alert), 255 on errors.
int conflicts_main(const std::vector<std::string>& args) {
  using namespace syncd;
  std::string dir;
  bool json = false;
  for (const auto& a : args) {
    if (a == "-json") {
      json = true;
    } else if (dir.empty() && !a.empty() && a[0] != '-') {
      dir = a;
    } else {
      std::fprintf(stderr, "usage: syncd conflicts DIR [--json]\n");
      return 255;
    }
  }
  if (dir.empty()) {
    std::fprintf(stderr, "usage: syncd conflicts DIR [--json]\n");
    return 255;
  }
  auto list = runtime::find_conflict_copies(dir);
  if (!list.ok()) {
    std::fprintf(stderr, "syncd conflicts: %s\n", list.error().message().c_str());
    return 255;
  }
  std::fputs(runtime::format_conflicts(*list, json).c_str(), stdout);
  return list->empty() ? 0 : 1;
}

// `syncd attach DIR`: serve one push session on stdin/stdout. Logs go to stderr, which ssh
// carries back to the pusher's log.
int attach_main(const std::vector<std::string>& args) {
  using namespace syncd;
  runtime::AttachOptions o;
  std::string rundir = runtime::kDefaultRunDir;
  bool two_way = false;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "-statedir" && i + 1 < args.size()) {
      o.state_dir = args[++i];
    } else if (args[i] == "-rundir" && i + 1 < args.size()) {
      rundir = args[++i];
    } else if (args[i] == "-bidirectional") {
      two_way = true;
    } else if (args[i] == "-nofsync") {
      o.fsync = false;
    } else if (args[i] == "-sparse") {
      o.sparse = true;
    } else if (args[i] == "-devices") {
      o.devices = true;
    } else if (args[i] == "-specials") {
      o.specials = true;
    } else if (args[i] == "-delete" && i + 1 < args.size()) {
      // lsyncd's delete for a one-way push: true, false, startup, running.
      const std::string m = args[++i];
      o.rules.delete_startup = m == "true" || m == "startup";
      o.rules.delete_running = m == "true" || m == "running";
    } else if (args[i] == "-xattrs") {
      o.xattrs.user = true;
    } else if (args[i] == "-acls") {
      o.xattrs.acls = true;
    } else if (args[i] == "-backup") {
      o.rules.backup.enabled = true;
    } else if (args[i] == "-backup-dir" && i + 1 < args.size()) {
      o.rules.backup.dir = args[++i];
    } else if (args[i] == "-suffix" && i + 1 < args.size()) {
      o.rules.backup.suffix = args[++i];
    } else if (args[i] == "-existing") {
      o.rules.existing = true;
    } else if (args[i] == "-update") {
      o.rules.update = true;
    } else if (args[i] == "-inplace") {
      o.rules.inplace = true;
    } else if (args[i] == "-omit-dir-times") {
      o.rules.dir_times = false;
    } else if (args[i] == "-omit-link-times") {
      o.rules.link_times = false;
    } else if (args[i] == "-dry-run") {
      o.rules.dry_run = true;
    } else if (args[i] == "-exclude" && i + 1 < args.size()) {
      o.rules.excludes.push_back(args[++i]);
    } else if (args[i] == "-perishable-exclude" && i + 1 < args.size()) {
      o.rules.perishable.push_back(args[++i]);
    } else if (args[i] == "-filter" && i + 1 < args.size()) {
      // "+ PATTERN" / "- PATTERN", as lsyncd's filter{} writes them.
      const std::string r = args[++i];
      if (r.size() < 3 || (r[0] != '+' && r[0] != '-') || r[1] != ' ') {
        std::fprintf(stderr, "syncd attach: -filter wants '+ PATTERN' or '- PATTERN', got '%s'\n", r.c_str());
        return 255;
      }
      o.rules.filters.push_back({r[0] == '+', r.substr(2)});
    } else if (args[i] == "-delete-excluded") {
      o.rules.delete_excluded = true;
    } else if (args[i] == "-prune-empty-dirs") {
      o.rules.prune_empty_dirs = true;
    } else if (args[i] == "-empty-source-prunes") {
      o.rules.max_delete_share = 100;
    } else if (args[i] == "-max-delete-share" && i + 1 < args.size()) {
      const std::string v = args[++i];
      char* end = nullptr;
      const long n = std::strtol(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || n < 0 || n > 100) {
        std::fprintf(stderr, "syncd attach: -max-delete-share wants 0-100, got '%s'\n", v.c_str());
        return 255;
      }
      o.rules.max_delete_share = static_cast<int>(n);
    } else if (args[i] == "-per-dir-exclude" && i + 1 < args.size()) {
      o.rules.per_dir_excludes = args[++i];
    } else if (o.target.empty() && !args[i].empty() && args[i][0] != '-') {
      o.target = args[i];
    } else {
      std::fprintf(stderr, "syncd attach: unexpected argument '%s'\n", args[i].c_str());
      return 255;
    }
  }
  if (o.target.empty()) {
    std::fprintf(stderr, "usage: syncd attach DIR [-statedir DIR] [-nofsync]\n");
    return 255;
  }
  log::init();
  auto& lg = log::get(log::Module::main);
  // A daemon that owns DIR serves the session itself (one index, one writer per tree); attach
  // then only waits for it to finish.
  auto sock = runtime::control_socket_path(rundir, o.target);
  if (sock.ok()) {
    // A live daemon answers in milliseconds; one that is stopped (SIGSTOP) or hung would keep the
    // session waiting for good, with nobody told why.
    constexpr int kTakeMs = 10000;
    auto joined = runtime::control_join(*sock, two_way ? "two-way" : "one-way", 0, 1, kTakeMs);
    if (joined.ok()) return *joined;
    if (joined.error().is_errno(ETIMEDOUT)) {
      // Not served here either: the tree is that daemon's, and it may wake at any time.
      lg.error("attach {}: {}", o.target, joined.error().message());
      return 1;
    }
    const bool no_daemon = joined.error().is_errno(ENOENT) || joined.error().is_errno(ECONNREFUSED);
    if (two_way) {
      lg.error("attach {}: {}", o.target,
               no_daemon ? "no syncd daemon owns this directory on this host; two-way sync needs it running "
                           "(start syncd for it here, then the peer's next attempt joins it)"
                         : joined.error().message());
      return 1;
    }
    if (!no_daemon) lg.warn("attach {}: the daemon did not take the session ({}); serving it here", o.target, joined.error().message());
  } else if (two_way) {
    lg.error("attach {}: {}", o.target, sock.error().message());
    return 1;
  }
  if (o.state_dir.empty()) o.state_dir = default_state_dir("attach", o.target);
  make_parents(o.state_dir);
  ::signal(SIGPIPE, SIG_IGN);
  uvx::Loop loop;
  int code = 0;
  {
    runtime::Attach a(loop, o);
    auto st = a.start(UniqueFd(::dup(0)), UniqueFd(::dup(1)), [&](const Error& e) {
      // The pusher closing its end is the normal end of a session.
      if (!e.is(errc::truncated)) {
        lg.error("attach {}: {}", o.target, e.message());
        code = 1;
      }
      loop.stop();
    });
    if (!st) {
      lg.error("attach {}: cannot start: {}", o.target, st.error().message());
      return 255;
    }
    // SIGTERM (and SIGHUP) end a session at once, as sshd's end of it would.
    Signals signals(loop);
    const int sig = run_until_signal(loop, signals, [] { return true; }, [&] { return a.idle(); });
    if (sig) code = sig;
  }
  return code;
}

// One node of the plan, with its control socket. A node whose root is not the volume it synced
// (errc::wrong_volume: not mounted) is `halted` while the plan's other nodes run; it is started
// again every kHaltRetryMs until its volume is back.
constexpr uint64_t kHaltRetryMs = 5000;
// After a mount or unmount while a node is halted: its volume may be back. Started again this
// soon (a burst of mounts, as at boot, makes one attempt).
constexpr uint64_t kMountRetryMs = 100;
struct Running {
  const syncd::plan::Node* node = nullptr;
  std::unique_ptr<syncd::runtime::DirectMirror> direct;
  std::unique_ptr<syncd::runtime::Push> push;
  std::unique_ptr<syncd::runtime::ActionSync> actions;
  std::unique_ptr<syncd::runtime::ControlServer> control;
  std::string halted;  // why it is not running; empty while it runs
  Running() = default;
  Running(const Running&) = delete;
  Running& operator=(const Running&) = delete;
  // The node before its control server: a push ends its joined sessions through it.
  ~Running() {
    direct.reset();
    push.reset();
    actions.reset();
  }
  // A halted node is never idle (it is not in sync) and always drained (nothing in flight).
  bool idle() const { return !halted.empty() ? false : direct ? direct->idle() : push ? push->idle() : actions->idle(); }
  bool drained() const { return !halted.empty() || (direct ? direct->idle() : push ? push->drained() : actions->idle()); }
  syncd::runtime::LsyncdView view() const {
    if (!halted.empty()) return {};
    return direct ? direct->lsyncd_view() : push ? push->lsyncd_view() : actions->lsyncd_view();
  }
  std::string kind() const {
    using T = syncd::plan::Node::Type;
    return node->type == T::push ? (node->push.two_way ? "two-way" : "push") : node->type == T::direct ? "direct" : "actions";
  }
  std::string status(bool json) const {
    using namespace syncd;
    if (!halted.empty()) {
      const std::string retry = std::to_string(kHaltRetryMs / 1000);
      if (!json) {
        return "syncd " + kind() + " " + node->syncs[0].source + " -> " + node->target_text + " (pid " +
               std::to_string(::getpid()) + ")\n  HALTED: " + halted + "\n  started again after each mount and every " + retry +
               " s; the daemon's other syncs run\n";
      }
      return "{\"pid\": " + std::to_string(::getpid()) + ", \"mode\": " + runtime::json_string(kind()) +
             ", \"source\": " + runtime::json_string(node->syncs[0].source) + ", \"idle\": false, \"halted\": " +
             runtime::json_string(halted) + "}\n";
    }
    if (push) return push->status(json);
    if (actions) {
      const bool idle = actions->idle();
      const auto& o = node->actions;
      if (!json) return "syncd actions " + o.source + " -> " + o.target + "\n  idle: " + (idle ? "yes" : "no") + "\n";
      return "{\"pid\": " + std::to_string(::getpid()) + ", \"mode\": \"actions\", \"source\": " + runtime::json_string(o.source) +
             ", \"idle\": " + (idle ? "true" : "false") + "}\n";
    }
    return direct->status(json);
  }
};

// lsyncd's status file for the running nodes.
std::string status_report(const std::vector<std::unique_ptr<Running>>& nodes) {
  using namespace syncd;
  status_file::Report r;
  r.now = std::time(nullptr);
  bool first = true;
  for (const auto& n : nodes) {
    auto v = n->view();
    // A node serving several syncs (one source, several peers) reports its queue under the
    // first; lsyncd would show the same changes queued once per sync.
    for (size_t i = 0; i < n->node->syncs.size(); ++i) {
      const auto& s = n->node->syncs[i];
      r.syncs.push_back({s.name, s.source, i == 0 ? v.delays : std::vector<runtime::Sender::Delay>{}});
    }
    if (first) {
      r.root = n->node->syncs[0].source;
      r.watches = v.watches;
      first = false;
    }
    r.extra.push_back("syncd: " + n->kind() + " " + n->node->syncs[0].source + " -> " + n->node->target_text +
                      (!n->halted.empty() ? " (HALTED: " + n->halted + ")" : n->idle() ? " (idle)" : " (busy)"));
  }
  return status_file::format(r);
}

// Runs the plan's nodes until a signal; kReload after a SIGHUP whose new config is valid (then
// `next` holds it).
int serve(syncd::uvx::Loop& loop, Signals& signals, const syncd::config::Config& cfg, const syncd::plan::Plan& plan,
          const std::function<std::optional<std::pair<syncd::config::Config, syncd::plan::Plan>>()>& reload,
          std::optional<std::pair<syncd::config::Config, syncd::plan::Plan>>& next, const std::function<void()>& started) {
  using namespace syncd;
  auto& lg = log::get(log::Module::main);
  bool failed = false;  // a node that cannot go on stopped the loop
  std::vector<std::unique_ptr<Running>> nodes;
  std::vector<std::string> sockets;
  // Halted nodes are started again until their volume is back. systemctl status shows which.
  const auto notify_halted = [&] {
    std::string names;
    for (const auto& r : nodes) {
      if (!r->halted.empty()) names += (names.empty() ? "" : ", ") + r->node->syncs[0].name;
    }
    (void)daemon::notify("STATUS=" + (names.empty() ? std::string("running") : "halted (volume not there?): " + names));
  };
  std::unique_ptr<uvx::Timer> halt_retry;  // made below, once start_node exists
  // While a node is halted, a mount or unmount makes halt_retry run at once instead of at its
  // next turn (the timer still finds a directory made again at the path).
  std::unique_ptr<runtime::MountWatch> halt_mounts;
  bool mount_retry_due = false;
  const auto retry_halted = [&](bool soon) {
    if (soon) {
      halt_retry->start(kMountRetryMs, kHaltRetryMs);
    } else if (!halt_retry->active()) {
      halt_retry->start(kHaltRetryMs, kHaltRetryMs);
    }
    if (halt_mounts) return;
    auto m = runtime::MountWatch::start(loop, "halted syncs", [&] {
      if (mount_retry_due) return;
      mount_retry_due = true;
      halt_retry->start(kMountRetryMs, kHaltRetryMs);
    });
    if (m.ok()) {
      halt_mounts = std::move(*m);
    } else if (!m.error().is_errno(ENOENT)) {
      lg.warn("a halted sync starts again only every {} s: {}", kHaltRetryMs / 1000, m.error().message());
    }
  };
  // A root replaced under a running node (RootGuard): the node halts at once, so nothing more
  // goes through the directory it opened, and halt_retry starts it again on the directory at the
  // path, which compares the trees as any start does. Its objects go on the next loop turn, not
  // inside their own callback.
  uvx::Timer reap_halted(loop, [&] {
    for (auto& r : nodes) {
      if (r->halted.empty()) continue;
      r->direct.reset();
      r->push.reset();
    }
  });
  const auto on_root_replaced = [&](Running* r, const std::string& why) {
    lg.error("{} is halted: {}; started again after each mount and every {} s", r->node->syncs[0].name, why, kHaltRetryMs / 1000);
    r->halted = why;
    reap_halted.start(0);
    retry_halted(true);  // what is at the path now may be right (a volume mounted over it)
    notify_halted();
  };
  // Every push of this daemon takes its turn at one sshd (many syncs to one host would otherwise
  // overrun its MaxStartups at start).
  const auto dial_gate = std::make_shared<runtime::DialGate>();
  // Builds and starts the node's runtime object; on failure nothing of it is left.
  const auto start_node = [&](Running& r) -> Status {
    const plan::Node& n = *r.node;
    Status st;
    r.actions.reset();
    r.direct.reset();
    r.push.reset();
    if (n.type == plan::Node::Type::actions) {
      r.actions = std::make_unique<runtime::ActionSync>(loop, n.actions);
      st = r.actions->start();
    } else if (n.type == plan::Node::Type::direct) {
      auto o = n.direct;
      o.on_failed = [&loop, &failed, &lg](const std::string& why) {
        lg.error("terminating, the mirror cannot go on: {}", why);
        failed = true;
        loop.stop();
      };
      o.on_root_replaced = [&on_root_replaced, rp = &r](const std::string& why) { on_root_replaced(rp, why); };
      r.direct = std::make_unique<runtime::DirectMirror>(loop, std::move(o));
      st = r.direct->start();
    } else {
      auto o = n.push;
      o.dial_gate = dial_gate;
      o.on_root_replaced = [&on_root_replaced, rp = &r](const std::string& why) { on_root_replaced(rp, why); };
      r.push = std::make_unique<runtime::Push>(loop, std::move(o));
      st = r.push->start();
    }
    if (!st) {
      r.actions.reset();
      r.direct.reset();
      r.push.reset();
      return st;
    }
    if (n.type != plan::Node::Type::actions) {
      lg.info("recursive startup rsync: {} -> {}", n.syncs[0].source, n.target_text);  // lsyncd's wording: operators grep it
    }
    return {};
  };
  for (const auto& n : plan.nodes) {
    auto r = std::make_unique<Running>();
    r->node = &n;
    if (n.type != plan::Node::Type::actions) {
      // The state directory's parents (/var/lib/syncd, or a -statedir shared by several nodes).
      make_parents(n.type == plan::Node::Type::direct ? n.direct.state_dir : n.push.state_dir);
    }
    // The control socket first: it is what tells whether another daemon already serves this
    // root, and a second daemon must refuse before it scans, logs a startup or opens a session.
    // (Nothing is served on it before the loop runs, after every start.)
    const std::string& src = n.type == plan::Node::Type::direct ? n.direct.source
                             : n.type == plan::Node::Type::push ? n.push.source : n.actions.source;
    auto sock = runtime::control_socket_path(n.rundir, src);
    if (!sock.ok()) {
      lg.error("cannot start: {}", sock.error().message());
      return 255;
    }
    if (std::find(sockets.begin(), sockets.end(), *sock) == sockets.end()) {
      Running* raw = r.get();
      runtime::ControlServer::Handlers h{[raw](bool json) { return raw->status(json); }, [raw] { return raw->idle(); }, {}};
      if (n.type == plan::Node::Type::push) {
        h.attach = [raw](UniqueFd in, UniqueFd out, const std::string& how,
                         runtime::ControlServer::Handlers::Done done) -> std::function<void()> {
          if (!raw->push || !raw->halted.empty()) {  // halted: the peer's session ends with the reason, and it dials again
            done("error " + raw->node->syncs[0].source + " is halted: " + raw->halted + "\n");
            return nullptr;
          }
          return raw->push->serve_peer(std::move(in), std::move(out), how, std::move(done));
        };
      }
      r->control = std::make_unique<runtime::ControlServer>(loop, h);
      if (auto ls = r->control->listen(*sock); !ls) {
        lg.error("cannot start: {}", ls.error().message());
        return 255;
      }
      sockets.push_back(*sock);
    }
    if (auto st = start_node(*r); !st) {
      // One volume that did not mount stops only its own sync, where the config has others
      // (lsyncd would not start at all); alone, or for -onepass, it is a failed start.
      if (!st.error().is(errc::wrong_volume) || plan.nodes.size() == 1 || cfg.settings.onepass) {
        lg.error("cannot start {}: {}", n.syncs[0].name, st.error().message());
        return 255;
      }
      r->halted = st.error().context;
      lg.error("{} is halted, the other syncs run: {}; started again after each mount and every {} s", n.syncs[0].name, st.error().message(),
               kHaltRetryMs / 1000);
    }
    nodes.push_back(std::move(r));
  }
  if (std::all_of(nodes.begin(), nodes.end(), [](const auto& r) { return !r->halted.empty(); })) {
    lg.error("cannot start: every sync is halted");
    return 255;
  }
  halt_retry = std::make_unique<uvx::Timer>(loop, [&] {
    const char* cause = mount_retry_due ? " (a mount changed)" : "";
    mount_retry_due = false;
    bool changed = false;
    for (auto& r : nodes) {
      if (r->halted.empty()) continue;
      if (auto st = start_node(*r); !st) {
        if (st.error().context != r->halted) lg.error("{} is still halted: {}", r->node->syncs[0].name, st.error().message());
        r->halted = st.error().context;
        continue;
      }
      r->halted.clear();
      changed = true;
      lg.info("{} is no longer halted: started{}", r->node->syncs[0].name, cause);
    }
    if (changed) notify_halted();
    if (std::none_of(nodes.begin(), nodes.end(), [](const auto& r) { return !r->halted.empty(); })) {
      halt_retry->stop();  // nothing halted: no more wake-ups
      halt_mounts.reset();
    }
  });
  if (std::any_of(nodes.begin(), nodes.end(), [](const auto& r) { return !r->halted.empty(); })) {
    notify_halted();
    retry_halted(false);
  }
  auto all = [&](bool drained) {
    return std::all_of(nodes.begin(), nodes.end(), [&](const auto& n) { return drained ? n->drained() : n->idle(); });
  };

  // statusFile: rewritten at most every statusInterval seconds, when its content changed.
  std::unique_ptr<uvx::Timer> status_timer;
  std::string last_status;
  if (cfg.settings.status_file) {
    const std::string path = plan::absolute(*cfg.settings.status_file);
    const auto every = static_cast<uint64_t>(std::max(0.1, cfg.settings.status_interval) * 1000);
    status_timer = std::make_unique<uvx::Timer>(loop, [&, path] {
      std::string text = status_report(nodes);
      const std::string body = text.substr(text.find('\n'));  // without the date line
      if (body == last_status) return;
      if (auto st = status_file::write_atomically(path, text); !st) {
        lg.error("Cannot open status file \"{}\" :{}", path, st.error().message());
      }
      last_status = body;
    });
    status_timer->start(0, every);
  }
  // onepass: the startup sync, then exit 0.
  std::unique_ptr<uvx::Timer> onepass;
  if (cfg.settings.onepass) {
    onepass = std::make_unique<uvx::Timer>(loop, [&] {
      if (all(false)) {
        lg.info("onepass: startup sync finished, exiting");
        loop.stop();
      }
    });
    onepass->start(100, 50);
  }
  // The config's alarm() / observefd() / terminate() (lsyncd's runtime globals).
  std::optional<int> terminated;
  std::unique_ptr<runtime::LuaHost> lua_host;
  if (cfg.lua) {
    lua_host = std::make_unique<runtime::LuaHost>(loop, cfg.lua, [&](int code) {
      terminated = code;
      loop.stop();
    });
  }
  const auto drained = [&] { return all(true); };
  started();
  const int code = run_until_signal(loop, signals, drained, drained, [&] {
    lg.info("--- HUP signal, resetting ---");
    if (auto n = daemon::notify("RELOADING=1"); !n) lg.warn("{}", n.error().message());
    next = reload();
    if (!next) (void)daemon::notify("READY=1");  // the old configuration keeps running
    return next.has_value();
  });
  return terminated ? *terminated : failed ? 255 : code;
}

// Loads the config (file or command-line syncs) and plans it; lsyncd's "Error: ..." text.
syncd::Result<std::pair<syncd::config::Config, syncd::plan::Plan>> load(const syncd::cli::Invocation& inv) {
  using namespace syncd;
  auto cfg = inv.config_file ? config::load_file(*inv.config_file, inv.cl) : config::from_command_line(inv.cl);
  if (!cfg.ok()) return cfg.error();
  auto p = plan::make(*cfg, inv.extras, default_state_dir);
  if (!p.ok()) return p.error();
  return std::make_pair(std::move(*cfg), std::move(*p));
}

void log_plan(const syncd::config::Config& cfg, const syncd::plan::Plan& plan) {
  auto& lg = syncd::log::get(syncd::log::Module::main);
  for (const auto& w : plan.warnings) lg.warn("{}", w);
  for (const auto& n : plan.notes) lg.info("{}", n);
  if (cfg.settings.inotify_mode && *cfg.settings.inotify_mode != "CloseWrite") {
    lg.info("inotifyMode {}: syncd always ships a file on close-write, and one still open once its size and mtime settled",
            *cfg.settings.inotify_mode);
  }
}

int run_main(const syncd::cli::Invocation& inv) {
  using namespace syncd;
  auto loaded = load(inv);
  if (!loaded.ok()) {
    std::fprintf(stderr, "Error: %s\n", loaded.error().context.c_str());
    return 255;
  }
  auto [cfg, plan] = std::move(*loaded);
  const auto& st = cfg.settings;
  log::init();
  auto& lg = log::get(log::Module::main);
  log::use_lsyncd_console();
  for (const auto& c : inv.log) {
    if (c == "scarce") spdlog::apply_all([](std::shared_ptr<spdlog::logger> l) { l->set_level(spdlog::level::warn); });
    else if (c == "all" || c != "Normal") spdlog::apply_all([](std::shared_ptr<spdlog::logger> l) { l->set_level(spdlog::level::debug); });
  }
  if (st.logfile) {
    if (const std::string why = log::add_file_sink(plan::absolute(*st.logfile)); !why.empty()) {
      std::fprintf(stderr, "Error: Cannot open logfile [%s]!\n", st.logfile->c_str());
      return 255;
    }
  }
  if (!st.nodaemon) {
    lg.info("--- Startup, daemonizing ---");
    if (int code = daemon::detach(); code >= 0) return code;  // the starting process
    if (!st.logfile) {
      if (const std::string why = log::use_syslog(st.logident.value_or("lsyncd"), st.logfacility.value_or("user")); !why.empty()) {
        lg.error("{}", why);
        return 255;
      }
    }
  } else {
    lg.info("--- Startup ---");
  }
  // Written and locked after the fork (the daemon's pid), also under -nodaemon (systemd units
  // pass -pidfile); removed on exit.
  daemon::PidFile pid_file;
  if (st.pidfile) {
    if (auto s = pid_file.take(plan::absolute(*st.pidfile)); !s) {
      lg.error("{}", s.error().message());
      return 255;
    }
  }
  ::signal(SIGPIPE, SIG_IGN);
  log_plan(cfg, plan);
  uvx::Loop loop;
  Signals signals(loop);
  for (;;) {
    std::optional<std::pair<config::Config, plan::Plan>> next;
    const int code = serve(loop, signals, cfg, plan, [&]() -> std::optional<std::pair<config::Config, plan::Plan>> {
      auto fresh = load(inv);
      if (!fresh.ok()) {
        lg.error("config reload failed, keeping the running configuration: {}", fresh.error().context);
        return std::nullopt;
      }
      return std::move(*fresh);
    }, next, [&] {
      // Every node started and its control socket listens: `syncd status` works from here on.
      daemon::ready();
      if (auto n = daemon::notify("READY=1"); !n) lg.warn("{}", n.error().message());
    });
    if (code != kReload) return code;
    // Everything queued is in the index (durable) or still on disk to be rescanned: the new
    // nodes' startup scans pick it up, nothing is lost across the reload.
    cfg = std::move(next->first);
    plan = std::move(next->second);
    if (cfg.settings.logfile != st.logfile || cfg.settings.pidfile != st.pidfile) {
      lg.warn("logfile/pidfile changes take effect at the next restart");
    }
    log_plan(cfg, plan);
  }
}

}  // namespace

int main(int argc, char** argv) {
  using namespace syncd;
  base::keep_freed_memory();  // before any thread: glibc reads these settings unlocked
  // A two-way node probes files for local writers with a lease (fs/writers.h); a lease broken in
  // that microsecond signals SIGIO, which must not end the daemon.
  ::signal(SIGIO, SIG_IGN);
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty()) {
    std::vector<std::string> rest(args.begin() + 1, args.end());
    for (auto& a : rest) {
      if (a.rfind("--", 0) == 0) a.erase(0, 1);  // one or two dashes
    }
    if (args[0] == "attach") return attach_main(rest);
    if (args[0] == "status") return status_main(rest);
    if (args[0] == "conflicts") return conflicts_main(rest);
  }
  auto inv = cli::parse(args);
  if (!inv.ok()) {
    std::fprintf(stderr, "Error: %s\n", inv.error().context.c_str());
    return 255;
  }
  switch (inv->action) {
    case cli::Invocation::Action::version:
      std::printf("Version: %s (syncd %s, compatible with lsyncd %s)\n", kLsyncdCompat, kVersion, kLsyncdCompat);
      return 0;
    case cli::Invocation::Action::help:
      std::fputs(cli::usage_text(), stdout);
      return 255;  // lsyncd 2.2.3 exits -1 after its help
    case cli::Invocation::Action::run:
      break;
  }
  return run_main(*inv);
}
