#include "lib/store/scanner.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <atomic>
#include <memory>
#include <optional>
#include <system_error>
#include <thread>
#include <vector>

#include "lib/base/log.h"
#include "lib/base/scope_guard.h"
#include "lib/base/unique_fd.h"
#include "lib/fs/xattrs.h"
#include "lib/codec/content_hash.h"
#include "lib/store/chunk_cache.h"
#include "lib/fs/accounts.h"
#include "protocol/limits.h"
#include "protocol/path.h"

namespace syncd::store {
namespace {

constexpr size_t kReadChunk = 256 * 1024;

std::string q(std::string_view rel) { return "\"" + log::escape(rel) + "\""; }

Error busy(std::string_view rel) {
  return Error::make(errc::unexpected_target, q(rel) + " changed while it was read; will retry");
}

bool same_bytes(const struct stat& st, const fs::Fingerprint& seen) { return seen.same_bytes(fs::Fingerprint::of(st)); }

// After reading `total` bytes: the file is still the one lstat showed as `seen`, all of it.
// Appended, truncated or rewritten while we read, the hash may be of a torn file: busy.
Status read_whole(int fd, const fs::Fingerprint& seen, uint64_t total, std::string_view rel) {
  struct stat after{};
  if (::fstat(fd, &after) != 0) return Error::from_errno("stat " + q(rel));
  if (!same_bytes(after, seen) || total != seen.size) return busy(rel);
  return {};
}

// A file over one chunk (codec/content_hash.h): a chunk whose keyed XXH3 is what the cache
// remembers for it keeps its SHA-256; the others are hashed (chunk_cache.h). Two threads, each
// reading (pread) and hashing one half of the file kPartChunks at a time: SHA-256 is most of the
// cost of a big new file (about 0.55 s per GiB here), and copying the bytes out of the page
// cache most of the cost of a small edit of one (about 25 ms per 100 MiB on one core here);
// nothing is sent before the hash is known. The size read is the one lstat saw: a file that
// shrank reads short (busy), one that grew or was written meanwhile fails read_whole's check.
constexpr uint64_t kPartChunks = 4;

Result<protocol::Hash256> hash_chunked(int fd, const std::string& name, std::string_view rel, const fs::Fingerprint& seen) {
  ChunkCache& cache = ChunkCache::shared();
  const std::vector<ChunkCache::Chunk> cached = cache.get(name);
  const uint64_t count = codec::chunk_count(seen.size);
  std::vector<ChunkCache::Chunk> chunks(static_cast<size_t>(count));
  std::atomic<int> read_errno{0};
  std::atomic<bool> short_read{false};
  // Chunks [from, to), every one kContentChunk bytes but the file's last.
  auto work = [&](uint64_t from, uint64_t to) {
    const uint64_t end = std::min(to * codec::kContentChunk, seen.size);
    const auto cap = static_cast<size_t>(std::min(kPartChunks * codec::kContentChunk, end - from * codec::kContentChunk));
    auto buf = std::make_unique_for_overwrite<uint8_t[]>(cap);  // every byte hashed is read first
    size_t used = 0;
    // Either thread's failure ends both: the hash is lost anyway.
    for (uint64_t c = from; c < to && read_errno == 0 && !short_read; c += kPartChunks) {
      const uint64_t off = c * codec::kContentChunk;
      const auto len = static_cast<size_t>(std::min<uint64_t>(cap, end - off));
      used = std::max(used, len);
      for (size_t done = 0; done < len;) {
        const ssize_t r = ::pread(fd, buf.get() + done, len - done, static_cast<off_t>(off + done));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
          if (r < 0) {
            read_errno = errno;
          } else {
            short_read = true;  // the file shrank since lstat
          }
          codec::wipe(buf.get(), used);
          return;
        }
        done += static_cast<size_t>(r);
      }
      for (size_t k = 0; k * codec::kContentChunk < len; ++k) {
        const ByteSpan bytes(buf.get() + k * codec::kContentChunk, std::min<size_t>(codec::kContentChunk, len - k * codec::kContentChunk));
        ChunkCache::Chunk ch{cache.key().hash(bytes), {}};
        const size_t i = static_cast<size_t>(c) + k;
        if (i < cached.size() && cached[i].quick == ch.quick) {
          ch.sha = cached[i].sha;
        } else {
          ch.sha = codec::Sha256::of(bytes);
          ++cache.chunks_hashed;
        }
        chunks[i] = ch;
      }
    }
    codec::wipe(buf.get(), used);
  };
  std::optional<std::thread> helper;
  const uint64_t half = count / 2;
  try {
    helper.emplace([&work, half] {
      (void)::pthread_setname_np(::pthread_self(), "syncd-hash");
      work(0, half);
    });
  } catch (const std::system_error&) {
    // No thread to spare: all of it here.
  }
  work(helper ? half : 0, count);
  if (helper) helper->join();
  if (read_errno != 0) return Error::from_errno("read " + q(rel), read_errno);
  if (short_read) return busy(rel);
  const uint64_t total = seen.size;
  SYNCD_TRY(read_whole(fd, seen, total, rel));
  std::vector<codec::Digest> digests;
  digests.reserve(chunks.size());
  for (const auto& c : chunks) digests.push_back(c.sha);
  const codec::Digest root_hash = codec::content_root(total, digests);
  cache.put(name, std::move(chunks), root_hash);
  return root_hash;
}

// Hashes the regular file `leaf` in `dir`, which lstat showed as `seen`. With `keep`, a file of
// at most kKeepMax bytes is also returned in it (the sender ships what it hashed instead of
// opening and reading the file a second time).
Result<protocol::Hash256> hash_file(const fs::Root& root, int dir, const std::string& leaf, std::string_view rel,
                                    const fs::Fingerprint& seen, Bytes* keep) {
  // No symlink followed (unless the tree follows that one), O_NONBLOCK: a name swapped for a
  // symlink or FIFO since the lstat neither leads outside nor blocks; fstat then shows it is not
  // the file we saw.
  auto opened = root.open_read(dir, leaf, rel, O_NONBLOCK | O_NOCTTY);
  if (!opened.ok()) {
    if (opened.error().is_errno(ELOOP)) return busy(rel);
    return std::move(opened).error();
  }
  UniqueFd fd = std::move(*opened);
  struct stat before{};
  if (::fstat(fd.get(), &before) != 0) return Error::from_errno("stat " + q(rel));
  if (!S_ISREG(before.st_mode) || !same_bytes(before, seen)) return busy(rel);
  static_assert(kKeepMax < codec::kContentChunk, "kept files are hashed whole");
  if (seen.size > codec::kContentChunk) {
    return hash_chunked(fd.get(), ChunkCache::file_name(root.path(), rel), rel, seen);
  }
  const bool keeping = keep != nullptr && seen.size <= kKeepMax;
  // Sized to the file (+1 to see growth in the same read): small files cost one small buffer,
  // and only what was used needs wiping.
  Bytes buf(keeping ? seen.size + 1 : std::min<uint64_t>(kReadChunk, seen.size + 1));
  size_t used = 0;
  auto wipe_buf = [&] { codec::wipe(buf.data(), std::min(used, buf.size())); };
  codec::ContentHasher hasher;
  uint64_t total = 0;
  for (;;) {
    uint8_t* at = keeping ? buf.data() + total : buf.data();
    const size_t room = keeping ? buf.size() - static_cast<size_t>(total) : buf.size();
    if (room == 0) break;  // grew past what lstat said: caught by the size check below
    ssize_t n = ::read(fd.get(), at, room);
    if (n < 0) {
      if (errno == EINTR) continue;
      wipe_buf();
      return Error::from_errno("read " + q(rel));
    }
    if (n == 0) break;
    hasher.update(ByteSpan(at, static_cast<size_t>(n)));
    total += static_cast<uint64_t>(n);
    used = keeping ? static_cast<size_t>(total) : std::max(used, static_cast<size_t>(n));
  }
  if (auto st = read_whole(fd.get(), seen, total, rel); !st) {
    wipe_buf();
    return std::move(st).error();
  }
  if (keeping) {
    buf.resize(static_cast<size_t>(total));
    *keep = std::move(buf);
  } else {
    wipe_buf();
  }
  return hasher.finish();
}

}  // namespace

