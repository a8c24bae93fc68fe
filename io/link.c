#include "link.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "hook.h"
#include "iobuf.h"
#include "log.h"
#include "mux.h"
#include "net.h"
#include "policy.h"
#include "tlsio.h"

/* Link output above this stops the mux from producing; writing resumes
 * when the socket has drained it below LINK_OUT_LOW.  Kept small so that
 * a frame of an interactive stream waits behind little bulk data: the
 * order of frames is decided by the mux scheduler, not by a queue. */
#define LINK_OUT_HIGH (64 * 1024)
#define LINK_OUT_LOW (16 * 1024)
/* Unsent bytes the kernel may hold before the link socket stops being
 * writable (TCP_NOTSENT_LOWAT): what the socket did not take waits in
 * the bufferevent, where the mux's order still applies. */
#define LINK_NOTSENT_LOWAT (16 * 1024)
/* Largest single write of a stream's bufferevent. */
#define SOCKET_IO_MAX (256 * 1024)
/* Bytes of link input processed per turn before other events run, and
 * the most read ahead of processing. */
#define LINK_READ_CHUNK (64 * 1024)
#define LINK_IN_HIGH (128 * 1024)
/* Sealed records gathered by one link_flush() before they are written
 * with one system call. */
#define LINK_STAGE_CAP (64 * 1024)
#define LINK_CLOSE_LINGER_MS 2000
/* Largest TLS record payload: the unit the mux fills per write. */
#define LINK_SEND_CHUNK 16384

/*
 * The link budget (LINK_ACK, when both sides announce it): the bytes that
 * may be in flight, sent and not yet processed by the peer.  It is sized
 * from the peak delivery rate and the smallest round trip, the
 * bandwidth-delay product (BDP): while an interactive stream was served
 * in the last FLOW_SPARSE_US, one BDP within [FLOW_LAT_MIN, FLOW_LAT_MAX],
 * so that no more than the path holds waits ahead of an interactive
 * frame; otherwise four times the BDP within [FLOW_BULK_MIN,
 * FLOW_BULK_MAX], so that bulk is bound by the path, not by the budget.
 * The peak rate (largest FLOW_SAMPLE_US sample of the last second) reads
 * above the mean, so one BDP of it keeps bulk moving; measurements in
 * bench/RESULTS.md.
 */
#define FLOW_LAT_MIN (32 * 1024)
#define FLOW_LAT_MAX (256 * 1024)
#define FLOW_BULK_MIN (1024 * 1024)
#define FLOW_BULK_MAX (16 * 1024 * 1024)
#define FLOW_SPARSE_US 100000
#define FLOW_RTT_WINDOW_US 10000000 /* a minimum round trip is kept 10 s */
#define FLOW_RATE_WINDOW_US 1000000 /* a maximum rate is kept 1 s */
#define FLOW_SAMPLE_US 1000 /* a rate sample spans at least this */

struct link_flow {
	uint64_t probe_off[MUX_LINK_PROBES_MAX];
	uint64_t probe_us[MUX_LINK_PROBES_MAX];
	unsigned first, n;          /* ring of probes not yet answered */
	uint64_t min_rtt_us, min_rtt_at;
	uint64_t rate, rate_at;     /* bytes per second, windowed maximum */
	uint64_t span_off, span_us; /* start of the current rate sample */
	uint64_t sparse_seen, sparse_at;
	uint32_t budget;
};

/*
 * The states of a link and the changes between them; docs/PROTOCOL.md
 * ("Link states") has the same table, and test_link checks that they
 * agree.
 *
 *   CONNECTING  --connected, offer sent-->      NEGOTIATING
 *   NEGOTIATING --TLS agreed-->                 HANDSHAKE
 *   NEGOTIATING --plaintext agreed-->           BINDING
 *   HANDSHAKE   --handshake done-->             BINDING
 *   BINDING     --the peer's BIND matched-->    UP
 *   UP          --GOAWAY sent or received-->    DRAINING
 *   NEGOTIATING, HANDSHAKE, BINDING, UP, DRAINING
 *               --a last message to flush-->    CLOSING
 *   any state but DEAD --failure, or closed-->  DEAD
 *   CLOSING     --flushed, or linger over-->    DEAD
 *
 * The mux runs in BINDING, UP and DRAINING; streams are opened only in
 * UP.  A peer's GOAWAY in the record that carried its BIND takes BINDING
 * to UP first.
 */


struct stream {
	TAILQ_ENTRY(stream) entry;
	struct link *link;      /* NULL once the mux forgot the stream */
	uint32_t id;
	struct bufferevent *bev;
	char service[FRAME_SERVICE_MAX + 1];
	unsigned connecting : 1; /* local connect in progress */
	unsigned rd_eof : 1;     /* local side sent its last byte */
	unsigned peer_fin : 1;   /* peer sent FIN: shut our write side */
	unsigned wr_shut : 1;
	unsigned freeing : 1;
	unsigned orphan : 1;     /* on stream_orphans: the mux is done, the
				    socket is still being written */
	struct event *rd_ev;     /* readiness only; see link_cb_read_data() */
	unsigned rd_on : 1;      /* rd_ev is added */
	unsigned readable : 1;   /* the socket has bytes the mux has not taken */
	int rd_err;              /* errno of a failed read, reported by rd_ev */
	unsigned *count;         /* the opener's count of live connections */
};
TAILQ_HEAD(stream_list, stream);

/* Streams whose link forgot them while their last bytes drain. */
static struct stream_list stream_orphans = TAILQ_HEAD_INITIALIZER(stream_orphans);

struct link {
	TAILQ_ENTRY(link) entry;
	uint64_t id;
	struct event_base *base;
	struct bufferevent *bev;
	struct link_config cfg;
	struct event *rd_ev;       /* our own reads: link_sock_read_cb() */
	struct iobuf in;           /* bytes read from the socket */
	struct iobuf stage;        /* sealed records of one link_flush() */
	int corked;                /* inside link_flush(): records go to stage */
	int rd_on;
	char server_name[256];     /* cfg.server_name points here */
	const struct link_ops *ops;
	void *ud;
	enum link_state state;
	char reason[512];
	struct event *deadline_ev;
	struct event *kick_ev;
	struct event *free_ev;
	struct event *ka_ev;
	struct neg_decoder *dec;
	uint8_t tx_neg[NEG_MAX_LEN];
	size_t tx_neg_len;
	uint8_t rx_neg[NEG_MAX_LEN];
	size_t rx_neg_len;
	struct neg_params mine;
	struct neg_msg peer;
	struct neg_outcome outcome;
	struct tls_conn *tls;
	struct mux *mux;
	uint8_t *sendbuf;          /* LINK_SEND_CHUNK bytes, once the mux runs */
	uint32_t keepalive_ms;
	char local[NET_ADDRSTR_MAX];
	char peer_addr[NET_ADDRSTR_MAX];
	uint64_t bytes_in, bytes_out;
	uint64_t t_start_us, t_hs_us, last_rx_us, last_ping_us;
	void *data;            /* the daemon's, see link_set_data() */
	struct tls_info tls_info;
	struct stream_list streams;
	struct link_flow flow;
};
TAILQ_HEAD(link_list, link);

static struct link_list link_all = TAILQ_HEAD_INITIALIZER(link_all);
static size_t link_n;
static int link_stopping; /* link_close_all() runs: free at once */
static uint64_t link_next_id = 1;

static void link_destroy(struct link *l);
static void link_read_enable(struct link *l, int on);
static int link_read_start(struct link *l);
static void link_flush(struct link *l);
static void link_kick(struct link *l);
static void stream_release(struct stream *s, int reset);
static void link_on_bound(struct link *l);

static uint64_t
now_us(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
}

static void
ms_to_tv(uint32_t ms, struct timeval *tv)
{
	tv->tv_sec = ms / 1000;
	tv->tv_usec = (suseconds_t)(ms % 1000) * 1000;
}

static const char *
link_who(const struct link *l)
{
	static char who[NET_ADDRSTR_MAX + NEG_NODE_MAX + 32];

	if (l->peer.params.node[0] != '\0')
		snprintf(who, sizeof(who), "link %llu with %s (node %s)",
			 (unsigned long long)l->id, l->peer_addr,
			 l->peer.params.node);
	else
		snprintf(who, sizeof(who), "link %llu with %s",
			 (unsigned long long)l->id, l->peer_addr);
	return who;
}

