// File: lib/runtime/push.h
//
// Push: `syncd -rsyncssh SRC HOST DIR` — keeps DIR on HOST a mirror of the local SRC over one
// long-lived SSH session to `syncd attach DIR` on HOST (DESIGN.md §9). With -bidirectional it is
// one node of a two-way mesh: a session to every other node (its sender announces this node's
// index), and the sessions other nodes open to this one join it (serve_peer). The session is the
// native libssh2 client or an OpenSSH client process (lib/transport). When a session ends — ssh exits, the network goes, the peer
// dies — the link reconnects with capped exponential backoff and jitter; the peer asks for
// everything after its durable watermark, so changes made meanwhile are sent then, none lost.
// Thread affinity: loop thread.
//
//   Push p(loop, {.source = "/opt/x", .peers = {{"root@node2", "/opt/x", {}}}, ...});
//   SYNCD_TRY(p.start());  loop.run();
#pragma once

#include <atomic>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "lib/fs/root.h"
#include "lib/runtime/connection.h"
#include "lib/runtime/dial_gate.h"
#include "lib/runtime/job_queue.h"
#include "lib/runtime/receiver.h"
#include "lib/runtime/resources.h"
#include "lib/runtime/root_guard.h"
#include "lib/runtime/sender.h"
#include "lib/store/index.h"
#include "lib/transport/ssh_command.h"
#include "lib/transport/ssh_process.h"
#include "lib/transport/ssh_session.h"

namespace syncd::runtime {

// One peer of a push: the host, the directory there, and extra `attach` arguments for it.
struct PeerSpec {
  std::string host;  // [user@]host
  std::string target;
  std::vector<std::string> remote_args;
};

struct PushOptions {
  std::string source;
  std::vector<PeerSpec> peers;  // one for lsyncd's -rsyncssh; a two-way mesh lists every other node
  std::string state_dir;  // the local index
  std::vector<std::string> excludes;
  std::vector<watch::FilterRule> filters;  // lsyncd filter{}: tried before the excludes
  std::string per_dir_excludes;  // rsync.cvs_exclude: ".cvsignore" in each directory (watch/exclude.h)
  std::string rsh = "ssh";               // ssh command line (lsyncd's rsync.rsh)
  std::string remote_syncd = "syncd";    // program on the host
  std::vector<std::string> remote_args;  // extra arguments for `attach` (every peer)
  SenderOptions sender;
  fs::XattrNames xattrs;  // replicated extended attributes (rsync.xattrs / rsync.acls)
  uint64_t bwlimit_bytes_per_s = 0;  // rsync.bwlimit: outgoing protocol bytes per second per peer (0: none)
  // rsync.timeout: a session that waits for the peer (versions unacknowledged) and neither sends
  // nor receives a byte for this long is dropped and redialled (0: never).
  uint64_t io_timeout_s = 0;
  // A session whose peer has not said HELLO this long after the dial is dropped and dialed again
  // (a remote syncd that hangs, a daemon there that is stopped); rsync.timeout, when set, instead.
  uint64_t hello_wait_ms = 60000;
  bool one_file_system = false;  // rsync.one_file_system: mount points below the source are not entered
  // rsync.copy_links / copy_unsafe_links / copy_dirlinks: links of the source read as what they
  // point to (one-way only: a tree this node also writes never follows a link).
  fs::Root::FollowLinks follow_links;
  bool devices = false;          // rsync.devices / rsync.specials: device files / FIFOs and sockets too
  bool specials = false;
  // "auto" (libssh2 unless the key or the rsh line needs the OpenSSH client), "libssh2", "openssh".
  std::string transport = "auto";
  // Two-way (TWO-WAY.md): peer sessions that join this daemon (`syncd attach` on this host, run
  // by a peer's push) are reconciled into this tree, and what they bring is never echoed back.
  bool two_way = false;
  uint32_t max_delete_share = 50;  // the mass-delete brake (SenderOptions)
  apply::Options apply;  // for joined sessions
  // Two-way: run for every conflict copy this node makes, as
  //   sh -c 'HOOK "$@"' syncd-conflict-hook /root/path /root/path.sync-conflict-... /root
  // (e.g. to merge two CRLs). Empty: none.
  std::string conflict_hook;
  // Tombstone collection (TWO-WAY.md §4.11): a delete's record is dropped once every configured
  // peer applied it and it is older than the min age, or once older than the max age.
  uint64_t tombstone_min_age_s = 7 * 86400;
  uint64_t tombstone_max_age_s = 180 * 86400;
  // Sessions being set up to one sshd at a time (shared by a daemon's pushes; made per push when
  // not given).
  std::shared_ptr<DialGate> dial_gate;
  uint64_t backoff_min_ms = 250;
  uint64_t backoff_max_ms = 30000;
  // The source is no longer the directory the node opened (RootGuard): the owner stops the node
  // (not from inside this call) and starts it again. Called once.
  std::function<void(const std::string&)> on_root_replaced;
};

class Push {
 public:
  Push(uvx::Loop& loop, PushOptions opts);
  ~Push();
  Push(const Push&) = delete;
  Push& operator=(const Push&) = delete;

  Status start();
  // Every peer connected and caught up, nothing queued, in flight or unacknowledged.
  bool idle() const noexcept;
  // Nothing left that could still complete before exiting: local work done, and (for each
  // connected peer) everything sent acknowledged. A shutdown waits for this, not for a peer that
  // is down.
  bool drained() const noexcept;
  // For `syncd status`: peers, connection state, queue, last error, sync latency percentiles.
  std::string status(bool json) const;
  LsyncdView lsyncd_view() const;
  // Serves a peer session handed over by `syncd attach` (ControlServer::Handlers::attach): a
  // two-way receiver on (in, out) sharing this daemon's index. Returns how to end it early.
  std::function<void()> serve_peer(UniqueFd in, UniqueFd out, const std::string& args,
                                   std::function<void(const std::string&)> done);

