#!/bin/sh
# PostgreSQL through the daemons: a real client/server pair that no one
# here wrote, on loopback.
#
#   test/pg_e2e.sh BUILD_DIR
#
# Starts a throwaway cluster (initdb into a temporary directory, run as
# the postgres user: postgres refuses to run as root), a relay in front
# of it, gateway gw1 (TLS link) and gateway gw2 (plaintext link, its
# [peer] on the relay says tls = off).  The service pg has tls = require
# on the relay.  Then, through gw1: pgbench -i, pgbench with the
# built-in TPC-B script and a script of its own that aborts on a wrong
# balance, the TPC-B invariant (the accounts' balances sum to the
# history's deltas, one history row per transaction), and a COPY of
# about 5 MiB each way compared byte for byte with what the server
# holds.  Through gw2: pgbench must fail to connect, the relay must log
# the named refusal and the gateway the reset, and the server must see
# no connection.  Exits 0 on success, 1 on failure, 77 (skipped) when
# PostgreSQL cannot be run here.  Every wait is bounded; every process
# is stopped by its PID.
set -u

BUILD=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)

skip() {
	echo "pg_e2e: SKIP: $*" >&2
	exit 77
}
fail() {
	echo "pg_e2e: FAIL: $*" >&2
	for f in relay gw1 gw2 postgres; do
		[ -f "$T/$f.log" ] && { echo "--- $f.log (last 30 lines)" >&2; tail -n 30 "$T/$f.log" >&2; }
	done
	exit 1
}
say() {
	echo "pg_e2e: $*"
}

PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$PGBIN" ] && [ -x "$PGBIN/initdb" ] && [ -x "$PGBIN/postgres" ] &&
	[ -x "$PGBIN/pgbench" ] && [ -x "$PGBIN/psql" ] ||
	skip "PostgreSQL is not installed (scripts/deps.sh installs postgresql)"
for b in tlsplex-relay tlsplex-gateway; do
	[ -x "$BUILD/$b" ] || fail "$BUILD/$b is missing"
done

# postgres runs as an unprivileged user: ourselves, or postgres (or
# nobody) when we are root, switched to with setpriv (which execs, so
# the PID we keep is the postmaster's).
AS=""
if [ "$(id -u)" -eq 0 ]; then
	PGUSER_OS=postgres
	id "$PGUSER_OS" >/dev/null 2>&1 || PGUSER_OS=nobody
	id "$PGUSER_OS" >/dev/null 2>&1 || skip "root, and no unprivileged user to run postgres as"
	command -v setpriv >/dev/null 2>&1 || skip "root, and no setpriv to drop to $PGUSER_OS"
	AS="setpriv --reuid=$PGUSER_OS --regid=$(id -g "$PGUSER_OS") --init-groups --"
fi

T=$(mktemp -d /tmp/tlsplex-pg-XXXXXX) || fail "mktemp"
chmod 755 "$T"
PIDS=""
PGPID=""
cleanup() {
	# The daemons first (SIGTERM, then SIGKILL after 3 s), then the
	# cluster (fast shutdown, then SIGKILL after 10 s).
	for p in $PIDS; do kill -TERM "$p" 2>/dev/null; done
	for p in $PIDS; do
		i=0
		while kill -0 "$p" 2>/dev/null && [ $i -lt 30 ]; do sleep 0.1; i=$((i + 1)); done
		kill -KILL "$p" 2>/dev/null
	done
	if [ -n "$PGPID" ]; then
		kill -INT "$PGPID" 2>/dev/null
		i=0
		while kill -0 "$PGPID" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
		kill -KILL "$PGPID" 2>/dev/null
	fi
	wait 2>/dev/null
	[ -n "${TLSPLEX_KEEP:-}" ] && { echo "pg_e2e: kept $T" >&2; return; }
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# A TCP port on 127.0.0.1 that nothing listens on (and none handed out
# before in this run), below the ephemeral range so that no outgoing
# connection takes it before the daemon binds it.
USED=""
LOW=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null)
[ "${LOW:-0}" -gt 12000 ] 2>/dev/null || LOW=32768
free_port() {
	while :; do
		p=$(( $(od -An -N2 -tu2 /dev/urandom) % (LOW - 10000) + 10000 ))
		case " $USED " in *" $p "*) continue ;; esac
		[ -z "$(ss -Htln "sport = :$p" 2>/dev/null)" ] || continue
		USED="$USED $p"
		echo "$p"
		return
	done
}

