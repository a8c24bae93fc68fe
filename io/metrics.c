/*
 * The metrics endpoint: counters kept by a hook observer, and the HTTP
 * server that prints them.
 */
#define _GNU_SOURCE /* strptime, timegm */
#include "metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "config.h"
#include "hook.h"
#include "hook_sink.h"
#include "link.h"
#include "log.h"
#include "net.h"
#include "tlsio.h"

#define METRICS_LABEL_LEN 128  /* longer values are cut */
#define METRICS_REFUSALS 64    /* distinct (stage, by, reason) triples */
#define METRICS_PROTOCOLS 8    /* distinct TLS versions */

static const double metrics_buckets[] = {
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};
#define NBUCKETS (sizeof(metrics_buckets) / sizeof(metrics_buckets[0]))

static const char *const metrics_outcomes[] = {
	"tls", "plaintext", "refused", "failed", "aborted", "connect_failed",
	"other",
};
#define NOUTCOMES (sizeof(metrics_outcomes) / sizeof(metrics_outcomes[0]))

static const char *const metrics_stages[] = {
	"tls", "verify", "bind", "transport", "timeout", "veto", "shutdown",
	"resources", "other",
};
#define NSTAGES (sizeof(metrics_stages) / sizeof(metrics_stages[0]))

/* A bounded set of label values; the last slot is "_other". */
struct metrics_labels {
	char name[METRICS_MAX_LABELS + 1][METRICS_LABEL_LEN];
	size_t n;
};

struct metrics_service {
	uint64_t open, opened[2], refused; /* opened: [0] plaintext, [1] tls */
};

struct metrics_refusal {
	char stage[16], by[8], reason[48];
	uint64_t n;
};

static struct {
	int registered;
	char role[16], node[CFG_NAME_MAX + 1];
	uint64_t start_us;
	uint64_t events[HOOK_TYPES];
	uint64_t opened[2];            /* in, out */
	uint64_t closed[NOUTCOMES];
	uint64_t bytes_in, bytes_out;  /* of closed links */
	struct metrics_refusal refusals[METRICS_REFUSALS + 1];
	size_t nrefusals;
	char protocols[METRICS_PROTOCOLS + 1][16];
	uint64_t hs_done[METRICS_PROTOCOLS + 1];
	size_t nprotocols;
	uint64_t hs_failed[NSTAGES];
	uint64_t hist[NBUCKETS + 1];   /* non-cumulative; last is +Inf */
	uint64_t hist_count, hist_ms;
	struct metrics_labels services, peers;
	struct metrics_service svc[METRICS_MAX_LABELS + 1];
	int64_t peer_not_after[METRICS_MAX_LABELS + 1];
	int64_t local_not_after;
	uint64_t reloads_ok, reloads_rejected;
} M;

/* ---- counting ------------------------------------------------------------ */

/* The slot of value v in set l, added when new; "_other" once full. */
static size_t
metrics_label(struct metrics_labels *l, const char *v)
{
	size_t i;

	if (v == NULL || *v == '\0')
		v = "_none";
	for (i = 0; i < l->n; i++)
		if (strncmp(l->name[i], v, METRICS_LABEL_LEN - 1) == 0)
			return i;
	if (l->n < METRICS_MAX_LABELS) {
		snprintf(l->name[l->n], METRICS_LABEL_LEN, "%s", v);
		return l->n++;
	}
	snprintf(l->name[METRICS_MAX_LABELS], METRICS_LABEL_LEN, "_other");
	return METRICS_MAX_LABELS;
}

static size_t
metrics_pick(const char *const *names, size_t n, const char *v)
{
	size_t i;

	for (i = 0; v != NULL && i + 1 < n; i++)
		if (strcmp(names[i], v) == 0)
			return i;
	return n - 1;
}

