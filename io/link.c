/*
 * A link: its states, closing, the data path between the mux and the
 * socket, the link budget, and the socket and timer callbacks.
 */
#include "link_int.h"

/*
 * The states of a link and the changes between them; docs/PROTOCOL.md
 * ("Link state machine") has the same table, and test_link checks that they
 * agree.
 *
 *   CONNECTING  --connected, offer sent-->      NEGOTIATING
 *   CONNECTING  --connected, TLS first-->       HANDSHAKE or NOTIFYING
 *   NEGOTIATING --TLS agreed-->                 HANDSHAKE
 *   NEGOTIATING --a TLS ClientHello came first,
 *                 tls_first = allow-->          HANDSHAKE or NOTIFYING
 *   HANDSHAKE   --TLS first: handshake done-->  NEGOTIATING (inside TLS)
 *   NEGOTIATING --TLS agreed, a sink decides--> NOTIFYING
 *   NOTIFYING   --the sink let it go ahead-->   HANDSHAKE
 *   NEGOTIATING --plaintext agreed-->           BINDING
 *   HANDSHAKE   --handshake done-->             BINDING
 *   BINDING     --the peer's BIND matched-->    UP
 *   UP          --GOAWAY sent or received-->    DRAINING
 *   CONNECTING, NEGOTIATING, NOTIFYING, HANDSHAKE, BINDING, DRAINING
 *               --a last message to flush-->    CLOSING
 *   any state but DEAD --failure, or closed-->  DEAD
 *   CLOSING     --flushed, or linger over-->    DEAD
 *
 * NEGOTIATING with l->tls set is the negotiation inside TLS (TLS first).
 * The mux runs in BINDING, UP and DRAINING; streams are opened only in
 * UP.  A peer's GOAWAY in the record that carried its BIND takes BINDING
 * to UP first.
 */

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

static void link_destroy(struct link *l);
static void link_report_opened(struct link *l);
static void link_flush(struct link *l);
static void link_on_bound(struct link *l);
static void link_read_cb(struct bufferevent *bev, void *arg);
static void link_event_cb(struct bufferevent *bev, short what, void *arg);

static struct link_list link_all = TAILQ_HEAD_INITIALIZER(link_all);
static size_t link_n;
int link_stopping; /* link_close_all() runs: free at once */
int link_shutdown; /* the daemon is stopping (link_begin_shutdown) */
static uint64_t link_next_id = 1;

uint64_t
link_now_us(void)
{
	return hook_mono_us();
}

void
link_ms_to_tv(uint32_t ms, struct timeval *tv)
{
	tv->tv_sec = ms / 1000;
	tv->tv_usec = (suseconds_t)(ms % 1000) * 1000;
}

const char *
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

void
link_event_init(struct link *l, struct hook_event *ev, int type)
{
	memset(ev, 0, sizeof(*ev));
	ev->type = type;
	ev->link_id = l->id;
	ev->local = strcmp(l->local, "unknown") != 0 ? l->local : NULL;
	ev->peer = l->peer_addr;
	ev->peer_node = l->peer.params.node[0] ? l->peer.params.node : NULL;
	ev->transcript = l->transcript_hex[0] ? l->transcript_hex : NULL;
}

static void
link_cert_event(const struct tls_certinfo *ci, struct hook_cert *hc)
{
#define S(f) (ci->f[0] ? ci->f : NULL)
	hc->subject = S(subject);
	hc->issuer = S(issuer);
	hc->serial = S(serial);
	hc->sha256 = S(sha256);
	hc->not_before = S(not_before);
	hc->not_after = S(not_after);
	hc->key_type = S(key_type);
	hc->key_bits = ci->key_bits;
	hc->sig_alg = S(sig_alg);
#undef S
}

void
link_event_tls(struct link *l, struct hook_event *ev)
{
	struct tls_info *info = &l->tls_info;

	if (l->tls == NULL || info->protocol[0] == '\0')
		return;
	ev->protocol = info->protocol;
	ev->cipher = info->cipher[0] ? info->cipher : NULL;
	ev->group = info->group[0] ? info->group : NULL;
	ev->resumed = info->resumed;
	link_cert_event(&info->peer, &ev->peer_cert);
	link_cert_event(&info->local, &ev->local_cert);
}

void
link_report_refused(struct link *l, const char *by, uint16_t code,
		    const char *text)
{
	struct hook_event ev;

	l->refused = 1;
	l->refuse_code = code;
	link_event_init(l, &ev, HOOK_LINK_REFUSED);
	ev.stage = "negotiation";
	ev.by = by;
	ev.reason_code = code;
	ev.reason_name = neg_reason_name(code);
	ev.reason = text;
	hook_emit(&ev);
}