# wait_for SECONDS COMMAND...: polls every 0.1 s.
wait_for() {
	n=$(($1 * 10))
	shift
	while [ "$n" -gt 0 ]; do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
		n=$((n - 1))
	done
	return 1
}

PGPORT=$(free_port)
RPORT=$(free_port)
SP1=$(free_port)
SP2=$(free_port)

# --- the cluster ------------------------------------------------------------
mkdir -p "$T/pgdata" "$T/sock"
[ -n "$AS" ] && chown "$PGUSER_OS" "$T/pgdata" "$T/sock"
chmod 700 "$T/pgdata"
timeout 60 $AS "$PGBIN/initdb" -D "$T/pgdata" -U tlsplex -A trust --no-sync \
	-E UTF8 --locale=C >"$T/initdb.log" 2>&1 ||
	{ cat "$T/initdb.log" >&2; skip "initdb failed (see above): postgres cannot be run here"; }
$AS "$PGBIN/postgres" -D "$T/pgdata" -c listen_addresses=127.0.0.1 -c port="$PGPORT" \
	-c unix_socket_directories="$T/sock" -c fsync=off -c synchronous_commit=off \
	-c full_page_writes=off -c max_connections=40 -c log_connections=on \
	>"$T/postgres.log" 2>&1 &
PGPID=$!
wait_for 30 "$PGBIN/pg_isready" -q -h "$T/sock" -p "$PGPORT" -U tlsplex -d postgres ||
	{ cat "$T/postgres.log" >&2; skip "the postgres server did not start (see above)"; }
say "postgres $("$PGBIN/postgres" -V | awk '{print $3}') (pid $PGPID) on 127.0.0.1:$PGPORT"

# Direct SQL over the unix socket, bypassing the daemons.
direct() {
	timeout 30 "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$T/sock" -p "$PGPORT" \
		-U tlsplex -d postgres "$@"
}

