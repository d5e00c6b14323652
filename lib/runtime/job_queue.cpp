#include "lib/runtime/job_queue.h"

#include <pthread.h>

namespace syncd::runtime {

JobQueue::JobQueue(uvx::Loop& loop, std::string name)
    : async_(std::make_unique<uvx::Async>(loop, [this] { deliver(); })),
      name_(std::move(name)),
      thread_([this] {
        (void)::pthread_setname_np(::pthread_self(), name_.substr(0, 15).c_str());  // best effort
        worker();
      }) {}

JobQueue::~JobQueue() { stop(); }

void JobQueue::stop() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  async_.reset();
}

void JobQueue::post(Job job) {
  ++in_flight_;
  {
    std::lock_guard<std::mutex> lk(mu_);
    jobs_.push_back(std::move(job));
  }
  cv_.notify_one();
}

void JobQueue::worker() {
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // stopping and drained
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    Done d = job();
    {
      std::lock_guard<std::mutex> lk(mu_);
      done_.push_back(std::move(d));
    }
    async_->send();
  }
}

void JobQueue::deliver() {
  std::vector<Done> ready;
  {
    std::lock_guard<std::mutex> lk(mu_);
    ready.swap(done_);
  }
  for (auto& d : ready) {
    --in_flight_;
    if (d) d();
  }
}

}  // namespace syncd::runtime
