#!/bin/bash
# make demo: runs an echo backend, the relay and the gateway on loopback
# from the example configurations, sends data through the pair, checks
# it comes back intact, and shows what was negotiated and what the hook
# saw.  Any failure exits non-zero.
set -euo pipefail

BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/$BUILD
RUN=$ROOT/demo-run
CLIENTS=${DEMO_CLIENTS:-8}
BYTES=${DEMO_BYTES:-65536}
pids=()

fail() {
	echo "demo: FAILED: $*" >&2
	for f in "$RUN"/*.log; do
		[ -f "$f" ] || continue
		echo "---- $(basename "$f") (last 20 lines)" >&2
		tail -n 20 "$f" >&2
	done
	exit 1
}

# Stops the processes newest first (the gateway before the relay, so
# that it does not redial a relay that is going away), each within 5 s.
stop_all() {
	local i p
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		p=${pids[i]}
		kill -TERM "$p" 2>/dev/null || true
		for _ in $(seq 50); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	pids=()
}
trap stop_all EXIT

# wait_for FILE TEXT SECONDS
wait_for() {
	local i
	for i in $(seq $(($3 * 10))); do
		grep -q -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

for b in tlsplex-relay tlsplex-gateway tlsplex-report tpx-echo tpx-blast; do
	[ -x "$BIN/$b" ] || fail "$BIN/$b is missing; run 'make build' first"
done

rm -rf "$RUN"
mkdir -p "$RUN"
cp "$ROOT/examples/relay.ini" "$ROOT/examples/gateway.ini" "$RUN/"
"$ROOT/scripts/mkcerts.sh" "$RUN/certs" || fail "could not make the demo certificates"

for port in 7400 7401 7500; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
		fail "port $port on 127.0.0.1 is in use; stop whatever holds it"
	fi
done

echo "== tlsplex demo: echo backend <- relay <= one link => gateway <- clients"
"$BIN/tlsplex-relay" -c "$RUN/relay.ini" -n >/dev/null || fail "relay config check failed"
"$BIN/tlsplex-gateway" -c "$RUN/gateway.ini" -n >/dev/null || fail "gateway config check failed"

"$BIN/tpx-echo" -l 127.0.0.1:7500 >"$RUN/echo.log" 2>&1 &
pids+=($!)
wait_for "$RUN/echo.log" "listening" 5 || fail "echo backend did not start"

"$BIN/tlsplex-relay" -c "$RUN/relay.ini" >"$RUN/relay.log" 2>&1 &
pids+=($!)
wait_for "$RUN/relay.log" "listening for links" 5 || fail "relay did not start"

"$BIN/tlsplex-gateway" -c "$RUN/gateway.ini" >"$RUN/gateway.log" 2>&1 &
pids+=($!)
wait_for "$RUN/gateway.log" "is up" 10 || fail "the link did not come up"

echo "== $CLIENTS clients x $BYTES bytes each way through the gateway (127.0.0.1:7401)"
"$BIN/tpx-blast" -c 127.0.0.1:7401 -n "$CLIENTS" -b "$BYTES" -t 60 | tee "$RUN/blast.log" ||
	fail "data did not come back intact"

stop_all
trap - EXIT

echo
echo "== negotiated outcome"
grep -h -E "TLS agreed|plaintext agreed|TLS up|refused" "$RUN/gateway.log" "$RUN/relay.log" |
	sed -E 's/^[^ ]+ //' || fail "no negotiation outcome in the logs"
echo
echo "== hook events (JSON Lines)"
for f in hooks-gateway.jsonl hooks-relay.jsonl; do
	[ -s "$RUN/$f" ] || fail "$f is empty: the hook did not fire"
	echo "-- $f"
	cat "$RUN/$f"
done
grep -q '"event":"handshake_pending"' "$RUN/hooks-gateway.jsonl" ||
	fail "the gateway hook saw no handshake_pending event"
grep -q '"event":"handshake_done"' "$RUN/hooks-relay.jsonl" ||
	fail "the relay hook saw no handshake_done event"
echo
echo "== summary"
links=$(grep -c '"event":"handshake_pending"' "$RUN/hooks-relay.jsonl")
echo "links made: $links; clients carried: $CLIENTS; bytes verified each way: $((CLIENTS * BYTES))"
echo "logs, hook files and certificates are in $RUN"
echo
echo "== readiness report (tlsplex-report hooks-gateway.jsonl hooks-relay.jsonl)"
rc=0
"$BIN/tlsplex-report" "$RUN/hooks-gateway.jsonl" "$RUN/hooks-relay.jsonl" || rc=$?
[ "$rc" -eq 0 ] || fail "tlsplex-report says the demo pair is not ready (exit $rc)"
echo "demo: OK"
