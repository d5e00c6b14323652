// File: protocol/messages.h
//
// The message catalogue of protocol/SPEC.md §5 as plain structs, and the Message variant that
// encode()/FrameDecoder carry. Field order in each struct is the wire order.
// Thread affinity: plain values.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "lib/base/bytes.h"

namespace syncd::protocol {

using Hash256 = std::array<uint8_t, 32>;  // SHA-256

enum class MsgType : uint8_t {
  hello = 0x01,
  error = 0x02,
  ping = 0x03,
  pong = 0x04,
  file_version = 0x10,
  data = 0x11,
  delta = 0x12,
  sig_request = 0x13,
  signature = 0x14,
  remove = 0x15,
  rename = 0x16,
  ack = 0x17,
  root_meta = 0x18,
  index_summary = 0x20,
  index_request = 0x21,
  index_update = 0x22,
  index_end = 0x23,
  have = 0x24,
  unreadable = 0x25,
};

// Capability bits announced in HELLO; the session uses the intersection (SPEC.md §2).
enum Capability : uint64_t {
  kCapZstd = 1u << 0,    // the byte stream after HELLO is one zstd stream per direction
  kCapDelta = 1u << 1,   // DELTA bodies
  kCapRename = 1u << 2,  // RENAME messages
  kCapRootMeta = 1u << 3,  // ROOT_META messages (one-way: the root directory's own metadata)
  kCapFrames = 1u << 4,    // the zstd stream may be several frames; incompressible bytes go raw
  kCapHave = 1u << 5,      // HAVE before a full INDEX_REQUEST: files already here go without bytes
  kCapSignature = 1u << 6,  // SIG_REQUEST, answered with SIGNATURE: a delta against the peer's own copy
  kCapUnreadable = 1u << 7,  // UNREADABLE: paths the sender holds but cannot read; a mirror keeps them
};
inline constexpr uint64_t kAllCapabilities = kCapZstd | kCapDelta | kCapRename | kCapRootMeta | kCapFrames |
                                             kCapHave | kCapSignature | kCapUnreadable;

// chardev..socket: rsync's --devices / --specials (lsyncd's archive); replicated only where a sync
// enables them. Their sha256 is that of a descriptor naming the kind and device number.
enum class FileType : uint8_t { file = 1, dir = 2, symlink = 3, chardev = 4, blockdev = 5, fifo = 6, socket = 7 };
constexpr bool is_device(FileType t) noexcept { return t == FileType::chardev || t == FileType::blockdev; }
constexpr bool is_special(FileType t) noexcept { return t >= FileType::chardev && t <= FileType::socket; }
enum class BodyKind : uint8_t { none = 0, whole = 1, delta = 2 };
enum class AckStatus : uint8_t {
  applied = 0,        // version is now on disk
  ignored = 1,        // dominated or equal: nothing to do
  base_mismatch = 2,  // delta base is not what we hold: send SIG_REQUEST, then retry
  verify_failed = 3,  // SHA-256 mismatch after reconstruction: resend whole
  conflict = 4,       // concurrent version: kept as a conflict copy
  failed = 5,         // local error (ENOSPC, EACCES, ...): detail says which; retry later
};

struct VersionEntry {
  uint64_t node = 0;
  uint64_t counter = 0;
  bool operator==(const VersionEntry&) const = default;
};
using VersionVector = std::vector<VersionEntry>;  // strictly ascending by node, counters > 0

struct Dot {
  uint64_t node = 0;
  uint64_t counter = 0;
  bool operator==(const Dot&) const = default;
};

struct Xattr {
  std::string name;
  Bytes value;
  bool operator==(const Xattr&) const = default;
};

// One path's record (TWO-WAY.md §4.2): what a node announces about a version.
struct FileMeta {
  std::string path;
  FileType type = FileType::file;
  bool deleted = false;
  uint64_t size = 0;
  uint32_t mode = 0;  // permission bits incl. setuid/setgid/sticky (& 07777)
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::string user;   // owner name for name-based mapping; may be empty
  std::string group;
  int64_t mtime_sec = 0;
  uint32_t mtime_nsec = 0;
  std::string symlink_target;  // only for symlinks
  uint64_t rdev = 0;           // only for devices (on the wire only for them)
  VersionVector version;
  Dot content_dot;
  uint64_t content_ts = 0;  // HLC
  Dot meta_dot;
  uint64_t meta_ts = 0;
  Hash256 sha256{};  // content hash; zero for directories and tombstones
  std::vector<Xattr> xattrs;
  bool operator==(const FileMeta&) const = default;
};

struct Hello {
  uint32_t magic = 0;
  uint16_t version_min = 0;
  uint16_t version_max = 0;
  uint64_t node_id = 0;
  std::string node_name;
  std::string cluster_id;
  uint64_t index_id = 0;
  uint64_t capabilities = 0;
  bool operator==(const Hello&) const = default;
};
struct ErrorMsg {
  uint32_t code = 0;
  std::string text;
  bool operator==(const ErrorMsg&) const = default;
};
struct Ping {
  uint64_t nonce = 0;
  uint64_t sent_ns = 0;
  bool operator==(const Ping&) const = default;
};
struct Pong {
  uint64_t nonce = 0;
  uint64_t sent_ns = 0;
  bool operator==(const Pong&) const = default;
};
struct FileVersion {
  uint32_t xfer_id = 0;
  uint64_t seq = 0;
  FileMeta meta;
  BodyKind body = BodyKind::none;
  uint64_t body_len = 0;
  // rsync's --hard-links: the content is that of `link_to` (the same inode at the source, sent
  // before); the receiver makes a hard link to it. Only with no body, only for files.
  std::string link_to{};
  bool operator==(const FileVersion&) const = default;
};
struct Data {
  uint32_t xfer_id = 0;
  uint64_t offset = 0;
  Bytes chunk;
  bool operator==(const Data&) const = default;
};
struct Delta {
  uint32_t xfer_id = 0;
  Hash256 base_hash{};
  uint64_t offset = 0;
  Bytes chunk;
  bool operator==(const Delta&) const = default;
};
struct SigRequest {
  uint32_t req_id = 0;
  std::string path;
  Hash256 base_hash{};  // the version the requester believes the peer holds; zero: any
  bool operator==(const SigRequest&) const = default;
};
struct SignatureMsg {
  uint32_t req_id = 0;
  std::string path;
  Hash256 file_hash{};
  uint64_t total_len = 0;
  uint64_t offset = 0;
  Bytes chunk;
  bool operator==(const SignatureMsg&) const = default;
};
struct Remove {
  uint64_t seq = 0;
  FileMeta meta;  // deleted == true
  bool operator==(const Remove&) const = default;
};
struct Rename {
  uint64_t seq = 0;
  FileMeta from;  // tombstone of the old path
  FileMeta to;    // record at the new path (same content hash)
  bool operator==(const Rename&) const = default;
};
// xfer_id of the ACK that answers INDEX_END (SPEC.md §5.2).
inline constexpr uint32_t kIndexEndAck = 0xFFFFFFFF;

struct Ack {
  uint32_t xfer_id = 0;
  AckStatus status = AckStatus::applied;
  uint64_t seq = 0;
  std::string detail;
  bool operator==(const Ack&) const = default;
};
// One-way syncs: the source root directory's own owner, group, mode and mtime, which rsync -a
// gives the target root. Not a record (the root has no path): no sequence number, no ACK; sent
// after the batch that changed it, and again on each new session.
struct RootMeta {
  uint32_t mode = 0;  // & 07777
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::string user;
  std::string group;
  int64_t mtime_sec = 0;
  uint32_t mtime_nsec = 0;
  bool operator==(const RootMeta&) const = default;
};
struct IndexSummary {
  uint64_t index_id = 0;
  uint64_t max_seq = 0;
  uint64_t acked_seq = 0;  // highest of the receiver's sequence numbers we hold
  uint64_t record_count = 0;
  bool operator==(const IndexSummary&) const = default;
};
struct IndexRequest {
  uint64_t index_id = 0;
  uint64_t since_seq = 0;
  bool operator==(const IndexRequest&) const = default;
};
struct IndexUpdate {
  uint64_t seq = 0;
  FileMeta meta;
  bool operator==(const IndexUpdate&) const = default;
};
struct IndexEnd {
  uint64_t index_id = 0;
  uint64_t max_seq = 0;
  bool operator==(const IndexEnd&) const = default;
};

// A regular file the receiver holds, sent before it asks for everything (INDEX_REQUEST
// since_seq=0): the sender announces a version of the same size and mtime without its bytes, as
// rsync's quick check skips it; the receiver confirms by content hash (SPEC.md §5.2).
struct Have {
  std::string path;
  uint64_t size = 0;
  int64_t mtime_sec = 0;
  uint32_t mtime_nsec = 0;
  bool operator==(const Have&) const = default;
};

// A path the sender holds but could not read (a file whose read failed, a directory it could not
// list: EIO, EACCES, ...), sent before INDEX_END with `unreadable`: what the receiver of a mirror
// holds at or below it is not an extra, and its initial prune keeps it (rsync skips deletion
// after an I/O error the same way). An empty path is the whole tree. SPEC.md §5.2.
struct Unreadable {
  std::string path;
  bool operator==(const Unreadable&) const = default;
};

using Message = std::variant<Hello, ErrorMsg, Ping, Pong, FileVersion, Data, Delta, SigRequest,
                             SignatureMsg, Remove, Rename, Ack, IndexSummary, IndexRequest,
                             IndexUpdate, IndexEnd, RootMeta, Have, Unreadable>;

MsgType type_of(const Message& m) noexcept;
bool is_known_type(uint8_t t) noexcept;
const char* type_name(MsgType t) noexcept;

}  // namespace syncd::protocol
