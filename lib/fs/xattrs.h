// File: lib/fs/xattrs.h
//
// Extended attributes syncd replicates when a config asks for them (lsyncd's rsync.xattrs and
// rsync.acls): `user.*` names, and POSIX ACLs (system.posix_acl_access / _default, stored as the
// kernel's portable binary form; ids inside them are numeric). `security.*` (SELinux labels,
// capabilities) and `trusted.*` are never copied: they are the node's own policy (TWO-WAY.md §4.2).
// Read and written through an open fd, never through a path that could be swapped.
// Thread affinity: blocking; worker threads.
#pragma once

#include <string_view>
#include <vector>

#include "lib/base/result.h"
#include "protocol/messages.h"

namespace syncd::fs {

struct XattrNames {
  bool user = false;  // rsync.xattrs: user.*
  bool acls = false;  // rsync.acls: system.posix_acl_access, system.posix_acl_default
  bool any() const noexcept { return user || acls; }
  bool covers(std::string_view name) const noexcept;
  bool operator==(const XattrNames&) const = default;
};

// The covered attributes of the file or directory open at `fd`, sorted by name. A filesystem
// without xattr support has none. More than protocol's limits (count, value size) is an error
// naming `rel`.
Result<std::vector<protocol::Xattr>> read_xattrs(int fd, const XattrNames& names, std::string_view rel);

// Makes the covered attributes at `fd` exactly `want` (sets, replaces, removes); others untouched.
Status write_xattrs(int fd, const std::vector<protocol::Xattr>& want, const XattrNames& names, std::string_view rel);

}  // namespace syncd::fs
