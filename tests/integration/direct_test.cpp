// End to end: the real `syncd -nodaemon -direct SRC DST` process, real inotify, real files with
// owners and modes (as root). Every case ends with a barrier — a cookie file written in SRC and
// seen arriving in DST through inotify, so everything before it was applied (one ordered stream)
// — and a full tree comparison by content and metadata. No sleeps.
#include <doctest/doctest.h>
#include <pwd.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "lib/base/scope_guard.h"
#include "lib/base/unique_fd.h"
#include "lib/store/sqlite.h"
#include "tests/support/faultfs.h"
#include "tests/support/process.h"
#include "tests/support/rss.h"
#include "tests/support/seeds.h"
#include "tests/support/tmpdir.h"
#include "tests/support/tree_diff.h"
#include "tests/support/wakeups.h"

using namespace syncd;

namespace {

// Runs a command in a mount namespace of its own whose mounts do not propagate either way.
const std::vector<std::string> kPrivateMounts{"/usr/bin/unshare", "--mount", "--propagation", "private", "--"};

struct Fixture {
  test::TempDir t{"direct"};
  std::string src = t / "src", dst = t / "dst", state = t / "state", log = t / "syncd.log";
  std::unique_ptr<test::Child> proc;
  int cookies = 0;
  std::vector<std::string> wrapper;  // a command that runs syncd (e.g. in its own mount namespace)
  Fixture() {
    test::require_root();
    ::mkdir(src.c_str(), 0755);
    ::mkdir(dst.c_str(), 0755);
  }
  // Starts syncd and waits for its "Startup of ... finished" line: from then on, changes are
  // applied in the order they are made, so cookies are barriers.
  void start(const std::vector<std::string>& extra = {}) {
    const size_t before = logs().size();
    std::vector<std::string> argv = wrapper;
    argv.insert(argv.end(), {SYNCD_BINARY, "-nodaemon", "-direct", src, dst, "-statedir", state, "-rundir", t / "run"});
    argv.insert(argv.end(), extra.begin(), extra.end());
    proc = std::make_unique<test::Child>(argv, log);
    REQUIRE_MESSAGE(test::wait_for_text(log, "finished: 0", before), "no startup line; log:\n" << logs());
  }
  std::string s(const std::string& rel) const { return src + "/" + rel; }
  std::string logs() const { return test::exists(log) ? test::read_file(log) : std::string(); }
  // Barrier + comparison (directory mtimes included: a one-way mirror restores them).
  void converged() {
    std::vector<std::string> diff;
    REQUIRE_MESSAGE(test::cookie_barrier(src, dst, "cookie." + std::to_string(++cookies), diff, 30000, true),
                    "cookie never arrived; syncd log:\n" << logs());
    for (const auto& d : diff) MESSAGE(d);
    CHECK_MESSAGE(diff.empty(), "trees differ; syncd log:\n" << logs());
  }
  // converged() for changes that take a second round trip (a base_mismatch answered by asking
  // for the target's signature), which a later cookie can overtake: the first cookie shows the
  // first answers came back, `status --wait-idle` that nothing is queued, in flight or asked.
  void settled() {
    std::vector<std::string> first;
    REQUIRE_MESSAGE(test::cookie_barrier(src, dst, "cookie." + std::to_string(++cookies), first, 30000, true),
                    "cookie never arrived; syncd log:\n" << logs());
    REQUIRE_MESSAGE(test::run(std::string(SYNCD_BINARY) + " status '" + src + "' -rundir '" + t / "run" +
                              "' --wait-idle 30000 > /dev/null") == 0,
                    "never idle; syncd log:\n" << logs());
    converged();
  }
  void sh(const std::string& cmd) { REQUIRE_MESSAGE(test::run(cmd) == 0, cmd); }
};

// What the sender's delta passes for `path` read since log offset `from`, one entry per delta:
// the file's size minus the bytes its debug line says were left unread. A writer that pauses
// longer than the watcher's settle window between two writes of one session gets two versions,
// each read for its own changed chunks, so callers check the sum, not the number of deltas.
std::vector<uint64_t> delta_reads(const std::string& log, size_t from, const std::string& path) {
  std::vector<uint64_t> reads;
  const std::string head = "delta \"" + path + "\": ";
  for (size_t at = log.find(head, from); at != std::string::npos; at = log.find(head, at + 1)) {
    uint64_t unread = 0, size = 0;
    if (std::sscanf(log.c_str() + at + head.size(), "%" SCNu64 " of %" SCNu64, &unread, &size) == 2) reads.push_back(size - unread);
  }
  return reads;
}

// systemd's side of the notify protocol: the datagram socket a Type=notify service reports to.
struct NotifySocket {
  std::string path;
  UniqueFd sock{::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)};
  explicit NotifySocket(std::string where) : path(std::move(where)) {
    REQUIRE(sock);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    REQUIRE(path.size() < sizeof addr.sun_path);
    std::memcpy(addr.sun_path, path.data(), path.size());
    REQUIRE(::bind(sock.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0);
  }
  // Starts `argv` with NOTIFY_SOCKET naming this socket, as systemd does.
  std::unique_ptr<test::Child> start(const std::vector<std::string>& argv, const std::string& log) const {
    ::setenv("NOTIFY_SOCKET", path.c_str(), 1);
    auto unset = ScopeGuard([]() noexcept { ::unsetenv("NOTIFY_SOCKET"); });
    return std::make_unique<test::Child>(argv, log);
  }
  std::string next() const {
    pollfd p{sock.get(), POLLIN, 0};
    if (::poll(&p, 1, 30000) != 1) return "(nothing in 30 s)";
    char buf[512];
    const ssize_t n = ::recv(sock.get(), buf, sizeof buf, 0);
    return n < 0 ? std::string("(recv failed)") : std::string(buf, static_cast<size_t>(n));
  }
};

uint64_t sum(const std::vector<uint64_t>& v) {
  uint64_t t = 0;
  for (uint64_t x : v) t += x;
  return t;
}

}  // namespace

