/*
 * Parameter-negotiation message codec.  The byte layout is described in
 * docs/PROTOCOL.md; the decoder is a resumable state machine that buffers
 * at most one message (NEG_MAX_LEN bytes) and parses its TLVs once the
 * body is complete.
 */
#include "neg.h"

#include "be.h"
#include <stdlib.h>
#include <string.h>

const uint8_t neg_magic[NEG_MAGIC_LEN] = {
	0x89, 'T', 'P', 'X', '\r', '\n', 0x1a, '\n'
};

#define NEG_PREFIX_MAX 16
#define NEG_TLV_HDR 4
#define NEG_F_LAST NEG_F_FLOW

#define MUX_WINDOW_MIN 1024u
#define MUX_FRAME_MIN 1024u
#define MUX_FRAME_MAX 16777215u

enum neg_state {
	NEG_ST_MAGIC,
	NEG_ST_HEADER,
	NEG_ST_BODY,
	NEG_ST_DONE,
	NEG_ST_FAILED,
};

struct neg_decoder {
	enum neg_state state;
	enum neg_err err;
	uint16_t err_field;
	size_t have;     /* bytes buffered (== consumed) */
	size_t need;     /* total message length once the header is in */
	size_t prefix_len;
	uint8_t prefix[NEG_PREFIX_MAX];
	struct neg_msg msg;
	uint8_t buf[NEG_MAX_LEN];
};

void
neg_msg_init(struct neg_msg *m, uint8_t type)
{
	memset(m, 0, sizeof(*m));
	m->type = type;
	m->ver_min = m->ver_max = NEG_PROTO_VERSION;
}

