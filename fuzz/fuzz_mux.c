/*
 * libFuzzer target: the frame decoder and a mux session (proto/frame.h,
 * proto/mux.h) fed the peer's side of a link.  See fuzz_mux.h for the
 * input layout.
 *
 * Checks: the frame decoder sees the same frames whether the bytes come
 * whole or in the script's chunks; what mux_send() writes decodes as
 * whole valid frames starting with our BIND, with DATA within max_frame;
 * a stream never holds more unconsumed bytes than the local window;
 * the session never sends more DATA on a stream than peer_window plus
 * the WINDOW increments the input holds for it, nor DATA after its FIN;
 * every session stream has exactly one application slot, which is its
 * user pointer (mux_stream_count, mux_stream_data); on_close comes once,
 * on_fin at most once; read_data is never asked for 0 bytes or more than
 * max_frame.  Link budget: no LINK_ACK frame without link_ack; a probe
 * carries the count of bytes sent up to its end; DATA starts only below
 * the budget (a frame of at most the sparse quantum below one and a half
 * budgets); never more than MUX_LINK_PROBES_MAX probes outstanding; an
 * answer accepted names one of them; inflight is sent minus acknowledged
 * and at most sent.  Leaks and memory errors are the sanitizers'.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "be.h"
#include "fuzz_mux.h"
#include "mux.h"

#define CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)

#define NSLOTS 64
#define BIG_CAP (64 * 1024 + FRAME_HDR_LEN)
#define SMALL_CAP (FRAME_HDR_LEN + FRAME_CTRL_MAX)

struct slot {
	int used;
	uint32_t id;
	size_t unconsumed;
	size_t to_send;
	int want_eof;
	int fin_seen;
};

/* Per stream id, over one input: credit the peer granted, bytes sent. */
#define NIDS 4096
struct idstat {
	uint32_t id;
	int used, fin_sent;
	uint64_t granted, sent;
};

struct fz {
	struct mux *m;
	struct mux_settings set;
	int eager;
	uint32_t budget;   /* as in effect, after raising to the minimum */
	uint64_t produced; /* bytes mux_send returned */
	uint64_t acked;
	uint64_t probes[MUX_LINK_PROBES_MAX]; /* outstanding, oldest first */
	size_t nprobes;
	struct slot slots[NSLOTS];
	size_t nused;
	struct frame_decoder *out;   /* decodes what mux_send wrote */
	int out_frames;
	uint64_t counter;
	struct idstat ids[NIDS];
};

/* The entry for id, or NULL when the table is full. */
static struct idstat *
idstat(struct fz *f, uint32_t id)
{
	for (size_t n = 0, i = (id * 2654435761u) % NIDS; n < NIDS;
	     n++, i = (i + 1) % NIDS) {
		if (!f->ids[i].used) {
			f->ids[i].used = 1;
			f->ids[i].id = id;
			return &f->ids[i];
		}
		if (f->ids[i].id == id)
			return &f->ids[i];
	}
	return NULL;
}

/* ---- a bare frame decoder, to compare whole and chunked feeding ---- */

struct tally {
	uint64_t frames, data_bytes, sum;
	struct fz *grants; /* records WINDOW increments in its ids */
};

static int
t_frame(void *ud, const struct frame_hdr *h, const uint8_t *p)
{
	struct tally *t = ud;

	t->frames++;
	t->sum = t->sum * 31 + h->type * 7 + h->stream + h->len;
	if (t->grants && h->type == FRAME_WINDOW) {
		struct idstat *st = idstat(t->grants, h->stream);

		if (st)
			st->granted += be32_get(p);
	}
	for (uint32_t i = 0; i < h->len; i++)
		t->sum = t->sum * 3 + p[i];
	return 0;
}

static int
t_data(void *ud, const struct frame_hdr *h, const uint8_t *p, size_t n,
       int last)
{
	struct tally *t = ud;

	t->data_bytes += n;
	for (size_t i = 0; i < n; i++)
		t->sum += p[i];
	if (last)
		t->sum = t->sum * 5 + h->stream + h->flags;
	return 0;
}

