/*
 * Stream multiplexer session on top of the frame codec.
 *
 * Streams live in an open-addressing hash table keyed by id (linear
 * probing, backward-shift deletion, grown at half load).  Streams with
 * something to send sit on an intrusive doubly-linked ready list that
 * mux_send() serves round-robin, one DATA frame per stream per turn.
 * Encoded link-level frames (RESET, PING, GOAWAY) wait in a bounded
 * byte queue that goes out before any stream frame.
 */
#include "mux.h"

#include <stdlib.h>
#include <string.h>

#define WINDOW_MAX 0x7fffffffu
#define GOAWAY_TEXT_MAX 255
#define CQ_BASE (64u * 1024u)
#define CQ_PER_STREAM 16u
#define PING_FRAME_LEN (FRAME_HDR_LEN + 8)

enum {
	S_LOCAL = 1 << 0,        /* we opened it */
	S_OPEN_PENDING = 1 << 1, /* our OPEN frame is not sent yet */
	S_FIN_SENT = 1 << 2,
	S_FIN_RECV = 1 << 3,
	S_PARKED = 1 << 4,       /* read_data had nothing; wait for resume */
	S_WIN_PENDING = 1 << 5,  /* a WINDOW frame is due */
	S_READY = 1 << 6,        /* on the ready list */
	S_IN_READ = 1 << 7,      /* inside read_data() */
	S_RESUMED = 1 << 8,      /* mux_resume() ran inside read_data() */
};

struct mux_stream {
	uint32_t id;
	uint32_t flags;
	void *sud;
	uint32_t send_credit;  /* bytes we may still send */
	uint32_t recv_credit;  /* bytes the peer may still send */
	uint32_t unconsumed;   /* received, not yet passed to mux_consumed */
	uint32_t consumed_acc; /* consumed, not yet granted back */
	struct mux_stream *prev, *next;
	char service[FRAME_SERVICE_MAX + 1];
};

struct mux {
	struct mux_settings set;
	struct mux_callbacks cb;
	void *ud;
	struct frame_decoder *dec;
	enum mux_err err;

	/* id -> stream table; size is a power of two */
	struct mux_stream **tab;
	size_t tab_size;
	size_t count;
	size_t local_open, peer_open;
	uint64_t total;

	uint32_t next_id;      /* next id mux_open hands out; 0 = exhausted */
	uint32_t local_high;   /* highest id we handed out */
	uint32_t peer_high;    /* highest id the peer opened */

	struct mux_stream *ready_head, *ready_tail;
	size_t ready_count;

	/* queue of encoded control frames: bytes [cq_head, cq_len) */
	uint8_t *cq;
	size_t cq_head, cq_len, cq_alloc, cq_max;
	size_t ack_pos; /* offset of the pending PING ACK, or SIZE_MAX */

	int bind_sent, bind_recv;
	int goaway_sent, goaway_recv;

	/* current incoming DATA frame */
	int in_data;
	int data_skip;
};

static int is_local_id(const struct mux *m, uint32_t id)
{
	return (id & 1) == (m->set.dialer ? 1u : 0u);
}

static int id_known(const struct mux *m, uint32_t id)
{
	return is_local_id(m, id) ? id <= m->local_high : id <= m->peer_high;
}

/* ---- hash table ---------------------------------------------------- */

static size_t slot_in(uint32_t id, size_t size)
{
	return (size_t)(id * 0x9e3779b1u) & (size - 1);
}

static size_t slot_of(const struct mux *m, uint32_t id)
{
	return slot_in(id, m->tab_size);
}

static struct mux_stream *stream_find(const struct mux *m, uint32_t id)
{
	if (m->tab_size == 0)
		return NULL;
	for (size_t i = slot_of(m, id);; i = (i + 1) & (m->tab_size - 1)) {
		struct mux_stream *s = m->tab[i];
		if (s == NULL)
			return NULL;
		if (s->id == id)
			return s;
	}
}

static void tab_put(struct mux_stream **tab, size_t size,
		    struct mux_stream *s)
{
	size_t i = slot_in(s->id, size);
	while (tab[i] != NULL)
		i = (i + 1) & (size - 1);
	tab[i] = s;
}

