// Two-way sync between two real daemons over a real sshd on 127.0.0.1 (TWO-WAY.md, issue #5):
// node A runs `syncd -rsyncssh A 127.0.0.1 B -bidirectional`, node B the same the other way —
// the acme2certifier setup. Each push runs `syncd attach` on the other side, which joins that
// node's daemon through its control socket, so each tree has exactly one index and one writer.
// Concurrency is made real, not simulated: a node is stopped, both trees are changed, the node
// comes back (its startup scan turns the offline edits into versions) and the rules decide.
// Barriers: cookies both ways plus `syncd status --wait-idle` on both daemons; no sleeps.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "lib/base/scope_guard.h"
#include "lib/base/unique_fd.h"
#include "tests/support/faultfs.h"
#include "tests/support/netns.h"
#include "tests/support/process.h"
#include "tests/support/seeds.h"
#include "tests/support/sshd.h"
#include "tests/support/tmpdir.h"
#include "tests/support/tree_diff.h"

using namespace syncd;

namespace {

struct Node {
  std::string name, dir, state, run, log;
  std::unique_ptr<test::Child> proc;
};

// One pwrite of `text` at `at` inside the file at `path`: an edit in place (same inode), never
// seen half-written.
void edit_in_place(const std::string& path, const std::string& text, off_t at) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  REQUIRE_MESSAGE(fd, path);
  REQUIRE(::pwrite(fd.get(), text.data(), text.size(), at) == static_cast<ssize_t>(text.size()));
}

ino_t ino(const std::string& p);  // below: the inode at p (which must exist)

// A full mesh of `n` nodes on this machine: one tree, state dir, run dir and log each; every node
// pushes to every other one (the first as -rsyncssh, the rest as -peer).
struct Mesh {
  test::TempDir t{"twoway"};
  test::SshServer sshd{t / "sshd"};
  std::vector<std::unique_ptr<Node>> nodes;
  Node& a;
  Node& b;
  int cookies = 0;
  // Pairs of node names that are not each other's peers (start() leaves them out): a chain
  // a - b - c has {"a", "c"}, and b relays between them.
  std::set<std::pair<std::string, std::string>> unlinked;

  std::vector<std::string> mounted;  // mount points, lazily unmounted when the mesh goes

  explicit Mesh(int n = 2) : nodes(make_nodes(t, n)), a(*nodes[0]), b(*nodes[1]) {
    test::require_root();
    for (const auto& x : nodes) ::mkdir(x->dir.c_str(), 0755);
    sshd.start();
  }
  ~Mesh() {
    for (auto it = mounted.rbegin(); it != mounted.rend(); ++it) (void)test::run("umount -l " + *it + " 2>/dev/null");
  }
  Mesh(const Mesh&) = delete;
  Mesh& operator=(const Mesh&) = delete;
  // `mount ARGS AT`, undone when the mesh goes (also after a failed check).
  void mount(const std::string& args, const std::string& at) {
    sh("mount " + args + " " + at);
    mounted.push_back(at);
  }
  // A directory of the test's bound at `at`, as a node's own volume; returns the directory.
  std::string bind_volume(const std::string& at, const std::string& name) {
    const std::string volume = t / name;
    ::mkdir(volume.c_str(), 0755);
    mount("--bind " + volume, at);
    return volume;
  }
  static std::vector<std::unique_ptr<Node>> make_nodes(const test::TempDir& t, int n) {
    std::vector<std::unique_ptr<Node>> v;
    for (int i = 0; i < n; ++i) {
      const std::string name(1, static_cast<char>('a' + i));
      v.push_back(std::make_unique<Node>(Node{name, t / name, t / ("state-" + name), t / ("run-" + name), t / (name + ".log"), nullptr}));
    }
    return v;
  }
  Node& c() { return *nodes.at(2); }
  void start(Node& n, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv{SYNCD_BINARY, "-nodaemon"};
    bool first = true;
    for (const auto& peer : nodes) {
      if (peer.get() == &n || unlinked.count({n.name, peer->name}) != 0 || unlinked.count({peer->name, n.name}) != 0) continue;
      if (first) {
        argv.insert(argv.end(), {"-rsyncssh", n.dir, "127.0.0.1", peer->dir, "-remote-rundir", peer->run});
      } else {
        argv.insert(argv.end(), {"-peer", "127.0.0.1", peer->dir, "-remote-rundir", peer->run});
      }
      first = false;
    }
    argv.insert(argv.end(), {"-bidirectional", "-statedir", n.state, "-rundir", n.run, "-rsh", sshd.rsh(),
                             "-remote-syncd", SYNCD_BINARY, "-transport", "libssh2"});
    argv.insert(argv.end(), extra.begin(), extra.end());
    // SYNCD_TWO_WAY_HARD_LINKS=1: every case with rsync.hard_links on (conflict copies are links).
    if (const char* h = std::getenv("SYNCD_TWO_WAY_HARD_LINKS"); h && std::string(h) == "1") argv.push_back("-hard-links");
    n.proc = std::make_unique<test::Child>(argv, n.log);
  }
  std::string status_json(const Node& n) {
    const std::string out = t / (n.name + ".status");
    REQUIRE(test::run(std::string(SYNCD_BINARY) + " status " + n.dir + " -rundir " + n.run + " --json > " + out) == 0);
    return test::read_file(out);
  }
  // Starts `n` and waits until its startup scan has turned what is on disk into versions: a node
  // started after that authors later (larger content times), which decides true conflicts.
  void start_scanned(Node& n, const std::vector<std::string>& extra = {}) {
    const size_t from = test::exists(n.log) ? test::read_file(n.log).size() : 0;
    start(n, extra);
    REQUIRE_MESSAGE(test::wait_for_text(n.log, "full rescan done", from, 60000), "no startup scan; logs:\n" << logs());
  }
  void stop(Node& n) {
    CHECK_MESSAGE(n.proc->stop(SIGTERM) == 128 + SIGTERM, "node " << n.name << " did not exit cleanly; logs:\n" << logs());
    n.proc.reset();
  }
  std::string logs() const {
    std::string s;
    for (const auto& n : nodes) s += "---- " + n->name + ":\n" + (test::exists(n->log) ? test::read_file(n->log) : "");
    return s;
  }
  void idle(const Node& n) {
    if (test::run(std::string(SYNCD_BINARY) + " status " + n.dir + " -rundir " + n.run + " --wait-idle 60000 > /dev/null") == 0) {
      return;
    }
    // What it is waiting for: every node's own account (queues, acks, retries, joined sessions).
    std::string states;
    for (const auto& x : nodes) {
      if (!x->proc) continue;
      const std::string out = t / (x->name + ".status.txt");
      (void)test::run(std::string(SYNCD_BINARY) + " status " + x->dir + " -rundir " + x->run + " > " + out + " 2>&1");
      states += test::read_file(out);
    }
    FAIL("node " << n.name << " never went idle; status:\n" << states << "logs:\n" << logs());
  }
  // Converged: each node's cookie reached every other node (everything it sent before was
  // applied), all daemons idle (what applying produced — conflict copies, merged records, relayed
  // records — is acknowledged), then one more round, and every tree is compared with the first.
  void converged(const std::function<bool(const std::string&)>& also_skip = {}) {
    for (int round = 0; round < 2; ++round) {
      for (const auto& n : nodes) {
        const std::string c = "cookie." + std::to_string(++cookies);
        test::write_file(n->dir + "/" + c, "c");
        for (const auto& o : nodes) {
          if (o == n) continue;
          REQUIRE_MESSAGE(test::wait_for(o->dir, c, 60000),
                          "cookie from " << n->name << " never reached " << o->name << "; logs:\n" << logs());
        }
      }
      for (const auto& n : nodes) idle(*n);
    }
    for (size_t i = 1; i < nodes.size(); ++i) {
      const auto diff = test::tree_diff(a.dir, nodes[i]->dir, [&](const std::string& rel) {
        // Cookies, and each node's own root marker (local by design).
        return rel.rfind("cookie.", 0) == 0 || rel == ".syncd.root" || (also_skip && also_skip(rel));
      });
      for (const auto& d : diff) MESSAGE(nodes[i]->name << ": " << d);
      REQUIRE_MESSAGE(diff.empty(), "trees of a and " << nodes[i]->name << " differ; logs:\n" << logs());
    }
  }
  // Protocol bytes every node has written to its links so far (after compression).
  uint64_t bytes_out() {
    uint64_t total = 0;
    for (const auto& n : nodes) {
      const std::string j = status_json(*n);
      const std::string key = "\"bytes_out\": ";
      for (size_t at = j.find(key); at != std::string::npos; at = j.find(key, at + 1)) {
        total += std::strtoull(j.c_str() + at + key.size(), nullptr, 10);
      }
    }
    return total;
  }
  // Edits `rel` in place on `n`, waits until the mesh converged, and returns what every node
  // sent meanwhile (protocol bytes).
  uint64_t edit_cost(Node& n, const std::string& rel, const std::string& text, off_t at) {
    const uint64_t before = bytes_out();
    edit_in_place(n.dir + "/" + rel, text, at);
    converged();
    return bytes_out() - before;
  }

  // One SSH session per pair (the lower node id dials): over all nodes, each pair shows up once as
  // a link marked dialed_by_peer and once as a joined peer session.
  void one_session_per_pair() {
    size_t dialed_by_peer = 0, joined = 0;
    for (const auto& n : nodes) {
      const std::string j = status_json(*n);
      for (size_t at = j.find("\"dialed_by_peer\": true"); at != std::string::npos; at = j.find("\"dialed_by_peer\": true", at + 1)) {
        ++dialed_by_peer;
      }
      const size_t ps = j.find("\"peer_sessions\": ");
      REQUIRE(ps != std::string::npos);
      const size_t here = std::strtoul(j.c_str() + ps + 17, nullptr, 10);
      joined += here;
      // Each joined session has its own entry, idle once converged (nothing held for the peer).
      const std::string settled = "\"retrying\": 0, \"last_failure\": null, \"not_recorded\": 0, \"not_recorded_error\": null, \"caught_up\": true, \"held_bytes\": 0, \"reading_paused\": false}";
      size_t entries = 0;
      for (size_t at = j.find(settled); at != std::string::npos; at = j.find(settled, at + 1)) ++entries;
      CHECK_MESSAGE(entries == here, j);
    }
    const size_t pairs = nodes.size() * (nodes.size() - 1) / 2;
    CHECK_MESSAGE(dialed_by_peer == pairs, logs());
    CHECK_MESSAGE(joined == pairs, logs());
  }
  // Starts a and b with debug logs (b's "send ..." lines serve as barriers), lets them converge,
  // then freezes a (SIGSTOP): its own changes wait in inotify while b's records reach its socket,
  // and on SIGCONT its watcher and its receiver race. Returns where b's log stood at the freeze.
  // (A node left frozen by a failing test is killed like any other.)
  size_t start_then_freeze_a() {
    ::setenv("SPDLOG_LEVEL", "debug", 1);
    start(a);
    start(b);
    ::unsetenv("SPDLOG_LEVEL");
    converged();
    const size_t from = test::read_file(b.log).size();
    a.proc->signal(SIGSTOP);
    return from;
  }
  // Starts a and b on trees that hold the same bytes (big.bin among them) and lets them converge:
  // the first start must send none of those bytes (under 512 KB in all), keep big.bin's inodes
  // and make no conflict copy.
  void seeded_start(const std::string& what) {
    const ino_t a_ino = ino(a.dir + "/big.bin"), b_ino = ino(b.dir + "/big.bin");
    start(a);
    start(b);
    converged();
    const uint64_t initial = bytes_out();
    MESSAGE("initial sync of two nodes " << what << ": " << initial << " bytes out");
    CHECK_MESSAGE(initial < 512 * 1024, "the initial sync cost " << initial << " bytes; logs:\n" << logs());
    CHECK(ino(a.dir + "/big.bin") == a_ino);
    CHECK(ino(b.dir + "/big.bin") == b_ino);
    for (Node* n : {&a, &b}) {
      for (const auto& name : test::list_dir(n->dir)) CHECK_MESSAGE(name.find("sync-conflict") == std::string::npos, name);
    }
  }
  void sh(const std::string& cmd) { REQUIRE_MESSAGE(test::run(cmd) == 0, cmd); }
  // Conflict copies of `base` (a path relative to the node's tree).
  // Two running nodes settled with each other while the rest of the mesh is not running: a
  // cookie each way, then both idle.
  void pair_settled(Node& x, Node& y) {
    const std::string cx = "cookie." + std::to_string(++cookies), cy = "cookie." + std::to_string(++cookies);
    test::write_file(x.dir + "/" + cx, "c");
    test::write_file(y.dir + "/" + cy, "c");
    REQUIRE_MESSAGE(test::wait_for(y.dir, cx, 60000), logs());
    REQUIRE_MESSAGE(test::wait_for(x.dir, cy, 60000), logs());
    idle(x);
    idle(y);
  }
  // One session per pair (TWO-WAY.md §4.9): the node with the lower id dials and the other logs
  // so. Of a and b, the one that is dialed.
  Node& dialed_of_pair() {
    Node* dialed = nullptr;
    REQUIRE_MESSAGE(test::wait_until(t.path(), [&] {
      for (Node* n : {&a, &b}) {
        if (test::read_file(n->log).find("dials this node: one session per pair") != std::string::npos) dialed = n;
      }
      return dialed != nullptr;
    }, 60000), logs());
    return *dialed;
  }
  // `to` gets a copy of `from`'s tree (times and owners kept), as an operator seeds a new node:
  // without cookies and without `from`'s own root marker.
  void seed_copy(const Node& from, const Node& to) {
    sh("rm -rf " + to.dir + " && cp -a " + from.dir + " " + to.dir + " && rm -f " + to.dir + "/cookie.* " + to.dir +
       "/.syncd.root");
  }
  std::vector<std::string> copies(const Node& n, const std::string& base) {
    const size_t slash = base.rfind('/');
    const std::string sub = slash == std::string::npos ? "" : base.substr(0, slash + 1);
    const std::string leaf = base.substr(sub.size());
    std::vector<std::string> out;
    for (const auto& e : test::list_dir(n.dir + "/" + sub)) {
      if (e.rfind(leaf + ".sync-conflict-", 0) == 0) out.push_back(sub + e);
    }
    return out;
  }
};

