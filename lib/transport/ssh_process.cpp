#include "lib/transport/ssh_process.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "lib/base/log.h"

namespace syncd::transport {

Result<std::unique_ptr<SshProcess>> SshProcess::start(uvx::Loop& loop, const std::vector<std::string>& argv,
                                                      std::string peer, OnExit on_exit) {
  std::unique_ptr<SshProcess> p(new SshProcess(loop, std::move(peer)));
  p->on_exit_ = std::move(on_exit);
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return Error::from_errno("socketpair for ssh");
  UniqueFd ours(sv[0]), theirs(sv[1]);
  int ep[2];
  if (::pipe2(ep, O_CLOEXEC) != 0) return Error::from_errno("pipe for ssh stderr");
  UniqueFd err_r(ep[0]), err_w(ep[1]);
  // Our ends are non-blocking (the loop polls them); the child's stay blocking, as ssh expects.
  if (::fcntl(ours.get(), F_SETFL, O_NONBLOCK) != 0 || ::fcntl(err_r.get(), F_SETFL, O_NONBLOCK) != 0) {
    return Error::from_errno("set O_NONBLOCK");
  }
  uvx::Process::Spec spec;
  spec.argv = argv;
  spec.stdin_fd = theirs.get();
  spec.stdout_fd = theirs.get();
  spec.stderr_fd = err_w.get();
  // SIGTERM/SIGINT to syncd's process group (Ctrl-C, a stop script) must not cut the session
  // syncd's fade still flushes queued changes through; syncd ends ssh after that.
  spec.own_session = true;
  SshProcess* self = p.get();
  SYNCD_TRY_ASSIGN(proc, uvx::Process::spawn(loop, spec, [self](int64_t st, int sig) { self->exited(st, sig); }));
  p->proc_ = std::move(proc);
  p->stream_ = std::move(ours);
  p->err_ = std::move(err_r);
  p->err_poll_ = std::make_unique<uvx::Poll>(loop, p->err_.get(), [self](int, int) { self->read_stderr(); });
  (void)p->err_poll_->start(UV_READABLE);
  log::get(log::Module::transport).debug("started {} (pid {}) for {}", argv[0], p->proc_->pid(), p->peer_);
  return p;
}

SshProcess::~SshProcess() {
  err_poll_.reset();
  proc_.reset();  // SIGTERM if still running
}

void SshProcess::read_stderr() {
  if (!err_ || !err_poll_) return;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(err_.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0 || errno != EAGAIN) err_poll_->stop();  // EOF: ssh closed its stderr
      break;
    }
    partial_.append(buf, static_cast<size_t>(n));
    size_t nl;
    while ((nl = partial_.find('\n')) != std::string::npos) {
      std::string line = partial_.substr(0, nl);
      partial_.erase(0, nl + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty()) continue;
      log::get(log::Module::transport).info("ssh[{}]: {}", peer_, log::escape(line));
      last_line_ = line;
    }
    if (partial_.size() > 4096) partial_.clear();  // a line that long is noise
  }
}

void SshProcess::exited(int64_t status, int sig) {
  read_stderr();  // whatever ssh said last explains the exit
  std::string why = sig != 0 ? "ssh killed by signal " + std::to_string(sig)
                             : "ssh exited with status " + std::to_string(status);
  if (!last_line_.empty()) why += ": " + last_line_;
  if (on_exit_) on_exit_(why);
}

}  // namespace syncd::transport
