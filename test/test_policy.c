/*
 * Tests for the negotiation policy: the full mode matrix, version and
 * cipher agreement, the dialler's check of a decision, and mux limits.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "neg.h"
#include "policy.h"

#define PT NEG_RESULT_PLAINTEXT
#define TLS NEG_RESULT_TLS
#define REF NEG_RESULT_REFUSE

static void
params(struct neg_params *p, const char *node, uint8_t mode,
       uint16_t min, uint16_t max, const uint16_t *ids, uint8_t n)
{
	unsigned i;

	memset(p, 0, sizeof(*p));
	snprintf(p->node, sizeof(p->node), "%s", node);
	p->tls_mode = mode;
	p->tls_min = min;
	p->tls_max = max;
	p->n_ciphers = n;
	if (n)
		memcpy(p->ciphers, ids, n * sizeof(ids[0]));
	p->max_streams = 64;
	p->window = 65536;
	p->max_frame = 16384;
	p->keepalive_ms = 10000;
	for (i = 0; i < NEG_NONCE_LEN; i++)
		p->nonce[i] = (uint8_t)(i * 7 + mode);
}

static const uint16_t dialer_suites[] = { 0x1301, 0x1302, 0x1303, 0xC02F,
					  0xC030 };
static const uint16_t acceptor_suites[] = { 0xC030, 0x1303, 0x1301, 0xCCA8 };

static void
default_dialer(struct neg_params *p, uint8_t mode)
{
	params(p, "gateway-1", mode, TLSV_1_2, TLSV_1_3, dialer_suites, 5);
}

static void
default_acceptor(struct neg_params *p, uint8_t mode)
{
	params(p, "relay-1", mode, TLSV_1_2, TLSV_1_3, acceptor_suites, 4);
}

static void
assert_not_tls_fields(const struct neg_outcome *o)
{
	cr_assert_eq(o->tls_min, 0);
	cr_assert_eq(o->tls_max, 0);
	cr_assert_eq(o->n_ciphers, 0);
}

/* Rows: dialler mode, columns: acceptor mode (off, allow, prefer, require). */
static const struct {
	uint8_t result;
	uint16_t reason;
} matrix[4][4] = {
	/* dialler off */
	{ { PT, NEG_R_DIALER_OFF }, { PT, NEG_R_DIALER_OFF },
	  { PT, NEG_R_DIALER_OFF }, { REF, NEG_R_REQUIRED_BY_ACCEPTOR } },
	/* dialler allow */
	{ { PT, NEG_R_ACCEPTOR_OFF }, { PT, NEG_R_NEITHER_ASKED },
	  { TLS, NEG_R_TLS_AGREED }, { TLS, NEG_R_TLS_AGREED } },
	/* dialler prefer */
	{ { PT, NEG_R_ACCEPTOR_OFF }, { TLS, NEG_R_TLS_AGREED },
	  { TLS, NEG_R_TLS_AGREED }, { TLS, NEG_R_TLS_AGREED } },
	/* dialler require */
	{ { REF, NEG_R_REQUIRED_BY_DIALER }, { TLS, NEG_R_TLS_AGREED },
	  { TLS, NEG_R_TLS_AGREED }, { TLS, NEG_R_TLS_AGREED } },
};

Test(policy, mode_matrix)
{
	struct neg_params d, a;
	struct neg_outcome o;
	static const uint16_t want_common[] = { 0xC030, 0x1303, 0x1301 };
	int i, j;

	for (i = 0; i < 4; i++) {
		for (j = 0; j < 4; j++) {
			default_dialer(&d, (uint8_t)i);
			default_acceptor(&a, (uint8_t)j);
			memset(&o, 0xa5, sizeof(o));
			policy_decide(&d, &a, &o);
			cr_assert_eq(o.result, matrix[i][j].result,
				     "dialler %s acceptor %s", tls_mode_str(i),
				     tls_mode_str(j));
			cr_assert_eq(o.reason, matrix[i][j].reason,
				     "dialler %s acceptor %s: %s", tls_mode_str(i),
				     tls_mode_str(j), neg_reason_str(o.reason));
			if (o.result == TLS) {
				cr_assert_eq(o.tls_min, TLSV_1_2);
				cr_assert_eq(o.tls_max, TLSV_1_3);
				cr_assert_eq(o.n_ciphers, 3);
				cr_assert_arr_eq(o.ciphers, want_common,
						 sizeof(want_common));
			} else {
				assert_not_tls_fields(&o);
			}
		}
	}
}

