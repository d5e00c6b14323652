#include "lib/fs/accounts.h"

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>

#include <mutex>
#include <unordered_map>
#include <vector>

#include "lib/fs/fingerprint.h"

namespace syncd::fs {
namespace {

using Clock = std::chrono::steady_clock;

// Identity of an account database file: a change (edit, or rename into place) drops the cache.
struct FileStamp {
  uint64_t ino = 0;
  int64_t mtime_ns = 0;
  int64_t size = 0;
  bool operator==(const FileStamp&) const = default;
  static FileStamp of(const char* path) {
    struct stat st{};
    if (::stat(path, &st) != 0) return {};
    return {static_cast<uint64_t>(st.st_ino),
            ns_of(st.st_mtim.tv_sec, st.st_mtim.tv_nsec),
            static_cast<int64_t>(st.st_size)};
  }
};

// One cache per direction and database. Misses are cached too (an unknown owner on every file of
// a tree would otherwise cost a full parse each).
template <typename Key, typename Value>
class Cache {
 public:
  explicit Cache(const char* db) : db_(db) {}

  template <typename Lookup>
  Value get(const Key& k, Lookup&& lookup) {
    std::lock_guard lock(mu_);
    const auto now = Clock::now();
    // One stat per lookup (a few µs, against a full parse): an edited database empties the cache.
    if (const FileStamp s = FileStamp::of(db_); !(s == stamp_)) {
      stamp_ = s;
      map_.clear();
    }
    if (auto it = map_.find(k); it != map_.end() && now - it->second.at < kAccountsTtl) {
      return it->second.value;
    }
    Value v = lookup(k);
    map_[k] = Entry{v, now};
    return v;
  }

 private:
  struct Entry {
    Value value;
    Clock::time_point at;
  };
  const char* db_;
  std::mutex mu_;
  FileStamp stamp_;
  std::unordered_map<Key, Entry> map_;
};

constexpr size_t kBuf = 16384;

}  // namespace

std::string user_name(uint32_t uid) {
  static Cache<uint32_t, std::string> cache("/etc/passwd");
  return cache.get(uid, [](uint32_t id) {
    struct passwd pw{};
    struct passwd* res = nullptr;
    std::vector<char> buf(kBuf);
    if (::getpwuid_r(id, &pw, buf.data(), buf.size(), &res) == 0 && res) return std::string(pw.pw_name);
    return std::string();
  });
}

std::string group_name(uint32_t gid) {
  static Cache<uint32_t, std::string> cache("/etc/group");
  return cache.get(gid, [](uint32_t id) {
    struct group gr{};
    struct group* res = nullptr;
    std::vector<char> buf(kBuf);
    if (::getgrgid_r(id, &gr, buf.data(), buf.size(), &res) == 0 && res) return std::string(gr.gr_name);
    return std::string();
  });
}

std::optional<uint32_t> uid_of(const std::string& name) {
  static Cache<std::string, std::optional<uint32_t>> cache("/etc/passwd");
  return cache.get(name, [](const std::string& n) -> std::optional<uint32_t> {
    struct passwd pw{};
    struct passwd* res = nullptr;
    std::vector<char> buf(kBuf);
    if (::getpwnam_r(n.c_str(), &pw, buf.data(), buf.size(), &res) == 0 && res) return pw.pw_uid;
    return std::nullopt;
  });
}

std::optional<uint32_t> gid_of(const std::string& name) {
  static Cache<std::string, std::optional<uint32_t>> cache("/etc/group");
  return cache.get(name, [](const std::string& n) -> std::optional<uint32_t> {
    struct group gr{};
    struct group* res = nullptr;
    std::vector<char> buf(kBuf);
    if (::getgrnam_r(n.c_str(), &gr, buf.data(), buf.size(), &res) == 0 && res) return gr.gr_gid;
    return std::nullopt;
  });
}

}  // namespace syncd::fs
