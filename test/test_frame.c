/* Frame codec tests: round trips under every chunking, every error. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

#define MAXF 64

struct got {
	struct frame_hdr h;
	uint8_t *p;
	size_t n;
	int done;
	int chunks;
};

struct rec {
	struct got f[MAXF];
	int nf;
	int stop_at; /* frame index whose callback returns -1, or -1 */
};

static uint64_t rng_state;

static uint32_t
rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 16);
}

static struct got *
cur(struct rec *r, const struct frame_hdr *h)
{
	if (r->nf > 0 && !r->f[r->nf - 1].done)
		return &r->f[r->nf - 1];
	cr_assert_lt(r->nf, MAXF);
	struct got *g = &r->f[r->nf++];
	memset(g, 0, sizeof(*g));
	g->h = *h;
	return g;
}

static int
rec_frame(void *ud, const struct frame_hdr *h, const uint8_t *p)
{
	struct rec *r = ud;
	struct got *g = cur(r, h);
	g->p = malloc(h->len + 1);
	memcpy(g->p, p, h->len);
	g->n = h->len;
	g->done = 1;
	return r->nf - 1 == r->stop_at ? -1 : 0;
}

static int
rec_data(void *ud, const struct frame_hdr *h, const uint8_t *c,
	 size_t n, int last)
{
	struct rec *r = ud;
	struct got *g = cur(r, h);
	cr_assert_eq(g->h.stream, h->stream);
	cr_assert_eq(g->h.len, h->len);
	cr_assert(!g->done);
	g->p = realloc(g->p, g->n + n + 1);
	if (n)
		memcpy(g->p + g->n, c, n);
	g->n += n;
	g->chunks++;
	cr_assert(g->n <= h->len);
	if (last) {
		cr_assert_eq(g->n, h->len, "last chunk before the payload ended");
		g->done = 1;
	} else {
		cr_assert_gt(n, 0, "empty non-final chunk");
	}
	return r->nf - 1 == r->stop_at && last ? -1 : 0;
}

static const struct frame_callbacks rcb = {
	.on_frame = rec_frame,
	.on_data = rec_data,
};

static void
rec_clear(struct rec *r)
{
	for (int i = 0; i < r->nf; i++)
		free(r->f[i].p);
	memset(r, 0, sizeof(*r));
	r->stop_at = -1;
}

enum mode { WHOLE, BYTES, RANDOM };

/* Feeds buf in the given chunking; returns the first feed result != 0. */
static int
feed(struct frame_decoder *d, const uint8_t *buf, size_t len,
     enum mode mode)
{
	size_t off = 0;
	while (off < len) {
		size_t n = len - off;
		if (mode == BYTES)
			n = 1;
		else if (mode == RANDOM)
			n = 1 + rnd() % (n < 300 ? n : 300);
		if (frame_decoder_feed(d, buf + off, n) != 0)
			return -1;
		off += n;
	}
	return 0;
}

/* ---- a stream holding every frame type ---- */

struct sample {
	uint8_t buf[16384];
	size_t len;
	size_t ends[MAXF]; /* frame boundaries */
	int nf;
	uint8_t data[5000];
	uint8_t bind[FRAME_BIND_LEN];
};

static void
add(struct sample *s, int n)
{
	cr_assert_gt(n, 0);
	s->len += (size_t)n;
	s->ends[s->nf++] = s->len;
}

static uint8_t *
tail(struct sample *s)
{
	return s->buf + s->len;
}

static size_t
room(struct sample *s)
{
	return sizeof(s->buf) - s->len;
}

