#include "tlsio.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/error-ssl.h>
#include <wolfssl/openssl/evp.h>
#include <wolfssl/openssl/x509v3.h>
#include <wolfssl/wolfcrypt/asn.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include "config.h"
#include "log.h"
#include "match.h"
#include "neg.h"
#include "policy.h"

/*
 * Renegotiation stays impossible: these builds lack HAVE_SECURE_RENEGOTIATION
 * (only HAVE_SERVER_RENEGOTIATION_INFO, the RFC 5746 signalling), so a
 * server refuses a ClientHello after the handshake with a fatal
 * unexpected_message and a client answers a HelloRequest with a
 * no_renegotiation alert, after which tls_conn_read() fails the link.
 * wolfSSL has no run-time switch to turn renegotiation off, so a build
 * that could renegotiate is refused here.
 */
#if defined(HAVE_SECURE_RENEGOTIATION) || \
    defined(WOLFSSL_SECURE_RENEGOTIATION_ON_BY_DEFAULT)
#error "tlsplex needs a wolfSSL built without secure renegotiation"
#endif

struct tls_ctx {
	WOLFSSL_CTX *ctx;
	int server;
	uint16_t groups[10];    /* allowed key-exchange groups; none = any */
	size_t n_groups;
	int refs;
};

struct tls_conn {
	WOLFSSL *ssl;
	int established;
	struct tls_io io;
	void *io_arg;
	struct evbuffer *in, *out; /* tls_conn_new() only */
	int eof;
	int server;
	int client_cert;
	uint16_t groups[10];    /* the context's allowed groups */
	size_t n_groups;
	char server_name[256];
	char err[512];
};

int
tls_global_init(void)
{
	return wolfSSL_Init() == WOLFSSL_SUCCESS ? 0 : -1;
}

void
tls_global_cleanup(void)
{
	wolfSSL_Cleanup();
}

const char *
tls_library_version(void)
{
	static char v[64];

	snprintf(v, sizeof(v), "wolfSSL %s", wolfSSL_lib_version());
	return v;
}

#ifndef TLSPLEX_WOLFSSL_BUILD
#define TLSPLEX_WOLFSSL_BUILD "system"
#endif

#ifdef WOLFSSL_AESNI
static int
tls_cpu_has_aes(void)
{
	__builtin_cpu_init();
	return __builtin_cpu_supports("aes") && __builtin_cpu_supports("pclmul");
}
#endif

int
tls_aes_fast(void)
{
#ifdef WOLFSSL_AESNI
	return tls_cpu_has_aes();
#else
	return 0;
#endif
}

const char *
tls_library_describe(void)
{
	static const char *const asm_names[] = {
#ifdef WOLFSSL_AESNI
		"AES-NI",
#endif
#ifdef USE_INTEL_SPEEDUP
		"intelasm",
#endif
#if defined(WOLFSSL_SP_X86_64_ASM) || defined(WOLFSSL_SP_ASM)
		"sp-asm",
#endif
		NULL,
	};
	static char v[256];
	char list[64] = "";
	const char *origin, *state;
	size_t i, len = 0;

	for (i = 0; asm_names[i] != NULL; i++)
		len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%s",
					i ? "/" : "", asm_names[i]);
	if (strcmp(TLSPLEX_WOLFSSL_BUILD, "fast") == 0)
		origin = "built from Debian source";
	else
		origin = "system library";
#ifdef WOLFSSL_AESNI
	state = tls_cpu_has_aes() ? "AES-NI active" :
		"AES-NI compiled in, but this CPU lacks AES instructions";
#else
	state = "AES-NI not compiled in";
#endif
	snprintf(v, sizeof(v), "%s (%s%s%s; %s)", tls_library_version(),
		 origin, list[0] ? " with " : "", list, state);
	return v;
}

/* 1 for an AES-GCM suite, 2 for ChaCha20-Poly1305, 0 for others. */
static int
tls_cipher_kind(uint16_t id)
{
	const struct cipher_info *ci = cipher_by_id(id);

	if (ci == NULL)
		return 0;
	if (strstr(ci->iana, "_GCM_") != NULL)
		return 1;
	if (strstr(ci->iana, "CHACHA20_POLY1305") != NULL)
		return 2;
	return 0;
}

