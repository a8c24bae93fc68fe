/* Mux session tests: two sessions wired back to back in memory, and
 * hand-crafted peers for the error paths. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mux.h"

#define CAP (64 * 1024)

/* ---- per-stream application state (the stream's sud) ---- */

struct side;

struct tstream {
	struct side *side;
	uint32_t id;
	size_t to_send;      /* bytes this side sends; SIZE_MAX = endless */
	size_t sent;
	int hold_send;       /* read_data returns 0 (parks) while set */
	size_t allow;        /* bytes read_data may hand over before parking */
	int hold_consume;    /* received bytes stay unconsumed while set */
	size_t received;
	size_t unconsumed;
	int fin;
	int closed;
	uint32_t close_code;
	int close_by_peer;
};

struct side {
	struct mux *m;
	struct mux_settings set;
	const char *label;
	/* behaviour */
	uint32_t open_answer;    /* code on_open returns */
	size_t accept_send;      /* bytes accepted streams send back */
	int accept_hold_consume; /* accepted streams start with hold_consume */
	int open_reverse;        /* on_open opens a stream back, this many times */
	int no_verify;           /* data is not the test pattern */
	/* records */
	struct tstream **ts;
	size_t nts, ats;
	int opens, closes, fins, pongs, goaways;
	uint64_t last_pong;
	uint32_t goaway_last, goaway_code;
	char goaway_text[256];
	int fail;                /* mux_recv failed */
	size_t max_unconsumed;
	/* link budget */
	uint32_t budget;         /* as set with mux_set_link_budget */
	uint64_t produced;       /* bytes mux_send returned */
	uint64_t acked;          /* offset of the last on_link_ack */
	uint64_t last_probe;     /* offset of the last on_link_probe */
	int probes, acks;
	uint64_t max_inflight;
	uint64_t sent_bytes[8];  /* bytes sent per frame type */
};

static uint8_t
pattern(uint32_t id, int dir, size_t i)
{
	uint32_t x = id * 2654435761u + (uint32_t)dir * 40503u + (uint32_t)(i >> 9) * 97u;
	x ^= x >> 13;
	return (uint8_t)(x + i * 31u);
}

static struct tstream *
ts_new(struct side *s, uint32_t id, size_t to_send)
{
	struct tstream *t = calloc(1, sizeof(*t));
	cr_assert_not_null(t);
	t->side = s;
	t->id = id;
	t->to_send = to_send;
	t->allow = SIZE_MAX;
	if (s->nts == s->ats) {
		s->ats = s->ats ? s->ats * 2 : 64;
		s->ts = realloc(s->ts, s->ats * sizeof(*s->ts));
	}
	s->ts[s->nts++] = t;
	return t;
}

static int
dir_of(const struct side *s)
{
	return s->set.dialer ? 0 : 1;
}

static uint32_t
cb_open(void *ud, uint32_t id, const char *service, void **sud)
{
	struct side *s = ud;
	s->opens++;
	cr_assert_str_eq(service, "svc");
	if (s->open_answer != MUX_C_NO_ERROR)
		return s->open_answer;
	struct tstream *t = ts_new(s, id, s->accept_send);
	t->hold_consume = s->accept_hold_consume;
	*sud = t;
	if (s->open_reverse > 0) {
		s->open_reverse--;
		uint32_t rid = mux_open(s->m, "svc", ts_new(s, 0, 100));
		cr_assert_neq(rid, 0);
		s->ts[s->nts - 1]->id = rid;
	}
	return MUX_C_NO_ERROR;
}

static uint32_t
cb_data(void *ud, uint32_t id, void *sud, const uint8_t *p,
	size_t n)
{
	struct side *s = ud;
	struct tstream *t = sud;
	cr_assert_eq(t->id, id);
	cr_assert(!t->fin, "data after fin");
	for (size_t i = 0; i < n && !s->no_verify; i++)
		if (p[i] != pattern(id, !dir_of(s), t->received + i))
			cr_assert_fail("%s stream %u: byte %zu corrupt", s->label,
				       id, t->received + i);
	t->received += n;
	t->unconsumed += n;
	if (t->unconsumed > s->max_unconsumed)
		s->max_unconsumed = t->unconsumed;
	cr_assert_leq(t->unconsumed, s->set.local_window,
		      "more unconsumed than the window");
	if (!t->hold_consume) {
		mux_consumed(s->m, id, t->unconsumed);
		t->unconsumed = 0;
	}
	return MUX_C_NO_ERROR;
}

static void
cb_fin(void *ud, uint32_t id, void *sud)
{
	struct side *s = ud;
	struct tstream *t = sud;
	cr_assert(!t->fin);
	t->fin = 1;
	s->fins++;
}

static void
cb_close(void *ud, uint32_t id, void *sud, uint32_t code,
	 int by_peer)
{
	struct side *s = ud;
	struct tstream *t = sud;
	cr_assert_not_null(t);
	cr_assert_eq(t->id, id);
	cr_assert(!t->closed, "closed twice");
	t->closed = 1;
	t->close_code = code;
	t->close_by_peer = by_peer;
	s->closes++;
}

static size_t
cb_read(void *ud, uint32_t id, void *sud, uint8_t *buf,
	size_t max, int *eof)
{
	struct side *s = ud;
	struct tstream *t = sud;
	cr_assert_gt(max, 0);
	cr_assert(!t->closed);
	if (t->hold_send || t->allow == 0)
		return 0;
	size_t n = t->to_send - t->sent;
	if (n > max)
		n = max;
	if (n > t->allow)
		n = t->allow;
	if (t->allow != SIZE_MAX)
		t->allow -= n;
	for (size_t i = 0; i < n; i++)
		buf[i] = pattern(id, dir_of(s), t->sent + i);
	t->sent += n;
	if (t->sent == t->to_send)
		*eof = 1;
	return n;
}

static void
cb_goaway(void *ud, uint32_t last_id, uint32_t code,
	  const char *text)
{
	struct side *s = ud;
	s->goaways++;
	s->goaway_last = last_id;
	s->goaway_code = code;
	snprintf(s->goaway_text, sizeof(s->goaway_text), "%s", text);
}

static void
cb_pong(void *ud, uint64_t opaque)
{
	struct side *s = ud;
	s->pongs++;
	s->last_pong = opaque;
}

static void
cb_link_probe(void *ud, uint64_t offset)
{
	struct side *s = ud;
	cr_assert_gt(offset, s->last_probe, "probe offsets must increase");
	s->last_probe = offset;
	s->probes++;
}

static void
cb_link_ack(void *ud, uint64_t offset, uint64_t inflight)
{
	struct side *s = ud;
	cr_assert_geq(offset, s->acked);
	cr_assert_leq(offset, s->last_probe);
	cr_assert_eq(inflight, s->produced - offset);
	cr_assert_eq(inflight, mux_link_inflight(s->m));
	s->acked = offset;
	s->acks++;
}

static const struct mux_callbacks tcb = {
	.on_open = cb_open,
	.on_data = cb_data,
	.on_fin = cb_fin,
	.on_close = cb_close,
	.read_data = cb_read,
	.on_goaway = cb_goaway,
	.on_pong = cb_pong,
	.on_link_probe = cb_link_probe,
	.on_link_ack = cb_link_ack,
};

static struct mux_settings
settings(int dialer)
{
	struct mux_settings s = {
		.dialer = dialer,
		.max_frame = 4096,
		.local_window = 16384,
		.peer_window = 16384,
		.local_max_streams = 100,
		.peer_max_streams = 100,
	};
	memset(s.bind, 0x5a, sizeof(s.bind));
	return s;
}

static void
side_init(struct side *s, const char *label,
	  const struct mux_settings *set)
{
	memset(s, 0, sizeof(*s));
	s->label = label;
	s->set = *set;
	s->m = mux_new(set, &tcb, s);
	cr_assert_not_null(s->m);
}

static void
side_fini(struct side *s)
{
	mux_free(s->m);
	for (size_t i = 0; i < s->nts; i++)
		free(s->ts[i]);
	free(s->ts);
}

/* Two sides with matching settings. */
static void
pair_init(struct side *a, struct side *b)
{
	struct mux_settings sa = settings(1), sb = settings(0);
	side_init(a, "dialer", &sa);
	side_init(b, "acceptor", &sb);
}

/* ---- wire tap: decodes what one side sends ---- */

struct tapf {
	uint8_t type, flags;
	uint32_t stream, len, arg;
};

struct tap {
	struct frame_decoder *dec;
	struct tapf *f;
	size_t n, alloc;
	size_t by_type[8];
};

static void
tap_add(struct tap *t, const struct frame_hdr *h, uint32_t arg)
{
	if (t->n == t->alloc) {
		t->alloc = t->alloc ? t->alloc * 2 : 256;
		t->f = realloc(t->f, t->alloc * sizeof(*t->f));
	}
	t->f[t->n++] = (struct tapf){ h->type, h->flags, h->stream, h->len, arg };
	if (h->type < 8)
		t->by_type[h->type]++;
}