static void
link_event_init(struct link *l, struct hook_event *ev, int type)
{
	memset(ev, 0, sizeof(*ev));
	ev->type = type;
	ev->link_id = l->id;
	ev->role = l->cfg.role;
	ev->local = l->local;
	ev->peer = l->peer_addr;
	ev->peer_node = l->peer.params.node[0] ? l->peer.params.node : NULL;
}

/* ---- states ---------------------------------------------------------- */

#define LS_BIT(s) (1u << (s))

static const unsigned link_next[LINK_STATES] = {
	[LS_CONNECTING] = LS_BIT(LS_NEGOTIATING) | LS_BIT(LS_DEAD),
	[LS_NEGOTIATING] = LS_BIT(LS_HANDSHAKE) | LS_BIT(LS_BINDING) |
			   LS_BIT(LS_CLOSING) | LS_BIT(LS_DEAD),
	[LS_HANDSHAKE] = LS_BIT(LS_BINDING) | LS_BIT(LS_CLOSING) |
			 LS_BIT(LS_DEAD),
	[LS_BINDING] = LS_BIT(LS_UP) | LS_BIT(LS_CLOSING) | LS_BIT(LS_DEAD),
	[LS_UP] = LS_BIT(LS_DRAINING) | LS_BIT(LS_DEAD),
	[LS_DRAINING] = LS_BIT(LS_CLOSING) | LS_BIT(LS_DEAD),
	[LS_CLOSING] = LS_BIT(LS_DEAD),
	[LS_DEAD] = 0,
};

static const char *const link_state_names[LINK_STATES] = {
	[LS_CONNECTING] = "CONNECTING",
	[LS_NEGOTIATING] = "NEGOTIATING",
	[LS_HANDSHAKE] = "HANDSHAKE",
	[LS_BINDING] = "BINDING",
	[LS_UP] = "UP",
	[LS_DRAINING] = "DRAINING",
	[LS_CLOSING] = "CLOSING",
	[LS_DEAD] = "DEAD",
};

const char *
link_state_name(enum link_state st)
{
	return (unsigned)st < LINK_STATES ? link_state_names[st] : "?";
}

int
link_state_allowed(enum link_state from, enum link_state to)
{
	return (unsigned)from < LINK_STATES && (unsigned)to < LINK_STATES &&
	       (link_next[from] & LS_BIT(to)) != 0;
}

/* The one place a link changes state: checked against the table and
 * logged at debug level. */
static void
link_set_state(struct link *l, enum link_state to)
{
	if (!link_state_allowed(l->state, to))
		log_err("%s: internal error: link state %s -> %s is not in "
			"the table", link_who(l), link_state_name(l->state),
			link_state_name(to));
	else
		log_debug("%s: %s -> %s", link_who(l),
			  link_state_name(l->state), link_state_name(to));
	l->state = to;
}

/* The mux runs: frames flow both ways. */
static int
link_mux_on(const struct link *l)
{
	return l->state == LS_BINDING || l->state == LS_UP ||
	       l->state == LS_DRAINING;
}

/* ---- closing --------------------------------------------------------- */

static void
link_fail(struct link *l, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Records why the link ends (for link_closed) and logs it once. */
static void
link_set_reason(struct link *l, int level, const char *fmt, va_list ap)
{
	vsnprintf(l->reason, sizeof(l->reason), fmt, ap);
	log_msg(level, "%s: %s", link_who(l), l->reason);
}

/* Logs the reason once and schedules the link's destruction. */
static void
link_fail(struct link *l, int level, const char *fmt, ...)
{
	va_list ap;

	if (l->state == LS_DEAD)
		return;
	va_start(ap, fmt);
	link_set_reason(l, level, fmt, ap);
	va_end(ap);
	link_set_state(l, LS_DEAD);
	bufferevent_disable(l->bev, EV_READ | EV_WRITE);
	link_read_enable(l, 0);
	event_active(l->free_ev, 0, 0);
}

static void
link_free_cb(evutil_socket_t fd, short what, void *arg)
{
	link_destroy(arg);
}

static void
link_linger_done(struct link *l)
{
	if (l->state != LS_CLOSING)
		return;
	link_set_state(l, LS_DEAD);
	event_active(l->free_ev, 0, 0);
}

/* Sends what is queued, then closes: used after a refusal or a failed
 * handshake so the peer reads the reason or the alert. */
static void
link_close_after_flush(struct link *l, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
link_close_after_flush(struct link *l, int level, const char *fmt, ...)
{
	struct timeval tv;
	va_list ap;

	if (l->state == LS_DEAD || l->state == LS_CLOSING)
		return;
	va_start(ap, fmt);
	link_set_reason(l, level, fmt, ap);
	va_end(ap);
	link_set_state(l, LS_CLOSING);
	link_read_enable(l, 0);
	if (evbuffer_get_length(bufferevent_get_output(l->bev)) == 0) {
		link_linger_done(l);
		return;
	}
	bufferevent_setwatermark(l->bev, EV_WRITE, 0, 0);
	ms_to_tv(LINK_CLOSE_LINGER_MS, &tv);
	evtimer_add(l->deadline_ev, &tv);
}

void
link_close(struct link *l, const char *reason)
{
	link_fail(l, LOG_INFO, "%s", reason);
}

/* Writes what is queued straight to the socket, once, without waiting:
 * the loop is not running any more when the daemon stops. */
static void
link_write_now(struct link *l)
{
	struct evbuffer *out = bufferevent_get_output(l->bev);
	size_t len = evbuffer_get_length(out);
	unsigned char *p = evbuffer_pullup(out, -1);

	if (p != NULL && len > 0 &&
	    write(bufferevent_getfd(l->bev), p, len) < 0)
		log_debug("%s: final write failed: %s", link_who(l),
			  strerror(errno));
}

void
link_close_all(const char *reason)
{
	struct link *l;

	struct stream *s;

	link_stopping = 1;
	while ((l = TAILQ_FIRST(&link_all)) != NULL) {
		if (link_mux_on(l)) {
			/* Best effort: tell the peer why before the socket goes. */
			mux_goaway(l->mux, MUX_C_SHUTDOWN, reason);
			link_flush(l);
			if (l->tls != NULL)
				tls_conn_close_notify(l->tls);
			link_write_now(l);
		}
		if (l->state != LS_DEAD) {
			snprintf(l->reason, sizeof(l->reason), "%s", reason);
			link_set_state(l, LS_DEAD);
		}
		link_destroy(l);
	}
	while ((s = TAILQ_FIRST(&stream_orphans)) != NULL)
		stream_release(s, 0);
}

static void
link_destroy(struct link *l)
{
	struct hook_event ev;

	link_event_init(l, &ev, HOOK_LINK_CLOSED);
	ev.reason = l->reason[0] ? l->reason : "closed";
	ev.bytes_in = l->bytes_in;
	ev.bytes_out = l->bytes_out;
	ev.streams = l->mux ? mux_streams_total(l->mux) : 0;
	ev.duration_ms = (now_us() - l->t_start_us) / 1000;
	hook_emit(&ev);
	if (l->ops->on_down != NULL)
		l->ops->on_down(l->ud, l);
	if (l->mux != NULL)
		mux_close_all(l->mux, MUX_C_CONN_RESET);
	/* Streams the mux never knew (none today) or already forgot. */
	while (!TAILQ_EMPTY(&l->streams))
		stream_release(TAILQ_FIRST(&l->streams), 1);
	TAILQ_REMOVE(&link_all, l, entry);
	link_n--;
	mux_free(l->mux);
	tls_conn_free(l->tls);
	tls_ctx_free(l->cfg.tls);
	neg_decoder_free(l->dec);
	bufferevent_free(l->bev);
	event_free(l->deadline_ev);
	event_free(l->kick_ev);
	event_free(l->free_ev);
	if (l->ka_ev != NULL)
		event_free(l->ka_ev);
	if (l->rd_ev != NULL)
		event_free(l->rd_ev);
	iobuf_free(&l->in);
	iobuf_free(&l->stage);
	free(l->sendbuf);
	free(l);
}

/* ---- streams --------------------------------------------------------- */

/* The one place a stream's memory goes: its read event, its socket
 * (closed with the bufferevent) and itself. */
static void
stream_free(struct stream *s)
{
	if (s->rd_ev != NULL)
		event_free(s->rd_ev);
	bufferevent_free(s->bev);
	free(s);
}

static void
stream_free_deferred(evutil_socket_t fd, short what, void *arg)
{
	stream_free(arg);
}

/* Frees a stream the mux never took (its open failed): it leaves its
 * link's list at once. */
static void
stream_discard(struct stream *s)
{
	TAILQ_REMOVE(&s->link->streams, s, entry);
	bufferevent_setcb(s->bev, NULL, NULL, NULL, NULL);
	stream_free(s);
}

/* Detaches s from its link and frees it.  reset closes the local socket
 * with a TCP reset, so the client or backend learns the stream failed. */
static void
stream_release(struct stream *s, int reset)
{
	struct timeval zero = { 0, 0 };

	if (s->freeing)
		return;
	s->freeing = 1;
	if (s->count != NULL)
		(*s->count)--;
	if (s->link != NULL) {
		TAILQ_REMOVE(&s->link->streams, s, entry);
		s->link = NULL;
	} else if (s->orphan) {
		TAILQ_REMOVE(&stream_orphans, s, entry);
		s->orphan = 0;
	}
	bufferevent_disable(s->bev, EV_READ | EV_WRITE);
	bufferevent_setcb(s->bev, NULL, NULL, NULL, NULL);
	if (s->rd_ev != NULL)
		event_del(s->rd_ev);
	if (reset)
		net_reset_on_close(bufferevent_getfd(s->bev));
	/* Freed from the loop: we may be inside this bufferevent's callbacks. */
	if (link_stopping || event_base_once(bufferevent_get_base(s->bev), -1, EV_TIMEOUT,
			    stream_free_deferred, s, &zero) < 0)
		stream_free_deferred(-1, 0, s);
}

/* Shuts the write side once the peer's FIN arrived and all data is out;
 * frees the stream when the mux is done with it too. */
static void
stream_maybe_finish(struct stream *s)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);

	if (s->freeing || evbuffer_get_length(out) != 0)
		return;
	if (s->peer_fin && !s->wr_shut) {
		s->wr_shut = 1;
		shutdown(bufferevent_getfd(s->bev), SHUT_WR);
	}
	if (s->id == 0 && s->wr_shut)
		stream_release(s, 0);
}

