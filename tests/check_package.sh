#!/usr/bin/env bash
# The install and the .deb (issue #6): `cmake --install` gives bin/syncd, bin/lsyncd -> syncd, the
# unit, logrotate and the example configs; `cpack -G DEB` packages them (without the link: the
# postinst registers /usr/bin/lsyncd with update-alternatives, simulated here in a private
# alternatives database), and the packaged binary answers as lsyncd would.
# Usage: check_package.sh BUILD_DIR. Run by CTest as "package".
set -euo pipefail
build=$1
work=$(mktemp -d /tmp/syncd-pkg.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "package: $*" >&2; exit 1; }

DESTDIR=$work/inst cmake --install "$build" --prefix /usr >/dev/null
[[ -x $work/inst/usr/bin/syncd ]] || fail "no bin/syncd"
[[ $(readlink "$work/inst/usr/bin/lsyncd") == syncd ]] || fail "bin/lsyncd is not a link to syncd"
for f in etc/logrotate.d/syncd usr/lib/systemd/system/syncd.service \
         usr/share/doc/syncd/examples/acme2certifier-lsyncd.conf usr/share/doc/syncd/examples/three-node-two-way.lua; do
  [[ -f $work/inst/$f ]] || fail "install lacks $f"
done
grep -q '^ExecStart=/usr/bin/syncd -nodaemon \$LSYNCD_OPTIONS$' "$work/inst/usr/lib/systemd/system/syncd.service" ||
  fail "the unit does not run lsyncd's command line"
# SIGTERM to syncd alone, so the ssh clients of its sessions live until the fade has flushed.
grep -q '^KillMode=mixed$' "$work/inst/usr/lib/systemd/system/syncd.service" || fail "the unit's KillMode is not mixed"
# Invoked through the lsyncd name it behaves the same.
"$work/inst/usr/bin/lsyncd" -version | grep -q '^Version: 2.2.3' || fail "lsyncd -version"

(cd "$build" && cpack -G DEB -B "$work/deb" >/dev/null)
deb=$(ls "$work"/deb/syncd_*.deb)
dpkg-deb -x "$deb" "$work/x"
dpkg-deb -e "$deb" "$work/ctl"
[[ -x $work/x/usr/bin/syncd && ! -e $work/x/usr/bin/lsyncd ]] || fail ".deb: usr/bin/syncd without a packaged lsyncd link expected"
[[ -f $work/x/usr/lib/systemd/system/syncd.service && -f $work/x/etc/logrotate.d/syncd ]] || fail ".deb lacks the unit or logrotate"
grep -qx '/etc/logrotate.d/syncd' "$work/ctl/conffiles" || fail ".deb: logrotate snippet is not a conffile"
for field in 'Provides: lsyncd' 'Conflicts: lsyncd' 'Replaces: lsyncd'; do
  dpkg-deb -f "$deb" | grep -qx "$field" || fail ".deb control lacks '$field'"
done
# The postinst's update-alternatives call, against a private database and link directory.
mkdir -p "$work/alt/admin" "$work/alt/links" "$work/alt/bin"
sed -e "s|update-alternatives |update-alternatives --altdir $work/alt/links --admindir $work/alt/admin |" \
    -e "s|/usr/bin/lsyncd|$work/alt/bin/lsyncd|" -e "s|/usr/bin/syncd|$work/x/usr/bin/syncd|" \
    "$work/ctl/postinst" > "$work/postinst"
sh "$work/postinst" configure
"$work/alt/bin/lsyncd" -version | grep -q '^Version: 2.2.3' || fail "postinst did not make lsyncd run syncd"
echo "package: ok ($(basename "$deb"))"
