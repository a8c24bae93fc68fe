/* bclient: the benchmark client.  Every wait is bounded.
 *
 *   bclient up   ADDR SIZE NSTREAMS [TIMEOUT_S]   upload SIZE bytes per stream
 *   bclient down ADDR SIZE NSTREAMS [TIMEOUT_S]   download SIZE bytes per stream
 *   bclient ping ADDR COUNT MSGSIZE [BULK_ADDR]   ping-pong round trips; with
 *                                                BULK_ADDR, one download runs
 *                                                through BULK_ADDR meanwhile
 *   bclient idle ADDR N [INFLIGHT] [TIMEOUT_S]    open N connections, one echo
 *                                                byte each, print "ready N",
 *                                                hold until stdin closes
 *   bclient rr ADDR NCLIENTS MIN MAX SECS [WARM_S]
 *                                                NCLIENTS connections doing
 *                                                back-to-back echo requests
 *                                                of MIN..MAX random bytes
 *   bclient mixed ADDR NCLIENTS RATE MSGSIZE NBULK SECS [WARM_S [BULK_ADDR]]
 *                                                NCLIENTS connections sending
 *                                                RATE echo requests/s each on
 *                                                a schedule, beside NBULK
 *                                                downloads
 *
 * Output is one line of key=value pairs; the exit status is 0 on success. */
#define _GNU_SOURCE
#include "common.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <netinet/tcp.h>

#define CHUNK (256 * 1024)

static struct sockaddr_in g_sa;
static int g_timeout = 120;

