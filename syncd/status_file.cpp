#include "syncd/status_file.h"

#include <fcntl.h>
#include <unistd.h>

#include "lib/base/unique_fd.h"

namespace syncd::status_file {

std::string format(const Report& r) {
  char date[64];
  std::tm tm{};
  ::localtime_r(&r.now, &tm);
  std::strftime(date, sizeof date, "%a %b %e %H:%M:%S %Y", &tm);  // os.date()'s "%c" in the C locale
  std::string out = std::string("Lsyncd status report at ") + date + "\n\n";
  for (const auto& s : r.syncs) {
    out += s.name + " source=" + s.source + "\n";
    out += "There are " + std::to_string(s.delays.size()) + " delays\n";
    for (const auto& d : s.delays) {
      std::string status = d.status;
      status.resize(7, ' ');
      out += status + d.etype + " /" + d.path + (d.is_dir ? "/" : "");
      if (!d.path2.empty()) out += " -> /" + d.path2 + (d.is_dir ? "/" : "");
      out += "\n";
    }
    // lsyncd 2.2/2.3 never list excludes here (LSYNCD-COMPAT §4.1 note), and syncd has no
    // filter{} rules of its own to show.
    out += "Filtering:\n  nothing.\n\n\n";
  }
  out += "Inotify watching " + std::to_string(r.watches.size()) + " directories\n";
  for (const auto& [wd, rel] : r.watches) {
    out += "  " + std::to_string(wd) + ": " + r.root + (rel.empty() ? "" : rel + "/") + "\n";
  }
  for (const auto& line : r.extra) out += line + "\n";
  return out;
}

Status write_atomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".syncd-tmp";
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644));
  if (!fd) return Error::from_errno("status file " + tmp);
  size_t off = 0;
  while (off < text.size()) {
    const ssize_t n = ::write(fd.get(), text.data() + off, text.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      const auto e = Error::from_errno("write status file " + tmp);
      ::unlink(tmp.c_str());
      return e;
    }
    off += static_cast<size_t>(n);
  }
  fd.reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const auto e = Error::from_errno("rename status file to " + path);
    ::unlink(tmp.c_str());
    return e;
  }
  return {};
}

}  // namespace syncd::status_file
