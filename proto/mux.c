/*
 * Stream multiplexer session on top of the frame codec.
 *
 * Streams live in an open-addressing hash table keyed by id (linear
 * probing, backward-shift deletion, grown at half load).  Streams with
 * something to send sit on one of two intrusive doubly-linked lists: the
 * new list (streams that woke up from idle, served first, each for at
 * most sparse_quantum DATA bytes) and the ready list that mux_send()
 * serves round-robin, one DATA frame per stream per turn.  Encoded
 * link-level frames (RESET, PING, GOAWAY, LINK_ACK answers) wait in a
 * bounded byte queue that goes out before any stream frame.
 *
 * Link budget: mux_send() counts every byte it produces; LINK_ACK probes
 * (written straight into the output, never queued) carry that count, and
 * their answers say how much of it the peer has processed.  Outstanding
 * probes sit in a fixed ring.
 */
#include "mux.h"

#include "be.h"
#include <stdlib.h>
#include <string.h>

#define WINDOW_MAX 0x7fffffffu
#define GOAWAY_TEXT_MAX 255
#define CQ_BASE (64u * 1024u)
#define CQ_PER_STREAM 16u
#define PING_FRAME_LEN (FRAME_HDR_LEN + 8)
#define LACK_FRAME_LEN (FRAME_HDR_LEN + FRAME_LINK_ACK_LEN)

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
	S_NEW = 1 << 9,          /* on the new list rather than the ready list */
	S_BULK = 1 << 10,        /* used up its quantum in a recent burst */
};
/* Short bursts in a row after which a bulk stream counts as interactive
 * again. */
#define SPARSE_AGAIN 8
#define S_CTL_PENDING (S_OPEN_PENDING | S_WIN_PENDING)

struct mux_stream {
	uint32_t id;
	uint32_t flags;
	void *sud;
	uint32_t send_credit;  /* bytes we may still send */
	uint32_t recv_credit;  /* bytes the peer may still send */
	uint32_t unconsumed;   /* received, not yet passed to mux_consumed */
	uint32_t consumed_acc; /* consumed, not yet granted back */
	uint32_t quantum;      /* DATA bytes left on the new list */
	uint8_t short_bursts;  /* S_BULK: short bursts since the last long */
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
	struct mux_stream *new_head, *new_tail;
	size_t new_count;
	size_t ctl_streams;    /* streams with an OPEN or WINDOW pending */
	uint64_t sparse_served;

	/* queue of encoded control frames: bytes [cq_head, cq_len) */
	uint8_t *cq;
	size_t cq_head, cq_len, cq_alloc, cq_max;
	size_t ack_pos;  /* offset of the pending PING ACK, or SIZE_MAX */
	size_t lack_pos; /* offset of the pending LINK_ACK answer, or SIZE_MAX */

	/* link budget */
	uint32_t budget;       /* 0: no bound */
	uint64_t produced;     /* bytes mux_send() returned, in total */
	uint64_t acked;        /* offset of the newest answered probe */
	uint64_t last_probe;   /* offset of the newest probe sent, 0 = none */
	uint64_t probes[MUX_LINK_PROBES_MAX]; /* outstanding, a ring */
	size_t probe_first, probe_n;

	int bind_sent, bind_recv;
	int goaway_sent, goaway_recv;
	/* A GOAWAY waits until every OPEN queued before it has gone out, so
	 * that it never overtakes them. */
	size_t open_pending;   /* streams whose OPEN is not sent yet */
	int goaway_wait;
	uint32_t goaway_code;
	char goaway_text[GOAWAY_TEXT_MAX + 1];

	/* current incoming DATA frame */
	int in_data;
	int data_skip;
};

static int
is_local_id(const struct mux *m, uint32_t id)
{
	return (id & 1) == (m->set.dialer ? 1u : 0u);
}

static int
id_known(const struct mux *m, uint32_t id)
{
	return is_local_id(m, id) ? id <= m->local_high : id <= m->peer_high;
}

