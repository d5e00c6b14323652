// File: tests/support/tmpdir.h
//
// Test helpers: a temporary directory removed (recursively, without following symlinks) when the
// test ends, even on failure; file helpers; seeded random bytes; skip-unless-root.
#pragma once

#include <cstdint>
#include <random>
#include <string>

#include "lib/base/bytes.h"

namespace syncd::test {

class TempDir {
 public:
  explicit TempDir(const std::string& tag = "t");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const noexcept { return path_; }
  std::string operator/(const std::string& rel) const { return path_ + "/" + rel; }

 private:
  std::string path_;
};

void write_file(const std::string& path, ByteSpan data);
void write_file(const std::string& path, const std::string& data);
std::string read_file(const std::string& path);
bool exists(const std::string& path);
// Names of the directory's entries (sorted), excluding "." and "..".
std::vector<std::string> list_dir(const std::string& path);
// Runs a shell command, returns its exit status.
int run(const std::string& cmd);

Bytes random_bytes(std::mt19937_64& rng, size_t n);

// Exits with 77 (CTest "skipped") unless running as root. CI treats a skip as a failure.
void require_root();

}  // namespace syncd::test
