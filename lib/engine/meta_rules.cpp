#include "lib/engine/meta_rules.h"

#include <fnmatch.h>

#include <cctype>

namespace syncd::engine {
namespace {

Error rule_error(const std::string& key, const std::string& clause, const std::string& why) {
  return Error::make(errc::unsupported, "rsync." + key + " = \"" + clause + "\": " + why);
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t at = 0;
  while (true) {
    const size_t next = s.find(sep, at);
    out.push_back(s.substr(at, next == std::string::npos ? std::string::npos : next - at));
    if (next == std::string::npos) return out;
    at = next + 1;
  }
}

bool all_digits(const std::string& s) {
  if (s.empty() || s.size() > 9) return false;  // ids fit in 32 bits
  for (char c : s) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

Status parse_chmod_clause(const std::string& clause, std::vector<MetaRules::Chmod>& out) {
  using Chmod = MetaRules::Chmod;
  size_t i = 0;
  Chmod::Only only = Chmod::Only::any;
  if (i < clause.size() && (clause[i] == 'D' || clause[i] == 'F')) {
    only = clause[i] == 'D' ? Chmod::Only::dirs : Chmod::Only::files;
    ++i;
  }
  if (i < clause.size() && std::isdigit(static_cast<unsigned char>(clause[i]))) {
    const std::string digits = clause.substr(i);
    if (digits.size() > 4 || digits.find_first_not_of("01234567") != std::string::npos) {
      return rule_error("chmod", clause, "an octal mode has 1-4 digits 0-7");
    }
    out.push_back({only, '=', 07777, static_cast<uint32_t>(std::stoul(digits, nullptr, 8)), false});
    return {};
  }
  uint32_t who = 0;
  for (; i < clause.size() && std::string_view("ugoa").find(clause[i]) != std::string_view::npos; ++i) {
    who |= clause[i] == 'u' ? 04700u : clause[i] == 'g' ? 02070u : clause[i] == 'o' ? 01007u : 07777u;
  }
  if (who == 0) who = 07777;
  if (i >= clause.size()) return rule_error("chmod", clause, "expected + - or = after the who letters");
  while (i < clause.size()) {
    const char op = clause[i];
    if (op != '+' && op != '-' && op != '=') {
      return rule_error("chmod", clause, std::string("unexpected '") + op + "' (expected + - or =)");
    }
    Chmod c{only, op, who, 0, false};
    for (++i; i < clause.size() && std::string_view("+-=").find(clause[i]) == std::string_view::npos; ++i) {
      switch (clause[i]) {
        case 'r': c.bits |= 0444; break;
        case 'w': c.bits |= 0222; break;
        case 'x': c.bits |= 0111; break;
        case 'X': c.cond_x = true; break;
        case 's': c.bits |= 06000; break;
        case 't': c.bits |= 01000; break;
        default: return rule_error("chmod", clause, std::string("unknown permission '") + clause[i] + "'");
      }
    }
    out.push_back(c);
  }
  return {};
}

Status parse_map(const std::string& key, const std::string& text, std::vector<MetaRules::IdMap>& out) {
  for (const auto& item : split(text, ',')) {
    const size_t colon = item.find(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == item.size()) {
      return rule_error(key, item, "expected FROM:TO");
    }
    const std::string from = item.substr(0, colon), to = item.substr(colon + 1);
    MetaRules::IdMap m;
    const size_t dash = from.find('-');
    if (all_digits(from)) {
      m.low = m.high = static_cast<uint32_t>(std::stoul(from));
    } else if (dash != std::string::npos && all_digits(from.substr(0, dash)) && all_digits(from.substr(dash + 1))) {
      m.low = static_cast<uint32_t>(std::stoul(from.substr(0, dash)));
      m.high = static_cast<uint32_t>(std::stoul(from.substr(dash + 1)));
      if (m.low > m.high) return rule_error(key, item, "the range is empty");
    } else {
      m.pattern = from;
    }
    if (all_digits(to)) {
      m.to_id = static_cast<uint32_t>(std::stoul(to));
    } else if (to.find_first_of(":,*?[") == std::string::npos) {
      m.to_name = to;
    } else {
      return rule_error(key, item, "the target must be one name or number");
    }
    out.push_back(std::move(m));
  }
  return {};
}

// First rule matching (name, id), applied: returns true when one did.
void map_owner(const std::vector<MetaRules::IdMap>& rules, std::string& name, uint32_t& id) {
  for (const auto& r : rules) {
    bool match;
    if (r.pattern.empty()) {
      match = id >= r.low && id <= r.high;
    } else {
      // An owner with no name here is matched by its number, as rsync does.
      const std::string subject = name.empty() ? std::to_string(id) : name;
      match = ::fnmatch(r.pattern.c_str(), subject.c_str(), 0) == 0;
    }
    if (!match) continue;
    if (r.to_name.empty()) {
      name.clear();
      id = r.to_id;
    } else {
      name = r.to_name;  // the target resolves it; the old id stays the fallback
    }
    return;
  }
}

}  // namespace

Result<MetaRules> MetaRules::parse(const MetaRuleText& text) {
  MetaRules r;
  if (!text.chmod.empty()) {
    for (const auto& clause : split(text.chmod, ',')) {
      if (clause.empty()) return rule_error("chmod", text.chmod, "empty clause");
      SYNCD_TRY(parse_chmod_clause(clause, r.chmod_));
    }
  }
  if (!text.chown.empty()) {
    const size_t colon = text.chown.find(':');
    const std::string user = text.chown.substr(0, colon);
    const std::string group = colon == std::string::npos ? "" : text.chown.substr(colon + 1);
    if (user.empty() && group.empty()) return rule_error("chown", text.chown, "expected USER:GROUP");
    if (!user.empty() && !text.usermap.empty()) return rule_error("chown", text.chown, "cannot be combined with rsync.usermap");
    if (!group.empty() && !text.groupmap.empty()) return rule_error("chown", text.chown, "cannot be combined with rsync.groupmap");
    if (!user.empty()) SYNCD_TRY(parse_map("chown", "*:" + user, r.users_));
    if (!group.empty()) SYNCD_TRY(parse_map("chown", "*:" + group, r.groups_));
  }
  if (!text.usermap.empty()) SYNCD_TRY(parse_map("usermap", text.usermap, r.users_));
  if (!text.groupmap.empty()) SYNCD_TRY(parse_map("groupmap", text.groupmap, r.groups_));
  return r;
}

void MetaRules::apply(protocol::FileMeta& m) const {
  if (m.deleted) return;
  map_owner(users_, m.user, m.uid);
  map_owner(groups_, m.group, m.gid);
  if (m.type == protocol::FileType::symlink) return;  // a symlink's mode means nothing
  const bool dir = m.type == protocol::FileType::dir;
  uint32_t mode = m.mode & 07777;
  for (const auto& c : chmod_) {
    if ((c.only == Chmod::Only::dirs && !dir) || (c.only == Chmod::Only::files && dir)) continue;
    uint32_t bits = c.bits;
    if (c.cond_x && (dir || (mode & 0111) != 0)) bits |= 0111;
    bits &= c.who;
    if (c.op == '+') mode |= bits;
    else if (c.op == '-') mode &= ~bits;
    else mode = (mode & ~c.who) | bits;
  }
  m.mode = mode;
}

}  // namespace syncd::engine