Test(policy, plaintext_ignores_tls_parameters)
{
	struct neg_params d, a;
	struct neg_outcome o;

	/* Disjoint versions and no suites do not matter without TLS. */
	params(&d, "d", TLS_MODE_ALLOW, TLSV_1_2, TLSV_1_2, NULL, 0);
	params(&a, "a", TLS_MODE_ALLOW, TLSV_1_3, TLSV_1_3, NULL, 0);
	policy_decide(&d, &a, &o);
	cr_assert_eq(o.result, PT);
	cr_assert_eq(o.reason, NEG_R_NEITHER_ASKED);

	a.tls_mode = TLS_MODE_OFF;
	d.tls_mode = TLS_MODE_PREFER;
	policy_decide(&d, &a, &o);
	cr_assert_eq(o.result, PT);
	cr_assert_eq(o.reason, NEG_R_ACCEPTOR_OFF);
}

Test(policy, invalid_modes_refused)
{
	struct neg_params d, a;
	struct neg_outcome o;

	default_dialer(&d, 4);
	default_acceptor(&a, TLS_MODE_PREFER);
	policy_decide(&d, &a, &o);
	cr_assert_eq(o.result, REF);
	cr_assert_eq(o.reason, NEG_R_MALFORMED);
	default_dialer(&d, TLS_MODE_OFF);
	default_acceptor(&a, 0xff);
	policy_decide(&d, &a, &o);
	cr_assert_eq(o.result, REF);
	assert_not_tls_fields(&o);
}

/* ---- versions ----------------------------------------------------------- */

static void
decide_versions(uint16_t dmin, uint16_t dmax, uint16_t amin,
		uint16_t amax, struct neg_outcome *o)
{
	static const uint16_t all[] = { 0x1301, 0x1302, 0x1303, 0xC02B,
					0xC02F, 0xC02C, 0xC030, 0xCCA9,
					0xCCA8 };
	struct neg_params d, a;

	params(&d, "d", TLS_MODE_PREFER, dmin, dmax, all, 9);
	params(&a, "a", TLS_MODE_ALLOW, amin, amax, all, 9);
	policy_decide(&d, &a, o);
}

Test(policy, version_ranges)
{
	struct neg_outcome o;
	unsigned i;

	decide_versions(TLSV_1_2, TLSV_1_2, TLSV_1_3, TLSV_1_3, &o);
	cr_assert_eq(o.result, REF);
	cr_assert_eq(o.reason, NEG_R_NO_COMMON_VERSION);
	assert_not_tls_fields(&o);

	decide_versions(TLSV_1_3, TLSV_1_3, TLSV_1_2, TLSV_1_2, &o);
	cr_assert_eq(o.result, REF);
	cr_assert_eq(o.reason, NEG_R_NO_COMMON_VERSION);

	decide_versions(TLSV_1_2, TLSV_1_3, TLSV_1_3, TLSV_1_3, &o);
	cr_assert_eq(o.result, TLS);
	cr_assert_eq(o.tls_min, TLSV_1_3);
	cr_assert_eq(o.tls_max, TLSV_1_3);
	cr_assert_eq(o.n_ciphers, 3);
	for (i = 0; i < o.n_ciphers; i++)
		cr_assert_eq(cipher_by_id(o.ciphers[i])->version, TLSV_1_3);

	decide_versions(TLSV_1_2, TLSV_1_3, TLSV_1_2, TLSV_1_2, &o);
	cr_assert_eq(o.result, TLS);
	cr_assert_eq(o.tls_min, TLSV_1_2);
	cr_assert_eq(o.tls_max, TLSV_1_2);
	cr_assert_eq(o.n_ciphers, 6);
	for (i = 0; i < o.n_ciphers; i++)
		cr_assert_eq(cipher_by_id(o.ciphers[i])->version, TLSV_1_2);

	decide_versions(TLSV_1_2, TLSV_1_3, TLSV_1_2, TLSV_1_3, &o);
	cr_assert_eq(o.result, TLS);
	cr_assert_eq(o.tls_min, TLSV_1_2);
	cr_assert_eq(o.tls_max, TLSV_1_3);
	cr_assert_eq(o.n_ciphers, 9);
}

