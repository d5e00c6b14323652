// End to end over a real OpenSSH sshd on 127.0.0.1 (tests/support/sshd.h): the real
// `syncd -nodaemon -rsyncssh SRC 127.0.0.1 DST` pushing through an ssh client process to
// `syncd attach DST`, real inotify, real owners and modes (as root). Barriers are cookie files
// arriving in DST and log lines; no sleeps.
#include <doctest/doctest.h>

#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "lib/base/scope_guard.h"
#include "lib/store/sqlite.h"
#include "tests/support/netns.h"
#include "tests/support/faultfs.h"
#include "tests/support/process.h"
#include "tests/support/rss.h"
#include "tests/support/sshd.h"
#include "tests/support/tmpdir.h"
#include "tests/support/tree_diff.h"
#include "tests/support/wakeups.h"

using namespace syncd;

namespace {


struct Fixture {
  std::string transport;
  test::TempDir t{"push"};
  std::string src = t / "src", dst = t / "dst", log = t / "syncd.log";
  test::SshServer sshd{t / "sshd"};
  std::unique_ptr<test::Child> proc;
  std::vector<std::string> extra;  // more arguments for the pusher
  std::vector<std::string> wrapper;  // a command that runs the pusher (e.g. in its own mount namespace)
  std::string remote_syncd = SYNCD_BINARY;
  bool remote_default_state = false;  // no -remote-statedir: attach's default
  int cookies = 0;
  explicit Fixture(std::string tr) : transport(std::move(tr)) {
    test::require_root();
    ::mkdir(src.c_str(), 0755);
    ::mkdir(dst.c_str(), 0755);
    sshd.start();
  }
  std::vector<std::string> argv(const std::string& rsh) const {
    std::vector<std::string> a = wrapper;
    a.insert(a.end(), {SYNCD_BINARY, "-nodaemon", "-rsyncssh", src, "127.0.0.1", dst, "-statedir", t / "state", "-rsh", rsh,
                       "-remote-syncd", remote_syncd, "-transport", transport, "-rundir", t / "run"});
    if (!remote_default_state) a.insert(a.end(), {"-remote-statedir", t / "remote-state"});
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
  // Starts the push; with `wait_startup`, returns once the peer acknowledged the initial sync.
  void start(const std::string& rsh = {}, bool wait_startup = true) {
    const size_t before = logs().size();
    proc = std::make_unique<test::Child>(argv(rsh.empty() ? sshd.rsh() : rsh), log);
    if (wait_startup) {
      REQUIRE_MESSAGE(test::wait_for_text(log, "finished: 0", before), "no startup line; log:\n" << logs());
    }
  }
  std::string s(const std::string& rel) const { return src + "/" + rel; }
  std::string logs() const { return test::exists(log) ? test::read_file(log) : std::string(); }
  void converged() {
    std::vector<std::string> diff;
    REQUIRE_MESSAGE(test::cookie_barrier(src, dst, "cookie." + std::to_string(++cookies), diff, 60000, true),
                    "cookie never arrived; syncd log:\n" << logs());
    for (const auto& d : diff) MESSAGE(d);
    CHECK_MESSAGE(diff.empty(), "trees differ; syncd log:\n" << logs());
  }
  void sh(const std::string& cmd) { REQUIRE_MESSAGE(test::run(cmd) == 0, cmd); }
  // After a reconnect the peer is sent everything after its watermark in path order, so a cookie
  // is a barrier only once that catch-up is acknowledged: wait for the n-th one first.
  void caught_up(size_t n) {
    REQUIRE_MESSAGE(test::wait_until(t.path(), [&] { return test::count_text(log, "127.0.0.1 caught up") >= n; }, 60000),
                    "no catch-up #" << n << "; log:\n" << logs());
  }
  // No syncd temp file left anywhere under DST.
  bool no_temps() const { return test::run("test -z \"$(find " + dst + " -name '.syncd.*')\"") == 0; }
};

}  // namespace

namespace {

void initial_sync(const std::string& transport) {
  Fixture f(transport);
  test::make_sample_tree(f.src);
  f.sh("head -c 3000000 /dev/urandom > " + f.s("big.bin"));
  test::write_file(f.dst + "/stale", "old");
  // The root's own owner, mode and mtime travel too (ROOT_META), as rsync -a gives them.
  f.sh("chown 1234:2345 " + f.src + " && chmod 0750 " + f.src + " && touch -d '2019-05-05 05:05:05' " + f.src);
  f.start();
  f.converged();
  CHECK_FALSE(test::exists(f.dst + "/stale"));
  auto root_of = [](const std::string& d) {
    struct stat st {};
    REQUIRE(::stat(d.c_str(), &st) == 0);
    return std::make_tuple(st.st_mode & 07777, st.st_uid, st.st_gid, st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
  };
  // No ACK for it: the barrier is the target root changing (inotify on the watched directory).
  CHECK_MESSAGE(test::wait_until(f.dst, [&] { return root_of(f.dst) == root_of(f.src); }, 20000), f.logs());
  CHECK(std::get<0>(root_of(f.dst)) == 0750);
}

void live_changes(const std::string& transport) {
  Fixture f(transport);
  test::write_file(f.s("a"), "one");
  f.sh("head -c 2000000 /dev/urandom > " + f.s("big.bin"));
  f.start();
  f.converged();
  test::write_file(f.s("a"), "two");
  f.sh("echo more >> " + f.s("a"));
  test::write_file(f.s("t"), "long content here");
  f.sh("truncate -s 4 " + f.s("t"));
  f.sh("chmod 640 " + f.s("a") + " && chown 42:43 " + f.s("t"));
  f.sh("touch -d '1999-09-09 09:09:09.5' " + f.s("t"));
  f.sh("ln -s a " + f.s("l") + " && ln " + f.s("a") + " " + f.s("hard"));
  f.sh("mkdir -p " + f.s("d1/d2/d3") + " && echo deep > " + f.s("d1/d2/d3/f"));
  f.sh("printf 'edit' | dd of=" + f.s("big.bin") + " bs=1 seek=1000000 conv=notrunc status=none");  // delta path
  f.converged();
  f.sh("mv " + f.s("d1") + " " + f.s("moved") + " && mv " + f.s("a") + " " + f.s("b") + " && rm " + f.s("t"));
  f.converged();
  CHECK_FALSE(test::exists(f.dst + "/d1"));
}

// As after lsyncd was stopped for a while: the target holds an older copy of a big file. Over
// ssh to `attach` too, the file goes as a delta against that copy (the target's signature asked
// for), never whole; a cookie can overtake that second round trip, so the barrier is the cookie,
// then the pusher idle (nothing in flight or asked), then another cookie and the comparison.
void stale_target(const std::string& transport) {
  Fixture f(transport);
  f.sh("head -c 3000000 /dev/urandom > " + f.s("big.bin"));
  f.sh("cp -a " + f.src + "/. " + f.dst + "/");
  f.sh("printf 'changed while lsyncd was stopped' | dd of=" + f.s("big.bin") +
       " bs=1 seek=1500000 conv=notrunc status=none && printf 'and a tail' >> " + f.s("big.bin"));
  ::setenv("SPDLOG_LEVEL", "runtime=debug,info", 1);
  f.start();
  ::unsetenv("SPDLOG_LEVEL");
  std::vector<std::string> first;
  REQUIRE(test::cookie_barrier(f.src, f.dst, "cookie." + std::to_string(++f.cookies), first, 60000, true));
  REQUIRE_MESSAGE(test::run(std::string(SYNCD_BINARY) + " status '" + f.src + "' -rundir '" + f.t / "run" +
                            "' --wait-idle 60000 > /dev/null") == 0, f.logs());
  f.converged();
  CHECK(test::count_text(f.log, "asking for its signature") == 1);
  CHECK(test::count_text(f.log, "path=big.bin body=2") == 1);
  CHECK(test::count_text(f.log, "path=big.bin body=1") == 0);
}

void wrong_host_key(const std::string& transport) {
  Fixture f(transport);
  test::write_file(f.s("secret"), "CA KEY");
  f.start(f.sshd.rsh({}, f.sshd.wrong_known_hosts()), false);
  REQUIRE_MESSAGE(test::wait_for_text(f.log, "lost 127.0.0.1", 0), f.logs());
  const std::string l = f.logs();
  CHECK(l.find("HOST IDENTIFICATION HAS CHANGED") != std::string::npos);
  CHECK(l.find("Host key verification failed") != std::string::npos);
  CHECK_FALSE(test::exists(f.dst + "/secret"));
  CHECK(l.find("finished: 0") == std::string::npos);
}

void unknown_client_key(const std::string& transport) {
  Fixture f(transport);
  const std::string key = f.sshd.new_unlisted_key("stranger");
  f.start(f.sshd.rsh(key), false);
  // Three failed sessions: the waits between them grow (backoff 250 ms, 500 ms, ... with jitter).
  const auto t0 = std::chrono::steady_clock::now();
  REQUIRE_MESSAGE(test::wait_until(f.t.path(), [&] { return test::count_text(f.log, "lost 127.0.0.1") >= 3; }),
                  f.logs());
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::string l = f.logs();
  CHECK(l.find("Permission denied (publickey)") != std::string::npos);
  CHECK(test::count_text(f.log, "connecting to 127.0.0.1") <= 4);
  CHECK(secs >= 0.125 + 0.25);  // at least the two minimum jittered waits
  CHECK_FALSE(test::exists(f.dst + "/cookie.1"));
}

void sshd_restarted(const std::string& transport) {
  Fixture f(transport);
  f.start();
  f.converged();
  for (int i = 0; i < 300; ++i) test::write_file(f.s("burst" + std::to_string(i)), std::string(1500, 'x'));
  f.sshd.stop();  // listener and the live session
  for (int i = 300; i < 600; ++i) test::write_file(f.s("burst" + std::to_string(i)), std::string(1500, 'y'));
  REQUIRE_MESSAGE(test::wait_for_text(f.log, "lost 127.0.0.1", 0), f.logs());
  f.sshd.start();
  f.caught_up(2);
  f.converged();
  CHECK(test::count_text(f.log, "connected to 127.0.0.1") >= 2);
  CHECK(f.no_temps());
}

void attach_killed(const std::string& transport) {
  Fixture f(transport);
  f.start();
  f.converged();
  f.sh("head -c 60000000 /dev/urandom > " + f.s("huge.bin"));
  // Kill the remote side while the 60 MB body is in flight (its temp file exists).
  REQUIRE(test::wait_until(f.dst, [&] { return !f.no_temps() || test::exists(f.dst + "/huge.bin"); }, 60000));
  // This test's attach only ("[a]" keeps the pattern from matching the shell running pkill).
  f.sh("pkill -KILL -f '[a]ttach " + f.dst + "'");
  CHECK_FALSE(test::exists(f.dst + "/huge.bin.partial"));
  if (test::exists(f.dst + "/huge.bin")) {
    // Whatever is visible under the real name is complete (renamed into place only when whole).
    CHECK(test::read_file(f.dst + "/huge.bin") == test::read_file(f.s("huge.bin")));
  }
  f.caught_up(2);
  f.converged();
  CHECK(f.no_temps());
}

void idle_sleeps(const std::string& transport) {
  Fixture f(transport);
  // A mount or unmount anywhere wakes both ends once (each checks that its root is still the
  // directory it opened: root_guard.h); other tests' mounts are not this test's business, so
  // each end gets a mount namespace of its own.
  f.wrapper = {"/usr/bin/unshare", "--mount", "--propagation", "private", "--"};
  f.remote_syncd = f.t / "syncd-private-mounts";
  test::write_file(f.remote_syncd, "#!/bin/sh\nexec /usr/bin/unshare --mount --propagation private -- " SYNCD_BINARY " \"$@\"\n");
  REQUIRE(::chmod(f.remote_syncd.c_str(), 0755) == 0);
  test::write_file(f.s("a"), std::string(3 << 20, 'x'));
  // Keepalives are the one wake-up an idle push has (every 10 s by default): pushed out of the
  // window measured here.
  f.start(f.sshd.rsh() + " -o ServerAliveInterval=600");
  f.converged();
  REQUIRE(test::run(std::string(SYNCD_BINARY) + " status '" + f.src + "' -rundir '" + f.t / "run" + "' --wait-idle 30000 > /dev/null") == 0);
  const std::string pids = f.t / "attach.pid";
  f.sh("pgrep -f '[a]ttach " + f.dst + "' > " + pids);
  const pid_t attach = static_cast<pid_t>(std::atol(test::read_file(pids).c_str()));
  REQUIRE(attach > 0);
  // Not a wait for sync (the barrier above was): only a stretch of time shows that nothing
  // happens. The first pause lets the status query's own session end.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto pusher0 = test::wakeups(f.proc->pid()), attach0 = test::wakeups(attach);
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  const auto pusher1 = test::wakeups(f.proc->pid()), attach1 = test::wakeups(attach);
  REQUIRE(pusher0.size() > 1);
  REQUIRE(!attach0.empty());
  CHECK_MESSAGE(pusher1 == pusher0, "the pusher woke while idle; before:\n" << test::describe(pusher0) << "after:\n" << test::describe(pusher1));
  CHECK_MESSAGE(attach1 == attach0, "attach woke while idle; before:\n" << test::describe(attach0) << "after:\n" << test::describe(attach1));
}

}  // namespace

// Every case runs over both transports (issue #4: both pass the same tests).
#define BOTH_TRANSPORTS(name, fn)                 \
  TEST_CASE(name " (libssh2)") { fn("libssh2"); } \
  TEST_CASE(name " (openssh)") { fn("openssh"); }

TEST_SUITE("integration.ssh") {
  BOTH_TRANSPORTS("initial sync over ssh copies a tree with owners - modes - symlinks", initial_sync)
  BOTH_TRANSPORTS("live changes of every kind arrive over ssh", live_changes)
  BOTH_TRANSPORTS("a target holding an older copy of a big file gets a delta against it over ssh, never the whole file", stale_target)
  BOTH_TRANSPORTS("a wrong host key is refused with the reason - nothing is sent", wrong_host_key)
  BOTH_TRANSPORTS("an unknown client key is an auth error with backoff - no retry storm", unknown_client_key)
  BOTH_TRANSPORTS("sshd killed and restarted mid-burst - the push reconnects and the trees end equal", sshd_restarted)
  BOTH_TRANSPORTS("the peer's attach killed -9 mid-transfer - no partial file - equal after reconnect", attach_killed)
  BOTH_TRANSPORTS("an idle push sleeps at both ends: no thread of the pusher or of attach wakes", idle_sleeps)
}

TEST_SUITE("integration.ssh") {
  TEST_CASE("syncd attach run by hand with a file as stdin says why and exits 255 - no crash - nothing made") {
    test::require_root();
    test::TempDir t{"attach-stdin"};
    const std::string dst = t / "dst", state = t / "state", err = t / "stderr";
    // Before: the loop could not poll /dev/null, and attach aborted (a core dump).
    const int rc = test::run(std::string(SYNCD_BINARY) + " attach " + dst + " -statedir " + state + " < /dev/null 2> " + err);
    CHECK(rc == 255);
    CHECK_MESSAGE(test::read_file(err).find("stdin is not a pipe or socket") != std::string::npos, test::read_file(err));
    CHECK_FALSE(test::exists(dst));
    CHECK_FALSE(test::exists(state));
  }

  TEST_CASE("auto transport: an RSA key goes through the OpenSSH client and says why - ed25519 through libssh2") {
    Fixture f("auto");
    const std::string rsa = f.sshd.dir() + "/id_rsa";
    f.sh("ssh-keygen -q -t rsa -b 2048 -N '' -C rsa -f " + rsa + " && cat " + rsa + ".pub >> " + f.sshd.dir() + "/authorized_keys");
    test::write_file(f.s("cert.pem"), "CERT");
    f.start(f.sshd.rsh(rsa));
    f.converged();
    CHECK(f.logs().find("OpenSSH client, because " + rsa + " is an RSA key") != std::string::npos);
    f.proc.reset();
    const size_t before = f.logs().size();
    f.start();  // the fixture's ed25519 key
    CHECK(f.logs().find("transport to 127.0.0.1: libssh2", before) != std::string::npos);
    f.converged();
  }
}

TEST_SUITE("integration.ssh") {
  TEST_CASE("a record the pusher's index cannot read: each session ends with the reason, the target keeps everything, a fresh index recovers") {
    Fixture f("libssh2");
    for (int i = 100; i < 120; ++i) test::write_file(f.s("f" + std::to_string(i)), "content " + std::to_string(i));
    f.start();
    f.converged();
    CHECK(f.proc->stop(SIGTERM) == 128 + SIGTERM);
    std::string db_path;
    for (const auto& e : std::filesystem::recursive_directory_iterator(f.t / "state")) {
      if (e.path().filename() == "index.db") db_path = e.path();
    }
    REQUIRE(!db_path.empty());
    {
      auto db = store::Db::open(db_path);
      REQUIRE(db.ok());
      REQUIRE(db->exec("UPDATE files SET record = x'ff00' WHERE path = CAST('f105' AS BLOB)").ok());
    }
    f.sh("rm -rf " + f.t / "remote-state");  // the target asks for everything, with the startup delete
    const size_t before = f.logs().size();
    f.start({}, false);
    // Not once: each redial (with backoff) reads the index again and ends the same way.
    CHECK_MESSAGE(test::wait_until(f.t.path(), [&] {
                    return test::count_text(f.log, "answering the peer's index request") >= 2;
                  }),
                  f.logs());
    CHECK(f.logs().find("finished: 0", before) == std::string::npos);
    for (int i = 100; i < 120; ++i) {
      const std::string name = f.dst + "/f" + std::to_string(i);
      CHECK_MESSAGE((test::exists(name) && test::read_file(name) == "content " + std::to_string(i)), name);
    }
    // The operator's way out: the damaged index goes, the daemon rescans and announces anew.
    f.proc.reset();
    f.sh("rm -rf " + f.t / "state");
    test::write_file(f.s("after"), "new");
    f.start();
    f.converged();
  }

  TEST_CASE("a peer whose state disk is full fails every file the same way: said once per window, not a line per file and retry - nothing lost once there is room") {
    // 300 files failing their apply on the peer wrote two lines each on every retry round
    // (about a thousand lines a second here), into logs that may sit on that full disk.
    Fixture f("libssh2");
    const std::string vol = f.t / "remote-state";
    ::mkdir(vol.c_str(), 0700);
    f.sh("mount -t tmpfs -o size=4m syncd-rstate " + vol);
    auto unmount = ScopeGuard([&]() noexcept { (void)test::run("umount -l " + vol); });
    f.start();
    f.converged();
    f.sh("dd if=/dev/zero of=" + vol + "/fill bs=4k status=none 2>/dev/null || true");
    const size_t before = f.logs().size();
    constexpr int kFiles = 300;
    for (int i = 0; i < kFiles; ++i) test::write_file(f.s("f" + std::to_string(i)), std::to_string(i));
    const std::string status = f.t / "status.json";
    // Barrier: every one of them failed on the peer once (status counts the paths to retry).
    REQUIRE_MESSAGE(test::wait_until(f.t.path(), [&] {
                      f.sh(std::string(SYNCD_BINARY) + " status '" + f.src + "' -rundir '" + f.t / "run" + "' --json > " + status);
                      return test::read_file(status).find("\"retrying\": " + std::to_string(kFiles)) != std::string::npos;
                    }, 60000),
                    f.logs());
    const std::string during = f.logs().substr(before);
    CHECK_MESSAGE(test::count_text(f.log, "peer could not apply") <= 2, during.substr(0, 3000));
    CHECK_MESSAGE(test::count_text(f.log, "again in") <= 2, during.substr(0, 3000));
    CHECK(during.find("No space left on device") != std::string::npos);  // said, with the cause
    f.sh("rm " + vol + "/fill");
    f.sh(std::string(SYNCD_BINARY) + " status '" + f.src + "' -rundir '" + f.t / "run" + "' --wait-idle 120000 > /dev/null");
    f.converged();
  }
}

namespace {

void large_files_stream(const std::string& transport) {
  Fixture f(transport);
  f.start();
  f.converged();
  // 300 MB: streamed from disk in 1 MiB chunks on both ends, never held whole in memory.
  f.sh("head -c 300000000 /dev/urandom > " + f.t / "stage.bin && mv " + f.t / "stage.bin " + f.s("big.bin"));
  f.converged();
  test::check_peak_rss(f.proc->pid(), 160, "pusher after a 300 MB file");
  // A small edit in the middle travels as a delta; a rewrite of most of it falls back to whole.
  f.sh("printf 'EDITED' | dd of=" + f.s("big.bin") + " bs=1 seek=150000000 conv=notrunc status=none");
  f.converged();
  f.sh("head -c 200000000 /dev/urandom | dd of=" + f.s("big.bin") + " conv=notrunc status=none");
  f.converged();
}

}  // namespace

TEST_SUITE("integration.ssh") {
  BOTH_TRANSPORTS("large files stream with bounded memory - deltas and rewrites of a 300 MB file", large_files_stream)
}

namespace {

// A source on a disk that returns EIO (the FUSE fault injector over SRC): the target keeps its
// copy of what cannot be read (UNREADABLE, over ssh to attach) and gets it once it can be; then,
// restarted on a source that looks unmounted, the push deletes nothing (the mass-delete brake).
void source_faults(const std::string& transport) {
  Fixture f(transport);
  const std::string disk = f.t / "src.disk";
  ::mkdir(disk.c_str(), 0755);
  test::FaultFs fs(disk, f.src, f.t.path());
  auto stop = ScopeGuard([&]() noexcept { f.proc.reset(); });  // the pusher goes before the mount
  for (int i = 0; i < 4; ++i) test::write_file(f.s("cert" + std::to_string(i)), "cert " + std::to_string(i));
  test::write_file(f.s("victim"), "new content");
  test::write_file(f.dst + "/victim", "old copy");
  fs.fail("read", "EIO", "victim");
  f.start();
  CHECK(test::read_file(f.dst + "/cert0") == "cert 0");
  CHECK_MESSAGE(test::read_file(f.dst + "/victim") == "old copy", f.logs());
  fs.clear();
  CHECK_MESSAGE(test::wait_until(f.dst, [&] {
    return test::exists(f.dst + "/victim") && test::read_file(f.dst + "/victim") == "new content";
  }, 30000), f.logs());
  f.converged();
  CHECK(f.proc->stop(SIGTERM) == 128 + SIGTERM);
  f.sh("rm -f " + f.src + "/cert* " + f.src + "/victim");
  const size_t before = f.logs().size();
  f.start();
  test::write_file(f.s("after"), "x");
  REQUIRE_MESSAGE(test::wait_for(f.dst, "after", 30000), f.logs());
  CHECK_MESSAGE(f.logs().find("MASS-DELETE BRAKE", before) != std::string::npos, f.logs());
  CHECK(test::exists(f.dst + "/cert0"));
  CHECK(test::exists(f.dst + "/victim"));
}

// Someone works in the target while the push is stopped: the next session repairs it (the peer's
// receiver finds its tree is not what it wrote and asks for a full sync).
void target_drift(const std::string& transport) {
  Fixture f(transport);
  for (const char* n : {"a.pem", "b.pem", "c.pem"}) test::write_file(f.s(n), n);
  f.start();
  f.converged();
  CHECK(f.proc->stop(SIGTERM) == 128 + SIGTERM);
  f.sh("rm " + f.dst + "/a.pem && printf 'B.pem' > " + f.dst + "/b.pem && touch -d '2001-01-01' " + f.dst +
       "/b.pem && echo x > " + f.dst + "/stray");
  f.start();
  f.converged();  // equal again: a.pem back, b.pem's content, the stray file gone
  CHECK(test::read_file(f.dst + "/b.pem") == "b.pem");
}

// The target's volume did not mount on the peer while the push was stopped: `attach` writes
// nothing into the directory below it and says why in every session (the pusher keeps redialing
// with backoff); once the volume is mounted again, the push resumes.
void target_unmounted(const std::string& transport) {
  Fixture f(transport);
  const std::string volume = f.t / "volume";
  ::mkdir(volume.c_str(), 0755);
  f.sh("mount --bind " + volume + " " + f.dst);
  auto unmount = ScopeGuard([&]() noexcept { (void)test::run("umount -l " + f.dst + " 2>/dev/null"); });
  for (const char* n : {"a.pem", "b.pem", "c.pem"}) test::write_file(f.s(n), n);
  f.start();
  f.converged();
  CHECK(f.proc->stop(SIGTERM) == 128 + SIGTERM);
  // The peer's `attach` has the target open until it exits, a moment after the pusher does and
  // sometimes after sshd's session ("umount: target is busy" without these waits).
  REQUIRE_MESSAGE(f.sshd.wait_sessions_ended(), "the peer's session did not end");
  REQUIRE_MESSAGE(test::wait_processes_exited("[a]ttach " + f.dst), "the peer's attach did not exit");
  f.sh("umount " + f.dst);
  test::write_file(f.s("while-stopped"), "x");
  const size_t before = f.logs().size();
  f.start({}, false);
  const std::string why = "was the root of a mounted filesystem when this node last wrote it (";
  REQUIRE_MESSAGE(test::wait_until(f.t.path(), [&] { return test::count_text(f.log, why) >= 2; }, 60000), f.logs());
  CHECK(f.logs().find("lost 127.0.0.1", before) != std::string::npos);
  CHECK(test::list_dir(f.dst).empty());
  f.sh("mount --bind " + volume + " " + f.dst);
  f.caught_up(2);
  f.converged();
  CHECK(test::exists(volume + "/while-stopped"));
}

// The target moved away and made again under a running session (a restore from backup): attach
// ends the session, and the next one fills the directory now at the path. Before, attach went on
// writing into the moved directory through the one it had opened, and the new one stayed empty.
void target_replaced(const std::string& transport) {
  Fixture f(transport);
  test::write_file(f.s("a.pem"), "a");
  f.start();
  f.converged();
  const std::string old = f.t / "dst.old";
  const size_t from = f.logs().size();
  REQUIRE(::rename(f.dst.c_str(), old.c_str()) == 0);
  ::mkdir(f.dst.c_str(), 0755);
  REQUIRE_MESSAGE(test::wait_for_text(f.log, "lost 127.0.0.1", from, 60000), f.logs());
  CHECK_MESSAGE(f.logs().find("the target " + f.dst + " is ", from) != std::string::npos, f.logs());
  test::write_file(f.s("b.pem"), "b");
  f.caught_up(2);
  f.converged();
  CHECK(test::read_file(f.dst + "/a.pem") == "a");
  CHECK(test::read_file(f.dst + "/b.pem") == "b");
  CHECK_FALSE(test::exists(old + "/b.pem"));
}

// The target directory is not the mirror's (an operator's typo: its parent, another tree): most
// of its files are unknown to the source. The peer's initial sync removes none of them — until
// the share allowed (sent to `attach`) covers them.
void wrong_target(const std::string& transport) {
  Fixture f(transport);
  test::write_file(f.s("a.pem"), "a");
  test::write_file(f.s("b.pem"), "b");
  test::write_file(f.dst + "/a.pem", "old a");
  for (int i = 0; i < 12; ++i) test::write_file(f.dst + "/app" + std::to_string(i) + ".py", "code");  // 12 of 14 once a, b are in
  f.start();
  std::vector<std::string> diff;  // the cookie is the barrier; the trees differ by the kept files
  REQUIRE_MESSAGE(test::cookie_barrier(f.src, f.dst, "cookie.kept", diff, 60000, true), f.logs());
  CHECK(test::read_file(f.dst + "/a.pem") == "a");  // what the source has arrives all the same
  CHECK(test::read_file(f.dst + "/b.pem") == "b");
  for (int i = 0; i < 12; ++i) CHECK_MESSAGE(test::exists(f.dst + "/app" + std::to_string(i) + ".py"), f.logs());
  // The peer says why in its log, which reaches this node's (its session's stderr).
  CHECK_MESSAGE(f.logs().find("MASS-DELETE BRAKE: the initial sync would remove 12 of the 14 files here") !=
                std::string::npos, f.logs());
  // A first start again (both state directories gone) with 90 % allowed: the peer prunes.
  CHECK(f.proc->stop(SIGTERM) == 128 + SIGTERM);
  f.sh("rm -rf " + f.t / "state" + " " + f.t / "remote-state");
  f.extra = {"-max-delete-share", "90"};
  f.start();
  f.converged();
  for (int i = 0; i < 12; ++i) CHECK_MESSAGE(!test::exists(f.dst + "/app" + std::to_string(i) + ".py"), f.logs());
}

void remote_syncd_missing(const std::string& transport) {
  Fixture f(transport);
  auto argv = f.argv(f.sshd.rsh());
  for (size_t i = 0; i + 1 < argv.size(); ++i) {
    if (argv[i] == "-remote-syncd") argv[i + 1] = "/nonexistent/syncd";
  }
  f.proc = std::make_unique<test::Child>(argv, f.log);
  REQUIRE_MESSAGE(test::wait_until(f.t.path(), [&] { return test::count_text(f.log, "lost 127.0.0.1") >= 1; }), f.logs());
  // The remote shell's complaint reaches the log: the operator sees why, not just "closed".
  CHECK_MESSAGE(f.logs().find("/nonexistent/syncd: No such file or directory") != std::string::npos, f.logs());
  // And, with libssh2, the remote shell's exit status (0 before: it was read before it arrived).
  if (transport == "libssh2") CHECK_MESSAGE(f.logs().find("exit status 127") != std::string::npos, f.logs());
}

}  // namespace

TEST_SUITE("integration.ssh") {
  BOTH_TRANSPORTS("a missing remote syncd is reported with the remote shell's reason", remote_syncd_missing)
  BOTH_TRANSPORTS("a target changed while the push was stopped is repaired by the next session", target_drift)
  BOTH_TRANSPORTS("a target whose volume is not mounted on the peer gets nothing written below it - the push resumes once it is mounted", target_unmounted)
  BOTH_TRANSPORTS("a target moved away and made again under a running session - the next session fills the new directory", target_replaced)
  BOTH_TRANSPORTS("a first start into a target that is not the mirror's removes none of its files - unless the share allowed covers them", wrong_target)
  BOTH_TRANSPORTS("a source disk returning EIO: the target keeps its copy, then gets the file - a source that looks unmounted deletes nothing", source_faults)
}

namespace {

// Runs `syncd status ARGS`, returns {exit code, stdout}.
std::pair<int, std::string> status(Fixture& f, const std::string& args) {
  const std::string out = f.t / "status.out";
  const int rc = test::run(std::string(SYNCD_BINARY) + " status " + f.src + " -rundir " + f.t / "run" + " " + args + " > " + out);
  return {rc, test::exists(out) ? test::read_file(out) : std::string()};
}

void status_reports(const std::string& transport) {
  Fixture f(transport);
  f.start();
  for (int i = 0; i < 20; ++i) test::write_file(f.s("s" + std::to_string(i)), "status");
  // --wait-idle is a barrier: everything written before it is durable on the peer after it.
  auto [rc, j] = status(f, "--json --wait-idle 30000");
  CHECK(rc == 0);
  CHECK(j.find("\"idle\": true") != std::string::npos);
  CHECK(j.find("\"connected\": true") != std::string::npos);
  CHECK(j.find("\"caught_up\": true") != std::string::npos);
  CHECK(j.find("\"transport\": \"" + transport + "\"") != std::string::npos);
  CHECK(j.find("\"n\": 0,") == std::string::npos);  // latency samples were taken
  CHECK(j.find("\"queued\": 0, \"awaiting_ack\": 0") != std::string::npos);
  for (int i = 0; i < 20; ++i) CHECK(test::exists(f.dst + "/s" + std::to_string(i)));
  auto [trc, text] = status(f, "");
  CHECK(trc == 0);
  CHECK(text.find("peer 127.0.0.1:" + f.dst + ": connected") != std::string::npos);
  CHECK(text.find("sync latency ms") != std::string::npos);
  // A file the peer cannot replace (immutable there): status names it and the peer's reason.
  const std::string stuck = f.dst + "/s0";
  REQUIRE(test::run("chattr +i " + stuck) == 0);
  auto writable = ScopeGuard([&]() noexcept { (void)test::run("chattr -i " + stuck); });
  const size_t before = test::read_file(f.log).size();
  test::write_file(f.s("s0"), "changed");
  REQUIRE_MESSAGE(test::wait_for_text(f.log, "will send s0 again", before), test::read_file(f.log));
  auto [frc, failing] = status(f, "");
  CHECK(frc == 0);
  CHECK_MESSAGE(failing.find("retrying: 1 (last failed: s0: ") != std::string::npos, failing);
  CHECK_MESSAGE(failing.find("Operation not permitted") != std::string::npos, failing);
  auto [fjrc, fj] = status(f, "--json");
  CHECK(fjrc == 0);
  CHECK_MESSAGE(fj.find("\"retrying\": 1, \"last_failure\": {\"path\": \"s0\"") != std::string::npos, fj);
  REQUIRE(test::run("chattr -i " + stuck) == 0);
  auto [rrc, recovered] = status(f, "--json --wait-idle 30000");  // the backoff's next try lands it
  CHECK(rrc == 0);
  CHECK_MESSAGE(recovered.find("\"retrying\": 0, \"last_failure\": null") != std::string::npos, recovered);
  CHECK(test::read_file(stuck) == "changed");
  // The peer's syncd hangs while SSH stays up (stopped here): nothing ends the session without
  // rsync.timeout, so status is where it shows: how long the peer has answered nothing.
  const std::string attach = "[a]ttach " + f.dst;  // "[a]": not the shell that runs pkill
  REQUIRE(test::run("pkill -STOP -f '" + attach + "'") == 0);
  struct Resume {
    std::string pattern;
    ~Resume() { (void)test::run("pkill -CONT -f '" + pattern + "'"); }
  } resume{attach};
  test::write_file(f.s("during-hang"), "waits");
  std::string quiet;
  REQUIRE_MESSAGE(test::wait_until(f.t.path(), [&] {
                    quiet = status(f, "").second;
                    return quiet.find("awaiting ack: 1 (no answer from the peer for ") != std::string::npos;  // shown from 5 s
                  }, 30000),
                  quiet);
  auto [qrc, qj] = status(f, "--json");
  CHECK(qrc == 0);
  CHECK_MESSAGE(qj.find("\"awaiting_ack\": 1, \"unanswered_s\": ") != std::string::npos, qj);
  CHECK(qj.find("\"unanswered_s\": 0") == std::string::npos);
  REQUIRE(test::run("pkill -CONT -f '" + attach + "'") == 0);
  auto [arc, answered] = status(f, "--json --wait-idle 30000");
  CHECK(arc == 0);
  CHECK_MESSAGE(answered.find("\"awaiting_ack\": 0, \"unanswered_s\": 0") != std::string::npos, answered);
  CHECK(test::read_file(f.dst + "/during-hang") == "waits");
  // The link goes: status says so, with the reason.
  const size_t up_to = f.logs().size();
  f.sshd.stop();
  REQUIRE(test::wait_for_text(f.log, "lost 127.0.0.1", 0));
  if (transport == "openssh") {
    // The redial's reason is ssh's own line, once ("(ssh: ssh: connect to ..." before).
    REQUIRE_MESSAGE(test::wait_for_text(f.log, "(ssh: connect to host 127.0.0.1 port ", up_to), f.logs());
    CHECK_MESSAGE(f.logs().find("ssh: ssh:") == std::string::npos, f.logs());
  }
  auto [drc, down] = status(f, "--json");
  CHECK(drc == 0);
  CHECK(down.find("\"connected\": false") != std::string::npos);
  CHECK(down.find("\"last_error\": \"\"") == std::string::npos);
  auto [wrc, w] = status(f, "--json --wait-idle 200");
  CHECK(wrc == 1);  // not idle while disconnected
  // No daemon for another directory.
  CHECK(test::run(std::string(SYNCD_BINARY) + " status " + f.dst + " -rundir " + f.t / "run" + " 2>/dev/null") == 3);
}

}  // namespace

TEST_SUITE("integration.ssh") {
  BOTH_TRANSPORTS("syncd status reports peers - state - latency - and --wait-idle is a barrier", status_reports)
}

namespace {

// Two hosts as network namespaces: syncd in A pushes to sshd in B over a veth pair; the wire is
// cut for a while and restored; what was written meanwhile arrives, and the trees end equal.
void link_cut(const std::string& transport) {
  test::require_root();
  test::NetnsPair net;  // first: torn down last, after every process in it
  test::TempDir t{"netns"};
  const std::string src = t / "src", dst = t / "dst", log = t / "syncd.log", run = t / "run";
  ::mkdir(src.c_str(), 0755);
  ::mkdir(dst.c_str(), 0755);
  test::SshServer sshd(t / "sshd", {net.b(), net.addr_b(), 2222});
  sshd.start();
  test::write_file(src + "/before", "before the cut");
  test::Child proc({"/usr/sbin/ip", "netns", "exec", net.a(), SYNCD_BINARY, "-nodaemon", "-rsyncssh", src, net.addr_b(), dst,
                    "-statedir", t / "state", "-rsh", sshd.rsh(), "-remote-syncd", SYNCD_BINARY, "-remote-statedir",
                    t / "remote-state", "-transport", transport, "-rundir", run},
                   log);
  auto logs = [&] { return test::exists(log) ? test::read_file(log) : std::string(); };
  REQUIRE_MESSAGE(test::wait_for_text(log, "finished: 0", 0), logs());
  const std::string status = std::string(SYNCD_BINARY) + " status " + src + " -rundir " + run + " --wait-idle ";
  REQUIRE(test::run(status + "30000 >/dev/null") == 0);
  net.set_link(false);
  for (int i = 0; i < 50; ++i) test::write_file(src + "/during" + std::to_string(i), std::string(3000, 'd'));
  test::write_file(src + "/before", "changed during the cut");
  // While the wire is down nothing can be acknowledged: the daemon stays busy.
  CHECK(test::run(status + "1500 >/dev/null") == 1);
  CHECK_FALSE(test::exists(dst + "/during49"));
  net.set_link(true);
  REQUIRE_MESSAGE(test::run(status + "120000 >/dev/null") == 0, logs());
  auto diff = test::tree_diff(src, dst, {}, true);
  for (const auto& d : diff) MESSAGE(d);
  CHECK_MESSAGE(diff.empty(), logs());
}

}  // namespace

TEST_SUITE("integration.ssh") {
  BOTH_TRANSPORTS("two hosts as network namespaces - the link is cut and restored - nothing is lost", link_cut)
}

namespace {

bool ipv6_loopback() {
  const int fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// The peer named by an IPv6 literal, and by a DNS name, as lsyncd users write host = "...".
void addresses(const std::string& transport) {
  test::require_root();
  for (const std::string& name : {std::string("::1"), std::string("localhost")}) {
    CAPTURE(name);
    if (name == "::1" && !ipv6_loopback()) {
      MESSAGE("this machine has no IPv6 loopback: only the DNS name is tested");
      continue;
    }
    test::TempDir t{"addr"};
    const std::string src = t / "src", dst = t / "dst", log = t / "syncd.log";
    ::mkdir(src.c_str(), 0755);
    ::mkdir(dst.c_str(), 0755);
    test::SshServer sshd(t / "sshd", {"", name == "::1" ? "::1" : "127.0.0.1", 0});
    sshd.start();
    // known_hosts names the host the way it is dialled.
    std::string line = test::read_file(sshd.known_hosts());
    line = "[" + name + "]" + line.substr(line.find(']') + 1);
    test::write_file(t / "kh", line);
    test::write_file(src + "/hello", "over " + name);
    test::Child proc({SYNCD_BINARY, "-nodaemon", "-rsyncssh", src, name, dst, "-statedir", t / "state", "-rsh",
                      sshd.rsh({}, t / "kh"), "-remote-syncd", SYNCD_BINARY, "-remote-statedir", t / "rstate",
                      "-transport", transport, "-rundir", t / "run"},
                     log);
    REQUIRE_MESSAGE(test::wait_for_text(log, "finished: 0", 0), test::read_file(log));
    CHECK(test::read_file(dst + "/hello") == "over " + name);
  }
}

}  // namespace

TEST_SUITE("integration.ssh") {
  BOTH_TRANSPORTS("an IPv6 literal and a DNS name reach the peer", addresses)

  TEST_CASE("StrictHostKeyChecking=accept-new on an account with no ~/.ssh: the key is added there - a path that cannot be written only warns, as with OpenSSH") {
    // The native transport refused every session ("open ~/.ssh/known_hosts to add a host key:
    // No such file or directory") where OpenSSH makes ~/.ssh, or, for a path it cannot write,
    // says so and connects. (libssh2 only: OpenSSH takes ~ from the password database, not
    // $HOME, so its half would write root's own file.)
    Fixture f("libssh2");
    const std::string home = f.t / "home";
    ::mkdir(home.c_str(), 0755);
    f.wrapper = {"/usr/bin/env", "HOME=" + home};
    const std::string base = "ssh -p " + std::to_string(f.sshd.port()) + " -i " + f.sshd.client_key() +
                             " -o StrictHostKeyChecking=accept-new -o GlobalKnownHostsFile=/dev/null";
    test::write_file(f.s("a"), "1");
    f.start(base);
    const std::string kh = test::read_file(home + "/.ssh/known_hosts");
    CHECK_MESSAGE(kh.find("[127.0.0.1]:" + std::to_string(f.sshd.port()) + " ssh-ed25519 ") == 0, kh);
    struct stat st{};
    REQUIRE(::stat((home + "/.ssh").c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0700);
    CHECK(f.proc->stop(SIGTERM) == 128 + SIGTERM);
    // A second start checks the stored key: nothing more is added.
    f.start(base);
    CHECK(test::read_file(home + "/.ssh/known_hosts") == kh);
    CHECK(test::count_text(f.log, "added host key") == 1);
    CHECK(f.proc->stop(SIGTERM) == 128 + SIGTERM);
    // A known_hosts in a directory that does not exist: warned, and the push goes on.
    test::write_file(f.s("b"), "2");
    f.start(base + " -o UserKnownHostsFile=" + f.t / "missing/known_hosts");
    CHECK(test::read_file(f.dst + "/b") == "2");
    CHECK(test::count_text(f.log, "could not add the host key") == 1);
    CHECK_FALSE(test::exists(f.t / "missing"));
    CHECK(f.proc->stop(SIGTERM) == 128 + SIGTERM);
  }

  TEST_CASE("a host name that is an alias in ~/.ssh/config (HostName, Port, IdentityFile, known_hosts) goes through the OpenSSH client - which applies it - and says why") {
    // lsyncd users write `host = "node2"` where node2 is a Host block of root's ~/.ssh/config.
    // The native session ignored ssh_config and dialed the bare name: it never connected.
    // root's real ~/.ssh/config gets one block for a name nothing else uses; it is put back as
    // it was (or removed with ~/.ssh, if the test made them) however the test ends.
    Fixture f("auto");
    const struct passwd* pw = ::getpwuid(0);
    REQUIRE(pw != nullptr);
    const std::string dot_ssh = std::string(pw->pw_dir) + "/.ssh", cfg = dot_ssh + "/config";
    const bool had_dir = test::exists(dot_ssh), had_cfg = test::exists(cfg);
    const std::string before = had_cfg ? test::read_file(cfg) : std::string();
    // Replaced whole (a rename): an ssh client of a test running alongside never reads half a file.
    auto replace_cfg = [&](const std::string& text) {
      std::ofstream(cfg + ".syncd-test", std::ios::trunc) << text;
      return ::chmod((cfg + ".syncd-test").c_str(), 0600) == 0 && ::rename((cfg + ".syncd-test").c_str(), cfg.c_str()) == 0;
    };
    auto restore = ScopeGuard([&]() noexcept {
      if (had_cfg) {
        (void)replace_cfg(before);
      } else {
        ::unlink(cfg.c_str());
      }
      if (!had_dir) ::rmdir(dot_ssh.c_str());
    });
    if (!had_dir) REQUIRE(::mkdir(dot_ssh.c_str(), 0700) == 0);
    const std::string alias = "syncd-test-alias-" + std::to_string(::getpid());
    // First in the file: ssh takes the first value it finds for each option.
    REQUIRE(replace_cfg("Host " + alias + "\n  HostName 127.0.0.1\n  Port " + std::to_string(f.sshd.port()) +
                        "\n  IdentityFile " + f.sshd.client_key() + "\n  UserKnownHostsFile " + f.sshd.known_hosts() +
                        "\n  StrictHostKeyChecking yes\n\n" + before));
    test::write_file(f.s("a"), "via the alias");
    // With a key on the command line, as most lsyncd configs have: without one, `auto` took the
    // OpenSSH client anyway (no key for the native session).
    auto argv = f.argv("ssh -i " + f.sshd.client_key());
    std::replace(argv.begin(), argv.end(), std::string("127.0.0.1"), alias);
    f.proc = std::make_unique<test::Child>(argv, f.log);
    REQUIRE_MESSAGE(test::wait_for_text(f.log, "finished: 0", 0), f.logs());
    CHECK(test::read_file(f.dst + "/a") == "via the alias");
    CHECK_MESSAGE(f.logs().find("OpenSSH client, because ssh_config sets hostname 127.0.0.1") != std::string::npos, f.logs());
    CHECK(f.proc->stop(SIGTERM) == 128 + SIGTERM);
  }

  TEST_CASE("a host whose key a CA vouches for (@cert-authority, a host certificate) goes through the OpenSSH client - forced libssh2 says why it refuses") {
    // Sites with an SSH CA list no host keys, only the CA. libssh2 has no certificates: the
    // native session found no key for the host and refused, saying nothing of the CA.
    test::TempDir t{"hostca"};
    test::SshServer::Where where;
    where.host_certificate = true;
    test::SshServer sshd(t / "sshd", where);
    sshd.start();
    const std::string rsh = sshd.rsh({}, sshd.ca_known_hosts());
    for (const std::string transport : {"auto", "libssh2"}) {
      CAPTURE(transport);
      const std::string n = transport, src = t / ("s-" + n), dst = t / ("d-" + n), log = t / (n + ".log");
      ::mkdir(src.c_str(), 0755);
      ::mkdir(dst.c_str(), 0755);
      test::write_file(src + "/a", "vouched");
      test::Child c({SYNCD_BINARY, "-nodaemon", "-rsyncssh", src, "127.0.0.1", dst, "-statedir", t / ("st-" + n), "-rsh", rsh,
                     "-remote-syncd", SYNCD_BINARY, "-remote-statedir", t / ("rst-" + n), "-transport", transport,
                     "-rundir", t / ("run-" + n)},
                    log);
      auto logs = [&] { return test::exists(log) ? test::read_file(log) : std::string(); };
      if (transport == "auto") {
        REQUIRE_MESSAGE(test::wait_for_text(log, "finished: 0", 0), logs());
        CHECK(test::read_file(dst + "/a") == "vouched");
        CHECK_MESSAGE(logs().find("OpenSSH client, because " + sshd.ca_known_hosts() + ":1 trusts a certificate authority") !=
                          std::string::npos,
                      logs());
      } else {
        REQUIRE_MESSAGE(test::wait_for_text(log, "lost 127.0.0.1", 0), logs());
        CHECK_MESSAGE(logs().find("trusts a certificate authority (@cert-authority) for it, and the libssh2 transport cannot "
                                  "check host certificates") != std::string::npos,
                      logs());
        CHECK_FALSE(test::exists(dst + "/a"));
      }
      CHECK(c.stop_within(SIGTERM, 30000) == 143);
    }
  }

  TEST_CASE("a peer where syncd never ran, logged in as a normal user: attach makes its default state directory - the tree arrives") {
    // attach's default state directory is /var/lib/syncd/attach-<hash>, whose parent only a
    // daemon made: on a host that only receives, every session failed with "create state
    // directory ...: No such file or directory" (as a normal user: Permission denied). A normal
    // user's now goes under ~/.local/state/syncd (XDG_STATE_HOME when set), parents made.
    Fixture f("libssh2");
    const std::string home = f.t / "home";
    f.sh("chmod 755 " + f.t.path() + " && mkdir " + home + " && chown nobody:nogroup " + home + " " + f.dst + " && cp " +
         SYNCD_BINARY + " " + f.t / "syncd" + " && chmod 755 " + f.t / "syncd");
    // The session's remote program, as the peer's login user would run it.
    test::write_file(f.t / "as-nobody.sh", "#!/bin/sh\nexec env -u XDG_STATE_HOME HOME='" + home +
                                                "' setpriv --reuid=nobody --regid=nogroup --clear-groups '" + f.t / "syncd" +
                                                "' \"$@\"\n");
    REQUIRE(::chmod((f.t / "as-nobody.sh").c_str(), 0755) == 0);
    f.remote_syncd = f.t / "as-nobody.sh";
    f.remote_default_state = true;
    test::write_file(f.s("a"), "arrives");
    f.start();
    CHECK(test::read_file(f.dst + "/a") == "arrives");
    struct stat st{};
    REQUIRE(::stat((f.dst + "/a").c_str(), &st) == 0);
    CHECK(st.st_uid == 65534u);
    const auto states = test::list_dir(home + "/.local/state/syncd");
    REQUIRE(states.size() == 1);
    CHECK(states[0].rfind("attach-", 0) == 0);
    CHECK(test::exists(home + "/.local/state/syncd/" + states[0] + "/index.db"));
    // Live changes go on through it.
    test::write_file(f.s("b"), "live");
    REQUIRE_MESSAGE(test::wait_for(f.dst, "b"), f.logs());
    CHECK(test::read_file(f.dst + "/b") == "live");
    CHECK(f.proc->stop(SIGTERM) == 128 + SIGTERM);
  }
}
