// ssh bench (issue #4): how long a change in SRC takes to be visible in DIR on the peer over SSH,
// for syncd (`-rsyncssh`, both transports) and, in the same run when installed, lsyncd 2.2.3's
// default.rsyncssh with delay = 0, plainly and with ssh ControlMaster/ControlPersist (the best an
// lsyncd user can tune it to). Everything runs against one private OpenSSH sshd on 127.0.0.1 (a
// fresh one per tool, same keys), reached through a byte-counting TCP relay: the wire bytes are
// what really crossed the connection, both directions, SSH framing included.
//
//   build/benches/ssh_bench [--samples 50] [--burst 1000] [--big-mib 100] [--throughput-mib 1024]
//                           [--json FILE] [--only syncd] [--syncd PATH] [--lsyncd PATH] [--dir BASE]
//                           [--inplace] [--seeded [--seed-files 2000] [--stale]]
// --inplace adds two rows with rsync.inplace set in the config: syncd (libssh2) and lsyncd
// (rsync --inplace); `--only "syncd libssh2 inplace"` runs just the first.
// --seeded: SRC also holds `seed-files` files of 16 KiB, and DIR starts as a copy of SRC (`cp -a`),
// as after a switch from lsyncd: the initial sync rows then show what it costs to find the
// target already in sync (time until the tool says its startup finished, wire bytes until then).
// --stale: and SRC changed after that copy, as after lsyncd was stopped for a while: 1 KiB of the
// big file rewritten in the middle and 1 KiB appended, 1 in 100 of the 16 KiB files rewritten.
// The initial sync then ends when DIR's big file has the new size (both tools rename it in).
//
// Workloads, each timed from just before the change until DIR shows it (checked on every inotify
// event in DIR, never by sleeping): create a 2 KiB file, modify it, chmod it, rename it, delete
// it (each `samples` times, one at a time); a burst of `burst` files of 1.5 KiB; 1 KiB changed at
// a random offset of a 100 MiB file (5 samples; wire bytes per change). CPU: user+system seconds
// of the tool's whole process tree and the sshd tree serving it (both ends run on this machine),
// read from /proc just before the tool stops.
// Throughput: a 1 GiB random file through syncd against `ssh host 'cat > file'` on the same sshd.
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/process.h"
#include "tests/support/relay.h"
#include "tests/support/sshd.h"
#include "tests/support/tmpdir.h"

namespace {

using Clock = std::chrono::steady_clock;
using syncd::test::Child;
using syncd::test::SshServer;

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }


// Re-evaluates `done` on every inotify event in `dir` until it holds (or 120 s pass).
class Watch {
 public:
  explicit Watch(const std::string& dir) {
    fd_ = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    ::inotify_add_watch(fd_, dir.c_str(), IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_CLOSE_WRITE | IN_ATTRIB |
                                              IN_DELETE | IN_MODIFY);
  }
  ~Watch() { ::close(fd_); }
  bool until(const std::function<bool()>& done, int timeout_ms = 120000) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      if (done()) return true;
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      ::poll(&p, 1, static_cast<int>(std::min<long>(left, 50)));  // 50 ms cap: a missed event costs little
      char buf[8192];
      while (::read(fd_, buf, sizeof buf) > 0) {
      }
    }
  }

 private:
  int fd_;
};

struct Stat {
  double p50 = -1, p90 = -1, p99 = -1;
  static Stat of(std::vector<double> v) {
    Stat s;
    if (v.empty()) return s;
    std::sort(v.begin(), v.end());
    auto at = [&](double q) { return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))]; };
    s.p50 = at(0.50);
    s.p90 = at(0.90);
    s.p99 = at(0.99);
    return s;
  }
};

