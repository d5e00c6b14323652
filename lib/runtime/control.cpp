#include "lib/runtime/control.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "lib/base/fd_wait.h"
#include "lib/base/log.h"
#include "lib/codec/sha256.h"
#include "lib/runtime/tree_overlap.h"

namespace syncd::runtime {
namespace {

auto& lg() { return log::get(log::Module::runtime); }

Result<sockaddr_un> unix_addr(const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path) return Error::make(errc::limit_exceeded, "socket path too long: " + path);
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  return a;
}

}  // namespace

Result<std::string> control_socket_path(const std::string& rundir, const std::string& root) {
  // Resolved, so every spelling of one directory (a symlink, "a/../b") finds the same daemon.
  SYNCD_TRY_ASSIGN(real, real_path(root));
  const auto h = codec::Sha256::of(as_bytes(real));
  return rundir + "/root-" + codec::to_hex(ByteSpan(h.data(), 6)) + ".sock";
}

ControlServer::~ControlServer() {
  for (auto& c : clients_) c->cancel = nullptr;  // the daemon is going: its sessions go with it
  poll_.reset();
  waiters_.reset();
  reaper_.reset();
  clients_.clear();
  graveyard_.clear();
  if (fd_ && !path_.empty()) ::unlink(path_.c_str());
}

// The default run directory is root's; a daemon run as another user needs its own.
constexpr const char* kRundirHint =
    " (give a run directory this user may write: -rundir DIR, or syncd = { rundir = ... } in the config)";

Status ControlServer::listen(const std::string& path) {
  const std::string dir = path.substr(0, path.rfind('/'));
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    const int err = errno;
    return Error::from_errno("create " + dir + (err == EACCES ? kRundirHint : ""), err);
  }
  SYNCD_TRY_ASSIGN(addr, unix_addr(path));
  // A socket file that nobody answers on is a leftover of a daemon that died: replace it.
  if (control_request(path, "ping", 500).ok()) {
    return Error::make(errc::unsupported, "another syncd daemon already owns this directory (" + path + ")");
  }
  ::unlink(path.c_str());
  fd_ = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd_) return Error::from_errno("control socket");
  const mode_t old = ::umask(0177);  // born 0600: no window in which others may connect
  const int rc = ::bind(fd_.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  ::umask(old);
  if (rc != 0) {
    const int err = errno;
    return Error::from_errno("bind " + path + (err == EACCES || err == EPERM ? kRundirHint : ""), err);
  }
  if (::listen(fd_.get(), 16) != 0) return Error::from_errno("listen " + path);
  path_ = path;
  poll_ = std::make_unique<uvx::Poll>(loop_, fd_.get(), [this](int, int) { accept_all(); });
  SYNCD_TRY(poll_->start(UV_READABLE));
  waiters_ = std::make_unique<uvx::Timer>(loop_, [this] { check_waiters(); });
  reaper_ = std::make_unique<uvx::Timer>(loop_, [this] { graveyard_.clear(); });
  return {};
}

