// two-way bench (issue #5): two nodes A and B on this machine, each writing 500 small files at
// the same moment into the same synced tree, over one private OpenSSH sshd on 127.0.0.1:
//   disjoint   A writes a0..a499, B writes b0..b499 (no path in common);
//   same       A and B both write s0..s499, each with its own content (500 true conflicts).
// Reported per tool: time until both trees are identical (checked on every inotify event in
// either tree, never by sleeping; 60 s cap), conflict copies found, and versions lost (a written
// content that is in no file on either node afterwards). A writer that finds the other node's
// version of a name already there (it arrived before this node got to that name: the threads are
// never exactly in step) overwrites it as any later write does; that version was superseded, not
// lost, and is counted apart ("overwritten later"). syncd runs as two -bidirectional
// daemons; lsyncd 2.2.3, when installed, as two default.rsyncssh instances (delay = 0) pushing at
// each other — the setup operators use today.
//
//   build/benches/two_way_bench [--files 500] [--only syncd] [--syncd PATH] [--lsyncd PATH] [--dir BASE]
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/process.h"
#include "tests/support/sshd.h"
#include "tests/support/tmpdir.h"

namespace {

using Clock = std::chrono::steady_clock;
using syncd::test::Child;
using syncd::test::SshServer;

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

struct Options {
  int files = 500;
  std::string only, syncd, lsyncd = "/usr/bin/lsyncd", base = "/tmp";
};

// name -> content of the regular files directly in `dir` (the workloads write flat trees).
std::map<std::string, std::string> snapshot(const std::string& dir) {
  std::map<std::string, std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  while (auto* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n == "." || n == ".." || n.rfind(".syncd", 0) == 0 || n.rfind(".", 0) == 0) continue;
    struct stat st{};
    if (::lstat((dir + "/" + n).c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    out[n] = syncd::test::read_file(dir + "/" + n);
  }
  ::closedir(d);
  return out;
}

// Waits (inotify on both trees, 50 ms cap per wait) until `done` holds or the time is up.
bool until_both(const std::string& a, const std::string& b, const std::function<bool()>& done, int timeout_ms) {
  const int fd = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  for (const auto* d : {&a, &b}) {
    ::inotify_add_watch(fd, d->c_str(), IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_CLOSE_WRITE | IN_DELETE | IN_ATTRIB);
  }
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  bool ok = false;
  for (;;) {
    if (done()) {
      ok = true;
      break;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) break;
    pollfd p{fd, POLLIN, 0};
    ::poll(&p, 1, static_cast<int>(std::min<long>(left, 50)));
    char buf[8192];
    while (::read(fd, buf, sizeof buf) > 0) {
    }
  }
  ::close(fd);
  return ok;
}

struct Result {
  std::string tool, workload;
  bool converged = false;
  double ms = -1;
  size_t conflicts = 0, lost = 0, written = 0, superseded = 0;
};

using Launch = std::function<std::vector<std::unique_ptr<Child>>(const std::string& dir, const std::string& a,
                                                                const std::string& b, const SshServer& sshd)>;

Result run(const Options& o, const std::string& tool, const std::string& workload, const Launch& launch,
           const std::string& ready) {
  Result r{tool, workload};
  std::string dir = o.base + "/syncd-twowaybench-XXXXXX";
  if (!::mkdtemp(dir.data())) std::abort();
  const std::string a = dir + "/a", b = dir + "/b";
  ::mkdir(a.c_str(), 0755);
  ::mkdir(b.c_str(), 0755);
  SshServer sshd(dir + "/sshd");
  sshd.start();
  auto procs = launch(dir, a, b, sshd);
  for (const char* n : {"a", "b"}) {
    if (!syncd::test::wait_for_text(dir + "/" + n + ".log", ready, 0, 60000)) {
      std::fprintf(stderr, "  %s: node %s did not start (log %s/%s.log)\n", tool.c_str(), n, dir.c_str(), n);
      return r;
    }
  }
  // Both directions are up when a marker from each side has reached the other.
  syncd::test::write_file(a + "/.ready-a", "x");
  syncd::test::write_file(b + "/.ready-b", "x");
  if (!syncd::test::wait_for(b, ".ready-a", 60000) || !syncd::test::wait_for(a, ".ready-b", 60000)) {
    std::fprintf(stderr, "  %s: the nodes never exchanged a file\n", tool.c_str());
    return r;
  }
  // What is written, by whom: every content is unique, so "lost" can be checked by content.
  std::set<std::string> contents;
  std::set<std::string> names;
  std::mutex superseded_mu;
  std::set<std::string> superseded;  // versions overwritten by a later write of the other writer
  auto writer = [&](const std::string& root, const std::string& node) {
    for (int i = 0; i < o.files; ++i) {
      const std::string name = (workload == "same" ? "s" : node) + std::to_string(i);
      std::string body = node + ":" + name + ":" + std::string(1500, static_cast<char>('a' + i % 26));
      const std::string path = root + "/" + name;
      // O_EXCL tells a fresh create from an overwrite of what arrived first; what is there is read
      // through the same open file that then takes this node's bytes, so nothing slips between.
      int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      if (fd < 0 && errno == EEXIST) {
        fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
        std::string before(4096, '\0');
        const ssize_t n = fd >= 0 ? ::pread(fd, before.data(), before.size(), 0) : -1;
        if (n > 0) {
          before.resize(static_cast<size_t>(n));
          std::lock_guard lk(superseded_mu);
          superseded.insert(before);
        }
        if (fd >= 0 && ::ftruncate(fd, 0) != 0) std::abort();
      }
      if (fd < 0 || ::pwrite(fd, body.data(), body.size(), 0) != static_cast<ssize_t>(body.size())) std::abort();
      ::close(fd);
    }
  };
  for (const char* node : {"a", "b"}) {
    for (int i = 0; i < o.files; ++i) {
      const std::string name = (workload == "same" ? "s" : std::string(node)) + std::to_string(i);
      contents.insert(std::string(node) + ":" + name + ":" + std::string(1500, static_cast<char>('a' + i % 26)));
      names.insert(name);
    }
  }
  r.written = contents.size();
  const auto t0 = Clock::now();
  std::thread ta([&] { writer(a, "a"); });
  std::thread tb([&] { writer(b, "b"); });
  ta.join();
  tb.join();
  r.converged = until_both(a, b, [&] {
    const auto sa = snapshot(a), sb = snapshot(b);
    if (sa != sb) return false;
    for (const auto& n : names) {
      if (!sa.count(n)) return false;
    }
    return true;
  }, 60000);
  if (r.converged) r.ms = ms_since(t0);
  const auto sa = snapshot(a), sb = snapshot(b);
  std::set<std::string> held;
  for (const auto* s : {&sa, &sb}) {
    for (const auto& [n, c] : *s) {
      held.insert(c);
      if (n.find(".sync-conflict-") != std::string::npos) ++r.conflicts;
    }
  }
  r.conflicts /= r.converged ? 2 : 1;  // each copy exists on both nodes once converged
  for (const auto& c : contents) {
    if (held.count(c)) continue;
    if (superseded.count(c)) {
      ++r.superseded;
    } else {
      ++r.lost;
    }
  }
  procs.clear();
  (void)syncd::test::run("rm -rf " + dir);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  const std::string self = argv[0];
  o.syncd = self.substr(0, self.rfind('/')) + "/../syncd/syncd";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--files") o.files = std::atoi(next().c_str());
    else if (a == "--only") o.only = next();
    else if (a == "--syncd") o.syncd = next();
    else if (a == "--lsyncd") o.lsyncd = next();
    else if (a == "--dir") o.base = next();
    else {
      std::fprintf(stderr, "unknown argument %s (see the header of benches/two_way_bench.cpp)\n", a.c_str());
      return 2;
    }
  }
  char buf[PATH_MAX];
  if (::realpath(o.syncd.c_str(), buf)) o.syncd = buf;
  if (::geteuid() != 0) {
    std::fprintf(stderr, "two_way_bench runs sshd and needs root\n");
    return 2;
  }
  const Launch syncd_pair = [&](const std::string& dir, const std::string& a, const std::string& b, const SshServer& sshd) {
    std::vector<std::unique_ptr<Child>> v;
    for (const auto& [me, peer, n] : {std::tuple{a, b, "a"}, std::tuple{b, a, "b"}}) {
      const std::string other = std::string(n) == "a" ? "b" : "a";
      v.push_back(std::make_unique<Child>(
          std::vector<std::string>{o.syncd, "-nodaemon", "-rsyncssh", me, "127.0.0.1", peer, "-remote-rundir",
                                   dir + "/run-" + other, "-bidirectional", "-statedir", dir + "/state-" + n,
                                   "-rundir", dir + "/run-" + n, "-rsh", sshd.rsh(), "-remote-syncd", o.syncd,
                                   "-transport", "libssh2"},
          dir + "/" + n + ".log"));
    }
    return v;
  };
  const Launch lsyncd_pair = [&](const std::string& dir, const std::string& a, const std::string& b, const SshServer& sshd) {
    std::vector<std::unique_ptr<Child>> v;
    for (const auto& [me, peer, n] : {std::tuple{a, b, "a"}, std::tuple{b, a, "b"}}) {
      const std::string conf = dir + "/lsyncd-" + n + ".conf";
      std::ofstream(conf) << "settings { nodaemon = true, logfile = \"" << dir << "/" << n << ".log\" }\n"
                          << "sync { default.rsyncssh, source = \"" << me << "\", host = \"127.0.0.1\", targetdir = \""
                          << peer << "\",\n  delay = 0,\n  ssh = { port = " << sshd.port() << ", identityFile = \""
                          << sshd.client_key() << "\",\n    options = { UserKnownHostsFile = \"" << sshd.known_hosts()
                          << "\", StrictHostKeyChecking = \"yes\" } } }\n";
      v.push_back(std::make_unique<Child>(std::vector<std::string>{o.lsyncd, conf}, dir + "/" + n + ".out"));
    }
    return v;
  };
  auto want = [&](const std::string& n) { return o.only.empty() || n.find(o.only) != std::string::npos; };
  std::vector<Result> results;
  for (const char* wl : {"disjoint", "same"}) {
    if (want("syncd")) results.push_back(run(o, "syncd two-way", wl, syncd_pair, "finished: 0"));
    if (want("lsyncd") && ::access(o.lsyncd.c_str(), X_OK) == 0) {
      results.push_back(run(o, "lsyncd rsyncssh x2", wl, lsyncd_pair, "finished"));
    }
  }
  std::printf("\ntwo-way bench: A and B each write %d files of 1.5 KiB at the same moment\n\n", o.files);
  std::printf("%-20s | %-10s | %-16s | %-10s | %-14s | %s\n", "tool", "workload", "converged in ms", "conflicts", "versions lost",
              "overwritten later");
  for (const auto& r : results) {
    char ms[32], lost[32];
    std::snprintf(ms, sizeof ms, "%.0f", r.ms);
    std::snprintf(lost, sizeof lost, "%zu of %zu", r.lost, r.written);
    std::printf("%-20s | %-10s | %-16s | %-10zu | %-14s | %zu\n", r.tool.c_str(), r.workload.c_str(),
                r.converged ? ms : "never (60 s)", r.conflicts, lost, r.superseded);
  }
  std::printf("\n'overwritten later': the other node's version had arrived before this node's writer got to\n"
              "that name, and the writer overwrote it (a later write, not a concurrent one).\n");
  for (const auto& r : results) {
    if (r.tool.rfind("syncd", 0) == 0 && (!r.converged || r.lost != 0)) return 1;
  }
  return 0;
}
