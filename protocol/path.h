// File: protocol/path.h
//
// Validation of paths carried on the wire (SECURITY.md §2.4 rule 5, SPEC.md §4): relative,
// '/'-separated, no empty, "." or ".." component, no NUL, no leading or trailing '/', component
// <= 255 bytes, whole path <= 4095 bytes, and nothing in syncd's reserved namespace (a component
// beginning ".syncd." — our temp files — or the ".syncd" state/cookie directory at the top).
// Any other byte, including control bytes and invalid UTF-8, is a legal Linux name: it is kept
// as-is and escaped only in logs (log::escape).
// Thread affinity: pure functions.
#pragma once

#include <string_view>

#include "lib/base/result.h"

namespace syncd::protocol {

Status validate_path(std::string_view path);
// The same rules for one component (a leaf name).
Status validate_component(std::string_view name);
bool is_reserved_name(std::string_view name) noexcept;

}  // namespace syncd::protocol
