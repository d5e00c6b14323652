#include "tests/support/tmpdir.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace syncd::test {
namespace {

void remove_tree(const std::string& p) {
  struct stat st{};
  if (::lstat(p.c_str(), &st) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    ::chmod(p.c_str(), 0700);
    for (const auto& n : list_dir(p)) remove_tree(p + "/" + n);
    ::rmdir(p.c_str());
  } else {
    ::unlink(p.c_str());
  }
}

}  // namespace

TempDir::TempDir(const std::string& tag) {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/syncd-" + tag + "-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!::mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed");
  path_ = buf.data();
}

TempDir::~TempDir() { remove_tree(path_); }

void write_file(const std::string& path, ByteSpan data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  if (!f) throw std::runtime_error("write_file " + path);
}

void write_file(const std::string& path, const std::string& data) { write_file(path, as_bytes(data)); }

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("read_file " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool exists(const std::string& path) {
  struct stat st{};
  return ::lstat(path.c_str(), &st) == 0;
}

std::vector<std::string> list_dir(const std::string& path) {
  std::vector<std::string> out;
  DIR* d = ::opendir(path.c_str());
  if (!d) return out;
  while (struct dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

int run(const std::string& cmd) {
  int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

Bytes random_bytes(std::mt19937_64& rng, size_t n) {
  Bytes b(n);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) store_le(b.data() + i, rng(), 8);
  if (i < n) store_le(b.data() + i, rng(), n - i);
  return b;
}

void require_root() {
  if (::geteuid() != 0) {
    std::fprintf(stderr, "SKIP: this test needs root (owners, mounts)\n");
    std::exit(77);
  }
}

}  // namespace syncd::test
