#include "lib/transport/ssh_session.h"

#include <libssh2.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <unordered_set>

#include "lib/base/log.h"
#include "lib/transport/known_hosts.h"

namespace syncd::transport {
namespace {

constexpr unsigned kWindow = 4u << 20;  // channel window: keeps a 1 GiB stream moving (issue #4: >= 2 MiB)
constexpr unsigned kPacket = 32768;
constexpr size_t kChunk = 256 * 1024;
constexpr uint64_t kCloseWaitMs = 2000;  // for the exit status, after the remote command's EOF

auto& lg() { return log::get(log::Module::transport); }

std::string last_error(LIBSSH2_SESSION* s) {
  char* msg = nullptr;
  int len = 0;
  libssh2_session_last_error(s, &msg, &len, 0);
  return msg && len > 0 ? std::string(msg, static_cast<size_t>(len)) : "unknown libssh2 error";
}

// The key type is the first SSH string of the public key blob.
std::string blob_type(ByteSpan blob) {
  if (blob.size() < 4) return "unknown";
  const uint32_t n = (uint32_t{blob[0]} << 24) | (uint32_t{blob[1]} << 16) | (uint32_t{blob[2]} << 8) | blob[3];
  if (blob.size() - 4 < n) return "unknown";
  return std::string(reinterpret_cast<const char*>(blob.data() + 4), n);
}

// libssh2's socket I/O, counted (bytes on the wire, for status and the benchmark).
// The session's abstract pointer: wire byte counters, and what libssh2 has allocated and not
// freed. libssh2 1.10 leaks its key-exchange state (the curve25519 key pair) when a session is
// freed in the middle of the handshake (a SIGHUP reload, a connect timeout; LeakSanitizer
// showed it): its allocations go through the hooks below, and what it still holds once the
// session is freed goes with it.
struct Counters {
  uint64_t* in;
  uint64_t* out;
  std::unordered_set<void*> live;
};

void* tracked_alloc(size_t n, void** abstract) {
  void* p = std::malloc(n);
  if (p == nullptr) return nullptr;
  try {
    static_cast<Counters*>(*abstract)->live.insert(p);
  } catch (...) {  // no memory to track it: libssh2 gets no memory either
    std::free(p);
    return nullptr;
  }
  return p;
}

void tracked_free(void* p, void** abstract) {
  if (p == nullptr) return;
  static_cast<Counters*>(*abstract)->live.erase(p);
  std::free(p);
}

void* tracked_realloc(void* p, size_t n, void** abstract) {
  if (p == nullptr) return tracked_alloc(n, abstract);
  auto& live = static_cast<Counters*>(*abstract)->live;
  void* q = std::realloc(p, n);
  if (q == nullptr) return nullptr;  // p is still allocated, still tracked
  live.erase(p);
  try {
    live.insert(q);
  } catch (...) {
    std::free(q);
    return nullptr;
  }
  return q;
}

ssize_t counted_send(libssh2_socket_t fd, const void* buf, size_t len, int flags, void** abstract) {
  const ssize_t n = ::send(fd, buf, len, flags | MSG_NOSIGNAL);
  if (n > 0) *static_cast<Counters*>(*abstract)->out += static_cast<uint64_t>(n);
  return n < 0 ? -errno : n;
}

ssize_t counted_recv(libssh2_socket_t fd, void* buf, size_t len, int flags, void** abstract) {
  const ssize_t n = ::recv(fd, buf, len, flags);
  if (n > 0) *static_cast<Counters*>(*abstract)->in += static_cast<uint64_t>(n);
  return n < 0 ? -errno : n;
}

struct SessionFree {
  void operator()(LIBSSH2_SESSION* s) const noexcept {
    auto* c = static_cast<Counters*>(*libssh2_session_abstract(s));
    libssh2_session_free(s);  // frees through tracked_free: `c` must outlive it
    for (void* p : c->live) std::free(p);
    delete c;
  }
};
struct ChannelFree {
  void operator()(LIBSSH2_CHANNEL* c) const noexcept { libssh2_channel_free(c); }
};

}  // namespace

// The channel is freed before its session.
struct SshSession::Handles {
  std::unique_ptr<LIBSSH2_SESSION, SessionFree> session;
  std::unique_ptr<LIBSSH2_CHANNEL, ChannelFree> channel;
  ~Handles() { channel.reset(); }
};

std::string libssh2_version() { return ::libssh2_version(0); }

bool libssh2_signs_rsa_sha2() {
  // libssh2_version(required) returns NULL when the running library is older than `required`.
  return ::libssh2_version(0x010b00) != nullptr;
}

SshSession::SshSession(uvx::Loop& loop, SshParams p, OnEnd on_end)
    : loop_(loop), p_(std::move(p)), on_end_(std::move(on_end)), h_(std::make_unique<Handles>()) {}

SshSession::~SshSession() {
  *alive_ = false;
  tcp_poll_.reset();
  local_poll_.reset();
  // Best effort, non-blocking: a goodbye to the server, then the handles go.
  if (h_->session && stage_ == Stage::running) {
    (void)libssh2_session_disconnect(h_->session.get(), "syncd closing");
  }
  // Freeing a channel and session may want to talk to the server (channel close), which in
  // non-blocking mode returns EAGAIN and frees nothing. With the socket shut down first, the
  // blocking free sees the connection gone at once and releases everything.
  if (tcp_) ::shutdown(tcp_.get(), SHUT_RDWR);
  if (h_->session) libssh2_session_set_blocking(h_->session.get(), 1);
  h_.reset();
}

Result<std::unique_ptr<SshSession>> SshSession::start(uvx::Loop& loop, SshParams params, OnEnd on_end) {
  static std::once_flag init;
  static int init_rc = 0;
  std::call_once(init, [] { init_rc = libssh2_init(0); });
  if (init_rc != 0) return Error::make(errc::internal, "libssh2_init failed");
  if (params.identities.empty()) return Error::make(errc::unsupported, "no identity file to authenticate with");
  std::unique_ptr<SshSession> s(new SshSession(loop, std::move(params), std::move(on_end)));
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) {
    return Error::from_errno("socketpair for the ssh channel");
  }
  s->stream_ = UniqueFd(sv[0]);
  s->local_ = UniqueFd(sv[1]);
  SshSession* self = s.get();
  s->deadline_ = std::make_unique<uvx::Timer>(loop, [self] {
    self->fail("no session after " + std::to_string(self->p_.connect_timeout_ms) + " ms (connect/handshake/auth timeout)");
  });
  s->deadline_->start(s->p_.connect_timeout_ms);
  // getaddrinfo blocks: on the thread pool; the callback checks the session still exists.
  auto result = std::make_shared<std::pair<std::vector<std::string>, std::string>>();
  const std::string host = s->p_.host;
  const int port = s->p_.port, family = s->p_.family;
  std::weak_ptr<bool> alive = s->alive_;
  uvx::queue_work(
      loop,
      [result, host, port, family] {
        addrinfo hints{};
        hints.ai_family = family == 4 ? AF_INET : family == 6 ? AF_INET6 : AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        addrinfo* res = nullptr;
        const int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
        if (rc != 0) {
          result->second = std::string("cannot resolve ") + host + ": " + gai_strerror(rc);
          return;
        }
        for (addrinfo* a = res; a; a = a->ai_next) {
          result->first.emplace_back(reinterpret_cast<const char*>(a->ai_addr), a->ai_addrlen);
        }
        ::freeaddrinfo(res);
      },
      [result, alive, self] {
        if (auto a = alive.lock(); a && *a) self->resolved(std::move(result->first), std::move(result->second));
      });
  return s;
}

