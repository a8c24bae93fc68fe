#!/bin/sh
# ctest "ship": the install layout, the manual pages and the systemd units
# of a built tree.
#
#   test/test_ship.sh BUILD_DIR SOURCE_DIR
#
# Installs the tree into a temporary DESTDIR (prefix /usr), checks every
# file the packages rely on is there, lints the three manual pages with
# mandoc (any warning fails), runs `systemd-analyze verify` on each unit
# (its ExecStart pointed at the staged binaries), checks both units'
# `systemd-analyze security` exposure stays at most 2.0, then uninstalls
# and checks nothing is left.  Exit 77 (skipped) without mandoc or
# systemd-analyze.
set -eu

BUILD=$(cd "$1" && pwd)
SRC=$(cd "$2" && pwd)

for t in mandoc systemd-analyze; do
	command -v "$t" >/dev/null 2>&1 || {
		echo "SKIP: $t is not installed (scripts/deps.sh installs it)"
		exit 77
	}
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tlsplex-ship.XXXXXX")
# cmake --install rewrites BUILD/install_manifest.txt; put back the one of
# an operator's own `make install`, so that `make uninstall` stays right.
manifest=$BUILD/install_manifest.txt
[ ! -f "$manifest" ] || cp "$manifest" "$tmp/manifest.saved"
restore() {
	if [ -f "$tmp/manifest.saved" ]; then
		cp "$tmp/manifest.saved" "$manifest"
	else
		rm -f "$manifest"
	fi
	rm -rf "$tmp"
}
trap restore EXIT
fail() {
	echo "FAIL: $*" >&2
	exit 1
}

dest=$tmp/dest
DESTDIR=$dest cmake --install "$BUILD" --prefix /usr >"$tmp/install.log" 2>&1 ||
	{ cat "$tmp/install.log" >&2; fail "cmake --install failed"; }
for f in usr/bin/tlsplex-relay usr/bin/tlsplex-gateway \
	usr/share/man/man8/tlsplex-relay.8 usr/share/man/man8/tlsplex-gateway.8 \
	usr/share/man/man5/tlsplex.ini.5 \
	usr/share/doc/tlsplex/examples/relay.ini usr/share/doc/tlsplex/examples/gateway.ini \
	usr/share/doc/tlsplex/CONFIG.md \
	usr/lib/systemd/system/tlsplex-relay.service \
	usr/lib/systemd/system/tlsplex-gateway.service \
	usr/lib/sysusers.d/tlsplex.conf; do
	[ -f "$dest/$f" ] || fail "install did not write /$f"
done
[ -x "$dest/usr/bin/tlsplex-relay" ] || fail "/usr/bin/tlsplex-relay is not executable"
if grep -q 'add_executable(tlsplex-report' "$SRC/CMakeLists.txt"; then
	[ -x "$dest/usr/bin/tlsplex-report" ] || fail "install did not write /usr/bin/tlsplex-report"
fi
echo "ok: install layout ($(find "$dest" -type f | wc -l) files)"

man=$dest/usr/share/man
for p in "$man/man8/tlsplex-relay.8" "$man/man8/tlsplex-gateway.8" "$man/man5/tlsplex.ini.5"; do
	# mandoc exits 2 for a warning, 3 or more for an error.
	if ! mandoc -T lint -W warning "$p" >"$tmp/lint" 2>&1 || [ -s "$tmp/lint" ]; then
		cat "$tmp/lint" >&2
		fail "mandoc -T lint reports $(basename "$p")"
	fi
done
echo "ok: mandoc -T lint: 3 pages without warnings"

mkdir -p "$tmp/units"
for d in relay gateway; do
	u=$tmp/units/tlsplex-$d.service
	sed "s#/usr/bin/tlsplex-#$dest/usr/bin/tlsplex-#g" \
		"$dest/usr/lib/systemd/system/tlsplex-$d.service" >"$u"
	grep -q "^ExecStart=$dest/usr/bin/tlsplex-$d -c /etc/tlsplex/$d.ini\$" "$u" ||
		fail "tlsplex-$d.service does not start /usr/bin/tlsplex-$d -c /etc/tlsplex/$d.ini"
	grep -q '^ExecReload=/bin/kill -HUP \$MAINPID$' "$u" ||
		fail "tlsplex-$d.service does not reload with SIGHUP"
	MANPATH=$man SYSTEMD_LOG_LEVEL=notice systemd-analyze verify "$u" >"$tmp/verify" 2>&1 ||
		{ cat "$tmp/verify" >&2; fail "systemd-analyze verify tlsplex-$d.service"; }
	if [ -s "$tmp/verify" ]; then
		cat "$tmp/verify" >&2
		fail "systemd-analyze verify complains about tlsplex-$d.service"
	fi
	score=$(systemd-analyze security --offline=yes "$u" 2>/dev/null |
		sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
	[ -n "$score" ] || fail "no systemd-analyze security score for tlsplex-$d.service"
	awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }' ||
		fail "tlsplex-$d.service exposure $score is above 2.0"
	echo "ok: tlsplex-$d.service verifies; exposure $score"
done

# The uninstall target reads the manifest the install wrote.
cp "$manifest" "$tmp/manifest"
DESTDIR=$dest cmake -DMANIFEST="$tmp/manifest" -P "$SRC/scripts/uninstall.cmake" \
	>"$tmp/uninstall.log" 2>&1 || { cat "$tmp/uninstall.log" >&2; fail "uninstall failed"; }
left=$(find "$dest" -type f | head -n 5)
[ -z "$left" ] || fail "uninstall left files behind: $left"
echo "ok: uninstall removed every installed file"