void
tls_order_ciphers(uint16_t *ids, size_t n, int aes_first)
{
	uint16_t out[NEG_CIPHERS_MAX];
	int kind, pass, first = aes_first ? 1 : 2;
	size_t i, o = 0;

	if (n > NEG_CIPHERS_MAX)
		return;
	for (pass = 0; pass < 3; pass++) {
		for (i = 0; i < n; i++) {
			kind = tls_cipher_kind(ids[i]);
			if ((pass == 0 && kind == first) ||
			    (pass == 1 && kind != first && kind != 0) ||
			    (pass == 2 && kind == 0))
				out[o++] = ids[i];
		}
	}
	memcpy(ids, out, n * sizeof(ids[0]));
}

static void
tls_err_string(int code, char *buf, size_t len)
{
	char tmp[WOLFSSL_MAX_ERROR_SZ];

	wolfSSL_ERR_error_string_n((unsigned long)code, tmp, sizeof(tmp));
	snprintf(buf, len, "%s", tmp);
}

/* Warns about, or with key_perms = error refuses, a private key file
 * that group or others may read or write, or that belongs to a user
 * other than this process's and root (who could replace it). */
static int
tls_check_key_perms(const struct cfg *c, char *err, size_t errlen)
{
	struct stat sb;
	char why[128];

	if (stat(c->key, &sb) != 0) {
		snprintf(err, errlen, "cannot read private key '%s' (key 'key'): %s",
			 c->key, strerror(errno));
		return -1;
	}
	if (sb.st_mode & 077)
		snprintf(why, sizeof(why), "has mode %04o: group or others may "
			 "access it; chmod 600 it", (unsigned)(sb.st_mode & 07777));
	else if (sb.st_uid != 0 && sb.st_uid != geteuid())
		snprintf(why, sizeof(why), "belongs to uid %u, neither this "
			 "process's user (uid %u) nor root; chown it",
			 (unsigned)sb.st_uid, (unsigned)geteuid());
	else
		return 0;
	if (c->key_perms == CFG_KEY_PERMS_ERROR) {
		snprintf(err, errlen, "private key '%s' (key 'key') %s "
			 "(key_perms = error)", c->key, why);
		return -1;
	}
	log_warn("private key '%s' (key 'key') %s", c->key, why);
	return 0;
}

/* Loads the CA file, or every file of the CA directory, at path. */
static int
tls_load_ca(WOLFSSL_CTX *ctx, const char *path, char *err, size_t errlen)
{
	struct stat sb;
	int dir;

	if (stat(path, &sb) != 0) {
		snprintf(err, errlen, "cannot read CA '%s' (key 'ca'): %s", path,
			 strerror(errno));
		return -1;
	}
	dir = S_ISDIR(sb.st_mode);
	if (wolfSSL_CTX_load_verify_locations(ctx, dir ? NULL : path,
					      dir ? path : NULL) !=
	    WOLFSSL_SUCCESS) {
		snprintf(err, errlen, dir ?
			 "cannot load CA directory '%s' (key 'ca'): it must "
			 "hold at least one file, and only PEM CA certificates" :
			 "cannot load CA bundle '%s' (key 'ca'): no valid PEM "
			 "certificate in it", path);
		return -1;
	}
	return 0;
}

/* wolfSSL's curve name for an elliptic-curve group, NULL for others. */
static const char *
tls_curve_name(uint16_t id)
{
	switch (id) {
	case WOLFSSL_ECC_SECP256R1: return "P-256";
	case WOLFSSL_ECC_SECP384R1: return "P-384";
	case WOLFSSL_ECC_SECP521R1: return "P-521";
	case WOLFSSL_ECC_X25519: return "X25519";
	case WOLFSSL_ECC_X448: return "X448";
	default: return NULL;
	}
}

/* The IANA id of a group as wolfSSL_get_curve_name() names it; 0 if
 * unknown. */
static uint16_t
tls_group_id(const char *name)
{
	static const struct {
		const char *name;
		uint16_t id;
	} map[] = {
		{ "SECP256R1", WOLFSSL_ECC_SECP256R1 },
		{ "SECP384R1", WOLFSSL_ECC_SECP384R1 },
		{ "SECP521R1", WOLFSSL_ECC_SECP521R1 },
		{ "X25519", WOLFSSL_ECC_X25519 },
		{ "X448", WOLFSSL_ECC_X448 },
		{ "FFDHE_2048", WOLFSSL_FFDHE_2048 },
		{ "FFDHE_3072", WOLFSSL_FFDHE_3072 },
	};
	size_t i;

	for (i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(map[i].name, name) == 0)
			return map[i].id;
	return 0;
}