static void
link_report_opened(struct link *l)
{
	struct hook_event ev;

	link_event_init(l, &ev, HOOK_LINK_OPENED);
	ev.direction = l->cfg.dialer ? "out" : "in";
	hook_emit(&ev);
}

/* ---- states ---------------------------------------------------------- */

#define LS_BIT(s) (1u << (s))

static const unsigned link_next[LINK_STATES] = {
	[LS_CONNECTING] = LS_BIT(LS_NEGOTIATING) | LS_BIT(LS_NOTIFYING) |
			  LS_BIT(LS_HANDSHAKE) | LS_BIT(LS_CLOSING) |
			  LS_BIT(LS_DEAD),
	[LS_NEGOTIATING] = LS_BIT(LS_NOTIFYING) | LS_BIT(LS_HANDSHAKE) |
			   LS_BIT(LS_BINDING) | LS_BIT(LS_CLOSING) |
			   LS_BIT(LS_DEAD),
	[LS_NOTIFYING] = LS_BIT(LS_HANDSHAKE) | LS_BIT(LS_CLOSING) |
			 LS_BIT(LS_DEAD),
	[LS_HANDSHAKE] = LS_BIT(LS_NEGOTIATING) | LS_BIT(LS_BINDING) |
			 LS_BIT(LS_CLOSING) | LS_BIT(LS_DEAD),
	[LS_BINDING] = LS_BIT(LS_UP) | LS_BIT(LS_CLOSING) | LS_BIT(LS_DEAD),
	[LS_UP] = LS_BIT(LS_DRAINING) | LS_BIT(LS_DEAD),
	[LS_DRAINING] = LS_BIT(LS_CLOSING) | LS_BIT(LS_DEAD),
	[LS_CLOSING] = LS_BIT(LS_DEAD),
	[LS_DEAD] = 0,
};

