/*
 * TLS security settings (issue 4, stage 2), driven in-process: two
 * tls_conn talk through a pair of evbuffers, no sockets and no daemons.
 * CA file and directory, CRL, key-exchange groups, private-key
 * permissions, the peer identity check, renegotiation and match_glob.
 *
 * main() makes one set of certificates with scripts/mkcerts.sh for the
 * whole run (TLSPLEX_SOURCE_DIR names the source tree), hands its place
 * to the test workers in TLSSEC_CERTS, and removes it afterwards.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "config.h"
#include "log.h"
#include "match.h"
#include "neg.h"
#include "tlsio.h"

static char certs[512];

static void
cert_path(char *buf, size_t len, const char *file)
{
	snprintf(buf, len, "%s/%s", certs, file);
}

/* Loads a configuration for role from the certificate directory's
 * files; extra goes into the daemon section. */
static struct cfg *
load(int role, const char *cert, const char *ca, const char *extra)
{
	char text[4096], err[1024];
	struct cfg *c;
	int n;

	if (role == CFG_RELAY)
		n = snprintf(text, sizeof(text), "[relay]\n");
	else
		n = snprintf(text, sizeof(text),
			     "[gateway]\nrelay = 127.0.0.1:7400\n");
	if (cert != NULL)
		n += snprintf(text + n, sizeof(text) - (size_t)n,
			      "cert = %s/%s.crt\nkey = %s/%s.key\n", certs, cert,
			      certs, cert);
	if (ca != NULL)
		n += snprintf(text + n, sizeof(text) - (size_t)n,
			      "ca = %s/%s\n", certs, ca);
	snprintf(text + n, sizeof(text) - (size_t)n, "%s%s", extra,
		 role == CFG_RELAY ? "[service s]\nbackend = 127.0.0.1:80\n"
				   : "[service s]\nlisten = 7401\n");
	c = cfg_load_string(text, "tlssec.ini", role, err, sizeof(err));
	cr_assert_not_null(c, "config rejected: %s\n%s", err, text);
	return c;
}

static struct tls_ctx *
ctx_of(const struct cfg *c, int server)
{
	char err[512];
	struct tls_ctx *t = tls_ctx_new(c, server, err, sizeof(err));

	cr_assert_not_null(t, "tls_ctx_new: %s", err);
	return t;
}

/* A relay (server) and a gateway (client) joined by two evbuffers. */
struct duo {
	struct cfg *rc, *gc;
	struct tls_ctx *rt, *gt;
	struct evbuffer *c2s, *s2c;
	struct tls_conn *srv, *cli;
	int rs, rcl;             /* last handshake results */
};

struct duo_opts {
	const char *relay_cert, *relay_ca, *relay_extra;
	const char *gw_cert, *gw_ca, *gw_extra;
	uint16_t tls_min, tls_max;
	int client_cert;
	const char *server_name;
};

static void
duo_open(struct duo *d, const struct duo_opts *o)
{
	struct tls_conn_params p;
	char err[512];

	memset(d, 0, sizeof(*d));
	d->rc = load(CFG_RELAY, o->relay_cert ? o->relay_cert : "relay",
		     o->relay_ca, o->relay_extra ? o->relay_extra :
		     "client_cert = none\n");
	d->gc = load(CFG_GATEWAY, o->gw_cert, o->gw_ca ? o->gw_ca : "ca.crt",
		     o->gw_extra ? o->gw_extra : "");
	d->rt = ctx_of(d->rc, 1);
	d->gt = ctx_of(d->gc, 0);
	d->c2s = evbuffer_new();
	d->s2c = evbuffer_new();
	memset(&p, 0, sizeof(p));
	p.tls_min = o->tls_min ? o->tls_min : TLSV_1_3;
	p.tls_max = o->tls_max ? o->tls_max : TLSV_1_3;
	p.ciphers = d->rc->ciphers;
	p.n_ciphers = d->rc->n_ciphers;
	p.client_cert = o->client_cert;
	d->srv = tls_conn_new(d->rt, d->c2s, d->s2c, &p, err, sizeof(err));
	cr_assert_not_null(d->srv, "%s", err);
	p.server_name = o->server_name ? o->server_name : "relay";
	d->cli = tls_conn_new(d->gt, d->s2c, d->c2s, &p, err, sizeof(err));
	cr_assert_not_null(d->cli, "%s", err);
}

/* Runs both handshakes until both finish or one fails; bounded.
 * Returns 1 when both succeeded. */