static int tab_insert(struct mux *m, struct mux_stream *s)
{
	if ((m->count + 1) * 2 > m->tab_size) {
		size_t nsize = m->tab_size ? m->tab_size * 2 : 16;
		struct mux_stream **ntab = calloc(nsize, sizeof(*ntab));
		if (ntab == NULL)
			return -1;
		for (size_t i = 0; i < m->tab_size; i++)
			if (m->tab[i] != NULL)
				tab_put(ntab, nsize, m->tab[i]);
		free(m->tab);
		m->tab = ntab;
		m->tab_size = nsize;
	}
	tab_put(m->tab, m->tab_size, s);
	m->count++;
	return 0;
}

static void tab_remove(struct mux *m, struct mux_stream *s)
{
	size_t mask = m->tab_size - 1;
	size_t i = slot_of(m, s->id);

	while (m->tab[i] != s)
		i = (i + 1) & mask;
	m->tab[i] = NULL;
	/* Shift back later entries of the cluster that may no longer be
	 * reachable from their home slot. */
	for (size_t j = (i + 1) & mask; m->tab[j] != NULL; j = (j + 1) & mask) {
		size_t home = slot_of(m, m->tab[j]->id);
		if (((j - home) & mask) >= ((j - i) & mask)) {
			m->tab[i] = m->tab[j];
			m->tab[j] = NULL;
			i = j;
		}
	}
	m->count--;
}

/* ---- ready list ---------------------------------------------------- */

static void ready_unlink(struct mux *m, struct mux_stream *s)
{
	if (!(s->flags & S_READY))
		return;
	if (s->prev)
		s->prev->next = s->next;
	else
		m->ready_head = s->next;
	if (s->next)
		s->next->prev = s->prev;
	else
		m->ready_tail = s->prev;
	s->prev = s->next = NULL;
	s->flags &= ~(uint32_t)S_READY;
	m->ready_count--;
}

static void ready_append(struct mux *m, struct mux_stream *s)
{
	s->next = NULL;
	s->prev = m->ready_tail;
	if (m->ready_tail)
		m->ready_tail->next = s;
	else
		m->ready_head = s;
	m->ready_tail = s;
	s->flags |= S_READY;
	m->ready_count++;
}

static int stream_wants_send(const struct mux_stream *s)
{
	if (s->flags & (S_OPEN_PENDING | S_WIN_PENDING))
		return 1;
	return !(s->flags & (S_PARKED | S_FIN_SENT)) && s->send_credit > 0;
}

/* Puts s on the ready list (at the tail) or takes it off, as its state
 * says. */
static void ready_update(struct mux *m, struct mux_stream *s)
{
	int want = stream_wants_send(s);
	if (want && !(s->flags & S_READY))
		ready_append(m, s);
	else if (!want && (s->flags & S_READY))
		ready_unlink(m, s);
}

/* ---- stream life ----------------------------------------------------- */

static struct mux_stream *stream_new(struct mux *m, uint32_t id, int local)
{
	struct mux_stream *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->id = id;
	s->flags = local ? S_LOCAL : 0;
	s->send_credit = m->set.peer_window;
	s->recv_credit = m->set.local_window;
	if (tab_insert(m, s) < 0) {
		free(s);
		return NULL;
	}
	if (local)
		m->local_open++;
	else
		m->peer_open++;
	m->total++;
	return s;
}

/* Forgets s without callbacks. */
static void stream_drop(struct mux *m, struct mux_stream *s)
{
	ready_unlink(m, s);
	tab_remove(m, s);
	if (s->flags & S_LOCAL)
		m->local_open--;
	else
		m->peer_open--;
	free(s);
}

/* Removes s first so that callbacks see a consistent session. */
static void stream_close(struct mux *m, struct mux_stream *s, uint32_t code,
			 int by_peer)
{
	uint32_t id = s->id;
	void *sud = s->sud;

	stream_drop(m, s);
	if (m->cb.on_close)
		m->cb.on_close(m->ud, id, sud, code, by_peer);
}

/* ---- control queue --------------------------------------------------- */

