// syncd's entry point: argv (lsyncd's shapes) -> a runtime node -> exit code.
// Today: `-direct SRC DST` (one-way local mirror through the full engine), `-rsyncssh SRC HOST
// DIR` (push over SSH to `syncd attach DIR` on HOST; with -bidirectional a two-way mesh),
// `attach DIR` (the peer end, run by sshd), `status`, `conflicts`, `-version`, `-help`;
// daemonizing, -pidfile and -logfile. Configuration files: issue #6.
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "lib/base/log.h"
#include "lib/codec/sha256.h"
#include "lib/runtime/attach.h"
#include "lib/runtime/conflicts.h"
#include "lib/runtime/control.h"
#include "lib/runtime/direct.h"
#include "lib/runtime/push.h"
#include "lib/uvx/uvx.h"

namespace {

constexpr const char* kVersion = "0.1.0";
constexpr const char* kLsyncdCompat = "2.2.3";

int usage(std::FILE* out) {
  std::fprintf(out,
               "usage: syncd [-nodaemon] [OPTIONS] -direct SRC DIR\n"
               "       syncd [-nodaemon] [OPTIONS] -rsyncssh SRC [USER@]HOST DIR\n"
               "       syncd attach DIR [-statedir DIR] [-rundir D] [-bidirectional] [-nofsync]\n"
               "                        (run by sshd for a push; joins the daemon owning DIR if one runs)\n"
               "options:\n"
               "  -nodaemon        stay in the foreground (default: daemonize)\n"
               "  -logfile FILE    also append the log to FILE\n"
               "  -pidfile FILE    write and lock FILE with the daemon's pid (also with -nodaemon)\n"
               "  -statedir DIR    where the indexes live (default /var/lib/syncd/direct-<hash>)\n"
               "  -exclude PATTERN lsyncd exclude pattern (repeatable)\n"
               "  -nofsync         do not fsync applied files (benchmarks only)\n"
               "  -rsh CMD         ssh command line for -rsyncssh (default \"ssh\"), as rsync.rsh\n"
               "  -remote-syncd P  syncd program on the host (default \"syncd\" on PATH)\n"
               "  -remote-statedir D  state directory of `attach` on the host\n"
               "  -transport T     auto (default), libssh2 or openssh\n"
               "  -rundir DIR      where the control socket goes (default /run/syncd)\n"
               "  -bidirectional   two-way sync with HOST (whose syncd runs the same the other way)\n"
               "  -peer HOST DIR   two-way: one more node of the mesh (repeatable; up to 4 besides -rsyncssh)\n"
               "  -remote-rundir D run directory of the daemon on the last given host (for attach to join it)\n"
               "  -tombstone-min-age S, -tombstone-max-age S  keep delete records S seconds once every\n"
               "                   peer applied them (default 7 days), at most S (default 180 days)\n"
               "  -conflict-hook CMD  two-way: run CMD PATH COPY ROOT for each conflict copy made here\n"
               "  -max-delete-share PCT  two-way: a scan missing more than PCT%% of the files propagates\n"
               "                   no deletes (default 50; 100 = off, for one deliberate mass delete)\n"
               "       syncd status [DIR] [-rundir D] [--json] [--wait-idle [MS]]\n"
               "       syncd conflicts DIR [--json]   (conflict copies in the tree; exit 1 if any)\n"
               "  -delay N, -log X accepted for lsyncd compatibility\n"
               "  -version, -help\n");
  return out == stdout ? 0 : 255;
}

std::string default_state_dir(const std::string& kind, const std::string& key) {
  auto h = syncd::codec::Sha256::of(syncd::as_bytes(key));
  return "/var/lib/syncd/" + kind + "-" + syncd::codec::to_hex(syncd::ByteSpan(h.data(), 6));
}

std::string absolute(const std::string& p) {
  if (p.empty() || p[0] == '/') return p;
  char buf[PATH_MAX];
  if (::realpath(p.c_str(), buf) != nullptr) return buf;
  if (::getcwd(buf, sizeof buf) == nullptr) return p;
  return std::string(buf) + "/" + p;
}

// Detaches from the terminal (fork, setsid, chdir /, stdio to /dev/null) before any thread
// exists. Returns the exit code for the parent, or -1 in the daemon. The parent returns only once
// the daemon said it is detached and holds its pidfile (daemon_ready), so whoever started it —
// an init script, a test that kills the starter's process group — never races the detach, and a
// daemon that fails that early makes the parent exit 255.
int g_ready_fd = -1;
int daemonize() {
  int ready[2];
  if (::pipe2(ready, O_CLOEXEC) != 0) {
    std::perror("syncd: pipe");
    return 255;
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    std::perror("syncd: fork");
    return 255;
  }
  if (pid > 0) {
    ::close(ready[1]);
    char ok = 0;
    ssize_t n;
    do {
      n = ::read(ready[0], &ok, 1);
    } while (n < 0 && errno == EINTR);
    if (n == 1 && ok == 'k') return 0;
    std::fprintf(stderr, "syncd: the daemon did not start (see its log)\n");
    return 255;
  }
  ::close(ready[0]);
  g_ready_fd = ready[1];
  ::setsid();
  if (::chdir("/") != 0) std::perror("syncd: chdir /");
  const int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null >= 0) {
    for (int fd = 0; fd < 3; ++fd) ::dup2(null, fd);
    if (null > 2) ::close(null);
  }
  return -1;
}

