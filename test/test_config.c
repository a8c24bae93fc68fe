/*
 * Configuration loader tests.  Each test gets a fresh temporary
 * directory holding dummy certificate files, and loads text whose name
 * places it in that directory, so relative paths resolve there.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "harness.h"
#include "neg.h"
#include "policy.h"

static char tmp[512];        /* realpath of the test's directory */
static char name[PATH_MAX];  /* tmp/t.ini, the name given to loads */
static char err[1024];

static void
put_file(const char *rel, const char *text)
{
	char path[PATH_MAX * 2];

	snprintf(path, sizeof(path), "%s/%s", tmp, rel);
	cr_assert_eq(h_write_file(path, "%s", text), 0, "cannot write %s: %s",
		     path, strerror(errno));
}

static void
setup(void)
{
	static const char *files[] = {
		"certs/ca.crt", "certs/relay.crt", "certs/relay.key",
		"certs/gw1.crt", "certs/gw1.key",
	};
	char t[] = "/tmp/tpx-cfg.XXXXXX";
	char path[PATH_MAX * 2];
	char *real;

	cr_assert_not_null(mkdtemp(t));
	real = realpath(t, NULL);
	cr_assert_not_null(real);
	cr_assert_lt(strlen(real), sizeof(tmp));
	strcpy(tmp, real);
	free(real);
	snprintf(name, sizeof(name), "%s/t.ini", tmp);
	snprintf(path, sizeof(path), "%s/certs", tmp);
	cr_assert_eq(mkdir(path, 0700), 0);
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		put_file(files[i], "-----BEGIN DUMMY-----\n-----END DUMMY-----\n");
	err[0] = '\0';
}

static int
rm_one(const char *p, const struct stat *sb, int flag,
       struct FTW *ftw)
{
	return remove(p);
}

