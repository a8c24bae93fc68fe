#!/bin/sh
# make deb: builds the Debian package from debian/ with dpkg-buildpackage
# in a clean copy of the tree (the files git tracks or would track), runs
# lintian on it (any error fails), checks its contents and, where podman
# and the base image exist, installs and purges it in a container.
#
#   scripts/deb.sh [OUTDIR]       default build-deb; the .deb lands there
#
# Needs dpkg-dev, debhelper, lintian and the Build-Depends of
# debian/control (scripts/deps.sh ship).  About a minute on 2 cores.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-build-deb}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

fail() {
	echo "deb: FAILED: $*" >&2
	exit 1
}

for t in dpkg-buildpackage dh lintian git; do
	command -v "$t" >/dev/null 2>&1 || fail "$t not found; run scripts/deps.sh ship"
done
version=$(dpkg-parsechangelog -l "$ROOT/debian/changelog" -S Version)
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
work=$OUT/src
rm -rf "$work" "$OUT"/tlsplex_*
mkdir -p "$work/tlsplex-$version"
tree=$work/tlsplex-$version
(cd "$ROOT" && git ls-files -co --exclude-standard -z | xargs -0 tar -cf - --no-recursion) |
	tar -xf - -C "$tree" || fail "cannot copy the source tree"

echo "deb: dpkg-buildpackage in $tree (log: $OUT/build.log)"
(cd "$tree" && dpkg-buildpackage -us -uc -b -j"$(nproc 2>/dev/null || echo 2)") >"$OUT/build.log" 2>&1 ||
	{ tail -n 40 "$OUT/build.log" >&2; fail "dpkg-buildpackage"; }
deb=$work/tlsplex_${version}_$arch.deb
[ -f "$deb" ] || fail "no $deb"
mv "$deb" "$work/tlsplex_${version}_$arch.changes" "$OUT/" 2>/dev/null || true
mv "$work"/tlsplex-dbgsym_* "$work"/tlsplex_*.buildinfo "$OUT/" 2>/dev/null || true
deb=$OUT/tlsplex_${version}_$arch.deb

# lintian: errors fail; warnings are shown.
lintian --fail-on error --tag-display-limit 0 "$deb" | tee "$OUT/lintian.log" ||
	fail "lintian reports errors (see $OUT/lintian.log)"

dpkg-deb -c "$deb" | awk '{ print $6 }' | sed 's#^\./#/#' >"$OUT/contents"
for f in /usr/bin/tlsplex-relay /usr/bin/tlsplex-gateway \
	/lib/systemd/system/tlsplex-relay.service /lib/systemd/system/tlsplex-gateway.service \
	/usr/lib/sysusers.d/tlsplex.conf /usr/share/man/man5/tlsplex.ini.5.gz \
	/usr/share/man/man8/tlsplex-relay.8.gz /usr/share/man/man8/tlsplex-gateway.8.gz \
	/usr/share/doc/tlsplex/examples/relay.ini /usr/share/doc/tlsplex/examples/gateway.ini \
	/etc/tlsplex/; do
	grep -qx -- "$f" "$OUT/contents" || fail "the package lacks $f"
done
dpkg-deb -e "$deb" "$work/control"
grep -q systemd-sysusers "$work/control/postinst" || fail "the postinst does not create the tlsplex user"
rm -rf "$work"

# Where podman and the base image are at hand (make docker-test makes it):
# install the package in a throwaway bookworm container, check the user,
# /etc/tlsplex and the units, then purge it.
base=docker.io/library/debian:bookworm-slim
export CONTAINERS_CONF=${CONTAINERS_CONF:-$ROOT/docker/containers.conf}
if [ "$(id -u)" -eq 0 ] && command -v podman >/dev/null 2>&1 &&
	podman image exists "$base" 2>/dev/null; then
	echo "deb: installing it in a $base container (log: $OUT/install.log)"
	podman run --rm --no-healthcheck -v "$OUT:/pkg:ro" "$base" sh -euc '
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends "/pkg/$1" >/dev/null
		id tlsplex
		[ "$(stat -c %G:%a /etc/tlsplex)" = tlsplex:750 ]
		tlsplex-relay --version
		tlsplex-gateway --version
		systemd-analyze verify --man=no /lib/systemd/system/tlsplex-relay.service \
			/lib/systemd/system/tlsplex-gateway.service
		[ "$(systemctl is-enabled tlsplex-relay.service 2>/dev/null || true)" = disabled ]
		apt-get purge -y -qq tlsplex >/dev/null
		! [ -e /usr/bin/tlsplex-relay ]
		echo installed-and-purged' sh "$(basename "$deb")" >"$OUT/install.log" 2>&1 ||
		{ tail -n 20 "$OUT/install.log" >&2; fail "the package does not install cleanly"; }
	grep -q installed-and-purged "$OUT/install.log" || fail "the install check did not finish"
	echo "deb: installs in a container: user tlsplex, /etc/tlsplex tlsplex:750, units verify, purged"
else
	echo "deb: no podman or no $base image: the install check in a container is skipped"
fi
echo "deb: OK: $deb ($(du -k "$deb" | cut -f1) KiB)"
