/*
 * The hook's invariants and link classes end to end (docs/MONITORING.md,
 * "Invariants" and "Link classes and what each yields"): the real
 * daemons on loopback, each test producing one link class, or breaking
 * a handshake at one point, and comparing what the hook said with what
 * the wire carried.  Every hook file a test produced goes through the
 * checker (test/hookcheck.c) once the daemons have stopped.
 *
 * The wire is watched by the pair's tap, by the MITM of test/mitm.c, or
 * by a gate (below): a proxy that forwards each direction up to a point
 * of the upgrade and holds the rest, so that a test can cut, kill or
 * stop a daemon at a chosen moment of the handshake.
 */
#include <criterion/criterion.h>
#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "frame.h"
#include "guard.h"
#include "harness.h"
#include "hookcheck.h"
#include "mitm.h"
#include "neg.h"
#include "pair.h"
#include "policy.h"

#define PLAIN "tls = off\n"
#define TLS12 "min_tls = 1.2\nmax_tls = 1.2\n"
#define RELAY_PREFER \
	"tls = prefer\ncert = certs/relay.crt\nkey = certs/relay.key\n" \
	"client_cert = require\n"

static const uint8_t magic[8] = { 0x89, 'T', 'P', 'X', '\r', '\n', 0x1a, '\n' };

/* ---- a gate: forwards each direction up to a point, holds the rest ---- */

enum gate_mode {
	GATE_PASS,    /* forward everything */
	GATE_NEG,     /* forward the negotiation message, hold what follows */
	GATE_APPDATA, /* forward the negotiation message and the TLS records
			 before the first application_data record (type 23):
			 with TLS 1.2, the whole handshake but not the BIND */
};

#define GATE_CONNS 8
#define GATE_CAP (1u << 20)

struct gate_dir {
	uint8_t *buf;     /* everything received, GATE_CAP at most */
	size_t len, fwd;  /* received, forwarded */
};

struct gate_conn {
	int fd[2];        /* [TAP_C2S] the dialler's, [TAP_S2C] the target's */
	struct gate_dir d[2];
	int closed;
};

struct gate {
	int lfd, port, target;
	enum gate_mode mode;
	pthread_t th;
	pthread_mutex_t mu;
	struct gate_conn c[GATE_CONNS];
	int n;
	int stop, cut;
};

static struct gate *G;
static struct mitm *M;
static int64_t T0;

/* How many of the bytes received in d may be forwarded. */
static size_t
gate_limit(enum gate_mode mode, const struct gate_dir *d)
{
	size_t off;

	if (mode == GATE_PASS)
		return d->len;
	if (d->len < 14)
		return 0;
	if (memcmp(d->buf, magic, sizeof(magic)) != 0)
		return d->len;
	off = 14 + ((size_t)d->buf[12] << 8 | d->buf[13]);
	if (off > d->len || mode == GATE_NEG)
		return off > d->len ? d->len : off;
	while (off < d->len) {
		size_t rl;

		if (d->len - off < 5)
			return off;
		if (d->buf[off] == 23)
			return off;
		rl = 5 + ((size_t)d->buf[off + 3] << 8 | d->buf[off + 4]);
		if (d->len - off < rl)
			return d->len;	/* the rest of a handshake record */
		off += rl;
	}
	return off;
}

