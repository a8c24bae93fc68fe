/*
 * Partner policy and the reload transaction, in-process: configurations
 * are loaded from text, partners resolved and their rules asked; no
 * socket is opened and no daemon started.  Each test gets a temporary
 * directory with dummy certificate files (only their paths are checked
 * at load).
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
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "harness.h"
#include "daemon.h"
#include "log.h"
#include "neg.h"
#include "partner.h"
#include "reload.h"

static char tmp[512];
static char name[PATH_MAX];
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
	char t[] = "/tmp/tpx-partner.XXXXXX";
	char path[PATH_MAX * 2], *real;

	cr_assert_not_null(mkdtemp(t));
	real = realpath(t, NULL);
	cr_assert_not_null(real);
	cr_assert_lt(strlen(real), sizeof(tmp));
	strcpy(tmp, real);
	free(real);
	snprintf(name, sizeof(name), "%s/t.ini", tmp);
	snprintf(path, sizeof(path), "%s/certs", tmp);
	cr_assert_eq(mkdir(path, 0700), 0);
	put_file("certs/ca.crt", "dummy\n");
	put_file("certs/relay.crt", "dummy\n");
	put_file("certs/relay.key", "dummy\n");
	log_init("test_partner", LOG_ERR);
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
	nftw(tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(partner, .init = setup, .fini = teardown);

static struct cfg *
load(const char *text, int role)
{
	struct cfg *c = cfg_load_string(text, name, role, err, sizeof(err));

	cr_assert_not_null(c, "%s", err);
	return c;
}

#define RELAY_HEAD "[relay]\nlisten = 127.0.0.1:1\n" \
	"cert = certs/relay.crt\nkey = certs/relay.key\nca = certs/ca.crt\n"

static const char relay_conf[] =
	RELAY_HEAD
	"tls = prefer\nmin_tls = 1.2\nmax_tls = 1.3\nclient_cert = optional\n"
	"max_streams = 100\ntls_sticky = yes\nstate_file = sticky.state\n"
	"[service a]\nbackend = 127.0.0.1:2\n"
	"[service b]\nbackend = 127.0.0.1:3\n"
	"[peer plain]\n"
	"[peer own]\ntls = require\nmin_tls = 1.3\nclient_cert = require\n"
	"max_streams = 5\ntls_sticky = no\nidentity = own.example, *.own\n"
	"services = b\n"
	"[template east]\nmatch_name = east-*\nmatch_source = 10.1.0.0/16\n"
	"[template issued]\nmatch_name = east-*, west-*\n"
	"match_issuer = CN=Partner CA*\n"
	"[template rest]\nmatch_name = *\n";

static struct sockaddr_in
v4(const char *addr)
{
	struct sockaddr_in sin;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(40000);
	cr_assert_eq(inet_pton(AF_INET, addr, &sin.sin_addr), 1);
	return sin;
}

Test(partner, unset_keys_inherit_the_daemon_section)
{
	struct cfg *c = load(relay_conf, CFG_RELAY);
	struct partners *ps = partners_new(c);
	const struct partner *p;

	cr_assert_not_null(ps);
	p = partners_find(ps, "plain");
	cr_assert_not_null(p);
	cr_assert_str_eq(p->label, "[peer plain]");
	cr_assert_eq(p->templ, 0);
	cr_assert_eq(p->tls, TLS_MODE_PREFER);
	cr_assert_eq(p->min_tls, TLSV_1_2);
	cr_assert_eq(p->max_tls, TLSV_1_3);
	cr_assert_eq(p->client_cert, CERT_WANT_OPTIONAL);
	cr_assert_eq(p->max_streams, 100);
	cr_assert_eq(p->tls_sticky, 1);
	cr_assert_eq(p->bind_node, 1);
	cr_assert_str_empty(p->identity);
	cr_assert_str_empty(p->services);
	/* The daemon section alone resolves to the same values. */
	cr_assert_eq(ps->deflt.tls, TLS_MODE_PREFER);
	cr_assert_eq(ps->deflt.max_streams, 100);
	cr_assert_str_empty(ps->deflt.label);
	cr_assert_null(partners_find(ps, "nobody"));
	partners_free(ps);
	cfg_free(c);
}

