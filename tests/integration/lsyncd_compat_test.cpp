// Drop-in for lsyncd (issue #6): the same config files run through syncd and, in the same test,
// through Debian's lsyncd 2.2.3: the accept/reject decision and the error text must match; the
// status file and the log lines operators grep for must match for the same config and changes.
// Needs lsyncd installed (.ci/install-deps installs it); exits 77 (skipped) without it.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <tuple>

#include "lib/base/unique_fd.h"
#include "tests/support/process.h"
#include "tests/support/sshd.h"
#include "tests/support/tmpdir.h"
#include "tests/support/tree_diff.h"

using namespace syncd;

namespace {

constexpr const char* kLsyncd = "/usr/bin/lsyncd";

void require_lsyncd() {
  test::require_root();
  if (::access(kLsyncd, X_OK) != 0) {
    std::fprintf(stderr, "lsyncd is not installed (apt-get install lsyncd): skipping the comparison\n");
    std::exit(77);
  }
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t p = 0; (p = s.find(from, p)) != std::string::npos; p += to.size()) s.replace(p, from.size(), to);
  return s;
}

struct Outcome {
  bool accepted = false;
  int status = -1;
  std::string error;  // the last "Error: " line, normalized
  std::string log;
};

// lsyncd's and syncd's messages differ only in where they point: lsyncd names its own runner
// ("/build/.../lsyncd.lua:3374:") where syncd names the config's line. Both are dropped.
std::string normalize(std::string e, const std::string& config) {
  e = replace_all(e, "error preparing " + config + ": ", "");
  e = replace_all(e, "error loading " + config + ": ", "");
  // "<something>.lua:<digits>: " at the start (no std::regex: GCC 12's trips -Werror under ASan).
  const size_t lua = e.find(".lua:");
  if (lua != std::string::npos && e.find_first_of(" ") > lua) {
    size_t i = lua + 5;
    while (i < e.size() && std::isdigit(static_cast<unsigned char>(e[i]))) ++i;
    if (i > lua + 5 && e.compare(i, 2, ": ") == 0) e.erase(0, i + 2);
  }
  return e;
}

struct Fixture {
  test::TempDir t{"compat"};
  std::string src = t / "src", dst = t / "dst";
  int runs = 0;
  Fixture() {
    require_lsyncd();
    ::mkdir(src.c_str(), 0755);
    ::mkdir(dst.c_str(), 0755);
  }
  // The target as rsync leaves it: `rsync FLAGS SRC/ REF/`, REF starting as a copy of the target
  // (extras and all) when `from_target`, else new.
  std::string rsync_reference(const std::string& flags, bool from_target = false) {
    const std::string ref = t / "rsync-dst";
    if (from_target) REQUIRE(test::run("cp -a '" + dst + "/.' '" + ref + "/'") == 0);
    REQUIRE(test::run("rsync " + flags + " '" + src + "/' '" + ref + "/'") == 0);
    return ref;
  }
  // The target matches `ref` (each difference reported; `why` shown on failure).
  void expect_like(const std::string& ref, const std::string& why, bool dir_mtimes = true) const {
    const auto diff = test::tree_diff(ref, dst, {}, dir_mtimes);
    for (const auto& d : diff) MESSAGE(d);
    CHECK_MESSAGE(diff.empty(), why);
  }
  std::string config(const std::string& text) {
    const std::string path = t / ("c" + std::to_string(++runs) + ".lua");
    test::write_file(path, replace_all(replace_all(text, "@SRC@", src), "@DIR@", t.path()));
    return path;
  }
  // Runs `argv` until it either started syncing (lsyncd's "recursive startup rsync" line, which
  // syncd logs too) or exited; then stops it.
  Outcome run(std::vector<std::string> argv, const std::string& cfg) {
    const std::string log = t / ("out" + std::to_string(++runs));
    argv.push_back(cfg);
    test::Child c(argv, log);
    auto text = [&] { return test::exists(log) ? test::read_file(log) : std::string(); };
    REQUIRE_MESSAGE(test::wait_until(t.path(), [&] {
                      const std::string l = text();
                      return l.find("recursive startup rsync") != std::string::npos || l.find("Error: ") != std::string::npos;
                    }, 20000),
                    argv[0] << " neither started nor failed:\n" << text());
    Outcome o;
    o.accepted = text().find("recursive startup rsync") != std::string::npos;
    o.status = o.accepted ? c.stop_within(SIGTERM, 10000) : c.wait();
    // Read after the exit: lsyncd writes some failures as two Error lines ("failure getting
    // absolute path of [...]", then "Cannot access source directory: ..."), and the last one is
    // the error; reading at the first one raced with the second.
    o.log = text();
    const size_t e = o.log.rfind("Error: ");
    if (!o.accepted && e != std::string::npos) {
      std::string line = o.log.substr(e + 7);
      // lsyncd's two-line "Do not use settings = ..." message is one error.
      if (line.find("Do not use settings") == std::string::npos) line = line.substr(0, line.find('\n'));
      while (!line.empty() && line.back() == '\n') line.pop_back();
      o.error = normalize(line, cfg);
    }
    return o;
  }
  Outcome syncd(const std::string& cfg) {
    return run({SYNCD_BINARY, "-nodaemon", "-statedir", t / "state", "-rundir", t / "run"}, cfg);
  }
  Outcome lsyncd(const std::string& cfg) { return run({kLsyncd, "-nodaemon"}, cfg); }
  // syncd -nodaemon on `cfg` (state and sockets in the test dir), once its startup sync is done.
  std::unique_ptr<test::Child> syncd_started(const std::string& cfg, const std::string& console) {
    auto c = std::make_unique<test::Child>(
        std::vector<std::string>{SYNCD_BINARY, "-nodaemon", "-statedir", t / "state", "-rundir", t / "run", cfg}, console);
    REQUIRE_MESSAGE(test::wait_for_text(console, "finished: 0", 0), test::read_file(console));
    return c;
  }
  // The barrier for a sync whose target may not take a cookie (existing, one_file_system...):
  // the daemon of `src` has nothing queued and nothing unacknowledged.
  void wait_idle() {
    REQUIRE(test::run(std::string(SYNCD_BINARY) + " status '" + src + "' -rundir '" + t / "run" + "' --wait-idle 30000 > /dev/null") == 0);
  }

  // Both programs decide the same; a rejection has the same text, and `expect` is in it.
  void same(const std::string& text, bool accept, const std::string& expect = "") {
    const std::string cfg = config(text);
    const Outcome ours = syncd(cfg), theirs = lsyncd(cfg);
    INFO("config:\n" << text << "\nsyncd said:\n" << ours.log << "\nlsyncd said:\n" << theirs.log);
    CHECK(ours.accepted == accept);
    CHECK(theirs.accepted == accept);
    if (!accept) {
      CHECK(ours.status == 255);
      CHECK(theirs.status == 255);
      CHECK(ours.error == theirs.error);
      CHECK(ours.error.find(expect) != std::string::npos);
    }
  }
};

// Writes `text` to `path` with the mtime `mtime` (whole seconds).
void put_file(const std::string& path, const std::string& text, time_t mtime) {
  test::write_file(path, text);
  const timespec ts[2] = {{mtime, 0}, {mtime, 0}};
  REQUIRE(::utimensat(AT_FDCWD, path.c_str(), ts, AT_SYMLINK_NOFOLLOW) == 0);
}

// A live change that appears whole: `text` (and the mtime, if given) is written under `stage`
// (outside the synced tree, same filesystem) and renamed onto `path`. Written in place, the watcher
// could ship a half-written or not-yet-backdated version first, which rules such as rsync.update
// and rsync.backup rightly act on.
void move_in(const std::string& stage, const std::string& path, const std::string& text, time_t mtime = 0) {
  ::mkdir(stage.c_str(), 0755);
  const std::string tmp = stage + "/" + path.substr(path.rfind('/') + 1);
  if (mtime != 0) {
    put_file(tmp, text, mtime);
  } else {
    test::write_file(tmp, text);
  }
  REQUIRE(::rename(tmp.c_str(), path.c_str()) == 0);
}

// rsync and ssh are replaced by /bin/true for lsyncd's sake (it would run them); syncd warns
// that it does not run them and starts its own transfer.
const char* kNoNet = "rsync = { binary = '/bin/true' }";

}  // namespace

TEST_CASE("configs lsyncd accepts, syncd accepts: acme2certifier's, loops, os.getenv, dofile, ssh.port, excludes") {
  Fixture f;
  // The acme2certifier guide's config (paths and key pointing at the test's tree).
  REQUIRE(test::run("ssh-keygen -q -t ed25519 -N '' -f " + f.t / "id_lsyncd") == 0);
  f.same("settings { logfile = \"@DIR@/lsyncd.log\", statusFile = \"@DIR@/lsyncd.status\",\n"
         "           statusInterval = 20, nodaemon = false }\n"
         "sync { default.rsyncssh, source = \"@SRC@/\", host = \"alma9-c2.invalid\",\n"
         "       targetdir = \"@SRC@/\",\n"
         "       rsync = { rsh = \"/usr/bin/ssh -l root -i @DIR@/id_lsyncd -o StrictHostKeyChecking=no\",\n"
         "                 compress = true, owner = true, group = true, archive = true, binary = '/bin/true' } }\n",
         true);
  ::setenv("SYNCD_COMPAT_HOSTS", "n1.invalid,n2.invalid", 1);
  test::write_file(f.t / "defs.lua", "PORT = 2222\nTARGET_ROOT = '/srv/'\n");
  f.same("local here = string.gsub(debug.getinfo(1).source, '^@(.+/)[^/]+$', '%1')\n"
         "dofile(here .. 'defs.lua')\n"
         "for host in os.getenv('SYNCD_COMPAT_HOSTS'):gmatch('[^,]+') do\n"
         "  sync { default.rsyncssh, source = '@SRC@', host = 'root@' .. host, targetdir = TARGET_ROOT .. host,\n"
         "         delay = .2, maxDelays = 1, ssh = { port = PORT, binary = '/bin/true' }, " + std::string(kNoNet) + ",\n"
         "         exclude = { '*.tmp', '/cache/' } }\n"
         "end\n",
         true);
  test::write_file(f.t / "excludes", "# comment\n*.bak\n- /logs/\n");
  f.same("settings { 'insist' }\n"
         "sync { default.direct, source = '@SRC@', target = '@DIR@/dst', delete = 'running',\n"
         "       excludeFrom = '@DIR@/excludes', filter = { '- *.o' } }\n",
         true);
  f.same("sync { default.rsync, source = '@SRC@', target = '@DIR@/dst', delay = 0, " + std::string(kNoNet) + " }\n", true);
}

TEST_CASE("configs lsyncd rejects, syncd rejects with the same text: typos and lsyncd 2.0 forms") {
  Fixture f;
  f.same("settings { logfil = '/tmp/x' }\nsync { default.direct, source = '@SRC@', target = '@DIR@/dst' }\n", false,
         "setting \"logfil\" unknown.");
  f.same("settings { statusIntervall = 5 }\nsync { default.direct, source = '@SRC@', target = '@DIR@/dst' }\n", false,
         "setting \"statusIntervall\" unknown.");
  f.same("sync { default.rsync, source = '@SRC@', target = '@DIR@/dst', rsync = { archiv = true } }\n", false,
         "Parameter \"rsync.archiv\" unknown.");
  f.same("sync { default.rsync, source = '@SRC@', target = '@DIR@/dst', rsyncOpts = { '-a' } }\n", false,
         "Parameter \"rsyncOpts\" unknown.");
  f.same("sync { default.rsyncssh, source = '@SRC@', host = 'h', targetdir = '/x', target = '/y' }\n", false,
         "Parameter \"target\" unknown.");
  f.same("sync { default.rsyncssh, source = '@SRC@', host = 'h', targetdir = '/x', ssh = { prot = 22 } }\n", false,
         "Parameter \"ssh.prot\" unknown.");
  f.same("sync { default.rsync, source = '@SRC@', target = '@DIR@/dst', name = 'x' }\n", false, "Parameter \"name\" unknown.");
  f.same("settings = { nodaemon = true }\nsync { default.direct, source = '@SRC@', target = '@DIR@/dst' }\n", false,
         "Do not use settings = { ... }");
  f.same("sync { default.direct, target = '@DIR@/dst' }\n", false, "source missing from sync.");
  f.same("sync { default.direct, source = '@DIR@/nope', target = '@DIR@/dst' }\n", false, "Cannot access source directory");
  f.same("sync { default.direct, source = '@SRC@', target = '@DIR@/dst', delay = -1 }\n", false, "delay must be a number and >= 0");
  f.same("sync { default.rsyncssh, source = '@SRC@', host = 'h', targetdir = '/x', maxProcesses = 2 }\n", false,
         "default.rsyncssh must have maxProcesses set to 1.");
  f.same("sync { default.direct, source = '@SRC@', target = '@DIR@/dst', exclude = 5 }\n", false,
         "type for exclude must be table or string");
  f.same("sync { default.direct, source = '@SRC@', target = '@DIR@/dst', filter = { 'x foo' } }\n", false, "Unknown filter rule");
  f.same("sync { default.direct, source = '@SRC@', target = '@DIR@/dst', excludeFrom = '@DIR@/none' }\n", false,
         "Cannot open exclude file");
  f.same("local servers = {}\nfor _, s in ipairs(servers) do sync { default.rsync, source = '@SRC@', target = s } end\n", false,
         "Nothing to watch!");
  f.same("sync { default.direct, source = '@SRC@', target = '@DIR@/dst' \n", false, "expected");
}

TEST_CASE("command line: lsyncd's errors and exit codes") {
  Fixture f;
  struct Case {
    std::vector<std::string> args;
  };
  const std::string cfg = f.config("sync { default.direct, source = '@SRC@', target = '@DIR@/dst' }\n");
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"-bogus", cfg}, {cfg, cfg}, {"-rsync", f.src, f.dst, cfg}, {"-log", "foo", cfg}, {"--version"}, {"-help"}, {}}) {
    auto run = [&](const char* bin) {
      std::string cmd = std::string(bin);
      for (const auto& a : args) cmd += " '" + a + "'";
      const std::string out = f.t / "cli.out";
      const int rc = test::run(cmd + " >" + out + " 2>&1");
      return std::make_pair(WEXITSTATUS(rc), test::read_file(out));
    };
    auto [ours_rc, ours] = run(SYNCD_BINARY);
    auto [theirs_rc, theirs] = run(kLsyncd);
    INFO("args: " << (args.empty() ? std::string("(none)") : args[0]) << "\nsyncd:\n" << ours << "\nlsyncd:\n" << theirs);
    CHECK(ours_rc == theirs_rc);
    const auto first_line = [](const std::string& s) { return s.substr(0, s.find('\n')); };
    if (theirs.rfind("Error: ", 0) == 0) CHECK(first_line(ours) == first_line(theirs));
    if (!args.empty() && args[0] == "--version") CHECK(ours.rfind("Version: 2.2.3", 0) == 0);
  }
}