/* Seconds since the epoch of an RFC 3339 UTC time, or -1. */
static int64_t
metrics_time(const char *s)
{
	struct tm tm;
	char *end;

	if (s == NULL)
		return -1;
	memset(&tm, 0, sizeof(tm));
	end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (end == NULL)
		return -1;
	return (int64_t)timegm(&tm);
}

static void
metrics_refused(const struct hook_event *ev)
{
	const char *stage = ev->stage ? ev->stage : "unknown";
	const char *by = ev->by ? ev->by : "local";
	const char *reason = ev->reason_name ? ev->reason_name : "unknown";
	struct metrics_refusal *r;
	size_t i;

	for (i = 0; i < M.nrefusals; i++) {
		r = &M.refusals[i];
		if (strcmp(r->stage, stage) == 0 && strcmp(r->by, by) == 0 &&
		    strncmp(r->reason, reason, sizeof(r->reason) - 1) == 0)
			break;
	}
	if (i == M.nrefusals) {
		if (M.nrefusals < METRICS_REFUSALS) {
			M.nrefusals++;
		} else {
			i = METRICS_REFUSALS;
			reason = "_other";
		}
		r = &M.refusals[i];
		snprintf(r->stage, sizeof(r->stage), "%s", stage);
		snprintf(r->by, sizeof(r->by), "%s", by);
		snprintf(r->reason, sizeof(r->reason), "%s", reason);
	}
	/* The TCP stage folds refusals into the next event it reports. */
	M.refusals[i].n += 1 + ev->suppressed;
}

static void
metrics_handshake_done(const struct hook_event *ev)
{
	const char *proto = ev->protocol ? ev->protocol : "unknown";
	int64_t t;
	size_t i;

	for (i = 0; i < M.nprotocols; i++)
		if (strcmp(M.protocols[i], proto) == 0)
			break;
	if (i == M.nprotocols) {
		if (M.nprotocols < METRICS_PROTOCOLS)
			M.nprotocols++;
		else
			i = METRICS_PROTOCOLS, proto = "_other";
		snprintf(M.protocols[i], sizeof(M.protocols[i]), "%s", proto);
	}
	M.hs_done[i]++;
	for (i = 0; i < NBUCKETS; i++)
		if ((double)ev->duration_ms / 1000.0 <= metrics_buckets[i])
			break;
	M.hist[i]++;
	M.hist_count++;
	M.hist_ms += ev->duration_ms;
	if ((t = metrics_time(ev->peer_cert.not_after)) >= 0) {
		i = metrics_label(&M.peers, ev->peer_node);
		/* Overflowed peers share a slot: keep the soonest expiry. */
		if (i < METRICS_MAX_LABELS || M.peer_not_after[i] == 0 ||
		    t < M.peer_not_after[i])
			M.peer_not_after[i] = t;
	}
	if ((t = metrics_time(ev->local_cert.not_after)) >= 0)
		M.local_not_after = t;
}

static void
metrics_stream(const struct hook_event *ev)
{
	struct metrics_service *s = &M.svc[metrics_label(&M.services,
							 ev->service)];
	int tls = ev->protection != NULL && strcmp(ev->protection, "tls") == 0;

	if (ev->type == HOOK_STREAM_OPENED) {
		s->open++;
		s->opened[tls]++;
		return;
	}
	if (s->open > 0)
		s->open--;
	/* A stream this side refused is reported opened and then closed
	 * with the refusal's code in the same turn: it never was open. */
	if (ev->result != NULL && strcmp(ev->result, "ok") != 0 &&
	    strcmp(ev->result, "reset") != 0) {
		if (s->opened[tls] > 0)
			s->opened[tls]--;
		s->refused++;
	}
}

