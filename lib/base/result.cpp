#include "lib/base/result.h"

namespace syncd {
namespace {

class SyncdCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "syncd"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::corrupt: return "corrupt input";
      case errc::limit_exceeded: return "limit exceeded";
      case errc::path_rejected: return "path rejected";
      case errc::path_escape: return "path escapes the root";
      case errc::base_mismatch: return "delta base mismatch";
      case errc::verify_failed: return "SHA-256 verification failed";
      case errc::unexpected_target: return "target changed underneath";
      case errc::wrong_volume: return "not the volume this node synced";
      case errc::unsupported: return "unsupported";
      case errc::truncated: return "truncated input";
      case errc::internal: return "internal error";
    }
    return "unknown syncd error";
  }
};

}  // namespace

const std::error_category& syncd_category() noexcept {
  static const SyncdCategory cat;
  return cat;
}

Cond classify(const std::error_code& ec) noexcept {
  if (ec.category() == syncd_category()) {
    switch (static_cast<errc>(ec.value())) {
      case errc::corrupt:
      case errc::limit_exceeded:
      case errc::path_rejected:
      case errc::path_escape:
      case errc::truncated:
      case errc::unsupported: return Cond::corrupt;
      case errc::base_mismatch:
      case errc::verify_failed:
      case errc::unexpected_target: return Cond::rescan;
      case errc::wrong_volume: return Cond::needs_operator;
      case errc::internal: return Cond::bug;
    }
    return Cond::bug;
  }
  if (ec.category() == std::generic_category() || ec.category() == std::system_category()) {
    switch (ec.value()) {
      case EINTR:
      case EAGAIN:
      case EBUSY: return Cond::retry_call;
      case ENOENT:
      case ENOTDIR:
      case EEXIST:
      case ENOTEMPTY:
      case ESTALE: return Cond::rescan;
      case ECONNRESET:
      case ECONNREFUSED:
      case EPIPE:
      case ETIMEDOUT:
      case EHOSTUNREACH:
      case ENETUNREACH: return Cond::unavailable;
      case ELOOP:
      case EXDEV: return Cond::corrupt;
      default: return Cond::needs_operator;  // EACCES, EPERM, ENOSPC, EROFS, EIO, EDQUOT ...
    }
  }
  return Cond::bug;
}

std::string Error::message() const {
  std::string m = context;
  if (code) {
    if (!m.empty()) m += ": ";
    m += code.message();
  }
  return m;
}

}  // namespace syncd
