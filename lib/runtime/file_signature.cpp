#include "lib/runtime/file_signature.h"

#include <cerrno>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <functional>

#include "lib/base/log.h"
#include "lib/base/scope_guard.h"
#include "lib/codec/content_hash.h"
#include "lib/delta/signature.h"

namespace syncd::runtime {
namespace {

// Reads `fd` to its end in 1 MiB pieces, handing each to `f`; the total read.
Result<uint64_t> read_each(int fd, const std::string& path, const std::function<Status(ByteSpan)>& f) {
  Bytes buf(1u << 20);
  auto wiped = ScopeGuard([&]() noexcept { codec::wipe(buf.data(), buf.size()); });  // it held file content
  uint64_t total = 0;
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::from_errno("read \"" + log::escape(path) + "\"");
    if (n == 0) return total;
    total += static_cast<uint64_t>(n);
    SYNCD_TRY(f(ByteSpan(buf.data(), static_cast<size_t>(n))));
  }
}

}  // namespace

Result<Bytes> sign_unchanged_file(const fs::Root& root, const std::string& path, const fs::Fingerprint& fp,
                                  uint64_t size) {
  SYNCD_TRY_ASSIGN(parent, root.parent_of(path));
  SYNCD_TRY_ASSIGN(fd, root.open_read(parent.dir.get(), parent.leaf, path, O_NONBLOCK));
  auto unchanged = [&]() -> Status {
    struct stat st{};
    if (::fstat(fd.get(), &st) != 0) return Error::from_errno("stat \"" + log::escape(path) + "\"");
    if (!fp.same_bytes(fs::Fingerprint::of(st)) || static_cast<uint64_t>(st.st_size) != size) {
      return Error::make(errc::unexpected_target, "\"" + log::escape(path) + "\" changed since it was recorded");
    }
    return {};
  };
  SYNCD_TRY(unchanged());
  delta::SignatureBuilder b(size, delta::cached_block_len(size), codec::HashKey::random());
  SYNCD_TRY(read_each(fd.get(), path, [&](ByteSpan chunk) { return b.feed(chunk); }));
  SYNCD_TRY(unchanged());
  SYNCD_TRY_ASSIGN(sig, std::move(b).finish());
  return sig.serialize();
}

Result<std::optional<PeerSignature>> sign_for_peer(const fs::Root& root, const std::string& path) {
  const std::string q = "\"" + log::escape(path) + "\"";
  auto parent = root.parent_of(path);
  if (!parent.ok()) {
    const Error& e = parent.error();
    if (e.is_errno(ENOENT) || e.is_errno(ENOTDIR) || e.is(errc::path_escape)) return std::optional<PeerSignature>{};
    return std::move(parent).error();
  }
  auto opened = root.open_read(parent->dir.get(), parent->leaf, path, O_NONBLOCK);
  if (!opened.ok()) {
    // Not there, or not something this tree reads as a file (a symlink it does not follow).
    const Error& e = opened.error();
    if (e.is_errno(ENOENT) || e.is_errno(ELOOP) || e.is_errno(ENOTDIR) || e.is(errc::path_escape)) {
      return std::optional<PeerSignature>{};
    }
    return std::move(opened).error();
  }
  const UniqueFd fd = std::move(*opened);
  struct stat before{};
  if (::fstat(fd.get(), &before) != 0) return Error::from_errno("stat " + q);
  const auto size = static_cast<uint64_t>(before.st_size);
  if (!S_ISREG(before.st_mode) || size == 0 || !delta::delta_supported(size)) return std::optional<PeerSignature>{};
  delta::SignatureBuilder b(size, delta::wire_block_len(size), codec::HashKey::random());
  codec::ContentHasher h;  // the file's identity (content_hash.h), as the delta's base_hash
  uint64_t seen = 0;
  auto fed = read_each(fd.get(), path, [&](ByteSpan chunk) -> Status {
    seen += chunk.size();
    if (seen > size) return Error::make(errc::unexpected_target, q + " grew while it was read");
    h.update(chunk);
    return b.feed(chunk);
  });
  if (!fed.ok() && fed.error().is(errc::unexpected_target)) return std::optional<PeerSignature>{};
  SYNCD_TRY_ASSIGN(total, std::move(fed));
  struct stat after{};
  if (::fstat(fd.get(), &after) != 0) return Error::from_errno("stat " + q);
  // A write while it was read: the hash and the blocks may describe no state the file ever had.
  if (total != size || !fs::Fingerprint::of(before).same_bytes(fs::Fingerprint::of(after))) {
    return std::optional<PeerSignature>{};
  }
  SYNCD_TRY_ASSIGN(sig, std::move(b).finish());
  PeerSignature out;
  out.sha256 = h.finish();
  out.fp = fs::Fingerprint::of(after);
  out.signature = sig.serialize();
  return std::optional<PeerSignature>(std::move(out));
}

}  // namespace syncd::runtime
