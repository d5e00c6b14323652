// File: lib/runtime/job_queue.h
//
// JobQueue: one worker thread that runs jobs in the order they were posted, and hands each job's
// completion back to the loop thread. Everything that blocks (stat, hashing, file writes with
// fsync, SQLite commits) runs here, never on the loop (DESIGN.md §3); running one node's store
// and apply work on one thread in order also makes "index updated before the watcher's echo is
// scanned" hold by construction.
// Thread affinity: post() from the loop thread; jobs on the worker; completions on the loop.
//
//   jobs.post([=]() -> JobQueue::Done { auto r = slow(); return [=] { use(r); }; });
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "lib/uvx/uvx.h"

namespace syncd::runtime {

class JobQueue {
 public:
  using Done = std::function<void()>;       // runs on the loop thread (may be empty)
  using Job = std::function<Done()>;        // runs on the worker thread

  // `name`: the worker thread's name (top -H, perf, /proc/PID/task/*/comm; at most 15 bytes).
  JobQueue(uvx::Loop& loop, std::string name);
  // Finishes the jobs already posted (their completions are dropped), then joins the worker.
  ~JobQueue();
  // The same, now: owners call it first in their destructors, while every member their jobs
  // touch is still alive (members are destroyed before this one otherwise). Idempotent.
  void stop();
  JobQueue(const JobQueue&) = delete;
  JobQueue& operator=(const JobQueue&) = delete;

  void post(Job job);
  // Jobs posted and not yet completed on the loop.
  size_t in_flight() const noexcept { return in_flight_; }

 private:
  void worker();
  void deliver();

  std::unique_ptr<uvx::Async> async_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;       // guarded by mu_
  std::vector<Done> done_;     // guarded by mu_
  bool stopping_ = false;      // guarded by mu_
  size_t in_flight_ = 0;       // loop thread only
  std::string name_;
  std::thread thread_;
};

}  // namespace syncd::runtime
