#include "lib/runtime/attach.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/stat.h>

#include "lib/base/log.h"
#include "lib/runtime/hello.h"
#include "lib/runtime/target_volume.h"
#include "lib/runtime/tree_overlap.h"
#include "protocol/limits.h"

namespace syncd::runtime {

namespace {

// The session runs on the loop, which cannot wait on a regular file or /dev/null (epoll: EPERM;
// libuv's poll handle would throw): attach run by hand with a file as stdin gets a reason.
Status check_pollable(int fd, const char* name) {
  UniqueFd ep(::epoll_create1(EPOLL_CLOEXEC));
  if (!ep) return Error::from_errno("epoll_create1");
  epoll_event ev{};
  ev.events = EPOLLIN;
  if (::epoll_ctl(ep.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
    return Error::from_errno(std::string(name) + " is not a pipe or socket: syncd attach serves a push session "
                             "that ssh runs on its pipes (syncd -rsyncssh on the pushing node starts it)");
  }
  return {};
}

}  // namespace

Attach::Attach(uvx::Loop& loop, AttachOptions opts) : loop_(loop), opts_(std::move(opts)) {}

Attach::~Attach() {
  guard_.reset();
  receiver_.reset();  // its job thread first
  conn_.reset();
}

bool Attach::idle() const noexcept {
  return (!receiver_ || receiver_->idle()) && (!conn_ || conn_->pending_out() == 0);
}

Status Attach::start(UniqueFd in, UniqueFd out, std::function<void(const Error&)> on_end) {
  SYNCD_TRY(check_pollable(in.get(), "stdin"));
  SYNCD_TRY(check_pollable(out.get(), "stdout"));
  // Like rsync, the target directory itself is created when missing (its parent must exist).
  if (::mkdir(opts_.target.c_str(), 0755) != 0 && errno != EEXIST) {
    return Error::from_errno("create target directory " + opts_.target);
  }
  SYNCD_TRY_ASSIGN(root, fs::Root::open(opts_.target));
  root_ = std::make_unique<fs::Root>(std::move(root));
  root_->set_xattr_names(opts_.xattrs);
  root_->set_specials(opts_.devices, opts_.specials);
  if (::mkdir(opts_.state_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Error::from_errno("create state directory " + opts_.state_dir);
  }
  SYNCD_TRY(check_state_dir_outside(opts_.state_dir, opts_.target, "the target"));
  SYNCD_TRY_ASSIGN(idx, store::Index::open(opts_.state_dir));
  index_ = std::make_unique<store::Index>(std::move(idx));
  SYNCD_TRY(check_target_volume(*root_, *index_, opts_.state_dir));
  for (int fd : {in.get(), out.get()}) {
    const int fl = ::fcntl(fd, F_GETFL);
    if (fl < 0 || ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) return Error::from_errno("set O_NONBLOCK on stdio");
  }
  conn_ = std::make_unique<Connection>(
      loop_, std::move(in), std::move(out),
      [this](protocol::Message m) { receiver_->on_message(std::move(m)); },
      [this](const Error& e) { end(e); });
  on_end_ = std::move(on_end);
  ReceiverOptions ro;
  ro.mirror = opts_.mirror;
  ro.rules = opts_.rules;
  if (opts_.rules.backup.enabled) {
    SYNCD_TRY_ASSIGN(b, apply::Backup::open(*root_, opts_.rules.backup));
    ro.backup = std::make_shared<const apply::Backup>(std::move(b));
  }
  ro.apply.fsync = opts_.fsync;
  ro.apply.sparse = opts_.sparse;
  ro.on_synced = [this] {
    log::get(log::Module::runtime).info("attach {}: initial sync applied", opts_.target);
  };
  receiver_ = std::make_unique<Receiver>(loop_, *root_, *index_, *conn_, ro);
  guard_ = RootGuard::start(loop_, {{root_.get(), "the target"}},
                            [this](const std::string& why) { end(Error::make(errc::unexpected_target, why)); });
  return conn_->start(hello_for(*index_, "attach", "push"));
}

void Attach::end(const Error& e) {
  if (!on_end_) return;
  auto f = std::move(on_end_);
  on_end_ = nullptr;
  f(e);
}

}  // namespace syncd::runtime
