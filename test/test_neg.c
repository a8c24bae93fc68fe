/*
 * Tests for the negotiation codec: round trips under every feeding
 * pattern, every header and field error, and a pseudo-random fuzz loop.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "neg.h"

#define BIG 8192

static void
fill_params(struct neg_params *p, const char *node, uint8_t mode)
{
	static const uint16_t ids[] = { 0x1301, 0x1303, 0xC02F, 0xBEEF };
	unsigned i;

	memset(p, 0, sizeof(*p));
	snprintf(p->node, sizeof(p->node), "%s", node);
	p->tls_mode = mode;
	p->tls_min = TLSV_1_2;
	p->tls_max = TLSV_1_3;
	p->n_ciphers = 4;
	memcpy(p->ciphers, ids, sizeof(ids));
	p->cert_present = 1;
	p->cert_want = CERT_WANT_OPTIONAL;
	p->max_streams = 100;
	p->window = 262144;
	p->max_frame = 16384;
	p->keepalive_ms = 15000;
	for (i = 0; i < NEG_NONCE_LEN; i++)
		p->nonce[i] = (uint8_t)(0xA0 + i);
}

static void
make_offer(struct neg_msg *m)
{
	memset(m, 0, sizeof(*m));
	m->type = NEG_OFFER;
	m->ver_min = m->ver_max = 1;
	fill_params(&m->params, "gw-1.example_net", TLS_MODE_PREFER);
}

static void
make_decision_tls(struct neg_msg *m)
{
	memset(m, 0, sizeof(*m));
	m->type = NEG_DECISION;
	m->ver_min = m->ver_max = 1;
	fill_params(&m->params, "relay.a", TLS_MODE_REQUIRE);
	m->params.cert_present = 0;
	m->params.cert_want = CERT_WANT_REQUIRE;
	m->outcome.result = NEG_RESULT_TLS;
	m->outcome.reason = NEG_R_TLS_AGREED;
	m->outcome.tls_min = TLSV_1_3;
	m->outcome.tls_max = TLSV_1_3;
	m->outcome.n_ciphers = 2;
	m->outcome.ciphers[0] = 0x1303;
	m->outcome.ciphers[1] = 0x1301;
	snprintf(m->text, sizeof(m->text), "welcome");
}

static void
make_decision_plain(struct neg_msg *m)
{
	memset(m, 0, sizeof(*m));
	m->type = NEG_DECISION;
	m->ver_min = m->ver_max = 1;
	fill_params(&m->params, "R", TLS_MODE_OFF);
	m->params.n_ciphers = 0;
	m->params.keepalive_ms = 0;
	m->outcome.result = NEG_RESULT_PLAINTEXT;
	m->outcome.reason = NEG_R_ACCEPTOR_OFF;
}

static void
make_refuse(struct neg_msg *m)
{
	memset(m, 0, sizeof(*m));
	m->type = NEG_REFUSE;
	m->ver_min = m->ver_max = 1;
	snprintf(m->params.node, sizeof(m->params.node), "relay-9");
	m->outcome.result = NEG_RESULT_REFUSE;
	m->outcome.reason = NEG_R_REQUIRED_BY_ACCEPTOR;
	snprintf(m->text, sizeof(m->text),
		 "set tls = prefer or require on the gateway");
}

static void
make_refuse_bare(struct neg_msg *m)
{
	memset(m, 0, sizeof(*m));
	m->type = NEG_REFUSE;
	m->ver_min = m->ver_max = 1;
	m->outcome.result = NEG_RESULT_REFUSE;
	m->outcome.reason = NEG_R_BUSY;
}

/* A side with the link-ack capability, and a future bit kept as is. */
static void
make_offer_flow(struct neg_msg *m)
{
	make_offer(m);
	m->params.flow_caps = NEG_FLOW_LINK_ACK | 0x80000000u;
}

static void
make_decision_flow(struct neg_msg *m)
{
	make_decision_tls(m);
	m->params.flow_caps = NEG_FLOW_LINK_ACK;
}

typedef void (*maker_fn)(struct neg_msg *);
static const maker_fn makers[] = {
	make_offer, make_decision_tls, make_decision_plain, make_refuse,
	make_refuse_bare, make_offer_flow, make_decision_flow,
};
#define N_MAKERS (sizeof(makers) / sizeof(makers[0]))

static void
assert_msg_eq(const struct neg_msg *a, const struct neg_msg *b)
{
	const struct neg_params *p = &a->params, *q = &b->params;

	cr_assert_eq(a->type, b->type);
	cr_assert_eq(a->ver_min, b->ver_min);
	cr_assert_eq(a->ver_max, b->ver_max);
	cr_assert_str_eq(p->node, q->node);
	cr_assert_eq(p->tls_mode, q->tls_mode);
	cr_assert_eq(p->tls_min, q->tls_min);
	cr_assert_eq(p->tls_max, q->tls_max);
	cr_assert_eq(p->n_ciphers, q->n_ciphers);
	cr_assert_arr_eq(p->ciphers, q->ciphers, p->n_ciphers * 2u);
	cr_assert_eq(p->cert_present, q->cert_present);
	cr_assert_eq(p->cert_want, q->cert_want);
	cr_assert_eq(p->max_streams, q->max_streams);
	cr_assert_eq(p->window, q->window);
	cr_assert_eq(p->max_frame, q->max_frame);
	cr_assert_eq(p->keepalive_ms, q->keepalive_ms);
	cr_assert_arr_eq(p->nonce, q->nonce, NEG_NONCE_LEN);
	cr_assert_eq(p->flow_caps, q->flow_caps);
	cr_assert_eq(a->outcome.result, b->outcome.result);
	cr_assert_eq(a->outcome.reason, b->outcome.reason);
	cr_assert_eq(a->outcome.tls_min, b->outcome.tls_min);
	cr_assert_eq(a->outcome.tls_max, b->outcome.tls_max);
	cr_assert_eq(a->outcome.n_ciphers, b->outcome.n_ciphers);
	cr_assert_arr_eq(a->outcome.ciphers, b->outcome.ciphers,
			 a->outcome.n_ciphers * 2u);
	cr_assert_str_eq(a->text, b->text);
}

static size_t
encode_ok(const struct neg_msg *m, uint8_t *out)
{
	int n = neg_encode(m, out, BIG);

	cr_assert_gt(n, NEG_HDR_LEN, "encode failed for type %d", m->type);
	return (size_t)n;
}

/* Decodes buf whole; returns the decoder (caller frees). */
static struct neg_decoder *
decode(const uint8_t *buf, size_t len,
       enum neg_status *st, size_t *consumed)
{
	struct neg_decoder *d = neg_decoder_new();

	cr_assert_not_null(d);
	*st = neg_decoder_feed(d, buf, len, consumed);
	return d;
}

static void
expect_fail(const uint8_t *buf, size_t len, enum neg_err err,
	    uint16_t field)
{
	enum neg_status st;
	size_t used;
	struct neg_decoder *d = decode(buf, len, &st, &used);

	if (st == NEG_NEED_MORE)
		st = neg_decoder_finish(d);
	cr_assert_eq(st, NEG_FAIL, "expected failure %s",
		     neg_err_str(err));
	cr_assert_eq(neg_decoder_error(d), err, "got '%s', want '%s'",
		     neg_err_str(neg_decoder_error(d)), neg_err_str(err));
	cr_assert_eq(neg_decoder_error_field(d), field,
		     "error field %u, want %u", neg_decoder_error_field(d),
		     field);
	cr_assert_null(neg_decoder_msg(d));
	neg_decoder_free(d);
}

static void
expect_done(const uint8_t *buf, size_t len, struct neg_msg *out)
{
	enum neg_status st;
	size_t used;
	struct neg_decoder *d = decode(buf, len, &st, &used);

	cr_assert_eq(st, NEG_DONE, "decode failed: %s field %u",
		     neg_err_str(neg_decoder_error(d)),
		     neg_decoder_error_field(d));
	cr_assert_eq(used, len);
	if (out)
		*out = *neg_decoder_msg(d);
	neg_decoder_free(d);
}

