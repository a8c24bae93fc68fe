#!/bin/bash
# Benchmark: direct vs stunnel vs tlsplex, interleaved in one run.
#
#   bench/run.sh [BUILD_DIR]          full run (about 20 minutes)
#   QUICK=1 bench/run.sh [BUILD_DIR]  quick run (under 4 minutes)
#
# Knobs (environment): REPS, BULK_SIZE, PAR_STREAMS, PAR_SIZE, WRK_SECS,
# WRK_CONNS, WRK_THREADS, PING_COUNT, PING_SIZE, PING_MAX_S, IDLE_NS,
# RR_CLIENTS, RR_MIN, RR_MAX, RR_SECS, MIX_CLIENTS, MIX_RATE, MIX_SIZE,
# MIX_BULK, MIX_SECS, WARM_S (uncounted warm-up of rr and mixed), KV_CLIENTS,
# KV_N, KV_SIZE, PAIRS, WORKLOADS, PORT_BASE, KEEP=1 (keep the temp dir),
# RESULTS (output dir, default bench/results), TLSPLEX_EXTRA (more lines for
# both daemon sections, e.g. "window = 64k").
#
# Workloads (WORKLOADS, default "bulk par cps ping pingload rr mixed kv mem"):
#   bulk      one upload, then one download of BULK_SIZE (workload bulk1):
#             MB/s, CPU s per GB of the pair and of each of its processes
#   par       the same with PAR_STREAMS streams of PAR_SIZE (bulkN)
#   cps       wrk, one new connection per request, against nginx: conn/s
#   ping      PING_COUNT ping-pongs of PING_SIZE bytes on one connection
#   pingload  the same beside one download through the pair (ping_bulk)
#   rr        RR_CLIENTS connections, each doing back-to-back echo requests
#             of RR_MIN..RR_MAX random bytes for RR_SECS: req/s, latency
#             over all requests, CPU us per request (pair and each process)
#   mixed     MIX_CLIENTS connections, each sending MIX_RATE MIX_SIZE-byte
#             echo requests per second on a schedule (latency from the
#             scheduled time), beside MIX_BULK downloads, for MIX_SECS
#   kv        redis-server (installed with apt-get if missing, no
#             persistence) behind each pair: redis-benchmark -c KV_CLIENTS
#             -n KV_N -t get,set -d KV_SIZE -q, GET and SET req/s and p50
#   mem       the pair restarted, N idle connections for each N in IDLE_NS:
#             PSS KiB per connection
# Per-process CPU figures end in _gw (tlsplex-gateway, or the client-side
# stunnel) and _relay (tlsplex-relay, or the server-side stunnel).
#
# Writes RESULTS/latest.csv (every sample), RESULTS/latest.json (summary:
# median/min/max per figure, ratios against the targets, machine and
# versions) and prints a table.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-build}
case $BUILD in /*) BIN=$BUILD ;; *) BIN=$ROOT/$BUILD ;; esac

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
	: "${REPS:=1}" "${BULK_SIZE:=512m}" "${PAR_SIZE:=64m}" "${WRK_SECS:=2}"
	: "${PING_COUNT:=5000}" "${IDLE_NS:=500 2000}"
	: "${RR_SECS:=2}" "${MIX_SECS:=3}" "${WARM_S:=0.5}" "${KV_N:=20000}"
fi
REPS=${REPS:-3}
BULK_SIZE=${BULK_SIZE:-2g}
PAR_STREAMS=${PAR_STREAMS:-8}
PAR_SIZE=${PAR_SIZE:-256m}
WRK_SECS=${WRK_SECS:-5}
WRK_CONNS=${WRK_CONNS:-32}
WRK_THREADS=${WRK_THREADS:-1}
PING_COUNT=${PING_COUNT:-20000}
PING_SIZE=${PING_SIZE:-64}
export PING_MAX_S=${PING_MAX_S:-25}
IDLE_NS=${IDLE_NS:-2000 9000}
RR_CLIENTS=${RR_CLIENTS:-64}
RR_MIN=${RR_MIN:-64}
RR_MAX=${RR_MAX:-512}
RR_SECS=${RR_SECS:-5}
MIX_CLIENTS=${MIX_CLIENTS:-32}
MIX_RATE=${MIX_RATE:-200}
MIX_SIZE=${MIX_SIZE:-64}
MIX_BULK=${MIX_BULK:-2}
MIX_SECS=${MIX_SECS:-5}
WARM_S=${WARM_S:-1}
KV_CLIENTS=${KV_CLIENTS:-50}
KV_N=${KV_N:-100000}
KV_SIZE=${KV_SIZE:-64}
PAIRS=${PAIRS:-direct stunnel tlsplex}
WORKLOADS=${WORKLOADS:-bulk par cps ping pingload rr mixed kv mem}
PORT_BASE=${PORT_BASE:-18600}
RESULTS=${RESULTS:-$ROOT/bench/results}
TOOLS=$ROOT/bench/tools/bin

log() { echo "bench: $*" >&2; }
die() { log "FAILED: $*"; exit 1; }
has() { [[ " $WORKLOADS " == *" $1 "* ]]; }

# ---------------------------------------------------------------- setup

need_pkgs=()
command -v stunnel4 >/dev/null 2>&1 || need_pkgs+=(stunnel4)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_pkgs+=(nginx)
command -v wrk >/dev/null 2>&1 || need_pkgs+=(wrk)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
if has kv; then
	{ command -v redis-server && command -v redis-benchmark; } >/dev/null 2>&1 || need_pkgs+=(redis-server)
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
	log "installing ${need_pkgs[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y "${need_pkgs[@]}" >/dev/null ||
		{ apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y "${need_pkgs[@]}" >/dev/null; } ||
		die "apt-get install ${need_pkgs[*]} failed"
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
STUNNEL=$(command -v stunnel4 || command -v stunnel)

for b in tlsplex-relay tlsplex-gateway; do
	[ -x "$BIN/$b" ] || die "$BIN/$b is missing; run 'make build' first"
done
make -s -C "$ROOT/bench" OUT="$TOOLS" >/dev/null || die "building the bench tools failed"

TMP=$(mktemp -d /tmp/tlsplex-bench.XXXXXX) || die "mktemp failed"
# Run copies, so a rebuild of BUILD_DIR during the run changes nothing.
mkdir -p "$TMP/bin"
cp "$BIN/tlsplex-relay" "$BIN/tlsplex-gateway" "$TMP/bin/" || die "cannot copy the daemons"
BIN=$TMP/bin
declare -A PID=()

stop_proc() {
	local name=$1 p=${PID[$1]:-} i
	[ -n "$p" ] || return 0
	kill -TERM "$p" 2>/dev/null
	for i in $(seq 50); do
		kill -0 "$p" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$p" 2>/dev/null
	wait "$p" 2>/dev/null
	unset "PID[$name]"
}

cleanup() {
	local n
	# Keep the samples of an interrupted run.
	if [ -s "${RAW:-}" ] && [ "${FINISHED:-0}" != 1 ]; then
		mkdir -p "$RESULTS" && cp "$RAW" "$RESULTS/partial.csv"
	fi
	for n in "${!PID[@]}"; do
		stop_proc "$n"
	done
	if [ "${KEEP:-0}" = 1 ]; then
		log "kept $TMP"
	else
		rm -rf "$TMP"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_proc NAME CMD...: runs CMD in the background, logging to TMP/NAME.log
start_proc() {
	local name=$1
	shift
	"$@" >"$TMP/$name.log" 2>&1 &
	PID[$name]=$!
}

P_BACK=$PORT_BASE
P_HTTP=$((PORT_BASE + 1))
P_KV=$((PORT_BASE + 2))
P_SC_BENCH=$((PORT_BASE + 10))
P_SC_HTTP=$((PORT_BASE + 11))
P_SS_BENCH=$((PORT_BASE + 12))
P_SS_HTTP=$((PORT_BASE + 13))
P_SC_KV=$((PORT_BASE + 14))
P_SS_KV=$((PORT_BASE + 15))
P_LINK=$((PORT_BASE + 20))
P_GW_BENCH=$((PORT_BASE + 21))
P_GW_HTTP=$((PORT_BASE + 22))
P_GW_KV=$((PORT_BASE + 23))
for p in $P_BACK $P_HTTP $P_KV $P_SC_BENCH $P_SC_HTTP $P_SS_BENCH $P_SS_HTTP $P_SC_KV $P_SS_KV \
	$P_LINK $P_GW_BENCH $P_GW_HTTP $P_GW_KV; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
		die "port $p on 127.0.0.1 is in use; set PORT_BASE"
	fi
done

bench_addr() {
	case $1 in
	direct) echo "127.0.0.1:$P_BACK" ;;
	stunnel) echo "127.0.0.1:$P_SC_BENCH" ;;
	tlsplex) echo "127.0.0.1:$P_GW_BENCH" ;;
	esac
}
http_port() {
	case $1 in
	direct) echo "$P_HTTP" ;;
	stunnel) echo "$P_SC_HTTP" ;;
	tlsplex) echo "$P_GW_HTTP" ;;
	esac
}
kv_port() {
	case $1 in
	direct) echo "$P_KV" ;;
	stunnel) echo "$P_SC_KV" ;;
	tlsplex) echo "$P_GW_KV" ;;
	esac
}
# pair_pids PAIR: the processes that make up the pair (none for direct)
pair_pids() {
	case $1 in
	stunnel) echo "${PID[stunnel_c]:-} ${PID[stunnel_s]:-}" ;;
	tlsplex) echo "${PID[gateway]:-} ${PID[relay]:-}" ;;
	esac
}

"$ROOT/scripts/mkcerts.sh" "$TMP/certs" || die "mkcerts failed"
CERTS=$TMP/certs

# ---------------------------------------------------------------- configs

mkdir -p "$TMP/nginx/tmp"
cat >"$TMP/nginx/nginx.conf" <<EOF
user root;
worker_processes 1;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 16384; }
http {
	access_log off;
	client_body_temp_path $TMP/nginx/tmp/body;
	proxy_temp_path $TMP/nginx/tmp/proxy;
	fastcgi_temp_path $TMP/nginx/tmp/fastcgi;
	uwsgi_temp_path $TMP/nginx/tmp/uwsgi;
	scgi_temp_path $TMP/nginx/tmp/scgi;
	server {
		listen 127.0.0.1:$P_HTTP backlog=4096;
		location / { return 200 "ok\n"; }
	}
}
EOF

# The kv service (redis) is configured only when the kv workload runs.
kv_sc= kv_ss= kv_relay= kv_gw=
if has kv; then
	kv_sc="[kv]
client = yes
accept = 127.0.0.1:$P_SC_KV
connect = 127.0.0.1:$P_SS_KV
cert = $CERTS/gw1.crt
key = $CERTS/gw1.key
checkHost = relay"
	kv_ss="[kv]
accept = 127.0.0.1:$P_SS_KV
connect = 127.0.0.1:$P_KV
cert = $CERTS/relay.crt
key = $CERTS/relay.key
checkHost = gw1"
	kv_relay="[service kv]
backend = 127.0.0.1:$P_KV

"
	kv_gw="[service kv]
listen = 127.0.0.1:$P_GW_KV
max_clients = 100000
"
fi

stunnel_common="sslVersionMin = TLSv1.3
sslVersionMax = TLSv1.3
ciphersuites = TLS_AES_128_GCM_SHA256
curves = X25519
verifyChain = yes
CAfile = $CERTS/ca.crt
sessionResume = yes"

cat >"$TMP/stunnel-client.conf" <<EOF
foreground = yes
pid =
debug = 4
[bench]
client = yes
accept = 127.0.0.1:$P_SC_BENCH
connect = 127.0.0.1:$P_SS_BENCH
cert = $CERTS/gw1.crt
key = $CERTS/gw1.key
checkHost = relay
$stunnel_common
[http]
client = yes
accept = 127.0.0.1:$P_SC_HTTP
connect = 127.0.0.1:$P_SS_HTTP
cert = $CERTS/gw1.crt
key = $CERTS/gw1.key
checkHost = relay
$stunnel_common
${kv_sc:+$kv_sc
$stunnel_common}
EOF

cat >"$TMP/stunnel-server.conf" <<EOF
foreground = yes
pid =
debug = 4
[bench]
accept = 127.0.0.1:$P_SS_BENCH
connect = 127.0.0.1:$P_BACK
cert = $CERTS/relay.crt
key = $CERTS/relay.key
checkHost = gw1
$stunnel_common
[http]
accept = 127.0.0.1:$P_SS_HTTP
connect = 127.0.0.1:$P_HTTP
cert = $CERTS/relay.crt
key = $CERTS/relay.key
checkHost = gw1
$stunnel_common
${kv_ss:+$kv_ss
$stunnel_common}
EOF

cat >"$TMP/relay.ini" <<EOF
[relay]
node_name = relay
listen = 127.0.0.1:$P_LINK
tls = require
min_tls = 1.3
max_tls = 1.3
ciphers = TLS_AES_128_GCM_SHA256
cert = certs/relay.crt
key = certs/relay.key
ca = certs/ca.crt
client_cert = require
max_streams = 100000
log_level = warn
${TLSPLEX_EXTRA:-}

[service bench]
backend = 127.0.0.1:$P_BACK

[service http]
backend = 127.0.0.1:$P_HTTP

${kv_relay}[peer gw1]
client_cert = require
EOF

cat >"$TMP/gateway.ini" <<EOF
[gateway]
node_name = gw1
relay = 127.0.0.1:$P_LINK
server_name = relay
tls = require
min_tls = 1.3
max_tls = 1.3
ciphers = TLS_AES_128_GCM_SHA256
cert = certs/gw1.crt
key = certs/gw1.key
ca = certs/ca.crt
max_streams = 100000
log_level = warn
${TLSPLEX_EXTRA:-}

[service bench]
listen = 127.0.0.1:$P_GW_BENCH
max_clients = 100000

[service http]
listen = 127.0.0.1:$P_GW_HTTP
max_clients = 100000
${kv_gw:+
$kv_gw}
EOF

"$BIN/tlsplex-relay" -c "$TMP/relay.ini" -n >/dev/null || die "relay config check failed"
"$BIN/tlsplex-gateway" -c "$TMP/gateway.ini" -n >/dev/null || die "gateway config check failed"

# ---------------------------------------------------------------- helpers

# wait_path ADDR SECONDS: one echo round trip through ADDR succeeds
wait_path() {
	local i
	for i in $(seq $(($2 * 5))); do
		timeout 5 "$TOOLS/bclient" ping "$1" 1 1 >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	return 1
}

wait_http() {
	local i
	for i in $(seq $(($2 * 5))); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.2
	done
	return 1
}

start_backends() {
	start_proc backend "$TOOLS/bserver" -l "127.0.0.1:$P_BACK" -t 7200
	start_proc nginx "$NGINX" -e "$TMP/nginx/error.log" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf"
	wait_path "127.0.0.1:$P_BACK" 5 || die "backend did not start: $(tail -3 "$TMP/backend.log")"
	wait_http "$P_HTTP" 5 || die "nginx did not start: $(tail -3 "$TMP/nginx/error.log")"
	if has kv; then
		mkdir -p "$TMP/redis"
		start_proc redis redis-server --bind 127.0.0.1 --port "$P_KV" --save '' --appendonly no \
			--protected-mode no --daemonize no --dir "$TMP/redis"
		wait_http "$P_KV" 5 || die "redis-server did not start: $(tail -3 "$TMP/redis.log")"
	fi
}

start_pair() {
	case $1 in
	direct) return 0 ;;
	stunnel)
		start_proc stunnel_s "$STUNNEL" "$TMP/stunnel-server.conf"
		start_proc stunnel_c "$STUNNEL" "$TMP/stunnel-client.conf"
		;;
	tlsplex)
		start_proc relay "$BIN/tlsplex-relay" -c "$TMP/relay.ini"
		start_proc gateway "$BIN/tlsplex-gateway" -c "$TMP/gateway.ini"
		;;
	esac
	wait_path "$(bench_addr "$1")" 15 || {
		tail -n 5 "$TMP"/stunnel_*.log "$TMP"/relay.log "$TMP"/gateway.log 2>/dev/null >&2
		die "pair $1 did not come up"
	}
	# A listener left by someone else on our ports would answer too.
	check_pair "$1"
}

stop_pair() {
	case $1 in
	stunnel) stop_proc stunnel_c; stop_proc stunnel_s ;;
	tlsplex) stop_proc gateway; stop_proc relay ;;
	esac
}

# check_pair PAIR: dies with the logs if a pair process has gone
check_pair() {
	local p
	for p in $(pair_pids "$1"); do
		kill -0 "$p" 2>/dev/null && continue
		tail -n 20 "$TMP"/stunnel_*.log "$TMP"/relay.log "$TMP"/gateway.log 2>/dev/null >&2
		die "a process of pair $1 (pid $p) has exited"
	done
}

# pss_kib PIDS...: summed proportional set size in KiB
pss_kib() {
	local p t=0 v
	for p in "$@"; do
		v=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null)
		t=$((t + ${v:-0}))
	done
	echo "$t"
}

# cpu_ticks PIDS...: summed utime+stime in clock ticks
cpu_ticks() {
	local p t=0 v
	for p in "$@"; do
		v=$(sed -E 's/^.*\) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}')
		t=$((t + ${v:-0}))
	done
	echo "$t"
}
HZ=$(getconf CLK_TCK)

# cpu_each PIDS...: utime+stime of each process in clock ticks, in order
cpu_each() {
	local p
	for p in "$@"; do
		echo -n "$(cpu_ticks "$p") "
	done
}

# record_cpu REP WORKLOAD PAIR METRIC SCALE "BEFORE" "AFTER": from two
# cpu_each readings of the pair, records METRIC = the pair's CPU seconds
# times SCALE, and METRIC_gw / METRIC_relay for its two processes
# (tlsplex-gateway or the client-side stunnel, tlsplex-relay or the
# server-side stunnel)
record_cpu() {
	local rep=$1 wl=$2 pair=$3 m=$4 scale=$5 a b g r
	read -ra a <<<"$6"
	read -ra b <<<"$7"
	[ ${#a[@]} = 2 ] && [ ${#b[@]} = 2 ] || return 0
	g=$((b[0] - a[0]))
	r=$((b[1] - a[1]))
	cpu_fmt() { awk -v t="$1" -v hz="$HZ" -v s="$scale" 'BEGIN {printf "%.3f", t / hz * s}'; }
	record "$rep" "$wl" "$pair" "$m" "$(cpu_fmt $((g + r)))"
	record "$rep" "$wl" "$pair" "${m}_gw" "$(cpu_fmt "$g")"
	record "$rep" "$wl" "$pair" "${m}_relay" "$(cpu_fmt "$r")"
}

RAW=$TMP/raw.csv
echo "rep,workload,pair,metric,value" >"$RAW"
# record REP WORKLOAD PAIR METRIC VALUE
record() { echo "$1,$2,$3,$4,$5" >>"$RAW"; }
# kv LINE KEY: value of KEY=... in a tool's output line
kv() { sed -nE "s/.*(^| )$2=([^ ]+).*/\\2/p" <<<"$1"; }

