#include "lib/store/change.h"

#include <algorithm>
#include <tuple>

#include "lib/base/log.h"

namespace syncd::store {
namespace {


int64_t record_mtime_ns(const protocol::FileMeta& m) { return fs::ns_of(m.mtime_sec, m.mtime_nsec); }

void bump(protocol::VersionVector& v, uint64_t node, uint64_t counter) {
  auto it = std::lower_bound(v.begin(), v.end(), node,
                             [](const protocol::VersionEntry& e, uint64_t n) { return e.node < n; });
  if (it != v.end() && it->node == node) {
    it->counter = counter;
  } else {
    v.insert(it, protocol::VersionEntry{node, counter});
  }
}

}  // namespace

Change classify(const Entry& disk, const std::optional<Record>& rec, bool dir_mtimes) {
  if (!rec || rec->meta.deleted) return Change::both;  // created or resurrected
  const auto& m = rec->meta;
  const bool content = m.type != disk.type || m.sha256 != disk.sha256 ||
                       (disk.type == protocol::FileType::file && m.size != disk.fp.size) ||
                       m.symlink_target != disk.symlink_target;
  const bool mtime_differs =
      (dir_mtimes || disk.type != protocol::FileType::dir) && record_mtime_ns(m) != disk.fp.mtime_ns;
  const bool meta = (disk.type != protocol::FileType::symlink && m.mode != (disk.fp.mode & 07777)) ||
                    m.uid != disk.fp.uid || m.gid != disk.fp.gid || mtime_differs || m.xattrs != disk.xattrs;
  if (content && meta) return Change::both;
  if (content) return Change::content;
  if (meta) return Change::meta;
  return rec->fp == disk.fp ? Change::none : Change::fingerprint;
}

Record author_version(const Entry& disk, const std::optional<Record>& prev, Change kind,
                      const Author& a) {
  Record r;
  if (prev) r.meta = prev->meta;
  auto& m = r.meta;
  m.path = disk.path;
  m.type = disk.type;
  m.deleted = false;
  m.size = disk.type == protocol::FileType::file ? disk.fp.size : 0;
  m.mode = disk.type == protocol::FileType::symlink ? 0777 : (disk.fp.mode & 07777);
  m.uid = disk.fp.uid;
  m.gid = disk.fp.gid;
  m.user = user_name(disk.fp.uid);
  m.group = group_name(disk.fp.gid);
  m.xattrs = disk.xattrs;
  std::tie(m.mtime_sec, m.mtime_nsec) = disk.fp.mtime_parts();
  m.symlink_target = disk.symlink_target;
  m.rdev = disk.rdev;
  m.sha256 = disk.type == protocol::FileType::dir ? protocol::Hash256{} : disk.sha256;
  bump(m.version, a.node, a.counter);
  if (kind == Change::content || kind == Change::both) {
    m.content_dot = {a.node, a.counter};
    m.content_ts = a.hlc;
  }
  if (kind == Change::meta || kind == Change::both) {
    m.meta_dot = {a.node, a.counter};
    m.meta_ts = a.hlc;
  }
  r.fp = disk.fp;
  return r;
}

Record author_move(const Entry& disk, const Record& from, const std::optional<Record>& prev, const Author& a) {
  Entry e = disk;
  e.sha256 = from.meta.sha256;  // a rename does not touch the bytes (the caller checked the inode)
  const bool recorded = prev && !prev->meta.deleted && prev->meta.type == from.meta.type &&
                        prev->meta.sha256 == from.meta.sha256;
  return author_version(e, prev, recorded ? Change::meta : Change::both, a);
}

Record author_delete(const Record& prev, const Author& a) {
  Record r = prev;
  r.meta.deleted = true;
  // A file's or link's tombstone keeps the hash of what it deleted: a node that finds exactly
  // that content again later (a lost index, an older copy) deletes it (TWO-WAY.md §4.11).
  if (r.meta.type == protocol::FileType::dir) r.meta.sha256 = {};
  r.meta.size = 0;
  r.meta.symlink_target.clear();
  // The type stays: it says what was deleted (a directory tombstone matters to TWO-WAY.md §4.7).
  bump(r.meta.version, a.node, a.counter);
  r.meta.content_dot = {a.node, a.counter};
  r.meta.content_ts = a.hlc;
  r.fp = {};
  r.origin = 0;  // authored here, whoever wrote what it deletes
  return r;
}

Author author_now(Index& index) {
  auto c = index.next_counter();
  if (!c.ok()) log::get(log::Module::store).error("version counter: {}", c.error().message());
  return Author{index.node_id(), index.counter(), index.hlc().now()};
}

namespace {

// author_now, dated `ns` (a file time) if that is earlier.
Author author_dated(Index& index, int64_t ns) {
  Author a = author_now(index);
  if (ns <= 0) return a;  // no usable time (before 1970): the scan's
  const auto ms = static_cast<uint64_t>(ns / 1000000);
  const auto below = static_cast<uint64_t>(ns % 1000000) * (uint64_t{1} << Hlc::kLogicalBits) / 1000000;
  a.hlc = std::min(a.hlc, Hlc::pack(ms, below));
  return a;
}

}  // namespace

Author author_found(Index& index, const Entry& disk) { return author_dated(index, disk.fp.mtime_ns); }

Author author_of_found(Index& index, const Entry& disk, const std::optional<Record>& prev, Change kind) {
  if (!index.first_scan()) return author_now(index);
  if (!prev) return author_found(index, disk);
  // A metadata change (chmod, chown, touch) leaves mtime as it was, or sets it to anything:
  // ctime is when the inode changed. (A name a seeding node has no record of keeps mtime, as a
  // copy of the tree has fresh ctimes.)
  Author a = author_dated(index, kind == Change::meta ? disk.fp.ctime_ns : disk.fp.mtime_ns);
  a.hlc = std::max(a.hlc, std::max(prev->meta.content_ts, prev->meta.meta_ts) + 1);
  return a;
}

}  // namespace syncd::store
