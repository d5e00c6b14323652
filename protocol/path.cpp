#include "protocol/path.h"

#include <string>

#include "lib/base/log.h"
#include "protocol/limits.h"

namespace syncd::protocol {
namespace {

Error rejected(std::string_view path, const char* why) {
  return Error::make(errc::path_rejected, "path \"" + log::escape(path) + "\": " + why);
}

// Why a component is refused, or nullptr.
const char* component_problem(std::string_view c) noexcept {
  if (c.empty()) return "empty component";
  if (c == "." || c == "..") return "'.' or '..' component";
  if (c.size() > kMaxComponent) return "component longer than 255 bytes";
  if (c.find('\0') != std::string_view::npos) return "NUL byte";
  if (c.find('/') != std::string_view::npos) return "'/' in a name";
  if (is_reserved_name(c)) return "reserved .syncd name";
  return nullptr;
}

}  // namespace

bool is_reserved_name(std::string_view name) noexcept {
  return name.starts_with(".syncd.") || name == ".syncd";
}

Status validate_component(std::string_view c) {
  if (const char* why = component_problem(c)) return rejected(c, why);
  return {};
}

Status validate_path(std::string_view path) {
  if (path.empty()) return rejected(path, "empty path");
  if (path.size() > kMaxPath) return rejected(path.substr(0, 64), "longer than 4095 bytes");
  if (path.front() == '/') return rejected(path, "absolute path");
  if (path.back() == '/') return rejected(path, "trailing '/'");
  size_t start = 0;
  for (;;) {
    size_t slash = path.find('/', start);
    std::string_view c = path.substr(start, slash == std::string_view::npos ? path.npos : slash - start);
    if (const char* why = component_problem(c)) return rejected(path, why);
    if (slash == std::string_view::npos) return {};
    start = slash + 1;
  }
}

}  // namespace syncd::protocol