static void
teardown(void)
{
	if (tmp[0])
		nftw(tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(config, .init = setup, .fini = teardown);

static struct cfg *
load(const char *text, int role)
{
	return cfg_load_string(text, name, role, err, sizeof(err));
}

/* Loads text, expects failure, and checks the message starts with
 * "NAME:LINE: key 'KEY': " (or "NAME:LINE: " without a key) and holds
 * every further fragment given. */
static void
expect_fail(const char *text, int role, int line, const char *key,
	    const char *frag1, const char *frag2)
{
	char prefix[PATH_MAX + 128];
	struct cfg *c = load(text, role);

	if (c)
		cfg_free(c);
	cr_assert_null(c, "loaded although it should fail:\n%s", text);
	if (key)
		snprintf(prefix, sizeof(prefix), "%s:%d: key '%s': ", name,
			 line, key);
	else
		snprintf(prefix, sizeof(prefix), "%s:%d: ", name, line);
	cr_assert(strncmp(err, prefix, strlen(prefix)) == 0,
		  "message '%s' does not start with '%s'", err, prefix);
	if (frag1)
		cr_assert(strstr(err, frag1), "message '%s' lacks '%s'", err,
			  frag1);
	if (frag2)
		cr_assert(strstr(err, frag2), "message '%s' lacks '%s'", err,
			  frag2);
	cr_assert(strstr(err, "expected"), "message '%s' says nothing about what is expected",
		  err);
}

#define RELAY_FILES "cert = certs/relay.crt\nkey = certs/relay.key\nca = certs/ca.crt\n"
#define GW_BASE "[gateway]\nrelay = 127.0.0.1:7400\nca = certs/ca.crt\n"
#define GW_SVC "[service s]\nlisten = 7401\n"

static const char *
source_dir(void)
{
	const char *d = getenv("TLSPLEX_SOURCE_DIR");

	return d && *d ? d : ".";
}

static char *
slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long n;

	cr_assert_not_null(f, "cannot open %s: %s", path, strerror(errno));
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n + 1);
	cr_assert_not_null(buf);
	cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static void
copy_example(const char *file)
{
	char path[PATH_MAX * 2];
	char *text;

	snprintf(path, sizeof(path), "%s/examples/%s", source_dir(), file);
	text = slurp(path);
	put_file(file, text);
	free(text);
}

static void
in_tmp(char *out, size_t n, const char *rel)
{
	snprintf(out, n, "%s/%s", tmp, rel);
}

/* ---- the example files ----------------------------------------------- */

Test(config, relay_example_loads)
{
	char path[PATH_MAX * 2], want[PATH_MAX * 2];
	const struct cfg_service *s;
	const struct cfg_peer *p;
	struct cfg *c;

	copy_example("relay.ini");
	in_tmp(path, sizeof(path), "relay.ini");
	c = cfg_load(path, CFG_RELAY, err, sizeof(err));
	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(c->role, CFG_RELAY);
	cr_assert_str_eq(c->file, path);
	cr_assert_str_eq(c->node_name, "relay");
	cr_assert_str_eq(c->listen, "127.0.0.1:7400");
	cr_assert_eq(c->tls, TLS_MODE_REQUIRE);
	cr_assert_eq(c->client_cert, CERT_WANT_REQUIRE);
	in_tmp(want, sizeof(want), "certs/relay.crt");
	cr_assert_str_eq(c->cert, want);
	in_tmp(want, sizeof(want), "certs/relay.key");
	cr_assert_str_eq(c->key, want);
	in_tmp(want, sizeof(want), "certs/ca.crt");
	cr_assert_str_eq(c->ca, want);
	in_tmp(want, sizeof(want), "hooks-relay.jsonl");
	cr_assert_str_eq(c->hook_file, want);
	cr_assert_eq(c->n_services, 1);
	s = cfg_service_find(c, "echo");
	cr_assert_not_null(s);
	cr_assert_str_eq(s->backend, "127.0.0.1:7500");
	cr_assert_eq(s->tls, CFG_UNSET);
	p = cfg_peer_find(c, "gw1");
	cr_assert_not_null(p);
	cr_assert_eq(p->client_cert, CERT_WANT_REQUIRE);
	cfg_free(c);
}

/* ---- TLS security keys: ca directory, crl, groups, key_perms --------- */

Test(config, tls_security_defaults)
{
	struct cfg *c = load(GW_BASE GW_SVC, CFG_GATEWAY);

	cr_assert_not_null(c, "%s", err);
	cr_assert_str_eq(c->crl, "");
	cr_assert_eq(c->n_groups, 3);
	cr_assert_eq(c->groups[0], 29);  /* X25519 */
	cr_assert_eq(c->groups[1], 23);  /* P-256 */
	cr_assert_eq(c->groups[2], 24);  /* P-384 */
	cr_assert_eq(c->key_perms, CFG_KEY_PERMS_WARN);
	cfg_free(c);
}

Test(config, ca_may_be_a_directory)
{
	char want[PATH_MAX * 2];
	struct cfg *c = load("[gateway]\nrelay = a:1\nca = certs\n" GW_SVC,
			     CFG_GATEWAY);

	cr_assert_not_null(c, "%s", err);
	in_tmp(want, sizeof(want), "certs");
	cr_assert_str_eq(c->ca, want);
	cfg_free(c);
	expect_fail("[gateway]\nrelay = a:1\nca = nodir/\n", CFG_GATEWAY, 3,
		    "ca", "cannot read", "a directory of PEM files");
}

Test(config, crl_is_a_readable_file)
{
	char want[PATH_MAX * 2];
	struct cfg *c;

	put_file("certs/ca.crl", "-----BEGIN X509 CRL-----\n-----END X509 CRL-----\n");
	c = load(GW_BASE "crl = certs/ca.crl\n" GW_SVC, CFG_GATEWAY);
	cr_assert_not_null(c, "%s", err);
	in_tmp(want, sizeof(want), "certs/ca.crl");
	cr_assert_str_eq(c->crl, want);
	cfg_free(c);
	expect_fail(GW_BASE "crl = certs/none.crl\n", CFG_GATEWAY, 4, "crl",
		    "cannot read", "none.crl");
	expect_fail(GW_BASE "crl = certs\n", CFG_GATEWAY, 4, "crl",
		    "not a regular file", NULL);
}

Test(config, groups_parse_in_order)
{
	struct cfg *c = load(GW_BASE "groups = x448, P-521:ffdhe2048 : secp256r1\n"
			     GW_SVC, CFG_GATEWAY);

	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(c->n_groups, 4);
	cr_assert_eq(c->groups[0], 30);
	cr_assert_eq(c->groups[1], 25);
	cr_assert_eq(c->groups[2], 256);
	cr_assert_eq(c->groups[3], 23);
	cfg_free(c);
	c = load("[relay]\ntls = off\ngroups = ffdhe3072\n", CFG_RELAY);
	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(c->n_groups, 1);
	cr_assert_eq(c->groups[0], 257);
	cfg_free(c);
}

Test(config, groups_rejected)
{
	expect_fail(GW_BASE "groups = X25519:P-192\n", CFG_GATEWAY, 4, "groups",
		    "unknown group 'P-192'", "X25519, X448, P-256");
	expect_fail(GW_BASE "groups = P-256:prime256v1\n", CFG_GATEWAY, 4,
		    "groups", "listed twice", NULL);
	expect_fail(GW_BASE "groups = :,\n", CFG_GATEWAY, 4, "groups",
		    "lists no group", NULL);
}

Test(config, key_perms_choices)
{
	struct cfg *c = load(GW_BASE "key_perms = error\n" GW_SVC, CFG_GATEWAY);

	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(c->key_perms, CFG_KEY_PERMS_ERROR);
	cfg_free(c);
	c = load("[relay]\ntls = off\nkey_perms = warn\n", CFG_RELAY);
	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(c->key_perms, CFG_KEY_PERMS_WARN);
	cfg_free(c);
	expect_fail(GW_BASE "key_perms = ignore\n", CFG_GATEWAY, 4, "key_perms",
		    "'ignore' is not a valid value", "one of warn, error");
}

Test(config, gateway_example_loads)
{
	char path[PATH_MAX * 2], want[PATH_MAX * 2];
	const struct cfg_service *s;
	struct cfg *c;

	copy_example("gateway.ini");
	in_tmp(path, sizeof(path), "gateway.ini");
	c = cfg_load(path, CFG_GATEWAY, err, sizeof(err));
	cr_assert_not_null(c, "%s", err);
	cr_assert_str_eq(c->node_name, "gw1");
	cr_assert_str_eq(c->relay, "127.0.0.1:7400");
	cr_assert_str_eq(c->server_name, "relay");
	cr_assert_eq(c->tls, TLS_MODE_PREFER);
	in_tmp(want, sizeof(want), "certs/gw1.crt");
	cr_assert_str_eq(c->cert, want);
	in_tmp(want, sizeof(want), "certs/gw1.key");
	cr_assert_str_eq(c->key, want);
	in_tmp(want, sizeof(want), "certs/ca.crt");
	cr_assert_str_eq(c->ca, want);
	in_tmp(want, sizeof(want), "hooks-gateway.jsonl");
	cr_assert_str_eq(c->hook_file, want);
	s = cfg_service_find(c, "echo");
	cr_assert_not_null(s);
	cr_assert_str_eq(s->listen, "127.0.0.1:7401");
	cfg_free(c);
}

Test(config, examples_fail_without_cert_files)
{
	char path[PATH_MAX * 2], cert[PATH_MAX * 2], want[PATH_MAX * 4];

	in_tmp(cert, sizeof(cert), "certs/relay.crt");
	cr_assert_eq(unlink(cert), 0);
	copy_example("relay.ini");
	in_tmp(path, sizeof(path), "relay.ini");
	cr_assert_null(cfg_load(path, CFG_RELAY, err, sizeof(err)));
	snprintf(want, sizeof(want), "cannot read '%s': %s", cert,
		 strerror(ENOENT));
	cr_assert(strstr(err, want), "%s", err);
	snprintf(want, sizeof(want), "%s:", path);
	cr_assert(strncmp(err, want, strlen(want)) == 0, "%s", err);
	cr_assert(strstr(err, ": key 'cert': "), "%s", err);
}

/* ---- defaults --------------------------------------------------------- */

static void
host_default(char *out, size_t n)
{
	char host[256] = "";
	size_t k = 0;

	gethostname(host, sizeof(host));
	host[sizeof(host) - 1] = '\0';
	for (const char *p = host; *p && k < CFG_NAME_MAX && k + 1 < n; p++)
		out[k++] = (strchr("._-", *p) || (*p >= '0' && *p <= '9') ||
			    (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')) ?
			   *p : '-';
	out[k] = '\0';
	if (!k)
		snprintf(out, n, "tlsplex");
}

static void
assert_default_ciphers(const struct cfg *c)
{
	static const char *names[] = {
		"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
		"TLS_CHACHA20_POLY1305_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256",
		"ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305",
		"ECDHE-RSA-CHACHA20-POLY1305",
	};

	cr_assert_eq(c->n_ciphers, 7);
	for (size_t i = 0; i < 7; i++) {
		const struct cipher_info *ci = cipher_by_name(names[i]);

		cr_assert_not_null(ci, "%s", names[i]);
		cr_assert_eq(c->ciphers[i], ci->id, "suite %zu", i);
	}
}

static void
assert_common_defaults(const struct cfg *c)
{
	char host[CFG_NAME_MAX + 1];

	host_default(host, sizeof(host));
	cr_assert_str_eq(c->node_name, host);
	cr_assert_eq(c->tls, TLS_MODE_REQUIRE);
	cr_assert_eq(c->min_tls, TLSV_1_3);
	cr_assert_eq(c->max_tls, TLSV_1_3);
	assert_default_ciphers(c);
	cr_assert_eq(c->negotiation_timeout_ms, 10000);
	cr_assert_eq(c->handshake_timeout_ms, 10000);
	cr_assert_eq(c->keepalive_ms, 10000);
	cr_assert_eq(c->keepalive_timeout_ms, 30000);
	cr_assert_eq(c->max_streams, 16384);
	cr_assert_eq(c->ciphers_auto, 1);
	cr_assert_eq(c->window, 256 * 1024);
	cr_assert_eq(c->max_frame, 16375);
	cr_assert_eq(c->link_budget, CFG_LINK_BUDGET_AUTO);
	cr_assert_str_eq(c->hook_file, "");
	cr_assert_eq(c->log_level, 2);
}

Test(config, relay_defaults)
{
	struct cfg *c = load("[relay]\n" RELAY_FILES "[service s]\nbackend = 10.0.0.1:80\n",
			     CFG_RELAY);
	const struct cfg_service *s;

	cr_assert_not_null(c, "%s", err);
	assert_common_defaults(c);
	cr_assert_str_eq(c->listen, "127.0.0.1:7400");
	cr_assert_eq(c->client_cert, CERT_WANT_REQUIRE);
	cr_assert_str_eq(c->relay, "");
	cr_assert_str_eq(c->server_name, "");
	s = cfg_service_find(c, "s");
	cr_assert_not_null(s);
	cr_assert_eq(s->tls, CFG_UNSET);
	cr_assert_str_eq(s->listen, "");
	cr_assert_eq(s->line, 5);
	cfg_free(c);
}

Test(config, gateway_defaults)
{
	struct cfg *c = load(GW_BASE GW_SVC "[peer r]\n", CFG_GATEWAY);
	const struct cfg_peer *p;

	cr_assert_not_null(c, "%s", err);
	assert_common_defaults(c);
	cr_assert_str_eq(c->server_name, "127.0.0.1");
	cr_assert_eq(c->redial_min_ms, 500);
	cr_assert_eq(c->redial_max_ms, 30000);
	cr_assert_eq(c->hold_timeout_ms, 10000);
	cr_assert_eq(c->hold_max, 1024);
	cr_assert_str_eq(c->listen, "");
	cr_assert_str_eq(c->cert, "");
	cr_assert_str_eq(c->key, "");
	cr_assert_eq(cfg_service_find(c, "s")->tls, CFG_UNSET);
	p = cfg_peer_find(c, "r");
	cr_assert_not_null(p);
	cr_assert_eq(p->tls, CFG_UNSET);
	cr_assert_eq(p->min_tls, CFG_UNSET);
	cr_assert_eq(p->max_tls, CFG_UNSET);
	cr_assert_eq(p->client_cert, CFG_UNSET);
	cr_assert_eq(p->line, 6);
	cfg_free(c);
}

Test(config, server_name_from_ipv6_relay)
{
	struct cfg *c = load("[gateway]\nrelay = [::1]:7400\ntls = off\n" GW_SVC,
			     CFG_GATEWAY);

	cr_assert_not_null(c, "%s", err);
	cr_assert_str_eq(c->relay, "[::1]:7400");
	cr_assert_str_eq(c->server_name, "::1");
	cfg_free(c);
}

Test(config, every_value_parses)
{
	struct cfg *c = load(
		"[gateway]\n"
		"node_name = gw-1.example_A\n"
		"relay = relay.example.net:443\n"
		"server_name = relay.example.net\n"
		"tls = allow\n"
		"min_tls = 1.2\n"
		"max_tls = 1.3\n"
		"ciphers = TLS13-AES256-GCM-SHA384, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n"
		"cert = certs/gw1.crt\nkey = certs/gw1.key\nca = certs/ca.crt\n"
		"negotiation_timeout = 500ms\n"
		"handshake_timeout = 2m\n"
		"keepalive = 0\n"
		"max_streams = 1000000\n"
		"window = 16m\n"
		"max_frame = 1K\n"
		"redial_min = 1\n"
		"redial_max = 1h\n"
		"hook_file = /tmp/x.jsonl\n"
		"log_level = debug\n"
		"[service a]\nlisten = :81\ntls = require\n"
		"[service b]\nlisten = [::1]:82\n"
		"[service c]\nlisten = localhost:83\n"
		"[peer relay]\ntls = off\nmin_tls = 1.2\nmax_tls = 1.2\n",
		CFG_GATEWAY);

	cr_assert_not_null(c, "%s", err);
	cr_assert_str_eq(c->node_name, "gw-1.example_A");
	cr_assert_str_eq(c->relay, "relay.example.net:443");
	cr_assert_eq(c->tls, TLS_MODE_ALLOW);
	cr_assert_eq(c->min_tls, TLSV_1_2);
	cr_assert_eq(c->n_ciphers, 2);
	cr_assert_eq(c->ciphers[0], 0x1302);
	cr_assert_eq(c->ciphers[1], 0xc02f);
	cr_assert_eq(c->negotiation_timeout_ms, 500);
	cr_assert_eq(c->handshake_timeout_ms, 120000);
	cr_assert_eq(c->keepalive_ms, 0);
	cr_assert_eq(c->max_streams, 1000000);
	cr_assert_eq(c->window, 16u << 20);
	cr_assert_eq(c->max_frame, 1024);
	cr_assert_eq(c->redial_min_ms, 1000);
	cr_assert_eq(c->redial_max_ms, 3600000);
	cr_assert_str_eq(c->hook_file, "/tmp/x.jsonl");
	cr_assert_eq(c->log_level, 3);
	cr_assert_eq(c->n_services, 3);
	cr_assert_str_eq(cfg_service_find(c, "a")->listen, "127.0.0.1:81");
	cr_assert_eq(cfg_service_find(c, "a")->tls, TLS_MODE_REQUIRE);
	cr_assert_str_eq(cfg_service_find(c, "b")->listen, "[::1]:82");
	cr_assert_str_eq(cfg_service_find(c, "c")->listen, "localhost:83");
	cr_assert_null(cfg_service_find(c, "d"));
	cr_assert_eq(cfg_peer_find(c, "relay")->tls, TLS_MODE_OFF);
	cr_assert_eq(cfg_peer_find(c, "relay")->max_tls, TLSV_1_2);
	cr_assert_null(cfg_peer_find(c, "other"));
	cfg_free(c);
}

/* ---- syntax ----------------------------------------------------------- */

Test(config, comments_indentation_crlf_and_bom)
{
	struct cfg *c = load("\xef\xbb\xbf; comment\r\n# another\r\n[relay]\r\n"
			     "    tls = off ; inline comment\r\n"
			     "\tlisten = 127.0.0.1:9000\r\n"
			     "  log_level: warn\r\n\r\n",
			     CFG_RELAY);

	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(c->tls, TLS_MODE_OFF);
	cr_assert_str_eq(c->listen, "127.0.0.1:9000");
	cr_assert_eq(c->log_level, 1);
	cfg_free(c);
}

Test(config, lines_longer_than_inih_buffer)
{
	char text[8192], want[PATH_MAX * 2], longname[301];
	struct cfg *c;

	memset(longname, 'h', 300);
	longname[300] = '\0';
	snprintf(text, sizeof(text),
		 "[relay]\ntls = off\n"
		 "ciphers = TLS_AES_128_GCM_SHA256 : TLS_AES_256_GCM_SHA384 : TLS_CHACHA20_POLY1305_SHA256 : "
		 "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 : TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 : "
		 "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 ; a comment\n"
		 "hook_file = %s\n"
		 "log_level = debug\n", longname);
	c = load(text, CFG_RELAY);
	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(c->n_ciphers, 6);
	cr_assert_eq(c->ciphers[5], 0xcca9);
	in_tmp(want, sizeof(want), longname);
	cr_assert_str_eq(c->hook_file, want);
	cr_assert_eq(c->log_level, 3);
	cfg_free(c);
}

Test(config, line_too_long)
{
	size_t n = 5000;
	char *text = malloc(n + 64);

	cr_assert_not_null(text);
	strcpy(text, "[relay]\nnode_name = ");
	memset(text + strlen(text), 'a', n);
	strcpy(text + strlen("[relay]\nnode_name = ") + n, "\n");
	expect_fail(text, CFG_RELAY, 2, NULL, "longer than 4096", NULL);
	free(text);
}

Test(config, long_value_still_checked)
{
	char text[1024];

	snprintf(text, sizeof(text), "[relay]\ntls = off\nnode_name = %0300d\n", 0);
	expect_fail(text, CFG_RELAY, 3, "node_name", "is not a valid name",
		    "1 to 64 characters");
}

Test(config, syntax_errors)
{
	expect_fail("[relay]\ntls = off\njust words\n", CFG_RELAY, 3, NULL,
		    "key = value", NULL);
	expect_fail("[relay\ntls = off\n", CFG_RELAY, 1, NULL, "no closing ']'",
		    NULL);
	expect_fail("[relay] junk\n", CFG_RELAY, 1, NULL, "after the section header",
		    NULL);
	expect_fail("[relay]\ntls = o\x01" "ff\n", CFG_RELAY, 2, NULL,
		    "control character", NULL);
	expect_fail("tls = off\n[relay]\n", CFG_RELAY, 1, "tls",
		    "before any section",
		    "[relay], [service NAME], [peer NAME] or [template NAME]");
}

/* ---- error classes ---------------------------------------------------- */

Test(config, unknown_key)
{
	expect_fail("[relay]\ntls = off\n\nbogus = 1\n", CFG_RELAY, 4, "bogus",
		    "unknown key in a [relay] section", "node_name, listen");
	expect_fail("[relay]\ntls = off\n[service a]\nbackend = h:1\nport = 2\n",
		    CFG_RELAY, 5, "port", "unknown key in a [service] section",
		    "listen, backend, gateway, tls");
	expect_fail("[relay]\ntls = off\n[service a]\ncert = x\n", CFG_RELAY, 4,
		    "cert", "not valid in a [service] section",
		    "in the [relay] section");
	expect_fail("[relay]\ntls = off\n[peer a]\nwindow = 1m\n", CFG_RELAY, 4,
		    "window", "not valid in a [peer] section", NULL);
}

Test(config, unknown_section)
{
	expect_fail("[relay]\ntls = off\n[templates t]\nx = 1\n", CFG_RELAY, 3, NULL,
		    "unknown section '[templates t]'",
		    "expected [relay], [service NAME], [peer NAME] or [template NAME]");
	expect_fail(GW_BASE "[template t]\n", CFG_GATEWAY, 4, NULL,
		    "'[template t]' belongs in a relay configuration",
		    "expected [gateway], [service NAME] or [peer NAME]");
	expect_fail(GW_BASE "[templates]\n", CFG_GATEWAY, 4, NULL,
		    "unknown section '[templates]'",
		    "expected [gateway], [service NAME] or [peer NAME]");
	expect_fail("[gateway]\nrelay = a:1\n", CFG_RELAY, 1, NULL,
		    "belongs in a gateway configuration; this is a relay configuration",
		    NULL);
	expect_fail("[relay]\n", CFG_GATEWAY, 1, NULL,
		    "belongs in a relay configuration; this is a gateway configuration",
		    NULL);
	expect_fail("[relay x]\n", CFG_RELAY, 1, NULL, "takes no name", NULL);
	expect_fail("[relay]\ntls = off\n[relay]\n", CFG_RELAY, 3, NULL,
		    "repeats the one at line 1", NULL);
	expect_fail("[relay]\ntls = off\n[service]\n", CFG_RELAY, 3, NULL,
		    "has no name", NULL);
	expect_fail("[relay]\ntls = off\n[peer bad/name]\n", CFG_RELAY, 3, NULL,
		    "invalid name", "1 to 64 characters");
}

Test(config, bad_values_per_type)
{
	const char *h = "[relay]\ntls = off\n";
	static const struct { const char *line, *key, *frag1, *frag2; } cases[] = {
		{ "log_level = loud", "log_level", "'loud' is not a valid value",
		  "one of error, warn, info, debug" },
		{ "min_tls = 1.1", "min_tls", "'1.1' is not a valid value",
		  "one of 1.2, 1.3" },
		{ "client_cert = maybe", "client_cert", "not a valid value",
		  "one of none, optional, require" },
		{ "keepalive = 5 parsecs", "keepalive", "is not a duration",
		  "500ms, 10s, 2m, 1h" },
		{ "handshake_timeout = -1s", "handshake_timeout",
		  "is not a duration", NULL },
		{ "window = 12q", "window", "is not a size", "k = 1024" },
		{ "window = 1kk", "window", "is not a size", NULL },
		{ "max_streams = ten", "max_streams", "is not a whole number",
		  "from 1 to 1000000" },
		{ "listen = localhost", "listen", "has no port", "host:port" },
		{ "listen = ::1:7400", "listen", "IPv6 address without brackets",
		  "[::1]:7400" },
		{ "listen = 127.0.0.1:65536", "listen", "port that is not a number",
		  NULL },
		{ "listen = [1.2.3.4]:80", "listen", "not an IPv6 address", NULL },
		{ "node_name = bad name", "node_name", "is not a valid name",
		  "A-Z a-z 0-9 . _ -" },
		{ "node_name =", "node_name", "is not a valid name", NULL },
		{ "ciphers = TLS_NULL_WITH_NULL_NULL", "ciphers",
		  "unknown cipher suite 'TLS_NULL_WITH_NULL_NULL'", "IANA or wolfSSL" },
		{ "ciphers = TLS_AES_128_GCM_SHA256:TLS13-AES128-GCM-SHA256",
		  "ciphers", "listed twice", NULL },
		{ "ciphers = :,", "ciphers", "lists no suite", NULL },
		{ "hook_file = nodir/x.jsonl", "hook_file", "does not exist",
		  "existing directory" },
		{ "hook_file = certs", "hook_file", "is a directory", NULL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char text[512];

		snprintf(text, sizeof(text), "%s%s\n", h, cases[i].line);
		expect_fail(text, CFG_RELAY, 3, cases[i].key, cases[i].frag1,
			    cases[i].frag2);
	}
	expect_fail(GW_BASE "server_name = a/b\n" GW_SVC, CFG_GATEWAY, 4,
		    "server_name", "not a valid host name", NULL);
	expect_fail(GW_BASE "[service s]\nlisten = 0\n", CFG_GATEWAY, 5,
		    "listen", "has no port", "bare port");
}

Test(config, out_of_range)
{
	const char *h = "[relay]\ntls = off\n";
	static const struct { const char *line, *key, *frag; } cases[] = {
		{ "keepalive = 2h", "keepalive",
		  "expected 0 (off) or a duration (500ms, 10s, 2m, 1h; a bare number is seconds) from 100ms to 1h" },
		{ "keepalive = 50ms", "keepalive", "from 100ms to 1h" },
		{ "keepalive_timeout = 100ms", "keepalive_timeout", "from 200ms to 1h" },
		{ "negotiation_timeout = 50ms", "negotiation_timeout",
		  "from 100ms to 1h" },
		{ "negotiation_timeout = 0", "negotiation_timeout",
		  "from 100ms to 1h" },
		{ "handshake_timeout = 99999999999999999999999s",
		  "handshake_timeout", "from 100ms to 1h" },
		{ "handshake_timeout = 5000000h", "handshake_timeout",
		  "from 100ms to 1h" },
		{ "window = 1k", "window", "from 16k to 16m" },
		{ "window = 4194304k", "window", "from 16k to 16m" },
		{ "max_frame = 16m", "max_frame", "from 1k to 16777215" },
		{ "max_frame = 1023", "max_frame", "from 1k to 16777215" },
		{ "max_streams = 0", "max_streams", "from 1 to 1000000" },
		{ "max_streams = 1000001", "max_streams", "from 1 to 1000000" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char text[512];

		snprintf(text, sizeof(text), "%s%s\n", h, cases[i].line);
		expect_fail(text, CFG_RELAY, 3, cases[i].key, "is out of range",
			    cases[i].frag);
	}
	expect_fail(GW_BASE "redial_min = 2h\n" GW_SVC, CFG_GATEWAY, 4,
		    "redial_min", "is out of range", "from 100ms to 1h");
}

Test(config, limits_accepted_at_the_edges)
{
	struct cfg *c = load("[relay]\ntls = off\nkeepalive = 1s\nmax_frame = 16777215\n"
			     "window = 16k\nnegotiation_timeout = 100ms\n"
			     "handshake_timeout = 3600s\n",
			     CFG_RELAY);

	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(c->keepalive_ms, 1000);
	cr_assert_eq(c->max_frame, 16777215);
	cr_assert_eq(c->window, 16384);
	cr_assert_eq(c->negotiation_timeout_ms, 100);
	cr_assert_eq(c->handshake_timeout_ms, 3600000);
	cfg_free(c);
}

Test(config, duplicate_key)
{
	expect_fail("[relay]\ntls = off\nlisten = a:1\n\nlisten = b:2\n", CFG_RELAY,
		    5, "listen", "set twice", "first at line 3");
	expect_fail("[relay]\ntls = off\n[service a]\nbackend = h:1\ntls = off\ntls = allow\n",
		    CFG_RELAY, 6, "tls", "set twice", "first at line 5");
}

Test(config, same_key_in_different_sections)
{
	struct cfg *c = load("[relay]\ntls = off\n[service a]\nbackend = h:1\ntls = off\n"
			     "[service b]\nbackend = h:2\ntls = require\n"
			     "[peer p]\ntls = allow\n",
			     CFG_RELAY);

	cr_assert_null(c, "relay with a [service] tls needs certificates");
	cr_assert(strstr(err, "key 'cert'"), "%s", err);
	c = load("[relay]\n" RELAY_FILES "tls = off\n[service a]\nbackend = h:1\ntls = off\n"
		 "[service b]\nbackend = h:2\ntls = require\n[peer p]\ntls = allow\n",
		 CFG_RELAY);
	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(c->tls, TLS_MODE_OFF);
	cr_assert_eq(cfg_service_find(c, "a")->tls, TLS_MODE_OFF);
	cr_assert_eq(cfg_service_find(c, "b")->tls, TLS_MODE_REQUIRE);
	cr_assert_eq(cfg_peer_find(c, "p")->tls, TLS_MODE_ALLOW);
	cfg_free(c);
}

Test(config, duplicate_service_and_peer)
{
	expect_fail("[relay]\ntls = off\n[service a]\nbackend = h:1\n\n[service a]\n",
		    CFG_RELAY, 6, NULL, "section '[service a]' repeats the one at line 3",
		    NULL);
	expect_fail("[relay]\ntls = off\n[peer x]\n[peer x]\n", CFG_RELAY, 4, NULL,
		    "section '[peer x]' repeats the one at line 3", NULL);
	expect_fail(GW_BASE GW_SVC "[service t]\nlisten = 127.0.0.1:7401\n",
		    CFG_GATEWAY, 6, "listen", "like [service s] (line 4)", NULL);
}

Test(config, wrong_role_key)
{
	expect_fail(GW_BASE "[service s]\nlisten = 1\ngateway = gw1\n", CFG_GATEWAY, 6,
		    "gateway", "'gateway' is a relay key; this is a gateway configuration",
		    NULL);
	expect_fail(GW_BASE "listen = 1.2.3.4:5\n", CFG_GATEWAY, 4, "listen",
		    "'listen' is a relay key; this is a gateway configuration", NULL);
	expect_fail(GW_BASE "client_cert = none\n", CFG_GATEWAY, 4, "client_cert",
		    "is a relay key", NULL);
	expect_fail("[relay]\ntls = off\nredial_min = 1s\n", CFG_RELAY, 3,
		    "redial_min", "'redial_min' is a gateway key; this is a relay configuration",
		    NULL);
}

Test(config, missing_required_key)
{
	expect_fail("[gateway]\ntls = off\n" GW_SVC, CFG_GATEWAY, 1, "relay",
		    "missing key in [gateway]", "host:port");
	expect_fail("tls_is_not_set = 1\n" GW_SVC, CFG_GATEWAY, 1, "tls_is_not_set",
		    "before any section", NULL);
	expect_fail(GW_SVC, CFG_GATEWAY, 0, "relay", "missing key", NULL);
	expect_fail(GW_BASE "[service s]\n[service t]\nlisten = 2\n", CFG_GATEWAY,
		    4, "listen", "missing key in [service s]", "bare port");
	expect_fail("[relay]\ntls = off\n\n[service a]\ntls = off\n", CFG_RELAY, 4,
		    "backend", "missing key in [service a]", "host:port");
	expect_fail(GW_BASE, CFG_GATEWAY, 0, NULL, "no [service NAME] section",
		    "at least one service");
}

Test(config, relay_without_service_loads)
{
	struct cfg *c = load("[relay]\ntls = off\n", CFG_RELAY);

	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(c->n_services, 0);
	cr_assert_null(c->services);
	cr_assert_null(cfg_service_find(c, "x"));
	cfg_free(c);
}

Test(config, missing_cert_file)
{
	char want[PATH_MAX * 2];

	snprintf(want, sizeof(want), "cannot read '%s/certs/none.crt': %s", tmp,
		 strerror(ENOENT));
	expect_fail("[relay]\n\ncert = certs/none.crt\n", CFG_RELAY, 3, "cert",
		    want, "readable PEM file");
	expect_fail("[relay]\nkey = /nonexistent/k.pem\n", CFG_RELAY, 2, "key",
		    "cannot read '/nonexistent/k.pem'", NULL);
	expect_fail("[gateway]\nrelay = a:1\ncert = certs\n", CFG_GATEWAY, 3, "cert",
		    "not a regular file", NULL);
	expect_fail("[gateway]\nrelay = a:1\ncert = certs/\n", CFG_GATEWAY, 3, "cert",
		    "not a regular file", NULL);
}

/* Opening a FIFO for reading waits for a writer; the load must refuse it
 * at once instead. */
Test(config, fifo_pem_path_refused_without_blocking, .timeout = 10)
{
	char path[PATH_MAX * 2];

	snprintf(path, sizeof(path), "%s/certs/pipe", tmp);
	cr_assert_eq(mkfifo(path, 0600), 0, "mkfifo %s: %s", path,
		     strerror(errno));
	expect_fail("[gateway]\nrelay = a:1\nca = certs/pipe\n", CFG_GATEWAY, 3,
		    "ca", "not a regular file", NULL);
}

Test(config, tls_material_required)
{
	expect_fail("[relay]\nlisten = 1.2.3.4:5\n", CFG_RELAY, 1, "cert",
		    "missing key in [relay]", "tls is 'require'");
	expect_fail("[relay]\ncert = certs/relay.crt\n", CFG_RELAY, 1, "key",
		    "missing key", NULL);
	expect_fail("[relay]\ncert = certs/relay.crt\nkey = certs/relay.key\n",
		    CFG_RELAY, 1, "ca", "missing key", "client_cert");
	expect_fail("[relay]\ntls = off\n[peer p]\ntls = prefer\n", CFG_RELAY, 1,
		    "cert", "missing key", "[peer p] sets tls");
	expect_fail("[gateway]\nrelay = h:1\n" GW_SVC, CFG_GATEWAY, 1, "ca",
		    "missing key", "tls is 'require'");
	expect_fail(GW_BASE "cert = certs/gw1.crt\n" GW_SVC, CFG_GATEWAY, 1, "key",
		    "missing key", "cert (line 4)");
	expect_fail(GW_BASE "key = certs/gw1.key\n" GW_SVC, CFG_GATEWAY, 1, "cert",
		    "missing key", NULL);
	expect_fail("tls_is = x\n", CFG_RELAY, 1, "tls_is", NULL, NULL);
	expect_fail("[service a]\nbackend = h:1\n", CFG_RELAY, 0, "cert",
		    "missing key", NULL);
}

Test(config, tls_material_optional)
{
	struct cfg *c;

	c = load("[relay]\nclient_cert = none\ncert = certs/relay.crt\nkey = certs/relay.key\n",
		 CFG_RELAY);
	cr_assert_not_null(c, "%s", err);
	cfg_free(c);
	c = load("[gateway]\nrelay = a:1\ntls = off\n" GW_SVC, CFG_GATEWAY);
	cr_assert_not_null(c, "%s", err);
	cfg_free(c);
}

Test(config, min_tls_above_max_tls)
{
	expect_fail("[relay]\ntls = off\nmin_tls = 1.3\nmax_tls = 1.2\n", CFG_RELAY, 4,
		    "max_tls", "below min_tls", "max_tls >= min_tls");
	expect_fail("[relay]\ntls = off\nmax_tls = 1.2\nlog_level = info\nmin_tls = 1.3\n",
		    CFG_RELAY, 5, "min_tls", "above max_tls", "min_tls <= max_tls");
	expect_fail("[relay]\ntls = off\nmax_tls = 1.2\n", CFG_RELAY, 3, "max_tls",
		    "below min_tls", NULL);
	expect_fail("[relay]\ntls = off\n[peer p]\nmin_tls = 1.2\nmax_tls = 1.2\n\n"
		    "[peer q]\nmax_tls = 1.2\n",
		    CFG_RELAY, 7, "max_tls", "below min_tls 1.3", "[peer q]");
	expect_fail(GW_BASE "redial_max = 1s\nredial_min = 2s\n" GW_SVC, CFG_GATEWAY,
		    5, "redial_min", "2s is above redial_max 1s", NULL);
	expect_fail("[relay]\ntls = off\nkeepalive = 5s\nkeepalive_timeout = 5s\n",
		    CFG_RELAY, 4, "keepalive_timeout", "below keepalive 5s", NULL);
}

Test(config, ciphers_must_fit_versions)
{
	expect_fail("[relay]\ntls = off\nciphers = ECDHE-RSA-AES128-GCM-SHA256\n",
		    CFG_RELAY, 3, "ciphers", "no listed suite works with TLS 1.3 to 1.3",
		    NULL);
	struct cfg *c = load("[relay]\ntls = off\nmin_tls = 1.2\nciphers = ECDHE-RSA-AES128-GCM-SHA256\n",
			     CFG_RELAY);
	cr_assert_not_null(c, "%s", err);
	cfg_free(c);
}

Test(config, first_error_only)
{
	expect_fail("[relay]\ntls = off\nmax_streams = 0\nbogus = 1\n[x]\n", CFG_RELAY,
		    3, "max_streams", NULL, NULL);
	cr_assert_null(strstr(err, "bogus"));
	cr_assert_null(strstr(err, "[x]"));
}

Test(config, too_many_services)
{
	size_t cap = 1100 * 40;
	char *text = malloc(cap);
	size_t n;
	struct cfg *c;

	cr_assert_not_null(text);
	n = (size_t)snprintf(text, cap, "[relay]\ntls = off\n");
	for (int i = 0; i < 1024; i++)
		n += (size_t)snprintf(text + n, cap - n, "[service s%d]\nbackend = h:%d\n",
				      i, i + 1);
	c = load(text, CFG_RELAY);
	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(c->n_services, 1024);
	cr_assert_str_eq(cfg_service_find(c, "s1023")->backend, "h:1024");
	cfg_free(c);
	snprintf(text + n, cap - n, "[service last]\n");
	expect_fail(text, CFG_RELAY, 2 + 2 * 1024 + 1, NULL, "at most 1024", NULL);
	free(text);
}

/* ---- files and paths -------------------------------------------------- */

Test(config, relative_paths_resolve_against_config_dir)
{
	char sub[PATH_MAX * 2], path[PATH_MAX * 2], want[PATH_MAX * 2];
	struct cfg *c;

	in_tmp(sub, sizeof(sub), "sub");
	cr_assert_eq(mkdir(sub, 0700), 0);
	in_tmp(sub, sizeof(sub), "sub/certs");
	cr_assert_eq(mkdir(sub, 0700), 0);
	put_file("sub/certs/a.crt", "x");
	put_file("sub/certs/a.key", "x");
	put_file("sub/r.ini", "[relay]\ncert = certs/a.crt\nkey = certs/a.key\n"
		 "ca = ../certs/ca.crt\nhook_file = events.jsonl\n");
	in_tmp(path, sizeof(path), "sub/r.ini");
	c = cfg_load(path, CFG_RELAY, err, sizeof(err));
	cr_assert_not_null(c, "%s", err);
	in_tmp(want, sizeof(want), "sub/certs/a.crt");
	cr_assert_str_eq(c->cert, want);
	in_tmp(want, sizeof(want), "sub/../certs/ca.crt");
	cr_assert_str_eq(c->ca, want);
	in_tmp(want, sizeof(want), "sub/events.jsonl");
	cr_assert_str_eq(c->hook_file, want);
	cfg_free(c);

	/* The same file found through a relative name from its directory. */
	cr_assert_eq(chdir(tmp), 0);
	c = cfg_load("sub/r.ini", CFG_RELAY, err, sizeof(err));
	cr_assert_not_null(c, "%s", err);
	in_tmp(want, sizeof(want), "sub/certs/a.crt");
	cr_assert_str_eq(c->cert, want);
	cr_assert_str_eq(c->file, "sub/r.ini");
	cfg_free(c);
}

Test(config, absolute_paths_kept)
{
	char text[PATH_MAX * 3];
	struct cfg *c;

	snprintf(text, sizeof(text), "[relay]\ncert = %s/certs/relay.crt\n"
		 "key = %s/certs/relay.key\nca = %s/certs/ca.crt\n", tmp, tmp, tmp);
	c = cfg_load_string(text, "elsewhere.ini", CFG_RELAY, err, sizeof(err));
	cr_assert_not_null(c, "%s", err);
	cr_assert_str_eq(c->file, "elsewhere.ini");
	cr_assert(strncmp(c->cert, tmp, strlen(tmp)) == 0);
	cfg_free(c);
}

Test(config, missing_config_file)
{
	char path[PATH_MAX * 2];

	in_tmp(path, sizeof(path), "absent.ini");
	cr_assert_null(cfg_load(path, CFG_RELAY, err, sizeof(err)));
	cr_assert(strncmp(err, path, strlen(path)) == 0, "%s", err);
	cr_assert(strstr(err, strerror(ENOENT)), "%s", err);
}

Test(config, config_file_is_a_directory)
{
	cr_assert_null(cfg_load(tmp, CFG_RELAY, err, sizeof(err)));
	cr_assert(strncmp(err, tmp, strlen(tmp)) == 0, "%s", err);
	cr_assert(strstr(err, "cannot read"), "%s", err);
}

Test(config, null_and_small_error_buffers)
{
	char small[12];

	cfg_free(NULL);
	cr_assert_null(cfg_service_find(NULL, "x"));
	cr_assert_null(cfg_peer_find(NULL, "x"));
	cr_assert_null(cfg_load_string("[x]\n", name, CFG_RELAY, NULL, 0));
	cr_assert_null(cfg_load_string("[x]\n", name, CFG_RELAY, small, sizeof(small)));
	cr_assert_eq(strlen(small), sizeof(small) - 1);
	cr_assert_null(cfg_load_string("[relay]\n", name, 7, err, sizeof(err)));
	cr_assert(strstr(err, "unknown role"), "%s", err);
}

Test(config, link_budget)
{
	struct cfg *c = load("[relay]\ntls = off\nlink_budget = off\n", CFG_RELAY);

	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(c->link_budget, CFG_LINK_BUDGET_OFF);
	cfg_free(c);
	c = load("[gateway]\ntls = off\nrelay = 127.0.0.1:7400\nlink_budget = auto\n"
		 GW_SVC, CFG_GATEWAY);
	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(c->link_budget, CFG_LINK_BUDGET_AUTO);
	cfg_free(c);
	c = load("[gateway]\ntls = off\nrelay = 127.0.0.1:7400\nlink_budget = off\n"
		 GW_SVC, CFG_GATEWAY);
	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(c->link_budget, CFG_LINK_BUDGET_OFF);
	cfg_free(c);
	expect_fail("[relay]\ntls = off\nlink_budget = 64k\n", CFG_RELAY, 3,
		    "link_budget", "'64k' is not a valid value", "auto");
	expect_fail("[relay]\ntls = off\n[peer a]\nlink_budget = off\n", CFG_RELAY, 4,
		    "link_budget", "not valid in a [peer] section", NULL);
	expect_fail("[gateway]\ntls = off\nrelay = 127.0.0.1:7400\n"
		    "[service s]\nlisten = 7401\nlink_budget = off\n", CFG_GATEWAY, 6,
		    "link_budget", NULL, NULL);
}

Test(config, tls_first)
{
	struct cfg *c = load("[relay]\n" RELAY_FILES, CFG_RELAY);

	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(c->tls_first, 0, "the relay refuses TLS-first links by default");
	cfg_free(c);
	c = load("[relay]\n" RELAY_FILES "tls_first = allow\n", CFG_RELAY);
	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(c->tls_first, 1);
	cfg_free(c);
	/* Loads: the relay refuses such links at run time, with a warning. */
	c = load("[relay]\ntls = off\ntls_first = allow\n", CFG_RELAY);
	cr_assert_not_null(c, "%s", err);
	cfg_free(c);
	c = load(GW_BASE GW_SVC, CFG_GATEWAY);
	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(c->tls_first, 0, "the gateway negotiates first by default");
	cfg_free(c);
	c = load(GW_BASE "tls_first = yes\n" GW_SVC
		 "[peer relay2]\ntls_first = no\n[peer relay3]\n", CFG_GATEWAY);
	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(c->tls_first, 1);
	cr_assert_eq(cfg_peer_find(c, "relay2")->tls_first, 0);
	cr_assert_eq(cfg_peer_find(c, "relay3")->tls_first, CFG_UNSET);
	cfg_free(c);
	/* Each role has its own words. */
	expect_fail("[relay]\n" RELAY_FILES "tls_first = yes\n", CFG_RELAY, 5,
		    "tls_first", "'yes' is not a valid value", "allow");
	expect_fail(GW_BASE "tls_first = allow\n" GW_SVC, CFG_GATEWAY, 4,
		    "tls_first", "'allow' is not a valid value", "yes");
	/* A dialler that starts TLS cannot be plaintext. */
	expect_fail("[gateway]\nrelay = 127.0.0.1:7400\ntls = off\n"
		    "tls_first = yes\n" GW_SVC, CFG_GATEWAY, 1, "tls_first",
		    "[gateway] dials TLS first but has tls = off", "tls_first = no");
	expect_fail(GW_BASE "tls_first = yes\n" GW_SVC "[peer old]\ntls = off\n",
		    CFG_GATEWAY, 7, "tls_first", "[peer old] dials TLS first", NULL);
	expect_fail(GW_BASE "tls = off\n" GW_SVC "[peer r]\ntls_first = yes\n",
		    CFG_GATEWAY, 7, "tls_first", "[peer r] dials TLS first", NULL);
	/* Per [peer] on the gateway only: the relay learns the partner
	 * inside TLS, too late to choose the order. */
	expect_fail("[relay]\n" RELAY_FILES "[peer gw1]\ntls_first = allow\n",
		    CFG_RELAY, 6, "tls_first", NULL, NULL);
}

/* ---- the reference ---------------------------------------------------- */

Test(config, reference_matches_docs)
{
	char path[PATH_MAX * 2];
	char *ref = NULL, *doc, *line, *save = NULL;
	size_t reflen = 0, rows = 0;
	FILE *f = open_memstream(&ref, &reflen);

	cr_assert_not_null(f);
	cfg_write_reference(f);
	fclose(f);
	snprintf(path, sizeof(path), "%s/docs/CONFIG.md", source_dir());
	doc = slurp(path);
	cr_assert(strstr(ref, "### [service NAME]"));
	cr_assert(strstr(ref, "### [peer NAME]"));
	for (line = strtok_r(ref, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		char key[80];

		if (strncmp(line, "| `", 3) != 0)
			continue;
		rows++;
		cr_assert(sscanf(line, "| `%79[^`]`", key) == 1, "%s", line);
		cr_assert(strstr(doc, line),
			  "docs/CONFIG.md lacks this reference row (regenerate with cfg_write_reference):\n%s",
			  line);
	}
	cr_assert_eq(rows, 76, "the table has %zu keys", rows);
	free(doc);
	free(ref);
}

/* tlsplex.ini(5) as the build generated it (tpx-mkman) is what
 * cfg_write_manpage writes now, and has an entry for each reference row,
 * under the same section heading. */
Test(config, manpage_matches_reference)
{
	const char *bd = getenv("TLSPLEX_BUILD_DIR");
	char path[PATH_MAX * 2];
	char *ref = NULL, *man = NULL, *built, *line, *save = NULL;
	char section[128] = "";
	size_t reflen = 0, manlen = 0, rows = 0;
	FILE *f;

	cr_assert(bd && *bd, "TLSPLEX_BUILD_DIR is not set");
	f = open_memstream(&ref, &reflen);
	cr_assert_not_null(f);
	cfg_write_reference(f);
	fclose(f);
	f = open_memstream(&man, &manlen);
	cr_assert_not_null(f);
	cfg_write_manpage(f, "0", "2000-01-01");
	fclose(f);
	snprintf(path, sizeof(path), "%s/man/tlsplex.ini.5", bd);
	built = slurp(path);
	cr_assert_not_null(strstr(man, "\n.SH NAME"));
	cr_assert(strstr(built, strstr(man, "\n.SH NAME")),
		  "%s is stale: it differs from what cfg_write_manpage writes", path);
	cr_assert(strstr(built, ".TH TLSPLEX.INI 5 "));
	for (line = strtok_r(ref, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		char key[80], roles[16], want[256];
		const char *sec;

		if (strncmp(line, "### ", 4) == 0) {
			snprintf(section, sizeof(section), ".SS \"%s\"\n", line + 4);
			continue;
		}
		if (strncmp(line, "| `", 3) != 0)
			continue;
		rows++;
		cr_assert(sscanf(line, "| `%79[^`]` | %15[a-z] |", key, roles) == 2,
			  "%s", line);
		sec = strstr(built, section);
		cr_assert(sec, "%s lacks the heading %s", path, section);
		snprintf(want, sizeof(want), ".TP\n.BR %s \" (%s)\"\n", key, roles);
		cr_assert(strstr(sec, want), "%s lacks key %s (%s) under %s", path,
			  key, roles, section);
	}
	cr_assert_gt(rows, 0);
	free(built);
	free(man);
	free(ref);
}

/* ---- stage 1 and 3 keys: lists, limits, partners --------------------- */

static struct sockaddr_storage
sa_of(const char *addr)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (strchr(addr, ':')) {
		struct sockaddr_in6 *in6 = (void *)&ss;

		in6->sin6_family = AF_INET6;
		cr_assert_eq(inet_pton(AF_INET6, addr, &in6->sin6_addr), 1, "%s", addr);
	} else {
		struct sockaddr_in *in = (void *)&ss;

		in->sin_family = AF_INET;
		cr_assert_eq(inet_pton(AF_INET, addr, &in->sin_addr), 1, "%s", addr);
	}
	return ss;
}

static enum cfg_acl_verdict
judge(const struct cfg *c, const char *addr)
{
	struct sockaddr_storage ss = sa_of(addr);

	return cfg_acl_check(&c->allow, &c->deny, (struct sockaddr *)&ss);
}

Test(config, allow_and_deny_lists_judge_v4_v6_and_mapped)
{
	struct cfg *c = load("[relay]\ntls = off\n"
			     "allow = 10.0.0.0/8, 192.0.2.7 ,fd00::/8, 127.0.0.1\n"
			     "deny = 10.9.1.2/16\n", CFG_RELAY);
	char buf[64];

	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(c->allow.n, 4);
	cfg_cidr_format(&c->deny.net[0], buf, sizeof(buf));
	cr_assert_str_eq(buf, "10.9.0.0/16", "host bits are cleared");
	cr_assert_eq(judge(c, "10.1.2.3"), CFG_ACL_PASS);
	cr_assert_eq(judge(c, "10.9.200.1"), CFG_ACL_DENIED, "deny wins over allow");
	cr_assert_eq(judge(c, "192.0.2.7"), CFG_ACL_PASS);
	cr_assert_eq(judge(c, "192.0.2.8"), CFG_ACL_NOT_ALLOWED);
	cr_assert_eq(judge(c, "fd12::1"), CFG_ACL_PASS);
	cr_assert_eq(judge(c, "fe80::1"), CFG_ACL_NOT_ALLOWED);
	cr_assert_eq(judge(c, "::ffff:10.1.2.3"), CFG_ACL_PASS, "mapped IPv4 is IPv4");
	cr_assert_eq(judge(c, "::ffff:10.9.0.1"), CFG_ACL_DENIED);
	cfg_free(c);

	c = load("[relay]\ntls = off\n", CFG_RELAY);
	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(judge(c, "203.0.113.9"), CFG_ACL_PASS, "empty lists admit all");
	cr_assert_eq(c->max_links, 1024);
	cr_assert_eq(c->max_links_per_source, 16);
	cfg_free(c);
}

Test(config, bad_networks_are_named)
{
	expect_fail("[relay]\ntls = off\nallow = 10.0.0.0/33\n", CFG_RELAY, 3,
		    "allow", "'10.0.0.0/33' is not an address or network", "10.0.0.0/8");
	expect_fail("[relay]\ntls = off\ndeny = example.com\n", CFG_RELAY, 3,
		    "deny", "'example.com' is not an address", NULL);
	expect_fail("[relay]\ntls = off\nallow = 10.0.0.1,,10.0.0.2\n", CFG_RELAY, 3,
		    "allow", "has an empty entry", NULL);
	expect_fail("[relay]\ntls = off\nallow = ::1/129\n", CFG_RELAY, 3,
		    "allow", "not an address or network", NULL);
}

Test(config, service_lists_and_max_clients)
{
	struct cfg *c = load(GW_BASE "deny = 10.0.0.0/8\n" GW_SVC
			     "allow = 127.0.0.0/8\nmax_clients = 7\n"
			     "[service t]\nlisten = 7402\n", CFG_GATEWAY);

	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(c->services[0].allow.n, 1);
	cr_assert_eq(c->services[0].max_clients, 7);
	cr_assert_eq(c->services[1].max_clients, 4096, "the default");
	cr_assert_eq(c->deny.n, 1);
	cfg_free(c);
	expect_fail(GW_BASE GW_SVC "max_clients = 0\n", CFG_GATEWAY, 6,
		    "max_clients", "out of range", "1 to 1000000");
	c = load("[relay]\ntls = off\n[service s]\nlisten = 7501\ngateway = gw1\n"
		 "max_clients = 3\nallow = 10.0.0.0/8\n", CFG_RELAY);
	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(c->services[0].max_clients, 3);
	cr_assert_eq(c->services[0].allow.n, 1);
	cfg_free(c);
}

Test(config, partners_and_templates)
{
	struct cfg *c = load("[relay]\ntls = off\nstate_file = state\n" RELAY_FILES
			     "[service a]\nbackend = h:1\n[service b]\nbackend = h:2\n"
			     "client_cert = require\n"
			     "[peer gw1]\nidentity = gw1.example, spiffe://x/gw/*\n"
			     "services = a\nmax_streams = 9\ntls_sticky = yes\n"
			     "[template east]\nmatch_name = gw-e*\nmatch_source = 10.1.0.0/16\n"
			     "tls = require\n"
			     "[template anyone]\n", CFG_RELAY);
	const struct cfg_peer *p, *t;

	cr_assert_not_null(c, "%s", err);
	p = cfg_peer_find(c, "gw1");
	cr_assert_not_null(p);
	cr_assert_str_eq(p->identity, "gw1.example,spiffe://x/gw/*");
	cr_assert(cfg_list_has(p->services, "a") && !cfg_list_has(p->services, "b"));
	cr_assert_eq(p->max_streams, 9);
	cr_assert_eq(p->tls_sticky, 1);
	cr_assert_eq(c->n_templates, 2);
	t = cfg_template_find(c, "east");
	cr_assert_not_null(t);
	cr_assert_eq(t->tls, TLS_MODE_REQUIRE);
	cr_assert_eq(t->tls_sticky, CFG_UNSET);
	cr_assert_eq(t->any, 0);
	cr_assert_eq(cfg_template_find(c, "anyone")->any, 1,
		     "a template without conditions admits anyone");
	cr_assert_eq(c->services[1].client_cert, CERT_WANT_REQUIRE);
	cr_assert_eq(c->services[0].client_cert, CFG_UNSET);
	cr_assert_null(cfg_peer_find(c, "east"), "templates are not peers");
	cfg_free(c);
}

Test(config, partner_errors_are_named)
{
	expect_fail("[relay]\ntls = off\n[peer g]\nservices = nope\n", CFG_RELAY, 3,
		    "services", "names service 'nope'", NULL);
	expect_fail("[relay]\ntls = off\n[peer g]\ntls_sticky = yes\n", CFG_RELAY, 1,
		    "state_file", "[peer g] sets tls_sticky = yes", NULL);
	expect_fail("[relay]\ntls = off\ntls_sticky = yes\n", CFG_RELAY, 1,
		    "state_file", "missing key", NULL);
	expect_fail("[relay]\ntls = off\n[template t]\nmatch_issuer = *CA*\ntls = allow\n",
		    CFG_RELAY, 3, "match_issuer", "without TLS or without a certificate", NULL);
	expect_fail("[relay]\ntls = off\n[template t]\n[template t]\n", CFG_RELAY, 4,
		    NULL, "'[template t]' repeats the one at line 3", NULL);
	expect_fail("[relay]\ntls = off\n[peer g]\nidentity = a b\n", CFG_RELAY, 4,
		    "identity", "'a b' is not a valid entry", NULL);
	expect_fail("[relay]\ntls = off\n[peer g]\nmatch_name = x\n", CFG_RELAY, 4,
		    "match_name", "unknown key in a [peer] section", NULL);
	expect_fail("[relay]\ntls = off\n[template t]\nmin_tls = 1.3\nmax_tls = 1.2\n",
		    CFG_RELAY, 3, "min_tls", "[template t]", NULL);
}

Test(config, metrics_and_summary_keys)
{
	struct cfg *c = load("[relay]\ntls = off\n", CFG_RELAY);

	cr_assert_not_null(c, "%s", err);
	cr_assert_str_eq(c->metrics_listen, "", "off by default");
	cr_assert_eq(c->metrics_allow.n, 2, "loopback only by default");
	cr_assert_eq(c->summary_interval_ms, 0, "off by default");
	cfg_free(c);
	c = load("[relay]\ntls = off\nmetrics_listen = [::1]:9464\n"
		 "metrics_allow =\nsummary_interval = 15m\n", CFG_RELAY);
	cr_assert_not_null(c, "%s", err);
	cr_assert_str_eq(c->metrics_listen, "[::1]:9464");
	cr_assert_eq(c->metrics_allow.n, 0);
	cr_assert_eq(c->summary_interval_ms, 900000);
	cfg_free(c);
	expect_fail("[gateway]\nrelay = h:1\ntls = off\nmetrics_listen = 9464\n",
		    CFG_GATEWAY, 4, "metrics_listen", "has no port", NULL);
	expect_fail("[relay]\ntls = off\nsummary_interval = 500ms\n", CFG_RELAY, 3,
		    "summary_interval", "out of range", NULL);
	expect_fail("[relay]\ntls = off\nsummary_interval = 25h\n", CFG_RELAY, 3,
		    "summary_interval", "out of range", NULL);
	expect_fail("[relay]\ntls = off\nmetrics_allow = 10.0.0.0/33\n", CFG_RELAY,
		    3, "metrics_allow", "not an address or network", NULL);
}

/* ---- the hook sinks' keys --------------------------------------------- */

Test(config, hook_sink_keys)
{
	const char *h = "[relay]\ntls = off\n";
	struct cfg *c;

	c = load("[relay]\ntls = off\n", CFG_RELAY);
	cr_assert_not_null(c, "%s", err);
	cr_assert_str_eq(c->hook_socket, "");
	cr_assert_str_eq(c->hook_socket_events, "all");
	cr_assert_str_eq(c->hook_command_events, "handshake_pending");
	cr_assert_eq(c->hook_command_timeout_ms, 2000);
	cr_assert_eq(c->hook_command_max, 4);
	cr_assert_eq(c->hook_command_veto, 0);
	cr_assert_eq(c->hook_command_on_timeout, CFG_HOOK_TIMEOUT_PROCEED);
	cr_assert_eq(c->hook_syslog, CFG_HOOK_SYSLOG_OFF);
	cr_assert_eq(c->hook_syslog_facility, 3);
	cr_assert_str_eq(c->hook_syslog_ident, "tlsplex-relay");
	cr_assert_str_eq(c->hook_syslog_socket, "/dev/log");
	cfg_free(c);
	c = load("[relay]\ntls = off\nhook_socket = /run/x.sock\n"
		 "hook_socket_events = link_closed, link_refused\n"
		 "hook_command = /bin/true\nhook_command_veto = yes\n"
		 "hook_command_timeout = 500ms\nhook_command_on_timeout = veto\n"
		 "hook_syslog = rfc5424\nhook_syslog_facility = local3\n"
		 "hook_syslog_ident = tpx\n", CFG_RELAY);
	cr_assert_not_null(c, "%s", err);
	cr_assert_str_eq(c->hook_socket_events, "link_closed,link_refused");
	cr_assert_eq(c->hook_command_veto, 1);
	cr_assert_eq(c->hook_command_on_timeout, CFG_HOOK_TIMEOUT_VETO);
	cr_assert_eq(c->hook_syslog, CFG_HOOK_SYSLOG_RFC5424);
	cr_assert_eq(c->hook_syslog_facility, 19);
	cr_assert_str_eq(c->hook_syslog_ident, "tpx");
	cfg_free(c);
	c = load(GW_BASE "tls = off\n" GW_SVC, CFG_GATEWAY);
	cr_assert_not_null(c, "%s", err);
	cr_assert_str_eq(c->hook_syslog_ident, "tlsplex-gateway");
	cfg_free(c);

	expect_fail("[relay]\ntls = off\nhook_command = bin/true\n", CFG_RELAY,
		    3, "hook_command", "not an absolute path", NULL);
	expect_fail("[relay]\ntls = off\nhook_command = /nonexistent/notify\n",
		    CFG_RELAY, 3, "hook_command", "cannot find", NULL);
	expect_fail("[relay]\ntls = off\nhook_command = /etc/passwd\n", CFG_RELAY,
		    3, "hook_command", "not an executable", NULL);
	expect_fail("[relay]\ntls = off\nhook_command = /tmp\n", CFG_RELAY,
		    3, "hook_command", "not an executable", NULL);
	expect_fail("[relay]\ntls = off\nhook_command_veto = yes\n", CFG_RELAY,
		    3, "hook_command_veto", "needs a command", NULL);
	expect_fail("[relay]\ntls = off\nhook_command = /bin/true\n"
		    "hook_command_events = link_closed\nhook_command_veto = yes\n",
		    CFG_RELAY, 5, "hook_command_veto", "leaves out", NULL);
	expect_fail("[relay]\ntls = off\nhook_command = /bin/true\n"
		    "hook_command_veto = yes\nhandshake_timeout = 2s\n",
		    CFG_RELAY, 1, "hook_command_timeout", "not below handshake_timeout",
		    NULL);
	expect_fail("[relay]\ntls = off\nhook_command_timeout = 61s\n", CFG_RELAY,
		    3, "hook_command_timeout", "out of range", "from 100ms to 1m");
	expect_fail("[relay]\ntls = off\nhook_command_max = 0\n", CFG_RELAY,
		    3, "hook_command_max", "out of range", "from 1 to 256");
	expect_fail("[relay]\ntls = off\nhook_socket = /tmp/"
		    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.sock\n", CFG_RELAY,
		    3, "hook_socket", "longer than the 107 bytes", NULL);
	expect_fail("[relay]\ntls = off\nhook_socket_events = link closed\n",
		    CFG_RELAY, 3, "hook_socket_events", "not a valid entry", NULL);
	expect_fail("[relay]\ntls = off\nhook_syslog = yes\n", CFG_RELAY, 3,
		    "hook_syslog", "not a valid value", "off, json, rfc5424");
	expect_fail("[relay]\ntls = off\nhook_syslog_facility = kern\n",
		    CFG_RELAY, 3, "hook_syslog_facility", "not a valid value",
		    "local7");
	expect_fail("[relay]\ntls = off\nhook_syslog_ident = "
		    "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghij\n",
		    CFG_RELAY, 3, "hook_syslog_ident", "longer than 48", NULL);
	(void)h;
}

/* ---- relay lists, drain and tls = verify ------------------------------ */

Test(config, relay_list_ordered_spread_and_failback)
{
	struct cfg *c = load(GW_BASE GW_SVC, CFG_GATEWAY);

	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(c->n_relays, 1);
	cr_assert_str_eq(c->relays[0].addr, "127.0.0.1:7400");
	cr_assert_str_eq(c->relays[0].server_name, "127.0.0.1");
	cr_assert_eq(c->relay_order, CFG_RELAY_ORDERED);
	cr_assert_eq(c->relay_failback_ms, 0);
	cr_assert_eq(c->relay_links, 1);
	cr_assert_eq(c->drain_timeout_ms, 10000);
	cfg_free(c);

	c = load("[gateway]\nrelay = a.example:7400 , [::1]:7401,b.example:9\n"
		 "ca = certs/ca.crt\nrelay_order = spread\n"
		 "relay_failback = 30s\ndrain_timeout = 0\nrelay_links = 16\n"
		 GW_SVC, CFG_GATEWAY);
	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(c->n_relays, 3);
	cr_assert_str_eq(c->relay, "a.example:7400, [::1]:7401, b.example:9");
	cr_assert_str_eq(c->relays[1].addr, "[::1]:7401");
	/* Unset server_name: each relay's own host. */
	cr_assert_str_eq(c->server_name, "a.example");
	cr_assert_str_eq(c->relays[0].server_name, "a.example");
	cr_assert_str_eq(c->relays[1].server_name, "::1");
	cr_assert_str_eq(c->relays[2].server_name, "b.example");
	cr_assert_eq(c->relay_order, CFG_RELAY_SPREAD);
	cr_assert_eq(c->relay_failback_ms, 30000);
	cr_assert_eq(c->relay_links, 16);
	cr_assert_eq(c->drain_timeout_ms, 0);
	cfg_free(c);

	/* A server_name that is set applies to every relay. */
	c = load("[gateway]\nrelay = a.example:1, b.example:2\nserver_name = r\n"
		 "ca = certs/ca.crt\nrelay_failback = off\n" GW_SVC, CFG_GATEWAY);
	cr_assert_not_null(c, "%s", err);
	cr_assert_str_eq(c->relays[0].server_name, "r");
	cr_assert_str_eq(c->relays[1].server_name, "r");
	cr_assert_eq(c->relay_failback_ms, 0);
	cfg_free(c);
}

Test(config, bad_relay_lists_are_named)
{
	expect_fail("[gateway]\nrelay = a:1,,b:2\nca = certs/ca.crt\n" GW_SVC,
		    CFG_GATEWAY, 2, "relay", "empty entry", NULL);
	expect_fail("[gateway]\nrelay = a:1, a:1\nca = certs/ca.crt\n" GW_SVC,
		    CFG_GATEWAY, 2, "relay", "'a:1' is listed twice", NULL);
	expect_fail("[gateway]\nrelay = a:1, b\nca = certs/ca.crt\n" GW_SVC,
		    CFG_GATEWAY, 2, "relay", "'b' has no port", NULL);
	expect_fail("[gateway]\nrelay = a:1,b:1,c:1,d:1,e:1,f:1,g:1,h:1,i:1\n"
		    "ca = certs/ca.crt\n" GW_SVC,
		    CFG_GATEWAY, 2, "relay", "more than 8", NULL);
	expect_fail("[gateway]\nrelay = a:1\nrelay_order = random\n"
		    "ca = certs/ca.crt\n" GW_SVC,
		    CFG_GATEWAY, 3, "relay_order", "ordered, spread", NULL);
	expect_fail("[gateway]\nrelay = a:1\nrelay_failback = 50ms\n"
		    "ca = certs/ca.crt\n" GW_SVC,
		    CFG_GATEWAY, 3, "relay_failback", "out of range", NULL);
	expect_fail("[gateway]\nrelay = a:1\nrelay_links = 17\n"
		    "ca = certs/ca.crt\n" GW_SVC,
		    CFG_GATEWAY, 3, "relay_links", "out of range", "1 to 16");
	expect_fail("[relay]\n" RELAY_FILES "relay_order = spread\n",
		    CFG_RELAY, 5, "relay_order", NULL, NULL);
}

Test(config, verify_is_require_with_a_client_certificate)
{
	struct cfg *c;

	c = load("[relay]\n" RELAY_FILES "tls = verify\n"
		 "[service s]\nbackend = 127.0.0.1:1\ntls = verify\n"
		 "[peer p]\ntls = verify\n[peer q]\ntls = require\n",
		 CFG_RELAY);
	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(c->tls, CFG_TLS_VERIFY);
	cr_assert_eq(cfg_tls_wire(c->tls), TLS_MODE_REQUIRE);
	cr_assert_str_eq(cfg_tls_name(c->tls), "verify");
	cr_assert_eq(c->client_cert, CERT_WANT_REQUIRE);
	cr_assert_eq(c->services[0].client_cert, CERT_WANT_REQUIRE);
	cr_assert_eq(c->peers[0].client_cert, CERT_WANT_REQUIRE);
	cr_assert_eq(c->peers[1].client_cert, CFG_UNSET);
	cfg_free(c);
	for (int m = TLS_MODE_OFF; m <= TLS_MODE_REQUIRE; m++)
		cr_assert_eq(cfg_tls_wire(m), m);

	/* verify beside a weaker client_cert is a contradiction. */
	expect_fail("[relay]\n" RELAY_FILES "tls = verify\nclient_cert = optional\n",
		    CFG_RELAY, 6, "client_cert", "'optional' in [relay], which sets tls = verify",
		    NULL);
	expect_fail("[relay]\n" RELAY_FILES "[peer p]\ntls = verify\nclient_cert = none\n",
		    CFG_RELAY, 5, "client_cert", "[peer p]", NULL);

	/* The gateway: verify is require, nothing else changes. */
	c = load(GW_BASE "tls = verify\n" GW_SVC, CFG_GATEWAY);
	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(cfg_tls_wire(c->tls), TLS_MODE_REQUIRE);
	cfg_free(c);
}

/* Reverse services: a relay service that listens names its gateway; a
 * gateway service with a backend is what the relay may open; each has
 * listen or backend, never both, and the listener keys need a listener. */
Test(config, reverse_services)
{
	struct cfg *c = load("[relay]\ntls = off\n"
			     "[service fwd]\nbackend = 127.0.0.1:7500\n"
			     "[service rev]\nlisten = 7600\ngateway = gw1\n"
			     "tls = off\nmax_clients = 5\ndeny = 10.0.0.0/8\n",
			     CFG_RELAY);

	cr_assert_not_null(c, "%s", err);
	cr_assert(!cfg_service_reverse(c, cfg_service_find(c, "fwd")));
	cr_assert(cfg_service_reverse(c, cfg_service_find(c, "rev")));
	cr_assert_str_eq(cfg_service_find(c, "rev")->listen, "127.0.0.1:7600");
	cr_assert_str_eq(cfg_service_find(c, "rev")->gateway, "gw1");
	cr_assert_eq(cfg_service_find(c, "rev")->max_clients, 5);
	cr_assert_eq(cfg_reverse_count(c), 1);
	cfg_free(c);

	c = load(GW_BASE "tls = off\n[service rev]\nbackend = 127.0.0.1:7700\n",
		 CFG_GATEWAY);
	cr_assert_not_null(c, "a gateway with only a reverse service: %s", err);
	cr_assert(cfg_service_reverse(c, &c->services[0]));
	cr_assert_eq(cfg_reverse_count(c), 1);
	cfg_free(c);
	c = load(GW_BASE "tls = off\n" GW_SVC, CFG_GATEWAY);
	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(cfg_reverse_count(c), 0);
	cfg_free(c);

	expect_fail("[relay]\ntls = off\n[service r]\nlisten = 7600\n", CFG_RELAY,
		    3, "gateway", "missing key in [service r], which listens",
		    "node name of the gateway");
	expect_fail("[relay]\ntls = off\n[service r]\nbackend = h:1\ngateway = gw1\n",
		    CFG_RELAY, 3, "gateway", "names a gateway but has no listen", NULL);
	expect_fail("[relay]\ntls = off\n[service r]\nlisten = 7600\nbackend = h:1\n"
		    "gateway = gw1\n", CFG_RELAY, 3, "backend",
		    "sets both listen and backend", "listen for a service whose "
		    "clients connect to this relay");
	expect_fail(GW_BASE "tls = off\n[service r]\nlisten = 7600\nbackend = h:1\n",
		    CFG_GATEWAY, 5, "backend", "sets both listen and backend",
		    "backend for one whose streams the relay opens");
	expect_fail("[relay]\ntls = off\n[service r]\ntls = off\n", CFG_RELAY, 3,
		    "backend", "missing key in [service r]", "listen, for a reverse service");
	expect_fail(GW_BASE "tls = off\n[service r]\ntls = off\n", CFG_GATEWAY, 5,
		    "listen", "missing key in [service r]", "backend, for a reverse service");
	expect_fail("[relay]\ntls = off\n[service r]\nbackend = h:1\nallow = 10.0.0.1\n",
		    CFG_RELAY, 3, "allow", "has no listener", NULL);
	expect_fail(GW_BASE "tls = off\n[service r]\nbackend = h:1\ndeny = 10.0.0.1\n",
		    CFG_GATEWAY, 5, "deny", "has no listener", NULL);
	expect_fail("[relay]\ntls = off\nlisten = 127.0.0.1:7400\n[service r]\n"
		    "listen = 7400\ngateway = gw1\n", CFG_RELAY, 4, "listen",
		    "the relay's link address", NULL);
	expect_fail("[relay]\ntls = off\n[service a]\nlisten = 7600\ngateway = g\n"
		    "[service b]\nlisten = 127.0.0.1:7600\ngateway = g\n", CFG_RELAY,
		    6, "listen", "like [service a] (line 3)", NULL);
	expect_fail("[relay]\ntls = off\n[service a]\nlisten = 7600\ngateway = bad name\n",
		    CFG_RELAY, 5, "gateway", NULL, NULL);
}