struct ToolResult {
  std::string name;
  bool ok = false;
  std::string failure;
  std::map<std::string, Stat> lat;  // workload -> latency stats (ms)
  std::vector<std::string> never;   // workloads the tool did not propagate within 10 s
  double burst_ms = -1;
  double big_wire_median = -1;      // bytes on the wire per 1 KiB change in the big file
  int big_equal = -1;               // 1: the big file matched the source after the edits; 0: not within 10 s
  double cpu_s = -1;
  uint64_t wire_total = 0;
  double initial_ms = -1;     // from the tool's start until its startup finished and DIR has the big file
  uint64_t initial_wire = 0;  // wire bytes until then
};

bool file_size_is(const std::string& p, off_t n) {
  struct stat st{};
  return ::stat(p.c_str(), &st) == 0 && st.st_size == n;
}
bool mode_is(const std::string& p, mode_t m) {
  struct stat st{};
  return ::stat(p.c_str(), &st) == 0 && (st.st_mode & 07777) == m;
}
bool gone(const std::string& p) {
  struct stat st{};
  return ::lstat(p.c_str(), &st) != 0;
}
void write_bytes(const std::string& p, const std::string& data) {
  const int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0 || ::write(fd, data.data(), data.size()) != static_cast<ssize_t>(data.size())) std::abort();
  ::close(fd);
}
std::string read_at(const std::string& p, off_t off, size_t n) {
  std::string out(n, '\0');
  const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  const ssize_t r = ::pread(fd, out.data(), n, off);
  ::close(fd);
  return r == static_cast<ssize_t>(n) ? out : std::string();
}

// CPU-seconds of `root` and every descendant, counting each process's own time plus what it has
// reaped (utime + stime + cutime + cstime from /proc), read while the trees are still alive.
// getrusage(RUSAGE_CHILDREN) after the fact lost the sshd side: a listener stopped right after its
// sessions ended had not always reaped them (their attach processes' CPU went uncounted).
double tree_cpu_s(pid_t root) {
  if (root <= 0) return 0;
  std::map<pid_t, std::vector<pid_t>> kids;
  std::map<pid_t, double> own;
  const double tick = static_cast<double>(::sysconf(_SC_CLK_TCK));
  DIR* d = ::opendir("/proc");
  if (!d) return 0;
  while (struct dirent* e = ::readdir(d)) {
    const pid_t pid = static_cast<pid_t>(std::atoi(e->d_name));
    if (pid <= 0) continue;
    std::ifstream f("/proc/" + std::string(e->d_name) + "/stat");
    std::string line;
    if (!std::getline(f, line)) continue;
    const size_t close = line.rfind(')');  // the command name may contain spaces and parentheses
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    std::vector<std::string> fld;  // fld[0] is field 3 (state)
    for (std::string x; rest >> x && fld.size() < 15;) fld.push_back(x);
    if (fld.size() < 15) continue;
    kids[static_cast<pid_t>(std::atoi(fld[1].c_str()))].push_back(pid);
    own[pid] = (std::atof(fld[11].c_str()) + std::atof(fld[12].c_str()) + std::atof(fld[13].c_str()) +
                std::atof(fld[14].c_str())) / tick;
  }
  ::closedir(d);
  double total = 0;
  std::vector<pid_t> todo{root};
  while (!todo.empty()) {
    const pid_t p = todo.back();
    todo.pop_back();
    total += own[p];
    for (pid_t k : kids[p]) todo.push_back(k);
  }
  return total;
}

struct Options {
  int samples = 50, burst = 1000, big_mib = 100, throughput_mib = 1024;
  bool nofsync = false;  // syncd's throughput run without fsync (`ssh cat` does not fsync either)
  bool inplace = false;  // also the rsync.inplace rows
  bool seeded = false;   // DIR starts as a copy of SRC
  bool stale = false;    // ... and SRC changed since (implies seeded)
  int seed_files = 2000;
  std::string json, only, syncd, lsyncd = "/usr/bin/lsyncd", base = "/tmp";
};

using ArgvFn = std::function<std::vector<std::string>(const std::string& dir, const std::string& src,
                                                      const std::string& dst, const std::string& rsh_base,
                                                      const SshServer& sshd, int port, const std::string& kh)>;

