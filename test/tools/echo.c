/*
 * tpx-echo: a TCP echo, sink, source or reset server for tests and demos.
 *
 *   tpx-echo -l HOST:PORT [-m echo|sink|reset]
 *   tpx-echo -l HOST:PORT -m source -n BYTES [-s SEED]
 *
 * echo returns what it reads and answers the client's FIN with its own;
 * sink reads and discards; reset resets every connection at once; source
 * sends each connection BYTES of the payload stream (SEED, index 0) from
 * harness.h, then shuts its write side down and discards what it reads.
 *
 * One thread, epoll, nonblocking sockets, at most MAX_CONNS connections.
 * A connection owns a buffer only while it holds unsent bytes (at most
 * CONN_BUF; while it is full the connection is not read), so idle
 * connections cost a few dozen bytes each.  Prints "tpx-echo: listening
 * on HOST:PORT" once it listens and exits with status 0 on SIGTERM or
 * SIGINT.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net.h"

#include "../harness.h"

#define CONN_BUF (256 * 1024)
#define SOURCE_CHUNK 65536
#define SCRATCH 65536
#define MAX_CONNS 16384
#define WAIT_MS 500
#define MAX_EVENTS 256
#define LISTENER UINT32_MAX

enum mode { MODE_ECHO, MODE_SINK, MODE_RESET, MODE_SOURCE };

struct conn {
	int fd;       /* -1: the slot is free */
	int rd_eof;   /* the peer half-closed */
	int wr_shut;  /* we sent FIN */
	uint32_t events; /* registered with epoll */
	size_t off, len; /* unsent bytes in buf */
	unsigned char *buf;
	uint64_t left; /* source: bytes not yet generated */
	struct h_prng prng;
};

struct server {
	enum mode mode;
	uint64_t src_bytes, src_seed;
	int ep, lfd;
	int listening; /* lfd is registered */
	struct conn *conns;
	uint32_t *free_slots;
	size_t nfree;
	unsigned char scratch[SCRATCH];
};

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static void usage(void)
{
	fprintf(stderr, "usage: tpx-echo -l HOST:PORT [-m echo|sink|reset]\n"
			"       tpx-echo -l HOST:PORT -m source -n BYTES [-s SEED]\n");
	exit(2);
}

static int listen_on(const char *arg)
{
	char err[300];
	int fd = net_listen(arg, err, sizeof(err));

	if (fd < 0)
		fprintf(stderr, "tpx-echo: %s\n", err);
	return fd;
}

static void print_listening(int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[NI_MAXHOST], port[NI_MAXSERV];

	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0 ||
	    getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), port, sizeof(port),
			NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
		fprintf(stderr, "tpx-echo: getsockname: %s\n", strerror(errno));
		exit(1);
	}
	if (ss.ss_family == AF_INET6)
		printf("tpx-echo: listening on [%s]:%s\n", host, port);
	else
		printf("tpx-echo: listening on %s:%s\n", host, port);
	fflush(stdout);
}

static void listener_set(struct server *s, int on)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = LISTENER };

	if (on == s->listening)
		return;
	if (epoll_ctl(s->ep, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, s->lfd, &ev) == 0)
		s->listening = on;
}

static void conn_close(struct server *s, struct conn *c, int rst)
{
	if (rst) {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };

		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	close(c->fd); /* also removes it from the epoll set */
	free(c->buf);
	c->fd = -1;
	c->buf = NULL;
	s->free_slots[s->nfree++] = (uint32_t)(c - s->conns);
	listener_set(s, 1);
}

/* Sends from buf until it is empty or the socket is full; the buffer is
 * freed once empty.  Returns -1 when the connection must be reset. */
