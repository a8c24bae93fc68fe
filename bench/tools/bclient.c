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
#include <sys/socket.h>
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

static void *bg_run(void *arg)
{
	(void)arg;
	static unsigned char buf[CHUNK];
	unsigned char h[HDR_LEN];
	hdr_make(h, 'D', 1ull << 50);
	if (send_all(g_bg.fd, h, HDR_LEN) < 0)
		return NULL;
	while (!g_bulk_stop) {
		ssize_t r = recv(g_bg.fd, buf, sizeof(buf), 0);
		if (r <= 0) {
			if (r < 0 && errno == EINTR)
				continue;
			break;
		}
		g_bg.done += (uint64_t)r;
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
		pthread_create(&g_bg.th, NULL, bg_run, NULL);
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
	if (rc != 2)
		return rc;
usage:
	fprintf(stderr, "usage: bclient up|down ADDR SIZE NSTREAMS [TIMEOUT_S]\n"
			"       bclient ping ADDR COUNT MSGSIZE [BULK_ADDR]\n"
			"       bclient idle ADDR N [INFLIGHT] [TIMEOUT_S]\n");
	return 2;
}