static int
duo_handshake(struct duo *d)
{
	int i;

	d->rs = d->rcl = 0;
	for (i = 0; i < 50; i++) {
		if (d->rcl == 0)
			d->rcl = tls_conn_handshake(d->cli);
		if (d->rs == 0)
			d->rs = tls_conn_handshake(d->srv);
		if (d->rs < 0 || d->rcl < 0 || (d->rs == 1 && d->rcl == 1))
			break;
	}
	/* The side that did not fail reads the other's alert, if any, and
	 * then the end of the connection, as a link would close it. */
	if (d->rs < 0 && d->rcl == 0) {
		d->rcl = tls_conn_handshake(d->cli);
		tls_conn_set_eof(d->cli);
		if (d->rcl == 0)
			d->rcl = tls_conn_handshake(d->cli);
	}
	if (d->rcl < 0 && d->rs == 0) {
		d->rs = tls_conn_handshake(d->srv);
		tls_conn_set_eof(d->srv);
		if (d->rs == 0)
			d->rs = tls_conn_handshake(d->srv);
	}
	return d->rs == 1 && d->rcl == 1;
}

static void
duo_close(struct duo *d)
{
	tls_conn_free(d->srv);
	tls_conn_free(d->cli);
	evbuffer_free(d->c2s);
	evbuffer_free(d->s2c);
	tls_ctx_free(d->rt);
	tls_ctx_free(d->gt);
	cfg_free(d->rc);
	cfg_free(d->gc);
}

/* Sends a message client to server and checks it arrives intact. */
static void
duo_roundtrip(struct duo *d)
{
	static const uint8_t msg[] = "stage 2";
	uint8_t buf[64];
	int n = 0, i;

	cr_assert_eq(tls_conn_write(d->cli, msg, sizeof(msg)), 0);
	for (i = 0; i < 10 && n == 0; i++)
		n = tls_conn_read(d->srv, buf, sizeof(buf));
	cr_assert_eq(n, (int)sizeof(msg), "read %d: %s", n,
		     n < 0 ? tls_conn_error(d->srv) : "");
	cr_assert_arr_eq(buf, msg, sizeof(msg));
}

/* ---- CA file and directory ------------------------------------------ */

Test(tlssec, ca_file_and_ca_directory_both_verify)
{
	static const char *const cas[] = { "ca.crt", "ca.d" };

	for (size_t i = 0; i < 2; i++) {
		struct duo d;
		struct duo_opts o = {
			.gw_cert = "gw1", .gw_ca = cas[i],
			.relay_ca = cas[i], .relay_extra = "client_cert = require\n",
			.client_cert = CERT_WANT_REQUIRE,
		};

		duo_open(&d, &o);
		cr_assert(duo_handshake(&d), "ca = %s: relay %d '%s', gateway %d '%s'",
			  cas[i], d.rs, tls_conn_error(d.srv), d.rcl,
			  tls_conn_error(d.cli));
		duo_roundtrip(&d);
		duo_close(&d);
	}
}

Test(tlssec, ca_directory_rejects_a_foreign_relay)
{
	struct duo d;
	struct duo_opts o = { .relay_cert = "rogue-relay", .gw_ca = "ca.d" };

	duo_open(&d, &o);
	cr_assert_not(duo_handshake(&d));
	cr_assert_eq(d.rcl, -1);
	cr_assert(strstr(tls_conn_error(d.cli), "not signed by a CA") != NULL,
		  "%s", tls_conn_error(d.cli));
	duo_close(&d);
}

