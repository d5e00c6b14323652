// File: tests/support/wakeups.h
//
// How often each thread of a running process was switched in (voluntary + involuntary context
// switches, /proc/PID/task/TID/status): a thread that sleeps in epoll_wait or on a futex and is
// never woken keeps its count. Used to check that an idle daemon stays asleep.
#pragma once

#include <dirent.h>
#include <sys/types.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

namespace syncd::test {

// tid -> "name: switches". Threads that end between two reads simply differ.
inline std::map<long, std::string> wakeups(pid_t pid) {
  std::map<long, std::string> out;
  const std::string dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream in(dir + "/" + e->d_name + "/status");
    std::string line, name;
    long total = 0;
    while (std::getline(in, line)) {
      if (line.rfind("Name:", 0) == 0) name = line.substr(line.find_first_not_of(" \t", 5));
      if (line.find("ctxt_switches:") != std::string::npos) total += std::atol(line.c_str() + line.find(':') + 1);
    }
    out[std::atol(e->d_name)] = name + ": " + std::to_string(total);
  }
  ::closedir(d);
  return out;
}

inline std::string describe(const std::map<long, std::string>& w) {
  std::ostringstream s;
  for (const auto& [tid, what] : w) s << "  " << tid << " " << what << "\n";
  return s.str();
}

}  // namespace syncd::test
