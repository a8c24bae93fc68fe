#!/bin/sh
# Container health check for the tlsplex daemons; sends no byte to anyone
# (a probe connection would be a link or a client to the daemon).
#
#   tlsplex-healthcheck               a TCP socket is listening
#   tlsplex-healthcheck listen PORT   a TCP socket listens on PORT
#   tlsplex-healthcheck linked PORT   a connection to remote PORT is
#                                     established (the gateway's link)
#
# Reads /proc/net/tcp and tcp6 of the container's network namespace.
set -eu

mode=${1:-any}
port=${2:-0}
want=$(printf '%04X' "$port")
# st: 0A is LISTEN, 01 is ESTABLISHED.
awk -v mode="$mode" -v want="$want" '
FNR == 1 { next }
{
	split($2, l, ":"); split($3, r, ":")
	if (mode == "any" && $4 == "0A") ok = 1
	if (mode == "listen" && $4 == "0A" && l[2] == want) ok = 1
	if (mode == "linked" && $4 == "01" && r[2] == want) ok = 1
}
END { exit ok ? 0 : 1 }
' /proc/net/tcp /proc/net/tcp6 2>/dev/null || {
	echo "tlsplex-healthcheck: no TCP socket in state '$mode' ${2:+on port $port}" >&2
	exit 1
}