static uint8_t *cq_reserve(struct mux *m, size_t n)
{
	if (m->cq_len - m->cq_head + n > m->cq_max) {
		m->err = MUX_ERR_OVERLOAD;
		return NULL;
	}
	if (m->cq_len + n > m->cq_alloc && m->cq_head > 0) {
		memmove(m->cq, m->cq + m->cq_head, m->cq_len - m->cq_head);
		m->cq_len -= m->cq_head;
		if (m->ack_pos != SIZE_MAX)
			m->ack_pos -= m->cq_head;
		m->cq_head = 0;
	}
	if (m->cq_len + n > m->cq_alloc) {
		size_t na = m->cq_alloc ? m->cq_alloc : 1024;
		while (na < m->cq_len + n)
			na *= 2;
		if (na > m->cq_max)
			na = m->cq_max;
		uint8_t *p = realloc(m->cq, na);
		if (p == NULL) {
			m->err = MUX_ERR_NOMEM;
			return NULL;
		}
		m->cq = p;
		m->cq_alloc = na;
	}
	uint8_t *p = m->cq + m->cq_len;
	m->cq_len += n;
	return p;
}

static int cq_reset(struct mux *m, uint32_t id, uint32_t code)
{
	uint8_t *p = cq_reserve(m, FRAME_HDR_LEN + 4);
	if (p == NULL)
		return -1;
	frame_encode_reset(p, FRAME_HDR_LEN + 4, id, code);
	return 0;
}

/* Stream-level abort started by us: RESET to the peer (if it knows the
 * stream) and on_close(code, by_peer = 0). */
static int stream_abort(struct mux *m, struct mux_stream *s, uint32_t code)
{
	int rc = 0;
	if (!(s->flags & S_OPEN_PENDING))
		rc = cq_reset(m, s->id, code);
	stream_close(m, s, code, 0);
	return rc;
}

/* ---- receiving ------------------------------------------------------- */

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static int fatal(struct mux *m, enum mux_err err)
{
	if (m->err == MUX_ERR_NONE)
		m->err = err;
	return -1;
}

static int check_bind(struct mux *m, const struct frame_hdr *h,
		      const uint8_t *payload)
{
	if (h->type != FRAME_BIND)
		return fatal(m, MUX_ERR_NO_BIND);
	uint8_t diff = 0;
	for (size_t i = 0; i < FRAME_BIND_LEN; i++)
		diff |= payload[i] ^ m->set.bind[i];
	if (diff != 0)
		return fatal(m, MUX_ERR_BIND_MISMATCH);
	m->bind_recv = 1;
	return 0;
}

static int recv_open(struct mux *m, const struct frame_hdr *h,
		     const uint8_t *p)
{
	uint32_t id = h->stream;
	char name[FRAME_SERVICE_MAX + 1];

	if (is_local_id(m, id) || id <= m->peer_high)
		return fatal(m, MUX_ERR_BAD_STREAM);
	m->peer_high = id;
	if (m->peer_open >= m->set.local_max_streams)
		return cq_reset(m, id, MUX_C_LIMIT);
	if (m->goaway_sent)
		return cq_reset(m, id, MUX_C_REFUSED);

	struct mux_stream *s = stream_new(m, id, 0);
	if (s == NULL)
		return cq_reset(m, id, MUX_C_INTERNAL);
	memcpy(name, p + 1, p[0]);
	name[p[0]] = '\0';

	void *sud = NULL;
	uint32_t code = m->cb.on_open ? m->cb.on_open(m->ud, id, name, &sud)
				      : MUX_C_REFUSED;
	if (code != MUX_C_NO_ERROR) {
		stream_drop(m, s);
		m->total--;
		return cq_reset(m, id, code);
	}
	s->sud = sud;
	ready_update(m, s);
	return 0;
}

/* Looks up the stream a RESET, WINDOW or DATA frame names.  Returns -1 for
 * a never-opened id (link-fatal), which includes our own stream whose
 * OPEN has not gone out yet: the peer can only have guessed its id.  *sp
 * is NULL for a stream already gone. */
static int lookup_known(struct mux *m, uint32_t id, struct mux_stream **sp)
{
	*sp = stream_find(m, id);
	if ((*sp == NULL && !id_known(m, id)) ||
	    (*sp != NULL && ((*sp)->flags & S_OPEN_PENDING)))
		return fatal(m, MUX_ERR_BAD_STREAM);
	return 0;
}

static int recv_window(struct mux *m, const struct frame_hdr *h,
		       const uint8_t *p)
{
	struct mux_stream *s;
	if (lookup_known(m, h->stream, &s) < 0)
		return -1;
	if (s == NULL)
		return 0;
	uint32_t incr = rd32(p);
	if (incr > WINDOW_MAX - s->send_credit)
		return stream_abort(m, s, MUX_C_FLOW_CONTROL);
	s->send_credit += incr;
	ready_update(m, s);
	return 0;
}

