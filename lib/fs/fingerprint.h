// File: lib/fs/fingerprint.h
//
// Fingerprint: what an entry looked like on disk (type+mode, device, inode, size, mtime and ctime
// in ns, owner). The index keeps one per path to recognise its own writes and to notice a local
// change without hashing (TWO-WAY.md §4.2); the applier compares one before replacing a file.
// Thread affinity: plain value.
#pragma once

#include <sys/stat.h>

#include <cstdint>

namespace syncd::fs {

// What was on disk: the identity the index keeps to recognise its own writes (TWO-WAY.md §4.2).
struct Fingerprint {
  uint32_t mode = 0;  // full st_mode incl. type bits
  uint64_t dev = 0;
  uint64_t ino = 0;
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  bool operator==(const Fingerprint&) const = default;
  static Fingerprint of(const struct stat& st) noexcept {
    Fingerprint f;
    f.mode = st.st_mode;
    f.dev = st.st_dev;
    f.ino = st.st_ino;
    f.size = static_cast<uint64_t>(st.st_size);
    f.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec;
    f.ctime_ns = int64_t{st.st_ctim.tv_sec} * 1'000'000'000 + st.st_ctim.tv_nsec;
    f.uid = st.st_uid;
    f.gid = st.st_gid;
    return f;
  }
  // Same file content as far as stat can tell: type, inode, size, mtime and ctime unchanged.
  // (A rewrite within the same mtime tick still moves ctime; TWO-WAY.md §4.3.)
  bool same_content_stat(const Fingerprint& o) const noexcept {
    return (mode & S_IFMT) == (o.mode & S_IFMT) && dev == o.dev && ino == o.ino &&
           size == o.size && mtime_ns == o.mtime_ns && ctime_ns == o.ctime_ns;
  }
};

}  // namespace syncd::fs
