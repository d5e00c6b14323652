// File: lib/uvx/uvx.h
//
// RAII for the libuv handles syncd uses (libuv design.rst rules): each wrapper heap-allocates its
// uv_*_t, which never moves; the destructor clears `data` and uv_close()s it, and the close
// callback frees it, so a callback can never reach a destroyed owner. Wrappers are neither
// copyable nor movable: owners hold them in std::unique_ptr. Callbacks are std::function and are
// invoked through noexcept trampolines that catch and log anything thrown (nothing may cross C).
// Loop closes whatever is left and drains the loop in its destructor.
// Thread affinity: loop thread only, except Async::send() (any thread).
//
//   uvx::Loop loop;
//   uvx::Timer t(loop, [] { ... });  t.start(20);
//   uvx::Poll p(loop, fd, [](int status, int events) { ... });  p.start(UV_READABLE);
//   loop.run();
#pragma once

#include <uv.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "lib/base/result.h"

namespace syncd::uvx {

Error uv_error(const char* what, int rc);

class Loop {
 public:
  Loop();
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;
  uv_loop_t* get() noexcept { return loop_.get(); }
  // Runs until stop() or until nothing is active.
  void run() { uv_run(loop_.get(), UV_RUN_DEFAULT); }
  void run_once() { uv_run(loop_.get(), UV_RUN_ONCE); }
  void stop() { uv_stop(loop_.get()); }
  uint64_t now_ms() noexcept { return uv_now(loop_.get()); }

 private:
  std::unique_ptr<uv_loop_t> loop_;
};

class Timer {
 public:
  Timer(Loop& loop, std::function<void()> cb);
  ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;
  void start(uint64_t timeout_ms, uint64_t repeat_ms = 0);
  void stop();
  bool active() const noexcept { return uv_is_active(reinterpret_cast<const uv_handle_t*>(h_)) != 0; }

 private:
  static void on_timer(uv_timer_t* h) noexcept;
  uv_timer_t* h_;
  std::function<void()> cb_;
};

// Runs after every turn of the loop that polled for I/O (uv_check_t): a hook on "the loop did
// something", which costs nothing while the loop sleeps.
class Check {
 public:
  Check(Loop& loop, std::function<void()> cb);
  ~Check();
  Check(const Check&) = delete;
  Check& operator=(const Check&) = delete;

 private:
  static void on_check(uv_check_t* h) noexcept;
  uv_check_t* h_;
  std::function<void()> cb_;
};

class Poll {
 public:
  // cb(status, events): status < 0 is a libuv error. A socket's POLLERR, which libuv reports as
  // UV_EBADF, comes as the socket's own error (SO_ERROR: UV_ECONNRESET, UV_EPIPE, ...) when it
  // has one: "Bad file descriptor" sent operators looking for a bug where a peer had gone.
  Poll(Loop& loop, int fd, std::function<void(int, int)> cb);
  ~Poll();
  Poll(const Poll&) = delete;
  Poll& operator=(const Poll&) = delete;
  Status start(int events);
  void stop();

 private:
  static void on_poll(uv_poll_t* h, int status, int events) noexcept;
  uv_poll_t* h_;
  std::function<void(int, int)> cb_;
  int events_ = 0;  // what the handle polls for now; 0 = stopped
  bool ok_ = false;
};

// A wake-up of the loop from any thread: an eventfd polled on the loop, not uv_async_t. libuv
// 1.44's loop spins (up to ~1000 `pause`s, then sched_yield) on an async handle whose sender
// has written the eventfd but not yet marked the send done; on 2 vCPUs the woken loop often
// preempts the sender right there, and that spin was 6 % of syncd's CPU in the small-file
// latency bench, on its critical path. Here the sender's flag is set before the write.
class Async {
 public:
  Async(Loop& loop, std::function<void()> cb);
  ~Async();
  Async(const Async&) = delete;
  Async& operator=(const Async&) = delete;
  // Any thread. Several sends before the callback runs coalesce into one call; whatever the
  // sender published before send() is visible to the callback that follows.
  void send() noexcept;

 private:
  static void on_poll(uv_poll_t* h, int status, int events) noexcept;
  int fd_ = -1;  // eventfd, closed after the poll handle stopped
  uv_poll_t* h_ = nullptr;
  std::atomic<bool> pending_{false};
  std::function<void()> cb_;
};

class Signal {
 public:
  Signal(Loop& loop, int signum, std::function<void(int)> cb);
  ~Signal();
  Signal(const Signal&) = delete;
  Signal& operator=(const Signal&) = delete;

 private:
  static void on_signal(uv_signal_t* h, int signum) noexcept;
  uv_signal_t* h_;
  std::function<void(int)> cb_;
};

// A child process (uv_spawn). stdin/stdout/stderr are the given fds (dup'ed into the child;
// -1 = /dev/null); the caller keeps and closes its copies. on_exit(exit_status, term_signal) runs
// on the loop once the child is reaped. The destructor sends SIGTERM to a child still running
// (a process handle must not outlive its owner; the loop still reaps it).
class Process {
 public:
  struct Spec {
    std::vector<std::string> argv;
    int stdin_fd = -1, stdout_fd = -1, stderr_fd = 2;
    // In a session (and process group) of its own: a signal sent to the parent's process group
    // (Ctrl-C, kill -- -PGID) does not reach it; the parent ends it when it is done with it.
    bool own_session = false;
  };
  static Result<std::unique_ptr<Process>> spawn(Loop& loop, const Spec& spec,
                                                std::function<void(int64_t, int)> on_exit);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  int pid() const noexcept { return pid_; }
  bool running() const noexcept { return running_; }
  void kill(int signum);

 private:
  Process() = default;
  static void on_exit(uv_process_t* h, int64_t status, int term_signal) noexcept;
  uv_process_t* h_ = nullptr;
  std::function<void(int64_t, int)> cb_;
  int pid_ = 0;
  bool running_ = false;
};

// Runs `work` on libuv's thread pool, then `done` on the loop thread. Neither may throw.
void queue_work(Loop& loop, std::function<void()> work, std::function<void()> done);

}  // namespace syncd::uvx
