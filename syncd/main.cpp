// syncd's entry point. The daemon (watcher, engine, peers) arrives with the next issues; today the
// binary answers -version/-help and refuses everything else with a clear message and exit code.
#include <cstdio>
#include <cstring>
#include <string_view>

namespace {

constexpr const char* kVersion = "0.1.0";
constexpr const char* kLsyncdCompat = "2.2.3";

int usage(std::FILE* out) {
  std::fprintf(out,
               "usage: syncd [OPTIONS] CONFIG\n"
               "       syncd [OPTIONS] -direct SRC DIR | -rsync SRC TGT | -rsyncssh SRC HOST DIR\n"
               "options: -version  -help\n");
  return out == stdout ? 0 : 255;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string_view a(argv[i]);
    if (a.starts_with("--")) a.remove_prefix(1);
    if (a == "-version") {
      std::printf("Version: syncd %s (compatible with lsyncd %s)\n", kVersion, kLsyncdCompat);
      return 0;
    }
    if (a == "-help") return usage(stdout);
  }
  std::fprintf(stderr,
               "syncd: this build has the delta engine, wire protocol and applier only; "
               "the sync daemon is not built yet\n");
  return usage(stderr);
}
