// File: lib/runtime/status_parts.cpp
#include "lib/runtime/status_parts.h"

#include <algorithm>
#include <cstdio>

#include "lib/base/log.h"
#include "lib/runtime/control.h"

namespace syncd::runtime {

namespace {

double percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return -1.0;
  return sorted[std::min(sorted.size() - 1, static_cast<size_t>(q * static_cast<double>(sorted.size())))];
}

}  // namespace

std::string latency_text(const std::vector<double>& sorted_ms) {
  if (sorted_ms.empty()) return "-";
  char b[160];
  std::snprintf(b, sizeof b, "p50 %.2f p90 %.2f p99 %.2f (n=%zu)", percentile(sorted_ms, 0.5),
                percentile(sorted_ms, 0.9), percentile(sorted_ms, 0.99), sorted_ms.size());
  return b;
}

std::string latency_json(const std::vector<double>& sorted_ms) {
  char b[200];
  std::snprintf(b, sizeof b, "\"latency_ms\": {\"n\": %zu, \"p50\": %.3f, \"p90\": %.3f, \"p99\": %.3f}", sorted_ms.size(),
                percentile(sorted_ms, 0.5), percentile(sorted_ms, 0.9), percentile(sorted_ms, 0.99));
  return b;
}

std::string awaiting_text(const Sender* tx) {
  const size_t n = tx ? tx->awaiting_ack() : 0;
  const uint64_t quiet_s = tx ? tx->unanswered_ms() / 1000 : 0;
  return "awaiting ack: " + std::to_string(n) +
         (quiet_s >= 5 ? " (no answer from the peer for " + std::to_string(quiet_s) + " s)" : std::string());
}

std::string awaiting_json(const Sender* tx) {
  return "\"awaiting_ack\": " + std::to_string(tx ? tx->awaiting_ack() : 0) +
         ", \"unanswered_s\": " + std::to_string(tx ? tx->unanswered_ms() / 1000 : 0);
}

std::string retrying_text(const Sender* tx) {
  std::string t = "retrying: " + std::to_string(tx ? tx->retrying() : 0);
  const Sender::LastFailure f = tx ? tx->last_failure() : Sender::LastFailure{};
  if (!f.path.empty()) {
    t += " (last failed: " + log::escape(f.path) + ": " + log::escape(f.why) + "; ";
    t += f.next_try_ms == 0 ? std::string("trying again now)")
                            : "next try in " + std::to_string((f.next_try_ms + 999) / 1000) + " s)";
  }
  // Changes the index could not record (its state directory full, ...) have not gone anywhere.
  if (tx != nullptr && tx->unrecorded() > 0) {
    t += ", not recorded: " + std::to_string(tx->unrecorded()) + (tx->unrecorded() == 1 ? " path (" : " paths (") +
         log::escape(tx->unrecorded_why()) + ")";
  }
  return t;
}

std::string retrying_json(const Sender* tx) {
  std::string j = "\"retrying\": " + std::to_string(tx ? tx->retrying() : 0) + ", \"last_failure\": ";
  const Sender::LastFailure f = tx ? tx->last_failure() : Sender::LastFailure{};
  if (f.path.empty()) {
    j += "null";
  } else {
    j += "{\"path\": " + json_string(f.path) + ", \"error\": " + json_string(f.why) +
         ", \"next_try_ms\": " + std::to_string(f.next_try_ms) + "}";
  }
  const size_t n = tx ? tx->unrecorded() : 0;
  return j + ", \"not_recorded\": " + std::to_string(n) +
         ", \"not_recorded_error\": " + (n > 0 ? json_string(tx->unrecorded_why()) : std::string("null"));
}

}  // namespace syncd::runtime