Test(partner, keys_a_peer_sets_override_the_daemon_section)
{
	struct cfg *c = load(relay_conf, CFG_RELAY);
	struct partners *ps = partners_new(c);
	const struct partner *p = partners_find(ps, "own");

	cr_assert_not_null(p);
	cr_assert_eq(p->tls, TLS_MODE_REQUIRE);
	cr_assert_eq(p->min_tls, TLSV_1_3);
	cr_assert_eq(p->max_tls, TLSV_1_3, "max_tls is not set: inherited");
	cr_assert_eq(p->client_cert, CERT_WANT_REQUIRE);
	cr_assert_eq(p->max_streams, 5);
	cr_assert_eq(p->tls_sticky, 0);
	cr_assert_str_eq(p->services, "b");
	partners_free(ps);
	cfg_free(c);
}

Test(partner, a_template_that_checks_the_issuer_requires_tls_and_a_certificate)
{
	struct cfg *c = load(relay_conf, CFG_RELAY);
	struct partners *ps = partners_new(c);
	const struct partner *t = &ps->templ[1];

	cr_assert_str_eq(t->label, "[template issued]");
	cr_assert_eq(t->templ, 1);
	cr_assert_eq(t->tls, TLS_MODE_REQUIRE);
	cr_assert_eq(t->client_cert, CERT_WANT_REQUIRE);
	cr_assert_eq(ps->templ[0].tls, TLS_MODE_PREFER, "no issuer: inherited");
	cr_assert_eq(partner_check_issuer(t, "CN=Partner CA 2", err,
					  sizeof(err)), 0);
	cr_assert_eq(partner_check_issuer(t, "CN=Other CA", err, sizeof(err)),
		     -1);
	cr_assert(strstr(err, "'CN=Other CA'") && strstr(err, "[template issued]"),
		  "%s", err);
	cr_assert_eq(partner_check_issuer(&ps->templ[0], "anything", err,
					  sizeof(err)), 0, "no patterns: any");
	partners_free(ps);
	cfg_free(c);
}

Test(partner, peers_come_first_then_templates_in_file_order)
{
	struct cfg *c = load(relay_conf, CFG_RELAY);
	struct partners *ps = partners_new(c);
	struct sockaddr_in in = v4("10.1.2.3"), out = v4("192.0.2.1");
	const struct partner *p;

	p = partners_select(ps, "own", (struct sockaddr *)&out);
	cr_assert(p != NULL && strcmp(p->label, "[peer own]") == 0);
	/* east matches name and source; issued would too, but comes later. */
	p = partners_select(ps, "east-1", (struct sockaddr *)&in);
	cr_assert(p != NULL && strcmp(p->label, "[template east]") == 0);
	/* From elsewhere east's match_source fails: the next that holds. */
	p = partners_select(ps, "EAST-1", (struct sockaddr *)&out);
	cr_assert(p != NULL && strcmp(p->label, "[template issued]") == 0,
		  "node names match without case");
	p = partners_select(ps, "north", (struct sockaddr *)&out);
	cr_assert(p != NULL && strcmp(p->label, "[template rest]") == 0);
	cr_assert_eq(p->any, 1);
	cr_assert_eq(ps->templ[0].any, 0);
	partners_free(ps);
	cfg_free(c);
}

Test(partner, no_section_admits_an_unknown_node_without_templates)
{
	struct cfg *c = load(RELAY_HEAD "tls = off\n[peer gw1]\n", CFG_RELAY);
	struct partners *ps = partners_new(c);
	struct sockaddr_in sa = v4("127.0.0.1");

	cr_assert_null(partners_select(ps, "gw2", (struct sockaddr *)&sa));
	cr_assert_not_null(partners_select(ps, "gw1", (struct sockaddr *)&sa));
	partners_free(ps);
	cfg_free(c);
}

Test(partner, services_allowed_and_refused)
{
	struct cfg *c = load(relay_conf, CFG_RELAY);
	struct partners *ps = partners_new(c);

	cr_assert(partner_allows(partners_find(ps, "own"), "b"));
	cr_assert_not(partner_allows(partners_find(ps, "own"), "a"));
	cr_assert(partner_allows(partners_find(ps, "plain"), "a"),
		  "no services list: every service");
	cr_assert(partner_allows(partners_find(ps, "plain"), "b"));
	partners_free(ps);
	cfg_free(c);
}

