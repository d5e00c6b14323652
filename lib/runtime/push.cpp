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
#include "lib/transport/keyfile.h"
#include "protocol/limits.h"

namespace syncd::runtime {
namespace {

auto& lg() { return log::get(log::Module::runtime); }

constexpr std::array<const char*, 12> kSqlitePatterns = {
    "*.db", "*.db-wal", "*.db-shm", "*.db-journal",
    "*.sqlite", "*.sqlite-wal", "*.sqlite-shm", "*.sqlite-journal",
    "*.sqlite3", "*.sqlite3-wal", "*.sqlite3-shm", "*.sqlite3-journal"};

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

std::vector<std::string> split_ws(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream ss(s);
  for (std::string w; ss >> w;) out.push_back(expand_home(w));
  return out;
}

}  // namespace

Push::Push(uvx::Loop& loop, PushOptions opts)
    : loop_(loop), opts_(std::move(opts)), backoff_ms_(opts_.backoff_min_ms), rng_(codec::random_u64()) {}

Push::~Push() {
  for (auto& j : joined_) j->rx.reset();  // job threads first
  joined_.clear();
  // The sender (and its job thread) goes before the connection it writes to.
  sender_.reset();
  conn_.reset();
  ssh_.reset();
}

Status Push::start() {
  SYNCD_TRY_ASSIGN(rsh, transport::SshCommand::parse(opts_.rsh));
  rsh_ = std::move(rsh);
  SYNCD_TRY(choose_transport());
  SYNCD_TRY_ASSIGN(root, fs::Root::open(opts_.source));
  root_ = std::make_unique<fs::Root>(std::move(root));
  if (::mkdir(opts_.state_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Error::from_errno("create state directory " + opts_.state_dir);
  }
  SYNCD_TRY_ASSIGN(idx, store::Index::open(opts_.state_dir));
  index_ = std::make_unique<store::Index>(std::move(idx));
  SenderOptions so = opts_.sender;
  if (opts_.two_way) {
    // SQLite files are rewritten in place by one process at a time; merged from two nodes they
    // are corrupt (TWO-WAY.md §4.12). Never replicated two-way, and named in the log.
    opts_.excludes.insert(opts_.excludes.end(), kSqlitePatterns.begin(), kSqlitePatterns.end());
    so.warn_excluded = watch::Excludes(std::vector<std::string>(kSqlitePatterns.begin(), kSqlitePatterns.end()));
    so.max_delete_share = opts_.max_delete_share;
    so.warn_reason = "an SQLite database (or its journal) must not be replicated active/active; "
                     "keep it outside the synced tree or use a database server";
  }
  so.on_caught_up = [this, user = so.on_caught_up](bool first) {
    backoff_ms_ = opts_.backoff_min_ms;  // a session that got this far was a good one
    if (first) lg().info("Startup of \"{}\" finished: 0", opts_.source);
    lg().info("{} caught up (session {})", opts_.host, session_);
    if (user) user(first);
  };
  sender_ = std::make_unique<Sender>(loop_, *root_, *index_, watch::Excludes(opts_.excludes), nullptr, so);
  retry_ = std::make_unique<uvx::Timer>(loop_, [this] { connect(); });
  SYNCD_TRY(sender_->start());
  connect();
  return {};
}

Status Push::choose_transport() {
  // What the native session would use: the rsh line's choices, else OpenSSH's defaults.
  auto& p = params_;
  p.peer = opts_.host;
  p.host = opts_.host;
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
  if (rsh_.needs_openssh) {
    why_openssh = rsh_.needs_openssh_why;
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
    native_ = false;
    lg().info("transport to {}: OpenSSH client (forced by config)", opts_.host);
  } else if (opts_.transport == "libssh2") {
    if (rsh_.needs_openssh) return Error::make(errc::unsupported, "transport libssh2 forced, but " + rsh_.needs_openssh_why);
    native_ = true;
    lg().info("transport to {}: libssh2 (forced by config)", opts_.host);
  } else if (opts_.transport == "auto") {
    native_ = why_openssh.empty();
    if (native_) {
      lg().info("transport to {}: libssh2", opts_.host);
    } else {
      lg().info("transport to {}: OpenSSH client, because {}", opts_.host, why_openssh);
    }
  } else {
    return Error::make(errc::unsupported, "transport must be auto, libssh2 or openssh, not '" + opts_.transport + "'");
  }
  return {};
}

void Push::connect() {
  // The previous session's objects die here, outside their own callbacks.
  conn_.reset();
  ssh_.reset();
  session_ssh_.reset();
  const uint64_t session = ++session_;
  ++sessions_;
  std::vector<std::string> remote = {opts_.remote_syncd, "attach", opts_.target};
  remote.insert(remote.end(), opts_.remote_args.begin(), opts_.remote_args.end());
  UniqueFd stream;
  auto on_end = [this, session](const std::string& why) { lost(session, why); };
  if (native_) {
    transport::SshParams p = params_;
    p.command = transport::remote_command(remote);
    lg().info("connecting to {} (session {}, libssh2): {}", opts_.host, session, p.command);
    auto s = transport::SshSession::start(loop_, std::move(p), on_end);
    if (!s.ok()) return lost(session, s.error().message());
    session_ssh_ = std::move(*s);
    stream = session_ssh_->take_stream();
  } else {
    const auto argv = rsh_.argv_for(opts_.host, transport::remote_command(remote));
    lg().info("connecting to {} (session {}): {}", opts_.host, session, transport::remote_command(argv));
    auto ssh = transport::SshProcess::start(loop_, argv, opts_.host, on_end);
    if (!ssh.ok()) return lost(session, ssh.error().message());
    ssh_ = std::move(*ssh);
    stream = ssh_->take_stream();
  }
  conn_ = std::make_unique<Connection>(
      loop_, std::move(stream),
      [this, session](protocol::Message m) {
        if (session != session_) return;
        if (const auto* h = std::get_if<protocol::Hello>(&m)) {
          session_up_ = true;
          lg().info("connected to {}: peer node {:016x} ({}), protocol {}-{}", opts_.host, h->node_id,
                    log::escape(h->node_name), h->version_min, h->version_max);
        }
        sender_->on_message(m);
      },
      [this, session](const Error& e) { lost(session, e.message()); });
  if (auto st = conn_->start(hello_for(*index_, "push", "push")); !st) return lost(session, st.error().message());
  sender_->set_connection(conn_.get());
}

void Push::lost(uint64_t session, const std::string& why) {
  if (session != session_ || lost_ == session) return;  // an older session, or already handled
  lost_ = session;
  session_up_ = false;
  // The stream usually ends before ssh does; what ssh or the remote shell said last is the
  // better explanation ("syncd: command not found", "Permission denied (publickey)").
  std::string reason = why;
  if (ssh_ && !ssh_->last_error_line().empty() && reason.find(ssh_->last_error_line()) == std::string::npos) {
    reason += " (ssh: " + ssh_->last_error_line() + ")";
  }
  sender_->set_connection(nullptr);
  if (conn_) conn_->close(Error::make(errc::truncated, "session ended"));
  if (ssh_) ssh_->terminate();
  last_error_ = reason;
  // Capped exponential backoff with jitter (half to all of the step), so a cluster that lost a
  // peer does not reconnect in lockstep.
  std::uniform_int_distribution<uint64_t> jitter(backoff_ms_ / 2, backoff_ms_);
  const uint64_t wait = jitter(rng_);
  backoff_ms_ = std::min(opts_.backoff_max_ms, backoff_ms_ * 2);
  lg().warn("lost {}: {}; reconnecting in {} ms", opts_.host, reason, wait);
  retry_->start(wait);
}

std::string Push::status(bool json) const {
  const auto lat = sender_ ? sender_->latency_samples() : std::vector<double>{};
  auto pct = [&](double q) { return lat.empty() ? -1.0 : lat[std::min(lat.size() - 1, static_cast<size_t>(q * static_cast<double>(lat.size())))]; };
  const size_t queue = sender_ ? sender_->awaiting_ack() : 0;
  const size_t queued = sender_ ? sender_->queued() : 0;
  const bool up = connected();
  const bool caught = sender_ && sender_->caught_up();
  const std::string transport = native_ ? "libssh2" : "openssh";
  char lat_txt[160];
  std::snprintf(lat_txt, sizeof lat_txt, "p50 %.2f p90 %.2f p99 %.2f (n=%zu)", pct(0.5), pct(0.9), pct(0.99), lat.size());
  if (!json) {
    std::string t = "syncd " + opts_.source + " -> " + opts_.host + ":" + opts_.target + " (pid " + std::to_string(::getpid()) + ")\n";
    t += std::string("  idle: ") + (idle() ? "yes" : "no") + "\n";
    t += "  peer " + opts_.host + ": " + (up ? "connected" : "disconnected") + " (" + transport + ", session " +
         std::to_string(session_) + " of " + std::to_string(sessions_) + ")" + (caught ? ", caught up" : "") + "\n";
    t += "  queued locally: " + std::to_string(queued) + ", awaiting ack: " + std::to_string(queue) + "\n";
    t += "  last error: " + (last_error_.empty() ? std::string("-") : last_error_) + "\n";
    t += std::string("  sync latency ms (send -> durable on the peer): ") + (lat.empty() ? "-" : lat_txt) + "\n";
    if (const std::string b = sender_ ? sender_->brake() : ""; !b.empty()) t += "  MASS-DELETE BRAKE: " + b + "\n";
    if (opts_.two_way) {
      t += "  two-way: " + std::to_string(joined_.size()) + " peer session(s) joined, conflicts: " +
           std::to_string(conflicts()) + "\n";
    }
    return t;
  }
  std::string j = "{\"pid\": " + std::to_string(::getpid()) + ", \"mode\": \"push\", \"source\": " + json_string(opts_.source) +
                  ", \"idle\": " + (idle() ? "true" : "false") + ", \"peers\": [{\"host\": " + json_string(opts_.host) +
                  ", \"target\": " + json_string(opts_.target) + ", \"transport\": \"" + transport +
                  "\", \"connected\": " + (up ? "true" : "false") + ", \"caught_up\": " + (caught ? "true" : "false") +
                  ", \"session\": " + std::to_string(session_) + ", \"sessions\": " + std::to_string(sessions_) +
                  ", \"queued\": " + std::to_string(queued) + ", \"awaiting_ack\": " + std::to_string(queue) + ", \"bytes_out\": " +
                  std::to_string(conn_ ? conn_->bytes_out() : 0) + ", \"last_error\": " + json_string(last_error_) + "}]";
  j += std::string(", \"two_way\": ") + (opts_.two_way ? "true" : "false") + ", \"peer_sessions\": " +
       std::to_string(joined_.size()) + ", \"conflicts\": " + std::to_string(conflicts()) +
       ", \"delete_brake\": " + json_string(sender_ ? sender_->brake() : "");
  char l[200];
  std::snprintf(l, sizeof l, ", \"latency_ms\": {\"n\": %zu, \"p50\": %.3f, \"p90\": %.3f, \"p99\": %.3f}}\n", lat.size(),
                pct(0.5), pct(0.9), pct(0.99));
  return j + l;
}

bool Push::idle() const noexcept {
  for (const auto& j : joined_) {
    if (!j->ended && (!j->rx->idle() || j->conn->pending_out() != 0)) return false;
  }
  return connected() && sender_ && sender_->idle() && sender_->caught_up() &&
         sender_->awaiting_ack() == 0 && conn_->pending_out() == 0;
}

bool Push::drained() const noexcept {
  if (!sender_ || sender_->queued() != 0) return false;
  for (const auto& j : joined_) {
    if (!j->ended && (!j->rx->idle() || j->conn->pending_out() != 0)) return false;
  }
  return !connected() || (sender_->awaiting_ack() == 0 && conn_->pending_out() == 0);
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
        if (const auto* h = std::get_if<protocol::Hello>(&m)) {
          lg().info("peer session {} joined: node {:016x} ({})", raw->id, h->node_id, log::escape(h->node_name));
        }
        raw->rx->on_message(std::move(m));
      },
      [this, id](const Error& e) {
        // The peer closing its end is how a session normally ends.
        end_joined(id, e.is(errc::truncated) ? "end 0 session closed\n" : "end 1 " + e.message() + "\n");
      });
  ReceiverOptions ro;
  ro.two_way = true;
  ro.apply = opts_.apply;
  ro.on_authored = [this](std::vector<std::string> paths) { sender_->send_paths(std::move(paths)); };
  ro.excludes = watch::Excludes(opts_.excludes);
  ro.deletes_held = [this] { return !sender_->brake().empty(); };
  j->rx = std::make_unique<Receiver>(loop_, *root_, *index_, *j->conn, ro);
  lg().info("peer session {} for {} ({})", id, opts_.source, args.empty() ? "-" : args);
  if (auto st = j->conn->start(hello_for(*index_, "daemon", "push")); !st) {
    j->done("end 1 " + st.error().message() + "\n");
    j->rx.reset();
    return nullptr;
  }
  joined_.push_back(std::move(j));
  return [this, id] { end_joined(id, {}); };
}

void Push::end_joined(uint64_t id, const std::string& end_line) {
  for (auto& j : joined_) {
    if (j->id != id || j->ended) continue;
    j->ended = true;
    lg().info("peer session {} ended{}", id, end_line.empty() ? " (its attach process went away)" : ": " + end_line.substr(0, end_line.size() - 1));
    if (!end_line.empty() && j->done) j->done(end_line);
    j->done = nullptr;
  }
  // Destroyed on the next loop turn, outside the connection's own callback.
  if (!reap_) {
    reap_ = std::make_unique<uvx::Timer>(loop_, [this] {
      for (auto it = joined_.begin(); it != joined_.end();) {
        if ((*it)->ended) {
          conflicts_ended_ += (*it)->rx->conflicts();
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

}  // namespace syncd::runtime