Test(tlssec, empty_ca_directory_fails_the_context)
{
	char dir[600], err[512];
	struct cfg *c;
	struct tls_ctx *t;

	cert_path(dir, sizeof(dir), "empty.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	c = load(CFG_GATEWAY, NULL, "ca.crt", "");
	snprintf(c->ca, sizeof(c->ca), "%s", dir);
	t = tls_ctx_new(c, 0, err, sizeof(err));
	tls_ctx_free(t);
	cfg_free(c);
	rmdir(dir);
	cr_assert_null(t);
	cr_assert(strstr(err, "CA directory") && strstr(err, dir), "%s", err);
}

/* ---- CRL ------------------------------------------------------------ */

static void
crl_case(const char *gw, int want_ok)
{
	struct duo d;
	char extra[700];
	struct duo_opts o = {
		.gw_cert = gw, .relay_ca = "ca.crt", .relay_extra = extra,
		.client_cert = CERT_WANT_REQUIRE,
	};

	snprintf(extra, sizeof(extra), "client_cert = require\ncrl = %s/ca.crl\n",
		 certs);
	duo_open(&d, &o);
	if (want_ok) {
		cr_assert(duo_handshake(&d), "%s: %s", gw, tls_conn_error(d.srv));
		duo_roundtrip(&d);
	} else {
		cr_assert_not(duo_handshake(&d));
		cr_assert_eq(d.rs, -1);
		cr_assert(strstr(tls_conn_error(d.srv), "revoked") != NULL,
			  "relay: %s", tls_conn_error(d.srv));
		/* With TLS 1.3 the client has finished before the relay
		 * judges its certificate; it learns of it from the alert. */
		if (d.rcl == 1) {
			uint8_t buf[16];
			int n = 0;

			for (int i = 0; i < 10 && n == 0; i++)
				n = tls_conn_read(d.cli, buf, sizeof(buf));
			d.rcl = n;
		}
		cr_assert_eq(d.rcl, -1);
		cr_assert(strstr(tls_conn_error(d.cli), "certificate_revoked") != NULL,
			  "gateway: %s", tls_conn_error(d.cli));
	}
	duo_close(&d);
}

Test(tlssec, crl_passes_a_valid_client_cert)
{
	crl_case("gw1", 1);
}

Test(tlssec, crl_fails_a_revoked_client_cert)
{
	crl_case("gw-revoked", 0);
}

Test(tlssec, revoked_cert_passes_without_crl)
{
	struct duo d;
	struct duo_opts o = {
		.gw_cert = "gw-revoked", .relay_ca = "ca.crt",
		.relay_extra = "client_cert = require\n",
		.client_cert = CERT_WANT_REQUIRE,
	};

	duo_open(&d, &o);
	cr_assert(duo_handshake(&d), "%s", tls_conn_error(d.srv));
	duo_close(&d);
}

Test(tlssec, crl_needs_ca_and_must_be_signed_by_it)
{
	char extra[700], err[512];
	struct cfg *c;
	struct tls_ctx *t;

	snprintf(extra, sizeof(extra), "tls = off\nclient_cert = none\n"
		 "crl = %s/ca.crl\n", certs);
	c = load(CFG_RELAY, "relay", NULL, extra);
	t = tls_ctx_new(c, 1, err, sizeof(err));
	tls_ctx_free(t);
	cfg_free(c);
	cr_assert_null(t);
	cr_assert(strstr(err, "key 'crl' is set but 'ca' is not") != NULL, "%s",
		  err);

	c = load(CFG_RELAY, "relay", "rogue-ca.crt", extra);
	t = tls_ctx_new(c, 1, err, sizeof(err));
	tls_ctx_free(t);
	cfg_free(c);
	cr_assert_null(t, "a CRL from another CA was accepted");
	cr_assert(strstr(err, "cannot load CRL") != NULL && strstr(err, "ca.crl"),
		  "%s", err);
}

/* ---- groups --------------------------------------------------------- */

static void
groups_case(const char *rg, const char *gg, uint16_t ver, int want_ok,
	    const char *want_group)
{
	char rx[128], gx[128];
	struct duo d;
	struct duo_opts o = { .relay_extra = rx, .gw_extra = gx,
			      .tls_min = ver, .tls_max = ver };
	struct tls_info info;

	snprintf(rx, sizeof(rx), "client_cert = none\ngroups = %s\n", rg);
	snprintf(gx, sizeof(gx), "groups = %s\n", gg);
	duo_open(&d, &o);
	if (want_ok) {
		cr_assert(duo_handshake(&d), "%s / %s: relay '%s', gateway '%s'",
			  rg, gg, tls_conn_error(d.srv), tls_conn_error(d.cli));
		tls_conn_info(d.srv, &info);
		if (want_group != NULL)
			cr_assert(strstr(info.group, want_group) != NULL,
				  "%s / %s: group '%s', want '%s'", rg, gg,
				  info.group, want_group);
		duo_roundtrip(&d);
	} else {
		cr_assert_not(duo_handshake(&d), "%s / %s agreed", rg, gg);
		cr_assert_eq(d.rs, -1);
		cr_assert_eq(d.rs, -1);
		cr_assert(strstr(tls_conn_error(d.srv), "group") != NULL,
			  "relay: %s", tls_conn_error(d.srv));
		cr_assert_eq(d.rcl, -1);
	}
	duo_close(&d);
}

Test(tlssec, each_group_works_alone_with_tls13)
{
	static const char *const g[][2] = {
		{ "X25519", "X25519" }, { "X448", "X448" },
		{ "P-256", "SECP256R1" }, { "P-384", "SECP384R1" },
		{ "P-521", "SECP521R1" }, { "ffdhe2048", NULL },
		{ "ffdhe3072", NULL },
	};

	for (size_t i = 0; i < sizeof(g) / sizeof(g[0]); i++)
		groups_case(g[i][0], g[i][0], TLSV_1_3, 1, g[i][1]);
}

Test(tlssec, relay_preference_and_overlap_decide_the_group)
{
	groups_case("P-384:X25519", "X25519:P-384", TLSV_1_3, 1, NULL);
	groups_case("P-521", "X25519:P-521", TLSV_1_3, 1, "SECP521R1");
	groups_case("X25519:P-256", "P-256", TLSV_1_2, 1, "SECP256R1");
}

Test(tlssec, no_common_group_fails_tls13)
{
	groups_case("P-384", "X25519", TLSV_1_3, 0, NULL);
}

Test(tlssec, no_common_group_fails_tls12)
{
	groups_case("P-384", "X25519", TLSV_1_2, 0, NULL);
}

/* ---- peer identity -------------------------------------------------- */

static int
ident(struct tls_conn *c, const char *p1, const char *p2, char *seen,
      size_t seenlen)
{
	const char *pats[2] = { p1, p2 };

	return tls_conn_peer_identity(c, pats, p2 ? 2 : 1, seen, seenlen);
}

/* Opens a handshaken pair where the relay required gw's certificate. */
static void
ident_open(struct duo *d, const char *gw)
{
	struct duo_opts o = {
		.gw_cert = gw, .relay_ca = "ca.crt",
		.relay_extra = "client_cert = optional\n",
		.client_cert = CERT_WANT_OPTIONAL,
	};

	duo_open(d, &o);
	cr_assert(duo_handshake(d), "%s: %s", gw ? gw : "no cert",
		  tls_conn_error(d->srv));
}

Test(tlssec, identity_san_dns_exact_case_and_glob)
{
	struct duo d;
	char seen[256];

	ident_open(&d, "gw1");
	cr_assert_eq(ident(d.srv, "gw1", NULL, seen, sizeof(seen)), 1);
	cr_assert_eq(ident(d.srv, "GW1", NULL, seen, sizeof(seen)), 1);
	cr_assert_eq(ident(d.srv, "g*", NULL, seen, sizeof(seen)), 1);
	cr_assert_eq(ident(d.srv, "gw2", "*1", seen, sizeof(seen)), 1);
	cr_assert_eq(ident(d.srv, "gw2", "gw-*", seen, sizeof(seen)), 0);
	cr_assert_str_eq(seen, "gw1");
	duo_close(&d);
}

Test(tlssec, identity_gw2_cannot_claim_gw1)
{
	struct duo d;
	char seen[256];

	ident_open(&d, "gw2");
	cr_assert_eq(ident(d.srv, "gw1", NULL, seen, sizeof(seen)), 0);
	cr_assert_str_eq(seen, "gw2");
	cr_assert_eq(ident(d.srv, "gw2", NULL, NULL, 0), 1);
	duo_close(&d);
}

Test(tlssec, identity_uri_is_case_sensitive_and_hides_cn)
{
	struct duo d;
	char seen[256];

	ident_open(&d, "gw-uri");
	cr_assert_eq(ident(d.srv, "spiffe://corp/gw/*", NULL, seen, sizeof(seen)), 1);
	cr_assert_eq(ident(d.srv, "spiffe://corp/gw/alpha", NULL, seen,
			   sizeof(seen)), 1);
	cr_assert_eq(ident(d.srv, "SPIFFE://corp/gw/alpha", NULL, seen,
			   sizeof(seen)), 0);
	cr_assert_eq(ident(d.srv, "spiffe://corp/GW/*", NULL, seen, sizeof(seen)), 0);
	/* The CN "gw-uri" does not count: the certificate has a SAN URI. */
	cr_assert_eq(ident(d.srv, "gw-uri", NULL, seen, sizeof(seen)), 0);
	cr_assert_str_eq(seen, "spiffe://corp/gw/alpha");
	duo_close(&d);
}

Test(tlssec, identity_cn_only_without_san)
{
	struct duo d;
	char seen[256];

	ident_open(&d, "gw-cn");
	cr_assert_eq(ident(d.srv, "gw-cn", NULL, seen, sizeof(seen)), 1);
	cr_assert_eq(ident(d.srv, "GW-*", NULL, seen, sizeof(seen)), 1);
	cr_assert_eq(ident(d.srv, "gw1", NULL, seen, sizeof(seen)), 0);
	cr_assert_str_eq(seen, "gw-cn");
	duo_close(&d);
}

Test(tlssec, identity_of_the_relay_lists_dns_names_not_ip)
{
	struct duo d;
	char seen[256], small[12];

	ident_open(&d, "gw1");
	cr_assert_eq(ident(d.cli, "localhost", NULL, seen, sizeof(seen)), 1);
	/* The CN "relay" is also a SAN, so a miss lists the SANs only. */
	cr_assert_eq(ident(d.cli, "127.0.0.1", NULL, seen, sizeof(seen)), 0);
	cr_assert(strcmp(seen, "relay,localhost") == 0 ||
		  strcmp(seen, "localhost,relay") == 0, "seen '%s'", seen);
	cr_assert_eq(ident(d.cli, "nomatch", NULL, small, sizeof(small)), 0);
	cr_assert_eq(strlen(small), sizeof(small) - 1, "'%s'", small);
	cr_assert(strcmp(small + sizeof(small) - 4, "...") == 0, "'%s'", small);
	duo_close(&d);
}

Test(tlssec, identity_without_peer_cert_is_minus_one)
{
	struct duo d;
	char seen[16] = "junk";

	ident_open(&d, NULL);
	cr_assert_eq(ident(d.srv, "*", NULL, seen, sizeof(seen)), -1);
	cr_assert_str_eq(seen, "");
	duo_close(&d);
}

/* ---- private-key permissions ---------------------------------------- */

/* Copies the gateway key pair to names of its own with the key at mode,
 * and loads a config using them; extra goes into [gateway]. */
static struct cfg *
perm_cfg(const char *tag, mode_t mode, const char *extra, char *key,
	 size_t keylen)
{
	char cmd[2048], text[4096], err[1024];
	struct cfg *c;

	snprintf(key, keylen, "%s/perm-%s.key", certs, tag);
	snprintf(cmd, sizeof(cmd), "cp %s/gw1.key %s", certs, key);
	cr_assert_eq(system(cmd), 0);
	cr_assert_eq(chmod(key, mode), 0);
	snprintf(text, sizeof(text),
		 "[gateway]\nrelay = 127.0.0.1:7400\nca = %s/ca.crt\n"
		 "cert = %s/gw1.crt\nkey = %s\n%s[service s]\nlisten = 7401\n",
		 certs, certs, key, extra);
	c = cfg_load_string(text, "perm.ini", CFG_GATEWAY, err, sizeof(err));
	cr_assert_not_null(c, "%s", err);
	return c;
}

/* Runs tls_ctx_new with stderr sent to a file; returns what was logged. */
static char *
ctx_logged(struct cfg *c, struct tls_ctx **t, char *err, size_t errlen)
{
	char path[600];
	static char out[4096];
	int fd, saved;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/stderr.XXXXXX", certs);
	fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	fflush(stderr);
	saved = dup(2);
	dup2(fd, 2);
	*t = tls_ctx_new(c, 0, err, errlen);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	n = pread(fd, out, sizeof(out) - 1, 0);
	out[n > 0 ? n : 0] = '\0';
	close(fd);
	unlink(path);
	return out;
}

Test(tlssec, key_readable_by_group_warns)
{
	char key[700], err[512], want[800];
	struct cfg *c;
	struct tls_ctx *t;
	const char *log;

	log_init("tlssec", LOG_INFO);
	c = perm_cfg("warn", 0640, "", key, sizeof(key));
	cr_assert_eq(c->key_perms, CFG_KEY_PERMS_WARN);
	log = ctx_logged(c, &t, err, sizeof(err));
	tls_ctx_free(t);
	cfg_free(c);
	cr_assert_not_null(t, "warn must not fail: %s", err);
	snprintf(want, sizeof(want), "warning: private key '%s' (key 'key') has "
		 "mode 0640", key);
	cr_assert(strstr(log, want) != NULL, "log: '%s'", log);
}

Test(tlssec, key_mode_600_is_quiet)
{
	char key[700], err[512];
	struct cfg *c;
	struct tls_ctx *t;
	const char *log;

	log_init("tlssec", LOG_DEBUG);
	c = perm_cfg("quiet", 0600, "key_perms = error\n", key, sizeof(key));
	log = ctx_logged(c, &t, err, sizeof(err));
	tls_ctx_free(t);
	cfg_free(c);
	cr_assert_not_null(t, "%s", err);
	cr_assert(strstr(log, "private key") == NULL, "log: '%s'", log);
}

Test(tlssec, key_readable_by_others_is_an_error_when_configured)
{
	char key[700], err[512], want[800];
	struct cfg *c;
	struct tls_ctx *t;

	log_init("tlssec", LOG_INFO);
	c = perm_cfg("error", 0604, "key_perms = error\n", key, sizeof(key));
	cr_assert_eq(c->key_perms, CFG_KEY_PERMS_ERROR);
	ctx_logged(c, &t, err, sizeof(err));
	tls_ctx_free(t);
	cfg_free(c);
	cr_assert_null(t);
	snprintf(want, sizeof(want), "private key '%s' (key 'key') has mode 0604",
		 key);
	cr_assert(strstr(err, want) != NULL, "%s", err);
}

/* Only root can give a file away; elsewhere the case cannot be made. */
Test(tlssec, key_owned_by_another_user_warns_or_fails)
{
	char key[700], err[512], want[800];
	struct cfg *c;
	struct tls_ctx *t;
	const char *log;

	if (geteuid() != 0)
		cr_skip_test("needs root to chown a file");
	log_init("tlssec", LOG_INFO);
	c = perm_cfg("owner", 0600, "", key, sizeof(key));
	cr_assert_eq(chown(key, 65534, (gid_t)-1), 0, "%s", strerror(errno));
	log = ctx_logged(c, &t, err, sizeof(err));
	tls_ctx_free(t);
	snprintf(want, sizeof(want), "private key '%s' (key 'key') belongs to "
		 "uid 65534", key);
	cr_assert_not_null(t, "%s", err);
	cr_assert(strstr(log, want) != NULL, "log: '%s'", log);
	c->key_perms = CFG_KEY_PERMS_ERROR;
	t = tls_ctx_new(c, 0, err, sizeof(err));
	tls_ctx_free(t);
	cfg_free(c);
	cr_assert_null(t);
	cr_assert(strstr(err, want) != NULL, "%s", err);
}

/* ---- renegotiation -------------------------------------------------- */

/* A plain wolfSSL client over the duo's buffers, so the test can ask
 * for a renegotiation, which tls_conn never does. */
struct raw {
	struct evbuffer *in, *out;
};

static int
raw_recv(WOLFSSL *ssl, char *buf, int sz, void *arg)
{
	struct raw *r = arg;
	int n = evbuffer_remove(r->in, buf, (size_t)sz);

	return n > 0 ? n : WOLFSSL_CBIO_ERR_WANT_READ;
}

static int
raw_send(WOLFSSL *ssl, char *buf, int sz, void *arg)
{
	struct raw *r = arg;

	return evbuffer_add(r->out, buf, (size_t)sz) == 0 ? sz :
	       WOLFSSL_CBIO_ERR_GENERAL;
}

static void
reneg_case(uint16_t ver)
{
	struct duo d;
	struct duo_opts o = { .tls_min = ver, .tls_max = ver };
	struct raw r;
	WOLFSSL_CTX *ctx;
	WOLFSSL *ssl;
	uint8_t buf[64];
	char cafile[600];
	int rc = -1, s = 0, i, n = 0;
	size_t before;

	duo_open(&d, &o);
	/* Replace the gateway side with the raw client. */
	cert_path(cafile, sizeof(cafile), "ca.crt");
	ctx = wolfSSL_CTX_new(ver == TLSV_1_2 ? wolfTLSv1_2_client_method()
					      : wolfTLSv1_3_client_method());
	cr_assert_not_null(ctx);
	cr_assert_eq(wolfSSL_CTX_load_verify_locations(ctx, cafile, NULL),
		     WOLFSSL_SUCCESS);
	ssl = wolfSSL_new(ctx);
	cr_assert_not_null(ssl);
	r.in = d.s2c;
	r.out = d.c2s;
	wolfSSL_SSLSetIORecv(ssl, raw_recv);
	wolfSSL_SSLSetIOSend(ssl, raw_send);
	wolfSSL_SetIOReadCtx(ssl, &r);
	wolfSSL_SetIOWriteCtx(ssl, &r);
	/* Ask for the renegotiation_info extension, which a client must
	 * have to renegotiate at all. */
	if (ver == TLSV_1_2)
		cr_assert_eq(wolfSSL_UseSecureRenegotiation(ssl), WOLFSSL_SUCCESS);
	for (i = 0; i < 50 && !(rc == WOLFSSL_SUCCESS && s == 1); i++) {
		if (rc != WOLFSSL_SUCCESS)
			rc = wolfSSL_connect(ssl);
		if (s == 0)
			s = tls_conn_handshake(d.srv);
		cr_assert_neq(s, -1, "%s", tls_conn_error(d.srv));
	}
	cr_assert_eq(rc, WOLFSSL_SUCCESS);
	cr_assert_eq(s, 1);

	before = evbuffer_get_length(d.c2s);
	rc = wolfSSL_Rehandshake(ssl);
	if (ver == TLSV_1_3) {
		/* TLS 1.3 has no renegotiation: the client cannot even ask. */
		cr_assert_neq(rc, WOLFSSL_SUCCESS);
		cr_assert_eq(evbuffer_get_length(d.c2s), before);
	} else {
		/* A new ClientHello went out and the relay side kills the
		 * session instead of answering it. */
		cr_assert_gt(evbuffer_get_length(d.c2s), before,
			     "the client sent no renegotiation ClientHello "
			     "(rc %d, error %d)", rc, wolfSSL_get_error(ssl, rc));
		for (i = 0; i < 10 && n == 0; i++)
			n = tls_conn_read(d.srv, buf, sizeof(buf));
		cr_assert_eq(n, -1, "relay read %d", n);
		cr_assert(strstr(tls_conn_error(d.srv), "renegotiation") != NULL,
			  "%s", tls_conn_error(d.srv));
	}
	wolfSSL_free(ssl);
	wolfSSL_CTX_free(ctx);
	duo_close(&d);
}

Test(tlssec, client_renegotiation_kills_a_tls12_link)
{
	reneg_case(TLSV_1_2);
}

Test(tlssec, tls13_has_no_renegotiation)
{
	reneg_case(TLSV_1_3);
}

/*
 * A server-side request (HelloRequest).  No wolfSSL build here can send
 * one (SendHelloRequest needs HAVE_SECURE_RENEGOTIATION), so the relay
 * side is `openssl s_server`, told to renegotiate with "r" on its
 * standard input; it listens on a Unix socket in a directory of its
 * own with a short name (s_server fails on a socket path of 32
 * characters or more).
 */
Test(tlssec, server_renegotiation_request_kills_a_tls12_link)
{
	char sdir[] = "/tmp/tpxrXXXXXX", sock[64], crt[600], key[600], log[600], ca[600], err[512];
	struct sockaddr_un sa;
	struct tls_conn_params p;
	struct tls_ctx *t;
	struct tls_conn *c;
	struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
	struct cfg *cfg;
	int to_srv[2], fd = -1, hs = 0, n = 0, i, status;
	uint8_t buf[64];
	pid_t pid;

	cr_assert_not_null(mkdtemp(sdir));
	snprintf(sock, sizeof(sock), "%s/s", sdir);
	cert_path(crt, sizeof(crt), "relay.crt");
	cert_path(key, sizeof(key), "relay.key");
	cert_path(ca, sizeof(ca), "ca.crt");
	snprintf(log, sizeof(log), "%s/s_server.%d.log", certs, (int)getpid());
	cr_assert_eq(pipe(to_srv), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int lfd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		dup2(to_srv[0], 0);
		dup2(lfd, 1);
		dup2(lfd, 2);
		close(to_srv[1]);
		execlp("openssl", "openssl", "s_server", "-unix", sock,
		       "-unlink", "-naccept", "1", "-tls1_2",
		       "-legacy_renegotiation", "-cert", crt, "-key", key,
		       (char *)NULL);
		_exit(127);
	}
	close(to_srv[0]);

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	for (i = 0; i < 100 && fd < 0; i++) {
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
			close(fd);
			fd = -1;
			usleep(50000);
		}
	}

	cfg = load(CFG_GATEWAY, NULL, "ca.crt", "");
	t = tls_ctx_new(cfg, 0, err, sizeof(err));
	memset(&p, 0, sizeof(p));
	p.tls_min = p.tls_max = TLSV_1_2;
	p.ciphers = cfg->ciphers;
	p.n_ciphers = cfg->n_ciphers;
	p.server_name = "relay";
	c = t != NULL ? tls_conn_new(t, in, out, &p, err, sizeof(err)) : NULL;

	/* Handshake, then ask the server to renegotiate and read. */
	for (i = 0; fd >= 0 && c != NULL && i < 200 && hs != -1 && n == 0; i++) {
		struct pollfd pf = { .fd = fd, .events = POLLIN };

		if (hs == 0) {
			hs = tls_conn_handshake(c);
			if (hs == 1 && write(to_srv[1], "r\n", 2) != 2)
				break;
		} else {
			n = tls_conn_read(c, buf, sizeof(buf));
		}
		while (evbuffer_get_length(out) > 0 && evbuffer_write(out, fd) > 0)
			;
		if (n == 0 && hs != -1 && poll(&pf, 1, 50) == 1 &&
		    evbuffer_read(in, fd, 4096) <= 0)
			tls_conn_set_eof(c);
	}
	snprintf(err, sizeof(err), "%s", c != NULL ? tls_conn_error(c) : err);

	kill(pid, SIGTERM);
	waitpid(pid, &status, 0);
	close(to_srv[1]);
	if (fd >= 0)
		close(fd);
	unlink(sock);
	rmdir(sdir);
	tls_conn_free(c);
	tls_ctx_free(t);
	cfg_free(cfg);
	evbuffer_free(in);
	evbuffer_free(out);

	if (hs != 1) {
		char cmd[700];

		snprintf(cmd, sizeof(cmd), "cat %s >&2", log);
		if (system(cmd) != 0)
			fprintf(stderr, "no s_server log\n");
	}
	cr_assert_eq(hs, 1, "handshake with s_server: %d (fd %d): %s", hs, fd,
		     err);
	cr_assert_eq(n, -1, "read after the HelloRequest returned %d", n);
	cr_assert(strstr(err, "renegotiation (HelloRequest)") != NULL, "%s", err);
	unlink(log);
}

