/* bserver: the benchmark backend.  One epoll loop, nonblocking sockets.
 * Each connection first sends a 16-byte header (common.h) choosing
 * upload sink, download source or echo; a connection that sends nothing
 * is simply held open (idle backend).
 *
 *   bserver -l 127.0.0.1:PORT [-t MAX_SECONDS]
 *
 * Prints "listening" once ready; exits after MAX_SECONDS (default 7200)
 * or on SIGTERM/SIGINT. */
#define _GNU_SOURCE
#include "common.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <netinet/tcp.h>

#define MAXFD 65536
#define IOBUF (256 * 1024)
#define ECHOBUF (64 * 1024)
#define DOWN_ROUNDS 4

struct conn {
	unsigned char hdr[HDR_LEN];
	int hdr_got;
	char mode;
	int out_armed;
	uint64_t left;
	unsigned char *ebuf;
	size_t elen, eoff;
};

static struct conn *conns[MAXFD];
static unsigned char iobuf[IOBUF];
static volatile sig_atomic_t stop;
static int ep;

static void on_sig(int s) { (void)s; stop = 1; }

static void conn_close(int fd)
{
	struct conn *c = conns[fd];
	epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
	close(fd);
	if (c) {
		free(c->ebuf);
		free(c);
	}
	conns[fd] = NULL;
}

static void set_events(int fd, uint32_t ev)
{
	struct epoll_event e = { .events = ev, .data.fd = fd };
	epoll_ctl(ep, EPOLL_CTL_MOD, fd, &e);
}

/* Writes what the connection owes; returns -1 when it must be closed. */
static int conn_flush(int fd, struct conn *c)
{
	if (c->mode == 'D') {
		/* At most DOWN_ROUNDS sends per wakeup: a reader that keeps up
		 * with us would otherwise keep this loop from ever reaching the
		 * other connections (an echo waited up to 400 ms beside a
		 * direct download). */
		for (int rounds = 0; c->left > 0; rounds++) {
			if (rounds == DOWN_ROUNDS)
				return 0;
			size_t n = c->left < IOBUF ? (size_t)c->left : IOBUF;
			ssize_t w = send(fd, iobuf, n, MSG_NOSIGNAL);
			if (w < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK)
					return 0;
				if (errno == EINTR)
					continue;
				return -1;
			}
			c->left -= (uint64_t)w;
		}
		set_events(fd, EPOLLIN);
		c->out_armed = 0;
		return 0;
	}
	if (c->mode == 'P') {
		while (c->eoff < c->elen) {
			ssize_t w = send(fd, c->ebuf + c->eoff, c->elen - c->eoff, MSG_NOSIGNAL);
			if (w < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK) {
					if (!c->out_armed)
						set_events(fd, EPOLLOUT);
					c->out_armed = 1;
					return 0;
				}
				if (errno == EINTR)
					continue;
				return -1;
			}
			c->eoff += (size_t)w;
		}
		c->eoff = c->elen = 0;
		if (c->out_armed)
			set_events(fd, EPOLLIN);
		c->out_armed = 0;
	}
	return 0;
}

static int conn_read(int fd, struct conn *c)
{
	for (int rounds = 0; rounds < 16; rounds++) {
		ssize_t r;
		if (c->hdr_got < HDR_LEN) {
			r = recv(fd, c->hdr + c->hdr_got, (size_t)(HDR_LEN - c->hdr_got), 0);
		} else if (c->mode == 'P') {
			if (c->elen)
				return 0;
			r = recv(fd, c->ebuf, ECHOBUF, 0);
		} else {
			r = recv(fd, iobuf, IOBUF, 0);
		}
		if (r == 0)
			return -1;
		if (r < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (c->hdr_got < HDR_LEN) {
			c->hdr_got += (int)r;
			if (c->hdr_got < HDR_LEN)
				continue;
			c->mode = (char)c->hdr[0];
			c->left = hdr_size(c->hdr);
			if (c->mode == 'D') {
				set_events(fd, EPOLLIN | EPOLLOUT);
				c->out_armed = 1;
				return conn_flush(fd, c);
			} else if (c->mode == 'P') {
				c->ebuf = malloc(ECHOBUF);
				if (!c->ebuf)
					return -1;
			} else if (c->mode == 'U') {
				if (c->left == 0 && send(fd, "K", 1, MSG_NOSIGNAL) != 1)
					return -1;
			} else {
				return -1;
			}
			continue;
		}
		if (c->mode == 'U') {
			uint64_t n = (uint64_t)r;
			if (c->left == 0)
				continue;
			c->left = n >= c->left ? 0 : c->left - n;
			if (c->left == 0 && send(fd, "K", 1, MSG_NOSIGNAL) != 1)
				return -1;
		} else if (c->mode == 'P') {
			c->elen = (size_t)r;
			c->eoff = 0;
			if (conn_flush(fd, c) < 0)
				return -1;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *listen_at = NULL;
	int max_s = 7200, opt;
	struct sockaddr_in sa;

	while ((opt = getopt(argc, argv, "l:t:")) != -1) {
		if (opt == 'l')
			listen_at = optarg;
		else if (opt == 't')
			max_s = atoi(optarg);
		else
			goto usage;
	}
	if (!listen_at || addr_parse(listen_at, &sa) < 0)
		goto usage;
	memset(iobuf, 'd', sizeof(iobuf));
	signal(SIGTERM, on_sig);
	signal(SIGINT, on_sig);
	signal(SIGPIPE, SIG_IGN);

	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 4096) < 0) {
		perror("bserver: bind/listen");
		return 1;
	}
	ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event e = { .events = EPOLLIN, .data.fd = lfd };
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &e);
	printf("listening on %s\n", listen_at);
	fflush(stdout);

	double deadline = now_s() + max_s;
	struct epoll_event evs[256];
	while (!stop && now_s() < deadline) {
		int n = epoll_wait(ep, evs, 256, 1000);
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			if (fd == lfd) {
				for (int k = 0; k < 256; k++) {
					int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
					if (cfd < 0)
						break;
					if (cfd >= MAXFD) {
						close(cfd);
						continue;
					}
					setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
					conns[cfd] = calloc(1, sizeof(struct conn));
					if (!conns[cfd]) {
						close(cfd);
						continue;
					}
					struct epoll_event ce = { .events = EPOLLIN, .data.fd = cfd };
					epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &ce);
				}
				continue;
			}
			struct conn *c = conns[fd];
			if (!c)
				continue;
			int bad = 0;
			if (evs[i].events & EPOLLOUT)
				bad = conn_flush(fd, c) < 0;
			if (!bad && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
				bad = conn_read(fd, c) < 0;
			if (bad)
				conn_close(fd);
		}
	}
	return 0;
usage:
	fprintf(stderr, "usage: bserver -l IP:PORT [-t MAX_SECONDS]\n");
	return 2;
}
