#include "lib/runtime/connection.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>

#include "lib/base/clock.h"
#include "lib/base/log.h"
#include "lib/base/scope_guard.h"
#include "protocol/limits.h"

namespace syncd::runtime {

namespace {
bool is_socket(int fd) {
  struct stat st{};
  return ::fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}
}  // namespace

Connection::Connection(uvx::Loop& loop, UniqueFd fd, OnMessage on_message, OnClose on_close)
    : loop_(loop), fd_(std::move(fd)), socket_(is_socket(fd_.get())),
      on_message_(std::move(on_message)), on_close_(std::move(on_close)) {}

Connection::Connection(uvx::Loop& loop, UniqueFd in, UniqueFd out, OnMessage on_message,
                       OnClose on_close)
    : loop_(loop), fd_(std::move(in)), out_fd_(std::move(out)), socket_(is_socket(wfd())),
      on_message_(std::move(on_message)), on_close_(std::move(on_close)) {}

Connection::~Connection() {
  poll_.reset();  // before the fds close (libuv poll.rst)
  out_poll_.reset();
}

Status Connection::start(const protocol::Hello& mine) {
  poll_ = std::make_unique<uvx::Poll>(loop_, fd_.get(), [this](int s, int e) { on_poll(s, e); });
  if (out_fd_) {
    out_poll_ = std::make_unique<uvx::Poll>(loop_, out_fd_.get(), [this](int s, int e) { on_poll(s, e); });
  }
  // HELLO goes out raw (SPEC.md §2); everything after it is compressed.
  my_caps_ = mine.capabilities;
  SYNCD_TRY(protocol::encode(mine, out_));
  write_some();
  update_poll();
  return {};
}

void Connection::send(const protocol::Message& m) {
  if (closed_) return;
  // File bytes that will not compress skip the compressor (it would spend as much CPU on them as
  // the SSH cipher does, for nothing): what is queued goes through it first, then this frame raw.
  const auto* d = std::get_if<protocol::Data>(&m);
  const bool raw = raw_ok_ && compress_ && d != nullptr && codec::looks_incompressible(d->chunk);
  if (raw && !plain_.empty()) {
    if (auto st = encode_plain(); !st) return close(std::move(st).error());
  }
  if (auto st = protocol::encode(m, plain_); !st) {  // appends nothing when it fails
    log::get(log::Module::runtime).error("not sending {}: {}", protocol::type_name(protocol::type_of(m)),
                                         st.error().message());
    return;
  }
  if (raw) {
    if (auto st = encode_plain(true); !st) return close(std::move(st).error());
    return;
  }
  // Compress as we go so the plain buffer stays small for big bodies.
  if (plain_.size() >= (1u << 20) && !awaiting_hello()) {
    if (auto st = encode_plain(); !st) return close(std::move(st).error());
  }
}

Status Connection::encode_plain(bool raw) {
  Status st;
  if (raw || (raw_ok_ && !compress_)) {
    raw_bytes_ += plain_.size();
    st = enc_.write_raw(plain_, out_);
  } else {
    st = enc_.write(plain_, out_);
  }
  clear_buffer(plain_);
  return st;
}

void Connection::flush() {
  if (closed_) return;
  if (awaiting_hello()) return;
  if (!plain_.empty()) {
    if (auto st = encode_plain(); !st) return close(std::move(st).error());
  }
  if (auto st = enc_.flush(out_); !st) return close(std::move(st).error());
  write_some();
  update_poll();
}

void Connection::close(const Error& why) {
  if (closed_) return;
  closed_ = true;
  poll_.reset();
  out_poll_.reset();
  fd_.reset();
  out_fd_.reset();
  if (on_close_) on_close_(why);
}

void Connection::pause_reading(bool paused) {
  if (read_paused_ == paused) return;
  read_paused_ = paused;
  if (!paused && !closed_) read_some();  // bytes may be waiting already
  update_poll();
}

void Connection::update_poll() {
  if (closed_ || !poll_) return;
  const bool want = out_pos_ < out_.size() && !throttled_;
  const int readable = read_paused_ ? 0 : UV_READABLE;
  if (out_poll_) {
    if (readable) {
      (void)poll_->start(readable);
    } else {
      poll_->stop();
    }
    if (want) {
      (void)out_poll_->start(UV_WRITABLE);
    } else {
      out_poll_->stop();
    }
  } else {
    if (readable | (want ? UV_WRITABLE : 0)) {
      (void)poll_->start(readable | (want ? UV_WRITABLE : 0));
    } else {
      poll_->stop();
    }
  }
  want_write_ = want;
}

void Connection::on_poll(int status, int events) {
  if (status < 0) {
    // The peer went away with our bytes unread: uvx::Poll gives the socket's error (EPIPE,
    // ECONNRESET), or libuv's UV_EBADF for a POLLERR without one (a pipe whose reader is gone).
    if (status == UV_EBADF) return close(Error::make(errc::truncated, "peer closed the connection"));
    if (status == UV_EPIPE || status == UV_ECONNRESET) return close(Error::from_errno("peer closed the connection", -status));
    return close(Error::from_errno("connection poll", -status));
  }
  if (events & UV_WRITABLE) write_some();
  if (!closed_ && (events & UV_READABLE)) read_some();
  update_poll();
}

void Connection::set_rate_limit(uint64_t bytes_per_s) {
  rate_ = bytes_per_s;
  tokens_ = 0;
  refilled_us_ = mono_us();
  if (rate_ > 0 && !throttle_) {
    throttle_ = std::make_unique<uvx::Timer>(loop_, [this] {
      throttled_ = false;
      write_some();
      update_poll();
    });
  }
}

size_t Connection::allowance() {
  if (rate_ == 0) return SIZE_MAX;
  const uint64_t now = mono_us();
  const double burst = std::max(16384.0, static_cast<double>(rate_) / 10);
  tokens_ = std::min(burst, tokens_ + static_cast<double>(now - refilled_us_) * static_cast<double>(rate_) / 1e6);
  refilled_us_ = now;
  return static_cast<size_t>(tokens_);
}

void Connection::write_some() {
  const uint64_t before = bytes_out_;
  auto notify = ScopeGuard([&]() noexcept {
    if (bytes_out_ != before && on_written_) on_written_();
  });
  if (throttled_) return;
  while (!closed_ && out_pos_ < out_.size()) {
    const void* p = out_.data() + out_pos_;
    const size_t allowed = allowance();
    if (allowed == 0) {
      // Over the limit: wait (not polling for writability) until a small burst is due.
      const double want = std::min(16384.0, static_cast<double>(out_.size() - out_pos_));
      const auto ms = static_cast<uint64_t>((want - tokens_) * 1000.0 / static_cast<double>(rate_)) + 1;
      throttled_ = true;
      throttle_->start(ms);
      break;
    }
    const size_t len = std::min(out_.size() - out_pos_, allowed);
    // send() with MSG_NOSIGNAL where we can; a pipe's EPIPE needs SIGPIPE ignored (main does).
    const ssize_t n = socket_ ? ::send(wfd(), p, len, MSG_NOSIGNAL) : ::write(wfd(), p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      return close(Error::from_errno("connection write"));
    }
    out_pos_ += static_cast<size_t>(n);
    bytes_out_ += static_cast<uint64_t>(n);
    if (rate_ > 0) tokens_ -= static_cast<double>(n);
  }
  if (out_pos_ == out_.size()) {
    clear_buffer(out_);
    out_pos_ = 0;
  } else if (out_pos_ >= (1u << 20) && out_pos_ * 2 >= out_.size()) {
    // A socket that never quite drains must not let the written prefix pile up in memory.
    out_.erase(out_.begin(), out_.begin() + static_cast<ptrdiff_t>(out_pos_));
    out_pos_ = 0;
  }
}

Status Connection::take_hello(ByteSpan& in) {
  hello_buf_.insert(hello_buf_.end(), in.begin(), in.end());
  in = {};
  if (hello_buf_.size() < protocol::kFrameHeaderBytes) return {};
  const uint64_t len = load_le(hello_buf_.data(), 4);
  if (len == 0 || len > 4096 || hello_buf_[4] != static_cast<uint8_t>(protocol::MsgType::hello)) {
    // Usually text: a login script's banner (~/.bashrc) or a wrapper writing to stdout ahead of
    // syncd. Its first line says which, as rsync's "is your shell clean?" does not.
    constexpr size_t kShow = 64;
    const auto nl = std::find(hello_buf_.begin(), hello_buf_.end(), uint8_t{'\n'});
    if (nl == hello_buf_.end() && hello_buf_.size() < kShow) return {};  // more of the line first
    const size_t n = std::min<size_t>(kShow, static_cast<size_t>(nl - hello_buf_.begin()));
    return Error::make(errc::corrupt,
                       "the peer's first bytes are not syncd's HELLO but \"" +
                           log::escape(std::string_view(reinterpret_cast<const char*>(hello_buf_.data()), n)) +
                           "\": something writes to the session ahead of syncd (a login script such as "
                           "~/.bashrc, or a wrapper); the session must carry syncd's protocol only");
  }
  if (hello_buf_.size() < 4 + len) return {};
  SYNCD_TRY_ASSIGN(msg, protocol::decode_payload(protocol::MsgType::hello,
                                                 ByteSpan(hello_buf_.data() + 5, len - 1)));
  const auto& h = std::get<protocol::Hello>(msg);
  if (h.version_min > protocol::kProtocolVersion || h.version_max < protocol::kMinProtocolVersion) {
    return Error::make(errc::unsupported, "peer speaks protocol versions " + std::to_string(h.version_min) +
                                              "-" + std::to_string(h.version_max) + ", we speak " +
                                              std::to_string(protocol::kProtocolVersion));
  }
  peer_ = h;
  // Several zstd frames per direction only where both ends offered it (an older peer's decoder
  // refuses a second frame).
  const bool frames = (h.capabilities & my_caps_ & protocol::kCapFrames) != 0;
  dec_.allow_frames(frames);
  raw_ok_ = frames;
  enc_.allow_raw(frames);  // also to keep a run of zeros within the peer's bomb bound
  // What follows the HELLO frame is the start of the peer's zstd stream.
  leftover_ = Bytes(hello_buf_.begin() + static_cast<ptrdiff_t>(4 + len), hello_buf_.end());
  hello_buf_.clear();
  if (!compress_ && !plain_.empty()) flush();  // what waited for this HELLO
  on_message_(protocol::Message(h));
  return {};
}

Status Connection::feed_plain(ByteSpan plain) {
  SYNCD_TRY(frames_.feed(plain));
  for (;;) {
    SYNCD_TRY_ASSIGN(m, frames_.next());
    if (!m) return {};
    if (std::holds_alternative<protocol::Hello>(*m)) {
      return Error::make(errc::corrupt, "second HELLO");
    }
    on_message_(std::move(*m));
    if (closed_) return {};
  }
}

void Connection::read_some() {
  uint8_t buf[64 * 1024];
  for (int rounds = 0; rounds < 64 && !closed_ && !read_paused_; ++rounds) {
    const ssize_t n = ::read(fd_.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return;
      return close(Error::from_errno("connection read"));
    }
    if (n == 0) return close(Error::make(errc::truncated, "peer closed the connection"));
    bytes_in_ += static_cast<uint64_t>(n);
    ByteSpan in(buf, static_cast<size_t>(n));
    if (!peer_) {
      if (auto st = take_hello(in); !st) return close(std::move(st).error());
      if (!peer_) continue;
      in = ByteSpan(leftover_);
    }
    if (in.empty()) continue;
    auto st = dec_.feed(in, [this](ByteSpan plain) { return feed_plain(plain); });
    clear_buffer(leftover_);
    if (!st) return close(std::move(st).error());
  }
}

}  // namespace syncd::runtime