/* ---- building mutated messages ----------------------------------------- */

static void
set_body_len(uint8_t *m, size_t body)
{
	m[12] = (uint8_t)(body >> 8);
	m[13] = (uint8_t)body;
}

/* Copies a valid message, replacing the value of every TLV of type f with
 * val (or dropping it when vlen < 0).  Returns the new length. */
static size_t
with_field(const uint8_t *m, size_t len, uint16_t f,
	   const void *val, int vlen, uint8_t *out)
{
	size_t i = NEG_HDR_LEN, o = NEG_HDR_LEN;

	memmove(out, m, NEG_HDR_LEN);
	while (i < len) {
		uint16_t t = (uint16_t)(m[i] << 8 | m[i + 1]);
		size_t l = (size_t)(m[i + 2] << 8 | m[i + 3]);

		if ((t & 0x7fff) == f) {
			if (vlen >= 0) {
				out[o++] = (uint8_t)(f >> 8);
				out[o++] = (uint8_t)f;
				out[o++] = (uint8_t)(vlen >> 8);
				out[o++] = (uint8_t)vlen;
				memcpy(out + o, val, (size_t)vlen);
				o += (size_t)vlen;
			}
		} else {
			memmove(out + o, m + i, 4 + l);
			o += 4 + l;
		}
		i += 4 + l;
	}
	set_body_len(out, o - NEG_HDR_LEN);
	return o;
}

static size_t
append_tlv(const uint8_t *m, size_t len, uint16_t rawtype,
	   const void *val, size_t vlen, uint8_t *out)
{
	memmove(out, m, len);
	out[len] = (uint8_t)(rawtype >> 8);
	out[len + 1] = (uint8_t)rawtype;
	out[len + 2] = (uint8_t)(vlen >> 8);
	out[len + 3] = (uint8_t)vlen;
	if (vlen)
		memcpy(out + len + 4, val, vlen);
	set_body_len(out, len + 4 + vlen - NEG_HDR_LEN);
	return len + 4 + vlen;
}

static size_t
header(uint8_t *out, uint8_t vmin, uint8_t vmax, uint8_t type,
       uint16_t body)
{
	memcpy(out, neg_magic, NEG_MAGIC_LEN);
	out[8] = vmin;
	out[9] = vmax;
	out[10] = type;
	out[11] = 0;
	set_body_len(out, body);
	return NEG_HDR_LEN;
}

/* ---- round trips -------------------------------------------------------- */

Test(neg, magic_bytes)
{
	static const uint8_t want[] = { 0x89, 'T', 'P', 'X', '\r', '\n', 0x1a,
					'\n' };

	cr_assert_arr_eq(neg_magic, want, sizeof(want));
}

Test(neg, roundtrip_whole)
{
	uint8_t buf[BIG];
	struct neg_msg m, got;
	size_t k, len;

	for (k = 0; k < N_MAKERS; k++) {
		makers[k](&m);
		len = encode_ok(&m, buf);
		cr_assert_arr_eq(buf, neg_magic, NEG_MAGIC_LEN);
		cr_assert_eq(buf[10], m.type);
		cr_assert_eq(buf[11], 0);
		cr_assert_eq((size_t)(buf[12] << 8 | buf[13]), len - NEG_HDR_LEN);
		expect_done(buf, len, &got);
		assert_msg_eq(&m, &got);
	}
}

Test(neg, roundtrip_byte_at_a_time)
{
	uint8_t buf[BIG];
	struct neg_msg m;
	size_t k, i, len, used;

	for (k = 0; k < N_MAKERS; k++) {
		struct neg_decoder *d = neg_decoder_new();
		enum neg_status st = NEG_NEED_MORE;

		makers[k](&m);
		len = encode_ok(&m, buf);
		for (i = 0; i < len; i++) {
			cr_assert_eq(neg_decoder_feed(d, buf + i, 0, &used),
				     NEG_NEED_MORE);
			cr_assert_eq(used, 0);
			st = neg_decoder_feed(d, buf + i, 1, &used);
			cr_assert_eq(used, 1);
			cr_assert_eq(neg_decoder_offset(d), i + 1);
			if (i + 1 < len)
				cr_assert_eq(st, NEG_NEED_MORE, "done early at %zu", i);
		}
		cr_assert_eq(st, NEG_DONE);
		assert_msg_eq(&m, neg_decoder_msg(d));
		cr_assert_eq(neg_decoder_finish(d), NEG_DONE);
		neg_decoder_free(d);
	}
}

Test(neg, roundtrip_every_split)
{
	uint8_t buf[BIG];
	struct neg_msg m;
	size_t k, cut, len, u1, u2;

	for (k = 0; k < N_MAKERS; k++) {
		makers[k](&m);
		len = encode_ok(&m, buf);
		for (cut = 0; cut <= len; cut++) {
			struct neg_decoder *d = neg_decoder_new();
			enum neg_status s1, s2;

			s1 = neg_decoder_feed(d, buf, cut, &u1);
			cr_assert_eq(u1, cut);
			if (cut < len) {
				cr_assert_eq(s1, NEG_NEED_MORE);
				s2 = neg_decoder_feed(d, buf + cut, len - cut, &u2);
				cr_assert_eq(u2, len - cut);
				cr_assert_eq(s2, NEG_DONE);
			} else {
				cr_assert_eq(s1, NEG_DONE);
			}
			assert_msg_eq(&m, neg_decoder_msg(d));
			cr_assert_eq(neg_decoder_offset(d), len);
			neg_decoder_free(d);
		}
	}
}

Test(neg, trailing_bytes_not_consumed)
{
	uint8_t buf[BIG];
	struct neg_msg m, m2;
	size_t k, len, len2, used, extra;
	static const char tail[] = "\x16\x03\x01 TLS bytes follow";

	for (k = 0; k < N_MAKERS; k++) {
		struct neg_decoder *d = neg_decoder_new();

		makers[k](&m);
		len = encode_ok(&m, buf);
		memcpy(buf + len, tail, sizeof(tail));
		cr_assert_eq(neg_decoder_feed(d, buf, len + sizeof(tail), &used),
			     NEG_DONE);
		cr_assert_eq(used, len);
		cr_assert_eq(neg_decoder_offset(d), len);
		assert_msg_eq(&m, neg_decoder_msg(d));
		cr_assert_eq(neg_decoder_feed(d, buf + len, sizeof(tail), &used),
			     NEG_DONE);
		cr_assert_eq(used, 0);
		neg_decoder_free(d);
	}

	/* Two messages back to back: the second is left for a new decoder. */
	make_offer(&m);
	make_refuse(&m2);
	len = encode_ok(&m, buf);
	len2 = encode_ok(&m2, buf + len);
	for (extra = 0; extra <= len2; extra++) {
		struct neg_decoder *d = neg_decoder_new();

		cr_assert_eq(neg_decoder_feed(d, buf, len + extra, &used),
			     NEG_DONE);
		cr_assert_eq(used, len);
		neg_decoder_free(d);
	}
	expect_done(buf + len, len2, NULL);
}

Test(neg, truncated_every_prefix)
{
	uint8_t buf[BIG];
	struct neg_msg m;
	size_t k, cut, len, used;

	for (k = 0; k < N_MAKERS; k++) {
		makers[k](&m);
		len = encode_ok(&m, buf);
		for (cut = 0; cut < len; cut++) {
			struct neg_decoder *d = neg_decoder_new();

			cr_assert_eq(neg_decoder_feed(d, buf, cut, &used),
				     NEG_NEED_MORE);
			cr_assert_eq(neg_decoder_finish(d), NEG_FAIL);
			cr_assert_eq(neg_decoder_error(d), NEG_ERR_TRUNCATED);
			cr_assert_null(neg_decoder_msg(d));
			cr_assert_eq(neg_decoder_feed(d, buf + cut, len - cut,
						      &used), NEG_FAIL);
			cr_assert_eq(used, 0);
			neg_decoder_free(d);
		}
	}
}

