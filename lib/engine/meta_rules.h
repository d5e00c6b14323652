// File: lib/engine/meta_rules.h
//
// MetaRules: rsync's --chmod, --chown, --usermap and --groupmap (lsyncd's rsync.chmod, .chown,
// .usermap, .groupmap), applied to the metadata of each version as it leaves a one-way sender, so
// the target gets the mapped owner and mode while the source's own index keeps what is on its disk.
// Syntax as rsync(1) documents it:
//   chmod     "D2775,F664", "Dg+s,ug+w,Fo-w,+X", "u=rwX,go=rX": comma-separated clauses, each with
//             an optional D (directories only) or F (files only) prefix, then octal digits or
//             [ugoa]*[+-=][rwxXst]*; no [ugoa] means all (rsync ignores the umask here too).
//             Symlinks are never changed, as with rsync.
//   usermap   "FROM:TO,...": FROM is a name or wildcard (* ? [...]) matched against the owner's
//             name, a number, or a numeric range LOW-HIGH matched against the id; the first match
//             wins. TO is a name (resolved on the target, numeric id kept as fallback) or a number.
//   chown     "USER:GROUP", "USER", ":GROUP": every owner and/or group becomes that one.
// Thread affinity: pure; a parsed MetaRules is immutable and may be shared between threads.
//
//   SYNCD_TRY_ASSIGN(rules, MetaRules::parse({.chmod = "Dg+s,Fo-w"}));
//   rules.apply(meta);
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "lib/base/result.h"
#include "protocol/messages.h"

namespace syncd::engine {

struct MetaRuleText {
  std::string chmod{}, chown{}, usermap{}, groupmap{};  // empty: not given
};

class MetaRules {
 public:
  // An error names the key and the clause rsync would reject.
  static Result<MetaRules> parse(const MetaRuleText& text);
  bool empty() const noexcept { return chmod_.empty() && users_.empty() && groups_.empty(); }
  bool operator==(const MetaRules&) const = default;
  // Rewrites mode, owner and group of a live record; tombstones are left alone.
  void apply(protocol::FileMeta& m) const;

  struct Chmod {
    enum class Only : uint8_t { any, dirs, files } only = Only::any;
    char op = '=';          // '+', '-', '='
    uint32_t who = 07777;   // bits this clause may touch
    uint32_t bits = 0;      // bits named (before `who` masking); X handled separately
    bool cond_x = false;    // X: execute if a directory or some execute bit is set
    bool operator==(const Chmod&) const = default;
  };
  struct IdMap {
    std::string pattern;  // name wildcard; empty when by number
    uint32_t low = 0, high = 0;
    std::string to_name;  // empty: numeric
    uint32_t to_id = 0;
    bool operator==(const IdMap&) const = default;
  };

 private:
  std::vector<Chmod> chmod_;
  std::vector<IdMap> users_, groups_;
};

}  // namespace syncd::engine