static int
metrics_observe(const struct hook_event *ev, void *arg)
{
	(void)arg;
	if (ev->type < 0 || ev->type >= HOOK_TYPES)
		return 0;
	M.events[ev->type]++;
	switch (ev->type) {
	case HOOK_LINK_OPENED:
		M.opened[ev->direction != NULL &&
			 strcmp(ev->direction, "out") == 0]++;
		break;
	case HOOK_LINK_CLOSED:
		M.closed[metrics_pick(metrics_outcomes, NOUTCOMES,
				      ev->outcome)]++;
		M.bytes_in += ev->bytes_in;
		M.bytes_out += ev->bytes_out;
		break;
	case HOOK_LINK_REFUSED:
		metrics_refused(ev);
		break;
	case HOOK_HANDSHAKE_DONE:
		metrics_handshake_done(ev);
		break;
	case HOOK_HANDSHAKE_FAILED:
		M.hs_failed[metrics_pick(metrics_stages, NSTAGES, ev->stage)]++;
		break;
	case HOOK_STREAM_OPENED:
	case HOOK_STREAM_CLOSED:
		metrics_stream(ev);
		break;
	case HOOK_DAEMON_RELOADED:
		if (ev->result != NULL && strcmp(ev->result, "ok") == 0)
			M.reloads_ok++;
		else
			M.reloads_rejected++;
		break;
	default:
		break;
	}
	return 0;
}

/* ---- the exposition text ----------------------------------------------- */

/* Appends v with \, " and newline escaped, as label values need. */
static void
metrics_esc(struct evbuffer *b, const char *v)
{
	for (; *v != '\0'; v++) {
		if (*v == '\\' || *v == '"')
			evbuffer_add_printf(b, "\\%c", *v);
		else if (*v == '\n')
			evbuffer_add(b, "\\n", 2);
		else
			evbuffer_add(b, v, 1);
	}
}

static void
metrics_head(struct evbuffer *b, const char *name, const char *type,
	     const char *help)
{
	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name,
			    type);
}

/* name{k1="v1"[,k2="v2"]} value */
static void
metrics_line(struct evbuffer *b, const char *name, const char *k1,
	     const char *v1, const char *k2, const char *v2, uint64_t val)
{
	evbuffer_add_printf(b, "%s", name);
	if (k1 != NULL) {
		evbuffer_add_printf(b, "{%s=\"", k1);
		metrics_esc(b, v1);
		if (k2 != NULL) {
			evbuffer_add_printf(b, "\",%s=\"", k2);
			metrics_esc(b, v2);
		}
		evbuffer_add(b, "\"}", 2);
	}
	evbuffer_add_printf(b, " %" PRIu64 "\n", val);
}

static void
metrics_live_bytes(void *arg, uint64_t id, uint64_t in, uint64_t out)
{
	uint64_t *sum = arg;

	(void)id;
	sum[0] += in;
	sum[1] += out;
}

