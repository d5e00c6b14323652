#include <doctest/doctest.h>

#include <string>

#include "protocol/path.h"

using namespace syncd;
using namespace syncd::protocol;

TEST_SUITE("protocol.path") {
  TEST_CASE("accepted paths") {
    for (const char* p : {"a", "a/b", "certs/ca.pem", "dir.with.dots/x", "...", "..a", "a..",
                          ".hidden", "sp ace/n\xC3\xA9", "ctl\x01name", "bad\xFFutf8",
                          ".syncdx", "x/.syncd-not-reserved"}) {
      CAPTURE(p);
      CHECK(validate_path(p).ok());
    }
    CHECK(validate_path(std::string(255, 'a')).ok());
    std::string deep;
    for (int i = 0; i < 2000; ++i) deep += "a/";
    deep += "b";  // 4001 bytes
    CHECK(validate_path(deep).ok());
  }

  TEST_CASE("hostile paths are rejected with a reason") {
    struct Bad {
      std::string path;
      const char* why;
    };
    const Bad bad[] = {
        {"", "empty path"},
        {"/etc/passwd", "absolute"},
        {"/root/.ssh/authorized_keys", "absolute"},
        {"..", "'..'"},
        {"../x", "'..'"},
        {"../../etc/passwd", "'..'"},
        {"a/../../b", "'..'"},
        {"subdir/..", "'..'"},
        {"./a", "'.'"},
        {"a/./b", "'.'"},
        {"a//b", "empty component"},
        {"a/", "trailing"},
        {std::string("a\0b", 3), "NUL"},
        {std::string(256, 'a'), "255"},
        {std::string(4096, 'a'), "4095"},
        {".syncd.x.1234.tmp", "reserved"},
        {"d/.syncd.cert.pem.abcdef.tmp", "reserved"},
        {".syncd", "reserved"},
        {".syncd/cookie", "reserved"},
    };
    for (const auto& b : bad) {
      CAPTURE(b.path);
      auto st = validate_path(b.path);
      REQUIRE_FALSE(st.ok());
      CHECK(st.error().is(errc::path_rejected));
      CHECK(st.error().message().find(b.why) != std::string::npos);
    }
  }

  TEST_CASE("control bytes are escaped in the error text") {
    auto st = validate_path("a\n/../b");
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().message().find('\n') == std::string::npos);
    CHECK(st.error().message().find("\\x0a") != std::string::npos);
  }
}
