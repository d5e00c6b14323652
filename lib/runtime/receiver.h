// File: lib/runtime/receiver.h
//
// Receiver: the target side of a sync. It asks the peer for every record newer than the last one
// it applied (INDEX_REQUEST, resumes after restarts), reassembles bodies, and applies each version
// through lib/apply on its JobQueue, in arrival order: the index is updated in the same job right
// after the rename, so this node's own watcher (two-way, later) sees disk == index and nothing
// echoes. Every FILE_VERSION, REMOVE and RENAME is answered with an ACK.
// In mirror mode (lsyncd's -direct / default.rsync with delete), the target is made identical to
// the source: local entries the source does not have are removed after the initial full sync,
// and local edits are overwritten.
// Thread affinity: loop thread (public methods); jobs run on the JobQueue thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <vector>
#include <memory>
#include <string>

#include "lib/apply/apply.h"
#include "lib/runtime/body_pipe.h"
#include "lib/runtime/connection.h"
#include "lib/runtime/job_queue.h"
#include "lib/store/index.h"

namespace syncd::runtime {

struct ReceiverOptions {
  bool mirror = true;
  apply::Options apply;
  std::function<void()> on_synced;  // once, on the loop thread, when the initial sync is applied
};

class Receiver {
 public:
  Receiver(uvx::Loop& loop, const fs::Root& root, store::Index& index, Connection& conn,
           ReceiverOptions opts = {});
  ~Receiver();
  Receiver(const Receiver&) = delete;
  Receiver& operator=(const Receiver&) = delete;
  void on_message(protocol::Message m);
  bool idle() const noexcept { return jobs_.in_flight() == 0 && transfers_.empty(); }
  uint64_t applied() const noexcept { return applied_; }
  // True once the first INDEX_END (the initial sync) has been applied.
  bool synced() const noexcept { return synced_; }

 private:
  struct Transfer {
    protocol::FileVersion fv;
    Bytes body;
    uint64_t received = 0;
    protocol::Hash256 base{};
    std::shared_ptr<BodyPipe> pipe;  // large bodies stream to the job instead of into `body`
  };
  void apply_version(protocol::FileVersion fv, Bytes body, protocol::Hash256 base);
  // Queues one apply; everything queued while the job thread is busy is applied by one job in
  // one index transaction (group commit), in arrival order.
  // `path`: what the job changes (a failed apply holds the resume point back until it succeeds).
  void post(std::string path, std::function<protocol::Ack()> job);
  // Job thread.
  protocol::Ack do_version(const protocol::FileVersion& fv, const Bytes& body,
                           const protocol::Hash256& base, BodyPipe* pipe = nullptr);
  protocol::Ack do_remove(const protocol::Remove& r);
  protocol::Ack do_rename(const protocol::Rename& r);
  Status prune_extras();
  Result<std::optional<protocol::Hash256>> local_hash(const std::string& path);
  Status record(const protocol::FileMeta& m, uint64_t seq, const fs::Fingerprint& fp);
  Status advance(uint64_t seq);

  uvx::Loop& loop_;
  const fs::Root& root_;
  store::Index& index_;
  Connection& conn_;
  ReceiverOptions opts_;
  apply::Applier applier_;
  // A streamed body's backlog fell: read again. Declared before jobs_ so that it outlives the
  // worker thread, which may signal it until it is joined.
  std::unique_ptr<uvx::Async> resume_;
  JobQueue jobs_;
  std::map<uint32_t, Transfer> transfers_;
  bool paused_ = false;
  std::atomic<uint64_t> peer_index_{0};  // set from the peer's HELLO (loop), read by jobs
  bool full_sync_ = false;
  bool synced_ = false;
  uint64_t applied_ = 0;
  bool in_order_ = false;  // job thread: past INDEX_END, versions arrive in sequence order
  std::mutex batch_mu_;
  std::vector<std::pair<std::string, std::function<protocol::Ack()>>> batch_;  // guarded by batch_mu_
  // Job thread: versions that could not be applied (disk full, permissions...), seq -> path. The
  // resume point never passes the oldest of them, so a reconnect resends it; a later successful
  // apply of the same path (the sender retries) clears it.
  std::map<uint64_t, std::string> failed_;
  void note_result(const std::string& path, const protocol::Ack& a);
  bool batch_posted_ = false;                         // guarded by batch_mu_
  std::optional<store::Index::Txn> txn_;              // job thread: the batch's transaction
  // Job thread: whole-file writes of the current batch, staged and committed together (one
  // syncfs for all of them) before anything else in the batch runs, and at its end.
  struct StagedWrite {
    apply::Applier::Staged st;
    protocol::FileMeta meta;
    uint64_t seq = 0;
    size_t ack = 0;
  };
  std::vector<StagedWrite> staged_;
  std::vector<protocol::Ack>* batch_acks_ = nullptr;
  void flush_staged();
};

}  // namespace syncd::runtime
