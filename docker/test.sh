#!/bin/bash
# make docker-test: builds the image with podman, brings up the compose
# demo (docker/compose.yaml: certs one-shot, echo backend, relay, gateway),
# passes demo traffic from a client container through the gateway and
# relay containers to the echo container, checks the hook events on the
# state volume, the health checks and a clean SIGTERM stop, then removes
# the containers, volumes, network and images it made.  Needs root.
#
# podman-compose 1.0.3 exits 0 even when a container fails, so every
# container's state is checked here with podman itself.  The project is
# named after this script's PID, so parallel runs do not meet.  CONTAINERS_CONF
# points at docker/containers.conf (runc, cgroupfs, ulimits), leaving the
# machine's podman configuration alone.  TLSPLEX_KEEP_IMAGES=1 keeps the
# images (a later run then skips the wolfSSL build).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$ROOT/docker/containers.conf}
IMAGE=localhost/tlsplex:latest
DEMO=localhost/tlsplex-demo:latest
PROJECT=tlsplex-test-$$
COMPOSE=(podman-compose -p "$PROJECT" -f "$ROOT/docker/compose.yaml")
LOG=$(mktemp -d "${TMPDIR:-/tmp}/tlsplex-docker-test.XXXXXX")

say() { echo "docker-test: $*"; }
fail() {
	echo "docker-test: FAILED: $*" >&2
	for s in certs echo relay gateway; do
		c=${PROJECT}_${s}_1
		podman container exists "$c" 2>/dev/null || continue
		echo "---- $s: $(podman inspect -f '{{.State.Status}} exit={{.State.ExitCode}}' "$c") (last 20 log lines)" >&2
		podman logs --tail 20 "$c" >&2 2>&1 || true
	done
	exit 1
}

cleanup() {
	local rc=$?
	set +e
	# The containers with their anonymous volumes (the image's VOLUMEs),
	# which podman-compose down leaves behind; then the named volumes.
	podman ps -aq --filter "label=io.podman.compose.project=$PROJECT" |
		xargs -r podman rm -f -v >/dev/null 2>&1
	"${COMPOSE[@]}" down -v >"$LOG/down.log" 2>&1
	podman rm -f "$PROJECT-client" >/dev/null 2>&1
	podman volume ls -q --filter "label=io.podman.compose.project=$PROJECT" |
		xargs -r podman volume rm -f >/dev/null 2>&1
	for v in certs state; do podman volume rm -f "${PROJECT}_$v" >/dev/null 2>&1; done
	podman network rm -f "${PROJECT}_default" >/dev/null 2>&1
	if [ "${TLSPLEX_KEEP_IMAGES:-0}" != 1 ]; then
		podman rmi -f "$DEMO" "$IMAGE" >/dev/null 2>&1
		# The build's intermediate images, by the Containerfile's label.
		podman images -a -q --filter label=tlsplex.stage |
			xargs -r podman rmi -f >/dev/null 2>&1
	fi
	left=$(podman ps -aq --filter "label=io.podman.compose.project=$PROJECT")
	[ -z "$left" ] || echo "docker-test: containers left behind: $left" >&2
	rm -rf "$LOG"
	exit $rc
}

[ "$(id -u)" -eq 0 ] || fail "needs root (podman with runc and cgroupfs, debootstrap)"
for t in podman podman-compose; do
	command -v "$t" >/dev/null 2>&1 || fail "$t not found; run scripts/deps.sh ship"
done
trap cleanup EXIT

# state CONTAINER: its status, or "missing".
state() { podman inspect -f '{{.State.Status}}' "$1" 2>/dev/null || echo missing; }
# wait_state CONTAINER STATUS SECONDS
wait_state() {
	local i
	for i in $(seq $(($3 * 2))); do
		[ "$(state "$1")" = "$2" ] && return 0
		sleep 0.5
	done
	return 1
}
# wait_log CONTAINER TEXT SECONDS
wait_log() {
	local i
	for i in $(seq $(($3 * 2))); do
		podman logs "$1" 2>&1 | grep -q -- "$2" && return 0
		sleep 0.5
	done
	return 1
}