Test(partner, apply_sets_our_offer_for_the_partner)
{
	struct cfg *c = load(relay_conf, CFG_RELAY);
	struct partners *ps = partners_new(c);
	struct neg_params mine;
	int client_cert = c->client_cert;

	daemon_params(c, &mine);
	cr_assert_eq(mine.tls_mode, TLS_MODE_PREFER);
	partner_apply(partners_find(ps, "own"), &mine, &client_cert);
	cr_assert_eq(mine.tls_mode, TLS_MODE_REQUIRE);
	cr_assert_eq(mine.tls_min, TLSV_1_3);
	cr_assert_eq(mine.tls_max, TLSV_1_3);
	cr_assert_eq(mine.max_streams, 5);
	cr_assert_eq(client_cert, CERT_WANT_REQUIRE);
	cr_assert_str_eq(mine.node, c->node_name, "the rest is untouched");
	cr_assert_eq(mine.window, c->window);

	daemon_params(c, &mine);
	client_cert = c->client_cert;
	partner_apply(partners_find(ps, "plain"), &mine, &client_cert);
	cr_assert_eq(mine.tls_mode, TLS_MODE_PREFER);
	cr_assert_eq(mine.tls_min, TLSV_1_2);
	cr_assert_eq(mine.max_streams, 100);
	cr_assert_eq(client_cert, CERT_WANT_OPTIONAL);
	/* client_cert NULL: only the offer changes (the gateway). */
	partner_apply(partners_find(ps, "own"), &mine, NULL);
	cr_assert_eq(mine.tls_mode, TLS_MODE_REQUIRE);
	partners_free(ps);
	cfg_free(c);
}

Test(partner, sticky_rule)
{
	struct cfg *c = load(relay_conf, CFG_RELAY);
	struct partners *ps = partners_new(c);
	const struct partner *sticky = partners_find(ps, "plain");
	const struct partner *loose = partners_find(ps, "own");
	struct neg_params offer, mine;

	memset(&offer, 0, sizeof(offer));
	daemon_params(c, &mine);
	offer.tls_mode = TLS_MODE_OFF;
	cr_assert_eq(partner_sticky_rule(loose, 1, &offer, &mine),
		     PARTNER_STICKY_NONE, "tls_sticky = no in the peer");
	cr_assert_eq(partner_sticky_rule(sticky, 0, &offer, &mine),
		     PARTNER_STICKY_NONE, "not remembered");
	cr_assert_eq(mine.tls_mode, TLS_MODE_PREFER);
	cr_assert_eq(partner_sticky_rule(sticky, 1, &offer, &mine),
		     PARTNER_STICKY_REFUSE);
	offer.tls_mode = TLS_MODE_ALLOW;
	cr_assert_eq(partner_sticky_rule(sticky, 1, &offer, &mine),
		     PARTNER_STICKY_RAISE);
	cr_assert_eq(mine.tls_mode, TLS_MODE_REQUIRE);
	cr_assert_eq(partner_sticky_rule(sticky, 1, &offer, &mine),
		     PARTNER_STICKY_NONE, "already required");
	/* The dialer has no offer yet: it raises its own. */
	daemon_params(c, &mine);
	cr_assert_eq(partner_sticky_rule(sticky, 1, NULL, &mine),
		     PARTNER_STICKY_RAISE);
	cr_assert_eq(mine.tls_mode, TLS_MODE_REQUIRE);
	partners_free(ps);
	cfg_free(c);
}

Test(partner, identity_patterns)
{
	struct cfg *c = load(relay_conf, CFG_RELAY);
	struct partners *ps = partners_new(c);
	char buf[CFG_LIST_MAX];
	const char *pat[8];
	size_t n;

	n = partner_identity_patterns(partners_find(ps, "plain"), "plain", buf,
				      sizeof(buf), pat, 8);
	cr_assert_eq(n, 1, "no identity on the relay: the node name");
	cr_assert_str_eq(pat[0], "plain");
	n = partner_identity_patterns(partners_find(ps, "own"), "own", buf,
				      sizeof(buf), pat, 8);
	cr_assert_eq(n, 2);
	cr_assert_str_eq(pat[0], "own.example");
	cr_assert_str_eq(pat[1], "*.own");
	partners_free(ps);
	cfg_free(c);
}

#define GW_HEAD "[gateway]\nrelay = 127.0.0.1:7400\nserver_name = relay1\n" \
	"ca = certs/ca.crt\ntls = allow\nmax_streams = 50\n"
#define GW_SVC "[service s]\nlisten = 127.0.0.1:7401\n"

