#include "lib/runtime/actions.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "lib/base/log.h"

namespace syncd::runtime {
namespace {

spdlog::logger& lg() { return log::get(log::Module::runtime); }

const std::set<std::string> kVars = {"source", "target", "path", "pathname", "sourcePath", "sourcePathname", "sourcePathdir",
                                     "targetPath", "targetPathname", "targetPathdir"};

// The variable named at the start of `s` (after '^'), longest match, with an o./d. prefix.
std::string match_var(const std::string& s, size_t at) {
  size_t i = at;
  std::string prefix;
  if (s.compare(i, 2, "o.") == 0 || s.compare(i, 2, "d.") == 0) {
    prefix = s.substr(i, 2);
    i += 2;
  }
  size_t end = i;
  while (end < s.size() && std::isalpha(static_cast<unsigned char>(s[end]))) ++end;
  for (size_t len = end - i; len > 0; --len) {
    const std::string name = s.substr(i, len);
    if (kVars.count(name)) return prefix + name;
  }
  return {};
}

std::string parent_of(const std::string& pathname) {
  const size_t slash = pathname.rfind('/');
  return slash == std::string::npos ? std::string() : pathname.substr(0, slash + 1);
}

}  // namespace

std::vector<std::string> action_argv(const std::string& tmpl, const std::map<std::string, std::string>& vars) {
  auto value = [&](const std::string& name) {
    auto it = vars.find(name);
    return it == vars.end() ? std::string() : it->second;
  };
  if (!tmpl.empty() && tmpl[0] == '/') {
    // Run directly: words split on blanks, each ^variable replaced by its value.
    std::vector<std::string> argv;
    std::string word;
    bool in_word = false;
    for (size_t i = 0; i <= tmpl.size(); ++i) {
      if (i == tmpl.size() || std::isspace(static_cast<unsigned char>(tmpl[i]))) {
        if (in_word) argv.push_back(word);
        word.clear();
        in_word = false;
        continue;
      }
      in_word = true;
      if (tmpl[i] == '^') {
        const std::string name = match_var(tmpl, i + 1);
        if (!name.empty()) {
          word += value(name);
          i += name.size();
          continue;
        }
      }
      word += tmpl[i];
    }
    return argv;
  }
  std::string cmd;
  std::vector<std::string> order;  // distinct variables in order of first use: $1, $2, ...
  for (size_t i = 0; i < tmpl.size(); ++i) {
    if (tmpl[i] == '^') {
      const std::string name = match_var(tmpl, i + 1);
      if (!name.empty()) {
        auto it = std::find(order.begin(), order.end(), name);
        if (it == order.end()) it = order.insert(order.end(), name);
        cmd += "\"$" + std::to_string(it - order.begin() + 1) + "\"";
        i += name.size();
        continue;
      }
    }
    cmd += tmpl[i];
  }
  std::vector<std::string> argv{"/bin/sh", "-c", cmd, "/bin/sh"};
  for (const auto& n : order) argv.push_back(value(n));
  return argv;
}

std::string action_text(const std::string& tmpl, const std::map<std::string, std::string>& vars) {
  std::string out;
  for (size_t i = 0; i < tmpl.size(); ++i) {
    if (tmpl[i] == '^') {
      const std::string name = match_var(tmpl, i + 1);
      if (!name.empty()) {
        auto it = vars.find(name);
        out += it == vars.end() ? std::string() : it->second;
        i += name.size();
        continue;
      }
    }
    out += tmpl[i];
  }
  return out;
}

ActionSync::ActionSync(uvx::Loop& loop, ActionOptions opts) : loop_(loop), opts_(std::move(opts)) {}

ActionSync::~ActionSync() = default;

Status ActionSync::start() {
  SYNCD_TRY_ASSIGN(root, fs::Root::open(opts_.source));
  root_ = std::make_unique<fs::Root>(std::move(root));
  watcher_ = std::make_unique<watch::Watcher>(loop_, *root_, watch::Excludes(opts_.excludes, opts_.filters),
                                              [this](watch::Batch b) { on_batch(std::move(b)); });
  timer_ = std::make_unique<uvx::Timer>(loop_, [this] { pump(); });
  SYNCD_TRY(watcher_->start());  // watch first: nothing made after the walk below is missed
  learn_tree("");
  if (opts_.actions.count("onStartup") || opts_.functions.count("onStartup")) queue(Ev{"Startup", "", "", true, 0});
  // Without onStartup lsyncd says nothing here (its Init event is discarded); with one, the line
  // comes when the command ends.
  if (queue_.empty()) lg().debug("Startup of {}/ -> {}: no onStartup", opts_.source, opts_.target);
  pump();
  return {};
}

void ActionSync::learn_tree(const std::string& rel) {
  std::error_code ec;
  const std::filesystem::path base = opts_.source + (rel.empty() ? "" : "/" + rel);
  for (auto it = std::filesystem::recursive_directory_iterator(base, ec); !ec && it != std::filesystem::recursive_directory_iterator();
       it.increment(ec)) {
    known_.insert(std::filesystem::relative(it->path(), opts_.source, ec).string());
  }
}

void ActionSync::on_batch(watch::Batch b) {
  if (!b.error.empty()) lg().error("watcher: {}", b.error);
  if (b.overflow) {
    lg().info("--- OVERFLOW in event queue ---");  // syncd rescans; actions see no synthetic events
    return;
  }
  for (auto& e : b.events) {
    using K = watch::Event::Kind;
    switch (e.kind) {
      case K::changed: {
        // As lsyncd reports them: a file created and written is a Create (IN_CREATE) and a Modify
        // (IN_CLOSE_WRITE); a chmod/chown/touch of a known entry is an Attrib.
        if (known_.insert(e.path).second) {
          queue(Ev{"Create", e.path, "", e.is_dir, 0});
          if (e.written && !e.is_dir) queue(Ev{"Modify", e.path, "", false, 0});
        } else {
          queue(Ev{e.attrib_only ? "Attrib" : "Modify", e.path, "", e.is_dir, 0});
        }
        break;
      }
      case K::rescan: {
        // A directory that appeared: a Create for it, then for what it already holds (lsyncd's
        // recursion on directory creates).
        if (known_.insert(e.path).second) queue(Ev{"Create", e.path, "", true, 0});
        std::error_code ec;
        for (auto it = std::filesystem::recursive_directory_iterator(opts_.source + "/" + e.path, ec);
             !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
          const std::string rel = std::filesystem::relative(it->path(), opts_.source, ec).string();
          if (known_.insert(rel).second) queue(Ev{"Create", rel, "", it->is_directory(), 0});
        }
        break;
      }
      case K::removed:
        known_.erase(e.path);
        for (auto it = known_.lower_bound(e.path + "/"); it != known_.end() && it->rfind(e.path + "/", 0) == 0;) it = known_.erase(it);
        queue(Ev{"Delete", e.path, "", e.is_dir, 0});
        break;
      case K::renamed: {
        known_.erase(e.from);
        known_.insert(e.path);
        if (e.is_dir) {
          known_.erase(known_.lower_bound(e.from + "/"), known_.lower_bound(e.from + "0"));  // '0' follows '/'
          learn_tree(e.path);
        }
        if (opts_.actions.count("onMove") || opts_.functions.count("onMove")) {
          queue(Ev{"Move", e.from, e.path, e.is_dir, 0});
        } else {
          queue(Ev{"Delete", e.from, "", e.is_dir, 0});
          queue(Ev{"Create", e.path, "", e.is_dir, 0});
        }
        break;
      }
    }
  }
  pump();
}

void ActionSync::queue(Ev e) {
  // No handler: lsyncd drops the event.
  if (!opts_.actions.count("on" + e.etype) && !opts_.functions.count("on" + e.etype)) return;
  e.due_ms = loop_.now_ms() + (e.etype == "Startup" ? 0 : opts_.delay_ms);
  queue_.push_back(std::move(e));
}

std::map<std::string, std::string> ActionSync::vars_for(const Ev& e) const {
  const std::string source = opts_.source + "/";
  std::map<std::string, std::string> v{{"source", source}, {"target", opts_.target}};
  auto add = [&](const std::string& prefix, const std::string& pathname, bool is_dir) {
    const std::string path = pathname + (is_dir ? "/" : "");
    const std::string dir = parent_of(pathname);
    v[prefix + "path"] = path;
    v[prefix + "pathname"] = pathname;
    v[prefix + "sourcePath"] = source + "/" + path;
    v[prefix + "sourcePathname"] = source + "/" + pathname;
    v[prefix + "sourcePathdir"] = source + "/" + dir;
    v[prefix + "targetPath"] = opts_.target + "/" + path;
    v[prefix + "targetPathname"] = opts_.target + "/" + pathname;
    v[prefix + "targetPathdir"] = opts_.target + "/" + dir;
  };
  if (e.etype == "Move") {
    add("o.", e.path, e.is_dir);
    add("d.", e.path2, e.is_dir);
  } else if (e.etype != "Startup") {
    add("", e.path, e.is_dir);
  }
  return v;
}

// The commands one event runs: a layer-3 template gives one; a layer-2 function whatever it
// spawn()ed (none is fine).
std::vector<ActionSync::Cmd> ActionSync::commands_for(const Ev& e) {
  const std::string handler = "on" + e.etype;
  const char* event = e.etype == "Startup" ? "Init" : e.etype.c_str();
  const auto vars = vars_for(e);
  std::vector<Cmd> out;
  if (auto it = opts_.actions.find(handler); it != opts_.actions.end()) {
    const std::string& tmpl = it->second;
    // lsyncd's line for layer-3 actions.
    lg().info("Event {} {} \"{}\"", event, tmpl[0] == '/' ? "spawns" : "spawns shell", log::escape(action_text(tmpl, vars)));
    out.push_back({action_argv(tmpl, vars)});
    return out;
  }
  if (!opts_.call) return out;
  auto event_of = [&](const std::string& prefix, const std::string& etype) {
    config::LuaActions::Event ev;
    ev.etype = etype;
    ev.is_dir = e.is_dir;
    for (const auto& [k, v] : vars) {
      if (k.rfind(prefix, 0) == 0 && (prefix.empty() ? k.find('.') == std::string::npos : true)) ev.fields[k.substr(prefix.size())] = v;
      if (k == "source" || k == "target") ev.fields[k] = v;
    }
    const std::string pathname = ev.fields["pathname"];
    ev.fields["basename"] = pathname.substr(pathname.rfind('/') + 1);
    ev.fields["name"] = ev.fields["basename"] + (e.is_dir ? "/" : "");
    return ev;
  };
  Result<std::vector<config::LuaActions::Spawned>> r = Error::make(errc::internal, "no handler");
  if (e.etype == "Move") {
    const auto o = event_of("o.", "Move"), d = event_of("d.", "Move");
    r = opts_.call(handler, o, &d);
  } else {
    r = opts_.call(handler, event_of("", event), nullptr);
  }
  if (!r.ok()) {
    lg().error("{} {}: {}", handler, log::escape(e.path), r.error().context);
    return out;
  }
  for (auto& s : *r) {
    std::string text;
    for (const auto& a : s.argv) text += (text.empty() ? "" : " ") + a;
    lg().debug("Event {} spawns \"{}\"", event, log::escape(text));  // lsyncd: only with -log Exec
    out.push_back({std::move(s.argv), std::move(s.stdin_text)});
  }
  return out;
}

void ActionSync::finished(int code) {
  if (running_ev_.etype == "Startup") {
    lg().info("Startup of {}/ -> {} finished.", opts_.source, opts_.target);
  } else {
    // lsyncd names the event's (origin) path, a directory with its '/'.
    lg().info("Finished {} on {}//{}{} = {}", running_ev_.etype, opts_.source, log::escape(running_ev_.path),
              running_ev_.is_dir ? "/" : "", code);
  }
}

void ActionSync::pump() {
  released_.reset();
  if (running_) return;
  while (cmds_.empty()) {
    if (queue_.empty()) return;
    const uint64_t now = loop_.now_ms();
    if (queue_.front().due_ms > now) {
      timer_->start(queue_.front().due_ms - now);
      return;
    }
    running_ev_ = std::move(queue_.front());
    queue_.pop_front();
    auto cmds = commands_for(running_ev_);
    // A handler that spawned nothing (or no handler): lsyncd discards the event without a
    // "Finished" line, so nothing is logged.
    cmds_.assign(std::make_move_iterator(cmds.begin()), std::make_move_iterator(cmds.end()));
  }
  uvx::Process::Spec spec;
  spec.argv = std::move(cmds_.front().argv);
  // stdin text goes through an anonymous in-memory file: any size, and nothing here blocks on
  // a child that reads slowly (or never).
  UniqueFd input;
  if (const auto& text = cmds_.front().stdin_text) {
    input.reset(::memfd_create("syncd-spawn-stdin", MFD_CLOEXEC));
    if (!input || ::write(input.get(), text->data(), text->size()) != static_cast<ssize_t>(text->size()) ||
        ::lseek(input.get(), 0, SEEK_SET) != 0) {
      lg().error("on{} {}: stdin text: {}", running_ev_.etype, log::escape(running_ev_.path), std::strerror(errno));
      input.reset();
    }
    spec.stdin_fd = input.get();
  }
  cmds_.pop_front();
  spec.stdout_fd = 1;
  auto p = uvx::Process::spawn(loop_, spec, [this](int64_t status, int sig) {
    const int code = sig ? 128 + sig : static_cast<int>(status);
    if (cmds_.empty()) finished(code);
    // Destroyed from inside its own exit callback: defer to the next turn.
    timer_->start(0);
    released_ = std::move(running_);
  });
  if (!p.ok()) {
    lg().error("on{} {}: {}", running_ev_.etype, log::escape(running_ev_.path), p.error().message());
    return pump();
  }
  running_ = std::move(*p);
}

bool ActionSync::idle() const noexcept {
  return !running_ && queue_.empty() && cmds_.empty() && (!watcher_ || watcher_->pending_count() == 0);
}

LsyncdView ActionSync::lsyncd_view() const {
  // lsyncd's event names (the startup command shows as Init).
  auto name = [](const std::string& t) -> const char* {
    for (const char* n : {"Create", "Modify", "Attrib", "Delete", "Move"}) {
      if (t == n) return n;
    }
    return "Init";
  };
  LsyncdView v;
  if (running_) v.delays.push_back({"active", name(running_ev_.etype), running_ev_.path, running_ev_.path2, running_ev_.is_dir});
  for (const auto& e : queue_) v.delays.push_back({"wait", name(e.etype), e.path, e.path2, e.is_dir});
  if (watcher_) v.watches = watcher_->watches();
  return v;
}

}  // namespace syncd::runtime
