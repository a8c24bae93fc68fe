#!/bin/sh
# Installs the Debian packages tlsplex needs, skipping those already
# present.  Needs root (or sudo) only when something is missing.
#
#   scripts/deps.sh          build, test and run the demo (make test)
#   scripts/deps.sh ship     also podman, debootstrap, debhelper and
#                            lintian (make docker-test, make deb)
#
# clang and libclang-rt-dev (libFuzzer) build the fuzz targets in fuzz/
# (make fuzz, and make test runs them briefly); mandoc and systemd lint
# the manual pages and the units in make test.  iproute2, iptables and
# iputils-ping build and check the network namespaces of the fault suite
# (test/test_faults.c); postgresql is the real application carried end to
# end (test/pg_e2e.sh).  tshark runs the Wireshark dissector in
# contrib/wireshark against a captured link (test "wire"); installed
# noninteractively, it leaves capturing to root.  curl scrapes the
# metrics endpoint (test "metrics").  rsyslog is the real syslogd
# test_sinks checks the syslog sink against (the test starts its own, on
# a socket of its own).
set -eu

PKGS="build-essential cmake pkg-config libwolfssl-dev libevent-dev \
libinih-dev libcriterion-dev openssl clang libclang-rt-dev mandoc systemd \
procps man-db iproute2 iptables iputils-ping postgresql tshark curl rsyslog"
SHIP_PKGS="podman podman-compose runc debootstrap dpkg-dev debhelper \
fakeroot lintian netavark aardvark-dns"

case "${1:-}" in
"") ;;
ship) PKGS="$PKGS $SHIP_PKGS" ;;
*)
	echo "usage: $0 [ship]" >&2
	exit 2
	;;
esac

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

echo "deps: installing:$missing"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null 2>&1 || {
		echo "deps: need root to install:$missing" >&2
		exit 1
	}
	SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || echo "deps: apt-get update failed; trying the cached package lists" >&2
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 $missing