static void
stream_out_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info,
	      void *arg)
{
	struct stream *s = arg;

	if (info->n_deleted == 0 || s->freeing)
		return;
	if (s->link != NULL && s->id != 0) {
		mux_consumed(s->link->mux, s->id, info->n_deleted);
		link_kick(s->link);
	}
	stream_maybe_finish(s);
}

static void stream_event_cb(struct bufferevent *bev, short what, void *arg);

/* Starts or stops polling the stream's socket. */
static void
stream_read_enable(struct stream *s, int on)
{
	on = on && !s->rd_eof;
	if (s->rd_ev == NULL || s->freeing || s->rd_on == (unsigned)on)
		return;
	s->rd_on = on;
	if (on)
		event_add(s->rd_ev, NULL);
	else
		event_del(s->rd_ev);
}

/*
 * The socket is readable.  Nothing is read here: the mux pulls the bytes
 * straight into the frame it is building when the stream's turn comes
 * (link_cb_read_data), so a read neither allocates nor copies.  A stream
 * still waiting for its turn stops polling until its bytes are taken.
 */
static void
stream_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct stream *s = arg;

	if (s->rd_err != 0) {
		errno = s->rd_err;
		stream_event_cb(s->bev, BEV_EVENT_READING | BEV_EVENT_ERROR, s);
		return;
	}
	if (s->readable) {
		stream_read_enable(s, 0);
		return;
	}
	s->readable = 1;
	if (s->link != NULL && s->id != 0) {
		mux_resume(s->link->mux, s->id);
		link_kick(s->link);
	}
}

/* Creates the read event once the socket exists and starts reading. */
static int
stream_read_start(struct stream *s)
{
	evutil_socket_t fd = bufferevent_getfd(s->bev);

	if (s->rd_ev == NULL) {
		if (fd < 0)
			return 0; /* connecting: started on BEV_EVENT_CONNECTED */
		s->rd_ev = event_new(bufferevent_get_base(s->bev), fd,
				     EV_READ | EV_PERSIST, stream_read_cb, s);
		if (s->rd_ev == NULL)
			return -1;
	}
	stream_read_enable(s, 1);
	return 0;
}

static void
stream_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct stream *s = arg;
	struct link *l = s->link;
	int err = EVUTIL_SOCKET_ERROR();

	if (what & BEV_EVENT_CONNECTED) {
		s->connecting = 0;
		net_nodelay(bufferevent_getfd(bev));
		log_debug("stream %u (service %s): backend connected", s->id,
			  s->service);
		if (stream_read_start(s) == 0)
			return;
		what = BEV_EVENT_ERROR;
		err = ENOMEM;
	}
	if (l == NULL || s->id == 0) {
		stream_release(s, 1);
		return;
	}
	if (s->connecting) {
		log_warn("stream %u (service %s): cannot connect to the backend: "
			 "%s", s->id, s->service,
			 err ? evutil_socket_error_to_string(err) : "connection failed");
		mux_reset(l->mux, s->id, MUX_C_CONNECT_FAILED);
	} else {
		log_info("stream %u (service %s): local connection %s: %s",
			 s->id, s->service,
			 (what & BEV_EVENT_EOF) ? "closed while writing" : "failed",
			 err ? evutil_socket_error_to_string(err) : "reset");
		mux_reset(l->mux, s->id, MUX_C_CONN_RESET);
	}
	link_kick(l);
}

static struct stream *
link_stream_new(struct link *l, struct bufferevent *bev, const char *service)
{
	struct stream *s;

	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->link = l;
	s->bev = bev;
	net_nodelay(bufferevent_getfd(bev));
	snprintf(s->service, sizeof(s->service), "%s", service);
	TAILQ_INSERT_TAIL(&l->streams, s, entry);
	bufferevent_setcb(bev, NULL, NULL, stream_event_cb, s);
	/* Fewer, larger writes: libevent's default is 16 KiB. */
	bufferevent_set_max_single_write(bev, SOCKET_IO_MAX);
	evbuffer_add_cb(bufferevent_get_output(bev), stream_out_cb, s);
	return s;
}

/* ---- mux callbacks --------------------------------------------------- */

static uint32_t
link_cb_open(void *ud, uint32_t id, const char *service, void **sud)
{
	struct link *l = ud;
	struct bufferevent *bev;
	struct stream *s;
	uint32_t code = MUX_C_REFUSED;

	bev = l->ops->on_stream(l->ud, l, service, &code);
	if (bev == NULL)
		return code;
	s = link_stream_new(l, bev, service);
	if (s == NULL) {
		bufferevent_free(bev);
		return MUX_C_INTERNAL;
	}
	s->id = id;
	s->connecting = 1;
	bufferevent_enable(bev, EV_WRITE);
	if (stream_read_start(s) < 0) {
		stream_discard(s);
		return MUX_C_INTERNAL;
	}
	*sud = s;
	log_debug("%s: stream %u opened by peer for service %s", link_who(l),
		  id, service);
	return 0;
}

/* Writes the payload straight to the socket when nothing waits ahead
 * of it, and returns the credit it used on the same turn; what the
 * socket does not take waits in the bufferevent (stream_out_cb returns
 * its credit as it drains). */
static uint32_t
link_cb_data(void *ud, uint32_t id, void *sud, const uint8_t *p, size_t n)
{
	struct link *l = ud;
	struct stream *s = sud;
	evutil_socket_t fd = bufferevent_getfd(s->bev);
	ssize_t w;

	if (n > 0 && !s->connecting && fd >= 0 &&
	    evbuffer_get_length(bufferevent_get_output(s->bev)) == 0) {
		do
			w = send(fd, p, n, MSG_NOSIGNAL);
		while (w < 0 && errno == EINTR);
		if (w > 0) {
			p += w;
			n -= (size_t)w;
			mux_consumed(l->mux, id, (size_t)w);
		} else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			log_info("stream %u (service %s): local connection "
				 "failed: %s", id, s->service, strerror(errno));
			return MUX_C_CONN_RESET;
		}
	}
	if (n > 0 && bufferevent_write(s->bev, p, n) < 0)
		return MUX_C_INTERNAL;
	return 0;
}

static void
link_cb_fin(void *ud, uint32_t id, void *sud)
{
	struct stream *s = sud;

	s->peer_fin = 1;
	stream_maybe_finish(s);
}

