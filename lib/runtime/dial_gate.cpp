#include "lib/runtime/dial_gate.h"

#include <algorithm>

namespace syncd::runtime {

DialGate::DialGate(size_t per_host) : state_(std::make_shared<State>()) {
  state_->per_host = std::max<size_t>(1, per_host);
}

DialGate::~DialGate() = default;

std::unique_ptr<DialGate::Ticket> DialGate::enter(const std::string& key, std::function<void()> on_admitted) {
  std::unique_ptr<Ticket> t(new Ticket(state_, key, std::move(on_admitted)));
  Line& line = state_->lines[key];
  if (line.in_flight < state_->per_host && line.waiting.empty()) {
    ++line.in_flight;
    t->admitted_ = true;
  } else {
    line.waiting.push_back(t.get());
  }
  return t;
}

size_t DialGate::in_flight(const std::string& key) const {
  const auto it = state_->lines.find(key);
  return it == state_->lines.end() ? 0 : it->second.in_flight;
}

size_t DialGate::waiting(const std::string& key) const {
  const auto it = state_->lines.find(key);
  return it == state_->lines.end() ? 0 : it->second.waiting.size();
}

DialGate::Ticket::~Ticket() {
  const auto it = state_->lines.find(key_);
  if (it == state_->lines.end()) return;
  Line& line = it->second;
  if (!admitted_) {
    line.waiting.erase(std::remove(line.waiting.begin(), line.waiting.end(), this), line.waiting.end());
  } else {
    --line.in_flight;
    // The freed slot goes to the first in line. Its callback may enter or drop tickets of this
    // line, so the line is looked up again afterwards rather than kept.
    if (!line.waiting.empty()) {
      Ticket* next = line.waiting.front();
      line.waiting.pop_front();
      ++line.in_flight;
      next->admitted_ = true;
      // Moved out first: the callback may destroy `next` (a dial that fails at once).
      const auto go = std::move(next->on_admitted_);
      if (go) go();
    }
  }
  const auto again = state_->lines.find(key_);
  if (again != state_->lines.end() && again->second.in_flight == 0 && again->second.waiting.empty()) {
    state_->lines.erase(again);
  }
}

}  // namespace syncd::runtime