static int recv_reset(struct mux *m, const struct frame_hdr *h,
		      const uint8_t *p)
{
	struct mux_stream *s;
	if (lookup_known(m, h->stream, &s) < 0)
		return -1;
	if (s != NULL)
		stream_close(m, s, rd32(p), 1);
	return 0;
}

static int recv_ping(struct mux *m, const struct frame_hdr *h,
		     const uint8_t *p)
{
	if (h->flags & FRAME_FLAG_ACK) {
		if (m->cb.on_pong)
			m->cb.on_pong(m->ud, (uint64_t)rd32(p) << 32 | rd32(p + 4));
		return 0;
	}
	if (m->ack_pos != SIZE_MAX) {
		memcpy(m->cq + m->ack_pos + FRAME_HDR_LEN, p, 8);
		return 0;
	}
	uint8_t *q = cq_reserve(m, PING_FRAME_LEN);
	if (q == NULL)
		return -1;
	m->ack_pos = (size_t)(q - m->cq);
	frame_encode_ping(q, PING_FRAME_LEN, 0, 1);
	memcpy(q + FRAME_HDR_LEN, p, 8);
	return 0;
}

static int recv_goaway(struct mux *m, const struct frame_hdr *h,
		       const uint8_t *p)
{
	char text[GOAWAY_TEXT_MAX + 1];
	size_t n = h->len - 8;

	memcpy(text, p + 8, n);
	text[n] = '\0';
	m->goaway_recv = 1;
	if (m->cb.on_goaway)
		m->cb.on_goaway(m->ud, rd32(p), rd32(p + 4), text);
	return 0;
}

static int on_frame(void *ud, const struct frame_hdr *h, const uint8_t *p)
{
	struct mux *m = ud;
	int rc = 0;

	if (!m->bind_recv)
		return check_bind(m, h, p);
	switch (h->type) {
	case FRAME_OPEN:
		rc = recv_open(m, h, p);
		break;
	case FRAME_RESET:
		rc = recv_reset(m, h, p);
		break;
	case FRAME_WINDOW:
		rc = recv_window(m, h, p);
		break;
	case FRAME_PING:
		rc = recv_ping(m, h, p);
		break;
	case FRAME_GOAWAY:
		rc = recv_goaway(m, h, p);
		break;
	default:
		break; /* a repeated BIND, or a type from a newer version */
	}
	return m->err != MUX_ERR_NONE ? -1 : rc;
}

/* Checks a DATA frame as a whole when its first chunk arrives. */
static int data_begin(struct mux *m, const struct frame_hdr *h,
		      struct mux_stream **sp)
{
	struct mux_stream *s;

	m->in_data = 1;
	m->data_skip = 0;
	if (lookup_known(m, h->stream, &s) < 0)
		return -1;
	if (s == NULL) {
		m->data_skip = 1;
	} else if (s->flags & S_FIN_RECV) {
		m->data_skip = 1;
		return stream_abort(m, s, MUX_C_PROTOCOL);
	} else if (h->len > s->recv_credit) {
		m->data_skip = 1;
		return stream_abort(m, s, MUX_C_FLOW_CONTROL);
	} else {
		s->recv_credit -= h->len;
	}
	*sp = m->data_skip ? NULL : s;
	return 0;
}

static int on_data(void *ud, const struct frame_hdr *h, const uint8_t *chunk,
		   size_t n, int last)
{
	struct mux *m = ud;
	struct mux_stream *s = NULL;

	if (!m->bind_recv)
		return fatal(m, MUX_ERR_NO_BIND);
	if (!m->in_data) {
		if (data_begin(m, h, &s) < 0)
			return -1;
	} else if (!m->data_skip) {
		s = stream_find(m, h->stream);
	}
	if (last)
		m->in_data = 0;
	if (s == NULL)
		return 0;
	if (n > 0) {
		s->unconsumed += (uint32_t)n;
		uint32_t code = m->cb.on_data ? m->cb.on_data(m->ud, s->id,
							      s->sud, chunk, n)
					      : MUX_C_NO_ERROR;
		if (m->err != MUX_ERR_NONE)
			return -1;
		if (code != MUX_C_NO_ERROR) {
			m->data_skip = 1;
			return stream_abort(m, s, code);
		}
	}
	if (last && (h->flags & FRAME_FLAG_FIN)) {
		s->flags |= S_FIN_RECV;
		s->flags &= ~(uint32_t)S_WIN_PENDING;
		s->consumed_acc = 0;
		ready_update(m, s);
		if (m->cb.on_fin)
			m->cb.on_fin(m->ud, s->id, s->sud);
		if (s->flags & S_FIN_SENT)
			stream_close(m, s, MUX_C_NO_ERROR, 0);
	}
	return m->err != MUX_ERR_NONE ? -1 : 0;
}

