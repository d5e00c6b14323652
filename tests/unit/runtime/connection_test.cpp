// The connection layer on a real socketpair and loop: HELLO, zstd stream, framing, and how it
// fails on hostile bytes (a clear reason, closed once, nothing delivered from a bad frame).
#include <doctest/doctest.h>

#include <sys/socket.h>
#include <unistd.h>

#include "lib/codec/zstd_stream.h"
#include "lib/runtime/connection.h"
#include "lib/runtime/job_queue.h"
#include "protocol/limits.h"
#include "tests/support/tmpdir.h"
#include "tests/unit/runtime/loop_pair.h"

#include <chrono>
#include <random>
#include <tuple>

using namespace syncd;
using namespace syncd::runtime;

namespace {

using test::hello;
using test::Pair;

// Two connections on one socketpair, each keeping what it receives; either closing fails the test.
struct Talking : Pair {
  std::vector<protocol::Message> got_a, got_b;
  Connection a{loop, UniqueFd(sv[0]), [this](protocol::Message m) { got_a.push_back(std::move(m)); },
               [](const Error& e) { FAIL("a closed: " << e.message()); }};
  Connection b{loop, UniqueFd(sv[1]), [this](protocol::Message m) { got_b.push_back(std::move(m)); },
               [](const Error& e) { FAIL("b closed: " << e.message()); }};
};

}  // namespace

