#!/bin/sh
# Builds wolfSSL from Debian's own source package for the installed
# libwolfssl-dev version, with Debian's configure flags plus AES-NI, the
# Intel assembly code paths and SP assembly, into CACHE_DIR/prefix
# (default .cache/wolfssl).  tlsplex links the static library from there,
# so the binaries need no rpath and do not depend on the cache at run time.
#
# Idempotent: a stamp in the prefix records the version and flags of a
# finished build, and a matching stamp skips all work.
# Exit status 0 and one line "wolfssl-fast: using PREFIX (...)" on
# success; 1 with the reason on standard error otherwise (the caller then
# uses the system library).
set -u

CACHE=${1:-.cache/wolfssl}
ASM_FLAGS="--enable-aesni --enable-intelasm --enable-sp --enable-sp-asm"
# Record buffers inside the session, so that a record needs no malloc,
# and no zeroing free, each time it is read or written.
BUF_FLAGS="-DLARGE_STATIC_BUFFERS"
# Debian's own flags (debian/rules, override_dh_auto_configure).
DEB_FLAGS="--enable-distro --enable-pkcs11 --disable-examples --disable-silent-rules"
TOOLS="dpkg-dev autoconf automake libtool"

fail() {
	echo "wolfssl-fast: $*" >&2
	exit 1
}

arch=$(uname -m)
[ "$arch" = x86_64 ] || fail "no fast build on $arch (only x86-64)"

version=$(dpkg-query -W -f='${Version}' libwolfssl-dev 2>/dev/null) ||
	fail "libwolfssl-dev is not installed, so there is no version to build"
[ -n "$version" ] || fail "cannot read the libwolfssl-dev version"
upstream=${version#*:}
upstream=${upstream%-*}

mkdir -p "$CACHE" || fail "cannot create $CACHE"
CACHE=$(cd "$CACHE" && pwd)
PREFIX=$CACHE/prefix
STAMP=$PREFIX/.tlsplex-stamp
want="version=$version flags=$DEB_FLAGS $ASM_FLAGS $BUF_FLAGS"

done_line() {
	echo "wolfssl-fast: using $PREFIX (wolfSSL $upstream, AES-NI)"
	exit 0
}

[ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && done_line

# One build at a time per cache; a second caller waits and then finds
# the stamp.
if [ -z "${WOLFSSL_FAST_LOCKED:-}" ] && command -v flock >/dev/null 2>&1; then
	WOLFSSL_FAST_LOCKED=1 exec flock "$CACHE/.lock" "$0" "$CACHE"
fi
[ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && done_line

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null 2>&1 || fail "need root to fetch the source package"
	SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
LOG=$CACHE/build.log
: >"$LOG"
echo "wolfssl-fast: building wolfSSL $version with AES-NI/intelasm/sp-asm in $CACHE (log: $LOG)"

# A deb-src entry for every deb entry, only when none is configured.
has_src() {
	grep -Eqs '^[[:space:]]*deb-src[[:space:]]|^Types:.*deb-src' \
		/etc/apt/sources.list /etc/apt/sources.list.d/*.list \
		/etc/apt/sources.list.d/*.sources
}
if ! has_src; then
	tmp=$CACHE/deb-src.tmp
	: >"$tmp"
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		sed 's/^Types:.*/Types: deb-src/' "$f" >>"$tmp"
		echo >>"$tmp"
	done
	if [ -s "$tmp" ]; then
		$SUDO cp "$tmp" /etc/apt/sources.list.d/tlsplex-deb-src.sources ||
			fail "cannot write /etc/apt/sources.list.d/tlsplex-deb-src.sources"
		echo "wolfssl-fast: wrote /etc/apt/sources.list.d/tlsplex-deb-src.sources"
	fi
	sed -n 's/^[[:space:]]*deb[[:space:]]/deb-src /p' \
		/etc/apt/sources.list /etc/apt/sources.list.d/*.list \
		>"$tmp" 2>/dev/null
	if [ -s "$tmp" ]; then
		$SUDO cp "$tmp" /etc/apt/sources.list.d/tlsplex-deb-src.list ||
			fail "cannot write /etc/apt/sources.list.d/tlsplex-deb-src.list"
		echo "wolfssl-fast: wrote /etc/apt/sources.list.d/tlsplex-deb-src.list"
	fi
	rm -f "$tmp"
	has_src || fail "no apt source entries to derive a deb-src entry from"
fi
$SUDO apt-get update -qq >>"$LOG" 2>&1 ||
	echo "wolfssl-fast: apt-get update failed; trying the cached package lists" >&2

missing=""
for p in $TOOLS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
		missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "wolfssl-fast: installing:$missing"
	# shellcheck disable=SC2086
	$SUDO apt-get install -y -qq --no-install-recommends $missing >>"$LOG" 2>&1 ||
		fail "cannot install the build tools:$missing (see $LOG)"
fi

SRC=$CACHE/src
rm -rf "$SRC" "$PREFIX"
mkdir -p "$SRC" || fail "cannot create $SRC"
(cd "$SRC" && apt-get source --download-only "wolfssl=$version") >>"$LOG" 2>&1 ||
	fail "cannot fetch the source package wolfssl=$version (no deb-src for it, or the mirror is unreachable; see $LOG)"
dsc=$(ls "$SRC"/wolfssl_*.dsc 2>/dev/null | head -n 1)
[ -n "$dsc" ] || fail "the source package has no .dsc"
(cd "$SRC" && dpkg-source -x "$dsc" tree) >>"$LOG" 2>&1 ||
	fail "cannot unpack $dsc (see $LOG)"

# Debian's compiler flags (hardening=+all, as in debian/rules).
eval "$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --export=sh)"
export CFLAGS="$CFLAGS -fPIC $BUF_FLAGS"
jobs=$(nproc 2>/dev/null || echo 2)
(
	set -e
	cd "$SRC/tree"
	autoreconf -fi
	# shellcheck disable=SC2086
	./configure --prefix="$PREFIX" --libdir="$PREFIX/lib" $DEB_FLAGS $ASM_FLAGS
	# The library, its headers and wolfssl.pc only: no tests or tools.
	make -j"$jobs" src/libwolfssl.la
	make install-libLTLIBRARIES install-includeHEADERS \
		install-nobase_includeHEADERS install-pkgconfigDATA
	# A distro build leaves options.h out; Debian installs it with the
	# -dev package, and code must include it first.
	install -m 644 wolfssl/options.h "$PREFIX/include/wolfssl/"
	for f in $BUF_FLAGS; do
		f=${f#-D}
		printf '#ifndef %s\n#define %s\n#endif\n' "$f" "$f" >>"$PREFIX/include/wolfssl/options.h"
	done
	install -m 644 cyassl/options.h "$PREFIX/include/cyassl/"
) >>"$LOG" 2>&1 || fail "the wolfSSL build failed (see $LOG)"

grep -q '^#define WOLFSSL_AESNI' "$PREFIX/include/wolfssl/options.h" ||
	fail "the build does not define WOLFSSL_AESNI"
[ -f "$PREFIX/lib/libwolfssl.a" ] || fail "the build produced no static library"
echo "$want" >"$STAMP"
rm -rf "$SRC/tree"
done_line