/*
 * After the handshake: the group the key exchange used must be one of
 * `groups`.  wolfSSL's TLS 1.2 server falls back to a default curve
 * when the client offers none it allows, and its client accepts that,
 * so the lists alone do not enforce the setting.  Returns 0 or -1 with
 * the reason in c->err.
 */
static int
tls_check_group(struct tls_conn *c)
{
	const char *name;
	uint16_t id;
	size_t i;

	if (c->n_groups == 0)
		return 0;
	name = wolfSSL_get_curve_name(c->ssl);
	if (name == NULL)
		return 0;      /* no (EC)DHE key exchange */
	id = tls_group_id(name);
	for (i = 0; id != 0 && i < c->n_groups; i++)
		if (c->groups[i] == id)
			return 0;
	snprintf(c->err, sizeof(c->err), "no key-exchange group in common: "
		 "the handshake used %s, which this side's key 'groups' does "
		 "not list", name);
	return -1;
}

/*
 * The groups for TLS 1.3 key shares and the supported_groups extension
 * (wolfSSL_CTX_set_groups), and the curves a TLS 1.2 server accepts for
 * ECDHE (wolfSSL_CTX_set1_curves_list, which disables all others).
 */
static int
tls_set_groups(WOLFSSL_CTX *ctx, const struct cfg *c, char *err,
	       size_t errlen)
{
	int ids[sizeof(c->groups) / sizeof(c->groups[0])];
	char curves[128] = "";
	size_t i, len = 0;

	for (i = 0; i < c->n_groups; i++) {
		const char *name = tls_curve_name(c->groups[i]);

		ids[i] = c->groups[i];
		if (name != NULL)
			len += (size_t)snprintf(curves + len, sizeof(curves) - len,
						"%s%s", len ? ":" : "", name);
	}
	if (wolfSSL_CTX_set1_curves_list(ctx, curves) != WOLFSSL_SUCCESS ||
	    wolfSSL_CTX_set_groups(ctx, ids, (int)c->n_groups) !=
	    WOLFSSL_SUCCESS) {
		snprintf(err, errlen, "the TLS library does not support one of "
			 "the key-exchange groups (key 'groups')");
		return -1;
	}
	return 0;
}

