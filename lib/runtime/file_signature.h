// File: lib/runtime/file_signature.h
//
// The block signature of a file as it is on disk, kept as the base of this node's next delta to
// a peer that holds the same bytes (a version it sent us, or one it already had at the initial
// sync). Both the sender and the two-way receiver keep such signatures. And the signature a
// receiver sends back when asked (SIG_REQUEST): rsync's classic round trip.
// Thread affinity: any (job threads in practice; it reads the whole file).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "lib/base/bytes.h"
#include "lib/base/result.h"
#include "lib/fs/fingerprint.h"
#include "lib/fs/root.h"
#include "protocol/messages.h"

namespace syncd::runtime {

// Reads the regular file at `path` and returns its serialized signature (delta::cached_block_len
// blocks). Refused (errc::unexpected_target) when the file is not the one at `fp` with `size`
// bytes, before or after the read: a signature of other bytes would be a wrong delta base.
Result<Bytes> sign_unchanged_file(const fs::Root& root, const std::string& path, const fs::Fingerprint& fp,
                                  uint64_t size);

// What a receiver answers a SIG_REQUEST with: the regular file at `path` read once, its identity
// (codec::content_hash, the FileMeta's `sha256`)
// and its serialized signature with wire-sized blocks (delta::wire_block_len, a fresh random key).
struct PeerSignature {
  protocol::Hash256 sha256{};  // codec::content_hash of the bytes signed
  fs::Fingerprint fp;          // the file's stat, the same before and after the read
  Bytes signature;
};
// nullopt when there is nothing to sign: no regular file at `path` (missing, a symlink, another
// type), an empty or oversized one (delta::delta_supported), or one written to while it was read.
Result<std::optional<PeerSignature>> sign_for_peer(const fs::Root& root, const std::string& path);

}  // namespace syncd::runtime