/* ---- public ---------------------------------------------------------- */

struct mux *mux_new(const struct mux_settings *s,
		    const struct mux_callbacks *cb, void *ud)
{
	static const struct frame_callbacks fcb = {
		.on_frame = on_frame,
		.on_data = on_data,
	};
	struct mux *m;

	if (s == NULL || cb == NULL || s->max_frame == 0 ||
	    s->max_frame > FRAME_MAX_PAYLOAD || s->local_window == 0 ||
	    s->local_window > WINDOW_MAX || s->peer_window == 0 ||
	    s->peer_window > WINDOW_MAX)
		return NULL;
	m = calloc(1, sizeof(*m));
	if (m == NULL)
		goto fail;
	m->set = *s;
	m->cb = *cb;
	m->ud = ud;
	m->next_id = s->dialer ? 1 : 2;
	m->ack_pos = SIZE_MAX;
	m->cq_max = CQ_BASE + (size_t)CQ_PER_STREAM * s->local_max_streams;
	m->dec = frame_decoder_new(s->max_frame, &fcb, m);
	if (m->dec == NULL)
		goto fail_m;
	return m;

fail_m:
	free(m);
fail:
	return NULL;
}

void mux_free(struct mux *m)
{
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->tab_size; i++)
		free(m->tab[i]);
	free(m->tab);
	free(m->cq);
	frame_decoder_free(m->dec);
	free(m);
}

int mux_recv(struct mux *m, const uint8_t *in, size_t len)
{
	if (m->err != MUX_ERR_NONE)
		return -1;
	if (frame_decoder_feed(m->dec, in, len) < 0) {
		if (m->err == MUX_ERR_NONE)
			m->err = frame_decoder_error(m->dec) == FRAME_ERR_CALLBACK
					 ? MUX_ERR_NOMEM
					 : MUX_ERR_FRAME;
		return -1;
	}
	return 0;
}

int mux_recv_eof(struct mux *m)
{
	if (m->err != MUX_ERR_NONE)
		return -1;
	if (frame_decoder_finish(m->dec) < 0)
		return fatal(m, MUX_ERR_FRAME);
	return 0;
}

/* Copies whole queued control frames while they fit. */
static size_t send_ctrl(struct mux *m, uint8_t *buf, size_t cap)
{
	size_t used = 0;

	while (m->cq_head < m->cq_len) {
		const uint8_t *f = m->cq + m->cq_head;
		size_t flen = FRAME_HDR_LEN +
			      ((size_t)f[0] << 16 | (size_t)f[1] << 8 | f[2]);
		if (cap - used < flen)
			break;
		memcpy(buf + used, f, flen);
		if (m->ack_pos == m->cq_head)
			m->ack_pos = SIZE_MAX;
		m->cq_head += flen;
		used += flen;
	}
	if (m->cq_head == m->cq_len)
		m->cq_head = m->cq_len = 0;
	return used;
}