/* ---- match_glob ----------------------------------------------------- */

Test(tlssec, match_glob_cases)
{
	static const struct {
		const char *p, *s;
		int nocase, want;
	} t[] = {
		{ "gw1", "gw1", 0, 1 },
		{ "gw1", "gw10", 0, 0 },
		{ "gw10", "gw1", 0, 0 },
		{ "", "", 0, 1 },
		{ "", "a", 0, 0 },
		{ "*", "", 0, 1 },
		{ "*", "anything.at/all", 0, 1 },
		{ "gw-*.example.net", "gw-a.example.net", 1, 1 },
		{ "gw-*.example.net", "GW-B.Example.NET", 1, 1 },
		{ "gw-*.example.net", "GW-B.Example.NET", 0, 0 },
		{ "gw-*.example.net", "gw-.example.net", 1, 1 },
		{ "gw-*.example.net", "gw-a.example.net.evil", 1, 0 },
		{ "gw-*.example.net", "xgw-a.example.net", 1, 0 },
		{ "gw-*.example.net", "gw-a.b.example.net", 1, 1 },
		{ "spiffe://corp/gw/*", "spiffe://corp/gw/a/b", 0, 1 },
		{ "spiffe://corp/gw/*", "spiffe://corp/GW/a", 0, 0 },
		{ "spiffe://corp/gw/*", "spiffe://corp/gw", 0, 0 },
		{ "a*b*c", "abc", 0, 1 },
		{ "a*b*c", "axxbyyc", 0, 1 },
		{ "a*b*c", "axxbyy", 0, 0 },
		{ "a*c", "abcbc", 0, 1 },
		{ "a*c", "abcb", 0, 0 },
		{ "**x", "x", 0, 1 },
		{ "*a*a*a*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 0, 0 },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		cr_assert_eq(match_glob(t[i].p, t[i].s, t[i].nocase), t[i].want,
			     "match_glob('%s', '%s', %d)", t[i].p, t[i].s,
			     t[i].nocase);
}

/* ---- main: one set of certificates for the run ----------------------- */

static void
suite_init(void)
{
	const char *d = getenv("TLSSEC_CERTS");

	cr_assert(d != NULL && *d != '\0', "TLSSEC_CERTS is not set");
	snprintf(certs, sizeof(certs), "%s", d);
	tls_global_init();
}

static void
suite_fini(void)
{
	tls_global_cleanup();
}

TestSuite(tlssec, .init = suite_init, .fini = suite_fini);

int
main(int argc, char *argv[])
{
	struct criterion_test_set *tests;
	const char *src = getenv("TLSPLEX_SOURCE_DIR");
	char cmd[1200];
	int rc = 1;

	if (getenv("TLSSEC_CERTS") != NULL) {
		/* A test worker, started by Criterion with our environment. */
		tests = criterion_initialize();
		if (criterion_handle_args(argc, argv, true))
			rc = !criterion_run_all_tests(tests);
		else
			rc = 0;
		criterion_finalize(tests);
		return rc;
	}
	if (src == NULL || *src == '\0') {
		fprintf(stderr, "test_tlssec: TLSPLEX_SOURCE_DIR is not set\n");
		return 1;
	}
	snprintf(certs, sizeof(certs), "%s/tpx-tlssec.XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(certs) == NULL) {
		perror("test_tlssec: mkdtemp");
		return 1;
	}
	snprintf(cmd, sizeof(cmd), "sh '%s/scripts/mkcerts.sh' -f '%s'", src,
		 certs);
	if (system(cmd) != 0) {
		fprintf(stderr, "test_tlssec: %s failed\n", cmd);
		goto out;
	}
	setenv("TLSSEC_CERTS", certs, 1);
	tests = criterion_initialize();
	if (criterion_handle_args(argc, argv, true))
		rc = !criterion_run_all_tests(tests);
	else
		rc = 0;
	criterion_finalize(tests);
out:
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", certs);
	if (system(cmd) != 0)
		fprintf(stderr, "test_tlssec: cannot remove %s\n", certs);
	return rc;
}
