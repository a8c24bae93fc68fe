/*
 * The sinks beside the file, in-process: the Unix datagram socket, the
 * external command and syslog.  Each against a receiver or a program the
 * test owns; every wait bounded.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "hook.h"
#include "hook_sink.h"

static char dir[64];

static void
setup(void)
{
	hook_reset();
	hook_set_identity("relay", "r1");
	signal(SIGPIPE, SIG_IGN);
	snprintf(dir, sizeof(dir), "/tmp/tlsplex-sinks-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void
teardown(void)
{
	char cmd[128];

	hook_reset();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (dir[0] != '\0' && system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

TestSuite(sinks, .init = setup, .fini = teardown, .timeout = 60);

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *
slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long n;

	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = calloc(1, (size_t)n + 1);
	if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	return buf;
}

static const struct hook_sink_stats *
stats_of(const char *kind)
{
	static struct hook_sink_stats st;
	const char *name, *k;
	int i;

	for (i = 0; hook_sink_stats(i, &name, &k, &st) == 0; i++)
		if (strcmp(k, kind) == 0)
			return &st;
	cr_assert_fail("no %s sink", kind);
	return NULL;
}

/* A datagram receiver bound at path (non-blocking). */
static int
receiver(const char *path, int rcvbuf)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	cr_assert_geq(fd, 0);
	if (rcvbuf > 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	unlink(path);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "%s",
		     strerror(errno));
	return fd;
}

/* One datagram into buf (NUL-terminated), waiting up to ms; its length
 * or -1. */
static ssize_t
recv_one(int fd, char *buf, size_t cap, int ms)
{
	struct pollfd p = { fd, POLLIN, 0 };
	ssize_t n;

	if (poll(&p, 1, ms) <= 0)
		return -1;
	n = recv(fd, buf, cap - 1, 0);
	if (n >= 0)
		buf[n] = '\0';
	return n;
}

static struct hook_event
sample(int type, uint64_t link)
{
	struct hook_event ev = {
		.type = type, .link_id = link, .local = "127.0.0.1:7400",
		.peer = "127.0.0.1:50000", .peer_node = "gw1",
		.transcript = "00112233445566778899aabbccddeeff",
		.tls_offset_out = 125, .tls_offset_in = 102,
		.reason = "a \"quoted\" reason with ] and \\ in it",
		.outcome = "tls", .protection = "tls", .stage = "veto",
	};

	return ev;
}

/* ---- the Unix datagram socket ----------------------------------------- */

Test(sinks, socket_receiver_gets_every_event_intact_one_per_datagram)
{
	char sock[128], file[128], buf[HOOK_LINE_MAX + 64], err[256];
	char *text, *line, *save = NULL, *got[200];
	static const int types[] = { HOOK_LINK_OPENED, HOOK_HANDSHAKE_PENDING,
				     HOOK_HANDSHAKE_DONE, HOOK_LINK_CLOSED };
	struct hook_event ev;
	char big[6000];
	int fd, i, n = 0;

	snprintf(sock, sizeof(sock), "%s/events.sock", dir);
	snprintf(file, sizeof(file), "%s/events.jsonl", dir);
	fd = receiver(sock, 1 << 20);
	cr_assert_eq(hook_open_file(file), 0);
	cr_assert_eq(hook_open_socket(sock, "all", err, sizeof(err)), 0, "%s", err);
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	/* The receiver keeps up (a datagram socket queues only
	 * net.unix.max_dgram_qlen datagrams, 10 by default). */
	for (i = 0; i < 200; i++) {
		ssize_t len;

		ev = sample(types[i % 4], (uint64_t)i + 1);
		if (i == 7)
			ev.reason = big;	/* a datagram near the line limit */
		hook_emit(&ev);
		len = recv_one(fd, buf, sizeof(buf), 2000);
		cr_assert_gt(len, 0, "datagram %d did not arrive", i);
		cr_assert_eq(buf[len - 1], '\n', "datagram %d: no newline", i);
		cr_assert_null(memchr(buf, '\n', (size_t)len - 1),
			       "datagram %d holds more than one line", i);
		buf[len - 1] = '\0';
		got[i] = strdup(buf);
	}
	cr_assert_eq(recv_one(fd, buf, sizeof(buf), 100), -1, "one datagram too many");
	hook_close_file();
	text = slurp(file);
	cr_assert_not_null(text);
	/* Datagram i is line i of the file, byte for byte. */
	for (line = strtok_r(text, "\n", &save); line != NULL && n < 200;
	     line = strtok_r(NULL, "\n", &save), n++)
		cr_assert_str_eq(got[n], line, "datagram %d differs", n);
	cr_assert_eq(n, 200);
	cr_assert_gt(strlen(got[7]), 6000);
	cr_assert_eq(stats_of("socket")->written, 200);
	for (i = 0; i < 200; i++)
		free(got[i]);
	free(text);
	close(fd);
}