/* ---- ciphers ------------------------------------------------------------ */

static void
decide_suites(const uint16_t *ds, uint8_t dn, const uint16_t *as,
	      uint8_t an, uint16_t min, uint16_t max,
	      struct neg_outcome *o)
{
	struct neg_params d, a;

	params(&d, "d", TLS_MODE_REQUIRE, min, max, ds, dn);
	params(&a, "a", TLS_MODE_REQUIRE, min, max, as, an);
	policy_decide(&d, &a, o);
}

Test(policy, cipher_agreement)
{
	static const uint16_t v13[] = { 0x1301, 0x1302 };
	static const uint16_t v13b[] = { 0x1303 };
	static const uint16_t v12[] = { 0xC02F, 0xC030 };
	static const uint16_t unknown[] = { 0xBEEF, 0x0001 };
	static const uint16_t d_order[] = { 0x1301, 0x1302, 0x1303, 0xC02F };
	static const uint16_t a_order[] = { 0xC02F, 0x1303, 0xBEEF, 0x1301,
					    0x1303 };
	static const uint16_t want[] = { 0xC02F, 0x1303, 0x1301 };
	struct neg_outcome o;

	decide_suites(v13, 2, v13b, 1, TLSV_1_2, TLSV_1_3, &o);
	cr_assert_eq(o.result, REF);
	cr_assert_eq(o.reason, NEG_R_NO_COMMON_CIPHER);
	assert_not_tls_fields(&o);

	/* TLS 1.3 suites only, and a TLS 1.2-only range. */
	decide_suites(v13, 2, v13, 2, TLSV_1_2, TLSV_1_2, &o);
	cr_assert_eq(o.result, REF);
	cr_assert_eq(o.reason, NEG_R_NO_COMMON_CIPHER);

	/* TLS 1.2 suites only, and a TLS 1.3-only range. */
	decide_suites(v12, 2, v12, 2, TLSV_1_3, TLSV_1_3, &o);
	cr_assert_eq(o.result, REF);
	cr_assert_eq(o.reason, NEG_R_NO_COMMON_CIPHER);

	/* Suites both list but tlsplex does not know never match. */
	decide_suites(unknown, 2, unknown, 2, TLSV_1_2, TLSV_1_3, &o);
	cr_assert_eq(o.result, REF);
	cr_assert_eq(o.reason, NEG_R_NO_COMMON_CIPHER);

	decide_suites(NULL, 0, v13, 2, TLSV_1_2, TLSV_1_3, &o);
	cr_assert_eq(o.reason, NEG_R_NO_COMMON_CIPHER);

	/* Acceptor's order, each suite once. */
	decide_suites(d_order, 4, a_order, 5, TLSV_1_2, TLSV_1_3, &o);
	cr_assert_eq(o.result, TLS);
	cr_assert_eq(o.n_ciphers, 3);
	cr_assert_arr_eq(o.ciphers, want, sizeof(want));

	/* Swapping the roles follows the other list's order. */
	decide_suites(a_order, 5, d_order, 4, TLSV_1_2, TLSV_1_3, &o);
	cr_assert_eq(o.n_ciphers, 3);
	cr_assert_eq(o.ciphers[0], 0x1301);
	cr_assert_eq(o.ciphers[1], 0x1303);
	cr_assert_eq(o.ciphers[2], 0xC02F);
}