 private:
  // One outgoing session to one peer, reconnected with backoff; its sender announces this
  // node's records to that peer. The first link's sender also watches the tree.
  struct Link {
    PeerSpec spec;
    transport::SshParams params;  // for the native transport
    bool native = false;
    std::unique_ptr<Sender> sender;
    std::unique_ptr<transport::SshProcess> ssh;
    std::unique_ptr<transport::SshSession> session_ssh;
    std::unique_ptr<Connection> conn;
    std::unique_ptr<uvx::Timer> retry;
    // Its place among the sessions being set up to that sshd, from the dial to the peer's HELLO
    // (after `retry`: it goes first, as releasing it may start another link's timer).
    std::unique_ptr<DialGate::Ticket> dial;
    // A dial that neither fails nor brings the peer's HELLO gives its place up after a while
    // (kDialHoldMs), so one stuck session cannot hold back the others.
    std::unique_ptr<uvx::Timer> dial_hold;
    // From the dial to the peer's HELLO: the session ends if it takes longer (hello_wait()).
    std::unique_ptr<uvx::Timer> hello_wait;
    uint64_t session = 0;   // id of the current session (callbacks of older ones are ignored)
    uint64_t sessions = 0;  // sessions started
    uint64_t lost = 0;      // the last session whose end was handled
    bool up = false;
    uint64_t backoff_ms = 0;
    std::string last_error;
    uint64_t peer_node = 0;  // from the peer's HELLO (also kept in the index for restarts)
    uint64_t refused_node = 0;  // its peer announced this id, which another link's peer has
    // Two-way: this end of the session also receives (one SSH session per pair), and a link
    // whose peer has the lower node id waits for that peer to dial instead (passive).
    std::unique_ptr<Receiver> rx;
    bool passive = false;
    // rsync.timeout: the session's byte counters when they last moved, and when.
    uint64_t io_seen = 0;
    uint64_t io_seen_ms = 0;
  };
  // rsync.timeout: drops sessions that waited for their peer too long without a byte moving.
  void check_io_timeouts();
  uint64_t hello_wait_ms() const noexcept;
  // The log line of SenderOptions::on_quiet, naming `peer`.
  void said_quiet(const std::string& peer, uint64_t quiet_ms, size_t awaiting) const;
  std::unique_ptr<uvx::Timer> io_check_;
  std::unique_ptr<RootGuard> guard_;
  // Protocol bytes written towards the link's peer on the session its records travel on.
  uint64_t link_bytes_out(const Link& l) const noexcept;
  bool link_idle(const Link& l) const noexcept;
  // Receiver options for any two-way session of this node.
  ReceiverOptions receiver_options();

  Status choose_transport(Link& l);
  void connect(Link& l);
  void lost(Link& l, uint64_t session, const std::string& why);
  // The link's session is no longer being set up: its place at the sshd goes to the next.
  static void dial_done(Link& l);
  // After any part of the node wrote records: every link's sender announces them.
  void announce_all();
  void startup_finished();
  bool startup_logged_ = false;
  // Runs tombstone collection on the node's job thread (store lock held); reschedules itself.
  void collect_tombstones();
  std::unique_ptr<uvx::Timer> gc_;
  bool gc_running_ = false;
  std::unique_ptr<JobQueue> jobs_;  // node-level index work (tombstones, link ids)
  std::atomic<uint64_t> tombstones_{0};  // as of the last collection
  uint64_t gc_runs_ = 0;

  uvx::Loop& loop_;
  PushOptions opts_;
  transport::SshCommand rsh_;
  std::unique_ptr<fs::Root> root_;
  std::unique_ptr<store::Index> index_;
  mutable std::unique_ptr<ResourceGauge> gauge_;  // status(): made at the first query
  std::vector<std::unique_ptr<Link>> links_;
  std::mt19937_64 rng_;
  // Peer sessions joined through the control socket.
  struct Joined {
    uint64_t id = 0;
    std::unique_ptr<Connection> conn;
    std::unique_ptr<Receiver> rx;
    std::unique_ptr<Sender> tx;  // two-way peers: this node's records go back on the same session
    bool two_way = false;
    uint64_t peer_node = 0;
    std::function<void(const std::string&)> done;
    bool ended = false;
    bool idle() const noexcept;
  };
  std::vector<std::unique_ptr<Joined>> joined_;
  // The live two-way joined session with peer `node`, if any.
  const Joined* joined_with(uint64_t node) const noexcept;
  // Why a link's peer announcing `node` is refused: it has this node's id, or another configured
  // peer's (a copy of a node); empty when it is not.
  std::string refused_peer(const Link& l, uint64_t node) const;
  // A link's peer was refused for announcing another configured peer's node id.
  bool claimed_twice(uint64_t node) const noexcept;
  void remember_peer_node(Link& l, uint64_t node);
  // Peer `node` just dialed this node, so it is up: a link that dials it and waits out a
  // reconnect backoff dials now (the peer waits for that session; the backoff may be 30 s).
  void peer_is_up(uint64_t node);
  uint64_t next_joined_ = 0;
  uint64_t conflicts_ended_ = 0;  // conflicts counted by sessions that are gone
  std::unique_ptr<uvx::Timer> reap_;
  void end_joined(uint64_t id, const std::string& end_line);
  // One joined session for `syncd status` (a JSON object, or one line of text).
  std::string joined_state(const Joined& j, bool json) const;
  void run_conflict_hook(const std::string& path, const std::string& copy);
  std::vector<std::unique_ptr<uvx::Process>> hooks_;
  uint64_t conflicts() const noexcept;
};

}  // namespace syncd::runtime