Test(neg, free_null)
{
	neg_decoder_free(NULL);
}

/* ---- header errors ------------------------------------------------------ */

/* A TLS 1.2/1.3 ClientHello as a browser sends it (first bytes). */
static const uint8_t client_hello[] = {
	0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
	0x5a, 0x3e, 0x9b, 0x11, 0x47, 0x2c, 0x8d, 0x02, 0xe1, 0x90, 0x33,
	0x6f, 0x0a, 0xbc, 0x7e, 0x21, 0x58, 0xd4, 0x66, 0x09, 0x1f, 0xa2,
};

Test(neg, bad_magic_first_byte)
{
	static const char get[] = "GET / HTTP/1.1\r\nHost: relay\r\n\r\n";
	const uint8_t *p;
	size_t used, n;
	struct neg_decoder *d;

	d = neg_decoder_new();
	cr_assert_eq(neg_decoder_feed(d, client_hello, sizeof(client_hello),
				      &used), NEG_FAIL);
	cr_assert_eq(used, 1);
	cr_assert_eq(neg_decoder_offset(d), 1);
	cr_assert_eq(neg_decoder_error(d), NEG_ERR_BAD_MAGIC);
	n = neg_decoder_prefix(d, &p);
	cr_assert_eq(n, 16);
	cr_assert_arr_eq(p, client_hello, 16);
	cr_assert_str_eq(neg_sniff(p, n), "a TLS ClientHello");
	neg_decoder_free(d);

	d = neg_decoder_new();
	cr_assert_eq(neg_decoder_feed(d, (const uint8_t *)get, strlen(get),
				      &used), NEG_FAIL);
	cr_assert_eq(used, 1);
	cr_assert_eq(neg_decoder_error(d), NEG_ERR_BAD_MAGIC);
	n = neg_decoder_prefix(d, &p);
	cr_assert_eq(n, 16);
	cr_assert_str_eq(neg_sniff(p, n), "an HTTP request");
	neg_decoder_free(d);

	/* Byte at a time: the very first byte fails, and the prefix holds
	 * only the bytes offered before the failure. */
	d = neg_decoder_new();
	cr_assert_eq(neg_decoder_feed(d, client_hello, 1, &used), NEG_FAIL);
	cr_assert_eq(used, 1);
	cr_assert_eq(neg_decoder_feed(d, client_hello + 1, 1, &used),
		     NEG_FAIL);
	cr_assert_eq(used, 0);
	cr_assert_eq(neg_decoder_prefix(d, &p), 1);
	neg_decoder_free(d);
}

Test(neg, bad_magic_each_position)
{
	uint8_t buf[BIG];
	struct neg_msg m;
	size_t pos, used;

	make_offer(&m);
	encode_ok(&m, buf);
	for (pos = 0; pos < NEG_MAGIC_LEN; pos++) {
		uint8_t bad[BIG];
		struct neg_decoder *d = neg_decoder_new();

		memcpy(bad, buf, sizeof(bad));
		bad[pos] ^= 0x20;
		cr_assert_eq(neg_decoder_feed(d, bad, 40, &used), NEG_FAIL);
		cr_assert_eq(used, pos + 1);
		cr_assert_eq(neg_decoder_error(d), NEG_ERR_BAD_MAGIC);
		neg_decoder_free(d);
	}
}

Test(neg, header_version_checks)
{
	static const struct {
		uint8_t vmin, vmax;
		enum neg_err err;
	} cases[] = {
		{ 0, 0, NEG_ERR_MALFORMED },
		{ 0, 1, NEG_ERR_MALFORMED },
		{ 2, 1, NEG_ERR_MALFORMED },
		{ 3, 2, NEG_ERR_MALFORMED },
		{ 2, 2, NEG_ERR_BAD_VERSION },
		{ 2, 9, NEG_ERR_BAD_VERSION },
		{ 255, 255, NEG_ERR_BAD_VERSION },
	};
	uint8_t buf[NEG_HDR_LEN];
	size_t i, used;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct neg_decoder *d = neg_decoder_new();

		/* The body never arrives: the header alone decides. */
		header(buf, cases[i].vmin, cases[i].vmax, NEG_OFFER, 200);
		cr_assert_eq(neg_decoder_feed(d, buf, sizeof(buf), &used),
			     NEG_FAIL);
		cr_assert_eq(used, NEG_HDR_LEN);
		cr_assert_eq(neg_decoder_error(d), cases[i].err, "case %zu", i);
		neg_decoder_free(d);
	}
}

Test(neg, version_range_containing_ours_accepted)
{
	uint8_t buf[BIG];
	struct neg_msg m, got;
	size_t len;

	make_offer(&m);
	m.ver_max = 7;
	len = encode_ok(&m, buf);
	expect_done(buf, len, &got);
	cr_assert_eq(got.ver_min, 1);
	cr_assert_eq(got.ver_max, 7);

	m.ver_min = 2;
	cr_assert_eq(neg_encode(&m, buf, BIG), -1);
	m.ver_min = 0;
	cr_assert_eq(neg_encode(&m, buf, BIG), -1);
}

Test(neg, too_large)
{
	uint8_t buf[NEG_HDR_LEN];
	size_t used;
	struct neg_decoder *d;

	header(buf, 1, 1, NEG_OFFER, NEG_MAX_LEN - NEG_HDR_LEN + 1);
	d = neg_decoder_new();
	cr_assert_eq(neg_decoder_feed(d, buf, sizeof(buf), &used), NEG_FAIL);
	cr_assert_eq(used, NEG_HDR_LEN);
	cr_assert_eq(neg_decoder_error(d), NEG_ERR_TOO_LARGE);
	neg_decoder_free(d);

	header(buf, 1, 1, NEG_OFFER, 0xffff);
	expect_fail(buf, sizeof(buf), NEG_ERR_TOO_LARGE, 0);

	/* Exactly the limit is accepted as a header. */
	header(buf, 1, 1, NEG_OFFER, NEG_MAX_LEN - NEG_HDR_LEN);
	d = neg_decoder_new();
	cr_assert_eq(neg_decoder_feed(d, buf, sizeof(buf), &used),
		     NEG_NEED_MORE);
	neg_decoder_free(d);
}

Test(neg, max_size_message_with_padding)
{
	uint8_t buf[BIG], out[BIG], pad[NEG_MAX_LEN];
	struct neg_msg m, got;
	size_t len, n, room;

	make_offer(&m);
	len = encode_ok(&m, buf);
	room = NEG_MAX_LEN - len - 4;
	memset(pad, 0xee, sizeof(pad));
	n = append_tlv(buf, len, 0x7777, pad, room, out);
	cr_assert_eq(n, NEG_MAX_LEN);
	expect_done(out, n, &got);
	assert_msg_eq(&m, &got);
	n = append_tlv(buf, len, 0x7777, pad, room + 1, out);
	expect_fail(out, n, NEG_ERR_TOO_LARGE, 0);
}

Test(neg, bad_type)
{
	static const uint8_t types[] = { 0, 4, 5, 0x80, 255 };
	uint8_t buf[NEG_HDR_LEN];
	size_t i, used;

	for (i = 0; i < sizeof(types); i++) {
		struct neg_decoder *d = neg_decoder_new();

		header(buf, 1, 1, types[i], 100);
		cr_assert_eq(neg_decoder_feed(d, buf, sizeof(buf), &used),
			     NEG_FAIL);
		cr_assert_eq(neg_decoder_error(d), NEG_ERR_BAD_TYPE);
		neg_decoder_free(d);
	}
}

Test(neg, flags_ignored_on_receipt)
{
	uint8_t buf[BIG];
	struct neg_msg m, got;
	size_t len;

	make_offer(&m);
	len = encode_ok(&m, buf);
	buf[11] = 0xff;
	expect_done(buf, len, &got);
	assert_msg_eq(&m, &got);
}