void ControlServer::accept_all() {
  for (;;) {
    UniqueFd c(::accept4(fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!c) return;
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(c.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.uid != 0) {
      lg().warn("control socket: refused a client with uid {}", cred.uid);
      continue;
    }
    auto cl = std::make_unique<Client>();
    cl->id = ++next_id_;
    cl->fd = std::move(c);
    Client* raw = cl.get();
    cl->poll = std::make_unique<uvx::Poll>(loop_, raw->fd.get(), [this, raw](int, int ev) { on_client(raw, ev); });
    (void)cl->poll->start(UV_READABLE);
    clients_.push_back(std::move(cl));
  }
}

void ControlServer::on_client(Client* c, int events) {
  if (events & UV_READABLE) {
    char buf[512];
    // recvmsg: an `attach` request carries the session's two descriptors (SCM_RIGHTS).
    alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * 4)];
    iovec iov{buf, sizeof buf};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cbuf;
    mh.msg_controllen = sizeof cbuf;
    const ssize_t n = ::recvmsg(c->fd.get(), &mh, MSG_CMSG_CLOEXEC);
    for (cmsghdr* cm = CMSG_FIRSTHDR(&mh); n >= 0 && cm != nullptr; cm = CMSG_NXTHDR(&mh, cm)) {
      if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
      const size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int fd = -1;
        std::memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof fd);
        c->fds.emplace_back(fd);
      }
    }
    if (n <= 0 && !(n < 0 && errno == EAGAIN)) return drop(c);
    if (c->joined) return;  // nothing more is expected from a joined attach
    if (n > 0) c->in.append(buf, static_cast<size_t>(n));
    if (c->in.size() > 4096 || c->fds.size() > 2) return drop(c);
    const size_t nl = c->in.find('\n');
    if (nl != std::string::npos && c->out.empty() && !c->waiting_idle) {
      const std::string req = c->in.substr(0, nl);
      c->json = req.size() < 5 || req.compare(req.size() - 5, 5, " text") != 0;
      if (req == "attach" || req.rfind("attach ", 0) == 0) {
        if (!h_.attach || c->fds.size() != 2) {
          answer(c, !h_.attach ? "error this daemon does not accept peer sessions\n"
                               : "error attach needs the session's two descriptors\n");
          return;
        }
        const uint64_t id = c->id;
        auto cancel = h_.attach(std::move(c->fds[0]), std::move(c->fds[1]), req.substr(6),
                                [this, id](const std::string& end_line) {
                                  for (auto& cl : clients_) {
                                    if (cl->id == id) {
                                      cl->joined = false;
                                      cl->cancel = nullptr;
                                      answer(cl.get(), end_line);
                                    }
                                  }
                                });
        c->fds.clear();
        if (!cancel) return;  // refused: the end line is already being written
        c->joined = true;
        c->cancel = std::move(cancel);
        const std::string ok = "ok\n";
        (void)::send(c->fd.get(), ok.data(), ok.size(), MSG_NOSIGNAL);
        return;
      }
      if (req.rfind("status", 0) == 0) {
        answer(c, h_.status(c->json));
      } else if (req == "ping") {
        answer(c, "pong\n");
      } else if (req.rfind("wait-idle ", 0) == 0) {
        c->waiting_idle = true;
        c->deadline_ms = loop_.now_ms() + std::strtoull(req.c_str() + 10, nullptr, 10);
        check_waiters();
      } else {
        answer(c, "{\"error\": \"unknown request\"}\n");
      }
    }
  }
  if ((events & UV_WRITABLE) && !c->out.empty()) {
    const ssize_t n = ::send(c->fd.get(), c->out.data() + c->out_pos, c->out.size() - c->out_pos, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN) return drop(c);
    if (n > 0) c->out_pos += static_cast<size_t>(n);
    if (c->out_pos == c->out.size()) return drop(c);
  }
}

void ControlServer::answer(Client* c, const std::string& body) {
  c->out = body;
  c->out_pos = 0;
  (void)c->poll->start(UV_READABLE | UV_WRITABLE);
}

void ControlServer::drop(Client* c) {
  auto it = std::find_if(clients_.begin(), clients_.end(), [&](const auto& p) { return p.get() == c; });
  if (it == clients_.end()) return;
  // The attach process went away: its session ends with it (sshd is closing the channel).
  if (auto cancel = std::move((*it)->cancel)) cancel();
  // Not destroyed inside its own poll callback: moved aside and freed on the next loop turn.
  (*it)->poll->stop();
  graveyard_.push_back(std::move(*it));
  clients_.erase(it);
  reaper_->start(0);
}

void ControlServer::check_waiters() {
  bool any = false;
  const bool idle = h_.idle && h_.idle();
  for (auto& c : clients_) {
    if (!c->waiting_idle) continue;
    if (idle || loop_.now_ms() >= c->deadline_ms) {
      c->waiting_idle = false;
      answer(c.get(), h_.status(c->json));  // it says whether it is idle; the caller decides
    } else {
      any = true;
    }
  }
  if (any) waiters_->start(5);
}

