// File: lib/runtime/hello.h
//
// The HELLO a node sends (protocol/SPEC.md §2): our protocol range and capabilities, and the
// identity of the index behind this end of the connection.
// Thread affinity: pure.
#pragma once

#include <string>

#include "lib/store/index.h"
#include "protocol/limits.h"
#include "protocol/messages.h"

namespace syncd::runtime {

inline protocol::Hello hello_for(const store::Index& idx, std::string node_name, std::string cluster) {
  protocol::Hello h;
  h.magic = protocol::kHelloMagic;
  h.version_min = protocol::kMinProtocolVersion;
  h.version_max = protocol::kProtocolVersion;
  h.node_id = idx.node_id();
  h.node_name = std::move(node_name);
  h.cluster_id = std::move(cluster);
  h.index_id = idx.index_id();
  h.capabilities = protocol::kAllCapabilities;
  return h;
}

}  // namespace syncd::runtime