Test(sinks, socket_without_receiver_drops_and_counts_and_recovers)
{
	char sock[128], file[128], buf[HOOK_LINE_MAX + 64], err[256];
	const struct hook_sink_stats *st;
	struct hook_event ev = sample(HOOK_LINK_OPENED, 1);
	char *text;
	int fd, i, lines = 0;

	snprintf(sock, sizeof(sock), "%s/events.sock", dir);
	snprintf(file, sizeof(file), "%s/events.jsonl", dir);
	cr_assert_eq(hook_open_file(file), 0);
	cr_assert_eq(hook_open_socket(sock, "all", err, sizeof(err)), 0, "%s", err);
	/* ENOENT: no socket at the path. */
	for (i = 0; i < 5; i++)
		cr_assert_eq(hook_emit(&ev), 0);
	st = stats_of("socket");
	cr_assert_eq(st->dropped, 5);
	cr_assert_eq(st->written, 0);
	/* ECONNREFUSED: a socket file nobody is bound to any more. */
	fd = receiver(sock, 0);
	close(fd);
	for (i = 0; i < 3; i++)
		hook_emit(&ev);
	cr_assert_eq(stats_of("socket")->dropped, 8);
	/* The receiver is back: it learns how many it missed, first. */
	fd = receiver(sock, 0);
	ev.type = HOOK_LINK_CLOSED;
	hook_emit(&ev);
	cr_assert_gt(recv_one(fd, buf, sizeof(buf), 2000), 0);
	cr_assert_not_null(strstr(buf, "\"event\":\"sink_recovered\""), "%s", buf);
	cr_assert_not_null(strstr(buf, "\"lost\":8"), "%s", buf);
	cr_assert_not_null(strstr(buf, "\"sink\":\"socket:"), "%s", buf);
	cr_assert_gt(recv_one(fd, buf, sizeof(buf), 2000), 0);
	cr_assert_not_null(strstr(buf, "\"event\":\"link_closed\""), "%s", buf);
	cr_assert_eq(stats_of("socket")->written, 1);
	/* The file sink got every event all along. */
	hook_close_file();
	text = slurp(file);
	cr_assert_not_null(text);
	for (char *p = text; (p = strchr(p, '\n')) != NULL; p++)
		lines++;
	cr_assert_eq(lines, 9, "%s", text);
	cr_assert_null(strstr(text, "sink_recovered"), "only the socket lost events");
	free(text);
	close(fd);
}

Test(sinks, socket_receiver_that_never_reads_never_blocks_the_loop)
{
	char sock[128], err[256];
	struct hook_event ev = sample(HOOK_LINK_CLOSED, 1);
	const struct hook_sink_stats *st;
	int64_t t0, worst = 0;
	int fd, i;

	snprintf(sock, sizeof(sock), "%s/events.sock", dir);
	fd = receiver(sock, 4096);
	cr_assert_eq(hook_open_socket(sock, "all", err, sizeof(err)), 0, "%s", err);
	for (i = 0; i < 20000; i++) {
		t0 = now_ms();
		hook_emit(&ev);
		if (now_ms() - t0 > worst)
			worst = now_ms() - t0;
	}
	st = stats_of("socket");
	cr_assert_gt(st->dropped, 0, "the receiver's buffer never filled");
	cr_assert_gt(st->written, 0);
	cr_assert_eq(st->written + st->dropped, 20000);
	cr_assert_lt(worst, 100, "one emit took %lld ms", (long long)worst);
	close(fd);
}

Test(sinks, socket_event_filter_skips_the_others_without_counting_them)
{
	char sock[128], buf[HOOK_LINE_MAX + 64], err[256];
	struct hook_event ev;
	int fd, i;

	snprintf(sock, sizeof(sock), "%s/events.sock", dir);
	fd = receiver(sock, 0);
	cr_assert_eq(hook_open_socket(sock, "link_opened, link_closed", err,
				      sizeof(err)), 0, "%s", err);
	for (i = 0; i < HOOK_TYPES; i++) {
		ev = sample(i, 1);
		hook_emit(&ev);
	}
	cr_assert_gt(recv_one(fd, buf, sizeof(buf), 2000), 0);
	cr_assert_not_null(strstr(buf, "\"event\":\"link_opened\""), "%s", buf);
	cr_assert_gt(recv_one(fd, buf, sizeof(buf), 2000), 0);
	cr_assert_not_null(strstr(buf, "\"event\":\"link_closed\""), "%s", buf);
	cr_assert_eq(recv_one(fd, buf, sizeof(buf), 100), -1, "%s", buf);
	cr_assert_eq(stats_of("socket")->written, 2);
	cr_assert_eq(stats_of("socket")->dropped, 0);
	cr_assert_eq(stats_of("socket")->errors, 0);
	/* Bad lists are refused and the open sink stays. */
	cr_assert_eq(hook_open_socket(sock, "link_opened,no_such_event", err,
				      sizeof(err)), -1);
	cr_assert_not_null(strstr(err, "no_such_event"), "%s", err);
	cr_assert_eq(hook_open_socket(sock, "stream_opened", err, sizeof(err)), -1);
	cr_assert_eq(hook_open_socket(sock, "link_opened,,link_closed", err,
				      sizeof(err)), -1);
	cr_assert_eq(stats_of("socket")->written, 2, "the open sink stays");
	close(fd);
}