/* arg: the first u32 of the payload, or a PING's low 32 bits */
static int
tap_frame(void *ud, const struct frame_hdr *h, const uint8_t *p)
{
	uint32_t arg = h->len >= 4 ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
					     (uint32_t)p[2] << 8 | p[3]
				   : 0;
	if (h->type == FRAME_PING || h->type == FRAME_LINK_ACK)
		arg = (uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 | (uint32_t)p[6] << 8 | p[7];
	tap_add(ud, h, arg);
	return 0;
}

static int
tap_data(void *ud, const struct frame_hdr *h, const uint8_t *c,
	 size_t n, int last)
{
	if (last)
		tap_add(ud, h, 0);
	return 0;
}

static void
tap_init(struct tap *t, uint32_t max_frame)
{
	static const struct frame_callbacks fcb = {
		.on_frame = tap_frame,
		.on_data = tap_data,
	};
	memset(t, 0, sizeof(*t));
	t->dec = frame_decoder_new(max_frame, &fcb, t);
}

static void
tap_fini(struct tap *t)
{
	frame_decoder_free(t->dec);
	free(t->f);
}

/* ---- pump ---- */

static uint8_t wire[CAP];
static size_t send_cap = CAP; /* the buffer move() hands to mux_send */

/* Checks the frames one mux_send() wrote: each probe carries the
 * sender's byte count up to its own end, DATA starts only below the
 * budget, and LINK_ACK frames appear only with link_ack. */
static void
check_output(struct side *from, const uint8_t *p, size_t n)
{
	size_t pos = 0;

	while (pos < n) {
		cr_assert_geq(n - pos, FRAME_HDR_LEN, "partial frame header");
		size_t len = (size_t)p[pos] << 16 | (size_t)p[pos + 1] << 8 | p[pos + 2];
		uint8_t type = p[pos + 3];
		size_t end = pos + FRAME_HDR_LEN + len;
		cr_assert_leq(end, n, "partial frame");
		if (type < 8)
			from->sent_bytes[type] += FRAME_HDR_LEN + len;
		if (type == FRAME_LINK_ACK) {
			cr_assert(from->set.link_ack, "LINK_ACK without link_ack");
			if (!(p[pos + 4] & FRAME_FLAG_ACK)) {
				uint64_t off = 0;
				for (int i = 0; i < 8; i++)
					off = off << 8 | p[pos + FRAME_HDR_LEN + i];
				cr_assert_eq(off, from->produced + end,
					     "probe offset is not the byte count");
			}
		}
		/* A new-list stream's small frame may go half a budget
		 * beyond; bulk never. */
		if (type == FRAME_DATA && from->set.link_ack && from->budget) {
			uint64_t at = from->produced + pos - from->acked;

			cr_assert_lt(at, (uint64_t)from->budget * 3 / 2,
				     "DATA beyond the budget");
			if (len > from->set.sparse_quantum)
				cr_assert_lt(at, from->budget,
					     "bulk DATA beyond the budget");
		}
		pos = end;
	}
}

static void
deliver(struct side *to, const uint8_t *p, size_t n, int bytewise)
{
	if (to->fail)
		return;
	if (!bytewise) {
		if (mux_recv(to->m, p, n) < 0)
			to->fail = 1;
		return;
	}
	for (size_t i = 0; i < n; i++)
		if (mux_recv(to->m, p + i, 1) < 0) {
			to->fail = 1;
			return;
		}
}

static size_t
move(struct side *from, struct side *to, struct tap *tap,
     int bytewise)
{
	size_t n = mux_send(from->m, wire, send_cap);
	if (n == 0)
		return 0;
	cr_assert_leq(n, send_cap);
	check_output(from, wire, n);
	from->produced += n;
	cr_assert_eq(mux_link_inflight(from->m), from->produced - from->acked);
	if (from->produced - from->acked > from->max_inflight)
		from->max_inflight = from->produced - from->acked;
	if (tap)
		cr_assert_eq(frame_decoder_feed(tap->dec, wire, n), 0);
	deliver(to, wire, n, bytewise);
	return n;
}

/* Moves bytes both ways until both sides are quiet. */
static void
pump(struct side *a, struct side *b, struct tap *ta,
     struct tap *tb, int bytewise)
{
	for (int rounds = 0;; rounds++) {
		cr_assert_lt(rounds, 10000000, "pump does not settle");
		size_t n = move(a, b, ta, bytewise);
		n += move(b, a, tb, bytewise);
		if (n == 0)
			break;
	}
	cr_assert(!mux_want_write(a->m) || a->fail || b->fail ||
		  a->m == NULL);
}

/* Feeds raw frames into a side, as a hand-crafted peer. */
static int
raw(struct side *to, const uint8_t *p, size_t n)
{
	return mux_recv(to->m, p, n);
}

static size_t
raw_bind(uint8_t *out, uint8_t fill)
{
	uint8_t h[FRAME_BIND_LEN];
	memset(h, fill, sizeof(h));
	return (size_t)frame_encode_bind(out, 64, h);
}

/* ---- tests ---- */

Test(mux, bad_settings_and_free_null)
{
	struct mux_settings s = settings(1);
	mux_free(NULL);
	s.max_frame = 0;
	cr_assert_null(mux_new(&s, &tcb, NULL));
	s = settings(1);
	s.local_window = 0x80000000u;
	cr_assert_null(mux_new(&s, &tcb, NULL));
	s = settings(1);
	s.peer_window = 0;
	cr_assert_null(mux_new(&s, &tcb, NULL));
}

Test(mux, bind_first_and_want_write)
{
	struct side a, b;
	pair_init(&a, &b);
	cr_assert(mux_want_write(a.m));
	size_t n = mux_send(a.m, wire, sizeof(wire));
	cr_assert_eq(n, FRAME_HDR_LEN + FRAME_BIND_LEN);
	cr_assert_eq(wire[3], FRAME_BIND);
	cr_assert_eq(wire[9], 0x5a);
	cr_assert(!mux_want_write(a.m));
	cr_assert_eq(mux_send(a.m, wire, sizeof(wire)), 0);
	side_fini(&a);
	side_fini(&b);
}

Test(mux, bind_mismatch_fails_both)
{
	struct side a, b;
	struct mux_settings sa = settings(1), sb = settings(0);
	sb.bind[31] ^= 1;
	side_init(&a, "dialer", &sa);
	side_init(&b, "acceptor", &sb);
	cr_assert_neq(mux_open(a.m, "svc", ts_new(&a, 1, 10)), 0);
	pump(&a, &b, NULL, NULL, 0);
	cr_assert(a.fail && b.fail);
	cr_assert_eq(mux_error(a.m), MUX_ERR_BIND_MISMATCH);
	cr_assert_eq(mux_error(b.m), MUX_ERR_BIND_MISMATCH);
	cr_assert_eq(b.opens, 0, "stream opened despite a bind mismatch");
	cr_assert_eq(mux_recv(b.m, wire, 1), -1);
	cr_assert_not_null(mux_err_str(MUX_ERR_BIND_MISMATCH));
	side_fini(&a);
	side_fini(&b);
}

Test(mux, first_frame_not_bind)
{
	uint8_t f[64];
	struct side a, b;
	pair_init(&a, &b);
	size_t n = (size_t)frame_encode_ping(f, sizeof(f), 1, 0);
	cr_assert_eq(raw(&b, f, n), -1);
	cr_assert_eq(mux_error(b.m), MUX_ERR_NO_BIND);
	/* refuses further input, even a good BIND */
	n = raw_bind(f, 0x5a);
	cr_assert_eq(raw(&b, f, n), -1);

	n = (size_t)frame_encode_data(f, sizeof(f), 2, (const uint8_t *)"x", 1, 0);
	cr_assert_eq(raw(&a, f, n), -1);
	cr_assert_eq(mux_error(a.m), MUX_ERR_NO_BIND);
	side_fini(&a);
	side_fini(&b);
}

/* Runs nstreams each way with random sizes and checks every byte. */
static void
bulk(int nstreams, size_t maxsize, int bytewise, uint32_t seed)
{
	struct side a, b;
	struct tap ta, tb;
	struct tstream *mine[64];

	pair_init(&a, &b);
	tap_init(&ta, a.set.max_frame);
	tap_init(&tb, b.set.max_frame);
	b.accept_send = maxsize / 3 + seed % 1000;
	for (int i = 0; i < nstreams; i++) {
		seed = seed * 1103515245u + 12345u;
		size_t sz = i == 0 ? 0 : maxsize - (seed >> 8) % (maxsize / 2);
		mine[i] = ts_new(&a, 0, sz);
		mine[i]->id = mux_open(a.m, "svc", mine[i]);
		cr_assert_eq(mine[i]->id, (uint32_t)(2 * i + 1));
	}
	pump(&a, &b, &ta, &tb, bytewise);
	cr_assert(!a.fail && !b.fail, "%s / %s", mux_err_str(mux_error(a.m)),
		  mux_err_str(mux_error(b.m)));
	cr_assert_eq(b.opens, nstreams);
	for (int i = 0; i < nstreams; i++) {
		struct tstream *t = mine[i];
		cr_assert(t->closed && t->close_code == MUX_C_NO_ERROR);
		cr_assert_eq(t->received, b.accept_send);
		cr_assert_eq(t->sent, t->to_send);
	}
	for (size_t i = 0; i < b.nts; i++) {
		struct tstream *t = b.ts[i];
		cr_assert(t->closed && t->fin);
		cr_assert_eq(t->received, mine[(t->id - 1) / 2]->to_send,
			     "stream %u short", t->id);
	}
	cr_assert_eq(mux_stream_count(a.m), 0);
	cr_assert_eq(mux_stream_count(b.m), 0);
	cr_assert_eq(mux_streams_total(a.m), (uint64_t)nstreams);
	/* data exceeded the window, so credit had to come back */
	cr_assert_gt(tb.by_type[FRAME_WINDOW], 0);
	cr_assert_gt(ta.by_type[FRAME_WINDOW], 0);
	cr_assert_leq(b.max_unconsumed, b.set.local_window);
	for (size_t i = 0; i < ta.n; i++)
		cr_assert_leq(ta.f[i].len, a.set.max_frame);
	tap_fini(&ta);
	tap_fini(&tb);
	side_fini(&a);
	side_fini(&b);
}

Test(mux, bulk_50_streams_200k)
{
	bulk(50, 200 * 1024, 0, 7);
}

Test(mux, bulk_bytewise)
{
	bulk(5, 40 * 1024, 1, 99);
}

Test(mux, stalled_receiver_stops_at_window)
{
	struct side a, b;
	pair_init(&a, &b);
	b.accept_hold_consume = 1;
	struct tstream *slow = ts_new(&a, 0, 1000000);
	slow->id = mux_open(a.m, "svc", slow);
	pump(&a, &b, NULL, NULL, 0);
	b.accept_hold_consume = 0;
	struct tstream *fast = ts_new(&a, 0, 300000);
	fast->id = mux_open(a.m, "svc", fast);
	pump(&a, &b, NULL, NULL, 0);

	cr_assert_eq(b.nts, 2);
	struct tstream *bslow = b.ts[0], *bfast = b.ts[1];
	cr_assert_eq(bslow->id, slow->id);
	cr_assert_eq(bslow->received, b.set.local_window,
		     "sender did not stop at exactly the window");
	cr_assert_eq(slow->sent, a.set.peer_window);
	cr_assert_eq(bfast->received, 300000, "the other stream stalled");
	cr_assert(fast->closed);

	/* consuming a little below half the window releases nothing */
	mux_consumed(b.m, bslow->id, b.set.local_window / 2 - 1);
	bslow->unconsumed -= b.set.local_window / 2 - 1;
	pump(&a, &b, NULL, NULL, 0);
	cr_assert_eq(bslow->received, b.set.local_window);
	/* the rest resumes the flow */
	bslow->hold_consume = 0;
	mux_consumed(b.m, bslow->id, bslow->unconsumed);
	bslow->unconsumed = 0;
	pump(&a, &b, NULL, NULL, 0);
	cr_assert_eq(bslow->received, 1000000);
	cr_assert(slow->closed && slow->close_code == MUX_C_NO_ERROR);
	cr_assert_eq(mux_stream_count(a.m), 0);
	side_fini(&a);
	side_fini(&b);
}

Test(mux, fairness_small_stream_not_starved)
{
	struct side a, b;
	struct mux_settings sa = settings(1), sb = settings(0);
	sa.peer_window = sb.local_window = 0x7fffffff;
	sa.max_frame = sb.max_frame = 16384;
	side_init(&a, "dialer", &sa);
	side_init(&b, "acceptor", &sb);
	struct tap ta;
	tap_init(&ta, sa.max_frame);

	for (int i = 0; i < 5; i++) {
		struct tstream *t = ts_new(&a, 0, SIZE_MAX);
		t->id = mux_open(a.m, "svc", t);
	}
	struct tstream *small = ts_new(&a, 0, SIZE_MAX);
	small->allow = 0;
	small->id = mux_open(a.m, "svc", small);
	for (int i = 0; i < 10; i++)
		move(&a, &b, &ta, 0);
	cr_assert_eq(small->sent, 0);
	cr_assert_gt(ta.by_type[FRAME_DATA], 30);

	for (int round = 0; round < 20; round++) {
		/* the small stream becomes ready at a different point each time */
		for (int k = 0; k < round % 4; k++)
			move(&a, &b, &ta, 0);
		size_t before = ta.n, sent = small->sent;
		small->allow = 64;
		mux_resume(a.m, small->id);
		for (int k = 0; small->sent < sent + 64; k++) {
			cr_assert_lt(k, 100, "small stream starved");
			move(&a, &b, &ta, 0);
		}
		size_t idx = SIZE_MAX;
		for (size_t i = before; i < ta.n; i++)
			if (ta.f[i].stream == small->id) {
				idx = i - before;
				cr_assert_eq(ta.f[i].len, 64);
				break;
			}
		cr_assert_lt(idx, 6, "small stream waited %zu frames", idx);
	}
	cr_assert_eq(b.ts[5]->received, 20 * 64);
	tap_fini(&ta);
	side_fini(&a);
	side_fini(&b);
}

Test(mux, stream_limit)
{
	struct side a, b;
	struct mux_settings sa = settings(1), sb = settings(0);
	sa.peer_max_streams = 10;
	sb.local_max_streams = 3; /* the dialer believes it may open 10 */
	side_init(&a, "dialer", &sa);
	side_init(&b, "acceptor", &sb);
	struct tstream *t[5];
	for (int i = 0; i < 5; i++) {
		t[i] = ts_new(&a, 0, 10);
		t[i]->hold_send = 1;
		t[i]->id = mux_open(a.m, "svc", t[i]);
	}
	pump(&a, &b, NULL, NULL, 0);
	cr_assert_eq(b.opens, 3, "on_open must not run over the limit");
	cr_assert_eq(mux_stream_count(b.m), 3);
	for (int i = 3; i < 5; i++) {
		cr_assert(t[i]->closed);
		cr_assert_eq(t[i]->close_code, MUX_C_LIMIT);
		cr_assert(t[i]->close_by_peer);
	}
	cr_assert_eq(mux_stream_count(a.m), 3);
	side_fini(&a);
	side_fini(&b);

	/* matching settings: mux_open says no at the peer's limit */
	sa.peer_max_streams = 3;
	side_init(&a, "dialer", &sa);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(mux_open(a.m, "svc", ts_new(&a, (uint32_t)(2 * i + 1), 0)),
			     (uint32_t)(2 * i + 1));
	cr_assert_eq(mux_open(a.m, "svc", NULL), 0);
	mux_reset(a.m, 1, MUX_C_CONN_RESET);
	cr_assert(a.ts[0]->closed);
	cr_assert_eq(mux_open(a.m, "svc", ts_new(&a, 7, 0)), 7);
	cr_assert_eq(mux_open(a.m, "bad name", NULL), 0);
	cr_assert_eq(mux_open(a.m, "", NULL), 0);
	side_fini(&a);
}

Test(mux, refused_open)
{
	struct side a, b;
	pair_init(&a, &b);
	b.open_answer = MUX_C_REFUSED;
	struct tstream *t = ts_new(&a, 0, 100);
	t->id = mux_open(a.m, "svc", t);
	pump(&a, &b, NULL, NULL, 0);
	cr_assert_eq(b.opens, 1);
	cr_assert_eq(b.closes, 0, "refused stream must not get on_close");
	cr_assert(t->closed);
	cr_assert_eq(t->close_code, MUX_C_REFUSED);
	cr_assert(t->close_by_peer);
	cr_assert_eq(mux_stream_count(a.m), 0);
	cr_assert_eq(mux_stream_count(b.m), 0);
	cr_assert_eq(mux_streams_total(b.m), 0);
	side_fini(&a);
	side_fini(&b);
}

Test(mux, reset_both_directions)
{
	struct side a, b;
	pair_init(&a, &b);
	b.accept_send = 1 << 20;
	struct tstream *t1 = ts_new(&a, 0, 1 << 20);
	struct tstream *t2 = ts_new(&a, 0, 1 << 20);
	t1->id = mux_open(a.m, "svc", t1);
	t2->id = mux_open(a.m, "svc", t2);
	/* nobody consumes, so both streams stay open */
	b.accept_hold_consume = 1;
	t1->hold_consume = t2->hold_consume = 1;
	pump(&a, &b, NULL, NULL, 0);
	cr_assert_eq(b.nts, 2);
	cr_assert_eq(t1->received, a.set.local_window);

	mux_reset(a.m, t1->id, MUX_C_CONN_RESET);
	cr_assert(t1->closed, "mux_reset must call on_close at once");
	cr_assert_eq(t1->close_code, MUX_C_CONN_RESET);
	cr_assert_eq(t1->close_by_peer, 0);
	cr_assert_null(mux_stream_data(a.m, t1->id));
	mux_reset(b.m, t2->id, MUX_C_CONNECT_FAILED);
	cr_assert(b.ts[1]->closed && !b.ts[1]->close_by_peer);
	pump(&a, &b, NULL, NULL, 0);
	cr_assert(!a.fail && !b.fail);
	cr_assert(b.ts[0]->closed);
	cr_assert_eq(b.ts[0]->close_code, MUX_C_CONN_RESET);
	cr_assert(b.ts[0]->close_by_peer);
	cr_assert(t2->closed);
	cr_assert_eq(t2->close_code, MUX_C_CONNECT_FAILED);
	cr_assert(t2->close_by_peer);
	cr_assert_eq(mux_stream_count(a.m), 0);
	cr_assert_eq(mux_stream_count(b.m), 0);
	side_fini(&a);
	side_fini(&b);
}

/* The acceptor b, fed by hand; its output is decoded by a tap. */
static void
crafted_init(struct side *b, struct tap *tb, size_t *off,
	     uint8_t *f)
{
	struct mux_settings sb = settings(0);
	sb.local_window = 1000;
	sb.reverse = 1;
	side_init(b, "acceptor", &sb);
	b->accept_hold_consume = 1;
	b->no_verify = 1;
	tap_init(tb, sb.max_frame);
	*off = raw_bind(f, 0x5a);
	*off += (size_t)frame_encode_open(f + *off, 4096, 1, "svc");
}

static void
drain(struct side *b, struct tap *tb)
{
	size_t n;
	while ((n = mux_send(b->m, wire, sizeof(wire))) > 0)
		cr_assert_eq(frame_decoder_feed(tb->dec, wire, n), 0);
}

static const struct tapf *
find_frame(const struct tap *t, uint8_t type,
	   uint32_t stream)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->f[i].type == type && t->f[i].stream == stream)
			return &t->f[i];
	return NULL;
}

