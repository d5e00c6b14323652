// Replays fuzz inputs without libFuzzer: every file in the directories given, then the generated
// seeds, then deterministic mutations of them. `--dump-seeds DIR` writes the seeds out (CI gives
// them to libFuzzer as a starting corpus).
#include <dirent.h>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <random>
#include <string>

#include "tests/fuzz/fuzz_target.h"

namespace {

int replay_dir(const std::string& dir) {
  int n = 0;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return 0;
  while (struct dirent* e = ::readdir(d)) {
    const std::string path = dir + "/" + e->d_name;
    struct stat st{};
    if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    std::ifstream f(path, std::ios::binary);
    syncd::Bytes b((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    LLVMFuzzerTestOneInput(b.data(), b.size());
    ++n;
  }
  ::closedir(d);
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--dump-seeds") {
    int i = 0;
    for (const auto& s : fuzz_seeds()) {
      std::ofstream f(std::string(argv[2]) + "/seed-" + std::to_string(i++), std::ios::binary);
      f.write(reinterpret_cast<const char*>(s.data()), static_cast<std::streamsize>(s.size()));
    }
    return 0;
  }
  int files = 0;
  for (int i = 1; i < argc; ++i) files += replay_dir(argv[i]);
  const auto seeds = fuzz_seeds();
  std::mt19937_64 rng(20261122);
  int mutated = 0;
  for (const auto& s : seeds) {
    LLVMFuzzerTestOneInput(s.data(), s.size());
    for (int k = 0; k < 200; ++k) {  // bit flips, truncations, insertions
      syncd::Bytes m = s;
      const int op = static_cast<int>(rng() % 3);
      if (op == 0 && !m.empty()) m[rng() % m.size()] ^= static_cast<uint8_t>(1u << (rng() % 8));
      if (op == 1 && !m.empty()) m.resize(rng() % m.size());
      if (op == 2) m.insert(m.begin() + static_cast<ptrdiff_t>(m.empty() ? 0 : rng() % m.size()), static_cast<uint8_t>(rng()));
      LLVMFuzzerTestOneInput(m.data(), m.size());
      ++mutated;
    }
  }
  std::printf("replayed %d corpus files, %zu seeds, %d mutations\n", files, seeds.size(), mutated);
  return seeds.empty() ? 1 : 0;
}