struct tls_ctx *
tls_ctx_new(const struct cfg *c, int server, char *err, size_t errlen)
{
	struct tls_ctx *t;
	int rc;

	t = calloc(1, sizeof(*t));
	if (t == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	t->refs = 1;
	t->server = server;
	t->ctx = wolfSSL_CTX_new(server ? wolfSSLv23_server_method()
					: wolfSSLv23_client_method());
	if (t->ctx == NULL) {
		snprintf(err, errlen, "cannot create a TLS context");
		goto fail;
	}
	if (c->cert[0] != '\0') {
		if (tls_check_key_perms(c, err, errlen) < 0)
			goto fail;
		rc = wolfSSL_CTX_use_certificate_chain_file(t->ctx, c->cert);
		if (rc != WOLFSSL_SUCCESS) {
			snprintf(err, errlen,
				 "cannot load certificate chain '%s' (key 'cert'): "
				 "not a valid PEM certificate", c->cert);
			goto fail;
		}
		rc = wolfSSL_CTX_use_PrivateKey_file(t->ctx, c->key,
						     WOLFSSL_FILETYPE_PEM);
		if (rc != WOLFSSL_SUCCESS) {
			snprintf(err, errlen,
				 "cannot load private key '%s' (key 'key'): "
				 "not a valid PEM key", c->key);
			goto fail;
		}
		if (wolfSSL_CTX_check_private_key(t->ctx) != WOLFSSL_SUCCESS) {
			snprintf(err, errlen,
				 "private key '%s' does not match certificate '%s'",
				 c->key, c->cert);
			goto fail;
		}
	}
	if (c->ca[0] != '\0' && tls_load_ca(t->ctx, c->ca, err, errlen) < 0)
		goto fail;
	if (c->crl[0] != '\0') {
		if (c->ca[0] == '\0') {
			snprintf(err, errlen, "key 'crl' is set but 'ca' is not: "
				 "a CRL is checked against the CA that signed it");
			goto fail;
		}
		if (wolfSSL_CTX_EnableCRL(t->ctx, 0) != WOLFSSL_SUCCESS ||
		    wolfSSL_CTX_LoadCRLFile(t->ctx, c->crl,
					    WOLFSSL_FILETYPE_PEM) !=
		    WOLFSSL_SUCCESS) {
			snprintf(err, errlen,
				 "cannot load CRL '%s' (key 'crl'): not a valid "
				 "PEM CRL signed by a CA in 'ca'", c->crl);
			goto fail;
		}
	}
	if (c->n_groups > 0) {
		if (tls_set_groups(t->ctx, c, err, errlen) < 0)
			goto fail;
		_Static_assert(sizeof(t->groups) == sizeof(c->groups),
			       "group lists differ");
		memcpy(t->groups, c->groups, sizeof(t->groups));
		t->n_groups = c->n_groups;
	}
	if (!server) {
		/* The client always verifies the server. */
		wolfSSL_CTX_set_verify(t->ctx, WOLFSSL_VERIFY_PEER, NULL);
	}
	return t;
fail:
	tls_ctx_free(t);
	return NULL;
}

void
tls_ctx_ref(struct tls_ctx *t)
{
	if (t != NULL)
		t->refs++;
}

void
tls_ctx_free(struct tls_ctx *t)
{
	if (t == NULL || --t->refs > 0)
		return;
	if (t->ctx != NULL)
		wolfSSL_CTX_free(t->ctx);
	free(t);
}

static int
tls_io_recv(WOLFSSL *ssl, char *buf, int sz, void *arg)
{
	struct tls_conn *c = arg;
	size_t n;

	(void)ssl;
	n = c->io.recv(c->io_arg, (uint8_t *)buf, (size_t)sz);
	if (n > 0)
		return (int)n;
	return c->eof ? WOLFSSL_CBIO_ERR_CONN_CLOSE : WOLFSSL_CBIO_ERR_WANT_READ;
}

static int
tls_io_send(WOLFSSL *ssl, char *buf, int sz, void *arg)
{
	struct tls_conn *c = arg;

	(void)ssl;
	if (c->io.send(c->io_arg, (const uint8_t *)buf, (size_t)sz) < 0)
		return WOLFSSL_CBIO_ERR_GENERAL;
	return sz;
}

static size_t
tls_evbuffer_recv(void *arg, uint8_t *buf, size_t n)
{
	struct tls_conn *c = arg;
	int r = evbuffer_remove(c->in, buf, n);

	return r > 0 ? (size_t)r : 0;
}

static int
tls_evbuffer_send(void *arg, const uint8_t *buf, size_t n)
{
	struct tls_conn *c = arg;

	return evbuffer_add(c->out, buf, n);
}

struct tls_conn *
tls_conn_new(struct tls_ctx *ctx, struct evbuffer *in, struct evbuffer *out,
	     const struct tls_conn_params *p, char *err, size_t errlen)
{
	static const struct tls_io evbuffer_io = {
		.recv = tls_evbuffer_recv,
		.send = tls_evbuffer_send,
	};
	struct tls_conn *c;

	c = tls_conn_new_io(ctx, &evbuffer_io, NULL, p, err, errlen);
	if (c != NULL) {
		c->io_arg = c;
		c->in = in;
		c->out = out;
	}
	return c;
}

struct tls_conn *
tls_conn_new_io(struct tls_ctx *ctx, const struct tls_io *io, void *arg,
		const struct tls_conn_params *p, char *err, size_t errlen)
{
	struct tls_conn *c;
	char list[1024];
	size_t i, len = 0;

	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->io = *io;
	c->io_arg = arg;
	c->server = ctx->server;
	memcpy(c->groups, ctx->groups, sizeof(c->groups));
	c->n_groups = ctx->n_groups;
	c->client_cert = p->client_cert;
	c->ssl = wolfSSL_new(ctx->ctx);
	if (c->ssl == NULL) {
		snprintf(err, errlen, "cannot create a TLS session");
		goto fail;
	}
	wolfSSL_SSLSetIORecv(c->ssl, tls_io_recv);
	wolfSSL_SSLSetIOSend(c->ssl, tls_io_send);
	wolfSSL_SetIOReadCtx(c->ssl, c);
	wolfSSL_SetIOWriteCtx(c->ssl, c);
	if (wolfSSL_set_min_proto_version(c->ssl, p->tls_min) != WOLFSSL_SUCCESS ||
	    wolfSSL_set_max_proto_version(c->ssl, p->tls_max) != WOLFSSL_SUCCESS) {
		snprintf(err, errlen, "the TLS library does not support %s..%s",
			 tls_version_str(p->tls_min), tls_version_str(p->tls_max));
		goto fail;
	}
	list[0] = '\0';
	for (i = 0; i < p->n_ciphers; i++) {
		const struct cipher_info *ci = cipher_by_id(p->ciphers[i]);
		int n;

		if (ci == NULL)
			continue;
		n = snprintf(list + len, sizeof(list) - len, "%s%s",
			     len ? ":" : "", ci->wolfssl);
		if (n < 0 || (size_t)n >= sizeof(list) - len)
			break;
		len += (size_t)n;
	}
	if (len == 0 || wolfSSL_set_cipher_list(c->ssl, list) != WOLFSSL_SUCCESS) {
		snprintf(err, errlen, "the TLS library accepts none of the agreed "
			 "cipher suites (%s)", len ? list : "none");
		goto fail;
	}
	if (c->server) {
		int mode = WOLFSSL_VERIFY_NONE;

		if (p->client_cert == CERT_WANT_OPTIONAL)
			mode = WOLFSSL_VERIFY_PEER;
		else if (p->client_cert == CERT_WANT_REQUIRE)
			mode = WOLFSSL_VERIFY_PEER |
			       WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT;
		wolfSSL_set_verify(c->ssl, mode, NULL);
	} else if (p->server_name != NULL && p->server_name[0] != '\0') {
		snprintf(c->server_name, sizeof(c->server_name), "%s",
			 p->server_name);
		if (wolfSSL_check_domain_name(c->ssl, p->server_name) !=
		    WOLFSSL_SUCCESS) {
			snprintf(err, errlen, "cannot set the expected server "
				 "name '%s'", p->server_name);
			goto fail;
		}
	}
	return c;
fail:
	tls_conn_free(c);
	return NULL;
}

void
tls_conn_free(struct tls_conn *c)
{
	if (c == NULL)
		return;
	if (c->ssl != NULL)
		wolfSSL_free(c->ssl);
	free(c);
}

void
tls_conn_set_eof(struct tls_conn *c)
{
	c->eof = 1;
}

static const char *
tls_alert_str(int code)
{
	switch (code) {
	case 0: return "close_notify";
	case 10: return "unexpected_message";
	case 20: return "bad_record_mac";
	case 40: return "handshake_failure";
	case 42: return "bad_certificate";
	case 43: return "unsupported_certificate";
	case 44: return "certificate_revoked";
	case 45: return "certificate_expired";
	case 46: return "certificate_unknown";
	case 47: return "illegal_parameter";
	case 48: return "unknown_ca";
	case 50: return "decode_error";
	case 51: return "decrypt_error";
	case 70: return "protocol_version";
	case 80: return "internal_error";
	case 109: return "missing_extension";
	case 112: return "unrecognized_name";
	case 116: return "certificate_required";
	default: return "unknown alert";
	}
}

/* Turns a wolfSSL error into a sentence that says what to fix. */
static void
tls_conn_explain(struct tls_conn *c, int code)
{
	char lib[WOLFSSL_MAX_ERROR_SZ];
	const char *what;
	WOLFSSL_ALERT_HISTORY h;

	tls_err_string(code, lib, sizeof(lib));
	switch (code) {
	case ASN_NO_SIGNER_E:
	case ASN_SIG_CONFIRM_E:
		what = c->server ? "the client certificate is not signed by a "
				   "CA in this side's 'ca' bundle"
				 : "the relay's certificate is not signed by a "
				   "CA in this side's 'ca' bundle";
		break;
	case DOMAIN_NAME_MISMATCH:
		snprintf(c->err, sizeof(c->err),
			 "the relay's certificate does not carry the name '%s' "
			 "(key 'server_name') (wolfSSL %d: %s)", c->server_name,
			 code, lib);
		return;
	case ASN_AFTER_DATE_E:
		what = "the peer's certificate has expired";
		break;
	case CRL_CERT_REVOKED:
		what = "the peer's certificate is revoked by the CRL (key 'crl')";
		break;
	case CRL_MISSING:
		what = "the CRL (key 'crl') is not from the CA that issued the "
		       "peer's certificate, so its revocation cannot be checked";
		break;
	case CRL_CERT_DATE_ERR:
		what = "the CRL (key 'crl') is out of date (its next update "
		       "has passed); install a fresh one";
		break;
	case ECC_CURVE_ERROR:
	case ECC_PEERKEY_ERROR:
	case BAD_KEY_SHARE_DATA:
		what = "no key-exchange group in common (key 'groups')";
		break;
	case BAD_FUNC_ARG:
		/* What wolfSSL 5.5.4's TLS 1.3 server reports when the
		 * client offers no group it allows. */
		what = c->established ? "TLS error" :
		       "the key exchange failed: most likely no key-exchange "
		       "group in common (key 'groups')";
		break;
	case OUT_OF_ORDER_E:
	case DUPLICATE_MSG_E:
		what = c->established ?
		       "the peer attempted a TLS renegotiation, which is "
		       "disabled" :
		       "the peer sent a TLS handshake message out of order";
		break;
	case ASN_BEFORE_DATE_E:
		what = "the peer's certificate is not valid yet";
		break;
	case NO_PEER_CERT:
	case NO_PEER_VERIFY:
		what = "the peer presented no certificate, and client_cert = "
		       "require";
		break;
	case MATCH_SUITE_ERROR:
		what = "no cipher suite and key-exchange group in common "
		       "(keys 'ciphers' and 'groups')";
		break;
	case VERSION_ERROR:
		what = "no TLS version in common";
		break;
	case SOCKET_PEER_CLOSED_E:
	case SOCKET_ERROR_E:
		what = c->established ? "the peer closed the connection" :
		       "the peer closed the connection during the TLS handshake";
		break;
	case FATAL_ERROR:
		if (wolfSSL_get_alert_history(c->ssl, &h) == WOLFSSL_SUCCESS &&
		    h.last_rx.code > 0) {
			snprintf(c->err, sizeof(c->err),
				 "the peer rejected the handshake with TLS alert "
				 "%d (%s)%s", h.last_rx.code,
				 tls_alert_str(h.last_rx.code),
				 h.last_rx.code == 116 ? ": this side has no "
				 "client certificate but the peer requires one" :
				 h.last_rx.code == 44 ? ": the peer's CRL revokes "
				 "this side's certificate" :
				 h.last_rx.code == 40 ? ": no cipher suite or "
				 "key-exchange group (key 'groups') in common, or "
				 "another handshake mismatch" :
				 h.last_rx.code == 48 || h.last_rx.code == 42 ?
				 ": the peer does not trust this side's certificate" : "");
			return;
		}
		what = "the peer sent a fatal TLS alert";
		break;
	default:
		what = "TLS error";
		break;
	}
	snprintf(c->err, sizeof(c->err), "%s (wolfSSL %d: %s)", what, code, lib);
}

int
tls_conn_handshake(struct tls_conn *c)
{
	int rc, e;

	rc = c->server ? wolfSSL_accept(c->ssl) : wolfSSL_connect(c->ssl);
	if (rc == WOLFSSL_SUCCESS) {
		if (tls_check_group(c) < 0)
			return -1;
		c->established = 1;
		return 1;
	}
	e = wolfSSL_get_error(c->ssl, rc);
	if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE)
		return 0;
	tls_conn_explain(c, e);
	return -1;
}