void SshSession::resolved(std::vector<std::string> addrs, std::string err) {
  if (!err.empty()) return fail(err);
  addrs_ = std::move(addrs);
  stage_ = Stage::connecting;
  try_connect();
}

void SshSession::try_connect() {
  tcp_poll_.reset();
  tcp_.reset();
  if (addrs_.empty()) return fail("cannot connect to " + p_.host + " port " + std::to_string(p_.port) + ": " + auth_errors_);
  const std::string a = addrs_.front();
  addrs_.erase(addrs_.begin());
  const auto* sa = reinterpret_cast<const sockaddr*>(a.data());
  tcp_ = UniqueFd(::socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!tcp_) return fail(std::string("socket: ") + std::strerror(errno));
  const int one = 1, idle = 10, intvl = 5, cnt = 3;
  const unsigned user_timeout_ms = 30000;
  ::setsockopt(tcp_.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  ::setsockopt(tcp_.get(), SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  ::setsockopt(tcp_.get(), IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  ::setsockopt(tcp_.get(), IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
  ::setsockopt(tcp_.get(), IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
  ::setsockopt(tcp_.get(), IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms, sizeof user_timeout_ms);
  if (::connect(tcp_.get(), sa, static_cast<socklen_t>(a.size())) != 0 && errno != EINPROGRESS) {
    auth_errors_ = std::strerror(errno);
    return try_connect();
  }
  tcp_poll_ = std::make_unique<uvx::Poll>(loop_, tcp_.get(), [this](int status, int) {
    if (stage_ == Stage::connecting) {
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(tcp_.get(), SOL_SOCKET, SO_ERROR, &err, &len);
      if (status < 0 || err != 0) {
        auth_errors_ = std::strerror(err != 0 ? err : -status);
        return try_connect();
      }
      stage_ = Stage::handshake;
    }
    step();
  });
  (void)tcp_poll_->start(UV_WRITABLE);
}

bool SshSession::check_host_key(std::string& why) {
  size_t len = 0;
  int type = 0;
  const char* raw = libssh2_session_hostkey(h_->session.get(), &len, &type);
  if (!raw) {
    why = "the server sent no host key";
    return false;
  }
  const ByteSpan blob(reinterpret_cast<const uint8_t*>(raw), len);
  const std::string ktype = blob_type(blob);
  const std::string fp = fingerprint_sha256(blob);
  const std::string name = known_hosts_name(p_.host, p_.port);
  KnownHosts kh;
  std::string files;
  for (const auto& f : p_.known_hosts) {
    if (auto st = kh.load(f); !st) lg().warn("{}", st.error().message());
    files += (files.empty() ? "" : ", ") + f;
  }
  const auto r = kh.check(p_.host, p_.port, ktype, blob);
  switch (r.verdict) {
    case KnownHosts::Verdict::match: return true;
    case KnownHosts::Verdict::revoked:
      why = "host key " + ktype + " " + fp + " of " + name + " is marked @revoked in " + r.entry->file + ":" +
            std::to_string(r.entry->line);
      return false;
    case KnownHosts::Verdict::mismatch: {
      const std::string msg = "REMOTE HOST IDENTIFICATION HAS CHANGED for " + name + ": the server offers " + ktype +
                              " " + fp + " but " + r.entry->file + ":" + std::to_string(r.entry->line) + " lists " +
                              r.entry->key_type + " " + fingerprint_sha256(r.entry->key_blob) +
                              " (Host key verification failed)";
      if (p_.strict == StrictHostKeys::no) {
        lg().warn("StrictHostKeyChecking=no: connecting anyway. {}", msg);
        return true;
      }
      why = msg + "; refusing to connect - if the change is expected, remove that line";
      return false;
    }
    case KnownHosts::Verdict::unknown:
      if (p_.strict == StrictHostKeys::no) {
        lg().warn("StrictHostKeyChecking=no: NOT verifying the host key of {} ({} {})", name, ktype, fp);
        return true;
      }
      if (p_.strict == StrictHostKeys::accept_new) {
        const std::string target = p_.known_hosts.empty() ? std::string() : p_.known_hosts.front();
        if (!target.empty() && target != "/dev/null") {
          auto st = KnownHosts::append(target, p_.host, p_.port, ktype, blob);
          const size_t slash = target.rfind('/');
          if (!st && st.error().is_errno(ENOENT) && slash != std::string::npos && slash >= 5 &&
              target.compare(slash - 5, 5, "/.ssh") == 0 && ::mkdir(target.substr(0, slash).c_str(), 0700) == 0) {
            // A fresh account has no ~/.ssh: OpenSSH makes it for its known_hosts, and so do we.
            st = KnownHosts::append(target, p_.host, p_.port, ktype, blob);
          }
          if (!st) {
            // As OpenSSH: the key is accepted for this session all the same, asked again next time.
            lg().warn("StrictHostKeyChecking=accept-new: could not add the host key of {} ({} {}): {}; connecting "
                      "anyway, as OpenSSH does",
                      name, ktype, fp, st.error().message());
            return true;
          }
          lg().warn("added host key of {} ({} {}) to {} (StrictHostKeyChecking=accept-new)", name, ktype, fp, target);
        }
        return true;
      }
      why = "no host key known for " + name + " in " + (files.empty() ? "(no known_hosts file)" : files) +
            " and StrictHostKeyChecking=yes; the server offers " + ktype + " " + fp +
            " (Host key verification failed)";
      if (const auto* ca = kh.cert_authority_for(p_.host, p_.port)) {
        why += "; " + ca->file + ":" + std::to_string(ca->line) + " trusts a certificate authority (@cert-authority) " +
               "for it, and the libssh2 transport cannot check host certificates: use the OpenSSH transport " +
               "(-transport openssh, which auto picks for such a host)";
      }
      return false;
  }
  return false;
}

void SshSession::step() {
  for (;;) {
    LIBSSH2_SESSION* s = h_->session.get();
    switch (stage_) {
      case Stage::resolving:
      case Stage::connecting:
      case Stage::done: return;
      case Stage::handshake: {
        if (!h_->session) {
          auto counters = std::make_unique<Counters>(Counters{&wire_in_, &wire_out_, {}});
          h_->session.reset(libssh2_session_init_ex(tracked_alloc, tracked_free, tracked_realloc, counters.get()));
          if (!h_->session) return fail("libssh2_session_init failed");
          (void)counters.release();  // the session's now (SessionFree)
          s = h_->session.get();
          libssh2_session_callback_set(s, LIBSSH2_CALLBACK_SEND, reinterpret_cast<void*>(&counted_send));
          libssh2_session_callback_set(s, LIBSSH2_CALLBACK_RECV, reinterpret_cast<void*>(&counted_recv));
          libssh2_session_set_blocking(s, 0);
          // Prefer the key types known_hosts lists for this host (as OpenSSH does), so a server
          // with several keys offers the one we can check.
          KnownHosts kh;
          for (const auto& f : p_.known_hosts) (void)kh.load(f);
          std::string pref;
          for (const auto& t : kh.key_types_for(p_.host, p_.port)) {
            if (t == "ssh-ed25519" || t.rfind("ecdsa-sha2-", 0) == 0 || t == "ssh-rsa") {
              pref += (pref.empty() ? "" : ",") + (t == "ssh-rsa" ? std::string("rsa-sha2-512,rsa-sha2-256,ssh-rsa") : t);
            }
          }
          if (pref.empty()) pref = "ssh-ed25519,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521,rsa-sha2-512,rsa-sha2-256,ssh-rsa";
          // Only names this libssh2 supports: Debian 12's 1.10 strips unknown ones (rsa-sha2-*)
          // with an overlapping memcpy, which ASan reports (and which is undefined behaviour).
          const char** algs = nullptr;
          const int n = libssh2_session_supported_algs(s, LIBSSH2_METHOD_HOSTKEY, &algs);
          std::string usable;
          for (size_t start = 0; start < pref.size();) {
            const size_t comma = std::min(pref.find(',', start), pref.size());
            const std::string name = pref.substr(start, comma - start);
            for (int i = 0; i < n; ++i) {
              if (name == algs[i]) usable += (usable.empty() ? "" : ",") + name;
            }
            start = comma + 1;
          }
          if (n > 0) libssh2_free(s, algs);
          if (!usable.empty()) (void)libssh2_session_method_pref(s, LIBSSH2_METHOD_HOSTKEY, usable.c_str());
          libssh2_keepalive_config(s, 1, static_cast<unsigned>(p_.keepalive_s));
        }
        const int rc = libssh2_session_handshake(s, tcp_.get());
        if (rc == LIBSSH2_ERROR_EAGAIN) return update_polls();
        if (rc == LIBSSH2_ERROR_SOCKET_DISCONNECT || rc == LIBSSH2_ERROR_BANNER_RECV) {
          // sshd closes a connection before its banner when more than MaxStartups are pending
          // authentication (many syncs or clients dialing it at once), or a TCP wrapper refused us.
          return fail("SSH handshake with " + p_.host + " failed: " + last_error(s) +
                      " (the server closed the connection before its banner: too many connections pending "
                      "authentication there, see sshd's MaxStartups, or refused by hosts.deny / a firewall)");
        }
        if (rc != 0) return fail("SSH handshake with " + p_.host + " failed: " + last_error(s));
        std::string why;
        if (!check_host_key(why)) return fail(why);
        stage_ = Stage::auth;
        break;
      }
      case Stage::auth: {
        const std::string& id = p_.identities[identity_];
        const int rc = libssh2_userauth_publickey_fromfile_ex(s, p_.user.c_str(), static_cast<unsigned>(p_.user.size()),
                                                              nullptr, id.c_str(), "");
        if (rc == LIBSSH2_ERROR_EAGAIN) return update_polls();
        if (rc != 0) {
          auth_errors_ += (auth_errors_.empty() ? "" : "; ") + id + ": " + last_error(s);
          if (++identity_ < p_.identities.size()) break;
          return fail("authentication as " + p_.user + "@" + p_.host + " failed (Permission denied (publickey)): " + auth_errors_);
        }
        lg().debug("authenticated to {} as {} with {}", p_.host, p_.user, id);
        stage_ = Stage::channel;
        break;
      }
      case Stage::channel: {
        LIBSSH2_CHANNEL* c = libssh2_channel_open_ex(s, "session", 7, kWindow, kPacket, nullptr, 0);
        if (!c) {
          if (libssh2_session_last_errno(s) == LIBSSH2_ERROR_EAGAIN) return update_polls();
          return fail("cannot open an SSH channel to " + p_.host + ": " + last_error(s));
        }
        h_->channel.reset(c);
        stage_ = Stage::exec;
        break;
      }
      case Stage::exec: {
        const int rc = libssh2_channel_process_startup(h_->channel.get(), "exec", 4, p_.command.c_str(),
                                                       static_cast<unsigned>(p_.command.size()));
        if (rc == LIBSSH2_ERROR_EAGAIN) return update_polls();
        if (rc != 0) return fail("cannot run the remote command on " + p_.host + ": " + last_error(s));
        stage_ = Stage::running;
        deadline_->stop();
        keepalive_ = std::make_unique<uvx::Timer>(loop_, [this] {
          int next = 0;
          if (h_->session) (void)libssh2_keepalive_send(h_->session.get(), &next);
          update_polls();
        });
        keepalive_->start(p_.keepalive_s * 1000, p_.keepalive_s * 1000);
        local_poll_ = std::make_unique<uvx::Poll>(loop_, local_.get(), [this](int status, int) {
          if (status < 0) return fail("local stream: " + std::string(uv_strerror(status)));
          pump();
        });
        lg().info("ssh session to {} up (libssh2)", p_.peer);
        break;
      }
      case Stage::running: return pump();
      case Stage::closing: return wait_closed();
    }
  }
}

void SshSession::drain_stderr() {
  char buf[4096];
  for (;;) {
    const ssize_t n = libssh2_channel_read_stderr(h_->channel.get(), buf, sizeof buf);
    if (n <= 0) break;
    stderr_partial_.append(buf, static_cast<size_t>(n));
    size_t nl;
    while ((nl = stderr_partial_.find('\n')) != std::string::npos) {
      const std::string line = stderr_partial_.substr(0, nl);
      stderr_partial_.erase(0, nl + 1);
      if (!line.empty()) lg().info("ssh[{}]: {}", p_.peer, log::escape(line));
    }
    if (stderr_partial_.size() > 4096) stderr_partial_.clear();
  }
}

void SshSession::pump() {
  if (stage_ != Stage::running) return;
  LIBSSH2_CHANNEL* ch = h_->channel.get();
  // Every libssh2 read call tries recv() on the socket first (libssh2 1.10 drains the transport
  // before looking at its queue): stderr once per pump, and channel reads only until one found
  // nothing — until a channel write (which reads too) may have queued more. Each spared call
  // was an EAGAIN recvfrom per message (15 per small file before, 11 now).
  drain_stderr();
  bool read_dry = false;
  bool progress = true;
  while (progress && stage_ == Stage::running) {
    progress = false;
    // Channel -> local socket.
    while (to_local_pos_ < to_local_.size()) {
      const ssize_t n = ::send(local_.get(), to_local_.data() + to_local_pos_, to_local_.size() - to_local_pos_, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) break;
        return fail(std::string("local stream write: ") + std::strerror(errno));
      }
      to_local_pos_ += static_cast<size_t>(n);
      progress = true;
    }
    if (to_local_pos_ == to_local_.size() && !remote_eof_ && !read_dry) {
      to_local_.resize(kChunk);
      const ssize_t n = libssh2_channel_read(ch, reinterpret_cast<char*>(to_local_.data()), to_local_.size());
      if (n > 0) {
        to_local_.resize(static_cast<size_t>(n));
        to_local_pos_ = 0;
        progress = true;
      } else {
        to_local_.clear();
        to_local_pos_ = 0;
        read_dry = true;
        if (n < 0 && n != LIBSSH2_ERROR_EAGAIN) return fail("SSH channel read: " + last_error(h_->session.get()));
        if (libssh2_channel_eof(ch)) {
          remote_eof_ = true;
          drain_stderr();
          // sshd sends the command's exit status after its output's EOF; read before the
          // channel closes, libssh2 reports 0 for a status it has not received.
          stage_ = Stage::closing;
          if (local_poll_) local_poll_->stop();
          close_wait_ = std::make_unique<uvx::Timer>(loop_, [this] { fail("the remote command ended"); });
          close_wait_->start(kCloseWaitMs);
          return wait_closed();
        }
      }
    }
    // Local socket -> channel.
    if (to_remote_pos_ == to_remote_.size() && !local_eof_) {
      to_remote_.resize(kChunk);
      const ssize_t n = ::recv(local_.get(), to_remote_.data(), to_remote_.size(), 0);
      if (n > 0) {
        to_remote_.resize(static_cast<size_t>(n));
        to_remote_pos_ = 0;
        progress = true;
      } else {
        to_remote_.clear();
        to_remote_pos_ = 0;
        if (n == 0) {
          local_eof_ = true;
        } else if (errno != EAGAIN && errno != EINTR) {
          return fail(std::string("local stream read: ") + std::strerror(errno));
        }
      }
    }
    while (to_remote_pos_ < to_remote_.size()) {
      const ssize_t n = libssh2_channel_write(ch, reinterpret_cast<const char*>(to_remote_.data() + to_remote_pos_),
                                              to_remote_.size() - to_remote_pos_);
      if (n == LIBSSH2_ERROR_EAGAIN) break;
      if (n < 0) return fail("SSH channel write: " + last_error(h_->session.get()));
      to_remote_pos_ += static_cast<size_t>(n);
      progress = true;
      read_dry = false;
    }
    if (local_eof_ && !eof_sent_ && to_remote_pos_ == to_remote_.size()) {
      const int rc = libssh2_channel_send_eof(ch);
      if (rc == 0) eof_sent_ = true;
      if (rc != 0 && rc != LIBSSH2_ERROR_EAGAIN) return fail("SSH channel eof: " + last_error(h_->session.get()));
    }
  }
  update_polls();
}

void SshSession::wait_closed() {
  LIBSSH2_CHANNEL* ch = h_->channel.get();
  const int rc = libssh2_channel_wait_closed(ch);
  if (rc == LIBSSH2_ERROR_EAGAIN) return update_polls();
  drain_stderr();
  if (rc != 0) return fail("the remote command ended");
  fail("the remote command ended (exit status " + std::to_string(libssh2_channel_get_exit_status(ch)) + ")");
}

void SshSession::update_polls() {
  if (stage_ == Stage::done || !tcp_poll_) return;
  int tcp = 0;
  if (h_->session) {
    const int dirs = libssh2_session_block_directions(h_->session.get());
    if (dirs & LIBSSH2_SESSION_BLOCK_OUTBOUND) tcp |= UV_WRITABLE;
  }
  // Read from the network while there is somewhere to put it (or libssh2 wants to read to make
  // progress on a write: window adjusts arrive as packets).
  if (stage_ != Stage::running || to_local_pos_ == to_local_.size() || to_remote_pos_ < to_remote_.size()) {
    tcp |= UV_READABLE;
  }
  if (tcp == 0) tcp = UV_READABLE;
  (void)tcp_poll_->start(tcp);
  if (local_poll_) {
    int local = 0;
    if (to_local_pos_ < to_local_.size()) local |= UV_WRITABLE;
    if (!local_eof_ && to_remote_pos_ == to_remote_.size()) local |= UV_READABLE;
    if (local) {
      (void)local_poll_->start(local);
    } else {
      local_poll_->stop();
    }
  }
}

void SshSession::fail(const std::string& why) {
  if (stage_ == Stage::done) return;
  stage_ = Stage::done;
  if (deadline_) deadline_->stop();
  if (keepalive_) keepalive_->stop();
  if (close_wait_) close_wait_->stop();
  if (tcp_poll_) tcp_poll_->stop();
  if (local_poll_) local_poll_->stop();
  // The reason first, then the stream ends (its reader sees EOF after the real cause is known).
  // Shut down, not closed: the fd stays ours until the destructor has closed local_poll_, because
  // libuv stops a poll by fd *number* — closing first lets that number be reused by another
  // connection whose registration the late uv_poll_stop would then silently remove.
  if (on_end_) on_end_(why);
  if (local_) ::shutdown(local_.get(), SHUT_RDWR);
}

}  // namespace syncd::transport
