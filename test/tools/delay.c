/*
 * tpx-delay: holds every IP packet that crosses between two TUN devices
 * for a fixed time, both ways: the link delay of the fault suite
 * (test/test_faults.c), where sch_netem is not available.  The devices
 * exist already (ip tuntap add ... mode tun); policy routing sends the
 * packets of each side into one of them, and what is read from one is
 * written, DELAY ms later and in order, into the other.  A full queue
 * drops the newest packet, as a router would.  Exits after -t seconds
 * (default 300) so that a lost test leaves nothing running.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define QLEN 4096   /* packets held per direction */
#define PKT_MAX 2048

struct pkt {
	int64_t due_us;
	uint16_t len;
	uint8_t buf[PKT_MAX];
};

struct queue {
	struct pkt *p;
	unsigned head, n;
	unsigned long dropped;
};

static void
usage(void)
{
	fprintf(stderr, "usage: tpx-delay -a TUN -b TUN -d MS [-t SECONDS]\n");
	exit(2);
}

static int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Attaches to the existing TUN device name.  Returns the descriptor or -1. */
static int
tun_open(const char *name)
{
	struct ifreq ifr;
	int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0) {
		fprintf(stderr, "tpx-delay: /dev/net/tun: %s\n", strerror(errno));
		return -1;
	}
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		fprintf(stderr, "tpx-delay: TUNSETIFF %s: %s\n", name, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* Reads every packet waiting on fd into q, due delay_ms from now. */
static void
queue_fill(struct queue *q, int fd, int delay_ms)
{
	uint8_t scratch[PKT_MAX];

	for (;;) {
		struct pkt *p = q->n < QLEN ? &q->p[(q->head + q->n) % QLEN] : NULL;
		ssize_t r = read(fd, p != NULL ? p->buf : scratch, PKT_MAX);

		if (r <= 0)
			return;
		if (p == NULL) {
			q->dropped++;
			continue;
		}
		p->len = (uint16_t)r;
		p->due_us = now_us() + (int64_t)delay_ms * 1000;
		q->n++;
	}
}

/* Writes the packets of q that are due into fd.  Returns the ms until
 * the next one is due (rounded up), or -1 when q is empty. */
static int
queue_drain(struct queue *q, int fd)
{
	int64_t now = now_us();

	while (q->n > 0) {
		struct pkt *p = &q->p[q->head];

		if (p->due_us > now)
			return (int)((p->due_us - now + 999) / 1000);
		if (write(fd, p->buf, p->len) < 0 && errno == EAGAIN)
			return 1;
		q->head = (q->head + 1) % QLEN;
		q->n--;
	}
	return -1;
}

int
main(int argc, char **argv)
{
	const char *a = NULL, *b = NULL;
	int delay_ms = -1, life_s = 300, opt, fd[2];
	struct queue q[2];
	int64_t end;

	while ((opt = getopt(argc, argv, "a:b:d:t:")) != -1) {
		switch (opt) {
		case 'a':
			a = optarg;
			break;
		case 'b':
			b = optarg;
			break;
		case 'd':
			delay_ms = atoi(optarg);
			break;
		case 't':
			life_s = atoi(optarg);
			break;
		default:
			usage();
		}
	}
	if (a == NULL || b == NULL || delay_ms < 0 || delay_ms > 10000 || life_s < 1)
		usage();
	fd[0] = tun_open(a);
	fd[1] = tun_open(b);
	if (fd[0] < 0 || fd[1] < 0)
		return 1;
	for (int i = 0; i < 2; i++) {
		q[i].p = calloc(QLEN, sizeof(struct pkt));
		q[i].head = q[i].n = 0;
		q[i].dropped = 0;
		if (q[i].p == NULL) {
			fprintf(stderr, "tpx-delay: out of memory\n");
			return 1;
		}
	}
	printf("tpx-delay: %s <-> %s, %d ms each way\n", a, b, delay_ms);
	fflush(stdout);
	end = now_us() + (int64_t)life_s * 1000000;
	while (now_us() < end) {
		struct pollfd pfd[2] = { { fd[0], POLLIN, 0 }, { fd[1], POLLIN, 0 } };
		int wait = 1000;

		/* q[0] holds what a sent, for b; q[1] the other way. */
		for (int i = 0; i < 2; i++) {
			int w = queue_drain(&q[i], fd[1 - i]);

			if (w >= 0 && w < wait)
				wait = w;
		}
		if (poll(pfd, 2, wait) < 0 && errno != EINTR)
			break;
		for (int i = 0; i < 2; i++)
			if (pfd[i].revents & POLLIN)
				queue_fill(&q[i], fd[i], delay_ms);
	}
	printf("tpx-delay: done; dropped %lu and %lu packets on full queues\n",
	       q[0].dropped, q[1].dropped);
	return 0;
}