static void
link_cb_close(void *ud, uint32_t id, void *sud, uint32_t code, int by_peer)
{
	struct stream *s = sud;
	struct link *l = ud;

	s->id = 0;
	if (code != MUX_C_NO_ERROR) {
		if (l->state != LS_DEAD)
			log_info("%s: stream %u (service %s) reset by %s: %s",
				 link_who(l), id, s->service,
				 by_peer ? "peer" : "this side", mux_code_str(code));
		stream_release(s, 1);
		return;
	}
	log_debug("%s: stream %u (service %s) closed", link_who(l), id,
		  s->service);
	/* Both sides sent FIN.  What the peer sent may still be on its way
	 * out of the socket: the stream outlives its place on the link. */
	TAILQ_REMOVE(&l->streams, s, entry);
	s->link = NULL;
	s->orphan = 1;
	TAILQ_INSERT_TAIL(&stream_orphans, s, entry);
	s->peer_fin = 1;
	stream_maybe_finish(s);
}

/*
 * The stream's turn: reads its socket straight into the frame.  A short
 * read means the socket is drained, so polling resumes; a full one
 * leaves the stream ready for its next turn without a poll in between.
 */
static size_t
link_cb_read_data(void *ud, uint32_t id, void *sud, uint8_t *buf, size_t max,
	      int *eof)
{
	struct stream *s = sud;
	ssize_t r;

	if (s->rd_eof) {
		*eof = 1;
		return 0;
	}
	if (!s->readable || s->rd_err != 0) {
		stream_read_enable(s, 1);
		return 0;
	}
	do
		r = read(bufferevent_getfd(s->bev), buf, max);
	while (r < 0 && errno == EINTR);
	if (r > 0) {
		if ((size_t)r < max) {
			s->readable = 0;
			stream_read_enable(s, 1);
		}
		return (size_t)r;
	}
	s->readable = 0;
	if (r == 0) {
		s->rd_eof = 1;
		stream_read_enable(s, 0);
		*eof = 1;
	} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
		stream_read_enable(s, 1);
	} else {
		/* Reported from the loop: a reset may not be sent from here. */
		s->rd_err = errno;
		event_active(s->rd_ev, EV_READ, 0);
	}
	return 0;
}

/* Stops new streams both ways; the link closes once its streams are
 * done (link_flush checks). */
static void
link_start_drain(struct link *l, const char *why)
{
	if (l->state != LS_UP)
		return;
	link_set_state(l, LS_DRAINING);
	mux_goaway(l->mux, MUX_C_NO_ERROR, why);
	if (l->ops->on_draining != NULL)
		l->ops->on_draining(l->ud, l);
	link_kick(l);
}

void
link_drain(struct link *l, const char *why)
{
	if (l->state != LS_UP)
		return;
	log_info("%s: draining (%s): no new streams, %zu streams finishing",
		 link_who(l), why, mux_stream_count(l->mux));
	link_start_drain(l, why);
}

void
link_drain_all(const char *why)
{
	struct link *l;

	TAILQ_FOREACH(l, &link_all, entry)
		link_drain(l, why);
}

static void
link_cb_goaway(void *ud, uint32_t last_id, uint32_t code, const char *text)
{
	struct link *l = ud;

	/* Its BIND came first, maybe in the same record. */
	if (l->state == LS_BINDING)
		link_on_bound(l);
	log_info("%s: peer sent GOAWAY (%s%s%s); no new streams on this link, "
		 "%zu streams finishing", link_who(l), mux_code_str(code),
		 text[0] ? ": " : "", text, mux_stream_count(l->mux));
	link_start_drain(l, "peer sent GOAWAY");
}

static void
link_cb_pong(void *ud, uint64_t opaque)
{
	struct link *l = ud;

	log_debug("%s: keepalive answered in %llu us", link_who(l),
		  (unsigned long long)(now_us() - opaque));
}

/* ---- the link budget ------------------------------------------------- */

static uint64_t
flow_clamp(uint64_t v, uint64_t lo, uint64_t hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/* Chooses the budget from the measurements and tells the mux. */
static void
link_flow_update(struct link *l, uint64_t now)
{
	struct link_flow *f = &l->flow;
	uint64_t sparse = mux_sparse_served(l->mux), bdp, budget;

	if (sparse != f->sparse_seen) {
		f->sparse_seen = sparse;
		f->sparse_at = now;
	}
	bdp = f->rate * f->min_rtt_us / 1000000;
	if (f->sparse_at != 0 && now - f->sparse_at < FLOW_SPARSE_US)
		budget = flow_clamp(bdp, FLOW_LAT_MIN, FLOW_LAT_MAX);
	else
		budget = flow_clamp(4 * bdp, FLOW_BULK_MIN, FLOW_BULK_MAX);
	if (budget != f->budget) {
		log_debug("%s: link budget %llu bytes (%s; %llu B/s, min round "
			  "trip %llu us)", link_who(l), (unsigned long long)budget,
			  budget <= FLOW_LAT_MAX ? "interactive" : "bulk",
			  (unsigned long long)f->rate,
			  (unsigned long long)f->min_rtt_us);
		f->budget = (uint32_t)budget;
		mux_set_link_budget(l->mux, f->budget);
	}
}

static void
link_cb_probe(void *ud, uint64_t offset)
{
	struct link_flow *f = &((struct link *)ud)->flow;
	unsigned i;

	if (f->n == MUX_LINK_PROBES_MAX) {
		f->first = (f->first + 1) % MUX_LINK_PROBES_MAX;
		f->n--;
	}
	i = (f->first + f->n) % MUX_LINK_PROBES_MAX;
	f->probe_off[i] = offset;
	f->probe_us[i] = now_us();
	f->n++;
}

/* An answer: a round-trip sample from its probe, and, once at least
 * FLOW_SAMPLE_US or two round trips have passed since the last sample,
 * a delivery-rate sample over that span (so that answers arriving
 * bunched together do not inflate it). */
static void
link_cb_ack(void *ud, uint64_t offset, uint64_t inflight)
{
	struct link *l = ud;
	struct link_flow *f = &l->flow;
	uint64_t now = now_us(), sent_us = 0;

	(void)inflight;
	while (f->n > 0 && f->probe_off[f->first] <= offset) {
		sent_us = f->probe_us[f->first];
		f->first = (f->first + 1) % MUX_LINK_PROBES_MAX;
		f->n--;
	}
	if (sent_us != 0) {
		uint64_t rtt = now - sent_us + 1;

		if (f->min_rtt_us == 0 || rtt <= f->min_rtt_us ||
		    now - f->min_rtt_at > FLOW_RTT_WINDOW_US) {
			f->min_rtt_us = rtt;
			f->min_rtt_at = now;
		}
	}
	if (f->span_us == 0) {
		f->span_off = offset;
		f->span_us = now;
	} else if (now - f->span_us >= FLOW_SAMPLE_US &&
		   now - f->span_us >= 2 * f->min_rtt_us) {
		uint64_t rate = (offset - f->span_off) * 1000000 /
				(now - f->span_us);

		if (rate >= f->rate || now - f->rate_at > FLOW_RATE_WINDOW_US) {
			f->rate = rate;
			f->rate_at = now;
		}
		f->span_off = offset;
		f->span_us = now;
	}
	link_flow_update(l, now);
}

static const struct mux_callbacks link_mux_cb = {
	.on_open = link_cb_open,
	.on_data = link_cb_data,
	.on_fin = link_cb_fin,
	.on_close = link_cb_close,
	.read_data = link_cb_read_data,
	.on_goaway = link_cb_goaway,
	.on_pong = link_cb_pong,
	.on_link_probe = link_cb_probe,
	.on_link_ack = link_cb_ack,
};

/* ---- the link data path ---------------------------------------------- */

static void link_up_input(struct link *l);

/* EV_READ: more link input is waiting; EV_WRITE: the mux may have output. */
static void
link_kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct link *l = arg;

	if (!link_mux_on(l))
		return;
	if (what & EV_READ)
		link_up_input(l);
	else
		link_flush(l);
}

/* Asks for a flush from the loop; requests made before it runs are
 * merged into one. */
static void
link_kick(struct link *l)
{
	if (link_mux_on(l))
		event_active(l->kick_ev, EV_WRITE, 0);
}

/* Writes to the link socket at once when nothing is queued ahead; what
 * the socket does not take waits in the bufferevent's output, which
 * also reports a failed socket.  Returns 0, or -1 when out of memory. */