static void
build_sample(struct sample *s)
{
	memset(s, 0, sizeof(*s));
	for (size_t i = 0; i < sizeof(s->data); i++)
		s->data[i] = (uint8_t)(i * 7 + 3);
	for (int i = 0; i < FRAME_BIND_LEN; i++)
		s->bind[i] = (uint8_t)(0xa0 + i);

	add(s, frame_encode_data(tail(s), room(s), 1, s->data, sizeof(s->data), 0));
	add(s, frame_encode_data(tail(s), room(s), 1, NULL, 0, 1));
	add(s, frame_encode_open(tail(s), room(s), 3, "echo-Svc_1.x"));
	add(s, frame_encode_reset(tail(s), room(s), 0xfffffffeu, 0xdeadbeef));
	add(s, frame_encode_window(tail(s), room(s), 5, 0x7fffffff));
	add(s, frame_encode_ping(tail(s), room(s), 0x0102030405060708ull, 0));
	add(s, frame_encode_ping(tail(s), room(s), 0xfffefdfcfbfaf9f8ull, 1));
	add(s, frame_encode_goaway(tail(s), room(s), 41, 8, "draining for upgrade"));
	add(s, frame_encode_goaway(tail(s), room(s), 0, 0, NULL));
	add(s, frame_encode_bind(tail(s), room(s), s->bind));
	/* unknown type with a payload, and with none */
	uint8_t *u = tail(s);
	struct frame_hdr uh = { .len = 5, .type = 0x42, .flags = 0xff, .stream = 9 };
	frame_hdr_encode(&uh, u);
	memcpy(u + FRAME_HDR_LEN, "hello", 5);
	add(s, FRAME_HDR_LEN + 5);
	uh.len = 0;
	uh.type = 200;
	frame_hdr_encode(&uh, tail(s));
	add(s, FRAME_HDR_LEN);
	/* OPEN with reserved trailing bytes */
	u = tail(s);
	struct frame_hdr oh = { .len = 1 + 3 + 4, .type = FRAME_OPEN, .stream = 7 };
	frame_hdr_encode(&oh, u);
	memcpy(u + FRAME_HDR_LEN, "\x03" "abc" "\x01\x02\x03\x04", 8);
	add(s, FRAME_HDR_LEN + 8);
	add(s, frame_encode_data(tail(s), room(s), 0xffffffffu, s->data, 1, 1));
	/* LINK_ACK probe and answer; unknown flags are carried */
	add(s, frame_encode_link_ack(tail(s), room(s), 0x0000000100000011ull, 0));
	add(s, frame_encode_link_ack(tail(s), room(s), UINT64_MAX, 1));
	u = tail(s);
	add(s, frame_encode_link_ack(u, room(s), 41, 1));
	u[4] |= 0x80;
}