static void
copy_text(char *dst, size_t cap, const char *src)
{
	size_t n = strlen(src);

	if (n >= cap)
		n = cap - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

void
neg_msg_refusal(struct neg_msg *m, const char *node, uint16_t reason,
		const char *text)
{
	neg_msg_init(m, NEG_REFUSE);
	copy_text(m->params.node, sizeof(m->params.node), node);
	m->outcome.result = NEG_RESULT_REFUSE;
	m->outcome.reason = reason;
	copy_text(m->text, sizeof(m->text),
		  text != NULL ? text : neg_reason_str(reason));
}

/* ---- validation rules shared by encoder and decoder -------------------- */

static int
node_char_ok(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

static int
node_ok(const uint8_t *p, size_t len)
{
	size_t i;

	if (len < 1 || len > NEG_NODE_MAX)
		return 0;
	for (i = 0; i < len; i++)
		if (!node_char_ok(p[i]))
			return 0;
	return 1;
}

static int
tlsv_ok(uint16_t v)
{
	return v == TLSV_1_2 || v == TLSV_1_3;
}

static int
tls_range_ok(uint16_t min, uint16_t max)
{
	return tlsv_ok(min) && tlsv_ok(max) && min <= max;
}

static int
cert_ok(uint8_t present, uint8_t want)
{
	return present <= 1 && want <= CERT_WANT_REQUIRE;
}

static int
mux_ok(uint32_t streams, uint32_t window, uint32_t frame)
{
	return streams >= 1 && window >= MUX_WINDOW_MIN &&
	       frame >= MUX_FRAME_MIN && frame <= MUX_FRAME_MAX;
}

/* An outcome is valid for a message type: DECISION carries plaintext or
 * TLS with a reason below 100, REFUSE a refusal with a reason from 100.
 * Only a TLS outcome has a version range; the others carry 0, 0. */
static int
outcome_ok(uint8_t type, uint8_t result, uint16_t reason,
	   uint16_t min, uint16_t max)
{
	if (type == NEG_DECISION) {
		if (result != NEG_RESULT_PLAINTEXT && result != NEG_RESULT_TLS)
			return 0;
		if (reason >= 100)
			return 0;
	} else {
		if (result != NEG_RESULT_REFUSE || reason < 100)
			return 0;
	}
	if (result == NEG_RESULT_TLS)
		return tls_range_ok(min, max);
	return min == 0 && max == 0;
}

static int
type_ok(uint8_t type)
{
	return type == NEG_OFFER || type == NEG_DECISION || type == NEG_REFUSE;
}

#define BIT(f) (1u << (f))
#define PARAM_FIELDS (BIT(NEG_F_NODE) | BIT(NEG_F_TLS_MODE) | \
		      BIT(NEG_F_TLS_VERSIONS) | BIT(NEG_F_CIPHERS) | \
		      BIT(NEG_F_CERT) | BIT(NEG_F_MUX) | BIT(NEG_F_KEEPALIVE) | \
		      BIT(NEG_F_NONCE))

/* Parameter fields that may be absent (a peer of an older version). */
#define PARAM_OPTIONAL BIT(NEG_F_FLOW)

/* Known fields a message type may carry. */
static uint32_t
fields_allowed(uint8_t type)
{
	switch (type) {
	case NEG_OFFER:
		return PARAM_FIELDS | PARAM_OPTIONAL;
	case NEG_DECISION:
		return PARAM_FIELDS | PARAM_OPTIONAL | BIT(NEG_F_OUTCOME) |
		       BIT(NEG_F_COMMON_CIPHERS) | BIT(NEG_F_TEXT);
	case NEG_REFUSE:
		return BIT(NEG_F_OUTCOME) | BIT(NEG_F_NODE) | BIT(NEG_F_TEXT);
	}
	return 0;
}

/* Known fields a message type must carry. */
static uint32_t
fields_required(uint8_t type)
{
	switch (type) {
	case NEG_OFFER:
		return PARAM_FIELDS;
	case NEG_DECISION:
		return PARAM_FIELDS | BIT(NEG_F_OUTCOME) |
		       BIT(NEG_F_COMMON_CIPHERS);
	case NEG_REFUSE:
		return BIT(NEG_F_OUTCOME);
	}
	return 0;
}

/* ---- encoder ------------------------------------------------------------ */

struct wbuf {
	uint8_t *p;
	size_t cap, len;
	int overflow;
};

/* Reserves a TLV of vlen value bytes and returns where the value goes. */
static uint8_t *
tlv_begin(struct wbuf *w, uint16_t type, size_t vlen)
{
	uint8_t *v;

	if (w->overflow || w->cap - w->len < NEG_TLV_HDR + vlen) {
		w->overflow = 1;
		return NULL;
	}
	be16_put(w->p + w->len, type);
	be16_put(w->p + w->len + 2, (uint16_t)vlen);
	v = w->p + w->len + NEG_TLV_HDR;
	w->len += NEG_TLV_HDR + vlen;
	return v;
}

static void
tlv_bytes(struct wbuf *w, uint16_t type, const void *src,
	  size_t len)
{
	uint8_t *v = tlv_begin(w, type, len);

	if (v && len)
		memcpy(v, src, len);
}

static void
tlv_suites(struct wbuf *w, uint16_t type, const uint16_t *ids,
	   uint8_t n)
{
	uint8_t *v = tlv_begin(w, type, (size_t)n * 2);
	unsigned i;

	if (!v)
		return;
	for (i = 0; i < n; i++)
		be16_put(v + 2 * i, ids[i]);
}

static int
params_valid(const struct neg_params *pp)
{
	size_t nl = strnlen(pp->node, NEG_NODE_MAX + 1);

	return node_ok((const uint8_t *)pp->node, nl) &&
	       pp->tls_mode <= TLS_MODE_REQUIRE &&
	       tls_range_ok(pp->tls_min, pp->tls_max) &&
	       pp->n_ciphers <= NEG_CIPHERS_MAX &&
	       cert_ok(pp->cert_present, pp->cert_want) &&
	       mux_ok(pp->max_streams, pp->window, pp->max_frame);
}

static void
encode_params(struct wbuf *w, const struct neg_params *pp)
{
	uint8_t *v;

	tlv_bytes(w, NEG_F_NODE, pp->node, strlen(pp->node));
	tlv_bytes(w, NEG_F_TLS_MODE, &pp->tls_mode, 1);
	if ((v = tlv_begin(w, NEG_F_TLS_VERSIONS, 4))) {
		be16_put(v, pp->tls_min);
		be16_put(v + 2, pp->tls_max);
	}
	tlv_suites(w, NEG_F_CIPHERS, pp->ciphers, pp->n_ciphers);
	if ((v = tlv_begin(w, NEG_F_CERT, 2))) {
		v[0] = pp->cert_present;
		v[1] = pp->cert_want;
	}
	if ((v = tlv_begin(w, NEG_F_MUX, 12))) {
		be32_put(v, pp->max_streams);
		be32_put(v + 4, pp->window);
		be32_put(v + 8, pp->max_frame);
	}
	if ((v = tlv_begin(w, NEG_F_KEEPALIVE, 4)))
		be32_put(v, pp->keepalive_ms);
	tlv_bytes(w, NEG_F_NONCE, pp->nonce, NEG_NONCE_LEN);
	/* Only when nonzero: a side without capabilities sends the bytes
	 * an older version sends. */
	if (pp->flow_caps && (v = tlv_begin(w, NEG_F_FLOW, 4)))
		be32_put(v, pp->flow_caps);
}

static void
encode_outcome(struct wbuf *w, const struct neg_outcome *o)
{
	uint8_t *v = tlv_begin(w, NEG_F_OUTCOME, 7);

	if (!v)
		return;
	v[0] = o->result;
	be16_put(v + 1, o->reason);
	be16_put(v + 3, o->tls_min);
	be16_put(v + 5, o->tls_max);
}

int
neg_encode(const struct neg_msg *msg, uint8_t *out, size_t cap)
{
	struct wbuf w = { .p = out, .cap = cap, .len = NEG_HDR_LEN };
	const struct neg_outcome *o = &msg->outcome;
	size_t node_len = strnlen(msg->params.node, NEG_NODE_MAX + 1);
	size_t text_len = strnlen(msg->text, NEG_TEXT_MAX + 1);

	if (!type_ok(msg->type) || msg->ver_min == 0 ||
	    msg->ver_min > msg->ver_max ||
	    msg->ver_min > NEG_PROTO_VERSION ||
	    msg->ver_max < NEG_PROTO_VERSION)
		return -1;
	if (text_len > NEG_TEXT_MAX)
		return -1;
	switch (msg->type) {
	case NEG_OFFER:
		if (!params_valid(&msg->params))
			return -1;
		break;
	case NEG_DECISION:
		if (!params_valid(&msg->params) ||
		    !outcome_ok(msg->type, o->result, o->reason, o->tls_min,
				o->tls_max) ||
		    o->n_ciphers > NEG_CIPHERS_MAX)
			return -1;
		break;
	case NEG_REFUSE:
		if (node_len &&
		    !node_ok((const uint8_t *)msg->params.node, node_len))
			return -1;
		if (!outcome_ok(msg->type, o->result, o->reason, o->tls_min,
				o->tls_max))
			return -1;
		break;
	}
	if (cap < NEG_HDR_LEN)
		return -1;

	switch (msg->type) {
	case NEG_OFFER:
		encode_params(&w, &msg->params);
		break;
	case NEG_DECISION:
		encode_params(&w, &msg->params);
		encode_outcome(&w, o);
		tlv_suites(&w, NEG_F_COMMON_CIPHERS, o->ciphers, o->n_ciphers);
		if (text_len)
			tlv_bytes(&w, NEG_F_TEXT, msg->text, text_len);
		break;
	case NEG_REFUSE:
		encode_outcome(&w, o);
		if (node_len)
			tlv_bytes(&w, NEG_F_NODE, msg->params.node, node_len);
		if (text_len)
			tlv_bytes(&w, NEG_F_TEXT, msg->text, text_len);
		break;
	}
	if (w.overflow || w.len > NEG_MAX_LEN)
		return -1;

	memcpy(out, neg_magic, NEG_MAGIC_LEN);
	out[8] = msg->ver_min;
	out[9] = msg->ver_max;
	out[10] = msg->type;
	out[11] = 0;
	be16_put(out + 12, (uint16_t)(w.len - NEG_HDR_LEN));
	return (int)w.len;
}

/* ---- decoder ------------------------------------------------------------ */

struct neg_decoder *
neg_decoder_new(void)
{
	struct neg_decoder *dec = calloc(1, sizeof(*dec));

	if (!dec)
		return NULL;
	dec->state = NEG_ST_MAGIC;
	return dec;
}

void
neg_decoder_free(struct neg_decoder *dec)
{
	free(dec);
}

static enum neg_status
fail(struct neg_decoder *dec, enum neg_err err,
     uint16_t field)
{
	dec->state = NEG_ST_FAILED;
	dec->err = err;
	dec->err_field = field;
	return NEG_FAIL;
}

static void
read_suites(const uint8_t *v, uint16_t len, uint8_t *n,
	    uint16_t *ids)
{
	unsigned i;

	*n = (uint8_t)(len / 2);
	for (i = 0; i < *n; i++)
		ids[i] = be16_get(v + 2 * i);
}

/* Validates and stores one known field.  Returns 0, or -1 for a bad
 * length or value. */
static int
parse_field(struct neg_msg *m, uint16_t f, const uint8_t *v,
	    uint16_t len)
{
	struct neg_params *pp = &m->params;
	struct neg_outcome *o = &m->outcome;

	switch (f) {
	case NEG_F_NODE:
		if (!node_ok(v, len))
			return -1;
		memcpy(pp->node, v, len);
		pp->node[len] = '\0';
		return 0;
	case NEG_F_TLS_MODE:
		if (len != 1 || v[0] > TLS_MODE_REQUIRE)
			return -1;
		pp->tls_mode = v[0];
		return 0;
	case NEG_F_TLS_VERSIONS:
		if (len != 4 || !tls_range_ok(be16_get(v), be16_get(v + 2)))
			return -1;
		pp->tls_min = be16_get(v);
		pp->tls_max = be16_get(v + 2);
		return 0;
	case NEG_F_CIPHERS:
	case NEG_F_COMMON_CIPHERS:
		if (len % 2 || len / 2 > NEG_CIPHERS_MAX)
			return -1;
		if (f == NEG_F_CIPHERS)
			read_suites(v, len, &pp->n_ciphers, pp->ciphers);
		else
			read_suites(v, len, &o->n_ciphers, o->ciphers);
		return 0;
	case NEG_F_CERT:
		if (len != 2 || !cert_ok(v[0], v[1]))
			return -1;
		pp->cert_present = v[0];
		pp->cert_want = v[1];
		return 0;
	case NEG_F_MUX:
		if (len != 12 || !mux_ok(be32_get(v), be32_get(v + 4), be32_get(v + 8)))
			return -1;
		pp->max_streams = be32_get(v);
		pp->window = be32_get(v + 4);
		pp->max_frame = be32_get(v + 8);
		return 0;
	case NEG_F_KEEPALIVE:
		if (len != 4)
			return -1;
		pp->keepalive_ms = be32_get(v);
		return 0;
	case NEG_F_NONCE:
		if (len != NEG_NONCE_LEN)
			return -1;
		memcpy(pp->nonce, v, NEG_NONCE_LEN);
		return 0;
	case NEG_F_FLOW:
		if (len != 4)
			return -1;
		pp->flow_caps = be32_get(v);
		return 0;
	case NEG_F_OUTCOME:
		if (len != 7 || !outcome_ok(m->type, v[0], be16_get(v + 1),
					    be16_get(v + 3), be16_get(v + 5)))
			return -1;
		o->result = v[0];
		o->reason = be16_get(v + 1);
		o->tls_min = be16_get(v + 3);
		o->tls_max = be16_get(v + 5);
		return 0;
	case NEG_F_TEXT:
		if (len > NEG_TEXT_MAX || memchr(v, 0, len))
			return -1;
		memcpy(m->text, v, len);
		m->text[len] = '\0';
		return 0;
	}
	return -1;
}

static enum neg_status
parse_body(struct neg_decoder *dec)
{
	struct neg_msg *m = &dec->msg;
	const uint8_t *p = dec->buf + NEG_HDR_LEN;
	size_t left = dec->need - NEG_HDR_LEN;
	uint32_t allowed = fields_allowed(m->type);
	uint32_t required = fields_required(m->type);
	uint32_t seen = 0;
	uint16_t f;

	while (left) {
		uint16_t raw, len;

		if (left < NEG_TLV_HDR)
			return fail(dec, NEG_ERR_MALFORMED, 0);
		raw = be16_get(p);
		len = be16_get(p + 2);
		f = raw & ~NEG_F_CRITICAL;
		if (len > left - NEG_TLV_HDR)
			return fail(dec, NEG_ERR_MALFORMED, f);
		if (f < NEG_F_NODE || f > NEG_F_LAST) {
			if (raw & NEG_F_CRITICAL)
				return fail(dec, NEG_ERR_UNKNOWN_CRITICAL, f);
		} else if (!(allowed & BIT(f))) {
			return fail(dec, NEG_ERR_BAD_FIELD, f);
		} else if (seen & BIT(f)) {
			return fail(dec, NEG_ERR_DUPLICATE_FIELD, f);
		} else {
			seen |= BIT(f);
			if (parse_field(m, f, p + NEG_TLV_HDR, len) < 0)
				return fail(dec, NEG_ERR_BAD_FIELD, f);
		}
		p += NEG_TLV_HDR + len;
		left -= NEG_TLV_HDR + len;
	}
	for (f = NEG_F_NODE; f <= NEG_F_LAST; f++)
		if ((required & BIT(f)) && !(seen & BIT(f)))
			return fail(dec, NEG_ERR_MISSING_FIELD, f);
	dec->state = NEG_ST_DONE;
	return NEG_DONE;
}

/* Checks the complete header and sets the message length. */
static enum neg_status
parse_header(struct neg_decoder *dec)
{
	const uint8_t *h = dec->buf;
	uint8_t vmin = h[8], vmax = h[9], type = h[10];

	if (vmin == 0 || vmin > vmax)
		return fail(dec, NEG_ERR_MALFORMED, 0);
	if (vmin > NEG_PROTO_VERSION || vmax < NEG_PROTO_VERSION)
		return fail(dec, NEG_ERR_BAD_VERSION, 0);
	if (!type_ok(type))
		return fail(dec, NEG_ERR_BAD_TYPE, 0);
	dec->need = NEG_HDR_LEN + (size_t)be16_get(h + 12);
	if (dec->need > NEG_MAX_LEN)
		return fail(dec, NEG_ERR_TOO_LARGE, 0);
	dec->msg.type = type;
	dec->msg.ver_min = vmin;
	dec->msg.ver_max = vmax;
	dec->state = NEG_ST_BODY;
	if (dec->need == NEG_HDR_LEN)
		return parse_body(dec);
	return NEG_NEED_MORE;
}

enum neg_status
neg_decoder_feed(struct neg_decoder *dec, const uint8_t *in,
		 size_t len, size_t *consumed)
{
	size_t used = 0, n;
	enum neg_status st = NEG_NEED_MORE;

	*consumed = 0;
	if (dec->state == NEG_ST_DONE)
		return NEG_DONE;
	if (dec->state == NEG_ST_FAILED)
		return NEG_FAIL;

	n = NEG_PREFIX_MAX - dec->prefix_len;
	if (n > len)
		n = len;
	if (n) {
		memcpy(dec->prefix + dec->prefix_len, in, n);
		dec->prefix_len += n;
	}

	while (used < len && st == NEG_NEED_MORE) {
		switch (dec->state) {
		case NEG_ST_MAGIC:
			if (in[used] != neg_magic[dec->have]) {
				used++;
				dec->have++;
				st = fail(dec, NEG_ERR_BAD_MAGIC, 0);
				break;
			}
			dec->buf[dec->have++] = in[used++];
			if (dec->have == NEG_MAGIC_LEN)
				dec->state = NEG_ST_HEADER;
			break;
		case NEG_ST_HEADER:
			dec->buf[dec->have++] = in[used++];
			if (dec->have == NEG_HDR_LEN)
				st = parse_header(dec);
			break;
		case NEG_ST_BODY:
			n = dec->need - dec->have;
			if (n > len - used)
				n = len - used;
			memcpy(dec->buf + dec->have, in + used, n);
			dec->have += n;
			used += n;
			if (dec->have == dec->need)
				st = parse_body(dec);
			break;
		case NEG_ST_DONE:
		case NEG_ST_FAILED:
			break;
		}
	}
	*consumed = used;
	return st;
}

enum neg_status
neg_decoder_finish(struct neg_decoder *dec)
{
	if (dec->state == NEG_ST_DONE)
		return NEG_DONE;
	if (dec->state == NEG_ST_FAILED)
		return NEG_FAIL;
	return fail(dec, NEG_ERR_TRUNCATED, 0);
}

const struct neg_msg *
neg_decoder_msg(const struct neg_decoder *dec)
{
	return dec->state == NEG_ST_DONE ? &dec->msg : NULL;
}

enum neg_err
neg_decoder_error(const struct neg_decoder *dec)
{
	return dec->err;
}

uint16_t
neg_decoder_error_field(const struct neg_decoder *dec)
{
	return dec->err_field;
}

size_t
neg_decoder_offset(const struct neg_decoder *dec)
{
	return dec->have;
}

size_t
neg_decoder_prefix(const struct neg_decoder *dec, const uint8_t **p)
{
	*p = dec->prefix;
	return dec->prefix_len;
}

/* ---- strings ------------------------------------------------------------ */

const char *
neg_err_str(enum neg_err err)
{
	switch (err) {
	case NEG_ERR_NONE:
		return "no error";
	case NEG_ERR_BAD_MAGIC:
		return "the peer did not start with the tlsplex negotiation magic (not a tlsplex peer, or the wrong port)";
	case NEG_ERR_BAD_VERSION:
		return "the peer's negotiation protocol versions do not include ours (upgrade one side)";
	case NEG_ERR_TOO_LARGE:
		return "the negotiation message is larger than the 4096-byte limit";
	case NEG_ERR_TRUNCATED:
		return "the connection ended inside the negotiation message";
	case NEG_ERR_BAD_TYPE:
		return "the negotiation message has an unknown type";
	case NEG_ERR_MALFORMED:
		return "the negotiation message is malformed (bad header or a field runs past the end)";
	case NEG_ERR_BAD_FIELD:
		return "a negotiation field has a bad length or value, or does not belong in this message type";
	case NEG_ERR_MISSING_FIELD:
		return "a required negotiation field is missing";
	case NEG_ERR_DUPLICATE_FIELD:
		return "a negotiation field appears twice";
	case NEG_ERR_UNKNOWN_CRITICAL:
		return "the peer sent a critical negotiation field this version does not know (upgrade this side)";
	}
	return "unknown negotiation error";
}

/* The reason codes: name and sentence, in one place. */
static const struct {
	uint16_t code;
	const char *name;
	const char *text;
} neg_reasons[] = {
	{ NEG_R_NONE, "NONE",
	  "no reason given" },
	{ NEG_R_TLS_AGREED, "TLS_AGREED",
	  "TLS agreed: one side prefers or requires TLS and neither side has it off" },
	{ NEG_R_NEITHER_ASKED, "NEITHER_ASKED",
	  "plaintext: neither side prefers or requires TLS (set prefer or require on one side to use TLS)" },
	{ NEG_R_DIALER_OFF, "DIALER_OFF",
	  "plaintext: the dialling side has TLS off" },
	{ NEG_R_ACCEPTOR_OFF, "ACCEPTOR_OFF",
	  "plaintext: the accepting side has TLS off" },
	{ NEG_R_REQUIRED_BY_DIALER, "REQUIRED_BY_DIALER",
	  "the dialling side requires TLS but the accepting side has TLS off" },
	{ NEG_R_REQUIRED_BY_ACCEPTOR, "REQUIRED_BY_ACCEPTOR",
	  "the accepting side requires TLS but the dialling side has TLS off" },
	{ NEG_R_NO_COMMON_VERSION, "NO_COMMON_VERSION",
	  "the two sides' TLS version ranges do not overlap; widen the minimum or maximum TLS version on one side" },
	{ NEG_R_NO_COMMON_CIPHER, "NO_COMMON_CIPHER",
	  "no cipher suite is enabled on both sides for the agreed TLS versions; add a common suite to one side's cipher list" },
	{ NEG_R_NO_COMMON_PROTOCOL, "NO_COMMON_PROTOCOL",
	  "the two sides speak no common negotiation protocol version; upgrade the older side" },
	{ NEG_R_MALFORMED, "MALFORMED",
	  "the negotiation message could not be decoded; check that the peer is a tlsplex daemon of a compatible version" },
	{ NEG_R_UNKNOWN_PEER, "UNKNOWN_PEER",
	  "the node name matches no [peer] section or enabled template on the accepting side; add one or fix the node name" },
	{ NEG_R_BUSY, "BUSY",
	  "the accepting side reached a limit; retry later or raise the limit" },
	{ NEG_R_DECISION_MISMATCH, "DECISION_MISMATCH",
	  "the decision does not follow from the two offers (tampering in transit, or incompatible versions)" },
	{ NEG_R_POLICY_VIOLATION, "POLICY_VIOLATION",
	  "the decision breaks this side's TLS policy (this side requires TLS)" },
	{ NEG_R_CERT_REQUIRED, "CERT_REQUIRED",
	  "the accepting side requires a client certificate of this peer (tls = verify, or its partner section) and the dialling side has none to offer; configure cert and key on the dialling side" },
};

const char *
neg_reason_str(uint16_t reason)
{
	size_t i;

	for (i = 0; i < sizeof(neg_reasons) / sizeof(neg_reasons[0]); i++)
		if (neg_reasons[i].code == reason)
			return neg_reasons[i].text;
	return "unknown reason code";
}

const char *
neg_reason_name(uint16_t reason)
{
	size_t i;

	for (i = 0; i < sizeof(neg_reasons) / sizeof(neg_reasons[0]); i++)
		if (neg_reasons[i].code == reason)
			return neg_reasons[i].name;
	return "UNKNOWN";
}

const char *
neg_type_str(uint8_t type)
{
	switch (type) {
	case NEG_OFFER:
		return "OFFER";
	case NEG_DECISION:
		return "DECISION";
	case NEG_REFUSE:
		return "REFUSE";
	}
	return "unknown";
}

const char *
tls_mode_str(uint8_t mode)
{
	switch (mode) {
	case TLS_MODE_OFF:
		return "off";
	case TLS_MODE_ALLOW:
		return "allow";
	case TLS_MODE_PREFER:
		return "prefer";
	case TLS_MODE_REQUIRE:
		return "require";
	}
	return "unknown";
}

const char *
tls_version_str(uint16_t v)
{
	switch (v) {
	case TLSV_1_2:
		return "TLSv1.2";
	case TLSV_1_3:
		return "TLSv1.3";
	}
	return "unknown";
}

static int
is_upper(uint8_t c)
{
	return c >= 'A' && c <= 'Z';
}

/* An uppercase token of 3..7 letters followed by a space. */
static int
looks_http_request(const uint8_t *p, size_t len)
{
	size_t i;

	for (i = 0; i < len && i < 8 && is_upper(p[i]); i++)
		;
	return i >= 3 && i <= 7 && i < len && p[i] == ' ';
}

const char *
neg_sniff(const uint8_t *p, size_t len)
{
	if (len == 0)
		return "an empty stream";
	if (!memcmp(p, neg_magic, len < NEG_MAGIC_LEN ? len : NEG_MAGIC_LEN))
		return "a tlsplex negotiation message";
	if (len >= 3 && p[0] == 0x16 && p[1] == 0x03 && p[2] <= 0x04)
		return "a TLS ClientHello";
	if (len >= 2 && p[0] >= 0x14 && p[0] <= 0x17 && p[1] == 0x03)
		return "a TLS record";
	if (len >= 5 && !memcmp(p, "HTTP/", 5))
		return "an HTTP response";
	if (len >= 4 && !memcmp(p, "SSH-", 4))
		return "an SSH banner";
	if (looks_http_request(p, len))
		return "an HTTP request";
	return "unrecognised bytes";
}