/* A HelloRequest is answered by wolfSSL with a no_renegotiation warning
 * alert and the session would go on; tlsplex fails it instead. */
static int
tls_refused_renegotiation(struct tls_conn *c)
{
	WOLFSSL_ALERT_HISTORY h;

	if (wolfSSL_get_alert_history(c->ssl, &h) != WOLFSSL_SUCCESS ||
	    h.last_tx.code != no_renegotiation)
		return 0;
	snprintf(c->err, sizeof(c->err), "the peer asked for a TLS "
		 "renegotiation (HelloRequest), which is disabled");
	return 1;
}

int
tls_conn_read(struct tls_conn *c, uint8_t *buf, size_t cap)
{
	int n, e;

	n = wolfSSL_read(c->ssl, buf, (int)cap);
	if (tls_refused_renegotiation(c))
		return -1;
	if (n > 0)
		return n;
	e = wolfSSL_get_error(c->ssl, n);
	if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE)
		return 0;
	if (e == WOLFSSL_ERROR_ZERO_RETURN || e == ZERO_RETURN)
		return -2;
	if (e == SOCKET_PEER_CLOSED_E || (c->eof && e == SOCKET_ERROR_E))
		return -3;
	tls_conn_explain(c, e);
	return -1;
}

int
tls_conn_pending(const struct tls_conn *c)
{
	int n = wolfSSL_pending(c->ssl);

	return n > 0 ? n : 0;
}

