// File: lib/runtime/conflicts.h
//
// `syncd conflicts DIR`: the conflict copies in a synced tree (TWO-WAY.md §4.6), found by name —
// they are ordinary files that replicate everywhere, so every node lists the same ones, with or
// without a running daemon, and a copy is "resolved" when the operator removes it.
// Thread affinity: any thread (blocking I/O).
//
//   SYNCD_TRY_ASSIGN(list, find_conflict_copies("/opt/acme2certifier/volume"));
#pragma once

#include <string>
#include <vector>

#include "lib/base/result.h"
#include "lib/engine/reconcile.h"

namespace syncd::runtime {

struct ConflictCopy {
  std::string copy;  // path relative to the root
  engine::ConflictCopyName name;
  bool original_exists = false;
};

Result<std::vector<ConflictCopy>> find_conflict_copies(const std::string& root);
// One line per copy ("text"), or a JSON array.
std::string format_conflicts(const std::vector<ConflictCopy>& list, bool json);

}  // namespace syncd::runtime
