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
// Per-directory files (rsync -C's ".cvsignore", read_per_dir()): the whitespace-separated
// patterns in DIR/.cvsignore exclude matching names in DIR only, not below it (CVS globs on the
// name: * ? [...]); a "!" drops the patterns before it. They are read from the tree when first
// needed and kept until forget(DIR) says the file changed. Copies share that cache.
// Thread affinity: the rules are immutable after construction; the per-directory cache has its
// own mutex; any thread.
//
//   Excludes ex({"*.tmp", "/cache/"});  ex.excluded("a/b.tmp", false) == true
#pragma once

#include <memory>
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
  bool empty() const noexcept { return patterns_.empty() && filters_.empty() && !per_dir_; }

  // Also honours per-directory files named `file` in the tree at `root` (absolute path).
  void read_per_dir(std::string root, std::string file);
  // The per-directory file's name ("" when none is read).
  const std::string& per_dir_file() const noexcept;
  // The per-directory file in `dir` ("" = the root) changed: read it again when next needed.
  void forget(std::string_view dir) const;

 private:
  bool per_dir_excluded(std::string_view rel) const;
  std::vector<std::string> patterns_;
  std::vector<FilterRule> filters_;
  struct PerDir;
  std::shared_ptr<PerDir> per_dir_;
};

}  // namespace syncd::watch
