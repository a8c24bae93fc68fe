#!/bin/sh
# The libFuzzer targets in fuzz/: builds them in their own tree with clang
# and runs them.  See fuzz/README.md.
#
#   scripts/fuzz.sh corpus   every committed input, then FUZZ_RUNS (default
#                            20000) mutations with -seed=1; part of make test
#   scripts/fuzz.sh run      each target for FUZZ_TIME seconds (default 60);
#                            make fuzz
#
# FUZZ_BUILD (default build-fuzz) is the tree (-DTLSPLEX_FUZZ=ON, CC from
# FUZZ_CC, default clang).  New inputs go to a scratch directory, never to
# fuzz/corpus/: a temporary one in corpus mode, FUZZ_BUILD/corpus/TARGET
# (kept between runs) in run mode.  A crashing input is saved as
# FUZZ_BUILD/artifacts/TARGET/crash-* (or leak-*, timeout-*).  Exits
# non-zero if any target failed.
set -u

SRC=$(cd "$(dirname "$0")/.." && pwd)
MODE=${1:-}
B=${FUZZ_BUILD:-$SRC/build-fuzz}
CC_FUZZ=${FUZZ_CC:-clang}
TARGETS="neg mux config jsonl"

case "$MODE" in
corpus | run) ;;
*)
	echo "usage: $0 corpus|run" >&2
	exit 2
	;;
esac

if ! command -v "$CC_FUZZ" >/dev/null 2>&1; then
	echo "fuzz: $CC_FUZZ not found; run scripts/deps.sh (it installs clang)" >&2
	exit 2
fi
cmake -S "$SRC" -B "$B" -DCMAKE_C_COMPILER="$CC_FUZZ" -DTLSPLEX_FUZZ=ON \
	-DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || exit 1
cmake --build "$B" -j "$(nproc 2>/dev/null || echo 2)" \
	--target fuzz_neg fuzz_mux fuzz_config fuzz_jsonl >/dev/null || {
	echo "fuzz: build failed in $B" >&2
	exit 1
}

# Largest input per target: a whole negotiation message and a bit, some
# full DATA frames, a configuration file.
max_len() {
	case "$1" in
	neg) echo 4200 ;;
	mux) echo 20000 ;;
	config) echo 4096 ;;
	jsonl) echo 65535 ;;
	esac
}

export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"
failed=""
for t in $TARGETS; do
	art="$B/artifacts/$t"
	log="$B/logs/$t.log"
	mkdir -p "$art" "$B/logs"
	dict=""
	[ -f "$SRC/fuzz/$t.dict" ] && dict="-dict=$SRC/fuzz/$t.dict"
	if [ "$MODE" = corpus ]; then
		scratch=$(mktemp -d "${TMPDIR:-/tmp}/tlsplex-fuzz-$t.XXXXXX")
		set -- -runs="${FUZZ_RUNS:-20000}" -seed=1 "$scratch"
	else
		scratch=""
		mkdir -p "$B/corpus/$t"
		set -- -max_total_time="${FUZZ_TIME:-60}" "$B/corpus/$t"
	fi
	# shellcheck disable=SC2086
	"$B/fuzz_$t" -timeout=10 -rss_limit_mb=2048 -max_len="$(max_len "$t")" \
		-artifact_prefix="$art/" -print_final_stats=1 $dict \
		"$@" "$SRC/fuzz/corpus/$t" >"$log" 2>&1
	rc=$?
	[ -n "$scratch" ] && rm -rf "$scratch"
	summary=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 |
		sed 's/[[:space:]]\{1,\}/ /g')
	if [ $rc -eq 0 ]; then
		echo "fuzz_$t: ok ($MODE): ${summary:-see $log}"
	else
		echo "fuzz_$t: FAILED ($MODE, exit $rc); log $log; last lines:" >&2
		tail -n 30 "$log" >&2
		find "$art" -type f | sed "s|^|fuzz_$t: artifact |" >&2
		failed="$failed $t"
	fi
done
if [ -n "$failed" ]; then
	echo "fuzz: failed:$failed (reproduce: $B/fuzz_TARGET ARTIFACT)" >&2
	exit 1
fi