TEST_CASE("status file and log lines: the same as lsyncd's for the same config and changes") {
  Fixture f;
  struct Run {
    std::string status, log, console;
  };
  auto run = [&](bool ours) {
    const std::string tag = ours ? "syncd" : "lsyncd";
    const std::string dst = f.t / ("dst-" + tag);
    ::mkdir(dst.c_str(), 0755);
    const std::string cfg = f.config("settings { statusFile = '@DIR@/" + tag + ".status', statusInterval = 0,\n"
                                     "           logfile = '@DIR@/" + tag + ".log' }\n"
                                     "sync { default.direct, source = '@SRC@', target = '" + dst + "', delay = 0 }\n");
    std::vector<std::string> argv{ours ? SYNCD_BINARY : kLsyncd, "-nodaemon"};
    if (ours) argv.insert(argv.end(), {"-statedir", f.t / "state", "-rundir", f.t / "run"});
    argv.push_back(cfg);
    const std::string console = f.t / (tag + ".console");
    test::Child c(argv, console);
    REQUIRE(test::wait_for_text(console, "finished: 0", 0));
    // The same change for both: a new directory with a file; then wait until it arrived and the
    // status file shows the second watch and an empty queue.
    const std::string dir = f.src + "/sub-" + tag;
    ::mkdir(dir.c_str(), 0755);
    // (each wait watches a directory that exists by then: the new one, once it arrived)
    REQUIRE(test::wait_for(dst, "sub-" + tag));
    test::write_file(dir + "/f", "x");
    REQUIRE(test::wait_for(dst + "/sub-" + tag, "f"));
    const std::string status = f.t / (tag + ".status");
    REQUIRE_MESSAGE(test::wait_until(f.t.path(), [&] {
                      if (!test::exists(status)) return false;
                      const std::string s = test::read_file(status);
                      return s.find("There are 0 delays") != std::string::npos && s.find("sub-" + tag + "/") != std::string::npos;
                    }, 20000),
                    (test::exists(status) ? test::read_file(status) : std::string("no status file")));
    Run r;
    r.status = test::read_file(status);
    CHECK(c.stop_within(SIGTERM, 10000) == 143);
    r.log = test::read_file(f.t / (tag + ".log"));
    r.console = test::read_file(console);
    return r;
  };
  // lsyncd first, then syncd, each with its own directory change; the sub-directory names differ
  // by tag, so they are normalized before comparing.
  test::write_file(f.src + "/a.txt", "a");
  Run theirs = run(false);
  ::unlink((f.src + "/sub-lsyncd/f").c_str());
  ::rmdir((f.src + "/sub-lsyncd").c_str());
  Run ours = run(true);
  auto lsyncd_block = [](std::string s, const std::string& tag) {
    s = s.substr(s.find('\n'));  // the date line differs
    s = replace_all(s, "sub-" + tag, "sub");
    // syncd's own lines follow the lsyncd block.
    std::istringstream in(s);
    std::string line, out;
    std::vector<std::string> watches;
    while (std::getline(in, line)) {
      if (line.rfind("syncd: ", 0) == 0) continue;
      // Watch lines come in hash order in lsyncd: compared as a set, without descriptors.
      if (line.rfind("  ", 0) == 0 && line.find(": /") != std::string::npos) {
        watches.push_back(line.substr(line.find(": /")));
        continue;
      }
      out += line + "\n";
    }
    std::sort(watches.begin(), watches.end());
    for (const auto& w : watches) out += w + "\n";
    return out;
  };
  INFO("lsyncd status:\n" << theirs.status << "\nsyncd status:\n" << ours.status);
  CHECK(lsyncd_block(ours.status, "syncd") == lsyncd_block(theirs.status, "lsyncd"));
  CHECK(ours.status.rfind("Lsyncd status report at ", 0) == 0);
  // Log lines: the ones operators grep, in lsyncd's logfile and console formats.
  // "Sun Nov  2 09:10:29 2026 Normal: ..." (ctime) and "09:10:29 Normal: ..." (%T): shape checks.
  auto shaped = [](const std::string& line, const std::string& shape) {
    if (line.size() != shape.size()) return false;
    for (size_t i = 0; i < shape.size(); ++i) {
      const unsigned char c = static_cast<unsigned char>(line[i]);
      const bool ok = shape[i] == 'A' ? std::isupper(c) : shape[i] == 'a' ? std::islower(c) : shape[i] == '9' ? std::isdigit(c)
                      : shape[i] == '_' ? (c == ' ' || std::isdigit(c)) : line[i] == shape[i];
      if (!ok) return false;
    }
    return true;
  };
  const std::string logfile_shape = "Aaa Aaa _9 99:99:99 9999 Normal: --- Startup ---";
  const std::string console_shape = "99:99:99 Normal: --- Startup ---";
  for (const auto* r : {&theirs, &ours}) {
    INFO("log:\n" << r->log << "\nconsole:\n" << r->console);
    std::istringstream log(r->log), console(r->console);
    std::string first_log, first_console;
    std::getline(log, first_log);
    std::getline(console, first_console);
    CHECK(shaped(first_log, logfile_shape));
    CHECK(shaped(first_console, console_shape));
    for (const std::string& msg : {"Normal: recursive startup rsync: " + f.src + "/ -> ", "Normal: Startup of \"" + f.src + "/\" finished: 0",
                                   std::string("Normal: --- TERM signal, fading ---")}) {
      CHECK_MESSAGE(r->log.find(msg) != std::string::npos, msg);
      CHECK_MESSAGE(r->console.find(msg) != std::string::npos, msg);
    }
  }
}

TEST_CASE("end to end: the acme2certifier config, with host, port and key pointing at a test sshd, syncs a tree") {
  Fixture f;
  test::SshServer sshd(f.t / "sshd");
  sshd.start();
  test::make_sample_tree(f.src);  // owners, modes, symlinks, nested directories
  // The guide's config verbatim but for host, port, key and paths.
  const std::string cfg = f.config(
      "settings { logfile = \"@DIR@/lsyncd.log\", statusFile = \"@DIR@/lsyncd.status\",\n"
      "           statusInterval = 1, nodaemon = false }\n"
      "sync { default.rsyncssh, source = \"@SRC@/\", host = \"127.0.0.1\",\n"
      "       targetdir = \"" + f.dst + "/\",\n"
      "       rsync = { rsh = \"/usr/bin/ssh -l root -i " + sshd.client_key() + " -p " + std::to_string(sshd.port()) +
      " -o StrictHostKeyChecking=no\",\n"
      "                 compress = true, owner = true, group = true, archive = true } }\n");
  const std::string console = f.t / "e2e.console";
  test::Child c({SYNCD_BINARY, "-nodaemon", "-statedir", f.t / "state", "-rundir", f.t / "run", "-remote-syncd", SYNCD_BINARY,
                 "-remote-statedir", f.t / "remote-state", cfg},
                console);
  auto logs = [&] { return test::read_file(console); };
  REQUIRE_MESSAGE(test::wait_for_text(console, "finished: 0", 0), logs());
  std::vector<std::string> diff;
  REQUIRE_MESSAGE(test::cookie_barrier(f.src, f.dst, "cookie.1", diff, 60000, true), logs());
  CHECK_MESSAGE(diff.empty(), logs());
  // A live change of each kind, then the trees are equal again.
  test::write_file(f.src + "/cert.pem", "-----BEGIN CERTIFICATE-----\n");
  REQUIRE(::chown((f.src + "/cert.pem").c_str(), 4321, 4322) == 0);
  REQUIRE(::chmod((f.src + "/cert.pem").c_str(), 0640) == 0);
  REQUIRE(::mkdir((f.src + "/crl").c_str(), 0750) == 0);
  REQUIRE(::symlink("../cert.pem", (f.src + "/crl/link").c_str()) == 0);
  diff.clear();
  REQUIRE_MESSAGE(test::cookie_barrier(f.src, f.dst, "cookie.2", diff, 60000, true), logs());
  for (const auto& d : diff) MESSAGE(d);
  CHECK_MESSAGE(diff.empty(), logs());
  // Not two-way (source and targetdir differ): a one-way push, said once in the log.
  CHECK(logs().find("two-way sync with") == std::string::npos);
  CHECK(test::read_file(f.t / "lsyncd.log").find("Normal: Startup of \"" + f.src + "/\" finished: 0") != std::string::npos);
  REQUIRE(test::wait_until(f.t.path(), [&] {
    return test::exists(f.t / "lsyncd.status") && test::read_file(f.t / "lsyncd.status").find("There are 0 delays") != std::string::npos;
  }, 20000));
  CHECK(c.stop_within(SIGTERM, 10000) == 143);
}

TEST_CASE("a config of 150 syncs runs in one daemon as lsyncd runs it: one inotify instance for all - each sync's changes arrive") {
  // Past fs.inotify.max_user_instances' default of 128: with an instance per sync (and one more
  // per sync for its root guard) syncd stopped at the 65th ("inotify_init1: Too many open files").
  constexpr int kSyncs = 150;
  test::TempDir t{"many"};
  std::string cfg;
  for (int i = 1; i <= kSyncs; ++i) {
    const std::string n = std::to_string(i);
    ::mkdir((t / ("s" + n)).c_str(), 0755);
    ::mkdir((t / ("t" + n)).c_str(), 0755);
    test::write_file(t / ("s" + n + "/f"), n);
    cfg += "sync { default.direct, source = '" + t / ("s" + n) + "', target = '" + t / ("t" + n) + "', delay = 0 }\n";
  }
  test::write_file(t / "many.lua", cfg);
  const std::string console = t / "many.console";
  test::Child c({SYNCD_BINARY, "-nodaemon", "-statedir", t / "state", "-rundir", t / "run", t / "many.lua"}, console);
  auto logs = [&] { return test::exists(console) ? test::read_file(console) : std::string(); };
  auto count = [&](const std::string& needle) { return test::count_text(console, needle); };
  REQUIRE_MESSAGE(test::wait_until(t.path(), [&] { return count("finished: 0") == kSyncs || count("Error") > 0; }, 120000),
                  logs().substr(0, 4000));
  REQUIRE_MESSAGE(count("Error") == 0, logs().substr(0, 4000));
  for (int i = 1; i <= kSyncs; ++i) {
    const std::string n = std::to_string(i);
    CHECK_MESSAGE(test::read_file(t / ("t" + n + "/f")) == n, "sync " << n);
  }
  int instances = 0;
  for (const auto& fd : test::list_dir("/proc/" + std::to_string(c.pid()) + "/fd")) {
    char link[64] = {};
    if (::readlink(("/proc/" + std::to_string(c.pid()) + "/fd/" + fd).c_str(), link, sizeof link - 1) > 0 &&
        std::string(link) == "anon_inode:inotify") {
      ++instances;
    }
  }
  CHECK(instances == 1);
  for (int i : {1, 75, kSyncs}) {
    const std::string n = std::to_string(i);
    test::write_file(t / ("s" + n + "/live"), "live " + n);
    REQUIRE_MESSAGE(test::wait_for(t / ("t" + n), "live"), "sync " << n);
    CHECK(test::read_file(t / ("t" + n + "/live")) == "live " + n);
  }
  CHECK(c.stop_within(SIGTERM, 30000) == 143);
}

namespace {

// One `sync {}` of default.rsyncssh from t/s<n> to t/t<n> on the test sshd, with its own state
// directories on both ends; `syncd_extra` goes into its syncd = {} table.
std::string ssh_sync(const test::TempDir& t, int i, const test::SshServer& sshd, const std::string& syncd_extra = {}) {
  const std::string n = std::to_string(i);
  ::mkdir((t / ("s" + n)).c_str(), 0755);
  ::mkdir((t / ("t" + n)).c_str(), 0755);
  test::write_file(t / ("s" + n + "/f"), n);
  return "sync { default.rsyncssh, source = '" + t / ("s" + n) + "', host = '127.0.0.1', targetdir = '" + t / ("t" + n) +
         "', delay = 0,\n  rsync = { rsh = '" + sshd.rsh() + "' },\n  syncd = { stateDir = '" + t / ("st/l" + n) +
         "', remoteStateDir = '" + t / ("st/r" + n) + "'" + syncd_extra + " } }\n";
}

}  // namespace

TEST_CASE("a config of 40 rsyncssh syncs to one host starts without overrunning that sshd's MaxStartups: no session dropped, none redialled") {
  // sshd's default MaxStartups (10:30:100) drops connections at random once 10 are waiting for
  // authentication. All 40 dialed at once, about 30 failed "Failed getting banner" and backed off.
  constexpr int kSyncs = 40;
  test::TempDir t{"many-ssh"};
  test::SshServer::Where where;
  where.max_startups = "10:30:100";  // sshd's default
  test::SshServer sshd(t / "sshd", where);
  sshd.start();
  std::string cfg = "settings { nodaemon = true }\n";
  for (int i = 1; i <= kSyncs; ++i) cfg += ssh_sync(t, i, sshd);
  ::mkdir((t / "st").c_str(), 0700);
  test::write_file(t / "many.lua", cfg);
  const std::string console = t / "many.console";
  test::Child c({SYNCD_BINARY, "-rundir", t / "run", "-remote-syncd", SYNCD_BINARY, t / "many.lua"}, console);
  auto logs = [&] { return test::exists(console) ? test::read_file(console) : std::string(); };
  auto count = [&](const std::string& needle) { return test::count_text(console, needle); };
  REQUIRE_MESSAGE(test::wait_until(t.path(), [&] { return count("finished: 0") == kSyncs || count("Error") > 0; }, 120000),
                  logs().substr(0, 4000));
  for (int i = 1; i <= kSyncs; ++i) {
    const std::string n = std::to_string(i);
    CHECK_MESSAGE(test::read_file(t / ("t" + n + "/f")) == n, "sync " << n);
  }
  CHECK_MESSAGE(count("reconnecting") == 0, logs().substr(0, 4000));
  CHECK_MESSAGE(test::read_file(sshd.log()).find("past MaxStartups") == std::string::npos, test::read_file(sshd.log()));
  test::write_file(t / ("s" + std::to_string(kSyncs) + "/live"), "live");
  REQUIRE(test::wait_for(t / ("t" + std::to_string(kSyncs)), "live"));
  CHECK(c.stop_within(SIGTERM, 30000) == 143);
}

