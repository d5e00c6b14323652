#include "lib/runtime/tree_overlap.h"

#include <cstdlib>
#include <memory>

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
                                            "synced trees; the default is under /var/lib/syncd)");
}

}  // namespace syncd::runtime