static int dial(const struct sockaddr_in *sa, int timeout_s)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct timeval tv = { .tv_sec = timeout_s, .tv_usec = 0 };
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int send_all(int fd, const void *p, size_t n)
{
	const unsigned char *b = p;
	while (n) {
		ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

static int recv_all(int fd, void *p, size_t n)
{
	unsigned char *b = p;
	while (n) {
		ssize_t r = recv(fd, b, n, 0);
		if (r <= 0) {
			if (r < 0 && errno == EINTR)
				continue;
			return -1;
		}
		b += r;
		n -= (size_t)r;
	}
	return 0;
}

/* ---- bulk ---- */

struct bulk {
	pthread_t th;
	int fd;
	char mode;
	uint64_t size, done;
	int ok;
	double t_end;
};

static pthread_barrier_t g_bar;

static void *bulk_run(void *arg)
{
	struct bulk *b = arg;
	static __thread unsigned char buf[CHUNK];
	unsigned char h[HDR_LEN];

	pthread_barrier_wait(&g_bar);
	if (b->fd < 0)
		return NULL;
	hdr_make(h, b->mode, b->size);
	if (send_all(b->fd, h, HDR_LEN) < 0)
		return NULL;
	if (b->mode == 'U') {
		memset(buf, 'u', sizeof(buf));
		while (b->done < b->size) {
			size_t n = b->size - b->done < CHUNK ? (size_t)(b->size - b->done) : CHUNK;
			if (send_all(b->fd, buf, n) < 0)
				return NULL;
			b->done += n;
		}
		char k;
		if (recv_all(b->fd, &k, 1) < 0 || k != 'K')
			return NULL;
	} else {
		while (b->done < b->size) {
			size_t want = b->size - b->done < CHUNK ? (size_t)(b->size - b->done) : CHUNK;
			ssize_t r = recv(b->fd, buf, want, 0);
			if (r <= 0) {
				if (r < 0 && errno == EINTR)
					continue;
				return NULL;
			}
			b->done += (uint64_t)r;
		}
	}
	b->t_end = now_s();
	b->ok = 1;
	return NULL;
}

static int cmd_bulk(char mode, int argc, char **argv)
{
	if (argc < 3)
		return 2;
	uint64_t size = size_parse(argv[1]);
	int n = atoi(argv[2]);
	if (argc > 3)
		g_timeout = atoi(argv[3]);
	if (n < 1 || n > 1024 || size == 0)
		return 2;
	struct bulk *bs = calloc((size_t)n, sizeof(*bs));
	pthread_barrier_init(&g_bar, NULL, (unsigned)n + 1);
	int failed = 0;
	for (int i = 0; i < n; i++) {
		bs[i].mode = mode;
		bs[i].size = size;
		bs[i].fd = dial(&g_sa, g_timeout);
		if (bs[i].fd < 0)
			failed = 1;
		pthread_create(&bs[i].th, NULL, bulk_run, &bs[i]);
	}
	double t0 = now_s();
	pthread_barrier_wait(&g_bar);
	double t1 = t0;
	uint64_t total = 0;
	for (int i = 0; i < n; i++) {
		pthread_join(bs[i].th, NULL);
		if (!bs[i].ok)
			failed = 1;
		if (bs[i].t_end > t1)
			t1 = bs[i].t_end;
		total += bs[i].done;
		if (bs[i].fd >= 0)
			close(bs[i].fd);
	}
	double secs = t1 - t0;
	printf("ok=%d bytes=%llu secs=%.4f mbps=%.1f\n", !failed, (unsigned long long)total, secs,
	       secs > 0 ? (double)total / secs / 1e6 : 0.0);
	return failed;
}

/* ---- ping-pong ---- */

static volatile int g_bulk_stop;
static struct bulk g_bg;

/* Background download (ping beside bulk, mixed): reads until
 * g_bulk_stop; b->done counts the bytes, b->ok is cleared on a read
 * error or end of stream before the stop. */
static void *bg_run(void *arg)
{
	struct bulk *b = arg;
	static __thread unsigned char buf[CHUNK];
	unsigned char h[HDR_LEN];
	hdr_make(h, 'D', 1ull << 50);
	if (send_all(b->fd, h, HDR_LEN) < 0)
		return NULL;
	b->ok = 1;
	while (!g_bulk_stop) {
		ssize_t r = recv(b->fd, buf, sizeof(buf), 0);
		if (r <= 0) {
			if (r < 0 && errno == EINTR)
				continue;
			if (!g_bulk_stop)
				b->ok = 0;
			break;
		}
		__atomic_fetch_add(&b->done, (uint64_t)r, __ATOMIC_RELAXED);
	}
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int cmd_ping(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	int count = atoi(argv[1]);
	size_t msz = (size_t)atoi(argv[2]);
	if (count < 1 || msz < 1 || msz > 65536)
		return 2;
	int bulk = argc > 3;
	unsigned char buf[65536], h[HDR_LEN];
	uint64_t *rtt = calloc((size_t)count, sizeof(*rtt));
	double bg_t0 = 0;
	g_bg.fd = -1;

	if (bulk) {
		struct sockaddr_in bsa;
		if (addr_parse(argv[3], &bsa) < 0)
			return 2;
		g_bg.fd = dial(&bsa, 30);
		if (g_bg.fd < 0) {
			printf("ok=0 err=bulk_connect\n");
			return 1;
		}
		pthread_create(&g_bg.th, NULL, bg_run, &g_bg);
		usleep(500000);
		bg_t0 = now_s();
		g_bg.size = g_bg.done;
	}
	int fd = dial(&g_sa, 30), ok = 0;
	if (fd < 0) {
		printf("ok=0 err=connect\n");
		goto out;
	}
	hdr_make(h, 'P', 0);
	if (send_all(fd, h, HDR_LEN) < 0)
		goto out;
	memset(buf, 'p', msz);
	int warm = count / 10 < 100 ? (count < 100 ? 0 : 100) : count / 10;
	const char *cap = getenv("PING_MAX_S");
	double max_s = cap ? atof(cap) : 30.0, stop_at = 0;
	for (int i = -warm; i < count; i++) {
		if (i == 0)
			stop_at = now_s() + max_s;
		if (i > 0 && (i & 63) == 0 && now_s() > stop_at) {
			count = i;
			break;
		}
		uint64_t t = now_ns();
		if (send_all(fd, buf, msz) < 0 || recv_all(fd, buf, msz) < 0) {
			printf("ok=0 err=io at=%d\n", i);
			goto out;
		}
		if (i >= 0)
			rtt[i] = now_ns() - t;
	}
	ok = 1;
	qsort(rtt, (size_t)count, sizeof(*rtt), cmp_u64);
	double sum = 0;
	for (int i = 0; i < count; i++)
		sum += (double)rtt[i];
	printf("ok=1 n=%d p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f mean_us=%.1f", count,
	       rtt[count / 2] / 1e3, rtt[(size_t)(count * 0.99)] / 1e3,
	       rtt[(size_t)(count * 0.999)] / 1e3, rtt[count - 1] / 1e3, sum / count / 1e3);
	if (bulk) {
		double secs = now_s() - bg_t0;
		printf(" bulk_mbps=%.1f", (double)(g_bg.done - g_bg.size) / secs / 1e6);
	}
	printf("\n");
out:
	if (bulk) {
		g_bulk_stop = 1;
		shutdown(g_bg.fd, SHUT_RDWR);
		pthread_join(g_bg.th, NULL);
		close(g_bg.fd);
	}
	if (fd >= 0)
		close(fd);
	free(rtt);
	return !ok;
}

/* ---- many request/response connections (rr, mixed) ---- */

/* One echo connection of rr or mixed, at most one request outstanding.
 * A request is random bytes; the backend's echo must match it byte for
 * byte, or the run fails. */
struct rq {
	int fd, idx;
	int busy;      /* a request is outstanding */
	int out_armed; /* EPOLLOUT is in the interest set */
	uint64_t rng;
	size_t len, sent, got;
	uint64_t t_start; /* send time (rr) or scheduled send time (mixed), ns */
	uint64_t due;     /* mixed: scheduled time of the next request, ns */
	long done;        /* requests completed in the measured window */
	unsigned char *req;
};

static const char *g_rq_err;

/* xorshift64*: request sizes and contents */
static uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 2685821657736338717ull;
}

struct lat {
	uint64_t *v;
	size_t n, cap;
};

static int lat_add(struct lat *l, uint64_t ns)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : (size_t)1 << 16;
		uint64_t *v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return -1;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = ns;
	return 0;
}

/* Prints " p50_us=... p99_us=... p999_us=... max_us=... mean_us=..." */
static void lat_print(struct lat *l)
{
	size_t n = l->n;
	double sum = 0;
	qsort(l->v, n, sizeof(*l->v), cmp_u64);
	for (size_t i = 0; i < n; i++)
		sum += (double)l->v[i];
	printf(" p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f mean_us=%.1f", l->v[n / 2] / 1e3,
	       l->v[(size_t)(n * 0.99)] / 1e3, l->v[(size_t)(n * 0.999)] / 1e3, l->v[n - 1] / 1e3,
	       sum / (double)n / 1e3);
}

static void rq_events(int ep, struct rq *c, uint32_t ev)
{
	struct epoll_event e = { .events = ev, .data.ptr = c };
	epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
}

/* Connects, sends the echo header, makes the socket nonblocking and adds
 * it to ep (EPOLLIN). */
static int rq_open(struct rq *c, int ep, int idx, size_t maxlen)
{
	unsigned char h[HDR_LEN];
	c->idx = idx;
	c->rng = 0x9e3779b97f4a7c15ull * (uint64_t)(idx + 1) ^ now_ns();
	c->req = malloc(maxlen);
	c->fd = dial(&g_sa, 30);
	if (!c->req || c->fd < 0) {
		g_rq_err = "connect";
		return -1;
	}
	hdr_make(h, 'P', 0);
	if (send_all(c->fd, h, HDR_LEN) < 0) {
		g_rq_err = "send_header";
		return -1;
	}
	fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
	struct epoll_event e = { .events = EPOLLIN, .data.ptr = c };
	return epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e);
}

