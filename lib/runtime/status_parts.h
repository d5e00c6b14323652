// File: lib/runtime/status_parts.h
//
// Pieces of `syncd status` that every kind of node reports the same way: the sync latency of a
// sender's acknowledged versions, and the paths waiting for a resend after a failed apply.
// Thread affinity: loop thread (the Sender accessors they read are loop-only).
//
//   text += "  sync latency ms: " + latency_text(tx.latency_samples()) + "\n";
//   json += ", " + latency_json(tx.latency_samples()) + ", " + retrying_json(&tx);
#pragma once

#include <string>
#include <vector>

#include "lib/runtime/sender.h"

namespace syncd::runtime {

// "p50 0.25 p90 0.40 p99 1.20 (n=300)", or "-" without samples. `sorted_ms` ascending.
std::string latency_text(const std::vector<double>& sorted_ms);
// "\"latency_ms\": {\"n\": 300, \"p50\": 0.250, ...}" (-1 for each percentile without samples).
std::string latency_json(const std::vector<double>& sorted_ms);

// "awaiting ack: 3", and " (no answer from the peer for 42 s)" once that is 5 s or more.
std::string awaiting_text(const Sender* tx);
// "\"awaiting_ack\": 3, \"unanswered_s\": 42"
std::string awaiting_json(const Sender* tx);

// "retrying: 2 (last failed: a/b.pem: rename into place ...: Operation not permitted; next try in 4 s)",
// or "retrying: 0" (also without a sender); then ", not recorded: N paths (index commit: ...)"
// while changes wait for the index to record them. Paths escaped as in the log.
std::string retrying_text(const Sender* tx);
// "\"retrying\": 2, \"last_failure\": {\"path\": ..., \"error\": ..., \"next_try_ms\": ...}" (null when none),
// ", \"not_recorded\": N, \"not_recorded_error\": \"...\"" (null when none).
std::string retrying_json(const Sender* tx);

}  // namespace syncd::runtime