static const struct frame_callbacks tally_cb = { t_frame, t_data };

/* ---- mux callbacks ---- */

static struct slot *
slot_get(struct fz *f)
{
	for (size_t i = 0; i < NSLOTS; i++)
		if (!f->slots[i].used) {
			memset(&f->slots[i], 0, sizeof(f->slots[i]));
			f->slots[i].used = 1;
			f->nused++;
			return &f->slots[i];
		}
	return NULL;
}

static void
slot_put(struct fz *f, struct slot *s)
{
	CHECK(s->used);
	s->used = 0;
	f->nused--;
}

static struct slot *
slot_of(void *sud, uint32_t id)
{
	struct slot *s = sud;

	CHECK(s != NULL && s->used && s->id == id);
	return s;
}

static void open_local(struct fz *f, const char *service);

static uint32_t
cb_open(void *ud, uint32_t id, const char *service, void **sud)
{
	struct fz *f = ud;
	struct slot *s;

	CHECK(service[0] != '\0' && strlen(service) <= FRAME_SERVICE_MAX);
	if (service[0] == 'x')
		return MUX_C_REFUSED;
	s = slot_get(f);
	if (!s)
		return MUX_C_LIMIT;
	s->id = id;
	s->to_send = 500 + (id % 7) * 300;
	s->want_eof = 1;
	*sud = s;
	if (service[0] == 'r')
		open_local(f, "back");
	return MUX_C_NO_ERROR;
}

static uint32_t
cb_data(void *ud, uint32_t id, void *sud, const uint8_t *p, size_t n)
{
	struct fz *f = ud;
	struct slot *s = slot_of(sud, id);

	CHECK(n > 0);
	s->unconsumed += n;
	CHECK(s->unconsumed <= f->set.local_window);
	if (p[0] == 0xEE)
		return MUX_C_CONN_RESET;
	if (f->eager) {
		mux_consumed(f->m, id, n);
		s->unconsumed -= n;
	}
	return MUX_C_NO_ERROR;
}

static void
cb_fin(void *ud, uint32_t id, void *sud)
{
	struct slot *s = slot_of(sud, id);

	CHECK(!s->fin_seen);
	s->fin_seen = 1;
}

static void
cb_close(void *ud, uint32_t id, void *sud, uint32_t code, int by_peer)
{
	slot_put(ud, slot_of(sud, id));
	(void)mux_code_str(code);
}

static size_t
cb_read(void *ud, uint32_t id, void *sud, uint8_t *buf, size_t max,
	int *eof)
{
	struct fz *f = ud;
	struct slot *s = slot_of(sud, id);
	size_t n = s->to_send < max ? s->to_send : max;

	CHECK(max > 0 && max <= f->set.max_frame);
	for (size_t i = 0; i < n; i++)
		buf[i] = (uint8_t)(id + i);
	s->to_send -= n;
	*eof = s->to_send == 0 && s->want_eof;
	return n;
}

static void
cb_goaway(void *ud, uint32_t last_id, uint32_t code, const char *text)
{
	CHECK(strlen(text) <= 255);
}

static void
cb_pong(void *ud, uint64_t opaque)
{
}

static void
cb_link_probe(void *ud, uint64_t offset)
{
	struct fz *f = ud;

	CHECK(f->set.link_ack && f->budget > 0);
	CHECK(f->nprobes < MUX_LINK_PROBES_MAX);
	CHECK(f->nprobes == 0 || offset > f->probes[f->nprobes - 1]);
	CHECK(offset > f->produced);
	f->probes[f->nprobes++] = offset;
}

