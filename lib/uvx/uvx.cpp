#include "lib/uvx/uvx.h"

#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <exception>
#include <string>

#include "lib/base/log.h"

namespace syncd::uvx {
namespace {

template <class H>
void close_and_free(H* h) {
  auto* base = reinterpret_cast<uv_handle_t*>(h);
  base->data = nullptr;
  if (!uv_is_closing(base)) {
    uv_close(base, [](uv_handle_t* x) { delete reinterpret_cast<H*>(x); });
  }
}

template <class F>
void guarded(const char* where, F&& f) noexcept {
  try {
    f();
  } catch (const std::exception& e) {
    log::get(log::Module::runtime).error("exception in {} callback: {}", where, e.what());
  } catch (...) {
    log::get(log::Module::runtime).error("unknown exception in {} callback", where);
  }
}

void check_init(int rc, const char* what) {
  if (rc != 0) throw std::runtime_error(uv_error(what, rc).message());
}

}  // namespace

Error uv_error(const char* what, int rc) {
  // libuv error codes are negated errno values on Unix.
  return Error::from_errno(std::string(what) + " (" + uv_err_name(rc) + ")", -rc);
}

Loop::Loop() : loop_(std::make_unique<uv_loop_t>()) { check_init(uv_loop_init(loop_.get()), "uv_loop_init"); }

Loop::~Loop() {
  // Close every handle still open (owners destroyed after the loop would be a bug, but a
  // half-built object must not leak), then run until the close callbacks have freed them.
  uv_walk(
      loop_.get(),
      [](uv_handle_t* h, void*) {
        if (!uv_is_closing(h)) {
          h->data = nullptr;
          uv_close(h, nullptr);  // leaked on purpose: its owner is gone or will free it
        }
      },
      nullptr);
  while (uv_loop_close(loop_.get()) == UV_EBUSY) uv_run(loop_.get(), UV_RUN_NOWAIT);
}

Timer::Timer(Loop& loop, std::function<void()> cb) : h_(new uv_timer_t), cb_(std::move(cb)) {
  const int rc = uv_timer_init(loop.get(), h_);
  if (rc != 0) {
    delete h_;
    check_init(rc, "uv_timer_init");
  }
  h_->data = this;
}
Timer::~Timer() { close_and_free(h_); }
void Timer::start(uint64_t timeout_ms, uint64_t repeat_ms) { uv_timer_start(h_, on_timer, timeout_ms, repeat_ms); }
void Timer::stop() { uv_timer_stop(h_); }
void Timer::on_timer(uv_timer_t* h) noexcept {
  if (auto* self = static_cast<Timer*>(h->data)) guarded("timer", [&] { self->cb_(); });
}

Check::Check(Loop& loop, std::function<void()> cb) : h_(new uv_check_t), cb_(std::move(cb)) {
  int rc = uv_check_init(loop.get(), h_);
  if (rc != 0) {
    delete h_;
    check_init(rc, "uv_check_init");
  }
  h_->data = this;
  rc = uv_check_start(h_, on_check);
  if (rc != 0) {
    close_and_free(h_);
    check_init(rc, "uv_check_start");
  }
  // A check handle must not keep the loop running on its own.
  uv_unref(reinterpret_cast<uv_handle_t*>(h_));
}
Check::~Check() { close_and_free(h_); }
void Check::on_check(uv_check_t* h) noexcept {
  if (auto* self = static_cast<Check*>(h->data)) guarded("check", [&] { self->cb_(); });
}

Poll::Poll(Loop& loop, int fd, std::function<void(int, int)> cb) : h_(new uv_poll_t), cb_(std::move(cb)) {
  const int rc = uv_poll_init(loop.get(), h_, fd);
  if (rc != 0) {
    delete h_;
    check_init(rc, "uv_poll_init");
  }
  h_->data = this;
  ok_ = true;
}
Poll::~Poll() {
  uv_poll_stop(h_);
  close_and_free(h_);
}
Status Poll::start(int events) {
  // libuv's uv_poll_start stops the handle first (epoll_ctl DEL, then ADD on the next loop pass):
  // two syscalls per call, and callers re-assert their interest after every read and write.
  if (events == events_) return {};
  const int rc = uv_poll_start(h_, events, on_poll);
  if (rc != 0) {
    events_ = 0;  // uv_poll_start stopped the handle before it failed
    return uv_error("uv_poll_start", rc);
  }
  events_ = events;
  return {};
}
void Poll::stop() {
  if (events_ == 0) return;
  uv_poll_stop(h_);
  events_ = 0;
}
void Poll::on_poll(uv_poll_t* h, int status, int events) noexcept {
  auto* self = static_cast<Poll*>(h->data);
  if (self && status < 0) self->events_ = 0;  // libuv stops a handle that reports an error
  if (status == UV_EBADF) {
    uv_os_fd_t fd = -1;
    int err = 0;
    socklen_t len = sizeof err;
    if (uv_fileno(reinterpret_cast<uv_handle_t*>(h), &fd) == 0 && ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 &&
        err != 0) {
      status = -err;  // libuv's codes are negated errnos on Linux
    }
  }
  if (self) guarded("poll", [&] { self->cb_(status, events); });
}

Async::Async(Loop& loop, std::function<void()> cb) : cb_(std::move(cb)) {
  fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd_ < 0) check_init(-errno, "eventfd");
  h_ = new uv_poll_t;
  int rc = uv_poll_init(loop.get(), h_, fd_);
  if (rc != 0) {
    delete h_;
    ::close(fd_);
    check_init(rc, "uv_poll_init (async)");
  }
  h_->data = this;
  rc = uv_poll_start(h_, UV_READABLE, on_poll);
  if (rc != 0) {
    close_and_free(h_);
    ::close(fd_);
    check_init(rc, "uv_poll_start (async)");
  }
}
Async::~Async() {
  uv_poll_stop(h_);  // out of epoll before the fd closes
  close_and_free(h_);
  ::close(fd_);
}
void Async::send() noexcept {
  // Only the first send after a callback writes: the rest find the flag set and coalesce.
  if (pending_.exchange(true)) return;
  const uint64_t one = 1;
  while (::write(fd_, &one, sizeof one) < 0 && errno == EINTR) {
  }
}
void Async::on_poll(uv_poll_t* h, int status, int) noexcept {
  auto* self = static_cast<Async*>(h->data);
  if (!self) return;
  if (status < 0) {  // libuv stopped the handle: nothing would ever wake this loop again
    log::get(log::Module::runtime).error("async wake-up fd failed: {}", uv_strerror(status));
    return;
  }
  uint64_t n = 0;
  while (::read(self->fd_, &n, sizeof n) < 0 && errno == EINTR) {
  }
  // Cleared before the callback runs: a send racing with it either sees the flag still set (and
  // its data is then read by this callback, which starts later) or writes a new wake-up.
  self->pending_.store(false);
  guarded("async", [&] { self->cb_(); });
}

