// File: protocol/frame.h
//
// Encoding and incremental decoding of frames: [u32 len][u8 type][payload], len = 1 + payload
// bytes, little-endian (SPEC.md §3). Pure: no sockets, no compression, no files.
//
// FrameDecoder takes bytes in whatever pieces they arrive and yields whole, validated messages.
// The frame length is checked against kMaxFrameBytes as soon as its 4 bytes are in, before any
// byte of the payload is buffered; payload fields are checked against protocol/limits.h before
// anything is allocated; paths are validated (path.h) at decode time. The first error is final:
// the connection must be closed (SPEC.md §7).
// Thread affinity: one decoder per connection.
//
//   Bytes wire = encode(Ping{1, now});
//   FrameDecoder dec;
//   SYNCD_TRY(dec.feed(wire));
//   for (;;) { SYNCD_TRY_ASSIGN(m, dec.next()); if (!m) break; handle(*m); }
#pragma once

#include <optional>

#include "lib/base/bytes.h"
#include "lib/base/result.h"
#include "protocol/messages.h"

namespace syncd::protocol {

// Appends one encoded frame to `out`. Encoding validates the same rules decoding does, so a bug
// on our side never puts a frame on the wire that a peer must reject.
Status encode(const Message& m, Bytes& out);
Result<Bytes> encode(const Message& m);

// Decodes one payload of a known type (the frame header already stripped).
Result<Message> decode_payload(MsgType type, ByteSpan payload);

class FrameDecoder {
 public:
  // Buffers `in`. Fails at once if a frame header in it announces an invalid length.
  Status feed(ByteSpan in);
  // The next complete message; std::nullopt when more input is needed.
  Result<std::optional<Message>> next();
  size_t buffered() const noexcept { return buf_.size() - pos_; }

 private:
  Status check_header();
  Bytes buf_;
  size_t pos_ = 0;
  bool failed_ = false;
  Error error_{};
};

}  // namespace syncd::protocol