ino_t ino(const std::string& p) {
  struct stat st{};
  REQUIRE_MESSAGE(::lstat(p.c_str(), &st) == 0, p);
  return st.st_ino;
}

// File times advance in clock ticks (1-10 ms) and lag the wall clock a version is dated by: a
// file written within a tick of a peer's version can carry an earlier time than that version.
// Returns once a file written now is dated after the moment of the call (up to one tick).
void file_clock_past_now(const std::string& scratch) {
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  for (;;) {
    test::write_file(scratch, "t");
    struct stat st{};
    REQUIRE(::stat(scratch.c_str(), &st) == 0);
    if (st.st_mtim.tv_sec > now.tv_sec || (st.st_mtim.tv_sec == now.tv_sec && st.st_mtim.tv_nsec > now.tv_nsec)) break;
  }
  ::unlink(scratch.c_str());
}

std::string mode_of(const std::string& p) {
  struct stat st{};
  REQUIRE(::lstat(p.c_str(), &st) == 0);
  char b[8];
  std::snprintf(b, sizeof b, "%o", st.st_mode & 07777);
  return b;
}

}  // namespace

TEST_SUITE("two_way") {
  TEST_CASE("initial union, live changes both ways, no echo and no conflict for equal files") {
    Mesh p;
    test::write_file(p.a.dir + "/only-a", "from a");
    test::write_file(p.b.dir + "/only-b", "from b");
    p.sh("mkdir -p " + p.a.dir + "/certs " + p.b.dir + "/certs");
    test::write_file(p.a.dir + "/certs/same.pem", "identical");
    test::write_file(p.b.dir + "/certs/same.pem", "identical");
    // Equal files are equal in metadata too: two writes a few microseconds apart usually get the
    // same (clock-tick) mtime, but not when a tick falls between them — then the union is a
    // metadata conflict, rightly logged as one, and this test failed about once in a hundred runs.
    p.sh("touch -d '2024-05-05 05:05:05.5' " + p.a.dir + "/certs/same.pem " + p.b.dir + "/certs/same.pem");
    p.start(p.a);
    p.start(p.b);
    p.converged();
    CHECK(test::read_file(p.a.dir + "/only-b") == "from b");
    CHECK(test::read_file(p.b.dir + "/only-a") == "from a");
    CHECK(p.copies(p.a, "certs/same.pem").empty());
    p.one_session_per_pair();

    // Live: each side writes, chmods, chowns, renames, deletes; the other follows.
    test::write_file(p.a.dir + "/certs/new-a.pem", "cert a");
    test::write_file(p.b.dir + "/certs/new-b.pem", "cert b");
    p.sh("chmod 600 " + p.b.dir + "/only-a && chown 42:43 " + p.a.dir + "/only-b");
    p.sh("mkdir -p " + p.b.dir + "/x/y && echo deep > " + p.b.dir + "/x/y/f");
    p.converged();
    CHECK(mode_of(p.a.dir + "/only-a") == "600");
    p.sh("mv " + p.a.dir + "/certs/new-b.pem " + p.a.dir + "/certs/renamed.pem && rm " + p.b.dir + "/only-b");
    p.converged();
    CHECK(test::exists(p.b.dir + "/certs/renamed.pem"));
    CHECK_FALSE(test::exists(p.a.dir + "/only-b"));
    // No echo loop: with nothing changing, neither daemon authors anything new.
    const std::string before = test::read_file(p.a.log) + test::read_file(p.b.log);
    p.converged();
    CHECK_MESSAGE(test::count_text(p.a.log, "conflict") == 0, test::read_file(p.a.log));
    CHECK_MESSAGE(test::count_text(p.b.log, "conflict") == 0, test::read_file(p.b.log));
    (void)before;
  }

  TEST_CASE("hard links (rsync.hard_links) two-way: names of one inode stay one inode on the peer, a write through any name reaches all") {
    Mesh p;
    p.sh("mkdir -p " + p.a.dir + "/certs && echo key > " + p.a.dir + "/certs/one.pem && ln " + p.a.dir + "/certs/one.pem " + p.a.dir +
         "/certs/two.pem && ln " + p.a.dir + "/certs/one.pem " + p.a.dir + "/three.pem");
    p.start(p.a, {"-hard-links"});
    p.start(p.b, {"-hard-links"});
    p.converged();
    auto inode = [](const std::string& path) {
      struct stat st{};
      REQUIRE(::stat(path.c_str(), &st) == 0);
      return std::make_pair(st.st_ino, st.st_nlink);
    };
    CHECK(inode(p.b.dir + "/certs/one.pem") == inode(p.b.dir + "/certs/two.pem"));
    CHECK(inode(p.b.dir + "/three.pem") == inode(p.b.dir + "/certs/one.pem"));
    CHECK(inode(p.b.dir + "/three.pem").second == 3);
    // Written in place through one name on b (the inode stays): every name on a follows, still
    // one inode; links made on b reach a the same way.
    p.sh("echo rotated > " + p.b.dir + "/certs/two.pem");
    p.converged();
    for (const char* n : {"/certs/one.pem", "/certs/two.pem", "/three.pem"}) {
      CAPTURE(n);
      CHECK(test::read_file(p.a.dir + n) == "rotated\n");
    }
    CHECK(inode(p.a.dir + "/certs/one.pem") == inode(p.a.dir + "/certs/two.pem"));
    CHECK(inode(p.a.dir + "/three.pem") == inode(p.a.dir + "/certs/one.pem"));
    p.sh("ln " + p.b.dir + "/certs/one.pem " + p.b.dir + "/four.pem");
    p.converged();
    CHECK(inode(p.a.dir + "/four.pem") == inode(p.a.dir + "/certs/one.pem"));
    CHECK(inode(p.a.dir + "/four.pem").second == 4);
    CHECK_MESSAGE(test::count_text(p.a.log, "conflict") == 0, p.logs());
    CHECK_MESSAGE(test::count_text(p.b.log, "conflict") == 0, p.logs());
  }

  TEST_CASE("create/create with different content: later write wins, the other kept as a conflict copy everywhere") {
    Mesh p;
    test::write_file(p.a.dir + "/ca.crl", "revocations of a");
    test::write_file(p.b.dir + "/ca.crl", "revocations of b");
    // A wrote first (its file's time set a minute back: file times are coarser than these two
    // writes). Both nodes are new, so each dates its version by the file's time: B's wins.
    p.sh("touch -d '1 minute ago' " + p.a.dir + "/ca.crl");
    const std::string hook_log = p.t / "hook.log";
    const std::vector<std::string> hook = {"-conflict-hook", "printf '%s|%s|%s\\n' >> " + hook_log};
    p.start_scanned(p.a, hook);
    p.start(p.b, hook);
    p.converged();
    CHECK(test::read_file(p.a.dir + "/ca.crl") == "revocations of b");
    const auto ca = p.copies(p.a, "ca.crl");
    REQUIRE(ca.size() == 1);
    CHECK(test::read_file(p.a.dir + "/" + ca[0]) == "revocations of a");
    CHECK(p.copies(p.b, "ca.crl") == ca);  // same deterministic name on both nodes
    // The hook ran once, where the copy was made (A held the loser), with path, copy and root.
    REQUIRE(test::wait_until(p.t.path(), [&] { return test::count_text(hook_log, "\n") >= 1; }, 30000));
    CHECK(test::read_file(hook_log) == p.a.dir + "/ca.crl|" + p.a.dir + "/" + ca[0] + "|" + p.a.dir + "\n");
    // `syncd conflicts` lists it on every node (exit 1: there is something to resolve).
    const std::string out = p.t / "conflicts.out";
    CHECK(test::run(std::string(SYNCD_BINARY) + " conflicts " + p.b.dir + " --json > " + out) == 1);
    CHECK(test::read_file(out).find("\"copy\": \"" + ca[0] + "\", \"path\": \"ca.crl\"") != std::string::npos);
    p.sh("rm " + p.b.dir + "/" + ca[0]);
    p.converged();
    CHECK(test::run(std::string(SYNCD_BINARY) + " conflicts " + p.a.dir + " > " + out) == 0);
    CHECK(test::read_file(out) == "no conflict copies\n");
    CHECK(test::count_text(p.a.log, "conflict: ca.crl") + test::count_text(p.b.log, "conflict: ca.crl") >= 1);
  }

  TEST_CASE("offline edits: modify/modify, modify/delete both ways, delete/delete, chmod vs content") {
    Mesh p;
    for (const char* f : {"mm", "md", "dm", "dd", "cc"}) test::write_file(p.a.dir + "/" + f, std::string("base ") + f);
    p.sh("chmod 644 " + p.a.dir + "/cc");
    p.start(p.a);
    p.start(p.b);
    p.converged();
    // Both stop; each tree is changed while its node is down. The startup scans date what they
    // find by the files' times: B's edit of mm is the later one (A's is dated a minute back, as
    // two writes in one clock tick have the same time).
    p.stop(p.b);
    p.stop(p.a);
    test::write_file(p.a.dir + "/mm", "a edit");
    p.sh("touch -d '1 minute ago' " + p.a.dir + "/mm");
    p.sh("rm " + p.a.dir + "/md");
    test::write_file(p.a.dir + "/dm", "a edit of dm");
    p.sh("rm " + p.a.dir + "/dd");
    test::write_file(p.a.dir + "/cc", "a content");
    test::write_file(p.b.dir + "/mm", "b edit, later");
    test::write_file(p.b.dir + "/md", "b edit of md");
    p.sh("rm " + p.b.dir + "/dm");
    p.sh("rm " + p.b.dir + "/dd");
    p.sh("chmod 600 " + p.b.dir + "/cc");
    p.start_scanned(p.a);
    p.start(p.b);  // B's startup scan turns its offline edits into versions, then reconciles
    p.converged();
    // modify/modify: B wrote later; A's content is kept as a copy on both.
    CHECK(test::read_file(p.a.dir + "/mm") == "b edit, later");
    const auto mm = p.copies(p.a, "mm");
    REQUIRE(mm.size() == 1);
    CHECK(test::read_file(p.a.dir + "/" + mm[0]) == "a edit");
    // modify beats a concurrent delete, whichever side deleted; no copy needed.
    CHECK(test::read_file(p.a.dir + "/md") == "b edit of md");
    CHECK(test::read_file(p.b.dir + "/dm") == "a edit of dm");
    CHECK(p.copies(p.a, "md").empty());
    CHECK(p.copies(p.a, "dm").empty());
    CHECK_FALSE(test::exists(p.a.dir + "/dd"));
    // chmod on B and new content on A merge field by field.
    CHECK(test::read_file(p.b.dir + "/cc") == "a content");
    CHECK(mode_of(p.a.dir + "/cc") == "600");
    CHECK(p.copies(p.a, "cc").empty());
  }

  TEST_CASE("directory deleted on one node while the other adds a file in it - and rename vs modify") {
    Mesh p;
    p.sh("mkdir -p " + p.a.dir + "/d && echo 1 > " + p.a.dir + "/d/old1 && echo 2 > " + p.a.dir + "/d/old2");
    test::write_file(p.a.dir + "/f", "original");
    p.start(p.a);
    p.start(p.b);
    p.converged();
    p.stop(p.b);  // partition; A keeps working and sees B's edits only after B is back
    p.sh("rm -rf " + p.a.dir + "/d");
    p.sh("mv " + p.a.dir + "/f " + p.a.dir + "/g");
    test::write_file(p.b.dir + "/d/new", "added while a deleted d");
    test::write_file(p.b.dir + "/f", "edited while a renamed f");
    p.start(p.b);
    p.converged();
    // d lives on with only the new child; the untouched siblings are gone.
    CHECK(test::read_file(p.a.dir + "/d/new") == "added while a deleted d");
    CHECK_FALSE(test::exists(p.a.dir + "/d/old1"));
    CHECK_FALSE(test::exists(p.b.dir + "/d/old2"));
    // Rename vs modify: the edit at the old name, the renamed original at the new one.
    CHECK(test::read_file(p.a.dir + "/f") == "edited while a renamed f");
    CHECK(test::read_file(p.b.dir + "/g") == "original");
  }

  // A move is a new content event at the new name (TWO-WAY.md §4.2, §4.5: rename = tombstone +
  // create). Were the moved record to keep the old name's content dot, a peer whose record of the
  // new name had seen that (older) dot would take the move's content as superseded and drop it.
  TEST_CASE("a rename onto a name the peer changed meanwhile keeps both contents (file and directory)") {
    Mesh p;
    test::write_file(p.a.dir + "/from", "moved-content");
    p.sh("mkdir " + p.a.dir + "/d && echo moved-child > " + p.a.dir + "/d/x");
    p.start(p.a);
    p.start(p.b);
    p.converged();
    // Written after what will move: the peer's records of these names have seen the older dots.
    test::write_file(p.a.dir + "/to", "first-to");
    p.sh("mkdir " + p.a.dir + "/e && echo first-e > " + p.a.dir + "/e/x");
    p.converged();
    p.sh("rm -rf " + p.a.dir + "/e");
    p.converged();
    p.stop(p.b);
    p.sh("mv " + p.a.dir + "/from " + p.a.dir + "/to && mv " + p.a.dir + "/d " + p.a.dir + "/e");
    test::write_file(p.b.dir + "/to", "b-changed-to");
    p.sh("mkdir " + p.b.dir + "/e && echo b-made-e > " + p.b.dir + "/e/x");
    p.start(p.b);
    p.converged();
    for (const std::string name : {"to", "e/x"}) {
      std::set<std::string> held{test::read_file(p.a.dir + "/" + name)};
      for (const auto& c : p.copies(p.a, name)) held.insert(test::read_file(p.a.dir + "/" + c));
      const bool dir = name == "e/x";
      CHECK_MESSAGE(held.count(dir ? "moved-child\n" : "moved-content") == 1, name << p.logs());
      CHECK_MESSAGE(held.count(dir ? "b-made-e\n" : "b-changed-to") == 1, name);
    }
    CHECK_FALSE(test::exists(p.b.dir + "/from"));
    CHECK_FALSE(test::exists(p.b.dir + "/d"));
  }

  // Found by the randomized rounds: a peer applied a directory move as one rename, carrying along
  // a file it had just added there that the mover never saw; the mover had it at the old name.
  TEST_CASE("a directory moved on one node while the other adds a file in it: the known entries move, the new one stays") {
    Mesh p;
    p.sh("mkdir -p " + p.a.dir + "/d/sub && echo k > " + p.a.dir + "/d/k && echo s > " + p.a.dir + "/d/sub/s");
    const size_t from = p.start_then_freeze_a();
    test::write_file(p.a.dir + "/d/x", "added on a");
    p.sh("mv " + p.b.dir + "/d " + p.b.dir + "/m");
    REQUIRE_MESSAGE(test::wait_for_text(p.b.log, "m/sub/s", from, 30000), p.logs());
    p.a.proc->signal(SIGCONT);
    p.converged();
    for (const Node* n : {&p.a, &p.b}) {
      CHECK(test::read_file(n->dir + "/m/k") == "k\n");
      CHECK(test::read_file(n->dir + "/m/sub/s") == "s\n");
      CHECK(test::read_file(n->dir + "/d/x") == "added on a");
      CHECK_FALSE(test::exists(n->dir + "/d/k"));
      CHECK_FALSE(test::exists(n->dir + "/d/sub"));
      CHECK_FALSE(test::exists(n->dir + "/m/x"));
    }
  }

  // One session per pair: the node with the lower id dials, the other's records travel on that
  // session, announced from its index; with three nodes a peer also relays what it applied.
  // Whichever way, a rename reaches every peer as a rename — each moves the bytes it holds (same
  // inode there) instead of being sent them again.
  TEST_CASE("renames made on any node arrive as renames on every peer: inodes kept, no bytes re-sent") {
    // Two nodes; three in a full mesh; three in a chain a - b - c (a's and c's renames reach the
    // other end only through b).
    for (const std::string shape : {"2", "3 mesh", "3 chain"}) {
      CAPTURE(shape);
      Mesh p(shape == "2" ? 2 : 3);
      if (shape == "3 chain") p.unlinked.insert({"a", "c"});
      p.sh("mkdir -p " + p.a.dir + "/d0/sub && head -c 300000 /dev/urandom > " + p.a.dir + "/f0 && echo k > " + p.a.dir +
           "/d0/k && echo s > " + p.a.dir + "/d0/sub/s");
      for (auto& n : p.nodes) p.start(*n);
      p.converged();
      // Each node in turn renames f (a file) and moves d (a directory): f0 -> f1 -> ..., d0 -> d1 -> ...
      int hop = 0;
      for (auto& mover : p.nodes) {
        for (const bool dir : {false, true}) {
          const std::string from = (dir ? "d" : "f") + std::to_string(hop), to = (dir ? "d" : "f") + std::to_string(hop + 1);
          const std::vector<std::string> files = dir ? std::vector<std::string>{"/k", "/sub/s"} : std::vector<std::string>{""};
          std::map<std::string, ino_t> before;
          for (auto& n : p.nodes) {
            for (const auto& f : files) before[n->name + f] = ino(n->dir + "/" + from + f);
          }
          p.sh("mv " + mover->dir + "/" + from + " " + mover->dir + "/" + to);
          p.converged();
          for (auto& n : p.nodes) {
            if (n == mover) continue;
            for (const auto& f : files) {
              CHECK_MESSAGE(ino(n->dir + "/" + to + f) == before[n->name + f],
                            (from + f) << " -> " << (to + f) << " renamed on " << mover->name << " arrived on " << n->name
                                       << " as a new file");
            }
            CHECK_FALSE(test::exists(n->dir + "/" + from));
          }
        }
        ++hop;
      }
      CHECK(test::read_file(p.b.dir + "/d" + std::to_string(hop) + "/sub/s") == "s\n");
    }
  }

  TEST_CASE("names swapped with renameat2(RENAME_EXCHANGE) on either node converge - nothing lost, no conflict copy") {
    Mesh p;
    p.sh("mkdir -p " + p.a.dir + "/d1/x " + p.a.dir + "/d2 && echo in1 > " + p.a.dir + "/d1/x/f && echo in2 > " + p.a.dir +
         "/d2/g && echo A > " + p.a.dir + "/a && echo BB > " + p.a.dir + "/b");
    for (auto& n : p.nodes) p.start(*n);
    p.converged();
    auto exchange = [&](Node& n, const std::string& x, const std::string& y) {
      const std::string px = n.dir + "/" + x, py = n.dir + "/" + y;
      REQUIRE_MESSAGE(::renameat2(AT_FDCWD, px.c_str(), AT_FDCWD, py.c_str(), RENAME_EXCHANGE) == 0,
                      "renameat2 " << x << " " << y << ": " << std::strerror(errno));
    };
    exchange(p.a, "a", "b");
    exchange(p.a, "d1", "d2");
    p.converged();
    CHECK(test::read_file(p.b.dir + "/a") == "BB\n");
    CHECK(test::read_file(p.b.dir + "/d1/g") == "in2\n");
    CHECK(test::read_file(p.b.dir + "/d2/x/f") == "in1\n");
    exchange(p.b, "a", "d1");  // a file and a directory
    p.converged();
    CHECK(test::read_file(p.a.dir + "/d1") == "BB\n");
    CHECK(test::read_file(p.a.dir + "/a/g") == "in2\n");
    for (Node* n : {&p.a, &p.b}) {
      CHECK_MESSAGE(test::run("test -z \"$(find " + n->dir + " -name '*sync-conflict*')\"") == 0, n->name << ": " << p.logs());
    }
  }

  // A peer that was down asks for everything after its resume point when it comes back; a move
  // made meanwhile is in that range as a tombstone and a version, and goes as one RENAME — also
  // when the mover restarted in between (the pairing is in its index).
  TEST_CASE("a rename made while the peer was down arrives as a rename when it is back, across the mover's restart") {
    Mesh p;
    p.sh("mkdir -p " + p.a.dir + "/d0 && head -c 300000 /dev/urandom > " + p.a.dir + "/f0 && echo k > " + p.a.dir + "/d0/k");
    ::setenv("SPDLOG_LEVEL", "debug", 1);  // the movers' "move recorded" lines are the barrier below
    auto level = ScopeGuard([]() noexcept { ::unsetenv("SPDLOG_LEVEL"); });
    p.start(p.a);
    p.start(p.b);
    p.converged();
    int hop = 0;
    for (auto [mover, peer] : {std::pair{&p.a, &p.b}, std::pair{&p.b, &p.a}}) {
      const std::string n0 = std::to_string(hop), n1 = std::to_string(hop + 1);
      const ino_t f = ino(peer->dir + "/f" + n0), k = ino(peer->dir + "/d" + n0 + "/k");
      p.stop(*peer);
      const size_t from = test::read_file(mover->log).size();
      p.sh("mv " + mover->dir + "/f" + n0 + " " + mover->dir + "/f" + n1);
      p.sh("mv " + mover->dir + "/d" + n0 + " " + mover->dir + "/d" + n1);
      // Recorded (the file's move came first), then the mover restarts before the peer is back.
      REQUIRE_MESSAGE(test::wait_for_text(mover->log, "move recorded: d" + n0 + " -> d" + n1, from, 30000), p.logs());
      p.stop(*mover);
      p.start(*mover);
      p.start(*peer);
      p.converged();
      CHECK_MESSAGE(ino(peer->dir + "/f" + n1) == f, "f" << n0 << " renamed on " << mover->name << " arrived as a new file");
      CHECK_MESSAGE(ino(peer->dir + "/d" + n1 + "/k") == k, "d" << n0 << " moved on " << mover->name << " arrived as new files");
      CHECK_FALSE(test::exists(peer->dir + "/f" + n0));
      CHECK_FALSE(test::exists(peer->dir + "/d" + n0));
      ++hop;
    }
  }

  // A move is a new content event at the new name (TWO-WAY.md §4.5): a peer's concurrent delete of
  // a file at the old name does not take the moved file. Seed 736 of the randomized rounds lost
  // track of such a file on the mover when its receiver applied the delete after the move was on
  // disk but before the watcher reported it (fixed by rescanning a moved directory); that order
  // depends on thread timing and is not forced here — this checks the outcome, with files directly
  // in the moved directory and one level below.
  TEST_CASE("a directory moved on one node while the other deletes files in it: the moved files are kept on both") {
    Mesh p;
    const int n = 4;
    for (int k = 0; k < n; ++k) {
      const std::string d = p.a.dir + "/d" + std::to_string(k), ks = std::to_string(k);
      p.sh("mkdir -p " + d + "/sub && echo x" + ks + " > " + d + "/x && echo y > " + d + "/y && echo z" + ks + " > " + d + "/sub/z");
    }
    const size_t from = p.start_then_freeze_a();
    for (int k = 0; k < n; ++k) {
      const std::string ks = std::to_string(k);
      p.sh("mv " + p.a.dir + "/d" + ks + " " + p.a.dir + "/m" + ks);
      p.sh("rm " + p.b.dir + "/d" + ks + "/x " + p.b.dir + "/d" + ks + "/sub/z");
    }
    REQUIRE_MESSAGE(test::wait_for_text(p.b.log, "remove path=d" + std::to_string(n - 1) + "/sub/z", from, 30000), p.logs());
    p.a.proc->signal(SIGCONT);
    p.converged();
    for (const Node* nd : {&p.a, &p.b}) {
      for (int k = 0; k < n; ++k) {
        const std::string ks = std::to_string(k);
        CHECK_MESSAGE(test::read_file(nd->dir + "/m" + ks + "/x") == "x" + ks + "\n", nd->name << " m" << ks);
        CHECK_MESSAGE(test::read_file(nd->dir + "/m" + ks + "/sub/z") == "z" + ks + "\n", nd->name << " m" << ks);
        CHECK(test::read_file(nd->dir + "/m" + ks + "/y") == "y\n");
        CHECK_FALSE(test::exists(nd->dir + "/d" + ks));
      }
    }
  }

  // Found by the randomized rounds (a frozen node renamed ca.crl to cfg while its peer wrote cfg):
  // the renaming node's receiver saw the peer's cfg first, recorded its own cfg as a new version
  // and judged it the winner; then its watcher reported the rename and re-recorded cfg with the
  // older time of ca.crl's content, so the peer judged the other way and both kept their own.
  TEST_CASE("a rename racing a peer's write of the new name: both nodes pick the same winner") {
    Mesh p;
    const int n = 12;
    for (int k = 0; k < n; ++k) test::write_file(p.a.dir + "/f" + std::to_string(k), "a-original-" + std::to_string(k));
    const size_t from = p.start_then_freeze_a();
    // Events queued ahead of the renames keep a's watcher busy while the receiver takes b's g*.
    p.sh("mkdir " + p.a.dir + "/noise && for i in $(seq 2000); do echo $i > " + p.a.dir + "/noise/$i; done");
    for (int k = 0; k < n; ++k) {
      const std::string ks = std::to_string(k);
      p.sh("mv " + p.a.dir + "/f" + ks + " " + p.a.dir + "/g" + ks);
      test::write_file(p.b.dir + "/g" + ks, "b-wrote-" + ks);
    }
    REQUIRE_MESSAGE(test::wait_for_text(p.b.log, "path=g" + std::to_string(n - 1) + " ", from, 30000), p.logs());
    p.a.proc->signal(SIGCONT);
    p.converged();
    // Nothing lost: both contents of every g are in the tree (the file or its conflict copy).
    for (int k = 0; k < n; ++k) {
      const std::string ks = std::to_string(k);
      std::set<std::string> held{test::read_file(p.a.dir + "/g" + ks)};
      for (const auto& c : p.copies(p.a, "g" + ks)) held.insert(test::read_file(p.a.dir + "/" + c));
      CHECK_MESSAGE(held.count("a-original-" + ks) == 1, "g" << ks);
      CHECK_MESSAGE(held.count("b-wrote-" + ks) == 1, "g" << ks);
    }
  }

  TEST_CASE("SQLite files are never replicated two-way, and the log names them") {
    Mesh p;
    test::write_file(p.a.dir + "/acme_srv.db", "SQLite format 3");
    test::write_file(p.a.dir + "/keep.cfg", "cfg");
    p.start(p.a);
    p.start(p.b);
    auto db = [](const std::string& rel) { return rel.find(".db") != std::string::npos; };
    p.converged(db);
    test::write_file(p.b.dir + "/acme_srv.db-wal", "wal");
    p.converged(db);
    CHECK(test::exists(p.b.dir + "/keep.cfg"));
    CHECK_FALSE(test::exists(p.b.dir + "/acme_srv.db"));
    CHECK_FALSE(test::exists(p.a.dir + "/acme_srv.db-wal"));
    CHECK(test::count_text(p.a.log, "not replicated: acme_srv.db: an SQLite database") == 1);
    CHECK(test::count_text(p.b.log, "not replicated: acme_srv.db-wal") == 1);
  }

  TEST_CASE("mass-delete brake: a node whose tree looks unmounted propagates no deletes") {
    Mesh p;
    for (int i = 0; i < 6; ++i) test::write_file(p.a.dir + "/cert" + std::to_string(i) + ".pem", "c");
    p.start(p.a);
    p.start(p.b);
    p.converged();
    p.stop(p.a);
    // The volume "is not mounted": A's tree is empty when A starts again.
    const std::string aside = p.t / "aside";
    p.sh("mkdir " + aside + " && mv " + p.a.dir + "/cert* " + aside + "/");
    p.start(p.a);
    const std::string c = "cookie.brake";
    test::write_file(p.b.dir + "/" + c, "c");
    REQUIRE_MESSAGE(test::wait_for(p.a.dir, c, 60000), p.logs());
    p.idle(p.b);
    CHECK(test::count_text(p.a.log, "MASS-DELETE BRAKE") == 1);
    CHECK(p.status_json(p.a).find("\"delete_brake\": \"a full scan of") != std::string::npos);
    for (int i = 0; i < 6; ++i) CHECK(test::exists(p.b.dir + "/cert" + std::to_string(i) + ".pem"));
    // "Mounted" again: the files come back as they were, nothing to send, the trees agree.
    p.sh("mv " + aside + "/cert* " + p.a.dir + "/");
    p.converged();
    // The root marker: a tree without it (here one file gone, far below the share) is not the
    // volume this node synced, so the node halts (TWO-WAY.md §4.9): nothing is deleted, and
    // nothing of B's lands in it (a file applied there would be missing from the right volume
    // and deleted everywhere once it is back). Once the operator puts the marker back, the
    // delete goes through.
    CHECK(test::exists(p.a.dir + "/.syncd.root"));
    p.stop(p.a);
    p.sh("rm " + p.a.dir + "/.syncd.root " + p.a.dir + "/cert0.pem");
    const size_t from = test::read_file(p.a.log).size();
    test::write_file(p.b.dir + "/from-b", "b");
    p.start(p.a);
    REQUIRE_MESSAGE(test::wait_for_text(p.a.log, "the root marker " + p.a.dir + "/.syncd.root is missing, but the index knows", from, 60000), p.logs());
    CHECK(p.a.proc->wait() == 255);
    CHECK(test::exists(p.b.dir + "/cert0.pem"));
    CHECK_FALSE(test::exists(p.a.dir + "/from-b"));
    p.sh("touch " + p.a.dir + "/.syncd.root");
    p.start(p.a);
    p.converged();
    CHECK_FALSE(test::exists(p.b.dir + "/cert0.pem"));
  }

  TEST_CASE("a node whose volume is not mounted at a restart does not start: nothing lands below it - it rejoins once mounted") {
    Mesh p;
    const std::string volume = p.bind_volume(p.a.dir, "volume-a");
    for (int i = 0; i < 4; ++i) test::write_file(p.a.dir + "/cert" + std::to_string(i) + ".pem", "c");
    p.start(p.a);
    p.start(p.b);
    p.converged();
    p.stop(p.a);
    p.sh("umount " + p.a.dir);
    test::write_file(p.b.dir + "/while-a-down", "b");
    const size_t from = test::read_file(p.a.log).size();
    p.start(p.a);
    REQUIRE_MESSAGE(test::wait_for_text(p.a.log, "was the root of a mounted filesystem when this node last wrote it (", from, 60000), p.logs());
    CHECK(p.a.proc->wait() == 255);
    CHECK(test::list_dir(p.a.dir).empty());
    p.sh("mount --bind " + volume + " " + p.a.dir);
    p.start(p.a);
    p.converged();
    // Before, A ran and applied this file into the directory below the mount point; mounted
    // again, the volume lacked it, A's scan took that for a local delete and B lost it too.
    CHECK(test::read_file(volume + "/while-a-down") == "b");
    CHECK(test::read_file(p.b.dir + "/while-a-down") == "b");
  }

  TEST_CASE("a node with two syncs whose second volume is not mounted halts that sync only - it rejoins once mounted") {
    Mesh p;
    const std::string a2 = p.t / "a2", b2 = p.t / "b2";
    for (const auto& d : {a2, b2}) ::mkdir(d.c_str(), 0755);
    const std::string volume = p.bind_volume(a2, "volume-a2");
    const std::vector<std::string> second_a{"-rsyncssh", a2, "127.0.0.1", b2, "-remote-rundir", p.b.run},
        second_b{"-rsyncssh", b2, "127.0.0.1", a2, "-remote-rundir", p.a.run};
    test::write_file(a2 + "/cert.pem", "c");
    p.start(p.a, second_a);
    p.start(p.b, second_b);
    p.converged();
    REQUIRE_MESSAGE(test::wait_for(b2, "cert.pem", 60000), p.logs());
    p.stop(p.a);
    p.sh("umount " + a2);
    test::write_file(b2 + "/while-a2-down", "b");
    const size_t from = test::read_file(p.a.log).size();
    p.start(p.a, second_a);
    // Before, A did not start at all: its first sync stopped with the second.
    REQUIRE_MESSAGE(test::wait_for_text(p.a.log, "is halted, the other syncs run", from, 60000), p.logs());
    test::write_file(p.b.dir + "/live", "l");
    p.converged();
    CHECK(test::read_file(p.a.dir + "/live") == "l");
    CHECK(test::list_dir(a2).empty());
    const std::string status = p.t / "a2.status";
    CHECK(test::run(std::string(SYNCD_BINARY) + " status " + a2 + " -rundir " + p.a.run + " > " + status) == 0);
    CHECK_MESSAGE(test::read_file(status).find("HALTED: ") != std::string::npos, test::read_file(status));

    const size_t mounted = test::read_file(p.a.log).size();
    p.sh("mount --bind " + volume + " " + a2);
    REQUIRE_MESSAGE(test::wait_for_text(p.a.log, "is no longer halted: started (a mount changed)", mounted, 60000), p.logs());
    test::write_file(a2 + "/cookie.a2", "c");
    REQUIRE_MESSAGE(test::wait_for(b2, "cookie.a2", 60000), p.logs());
    test::write_file(b2 + "/cookie.b2", "c");
    REQUIRE_MESSAGE(test::wait_for(a2, "cookie.b2", 60000), p.logs());
    // The cookie is no barrier for what B wrote while A was down: if it was written before B
    // answered A's index request, both go in that answer, in path order (cookie.b2 first).
    REQUIRE_MESSAGE(test::wait_for(a2, "while-a2-down", 60000), p.logs());
    CHECK(test::read_file(volume + "/while-a2-down") == "b");
    CHECK(test::read_file(b2 + "/cert.pem") == "c");
  }

  TEST_CASE("a node whose disk is full: what does not fit waits, the rest flows both ways, nothing is lost or deleted") {
    Mesh p;
    p.mount("-t tmpfs -o size=1m syncd-full-b", p.b.dir);
    p.start(p.a);
    p.start(p.b);
    p.converged();
    p.sh("head -c 2000000 /dev/urandom > " + p.a.dir + "/big.bin");
    const std::string big = test::read_file(p.a.dir + "/big.bin");
    test::write_file(p.a.dir + "/small-a.pem", "a");
    test::write_file(p.b.dir + "/small-b.pem", "b");
    REQUIRE_MESSAGE(test::wait_for(p.b.dir, "small-a.pem", 60000), p.logs());
    REQUIRE_MESSAGE(test::wait_for(p.a.dir, "small-b.pem", 60000), p.logs());
    CHECK(test::read_file(p.a.dir + "/big.bin") == big);  // the writer's copy is never touched
    CHECK_FALSE(test::exists(p.b.dir + "/big.bin"));
    REQUIRE_MESSAGE(test::wait_for_text(p.a.log, "will send big.bin again", 0, 60000), p.logs());
    CHECK(test::read_file(p.b.log).find("No space left on device") != std::string::npos);
    // Room again: the waiting version arrives without anyone touching the file.
    p.sh("mount -o remount,size=16m " + p.b.dir);
    REQUIRE_MESSAGE(test::wait_until(p.b.dir, [&] {
                      return test::exists(p.b.dir + "/big.bin") && test::read_file(p.b.dir + "/big.bin") == big;
                    }, 90000),
                    p.logs());
    p.converged();
    CHECK(test::read_file(p.a.dir + "/big.bin") == big);
    CHECK(test::list_dir(p.b.dir).size() == test::list_dir(p.a.dir).size());
  }

  TEST_CASE("a node whose volume is lazily unmounted while it runs halts at once - writes and deletes nothing - resumes once mounted") {
    Mesh p;
    const std::string volume = p.bind_volume(p.a.dir, "volume-a");
    for (int i = 0; i < 6; ++i) test::write_file(p.a.dir + "/cert" + std::to_string(i) + ".pem", "c");
    p.start(p.a);
    p.start(p.b);
    p.converged();
    // Lazily unmounted (a plain umount is refused: the daemon holds the volume open). Before, A
    // went on working in the detached volume through its open root: B's changes landed where
    // nobody on A could see them, and what A's applications wrote at the path was never synced.
    const size_t from = test::read_file(p.a.log).size();
    p.sh("umount -l " + p.a.dir);
    REQUIRE_MESSAGE(test::wait_for_text(p.a.log, "Sync1 is halted: the source " + p.a.dir + " is another directory", from, 60000),
                    p.logs());
    // Started again at once and refused: the root is a plain directory now.
    REQUIRE_MESSAGE(test::wait_for_text(p.a.log, "is a plain directory now: is its volume mounted?", from, 60000), p.logs());
    const size_t b_from = test::read_file(p.b.log).size();
    test::write_file(p.b.dir + "/while-unmounted.pem", "b");
    // B's sessions to A end with the reason, and it keeps the file for later.
    REQUIRE_MESSAGE(test::wait_for_text(p.b.log, "is halted:", b_from, 60000), p.logs());
    CHECK(test::list_dir(p.a.dir).empty());
    CHECK_FALSE(test::exists(volume + "/while-unmounted.pem"));
    for (int i = 0; i < 6; ++i) CHECK(test::exists(p.b.dir + "/cert" + std::to_string(i) + ".pem"));
    // Mounted again: A starts by itself and catches up.
    const size_t mounted = test::read_file(p.a.log).size();
    p.sh("mount --bind " + volume + " " + p.a.dir);
    REQUIRE_MESSAGE(test::wait_for_text(p.a.log, "Sync1 is no longer halted: started (a mount changed)", mounted, 60000), p.logs());
    p.converged();
    CHECK(test::read_file(volume + "/while-unmounted.pem") == "b");
    for (int i = 0; i < 6; ++i) CHECK(test::exists(p.b.dir + "/cert" + std::to_string(i) + ".pem"));
  }

  TEST_CASE("a node halted while running ends the sessions its peer opened to it - their attach processes exit") {
    Mesh p;
    p.bind_volume(p.a.dir, "volume-a");
    p.bind_volume(p.b.dir, "volume-b");
    p.start(p.a);
    p.start(p.b);
    p.converged();
    // The node with the lower id dials, and its `attach` on the other node joins that node's
    // daemon. That other node is halted here.
    Node* dialed = &p.dialed_of_pair();
    const size_t from = test::read_file(dialed->log).size();
    p.sh("umount -l " + dialed->dir);
    REQUIRE_MESSAGE(test::wait_for_text(dialed->log, "Sync1 is halted: the source " + dialed->dir, from, 60000), p.logs());
    // Before, the halted node's sessions were dropped without their end line: each attach
    // process waited for it for good, holding its ssh channel (the peer saw no end), and the
    // control server kept a way to end the session that pointed into the destroyed node.
    CHECK_MESSAGE(test::wait_processes_exited("[a]ttach " + dialed->dir + " ", 30000), p.logs());
  }

  TEST_CASE("when the node that dials halts - its peer dials it within seconds and says why there is no session") {
    Mesh p;
    p.bind_volume(p.a.dir, "volume-a");
    p.bind_volume(p.b.dir, "volume-b");
    p.start(p.a);
    p.start(p.b);
    p.converged();
    Node& waiting = p.dialed_of_pair();
    Node& dialer = &waiting == &p.a ? p.b : p.a;
    const size_t from = test::read_file(waiting.log).size();
    p.sh("umount -l " + dialer.dir);
    REQUIRE_MESSAGE(test::wait_for_text(dialer.log, "Sync1 is halted: the source " + dialer.dir, 0, 60000), p.logs());
    const auto halted = std::chrono::steady_clock::now();
    // The pair's one session is gone and its dialer will not dial. The other node used to wait
    // 30 s for it before dialing itself; now 2 s after the session ended. Its dial is refused
    // with the reason, which its log (and status) then show.
    REQUIRE_MESSAGE(test::wait_for_text(waiting.log, "is halted:", from, 60000), p.logs());
    const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - halted).count();
    CHECK_MESSAGE(waited < 15000, "the peer learned of the halt after " << waited << " ms\n" << p.logs());
    CHECK(test::read_file(waiting.log).find("has not dialed this node: dialing it again", from) != std::string::npos);
  }

  TEST_CASE("a node back after its peer's reconnect backoff grew is dialed at once - not when that backoff ends") {
    Mesh p;
    p.start(p.a);
    p.start(p.b);
    p.converged();
    Node& back = p.dialed_of_pair();
    Node& dialer = &back == &p.a ? p.b : p.a;
    p.stop(back);
    // Its dialer's attempts fail (no daemon owns that tree now) and the backoff doubles: wait for
    // a pause of at least 8 s before its next attempt.
    const size_t from = test::read_file(dialer.log).size();
    long pause_ms = 0;
    REQUIRE_MESSAGE(test::wait_until(p.t.path(), [&] {
      const std::string log = test::read_file(dialer.log).substr(from);
      const std::string key = "; reconnecting in ";
      const size_t at = log.rfind(key);
      if (at != std::string::npos) pause_ms = std::atol(log.c_str() + at + key.size());
      return pause_ms >= 8000;
    }, 60000), p.logs());
    const auto seen = std::chrono::steady_clock::now();
    p.start(back);
    test::write_file(back.dir + "/back.pem", "b");
    // Before, the node that came back dialed, learned that its peer dials, closed its session and
    // waited; the pair had no session until the dialer's pause ended (up to 30 s). The dialer
    // now dials when the peer's session reaches it. (The deadline ends 2 s before the pause.)
    const auto spent = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - seen).count();
    CHECK_MESSAGE(test::wait_for(dialer.dir, "back.pem", static_cast<int>(pause_ms - 2000 - spent)), p.logs());
    CHECK(test::read_file(dialer.log).find("is up again (it dialed this node): dialing it now", from) != std::string::npos);
    p.converged();
  }

  TEST_CASE("a node whose volume turns read-only: its peer's changes wait - nothing is lost - they land once it is writable") {
    Mesh p;
    p.mount("-t tmpfs -o size=16m syncd-ro-b", p.b.dir);
    p.start(p.a);
    p.start(p.b);
    p.converged();
    p.sh("mount -o remount,ro " + p.b.dir);
    for (int i = 0; i < 5; ++i) test::write_file(p.a.dir + "/ro" + std::to_string(i) + ".pem", "x");
    REQUIRE_MESSAGE(test::wait_for_text(p.a.log, "Read-only file system", 0, 60000), p.logs());
    CHECK(test::exists(p.a.dir + "/ro0.pem"));
    p.sh("mount -o remount,rw " + p.b.dir);
    p.converged();
    for (int i = 0; i < 5; ++i) CHECK(test::exists(p.b.dir + "/ro" + std::to_string(i) + ".pem"));
  }

  TEST_CASE("SIGHUP (reload) on a node while both write, also one during a reload: nothing is lost, no conflict copies") {
    Mesh p;
    p.start(p.a);
    p.start(p.b);
    p.converged();
    const std::string reset = "--- HUP signal, resetting ---";
    for (int round = 0; round < 3; ++round) {
      const std::string r = std::to_string(round);
      for (int i = 0; i < 20; ++i) {
        test::write_file(p.a.dir + "/a" + r + "-" + std::to_string(i) + ".pem", "a");
        test::write_file(p.b.dir + "/b" + r + "-" + std::to_string(i) + ".pem", "b");
        if (i == 9) p.b.proc->signal(SIGHUP);
      }
      // The second SIGHUP comes as soon as the first reload begins, while it replaces the nodes.
      // Before, libuv had put SIG_DFL back for that moment, and the daemon died without a word.
      // (Each waits for the one before to be taken: two signals of one kind may merge.)
      for (int k = 1; k <= 2; ++k) {
        p.a.proc->signal(SIGHUP);
        const size_t want = static_cast<size_t>(2 * round + k);
        REQUIRE_MESSAGE(test::wait_until(p.t.path(), [&] { return test::count_text(p.a.log, reset) >= want; }), p.logs());
      }
    }
    p.converged();
    for (int round = 0; round < 3; ++round) {
      for (int i = 0; i < 20; ++i) {
        const std::string n = std::to_string(round) + "-" + std::to_string(i) + ".pem";
        CHECK(test::read_file(p.b.dir + "/a" + n) == "a");
        CHECK(test::read_file(p.a.dir + "/b" + n) == "b");
      }
    }
    for (const auto& f : test::list_dir(p.a.dir)) CHECK_MESSAGE(f.find(".sync-conflict-") == std::string::npos, f);
    CHECK(test::count_text(p.b.log, reset) >= 1);
    p.stop(p.a);  // a clean exit (128 + SIGTERM), checked by stop()
    p.stop(p.b);
  }

  TEST_CASE("a node whose state directory's disk is full: nothing is lost, it catches up once there is room") {
    Mesh p;
    ::mkdir(p.b.state.c_str(), 0700);
    p.mount("-t tmpfs -o size=4m syncd-full-state", p.b.state);
    p.start(p.a);
    p.start(p.b);
    p.converged();
    // Fill what is left of it.
    (void)test::run("head -c 8000000 /dev/zero > " + p.b.state + "/filler 2>/dev/null");
    for (int i = 0; i < 50; ++i) test::write_file(p.a.dir + "/a" + std::to_string(i) + ".pem", std::string(3000, 'a'));
    for (int i = 0; i < 50; ++i) test::write_file(p.b.dir + "/b" + std::to_string(i) + ".pem", std::string(3000, 'b'));
    // B's index cannot commit what it saw (nor what it applied): its watcher's events are spent.
    REQUIRE_MESSAGE(test::wait_for_text(p.b.log, "are not recorded (the index did not commit): looked at again in", 0, 60000),
                    p.logs());
    p.sh("rm " + p.b.state + "/filler");
    p.converged();
    for (int i = 0; i < 50; ++i) {
      CHECK(test::read_file(p.b.dir + "/a" + std::to_string(i) + ".pem") == std::string(3000, 'a'));
      CHECK(test::read_file(p.a.dir + "/b" + std::to_string(i) + ".pem") == std::string(3000, 'b'));
    }
    // Before, B's changes whose commit failed were never sent (until a restart's scan).
  }

  TEST_CASE("a node restored from a snapshot (tree and state directory) gets every newer version back - its own too - and its next changes reach the peer") {
    Mesh p;
    p.start(p.a);
    p.start(p.b);
    // Restored in turn: one session per pair, so the peer that notices is the dialing side of it
    // one time and the joined side the other.
    const auto restore_round = [&](Node& x, Node& y) {
      const std::string ca = x.name + "-ca.pem", crl = x.name + "-crl.pem";
      test::write_file(x.dir + "/" + ca, "v0");
      p.converged();
      p.stop(x);
      const std::string snap = p.t / ("snapshot-" + x.name);
      p.sh("mkdir " + snap + " && cp -a " + x.dir + " " + x.state + " " + snap + "/");
      p.start(x);
      // Ten versions of one file after the snapshot, applied on X: X's index numbers ten more
      // records, and Y's resume point for X's index moves past them.
      for (int i = 1; i <= 10; ++i) {
        const std::string v = "v" + std::to_string(i);
        test::write_file(y.dir + "/" + ca, v);
        REQUIRE_MESSAGE(test::wait_until(x.dir, [&] { return test::read_file(x.dir + "/" + ca) == v; }, 30000), p.logs());
      }
      // And versions X itself made after the snapshot: Y holds them as X's own, which it never
      // sends back to X — unless X went back.
      test::write_file(x.dir + "/" + crl, "made on X after the snapshot");
      test::write_file(x.dir + "/" + ca, "v11 from X");
      p.converged();
      p.stop(x);
      const std::string base_dir = x.dir.substr(x.dir.rfind('/') + 1), base_state = x.state.substr(x.state.rfind('/') + 1);
      p.sh("rm -rf " + x.dir + " " + x.state + " && cp -a " + snap + "/" + base_dir + " " + snap + "/" + base_state + " " +
           p.t.path() + "/");
      // Made while X is down after the restore: its record gets a number Y had passed before,
      // so Y, resuming after its old point, never asked for it.
      test::write_file(x.dir + "/" + x.name + "-issued.pem", "after the restore");
      const size_t from_x = test::read_file(x.log).size(), from_y = test::read_file(y.log).size();
      p.start(x);
      p.converged();
      CHECK(test::read_file(x.dir + "/" + ca) == "v11 from X");  // the cluster's newest, back from Y
      CHECK(test::read_file(x.dir + "/" + crl) == "made on X after the snapshot");
      CHECK(test::read_file(y.dir + "/" + x.name + "-issued.pem") == "after the restore");
      CHECK_MESSAGE(test::read_file(x.log).find("it went back (restored from a snapshot or backup", from_x) != std::string::npos, p.logs());
      CHECK(test::read_file(y.log).find("it went back (restored from a snapshot or backup", from_y) != std::string::npos);
      CHECK(test::read_file(y.log).find("of its own versions held here sent back to it", from_y) != std::string::npos);
      // And later: Y's point moved back with X's index, X's next change while down still
      // reaches Y.
      p.stop(x);
      test::write_file(x.dir + "/" + x.name + "-issued2.pem", "later");
      p.start(x);
      p.converged();
      CHECK(test::read_file(y.dir + "/" + x.name + "-issued2.pem") == "later");
    };
    restore_round(p.a, p.b);
    restore_round(p.b, p.a);
  }

  TEST_CASE("a node cloned with its state directory (a copied VM) is refused by the original and by the third node with the reason - with its state directory removed it joins as a new node and nothing is lost") {
    Mesh p(3);
    Node &a = p.a, &b = p.b, &c = p.c();
    test::write_file(a.dir + "/ca.pem", "v1");
    p.start(a);
    p.start(b);
    test::write_file(a.dir + "/cookie.before", "c");
    REQUIRE_MESSAGE(test::wait_for(b.dir, "cookie.before", 60000), p.logs());
    // B's own link to A has heard A's id (C runs no daemon yet, so no other link can have):
    // of two peers with one id, B keeps the one it knew first. A session A dialed does not
    // tell B which configured peer it is.
    REQUIRE_MESSAGE(test::wait_until(p.t.path(), [&] {
      const std::string log = test::read_file(b.log);
      return log.find("dials this node: one session per pair") != std::string::npos ||
             log.find("connected to 127.0.0.1: peer node") != std::string::npos;
    }, 60000), p.logs());
    // C is A's VM cloned: the tree and the state directory (with A's node id) copied.
    p.stop(a);
    p.sh("rm -rf " + c.dir + " " + c.state + " && cp -a " + a.dir + " " + c.dir + " && cp -a " + a.state + " " + c.state);
    p.start(a);
    p.start(c);
    // A and C find each other's id is their own; B (running all along) finds C announcing the
    // id it knows as A's.
    REQUIRE_MESSAGE(test::wait_for_text(a.log, "announces this node's own id", 0, 60000), p.logs());
    REQUIRE_MESSAGE(test::wait_for_text(c.log, "announces this node's own id", 0, 60000), p.logs());
    REQUIRE_MESSAGE(test::wait_for_text(b.log, "127.0.0.1:" + c.dir + " announces node id", 0, 60000), p.logs());
    // Meanwhile A and B go on syncing with each other.
    test::write_file(a.dir + "/from-a", "a");
    test::write_file(b.dir + "/from-b", "b");
    REQUIRE_MESSAGE(test::wait_for(b.dir, "from-a", 60000), p.logs());
    REQUIRE_MESSAGE(test::wait_for(a.dir, "from-b", 60000), p.logs());
    test::write_file(c.dir + "/from-copy", "made on the copy");
    // The fix the error names: the copy's state directory removed, syncd started again there.
    p.stop(c);
    p.sh("rm -rf " + c.state);
    p.start(c);
    p.converged();
    for (auto& n : p.nodes) {
      CHECK(test::read_file(n->dir + "/ca.pem") == "v1");
      CHECK(test::read_file(n->dir + "/from-a") == "a");
      CHECK(test::read_file(n->dir + "/from-b") == "b");
      CHECK(test::read_file(n->dir + "/from-copy") == "made on the copy");
      CHECK(p.copies(*n, "ca.pem").empty());
    }
  }

  TEST_CASE("three nodes: union, writes on every node, and a partitioned node's concurrent edit") {
    Mesh p(3);
    test::write_file(p.a.dir + "/from-a", "a");
    test::write_file(p.b.dir + "/from-b", "b");
    test::write_file(p.c().dir + "/from-c", "c");
    test::write_file(p.a.dir + "/crl.pem", "v1");
    for (auto& n : p.nodes) p.start(*n);
    p.converged();
    for (auto& n : p.nodes) {
      CHECK(test::read_file(n->dir + "/from-c") == "c");
      CHECK(test::read_file(n->dir + "/crl.pem") == "v1");
    }
    p.one_session_per_pair();
    // Live writes on every node at once.
    for (auto& n : p.nodes) {
      for (int i = 0; i < 20; ++i) test::write_file(n->dir + "/" + n->name + std::to_string(i), n->name);
    }
    p.sh("chmod 600 " + p.b.dir + "/from-a");
    p.converged();
    CHECK(mode_of(p.c().dir + "/from-a") == "600");
    // C is partitioned (down); A edits the CRL, C edits it offline; A's edit reaches B meanwhile.
    p.stop(p.c());
    test::write_file(p.a.dir + "/crl.pem", "v2 from a");
    const std::string c1 = "cookie.partition";
    test::write_file(p.a.dir + "/" + c1, "c");
    REQUIRE(test::wait_for(p.b.dir, c1, 60000));
    file_clock_past_now(p.t / "clock-probe");
    test::write_file(p.c().dir + "/crl.pem", "v2 from c, later");
    p.start(p.c());  // its startup scan dates C's edit by its time, after A's: C wins, A's is kept
    p.converged();
    for (auto& n : p.nodes) {
      CHECK(test::read_file(n->dir + "/crl.pem") == "v2 from c, later");
      const auto cp = p.copies(*n, "crl.pem");
      REQUIRE(cp.size() == 1);
      CHECK(test::read_file(n->dir + "/" + cp[0]) == "v2 from a");
    }
  }

  TEST_CASE("a running pair grown to three nodes (restarted with the new peer, it starts seeded with a fresh copy) - nothing lost, no conflict copy, deletes stay deleted") {
    // The operator's way to add a node: copy the tree to it, add it to both configs, restart.
    Mesh p(3);
    Node &a = p.a, &b = p.b, &c = p.c();
    p.unlinked = {{"a", "c"}, {"b", "c"}};
    test::write_file(a.dir + "/ca.pem", "v1");
    p.sh("mkdir -p " + a.dir + "/certs && echo one > " + a.dir + "/certs/1.pem && echo gone > " + a.dir + "/gone.pem");
    test::write_file(b.dir + "/from-b", "b");
    p.start(a);
    p.start(b);
    p.pair_settled(a, b);
    // History before the new node: an edit and a delete (a tombstone).
    test::write_file(a.dir + "/ca.pem", "v2");
    p.sh("rm " + b.dir + "/gone.pem");
    p.pair_settled(a, b);
    REQUIRE_FALSE(test::exists(a.dir + "/gone.pem"));
    // C gets a fresh copy of A's tree and a file of its own.
    p.seed_copy(a, c);
    test::write_file(c.dir + "/from-c", "c");
    // Both restarted with C configured; B writes while A restarts.
    p.unlinked.clear();
    p.stop(a);
    test::write_file(b.dir + "/during", "written while a restarted");
    p.start(a);
    p.stop(b);
    p.start(b);
    p.start(c);
    p.converged();
    for (auto& n : p.nodes) {
      CAPTURE(n->name);
      CHECK(test::read_file(n->dir + "/ca.pem") == "v2");
      CHECK(test::read_file(n->dir + "/certs/1.pem") == "one\n");
      CHECK(test::read_file(n->dir + "/from-b") == "b");
      CHECK(test::read_file(n->dir + "/from-c") == "c");
      CHECK(test::read_file(n->dir + "/during") == "written while a restarted");
      CHECK_FALSE(test::exists(n->dir + "/gone.pem"));
      CHECK(p.copies(*n, "ca.pem").empty());
      CHECK(p.copies(*n, "certs/1.pem").empty());
    }
    p.one_session_per_pair();
    // And the three go on: a write on the new node reaches both.
    test::write_file(c.dir + "/ca.pem", "v3 from c");
    p.converged();
    CHECK(test::read_file(a.dir + "/ca.pem") == "v3 from c");
    CHECK(test::read_file(b.dir + "/ca.pem") == "v3 from c");
  }

  TEST_CASE("a node started on an older copy of the tree: files and directories deleted on the others since stay deleted - of a file changed on both, the newer write is the file, the other its conflict copy") {
    // The new node's scan finds the deleted file as it was. Its version is later than the delete
    // and live beat deleted: the file came back on every node. The delete's record now keeps
    // the hash of what it deleted, and that content found again is deleted (TWO-WAY.md §4.11);
    // a directory found again likewise (it came back empty). The scan dated what it found by
    // its own clock, so the stale content won every conflict and the newer became the copy: a
    // seeding node's versions are dated by the files' times now.
    Mesh p(3);
    Node &a = p.a, &b = p.b, &c = p.c();
    p.unlinked = {{"a", "c"}, {"b", "c"}};
    test::write_file(a.dir + "/ca.pem", "v1");
    test::write_file(a.dir + "/crl.pem", "crl1");
    test::write_file(a.dir + "/key.pem", "key");
    p.sh("chmod 644 " + a.dir + "/key.pem");
    p.sh("mkdir -p " + a.dir + "/certs " + a.dir + "/old/sub && echo gone > " + a.dir + "/certs/gone.pem && ln -s ca.pem " +
         a.dir + "/old-link && echo x > " + a.dir + "/old/x.pem && echo y > " + a.dir + "/old/sub/y.pem");
    p.start(a);
    p.start(b);
    p.pair_settled(a, b);
    // The copy for C, then the pair goes on: edits, deletes of a file, a link and a directory tree.
    p.seed_copy(a, c);
    test::write_file(a.dir + "/ca.pem", "v2");
    test::write_file(a.dir + "/crl.pem", "crl2");
    p.sh("rm -r " + b.dir + "/certs/gone.pem " + b.dir + "/old-link " + b.dir + "/old");
    p.sh("chmod 600 " + b.dir + "/key.pem");  // a key made private: C's copy still says 644
    p.pair_settled(a, b);
    // Written on C's copy after all that (before C starts): the newest write of crl.pem.
    test::write_file(c.dir + "/crl.pem", "crl3, written on c");
    p.unlinked.clear();
    p.stop(a);
    p.start(a);
    p.stop(b);
    p.start(b);
    p.start(c);
    p.converged();
    for (auto& n : p.nodes) {
      CAPTURE(n->name);
      CHECK_FALSE(test::exists(n->dir + "/certs/gone.pem"));
      CHECK_FALSE(test::exists(n->dir + "/old-link"));
      CHECK_FALSE(test::exists(n->dir + "/old"));
      CHECK(mode_of(n->dir + "/key.pem") == "600");  // the later chmod, not the copy's mode
      CHECK(p.copies(*n, "key.pem").empty());
      // Nothing lost: both contents of each file changed on both sides, the newer write live.
      for (const auto& [file, newer, older] : {std::tuple{"ca.pem", "v2", "v1"}, std::tuple{"crl.pem", "crl3, written on c", "crl2"}}) {
        CAPTURE(file);
        CHECK(test::read_file(n->dir + "/" + file) == newer);
        const auto cp = p.copies(*n, file);
        REQUIRE(cp.size() == 1);
        CHECK(test::read_file(n->dir + "/" + cp[0]) == older);
      }
    }
  }

  TEST_CASE("files edited while a node's syncd was stopped are dated by their times - against the peers' edits meanwhile the newer write is the file, the other its conflict copy") {
    // The acme2certifier case: the CA on A goes on writing while A's syncd is stopped (an upgrade,
    // a crash). A's restart scan dated what it found by its own clock, the latest of all: an edit
    // made before the peers' newer one still won, and the newer CRL became the conflict copy.
    Mesh p(3);
    Node &a = p.a, &b = p.b, &c = p.c();
    test::write_file(a.dir + "/older-on-a.crl", "crl1");
    test::write_file(a.dir + "/newer-on-a.crl", "crl1");
    for (const char* key : {"/older-on-a.key", "/newer-on-a.key"}) {
      test::write_file(a.dir + key, "k");
      p.sh("chmod 644 " + a.dir + key + " && touch -d '2020-02-02' " + a.dir + key);
    }
    for (auto& n : p.nodes) p.start(*n);
    p.converged();
    p.stop(a);
    // Done on A while its syncd is down: an edit a minute ago (by its time), a chmod...
    test::write_file(a.dir + "/older-on-a.crl", "crl2, offline on a");
    p.sh("touch -d '1 minute ago' " + a.dir + "/older-on-a.crl");
    p.sh("chmod 600 " + a.dir + "/older-on-a.key");
    // ...B's changes of all four, recorded and dated by B's daemon (C has them)...
    test::write_file(b.dir + "/older-on-a.crl", "crl3, on b");
    test::write_file(b.dir + "/newer-on-a.crl", "crl3, on b");
    p.sh("chmod 640 " + b.dir + "/older-on-a.key " + b.dir + "/newer-on-a.key");
    REQUIRE_MESSAGE(test::wait_until(p.t.path(), [&] {
      return test::read_file(c.dir + "/older-on-a.crl") == "crl3, on b" && test::read_file(c.dir + "/newer-on-a.crl") == "crl3, on b" &&
             mode_of(c.dir + "/older-on-a.key") == "640" && mode_of(c.dir + "/newer-on-a.key") == "640";
    }, 60000), p.logs());
    // ...then on A an edit and a chmod. (The key's mtime says 2020: a chmod is dated by ctime.)
    file_clock_past_now(p.t / "clock-probe");
    test::write_file(a.dir + "/newer-on-a.crl", "crl4, offline on a");
    p.sh("chmod 600 " + a.dir + "/newer-on-a.key");
    p.start(a);
    p.converged();
    for (auto& n : p.nodes) {
      CAPTURE(n->name);
      CHECK(mode_of(n->dir + "/older-on-a.key") == "640");
      CHECK(mode_of(n->dir + "/newer-on-a.key") == "600");
      for (const auto& [file, newer, older] : {std::tuple{"older-on-a.crl", "crl3, on b", "crl2, offline on a"},
                                               std::tuple{"newer-on-a.crl", "crl4, offline on a", "crl3, on b"}}) {
        CAPTURE(file);
        CHECK(test::read_file(n->dir + "/" + file) == newer);
        const auto cp = p.copies(*n, file);
        REQUIRE(cp.size() == 1);
        CHECK(test::read_file(n->dir + "/" + cp[0]) == older);
      }
    }
  }

  TEST_CASE("a relay forwards what it applied while its stream to a frozen peer was full") {
    // x - r - y, r relays. x frozen: r's stream to it fills with a big file and r's job waits for
    // room with the store lock released, so y's version is applied at r meanwhile. That job used
    // to move r's cursor for x past y's record when it ended: x never got it. Only a node that
    // dials its peers (the lowest node id: one session per pair) authors on the link it streams
    // to, so the roles follow the ids, which a first full-mesh run shows.
    Mesh p(3);
    for (auto& n : p.nodes) p.start(*n);
    p.converged();
    Node* relay = nullptr;
    for (auto& n : p.nodes) {
      if (test::read_file(n->log).find("dials this node") == std::string::npos) relay = n.get();
    }
    REQUIRE_MESSAGE(relay != nullptr, p.logs());
    std::vector<Node*> ends;
    for (auto& n : p.nodes) {
      if (n.get() != relay) ends.push_back(n.get());
    }
    Node& x = *ends[0];  // the relay's first link: the one its watcher authors on
    Node& y = *ends[1];
    for (auto& n : p.nodes) p.stop(*n);
    p.unlinked = {{x.name, y.name}};
    for (auto& n : p.nodes) p.start(*n);
    p.converged();
    x.proc->signal(SIGSTOP);
    auto thaw = ScopeGuard([&]() noexcept {
      if (x.proc) x.proc->signal(SIGCONT);
    });
    // Random bytes (zstd cannot shrink them) well beyond the stream window and the socket buffers.
    p.sh("head -c 48000000 /dev/urandom > " + p.t / "big.bin && mv " + p.t / "big.bin " + relay->dir + "/big.bin");
    test::write_file(y.dir + "/relayed", "from " + y.name);
    REQUIRE_MESSAGE(test::wait_for(relay->dir, "relayed", 60000), p.logs());
    x.proc->signal(SIGCONT);
    REQUIRE_MESSAGE(test::wait_for(x.dir, "relayed", 60000), y.name << "'s file never reached " << x.name << " through " << relay->name << "; logs:\n" << p.logs());
    CHECK(test::read_file(x.dir + "/relayed") == "from " + y.name);
    p.converged();
  }

  TEST_CASE("large file edited on both nodes at once: both edits survive, in the file or a copy") {
    Mesh p;
    p.sh("head -c 6000000 /dev/urandom > " + p.a.dir + "/big.bin");
    p.start(p.a);
    p.start(p.b);
    p.converged();
    // Two small edits of different regions, one per node, with no barrier between them: they
    // travel as deltas; whether they cross (a conflict) or follow each other, nothing is lost.
    const std::string ea(1024, 'A'), eb(1024, 'B');
    p.sh("printf '%s' " + ea + " | dd of=" + p.a.dir + "/big.bin bs=1 seek=1000000 conv=notrunc status=none");
    p.sh("printf '%s' " + eb + " | dd of=" + p.b.dir + "/big.bin bs=1 seek=5000000 conv=notrunc status=none");
    p.converged();
    bool has_a = false, has_b = false;
    for (const auto& name : test::list_dir(p.a.dir)) {
      if (name.rfind("big.bin", 0) != 0) continue;
      const std::string body = test::read_file(p.a.dir + "/" + name);
      REQUIRE(body.size() == 6000000);
      has_a = has_a || body.compare(1000000, 1024, ea) == 0;
      has_b = has_b || body.compare(5000000, 1024, eb) == 0;
    }
    CHECK(has_a);
    CHECK(has_b);
  }

  TEST_CASE("a big file edited on each node in turn: each edit travels as a delta, none on a base the peer has replaced") {
    Mesh p;
    std::mt19937_64 rng(91);
    const Bytes b = test::random_bytes(rng, 3 << 20);
    test::write_file(p.a.dir + "/big.bin", b);
    ::setenv("SPDLOG_LEVEL", "debug", 1);
    p.start(p.a);
    p.start(p.b);
    ::unsetenv("SPDLOG_LEVEL");
    p.converged();
    // a's sender keeps the signature of what it sent b; once b's own edit replaced that on a,
    // a delta on it would be refused (a round trip, then the whole file behind later changes).
    // Each receiver signs what it applied instead: the peer holds exactly that, so the next edit
    // made here is a delta on it. 3 MiB of random bytes: one whole copy would show.
    for (int round = 0; round < 3; ++round) {
      for (Node* n : {&p.b, &p.a}) {
        const uint64_t cost = p.edit_cost(*n, "big.bin", n->name + std::to_string(round), (round + 1) << 19);
        CHECK_MESSAGE(cost < 256 * 1024, "edit " << round << " on " << n->name << " cost " << cost << " bytes; logs:\n" << p.logs());
      }
    }
    CHECK_MESSAGE(test::count_text(p.a.log, "lacks the base") + test::count_text(p.b.log, "lacks the base") == 0, p.logs());
    CHECK_MESSAGE(test::count_text(p.a.log, "conflict") + test::count_text(p.b.log, "conflict") == 0, p.logs());
  }

  TEST_CASE("nodes started with the same big file: the first edit on either node already travels as a delta") {
    Mesh p;
    std::mt19937_64 rng(92);
    const Bytes b = test::random_bytes(rng, 3 << 20);
    // Seeded as operators seed a cluster: the same bytes on both nodes before they start. One
    // node's version wins; the other takes it (its content already held) and signs what it has.
    test::write_file(p.a.dir + "/big.bin", b);
    test::write_file(p.b.dir + "/big.bin", b);
    p.start(p.a);
    p.start(p.b);
    p.converged();
    for (Node* n : {&p.a, &p.b}) {
      const uint64_t cost = p.edit_cost(*n, "big.bin", "edited on " + n->name, 1 << 20);
      CHECK_MESSAGE(cost < 256 * 1024, "the first edit on " << n->name << " cost " << cost << " bytes; logs:\n" << p.logs());
    }
  }

  TEST_CASE("nodes seeded alike (same bytes and times, as lsyncd left them) start without sending those bytes to each other") {
    Mesh p;
    std::mt19937_64 rng(93);
    const Bytes b = test::random_bytes(rng, 3 << 20);
    test::write_file(p.a.dir + "/big.bin", b);
    p.sh("mkdir " + p.a.dir + "/certs");
    test::write_file(p.a.dir + "/certs/ca.pem", "-----BEGIN CERTIFICATE-----\nseeded\n");
    REQUIRE(test::run("cp -a " + p.a.dir + "/. " + p.b.dir + "/") == 0);
    // Each node offered what it holds; neither sent the 3 MiB (6.3 MB went before: whole, both ways).
    p.seeded_start("seeded alike");
    // And the first edit on either node is a delta on those bytes.
    for (Node* n : {&p.b, &p.a}) {
      const uint64_t cost = p.edit_cost(*n, "big.bin", "edited on " + n->name, 2 << 20);
      CHECK_MESSAGE(cost < 256 * 1024, "the first edit on " << n->name << " cost " << cost << " bytes");
    }
  }

  TEST_CASE("nodes seeded with a copy made without -p (same bytes, other times) start without sending those bytes") {
    Mesh p;
    std::mt19937_64 rng(94);
    test::write_file(p.a.dir + "/big.bin", test::random_bytes(rng, 3 << 20));
    p.sh("mkdir " + p.a.dir + "/certs");
    test::write_file(p.a.dir + "/certs/ca.pem", "-----BEGIN CERTIFICATE-----\nseeded\n");
    p.sh("touch -d '2020-02-02' " + p.a.dir + "/big.bin " + p.a.dir + "/certs/ca.pem");
    REQUIRE(test::run("cp -r " + p.a.dir + "/. " + p.b.dir + "/") == 0);  // new times
    p.seeded_start("seeded without -p");  // converged: the times agree too
  }

  TEST_CASE("a big file changed on one node before the first start goes as a delta against the other's copy - the loser kept once") {
    Mesh p;
    std::mt19937_64 rng(95);
    test::write_file(p.a.dir + "/big.bin", test::random_bytes(rng, 3 << 20));
    p.sh("touch -d '1 minute ago' " + p.a.dir + "/big.bin");  // so b's edit is later by its time too
    REQUIRE(test::run("cp -a " + p.a.dir + "/. " + p.b.dir + "/") == 0);
    edit_in_place(p.b.dir + "/big.bin", "changed on b before the first start", 1 << 20);
    ::setenv("SPDLOG_LEVEL", "runtime=debug,info", 1);
    p.start_scanned(p.a);
    p.start_scanned(p.b);  // the later write: b's content wins (dated by the file, Index::seeding)
    ::unsetenv("SPDLOG_LEVEL");
    p.converged();
    const uint64_t initial = p.bytes_out();
    MESSAGE("first start with one big file changed on b: " << initial << " bytes out");
    const std::string changed = test::read_file(p.b.dir + "/big.bin");
    CHECK(changed.find("changed on b before the first start") != std::string::npos);
    for (Node* n : {&p.a, &p.b}) {
      CHECK(test::read_file(n->dir + "/big.bin") == changed);
      CHECK(p.copies(*n, "big.bin").size() == 1);  // a's version, kept
    }
    // b's content reached a as a delta against a's copy (the probe, a's signature); a's own
    // version reached b only as the conflict copy (3 MiB, a new path: whole).
    const std::string la = test::read_file(p.a.log), lb = test::read_file(p.b.log);
    CHECK_MESSAGE(lb.find("path=big.bin body=2") != std::string::npos, p.logs());
    CHECK(lb.find("path=big.bin body=1") == std::string::npos);
    CHECK(la.find("path=big.bin body=1") == std::string::npos);  // a's version lost: never sent whole
    CHECK_MESSAGE(initial < (3u << 20) + 512 * 1024, "cost " << initial << " bytes; logs:\n" << p.logs());
    // The conflict is resolved once on a, when b's bytes are there (not again for the probe).
    size_t lost = 0;
    for (size_t at = la.find("big.bin: node"); at != std::string::npos; at = la.find("big.bin: node", at + 1)) ++lost;
    CHECK_MESSAGE(lost == 1, la);
  }

  TEST_CASE("a file a local program is still writing is not replaced under it: its writes make the newer version") {
    Mesh p;
    test::write_file(p.a.dir + "/ca.pem", "base\n");
    p.start(p.a);
    p.start(p.b);
    p.converged();
    // B's version is authored first (its startup scan), A's later, so A's would win and B's file
    // would become a conflict copy — while a program on B still has it open for writing. Its
    // next writes would land in the copy's inode, under a name no watch reports.
    p.stop(p.a);
    p.stop(p.b);
    test::write_file(p.b.dir + "/ca.pem", "B part one\n");
    const int fd = ::open((p.b.dir + "/ca.pem").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    REQUIRE(fd >= 0);
    bool open = true;
    auto closed = ScopeGuard([&]() noexcept {
      if (open) ::close(fd);
    });
    const size_t from = test::read_file(p.b.log).size();
    p.start_scanned(p.b);
    test::write_file(p.a.dir + "/ca.pem", "from A\n");
    p.start_scanned(p.a);
    // B leaves the file alone while it is open for writing (A retries)...
    REQUIRE_MESSAGE(test::wait_for_text(p.b.log, "is open for writing here", from, 60000), "logs:\n" << p.logs());
    CHECK(test::read_file(p.b.dir + "/ca.pem") == "B part one\n");
    CHECK(p.copies(p.b, "ca.pem").empty());
    // ...and what the program writes before closing it is B's newer version, which wins.
    const std::string more = "B part two\n";
    CHECK(::write(fd, more.data(), more.size()) == static_cast<ssize_t>(more.size()));
    ::close(fd);
    open = false;
    p.converged();
    for (const Node* n : {&p.a, &p.b}) {
      CHECK(test::read_file(n->dir + "/ca.pem") == "B part one\nB part two\n");
      const auto cp = p.copies(*n, "ca.pem");
      REQUIRE(cp.size() == 1);
      CHECK(test::read_file(n->dir + "/" + cp[0]) == "from A\n");
    }
  }

  TEST_CASE("a node killed -9 during the initial sync restarts and converges, no temp files left") {
    Mesh p;
    p.sh("mkdir -p " + p.a.dir + "/certs && cd " + p.a.dir + "/certs && for i in $(seq 1 2000); do echo cert$i > c$i.pem; done");
    p.start(p.b);
    p.start(p.a);
    // Kill B as soon as the first certificates arrive, in the middle of the initial sync.
    REQUIRE(test::wait_until(p.b.dir, [&] { return test::exists(p.b.dir + "/certs"); }, 60000));
    REQUIRE(test::wait_until(p.b.dir + "/certs", [&] { return test::list_dir(p.b.dir + "/certs").size() >= 10; }, 60000));
    p.b.proc->stop(SIGKILL);
    p.b.proc.reset();
    p.start(p.b);
    p.converged();
    CHECK(test::list_dir(p.b.dir + "/certs").size() == 2000);
    CHECK(test::run("test -z \"$(find " + p.b.dir + " -name '.syncd.*.tmp')\"") == 0);
  }

  TEST_CASE("tombstones are collected once every peer applied the delete, not while one is down") {
    Mesh p;
    const std::vector<std::string> gc = {"-tombstone-min-age", "0"};
    for (int i = 0; i < 4; ++i) test::write_file(p.a.dir + "/f" + std::to_string(i), "x");
    p.start(p.a, gc);
    p.start(p.b, gc);
    p.converged();
    auto field = [&](const Node& n, const std::string& key) {
      const std::string j = p.status_json(n);
      const size_t at = j.find("\"" + key + "\": ");
      REQUIRE(at != std::string::npos);
      return std::strtoull(j.c_str() + at + key.size() + 4, nullptr, 10);
    };
    auto collections_pass = [&](const Node& n, int k) {  // k more collection runs on node n
      const uint64_t start = field(n, "tombstone_collections");
      REQUIRE(test::wait_until(p.t.path(), [&] { return field(n, "tombstone_collections") >= start + static_cast<uint64_t>(k); }, 30000));
    };
    // B is down: A's deletes stay recorded (B has not applied them) however often A collects.
    p.stop(p.b);
    p.sh("rm " + p.a.dir + "/f0 " + p.a.dir + "/f1");
    collections_pass(p.a, 3);
    CHECK(field(p.a, "tombstones") == 2);
    // B back: it applies the deletes, says so, and both collect them.
    p.start(p.b, gc);
    p.converged();
    for (const Node* n : {&p.a, &p.b}) {
      collections_pass(*n, 2);
      CHECK(field(*n, "tombstones") == 0);
    }
    CHECK_FALSE(test::exists(p.b.dir + "/f0"));
    CHECK(test::exists(p.b.dir + "/f2"));
  }

  TEST_CASE("a disk returning EIO on one node: its unreadable edit is never written over - once readable, both edits are kept") {
    Mesh p;
    const std::string disk = p.t / "a.disk";
    ::mkdir(disk.c_str(), 0755);
    test::FaultFs fs(disk, p.a.dir, p.t.path());  // a's tree is on a disk that can fail
    auto stop = ScopeGuard([&]() noexcept {       // the daemons go before the mount
      p.a.proc.reset();
      p.b.proc.reset();
    });
    test::write_file(p.a.dir + "/crl.pem", "crl v1");
    p.start(p.a);
    p.start(p.b);
    p.converged();
    // a's copy is edited, then cannot be read; b edits the same file meanwhile.
    fs.fail("read", "EIO", "crl.pem");
    test::write_file(p.a.dir + "/crl.pem", "revoked on a");
    const size_t from = test::read_file(p.b.log).size();
    test::write_file(p.b.dir + "/crl.pem", "revoked on b");
    // a cannot tell whether b's version is newer than what it holds: it refuses, b retries.
    REQUIRE_MESSAGE(test::wait_for_text(p.b.log, "could not apply", from, 60000), p.logs());
    CHECK(test::read_file(disk + "/crl.pem") == "revoked on a");  // not written over
    CHECK(fs.injected() >= 1);
    // The disk recovers: a's edit is read and sent, b's arrives; a true conflict, both kept.
    fs.clear();
    p.converged();
    std::multiset<std::string> kept;
    kept.insert(test::read_file(p.a.dir + "/crl.pem"));
    const auto copies = p.copies(p.a, "crl.pem");
    REQUIRE_MESSAGE(copies.size() == 1, p.logs());
    kept.insert(test::read_file(p.a.dir + "/" + copies[0]));
    CHECK(kept == std::multiset<std::string>{"revoked on a", "revoked on b"});
  }

  TEST_CASE("two hosts as network namespaces: writes on both sides of a cut link converge after it heals") {
    test::require_root();
    test::NetnsPair net;  // first: torn down last, after every process in it
    test::TempDir t{"twoway-netns"};
    test::SshServer sshd_a(t / "sshd-a", {net.a(), net.addr_a(), 2222});
    test::SshServer sshd_b(t / "sshd-b", {net.b(), net.addr_b(), 2222});
    sshd_a.start();
    sshd_b.start();
    struct Host {
      std::string ns, dir, peer_addr, peer_dir, rsh, state, run, peer_run, log;
    };
    const Host ha{net.a(), t / "a", net.addr_b(), t / "b", sshd_b.rsh(), t / "state-a", t / "run-a", t / "run-b", t / "a.log"};
    const Host hb{net.b(), t / "b", net.addr_a(), t / "a", sshd_a.rsh(), t / "state-b", t / "run-b", t / "run-a", t / "b.log"};
    std::vector<std::unique_ptr<test::Child>> procs;
    for (const Host* h : {&ha, &hb}) {
      ::mkdir(h->dir.c_str(), 0755);
      procs.push_back(std::make_unique<test::Child>(
          std::vector<std::string>{"/usr/sbin/ip", "netns", "exec", h->ns, SYNCD_BINARY, "-nodaemon", "-rsyncssh", h->dir,
                                   h->peer_addr, h->peer_dir, "-remote-rundir", h->peer_run, "-bidirectional",
                                   "-statedir", h->state, "-rundir", h->run, "-rsh", h->rsh, "-remote-syncd",
                                   SYNCD_BINARY, "-transport", "libssh2"},
          h->log));
    }
    auto logs = [&] { return test::read_file(ha.log) + "----\n" + test::read_file(hb.log); };
    int cookies = 0;
    auto converged = [&] {
      for (int round = 0; round < 2; ++round) {
        for (const auto& [from, to] : {std::pair{&ha, &hb}, std::pair{&hb, &ha}}) {
          const std::string c = "cookie." + std::to_string(++cookies);
          test::write_file(from->dir + "/" + c, "c");
          REQUIRE_MESSAGE(test::wait_for(to->dir, c, 120000), logs());
        }
        for (const Host* h : {&ha, &hb}) {
          REQUIRE_MESSAGE(test::run(std::string(SYNCD_BINARY) + " status " + h->dir + " -rundir " + h->run +
                                    " --wait-idle 120000 >/dev/null") == 0, logs());
        }
      }
      const auto diff = test::tree_diff(ha.dir, hb.dir, [](const std::string& rel) {
        return rel.rfind("cookie.", 0) == 0 || rel == ".syncd.root";
      });
      for (const auto& d : diff) MESSAGE(d);
      REQUIRE_MESSAGE(diff.empty(), logs());
    };
    test::write_file(ha.dir + "/shared.crl", "v1");
    converged();
    net.set_link(false);
    test::write_file(ha.dir + "/only-a", "written on a during the cut");
    test::write_file(hb.dir + "/only-b", "written on b during the cut");
    test::write_file(ha.dir + "/shared.crl", "v2 from a");
    test::write_file(hb.dir + "/shared.crl", "v2 from b, later");
    net.set_link(true);
    converged();
    CHECK(test::read_file(ha.dir + "/only-b") == "written on b during the cut");
    CHECK(test::read_file(hb.dir + "/only-a") == "written on a during the cut");
    // Which edit wins depends on which daemon authored its version later (two clocks racing);
    // that both are kept, once each, does not.
    const std::string winner = test::read_file(ha.dir + "/shared.crl");
    CHECK((winner == "v2 from a" || winner == "v2 from b, later"));
    int copies = 0;
    for (const auto& name : test::list_dir(ha.dir)) {
      if (name.rfind("shared.crl.sync-conflict-", 0) == 0) {
        ++copies;
        CHECK(test::read_file(ha.dir + "/" + name) == (winner == "v2 from a" ? "v2 from b, later" : "v2 from a"));
      }
    }
    CHECK(copies == 1);
  }

  // Seeded random rounds on 2-3 nodes. Each round: some nodes go down (SIGTERM, sometimes losing
  // their state directory, or kill -9, or SIGSTOP), every
  // node — up or down — makes random changes (writes, big files and small edits inside them that
  // travel as deltas, deletes, chmods, renames, a subtree removal or move), the
  // nodes come back, and the mesh must converge with every version written in the round still
  // present as a file or a conflict copy. Overwriting or deleting what a node had already seen is
  // a legitimate loss, so within a round no two *connected* nodes touch the same name (they would
  // see each other's writes); a node that is down may touch anything (it is concurrent with all).
  // SYNCD_TWO_WAY_SEEDS=A-B and SYNCD_TWO_WAY_ROUNDS=N make it a soak (benches/README.md).
  TEST_CASE("randomized rounds with partitions, crashes and restarts converge and lose nothing") {
    const auto [seed_lo, seed_hi, rounds] = test::seed_range("SYNCD_TWO_WAY_SEEDS", "SYNCD_TWO_WAY_ROUNDS", {1, 5, 3});
    for (int seed = seed_lo; seed <= seed_hi; ++seed) {
      std::mt19937 rng(static_cast<uint32_t>(seed));
      std::mt19937 wipe_rng(static_cast<uint32_t>(seed) ^ 0x5eedu);  // its own stream: the rest of a seed's story stays
      const int n = 2 + static_cast<int>(rng() % 2);
      Mesh p(n);
      std::ostringstream story;
      story << "seed " << seed << ", " << n << " nodes\n";
      const std::vector<std::string> names = {"ca.crl", "key.pem", "cfg", "certs/1.pem", "certs/2.pem", "d/x", "d/y"};
      for (auto& node : p.nodes) p.sh("mkdir -p " + node->dir + "/certs " + node->dir + "/d");
      for (auto& node : p.nodes) p.start(*node);
      p.converged();
      for (int round = 0; round < rounds; ++round) {
        // Who goes down this round (never everyone).
        std::vector<bool> down(static_cast<size_t>(n), false);
        for (int i = 0; i < n; ++i) down[static_cast<size_t>(i)] = rng() % 3 == 0;
        if (std::all_of(down.begin(), down.end(), [](bool d) { return d; })) down[0] = false;
        // A node goes down by SIGKILL, by SIGTERM, or frozen by SIGSTOP: a frozen daemon keeps its
        // sessions, and on SIGCONT finds its own writes queued in inotify while its peers' versions
        // of the same names arrive - live concurrency, without a restart scan.
        std::vector<bool> frozen(static_cast<size_t>(n), false);
        for (int i = 0; i < n; ++i) {
          if (!down[static_cast<size_t>(i)]) continue;
          Node& node = *p.nodes[static_cast<size_t>(i)];
          const unsigned how = rng() % 3;
          story << "round " << round << ": " << node.name << (how == 0 ? " killed -9\n" : how == 1 ? " stopped\n" : " frozen\n");
          if (how == 0) {
            node.proc->stop(SIGKILL);
            node.proc.reset();
          } else if (how == 1) {
            p.stop(node);
            // Now and then the node is reinstalled: its state is gone, its tree stays. It comes
            // back as a new node that knows nothing; what it holds alike is not sent again
            // (HAVE), what differs is reconciled as concurrent versions.
            if (wipe_rng() % 3 == 0) {
              p.sh("rm -rf " + node.state);
              story << "  " << node.name << ": state directory removed\n";
            }
          } else {
            node.proc->signal(SIGSTOP);
            frozen[static_cast<size_t>(i)] = true;
          }
        }
        std::map<std::string, int> owner;  // name -> the one running node that may touch it
        std::set<std::pair<int, std::string>> touched;  // one change per node and name per round
        std::set<std::string> written;
        const int ops = 6 + static_cast<int>(rng() % 6);
        for (int k = 0; k < ops; ++k) {
          const int who = static_cast<int>(rng() % static_cast<uint32_t>(n));
          Node& node = *p.nodes[static_cast<size_t>(who)];
          const unsigned kind = rng() % 25;
          if (kind == 0 || kind == 22) {  // remove d/, or move it aside (either owns every d/* name)
            bool free = true;
            for (const auto& nm : names) {
              if (nm.rfind("d/", 0) != 0) continue;
              if (touched.count({who, nm}) || (!down[static_cast<size_t>(who)] && owner.count(nm) && owner[nm] != who)) free = false;
            }
            if (!free) continue;
            for (const auto& nm : names) {
              if (nm.rfind("d/", 0) != 0) continue;
              touched.insert({who, nm});
              if (!down[static_cast<size_t>(who)]) owner[nm] = who;
            }
            if (kind == 0) {
              p.sh("rm -rf " + node.dir + "/d");
              story << "  " << node.name << ": rm -rf d\n";
            } else {
              const std::string aside = "moved-" + std::to_string(round) + "-" + std::to_string(k);
              (void)test::run("[ -d " + node.dir + "/d ] && mv " + node.dir + "/d " + node.dir + "/" + aside);
              story << "  " << node.name << ": mv d " << aside << "\n";
            }
            continue;
          }
          const std::string nm = names[rng() % names.size()];
          if (touched.count({who, nm})) continue;
          if (!down[static_cast<size_t>(who)]) {
            if (owner.count(nm) && owner[nm] != who) continue;
            owner[nm] = who;
          }
          touched.insert({who, nm});
          const std::string path = node.dir + "/" + nm;
          if (kind == 23) {  // a file big enough for deltas (>= 64 KiB): its later edits travel as deltas
            const std::string tag = "seed" + std::to_string(seed) + "-r" + std::to_string(round) + "-" + node.name + "-" +
                                    std::to_string(k) + "-big-" + nm;
            std::string content;
            while (content.size() < 96 * 1024) content += tag + "-" + std::to_string(content.size()) + "\n";
            p.sh("mkdir -p $(dirname " + path + ")");
            test::write_file(path, content);
            written.insert(content);
            story << "  " << node.name << ": write big " << nm << "\n";
          } else if (kind == 24) {  // a small edit inside a big file, in place (same inode)
            struct stat st{};
            if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < 64 * 1024) continue;
            const std::string edit = "<edit r" + std::to_string(round) + " " + node.name + " " + std::to_string(k) + ">";
            const auto at = static_cast<off_t>(rng() % static_cast<uint32_t>(st.st_size - static_cast<off_t>(edit.size())));
            edit_in_place(path, edit, at);
            written.insert(test::read_file(path));  // this node's new version, whatever it edited
            story << "  " << node.name << ": edit big " << nm << " at " << at << "\n";
          } else if (kind < 14) {
            const std::string content = "seed" + std::to_string(seed) + "-r" + std::to_string(round) + "-" + node.name +
                                        "-" + std::to_string(k) + "-" + nm;
            p.sh("mkdir -p $(dirname " + path + ")");
            test::write_file(path, content);
            written.insert(content);
            story << "  " << node.name << ": write " << nm << "\n";
          } else if (kind < 17) {
            story << "  " << node.name << ": rm " << nm << "\n";
            (void)test::run("rm -f " + path);
          } else if (kind >= 20) {  // an editor's save: a temp file renamed over the name
            const std::string content = "seed" + std::to_string(seed) + "-r" + std::to_string(round) + "-" + node.name +
                                        "-" + std::to_string(k) + "-saved-" + nm;
            p.sh("mkdir -p $(dirname " + path + ")");
            const std::string tmp = path + ".swp";
            test::write_file(tmp, content);
            p.sh("mv " + tmp + " " + path);
            written.insert(content);
            story << "  " << node.name << ": save " << nm << "\n";
          } else if (kind < 19) {
            story << "  " << node.name << ": chmod " << nm << "\n";
            (void)test::run("chmod " + std::string(kind == 17 ? "600 " : "640 ") + path + " 2>/dev/null");
          } else {  // rename to a name this node may touch; never over an existing file (that loses on purpose)
            const std::string to = names[rng() % names.size()];
            if (to == nm || touched.count({who, to}) || (!down[static_cast<size_t>(who)] && owner.count(to) && owner[to] != who)) {
              continue;
            }
            touched.insert({who, to});
            if (!down[static_cast<size_t>(who)]) owner[to] = who;
            const std::string dst = node.dir + "/" + to;
            story << "  " << node.name << ": mv " << nm << " " << to << "\n";
            (void)test::run("if [ -f " + path + " ] && [ ! -e " + dst + " ]; then mkdir -p $(dirname " + dst + ") && mv " + path +
                            " " + dst + "; fi");
          }
        }
        for (int i = 0; i < n; ++i) {
          if (frozen[static_cast<size_t>(i)]) {
            p.nodes[static_cast<size_t>(i)]->proc->signal(SIGCONT);
          } else if (down[static_cast<size_t>(i)]) {
            p.start(*p.nodes[static_cast<size_t>(i)]);
          }
        }
        INFO(story.str());
        p.converged();
        // Every version written this round is somewhere (every tree is the same now).
        std::set<std::string> held;
        const std::string listing = p.t / "listing";
        REQUIRE(test::run("find " + p.a.dir + " -type f ! -name 'cookie.*' > " + listing) == 0);
        std::istringstream files(test::read_file(listing));
        for (std::string f; std::getline(files, f);) held.insert(test::read_file(f));
        for (const auto& w : written) CHECK_MESSAGE(held.count(w) == 1, "lost: " << w.substr(0, 200));
      }
    }
  }
}