size_bytes() {
	local s=$1 n=${1%[kKmMgG]}
	case $s in
	*[kK]) echo $((n << 10)) ;;
	*[mM]) echo $((n << 20)) ;;
	*[gG]) echo $((n << 30)) ;;
	*) echo "$n" ;;
	esac
}

# ---------------------------------------------------------------- workloads

# w_bulk REP PAIR DIR SIZE STREAMS WORKLOAD
w_bulk() {
	local rep=$1 pair=$2 dir=$3 size=$4 n=$5 wl=$6 out c0 c1 pids
	pids=$(pair_pids "$pair")
	c0=$(cpu_each $pids)
	out=$(timeout 600 "$TOOLS/bclient" "$dir" "$(bench_addr "$pair")" "$size" "$n" 120)
	c1=$(cpu_each $pids)
	if [ "$(kv "$out" ok)" != 1 ]; then
		log "$wl $dir $pair rep $rep failed: $out"
		record "$rep" "$wl" "$pair" "${dir}_fail" 1
		check_pair "$pair"
		return
	fi
	local mbps bytes
	mbps=$(kv "$out" mbps)
	bytes=$(kv "$out" bytes)
	record "$rep" "$wl" "$pair" "${dir}_MBps" "$mbps"
	record_cpu "$rep" "$wl" "$pair" "${dir}_cpu_s_per_GB" "$(awk -v b="$bytes" 'BEGIN {print 1e9 / b}')" "$c0" "$c1"
	log "$wl $dir $pair rep $rep: $mbps MB/s"
}