static void
metrics_format_links(struct evbuffer *b)
{
	static const enum link_state states[] = {
		LS_CONNECTING, LS_NEGOTIATING, LS_NOTIFYING, LS_HANDSHAKE,
		LS_BINDING, LS_UP, LS_DRAINING, LS_CLOSING,
	};
	uint64_t live[2] = { 0, 0 };
	char state[16];
	size_t i, j;

	metrics_head(b, "tlsplex_links_open", "gauge",
		     "Links open now, by state.");
	for (i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
		const char *n = link_state_name(states[i]);

		for (j = 0; n[j] != '\0' && j + 1 < sizeof(state); j++)
			state[j] = (char)(n[j] | 0x20);
		state[j] = '\0';
		metrics_line(b, "tlsplex_links_open", "state", state, NULL, NULL,
			     link_count_by_state(states[i]));
	}
	metrics_head(b, "tlsplex_links_opened_total", "counter",
		     "Links opened: accepted (in) or dialled (out).");
	metrics_line(b, "tlsplex_links_opened_total", "direction", "in", NULL,
		     NULL, M.opened[0]);
	metrics_line(b, "tlsplex_links_opened_total", "direction", "out", NULL,
		     NULL, M.opened[1]);
	metrics_head(b, "tlsplex_links_closed_total", "counter",
		     "Links closed, by link_closed outcome.");
	for (i = 0; i < NOUTCOMES; i++)
		metrics_line(b, "tlsplex_links_closed_total", "outcome",
			     metrics_outcomes[i], NULL, NULL, M.closed[i]);
	metrics_head(b, "tlsplex_links_refused_total", "counter",
		     "Connections and links refused, by stage, side and "
		     "reason.");
	for (i = 0; i < M.nrefusals + (M.refusals[METRICS_REFUSALS].n > 0);
	     i++) {
		const struct metrics_refusal *r =
			&M.refusals[i < M.nrefusals ? i : METRICS_REFUSALS];

		evbuffer_add_printf(b, "tlsplex_links_refused_total{stage=\"%s"
				    "\",by=\"%s\",reason=\"", r->stage, r->by);
		metrics_esc(b, r->reason);
		evbuffer_add_printf(b, "\"} %" PRIu64 "\n", r->n);
	}
	link_bytes_each(metrics_live_bytes, live);
	metrics_head(b, "tlsplex_link_bytes_total", "counter",
		     "Bytes on link sockets (negotiation, TLS and framing "
		     "included), closed and open links.");
	metrics_line(b, "tlsplex_link_bytes_total", "direction", "in", NULL,
		     NULL, M.bytes_in + live[0]);
	metrics_line(b, "tlsplex_link_bytes_total", "direction", "out", NULL,
		     NULL, M.bytes_out + live[1]);
}

static void
metrics_format_handshakes(struct evbuffer *b)
{
	uint64_t cum = 0, failed = 0;
	size_t i;

	for (i = 0; i < NSTAGES; i++)
		failed += M.hs_failed[i];
	metrics_head(b, "tlsplex_handshakes_total", "counter",
		     "TLS handshakes answered: done (by TLS version) or failed.");
	for (i = 0; i < M.nprotocols + (M.hs_done[METRICS_PROTOCOLS] > 0); i++) {
		size_t k = i < M.nprotocols ? i : METRICS_PROTOCOLS;

		metrics_line(b, "tlsplex_handshakes_total", "result", "done",
			     "protocol", M.protocols[k], M.hs_done[k]);
	}
	metrics_line(b, "tlsplex_handshakes_total", "result", "failed",
		     "protocol", "unknown", failed);
	metrics_head(b, "tlsplex_handshake_failures_total", "counter",
		     "Failed handshakes by the stage they failed in.");
	for (i = 0; i < NSTAGES; i++)
		metrics_line(b, "tlsplex_handshake_failures_total", "stage",
			     metrics_stages[i], NULL, NULL, M.hs_failed[i]);
	metrics_head(b, "tlsplex_handshake_duration_seconds", "histogram",
		     "Duration of successful TLS handshakes (to the peer's "
		     "BIND).");
	for (i = 0; i <= NBUCKETS; i++) {
		cum += M.hist[i];
		if (i < NBUCKETS)
			evbuffer_add_printf(b, "tlsplex_handshake_duration_seconds"
					    "_bucket{le=\"%g\"} %" PRIu64 "\n",
					    metrics_buckets[i], cum);
		else
			evbuffer_add_printf(b, "tlsplex_handshake_duration_seconds"
					    "_bucket{le=\"+Inf\"} %" PRIu64 "\n",
					    cum);
	}
	evbuffer_add_printf(b, "tlsplex_handshake_duration_seconds_sum %.3f\n"
			    "tlsplex_handshake_duration_seconds_count %" PRIu64
			    "\n", (double)M.hist_ms / 1000.0, M.hist_count);
}