/* ---- hash table ---------------------------------------------------- */

static size_t
slot_in(uint32_t id, size_t size)
{
	return (size_t)(id * 0x9e3779b1u) & (size - 1);
}

static size_t
slot_of(const struct mux *m, uint32_t id)
{
	return slot_in(id, m->tab_size);
}

static struct mux_stream *
stream_find(const struct mux *m, uint32_t id)
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

static void
tab_put(struct mux_stream **tab, size_t size,
	struct mux_stream *s)
{
	size_t i = slot_in(s->id, size);
	while (tab[i] != NULL)
		i = (i + 1) & (size - 1);
	tab[i] = s;
}

static int
tab_insert(struct mux *m, struct mux_stream *s)
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

static void
tab_remove(struct mux *m, struct mux_stream *s)
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

/* Takes s off whichever list holds it. */
static void
ready_unlink(struct mux *m, struct mux_stream *s)
{
	int is_new = (s->flags & S_NEW) != 0;
	struct mux_stream **head = is_new ? &m->new_head : &m->ready_head;
	struct mux_stream **tail = is_new ? &m->new_tail : &m->ready_tail;

	if (!(s->flags & S_READY))
		return;
	if (s->prev)
		s->prev->next = s->next;
	else
		*head = s->next;
	if (s->next)
		s->next->prev = s->prev;
	else
		*tail = s->prev;
	s->prev = s->next = NULL;
	s->flags &= ~(uint32_t)(S_READY | S_NEW);
	if (is_new)
		m->new_count--;
	else
		m->ready_count--;
}

/* Appends s, which is on no list, to the ready list or the new list. */
static void
list_append(struct mux *m, struct mux_stream *s, int is_new)
{
	struct mux_stream **head = is_new ? &m->new_head : &m->ready_head;
	struct mux_stream **tail = is_new ? &m->new_tail : &m->ready_tail;

	s->next = NULL;
	s->prev = *tail;
	if (*tail)
		(*tail)->next = s;
	else
		*head = s;
	*tail = s;
	s->flags |= S_READY | (is_new ? S_NEW : 0);
	if (is_new)
		m->new_count++;
	else
		m->ready_count++;
}

static void
ready_append(struct mux *m, struct mux_stream *s)
{
	list_append(m, s, 0);
}

/* Sets and clears OPEN/WINDOW-pending flags, keeping ctl_streams. */
static void
ctl_flags(struct mux *m, struct mux_stream *s, uint32_t set,
	  uint32_t clear)
{
	int was = (s->flags & S_CTL_PENDING) != 0;
	int was_open = (s->flags & S_OPEN_PENDING) != 0;
	s->flags = (s->flags | set) & ~clear;
	int now = (s->flags & S_CTL_PENDING) != 0;
	int now_open = (s->flags & S_OPEN_PENDING) != 0;
	if (was && !now)
		m->ctl_streams--;
	else if (!was && now)
		m->ctl_streams++;
	if (was_open && !now_open)
		m->open_pending--;
	else if (!was_open && now_open)
		m->open_pending++;
}

static int
stream_wants_send(const struct mux_stream *s)
{
	if (s->flags & (S_OPEN_PENDING | S_WIN_PENDING))
		return 1;
	return !(s->flags & (S_PARKED | S_FIN_SENT)) && s->send_credit > 0;
}

/* Puts s on the ready list (at the tail) or takes it off, as its state
 * says. */
static void
ready_update(struct mux *m, struct mux_stream *s)
{
	int want = stream_wants_send(s);
	if (want && !(s->flags & S_READY))
		ready_append(m, s);
	else if (!want && (s->flags & S_READY))
		ready_unlink(m, s);
}

/* A stream woke up from idle (opened, or resumed by the application):
 * with a sparse quantum it joins the new list instead of the ready list.
 * A stream already on a list stays where it is. */