static int
link_out(struct link *l, const uint8_t *p, size_t n)
{
	struct evbuffer *out = bufferevent_get_output(l->bev);
	ssize_t w;

	if (evbuffer_get_length(out) == 0) {
		do
			w = send(bufferevent_getfd(l->bev), p, n, MSG_NOSIGNAL);
		while (w < 0 && errno == EINTR);
		if (w > 0) {
			l->bytes_out += (uint64_t)w;
			p += w;
			n -= (size_t)w;
		}
	}
	return n > 0 ? evbuffer_add(out, p, n) : 0;
}

/* Writes what link_flush() gathered. */
static int
link_push(struct link *l)
{
	int rc = 0;

	if (iobuf_len(&l->stage) > 0)
		rc = link_out(l, iobuf_data(&l->stage), iobuf_len(&l->stage));
	iobuf_drain(&l->stage, iobuf_len(&l->stage));
	return rc;
}

/* Link bytes on their way out: gathered while link_flush() runs, so that
 * its records leave in one write, written at once otherwise. */
static int
link_emit(struct link *l, const uint8_t *p, size_t n)
{
	if (l->corked) {
		if (n > l->stage.cap - iobuf_len(&l->stage) && link_push(l) < 0)
			return -1;
		if (n <= l->stage.cap)
			return iobuf_put(&l->stage, p, n);
	}
	return link_out(l, p, n);
}

static size_t
link_tls_recv(void *arg, uint8_t *buf, size_t n)
{
	struct link *l = arg;

	return iobuf_take(&l->in, buf, n);
}

static int
link_tls_send(void *arg, const uint8_t *buf, size_t n)
{
	return link_emit(arg, buf, n);
}

static const struct tls_io link_tls_io = {
	.recv = link_tls_recv,
	.send = link_tls_send,
};

/* Puts n bytes of frames from sendbuf on the wire, through TLS when it
 * is up.  Returns 0, or -1 after failing the link. */
static int
link_write_frames(struct link *l, size_t n)
{
	if (l->tls != NULL) {
		if (tls_conn_write(l->tls, l->sendbuf, n) < 0) {
			link_fail(l, LOG_ERR, "TLS write failed: %s",
				  tls_conn_error(l->tls));
			return -1;
		}
	} else if (link_emit(l, l->sendbuf, n) < 0) {
		link_fail(l, LOG_ERR, "out of memory");
		return -1;
	}
	return 0;
}

/* Moves frames from the mux to the socket until the output is above its
 * high-water mark or the mux has nothing to send; the records of one
 * call leave in one write. */
static void
link_flush(struct link *l)
{
	struct evbuffer *out = bufferevent_get_output(l->bev);
	/* Draining and no stream left: the last frames, then close. */
	int last = l->state == LS_DRAINING && mux_stream_count(l->mux) == 0;
	size_t n;

	if (l->flow.budget != 0)
		link_flow_update(l, now_us());
	l->corked = 1;
	while (link_mux_on(l) &&
	       (last || evbuffer_get_length(out) < LINK_OUT_HIGH)) {
		n = mux_send(l->mux, l->sendbuf, LINK_SEND_CHUNK);
		if (n == 0 || link_write_frames(l, n) < 0)
			break;
	}
	l->corked = 0;
	if (link_push(l) < 0)
		link_fail(l, LOG_ERR, "out of memory");
	if (last && l->state == LS_DRAINING) {
		if (l->tls != NULL)
			tls_conn_close_notify(l->tls);
		link_close_after_flush(l, LOG_INFO, "drained: every stream "
				       "finished after GOAWAY");
	}
}

static void
link_keepalive_cb(evutil_socket_t fd, short what, void *arg)
{
	struct link *l = arg;
	uint64_t now = now_us();

	if (!link_mux_on(l))
		return;
	if (now - l->last_rx_us >= (uint64_t)l->cfg.keepalive_timeout_ms * 1000) {
		link_fail(l, LOG_WARN, "no data from the peer for %llu ms "
			  "(keepalive_timeout); the link is dead",
			  (unsigned long long)(now - l->last_rx_us) / 1000);
		return;
	}
	if (now - l->last_ping_us >= (uint64_t)l->keepalive_ms * 1000) {
		l->last_ping_us = now;
		mux_ping(l->mux, now);
		link_kick(l);
	}
}

static void link_handshake_failed(struct link *l, const char *why);

static void
link_mux_failed(struct link *l)
{
	enum mux_err e = mux_error(l->mux);

	if (e == MUX_ERR_BIND_MISMATCH) {
		/* Someone changed the plaintext negotiation in transit. */
		if (l->tls != NULL)
			link_handshake_failed(l, "transcript mismatch: the peer "
					      "saw different negotiation "
					      "messages (altered in transit)");
		else	/* our BIND still goes out, so the peer sees it too */
			link_close_after_flush(l, LOG_ERR, "transcript mismatch: "
					       "the peer saw different "
					       "negotiation messages (altered "
					       "in transit)");
		return;
	}
	if (e == MUX_ERR_FRAME)
		link_fail(l, LOG_ERR, "link protocol error: %s: %s",
			  mux_err_str(e), frame_err_str(mux_frame_error(l->mux)));
	else
		link_fail(l, LOG_ERR, "link protocol error: %s", mux_err_str(e));
}

/* The peer's BIND arrived: it saw our negotiation bytes and, over TLS,
 * accepted our side of the handshake.  Only now is the link usable. */
static void
link_on_bound(struct link *l)
{
	struct hook_event ev;
	struct tls_info *info = &l->tls_info;

	link_set_state(l, LS_UP);
	evtimer_del(l->deadline_ev);
	if (l->tls != NULL) {
		link_event_init(l, &ev, HOOK_HANDSHAKE_DONE);
		ev.protocol = info->protocol;
		ev.cipher = info->cipher;
		ev.group = info->group[0] ? info->group : NULL;
		ev.peer_subject = info->subject[0] ? info->subject : NULL;
		ev.peer_issuer = info->issuer[0] ? info->issuer : NULL;
		ev.peer_serial = info->serial[0] ? info->serial : NULL;
		ev.peer_sha256 = info->sha256[0] ? info->sha256 : NULL;
		ev.peer_not_after = info->not_after[0] ? info->not_after : NULL;
		ev.resumed = info->resumed;
		ev.duration_ms = (now_us() - l->t_hs_us) / 1000;
		hook_emit(&ev);
		log_info("%s: TLS up: %s %s%s%s, peer certificate %s",
			 link_who(l), info->protocol, info->cipher,
			 info->group[0] ? " " : "", info->group,
			 info->subject[0] ? info->subject : "none");
	}
	if (l->ops->on_up != NULL)
		l->ops->on_up(l->ud, l);
}

/* A TLS read failed: before the peer's BIND that means the peer
 * rejected our handshake (TLS 1.3 clients finish before the server has
 * checked their certificate). */
static void
link_tls_read_failed(struct link *l, const char *why)
{
	if (l->state == LS_BINDING)
		link_handshake_failed(l, why);
	else
		link_fail(l, LOG_ERR, "TLS error: %s", why);
}

static void
link_up_input(struct link *l)
{
	struct iobuf *in = &l->in;
	uint8_t buf[16384];
	size_t done = 0;
	int n;

	while (link_mux_on(l) && done < LINK_READ_CHUNK) {
		if (l->tls != NULL) {
			n = tls_conn_read(l->tls, buf, sizeof(buf));
			if (n == 0)
				break;
			if (n == -2 || n == -3) {
				const char *why = n == -2 ? "peer closed the link" :
					"peer closed the link without a TLS "
					"close_notify";

				if (l->state == LS_BINDING)
					link_handshake_failed(l, why);
				else
					link_fail(l, n == -2 ? LOG_INFO : LOG_WARN,
						  "%s", why);
				return;
			}
			if (n < 0) {
				link_tls_read_failed(l, tls_conn_error(l->tls));
				return;
			}
			if (mux_recv(l->mux, buf, (size_t)n) < 0) {
				link_mux_failed(l);
				return;
			}
			done += (size_t)n;
		} else {
			size_t len = iobuf_len(in);

			if (len == 0)
				break;
			if (len > LINK_READ_CHUNK - done)
				len = LINK_READ_CHUNK - done;
			if (mux_recv(l->mux, iobuf_data(in), len) < 0) {
				link_mux_failed(l);
				return;
			}
			iobuf_drain(in, len);
			done += len;
		}
		if (l->state == LS_BINDING && mux_bound(l->mux))
			link_on_bound(l);
	}
	/* More may be waiting; come back after other events had a turn. */
	if (link_mux_on(l) && done >= LINK_READ_CHUNK)
		event_active(l->kick_ev, EV_READ, 0);
	if (link_mux_on(l) && iobuf_len(in) < LINK_IN_HIGH)
		link_read_enable(l, 1);
	link_flush(l);
}

