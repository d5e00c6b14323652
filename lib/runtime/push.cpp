#include "lib/runtime/push.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>


#include "lib/base/log.h"
#include "lib/codec/sha256.h"
#include "lib/runtime/control.h"
#include "lib/runtime/hello.h"
#include "lib/runtime/status_parts.h"
#include "lib/runtime/target_volume.h"
#include "lib/runtime/tree_overlap.h"
#include "lib/transport/keyfile.h"
#include "lib/transport/known_hosts.h"
#include "protocol/limits.h"

namespace syncd::runtime {
namespace {

auto& lg() { return log::get(log::Module::runtime); }

// Reserved (.syncd.*): never watched, scanned or replicated.
constexpr const char* kRootMarker = ".syncd.root";
// How long a session being set up keeps its place at the sshd (DialGate). A handshake, login and
// `syncd attach` take well under a second; ten is a stuck one.
constexpr uint64_t kDialHoldMs = 10000;
// A link whose peer dials this node (two-way, the peer has the lower id) checks that the pair's
// session is there this often, and dials itself when it is not.
constexpr uint64_t kPassiveCheckMs = 30000;
// ... and this soon after that session ended: its dialer is back within a second when it can.
constexpr uint64_t kPassiveRecheckMs = 2000;

constexpr std::array<const char*, 12> kSqlitePatterns = {
    "*.db", "*.db-wal", "*.db-shm", "*.db-journal",
    "*.sqlite", "*.sqlite-wal", "*.sqlite-shm", "*.sqlite-journal",
    "*.sqlite3", "*.sqlite3-wal", "*.sqlite3-shm", "*.sqlite3-journal"};

// On a two-way session both ends send and receive: what each message is for.
bool for_receiver(const protocol::Message& m) {
  return std::holds_alternative<protocol::FileVersion>(m) || std::holds_alternative<protocol::Data>(m) ||
         std::holds_alternative<protocol::Delta>(m) || std::holds_alternative<protocol::Remove>(m) ||
         std::holds_alternative<protocol::Rename>(m) || std::holds_alternative<protocol::IndexEnd>(m) ||
         std::holds_alternative<protocol::SigRequest>(m) || std::holds_alternative<protocol::IndexUpdate>(m);
}

// A peer announcing this node's own id: one of the two state directories is a copy of the other
// (TWO-WAY.md §4.1: the id is the key of every version this node authors).
std::string own_id_reason(const std::string& peer, uint64_t id) {
  return fmt::format(
      "{} announces this node's own id {:016x}: one of the two state directories is a copy of the other (a cloned "
      "VM, or the state directory copied along with the tree), and versions made on both would look like one "
      "node's and overwrite each other without a conflict copy. Refused. Stop syncd on the copy, remove its state "
      "directory and start it again: it joins as a new node and keeps its files",
      peer, id);
}

}  // namespace

namespace {

std::string home_dir() {
  if (const char* h = std::getenv("HOME"); h && *h) return h;
  if (const passwd* pw = ::getpwuid(::geteuid())) return pw->pw_dir;
  return "/root";
}

std::string expand_home(const std::string& p) {
  return p.rfind("~/", 0) == 0 ? home_dir() + p.substr(1) : p;
}

// Why the host's key is vouched for by a CA (an @cert-authority line of its known_hosts files),
// which only the OpenSSH client checks; empty when it is not.
std::string cert_authority(const transport::SshParams& p) {
  transport::KnownHosts kh;
  for (const auto& f : p.known_hosts) (void)kh.load(f);  // unreadable ones: the session says so
  const auto* ca = kh.cert_authority_for(p.host, p.port);
  if (ca == nullptr) return {};
  return ca->file + ":" + std::to_string(ca->line) + " trusts a certificate authority (@cert-authority) for " +
         p.host + ", whose host certificates libssh2 cannot check";
}

std::vector<std::string> split_ws(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream ss(s);
  for (std::string w; ss >> w;) out.push_back(expand_home(w));
  return out;
}

}  // namespace

Push::Push(uvx::Loop& loop, PushOptions opts)
    : loop_(loop), opts_(std::move(opts)), rng_(codec::random_u64()) {}

Push::~Push() {
  guard_.reset();
  if (jobs_) jobs_->stop();  // job threads first
  for (auto& j : joined_) {
    // Its attach process waits for this line, holding the ssh channel open; and the control
    // server's way to end the session early points into this node (a halted node goes while
    // the daemon and its control server stay).
    if (!j->ended && j->done) j->done("end 1 the daemon stopped this sync\n");
    j->done = nullptr;
    j->tx.reset();
    j->rx.reset();
  }
  joined_.clear();
  // Each sender (and its job thread) goes before the connection it writes to.
  for (auto& l : links_) {
    dial_done(*l);
    l->sender.reset();
    l->rx.reset();
    l->conn.reset();
    l->ssh.reset();
  }
}

Status Push::start() {
  if (opts_.peers.empty()) return Error::make(errc::unsupported, "push: no peer given");
  if (!opts_.dial_gate) opts_.dial_gate = std::make_shared<DialGate>();
  SYNCD_TRY_ASSIGN(rsh, transport::SshCommand::parse(opts_.rsh));
  rsh_ = std::move(rsh);
  for (const auto& spec : opts_.peers) {
    auto l = std::make_unique<Link>();
    l->spec = spec;
    l->backoff_ms = opts_.backoff_min_ms;
    SYNCD_TRY(choose_transport(*l));
    links_.push_back(std::move(l));
  }
  SYNCD_TRY_ASSIGN(root, fs::Root::open(opts_.source));
  root_ = std::make_unique<fs::Root>(std::move(root));
  root_->set_xattr_names(opts_.xattrs);
  root_->set_one_file_system(opts_.one_file_system);
  if (!opts_.two_way) root_->set_follow_links(opts_.follow_links);
  root_->set_specials(opts_.devices, opts_.specials);
  if (::mkdir(opts_.state_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Error::from_errno("create state directory " + opts_.state_dir);
  }
  SYNCD_TRY(check_state_dir_outside(opts_.state_dir, opts_.source, "the source"));
  SYNCD_TRY_ASSIGN(idx, store::Index::open(opts_.state_dir, store::Index::Sharing::exclusive));
  index_ = std::make_unique<store::Index>(std::move(idx));
  jobs_ = std::make_unique<JobQueue>(loop_, "syncd-node");
  // Read now, while no job thread uses the index yet (afterwards only under the store lock).
  for (auto& l : links_) {
    auto known = index_->link_node(l->spec.host + "\n" + l->spec.target);
    if (known.ok()) l->peer_node = *known;
  }
  SenderOptions base = opts_.sender;
  base.two_way = opts_.two_way;
  // One-way too: a mirror's source that looks unmounted at a restart must not empty its targets
  // (SECURITY.md §8 #30), which rsync --delete, and so lsyncd, would do.
  base.max_delete_share = opts_.max_delete_share;
  if (opts_.two_way) {
    // A two-way root that is not the volume it was (not mounted, or another directory) halts
    // before anything starts (TWO-WAY.md §4.9): running, it would apply the peers' versions into
    // the wrong tree and record them as held here; the right volume, back later, lacks those
    // files, and its next scan would take them for local deletes and delete them on every peer.
    SYNCD_TRY(check_target_volume(*root_, *index_, opts_.state_dir));
    // The root marker: made in a tree the index has never seen; missing from a tree it knows,
    // the volume is probably not mounted.
    const std::string marker = opts_.source + "/" + kRootMarker;
    struct stat st{};
    if (::lstat(marker.c_str(), &st) != 0) {
      SYNCD_TRY_ASSIGN(known, index_->count());
      if (known == 0) {
        UniqueFd m(::open(marker.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
        if (!m) return Error::from_errno("create root marker " + marker);
        const std::string text = "syncd root marker: keep this file. Without it syncd assumes the volume is not mounted.\n";
        (void)!::write(m.get(), text.data(), text.size());
      } else {
        return Error::make(errc::wrong_volume,
                           "the root marker " + marker + " is missing, but the index knows " + std::to_string(known) +
                               " files: is the volume mounted? Not syncing this directory (nothing is sent, applied "
                               "or deleted). If this is the right volume, create the marker (touch " + marker +
                               ") and start again");
      }
    }
    // SQLite files are rewritten in place by one process at a time; merged from two nodes they
    // are corrupt (TWO-WAY.md §4.12). Never replicated two-way, and named in the log.
    opts_.excludes.insert(opts_.excludes.end(), kSqlitePatterns.begin(), kSqlitePatterns.end());
    base.warn_excluded = watch::Excludes(std::vector<std::string>(kSqlitePatterns.begin(), kSqlitePatterns.end()));
    base.warn_reason = "an SQLite database (or its journal) must not be replicated active/active; "
                       "keep it outside the synced tree or use a database server";
  }
  for (size_t i = 0; i < links_.size(); ++i) {
    Link& l = *links_[i];
    SenderOptions so = base;
    so.watch_tree = i == 0;  // one watcher authors; every sender announces
    so.on_authored = [this] { announce_all(); };
    so.on_quiet = [this, &l](uint64_t ms, size_t awaiting) { said_quiet(l.spec.host + ":" + l.spec.target, ms, awaiting); };
    so.on_caught_up = [this, &l, user = so.on_caught_up](bool first) {
      l.backoff_ms = opts_.backoff_min_ms;  // a session that got this far was a good one
      if (first) startup_finished();
      lg().info("{} caught up (session {})", l.spec.host, l.session);
      if (user) user(first);
    };
    l.sender = std::make_unique<Sender>(loop_, *root_, *index_, source_excludes(opts_.excludes, opts_.filters, opts_.source, opts_.per_dir_excludes), nullptr, so);
    l.retry = std::make_unique<uvx::Timer>(loop_, [this, &l] { connect(l); });
    l.dial_hold = std::make_unique<uvx::Timer>(loop_, [&l] { dial_done(l); });
    l.hello_wait = std::make_unique<uvx::Timer>(loop_, [this, &l] {
      // The native session knows whether SSH got as far as the remote command; the OpenSSH
      // client may still be connecting (a host that drops packets: TCP gives up after ~2 min).
      const bool ssh_up = l.session_ssh && l.session_ssh->running();
      lost(l, l.session,
           fmt::format("no answer from `{} attach` on {} within {} s of dialing{}: {}", opts_.remote_syncd, l.spec.host,
                       hello_wait_ms() / 1000, opts_.io_timeout_s > 0 ? " (rsync.timeout)" : "",
                       ssh_up ? "the SSH session is up, so the remote syncd hangs (or a syncd daemon there is stopped or hung)"
                              : "the host or its sshd does not answer, or the remote syncd hangs (or a syncd daemon there "
                                "is stopped or hung)"));
    });
    SYNCD_TRY(l.sender->start());
  }
  for (auto& l : links_) connect(*l);
  if (opts_.io_timeout_s > 0) {
    io_check_ = std::make_unique<uvx::Timer>(loop_, [this] { check_io_timeouts(); });
    io_check_->start(1000, 1000);
  }
  gc_ = std::make_unique<uvx::Timer>(loop_, [this] { collect_tombstones(); });
  gc_->start(std::min<uint64_t>(60000, std::max<uint64_t>(1000, opts_.tombstone_min_age_s * 500)));
  if (opts_.on_root_replaced) {
    guard_ = RootGuard::start(loop_, {{root_.get(), "the source"}}, opts_.on_root_replaced);
  }
  return {};
}

void Push::check_io_timeouts() {
  const uint64_t now_ms = mono_us() / 1000;
  for (auto& lp : links_) {
    Link& l = *lp;
    if (!l.conn || !l.up) continue;
    const uint64_t moved = l.conn->bytes_in() + l.conn->bytes_out();
    if (moved != l.io_seen || l.sender->awaiting_ack() == 0) {
      l.io_seen = moved;
      l.io_seen_ms = now_ms;
    } else if (now_ms - l.io_seen_ms >= opts_.io_timeout_s * 1000) {
      l.io_seen_ms = now_ms;
      lost(l, l.session, "no data for " + std::to_string(opts_.io_timeout_s) + " s while versions await the peer (rsync.timeout)");
    }
  }
}

void Push::said_quiet(const std::string& peer, uint64_t quiet_ms, size_t awaiting) const {
  if (quiet_ms == 0) return lg().info("{} answers again", peer);
  lg().warn("{}: no answer for {} s while {} version{} await{} it: its syncd is busy with a big change, or hangs while "
            "the SSH session stays up ({}; `syncd status` shows how long it lasts)",
            peer, quiet_ms / 1000, awaiting, awaiting == 1 ? "" : "s", awaiting == 1 ? "s" : "",
            opts_.io_timeout_s > 0 ? "rsync.timeout ends the session after " + std::to_string(opts_.io_timeout_s) + " s without data"
                                   : std::string("nothing ends such a session unless rsync.timeout is set"));
}

uint64_t Push::hello_wait_ms() const noexcept {
  return opts_.io_timeout_s > 0 ? opts_.io_timeout_s * 1000 : opts_.hello_wait_ms;
}

void Push::collect_tombstones() {
  // Hourly, or twice per min age when that is shorter (tests run it with a min age of 0).
  const uint64_t every = std::min<uint64_t>(3600000, std::max<uint64_t>(1000, opts_.tombstone_min_age_s * 500));
  if (gc_running_) return gc_->start(every);
  gc_running_ = true;
  std::vector<uint64_t> peers;
  bool known = true;
  for (const auto& l : links_) {
    if (l->peer_node == 0) known = false;
    else peers.push_back(l->peer_node);
  }
  jobs_->post([this, peers, known, every]() -> JobQueue::Done {
    std::lock_guard lk(index_->mutex());
    auto n = index_->collect_tombstones(peers, known, Hlc::wall_ms(), opts_.tombstone_min_age_s * 1000,
                                        opts_.tombstone_max_age_s * 1000);
    auto c = index_->tombstone_count();
    const uint64_t removed = n.ok() ? *n : 0, left = c.ok() ? *c : 0;
    const std::string err = n.ok() ? std::string() : n.error().message();
    return [this, removed, left, err, every] {
      gc_running_ = false;
      ++gc_runs_;
      tombstones_ = left;
      if (!err.empty()) lg().warn("tombstone collection: {}", err);
      if (removed > 0) lg().info("tombstone collection: {} removed, {} kept", removed, left);
      gc_->start(every);
    };
  });
}

void Push::startup_finished() {
  // lsyncd's line, once per run: the first peer has everything this node had at startup.
  if (startup_logged_) return;
  startup_logged_ = true;
  lg().info("Startup of \"{}/\" finished: 0", opts_.source);
}

void Push::announce_all() {
  for (auto& l : links_) l->sender->announce();
  for (auto& j : joined_) {
    if (j->tx && !j->ended) j->tx->announce();
  }
}

ReceiverOptions Push::receiver_options() {
  ReceiverOptions ro;
  ro.two_way = true;
  ro.apply = opts_.apply;
  ro.on_changed = [this] { announce_all(); };
  ro.on_conflict_copy = [this](const std::string& path, const std::string& copy) { run_conflict_hook(path, copy); };
  ro.excludes = source_excludes(opts_.excludes, opts_.filters, opts_.source, opts_.per_dir_excludes);
  ro.deletes_held = [this] { return !links_.front()->sender->brake().empty(); };
  return ro;
}

std::string Push::refused_peer(const Link& l, uint64_t node) const {
  // One way, a peer's id keys nothing of this node's: cloned targets are no harm there.
  if (!opts_.two_way) return {};
  const std::string where = l.spec.host + ":" + l.spec.target;
  if (node == index_->node_id()) return own_id_reason(where, node);
  // Two configured peers cannot be one node: one of them is a copy of the other (or the same
  // node is listed twice). The first one's records stay the ones this node holds for that id.
  for (const auto& o : links_) {
    if (o.get() != &l && o->peer_node == node) {
      return fmt::format("{} announces node id {:016x}, which {}:{} has: one of the two is a copy of the other (a "
                         "cloned VM, or the state directory copied along with the tree), or one node is configured "
                         "twice. Refused, so that versions of two nodes are never taken for one node's. Stop syncd "
                         "on the copy, remove its state directory and start it again: it joins as a new node",
                         where, node, o->spec.host, o->spec.target);
    }
  }
  return {};
}

void Push::remember_peer_node(Link& l, uint64_t node) {
  if (l.peer_node == node) return;
  // Kept for tombstone collection and for telling a copied node from the one it copies (after a
  // restart too); the index is written on the node's job thread.
  l.peer_node = node;
  const std::string key = l.spec.host + "\n" + l.spec.target;
  jobs_->post([this, key, node]() -> JobQueue::Done {
    std::lock_guard lk(index_->mutex());
    if (auto st = index_->set_link_node(key, node); !st) {
      lg().warn("index: the peer's node id not kept (tombstone collection waits for it): {}", st.error().message());
    }
    return {};
  });
}

bool Push::claimed_twice(uint64_t node) const noexcept {
  return node != 0 && std::any_of(links_.begin(), links_.end(), [&](const auto& l) { return l->refused_node == node; });
}

const Push::Joined* Push::joined_with(uint64_t node) const noexcept {
  for (const auto& j : joined_) {
    if (!j->ended && j->two_way && node != 0 && j->peer_node == node) return j.get();
  }
  return nullptr;
}

bool Push::Joined::idle() const noexcept {
  if (ended) return true;
  if (!rx->idle() || conn->pending_out() != 0) return false;
  return !tx || (tx->idle() && tx->caught_up() && tx->awaiting_ack() == 0);
}

Status Push::choose_transport(Link& l) {
  // What the native session would use: the rsh line's choices, else OpenSSH's defaults.
  auto& p = l.params;
  p.peer = l.spec.host;
  p.host = l.spec.host;
  if (const size_t at = p.host.rfind('@'); at != std::string::npos) {
    p.user = p.host.substr(0, at);
    p.host = p.host.substr(at + 1);
  }
  if (rsh_.login) p.user = *rsh_.login;
  if (p.user.empty()) {
    const passwd* pw = ::getpwuid(::geteuid());
    p.user = pw ? pw->pw_name : "root";
  }
  p.port = rsh_.port.value_or(22);
  p.family = rsh_.family;
  for (const auto& i : rsh_.identities) p.identities.push_back(expand_home(i));
  if (p.identities.empty()) p.identities = transport::default_identities();
  const auto user_kh = rsh_.option("UserKnownHostsFile");
  p.known_hosts = user_kh ? split_ws(*user_kh)
                          : std::vector<std::string>{home_dir() + "/.ssh/known_hosts", home_dir() + "/.ssh/known_hosts2"};
  const auto global_kh = rsh_.option("GlobalKnownHostsFile");
  for (const auto& f : global_kh ? split_ws(*global_kh)
                                 : std::vector<std::string>{"/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"}) {
    p.known_hosts.push_back(f);
  }
  const std::string strict = rsh_.option("StrictHostKeyChecking").value_or("ask");
  if (strict == "no" || strict == "off") {
    p.strict = transport::StrictHostKeys::no;
  } else if (strict == "accept-new") {
    p.strict = transport::StrictHostKeys::accept_new;
  } else {
    p.strict = transport::StrictHostKeys::yes;  // yes, and "ask" (nobody to ask: BatchMode)
  }
  if (auto t = rsh_.option("ConnectTimeout")) p.connect_timeout_ms = std::max(1, std::atoi(t->c_str())) * 1000ull;
  if (auto k = rsh_.option("ServerAliveInterval")) p.keepalive_s = std::max(1, std::atoi(k->c_str()));

  std::string why_openssh;
  // ssh_config can make a name an alias (HostName, Port, User, IdentityFile, ProxyJump, ...),
  // which only the OpenSSH client applies; the native session would dial the bare name.
  const std::string config_changes = rsh_.needs_openssh ? std::string() : transport::ssh_config_changes(rsh_, l.spec.host);
  if (rsh_.needs_openssh) {
    why_openssh = rsh_.needs_openssh_why;
  } else if (!config_changes.empty()) {
    why_openssh = "ssh_config sets " + config_changes + " for " + l.spec.host + " (ssh -G)";
  } else if (const std::string ca = cert_authority(p); !ca.empty()) {
    why_openssh = ca;
  } else if (p.identities.empty()) {
    why_openssh = "no identity file given or found in ~/.ssh (the OpenSSH client may use ssh-agent)";
  } else {
    for (const auto& id : p.identities) {
      auto k = transport::inspect_private_key(id);
      if (!k.ok()) return Error::make(errc::unsupported, k.error().message());
      if (k->is_rsa()) {
        if (!transport::libssh2_signs_rsa_sha2()) {
          why_openssh = id + " is an RSA key, and this libssh2 (" + transport::libssh2_version() +
                        ") signs RSA auth only with ssh-rsa (SHA-1), which OpenSSH >= 8.8 refuses";
        }
        break;
      }
      if (k->encrypted) {
        if (std::getenv("SSH_AUTH_SOCK") == nullptr) {
          return Error::make(errc::unsupported, id + " is passphrase-protected and no ssh-agent is running: " +
                                                    "load the key into ssh-agent (syncd then uses the OpenSSH client) or use a key without a passphrase");
        }
        why_openssh = id + " is passphrase-protected (the OpenSSH client asks ssh-agent)";
        break;
      }
    }
  }
  if (opts_.transport == "openssh") {
    l.native = false;
    lg().info("transport to {}: OpenSSH client (forced by config)", l.spec.host);
  } else if (opts_.transport == "libssh2") {
    if (rsh_.needs_openssh) return Error::make(errc::unsupported, "transport libssh2 forced, but " + rsh_.needs_openssh_why);
    l.native = true;
    lg().info("transport to {}: libssh2 (forced by config)", l.spec.host);
    if (!config_changes.empty()) {
      lg().warn("transport to {}: ssh_config sets {} for it (ssh -G), which the libssh2 transport does not apply",
                l.spec.host, config_changes);
    }
  } else if (opts_.transport == "auto") {
    l.native = why_openssh.empty();
    if (l.native) {
      lg().info("transport to {}: libssh2", l.spec.host);
    } else {
      lg().info("transport to {}: OpenSSH client, because {}", l.spec.host, why_openssh);
    }
  } else {
    return Error::make(errc::unsupported, "transport must be auto, libssh2 or openssh, not '" + opts_.transport + "'");
  }
  return {};
}

void Push::connect(Link& l) {
  if (l.passive) {
    // The peer (lower node id) dials us. If it has not for a while — it is down, or it is not
    // configured to — dial it again ourselves: a pair must never end up with no session.
    if (joined_with(l.peer_node) != nullptr) return l.retry->start(kPassiveCheckMs);
    lg().info("{} has not dialed this node: dialing it again", l.spec.host);
    l.passive = false;
  }
  if (!l.dial) {
    const std::string key = l.params.host + ":" + std::to_string(l.params.port);
    l.dial = opts_.dial_gate->enter(key, [&l] { l.retry->start(0); });
    if (!l.dial->admitted()) {
      lg().debug("{}: waiting to connect, {} other sessions to {} are being set up", l.spec.host,
                opts_.dial_gate->in_flight(key), key);
    }
  }
  if (!l.dial->admitted()) return;
  l.dial_hold->start(kDialHoldMs);
  l.hello_wait->start(hello_wait_ms());
  // The previous session's objects die here, outside their own callbacks.
  l.rx.reset();
  l.conn.reset();
  l.ssh.reset();
  l.session_ssh.reset();
  const uint64_t session = ++l.session;
  ++l.sessions;
  std::vector<std::string> remote = {opts_.remote_syncd, "attach", l.spec.target};
  remote.insert(remote.end(), opts_.remote_args.begin(), opts_.remote_args.end());
  remote.insert(remote.end(), l.spec.remote_args.begin(), l.spec.remote_args.end());
  UniqueFd stream;
  auto on_end = [this, &l, session](const std::string& why) { lost(l, session, why); };
  if (l.native) {
    transport::SshParams p = l.params;
    p.command = transport::remote_command(remote);
    lg().info("connecting to {} (session {}, libssh2): {}", l.spec.host, session, p.command);
    auto s = transport::SshSession::start(loop_, std::move(p), on_end);
    if (!s.ok()) return lost(l, session, s.error().message());
    l.session_ssh = std::move(*s);
    stream = l.session_ssh->take_stream();
  } else {
    const auto argv = rsh_.argv_for(l.spec.host, transport::remote_command(remote));
    lg().info("connecting to {} (session {}): {}", l.spec.host, session, transport::remote_command(argv));
    auto ssh = transport::SshProcess::start(loop_, argv, l.spec.host, on_end);
    if (!ssh.ok()) return lost(l, session, ssh.error().message());
    l.ssh = std::move(*ssh);
    stream = l.ssh->take_stream();
  }
  l.conn = std::make_unique<Connection>(
      loop_, std::move(stream),
      [this, &l, session](protocol::Message m) {
        if (session != l.session) return;
        if (l.rx && for_receiver(m)) return l.rx->on_message(std::move(m));
        if (const auto* h = std::get_if<protocol::Hello>(&m)) {
          dial_done(l);  // the peer answered: the next session to that sshd may start
          l.hello_wait->stop();
          if (auto why = refused_peer(l, h->node_id); !why.empty()) {
            if (h->node_id != index_->node_id()) {
              l.refused_node = h->node_id;
              // A session with that id that dialed here may be either peer's: it ends too.
              for (const auto& j : joined_) {
                if (!j->ended && j->peer_node == h->node_id) {
                  end_joined(j->id, "end 1 node id " + fmt::format("{:016x}", h->node_id) +
                                        " is announced by two configured peers of this node\n");
                }
              }
            }
            lg().error("{}", why);
            lost(l, session, why);
            l.session_ssh.reset();
            return;
          }
          l.refused_node = 0;
          // A node id two configured peers announce: the sessions it dials here are refused (no
          // telling which peer dialed), so this node keeps the session it dialed itself.
          if (opts_.two_way && h->node_id < index_->node_id() && !claimed_twice(h->node_id)) {
            // One session per pair (TWO-WAY.md §4.9): the node with the lower id dials. Ours
            // closes; our records travel on the session it opens to us.
            remember_peer_node(l, h->node_id);
            lg().info("{} (node {:016x}) dials this node: one session per pair, ours closes", l.spec.host, h->node_id);
            l.passive = true;
            lost(l, session, "the peer dials this node");
            l.session_ssh.reset();  // hang up now, so the peer's end of this session goes too
            return;
          }
          if (l.rx) l.rx->on_message(m);
          l.up = true;
          remember_peer_node(l, h->node_id);
          lg().info("connected to {}: peer node {:016x} ({}), protocol {}-{}", l.spec.host, h->node_id,
                    log::escape(h->node_name), h->version_min, h->version_max);
        }
        l.sender->on_message(m);
      },
      [this, &l, session](const Error& e) { lost(l, session, e.message()); });
  l.conn->set_rate_limit(opts_.bwlimit_bytes_per_s);
  l.io_seen_ms = mono_us() / 1000;
  if (opts_.two_way) {
    ReceiverOptions ro = receiver_options();
    ro.on_peer_went_back = [&l] { l.sender->return_own_versions(); };
    l.rx = std::make_unique<Receiver>(loop_, *root_, *index_, *l.conn, ro);
  }
  if (auto st = l.conn->start(hello_for(*index_, "push", "push")); !st) return lost(l, session, st.error().message());
  l.sender->set_connection(l.conn.get());
}

void Push::peer_is_up(uint64_t node) {
  if (node == 0 || node < index_->node_id()) return;  // the lower id dials; that is the peer
  for (auto& lp : links_) {
    Link& l = *lp;
    // Waiting out a backoff: the last session ended, no dial is under way. (A link that never
    // heard this peer's HELLO does not know its id and keeps its schedule.)
    if (l.peer_node != node || l.up || l.passive || l.session == 0 || l.lost != l.session || l.dial) continue;
    lg().info("{} (node {:016x}) is up again (it dialed this node): dialing it now, not after the backoff",
              l.spec.host, node);
    l.backoff_ms = opts_.backoff_min_ms;
    l.retry->start(0);
  }
}

void Push::dial_done(Link& l) {
  if (l.dial_hold) l.dial_hold->stop();
  l.dial.reset();
}

void Push::lost(Link& l, uint64_t session, const std::string& why) {
  if (session != l.session || l.lost == session) return;  // an older session, or already handled
  l.lost = session;
  l.up = false;
  dial_done(l);
  if (l.hello_wait) l.hello_wait->stop();
  // The stream usually ends before ssh does; what ssh or the remote shell said last is the
  // better explanation ("syncd: command not found", "Permission denied (publickey)").
  std::string reason = why;
  if (l.ssh && !l.ssh->last_error_line().empty() && reason.find(l.ssh->last_error_line()) == std::string::npos) {
    const std::string& said = l.ssh->last_error_line();  // ssh's own lines start with "ssh: "
    reason += " (" + (said.rfind("ssh: ", 0) == 0 ? said : "ssh: " + said) + ")";
  }
  l.sender->set_connection(nullptr);
  if (l.conn) l.conn->close(Error::make(errc::truncated, "session ended"));
  if (l.ssh) l.ssh->terminate();
  l.last_error = reason;
  if (l.passive) {
    l.last_error.clear();
    return l.retry->start(kPassiveCheckMs);  // connect() checks that the peer's session arrived
  }
  // Capped exponential backoff with jitter (half to all of the step), so a cluster that lost a
  // peer does not reconnect in lockstep.
  std::uniform_int_distribution<uint64_t> jitter(l.backoff_ms / 2, l.backoff_ms);
  const uint64_t wait = jitter(rng_);
  l.backoff_ms = std::min(opts_.backoff_max_ms, l.backoff_ms * 2);
  lg().warn("lost {}: {}; reconnecting in {} ms", l.spec.host, reason, wait);
  l.retry->start(wait);
}

namespace {

// For a status line: the peer is being held back because this node applies slower than it sends.
std::string paused_note(const Receiver& rx) {
  if (!rx.reading_paused()) return {};
  return fmt::format(", reading paused ({} MiB received and not yet applied)", rx.held_bytes() >> 20);
}

}  // namespace

std::string Push::status(bool json) const {
  std::string peers_txt, peers_json;
  std::vector<double> lat;
  size_t queued = 0;
  for (const auto& lp : links_) {
    const Link& l = *lp;
    const auto ls = l.sender->latency_samples();
    lat.insert(lat.end(), ls.begin(), ls.end());
    queued = std::max(queued, l.sender->queued());
    const bool up = l.conn != nullptr && l.up;
    const bool caught = l.sender->caught_up();
    const std::string transport = l.native ? "libssh2" : "openssh";
    // Many syncs to one sshd dial it in turn (DialGate): not an error, say so.
    const bool waiting = l.dial != nullptr && !l.dial->admitted();
    // Dialed, and the peer's HELLO not in yet (a hung remote shows here until the HELLO wait ends).
    const bool connecting = !up && !waiting && !l.passive && l.conn != nullptr && l.lost != l.session;
    peers_txt += "  peer " + l.spec.host + ":" + l.spec.target + ": " +
                 (l.passive  ? "on the session it opened to this node"
                  : up       ? "connected"
                  : waiting  ? "waiting for its turn to connect (other sessions to that sshd are being set up)"
                  : connecting ? "connecting (dialed; the peer's syncd has not answered yet)"
                             : "disconnected") +
                 " (" +
                 transport + ", session " + std::to_string(l.session) + " of " + std::to_string(l.sessions) + ")" +
                 (caught ? ", caught up" : "") + ", " + awaiting_text(l.sender.get()) +
                 ", " + retrying_text(l.sender.get()) +
                 (l.sender->unreadable() > 0 ? ", unreadable here: " + std::to_string(l.sender->unreadable()) : std::string()) +
                 (l.rx ? paused_note(*l.rx) : std::string()) +
                 ", last error: " + (l.last_error.empty() ? std::string("-") : l.last_error) + "\n";
    if (!peers_json.empty()) peers_json += ", ";
    peers_json += "{\"host\": " + json_string(l.spec.host) + ", \"target\": " + json_string(l.spec.target) +
                  ", \"transport\": \"" + transport + "\", \"connected\": " + (up ? "true" : "false") +
                  ", \"dialed_by_peer\": " + (l.passive ? "true" : "false") +
                  ", \"waiting_to_dial\": " + (waiting ? "true" : "false") +
                  ", \"connecting\": " + (connecting ? "true" : "false") +
                  ", \"caught_up\": " + (caught ? "true" : "false") + ", \"session\": " + std::to_string(l.session) +
                  ", \"sessions\": " + std::to_string(l.sessions) + ", \"queued\": " + std::to_string(l.sender->queued()) +
                  ", " + awaiting_json(l.sender.get()) +
                  ", " + retrying_json(l.sender.get()) + ", \"unreadable\": " + std::to_string(l.sender->unreadable()) + ", \"bytes_out\": " +
                  std::to_string(link_bytes_out(l)) + ", \"last_error\": " + json_string(l.last_error) +
                  (l.rx ? ", \"held_bytes\": " + std::to_string(l.rx->held_bytes()) + ", \"reading_paused\": " +
                              (l.rx->reading_paused() ? "true" : "false")
                        : std::string()) +
                  "}";
  }
  std::sort(lat.begin(), lat.end());
  const std::string brake = links_.empty() ? std::string() : links_.front()->sender->brake();
  std::optional<Resources> res;
  if (index_) {
    if (!gauge_) gauge_ = std::make_unique<ResourceGauge>(*index_);
    res = gauge_->read(lsyncd_view().watches.size());
  }
  if (!json) {
    std::string t = "syncd " + opts_.source + (opts_.two_way ? " (two-way)" : "") + " (pid " + std::to_string(::getpid()) + ")\n";
    t += std::string("  idle: ") + (idle() ? "yes" : "no") + "\n";
    t += peers_txt;
    t += "  queued locally: " + std::to_string(queued) + "\n";
    t += std::string("  sync latency ms (send -> durable on the peer): ") + latency_text(lat) + "\n";
    if (res) t += "  " + resources_text(*res) + "\n";
    if (!brake.empty()) t += "  MASS-DELETE BRAKE: " + brake + "\n";
    if (opts_.two_way) {
      t += "  two-way: " + std::to_string(joined_.size()) + " peer session(s) joined, conflicts: " +
           std::to_string(conflicts()) + "\n";
    }
    for (const auto& jp : joined_) {
      if (!jp->ended) t += "  joined session " + std::to_string(jp->id) + ": " + joined_state(*jp, false) + "\n";
    }
    return t;
  }
  std::string j = "{\"pid\": " + std::to_string(::getpid()) + ", \"mode\": \"push\", \"source\": " + json_string(opts_.source) +
                  ", \"idle\": " + (idle() ? "true" : "false") + ", \"queued\": " + std::to_string(queued) +
                  ", \"peers\": [" + peers_json + "]";
  j += std::string(", \"two_way\": ") + (opts_.two_way ? "true" : "false") + ", \"peer_sessions\": " +
       std::to_string(joined_.size()) + ", \"conflicts\": " + std::to_string(conflicts()) +
       ", \"delete_brake\": " + json_string(brake) + ", \"tombstones\": " + std::to_string(tombstones_.load()) +
       ", \"tombstone_collections\": " + std::to_string(gc_runs_);
  if (res) j += ", " + resources_json(*res);
  j += ", \"joined\": [";
  bool first = true;
  for (const auto& jp : joined_) {
    if (jp->ended) continue;
    j += std::string(first ? "" : ", ") + joined_state(*jp, true);
    first = false;
  }
  j += "]";
  return j + ", " + latency_json(lat) + "}\n";
}

std::string Push::joined_state(const Joined& jd, bool json) const {
  // What keeps a peer's session from being idle: what it still applies, what goes back on it.
  const bool rx_idle = jd.rx->idle();
  const size_t out = jd.conn->pending_out();
  const Sender* tx = jd.tx.get();
  const size_t queued = tx ? tx->queued() : 0;
  const bool caught = tx == nullptr || tx->caught_up();
  if (json) {
    return "{\"id\": " + std::to_string(jd.id) + ", \"peer_node\": \"" + fmt::format("{:016x}", jd.peer_node) +
           "\", \"idle\": " + (jd.idle() ? "true" : "false") + ", \"applying\": " + (rx_idle ? "false" : "true") +
           ", \"pending_out\": " + std::to_string(out) + ", \"queued\": " + std::to_string(queued) +
           ", " + awaiting_json(tx) + ", " +
           retrying_json(tx) +
           ", \"caught_up\": " + (caught ? "true" : "false") + ", \"held_bytes\": " + std::to_string(jd.rx->held_bytes()) +
           ", \"reading_paused\": " + (jd.rx->reading_paused() ? "true" : "false") + "}";
  }
  return fmt::format("node {:016x}, {}, applying: {}, bytes to send: {}, queued: {}, {}, {}{}{}",
                     jd.peer_node, jd.idle() ? "idle" : "busy", rx_idle ? "no" : "yes", out, queued, awaiting_text(tx),
                     retrying_text(tx),
                     caught ? ", caught up" : "", paused_note(*jd.rx));
}

uint64_t Push::link_bytes_out(const Link& l) const noexcept {
  // A passive link's records go on the session the peer opened, not on a connection of its own.
  if (l.passive) {
    const Joined* j = joined_with(l.peer_node);
    return j != nullptr && j->conn ? j->conn->bytes_out() : 0;
  }
  return l.conn ? l.conn->bytes_out() : 0;
}

bool Push::link_idle(const Link& l) const noexcept {
  if (l.passive) {
    // Our records go on the session the peer opened: idle when that one is.
    const Joined* j = joined_with(l.peer_node);
    return j != nullptr && j->idle() && l.sender->queued() == 0 && l.sender->recorded();
  }
  if (l.rx && !l.rx->idle()) return false;
  return l.conn != nullptr && l.up && l.sender->idle() && l.sender->caught_up() && l.sender->awaiting_ack() == 0 &&
         l.conn->pending_out() == 0;
}

bool Push::idle() const noexcept {
  for (const auto& j : joined_) {
    if (!j->idle()) return false;
  }
  for (const auto& l : links_) {
    if (!link_idle(*l)) return false;
  }
  return !links_.empty();
}

bool Push::drained() const noexcept {
  for (const auto& j : joined_) {
    if (!j->ended && (!j->rx->idle() || j->conn->pending_out() != 0)) return false;
    if (!j->ended && j->tx && (j->tx->queued() != 0 || j->tx->awaiting_ack() != 0)) return false;
  }
  for (const auto& l : links_) {
    if (l->sender->queued() != 0) return false;
    if (l->rx && !l->rx->idle()) return false;
    const bool up = l->conn != nullptr && l->up;
    if (up && (l->sender->awaiting_ack() != 0 || l->conn->pending_out() != 0)) return false;
  }
  return true;
}

uint64_t Push::conflicts() const noexcept {
  uint64_t n = conflicts_ended_;
  for (const auto& j : joined_) n += j->rx ? j->rx->conflicts() : 0;
  return n;
}

std::function<void()> Push::serve_peer(UniqueFd in, UniqueFd out, const std::string& args,
                                       std::function<void(const std::string&)> done) {
  if (!opts_.two_way) {
    done("error this daemon pushes one way (" + opts_.source + "); a peer can join only a two-way daemon\n");
    return nullptr;
  }
  for (int fd : {in.get(), out.get()}) {
    const int fl = ::fcntl(fd, F_GETFL);
    if (fl < 0 || ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) {
      done(std::string("error set O_NONBLOCK: ") + std::strerror(errno) + "\n");
      return nullptr;
    }
  }
  auto j = std::make_unique<Joined>();
  Joined* raw = j.get();
  j->id = ++next_joined_;
  j->done = std::move(done);
  const uint64_t id = j->id;
  j->conn = std::make_unique<Connection>(
      loop_, std::move(in), std::move(out),
      [this, raw](protocol::Message m) {
        if (raw->ended) return;  // refused, or ending: nothing more of it is taken
        if (const auto* h = std::get_if<protocol::Hello>(&m)) {
          std::string why;
          if (raw->two_way && h->node_id == index_->node_id()) {
            why = own_id_reason("the peer of session " + std::to_string(raw->id), h->node_id);
          } else if (raw->two_way && claimed_twice(h->node_id)) {
            why = fmt::format("the peer of session {} announces node id {:016x}, which two configured peers announce "
                              "(see the error about them): refused, as it cannot be told which one dialed; this "
                              "node dials the one it accepted",
                              raw->id, h->node_id);
          }
          if (!why.empty()) {
            lg().error("{}", why);
            return end_joined(raw->id, "end 1 " + why + "\n");
          }
          lg().info("peer session {} joined: node {:016x} ({})", raw->id, h->node_id, log::escape(h->node_name));
          raw->peer_node = h->node_id;
          if (raw->two_way) {
            peer_is_up(h->node_id);
            // The same session carries this node's records back to the peer (one per pair).
            SenderOptions so = opts_.sender;
            so.two_way = true;
            so.watch_tree = false;
            so.on_quiet = [this, raw](uint64_t ms, size_t awaiting) {
              said_quiet(fmt::format("peer node {:016x} (joined session {})", raw->peer_node, raw->id), ms, awaiting);
            };
            so.on_caught_up = [this, raw](bool first) {
              if (first) startup_finished();
              lg().info("peer node {:016x} caught up (joined session {})", raw->peer_node, raw->id);
            };
            raw->tx = std::make_unique<Sender>(loop_, *root_, *index_, source_excludes(opts_.excludes, opts_.filters, opts_.source, opts_.per_dir_excludes), nullptr, so);
            (void)raw->tx->start();
            raw->tx->set_connection(raw->conn.get());
            raw->tx->on_message(m);
          }
        } else if (raw->tx && !for_receiver(m)) {
          return raw->tx->on_message(m);
        }
        raw->rx->on_message(std::move(m));
      },
      [this, id](const Error& e) {
        // The peer closing its end is how a session normally ends.
        end_joined(id, e.is(errc::truncated) ? "end 0 session closed\n" : "end 1 " + e.message() + "\n");
      });
  j->two_way = args.find("two-way") != std::string::npos;
  ReceiverOptions ro = receiver_options();
  ro.on_peer_went_back = [raw] {
    if (raw->tx) raw->tx->return_own_versions();
  };
  j->rx = std::make_unique<Receiver>(loop_, *root_, *index_, *j->conn, ro);
  lg().info("peer session {} for {} ({})", id, opts_.source, args.empty() ? "-" : args);
  // Listed before it starts: writing our HELLO may already find the peer gone (EPIPE), and that
  // end must reach the attach process like any other.
  joined_.push_back(std::move(j));
  if (auto st = raw->conn->start(hello_for(*index_, "daemon", "push")); !st) end_joined(id, "end 1 " + st.error().message() + "\n");
  if (raw->ended) return nullptr;
  return [this, id] { end_joined(id, {}); };
}

void Push::run_conflict_hook(const std::string& path, const std::string& copy) {
  if (opts_.conflict_hook.empty()) return;
  hooks_.erase(std::remove_if(hooks_.begin(), hooks_.end(), [](const auto& h) { return !h->running(); }), hooks_.end());
  const std::string root = root_->path();
  uvx::Process::Spec spec;
  spec.argv = {"/bin/sh", "-c", opts_.conflict_hook + " \"$@\"", "syncd-conflict-hook", root + "/" + path,
               root + "/" + copy, root};
  auto p = uvx::Process::spawn(loop_, spec, [path, hook = opts_.conflict_hook](int64_t status, int sig) {
    if (status != 0 || sig != 0) {
      lg().warn("conflict hook for {} failed (exit {}, signal {}): {}", log::escape(path), status, sig, hook);
    } else {
      lg().info("conflict hook for {} done", log::escape(path));
    }
  });
  if (!p.ok()) {
    lg().error("conflict hook for {}: {}", log::escape(path), p.error().message());
    return;
  }
  hooks_.push_back(std::move(*p));
}

void Push::end_joined(uint64_t id, const std::string& end_line) {
  for (auto& j : joined_) {
    if (j->id != id || j->ended) continue;
    j->ended = true;
    lg().info("peer session {} ended{}", id, end_line.empty() ? " (its attach process went away)" : ": " + end_line.substr(0, end_line.size() - 1));
    if (!end_line.empty() && j->done) j->done(end_line);
    j->done = nullptr;
    if (j->two_way) {
      // The pair's session is gone. Its dialer redials within a second when it can; if it does
      // not (it halted, crashed or lost its volume), the link waiting for it dials instead of at
      // its next half-minute check, so this node's status says why soon.
      for (auto& l : links_) {
        if (l->passive && l->peer_node == j->peer_node && j->peer_node != 0) l->retry->start(kPassiveRecheckMs);
      }
    }
  }
  // Destroyed on the next loop turn, outside the connection's own callback.
  if (!reap_) {
    reap_ = std::make_unique<uvx::Timer>(loop_, [this] {
      for (auto it = joined_.begin(); it != joined_.end();) {
        if ((*it)->ended) {
          conflicts_ended_ += (*it)->rx->conflicts();
          (*it)->tx.reset();
          (*it)->rx.reset();
          it = joined_.erase(it);
        } else {
          ++it;
        }
      }
    });
  }
  reap_->start(0);
}

LsyncdView Push::lsyncd_view() const {
  LsyncdView v;
  for (const auto& l : links_) {
    if (l->sender) l->sender->add_to(v);
  }
  return v;
}

}  // namespace syncd::runtime