Test(policy, full_cipher_lists)
{
	uint16_t ids[NEG_CIPHERS_MAX];
	struct neg_outcome o;
	unsigned i;

	for (i = 0; i < NEG_CIPHERS_MAX; i++)
		ids[i] = (uint16_t)(0x2000 + i);
	ids[NEG_CIPHERS_MAX - 1] = 0xCCA9;
	decide_suites(ids, NEG_CIPHERS_MAX, ids, NEG_CIPHERS_MAX, TLSV_1_2,
		      TLSV_1_3, &o);
	cr_assert_eq(o.result, TLS);
	cr_assert_eq(o.n_ciphers, 1);
	cr_assert_eq(o.ciphers[0], 0xCCA9);
}

/* ---- the dialler's check ------------------------------------------------ */

static void
build_answer(const struct neg_params *a,
	     const struct neg_outcome *o, struct neg_msg *m)
{
	memset(m, 0, sizeof(*m));
	m->ver_min = m->ver_max = 1;
	m->outcome = *o;
	if (o->result == REF) {
		m->type = NEG_REFUSE;
		snprintf(m->params.node, sizeof(m->params.node), "%s", a->node);
		snprintf(m->text, sizeof(m->text), "%s",
			 neg_reason_str(o->reason));
	} else {
		m->type = NEG_DECISION;
		m->params = *a;
	}
}

/* Sends m through the codec, as on the wire. */
static void
wire(struct neg_msg *m)
{
	uint8_t buf[NEG_MAX_LEN];
	int n = neg_encode(m, buf, sizeof(buf));
	struct neg_decoder *dec = neg_decoder_new();
	size_t used;

	cr_assert_gt(n, 0);
	cr_assert_eq(neg_decoder_feed(dec, buf, (size_t)n, &used), NEG_DONE);
	*m = *neg_decoder_msg(dec);
	neg_decoder_free(dec);
}

static void
expect_reject(const struct neg_params *d, const struct neg_msg *m,
	      uint16_t want, const char *what)
{
	uint16_t reason = 0;

	cr_assert_eq(policy_check_decision(d, m, &reason), -1,
		     "tampered %s accepted", what);
	cr_assert_eq(reason, want, "%s: got %s", what, neg_reason_str(reason));
}

Test(policy, dialer_accepts_honest_decisions)
{
	struct neg_params d, a;
	struct neg_outcome o;
	struct neg_msg m;
	uint16_t reason;
	int i, j;

	for (i = 0; i < 4; i++) {
		for (j = 0; j < 4; j++) {
			default_dialer(&d, (uint8_t)i);
			default_acceptor(&a, (uint8_t)j);
			policy_decide(&d, &a, &o);
			build_answer(&a, &o, &m);
			wire(&m);
			reason = 0xffff;
			if (o.result == REF) {
				cr_assert_eq(policy_check_decision(&d, &m, &reason), -1);
				cr_assert_eq(reason, matrix[i][j].reason);
			} else {
				cr_assert_eq(policy_check_decision(&d, &m, &reason), 0,
					     "d %d a %d: %s", i, j,
					     neg_reason_str(reason));
				cr_assert_eq(reason, matrix[i][j].reason);
			}
		}
	}
}

