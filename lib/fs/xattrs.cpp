#include "lib/fs/xattrs.h"

#include <errno.h>
#include <sys/xattr.h>

#include <algorithm>
#include <string>

#include "lib/base/log.h"
#include "protocol/limits.h"

namespace syncd::fs {
namespace {

std::string q(std::string_view rel) { return "\"" + log::escape(rel) + "\""; }

bool unsupported(int e) { return e == ENOTSUP || e == EOPNOTSUPP; }

// Every name at `fd` (any namespace).
Result<std::vector<std::string>> list_names(int fd, std::string_view rel) {
  for (int attempt = 0; attempt < 4; ++attempt) {
    const ssize_t need = ::flistxattr(fd, nullptr, 0);
    if (need < 0) {
      if (unsupported(errno)) return std::vector<std::string>{};
      return Error::from_errno("list xattrs of " + q(rel));
    }
    std::string buf(static_cast<size_t>(need), '\0');
    const ssize_t n = need == 0 ? 0 : ::flistxattr(fd, buf.data(), buf.size());
    if (n < 0 && errno == ERANGE) continue;  // grew meanwhile
    if (n < 0) return Error::from_errno("list xattrs of " + q(rel));
    std::vector<std::string> names;
    for (size_t at = 0; at < static_cast<size_t>(n);) {
      const size_t end = buf.find('\0', at);
      if (end == std::string::npos) break;
      if (end > at) names.push_back(buf.substr(at, end - at));
      at = end + 1;
    }
    return names;
  }
  return Error::make(errc::unexpected_target, q(rel) + ": xattrs kept changing while read");
}

}  // namespace

bool XattrNames::covers(std::string_view name) const noexcept {
  if (user && name.substr(0, 5) == "user.") return true;
  return acls && (name == "system.posix_acl_access" || name == "system.posix_acl_default");
}

Result<std::vector<protocol::Xattr>> read_xattrs(int fd, const XattrNames& names, std::string_view rel) {
  std::vector<protocol::Xattr> out;
  if (!names.any()) return out;
  SYNCD_TRY_ASSIGN(all, list_names(fd, rel));
  for (const auto& name : all) {
    if (!names.covers(name)) continue;
    if (name.size() > protocol::kMaxName) {
      return Error::make(errc::limit_exceeded, q(rel) + ": xattr name longer than " + std::to_string(protocol::kMaxName) + " bytes");
    }
    if (out.size() == protocol::kMaxXattrs) {
      return Error::make(errc::limit_exceeded, q(rel) + ": more than " + std::to_string(protocol::kMaxXattrs) + " xattrs");
    }
    Bytes value(protocol::kMaxXattrValue);
    const ssize_t n = ::fgetxattr(fd, name.c_str(), value.data(), value.size());
    if (n < 0 && errno == ENODATA) continue;  // removed meanwhile
    if (n < 0 && errno == ERANGE) {
      return Error::make(errc::limit_exceeded, q(rel) + ": xattr " + name + " is larger than " +
                                                    std::to_string(protocol::kMaxXattrValue) + " bytes");
    }
    if (n < 0) return Error::from_errno("read xattr " + name + " of " + q(rel));
    value.resize(static_cast<size_t>(n));
    out.push_back({name, std::move(value)});
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

Status write_xattrs(int fd, const std::vector<protocol::Xattr>& want, const XattrNames& names, std::string_view rel) {
  if (!names.any()) return {};
  SYNCD_TRY_ASSIGN(have, list_names(fd, rel));
  for (const auto& name : have) {
    if (!names.covers(name)) continue;
    const bool wanted = std::any_of(want.begin(), want.end(), [&](const auto& x) { return x.name == name; });
    if (!wanted && ::fremovexattr(fd, name.c_str()) != 0 && errno != ENODATA) {
      return Error::from_errno("remove xattr " + name + " of " + q(rel));
    }
  }
  for (const auto& x : want) {
    if (!names.covers(x.name)) continue;  // a peer sent what this node does not replicate
    if (::fsetxattr(fd, x.name.c_str(), x.value.data(), x.value.size(), 0) != 0) {
      return Error::from_errno("set xattr " + x.name + " of " + q(rel));
    }
  }
  return {};
}

}  // namespace syncd::fs
