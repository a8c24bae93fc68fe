#include "partner.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "match.h"
#include "tlsio.h"

/* The section's value when it sets one, else the daemon section's. */
static int
partner_inherit(int own, int daemon)
{
	return own != CFG_UNSET ? own : daemon;
}

void
partner_resolve(const struct cfg *c, const struct cfg_peer *p,
		struct partner *out)
{
	memset(out, 0, sizeof(*out));
	out->tls = c->tls;
	out->min_tls = c->min_tls;
	out->max_tls = c->max_tls;
	out->client_cert = c->client_cert;
	out->max_streams = c->max_streams;
	out->tls_sticky = c->tls_sticky;
	out->tls_first = c->tls_first;
	out->bind_node = c->role == CFG_RELAY;
	if (p == NULL) {
		out->verify = c->tls == CFG_TLS_VERIFY && c->role == CFG_RELAY;
		out->tls = cfg_tls_wire(c->tls);
		return;
	}
	out->templ = c->n_templates > 0 && p >= c->templates &&
		     p < c->templates + c->n_templates;
	out->any = p->any;
	snprintf(out->label, sizeof(out->label), "[%s %s]",
		 out->templ ? "template" : "peer", p->name);
	out->tls = partner_inherit(p->tls, c->tls);
	out->min_tls = partner_inherit(p->min_tls, c->min_tls);
	out->max_tls = partner_inherit(p->max_tls, c->max_tls);
	out->client_cert = partner_inherit(p->client_cert, c->client_cert);
	if (p->max_streams != 0)
		out->max_streams = p->max_streams;
	out->tls_sticky = partner_inherit(p->tls_sticky, c->tls_sticky);
	out->tls_first = partner_inherit(p->tls_first, c->tls_first);
	snprintf(out->identity, sizeof(out->identity), "%s", p->identity);
	snprintf(out->issuers, sizeof(out->issuers), "%s", p->match_issuer);
	snprintf(out->services, sizeof(out->services), "%s", p->services);
	out->verify = out->tls == CFG_TLS_VERIFY && c->role == CFG_RELAY;
	out->tls = cfg_tls_wire(out->tls);
	if (out->issuers[0] != '\0') {
		/* An issuer can only be checked on a certificate. */
		out->tls = TLS_MODE_REQUIRE;
		out->client_cert = CERT_WANT_REQUIRE;
	}
}

struct partners *
partners_new(const struct cfg *c)
{
	struct partners *ps;
	size_t i;

	ps = calloc(1, sizeof(*ps));
	if (ps == NULL)
		return NULL;
	ps->cfg = c;
	ps->peer = calloc(c->n_peers ? c->n_peers : 1, sizeof(*ps->peer));
	ps->templ = calloc(c->n_templates ? c->n_templates : 1,
			   sizeof(*ps->templ));
	if (ps->peer == NULL || ps->templ == NULL) {
		partners_free(ps);
		return NULL;
	}
	for (i = 0; i < c->n_peers; i++)
		partner_resolve(c, &c->peers[i], &ps->peer[i]);
	for (i = 0; i < c->n_templates; i++)
		partner_resolve(c, &c->templates[i], &ps->templ[i]);
	partner_resolve(c, NULL, &ps->deflt);
	return ps;
}

void
partners_free(struct partners *ps)
{
	if (ps == NULL)
		return;
	free(ps->templ);
	free(ps->peer);
	free(ps);
}

const struct partner *
partners_find(const struct partners *ps, const char *name)
{
	const struct cfg_peer *p = cfg_peer_find(ps->cfg, name);

	return p != NULL ? &ps->peer[p - ps->cfg->peers] : NULL;
}

const struct partner *
partners_select(const struct partners *ps, const char *node,
		const struct sockaddr *sa)
{
	const struct cfg *c = ps->cfg;
	const struct partner *p = partners_find(ps, node);
	size_t i;

	if (p != NULL)
		return p;
	for (i = 0; i < c->n_templates; i++) {
		const struct cfg_peer *t = &c->templates[i];

		if (t->match_name[0] && !partner_match_any(t->match_name, node, 1))
			continue;
		if (t->match_source.n > 0 && !cfg_acl_match(&t->match_source, sa))
			continue;
		return &ps->templ[i];
	}
	return NULL;
}