static void
ready_wake(struct mux *m, struct mux_stream *s)
{
	if ((s->flags & S_READY) || !stream_wants_send(s))
		return;
	if (m->set.sparse_quantum == 0) {
		ready_append(m, s);
		return;
	}
	s->quantum = m->set.sparse_quantum;
	list_append(m, s, 1);
}

/* ---- stream life ----------------------------------------------------- */

static struct mux_stream *
stream_new(struct mux *m, uint32_t id, int local)
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
static void
stream_drop(struct mux *m, struct mux_stream *s)
{
	ready_unlink(m, s);
	ctl_flags(m, s, 0, S_CTL_PENDING);
	tab_remove(m, s);
	if (s->flags & S_LOCAL)
		m->local_open--;
	else
		m->peer_open--;
	free(s);
}

/* Removes s first so that callbacks see a consistent session. */
static void
stream_close(struct mux *m, struct mux_stream *s, uint32_t code,
	     int by_peer)
{
	uint32_t id = s->id;
	void *sud = s->sud;

	stream_drop(m, s);
	if (m->cb.on_close)
		m->cb.on_close(m->ud, id, sud, code, by_peer);
}

/* ---- control queue --------------------------------------------------- */

static uint8_t *
cq_reserve(struct mux *m, size_t n)
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
		if (m->lack_pos != SIZE_MAX)
			m->lack_pos -= m->cq_head;
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

static int
cq_reset(struct mux *m, uint32_t id, uint32_t code)
{
	uint8_t *p = cq_reserve(m, FRAME_HDR_LEN + 4);
	if (p == NULL)
		return -1;
	frame_encode_reset(p, FRAME_HDR_LEN + 4, id, code);
	return 0;
}

/* Stream-level abort started by us: RESET to the peer (if it knows the
 * stream) and on_close(code, by_peer = 0). */
static int
stream_abort(struct mux *m, struct mux_stream *s, uint32_t code)
{
	int rc = 0;
	if (!(s->flags & S_OPEN_PENDING))
		rc = cq_reset(m, s->id, code);
	stream_close(m, s, code, 0);
	return rc;
}

/* ---- receiving ------------------------------------------------------- */

static int
fatal(struct mux *m, enum mux_err err)
{
	if (m->err == MUX_ERR_NONE)
		m->err = err;
	return -1;
}

