#include "tlsio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/error-ssl.h>
#include <wolfssl/openssl/evp.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include "config.h"
#include "neg.h"
#include "policy.h"

struct tls_ctx {
	WOLFSSL_CTX *ctx;
	int server;
	int refs;
};

struct tls_conn {
	WOLFSSL *ssl;
	int established;
	struct evbuffer *in, *out;
	int eof;
	int server;
	int client_cert;
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
	if (c->ca[0] != '\0') {
		rc = wolfSSL_CTX_load_verify_locations(t->ctx, c->ca, NULL);
		if (rc != WOLFSSL_SUCCESS) {
			snprintf(err, errlen,
				 "cannot load CA bundle '%s' (key 'ca'): no valid "
				 "PEM certificate in it", c->ca);
			goto fail;
		}
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
	int n;

	(void)ssl;
	n = evbuffer_remove(c->in, buf, (size_t)sz);
	if (n > 0)
		return n;
	return c->eof ? WOLFSSL_CBIO_ERR_CONN_CLOSE : WOLFSSL_CBIO_ERR_WANT_READ;
}

static int
tls_io_send(WOLFSSL *ssl, char *buf, int sz, void *arg)
{
	struct tls_conn *c = arg;

	(void)ssl;
	if (evbuffer_add(c->out, buf, (size_t)sz) < 0)
		return WOLFSSL_CBIO_ERR_GENERAL;
	return sz;
}

struct tls_conn *
tls_conn_new(struct tls_ctx *ctx, struct evbuffer *in, struct evbuffer *out,
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
	c->in = in;
	c->out = out;
	c->server = ctx->server;
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
	case ASN_BEFORE_DATE_E:
		what = "the peer's certificate is not valid yet";
		break;
	case NO_PEER_CERT:
	case NO_PEER_VERIFY:
		what = "the peer presented no certificate, and client_cert = "
		       "require";
		break;
	case MATCH_SUITE_ERROR:
		what = "no cipher suite in common";
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
		c->established = 1;
		return 1;
	}
	e = wolfSSL_get_error(c->ssl, rc);
	if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE)
		return 0;
	tls_conn_explain(c, e);
	return -1;
}

int
tls_conn_read(struct tls_conn *c, uint8_t *buf, size_t cap)
{
	int n, e;

	n = wolfSSL_read(c->ssl, buf, (int)cap);
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

void
tls_conn_info(struct tls_conn *c, struct tls_info *info)
{
	WOLFSSL_X509 *x;
	const char *s;
	const struct cipher_info *ci;
	unsigned char md[WC_SHA256_DIGEST_SIZE], serial[64];
	unsigned int mdlen = sizeof(md);
	int slen = sizeof(serial);

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
	x = wolfSSL_get_peer_certificate(c->ssl);
	if (x == NULL)
		return;
	wolfSSL_X509_NAME_oneline(wolfSSL_X509_get_subject_name(x),
				  info->subject, sizeof(info->subject));
	wolfSSL_X509_NAME_oneline(wolfSSL_X509_get_issuer_name(x),
				  info->issuer, sizeof(info->issuer));
	if (wolfSSL_X509_get_serial_number(x, serial, &slen) == WOLFSSL_SUCCESS)
		tls_hex(serial, (size_t)slen, info->serial, sizeof(info->serial), 0);
	if (wolfSSL_X509_digest(x, wolfSSL_EVP_sha256(), md, &mdlen) ==
	    WOLFSSL_SUCCESS)
		tls_hex(md, mdlen, info->sha256, sizeof(info->sha256), 1);
	if (wolfSSL_ASN1_TIME_to_string(wolfSSL_X509_get_notAfter(x),
					info->not_after,
					(int)sizeof(info->not_after)) == NULL)
		info->not_after[0] = '\0';
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