ToolResult run_tool(const Options& o, const std::string& name, const ArgvFn& make_argv, const std::string& ready) {
  ToolResult r;
  r.name = name;
  std::string dir = o.base + "/syncd-sshbench-XXXXXX";
  if (!::mkdtemp(dir.data())) {
    std::perror(("mkdtemp " + dir + " (--dir must exist)").c_str());
    std::exit(2);
  }
  const std::string src = dir + "/src", dst = dir + "/dst", log = dir + "/tool.log";
  ::mkdir(src.c_str(), 0755);
  ::mkdir(dst.c_str(), 0755);
  // The big file exists before the tool starts: its initial copy is not part of the timing.
  (void)syncd::test::run("head -c " + std::to_string(o.big_mib) + "M /dev/urandom > " + src + "/big.bin");
  if (o.seeded) {
    (void)syncd::test::run("mkdir " + src + "/seed && cd " + src + "/seed && head -c " +
                           std::to_string(o.seed_files * 16) + "K /dev/urandom | split -b 16K -a 5 - f");
    (void)syncd::test::run("cp -a " + src + "/. " + dst + "/");
  }
  off_t big_size = static_cast<off_t>(o.big_mib) << 20;
  if (o.stale) {
    const std::string big = src + "/big.bin";
    (void)syncd::test::run("head -c 1K /dev/urandom | dd of=" + big + " bs=1K seek=" + std::to_string(o.big_mib * 512) +
                           " conv=notrunc status=none && head -c 1K /dev/urandom >> " + big);
    big_size += 1024;
    (void)syncd::test::run("cd " + src + "/seed && ls | awk 'NR % 100 == 1' | while read f; do head -c 16K /dev/urandom > $f; done");
  }
  {
    SshServer sshd(dir + "/sshd");
    sshd.start();
    syncd::test::ByteRelay relay(sshd.port());
    const std::string kh = syncd::test::relay_known_hosts(sshd, relay.port(), dir + "/known_hosts.relay");
    const std::string rsh = syncd::test::relay_rsh(sshd, relay.port(), kh);
    auto tool = std::make_unique<Child>(make_argv(dir, src, dst, rsh, sshd, relay.port(), kh), log);
    Watch w(dst);
    const auto t_start = Clock::now();
    if (!syncd::test::wait_for_text(log, ready, 0, 120000) ||
        !w.until([&] { return file_size_is(dst + "/big.bin", big_size); }, 600000)) {
      r.failure = "did not start (log " + log + ")";
      return r;
    }
    r.initial_ms = ms_since(t_start);
    const uint64_t wire0 = relay.bytes();
    r.initial_wire = wire0;
    std::fprintf(stderr, "  %s: started, initial sync in %.0f ms, %llu wire bytes\n", name.c_str(), r.initial_ms,
                 static_cast<unsigned long long>(wire0));
    std::map<std::string, std::vector<double>> lat;
    // A change a tool does not propagate (lsyncd's default rsync flags carry no permissions) is
    // reported as "never" after 10 s, once; its later samples are skipped.
    std::set<std::string> never;
    auto timed = [&](const std::string& wl, const std::function<void()>& change, const std::function<bool()>& visible) {
      const auto t0 = Clock::now();
      change();
      if (never.count(wl)) return true;
      if (!w.until(visible, 10000)) {
        never.insert(wl);
        r.never.push_back(wl);
        return true;
      }
      lat[wl].push_back(ms_since(t0));
      return true;
    };
    for (int i = 0; i < o.samples && r.failure.empty(); ++i) {
      const std::string f = "f" + std::to_string(i), g = "g" + std::to_string(i);
      const std::string sf = src + "/" + f, df = dst + "/" + f, sg = src + "/" + g, dg = dst + "/" + g;
      timed("create 2 KiB", [&] { write_bytes(sf, std::string(2048, 'c')); }, [&] { return file_size_is(df, 2048); });
      timed("modify", [&] { write_bytes(sf, std::string(2100, 'm')); }, [&] { return file_size_is(df, 2100); });
      timed("chmod", [&] { ::chmod(sf.c_str(), 0600); }, [&] { return mode_is(df, 0600); });
      timed("rename", [&] { ::rename(sf.c_str(), sg.c_str()); }, [&] { return gone(df) && file_size_is(dg, 2100); });
      timed("delete", [&] { ::unlink(sg.c_str()); }, [&] { return gone(dg); });
      // Whatever a tool did not propagate must not confuse the next sample.
      if (!never.empty() && !w.until([&] { return gone(dg) && gone(df); }, 10000)) {
        r.failure = "leftovers from sample " + std::to_string(i) + " never went away";
      }
    }
    if (r.failure.empty()) {
      const auto t0 = Clock::now();
      for (int i = 0; i < o.burst; ++i) write_bytes(src + "/b" + std::to_string(i), std::string(1536, 'b'));
      if (w.until([&] {
            for (int i = o.burst - 1; i >= 0; --i) {
              if (!file_size_is(dst + "/b" + std::to_string(i), 1536)) return false;
            }
            return true;
          })) {
        r.burst_ms = ms_since(t0);
      } else {
        r.failure = "burst incomplete";
      }
    }
    std::vector<double> wire;
    std::mt19937_64 rng(42);
    for (int i = 0; i < 5 && r.failure.empty(); ++i) {
      const off_t off = static_cast<off_t>(rng() % ((static_cast<uint64_t>(o.big_mib) << 20) - 1024));
      std::string patch(1024, '\0');
      for (auto& c : patch) c = static_cast<char>(rng());
      const uint64_t before = relay.bytes();
      const size_t had = lat["1 KiB in 100 MiB"].size();
      if (!timed("1 KiB in 100 MiB", [&] {
            const int fd = ::open((src + "/big.bin").c_str(), O_WRONLY | O_CLOEXEC);
            (void)!::pwrite(fd, patch.data(), patch.size(), off);
            ::close(fd);
          }, [&] { return read_at(dst + "/big.bin", off, patch.size()) == patch; }) ||
          lat["1 KiB in 100 MiB"].size() == had) {
        break;
      }
      // Let trailing acknowledgements land before counting (they belong to this change).
      const auto settle = Clock::now();
      uint64_t last = relay.bytes();
      while (ms_since(settle) < 300) {
        ::poll(nullptr, 0, 20);
        if (relay.bytes() != last) last = relay.bytes();
      }
      wire.push_back(static_cast<double>(relay.bytes() - before));
    }
    if (!wire.empty()) r.big_wire_median = Stat::of(wire).p50;
    // Seeing the edited bytes is the timing; the whole file must match too (a delta that copied a
    // stale range would show here, not in the timing). Within 10 s: lsyncd may still have an
    // rsync queued for the last edit after an earlier one already carried its bytes.
    const auto same_file = [&] { return syncd::test::run("cmp -s '" + src + "/big.bin' '" + dst + "/big.bin'") == 0; };
    if (!wire.empty()) r.big_equal = same_file() || w.until(same_file, 10000) ? 1 : 0;
    r.wire_total = relay.bytes() - wire0;
    for (auto& [wl, v] : lat) r.lat[wl] = Stat::of(v);
    r.cpu_s = tree_cpu_s(tool->pid()) + tree_cpu_s(sshd.pid());
    (void)tool->stop(SIGTERM);
    sshd.stop_gracefully();
  }
  r.ok = r.failure.empty();
  (void)syncd::test::run("rm -rf " + dir);
  return r;
}