TEST_CASE("sessions to one host that hang before the peer answers do not hold back the next sync's session for good") {
  // Eight syncs whose remote program never answers take every place among the sessions being set
  // up to that sshd; the ninth dials once they have held them for the hold time (10 s).
  test::TempDir t{"hung-ssh"};
  test::SshServer sshd(t / "sshd");
  sshd.start();
  test::write_file(t / "hang.sh", "#!/bin/sh\nexec sleep 300\n");
  REQUIRE(::chmod((t / "hang.sh").c_str(), 0755) == 0);
  std::string cfg = "settings { nodaemon = true }\n";
  for (int i = 1; i <= 9; ++i) {
    cfg += ssh_sync(t, i, sshd, ", remoteSyncd = '" + (i < 9 ? t / "hang.sh" : std::string(SYNCD_BINARY)) + "'");
  }
  ::mkdir((t / "st").c_str(), 0700);
  test::write_file(t / "hung.lua", cfg);
  const std::string console = t / "hung.console";
  test::Child c({SYNCD_BINARY, "-rundir", t / "run", t / "hung.lua"}, console);
  auto logs = [&] { return test::exists(console) ? test::read_file(console) : std::string(); };
  // Meanwhile its status says why it is not connected (once the daemon answers: all nine started).
  const std::string status = t / "s9.status";
  REQUIRE_MESSAGE(test::wait_until(t.path(), [&] {
                    return test::run(std::string(SYNCD_BINARY) + " status '" + t / "s9" + "' -rundir '" + t / "run" + "' > " + status + " 2>&1") == 0;
                  }, 30000),
                  logs().substr(0, 4000));
  CHECK_MESSAGE(test::read_file(status).find("waiting for its turn to connect") != std::string::npos, test::read_file(status));
  REQUIRE_MESSAGE(test::wait_for_text(console, "Startup of \"" + t / "s9" + "/\" finished: 0", 0, 60000),
                  logs().substr(0, 4000));
  CHECK(test::read_file(t / "t9/f") == "9");
  CHECK_FALSE(test::exists(t / "t1/f"));  // the hung ones never got anywhere
  CHECK(c.stop_within(SIGTERM, 30000) == 143);
}

TEST_CASE("a remote syncd that never answers: the session ends after rsync.timeout with the reason, and the next one syncs") {
  // The remote program runs but never says HELLO (here: once). The session used to wait for good,
  // with nothing in the log and the peer never synced.
  for (const std::string transport : {"libssh2", "openssh"}) {
    CAPTURE(transport);
    test::TempDir t{"mute-ssh"};
    test::SshServer sshd(t / "sshd");
    sshd.start();
    // Mute the first time: reads the session's bytes and never answers (exits when it closes).
    test::write_file(t / "mute.sh", "#!/bin/sh\nif [ ! -e '" + t / "muted" + "' ]; then touch '" + t / "muted" +
                                        "'; exec cat > /dev/null; fi\nexec '" + SYNCD_BINARY + "' \"$@\"\n");
    REQUIRE(::chmod((t / "mute.sh").c_str(), 0755) == 0);
    ::mkdir((t / "st").c_str(), 0700);
    std::string cfg = "settings { nodaemon = true }\n" +
                      ssh_sync(t, 1, sshd, ", remoteSyncd = '" + t / "mute.sh" + "', transport = '" + transport + "'");
    cfg.insert(cfg.find("rsh = "), "timeout = 4, ");
    test::write_file(t / "mute.lua", cfg);
    const std::string console = t / "mute.console";
    test::Child c({SYNCD_BINARY, "-rundir", t / "run", t / "mute.lua"}, console);
    auto logs = [&] { return test::exists(console) ? test::read_file(console) : std::string(); };
    // Meanwhile its status says the peer has not answered (the status file lands in t: a wakeup).
    const std::string status = t / "s1.status";
    const std::string ask = std::string(SYNCD_BINARY) + " status '" + t / "s1" + "' -rundir '" + t / "run" + "'";
    CHECK_MESSAGE(test::wait_until(t.path(), [&] {
                    (void)test::run(ask + " > " + status + " 2>&1 && " + ask + " --json >> " + status);
                    const std::string got = test::read_file(status);
                    return got.find("connecting (dialed; the peer's syncd has not answered yet)") != std::string::npos &&
                           got.find("\"connecting\": true") != std::string::npos;
                  }, 4000),
                  test::read_file(status));
    REQUIRE_MESSAGE(test::wait_for_text(console, "finished: 0", 0, 30000), logs());
    CHECK(test::exists(t / "muted"));
    CHECK_MESSAGE(logs().find("no answer from `" + t / "mute.sh" + " attach` on 127.0.0.1 within 4 s of dialing (rsync.timeout): ") !=
                      std::string::npos,
                  logs());
    // Only the native session can tell that SSH got as far as the remote command.
    CHECK_MESSAGE(logs().find(transport == "libssh2" ? "the SSH session is up, so the remote syncd hangs"
                                                     : "the host or its sshd does not answer, or the remote syncd hangs") !=
                      std::string::npos,
                  logs());
    CHECK(test::read_file(t / "t1/f") == "1");
    CHECK(c.stop_within(SIGTERM, 30000) == 143);
  }
}