Test(neg, empty_body_is_missing_fields)
{
	uint8_t buf[NEG_HDR_LEN];

	header(buf, 1, 1, NEG_OFFER, 0);
	expect_fail(buf, sizeof(buf), NEG_ERR_MISSING_FIELD, NEG_F_NODE);
	header(buf, 1, 1, NEG_REFUSE, 0);
	expect_fail(buf, sizeof(buf), NEG_ERR_MISSING_FIELD, NEG_F_OUTCOME);
}

/* ---- TLV framing -------------------------------------------------------- */

Test(neg, tlv_overrun)
{
	uint8_t buf[BIG], out[BIG];
	struct neg_msg m;
	size_t len, n;

	make_offer(&m);
	len = encode_ok(&m, buf);

	/* A value that runs one byte past the body. */
	n = append_tlv(buf, len, 0x0777, "abcd", 4, out);
	out[n - 4 - 1] = 5;
	expect_fail(out, n, NEG_ERR_MALFORMED, 0x0777);

	/* Only part of a TLV header left. */
	memcpy(out, buf, len);
	out[len] = 0x00;
	out[len + 1] = 0x01;
	set_body_len(out, len + 2 - NEG_HDR_LEN);
	expect_fail(out, len + 2, NEG_ERR_MALFORMED, 0);

	/* The first TLV's length claims the whole 0xffff. */
	memcpy(out, buf, len);
	out[NEG_HDR_LEN + 2] = 0xff;
	out[NEG_HDR_LEN + 3] = 0xff;
	expect_fail(out, len, NEG_ERR_MALFORMED, NEG_F_NODE);
}

Test(neg, unknown_fields)
{
	uint8_t buf[BIG], out[BIG];
	struct neg_msg m, got;
	size_t len, n, k;

	for (k = 0; k < N_MAKERS; k++) {
		makers[k](&m);
		len = encode_ok(&m, buf);

		n = append_tlv(buf, len, 0x1234, "skip me", 7, out);
		expect_done(out, n, &got);
		assert_msg_eq(&m, &got);

		n = append_tlv(buf, len, 0x0000, NULL, 0, out);
		n = append_tlv(out, n, 0x7fff, "x", 1, out);
		expect_done(out, n, &got);
		assert_msg_eq(&m, &got);

		n = append_tlv(buf, len, 0x8000 | 0x1234, "must know", 9, out);
		expect_fail(out, n, NEG_ERR_UNKNOWN_CRITICAL, 0x1234);
	}
}

Test(neg, known_field_with_critical_bit)
{
	uint8_t buf[BIG];
	struct neg_msg m, got;
	size_t len;

	make_offer(&m);
	len = encode_ok(&m, buf);
	buf[NEG_HDR_LEN] |= 0x80;   /* NODE is first */
	expect_done(buf, len, &got);
	assert_msg_eq(&m, &got);
}

Test(neg, duplicate_fields)
{
	uint8_t buf[BIG], out[BIG];
	struct neg_msg m;
	size_t len, n;
	uint8_t mode = TLS_MODE_ALLOW;

	make_offer(&m);
	len = encode_ok(&m, buf);
	n = append_tlv(buf, len, NEG_F_NODE, "other", 5, out);
	expect_fail(out, n, NEG_ERR_DUPLICATE_FIELD, NEG_F_NODE);
	n = append_tlv(buf, len, NEG_F_TLS_MODE | NEG_F_CRITICAL, &mode, 1,
		       out);
	expect_fail(out, n, NEG_ERR_DUPLICATE_FIELD, NEG_F_TLS_MODE);

	make_refuse(&m);
	len = encode_ok(&m, buf);
	n = append_tlv(buf, len, NEG_F_TEXT, "again", 5, out);
	expect_fail(out, n, NEG_ERR_DUPLICATE_FIELD, NEG_F_TEXT);
}

Test(neg, missing_fields)
{
	static const uint16_t param_fields[] = {
		NEG_F_NODE, NEG_F_TLS_MODE, NEG_F_TLS_VERSIONS, NEG_F_CIPHERS,
		NEG_F_CERT, NEG_F_MUX, NEG_F_KEEPALIVE, NEG_F_NONCE,
	};
	uint8_t buf[BIG], out[BIG];
	struct neg_msg m, got;
	size_t len, n, i;

	make_offer(&m);
	len = encode_ok(&m, buf);
	for (i = 0; i < 8; i++) {
		n = with_field(buf, len, param_fields[i], NULL, -1, out);
		expect_fail(out, n, NEG_ERR_MISSING_FIELD, param_fields[i]);
	}

	make_decision_tls(&m);
	len = encode_ok(&m, buf);
	for (i = 0; i < 8; i++) {
		n = with_field(buf, len, param_fields[i], NULL, -1, out);
		expect_fail(out, n, NEG_ERR_MISSING_FIELD, param_fields[i]);
	}
	n = with_field(buf, len, NEG_F_OUTCOME, NULL, -1, out);
	expect_fail(out, n, NEG_ERR_MISSING_FIELD, NEG_F_OUTCOME);
	n = with_field(buf, len, NEG_F_COMMON_CIPHERS, NULL, -1, out);
	expect_fail(out, n, NEG_ERR_MISSING_FIELD, NEG_F_COMMON_CIPHERS);
	n = with_field(buf, len, NEG_F_TEXT, NULL, -1, out);
	expect_done(out, n, &got);
	cr_assert_str_eq(got.text, "");

	make_refuse(&m);
	len = encode_ok(&m, buf);
	n = with_field(buf, len, NEG_F_OUTCOME, NULL, -1, out);
	expect_fail(out, n, NEG_ERR_MISSING_FIELD, NEG_F_OUTCOME);
	n = with_field(buf, len, NEG_F_NODE, NULL, -1, out);
	n = with_field(out, n, NEG_F_TEXT, NULL, -1, out);
	expect_done(out, n, &got);
	cr_assert_str_eq(got.params.node, "");
	cr_assert_str_eq(got.text, "");
	cr_assert_eq(got.outcome.reason, NEG_R_REQUIRED_BY_ACCEPTOR);
}

/* ---- field values ------------------------------------------------------- */

struct field_case {
	uint8_t msg;    /* index into makers[] */
	uint16_t field;
	const char *val;
	int len;
	int ok;
};

#define V(s) s, (int)sizeof(s) - 1