static uint32_t
be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void
check_sample(const struct sample *s, const struct rec *r)
{
	cr_assert_eq(r->nf, s->nf);
	const struct got *f = r->f;
	for (int i = 0; i < r->nf; i++)
		cr_assert(f[i].done, "frame %d incomplete", i);

	cr_assert_eq(f[0].h.type, FRAME_DATA);
	cr_assert_eq(f[0].h.stream, 1);
	cr_assert_eq(f[0].h.flags, 0);
	cr_assert_eq(f[0].n, sizeof(s->data));
	cr_assert_eq(memcmp(f[0].p, s->data, sizeof(s->data)), 0);

	cr_assert_eq(f[1].h.type, FRAME_DATA);
	cr_assert_eq(f[1].h.flags, FRAME_FLAG_FIN);
	cr_assert_eq(f[1].n, 0);
	cr_assert_eq(f[1].chunks, 1, "empty DATA must give exactly one on_data");

	cr_assert_eq(f[2].h.type, FRAME_OPEN);
	cr_assert_eq(f[2].h.stream, 3);
	cr_assert_eq(f[2].n, 13);
	cr_assert_eq(f[2].p[0], 12);
	cr_assert_eq(memcmp(f[2].p + 1, "echo-Svc_1.x", 12), 0);

	cr_assert_eq(f[3].h.type, FRAME_RESET);
	cr_assert_eq(f[3].h.stream, 0xfffffffeu);
	cr_assert_eq(be32(f[3].p), 0xdeadbeef);

	cr_assert_eq(f[4].h.type, FRAME_WINDOW);
	cr_assert_eq(f[4].h.stream, 5);
	cr_assert_eq(be32(f[4].p), 0x7fffffff);

	cr_assert_eq(f[5].h.type, FRAME_PING);
	cr_assert_eq(f[5].h.flags, 0);
	cr_assert_eq(f[5].h.stream, 0);
	cr_assert_eq(memcmp(f[5].p, "\x01\x02\x03\x04\x05\x06\x07\x08", 8), 0);
	cr_assert_eq(f[6].h.flags, FRAME_FLAG_ACK);
	cr_assert_eq(memcmp(f[6].p, "\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8", 8), 0);

	cr_assert_eq(f[7].h.type, FRAME_GOAWAY);
	cr_assert_eq(be32(f[7].p), 41);
	cr_assert_eq(be32(f[7].p + 4), 8);
	cr_assert_eq(f[7].n, 8 + strlen("draining for upgrade"));
	cr_assert_eq(memcmp(f[7].p + 8, "draining for upgrade", f[7].n - 8), 0);
	cr_assert_eq(f[8].n, 8);

	cr_assert_eq(f[9].h.type, FRAME_BIND);
	cr_assert_eq(f[9].n, FRAME_BIND_LEN);
	cr_assert_eq(memcmp(f[9].p, s->bind, FRAME_BIND_LEN), 0);

	cr_assert_eq(f[10].h.type, 0x42);
	cr_assert_eq(f[10].h.flags, 0xff);
	cr_assert_eq(f[10].n, 5);
	cr_assert_eq(memcmp(f[10].p, "hello", 5), 0);
	cr_assert_eq(f[11].h.type, 200);
	cr_assert_eq(f[11].n, 0);

	cr_assert_eq(f[12].h.type, FRAME_OPEN);
	cr_assert_eq(f[12].n, 8);
	cr_assert_eq(memcmp(f[12].p, "\x03" "abc", 4), 0);

	cr_assert_eq(f[13].h.stream, 0xffffffffu);
	cr_assert_eq(f[13].h.flags, FRAME_FLAG_FIN);
	cr_assert_eq(f[13].n, 1);

	cr_assert_eq(f[14].h.type, FRAME_LINK_ACK);
	cr_assert_eq(f[14].h.flags, 0);
	cr_assert_eq(f[14].h.stream, 0);
	cr_assert_eq(f[14].n, FRAME_LINK_ACK_LEN);
	cr_assert_eq(memcmp(f[14].p, "\0\0\0\x01\0\0\0\x11", 8), 0);
	cr_assert_eq(f[15].h.flags, FRAME_FLAG_ACK);
	cr_assert_eq(memcmp(f[15].p, "\xff\xff\xff\xff\xff\xff\xff\xff", 8), 0);
	cr_assert_eq(f[16].h.flags, FRAME_FLAG_ACK | 0x80);
	cr_assert_eq(be32(f[16].p + 4), 41);
}

static void
round_trip(enum mode mode, uint64_t seed)
{
	struct sample s;
	struct rec r;

	rng_state = seed;
	build_sample(&s);
	memset(&r, 0, sizeof(r));
	r.stop_at = -1;
	struct frame_decoder *d = frame_decoder_new(sizeof(s.data), &rcb, &r);
	cr_assert_not_null(d);
	cr_assert_eq(feed(d, s.buf, s.len, mode), 0, "error %s",
		     frame_err_str(frame_decoder_error(d)));
	cr_assert_eq(frame_decoder_finish(d), 0);
	cr_assert_eq(frame_decoder_error(d), FRAME_ERR_NONE);
	check_sample(&s, &r);
	if (mode == BYTES)
		cr_assert_eq(r.f[0].chunks, (int)sizeof(s.data));
	rec_clear(&r);
	frame_decoder_free(d);
}

Test(frame, round_trip_whole) { round_trip(WHOLE, 1); }
Test(frame, round_trip_bytewise) { round_trip(BYTES, 1); }

Test(frame, round_trip_random_chunks)
{
	for (uint64_t seed = 1; seed <= 200; seed++)
		round_trip(RANDOM, seed * 0x9e3779b97f4a7c15ull);
}

Test(frame, header_encode_layout)
{
	uint8_t b[FRAME_HDR_LEN];
	struct frame_hdr h = { .len = 0x123456, .type = 0xab, .flags = 0xcd,
			       .stream = 0x89abcdef };
	frame_hdr_encode(&h, b);
	cr_assert_eq(memcmp(b, "\x12\x34\x56\xab\xcd\x89\xab\xcd\xef", 9), 0);
}