static uint8_t zeros[4096];

Test(mux, data_beyond_credit_is_flow_control)
{
	struct side b;
	struct tap tb;
	static uint8_t f[8192];
	size_t off;
	crafted_init(&b, &tb, &off, f);
	off += (size_t)frame_encode_data(f + off, 8192, 1, zeros, 600, 0);
	off += (size_t)frame_encode_data(f + off, 8192, 1, zeros, 400, 0);
	cr_assert_eq(raw(&b, f, off), 0);
	cr_assert_eq(b.ts[0]->received, 1000);
	cr_assert(!b.ts[0]->closed, "exactly the window is allowed");
	/* one byte over */
	off = (size_t)frame_encode_data(f, 8192, 1, zeros, 1, 0);
	cr_assert_eq(raw(&b, f, off), 0);
	cr_assert(b.ts[0]->closed);
	cr_assert_eq(b.ts[0]->close_code, MUX_C_FLOW_CONTROL);
	cr_assert_eq(b.ts[0]->close_by_peer, 0);
	cr_assert_eq(b.ts[0]->received, 1000, "over-credit bytes delivered");
	/* late data for the reset stream is dropped quietly */
	cr_assert_eq(raw(&b, f, off), 0);
	drain(&b, &tb);
	const struct tapf *r = find_frame(&tb, FRAME_RESET, 1);
	cr_assert_not_null(r);
	cr_assert_eq(r->arg, MUX_C_FLOW_CONTROL);
	cr_assert_eq(mux_error(b.m), MUX_ERR_NONE);
	tap_fini(&tb);
	side_fini(&b);
}

