/*
 * The streams of a link: local sockets read on the mux's demand and
 * written through, and the mux callbacks that concern them.
 */
#include "link_int.h"

static void stream_event_cb(struct bufferevent *bev, short what, void *arg);

/* Streams whose link forgot them while their last bytes drain. */
struct stream_list stream_orphans = TAILQ_HEAD_INITIALIZER(stream_orphans);

/* ---- streams --------------------------------------------------------- */

/* stream_opened and stream_closed, for observers (summaries, metrics). */
static void
stream_report(struct stream *s, int type, const char *result)
{
	struct hook_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.type = type;
	ev.link_id = s->link_id;
	ev.peer_node = s->peer_node[0] ? s->peer_node : NULL;
	ev.protection = s->on_tls ? "tls" : "plaintext";
	ev.service = s->service;
	ev.stream_id = s->open_id;
	ev.result = result;
	ev.bytes_in = s->bytes_in;
	ev.bytes_out = s->bytes_out;
	hook_emit(&ev);
}

static void
stream_opened(struct stream *s)
{
	struct link *l = s->link;

	s->link_id = l->id;
	s->open_id = s->id;
	s->on_tls = l->tls != NULL;
	snprintf(s->peer_node, sizeof(s->peer_node), "%s", l->peer.params.node);
	s->reported = 1;
	stream_report(s, HOOK_STREAM_OPENED, NULL);
}

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
void
stream_release(struct stream *s, int reset)
{
	struct timeval zero = { 0, 0 };

	if (s->freeing)
		return;
	s->freeing = 1;
	if (s->reported)
		stream_report(s, HOOK_STREAM_CLOSED, reset ? "reset" : "ok");
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
		int dns_err = bufferevent_socket_get_dns_error(bev);

		/* errno is stale when the name did not resolve. */
		if (dns_err != 0)
			log_warn("stream %u (service %s): cannot resolve the "
				 "backend's host name: %s", s->id, s->service,
				 evutil_gai_strerror(dns_err));
		else
			log_warn("stream %u (service %s): cannot connect to the "
				 "backend: %s", s->id, s->service,
				 err ? evutil_socket_error_to_string(err) :
				       "connection failed");
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

uint32_t
link_cb_open(void *ud, uint32_t id, const char *service, void **sud)
{
	struct link *l = ud;
	struct bufferevent *bev;
	struct stream *s;
	uint32_t code = MUX_C_REFUSED;

	bev = l->ops->on_stream(l->ud, l, service, &code);
	if (bev == NULL) {
		struct stream refused;

		memset(&refused, 0, sizeof(refused));
		refused.link = l;
		refused.id = id;
		snprintf(refused.service, sizeof(refused.service), "%s", service);
		stream_opened(&refused);
		stream_report(&refused, HOOK_STREAM_CLOSED, mux_code_str(code));
		return code;
	}
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
	stream_opened(s);
	log_debug("%s: stream %u opened by peer for service %s", link_who(l),
		  id, service);
	return 0;
}

/* Writes the payload straight to the socket when nothing waits ahead
 * of it, and returns the credit it used on the same turn; what the
 * socket does not take waits in the bufferevent (stream_out_cb returns
 * its credit as it drains). */
uint32_t
link_cb_data(void *ud, uint32_t id, void *sud, const uint8_t *p, size_t n)
{
	struct link *l = ud;
	struct stream *s = sud;
	evutil_socket_t fd = bufferevent_getfd(s->bev);
	ssize_t w;

	s->bytes_out += n;
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

void
link_cb_fin(void *ud, uint32_t id, void *sud)
{
	struct stream *s = sud;

	s->peer_fin = 1;
	stream_maybe_finish(s);
}

void
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
size_t
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
		s->bytes_in += (uint64_t)r;
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
		log_warn("%s: cannot open a stream for service %s: the %s's "
			 "stream limit is reached or it is draining the link",
			 link_who(l), service, l->cfg.dialer ? "relay" : "gateway");
		stream_discard(s);
		return -1;
	}
	s->id = id;
	s->count = count;
	if (count != NULL)
		(*count)++;
	stream_opened(s);
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

int
link_reverse(const struct link *l)
{
	return l != NULL && l->mux != NULL &&
	       policy_reverse(l->cfg.dialer, &l->mine, &l->peer.params);
}