/* One DATA frame for s.  Returns bytes written; *stop when out of room. */
static size_t send_data(struct mux *m, struct mux_stream *s, uint8_t *out,
			size_t room, int *stop)
{
	if (room < FRAME_HDR_LEN + 1) {
		*stop = 1;
		return 0;
	}
	size_t max = room - FRAME_HDR_LEN;
	if (max > s->send_credit)
		max = s->send_credit;
	if (max > m->set.max_frame)
		max = m->set.max_frame;

	int eof = 0;
	s->flags = (s->flags | S_IN_READ) & ~(uint32_t)S_RESUMED;
	size_t n = m->cb.read_data ? m->cb.read_data(m->ud, s->id, s->sud,
						     out + FRAME_HDR_LEN, max,
						     &eof)
				   : 0;
	s->flags &= ~(uint32_t)S_IN_READ;
	if (n > max)
		n = max;
	if (n == 0 && !eof) {
		if (!(s->flags & S_RESUMED))
			s->flags |= S_PARKED;
		return 0;
	}
	struct frame_hdr h = {
		.len = (uint32_t)n,
		.type = FRAME_DATA,
		.flags = eof ? FRAME_FLAG_FIN : 0,
		.stream = s->id,
	};
	frame_hdr_encode(&h, out);
	s->send_credit -= (uint32_t)n;
	if (eof)
		s->flags |= S_FIN_SENT;
	return FRAME_HDR_LEN + n;
}

/* Serves s for one turn.  Returns bytes written; *stop when out of room. */
static size_t send_stream_turn(struct mux *m, struct mux_stream *s,
			       uint8_t *out, size_t room, int *stop)
{
	size_t used = 0;

	if (s->flags & S_OPEN_PENDING) {
		int n = frame_encode_open(out, room, s->id, s->service);
		if (n < 0) {
			*stop = 1;
			return 0;
		}
		s->flags &= ~(uint32_t)S_OPEN_PENDING;
		used += (size_t)n;
	}
	if (s->flags & S_WIN_PENDING) {
		int n = frame_encode_window(out + used, room - used, s->id,
					    s->consumed_acc);
		if (n < 0) {
			*stop = 1;
			return used;
		}
		s->recv_credit += s->consumed_acc;
		s->consumed_acc = 0;
		s->flags &= ~(uint32_t)S_WIN_PENDING;
		used += (size_t)n;
	}
	if (!(s->flags & (S_PARKED | S_FIN_SENT)) && s->send_credit > 0)
		used += send_data(m, s, out + used, room - used, stop);
	return used;
}

size_t mux_send(struct mux *m, uint8_t *buf, size_t cap)
{
	size_t used = 0;
	size_t idle = 0;

	if (!m->bind_sent) {
		int n = frame_encode_bind(buf, cap, m->set.bind);
		if (n < 0)
			return 0;
		m->bind_sent = 1;
		used = (size_t)n;
	}
	used += send_ctrl(m, buf + used, cap - used);

	/* idle counts turns in a row that produced nothing and left their
	 * stream on the list; a stream that parks leaves the list, so the
	 * round goes on until every stream still ready has had its turn. */
	while (m->ready_head != NULL && idle <= m->ready_count) {
		struct mux_stream *s = m->ready_head;
		int stop = 0;
		size_t n = send_stream_turn(m, s, buf + used, cap - used,
					    &stop);
		used += n;
		if (stop) {
			ready_update(m, s);
			break;
		}
		if ((s->flags & (S_FIN_SENT | S_FIN_RECV)) ==
		    (S_FIN_SENT | S_FIN_RECV)) {
			stream_close(m, s, MUX_C_NO_ERROR, 0);
			continue;
		}
		/* End of turn: back to the tail if still ready. */
		ready_unlink(m, s);
		ready_update(m, s);
		if (n > 0)
			idle = 0;
		else if (s->flags & S_READY)
			idle++;
	}
	return used;
}

int mux_want_write(const struct mux *m)
{
	return !m->bind_sent || m->cq_head < m->cq_len || m->ready_head != NULL;
}

uint32_t mux_open(struct mux *m, const char *service, void *sud)
{
	uint8_t tmp[FRAME_HDR_LEN + 1 + FRAME_SERVICE_MAX];

	if (m->err != MUX_ERR_NONE || m->goaway_recv || m->next_id == 0 ||
	    m->local_open >= m->set.peer_max_streams ||
	    frame_encode_open(tmp, sizeof(tmp), m->next_id, service) < 0)
		return 0;
	struct mux_stream *s = stream_new(m, m->next_id, 1);
	if (s == NULL)
		return 0;
	s->sud = sud;
	s->flags |= S_OPEN_PENDING;
	strcpy(s->service, service);
	m->local_high = s->id;
	m->next_id = s->id <= 0xffffffffu - 2 ? s->id + 2 : 0;
	ready_update(m, s);
	return s->id;
}