static void
metrics_format_streams(struct evbuffer *b)
{
	size_t i, n = M.services.n + (M.services.name[METRICS_MAX_LABELS][0] != 0);

	metrics_head(b, "tlsplex_streams_open", "gauge",
		     "Streams open now, by service.");
	for (i = 0; i < n; i++) {
		size_t k = i < M.services.n ? i : METRICS_MAX_LABELS;

		metrics_line(b, "tlsplex_streams_open", "service",
			     M.services.name[k], NULL, NULL, M.svc[k].open);
	}
	metrics_head(b, "tlsplex_streams_opened_total", "counter",
		     "Streams opened, by service and the link's protection.");
	for (i = 0; i < n; i++) {
		size_t k = i < M.services.n ? i : METRICS_MAX_LABELS;

		metrics_line(b, "tlsplex_streams_opened_total", "service",
			     M.services.name[k], "protection", "plaintext",
			     M.svc[k].opened[0]);
		metrics_line(b, "tlsplex_streams_opened_total", "service",
			     M.services.name[k], "protection", "tls",
			     M.svc[k].opened[1]);
	}
	metrics_head(b, "tlsplex_streams_refused_total", "counter",
		     "Streams this daemon refused, by service.");
	for (i = 0; i < n; i++) {
		size_t k = i < M.services.n ? i : METRICS_MAX_LABELS;

		metrics_line(b, "tlsplex_streams_refused_total", "service",
			     M.services.name[k], NULL, NULL, M.svc[k].refused);
	}
}

static void
metrics_format_hook(struct evbuffer *b)
{
	struct hook_sink_stats st;
	const char *name, *kind;
	int i;

	metrics_head(b, "tlsplex_hook_events_total", "counter",
		     "Hook events emitted, by event.");
	for (i = 0; i < HOOK_TYPES; i++)
		metrics_line(b, "tlsplex_hook_events_total", "event",
			     hook_type_str(i), NULL, NULL, M.events[i]);
	metrics_head(b, "tlsplex_hook_sink_errors_total", "counter",
		     "Events a sink failed to deliver (since it was opened).");
	for (i = 0; hook_sink_stats(i, &name, &kind, &st) == 0; i++)
		metrics_line(b, "tlsplex_hook_sink_errors_total", "sink", name,
			     NULL, NULL, st.errors);
	metrics_head(b, "tlsplex_hook_sink_dropped_total", "counter",
		     "Events a sink dropped because its receiver was not "
		     "ready (since it was opened).");
	for (i = 0; hook_sink_stats(i, &name, &kind, &st) == 0; i++)
		metrics_line(b, "tlsplex_hook_sink_dropped_total", "sink", name,
			     NULL, NULL, st.dropped);
}

int
metrics_format(struct evbuffer *b)
{
	size_t i, n;

	metrics_head(b, "tlsplex_build_info", "gauge",
		     "This daemon: version, TLS library, role and node.");
	evbuffer_add_printf(b, "tlsplex_build_info{version=\"%s\","
			    "tls_library=\"", TLSPLEX_VERSION);
	metrics_esc(b, tls_library_version());
	evbuffer_add_printf(b, "\",role=\"%s\",node=\"", M.role);
	metrics_esc(b, M.node);
	evbuffer_add(b, "\"} 1\n", 5);
	metrics_head(b, "tlsplex_start_time_seconds", "gauge",
		     "When the daemon started, seconds since the epoch.");
	evbuffer_add_printf(b, "tlsplex_start_time_seconds %.3f\n",
			    (double)M.start_us / 1e6);
	metrics_format_links(b);
	metrics_format_handshakes(b);
	metrics_format_streams(b);
	metrics_head(b, "tlsplex_peer_cert_not_after_timestamp_seconds",
		     "gauge", "notAfter of the certificate each peer presented "
		     "last, seconds since the epoch.");
	n = M.peers.n + (M.peers.name[METRICS_MAX_LABELS][0] != 0);
	for (i = 0; i < n; i++) {
		size_t k = i < M.peers.n ? i : METRICS_MAX_LABELS;

		metrics_line(b, "tlsplex_peer_cert_not_after_timestamp_seconds",
			     "peer_node", M.peers.name[k], NULL, NULL,
			     (uint64_t)M.peer_not_after[k]);
	}
	if (M.local_not_after > 0) {
		metrics_head(b, "tlsplex_local_cert_not_after_timestamp_seconds",
			     "gauge", "notAfter of this daemon's certificate, "
			     "seconds since the epoch.");
		metrics_line(b, "tlsplex_local_cert_not_after_timestamp_seconds",
			     NULL, NULL, NULL, NULL, (uint64_t)M.local_not_after);
	}
	metrics_format_hook(b);
	metrics_head(b, "tlsplex_config_reloads_total", "counter",
		     "SIGHUP reloads, applied (ok) or rejected.");
	metrics_line(b, "tlsplex_config_reloads_total", "result", "ok", NULL,
		     NULL, M.reloads_ok);
	metrics_line(b, "tlsplex_config_reloads_total", "result", "rejected",
		     NULL, NULL, M.reloads_rejected);
	return 0;
}

