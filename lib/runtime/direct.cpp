#include "lib/runtime/direct.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/base/log.h"
#include "lib/base/scope_guard.h"
#include "lib/runtime/control.h"
#include "lib/runtime/hello.h"
#include "lib/runtime/status_parts.h"
#include "lib/runtime/target_volume.h"
#include "lib/runtime/tree_overlap.h"
#include "protocol/limits.h"

namespace syncd::runtime {

namespace {

// A mirror into its own tree copies itself without end (what it writes into the target is a
// change in the source), unless the exclude rules keep the target out of the source; a target
// that holds the source deletes the source as one of its extras (lsyncd runs both, and both end
// badly: measured, 1763 nested copies in 5 s; a source's files removed at the first start).
Status check_overlap(const DirectOptions& o, const watch::Excludes& excludes) {
  SYNCD_TRY_ASSIGN(src, real_path(o.source));
  SYNCD_TRY_ASSIGN(dst, real_path(o.target));
  if (src == dst) return Error::make(errc::unsupported, "the target " + dst + " is the source");
  if (auto rel = path_below(src, dst)) {
    if (excluded_on_the_way(excludes, *rel)) return {};
    return Error::make(errc::unsupported, "the target " + dst + " is inside the source " + src +
                                              ": the mirror would copy itself into itself without end (exclude \"" +
                                              *rel + "\" in the sync, or choose a target outside the source)");
  }
  if (path_below(dst, src) && (o.rules.delete_startup || o.rules.delete_running)) {
    return Error::make(errc::unsupported, "the source " + src + " is inside the target " + dst +
                                              ": the mirror would delete the source as an extra of the target "
                                              "(choose another target, or set delete = false)");
  }
  return {};
}

}  // namespace

Status check_targets_apart(const std::string& name_a, const DirectOptions& a, const std::string& name_b,
                           const DirectOptions& b) {
  auto ta = real_path(a.target), tb = real_path(b.target);
  if (!ta.ok() || !tb.ok()) return {};  // a target that is not there yet fails its own start
  const auto ea = source_excludes(a.excludes, a.filters, a.source, a.per_dir_excludes);
  const auto eb = source_excludes(b.excludes, b.filters, b.source, b.per_dir_excludes);
  const auto deletes = [](const DirectOptions& o) { return o.rules.delete_startup || o.rules.delete_running; };
  return check_writers_apart({name_a, *ta, "", deletes(a), a.rules.delete_excluded, &ea},
                             {name_b, *tb, "", deletes(b), b.rules.delete_excluded, &eb});
}

DirectMirror::DirectMirror(uvx::Loop& loop, DirectOptions opts) : loop_(loop), opts_(std::move(opts)) {}

DirectMirror::~DirectMirror() {
  opts_.on_failed = nullptr;  // its owner is going too
  guard_.reset();
  // Sender and receiver (and their job threads) go before the connections and indexes they use.
  sender_.reset();
  receiver_.reset();
  src_conn_.reset();
  dst_conn_.reset();
}

Status DirectMirror::start() {
  SYNCD_TRY_ASSIGN(src, fs::Root::open(opts_.source));
  // Like rsync (lsyncd's startup), a missing target directory is made when its parent exists,
  // but only before this mirror first wrote it: a target it filled before and that is gone now
  // is an unmounted volume or a mistake more likely than a new place, and halts the sync.
  const bool made = !store::Index::exists(opts_.state_dir + "/dst") && ::mkdir(opts_.target.c_str(), 0755) == 0;
  auto unmake = ScopeGuard([&]() noexcept {
    if (made) ::rmdir(opts_.target.c_str());  // a start refused below leaves nothing behind
  });
  SYNCD_TRY_ASSIGN(dst, fs::Root::open(opts_.target));
  src_root_ = std::make_unique<fs::Root>(std::move(src));
  dst_root_ = std::make_unique<fs::Root>(std::move(dst));
  src_root_->set_xattr_names(opts_.xattrs);
  src_root_->set_one_file_system(opts_.one_file_system);
  src_root_->set_follow_links(opts_.follow_links);
  src_root_->set_specials(opts_.devices, opts_.specials);
  dst_root_->set_specials(opts_.devices, opts_.specials);
  dst_root_->set_xattr_names(opts_.xattrs);
  auto excludes = source_excludes(opts_.excludes, opts_.filters, opts_.source, opts_.per_dir_excludes);
  SYNCD_TRY(check_overlap(opts_, excludes));
  if (::mkdir(opts_.state_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Error::from_errno("create state directory " + opts_.state_dir);
  }
  SYNCD_TRY(check_state_dir_outside(opts_.state_dir, opts_.source, "the source"));
  SYNCD_TRY(check_state_dir_outside(opts_.state_dir, opts_.target, "the target"));
  SYNCD_TRY_ASSIGN(si, store::Index::open(opts_.state_dir + "/src", store::Index::Sharing::exclusive));
  SYNCD_TRY_ASSIGN(di, store::Index::open(opts_.state_dir + "/dst", store::Index::Sharing::exclusive));
  src_index_ = std::make_unique<store::Index>(std::move(si));
  dst_index_ = std::make_unique<store::Index>(std::move(di));
  SYNCD_TRY(check_target_volume(*dst_root_, *dst_index_, opts_.state_dir + "/dst"));
  unmake.cancel();
  if (made) log::get(log::Module::runtime).info("created the target directory {}", log::escape(opts_.target));

  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) {
    return Error::from_errno("socketpair");
  }
  auto on_close = [this](const Error& e) {
    if (!failure_.empty()) return;  // the other end's close that follows the first
    failure_ = e.message();
    log::get(log::Module::runtime).error("direct link closed: {}", failure_);
    if (opts_.on_failed) opts_.on_failed(failure_);
  };
  src_conn_ = std::make_unique<Connection>(
      loop_, UniqueFd(sv[0]), [this](protocol::Message m) { sender_->on_message(m); }, on_close);
  dst_conn_ = std::make_unique<Connection>(
      loop_, UniqueFd(sv[1]), [this](protocol::Message m) { receiver_->on_message(std::move(m)); },
      on_close);
  src_conn_->set_rate_limit(opts_.bwlimit_bytes_per_s);
  src_conn_->set_compression(false);  // both ends are this process
  dst_conn_->set_compression(false);
  SenderOptions so = opts_.sender;
  // lsyncd's line for the end of the startup sync (LSYNCD-COMPAT.md §4.2), which operators and
  // our tests wait for: after it, changes are applied in the order they were made. Said when the
  // sender is caught up, which waits for a startup scan the index could not record at once.
  so.on_caught_up = [this, user = so.on_caught_up](bool first) {
    if (first) log::get(log::Module::runtime).info("Startup of \"{}/\" finished: 0", opts_.source);
    if (user) user(first);
  };
  sender_ = std::make_unique<Sender>(loop_, *src_root_, *src_index_, std::move(excludes), src_conn_.get(), so);
  ReceiverOptions ro;
  ro.mirror = true;
  ro.rules = opts_.rules;
  if (opts_.rules.backup.enabled) {
    SYNCD_TRY_ASSIGN(b, apply::Backup::open(*dst_root_, opts_.rules.backup));
    ro.backup = std::make_shared<const apply::Backup>(std::move(b));
  }
  ro.apply.fsync = opts_.fsync;
  // Both ends are this process: what the target holds adds to what the source holds. 16 MiB
  // keeps its disk as busy as 64 did (a 405 MB file took as long) at a quarter of the memory.
  ro.hold_bytes = 16u << 20;
  ro.apply.sparse = opts_.sparse;
  receiver_ = std::make_unique<Receiver>(loop_, *dst_root_, *dst_index_, *dst_conn_, ro);

  SYNCD_TRY(sender_->start());
  SYNCD_TRY(src_conn_->start(hello_for(*src_index_, "source", "direct")));
  SYNCD_TRY(dst_conn_->start(hello_for(*dst_index_, "target", "direct")));
  if (opts_.on_root_replaced) {
    guard_ = RootGuard::start(loop_, {{src_root_.get(), "the source"}, {dst_root_.get(), "the target"}},
                              opts_.on_root_replaced);
  }
  return {};
}

size_t DirectMirror::unreadable() const noexcept { return sender_ ? sender_->unreadable() : 0; }

std::string DirectMirror::brake() const {
  // The source's restart scan, or the target's initial sync (its delete of extras).
  if (sender_ && !sender_->brake().empty()) return sender_->brake();
  return receiver_ ? receiver_->brake() : std::string();
}

bool DirectMirror::idle() const noexcept {
  return sender_ && receiver_ && sender_->idle() && receiver_->idle() && receiver_->synced() &&
         src_conn_->pending_out() == 0 && dst_conn_->pending_out() == 0;
}

Resources DirectMirror::resources() {
  if (!src_index_) return {};
  if (!gauge_) gauge_ = std::make_unique<ResourceGauge>(*src_index_);
  return gauge_->read(lsyncd_view().watches.size());
}

std::string DirectMirror::status(bool json) {
  const bool is_idle = idle();
  const Resources res = resources();
  const std::string brk = brake();
  const size_t queued = sender_ ? sender_->queued() : 0;
  const std::vector<double> lat = sender_ ? sender_->latency_samples() : std::vector<double>{};
  if (!json) {
    std::string t = "syncd -direct " + opts_.source + " -> " + opts_.target + " (pid " + std::to_string(::getpid()) + ")\n";
    t += std::string("  idle: ") + (is_idle ? "yes" : "no") + "\n";
    if (!brk.empty()) t += "  MASS-DELETE BRAKE: " + brk + "\n";
    t += "  queued: " + std::to_string(queued) + ", " + awaiting_text(sender_.get()) + ", " +
         retrying_text(sender_.get()) + "\n";
    if (unreadable() > 0) {
      t += "  unreadable here: " + std::to_string(unreadable()) + " paths, read again with backoff (see the log)\n";
    }
    t += "  sync latency ms (send -> durable in the target): " + latency_text(lat) + "\n";
    return t + "  " + resources_text(res) + "\n";
  }
  return "{\"pid\": " + std::to_string(::getpid()) + ", \"mode\": \"direct\", \"source\": " + json_string(opts_.source) +
         ", \"target\": " + json_string(opts_.target) + ", \"idle\": " + (is_idle ? "true" : "false") +
         ", \"queued\": " + std::to_string(queued) + ", " + awaiting_json(sender_.get()) + ", " +
         retrying_json(sender_.get()) +
         ", \"unreadable\": " + std::to_string(unreadable()) + ", \"delete_brake\": " + json_string(brk) + ", " +
         latency_json(lat) + ", " + resources_json(res) + "}\n";
}

LsyncdView DirectMirror::lsyncd_view() const {
  LsyncdView v;
  if (sender_) sender_->add_to(v);
  return v;
}

}  // namespace syncd::runtime