void mux_resume(struct mux *m, uint32_t id)
{
	struct mux_stream *s = stream_find(m, id);
	if (s == NULL)
		return;
	if (s->flags & S_IN_READ)
		s->flags |= S_RESUMED;
	s->flags &= ~(uint32_t)S_PARKED;
	ready_update(m, s);
}

void mux_consumed(struct mux *m, uint32_t id, size_t n)
{
	struct mux_stream *s = stream_find(m, id);
	if (s == NULL || n == 0)
		return;
	if (n > s->unconsumed)
		n = s->unconsumed;
	s->unconsumed -= (uint32_t)n;
	if (s->flags & S_FIN_RECV)
		return;
	s->consumed_acc += (uint32_t)n;
	/* Half a window per WINDOW frame: a peer that used all its credit
	 * gets it back once half the window is consumed, and small reads
	 * do not each cost a frame. */
	uint32_t half = m->set.local_window / 2;
	if (s->consumed_acc >= (half > 0 ? half : 1)) {
		s->flags |= S_WIN_PENDING;
		ready_update(m, s);
	}
}

void mux_reset(struct mux *m, uint32_t id, uint32_t code)
{
	struct mux_stream *s = stream_find(m, id);
	if (s != NULL)
		stream_abort(m, s, code);
}

void mux_close_all(struct mux *m, uint32_t code)
{
	struct mux_stream **tab = m->tab;
	size_t size = m->tab_size;

	/* Detach everything first: on_close may open new streams. */
	m->tab = NULL;
	m->tab_size = 0;
	m->count = 0;
	m->local_open = m->peer_open = 0;
	m->ready_head = m->ready_tail = NULL;
	m->ready_count = 0;
	for (size_t i = 0; i < size; i++) {
		struct mux_stream *s = tab[i];
		if (s == NULL)
			continue;
		uint32_t id = s->id;
		void *sud = s->sud;
		free(s);
		if (m->cb.on_close)
			m->cb.on_close(m->ud, id, sud, code, 0);
	}
	free(tab);
}

void mux_ping(struct mux *m, uint64_t opaque)
{
	uint8_t *p = cq_reserve(m, PING_FRAME_LEN);
	if (p != NULL)
		frame_encode_ping(p, PING_FRAME_LEN, opaque, 0);
}

void mux_goaway(struct mux *m, uint32_t code, const char *text)
{
	char t[GOAWAY_TEXT_MAX + 1] = "";
	if (text != NULL) {
		size_t n = strnlen(text, GOAWAY_TEXT_MAX);
		memcpy(t, text, n);
		t[n] = '\0';
	}
	size_t len = FRAME_HDR_LEN + 8 + strlen(t);
	uint8_t *p = cq_reserve(m, len);
	m->goaway_sent = 1;
	if (p != NULL)
		frame_encode_goaway(p, len, m->peer_high, code, t);
}

void *mux_stream_data(const struct mux *m, uint32_t id)
{
	struct mux_stream *s = stream_find(m, id);
	return s ? s->sud : NULL;
}

size_t mux_stream_count(const struct mux *m)
{
	return m->count;
}

uint64_t mux_streams_total(const struct mux *m)
{
	return m->total;
}

int mux_bound(const struct mux *m)
{
	return m->bind_recv && m->err == MUX_ERR_NONE;
}

enum mux_err mux_error(const struct mux *m)
{
	return m->err;
}

enum frame_err mux_frame_error(const struct mux *m)
{
	return m->err == MUX_ERR_FRAME ? frame_decoder_error(m->dec)
				       : FRAME_ERR_NONE;
}

const char *mux_err_str(enum mux_err err)
{
	switch (err) {
	case MUX_ERR_NONE:
		return "no error";
	case MUX_ERR_FRAME:
		return "peer sent a malformed frame";
	case MUX_ERR_NO_BIND:
		return "peer's first frame was not BIND (transcript binding missing)";
	case MUX_ERR_BIND_MISMATCH:
		return "peer saw different negotiation bytes: possible tampering with the plaintext negotiation";
	case MUX_ERR_BAD_STREAM:
		return "peer named a stream that was never opened, or reused a stream id";
	case MUX_ERR_OVERLOAD:
		return "peer makes us queue too many control frames (is the link being written?)";
	case MUX_ERR_NOMEM:
		return "out of memory in the mux session";
	}
	return "unknown mux error";
}