Test(partner, the_gateway_partner_is_the_peer_named_after_the_relay)
{
	struct cfg *c = load(GW_HEAD GW_SVC
			     "[peer relay1]\ntls = require\nidentity = r.example\n"
			     "[peer other]\ntls = off\n", CFG_GATEWAY);
	struct partners *ps = partners_new(c);
	const struct partner *p = partners_find(ps, c->server_name);
	char buf[CFG_LIST_MAX];
	const char *pat[4];

	cr_assert_not_null(p);
	cr_assert_eq(p->tls, TLS_MODE_REQUIRE);
	cr_assert_eq(p->bind_node, 0);
	cr_assert_eq(p->max_streams, 50);
	cr_assert_eq(partner_identity_patterns(p, "relay1", buf, sizeof(buf),
					       pat, 4), 1);
	cr_assert_str_eq(pat[0], "r.example");
	/* No identity on the gateway: server_name alone binds the relay. */
	cr_assert_eq(partner_identity_patterns(&ps->deflt, "relay1", buf,
					       sizeof(buf), pat, 4), 0);
	cr_assert_eq(ps->deflt.tls, TLS_MODE_ALLOW);
	partners_free(ps);
	cfg_free(c);
}

/* ---- the reload transaction -------------------------------------------- */

struct calls {
	int stage, abandon, commit;
	int stage_rc;
	struct cfg *committed_old;
};

static int
t_stage(void *ud, const struct daemon_conf *next)
{
	struct calls *k = ud;

	k->stage++;
	return k->stage_rc;
}

static void
t_abandon(void *ud, const struct daemon_conf *next)
{
	((struct calls *)ud)->abandon++;
}

static void
t_commit(void *ud, const struct daemon_conf *cur,
	 const struct daemon_conf *old)
{
	struct calls *k = ud;

	k->commit++;
	k->committed_old = old->cfg;
	cr_assert_neq(cur->cfg, old->cfg);
	cr_assert_not_null(cur->partners);
}

static const struct daemon_reload_ops t_ops = {
	.stage = t_stage, .abandon = t_abandon, .commit = t_commit,
};

#define PLAIN_RELAY "[relay]\nlisten = 127.0.0.1:1\ntls = off\n"

/* A running configuration as a daemon starts with, from file name. */
static void
boot(struct daemon_opts *o, struct daemon_conf *cur)
{
	struct cfg *c;

	o->config = name;
	c = daemon_load("test_partner", CFG_RELAY, o);
	cr_assert_not_null(c);
	cr_assert_eq(daemon_conf_build(c, NULL, cur), 0);
	cr_assert_null(cur->tls, "tls = off and no cert: no context");
}

Test(partner, reload_commits_and_keeps_the_verbosity_of_the_command_line)
{
	struct daemon_opts o = { .verbose = 2 };
	struct daemon_conf cur;
	struct calls k = { 0 };
	struct cfg *before;

	put_file("t.ini", PLAIN_RELAY "log_level = error\n");
	boot(&o, &cur);
	cr_assert_eq(log_get_level(), LOG_INFO, "error raised by -vv");
	put_file("t.ini", PLAIN_RELAY "log_level = warn\n[peer gw1]\n");
	before = cur.cfg;
	cr_assert_eq(daemon_reload(&cur, &o, CFG_RELAY, &t_ops, &k), 0);
	cr_assert_eq(k.stage, 1);
	cr_assert_eq(k.commit, 1);
	cr_assert_eq(k.abandon, 0);
	cr_assert_eq(k.committed_old, before);
	cr_assert_eq(log_get_level(), LOG_DEBUG, "warn raised by -vv");
	cr_assert_not_null(partners_find(cur.partners, "gw1"),
			   "partners are resolved from the new file");
	daemon_conf_free(&cur, NULL);
}

Test(partner, reload_of_a_bad_file_changes_nothing)
{
	struct daemon_opts o = { .verbose = 1 };
	struct daemon_conf cur, saved;
	struct calls k = { 0 };

	put_file("t.ini", PLAIN_RELAY "log_level = warn\n");
	boot(&o, &cur);
	saved = cur;
	put_file("t.ini", PLAIN_RELAY "bogus = 1\n");
	cr_assert_eq(daemon_reload(&cur, &o, CFG_RELAY, &t_ops, &k), -1);
	cr_assert_eq(k.stage + k.commit + k.abandon, 0);
	cr_assert(memcmp(&cur, &saved, sizeof(cur)) == 0);
	cr_assert_eq(log_get_level(), LOG_INFO);
	daemon_conf_free(&cur, NULL);
}

