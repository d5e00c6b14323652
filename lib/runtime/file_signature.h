// File: lib/runtime/file_signature.h
//
// The block signature of a file as it is on disk, kept as the base of this node's next delta to
// a peer that holds the same bytes (a version it sent us, or one it already had at the initial
// sync). Both the sender and the two-way receiver keep such signatures.
// Thread affinity: any (job threads in practice; it reads the whole file).
#pragma once

#include <cstdint>
#include <string>

#include "lib/base/bytes.h"
#include "lib/base/result.h"
#include "lib/fs/fingerprint.h"
#include "lib/fs/root.h"

namespace syncd::runtime {

// Reads the regular file at `path` and returns its serialized signature (delta::cached_block_len
// blocks). Refused (errc::unexpected_target) when the file is not the one at `fp` with `size`
// bytes, before or after the read: a signature of other bytes would be a wrong delta base.
Result<Bytes> sign_unchanged_file(const fs::Root& root, const std::string& path, const fs::Fingerprint& fp,
                                  uint64_t size);

}  // namespace syncd::runtime
