#include <doctest/doctest.h>

#include <stdio.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

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
  TEST_CASE("the logfile follows rotation: a moved-away log continues in a new file at the path") {
    char tmpl[] = "/tmp/syncd-logtest-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    const std::string dir = tmpl, path = dir + "/lsyncd.log", rotated = path + ".1";
    auto text = [](const std::string& p) {
      std::ifstream f(p);
      std::stringstream ss;
      ss << f.rdbuf();
      return ss.str();
    };
    REQUIRE(log::add_file_sink(path).empty());
    log::get(log::Module::main).info("before rotation");
    REQUIRE(::rename(path.c_str(), rotated.c_str()) == 0);  // what logrotate does without copytruncate
    log::get(log::Module::main).info("after rotation");
    CHECK(text(rotated).find("before rotation") != std::string::npos);
    CHECK(text(rotated).find("after rotation") == std::string::npos);
    CHECK(text(path).find("after rotation") != std::string::npos);
    ::unlink(path.c_str());
    ::unlink(rotated.c_str());
    ::rmdir(dir.c_str());
  }
}
