// File: lib/fs/accounts.h
//
// Owner and group names <-> ids, as the record carries names (TWO-WAY.md: owners travel by name,
// ids are per host). Every synced file needs one lookup each way, and glibc's getpwuid_r reads and
// parses /etc/passwd on every call (measured: ~0.1 ms per file, more than the rest of a small
// file's apply). So answers are cached: a cache is dropped as soon as /etc/passwd or /etc/group
// changes (checked by one stat per lookup), and entries expire after kAccountsTtl for accounts
// served by other NSS sources (LDAP, sssd).
// Thread affinity: any thread (one mutex per table).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace syncd::fs {

inline constexpr std::chrono::seconds kAccountsTtl{5};

// "" when the id has no name here.
std::string user_name(uint32_t uid);
std::string group_name(uint32_t gid);

// nullopt when the name is unknown here.
std::optional<uint32_t> uid_of(const std::string& name);
std::optional<uint32_t> gid_of(const std::string& name);

}  // namespace syncd::fs