Signal::Signal(Loop& loop, int signum, std::function<void(int)> cb) : h_(new uv_signal_t), cb_(std::move(cb)) {
  int rc = uv_signal_init(loop.get(), h_);
  if (rc != 0) {
    delete h_;
    check_init(rc, "uv_signal_init");
  }
  h_->data = this;
  rc = uv_signal_start(h_, on_signal, signum);
  if (rc != 0) {
    close_and_free(h_);
    check_init(rc, "uv_signal_start");
  }
}
Signal::~Signal() { close_and_free(h_); }
void Signal::on_signal(uv_signal_t* h, int signum) noexcept {
  if (auto* self = static_cast<Signal*>(h->data)) guarded("signal", [&] { self->cb_(signum); });
}

Result<std::unique_ptr<Process>> Process::spawn(Loop& loop, const Spec& spec,
                                                std::function<void(int64_t, int)> on_exit_cb) {
  if (spec.argv.empty()) return Error::make(errc::internal, "spawn: empty argv");
  std::unique_ptr<Process> p(new Process());
  p->cb_ = std::move(on_exit_cb);
  std::vector<char*> args;
  for (const auto& a : spec.argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  uv_stdio_container_t stdio[3];
  const int fds[3] = {spec.stdin_fd, spec.stdout_fd, spec.stderr_fd};
  for (int i = 0; i < 3; ++i) {
    stdio[i].flags = fds[i] >= 0 ? UV_INHERIT_FD : UV_IGNORE;
    stdio[i].data.fd = fds[i];
  }
  uv_process_options_t o{};
  o.file = args[0];
  o.args = args.data();
  o.exit_cb = on_exit;
  o.stdio_count = 3;
  o.stdio = stdio;
  if (spec.own_session) o.flags |= UV_PROCESS_DETACHED;  // setsid() in the child
  p->h_ = new uv_process_t;
  p->h_->data = p.get();
  const int rc = uv_spawn(loop.get(), p->h_, &o);
  if (rc != 0) {
    // Per libuv, the handle must still be closed after a failed spawn.
    p->h_->data = nullptr;
    close_and_free(p->h_);
    p->h_ = nullptr;
    return uv_error(("start " + spec.argv[0]).c_str(), rc);
  }
  p->pid_ = p->h_->pid;
  p->running_ = true;
  return p;
}

Process::~Process() {
  if (!h_) return;
  if (running_) uv_process_kill(h_, SIGTERM);
  close_and_free(h_);
}

void Process::kill(int signum) {
  if (h_ && running_) uv_process_kill(h_, signum);
}

void Process::on_exit(uv_process_t* h, int64_t status, int term_signal) noexcept {
  auto* self = static_cast<Process*>(h->data);
  if (!self) return;
  self->running_ = false;
  if (self->cb_) guarded("process exit", [&] { self->cb_(status, term_signal); });
}

namespace {
struct WorkItem {
  uv_work_t req;
  std::function<void()> work;
  std::function<void()> done;
};
}  // namespace

void queue_work(Loop& loop, std::function<void()> work, std::function<void()> done) {
  auto* item = new WorkItem{{}, std::move(work), std::move(done)};
  item->req.data = item;
  const int rc = uv_queue_work(
      loop.get(), &item->req,
      [](uv_work_t* r) { guarded("work", [&] { static_cast<WorkItem*>(r->data)->work(); }); },
      [](uv_work_t* r, int) {
        std::unique_ptr<WorkItem> it(static_cast<WorkItem*>(r->data));
        guarded("work done", [&] { it->done(); });
      });
  if (rc != 0) {
    std::unique_ptr<WorkItem> it(item);
    log::get(log::Module::runtime).error("uv_queue_work failed: {}", uv_strerror(rc));
  }
}

}  // namespace syncd::uvx