Test(policy, dialer_rejects_tampered_decisions)
{
	struct neg_params d, a;
	struct neg_outcome o;
	struct neg_msg honest, m;
	int i, j, checked = 0;

	for (i = 0; i < 4; i++) {
		for (j = 0; j < 4; j++) {
			default_dialer(&d, (uint8_t)i);
			default_acceptor(&a, (uint8_t)j);
			policy_decide(&d, &a, &o);
			if (o.result == REF)
				continue;
			build_answer(&a, &o, &honest);
			checked++;

			/* Changed result. */
			m = honest;
			if (o.result == TLS) {
				m.outcome.result = PT;
				m.outcome.reason = NEG_R_NEITHER_ASKED;
				m.outcome.tls_min = m.outcome.tls_max = 0;
				m.outcome.n_ciphers = 0;
			} else {
				m.outcome.result = TLS;
				m.outcome.reason = NEG_R_TLS_AGREED;
				m.outcome.tls_min = TLSV_1_2;
				m.outcome.tls_max = TLSV_1_3;
				m.outcome.n_ciphers = 1;
				m.outcome.ciphers[0] = 0x1301;
			}
			wire(&m);
			expect_reject(&d, &m, NEG_R_DECISION_MISMATCH, "result");

			/* Changed reason only. */
			m = honest;
			m.outcome.reason = o.reason == NEG_R_DIALER_OFF ?
				NEG_R_ACCEPTOR_OFF : NEG_R_DIALER_OFF;
			expect_reject(&d, &m, NEG_R_DECISION_MISMATCH, "reason");

			if (o.result != TLS) {
				/* A plaintext outcome naming suites. */
				m = honest;
				m.outcome.n_ciphers = 1;
				m.outcome.ciphers[0] = 0x1301;
				expect_reject(&d, &m, NEG_R_DECISION_MISMATCH,
					      "plaintext suites");
				continue;
			}

			/* Narrowed version range. */
			m = honest;
			m.outcome.tls_min = TLSV_1_3;
			wire(&m);
			expect_reject(&d, &m, NEG_R_DECISION_MISMATCH, "tls_min");
			m = honest;
			m.outcome.tls_max = TLSV_1_2;
			expect_reject(&d, &m, NEG_R_DECISION_MISMATCH, "tls_max");

			/* Cipher list: one dropped, reordered, one added. */
			m = honest;
			m.outcome.n_ciphers--;
			wire(&m);
			expect_reject(&d, &m, NEG_R_DECISION_MISMATCH, "dropped suite");
			m = honest;
			m.outcome.ciphers[0] = honest.outcome.ciphers[1];
			m.outcome.ciphers[1] = honest.outcome.ciphers[0];
			expect_reject(&d, &m, NEG_R_DECISION_MISMATCH, "reordered");
			m = honest;
			m.outcome.ciphers[m.outcome.n_ciphers++] = 0xC02F;
			expect_reject(&d, &m, NEG_R_DECISION_MISMATCH, "added suite");
			m = honest;
			m.outcome.ciphers[0] = 0xCCA8;
			expect_reject(&d, &m, NEG_R_DECISION_MISMATCH, "swapped suite");
		}
	}
	cr_assert_eq(checked, 14);
}

Test(policy, require_dialer_rejects_forged_plaintext)
{
	struct neg_params d, d_forged, a, a_forged;
	struct neg_outcome o;
	struct neg_msg m;
	uint16_t reason;
	int j;

	/* In-path tampering lowered the dialler's offer to allow; the
	 * acceptor computes plaintext consistently from what it saw. */
	for (j = 0; j < 4; j++) {
		default_dialer(&d, TLS_MODE_REQUIRE);
		d_forged = d;
		d_forged.tls_mode = TLS_MODE_ALLOW;
		default_acceptor(&a, (uint8_t)j);
		policy_decide(&d_forged, &a, &o);
		if (o.result != PT)
			continue;
		build_answer(&a, &o, &m);
		wire(&m);
		reason = 0;
		cr_assert_eq(policy_check_decision(&d, &m, &reason), -1);
		cr_assert(reason == NEG_R_DECISION_MISMATCH ||
			  reason == NEG_R_POLICY_VIOLATION,
			  "reason %s", neg_reason_str(reason));
	}

	/* The acceptor's parameters rewritten to off, with a plaintext
	 * outcome that matches a non-requiring dialler. */
	default_dialer(&d, TLS_MODE_REQUIRE);
	default_acceptor(&a, TLS_MODE_REQUIRE);
	a_forged = a;
	a_forged.tls_mode = TLS_MODE_OFF;
	d_forged = d;
	d_forged.tls_mode = TLS_MODE_PREFER;
	policy_decide(&d_forged, &a_forged, &o);
	cr_assert_eq(o.result, PT);
	build_answer(&a_forged, &o, &m);
	wire(&m);
	cr_assert_eq(policy_check_decision(&d, &m, &reason), -1);
	cr_assert(reason == NEG_R_DECISION_MISMATCH ||
		  reason == NEG_R_POLICY_VIOLATION);

	/* For a prefer dialler the same forgery is consistent; only the
	 * require mode protects against it. */
	cr_assert_eq(policy_check_decision(&d_forged, &m, &reason), 0);
}