/* ---- the HTTP server ----------------------------------------------------- */

struct scrape {
	TAILQ_ENTRY(scrape) entry;
	struct bufferevent *bev;
	struct event *deadline;
	char who[NET_ADDRSTR_MAX];
	int answered;
};
TAILQ_HEAD(scrape_list, scrape);

static struct {
	struct event_base *base;
	struct evconnlistener *lis;
	char listen[CFG_ADDR_MAX];
	struct cfg_acl allow;
	struct scrape_list scrapes;
	size_t nscrapes;
	time_t warned;              /* the second of the last warning */
} S = { .scrapes = TAILQ_HEAD_INITIALIZER(S.scrapes) };

/* A warning about a scraper, at most one a second: whoever reaches the
 * port must not fill the log. */
static void
metrics_warn(const char *who, const char *what)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	if (ts.tv_sec == S.warned)
		return;
	S.warned = ts.tv_sec;
	log_warn("metrics endpoint %s: %s: %s", S.listen, who, what);
}

static void
scrape_free(struct scrape *s)
{
	TAILQ_REMOVE(&S.scrapes, s, entry);
	S.nscrapes--;
	event_free(s->deadline);
	bufferevent_free(s->bev);
	free(s);
}

static void
scrape_written_cb(struct bufferevent *bev, void *arg)
{
	struct scrape *s = arg;

	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
		shutdown(bufferevent_getfd(bev), SHUT_WR);
		scrape_free(s);
	}
}

/* Queues a whole answer; the scrape ends once it is written. */
static void
scrape_answer(struct scrape *s, const char *status, const char *extra,
	      struct evbuffer *body)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	struct evbuffer *text = body;

	s->answered = 1;
	bufferevent_disable(s->bev, EV_READ);
	evbuffer_drain(bufferevent_get_input(s->bev),
		       evbuffer_get_length(bufferevent_get_input(s->bev)));
	if (text == NULL && (text = evbuffer_new()) != NULL)
		evbuffer_add_printf(text, "%s\n", status + 4);
	if (text == NULL) {
		scrape_free(s);
		return;
	}
	evbuffer_add_printf(out, "HTTP/1.1 %s\r\nContent-Type: %s\r\n"
			    "Content-Length: %zu\r\nConnection: close\r\n%s\r\n",
			    status, body != NULL ?
			    "text/plain; version=0.0.4" : "text/plain",
			    evbuffer_get_length(text), extra ? extra : "");
	evbuffer_add_buffer(out, text);
	if (text != body)
		evbuffer_free(text);
	bufferevent_setcb(s->bev, NULL, scrape_written_cb, NULL, s);
	bufferevent_enable(s->bev, EV_WRITE);
}