TEST_SUITE("runtime.connection") {
  TEST_CASE("a peer that goes away with our bytes unread: the reason is the socket's, not libuv's 'Bad file descriptor'") {
    // libuv reports POLLERR as UV_EBADF; an ssh client that could not connect ended every
    // session with "connection poll: Bad file descriptor".
    Pair p;
    std::string reason;
    Connection a(p.loop, UniqueFd(p.sv[0]), [](protocol::Message) {}, [&](const Error& e) { reason = e.message(); });
    REQUIRE(a.start(hello(1)).ok());
    ::close(p.sv[1]);  // our HELLO unread: the socket is reset, and its poll reports POLLERR
    REQUIRE(p.run_until([&] { return !reason.empty(); }));
    CHECK_MESSAGE(reason.find("peer closed the connection") != std::string::npos, reason);
    CHECK_MESSAGE(reason.find("Bad file descriptor") == std::string::npos, reason);
  }

  TEST_CASE("uvx::Poll hands a socket's POLLERR on as the socket's own error") {
    // Every poller gets it (the libssh2 bridge's "local stream:" said "Bad file descriptor" too).
    Pair p;
    const UniqueFd mine(p.sv[0]);  // outlives the poll
    int got = 0;
    uvx::Poll poll(p.loop, p.sv[0], [&](int status, int) { got = status; });
    REQUIRE(::write(p.sv[0], "unread", 6) == 6);
    ::close(p.sv[1]);  // our bytes unread: the socket is reset
    REQUIRE(poll.start(UV_READABLE).ok());
    REQUIRE(p.run_until([&] { return got != 0; }));
    CHECK_MESSAGE(got == UV_ECONNRESET, uv_strerror(got));
  }

  TEST_CASE("messages cross a compressed connection in order - in both directions") {
    Talking p;
    auto [a, b, got_a, got_b] = std::tie(p.a, p.b, p.got_a, p.got_b);  // references into p
    REQUIRE(a.start(hello(1)).ok());
    REQUIRE(b.start(hello(2)).ok());
    for (uint64_t i = 0; i < 100; ++i) a.send(protocol::Ping{i, i});
    a.send(protocol::Data{7, 0, Bytes(3 << 20 >> 2, 'z')});  // compressible, > one chunk of zstd output
    a.flush();
    b.send(protocol::Pong{42, 0});
    b.flush();
    REQUIRE(p.run_until([&] { return got_b.size() == 102 && got_a.size() == 2; }));
    CHECK(std::get<protocol::Hello>(got_b[0]).node_id == 1);
    CHECK(std::get<protocol::Hello>(got_a[0]).node_id == 2);
    for (uint64_t i = 0; i < 100; ++i) CHECK(std::get<protocol::Ping>(got_b[1 + i]).nonce == i);
    CHECK(std::get<protocol::Data>(got_b[101]).chunk.size() == (3u << 20 >> 2));
    CHECK(std::get<protocol::Pong>(got_a[1]).nonce == 42);
    CHECK(a.bytes_out() < 100000);  // the 768 KiB of 'z' went compressed
  }

  TEST_CASE("incompressible file bytes go raw where both ends offer `frames` - through the compressor otherwise") {
    for (bool both : {true, false}) {
      CAPTURE(both);
      Talking p;
      auto [a, b, got_a, got_b] = std::tie(p.a, p.b, p.got_a, p.got_b);  // references into p
      protocol::Hello hb = hello(2);
      if (!both) hb.capabilities &= ~uint64_t{protocol::kCapFrames};  // an older receiver
      REQUIRE(a.start(hello(1)).ok());
      REQUIRE(b.start(hb).ok());
      REQUIRE(p.run_until([&] { return !got_a.empty() && !got_b.empty(); }));  // HELLOs exchanged
      std::mt19937_64 rng(3);
      const Bytes noise = test::random_bytes(rng, 1 << 20);
      a.send(protocol::Ping{1, 1});
      a.send(protocol::Data{7, 0, noise});
      a.send(protocol::Ping{2, 2});
      a.send(protocol::Data{7, 1 << 20, Bytes(1 << 20, 'q')});
      a.send(protocol::Data{7, 2 << 20, noise});
      a.send(protocol::Ping{3, 3});
      a.flush();
      REQUIRE(p.run_until([&] { return got_b.size() == 7; }));
      CHECK(std::get<protocol::Ping>(got_b[1]).nonce == 1);
      CHECK(std::get<protocol::Data>(got_b[2]).chunk == noise);
      CHECK(std::get<protocol::Ping>(got_b[3]).nonce == 2);
      CHECK(std::get<protocol::Data>(got_b[4]).chunk == Bytes(1 << 20, 'q'));
      CHECK(std::get<protocol::Data>(got_b[5]).chunk == noise);
      CHECK(std::get<protocol::Ping>(got_b[6]).nonce == 3);
      if (both) {
        // Only the two random chunks skipped the compressor (their frames: chunk + header).
        CHECK(a.raw_bytes_out() >= 2 * noise.size());
        CHECK(a.raw_bytes_out() < 2 * noise.size() + 256);
      } else {
        CHECK(a.raw_bytes_out() == 0);
      }
      CHECK(a.bytes_out() < 2 * noise.size() + 64 * 1024);  // the 'q' MiB went compressed either way
    }
  }

  TEST_CASE("compression off (-direct): every frame goes raw - what was sent before the peer's HELLO waits for it - an older peer still gets compressed bytes") {
    for (bool both : {true, false}) {
      CAPTURE(both);
      Talking p;
      auto [a, b, got_a, got_b] = std::tie(p.a, p.b, p.got_a, p.got_b);  // references into p
      protocol::Hello hb = hello(2);
      if (!both) hb.capabilities &= ~uint64_t{protocol::kCapFrames};
      a.set_compression(false);
      REQUIRE(a.start(hello(1)).ok());
      // Before b's HELLO is in: queued, not yet encoded either way.
      a.send(protocol::Ping{1, 1});
      a.send(protocol::Data{7, 0, Bytes(1 << 20, 'z')});
      a.send(protocol::Data{7, 1 << 20, Bytes(1 << 20, 'y')});  // past the 1 MiB encode step
      a.flush();
      CHECK(a.raw_bytes_out() == 0);
      REQUIRE(b.start(hb).ok());
      REQUIRE(p.run_until([&] { return got_b.size() == 4; }));
      CHECK(std::get<protocol::Ping>(got_b[1]).nonce == 1);
      CHECK(std::get<protocol::Data>(got_b[2]).chunk == Bytes(1 << 20, 'z'));
      CHECK(std::get<protocol::Data>(got_b[3]).chunk == Bytes(1 << 20, 'y'));
      a.send(protocol::Data{7, 2 << 20, Bytes(1 << 20, 'q')});
      a.send(protocol::Ping{2, 2});
      a.flush();
      REQUIRE(p.run_until([&] { return got_b.size() == 6; }));
      CHECK(std::get<protocol::Data>(got_b[4]).chunk == Bytes(1 << 20, 'q'));
      CHECK(std::get<protocol::Ping>(got_b[5]).nonce == 2);
      if (both) {
        // The 3 MiB of letters crossed as they are, framing and all: nothing was compressed.
        CHECK(a.raw_bytes_out() >= (3u << 20));
        CHECK(a.bytes_out() > (3u << 20));
      } else {
        CHECK(a.raw_bytes_out() == 0);
        CHECK(a.bytes_out() < 100000);
      }
    }
  }

  TEST_CASE("hostile peers: no HELLO - a bad frame inside the stream - a zstd bomb - each closes once with a reason") {
    struct Case {
      const char* name;
      std::function<Bytes()> bytes;
      const char* why;
    };
    auto raw_hello = [] {
      Bytes b;
      REQUIRE(protocol::encode(hello(9), b).ok());
      return b;
    };
    const std::vector<Case> cases = {
        {"garbage instead of HELLO", [] { return Bytes(64, 0xAB); }, "HELLO"},
        // A remote login script's banner: its first line is named (sent a byte at a time below,
        // so the reason waits for the line, not the first five bytes).
        {"a login banner ahead of HELLO",
         [&] {
           const std::string banner = "Welcome to node2! Last login: Mon Dec  7\nsecond line\n";
           Bytes b(banner.begin(), banner.end());
           const Bytes h = raw_hello();
           b.insert(b.end(), h.begin(), h.end());
           return b;
         },
         "not syncd's HELLO but \"Welcome to node2! Last login: Mon Dec  7\": something writes to the session ahead of syncd"},
        {"oversized frame after HELLO",
         [&] {
           Bytes b = raw_hello();
           codec::ZstdEncoder enc;
           Bytes plain;
           ByteWriter(plain).u32(0xFFFFFFFF);
           plain.push_back(0x03);
           REQUIRE(enc.write(plain, b).ok());
           REQUIRE(enc.flush(b).ok());
           return b;
         },
         "length"},
        {"uncompressed frames after HELLO",
         [&] {
           Bytes b = raw_hello();
           REQUIRE(protocol::encode(protocol::Ping{1, 1}, b).ok());
           return b;
         },
         "zstd"},
        {"zstd bomb",
         [&] {
           Bytes b = raw_hello();
           codec::ZstdEncoder enc;
           Bytes zeros(1 << 20, 0);
           for (int i = 0; i < 64; ++i) REQUIRE(enc.write(zeros, b).ok());
           REQUIRE(enc.flush(b).ok());
           return b;
         },
         "frame"},
    };
    for (const auto& c : cases) {
      CAPTURE(c.name);
      Pair p;
      int closes = 0;
      std::string reason;
      size_t delivered = 0;
      Connection a(p.loop, UniqueFd(p.sv[0]), [&](protocol::Message) { ++delivered; },
                   [&](const Error& e) {
                     ++closes;
                     reason = e.message();
                   });
      REQUIRE(a.start(hello(1)).ok());
      const Bytes evil = c.bytes();
      UniqueFd peer(p.sv[1]);
      size_t off = 0;
      const bool bytewise = std::string(c.name).find("banner") != std::string::npos;
      while (off < evil.size() && (closes == 0 || !bytewise)) {
        const ssize_t n = ::send(peer.get(), evil.data() + off, bytewise ? 1 : evil.size() - off, MSG_NOSIGNAL);
        if (n <= 0) break;
        off += static_cast<size_t>(n);
        p.loop.run_once();
      }
      REQUIRE(p.run_until([&] { return closes > 0; }));
      CHECK(closes == 1);
      CHECK_MESSAGE(reason.find(c.why) != std::string::npos, reason);
      CHECK(delivered <= 1);  // at most the HELLO
      CHECK_FALSE(a.open());
    }
  }
}