static void
cb_link_ack(void *ud, uint64_t offset, uint64_t inflight)
{
	struct fz *f = ud;
	size_t i;

	CHECK(f->set.link_ack);
	for (i = 0; i < f->nprobes && f->probes[i] != offset; i++)
		;
	CHECK(i < f->nprobes);
	memmove(f->probes, f->probes + i + 1,
		(f->nprobes - i - 1) * sizeof(f->probes[0]));
	f->nprobes -= i + 1;
	CHECK(offset >= f->acked && offset <= f->produced);
	f->acked = offset;
	CHECK(inflight == f->produced - offset);
	CHECK(mux_link_inflight(f->m) == inflight);
}

static const struct mux_callbacks mux_cb = {
	cb_open, cb_data, cb_fin, cb_close, cb_read, cb_goaway, cb_pong,
	cb_link_probe, cb_link_ack,
};

/* ---- checks of what the session sends ---- */

static int
o_frame(void *ud, const struct frame_hdr *h, const uint8_t *p)
{
	struct fz *f = ud;

	if (f->out_frames++ == 0) {
		CHECK(h->type == FRAME_BIND);
		for (size_t i = 0; i < FRAME_BIND_LEN; i++)
			CHECK(p[i] == FM_BIND_BYTE(i));
	}
	if (h->type == FRAME_OPEN)
		CHECK((h->stream & 1) == (f->set.dialer ? 1u : 0u));
	CHECK(h->type <= FRAME_LINK_ACK);
	CHECK(h->type != FRAME_LINK_ACK || f->set.link_ack);
	return 0;
}

static int
o_data(void *ud, const struct frame_hdr *h, const uint8_t *p, size_t n,
       int last)
{
	struct fz *f = ud;
	struct idstat *st = idstat(f, h->stream);

	CHECK(f->out_frames++ > 0);
	CHECK(h->len <= f->set.max_frame);
	if (st) {
		CHECK(!st->fin_sent);
		st->sent += n;
		CHECK(st->sent <= f->set.peer_window + st->granted);
		if (last && (h->flags & FRAME_FLAG_FIN))
			st->fin_sent = 1;
	}
	return 0;
}

static const struct frame_callbacks out_cb = { o_frame, o_data };

/* The frames of one mux_send() output, against the link budget. */
static void
check_budget(struct fz *f, const uint8_t *buf, size_t n)
{
	for (size_t pos = 0; pos < n;) {
		size_t len;

		CHECK(n - pos >= FRAME_HDR_LEN);
		len = be24_get(buf + pos);
		CHECK(n - pos - FRAME_HDR_LEN >= len);
		if (buf[pos + 3] == FRAME_LINK_ACK && !(buf[pos + 4] & 1))
			CHECK(be64_get(buf + pos + FRAME_HDR_LEN) ==
			      f->produced + pos + FRAME_HDR_LEN + len);
		/* A freshly woken stream's frame (at most its quantum) may
		 * start up to half a budget beyond; bulk never. */
		if (buf[pos + 3] == FRAME_DATA && f->set.link_ack && f->budget) {
			uint64_t at = f->produced + pos - f->acked;

			CHECK(at < (uint64_t)f->budget + f->budget / 2);
			if (len > f->set.sparse_quantum)
				CHECK(at < f->budget);
		}
		pos += FRAME_HDR_LEN + len;
	}
}

static void
send_some(struct fz *f, size_t cap)
{
	static uint8_t buf[BIG_CAP];
	size_t n = mux_send(f->m, buf, cap);

	CHECK(n <= cap);
	check_budget(f, buf, n);
	f->produced += n;
	CHECK(mux_link_inflight(f->m) == f->produced - f->acked);
	CHECK(mux_link_inflight(f->m) <= f->produced);
	CHECK(frame_decoder_feed(f->out, buf, n) == 0);
}

static void
set_budget(struct fz *f, uint32_t bytes)
{
	mux_set_link_budget(f->m, bytes);
	f->budget = bytes && bytes < MUX_LINK_BUDGET_MIN ? MUX_LINK_BUDGET_MIN
							 : bytes;
}

/* After the link bytes: the peer answers our probes (as a well-behaved
 * peer, but maybe late and only the oldest), so data flows on. */