/* Judges a complete request head (NUL-terminated). */
static void
scrape_request(struct scrape *s, const char *head)
{
	char method[16], target[256], version[16];
	struct evbuffer *body;

	if (sscanf(head, "%15[^ \r\n] %255[^ \r\n] %15[^ \r\n]", method,
		   target, version) != 3 ||
	    (strcmp(version, "HTTP/1.1") != 0 &&
	     strcmp(version, "HTTP/1.0") != 0)) {
		metrics_warn(s->who, "not an HTTP/1.x request; answered 400");
		scrape_answer(s, "400 Bad Request", NULL, NULL);
		return;
	}
	if (strcmp(method, "GET") != 0) {
		scrape_answer(s, "405 Method Not Allowed", "Allow: GET\r\n", NULL);
		return;
	}
	target[strcspn(target, "?")] = '\0';
	if (strcmp(target, "/metrics") != 0) {
		scrape_answer(s, "404 Not Found", NULL, NULL);
		return;
	}
	body = evbuffer_new();
	if (body == NULL || metrics_format(body) < 0) {
		log_err("metrics endpoint %s: out of memory building an answer",
			S.listen);
		if (body != NULL)
			evbuffer_free(body);
		scrape_answer(s, "500 Internal Server Error", NULL, NULL);
		return;
	}
	scrape_answer(s, "200 OK", NULL, body);
	evbuffer_free(body);
}

static void
scrape_read_cb(struct bufferevent *bev, void *arg)
{
	struct scrape *s = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len = evbuffer_get_length(in);
	char head[METRICS_REQUEST_MAX + 1];
	size_t n = len < METRICS_REQUEST_MAX ? len : METRICS_REQUEST_MAX;

	if (s->answered)
		return;
	evbuffer_copyout(in, head, n);
	head[n] = '\0';
	if (strlen(head) != n) {
		scrape_answer(s, "400 Bad Request", NULL, NULL);
		return;
	}
	if (strstr(head, "\r\n\r\n") != NULL || strstr(head, "\n\n") != NULL) {
		scrape_request(s, head);
		return;
	}
	if (len >= METRICS_REQUEST_MAX) {
		metrics_warn(s->who, "request larger than 4096 bytes; "
			     "answered 431");
		scrape_answer(s, "431 Request Header Fields Too Large", NULL,
			      NULL);
	}
}

static void
scrape_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct scrape *s = arg;

	/* EOF before a whole request, or a socket error: nothing to say. */
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		scrape_free(s);
}

static void
scrape_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct scrape *s = arg;

	metrics_warn(s->who, s->answered ? "did not take the answer within "
		     "2 s; closed" : "no complete request within 2 s; closed");
	scrape_free(s);
}

static void
metrics_accept_cb(struct evconnlistener *lis, evutil_socket_t fd,
		  struct sockaddr *sa, int salen, void *arg)
{
	static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\n"
		"Content-Type: text/plain\r\nContent-Length: 5\r\n"
		"Connection: close\r\n\r\nbusy\n";
	struct timeval tv = { METRICS_DEADLINE_MS / 1000,
			      (METRICS_DEADLINE_MS % 1000) * 1000 };
	struct scrape *s;
	char who[NET_ADDRSTR_MAX];

