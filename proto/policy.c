/*
 * The negotiation decision.  Both sides run policy_decide() on the same
 * two parameter sets, so the dialler can verify the acceptor's verdict.
 */
#include "policy.h"

#include <string.h>

static const struct cipher_info ciphers[] = {
	{ 0x1301, TLSV_1_3, "TLS_AES_128_GCM_SHA256",
	  "TLS13-AES128-GCM-SHA256" },
	{ 0x1302, TLSV_1_3, "TLS_AES_256_GCM_SHA384",
	  "TLS13-AES256-GCM-SHA384" },
	{ 0x1303, TLSV_1_3, "TLS_CHACHA20_POLY1305_SHA256",
	  "TLS13-CHACHA20-POLY1305-SHA256" },
	{ 0xC02B, TLSV_1_2, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
	  "ECDHE-ECDSA-AES128-GCM-SHA256" },
	{ 0xC02F, TLSV_1_2, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
	  "ECDHE-RSA-AES128-GCM-SHA256" },
	{ 0xC02C, TLSV_1_2, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
	  "ECDHE-ECDSA-AES256-GCM-SHA384" },
	{ 0xC030, TLSV_1_2, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
	  "ECDHE-RSA-AES256-GCM-SHA384" },
	{ 0xCCA9, TLSV_1_2, "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
	  "ECDHE-ECDSA-CHACHA20-POLY1305" },
	{ 0xCCA8, TLSV_1_2, "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
	  "ECDHE-RSA-CHACHA20-POLY1305" },
	{ 0, 0, NULL, NULL },
};

const struct cipher_info *
cipher_table(void)
{
	return ciphers;
}

const struct cipher_info *
cipher_by_id(uint16_t id)
{
	const struct cipher_info *c;

	if (id == 0)
		return NULL;
	for (c = ciphers; c->id; c++)
		if (c->id == id)
			return c;
	return NULL;
}

const struct cipher_info *
cipher_by_name(const char *name)
{
	const struct cipher_info *c;

	if (!name)
		return NULL;
	for (c = ciphers; c->id; c++)
		if (!strcmp(c->iana, name) || !strcmp(c->wolfssl, name))
			return c;
	return NULL;
}

static uint8_t
clamp_n(uint8_t n)
{
	return n > NEG_CIPHERS_MAX ? NEG_CIPHERS_MAX : n;
}

static int
suite_listed(const struct neg_params *p, uint16_t id)
{
	uint8_t i, n = clamp_n(p->n_ciphers);

	for (i = 0; i < n; i++)
		if (p->ciphers[i] == id)
			return 1;
	return 0;
}

static void
refuse(struct neg_outcome *out, uint16_t reason)
{
	out->result = NEG_RESULT_REFUSE;
	out->reason = reason;
}

static void
plaintext(struct neg_outcome *out, uint16_t reason)
{
	out->result = NEG_RESULT_PLAINTEXT;
	out->reason = reason;
}

/* Common suites in the acceptor's order, each once, known to tlsplex and
 * usable within [min, max]. */
static void
common_suites(const struct neg_params *d,
	      const struct neg_params *a, uint16_t min,
	      uint16_t max, struct neg_outcome *out)
{
	uint8_t i, n = clamp_n(a->n_ciphers);
	const struct cipher_info *c;

	for (i = 0; i < n; i++) {
		uint16_t id = a->ciphers[i];
		uint8_t j, dup = 0;

		c = cipher_by_id(id);
		if (!c || c->version < min || c->version > max ||
		    !suite_listed(d, id))
			continue;
		for (j = 0; j < out->n_ciphers; j++)
			if (out->ciphers[j] == id)
				dup = 1;
		if (!dup)
			out->ciphers[out->n_ciphers++] = id;
	}
}

