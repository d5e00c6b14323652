// Hostile local conditions (SECURITY.md checklist 14 and 15): a parent directory swapped with a
// symlink to outside while updates are applied, and temp names planted in advance.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>

#include "lib/apply/apply.h"
#include "tests/support/tmpdir.h"

using namespace syncd;
using namespace syncd::apply;

namespace {

ContentWriter text(const std::string& s) {
  return [s](delta::OutputSink& out) { return out.write(as_bytes(s)); };
}

Attrs small_attrs(uint64_t size) {
  Attrs a;
  a.mode = 0644;
  a.mtime_sec = 1;
  a.size = size;
  return a;
}

// Deterministic names for the planted-temp test: a, then b, then c ...
int g_name_counter = 0;
std::string counting_namer(std::string_view leaf) {
  return ".syncd." + std::string(leaf) + "." + std::to_string(g_name_counter++) + ".tmp";
}

}  // namespace

TEST_SUITE("apply.hostile_local") {
  TEST_CASE("a parent swapped with a symlink to outside in a tight loop never leaks a write") {
    test::require_root();
    for (Resolver how : {Resolver::automatic, Resolver::walk}) {
      CAPTURE(static_cast<int>(how));
      test::TempDir t("race");
      const std::string root_path = t / "root";
      const std::string outside = t / "outside";
      ::mkdir(root_path.c_str(), 0755);
      ::mkdir(outside.c_str(), 0755);
      ::mkdir((root_path + "/d").c_str(), 0755);
      test::write_file(outside + "/sentinel", "keep");
      auto root = Root::open(root_path, how);
      REQUIRE(root.ok());
      Options o;
      o.fsync = false;  // the race, not the disk, is under test
      Applier ap(*root, o);

      // The attacker: rename d away, put a symlink to outside in its place, swap back; forever.
      std::atomic<bool> stop{false};
      std::atomic<long> swaps{0};
      std::thread attacker([&] {
        const std::string d = root_path + "/d", real = root_path + "/d.real";
        while (!stop.load()) {
          if (::rename(d.c_str(), real.c_str()) == 0) {
            (void)::symlink(outside.c_str(), d.c_str());
            ::unlink(d.c_str());
            (void)::rename(real.c_str(), d.c_str());
            swaps.fetch_add(1);
          }
        }
      });
      // Barrier: the attacker is running before the first write.
      for (int spin = 0; swaps.load() == 0; ++spin) {
        REQUIRE_MESSAGE(spin < 10'000'000, "attacker thread never ran");
        std::this_thread::yield();
      }
      int ok = 0, refused = 0;
      for (int i = 0; i < 3000; ++i) {
        const std::string body = "v" + std::to_string(i);
        auto r = ap.write_file("d/f" + std::to_string(i % 7), small_attrs(body.size()), Expected::any(),
                               codec::content_hash(as_bytes(body)), text(body));
        auto m = ap.set_meta("d", small_attrs(0), Expected::any());
        (void)m;
        if (r.ok()) {
          ++ok;
        } else {
          ++refused;
          // Only "went away" or "symlink in the path" kinds of refusal are acceptable.
          const bool fine = r.error().is(errc::path_escape) || r.error().is_errno(ENOENT) ||
                            r.error().is_errno(ENOTDIR);
          if (!fine) FAIL("unexpected error: " << r.error().message());
        }
      }
      stop = true;
      attacker.join();
      MESSAGE("writes " << ok << " ok, " << refused << " refused, " << swaps.load() << " swaps");
      CHECK(ok + refused == 3000);
      // With the attacker gone, the same write goes through to the real directory.
      auto last = ap.write_file("d/final", small_attrs(4), Expected::any(),
                                codec::content_hash(as_bytes("done")), text("done"));
      REQUIRE_MESSAGE(last.ok(), last.error().message());
      CHECK(test::read_file(root_path + "/d/final") == "done");
      // Nothing was created, changed or chmod'ed outside.
      CHECK(test::list_dir(outside) == std::vector<std::string>{"sentinel"});
      CHECK(test::read_file(outside + "/sentinel") == "keep");
      struct stat st{};
      REQUIRE(::stat(outside.c_str(), &st) == 0);
      CHECK((st.st_mode & 07777) == 0755);
    }
  }

  TEST_CASE("planted temp names are skipped - never opened or written through") {
    test::require_root();
    test::TempDir t("plant");
    const std::string root_path = t / "root";
    ::mkdir(root_path.c_str(), 0755);
    ::mkdir((t / "outside").c_str(), 0755);
    test::write_file(t / "outside/target", "keep");
    auto root = Root::open(root_path);
    REQUIRE(root.ok());
    Options o;
    o.temp_namer = counting_namer;
    Applier ap(*root, o);
    // An attacker guessed the first two names: a symlink to outside and a hard link.
    g_name_counter = 0;
    REQUIRE(::symlink((t / "outside/target").c_str(), (root_path + "/.syncd.cert.pem.0.tmp").c_str()) == 0);
    test::write_file(root_path + "/victim", "v");
    REQUIRE(::link((root_path + "/victim").c_str(), (root_path + "/.syncd.cert.pem.1.tmp").c_str()) == 0);
    const std::string body = "certificate";
    auto r = ap.write_file("cert.pem", small_attrs(body.size()), Expected::absent(),
                           codec::content_hash(as_bytes(body)), text(body));
    REQUIRE_MESSAGE(r.ok(), r.error().message());
    CHECK(g_name_counter == 3);  // two planted names refused by O_EXCL, the third used
    CHECK(test::read_file(root_path + "/cert.pem") == body);
    CHECK(test::read_file(t / "outside/target") == "keep");
    CHECK(test::read_file(root_path + "/victim") == "v");
    // The planted entries are left as they were (not ours to remove), our temp is gone.
    CHECK(test::exists(root_path + "/.syncd.cert.pem.0.tmp"));
    CHECK(test::exists(root_path + "/.syncd.cert.pem.1.tmp"));
    CHECK_FALSE(test::exists(root_path + "/.syncd.cert.pem.2.tmp"));
  }
}