// The pidfile: created 0644, locked with lockf(F_TLOCK) for the daemon's life (a second daemon
// with the same pidfile refuses to start), removed on exit.
class PidFile {
 public:
  PidFile() = default;
  PidFile(const PidFile&) = delete;
  PidFile& operator=(const PidFile&) = delete;
  ~PidFile() {
    if (fd_ >= 0) {
      ::unlink(path_.c_str());
      ::close(fd_);
    }
  }
  syncd::Status take(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) return syncd::Error::from_errno("pidfile " + path);
    if (::lockf(fd, F_TLOCK, 0) != 0) {
      ::close(fd);
      return syncd::Error::make(syncd::errc::unsupported, "pidfile " + path + " is locked: another syncd runs with it");
    }
    const std::string pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd, 0) != 0 || ::write(fd, pid.data(), pid.size()) != static_cast<ssize_t>(pid.size())) {
      const auto e = syncd::Error::from_errno("write pidfile " + path);
      ::close(fd);
      return e;
    }
    fd_ = fd;
    path_ = path;
    return {};
  }

 private:
  int fd_ = -1;
  std::string path_;
};

// The daemon's control socket, named for the directory it owns (status, and attach joining).
syncd::Status start_control(syncd::runtime::ControlServer& c, const std::string& rundir, const std::string& root) {
  SYNCD_TRY_ASSIGN(path, syncd::runtime::control_socket_path(rundir, root));
  return c.listen(path);
}

