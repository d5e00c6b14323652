// File: lib/fs/fingerprint.h
//
// Fingerprint: what an entry looked like on disk (type+mode, device, inode, size, mtime and ctime
// in ns, owner). The index keeps one per path to recognise its own writes and to notice a local
// change without hashing (TWO-WAY.md §4.2); the applier compares one before replacing a file.
// Thread affinity: plain value.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <ctime>
#include <utility>

namespace syncd::fs {

// A time in ns since the epoch, saturated at the ends of int64 (years 1677 and 2262): ext4 keeps
// times up to 2446 and tmpfs any int64 second, and a peer may send any. Beyond the ends the time
// is kept as the end (a file touched to 2446 arrives dated 2262-04-11); it overflowed before
// (undefined, and 2446 became 1901 at the target).
inline int64_t ns_of(int64_t sec, int64_t nsec) noexcept {
  int64_t ns = 0;
  if (__builtin_mul_overflow(sec, int64_t{1'000'000'000}, &ns) || __builtin_add_overflow(ns, nsec, &ns)) {
    return sec < 0 ? INT64_MIN : INT64_MAX;
  }
  return ns;
}

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
  // Racily clean (git's term): a regular file whose ctime was within kRacyWindowNs of the moment
  // it was looked at. Timestamps advance in clock ticks (1-10 ms; multigrain timestamps only on
  // newer kernels), so a same-size write in that tick after the look leaves size, mtime and ctime
  // as they were. Such a fingerprint never proves the content unchanged: the next look hashes.
  bool racy = false;
  static constexpr int64_t kRacyWindowNs = 20'000'000;  // two ticks at HZ=100
  bool operator==(const Fingerprint&) const = default;
  static Fingerprint of(const struct stat& st) noexcept {
    Fingerprint f;
    f.mode = st.st_mode;
    f.dev = st.st_dev;
    f.ino = st.st_ino;
    f.size = static_cast<uint64_t>(st.st_size);
    f.mtime_ns = ns_of(st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    f.ctime_ns = ns_of(st.st_ctim.tv_sec, st.st_ctim.tv_nsec);
    f.uid = st.st_uid;
    f.gid = st.st_gid;
    return f;
  }
  // mtime_ns as the protocol carries it: seconds rounded down (also before 1970) and 0..999,999,999 ns.
  std::pair<int64_t, uint32_t> mtime_parts() const noexcept {
    constexpr int64_t kNs = 1'000'000'000;
    const int64_t sec = mtime_ns / kNs - (mtime_ns % kNs < 0 ? 1 : 0);
    return {sec, static_cast<uint32_t>(mtime_ns - sec * kNs)};
  }
  // The wall clock, for `looked_at_ns` below: read before the stat it goes with.
  static int64_t now_ns() noexcept {
    struct timespec ts{};
    ::clock_gettime(CLOCK_REALTIME, &ts);
    return ns_of(ts.tv_sec, ts.tv_nsec);
  }
  // of(st) for a stat taken at or after `looked_at_ns`, racy when it has to be.
  static Fingerprint observed(const struct stat& st, int64_t looked_at_ns) noexcept {
    Fingerprint f = of(st);
    f.racy = S_ISREG(st.st_mode) && f.ctime_ns > looked_at_ns - kRacyWindowNs;
    return f;
  }
  // No write between `this` and `later` as far as stat can tell: inode, size and mtime unchanged.
  // ctime is left out on purpose: chmod, chown and link-count changes move it without touching
  // the content (a hard link's ATTRIB reaches no directory watch, so counting those as writes
  // would lose a version for good).
  bool same_bytes(const Fingerprint& later) const noexcept {
    return dev == later.dev && ino == later.ino && size == later.size && mtime_ns == later.mtime_ns;
  }
  // `this` (what the index holds) shows that `o` (what is on disk now) has the same content, as
  // far as stat can tell: type, inode, size, mtime and ctime unchanged - and `this` not racy.
  bool same_content_stat(const Fingerprint& o) const noexcept {
    return !racy && (mode & S_IFMT) == (o.mode & S_IFMT) && dev == o.dev && ino == o.ino &&
           size == o.size && mtime_ns == o.mtime_ns && ctime_ns == o.ctime_ns;
  }
};

}  // namespace syncd::fs