Test(partner, reload_rolls_back_when_the_daemon_cannot_stage)
{
	struct daemon_opts o = { 0 };
	struct daemon_conf cur, saved;
	struct calls k = { .stage_rc = -1 };

	put_file("t.ini", PLAIN_RELAY);
	boot(&o, &cur);
	saved = cur;
	put_file("t.ini", PLAIN_RELAY "log_level = debug\n");
	cr_assert_eq(daemon_reload(&cur, &o, CFG_RELAY, &t_ops, &k), -1);
	cr_assert_eq(k.stage, 1);
	cr_assert_eq(k.abandon, 0, "nothing was staged");
	cr_assert_eq(k.commit, 0);
	cr_assert(memcmp(&cur, &saved, sizeof(cur)) == 0);
	cr_assert_eq(log_get_level(), LOG_INFO, "the running level stays");
	daemon_conf_free(&cur, NULL);
}

Test(partner, reload_abandons_what_it_staged_when_the_hook_file_fails)
{
	struct daemon_opts o = { 0 };
	struct daemon_conf cur, saved;
	struct calls k = { 0 };
	char text[PATH_MAX + 200];

	put_file("t.ini", PLAIN_RELAY);
	boot(&o, &cur);
	saved = cur;
	/* A link into a directory that does not exist passes the load and
	 * cannot be opened. */
	snprintf(text, sizeof(text), "%s/hook", tmp);
	cr_assert_eq(symlink("/nonexistent-tpx/hook.jsonl", text), 0);
	snprintf(text, sizeof(text), PLAIN_RELAY "hook_file = %s/hook\n", tmp);
	put_file("t.ini", text);
	cr_assert_eq(daemon_reload(&cur, &o, CFG_RELAY, &t_ops, &k), -1);
	cr_assert_eq(k.stage, 1);
	cr_assert_eq(k.abandon, 1);
	cr_assert_eq(k.commit, 0);
	cr_assert(memcmp(&cur, &saved, sizeof(cur)) == 0);
	daemon_conf_free(&cur, NULL);
}

Test(partner, the_tls_context_question_has_one_answer)
{
	struct cfg *c;

	c = load(PLAIN_RELAY, CFG_RELAY);
	cr_assert_not(daemon_needs_tls(c));
	cfg_free(c);
	c = load(RELAY_HEAD "tls = off\n", CFG_RELAY);
	cr_assert(daemon_needs_tls(c), "a relay with a certificate");
	cfg_free(c);
	c = load("[gateway]\nrelay = 127.0.0.1:7400\ntls = off\n" GW_SVC,
		 CFG_GATEWAY);
	cr_assert_not(daemon_needs_tls(c));
	cfg_free(c);
	c = load(GW_HEAD GW_SVC, CFG_GATEWAY);
	cr_assert(daemon_needs_tls(c), "a gateway that may use TLS");
	cfg_free(c);
}

Test(partner, verify_refuses_an_offer_without_a_certificate)
{
	struct cfg *c = load(RELAY_HEAD "tls = verify\n"
			     "[service a]\nbackend = 127.0.0.1:2\n"
			     "[peer v]\n[peer r]\ntls = require\n"
			     "client_cert = optional\n", CFG_RELAY);
	struct partners *ps = partners_new(c);
	const struct partner *v, *r;
	struct neg_params offer, mine;
	uint16_t reason = 0;
	char text[256];
	int cc = -1;

	cr_assert_not_null(ps);
	v = partners_find(ps, "v");
	r = partners_find(ps, "r");
	cr_assert(v->verify && !r->verify);
	cr_assert(ps->deflt.verify);
	/* On the wire verify is require. */
	memset(&mine, 0, sizeof(mine));
	partner_apply(v, &mine, &cc);
	cr_assert_eq(mine.tls_mode, TLS_MODE_REQUIRE);
	cr_assert_eq(cc, CERT_WANT_REQUIRE);
	memset(&offer, 0, sizeof(offer));
	snprintf(offer.node, sizeof(offer.node), "v");
	offer.tls_mode = TLS_MODE_REQUIRE;
	cr_assert_eq(partner_check_offer(v, &offer, &reason, text,
					 sizeof(text)), -1);
	cr_assert_eq(reason, NEG_R_CERT_REQUIRED);
	cr_assert(strstr(text, "tls = verify"), "%s", text);
	cr_assert(strstr(text, "[peer v]"), "%s", text);
	/* A peer that is not in verify mode passes without a certificate. */
	reason = 0;
	cr_assert_eq(partner_check_offer(r, &offer, &reason, text,
					 sizeof(text)), 0);
	cr_assert_eq(reason, 0);
	offer.cert_present = 1;
	cr_assert_eq(partner_check_offer(v, &offer, &reason, text,
					 sizeof(text)), 0);
	partners_free(ps);
	cfg_free(c);
}