std::optional<protocol::FileType> file_type_of(uint32_t mode) noexcept {
  if (S_ISREG(mode)) return protocol::FileType::file;
  if (S_ISDIR(mode)) return protocol::FileType::dir;
  if (S_ISLNK(mode)) return protocol::FileType::symlink;
  if (S_ISCHR(mode)) return protocol::FileType::chardev;
  if (S_ISBLK(mode)) return protocol::FileType::blockdev;
  if (S_ISFIFO(mode)) return protocol::FileType::fifo;
  if (S_ISSOCK(mode)) return protocol::FileType::socket;
  return std::nullopt;
}

std::string special_descriptor(protocol::FileType t, uint64_t rdev) {
  const std::string dev = std::to_string(::major(static_cast<dev_t>(rdev))) + ":" + std::to_string(::minor(static_cast<dev_t>(rdev)));
  switch (t) {
    case protocol::FileType::chardev: return "character device " + dev;
    case protocol::FileType::blockdev: return "block device " + dev;
    case protocol::FileType::fifo: return "fifo";
    case protocol::FileType::socket: return "socket";
    default: return {};
  }
}

std::string user_name(uint32_t uid) { return fs::user_name(uid); }
std::string group_name(uint32_t gid) { return fs::group_name(gid); }

Result<std::optional<Entry>> scan_one(const fs::Root& root, std::string_view rel,
                                      const Known* known, Bytes* keep) {
  auto parent = root.parent_of(rel);
  if (!parent.ok()) {
    // A missing parent means the path is gone; anything else (symlinked parent) is an error.
    if (parent.error().is_errno(ENOENT) || parent.error().is_errno(ENOTDIR)) {
      return std::optional<Entry>{};
    }
    return std::move(parent).error();
  }
  const int dir = parent->dir.get();
  const std::string& leaf = parent->leaf;
  struct stat st{};
  const int64_t looked_at = fs::Fingerprint::now_ns();
  if (::fstatat(dir, leaf.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return std::optional<Entry>{};
    return Error::from_errno("stat " + q(rel));
  }
  bool via_link = false;
  if (S_ISLNK(st.st_mode) && root.follow_links().any()) {
    // rsync.copy_links and friends: this link is read as what it points to.
    SYNCD_TRY_ASSIGN(f, root.followed(dir, leaf, rel));
    if (f) {
      st = *f;
      via_link = true;
    }
  }
  auto type = file_type_of(st.st_mode);
  if (!type || !root.replicates(st.st_mode)) {
    return Error::make(errc::unsupported, q(rel) + ": a device file, FIFO or socket (rsync.devices / rsync.specials are off)");
  }
  Entry e;
  e.path = std::string(rel);
  e.type = *type;
  e.fp = fs::Fingerprint::observed(st, looked_at);
  e.nlink = st.st_nlink;
  e.via_link = via_link;
  // Never opened: opening a device runs its driver. (Their xattrs are not replicated.)
  if ((e.type == protocol::FileType::file || e.type == protocol::FileType::dir) && root.xattr_names().any()) {
    // O_NONBLOCK: a FIFO swapped in meanwhile does not hang the open; the inode check refuses it.
    auto opened = root.open_read(dir, leaf, rel, O_NONBLOCK);
    if (!opened.ok() && opened.error().is_errno(ENOENT)) return std::optional<Entry>{};
    if (!opened.ok()) return std::move(opened).error();
    UniqueFd fd = std::move(*opened);
    struct stat fst{};
    if (::fstat(fd.get(), &fst) != 0) return Error::from_errno("stat " + q(rel));
    if (fst.st_ino != st.st_ino || fst.st_dev != st.st_dev) {
      return Error::make(errc::unexpected_target, q(rel) + " replaced while its xattrs were read");
    }
    SYNCD_TRY_ASSIGN(x, fs::read_xattrs(fd.get(), root.xattr_names(), rel));
    e.xattrs = std::move(x);
  }
  switch (e.type) {
    case protocol::FileType::dir: break;
    case protocol::FileType::chardev:
    case protocol::FileType::blockdev:
    case protocol::FileType::fifo:
    case protocol::FileType::socket:
      if (protocol::is_device(e.type)) e.rdev = st.st_rdev;
      e.sha256 = codec::Sha256::of(as_bytes(special_descriptor(e.type, e.rdev)));
      e.hashed = true;
      break;
    case protocol::FileType::symlink: {
      std::vector<char> buf(4097);
      ssize_t n = ::readlinkat(dir, leaf.c_str(), buf.data(), buf.size());
      if (n < 0) return Error::from_errno("readlink " + q(rel));
      if (static_cast<size_t>(n) >= buf.size()) {
        return Error::make(errc::limit_exceeded, q(rel) + ": symlink target longer than 4095 bytes");
      }
      e.symlink_target.assign(buf.data(), static_cast<size_t>(n));
      e.sha256 = codec::Sha256::of(as_bytes(e.symlink_target));
      e.hashed = true;
      break;
    }
    case protocol::FileType::file:
      if (known && known->fp.same_content_stat(e.fp)) {
        e.sha256 = known->sha256;  // unchanged by every stat measure: no need to read it
      } else {
        SYNCD_TRY_ASSIGN(h, hash_file(root, dir, leaf, rel, e.fp, keep));
        e.sha256 = h;
        e.hashed = true;
      }
      break;
  }
  return std::optional<Entry>(std::move(e));
}

namespace {

// `entered`: (dev, inode) of the directories on the way down, so a followed link that leads back
// into one of them (a loop) is not entered again.
struct Walk {
  const fs::Root& root;
  const WalkVisitor& visit;
  const WalkFilter& skip;
  const WalkTrouble& trouble;
  std::vector<std::pair<dev_t, ino_t>> entered;

  // An entry there but not readable: reported (the walk goes on) or the end of the walk.
  Status report(const std::string& rel, Error e) const {
    if (!trouble) return e;
    trouble(rel, e);
    return {};
  }

  Status dir(int dfd, const std::string& prefix, int depth) {
    if (depth > 2048) return Error::make(errc::limit_exceeded, q(prefix) + ": tree too deep");
    UniqueFd iter(::openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!iter && errno == ENOENT) return {};  // removed since it was opened: nothing below it
    if (!iter) return report(prefix, Error::from_errno("open directory " + q(prefix)));
    DIR* d = ::fdopendir(iter.get());
    if (!d) return report(prefix, Error::from_errno("read directory " + q(prefix)));
    (void)iter.release();
    std::vector<std::string> names;
    for (;;) {
      errno = 0;  // readdir's end and its failure both return null
      struct dirent* ent = ::readdir(d);
      if (ent == nullptr) break;
      std::string_view n(ent->d_name);
      if (n == "." || n == ".." || protocol::is_reserved_name(n)) continue;
      names.emplace_back(n);
    }
    const int read_err = errno;
    ::closedir(d);
    // A listing cut short says nothing about the names after the cut.
    if (read_err != 0) return report(prefix, Error::from_errno("read directory " + q(prefix), read_err));
    for (const auto& name : names) {
      const std::string rel = prefix.empty() ? name : prefix + "/" + name;
      struct stat st{};
      if (::fstatat(dfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) continue;  // vanished
        SYNCD_TRY(report(rel, Error::from_errno("stat " + q(rel))));
        continue;
      }
      bool followed = false;
      if (S_ISLNK(st.st_mode) && root.follow_links().any()) {
        auto f = root.followed(dfd, name, rel);
        if (!f.ok()) {
          log::get(log::Module::store).warn("{}", f.error().message());  // rsync: "symlink has no referent"; not replicated
          continue;
        }
        if (*f) {
          st = **f;
          followed = true;
        }
      }
      const bool is_dir = S_ISDIR(st.st_mode);
      if (skip && skip(rel, is_dir)) continue;
      if (!file_type_of(st.st_mode) || !root.replicates(st.st_mode)) continue;  // devices, FIFOs, sockets unless enabled
      if (rel.size() > protocol::kMaxPath) {
        // The protocol's bound (PATH_MAX, as for rsync): the entry and all below it stay here.
        log::get(log::Module::store).error("not synced: the path is longer than {} bytes: {}", protocol::kMaxPath,
                                           log::escape_long(rel));
        continue;
      }
      SYNCD_TRY(visit(rel, fs::Fingerprint::of(st)));
      if (is_dir && !root.foreign_device(st.st_dev)) {
        const std::pair<dev_t, ino_t> id{st.st_dev, st.st_ino};
        if (std::find(entered.begin(), entered.end(), id) != entered.end()) {
          log::get(log::Module::store).warn("{}: a followed symlink leads back into a directory above it; not entered again", q(rel));
          continue;
        }
        UniqueFd sub(::openat(dfd, name.c_str(), O_RDONLY | O_DIRECTORY | (followed ? 0 : O_NOFOLLOW) | O_CLOEXEC));
        if (!sub) {
          // Replaced or removed since the stat: the next event or walk sees what is there now.
          if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP) continue;
          SYNCD_TRY(report(rel, Error::from_errno("open directory " + q(rel))));
          continue;
        }
        entered.push_back(id);
        SYNCD_TRY(this->dir(sub.get(), rel, depth + 1));
        entered.pop_back();
      }
    }
    return {};
  }
};

}  // namespace