/* Sends what is left of the request; arms EPOLLOUT while the socket is full. */
static int rq_send(int ep, struct rq *c)
{
	while (c->sent < c->len) {
		ssize_t w = send(c->fd, c->req + c->sent, c->len - c->sent, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				if (!c->out_armed)
					rq_events(ep, c, EPOLLIN | EPOLLOUT);
				c->out_armed = 1;
				return 0;
			}
			g_rq_err = "send";
			return -1;
		}
		c->sent += (size_t)w;
	}
	if (c->out_armed)
		rq_events(ep, c, EPOLLIN);
	c->out_armed = 0;
	return 0;
}

/* Starts a request of len random bytes, timed from t_start. */
static int rq_begin(int ep, struct rq *c, size_t len, uint64_t t_start)
{
	for (size_t i = 0; i < len; i += 8) {
		uint64_t x = rng_next(&c->rng);
		memcpy(c->req + i, &x, len - i < 8 ? len - i : 8);
	}
	c->len = len;
	c->sent = c->got = 0;
	c->busy = 1;
	c->t_start = t_start;
	return rq_send(ep, c);
}

/* Reads echoed bytes and checks them; returns 1 when the whole response
 * is in, 0 if more must come, -1 on error or wrong bytes. */
static int rq_read(struct rq *c)
{
	unsigned char buf[65536];
	for (;;) {
		size_t want = c->busy ? c->len - c->got : 1;
		ssize_t r = recv(c->fd, buf, want, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			g_rq_err = "recv";
			return -1;
		}
		if (r == 0) {
			g_rq_err = "closed";
			return -1;
		}
		if (!c->busy || c->got + (size_t)r > c->sent) {
			g_rq_err = "unexpected_bytes";
			return -1;
		}
		if (memcmp(buf, c->req + c->got, (size_t)r) != 0) {
			g_rq_err = "wrong_bytes";
			return -1;
		}
		c->got += (size_t)r;
		if (c->got == c->len) {
			c->busy = 0;
			return 1;
		}
	}
}