"$ROOT/docker/mkbase.sh"

say "building $IMAGE and $DEMO (the first build compiles wolfSSL: minutes)"
start=$(date +%s)
for target in runtime demo; do
	tag=$IMAGE
	[ "$target" = demo ] && tag=$DEMO
	podman build --format docker --network host -f "$ROOT/docker/Containerfile" \
		--target "$target" -t "$tag" "$ROOT" >"$LOG/build-$target.log" 2>&1 ||
		{ tail -n 40 "$LOG/build-$target.log" >&2; fail "podman build --target $target"; }
done
say "images built in $(($(date +%s) - start))s"

# The runtime image: the daemons as a non-root user, a health check, no
# build tools, and the daemons' shared libraries all resolved.
user=$(podman image inspect -f '{{.Config.User}}' "$IMAGE")
[ "$user" = tlsplex ] || fail "the runtime image runs as '$user', not tlsplex"
podman image inspect -f '{{.Config.Healthcheck}}' "$IMAGE" | grep -q tlsplex-healthcheck ||
	fail "the runtime image has no health check"
podman run --rm --no-healthcheck "$IMAGE" sh -c '! command -v cc && ! command -v cmake && ! command -v openssl' \
	>/dev/null || fail "the runtime image holds build tools or openssl"
podman run --rm --no-healthcheck "$IMAGE" sh -c 'ldd /usr/bin/tlsplex-relay /usr/bin/tlsplex-gateway' \
	>"$LOG/ldd" 2>&1 || fail "ldd failed in the runtime image"
! grep -q "not found" "$LOG/ldd" || fail "a library is missing in the runtime image: $(grep 'not found' "$LOG/ldd")"
podman run --rm --no-healthcheck "$IMAGE" test -s /etc/ssl/certs/ca-certificates.crt ||
	fail "the runtime image has no CA certificates"
podman run --rm --no-healthcheck "$IMAGE" tlsplex-relay --version | tee "$LOG/version"
size=$(podman image inspect -f '{{.Size}}' "$IMAGE")
say "runtime image: user tlsplex, $((size / 1000000)) MB"

# Podman 4.3 puts the host's nameservers after aardvark-dns in each
# container's resolv.conf, and libevent's resolver (evdns) asks them in
# turn, so half the lookups of a service name come back NXDOMAIN.  Docker
# and newer podman list only their own resolver.  Here: the project
# network made with a free subnet, and that network's aardvark-dns as the
# only nameserver (containers.conf dns_servers, for this run only).
used=$(podman network ls -q | xargs -r podman network inspect \
	-f '{{range .Subnets}}{{.Subnet}} {{end}}' 2>/dev/null || true)
octet=""
for i in $(seq 200 250); do
	case " $used " in *" 10.89.$i.0/24 "*) ;; *) octet=$i; break ;; esac
done
[ -n "$octet" ] || fail "no free 10.89.200-250.0/24 subnet for the test network"
podman network create --subnet "10.89.$octet.0/24" --gateway "10.89.$octet.1" \
	--label "io.podman.compose.project=$PROJECT" "${PROJECT}_default" >/dev/null ||
	fail "cannot create the network ${PROJECT}_default"
sed "s/^\[containers\]\$/[containers]\ndns_servers = [\"10.89.$octet.1\"]/" \
	"$CONTAINERS_CONF" >"$LOG/containers.conf"
export CONTAINERS_CONF=$LOG/containers.conf

# A free host port for the gateway's published port (make demo uses 7401).
port=""
for _ in $(seq 50); do
	p=$((20000 + RANDOM % 20000))
	if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
		port=$p
		break
	fi
done
[ -n "$port" ] || fail "no free port on 127.0.0.1 to publish the gateway on"
export TLSPLEX_DEMO_PORT=$port