Test(frame, encoders_reject_bad_arguments)
{
	uint8_t b[2048];
	uint8_t hash[FRAME_BIND_LEN] = { 0 };
	char longname[FRAME_SERVICE_MAX + 2];
	char longtext[257];

	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	memset(longtext, 't', 256);
	longtext[256] = '\0';

	cr_assert_eq(frame_encode_data(b, 9 + 3, 1, (const uint8_t *)"abcd", 4, 0), -1);
	cr_assert_eq(frame_encode_data(b, sizeof(b), 0, (const uint8_t *)"a", 1, 0), -1);
	cr_assert_eq(frame_encode_data(b, sizeof(b), 1, (const uint8_t *)"abcd", 4, 0), 13);
	cr_assert_eq(frame_encode_open(b, sizeof(b), 0, "x"), -1);
	cr_assert_eq(frame_encode_open(b, sizeof(b), 1, ""), -1);
	cr_assert_eq(frame_encode_open(b, sizeof(b), 1, "a b"), -1);
	cr_assert_eq(frame_encode_open(b, sizeof(b), 1, "a/b"), -1);
	cr_assert_eq(frame_encode_open(b, sizeof(b), 1, longname), -1);
	longname[FRAME_SERVICE_MAX] = '\0';
	cr_assert_eq(frame_encode_open(b, sizeof(b), 1, longname), 9 + 1 + 64);
	cr_assert_eq(frame_encode_open(b, 9 + 1 + 63, 1, longname), -1);
	cr_assert_eq(frame_encode_reset(b, sizeof(b), 0, 1), -1);
	cr_assert_eq(frame_encode_reset(b, 12, 1, 1), -1);
	cr_assert_eq(frame_encode_window(b, sizeof(b), 1, 0), -1);
	cr_assert_eq(frame_encode_window(b, sizeof(b), 1, 0x80000000u), -1);
	cr_assert_eq(frame_encode_window(b, sizeof(b), 0, 1), -1);
	cr_assert_eq(frame_encode_ping(b, 16, 1, 0), -1);
	cr_assert_eq(frame_encode_goaway(b, sizeof(b), 1, 1, longtext), -1);
	longtext[255] = '\0';
	cr_assert_eq(frame_encode_goaway(b, sizeof(b), 1, 1, longtext), 9 + 8 + 255);
	cr_assert_eq(frame_encode_bind(b, 40, hash), -1);
	cr_assert_eq(frame_encode_bind(b, 41, hash), 41);
	cr_assert_eq(frame_encode_link_ack(b, 16, 1, 0), -1);
	cr_assert_eq(frame_encode_link_ack(b, 17, 0x0102030405060708ull, 1), 17);
	cr_assert_eq(memcmp(b, "\0\0\x08\x07\x01\0\0\0\0"
			    "\x01\x02\x03\x04\x05\x06\x07\x08", 17), 0);
	cr_assert_eq(frame_encode_link_ack(b, 17, 5, 0), 17);
	cr_assert_eq(b[4], 0, "a probe has no ACK flag");
}

/* ---- errors ---- */

struct bad {
	const char *what;
	uint8_t type, flags;
	uint32_t stream;
	uint32_t len;      /* header length field */
	const char *payload; /* first bytes of the payload, rest zero */
	size_t lit;          /* length of payload */
	size_t plen;       /* bytes of payload actually sent */
	enum frame_err err;
};

#define MAXP 128

#define P(lit) lit, sizeof(lit) - 1

