// File: lib/base/scope_guard.h
//
// ScopeGuard runs a noexcept callable when it leaves scope unless cancel() was called.
// Used for "remove the temp file unless it was committed".
//
//   auto guard = ScopeGuard([&]() noexcept { ::unlinkat(dir, tmp, 0); });
//   ... on success: guard.cancel();
#pragma once

#include <type_traits>
#include <utility>

namespace syncd {

template <class F>
class [[nodiscard]] ScopeGuard {
  static_assert(std::is_nothrow_invocable_v<F>, "ScopeGuard's callable must be noexcept");

 public:
  explicit ScopeGuard(F f) : f_(std::move(f)) {}
  ScopeGuard(const ScopeGuard&) = delete;
  ScopeGuard& operator=(const ScopeGuard&) = delete;
  ~ScopeGuard() {
    if (armed_) f_();
  }
  void cancel() noexcept { armed_ = false; }

 private:
  F f_;
  bool armed_ = true;
};

}  // namespace syncd