static const struct field_case field_cases[] = {
	/* NODE */
	{ 0, NEG_F_NODE, V(""), 0 },
	{ 0, NEG_F_NODE, V("a b"), 0 },
	{ 0, NEG_F_NODE, V("a/b"), 0 },
	{ 0, NEG_F_NODE, V("a\0b"), 0 },
	{ 0, NEG_F_NODE, V("caf\xc3\xa9"), 0 },
	{ 0, NEG_F_NODE, V("x"), 1 },
	{ 0, NEG_F_NODE, V("A-z_0.9"), 1 },
	{ 3, NEG_F_NODE, V(""), 0 },
	{ 3, NEG_F_NODE, V("bad node"), 0 },
	/* TLS_MODE */
	{ 0, NEG_F_TLS_MODE, V("\x04"), 0 },
	{ 0, NEG_F_TLS_MODE, V("\xff"), 0 },
	{ 0, NEG_F_TLS_MODE, V("\x01\x00"), 0 },
	{ 0, NEG_F_TLS_MODE, V(""), 0 },
	{ 0, NEG_F_TLS_MODE, V("\x03"), 1 },
	{ 0, NEG_F_TLS_MODE, V("\x00"), 1 },
	/* TLS_VERSIONS */
	{ 0, NEG_F_TLS_VERSIONS, V("\x03\x02\x03\x03"), 0 },
	{ 0, NEG_F_TLS_VERSIONS, V("\x03\x04\x03\x03"), 0 },
	{ 0, NEG_F_TLS_VERSIONS, V("\x03\x03\x03\x05"), 0 },
	{ 0, NEG_F_TLS_VERSIONS, V("\x00\x00\x00\x00"), 0 },
	{ 0, NEG_F_TLS_VERSIONS, V("\x03\x03\x03"), 0 },
	{ 0, NEG_F_TLS_VERSIONS, V("\x03\x03\x03\x04\x00"), 0 },
	{ 0, NEG_F_TLS_VERSIONS, V("\x03\x04\x03\x04"), 1 },
	{ 0, NEG_F_TLS_VERSIONS, V("\x03\x03\x03\x03"), 1 },
	/* CIPHERS */
	{ 0, NEG_F_CIPHERS, V("\x13\x01\x13"), 0 },
	{ 0, NEG_F_CIPHERS, V(""), 1 },
	{ 0, NEG_F_CIPHERS, V("\x00\x00\xff\xff"), 1 },
	/* CERT */
	{ 0, NEG_F_CERT, V("\x02\x00"), 0 },
	{ 0, NEG_F_CERT, V("\x00\x03"), 0 },
	{ 0, NEG_F_CERT, V("\x00"), 0 },
	{ 0, NEG_F_CERT, V("\x00\x00\x00"), 0 },
	{ 0, NEG_F_CERT, V("\x01\x02"), 1 },
	/* MUX */
	{ 0, NEG_F_MUX, V("\0\0\0\0" "\0\0\x04\0" "\0\0\x04\0"), 0 },
	{ 0, NEG_F_MUX, V("\0\0\0\1" "\0\0\x03\xff" "\0\0\x04\0"), 0 },
	{ 0, NEG_F_MUX, V("\0\0\0\1" "\0\0\x04\0" "\0\0\x03\xff"), 0 },
	{ 0, NEG_F_MUX, V("\0\0\0\1" "\0\0\x04\0" "\1\0\0\0"), 0 },
	{ 0, NEG_F_MUX, V("\0\0\0\1" "\0\0\x04\0" "\0\0\x04"), 0 },
	{ 0, NEG_F_MUX, V("\0\0\0\1" "\0\0\x04\0" "\0\0\x04\0"), 1 },
	{ 0, NEG_F_MUX, V("\xff\xff\xff\xff" "\xff\xff\xff\xff" "\0\xff\xff\xff"), 1 },
	/* KEEPALIVE */
	{ 0, NEG_F_KEEPALIVE, V("\0\0\0"), 0 },
	{ 0, NEG_F_KEEPALIVE, V("\0\0\0\0\0"), 0 },
	{ 0, NEG_F_KEEPALIVE, V("\0\0\0\0"), 1 },
	{ 0, NEG_F_KEEPALIVE, V("\xff\xff\xff\xff"), 1 },
	/* NONCE */
	{ 0, NEG_F_NONCE, V("0123456789abcde"), 0 },
	{ 0, NEG_F_NONCE, V("0123456789abcdefg"), 0 },
	{ 0, NEG_F_NONCE, V(""), 0 },
	{ 0, NEG_F_NONCE, V("0123456789abcdef"), 1 },
	/* OUTCOME in a DECISION: result, reason, tls_min, tls_max */
	{ 1, NEG_F_OUTCOME, V("\x02" "\x00\x65" "\0\0\0\0"), 0 },
	{ 1, NEG_F_OUTCOME, V("\x03" "\x00\x01" "\x03\x04\x03\x04"), 0 },
	{ 1, NEG_F_OUTCOME, V("\x01" "\x00\x65" "\x03\x04\x03\x04"), 0 },
	{ 1, NEG_F_OUTCOME, V("\x00" "\x00\x64" "\0\0\0\0"), 0 },
	{ 1, NEG_F_OUTCOME, V("\x00" "\x00\x63" "\0\0\0\0"), 1 },
	{ 1, NEG_F_OUTCOME, V("\x01" "\x00\x01" "\0\0\0\0"), 0 },
	{ 1, NEG_F_OUTCOME, V("\x01" "\x00\x01" "\x03\x04\x03\x03"), 0 },
	{ 1, NEG_F_OUTCOME, V("\x00" "\x00\x02" "\x03\x03\x03\x03"), 0 },
	{ 1, NEG_F_OUTCOME, V("\x01" "\x00\x01" "\x03\x04\x03"), 0 },
	{ 1, NEG_F_OUTCOME, V("\x01" "\x00\x01" "\x03\x03\x03\x04"), 1 },
	{ 1, NEG_F_OUTCOME, V("\x00" "\x00\x02" "\0\0\0\0"), 1 },
	/* OUTCOME in a REFUSE */
	{ 3, NEG_F_OUTCOME, V("\x00" "\x00\x02" "\0\0\0\0"), 0 },
	{ 3, NEG_F_OUTCOME, V("\x01" "\x00\x65" "\x03\x04\x03\x04"), 0 },
	{ 3, NEG_F_OUTCOME, V("\x02" "\x00\x05" "\0\0\0\0"), 0 },
	{ 3, NEG_F_OUTCOME, V("\x02" "\x00\x66" "\x03\x04\x03\x04"), 0 },
	{ 3, NEG_F_OUTCOME, V("\x02" "\x00\x66" "\0\0\0\0"), 1 },
	{ 3, NEG_F_OUTCOME, V("\x02" "\x00\x63" "\0\0\0\0"), 0 },
	{ 3, NEG_F_OUTCOME, V("\x02" "\x00\x64" "\0\0\0\0"), 1 },
	{ 3, NEG_F_OUTCOME, V("\x02" "\x01\x00" "\0\0\0\0"), 1 },
	/* COMMON_CIPHERS */
	{ 1, NEG_F_COMMON_CIPHERS, V("\x13"), 0 },
	{ 1, NEG_F_COMMON_CIPHERS, V(""), 1 },
	/* TEXT */
	{ 1, NEG_F_TEXT, V("a\0b"), 0 },
	{ 3, NEG_F_TEXT, V("\0"), 0 },
	{ 3, NEG_F_TEXT, V("caf\xc3\xa9 ok"), 1 },
};

Test(neg, field_values)
{
	uint8_t buf[BIG], out[BIG];
	struct neg_msg m, got;
	size_t i, len, n;

	for (i = 0; i < sizeof(field_cases) / sizeof(field_cases[0]); i++) {
		const struct field_case *c = &field_cases[i];

		makers[c->msg](&m);
		len = encode_ok(&m, buf);
		n = with_field(buf, len, c->field, c->val, c->len, out);
		if (c->ok) {
			expect_done(out, n, &got);
		} else {
			cr_log_info("field case %zu", i);
			expect_fail(out, n, NEG_ERR_BAD_FIELD, c->field);
		}
	}
}

Test(neg, field_lengths_at_limits)
{
	uint8_t buf[BIG], out[BIG], val[600];
	struct neg_msg m, got;
	size_t len, n, i;

	make_offer(&m);
	len = encode_ok(&m, buf);

	memset(val, 'n', sizeof(val));
	n = with_field(buf, len, NEG_F_NODE, val, NEG_NODE_MAX, out);
	expect_done(out, n, &got);
	cr_assert_eq(strlen(got.params.node), NEG_NODE_MAX);
	n = with_field(buf, len, NEG_F_NODE, val, NEG_NODE_MAX + 1, out);
	expect_fail(out, n, NEG_ERR_BAD_FIELD, NEG_F_NODE);

	for (i = 0; i < 2 * (NEG_CIPHERS_MAX + 1); i += 2) {
		val[i] = 0x13;
		val[i + 1] = (uint8_t)i;
	}
	n = with_field(buf, len, NEG_F_CIPHERS, val, 2 * NEG_CIPHERS_MAX, out);
	expect_done(out, n, &got);
	cr_assert_eq(got.params.n_ciphers, NEG_CIPHERS_MAX);
	cr_assert_eq(got.params.ciphers[31], 0x133e);
	n = with_field(buf, len, NEG_F_CIPHERS, val,
		       2 * (NEG_CIPHERS_MAX + 1), out);
	expect_fail(out, n, NEG_ERR_BAD_FIELD, NEG_F_CIPHERS);

	make_decision_tls(&m);
	len = encode_ok(&m, buf);
	n = with_field(buf, len, NEG_F_COMMON_CIPHERS, val,
		       2 * NEG_CIPHERS_MAX, out);
	expect_done(out, n, &got);
	cr_assert_eq(got.outcome.n_ciphers, NEG_CIPHERS_MAX);
	n = with_field(buf, len, NEG_F_COMMON_CIPHERS, val,
		       2 * (NEG_CIPHERS_MAX + 1), out);
	expect_fail(out, n, NEG_ERR_BAD_FIELD, NEG_F_COMMON_CIPHERS);

	memset(val, 't', sizeof(val));
	n = with_field(buf, len, NEG_F_TEXT, val, NEG_TEXT_MAX, out);
	expect_done(out, n, &got);
	cr_assert_eq(strlen(got.text), NEG_TEXT_MAX);
	n = with_field(buf, len, NEG_F_TEXT, val, NEG_TEXT_MAX + 1, out);
	expect_fail(out, n, NEG_ERR_BAD_FIELD, NEG_F_TEXT);
}

