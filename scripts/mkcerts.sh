#!/bin/sh
# Makes throwaway test certificates for tlsplex (ECDSA P-256, valid 2 days).
#
#   scripts/mkcerts.sh [-f] DIR
#
# DIR/ca.crt, ca.key                 test CA, CN "tlsplex test CA"
# DIR/relay.crt, relay.key           CN relay, SAN DNS:relay, DNS:localhost, IP:127.0.0.1
# DIR/gw1.crt, gw1.key               CN gw1, SAN DNS:gw1
# DIR/rogue-ca.crt, rogue-ca.key     a second CA, CN "rogue CA"
# DIR/rogue-relay.crt, rogue-relay.key  like relay, signed by the rogue CA
# DIR/gw2.crt, gw2.key               CN gw2, SAN DNS:gw2
# DIR/gw-cn.crt, gw-cn.key           CN gw-cn, no subjectAltName at all
# DIR/gw-uri.crt, gw-uri.key         CN gw-uri, SAN URI:spiffe://corp/gw/alpha only
# DIR/gw-revoked.crt, gw-revoked.key CN gw-revoked, SAN DNS:gw-revoked; revoked
# DIR/ca.crl                         CRL from the test CA revoking gw-revoked
# DIR/ca.d/ca.crt                    a CA directory holding a copy of ca.crt
#
# Leaf certificates carry both serverAuth and clientAuth.  Does nothing if
# DIR/ca.crt exists, unless -f is given.  Silent on success; on failure
# prints what failed and exits non-zero.
set -eu
umask 077

usage() {
	echo "usage: $0 [-f] DIR" >&2
	exit 2
}

force=0
if [ "${1:-}" = "-f" ]; then
	force=1
	shift
fi
[ $# -eq 1 ] || usage
dir=$1
days=2

command -v openssl >/dev/null 2>&1 || { echo "mkcerts: openssl not found in PATH" >&2; exit 1; }

if [ -e "$dir/ca.crt" ] && [ "$force" -eq 0 ]; then
	exit 0
fi
mkdir -p "$dir" || { echo "mkcerts: cannot create $dir" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/mkcerts.XXXXXX") || { echo "mkcerts: mktemp failed" >&2; exit 1; }
trap 'rm -rf "$work"' EXIT
log=$work/log

run() {
	if ! "$@" >>"$log" 2>&1; then
		echo "mkcerts: failed: $*" >&2
		cat "$log" >&2
		exit 1
	fi
}

cat >"$work/ca.ext" <<'EOF'
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EOF

# leaf_ext NAME SAN
leaf_ext() {
	cat >"$work/$1.ext" <<EOF
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyAgreement
extendedKeyUsage = serverAuth, clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
EOF
	[ -z "$2" ] || echo "subjectAltName = $2" >>"$work/$1.ext"
}

serial() {
	od -An -N8 -tx1 /dev/urandom | tr -d ' \n' | sed 's/^./1/'
}

# key NAME: a P-256 key in SEC1 ("EC PRIVATE KEY") form.
key() {
	run openssl ecparam -name prime256v1 -genkey -noout -out "$work/$1.key"
	chmod 600 "$work/$1.key"
}

# ca NAME CN
ca() {
	key "$1"
	run openssl req -new -key "$work/$1.key" -subj "/CN=$2" -out "$work/$1.csr"
	run openssl x509 -req -in "$work/$1.csr" -signkey "$work/$1.key" -sha256 \
		-days "$days" -set_serial "0x$(serial)" -extfile "$work/ca.ext" \
		-out "$work/$1.crt"
}

# leaf NAME CN SAN ISSUER (an empty SAN leaves the extension out)
leaf() {
	key "$1"
	leaf_ext "$1" "$3"
	run openssl req -new -key "$work/$1.key" -subj "/CN=$2" -out "$work/$1.csr"
	run openssl x509 -req -in "$work/$1.csr" -CA "$work/$4.crt" -CAkey "$work/$4.key" \
		-sha256 -days "$days" -set_serial "0x$(serial)" -extfile "$work/$1.ext" \
		-out "$work/$1.crt"
	run openssl verify -CAfile "$work/$4.crt" -purpose sslserver "$work/$1.crt"
	run openssl verify -CAfile "$work/$4.crt" -purpose sslclient "$work/$1.crt"
}

relay_san="DNS:relay, DNS:localhost, IP:127.0.0.1"
ca ca "tlsplex test CA"
ca rogue-ca "rogue CA"
leaf relay relay "$relay_san" ca
leaf gw1 gw1 "DNS:gw1" ca
leaf rogue-relay relay "$relay_san" rogue-ca
leaf gw2 gw2 "DNS:gw2" ca
leaf gw-cn gw-cn "" ca
leaf gw-uri gw-uri "URI:spiffe://corp/gw/alpha" ca
leaf gw-revoked gw-revoked "DNS:gw-revoked" ca

# A CRL revoking gw-revoked, from a minimal `openssl ca` database.
: >"$work/index.txt"
cat >"$work/ca.cnf" <<EOF
[ca]
default_ca = test
[test]
database = $work/index.txt
certificate = $work/ca.crt
private_key = $work/ca.key
default_md = sha256
default_crl_days = $days
EOF
run openssl ca -config "$work/ca.cnf" -revoke "$work/gw-revoked.crt" -crl_reason keyCompromise
run openssl ca -config "$work/ca.cnf" -gencrl -out "$work/ca.crl"
run openssl verify -crl_check -CAfile "$work/ca.crt" -CRLfile "$work/ca.crl" "$work/gw1.crt"
if openssl verify -crl_check -CAfile "$work/ca.crt" -CRLfile "$work/ca.crl" \
	"$work/gw-revoked.crt" >>"$log" 2>&1; then
	echo "mkcerts: the CRL does not revoke gw-revoked" >&2
	exit 1
fi

# Move into place; ca.crt last, since its presence marks DIR complete.
run mkdir -p "$dir/ca.d"
run chmod 755 "$dir/ca.d"
for f in ca.d/ca.crt ca.crl; do
	run cp "$work/${f#ca.d/}" "$dir/$f.tmp"
	run chmod 644 "$dir/$f.tmp"
	run mv -f "$dir/$f.tmp" "$dir/$f"
done
for n in ca rogue-ca relay gw1 rogue-relay gw2 gw-cn gw-uri gw-revoked; do
	run cp "$work/$n.key" "$dir/$n.key.tmp"
	run chmod 600 "$dir/$n.key.tmp"
	run mv -f "$dir/$n.key.tmp" "$dir/$n.key"
done
for n in rogue-ca relay gw1 rogue-relay gw2 gw-cn gw-uri gw-revoked ca; do
	run cp "$work/$n.crt" "$dir/$n.crt.tmp"
	run chmod 644 "$dir/$n.crt.tmp"
	run mv -f "$dir/$n.crt.tmp" "$dir/$n.crt"
done
exit 0