// Runs the loop until it ends on its own or a signal asks: SIGTERM/SIGINT let in-flight work
// finish (bounded by 5 s, checked through `idle`), then the exit code is 128+signal.
int run_until_signal(syncd::uvx::Loop& loop, const std::function<bool()>& idle) {
  using namespace syncd;
  auto& lg = log::get(log::Module::main);
  int got_signal = 0;
  std::unique_ptr<uvx::Timer> drain;
  auto on_signal = [&](int sig) {
    if (got_signal) return;
    got_signal = sig;
    lg.info("signal {}: finishing in-flight work", sig);
    auto start = loop.now_ms();
    drain = std::make_unique<uvx::Timer>(loop, [&, start] {
      if (idle() || loop.now_ms() - start > 5000) loop.stop();
    });
    drain->start(0, 10);
  };
  uvx::Signal term(loop, SIGTERM, on_signal);
  uvx::Signal intr(loop, SIGINT, on_signal);
  loop.run();
  return got_signal ? 128 + got_signal : 0;
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
  std::vector<std::string> sockets;
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
  }
  const std::string fmt = json ? "json" : "text";
  const std::string req = wait_ms >= 0 ? "wait-idle " + std::to_string(wait_ms) + " " + fmt : "status " + fmt;
  int answered = 0, code = 0;
  if (json && sockets.size() != 1) std::printf("[");
  for (const auto& sock : sockets) {
    auto r = runtime::control_request(sock, req, static_cast<int>(std::max<long>(wait_ms, 0) + 5000));
    if (!r.ok()) {
      if (!dir.empty()) std::fprintf(stderr, "syncd status: no daemon answers for %s: %s\n", dir.c_str(), r.error().message().c_str());
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
    if (dir.empty()) std::fprintf(stderr, "syncd status: no syncd daemon found in %s\n", rundir.c_str());
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
    auto joined = runtime::control_join(*sock, two_way ? "two-way" : "one-way", 0, 1);
    if (joined.ok()) return *joined;
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
    const int sig = run_until_signal(loop, [] { return true; });
    if (sig) code = sig;
  }
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace syncd;
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) == 0) a.erase(0, 1);  // one or two dashes, as lsyncd
    args.push_back(a);
  }
  if (!args.empty() && args[0] == "attach") return attach_main({args.begin() + 1, args.end()});
  if (!args.empty() && args[0] == "status") return status_main({args.begin() + 1, args.end()});
  if (!args.empty() && args[0] == "conflicts") return conflicts_main({args.begin() + 1, args.end()});
  bool nodaemon = false, fsync = true, two_way = false;
  std::string logfile, pidfile;
  int max_delete_share = 50;
  std::string conflict_hook;
  uint64_t tomb_min = 7 * 86400, tomb_max = 180 * 86400;
  // Peers: the -rsyncssh one first, then -peer ones; -remote-rundir applies to the last given.
  std::vector<runtime::PeerSpec> peers;
  std::string src, dst, host, state, remote_state, rsh = "ssh", remote_syncd = "syncd", transport = "auto";
  std::string rundir = runtime::kDefaultRunDir;
  std::vector<std::string> excludes;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto need = [&](size_t n) {
      if (i + n >= args.size()) {
        std::fprintf(stderr, "syncd: %s needs %zu argument(s)\n", a.c_str(), n);
        std::exit(255);
      }
    };
    if (a == "-version") {
      std::printf("Version: syncd %s (compatible with lsyncd %s)\n", kVersion, kLsyncdCompat);
      return 0;
    } else if (a == "-help") {
      return usage(stdout);
    } else if (a == "-nodaemon") {
      nodaemon = true;
    } else if (a == "-nofsync") {
      fsync = false;
    } else if (a == "-bidirectional") {
      two_way = true;
    } else if (a == "-max-delete-share") {
      need(1);
      max_delete_share = std::atoi(args[++i].c_str());
      if (max_delete_share < 0 || max_delete_share > 100) {
        std::fprintf(stderr, "syncd: -max-delete-share takes a percentage (0-100)\n");
        return 255;
      }
    } else if (a == "-remote-rundir") {
      need(1);
      if (peers.empty()) {
        std::fprintf(stderr, "syncd: -remote-rundir must follow -rsyncssh or -peer\n");
        return 255;
      }
      peers.back().remote_args.insert(peers.back().remote_args.end(), {"-rundir", args[++i]});
    } else if (a == "-tombstone-min-age" || a == "-tombstone-max-age") {
      need(1);
      (a == "-tombstone-min-age" ? tomb_min : tomb_max) = std::strtoull(args[++i].c_str(), nullptr, 10);
    } else if (a == "-conflict-hook") {
      need(1);
      conflict_hook = args[++i];
    } else if (a == "-peer") {
      need(2);
      peers.push_back({args[i + 1], args[i + 2], {}});
      i += 2;
    } else if (a == "-direct") {
      need(2);
      src = args[++i];
      dst = args[++i];
    } else if (a == "-rsyncssh") {
      need(3);
      src = args[++i];
      host = args[++i];
      dst = args[++i];
      peers.insert(peers.begin(), runtime::PeerSpec{host, dst, {}});
    } else if (a == "-rsh") {
      need(1);
      rsh = args[++i];
    } else if (a == "-remote-syncd") {
      need(1);
      remote_syncd = args[++i];
    } else if (a == "-transport") {
      need(1);
      transport = args[++i];
    } else if (a == "-rundir") {
      need(1);
      rundir = args[++i];
    } else if (a == "-remote-statedir") {
      need(1);
      remote_state = args[++i];
    } else if (a == "-statedir") {
      need(1);
      state = args[++i];
    } else if (a == "-exclude") {
      need(1);
      excludes.push_back(args[++i]);
    } else if (a == "-logfile") {
      need(1);
      logfile = args[++i];
    } else if (a == "-pidfile") {
      need(1);
      pidfile = args[++i];
    } else if (a == "-delay" || a == "-log") {
      need(1);
      ++i;
    } else {
      std::fprintf(stderr, "syncd: unsupported argument '%s' in this version\n", a.c_str());
      return usage(stderr);
    }
  }
  if (src.empty()) return usage(stderr);
  if (peers.size() > 1 && (!two_way || host.empty())) {
    std::fprintf(stderr, "syncd: -peer needs -rsyncssh ... -bidirectional (a two-way mesh)\n");
    return 255;
  }
  if (peers.size() > 5) {
    std::fprintf(stderr, "syncd: a two-way mesh has at most 5 nodes (this one and 4 peers)\n");
    return 255;
  }
  // A daemon runs from "/": every local path is made absolute first (also keeps the default
  // state directory the same whatever the working directory).
  src = absolute(src);
  if (host.empty()) dst = absolute(dst);
  if (!state.empty()) state = absolute(state);
  log::init();
  auto& lg = log::get(log::Module::main);
  if (!logfile.empty()) {
    if (const std::string why = log::add_file_sink(absolute(logfile)); !why.empty()) {
      std::fprintf(stderr, "Cannot open logfile [%s]! (%s)\n", logfile.c_str(), why.c_str());
      return 255;
    }
  }
  if (!nodaemon) {
    lg.info("--- Startup, daemonizing ---");
    if (int code = daemonize(); code >= 0) return code;  // the parent's exit
  } else {
    lg.info("--- Startup ---");
  }
  // Written and locked after the fork (the daemon's pid), also under -nodaemon (systemd units
  // pass -pidfile); removed on exit.
  PidFile pid_file;
  if (!pidfile.empty()) {
    if (auto st = pid_file.take(absolute(pidfile)); !st) {
      lg.error("{}", st.error().message());
      return 255;
    }
  }
  if (g_ready_fd >= 0) {  // detached, pidfile held: the starting process may return
    (void)!::write(g_ready_fd, "k", 1);
    ::close(g_ready_fd);
    g_ready_fd = -1;
  }
  ::signal(SIGPIPE, SIG_IGN);
  uvx::Loop loop;

  if (!host.empty()) {
    runtime::PushOptions o;
    o.source = src;
    o.peers = peers;
    o.state_dir = state.empty() ? default_state_dir("push", src + "\n" + host + "\n" + dst) : state;
    o.excludes = excludes;
    o.rsh = rsh;
    o.remote_syncd = remote_syncd;
    o.transport = transport;
    if (!fsync) o.remote_args.push_back("-nofsync");
    if (!remote_state.empty()) o.remote_args.insert(o.remote_args.end(), {"-statedir", remote_state});
    o.two_way = two_way;
    o.conflict_hook = conflict_hook;
    o.tombstone_min_age_s = tomb_min;
    o.tombstone_max_age_s = tomb_max;
    o.max_delete_share = static_cast<uint32_t>(max_delete_share);
    o.apply.fsync = fsync;
    if (two_way) o.remote_args.push_back("-bidirectional");
    runtime::Push push(loop, o);
    if (auto st = push.start(); !st) {
      lg.error("cannot start: {}", st.error().message());
      return 255;
    }
    runtime::ControlServer control(
        loop, {[&](bool json) { return push.status(json); }, [&] { return push.idle(); },
               [&](UniqueFd in, UniqueFd out, const std::string& how, runtime::ControlServer::Handlers::Done done) {
                 return push.serve_peer(std::move(in), std::move(out), how, std::move(done));
               }});
    if (auto st = start_control(control, rundir, src); !st) {
      lg.error("cannot start: {}", st.error().message());
      return 255;
    }
    lg.info("{} {} -> {}:{} (state {})", two_way ? "two-way sync" : "pushing", src, host, dst, o.state_dir);
    return run_until_signal(loop, [&] { return push.drained(); });
  }

  runtime::DirectOptions o;
  o.source = src;
  o.target = dst;
  o.state_dir = state.empty() ? default_state_dir("direct", src + "\n" + dst) : state;
  o.excludes = excludes;
  o.fsync = fsync;
  runtime::DirectMirror mirror(loop, o);
  if (auto st = mirror.start(); !st) {
    lg.error("cannot start: {}", st.error().message());
    return 255;
  }
  runtime::ControlServer control(loop, {[&](bool json) {
                                          const bool idle = mirror.idle();
                                          if (!json) return "syncd -direct " + src + " -> " + dst + "\n  idle: " + (idle ? "yes" : "no") + "\n";
                                          return "{\"pid\": " + std::to_string(::getpid()) + ", \"mode\": \"direct\", \"source\": " +
                                                 runtime::json_string(src) + ", \"target\": " + runtime::json_string(dst) +
                                                 ", \"idle\": " + (idle ? "true" : "false") + "}\n";
                                        },
                                        [&] { return mirror.idle(); }, {}});
  if (auto st = start_control(control, rundir, src); !st) {
    lg.error("cannot start: {}", st.error().message());
    return 255;
  }
  lg.info("mirroring {} -> {} (state {})", src, dst, o.state_dir);
  return run_until_signal(loop, [&] { return mirror.idle(); });
}