bool dir_empty(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return true;
  bool empty = true;
  while (struct dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) {
      empty = false;
      break;
    }
  }
  ::closedir(d);
  return empty;
}

// 1 GiB through syncd vs `ssh 'cat > file'`, same sshd, same key; seconds each.
std::pair<double, double> throughput(const Options& o, const std::string& transport) {
  std::string dir = o.base + "/syncd-sshtp-XXXXXX";
  if (!::mkdtemp(dir.data())) {
    std::perror(("mkdtemp " + dir + " (--dir must exist)").c_str());
    std::exit(2);
  }
  const std::string src = dir + "/src", dst = dir + "/dst", stage = dir + "/stage.bin";
  ::mkdir(src.c_str(), 0755);
  ::mkdir(dst.c_str(), 0755);
  (void)syncd::test::run("head -c " + std::to_string(o.throughput_mib) + "M /dev/urandom > " + stage + " && sync");
  double syncd_s = -1, cat_s = -1;
  {
    SshServer sshd(dir + "/sshd");
    sshd.start();
    const std::string rsh = sshd.rsh();
    const auto t0 = Clock::now();
    if (syncd::test::run(rsh + " 127.0.0.1 'cat > " + dst + "/cat.bin' < " + stage) == 0) cat_s = ms_since(t0) / 1000;
    ::unlink((dst + "/cat.bin").c_str());
    std::vector<std::string> argv{o.syncd, "-nodaemon", "-rsyncssh", src, "127.0.0.1", dst, "-statedir", dir + "/state",
                                  "-rsh", rsh, "-remote-syncd", o.syncd, "-remote-statedir", dir + "/rstate",
                                  "-transport", transport};
    if (o.nofsync) argv.push_back("-nofsync");
    Child tool(argv, dir + "/tool.log");
    if (syncd::test::wait_for_text(dir + "/tool.log", "finished: 0", 0, 60000)) {
      Watch w(dst);
      const auto t1 = Clock::now();
      ::rename(stage.c_str(), (src + "/big.bin").c_str());
      // When the receiver's temp file first shows up: what came before it is the sender's work
      // before the first byte (detecting and hashing the new file).
      double first_s = -1;
      if (w.until([&] {
            if (first_s < 0 && !dir_empty(dst)) first_s = ms_since(t1) / 1000;
            return file_size_is(dst + "/big.bin", static_cast<off_t>(o.throughput_mib) << 20);
          }, 600000)) {
        syncd_s = ms_since(t1) / 1000;
        std::fprintf(stderr, "  syncd %s: %d MiB, first bytes in DST after %.2f s, complete after %.2f s "
                     "(ssh 'cat > file' %.2f s)\n", transport.c_str(), o.throughput_mib, first_s, syncd_s, cat_s);
      }
    }
    (void)tool.stop(SIGTERM);
    sshd.stop_gracefully();
  }
  (void)syncd::test::run("rm -rf " + dir);
  return {syncd_s, cat_s};
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    o += c;
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  const std::string self = argv[0];
  o.syncd = self.substr(0, self.rfind('/')) + "/../syncd/syncd";
  auto absolute = [](const std::string& p) {
    char buf[PATH_MAX];
    return ::realpath(p.c_str(), buf) ? std::string(buf) : p;  // the remote shell has another cwd
  };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--samples") o.samples = std::atoi(next().c_str());
    else if (a == "--burst") o.burst = std::atoi(next().c_str());
    else if (a == "--big-mib") o.big_mib = std::atoi(next().c_str());
    else if (a == "--throughput-mib") o.throughput_mib = std::atoi(next().c_str());
    else if (a == "--nofsync") o.nofsync = true;
    else if (a == "--inplace") o.inplace = true;
    else if (a == "--seeded") o.seeded = true;
    else if (a == "--seed-files") o.seed_files = std::atoi(next().c_str());
    else if (a == "--stale") o.stale = o.seeded = true;
    else if (a == "--json") o.json = next();
    else if (a == "--only") o.only = next();
    else if (a == "--syncd") o.syncd = next();
    else if (a == "--lsyncd") o.lsyncd = next();
    else if (a == "--dir") o.base = next();
    else {
      std::fprintf(stderr, "unknown argument %s (see the header of benches/ssh_bench.cpp)\n", a.c_str());
      return 2;
    }
  }
  o.syncd = absolute(o.syncd);
  if (::geteuid() != 0) {
    std::fprintf(stderr, "ssh_bench runs sshd and needs root\n");
    return 2;
  }
  std::vector<ToolResult> results;
  auto syncd_argv = [&](const std::string& transport) {
    return [&o, transport](const std::string& dir, const std::string& src, const std::string& dst, const std::string& rsh,
                           const SshServer&, int, const std::string&) {
      return std::vector<std::string>{o.syncd, "-nodaemon", "-rsyncssh", src, "127.0.0.1", dst, "-statedir", dir + "/state",
                                      "-rsh", rsh, "-remote-syncd", o.syncd, "-remote-statedir", dir + "/rstate",
                                      "-transport", transport};
    };
  };
  // --inplace: syncd from a config with rsync.inplace (its CLI has no such flag, as lsyncd's has not).
  auto syncd_inplace_argv = [&](const std::string& dir, const std::string& src, const std::string& dst, const std::string& rsh,
                                const SshServer&, int, const std::string&) {
    std::ofstream(dir + "/syncd.conf")
        << "settings { nodaemon = true }\n"
        << "sync { default.rsyncssh, source = \"" << src << "\", host = \"127.0.0.1\", targetdir = \"" << dst << "\",\n"
        << "  rsync = { inplace = true, rsh = \"" << rsh << "\" },\n"
        << "  syncd = { remoteSyncd = \"" << o.syncd << "\", remoteStateDir = \"" << dir << "/rstate\", transport = \"libssh2\" } }\n";
    return std::vector<std::string>{o.syncd, "-nodaemon", "-statedir", dir + "/state", dir + "/syncd.conf"};
  };
  auto lsyncd_argv = [&](bool control_master, bool inplace = false) {
    return [&o, control_master, inplace](const std::string& dir, const std::string& src, const std::string& dst, const std::string&,
                                         const SshServer& sshd, int port, const std::string& kh) {
      std::ofstream c(dir + "/lsyncd.conf");
      c << "settings { nodaemon = true, logfile = \"" << dir << "/lsyncd.log\" }\n"
        << "sync { default.rsyncssh, source = \"" << src << "\", host = \"127.0.0.1\", targetdir = \"" << dst << "\",\n"
        << "  delay = 0,\n"
        << (inplace ? "  rsync = { inplace = true },\n" : "")
        << "  ssh = { port = " << port << ", identityFile = \"" << sshd.client_key() << "\",\n"
        << "    options = { UserKnownHostsFile = \"" << kh << "\", StrictHostKeyChecking = \"yes\""
        << (control_master ? ", ControlMaster = \"auto\", ControlPath = \"" + dir + "/cm-%r@%h:%p\", ControlPersist = \"60\"" : "")
        << " } } }\n";
      return std::vector<std::string>{o.lsyncd, dir + "/lsyncd.conf"};
    };
  };
  auto want = [&](const std::string& n) { return o.only.empty() || n.rfind(o.only, 0) == 0; };
  std::fprintf(stderr, "ssh bench: %d samples per workload, burst %d, big file %d MiB%s\n", o.samples, o.burst, o.big_mib,
               o.stale ? ", DIR seeded with a copy of SRC, SRC changed since" : o.seeded ? ", DIR seeded with a copy of SRC" : "");
  if (want("syncd libssh2")) results.push_back(run_tool(o, "syncd libssh2", syncd_argv("libssh2"), "finished: 0"));
  if (want("syncd openssh")) results.push_back(run_tool(o, "syncd openssh", syncd_argv("openssh"), "finished: 0"));
  const bool have_lsyncd = ::access(o.lsyncd.c_str(), X_OK) == 0;
  if (o.inplace) {
    if (want("syncd libssh2 inplace")) results.push_back(run_tool(o, "syncd libssh2 inplace", syncd_inplace_argv, "finished: 0"));
    if (have_lsyncd && want("lsyncd rsyncssh inplace")) {
      results.push_back(run_tool(o, "lsyncd rsyncssh inplace", lsyncd_argv(false, true), "finished"));
    }
  }
  if (have_lsyncd) {
    if (want("lsyncd rsyncssh")) results.push_back(run_tool(o, "lsyncd rsyncssh delay=0", lsyncd_argv(false), "finished"));
    if (want("lsyncd ControlMaster")) {
      results.push_back(run_tool(o, "lsyncd rsyncssh delay=0 ControlMaster", lsyncd_argv(true), "finished"));
    }
  } else {
    std::printf("lsyncd not found at %s: comparison rows skipped (apt-get install lsyncd)\n", o.lsyncd.c_str());
  }
  std::pair<double, double> tp_native{-1, -1}, tp_openssh{-1, -1};
  if (o.throughput_mib > 0 && want("throughput")) {
    tp_native = throughput(o, "libssh2");
    tp_openssh = throughput(o, "openssh");
  }

  const char* workloads[] = {"create 2 KiB", "modify", "chmod", "rename", "delete", "1 KiB in 100 MiB"};
  std::printf("\nssh bench: p50 / p90 / p99 ms, %d samples each (the big-file edit: 5)\n\n", o.samples);
  std::printf("%-20s", "workload");
  for (const auto& r : results) std::printf(" | %-26.26s", r.name.c_str());
  std::printf("\n");
  for (const char* wl : workloads) {
    std::printf("%-20s", wl);
    for (const auto& r : results) {
      auto it = r.lat.find(wl);
      if (it == r.lat.end()) {
        const bool nv = std::find(r.never.begin(), r.never.end(), wl) != r.never.end();
        std::printf(" | %-26s", nv ? "never (10 s)" : r.ok ? "-" : "FAILED");
      } else {
        char cell[64];
        std::snprintf(cell, sizeof cell, "%.2f / %.2f / %.2f", it->second.p50, it->second.p90, it->second.p99);
        std::printf(" | %-26s", cell);
      }
    }
    std::printf("\n");
  }
  auto row = [&](const std::string& label, const std::function<std::string(const ToolResult&)>& f) {
    std::printf("%-20s", label.c_str());
    for (const auto& r : results) std::printf(" | %-26s", f(r).c_str());
    std::printf("\n");
  };
  auto num = [](double v, const char* fmt) {
    char b[64];
    std::snprintf(b, sizeof b, fmt, v);
    return v < 0 ? std::string("-") : std::string(b);
  };
  const char* start_row = o.stale ? "stale start" : o.seeded ? "seeded start" : "initial sync";
  row(std::string(start_row) + " ms", [&](const ToolResult& r) { return num(r.initial_ms, "%.0f"); });
  row(std::string(start_row) + " wire B",
      [&](const ToolResult& r) { return num(static_cast<double>(r.initial_wire), "%.0f"); });
  row("burst ms", [&](const ToolResult& r) { return num(r.burst_ms, "%.1f"); });
  row("wire B / 1 KiB edit", [&](const ToolResult& r) { return num(r.big_wire_median, "%.0f"); });
  row("big file == source", [&](const ToolResult& r) {
    return std::string(r.big_equal < 0 ? "-" : r.big_equal ? "yes" : "NO (10 s after the last edit)");
  });
  row("wire bytes total", [&](const ToolResult& r) { return num(static_cast<double>(r.wire_total), "%.0f"); });
  row("CPU s (both ends)", [&](const ToolResult& r) { return num(r.cpu_s, "%.2f"); });
  for (const auto& r : results) {
    if (!r.ok) std::printf("%s FAILED: %s\n", r.name.c_str(), r.failure.c_str());
  }
  std::printf("\n");
  for (size_t i = 0; i < results.size(); ++i) {
    for (size_t j = 0; j < results.size(); ++j) {
      const auto& a = results[i];
      const auto& b = results[j];
      if (a.name.rfind("syncd", 0) != 0 || b.name.rfind("lsyncd", 0) != 0 || !a.ok || !b.ok) continue;
      const double ra = b.lat.at("create 2 KiB").p50 / a.lat.at("create 2 KiB").p50;
      std::printf("%s vs %s: create p50 %.0fx faster, burst %.1fx faster, CPU %.1fx less, big-edit wire %.1fx less\n",
                  a.name.c_str(), b.name.c_str(), ra, b.burst_ms / a.burst_ms, b.cpu_s / a.cpu_s,
                  b.big_wire_median / a.big_wire_median);
    }
  }
  if (tp_native.first > 0 || tp_openssh.first > 0) {
    const double mib = o.throughput_mib;
    // Each transport is compared with the `ssh cat` run just before it (same fresh sshd): this VM's
    // ssh speed drifts by 2x within minutes, so both are printed.
    std::printf("throughput, %d MiB random file: syncd libssh2 %.2f s (%.0f MiB/s) vs ssh 'cat > file' %.2f s: %.0f%%; "
                "syncd openssh %.2f s (%.0f MiB/s) vs ssh 'cat > file' %.2f s: %.0f%%\n",
                o.throughput_mib, tp_native.first, mib / tp_native.first, tp_native.second,
                100 * tp_native.second / tp_native.first, tp_openssh.first, mib / tp_openssh.first, tp_openssh.second,
                100 * tp_openssh.second / tp_openssh.first);
  }
  std::printf("targets: create p50 <= 1 ms, p99 <= 5 ms; >= 200x lsyncd delay=0, >= 15x lsyncd ControlMaster;\n"
              "burst <= 150 ms; 1 KiB edit of 100 MiB: <= 2 KiB on the wire, visible <= 50 ms; throughput >= 90%% of ssh cat\n");
  if (!o.json.empty()) {
    std::ofstream j(o.json);
    j << "{\"samples\": " << o.samples << ", \"burst\": " << o.burst << ", \"seeded\": " << (o.seeded ? "true" : "false")
      << ", \"stale\": " << (o.stale ? "true" : "false")
      << ", \"tools\": [";
    for (size_t i = 0; i < results.size(); ++i) {
      const auto& r = results[i];
      j << (i ? ", " : "") << "{\"name\": \"" << json_escape(r.name) << "\", \"ok\": " << (r.ok ? "true" : "false")
        << ", \"failure\": \"" << json_escape(r.failure) << "\", \"burst_ms\": " << r.burst_ms
        << ", \"big_edit_wire_bytes\": " << r.big_wire_median << ", \"big_file_equal\": " << r.big_equal << ", \"wire_bytes\": " << r.wire_total
        << ", \"cpu_s\": " << r.cpu_s << ", \"initial_ms\": " << r.initial_ms << ", \"initial_wire_bytes\": " << r.initial_wire
        << ", \"never\": [";
      for (size_t k = 0; k < r.never.size(); ++k) j << (k ? ", " : "") << "\"" << r.never[k] << "\"";
      j << "], \"latency_ms\": {";
      size_t k = 0;
      for (const auto& [wl, s] : r.lat) {
        j << (k++ ? ", " : "") << "\"" << wl << "\": {\"p50\": " << s.p50 << ", \"p90\": " << s.p90 << ", \"p99\": " << s.p99 << "}";
      }
      j << "}}";
    }
    j << "], \"throughput\": {\"mib\": " << o.throughput_mib << ", \"ssh_cat_s\": " << tp_native.second
      << ", \"syncd_libssh2_s\": " << tp_native.first << ", \"ssh_cat_before_openssh_s\": " << tp_openssh.second
      << ", \"syncd_openssh_s\": " << tp_openssh.first << "}}\n";
  }
  for (const auto& r : results) {
    if (!r.ok) return 1;
  }
  return 0;
}