static const char *const link_state_names[LINK_STATES] = {
	[LS_CONNECTING] = "CONNECTING",
	[LS_NEGOTIATING] = "NEGOTIATING",
	[LS_NOTIFYING] = "NOTIFYING",
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
void
link_set_state(struct link *l, enum link_state to)
{
	if ((to == LS_DEAD || to == LS_CLOSING) && l->state != LS_DEAD &&
	    l->state != LS_CLOSING)
		l->last_state = l->state;
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

/* Records why the link ends (for link_closed) and logs it once. */
static void
link_set_reason(struct link *l, int level, const char *fmt, va_list ap)
{
	vsnprintf(l->reason, sizeof(l->reason), fmt, ap);
	log_msg(level, "%s: %s", link_who(l), l->reason);
}

/* Logs the reason once and schedules the link's destruction. */
void
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

/* The output is flushed, the peer closed, or the linger time is over.
 * A drained link sends its FIN at the first of these and waits for one
 * of the others: closing with the peer's last frames unread would reset
 * the connection under data the peer has not read yet. */
static void
link_linger_done(struct link *l)
{
	if (l->state != LS_CLOSING)
		return;
	if (l->close_gently && !l->fin_sent &&
	    evbuffer_get_length(bufferevent_get_output(l->bev)) == 0) {
		l->fin_sent = 1;
		shutdown(bufferevent_getfd(l->bev), SHUT_WR);
		link_read_enable(l, 1);
		return;
	}
	link_set_state(l, LS_DEAD);
	event_active(l->free_ev, 0, 0);
}

void
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
	link_ms_to_tv(LINK_CLOSE_LINGER_MS, &tv);
	if (evbuffer_get_length(bufferevent_get_output(l->bev)) == 0) {
		link_linger_done(l);
		if (l->state == LS_CLOSING)
			evtimer_add(l->deadline_ev, &tv);
		return;
	}
	bufferevent_setwatermark(l->bev, EV_WRITE, 0, 0);
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
link_begin_shutdown(void)
{
	struct link *l, *next;

	link_shutdown = 1;
	/* A link not yet up would only be drained once up: end it now. */
	for (l = TAILQ_FIRST(&link_all); l != NULL; l = next) {
		next = TAILQ_NEXT(l, entry);
		if (l->state < LS_UP)
			link_fail(l, LOG_INFO, "this daemon is stopping; the "
				  "link was not up yet");
	}
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
	/* One that has not written all it received is cut short: reset. */
	while ((s = TAILQ_FIRST(&stream_orphans)) != NULL)
		stream_release(s, evbuffer_get_length(
			bufferevent_get_output(s->bev)) != 0);
}

/* link_closed's outcome: what the link became, from what it did. */
static const char *
link_outcome(const struct link *l)
{
	if (l->bound)
		return l->tls != NULL ? "tls" : "plaintext";
	if (l->refused)
		return "refused";
	if (l->hs_failed || l->tls != NULL || l->gate != NULL ||
	    l->last_state == LS_NOTIFYING || l->last_state == LS_BINDING)
		return "failed";
	if (!l->connected)
		return "connect_failed";
	return "aborted";
}

/* Every handshake_pending gets its answer: one the paths above did not
 * give is given here, with the reason the link ends. */
static void
link_report_unanswered(struct link *l)
{
	struct hook_event ev;

	if (!l->hs_pending)
		return;
	l->hs_pending = 0;
	l->hs_failed = 1;
	link_event_init(l, &ev, HOOK_HANDSHAKE_FAILED);
	ev.stage = link_stopping || link_shutdown ? "shutdown" :
		l->fail_stage ? l->fail_stage : "transport";
	ev.reason = l->reason[0] ? l->reason : "closed";
	hook_emit(&ev);
}

static void
link_destroy(struct link *l)
{
	struct hook_event ev;
	char start[40];

	link_report_unanswered(l);
	link_event_init(l, &ev, HOOK_LINK_CLOSED);
	ev.reason = l->reason[0] ? l->reason : "closed";
	ev.outcome = link_outcome(l);
	ev.protection = !l->bound ? "none" : l->tls ? "tls" : "plaintext";
	ev.last_state = link_state_name(l->last_state);
	hook_rfc3339(l->t_open_wall_us, start, sizeof(start));
	ev.start_ts = start;
	if (l->refused) {
		ev.reason_code = l->refuse_code;
		ev.reason_name = neg_reason_name(l->refuse_code);
	}
	if (l->bound)
		link_event_tls(l, &ev);
	ev.bytes_in = l->bytes_in;
	ev.bytes_out = l->bytes_out;
	ev.streams = l->mux ? mux_streams_total(l->mux) : 0;
	ev.duration_ms = (link_now_us() - l->t_start_us) / 1000;
	hook_emit(&ev);
	hook_gate_cancel(l->gate);
	l->gate = NULL;
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
	link_kick(l);
}

static void
link_cb_pong(void *ud, uint64_t opaque)
{
	struct link *l = ud;

	log_debug("%s: keepalive answered in %llu us", link_who(l),
		  (unsigned long long)(link_now_us() - opaque));
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
	f->probe_us[i] = link_now_us();
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
	uint64_t now = link_now_us(), sent_us = 0;

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
void
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
int
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
	/* Draining, the peer's GOAWAY in (no OPEN can still be on its way)
	 * and no stream left: the last frames, then close. */
	int last = l->state == LS_DRAINING && mux_stream_count(l->mux) == 0 &&
		   mux_goaway_received(l->mux);
	size_t n;

	/* The clock is read only when the mode may change: an interactive
	 * burst was served, or interactive mode may have timed out. */
	if (l->flow.budget != 0 &&
	    (mux_sparse_served(l->mux) != l->flow.sparse_seen ||
	     l->flow.budget <= FLOW_LAT_MAX))
		link_flow_update(l, link_now_us());
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
		l->close_gently = 1;
		link_close_after_flush(l, LOG_INFO, "drained: every stream "
				       "finished after GOAWAY");
	}
}

static void
link_keepalive_cb(evutil_socket_t fd, short what, void *arg)
{
	struct link *l = arg;
	uint64_t now = link_now_us();

	if (!link_mux_on(l))
		return;
	if (now - l->last_rx_us >= (uint64_t)l->cfg.keepalive_timeout_ms * 1000) {
		l->fail_stage = "timeout";
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

static void
link_mux_failed(struct link *l)
{
	enum mux_err e = mux_error(l->mux);

	l->fail_stage = "bind";
	if (e == MUX_ERR_BIND_MISMATCH) {
		/* Someone changed the plaintext negotiation in transit. */
		if (l->tls != NULL)
			link_handshake_failed(l, "bind", "transcript mismatch: the peer "
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
	l->bound = 1;
	evtimer_del(l->deadline_ev);
	if (l->tls != NULL) {
		l->hs_pending = 0;
		link_event_init(l, &ev, HOOK_HANDSHAKE_DONE);
		link_event_tls(l, &ev);
		ev.duration_ms = (link_now_us() - l->t_hs_us) / 1000;
		hook_emit(&ev);
		log_info("%s: TLS up: %s %s%s%s, peer certificate %s",
			 link_who(l), info->protocol, info->cipher,
			 info->group[0] ? " " : "", info->group,
			 info->peer.subject[0] ? info->peer.subject : "none");
	}
	if (l->ops->on_up != NULL)
		l->ops->on_up(l->ud, l);
}

void
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
					link_handshake_failed(l, "transport",
							      why);
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

int
link_start_mux(struct link *l)
{
	struct mux_settings ms;
	struct mux_limits lim;

	policy_mux_limits(&l->mine, &l->peer.params, &lim);
	memset(&ms, 0, sizeof(ms));
	ms.dialer = l->cfg.dialer;
	ms.max_frame = lim.max_frame;
	ms.local_window = lim.local_window;
	ms.peer_window = lim.peer_window;
	ms.local_max_streams = lim.local_max_streams;
	ms.peer_max_streams = lim.peer_max_streams;
	ms.link_ack = lim.link_ack;
	ms.reverse = policy_reverse(l->cfg.dialer, &l->mine, &l->peer.params);
	ms.sparse_quantum = MUX_SPARSE_QUANTUM;
	memcpy(ms.bind, l->transcript, sizeof(ms.bind));
	/* Each mux_send() fills at most one TLS record's worth. */
	l->sendbuf = malloc(LINK_SEND_CHUNK);
	l->mux = mux_new(&ms, &link_mux_cb, l);
	if (l->sendbuf == NULL || l->mux == NULL ||
	    iobuf_reserve(&l->stage, LINK_STAGE_CAP) < 0) {
		l->fail_stage = "resources";
		link_fail(l, LOG_ERR, "out of memory starting the stream mux");
		return -1;
	}
	if (lim.link_ack)
		link_flow_update(l, link_now_us());
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
		link_ms_to_tv(l->keepalive_ms < l->cfg.keepalive_timeout_ms / 4 ?
			 l->keepalive_ms : l->cfg.keepalive_timeout_ms / 4, &tv);
		l->last_ping_us = link_now_us();
		evtimer_add(l->ka_ev, &tv);
	}
	link_flush(l);
	return 0;
}

/* ---- reading the link socket ------------------------------------------ */

void
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
	/* During negotiation a peer can make us hold at most 8 KiB; inside
	 * TLS (TLS first) a record may be longer, and the plaintext read is
	 * bounded by link_neg_input(). */
	size_t high = l->state == LS_NEGOTIATING && l->tls == NULL ?
		2 * NEG_MAX_LEN : LINK_IN_HIGH;
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
	if (l->first_rx < 0)
		l->first_rx = iobuf_data(&l->in)[iobuf_len(&l->in) - (size_t)r];
	l->bytes_in += (uint64_t)r;
	if (iobuf_len(&l->in) >= high)
		link_read_enable(l, 0);
	link_read_cb(l->bev, l);
}

/* Creates the read event for the connected socket and starts reading. */
int
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

	l->last_rx_us = link_now_us();
	switch (l->state) {
	case LS_NEGOTIATING:
		link_neg_input(l);
		break;
	case LS_HANDSHAKE:
		link_handshake_step(l);
		break;
	case LS_NOTIFYING:
		break;	/* the handshake's first bytes wait in l->in */
	case LS_BINDING:
	case LS_UP:
	case LS_DRAINING:
		link_up_input(l);
		break;
	default:
		iobuf_drain(&l->in, iobuf_len(&l->in));
		if (l->state == LS_CLOSING && l->fin_sent)
			link_read_enable(l, 1);
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
		l->connected = 1;
		net_nodelay(bufferevent_getfd(bev));
		net_notsent_lowat(bufferevent_getfd(bev), LINK_NOTSENT_LOWAT);
		net_local(bufferevent_getfd(bev), l->local, sizeof(l->local));
		if (l->tls_first) {
			log_info("%s: connected; starting TLS at once "
				 "(tls_first), our offer follows inside it",
				 link_who(l));
			if (link_read_start(l) < 0) {
				link_fail(l, LOG_ERR, "out of memory");
				return;
			}
			link_start_tls(l);
			return;
		}
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
		if (l->state == LS_NEGOTIATING && l->tls != NULL) {
			tls_conn_set_eof(l->tls);
			link_neg_input(l);	/* a last message may be whole */
			if (l->state == LS_NEGOTIATING)
				link_handshake_failed(l, "transport", l->cfg.dialer ?
					"the relay closed the link inside TLS "
					"before its decision (see its log: it "
					"may not accept our certificate)" :
					"the peer closed the link inside TLS "
					"before its offer was complete");
		} else if (l->state == LS_NEGOTIATING) {
			neg_decoder_finish(l->dec);
			link_fail(l, LOG_WARN, "peer closed the connection during "
				  "negotiation after %zu bytes", l->rx_neg_len);
		} else if (l->state == LS_NOTIFYING) {
			link_handshake_failed(l, "transport", "the peer closed "
					      "the connection while the "
					      "notification hook ran");
		} else if (l->state == LS_HANDSHAKE) {
			const char *why = link_tls_first_unanswered(l);

			tls_conn_set_eof(l->tls);
			link_handshake_failed(l, "transport", why ? why :
					      "the peer closed the connection "
					      "during the TLS handshake");
		} else if (link_mux_on(l)) {
			if (l->tls != NULL)
				tls_conn_set_eof(l->tls);
			link_up_input(l);
			/* Reading the last bytes may have ended the link. */
			if (!link_mux_on(l))
				return;
			if (mux_recv_eof(l->mux) < 0)
				link_fail(l, LOG_WARN, "peer closed the link in "
					  "the middle of a frame");
			else
				link_fail(l, LOG_INFO, "peer closed the link");
		}
		return;
	}
	if (l->state == LS_HANDSHAKE && link_tls_first_unanswered(l) != NULL) {
		link_handshake_failed(l, "transport",
				      link_tls_first_unanswered(l));
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
	case LS_NEGOTIATING:
		if (l->tls != NULL) {
			link_handshake_failed(l, "timeout", "the negotiation "
					      "inside TLS (TLS first) did not "
					      "complete within handshake_timeout");
			break;
		}
		/* FALLTHROUGH */
	case LS_CONNECTING:
		link_fail(l, LOG_WARN, "negotiation not complete after %u ms "
			  "(negotiation_timeout); %zu bytes received",
			  l->cfg.negotiation_timeout_ms, l->rx_neg_len);
		break;
	case LS_NOTIFYING:
		link_handshake_failed(l, "timeout", "the notification hook did "
				      "not answer within handshake_timeout");
		break;
	case LS_HANDSHAKE:
		link_handshake_failed(l, "timeout", "TLS handshake not complete "
				      "within handshake_timeout");
		break;
	case LS_BINDING:
		link_handshake_failed(l, "timeout", "the peer did not confirm "
				      "the session within handshake_timeout");
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
	l->first_rx = -1;
	/* A dialler that starts TLS at once has no plaintext outcome left
	 * to offer: it requires TLS (an acceptor decides in link_on_offer). */
	if (cfg->dialer && cfg->tls_first) {
		l->tls_first = 1;
		if (l->mine.tls_mode != TLS_MODE_OFF)
			l->mine.tls_mode = TLS_MODE_REQUIRE;
	}
	l->t_start_us = l->last_rx_us = link_now_us();
	l->t_open_wall_us = hook_wall_us();
	l->last_state = cfg->dialer ? LS_CONNECTING : LS_NEGOTIATING;
	l->connected = !cfg->dialer;
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
	link_report_opened(l);
	if (cfg->dialer) {
		link_ms_to_tv(cfg->negotiation_timeout_ms, &tv);
		evtimer_add(l->deadline_ev, &tv);
		if (bufferevent_socket_connect(l->bev, sa, salen) < 0) {
			/* The event callback reports the reason. */
			log_debug("%s: connect failed at once", link_who(l));
		}
	} else {
		link_ms_to_tv(cfg->negotiation_timeout_ms, &tv);
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
	       l->tls_info.peer.subject[0] != '\0';
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

size_t
link_count_by_state(enum link_state st)
{
	struct link *l;
	size_t n = 0;

	TAILQ_FOREACH(l, &link_all, entry)
		n += l->state == st;
	return n;
}

void
link_bytes_each(void (*fn)(void *arg, uint64_t id, uint64_t in,
			   uint64_t out), void *arg)
{
	struct link *l;

	TAILQ_FOREACH(l, &link_all, entry)
		fn(arg, l->id, l->bytes_in, l->bytes_out);
}

size_t
link_streams_open(void)
{
	const struct link *l;
	size_t n = 0;

	TAILQ_FOREACH(l, &link_all, entry)
		if (l->mux != NULL)
			n += mux_stream_count(l->mux);
	return n;
}

size_t
link_streams_flushing(void)
{
	const struct stream *s;
	size_t n = 0;

	TAILQ_FOREACH(s, &stream_orphans, entry)
		n++;
	return n;
}

const char *
link_reason(const struct link *l)
{
	return l->reason;
}

size_t
link_stream_count(const struct link *l)
{
	return l->mux != NULL ? mux_stream_count(l->mux) : 0;
}
