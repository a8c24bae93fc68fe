#!/bin/sh
# Soak: the load suite (test_load) at full size.
#
#   scripts/soak.sh BUILD_DIR [ASAN_BUILD_DIR]
#
# BUILD_DIR holds a build without sanitizers (RelWithDebInfo); it runs
# TLSPLEX_CYCLES (default 1000000) open/close cycles and a slow consumer
# of TLSPLEX_SLOW_BYTES (default 1 GiB).  Then a sanitizer build
# (ASAN_BUILD_DIR, default BUILD_DIR-asan, configured and built here if
# it does not exist) runs the suite with SOAK_ASAN_CYCLES (default
# 200000) cycles, the same 1 GiB, and LeakSanitizer on.  Prints a summary
# of the figures each run reported; exits non-zero if either run failed.
set -u

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
	echo "usage: $0 BUILD_DIR [ASAN_BUILD_DIR]" >&2
	exit 2
fi
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "$1" && pwd) || exit 2
ASAN=${2:-$BUILD-asan}
CYCLES=${TLSPLEX_CYCLES:-1000000}
ASAN_CYCLES=${SOAK_ASAN_CYCLES:-200000}
SLOW=${TLSPLEX_SLOW_BYTES:-1073741824}
JOBS=$(nproc 2>/dev/null || echo 2)
LOGDIR=${SOAK_LOG_DIR:-$BUILD/soak}
mkdir -p "$LOGDIR"

if [ ! -x "$BUILD/test_load" ]; then
	echo "soak: $BUILD/test_load is missing; build $BUILD first" >&2
	exit 2
fi
if grep -q 'TLSPLEX_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt" 2>/dev/null; then
	echo "soak: $BUILD is a sanitizer build; give a build without sanitizers" >&2
	exit 2
fi
if [ ! -x "$ASAN/test_load" ]; then
	echo "soak: building the sanitizer tree $ASAN"
	wolf=$(sed -n 's/^TLSPLEX_WOLFSSL_PREFIX:PATH=//p' "$BUILD/CMakeCache.txt" 2>/dev/null)
	cmake -S "$SRC" -B "$ASAN" -DCMAKE_BUILD_TYPE=Debug -DTLSPLEX_SANITIZE=ON \
		-DTLSPLEX_WOLFSSL_PREFIX="$wolf" >/dev/null &&
		cmake --build "$ASAN" -j "$JOBS" >"$LOGDIR/asan-build.log" 2>&1 ||
		{ echo "soak: the sanitizer build failed; see $LOGDIR/asan-build.log" >&2; exit 1; }
fi

# run NAME DIR CYCLES: the suite in DIR; its output goes to LOGDIR/NAME.log.
run() {
	name=$1 dir=$2 cycles=$3
	log=$LOGDIR/$name.log
	echo "soak: $name: $cycles cycles, slow consumer $SLOW bytes ($dir)"
	start=$(date +%s)
	(cd "$dir" && TLSPLEX_BUILD_DIR="$dir" TLSPLEX_SOURCE_DIR="$SRC" \
		TLSPLEX_CYCLES="$cycles" TLSPLEX_SLOW_BYTES="$SLOW" \
		ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}" \
		./test_load --verbose --jobs 1) >"$log" 2>&1
	rc=$?
	echo "soak: $name: exit $rc after $(( $(date +%s) - start )) s; log $log"
	return $rc
}

status=0
run release "$BUILD" "$CYCLES" || status=1
run asan "$ASAN" "$ASAN_CYCLES" || status=1

echo
echo "=== soak summary ==="
for name in release asan; do
	log=$LOGDIR/$name.log
	echo "--- $name"
	grep -E '^load: |\[(PASS|FAIL)|Synthesis|ERROR: (Address|Leak)Sanitizer' "$log" | sed 's/^/  /'
	grep -E -A3 'Assertion|assert' "$log" | grep -v '^\[----\] *$' | head -20 | sed 's/^/  /'
done
if [ $status -eq 0 ]; then
	echo "soak: PASSED"
else
	echo "soak: FAILED"
fi
exit $status
