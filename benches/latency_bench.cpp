// latency bench (issue #3): how long a file written in SRC takes to be complete in DST, for
// `syncd -nodaemon -direct` (with and without fsync) and, in the same run, lsyncd 2.2.3 on the
// same workload (`-direct` with -delay 0, and default.rsync with delay = 0).
//
//   build/benches/latency_bench [--samples 200] [--burst 1000] [--syncd PATH] [--lsyncd PATH]
//                              [--dir BASE]  (where SRC/DST go; default /tmp)
//
// Latency: a 2 KiB file is written (open, write, close) into SRC; the clock stops when DST has
// it complete, seen through inotify on DST (IN_MOVED_TO: syncd renames a finished temp into
// place; IN_CLOSE_WRITE: lsyncd's cp and rsync write in place or rename). One file at a time,
// p50/p99 over the samples. Burst: 1000 files of 1.5 KiB written back to back; time until the
// last one is complete in DST.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

std::string tmpdir(const std::string& base) {
  std::string t = base + "/syncd-latency-XXXXXX";
  if (!::mkdtemp(t.data())) {
    std::perror(("mkdtemp in " + base).c_str());
    std::exit(2);
  }
  return t;
}

void write_file(const std::string& path, size_t n, char fill) {
  std::string data(n, fill);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0 || ::write(fd, data.data(), data.size()) != static_cast<ssize_t>(data.size())) std::abort();
  ::close(fd);
}

std::string slurp(const std::string& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

struct Proc {
  pid_t pid = -1;
  ~Proc() { stop(); }
  void stop() {
    if (pid > 0) {
      ::kill(pid, SIGTERM);
      ::waitpid(pid, nullptr, 0);
      pid = -1;
    }
  }
};

// Starts argv with stdout/stderr to `log`, then waits (inotify on the log's directory) for
// `ready` to appear in the log. Returns false after 60 s.
bool start(Proc& p, const std::vector<std::string>& argv, const std::string& log, const std::string& ready) {
  p.pid = ::fork();
  if (p.pid == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    std::vector<char*> a;
    for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
    a.push_back(nullptr);
    ::execv(a[0], a.data());
    ::_exit(127);
  }
  const std::string dir = log.substr(0, log.rfind('/'));
  int in = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  ::inotify_add_watch(in, dir.c_str(), IN_MODIFY | IN_CREATE);
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  bool ok = false;
  while (Clock::now() < deadline) {
    if (slurp(log).find(ready) != std::string::npos) {
      ok = true;
      break;
    }
    struct pollfd pf{in, POLLIN, 0};
    ::poll(&pf, 1, 200);
    char buf[4096];
    while (::read(in, buf, sizeof buf) > 0) {
    }
  }
  ::close(in);
  return ok;
}

// Watches DST for complete files: a name counts once it exists there with the size the bench
// wrote (an earlier empty version of the same name, which a tool may ship for the create, does
// not). wait(prefix, n, size) returns once n names with `prefix` are complete.
class Arrivals {
 public:
  explicit Arrivals(std::string dst) : dst_(std::move(dst)) {
    fd_ = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    ::inotify_add_watch(fd_, dst_.c_str(), IN_MOVED_TO | IN_CLOSE_WRITE);
  }
  ~Arrivals() { ::close(fd_); }
  bool wait(const std::string& prefix, size_t count, off_t size, int timeout_ms = 30000) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      // Names seen but not yet complete are looked at again after every wake-up.
      for (auto it = pending_.begin(); it != pending_.end();) {
        struct stat st{};
        if (::stat((dst_ + "/" + *it).c_str(), &st) == 0 && st.st_size == size) {
          complete_.insert(*it);
          it = pending_.erase(it);
        } else {
          ++it;
        }
      }
      size_t have = 0;
      for (const auto& n : complete_) have += n.rfind(prefix, 0) == 0;
      if (have >= count) return true;
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) return false;
      struct pollfd pf{fd_, POLLIN, 0};
      if (::poll(&pf, 1, static_cast<int>(left)) <= 0) continue;
      alignas(inotify_event) char buf[64 * 1024];
      ssize_t n;
      while ((n = ::read(fd_, buf, sizeof buf)) > 0) {
        for (ssize_t off = 0; off < n;) {
          auto* ev = reinterpret_cast<inotify_event*>(buf + off);
          off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
          if (ev->len) {
            std::string name(ev->name);
            if (name.rfind(".", 0) != 0 && !complete_.count(name)) pending_.insert(name);  // temps start with '.'
          }
        }
      }
    }
  }

 private:
  std::string dst_;
  int fd_;
  std::set<std::string> pending_, complete_;
};

struct Result {
  std::string name;
  double p50 = -1, p99 = -1, burst = -1, writing = -1;
  double write_p50 = -1;  // the bench's own open+write+close of one sample file: the filesystem's floor
  bool ok = false;
};

