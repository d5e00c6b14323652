#include "lib/apply/apply.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>  // FICLONE
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cstdio>
#include <functional>
#include <mutex>
#include <vector>

#include "lib/base/log.h"
#include "lib/base/scope_guard.h"
#include "lib/fs/accounts.h"
#include "protocol/path.h"

namespace syncd::apply {
namespace {

std::string q(std::string_view rel) { return "\"" + log::escape(rel) + "\""; }

// Below this many staged files, per-file fsyncs; above, one syncfs for the batch.
constexpr size_t kGroupSyncMin = 4;

Error io_error(const char* op, std::string_view rel, int err = errno) {
  return Error::from_errno(std::string(op) + " " + q(rel), err);
}

// What is at `leaf` now (no symlink followed). Read after this applier wrote it, so usually racy
// (fs/fingerprint.h): a local write in the same clock tick must not pass for our own.
Result<Fingerprint> look(int dir, const std::string& leaf, std::string_view rel) {
  const int64_t at = Fingerprint::now_ns();
  struct stat st{};
  if (::fstatat(dir, leaf.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return io_error("stat", rel);
  return Fingerprint::observed(st, at);
}

Error mismatch(std::string_view rel) {
  return Error::make(errc::verify_failed, q(rel) + ": content does not match its hash (discarded; the whole file will be re-sent)");
}

// Writes to an fd, hashing and counting what it writes.
constexpr size_t kSparseBlock = 4096;
constexpr uint64_t kRoomCheckFrom = 256 * 1024;  // smaller files fail as early when the disk is full

// An early, clear ENOSPC for a big file instead of one after writing most of it. Not a
// reservation (fallocate(2) would be one, but ext4 then writes the file through unwritten extents,
// 4.5x slower here: 2.9 s instead of 0.64 s per GiB); a disk that fills meanwhile still fails the
// write, and the temp file is discarded either way.
Status room_for(int fd, uint64_t size, std::string_view rel) {
  if (size < kRoomCheckFrom) return {};
  struct statvfs v{};
  if (::fstatvfs(fd, &v) != 0) return {};  // no answer: the writes will tell
  // root may use the blocks reserved for it, as its writes will.
  const uint64_t blocks = ::geteuid() == 0 ? v.f_bfree : v.f_bavail;
  if (v.f_frsize != 0 && blocks < size / v.f_frsize + 1) {
    return Error::from_errno("no room for " + q(rel) + " (" + std::to_string(size) + " bytes)", ENOSPC);
  }
  return {};
}
constexpr uint64_t kWritebackFrom = 16u << 20;  // smaller files are fsynced in one go
// Bytes per write(2) into a file. On this project's VM (kernel 6.18, ext4) 1 MiB writes into the
// page cache were erratic: `dd bs=1M` of 1 GiB took 0.16-4.0 s, `bs=256K` 0.17-0.18 s in every
// run (benches/README.md; large folios are the likely suspect, not proven).
constexpr size_t kWriteSlice = 256u << 10;

bool all_zero(const uint8_t* p, size_t n) { return n > 0 && p[0] == 0 && std::memcmp(p, p + 1, n - 1) == 0; }

class HashingFdSink final : public delta::OutputSink {
 public:
  // `early_writeback`: the file will be fsynced; start writing it back while it is still being
  // written, so that fsync has little left to do (a 1 GiB file fsynced at the end waited on all
  // of it: two seconds of disk time after the last byte arrived).
  HashingFdSink(int fd, std::string_view rel, bool sparse, bool early_writeback = false)
      : fd_(fd), rel_(rel), sparse_(sparse), early_writeback_(early_writeback) {}
  Status write(ByteSpan data) override {
    sha_.update(data);
    if (!sparse_) {
      written_ += data.size();
      SYNCD_TRY(write_all(data));
      if (early_writeback_ && written_ - flushed_ >= kWritebackStep) {
        // Asynchronous: queues the range for writeback and returns. Only an optimisation, so an
        // error is left for the fsync to report.
        (void)::sync_file_range(fd_, static_cast<off_t>(flushed_), static_cast<off_t>(written_ - flushed_),
                                SYNC_FILE_RANGE_WRITE);
        flushed_ = written_;
      }
      return {};
    }
    // Aligned all-zero blocks are skipped (a hole), everything else is written in runs; a block
    // split across writes is gathered in pending_ first (pending_ is empty exactly at a boundary).
    while (!data.empty()) {
      if (!pending_.empty() || data.size() < kSparseBlock) {
        const size_t k = std::min(kSparseBlock - pending_.size(), data.size());
        pending_.insert(pending_.end(), data.begin(), data.begin() + static_cast<std::ptrdiff_t>(k));
        written_ += k;
        data = data.subspan(k);
        if (pending_.size() == kSparseBlock) SYNCD_TRY(flush_pending());
        continue;
      }
      const bool zero = all_zero(data.data(), kSparseBlock);
      size_t n = kSparseBlock;
      while (n + kSparseBlock <= data.size() && all_zero(data.data() + n, kSparseBlock) == zero) n += kSparseBlock;
      SYNCD_TRY(zero ? skip(n) : write_all(data.first(n)));
      written_ += n;
      data = data.subspan(n);
    }
    return {};
  }
  // Writes what a sparse sink still holds (a last partial block). A file that ends in a hole
  // gets its length from the caller's ftruncate.
  Status finish() { return pending_.empty() ? Status{} : flush_pending(); }
  codec::Digest digest() { return sha_.finish(); }
  // After digest(): the chunk digests.
  const std::vector<codec::Digest>& chunks() const noexcept { return sha_.chunks(); }
  uint64_t written() const noexcept { return written_; }

 private:
  Status flush_pending() {
    Status st = all_zero(pending_.data(), pending_.size()) ? skip(pending_.size()) : write_all(pending_);
    pending_.clear();
    return st;
  }
  Status skip(size_t n) {
    if (::lseek(fd_, static_cast<off_t>(n), SEEK_CUR) < 0) return io_error("seek", rel_);
    return {};
  }
  Status write_all(ByteSpan data) {
    while (!data.empty()) {
      ssize_t n = ::write(fd_, data.data(), std::min(data.size(), kWriteSlice));
      if (n < 0) {
        if (errno == EINTR) continue;
        return io_error("write", rel_);
      }
      data = data.subspan(static_cast<size_t>(n));
    }
    return {};
  }

  static constexpr uint64_t kWritebackStep = 8u << 20;
  int fd_;
  std::string_view rel_;
  bool sparse_;
  bool early_writeback_;
  uint64_t flushed_ = 0;  // early_writeback_: bytes handed to writeback so far
  Bytes pending_;  // sparse: the current block while it is incomplete
  codec::ContentHasher sha_;
  uint64_t written_ = 0;
};

// The output of a patch, written at offsets into the temp file. Where the temp started as a clone
// of the base (FICLONE: XFS with reflink, btrfs), a COPY that keeps its bytes at their offset
// costs nothing — they are already there, sharing the base's extents; elsewhere such a copy, like
// every other, goes through copy_file_range (the kernel copies, or shares extents where it can),
// and literals are written in place. So a small edit of a big file moves no bytes through this
// process but the literals, and on a cloning filesystem writes and fsyncs only what changed.
// The result is hashed afterwards, from the file: chunks made wholly of same-offset copies of a
// base whose chunk digests are known (ChunkMemo) are not read again.
class PatchSink final : public delta::OutputSink {
 public:
  // cloned: `fd` starts out holding the base (a clone of it, or the base file itself when
  // patching in place, where a COPY from other offsets is refused: its bytes may be gone).
  PatchSink(int fd, int base_fd, std::string_view rel, bool cloned, bool in_place = false)
      : fd_(fd), base_fd_(base_fd), rel_(rel), cloned_(cloned || in_place), in_place_file_(in_place) {}
  Status write(ByteSpan data) override {
    while (!data.empty()) {
      const ssize_t n = ::pwrite(fd_, data.data(), std::min(data.size(), kWriteSlice), static_cast<off_t>(pos_));
      if (n < 0) {
        if (errno == EINTR) continue;
        return io_error("write", rel_);
      }
      data = data.subspan(static_cast<size_t>(n));
      pos_ += static_cast<uint64_t>(n);
    }
    return {};
  }
  Result<bool> place_base(uint64_t off, uint64_t n) override {
    // Nothing before pos_ is ever written again, so a clone still holds the base from pos_ on.
    if (off == pos_ && cloned_) {
      note_in_place(pos_, n);
      pos_ += n;
      return true;
    }
    if (in_place_file_) return Error::make(errc::internal, q(rel_) + ": a COPY that moves bytes cannot be patched in place");
    auto in = static_cast<loff_t>(off);
    auto out = static_cast<loff_t>(pos_);
    const uint64_t start = pos_;
    while (n > 0) {
      const ssize_t r = ::copy_file_range(base_fd_, &in, fd_, &out, n, 0);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP)) {
        if (off == start) note_in_place(start, pos_ - start);
        return false;  // the patcher reads and writes the rest of this run
      }
      if (r < 0) return io_error("copy within", rel_);
      if (r == 0) return Error::make(errc::base_mismatch, "delta: base shorter than expected");
      n -= static_cast<uint64_t>(r);
      pos_ = static_cast<uint64_t>(out);
    }
    if (off == start) note_in_place(start, pos_ - start);
    return true;
  }
  uint64_t written() const noexcept { return pos_; }
  // The content hash of the file's first written() bytes, and its chunk digests in `chunks`.
  // `base` holds the base's chunk digests (empty: unknown), `base_size` its size.
  Result<codec::Digest> digest(const std::vector<codec::Digest>& base, uint64_t base_size,
                               std::vector<codec::Digest>& chunks, std::atomic<uint64_t>& read) const {
    chunks.clear();
    const uint64_t count = codec::chunk_count(pos_);
    Bytes buf;
    for (uint64_t i = 0; i < count; ++i) {
      const uint64_t a = i * codec::kContentChunk;
      const uint64_t b = std::min(pos_, a + codec::kContentChunk);
      // The same bytes as base chunk i: the whole range came from the same offsets of the base,
      // and base chunk i ends where this one does.
      if (i < base.size() && std::min(base_size, a + codec::kContentChunk) == b && in_place(a, b)) {
        chunks.push_back(base[i]);
        continue;
      }
      buf.resize(static_cast<size_t>(b - a));
      size_t got = 0;
      while (got < buf.size()) {
        const ssize_t n = ::pread(fd_, buf.data() + got, buf.size() - got, static_cast<off_t>(a + got));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return io_error("read back", rel_);
        if (n == 0) break;
        got += static_cast<size_t>(n);
      }
      ++read;
      // Shorter than written: the hash of what is there cannot match.
      chunks.push_back(codec::Sha256::of(ByteSpan(buf.data(), got)));
    }
    codec::wipe(buf.data(), buf.size());
    return codec::content_root(pos_, chunks);
  }

 private:
  // [from, from + n) holds the base's bytes of the same offsets (called in increasing order).
  void note_in_place(uint64_t from, uint64_t n) {
    if (n == 0) return;
    if (!same_.empty() && same_.back().second == from) {
      same_.back().second += n;
    } else {
      same_.emplace_back(from, from + n);
    }
  }
  bool in_place(uint64_t a, uint64_t b) const {
    // same_ is sorted and merged: one range holds [a, b) or none does.
    auto it = std::upper_bound(same_.begin(), same_.end(), a, [](uint64_t v, const auto& r) { return v < r.second; });
    return it != same_.end() && it->first <= a && b <= it->second;
  }

  int fd_;
  int base_fd_;
  std::string_view rel_;
  bool cloned_;
  bool in_place_file_;
  uint64_t pos_ = 0;
  std::vector<std::pair<uint64_t, uint64_t>> same_;
};

// Creates a fresh temp entry with `make(name)` (which returns 0 or -1/errno), retrying with a new
// random suffix when the name exists: a planted file or link is never reused.
template <class Make>
Result<std::string> create_temp(const Options& o, std::string_view leaf, std::string_view rel,
                                Make&& make) {
  for (int attempt = 0; attempt < 16; ++attempt) {
    std::string name = o.temp_namer(leaf);
    if (make(name) == 0) return name;
    if (errno != EEXIST) return io_error("create temp for", rel);
  }
  return io_error("create temp for", rel, EEXIST);
}

// {atime: unchanged, mtime: the version's}.
struct MtimeSpec {
  struct timespec ts[2];
  explicit MtimeSpec(const Attrs& a)
      : ts{{0, UTIME_OMIT}, {static_cast<time_t>(a.mtime_sec), static_cast<long>(a.mtime_nsec)}} {}
};

}  // namespace


std::vector<codec::Digest> ChunkMemo::find(std::string_view rel, const Fingerprint& fp) const {
  std::lock_guard lock(mu_);
  auto it = files_.find(std::string(rel));
  if (it == files_.end() || !(it->second.fp == fp)) return {};
  return it->second.chunks;
}

void ChunkMemo::put(std::string_view rel, const Fingerprint& fp, std::vector<codec::Digest> chunks) {
  std::lock_guard lock(mu_);
  auto [it, fresh] = files_.insert_or_assign(std::string(rel), Entry{fp, std::move(chunks)});
  if (!fresh) return;
  order_.push_back(it->first);
  while (files_.size() > kMaxFiles && !order_.empty()) {
    files_.erase(order_.front());
    order_.pop_front();
  }
}

uint32_t resolve_uid(const std::string& name, uint32_t fallback) {
  if (name.empty()) return fallback;
  return fs::uid_of(name).value_or(fallback);
}

uint32_t resolve_gid(const std::string& name, uint32_t fallback) {
  if (name.empty()) return fallback;
  return fs::gid_of(name).value_or(fallback);
}

Status set_owner(const std::function<int(uid_t, gid_t)>& chown_fn, uint32_t uid, uint32_t gid, const char* what,
                 std::string_view rel) {
  static const bool root = ::geteuid() == 0;
  if (root) {
    if (chown_fn(uid, gid) == 0) return {};
    if (errno != EPERM) return io_error(what, rel);
    // Root, yet refused: NFS with root_squash, a FAT or CIFS mount. rsync -a writes the data
    // and reports each chown; failing the file instead left the target without any of them.
    static std::once_flag refused;
    std::call_once(refused, [rel = std::string(rel)] {
      log::get(log::Module::apply).warn("the target's filesystem refuses to change owners even to root (first: {}): "
                                        "files there keep the owner it gives them (NFS root_squash, FAT, CIFS)",
                                        log::escape(rel));
    });
    return {};
  }
  static std::once_flag said;
  std::call_once(said, [] {
    log::get(log::Module::apply).warn("not running as root: files written here keep this user as their owner, "
                                      "and a group only if this user is in it (as rsync -a without super-user rights)");
  });
  if (chown_fn(static_cast<uid_t>(-1), gid) == 0 || errno == EPERM) return {};
  return io_error(what, rel);
}

std::string temp_name_for(std::string_view leaf) {
  uint8_t rnd[6];
  codec::random_bytes(rnd, sizeof rnd);
  std::string base(leaf);
  // ".syncd." + base + "." + 12 hex + ".tmp" must fit 255 bytes; hash long names (syncthing does
  // the same for its temp names).
  if (base.size() > 200) base = codec::to_hex(ByteSpan(codec::Sha256::of(as_bytes(leaf)))).substr(0, 32);
  return ".syncd." + base + "." + codec::to_hex(ByteSpan(rnd, sizeof rnd)) + ".tmp";
}

Status Applier::guard(int dir, const std::string& leaf, std::string_view rel,
                      const Expected& e) const {
  if (e.kind == Expected::Kind::any) return {};
  struct stat st{};
  const bool exists = ::fstatat(dir, leaf.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
  if (!exists && errno != ENOENT) return io_error("stat", rel);
  if (e.kind == Expected::Kind::absent) {
    if (exists) return Error::make(errc::unexpected_target, q(rel) + " exists but was expected absent");
    return {};
  }
  if (!exists) return Error::make(errc::unexpected_target, q(rel) + " vanished");
  const Fingerprint now = Fingerprint::of(st);
  // dev/ino/size/mtime/ctime/mode: any local write or replacement since the caller looked shows.
  if (now.mode != e.fp.mode || now.ino != e.fp.ino || now.dev != e.fp.dev ||
      now.size != e.fp.size || now.mtime_ns != e.fp.mtime_ns || now.ctime_ns != e.fp.ctime_ns) {
    return Error::make(errc::unexpected_target, q(rel) + " changed since it was indexed");
  }
  return {};
}

Status Applier::apply_owner_mode_time(int fd, std::string_view rel, const Attrs& a, bool xattrs) const {
  if (opts_.chown) {
    SYNCD_TRY(set_owner([fd](uid_t u, gid_t g) { return ::fchown(fd, u, g); }, resolve_uid(a.user, a.uid),
                        resolve_gid(a.group, a.gid), "chown", rel));
  }
  uint32_t mode = a.mode & 07777;
  if (!opts_.keep_special_bits) mode &= 0777;
  if (::fchmod(fd, mode) != 0) return io_error("chmod", rel);  // after chown: it clears set-id bits
  if (xattrs) SYNCD_TRY(fs::write_xattrs(fd, a.xattrs, root_.xattr_names(), rel));
  if (a.set_mtime && ::futimens(fd, MtimeSpec(a).ts) != 0) return io_error("set mtime of", rel);
  return {};
}

Status Applier::apply_link_meta(int dir, const std::string& name, std::string_view rel,
                                const Attrs& a) const {
  // No chmod: Linux symlinks have no mode of their own.
  if (opts_.chown) {
    SYNCD_TRY(set_owner([&](uid_t u, gid_t g) { return ::fchownat(dir, name.c_str(), u, g, AT_SYMLINK_NOFOLLOW); },
                        resolve_uid(a.user, a.uid), resolve_gid(a.group, a.gid), "chown symlink", rel));
  }
  if (a.set_mtime && ::utimensat(dir, name.c_str(), MtimeSpec(a).ts, AT_SYMLINK_NOFOLLOW) != 0) {
    return io_error("set mtime of", rel);
  }
  return {};
}

Status Applier::apply_special_meta(int dir, const std::string& name, std::string_view rel,
                                   const Attrs& a) const {
  if (opts_.chown) {
    SYNCD_TRY(set_owner([&](uid_t u, gid_t g) { return ::fchownat(dir, name.c_str(), u, g, AT_SYMLINK_NOFOLLOW); },
                        resolve_uid(a.user, a.uid), resolve_gid(a.group, a.gid), "chown", rel));
  }
  uint32_t mode = a.mode & 07777;
  if (!opts_.keep_special_bits) mode &= 0777;
  // AT_SYMLINK_NOFOLLOW: glibc changes the inode through an O_PATH descriptor and refuses a
  // symlink swapped in meanwhile (EOPNOTSUPP) instead of changing what it points to.
  if (::fchmodat(dir, name.c_str(), mode, AT_SYMLINK_NOFOLLOW) != 0) return io_error("chmod", rel);
  if (a.set_mtime && ::utimensat(dir, name.c_str(), MtimeSpec(a).ts, AT_SYMLINK_NOFOLLOW) != 0) {
    return io_error("set mtime of", rel);
  }
  return {};
}

Result<Fingerprint> Applier::commit_temp(int dir, const std::string& tmp, const std::string& leaf,
                                         std::string_view rel, const Expected& expect) const {
  SYNCD_TRY(guard(dir, leaf, rel, expect));
  const unsigned flags = expect.kind == Expected::Kind::absent ? RENAME_NOREPLACE : 0;
  if (::renameat2(dir, tmp.c_str(), dir, leaf.c_str(), flags) != 0) {
    if (errno == EEXIST) return Error::make(errc::unexpected_target, q(rel) + " appeared meanwhile");
    // A file or symlink never replaces a directory (EISDIR): that is a type change for the engine.
    return io_error("rename into place", rel);
  }
  SYNCD_TRY(fsync_dir(dir, rel));
  return look(dir, leaf, rel);
}

Status Applier::fsync_dir(int dir, std::string_view rel) const {
  if (opts_.fsync && ::fsync(dir) != 0) return io_error("fsync directory of", rel);
  return {};
}

Result<Fingerprint> Applier::stat(std::string_view rel) const {
  SYNCD_TRY_ASSIGN(p, root_.parent_of(rel));
  return look(p.dir.get(), p.leaf, rel);
}

Result<Fingerprint> Applier::write_file(std::string_view rel, const Attrs& attrs,
                                        const Expected& expect, const codec::Digest& sha256,
                                        const ContentWriter& writer) const {
  // One file is a batch of one: staged, then fsync'ed, guarded, renamed, directory fsync'ed.
  SYNCD_TRY_ASSIGN(staged, stage_file(rel, attrs, expect, sha256, writer));
  std::vector<Staged> one{std::move(staged)};
  return std::move(commit_staged(one).front());
}

Status Applier::fill_temp(int fd, std::string_view rel, const Attrs& attrs, const codec::Digest& sha256,
                          const ContentWriter& writer, std::vector<codec::Digest>* chunks) const {
  if (!opts_.sparse) SYNCD_TRY(room_for(fd, attrs.size, rel));
  HashingFdSink sink(fd, rel, opts_.sparse, opts_.fsync && attrs.size >= kWritebackFrom);
  if (auto st = writer(sink); !st) return std::move(st).error().wrap("write " + q(rel));
  SYNCD_TRY(sink.finish());
  // Sparse: a file that ends in a hole gets its length from the truncate.
  if (sink.written() != attrs.size || opts_.sparse) {
    // A shorter result than announced leaves preallocated blocks: trim, then fail verification.
    if (::ftruncate(fd, static_cast<off_t>(sink.written())) != 0) return io_error("truncate", rel);
  }
  if (sink.digest() != sha256) return mismatch(rel);
  if (chunks != nullptr && sink.chunks().size() > 1) *chunks = sink.chunks();
  return apply_owner_mode_time(fd, rel, attrs);
}

Result<Applier::Staged> Applier::stage_file(std::string_view rel, const Attrs& attrs,
                                            const Expected& expect, const codec::Digest& sha256,
                                            const ContentWriter& writer) const {
  std::vector<codec::Digest> chunks;
  SYNCD_TRY_ASSIGN(staged, stage_with(rel, expect, [&](int fd) { return fill_temp(fd, rel, attrs, sha256, writer, &chunks); }));
  staged.chunks = std::move(chunks);
  return staged;
}

Result<Applier::Staged> Applier::stage_with(std::string_view rel, const Expected& expect,
                                            const std::function<Status(int)>& fill) const {
  SYNCD_TRY_ASSIGN(p, root_.parent_of(rel));
  const int dir = p.dir.get();
  UniqueFd fd;
  SYNCD_TRY_ASSIGN(tmp, create_temp(opts_, p.leaf, rel, [&](const std::string& name) {
    fd.reset(::openat(dir, name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    return fd ? 0 : -1;
  }));
  auto cleanup = ScopeGuard([&]() noexcept { ::unlinkat(dir, tmp.c_str(), 0); });
  SYNCD_TRY(fill(fd.get()));
  if (auto st = fd.close(); !st) return io_error("close", rel, std::move(st).error().code.value());
  cleanup.cancel();
  return Staged{std::string(rel), tmp, p.leaf, expect};
}

Result<Fingerprint> Applier::patch_file(std::string_view rel, const Attrs& attrs, const Expected& expect,
                                        const codec::Digest& sha256, int base_fd,
                                        const ContentWriter& writer) const {
  std::vector<codec::Digest> chunks;
  SYNCD_TRY_ASSIGN(staged, stage_with(rel, expect, [&](int fd) -> Status {
    // Sparse keeps rsync's hole rule for every block, so it writes the whole result.
    if (opts_.sparse) return fill_temp(fd, rel, attrs, sha256, writer, &chunks);
    struct stat before{};
    if (::fstat(base_fd, &before) != 0) return io_error("stat", rel);
    const bool cloned = ::ioctl(fd, FICLONE, base_fd) == 0;
    if (!cloned) SYNCD_TRY(room_for(fd, attrs.size, rel));
    PatchSink sink(fd, base_fd, rel, cloned);
    if (auto st = writer(sink); !st) return std::move(st).error().wrap("write " + q(rel));
    if (::ftruncate(fd, static_cast<off_t>(sink.written())) != 0) return io_error("truncate", rel);
    // The base's remembered chunks count only if nothing touched it from before the clone to now.
    struct stat after{};
    if (::fstat(base_fd, &after) != 0) return io_error("stat", rel);
    const Fingerprint base = Fingerprint::of(before);
    const std::vector<codec::Digest> known =
        base == Fingerprint::of(after) ? memo_->find(rel, base) : std::vector<codec::Digest>{};
    SYNCD_TRY_ASSIGN(got, sink.digest(known, base.size, chunks, memo_->chunks_read));
    if (got != sha256) return mismatch(rel);
    if (chunks.size() < 2) chunks.clear();
    return apply_owner_mode_time(fd, rel, attrs);
  }));
  staged.chunks = std::move(chunks);
  std::vector<Staged> one{std::move(staged)};
  return std::move(commit_staged(one).front());
}

namespace {

// A dry run of a delta: notes whether any COPY takes base bytes from other offsets than it
// writes them to.
class InPlaceCheck final : public delta::OutputSink {
 public:
  Status write(ByteSpan data) override {
    pos_ += data.size();
    return {};
  }
  Result<bool> place_base(uint64_t off, uint64_t n) override {
    moves_ = moves_ || off != pos_;
    pos_ += n;
    return true;
  }
  bool moves() const noexcept { return moves_; }

 private:
  uint64_t pos_ = 0;
  bool moves_ = false;
};

}  // namespace

Result<std::optional<Fingerprint>> Applier::patch_in_place(std::string_view rel, const Attrs& attrs,
                                                           const codec::Digest& sha256, int base_fd,
                                                           ByteSpan delta) const {
  const std::optional<Fingerprint> not_here;
  if (opts_.sparse) return not_here;  // rsync's hole rule needs every block of the result written
  struct stat base{};
  if (::fstat(base_fd, &base) != 0) return io_error("stat", rel);
  {
    // Every COPY placed by the sink: the base is never read.
    delta::FdBaseReader none(base_fd, static_cast<uint64_t>(base.st_size));
    InPlaceCheck check;
    delta::Patcher dry(none, check, attrs.size, delta::Patcher::Hashing::off);
    if (!dry.feed(delta).ok() || !dry.finish().ok() || check.moves()) return not_here;
  }
  SYNCD_TRY_ASSIGN(p, root_.parent_of(rel));
  UniqueFd fd(::openat(p.dir.get(), p.leaf.c_str(), O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  struct stat st{};
  if (!fd || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_dev != base.st_dev ||
      st.st_ino != base.st_ino) {
    return not_here;
  }
  if (attrs.size > static_cast<uint64_t>(st.st_size)) {
    SYNCD_TRY(room_for(fd.get(), attrs.size - static_cast<uint64_t>(st.st_size), rel));
  }
  PatchSink sink(fd.get(), fd.get(), rel, true, true);
  delta::FdBaseReader none(fd.get(), static_cast<uint64_t>(st.st_size));
  delta::Patcher patcher(none, sink, attrs.size, delta::Patcher::Hashing::off);
  if (auto r = patcher.feed(delta); !r) return std::move(r).error().wrap("patch in place " + q(rel));
  if (auto r = patcher.finish(); !r.ok()) return std::move(r).error().wrap("patch in place " + q(rel));
  if (sink.written() != static_cast<uint64_t>(st.st_size) && ::ftruncate(fd.get(), static_cast<off_t>(sink.written())) != 0) {
    return io_error("truncate", rel);
  }
  std::vector<codec::Digest> chunks;
  const std::vector<codec::Digest> known = memo_->find(rel, Fingerprint::of(base));
  SYNCD_TRY_ASSIGN(got, sink.digest(known, static_cast<uint64_t>(base.st_size), chunks, memo_->chunks_read));
  if (got != sha256) {
    return Error::make(errc::verify_failed, q(rel) + ": content patched in place does not match its hash (left so; the whole file will be re-sent)");
  }
  SYNCD_TRY(apply_owner_mode_time(fd.get(), rel, attrs));
  if (opts_.fsync && ::fsync(fd.get()) != 0) return io_error("fsync", rel);
  if (::fstat(fd.get(), &st) != 0) return io_error("stat", rel);
  const Fingerprint fp = Fingerprint::of(st);
  if (chunks.size() >= 2) memo_->put(rel, fp, std::move(chunks));
  return std::optional<Fingerprint>(fp);
}

std::vector<Result<Fingerprint>> Applier::commit_staged(std::vector<Staged>& staged,
                                                         const std::function<void(size_t)>& renamed) const {
  std::vector<Result<Fingerprint>> out;
  out.reserve(staged.size());
  auto discard = [&](const Staged& s) {
    if (auto p = root_.parent_of(s.rel); p.ok()) ::unlinkat(p->dir.get(), s.tmp.c_str(), 0);
  };
  // One syncfs makes every staged temp durable (what fsync per file did in write_file); for a
  // handful of files, per-file fsyncs are cheaper than flushing the whole filesystem. A failed
  // syncfs is final for all of them (it does not say whose data it lost): nothing is renamed,
  // the temps go, the versions are retried; a failed fsync only for its file. Never a rename
  // after a failed fsync: the kernel may have dropped the pages it could not write.
  const bool group = staged.size() > kGroupSyncMin && root_.syncfs_durable();
  std::vector<std::optional<Error>> unsynced(staged.size());
  if (opts_.fsync && !group) {
    for (size_t i = 0; i < staged.size(); ++i) {
      const auto& s = staged[i];
      auto p = root_.parent_of(s.rel);
      UniqueFd fd(p.ok() ? ::openat(p->dir.get(), s.tmp.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC) : -1);
      if (!fd || ::fsync(fd.get()) != 0) {
        unsynced[i] = io_error("fsync", s.rel);
        discard(s);
      }
    }
  }
  if (opts_.fsync && group) {
    UniqueFd r(::openat(root_.fd(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!r || ::syncfs(r.get()) != 0) {
      Error e = Error::from_errno("syncfs " + q(root_.path()));
      for (const auto& s : staged) {
        discard(s);
        out.emplace_back(e);
      }
      return out;
    }
  }
  for (size_t i = 0; i < staged.size(); ++i) {
    auto& s = staged[i];
    if (unsynced[i]) {
      out.emplace_back(std::move(*unsynced[i]));
      continue;
    }
    auto p = root_.parent_of(s.rel);
    if (!p.ok()) {
      out.emplace_back(std::move(p).error());
      continue;
    }
    const int dir = p->dir.get();
    Status st = guard(dir, s.leaf, s.rel, s.expect);
    if (st.ok()) {
      const unsigned flags = s.expect.kind == Expected::Kind::absent ? RENAME_NOREPLACE : 0;
      if (::renameat2(dir, s.tmp.c_str(), dir, s.leaf.c_str(), flags) != 0) {
        st = errno == EEXIST ? Status(Error::make(errc::unexpected_target, q(s.rel) + " appeared meanwhile"))
                             : Status(io_error("rename into place", s.rel));
      }
    }
    if (!st.ok()) {
      ::unlinkat(dir, s.tmp.c_str(), 0);
      out.emplace_back(std::move(st).error());
      continue;
    }
    struct stat sb{};
    const int64_t at = Fingerprint::now_ns();
    if (::fstatat(dir, s.leaf.c_str(), &sb, AT_SYMLINK_NOFOLLOW) != 0) {
      out.emplace_back(io_error("stat", s.rel));
    } else {
      out.emplace_back(Fingerprint::observed(sb, at));
      // The memo is matched against a plain stat of the next patch's base (see patch_file).
      if (!s.chunks.empty()) memo_->put(s.rel, Fingerprint::of(sb), std::move(s.chunks));
    }
    if (renamed) renamed(out.size() - 1);
  }
  // The renames themselves: one fsync per directory, or one more syncfs for a group.
  if (opts_.fsync && !group) {
    for (size_t i = 0; i < staged.size(); ++i) {
      if (!out[i].ok()) continue;
      auto p = root_.parent_of(staged[i].rel);
      if (!p.ok() || ::fsync(p->dir.get()) != 0) out[i] = io_error("fsync directory of", staged[i].rel);
    }
  }
  if (opts_.fsync && group) {
    UniqueFd r(::openat(root_.fd(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!r || ::syncfs(r.get()) != 0) {
      Error e = Error::from_errno("syncfs " + q(root_.path()));
      for (auto& res : out) {
        if (res.ok()) res = e;
      }
    }
  }
  return out;
}

Result<Fingerprint> Applier::make_dir(std::string_view rel, const Attrs& attrs) const {
  SYNCD_TRY_ASSIGN(p, root_.parent_of(rel));
  const int dir = p.dir.get();
  if (::mkdirat(dir, p.leaf.c_str(), 0700) == 0) {
    SYNCD_TRY(fsync_dir(dir, rel));
  } else if (errno != EEXIST) {
    return io_error("mkdir", rel);
  }
  // O_NOFOLLOW|O_DIRECTORY: an existing symlink or file at this name is refused, not followed.
  UniqueFd d(::openat(dir, p.leaf.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!d) return io_error("open directory", rel);
  SYNCD_TRY(apply_owner_mode_time(d.get(), rel, attrs));
  if (opts_.fsync && ::fsync(d.get()) != 0) return io_error("fsync", rel);
  struct stat st{};
  if (::fstat(d.get(), &st) != 0) return io_error("stat", rel);
  return Fingerprint::of(st);
}

Result<Fingerprint> Applier::make_symlink(std::string_view rel, std::string_view target,
                                          const Attrs& attrs, const Expected& expect) const {
  if (target.empty() || target.size() > 4095 || target.find('\0') != std::string_view::npos) {
    return Error::make(errc::path_rejected, q(rel) + ": invalid symlink target");
  }
  SYNCD_TRY_ASSIGN(p, root_.parent_of(rel));
  const int dir = p.dir.get();
  const std::string tgt(target);
  SYNCD_TRY_ASSIGN(tmp, create_temp(opts_, p.leaf, rel, [&](const std::string& name) {
    return ::symlinkat(tgt.c_str(), dir, name.c_str());
  }));
  auto cleanup = ScopeGuard([&]() noexcept { ::unlinkat(dir, tmp.c_str(), 0); });
  SYNCD_TRY(apply_link_meta(dir, tmp, rel, attrs));
  auto done = commit_temp(dir, tmp, p.leaf, rel, expect);
  if (done.ok()) cleanup.cancel();
  return done;
}

Result<Fingerprint> Applier::make_special(std::string_view rel, mode_t st_type, uint64_t rdev, const Attrs& attrs,
                                          const Expected& expect) const {
  if (st_type != S_IFCHR && st_type != S_IFBLK && st_type != S_IFIFO && st_type != S_IFSOCK) {
    return Error::make(errc::unsupported, q(rel) + ": not a device, FIFO or socket type");
  }
  SYNCD_TRY_ASSIGN(p, root_.parent_of(rel));
  const int dir = p.dir.get();
  const dev_t dev = st_type == S_IFCHR || st_type == S_IFBLK ? static_cast<dev_t>(rdev) : 0;
  SYNCD_TRY_ASSIGN(tmp, create_temp(opts_, p.leaf, rel, [&](const std::string& name) {
    return ::mknodat(dir, name.c_str(), st_type | 0600, dev);
  }));
  auto cleanup = ScopeGuard([&]() noexcept { ::unlinkat(dir, tmp.c_str(), 0); });
  SYNCD_TRY(apply_special_meta(dir, tmp, rel, attrs));
  auto done = commit_temp(dir, tmp, p.leaf, rel, expect);
  if (done.ok()) cleanup.cancel();
  return done;
}

Result<Fingerprint> Applier::set_meta(std::string_view rel, const Attrs& attrs,
                                      const Expected& expect) const {
  SYNCD_TRY_ASSIGN(p, root_.parent_of(rel));
  const int dir = p.dir.get();
  SYNCD_TRY(guard(dir, p.leaf, rel, expect));
  struct stat st{};
  if (::fstatat(dir, p.leaf.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return io_error("stat", rel);
  if (S_ISLNK(st.st_mode)) {
    SYNCD_TRY(apply_link_meta(dir, p.leaf, rel, attrs));
  } else if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) {
    // O_NONBLOCK: if the entry was swapped for a FIFO meanwhile, open does not hang; fstat below
    // then refuses it.
    UniqueFd fd(::openat(dir, p.leaf.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (!fd) return io_error("open", rel);
    struct stat fst{};
    if (::fstat(fd.get(), &fst) != 0) return io_error("stat", rel);
    if (fst.st_ino != st.st_ino || (fst.st_mode & S_IFMT) != (st.st_mode & S_IFMT)) {
      return Error::make(errc::unexpected_target, q(rel) + " replaced while changing metadata");
    }
    SYNCD_TRY(apply_owner_mode_time(fd.get(), rel, attrs));
  } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) || S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)) {
    SYNCD_TRY(apply_special_meta(dir, p.leaf, rel, attrs));
  } else {
    return Error::make(errc::unsupported, q(rel) + ": not a file, directory or symlink");
  }
  return look(dir, p.leaf, rel);
}

Result<Fingerprint> Applier::set_mtime(std::string_view rel, int64_t sec, uint32_t nsec) const {
  SYNCD_TRY_ASSIGN(p, root_.parent_of(rel));
  Attrs a;
  a.mtime_sec = sec;
  a.mtime_nsec = nsec;
  if (::utimensat(p.dir.get(), p.leaf.c_str(), MtimeSpec(a).ts, AT_SYMLINK_NOFOLLOW) != 0) {
    return io_error("set mtime of", rel);
  }
  return look(p.dir.get(), p.leaf, rel);
}

Status Applier::set_root_meta(const Attrs& attrs) const {
  SYNCD_TRY(root_.check_identity());
  return apply_owner_mode_time(root_.fd(), ".", attrs, false);
}

Status Applier::set_root_mtime(int64_t sec, uint32_t nsec) const {
  SYNCD_TRY(root_.check_identity());
  Attrs a;
  a.mtime_sec = sec;
  a.mtime_nsec = nsec;
  if (::futimens(root_.fd(), MtimeSpec(a).ts) != 0) return io_error("set mtime of", ".");
  return {};
}

Status Applier::unlink(std::string_view rel, const Expected& expect) const {
  SYNCD_TRY_ASSIGN(p, root_.parent_of(rel));
  SYNCD_TRY(guard(p.dir.get(), p.leaf, rel, expect));
  if (::unlinkat(p.dir.get(), p.leaf.c_str(), 0) != 0) return io_error("unlink", rel);
  return fsync_dir(p.dir.get(), rel);
}

namespace {

// Empties directory `fd` (which it owns) without following symlinks. Depth is bounded by the
// path length limit, so recursion is bounded too.
Status empty_dir(UniqueFd fd, std::string_view rel, int depth) {
  if (depth > 2048) return Error::make(errc::limit_exceeded, q(rel) + ": directory tree too deep");
  const int dfd = fd.get();
  UniqueFd iter(::openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!iter) return io_error("open directory", rel);
  DIR* d = ::fdopendir(iter.get());
  if (!d) return io_error("read directory", rel);
  (void)iter.release();  // owned by DIR now
  std::vector<std::pair<std::string, bool>> entries;
  errno = 0;
  while (struct dirent* e = ::readdir(d)) {
    std::string_view n(e->d_name);
    if (n == "." || n == "..") continue;
    struct stat st{};
    if (::fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    entries.emplace_back(std::string(n), S_ISDIR(st.st_mode));
  }
  ::closedir(d);
  for (const auto& [name, is_dir] : entries) {
    const std::string child = std::string(rel) + "/" + name;
    if (is_dir) {
      UniqueFd sub(::openat(dfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!sub) return io_error("open directory", child);
      SYNCD_TRY(empty_dir(std::move(sub), child, depth + 1));
      if (::unlinkat(dfd, name.c_str(), AT_REMOVEDIR) != 0) return io_error("rmdir", child);
    } else if (::unlinkat(dfd, name.c_str(), 0) != 0) {
      return io_error("unlink", child);
    }
  }
  return {};
}

}  // namespace

namespace {

bool is_temp_name(std::string_view n) {
  return n.size() > 11 && n.starts_with(".syncd.") && n.ends_with(".tmp");
}

Status sweep_temps(int dfd, const std::string& rel, int depth) {
  if (depth > 2048) return {};
  UniqueFd iter(::openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!iter) return io_error("open directory", rel);
  DIR* d = ::fdopendir(iter.get());
  if (!d) return io_error("read directory", rel);
  (void)iter.release();
  std::vector<std::string> subdirs;
  std::vector<std::string> temps;
  while (struct dirent* e = ::readdir(d)) {
    std::string_view n(e->d_name);
    if (n == "." || n == "..") continue;
    struct stat st{};
    if (::fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      subdirs.emplace_back(n);
    } else if ((S_ISREG(st.st_mode) || S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) || S_ISFIFO(st.st_mode) ||
                S_ISSOCK(st.st_mode)) &&
               is_temp_name(n) && st.st_uid == ::geteuid()) {
      temps.emplace_back(n);
    }
  }
  ::closedir(d);
  for (const auto& t : temps) (void)::unlinkat(dfd, t.c_str(), 0);
  for (const auto& s : subdirs) {
    UniqueFd sub(::openat(dfd, s.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (sub) SYNCD_TRY(sweep_temps(sub.get(), rel.empty() ? s : rel + "/" + s, depth + 1));
  }
  return {};
}

}  // namespace

Status Applier::remove_stale_temps() const {
  SYNCD_TRY_ASSIGN(d, root_.open_dir(""));
  return sweep_temps(d.get(), "", 0);
}

Status Applier::remove_dir(std::string_view rel, bool recursive) const {
  SYNCD_TRY_ASSIGN(p, root_.parent_of(rel));
  const int dir = p.dir.get();
  if (recursive) {
    UniqueFd d(::openat(dir, p.leaf.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!d) return io_error("open directory", rel);
    SYNCD_TRY(empty_dir(std::move(d), rel, 0));
  }
  if (::unlinkat(dir, p.leaf.c_str(), AT_REMOVEDIR) != 0) return io_error("rmdir", rel);
  return fsync_dir(dir, rel);
}

Result<Fingerprint> Applier::rename(std::string_view from, std::string_view to,
                                    const Expected& expect_from, const Expected& expect_to) const {
  SYNCD_TRY_ASSIGN(pf, root_.parent_of(from));
  SYNCD_TRY_ASSIGN(pt, root_.parent_of(to));
  SYNCD_TRY(guard(pf.dir.get(), pf.leaf, from, expect_from));
  SYNCD_TRY(guard(pt.dir.get(), pt.leaf, to, expect_to));
  const unsigned flags = expect_to.kind == Expected::Kind::absent ? RENAME_NOREPLACE : 0;
  if (::renameat2(pf.dir.get(), pf.leaf.c_str(), pt.dir.get(), pt.leaf.c_str(), flags) != 0) {
    if (errno == EEXIST) return Error::make(errc::unexpected_target, q(to) + " appeared meanwhile");
    return io_error("rename", from);
  }
  SYNCD_TRY(fsync_dir(pt.dir.get(), to));
  SYNCD_TRY(fsync_dir(pf.dir.get(), from));
  return look(pt.dir.get(), pt.leaf, to);
}

Result<Fingerprint> Applier::link_into(std::string_view from, std::string_view to, const Expected& expect_to) const {
  SYNCD_TRY_ASSIGN(pf, root_.parent_of(from));
  SYNCD_TRY_ASSIGN(pt, root_.parent_of(to));
  struct stat sf{}, stt{};
  if (::fstatat(pf.dir.get(), pf.leaf.c_str(), &sf, AT_SYMLINK_NOFOLLOW) != 0) return io_error("stat", from);
  if (!S_ISREG(sf.st_mode)) return Error::make(errc::unexpected_target, q(from) + " is not a regular file");
  // rename(2) between two names of one inode does nothing and would leave the temp behind.
  if (::fstatat(pt.dir.get(), pt.leaf.c_str(), &stt, AT_SYMLINK_NOFOLLOW) == 0 && stt.st_ino == sf.st_ino &&
      stt.st_dev == sf.st_dev) {
    return look(pt.dir.get(), pt.leaf, to);
  }
  const int dir = pt.dir.get();
  SYNCD_TRY_ASSIGN(tmp, create_temp(opts_, pt.leaf, to, [&](const std::string& name) {
    return ::linkat(pf.dir.get(), pf.leaf.c_str(), dir, name.c_str(), 0);
  }));
  auto cleanup = ScopeGuard([&]() noexcept { ::unlinkat(dir, tmp.c_str(), 0); });
  auto done = commit_temp(dir, tmp, pt.leaf, to, expect_to);
  if (done.ok()) cleanup.cancel();
  return done;
}

Result<Fingerprint> Applier::link(std::string_view from, std::string_view to, const Expected& expect_from) const {
  SYNCD_TRY_ASSIGN(pf, root_.parent_of(from));
  SYNCD_TRY_ASSIGN(pt, root_.parent_of(to));
  SYNCD_TRY(guard(pf.dir.get(), pf.leaf, from, expect_from));
  // linkat without AT_SYMLINK_FOLLOW links a symlink itself, never its target.
  if (::linkat(pf.dir.get(), pf.leaf.c_str(), pt.dir.get(), pt.leaf.c_str(), 0) != 0) {
    if (errno == EEXIST) return Error::make(errc::unexpected_target, q(to) + " exists already");
    return io_error("link", to);
  }
  SYNCD_TRY(fsync_dir(pt.dir.get(), to));
  return look(pt.dir.get(), pt.leaf, to);
}

}  // namespace syncd::apply
