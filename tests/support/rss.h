// File: tests/support/rss.h
//
// check_peak_rss: a doctest check that a process's peak resident set (VmHWM) stayed under a
// bound, with the figure reported either way.
#pragma once

#include <doctest/doctest.h>
#include <sys/types.h>

#include <string>

#include "tests/support/process.h"

namespace syncd::test {

// Not enforced under AddressSanitizer: its shadow memory and freed-memory quarantine (256 MiB)
// make RSS meaningless there; the plain build, which CI also runs, enforces the bound.
inline void check_peak_rss(pid_t pid, long limit_mib, const std::string& what) {
  const long hwm = vm_hwm_kib(pid);
  MESSAGE(what << ": peak RSS " << hwm / 1024 << " MiB (bound " << limit_mib << " MiB)");
  CHECK(hwm > 0);
#if defined(__SANITIZE_ADDRESS__)
  MESSAGE("RSS bound not checked under AddressSanitizer");
#else
  CHECK_MESSAGE(hwm < limit_mib * 1024, what);
#endif
}

}  // namespace syncd::test
