#include "lib/runtime/push.h"

#include <sys/stat.h>

#include <algorithm>

#include "lib/base/log.h"
#include "lib/codec/sha256.h"
#include "protocol/limits.h"

namespace syncd::runtime {
namespace {

auto& lg() { return log::get(log::Module::runtime); }

}  // namespace

Push::Push(uvx::Loop& loop, PushOptions opts)
    : loop_(loop), opts_(std::move(opts)), backoff_ms_(opts_.backoff_min_ms), rng_(codec::random_u64()) {}

Push::~Push() {
  // The sender (and its job thread) goes before the connection it writes to.
  sender_.reset();
  conn_.reset();
  ssh_.reset();
}

Status Push::start() {
  SYNCD_TRY_ASSIGN(rsh, transport::SshCommand::parse(opts_.rsh));
  rsh_ = std::move(rsh);
  SYNCD_TRY_ASSIGN(root, fs::Root::open(opts_.source));
  root_ = std::make_unique<fs::Root>(std::move(root));
  if (::mkdir(opts_.state_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Error::from_errno("create state directory " + opts_.state_dir);
  }
  SYNCD_TRY_ASSIGN(idx, store::Index::open(opts_.state_dir));
  index_ = std::make_unique<store::Index>(std::move(idx));
  SenderOptions so = opts_.sender;
  so.on_caught_up = [this, user = so.on_caught_up](bool first) {
    backoff_ms_ = opts_.backoff_min_ms;  // a session that got this far was a good one
    if (first) lg().info("Startup of \"{}\" finished: 0", opts_.source);
    lg().info("{} caught up (session {})", opts_.host, session_);
    if (user) user(first);
  };
  sender_ = std::make_unique<Sender>(loop_, *root_, *index_, watch::Excludes(opts_.excludes), nullptr, so);
  retry_ = std::make_unique<uvx::Timer>(loop_, [this] { connect(); });
  SYNCD_TRY(sender_->start());
  connect();
  return {};
}

void Push::connect() {
  // The previous session's objects die here, outside their own callbacks.
  conn_.reset();
  ssh_.reset();
  const uint64_t session = ++session_;
  ++sessions_;
  std::vector<std::string> remote = {opts_.remote_syncd, "attach", opts_.target};
  remote.insert(remote.end(), opts_.remote_args.begin(), opts_.remote_args.end());
  const auto argv = rsh_.argv_for(opts_.host, transport::remote_command(remote));
  lg().info("connecting to {} (session {}): {}", opts_.host, session, transport::remote_command(argv));
  auto ssh = transport::SshProcess::start(loop_, argv, opts_.host,
                                          [this, session](const std::string& why) { lost(session, why); });
  if (!ssh.ok()) return lost(session, ssh.error().message());
  ssh_ = std::move(*ssh);
  conn_ = std::make_unique<Connection>(
      loop_, ssh_->take_stream(),
      [this, session](protocol::Message m) {
        if (session != session_) return;
        if (const auto* h = std::get_if<protocol::Hello>(&m)) {
          session_up_ = true;
          lg().info("connected to {}: peer node {:016x} ({}), protocol {}-{}", opts_.host, h->node_id,
                    log::escape(h->node_name), h->version_min, h->version_max);
        }
        sender_->on_message(m);
      },
      [this, session](const Error& e) { lost(session, e.message()); });
  protocol::Hello h;
  h.magic = protocol::kHelloMagic;
  h.version_min = protocol::kMinProtocolVersion;
  h.version_max = protocol::kProtocolVersion;
  h.node_id = index_->node_id();
  h.node_name = "push";
  h.cluster_id = "push";
  h.index_id = index_->index_id();
  h.capabilities = protocol::kAllCapabilities;
  if (auto st = conn_->start(h); !st) return lost(session, st.error().message());
  sender_->set_connection(conn_.get());
}

void Push::lost(uint64_t session, const std::string& why) {
  if (session != session_ || lost_ == session) return;  // an older session, or already handled
  lost_ = session;
  session_up_ = false;
  sender_->set_connection(nullptr);
  if (conn_) conn_->close(Error::make(errc::truncated, "session ended"));
  if (ssh_) ssh_->terminate();
  last_error_ = why;
  // Capped exponential backoff with jitter (half to all of the step), so a cluster that lost a
  // peer does not reconnect in lockstep.
  std::uniform_int_distribution<uint64_t> jitter(backoff_ms_ / 2, backoff_ms_);
  const uint64_t wait = jitter(rng_);
  backoff_ms_ = std::min(opts_.backoff_max_ms, backoff_ms_ * 2);
  lg().warn("lost {}: {}; reconnecting in {} ms", opts_.host, why, wait);
  retry_->start(wait);
}

bool Push::idle() const noexcept {
  return connected() && sender_ && sender_->idle() && sender_->caught_up() &&
         sender_->awaiting_ack() == 0 && conn_->pending_out() == 0;
}

}  // namespace syncd::runtime