Result measure(const std::string& name, const std::vector<std::string>& argv, const std::string& ready,
               const std::string& src, const std::string& dst, const std::string& log, int samples,
               int burst) {
  Result r;
  r.name = name;
  Proc p;
  Arrivals arr(dst);
  if (!start(p, argv, log, ready)) {
    std::fprintf(stderr, "%s: did not start; log:\n%s\n", name.c_str(), slurp(log).c_str());
    return r;
  }
  std::vector<double> ms, wms;
  for (int i = 0; i < samples; ++i) {
    char f[32];
    std::snprintf(f, sizeof f, "lat%06d", i);  // fixed width: no name is a prefix of another
    const auto t0 = Clock::now();
    write_file(src + "/" + std::string(f), 2048, 'a' + (i % 26));
    wms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    if (!arr.wait(f, 1, 2048)) {
      std::fprintf(stderr, "%s: %s never arrived\n", name.c_str(), f);
      return r;
    }
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  r.p50 = ms[ms.size() / 2];
  r.p99 = ms[std::min(ms.size() - 1, ms.size() * 99 / 100)];
  std::sort(wms.begin(), wms.end());
  r.write_p50 = wms[wms.size() / 2];
  const auto t0 = Clock::now();
  for (int i = 0; i < burst; ++i) write_file(src + "/burst" + std::to_string(i), 1536, 'b');
  r.writing = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  if (!arr.wait("burst", static_cast<size_t>(burst), 1536, 120000)) {
    std::fprintf(stderr, "%s: burst incomplete\n", name.c_str());
    return r;
  }
  r.burst = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  r.ok = true;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  int samples = 200, burst = 1000;
  std::string self = argv[0];
  std::string syncd = self.substr(0, self.rfind('/')) + "/../syncd/syncd";
  std::string lsyncd = "/usr/bin/lsyncd";
  std::string base = "/tmp";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--samples" && i + 1 < argc) samples = std::atoi(argv[++i]);
    if (a == "--burst" && i + 1 < argc) burst = std::atoi(argv[++i]);
    if (a == "--syncd" && i + 1 < argc) syncd = argv[++i];
    if (a == "--lsyncd" && i + 1 < argc) lsyncd = argv[++i];
    if (a == "--dir" && i + 1 < argc) base = argv[++i];
  }
  std::vector<Result> results;
  auto run = [&](const std::string& name, auto make_argv, const std::string& ready) {
    const std::string dir = tmpdir(base);
    const std::string src = dir + "/src", dst = dir + "/dst";
    ::mkdir(src.c_str(), 0755);
    ::mkdir(dst.c_str(), 0755);
    results.push_back(measure(name, make_argv(dir, src, dst), ready, src, dst, dir + "/log", samples, burst));
    (void)std::system(("rm -rf " + dir).c_str());
  };
  run("syncd -direct (fsync)", [&](const std::string& d, const std::string& s, const std::string& t) {
    return std::vector<std::string>{syncd, "-nodaemon", "-direct", s, t, "-statedir", d + "/state"};
  }, "finished: 0");
  run("syncd -direct (no fsync)", [&](const std::string& d, const std::string& s, const std::string& t) {
    return std::vector<std::string>{syncd, "-nodaemon", "-nofsync", "-direct", s, t, "-statedir", d + "/state"};
  }, "finished: 0");
  const bool have_lsyncd = ::access(lsyncd.c_str(), X_OK) == 0;
  if (have_lsyncd) {
    run("lsyncd -direct -delay 0", [&](const std::string&, const std::string& s, const std::string& t) {
      return std::vector<std::string>{lsyncd, "-nodaemon", "-delay", "0", "-direct", s, t};
    }, "finished");
    run("lsyncd default.rsync delay=0", [&](const std::string& d, const std::string& s, const std::string& t) {
      std::ofstream(d + "/lsyncd.conf") << "settings{ nodaemon = true }\n"
                                        << "sync{ default.rsync, source = \"" << s << "\", target = \"" << t
                                        << "\", delay = 0 }\n";
      return std::vector<std::string>{lsyncd, d + "/lsyncd.conf"};
    }, "finished");
  } else {
    std::printf("lsyncd not found at %s: comparison rows skipped (apt-get install lsyncd)\n", lsyncd.c_str());
  }
  std::printf("\nlatency bench: %d x 2 KiB files one at a time, then a burst of %d x 1.5 KiB\n\n", samples, burst);
  std::printf("%-32s %10s %10s %12s %14s %10s %12s\n", "tool", "p50 ms", "p99 ms", "burst ms",
              "after writes", "(writing)", "1 write p50");
  for (const auto& r : results) {
    if (!r.ok) {
      std::printf("%-32s %10s\n", r.name.c_str(), "FAILED");
      continue;
    }
    std::printf("%-32s %10.3f %10.3f %12.1f %14.1f %10.1f %12.3f\n", r.name.c_str(), r.p50, r.p99, r.burst,
                r.burst - r.writing, r.writing, r.write_p50);
  }
  if (results.size() >= 3 && results[0].ok && results[2].ok) {
    std::printf("\nsyncd (fsync) vs lsyncd -direct -delay 0: p50 %.1fx faster, burst %.1fx faster\n",
                results[2].p50 / results[0].p50, results[2].burst / results[0].burst);
  }
  if (results.size() >= 4 && results[0].ok && results[3].ok) {
    std::printf("syncd (fsync) vs lsyncd default.rsync delay=0: p50 %.1fx faster, burst %.1fx faster\n",
                results[3].p50 / results[0].p50, results[3].burst / results[0].burst);
  }
  std::printf("burst ms: from the first write to the last file complete in DST; 'after writes': the\n"
              "part after the bench finished writing (the writing itself is the filesystem's cost);\n"
              "'1 write p50': the bench's own open+write+close of one 2 KiB file in SRC, inside p50 -\n"
              "the tool then creates one more file in DST, so p50 cannot go much below twice it\n");
  std::printf("targets: fsync p50 <= 1 ms, p99 <= 5 ms; no-fsync p50 <= 0.2 ms; burst <= 150 ms\n");
  for (const auto& r : results) {
    if (!r.ok) return 1;
  }
  return 0;
}