static const struct bad bads[] = {
	{ "data over max", FRAME_DATA, 0, 1, MAXP + 1, NULL, 0, 0, FRAME_ERR_TOO_LARGE },
	{ "control over max", FRAME_GOAWAY, 0, 0, FRAME_CTRL_MAX + 1, NULL, 0, 0, FRAME_ERR_TOO_LARGE },
	{ "unknown over max", 77, 0, 0, FRAME_CTRL_MAX + 1, NULL, 0, 0, FRAME_ERR_TOO_LARGE },
	{ "open over max", FRAME_OPEN, 0, 1, 0xffffff, NULL, 0, 0, FRAME_ERR_TOO_LARGE },
	{ "data stream 0", FRAME_DATA, 0, 0, 1, P("x"), 1, FRAME_ERR_BAD_STREAM },
	{ "open stream 0", FRAME_OPEN, 0, 0, 2, P("\x01x"), 2, FRAME_ERR_BAD_STREAM },
	{ "reset stream 0", FRAME_RESET, 0, 0, 4, P(""), 4, FRAME_ERR_BAD_STREAM },
	{ "window stream 0", FRAME_WINDOW, 0, 0, 4, P("\0\0\0\1"), 4, FRAME_ERR_BAD_STREAM },
	{ "ping stream 1", FRAME_PING, 0, 1, 8, P(""), 8, FRAME_ERR_BAD_STREAM },
	{ "goaway stream 1", FRAME_GOAWAY, 0, 1, 8, P(""), 8, FRAME_ERR_BAD_STREAM },
	{ "bind stream 1", FRAME_BIND, 0, 1, 32, P(""), 32, FRAME_ERR_BAD_STREAM },
	{ "link_ack stream 1", FRAME_LINK_ACK, 0, 1, 8, P(""), 8, FRAME_ERR_BAD_STREAM },
	{ "link_ack answer stream 3", FRAME_LINK_ACK, FRAME_FLAG_ACK, 3, 8, P(""), 8, FRAME_ERR_BAD_STREAM },
	{ "open len 0", FRAME_OPEN, 0, 1, 0, NULL, 0, 0, FRAME_ERR_BAD_LENGTH },
	{ "open len 1", FRAME_OPEN, 0, 1, 1, P("\x01"), 1, FRAME_ERR_BAD_LENGTH },
	{ "open name past end", FRAME_OPEN, 0, 1, 4, P("\x05" "abc"), 4, FRAME_ERR_BAD_LENGTH },
	{ "reset len 3", FRAME_RESET, 0, 1, 3, P(""), 3, FRAME_ERR_BAD_LENGTH },
	{ "reset len 5", FRAME_RESET, 0, 1, 5, P(""), 5, FRAME_ERR_BAD_LENGTH },
	{ "window len 0", FRAME_WINDOW, 0, 1, 0, NULL, 0, 0, FRAME_ERR_BAD_LENGTH },
	{ "window len 8", FRAME_WINDOW, 0, 1, 8, P("\0\0\0\1"), 8, FRAME_ERR_BAD_LENGTH },
	{ "ping len 7", FRAME_PING, 0, 0, 7, P(""), 7, FRAME_ERR_BAD_LENGTH },
	{ "ping len 9", FRAME_PING, 0, 0, 9, P(""), 9, FRAME_ERR_BAD_LENGTH },
	{ "goaway len 7", FRAME_GOAWAY, 0, 0, 7, P(""), 7, FRAME_ERR_BAD_LENGTH },
	{ "goaway text 256", FRAME_GOAWAY, 0, 0, 8 + 256, P(""), 8 + 256, FRAME_ERR_BAD_LENGTH },
	{ "bind len 31", FRAME_BIND, 0, 0, 31, P(""), 31, FRAME_ERR_BAD_LENGTH },
	{ "bind len 33", FRAME_BIND, 0, 0, 33, P(""), 33, FRAME_ERR_BAD_LENGTH },
	{ "link_ack len 0", FRAME_LINK_ACK, 0, 0, 0, NULL, 0, 0, FRAME_ERR_BAD_LENGTH },
	{ "link_ack len 7", FRAME_LINK_ACK, 0, 0, 7, P(""), 7, FRAME_ERR_BAD_LENGTH },
	{ "link_ack len 9", FRAME_LINK_ACK, FRAME_FLAG_ACK, 0, 9, P(""), 9, FRAME_ERR_BAD_LENGTH },
	{ "link_ack len 1024", FRAME_LINK_ACK, 0, 0, 1024, P(""), 1024, FRAME_ERR_BAD_LENGTH },
	{ "window 0", FRAME_WINDOW, 0, 1, 4, P("\0\0\0\0"), 4, FRAME_ERR_BAD_VALUE },
	{ "window 2^31", FRAME_WINDOW, 0, 1, 4, P("\x80\0\0\0"), 4, FRAME_ERR_BAD_VALUE },
	{ "open name len 0", FRAME_OPEN, 0, 1, 2, P("\0x"), 2, FRAME_ERR_BAD_VALUE },
	{ "open name len 65", FRAME_OPEN, 0, 1, 66, P("\x41" "a"), 66, FRAME_ERR_BAD_VALUE },
	{ "open name space", FRAME_OPEN, 0, 1, 4, P("\x03" "a b"), 4, FRAME_ERR_BAD_VALUE },
	{ "open name slash", FRAME_OPEN, 0, 1, 4, P("\x03" "a/b"), 4, FRAME_ERR_BAD_VALUE },
	{ "open name NUL", FRAME_OPEN, 0, 1, 4, P("\x03" "a\0b"), 4, FRAME_ERR_BAD_VALUE },
	{ "open name high bit", FRAME_OPEN, 0, 1, 3, P("\x02" "a\xc3"), 3, FRAME_ERR_BAD_VALUE },
	{ "goaway text NUL", FRAME_GOAWAY, 0, 0, 11, P("\0\0\0\1\0\0\0\0" "a\0b"), 11, FRAME_ERR_BAD_VALUE },
};