static int
check_bind(struct mux *m, const struct frame_hdr *h,
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

static int
recv_open(struct mux *m, const struct frame_hdr *h,
	  const uint8_t *p)
{
	uint32_t id = h->stream;
	char name[FRAME_SERVICE_MAX + 1];

	if (is_local_id(m, id) || id <= m->peer_high)
		return fatal(m, MUX_ERR_BAD_STREAM);
	m->peer_high = id;
	if (m->peer_open >= m->set.local_max_streams)
		return cq_reset(m, id, MUX_C_LIMIT);
	/* The peer opens nothing after its own GOAWAY, so an OPEN before it
	 * was sent in good faith, before our GOAWAY reached the peer. */
	if (m->goaway_sent && m->goaway_recv)
		return cq_reset(m, id, MUX_C_REFUSED);
	/* An acceptor opens streams only to a dialler that announced it
	 * takes them (REVERSE); refused as an older dialler would. */
	if (m->set.dialer && !m->set.reverse)
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
	ready_wake(m, s);
	return 0;
}

/* Looks up the stream a RESET, WINDOW or DATA frame names.  Returns -1 for
 * a never-opened id (link-fatal), which includes our own stream whose
 * OPEN has not gone out yet: the peer can only have guessed its id.  *sp
 * is NULL for a stream already gone. */
static int
lookup_known(struct mux *m, uint32_t id, struct mux_stream **sp)
{
	*sp = stream_find(m, id);
	if ((*sp == NULL && !id_known(m, id)) ||
	    (*sp != NULL && ((*sp)->flags & S_OPEN_PENDING)))
		return fatal(m, MUX_ERR_BAD_STREAM);
	return 0;
}

static int
recv_window(struct mux *m, const struct frame_hdr *h,
	    const uint8_t *p)
{
	struct mux_stream *s;
	if (lookup_known(m, h->stream, &s) < 0)
		return -1;
	if (s == NULL)
		return 0;
	uint32_t incr = be32_get(p);
	if (incr > WINDOW_MAX - s->send_credit)
		return stream_abort(m, s, MUX_C_FLOW_CONTROL);
	s->send_credit += incr;
	ready_update(m, s);
	return 0;
}

static int
recv_reset(struct mux *m, const struct frame_hdr *h,
	   const uint8_t *p)
{
	struct mux_stream *s;
	if (lookup_known(m, h->stream, &s) < 0)
		return -1;
	if (s != NULL)
		stream_close(m, s, be32_get(p), 1);
	return 0;
}

static int
recv_ping(struct mux *m, const struct frame_hdr *h,
	  const uint8_t *p)
{
	if (h->flags & FRAME_FLAG_ACK) {
		if (m->cb.on_pong)
			m->cb.on_pong(m->ud, be64_get(p));
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

/* A probe gets one queued answer, which later probes overwrite until it
 * is sent.  An answer must name an outstanding probe; it settles that
 * probe and every older one. */
static int
recv_link_ack(struct mux *m, const struct frame_hdr *h,
	      const uint8_t *p)
{
	uint64_t off = be64_get(p);
	size_t i;

	if (!m->set.link_ack)
		return 0; /* not negotiated: skipped like an unknown type */
	if (!(h->flags & FRAME_FLAG_ACK)) {
		if (m->lack_pos != SIZE_MAX) {
			memcpy(m->cq + m->lack_pos + FRAME_HDR_LEN, p,
			       FRAME_LINK_ACK_LEN);
			return 0;
		}
		uint8_t *q = cq_reserve(m, LACK_FRAME_LEN);
		if (q == NULL)
			return -1;
		m->lack_pos = (size_t)(q - m->cq);
		frame_encode_link_ack(q, LACK_FRAME_LEN, off, 1);
		return 0;
	}
	for (i = 0; i < m->probe_n; i++)
		if (m->probes[(m->probe_first + i) % MUX_LINK_PROBES_MAX] == off)
			break;
	if (i == m->probe_n)
		return fatal(m, MUX_ERR_FLOW);
	m->probe_first = (m->probe_first + i + 1) % MUX_LINK_PROBES_MAX;
	m->probe_n -= i + 1;
	m->acked = off;
	if (m->cb.on_link_ack)
		m->cb.on_link_ack(m->ud, off, m->produced - off);
	return 0;
}

static int
recv_goaway(struct mux *m, const struct frame_hdr *h,
	    const uint8_t *p)
{
	char text[GOAWAY_TEXT_MAX + 1];
	size_t n = h->len - 8;

	memcpy(text, p + 8, n);
	text[n] = '\0';
	m->goaway_recv = 1;
	if (m->cb.on_goaway)
		m->cb.on_goaway(m->ud, be32_get(p), be32_get(p + 4), text);
	return 0;
}

static int
on_frame(void *ud, const struct frame_hdr *h, const uint8_t *p)
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
	case FRAME_LINK_ACK:
		rc = recv_link_ack(m, h, p);
		break;
	default:
		break; /* a repeated BIND, or a type from a newer version */
	}
	return m->err != MUX_ERR_NONE ? -1 : rc;
}

/* Checks a DATA frame as a whole when its first chunk arrives. */
static int
data_begin(struct mux *m, const struct frame_hdr *h,
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

static int
on_data(void *ud, const struct frame_hdr *h, const uint8_t *chunk,
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
		ctl_flags(m, s, 0, S_WIN_PENDING);
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

struct mux *
mux_new(const struct mux_settings *s,
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
	m->lack_pos = SIZE_MAX;
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

void
mux_free(struct mux *m)
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

int
mux_recv(struct mux *m, const uint8_t *in, size_t len)
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

int
mux_recv_eof(struct mux *m)
{
	if (m->err != MUX_ERR_NONE)
		return -1;
	if (frame_decoder_finish(m->dec) < 0)
		return fatal(m, MUX_ERR_FRAME);
	return 0;
}

/* ---- sending ---------------------------------------------------------- */

/* The output of one mux_send() call.  reserve bytes stay free for a
 * LINK_ACK probe whenever probes may be sent, so one always fits. */
struct out {
	uint8_t *buf;
	size_t cap, used, reserve;
	int blocked; /* DATA was held back by the link budget */
};

static size_t
out_room(const struct out *o)
{
	size_t left = o->cap - o->used;
	return left > o->reserve ? left - o->reserve : 0;
}

static int
flow_active(const struct mux *m)
{
	return m->set.link_ack && m->budget > 0;
}

/* DATA may not go out when `at` bytes have been produced.  A freshly
 * woken stream's quantum may go half a budget beyond: an interactive
 * frame does not wait for the bulk ahead of it to be acknowledged, and
 * what such frames can add in flight stays bounded. */
static int
flow_blocked(const struct mux *m, uint64_t at, int sparse)
{
	uint64_t limit = (uint64_t)m->budget + (sparse ? m->budget / 2 : 0);

	return flow_active(m) && at - m->acked >= limit;
}

/* A probe is due at `at` produced bytes: a ring slot is free, bytes were
 * produced since the last probe, and either DATA is held back or a
 * quarter of the budget went out since the last probe. */
static int
probe_due(const struct mux *m, uint64_t at, int held)
{
	return flow_active(m) && m->probe_n < MUX_LINK_PROBES_MAX &&
	       at > m->last_probe &&
	       (held || at - m->last_probe >= m->budget / 4);
}

/* Writes a probe into the reserved room when one is due. */
static void
probe_maybe(struct mux *m, struct out *o, int held)
{
	uint64_t off = m->produced + o->used + LACK_FRAME_LEN;

	if (!probe_due(m, m->produced + o->used, held) ||
	    o->cap - o->used < LACK_FRAME_LEN)
		return;
	frame_encode_link_ack(o->buf + o->used, LACK_FRAME_LEN, off, 0);
	o->used += LACK_FRAME_LEN;
	m->probes[(m->probe_first + m->probe_n) % MUX_LINK_PROBES_MAX] = off;
	m->probe_n++;
	m->last_probe = off;
	if (m->cb.on_link_probe)
		m->cb.on_link_probe(m->ud, off);
}

/* Copies whole queued control frames while they fit. */
static size_t
send_ctrl(struct mux *m, uint8_t *buf, size_t cap)
{
	size_t used = 0;

	while (m->cq_head < m->cq_len) {
		const uint8_t *f = m->cq + m->cq_head;
		size_t flen = FRAME_HDR_LEN +
			      be24_get(f);
		if (cap - used < flen)
			break;
		memcpy(buf + used, f, flen);
		if (m->ack_pos == m->cq_head)
			m->ack_pos = SIZE_MAX;
		if (m->lack_pos == m->cq_head)
			m->lack_pos = SIZE_MAX;
		m->cq_head += flen;
		used += flen;
	}
	if (m->cq_head == m->cq_len)
		m->cq_head = m->cq_len = 0;
	return used;
}

/* One DATA frame for s, of at most quota payload bytes.  Returns bytes
 * written; *stop when out of room. */
static size_t
send_data(struct mux *m, struct mux_stream *s, uint8_t *out,
	  size_t room, size_t quota, int *stop)
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
	if (max > quota)
		max = quota;

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

/* The pending OPEN, then the pending WINDOW, of s: frames the budget
 * never holds back.  Returns 0, or -1 when out of room. */
static int
send_stream_ctl(struct mux *m, struct mux_stream *s,
		struct out *o)
{
	if (s->flags & S_OPEN_PENDING) {
		int n = frame_encode_open(o->buf + o->used, out_room(o), s->id,
					  s->service);
		if (n < 0)
			return -1;
		ctl_flags(m, s, 0, S_OPEN_PENDING);
		o->used += (size_t)n;
	}
	if (s->flags & S_WIN_PENDING) {
		int n = frame_encode_window(o->buf + o->used, out_room(o),
					    s->id, s->consumed_acc);
		if (n < 0)
			return -1;
		s->recv_credit += s->consumed_acc;
		s->consumed_acc = 0;
		ctl_flags(m, s, 0, S_WIN_PENDING);
		o->used += (size_t)n;
	}
	return 0;
}

/* Serves s for one turn: OPEN, WINDOW, then one DATA frame of at most
 * quota bytes unless the budget holds DATA back (o->blocked).  Returns
 * bytes written; *data is the DATA frame's size (0: none); *stop when
 * out of room. */
static size_t
send_stream_turn(struct mux *m, struct mux_stream *s,
		 struct out *o, size_t quota, size_t *data,
		 int *stop)
{
	size_t start = o->used;

	*data = 0;
	if (send_stream_ctl(m, s, o) < 0) {
		*stop = 1;
		return o->used - start;
	}
	if (!(s->flags & (S_PARKED | S_FIN_SENT)) && s->send_credit > 0) {
		if (flow_blocked(m, m->produced + o->used, quota != SIZE_MAX)) {
			o->blocked = 1;
		} else {
			*data = send_data(m, s, o->buf + o->used, out_room(o),
					  quota, stop);
			o->used += *data;
		}
	}
	return o->used - start;
}

static int
stream_finished(const struct mux_stream *s)
{
	return (s->flags & (S_FIN_SENT | S_FIN_RECV)) ==
	       (S_FIN_SENT | S_FIN_RECV);
}

/* Both directions finished: the stream is done. */
static int
stream_done(struct mux *m, struct mux_stream *s)
{
	if (!stream_finished(s))
		return 0;
	stream_close(m, s, MUX_C_NO_ERROR, 0);
	return 1;
}

/* A new-list burst of s ended within its quantum.  It counts as
 * interactive unless s used up its quantum recently: a bulk stream
 * whose source ran dry for a moment is still bulk, until SPARSE_AGAIN
 * short bursts in a row. */
static void
count_sparse(struct mux *m, struct mux_stream *s)
{
	if (s->quantum == m->set.sparse_quantum)
		return; /* sent no DATA */
	if (s->flags & S_BULK) {
		if (++s->short_bursts < SPARSE_AGAIN)
			return;
		s->flags &= ~(uint32_t)S_BULK;
	}
	m->sparse_served++;
}

/* Serves the new list: each stream sends until it parks, runs out of
 * quantum (it then joins the ready list's tail: it is bulk) or of room.
 * Returns nonzero when any frame went out. */
static int
send_new(struct mux *m, struct out *o)
{
	int served = 0;

	while (m->new_head != NULL) {
		struct mux_stream *s = m->new_head;
		int stop = 0;
		size_t data;
		size_t n = send_stream_turn(m, s, o, s->quantum, &data, &stop);

		if (n > 0)
			served = 1;
		if (stop || o->blocked) {
			ready_update(m, s);
			break;
		}
		if (data > FRAME_HDR_LEN)
			s->quantum -= (uint32_t)(data - FRAME_HDR_LEN);
		if (stream_finished(s)) {
			count_sparse(m, s); /* before s is freed */
			stream_done(m, s);
			continue;
		}
		if (stream_wants_send(s) && (s->quantum == 0 || n == 0)) {
			/* Quantum used up, or woken without anything to
			 * send: round-robin from now on. */
			if (s->quantum == 0) {
				s->flags |= S_BULK;
				s->short_bursts = 0;
			}
			ready_unlink(m, s);
			ready_append(m, s);
		} else {
			ready_update(m, s);
			if (!(s->flags & S_READY))
				count_sparse(m, s);
		}
		probe_maybe(m, o, 0);
	}
	return served;
}

/* One round over the ready list, as long as there is room. */
static void
send_round(struct mux *m, struct out *o)
{
	size_t idle = 0;

	/* idle counts turns in a row that produced nothing and left their
	 * stream on the list; a stream that parks leaves the list, so the
	 * round goes on until every stream still ready has had its turn. */
	while (m->ready_head != NULL && idle <= m->ready_count) {
		struct mux_stream *s = m->ready_head;
		int stop = 0;
		size_t data;
		size_t n = send_stream_turn(m, s, o, SIZE_MAX, &data, &stop);

		if (stop || o->blocked) {
			/* Out of room, or DATA held back: s keeps its place. */
			ready_update(m, s);
			break;
		}
		if (stream_done(m, s))
			continue;
		/* End of turn: back to the tail if still ready. */
		ready_unlink(m, s);
		ready_update(m, s);
		if (n > 0)
			idle = 0;
		else if (s->flags & S_READY)
			idle++;
		probe_maybe(m, o, 0);
	}
}

/* While DATA is held back, OPEN and WINDOW frames still go out, from
 * every stream that has one, without changing any stream's place. */
static void
send_held_ctl(struct mux *m, struct out *o)
{
	for (int list = 0; list < 2; list++) {
		struct mux_stream *s = list == 0 ? m->new_head : m->ready_head;

		while (s != NULL && m->ctl_streams > 0) {
			struct mux_stream *next = s->next;
			if ((s->flags & S_CTL_PENDING) &&
			    send_stream_ctl(m, s, o) < 0)
				return;
			ready_update(m, s);
			s = next;
		}
	}
}

size_t
mux_send(struct mux *m, uint8_t *buf, size_t cap)
{
	struct out o = {
		.buf = buf,
		.cap = cap,
		.reserve = flow_active(m) ? LACK_FRAME_LEN : 0,
	};

	if (!m->bind_sent) {
		int n = frame_encode_bind(buf, out_room(&o), m->set.bind);
		if (n < 0)
			return 0;
		m->bind_sent = 1;
		o.used = (size_t)n;
	}
	o.used += send_ctrl(m, buf + o.used, out_room(&o));
	probe_maybe(m, &o, 0);
	/* Frames of freshly woken streams end the call: the caller seals
	 * them into a record of their own. */
	if (!send_new(m, &o) && !o.blocked)
		send_round(m, &o);
	if (o.blocked && m->ctl_streams > 0)
		send_held_ctl(m, &o);
	if (m->goaway_wait && m->open_pending == 0) {
		int n = frame_encode_goaway(o.buf + o.used, out_room(&o),
					    m->peer_high, m->goaway_code,
					    m->goaway_text);
		if (n > 0) {
			o.used += (size_t)n;
			m->goaway_wait = 0;
		}
	}
	/* Whenever DATA is held back, a probe covers every byte sent. */
	probe_maybe(m, &o, o.blocked);
	m->produced += o.used;
	return o.used;
}

int
mux_want_write(const struct mux *m)
{
	if (!m->bind_sent || m->cq_head < m->cq_len || m->ctl_streams > 0 ||
	    m->goaway_wait)
		return 1;
	if (m->ready_head == NULL && m->new_head == NULL)
		return probe_due(m, m->produced, 0);
	if (!flow_blocked(m, m->produced, 0) ||
	    (m->new_head != NULL && !flow_blocked(m, m->produced, 1)))
		return 1;
	return probe_due(m, m->produced, 1);
}

void
mux_set_link_budget(struct mux *m, uint32_t bytes)
{
	m->budget = bytes > 0 && bytes < MUX_LINK_BUDGET_MIN
			    ? MUX_LINK_BUDGET_MIN
			    : bytes;
}

uint64_t
mux_link_inflight(const struct mux *m)
{
	return m->produced - m->acked;
}

uint64_t
mux_sparse_served(const struct mux *m)
{
	return m->sparse_served;
}

uint32_t
mux_open(struct mux *m, const char *service, void *sud)
{
	uint8_t tmp[FRAME_HDR_LEN + 1 + FRAME_SERVICE_MAX];

	if (m->err != MUX_ERR_NONE || m->goaway_recv || m->next_id == 0 ||
	    (!m->set.dialer && !m->set.reverse) ||
	    m->local_open >= m->set.peer_max_streams ||
	    frame_encode_open(tmp, sizeof(tmp), m->next_id, service) < 0)
		return 0;
	struct mux_stream *s = stream_new(m, m->next_id, 1);
	if (s == NULL)
		return 0;
	s->sud = sud;
	ctl_flags(m, s, S_OPEN_PENDING, 0);
	strcpy(s->service, service);
	m->local_high = s->id;
	m->next_id = s->id <= 0xffffffffu - 2 ? s->id + 2 : 0;
	ready_wake(m, s);
	return s->id;
}

void
mux_resume(struct mux *m, uint32_t id)
{
	struct mux_stream *s = stream_find(m, id);
	if (s == NULL)
		return;
	if (s->flags & S_IN_READ)
		s->flags |= S_RESUMED;
	s->flags &= ~(uint32_t)S_PARKED;
	ready_wake(m, s);
}

void
mux_consumed(struct mux *m, uint32_t id, size_t n)
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
		ctl_flags(m, s, S_WIN_PENDING, 0);
		ready_update(m, s);
	}
}

void
mux_reset(struct mux *m, uint32_t id, uint32_t code)
{
	struct mux_stream *s = stream_find(m, id);
	if (s != NULL)
		stream_abort(m, s, code);
}

void
mux_close_all(struct mux *m, uint32_t code)
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
	m->new_head = m->new_tail = NULL;
	m->new_count = 0;
	m->ctl_streams = 0;
	m->open_pending = 0;
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

void
mux_ping(struct mux *m, uint64_t opaque)
{
	uint8_t *p = cq_reserve(m, PING_FRAME_LEN);
	if (p != NULL)
		frame_encode_ping(p, PING_FRAME_LEN, opaque, 0);
}

void
mux_goaway(struct mux *m, uint32_t code, const char *text)
{
	char t[GOAWAY_TEXT_MAX + 1] = "";
	if (text != NULL) {
		size_t n = strnlen(text, GOAWAY_TEXT_MAX);
		memcpy(t, text, n);
		t[n] = '\0';
	}
	size_t len = FRAME_HDR_LEN + 8 + strlen(t);
	m->goaway_sent = 1;
	if (m->open_pending > 0) {
		m->goaway_wait = 1;
		m->goaway_code = code;
		memcpy(m->goaway_text, t, sizeof(t));
		return;
	}
	uint8_t *p = cq_reserve(m, len);
	if (p != NULL)
		frame_encode_goaway(p, len, m->peer_high, code, t);
}

int
mux_goaway_received(const struct mux *m)
{
	return m->goaway_recv;
}

void *
mux_stream_data(const struct mux *m, uint32_t id)
{
	struct mux_stream *s = stream_find(m, id);
	return s ? s->sud : NULL;
}

size_t
mux_stream_count(const struct mux *m)
{
	return m->count;
}

uint64_t
mux_streams_total(const struct mux *m)
{
	return m->total;
}

int
mux_bound(const struct mux *m)
{
	return m->bind_recv && m->err == MUX_ERR_NONE;
}

enum mux_err
mux_error(const struct mux *m)
{
	return m->err;
}

enum frame_err
mux_frame_error(const struct mux *m)
{
	return m->err == MUX_ERR_FRAME ? frame_decoder_error(m->dec)
				       : FRAME_ERR_NONE;
}

const char *
mux_err_str(enum mux_err err)
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
	case MUX_ERR_FLOW:
		return "peer acknowledged link bytes that were never sent";
	}
	return "unknown mux error";
}
