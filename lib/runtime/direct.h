// File: lib/runtime/direct.h
//
// DirectMirror: `syncd -direct SRC DST` — a one-way mirror of a local directory into another,
// through exactly the parts SSH peers use: two nodes (each with its own index and job thread),
// the wire protocol with zstd over a socketpair, the sender's versions and the receiver's
// confined, fsynced apply. Initial full sync, then continuous mirroring.
// Thread affinity: loop thread.
//
//   DirectMirror m(loop, {"/src", "/dst", "/var/lib/syncd/direct-x"});
//   SYNCD_TRY(m.start());  loop.run();
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "lib/fs/root.h"
#include "lib/runtime/connection.h"
#include "lib/runtime/receiver.h"
#include "lib/runtime/resources.h"
#include "lib/runtime/root_guard.h"
#include "lib/runtime/sender.h"
#include "lib/store/index.h"

namespace syncd::runtime {

struct DirectOptions {
  std::string source;
  std::string target;
  std::string state_dir;  // holds src/ and dst/ index directories
  std::vector<std::string> excludes;
  std::vector<watch::FilterRule> filters;  // lsyncd filter{}: tried before the excludes
  std::string per_dir_excludes;  // rsync.cvs_exclude: ".cvsignore" in each directory (watch/exclude.h)
  bool fsync = true;
  MirrorRules rules;
  fs::XattrNames xattrs;  // replicated extended attributes (rsync.xattrs / rsync.acls)
  bool one_file_system = false;      // rsync.one_file_system: mount points below the source are not entered
  fs::Root::FollowLinks follow_links;  // rsync.copy_links / copy_unsafe_links / copy_dirlinks (source)
  uint64_t bwlimit_bytes_per_s = 0;  // rsync.bwlimit (0: none)
  bool sparse = false;               // rsync.sparse: runs of zeros in files become holes in the target
  bool devices = false;              // rsync.devices / rsync.specials: device files / FIFOs and sockets too
  bool specials = false;
  SenderOptions sender;
  // The in-process link failed (the sender could not read its index, or a protocol error): the
  // mirror cannot go on. Called once, on the loop thread, with the reason; the daemon exits.
  std::function<void(const std::string&)> on_failed;
  // The source or the target is no longer the directory the mirror opened (RootGuard): the
  // owner stops the mirror (not from inside this call) and starts it again. Called once.
  std::function<void(const std::string&)> on_root_replaced;
};

// Two mirrors of one daemon whose targets are one directory, or one inside the other, where the
// outer one deletes what its source lacks: each deletes the other's files at every start (lsyncd
// runs them so). An error naming both; ok when apart, when the outer one does not delete there
// (delete = false, or its excludes keep the other's directory out) or a target is not there yet.
Status check_targets_apart(const std::string& name_a, const DirectOptions& a, const std::string& name_b,
                           const DirectOptions& b);

class DirectMirror {
 public:
  DirectMirror(uvx::Loop& loop, DirectOptions opts);
  ~DirectMirror();
  Status start();
  // Nothing queued or in flight on either side (after the initial sync).
  bool idle() const noexcept;
  // Source paths that could not be read, waiting to be read again.
  size_t unreadable() const noexcept;
  // Non-empty while the mass-delete brake holds the source's deletes back: why.
  std::string brake() const;
  LsyncdView lsyncd_view() const;
  // The process's memory, the source's tracked files and watches (for `syncd status`).
  Resources resources();
  // `syncd status` of this mirror: idle, the brake, what waits (queued, awaiting the target's
  // ACK, failed applies waiting for their retry, unreadable source paths), latency, resources.
  std::string status(bool json);
  bool synced() const noexcept { return receiver_ && receiver_->synced(); }
  // Why the link failed (empty while it works).
  std::string failure() const { return failure_; }

 private:
  uvx::Loop& loop_;
  DirectOptions opts_;
  std::unique_ptr<fs::Root> src_root_, dst_root_;
  std::unique_ptr<store::Index> src_index_, dst_index_;
  std::unique_ptr<Connection> src_conn_, dst_conn_;
  std::unique_ptr<Sender> sender_;
  std::unique_ptr<Receiver> receiver_;
  std::string failure_;
  std::unique_ptr<ResourceGauge> gauge_;
  std::unique_ptr<RootGuard> guard_;
};

}  // namespace syncd::runtime