Status walk(const fs::Root& root, std::string_view rel, const WalkVisitor& visit,
            const WalkFilter& skip, const WalkTrouble& trouble) {
  SYNCD_TRY_ASSIGN(d, root.open_dir(rel));
  Walk w{root, visit, skip, trouble, {}};
  // The directories above `rel` count as entered too when links are followed: a walk of a link
  // back to one of them reads nothing, as the walk of the whole tree would.
  const auto id_of = [](int fd) {
    struct stat st{};
    return ::fstat(fd, &st) == 0 ? std::make_pair(st.st_dev, st.st_ino) : std::make_pair(dev_t{0}, ino_t{0});
  };
  if (root.follow_links().any() && !rel.empty()) {
    if (auto top = root.open_dir(""); top.ok()) w.entered.push_back(id_of(top->get()));
    for (size_t slash = rel.find('/'); slash != std::string_view::npos; slash = rel.find('/', slash + 1)) {
      if (auto a = root.open_dir(rel.substr(0, slash)); a.ok()) w.entered.push_back(id_of(a->get()));
    }
    if (std::find(w.entered.begin(), w.entered.end(), id_of(d.get())) != w.entered.end()) {
      log::get(log::Module::store).warn("{}: a followed symlink leads back into a directory above it; not entered again", q(rel));
      return {};
    }
  }
  w.entered.push_back(id_of(d.get()));
  return w.dir(d.get(), std::string(rel), 0);
}

}  // namespace syncd::store
