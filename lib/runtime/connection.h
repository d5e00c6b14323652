// File: lib/runtime/connection.h
//
// Connection: the protocol over one connected stream: a socket fd (socketpair, unix socket, the
// local end of an SSH transport), or a pair of pipe fds (`syncd attach` reading stdin and writing
// stdout under sshd): HELLO first and uncompressed in each direction, then one zstd stream per
// direction (protocol/SPEC.md §2). send() queues frames; flush() ends a batch (zstd flush) and
// writes what the socket takes, the rest when it is writable again. Inbound bytes are
// decompressed and framed as they arrive; each message goes to on_message in order. Any protocol
// error closes the connection through on_close, once, with the reason.
// Thread affinity: loop thread only.
//
//   Connection c(loop, std::move(fd), on_msg, on_close);
//   SYNCD_TRY(c.start(my_hello));  c.send(msg); c.flush();
#pragma once

#include <functional>
#include <memory>
#include <optional>

#include "lib/base/bytes.h"
#include "lib/base/result.h"
#include "lib/base/unique_fd.h"
#include "lib/codec/zstd_stream.h"
#include "lib/uvx/uvx.h"
#include "protocol/frame.h"
#include "protocol/messages.h"

namespace syncd::runtime {

class Connection {
 public:
  using OnMessage = std::function<void(protocol::Message)>;
  using OnClose = std::function<void(const Error&)>;

  Connection(uvx::Loop& loop, UniqueFd fd, OnMessage on_message, OnClose on_close);
  // Reads from `in`, writes to `out` (pipes; both non-blocking).
  Connection(uvx::Loop& loop, UniqueFd in, UniqueFd out, OnMessage on_message, OnClose on_close);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Sends our HELLO and starts reading. The peer's HELLO is checked (magic, version range)
  // before any other message is delivered.
  Status start(const protocol::Hello& mine);
  void send(const protocol::Message& m);
  void flush();
  void close(const Error& why);

  bool open() const noexcept { return static_cast<bool>(fd_); }
  // Flow control for a receiver whose disk is slower than the network: while paused, nothing is
  // read (the peer's writes back up through the socket and, over SSH, the channel window).
  void pause_reading(bool paused);
  // Called on the loop after bytes were written to the stream (a streaming sender waits on it).
  void set_on_written(std::function<void()> f) { on_written_ = std::move(f); }
  uint64_t bytes_in() const noexcept { return bytes_in_; }
  const std::optional<protocol::Hello>& peer() const noexcept { return peer_; }
  // The capabilities this session uses: both HELLOs' intersection (none before the peer's).
  uint64_t capabilities() const noexcept { return peer_ ? peer_->capabilities & my_caps_ : 0; }
  size_t pending_out() const noexcept { return out_.size() - out_pos_; }
  uint64_t bytes_out() const noexcept { return bytes_out_; }
  // Protocol bytes sent as raw zstd blocks, not compressed (SPEC.md §2.1, `frames`).
  uint64_t raw_bytes_out() const noexcept { return raw_bytes_; }
  // Off for a stream that never leaves this machine (-direct's socketpair): with `frames`
  // negotiated, every frame goes out as raw zstd blocks, so neither end spends CPU on a
  // compressor whose savings are worth nothing there, nor holds its window (about 2.5 MB per
  // direction and end, for as long as the stream lives). Before the peer's HELLO, frames wait.
  void set_compression(bool on) noexcept { compress_ = on; }
  // rsync's --bwlimit (lsyncd's rsync.bwlimit): at most `bytes_per_s` of (compressed) protocol
  // bytes are written per second, in bursts of at most a tenth of a second's worth; 0 = no limit.
  void set_rate_limit(uint64_t bytes_per_s);

 private:
  void on_poll(int status, int events);
  void read_some();
  void write_some();
  Status take_hello(ByteSpan& in);
  Status feed_plain(ByteSpan plain);
  // Moves the queued frames to the wire bytes: raw blocks when `raw` or compression is off.
  Status encode_plain(bool raw = false);
  // Compression off and the peer's HELLO not in yet: frames wait, as it decides whether raw
  // blocks may go.
  bool awaiting_hello() const noexcept { return !compress_ && !peer_; }
  void update_poll();

  int wfd() const noexcept { return out_fd_ ? out_fd_.get() : fd_.get(); }

  uvx::Loop& loop_;
  UniqueFd fd_;       // read side (and write side when out_fd_ is empty)
  UniqueFd out_fd_;   // separate write side (pipes)
  bool socket_ = false;
  OnMessage on_message_;
  OnClose on_close_;
  std::unique_ptr<uvx::Poll> poll_;
  std::unique_ptr<uvx::Poll> out_poll_;  // only with a separate write fd
  codec::ZstdEncoder enc_;
  codec::ZstdDecoder dec_;
  protocol::FrameDecoder frames_;
  Bytes plain_;               // frames queued since the last flush (uncompressed)
  Bytes out_;                 // bytes ready for the socket
  size_t out_pos_ = 0;
  Bytes hello_buf_;           // raw bytes until the peer's HELLO frame is complete
  Bytes leftover_;            // bytes after the HELLO frame, fed to the zstd decoder
  std::optional<protocol::Hello> peer_;
  bool want_write_ = false;
  bool read_paused_ = false;
  std::function<void()> on_written_;
  bool closed_ = false;
  uint64_t my_caps_ = 0;   // what our HELLO offered
  bool raw_ok_ = false;    // `frames` negotiated: bytes that will not compress go out raw
  bool compress_ = true;
  uint64_t raw_bytes_ = 0;
  // Rate limit (set_rate_limit): a token bucket, refilled from the monotonic clock.
  uint64_t rate_ = 0;
  double tokens_ = 0;
  uint64_t refilled_us_ = 0;
  bool throttled_ = false;
  std::unique_ptr<uvx::Timer> throttle_;
  size_t allowance();
  uint64_t bytes_out_ = 0;
  uint64_t bytes_in_ = 0;
};

}  // namespace syncd::runtime
