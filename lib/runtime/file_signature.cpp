#include "lib/runtime/file_signature.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/base/log.h"
#include "lib/base/scope_guard.h"
#include "lib/codec/sha256.h"
#include "lib/delta/signature.h"

namespace syncd::runtime {

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
  Bytes buf(1u << 20);
  auto wiped = ScopeGuard([&]() noexcept { codec::wipe(buf.data(), buf.size()); });  // it held file content
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::from_errno("read \"" + log::escape(path) + "\"");
    if (n == 0) break;
    SYNCD_TRY(b.feed(ByteSpan(buf.data(), static_cast<size_t>(n))));
  }
  SYNCD_TRY(unchanged());
  SYNCD_TRY_ASSIGN(sig, std::move(b).finish());
  return sig.serialize();
}

}  // namespace syncd::runtime
