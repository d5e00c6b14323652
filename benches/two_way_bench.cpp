// two-way bench (issue #5): two nodes A and B on this machine, each writing 500 small files at
// the same moment into the same synced tree, over one private OpenSSH sshd on 127.0.0.1:
//   disjoint   A writes a0..a499, B writes b0..b499 (no path in common);
//   same       A and B both write s0..s499, each with its own content (500 true conflicts);
//   turns      a 32 MiB file (random bytes, the same on both nodes before they start) that B and A
//              edit in turn, 1 KiB at a random offset each time (10 edits): time until the other
//              node has each edit, and the bytes that crossed the SSH connections per edit
//              (counted by a relay in front of sshd).
// Reported per tool: time until both trees are identical (checked on every inotify event in
// either tree, never by sleeping; 60 s cap), conflict copies found, and versions lost (a written
// content that is in no file on either node afterwards). A writer that finds the other node's
// version of a name already there (it arrived before this node got to that name: the threads are
// never exactly in step) overwrites it as any later write does; that version was superseded, not
// lost, and is counted apart ("overwritten later"). syncd runs as two -bidirectional
// daemons; lsyncd 2.2.3, when installed, as two default.rsyncssh instances (delay = 0) pushing at
// each other — the setup operators use today.
//
//   build/benches/two_way_bench [--files 500] [--turns 10] [--big-mib 32] [--only syncd|lsyncd|WORKLOAD]
//                               [--syncd PATH] [--lsyncd PATH] [--dir BASE]
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
#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
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

struct Options {
  int files = 500, turns = 10, big_mib = 32;
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
  std::vector<double> turn_ms, turn_bytes;  // "turns": per edit
};

// How a node's ssh reaches sshd: through the byte-counting relay.
struct Route {
  int port = 0;
  std::string known_hosts, rsh;
};

using Launch = std::function<std::vector<std::unique_ptr<Child>>(const std::string& dir, const std::string& a,
                                                                const std::string& b, const SshServer& sshd,
                                                                const Route& route)>;

std::string read_at(const std::string& path, off_t off, size_t n) {
  std::string s(n, '\0');
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  const ssize_t got = fd >= 0 ? ::pread(fd, s.data(), n, off) : -1;
  if (fd >= 0) ::close(fd);
  s.resize(got > 0 ? static_cast<size_t>(got) : 0);
  return s;
}

off_t size_of(const std::string& path) {
  struct stat st{};
  return ::stat(path.c_str(), &st) == 0 ? st.st_size : -1;
}

double median(std::vector<double> v) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// The "turns" workload, once both nodes are up and agree on the big file: B and A edit it in turn.
void turns(const Options& o, const std::string& a, const std::string& b, const syncd::test::ByteRelay& relay,
           Result& r) {
  const off_t big = static_cast<off_t>(o.big_mib) << 20;
  if (!until_both(a, b, [&] { return size_of(b + "/big.bin") == big && read_at(b + "/big.bin", big - 4096, 4096) ==
                                                                        read_at(a + "/big.bin", big - 4096, 4096); },
                  120000)) {
    std::fprintf(stderr, "  %s: the nodes never agreed on the big file\n", r.tool.c_str());
    return;
  }
  std::mt19937_64 rng(11);
  r.written = static_cast<size_t>(o.turns);
  for (int t = 0; t < o.turns; ++t) {
    const std::string& from = t % 2 == 0 ? b : a;
    const std::string& to = t % 2 == 0 ? a : b;
    std::string edit(1024, '\0');
    for (auto& c : edit) c = static_cast<char>(rng());
    const off_t at = static_cast<off_t>(rng() % static_cast<uint64_t>(big - 1024));
    const uint64_t before = relay.bytes();
    const auto t0 = Clock::now();
    const int fd = ::open((from + "/big.bin").c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0 || ::pwrite(fd, edit.data(), edit.size(), at) != static_cast<ssize_t>(edit.size())) std::abort();
    ::close(fd);
    if (!until_both(a, b, [&] { return read_at(to + "/big.bin", at, edit.size()) == edit; }, 60000)) {
      std::fprintf(stderr, "  %s: edit %d never reached the other node\n", r.tool.c_str(), t);
      return;
    }
    r.turn_ms.push_back(ms_since(t0));
    // What trails the edit (acknowledgements, the echo's check) belongs to it: counted once the
    // connections have been quiet for 300 ms.
    auto quiet = Clock::now();
    for (uint64_t last = relay.bytes(); ms_since(quiet) < 300;) {
      ::poll(nullptr, 0, 20);
      if (relay.bytes() != last) {
        last = relay.bytes();
        quiet = Clock::now();
      }
    }
    r.turn_bytes.push_back(static_cast<double>(relay.bytes() - before));
  }
  r.converged = syncd::test::run("cmp -s '" + a + "/big.bin' '" + b + "/big.bin'") == 0;
  size_t copies = 0;
  for (const auto* d : {&a, &b}) {
    for (const auto& [n, c] : snapshot(*d)) copies += n.find(".sync-conflict-") != std::string::npos ? 1 : 0;
  }
  r.conflicts = copies;
  r.ms = 0;
  for (double m : r.turn_ms) r.ms += m;
}

