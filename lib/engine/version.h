// File: lib/engine/version.h
//
// Version vectors (TWO-WAY.md §4.4): comparison and merge, pure functions on
// protocol::VersionVector (sorted by node, counters > 0; a missing node counts as 0).
// Thread affinity: pure; any thread.
//
//   switch (compare(mine, theirs)) { case Order::before: apply(theirs); ... }
#pragma once

#include "protocol/messages.h"

namespace syncd::engine {

enum class Order {
  equal,       // same events
  before,      // a happened before b: b dominates
  after,       // a dominates b
  concurrent,  // neither saw the other's latest change
};

Order compare(const protocol::VersionVector& a, const protocol::VersionVector& b) noexcept;
// Entry-wise maximum.
protocol::VersionVector merge(const protocol::VersionVector& a, const protocol::VersionVector& b);

}  // namespace syncd::engine