void
partner_apply(const struct partner *p, struct neg_params *mine,
	      int *client_cert)
{
	mine->tls_mode = (uint8_t)p->tls;
	mine->tls_min = (uint16_t)p->min_tls;
	mine->tls_max = (uint16_t)p->max_tls;
	mine->max_streams = p->max_streams;
	if (client_cert != NULL)
		*client_cert = p->client_cert;
}

int
partner_check_offer(const struct partner *p, const struct neg_params *offer,
		    uint16_t *reason, char *text, size_t textlen)
{
	if (!p->verify || offer->cert_present)
		return 0;
	*reason = NEG_R_CERT_REQUIRED;
	snprintf(text, textlen, "%s has tls = verify: node '%s' must present "
		 "a certificate that verifies; its offer announces none",
		 p->label[0] ? p->label : "[relay]", offer->node);
	return -1;
}

int
partner_allows(const struct partner *p, const char *service)
{
	return p->services[0] == '\0' || cfg_list_has(p->services, service);
}

enum partner_sticky
partner_sticky_rule(const struct partner *p, int remembered,
		    const struct neg_params *offer, struct neg_params *mine)
{
	if (!p->tls_sticky || !remembered)
		return PARTNER_STICKY_NONE;
	if (offer != NULL && offer->tls_mode == TLS_MODE_OFF)
		return PARTNER_STICKY_REFUSE;
	if (mine->tls_mode == TLS_MODE_REQUIRE)
		return PARTNER_STICKY_NONE;
	mine->tls_mode = TLS_MODE_REQUIRE;
	return PARTNER_STICKY_RAISE;
}

size_t
partner_identity_patterns(const struct partner *p, const char *node,
			  char *buf, size_t buflen, const char **pat,
			  size_t max)
{
	size_t n = 0;
	char *s, *save = NULL;

	if (max == 0)
		return 0;
	if (p->identity[0] == '\0') {
		if (!p->bind_node)
			return 0;
		pat[0] = node;
		return 1;
	}
	snprintf(buf, buflen, "%s", p->identity);
	for (s = strtok_r(buf, ",", &save); s != NULL && n < max;
	     s = strtok_r(NULL, ",", &save))
		pat[n++] = s;
	return n;
}

int
partner_check_issuer(const struct partner *p, const char *issuer,
		     char *why, size_t whylen)
{
	if (p->issuers[0] == '\0' || partner_match_any(p->issuers, issuer, 0))
		return 0;
	snprintf(why, whylen, "the certificate issuer '%s' matches no "
		 "match_issuer pattern of %s", issuer, p->label);
	return -1;
}

int
partner_verify(const struct partner *p, struct tls_conn *tls,
	       const struct tls_info *info, const char *node, char *why,
	       size_t whylen)
{
	char buf[CFG_LIST_MAX], seen[512];
	const char *pat[64];
	size_t n;

	n = partner_identity_patterns(p, node, buf, sizeof(buf), pat, 64);
	if (n > 0 && info->peer.subject[0] != '\0' &&
	    tls_conn_peer_identity(tls, pat, n, seen, sizeof(seen)) != 1) {
		if (p->identity[0] != '\0')
			snprintf(why, whylen, "the peer certificate names %s, "
				 "none of which matches the identity '%s' that "
				 "%s requires", seen[0] ? seen : "no identity",
				 p->identity, p->label);
		else
			snprintf(why, whylen, "the peer claims node name '%s' but "
				 "its certificate names %s (set identity in %s if "
				 "the names differ on purpose)", node,
				 seen[0] ? seen : "no identity", p->label);
		return -1;
	}
	return partner_check_issuer(p, info->peer.issuer, why, whylen);
}

struct partner_match {
	const char *s;
	int nocase;
};

static int
partner_match_one(const char *pattern, void *arg)
{
	const struct partner_match *m = arg;

	return match_glob(pattern, m->s, m->nocase);
}

int
partner_match_any(const char *list, const char *s, int nocase)
{
	struct partner_match m = { s, nocase };

	return cfg_list_each(list, partner_match_one, &m);
}