Result run(const Options& o, const std::string& tool, const std::string& workload, const Launch& launch,
           const std::string& ready) {
  Result r;
  r.tool = tool;
  r.workload = workload;
  std::string dir = o.base + "/syncd-twowaybench-XXXXXX";
  if (!::mkdtemp(dir.data())) {
    std::perror(("mkdtemp " + dir + " (--dir must exist)").c_str());
    std::exit(2);
  }
  const std::string a = dir + "/a", b = dir + "/b";
  ::mkdir(a.c_str(), 0755);
  ::mkdir(b.c_str(), 0755);
  SshServer sshd(dir + "/sshd");
  sshd.start();
  syncd::test::ByteRelay relay(sshd.port());
  Route route{relay.port(), syncd::test::relay_known_hosts(sshd, relay.port(), dir + "/known_hosts.relay"), ""};
  route.rsh = syncd::test::relay_rsh(sshd, relay.port(), route.known_hosts);
  if (workload == "turns") {
    // On both nodes before they start, as operators seed a cluster: two lsyncd instances starting
    // at once would each make the other's tree like its own (rsync --delete), losing a file that
    // exists on one side only.
    (void)syncd::test::run("head -c " + std::to_string(o.big_mib) + "M /dev/urandom > " + a + "/big.bin && cp -p " + a +
                           "/big.bin " + b + "/big.bin");
  }
  auto procs = launch(dir, a, b, sshd, route);
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
  if (workload == "turns") {
    turns(o, a, b, relay, r);
    procs.clear();
    (void)syncd::test::run("rm -rf " + dir);
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
    else if (a == "--turns") o.turns = std::max(1, std::atoi(next().c_str()));
    else if (a == "--big-mib") o.big_mib = std::max(1, std::atoi(next().c_str()));
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
  const Launch syncd_pair = [&](const std::string& dir, const std::string& a, const std::string& b, const SshServer&,
                                const Route& route) {
    std::vector<std::unique_ptr<Child>> v;
    for (const auto& [me, peer, n] : {std::tuple{a, b, "a"}, std::tuple{b, a, "b"}}) {
      const std::string other = std::string(n) == "a" ? "b" : "a";
      v.push_back(std::make_unique<Child>(
          std::vector<std::string>{o.syncd, "-nodaemon", "-rsyncssh", me, "127.0.0.1", peer, "-remote-rundir",
                                   dir + "/run-" + other, "-bidirectional", "-statedir", dir + "/state-" + n,
                                   "-rundir", dir + "/run-" + n, "-rsh", route.rsh, "-remote-syncd", o.syncd,
                                   "-transport", "libssh2"},
          dir + "/" + n + ".log"));
    }
    return v;
  };
  const Launch lsyncd_pair = [&](const std::string& dir, const std::string& a, const std::string& b, const SshServer& sshd,
                                 const Route& route) {
    std::vector<std::unique_ptr<Child>> v;
    for (const auto& [me, peer, n] : {std::tuple{a, b, "a"}, std::tuple{b, a, "b"}}) {
      const std::string conf = dir + "/lsyncd-" + n + ".conf";
      std::ofstream(conf) << "settings { nodaemon = true, logfile = \"" << dir << "/" << n << ".log\" }\n"
                          << "sync { default.rsyncssh, source = \"" << me << "\", host = \"127.0.0.1\", targetdir = \""
                          << peer << "\",\n  delay = 0,\n  ssh = { port = " << route.port << ", identityFile = \""
                          << sshd.client_key() << "\",\n    options = { UserKnownHostsFile = \"" << route.known_hosts
                          << "\", StrictHostKeyChecking = \"yes\" } } }\n";
      v.push_back(std::make_unique<Child>(std::vector<std::string>{o.lsyncd, conf}, dir + "/" + n + ".out"));
    }
    return v;
  };
  // --only names a workload (all tools) or a tool (all workloads).
  const std::set<std::string> workloads{"disjoint", "same", "turns"};
  const bool only_wl = workloads.count(o.only) != 0;
  auto want_wl = [&](const std::string& wl) { return !only_wl || o.only == wl; };
  auto want_tool = [&](const std::string& t) { return only_wl || o.only.empty() || t.find(o.only) != std::string::npos; };
  std::vector<Result> results;
  for (const char* wl : {"disjoint", "same", "turns"}) {
    if (!want_wl(wl)) continue;
    if (want_tool("syncd")) results.push_back(run(o, "syncd two-way", wl, syncd_pair, "finished: 0"));
    if (want_tool("lsyncd") && ::access(o.lsyncd.c_str(), X_OK) == 0) {
      results.push_back(run(o, "lsyncd rsyncssh x2", wl, lsyncd_pair, "finished"));
    }
  }
  std::printf("\ntwo-way bench: A and B each write %d files of 1.5 KiB at the same moment\n\n", o.files);
  std::printf("%-20s | %-10s | %-16s | %-10s | %-14s | %s\n", "tool", "workload", "converged in ms", "conflicts", "versions lost",
              "overwritten later");
  for (const auto& r : results) {
    if (r.workload == "turns") continue;
    char ms[32], lost[32];
    std::snprintf(ms, sizeof ms, "%.0f", r.ms);
    std::snprintf(lost, sizeof lost, "%zu of %zu", r.lost, r.written);
    std::printf("%-20s | %-10s | %-16s | %-10zu | %-14s | %zu\n", r.tool.c_str(), r.workload.c_str(),
                r.converged ? ms : "never (60 s)", r.conflicts, lost, r.superseded);
  }
  std::printf("\n'overwritten later': the other node's version had arrived before this node's writer got to\n"
              "that name, and the writer overwrote it (a later write, not a concurrent one).\n");
  bool any_turns = false;
  for (const auto& r : results) any_turns = any_turns || r.workload == "turns";
  if (any_turns) {
    std::printf("\nturns: a %d MiB file edited on B and A in turn, 1 KiB at a random offset, %d edits\n\n", o.big_mib,
                o.turns);
    std::printf("%-20s | %-14s | %-14s | %-18s | %-18s | %s\n", "tool", "edits seen", "p50 ms", "max ms",
                "wire bytes p50", "files equal, conflict copies");
    for (const auto& r : results) {
      if (r.workload != "turns") continue;
      const double mx = r.turn_ms.empty() ? -1 : *std::max_element(r.turn_ms.begin(), r.turn_ms.end());
      std::printf("%-20s | %-14s | %-14.1f | %-18.1f | %-18.0f | %s, %zu\n", r.tool.c_str(),
                  (std::to_string(r.turn_ms.size()) + " of " + std::to_string(r.written)).c_str(), median(r.turn_ms), mx,
                  median(r.turn_bytes), r.converged ? "yes" : "NO", r.conflicts);
    }
    const Result* sy = nullptr;
    const Result* ls = nullptr;
    for (const auto& r : results) {
      if (r.workload != "turns" || r.turn_ms.empty()) continue;
      (r.tool.rfind("syncd", 0) == 0 ? sy : ls) = &r;
    }
    if (sy && ls) {
      std::printf("\nsyncd vs lsyncd, turns: p50 %.1fx faster, %.1fx fewer wire bytes per edit\n",
                  median(ls->turn_ms) / median(sy->turn_ms), median(ls->turn_bytes) / median(sy->turn_bytes));
    }
    std::printf("wire bytes: everything both nodes' SSH connections carried per edit, both ways, SSH framing\n"
                "included (a relay in front of sshd), until they were quiet for 300 ms.\n");
  }
  for (const auto& r : results) {
    if (r.tool.rfind("syncd", 0) == 0 && (!r.converged || r.lost != 0)) return 1;
    if (r.tool.rfind("syncd", 0) == 0 && r.workload == "turns" && r.turn_ms.size() != static_cast<size_t>(o.turns)) return 1;
  }
  return 0;
}
