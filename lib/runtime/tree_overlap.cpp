#include "lib/runtime/tree_overlap.h"

#include <cstdlib>
#include <memory>
#include <utility>

namespace syncd::runtime {

Result<std::string> real_path(const std::string& path) {
  std::unique_ptr<char, decltype(&::free)> r(::realpath(path.c_str(), nullptr), &::free);
  if (!r) return Error::from_errno("resolve " + path);
  return std::string(r.get());
}

std::optional<std::string> path_below(const std::string& dir, const std::string& path) {
  if (path == dir) return std::string();
  const std::string head = dir == "/" ? dir : dir + "/";
  if (path.compare(0, head.size(), head) != 0) return std::nullopt;
  return path.substr(head.size());
}

Status check_state_dir_outside(const std::string& state_dir, const std::string& tree, const std::string& what) {
  SYNCD_TRY_ASSIGN(state, real_path(state_dir));
  SYNCD_TRY_ASSIGN(root, real_path(tree));
  if (!path_below(root, state)) return {};
  return Error::make(errc::unsupported, "the state directory " + state + " is inside " + what + " " + root +
                                            ": syncd would replicate its own index (choose a -statedir outside the "
                                            "synced trees)");
}

namespace {

bool deletes_into(const TargetWriter& outer, const std::string& inner) {
  if (!outer.deletes) return false;
  const auto rel = path_below(outer.target, inner);
  if (!rel) return false;
  if (rel->empty() || outer.delete_excluded || outer.excludes == nullptr) return true;
  return !excluded_on_the_way(*outer.excludes, *rel);
}

}  // namespace

bool excluded_on_the_way(const watch::Excludes& excludes, const std::string& rel) {
  for (size_t slash = 0; slash != std::string::npos;) {
    slash = rel.find('/', slash + 1);
    if (excludes.excluded(rel.substr(0, slash), true)) return true;
  }
  return false;
}

Status check_writers_apart(const TargetWriter& a, const TargetWriter& b) {
  for (const auto& [o, i] : {std::pair{&a, &b}, std::pair{&b, &a}}) {
    if (!deletes_into(*o, i->target)) continue;
    const auto where = [](const TargetWriter& w) { return w.host.empty() ? w.target : w.host + ":" + w.target; };
    return Error::make(errc::unsupported,
                       o->name + " and " + i->name + " both write into " + where(*i) +
                           (o->target == i->target ? "" : " (inside " + o->name + "'s target " + where(*o) + ")") + ", and " +
                           o->name + " deletes there what its source lacks: it would delete " + i->name +
                           "'s files at every start (give them separate targets, exclude " + i->name + "'s directory in " +
                           o->name + ", or set delete = false in " + o->name + ")");
  }
  return {};
}

}  // namespace syncd::runtime
