// File: tests/unit/apply/owned_attrs.h
//
// Attributes the patch tests apply: an owner, group, mode and mtime that differ from what a
// file written by root gets by default, so a test sees that each was set.
#pragma once

#include <cstdint>

#include "lib/apply/apply.h"

namespace syncd::test {

inline apply::Attrs owned_file_attrs(uint64_t size) {
  apply::Attrs a;
  a.mode = 0640;
  a.uid = 1234;
  a.gid = 4321;
  a.mtime_sec = 1700000000;
  a.size = size;
  return a;
}

}  // namespace syncd::test
