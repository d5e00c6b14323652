#include "syncd/plan.h"

#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "lib/runtime/control.h"
#include "lib/runtime/tree_overlap.h"

namespace syncd::plan {
namespace {

Error plan_error(const config::Sync& s, const std::string& what) {
  return Error::make(errc::unsupported, s.name + " (" + s.where + "): " + what);
}

std::string strip_slash(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

// rsync keys syncd does as lsyncd's rsync would without being told (they are its model of "in
// sync": owner, group, mode, mtime, symlinks; compression is always zstd).
const std::set<std::string> kAlwaysOn = {"archive", "owner", "group", "perms", "times", "links",
                                         "compress", "protect_args", "executability"};
// rsync.checksum, ignore_times: syncd always decides by content hash, never by size and mtime
// alone; append_verify: a grown file goes as a delta (its new bytes) and the whole result is
// verified. Keys that only tune lsyncd's rsync process or its output.
const std::set<std::string> kNoMeaning = {"binary", "verbose", "quiet", "rsh", "rsync_path", "password_file", "checksum",
                                          "ignore_times", "append_verify", "whole_file", "temp_dir",
                                          "ipv4", "ipv6", "_extra"};

// Keys syncd does for one-way syncs (MetaRules on the sender, MirrorRules on the target).
const std::set<std::string> kOneWay = {"chmod", "chown", "usermap", "groupmap", "existing", "update", "inplace",
                                       "backup", "backup_dir", "suffix", "omit_link_times",
                                       "copy_links", "copy_unsafe_links", "copy_dirlinks", "delete_excluded",
                                       "prune_empty_dirs"};
// Keys syncd does one- and two-way (cvs_exclude: more excludes, honoured like them).
const std::set<std::string> kHonoured = {"xattrs", "acls", "one_file_system", "bwlimit", "timeout", "sparse", "devices", "specials", "cvs_exclude",
                                          "hard_links"};

std::string rsync_value(const config::Sync& s, const std::string& key) {
  auto it = s.rsync.find(key);
  return it == s.rsync.end() || it->second == "false" ? "" : it->second;
}

// rsync.cvs_exclude (rsync -C): rsync's list of files CVS ignores, then the words of
// ~/.cvsignore and of $CVSIGNORE; a "!" clears what came before it, as in CVS.
std::vector<std::string> cvs_excludes() {
  std::vector<std::string> out = {"RCS", "SCCS", "CVS", "CVS.adm", "RCSLOG", "cvslog.*", "tags", "TAGS",
                                  ".make.state", ".nse_depinfo", "*~", "#*", ".#*", ",*", "_$*", "*$",
                                  "*.old", "*.bak", "*.BAK", "*.orig", "*.rej", ".del-*", "*.a", "*.olb",
                                  "*.o", "*.obj", "*.so", "*.exe", "*.Z", "*.elc", "*.ln", "core",
                                  ".svn/", ".git/", ".hg/", ".bzr/"};
  auto add_words = [&](std::istream& in) {
    for (std::string w; in >> w;) {
      if (w == "!") {
        out.clear();
      } else {
        out.push_back(w);
      }
    }
  };
  std::string home;
  if (const char* h = std::getenv("HOME"); h != nullptr && *h) home = h;
  if (home.empty()) {
    if (const struct passwd* pw = ::getpwuid(::geteuid()); pw != nullptr && pw->pw_dir != nullptr) home = pw->pw_dir;
  }
  if (!home.empty()) {
    std::ifstream f(home + "/.cvsignore");
    add_words(f);
  }
  if (const char* e = std::getenv("CVSIGNORE"); e != nullptr) {
    std::istringstream s(e);
    add_words(s);
  }
  return out;
}


// rsync.devices / rsync.specials; lsyncd's archive = true sets both where they are not given.
bool archive_key(const config::Sync& s, const std::string& key) {
  if (auto it = s.rsync.find(key); it != s.rsync.end()) return it->second == "true";
  return rsync_value(s, "archive") == "true";
}

fs::XattrNames xattr_names_of(const config::Sync& s) {
  return {.user = rsync_value(s, "xattrs") == "true", .acls = rsync_value(s, "acls") == "true"};
}

// rsync's --bwlimit=RATE: KiB/s, or with a K/M/G suffix (1024-based); 0 = no limit.
Result<uint64_t> bwlimit_of(const config::Sync& s) {
  const std::string v = rsync_value(s, "bwlimit");
  if (v.empty()) return uint64_t{0};
  char* end = nullptr;
  const double n = std::strtod(v.c_str(), &end);
  double unit = 1024;
  const std::string suffix = end ? std::string(end) : "";
  if (suffix == "k" || suffix == "K") unit = 1024;
  else if (suffix == "m" || suffix == "M") unit = 1024.0 * 1024;
  else if (suffix == "g" || suffix == "G") unit = 1024.0 * 1024 * 1024;
  else if (!suffix.empty()) unit = -1;
  if (end == v.c_str() || unit < 0 || !(n >= 0) || n * unit > 1e15) {
    return plan_error(s, "rsync.bwlimit = " + v + ": expected a rate in KiB/s, optionally with a K, M or G suffix");
  }
  return static_cast<uint64_t>(n * unit);
}

Result<uint64_t> io_timeout_of(const config::Sync& s) {
  const std::string v = rsync_value(s, "timeout");
  if (v.empty()) return uint64_t{0};
  char* end = nullptr;
  const long n = std::strtol(v.c_str(), &end, 10);
  if (end == v.c_str() || *end != '\0' || n < 0) return plan_error(s, "rsync.timeout = " + v + ": expected seconds");
  return static_cast<uint64_t>(n);
}

Result<engine::MetaRules> meta_rules_of(const config::Sync& s) {
  auto r = engine::MetaRules::parse({.chmod = rsync_value(s, "chmod"), .chown = rsync_value(s, "chown"),
                                     .usermap = rsync_value(s, "usermap"), .groupmap = rsync_value(s, "groupmap")});
  if (!r.ok()) return plan_error(s, r.error().message());
  return r;
}

runtime::MirrorRules mirror_rules_of(const config::Sync& s) {
  runtime::MirrorRules m;
  m.delete_startup = s.del == config::DeleteMode::all || s.del == config::DeleteMode::startup;
  m.delete_running = s.del == config::DeleteMode::all || s.del == config::DeleteMode::running;
  m.existing = rsync_value(s, "existing") == "true";
  m.update = rsync_value(s, "update") == "true";
  m.inplace = rsync_value(s, "inplace") == "true";
  // rsync: --backup-dir implies --backup.
  m.backup.dir = rsync_value(s, "backup_dir");
  m.backup.enabled = rsync_value(s, "backup") == "true" || !m.backup.dir.empty();
  if (auto it = s.rsync.find("suffix"); it != s.rsync.end()) m.backup.suffix = it->second;
  m.dir_times = rsync_value(s, "omit_dir_times") != "true";
  m.link_times = rsync_value(s, "omit_link_times") != "true";
  m.dry_run = rsync_value(s, "dry_run") == "true";
  m.prune_empty_dirs = rsync_value(s, "prune_empty_dirs") == "true";
  return m;
}

void rsync_warnings(const config::Sync& s, bool two_way, std::vector<std::string>& out) {
  for (const auto& [k, v] : s.rsync) {
    const std::string where = s.name + " (" + s.where + "): rsync." + k + " = " + v;
    if (kHonoured.count(k)) {
    } else if (k == "keep_dirlinks") {
      // Refused by design, not "yet": rsync -K writes through a symlink on the target.
      if (v != "false") out.push_back(where + " is not honoured: syncd never writes through a symlink on the target (SECURITY.md); where the source has a directory, a symlink there is replaced by one");
    } else if (k == "dry_run") {
      // Honoured one-way; refused for two-way syncs (below).
    } else if (k == "omit_dir_times") {
      // One-way: honoured. Two-way syncs never replicate directory times (both nodes add entries
      // to the same directories), which is what this key asks for.
    } else if (kOneWay.count(k)) {
      if (two_way && v != "false") out.push_back(where + " does not apply to two-way sync (both nodes author the same files)");
    } else if (kAlwaysOn.count(k)) {
      if (v == "false") out.push_back(where + " is not honoured: syncd always replicates " + k);
    } else if (k == "binary") {
      if (v != "/usr/bin/rsync" && v != "rsync") out.push_back(where + ": syncd does not run rsync, so this program is not run");
    } else if (k == "rsync_path") {
      out.push_back(where + ": the remote program is syncd (syncd = { remoteSyncd = ... }), not rsync");
    } else if (k == "append") {
      if (v != "false") {
        out.push_back(where + ": syncd sends a grown file's new bytes as a delta and verifies the whole file, as "
                      "append_verify does; unlike rsync --append it also replicates files that shrank or changed before their end");
      }
    } else if (k == "password_file") {
      out.push_back(where + ": rsync daemon passwords do not apply to syncd's SSH transport");
    } else if (kNoMeaning.count(k)) {
      // temp_dir: syncd stages beside the target and hides its temp names; whole_file: syncd
      // decides whole or delta itself; ipv4/ipv6 and rsh go into the ssh command line.
    } else if (v != "false") {
      out.push_back(where + " is not honoured by syncd yet");
    }
  }
  if (!two_way && rsync_value(s, "inplace") == "true") {
    const std::string where = s.name + " (" + s.where + "): rsync.inplace";
    if (rsync_value(s, "backup") == "true" || !rsync_value(s, "backup_dir").empty()) {
      out.push_back(where + " is not used with backup: each replaced file is kept whole, so the new one is written beside it");
    }
    if (rsync_value(s, "sparse") == "true") {
      out.push_back(where + " is not used with sparse: holes need every block of a file rewritten");
    }
  }
  if (!s.rsync_extra.empty()) {
    std::string words;
    for (const auto& w : s.rsync_extra) words += (words.empty() ? "" : " ") + w;
    out.push_back(s.name + " (" + s.where + "): rsync._extra (" + words + ") is not used: syncd does not run rsync");
  }
}

Status check_actions(const config::Sync& s) {
  for (const auto& k : {"action", "collect", "prepare", "full"}) {
    if (s.user_actions.count(k)) {
      return plan_error(s, std::string("a custom ") + k + " (lsyncd layer 1) is not supported by syncd; "
                           "use default.rsync, default.rsyncssh or default.direct");
    }
  }
  if (auto it = s.user_actions.find("init"); it != s.user_actions.end() && it->second != "boolean") {
    return plan_error(s, "a custom init (lsyncd layer 1) is not supported by syncd; only init = false is");
  }
  bool any = false;
  for (const auto& [k, type] : s.user_actions) {
    if (k == "init" || (k == "onMove" && type == "boolean")) continue;
    if (type != "string" && type != "function") {
      return plan_error(s, k + " is a " + type + ": an action is a command string (layer 3) or a function (layer 2)");
    }
    any = true;
  }
  if (s.kind == config::Kind::custom && !any) return plan_error(s, "no actions specified.");
  return {};
}

// Two one-way pushes into one directory of one host, or one inside the other's: as for -direct
// (runtime::check_targets_apart), on the paths as given (the peer's are not resolved here) and
// the host without its user.
Status check_pushes_apart(const Node& a, const Node& b) {
  const auto writer = [](const Node& n, const runtime::PeerSpec& p, const watch::Excludes& ex) {
    const runtime::MirrorRules r = mirror_rules_of(n.syncs[0]);
    return runtime::TargetWriter{n.syncs[0].name, p.target, p.host, r.delete_startup || r.delete_running,
                                 rsync_value(n.syncs[0], "delete_excluded") == "true", &ex};
  };
  const auto host = [](const std::string& h) { return h.substr(h.find('@') + 1); };
  const auto ea = runtime::source_excludes(a.push.excludes, a.push.filters, a.push.source, a.push.per_dir_excludes);
  const auto eb = runtime::source_excludes(b.push.excludes, b.push.filters, b.push.source, b.push.per_dir_excludes);
  for (const auto& pa : a.push.peers) {
    for (const auto& pb : b.push.peers) {
      if (host(pa.host) != host(pb.host)) continue;
      SYNCD_TRY(runtime::check_writers_apart(writer(a, pa, ea), writer(b, pb, eb)));
    }
  }
  return {};
}

}  // namespace

std::string absolute(const std::string& p) {
  if (p.empty() || p[0] == '/') return strip_slash(p);
  char buf[PATH_MAX];
  if (::realpath(p.c_str(), buf) != nullptr) return buf;
  if (::getcwd(buf, sizeof buf) == nullptr) return p;
  return strip_slash(std::string(buf) + "/" + p);
}

Result<Plan> make(const config::Config& cfg, const cli::Extras& x,
                  std::string (*default_state_dir)(const std::string&, const std::string&)) {
  Plan plan;
  plan.warnings = cfg.warnings;
  std::map<std::string, size_t> push_by_source;
  bool first_remote = true;
  for (size_t index = 0; index < cfg.syncs.size(); ++index) {
    const config::Sync& s = cfg.syncs[index];
    SYNCD_TRY(check_actions(s));
    const std::string src = strip_slash(s.source);
    if (s.kind == config::Kind::custom) {
      // Layer 3: the config's commands, run per event as lsyncd runs them.
      Node n;
      n.type = Node::Type::actions;
      n.syncs.push_back(s);
      n.rundir = x.rundir.value_or(s.syncd.rundir.value_or(runtime::kDefaultRunDir));
      n.target_text = s.target;
      n.actions.source = src;
      n.actions.target = s.target;
      n.actions.actions = s.string_actions;
      for (const auto& [k, type] : s.user_actions) {
        if (type == "function" && k.rfind("on", 0) == 0) n.actions.functions.insert(k);
      }
      if (!n.actions.functions.empty() && cfg.lua) {
        n.actions.call = [lua = cfg.lua, nth = index + 1](const std::string& handler, const config::LuaActions::Event& e,
                                                          const config::LuaActions::Event* d) { return lua->call(nth, handler, e, d); };
      }
      n.actions.excludes = s.excludes;
      for (const auto& [sign, pat] : s.filters) n.actions.filters.push_back({sign == '+', pat});
      n.actions.excludes.insert(n.actions.excludes.end(), x.excludes.begin(), x.excludes.end());
      n.actions.delay_ms = s.delay_given ? static_cast<uint32_t>(s.delay * 1000 + 0.5) : 0;
      plan.nodes.push_back(std::move(n));
      continue;
    }
    std::string host, dir;
    bool remote = s.kind == config::Kind::rsyncssh;
    if (remote) {
      host = s.host;
      dir = strip_slash(s.targetdir);
    } else {
      const std::string& t = s.target;
      if (t.rfind("rsync://", 0) == 0 || t.find("::") != std::string::npos) {
        return plan_error(s, "rsync daemon targets (" + t + ") are not supported by syncd; use default.rsyncssh");
      }
      const size_t colon = t.find(':');
      if (s.kind == config::Kind::rsync && colon != std::string::npos && t.find('/') > colon) {
        remote = true;
        host = t.substr(0, colon);
        dir = strip_slash(t.substr(colon + 1));
        if (dir.empty()) dir = ".";
      } else {
        dir = absolute(t);
      }
    }
    if (!s.init) plan.warnings.push_back(s.name + ": init = false: syncd still compares the trees at startup (its index makes that cheap); nothing is copied that is already in sync");
    const bool two_way = remote && s.bidirectional.value_or(x.two_way || src == dir);
    rsync_warnings(s, two_way, plan.warnings);
    // Running a two-way node "for real" when the config asked for a dry run would write both
    // trees: refused, not warned.
    if (two_way && rsync_value(s, "dry_run") == "true") {
      return plan_error(s, "rsync.dry_run = true cannot be honoured by a two-way sync (both nodes author and apply changes); remove it or run one-way");
    }
    SYNCD_TRY_ASSIGN(meta_rules, meta_rules_of(s));
    SYNCD_TRY_ASSIGN(bwlimit, bwlimit_of(s));
    SYNCD_TRY_ASSIGN(io_timeout, io_timeout_of(s));
    if (two_way) meta_rules = {};
    runtime::MirrorRules mirror_rules = mirror_rules_of(s);
    mirror_rules.max_delete_share = static_cast<int>(x.max_delete_share.value_or(s.syncd.max_delete_share.value_or(50)));
    const fs::XattrNames xattrs = xattr_names_of(s);
    const bool one_file_system = rsync_value(s, "one_file_system") == "true";
    fs::Root::FollowLinks follow;
    if (!two_way) {
      follow.all = rsync_value(s, "copy_links") == "true";
      follow.unsafe = rsync_value(s, "copy_unsafe_links") == "true";
      follow.dirs = rsync_value(s, "copy_dirlinks") == "true";
    }
    const bool sparse = rsync_value(s, "sparse") == "true";
    // rsync.hard_links, one- and two-way: names of one inode travel as links (FILE_VERSION link_to).
    const bool hard_links = rsync_value(s, "hard_links") == "true" || x.hard_links;
    const bool devices = archive_key(s, "devices"), specials = archive_key(s, "specials");
    std::vector<std::string> excludes = s.excludes;
    std::vector<watch::FilterRule> filters;
    for (const auto& [sign, pat] : s.filters) filters.push_back({sign == '+', pat});
    excludes.insert(excludes.end(), x.excludes.begin(), x.excludes.end());
    mirror_rules.excludes = excludes;
    mirror_rules.filters = filters;
    if (rsync_value(s, "cvs_exclude") == "true") {
      // After the sync's own rules, as rsync adds them; perishable on the target.
      mirror_rules.perishable = cvs_excludes();
      excludes.insert(excludes.end(), mirror_rules.perishable.begin(), mirror_rules.perishable.end());
      mirror_rules.per_dir_excludes = ".cvsignore";
      plan.notes.push_back(s.name + ": rsync.cvs_exclude: " + std::to_string(mirror_rules.perishable.size()) +
                           " patterns (rsync's CVS list, ~/.cvsignore, $CVSIGNORE) and each directory's .cvsignore");
    }
    mirror_rules.delete_excluded = rsync_value(s, "delete_excluded") == "true";

    const uint32_t delay_ms = s.delay_given ? static_cast<uint32_t>(s.delay * 1000 + 0.5) : 0;
    if (s.delay_given) {
      char secs[32];
      std::snprintf(secs, sizeof secs, "%g", s.delay);
      plan.notes.push_back(s.name + ": delay " + secs +
                           " s as configured (changes wait that long from the first of a batch, or until " +
                           std::to_string(s.max_delays) + " wait)");
    } else {
      plan.notes.push_back(s.name + ": no delay configured: syncd ships each change at once (lsyncd's " +
                           config::kind_name(s.kind) + " would wait " + std::to_string(static_cast<long>(s.delay)) + " s)");
    }
    const bool fsync = x.fsync && s.syncd.fsync.value_or(true);
    const std::string rundir = x.rundir.value_or(s.syncd.rundir.value_or(runtime::kDefaultRunDir));

    if (!remote) {
      Node n;
      n.type = Node::Type::direct;
      n.syncs.push_back(s);
      n.rundir = rundir;
      n.init = s.init;
      n.target_text = dir + "/";
      auto& o = n.direct;
      o.source = src;
      o.target = dir;
      n.state_kind = "direct";
      n.state_key = src + "\n" + dir;
      o.state_dir = absolute(x.state_dir.value_or(s.syncd.state_dir.value_or(default_state_dir(n.state_kind, n.state_key))));
      o.excludes = excludes;
      o.filters = filters;
      o.per_dir_excludes = mirror_rules.per_dir_excludes;
      o.fsync = fsync;
      o.rules = mirror_rules;
      o.sender.dir_times = mirror_rules.dir_times;
      o.sender.root_meta = true;
      o.sender.hard_links = hard_links;
      o.xattrs = xattrs;
      o.one_file_system = one_file_system;
      o.follow_links = follow;
      o.bwlimit_bytes_per_s = bwlimit;
      o.sparse = sparse;
      o.devices = devices;
      o.specials = specials;
      if (io_timeout > 0) plan.warnings.push_back(s.name + " (" + s.where + "): rsync.timeout has no effect on a local target (no connection can stall)");
      o.sender.meta_rules = meta_rules;
      o.sender.delay_ms = delay_ms;
      o.sender.max_delays = static_cast<size_t>(s.max_delays);
      o.sender.max_delete_share =
          static_cast<uint32_t>(x.max_delete_share.value_or(s.syncd.max_delete_share.value_or(50)));
      plan.nodes.push_back(std::move(n));
      continue;
    }

    if (!s.bidirectional && !x.two_way && two_way) {
      plan.notes.push_back(s.name + ": source and targetdir are the same directory (" + src +
                           "): two-way sync with " + host + ", whose syncd must run the same config the other way "
                           "(bidirectional = false in the sync{} makes it a one-way push)");
    }
    std::vector<std::string> remote_args;
    if (!fsync) remote_args.push_back("-nofsync");
    if (auto d = x.remote_state_dir ? x.remote_state_dir : s.syncd.remote_state_dir) remote_args.insert(remote_args.end(), {"-statedir", *d});
    if (two_way) remote_args.push_back("-bidirectional");
    if (xattrs.user) remote_args.push_back("-xattrs");
    if (xattrs.acls) remote_args.push_back("-acls");
    if (sparse) remote_args.push_back("-sparse");
    if (devices) remote_args.push_back("-devices");
    if (specials) remote_args.push_back("-specials");
    if (!two_way) {
      for (auto& a : mirror_rules.attach_args()) remote_args.push_back(std::move(a));
    }
    if (two_way && s.del != config::DeleteMode::all) {
      plan.warnings.push_back(s.name + ": delete = " + s.delete_raw + " does not apply to two-way sync (deletes are versions there, TWO-WAY.md)");
    }
    std::vector<runtime::PeerSpec> peers;
    runtime::PeerSpec main_peer{host, dir, {}};
    // The command line's -remote-rundir and -peer: those given before any sync go to the first
    // sync to a host, those after a command-line sync to that sync.
    std::vector<const cli::Extras::Remote*> given;
    if (first_remote && !x.remotes.empty()) given.push_back(&x.remotes[0]);
    if (index + 1 < x.remotes.size()) given.push_back(&x.remotes[index + 1]);
    std::optional<std::string> rr = s.syncd.remote_rundir;
    for (const auto* g : given) rr = g->remote_rundir ? g->remote_rundir : rr;
    if (rr) main_peer.remote_args = {"-rundir", *rr};
    peers.push_back(main_peer);
    for (const auto& [h, d] : s.syncd.peers) peers.push_back({h, strip_slash(d), {}});
    for (const auto* g : given) {
      for (const auto& p : g->peers) {
        runtime::PeerSpec ps{p.host, p.dir, {}};
        if (p.remote_rundir) ps.remote_args = {"-rundir", *p.remote_rundir};
        peers.push_back(ps);
      }
    }
    first_remote = false;

    if (auto it = push_by_source.find(src); it != push_by_source.end()) {
      Node& n = plan.nodes[it->second];
      if (n.push.two_way != two_way) {
        return plan_error(s, "pushes " + src + " like " + n.syncs[0].name + ", but " +
                                 (two_way ? "two-way while it is one-way" : "one-way while it is two-way") +
                                 "; a source is either one-way or two-way with all its peers");
      }
      if (!(n.push.xattrs == xattrs)) {
        return plan_error(s, "pushes " + src + " like " + n.syncs[0].name + " but with different rsync.xattrs/acls; "
                                 "one tree replicates one set of extended attributes");
      }
      if (!(n.push.sender.meta_rules == meta_rules)) {
        return plan_error(s, "pushes " + src + " like " + n.syncs[0].name + " with different rsync.chmod/chown/usermap/groupmap; "
                                 "the metadata of one source is mapped one way for all its targets");
      }
      for (auto& p : peers) {
        p.remote_args.insert(p.remote_args.end(), remote_args.begin(), remote_args.end());
        n.push.peers.push_back(std::move(p));
      }
      // Devices and specials: the one source tree replicates them when any of its syncs does.
      if (n.push.per_dir_excludes.empty()) n.push.per_dir_excludes = mirror_rules.per_dir_excludes;
      n.push.devices = n.push.devices || devices;
      n.push.specials = n.push.specials || specials;
      // Directory times travel when any target keeps them; one that omits them ignores them.
      n.push.sender.dir_times = n.push.sender.dir_times || (!two_way && mirror_rules.dir_times);
      n.push.sender.hard_links = n.push.sender.hard_links || hard_links;
      n.push.sender.root_meta = n.push.sender.root_meta || !two_way;  // a two-way receiver ignores it
      n.syncs.push_back(s);
      n.target_text += ", " + host + ":" + dir + "/";
      continue;
    }
    Node n;
    n.type = Node::Type::push;
    n.syncs.push_back(s);
    n.rundir = rundir;
    n.init = s.init;
    n.target_text = host + ":" + dir + "/";
    auto& o = n.push;
    o.source = src;
    for (auto& p : peers) p.remote_args.insert(p.remote_args.end(), remote_args.begin(), remote_args.end());
    o.peers = std::move(peers);
    n.state_kind = "push";
    n.state_key = src + "\n" + host + "\n" + dir;
    o.state_dir = absolute(x.state_dir.value_or(s.syncd.state_dir.value_or(default_state_dir(n.state_kind, n.state_key))));
    o.excludes = excludes;
    o.filters = filters;
    o.per_dir_excludes = mirror_rules.per_dir_excludes;
    o.rsh = x.rsh.value_or(config::ssh_command_line(s));
    o.remote_syncd = x.remote_syncd.value_or(s.syncd.remote_syncd.value_or("syncd"));
    o.transport = x.transport.value_or(s.syncd.transport.value_or("auto"));
    o.two_way = two_way;
    o.conflict_hook = x.conflict_hook.value_or(s.syncd.conflict_hook.value_or(""));
    o.tombstone_min_age_s = static_cast<uint64_t>(x.tombstone_min_age.value_or(s.syncd.tombstone_min_age.value_or(7 * 86400)));
    o.tombstone_max_age_s = static_cast<uint64_t>(x.tombstone_max_age.value_or(s.syncd.tombstone_max_age.value_or(180 * 86400)));
    o.max_delete_share = static_cast<uint32_t>(x.max_delete_share.value_or(s.syncd.max_delete_share.value_or(50)));
    o.apply.fsync = fsync;
    o.apply.sparse = sparse;
    o.sender.delay_ms = delay_ms;
    o.sender.max_delays = static_cast<size_t>(s.max_delays);
    o.sender.meta_rules = meta_rules;
    o.sender.dir_times = !two_way && mirror_rules.dir_times;
    o.sender.hard_links = hard_links;
    o.sender.root_meta = !two_way;
    o.xattrs = xattrs;
    o.one_file_system = one_file_system;
    o.follow_links = follow;
    o.devices = devices;
    o.specials = specials;
    o.bwlimit_bytes_per_s = bwlimit;
    o.io_timeout_s = io_timeout;
    push_by_source[src] = plan.nodes.size();
    plan.nodes.push_back(std::move(n));
  }
  if (x.state_dir && plan.nodes.size() > 1) {
    for (auto& n : plan.nodes) {
      if (n.type == Node::Type::actions) continue;
      const std::string d = default_state_dir(n.state_kind, n.state_key);
      (n.type == Node::Type::direct ? n.direct.state_dir : n.push.state_dir) = absolute(*x.state_dir) + d.substr(d.rfind('/'));
    }
  }
  // A daemon holds its index exclusively (store::Index::Sharing): two nodes on one state
  // directory would otherwise fail only at start-up, after SQLite's busy wait.
  std::map<std::string, const Node*> by_state;
  for (const auto& n : plan.nodes) {
    if (n.type == Node::Type::actions) continue;
    const std::string& d = n.type == Node::Type::direct ? n.direct.state_dir : n.push.state_dir;
    if (auto [it, fresh] = by_state.emplace(d, &n); !fresh) {
      return Error::make(errc::unsupported, "syncs " + it->second->syncs[0].name + " and " + n.syncs[0].name +
                                                " share the state directory " + d + "; give each its own (syncd = { stateDir = ... })");
    }
  }
  for (size_t i = 0; i < plan.nodes.size(); ++i) {
    for (size_t j = i + 1; j < plan.nodes.size(); ++j) {
      const Node &a = plan.nodes[i], &b = plan.nodes[j];
      if (a.type == Node::Type::direct && b.type == Node::Type::direct) {
        SYNCD_TRY(runtime::check_targets_apart(a.syncs[0].name, a.direct, b.syncs[0].name, b.direct));
      } else if (a.type == Node::Type::push && b.type == Node::Type::push && !a.push.two_way && !b.push.two_way) {
        SYNCD_TRY(check_pushes_apart(a, b));
      }
    }
  }
  for (const auto& n : plan.nodes) {
    if (n.type == Node::Type::push && n.push.peers.size() > 4 && n.push.two_way) {
      return Error::make(errc::unsupported, "a two-way mesh has at most 5 nodes (this one and 4 peers); " + n.push.source + " has " +
                                                std::to_string(n.push.peers.size()) + " peers");
    }
  }
  return plan;
}

}  // namespace syncd::plan