Test(mux, data_after_fin_is_protocol_error)
{
	struct side b;
	struct tap tb;
	static uint8_t f[8192];
	size_t off;
	crafted_init(&b, &tb, &off, f);
	b.accept_send = 5;
	off += (size_t)frame_encode_data(f + off, 8192, 1, zeros, 10, 1);
	off += (size_t)frame_encode_data(f + off, 8192, 1, zeros, 10, 0);
	cr_assert_eq(raw(&b, f, off), 0);
	cr_assert(b.ts[0]->fin);
	cr_assert(b.ts[0]->closed);
	cr_assert_eq(b.ts[0]->close_code, MUX_C_PROTOCOL);
	drain(&b, &tb);
	cr_assert_eq(find_frame(&tb, FRAME_RESET, 1)->arg, MUX_C_PROTOCOL);
	tap_fini(&tb);
	side_fini(&b);
}

Test(mux, window_overflow_resets_stream)
{
	struct side b;
	struct tap tb;
	static uint8_t f[8192];
	size_t off;
	crafted_init(&b, &tb, &off, f);
	off += (size_t)frame_encode_window(f + off, 8192, 1, 0x7fffffff - 16384);
	cr_assert_eq(raw(&b, f, off), 0);
	cr_assert(!b.ts[0]->closed);
	off = (size_t)frame_encode_window(f, 8192, 1, 1);
	cr_assert_eq(raw(&b, f, off), 0);
	cr_assert(b.ts[0]->closed);
	cr_assert_eq(b.ts[0]->close_code, MUX_C_FLOW_CONTROL);
	tap_fini(&tb);
	side_fini(&b);
}

static void
expect_bad_stream(const uint8_t *extra, size_t n)
{
	struct side b;
	struct tap tb;
	static uint8_t f[8192];
	size_t off;
	crafted_init(&b, &tb, &off, f);
	memcpy(f + off, extra, n);
	cr_assert_eq(raw(&b, f, off + n), -1);
	cr_assert_eq(mux_error(b.m), MUX_ERR_BAD_STREAM, "got %s",
		     mux_err_str(mux_error(b.m)));
	cr_assert_eq(raw(&b, f, 1), -1);
	tap_fini(&tb);
	side_fini(&b);
}

Test(mux, frames_for_never_opened_ids)
{
	uint8_t f[64];
	size_t n;
	n = (size_t)frame_encode_data(f, sizeof(f), 3, zeros, 1, 0);
	expect_bad_stream(f, n);
	n = (size_t)frame_encode_data(f, sizeof(f), 3, zeros, 0, 1);
	expect_bad_stream(f, n);
	n = (size_t)frame_encode_window(f, sizeof(f), 5, 10);
	expect_bad_stream(f, n);
	n = (size_t)frame_encode_reset(f, sizeof(f), 7, 0);
	expect_bad_stream(f, n);
	/* the acceptor's own parity, never handed out */
	n = (size_t)frame_encode_reset(f, sizeof(f), 2, 0);
	expect_bad_stream(f, n);
	/* OPEN with the wrong parity, or not above earlier ids */
	n = (size_t)frame_encode_open(f, sizeof(f), 4, "svc");
	expect_bad_stream(f, n);
	n = (size_t)frame_encode_open(f, sizeof(f), 1, "svc");
	expect_bad_stream(f, n);
}

/* Streams that park on their turn must not end a send round before a
 * later ready stream with data had its turn: one mux_send() call serves
 * the stream with data behind four that have none. */
Test(mux, parking_streams_do_not_end_the_round_early)
{
	struct side b;
	struct tap tb;
	static uint8_t f[8192];
	size_t off, n;

	crafted_init(&b, &tb, &off, f);
	b.accept_send = 10;
	cr_assert_eq(raw(&b, f, off), 0);
	b.ts[0]->hold_send = 1;
	drain(&b, &tb);
	cr_assert_null(find_frame(&tb, FRAME_DATA, 1));
	off = 0;
	for (uint32_t id = 3; id <= 11; id += 2)
		off += (size_t)frame_encode_open(f + off, sizeof(f) - off, id, "svc");
	cr_assert_eq(raw(&b, f, off), 0);
	for (size_t i = 1; i <= 4; i++)
		b.ts[i]->hold_send = 1;
	n = mux_send(b.m, wire, sizeof(wire));
	cr_assert_gt(n, 0, "the round ended before stream 11 had its turn");
	cr_assert_eq(frame_decoder_feed(tb.dec, wire, n), 0);
	cr_assert_not_null(find_frame(&tb, FRAME_DATA, 11));
	tap_fini(&tb);
	side_fini(&b);
}

/* A frame for our own stream before its OPEN went out: the peer guessed
 * the id. */
static void
expect_guessed_id_fatal(int type)
{
	struct side b;
	struct tap tb;
	static uint8_t f[8192];
	size_t off;
	uint32_t id;
	int n;

	crafted_init(&b, &tb, &off, f);
	cr_assert_eq(raw(&b, f, off), 0);
	id = mux_open(b.m, "svc", NULL);
	cr_assert_eq(id, 2);
	n = type == FRAME_DATA ? frame_encode_data(f, 64, id, zeros, 1, 0) :
	    type == FRAME_WINDOW ? frame_encode_window(f, 64, id, 10) :
	    frame_encode_reset(f, 64, id, 0);
	cr_assert_gt(n, 0);
	cr_assert_eq(raw(&b, f, (size_t)n), -1, "frame type %d was taken", type);
	cr_assert_eq(mux_error(b.m), MUX_ERR_BAD_STREAM, "got %s",
		     mux_err_str(mux_error(b.m)));
	tap_fini(&tb);
	side_fini(&b);
}

Test(mux, frames_for_a_stream_not_yet_announced_are_fatal)
{
	expect_guessed_id_fatal(FRAME_DATA);
	expect_guessed_id_fatal(FRAME_WINDOW);
	expect_guessed_id_fatal(FRAME_RESET);
}

Test(mux, closed_known_ids_are_ignored)
{
	struct side b;
	struct tap tb;
	static uint8_t f[8192];
	size_t off;
	crafted_init(&b, &tb, &off, f);
	cr_assert_eq(raw(&b, f, off), 0);
	b.open_answer = MUX_C_REFUSED;
	off = (size_t)frame_encode_open(f, 8192, 5, "svc");
	/* frames racing with the refusal */
	off += (size_t)frame_encode_data(f + off, 8192, 5, zeros, 10, 1);
	off += (size_t)frame_encode_window(f + off, 8192, 5, 10);
	off += (size_t)frame_encode_reset(f + off, 8192, 5, 3);
	off += (size_t)frame_encode_data(f + off, 8192, 3, zeros, 10, 1);
	/* an unknown frame type is skipped */
	struct frame_hdr h = { .len = 3, .type = 0x30, .stream = 0 };
	frame_hdr_encode(&h, f + off);
	off += FRAME_HDR_LEN + 3;
	cr_assert_eq(raw(&b, f, off), 0, "%s", mux_err_str(mux_error(b.m)));
	cr_assert_eq(mux_stream_count(b.m), 1);
	tap_fini(&tb);
	side_fini(&b);
}

Test(mux, ping_pong)
{
	struct side a, b;
	pair_init(&a, &b);
	mux_ping(a.m, 0x1122334455667788ull);
	pump(&a, &b, NULL, NULL, 1);
	cr_assert_eq(a.pongs, 1);
	cr_assert_eq(a.last_pong, 0x1122334455667788ull);
	cr_assert_eq(b.pongs, 0);
	side_fini(&a);
	side_fini(&b);
}

Test(mux, ping_flood_coalesces_acks)
{
	struct side b;
	struct tap tb;
	static uint8_t f[17 * 1000];
	size_t off;
	crafted_init(&b, &tb, &off, f);
	cr_assert_eq(raw(&b, f, off), 0);
	for (int round = 0; round < 200; round++) {
		off = 0;
		for (int i = 0; i < 1000; i++)
			off += (size_t)frame_encode_ping(f + off, 17, (uint64_t)round * 1000 + i, 0);
		cr_assert_eq(raw(&b, f, off), 0);
	}
	drain(&b, &tb);
	cr_assert_eq(tb.by_type[FRAME_PING], 1, "ACKs not coalesced");
	const struct tapf *p = find_frame(&tb, FRAME_PING, 0);
	cr_assert_eq(p->flags, FRAME_FLAG_ACK);
	cr_assert_eq(p->arg, 199999, "ACK must carry the latest opaque");
	/* after the ACK went out, the next PING gets its own answer */
	off = (size_t)frame_encode_ping(f, 17, 42, 0);
	cr_assert_eq(raw(&b, f, off), 0);
	drain(&b, &tb);
	cr_assert_eq(tb.by_type[FRAME_PING], 2);
	tap_fini(&tb);
	side_fini(&b);
}

Test(mux, refused_open_flood_is_overload)
{
	struct side b;
	struct tap tb;
	static uint8_t f[8192];
	size_t off;
	crafted_init(&b, &tb, &off, f);
	b.open_answer = MUX_C_REFUSED;
	cr_assert_eq(raw(&b, f, off), 0);
	int rc = 0;
	uint32_t id = 3;
	for (int i = 0; i < 100000 && rc == 0; i++, id += 2) {
		off = (size_t)frame_encode_open(f, sizeof(f), id, "svc");
		rc = raw(&b, f, off);
	}
	cr_assert_eq(rc, -1, "unbounded control queue");
	cr_assert_eq(mux_error(b.m), MUX_ERR_OVERLOAD);
	tap_fini(&tb);
	side_fini(&b);
}

