#include "syncd/cli.h"

#include <cctype>
#include <cstdlib>

namespace syncd::cli {
namespace {
Error cli_error(std::string m) { return Error::make(errc::unsupported, std::move(m)); }

Result<long> number(const std::string& opt, const std::string& v) {
  char* end = nullptr;
  const long n = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0') return cli_error(opt + " needs a number, not '" + v + "'");
  return n;
}
}  // namespace

const char* usage_text() {
  return "USAGE:\n"
         "  runs a config file:\n"
         "    lsyncd [OPTIONS] [CONFIG-FILE]\n"
         "  default rsync behaviour:\n"
         "    lsyncd [OPTIONS] -rsync [SOURCE] [TARGET]\n"
         "  default rsync with mv's through ssh:\n"
         "    lsyncd [OPTIONS] -rsyncssh [SOURCE] [HOST] [TARGETDIR]\n"
         "  default local copying mechanisms (cp|mv|rm):\n"
         "    lsyncd [OPTIONS] -direct [SOURCE] [TARGETDIR]\n"
         "OPTIONS:\n"
         "  -delay SECS -help -insist -log all|scarce|[Category] -logfile FILE -nodaemon -onepass\n"
         "  -pidfile FILE -sshopts STR -version\n"
         "syncd's own options (apply to every sync; configs have them as sync{ syncd = {...} }):\n"
         "  -bidirectional   two-way sync with the -rsyncssh HOST (whose syncd does the same)\n"
         "  -peer HOST DIR   two-way: one more node of the mesh of the -rsyncssh before it (repeatable; up to 4 peers)\n"
         "  -remote-rundir D run directory of the daemon on the host given just before (-rsyncssh or -peer)\n"
         "  -statedir DIR    where the index lives (default /var/lib/syncd/<kind>-<hash>; a normal user's under ~/.local/state/syncd)\n"
         "  -rundir DIR      where the control socket goes (default /run/syncd)\n"
         "  -exclude PATTERN lsyncd exclude pattern (repeatable)\n"
         "  -hard-links      rsync.hard_links: names of one inode arrive as one inode (also two-way)\n"
         "  -rsh CMD         ssh command line (as rsync.rsh; default \"ssh\")\n"
         "  -remote-syncd P  syncd program on the host (default \"syncd\" on PATH)\n"
         "  -remote-statedir D  state directory of `attach` on the host\n"
         "  -transport T     auto (default), libssh2 or openssh\n"
         "  -conflict-hook CMD  two-way: run CMD PATH COPY ROOT for each conflict copy made here\n"
         "  -max-delete-share PCT  mass-delete brake: a restart's scan missing more than PCT% of\n"
         "                   the files propagates no deletes, a first start prunes no extras that\n"
         "                   are more than PCT% of the target's files (default 50; 100 = off)\n"
         "  -tombstone-min-age S, -tombstone-max-age S  keep delete records (default 7 d / 180 d)\n"
         "  -nofsync         do not fsync applied files (benchmarks only)\n"
         "SUBCOMMANDS:\n"
         "  syncd attach DIR [-statedir D] [-rundir D] [-bidirectional] [-nofsync]   (run by sshd)\n"
         "  syncd status [DIR] [-rundir D] [--json] [--wait-idle [MS]]\n"
         "  syncd conflicts DIR [--json]   (conflict copies in the tree; exit 1 if any)\n";
}

Result<Invocation> parse(const std::vector<std::string>& raw) {
  Invocation inv;
  auto& cl = inv.cl;
  auto& x = inv.extras;
  std::vector<std::string> files;
  for (size_t i = 0; i < raw.size(); ++i) {
    std::string a = raw[i];
    if (a.size() > 1 && a[0] == '-') {
      a.erase(0, a.rfind("--", 0) == 0 ? 2 : 1);  // one dash or two, as lsyncd
    } else {
      files.push_back(a);
      continue;
    }
    auto arg = [&](size_t n) -> Result<std::vector<std::string>> {
      if (i + n >= raw.size()) return cli_error("missing parameter for -" + a);
      std::vector<std::string> v(raw.begin() + static_cast<long>(i) + 1, raw.begin() + static_cast<long>(i + n) + 1);
      i += n;
      return v;
    };
    if (a == "help") {
      inv.action = Invocation::Action::help;
    } else if (a == "version") {
      inv.action = Invocation::Action::version;
    } else if (a == "nodaemon") {
      cl.nodaemon = true;
    } else if (a == "insist") {
      cl.insist = true;
    } else if (a == "onepass") {
      cl.onepass = true;
    } else if (a == "log") {
      SYNCD_TRY_ASSIGN(v, arg(1));
      const std::string& cat = v[0];
      if (cat != "all" && cat != "scarce" && (cat.empty() || !std::isupper(static_cast<unsigned char>(cat[0])))) {
        return cli_error("'" + cat + "' is not a valid logging category");
      }
      inv.log.push_back(cat);
    } else if (a == "logfile") {
      SYNCD_TRY_ASSIGN(v, arg(1));
      cl.logfile = v[0];
    } else if (a == "pidfile") {
      SYNCD_TRY_ASSIGN(v, arg(1));
      cl.pidfile = v[0];
    } else if (a == "delay") {
      SYNCD_TRY_ASSIGN(v, arg(1));
      char* end = nullptr;
      const double d = std::strtod(v[0].c_str(), &end);
      if (v[0].empty() || *end != '\0' || d < 0) return cli_error("delay must be a number and >= 0");
      cl.delay = d;
    } else if (a == "rsync" || a == "direct") {
      SYNCD_TRY_ASSIGN(v, arg(2));
      cl.syncs.push_back({a == "rsync" ? config::Kind::rsync : config::Kind::direct, v});
      x.remotes.emplace_back();
    } else if (a == "rsyncssh") {
      SYNCD_TRY_ASSIGN(v, arg(3));
      cl.syncs.push_back({config::Kind::rsyncssh, v});
      x.remotes.emplace_back();
    } else if (a == "sshopts") {
      SYNCD_TRY_ASSIGN(v, arg(1));
      x.rsh = "ssh " + v[0];
    } else if (a == "nofsync") {
      x.fsync = false;
    } else if (a == "bidirectional") {
      x.two_way = true;
    } else if (a == "hard-links") {
      x.hard_links = true;
    } else if (a == "peer") {
      SYNCD_TRY_ASSIGN(v, arg(2));
      if (!cl.syncs.empty() && cl.syncs.back().kind == config::Kind::direct) return cli_error("-peer must follow -rsyncssh");
      x.remotes.back().peers.push_back({v[0], v[1], std::nullopt});
    } else if (a == "remote-rundir") {
      SYNCD_TRY_ASSIGN(v, arg(1));
      auto& r = x.remotes.back();
      if (!r.peers.empty()) {
        r.peers.back().remote_rundir = v[0];
      } else if (!cl.syncs.empty() && cl.syncs.back().kind != config::Kind::direct) {
        r.remote_rundir = v[0];
      } else {
        return cli_error("-remote-rundir must follow -rsyncssh or -peer");
      }
    } else if (a == "statedir" || a == "remote-statedir" || a == "rsh" || a == "remote-syncd" ||
               a == "transport" || a == "rundir" || a == "conflict-hook" || a == "exclude") {
      SYNCD_TRY_ASSIGN(v, arg(1));
      if (a == "statedir") x.state_dir = v[0];
      if (a == "remote-statedir") x.remote_state_dir = v[0];
      if (a == "rsh") x.rsh = v[0];
      if (a == "remote-syncd") x.remote_syncd = v[0];
      if (a == "transport") x.transport = v[0];
      if (a == "rundir") x.rundir = v[0];
      if (a == "conflict-hook") x.conflict_hook = v[0];
      if (a == "exclude") x.excludes.push_back(v[0]);
    } else if (a == "max-delete-share") {
      SYNCD_TRY_ASSIGN(v, arg(1));
      SYNCD_TRY_ASSIGN(n, number("-max-delete-share", v[0]));
      if (n < 0 || n > 100) return cli_error("-max-delete-share takes a percentage (0-100)");
      x.max_delete_share = n;
    } else if (a == "tombstone-min-age" || a == "tombstone-max-age") {
      SYNCD_TRY_ASSIGN(v, arg(1));
      SYNCD_TRY_ASSIGN(n, number("-" + a, v[0]));
      (a == "tombstone-min-age" ? x.tombstone_min_age : x.tombstone_max_age) = n;
    } else {
      return cli_error("unknown option command line option " + raw[i]);
    }
  }
  if (inv.action != Invocation::Action::run) return inv;
  if (files.size() > 1) return cli_error("There can only be one config file in the command line.");
  if (!files.empty() && !cl.syncs.empty()) return cli_error("There cannot be command line syncs and a config file together.");
  if (!files.empty()) inv.config_file = files[0];
  if (files.empty() && cl.syncs.empty()) inv.action = Invocation::Action::help;
  return inv;
}

}  // namespace syncd::cli
