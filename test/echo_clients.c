/*
 * Concurrent verifying echo clients; see echo_clients.h.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "echo_clients.h"
#include "harness.h"

#define EC_CHUNK 65536

enum ec_state { EC_CONNECTING, EC_RUNNING, EC_OK, EC_FAILED };

struct ec_client {
	int fd;
	enum ec_state st;
	int wr_done;
	size_t sent, rcvd;
	struct h_prng tx, rx;
	uint8_t *txbuf; /* allocated while a chunk is being sent */
	size_t txoff, txlen;
};

struct ec_ctx {
	ec_fail_fn on_fail;
	void *arg;
	size_t bytes;
	uint8_t got[EC_CHUNK], want[EC_CHUNK];
};

static int64_t
ec_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void ec_fail(struct ec_ctx *x, struct ec_client *c, int idx, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void
ec_fail(struct ec_ctx *x, struct ec_client *c, int idx, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (x->on_fail != NULL)
		x->on_fail(x->arg, idx, msg);
	if (c == NULL)
		return;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->txbuf);
	c->txbuf = NULL;
	c->st = EC_FAILED;
}

static void
ec_write(struct ec_ctx *x, struct ec_client *c, int idx)
{
	while (!c->wr_done) {
		ssize_t n;

		if (c->txoff == c->txlen) {
			size_t want = x->bytes - c->sent;

			if (want == 0) {
				shutdown(c->fd, SHUT_WR);
				c->wr_done = 1;
				free(c->txbuf);
				c->txbuf = NULL;
				return;
			}
			if (want > EC_CHUNK)
				want = EC_CHUNK;
			if (c->txbuf == NULL && (c->txbuf = malloc(EC_CHUNK)) == NULL) {
				ec_fail(x, c, idx, "out of memory");
				return;
			}
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
			ec_fail(x, c, idx, "connection reset after %zu bytes", c->rcvd);
		else
			ec_fail(x, c, idx, "send failed after %zu bytes: %s", c->sent,
				n < 0 ? strerror(errno) : "wrote nothing");
		return;
	}
}

static void
ec_read(struct ec_ctx *x, struct ec_client *c, int idx)
{
	for (int rounds = 0; rounds < 16; rounds++) {
		ssize_t n = recv(c->fd, x->got, EC_CHUNK, 0);

		if (n > 0) {
			size_t k = (size_t)n;

			if (c->rcvd + k > x->bytes) {
				ec_fail(x, c, idx, "extra data after %zu bytes", x->bytes);
				return;
			}
			h_prng_fill(&c->rx, x->want, k);
			if (memcmp(x->got, x->want, k) != 0) {
				size_t i = 0;

				while (x->got[i] == x->want[i])
					i++;
				ec_fail(x, c, idx, "mismatch at byte %zu", c->rcvd + i);
				return;
			}
			c->rcvd += k;
			continue;
		}
		if (n == 0) {
			if (c->rcvd == x->bytes && c->wr_done) {
				close(c->fd);
				c->fd = -1;
				c->st = EC_OK;
			} else {
				ec_fail(x, c, idx, "early EOF after %zu of %zu bytes", c->rcvd,
					x->bytes);
			}
			return;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return;
		if (errno == ECONNRESET || errno == EPIPE)
			ec_fail(x, c, idx, "connection reset after %zu bytes", c->rcvd);
		else
			ec_fail(x, c, idx, "recv failed after %zu bytes: %s", c->rcvd,
				strerror(errno));
		return;
	}
}

/* A connect in progress has finished; 0 if it succeeded. */
static int
ec_connected(struct ec_ctx *x, struct ec_client *c, int idx)
{
	int e = 0;
	socklen_t el = sizeof(e);

	getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &el);
	if (e == ECONNRESET) {
		ec_fail(x, c, idx, "connection reset after 0 bytes");
		return -1;
	}
	if (e != 0) {
		ec_fail(x, c, idx, "connect failed: %s", strerror(e));
		return -1;
	}
	c->st = EC_RUNNING;
	return 0;
}

int
ec_run(const struct sockaddr *addr, socklen_t addrlen, int nclients, size_t bytes,
       uint64_t seed, int timeout_ms, ec_fail_fn on_fail, void *arg,
       struct ec_result *res)
{
	int64_t t0 = ec_now_ms(), deadline = t0 + timeout_ms;
	struct ec_client *cl = NULL;
	struct pollfd *pfds = NULL;
	struct ec_ctx *x = NULL;
	int *map = NULL;
	int ok = 0, rc = -1, one = 1;

	if (res != NULL)
		*res = (struct ec_result){ 0 };
	if (nclients < 1)
		return -1;
	cl = calloc((size_t)nclients, sizeof(*cl));
	pfds = calloc((size_t)nclients, sizeof(*pfds));
	map = calloc((size_t)nclients, sizeof(*map));
	x = calloc(1, sizeof(*x));
	if (cl == NULL || pfds == NULL || map == NULL || x == NULL) {
		if (on_fail != NULL)
			on_fail(arg, -1, "out of memory");
		goto out;
	}
	x->on_fail = on_fail;
	x->arg = arg;
	x->bytes = bytes;
	for (int i = 0; i < nclients; i++) {
		struct ec_client *c = &cl[i];

		h_prng_init(&c->tx, seed, (uint64_t)i);
		h_prng_init(&c->rx, seed, (uint64_t)i);
		c->fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (c->fd < 0) {
			ec_fail(x, c, i, "cannot create a socket: %s", strerror(errno));
			continue;
		}
		setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c->st = EC_CONNECTING;
		if (connect(c->fd, addr, addrlen) == 0)
			c->st = EC_RUNNING;
		else if (errno != EINPROGRESS)
			ec_fail(x, c, i, "connect failed: %s", strerror(errno));
	}
	for (;;) {
		int64_t left = deadline - ec_now_ms();
		int active = 0, n;

		for (int i = 0; i < nclients; i++) {
			struct ec_client *c = &cl[i];

			if (c->st != EC_CONNECTING && c->st != EC_RUNNING)
				continue;
			pfds[active].fd = c->fd;
			pfds[active].events = c->st == EC_CONNECTING ? POLLOUT : POLLIN;
			if (c->st == EC_RUNNING && !c->wr_done)
				pfds[active].events |= POLLOUT;
			pfds[active].revents = 0;
			map[active++] = i;
		}
		if (active == 0 || left <= 0)
			break;
		n = poll(pfds, (nfds_t)active, left > 200 ? 200 : (int)left);
		for (int k = 0; n > 0 && k < active; k++) {
			struct ec_client *c = &cl[map[k]];
			int i = map[k];

			if (pfds[k].revents == 0)
				continue;
			if (c->st == EC_CONNECTING && ec_connected(x, c, i) < 0)
				continue;
			if (!c->wr_done)
				ec_write(x, c, i);
			if (c->st == EC_RUNNING)
				ec_read(x, c, i);
		}
	}
	for (int i = 0; i < nclients; i++) {
		if (cl[i].st == EC_OK)
			ok++;
		else if (cl[i].st != EC_FAILED)
			ec_fail(x, &cl[i], i, "timed out after %zu of %zu bytes", cl[i].rcvd, bytes);
	}
	rc = ok == nclients ? 0 : -1;
	if (res != NULL) {
		res->ok = ok;
		res->elapsed_ms = ec_now_ms() - t0;
	}
out:
	if (cl != NULL)
		for (int i = 0; i < nclients; i++)
			free(cl[i].txbuf);
	free(cl);
	free(pfds);
	free(map);
	free(x);
	return rc;
}
