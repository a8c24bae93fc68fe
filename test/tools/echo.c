/*
 * tpx-echo: a TCP echo, sink or reset server for tests and demos.
 *
 *   tpx-echo -l HOST:PORT [-m echo|sink|reset]
 *
 * One thread, poll(), nonblocking sockets.  Each connection buffers at
 * most CONN_BUF bytes of echo data; while its buffer is full the
 * connection is not read.  Prints "tpx-echo: listening on HOST:PORT"
 * once it listens and exits with status 0 on SIGTERM or SIGINT.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CONN_BUF (256 * 1024)
#define MAX_CONNS 4096
#define POLL_MS 500

enum mode { MODE_ECHO, MODE_SINK, MODE_RESET };

struct conn {
	int fd;
	int rd_eof;   /* the peer half-closed */
	int wr_shut;  /* we sent FIN */
	size_t off, len;
	unsigned char *buf;
};

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static void usage(void)
{
	fprintf(stderr, "usage: tpx-echo -l HOST:PORT [-m echo|sink|reset]\n");
	exit(2);
}

static int split_hostport(const char *arg, char *host, size_t hcap, char *port, size_t pcap)
{
	const char *colon = strrchr(arg, ':');
	const char *h = arg;
	size_t hl;

	if (colon == NULL || colon[1] == '\0')
		return -1;
	hl = (size_t)(colon - arg);
	if (hl >= 2 && arg[0] == '[' && arg[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	if (hl == 0 || hl >= hcap || strlen(colon + 1) >= pcap)
		return -1;
	memcpy(host, h, hl);
	host[hl] = '\0';
	strcpy(port, colon + 1);
	return 0;
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -1;
	return 0;
}

static int listen_on(const char *arg)
{
	char host[256], port[16];
	struct addrinfo hints = { 0 }, *res = NULL, *ai;
	int fd = -1, one = 1, rc;

	if (split_hostport(arg, host, sizeof(host), port, sizeof(port)) < 0) {
		fprintf(stderr, "tpx-echo: bad address '%s', expected HOST:PORT\n", arg);
		return -1;
	}
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		fprintf(stderr, "tpx-echo: %s: %s\n", arg, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 512) == 0 &&
		    set_nonblock(fd) == 0)
			break;
		close(fd);
		fd = -1;
	}
	if (fd < 0)
		fprintf(stderr, "tpx-echo: cannot listen on %s: %s\n", arg, strerror(errno));
	freeaddrinfo(res);
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

static void conn_close(struct conn *c, int rst)
{
	if (rst) {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };

		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	close(c->fd);
	free(c->buf);
	c->fd = -1;
	c->buf = NULL;
}

/* Reads what the buffer can take.  Returns -1 when the connection must
 * be closed (error). */
static int conn_read(struct conn *c, enum mode mode)
{
	unsigned char scratch[65536];

	for (int rounds = 0; rounds < 16; rounds++) {
		unsigned char *dst;
		size_t room;
		ssize_t n;

		if (mode == MODE_SINK) {
			dst = scratch;
			room = sizeof(scratch);
		} else {
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
			if (mode != MODE_SINK)
				c->len += (size_t)n;
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

static int conn_write(struct conn *c)
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
	return 0;
}

/* Accepts what is queued.  Returns the number of connection slots used. */
static size_t accept_all(int lfd, struct conn *conns, size_t nconns, enum mode mode)
{
	for (int rounds = 0; rounds < 64 && nconns < MAX_CONNS; rounds++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct conn *c;

		if (fd < 0)
			break;
		if (mode == MODE_RESET) {
			struct conn tmp = { .fd = fd };

			conn_close(&tmp, 1);
			continue;
		}
		c = &conns[nconns];
		memset(c, 0, sizeof(*c));
		c->fd = fd;
		if (mode == MODE_ECHO) {
			c->buf = malloc(CONN_BUF);
			if (c->buf == NULL) {
				close(fd);
				continue;
			}
		}
		nconns++;
	}
	return nconns;
}

int main(int argc, char **argv)
{
	const char *listen_arg = NULL;
	enum mode mode = MODE_ECHO;
	struct sigaction sa;
	struct conn *conns;
	struct pollfd *pfds;
	size_t nconns = 0;
	int lfd, opt;

	while ((opt = getopt(argc, argv, "l:m:h")) != -1) {
		switch (opt) {
		case 'l':
			listen_arg = optarg;
			break;
		case 'm':
			if (strcmp(optarg, "echo") == 0)
				mode = MODE_ECHO;
			else if (strcmp(optarg, "sink") == 0)
				mode = MODE_SINK;
			else if (strcmp(optarg, "reset") == 0)
				mode = MODE_RESET;
			else
				usage();
			break;
		default:
			usage();
		}
	}
	if (listen_arg == NULL || optind != argc)
		usage();

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	conns = calloc(MAX_CONNS, sizeof(*conns));
	pfds = calloc(MAX_CONNS + 1, sizeof(*pfds));
	if (conns == NULL || pfds == NULL) {
		fprintf(stderr, "tpx-echo: out of memory\n");
		return 1;
	}
	lfd = listen_on(listen_arg);
	if (lfd < 0)
		return 1;
	print_listening(lfd);

	while (!stop_flag) {
		size_t i, live;
		int n;

		pfds[0].fd = nconns < MAX_CONNS ? lfd : -1;
		pfds[0].events = POLLIN;
		pfds[0].revents = 0;
		for (i = 0; i < nconns; i++) {
			struct conn *c = &conns[i];
			short ev = 0;

			if (!c->rd_eof && (mode == MODE_SINK || c->off + c->len < CONN_BUF))
				ev |= POLLIN;
			if (c->len > 0)
				ev |= POLLOUT;
			pfds[i + 1].fd = c->fd;
			pfds[i + 1].events = ev;
			pfds[i + 1].revents = 0;
		}
		n = poll(pfds, nconns + 1, POLL_MS);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "tpx-echo: poll: %s\n", strerror(errno));
			break;
		}
		for (i = 0; i < nconns; i++) {
			struct conn *c = &conns[i];
			short re = pfds[i + 1].revents;

			if (re == 0)
				continue;
			if ((re & (POLLIN | POLLHUP | POLLERR)) && !c->rd_eof &&
			    conn_read(c, mode) < 0) {
				conn_close(c, 1);
				continue;
			}
			if (c->len > 0 && conn_write(c) < 0) {
				conn_close(c, 1);
				continue;
			}
			if ((re & POLLERR) && c->rd_eof && c->len > 0) {
				conn_close(c, 1);
				continue;
			}
		}
		/* A half-closed connection with nothing pending is answered
		 * with FIN; its peer already sent FIN, so it is finished. */
		for (i = 0; i < nconns; i++) {
			struct conn *c = &conns[i];

			if (c->fd >= 0 && c->rd_eof && c->len == 0 && !c->wr_shut) {
				shutdown(c->fd, SHUT_WR);
				c->wr_shut = 1;
				conn_close(c, 0);
			}
		}
		for (i = 0, live = 0; i < nconns; i++)
			if (conns[i].fd >= 0)
				conns[live++] = conns[i];
		nconns = live;
		if (pfds[0].revents & POLLIN)
			nconns = accept_all(lfd, conns, nconns, mode);
	}

	for (size_t i = 0; i < nconns; i++)
		conn_close(&conns[i], 0);
	close(lfd);
	free(conns);
	free(pfds);
	return 0;
}