# --- the daemons ------------------------------------------------------------
"$SRC/scripts/mkcerts.sh" "$T/certs" || fail "mkcerts.sh"
cat >"$T/relay.ini" <<EOF
[relay]
node_name = relay
listen = 127.0.0.1:$RPORT
tls = prefer
cert = certs/relay.crt
key = certs/relay.key
ca = certs/ca.crt
client_cert = optional
hook_file = relay-hooks.jsonl
[service pg]
backend = 127.0.0.1:$PGPORT
tls = require
[peer gw1]
tls = require
client_cert = require
[peer gw2]
tls = off
EOF
cat >"$T/gw1.ini" <<EOF
[gateway]
node_name = gw1
relay = 127.0.0.1:$RPORT
server_name = relay
tls = require
cert = certs/gw1.crt
key = certs/gw1.key
ca = certs/ca.crt
hook_file = gw1-hooks.jsonl
redial_min = 200ms
redial_max = 1s
[service pg]
listen = 127.0.0.1:$SP1
EOF
cat >"$T/gw2.ini" <<EOF
[gateway]
node_name = gw2
relay = 127.0.0.1:$RPORT
tls = off
redial_min = 200ms
redial_max = 1s
[service pg]
listen = 127.0.0.1:$SP2
EOF
chmod 644 "$T"/*.ini

"$BUILD/tlsplex-relay" -c "$T/relay.ini" >"$T/relay.log" 2>&1 &
PIDS="$PIDS $!"
wait_for 10 grep -q "listening for links" "$T/relay.log" || fail "the relay did not start"
"$BUILD/tlsplex-gateway" -c "$T/gw1.ini" >"$T/gw1.log" 2>&1 &
PIDS="$PIDS $!"
"$BUILD/tlsplex-gateway" -c "$T/gw2.ini" >"$T/gw2.log" 2>&1 &
PIDS="$PIDS $!"
wait_for 15 grep -q ") is up (TLS)" "$T/gw1.log" || fail "gw1's link did not come up with TLS"
wait_for 15 grep -q ") is up (plaintext)" "$T/gw2.log" || fail "gw2's link did not come up in plaintext"
say "gw1 links with TLS, gw2 in plaintext"

# --- pgbench through the TLS link ---------------------------------------------
VIA="-h 127.0.0.1 -p $SP1 -U tlsplex"
t0=$(date +%s%N)
# shellcheck disable=SC2086
timeout 60 "$PGBIN/pgbench" $VIA -i -s 1 -q postgres >"$T/init.log" 2>&1 ||
	{ cat "$T/init.log" >&2; fail "pgbench -i through gw1 failed"; }
say "pgbench -i -s 1 through gw1: $((($(date +%s%N) - t0) / 1000000)) ms"

# A transaction that checks its own results, or divides by zero, which
# aborts the client and fails the run: the balance read back after the
# update is the one before plus the delta, and 1 KiB the server sent
# (digest) comes back to it unchanged in the next query.
cat >"$T/check.sql" <<'EOF'
\set aid random(1, 100000 * :scale)
\set delta random(-5000, 5000)
BEGIN;
SELECT abalance AS before FROM pgbench_accounts WHERE aid = :aid FOR UPDATE \gset
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance AS after, repeat(md5(:aid::text || ':' || (:delta)::text), 32) AS digest FROM pgbench_accounts WHERE aid = :aid \gset
\if :after != :before + :delta
SELECT 1 / 0;
\endif
SELECT CASE WHEN ':digest' = repeat(md5(:aid::text || ':' || (:delta)::text), 32) THEN 1 ELSE 1 / 0 END;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, :aid, :delta, CURRENT_TIMESTAMP);
END;
EOF
CLIENTS=8
PER=150
t0=$(date +%s%N)
# shellcheck disable=SC2086
timeout 90 "$PGBIN/pgbench" $VIA -n -c $CLIENTS -j 2 -t $PER -b tpcb-like -f "$T/check.sql" \
	postgres >"$T/bench.log" 2>&1 || { cat "$T/bench.log" >&2; fail "pgbench through gw1 failed"; }
ms=$((($(date +%s%N) - t0) / 1000000))
want=$((CLIENTS * PER))
grep -q "number of transactions actually processed: $want/$want" "$T/bench.log" ||
	{ cat "$T/bench.log" >&2; fail "pgbench did not process $want transactions"; }
if grep -q "number of failed transactions" "$T/bench.log"; then
	grep -q "number of failed transactions: 0 " "$T/bench.log" ||
		{ cat "$T/bench.log" >&2; fail "pgbench reported failed transactions"; }
fi
grep -q "aborted" "$T/bench.log" && { cat "$T/bench.log" >&2; fail "a pgbench client aborted"; }
say "pgbench -c $CLIENTS -t $PER (tpcb-like + check.sql) through gw1: $want/$want transactions, 0 failed, $ms ms ($(awk '/^tps/ {print $3; exit}' "$T/bench.log") tps)"

# The control: the same script with its digest comparison made false
# must fail, or the check above proves nothing.
sed "s/THEN 1 ELSE 1 \/ 0/AND false THEN 1 ELSE 1 \/ 0/" "$T/check.sql" >"$T/broken.sql"
# shellcheck disable=SC2086
if timeout 30 "$PGBIN/pgbench" $VIA -n -c 1 -t 1 -f "$T/broken.sql" postgres >"$T/broken.log" 2>&1; then
	cat "$T/broken.log" >&2
	fail "check.sql does not fail when its comparison fails"
fi
grep -q "division by zero" "$T/broken.log" || { cat "$T/broken.log" >&2; fail "the control failed for another reason"; }

# TPC-B invariant, read directly: every delta in the history, once.
inv=$(direct -c "SELECT (SELECT sum(abalance) FROM pgbench_accounts) = (SELECT coalesce(sum(delta), 0) FROM pgbench_history), (SELECT count(*) FROM pgbench_history)") ||
	fail "cannot read the invariant"
[ "$inv" = "t|$want" ] || fail "TPC-B invariant broken: '$inv' (want 't|$want')"
say "invariant holds: sum(abalance) = sum(history.delta), $want history rows"

# About 5 MiB each way through gw1, compared with the server's copy.
awk 'BEGIN { for (i = 1; i <= 60000; i++) printf "%d\t%s-%d-%08x\t%s\n", i, "row", i, i * 2654435761 % 4294967296, "tlsplex carries this line intact, byte for byte" }' >"$T/rows.tsv"
direct -c "CREATE TABLE carried (id int PRIMARY KEY, k text, v text)" || fail "create table"
# shellcheck disable=SC2086
timeout 60 "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 $VIA -d postgres \
	-c "\\copy carried FROM '$T/rows.tsv'" >"$T/copy.log" 2>&1 ||
	{ cat "$T/copy.log" >&2; fail "COPY FROM through gw1 failed"; }
direct -c "COPY (SELECT * FROM carried ORDER BY id) TO STDOUT" >"$T/stored.tsv" || fail "direct COPY"
cmp -s "$T/rows.tsv" "$T/stored.tsv" || fail "what the server stored differs from what was sent"
# shellcheck disable=SC2086
timeout 60 "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 $VIA -d postgres \
	-c "COPY (SELECT * FROM pgbench_accounts ORDER BY aid) TO STDOUT" >"$T/via.tsv" 2>"$T/copy.log" ||
	{ cat "$T/copy.log" >&2; fail "COPY TO through gw1 failed"; }
direct -c "COPY (SELECT * FROM pgbench_accounts ORDER BY aid) TO STDOUT" >"$T/direct.tsv" || fail "direct COPY"
cmp -s "$T/via.tsv" "$T/direct.tsv" || fail "pgbench_accounts read through gw1 differs from the direct read"
say "COPY $(wc -c <"$T/rows.tsv") bytes in and $(wc -c <"$T/via.tsv") bytes out through gw1: identical"

# --- the plaintext link is refused for the TLS-only service -------------------
before=$(grep -c "connection received" "$T/postgres.log")
# shellcheck disable=SC2086
if timeout 30 "$PGBIN/pgbench" -h 127.0.0.1 -p "$SP2" -U tlsplex -n -c 1 -t 1 postgres \
	>"$T/refused.log" 2>&1; then
	cat "$T/refused.log" >&2
	fail "pgbench through the plaintext link succeeded"
fi
grep -qi "connection" "$T/refused.log" || { cat "$T/refused.log" >&2; fail "pgbench failed for another reason"; }
wait_for 5 grep -q "stream for service 'pg' refused: the service requires TLS and this link is plaintext" "$T/relay.log" ||
	fail "the relay did not log the refusal"
wait_for 5 grep -q "(service pg) reset by peer: " "$T/gw2.log" || fail "gw2 did not log the reset"
after=$(grep -c "connection received" "$T/postgres.log")
[ "$before" = "$after" ] || fail "postgres saw a connection through the plaintext link"
say "plaintext link: pgbench failed to connect ($(grep -m1 -i "connection" "$T/refused.log" | cut -c1-140))"
say "relay: $(grep -m1 -o "stream for service 'pg' refused: .*" "$T/relay.log")"
say "gw2: $(grep -m1 -o "stream [0-9]* (service pg) reset by peer: .*" "$T/gw2.log")"
say "ok"
exit 0
