// syncd's entry point: argv (lsyncd's shapes) -> a runtime node -> exit code.
// Today: `-direct SRC DST` (one-way local mirror through the full engine), `-version`, `-help`.
// Configuration files, -rsync/-rsyncssh, daemonizing and status arrive with issues #4 and #6.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "lib/base/log.h"
#include "lib/codec/sha256.h"
#include "lib/runtime/direct.h"
#include "lib/uvx/uvx.h"

namespace {

constexpr const char* kVersion = "0.1.0";
constexpr const char* kLsyncdCompat = "2.2.3";

int usage(std::FILE* out) {
  std::fprintf(out,
               "usage: syncd -nodaemon [OPTIONS] -direct SRC DIR\n"
               "options:\n"
               "  -nodaemon        stay in the foreground (required in this version)\n"
               "  -statedir DIR    where the indexes live (default /var/lib/syncd/direct-<hash>)\n"
               "  -exclude PATTERN lsyncd exclude pattern (repeatable)\n"
               "  -nofsync         do not fsync applied files (benchmarks only)\n"
               "  -delay N, -log X accepted for lsyncd compatibility\n"
               "  -version, -help\n");
  return out == stdout ? 0 : 255;
}

std::string default_state_dir(const std::string& src, const std::string& dst) {
  auto h = syncd::codec::Sha256::of(syncd::as_bytes(src + "\n" + dst));
  return "/var/lib/syncd/direct-" + syncd::codec::to_hex(syncd::ByteSpan(h.data(), 6));
}

}  // namespace

int main(int argc, char** argv) {
  using namespace syncd;
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) == 0) a.erase(0, 1);  // one or two dashes, as lsyncd
    args.push_back(a);
  }
  bool nodaemon = false, fsync = true;
  std::string src, dst, state;
  std::vector<std::string> excludes;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto need = [&](size_t n) {
      if (i + n >= args.size()) {
        std::fprintf(stderr, "syncd: %s needs %zu argument(s)\n", a.c_str(), n);
        std::exit(255);
      }
    };
    if (a == "-version") {
      std::printf("Version: syncd %s (compatible with lsyncd %s)\n", kVersion, kLsyncdCompat);
      return 0;
    } else if (a == "-help") {
      return usage(stdout);
    } else if (a == "-nodaemon") {
      nodaemon = true;
    } else if (a == "-nofsync") {
      fsync = false;
    } else if (a == "-direct") {
      need(2);
      src = args[++i];
      dst = args[++i];
    } else if (a == "-statedir") {
      need(1);
      state = args[++i];
    } else if (a == "-exclude") {
      need(1);
      excludes.push_back(args[++i]);
    } else if (a == "-delay" || a == "-log" || a == "-logfile" || a == "-pidfile") {
      need(1);
      ++i;
    } else {
      std::fprintf(stderr, "syncd: unsupported argument '%s' in this version\n", a.c_str());
      return usage(stderr);
    }
  }
  if (src.empty()) return usage(stderr);
  if (!nodaemon) {
    std::fprintf(stderr, "syncd: daemon mode is not built yet; run with -nodaemon\n");
    return 255;
  }
  log::init();
  auto& lg = log::get(log::Module::main);
  if (state.empty()) state = default_state_dir(src, dst);
  ::signal(SIGPIPE, SIG_IGN);

  uvx::Loop loop;
  runtime::DirectOptions o;
  o.source = src;
  o.target = dst;
  o.state_dir = state;
  o.excludes = excludes;
  o.fsync = fsync;
  int exit_code = 0;
  {
    runtime::DirectMirror mirror(loop, o);
    if (auto st = mirror.start(); !st) {
      lg.error("cannot start: {}", st.error().message());
      return 255;
    }
    lg.info("mirroring {} -> {} (state {})", src, dst, state);
    // SIGTERM/SIGINT: let in-flight work finish (bounded), then exit 128+signal.
    int got_signal = 0;
    std::unique_ptr<uvx::Timer> drain;
    auto on_signal = [&](int sig) {
      if (got_signal) return;
      got_signal = sig;
      lg.info("signal {}: finishing in-flight work", sig);
      auto start = loop.now_ms();
      drain = std::make_unique<uvx::Timer>(loop, [&, start] {
        if (mirror.idle() || loop.now_ms() - start > 5000) loop.stop();
      });
      drain->start(0, 10);
    };
    uvx::Signal term(loop, SIGTERM, on_signal);
    uvx::Signal intr(loop, SIGINT, on_signal);
    loop.run();
    exit_code = got_signal ? 128 + got_signal : 0;
  }
  return exit_code;
}
