/*
 * wolfSSL adapter.  TLS runs through wolfSSL's custom I/O callbacks over
 * buffers the caller owns (struct tls_io, or two evbuffers), so the link
 * owns the socket throughout and no bytes change hands between stacks at
 * the upgrade.
 */
#ifndef TLSPLEX_TLSIO_H
#define TLSPLEX_TLSIO_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct cfg;
struct tls_ctx;
struct tls_conn;

/* Global library setup; returns 0 or -1. */
int tls_global_init(void);
void tls_global_cleanup(void);
/* "wolfSSL 5.5.4" and similar. */
const char *tls_library_version(void);
/*
 * Nonzero when the linked wolfSSL was built with AES-NI (WOLFSSL_AESNI)
 * and this CPU has the AES and PCLMULQDQ instructions, so AES-GCM runs
 * in hardware.
 */
int tls_aes_fast(void);
/*
 * One line naming the wolfSSL in use, how it was built and whether AES-NI
 * is active, e.g. "wolfSSL 5.5.4 (built from Debian source with
 * AES-NI/intelasm/sp-asm; AES-NI active)".  A static string.
 */
const char *tls_library_describe(void);
/*
 * Reorders n suites (IANA ids) in place: AES-GCM suites first when
 * aes_first, ChaCha20-Poly1305 suites first otherwise.  Relative order
 * is kept within each group; suites of neither kind come last.
 */
void tls_order_ciphers(uint16_t *ids, size_t n, int aes_first);

/*
 * Builds a context from the daemon settings: certificate chain and key
 * when set (a key file group or others may access, or another user
 * owns, is logged as a warning, or refused with key_perms = error), CA
 * file or directory for peer verification, CRL, key-exchange groups.
 * server selects the role.
 * Returns NULL with a reason in err.
 */
struct tls_ctx *tls_ctx_new(const struct cfg *c, int server, char *err,
			    size_t errlen);
/* Takes one more reference; tls_ctx_free() drops one and frees the
 * context with the last.  A link holds a reference for its lifetime, so
 * a reload can replace the daemon's context under running links. */
void tls_ctx_ref(struct tls_ctx *ctx);
void tls_ctx_free(struct tls_ctx *ctx);

struct tls_conn_params {
	uint16_t tls_min, tls_max;  /* agreed version range */
	const uint16_t *ciphers;    /* agreed suites, IANA ids */
	size_t n_ciphers;
	const char *server_name;    /* client: name the server certificate
				       must carry, or NULL */
	int client_cert;            /* server: enum cert_want */
};

/*
 * Where a connection's ciphertext comes from and goes to.  recv copies
 * up to n bytes into buf and returns the count, 0 when nothing is there
 * now; send takes all n bytes (written or queued) and returns 0, or -1
 * when it cannot.  arg is passed back.
 */
struct tls_io {
	size_t (*recv)(void *arg, uint8_t *buf, size_t n);
	int (*send)(void *arg, const uint8_t *buf, size_t n);
};

/* Creates a connection doing its I/O through io.  Returns NULL with a
 * reason in err. */
struct tls_conn *tls_conn_new_io(struct tls_ctx *ctx, const struct tls_io *io,
				 void *arg, const struct tls_conn_params *p,
				 char *err, size_t errlen);
/* The same over two evbuffers: ciphertext is taken from in and appended
 * to out. */
struct tls_conn *tls_conn_new(struct tls_ctx *ctx, struct evbuffer *in,
			      struct evbuffer *out,
			      const struct tls_conn_params *p, char *err,
			      size_t errlen);
void tls_conn_free(struct tls_conn *c);

/* Marks that no more ciphertext will arrive. */
void tls_conn_set_eof(struct tls_conn *c);

/* Advances the handshake: 1 done, 0 needs more input, -1 failed. */
int tls_conn_handshake(struct tls_conn *c);
/* Reads plaintext: >0 bytes, 0 needs more input, -1 failed (also when
 * the peer attempted a renegotiation), -2 the peer closed the TLS
 * session, -3 the transport ended without close_notify. */
int tls_conn_read(struct tls_conn *c, uint8_t *buf, size_t cap);
/* Decrypted bytes that no read has taken yet.  wolfSSL takes one record
 * at a time from recv (it asks for exactly the bytes of the record it
 * reads), so later records are still with the caller. */
int tls_conn_pending(const struct tls_conn *c);
/* Encrypts n bytes into the output buffer.  Returns 0 or -1. */
int tls_conn_write(struct tls_conn *c, const uint8_t *buf, size_t n);
/* Queues a close_notify alert. */
void tls_conn_close_notify(struct tls_conn *c);

/* After a failure: a sentence naming what went wrong. */
const char *tls_conn_error(const struct tls_conn *c);

/* SHA-256 of a followed by b, for the transcript binding. */
void tls_sha256_pair(const void *a, size_t alen, const void *b, size_t blen,
		     uint8_t out[32]);

/* Facts about an established session, for the hook and the logs. */
/* One certificate's details; empty strings where unknown. */
struct tls_certinfo {
	char subject[256];
	char issuer[256];
	char serial[80];
	char sha256[100];
	char not_before[32];   /* RFC 3339 */
	char not_after[32];    /* RFC 3339 */
	char key_type[16];     /* "RSA", "EC", "Ed25519", "Ed448" */
	unsigned key_bits;
	char sig_alg[48];      /* e.g. "ecdsa-with-SHA256" */
};

struct tls_info {
	char protocol[16];
	char cipher[64];
	char group[32];
	int resumed;
	struct tls_certinfo peer;  /* empty when the peer sent none */
	struct tls_certinfo local; /* empty when we sent none */
};
void tls_conn_info(struct tls_conn *c, struct tls_info *info);

/*
 * Whether the verified peer certificate names one of n patterns (see
 * match_glob): 1 it does, 0 it does not, -1 there is no peer certificate.
 * The identities are every subjectAltName DNS name (matched ignoring
 * case) and URI (case matters); the subject CN counts, ignoring case,
 * only when the certificate has no SAN DNS name or URI at all.  seen
 * (seenlen bytes, may be NULL) receives the identities the certificate
 * carries, comma-separated and cut with "..." when too long, for a log
 * line.  Call after tls_conn_handshake() returned 1.
 */
int tls_conn_peer_identity(struct tls_conn *c, const char *const *patterns,
			   size_t n, char *seen, size_t seenlen);

#endif