static int conn_flush(struct conn *c)
{
	while (c->len > 0) {
		ssize_t n = send(c->fd, c->buf + c->off, c->len, MSG_NOSIGNAL);

		if (n > 0) {
			c->off += (size_t)n;
			c->len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		return -1;
	}
	c->off = 0;
	free(c->buf);
	c->buf = NULL;
	return 0;
}

/* Echo: the bytes just read into scratch go straight back when the
 * socket takes them; only the rest is kept in a buffer of CONN_BUF. */
static int echo_scratch(struct server *s, struct conn *c, size_t n)
{
	size_t done = 0;

	while (done < n) {
		ssize_t k = send(c->fd, s->scratch + done, n - done, MSG_NOSIGNAL);

		if (k > 0) {
			done += (size_t)k;
			continue;
		}
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		return -1;
	}
	if (done == n)
		return 0;
	c->buf = malloc(CONN_BUF);
	if (c->buf == NULL)
		return -1;
	memcpy(c->buf, s->scratch + done, n - done);
	c->off = 0;
	c->len = n - done;
	return 0;
}

/* Reads what the connection may take.  Returns -1 when it must be reset. */
static int conn_read(struct server *s, struct conn *c)
{
	for (int rounds = 0; rounds < 16 && !c->rd_eof; rounds++) {
		unsigned char *dst = s->scratch;
		size_t room = SCRATCH;
		int into_buf = s->mode == MODE_ECHO && c->buf != NULL;
		ssize_t n;

		if (into_buf) {
			if (c->off > 0 && c->off + c->len == CONN_BUF) {
				memmove(c->buf, c->buf + c->off, c->len);
				c->off = 0;
			}
			room = CONN_BUF - c->off - c->len;
			if (room == 0)
				return 0;
			dst = c->buf + c->off + c->len;
		}
		n = recv(c->fd, dst, room, 0);
		if (n > 0) {
			if (into_buf)
				c->len += (size_t)n;
			else if (s->mode == MODE_ECHO && echo_scratch(s, c, (size_t)n) < 0)
				return -1;
			continue;
		}
		if (n == 0) {
			c->rd_eof = 1;
			return 0;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		return -1;
	}
	return 0;
}

/* Source: generates and sends until the socket is full or every byte has
 * gone, then sends FIN.  Returns -1 when the connection must be reset. */
static int source_write(struct conn *c)
{
	while (!c->wr_shut) {
		if (c->len == 0) {
			size_t k = c->left < SOURCE_CHUNK ? (size_t)c->left : SOURCE_CHUNK;

			if (k == 0) {
				shutdown(c->fd, SHUT_WR);
				c->wr_shut = 1;
				free(c->buf);
				c->buf = NULL;
				return 0;
			}
			if (c->buf == NULL && (c->buf = malloc(SOURCE_CHUNK)) == NULL)
				return -1;
			h_prng_fill(&c->prng, c->buf, k);
			c->off = 0;
			c->len = k;
			c->left -= k;
		}
		if (conn_flush(c) < 0)
			return -1;
		if (c->len > 0)
			return 0; /* the socket is full */
	}
	return 0;
}

/* The events the connection waits for now; 0 once it is finished. */
static uint32_t conn_wants(const struct server *s, const struct conn *c)
{
	uint32_t ev = 0;

	switch (s->mode) {
	case MODE_ECHO:
		if (!c->rd_eof && c->len < CONN_BUF)
			ev |= EPOLLIN;
		if (c->len > 0)
			ev |= EPOLLOUT;
		break;
	case MODE_SOURCE:
		if (!c->rd_eof)
			ev |= EPOLLIN;
		if (!c->wr_shut)
			ev |= EPOLLOUT;
		break;
	default:
		if (!c->rd_eof)
			ev |= EPOLLIN;
		break;
	}
	return ev;
}

static void conn_event(struct server *s, struct conn *c, uint32_t re)
{
	uint32_t want;

	if (re & EPOLLERR)
		goto reset;
	if ((re & (EPOLLIN | EPOLLHUP)) && !c->rd_eof && conn_read(s, c) < 0)
		goto reset;
	if (s->mode == MODE_SOURCE) {
		if (source_write(c) < 0)
			goto reset;
	} else if (c->len > 0 && conn_flush(c) < 0) {
		goto reset;
	}
	want = conn_wants(s, c);
	if (want == 0) {
		/* The peer sent FIN and everything is answered: FIN back. */
		if (!c->wr_shut)
			shutdown(c->fd, SHUT_WR);
		conn_close(s, c, 0);
		return;
	}
	if (want != c->events) {
		struct epoll_event ev = { .events = want, .data.u32 = (uint32_t)(c - s->conns) };

		if (epoll_ctl(s->ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
			goto reset;
		c->events = want;
	}
	return;
reset:
	conn_close(s, c, 1);
}

static void accept_all(struct server *s)
{
	for (int rounds = 0; rounds < 64; rounds++) {
		struct epoll_event ev;
		struct conn *c;
		uint32_t slot;
		int fd;

		if (s->nfree == 0) {
			listener_set(s, 0);
			return;
		}
		fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		if (s->mode == MODE_RESET) {
			struct linger lg = { .l_onoff = 1, .l_linger = 0 };

			setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
			close(fd);
			continue;
		}
		slot = s->free_slots[--s->nfree];
		c = &s->conns[slot];
		memset(c, 0, sizeof(*c));
		c->fd = fd;
		if (s->mode == MODE_SOURCE) {
			c->left = s->src_bytes;
			h_prng_init(&c->prng, s->src_seed, 0);
		}
		c->events = conn_wants(s, c);
		ev.events = c->events;
		ev.data.u32 = slot;
		if (epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
			conn_close(s, c, 1);
			continue;
		}
		if (s->mode == MODE_SOURCE)
			conn_event(s, c, 0);
	}
}

int main(int argc, char **argv)
{
	static struct server srv;
	struct server *s = &srv;
	struct epoll_event evs[MAX_EVENTS];
	const char *listen_arg = NULL;
	int have_bytes = 0, opt;
	struct sigaction sa;
	char *end;

	s->mode = MODE_ECHO;
	s->src_seed = 1;
	while ((opt = getopt(argc, argv, "l:m:n:s:h")) != -1) {
		errno = 0;
		switch (opt) {
		case 'l':
			listen_arg = optarg;
			break;
		case 'm':
			if (strcmp(optarg, "echo") == 0)
				s->mode = MODE_ECHO;
			else if (strcmp(optarg, "sink") == 0)
				s->mode = MODE_SINK;
			else if (strcmp(optarg, "reset") == 0)
				s->mode = MODE_RESET;
			else if (strcmp(optarg, "source") == 0)
				s->mode = MODE_SOURCE;
			else
				usage();
			break;
		case 'n':
			s->src_bytes = strtoull(optarg, &end, 0);
			if (*end || errno || optarg[0] == '-')
				usage();
			have_bytes = 1;
			break;
		case 's':
			s->src_seed = strtoull(optarg, &end, 0);
			if (*end || errno)
				usage();
			break;
		default:
			usage();
		}
	}
	if (listen_arg == NULL || optind != argc || have_bytes != (s->mode == MODE_SOURCE))
		usage();

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	s->conns = calloc(MAX_CONNS, sizeof(*s->conns));
	s->free_slots = calloc(MAX_CONNS, sizeof(*s->free_slots));
	s->ep = epoll_create1(EPOLL_CLOEXEC);
	if (s->conns == NULL || s->free_slots == NULL || s->ep < 0) {
		fprintf(stderr, "tpx-echo: out of memory\n");
		return 1;
	}
	for (uint32_t i = 0; i < MAX_CONNS; i++) {
		s->conns[i].fd = -1;
		s->free_slots[s->nfree++] = MAX_CONNS - 1 - i;
	}
	s->lfd = listen_on(listen_arg);
	if (s->lfd < 0)
		return 1;
	listener_set(s, 1);
	print_listening(s->lfd);

	while (!stop_flag) {
		int n = epoll_wait(s->ep, evs, MAX_EVENTS, WAIT_MS);
		int accept_now = 0;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "tpx-echo: epoll_wait: %s\n", strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			struct conn *c;

			if (evs[i].data.u32 == LISTENER) {
				accept_now = 1;
				continue;
			}
			c = &s->conns[evs[i].data.u32];
			if (c->fd >= 0)
				conn_event(s, c, evs[i].events);
		}
		/* Only after the batch: a slot freed in it may be reused. */
		if (accept_now)
			accept_all(s);
	}

	for (size_t i = 0; i < MAX_CONNS; i++)
		if (s->conns[i].fd >= 0)
			conn_close(s, &s->conns[i], 0);
	close(s->lfd);
	close(s->ep);
	free(s->conns);
	free(s->free_slots);
	return 0;
}
