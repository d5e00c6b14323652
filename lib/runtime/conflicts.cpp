#include "lib/runtime/conflicts.h"

#include <algorithm>

#include "lib/fs/root.h"
#include "lib/runtime/control.h"
#include "lib/store/scanner.h"

namespace syncd::runtime {

Result<std::vector<ConflictCopy>> find_conflict_copies(const std::string& root) {
  SYNCD_TRY_ASSIGN(r, fs::Root::open(root));
  std::vector<ConflictCopy> out;
  std::vector<std::string> all;
  SYNCD_TRY(store::walk(r, "", [&](const std::string& rel, const fs::Fingerprint&) -> Status {
    all.push_back(rel);
    return {};
  }));
  std::sort(all.begin(), all.end());
  for (const auto& rel : all) {
    auto n = engine::parse_conflict_copy_name(rel);
    if (!n) continue;
    const bool there = std::binary_search(all.begin(), all.end(), n->original);
    out.push_back(ConflictCopy{rel, std::move(*n), there});
  }
  return out;
}

std::string format_conflicts(const std::vector<ConflictCopy>& list, bool json) {
  std::string s = json ? "[" : "";
  for (const auto& c : list) {
    if (json) {
      if (s.size() > 1) s += ", ";
      s += "{\"copy\": " + json_string(c.copy) + ", \"path\": " + json_string(c.name.original) +
           ", \"when_utc\": " + json_string(c.name.when) + ", \"node\": " + json_string(c.name.node) +
           ", \"sha256_prefix\": " + json_string(c.name.hash8) +
           ", \"path_exists\": " + (c.original_exists ? "true" : "false") + "}";
    } else {
      s += c.name.original + "  <-  " + c.copy + "  (content of node " + c.name.node + " at " + c.name.when +
           " UTC, sha256 " + c.name.hash8 + "...)" + (c.original_exists ? "" : "  [path no longer exists]") + "\n";
    }
  }
  if (json) return s + "]\n";
  return list.empty() ? "no conflict copies\n" : s;
}

}  // namespace syncd::runtime
