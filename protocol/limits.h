// File: protocol/limits.h
//
// Every bound the wire format enforces (protocol/SPEC.md §3). Decoders check each of these before
// allocating anything sized by peer input. Changing one is a protocol change.
#pragma once

#include <cstddef>
#include <cstdint>

namespace syncd::protocol {

// 3: a file over 1 MiB is identified by its chunked hash (lib/codec/content_hash.h), not its
// plain SHA-256; a version 2 peer would reject every patch of one, so it is refused at HELLO.
inline constexpr uint16_t kProtocolVersion = 3;     // the only version this build speaks
inline constexpr uint16_t kMinProtocolVersion = 3;
inline constexpr uint32_t kHelloMagic = 0x444E5953;  // "SYND"

inline constexpr size_t kFrameHeaderBytes = 5;              // u32 len | u8 type
inline constexpr size_t kMaxChunk = 1u << 20;               // DATA/DELTA/SIGNATURE chunk bytes
inline constexpr size_t kMaxFrameBytes = kMaxChunk + 16 * 1024;  // len field maximum

inline constexpr size_t kMaxPath = 4095;
inline constexpr size_t kMaxComponent = 255;
inline constexpr size_t kMaxName = 255;          // user, group, node name, xattr name
inline constexpr size_t kMaxClusterId = 64;
inline constexpr size_t kMaxSymlinkTarget = 4095;
inline constexpr size_t kMaxVersionEntries = 64;
inline constexpr size_t kMaxXattrs = 64;
inline constexpr size_t kMaxXattrValue = 64 * 1024;
inline constexpr size_t kMaxText = 4096;         // ERROR and ACK detail strings
inline constexpr uint64_t kMaxFileSize = 1ull << 44;  // 16 TiB
// Largest signature: header + 2^22 blocks x 20 bytes (lib/delta/signature.h).
inline constexpr uint64_t kMaxSignatureBytes = 57 + (uint64_t{1} << 22) * 20;
inline constexpr uint32_t kMaxNsec = 999'999'999;
inline constexpr uint32_t kModeMask = 07777;

}  // namespace syncd::protocol
