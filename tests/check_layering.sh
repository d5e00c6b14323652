#!/usr/bin/env bash
# Fails if any module includes a header from a module it may not depend on (DESIGN.md §2:
# syncd/ -> lib/runtime -> other lib/ modules -> protocol/ -> lib/base), or includes <uv.h> /
# <libssh2.h> outside the modules allowed to. Run by CTest as "layering".
set -uo pipefail
cd "$(dirname "$0")/.."

# module: the project folders its files may include from (itself is always allowed).
declare -A allowed=(
  [lib/base]=""
  [protocol]="lib/base"
  [lib/codec]="lib/base"
  [lib/uvx]="lib/base"
  [lib/delta]="lib/base lib/codec"
  [lib/fs]="lib/base protocol"
  [lib/store]="lib/base lib/codec lib/delta lib/fs protocol"
  [lib/watch]="lib/base lib/uvx lib/fs protocol"
  [lib/apply]="lib/base lib/codec lib/delta lib/fs lib/store protocol"
  [lib/engine]="lib/base lib/store lib/delta protocol"
  [lib/transport]="lib/base lib/uvx lib/codec protocol"
  [lib/config]="lib/base"
  [lib/runtime]="lib/base lib/uvx lib/codec lib/delta lib/fs lib/store lib/watch lib/apply lib/engine lib/transport lib/config protocol"
  [syncd]="lib/base lib/codec lib/uvx lib/runtime lib/config"
)
declare -A uv_ok=([lib/uvx]=1 [lib/watch]=1 [lib/transport]=1 [lib/runtime]=1)

bad=0
for mod in "${!allowed[@]}"; do
  [[ -d $mod ]] || continue
  while IFS= read -r -d '' f; do
    while IFS= read -r inc; do
      target=$(sed -E 's/#include "([^"]+)".*/\1/' <<<"$inc")
      dep=$(dirname "$target")
      [[ $dep == "$mod" ]] && continue
      ok=0
      for a in ${allowed[$mod]}; do [[ $dep == "$a" ]] && ok=1; done
      if [[ $ok == 0 ]]; then
        echo "layering: $f includes $target ($mod may not depend on $dep)"
        bad=1
      fi
    done < <(grep -E '^#include "' "$f")
    if grep -qE '^#include <uv\.h>' "$f" && [[ -z ${uv_ok[$mod]:-} || $f == *.h && $mod != lib/uvx ]]; then
      echo "layering: $f includes <uv.h> (only lib/uvx, or .cpp files of watch/transport/runtime)"
      bad=1
    fi
    if grep -qE '^#include <libssh2' "$f" && [[ $mod != lib/transport || $f == *.h ]]; then
      echo "layering: $f includes libssh2 (only lib/transport/*.cpp)"
      bad=1
    fi
  done < <(find "$mod" -name '*.h' -print0 -o -name '*.cpp' -print0)
done
# Every folder under lib/ must have a row above, so a new module cannot dodge the check.
for d in lib/*/; do
  d=${d%/}
  if [[ -z ${allowed[$d]+x} ]]; then
    echo "layering: $d has no row in tests/check_layering.sh"
    bad=1
  fi
done
[[ $bad == 0 ]] && echo "layering: ok"
exit $bad