static void
answer_phase(struct fz *f, uint8_t flow)
{
	static const uint32_t budgets[] = { 0, 1, 64 * 1024, 1 << 20 };

	for (int i = 0; i < 256 && mux_error(f->m) == MUX_ERR_NONE; i++) {
		uint8_t fr[FRAME_HDR_LEN + FRAME_LINK_ACK_LEN];

		if (mux_want_write(f->m))
			send_some(f, i & 1 ? BIG_CAP : SMALL_CAP);
		else if (f->nprobes == 0)
			break;
		if ((flow & FF_REBUDGET) && i % 7 == 3)
			set_budget(f, budgets[(f->counter++ + i) % 4]);
		if (f->nprobes == 0)
			continue;
		frame_encode_link_ack(fr, sizeof(fr),
				      flow & FF_ANSWER_OLDEST
					      ? f->probes[0]
					      : f->probes[f->nprobes - 1],
				      1);
		CHECK(mux_recv(f->m, fr, sizeof(fr)) == 0);
	}
	CHECK(f->nprobes <= MUX_LINK_PROBES_MAX);
}

static void
open_local(struct fz *f, const char *service)
{
	struct slot *s = slot_get(f);

	if (!s)
		return;
	s->to_send = 2000 + f->counter++ % 5000;
	s->want_eof = f->counter & 1;
	s->id = mux_open(f->m, service, s);
	if (s->id == 0)
		slot_put(f, s);
}

static void
act(struct fz *f, unsigned a)
{
	switch (a) {
	case FM_ACT_SEND_SMALL:
		send_some(f, SMALL_CAP);
		break;
	case FM_ACT_SEND_BIG:
		send_some(f, BIG_CAP);
		break;
	case FM_ACT_OPEN:
		open_local(f, f->counter & 1 ? "echo" : "svc.b-2");
		break;
	case FM_ACT_CONSUME:
		for (size_t i = 0; i < NSLOTS; i++) {
			struct slot *s = &f->slots[i];

			if (!s->used)
				continue;
			mux_consumed(f->m, s->id, s->unconsumed);
			s->unconsumed = 0;
			s->to_send += 100;
			mux_resume(f->m, s->id);
		}
		break;
	case FM_ACT_PING:
		mux_ping(f->m, f->counter++);
		break;
	case FM_ACT_GOAWAY:
		mux_goaway(f->m, MUX_C_SHUTDOWN, "going away");
		break;
	case FM_ACT_RESET:
		for (size_t i = 0; i < NSLOTS; i++)
			if (f->slots[i].used) {
				mux_reset(f->m, f->slots[i].id, MUX_C_CONN_RESET);
				break;
			}
		break;
	}
}

/* The session and the slots agree on which streams exist. */
static void
check_streams(struct fz *f)
{
	CHECK(mux_stream_count(f->m) == f->nused);
	for (size_t i = 0; i < NSLOTS; i++)
		if (f->slots[i].used)
			CHECK(mux_stream_data(f->m, f->slots[i].id) ==
			      &f->slots[i]);
}

static size_t
step_len(unsigned c, size_t left)
{
	unsigned n = c & 0x1f;
	size_t len = n == FM_FEED_ALL ? left : (size_t)n * n + 1;

	return len < left ? len : left;
}