/* One epoll event of c: sends what is pending, reads what arrived.
 * Returns -1 on error, 1 when an answer is complete, 0 otherwise. */
static int rq_event(int ep, const struct epoll_event *ev, struct rq *c)
{
	if ((ev->events & EPOLLOUT) && rq_send(ep, c) < 0)
		return -1;
	if (!(ev->events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return 0;
	return rq_read(c);
}

static void rq_close_all(struct rq *cs, int n)
{
	for (int i = 0; i < n; i++) {
		if (cs[i].fd > 0)
			close(cs[i].fd);
		free(cs[i].req);
	}
	free(cs);
}

/* bclient rr ADDR NCLIENTS MIN MAX SECS [WARM_S]: NCLIENTS connections,
 * each sending a request of MIN..MAX random bytes and waiting for its
 * echo, back to back; one epoll loop drives them all.  Counted: the
 * responses that arrive within the SECS window after WARM_S (rate), and
 * the latencies of the requests sent and answered within it. */
static int cmd_rr(int argc, char **argv)
{
	if (argc < 5)
		return 2;
	int n = atoi(argv[1]);
	size_t mn = (size_t)atoi(argv[2]), mx = (size_t)atoi(argv[3]);
	double secs = atof(argv[4]), warm = argc > 5 ? atof(argv[5]) : 1.0;
	if (n < 1 || n > 8192 || mn < 1 || mx < mn || mx > 65536 || secs <= 0 || warm < 0)
		return 2;
	struct rq *cs = calloc((size_t)n, sizeof(*cs));
	struct lat lat = { 0 };
	int ep = epoll_create1(EPOLL_CLOEXEC), ok = 0, bad = -1;
	for (int i = 0; i < n; i++) {
		cs[i].fd = -1;
		if (rq_open(&cs[i], ep, i, mx) < 0) {
			bad = i;
			goto out;
		}
	}
	uint64_t t0 = now_ns(), t_warm = t0 + (uint64_t)(warm * 1e9), t_end = t_warm + (uint64_t)(secs * 1e9);
	long total = 0, in_win = 0;
	for (int i = 0; i < n; i++) {
		if (rq_begin(ep, &cs[i], mn + rng_next(&cs[i].rng) % (mx - mn + 1), t0) < 0) {
			bad = i;
			goto out;
		}
	}
	struct epoll_event evs[256];
	while (now_ns() < t_end) {
		int k = epoll_wait(ep, evs, 256, 100);
		for (int i = 0; i < k; i++) {
			struct rq *c = evs[i].data.ptr;
			int r = rq_event(ep, &evs[i], c);
			if (r < 0) {
				bad = c->idx;
				goto out;
			}
			if (r == 0)
				continue;
			uint64_t t = now_ns();
			total++;
			if (t >= t_warm && t <= t_end) {
				in_win++;
				c->done++;
				if (c->t_start >= t_warm && lat_add(&lat, t - c->t_start) < 0) {
					g_rq_err = "oom";
					goto out;
				}
			}
			if (rq_begin(ep, c, mn + rng_next(&c->rng) % (mx - mn + 1), t) < 0) {
				bad = c->idx;
				goto out;
			}
		}
	}
	/* A connection whose request has waited a second is stalled: its
	 * missing answers would otherwise just not be counted. */
	uint64_t t = now_ns();
	long min_done = -1;
	for (int i = 0; i < n; i++) {
		if (cs[i].busy && t - cs[i].t_start > 1000000000ull) {
			g_rq_err = "stalled";
			bad = i;
			goto out;
		}
		if (min_done < 0 || cs[i].done < min_done)
			min_done = cs[i].done;
	}
	if (lat.n == 0) {
		g_rq_err = "no_requests";
		goto out;
	}
	ok = 1;
	printf("ok=1 clients=%d n=%ld secs=%.3f req_per_s=%.1f", n, in_win, secs, (double)in_win / secs);
	lat_print(&lat);
	printf(" total=%ld min_conn_n=%ld\n", total, min_done);
out:
	if (!ok)
		printf("ok=0 err=%s conn=%d\n", g_rq_err ? g_rq_err : "io", bad);
	rq_close_all(cs, n);
	close(ep);
	free(lat.v);
	return !ok;
}

/* bclient mixed ADDR NCLIENTS RATE MSGSIZE NBULK SECS [WARM_S [BULK_ADDR]]:
 * NBULK downloads through BULK_ADDR (default ADDR), and NCLIENTS echo
 * connections, each sending MSGSIZE-byte requests RATE times a second on
 * a fixed schedule (staggered across connections).  A request whose
 * predecessor is still outstanding at its scheduled time is sent as soon
 * as that one is answered, and every latency is measured from the
 * scheduled time, so queueing is not hidden (no coordinated omission).
 * Counted: the requests scheduled within the SECS window after WARM_S;
 * after the window the loop waits for all of them to be answered. */
static int cmd_mixed(int argc, char **argv)
{
	if (argc < 6)
		return 2;
	int n = atoi(argv[1]), nbulk = atoi(argv[4]);
	double rate = atof(argv[2]), secs = atof(argv[5]), warm = argc > 6 ? atof(argv[6]) : 1.0;
	size_t msz = (size_t)atoi(argv[3]);
	struct sockaddr_in bsa = g_sa;
	if (argc > 7 && addr_parse(argv[7], &bsa) < 0)
		return 2;
	if (n < 1 || n > 8192 || rate <= 0 || msz < 1 || msz > 65536 || nbulk < 0 || nbulk > 64 ||
	    secs <= 0 || warm < 0)
		return 2;
	prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
	struct bulk *bg = calloc((size_t)nbulk + 1, sizeof(*bg));
	struct rq *cs = calloc((size_t)n, sizeof(*cs));
	struct lat lat = { 0 };
	int ep = epoll_create1(EPOLL_CLOEXEC), ok = 0, bad = -1, started = 0;
	int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	struct epoll_event te = { .events = EPOLLIN, .data.ptr = NULL };
	epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &te);
	for (int i = 0; i < n; i++)
		cs[i].fd = -1;
	for (int i = 0; i < nbulk; i++, started++) {
		bg[i].fd = dial(&bsa, 30);
		if (bg[i].fd < 0) {
			g_rq_err = "bulk_connect";
			goto out;
		}
		pthread_create(&bg[i].th, NULL, bg_run, &bg[i]);
	}
	if (nbulk)
		usleep(500000);
	for (int i = 0; i < n; i++) {
		if (rq_open(&cs[i], ep, i, msz) < 0) {
			bad = i;
			goto out;
		}
	}
	uint64_t period = (uint64_t)(1e9 / rate);
	uint64_t t0 = now_ns(), t_warm = t0 + (uint64_t)(warm * 1e9), t_end = t_warm + (uint64_t)(secs * 1e9);
	uint64_t drain_end = t_end + 10000000000ull, armed = 0, bulk0 = 0, bulk1 = 0, tb0 = 0, tb1 = 0;
	long sched = 0, answered = 0, late = 0;
	for (int i = 0; i < n; i++)
		cs[i].due = t0 + period * (uint64_t)i / (uint64_t)n;
	struct epoll_event evs[256];
	for (;;) {
		uint64_t now = now_ns(), next = UINT64_MAX;
		if (!tb0 && now >= t_warm) {
			tb0 = now;
			for (int i = 0; i < nbulk; i++)
				bulk0 += __atomic_load_n(&bg[i].done, __ATOMIC_RELAXED);
		}
		if (!tb1 && now >= t_end) {
			tb1 = now;
			for (int i = 0; i < nbulk; i++)
				bulk1 += __atomic_load_n(&bg[i].done, __ATOMIC_RELAXED);
		}
		int pending = 0;
		for (int i = 0; i < n; i++) {
			struct rq *c = &cs[i];
			if (!c->busy && c->due < t_end && c->due <= now) {
				if (c->due >= t_warm)
					sched++;
				if (now - c->due > 1000000)
					late++;
				if (rq_begin(ep, c, msz, c->due) < 0) {
					bad = i;
					goto out;
				}
				c->due += period;
			}
			if (c->busy || c->due < t_end)
				pending = 1;
			if (!c->busy && c->due < t_end && c->due < next)
				next = c->due;
		}
		if (!pending && tb1)
			break;
		if (now > drain_end) {
			g_rq_err = "drain_timeout";
			goto out;
		}
		if (next == UINT64_MAX && !tb1)
			next = t_end;
		if (next != UINT64_MAX && next != armed) {
			struct itimerspec its = { .it_value = { .tv_sec = (time_t)(next / 1000000000ull),
								.tv_nsec = (long)(next % 1000000000ull) } };
			timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
			armed = next;
		}
		int k = epoll_wait(ep, evs, 256, next <= now ? 0 : 100);
		for (int i = 0; i < k; i++) {
			struct rq *c = evs[i].data.ptr;
			if (!c) {
				uint64_t x;
				if (read(tfd, &x, sizeof(x)) < 0 && errno != EAGAIN)
					goto out;
				armed = 0;
				continue;
			}
			int r = rq_event(ep, &evs[i], c);
			if (r < 0) {
				bad = c->idx;
				goto out;
			}
			if (r == 1 && c->t_start >= t_warm) {
				answered++;
				if (lat_add(&lat, now_ns() - c->t_start) < 0) {
					g_rq_err = "oom";
					goto out;
				}
			}
		}
	}
	for (int i = 0; i < nbulk; i++) {
		if (!bg[i].ok) {
			g_rq_err = "bulk_io";
			goto out;
		}
	}
	if (lat.n == 0 || answered != sched) {
		g_rq_err = "no_requests";
		goto out;
	}
	ok = 1;
	printf("ok=1 clients=%d rate=%.0f n=%ld secs=%.3f req_per_s=%.1f", n, rate, answered, secs,
	       (double)answered / secs);
	lat_print(&lat);
	printf(" late=%ld", late);
	if (nbulk)
		printf(" bulk_mbps=%.1f", (double)(bulk1 - bulk0) / ((double)(tb1 - tb0) / 1e9) / 1e6);
	printf("\n");
out:
	if (!ok)
		printf("ok=0 err=%s conn=%d\n", g_rq_err ? g_rq_err : "io", bad);
	g_bulk_stop = 1;
	for (int i = 0; i < started; i++) {
		shutdown(bg[i].fd, SHUT_RDWR);
		pthread_join(bg[i].th, NULL);
		close(bg[i].fd);
	}
	rq_close_all(cs, n);
	close(tfd);
	close(ep);
	free(lat.v);
	free(bg);
	return !ok;
}

/* ---- idle connections ---- */

enum { I_CONNECTING = 1, I_WAITING, I_READY };

static int cmd_idle(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	int n = atoi(argv[1]);
	int inflight_max = argc > 2 ? atoi(argv[2]) : 64;
	if (argc > 3)
		g_timeout = atoi(argv[3]);
	if (n < 1 || n > 19000 || inflight_max < 1)
		return 2;
	int *fds = calloc((size_t)n, sizeof(int));
	unsigned char *st = calloc(65536, 1);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	int opened = 0, ready = 0, inflight = 0, errors = 0;
	double t0 = now_s(), deadline = t0 + g_timeout;
	unsigned char msg[HDR_LEN + 1];
	hdr_make(msg, 'P', 0);
	msg[HDR_LEN] = 'x';

	while (ready < n && now_s() < deadline) {
		while (opened < n && inflight < inflight_max) {
			int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
			if (fd < 0 || fd >= 65536) {
				fprintf(stderr, "bclient idle: socket: %s\n", strerror(errno));
				goto done;
			}
			fds[opened++] = fd;
			inflight++;
			if (connect(fd, (struct sockaddr *)&g_sa, sizeof(g_sa)) < 0 && errno != EINPROGRESS) {
				errors++;
				goto done;
			}
			st[fd] = I_CONNECTING;
			struct epoll_event e = { .events = EPOLLOUT, .data.fd = fd };
			epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
		}
		struct epoll_event evs[256];
		int k = epoll_wait(ep, evs, 256, 200);
		for (int i = 0; i < k; i++) {
			int fd = evs[i].data.fd;
			if (st[fd] == I_CONNECTING) {
				int err = 0;
				socklen_t l = sizeof(err);
				getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l);
				if (err || send(fd, msg, sizeof(msg), MSG_NOSIGNAL) != (ssize_t)sizeof(msg)) {
					errors++;
					fprintf(stderr, "bclient idle: connect/send failed after %d ready: %s\n",
						ready, strerror(err ? err : errno));
					goto done;
				}
				st[fd] = I_WAITING;
				struct epoll_event e = { .events = EPOLLIN, .data.fd = fd };
				epoll_ctl(ep, EPOLL_CTL_MOD, fd, &e);
			} else if (st[fd] == I_WAITING) {
				char c;
				ssize_t r = recv(fd, &c, 1, 0);
				if (r < 0 && errno == EAGAIN)
					continue;
				if (r != 1) {
					errors++;
					fprintf(stderr, "bclient idle: no echo after %d ready (r=%zd)\n", ready, r);
					goto done;
				}
				st[fd] = I_READY;
				epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
				ready++;
				inflight--;
			}
		}
	}
done:
	printf("%s ready=%d secs=%.2f errors=%d\n", ready == n ? "ready" : "failed", ready,
	       now_s() - t0, errors);
	fflush(stdout);
	if (ready == n) {
		/* Hold until stdin closes, bounded by the timeout. */
		struct pollfd p = { .fd = 0, .events = POLLIN };
		double hold_end = now_s() + g_timeout;
		char tmp[64];
		while (now_s() < hold_end) {
			int r = poll(&p, 1, 1000);
			if (r > 0 && read(0, tmp, sizeof(tmp)) <= 0)
				break;
		}
	}
	for (int i = 0; i < opened; i++)
		close(fds[i]);
	return ready == n ? 0 : 1;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc < 3 || addr_parse(argv[2], &g_sa) < 0)
		goto usage;
	int rc = 2;
	if (!strcmp(argv[1], "up"))
		rc = cmd_bulk('U', argc - 2, argv + 2);
	else if (!strcmp(argv[1], "down"))
		rc = cmd_bulk('D', argc - 2, argv + 2);
	else if (!strcmp(argv[1], "ping"))
		rc = cmd_ping(argc - 2, argv + 2);
	else if (!strcmp(argv[1], "idle"))
		rc = cmd_idle(argc - 2, argv + 2);
	else if (!strcmp(argv[1], "rr"))
		rc = cmd_rr(argc - 2, argv + 2);
	else if (!strcmp(argv[1], "mixed"))
		rc = cmd_mixed(argc - 2, argv + 2);
	if (rc != 2)
		return rc;
usage:
	fprintf(stderr, "usage: bclient up|down ADDR SIZE NSTREAMS [TIMEOUT_S]\n"
			"       bclient ping ADDR COUNT MSGSIZE [BULK_ADDR]\n"
			"       bclient idle ADDR N [INFLIGHT] [TIMEOUT_S]\n"
			"       bclient rr ADDR NCLIENTS MIN MAX SECS [WARM_S]\n"
			"       bclient mixed ADDR NCLIENTS RATE MSGSIZE NBULK SECS [WARM_S [BULK_ADDR]]\n");
	return 2;
}
