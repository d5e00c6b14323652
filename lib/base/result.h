// File: lib/base/result.h
//
// Errors as values. Every fallible function in lib/ and protocol/ returns Result<T>: either a T or
// an Error that says what failed (an error_code) and where (a context string naming the operation,
// the path and, for errno failures, the errno text through error_code::message()).
//
// Thread affinity: none; plain values.
//
//   Result<UniqueFd> open_it(const std::string& p) {
//     int fd = ::open(p.c_str(), O_RDONLY);
//     if (fd < 0) return Error::from_errno("open " + p);
//     return UniqueFd(fd);
//   }
//   SYNCD_TRY_ASSIGN(fd, open_it("x"));   // propagates the error, adding no noise
#pragma once

#include <cerrno>
#include <string>
#include <system_error>
#include <utility>
#include <variant>

namespace syncd {

// syncd's own failure kinds (errno-like failures use std::generic_category instead).
enum class errc {
  corrupt = 1,         // malformed frame, delta, signature or zstd stream: drop the peer
  limit_exceeded,      // a count, length or size beyond a documented bound
  path_rejected,       // a path that fails the wire/path rules (SECURITY.md §2.4 rule 5)
  path_escape,         // resolving the path would leave the root (symlink, .., absolute)
  base_mismatch,       // a delta's base is not the file we hold
  verify_failed,       // reconstructed bytes do not have the announced SHA-256
  unexpected_target,   // the target changed since the caller looked (conflict guard)
  wrong_volume,        // a synced root is not the volume it was (not mounted?): do not touch it
  unsupported,         // a feature, version or file type we do not handle
  truncated,           // input ended before a complete unit
  internal,            // a bug: an invariant did not hold
};

const std::error_category& syncd_category() noexcept;

inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), syncd_category()};
}

// What a caller should do about an error: callers branch on this, never on raw codes.
enum class Cond {
  retry_call,      // transient; retry the same step soon
  unavailable,     // peer or link down; reconnect with backoff
  rescan,          // the world changed under us; re-reconcile this path
  needs_operator,  // do not retry until fixed (EACCES, ENOSPC, EROFS, ...)
  corrupt,         // protocol violation or bad stream; drop the connection
  bug,             // internal error
};

Cond classify(const std::error_code& ec) noexcept;

struct [[nodiscard]] Error {
  std::error_code code;
  std::string context;

  static Error from_errno(std::string what, int err = errno) {
    return Error{std::error_code(err, std::generic_category()), std::move(what)};
  }
  static Error make(errc e, std::string what) { return Error{make_error_code(e), std::move(what)}; }

  // "context: code message", e.g. "open a/b: No such file or directory".
  std::string message() const;
  bool is(errc e) const noexcept { return code == make_error_code(e); }
  bool is_errno(int e) const noexcept {
    return code.category() == std::generic_category() && code.value() == e;
  }
  Cond cond() const noexcept { return classify(code); }
  // Prepends an outer context: "outer: inner".
  Error wrap(const std::string& outer) && {
    context = context.empty() ? outer : outer + ": " + context;
    return std::move(*this);
  }
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  Result(Error err) : v_(std::in_place_index<1>, std::move(err)) {}  // NOLINT

  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const& { return std::get<1>(v_); }
  Error&& error() && { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error err) : err_(std::move(err)), failed_(true) {}  // NOLINT

  bool ok() const noexcept { return !failed_; }
  explicit operator bool() const noexcept { return ok(); }
  const Error& error() const& { return err_; }
  Error&& error() && { return std::move(err_); }

 private:
  Error err_{};
  bool failed_ = false;
};

using Status = Result<void>;

}  // namespace syncd

template <>
struct std::is_error_code_enum<syncd::errc> : std::true_type {};

#define SYNCD_CONCAT_INNER(a, b) a##b
#define SYNCD_CONCAT(a, b) SYNCD_CONCAT_INNER(a, b)

// Propagates a failed Result/Status out of the current function.
#define SYNCD_TRY(expr)                                       \
  do {                                                        \
    auto&& syncd_try_r_ = (expr);                             \
    if (!syncd_try_r_.ok()) return std::move(syncd_try_r_).error(); \
  } while (0)

// Declares `var` from a Result's value, or propagates its error.
#define SYNCD_TRY_ASSIGN(var, expr)                                          \
  auto SYNCD_CONCAT(syncd_r_, __LINE__) = (expr);                            \
  if (!SYNCD_CONCAT(syncd_r_, __LINE__).ok())                                \
    return std::move(SYNCD_CONCAT(syncd_r_, __LINE__)).error();              \
  auto var = std::move(SYNCD_CONCAT(syncd_r_, __LINE__)).value()