void
policy_decide(const struct neg_params *dialer,
	      const struct neg_params *acceptor, struct neg_outcome *out)
{
	uint8_t d = dialer->tls_mode, a = acceptor->tls_mode;
	uint16_t min, max;

	memset(out, 0, sizeof(*out));
	if (d > TLS_MODE_REQUIRE || a > TLS_MODE_REQUIRE) {
		refuse(out, NEG_R_MALFORMED);
		return;
	}
	if (d == TLS_MODE_REQUIRE && a == TLS_MODE_OFF) {
		refuse(out, NEG_R_REQUIRED_BY_DIALER);
		return;
	}
	if (a == TLS_MODE_REQUIRE && d == TLS_MODE_OFF) {
		refuse(out, NEG_R_REQUIRED_BY_ACCEPTOR);
		return;
	}
	if (d == TLS_MODE_OFF) {
		plaintext(out, NEG_R_DIALER_OFF);
		return;
	}
	if (a == TLS_MODE_OFF) {
		plaintext(out, NEG_R_ACCEPTOR_OFF);
		return;
	}
	if (d < TLS_MODE_PREFER && a < TLS_MODE_PREFER) {
		plaintext(out, NEG_R_NEITHER_ASKED);
		return;
	}

	min = dialer->tls_min > acceptor->tls_min ? dialer->tls_min
						  : acceptor->tls_min;
	max = dialer->tls_max < acceptor->tls_max ? dialer->tls_max
						  : acceptor->tls_max;
	if (min > max) {
		refuse(out, NEG_R_NO_COMMON_VERSION);
		return;
	}
	common_suites(dialer, acceptor, min, max, out);
	if (out->n_ciphers == 0) {
		memset(out, 0, sizeof(*out));
		refuse(out, NEG_R_NO_COMMON_CIPHER);
		return;
	}
	out->result = NEG_RESULT_TLS;
	out->reason = NEG_R_TLS_AGREED;
	out->tls_min = min;
	out->tls_max = max;
}

static int
outcome_equal(const struct neg_outcome *x,
	      const struct neg_outcome *y)
{
	return x->result == y->result && x->reason == y->reason &&
	       x->tls_min == y->tls_min && x->tls_max == y->tls_max &&
	       x->n_ciphers == y->n_ciphers && x->n_ciphers <= NEG_CIPHERS_MAX &&
	       !memcmp(x->ciphers, y->ciphers,
		       (size_t)x->n_ciphers * sizeof(x->ciphers[0]));
}

int
policy_check_decision(const struct neg_params *mine,
		      const struct neg_msg *decision, uint16_t *reason)
{
	struct neg_outcome o;
	const struct neg_outcome *got = &decision->outcome;

	switch (decision->type) {
	case NEG_REFUSE:
		*reason = got->reason;
		return -1;
	case NEG_DECISION:
		break;
	default:
		*reason = NEG_R_MALFORMED;
		return -1;
	}
	if (got->result != NEG_RESULT_PLAINTEXT &&
	    got->result != NEG_RESULT_TLS) {
		*reason = NEG_R_MALFORMED;
		return -1;
	}
	policy_decide(mine, &decision->params, &o);
	if (!outcome_equal(&o, got)) {
		*reason = NEG_R_DECISION_MISMATCH;
		return -1;
	}
	if (mine->tls_mode == TLS_MODE_REQUIRE &&
	    got->result != NEG_RESULT_TLS) {
		*reason = NEG_R_POLICY_VIOLATION;
		return -1;
	}
	*reason = got->reason;
	return 0;
}

static uint32_t
min_nonzero(uint32_t x, uint32_t y)
{
	if (x == 0)
		return y;
	if (y == 0)
		return x;
	return x < y ? x : y;
}

void
policy_mux_limits(const struct neg_params *local,
		  const struct neg_params *peer, struct mux_limits *out)
{
	out->max_frame = local->max_frame < peer->max_frame ? local->max_frame
							    : peer->max_frame;
	out->keepalive_ms = min_nonzero(local->keepalive_ms,
					peer->keepalive_ms);
	out->local_window = local->window;
	out->peer_window = peer->window;
	out->local_max_streams = local->max_streams;
	out->peer_max_streams = peer->max_streams;
	out->link_ack = (local->flow_caps & NEG_FLOW_LINK_ACK) &&
			(peer->flow_caps & NEG_FLOW_LINK_ACK);
}

int
policy_reverse(int dialer, const struct neg_params *local,
	       const struct neg_params *peer)
{
	const struct neg_params *d = dialer ? local : peer;

	return (d->flow_caps & NEG_FLOW_REVERSE) != 0;
}