w_cps() {
	local rep=$1 pair=$2 out rps errs non2xx reqs
	out=$(timeout $((WRK_SECS + 60)) wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${WRK_SECS}s" --timeout 5s \
		-H "Connection: close" "http://127.0.0.1:$(http_port "$pair")/" 2>&1)
	rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
	reqs=$(awk '/requests in/ {print $1}' <<<"$out")
	errs=$(awk '/Socket errors:/ {gsub(",", ""); print $4 + $6 + $8 + $10}' <<<"$out")
	non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
	if [ -z "$rps" ]; then
		log "cps $pair rep $rep failed: $out"
		record "$rep" cps "$pair" fail 1
		check_pair "$pair"
		return
	fi
	record "$rep" cps "$pair" conn_per_s "$rps"
	record "$rep" cps "$pair" requests "${reqs:-0}"
	record "$rep" cps "$pair" socket_errors "${errs:-0}"
	record "$rep" cps "$pair" non2xx "${non2xx:-0}"
	log "cps $pair rep $rep: $rps conn/s (errors ${errs:-0}, non-2xx ${non2xx:-0})"
}

# w_ping REP PAIR WORKLOAD [BULK]
w_ping() {
	local rep=$1 pair=$2 wl=$3 out addr
	addr=$(bench_addr "$pair")
	if [ -n "${4:-}" ]; then
		out=$(timeout 300 "$TOOLS/bclient" ping "$addr" "$PING_COUNT" "$PING_SIZE" "$addr")
	else
		out=$(timeout 300 "$TOOLS/bclient" ping "$addr" "$PING_COUNT" "$PING_SIZE")
	fi
	if [ "$(kv "$out" ok)" != 1 ]; then
		log "$wl $pair rep $rep failed: $out"
		record "$rep" "$wl" "$pair" fail 1
		check_pair "$pair"
		return
	fi
	local k
	for k in p50_us p99_us p999_us mean_us bulk_mbps; do
		[ -n "$(kv "$out" $k)" ] && record "$rep" "$wl" "$pair" "$k" "$(kv "$out" $k)"
	done
	log "$wl $pair rep $rep: $out"
}

# w_rr REP PAIR: RR_CLIENTS connections doing back-to-back requests
w_rr() {
	local rep=$1 pair=$2 out c0 c1 pids k
	pids=$(pair_pids "$pair")
	c0=$(cpu_each $pids)
	out=$(timeout $((${RR_SECS%.*} + 60)) "$TOOLS/bclient" rr "$(bench_addr "$pair")" \
		"$RR_CLIENTS" "$RR_MIN" "$RR_MAX" "$RR_SECS" "$WARM_S")
	c1=$(cpu_each $pids)
	if [ "$(kv "$out" ok)" != 1 ]; then
		log "rr $pair rep $rep failed: $out"
		record "$rep" rr "$pair" fail 1
		check_pair "$pair"
		return
	fi
	for k in req_per_s p50_us p99_us p999_us; do
		record "$rep" rr "$pair" "$k" "$(kv "$out" $k)"
	done
	# CPU over the whole run (warm-up included) per request answered in it
	record_cpu "$rep" rr "$pair" cpu_us_per_req "$(awk -v n="$(kv "$out" total)" 'BEGIN {print 1e6 / n}')" "$c0" "$c1"
	log "rr $pair rep $rep: $out"
}

# w_mixed REP PAIR: paced requests beside MIX_BULK downloads
w_mixed() {
	local rep=$1 pair=$2 out k
	out=$(timeout $((${MIX_SECS%.*} + 60)) "$TOOLS/bclient" mixed "$(bench_addr "$pair")" \
		"$MIX_CLIENTS" "$MIX_RATE" "$MIX_SIZE" "$MIX_BULK" "$MIX_SECS" "$WARM_S")
	if [ "$(kv "$out" ok)" != 1 ]; then
		log "mixed $pair rep $rep failed: $out"
		record "$rep" mixed "$pair" fail 1
		check_pair "$pair"
		return
	fi
	for k in p50_us p99_us p999_us bulk_mbps late; do
		[ -n "$(kv "$out" $k)" ] && record "$rep" mixed "$pair" "$k" "$(kv "$out" $k)"
	done
	record "$rep" mixed "$pair" requests "$(kv "$out" n)"
	log "mixed $pair rep $rep: $out"
}

# w_kv REP PAIR: redis-benchmark GET and SET through the pair to redis-server
w_kv() {
	local rep=$1 pair=$2 out op rps p50 line=
	out=$(timeout 120 redis-benchmark -h 127.0.0.1 -p "$(kv_port "$pair")" -c "$KV_CLIENTS" -n "$KV_N" \
		-t get,set -d "$KV_SIZE" -q 2>&1 | tr '\r' '\n')
	for op in SET GET; do
		rps=$(sed -nE "s/^$op: ([0-9.]+) requests per second.*/\\1/p" <<<"$out" | tail -n 1)
		p50=$(sed -nE "s/^$op: .*p50=([0-9.]+) msec.*/\\1/p" <<<"$out" | tail -n 1)
		if [ -z "$rps" ]; then
			log "kv $pair rep $rep failed: $(grep -v '^$' <<<"$out" | tail -n 3)"
			record "$rep" kv "$pair" fail 1
			check_pair "$pair"
			return
		fi
		record "$rep" kv "$pair" "${op,,}_req_per_s" "$rps"
		[ -n "$p50" ] && record "$rep" kv "$pair" "${op,,}_p50_us" "$(awk -v m="$p50" 'BEGIN {printf "%.1f", m * 1000}')"
		line+=" $op $rps req/s (p50 ${p50:-?} ms)"
	done
	log "kv $pair rep $rep:$line"
}

# w_mem REP PAIR N: restarts the pair, opens N idle connections through it
w_mem() {
	local rep=$1 pair=$2 n=$3 before after out i line=
	stop_pair "$pair"
	start_pair "$pair"
	sleep 0.5
	before=$(pss_kib $(pair_pids "$pair"))
	rm -f "$TMP/hold" "$TMP/idle.out"
	mkfifo "$TMP/hold"
	exec 9<>"$TMP/hold"
	"$TOOLS/bclient" idle "$(bench_addr "$pair")" "$n" 64 300 <"$TMP/hold" 9>&- >"$TMP/idle.out" 2>"$TMP/idle.err" &
	PID[idle]=$!
	for i in $(seq 3000); do
		line=$(head -n 1 "$TMP/idle.out" 2>/dev/null)
		[ -n "$line" ] && break
		kill -0 "${PID[idle]}" 2>/dev/null || break
		sleep 0.1
	done
	if [ "${line%% *}" != ready ]; then
		log "mem $pair N=$n rep $rep failed: $line $(cat "$TMP/idle.err")"
		record "$rep" "mem_$n" "$pair" fail 1
	else
		sleep 1
		after=$(pss_kib $(pair_pids "$pair"))
		record "$rep" "mem_$n" "$pair" KiB_per_conn "$(awk -v a="$after" -v b="$before" -v n="$n" 'BEGIN {printf "%.2f", (a - b) / n}')"
		record "$rep" "mem_$n" "$pair" pss_before_KiB "$before"
		record "$rep" "mem_$n" "$pair" pss_after_KiB "$after"
		record "$rep" "mem_$n" "$pair" open_secs "$(kv "$line" secs)"
		log "mem $pair N=$n rep $rep: PSS $before -> $after KiB, $(awk -v a="$after" -v b="$before" -v n="$n" 'BEGIN {printf "%.2f", (a - b) / n}') KiB/conn (opened in $(kv "$line" secs)s)"
	fi
	exec 9>&-
	stop_proc idle
	check_pair "$pair"
	# The next workload starts with a fresh pair.
	stop_pair "$pair"
	start_pair "$pair"
}

# ---------------------------------------------------------------- run

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
T_START=$(date +%s)
log "tmp dir $TMP; reps $REPS; pairs $PAIRS; workloads $WORKLOADS"
start_backends
for pair in $PAIRS; do
	start_pair "$pair"
done

read -ra pairs <<<"$PAIRS"
np=${#pairs[@]}
for rep in $(seq "$REPS"); do
	# Rotate the pair order each repetition.
	order=()
	for i in $(seq 0 $((np - 1))); do
		order+=("${pairs[$(((i + rep - 1) % np))]}")
	done
	log "== repetition $rep/$REPS, order ${order[*]}, load $(cut -d' ' -f1-3 /proc/loadavg)"
	record "$rep" meta all loadavg1 "$(cut -d' ' -f1 /proc/loadavg)"
	if has bulk; then
		for dir in up down; do
			for pair in "${order[@]}"; do
				w_bulk "$rep" "$pair" "$dir" "$BULK_SIZE" 1 bulk1
			done
		done
	fi
	if has par; then
		for dir in up down; do
			for pair in "${order[@]}"; do
				w_bulk "$rep" "$pair" "$dir" "$PAR_SIZE" "$PAR_STREAMS" "bulk$PAR_STREAMS"
			done
		done
	fi
	if has cps; then
		for pair in "${order[@]}"; do
			w_cps "$rep" "$pair"
		done
	fi
	if has ping; then
		for pair in "${order[@]}"; do
			w_ping "$rep" "$pair" ping
		done
	fi
	if has pingload; then
		for pair in "${order[@]}"; do
			w_ping "$rep" "$pair" ping_bulk bulk
		done
	fi
	if has rr; then
		for pair in "${order[@]}"; do
			w_rr "$rep" "$pair"
		done
	fi
	if has mixed; then
		for pair in "${order[@]}"; do
			w_mixed "$rep" "$pair"
		done
	fi
	if has kv; then
		for pair in "${order[@]}"; do
			w_kv "$rep" "$pair"
		done
	fi
	if has mem; then
		for n in $IDLE_NS; do
			for pair in "${order[@]}"; do
				[ "$pair" = direct ] && continue
				w_mem "$rep" "$pair" "$n"
			done
		done
	fi
done
T_END=$(date +%s)
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- results

mkdir -p "$RESULTS"
cp "$RAW" "$RESULTS/latest.csv"
FINISHED=1
rm -f "$RESULTS/partial.csv"
{
	echo "cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
	echo "cores=$(nproc)"
	echo "kernel=$(uname -r)"
	echo "tlsplex_version=$("$BIN/tlsplex-relay" --version 2>&1 | head -n 1)"
	echo "tlsplex_wolfssl_lib=$(ldd "$BIN/tlsplex-relay" | awk '/wolfssl/ {print $3}')"
	echo "openssl=$(openssl version 2>&1)"
	echo "stunnel=$("$STUNNEL" -version 2>&1 | grep -E '^stunnel|Running' | tr '\n' ';')"
	echo "nginx=$("$NGINX" -v 2>&1)"
	echo "wrk=$(wrk -v 2>&1 | head -n 1)"
	has kv && echo "redis=$(redis-server --version 2>&1 | head -n 1)"
	echo "git_commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)"
	echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "duration_s=$((T_END - T_START))"
	echo "loadavg_start=$LOAD_START"
	echo "loadavg_end=$LOAD_END"
	echo "params=QUICK=$QUICK REPS=$REPS BULK_SIZE=$BULK_SIZE PAR_STREAMS=$PAR_STREAMS PAR_SIZE=$PAR_SIZE WRK_SECS=$WRK_SECS WRK_CONNS=$WRK_CONNS WRK_THREADS=$WRK_THREADS PING_COUNT=$PING_COUNT PING_SIZE=$PING_SIZE PING_MAX_S=$PING_MAX_S IDLE_NS=$IDLE_NS RR_CLIENTS=$RR_CLIENTS RR_MIN=$RR_MIN RR_MAX=$RR_MAX RR_SECS=$RR_SECS MIX_CLIENTS=$MIX_CLIENTS MIX_RATE=$MIX_RATE MIX_SIZE=$MIX_SIZE MIX_BULK=$MIX_BULK MIX_SECS=$MIX_SECS WARM_S=$WARM_S KV_CLIENTS=$KV_CLIENTS KV_N=$KV_N KV_SIZE=$KV_SIZE WORKLOADS=$WORKLOADS"
	echo "note=Shared 2-core machine: other engineers' builds and tests can disturb these numbers; compare medians, and ratios from the same run."
} >"$TMP/meta.txt"
python3 "$ROOT/bench/summarize.py" "$RAW" "$TMP/meta.txt" "$RESULTS/latest.json" || die "summarize failed"