static int
link_start_mux(struct link *l)
{
	struct mux_settings ms;
	struct mux_limits lim;
	const uint8_t *offer, *decision;
	size_t offer_len, decision_len;

	policy_mux_limits(&l->mine, &l->peer.params, &lim);
	memset(&ms, 0, sizeof(ms));
	ms.dialer = l->cfg.dialer;
	ms.max_frame = lim.max_frame;
	ms.local_window = lim.local_window;
	ms.peer_window = lim.peer_window;
	ms.local_max_streams = lim.local_max_streams;
	ms.peer_max_streams = lim.peer_max_streams;
	ms.link_ack = lim.link_ack;
	ms.sparse_quantum = MUX_SPARSE_QUANTUM;
	if (l->cfg.dialer) {
		offer = l->tx_neg, offer_len = l->tx_neg_len;
		decision = l->rx_neg, decision_len = l->rx_neg_len;
	} else {
		offer = l->rx_neg, offer_len = l->rx_neg_len;
		decision = l->tx_neg, decision_len = l->tx_neg_len;
	}
	tls_sha256_pair(offer, offer_len, decision, decision_len, ms.bind);
	/* Each mux_send() fills at most one TLS record's worth. */
	l->sendbuf = malloc(LINK_SEND_CHUNK);
	l->mux = mux_new(&ms, &link_mux_cb, l);
	if (l->sendbuf == NULL || l->mux == NULL ||
	    iobuf_reserve(&l->stage, LINK_STAGE_CAP) < 0) {
		link_fail(l, LOG_ERR, "out of memory starting the stream mux");
		return -1;
	}
	if (lim.link_ack)
		link_flow_update(l, now_us());
	if (l->tls == NULL)
		evtimer_del(l->deadline_ev);
	link_set_state(l, LS_BINDING);
	l->keepalive_ms = lim.keepalive_ms;
	if (l->keepalive_ms > 0) {
		struct timeval tv;

		l->ka_ev = event_new(l->base, -1, EV_PERSIST, link_keepalive_cb, l);
		if (l->ka_ev == NULL) {
			link_fail(l, LOG_ERR, "out of memory");
			return -1;
		}
		/* Check often enough to notice silence within the timeout. */
		ms_to_tv(l->keepalive_ms < l->cfg.keepalive_timeout_ms / 4 ?
			 l->keepalive_ms : l->cfg.keepalive_timeout_ms / 4, &tv);
		l->last_ping_us = now_us();
		evtimer_add(l->ka_ev, &tv);
	}
	link_flush(l);
	return 0;
}

/* ---- TLS ------------------------------------------------------------- */

static void
link_handshake_failed(struct link *l, const char *why)
{
	struct hook_event ev;

	link_event_init(l, &ev, HOOK_HANDSHAKE_FAILED);
	ev.reason = why;
	hook_emit(&ev);
	link_close_after_flush(l, LOG_ERR, "TLS handshake failed: %s", why);
}

static void
link_handshake_step(struct link *l)
{
	int rc;

	rc = tls_conn_handshake(l->tls);
	if (rc == 0)
		return;
	if (rc < 0) {
		link_handshake_failed(l, tls_conn_error(l->tls));
		return;
	}
	/* handshake_done waits for the peer's BIND (link_on_bound). */
	tls_conn_info(l->tls, &l->tls_info);
	if (l->ops->on_verify != NULL) {
		char why[512] = "";

		if (l->ops->on_verify(l->ud, l, l->tls, &l->tls_info, why,
				      sizeof(why)) < 0) {
			link_handshake_failed(l, why[0] ? why :
					      "the peer was not accepted");
			return;
		}
	}
	if (link_start_mux(l) == 0)
		link_up_input(l);
}

static void
link_start_tls(struct link *l)
{
	struct hook_event ev;
	struct tls_conn_params p;
	struct timeval tv;
	char err[256];

	if (l->cfg.tls == NULL) {
		link_fail(l, LOG_ERR, "TLS was agreed but this side has no TLS "
			  "context (set cert/key or ca)");
		return;
	}
	/* The hook fires after the negotiation bytes, before any TLS byte. */
	link_event_init(l, &ev, HOOK_HANDSHAKE_PENDING);
	ev.tls_offset_out = l->tx_neg_len;
	ev.tls_offset_in = l->rx_neg_len;
	if (hook_emit(&ev) < 0) {
		link_fail(l, LOG_ERR, "a notification hook vetoed the TLS "
			  "handshake");
		return;
	}
	memset(&p, 0, sizeof(p));
	p.tls_min = l->outcome.tls_min;
	p.tls_max = l->outcome.tls_max;
	p.ciphers = l->outcome.ciphers;
	p.n_ciphers = l->outcome.n_ciphers;
	p.server_name = l->cfg.server_name;
	p.client_cert = l->cfg.client_cert;
	l->tls = tls_conn_new_io(l->cfg.tls, &link_tls_io, l, &p, err,
				 sizeof(err));
	if (l->tls == NULL) {
		link_handshake_failed(l, err);
		return;
	}
	link_set_state(l, LS_HANDSHAKE);
	l->t_hs_us = now_us();
	ms_to_tv(l->cfg.handshake_timeout_ms, &tv);
	evtimer_add(l->deadline_ev, &tv);
	link_handshake_step(l);
}

/* ---- negotiation ----------------------------------------------------- */

static int
link_send_neg(struct link *l, const struct neg_msg *m)
{
	int n;

	n = neg_encode(m, l->tx_neg, sizeof(l->tx_neg));
	if (n < 0) {
		link_fail(l, LOG_ERR, "cannot encode our %s message "
			  "(configuration out of range?)", neg_type_str(m->type));
		return -1;
	}
	l->tx_neg_len = (size_t)n;
	bufferevent_write(l->bev, l->tx_neg, (size_t)n);
	return 0;
}

static void
link_fill_nonce(struct neg_params *p)
{
	size_t got = 0;
	ssize_t r;

	while (got < sizeof(p->nonce)) {
		r = getrandom(p->nonce + got, sizeof(p->nonce) - got, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			/* Not secret: it only makes each transcript unique. */
			uint64_t t = now_us();

			memcpy(p->nonce, &t, sizeof(t));
			return;
		}
		got += (size_t)r;
	}
}

static void
link_send_offer(struct link *l)
{
	struct neg_msg m;
	struct timeval tv;

	neg_msg_init(&m, NEG_OFFER);
	m.params = l->mine;
	if (link_send_neg(l, &m) < 0)
		return;
	link_set_state(l, LS_NEGOTIATING);
	ms_to_tv(l->cfg.negotiation_timeout_ms, &tv);
	evtimer_add(l->deadline_ev, &tv);
	if (link_read_start(l) < 0)
		link_fail(l, LOG_ERR, "out of memory");
}

static void
link_refuse(struct link *l, uint16_t reason, const char *detail)
{
	struct neg_msg m;

	neg_msg_refusal(&m, l->mine.node, reason, detail);
	if (link_send_neg(l, &m) < 0)
		return;
	link_close_after_flush(l, LOG_WARN, "refused the link: %s%s%s",
			       neg_reason_str(reason), detail ? ": " : "",
			       detail ? detail : "");
}

/* Both sides, once the outcome is known: upgrade or start the mux. */
static void
link_proceed(struct link *l)
{
	struct hook_event ev;

	if (l->outcome.result == NEG_RESULT_TLS) {
		log_info("%s: TLS agreed (%s..%s): %s", link_who(l),
			 tls_version_str(l->outcome.tls_min),
			 tls_version_str(l->outcome.tls_max),
			 neg_reason_str(l->outcome.reason));
		link_start_tls(l);
		return;
	}
	link_event_init(l, &ev, HOOK_PLAINTEXT_AGREED);
	ev.reason = neg_reason_str(l->outcome.reason);
	hook_emit(&ev);
	log_info("%s: plaintext agreed: %s", link_who(l), ev.reason);
	/* The dialler may already hold the acceptor's first frames. */
	if (link_start_mux(l) == 0)
		link_up_input(l);
}

