/*
 * tpx-blast: concurrent echo clients that verify every byte.
 *
 *   tpx-blast -c HOST:PORT [-n CLIENTS] [-b BYTES] [-s SEED] [-t TIMEOUT_S]
 *
 * Client i sends BYTES of the payload stream (seed, i) from harness.h,
 * half-closes, reads until EOF and checks that the echo is identical and
 * complete.  One line per failed client, then a summary line; exit 0 only
 * if every client was verified.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../harness.h"

#define CHUNK 65536
#define MAX_CLIENTS 10000

enum cstate { C_CONNECTING, C_RUNNING, C_OK, C_FAILED };

struct client {
	int fd;
	enum cstate st;
	int wr_done;
	size_t sent, rcvd;
	struct h_prng tx, rx;
	unsigned char txbuf[CHUNK];
	size_t txoff, txlen;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(void)
{
	fprintf(stderr, "usage: tpx-blast -c HOST:PORT [-n CLIENTS] [-b BYTES] [-s SEED] [-t TIMEOUT_S]\n");
	exit(2);
}

static int resolve(const char *arg, struct sockaddr_storage *ss, socklen_t *sl)
{
	char host[256], port[16];
	const char *colon = strrchr(arg, ':');
	const char *h = arg;
	struct addrinfo hints = { 0 }, *res = NULL;
	size_t hl;
	int rc;

	if (colon == NULL || colon[1] == '\0')
		return -1;
	hl = (size_t)(colon - arg);
	if (hl >= 2 && arg[0] == '[' && arg[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	if (hl == 0 || hl >= sizeof(host) || strlen(colon + 1) >= sizeof(port))
		return -1;
	memcpy(host, h, hl);
	host[hl] = '\0';
	strcpy(port, colon + 1);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		fprintf(stderr, "tpx-blast: %s: %s\n", arg, gai_strerror(rc));
		return -1;
	}
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*sl = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

static void fail(struct client *c, int idx, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void fail(struct client *c, int idx, const char *fmt, ...)
{
	va_list ap;

	printf("client %d: ", idx);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->st = C_FAILED;
}

static void do_write(struct client *c, int idx, size_t bytes)
{
	while (!c->wr_done) {
		ssize_t n;

		if (c->txoff == c->txlen) {
			size_t want = bytes - c->sent;

			if (want == 0) {
				shutdown(c->fd, SHUT_WR);
				c->wr_done = 1;
				return;
			}
			if (want > CHUNK)
				want = CHUNK;
			h_prng_fill(&c->tx, c->txbuf, want);
			c->txoff = 0;
			c->txlen = want;
		}
		n = send(c->fd, c->txbuf + c->txoff, c->txlen - c->txoff, MSG_NOSIGNAL);
		if (n > 0) {
			c->txoff += (size_t)n;
			c->sent += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n < 0 && (errno == ECONNRESET || errno == EPIPE))
			fail(c, idx, "connection reset after %zu bytes", c->rcvd);
		else
			fail(c, idx, "send failed after %zu bytes: %s", c->sent,
			     n < 0 ? strerror(errno) : "wrote nothing");
		return;
	}
}

static void do_read(struct client *c, int idx, size_t bytes)
{
	static unsigned char got[CHUNK], want[CHUNK];

	for (int rounds = 0; rounds < 16; rounds++) {
		ssize_t n = recv(c->fd, got, sizeof(got), 0);

		if (n > 0) {
			size_t k = (size_t)n;

			if (c->rcvd + k > bytes) {
				fail(c, idx, "extra data after %zu bytes", bytes);
				return;
			}
			h_prng_fill(&c->rx, want, k);
			if (memcmp(got, want, k) != 0) {
				size_t i = 0;

				while (got[i] == want[i])
					i++;
				fail(c, idx, "mismatch at byte %zu", c->rcvd + i);
				return;
			}
			c->rcvd += k;
			continue;
		}
		if (n == 0) {
			if (c->rcvd == bytes && c->wr_done) {
				close(c->fd);
				c->fd = -1;
				c->st = C_OK;
			} else {
				fail(c, idx, "early EOF after %zu of %zu bytes", c->rcvd, bytes);
			}
			return;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return;
		if (errno == ECONNRESET || errno == EPIPE)
			fail(c, idx, "connection reset after %zu bytes", c->rcvd);
		else
			fail(c, idx, "recv failed after %zu bytes: %s", c->rcvd, strerror(errno));
		return;
	}
}

int main(int argc, char **argv)
{
	const char *target = NULL;
	long nclients = 1;
	unsigned long long bytes = 1 << 20;
	uint64_t seed = 1;
	double timeout = 60, t0, elapsed, deadline;
	struct sockaddr_storage ss;
	socklen_t sl = 0;
	struct client *cl;
	struct pollfd *pfds;
	int *map;
	int opt, ok = 0, active;
	char *end;

	while ((opt = getopt(argc, argv, "c:n:b:s:t:h")) != -1) {
		errno = 0;
		switch (opt) {
		case 'c':
			target = optarg;
			break;
		case 'n':
			nclients = strtol(optarg, &end, 10);
			if (*end || errno || nclients < 1 || nclients > MAX_CLIENTS)
				usage();
			break;
		case 'b':
			bytes = strtoull(optarg, &end, 10);
			if (*end || errno || optarg[0] == '-')
				usage();
			break;
		case 's':
			seed = strtoull(optarg, &end, 0);
			if (*end || errno)
				usage();
			break;
		case 't':
			timeout = strtod(optarg, &end);
			if (*end || timeout <= 0)
				usage();
			break;
		default:
			usage();
		}
	}
	if (target == NULL || optind != argc)
		usage();
	if (resolve(target, &ss, &sl) < 0) {
		fprintf(stderr, "tpx-blast: bad address '%s', expected HOST:PORT\n", target);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);

	cl = calloc((size_t)nclients, sizeof(*cl));
	pfds = calloc((size_t)nclients, sizeof(*pfds));
	map = calloc((size_t)nclients, sizeof(*map));
	if (cl == NULL || pfds == NULL || map == NULL) {
		fprintf(stderr, "tpx-blast: out of memory\n");
		return 1;
	}
	t0 = now_s();
	deadline = t0 + timeout;
	for (int i = 0; i < nclients; i++) {
		struct client *c = &cl[i];
		int one = 1;

		h_prng_init(&c->tx, seed, (uint64_t)i);
		h_prng_init(&c->rx, seed, (uint64_t)i);
		c->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (c->fd < 0) {
			fail(c, i, "socket: %s", strerror(errno));
			continue;
		}
		setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c->st = C_CONNECTING;
		if (connect(c->fd, (struct sockaddr *)&ss, sl) == 0)
			c->st = C_RUNNING;
		else if (errno != EINPROGRESS)
			fail(c, i, "connect failed: %s", strerror(errno));
	}

	for (;;) {
		double left = deadline - now_s();
		int n;

		active = 0;
		for (int i = 0; i < nclients; i++) {
			struct client *c = &cl[i];

			if (c->st != C_CONNECTING && c->st != C_RUNNING)
				continue;
			pfds[active].fd = c->fd;
			pfds[active].events = c->st == C_CONNECTING ? POLLOUT : POLLIN;
			if (c->st == C_RUNNING && !c->wr_done)
				pfds[active].events |= POLLOUT;
			pfds[active].revents = 0;
			map[active++] = i;
		}
		if (active == 0 || left <= 0)
			break;
		n = poll(pfds, (nfds_t)active, left > 1 ? 1000 : (int)(left * 1000) + 1);
		if (n < 0 && errno != EINTR) {
			fprintf(stderr, "tpx-blast: poll: %s\n", strerror(errno));
			break;
		}
		for (int k = 0; n > 0 && k < active; k++) {
			struct client *c = &cl[map[k]];
			int i = map[k];

			if (pfds[k].revents == 0)
				continue;
			if (c->st == C_CONNECTING) {
				int err = 0;
				socklen_t el = sizeof(err);

				getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
				if (err == ECONNRESET) {
					fail(c, i, "connection reset after 0 bytes");
					continue;
				}
				if (err != 0) {
					fail(c, i, "connect failed: %s", strerror(err));
					continue;
				}
				c->st = C_RUNNING;
			}
			if (!c->wr_done)
				do_write(c, i, (size_t)bytes);
			if (c->st == C_RUNNING)
				do_read(c, i, (size_t)bytes);
		}
	}
	elapsed = now_s() - t0;
	for (int i = 0; i < nclients; i++) {
		if (cl[i].st == C_OK)
			ok++;
		else if (cl[i].st != C_FAILED)
			fail(&cl[i], i, "timed out after %zu of %llu bytes", cl[i].rcvd, bytes);
	}
	if (elapsed <= 0)
		elapsed = 1e-6;
	printf("tpx-blast: %d/%ld clients ok, %llu bytes each way in %.3f s (%.1f MB/s)\n", ok,
	       nclients, bytes, elapsed, (double)bytes * (double)ok / 1e6 / elapsed);
	fflush(stdout);
	free(cl);
	free(pfds);
	free(map);
	return ok == nclients ? 0 : 1;
}