TEST_SUITE("integration.direct") {
  TEST_CASE("without -nodaemon it daemonizes - locks its pidfile - logs to -logfile - removes the pidfile on SIGTERM") {
    Fixture f;
    const std::string pidfile = f.t / "syncd.pid", logfile = f.t / "daemon.log";
    test::Child launcher({SYNCD_BINARY, "-direct", f.src, f.dst, "-statedir", f.state, "-rundir", f.t / "run",
                          "-pidfile", pidfile, "-logfile", logfile},
                         f.log);
    // The parent returns once the daemon holds its pidfile and answers on its control socket.
    CHECK(launcher.wait() == 0);
    REQUIRE(test::exists(pidfile));
    const pid_t pid = static_cast<pid_t>(std::stol(test::read_file(pidfile)));
    auto reap = ScopeGuard([pid]() noexcept { ::kill(pid, SIGKILL); });  // whatever happens below
    CHECK(test::run(std::string(SYNCD_BINARY) + " status '" + f.src + "' -rundir '" + f.t / "run" + "' > /dev/null") == 0);
    REQUIRE(::kill(pid, 0) == 0);
    CHECK(pid != launcher.pid());
    REQUIRE_MESSAGE(test::wait_for_text(logfile, "finished: 0", 0), test::read_file(logfile));
    CHECK(test::read_file(logfile).find("--- Startup, daemonizing ---") != std::string::npos);
    test::write_file(f.s("a"), "through the daemon");
    f.converged();
    // A second daemon with the same pidfile refuses to start.
    test::Child second({SYNCD_BINARY, "-nodaemon", "-direct", f.src, f.t / "dst2", "-statedir", f.t / "state2", "-rundir",
                        f.t / "run2", "-pidfile", pidfile},
                       f.t / "second.log");
    CHECK(second.wait() == 255);
    CHECK(test::read_file(f.t / "second.log").find("is locked: another syncd runs with it") != std::string::npos);
    // A second daemon for the same source (its own state, no pidfile) refuses before it starts
    // anything: no startup in its log, nothing made at its target.
    test::Child third({SYNCD_BINARY, "-nodaemon", "-direct", f.src, f.t / "dst3", "-statedir", f.t / "state3", "-rundir",
                       f.t / "run"},
                      f.t / "third.log");
    CHECK(third.wait() == 255);
    const std::string third_log = test::read_file(f.t / "third.log");
    CHECK_MESSAGE(third_log.find("another syncd daemon already owns this directory") != std::string::npos, third_log);
    CHECK_MESSAGE(third_log.find("recursive startup rsync") == std::string::npos, third_log);
    CHECK_FALSE(test::exists(f.t / "dst3"));
    CHECK_FALSE(test::exists(f.t / "state3"));
    // SIGTERM: it finishes, exits and removes its pidfile (pidfd: a barrier on its exit).
    const int pfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    REQUIRE(pfd >= 0);
    REQUIRE(::kill(pid, SIGTERM) == 0);
    pollfd p{pfd, POLLIN, 0};
    REQUIRE(::poll(&p, 1, 30000) == 1);
    ::close(pfd);
    CHECK_FALSE(test::exists(pidfile));
    // A daemon that cannot start (its control socket's directory is a file) fails the command
    // that started it, not only its log.
    test::write_file(f.t / "not-a-dir", "");
    test::Child failing({SYNCD_BINARY, "-direct", f.src, f.dst, "-statedir", f.state, "-rundir", f.t / "not-a-dir",
                         "-logfile", f.t / "failing.log"},
                        f.t / "failing.out");
    CHECK(failing.wait() == 255);
    CHECK(test::read_file(f.t / "failing.out").find("the daemon did not start") != std::string::npos);
  }

  TEST_CASE("under systemd (Type=notify): READY=1 once syncd status answers - RELOADING=1 then READY=1 at SIGHUP") {
    Fixture f;
    NotifySocket notify(f.t / "notify.sock");
    f.proc = notify.start({SYNCD_BINARY, "-nodaemon", "-direct", f.src, f.dst, "-statedir", f.state, "-rundir", f.t / "run"}, f.log);
    const auto next_message = [&] { return notify.next(); };
    REQUIRE_MESSAGE(next_message() == "READY=1", f.logs());
    // Ready means answering: a status query right after it finds the daemon.
    const std::string status = std::string(SYNCD_BINARY) + " status '" + f.src + "' -rundir '" + f.t / "run" + "'";
    CHECK(test::run(status + " > /dev/null") == 0);
    REQUIRE(::kill(f.proc->pid(), SIGHUP) == 0);
    CHECK(next_message() == "RELOADING=1");
    CHECK(next_message() == "READY=1");
    CHECK(test::run(status + " > /dev/null") == 0);
    test::write_file(f.s("after-reload"), "x");
    f.converged();
  }

  TEST_CASE("status --wait-idle started before the daemon waits for it to come up - and to finish its initial sync") {
    Fixture f;
    test::write_file(f.s("there-before"), std::string(100000, 'x'));
    // The query starts first: before, it found no socket and gave up at once (exit 3).
    test::Child status({SYNCD_BINARY, "status", f.src, "-rundir", f.t / "run", "--wait-idle", "30000"}, f.t / "status.out");
    f.proc = std::make_unique<test::Child>(
        std::vector<std::string>{SYNCD_BINARY, "-nodaemon", "-direct", f.src, f.dst, "-statedir", f.state, "-rundir", f.t / "run"},
        f.log);
    CHECK_MESSAGE(status.wait() == 0, test::read_file(f.t / "status.out") << f.logs());
    CHECK(test::read_file(f.t / "status.out").find("idle: yes") != std::string::npos);
    CHECK(test::exists(f.dst + "/there-before"));
    // A daemon that never comes: the wait ends at its time with "no daemon answers" (exit 3).
    ::mkdir((f.t / "nowhere").c_str(), 0755);
    test::Child none({SYNCD_BINARY, "status", f.t / "nowhere", "-rundir", f.t / "run", "--wait-idle", "300"}, f.t / "none.out");
    CHECK(none.wait() == 3);
    CHECK(test::read_file(f.t / "none.out").find("no daemon answers") != std::string::npos);
  }

  TEST_CASE("initial sync copies an existing tree with owners - modes - mtimes - links") {
    Fixture f;
    test::make_sample_tree(f.src);
    // Something in the target the source does not have: a mirror removes it.
    test::write_file(f.dst + "/stale", "old");
    f.start();
    f.converged();
    CHECK_FALSE(test::exists(f.dst + "/stale"));
  }

  TEST_CASE("a target that already holds the tree (lsyncd kept it) gets none of those bytes again - a same-size same-time file with other bytes is still corrected") {
    Fixture f;
    ::setenv("SPDLOG_LEVEL", "runtime=debug,info", 1);
    auto unset = ScopeGuard([]() noexcept { ::unsetenv("SPDLOG_LEVEL"); });
    test::make_sample_tree(f.src);
    std::string big;
    for (uint64_t i = 0; i < 300000; ++i) big += static_cast<char>('a' + (i * 7919) % 26);
    test::write_file(f.s("big.bin"), big);
    test::write_file(f.s("same.txt"), "kept as it is");
    test::write_file(f.s("forged.txt"), "AAAA");
    test::write_file(f.s("grown.txt"), "short");
    f.sh("cp -a " + f.src + "/. " + f.dst + "/");
    // Other bytes under the same size and time (the quick check cannot tell), and another size.
    test::write_file(f.dst + "/forged.txt", "BBBB");
    f.sh("touch -r " + f.s("forged.txt") + " " + f.dst + "/forged.txt");
    test::write_file(f.dst + "/grown.txt", "a longer text");
    auto ino = [&](const std::string& rel) -> ino_t {
      struct stat st{};
      return ::stat((f.dst + "/" + rel).c_str(), &st) == 0 ? st.st_ino : 0;
    };
    const ino_t same = ino("same.txt"), big_ino = ino("big.bin");
    REQUIRE((same != 0 && big_ino != 0));
    f.start();
    f.converged();
    // Not written again: the same inodes, no body sent for them.
    CHECK(ino("same.txt") == same);
    CHECK(ino("big.bin") == big_ino);
    CHECK(f.logs().find("path=big.bin body=1") == std::string::npos);
    CHECK(f.logs().find("path=same.txt body=1") == std::string::npos);
    CHECK(f.logs().find("already at the peer with the same size and time") != std::string::npos);
    CHECK(test::read_file(f.dst + "/forged.txt") == "AAAA");  // checked by content, sent whole
    CHECK(test::read_file(f.dst + "/grown.txt") == "short");
    // The bytes left out are a delta base all the same: the next edit goes as a delta.
    {
      UniqueFd fd(::open(f.s("big.bin").c_str(), O_WRONLY | O_CLOEXEC));
      REQUIRE(fd);
      REQUIRE(::pwrite(fd.get(), "EDITEDHERE", 10, 150000) == 10);
    }
    f.converged();
    CHECK(f.logs().find("path=big.bin body=2") != std::string::npos);
  }

  TEST_CASE("a target holding an older copy of a big file gets a delta against it (rsync's signature round trip) - also when the cached base went stale") {
    Fixture f;
    ::setenv("SPDLOG_LEVEL", "runtime=debug,info", 1);
    auto unset = ScopeGuard([]() noexcept { ::unsetenv("SPDLOG_LEVEL"); });
    std::string big;
    std::mt19937_64 rng(7);
    for (int i = 0; i < 2 * 1024 * 1024 / 8; ++i) {
      const uint64_t v = rng();
      big.append(reinterpret_cast<const char*>(&v), 8);  // incompressible: a whole copy would show
    }
    test::write_file(f.s("big.bin"), big);
    test::write_file(f.s("touched.bin"), big.substr(0, 200000));
    test::write_file(f.s("linked.bin"), big.substr(0, 300000));
    test::write_file(f.s("small.txt"), "copied without -p");
    test::write_file(f.s("small-other.txt"), "the source's text");
    f.sh("cp -a " + f.src + "/. " + f.dst + "/");
    // Changed since the copy (as after lsyncd stopped): an edit and an append, so size and time
    // differ; the same bytes under another time; a symlink where a file was (nothing to sign).
    {
      UniqueFd fd(::open(f.s("big.bin").c_str(), O_WRONLY | O_CLOEXEC));
      REQUIRE(fd);
      REQUIRE(::pwrite(fd.get(), "EDITED IN THE MIDDLE", 20, 1000000) == 20);
      REQUIRE(::pwrite(fd.get(), "APPENDED", 8, static_cast<off_t>(big.size())) == 8);
    }
    f.sh("touch -d '2001-01-01' " + f.dst + "/touched.bin " + f.dst + "/small.txt");
    test::write_file(f.dst + "/small-other.txt", "another text here");  // the same size, other bytes
    f.sh("rm " + f.dst + "/linked.bin && ln -s big.bin " + f.dst + "/linked.bin");
    struct stat before{}, small_before{};
    REQUIRE(::stat((f.dst + "/touched.bin").c_str(), &before) == 0);
    REQUIRE(::stat((f.dst + "/small.txt").c_str(), &small_before) == 0);
    f.start();
    f.settled();
    auto count = [&](const std::string& what) {
      size_t n = 0;
      const std::string l = f.logs();
      for (size_t at = l.find(what); at != std::string::npos; at = l.find(what, at + 1)) ++n;
      return n;
    };
    CHECK(f.logs().find("differ from the peer's copies in size or time") != std::string::npos);
    CHECK(count("path=big.bin body=2") == 1);  // a delta, against the copy that was there
    CHECK(count("path=big.bin body=1") == 0);
    CHECK(count("path=touched.bin body=1") == 0);  // the same bytes: only its time was set
    struct stat after{};
    REQUIRE(::stat((f.dst + "/touched.bin").c_str(), &after) == 0);
    CHECK(after.st_ino == before.st_ino);
    CHECK(count("path=linked.bin body=1") == 1);  // no file there to sign: whole
    // Small files of the same size: the same bytes get their time, other bytes come whole.
    CHECK(count("path=small.txt body=1") == 0);
    REQUIRE(::stat((f.dst + "/small.txt").c_str(), &after) == 0);
    CHECK(after.st_ino == small_before.st_ino);
    CHECK(count("path=small-other.txt body=1") == 1);
    CHECK(count("asking for its signature") == 1);  // big.bin only

    // The target's copy changes behind the sender's back (someone edits the mirror): the base
    // the sender cached is stale, the peer refuses that delta and signs what it holds instead.
    {
      UniqueFd fd(::open((f.dst + "/big.bin").c_str(), O_WRONLY | O_CLOEXEC));
      REQUIRE(fd);
      REQUIRE(::pwrite(fd.get(), "LOCAL EDIT AT THE TARGET", 24, 5000) == 24);
    }
    {
      UniqueFd fd(::open(f.s("big.bin").c_str(), O_WRONLY | O_CLOEXEC));
      REQUIRE(fd);
      REQUIRE(::pwrite(fd.get(), "SECOND EDIT", 11, 1500000) == 11);
    }
    f.settled();
    CHECK(count("path=big.bin body=2") == 3);  // refused, then against the target's own copy
    CHECK(count("path=big.bin body=1") == 0);
    CHECK(count("peer lacks the base of big.bin: asking for its signature") == 2);
  }

  TEST_CASE("live changes of every kind arrive") {
    Fixture f;
    test::write_file(f.s("a"), "one");
    f.start();
    f.converged();
    test::write_file(f.s("a"), "two");                   // overwrite
    f.sh("echo more >> " + f.s("a"));                    // append
    test::write_file(f.s("t"), "long content here");
    f.sh("truncate -s 4 " + f.s("t"));                   // truncate
    f.sh("chmod 640 " + f.s("a") + " && chown 42:43 " + f.s("t"));
    f.sh("touch -d '1999-09-09 09:09:09.5' " + f.s("t"));
    f.sh("ln -s a " + f.s("l") + " && ln " + f.s("a") + " " + f.s("hard"));  // symlink, hard link
    f.sh("mkdir -p " + f.s("d1/d2/d3/d4/d5") + " && echo deep > " + f.s("d1/d2/d3/d4/d5/f"));
    f.converged();
    // A same-size rewrite within the same mtime second (lsyncd loses these).
    f.sh("printf 'AAAA' > " + f.s("t") + " && touch -d '1999-09-09 09:09:09.5' " + f.s("t"));
    f.converged();
  }

  TEST_CASE("a 5000-file tree copied in with cp -a - then removed with rm -rf") {
    Fixture f;
    f.start();
    f.converged();
    test::TempDir staging("stage");
    f.sh("mkdir -p " + staging / "tree");
    for (int d = 0; d < 50; ++d) {
      f.sh("mkdir -p " + staging / ("tree/d" + std::to_string(d)));
      for (int i = 0; i < 100; ++i) {
        std::ofstream(staging / ("tree/d" + std::to_string(d) + "/f" + std::to_string(i))) << d << ":" << i;
      }
    }
    f.sh("cp -a " + staging / "tree" + " " + f.s("tree"));
    f.converged();
    f.sh("rm -rf " + f.s("tree"));
    f.converged();
    CHECK_FALSE(test::exists(f.dst + "/tree"));
  }

  TEST_CASE("renames of files and directories - chains inside one batch - create-then-delete") {
    Fixture f;
    f.sh("mkdir -p " + f.s("dir/sub"));
    test::write_file(f.s("dir/sub/x"), "x");
    test::write_file(f.s("file"), "f");
    f.start();
    f.converged();
    f.sh("mv " + f.s("file") + " " + f.s("renamed"));
    f.sh("mv " + f.s("dir") + " " + f.s("moved"));
    f.converged();
    test::write_file(f.s("a"), "chain");
    f.converged();
    f.sh("mv " + f.s("a") + " " + f.s("b") + " && mv " + f.s("b") + " " + f.s("c"));
    f.sh("echo gone > " + f.s("tmp") + " && rm " + f.s("tmp"));
    f.converged();
    // The moved directory keeps working at its new place.
    test::write_file(f.s("moved/sub/y"), "y");
    f.converged();
    // A symlink renamed: it moves, the old name goes (not only files have "content" to check).
    f.sh("ln -s renamed " + f.s("link") + " && touch -h -d '2005-05-05' " + f.s("link"));
    f.converged();
    f.sh("mv " + f.s("link") + " " + f.s("moved/link2"));
    f.converged();
    CHECK_FALSE(test::exists(f.dst + "/link"));
  }

  TEST_CASE("names swapped with renameat2(RENAME_EXCHANGE) - two directories - a file and a directory - converge and go idle") {
    Fixture f;
    f.sh("mkdir -p " + f.s("d1/x") + " " + f.s("d2") + " && echo in1 > " + f.s("d1/x/f") + " && echo in2 > " + f.s("d2/g"));
    test::write_file(f.s("a"), "A");
    test::write_file(f.s("b"), "BB");
    f.start();
    f.converged();
    auto exchange = [&](const std::string& a, const std::string& b) {
      REQUIRE_MESSAGE(::renameat2(AT_FDCWD, f.s(a).c_str(), AT_FDCWD, f.s(b).c_str(), RENAME_EXCHANGE) == 0,
                      "renameat2 " << a << " " << b << ": " << std::strerror(errno));
    };
    // Paired by the watcher as two renames, each onto a name the other still holds at the
    // target: the first fails there and is retried. A rename retried as what the name holds now
    // (a directory) used to wait for an ACK it never matched, and the daemon never went idle.
    exchange("a", "b");
    exchange("d1", "d2");
    f.settled();
    exchange("a", "d1");
    f.settled();
    CHECK(test::read_file(f.dst + "/d1") == "BB");
    CHECK(test::read_file(f.dst + "/a/g") == "in2\n");
  }

  TEST_CASE("a path longer than 4095 bytes is named in the log and left out - at startup and live - the rest flows") {
    Fixture f;
    const std::string name(200, 'd');
    // deep/ + 21 names of 200 bytes: the 21st's path is 4225 bytes, beyond the protocol's bound
    // (PATH_MAX). Made and read through each level's fd: path-based calls cannot reach so deep.
    auto level = [&](const std::string& top, int n, bool make) -> UniqueFd {
      UniqueFd fd(::open(top.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      for (int i = 0; fd && i < n; ++i) {
        if (make) ::mkdirat(fd.get(), name.c_str(), 0755);
        fd = UniqueFd(::openat(fd.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      }
      return fd;
    };
    auto make_file = [](int dir, const std::string& leaf) {
      UniqueFd fd(::openat(dir, leaf.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
      REQUIRE(fd);
      REQUIRE(::write(fd.get(), "x", 1) == 1);
    };
    f.sh("mkdir " + f.s("deep"));
    make_file(level(f.s("deep"), 21, true).get(), "deepfile");
    test::write_file(f.s("a"), "a");
    f.start();  // before: "cannot start Sync1: path ...: longer than 4095 bytes"
    CHECK_MESSAGE(f.logs().find("Error: not synced: the path is longer than 4095 bytes: deep/ddd") != std::string::npos, f.logs());
    CHECK_MESSAGE(f.logs().find("ddd (4225 bytes)") != std::string::npos, f.logs());
    std::vector<std::string> diff;
    REQUIRE(test::cookie_barrier(f.src, f.dst, "cookie.start", diff, 30000));
    CHECK(level(f.dst + "/deep", 20, false));  // everything up to the bound arrived
    CHECK_FALSE(level(f.dst + "/deep", 21, false));
    // Live: a name that passes the bound is logged (once) and left out; its neighbour arrives.
    const size_t before = f.logs().size();
    UniqueFd l20 = level(f.s("deep"), 20, false);
    REQUIRE(l20);
    make_file(l20.get(), std::string(80, 'e'));  // 4024 + 1 + 80 bytes
    make_file(l20.get(), "ok");
    REQUIRE_MESSAGE(test::wait_for_text(f.log, "eee (4105 bytes)", before), f.logs());
    REQUIRE(test::cookie_barrier(f.src, f.dst, "cookie.live", diff, 30000));
    UniqueFd t20 = level(f.dst + "/deep", 20, false);
    REQUIRE(t20);
    struct stat st{};
    CHECK(::fstatat(t20.get(), "ok", &st, 0) == 0);
    CHECK(::fstatat(t20.get(), std::string(80, 'e').c_str(), &st, 0) != 0);
    CHECK(test::count_text(f.log, "eee (4105 bytes)") == 1);
    // The tree goes as a whole, also what was never synced in it.
    f.sh("rm -rf " + f.s("deep"));
    f.converged();
    CHECK_FALSE(test::exists(f.dst + "/deep"));
  }

  TEST_CASE("a sparse file of zeros arrives whole - its run of zeros is not taken for a decompression bomb") {
    Fixture f;
    f.start();
    f.converged();
    // 64 MiB of zeros compress a thousandfold and more: before, the target dropped the stream
    // as a bomb and -direct terminated ("the mirror cannot go on").
    f.sh("truncate -s 64M " + f.s("disk.img"));
    f.converged();
    CHECK(::kill(f.proc->pid(), 0) == 0);  // still running
    CHECK(f.logs().find("bomb") == std::string::npos);
  }

  TEST_CASE("a file replaced by a FIFO (rsync.specials off) goes at the target as rsync -a --delete would - and the daemon goes idle") {
    Fixture f;
    test::write_file(f.s("pipe"), "a file first");
    f.start();
    f.converged();
    f.sh("rm " + f.s("pipe") + " && mkfifo " + f.s("pipe") + " && mkfifo " + f.s("new.fifo"));
    // Before: each was taken for unreadable and looked at again forever (never idle), and the
    // file stayed at the target.
    REQUIRE_MESSAGE(test::run(std::string(SYNCD_BINARY) + " status '" + f.src + "' -rundir '" + f.t / "run" +
                              "' --wait-idle 15000 > /dev/null") == 0,
                    "never idle; syncd log:\n" << f.logs());
    std::vector<std::string> diff;
    REQUIRE(test::cookie_barrier(f.src, f.dst, "cookie.fifo", diff, 30000));
    CHECK_FALSE(test::exists(f.dst + "/pipe"));
    CHECK_FALSE(test::exists(f.dst + "/new.fifo"));
    f.sh("rm " + f.s("pipe") + " " + f.s("new.fifo") + " && echo back > " + f.s("pipe"));
    f.settled();
    CHECK(test::read_file(f.dst + "/pipe") == "back\n");
  }

  TEST_CASE("a target inside the source - or holding it - or a state directory in either, is refused with the reason, nothing written - unless the sync excludes it") {
    Fixture f;
    test::write_file(f.s("a.pem"), "a");
    f.sh("mkdir -p " + f.s("backup"));
    auto refused = [&](const std::string& src, const std::string& dst, const std::string& why, const std::string& state = {}) {
      const std::string log = f.t / "refused.log";
      const size_t from = test::exists(log) ? test::read_file(log).size() : 0;
      test::Child c({SYNCD_BINARY, "-nodaemon", "-direct", src, dst, "-statedir", state.empty() ? f.state : state, "-rundir",
                     f.t / "run"},
                    log);
      REQUIRE_MESSAGE(test::wait_for_text(log, why, from), test::read_file(log));  // (else it runs: killed when c goes)
      CHECK(c.wait() == 255);
    };
    // Before: the first copied itself into backup/backup/... without end; the second removed
    // the source (an extra of the target) and then, at the target, everything it had copied.
    refused(f.src, f.s("backup"), "is inside the source " + f.src + ": the mirror would copy itself into itself");
    CHECK(test::list_dir(f.s("backup")).empty());
    refused(f.src, f.t.path(), "the source " + f.src + " is inside the target " + f.t.path());
    CHECK(test::read_file(f.s("a.pem")) == "a");
    refused(f.src, f.src + "/.", "is the source");
    // Its own index inside a synced tree: it replicated its WAL, whose every send wrote the WAL
    // again (816 sends in 5 s), or, in the target, would be an extra of the mirror.
    refused(f.src, f.dst, "the state directory " + f.src + "/.state is inside the source", f.s(".state"));
    refused(f.src, f.dst, "the state directory " + f.dst + "/.state is inside the target", f.dst + "/.state");
    CHECK(test::list_dir(f.dst) == std::vector<std::string>{".state"});
    // Excluded from the sync, the directory inside the source is a target like any other.
    const std::string conf = f.t / "inside.lua";
    test::write_file(conf, "settings { nodaemon = true }\nsync { default.direct, source = \"" + f.src + "\", target = \"" +
                               f.s("backup") + "\", exclude = { \"/backup\" } }\n");
    f.proc = std::make_unique<test::Child>(std::vector<std::string>{SYNCD_BINARY, "-statedir", f.state, "-rundir", f.t / "run", conf}, f.log);
    REQUIRE_MESSAGE(test::wait_for_text(f.log, "finished: 0", 0), f.logs());
    REQUIRE(test::wait_for(f.s("backup"), "a.pem"));
    test::write_file(f.s("b.pem"), "b");
    REQUIRE(test::wait_for(f.s("backup"), "b.pem"));
    CHECK_FALSE(test::exists(f.s("backup/backup")));
  }

  TEST_CASE("2000 saves through a temp file renamed into place - and lock files made and removed - converge without a warning") {
    Fixture f;
    f.start();
    f.converged();
    const size_t before = f.logs().size();
    // What an application writing its CRL does. A name gone between syncd's stat and its open
    // was logged as a warning and looked at again (66 times in 2000 rounds here).
    for (int i = 0; i < 2000; ++i) {
      UniqueFd lock(::open(f.s("lock").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
      REQUIRE(lock);
      REQUIRE(::unlink(f.s("lock").c_str()) == 0);
      test::write_file(f.s(".ca.crl.tmp"), "crl " + std::to_string(i));
      REQUIRE(::rename(f.s(".ca.crl.tmp").c_str(), f.s("ca.crl").c_str()) == 0);
    }
    f.settled();
    CHECK(test::read_file(f.dst + "/ca.crl") == "crl 1999");
    const std::string after = f.logs().substr(before);
    CHECK_MESSAGE(after.find("Warn") == std::string::npos, after);
  }

  TEST_CASE("SIGKILL during a burst - restart - nothing lost") {
    Fixture f;
    f.start();
    f.converged();
    for (int i = 0; i < 300; ++i) test::write_file(f.s("burst" + std::to_string(i)), std::to_string(i));
    CHECK(f.proc->stop(SIGKILL) == 128 + SIGKILL);
    for (int i = 300; i < 400; ++i) test::write_file(f.s("burst" + std::to_string(i)), std::to_string(i));
    f.sh("rm " + f.s("burst7"));
    f.start();
    f.converged();
  }

  TEST_CASE("a small edit to a large file travels as a delta and lands intact") {
    Fixture f;
    ::setenv("SPDLOG_LEVEL", "runtime=debug,info", 1);
    std::string big;
    for (int i = 0; i < 200000; ++i) big += static_cast<char>('a' + (i * 7919) % 26);
    test::write_file(f.s("big.bin"), big);
    f.start();
    f.converged();
    // One pwrite in place: the file is never seen half-written (a truncate-and-rewrite could be
    // shipped empty in between if the writer stalled past the watcher's settle window, and the
    // next version would then be whole, not a delta).
    big.replace(100000, 10, "EDITEDHERE");
    {
      UniqueFd fd(::open(f.s("big.bin").c_str(), O_WRONLY | O_CLOEXEC));
      REQUIRE(fd);
      REQUIRE(::pwrite(fd.get(), big.data() + 100000, 10, 100000) == 10);
    }
    f.converged();
    ::unsetenv("SPDLOG_LEVEL");
    // body=2 is BodyKind::delta in the sender's debug line for this path.
    CHECK(f.logs().find("path=big.bin body=2") != std::string::npos);
  }

  TEST_CASE("edits of a big file read only the chunks that changed since the target's version - each lands intact") {
    Fixture f;
    ::setenv("SPDLOG_LEVEL", "runtime=debug,info", 1);
    std::mt19937_64 rng(77);
    const Bytes b = test::random_bytes(rng, 9 << 20);
    std::string big(b.begin(), b.end());
    test::write_file(f.s("big.bin"), big);
    f.start();
    f.converged();
    // In place, as a program that edits a big file does (one CLOSE_WRITE, no truncation between).
    auto edit = [&](size_t at, size_t n) {
      for (size_t i = 0; i < n; ++i) big[at + i] = static_cast<char>(big[at + i] ^ 0x5a);
      UniqueFd fd(::open(f.s("big.bin").c_str(), O_WRONLY | O_CLOEXEC));
      REQUIRE(fd);
      REQUIRE(::pwrite(fd.get(), big.data() + at, n, static_cast<off_t>(at)) == static_cast<ssize_t>(n));
    };
    size_t mark = f.logs().size();
    edit((5 << 20) + 1000, 1024);  // chunk 5 only
    f.converged();
    auto reads = delta_reads(f.logs(), mark, "big.bin");
    CHECK_MESSAGE(sum(reads) == (1u << 20), f.logs().substr(mark));
    // The first and the last chunk, in one write session (or two versions, if the watcher's
    // settle window passed between the writes: 1 MiB read for each then).
    mark = f.logs().size();
    {
      for (size_t i = 0; i < 10; ++i) big[i] ^= 0x5a;
      for (size_t i = big.size() - 10; i < big.size(); ++i) big[i] ^= 0x5a;
      UniqueFd fd(::open(f.s("big.bin").c_str(), O_WRONLY | O_CLOEXEC));
      REQUIRE(fd);
      REQUIRE(::pwrite(fd.get(), big.data(), 10, 0) == 10);
      REQUIRE(::pwrite(fd.get(), big.data() + big.size() - 10, 10, static_cast<off_t>(big.size() - 10)) == 10);
    }
    f.converged();
    reads = delta_reads(f.logs(), mark, "big.bin");
    CHECK_MESSAGE(sum(reads) == (2u << 20), f.logs().substr(mark));
    big += "appended after the last chunk";
    test::write_file(f.s("big.bin"), big);
    f.converged();
    big.resize((7 << 20) + 12345);  // cut inside chunk 7
    big[3 << 20] ^= 1;
    test::write_file(f.s("big.bin"), big);
    f.converged();
    ::unsetenv("SPDLOG_LEVEL");
  }

  // The cached signature is the base of the next delta: a version that replaces the peer's
  // content without a new signature (too small to have one) must drop the old one, or the next
  // delta is built on bytes the peer no longer holds. That delta is refused, and the whole file
  // then arrives after whatever was sent behind it (in CI: a cookie, before the file).
  TEST_CASE("a big file truncated and shipped empty - then rewritten - goes on a base the target holds") {
    Fixture f;
    ::setenv("SPDLOG_LEVEL", "runtime=debug,info", 1);
    std::mt19937_64 rng(78);
    const Bytes b = test::random_bytes(rng, 9 << 20);
    std::string big(b.begin(), b.end());
    test::write_file(f.s("big.bin"), big);
    f.start();
    f.converged();
    // A writer that truncates and pauses: the empty file is a version of its own. Waiting for
    // it to land is the pause, without a sleep.
    UniqueFd fd(::open(f.s("big.bin").c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC));
    REQUIRE(fd);
    const std::string target = f.dst + "/big.bin";
    REQUIRE(test::wait_until(f.dst, [&] { return test::exists(target) && test::read_file(target).empty(); }));
    big[4 << 20] ^= 1;
    REQUIRE(::write(fd.get(), big.data(), big.size()) == static_cast<ssize_t>(big.size()));
    fd.reset();
    f.converged();
    ::unsetenv("SPDLOG_LEVEL");
    CHECK_MESSAGE(f.logs().find("delta base not held") == std::string::npos, f.logs());
  }

  TEST_CASE("a big file saved by rename over the old one - its next edit travels as a delta on the renamed content") {
    Fixture f;
    ::setenv("SPDLOG_LEVEL", "runtime=debug,info", 1);
    std::mt19937_64 rng(79);
    const Bytes old_bytes = test::random_bytes(rng, 3 << 20);
    test::write_file(f.s("big.bin"), old_bytes);
    f.start();
    f.converged();
    // As editors and acme2certifier save: a new file written in full, then renamed over the old.
    const Bytes nb = test::random_bytes(rng, 3 << 20);
    std::string next(nb.begin(), nb.end());
    test::write_file(f.s(".big.bin.new"), next);
    f.converged();
    f.sh("mv " + f.s(".big.bin.new") + " " + f.s("big.bin"));
    f.converged();
    const size_t mark = f.logs().size();
    next.replace(1 << 20, 6, "EDITED");
    {
      UniqueFd fd(::open(f.s("big.bin").c_str(), O_WRONLY | O_CLOEXEC));
      REQUIRE(fd);
      REQUIRE(::pwrite(fd.get(), next.data() + (1 << 20), 6, 1 << 20) == 6);
    }
    f.converged();
    ::unsetenv("SPDLOG_LEVEL");
    // body=2 is BodyKind::delta: the base is what the rename put there, not the old file's bytes.
    const std::string after = f.logs().substr(mark);
    CHECK_MESSAGE(after.find("path=big.bin body=2") != std::string::npos, after);
    CHECK_MESSAGE(after.find("path=big.bin body=1") == std::string::npos, after);
    CHECK(f.logs().find("not held") == std::string::npos);
  }

  TEST_CASE("an idle daemon reports its footprint - and sleeps: no thread of it wakes while nothing changes") {
    Fixture f;
    // A mount or unmount anywhere wakes a daemon once (it checks that its roots are still the
    // directories it opened: root_guard.h); other tests' mounts and lazy unmounts are not this
    // test's business, so the daemon gets a mount namespace of its own.
    f.wrapper = kPrivateMounts;
    test::write_file(f.s("a"), std::string(3 << 20, 'x'));  // a big file: its buffers are freed memory to give back
    f.start();
    f.converged();
    const std::string status = f.t / "status.json";
    REQUIRE(test::run(std::string(SYNCD_BINARY) + " status '" + f.src + "' -rundir '" + f.t / "run" + "' --wait-idle 30000 --json > " + status) == 0);
    // It reports its footprint: two paths tracked (a and the barrier's cookie), one directory watched.
    const std::string js = test::read_file(status);
    CHECK_MESSAGE(js.find("\"files\": 2, \"watches\": 1,") != std::string::npos, js);
    const size_t rss_at = js.find("\"rss_bytes\": ");
    REQUIRE_MESSAGE(rss_at != std::string::npos, js);
    const long long rss = std::atoll(js.c_str() + rss_at + 13);
    CHECK(rss > (1 << 20));
    CHECK(rss < (1ll << 31));
    // Not a wait for sync (the barrier above was): this measures that nothing happens, which only
    // a stretch of time can show. The first pause lets the status query's own session end.
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    const auto before = test::wakeups(f.proc->pid());
    std::this_thread::sleep_for(std::chrono::milliseconds(2500));
    const auto after = test::wakeups(f.proc->pid());
    REQUIRE(before.size() > 1);  // the loop thread and the job threads, all read
    CHECK_MESSAGE(after == before, "threads woke up while idle; before:\n" << test::describe(before) << "after:\n" << test::describe(after));
    // The count follows the tree (it is kept between queries until the index changes).
    ::mkdir(f.s("d").c_str(), 0755);
    test::write_file(f.s("d/b"), "b");
    f.converged();
    REQUIRE(test::run(std::string(SYNCD_BINARY) + " status '" + f.src + "' -rundir '" + f.t / "run" + "' --wait-idle 30000 --json > " + status) == 0);
    const std::string js2 = test::read_file(status);
    CHECK_MESSAGE(js2.find("\"files\": 5, \"watches\": 2,") != std::string::npos, js2);
  }

  TEST_CASE("SIGTERM exits 128+15 after finishing in-flight work") {
    Fixture f;
    f.start();
    f.converged();
    CHECK(f.proc->stop(SIGTERM) == 128 + SIGTERM);
  }
}

TEST_SUITE("integration.direct_overflow") {
  // Changes a system-wide inotify limit: registered RUN_SERIAL; the old value is always restored.
  TEST_CASE("an inotify queue overflow is survived - the tree is rescanned and converges") {
    Fixture f;
    const std::string knob = "/proc/sys/fs/inotify/max_queued_events";
    std::string old;
    std::ifstream(knob) >> old;
    struct Restore {
      std::string knob, old;
      ~Restore() { std::ofstream(knob) << old; }
    } restore{knob, old};
    std::ofstream(knob) << 32;  // syncd's inotify instance is created with this queue size
    f.start();
    std::ofstream(knob) << old;
    // Stopped, syncd cannot drain its 32-event queue: the kernel drops events and says so.
    const size_t before = f.logs().size();
    f.proc->signal(SIGSTOP);
    for (int i = 0; i < 500; ++i) test::write_file(f.s("flood" + std::to_string(i)), std::to_string(i));
    f.proc->signal(SIGCONT);
    // After an overflow the order of what happened is gone; the barrier is the end of the
    // rescan, after which changes are ordered again.
    REQUIRE_MESSAGE(test::wait_for_text(f.log, "full rescan done", before), f.logs());
    f.converged();
    CHECK(f.logs().find("overflow") != std::string::npos);
  }

  TEST_CASE("a full state disk: its commit failure is logged once, not once per batch - nothing lost once there is room") {
    Fixture f;
    const std::string vol = f.t / "statevol";
    ::mkdir(vol.c_str(), 0755);
    f.sh("mount -t tmpfs -o size=4m syncd-state " + vol);
    auto unmount = ScopeGuard([&]() noexcept { (void)test::run("umount -l " + vol); });
    f.state = vol + "/state";
    f.start();
    f.converged();
    f.sh("dd if=/dev/zero of=" + vol + "/fill bs=64k status=none 2>/dev/null || true");
    const size_t before = f.logs().size();
    // Many batches, each failing its commit (the loop reads events while they are made).
    for (int i = 0; i < 300; ++i) test::write_file(f.s("f" + std::to_string(i)), std::string(100, 'x'));
    REQUIRE_MESSAGE(test::wait_for_text(f.log, "index commit:", before), f.logs());
    REQUIRE_MESSAGE(test::wait_for_text(f.log, "not recorded (the index did not commit)", before), f.logs());
    f.sh("rm " + vol + "/fill");
    // What was not recorded is looked at again after its backoff, so a cookie written now could
    // overtake it: idle first (nothing waiting to be looked at again), then the barrier.
    f.sh(std::string(SYNCD_BINARY) + " status '" + f.src + "' -rundir '" + f.t / "run" + "' --wait-idle 60000 > /dev/null");
    f.converged();
    // 300 writes: a line per failed batch before (3,564 in 30 s of a full disk here).
    const std::string after = f.logs().substr(before);
    size_t commits = 0;
    for (size_t at = after.find("index commit:"); at != std::string::npos; at = after.find("index commit:", at + 1)) ++commits;
    CHECK_MESSAGE(commits == 1, after);
    size_t missing = 0;
    for (int i = 0; i < 300; ++i) missing += test::exists(f.dst + "/f" + std::to_string(i)) ? 0 : 1;
    CHECK(missing == 0);
  }

  TEST_CASE("syncd status run by a normal user against root's daemon says the sockets are root's - not that no daemon runs") {
    Fixture f;
    f.start();
    f.sh("chmod 755 " + f.t.path() + " && cp " + SYNCD_BINARY + " " + f.t / "syncd" + " && chmod 755 " + f.t / "syncd");
    const std::string as_nobody = "/usr/bin/setpriv --reuid=nobody --regid=nogroup --clear-groups " + f.t / "syncd" + " status";
    const std::string out = f.t / "status.out";
    for (const std::string& which : std::vector<std::string>{" '" + f.src + "'", ""}) {  // its tree, and every daemon
      CAPTURE(which);
      CHECK(test::run(as_nobody + which + " -rundir '" + f.t / "run" + "' > " + out + " 2>&1") == 3);
      CHECK_MESSAGE(test::read_file(out).find("the daemons' sockets are root's: run syncd status as root") != std::string::npos,
                    test::read_file(out));
    }
    // Root gets the answer.
    CHECK(test::run(std::string(SYNCD_BINARY) + " status '" + f.src + "' -rundir '" + f.t / "run" + "' > " + out) == 0);
    CHECK(test::read_file(out).find("idle: ") != std::string::npos);
  }

  TEST_CASE("run as a normal user (as lsyncd may be): files arrive owned by that user, as rsync -a and cp -p leave them - no apply fails") {
    // Each file's chown to the source's owner failed with EPERM, so nothing arrived and every
    // file was retried for good.
    Fixture f;
    test::write_file(f.s("root-owned"), "r");
    f.sh("mkdir " + f.s("d") + " && echo deep > " + f.s("d/f") + " && ln -s root-owned " + f.s("link"));
    test::write_file(f.s("group-file"), "g");
    f.sh("chgrp nogroup " + f.s("group-file") + " && chmod 640 " + f.s("root-owned") + " && chmod o+r " + f.s("root-owned"));
    // What the user needs: to read the source, to write the target, state and run directories,
    // and a copy of the program it can run (the build tree may be under a private home).
    f.sh("chmod 755 " + f.t.path() + " && mkdir " + f.state + " " + f.t / "run" + " && chown nobody:nogroup " + f.dst + " " +
         f.state + " " + f.t / "run" + " && cp " + SYNCD_BINARY + " " + f.t / "syncd" + " && chmod 755 " + f.t / "syncd");
    const std::string console = f.t / "user.console";
    f.proc = std::make_unique<test::Child>(
        std::vector<std::string>{"/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", f.t / "syncd",
                                 "-nodaemon", "-direct", f.src, f.dst, "-statedir", f.state + "/x", "-rundir", f.t / "run"},
        console);
    REQUIRE_MESSAGE(test::wait_for_text(console, "finished: 0", 0), test::read_file(console));
    test::write_file(f.s("live"), "l");
    f.sh("chmod 644 " + f.s("live"));
    REQUIRE_MESSAGE(test::wait_for(f.dst, "live"), test::read_file(console));
    struct passwd* nobody = ::getpwnam("nobody");
    REQUIRE(nobody != nullptr);
    for (const std::string rel : {"root-owned", "d/f", "group-file", "live"}) {
      CAPTURE(rel);
      CHECK(test::read_file(f.dst + "/" + rel) == test::read_file(f.s(rel)));
      struct stat st{}, sst{};
      REQUIRE(::lstat((f.dst + "/" + rel).c_str(), &st) == 0);
      REQUIRE(::lstat(f.s(rel).c_str(), &sst) == 0);
      CHECK(st.st_uid == nobody->pw_uid);
      CHECK((st.st_mode & 07777) == (sst.st_mode & 07777));
    }
    struct stat gst{};
    REQUIRE(::lstat((f.dst + "/group-file").c_str(), &gst) == 0);
    CHECK(gst.st_gid == nobody->pw_gid);  // nogroup: the source's group, and one the user is in
    char target[64] = {};
    CHECK(::readlink((f.dst + "/link").c_str(), target, sizeof target - 1) == 10);
    CHECK(std::string(target) == "root-owned");
    const std::string log = test::read_file(console);
    CHECK_MESSAGE(log.find("could not apply") == std::string::npos, log);
    CHECK(test::count_text(console, "not running as root") == 1);
    CHECK(f.proc->stop(SIGTERM) == 128 + SIGTERM);
  }

  TEST_CASE("a state disk full from the start: the startup is not said finished until the scan is recorded - status says what waits") {
    // The startup scan's commit failed and lsyncd's "Startup ... finished: 0" came at once,
    // with nothing in the target, and status showed nothing wrong.
    Fixture f;
    const std::string vol = f.t / "statevol";
    ::mkdir(vol.c_str(), 0755);
    // Room for a new index, not for the records of 3000 files.
    f.sh("mount -t tmpfs -o size=400k syncd-state " + vol);
    auto unmount = ScopeGuard([&]() noexcept { (void)test::run("umount -l " + vol); });
    constexpr int kFiles = 3000;
    const std::string name = "a-file-with-a-name-long-enough-to-fill-the-index-";
    for (int i = 0; i < kFiles; ++i) test::write_file(f.s(name + std::to_string(i)), std::to_string(i));
    f.proc = std::make_unique<test::Child>(
        std::vector<std::string>{SYNCD_BINARY, "-nodaemon", "-direct", f.src, f.dst, "-statedir", vol + "/state", "-rundir", f.t / "run"},
        f.log);
    REQUIRE_MESSAGE(test::wait_for_text(f.log, "not recorded (the index did not commit)", 0), f.logs());
    const std::string status = f.t / "status.out";
    f.sh(std::string(SYNCD_BINARY) + " status '" + f.src + "' -rundir '" + f.t / "run" + "' > " + status);
    CHECK_MESSAGE(test::read_file(status).find("not recorded: 1 path (index commit: " + vol + "/state/") != std::string::npos,
                  test::read_file(status));
    CHECK_MESSAGE(f.logs().find("finished: 0") == std::string::npos, f.logs());
    CHECK(test::list_dir(f.dst).empty());
    f.sh("mount -o remount,size=16m " + vol);
    REQUIRE_MESSAGE(test::wait_for_text(f.log, "finished: 0", 0, 90000), f.logs());
    // Said once the scan is recorded and applied: every file is there by then.
    size_t missing = 0;
    for (int i = 0; i < kFiles; ++i) missing += test::exists(f.dst + "/" + name + std::to_string(i)) ? 0 : 1;
    CHECK(missing == 0);
    f.converged();
    f.sh(std::string(SYNCD_BINARY) + " status '" + f.src + "' -rundir '" + f.t / "run" + "' > " + status);
    CHECK(test::read_file(status).find("not recorded") == std::string::npos);
  }

  TEST_CASE("a full target disk loses nothing - retried in the session - resent after a restart") {
    Fixture f;
    f.sh("mount -t tmpfs -o size=1m syncd-full " + f.dst);
    auto unmount = ScopeGuard([&]() noexcept { (void)test::run("umount -l " + f.dst); });
    f.start();
    f.converged();
    // Too big for the target: ENOSPC, reported; later changes still flow.
    f.sh("head -c 2000000 /dev/urandom > " + f.s("big1"));
    REQUIRE_MESSAGE(test::wait_for_text(f.log, "could not apply", 0), f.logs());
    test::write_file(f.s("small"), "fits");
    REQUIRE(test::wait_for(f.dst, "small"));
    const std::string big1 = test::read_file(f.s("big1"));
    CHECK_FALSE((test::exists(f.dst + "/big1") && test::read_file(f.dst + "/big1") == big1));
    // Killed while big1 is still missing: its resume point must not have moved past it.
    CHECK(f.proc->stop(SIGKILL) == 128 + SIGKILL);
    f.sh("mount -o remount,size=16m " + f.dst);
    f.start();
    f.converged();
    CHECK((test::exists(f.dst + "/big1") && test::read_file(f.dst + "/big1") == big1));
    // Full again, inside one session: the sender retries with backoff until it fits.
    f.sh("mount -o remount,size=3m " + f.dst);
    const size_t before = f.logs().size();
    f.sh("head -c 2500000 /dev/urandom > " + f.s("big2"));
    REQUIRE_MESSAGE(test::wait_for_text(f.log, "will send big2 again", before), f.logs());
    f.sh("mount -o remount,size=16m " + f.dst);
    // Not just the name: a shorter early version of big2 (the watcher saw it mid-write) may have
    // fitted. The retry brings the full one; a cookie is no barrier for a retry.
    const std::string want = test::read_file(f.s("big2"));
    REQUIRE_MESSAGE(test::wait_until(f.dst, [&] {
                      return test::exists(f.dst + "/big2") && test::read_file(f.dst + "/big2") == want;
                    }),
                    f.logs());
    f.converged();
    CHECK(test::read_file(f.dst + "/big2") == test::read_file(f.s("big2")));
  }

  TEST_CASE("the initial sync of a tree many times the memory bound holds only a window of it in memory") {
    Fixture f;
    // 600 files of 1 MiB. One job announces the whole tree (the answer to the target's
    // INDEX_REQUEST): it used to hold every file's bytes (and their next-delta signatures) at once,
    // and the target queued them all again: 1.4 GB resident for these 600 MB.
    std::mt19937_64 rng(600);
    const Bytes seed = test::random_bytes(rng, 1 << 20);
    std::string body(seed.begin(), seed.end());
    for (int i = 0; i < 600; ++i) {
      std::memcpy(body.data(), &i, sizeof i);  // each file its own content
      test::write_file(f.s("cert" + std::to_string(i)), body);
    }
    f.start();
    f.converged();
    test::check_peak_rss(f.proc->pid(), 300, "syncd -direct after a 600 MiB initial sync");
  }

  TEST_CASE("a tree of small files - there at startup - then copied in live - goes through a bounded window") {
    Fixture f;
    // 1000 files of 200 KiB (200 MB): small enough that the scan keeps the bytes it hashed, to
    // ship them without a second read. The startup rescan kept all of them (its batch is not
    // even sent: the answer to the INDEX_REQUEST is); and the live copy, many small batches in a
    // row, went straight into the connection's buffer while the target fell behind: each phase
    // held about the whole tree (a 600 MB tree: 688 and 470-880 MiB).
    std::mt19937_64 rng(1000);
    const Bytes seed = test::random_bytes(rng, 200 << 10);
    std::string body(seed.begin(), seed.end());
    ::mkdir(f.s("a").c_str(), 0755);
    for (int i = 0; i < 1000; ++i) {
      std::memcpy(body.data(), &i, sizeof i);
      test::write_file(f.s("a/pem" + std::to_string(i)), body);
    }
    f.start();
    f.converged();
    f.sh("cp -r " + f.s("a") + " " + f.s("b"));
    f.converged();
    test::check_peak_rss(f.proc->pid(), 150, "syncd -direct after 2 x 200 MB of 200 KiB files");
  }

  TEST_CASE("a target file made immutable (chattr +i): its update waits with the reason - others flow - it lands once writable") {
    Fixture f;
    test::write_file(f.s("crl.pem"), "old CRL");
    f.start();
    f.converged();
    const std::string target = f.dst + "/crl.pem";
    f.sh("chattr +i " + target);
    auto writable = ScopeGuard([&]() noexcept { (void)test::run("chattr -i " + target); });  // or the temp dir stays
    const size_t before = f.logs().size();
    test::write_file(f.s("crl.pem"), "new CRL");
    REQUIRE_MESSAGE(test::wait_for_text(f.log, "will send crl.pem again", before), f.logs());
    CHECK(f.logs().find("Operation not permitted", before) != std::string::npos);
    CHECK(test::read_file(target) == "old CRL");  // EPERM at the rename: the old file is whole
    // `syncd status` says what waits and why, not only the log.
    const auto status = [&](const std::string& flag) {
      const std::string out = f.t / "status.txt";
      f.sh(std::string(SYNCD_BINARY) + " status '" + f.src + "' -rundir '" + f.t / "run" + "' " + flag + " > " + out);
      return test::read_file(out);
    };
    const std::string text = status("");
    CHECK_MESSAGE(text.find("retrying: 1 (last failed: crl.pem: ") != std::string::npos, text);
    CHECK_MESSAGE(text.find("Operation not permitted; next try in ") != std::string::npos, text);
    const std::string json = status("--json");
    CHECK_MESSAGE(json.find("\"retrying\": 1, \"last_failure\": {\"path\": \"crl.pem\", \"error\": ") != std::string::npos, json);
    // Other changes are not held up behind it (a cookie is the barrier for those).
    test::write_file(f.s("cert.pem"), "issued");
    std::vector<std::string> diff;
    REQUIRE(test::cookie_barrier(f.src, f.dst, "cookie.immutable", diff, 30000));
    CHECK(test::read_file(f.dst + "/cert.pem") == "issued");
    CHECK(test::run("test -z \"$(find " + f.dst + " -name '.syncd.*')\"") == 0);  // no temp file left behind
    f.sh("chattr -i " + target);
    // The retry (with backoff) brings it; a cookie is no barrier for a retry.
    REQUIRE_MESSAGE(test::wait_until(f.dst, [&] { return test::read_file(target) == "new CRL"; }), f.logs());
    f.settled();  // idle: the sender has the ACK, not only the target the file
    const std::string after = status("--json");
    CHECK_MESSAGE(after.find("\"retrying\": 0, \"last_failure\": null") != std::string::npos, after);
  }

  TEST_CASE("a rename the target cannot make (its directory immutable) lands once it can - the old name goes too") {
    Fixture f;
    f.sh("mkdir -p " + f.s("certs/sub"));
    test::write_file(f.s("certs/a.pem"), "A");
    test::write_file(f.s("certs/sub/s.pem"), "S");
    f.start();
    f.converged();
    const std::string dir = f.dst + "/certs";
    f.sh("chattr +i " + dir);
    auto writable = ScopeGuard([&]() noexcept { (void)test::run("chattr -i " + dir); });  // or the temp dir stays
    const size_t before = f.logs().size();
    f.sh("mv " + f.s("certs/a.pem") + " " + f.s("certs/b.pem") + " && mv " + f.s("certs/sub") + " " + f.s("certs/moved"));
    REQUIRE_MESSAGE(test::wait_for_text(f.log, "will send certs/moved again", before), f.logs());
    REQUIRE_MESSAGE(test::wait_for_text(f.log, "will send certs/b.pem again", before), f.logs());
    CHECK(test::exists(dir + "/a.pem"));
    f.sh("chattr -i " + dir);
    // The retries bring the new names; the old ones, which the failed moves would have taken
    // away, are removed (before: they stayed at the target for good).
    REQUIRE_MESSAGE(test::wait_until(dir, [&] { return !test::exists(dir + "/a.pem") && !test::exists(dir + "/sub"); }),
                    f.logs());
    f.settled();
    CHECK(test::read_file(dir + "/b.pem") == "A");
    CHECK(test::read_file(dir + "/moved/s.pem") == "S");
  }

  TEST_CASE("a target changed behind syncd's back while it was stopped is repaired at the next start - as lsyncd's startup rsync repairs it") {
    Fixture f;
    f.sh("mkdir -p " + f.src + "/sub");
    for (const char* n : {"gone.pem", "edited.pem", "chmod.pem", "kept.pem", "sub/deep.pem"}) test::write_file(f.s(n), n);
    f.start();
    f.converged();
    CHECK(f.proc->stop(SIGTERM) == 128 + SIGTERM);
    // While it is stopped, someone works in the target: a file deleted, one rewritten (same
    // size, another time), one made private, a directory removed, a stray file added.
    f.sh("rm " + f.dst + "/gone.pem && printf 'EDITED.pem' > " + f.dst + "/edited.pem && touch -d '2001-01-01' " +
         f.dst + "/edited.pem && chmod 600 " + f.dst + "/chmod.pem && rm -r " + f.dst + "/sub && echo x > " + f.dst + "/stray");
    size_t before = f.logs().size();
    f.start();
    f.converged();  // equal again, content and metadata, the stray file gone
    CHECK_MESSAGE(f.logs().find("the target is not what this node last wrote", before) != std::string::npos, f.logs());
    CHECK(test::read_file(f.dst + "/edited.pem") == "edited.pem");
    // A target nobody touched: the next start resumes where it left off, no full sync.
    CHECK(f.proc->stop(SIGTERM) == 128 + SIGTERM);
    before = f.logs().size();
    f.start();
    f.converged();
    CHECK_MESSAGE(f.logs().find("the target is not what this node last wrote", before) == std::string::npos, f.logs());
  }

  // Rounds of: the mirror stopped (SIGTERM, or SIGKILL in the middle of its work), the source
  // and the target both changed meanwhile, started again: the target must equal the source.
  // SYNCD_DIRECT_SEEDS=A-B and SYNCD_DIRECT_ROUNDS=N make it a soak.
  TEST_CASE("randomized restarts with both trees changed while stopped - and kills mid-work - end equal") {
    const auto [seed_lo, seed_hi, rounds] = test::seed_range("SYNCD_DIRECT_SEEDS", "SYNCD_DIRECT_ROUNDS", {1, 3, 3});
    const std::vector<std::string> names = {"ca.crl", "key.pem", "cfg", "certs/1.pem", "certs/2.pem", "certs/3.pem",
                                            "d/x", "d/e/y", "d/e/z"};
    for (int seed = seed_lo; seed <= seed_hi; ++seed) {
      CAPTURE(seed);
      std::mt19937 rng(static_cast<uint32_t>(seed));
      Fixture f;
      f.sh("mkdir -p " + f.src + "/certs " + f.src + "/d/e");
      for (const auto& n : names) test::write_file(f.s(n), n + " v0");
      f.start();
      f.converged();
      std::string story;  // what each round did, shown with a failure
      CAPTURE(story);
      auto pick = [&] { return names[rng() % names.size()]; };
      auto change = [&](const std::string& root, int round, int i) {
        const std::string path = root + "/" + pick();
        const unsigned op = rng() % 5;
        story += (root == f.src ? " src " : " dst ") + std::to_string(op) + " " + path.substr(root.size() + 1) + ";";
        switch (op) {
          case 0:  // rewrite, sometimes to the same size with an old time (a quick-check trap)
            f.sh("mkdir -p \"$(dirname " + path + ")\"");
            test::write_file(path, "r" + std::to_string(round) + "." + std::to_string(i));
            if (rng() % 2) f.sh("touch -d '2001-01-01' " + path);
            break;
          case 1:
            f.sh("rm -f " + path);
            break;
          case 2:
            f.sh("test ! -f " + path + " || chmod " + (rng() % 2 ? "600 " : "640 ") + path);
            break;
          case 3:
            f.sh("rm -rf " + root + "/d/e");
            break;
          default:
            f.sh("mkdir -p " + root + "/d/e && echo s > " + root + "/d/e/stray" + std::to_string(rng() % 3));
            break;
        }
      };
      for (int round = 0; round < rounds; ++round) {
        CAPTURE(round);
        const bool kill = rng() % 2 == 0;
        story += "\nround " + std::to_string(round) + (kill ? " SIGKILL:" : " SIGTERM:");
        if (kill) {
          // Work in flight when it dies: a burst just written.
          for (int i = 0; i < 20; ++i) test::write_file(f.s("certs/burst" + std::to_string(i) + ".pem"), std::to_string(round));
          CHECK(f.proc->stop(SIGKILL) == 128 + SIGKILL);
        } else {
          CHECK(f.proc->stop(SIGTERM) == 128 + SIGTERM);
        }
        const int n_src = 2 + static_cast<int>(rng() % 4), n_dst = static_cast<int>(rng() % 4);
        for (int i = 0; i < n_src; ++i) change(f.src, round, i);
        for (int i = 0; i < n_dst; ++i) change(f.dst, round, 100 + i);
        f.start();
        f.converged();
      }
    }
  }

  TEST_CASE("a source that looks unmounted at a restart empties nothing: the mass-delete brake holds until -max-delete-share 100") {
    Fixture f;
    for (int i = 0; i < 10; ++i) test::write_file(f.s("cert" + std::to_string(i) + ".pem"), "cert " + std::to_string(i));
    f.start();
    f.converged();
    CHECK(f.proc->stop(SIGTERM) == 128 + SIGTERM);
    // The volume is not mounted: the source is an empty directory (rsync --delete, and so lsyncd,
    // would now empty the target).
    f.sh("rm -f " + f.src + "/*.pem");
    const size_t before = f.logs().size();
    f.start();
    test::write_file(f.s("after"), "x");
    REQUIRE_MESSAGE(test::wait_for(f.dst, "after"), f.logs());
    CHECK_MESSAGE(f.logs().find("MASS-DELETE BRAKE: a full scan of " + f.src + " found 10 of ", before) !=
                  std::string::npos, f.logs());
    for (int i = 0; i < 10; ++i) CHECK(test::exists(f.dst + "/cert" + std::to_string(i) + ".pem"));
    const std::string status = f.t / "status.txt";
    f.sh(std::string(SYNCD_BINARY) + " status '" + f.src + "' -rundir '" + f.t / "run" + "' > " + status);
    CHECK_MESSAGE(test::read_file(status).find("MASS-DELETE BRAKE") != std::string::npos, test::read_file(status));
    // A deliberate mass delete: restarted once with the brake off, the deletes go through.
    CHECK(f.proc->stop(SIGTERM) == 128 + SIGTERM);
    f.start({"-max-delete-share", "100"});
    f.converged();
    CHECK_FALSE(test::exists(f.dst + "/cert0.pem"));
  }

  TEST_CASE("a target whose volume is not mounted at a restart gets nothing written into the directory below it - it resumes once mounted") {
    Fixture f;
    const std::string volume = f.t / "volume";
    ::mkdir(volume.c_str(), 0755);
    f.sh("mount --bind " + volume + " " + f.dst);  // the target's own volume
    auto unmount = ScopeGuard([&]() noexcept { (void)test::run("umount -l " + f.dst + " 2>/dev/null"); });
    for (int i = 0; i < 10; ++i) test::write_file(f.s("cert" + std::to_string(i) + ".pem"), "cert " + std::to_string(i));
    f.start();
    f.converged();
    CHECK(f.proc->stop(SIGTERM) == 128 + SIGTERM);
    f.sh("umount " + f.dst);  // the volume did not mount at the next boot
    test::write_file(f.s("while-stopped"), "x");
    // Before, the drift repair filled the plain directory with the whole tree (as lsyncd does).
    const size_t before = f.logs().size();
    f.proc = std::make_unique<test::Child>(
        std::vector<std::string>{SYNCD_BINARY, "-nodaemon", "-direct", f.src, f.dst, "-statedir", f.state, "-rundir", f.t / "run"},
        f.log);
    REQUIRE_MESSAGE(test::wait_for_text(f.log, "was the root of a mounted filesystem when this node last wrote it (", before), f.logs());
    CHECK(f.proc->wait() == 255);
    CHECK(f.logs().find("remove the state directory " + f.state + "/dst", before) != std::string::npos);
    CHECK(test::list_dir(f.dst).empty());
    // Mounted again: it resumes where it was, with no full sync (nothing in the volume drifted).
    f.sh("mount --bind " + volume + " " + f.dst);
    const size_t resumed = f.logs().size();
    f.start();
    f.converged();
    CHECK(test::exists(volume + "/while-stopped"));
    CHECK(f.logs().find("not what this node last wrote", resumed) == std::string::npos);
  }

  TEST_CASE("one of two syncs whose target volume is not mounted is halted while the other runs - it starts once mounted") {
    Fixture f;
    const std::string src2 = f.t / "src2", dst2 = f.t / "dst2", volume = f.t / "volume", run = f.t / "run";
    for (const auto& d : {src2, dst2, volume}) ::mkdir(d.c_str(), 0755);
    f.sh("mount --bind " + volume + " " + dst2);
    auto unmount = ScopeGuard([&]() noexcept { (void)test::run("umount -l " + dst2 + " 2>/dev/null"); });
    const std::vector<std::string> argv{SYNCD_BINARY, "-nodaemon", "-direct", f.src, f.dst, "-direct", src2, dst2,
                                        "-statedir", f.state, "-rundir", run};
    const auto both_started = [&](size_t from) {
      return test::wait_until(f.t.path(), [&] {
        const std::string l = f.logs();
        const size_t first = l.find("finished: 0", from);
        return first != std::string::npos && l.find("finished: 0", first + 1) != std::string::npos;
      });
    };
    test::write_file(f.s("a.pem"), "a");
    test::write_file(src2 + "/b.pem", "b");
    f.proc = std::make_unique<test::Child>(argv, f.log);
    REQUIRE_MESSAGE(both_started(0), f.logs());
    f.converged();
    std::vector<std::string> diff;
    REQUIRE_MESSAGE(test::cookie_barrier(src2, dst2, "cookie2.1", diff, 30000, true), f.logs());
    CHECK(diff.empty());
    CHECK(f.proc->stop(SIGTERM) == 128 + SIGTERM);

    f.sh("umount " + dst2);  // the second target's volume did not mount at the next boot
    test::write_file(src2 + "/while-stopped.pem", "x");
    const size_t before = f.logs().size();
    NotifySocket notify(f.t / "notify.sock");
    f.proc = notify.start(argv, f.log);
    // Before, the whole daemon did not start: the first sync stopped with the second.
    CHECK(notify.next() == "STATUS=halted (volume not there?): Sync2");  // what systemctl status shows
    CHECK(notify.next() == "READY=1");
    REQUIRE_MESSAGE(test::wait_for_text(f.log, "is halted, the other syncs run", before), f.logs());
    CHECK(f.logs().find("was the root of a mounted filesystem when this node last wrote it", before) != std::string::npos);
    // The running sync's startup first: until its line, what it sends is the answer to the
    // target's index request, in path order, and a cookie is no barrier (live.pem could come
    // after cookie.2: 1 run in 12).
    REQUIRE_MESSAGE(test::wait_for_text(f.log, "Startup of \"" + f.src + "/\" finished: 0", before), f.logs());
    test::write_file(f.s("live.pem"), "live");
    f.converged();
    CHECK(test::read_file(f.dst + "/live.pem") == "live");
    CHECK(test::list_dir(dst2).empty());
    const std::string out = f.t / "status.txt";
    CHECK(test::run(std::string(SYNCD_BINARY) + " status '" + src2 + "' -rundir '" + run + "' > '" + out + "'") == 0);
    CHECK_MESSAGE(test::read_file(out).find("HALTED: the directory " + dst2) != std::string::npos, test::read_file(out));
    CHECK(test::run(std::string(SYNCD_BINARY) + " status '" + src2 + "' -rundir '" + run + "' --wait-idle 200 > /dev/null") != 0);

    // Mounted again: the halted sync starts by itself and catches up.
    const size_t mounted = f.logs().size();
    f.sh("mount --bind " + volume + " " + dst2);
    REQUIRE_MESSAGE(test::wait_for_text(f.log, "is no longer halted: started (a mount changed)", mounted), f.logs());
    CHECK(notify.next() == "STATUS=running");
    // Its startup (the catch-up, in path order) before a cookie can be a barrier, as above.
    REQUIRE_MESSAGE(test::wait_for_text(f.log, "Startup of \"" + src2 + "/\" finished: 0", mounted), f.logs());
    REQUIRE_MESSAGE(test::cookie_barrier(src2, dst2, "cookie2.2", diff, 30000, true), f.logs());
    for (const auto& d : diff) MESSAGE(d);
    CHECK(diff.empty());
    CHECK(test::read_file(volume + "/while-stopped.pem") == "x");
    CHECK(f.proc->stop(SIGTERM) == 128 + SIGTERM);
  }

  TEST_CASE("two mirrors into one target are refused at start - one inside the other's target runs when that one excludes it") {
    Fixture f;
    const std::string src2 = f.t / "src2", sub = f.dst + "/sub", err = f.t / "stderr";
    ::mkdir(src2.c_str(), 0755);
    ::mkdir(sub.c_str(), 0755);
    test::write_file(f.s("a.pem"), "a");
    test::write_file(src2 + "/b.pem", "b");
    // Before, both ran: each startup deleted the other's files (the target ended empty here).
    // `timeout`: run, it would not exit by itself.
    const std::string two = "timeout 20 " + std::string(SYNCD_BINARY) + " -nodaemon -statedir " + f.state + " -rundir " + f.t / "run";
    CHECK(test::run(two + " -direct " + f.src + " " + f.dst + " -direct " + src2 + " " + f.dst + " 2> " + err) == 255);
    CHECK_MESSAGE(test::read_file(err).find("Sync1 and Sync2 both write into " + f.dst + ", and Sync1 deletes there what its "
                                            "source lacks: it would delete Sync2's files at every start") != std::string::npos,
                  test::read_file(err));
    CHECK(test::run(two + " -direct " + f.src + " " + f.dst + " -direct " + src2 + " " + sub + " 2> " + err) == 255);
    CHECK_MESSAGE(test::read_file(err).find("Sync1 and Sync2 both write into " + sub + " (inside Sync1's target " + f.dst +
                                            ")") != std::string::npos,
                  test::read_file(err));
    CHECK(test::list_dir(f.dst) == std::vector<std::string>{"sub"});  // nothing was written
    // The outer one excluding the inner one's directory: both run, and keep each other's files.
    f.start({"-exclude", "sub", "-direct", src2, sub});
    REQUIRE_MESSAGE(test::wait_for_text(f.log, "Startup of \"" + src2 + "/\" finished: 0", 0), f.logs());
    REQUIRE_MESSAGE(test::wait_for(sub, "b.pem"), f.logs());
    std::vector<std::string> diff;
    REQUIRE_MESSAGE(test::cookie_barrier(f.src, f.dst, "cookie.outer", diff, 30000, false), f.logs());
    CHECK(test::read_file(f.dst + "/a.pem") == "a");
    CHECK(test::read_file(sub + "/b.pem") == "b");
  }

  TEST_CASE("a file dated past 2262 arrives dated 2262-04-11 - the end of int64 ns - not wrapped to 1901") {
    Fixture f;
    f.start();
    f.converged();
    test::write_file(f.s("far.pem"), "far");
    // ext4's last second (2446-05-10); tmpfs keeps it too.
    f.sh("touch -d @15032385535 " + f.s("far.pem"));
    std::vector<std::string> diff;  // the barrier; the mtimes differ by design
    REQUIRE_MESSAGE(test::cookie_barrier(f.src, f.dst, "cookie.far", diff, 30000, true), f.logs());
    struct stat st{};
    REQUIRE(::stat((f.dst + "/far.pem").c_str(), &st) == 0);
    CHECK(st.st_mtim.tv_sec == 9'223'372'036);
    CHECK(st.st_mtim.tv_nsec == 854'775'807);
    CHECK(test::read_file(f.dst + "/far.pem") == "far");
  }

  TEST_CASE("a target moved away and made again while running: the sync halts, then fills the new directory - the old one gets nothing more") {
    Fixture f;
    test::write_file(f.s("a.pem"), "a");
    f.start();
    f.converged();
    const std::string old = f.t / "dst.old";
    const size_t from = f.logs().size();
    // Before, every apply failed with ENOENT through the directory it had opened (after a plain
    // move, it went on writing into dst.old), and the new directory was never synced.
    REQUIRE(::rename(f.dst.c_str(), old.c_str()) == 0);
    ::mkdir(f.dst.c_str(), 0755);
    // "is gone" when it looked between the two steps, "is another directory" after.
    REQUIRE_MESSAGE(test::wait_for_text(f.log, "Sync1 is halted: the target " + f.dst + " is ", from), f.logs());
    test::write_file(f.s("b.pem"), "b");
    REQUIRE_MESSAGE(test::wait_for_text(f.log, "Sync1 is no longer halted: started", from), f.logs());
    REQUIRE_MESSAGE(test::wait_for_text(f.log, "Startup of \"" + f.src + "/\" finished: 0", f.logs().find("no longer halted", from)),
                    f.logs());
    f.converged();
    CHECK(test::read_file(f.dst + "/a.pem") == "a");
    CHECK(test::read_file(f.dst + "/b.pem") == "b");
    CHECK_FALSE(test::exists(old + "/b.pem"));
  }

  TEST_CASE("a directory above the target's parent moved away and the path made again: the sync halts, then fills the new target") {
    // mv /opt/acme2certifier /opt/acme2certifier.old leaves the root's parent untouched: only
    // the parent was watched, and the sync went on writing into the moved tree for good.
    Fixture f;
    const std::string site = f.t / "site", deep = site + "/vol/dst", old = f.t / "site.old";
    f.sh("mkdir -p " + deep);
    f.dst = deep;
    test::write_file(f.s("a.pem"), "a");
    f.start();
    f.converged();
    const size_t from = f.logs().size();
    REQUIRE(::rename(site.c_str(), old.c_str()) == 0);
    REQUIRE_MESSAGE(test::wait_for_text(f.log, "Sync1 is halted: the target " + deep + " is ", from), f.logs());
    f.sh("mkdir -p " + deep);
    test::write_file(f.s("b.pem"), "b");
    REQUIRE_MESSAGE(test::wait_for_text(f.log, "Sync1 is no longer halted: started", from), f.logs());
    REQUIRE_MESSAGE(test::wait_for_text(f.log, "Startup of \"" + f.src + "/\" finished: 0", f.logs().find("no longer halted", from)),
                    f.logs());
    f.converged();
    CHECK(test::read_file(deep + "/a.pem") == "a");
    CHECK(test::read_file(deep + "/b.pem") == "b");
    CHECK_FALSE(test::exists(old + "/vol/dst/b.pem"));
  }

  TEST_CASE("a target directory that is not there is made at the first start, as rsync makes it - not with its parent missing, not once the mirror wrote it") {
    // lsyncd's -direct and -rsync (their startup is rsync) make it; syncd refused to start.
    Fixture f;
    ::rmdir(f.dst.c_str());
    test::write_file(f.s("a.pem"), "a");
    f.start();
    f.converged();
    CHECK(test::read_file(f.dst + "/a.pem") == "a");
    CHECK_MESSAGE(f.logs().find("created the target directory " + f.dst) != std::string::npos, f.logs());
    CHECK(f.proc->stop_within(SIGTERM, 10000) == 143);
    const auto run = [&](const std::string& dst, const std::string& state, const std::string& log) {
      return test::run(std::string(SYNCD_BINARY) + " -nodaemon -direct " + f.src + " " + dst + " -statedir " + state +
                       " -rundir " + f.t / "run" + " > " + log + " 2>&1");
    };
    // Gone after the mirror wrote it (an unmounted volume, a mistake): not made again.
    f.sh("rm -rf " + f.dst);
    CHECK(run(f.dst, f.state, f.t / "again.log") == 255);
    CHECK_FALSE(test::exists(f.dst));
    CHECK_MESSAGE(test::read_file(f.t / "again.log").find("open root " + f.dst) != std::string::npos, test::read_file(f.t / "again.log"));
    // Its parent missing: rsync does not make that either.
    const std::string deep = f.t / "no/dst";
    CHECK(run(deep, f.t / "state2", f.t / "deep.log") == 255);
    CHECK_FALSE(test::exists(f.t / "no"));
    // A start refused after the directory was made leaves nothing behind: a target inside the source.
    CHECK(run(f.s("inside"), f.t / "state3", f.t / "inside.log") == 255);
    CHECK_MESSAGE(test::read_file(f.t / "inside.log").find("is inside the source") != std::string::npos, test::read_file(f.t / "inside.log"));
    CHECK_FALSE(test::exists(f.s("inside")));
  }

  TEST_CASE("a source removed while running halts the sync until a directory is there again - then it is mirrored") {
    Fixture f;
    test::write_file(f.s("a.pem"), "a");
    f.start();
    f.converged();
    const size_t from = f.logs().size();
    f.sh("rm -rf " + f.src);
    REQUIRE_MESSAGE(test::wait_for_text(f.log, "Sync1 is halted: the source " + f.src + " is gone", from), f.logs());
    REQUIRE_MESSAGE(test::wait_for_text(f.log, "Sync1 is still halted: open root " + f.src, from), f.logs());
    ::mkdir(f.src.c_str(), 0755);
    test::write_file(f.s("back.pem"), "back");
    REQUIRE_MESSAGE(test::wait_for_text(f.log, "Sync1 is no longer halted: started", from), f.logs());
    REQUIRE_MESSAGE(test::wait_for_text(f.log, "Startup of \"" + f.src + "/\" finished: 0", f.logs().find("no longer halted", from)),
                    f.logs());
    f.converged();  // a.pem, not in the new source, is gone too (the startup sync's delete)
    CHECK(test::read_file(f.dst + "/back.pem") == "back");
    CHECK_FALSE(test::exists(f.dst + "/a.pem"));
  }

  TEST_CASE("a volume mounted over the running target gets the tree - unmounted, the sync halts and writes nothing below - mounted again, it resumes") {
    Fixture f;
    const std::string volume = f.t / "volume";
    ::mkdir(volume.c_str(), 0755);
    for (int i = 0; i < 3; ++i) test::write_file(f.s("cert" + std::to_string(i) + ".pem"), "c");
    f.start();
    f.converged();
    auto unmount = ScopeGuard([&]() noexcept { (void)test::run("umount -l " + f.dst + " 2>/dev/null"); });
    // The volume mounted late (after syncd started on the plain directory): before, syncd went
    // on writing below it, hidden, and the volume stayed empty.
    size_t from = f.logs().size();
    f.sh("mount --bind " + volume + " " + f.dst);
    REQUIRE_MESSAGE(test::wait_for_text(f.log, "Sync1 is halted: the target " + f.dst + " is another directory", from), f.logs());
    REQUIRE_MESSAGE(test::wait_for_text(f.log, "Sync1 is no longer halted: started", from), f.logs());
    REQUIRE_MESSAGE(test::wait_for_text(f.log, "Startup of \"" + f.src + "/\" finished: 0", f.logs().find("no longer halted", from)),
                    f.logs());
    f.converged();
    CHECK(test::exists(volume + "/cert2.pem"));
    // Lazily unmounted (a plain umount is refused: syncd holds the volume open).
    from = f.logs().size();
    f.sh("umount -l " + f.dst);
    REQUIRE_MESSAGE(test::wait_for_text(f.log, "Sync1 is halted: the target " + f.dst + " is another directory", from), f.logs());
    // Started again at once, and refused: nothing lands below the mount point.
    REQUIRE_MESSAGE(test::wait_for_text(f.log, "is a plain directory now: is its volume mounted?", from), f.logs());
    test::write_file(f.s("while-unmounted.pem"), "x");
    CHECK_FALSE(test::exists(f.dst + "/while-unmounted.pem"));
    CHECK_FALSE(test::exists(volume + "/while-unmounted.pem"));
    from = f.logs().size();
    f.sh("mount --bind " + volume + " " + f.dst);
    // Started again by the mount itself, not at the next timed retry.
    REQUIRE_MESSAGE(test::wait_for_text(f.log, "Sync1 is no longer halted: started (a mount changed)", from), f.logs());
    REQUIRE_MESSAGE(test::wait_for_text(f.log, "Startup of \"" + f.src + "/\" finished: 0", f.logs().find("no longer halted", from)),
                    f.logs());
    f.converged();
    CHECK(test::read_file(volume + "/while-unmounted.pem") == "x");
  }

  TEST_CASE("a source restored from a snapshot (tree and index) is mirrored as restored - and its next changes arrive") {
    Fixture f;
    test::write_file(f.s("ca.pem"), "v0");
    test::write_file(f.s("keep.pem"), "k");
    f.start();
    f.converged();
    CHECK(f.proc->stop(SIGTERM) == 128 + SIGTERM);
    const std::string snap = f.t / "snapshot";
    f.sh("mkdir " + snap + " && cp -a " + f.src + " " + f.state + "/src " + snap + "/");
    f.start();
    for (int i = 1; i <= 10; ++i) {  // the target's point for the source's index moves ten records on
      const std::string v = "v" + std::to_string(i);
      test::write_file(f.s("ca.pem"), v);
      REQUIRE(test::wait_until(f.dst, [&] { return test::read_file(f.dst + "/ca.pem") == v; }, 30000));
    }
    test::write_file(f.s("issued-later.pem"), "x");
    f.converged();
    CHECK(f.proc->stop(SIGTERM) == 128 + SIGTERM);
    f.sh("rm -rf " + f.src + " " + f.state + "/src && cp -a " + snap + "/src " + f.t.path() + "/ && cp -a " + snap +
         "/src " + f.state + "/");
    // Made while stopped: its record gets a number the target had passed.
    test::write_file(f.s("after-restore.pem"), "y");
    const size_t from = f.logs().size();
    f.start();
    f.converged();  // the target is the restored source: ca.pem v0 again, issued-later.pem gone
    CHECK(test::read_file(f.dst + "/ca.pem") == "v0");
    CHECK_FALSE(test::exists(f.dst + "/issued-later.pem"));
    CHECK(test::exists(f.dst + "/after-restore.pem"));
    CHECK_MESSAGE(f.logs().find("it went back (restored from a snapshot or backup", from) != std::string::npos, f.logs());
  }

  TEST_CASE("a first start on an empty source (its volume not mounted) empties nothing at the target - unless -max-delete-share 100") {
    Fixture f;
    for (int i = 0; i < 5; ++i) test::write_file(f.dst + "/key" + std::to_string(i) + ".pem", "key " + std::to_string(i));
    f.start();  // rsync --delete, and so lsyncd, would empty the target now
    CHECK_MESSAGE(f.logs().find("MASS-DELETE BRAKE: the source announced no file at all") != std::string::npos, f.logs());
    for (int i = 0; i < 5; ++i) CHECK(test::exists(f.dst + "/key" + std::to_string(i) + ".pem"));
    // Meant: with the brake off, the next full sync makes the target an empty mirror.
    CHECK(f.proc->stop(SIGTERM) == 128 + SIGTERM);
    f.sh("rm -rf " + f.state);
    f.start({"-max-delete-share", "100"});
    CHECK(test::list_dir(f.dst).empty());
  }

  TEST_CASE("a first start into a target that is not the mirror's (its parent, another tree) removes none of its files - unless -max-delete-share 100") {
    Fixture f;
    test::write_file(f.s("a.pem"), "a");
    test::write_file(f.s("b.pem"), "b");
    test::write_file(f.dst + "/a.pem", "old a");
    f.sh("mkdir -p " + f.dst + "/app");
    for (int i = 0; i < 12; ++i) test::write_file(f.dst + "/app/m" + std::to_string(i) + ".py", "code");  // 12 of 14 once a, b are in
    f.start();
    CHECK_MESSAGE(f.logs().find("MASS-DELETE BRAKE: the initial sync would remove 12 of the 14 files here as extras "
                                "(more than 50%; the source has 2)") != std::string::npos, f.logs());
    std::vector<std::string> diff;  // the cookie is the barrier; the trees differ by the kept files
    REQUIRE(test::cookie_barrier(f.src, f.dst, "cookie.kept", diff, 30000, true));
    CHECK(test::read_file(f.dst + "/a.pem") == "a");
    CHECK(test::read_file(f.dst + "/b.pem") == "b");
    for (int i = 0; i < 12; ++i) CHECK(test::exists(f.dst + "/app/m" + std::to_string(i) + ".py"));
    const std::string status = f.t / "status.txt";
    f.sh(std::string(SYNCD_BINARY) + " status '" + f.src + "' -rundir '" + f.t / "run" + "' > " + status);
    CHECK_MESSAGE(test::read_file(status).find("MASS-DELETE BRAKE: the initial sync would remove 12 of the 14") !=
                  std::string::npos, test::read_file(status));
    // Fewer than 10 extras go as with rsync --delete, whatever their share (9 of 12 here: what an
    // older copy of the tree holds).
    CHECK(f.proc->stop(SIGTERM) == 128 + SIGTERM);
    f.sh("rm -rf " + f.state + " " + f.dst + "/app " + f.src + "/cookie.kept " + f.dst + "/cookie.kept");
    test::write_file(f.s("c.pem"), "c");
    for (int i = 0; i < 9; ++i) test::write_file(f.dst + "/stale" + std::to_string(i) + ".pem", "x");
    f.start();
    f.converged();
    CHECK_FALSE(test::exists(f.dst + "/stale0.pem"));
    // Meant: with the brake off, a first start prunes whatever the source lacks.
    CHECK(f.proc->stop(SIGTERM) == 128 + SIGTERM);
    f.sh("rm -rf " + f.state + " && mkdir -p " + f.dst + "/app && for i in $(seq 12); do touch " + f.dst + "/app/$i; done");
    f.start({"-max-delete-share", "100"});
    f.converged();
    CHECK_FALSE(test::exists(f.dst + "/app"));
  }

  TEST_CASE("a first start on a source with directories only (a fresh filesystem's lost+found) removes no file at the target") {
    Fixture f;
    f.sh("mkdir -m 700 " + f.src + "/lost+found");
    f.sh("mkdir -p " + f.dst + "/certs");
    for (int i = 0; i < 3; ++i) test::write_file(f.dst + "/certs/c" + std::to_string(i) + ".pem", "cert " + std::to_string(i));
    f.start();
    CHECK_MESSAGE(f.logs().find("MASS-DELETE BRAKE: the source announced no file at all") != std::string::npos, f.logs());
    for (int i = 0; i < 3; ++i) CHECK(test::exists(f.dst + "/certs/c" + std::to_string(i) + ".pem"));
    // What the source has still arrives; the live deletes of files it then removes go through.
    test::write_file(f.s("lost+found/x"), "x");
    REQUIRE_MESSAGE(test::wait_for(f.dst + "/lost+found", "x"), f.logs());
    f.sh("rm " + f.s("lost+found/x"));
    REQUIRE_MESSAGE(test::wait_until(f.dst, [&] { return !test::exists(f.dst + "/lost+found/x"); }), f.logs());
    CHECK(test::exists(f.dst + "/certs/c0.pem"));
  }

  TEST_CASE("a record the source's index cannot read stops the mirror with the reason - nothing in the target is deleted") {
    Fixture f;
    for (int i = 100; i < 120; ++i) test::write_file(f.s("f" + std::to_string(i)), "content " + std::to_string(i));
    f.start();
    f.converged();
    CHECK(f.proc->stop(SIGTERM) == 128 + SIGTERM);
    // A record that no longer decodes (a damaged disk, a bug). Announcing around it would tell
    // the target it has everything, and the target's startup delete would remove what it missed.
    {
      auto db = store::Db::open(f.state + "/src/index.db");
      REQUIRE(db.ok());
      REQUIRE(db->exec("UPDATE files SET record = x'ff00' WHERE path = CAST('f105' AS BLOB)").ok());
    }
    f.sh("rm -rf " + f.state + "/dst");  // so the target asks for everything: a full sync, with its delete
    const size_t before = f.logs().size();
    f.proc = std::make_unique<test::Child>(
        std::vector<std::string>{SYNCD_BINARY, "-nodaemon", "-direct", f.src, f.dst, "-statedir", f.state, "-rundir", f.t / "run"},
        f.log);
    const bool stopped = test::wait_for_text(f.log, "terminating, the mirror cannot go on", before);
    CHECK_MESSAGE(stopped, f.logs());
    CHECK_MESSAGE(f.logs().find("answering the peer's index request", before) != std::string::npos, f.logs());
    for (int i = 100; i < 120; ++i) {
      const std::string name = f.dst + "/f" + std::to_string(i);
      CHECK_MESSAGE((test::exists(name) && test::read_file(name) == "content " + std::to_string(i)), name);
    }
    if (stopped) CHECK(f.proc->wait() == 255);
  }

}

// EIO from a disk (SECURITY.md §8 #28), through the FUSE fault injector mounted over SRC or DST.
TEST_SUITE("integration.direct_eio") {
  // The mount over `dir` of a backing directory `dir.disk` filled by `fill` first; the daemon is
  // stopped before the mount goes (a guard declared after it).
  struct Disk {
    std::string backing;
    std::unique_ptr<test::FaultFs> fs;
    Disk(Fixture& f, const std::string& dir) : backing(dir + ".disk") {
      ::mkdir(backing.c_str(), 0755);
      fs = std::make_unique<test::FaultFs>(backing, dir, f.t.path());
    }
  };

  TEST_CASE("a source file that cannot be read (EIO): the target keeps its copy through the initial sync - the rest arrives - it follows once readable") {
    Fixture f;
    Disk d(f, f.src);
    auto stop = ScopeGuard([&]() noexcept { f.proc.reset(); });
    test::write_file(f.s("victim"), "new content");
    test::write_file(f.s("other"), "other");
    test::write_file(f.dst + "/victim", "old copy");
    test::write_file(f.dst + "/extra", "not in the source");
    d.fs->fail("read", "EIO", "victim");
    f.start();  // the initial sync, prune included, is over
    CHECK(test::read_file(f.dst + "/other") == "other");
    CHECK_FALSE(test::exists(f.dst + "/extra"));
    // The source has it but could not read it: not an extra to delete (before: removed).
    CHECK_MESSAGE(test::read_file(f.dst + "/victim") == "old copy", f.logs());
    CHECK(f.logs().find("read \"victim\": Input/output error") != std::string::npos);
    CHECK(f.logs().find("1 paths the source could not read: kept here") != std::string::npos);
    CHECK(d.fs->injected() >= 1);
    // Not in sync, and `status` says why.
    const std::string status = f.t / "status.txt";
    f.sh(std::string(SYNCD_BINARY) + " status '" + f.src + "' -rundir '" + f.t / "run" + "' > " + status);
    CHECK_MESSAGE(test::read_file(status).find("idle: no") != std::string::npos, test::read_file(status));
    CHECK_MESSAGE(test::read_file(status).find("unreadable here: 1 paths") != std::string::npos, test::read_file(status));
    // The disk recovers: the file is read again (no event would bring it) and arrives.
    d.fs->clear();
    CHECK_MESSAGE(test::wait_until(f.dst, [&] {
      return test::exists(f.dst + "/victim") && test::read_file(f.dst + "/victim") == "new content";
    }, 30000), f.logs());
    f.settled();
  }

  TEST_CASE("a target whose filesystem refuses chown even to root (NFS root_squash, FAT, CIFS): files arrive with the owner it gives - said once, nothing retried") {
    // Each file's chown failed with EPERM, so the apply failed and nothing arrived, retried for
    // good; rsync -a writes the data and reports the chown.
    Fixture f;
    Disk d(f, f.dst);
    auto stop = ScopeGuard([&]() noexcept { f.proc.reset(); });
    ::mkdir(f.s("d").c_str(), 0755);
    test::write_file(f.s("a"), "a");
    test::write_file(f.s("d/b"), "b");
    f.sh("chown -R 1234:2345 " + f.s("a") + " " + f.s("d") + " && chmod 640 " + f.s("a"));
    d.fs->fail("chown", "EPERM", "*");
    f.start();
    CHECK(test::read_file(f.dst + "/a") == "a");
    CHECK(test::read_file(f.dst + "/d/b") == "b");
    test::write_file(f.s("live"), "live");
    REQUIRE_MESSAGE(test::wait_for(f.dst, "live"), f.logs());
    CHECK(test::read_file(f.dst + "/live") == "live");
    struct stat st{};
    REQUIRE(::stat((f.dst + "/a").c_str(), &st) == 0);
    CHECK(st.st_uid == 0);               // what the filesystem gave it
    CHECK((st.st_mode & 07777) == 0640);  // the rest of the metadata still follows
    CHECK(d.fs->injected() >= 3);
    CHECK(test::count_text(f.log, "refuses to change owners") == 1);
    CHECK_MESSAGE(f.logs().find("could not apply") == std::string::npos, f.logs());
  }

  TEST_CASE("a source directory that cannot be listed: the target keeps what is in it, at the first start and at a restart") {
    Fixture f;
    Disk d(f, f.src);
    auto stop = ScopeGuard([&]() noexcept { f.proc.reset(); });
    ::mkdir(f.s("certs").c_str(), 0755);
    test::write_file(f.s("certs/a.pem"), "a");
    test::write_file(f.s("top"), "t");
    // The target already holds the directory (the switch from lsyncd); the source cannot list it.
    ::mkdir((f.dst + "/certs").c_str(), 0755);
    test::write_file(f.dst + "/certs/a.pem", "a");
    test::write_file(f.dst + "/certs/old.pem", "only here");
    d.fs->fail("readdir", "EIO", "certs");
    f.start();
    CHECK(test::read_file(f.dst + "/top") == "t");
    CHECK(f.logs().find("read directory \"certs\": Input/output error") != std::string::npos);
    // Before, the mirror's initial prune removed both: "certs" was known, nothing in it.
    CHECK_MESSAGE(test::exists(f.dst + "/certs/a.pem"), f.logs());
    CHECK(test::exists(f.dst + "/certs/old.pem"));
    // The disk recovers: the directory is read again and changes in it flow. (old.pem, an extra
    // kept through that initial sync, would stay until the next full sync; rsync would drop it
    // at its next run. Removed here, so the trees can be compared at the end.)
    d.fs->clear();
    ::unlink((f.dst + "/certs/old.pem").c_str());
    test::write_file(f.s("certs/b.pem"), "b");
    REQUIRE_MESSAGE(test::wait_for(f.dst + "/certs", "b.pem"), f.logs());
    CHECK(test::read_file(f.dst + "/certs/a.pem") == "a");
    // A restart that cannot list it: nothing in it goes as a delete.
    CHECK(f.proc->stop(SIGTERM) == 128 + SIGTERM);
    d.fs->fail("readdir", "EIO", "certs");
    const size_t before = f.logs().size();
    f.start();
    test::write_file(f.s("after"), "x");
    REQUIRE_MESSAGE(test::wait_for(f.dst, "after"), f.logs());
    CHECK(f.logs().find("read directory \"certs\": Input/output error", before) != std::string::npos);
    CHECK(test::read_file(f.dst + "/certs/a.pem") == "a");
    CHECK(test::read_file(f.dst + "/certs/b.pem") == "b");
    d.fs->clear();
    f.settled();
  }

  TEST_CASE("EIO at the target's fsync: the new version is never renamed over the old - others flow - it lands once the disk recovers") {
    Fixture f;
    Disk d(f, f.dst);
    auto stop = ScopeGuard([&]() noexcept { f.proc.reset(); });
    test::write_file(f.s("victim"), "old");
    f.start();
    f.converged();
    d.fs->fail("fsync", "EIO", "victim");
    const size_t before = f.logs().size();
    test::write_file(f.s("victim"), "new");
    test::write_file(f.s("beside"), "b");
    REQUIRE_MESSAGE(test::wait_for_text(f.log, "fsync \"victim\": Input/output error", before), f.logs());
    REQUIRE(test::wait_for(f.dst, "beside"));
    CHECK(test::read_file(f.dst + "/victim") == "old");
    for (const auto& n : test::list_dir(d.backing)) CHECK_MESSAGE(n.rfind(".syncd.", 0) != 0, n);
    d.fs->clear();
    f.settled();  // the retry (backoff from 1 s) applies it
    CHECK(test::read_file(f.dst + "/victim") == "new");
  }
}