/* Acceptor: the peer's offer is complete. */
static void
link_on_offer(struct link *l)
{
	struct neg_msg m;
	size_t extra = iobuf_len(&l->in);
	uint16_t reason = 0;
	char text[NEG_TEXT_MAX + 1] = "";

	if (l->peer.type != NEG_OFFER) {
		link_fail(l, LOG_ERR, "peer sent a %s where an OFFER was "
			  "expected", neg_type_str(l->peer.type));
		return;
	}
	if (extra > 0) {
		link_fail(l, LOG_ERR, "peer sent %zu bytes after its offer "
			  "without waiting for the decision; closing without "
			  "reading them (protocol violation or injection)", extra);
		return;
	}
	if (l->ops->on_offer != NULL &&
	    l->ops->on_offer(l->ud, l, &l->peer.params, &l->mine,
			     &l->cfg.client_cert, &reason, text,
			     sizeof(text)) < 0) {
		link_refuse(l, reason, text[0] ? text : NULL);
		return;
	}
	l->mine.cert_want = (uint8_t)l->cfg.client_cert;
	policy_decide(&l->peer.params, &l->mine, &l->outcome);
	if (l->outcome.result == NEG_RESULT_REFUSE) {
		link_refuse(l, l->outcome.reason, NULL);
		return;
	}
	neg_msg_init(&m, NEG_DECISION);
	m.params = l->mine;
	m.outcome = l->outcome;
	if (link_send_neg(l, &m) < 0)
		return;
	link_proceed(l);
}

/* Dialler: the relay's decision or refusal is complete. */
static void
link_on_decision(struct link *l)
{
	size_t extra = iobuf_len(&l->in);
	uint16_t reason = 0;

	if (l->peer.type == NEG_REFUSE) {
		char *c;

		/* The peer's text goes into our log: no control characters. */
		for (c = l->peer.text; *c != '\0'; c++)
			if ((unsigned char)*c < 0x20 || *c == 0x7f)
				*c = '?';
		link_fail(l, LOG_ERR, "the relay refused the link: %s%s%s",
			  neg_reason_str(l->peer.outcome.reason),
			  l->peer.text[0] ? "; it says: " : "", l->peer.text);
		return;
	}
	if (policy_check_decision(&l->mine, &l->peer, &reason) < 0) {
		link_fail(l, LOG_ERR, "the relay's decision is not acceptable: %s",
			  neg_reason_str(reason));
		return;
	}
	l->outcome = l->peer.outcome;
	if (l->outcome.result == NEG_RESULT_TLS && extra > 0) {
		link_fail(l, LOG_ERR, "peer sent %zu bytes after its decision "
			  "before TLS started; closing without reading them "
			  "(protocol violation or injection)", extra);
		return;
	}
	link_proceed(l);
}

static void
link_neg_failed(struct link *l)
{
	enum neg_err e = neg_decoder_error(l->dec);
	const uint8_t *pre;
	size_t n = neg_decoder_prefix(l->dec, &pre);

	if (e == NEG_ERR_BAD_MAGIC) {
		link_fail(l, LOG_WARN, "peer does not speak tlsplex: it sent %s "
			  "instead of a negotiation message", neg_sniff(pre, n));
		return;
	}
	if (!l->cfg.dialer && (e == NEG_ERR_BAD_VERSION)) {
		link_refuse(l, NEG_R_NO_COMMON_PROTOCOL, neg_err_str(e));
		return;
	}
	if (!l->cfg.dialer && e != NEG_ERR_TRUNCATED) {
		link_refuse(l, NEG_R_MALFORMED, neg_err_str(e));
		return;
	}
	link_fail(l, LOG_ERR, "bad negotiation message from peer: %s%s",
		  neg_err_str(e), e == NEG_ERR_TRUNCATED ? "" : "");
}

static void
link_neg_input(struct link *l)
{
	struct iobuf *in = &l->in;
	enum neg_status st = NEG_NEED_MORE;

	while (l->state == LS_NEGOTIATING && iobuf_len(in) > 0) {
		size_t len = iobuf_len(in), used = 0;
		const uint8_t *p = iobuf_data(in);

		if (len > NEG_MAX_LEN)
			len = NEG_MAX_LEN;
		st = neg_decoder_feed(l->dec, p, len, &used);
		if (l->rx_neg_len + used <= sizeof(l->rx_neg)) {
			memcpy(l->rx_neg + l->rx_neg_len, p, used);
			l->rx_neg_len += used;
		}
		iobuf_drain(in, used);
		if (st == NEG_FAIL) {
			link_neg_failed(l);
			return;
		}
		if (st == NEG_DONE)
			break;
	}
	if (st != NEG_DONE)
		return;
	l->peer = *neg_decoder_msg(l->dec);
	if (l->cfg.dialer)
		link_on_decision(l);
	else
		link_on_offer(l);
}

/* ---- reading the link socket ------------------------------------------ */

static void link_read_cb(struct bufferevent *bev, void *arg);
static void link_event_cb(struct bufferevent *bev, short what, void *arg);

/* Starts or stops reading the link socket. */
static void
link_read_enable(struct link *l, int on)
{
	if (l->rd_ev == NULL || l->rd_on == on)
		return;
	l->rd_on = on;
	if (on)
		event_add(l->rd_ev, NULL);
	else
		event_del(l->rd_ev);
}

static void
link_sock_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct link *l = arg;
	/* During negotiation a peer can make us hold at most 8 KiB. */
	size_t high = l->state == LS_NEGOTIATING ? 2 * NEG_MAX_LEN : LINK_IN_HIGH;
	ssize_t r;

	if (iobuf_reserve(&l->in, high) < 0) {
		link_fail(l, LOG_ERR, "out of memory for the link input");
		return;
	}
	r = iobuf_read_fd(&l->in, fd, high);
	if (r < 0 && errno == ENOBUFS) {
		link_read_enable(l, 0);
		return;
	}
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return;
	if (r <= 0) {
		link_read_enable(l, 0);
		link_event_cb(l->bev, BEV_EVENT_READING |
			      (r == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR), l);
		return;
	}
	l->bytes_in += (uint64_t)r;
	if (iobuf_len(&l->in) >= high)
		link_read_enable(l, 0);
	link_read_cb(l->bev, l);
}

/* Creates the read event for the connected socket and starts reading. */
static int
link_read_start(struct link *l)
{
	if (l->rd_ev == NULL) {
		l->rd_ev = event_new(l->base, bufferevent_getfd(l->bev),
				     EV_READ | EV_PERSIST, link_sock_read_cb, l);
		if (l->rd_ev == NULL)
			return -1;
	}
	link_read_enable(l, 1);
	return 0;
}

/* ---- bufferevent callbacks ------------------------------------------- */

static void
link_read_cb(struct bufferevent *bev, void *arg)
{
	struct link *l = arg;

	l->last_rx_us = now_us();
	switch (l->state) {
	case LS_NEGOTIATING:
		link_neg_input(l);
		break;
	case LS_HANDSHAKE:
		link_handshake_step(l);
		break;
	case LS_BINDING:
	case LS_UP:
	case LS_DRAINING:
		link_up_input(l);
		break;
	default:
		iobuf_drain(&l->in, iobuf_len(&l->in));
		break;
	}
}

static void
link_write_cb(struct bufferevent *bev, void *arg)
{
	struct link *l = arg;

	if (link_mux_on(l))
		link_flush(l);
	else if (l->state == LS_CLOSING &&
		 evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		link_linger_done(l);
}

static void
link_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct link *l = arg;
	int err = EVUTIL_SOCKET_ERROR();

	if (what & BEV_EVENT_CONNECTED) {
		net_nodelay(bufferevent_getfd(bev));
		net_notsent_lowat(bufferevent_getfd(bev), LINK_NOTSENT_LOWAT);
		net_local(bufferevent_getfd(bev), l->local, sizeof(l->local));
		log_info("%s: connected; sending our offer (tls = %s)",
			 link_who(l), tls_mode_str(l->mine.tls_mode));
		link_send_offer(l);
		return;
	}
	if (l->state == LS_CONNECTING) {
		link_fail(l, LOG_WARN, "cannot connect: %s",
			  err ? evutil_socket_error_to_string(err) : "failed");
		return;
	}
	if (l->state == LS_CLOSING) {
		link_linger_done(l);
		return;
	}
	if (what & BEV_EVENT_EOF) {
		if (l->state == LS_NEGOTIATING) {
			neg_decoder_finish(l->dec);
			link_fail(l, LOG_WARN, "peer closed the connection during "
				  "negotiation after %zu bytes", l->rx_neg_len);
		} else if (l->state == LS_HANDSHAKE) {
			tls_conn_set_eof(l->tls);
			link_handshake_failed(l, "the peer closed the connection "
					      "during the TLS handshake");
		} else if (link_mux_on(l)) {
			if (l->tls != NULL)
				tls_conn_set_eof(l->tls);
			link_up_input(l);
			if (link_mux_on(l) && mux_recv_eof(l->mux) < 0)
				link_fail(l, LOG_WARN, "peer closed the link in "
					  "the middle of a frame");
			else
				link_fail(l, LOG_INFO, "peer closed the link");
		}
		return;
	}
	link_fail(l, LOG_WARN, "connection error: %s",
		  err ? evutil_socket_error_to_string(err) : "unknown");
}

