/*
 * Self-test of the end-to-end harness, tpx-echo, tpx-blast and
 * scripts/mkcerts.sh.  Needs tpx-echo and tpx-blast in $TLSPLEX_BUILD_DIR.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static char *tmp;

static void
setup(void)
{
	tmp = h_tmpdir();
	cr_assert_not_null(tmp);
}

static void
teardown(void)
{
	h_stop_all();
	if (tmp != NULL)
		h_rmtree(tmp);
	free(tmp);
	tmp = NULL;
}

TestSuite(harness, .init = setup, .fini = teardown, .timeout = 120);

static char *
path_in(const char *dir, const char *name)
{
	char *p = NULL;

	cr_assert_neq(asprintf(&p, "%s/%s", dir, name), -1);
	return p;
}

/* Starts tpx-echo in mode on a free port; returns the pid. */
static pid_t
start_echo(const char *mode, int *port)
{
	char *bin = path_in(h_build_dir(), "tpx-echo");
	char *log = path_in(tmp, "echo.log");
	char addr[64];
	pid_t pid;

	*port = h_free_port();
	cr_assert_gt(*port, 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", *port);
	{
		const char *argv[] = { bin, "-l", addr, "-m", mode, NULL };

		pid = h_spawn(argv, log);
	}
	cr_assert_gt(pid, 0, "cannot start %s", bin);
	cr_assert_eq(h_wait_file_contains(log, "tpx-echo: listening on", 5000), 0);
	cr_assert_eq(h_wait_port(*port, 5000), 0);
	free(bin);
	free(log);
	return pid;
}

static int
connect_to(int port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct timeval tv = { .tv_sec = 5 };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert_geq(fd, 0);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0, "connect: %s",
		     strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return fd;
}

/* A listening socket on a free loopback port, blocking with timeouts. */
static int
listen_any(int *port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert_geq(fd, 0);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_assert_eq(listen(fd, 16), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
	*port = ntohs(sin.sin_port);
	return fd;
}

static int
accept_within(int lfd, int timeout_ms)
{
	struct pollfd p = { .fd = lfd, .events = POLLIN };
	struct timeval tv = { .tv_sec = 5 };
	int fd;

	cr_assert_eq(poll(&p, 1, timeout_ms), 1, "no connection within %d ms", timeout_ms);
	fd = accept(lfd, NULL, NULL);
	cr_assert_geq(fd, 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return fd;
}

/* Reads exactly n bytes (or fails the test). */
static void
read_exact(int fd, void *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = recv(fd, (char *)buf + got, n - got, 0);

		cr_assert_gt(r, 0, "recv after %zu of %zu: %s", got, n, r < 0 ? strerror(errno) : "EOF");
		got += (size_t)r;
	}
}

static void
send_all(int fd, const void *buf, size_t n)
{
	cr_assert_eq(send(fd, buf, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* Builds a fake negotiation message with a body of body_len bytes. */
static size_t
fake_neg(uint8_t *out, size_t body_len, uint8_t type)
{
	static const uint8_t magic[8] = { 0x89, 'T', 'P', 'X', '\r', '\n', 0x1a, '\n' };

	memcpy(out, magic, 8);
	out[8] = 1;
	out[9] = 1;
	out[10] = type;
	out[11] = 0;
	out[12] = (uint8_t)(body_len >> 8);
	out[13] = (uint8_t)body_len;
	for (size_t i = 0; i < body_len; i++)
		out[14 + i] = (uint8_t)(0xa0 + i);
	return 14 + body_len;
}

/* --- payload generator and small helpers ------------------------------ */

Test(harness, payload_is_chunking_invariant)
{
	uint8_t whole[1000], parts[1000], other[1000];
	struct h_prng p;
	size_t off = 0, step = 1;

	h_payload_fill(whole, sizeof(whole), 42, 3);
	h_prng_init(&p, 42, 3);
	while (off < sizeof(parts)) {
		size_t n = step < sizeof(parts) - off ? step : sizeof(parts) - off;

		h_prng_fill(&p, parts + off, n);
		off += n;
		step = step % 13 + 1;
	}
	cr_assert_arr_eq(whole, parts, sizeof(whole));
	h_payload_fill(other, sizeof(other), 42, 4);
	cr_assert_neq(memcmp(whole, other, sizeof(whole)), 0);
	h_payload_fill(other, sizeof(other), 43, 3);
	cr_assert_neq(memcmp(whole, other, sizeof(whole)), 0);
}

Test(harness, memmem)
{
	const char *hay = "abcabcabd";

	cr_assert_eq(h_memmem(hay, 9, "abd", 3), hay + 6);
	cr_assert_eq(h_memmem(hay, 9, "abc", 3), hay);
	cr_assert_null(h_memmem(hay, 9, "abe", 3));
	cr_assert_null(h_memmem(hay, 2, "abc", 3));
	cr_assert_eq(h_memmem(hay, 9, "d", 1), hay + 8);
}

Test(harness, files)
{
	char *f = path_in(tmp, "a.txt"), *text;
	size_t len;
	int64_t t0;

	cr_assert_eq(h_write_file(f, "one %d two %s one\n", 1, "x"), 0);
	text = h_read_file(f, &len);
	cr_assert_str_eq(text, "one 1 two x one\n");
	cr_assert_eq(len, strlen(text));
	free(text);
	cr_assert_eq(h_file_count(f, "one"), 2);
	cr_assert_eq(h_file_count(f, "three"), 0);
	cr_assert_null(h_read_file("/nonexistent/x", &len));
	cr_assert_eq(h_file_count("/nonexistent/x", "x"), 0);

	t0 = h_now_ms();
	cr_assert_eq(h_wait_file_contains(f, "three", 200), -1);
	cr_assert_geq(h_now_ms() - t0, 200);
	cr_assert_lt(h_now_ms() - t0, 1000);
	{
		char *cmd = NULL;

		cr_assert_neq(asprintf(&cmd, "sleep 0.2; echo three >> %s", f), -1);
		const char *argv[] = { "/bin/sh", "-c", cmd, NULL };
		pid_t pid = h_spawn(argv, NULL);

		cr_assert_gt(pid, 0);
		cr_assert_eq(h_wait_file_contains(f, "three", 5000), 0);
		cr_assert_eq(h_wait_exit(pid, 5000), 0);
		free(cmd);
	}
	free(f);
}

Test(harness, ports)
{
	int a = h_free_port(), b = h_free_port(), lfd, port;

	cr_assert_gt(a, 0);
	cr_assert_gt(b, 0);
	cr_assert_neq(a, b);
	cr_assert_eq(h_port_listening(a), 0);
	lfd = listen_any(&port);
	cr_assert_eq(h_port_listening(port), 1);
	cr_assert_eq(h_wait_port(port, 1000), 0);
	close(lfd);
	cr_assert_eq(h_port_listening(port), 0);
	cr_assert_eq(h_wait_port(port, 100), -1);
}

/* --- processes -------------------------------------------------------- */

Test(harness, stop_echo_cleanly)
{
	int port;
	pid_t pid = start_echo("echo", &port);

	cr_assert_eq(h_alive(pid), 1);
	cr_assert_eq(h_stop(pid, 3000), 0, "tpx-echo must exit 0 on SIGTERM");
	cr_assert_eq(kill(pid, 0), -1);
	cr_assert_eq(errno, ESRCH);
	cr_assert_eq(h_alive(pid), -1);
	cr_assert_eq(h_port_listening(port), 0);
}

Test(harness, stop_kills_stubborn_group)
{
	char *pidfile = path_in(tmp, "bg.pid"), *cmd = NULL, *text, *stat_path = NULL;
	pid_t pid, bg;
	int64_t t0;

	cr_assert_neq(asprintf(&cmd, "trap '' TERM; sleep 30 & echo $! > %s; sleep 30; wait", pidfile), -1);
	{
		const char *argv[] = { "/bin/sh", "-c", cmd, NULL };

		pid = h_spawn(argv, NULL);
	}
	cr_assert_gt(pid, 0);
	cr_assert_eq(h_wait_file_contains(pidfile, "\n", 5000), 0);
	text = h_read_file(pidfile, NULL);
	bg = (pid_t)atoi(text);
	cr_assert_gt(bg, 0);
	cr_assert_eq(h_alive(pid), 1);
	t0 = h_now_ms();
	cr_assert_eq(h_stop(pid, 300), -1, "a process ignoring SIGTERM must be killed");
	cr_assert_lt(h_now_ms() - t0, 3000);
	cr_assert_eq(kill(pid, 0), -1);
	/* The background sleep in its group is dead too (gone, or a zombie
	 * left to init). */
	cr_assert_neq(asprintf(&stat_path, "/proc/%d/stat", (int)bg), -1);
	for (int i = 0; i < 100; i++) {
		char *st = h_read_file(stat_path, NULL);
		const char *rp = st != NULL ? strrchr(st, ')') : NULL;
		int dead = rp == NULL || rp[2] == 'Z' || rp[2] == 'X';

		free(st);
		if (dead)
			goto gone;
		h_sleep_ms(20);
	}
	cr_assert_fail("the background sleep %d survived", (int)bg);
gone:
	free(stat_path);
	free(text);
	free(cmd);
	free(pidfile);
}

Test(harness, exit_status)
{
	const char *three[] = { "/bin/sh", "-c", "exit 3", NULL };
	const char *term[] = { "/bin/sh", "-c", "kill -TERM $$", NULL };
	const char *slow[] = { "/bin/sleep", "30", NULL };
	const char *missing[] = { "/nonexistent/binary", NULL };
	char *log = path_in(tmp, "out.log");
	const char *echo[] = { "/bin/sh", "-c", "echo to-stdout; echo to-stderr >&2", NULL };
	pid_t pid;

	cr_assert_eq(h_run(three, NULL, 5000), 3);
	cr_assert_eq(h_run(term, NULL, 5000), 128 + SIGTERM);
	cr_assert_eq(h_run(slow, NULL, 200), -1);
	cr_assert_eq(h_spawn(missing, NULL), -1);
	cr_assert_eq(h_run(echo, log, 5000), 0);
	cr_assert_eq(h_file_count(log, "to-stdout\n"), 1);
	cr_assert_eq(h_file_count(log, "to-stderr\n"), 1);

	pid = h_spawn(three, NULL);
	cr_assert_gt(pid, 0);
	for (int i = 0; i < 250 && h_alive(pid) == 1; i++)
		h_sleep_ms(20);
	cr_assert_eq(h_alive(pid), 0);
	cr_assert_eq(h_stop(pid, 1000), 3, "the status of an exited process is kept");
	free(log);
}

/* --- echo and blast --------------------------------------------------- */

Test(harness, echo_clients_direct)
{
	char err[1024];
	int port;

	start_echo("echo", &port);
	cr_assert_eq(h_echo_clients(port, 10, 300001, 5, 20000, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(err, "");
	cr_assert_eq(h_echo_clients(port, 3, 0, 5, 5000, err, sizeof(err)), 0, "%s", err);
}

Test(harness, echo_clients_detect_failures)
{
	char err[4096];
	int rport, sport, free_port;

	start_echo("reset", &rport);
	cr_assert_eq(h_echo_clients(rport, 4, 100000, 1, 5000, err, sizeof(err)), -1);
	cr_assert_not_null(strstr(err, "client 3: connection reset after"), "%s", err);

	start_echo("sink", &sport);
	cr_assert_eq(h_echo_clients(sport, 2, 100000, 1, 5000, err, sizeof(err)), -1);
	cr_assert_not_null(strstr(err, "client 1: early EOF after 0 of 100000 bytes"), "%s", err);

	free_port = h_free_port();
	cr_assert_eq(h_echo_clients(free_port, 1, 10, 1, 2000, err, sizeof(err)), -1);
	cr_assert_not_null(strstr(err, "client 0: connect failed"), "%s", err);
}

Test(harness, echo_clients_detect_corruption_and_timeout)
{
	char err[1024];
	int lport, fd;
	int64_t t0;

	/* A server that answers with the wrong bytes. */
	int lfd = listen_any(&lport);
	uint8_t buf[100];

	{
		pid_t child = fork();

		cr_assert_geq(child, 0);
		if (child == 0) {
			size_t got = 0;

			alarm(10);
			fd = accept(lfd, NULL, NULL);
			while (got < sizeof(buf)) {
				ssize_t r = recv(fd, buf + got, sizeof(buf) - got, 0);

				if (r <= 0)
					_exit(1);
				got += (size_t)r;
			}
			buf[37] ^= 1;
			if (send(fd, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf))
				_exit(1);
			shutdown(fd, SHUT_WR);
			h_sleep_ms(500);
			_exit(0);
		}
		cr_assert_eq(h_echo_clients(lport, 1, sizeof(buf), 9, 5000, err, sizeof(err)), -1);
		cr_assert_not_null(strstr(err, "client 0: mismatch at byte 37"), "%s", err);
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
	}
	/* Nobody accepts: the connection sits in the backlog; time out. */
	t0 = h_now_ms();
	cr_assert_eq(h_echo_clients(lport, 1, 1000, 9, 300, err, sizeof(err)), -1);
	cr_assert_not_null(strstr(err, "client 0: timed out after 0 of 1000 bytes"), "%s", err);
	cr_assert_lt(h_now_ms() - t0, 2000);
	close(lfd);
}

Test(harness, blast_binary)
{
	char *bin = path_in(h_build_dir(), "tpx-blast");
	char *log = path_in(tmp, "blast.log");
	char *log2 = path_in(tmp, "blast2.log");
	char addr[64], raddr[64];
	int port, rport;

	start_echo("echo", &port);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	{
		const char *argv[] = { bin, "-c", addr, "-n", "20", "-b", "200000", "-s", "3", NULL };

		cr_assert_eq(h_run(argv, log, 30000), 0);
	}
	cr_assert_eq(h_file_count(log, "tpx-blast: 20/20 clients ok, 200000 bytes each way in "), 1);

	start_echo("reset", &rport);
	snprintf(raddr, sizeof(raddr), "127.0.0.1:%d", rport);
	{
		const char *argv[] = { bin, "-c", raddr, "-n", "2", "-b", "1000", "-t", "5", NULL };

		cr_assert_eq(h_run(argv, log2, 30000), 1);
	}
	cr_assert_eq(h_file_count(log2, "tpx-blast: 0/2 clients ok"), 1);
	cr_assert_eq(h_file_count(log2, "client 1: connection reset after 0 bytes"), 1);
	free(bin);
	free(log);
	free(log2);
}

/* --- the tap ---------------------------------------------------------- */

Test(harness, tap_records_20_clients)
{
	enum { N = 20, BYTES = 256 * 1024 };
	const uint64_t seed = 77;
	uint8_t *payload[N];
	int used[N] = { 0 };
	char err[2048];
	struct tap *tap;
	int port;

	start_echo("echo", &port);
	tap = tap_start(0, port);
	cr_assert_not_null(tap);
	cr_assert_eq(h_echo_clients(tap_port(tap), N, BYTES, seed, 30000, err, sizeof(err)), 0,
		     "%s", err);
	cr_assert_eq(tap_conn_count(tap), N);
	for (int i = 0; i < N; i++) {
		payload[i] = malloc(BYTES);
		h_payload_fill(payload[i], BYTES, seed, (uint64_t)i);
	}
	for (int c = 0; c < N; c++) {
		size_t lc, ls;
		const uint8_t *c2s, *s2c;
		int match = -1;

		cr_assert_eq(tap_wait_bytes(tap, c, TAP_S2C, BYTES, 5000), 0);
		c2s = tap_bytes(tap, c, TAP_C2S, &lc);
		s2c = tap_bytes(tap, c, TAP_S2C, &ls);
		cr_assert_eq(lc, BYTES, "conn %d: c2s %zu bytes", c, lc);
		cr_assert_eq(ls, BYTES, "conn %d: s2c %zu bytes", c, ls);
		for (int i = 0; i < N && match < 0; i++)
			if (!used[i] && memcmp(c2s, payload[i], BYTES) == 0)
				match = i;
		cr_assert_geq(match, 0, "conn %d carries no client's payload", c);
		used[match] = 1;
		cr_assert_eq(memcmp(s2c, payload[match], BYTES), 0);
		cr_assert_eq(tap_overflow(tap, c, TAP_C2S), 0);
		cr_assert_eq(tap_inject_offset(tap, c, TAP_C2S), -1);
	}
	for (int c = 0; c < N; c++) {
		for (int i = 0; i < 100 && tap_conn_closed(tap, c) != 1; i++)
			h_sleep_ms(20);
		cr_assert_eq(tap_conn_closed(tap, c), 1);
	}
	cr_assert_null(tap_bytes(tap, N, TAP_C2S, NULL));
	cr_assert_eq(tap_wait_bytes(tap, N, TAP_C2S, 1, 100), -1);
	for (int i = 0; i < N; i++)
		free(payload[i]);
	tap_stop(tap);
}

Test(harness, tap_half_close_and_kill)
{
	struct tap *tap;
	int sport, lfd = listen_any(&sport);
	int cfd, sfd;
	char buf[16];

	tap = tap_start(0, sport);
	cr_assert_not_null(tap);
	cfd = connect_to(tap_port(tap));
	sfd = accept_within(lfd, 5000);
	send_all(cfd, "ping", 4);
	shutdown(cfd, SHUT_WR);
	read_exact(sfd, buf, 4);
	cr_assert_arr_eq(buf, "ping", 4);
	cr_assert_eq(recv(sfd, buf, sizeof(buf), 0), 0, "the client's FIN must reach the server");
	send_all(sfd, "pong", 4);
	read_exact(cfd, buf, 4);
	cr_assert_arr_eq(buf, "pong", 4);
	close(sfd);
	cr_assert_eq(recv(cfd, buf, sizeof(buf), 0), 0);
	close(cfd);

	/* A second connection is killed by the tap: both ends see RST. */
	cfd = connect_to(tap_port(tap));
	sfd = accept_within(lfd, 5000);
	send_all(cfd, "x", 1);
	read_exact(sfd, buf, 1);
	cr_assert_eq(tap_kill(tap), 1);
	cr_assert_eq(recv(cfd, buf, sizeof(buf), 0), -1);
	cr_assert_eq(errno, ECONNRESET);
	cr_assert_eq(recv(sfd, buf, sizeof(buf), 0), -1);
	cr_assert_eq(errno, ECONNRESET);
	cr_assert_eq(tap_conn_closed(tap, 1), 1);
	cr_assert_eq(tap_conn_count(tap), 2);
	close(cfd);
	close(sfd);
	close(lfd);
	tap_stop(tap);
}

Test(harness, tap_pause)
{
	struct tap *tap;
	int sport, lfd = listen_any(&sport);
	int cfd, sfd;
	struct pollfd p;
	char buf[4];

	tap = tap_start(0, sport);
	cr_assert_not_null(tap);
	cfd = connect_to(tap_port(tap));
	sfd = accept_within(lfd, 5000);
	tap_set_paused(tap, 1);
	send_all(cfd, "abc", 3);
	p = (struct pollfd){ .fd = sfd, .events = POLLIN };
	cr_assert_eq(poll(&p, 1, 300), 0, "nothing may pass while paused");
	tap_set_paused(tap, 0);
	read_exact(sfd, buf, 3);
	cr_assert_arr_eq(buf, "abc", 3);
	close(cfd);
	close(sfd);
	close(lfd);
	tap_stop(tap);
}

Test(harness, tap_inject_c2s_after_fragmented_message)
{
	static const char inj[] = "INJECTED";
	uint8_t msg[64], want[128], got[128];
	size_t mlen = fake_neg(msg, 20, 1), wlen;
	struct tap *tap;
	const uint8_t *cap;
	size_t clen;
	int port, cfd;

	start_echo("echo", &port);
	tap = tap_start(0, port);
	cr_assert_not_null(tap);
	cr_assert_eq(tap_set_inject(tap, TAP_C2S, inj, 8), 0);
	cfd = connect_to(tap_port(tap));
	/* The message arrives in pieces; nothing passes until it is whole. */
	for (size_t i = 0; i < mlen; i += 5) {
		send_all(cfd, msg + i, mlen - i < 5 ? mlen - i : 5);
		h_sleep_ms(5);
	}
	send_all(cfd, "TAIL", 4);
	shutdown(cfd, SHUT_WR);
	memcpy(want, msg, mlen);
	memcpy(want + mlen, inj, 8);
	memcpy(want + mlen + 8, "TAIL", 4);
	wlen = mlen + 12;
	read_exact(cfd, got, wlen);
	cr_assert_arr_eq(got, want, wlen);
	cr_assert_eq(recv(cfd, got, sizeof(got), 0), 0);
	cr_assert_eq(tap_wait_bytes(tap, 0, TAP_C2S, wlen, 2000), 0);
	cap = tap_bytes(tap, 0, TAP_C2S, &clen);
	cr_assert_eq(clen, wlen);
	cr_assert_arr_eq(cap, want, wlen);
	cr_assert_eq(tap_inject_offset(tap, 0, TAP_C2S), (long)mlen);
	cr_assert_eq(tap_inject_offset(tap, 0, TAP_S2C), -1);
	close(cfd);

	/* One-shot: the next connection is not touched. */
	cfd = connect_to(tap_port(tap));
	send_all(cfd, msg, mlen);
	shutdown(cfd, SHUT_WR);
	read_exact(cfd, got, mlen);
	cr_assert_arr_eq(got, msg, mlen);
	cr_assert_eq(recv(cfd, got, sizeof(got), 0), 0);
	cr_assert_eq(tap_inject_offset(tap, 1, TAP_C2S), -1);
	close(cfd);
	tap_stop(tap);
}

Test(harness, tap_inject_s2c_with_trailing_bytes)
{
	uint8_t msg[300], got[400], want[400];
	size_t mlen = fake_neg(msg, 256, 2);
	struct tap *tap;
	int sport, lfd = listen_any(&sport), cfd, sfd;
	const uint8_t *cap;
	size_t clen;

	tap = tap_start(0, sport);
	cr_assert_not_null(tap);
	cr_assert_eq(tap_set_inject(tap, TAP_S2C, "\x16\x03\x01", 3), 0);
	cfd = connect_to(tap_port(tap));
	sfd = accept_within(lfd, 5000);
	/* The message and the bytes after it come in one segment. */
	memcpy(want, msg, mlen);
	memcpy(want + mlen, "REST", 4);
	send_all(sfd, want, mlen + 4);
	memcpy(want + mlen, "\x16\x03\x01", 3);
	memcpy(want + mlen + 3, "REST", 4);
	read_exact(cfd, got, mlen + 7);
	cr_assert_arr_eq(got, want, mlen + 7);
	cap = tap_bytes(tap, 0, TAP_S2C, &clen);
	cr_assert_eq(clen, mlen + 7);
	cr_assert_arr_eq(cap, want, mlen + 7);
	cr_assert_eq(tap_inject_offset(tap, 0, TAP_S2C), (long)mlen);
	close(cfd);
	close(sfd);
	close(lfd);
	tap_stop(tap);
}

Test(harness, tap_inject_skips_other_protocols)
{
	uint8_t hello[40], got[40];
	struct tap *tap;
	int port, cfd;

	memset(hello, 0x16, sizeof(hello));
	start_echo("echo", &port);
	tap = tap_start(0, port);
	cr_assert_not_null(tap);
	cr_assert_eq(tap_set_inject(tap, TAP_C2S, "EVIL", 4), 0);
	cfd = connect_to(tap_port(tap));
	send_all(cfd, hello, sizeof(hello));
	read_exact(cfd, got, sizeof(got));
	cr_assert_arr_eq(got, hello, sizeof(hello));
	shutdown(cfd, SHUT_WR);
	cr_assert_eq(recv(cfd, got, sizeof(got), 0), 0);
	cr_assert_eq(tap_inject_offset(tap, 0, TAP_C2S), -1);

	/* A stream that ends inside a message is passed on as it is. */
	cr_assert_eq(tap_set_inject(tap, TAP_C2S, "EVIL", 4), 0);
	close(cfd);
	cfd = connect_to(tap_port(tap));
	fake_neg(hello, 20, 1);
	send_all(cfd, hello, 20);
	shutdown(cfd, SHUT_WR);
	read_exact(cfd, got, 20);
	cr_assert_arr_eq(got, hello, 20);
	cr_assert_eq(recv(cfd, got, sizeof(got), 0), 0);
	cr_assert_eq(tap_inject_offset(tap, 1, TAP_C2S), -1);
	close(cfd);
	tap_stop(tap);
}

Test(harness, tap_to_dead_target_resets_client)
{
	struct tap *tap = tap_start(0, h_free_port());
	char buf[4];
	int cfd;
	ssize_t r;

	cr_assert_not_null(tap);
	cfd = connect_to(tap_port(tap));
	r = recv(cfd, buf, sizeof(buf), 0);
	cr_assert_eq(r, -1);
	cr_assert_eq(errno, ECONNRESET);
	cr_assert_eq(tap_conn_count(tap), 1);
	close(cfd);
	tap_stop(tap);
}

/* --- certificates ----------------------------------------------------- */

Test(harness, mkcerts)
{
	char *script = path_in(h_source_dir(), "scripts/mkcerts.sh");
	char *dir = path_in(tmp, "certs");
	char *log = path_in(tmp, "mkcerts.log");
	char *vlog = path_in(tmp, "verify.log");
	char *ca = path_in(dir, "ca.crt"), *rca = path_in(dir, "rogue-ca.crt");
	char *relay = path_in(dir, "relay.crt"), *gw = path_in(dir, "gw1.crt");
	char *rrelay = path_in(dir, "rogue-relay.crt"), *key = path_in(dir, "relay.key");
	char *before, *after;
	struct stat st;
	size_t len;

	{
		const char *argv[] = { "/bin/sh", script, dir, NULL };

		cr_assert_eq(h_run(argv, log, 30000), 0);
	}
	{
		size_t l;
		char *out = h_read_file(log, &l);

		cr_assert_eq(l, 0, "mkcerts must be quiet on success: %s", out);
		free(out);
	}
	{
		const char *argv[] = { "/usr/bin/openssl", "verify", "-CAfile", ca, relay, gw, NULL };

		cr_assert_eq(h_run(argv, vlog, 10000), 0);
		cr_assert_eq(h_file_count(vlog, ": OK"), 2);
	}
	{
		const char *argv[] = { "/usr/bin/openssl", "verify", "-CAfile", rca, rrelay, NULL };

		cr_assert_eq(h_run(argv, vlog, 10000), 0);
		cr_assert_eq(h_file_count(vlog, ": OK"), 3);
	}
	{
		const char *argv[] = { "/usr/bin/openssl", "verify", "-CAfile", ca, rrelay, NULL };

		cr_assert_neq(h_run(argv, vlog, 10000), 0, "the rogue relay must not verify");
	}
	cr_assert_eq(stat(key, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);

	before = h_read_file(ca, &len);
	cr_assert_not_null(before);
	{
		const char *argv[] = { "/bin/sh", script, dir, NULL };

		cr_assert_eq(h_run(argv, NULL, 30000), 0);
	}
	after = h_read_file(ca, NULL);
	cr_assert_str_eq(before, after, "a second run must keep the CA");
	free(after);
	{
		const char *argv[] = { "/bin/sh", script, "-f", dir, NULL };

		cr_assert_eq(h_run(argv, NULL, 30000), 0);
	}
	after = h_read_file(ca, NULL);
	cr_assert_str_neq(before, after, "-f must make a new CA");
	free(after);
	free(before);
	{
		const char *argv[] = { "/bin/sh", script, NULL };

		cr_assert_eq(h_run(argv, log, 30000), 2);
	}
	free(script);
	free(dir);
	free(log);
	free(vlog);
	free(ca);
	free(rca);
	free(relay);
	free(gw);
	free(rrelay);
	free(key);
}