int
tls_conn_write(struct tls_conn *c, const uint8_t *buf, size_t n)
{
	int w, e;

	w = wolfSSL_write(c->ssl, buf, (int)n);
	if (w == (int)n)
		return 0;
	e = wolfSSL_get_error(c->ssl, w);
	tls_conn_explain(c, e);
	return -1;
}

void
tls_conn_close_notify(struct tls_conn *c)
{
	wolfSSL_shutdown(c->ssl);
}

const char *
tls_conn_error(const struct tls_conn *c)
{
	return c->err[0] ? c->err : "unknown TLS error";
}

static void
tls_hex(const unsigned char *p, size_t n, char *out, size_t len, int colons)
{
	size_t i, o = 0;

	out[0] = '\0';
	for (i = 0; i < n && o + 4 < len; i++)
		o += (size_t)snprintf(out + o, len - o, "%s%02X",
				      colons && i ? ":" : "", p[i]);
}

/* An ASN.1 time as RFC 3339 UTC; empty when it cannot be read. */
static void
tls_time_str(const WOLFSSL_ASN1_TIME *t, char *out, size_t len)
{
	struct tm tm;

	out[0] = '\0';
	memset(&tm, 0, sizeof(tm));
	if (t == NULL || wolfSSL_ASN1_TIME_to_tm(t, &tm) != WOLFSSL_SUCCESS)
		return;
	snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static void
tls_cert_details(WOLFSSL_X509 *x, struct tls_certinfo *ci)
{
	unsigned char md[WC_SHA256_DIGEST_SIZE], serial[64];
	unsigned int mdlen = sizeof(md);
	int slen = sizeof(serial), nid;
	WOLFSSL_EVP_PKEY *pk;
	const char *name;

	wolfSSL_X509_NAME_oneline(wolfSSL_X509_get_subject_name(x),
				  ci->subject, sizeof(ci->subject));
	wolfSSL_X509_NAME_oneline(wolfSSL_X509_get_issuer_name(x),
				  ci->issuer, sizeof(ci->issuer));
	if (wolfSSL_X509_get_serial_number(x, serial, &slen) == WOLFSSL_SUCCESS)
		tls_hex(serial, (size_t)slen, ci->serial, sizeof(ci->serial), 0);
	if (wolfSSL_X509_digest(x, wolfSSL_EVP_sha256(), md, &mdlen) ==
	    WOLFSSL_SUCCESS)
		tls_hex(md, mdlen, ci->sha256, sizeof(ci->sha256), 1);
	tls_time_str(wolfSSL_X509_get_notBefore(x), ci->not_before,
		     sizeof(ci->not_before));
	tls_time_str(wolfSSL_X509_get_notAfter(x), ci->not_after,
		     sizeof(ci->not_after));
	switch (wolfSSL_X509_get_pubkey_type(x)) {
	case RSAk:
		name = "RSA";
		break;
	case ECDSAk:
		name = "EC";
		break;
	case ED25519k:
		name = "Ed25519";
		break;
	case ED448k:
		name = "Ed448";
		break;
	default:
		name = "";
		break;
	}
	snprintf(ci->key_type, sizeof(ci->key_type), "%s", name);
	pk = wolfSSL_X509_get_pubkey(x);
	if (pk != NULL) {
		int bits = wolfSSL_EVP_PKEY_bits(pk);

		ci->key_bits = bits > 0 ? (unsigned)bits : 0;
		wolfSSL_EVP_PKEY_free(pk);
	}
	nid = wolfSSL_X509_get_signature_nid(x);
	name = nid > 0 ? wolfSSL_OBJ_nid2ln(nid) : NULL;
	snprintf(ci->sig_alg, sizeof(ci->sig_alg), "%s", name ? name : "");
}

void
tls_conn_info(struct tls_conn *c, struct tls_info *info)
{
	WOLFSSL_X509 *x;
	const char *s;
	const struct cipher_info *ci;

	memset(info, 0, sizeof(*info));
	snprintf(info->protocol, sizeof(info->protocol), "%s",
		 wolfSSL_get_version(c->ssl));
	s = wolfSSL_get_cipher_name(c->ssl);
	ci = s != NULL ? cipher_by_name(s) : NULL;
	snprintf(info->cipher, sizeof(info->cipher), "%s",
		 ci != NULL ? ci->iana : s != NULL ? s : "");
	s = wolfSSL_get_curve_name(c->ssl);
	snprintf(info->group, sizeof(info->group), "%s", s != NULL ? s : "");
	info->resumed = wolfSSL_session_reused(c->ssl) == 1;
	/* Our own certificate belongs to the session: not freed here. */
	x = wolfSSL_get_certificate(c->ssl);
	if (x != NULL)
		tls_cert_details(x, &info->local);
	x = wolfSSL_get_peer_certificate(c->ssl);
	if (x == NULL)
		return;
	tls_cert_details(x, &info->peer);
	wolfSSL_X509_free(x);
}

void
tls_sha256_pair(const void *a, size_t alen, const void *b, size_t blen,
		uint8_t out[32])
{
	wc_Sha256 sha;

	wc_InitSha256(&sha);
	wc_Sha256Update(&sha, a, (word32)alen);
	wc_Sha256Update(&sha, b, (word32)blen);
	wc_Sha256Final(&sha, out);
	wc_Sha256Free(&sha);
}

/* Appends name to the comma-separated list in seen, marking a cut with
 * "...". */
static void
tls_seen_add(char *seen, size_t seenlen, const char *name)
{
	size_t len;
	int n;

	if (seen == NULL || seenlen == 0)
		return;
	len = strlen(seen);
	n = snprintf(seen + len, seenlen - len, "%s%s", len ? "," : "", name);
	if (n < 0 || (size_t)n >= seenlen - len) {
		if (seenlen >= 4)
			memcpy(seen + seenlen - 4, "...", 4);
	}
}

static int
tls_match_any(const char *const *patterns, size_t n, const char *name,
	      int nocase)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (patterns[i] != NULL && match_glob(patterns[i], name, nocase))
			return 1;
	return 0;
}