Test(neg, unknown_suites_kept)
{
	uint8_t buf[BIG];
	struct neg_msg m, got;
	size_t len;

	make_offer(&m);
	len = encode_ok(&m, buf);
	expect_done(buf, len, &got);
	cr_assert_eq(got.params.n_ciphers, 4);
	cr_assert_eq(got.params.ciphers[3], 0xBEEF);
}

Test(neg, fields_outside_their_type)
{
	static const uint8_t outcome[] = { 0, 0, 2, 0, 0, 0, 0 };
	uint8_t buf[BIG], out[BIG], mode = 1;
	struct neg_msg m;
	size_t len, n;

	make_offer(&m);
	len = encode_ok(&m, buf);
	n = append_tlv(buf, len, NEG_F_OUTCOME, outcome, sizeof(outcome), out);
	expect_fail(out, n, NEG_ERR_BAD_FIELD, NEG_F_OUTCOME);
	n = append_tlv(buf, len, NEG_F_COMMON_CIPHERS, NULL, 0, out);
	expect_fail(out, n, NEG_ERR_BAD_FIELD, NEG_F_COMMON_CIPHERS);
	n = append_tlv(buf, len, NEG_F_TEXT, "hi", 2, out);
	expect_fail(out, n, NEG_ERR_BAD_FIELD, NEG_F_TEXT);

	make_refuse(&m);
	len = encode_ok(&m, buf);
	n = append_tlv(buf, len, NEG_F_TLS_MODE, &mode, 1, out);
	expect_fail(out, n, NEG_ERR_BAD_FIELD, NEG_F_TLS_MODE);
	n = append_tlv(buf, len, NEG_F_COMMON_CIPHERS, NULL, 0, out);
	expect_fail(out, n, NEG_ERR_BAD_FIELD, NEG_F_COMMON_CIPHERS);
}

/* ---- encoder ------------------------------------------------------------ */

Test(neg, encode_rejects_invalid)
{
	uint8_t buf[BIG];
	struct neg_msg m;
	int i;

	for (i = 0; i < 24; i++) {
		make_decision_tls(&m);
		switch (i) {
		case 0: m.type = 0; break;
		case 1: m.type = 4; break;
		case 2: m.params.node[0] = '\0'; break;
		case 3: memset(m.params.node, 'a', sizeof(m.params.node)); break;
		case 4: strcpy(m.params.node, "has space"); break;
		case 5: m.params.tls_mode = 4; break;
		case 6: m.params.tls_min = 0x0302; break;
		case 7: m.params.tls_min = TLSV_1_3; m.params.tls_max = TLSV_1_2; break;
		case 8: m.params.n_ciphers = NEG_CIPHERS_MAX + 1; break;
		case 9: m.params.cert_present = 2; break;
		case 10: m.params.cert_want = 3; break;
		case 11: m.params.max_streams = 0; break;
		case 12: m.params.window = 1023; break;
		case 13: m.params.max_frame = 1023; break;
		case 14: m.params.max_frame = 16777216; break;
		case 15: m.outcome.result = NEG_RESULT_REFUSE; break;
		case 16: m.outcome.reason = NEG_R_NO_COMMON_CIPHER; break;
		case 17: m.outcome.tls_min = 0; break;
		case 18: m.outcome.n_ciphers = NEG_CIPHERS_MAX + 1; break;
		case 19: memset(m.text, 'x', sizeof(m.text)); break;
		case 20: m.ver_min = 0; break;
		case 21: m.ver_min = 2; m.ver_max = 1; break;
		case 22: m.type = NEG_REFUSE; break; /* outcome is not a refusal */
		case 23: make_refuse(&m); strcpy(m.params.node, "a b"); break;
		}
		cr_assert_eq(neg_encode(&m, buf, BIG), -1, "case %d", i);
	}
}

Test(neg, encode_capacity)
{
	uint8_t buf[BIG];
	struct neg_msg m;
	size_t k, len, cap;

	for (k = 0; k < N_MAKERS; k++) {
		makers[k](&m);
		len = encode_ok(&m, buf);
		for (cap = 0; cap < len; cap++) {
			memset(buf, 0x5a, sizeof(buf));
			cr_assert_eq(neg_encode(&m, buf, cap), -1);
			cr_assert_eq(buf[cap], 0x5a, "wrote past cap %zu", cap);
		}
		cr_assert_eq(neg_encode(&m, buf, len), (int)len);
	}
}

Test(neg, encode_refuse_ignores_other_params)
{
	uint8_t buf[BIG], buf2[BIG];
	struct neg_msg m, m2, got;
	int n, n2;

	make_refuse(&m);
	m2 = m;
	fill_params(&m2.params, "relay-9", TLS_MODE_REQUIRE);
	m2.outcome.n_ciphers = 3;
	n = neg_encode(&m, buf, BIG);
	n2 = neg_encode(&m2, buf2, BIG);
	cr_assert_gt(n, 0);
	cr_assert_eq(n, n2);
	cr_assert_arr_eq(buf, buf2, (size_t)n);
	expect_done(buf2, (size_t)n2, &got);
	assert_msg_eq(&m, &got);
}

/* ---- fuzzing ------------------------------------------------------------ */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t
rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 11);
}

/* Decodes buf in random chunks and checks the decoder's invariants.
 * Returns the final status. */
static enum neg_status
fuzz_one(const uint8_t *buf, size_t len,
	 enum neg_err *err)
{
	struct neg_decoder *d = neg_decoder_new();
	enum neg_status st = NEG_NEED_MORE;
	size_t off = 0, used;

	while (off < len && st == NEG_NEED_MORE) {
		size_t chunk = 1 + rnd() % (len - off);

		if (rnd() % 4 == 0)
			chunk = 1;
		st = neg_decoder_feed(d, buf + off, chunk, &used);
		cr_assert_leq(used, chunk);
		if (st == NEG_NEED_MORE)
			cr_assert_eq(used, chunk);
		off += used;
		cr_assert_eq(neg_decoder_offset(d), off);
		cr_assert_leq(off, NEG_MAX_LEN);
	}
	if (st == NEG_NEED_MORE)
		st = neg_decoder_finish(d);
	cr_assert(st == NEG_DONE || st == NEG_FAIL);
	*err = neg_decoder_error(d);
	if (st == NEG_FAIL) {
		cr_assert_neq(*err, NEG_ERR_NONE);
		cr_assert_str_neq(neg_err_str(*err), "unknown negotiation error");
		cr_assert_null(neg_decoder_msg(d));
	} else {
		/* Whatever the decoder accepts, the encoder must accept and
		 * reproduce. */
		uint8_t re[BIG];
		struct neg_msg got;
		int n = neg_encode(neg_decoder_msg(d), re, sizeof(re));

		cr_assert_eq(*err, NEG_ERR_NONE);
		cr_assert_gt(n, 0, "decoded message does not re-encode");
		expect_done(re, (size_t)n, &got);
		assert_msg_eq(neg_decoder_msg(d), &got);
	}
	neg_decoder_free(d);
	return st;
}