	(void)lis, (void)salen, (void)arg;
	evutil_make_socket_closeonexec(fd);
	net_ntop(sa, who, sizeof(who));
	if (cfg_acl_check(&S.allow, NULL, sa) != CFG_ACL_PASS) {
		metrics_warn(who, "not in metrics_allow; closed");
		net_close_reset(fd);
		return;
	}
	if (S.nscrapes >= METRICS_MAX_SCRAPES) {
		metrics_warn(who, "4 scrapes are in progress; answered 503");
		if (send(fd, busy, sizeof(busy) - 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
			log_debug("metrics: 503 to %s: %s", who, strerror(errno));
		close(fd);
		return;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		goto fail;
	snprintf(s->who, sizeof(s->who), "%s", who);
	s->bev = bufferevent_socket_new(S.base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (s->bev == NULL)
		goto fail_s;
	s->deadline = evtimer_new(S.base, scrape_deadline_cb, s);
	if (s->deadline == NULL)
		goto fail_bev;
	TAILQ_INSERT_TAIL(&S.scrapes, s, entry);
	S.nscrapes++;
	bufferevent_setwatermark(s->bev, EV_READ, 0, METRICS_REQUEST_MAX);
	bufferevent_setcb(s->bev, scrape_read_cb, NULL, scrape_event_cb, s);
	bufferevent_enable(s->bev, EV_READ);
	evtimer_add(s->deadline, &tv);
	return;

fail_bev:
	bufferevent_free(s->bev);
	fd = -1;
fail_s:
	free(s);
fail:
	log_err("metrics endpoint %s: out of memory; scrape from %s closed",
		S.listen, who);
	if (fd >= 0)
		close(fd);
}

static void
metrics_accept_error_cb(struct evconnlistener *lis, void *arg)
{
	(void)lis, (void)arg;
	log_err("metrics endpoint %s: accepting failed: %s; still listening",
		S.listen, evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

static struct evconnlistener *
metrics_listen(const char *addr)
{
	struct evconnlistener *lis;
	char err[512];
	int fd;

	fd = net_listen(addr, err, sizeof(err));
	if (fd < 0) {
		log_err("metrics_listen: %s", err);
		return NULL;
	}
	lis = evconnlistener_new(S.base, metrics_accept_cb, NULL,
				 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
				 16, fd);
	if (lis == NULL) {
		log_err("metrics_listen: cannot listen on %s", addr);
		close(fd);
		return NULL;
	}
	evconnlistener_set_error_cb(lis, metrics_accept_error_cb);
	return lis;
}

static void
metrics_close_listener(void)
{
	if (S.lis != NULL)
		evconnlistener_free(S.lis);
	S.lis = NULL;
	S.listen[0] = '\0';
}

int
metrics_start(struct event_base *base, const struct cfg *c)
{
	if (!M.registered) {
		if (hook_register(metrics_observe, NULL) < 0) {
			log_err("metrics: too many hook observers");
			return -1;
		}
		M.registered = 1;
		M.start_us = hook_wall_us();
	}
	snprintf(M.role, sizeof(M.role), "%s",
		 c->role == CFG_RELAY ? "relay" : "gateway");
	snprintf(M.node, sizeof(M.node), "%s", c->node_name);
	S.base = base;
	S.allow = c->metrics_allow;
	if (c->metrics_listen[0] == '\0')
		return 0;
	S.lis = metrics_listen(c->metrics_listen);
	if (S.lis == NULL)
		return -1;
	snprintf(S.listen, sizeof(S.listen), "%s", c->metrics_listen);
	log_info("metrics endpoint: http://%s/metrics", S.listen);
	return 0;
}

void
metrics_reload(const struct cfg *c)
{
	struct evconnlistener *lis;

	snprintf(M.node, sizeof(M.node), "%s", c->node_name);
	S.allow = c->metrics_allow;
	if (strcmp(c->metrics_listen, S.listen) == 0)
		return;
	if (c->metrics_listen[0] == '\0') {
		log_info("metrics endpoint %s closed (metrics_listen is empty)",
			 S.listen);
		metrics_close_listener();
		return;
	}
	lis = metrics_listen(c->metrics_listen);
	if (lis == NULL) {
		if (S.lis != NULL)
			log_err("metrics endpoint stays on %s", S.listen);
		return;
	}
	metrics_close_listener();
	S.lis = lis;
	snprintf(S.listen, sizeof(S.listen), "%s", c->metrics_listen);
	log_info("metrics endpoint: http://%s/metrics", S.listen);
}

void
metrics_stop(void)
{
	while (!TAILQ_EMPTY(&S.scrapes))
		scrape_free(TAILQ_FIRST(&S.scrapes));
	metrics_close_listener();
}
