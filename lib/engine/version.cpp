#include "lib/engine/version.h"

namespace syncd::engine {

Order compare(const protocol::VersionVector& a, const protocol::VersionVector& b) noexcept {
  bool a_more = false;
  bool b_more = false;
  size_t i = 0, j = 0;
  while (i < a.size() || j < b.size()) {
    if (j == b.size() || (i < a.size() && a[i].node < b[j].node)) {
      a_more = true;  // b lacks this node: counter 0 < a's
      ++i;
    } else if (i == a.size() || b[j].node < a[i].node) {
      b_more = true;
      ++j;
    } else {
      if (a[i].counter > b[j].counter) a_more = true;
      if (b[j].counter > a[i].counter) b_more = true;
      ++i;
      ++j;
    }
  }
  if (a_more && b_more) return Order::concurrent;
  if (a_more) return Order::after;
  if (b_more) return Order::before;
  return Order::equal;
}

protocol::VersionVector merge(const protocol::VersionVector& a, const protocol::VersionVector& b) {
  protocol::VersionVector out;
  out.reserve(a.size() + b.size());
  size_t i = 0, j = 0;
  while (i < a.size() || j < b.size()) {
    if (j == b.size() || (i < a.size() && a[i].node < b[j].node)) {
      out.push_back(a[i++]);
    } else if (i == a.size() || b[j].node < a[i].node) {
      out.push_back(b[j++]);
    } else {
      out.push_back({a[i].node, std::max(a[i].counter, b[j].counter)});
      ++i;
      ++j;
    }
  }
  return out;
}

}  // namespace syncd::engine