Test(mux, goaway_refuses_new_streams_existing_finish)
{
	struct side a, b;
	pair_init(&a, &b);
	b.accept_send = 50000;
	struct tstream *t1 = ts_new(&a, 0, 50000), *t3 = ts_new(&a, 0, 50000);
	t1->hold_send = t3->hold_send = 1;
	t1->id = mux_open(a.m, "svc", t1);
	t3->id = mux_open(a.m, "svc", t3);
	pump(&a, &b, NULL, NULL, 0);
	cr_assert_eq(b.opens, 2);

	mux_goaway(b.m, MUX_C_SHUTDOWN, "relay restarting");
	cr_assert_eq(mux_goaway_received(b.m), 0);
	struct tstream *t5 = ts_new(&a, 0, 10);
	t5->id = mux_open(a.m, "svc", t5); /* races with the GOAWAY */
	cr_assert_eq(t5->id, 5);
	pump(&a, &b, NULL, NULL, 0);
	cr_assert_eq(a.goaways, 1);
	cr_assert_eq(a.goaway_last, 3);
	cr_assert_eq(a.goaway_code, MUX_C_SHUTDOWN);
	cr_assert_str_eq(a.goaway_text, "relay restarting");
	cr_assert_eq(mux_goaway_received(a.m), 1);
	/* It crossed the GOAWAY, so a sent it in good faith: accepted. */
	cr_assert_eq(b.opens, 3);
	cr_assert(t5->closed);
	cr_assert_eq(t5->close_code, MUX_C_NO_ERROR);
	cr_assert_eq(mux_open(a.m, "svc", NULL), 0);

	t1->hold_send = t3->hold_send = 0;
	mux_resume(a.m, t1->id);
	mux_resume(a.m, t3->id);
	pump(&a, &b, NULL, NULL, 0);
	cr_assert(t1->closed && t1->close_code == MUX_C_NO_ERROR);
	cr_assert(t3->closed && t3->close_code == MUX_C_NO_ERROR);
	cr_assert_eq(t1->received, 50000);
	cr_assert_eq(b.ts[1]->received, 50000);
	cr_assert_eq(mux_stream_count(a.m), 0);
	cr_assert_eq(mux_stream_count(b.m), 0);
	/* Once a's own GOAWAY is in, an OPEN is refused. */
	mux_goaway(a.m, MUX_C_NO_ERROR, "");
	pump(&a, &b, NULL, NULL, 0);
	cr_assert_eq(mux_goaway_received(b.m), 1);
	{
		uint8_t f[64];
		size_t off = (size_t)frame_encode_open(f, sizeof(f), 7, "svc");

		cr_assert_eq(raw(&b, f, off), 0);
		cr_assert_eq(b.opens, 3);
		cr_assert_eq(mux_stream_count(b.m), 0);
	}
	side_fini(&a);
	side_fini(&b);
}

Test(mux, close_all)
{
	struct side a, b;
	pair_init(&a, &b);
	for (int i = 0; i < 3; i++) {
		struct tstream *t = ts_new(&a, 0, 10);
		t->hold_send = 1;
		t->id = mux_open(a.m, "svc", t);
	}
	pump(&a, &b, NULL, NULL, 0);
	struct tstream *pending = ts_new(&a, 0, 10);
	pending->id = mux_open(a.m, "svc", pending); /* OPEN not sent yet */
	mux_close_all(a.m, MUX_C_SHUTDOWN);
	cr_assert_eq(a.closes, 4);
	for (size_t i = 0; i < a.nts; i++) {
		cr_assert(a.ts[i]->closed);
		cr_assert_eq(a.ts[i]->close_code, MUX_C_SHUTDOWN);
		cr_assert_eq(a.ts[i]->close_by_peer, 0);
	}
	cr_assert_eq(mux_stream_count(a.m), 0);
	cr_assert(!mux_want_write(a.m), "close_all must not queue frames");
	cr_assert_eq(mux_send(a.m, wire, sizeof(wire)), 0);
	side_fini(&a);
	side_fini(&b);
}

Test(mux, recv_eof)
{
	struct side a, b;
	pair_init(&a, &b);
	size_t n = mux_send(a.m, wire, sizeof(wire));
	cr_assert_eq(mux_recv(b.m, wire, n - 1), 0);
	cr_assert_eq(mux_recv_eof(b.m), -1);
	cr_assert_eq(mux_error(b.m), MUX_ERR_FRAME);
	cr_assert_eq(mux_frame_error(b.m), FRAME_ERR_TRUNCATED);
	side_fini(&b);
	struct mux_settings sb = settings(0);
	side_init(&b, "acceptor", &sb);
	cr_assert_eq(mux_recv(b.m, wire, n), 0);
	cr_assert_eq(mux_recv_eof(b.m), 0);
	side_fini(&a);
	side_fini(&b);
}

/* Two sides with matching settings, the dialler taking streams the
 * acceptor opens (REVERSE announced). */
static void
pair_init_reverse(struct side *a, struct side *b)
{
	struct mux_settings sa = settings(1), sb = settings(0);

	sa.reverse = sb.reverse = 1;
	side_init(a, "dialer", &sa);
	side_init(b, "acceptor", &sb);
}

Test(mux, open_from_inside_on_open)
{
	struct side a, b;
	pair_init_reverse(&a, &b);
	b.open_reverse = 3;
	a.accept_send = 77;
	for (int i = 0; i < 5; i++) {
		struct tstream *t = ts_new(&a, 0, 100);
		t->id = mux_open(a.m, "svc", t);
	}
	pump(&a, &b, NULL, NULL, 0);
	cr_assert(!a.fail && !b.fail);
	cr_assert_eq(a.opens, 3);
	for (size_t i = 0; i < a.nts; i++)
		cr_assert(a.ts[i]->closed && a.ts[i]->close_code == MUX_C_NO_ERROR);
	cr_assert_eq(a.ts[5]->id, 2);
	cr_assert_eq(a.ts[5]->received, 100);
	cr_assert_eq(mux_stream_count(a.m), 0);
	cr_assert_eq(mux_stream_count(b.m), 0);
	side_fini(&a);
	side_fini(&b);
}

Test(mux, ten_thousand_streams)
{
	struct side a, b;
	struct mux_settings sa = settings(1), sb = settings(0);
	sa.peer_max_streams = sb.local_max_streams = 20000;
	side_init(&a, "dialer", &sa);
	side_init(&b, "acceptor", &sb);
	b.accept_send = 3;
	for (int i = 0; i < 10000; i++) {
		struct tstream *t = ts_new(&a, 0, (size_t)i % 50);
		t->id = mux_open(a.m, "svc", t);
		cr_assert_eq(t->id, (uint32_t)(2 * i + 1));
	}
	cr_assert_eq(mux_stream_count(a.m), 10000);
	cr_assert_eq(mux_stream_data(a.m, 19999), a.ts[9999]);
	pump(&a, &b, NULL, NULL, 0);
	cr_assert(!a.fail && !b.fail);
	cr_assert_eq(b.opens, 10000);
	cr_assert_eq(a.closes, 10000);
	cr_assert_eq(b.closes, 10000);
	for (size_t i = 0; i < b.nts; i++)
		cr_assert_eq(b.ts[i]->received, (size_t)(b.ts[i]->id - 1) / 2 % 50);
	cr_assert_eq(mux_stream_count(a.m), 0);
	cr_assert_eq(mux_stream_count(b.m), 0);
	cr_assert_eq(mux_streams_total(a.m), 10000);
	cr_assert_eq(mux_streams_total(b.m), 10000);
	side_fini(&a);
	side_fini(&b);
}

static void
free_closed(struct side *s)
{
	size_t k = 0;
	for (size_t i = 0; i < s->nts; i++) {
		if (s->ts[i]->closed)
			free(s->ts[i]);
		else
			s->ts[k++] = s->ts[i];
	}
	s->nts = k;
}

Test(mux, hundred_thousand_cycles)
{
	struct side a, b;
	pair_init(&a, &b);
	b.accept_send = 1;
	for (int batch = 0; batch < 1000; batch++) {
		for (int i = 0; i < 100; i++) {
			struct tstream *t = ts_new(&a, 0, 2);
			t->id = mux_open(a.m, "svc", t);
			cr_assert_neq(t->id, 0);
			if (i % 10 == 9)
				mux_reset(a.m, t->id, MUX_C_CONN_RESET);
		}
		pump(&a, &b, NULL, NULL, 0);
		cr_assert(!a.fail && !b.fail);
		cr_assert_eq(mux_stream_count(a.m), 0);
		free_closed(&a);
		free_closed(&b);
	}
	cr_assert_eq(mux_stream_count(b.m), 0);
	cr_assert_eq(mux_streams_total(a.m), 100000);
	cr_assert_eq(a.closes, 100000);
	side_fini(&a);
	side_fini(&b);
}

/* ---- link budget (LINK_ACK) ---- */

static void
set_budget(struct side *s, uint32_t bytes)
{
	mux_set_link_budget(s->m, bytes);
	s->budget = bytes > 0 && bytes < MUX_LINK_BUDGET_MIN ? MUX_LINK_BUDGET_MIN
							     : bytes;
}

/* Two sides with link_ack as given, windows large enough that the
 * budget, not the credit, bounds a bulk stream. */
static void
link_pair(struct side *a, struct side *b, int link_ack,
	  uint32_t max_frame, uint32_t window)
{
	struct mux_settings sa = settings(1), sb = settings(0);
	sa.link_ack = sb.link_ack = link_ack;
	sa.max_frame = sb.max_frame = max_frame;
	sa.local_window = sa.peer_window = window;
	sb.local_window = sb.peer_window = window;
	side_init(a, "dialer", &sa);
	side_init(b, "acceptor", &sb);
}

/* Moves a's output to b until a stops (b answers nothing meanwhile).
 * Returns the bytes moved. */
static size_t
burst(struct side *a, struct side *b, struct tap *ta,
      int bytewise)
{
	size_t total = 0, n;
	for (int i = 0; (n = move(a, b, ta, bytewise)) > 0; i++) {
		cr_assert_lt(i, 100000, "sender does not stop");
		total += n;
	}
	return total;
}

/* Bound on inflight: the budget, one DATA frame that started below it,
 * and a few small control frames (WINDOW, answers, probes). */
static uint64_t
bound(const struct side *s)
{
	return (uint64_t)s->budget + FRAME_HDR_LEN + s->set.max_frame + 256;
}

