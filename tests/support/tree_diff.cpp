#include "tests/support/tree_diff.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <map>

#include "tests/support/tmpdir.h"

namespace syncd::test {
namespace {

struct Node {
  struct stat st{};
  std::string target;
};

void collect(const std::string& root, const std::string& rel, std::map<std::string, Node>& out,
             const std::function<bool(const std::string&)>& ignore) {
  const std::string dir = rel.empty() ? root : root + "/" + rel;
  for (const auto& name : list_dir(dir)) {
    const std::string r = rel.empty() ? name : rel + "/" + name;
    if (ignore && ignore(r)) continue;
    Node n;
    if (::lstat((root + "/" + r).c_str(), &n.st) != 0) continue;
    if (S_ISLNK(n.st.st_mode)) {
      char buf[4096];
      ssize_t k = ::readlink((root + "/" + r).c_str(), buf, sizeof buf);
      if (k > 0) n.target.assign(buf, static_cast<size_t>(k));
    }
    out[r] = n;
    if (S_ISDIR(n.st.st_mode)) collect(root, r, out, ignore);
  }
}

}  // namespace

std::vector<std::string> tree_diff(const std::string& a, const std::string& b,
                                   const std::function<bool(const std::string&)>& ignore, bool dir_mtimes) {
  std::map<std::string, Node> ta, tb;
  collect(a, "", ta, ignore);
  collect(b, "", tb, ignore);
  std::vector<std::string> d;
  for (const auto& [p, na] : ta) {
    auto it = tb.find(p);
    if (it == tb.end()) {
      d.push_back("missing in target: " + p);
      continue;
    }
    const Node& nb = it->second;
    const auto& sa = na.st;
    const auto& sb = nb.st;
    if ((sa.st_mode & S_IFMT) != (sb.st_mode & S_IFMT)) {
      d.push_back("type differs: " + p);
      continue;
    }
    if (!S_ISLNK(sa.st_mode) && (sa.st_mode & 07777) != (sb.st_mode & 07777)) d.push_back("mode differs: " + p);
    if (sa.st_uid != sb.st_uid || sa.st_gid != sb.st_gid) d.push_back("owner differs: " + p);
    if (S_ISREG(sa.st_mode)) {
      if (sa.st_size != sb.st_size || read_file(a + "/" + p) != read_file(b + "/" + p)) {
        d.push_back("content differs: " + p);
      }
    }
    if (S_ISLNK(sa.st_mode) && na.target != nb.target) d.push_back("symlink target differs: " + p);
    if ((S_ISCHR(sa.st_mode) || S_ISBLK(sa.st_mode)) && sa.st_rdev != sb.st_rdev) d.push_back("device number differs: " + p);
    if ((!S_ISDIR(sa.st_mode) || (dir_mtimes && !p.empty())) && (sa.st_mtim.tv_sec != sb.st_mtim.tv_sec || sa.st_mtim.tv_nsec != sb.st_mtim.tv_nsec)) {
      d.push_back("mtime differs: " + p);
    }
  }
  for (const auto& [p, nb] : tb) {
    if (!ta.count(p)) d.push_back("extra in target: " + p);
  }
  return d;
}

}  // namespace syncd::test

namespace syncd::test {

void make_sample_tree(const std::string& root) {
  const std::string r = "'" + root + "'";
  const int rc = run("mkdir -p " + r + "/etc/ca " + r + "/empty/dir && printf PRIVATE > " + r + "/etc/ca/key.pem" +
                     " && chown 1234:5678 " + r + "/etc/ca/key.pem && chmod 0600 " + r + "/etc/ca/key.pem" +
                     " && chmod 2750 " + r + "/etc && chmod 1777 " + r + "/empty" +
                     " && ln -s ca/key.pem " + r + "/etc/link" +
                     " && touch -h -d '2020-02-02 02:02:02.123456789' " + r + "/etc/link" +
                     " && touch -d '2001-01-01 01:01:01.987654321' " + r + "/etc/ca/key.pem" +
                     // Directory times last (entries made inside move them), as an old tree has.
                     " && touch -d '2011-11-11 11:11:11.5' " + r + "/etc/ca " + r + "/empty/dir" +
                     " && touch -d '2012-12-12 12:12:12.25' " + r + "/etc " + r + "/empty");
  if (rc != 0) std::abort();
}

}  // namespace syncd::test
