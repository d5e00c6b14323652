// File: lib/runtime/move_log.cpp
#include "lib/runtime/move_log.h"

namespace syncd::runtime {

void MoveLog::add(uint64_t tomb_seq, uint64_t to_seq, std::string to_path) {
  std::lock_guard lk(mu_);
  if (by_tomb_.insert_or_assign(tomb_seq, Move{to_seq, std::move(to_path)}).second) order_.push_back(tomb_seq);
  while (order_.size() > kMax) {
    by_tomb_.erase(order_.front());
    order_.pop_front();
  }
}

std::optional<MoveLog::Move> MoveLog::find(uint64_t tomb_seq) const {
  std::lock_guard lk(mu_);
  auto it = by_tomb_.find(tomb_seq);
  if (it == by_tomb_.end()) return std::nullopt;
  return it->second;
}

}  // namespace syncd::runtime