# The certificates first (podman-compose does not wait for a one-shot),
# then the pair.
"${COMPOSE[@]}" up -d certs >"$LOG/up-certs.log" 2>&1 || { cat "$LOG/up-certs.log" >&2; fail "compose up certs"; }
wait_state "${PROJECT}_certs_1" exited 60 || fail "the certs service did not finish"
[ "$(podman inspect -f '{{.State.ExitCode}}' "${PROJECT}_certs_1")" = 0 ] ||
	fail "the certs service failed"
"${COMPOSE[@]}" up -d >"$LOG/up.log" 2>&1 || { cat "$LOG/up.log" >&2; fail "compose up"; }
for s in echo relay gateway; do
	wait_state "${PROJECT}_${s}_1" running 30 || fail "$s is not running ($(state "${PROJECT}_${s}_1"))"
done
wait_log "${PROJECT}_relay_1" "listening for links" 30 || fail "the relay did not start listening"
wait_log "${PROJECT}_gateway_1" "is up" 30 || fail "the gateway's link did not come up"
say "up: echo, relay and gateway in three containers; the link is up"

# Demo traffic from a fourth container: client -> gateway -> relay -> echo.
net=$(podman inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}' \
	"${PROJECT}_gateway_1" | awk '{ print $1 }')
[ -n "$net" ] || fail "cannot find the compose network"
podman run --rm --no-healthcheck --name "$PROJECT-client" --network "$net" "$DEMO" \
	tpx-blast -c gateway:7401 -n 8 -b 65536 -t 60 | tee "$LOG/blast" ||
	fail "the demo traffic did not come back intact through the gateway and relay containers"
# And from the host, through the port the gateway publishes.
podman run --rm --no-healthcheck --name "$PROJECT-client" --network host "$DEMO" \
	tpx-blast -c "127.0.0.1:$port" -n 4 -b 65536 -t 60 | tee "$LOG/blast-host" ||
	fail "the demo traffic did not pass through the gateway's published port 127.0.0.1:$port"
for s in echo relay gateway; do
	[ "$(state "${PROJECT}_${s}_1")" = running ] || fail "$s stopped during the traffic"
	[ "$(podman inspect -f '{{.RestartCount}}' "${PROJECT}_${s}_1")" -le 3 ] ||
		fail "$s restarted more than 3 times"
done
podman logs "${PROJECT}_relay_1" 2>&1 | grep -q "TLS up" || fail "the relay logged no 'TLS up' on standard error"

# Health checks: the relay listens, the gateway's link is established.
for s in echo relay gateway; do
	podman healthcheck run "${PROJECT}_${s}_1" >/dev/null 2>&1 ||
		fail "the health check of $s fails"
done
say "health checks pass"

# The hook events on the mounted state volume.
vol=$(podman volume inspect -f '{{.Mountpoint}}' "${PROJECT}_state") ||
	fail "no state volume ${PROJECT}_state"
for f in hooks-relay.jsonl hooks-gateway.jsonl; do
	[ -s "$vol/$f" ] || fail "$f is missing or empty on the state volume ($vol)"
done
grep -q '"event":"handshake_pending"' "$vol/hooks-gateway.jsonl" ||
	fail "the gateway's hook file has no handshake_pending event"
grep -q '"event":"handshake_done"' "$vol/hooks-relay.jsonl" ||
	fail "the relay's hook file has no handshake_done event"
say "hook events on the state volume: $(wc -l <"$vol/hooks-relay.jsonl") relay, $(wc -l <"$vol/hooks-gateway.jsonl") gateway"

# podman stop sends SIGTERM: the gateway closes its link and exits 0, and
# the relay records the closed link.
podman stop -t 20 "${PROJECT}_gateway_1" >/dev/null
[ "$(podman inspect -f '{{.State.ExitCode}}' "${PROJECT}_gateway_1")" = 0 ] ||
	fail "the gateway did not exit 0 on SIGTERM"
for _ in $(seq 20); do
	grep -q '"event":"link_closed"' "$vol/hooks-relay.jsonl" && break
	sleep 0.5
done
grep -q '"event":"link_closed"' "$vol/hooks-relay.jsonl" ||
	fail "the relay recorded no link_closed after the gateway stopped"
say "SIGTERM: the gateway exited 0; the relay saw the link close"
say "OK"
