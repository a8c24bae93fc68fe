/*
 * libFuzzer target: the negotiation decoder (proto/neg.h).
 *
 * The input is fed whole, then again split at a point taken from its
 * last byte, and the two runs must agree; then the same with the header's
 * body_len set to the input's length.  A decoded message must encode
 * again, and decode(encode(m)) must equal m.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "neg.h"

#define CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)

struct run {
	enum neg_status st;
	enum neg_err err;
	size_t consumed; /* bytes of the input taken in total */
	size_t offset;
	struct neg_msg msg;
};

static int
params_equal(const struct neg_params *a, const struct neg_params *b)
{
	return strcmp(a->node, b->node) == 0 && a->tls_mode == b->tls_mode &&
	       a->tls_min == b->tls_min && a->tls_max == b->tls_max &&
	       a->n_ciphers == b->n_ciphers &&
	       memcmp(a->ciphers, b->ciphers,
		      a->n_ciphers * sizeof(a->ciphers[0])) == 0 &&
	       a->cert_present == b->cert_present &&
	       a->cert_want == b->cert_want &&
	       a->max_streams == b->max_streams && a->window == b->window &&
	       a->max_frame == b->max_frame &&
	       a->keepalive_ms == b->keepalive_ms &&
	       memcmp(a->nonce, b->nonce, NEG_NONCE_LEN) == 0 &&
	       a->flow_caps == b->flow_caps;
}

static int
msg_equal(const struct neg_msg *a, const struct neg_msg *b)
{
	const struct neg_outcome *x = &a->outcome, *y = &b->outcome;

	return a->type == b->type && a->ver_min == b->ver_min &&
	       a->ver_max == b->ver_max &&
	       params_equal(&a->params, &b->params) &&
	       x->result == y->result && x->reason == y->reason &&
	       x->tls_min == y->tls_min && x->tls_max == y->tls_max &&
	       x->n_ciphers == y->n_ciphers &&
	       memcmp(x->ciphers, y->ciphers,
		      x->n_ciphers * sizeof(x->ciphers[0])) == 0 &&
	       strcmp(a->text, b->text) == 0;
}

/* Feeds one chunk and checks what holds for any single feed. */
static enum neg_status
feed(struct neg_decoder *dec, const uint8_t *p, size_t n, size_t *total)
{
	size_t consumed = (size_t)-1;
	enum neg_status st = neg_decoder_feed(dec, p, n, &consumed);

	CHECK(consumed <= n);
	CHECK(st != NEG_NEED_MORE || consumed == n);
	*total += consumed;
	CHECK(neg_decoder_offset(dec) == *total);
	CHECK(*total <= NEG_MAX_LEN);
	return st;
}

/* Decodes data in up to two chunks, cut at split. */
static void
decode(const uint8_t *data, size_t size, size_t split, struct run *r)
{
	struct neg_decoder *dec = neg_decoder_new();
	const uint8_t *pre;
	size_t total = 0, plen;
	enum neg_status st;

	if (!dec)
		abort();
	st = feed(dec, data, split, &total);
	if (st == NEG_NEED_MORE)
		st = feed(dec, data + split, size - split, &total);
	else if (split < size) {
		/* A finished decoder takes nothing more. */
		size_t c = 1;

		CHECK(neg_decoder_feed(dec, data + split, size - split, &c) == st);
		CHECK(c == 0);
	}
	plen = neg_decoder_prefix(dec, &pre);
	CHECK(plen == (size < 16 ? size : 16) || st != NEG_NEED_MORE);
	CHECK(memcmp(pre, data, plen) == 0);
	(void)neg_sniff(pre, plen);

	if (st == NEG_NEED_MORE) {
		CHECK(total == size);
		CHECK(neg_decoder_msg(dec) == NULL);
		st = neg_decoder_finish(dec);
		CHECK(st == NEG_FAIL);
		CHECK(neg_decoder_error(dec) == NEG_ERR_TRUNCATED);
	}
	CHECK(neg_decoder_finish(dec) == st);
	r->st = st;
	r->err = neg_decoder_error(dec);
	r->consumed = total;
	r->offset = neg_decoder_offset(dec);
	(void)neg_err_str(r->err);
	(void)neg_decoder_error_field(dec);
	if (st == NEG_DONE) {
		const struct neg_msg *m = neg_decoder_msg(dec);

		CHECK(m != NULL);
		CHECK(r->err == NEG_ERR_NONE);
		CHECK(total >= NEG_HDR_LEN);
		CHECK(total == NEG_HDR_LEN + ((size_t)data[12] << 8 | data[13]));
		r->msg = *m;
		(void)neg_type_str(m->type);
		(void)neg_reason_str(m->outcome.reason);
		(void)tls_mode_str(m->params.tls_mode);
		(void)tls_version_str(m->params.tls_min);
	} else {
		CHECK(st == NEG_FAIL);
		CHECK(r->err != NEG_ERR_NONE);
		CHECK(neg_decoder_msg(dec) == NULL);
	}
	neg_decoder_free(dec);
}

/* An accepted message encodes, and its encoding decodes to the same
 * message and encodes to the same bytes. */
static void
check_roundtrip(const struct neg_msg *m, size_t wire_len)
{
	static uint8_t enc[NEG_MAX_LEN], enc2[NEG_MAX_LEN];
	struct run r2;
	int n, n2;

	n = neg_encode(m, enc, sizeof(enc));
	CHECK(n >= NEG_HDR_LEN);
	CHECK((size_t)n <= wire_len);
	/* Too little room fails cleanly. */
	CHECK(neg_encode(m, enc2, (size_t)n - 1) == -1);
	memset(&r2, 0, sizeof(r2));
	decode(enc, (size_t)n, (size_t)n / 2, &r2);
	CHECK(r2.st == NEG_DONE);
	CHECK(r2.consumed == (size_t)n);
	CHECK(msg_equal(m, &r2.msg));
	n2 = neg_encode(&r2.msg, enc2, sizeof(enc2));
	CHECK(n2 == n && memcmp(enc, enc2, (size_t)n) == 0);
}

/* Runs the checks on one byte string. */
static void
check_input(const uint8_t *data, size_t size)
{
	static struct run whole, part;
	size_t split;

	if (size == 0)
		return;
	split = data[size - 1] % (size + 1);
	memset(&whole, 0, sizeof(whole));
	memset(&part, 0, sizeof(part));
	decode(data, size, size, &whole);
	decode(data, size, split, &part);

	CHECK(whole.st == part.st);
	CHECK(whole.err == part.err);
	CHECK(whole.consumed == part.consumed);
	CHECK(whole.offset == part.offset);
	if (whole.st == NEG_DONE) {
		CHECK(msg_equal(&whole.msg, &part.msg));
		check_roundtrip(&whole.msg, whole.consumed);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The input as it is, then (so that mutations of the fields reach the
 * field parser) with body_len set to the bytes that follow the header. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t fixed[NEG_MAX_LEN];

	check_input(data, size);
	if (size > NEG_HDR_LEN && size <= NEG_MAX_LEN) {
		memcpy(fixed, data, size);
		fixed[12] = (uint8_t)((size - NEG_HDR_LEN) >> 8);
		fixed[13] = (uint8_t)(size - NEG_HDR_LEN);
		if (memcmp(fixed + 12, data + 12, 2) != 0)
			check_input(fixed, size);
	}
	return 0;
}