TEST_SUITE("runtime.jobs") {
  TEST_CASE("jobs run in order on one worker and complete on the loop") {
    uvx::Loop loop;
    std::vector<int> ran;       // worker thread
    std::vector<int> completed;  // loop thread
    {
      JobQueue q(loop, "syncd-test");
      const auto loop_thread = std::this_thread::get_id();
      for (int i = 0; i < 100; ++i) {
        q.post([&, i]() -> JobQueue::Done {
          CHECK(std::this_thread::get_id() != loop_thread);
          ran.push_back(i);
          return [&, i] {
            CHECK(std::this_thread::get_id() == loop_thread);
            completed.push_back(i);
            if (completed.size() == 100) loop.stop();
          };
        });
      }
      CHECK(q.in_flight() == 100);
      uvx::Timer timeout(loop, [&] { loop.stop(); });
      timeout.start(5000);
      loop.run();
      CHECK(q.in_flight() == 0);
    }
    REQUIRE(completed.size() == 100);
    for (int i = 0; i < 100; ++i) {
      CHECK(ran[static_cast<size_t>(i)] == i);
      CHECK(completed[static_cast<size_t>(i)] == i);
    }
  }
  TEST_CASE("a rate limit (rsync's bwlimit) holds the bytes written per second, and everything arrives") {
    Pair p;
    std::vector<protocol::Message> got;
    Connection a(p.loop, UniqueFd(p.sv[0]), [](protocol::Message) {}, [](const Error& e) { FAIL("a closed: " << e.message()); });
    Connection b(p.loop, UniqueFd(p.sv[1]), [&](protocol::Message m) { got.push_back(std::move(m)); },
                 [](const Error& e) { FAIL("b closed: " << e.message()); });
    REQUIRE(a.start(hello(1)).ok());
    REQUIRE(b.start(hello(2)).ok());
    REQUIRE(p.run_until([&] { return b.peer().has_value(); }));
    const uint64_t rate = 100 * 1024;
    a.set_rate_limit(rate);
    std::mt19937_64 rng(7);
    const Bytes chunk = test::random_bytes(rng, 150 * 1024);  // incompressible: ~150 KiB on the wire
    const auto t0 = std::chrono::steady_clock::now();
    a.send(protocol::Data{1, 0, chunk});
    a.flush();
    auto data = [&]() -> const protocol::Data* {
      for (const auto& m : got) {
        if (const auto* d = std::get_if<protocol::Data>(&m)) return d;
      }
      return nullptr;
    };
    REQUIRE(p.run_until([&] { return data() != nullptr; }));
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK(data()->chunk == chunk);
    // At most one burst (16 KiB) goes before the limit applies: >= (150 - 16) / 100 s. A lower
    // bound only: a slow machine makes it longer, never shorter.
    CHECK(secs >= 1.3);
    CHECK(a.bytes_out() >= chunk.size());
  }
}
