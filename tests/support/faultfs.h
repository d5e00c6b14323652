// File: tests/support/faultfs.h
//
// A FUSE mount that fails chosen operations (tests/support/faultfs_main.cpp): `backing` seen at
// `mountpoint`, with rules that make e.g. every fsync of a name containing "victim" return EIO.
// The mount is ready when the constructor returns and gone when the destructor does, also when
// the test fails. Declare it after the TempDir holding both directories and before any daemon
// using the mount, so that the daemon stops first and the mount goes before the files.
#pragma once

#include <memory>
#include <string>

#include "tests/support/process.h"

namespace syncd::test {

class FaultFs {
 public:
  // Mounts. Skips the test (exit 77, which CI counts as a failure) without /dev/fuse; fails it
  // with the injector's log if the mount does not come up. `work` holds the rules file and that log.
  FaultFs(const std::string& backing, const std::string& mountpoint, const std::string& work);
  ~FaultFs();
  FaultFs(const FaultFs&) = delete;
  FaultFs& operator=(const FaultFs&) = delete;

  // Adds a rule: `op` (read, write, fsync, open, create, rename, unlink, stat, readdir, chown) fails with `err`
  // (EIO, ENOSPC, ...) for names containing `needle` ("*": every name). Takes effect for the next operation.
  void fail(const std::string& op, const std::string& err, const std::string& needle);
  // Removes every rule.
  void clear();
  // How many failures were injected so far (the "fault:" lines of the injector's log).
  size_t injected() const;
  const std::string& mountpoint() const noexcept { return mnt_; }

 private:
  void write_rules();
  std::string mnt_, rules_, log_, text_;
  std::unique_ptr<Child> proc_;
  bool mounted_ = false;
};

}  // namespace syncd::test
