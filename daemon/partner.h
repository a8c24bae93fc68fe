/*
 * Partner policy: what a [peer NAME] or [template NAME] section means to
 * a daemon, in one place.  A partner is resolved once, when its
 * configuration is loaded, with the daemon section's value filled in for
 * every key the section leaves unset; the decisions below read only the
 * resolved values.  Everything here but partner_verify() is pure: the
 * daemons do the I/O (logging, the sticky file, the certificate).
 */
#ifndef TLSPLEX_PARTNER_H
#define TLSPLEX_PARTNER_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "neg.h"

struct sockaddr;
struct tls_conn;
struct tls_info;

/* One partner with the values in effect for it. */
struct partner {
	char label[CFG_NAME_MAX + 16]; /* "[peer gw1]", "[template east]";
					  "" for the daemon section alone */
	int templ;                     /* from a [template NAME] section */
	int any;                       /* a template that admits every peer */
	int tls;                       /* enum tls_mode we offer it (verify
					  is require on the wire) */
	int verify;                    /* tls = verify: the relay refuses
					  an offer without a certificate */
	int min_tls, max_tls;          /* TLSV_1_x */
	int client_cert;               /* enum cert_want (relay) */
	uint32_t max_streams;
	int tls_sticky;                /* 0 or 1 */
	int tls_first;                 /* gateway: dial it TLS first */
	int bind_node;                 /* identity "" binds the certificate
					  to the node name (relay) */
	char identity[CFG_LIST_MAX];   /* patterns the certificate must match */
	char issuers[CFG_LIST_MAX];    /* match_issuer patterns; "" = any */
	char services[CFG_LIST_MAX];   /* services it may open; "" = all */
};

/*
 * Resolves section p of configuration c (a member of c->peers or
 * c->templates; NULL for the daemon section alone) into *out: each key p
 * leaves unset takes the daemon section's value.  A template that checks
 * the issuer gets tls = require and client_cert = require.
 */
void partner_resolve(const struct cfg *c, const struct cfg_peer *p,
		     struct partner *out);

/* Every partner of one configuration, resolved at load. */
struct partners {
	const struct cfg *cfg;       /* resolved from; must outlive the set */
	struct partner *peer;        /* one per cfg->peers[i] */
	struct partner *templ;       /* one per cfg->templates[i] */
	struct partner deflt;        /* the daemon section alone */
};

/* Resolves every [peer] and [template] of c.  Returns NULL when out of
 * memory.  c must outlive the set. */
struct partners *partners_new(const struct cfg *c);
/* NULL is a no-op. */
void partners_free(struct partners *ps);
/* The resolved [peer name], or NULL. */
const struct partner *partners_find(const struct partners *ps,
				    const char *name);
/* The partner that admits node connecting from sa: its [peer node], else
 * the first [template], in file order, whose match_name and match_source
 * (those that are set) both hold; NULL when none does. */
const struct partner *partners_select(const struct partners *ps,
				      const char *node,
				      const struct sockaddr *sa);

/* Applies what p sets to our parameters for a link with it: tls mode,
 * TLS versions, max_streams, and *client_cert when client_cert is not
 * NULL. */
void partner_apply(const struct partner *p, struct neg_params *mine,
		   int *client_cert);

/*
 * The relay's check of an offer from p before anything else is decided:
 * a partner with tls = verify must announce a certificate.  Returns 0,
 * or -1 with *reason and a sentence for the peer in text.
 */
int partner_check_offer(const struct partner *p, const struct neg_params *offer,
			uint16_t *reason, char *text, size_t textlen);

/* Nonzero when p may open streams for service. */
int partner_allows(const struct partner *p, const char *service);

enum partner_sticky {
	PARTNER_STICKY_NONE = 0, /* nothing changes */
	PARTNER_STICKY_RAISE,    /* mine->tls_mode was raised to require */
	PARTNER_STICKY_REFUSE,   /* the offer is plaintext: refuse it */
};
/*
 * The tls_sticky rule for p, which the sticky state remembers (nonzero)
 * or not as a TLS peer.  A remembered sticky partner that offers
 * plaintext is refused; otherwise we require TLS of it.  offer is its
 * offer, or NULL when we dial and have none yet.
 */
enum partner_sticky partner_sticky_rule(const struct partner *p,
					int remembered,
					const struct neg_params *offer,
					struct neg_params *mine);

/*
 * The identity patterns a certificate from p must match, split into at
 * most max pointers into buf: p's identity list, or node alone when the
 * list is empty and p binds the node name.  Returns their number; 0 when
 * no identity check applies.
 */
size_t partner_identity_patterns(const struct partner *p, const char *node,
				 char *buf, size_t buflen, const char **pat,
				 size_t max);

/* Checks issuer against p's match_issuer patterns.  Returns 0, or -1
 * with a reason in why. */
int partner_check_issuer(const struct partner *p, const char *issuer,
			 char *why, size_t whylen);

/*
 * The certificate checks for p once TLS is up on tls (info its summary,
 * node the name the peer claimed): the identity binding, then the
 * issuer.  A peer without a certificate passes the identity binding (the
 * client_cert setting decides whether one is needed).  Returns 0, or -1
 * with a reason in why.
 */
int partner_verify(const struct partner *p, struct tls_conn *tls,
		   const struct tls_info *info, const char *node, char *why,
		   size_t whylen);

/* Nonzero when s matches one of the comma-separated glob patterns of
 * list (see match_glob); nocase for DNS-style names. */
int partner_match_any(const char *list, const char *s, int nocase);

#endif