static void
bulk_under_budget(int bytewise, size_t size)
{
	struct side a, b;
	struct tap ta;
	link_pair(&a, &b, 1, 4096, 1 << 20);
	set_budget(&a, 1); /* raised to the minimum */
	cr_assert_eq(a.budget, MUX_LINK_BUDGET_MIN);
	tap_init(&ta, a.set.max_frame);
	struct tstream *t = ts_new(&a, 0, size);
	t->id = mux_open(a.m, "svc", t);

	int rounds = 0, blocked = 0;
	while (!t->closed) {
		cr_assert_lt(rounds++, 10000, "transfer does not finish");
		burst(&a, &b, &ta, bytewise);
		cr_assert_leq(a.max_inflight, bound(&a), "inflight %llu",
			      (unsigned long long)a.max_inflight);
		if (mux_link_inflight(a.m) >= a.budget && !mux_want_write(a.m))
			blocked++;
		/* blocked: a probe covering every byte is outstanding */
		if (!mux_want_write(a.m) && t->sent < size)
			cr_assert_eq(a.last_probe, a.produced);
		move(&b, &a, NULL, bytewise); /* answers free the budget */
		if (t->sent < size && !a.fail)
			cr_assert(mux_want_write(a.m), "freed budget not reported");
	}
	pump(&a, &b, &ta, NULL, bytewise);
	cr_assert(!a.fail && !b.fail, "%s / %s", mux_err_str(mux_error(a.m)),
		  mux_err_str(mux_error(b.m)));
	cr_assert_eq(b.ts[0]->received, size);
	cr_assert_gt(blocked, 3, "the budget never held data back");
	cr_assert_gt(a.max_inflight, a.budget);
	cr_assert_gt(a.acks, 3);
	cr_assert_eq(ta.by_type[FRAME_LINK_ACK] > 0, 1);
	cr_assert_eq(b.probes, 0, "b sent no DATA and has no budget");
	tap_fini(&ta);
	side_fini(&a);
	side_fini(&b);
}

Test(mux, link_budget_bounds_bulk)
{
	bulk_under_budget(0, 2 << 20);
}

Test(mux, link_budget_bounds_bulk_bytewise)
{
	bulk_under_budget(1, 300 * 1024);
}

Test(mux, link_budget_change_at_run_time)
{
	struct side a, b;
	link_pair(&a, &b, 1, 16384, 0x7fffffff);
	set_budget(&a, 256 * 1024);
	struct tstream *t = ts_new(&a, 0, SIZE_MAX);
	t->id = mux_open(a.m, "svc", t);

	size_t n = burst(&a, &b, NULL, 0);
	cr_assert_geq(n, 256 * 1024);
	cr_assert_leq(a.max_inflight, bound(&a));
	cr_assert(!mux_want_write(a.m), "blocked sender wants to write");
	move(&b, &a, NULL, 0);
	cr_assert_eq(mux_link_inflight(a.m), 0, "the last probe covered all");

	/* lower: the next burst stops at the new bound */
	set_budget(&a, 40000);
	a.max_inflight = 0;
	n = burst(&a, &b, NULL, 0);
	cr_assert_geq(n, 40000);
	cr_assert_leq(a.max_inflight, bound(&a));
	/* lower while blocked, below what is in flight: still no DATA */
	set_budget(&a, 32768);
	cr_assert(!mux_want_write(a.m));
	cr_assert_eq(mux_send(a.m, wire, sizeof(wire)), 0);
	move(&b, &a, NULL, 0);
	cr_assert(mux_want_write(a.m));

	/* raise, while blocked: DATA resumes at once */
	a.max_inflight = 0;
	burst(&a, &b, NULL, 0);
	set_budget(&a, 1 << 20);
	cr_assert(mux_want_write(a.m), "raised budget not reported");
	burst(&a, &b, NULL, 0);
	cr_assert_gt(a.max_inflight, 900 * 1024);
	cr_assert_leq(a.max_inflight, bound(&a));

	/* no bound at all: a 16-frame buffer goes out whole */
	set_budget(&a, 0);
	cr_assert(mux_want_write(a.m));
	uint64_t before = mux_link_inflight(a.m);
	for (int i = 0; i < 20; i++)
		move(&a, &b, NULL, 0);
	cr_assert_gt(mux_link_inflight(a.m), before + 1000000);
	int probes = a.probes;
	move(&b, &a, NULL, 0);
	for (int i = 0; i < 5; i++)
		move(&a, &b, NULL, 0);
	cr_assert_eq(a.probes, probes, "probes without a budget");
	cr_assert(!a.fail && !b.fail);
	side_fini(&a);
	side_fini(&b);
}

/* Both directions, many streams, the smallest budget and tiny frames,
 * small send buffers: everything arrives. */
static void
no_deadlock(int bytewise, int nstreams, size_t size)
{
	struct side a, b;
	link_pair(&a, &b, 1, 64, 1 << 20);
	set_budget(&a, MUX_LINK_BUDGET_MIN);
	set_budget(&b, 1000);
	b.accept_send = size;
	send_cap = FRAME_HDR_LEN + FRAME_CTRL_MAX;
	for (int i = 0; i < nstreams; i++) {
		struct tstream *t = ts_new(&a, 0, size);
		t->id = mux_open(a.m, "svc", t);
	}
	pump(&a, &b, NULL, NULL, bytewise);
	send_cap = CAP;
	cr_assert(!a.fail && !b.fail, "%s / %s", mux_err_str(mux_error(a.m)),
		  mux_err_str(mux_error(b.m)));
	for (size_t i = 0; i < a.nts; i++) {
		cr_assert(a.ts[i]->closed, "stream %u stalled", a.ts[i]->id);
		cr_assert_eq(a.ts[i]->received, size);
	}
	cr_assert_eq(mux_stream_count(a.m), 0);
	cr_assert_eq(mux_stream_count(b.m), 0);
	cr_assert_gt(a.acks, 0);
	cr_assert_gt(b.acks, 0);
	cr_assert_leq(a.max_inflight, bound(&a) + send_cap);
	side_fini(&a);
	side_fini(&b);
}

Test(mux, link_budget_no_deadlock_tiny_frames)
{
	no_deadlock(0, 20, 100 * 1024);
}

Test(mux, link_budget_no_deadlock_bytewise)
{
	no_deadlock(1, 3, 40 * 1024);
}

/* a with a budget and an endless stream; b's BIND is in. */
static struct side *
probe_setup(struct side *a, struct side *b, uint32_t budget)
{
	link_pair(a, b, 1, 4096, 1 << 20);
	move(b, a, NULL, 0);
	set_budget(a, budget);
	struct tstream *t = ts_new(a, 0, SIZE_MAX);
	t->id = mux_open(a->m, "svc", t);
	return a;
}

static int
feed_answer(struct side *a, uint64_t off)
{
	uint8_t f[32];
	int n = frame_encode_link_ack(f, sizeof(f), off, 1);
	return mux_recv(a->m, f, (size_t)n);
}

Test(mux, link_ack_coalesced_answers_settle_older_probes)
{
	struct side a, b;

	probe_setup(&a, &b, 64 * 1024);
	/* b's first answer is for a's BIND..OPEN probe, then it is cut off:
	 * a stops at the budget with its probes outstanding */
	burst(&a, &b, NULL, 0);
	cr_assert_geq(a.probes, 4, "a probe each quarter budget");
	cr_assert_leq(a.probes, MUX_LINK_PROBES_MAX);
	cr_assert_eq(a.last_probe, a.produced);
	/* collect the probe offsets from b's answer: b coalesced them all
	 * into one answer, for the newest */
	size_t n = mux_send(b.m, wire, sizeof(wire));
	struct tap tb;
	tap_init(&tb, 4096);
	cr_assert_eq(frame_decoder_feed(tb.dec, wire, n), 0);
	cr_assert_eq(tb.by_type[FRAME_LINK_ACK], 1, "answers not coalesced");
	const struct tapf *ans = find_frame(&tb, FRAME_LINK_ACK, 0);
	cr_assert_eq(ans->flags, FRAME_FLAG_ACK);
	cr_assert_eq(ans->arg, (uint32_t)a.last_probe, "answer is not the newest probe");
	/* one answer settles every probe */
	cr_assert_eq(mux_recv(a.m, wire, n), 0);
	cr_assert_eq(a.acks, 1);
	cr_assert_eq(mux_link_inflight(a.m), 0);
	/* an older offset now names no outstanding probe */
	cr_assert_eq(feed_answer(&a, a.last_probe), -1);
	cr_assert_eq(mux_error(a.m), MUX_ERR_FLOW);
	tap_fini(&tb);
	side_fini(&a);
	side_fini(&b);
}

Test(mux, link_ack_answer_to_a_middle_probe)
{
	struct side a, b;
	uint64_t mid = 0;

	probe_setup(&a, &b, 64 * 1024);
	size_t n = mux_send(a.m, wire, sizeof(wire));
	a.produced += n;
	/* within one call: probes each quarter, every one in the output */
	uint64_t found[MUX_LINK_PROBES_MAX];
	int nf = 0;
	for (size_t pos = 0; pos < n;) {
		size_t len = (size_t)wire[pos] << 16 | (size_t)wire[pos + 1] << 8 | wire[pos + 2];
		if (wire[pos + 3] == FRAME_LINK_ACK) {
			uint64_t off = 0;
			for (int i = 0; i < 8; i++)
				off = off << 8 | wire[pos + FRAME_HDR_LEN + i];
			cr_assert_eq(off, pos + FRAME_HDR_LEN + len);
			cr_assert_lt(nf, MUX_LINK_PROBES_MAX);
			found[nf++] = off;
		}
		pos += FRAME_HDR_LEN + len;
	}
	cr_assert_geq(nf, 3, "%d probes", nf);
	mid = found[1];
	cr_assert_eq(feed_answer(&a, mid), 0);
	cr_assert_eq(a.acked, mid);
	cr_assert_eq(mux_link_inflight(a.m), a.produced - mid);
	/* the first probe was settled by the answer to the second */
	cr_assert_eq(feed_answer(&a, found[0]), -1);
	cr_assert_eq(mux_error(a.m), MUX_ERR_FLOW);
	side_fini(&a);
	side_fini(&b);
}

