/*
 * Mux frame codec: encoders and a resumable decoder.
 *
 * Decoder states: HEADER collects the 9 header bytes and validates them;
 * CTRL_PAYLOAD collects a control payload (at most FRAME_CTRL_MAX bytes)
 * into the decoder and validates it before on_frame; DATA_PAYLOAD hands
 * every received piece of a DATA payload straight to on_data.  FAILED is
 * terminal.
 */
#include "frame.h"

#include "be.h"
#include <stdlib.h>
#include <string.h>

#define GOAWAY_TEXT_MAX 255
#define WINDOW_MAX 0x7fffffffu

enum dec_state {
	DEC_HEADER,
	DEC_CTRL_PAYLOAD,
	DEC_DATA_PAYLOAD,
	DEC_FAILED,
};

struct frame_decoder {
	enum dec_state state;
	enum frame_err err;
	uint32_t max_payload;
	struct frame_callbacks cb;
	void *ud;
	struct frame_hdr hdr;
	size_t have; /* header or payload bytes collected in this state */
	uint8_t hbuf[FRAME_HDR_LEN];
	uint8_t ctrl[FRAME_CTRL_MAX];
};

static int
service_char_ok(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

static int
service_name_ok(const uint8_t *p, size_t n)
{
	if (n < 1 || n > FRAME_SERVICE_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!service_char_ok(p[i]))
			return 0;
	return 1;
}

const char *
mux_code_str(uint32_t code)
{
	switch (code) {
	case MUX_C_NO_ERROR:
		return "no error";
	case MUX_C_REFUSED:
		return "stream refused: no such service, or not allowed for this peer";
	case MUX_C_CONNECT_FAILED:
		return "could not connect to the service's backend";
	case MUX_C_CONN_RESET:
		return "client or backend reset the connection";
	case MUX_C_FLOW_CONTROL:
		return "peer sent data beyond the stream's credit";
	case MUX_C_PROTOCOL:
		return "peer broke the stream protocol (e.g. data after FIN)";
	case MUX_C_LIMIT:
		return "too many open streams on this link; raise the stream limit or reduce load";
	case MUX_C_TLS_REQUIRED:
		return "service requires a TLS link but this link is plaintext";
	case MUX_C_SHUTDOWN:
		return "peer daemon is shutting down";
	case MUX_C_INTERNAL:
		return "local resource failure (out of memory?)";
	default:
		return "unknown code";
	}
}

const char *
frame_err_str(enum frame_err err)
{
	switch (err) {
	case FRAME_ERR_NONE:
		return "no error";
	case FRAME_ERR_TOO_LARGE:
		return "frame length over the agreed maximum";
	case FRAME_ERR_BAD_LENGTH:
		return "control frame length wrong for its type";
	case FRAME_ERR_BAD_STREAM:
		return "stream id 0 on a stream frame, or nonzero on a link frame";
	case FRAME_ERR_BAD_VALUE:
		return "frame field out of range (zero window, bad service name, NUL in text)";
	case FRAME_ERR_TRUNCATED:
		return "link ended in the middle of a frame";
	case FRAME_ERR_CALLBACK:
		return "frame handler stopped decoding";
	}
	return "unknown frame error";
}

void
frame_hdr_encode(const struct frame_hdr *h, uint8_t out[FRAME_HDR_LEN])
{
	be24_put(out, h->len);
	out[3] = h->type;
	out[4] = h->flags;
	be32_put(out + 5, h->stream);
}

static int
encode_hdr(uint8_t *out, size_t cap, uint8_t type, uint8_t flags,
	   uint32_t stream, size_t len)
{
	if (len > FRAME_MAX_PAYLOAD || cap < FRAME_HDR_LEN + len)
		return -1;
	struct frame_hdr h = {
		.len = (uint32_t)len, .type = type, .flags = flags,
		.stream = stream,
	};
	frame_hdr_encode(&h, out);
	return 0;
}

int
frame_encode_data(uint8_t *out, size_t cap, uint32_t stream,
		  const uint8_t *p, size_t n, int fin)
{
	if (stream == 0 || (n > 0 && p == NULL))
		return -1;
	if (encode_hdr(out, cap, FRAME_DATA, fin ? FRAME_FLAG_FIN : 0, stream,
		       n) < 0)
		return -1;
	if (n > 0)
		memmove(out + FRAME_HDR_LEN, p, n);
	return (int)(FRAME_HDR_LEN + n);
}

int
frame_encode_open(uint8_t *out, size_t cap, uint32_t stream,
		  const char *service)
{
	if (stream == 0 || service == NULL)
		return -1;
	size_t n = strnlen(service, FRAME_SERVICE_MAX + 1);
	if (!service_name_ok((const uint8_t *)service, n))
		return -1;
	if (encode_hdr(out, cap, FRAME_OPEN, 0, stream, 1 + n) < 0)
		return -1;
	out[FRAME_HDR_LEN] = (uint8_t)n;
	memcpy(out + FRAME_HDR_LEN + 1, service, n);
	return (int)(FRAME_HDR_LEN + 1 + n);
}

int
frame_encode_reset(uint8_t *out, size_t cap, uint32_t stream,
		   uint32_t code)
{
	if (stream == 0 || encode_hdr(out, cap, FRAME_RESET, 0, stream, 4) < 0)
		return -1;
	be32_put(out + FRAME_HDR_LEN, code);
	return FRAME_HDR_LEN + 4;
}

int
frame_encode_window(uint8_t *out, size_t cap, uint32_t stream,
		    uint32_t incr)
{
	if (stream == 0 || incr == 0 || incr > WINDOW_MAX ||
	    encode_hdr(out, cap, FRAME_WINDOW, 0, stream, 4) < 0)
		return -1;
	be32_put(out + FRAME_HDR_LEN, incr);
	return FRAME_HDR_LEN + 4;
}

int
frame_encode_ping(uint8_t *out, size_t cap, uint64_t opaque, int ack)
{
	if (encode_hdr(out, cap, FRAME_PING, ack ? FRAME_FLAG_ACK : 0, 0, 8) < 0)
		return -1;
	be64_put(out + FRAME_HDR_LEN, opaque);
	return FRAME_HDR_LEN + 8;
}

int
frame_encode_goaway(uint8_t *out, size_t cap, uint32_t last_stream,
		    uint32_t code, const char *text)
{
	size_t n = text ? strnlen(text, GOAWAY_TEXT_MAX + 1) : 0;
	if (n > GOAWAY_TEXT_MAX ||
	    encode_hdr(out, cap, FRAME_GOAWAY, 0, 0, 8 + n) < 0)
		return -1;
	be32_put(out + FRAME_HDR_LEN, last_stream);
	be32_put(out + FRAME_HDR_LEN + 4, code);
	if (n > 0)
		memcpy(out + FRAME_HDR_LEN + 8, text, n);
	return (int)(FRAME_HDR_LEN + 8 + n);
}

int
frame_encode_bind(uint8_t *out, size_t cap,
		  const uint8_t hash[FRAME_BIND_LEN])
{
	if (hash == NULL ||
	    encode_hdr(out, cap, FRAME_BIND, 0, 0, FRAME_BIND_LEN) < 0)
		return -1;
	memcpy(out + FRAME_HDR_LEN, hash, FRAME_BIND_LEN);
	return FRAME_HDR_LEN + FRAME_BIND_LEN;
}

int
frame_encode_link_ack(uint8_t *out, size_t cap, uint64_t offset,
		      int ack)
{
	if (encode_hdr(out, cap, FRAME_LINK_ACK, ack ? FRAME_FLAG_ACK : 0, 0,
		       FRAME_LINK_ACK_LEN) < 0)
		return -1;
	be64_put(out + FRAME_HDR_LEN, offset);
	return FRAME_HDR_LEN + FRAME_LINK_ACK_LEN;
}

struct frame_decoder *
frame_decoder_new(uint32_t max_payload,
		  const struct frame_callbacks *cb,
		  void *ud)
{
	if (cb == NULL || cb->on_frame == NULL || cb->on_data == NULL)
		return NULL;
	struct frame_decoder *dec = calloc(1, sizeof(*dec));
	if (dec == NULL)
		return NULL;
	dec->state = DEC_HEADER;
	dec->max_payload = max_payload > FRAME_MAX_PAYLOAD ? FRAME_MAX_PAYLOAD
							   : max_payload;
	dec->cb = *cb;
	dec->ud = ud;
	return dec;
}

void
frame_decoder_free(struct frame_decoder *dec)
{
	free(dec);
}

static int
fail(struct frame_decoder *dec, enum frame_err err)
{
	dec->state = DEC_FAILED;
	dec->err = err;
	return -1;
}

/* Checks a complete header: everything that does not need the payload. */
static enum frame_err
check_header(const struct frame_decoder *dec,
	     const struct frame_hdr *h)
{
	if (h->type == FRAME_DATA) {
		if (h->len > dec->max_payload)
			return FRAME_ERR_TOO_LARGE;
		return h->stream == 0 ? FRAME_ERR_BAD_STREAM : FRAME_ERR_NONE;
	}
	if (h->len > FRAME_CTRL_MAX)
		return FRAME_ERR_TOO_LARGE;
	switch (h->type) {
	case FRAME_OPEN:
	case FRAME_RESET:
	case FRAME_WINDOW:
		if (h->stream == 0)
			return FRAME_ERR_BAD_STREAM;
		break;
	case FRAME_PING:
	case FRAME_GOAWAY:
	case FRAME_BIND:
	case FRAME_LINK_ACK:
		if (h->stream != 0)
			return FRAME_ERR_BAD_STREAM;
		break;
	default:
		return FRAME_ERR_NONE;
	}
	switch (h->type) {
	case FRAME_OPEN:
		return h->len < 2 ? FRAME_ERR_BAD_LENGTH : FRAME_ERR_NONE;
	case FRAME_RESET:
	case FRAME_WINDOW:
		return h->len != 4 ? FRAME_ERR_BAD_LENGTH : FRAME_ERR_NONE;
	case FRAME_PING:
		return h->len != 8 ? FRAME_ERR_BAD_LENGTH : FRAME_ERR_NONE;
	case FRAME_LINK_ACK:
		return h->len != FRAME_LINK_ACK_LEN ? FRAME_ERR_BAD_LENGTH
						    : FRAME_ERR_NONE;
	case FRAME_GOAWAY:
		return h->len < 8 || h->len > 8 + GOAWAY_TEXT_MAX
			       ? FRAME_ERR_BAD_LENGTH
			       : FRAME_ERR_NONE;
	case FRAME_BIND:
		return h->len != FRAME_BIND_LEN ? FRAME_ERR_BAD_LENGTH
						: FRAME_ERR_NONE;
	}
	return FRAME_ERR_NONE;
}

/* Checks a complete control payload whose length already passed. */
static enum frame_err
check_payload(const struct frame_hdr *h,
	      const uint8_t *p)
{
	switch (h->type) {
	case FRAME_OPEN:
		if (p[0] < 1 || p[0] > FRAME_SERVICE_MAX)
			return FRAME_ERR_BAD_VALUE;
		if (1u + p[0] > h->len)
			return FRAME_ERR_BAD_LENGTH;
		if (!service_name_ok(p + 1, p[0]))
			return FRAME_ERR_BAD_VALUE;
		break;
	case FRAME_WINDOW: {
		uint32_t incr = be32_get(p);
		if (incr == 0 || incr > WINDOW_MAX)
			return FRAME_ERR_BAD_VALUE;
		break;
	}
	case FRAME_GOAWAY:
		if (memchr(p + 8, 0, h->len - 8) != NULL)
			return FRAME_ERR_BAD_VALUE;
		break;
	}
	return FRAME_ERR_NONE;
}

static int
deliver_ctrl(struct frame_decoder *dec)
{
	enum frame_err err = check_payload(&dec->hdr, dec->ctrl);
	if (err != FRAME_ERR_NONE)
		return fail(dec, err);
	dec->state = DEC_HEADER;
	dec->have = 0;
	if (dec->cb.on_frame(dec->ud, &dec->hdr, dec->ctrl) != 0)
		return fail(dec, FRAME_ERR_CALLBACK);
	return 0;
}

static int
header_done(struct frame_decoder *dec)
{
	struct frame_hdr *h = &dec->hdr;
	const uint8_t *b = dec->hbuf;

	h->len = be24_get(b);
	h->type = b[3];
	h->flags = b[4];
	h->stream = be32_get(b + 5);
	dec->have = 0;

	enum frame_err err = check_header(dec, h);
	if (err != FRAME_ERR_NONE)
		return fail(dec, err);
	if (h->type != FRAME_DATA) {
		dec->state = DEC_CTRL_PAYLOAD;
		return h->len == 0 ? deliver_ctrl(dec) : 0;
	}
	if (h->len == 0) {
		dec->state = DEC_HEADER;
		if (dec->cb.on_data(dec->ud, h, dec->ctrl, 0, 1) != 0)
			return fail(dec, FRAME_ERR_CALLBACK);
		return 0;
	}
	dec->state = DEC_DATA_PAYLOAD;
	return 0;
}

int
frame_decoder_feed(struct frame_decoder *dec, const uint8_t *in,
		   size_t len)
{
	size_t off = 0;

	if (dec->state == DEC_FAILED)
		return -1;
	while (off < len) {
		size_t avail = len - off, n;

		switch (dec->state) {
		case DEC_HEADER:
			n = FRAME_HDR_LEN - dec->have;
			if (n > avail)
				n = avail;
			memcpy(dec->hbuf + dec->have, in + off, n);
			dec->have += n;
			off += n;
			if (dec->have == FRAME_HDR_LEN && header_done(dec) < 0)
				return -1;
			break;
		case DEC_CTRL_PAYLOAD:
			n = dec->hdr.len - dec->have;
			if (n > avail)
				n = avail;
			memcpy(dec->ctrl + dec->have, in + off, n);
			dec->have += n;
			off += n;
			if (dec->have == dec->hdr.len && deliver_ctrl(dec) < 0)
				return -1;
			break;
		case DEC_DATA_PAYLOAD: {
			n = dec->hdr.len - dec->have;
			if (n > avail)
				n = avail;
			dec->have += n;
			int last = dec->have == dec->hdr.len;
			if (last)
				dec->state = DEC_HEADER;
			const uint8_t *chunk = in + off;
			off += n;
			if (last)
				dec->have = 0;
			if (dec->cb.on_data(dec->ud, &dec->hdr, chunk, n,
					    last) != 0)
				return fail(dec, FRAME_ERR_CALLBACK);
			break;
		}
		case DEC_FAILED:
			return -1;
		}
	}
	return 0;
}

int
frame_decoder_finish(struct frame_decoder *dec)
{
	if (dec->state == DEC_FAILED)
		return -1;
	if (dec->state != DEC_HEADER || dec->have != 0)
		return fail(dec, FRAME_ERR_TRUNCATED);
	return 0;
}

enum frame_err
frame_decoder_error(const struct frame_decoder *dec)
{
	return dec->err;
}