static size_t
build_bad(const struct bad *b, uint8_t *out)
{
	struct frame_hdr h = { .len = b->len, .type = b->type,
			       .flags = b->flags, .stream = b->stream };
	frame_hdr_encode(&h, out);
	memset(out + FRAME_HDR_LEN, 0, b->plen);
	if (b->type == FRAME_OPEN && b->plen > 1)
		memset(out + FRAME_HDR_LEN + 1, 'a', b->plen - 1);
	if (b->payload)
		memcpy(out + FRAME_HDR_LEN, b->payload,
		       b->lit < b->plen ? b->lit : b->plen);
	return FRAME_HDR_LEN + b->plen;
}

Test(frame, every_error_whole_and_bytewise)
{
	static uint8_t buf[FRAME_HDR_LEN + 4096];
	struct rec r;

	for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
		for (int mode = WHOLE; mode <= BYTES; mode++) {
			const struct bad *b = &bads[i];
			/* a good frame first, to show the decoder was fine before */
			size_t off = (size_t)frame_encode_ping(buf, sizeof(buf), 7, 0);
			off += build_bad(b, buf + off);
			memset(&r, 0, sizeof(r));
			r.stop_at = -1;
			struct frame_decoder *d = frame_decoder_new(MAXP, &rcb, &r);
			cr_assert_eq(feed(d, buf, off, mode), -1, "%s: accepted", b->what);
			cr_assert_eq(frame_decoder_error(d), b->err, "%s: got %s", b->what,
				     frame_err_str(frame_decoder_error(d)));
			cr_assert_eq(r.nf, 1, "%s: bad frame was delivered", b->what);
			/* failed stays failed */
			cr_assert_eq(frame_decoder_feed(d, buf, 17), -1);
			cr_assert_eq(frame_decoder_finish(d), -1);
			cr_assert_eq(frame_decoder_error(d), b->err);
			rec_clear(&r);
			frame_decoder_free(d);
		}
	}
}

Test(frame, too_large_detected_at_header)
{
	uint8_t b[FRAME_HDR_LEN];
	struct rec r = { .stop_at = -1 };
	struct frame_hdr h = { .len = 1000, .type = FRAME_DATA, .stream = 1 };
	frame_hdr_encode(&h, b);
	struct frame_decoder *d = frame_decoder_new(999, &rcb, &r);
	cr_assert_eq(frame_decoder_feed(d, b, 8), 0);
	cr_assert_eq(frame_decoder_feed(d, b + 8, 1), -1);
	cr_assert_eq(frame_decoder_error(d), FRAME_ERR_TOO_LARGE);
	frame_decoder_free(d);

	/* exactly max_payload is fine */
	d = frame_decoder_new(1000, &rcb, &r);
	cr_assert_eq(frame_decoder_feed(d, b, 9), 0);
	cr_assert_eq(frame_decoder_finish(d), -1);
	cr_assert_eq(frame_decoder_error(d), FRAME_ERR_TRUNCATED);
	frame_decoder_free(d);
	rec_clear(&r);
}