TEST_CASE("a peer daemon that is stopped (SIGSTOP): attach says so within 10 s and writes nothing meanwhile - the push syncs once it runs again") {
  // attach joins the daemon that owns the target. One that is stopped never answered, and attach
  // waited with it for good, the push stuck with no word in either log. Serving the session
  // itself instead would make a second writer of a tree whose daemon may wake at any moment.
  for (const std::string transport : {"libssh2", "openssh"}) {
    CAPTURE(transport);
    test::TempDir t{"frozen"};
    test::SshServer sshd(t / "sshd");
    sshd.start();
    ::mkdir((t / "st").c_str(), 0700);
    ::mkdir((t / "t1").c_str(), 0755);
    ::mkdir((t / "t9").c_str(), 0755);
    // The peer's daemon: it owns t1 (pushing it on to t9, a chain).
    test::Child owner({SYNCD_BINARY, "-nodaemon", "-rundir", t / "run2", "-rsyncssh", t / "t1", "127.0.0.1", t / "t9",
                       "-statedir", t / "st/o", "-rsh", sshd.rsh(), "-remote-syncd", SYNCD_BINARY, "-remote-statedir",
                       t / "st/or"},
                      t / "owner.console");
    REQUIRE_MESSAGE(test::wait_for_text(t / "owner.console", "finished: 0", 0, 30000), test::read_file(t / "owner.console"));
    owner.signal(SIGSTOP);
    // And its listen queue full, as after many sessions tried it: connect() itself then waited
    // for good, and each try left an attach process behind on the peer.
    std::vector<UniqueFd> queued;
    for (const auto& n : test::list_dir(t / "run2")) {
      if (n.rfind("root-", 0) != 0) continue;
      sockaddr_un a{};
      a.sun_family = AF_UNIX;
      const std::string path = t / ("run2/" + n);
      std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
      for (;;) {
        UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        REQUIRE(s);
        if (::connect(s.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) {
          REQUIRE(errno == EAGAIN);
          break;
        }
        queued.push_back(std::move(s));
        REQUIRE(queued.size() < 1000);
      }
    }
    REQUIRE(!queued.empty());
    const std::string cfg = "settings { nodaemon = true }\n" +
                            ssh_sync(t, 1, sshd, ", remoteSyncd = '" + std::string(SYNCD_BINARY) + "', remoteRundir = '" +
                                                     t / "run2" + "', transport = '" + transport + "'");
    test::write_file(t / "push.lua", cfg);
    const std::string console = t / "push.console";
    test::Child c({SYNCD_BINARY, "-rundir", t / "run", t / "push.lua"}, console);
    auto logs = [&] { return test::exists(console) ? test::read_file(console) : std::string(); };
    REQUIRE_MESSAGE(test::wait_for_text(console, "did not answer within 10 s (is it stopped or hung?)", 0, 30000), logs());
    // The session ends with attach (it is dialed again), not after the 60 s HELLO wait.
    REQUIRE_MESSAGE(test::wait_for_text(console, "reconnecting in", 0, 10000), logs());
    CHECK_FALSE(test::exists(t / "t1/f"));  // nobody wrote to the stopped daemon's tree
    owner.signal(SIGCONT);
    queued.clear();
    REQUIRE_MESSAGE(test::wait_for_text(console, "finished: 0", 0, 60000), logs());
    CHECK(test::read_file(t / "t1/f") == "1");
    REQUIRE_MESSAGE(test::wait_for(t / "t9", "f"), test::read_file(t / "owner.console"));  // the owner pushed it on
    CHECK(test::read_file(t / "t9/f") == "1");
    CHECK(c.stop_within(SIGTERM, 30000) == 143);
    CHECK(owner.stop_within(SIGTERM, 30000) == 143);
  }
}

TEST_CASE("SIGTERM to the daemon's whole process group (Ctrl-C, a stop script) still flushes the file in flight, over either transport") {
  // The OpenSSH client ran in syncd's process group: the same SIGTERM killed it, the fade found
  // its peer gone, and the file reached the peer only when this node came back.
  for (const std::string transport : {"openssh", "libssh2"}) {
    CAPTURE(transport);
    test::TempDir t{"fade"};
    test::SshServer sshd(t / "sshd");
    sshd.start();
    ::mkdir((t / "s").c_str(), 0755);
    ::mkdir((t / "t").c_str(), 0755);
    // 6 MiB at 2 MiB/s: in flight for about three seconds, inside the 5 s the fade allows; above
    // 4 MiB the peer writes it as it comes, so its temp file shows the transfer has begun.
    test::write_file(t / "fade.lua",
                     "settings { nodaemon = true }\n"
                     "sync { default.rsyncssh, source = '" + t / "s" + "', host = '127.0.0.1', targetdir = '" + t / "t" +
                         "', delay = 0,\n  rsync = { rsh = '" + sshd.rsh() + "', bwlimit = 2048 },\n  syncd = { stateDir = '" +
                         t / "st" + "', remoteStateDir = '" + t / "rst" + "', remoteSyncd = '" + SYNCD_BINARY +
                         "', transport = '" + transport + "' } }\n");
    const std::string console = t / "fade.console";
    test::Child c({SYNCD_BINARY, "-rundir", t / "run", t / "fade.lua"}, console);
    auto logs = [&] { return test::exists(console) ? test::read_file(console) : std::string(); };
    REQUIRE_MESSAGE(test::wait_for_text(console, "finished: 0", 0), logs());
    REQUIRE(test::run("head -c 6291456 /dev/urandom > " + t / "big.stage && mv " + t / "big.stage " + t / "s/big") == 0);
    // Mid-transfer: the peer's temp file exists, the file itself not yet.
    REQUIRE_MESSAGE(test::wait_until(t / "t", [&] { return !test::list_dir(t / "t").empty(); }, 30000), logs());
    REQUIRE_FALSE(test::exists(t / "t/big"));
    REQUIRE(::kill(-c.pid(), SIGTERM) == 0);  // c runs in a process group of its own
    CHECK_MESSAGE(c.stop_within(0, 15000) == 143, logs());
    CHECK_MESSAGE(test::exists(t / "t/big"), logs());
    if (test::exists(t / "t/big")) CHECK(test::read_file(t / "t/big") == test::read_file(t / "s/big"));
  }
}

TEST_CASE("SIGHUP re-reads the config without losing a queued change") {
  Fixture f;
  const std::string cfg = f.t / "hup.lua";
  auto write_cfg = [&](int delay) {
    test::write_file(cfg, "settings { statusFile = '" + f.t / "hup.status" + "', statusInterval = 0 }\n"
                          "sync { default.direct, source = '" + f.src + "', target = '" + f.dst + "', delay = " +
                              std::to_string(delay) + " }\n");
  };
  write_cfg(600);  // changes wait ten minutes
  const std::string console = f.t / "hup.console";
  test::Child c({SYNCD_BINARY, "-nodaemon", "-statedir", f.t / "state", "-rundir", f.t / "run", cfg}, console);
  auto logs = [&] { return test::read_file(console); };
  REQUIRE_MESSAGE(test::wait_for_text(console, "finished: 0", 0), logs());
  test::write_file(f.src + "/queued.txt", "held by the delay");
  // Barrier: the status file lists the held change.
  REQUIRE_MESSAGE(test::wait_until(f.t.path(), [&] {
    return test::exists(f.t / "hup.status") && test::read_file(f.t / "hup.status").find("wait   Modify /queued.txt") != std::string::npos;
  }, 20000), logs());
  CHECK_FALSE(test::exists(f.dst + "/queued.txt"));
  write_cfg(0);
  const size_t before = logs().size();
  c.signal(SIGHUP);
  REQUIRE_MESSAGE(test::wait_for_text(console, "--- HUP signal, resetting ---", before), logs());
  REQUIRE_MESSAGE(test::wait_for_text(console, "delay 0 s as configured", before), logs());
  REQUIRE_MESSAGE(test::wait_for(f.dst, "queued.txt"), logs());
  CHECK(test::read_file(f.dst + "/queued.txt") == "held by the delay");
  // A broken config on the next HUP keeps the running one.
  test::write_file(cfg, "sync { default.direct, source = '" + f.src + "', taget = 'x' }\n");
  const size_t before2 = logs().size();
  c.signal(SIGHUP);
  REQUIRE_MESSAGE(test::wait_for_text(console, "config reload failed, keeping the running configuration", before2), logs());
  std::vector<std::string> diff;
  REQUIRE_MESSAGE(test::cookie_barrier(f.src, f.dst, "cookie.1", diff, 30000, true), logs());
  CHECK(diff.empty());
  CHECK(c.stop_within(SIGTERM, 10000) == 143);
}

TEST_CASE("two nodes whose configs point at each other form one two-way pair, xattrs and ACLs both ways") {
  Fixture f;
  test::SshServer sshd(f.t / "sshd");
  sshd.start();
  struct N {
    std::string dir, run, state, cfg, console;
    std::unique_ptr<test::Child> proc;
  };
  N a{f.t / "a", f.t / "run-a", f.t / "state-a", f.t / "a.lua", f.t / "a.console", nullptr};
  N b{f.t / "b", f.t / "run-b", f.t / "state-b", f.t / "b.lua", f.t / "b.console", nullptr};
  // Each node's config pushes its tree to the other, as lsyncd users write it; syncd's keys say
  // where this test's daemons keep their state and sockets (two "hosts" on one machine).
  auto write = [&](N& self, const N& peer) {
    ::mkdir(self.dir.c_str(), 0755);
    test::write_file(self.cfg, "sync { default.rsyncssh, source = '" + self.dir + "', host = '127.0.0.1', targetdir = '" + peer.dir +
                                   "',\n       bidirectional = true, rsync = { rsh = '" + sshd.rsh() + "', archive = true, xattrs = true, acls = true },\n"
                                   "       syncd = { stateDir = '" + self.state + "', rundir = '" + self.run + "', remoteRundir = '" +
                                   peer.run + "', remoteSyncd = '" + SYNCD_BINARY + "' } }\n");
  };
  write(a, b);
  write(b, a);
  test::write_file(a.dir + "/from-a", "a");
  test::write_file(b.dir + "/from-b", "b");
  REQUIRE(test::run("setfattr -n user.node -v a '" + a.dir + "/from-a' && setfacl -m u:1234:r '" + a.dir + "/from-a'") == 0);
  auto xattr = [](const std::string& path, const char* name) {
    char v[256];
    const ssize_t n = ::lgetxattr(path.c_str(), name, v, sizeof v);
    return n < 0 ? std::string("(none)") : std::string(v, static_cast<size_t>(n));
  };
  for (N* n : {&a, &b}) n->proc = std::make_unique<test::Child>(std::vector<std::string>{SYNCD_BINARY, "-nodaemon", n->cfg}, n->console);
  auto logs = [&] { return "a:\n" + test::read_file(a.console) + "b:\n" + test::read_file(b.console); };
  REQUIRE_MESSAGE(test::wait_for(b.dir, "from-a", 60000), logs());
  REQUIRE_MESSAGE(test::wait_for(a.dir, "from-b", 60000), logs());
  test::write_file(b.dir + "/later-b", "2");
  REQUIRE_MESSAGE(test::wait_for(a.dir, "later-b", 60000), logs());
  CHECK(xattr(b.dir + "/from-a", "user.node") == "a");
  CHECK(xattr(b.dir + "/from-a", "system.posix_acl_access") == xattr(a.dir + "/from-a", "system.posix_acl_access"));
  // An attribute changed on b travels back to a (a meta-only version).
  REQUIRE(test::run("setfattr -n user.node -v b '" + b.dir + "/from-a'") == 0);
  REQUIRE_MESSAGE(test::wait_until(a.dir, [&] { return xattr(a.dir + "/from-a", "user.node") == "b"; }, 60000), logs());
  for (N* n : {&a, &b}) {
    const std::string out = f.t / "status.json";
    REQUIRE(test::run(std::string(SYNCD_BINARY) + " status " + n->dir + " -rundir " + n->run + " --wait-idle 60000 --json > " + out) == 0);
    CHECK(test::read_file(out).find("\"two_way\": true") != std::string::npos);
  }
  const auto diff = test::tree_diff(a.dir, b.dir, [](const std::string& rel) { return rel == ".syncd.root"; });
  for (const auto& d : diff) MESSAGE(d);
  CHECK(diff.empty());
  for (N* n : {&a, &b}) CHECK(n->proc->stop_within(SIGTERM, 10000) == 143);
}

TEST_CASE("layer-3 string actions run as lsyncd runs them: same commands, same variables, same order") {
  Fixture f;
  const std::string out = f.t / "actions.out";
  // Every handler records what it was given; ^variables as lsyncd users write them.
  const std::string cfg = f.config(
      "local rec = ' >> @DIR@/actions.out'\n"
      "bash = {\n"
      "  onStartup = 'echo START ^source ^target' .. rec,\n"
      "  onCreate = 'echo CREATE path=^path pathname=^pathname sourcePath=^sourcePath sourcePathdir=^sourcePathdir '\n"
      "             .. 'targetPathname=^targetPathname targetPathdir=^targetPathdir unknown=^basename' .. rec,\n"
      "  onModify = 'echo MODIFY ^pathname' .. rec,\n"
      "  onAttrib = 'echo ATTRIB ^pathname' .. rec,\n"
      "  onDelete = 'echo DELETE ^pathname ^targetPath' .. rec,\n"
      "  onMove = 'echo MOVE ^o.pathname ^d.pathname ^o.targetPathname ^d.targetPathname' .. rec,\n"
      "}\n"
      "sync { bash, source = '@SRC@', target = '@DIR@/dst' }\n");
  ::mkdir((f.src + "/d").c_str(), 0755);
  test::write_file(f.src + "/old", "x");
  auto run = [&](std::vector<std::string> argv) {
    ::unlink(out.c_str());
    // Moved below: it exists before the start, so no Create or Modify of it is still queued in
    // lsyncd when it moves (lsyncd then splits a move into Delete + Create, by its own timing).
    test::write_file(f.src + "/d/premove", "p");
    argv.push_back(cfg);
    test::Child c(argv, f.t / "actions.console");
    auto logged = [&](const std::string& needle) {
      return test::wait_until(f.t.path(), [&] { return test::exists(out) && test::read_file(out).find(needle) != std::string::npos; }, 20000);
    };
    auto console = [&] { return test::read_file(f.t / "actions.console"); };
    // Each step waits for its own line: the next change is made only after.
    REQUIRE_MESSAGE(logged("START "), console());
    test::write_file(f.src + "/d/new file", "1");
    REQUIRE_MESSAGE(logged("CREATE path=d/new file "), console());
    REQUIRE(::rename((f.src + "/d/premove").c_str(), (f.src + "/moved").c_str()) == 0);
    REQUIRE_MESSAGE(logged("MOVE "), console());
    REQUIRE(::mkdir((f.src + "/nd").c_str(), 0755) == 0);
    REQUIRE_MESSAGE(logged("CREATE path=nd/ "), console());
    test::write_file(f.src + "/old", "xy");
    REQUIRE_MESSAGE(logged("MODIFY old"), console());
    REQUIRE(::chmod((f.src + "/old").c_str(), 0640) == 0);
    REQUIRE_MESSAGE(logged("ATTRIB old"), console());
    REQUIRE(::unlink((f.src + "/moved").c_str()) == 0);
    REQUIRE_MESSAGE(logged("DELETE moved"), console());
    const std::string log = console();
    CHECK(c.stop_within(SIGTERM, 10000) == 143);
    ::rmdir((f.src + "/nd").c_str());
    ::unlink((f.src + "/d/new file").c_str());
    // Everything compared, a new file's Create + Modify and a chmod's Attrib included.
    return std::make_pair(test::read_file(out), log);
  };
  auto [theirs, theirs_log] = run({kLsyncd, "-nodaemon"});
  test::write_file(f.src + "/old", "x");
  REQUIRE(::chmod((f.src + "/old").c_str(), 0644) == 0);
  auto [ours, ours_log] = run({SYNCD_BINARY, "-nodaemon", "-rundir", f.t / "run"});
  INFO("lsyncd:\n" << theirs << theirs_log << "\nsyncd:\n" << ours << ours_log);
  CHECK(ours == theirs);
  CHECK(ours.find("CREATE path=d/new file pathname=d/new file sourcePath=" + f.src + "//d/new file") != std::string::npos);
  CHECK(ours.find("unknown=^basename") != std::string::npos);
  CHECK(ours.find("MODIFY d/new file\n") != std::string::npos);
  CHECK(ours.find("ATTRIB old\n") != std::string::npos);
  for (const std::string& l : {std::string("Normal: Event Create spawns shell \"echo CREATE path=nd/ pathname=nd"),
                               "Normal: Startup of " + f.src + "/ -> " + f.t / "dst finished."}) {
    CHECK_MESSAGE(theirs_log.find(l) != std::string::npos, l);
    CHECK_MESSAGE(ours_log.find(l) != std::string::npos, l);
  }
}

TEST_CASE("layer-2 function actions run as lsyncd runs them: event fields, spawn, spawnShell, log") {
  Fixture f;
  const std::string out = f.t / "fn.out";
  const std::string cfg = f.config(
      "local rec = '@DIR@/fn.out'\n"
      "fn = {\n"
      "  onStartup = function(event) spawnShell(event, 'echo START \"$1\" >> ' .. rec, event.source) end,\n"
      "  onCreate = function(event)\n"
      "    log('Normal', 'created ' .. event.pathname)\n"
      "    spawn(event, '/bin/sh', '-c', 'echo CREATE \"$@\" >> ' .. rec, 'sh', event.etype, tostring(event.isdir), event.name,\n"
      "          event.basename, event.path, event.pathname, event.sourcePath, event.targetPathname, event.targetPathdir)\n"
      "  end,\n"
      "  onDelete = function(event) spawnShell(event, 'echo DELETE \"$1\" >> ' .. rec, event.pathname) end,\n"
      "  onModify = function(event) spawn(event, '/bin/sh', '<', 'STDIN ' .. event.pathname .. '\\n', '-c', 'cat >> ' .. rec .. '; echo \"$@\" >> ' .. rec, 'sh', { 'a', 'b' }) end,\n"
      "  onMove = function(o, d) spawnShell(o, 'echo MOVE \"$1\" \"$2\" \"$3\" >> ' .. rec, o.pathname, d.pathname, d.targetPathname) end,\n"
      "}\n"
      "sync { fn, source = '@SRC@', target = '@DIR@/dst' }\n");
  auto run = [&](std::vector<std::string> argv) {
    ::unlink(out.c_str());
    ::mkdir((f.src + "/pre").c_str(), 0755);
    test::write_file(f.src + "/pre/f", "p");
    argv.push_back(cfg);
    test::Child c(argv, f.t / "fn.console");
    auto logged = [&](const std::string& needle) {
      return test::wait_until(f.t.path(), [&] { return test::exists(out) && test::read_file(out).find(needle) != std::string::npos; }, 20000);
    };
    auto console = [&] { return test::read_file(f.t / "fn.console"); };
    REQUIRE_MESSAGE(logged("START "), console());
    REQUIRE(::mkdir((f.src + "/dd").c_str(), 0755) == 0);
    REQUIRE_MESSAGE(logged("CREATE Create true dd/"), console());
    test::write_file(f.src + "/dd/f", "x");
    REQUIRE_MESSAGE(logged("CREATE Create false f"), console());
    // (a file that existed before the start moves: see the layer-3 case)
    REQUIRE(::rename((f.src + "/pre/f").c_str(), (f.src + "/g").c_str()) == 0);
    REQUIRE_MESSAGE(logged("MOVE "), console());
    REQUIRE(::unlink((f.src + "/g").c_str()) == 0);
    REQUIRE_MESSAGE(logged("DELETE g"), console());
    CHECK(c.stop_within(SIGTERM, 10000) == 143);
    ::unlink((f.src + "/dd/f").c_str());
    ::rmdir((f.src + "/dd").c_str());
    return std::make_pair(test::read_file(out), console());
  };
  auto [theirs, theirs_log] = run({kLsyncd, "-nodaemon"});
  auto [ours, ours_log] = run({SYNCD_BINARY, "-nodaemon", "-rundir", f.t / "run"});
  INFO("lsyncd:\n" << theirs << theirs_log << "\nsyncd:\n" << ours << ours_log);
  CHECK(ours == theirs);
  CHECK(ours.find("CREATE Create false f f dd/f dd/f " + f.src + "//dd/f " + f.t / "dst/dd/f " + f.t / "dst/dd/") != std::string::npos);
  CHECK(ours.find("STDIN dd/f\na b\n") != std::string::npos);  // spawn's '<' text, a table argument expanded
  for (const std::string& l : {std::string("Normal: created dd/f"), "Normal: Finished Move on " + f.src + "//pre/f = 0",
                               "Normal: Finished Create on " + f.src + "//dd/ = 0"}) {
    CHECK_MESSAGE(theirs_log.find(l) != std::string::npos, l);
    CHECK_MESSAGE(ours_log.find(l) != std::string::npos, l);
  }
}

// Waits (no polling: a pidfd becomes readable when the process ends) for `c` to exit on its own.
std::optional<int> exit_code_within(test::Child& c, int ms) {
  const int pfd = static_cast<int>(::syscall(SYS_pidfd_open, c.pid(), 0));
  REQUIRE(pfd >= 0);
  pollfd p{pfd, POLLIN, 0};
  const int ready = ::poll(&p, 1, ms);
  ::close(pfd);
  if (ready != 1) return std::nullopt;
  return c.wait();
}

TEST_CASE("lsyncd's runtime globals in a config: alarm(), now(), readdir(), terminate(), event.status / inlet / config") {
  Fixture f;
  const std::string out = f.t / "rt.out";
  const std::string cfg = f.config(
      "local rec = '@DIR@/rt.out'\n"
      "local function put(s) local fh = io.open(rec, 'a'); fh:write(s, '\\n'); fh:close() end\n"
      "local ticks = 0\n"
      "local function tick(ts, extra)\n"
      "  ticks = ticks + 1\n"
      "  put('alarm ' .. ticks .. ' ' .. extra .. ' ' .. tostring(now() - ts >= 0))\n"
      "  if ticks < 3 then alarm(now() + 0.05, tick, extra .. '+') end\n"
      "end\n"
      "rt = {\n"
      "  onCreate = function(event)\n"
      "    local names = {}\n"
      "    for n, isdir in pairs(readdir(event.sourcePathdir)) do names[#names + 1] = n .. '=' .. tostring(isdir) end\n"
      "    table.sort(names)\n"
      "    put('create ' .. event.pathname .. ' ' .. event.status .. ' ' .. event.config.source .. ' ' ..\n"
      "        tostring(event.inlet.getConfig() == event.config) .. ' ' .. table.concat(names, ','))\n"
      "    if event.pathname == 'stop' then\n"
      "      terminate(3)\n"
      "      put('not reached: terminate() does not return')\n"
      "      spawn(event, '/bin/sh', '-c', 'echo not run >> ' .. rec)\n"
      "    end\n"
      "  end,\n"
      "}\n"
      "alarm(now() + 0.05, tick, 'x')\n"
      "sync { rt, source = '@SRC@', target = '@DIR@/dst' }\n");
  auto run = [&](std::vector<std::string> argv) {
    ::unlink(out.c_str());
    argv.push_back(cfg);
    test::Child c(argv, f.t / "rt.console");
    auto console = [&] { return test::read_file(f.t / "rt.console"); };
    auto logged = [&](const std::string& needle) {
      return test::wait_until(f.t.path(), [&] { return test::exists(out) && test::read_file(out).find(needle) != std::string::npos; }, 20000);
    };
    REQUIRE_MESSAGE(logged("alarm 3 x++ true"), console());
    REQUIRE(::mkdir((f.src + "/sub").c_str(), 0755) == 0);
    REQUIRE_MESSAGE(logged("create sub "), console());
    test::write_file(f.src + "/a", "x");
    REQUIRE_MESSAGE(logged("create a "), console());
    test::write_file(f.src + "/stop", "");
    const auto code = exit_code_within(c, 20000);
    if (!code) (void)c.stop(SIGKILL);
    ::unlink((f.src + "/a").c_str());
    ::unlink((f.src + "/stop").c_str());
    ::rmdir((f.src + "/sub").c_str());
    return std::make_tuple(code, test::read_file(out), console());
  };
  auto [their_code, theirs, theirs_log] = run({kLsyncd, "-nodaemon"});
  auto [our_code, ours, ours_log] = run({SYNCD_BINARY, "-nodaemon", "-rundir", f.t / "run"});
  INFO("lsyncd:\n" << theirs << theirs_log << "\nsyncd:\n" << ours << ours_log);
  CHECK(ours == theirs);
  CHECK(their_code == std::optional<int>(3));
  CHECK(our_code == std::optional<int>(3));
  CHECK(ours.find("alarm 1 x true\nalarm 2 x+ true\nalarm 3 x++ true\n") == 0);
  CHECK(ours.find("create a wait " + f.src + "/ true a=false,sub=true\n") != std::string::npos);
  CHECK(ours.find("not r") == std::string::npos);
}

TEST_CASE("rsync's chmod, usermap, groupmap, existing and update: syncd's target equals rsync's with the same flags") {
  Fixture f;
  test::make_sample_tree(f.src);
  put_file(f.src + "/kept.txt", "source, older", 1'100'000'000);
  put_file(f.src + "/replaced.txt", "source, newer", 1'500'000'000);
  put_file(f.src + "/only-source.txt", "never created", 1'500'000'000);
  REQUIRE(::mkdir((f.src + "/only-source-dir").c_str(), 0755) == 0);
  put_file(f.src + "/only-source-dir/f", "never created", 1'500'000'000);
  // Two identical targets that already hold most of the tree; one is rsync's, one syncd's.
  const std::string rdst = f.t / "rsync-dst";
  for (const auto& d : {f.dst, rdst}) {
    REQUIRE(test::run("rm -rf '" + d + "' && cp -a '" + f.src + "' '" + d + "' && rm -rf '" + d + "/only-source.txt' '" + d +
                      "/only-source-dir'") == 0);
    put_file(d + "/kept.txt", "target, newer: --update keeps it", 1'600'000'000);
    put_file(d + "/replaced.txt", "target, older", 1'000'000'000);
    put_file(d + "/stale.txt", "only in the target: deleted", 1'000'000'000);
  }
  const std::string chmod = "Dg+s,ug+w,Fo-w,+X", usermap = "1234:nobody,*:4321", groupmap = "*:nogroup";
  REQUIRE(test::run("rsync -a --chmod=" + chmod + " --usermap='" + usermap + "' --groupmap='" + groupmap + "' --existing --update --delete '" +
                    f.src + "/' '" + rdst + "/'") == 0);
  const std::string cfg = f.config("sync { default.rsync, source = '@SRC@', target = '" + f.dst + "',\n"
                                   "       rsync = { chmod = '" + chmod + "', usermap = '" + usermap + "', groupmap = '" + groupmap +
                                   "', existing = true, update = true } }\n");
  const std::string console = f.t / "rules.console";
  auto c = f.syncd_started(cfg, console);
  auto logs = [&] { return test::read_file(console); };
  f.wait_idle();
  f.expect_like(rdst, logs());
  // The flags did something: a mapped owner and mode, a kept newer file, nothing new created.
  struct stat st {};
  REQUIRE(::stat((f.dst + "/replaced.txt").c_str(), &st) == 0);
  CHECK(st.st_uid == 4321);
  CHECK((st.st_mode & 07777) == 0664);
  CHECK(test::read_file(f.dst + "/replaced.txt") == "source, newer");
  CHECK(test::read_file(f.dst + "/kept.txt") == "target, newer: --update keeps it");
  CHECK_FALSE(test::exists(f.dst + "/only-source.txt"));
  CHECK_FALSE(test::exists(f.dst + "/only-source-dir"));
  CHECK_FALSE(test::exists(f.dst + "/stale.txt"));  // delete = true, as rsync --delete
  CHECK(logs().find("not honoured") == std::string::npos);
  // Live: an older rewrite and a new file are held back; the newer rewrite written last arrives
  // (one ordered stream, so the first two were decided before it).
  move_in(f.t / "stage", f.src + "/kept.txt", "source, still older", 1'200'000'000);
  move_in(f.t / "stage", f.src + "/brand-new.txt", "not created", 1'700'000'000);
  move_in(f.t / "stage", f.src + "/replaced.txt", "source, newest", 1'700'000'000);
  REQUIRE_MESSAGE(test::wait_until(f.dst, [&] { return test::read_file(f.dst + "/replaced.txt") == "source, newest"; }), logs());
  REQUIRE(::stat((f.dst + "/replaced.txt").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0664);
  CHECK(test::read_file(f.dst + "/kept.txt") == "target, newer: --update keeps it");
  CHECK_FALSE(test::exists(f.dst + "/brand-new.txt"));
  CHECK(c->stop_within(SIGTERM, 10000) == 143);
}

namespace {

// user.* and POSIX ACL attributes of every entry below `root` (not following symlinks), as
// "path name=hex-value" lines; `getfattr` would do, but it is one more package.
std::set<std::string> replicated_xattrs(const std::string& root) {
  std::set<std::string> out;
  const std::string list = root + "/../xattr-list";
  REQUIRE(test::run("cd '" + root + "' && find . -mindepth 1 ! -type l ! -name 'cookie.*' | sort > '" + list + "'") == 0);
  std::istringstream paths(test::read_file(list));
  for (std::string p; std::getline(paths, p);) {
    const std::string full = root + "/" + p.substr(2);
    char names[4096];
    const ssize_t n = ::llistxattr(full.c_str(), names, sizeof names);
    REQUIRE(n >= 0);
    for (ssize_t at = 0; at < n; at += static_cast<ssize_t>(std::strlen(names + at)) + 1) {
      const std::string name = names + at;
      if (name.rfind("user.", 0) != 0 && name.rfind("system.posix_acl_", 0) != 0) continue;
      unsigned char v[4096];
      const ssize_t len = ::lgetxattr(full.c_str(), name.c_str(), v, sizeof v);
      REQUIRE(len >= 0);
      std::string hex;
      for (ssize_t i = 0; i < len; ++i) hex += "0123456789abcdef"[v[i] >> 4], hex += "0123456789abcdef"[v[i] & 15];
      out.insert(p.substr(2) + " " + name + "=" + hex);
    }
  }
  return out;
}

}  // namespace

TEST_CASE("rsync's times on directories and symlinks: kept as rsync -a keeps them, omitted as with rsync -aOJ") {
  Fixture f;
  test::make_sample_tree(f.src);  // directories from 2011/2012, a symlink from 2020
  auto year_of = [](const std::string& p) {
    struct stat st {};
    REQUIRE(::lstat(p.c_str(), &st) == 0);
    struct tm tm {};
    ::gmtime_r(&st.st_mtim.tv_sec, &tm);
    return tm.tm_year + 1900;
  };
  // Kept (the default): the directories keep their times while entries are added inside, live.
  const std::string keep = f.config("sync { default.rsync, source = '@SRC@', target = '" + f.dst + "', rsync = { archive = true } }\n");
  {
    auto c = f.syncd_started(keep, f.t / "keep.console");
    f.wait_idle();
    CHECK(year_of(f.dst + "/etc") == 2012);
    CHECK(year_of(f.dst + "/etc/ca") == 2011);
    CHECK(year_of(f.dst + "/etc/link") == 2020);
    test::write_file(f.src + "/etc/ca/new.pem", "added inside");  // moves etc/ca's time in the source
    std::vector<std::string> diff;
    REQUIRE(test::cookie_barrier(f.src, f.dst, "cookie.1", diff, 30000, true));
    for (const auto& d : diff) MESSAGE(d);
    CHECK(diff.empty());
    CHECK(c->stop_within(SIGTERM, 10000) == 143);
  }
  // Omitted: compared with rsync -aOJ into a target of its own.
  const std::string dst2 = f.t / "dst-omit", rdst = f.t / "rsync-dst";
  REQUIRE(::mkdir(dst2.c_str(), 0755) == 0);
  REQUIRE(test::run("rm -rf '" + f.t / "state" + "'") == 0);  // a new target: a new index
  REQUIRE(test::run("rsync -aOJ '" + f.src + "/' '" + rdst + "/'") == 0);
  const std::string omit = f.config("sync { default.rsync, source = '@SRC@', target = '" + dst2 +
                                    "', rsync = { archive = true, omit_dir_times = true, omit_link_times = true } }\n");
  const std::string console = f.t / "omit.console";
  auto c = f.syncd_started(omit, console);
  f.wait_idle();
  for (const auto& d : {rdst, dst2}) {
    CAPTURE(d);
    CHECK(year_of(d + "/etc") > 2012);
    CHECK(year_of(d + "/etc/ca") > 2011);
    CHECK(year_of(d + "/etc/link") > 2020);
    CHECK(year_of(d + "/etc/ca/key.pem") == 2001);  // files keep theirs
  }
  auto diff = test::tree_diff(rdst, dst2, [](const std::string& rel) { return rel.rfind("cookie.", 0) == 0; });
  std::erase(diff, std::string("mtime differs: etc/link"));  // both "now", different instants
  for (const auto& d : diff) MESSAGE(d);
  CHECK(diff.empty());
  CHECK(test::read_file(console).find("not honoured") == std::string::npos);
  CHECK(c->stop_within(SIGTERM, 10000) == 143);
}

TEST_CASE("the target root gets the source root's owner, group, mode and mtime, as rsync -a gives it, and keeps them up to date") {
  Fixture f;
  test::make_sample_tree(f.src);
  REQUIRE(::chown(f.src.c_str(), 1234, 2345) == 0);
  REQUIRE(::chmod(f.src.c_str(), 02750) == 0);
  auto set_mtime = [](const std::string& p, time_t sec) {
    const timespec ts[2] = {{sec, 0}, {sec, 250}};
    REQUIRE(::utimensat(AT_FDCWD, p.c_str(), ts, 0) == 0);
  };
  set_mtime(f.src, 1'500'000'000);
  using Root = std::tuple<mode_t, uid_t, gid_t, time_t, long>;
  auto root_of = [](const std::string& d) {
    struct stat st {};
    REQUIRE(::stat(d.c_str(), &st) == 0);
    return Root{st.st_mode & 07777, st.st_uid, st.st_gid, st.st_mtim.tv_sec, st.st_mtim.tv_nsec};
  };
  const std::string rdst = f.rsync_reference("-a");
  REQUIRE(root_of(rdst) == root_of(f.src));  // what rsync -a does to the root
  REQUIRE(root_of(f.dst) != root_of(f.src));
  const std::string cfg = f.config("sync { default.rsync, source = '@SRC@', target = '" + f.dst + "' }\n");
  const std::string console = f.t / "root.console";
  auto c = f.syncd_started(cfg, console);
  auto logs = [&] { return test::read_file(console); };
  // ROOT_META has no ACK: the barrier is the target root itself (its own changes are inotify
  // events of the watched directory).
  auto root_like = [&](const Root& want) { return test::wait_until(f.dst, [&] { return root_of(f.dst) == want; }, 20000); };
  CHECK_MESSAGE(root_like(root_of(rdst)), logs());
  f.wait_idle();
  f.expect_like(rdst, logs());
  // Running: an entry created at the top moves the source root's mtime; the target follows,
  // also after its own applies inside the root moved it again.
  test::write_file(f.src + "/top-level.txt", "new");
  CHECK_MESSAGE(root_like(root_of(f.src)), logs());
  REQUIRE(::chmod(f.src.c_str(), 0705) == 0);  // an attribute change of the root alone
  CHECK_MESSAGE(root_like(root_of(f.src)), logs());
  CHECK(std::get<0>(root_of(f.dst)) == 0705);
  CHECK(c->stop_within(SIGTERM, 10000) == 143);
}

TEST_CASE("rsync's prune_empty_dirs: the target has only directories with files below them, as rsync -a -m --delete leaves it") {
  Fixture f;
  REQUIRE(test::run("cd '" + f.src + "' && mkdir -p empty/deeper full/a/b skeleton/x/y/z mixed/e && touch full/a/b/f mixed/g && "
                    "mkdir -p excluded-only && touch excluded-only/x.o") == 0);
  // Already on the target: an empty directory the source has empty too, one with a file of its
  // own (an extra: deleted), and one holding only an excluded file (protected, so it stays).
  REQUIRE(test::run("mkdir -p '" + f.dst + "/skeleton/x' '" + f.dst + "/empty/old' '" + f.dst + "/excluded-only' && touch '" +
                    f.dst + "/empty/old/extra' '" + f.dst + "/excluded-only/y.o'") == 0);
  const std::string rdst = f.rsync_reference("-a -m --delete --exclude='*.o'", true);
  const std::string cfg = f.config("sync { default.rsync, source = '@SRC@', target = '" + f.dst + "', exclude = { '*.o' },\n"
                                   "       rsync = { archive = true, prune_empty_dirs = true } }\n");
  const std::string console = f.t / "prune.console";
  auto c = f.syncd_started(cfg, console);
  auto logs = [&] { return test::read_file(console); };
  f.wait_idle();
  // rsync -m leaves the times of the directories it creates on demand as they fall; syncd gives
  // them the source's: entries and metadata are compared with rsync's, times with the source.
  f.expect_like(rdst, logs(), false);
  auto mtime_of = [](const std::string& p) {
    struct stat st {};
    REQUIRE(::stat(p.c_str(), &st) == 0);
    return std::make_pair(st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
  };
  for (const char* d : {"full", "full/a", "full/a/b", "mixed"}) {
    CAPTURE(d);
    CHECK(mtime_of(f.dst + "/" + d) == mtime_of(f.src + "/" + d));
  }
  CHECK_FALSE(test::exists(f.dst + "/empty"));
  CHECK_FALSE(test::exists(f.dst + "/skeleton"));
  CHECK(test::exists(f.dst + "/full/a/b/f"));
  CHECK(test::exists(f.dst + "/excluded-only/y.o"));
  // Running: a file deep in the skeleton brings its directories (with their metadata); removing
  // the last file of a chain takes the chain along.
  REQUIRE(::chmod((f.src + "/skeleton/x").c_str(), 0700) == 0);
  test::write_file(f.src + "/skeleton/x/y/z/now", "1");
  REQUIRE(::unlink((f.src + "/full/a/b/f").c_str()) == 0);
  std::vector<std::string> diff;
  REQUIRE_MESSAGE(test::cookie_barrier(f.src, f.dst, "cookie.1", diff, 30000, true), logs());
  CHECK(test::exists(f.dst + "/skeleton/x/y/z/now"));
  struct stat st {};
  REQUIRE(::stat((f.dst + "/skeleton/x").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0700);
  CHECK_FALSE(test::exists(f.dst + "/full"));
  for (const char* d : {"skeleton", "skeleton/x", "skeleton/x/y", "skeleton/x/y/z"}) {
    CAPTURE(d);
    CHECK(mtime_of(f.dst + "/" + d) == mtime_of(f.src + "/" + d));
  }
  const std::string rdst2 = f.t / "rsync-dst2";
  REQUIRE(test::run("mkdir -p '" + rdst2 + "' && cp -a '" + rdst + "/.' '" + rdst2 + "/' && rsync -a -m --delete --exclude='*.o' '" +
                    f.src + "/' '" + rdst2 + "/'") == 0);
  const auto d2 = test::tree_diff(rdst2, f.dst, {}, false);
  for (const auto& d : d2) MESSAGE(d);
  CHECK_MESSAGE(d2.empty(), logs());
  CHECK(c->stop_within(SIGTERM, 10000) == 143);
}

TEST_CASE("rsync's sparse: runs of zeros arrive as holes, as rsync -aS writes them") {
  Fixture f;
  // 8 MiB with data at the start, in the middle and at the end; the rest zeros.
  const std::string big = f.src + "/disk.img";
  REQUIRE(test::run("truncate -s 8M '" + big + "' && for o in 0 4096 6000; do head -c 3000 /dev/urandom | "
                    "dd of='" + big + "' bs=1K seek=$o conv=notrunc status=none; done && truncate -s 9M '" + big + "'") == 0);
  const std::string rdst = f.rsync_reference("-aS");
  const std::string cfg = f.config("sync { default.rsync, source = '@SRC@', target = '" + f.dst + "', rsync = { archive = true, sparse = true } }\n");
  const std::string console = f.t / "sparse.console";
  auto c = f.syncd_started(cfg, console);
  auto logs = [&] { return test::read_file(console); };
  std::vector<std::string> diff;
  REQUIRE_MESSAGE(test::cookie_barrier(f.src, f.dst, "cookie.1", diff, 30000, true), logs());
  for (const auto& d : diff) MESSAGE(d);
  CHECK(diff.empty());
  auto allocated = [](const std::string& p) {
    struct stat st {};
    REQUIRE(::stat(p.c_str(), &st) == 0);
    return static_cast<uint64_t>(st.st_blocks) * 512;
  };
  const uint64_t ours = allocated(f.dst + "/disk.img"), theirs = allocated(rdst + "/disk.img");
  MESSAGE("allocated: syncd " << ours << " rsync -S " << theirs);
  CHECK(theirs < 1u << 20);
  CHECK(ours < 1u << 20);  // 9 MiB long, about 12 KiB of data
  // Live: a rewrite stays sparse.
  REQUIRE(test::run("head -c 5000 /dev/urandom | dd of='" + big + "' bs=1K seek=2000 conv=notrunc status=none") == 0);
  REQUIRE_MESSAGE(test::cookie_barrier(f.src, f.dst, "cookie.2", diff, 30000, true), logs());
  CHECK(diff.empty());
  CHECK(allocated(f.dst + "/disk.img") < 1u << 20);
  CHECK(logs().find("not honoured") == std::string::npos);
  CHECK(c->stop_within(SIGTERM, 10000) == 143);
}

TEST_CASE("rsync's inplace: an edit inside a big file is written into the target file (same inode), as rsync --inplace does - an insertion still arrives whole and right") {
  Fixture f;
  const std::string big = f.src + "/big.bin";
  REQUIRE(test::run("head -c 3M /dev/urandom > '" + big + "'") == 0);
  const std::string cfg = f.config("sync { default.rsync, source = '@SRC@', target = '" + f.dst + "', rsync = { archive = true, inplace = true } }\n");
  const std::string console = f.t / "inplace.console";
  auto c = f.syncd_started(cfg, console);
  auto logs = [&] { return test::read_file(console); };
  std::vector<std::string> diff;
  REQUIRE_MESSAGE(test::cookie_barrier(f.src, f.dst, "cookie.1", diff, 30000, true), logs());
  CHECK(diff.empty());
  auto inode = [](const std::string& p) {
    struct stat st {};
    REQUIRE(::stat(p.c_str(), &st) == 0);
    return st.st_ino;
  };
  // A program holding the target file open (a reader, a hard link elsewhere) keeps seeing it.
  const ino_t before = inode(f.dst + "/big.bin");
  REQUIRE(test::run("head -c 1024 /dev/urandom | dd of='" + big + "' bs=1K seek=1500 conv=notrunc status=none") == 0);
  REQUIRE_MESSAGE(test::cookie_barrier(f.src, f.dst, "cookie.2", diff, 30000, true), logs());
  for (const auto& d : diff) MESSAGE(d);
  CHECK(diff.empty());
  CHECK(inode(f.dst + "/big.bin") == before);
  // Bytes inserted near the start shift everything after them: such a delta cannot be applied
  // in place without reading bytes it overwrote, so it goes into a new file renamed over the old.
  REQUIRE(test::run("(printf 'inserted'; cat '" + big + "') > '" + f.t / "shifted" + "' && cat '" + f.t / "shifted" + "' > '" + big + "'") == 0);
  REQUIRE_MESSAGE(test::cookie_barrier(f.src, f.dst, "cookie.3", diff, 30000, true), logs());
  for (const auto& d : diff) MESSAGE(d);
  CHECK(diff.empty());
  CHECK(inode(f.dst + "/big.bin") != before);
  CHECK(logs().find("rsync.inplace") == std::string::npos);  // no warning: it is honoured
  CHECK(c->stop_within(SIGTERM, 10000) == 143);
}

TEST_CASE("rsync's inplace over SSH: syncd attach gets it too - the edited target file keeps its inode") {
  Fixture f;
  test::SshServer sshd(f.t / "sshd");
  sshd.start();
  const std::string big = f.src + "/big.bin";
  REQUIRE(test::run("head -c 2M /dev/urandom > '" + big + "'") == 0);
  const std::string cfg = f.config("sync { default.rsyncssh, source = '@SRC@', host = '127.0.0.1', targetdir = '" + f.dst + "',\n"
                                   "       rsync = { rsh = '" + sshd.rsh() + "', inplace = true },\n"
                                   "       syncd = { remoteSyncd = '" + std::string(SYNCD_BINARY) + "', remoteStateDir = '" + f.t / "rstate" + "' } }\n");
  const std::string console = f.t / "inplace-ssh.console";
  auto c = f.syncd_started(cfg, console);
  auto logs = [&] { return test::read_file(console); };
  std::vector<std::string> diff;
  REQUIRE_MESSAGE(test::cookie_barrier(f.src, f.dst, "cookie.1", diff, 30000, true), logs());
  struct stat before {};
  REQUIRE(::stat((f.dst + "/big.bin").c_str(), &before) == 0);
  REQUIRE(test::run("head -c 1024 /dev/urandom | dd of='" + big + "' bs=1K seek=700 conv=notrunc status=none") == 0);
  REQUIRE_MESSAGE(test::cookie_barrier(f.src, f.dst, "cookie.2", diff, 30000, true), logs());
  for (const auto& d : diff) MESSAGE(d);
  CHECK(diff.empty());
  struct stat after {};
  REQUIRE(::stat((f.dst + "/big.bin").c_str(), &after) == 0);
  CHECK(after.st_ino == before.st_ino);
  CHECK(c->stop_within(SIGTERM, 10000) == 143);
}

TEST_CASE("rsync's devices and specials (archive): device files, FIFOs and sockets arrive as rsync -a makes them") {
  Fixture f;
  const std::string make_specials = "mkdir -p '@/dev' && mknod '@/dev/null' c 1 3 && mknod '@/dev/loop9' b 7 9 && mkfifo -m 0640 '@/queue'"
                                    " && chown 1234:5678 '@/queue' && touch -h -d '2003-03-03 03:03:03' '@/dev/null'";
  REQUIRE(test::run(replace_all(make_specials, "@", f.src)) == 0);
  {  // a socket file: bound here (no interpreter needed on a fresh machine), closed, the inode stays
    const int sfd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    REQUIRE(sfd >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::string sp = f.src + "/control.sock";
    REQUIRE(sp.size() < sizeof addr.sun_path);
    std::memcpy(addr.sun_path, sp.c_str(), sp.size() + 1);
    CHECK(::bind(sfd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0);
    ::close(sfd);
  }
  test::write_file(f.src + "/plain.txt", "a file beside them");
  const std::string rdst = f.rsync_reference("-a");
  const std::string cfg = f.config("sync { default.rsync, source = '@SRC@', target = '" + f.dst + "', rsync = { archive = true } }\n");
  const std::string console = f.t / "specials.console";
  auto c = f.syncd_started(cfg, console);
  auto logs = [&] { return test::read_file(console); };
  f.wait_idle();
  // The same entries, types, device numbers, owners and modes as rsync -a made; the times are the
  // source's (rsync 3.5 leaves a FIFO's or socket's own creation time here and there).
  auto diff = test::tree_diff(rdst, f.dst, {}, true);
  std::erase_if(diff, [](const std::string& d) { return d.rfind("mtime differs: ", 0) == 0; });
  for (const auto& d : diff) MESSAGE(d);
  CHECK_MESSAGE(diff.empty(), logs());
  diff = test::tree_diff(f.src, f.dst, {}, true);
  for (const auto& d : diff) MESSAGE(d);
  CHECK_MESSAGE(diff.empty(), logs());
  struct stat st {};
  REQUIRE(::lstat((f.dst + "/dev/loop9").c_str(), &st) == 0);
  CHECK(S_ISBLK(st.st_mode));
  CHECK(st.st_rdev == ::makedev(7, 9));
  REQUIRE(::lstat((f.dst + "/control.sock").c_str(), &st) == 0);
  CHECK(S_ISSOCK(st.st_mode));
  // Live: a new FIFO, a chmod of a device, a device renamed, one replaced by another number, a socket deleted.
  REQUIRE(test::run("mkfifo '" + f.src + "/dev/new-fifo' && chmod 0600 '" + f.src + "/dev/null' && mv '" + f.src + "/queue' '" + f.src +
                    "/dev/queue' && rm '" + f.src + "/control.sock' && rm '" + f.src + "/dev/loop9' && mknod '" + f.src + "/dev/loop9' b 7 10") == 0);
  std::vector<std::string> d2;
  REQUIRE_MESSAGE(test::cookie_barrier(f.src, f.dst, "cookie.1", d2, 30000, true), logs());
  for (const auto& d : d2) MESSAGE(d);
  CHECK(d2.empty());
  REQUIRE(::lstat((f.dst + "/dev/loop9").c_str(), &st) == 0);
  CHECK(st.st_rdev == ::makedev(7, 10));
  CHECK(logs().find("not honoured") == std::string::npos);
  CHECK(c->stop_within(SIGTERM, 10000) == 143);
  // Without archive (lsyncd's default.rsync) they are not replicated.
  const std::string dst2 = f.t / "dst-plain";
  REQUIRE(::mkdir(dst2.c_str(), 0755) == 0);
  REQUIRE(test::run("rm -rf '" + f.t / "state" + "'") == 0);
  auto c2 = f.syncd_started(f.config("sync { default.rsync, source = '@SRC@', target = '" + dst2 + "' }\n"), f.t / "plain.console");
  f.wait_idle();
  CHECK(test::read_file(dst2 + "/plain.txt") == "a file beside them");
  CHECK_FALSE(test::exists(dst2 + "/dev/null"));
  CHECK_FALSE(test::exists(dst2 + "/dev/queue"));
  CHECK(test::exists(dst2 + "/dev"));
  CHECK(c2->stop_within(SIGTERM, 10000) == 143);
}

// Names of multiply-linked regular files, grouped by inode (each group sorted).
std::set<std::vector<std::string>> link_groups(const std::string& root) {
  std::map<ino_t, std::vector<std::string>> by_ino;
  std::function<void(const std::string&)> walk = [&](const std::string& rel) {
    for (const auto& n : test::list_dir(rel.empty() ? root : root + "/" + rel)) {
      const std::string r = rel.empty() ? n : rel + "/" + n;
      struct stat st {};
      if (::lstat((root + "/" + r).c_str(), &st) != 0) continue;
      if (S_ISDIR(st.st_mode)) walk(r);
      else if (S_ISREG(st.st_mode) && st.st_nlink > 1) by_ino[st.st_ino].push_back(r);
    }
  };
  walk("");
  std::set<std::vector<std::string>> out;
  for (auto& [ino, names] : by_ino) {
    std::sort(names.begin(), names.end());
    if (names.size() > 1) out.insert(names);
  }
  return out;
}

TEST_CASE("rsync's hard_links: names of one inode arrive as hard links, as rsync -aH makes them, live changes too") {
  Fixture f;
  REQUIRE(test::run("mkdir -p '" + f.src + "/sub' && printf 'shared bytes' > '" + f.src + "/a' && ln '" + f.src + "/a' '" + f.src +
                    "/sub/b' && ln '" + f.src + "/a' '" + f.src + "/c' && printf 'shared bytes' > '" + f.src + "/twin'") == 0);
  const std::string rdst = f.rsync_reference("-aH");
  const auto expected = std::set<std::vector<std::string>>{{"a", "c", "sub/b"}};
  REQUIRE(link_groups(rdst) == expected);  // the equal but separate `twin` is not linked
  const std::string cfg = f.config("sync { default.rsync, source = '@SRC@', target = '" + f.dst + "', rsync = { archive = true, hard_links = true } }\n");
  const std::string console = f.t / "links.console";
  auto c = f.syncd_started(cfg, console);
  auto logs = [&] { return test::read_file(console); };
  f.wait_idle();
  CHECK(link_groups(f.dst) == link_groups(rdst));
  // rsync -H makes the links after it set the directories' times (sub's is then the time of its
  // link): directory times are compared with the source instead.
  auto diff = test::tree_diff(rdst, f.dst);
  for (const auto& d : diff) MESSAGE(d);
  CHECK_MESSAGE(diff.empty(), logs());
  diff = test::tree_diff(f.src, f.dst, {}, true);
  for (const auto& d : diff) MESSAGE(d);
  CHECK_MESSAGE(diff.empty(), logs());
  // Live: a new name; a write through one name (in place: every name changes, inotify reports one).
  REQUIRE(test::run("ln '" + f.src + "/sub/b' '" + f.src + "/e'") == 0);
  std::vector<std::string> d2;
  REQUIRE_MESSAGE(test::cookie_barrier(f.src, f.dst, "cookie.1", d2, 30000, true), logs());
  CHECK(d2.empty());
  CHECK(link_groups(f.dst) == std::set<std::vector<std::string>>{{"a", "c", "e", "sub/b"}});
  REQUIRE(test::run("printf 'rewritten through c' > '" + f.src + "/c'") == 0);
  REQUIRE_MESSAGE(test::cookie_barrier(f.src, f.dst, "cookie.2", d2, 30000, true), logs());
  for (const auto& d : d2) MESSAGE(d);
  CHECK(d2.empty());
  CHECK(test::read_file(f.dst + "/sub/b") == "rewritten through c");
  CHECK(link_groups(f.dst) == std::set<std::vector<std::string>>{{"a", "c", "e", "sub/b"}});
  CHECK(test::read_file(f.dst + "/twin") == "shared bytes");
  CHECK(logs().find("not honoured") == std::string::npos);
  CHECK(c->stop_within(SIGTERM, 10000) == 143);
}

TEST_CASE("rsync's copy_links, copy_unsafe_links and copy_dirlinks: links arrive as rsync -aL, --copy-unsafe-links, --copy-dirlinks make them") {
  for (const std::string key : {"copy_links", "copy_unsafe_links", "copy_dirlinks"}) {
    CAPTURE(key);
    Fixture f;
    // Outside the tree: a file and a directory that links lead to (unsafe: absolute, or "..").
    const std::string out = f.t / "outside";
    REQUIRE(test::run("mkdir -p '" + out + "/dir/deeper' && printf 'outside bytes' > '" + out + "/file.txt' && printf x > '" +
                      out + "/dir/deeper/x.txt' && chmod 0640 '" + out + "/file.txt' && touch -d '2020-01-02 03:04:05' '" +
                      out + "/file.txt' '" + out + "/dir/deeper'") == 0);
    REQUIRE(test::run("cd '" + f.src + "' && mkdir -p realdir/in sub && printf 'real bytes' > real.txt && printf inner > realdir/in/i.txt && "
                      "ln -s '" + out + "/file.txt' abs-file && ln -s '" + out + "/dir' abs-dir && ln -s ../outside/file.txt rel-out && "
                      "ln -s real.txt safe-file && ln -s realdir safe-dir && ln -s ../real.txt sub/up && ln -s ../realdir sub/updir && "
                      "ln -s nowhere sub/dangling-safe && touch -h -d '2021-05-06 07:08:09' abs-file safe-file") == 0);
    // (A dangling link is reported by rsync -L as "symlink has no referent": kept out of that run.)
    if (key == "copy_links") REQUIRE(::unlink((f.src + "/sub/dangling-safe").c_str()) == 0);
    // Old times everywhere: rsync leaves a directory made in the second of its source's time
    // with the time it made it (it compares whole seconds there).
    REQUIRE(test::run("find '" + f.src + "' '" + out + "/dir' -exec touch -h -d '2022-03-04 05:06:07' {} +") == 0);
    const std::string flag = key == "copy_links" ? "-L" : key == "copy_unsafe_links" ? "--copy-unsafe-links" : "--copy-dirlinks";
    const std::string rdst = f.rsync_reference("-a " + flag);
    const std::string cfg = f.config("sync { default.rsync, source = '@SRC@', target = '" + f.dst + "', rsync = { archive = true, " + key + " = true } }\n");
    const std::string console = f.t / "links.console";
    auto c = f.syncd_started(cfg, console);
    auto logs = [&] { return test::read_file(console); };
    f.wait_idle();
    f.expect_like(rdst, logs());
    // What each mode turned into what (the comparison above would pass on two equal mistakes).
    auto is_link = [&](const std::string& rel) {
      struct stat st{};
      return ::lstat((f.dst + "/" + rel).c_str(), &st) == 0 && S_ISLNK(st.st_mode);
    };
    const bool all = key == "copy_links", unsafe = key == "copy_unsafe_links", dirs = key == "copy_dirlinks";
    CHECK(is_link("abs-file") == !(all || unsafe));
    CHECK(is_link("rel-out") == !(all || unsafe));
    CHECK(is_link("abs-dir") == !(all || unsafe || dirs));
    CHECK(is_link("safe-file") == !all);
    CHECK(is_link("safe-dir") == !(all || dirs));
    CHECK(is_link("sub/updir") == !(all || dirs));
    if (!is_link("abs-dir")) CHECK(test::read_file(f.dst + "/abs-dir/deeper/x.txt") == "x");
    if (!is_link("abs-file")) CHECK(test::read_file(f.dst + "/abs-file") == "outside bytes");
    // Live: a followed link made now arrives as its referent; a write beside it is the barrier.
    REQUIRE(::symlink((out + "/file.txt").c_str(), (f.src + "/sub/late").c_str()) == 0);
    std::vector<std::string> d2;
    REQUIRE_MESSAGE(test::cookie_barrier(f.src, f.dst, "cookie.1", d2, 30000), logs());
    CHECK(is_link("sub/late") == !(all || unsafe));
    if (!is_link("sub/late")) CHECK(test::read_file(f.dst + "/sub/late") == "outside bytes");
    if (all) {
      // A followed link without a referent: logged in rsync's words, nothing replicated.
      REQUIRE(::symlink("nowhere", (f.src + "/sub/dangling").c_str()) == 0);
      REQUIRE_MESSAGE(test::cookie_barrier(f.src, f.dst, "cookie.2", d2, 30000), logs());
      CHECK_FALSE(test::exists(f.dst + "/sub/dangling"));
      CHECK(logs().find("sub/dangling\": symlink has no referent") != std::string::npos);
    }
    if (dirs) {
      // A link back to a directory above it is not entered (a directory that stays empty), not
      // forever; a link to a directory made now arrives with its content.
      REQUIRE(::symlink("..", (f.src + "/sub/loop").c_str()) == 0);
      REQUIRE(::symlink("../realdir", (f.src + "/sub/late-dir").c_str()) == 0);
      REQUIRE_MESSAGE(test::cookie_barrier(f.src, f.dst, "cookie.2", d2, 30000), logs());
      CHECK(test::list_dir(f.dst + "/sub/loop").empty());
      CHECK_FALSE(is_link("sub/loop"));
      CHECK(test::read_file(f.dst + "/sub/late-dir/in/i.txt") == "inner");
      CHECK(logs().find("leads back into a directory above it") != std::string::npos);
    }
    CHECK(logs().find("not honoured") == std::string::npos);
    CHECK(c->stop_within(SIGTERM, 10000) == 143);
  }
}

TEST_CASE("rsync's dry_run: the target is left exactly as rsync -n leaves it, every skipped change is logged") {
  Fixture f;
  test::make_sample_tree(f.src);
  REQUIRE(test::run("cp -a '" + f.src + "/.' '" + f.dst + "/' && printf 'older' > '" + f.dst + "/etc/ca/key.pem' && printf extra > '" +
                    f.dst + "/extra.txt' && rmdir '" + f.dst + "/empty/dir'") == 0);
  const std::string before = f.t / "before";
  REQUIRE(test::run("cp -a '" + f.dst + "/.' '" + before + "/'") == 0);
  // The reference: rsync -n with lsyncd's delete changes nothing either.
  REQUIRE(test::run("rsync -an --delete '" + f.src + "/' '" + f.dst + "/' >/dev/null") == 0);
  REQUIRE(test::tree_diff(before, f.dst, {}, true).empty());
  const std::string cfg = f.config("sync { default.rsync, source = '@SRC@', target = '" + f.dst + "', rsync = { archive = true, dry_run = true } }\n");
  const std::string console = f.t / "dry.console";
  auto c = f.syncd_started(cfg, console);
  auto logs = [&] { return test::read_file(console); };
  f.wait_idle();
  auto diff = test::tree_diff(before, f.dst, {}, true);
  for (const auto& d : diff) MESSAGE(d);
  CHECK_MESSAGE(diff.empty(), logs());
  CHECK(logs().find("dry run (rsync.dry_run): not applied: write etc/ca/key.pem") != std::string::npos);
  CHECK(logs().find("dry run (rsync.dry_run): not applied: write empty/dir") != std::string::npos);
  CHECK(logs().find("dry run (rsync.dry_run): not applied: delete extra.txt") != std::string::npos);
  // Only the extra: what the source has is no extra, though a dry run records none of it.
  CHECK_MESSAGE(logs().find("not applied: delete etc") == std::string::npos, logs());
  // Nor is what is here already listed as a write (rsync -n's quick check: same link, same directory).
  CHECK_MESSAGE(logs().find("not applied: write etc/link") == std::string::npos, logs());
  CHECK_MESSAGE(logs().find("not applied: write etc/ca\n") == std::string::npos, logs());
  // Live: a new file, a rename and a delete are logged, not applied (the log line is the barrier).
  const size_t at = logs().size();
  test::write_file(f.src + "/late.txt", "late");
  REQUIRE(::rename((f.src + "/etc/ca/key.pem").c_str(), (f.src + "/etc/ca/key.moved").c_str()) == 0);
  REQUIRE(test::wait_for_text(console, "not applied: write late.txt", at));
  REQUIRE(test::wait_for_text(console, "not applied: rename etc/ca/key.pem -> etc/ca/key.moved", at));
  f.wait_idle();
  diff = test::tree_diff(before, f.dst, {}, true);
  for (const auto& d : diff) MESSAGE(d);
  CHECK(diff.empty());
  CHECK(logs().find("not honoured") == std::string::npos);
  CHECK(c->stop_within(SIGTERM, 10000) == 143);
}

TEST_CASE("excluded files on the target survive the initial delete as with rsync --delete - delete_excluded removes them as rsync does") {
  for (const bool delete_excluded : {false, true}) {
    CAPTURE(delete_excluded);
    Fixture f;
    test::make_sample_tree(f.src);
    REQUIRE(test::run("cp -a '" + f.src + "/.' '" + f.dst + "/' && mkdir -p '" + f.dst + "/cache/deep' '" + f.dst + "/etc/keep' && printf l > '" +
                      f.dst + "/b.log' && printf c > '" + f.dst + "/cache/deep/big' && printf k > '" + f.dst + "/etc/keep/x.tmp' && printf e > '" +
                      f.dst + "/extra.txt' && printf l > '" + f.src + "/src-side.log'") == 0);
    const std::string dflag = delete_excluded ? " --delete-excluded" : "";
    const std::string rdst = f.rsync_reference("-a --delete" + dflag + " --exclude='*.log' --exclude=cache/ --filter='- *.tmp'", true);
    const std::string cfg = f.config("sync { default.rsync, source = '@SRC@', target = '" + f.dst + "', exclude = { '*.log', 'cache/' },\n"
                                     "       filter = { '- *.tmp' }, rsync = { archive = true" + std::string(delete_excluded ? ", delete_excluded = true" : "") + " } }\n");
    const std::string console = f.t / "excl.console";
    auto c = f.syncd_started(cfg, console);
    auto logs = [&] { return test::read_file(console); };
    f.wait_idle();
    f.expect_like(rdst, logs());
    // Not only equal to rsync's: the excluded files are there (or not) and the extra is gone.
    CHECK(test::exists(f.dst + "/b.log") == !delete_excluded);
    CHECK(test::exists(f.dst + "/cache/deep/big") == !delete_excluded);
    CHECK(test::exists(f.dst + "/etc/keep/x.tmp") == !delete_excluded);
    CHECK_FALSE(test::exists(f.dst + "/extra.txt"));
    CHECK_FALSE(test::exists(f.dst + "/src-side.log"));
    CHECK(logs().find("not honoured") == std::string::npos);
    CHECK(c->stop_within(SIGTERM, 10000) == 143);
  }
}


TEST_CASE("rsync's cvs_exclude: CVS's ignore list, ~/.cvsignore and $CVSIGNORE are excluded as rsync -C excludes them - perishable at the initial delete") {
  Fixture f;
  // One HOME and CVSIGNORE for rsync and syncd (restored after: the fixture's other users read them).
  const std::string home = f.t / "home";
  REQUIRE(test::run("mkdir -p '" + home + "' && printf 'from-home.*\\n' > '" + home + "/.cvsignore'") == 0);
  struct Env {
    std::string old_home = std::getenv("HOME") ? std::getenv("HOME") : "";
    ~Env() {
      ::setenv("HOME", old_home.c_str(), 1);
      ::unsetenv("CVSIGNORE");
    }
  } env;
  ::setenv("HOME", home.c_str(), 1);
  ::setenv("CVSIGNORE", "*.log from-env", 1);
  test::make_sample_tree(f.src);
  const std::string s = "'" + f.src + "'", d = "'" + f.dst + "'";
  REQUIRE(test::run("mkdir -p " + s + "/src/.git " + s + "/sub && printf c > " + s + "/src/main.c && printf o > " + s + "/src/main.o" +
                    " && printf g > " + s + "/src/.git/HEAD && printf t > " + s + "/tags && printf b > " + s + "/sub/x~" +
                    " && printf h > " + s + "/sub/from-home.txt && printf e > " + s + "/from-env && printf l > " + s + "/run.log" +
                    " && printf k > " + s + "/sub/keep.txt && printf d > " + s + "/'#draft' && printf z > " + s + "/'cost$'") == 0);
  // The target: a copy plus extras — an extra directory holding only ignored files (rsync deletes
  // it: the CVS rules are perishable), an ignored file in a kept directory (stays), an extra.
  REQUIRE(test::run("cp -a " + s + "/. " + d + "/ && mkdir -p " + d + "/junk && printf j > " + d + "/junk/old.o" +
                    " && printf w > " + d + "/sub/was.bak && printf x > " + d + "/extra.txt && printf o > " + d + "/sub/old.tmp") == 0);
  // Then, on the source only, a per-directory .cvsignore: its names in sub/ only, not below it.
  REQUIRE(test::run("printf '*.tmp secret\\n' > " + s + "/sub/.cvsignore && printf t > " + s + "/sub/a.tmp && printf p > " + s +
                    "/sub/secret && mkdir -p " + s + "/sub/deeper && printf b > " + s + "/sub/deeper/b.tmp") == 0);
  // --delete-after: the target reads its (just synced) sub/.cvsignore before it deletes, as syncd,
  // whose initial delete comes after everything arrived.
  const std::string rdst = f.rsync_reference("-a -C --delete-after", true);
  const std::string cfg = f.config("sync { default.rsync, source = '@SRC@', target = '" + f.dst + "',\n"
                                   "       rsync = { archive = true, cvs_exclude = true } }\n");
  const std::string console = f.t / "cvs.console";
  auto c = f.syncd_started(cfg, console);
  auto logs = [&] { return test::read_file(console); };
  f.wait_idle();
  // Directory times aside: rsync -C leaves the time of sub/ (which holds an ignored extra) as the
  // target had it; syncd gives it the source's, which is what replicating them means.
  f.expect_like(rdst, logs(), false);
  CHECK(test::run("[ \"$(stat -c %y " + s + "/sub)\" = \"$(stat -c %y " + d + "/sub)\" ]") == 0);
  // Not only equal to rsync's result: what was ignored, kept and deleted.
  CHECK(test::exists(f.dst + "/src/main.c"));
  CHECK(test::exists(f.dst + "/sub/keep.txt"));
  CHECK(test::exists(f.dst + "/sub/was.bak"));  // ignored, in a directory the source has
  CHECK_FALSE(test::exists(f.dst + "/junk"));    // only ignored files, and the source lacks it
  CHECK_FALSE(test::exists(f.dst + "/extra.txt"));
  CHECK_FALSE(test::exists(f.dst + "/sub/a.tmp"));  // sub/.cvsignore
  CHECK_FALSE(test::exists(f.dst + "/sub/secret"));
  CHECK(test::exists(f.dst + "/sub/old.tmp"));       // ignored there: not deleted
  CHECK(test::exists(f.dst + "/sub/deeper/b.tmp"));  // its rules are for sub/ only
  // Live: the file changes; what it no longer names arrives, what it names now stays put.
  test::write_file(f.src + "/sub/.cvsignore", "*.tmp keep.txt\n");
  REQUIRE(test::wait_until(f.dst, [&] { return test::exists(f.dst + "/sub/secret"); }, 20000));
  test::write_file(f.src + "/sub/keep.txt", "changed, but ignored now");
  REQUIRE(::unlink((f.src + "/sub/a.tmp").c_str()) == 0);
  f.wait_idle();
  CHECK(test::read_file(f.dst + "/sub/keep.txt") == "k");
  CHECK(test::read_file(f.dst + "/sub/.cvsignore") == "*.tmp keep.txt\n");
  // Live: ignored names that appear now stay on the source only.
  test::write_file(f.src + "/src/later.o", "o");
  test::write_file(f.src + "/later.log", "l");
  test::write_file(f.src + "/src/later.c", "c");
  f.wait_idle();
  CHECK(test::exists(f.dst + "/src/later.c"));
  CHECK_FALSE(test::exists(f.dst + "/src/later.o"));
  CHECK_FALSE(test::exists(f.dst + "/later.log"));
  CHECK(logs().find("rsync.cvs_exclude: 39 patterns") != std::string::npos);
  CHECK(logs().find("not honoured") == std::string::npos);
  CHECK(c->stop_within(SIGTERM, 10000) == 143);
}

TEST_CASE("rsync's xattrs and acls: user.* attributes and POSIX ACLs arrive as rsync -aAX puts them, live changes too") {
  Fixture f;
  test::make_sample_tree(f.src);
  REQUIRE(test::run("cd '" + f.src + "' && mkdir -p shared/certs && echo key > shared/certs/ca.key && "
                    "setfattr -n user.origin -v node1 shared/certs/ca.key && setfattr -n user.empty shared/certs/ca.key && "
                    "setfacl -m u:1234:r,g:5678:rw shared/certs/ca.key && setfacl -d -m g:5678:rwx shared && "
                    "setfattr -n user.dir -v d shared") == 0);
  const std::string rdst = f.rsync_reference("-aAX");
  const auto expected = replicated_xattrs(rdst);
  REQUIRE(expected.size() >= 5);  // the test's own attributes are there
  CHECK(expected == replicated_xattrs(f.src));
  const std::string cfg = f.config("sync { default.rsync, source = '@SRC@', target = '" + f.dst + "',\n"
                                   "       rsync = { xattrs = true, acls = true } }\n");
  const std::string console = f.t / "xattrs.console";
  auto c = f.syncd_started(cfg, console);
  auto logs = [&] { return test::read_file(console); };
  std::vector<std::string> diff;
  REQUIRE_MESSAGE(test::cookie_barrier(f.src, f.dst, "cookie.1", diff, 30000, true), logs());
  CHECK(diff.empty());
  CHECK(replicated_xattrs(f.dst) == expected);
  CHECK(logs().find("not honoured") == std::string::npos);
  // Live: a changed attribute, a removed one, a changed ACL; a new file inherits the default ACL
  // at the source and must arrive with it.
  REQUIRE(test::run("cd '" + f.src + "' && setfattr -n user.origin -v node2 shared/certs/ca.key && setfattr -x user.empty shared/certs/ca.key && "
                    "setfacl -x u:1234 shared/certs/ca.key && echo crl > shared/new.crl") == 0);
  diff.clear();
  REQUIRE_MESSAGE(test::cookie_barrier(f.src, f.dst, "cookie.2", diff, 30000, true), logs());
  CHECK(diff.empty());
  const auto now = replicated_xattrs(f.src);
  CHECK(replicated_xattrs(f.dst) == now);
  CHECK(now.count("shared/certs/ca.key user.origin=6e6f646532") == 1);  // "node2"
  bool inherited = false;
  for (const auto& l : now) inherited |= l.rfind("shared/new.crl system.posix_acl_access=", 0) == 0;
  CHECK(inherited);
  CHECK(c->stop_within(SIGTERM, 10000) == 143);
}

TEST_CASE("rsync's backup and suffix: replaced and deleted files are kept as rsync --backup keeps them, live changes too") {
  Fixture f;
  test::make_sample_tree(f.src);
  put_file(f.src + "/changed.txt", "new", 1'500'000'000);
  const std::string rdst = f.t / "rsync-dst";
  for (const auto& d : {f.dst, rdst}) {
    REQUIRE(test::run("rm -rf '" + d + "' && cp -a '" + f.src + "' '" + d + "' && mkdir '" + d + "/olddir'") == 0);
    put_file(d + "/changed.txt", "old", 1'000'000'000);
    put_file(d + "/extra.txt", "extra", 1'000'000'000);
    put_file(d + "/olddir/f", "f", 1'000'000'000);
  }
  REQUIRE(test::run("rsync -a --delete --backup --suffix=.bak '" + f.src + "/' '" + rdst + "/' 2>/dev/null") == 0);
  REQUIRE(test::exists(rdst + "/olddir/f.bak"));  // rsync kept it (and so olddir)
  const std::string cfg = f.config("sync { default.rsync, source = '@SRC@', target = '" + f.dst + "',\n"
                                   "       rsync = { backup = true, suffix = '.bak' } }\n");
  const std::string console = f.t / "backup.console";
  auto c = f.syncd_started(cfg, console);
  auto logs = [&] { return test::read_file(console); };
  f.wait_idle();
  auto diff = test::tree_diff(rdst, f.dst, {}, true);
  // olddir is not in the source: its time is whenever each tool removed f from it.
  std::erase(diff, std::string("mtime differs: olddir"));
  for (const auto& d : diff) MESSAGE(d);
  CHECK_MESSAGE(diff.empty(), logs());
  CHECK(test::read_file(f.dst + "/changed.txt.bak") == "old");
  CHECK(test::read_file(f.dst + "/extra.txt.bak") == "extra");
  // Live: a rewrite keeps the version it replaces, a delete keeps the file; the cookie barrier
  // (written last) says both were applied.
  move_in(f.t / "stage", f.src + "/changed.txt", "newer");
  REQUIRE(::unlink((f.src + "/etc/ca/key.pem").c_str()) == 0);
  std::vector<std::string> d2;
  REQUIRE_MESSAGE(test::cookie_barrier(f.src, f.dst, "cookie.1", d2, 30000, true), logs());
  CHECK(test::read_file(f.dst + "/changed.txt") == "newer");
  CHECK(test::read_file(f.dst + "/changed.txt.bak") == "new");
  CHECK(test::read_file(f.dst + "/etc/ca/key.pem.bak") == "PRIVATE");
  CHECK_FALSE(test::exists(f.dst + "/etc/ca/key.pem"));
  for (const auto& line : d2) {  // only the backups (and olddir, which holds one) differ
    CAPTURE(line);
    CHECK((line.find(".bak") != std::string::npos || line == "extra in target: olddir"));
  }
  CHECK(c->stop_within(SIGTERM, 10000) == 143);
}

TEST_CASE("rsync's one_file_system: a filesystem mounted below the source is not entered, as with rsync -x") {
  Fixture f;
  test::make_sample_tree(f.src);
  const std::string mnt = f.src + "/mnt";
  REQUIRE(::mkdir(mnt.c_str(), 0755) == 0);
  REQUIRE(test::run("mount -t tmpfs -o size=1m,mode=0755 syncd-test '" + mnt + "'") == 0);
  struct Unmount {
    std::string path;
    ~Unmount() { (void)test::run("umount -l '" + path + "'"); }
  } unmount{mnt};
  test::write_file(mnt + "/other-fs.txt", "not ours");
  const std::string rdst = f.rsync_reference("-ax");
  REQUIRE_FALSE(test::exists(rdst + "/mnt/other-fs.txt"));
  const std::string cfg = f.config("sync { default.rsync, source = '@SRC@', target = '" + f.dst + "', rsync = { one_file_system = true } }\n");
  const std::string console = f.t / "xdev.console";
  auto c = f.syncd_started(cfg, console);
  auto logs = [&] { return test::read_file(console); };
  std::vector<std::string> diff;
  REQUIRE_MESSAGE(test::cookie_barrier(f.src, f.dst, "cookie.1", diff, 30000, true), logs());  // its diff lists mnt/: rsync is the reference
  diff = test::tree_diff(rdst, f.dst, [](const std::string& rel) { return rel.rfind("cookie.", 0) == 0; }, true);
  // rsync -x creates the mount point but leaves its time (the time it made it); syncd gives it the
  // source's, as for any directory: there the reference is the source.
  std::erase(diff, std::string("mtime differs: mnt"));
  for (const auto& d : diff) MESSAGE(d);
  CHECK(diff.empty());
  CHECK(test::tree_diff(f.src, f.dst, [](const std::string& rel) { return rel.rfind("cookie.", 0) == 0 || rel == "mnt/other-fs.txt"; }, true).empty());
  CHECK(test::exists(f.dst + "/mnt"));
  CHECK_FALSE(test::exists(f.dst + "/mnt/other-fs.txt"));
  // Live: a write on the other filesystem is not seen; one beside it is (the barrier).
  test::write_file(mnt + "/later.txt", "still not ours");
  test::write_file(f.src + "/etc/later.txt", "ours");
  REQUIRE_MESSAGE(test::wait_for(f.dst + "/etc", "later.txt"), logs());
  CHECK_FALSE(test::exists(f.dst + "/mnt/later.txt"));
  CHECK(logs().find("not honoured") == std::string::npos);
  CHECK(c->stop_within(SIGTERM, 10000) == 143);
}

TEST_CASE("rsync's timeout: a push whose peer stalls is dropped after that many seconds and redialled, nothing lost") {
  Fixture f;
  test::SshServer sshd(f.t / "sshd");
  sshd.start();
  const std::string cfg = f.config("sync { default.rsyncssh, source = '@SRC@', host = '127.0.0.1', targetdir = '" + f.dst + "',\n"
                                   "       rsync = { rsh = '" + sshd.rsh() + "', timeout = 2 },\n"
                                   "       syncd = { remoteSyncd = '" + std::string(SYNCD_BINARY) + "', remoteStateDir = '" + f.t / "rstate" + "' } }\n");
  const std::string console = f.t / "timeout.console";
  auto c = f.syncd_started(cfg, console);
  auto logs = [&] { return test::read_file(console); };
  std::vector<std::string> diff;
  REQUIRE_MESSAGE(test::cookie_barrier(f.src, f.dst, "cookie.1", diff, 30000, true), logs());
  // The peer stops (alive for TCP and SSH, but it applies and acknowledges nothing).
  // "[a]ttach": the regex matches the attach process but not the shell that runs pkill.
  const std::string attach = "[a]ttach " + f.dst;
  REQUIRE(test::run("pkill -STOP -f '" + attach + "'") == 0);
  struct Resume {
    std::string pattern;
    ~Resume() { (void)test::run("pkill -KILL -f '" + pattern + "'"); }
  } resume{attach};
  const size_t before = logs().size();
  test::write_file(f.src + "/during-stall.txt", "queued while the peer hung");
  REQUIRE_MESSAGE(test::wait_for_text(console, "no data for 2 s while versions await the peer (rsync.timeout)", before, 30000), logs());
  // The stalled process goes away; the redialled session delivers what was waiting.
  REQUIRE(test::run("pkill -KILL -f '" + attach + "'") == 0);
  REQUIRE_MESSAGE(test::wait_for(f.dst, "during-stall.txt", 60000), logs());
  CHECK(test::read_file(f.dst + "/during-stall.txt") == "queued while the peer hung");
  diff.clear();
  REQUIRE_MESSAGE(test::cookie_barrier(f.src, f.dst, "cookie.2", diff, 60000, true), logs());
  CHECK(diff.empty());
  CHECK(c->stop_within(SIGTERM, 10000) == 143);
}

TEST_CASE("over SSH the target's rules travel to syncd attach: xattrs, backup with suffix, update, excludes") {
  Fixture f;
  test::SshServer sshd(f.t / "sshd");
  sshd.start();
  test::write_file(f.src + "/a.txt", "v1");
  REQUIRE(test::run("setfattr -n user.tag -v one '" + f.src + "/a.txt'") == 0);
  put_file(f.dst + "/newer-there.txt", "the target's, newer", 1'700'000'000);
  put_file(f.src + "/newer-there.txt", "the source's, older", 1'100'000'000);
  test::write_file(f.dst + "/kept.log", "excluded: the target keeps it");
  test::write_file(f.dst + "/gone.txt", "an extra: the initial sync deletes it");
  const std::string cfg = f.config("sync { default.rsyncssh, source = '@SRC@', host = '127.0.0.1', targetdir = '" + f.dst + "', exclude = { '*.log' },\n"
                                   "       rsync = { rsh = '" + sshd.rsh() + "', xattrs = true, backup = true, suffix = '.old', update = true },\n"
                                   "       syncd = { remoteSyncd = '" + std::string(SYNCD_BINARY) + "', remoteStateDir = '" + f.t / "rstate" + "' } }\n");
  const std::string console = f.t / "attach-rules.console";
  auto c = f.syncd_started(cfg, console);
  auto logs = [&] { return test::read_file(console); };
  REQUIRE_MESSAGE(test::wait_for(f.dst, "a.txt", 30000), logs());
  auto tag = [](const std::string& path) {
    char v[64];
    const ssize_t n = ::getxattr(path.c_str(), "user.tag", v, sizeof v);
    return n < 0 ? std::string("(none)") : std::string(v, static_cast<size_t>(n));
  };
  CHECK(tag(f.dst + "/a.txt") == "one");
  // A rewrite: the remote keeps the version it replaces; the cookie (written last) is the barrier.
  move_in(f.t / "stage", f.src + "/a.txt", "v2");
  std::vector<std::string> diff;
  REQUIRE_MESSAGE(test::cookie_barrier(f.src, f.dst, "cookie.1", diff, 30000, true), logs());
  CHECK(test::read_file(f.dst + "/a.txt") == "v2");
  CHECK(test::read_file(f.dst + "/a.txt.old") == "v1");
  CHECK(test::read_file(f.dst + "/newer-there.txt") == "the target's, newer");
  CHECK(test::read_file(f.dst + "/kept.log") == "excluded: the target keeps it");
  CHECK_FALSE(test::exists(f.dst + "/gone.txt"));
  CHECK(c->stop_within(SIGTERM, 10000) == 143);
}
