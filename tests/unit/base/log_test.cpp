#include <doctest/doctest.h>

#include "lib/base/log.h"

using namespace syncd;

TEST_SUITE("base.log") {
  TEST_CASE("escape keeps valid UTF-8 and escapes control bytes and invalid sequences") {
    CHECK(log::escape("certs/a.pem") == "certs/a.pem");
    CHECK(log::escape("caf\xC3\xA9") == "caf\xC3\xA9");
    CHECK(log::escape("a\nb") == "a\\x0ab");
    CHECK(log::escape("\x1b[31m") == "\\x1b[31m");
    CHECK(log::escape("bad\xFF") == "bad\\xff");
    CHECK(log::escape("trunc\xE2\x82") == "trunc\\xe2\\x82");
    CHECK(log::escape("back\\slash") == "back\\\\slash");
  }
  TEST_CASE("module loggers are named and reused") {
    auto& a = log::get(log::Module::apply);
    auto& b = log::get(log::Module::apply);
    CHECK(&a == &b);
    CHECK(a.name() == "apply");
  }
}