Test(mux, link_ack_forged_answers_are_fatal)
{
	struct side a, b;

	/* no probe outstanding at all */
	link_pair(&a, &b, 1, 4096, 1 << 20);
	pump(&a, &b, NULL, NULL, 0);
	cr_assert_eq(feed_answer(&a, 0), -1);
	cr_assert_eq(mux_error(a.m), MUX_ERR_FLOW);
	cr_assert_str_eq(mux_err_str(MUX_ERR_FLOW),
			 "peer acknowledged link bytes that were never sent");
	cr_assert_eq(mux_recv(a.m, wire, 1), -1, "a failed session takes input");
	side_fini(&a);
	side_fini(&b);

	/* probes outstanding, but the answer names bytes never probed */
	probe_setup(&a, &b, 32 * 1024);
	burst(&a, &b, NULL, 0);
	cr_assert_gt(a.probes, 0);
	cr_assert_eq(feed_answer(&a, a.last_probe + 1), -1);
	cr_assert_eq(mux_error(a.m), MUX_ERR_FLOW);
	side_fini(&a);
	side_fini(&b);

	/* an answer repeated */
	probe_setup(&a, &b, 32 * 1024);
	burst(&a, &b, NULL, 0);
	cr_assert_eq(feed_answer(&a, a.last_probe), 0);
	cr_assert_eq(feed_answer(&a, a.last_probe), -1);
	cr_assert_eq(mux_error(a.m), MUX_ERR_FLOW);
	side_fini(&a);
	side_fini(&b);
}

/* The bytes a sends for a fixed workload, with or without a budget set
 * on a session whose peer did not announce the capability. */
static size_t
capture(uint8_t *out, size_t cap, int set_budget_call)
{
	struct side a, b;
	size_t len = 0, n;
	link_pair(&a, &b, 0, 4096, 65536);
	if (set_budget_call)
		set_budget(&a, 32768);
	b.accept_send = 100000;
	for (int i = 0; i < 3; i++) {
		struct tstream *t = ts_new(&a, 0, 200000);
		t->id = mux_open(a.m, "svc", t);
	}
	mux_ping(a.m, 7);
	for (int r = 0; r < 100000; r++) {
		n = mux_send(a.m, wire, sizeof(wire));
		cr_assert_leq(len + n, cap);
		memcpy(out + len, wire, n);
		len += n;
		deliver(&b, wire, n, 0);
		size_t m = move(&b, &a, NULL, 0);
		if (n == 0 && m == 0)
			break;
	}
	cr_assert(!a.fail && !b.fail);
	cr_assert_eq(a.ts[0]->received, 100000);
	cr_assert_eq(a.probes, 0);
	cr_assert_eq(a.sent_bytes[FRAME_LINK_ACK], 0);
	cr_assert_eq(b.sent_bytes[FRAME_LINK_ACK], 0);
	side_fini(&a);
	side_fini(&b);
	return len;
}

Test(mux, link_ack_off_is_todays_behaviour)
{
	static uint8_t x[2 << 20], y[2 << 20];
	size_t nx = capture(x, sizeof(x), 0), ny = capture(y, sizeof(y), 1);
	cr_assert_eq(nx, ny);
	cr_assert_eq(memcmp(x, y, nx), 0, "a budget changed an old peer's bytes");
	/* no LINK_ACK frame anywhere in them */
	struct tap t;
	tap_init(&t, 4096);
	cr_assert_eq(frame_decoder_feed(t.dec, x, nx), 0);
	cr_assert_eq(t.by_type[FRAME_LINK_ACK], 0);
	cr_assert_gt(t.by_type[FRAME_DATA], 100);
	tap_fini(&t);
}

Test(mux, link_ack_frames_skipped_when_not_negotiated)
{
	struct side b;
	struct tap tb;
	static uint8_t f[8192];
	size_t off;
	crafted_init(&b, &tb, &off, f);
	cr_assert(!b.set.link_ack);
	off += (size_t)frame_encode_link_ack(f + off, 64, 12345, 0);
	off += (size_t)frame_encode_link_ack(f + off, 64, 99, 1); /* forged */
	off += (size_t)frame_encode_link_ack(f + off, 64, 0, 1);
	cr_assert_eq(raw(&b, f, off), 0, "%s", mux_err_str(mux_error(b.m)));
	drain(&b, &tb);
	cr_assert_eq(tb.by_type[FRAME_LINK_ACK], 0, "answered without link_ack");
	cr_assert_eq(mux_error(b.m), MUX_ERR_NONE);
	/* still checked by the codec */
	struct frame_hdr h = { .len = 7, .type = FRAME_LINK_ACK };
	frame_hdr_encode(&h, f);
	cr_assert_eq(raw(&b, f, FRAME_HDR_LEN + 7), -1);
	cr_assert_eq(mux_frame_error(b.m), FRAME_ERR_BAD_LENGTH);
	tap_fini(&tb);
	side_fini(&b);
}

Test(mux, link_ack_probe_answered_bytewise_and_coalesced)
{
	struct side b;
	struct tap tb;
	static uint8_t f[8192];
	size_t off;
	struct mux_settings sb = settings(0);
	sb.link_ack = 1;
	side_init(&b, "acceptor", &sb);
	tap_init(&tb, sb.max_frame);
	off = raw_bind(f, 0x5a);
	for (uint64_t i = 1; i <= 50; i++)
		off += (size_t)frame_encode_link_ack(f + off, 64, i * 1000, 0);
	for (size_t i = 0; i < off; i++)
		cr_assert_eq(raw(&b, f + i, 1), 0);
	drain(&b, &tb);
	cr_assert_eq(tb.by_type[FRAME_LINK_ACK], 1, "answers not coalesced");
	const struct tapf *a = find_frame(&tb, FRAME_LINK_ACK, 0);
	cr_assert_eq(a->flags, FRAME_FLAG_ACK);
	cr_assert_eq(a->arg, 50000, "the answer carries the newest probe");
	/* after the first answer went out, a probe gets its own answer */
	off = (size_t)frame_encode_link_ack(f, 64, 0x1122334455667788ull, 0);
	cr_assert_eq(raw(&b, f, off), 0);
	size_t n = mux_send(b.m, wire, sizeof(wire));
	cr_assert_eq(n, 17, "a second probe gets its own answer");
	cr_assert_eq(memcmp(wire, "\0\0\x08\x07\x01\0\0\0\0\x11\x22\x33\x44\x55\x66\x77\x88", 17), 0);
	cr_assert(!mux_want_write(b.m));
	tap_fini(&tb);
	side_fini(&b);
}

/* ---- sparse streams first (new list) ---- */

/* a with sparse_quantum, bulk streams already flowing and one small
 * stream parked; returns the small stream. */
static struct tstream *
sparse_setup(struct side *a, struct side *b,
	     struct tap *ta, int nbulk)
{
	struct mux_settings sa = settings(1), sb = settings(0);
	sa.peer_window = sb.local_window = 0x7fffffff;
	sa.max_frame = sb.max_frame = 16384;
	sa.sparse_quantum = MUX_SPARSE_QUANTUM;
	side_init(a, "dialer", &sa);
	side_init(b, "acceptor", &sb);
	tap_init(ta, sa.max_frame);
	for (int i = 0; i < nbulk; i++) {
		struct tstream *t = ts_new(a, 0, SIZE_MAX);
		t->id = mux_open(a->m, "svc", t);
	}
	struct tstream *small = ts_new(a, 0, SIZE_MAX);
	small->allow = 0;
	small->id = mux_open(a->m, "svc", small);
	for (int i = 0; i < 10; i++)
		move(a, b, ta, 0);
	return small;
}

/* Decodes one mux_send() output into the tap and returns the index of
 * its first frame. */
static size_t
send_one(struct side *a, struct side *b, struct tap *ta,
	 size_t *n)
{
	size_t first = ta->n;
	*n = move(a, b, ta, 0);
	return first;
}

Test(mux, sparse_stream_goes_first_in_its_own_send)
{
	struct side a, b;
	struct tap ta;
	struct tstream *small = sparse_setup(&a, &b, &ta, 4);

	cr_assert_gt(ta.by_type[FRAME_DATA], 30, "bulk is flowing");
	for (int round = 0; round < 20; round++) {
		for (int k = 0; k < round % 3; k++)
			move(&a, &b, &ta, 0);
		uint64_t served = mux_sparse_served(a.m);
		small->allow = 64;
		mux_resume(a.m, small->id);
		size_t n, first = send_one(&a, &b, &ta, &n);
		cr_assert_gt(ta.n, first);
		/* its frame is the first DATA and the last frame */
		const struct tapf *last = &ta.f[ta.n - 1];
		cr_assert_eq(last->stream, small->id, "round %d: the record goes on after the small frame", round);
		cr_assert_eq(last->type, FRAME_DATA);
		cr_assert_eq(last->len, 64);
		for (size_t i = first; i + 1 < ta.n; i++)
			cr_assert_neq(ta.f[i].type, FRAME_DATA, "bulk before the small frame");
		cr_assert_lt(n, 200, "the buffer holds more than the small frame");
		cr_assert_eq(mux_sparse_served(a.m), served + 1);
	}
	cr_assert_eq(b.ts[4]->received, 20 * 64);
	/* bulk goes on afterwards */
	size_t before = ta.by_type[FRAME_DATA];
	move(&a, &b, &ta, 0);
	cr_assert_gt(ta.by_type[FRAME_DATA], before + 2);
	tap_fini(&ta);
	side_fini(&a);
	side_fini(&b);
}

Test(mux, sparse_stream_is_demoted_after_its_quantum)
{
	struct side a, b;
	struct tap ta;
	struct tstream *small = sparse_setup(&a, &b, &ta, 3);

	small->allow = 100000;
	mux_resume(a.m, small->id);
	size_t n, first = send_one(&a, &b, &ta, &n);
	(void)first;
	const struct tapf *last = &ta.f[ta.n - 1];
	cr_assert_eq(last->stream, small->id);
	cr_assert_eq(last->len, MUX_SPARSE_QUANTUM, "first burst is one quantum");
	uint64_t served = mux_sparse_served(a.m);
	/* now it is bulk: it waits its round-robin turn behind the others,
	 * and sends full frames */
	first = send_one(&a, &b, &ta, &n);
	size_t idx = SIZE_MAX;
	for (size_t i = first; i < ta.n; i++)
		if (ta.f[i].stream == small->id && ta.f[i].type == FRAME_DATA) {
			idx = i - first;
			cr_assert_gt(ta.f[i].len, MUX_SPARSE_QUANTUM);
			break;
		}
	cr_assert_eq(idx, 3, "demoted stream at index %zu", idx);
	for (int i = 0; i < 20; i++)
		move(&a, &b, &ta, 0);
	cr_assert_eq(mux_sparse_served(a.m), served, "bulk counted as sparse");
	cr_assert_gt(small->sent, 50000);
	tap_fini(&ta);
	side_fini(&a);
	side_fini(&b);
}