static void
link_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct link *l = arg;

	switch (l->state) {
	case LS_CONNECTING:
	case LS_NEGOTIATING:
		link_fail(l, LOG_WARN, "negotiation not complete after %u ms "
			  "(negotiation_timeout); %zu bytes received",
			  l->cfg.negotiation_timeout_ms, l->rx_neg_len);
		break;
	case LS_HANDSHAKE:
		link_handshake_failed(l, "TLS handshake not complete within "
				      "handshake_timeout");
		break;
	case LS_BINDING:
		link_handshake_failed(l, "the peer did not confirm the "
				      "session within handshake_timeout");
		break;
	case LS_CLOSING:
		link_linger_done(l);
		break;
	default:
		break;
	}
}

static void
link_out_count(struct evbuffer *buf, const struct evbuffer_cb_info *info,
	       void *arg)
{
	struct link *l = arg;

	l->bytes_out += info->n_deleted;
}

struct link *
link_new(struct event_base *base, int fd, const struct sockaddr *sa,
	 int salen, const struct link_config *cfg, const struct link_ops *ops,
	 void *ud)
{
	struct link *l;
	struct timeval tv;

	l = calloc(1, sizeof(*l));
	if (l == NULL)
		goto fail_fd;
	l->id = link_next_id++;
	l->base = base;
	l->cfg = *cfg;
	/* The link outlives a configuration reload: own what it uses. */
	tls_ctx_ref(l->cfg.tls);
	if (cfg->server_name != NULL) {
		snprintf(l->server_name, sizeof(l->server_name), "%s",
			 cfg->server_name);
		l->cfg.server_name = l->server_name;
	}
	l->ops = ops;
	l->ud = ud;
	l->mine = cfg->params;
	link_fill_nonce(&l->mine);
	l->mine.cert_want = (uint8_t)cfg->client_cert;
	l->t_start_us = l->last_rx_us = now_us();
	TAILQ_INIT(&l->streams);
	l->dec = neg_decoder_new();
	l->deadline_ev = evtimer_new(base, link_deadline_cb, l);
	l->kick_ev = event_new(base, -1, 0, link_kick_cb, l);
	l->free_ev = event_new(base, -1, 0, link_free_cb, l);
	l->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (l->dec == NULL || l->deadline_ev == NULL ||
	    l->kick_ev == NULL || l->free_ev == NULL || l->bev == NULL)
		goto fail;
	if (cfg->dialer) {
		net_ntop(sa, l->peer_addr, sizeof(l->peer_addr));
		snprintf(l->local, sizeof(l->local), "unknown");
	} else {
		net_nodelay(fd);
		net_notsent_lowat(fd, LINK_NOTSENT_LOWAT);
		net_peer(fd, l->peer_addr, sizeof(l->peer_addr));
		net_local(fd, l->local, sizeof(l->local));
	}
	bufferevent_setcb(l->bev, link_read_cb, link_write_cb, link_event_cb, l);
	bufferevent_setwatermark(l->bev, EV_WRITE, LINK_OUT_LOW, 0);
	bufferevent_set_max_single_write(l->bev, SOCKET_IO_MAX);
	evbuffer_add_cb(bufferevent_get_output(l->bev), link_out_count, l);
	TAILQ_INSERT_TAIL(&link_all, l, entry);
	link_n++;
	l->state = cfg->dialer ? LS_CONNECTING : LS_NEGOTIATING; /* initial */
	if (cfg->dialer) {
		ms_to_tv(cfg->negotiation_timeout_ms, &tv);
		evtimer_add(l->deadline_ev, &tv);
		if (bufferevent_socket_connect(l->bev, sa, salen) < 0) {
			/* The event callback reports the reason. */
			log_debug("%s: connect failed at once", link_who(l));
		}
	} else {
		ms_to_tv(cfg->negotiation_timeout_ms, &tv);
		evtimer_add(l->deadline_ev, &tv);
		bufferevent_enable(l->bev, EV_WRITE);
		if (link_read_start(l) < 0) {
			link_fail(l, LOG_ERR, "out of memory");
			return l;
		}
		log_info("%s: accepted; waiting for its offer", link_who(l));
	}
	return l;
fail:
	if (l->bev != NULL) {
		bufferevent_free(l->bev);
		fd = -1;
	}
	if (l->free_ev != NULL)
		event_free(l->free_ev);
	if (l->kick_ev != NULL)
		event_free(l->kick_ev);
	if (l->deadline_ev != NULL)
		event_free(l->deadline_ev);
	neg_decoder_free(l->dec);
	tls_ctx_free(l->cfg.tls);
	free(l);
fail_fd:
	if (fd >= 0)
		close(fd);
	log_err("cannot set up a link: out of memory");
	return NULL;
}

int
link_open_stream(struct link *l, const char *service, struct bufferevent *bev,
		 unsigned *count)
{
	struct stream *s;
	uint32_t id;

	if (!link_is_up(l)) {
		bufferevent_free(bev);
		return -1;
	}
	s = link_stream_new(l, bev, service);
	if (s == NULL) {
		bufferevent_free(bev);
		return -1;
	}
	id = mux_open(l->mux, service, s);
	if (id == 0) {
		log_warn("%s: cannot open a stream for service %s: the relay's "
			 "stream limit is reached or it is draining the link",
			 link_who(l), service);
		stream_discard(s);
		return -1;
	}
	s->id = id;
	s->count = count;
	if (count != NULL)
		(*count)++;
	bufferevent_enable(bev, EV_WRITE);
	if (stream_read_start(s) < 0) {
		mux_reset(l->mux, id, MUX_C_INTERNAL);
		return -1;
	}
	if (log_get_level() >= LOG_DEBUG) {
		char peer[NET_ADDRSTR_MAX];

		net_peer(bufferevent_getfd(bev), peer, sizeof(peer));
		log_debug("%s: stream %u opened for service %s (local "
			  "connection from %s)", link_who(l), id, service, peer);
	}
	link_kick(l);
	return 0;
}

void
link_set_data(struct link *l, void *data)
{
	l->data = data;
}

void *
link_data(const struct link *l)
{
	return l->data;
}

int
link_peer_has_cert(const struct link *l)
{
	return l->tls != NULL && (l->state == LS_UP || l->state == LS_DRAINING) &&
	       l->tls_info.subject[0] != '\0';
}

void
link_refuse_socket(int fd, const char *node, uint16_t reason,
		   const char *text)
{
	struct neg_msg m;
	uint8_t buf[NEG_MAX_LEN], junk[4096];
	int n;

	neg_msg_refusal(&m, node, reason, text);
	n = neg_encode(&m, buf, sizeof(buf));
	if (n > 0 && send(fd, buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		log_debug("refusal to fd %d not sent: %s", fd, strerror(errno));
	shutdown(fd, SHUT_WR);
	/* What the peer already sent is read, so that close() sends FIN
	 * rather than a reset that could destroy the refusal in flight. */
	while (recv(fd, junk, sizeof(junk), MSG_DONTWAIT) > 0)
		;
	close(fd);
}

int
link_is_up(const struct link *l)
{
	return l != NULL && l->state == LS_UP;
}

int
link_is_tls(const struct link *l)
{
	return l->tls != NULL;
}

uint64_t
link_id(const struct link *l)
{
	return l->id;
}

const char *
link_peer_node(const struct link *l)
{
	return l->peer.params.node;
}

size_t
link_count(void)
{
	return link_n;
}