/* Whole-buffer decoding must agree with the chunked one. */
static void
fuzz_check_whole(const uint8_t *buf, size_t len,
		 enum neg_status want, enum neg_err err)
{
	enum neg_status st;
	size_t used;
	struct neg_decoder *d = decode(buf, len, &st, &used);

	if (st == NEG_NEED_MORE)
		st = neg_decoder_finish(d);
	cr_assert_eq(st, want);
	cr_assert_eq(neg_decoder_error(d), err);
	neg_decoder_free(d);
}

Test(neg, fuzz_random_buffers, .timeout = 120)
{
	uint8_t buf[BIG];
	enum neg_err err;
	enum neg_status st;
	int i;
	size_t len, j;

	for (i = 0; i < 20000; i++) {
		len = rnd() % 600;
		for (j = 0; j < len; j++)
			buf[j] = (uint8_t)rnd();
		/* Most buffers get past the magic so the header and body
		 * checks are exercised too. */
		if (i % 4 && len >= NEG_MAGIC_LEN)
			memcpy(buf, neg_magic, NEG_MAGIC_LEN);
		if (i % 4 >= 2 && len >= NEG_HDR_LEN) {
			buf[8] = 1;
			buf[9] = (uint8_t)(1 + rnd() % 2);
			buf[10] = (uint8_t)(1 + rnd() % 3);
			set_body_len(buf, rnd() % (len - NEG_HDR_LEN + 1));
		}
		st = fuzz_one(buf, len, &err);
		if (i % 8 == 0)
			fuzz_check_whole(buf, len, st, err);
	}
}

Test(neg, fuzz_mutations, .timeout = 120)
{
	uint8_t valid[N_MAKERS][BIG], buf[BIG];
	size_t vlen[N_MAKERS], len, k, j, nmut;
	struct neg_msg m;
	enum neg_err err;
	enum neg_status st;
	int i, done = 0;

	for (k = 0; k < N_MAKERS; k++) {
		makers[k](&m);
		vlen[k] = encode_ok(&m, valid[k]);
	}
	for (i = 0; i < 20000; i++) {
		k = rnd() % N_MAKERS;
		len = vlen[k];
		memcpy(buf, valid[k], len);
		nmut = 1 + rnd() % 4;
		for (j = 0; j < nmut; j++) {
			size_t pos = rnd() % len;

			switch (rnd() % 4) {
			case 0:
				buf[pos] = (uint8_t)rnd();
				break;
			case 1:
				buf[pos] ^= (uint8_t)(1u << (rnd() % 8));
				break;
			case 2:
				buf[pos] = (uint8_t)(rnd() % 2 ? 0 : 0xff);
				break;
			case 3:
				if (len > NEG_HDR_LEN)
					len = NEG_HDR_LEN + rnd() % (len - NEG_HDR_LEN);
				break;
			}
		}
		st = fuzz_one(buf, len, &err);
		done += st == NEG_DONE;
		if (i % 8 == 0)
			fuzz_check_whole(buf, len, st, err);
	}
	/* Some mutations (e.g. nonce bytes) leave a valid message. */
	cr_assert_gt(done, 100);
	cr_assert_lt(done, 20000);
}

/* ---- sniffing and strings ----------------------------------------------- */

