// File: lib/runtime/move_log.h
//
// The renames in this node's index (file renames, and each file of a two-way directory move):
// authored here by the watching sender, or a peer's applied here as a move by a receiver. For the
// node's senders that announce from the index rather than from the watcher (push.h: one session
// per pair, so half of a node's peers get its records that way; and a node relays its peers'
// records to the others). In the index a move is
// two records, a tombstone at the old path and a version at the new one; announced as such, the
// peer would be sent the bytes it already holds. Looking a tombstone's seq up here gives the
// version it pairs with, so the announcer sends one RENAME, as the watching sender did.
// In memory only and bounded: after a restart, or for a move older than kMax others, the records
// go as they are (correct, only not cheap).
// Thread affinity: any thread (one mutex).
//
//   log.add(tomb.seq, moved.seq, moved.meta.path);   // where the move is recorded
//   if (auto m = log.find(r.seq)) ...                 // r: a tombstone being announced
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace syncd::runtime {

class MoveLog {
 public:
  struct Move {
    uint64_t to_seq = 0;
    std::string to_path;
  };
  static constexpr size_t kMax = 1 << 16;

  void add(uint64_t tomb_seq, uint64_t to_seq, std::string to_path);
  // The move whose old path's tombstone had `tomb_seq`, if still remembered.
  std::optional<Move> find(uint64_t tomb_seq) const;

 private:
  mutable std::mutex mu_;
  std::unordered_map<uint64_t, Move> by_tomb_;
  std::deque<uint64_t> order_;  // insertion order, for the bound
};

}  // namespace syncd::runtime