std::string json_string(std::string_view s) {
  std::string o = "\"";
  for (size_t i = 0; i < s.size();) {
    const auto ch = static_cast<unsigned char>(s[i]);
    const size_t len = log::utf8_length(s, i);
    char b[8];
    if (len == 0) {
      // Not UTF-8 (a file name is any bytes): JSON cannot carry the byte, so the string carries
      // the log's spelling of it, \xff, and stays valid for strict parsers.
      std::snprintf(b, sizeof b, "\\\\x%02x", ch);
      o += b;
    } else if (ch == '"' || ch == '\\') {
      o += '\\';
      o += static_cast<char>(ch);
    } else if (ch < 0x20) {
      std::snprintf(b, sizeof b, "\\u%04x", ch);
      o += b;
    } else {
      o.append(s.substr(i, len));
    }
    i += len == 0 ? 1 : len;
  }
  return o + "\"";
}

Result<std::string> control_request(const std::string& path, const std::string& request, int timeout_ms) {
  SYNCD_TRY_ASSIGN(addr, unix_addr(path));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Error::from_errno("socket");
  // A daemon that is stopped accepts nothing: once its listen queue is full, connect() waits for
  // good unless bounded (for a unix socket, by the send timeout; then EAGAIN).
  const timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  (void)::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    return Error::from_errno("connect " + path);
  }
  const std::string line = request + "\n";
  if (::send(fd.get(), line.data(), line.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(line.size())) {
    return Error::from_errno("send to " + path);
  }
  std::string out;
  const Deadline deadline(timeout_ms);
  for (;;) {
    const int ready = wait_readable(fd.get(), deadline);
    if (ready == 0) return Error::make(errc::truncated, "no answer from " + path);
    if (ready < 0) return Error::from_errno("poll " + path);
    char buf[4096];
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::from_errno("read from " + path);
    if (n == 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

Result<int> control_join(const std::string& path, const std::string& args, int in_fd, int out_fd, int take_ms) {
  const std::string frozen = "the syncd daemon behind " + path + " did not answer within " + std::to_string(take_ms / 1000) +
                             " s (is it stopped or hung?)";
  // A ping first: descriptors handed to a daemon that is stopped stay in its socket's queue and
  // hold the session's pipes open after attach gives up, so sshd would never end the session.
  auto pong = control_request(path, "ping", take_ms);
  if (!pong.ok() && (pong.error().is_errno(EAGAIN) || pong.error().is_errno(EWOULDBLOCK))) {
    return Error::from_errno(frozen, ETIMEDOUT);  // its listen queue full: not taking connections
  }
  if (!pong.ok() && pong.error().code.category() == std::generic_category()) return std::move(pong).error();
  if (!pong.ok() || *pong != "pong\n") return Error::from_errno(frozen, ETIMEDOUT);
  SYNCD_TRY_ASSIGN(addr, unix_addr(path));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Error::from_errno("socket");
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    return Error::from_errno("connect " + path);
  }
  std::string line = "attach " + args + "\n";
  iovec iov{line.data(), line.size()};
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * 2)] = {};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = cbuf;
  mh.msg_controllen = sizeof cbuf;
  cmsghdr* cm = CMSG_FIRSTHDR(&mh);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int) * 2);
  const int fds[2] = {in_fd, out_fd};
  std::memcpy(CMSG_DATA(cm), fds, sizeof fds);
  if (::sendmsg(fd.get(), &mh, MSG_NOSIGNAL) != static_cast<ssize_t>(line.size())) {
    return Error::from_errno("send to " + path);
  }
  // "ok" once the daemon serves the session, then one "end <code> <why>" line when it is over.
  std::string got;
  const Deadline deadline(take_ms);
  for (;;) {
    if (got.empty()) {  // until "ok"; after it, the session lasts as long as it lasts
      const int ready = wait_readable(fd.get(), deadline);
      if (ready == 0) return Error::from_errno(frozen, ETIMEDOUT);
      if (ready < 0) return Error::from_errno("poll " + path);
    }
    char buf[512];
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::from_errno("read from " + path);
    if (n == 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  if (got.rfind("error ", 0) == 0) {
    return Error::make(errc::unsupported, got.substr(6, got.find('\n') == std::string::npos ? std::string::npos : got.find('\n') - 6));
  }
  if (got.rfind("ok\n", 0) != 0) return Error::make(errc::truncated, "the daemon behind " + path + " went away");
  const size_t end = got.find("end ");
  if (end == std::string::npos) return Error::make(errc::truncated, "the daemon behind " + path + " went away during the session");
  return std::atoi(got.c_str() + end + 4);
}

}  // namespace syncd::runtime
