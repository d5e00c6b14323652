// File: lib/runtime/body_pipe.h
//
// BodyPipe: a large file body on its way from the connection (loop thread pushes chunks as they
// arrive) to the apply job (job thread pops and writes them into the temp file), so a body is
// never held whole in memory. The loop pauses reading the connection while more than its high
// mark waits (kHigh by default; ReceiverOptions::hold_bytes), and the job's on_low callback
// (fired when the backlog falls under the low mark given, kLow by default) resumes it. When
// the job is done with the body for any reason (applied, refused, failed) it closes the reader
// side: later chunks are dropped instead of piling up. abort() ends a transfer whose connection
// went away: the job's pop() fails and its temp file is removed.
// Thread affinity: push/finish on the loop, pop/close_reader on the job thread, abort anywhere.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>

#include "lib/base/bytes.h"
#include "lib/base/result.h"
#include "protocol/messages.h"

namespace syncd::runtime {

class BodyPipe {
 public:
  static constexpr size_t kHigh = 64u << 20;
  static constexpr size_t kLow = 16u << 20;

  // `low`: the backlog under which on_low fires (the caller's own high mark is 4x that).
  explicit BodyPipe(std::function<void()> on_low, size_t low = kLow) : on_low_(std::move(on_low)), low_(low) {}

  // Loop. Returns the bytes now waiting (the caller pauses reading above its high mark).
  size_t push(Bytes chunk) {
    std::lock_guard lk(mu_);
    if (reader_closed_ || aborted_) return 0;
    bytes_ += chunk.size();
    q_.push_back(std::move(chunk));
    cv_.notify_one();
    return bytes_;
  }
  // Loop, before the first push of a delta body: the base it applies to (from its DELTA frames).
  void set_base(const protocol::Hash256& b) {
    std::lock_guard lk(mu_);
    base_ = b;
  }
  // Job, after the first pop: the base set before that chunk was pushed.
  protocol::Hash256 base() {
    std::lock_guard lk(mu_);
    return base_;
  }
  void finish() {
    std::lock_guard lk(mu_);
    done_ = true;
    cv_.notify_one();
  }
  void abort() {
    std::lock_guard lk(mu_);
    aborted_ = true;
    cv_.notify_one();
  }
  // Job: the next chunk, nullopt after the last, an error if the transfer was aborted.
  Result<std::optional<Bytes>> pop() {
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return aborted_ || !q_.empty() || done_; });
    if (aborted_) return Error::make(errc::truncated, "the connection ended during the transfer");
    if (q_.empty()) return std::optional<Bytes>();
    Bytes c = std::move(q_.front());
    q_.pop_front();
    const bool was_high = bytes_ >= low_;
    bytes_ -= c.size();
    const bool low = was_high && bytes_ < low_;
    lk.unlock();
    if (low && on_low_) on_low_();
    return std::optional<Bytes>(std::move(c));
  }
  // Job: no more reading; what is queued or still comes is dropped.
  void close_reader() {
    {
      std::lock_guard lk(mu_);
      reader_closed_ = true;
      q_.clear();
      bytes_ = 0;
    }
    if (on_low_) on_low_();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Bytes> q_;
  size_t bytes_ = 0;
  bool done_ = false, aborted_ = false, reader_closed_ = false;
  protocol::Hash256 base_{};
  std::function<void()> on_low_;
  size_t low_;
};

}  // namespace syncd::runtime
