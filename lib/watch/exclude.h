// File: lib/watch/exclude.h
//
// lsyncd's exclude patterns (LSYNCD-COMPAT.md §2.5), matched against the path relative to the
// root written with a leading '/' and, for directories, a trailing '/':
//   ?  -> one character except '/';  *  -> any run without '/';  ** -> anything
//   a leading '/' anchors at the root, otherwise the pattern may start at any component;
//   a match must end at a '/' or at the end of the path ("foo" excludes /a/foo and /a/foo/x,
//   not /a/foobar).
// Excluded directories get no watch and their events are dropped; a rename with one side
// excluded becomes a create or a delete.
// Thread affinity: immutable after construction; any thread.
//
//   Excludes ex({"*.tmp", "/cache/"});  ex.excluded("a/b.tmp", false) == true
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace syncd::watch {

// lsyncd's filter{} rule ("+ pattern" / "- pattern"): rules are tried in order and the first that
// matches decides; a path no rule matches is then tested against the exclude patterns.
struct FilterRule {
  bool include = false;
  std::string pattern;
  bool operator==(const FilterRule&) const = default;
};

class Excludes {
 public:
  Excludes() = default;
  explicit Excludes(const std::vector<std::string>& patterns, std::vector<FilterRule> filters = {});
  // `rel` without a leading '/', as the rest of syncd writes paths.
  bool excluded(std::string_view rel, bool is_dir) const;
  bool empty() const noexcept { return patterns_.empty() && filters_.empty(); }

 private:
  std::vector<std::string> patterns_;
  std::vector<FilterRule> filters_;
};

}  // namespace syncd::watch