Test(policy, check_refuse_and_other_types)
{
	struct neg_params d, a;
	struct neg_outcome o;
	struct neg_msg m;
	uint16_t reason;

	default_dialer(&d, TLS_MODE_PREFER);
	default_acceptor(&a, TLS_MODE_PREFER);
	memset(&m, 0, sizeof(m));
	m.type = NEG_REFUSE;
	m.outcome.result = REF;
	m.outcome.reason = NEG_R_UNKNOWN_PEER;
	cr_assert_eq(policy_check_decision(&d, &m, &reason), -1);
	cr_assert_eq(reason, NEG_R_UNKNOWN_PEER);

	policy_decide(&d, &a, &o);
	build_answer(&a, &o, &m);
	m.type = NEG_OFFER;
	cr_assert_eq(policy_check_decision(&d, &m, &reason), -1);
	cr_assert_eq(reason, NEG_R_MALFORMED);

	/* A DECISION must not carry a refusal, even a consistent one. */
	default_dialer(&d, TLS_MODE_REQUIRE);
	default_acceptor(&a, TLS_MODE_OFF);
	policy_decide(&d, &a, &o);
	cr_assert_eq(o.result, REF);
	memset(&m, 0, sizeof(m));
	m.type = NEG_DECISION;
	m.params = a;
	m.outcome = o;
	cr_assert_eq(policy_check_decision(&d, &m, &reason), -1);
	cr_assert_eq(reason, NEG_R_MALFORMED);
}

/* ---- mux limits --------------------------------------------------------- */

Test(policy, mux_limits)
{
	struct neg_params l, p;
	struct mux_limits m;

	default_dialer(&l, TLS_MODE_OFF);
	default_acceptor(&p, TLS_MODE_OFF);
	l.max_frame = 16384;
	p.max_frame = 4096;
	l.keepalive_ms = 30000;
	p.keepalive_ms = 5000;
	l.window = 1 << 20;
	p.window = 65536;
	l.max_streams = 10;
	p.max_streams = 1000;
	memset(&m, 0xa5, sizeof(m));
	policy_mux_limits(&l, &p, &m);
	cr_assert_eq(m.max_frame, 4096);
	cr_assert_eq(m.keepalive_ms, 5000);
	cr_assert_eq(m.local_window, 1 << 20);
	cr_assert_eq(m.peer_window, 65536);
	cr_assert_eq(m.local_max_streams, 10);
	cr_assert_eq(m.peer_max_streams, 1000);

	policy_mux_limits(&p, &l, &m);
	cr_assert_eq(m.max_frame, 4096);
	cr_assert_eq(m.keepalive_ms, 5000);
	cr_assert_eq(m.local_window, 65536);
	cr_assert_eq(m.peer_window, 1 << 20);
	cr_assert_eq(m.local_max_streams, 1000);
	cr_assert_eq(m.peer_max_streams, 10);

	l.keepalive_ms = 0;
	policy_mux_limits(&l, &p, &m);
	cr_assert_eq(m.keepalive_ms, 5000);
	policy_mux_limits(&p, &l, &m);
	cr_assert_eq(m.keepalive_ms, 5000);
	p.keepalive_ms = 0;
	policy_mux_limits(&l, &p, &m);
	cr_assert_eq(m.keepalive_ms, 0);

	l.max_frame = p.max_frame = 16777215;
	policy_mux_limits(&l, &p, &m);
	cr_assert_eq(m.max_frame, 16777215);
}

