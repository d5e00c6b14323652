// File: lib/runtime/attach.h
//
// Attach: the peer end of a push session, `syncd attach DIR` as run by sshd (DESIGN.md §9). With
// no daemon owning DIR on this host it serves the session itself as a receive-only engine over
// stdin/stdout: its own index for DIR (state in /var/lib/syncd/attach-<hash>/ unless given),
// confined, fsynced apply, mirror semantics (what the pusher does not have is removed after the
// initial sync, as lsyncd's default.rsyncssh with delete = true). Ends when the session ends.
// Thread affinity: loop thread.
//
//   Attach a(loop, {.target = "/opt/x", .state_dir = ...});
//   SYNCD_TRY(a.start(UniqueFd(0), UniqueFd(1)));  loop.run();  a.failure();
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "lib/fs/root.h"
#include "lib/runtime/connection.h"
#include "lib/runtime/receiver.h"
#include "lib/runtime/root_guard.h"
#include "lib/store/index.h"

namespace syncd::runtime {

struct AttachOptions {
  std::string target;
  std::string state_dir;
  bool fsync = true;
  bool sparse = false;  // the pusher's rsync.sparse
  bool devices = false;  // the pusher's rsync.devices / rsync.specials
  bool specials = false;
  bool mirror = true;
  MirrorRules rules;
  fs::XattrNames xattrs;  // replicated extended attributes (the pusher's rsync.xattrs / acls)
};

class Attach {
 public:
  Attach(uvx::Loop& loop, AttachOptions opts);
  ~Attach();
  Attach(const Attach&) = delete;
  Attach& operator=(const Attach&) = delete;

  // Serves one session on (in, out), which are made non-blocking. on_end runs once when it ends:
  // the pusher closed it, the link failed, or the target was replaced under it (RootGuard; the
  // pusher dials again and its next session opens the directory now at the path).
  Status start(UniqueFd in, UniqueFd out, std::function<void(const Error&)> on_end);
  // Nothing received is waiting to be applied and nothing waits to be sent back.
  bool idle() const noexcept;

 private:
  uvx::Loop& loop_;
  AttachOptions opts_;
  std::unique_ptr<fs::Root> root_;
  std::unique_ptr<store::Index> index_;
  std::unique_ptr<Connection> conn_;
  std::unique_ptr<Receiver> receiver_;
  std::unique_ptr<RootGuard> guard_;
  std::function<void(const Error&)> on_end_;
  void end(const Error& e);
};

}  // namespace syncd::runtime
