#!/bin/sh
# Makes a local debian:bookworm-slim image from Debian's own packages, for
# machines that reach a Debian mirror but no container registry:
#
#   docker/mkbase.sh [MIRROR]
#
# debootstrap --variant=minbase into a temporary directory, the apt
# sources and the documentation excludes of the official slim image, then
# `podman import`.  The Containerfiles' `FROM debian:bookworm-slim` then
# resolves to this image here and to the official one elsewhere.  Does
# nothing if the image exists, unless TLSPLEX_BASE_REBUILD=1.  Needs root.
set -eu

IMAGE=${TLSPLEX_BASE_IMAGE:-docker.io/library/debian:bookworm-slim}
MIRROR=${1:-http://deb.debian.org/debian}

fail() {
	echo "mkbase: $*" >&2
	exit 1
}

[ "$(id -u)" -eq 0 ] || fail "debootstrap needs root"
for t in debootstrap podman; do
	command -v "$t" >/dev/null 2>&1 || fail "$t not found; run scripts/deps.sh ship"
done
if [ "${TLSPLEX_BASE_REBUILD:-0}" != 1 ] && podman image exists "$IMAGE"; then
	echo "mkbase: $IMAGE exists"
	exit 0
fi

root=$(mktemp -d "${TMPDIR:-/var/tmp}/mkbase.XXXXXX") || fail "mktemp failed"
trap 'rm -rf "$root"' EXIT
echo "mkbase: debootstrap --variant=minbase bookworm from $MIRROR (a few minutes)"
debootstrap --variant=minbase bookworm "$root" "$MIRROR" >"$root.log" 2>&1 ||
	fail "debootstrap failed (see $root.log)"
rm -f "$root.log"

# The official image's sources (one deb822 file) and its dpkg excludes.
rm -f "$root/etc/apt/sources.list"
cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOS
Types: deb
URIs: $MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${MIRROR%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOS
cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOS'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOS
rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"* \
	"$root/usr/share/doc/"*/[!c]* "$root/usr/share/man/"* "$root/usr/share/info/"*

tar --numeric-owner -C "$root" -c . |
	podman import --change 'CMD ["bash"]' - "$IMAGE" >/dev/null ||
	fail "podman import failed"
echo "mkbase: made $IMAGE"