/* A bulk stream whose source runs dry for a moment is not interactive:
 * its short bursts count again only after 8 of them in a row. */
Test(mux, sparse_dry_bulk_stream_is_not_counted)
{
	struct side a, b;
	struct tap ta;
	struct tstream *t = sparse_setup(&a, &b, &ta, 0);

	t->allow = 100000;
	mux_resume(a.m, t->id);
	for (int i = 0; i < 20; i++)
		move(&a, &b, &ta, 0);
	cr_assert_eq(t->sent, 100000);
	uint64_t served = mux_sparse_served(a.m);
	for (int i = 0; i < 7; i++) {
		t->allow = 100;
		mux_resume(a.m, t->id);
		move(&a, &b, &ta, 0);
	}
	cr_assert_eq(t->sent, 100700);
	cr_assert_eq(mux_sparse_served(a.m), served, "a bulk stream's short burst counted");
	t->allow = 100;
	mux_resume(a.m, t->id);
	move(&a, &b, &ta, 0);
	cr_assert_eq(mux_sparse_served(a.m), served + 1, "8 short bursts in a row are interactive");
	t->allow = 5000;
	mux_resume(a.m, t->id);
	move(&a, &b, &ta, 0);
	t->allow = 100;
	mux_resume(a.m, t->id);
	move(&a, &b, &ta, 0);
	cr_assert_eq(mux_sparse_served(a.m), served + 1, "bulk again after a long burst");
	tap_fini(&ta);
	side_fini(&a);
	side_fini(&b);
}

Test(mux, sparse_round_robin_among_bulk_unchanged)
{
	struct side a, b;
	struct tap ta;
	sparse_setup(&a, &b, &ta, 5);
	size_t start = ta.n;
	for (int i = 0; i < 20; i++)
		move(&a, &b, &ta, 0);
	/* strict rotation over the five bulk streams, full frames */
	uint32_t prev = 0;
	int seen = 0;
	for (size_t i = start; i < ta.n; i++) {
		if (ta.f[i].type != FRAME_DATA)
			continue;
		cr_assert_gt(ta.f[i].len, 1024, "not a bulk frame");
		if (prev)
			cr_assert_eq(ta.f[i].stream, prev == 9 ? 1 : prev + 2,
				     "out of turn: %u after %u", ta.f[i].stream, prev);
		prev = ta.f[i].stream;
		seen++;
	}
	cr_assert_gt(seen, 50);
	tap_fini(&ta);
	side_fini(&a);
	side_fini(&b);
}

/* Credit returning after zero is not a wake-up: the stream keeps its
 * round-robin place and nothing counts as sparse. */
Test(mux, sparse_credit_return_is_not_new)
{
	struct side a, b;
	struct mux_settings sa = settings(1), sb = settings(0);
	sa.sparse_quantum = sb.sparse_quantum = MUX_SPARSE_QUANTUM;
	side_init(&a, "dialer", &sa);
	side_init(&b, "acceptor", &sb);
	b.accept_hold_consume = 1;
	struct tstream *t = ts_new(&a, 0, 200000);
	t->id = mux_open(a.m, "svc", t);
	pump(&a, &b, NULL, NULL, 0);
	cr_assert_eq(t->sent, a.set.peer_window, "stopped at the window");
	uint64_t served = mux_sparse_served(a.m);
	cr_assert_eq(served, 0, "an opening burst beyond the quantum is bulk");
	b.ts[0]->hold_consume = 0;
	mux_consumed(b.m, t->id, b.ts[0]->unconsumed);
	b.ts[0]->unconsumed = 0;
	pump(&a, &b, NULL, NULL, 0);
	cr_assert_eq(b.ts[0]->received, 200000);
	cr_assert_eq(mux_sparse_served(a.m), served);
	side_fini(&a);
	side_fini(&b);
}

/* The new list under a link budget: the small frame goes first and is
 * not held back by the bulk ahead of it that is not acknowledged yet. */
Test(mux, sparse_with_link_budget)
{
	struct side a, b;
	struct mux_settings sa = settings(1), sb = settings(0);
	sa.peer_window = sb.local_window = 0x7fffffff;
	sa.max_frame = sb.max_frame = 16384;
	sa.sparse_quantum = MUX_SPARSE_QUANTUM;
	sa.link_ack = sb.link_ack = 1;
	side_init(&a, "dialer", &sa);
	side_init(&b, "acceptor", &sb);
	set_budget(&a, 64 * 1024);
	for (int i = 0; i < 3; i++) {
		struct tstream *t = ts_new(&a, 0, SIZE_MAX);
		t->id = mux_open(a.m, "svc", t);
	}
	struct tstream *small = ts_new(&a, 0, SIZE_MAX);
	small->allow = 0;
	small->id = mux_open(a.m, "svc", small);
	for (int r = 0; r < 10; r++) {
		burst(&a, &b, NULL, 0);
		cr_assert(!mux_want_write(a.m), "blocked, the probe is out");
		small->allow = 64;
		mux_resume(a.m, small->id);
		cr_assert(mux_want_write(a.m), "a woken stream passes the budget");
		cr_assert_eq(small->sent, (size_t)r * 64);
		struct tap ta;
		tap_init(&ta, 16384);
		size_t n = mux_send(a.m, wire, sizeof(wire));
		check_output(&a, wire, n);
		a.produced += n;
		deliver(&b, wire, n, 0);
		cr_assert_eq(frame_decoder_feed(ta.dec, wire, n), 0);
		cr_assert_eq(ta.f[ta.n - 1].stream, small->id);
		cr_assert_eq(ta.by_type[FRAME_DATA], 1);
		tap_fini(&ta);
	}
	cr_assert(!a.fail && !b.fail);
	cr_assert_leq(a.max_inflight, bound(&a));
	side_fini(&a);
	side_fini(&b);
}

Test(mux, goaway_answer_never_overtakes_queued_opens)
{
	struct side a, b;

	pair_init(&a, &b);
	pump(&a, &b, NULL, NULL, 0);
	/* a queues an OPEN; before it goes out, b's GOAWAY reaches a, and
	 * a answers with its own, as the link does. */
	struct tstream *t = ts_new(&a, 0, 1000);
	t->id = mux_open(a.m, "svc", t);
	cr_assert_neq(t->id, 0);
	mux_goaway(b.m, MUX_C_SHUTDOWN, "stopping");
	cr_assert_gt(move(&b, &a, NULL, 0), 0);
	cr_assert_eq(a.goaways, 1);
	mux_goaway(a.m, MUX_C_NO_ERROR, "answer");
	/* The OPEN leaves before the GOAWAY, so b takes the stream. */
	pump(&a, &b, NULL, NULL, 0);
	cr_assert_eq(b.goaways, 1);
	cr_assert_eq(b.opens, 1);
	cr_assert(t->closed);
	cr_assert_eq(t->close_code, MUX_C_NO_ERROR);
	cr_assert_eq(mux_stream_count(a.m), 0);
	cr_assert_eq(mux_stream_count(b.m), 0);
	side_fini(&a);
	side_fini(&b);
}

/* Without REVERSE the acceptor cannot open a stream, and a dialler that
 * did not announce it refuses an OPEN from the acceptor (as an older
 * dialler does) without asking the application; with it, acceptor
 * streams carry data both ways under the same windows. */
Test(mux, acceptor_opens_only_with_reverse)
{
	struct side a, b;
	struct tap ta;
	static uint8_t f[4096];
	size_t off;
	const struct tapf *r;

	pair_init(&a, &b);
	cr_assert_eq(mux_open(b.m, "svc", ts_new(&b, 0, 10)), 0,
		     "an acceptor opened a stream without REVERSE");
	side_fini(&a);
	side_fini(&b);

	/* A dialler without REVERSE, fed an acceptor's OPEN by hand. */
	struct mux_settings sa = settings(1);
	side_init(&a, "dialer", &sa);
	a.no_verify = 1;
	tap_init(&ta, sa.max_frame);
	off = raw_bind(f, 0x5a);
	off += (size_t)frame_encode_open(f + off, sizeof(f) - off, 2, "svc");
	cr_assert_eq(raw(&a, f, off), 0);
	cr_assert_eq(a.opens, 0, "on_open ran for a refused acceptor stream");
	drain(&a, &ta);
	r = find_frame(&ta, FRAME_RESET, 2);
	cr_assert_not_null(r, "no RESET for the acceptor's stream");
	cr_assert_eq(r->arg, MUX_C_REFUSED);
	cr_assert_eq(mux_stream_count(a.m), 0);
	tap_fini(&ta);
	side_fini(&a);

	/* With REVERSE: bulk both ways on acceptor-opened streams. */
	pair_init_reverse(&a, &b);
	a.accept_send = 300 * 1024;
	for (int i = 0; i < 8; i++) {
		struct tstream *t = ts_new(&b, 0, 200 * 1024 + (size_t)i);

		t->id = mux_open(b.m, "svc", t);
		cr_assert_eq(t->id, (uint32_t)(2 * i + 2));
	}
	pump(&a, &b, NULL, NULL, 0);
	cr_assert(!a.fail && !b.fail);
	cr_assert_eq(a.opens, 8);
	for (int i = 0; i < 8; i++) {
		struct tstream *t = b.ts[i];

		cr_assert(t->closed && t->close_code == MUX_C_NO_ERROR);
		cr_assert_eq(t->received, a.accept_send);
		cr_assert_eq(t->sent, t->to_send);
		cr_assert_eq(a.ts[i]->received, t->to_send);
	}
	cr_assert_leq(a.max_unconsumed, a.set.local_window);
	side_fini(&a);
	side_fini(&b);
}