/* The frame decoder alone: whole, then in the script's chunks. */
static void
check_chunking(struct fz *fz, const uint8_t *script, size_t k,
	       const uint8_t *link, size_t n, uint32_t max_payload)
{
	struct tally a = { .grants = fz }, b = { 0 };
	struct frame_decoder *whole = frame_decoder_new(max_payload, &tally_cb, &a);
	struct frame_decoder *part = frame_decoder_new(max_payload, &tally_cb, &b);
	int ra, rb = 0;

	if (!whole || !part)
		abort();
	ra = frame_decoder_feed(whole, link, n);
	for (size_t off = 0, i = 0; off < n && rb == 0; i++) {
		size_t len = step_len(k ? script[i % k] : FM_FEED_ALL, n - off);

		rb = frame_decoder_feed(part, link + off, len);
		off += len;
	}
	CHECK(ra == rb);
	CHECK(frame_decoder_error(whole) == frame_decoder_error(part));
	CHECK(a.frames == b.frames && a.data_bytes == b.data_bytes &&
	      a.sum == b.sum);
	if (ra == 0)
		CHECK(frame_decoder_finish(whole) == frame_decoder_finish(part));
	(void)frame_err_str(frame_decoder_error(whole));
	frame_decoder_free(whole);
	frame_decoder_free(part);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fz f;
	const uint8_t *script, *link;
	size_t k, n, off = 0;
	uint8_t bits, flow;

	if (size < 3)
		return 0;
	bits = data[0];
	flow = data[1];
	k = data[2];
	if (k > size - 3)
		k = size - 3;
	script = data + 3;
	link = data + 3 + k;
	n = size - 3 - k;

	memset(&f, 0, sizeof(f));
	f.set.dialer = bits & FM_DIALER;
	f.set.max_frame = bits & FM_SMALL_FRAME ? 1024 : 16384;
	f.set.local_window = bits & FM_SMALL_LWIN ? 1024 : 65536;
	f.set.peer_window = bits & FM_SMALL_PWIN ? 1024 : 65536;
	f.set.local_max_streams = bits & FM_FEW_LOCAL ? 2 : 100;
	f.set.peer_max_streams = bits & FM_FEW_PEER ? 1 : 100;
	for (size_t i = 0; i < FRAME_BIND_LEN; i++)
		f.set.bind[i] = FM_BIND_BYTE(i);
	f.eager = !!(bits & FM_EAGER);
	f.set.link_ack = flow & FF_LINK_ACK;
	f.set.sparse_quantum = flow & FF_SPARSE ? MUX_SPARSE_QUANTUM : 0;
	f.set.reverse = !(flow & FF_NO_REVERSE);

	check_chunking(&f, script, k, link, n, f.set.max_frame);

	f.m = mux_new(&f.set, &mux_cb, &f);
	f.out = frame_decoder_new(f.set.max_frame, &out_cb, &f);
	if (!f.m || !f.out)
		abort();
	{
		static const uint32_t budgets[] = { 0, 1, 64 * 1024, 1 << 20 };
		set_budget(&f, budgets[(flow & FF_BUDGET) >> FF_BUDGET_SHIFT]);
	}
	for (size_t i = 0; off < n; i++) {
		unsigned c = k ? script[i % k] : FM_STEP(FM_FEED_ALL, FM_ACT_SEND_BIG);
		size_t len = step_len(c, n - off);

		if (mux_recv(f.m, link + off, len) < 0) {
			CHECK(mux_error(f.m) != MUX_ERR_NONE);
			CHECK(!mux_bound(f.m));
			CHECK(mux_recv(f.m, link, 0) < 0);
			(void)mux_err_str(mux_error(f.m));
			(void)frame_err_str(mux_frame_error(f.m));
			break;
		}
		off += len;
		act(&f, c >> 5);
		check_streams(&f);
	}
	if (mux_error(f.m) == MUX_ERR_NONE && mux_recv_eof(f.m) == 0 &&
	    (flow & FF_ANSWER) && mux_bound(f.m))
		answer_phase(&f, flow);
	for (int i = 0; i < 64 && mux_want_write(f.m); i++)
		send_some(&f, BIG_CAP);
	CHECK(frame_decoder_finish(f.out) == 0);
	check_streams(&f);
	if (bits & FM_CLOSE_ALL) {
		mux_close_all(f.m, MUX_C_SHUTDOWN);
		CHECK(f.nused == 0 && mux_stream_count(f.m) == 0);
	}
	mux_free(f.m);
	frame_decoder_free(f.out);
	return 0;
}