Test(neg, sniff)
{
	static const struct {
		const char *bytes;
		size_t len;
		const char *want;
	} cases[] = {
		{ "", 0, "an empty stream" },
		{ "\x16\x03\x01\x02\x00", 5, "a TLS ClientHello" },
		{ "\x16\x03\x03", 3, "a TLS ClientHello" },
		{ "\x16\x03\x04", 3, "a TLS ClientHello" },
		{ "\x16\x03\x05", 3, "a TLS record" },
		{ "\x17\x03\x03\x00\x10", 5, "a TLS record" },
		{ "\x15\x03", 2, "a TLS record" },
		{ "\x14\x03\x03", 3, "a TLS record" },
		{ "\x18\x03\x03", 3, "unrecognised bytes" },
		{ "GET / HTTP/1.1\r\n", 16, "an HTTP request" },
		{ "POST /x", 7, "an HTTP request" },
		{ "PUT /", 5, "an HTTP request" },
		{ "HEAD /", 6, "an HTTP request" },
		{ "OPTIONS *", 9, "an HTTP request" },
		{ "CONNECT a:1", 11, "an HTTP request" },
		{ "GE /", 4, "unrecognised bytes" },
		{ "ABCDEFGH /", 10, "unrecognised bytes" },
		{ "get /", 5, "unrecognised bytes" },
		{ "GET", 3, "unrecognised bytes" },
		{ "HTTP/1.1 200 OK", 15, "an HTTP response" },
		{ "SSH-2.0-OpenSSH_9.2", 19, "an SSH banner" },
		{ "\x89TPX\r\n\x1a\n\x01\x01", 10, "a tlsplex negotiation message" },
		{ "\x89TPX", 4, "a tlsplex negotiation message" },
		{ "\x00\x01\x02", 3, "unrecognised bytes" },
		{ "hello", 5, "unrecognised bytes" },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_assert_str_eq(neg_sniff((const uint8_t *)cases[i].bytes,
					   cases[i].len), cases[i].want,
				 "case %zu", i);
	cr_assert_str_eq(neg_sniff(client_hello, sizeof(client_hello)),
			 "a TLS ClientHello");
}

static void
assert_distinct(const char **s, size_t n, const char *unknown)
{
	size_t i, j;

	for (i = 0; i < n; i++) {
		cr_assert_not_null(s[i]);
		cr_assert_gt(strlen(s[i]), 0);
		cr_assert_str_neq(s[i], unknown);
		for (j = 0; j < i; j++)
			cr_assert_str_neq(s[i], s[j], "%zu and %zu", i, j);
	}
}

Test(neg, strings)
{
	static const uint16_t reasons[] = {
		NEG_R_NONE, NEG_R_TLS_AGREED, NEG_R_NEITHER_ASKED,
		NEG_R_DIALER_OFF, NEG_R_ACCEPTOR_OFF,
		NEG_R_REQUIRED_BY_DIALER, NEG_R_REQUIRED_BY_ACCEPTOR,
		NEG_R_NO_COMMON_VERSION, NEG_R_NO_COMMON_CIPHER,
		NEG_R_NO_COMMON_PROTOCOL, NEG_R_MALFORMED, NEG_R_UNKNOWN_PEER,
		NEG_R_BUSY, NEG_R_DECISION_MISMATCH, NEG_R_POLICY_VIOLATION,
		NEG_R_CERT_REQUIRED,
	};
	const char *s[32];
	size_t i;

	for (i = 0; i <= NEG_ERR_UNKNOWN_CRITICAL; i++)
		s[i] = neg_err_str((enum neg_err)i);
	assert_distinct(s, i, neg_err_str((enum neg_err)99));

	for (i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
		s[i] = neg_reason_str(reasons[i]);
	assert_distinct(s, i, neg_reason_str(999));
	cr_assert_str_eq(neg_reason_str(NEG_R_REQUIRED_BY_ACCEPTOR),
			 "the accepting side requires TLS but the dialling side has TLS off");

	cr_assert_str_eq(tls_version_str(0x0303), "TLSv1.2");
	cr_assert_str_eq(tls_version_str(0x0304), "TLSv1.3");
	cr_assert_str_eq(tls_version_str(0x0302), "unknown");
	cr_assert_str_eq(tls_mode_str(0), "off");
	cr_assert_str_eq(tls_mode_str(1), "allow");
	cr_assert_str_eq(tls_mode_str(2), "prefer");
	cr_assert_str_eq(tls_mode_str(3), "require");
	cr_assert_str_eq(tls_mode_str(4), "unknown");
	cr_assert_str_eq(neg_type_str(NEG_OFFER), "OFFER");
	cr_assert_str_eq(neg_type_str(NEG_DECISION), "DECISION");
	cr_assert_str_eq(neg_type_str(NEG_REFUSE), "REFUSE");
	cr_assert_str_eq(neg_type_str(0), "unknown");
}

/* ---- NEG_F_FLOW --------------------------------------------------------- */

/* The value of the first TLV of type f, or NULL; *len gets its length. */
static const uint8_t *
find_tlv(const uint8_t *m, size_t len, uint16_t f,
	 size_t *vlen)
{
	size_t i = NEG_HDR_LEN;

	while (i + 4 <= len) {
		uint16_t t = (uint16_t)(m[i] << 8 | m[i + 1]);
		size_t l = (size_t)(m[i + 2] << 8 | m[i + 3]);

		if ((t & 0x7fff) == f) {
			*vlen = l;
			return m + i + 4;
		}
		i += 4 + l;
	}
	return NULL;
}

Test(neg, flow_field_encoded_only_when_nonzero)
{
	uint8_t buf[BIG], plain[BIG];
	struct neg_msg m, got;
	size_t len, plen, vlen;
	const uint8_t *v;

	/* Capability off: exactly the bytes of a side that has no such
	 * field, and the decoder reads 0 (an older peer). */
	make_offer(&m);
	plen = encode_ok(&m, plain);
	cr_assert_null(find_tlv(plain, plen, NEG_F_FLOW, &vlen));
	expect_done(plain, plen, &got);
	cr_assert_eq(got.params.flow_caps, 0);

	make_offer_flow(&m);
	len = encode_ok(&m, buf);
	cr_assert_eq(len, plen + 8, "one 4-byte TLV more");
	cr_assert_arr_eq(buf + NEG_HDR_LEN, plain + NEG_HDR_LEN,
			 plen - NEG_HDR_LEN, "the other fields changed");
	v = find_tlv(buf, len, NEG_F_FLOW, &vlen);
	cr_assert_not_null(v);
	cr_assert_eq(vlen, 4);
	cr_assert_arr_eq(v, "\x80\x00\x00\x01", 4);
	cr_assert_eq(buf[len - 8], 0x00, "not critical");
	expect_done(buf, len, &got);
	cr_assert_eq(got.params.flow_caps, NEG_FLOW_LINK_ACK | 0x80000000u);

	make_decision_flow(&m);
	len = encode_ok(&m, buf);
	expect_done(buf, len, &got);
	assert_msg_eq(&m, &got);
	cr_assert_eq(got.params.flow_caps, NEG_FLOW_LINK_ACK);

	/* REFUSE carries no parameters, so no capabilities either. */
	make_refuse(&m);
	m.params.flow_caps = NEG_FLOW_LINK_ACK;
	len = encode_ok(&m, buf);
	cr_assert_null(find_tlv(buf, len, NEG_F_FLOW, &vlen));
}

Test(neg, flow_field_one_byte_at_a_time)
{
	uint8_t buf[BIG];
	struct neg_msg m;
	size_t i, len, used;
	struct neg_decoder *d = neg_decoder_new();
	enum neg_status st = NEG_NEED_MORE;

	make_decision_flow(&m);
	len = encode_ok(&m, buf);
	for (i = 0; i < len; i++) {
		st = neg_decoder_feed(d, buf + i, 1, &used);
		cr_assert_eq(used, 1);
		if (i + 1 < len)
			cr_assert_eq(st, NEG_NEED_MORE, "done early at %zu", i);
	}
	cr_assert_eq(st, NEG_DONE);
	cr_assert_eq(neg_decoder_msg(d)->params.flow_caps, NEG_FLOW_LINK_ACK);
	neg_decoder_free(d);
}

/* Decodes buf one byte at a time and expects err on field. */
static void
expect_fail_bytewise(const uint8_t *buf, size_t len,
		     enum neg_err err, uint16_t field)
{
	struct neg_decoder *d = neg_decoder_new();
	enum neg_status st = NEG_NEED_MORE;
	size_t i, used;

	for (i = 0; i < len && st == NEG_NEED_MORE; i++)
		st = neg_decoder_feed(d, buf + i, 1, &used);
	cr_assert_eq(st, NEG_FAIL);
	cr_assert_eq(i, len, "failed before the last byte");
	cr_assert_eq(neg_decoder_error(d), err, "got '%s'",
		     neg_err_str(neg_decoder_error(d)));
	cr_assert_eq(neg_decoder_error_field(d), field);
	neg_decoder_free(d);
}

Test(neg, flow_field_malformed)
{
	static const struct {
		const char *val;
		int len;
	} bad[] = {
		{ "", 0 }, { "\x01", 1 }, { "\0\0\x01", 3 },
		{ "\0\0\0\x01\0", 5 }, { "\0\0\0\0\0\0\0\x01", 8 },
	};
	uint8_t buf[BIG], out[BIG];
	struct neg_msg m, got;
	size_t len, n, i, k;

	for (k = 5; k < N_MAKERS; k++) { /* the two flow makers */
		makers[k](&m);
		len = encode_ok(&m, buf);
		for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			n = with_field(buf, len, NEG_F_FLOW, bad[i].val,
				       bad[i].len, out);
			expect_fail(out, n, NEG_ERR_BAD_FIELD, NEG_F_FLOW);
			expect_fail_bytewise(out, n, NEG_ERR_BAD_FIELD,
					     NEG_F_FLOW);
		}
		/* An explicit 0 is the same as no field. */
		n = with_field(buf, len, NEG_F_FLOW, "\0\0\0\0", 4, out);
		expect_done(out, n, &got);
		cr_assert_eq(got.params.flow_caps, 0);
		/* Twice is a duplicate, critical or not. */
		n = append_tlv(buf, len, NEG_F_FLOW, "\0\0\0\1", 4, out);
		expect_fail(out, n, NEG_ERR_DUPLICATE_FIELD, NEG_F_FLOW);
		n = append_tlv(buf, len, NEG_F_FLOW | NEG_F_CRITICAL,
			       "\0\0\0\1", 4, out);
		expect_fail(out, n, NEG_ERR_DUPLICATE_FIELD, NEG_F_FLOW);
	}
	/* Not a field of REFUSE. */
	make_refuse(&m);
	len = encode_ok(&m, buf);
	n = append_tlv(buf, len, NEG_F_FLOW, "\0\0\0\1", 4, out);
	expect_fail(out, n, NEG_ERR_BAD_FIELD, NEG_F_FLOW);
	expect_fail_bytewise(out, n, NEG_ERR_BAD_FIELD, NEG_F_FLOW);
}

/* The message builders: a refusal without text carries the reason's own
 * words, one with text carries it, and both decode as sent, also one
 * byte at a time. */
Test(neg, refusal_builder_round_trips)
{
	static const char *const texts[] = { NULL, "try again at noon" };

	for (size_t t = 0; t < 2; t++) {
		struct neg_msg m;
		uint8_t buf[NEG_MAX_LEN];
		enum neg_status st = NEG_NEED_MORE;
		size_t used, i;
		int n;

		neg_msg_refusal(&m, "relay-1", NEG_R_BUSY, texts[t]);
		cr_assert_eq(m.type, NEG_REFUSE);
		cr_assert_eq(m.ver_min, NEG_PROTO_VERSION);
		cr_assert_eq(m.ver_max, NEG_PROTO_VERSION);
		n = neg_encode(&m, buf, sizeof(buf));
		cr_assert_gt(n, 0);
		struct neg_decoder *d = neg_decoder_new();
		for (i = 0; i < (size_t)n && st == NEG_NEED_MORE; i++)
			st = neg_decoder_feed(d, buf + i, 1, &used);
		cr_assert_eq(st, NEG_DONE);
		cr_assert_eq(i, (size_t)n);
		const struct neg_msg *got = neg_decoder_msg(d);
		cr_assert_str_eq(got->params.node, "relay-1");
		cr_assert_eq(got->outcome.reason, NEG_R_BUSY);
		cr_assert_str_eq(got->text, texts[t] ? texts[t] : neg_reason_str(NEG_R_BUSY));
		neg_decoder_free(d);
	}
}