static void
gate_close(struct gate_conn *c, int reset)
{
	struct linger lg = { 1, 0 };

	for (int k = 0; k < 2; k++) {
		if (c->fd[k] < 0)
			continue;
		if (reset)
			setsockopt(c->fd[k], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(c->fd[k]);
		c->fd[k] = -1;
	}
	c->closed = 1;
}

static void
gate_accept(struct gate *g)
{
	struct gate_conn *c;
	int fd = accept(g->lfd, NULL, NULL), s;

	if (fd < 0)
		return;
	s = h_connect(g->target);
	if (s < 0 || g->n == GATE_CONNS) {
		close(fd);
		if (s >= 0)
			close(s);
		return;
	}
	c = &g->c[g->n];
	c->fd[TAP_C2S] = fd;
	c->fd[TAP_S2C] = s;
	for (int k = 0; k < 2; k++) {
		c->d[k].buf = malloc(GATE_CAP);
		c->d[k].len = c->d[k].fwd = 0;
	}
	g->n++;
}

/* Reads what fd k of c has, forwards what the mode lets through. */
static void
gate_read(struct gate *g, struct gate_conn *c, int k)
{
	struct gate_dir *d = &c->d[k];
	ssize_t r;
	size_t lim;

	if (d->buf == NULL || d->len == GATE_CAP) {
		gate_close(c, 1);
		return;
	}
	r = recv(c->fd[k], d->buf + d->len, GATE_CAP - d->len, MSG_DONTWAIT);
	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (r <= 0) {
		/* One side closed or reset: so does the other. */
		gate_close(c, r < 0);
		return;
	}
	d->len += (size_t)r;
	lim = gate_limit(g->mode, d);
	while (d->fwd < lim) {
		ssize_t w = send(c->fd[1 - k], d->buf + d->fwd, lim - d->fwd,
				 MSG_NOSIGNAL);

		if (w <= 0) {
			gate_close(c, 1);
			return;
		}
		d->fwd += (size_t)w;
	}
}

static void *
gate_run(void *arg)
{
	struct gate *g = arg;

	for (;;) {
		struct pollfd p[1 + 2 * GATE_CONNS];
		int map[1 + 2 * GATE_CONNS], np = 0;

		pthread_mutex_lock(&g->mu);
		if (g->stop) {
			pthread_mutex_unlock(&g->mu);
			break;
		}
		if (g->cut) {
			for (int i = 0; i < g->n; i++)
				if (!g->c[i].closed)
					gate_close(&g->c[i], 1);
			g->cut = 0;
		}
		p[np].fd = g->lfd;
		p[np++].events = POLLIN;
		for (int i = 0; i < g->n; i++)
			for (int k = 0; k < 2 && !g->c[i].closed; k++) {
				map[np] = 2 * i + k;
				p[np].fd = g->c[i].fd[k];
				p[np++].events = POLLIN;
			}
		pthread_mutex_unlock(&g->mu);
		if (poll(p, (nfds_t)np, 20) <= 0)
			continue;
		pthread_mutex_lock(&g->mu);
		if (p[0].revents & POLLIN)
			gate_accept(g);
		for (int j = 1; j < np; j++) {
			struct gate_conn *c = &g->c[map[j] / 2];

			if (p[j].revents != 0 && !c->closed)
				gate_read(g, c, map[j] % 2);
		}
		pthread_mutex_unlock(&g->mu);
	}
	return NULL;
}

/* A gate in front of 127.0.0.1:target, in mode for every connection. */
static struct gate *
gate_start(int target, enum gate_mode mode)
{
	struct gate *g = calloc(1, sizeof(*g));
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	int one = 1;

	cr_assert_not_null(g);
	g->target = target;
	g->mode = mode;
	pthread_mutex_init(&g->mu, NULL);
	g->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(g->lfd, 0);
	setsockopt(g->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(g->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(g->lfd, 16), 0);
	cr_assert_eq(getsockname(g->lfd, (struct sockaddr *)&sa, &sl), 0);
	g->port = ntohs(sa.sin_port);
	cr_assert_eq(pthread_create(&g->th, NULL, gate_run, g), 0);
	return g;
}

static void
gate_stop(struct gate *g)
{
	if (g == NULL)
		return;
	pthread_mutex_lock(&g->mu);
	g->stop = 1;
	pthread_mutex_unlock(&g->mu);
	pthread_join(g->th, NULL);
	for (int i = 0; i < g->n; i++) {
		if (!g->c[i].closed)
			gate_close(&g->c[i], 0);
		free(g->c[i].d[0].buf);
		free(g->c[i].d[1].buf);
	}
	close(g->lfd);
	pthread_mutex_destroy(&g->mu);
	free(g);
}

/* Resets every connection of the gate, both sides. */
static void
gate_cut(struct gate *g)
{
	int64_t end = h_now_ms() + 2000;

	pthread_mutex_lock(&g->mu);
	g->cut = 1;
	pthread_mutex_unlock(&g->mu);
	for (;;) {
		int done;

		pthread_mutex_lock(&g->mu);
		done = !g->cut;
		pthread_mutex_unlock(&g->mu);
		if (done || h_now_ms() > end)
			break;
		h_sleep_ms(5);
	}
}

/* Waits until connection conn holds back bytes in direction dir. */
static int
gate_wait_held(struct gate *g, int conn, int dir, int ms)
{
	int64_t end = h_now_ms() + ms;

	for (;;) {
		int held;

		pthread_mutex_lock(&g->mu);
		held = conn < g->n && g->c[conn].d[dir].len > g->c[conn].d[dir].fwd;
		pthread_mutex_unlock(&g->mu);
		if (held)
			return 0;
		if (h_now_ms() > end)
			return -1;
		h_sleep_ms(10);
	}
}

/* Bytes forwarded and received on (conn, dir); the first held byte in
 * *first (-1 when none is held). */
static size_t
gate_forwarded(struct gate *g, int conn, int dir, int *first)
{
	size_t fwd;

	pthread_mutex_lock(&g->mu);
	cr_assert_lt(conn, g->n);
	fwd = g->c[conn].d[dir].fwd;
	*first = g->c[conn].d[dir].len > fwd ? g->c[conn].d[dir].buf[fwd] : -1;
	pthread_mutex_unlock(&g->mu);
	return fwd;
}

/* ---- the suite -------------------------------------------------------- */

/* mkcerts.sh takes seconds: one set is made before the first test and
 * copied by each (as test_attack does). */
#define CERT_CACHE_ENV "TLSPLEX_MONITOR_CERTS"

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
	cert_cache_make(CERT_CACHE_ENV);
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
	cert_cache_remove(CERT_CACHE_ENV);
}

static void
monitor_init(void)
{
	G = NULL;
	M = NULL;
	T0 = h_now_ms();
	pair_init_from(getenv(CERT_CACHE_ENV));
}

static void
monitor_fini(void)
{
	pair_fini();
	gate_stop(G);
	mitm_stop(M);
	G = NULL;
	M = NULL;
}

TestSuite(monitor, .init = monitor_init, .fini = monitor_fini, .timeout = 60);

/* ---- helpers ---------------------------------------------------------- */

/* Waits until the hook file holds at least n events named event. */
static void
wait_events(const char *file, const char *event, int n, int ms)
{
	char needle[80];
	int64_t end = h_now_ms() + ms;

	snprintf(needle, sizeof(needle), "\"event\":\"%s\"", event);
	while (h_file_count(file, needle) < n && h_now_ms() < end)
		h_sleep_ms(20);
	cr_assert_geq(h_file_count(file, needle), n, "%s: %d %s events within "
		      "%d ms expected:\n%s", file, n, event, ms,
		      h_read_file(file, NULL));
}

/* Stops a daemon by SIGTERM and expects a clean exit (under the
 * sanitizers a leak makes it non-zero). */
static void
stop_clean(pid_t *pid, const char *log)
{
	if (*pid <= 0)
		return;
	cr_assert_eq(h_stop(*pid, 8000), 0, "the daemon did not exit cleanly:\n%s",
		     h_read_file(log, NULL));
	*pid = 0;
}

/* Loads and checks one daemon's hook file. */
static struct hk_log *
checked(const char *file, int flags)
{
	struct hk_log *log = hk_load1(file);

	hk_check(log, h_now_ms() - T0 + 1, flags);
	return log;
}

/* Stops both daemons, checks both files and joins them. */
static void
stop_and_check(struct hk_log **gw, struct hk_log **relay, int pair_flags)
{
	stop_clean(&P.gw, P.gw_log);
	stop_clean(&P.relay, P.relay_log);
	*gw = checked(P.gw_hooks, 0);
	*relay = checked(P.relay_hooks, 0);
	hk_check_pair(*gw, *relay, pair_flags);
}

/* Starts the relay, then the gateway dialling port instead of the relay. */
static void
start_pair_via(int port, const char *relay_extra, const char *gw_extra)
{
	int real = P.relay_port;

	start_relay(relay_extra, "");
	P.relay_port = port;
	start_gateway(gw_extra, "");
	P.relay_port = real;
}

/* Length of the negotiation message at the start of p. */
static size_t
neg_len(const uint8_t *p, size_t len)
{
	cr_assert_geq(len, 14u, "no negotiation message on the wire");
	cr_assert_eq(memcmp(p, magic, sizeof(magic)), 0,
		     "the wire does not start with the negotiation magic");
	return 14 + ((size_t)p[12] << 8 | p[13]);
}

/* Decodes the one negotiation message that is all of p. */
static struct neg_msg
neg_only(const uint8_t *p, size_t len)
{
	struct neg_decoder *dec = neg_decoder_new();
	struct neg_msg m;
	size_t used = 0;

	cr_assert_not_null(dec);
	cr_assert_eq(neg_decoder_feed(dec, p, len, &used), NEG_DONE,
		     "no complete negotiation message on the wire");
	cr_assert_eq(used, len, "%zu bytes follow the negotiation message",
		     len - used);
	m = *neg_decoder_msg(dec);
	neg_decoder_free(dec);
	return m;
}

/* 32 hex digits of the first 16 bytes of SHA-256(offer || decision). */
static void
transcript_of(const uint8_t *offer, size_t olen, const uint8_t *dec,
	      size_t dlen, char hex[33])
{
	uint8_t h[32];

	fake_sha256(offer, olen, dec, dlen, h);
	for (int i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", h[i]);
}

/* The first event named event of the first link in log. */
static const struct hk_ev *
first_link(const struct hk_log *log, const char *event)
{
	const struct hk_ev *open = hk_nth(log, "link_opened", NULL, NULL, 0), *e;

	cr_assert_not_null(open, "no link_opened in %s", log->name);
	for (size_t i = 0; (e = hk_link_nth(log, open, i)) != NULL; i++)
		if (hk_is(e, "event", event))
			return e;
	cr_assert_fail("the first link of %s has no %s", log->name, event);
	return NULL;
}

static void
expect_str(const struct hk_ev *ev, const char *key, const char *val)
{
	cr_assert(hk_is(ev, key, val), "%s:%d: %s is %s, expected %s", ev->file,
		  ev->line, key, hk_get(ev, key) ? hk_get(ev, key) : "(absent)",
		  val);
}

/* Connects to port, sends n bytes, and expects the peer to close
 * without sending anything. */
static void
poke(int port, const void *p, size_t n)
{
	uint8_t buf[256];
	int fd = connect_port(port);
	int64_t end = h_now_ms() + 4000;
	ssize_t r = -1;

	cr_assert_geq(fd, 0);
	if (n > 0)
		cr_assert_eq(send(fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
	while (h_now_ms() < end) {
		struct pollfd pfd = { fd, POLLIN, 0 };

		if (poll(&pfd, 1, 50) <= 0)
			continue;
		r = recv(fd, buf, sizeof(buf), 0);
		break;
	}
	close(fd);
	cr_assert(r == 0 || (r < 0 && errno == ECONNRESET),
		  "the relay answered %zd bytes to bytes that are not tlsplex", r);
}

/* ---- refused at the TCP stage ------------------------------------------ */

/* deny list: link_refused at stage tcp, no link, on the relay; the
 * gateway's link dies before any negotiation byte came back. */
Test(monitor, tcp_stage_refusal_by_the_deny_list)
{
	struct hk_log *gw, *relay;
	const struct hk_ev *e;
	uint64_t refusals = 0;
	size_t len;
	int conns;

	start_tap();
	start_pair(PLAIN "deny = 127.0.0.0/8\n", PLAIN);
	wait_events(P.gw_hooks, "link_closed", 2, 5000);
	stop_and_check(&gw, &relay, 0);
	conns = tap_conn_count(P.tap);

	cr_assert_eq(hk_count(relay, "link_opened", NULL, NULL), 0,
		     "a refused connection became a link");
	cr_assert_gt(hk_count(relay, "link_refused", NULL, NULL), 0);
	for (size_t i = 0; (e = hk_nth(relay, "link_refused", NULL, NULL, i)); i++) {
		expect_str(e, "stage", "tcp");
		expect_str(e, "reason_name", "deny_list");
		expect_str(e, "peer_ip", "127.0.0.1");
		cr_assert_null(hk_get(e, "link"));
		refusals += 1 + (hk_get(e, "suppressed") ? hk_num(e, "suppressed") : 0);
	}
	/* Each connection the tap carried was refused, none reported twice
	 * (the last ones may be counted into a report that never came). */
	cr_assert_leq(refusals, (uint64_t)conns);
	for (int c = 0; c < conns; c++) {
		(void)tap_bytes(P.tap, c, TAP_S2C, &len);
		cr_assert_eq(len, 0u, "the relay sent %zu bytes to a refused "
			     "connection", len);
	}
	for (size_t i = 0; (e = hk_nth(gw, "link_closed", NULL, NULL, i)); i++) {
		cr_assert(hk_is(e, "outcome", "aborted") ||
			  hk_is(e, "outcome", "connect_failed"),
			  "%s:%d: outcome %s", e->file, e->line, hk_get(e, "outcome"));
		cr_assert_eq(hk_num(e, "bytes_in"), 0);
	}
	hk_free(gw);
	hk_free(relay);
}

/* max_links: the relay answers BUSY before reading; the gateway reports
 * the refusal by its peer, and its link is refused. */
Test(monitor, tcp_stage_refusal_by_max_links_is_busy_for_the_gateway)
{
	struct hk_log *gw, *relay;
	const struct hk_ev *e;
	const uint8_t *p;
	struct neg_msg m;
	size_t len;
	int hog;

	start_tap();
	start_relay(PLAIN "max_links = 1\n", "");
	/* A silent connection takes the one link until negotiation_timeout. */
	hog = connect_port(P.relay_port);
	cr_assert_geq(hog, 0);
	wait_events(P.relay_hooks, "link_opened", 1, 3000);
	start_gateway(PLAIN, "");
	wait_events(P.gw_hooks, "link_refused", 1, 5000);
	wait_up();
	close(hog);
	stop_and_check(&gw, &relay, 0);

	e = first_link(gw, "link_refused");
	expect_str(e, "by", "peer");
	expect_str(e, "stage", "negotiation");
	expect_str(e, "reason_name", "BUSY");
	cr_assert_eq(hk_num(e, "reason_code"), NEG_R_BUSY);
	e = first_link(gw, "link_closed");
	expect_str(e, "outcome", "refused");
	expect_str(e, "reason_name", "BUSY");
	cr_assert_null(hk_get(e, "transcript"));

	e = hk_nth(relay, "link_refused", NULL, NULL, 0);
	cr_assert_not_null(e);
	expect_str(e, "stage", "tcp");
	expect_str(e, "reason_name", "max_links");
	cr_assert_eq(hk_num(e, "reason_code"), NEG_R_BUSY);
	cr_assert_null(hk_get(e, "link"));
	/* The hog: accepted, silent, dropped at the deadline. */
	e = first_link(relay, "link_closed");
	expect_str(e, "outcome", "aborted");
	cr_assert_eq(hk_num(e, "bytes_in"), 0);

	/* On the wire: the gateway's OFFER, and a REFUSE (BUSY) back, with
	 * no byte after it. */
	p = tap_bytes(P.tap, 0, TAP_S2C, &len);
	m = neg_only(p, len);
	cr_assert_eq(m.type, NEG_REFUSE);
	cr_assert_eq(m.outcome.reason, NEG_R_BUSY);
	cr_assert_eq(hk_num(first_link(gw, "link_closed"), "bytes_in"), len);
	hk_free(gw);
	hk_free(relay);
}

/* A burst of refused connections: at most GUARD_LOG_PER_SEC events a
 * second, and the next event's suppressed counts the rest. */
Test(monitor, tcp_stage_refusals_are_rate_limited_and_counted)
{
	struct hk_log *relay;
	const struct hk_ev *e;
	const int burst = 30;
	uint64_t events = 0, suppressed = 0;
	int64_t t;

	start_relay(PLAIN "deny = 127.0.0.0/8\n", "");
	t = h_now_ms();
	for (int i = 0; i < burst; i++) {
		int fd = connect_port(P.relay_port);

		cr_assert_geq(fd, 0);
		close(fd);
	}
	t = h_now_ms() - t;
	cr_assert_lt(t, 900, "the burst took %lld ms: too slow to test the "
		     "rate limit", (long long)t);
	wait_events(P.relay_hooks, "link_refused", GUARD_LOG_PER_SEC, 3000);
	/* The next second: one more, which carries the count. */
	h_sleep_ms(1100);
	close(connect_port(P.relay_port));
	cr_assert_eq(h_wait_file_contains(P.relay_hooks, "\"suppressed\":", 3000), 0,
		     "%s", h_read_file(P.relay_hooks, NULL));
	stop_clean(&P.relay, P.relay_log);
	relay = checked(P.relay_hooks, 0);

	for (size_t i = 0; (e = hk_nth(relay, "link_refused", NULL, NULL, i)); i++) {
		expect_str(e, "reason_name", "deny_list");
		events++;
		if (hk_get(e, "suppressed") != NULL) {
			cr_assert_gt(hk_num(e, "suppressed"), 0);
			suppressed += hk_num(e, "suppressed");
		}
	}
	/* Within one second of the monotonic clock GUARD_LOG_PER_SEC; the
	 * burst may straddle two. */
	cr_assert_leq(events - 1, 2 * GUARD_LOG_PER_SEC, "%llu events",
		      (unsigned long long)events);
	cr_assert_gt(suppressed, 0);
	cr_assert_eq(events + suppressed, (uint64_t)burst + 1,
		     "%llu events and %llu suppressed for %d connections",
		     (unsigned long long)events, (unsigned long long)suppressed,
		     burst + 1);
	cr_assert_eq(hk_count(relay, "link_opened", NULL, NULL), 0);
	hk_free(relay);
}

/* The gateway's clients: a held client dropped at hold_timeout, and one
 * over max_clients: link_refused at stage tcp naming the service and
 * the client, no link. */
Test(monitor, tcp_stage_refusals_of_gateway_clients_name_the_service)
{
	struct hk_log *gw, *relay;
	const struct hk_ev *e;
	char who[64];
	int a, b;

	P.echo_extra = "max_clients = 1\n";
	start_echo("echo");
	P.relay_port = h_free_port();	/* no relay yet */
	start_gateway(PLAIN, "");
	cr_assert_eq(h_wait_port(P.svc_port, 5000), 0);
	a = connect_port(P.svc_port);
	cr_assert_geq(a, 0);
	/* held, then turned away after hold_timeout (1 s) */
	cr_assert(closed_within(a, 3000), "the held client was not dropped");
	close(a);
	wait_events(P.gw_hooks, "link_refused", 1, 2000);
	start_relay(PLAIN, "");
	wait_up();
	a = connect_port(P.svc_port);
	cr_assert_eq(echo_once(a, "the one client", 5000), 0);
	b = connect_port(P.svc_port);
	cr_assert_geq(b, 0);
	{
		struct sockaddr_in sa;
		socklen_t sl = sizeof(sa);

		cr_assert_eq(getsockname(b, (struct sockaddr *)&sa, &sl), 0);
		snprintf(who, sizeof(who), "127.0.0.1:%d", ntohs(sa.sin_port));
	}
	cr_assert(closed_within(b, 2000), "the second client was not refused");
	close(b);
	close(a);
	wait_events(P.gw_hooks, "link_refused", 2, 2000);
	stop_and_check(&gw, &relay, 0);

	e = hk_nth(gw, "link_refused", "reason_name", "hold_timeout", 0);
	cr_assert_not_null(e, "no hold_timeout refusal");
	expect_str(e, "stage", "tcp");
	expect_str(e, "service", "echo");
	cr_assert_null(hk_get(e, "link"));
	e = hk_nth(gw, "link_refused", "reason_name", "max_clients", 0);
	cr_assert_not_null(e, "no max_clients refusal");
	expect_str(e, "stage", "tcp");
	expect_str(e, "service", "echo");
	expect_str(e, "peer", who);
	cr_assert_null(hk_get(e, "link"));
	cr_assert_eq(hk_count(gw, "link_refused", NULL, NULL), 2);
	hk_free(gw);
	hk_free(relay);
}

/* ---- refused in the negotiation ---------------------------------------- */

static void
refused_in_negotiation(const char *relay_extra, const char *gw_extra,
		       const char *relay_sections, uint16_t code)
{
	struct hk_log *gw, *relay;
	const struct hk_ev *g, *r;
	const uint8_t *p;
	struct neg_msg m;
	size_t len;

	start_tap();
	start_pair_with(relay_extra, gw_extra, relay_sections, "");
	wait_events(P.gw_hooks, "link_closed", 1, 5000);
	wait_events(P.relay_hooks, "link_closed", 1, 5000);
	stop_and_check(&gw, &relay, 0);

	g = first_link(gw, "link_refused");
	r = first_link(relay, "link_refused");
	expect_str(g, "by", "peer");
	expect_str(r, "by", "local");
	expect_str(g, "stage", "negotiation");
	expect_str(r, "stage", "negotiation");
	cr_assert_eq(hk_num(g, "reason_code"), code);
	cr_assert_eq(hk_num(r, "reason_code"), code);
	expect_str(g, "reason_name", neg_reason_name(code));
	expect_str(r, "reason_name", neg_reason_name(code));
	expect_str(g, "peer_node", "relay");
	expect_str(r, "peer_node", "gw1");
	for (int side = 0; side < 2; side++) {
		const struct hk_ev *c = first_link(side ? relay : gw, "link_closed");

		expect_str(c, "outcome", "refused");
		expect_str(c, "protection", "none");
		cr_assert_eq(hk_num(c, "reason_code"), code);
		cr_assert_null(hk_get(c, "transcript"), "a refused link has no "
			       "decision and no transcript");
	}
	/* On the wire: an OFFER one way, one REFUSE with that code the other,
	 * and not a byte more either way. */
	p = tap_bytes(P.tap, 0, TAP_C2S, &len);
	m = neg_only(p, len);
	cr_assert_eq(m.type, NEG_OFFER);
	cr_assert_eq(hk_num(first_link(relay, "link_closed"), "bytes_in"), len);
	p = tap_bytes(P.tap, 0, TAP_S2C, &len);
	m = neg_only(p, len);
	cr_assert_eq(m.type, NEG_REFUSE);
	cr_assert_eq(m.outcome.reason, code);
	cr_assert_eq(hk_num(first_link(gw, "link_closed"), "bytes_in"), len);
	cr_assert_eq(hk_num(first_link(relay, "link_closed"), "bytes_out"), len);
	hk_free(gw);
	hk_free(relay);
}

Test(monitor, negotiation_refusal_unknown_peer)
{
	refused_in_negotiation(PLAIN, PLAIN, "[peer other]\n", NEG_R_UNKNOWN_PEER);
}

Test(monitor, negotiation_refusal_required_by_acceptor)
{
	refused_in_negotiation(TLS_RELAY, PLAIN, "", NEG_R_REQUIRED_BY_ACCEPTOR);
}

/* ---- not tlsplex, and the dialler that cannot connect -------------------- */

Test(monitor, not_tlsplex_at_the_link_port_is_aborted)
{
	static const uint8_t hello[] = { 0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00,
					 0x00, 0xa1, 0x03, 0x03 };
	static const char http[] = "GET / HTTP/1.1\r\nHost: relay\r\n\r\n";
	static const char junk[] = "\x01\x02garbage\xff\xfe and more";
	static const struct { const void *p; size_t n; const char *seen; } pokes[] = {
		{ http, sizeof(http) - 1, "HTTP request" },
		{ hello, sizeof(hello), "TLS ClientHello" },
		{ junk, sizeof(junk) - 1, "does not speak tlsplex" },
	};
	struct hk_log *relay;
	const struct hk_ev *e;

	start_relay(TLS_RELAY, "");
	for (size_t i = 0; i < 3; i++)
		poke(P.relay_port, pokes[i].p, pokes[i].n);
	wait_events(P.relay_hooks, "link_closed", 3, 3000);
	stop_clean(&P.relay, P.relay_log);
	relay = checked(P.relay_hooks, 0);

	cr_assert_eq(hk_count(relay, "link_opened", NULL, NULL), 3);
	for (size_t i = 0; i < 3; i++) {
		e = hk_nth(relay, "link_closed", NULL, NULL, i);
		cr_assert_not_null(e);
		cr_assert_eq(hk_num(e, "link"), i + 1);
		expect_str(e, "outcome", "aborted");
		expect_str(e, "protection", "none");
		expect_str(e, "last_state", "NEGOTIATING");
		cr_assert_not_null(strstr(hk_get(e, "reason"), pokes[i].seen),
				   "%s:%d: reason '%s' does not name %s", e->file,
				   e->line, hk_get(e, "reason"), pokes[i].seen);
		/* What the wire carried: what the test sent, nothing back. */
		cr_assert_eq(hk_num(e, "bytes_in"), pokes[i].n);
		cr_assert_eq(hk_num(e, "bytes_out"), 0);
		cr_assert_null(hk_get(e, "transcript"));
	}
	cr_assert_eq(hk_count(relay, "handshake_pending", NULL, NULL), 0);
	hk_free(relay);
}

Test(monitor, dialling_a_closed_port_is_connect_failed)
{
	struct hk_log *gw;
	const struct hk_ev *e;
	char peer[64];

	P.relay_port = h_free_port();	/* nobody listens there */
	start_gateway(PLAIN, "");
	wait_events(P.gw_hooks, "link_closed", 2, 5000);
	stop_clean(&P.gw, P.gw_log);
	gw = checked(P.gw_hooks, 0);

	snprintf(peer, sizeof(peer), "127.0.0.1:%d", P.relay_port);
	cr_assert_geq(hk_count(gw, "link_opened", NULL, NULL), 2);
	for (size_t i = 0; (e = hk_nth(gw, "link_closed", NULL, NULL, i)); i++) {
		expect_str(e, "outcome", "connect_failed");
		expect_str(e, "protection", "none");
		expect_str(e, "last_state", "CONNECTING");
		expect_str(e, "peer", peer);
		cr_assert_eq(hk_num(e, "bytes_in") + hk_num(e, "bytes_out"), 0);
	}
	e = hk_nth(gw, "link_opened", NULL, NULL, 0);
	expect_str(e, "direction", "out");
	expect_str(e, "peer", peer);
	hk_free(gw);
}

/* ---- links that carried streams ---------------------------------------- */

struct first_frame {
	int seen;
	struct frame_hdr h;
	uint8_t bind[FRAME_BIND_LEN];
};

static int
ff_on_frame(void *ud, const struct frame_hdr *h, const uint8_t *p)
{
	struct first_frame *f = ud;

	if (f->seen++ == 0) {
		f->h = *h;
		if (h->type == FRAME_BIND && h->len == FRAME_BIND_LEN)
			memcpy(f->bind, p, FRAME_BIND_LEN);
	}
	return 0;
}

static int
ff_on_data(void *ud, const struct frame_hdr *h, const uint8_t *c, size_t n,
	   int last)
{
	((struct first_frame *)ud)->seen++;
	return 0;
}

/* The mux starts at off of (conn 0, dir): every byte from there parses
 * as frames and the first is a BIND carrying hash. */
static void
assert_mux_at(int dir, size_t off, const uint8_t hash[32])
{
	static const struct frame_callbacks cb = {
		.on_frame = ff_on_frame,
		.on_data = ff_on_data,
	};
	struct first_frame f;
	struct frame_decoder *dec;
	const uint8_t *p;
	size_t len;

	memset(&f, 0, sizeof(f));
	dec = frame_decoder_new(FRAME_MAX_PAYLOAD, &cb, &f);
	cr_assert_not_null(dec);
	p = tap_bytes(P.tap, 0, dir, &len);
	cr_assert_lt(off, len);
	cr_assert_eq(frame_decoder_feed(dec, p + off, len - off), 0,
		     "the bytes after mux_offset do not parse as frames");
	frame_decoder_free(dec);
	cr_assert_gt(f.seen, 0);
	cr_assert_eq(f.h.type, FRAME_BIND, "the first frame is not BIND");
	cr_assert_eq(memcmp(f.bind, hash, 32), 0, "BIND does not carry the "
		     "transcript of the messages on the wire");
}

/*
 * One direction's byte counts against the tap's: the reader cannot have
 * read more than the tap carried, nor the tap carried more than the
 * writer wrote; they differ by at most the last frames of the close
 * (GOAWAY, close_notify), which a side that stopped reading, or the tap
 * after the other side closed, may not take.
 */
static void
assert_bytes(const struct hk_ev *writer, const struct hk_ev *reader,
	     size_t tap, const char *what)
{
	uint64_t out = hk_num(writer, "bytes_out"), in = hk_num(reader, "bytes_in");

	cr_assert(in <= tap && tap <= out && out - in <= 256,
		  "%s: the writer's bytes_out %llu, the tap %zu, the reader's "
		  "bytes_in %llu", what, (unsigned long long)out, tap,
		  (unsigned long long)in);
}

Test(monitor, plaintext_link_mux_starts_at_the_reported_offsets)
{
	struct hk_log *gw, *relay;
	const struct hk_ev *g, *r;
	const uint8_t *c2s, *s2c;
	size_t c2s_len, s2c_len, oc, os;
	uint8_t hash[32];
	char hex[33], err[2048];

	start_echo("echo");
	start_tap();
	start_pair(PLAIN, PLAIN);
	wait_up();
	cr_assert_eq(h_echo_clients(P.svc_port, 5, 20000, 3, 20000, err,
				    sizeof(err)), 0, "%s", err);
	stop_and_check(&gw, &relay, 0);
	cr_assert_eq(tap_conn_count(P.tap), 1);
	c2s = tap_bytes(P.tap, 0, TAP_C2S, &c2s_len);
	s2c = tap_bytes(P.tap, 0, TAP_S2C, &s2c_len);
	oc = neg_len(c2s, c2s_len);
	os = neg_len(s2c, s2c_len);

	g = first_link(gw, "plaintext_agreed");
	r = first_link(relay, "plaintext_agreed");
	cr_assert_eq(hk_num(g, "mux_offset_out"), oc);
	cr_assert_eq(hk_num(g, "mux_offset_in"), os);
	cr_assert_eq(hk_num(r, "mux_offset_out"), os);
	cr_assert_eq(hk_num(r, "mux_offset_in"), oc);
	fake_sha256(c2s, oc, s2c, os, hash);
	transcript_of(c2s, oc, s2c, os, hex);
	expect_str(g, "transcript", hex);
	expect_str(r, "transcript", hex);
	assert_mux_at(TAP_C2S, oc, hash);
	assert_mux_at(TAP_S2C, os, hash);
	cr_assert_eq(hk_count(gw, "handshake_pending", NULL, NULL), 0);

	g = first_link(gw, "link_closed");
	r = first_link(relay, "link_closed");
	for (int side = 0; side < 2; side++) {
		const struct hk_ev *c = side ? r : g;

		expect_str(c, "outcome", "plaintext");
		expect_str(c, "protection", "plaintext");
		cr_assert_eq(hk_num(c, "streams"), 5);
		cr_assert_null(hk_get(c, "protocol"));
	}
	/* Every byte the tap carried is counted on both sides. */
	assert_bytes(g, r, c2s_len, "gateway->relay");
	assert_bytes(r, g, s2c_len, "relay->gateway");
	hk_free(gw);
	hk_free(relay);
}

/* 32 bytes in hex, written AB:CD:... */
static void
assert_fingerprint(const struct hk_ev *ev, const char *key)
{
	const char *v = hk_get(ev, key);

	cr_assert_eq(strlen(v), 95u, "%s:%d: %s = %s", ev->file, ev->line, key, v);
	for (int i = 0; i < 95; i++)
		cr_assert(i % 3 == 2 ? v[i] == ':' : isxdigit((unsigned char)v[i]) != 0,
			  "%s:%d: %s = %s", ev->file, ev->line, key, v);
}

/* The certificate keys of side (peer_ or local_) in ev. */
static void
assert_cert(const struct hk_ev *ev, const char *side, const char *cn)
{
	static const char *const keys[] = { "subject", "issuer", "serial",
					    "sha256", "sig_alg", NULL };
	char k[64];
	const char *v;

	for (int i = 0; keys[i] != NULL; i++) {
		snprintf(k, sizeof(k), "%s%s", side, keys[i]);
		v = hk_get(ev, k);
		cr_assert(v != NULL && v[0] != '\0', "%s:%d: %s has no %s",
			  ev->file, ev->line, hk_get(ev, "event"), k);
	}
	snprintf(k, sizeof(k), "%ssubject", side);
	cr_assert_not_null(strstr(hk_get(ev, k), cn), "%s:%d: %s = %s", ev->file,
			   ev->line, k, hk_get(ev, k));
	snprintf(k, sizeof(k), "%sissuer", side);
	cr_assert_not_null(strstr(hk_get(ev, k), "tlsplex test CA"), "%s:%d",
			   ev->file, ev->line);
	snprintf(k, sizeof(k), "%ssha256", side);
	assert_fingerprint(ev, k);
	snprintf(k, sizeof(k), "%snot_before", side);
	cr_assert(hk_rfc3339(hk_get(ev, k)), "%s:%d: %s = %s", ev->file, ev->line,
		  k, hk_get(ev, k));
	snprintf(k, sizeof(k), "%snot_after", side);
	cr_assert(hk_rfc3339(hk_get(ev, k)), "%s:%d: %s = %s", ev->file, ev->line,
		  k, hk_get(ev, k));
	cr_assert_gt(strcmp(hk_get(ev, k), hk_get(ev, "ts")), 0,
		     "%s:%d: the certificate expired already", ev->file, ev->line);
	/* mkcerts.sh makes P-256 keys, signed with ECDSA and SHA-256. */
	snprintf(k, sizeof(k), "%skey_type", side);
	expect_str(ev, k, "EC");
	snprintf(k, sizeof(k), "%skey_bits", side);
	cr_assert_eq(hk_num(ev, k), 256);
	snprintf(k, sizeof(k), "%ssig_alg", side);
	cr_assert(strstr(hk_get(ev, k), "SHA256") || strstr(hk_get(ev, k), "sha256"),
		  "%s:%d: %s = %s", ev->file, ev->line, k, hk_get(ev, k));
}

/* Both certificates on an event of the gateway and one of the relay,
 * and each side's own is what the other saw. */
static void
assert_certs_cross(const struct hk_ev *g, const struct hk_ev *r)
{
	assert_cert(g, "peer_", "relay");
	assert_cert(g, "local_", "gw1");
	assert_cert(r, "peer_", "gw1");
	assert_cert(r, "local_", "relay");
	expect_str(g, "peer_sha256", hk_get(r, "local_sha256"));
	expect_str(r, "peer_sha256", hk_get(g, "local_sha256"));
	expect_str(g, "peer_serial", hk_get(r, "local_serial"));
	expect_str(g, "peer_not_after", hk_get(r, "local_not_after"));
	expect_str(r, "peer_not_after", hk_get(g, "local_not_after"));
}

Test(monitor, tls_link_reports_offsets_and_both_certificates)
{
	struct hk_log *gw, *relay;
	const struct hk_ev *g, *r;
	const uint8_t *c2s, *s2c;
	size_t c2s_len, s2c_len, oc, os;
	char hex[33], err[2048];

	start_echo("echo");
	start_tap();
	start_pair(TLS_RELAY, TLS_GW);
	wait_up();
	cr_assert_eq(h_echo_clients(P.svc_port, 3, 20000, 5, 20000, err,
				    sizeof(err)), 0, "%s", err);
	stop_and_check(&gw, &relay, 0);
	c2s = tap_bytes(P.tap, 0, TAP_C2S, &c2s_len);
	s2c = tap_bytes(P.tap, 0, TAP_S2C, &s2c_len);
	oc = neg_len(c2s, c2s_len);
	os = neg_len(s2c, s2c_len);
	/* TLS starts right there: a handshake record each way. */
	cr_assert_eq(c2s[oc], 0x16, "no TLS record at the gateway's offset");
	cr_assert_eq(s2c[os], 0x16, "no TLS record at the relay's offset");
	transcript_of(c2s, oc, s2c, os, hex);

	g = first_link(gw, "handshake_pending");
	r = first_link(relay, "handshake_pending");
	cr_assert_eq(hk_num(g, "tls_offset_out"), oc);
	cr_assert_eq(hk_num(g, "tls_offset_in"), os);
	cr_assert_eq(hk_num(r, "tls_offset_out"), os);
	cr_assert_eq(hk_num(r, "tls_offset_in"), oc);
	expect_str(g, "transcript", hex);
	expect_str(r, "transcript", hex);

	g = first_link(gw, "handshake_done");
	r = first_link(relay, "handshake_done");
	assert_certs_cross(g, r);
	expect_str(g, "protocol", "TLSv1.3");
	expect_str(r, "protocol", hk_get(g, "protocol"));
	expect_str(r, "cipher", hk_get(g, "cipher"));
	cr_assert_not_null(hk_get(g, "group"));

	g = first_link(gw, "link_closed");
	r = first_link(relay, "link_closed");
	expect_str(g, "outcome", "tls");
	expect_str(r, "outcome", "tls");
	expect_str(g, "protection", "tls");
	expect_str(g, "cipher", hk_get(r, "cipher"));
	assert_certs_cross(g, r);
	cr_assert_eq(hk_num(g, "streams"), 3);
	assert_bytes(g, r, c2s_len, "gateway->relay");
	assert_bytes(r, g, s2c_len, "relay->gateway");
	hk_free(gw);
	hk_free(relay);
}

/* TLS agreed, the handshake fails: handshake_failed (tls or verify) on
 * the side that found it, and an answer on the other too. */
static void
tls_fails(const char *relay_extra, const char *needle)
{
	struct hk_log *gw, *relay;
	const struct hk_ev *g;
	const uint8_t *c2s;
	size_t len, oc;

	start_tap();
	start_pair(relay_extra, TLS_GW);
	wait_events(P.gw_hooks, "handshake_failed", 1, 5000);
	wait_events(P.relay_hooks, "handshake_failed", 1, 5000);
	stop_and_check(&gw, &relay, 0);

	g = first_link(gw, "handshake_failed");
	cr_assert(hk_is(g, "stage", "tls") || hk_is(g, "stage", "verify"),
		  "%s:%d: stage %s", g->file, g->line, hk_get(g, "stage"));
	cr_assert_not_null(strstr(hk_get(g, "reason"), needle), "%s:%d: %s",
			   g->file, g->line, hk_get(g, "reason"));
	for (int side = 0; side < 2; side++) {
		const struct hk_ev *c = first_link(side ? relay : gw, "link_closed");

		expect_str(c, "outcome", "failed");
		expect_str(c, "protection", "none");
	}
	c2s = tap_bytes(P.tap, 0, TAP_C2S, &len);
	oc = neg_len(c2s, len);
	cr_assert_eq(hk_num(first_link(gw, "handshake_pending"), "tls_offset_out"), oc);
	cr_assert_eq(c2s[oc], 0x16);
	cr_assert_eq(h_file_count(P.gw_log, ") is up ("), 0);
	hk_free(gw);
	hk_free(relay);
}

Test(monitor, tls_failed_with_a_certificate_of_another_ca)
{
	tls_fails("tls = require\ncert = certs/rogue-relay.crt\n"
		  "key = certs/rogue-relay.key\nclient_cert = require\n",
		  "not signed by a CA");
}

Test(monitor, tls_failed_with_a_certificate_for_another_name)
{
	tls_fails("tls = require\ncert = certs/gw2.crt\nkey = certs/gw2.key\n"
		  "client_cert = require\n", "does not carry the name 'relay'");
}

/* ---- every handshake_pending answered ---------------------------------- */

/* A pair dialling through a gate in mode; waits until the gate holds
 * bytes both ways on its first connection, so both sides are stuck at
 * the gate's point, with handshake_pending reported. */
static void
start_gated(enum gate_mode mode, const char *relay_extra, const char *gw_extra)
{
	G = gate_start(P.relay_port, mode);
	start_pair_via(G->port, relay_extra, gw_extra);
	wait_events(P.gw_hooks, "handshake_pending", 1, 5000);
	wait_events(P.relay_hooks, "handshake_pending", 1, 5000);
	/* GATE_NEG: the ClientHello is held; the relay waits for it.
	 * GATE_APPDATA: each side's BIND is held. */
	cr_assert_eq(gate_wait_held(G, 0, TAP_C2S, 3000), 0, "the gateway sent "
		     "nothing the gate holds");
	if (mode == GATE_APPDATA)
		cr_assert_eq(gate_wait_held(G, 0, TAP_S2C, 3000), 0, "the relay "
			     "sent no BIND");
}

/* The first link of one side: handshake_failed at stage, reason holding
 * needle, then link_closed failed in state last_state. */
static void
expect_failed(const struct hk_log *log, const char *stage, const char *needle,
	      const char *last_state)
{
	const struct hk_ev *f = first_link(log, "handshake_failed");
	const struct hk_ev *c = first_link(log, "link_closed");

	expect_str(f, "stage", stage);
	cr_assert_not_null(strstr(hk_get(f, "reason"), needle), "%s:%d: reason "
			   "'%s' lacks '%s'", f->file, f->line, hk_get(f, "reason"),
			   needle);
	expect_str(c, "outcome", "failed");
	expect_str(c, "protection", "none");
	if (last_state != NULL)
		expect_str(c, "last_state", last_state);
	cr_assert_lt(f - log->ev, c - log->ev);
}

/* Both sides' timers run out at about the same time: the first to fire
 * reports stage timeout, the other may see the close first (transport). */
static void
expect_timed_out(const struct hk_log *gw, const struct hk_log *relay,
		 const char *needle, const char *last_state)
{
	int g = hk_is(first_link(gw, "handshake_failed"), "stage", "timeout");
	int r = hk_is(first_link(relay, "handshake_failed"), "stage", "timeout");

	cr_assert(g || r, "neither side reported the timeout");
	expect_failed(gw, g ? "timeout" : "transport", g ? needle : "", last_state);
	expect_failed(relay, r ? "timeout" : "transport", r ? needle : "",
		      last_state);
}

/* The gate's first connection carried the negotiation one way up to the
 * offset the gateway's hook reported, then TLS (held or not). */
static void
assert_gate_offsets(const struct hk_log *gw, int dir, const char *key)
{
	int first;
	size_t fwd = gate_forwarded(G, 0, dir, &first);
	const struct hk_ev *p = first_link(gw, "handshake_pending");

	if (G->mode == GATE_NEG)
		cr_assert_eq(hk_num(p, key), fwd, "%s %llu, the wire %zu", key,
			     (unsigned long long)hk_num(p, key), fwd);
	else
		cr_assert_lt(hk_num(p, key), fwd);
	cr_assert(first == -1 || first == (G->mode == GATE_NEG ? 0x16 : 0x17),
		  "the gate held a record of type %d", first);
}

Test(monitor, reset_during_the_handshake_is_answered_on_both_sides)
{
	struct hk_log *gw, *relay;

	start_gated(GATE_NEG, TLS_RELAY, TLS_GW);
	gate_cut(G);
	wait_events(P.gw_hooks, "handshake_failed", 1, 3000);
	wait_events(P.relay_hooks, "handshake_failed", 1, 3000);
	stop_and_check(&gw, &relay, 0);
	expect_failed(gw, "transport", "", "HANDSHAKE");
	expect_failed(relay, "transport", "", "HANDSHAKE");
	assert_gate_offsets(gw, TAP_C2S, "tls_offset_out");
	assert_gate_offsets(gw, TAP_S2C, "tls_offset_in");
	hk_free(gw);
	hk_free(relay);
}

Test(monitor, peer_killed_during_the_handshake_is_answered)
{
	struct hk_log *gw, *relay;

	start_gated(GATE_NEG, TLS_RELAY, TLS_GW);
	cr_assert_eq(kill(P.relay, SIGKILL), 0);
	wait_events(P.gw_hooks, "handshake_failed", 1, 3000);
	h_stop(P.relay, 2000);
	P.relay = 0;
	stop_clean(&P.gw, P.gw_log);
	gw = checked(P.gw_hooks, 0);
	relay = checked(P.relay_hooks, HK_KILLED);
	hk_check_pair(gw, relay, 0);
	expect_failed(gw, "transport", "", "HANDSHAKE");
	cr_assert_eq(hk_count(relay, "handshake_failed", NULL, NULL), 0);
	cr_assert_eq(hk_count(relay, "link_closed", NULL, NULL), 0);
	hk_free(gw);
	hk_free(relay);
}

Test(monitor, reset_between_handshake_and_bind_is_answered)
{
	struct hk_log *gw, *relay;

	start_gated(GATE_APPDATA, TLS_RELAY TLS12, TLS_GW TLS12);
	gate_cut(G);
	wait_events(P.gw_hooks, "handshake_failed", 1, 3000);
	wait_events(P.relay_hooks, "handshake_failed", 1, 3000);
	stop_and_check(&gw, &relay, 0);
	expect_failed(gw, "transport", "", "BINDING");
	expect_failed(relay, "transport", "", "BINDING");
	assert_gate_offsets(gw, TAP_C2S, "tls_offset_out");
	assert_gate_offsets(gw, TAP_S2C, "tls_offset_in");
	cr_assert_eq(hk_count(gw, "handshake_done", NULL, NULL), 0);
	hk_free(gw);
	hk_free(relay);
}

Test(monitor, keepalive_timeout_before_bind_is_answered)
{
	struct hk_log *gw, *relay;
	int64_t t;

	start_gated(GATE_APPDATA,
		    TLS_RELAY TLS12 "keepalive = 200ms\nkeepalive_timeout = 1s\n",
		    TLS_GW TLS12 "keepalive = 200ms\nkeepalive_timeout = 1s\n");
	t = h_now_ms();
	wait_events(P.relay_hooks, "handshake_failed", 1, 2500);
	wait_events(P.gw_hooks, "handshake_failed", 1, 2500);
	/* Before handshake_timeout (3 s): the keepalive found it. */
	cr_assert_lt(h_now_ms() - t, 2800);
	stop_and_check(&gw, &relay, 0);
	expect_timed_out(gw, relay, "keepalive_timeout", "BINDING");
	hk_free(gw);
	hk_free(relay);
}

Test(monitor, handshake_timeout_is_answered)
{
	struct hk_log *gw, *relay;

	start_gated(GATE_NEG, TLS_RELAY, TLS_GW);
	wait_events(P.relay_hooks, "handshake_failed", 1, 5000);
	wait_events(P.gw_hooks, "handshake_failed", 1, 5000);
	stop_and_check(&gw, &relay, 0);
	expect_timed_out(gw, relay, "handshake_timeout", "HANDSHAKE");
	hk_free(gw);
	hk_free(relay);
}

Test(monitor, shutdown_during_the_handshake_is_answered)
{
	struct hk_log *gw, *relay;
	const struct hk_ev *stop, *f;

	start_gated(GATE_NEG, TLS_RELAY, TLS_GW);
	stop_clean(&P.relay, P.relay_log);
	stop_and_check(&gw, &relay, 0);
	expect_failed(relay, "shutdown", "stopping", "HANDSHAKE");
	stop = hk_nth(relay, "daemon_stopping", NULL, NULL, 0);
	f = first_link(relay, "handshake_failed");
	cr_assert_not_null(stop);
	cr_assert_lt(stop - relay->ev, f - relay->ev);
	cr_assert_eq(hk_num(stop, "links_open"), 1);
	/* The gateway saw the relay go away in its handshake. */
	expect_failed(gw, "transport", "", "HANDSHAKE");
	hk_free(gw);
	hk_free(relay);
}

/* The gateway stopped while both sides wait for the other's BIND. */
Test(monitor, shutdown_between_handshake_and_bind_is_answered)
{
	struct hk_log *gw, *relay;

	start_gated(GATE_APPDATA, TLS_RELAY TLS12, TLS_GW TLS12);
	stop_and_check(&gw, &relay, 0);
	expect_failed(gw, "shutdown", "stopping", "BINDING");
	expect_failed(relay, "transport", "", "BINDING");
	cr_assert_eq(hk_count(gw, "handshake_done", NULL, NULL), 0);
	cr_assert_eq(hk_count(relay, "handshake_done", NULL, NULL), 0);
	hk_free(gw);
	hk_free(relay);
}

/*
 * The veto path (handshake_failed stage veto, last_state NOTIFYING, no
 * TLS byte on the wire after the negotiation, the gateway redialling) is
 * tested end to end with a real hook_command in test_sinks_e2e.c
 * (command_veto_refuses_the_link_before_any_tls_byte,
 * late_command_with_on_timeout_veto_refuses_the_link).
 */

/* ---- the dialler rejects the decision; a plaintext BIND mismatch ------- */

/* The relay decides plaintext for an offer a MITM stripped; the gateway
 * recomputes the decision and refuses it: the sides disagree. */
Test(monitor, dialler_rejecting_the_decision_is_refused_and_the_relay_failed)
{
	struct hk_log *gw, *relay;
	const struct hk_ev *g, *r;

	M = mitm_start(P.relay_port, mitm_strip_offer, NULL, 0);
	cr_assert_not_null(M);
	start_pair_via(mitm_port(M), RELAY_PREFER, TLS_GW);
	wait_events(P.gw_hooks, "link_closed", 1, 5000);
	wait_events(P.relay_hooks, "link_closed", 1, 5000);
	stop_and_check(&gw, &relay, HK_UNMATCHED_OK);

	g = first_link(gw, "link_refused");
	expect_str(g, "by", "local");
	expect_str(g, "reason_name", "DECISION_MISMATCH");
	expect_str(first_link(gw, "link_closed"), "outcome", "refused");
	cr_assert_eq(hk_count(gw, "plaintext_agreed", NULL, NULL), 0);
	r = first_link(relay, "plaintext_agreed");
	expect_str(first_link(relay, "link_closed"), "outcome", "failed");
	cr_assert_eq(hk_count(relay, "link_refused", NULL, NULL), 0);
	/* The relay's mux would have started after the two messages (the
	 * rewrite kept the OFFER's length); the gateway sent nothing after
	 * its OFFER. */
	cr_assert_eq(hk_num(r, "mux_offset_in"), mitm_neg_len(M, 0, MITM_C2S));
	cr_assert_eq(hk_num(r, "mux_offset_out"), mitm_neg_len(M, 0, MITM_S2C));
	{
		size_t len, neg = mitm_neg_len(M, 0, MITM_C2S);

		(void)mitm_bytes(M, 0, MITM_C2S, &len);
		cr_assert_eq(len, neg);
	}
	hk_free(gw);
	hk_free(relay);
}

static void
strip_both(struct mitm_edit *e, void *arg)
{
	if (e->dir == MITM_C2S) {
		e->msg.params.tls_mode = TLS_MODE_OFF;
		return;
	}
	if (e->msg.type != NEG_DECISION || e->other == NULL)
		return;
	e->msg.params.tls_mode = TLS_MODE_OFF;
	policy_decide(&e->other->params, &e->msg.params, &e->msg.outcome);
}

/* Both messages rewritten to plaintext: each side agrees plaintext over
 * its own transcript, and the BIND check fails the link on both. */
Test(monitor, plaintext_bind_mismatch_fails_both_sides)
{
	struct hk_log *gw, *relay;
	const char *tg, *tr;

	M = mitm_start(P.relay_port, strip_both, NULL, 0);
	cr_assert_not_null(M);
	start_pair_via(mitm_port(M), RELAY_PREFER, TLS_GW);
	wait_events(P.gw_hooks, "link_closed", 1, 5000);
	wait_events(P.relay_hooks, "link_closed", 1, 5000);
	stop_and_check(&gw, &relay, HK_UNMATCHED_OK);

	tg = hk_get(first_link(gw, "plaintext_agreed"), "transcript");
	tr = hk_get(first_link(relay, "plaintext_agreed"), "transcript");
	cr_assert_str_neq(tg, tr, "the MITM's rewrite left the transcripts equal");
	for (int side = 0; side < 2; side++) {
		const struct hk_ev *c = first_link(side ? relay : gw, "link_closed");

		expect_str(c, "outcome", "failed");
		expect_str(c, "protection", "none");
		cr_assert_eq(hk_num(c, "streams"), 0);
	}
	cr_assert_not_null(strstr(hk_get(first_link(gw, "link_closed"), "reason"),
				  "transcript mismatch"));
	hk_free(gw);
	hk_free(relay);
}

/* A MITM changes a field of the OFFER that the decision does not
 * depend on: both sides agree TLS and finish the handshake over
 * different transcripts, and BIND inside TLS fails the link. */
static void
tweak_offer(struct mitm_edit *e, void *arg)
{
	if (e->dir == MITM_C2S)
		e->msg.params.max_streams = e->msg.params.max_streams > 1 ?
			e->msg.params.max_streams - 1 : 2;
}

Test(monitor, tls_bind_mismatch_is_handshake_failed_at_stage_bind)
{
	struct hk_log *gw, *relay;
	const struct hk_ev *g, *r;
	int binds = 0;

	M = mitm_start(P.relay_port, tweak_offer, NULL, 0);
	cr_assert_not_null(M);
	start_pair_via(mitm_port(M), TLS_RELAY, TLS_GW);
	wait_events(P.gw_hooks, "link_closed", 1, 5000);
	wait_events(P.relay_hooks, "link_closed", 1, 5000);
	stop_and_check(&gw, &relay, HK_UNMATCHED_OK);

	g = first_link(gw, "handshake_failed");
	r = first_link(relay, "handshake_failed");
	/* The side that reads the other's BIND first names the mismatch;
	 * the other may see the close before the BIND. */
	binds = hk_is(g, "stage", "bind") + hk_is(r, "stage", "bind");
	cr_assert_geq(binds, 1, "no side failed at stage bind: %s / %s",
		      hk_get(g, "stage"), hk_get(r, "stage"));
	if (hk_is(g, "stage", "bind"))
		cr_assert_not_null(strstr(hk_get(g, "reason"), "transcript mismatch"));
	if (hk_is(r, "stage", "bind"))
		cr_assert_not_null(strstr(hk_get(r, "reason"), "transcript mismatch"));
	cr_assert_str_neq(hk_get(g, "transcript"), hk_get(r, "transcript"));
	for (int side = 0; side < 2; side++) {
		const struct hk_ev *c = first_link(side ? relay : gw, "link_closed");

		expect_str(c, "outcome", "failed");
		expect_str(c, "protection", "none");
		cr_assert_eq(hk_num(c, "streams"), 0);
	}
	cr_assert_eq(hk_count(gw, "handshake_done", NULL, NULL), 0);
	/* TLS started on the wire where the gateway said it would. */
	cr_assert_eq(hk_num(first_link(gw, "handshake_pending"), "tls_offset_out"),
		     mitm_neg_len(M, 0, MITM_C2S));
	cr_assert_eq(hk_num(first_link(gw, "handshake_pending"), "tls_offset_in"),
		     mitm_neg_len(M, 0, MITM_S2C));
	hk_free(gw);
	hk_free(relay);
}

/* ---- identity across restarts, rotation, daemon events ------------------- */

Test(monitor, link_ids_restart_per_instance_and_stay_unique_with_it)
{
	struct hk_log *gw, *relay;
	const struct hk_ev *a, *b;

	start_pair(PLAIN, PLAIN);
	wait_up();
	stop_clean(&P.relay, P.relay_log);
	start_relay(PLAIN, "");
	{
		int64_t end = h_now_ms() + 10000;

		while (h_file_count(P.gw_log, ") is up (") < 2 && h_now_ms() < end)
			h_sleep_ms(20);
	}
	cr_assert_eq(h_file_count(P.gw_log, ") is up ("), 2, "%s",
		     h_read_file(P.gw_log, NULL));
	stop_and_check(&gw, &relay, 0);

	/* Two instances in one file, each with its link 1; hk_check found
	 * each (instance, link) once. */
	cr_assert_eq(hk_count(relay, "daemon_started", NULL, NULL), 2);
	cr_assert_eq(hk_count(relay, "daemon_stopping", NULL, NULL), 2);
	a = hk_nth(relay, "link_opened", "link", "1", 0);
	b = hk_nth(relay, "link_opened", "link", "1", 1);
	cr_assert(a != NULL && b != NULL, "link 1 in each instance expected");
	cr_assert_str_neq(hk_get(a, "instance"), hk_get(b, "instance"));
	cr_assert_str_neq(hk_get(a, "pid"), hk_get(b, "pid"));
	cr_assert_eq(hk_count(relay, "link_closed", "outcome", "plaintext"), 2);
	/* The gateway's one instance saw both links, numbered on. */
	cr_assert_eq(hk_count(gw, "daemon_started", NULL, NULL), 1);
	cr_assert_geq(hk_count(gw, "link_closed", "outcome", "plaintext"), 2);
	hk_free(gw);
	hk_free(relay);
}

Test(monitor, sighup_reopens_the_file_and_loses_nothing)
{
	static const char junk[] = "not tlsplex";
	char old[700];
	const char *both[2];
	struct hk_log *a, *b, *all;
	const struct hk_ev *last, *first;

	start_relay(PLAIN, "");
	poke(P.relay_port, junk, sizeof(junk) - 1);
	wait_events(P.relay_hooks, "link_closed", 1, 3000);
	snprintf(old, sizeof(old), "%s.1", P.relay_hooks);
	cr_assert_eq(rename(P.relay_hooks, old), 0);
	cr_assert_eq(kill(P.relay, SIGHUP), 0);
	cr_assert_eq(h_wait_file_contains(P.relay_log, "configuration reloaded",
					  5000), 0, "%s",
		     h_read_file(P.relay_log, NULL));
	poke(P.relay_port, junk, sizeof(junk) - 1);
	wait_events(P.relay_hooks, "link_closed", 1, 3000);
	stop_clean(&P.relay, P.relay_log);

	a = checked(old, HK_ROTATED);
	b = checked(P.relay_hooks, HK_RESUMED);
	both[0] = old;
	both[1] = P.relay_hooks;
	all = hk_load(both, 2);
	hk_check(all, h_now_ms() - T0 + 1, 0);
	cr_assert_gt(a->n, 0);
	cr_assert_gt(b->n, 0);
	last = &a->ev[a->n - 1];
	first = &b->ev[0];
	cr_assert_eq(hk_num(first, "seq"), hk_num(last, "seq") + 1,
		     "seq %llu in the old file, then %llu in the new",
		     (unsigned long long)hk_num(last, "seq"),
		     (unsigned long long)hk_num(first, "seq"));
	cr_assert_str_eq(hk_get(first, "instance"), hk_get(last, "instance"));
	/* Nothing after the rotation went to the old file. */
	cr_assert_eq(hk_count(a, "daemon_started", NULL, NULL), 1);
	cr_assert_eq(hk_count(a, "link_opened", NULL, NULL), 1);
	cr_assert_eq(hk_count(a, "daemon_reloaded", NULL, NULL), 0);
	expect_str(hk_nth(b, "daemon_reloaded", NULL, NULL, 0), "result", "ok");
	cr_assert_eq(hk_count(b, "link_opened", "link", "2"), 1);
	cr_assert_eq(hk_count(b, "daemon_stopping", NULL, NULL), 1);
	hk_free(a);
	hk_free(b);
	hk_free(all);
}

/* logrotate sends SIGHUP whatever the state of the configuration file: a
 * reload that is rejected still lets the rotated file go. */
Test(monitor, sighup_with_a_rejected_configuration_still_reopens_the_file)
{
	static const char junk[] = "not tlsplex";
	char old[700], conf[700];
	const char *both[2];
	struct hk_log *a, *b, *all;
	const struct hk_ev *e;
	char *good;

	start_relay(PLAIN, "");
	snprintf(conf, sizeof(conf), "%s/relay.ini", P.dir);
	good = h_read_file(conf, NULL);
	cr_assert_not_null(good);
	snprintf(old, sizeof(old), "%s.1", P.relay_hooks);
	cr_assert_eq(rename(P.relay_hooks, old), 0);
	cr_assert_eq(h_write_file(conf, "%sbogus = 1\n", good), 0);
	cr_assert_eq(kill(P.relay, SIGHUP), 0);
	cr_assert_eq(h_wait_file_contains(P.relay_log, "reload rejected", 5000), 0,
		     "%s", h_read_file(P.relay_log, NULL));
	poke(P.relay_port, junk, sizeof(junk) - 1);
	wait_events(P.relay_hooks, "link_closed", 1, 3000);
	cr_assert_eq(h_write_file(conf, "%s", good), 0);
	free(good);
	stop_clean(&P.relay, P.relay_log);

	a = checked(old, HK_ROTATED);
	b = checked(P.relay_hooks, HK_RESUMED);
	both[0] = old;
	both[1] = P.relay_hooks;
	all = hk_load(both, 2);
	hk_check(all, h_now_ms() - T0 + 1, 0);
	e = hk_nth(b, "daemon_reloaded", NULL, NULL, 0);
	cr_assert_not_null(e, "the rejected reload's event is not in the new file");
	expect_str(e, "result", "rejected");
	cr_assert_eq(hk_count(a, "daemon_reloaded", NULL, NULL), 0);
	cr_assert_eq(hk_count(a, "link_opened", NULL, NULL), 0);
	cr_assert_eq(hk_count(b, "link_opened", NULL, NULL), 1);
	hk_free(a);
	hk_free(b);
	hk_free(all);
}

/* ---- the checker itself ------------------------------------------------ */

#define SYN_HEAD(role, node) "\"v\":2,\"instance\":\"0123456789abcdef\"," \
	"\"node\":\"" node "\",\"pid\":42,\"role\":\"" role "\""
#define SYN_LINK(tls_role) ",\"tls_role\":\"" tls_role "\"," \
	"\"local\":\"127.0.0.1:7000\",\"local_ip\":\"127.0.0.1\"," \
	"\"local_port\":7000,\"peer\":\"127.0.0.1:5000\"," \
	"\"peer_ip\":\"127.0.0.1\",\"peer_port\":5000"
#define SYN_TR ",\"transcript\":\"00112233445566778899aabbccddeeff\""
#define SYN_R SYN_HEAD("relay", "relay") SYN_LINK("server")

enum { SYN_STARTED, SYN_OPENED, SYN_PENDING, SYN_DONE, SYN_CLOSED,
       SYN_STOPPING, SYN_N };

/* A relay's stream with one TLS link, as the daemon writes it. */
static const char *const syn_good[SYN_N] = {
	"\"event\":\"daemon_started\"," SYN_HEAD("relay", "relay")
	",\"version\":\"0.1.0\",\"config\":\"relay.ini\"",
	"\"event\":\"link_opened\",\"link\":1," SYN_R ",\"direction\":\"in\"",
	"\"event\":\"handshake_pending\",\"link\":1," SYN_R SYN_TR
	",\"tls_offset_out\":60,\"tls_offset_in\":70",
	"\"event\":\"handshake_done\",\"link\":1," SYN_R SYN_TR
	",\"protocol\":\"TLSv1.3\",\"duration_ms\":5",
	"\"event\":\"link_closed\",\"link\":1," SYN_R SYN_TR
	",\"reason\":\"closed\",\"outcome\":\"tls\",\"protection\":\"tls\","
	"\"last_state\":\"UP\",\"start_ts\":\"2026-12-01T20:00:00.000000Z\","
	"\"protocol\":\"TLSv1.3\",\"duration_ms\":9,\"bytes_in\":1,"
	"\"bytes_out\":1,\"streams\":1",
	"\"event\":\"daemon_stopping\"," SYN_HEAD("relay", "relay")
	",\"reason\":\"SIGTERM\",\"links_open\":1",
};

/* Writes lines (NULL entries left out) as a hook file: ts and seq
 * added, seq skipping one number before line gap_at (-1: no gap). */
static void
syn_write(const char *path, const char *const *lines, int n, int gap_at)
{
	FILE *f = fopen(path, "w");
	int seq = 0;

	cr_assert_not_null(f);
	for (int i = 0; i < n; i++) {
		if (lines[i] == NULL)
			continue;
		seq += 1 + (i == gap_at);
		fprintf(f, "{\"ts\":\"2026-12-01T20:00:00.%06dZ\",\"seq\":%d,%s}\n",
			i, seq, lines[i]);
	}
	fclose(f);
}

struct syn_probe {
	const char *file, *other;
	int64_t max_ms;
};

/* The logs of the probe running: freed by syn_probe_run(), also when a
 * check jumped out of syn_check(). */
static struct hk_log *syn_logs[2];

static void
syn_check(void *arg)
{
	struct syn_probe *p = arg;

	syn_logs[0] = hk_load1(p->file);
	hk_check(syn_logs[0], p->max_ms, 0);
	if (p->other != NULL) {
		syn_logs[1] = hk_load1(p->other);
		hk_check(syn_logs[1], p->max_ms, 0);
		hk_check_pair(syn_logs[1], syn_logs[0], 0);
	}
}

static const char *
syn_probe_run(struct syn_probe *p)
{
	const char *msg = hk_probe(syn_check, p);

	hk_free(syn_logs[0]);
	hk_free(syn_logs[1]);
	syn_logs[0] = syn_logs[1] = NULL;
	return msg;
}

/* The checker on lines: NULL if it passed, else its message. */
static const char *
syn_run(const char *const *lines, int n, int gap_at, int64_t max_ms)
{
	static char path[700];
	struct syn_probe p = { path, NULL, max_ms };

	snprintf(path, sizeof(path), "%s/syn.jsonl", P.dir);
	syn_write(path, lines, n, gap_at);
	return syn_probe_run(&p);
}

/* The checker finds each broken invariant in a stream that differs from
 * a good one by that alone. */
Test(monitor, checker_rejects_each_broken_invariant)
{
	static const char failed[] = "\"event\":\"handshake_failed\",\"link\":1,"
		SYN_R SYN_TR ",\"stage\":\"tls\",\"reason\":\"x\"";
	static const char failed_nostage[] = "\"event\":\"handshake_failed\","
		"\"link\":1," SYN_R SYN_TR ",\"reason\":\"x\"";
	static const char late_open[] = "\"event\":\"link_opened\",\"link\":2,"
		SYN_R ",\"direction\":\"in\"";
	const char *lines[SYN_N + 2];
	struct { int drop, dup, gap; const char *replace_at[SYN_N + 1];
		 const char *insert; int insert_at; int64_t max_ms;
		 const char *want; } cases[] = {
		{ -1, -1, -1, { NULL }, NULL, 0, 60000, NULL },
		{ SYN_DONE, -1, -1, { NULL }, NULL, 0, 60000, "unanswered" },
		{ -1, SYN_CLOSED, -1, { NULL }, NULL, 0, 60000, "after its link_closed" },
		{ -1, -1, SYN_CLOSED, { NULL }, NULL, 0, 60000, "no gap" },
		{ -1, -1, -1, { NULL }, failed, SYN_CLOSED, 60000, "answered twice" },
		{ SYN_CLOSED, -1, -1, { NULL }, NULL, 0, 60000, "never closed" },
		{ SYN_STARTED, -1, -1, { NULL }, NULL, 0, 60000, "starts with" },
		{ SYN_STOPPING, -1, -1, { NULL }, NULL, 0, 60000, "no daemon_stopping" },
		{ -1, -1, -1, { NULL }, late_open, SYN_N, 60000, "after daemon_stopping" },
		{ -1, -1, -1, { NULL }, NULL, 0, 5, "longer than the test" },
		{ SYN_DONE, -1, -1, { NULL }, failed_nostage, SYN_CLOSED, 60000,
		  "stage" },
		{ SYN_DONE, -1, -1, { NULL }, failed, SYN_CLOSED, 60000,
		  "outcome tls without handshake_done" },
	};

	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		int n = 0;
		const char *msg;

		for (int i = 0; i <= SYN_N; i++) {
			if (i == cases[c].insert_at && cases[c].insert != NULL)
				lines[n++] = cases[c].insert;
			if (i == SYN_N)
				break;
			if (i != cases[c].drop)
				lines[n++] = syn_good[i];
			if (i == cases[c].dup)
				lines[n++] = syn_good[i];
		}
		msg = syn_run(lines, n, cases[c].gap < 0 ? -1 :
			      cases[c].gap + (cases[c].dup >= 0 &&
					      cases[c].dup < cases[c].gap),
			      cases[c].max_ms);
		if (cases[c].want == NULL)
			cr_assert_null(msg, "case %zu: the good stream fails: %s", c, msg);
		else
			cr_assert(msg != NULL && strstr(msg, cases[c].want) != NULL,
				  "case %zu: expected a failure naming '%s', got: %s",
				  c, cases[c].want, msg ? msg : "(passed)");
	}
}

/* One key of the good stream changed: the schema version, an outcome
 * that contradicts the events, a transcript that changes. */
Test(monitor, checker_rejects_bad_values_and_disagreeing_sides)
{
	static const struct { int line; const char *from, *to, *want; } cases[] = {
		{ SYN_OPENED, "\"v\":2", "\"v\":1", "schema version" },
		{ SYN_CLOSED, "\"outcome\":\"tls\"", "\"outcome\":\"plaintext\"",
		  "without plaintext_agreed" },
		{ SYN_CLOSED, "\"outcome\":\"tls\",\"protection\":\"tls\"",
		  "\"outcome\":\"aborted\",\"protection\":\"none\"",
		  "handshake_done but outcome aborted" },
		{ SYN_CLOSED, "\"outcome\":\"tls\"", "\"outcome\":\"sideways\"",
		  "outcome sideways" },
		{ SYN_CLOSED, "\"protection\":\"tls\"", "\"protection\":\"none\"",
		  "without handshake_done" },
		{ SYN_CLOSED, ",\"outcome\":\"tls\"", "", "outcome (null)" },
		{ SYN_CLOSED, "aabbccddeeff", "aabbccddeefe", "transcript" },
		{ SYN_PENDING, ",\"tls_offset_in\":70", "", "tls_offset_in" },
		{ SYN_OPENED, "\"tls_role\":\"server\"", "\"tls_role\":\"client\"",
		  "tls_role" },
		{ SYN_OPENED, "\"direction\":\"in\"", "\"direction\":\"out\"",
		  "direction" },
	};
	char buf[SYN_N][2048];
	const char *lines[SYN_N], *msg;
	char gwpath[700];
	struct syn_probe p;

	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		const char *at;

		for (int i = 0; i < SYN_N; i++)
			lines[i] = syn_good[i];
		at = strstr(syn_good[cases[c].line], cases[c].from);
		cr_assert_not_null(at, "case %zu", c);
		snprintf(buf[0], sizeof(buf[0]), "%.*s%s%s",
			 (int)(at - syn_good[cases[c].line]),
			 syn_good[cases[c].line], cases[c].to,
			 at + strlen(cases[c].from));
		lines[cases[c].line] = buf[0];
		msg = syn_run(lines, SYN_N, -1, 60000);
		cr_assert(msg != NULL && strstr(msg, cases[c].want) != NULL,
			  "case %zu: expected a failure naming '%s', got: %s", c,
			  cases[c].want, msg ? msg : "(passed)");
	}

	/* Both sides of one link: the gateway's stream is the relay's with
	 * the roles swapped; the join passes, then fails on a changed
	 * outcome and on a transcript the relay does not know. */
	snprintf(gwpath, sizeof(gwpath), "%s/syn-gw.jsonl", P.dir);
	p.file = NULL;
	p.other = gwpath;
	p.max_ms = 60000;
	for (int variant = 0; variant < 3; variant++) {
		char relay[700];
		const char *want[3] = { NULL, "disagree", "is not in" };

		for (int i = 0; i < SYN_N; i++) {
			const char *s = syn_good[i];
			char *o = buf[i];
			size_t k = 0;

			/* role, node, tls_role, direction of the gateway */
			while (*s != '\0' && k + 16 < sizeof(buf[i])) {
				static const char *const sw[][2] = {
					{ "\"role\":\"relay\"", "\"role\":\"gateway\"" },
					{ "\"node\":\"relay\"", "\"node\":\"gw1\"" },
					{ "\"tls_role\":\"server\"", "\"tls_role\":\"client\"" },
					{ "\"direction\":\"in\"", "\"direction\":\"out\"" },
				};
				size_t w;

				for (w = 0; w < 4; w++)
					if (strncmp(s, sw[w][0], strlen(sw[w][0])) == 0)
						break;
				if (w < 4) {
					k += (size_t)snprintf(o + k, sizeof(buf[i]) - k,
							      "%s", sw[w][1]);
					s += strlen(sw[w][0]);
				} else {
					o[k++] = *s++;
				}
			}
			o[k] = '\0';
			lines[i] = o;
		}
		if (variant == 1) {
			/* A gateway whose handshake failed while the relay's
			 * link came up. */
			static char failed[2048], closed[2048];
			const char *d = buf[SYN_DONE], *c = buf[SYN_CLOSED];
			const char *at = strstr(d, ",\"protocol\"");
			const char *oc = strstr(c, "\"outcome\":\"tls\","
						"\"protection\":\"tls\"");

			cr_assert(at != NULL && oc != NULL);
			snprintf(failed, sizeof(failed), "%.*s,\"stage\":\"tls\","
				 "\"reason\":\"closed\"", (int)(at - d), d);
			memcpy(strstr(failed, "handshake_done"), "handshake_fail", 14);
			memmove(strstr(failed, "handshake_fail") + 16,
				strstr(failed, "handshake_fail") + 14,
				strlen(strstr(failed, "handshake_fail") + 14) + 1);
			memcpy(strstr(failed, "handshake_fail") + 14, "ed", 2);
			snprintf(closed, sizeof(closed), "%.*s\"outcome\":\"failed\","
				 "\"protection\":\"none\"%s", (int)(oc - c), c,
				 oc + strlen("\"outcome\":\"tls\",\"protection\":"
					     "\"tls\""));
			lines[SYN_DONE] = failed;
			lines[SYN_CLOSED] = closed;
		}
		if (variant == 2)
			for (int i = SYN_PENDING; i <= SYN_CLOSED; i++) {
				char *t = strstr(buf[i], "aabbccddeeff");

				if (t != NULL)
					memcpy(t, "aabbccddeefe", 12);
			}
		syn_write(gwpath, lines, SYN_N, -1);
		snprintf(relay, sizeof(relay), "%s/syn-relay.jsonl", P.dir);
		syn_write(relay, syn_good, SYN_N, -1);
		p.file = relay;
		msg = syn_probe_run(&p);
		if (want[variant] == NULL)
			cr_assert_null(msg, "the two sides of a good link fail: %s", msg);
		else
			cr_assert(msg != NULL && strstr(msg, want[variant]) != NULL,
				  "variant %d: expected '%s', got: %s", variant,
				  want[variant], msg ? msg : "(passed)");
	}
}