Test(frame, truncated_at_every_prefix)
{
	struct sample s;
	struct rec r;

	build_sample(&s);
	for (size_t p = 0; p <= s.len; p++) {
		int boundary = p == 0;
		for (int i = 0; i < s.nf; i++)
			if (s.ends[i] == p)
				boundary = 1;
		memset(&r, 0, sizeof(r));
		r.stop_at = -1;
		struct frame_decoder *d = frame_decoder_new(sizeof(s.data), &rcb, &r);
		cr_assert_eq(frame_decoder_feed(d, s.buf, p), 0);
		if (boundary) {
			cr_assert_eq(frame_decoder_finish(d), 0, "prefix %zu", p);
		} else {
			cr_assert_eq(frame_decoder_finish(d), -1, "prefix %zu", p);
			cr_assert_eq(frame_decoder_error(d), FRAME_ERR_TRUNCATED);
		}
		rec_clear(&r);
		frame_decoder_free(d);
	}
}

Test(frame, callback_stops_decoding)
{
	struct sample s;
	struct rec r;

	build_sample(&s);
	/* stop in on_data (frame 0), on_frame (frame 3), and for mode bytes */
	int stops[] = { 0, 1, 3, 9, 11 };
	for (size_t k = 0; k < sizeof(stops) / sizeof(stops[0]); k++) {
		for (int mode = WHOLE; mode <= BYTES; mode++) {
			memset(&r, 0, sizeof(r));
			r.stop_at = stops[k];
			struct frame_decoder *d =
				frame_decoder_new(sizeof(s.data), &rcb, &r);
			cr_assert_eq(feed(d, s.buf, s.len, mode), -1);
			cr_assert_eq(frame_decoder_error(d), FRAME_ERR_CALLBACK);
			cr_assert_eq(r.nf, stops[k] + 1, "decoded past the stop");
			cr_assert_eq(frame_decoder_feed(d, s.buf, 1), -1);
			rec_clear(&r);
			frame_decoder_free(d);
		}
	}
}

static int
count_frame(void *ud, const struct frame_hdr *h, const uint8_t *p)
{
	(*(size_t *)ud)++;
	cr_assert_leq(h->len, FRAME_CTRL_MAX);
	(void)p;
	return 0;
}

static int
count_data(void *ud, const struct frame_hdr *h, const uint8_t *c,
	   size_t n, int last)
{
	cr_assert_leq(n, h->len);
	cr_assert_neq(h->stream, 0);
	if (n)
		cr_assert_not_null(c);
	return 0;
}

Test(frame, random_garbage_never_crashes)
{
	static const struct frame_callbacks ccb = {
		.on_frame = count_frame,
		.on_data = count_data,
	};
	uint8_t buf[4096];
	size_t frames = 0;

	rng_state = 0x1234567887654321ull;
	for (int iter = 0; iter < 3000; iter++) {
		size_t len = 1 + rnd() % sizeof(buf);
		for (size_t i = 0; i < len; i++)
			buf[i] = (uint8_t)rnd();
		/* make headers plausible often enough to reach the payload checks */
		for (size_t off = 0; off + 9 <= len && (iter & 1); off += 9 + buf[off + 2]) {
			buf[off] = 0;
			buf[off + 1] = 0;
			buf[off + 3] %= 8;
			if (buf[off + 3] != FRAME_DATA)
				memset(buf + off + 5, 0, 3);
		}
		struct frame_decoder *d = frame_decoder_new(1 + rnd() % 2000, &ccb, &frames);
		cr_assert_not_null(d);
		int rc = feed(d, buf, len, (enum mode)(iter % 3));
		if (rc < 0) {
			cr_assert_neq(frame_decoder_error(d), FRAME_ERR_NONE);
			cr_assert_eq(frame_decoder_feed(d, buf, 1), -1);
		} else {
			cr_assert_eq(frame_decoder_error(d), FRAME_ERR_NONE);
		}
		frame_decoder_finish(d);
		frame_decoder_free(d);
	}
	cr_assert_gt(frames, 0, "garbage generator never produced a valid frame");
}

Test(frame, strings)
{
	cr_assert_str_eq(mux_code_str(MUX_C_FLOW_CONTROL),
			 "peer sent data beyond the stream's credit");
	cr_assert_not_null(mux_code_str(12345));
	for (int e = FRAME_ERR_NONE; e <= FRAME_ERR_CALLBACK; e++)
		for (int f = e + 1; f <= FRAME_ERR_CALLBACK; f++)
			cr_assert_str_neq(frame_err_str(e), frame_err_str(f));
	frame_decoder_free(NULL);
}