Test(policy, mux_limits_link_ack)
{
	struct neg_params l, p;
	struct mux_limits m;
	static const uint32_t caps[] = { 0, NEG_FLOW_LINK_ACK, 0xfffffffeu,
					 0xffffffffu };

	default_dialer(&l, TLS_MODE_OFF);
	default_acceptor(&p, TLS_MODE_OFF);
	for (size_t i = 0; i < 4; i++) {
		for (size_t j = 0; j < 4; j++) {
			int want = (caps[i] & 1) && (caps[j] & 1);

			l.flow_caps = caps[i];
			p.flow_caps = caps[j];
			memset(&m, 0xa5, sizeof(m));
			policy_mux_limits(&l, &p, &m);
			cr_assert_eq(m.link_ack, want, "caps %x / %x", caps[i], caps[j]);
			policy_mux_limits(&p, &l, &m);
			cr_assert_eq(m.link_ack, want);
		}
	}
	/* the decision does not depend on the capability */
	struct neg_outcome o1, o2;
	l.flow_caps = NEG_FLOW_LINK_ACK;
	p.flow_caps = 0;
	policy_decide(&l, &p, &o1);
	l.flow_caps = 0;
	policy_decide(&l, &p, &o2);
	cr_assert_eq(memcmp(&o1, &o2, sizeof(o1)), 0);
}

/* ---- cipher table ------------------------------------------------------- */

Test(policy, cipher_table)
{
	static const struct {
		uint16_t id, version;
		const char *iana, *wolfssl;
	} want[] = {
		{ 0x1301, TLSV_1_3, "TLS_AES_128_GCM_SHA256", "TLS13-AES128-GCM-SHA256" },
		{ 0x1302, TLSV_1_3, "TLS_AES_256_GCM_SHA384", "TLS13-AES256-GCM-SHA384" },
		{ 0x1303, TLSV_1_3, "TLS_CHACHA20_POLY1305_SHA256", "TLS13-CHACHA20-POLY1305-SHA256" },
		{ 0xC02B, TLSV_1_2, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256" },
		{ 0xC02F, TLSV_1_2, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ECDHE-RSA-AES128-GCM-SHA256" },
		{ 0xC02C, TLSV_1_2, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "ECDHE-ECDSA-AES256-GCM-SHA384" },
		{ 0xC030, TLSV_1_2, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "ECDHE-RSA-AES256-GCM-SHA384" },
		{ 0xCCA9, TLSV_1_2, "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305" },
		{ 0xCCA8, TLSV_1_2, "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-RSA-CHACHA20-POLY1305" },
	};
	const struct cipher_info *c, *t;
	size_t i, n;

	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		c = cipher_by_id(want[i].id);
		cr_assert_not_null(c, "0x%04x", want[i].id);
		cr_assert_eq(c->id, want[i].id);
		cr_assert_eq(c->version, want[i].version);
		cr_assert_str_eq(c->iana, want[i].iana);
		cr_assert_str_eq(c->wolfssl, want[i].wolfssl);
		cr_assert_eq(cipher_by_name(want[i].iana), c);
		cr_assert_eq(cipher_by_name(want[i].wolfssl), c);
	}
	cr_assert_null(cipher_by_id(0));
	cr_assert_null(cipher_by_id(0xBEEF));
	cr_assert_null(cipher_by_name("tls_aes_128_gcm_sha256"));
	cr_assert_null(cipher_by_name("TLS13-AES128-GCM"));
	cr_assert_null(cipher_by_name(""));
	cr_assert_null(cipher_by_name(NULL));

	t = cipher_table();
	for (n = 0; t[n].id; n++) {
		cr_assert_eq(cipher_by_id(t[n].id), &t[n]);
		cr_assert(t[n].version == TLSV_1_2 || t[n].version == TLSV_1_3);
		for (i = 0; i < n; i++)
			cr_assert_neq(t[i].id, t[n].id);
	}
	cr_assert_geq(n, sizeof(want) / sizeof(want[0]));
}