int
tls_conn_peer_identity(struct tls_conn *c, const char *const *patterns,
		       size_t n, char *seen, size_t seenlen)
{
	WOLFSSL_X509 *x;
	WOLFSSL_STACK *sans;
	char name[256];
	int i, count, n_ids = 0, found = 0;

	if (seen != NULL && seenlen > 0)
		seen[0] = '\0';
	x = wolfSSL_get_peer_certificate(c->ssl);
	if (x == NULL)
		return -1;
	sans = wolfSSL_X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	count = sans != NULL ? wolfSSL_sk_GENERAL_NAME_num(sans) : 0;
	for (i = 0; i < count; i++) {
		WOLFSSL_GENERAL_NAME *gn = wolfSSL_sk_GENERAL_NAME_value(sans, i);
		WOLFSSL_ASN1_STRING *s;
		int nocase;

		if (gn == NULL || (gn->type != GEN_DNS && gn->type != GEN_URI))
			continue;
		s = gn->d.ia5;
		if (s == NULL || s->data == NULL || s->length <= 0 ||
		    (size_t)s->length >= sizeof(name) ||
		    memchr(s->data, '\0', (size_t)s->length) != NULL)
			continue;
		memcpy(name, s->data, (size_t)s->length);
		name[s->length] = '\0';
		n_ids++;
		nocase = gn->type == GEN_DNS;
		tls_seen_add(seen, seenlen, name);
		if (!found && tls_match_any(patterns, n, name, nocase))
			found = 1;
	}
	if (sans != NULL)
		wolfSSL_GENERAL_NAMES_free(sans);
	if (n_ids == 0 &&
	    wolfSSL_X509_NAME_get_text_by_NID(wolfSSL_X509_get_subject_name(x),
					      NID_commonName, name,
					      (int)sizeof(name)) > 0) {
		tls_seen_add(seen, seenlen, name);
		found = tls_match_any(patterns, n, name, 1);
	}
	wolfSSL_X509_free(x);
	return found;
}
