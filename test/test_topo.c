/*
 * Topology end to end: one gateway, two or three relays on loopback
 * ports.  Failover when a relay is down at start, refuses the gateway, or
 * is killed mid-transfer; relay_order = spread; relay_failback; SIGTERM
 * drains within drain_timeout; a relay restarted under load loses no byte
 * of a stream that completed.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "pair.h"

#define NRELAYS 3

/* One relay of the list: its port, process and files. */
struct relay_inst {
	int port;
	pid_t pid;
	char log[600], hooks[600];
};

static struct relay_inst R[NRELAYS];

/* mkcerts.sh takes longer than most tests here: one set for the run. */
#define CERT_CACHE_ENV "TLSPLEX_TOPO_CERTS"

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
	cert_cache_make(CERT_CACHE_ENV);
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
	cert_cache_remove(CERT_CACHE_ENV);
}

static void
topo_init(void)
{
	pair_init_from(getenv(CERT_CACHE_ENV));
	for (int i = 0; i < NRELAYS; i++) {
		R[i].port = h_free_port();
		R[i].pid = 0;
		snprintf(R[i].log, sizeof(R[i].log), "%s/relay%d.log", P.dir, i);
		snprintf(R[i].hooks, sizeof(R[i].hooks), "%s/relay%d-hooks.jsonl",
			 P.dir, i);
	}
	/* pair_fini() checks the first relay's log for internal errors. */
	snprintf(P.relay_log, sizeof(P.relay_log), "%s", R[0].log);
}

static void
topo_fini(void)
{
	int bad = 0;

	h_stop_all();
	for (int i = 1; i < NRELAYS; i++)
		bad += h_file_count(R[i].log, "internal error");
	pair_fini();
	cr_assert_eq(bad, 0, "a relay logged an internal error");
}

TestSuite(topo, .init = topo_init, .fini = topo_fini, .timeout = 90);

/* Starts relay i with extra [relay] lines; sections replaces the default
 * [peer gw1] when it defines a [peer] itself. */
static void
relay_start(int i, const char *extra, const char *sections)
{
	char conf[600];
	int before = h_file_count(R[i].log, "listening for links");
	int64_t end;

	snprintf(conf, sizeof(conf), "%s/relay%d.ini", P.dir, i);
	cr_assert_eq(h_write_file(conf,
		"[relay]\nnode_name = relay\nlisten = 127.0.0.1:%d\n"
		"ca = certs/ca.crt\nhook_file = relay%d-hooks.jsonl\n"
		"negotiation_timeout = 2s\nhandshake_timeout = 3s\n" TLS_RELAY
		"%s\n[service echo]\nbackend = 127.0.0.1:%d\n%s",
		R[i].port, i, extra, P.backend_port,
		strstr(sections, "[peer ") ? sections : "[peer gw1]\n"), 0);
	R[i].pid = spawn_bin("tlsplex-relay", conf, R[i].log);
	cr_assert_gt(R[i].pid, 0);
	end = h_now_ms() + 10000;
	while (h_file_count(R[i].log, "listening for links") <= before) {
		cr_assert_lt(h_now_ms(), end, "relay %d did not start:\n%s", i,
			     h_read_file(R[i].log, NULL));
		h_sleep_ms(20);
	}
}

/* Writes the gateway's configuration: it dials the relays whose indexes
 * are in order (e.g. "01"), with extra [gateway] lines. */
static void
gw_write(const char *order, const char *extra)
{
	char conf[600], list[256];
	size_t n = 0;

	list[0] = '\0';
	for (const char *p = order; *p; p++)
		n += (size_t)snprintf(list + n, sizeof(list) - n, "%s127.0.0.1:%d",
				      p == order ? "" : ", ", R[*p - '0'].port);
	snprintf(conf, sizeof(conf), "%s/gateway.ini", P.dir);
	cr_assert_eq(h_write_file(conf,
		"[gateway]\nnode_name = gw1\nrelay = %s\nserver_name = relay\n"
		"ca = certs/ca.crt\n" TLS_GW "hook_file = gw-hooks.jsonl\n"
		"redial_min = 200ms\nredial_max = 1s\nhold_timeout = 10s\n"
		"negotiation_timeout = 3s\nhandshake_timeout = 3s\n%s\n"
		"[service echo]\nlisten = 127.0.0.1:%d\n",
		list, extra, P.svc_port), 0);
}

/* Starts the gateway on gw_write(order, extra). */
static void
gw_start(const char *order, const char *extra)
{
	char conf[600];

	gw_write(order, extra);
	snprintf(conf, sizeof(conf), "%s/gateway.ini", P.dir);
	P.gw = spawn_bin("tlsplex-gateway", conf, P.gw_log);
	cr_assert_gt(P.gw, 0);
}

/* Waits until file holds needle at least n times. */
static void
wait_count(const char *file, const char *needle, int n, int ms)
{
	cr_assert_eq(h_wait_count_above(file, needle, n - 1, ms), 0,
		     "%s: fewer than %d '%s' within %d ms; gateway log:\n%s",
		     file, n, needle, ms, h_read_file(P.gw_log, NULL));
}

/* Links relay i has completed TLS on. */
static int
relay_links(int i)
{
	return h_file_count(R[i].hooks, "\"event\":\"handshake_done\"");
}

/* Waits up to 5 s for relay i to have completed TLS on n links, and
 * asserts it has exactly n (its hook line may trail the gateway's "is
 * up" a little). */
static void
wait_links(int i, int n)
{
	int64_t end = h_now_ms() + 5000;

	while (relay_links(i) < n && h_now_ms() < end)
		h_sleep_ms(20);
	cr_assert_eq(relay_links(i), n, "relay %d completed TLS on %d links, "
		     "not %d; gateway log:\n%s", i, relay_links(i), n,
		     h_read_file(P.gw_log, NULL));
}

static void
echo_ok(int nclients, uint64_t seed)
{
	char err[2048];

	cr_assert_eq(h_echo_clients(P.svc_port, nclients, 50000, seed, 30000,
				    err, sizeof(err)), 0, "%s\ngateway log:\n%s",
		     err, h_read_file(P.gw_log, NULL));
}

/* ---- a client that tells completion from reset from truncation ------- */

enum outcome {
	O_COMPLETE,   /* every byte echoed intact, then EOF */
	O_RESET,      /* the connection was reset toward the client */
	O_TRUNCATED,  /* EOF before every byte came back: a silent cut */
	O_CORRUPT,    /* a byte differs */
	O_TIMEOUT,
	O_NOCONNECT,
};

struct client {
	int port;
	size_t bytes;
	uint64_t seed;
	int index;
	int timeout_ms;
	size_t got;            /* echoed bytes read so far */
	volatile int progress; /* got, for the test thread */
	enum outcome out;
};

/* Sends c->bytes of its payload while reading the echo, half-closes,
 * reads to the end; records what happened in c->out. */
static void *
client_run(void *arg)
{
	struct client *c = arg;
	uint8_t *want = malloc(c->bytes), buf[16384];
	size_t sent = 0;
	int64_t end = h_now_ms() + c->timeout_ms;
	int fd = h_connect(c->port), shut = 0;

	c->out = O_TIMEOUT;
	if (fd < 0 || want == NULL) {
		c->out = O_NOCONNECT;
		goto out;
	}
	h_payload_fill(want, c->bytes, c->seed, (uint64_t)c->index);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	while (h_now_ms() < end) {
		struct pollfd pfd = { fd, POLLIN | (sent < c->bytes ? POLLOUT : 0), 0 };
		ssize_t r;

		if (poll(&pfd, 1, 50) <= 0)
			continue;
		if (pfd.revents & POLLOUT) {
			size_t n = c->bytes - sent > 16384 ? 16384 : c->bytes - sent;

			r = send(fd, want + sent, n, MSG_NOSIGNAL);
			if (r < 0 && errno != EAGAIN) {
				c->out = O_RESET;
				break;
			}
			if (r > 0)
				sent += (size_t)r;
			if (sent == c->bytes && !shut) {
				shutdown(fd, SHUT_WR);
				shut = 1;
			}
		}
		if (pfd.revents & (POLLIN | POLLERR | POLLHUP)) {
			r = read(fd, buf, sizeof(buf));
			if (r < 0 && errno == EAGAIN)
				continue;
			if (r < 0) {
				c->out = errno == ECONNRESET ? O_RESET : O_TRUNCATED;
				break;
			}
			if (r == 0) {
				c->out = c->got == c->bytes ? O_COMPLETE : O_TRUNCATED;
				break;
			}
			if (c->got + (size_t)r > c->bytes ||
			    memcmp(buf, want + c->got, (size_t)r) != 0) {
				c->out = O_CORRUPT;
				break;
			}
			c->got += (size_t)r;
			c->progress = (int)(c->got > (size_t)0x7fffffff ?
					    0x7fffffff : c->got);
		}
	}
out:
	if (fd >= 0)
		close(fd);
	free(want);
	return NULL;
}

static const char *
outcome_name(enum outcome o)
{
	static const char *const n[] = { "complete", "reset", "TRUNCATED",
					 "CORRUPT", "timeout", "no connection" };

	return n[o];
}

/* ---- failover ------------------------------------------------------- */

Test(topo, first_relay_down_at_start_fails_over_to_the_second)
{
	start_echo("echo");
	relay_start(1, "", "");
	gw_start("01", "");
	wait_count(P.gw_log, "is up", 1, 15000);
	cr_assert_eq(h_file_count(P.gw_log, "failover: link to relay 1 of 2"), 1,
		     "%s", h_read_file(P.gw_log, NULL));
	cr_assert_eq(h_wait_file_contains(P.gw_log, "to relay 2 of 2", 1000), 0);
	echo_ok(8, 1);
	wait_links(1, 1);
}

Test(topo, a_relay_that_refuses_is_passed_over)
{
	start_echo("echo");
	/* Relay 0 knows another gateway only: it refuses gw1 (UNKNOWN_PEER). */
	relay_start(0, "", "[peer someone-else]\n");
	relay_start(1, "", "");
	gw_start("01", "");
	wait_count(P.gw_log, "is up", 1, 15000);
	cr_assert_eq(h_wait_file_contains(P.gw_log, "failover: link to relay 1 of 2", 1000),
		     0, "%s", h_read_file(P.gw_log, NULL));
	cr_assert_eq(h_wait_file_contains(P.gw_log, "not a known partner", 1000),
		     0, "%s", h_read_file(P.gw_log, NULL));
	cr_assert_eq(h_wait_file_contains(R[0].log, "matches no [peer]", 1000), 0);
	echo_ok(4, 2);
	cr_assert_eq(relay_links(0), 0);
	wait_links(1, 1);
}

Test(topo, sigkill_mid_transfer_resets_streams_and_moves_to_the_next_relay)
{
	struct client c = { .bytes = 32u << 20, .seed = 3, .index = 0,
			    .timeout_ms = 20000 };
	pthread_t th;
	int64_t t0, end;

	start_echo("echo");
	relay_start(0, "", "");
	relay_start(1, "", "");
	relay_start(2, "", "");
	gw_start("012", "");
	wait_count(P.gw_log, "is up", 1, 15000);
	wait_links(0, 1);
	c.port = P.svc_port;
	cr_assert_eq(pthread_create(&th, NULL, client_run, &c), 0);
	end = h_now_ms() + 15000;
	while (c.progress < (1 << 20) && h_now_ms() < end)
		h_sleep_ms(10);
	cr_assert_geq(c.progress, 1 << 20, "the transfer did not start");
	t0 = h_now_ms();
	kill(R[0].pid, SIGKILL);
	pthread_join(th, NULL);
	/* Reset toward the client at once, never a quiet EOF. */
	cr_assert_eq(c.out, O_RESET, "the client saw: %s after %zu bytes",
		     outcome_name(c.out), c.got);
	cr_assert_lt(h_now_ms() - t0, 3000, "the reset took %lld ms",
		     (long long)(h_now_ms() - t0));
	cr_log_info("SIGKILL of the relay: the client was reset %lld ms later, "
		    "after %zu of %zu bytes", (long long)(h_now_ms() - t0), c.got,
		    c.bytes);
	cr_assert_eq(h_stop(R[0].pid, 1000), 128 + SIGKILL);
	/* New clients go to the next relay of the list. */
	echo_ok(8, 4);
	cr_assert_eq(h_file_count(P.gw_log, "failover: link to relay 1 of 3"), 1,
		     "%s", h_read_file(P.gw_log, NULL));
	/* The switch is an event too, once, from relay 0 to relay 1. */
	cr_assert_eq(h_file_count(P.gw_hooks, "\"event\":\"relay_switch\""), 1,
		     "%s", h_read_file(P.gw_hooks, NULL));
	cr_assert_eq(h_file_count(P.gw_hooks, "\"switch\":\"failover\""), 1);
	wait_links(1, 1);
	cr_assert_eq(relay_links(2), 0);
}

/* ---- spread and failback -------------------------------------------- */

Test(topo, spread_puts_each_new_link_on_the_next_relay)
{
	int seen[2] = { 0, 0 };

	start_echo("echo");
	relay_start(0, "", "");
	relay_start(1, "", "");
	gw_start("01", "relay_order = spread\n");
	wait_count(P.gw_log, "is up", 1, 15000);
	for (int k = 2; k <= 4; k++) {
		kill(P.gw, SIGUSR1);
		wait_count(P.gw_log, "is up", k, 15000);
	}
	echo_ok(2, 5);
	for (int64_t end = h_now_ms() + 5000;
	     relay_links(0) + relay_links(1) < 4 && h_now_ms() < end;)
		h_sleep_ms(20);
	seen[0] = relay_links(0);
	seen[1] = relay_links(1);
	cr_assert_eq(seen[0] + seen[1], 4);
	cr_assert_eq(seen[0], 2, "links: relay 0 %d, relay 1 %d", seen[0], seen[1]);
	cr_assert_eq(seen[1], 2, "links: relay 0 %d, relay 1 %d", seen[0], seen[1]);
}

Test(topo, failback_returns_to_the_first_relay_and_old_streams_finish)
{
	int fd;

	start_echo("echo");
	relay_start(1, "", "");
	gw_start("01", "relay_failback = 300ms\n");
	wait_count(P.gw_log, "is up", 1, 15000);
	wait_links(1, 1);
	/* A stream on relay 1's link, open across the switch. */
	fd = connect_port(P.svc_port);
	cr_assert_geq(fd, 0);
	cr_assert_eq(echo_once(fd, "before the failback", 5000), 0);
	/* The preferred relay is probed, and found still down. */
	wait_count(P.gw_log, "failback: relay 1 of 2", 1, 5000);
	relay_start(0, "", "");
	wait_count(P.gw_log, "failback to the preferred relay", 1, 5000);
	cr_assert_eq(h_wait_file_contains(P.gw_hooks, "\"switch\":\"failback\"",
					  2000), 0, "%s", h_read_file(P.gw_hooks, NULL));
	/* New clients go to relay 0; the old stream still works, on the
	 * draining link. */
	echo_ok(4, 6);
	wait_links(0, 1);
	cr_assert_eq(echo_once(fd, "after the failback", 5000), 0);
	close(fd);
	/* The drained link closes once its stream is done. */
	cr_assert_eq(h_wait_file_contains(R[1].hooks, "\"event\":\"link_closed\"",
					  5000), 0, "%s", h_read_file(R[1].log, NULL));
	wait_links(1, 1);
}

Test(topo, sighup_changes_the_relay_list_for_the_next_link)
{
	int fd;

	start_echo("echo");
	relay_start(0, "", "");
	relay_start(1, "", "");
	gw_start("0", "");
	wait_count(P.gw_log, "is up", 1, 15000);
	fd = connect_port(P.svc_port);
	cr_assert_geq(fd, 0);
	cr_assert_eq(echo_once(fd, "on relay 0", 5000), 0);
	/* The new list names relay 1 only; the running link stays. */
	gw_write("1", "");
	kill(P.gw, SIGHUP);
	wait_count(P.gw_log, "configuration reloaded", 1, 5000);
	cr_assert_eq(echo_once(fd, "still on relay 0", 5000), 0);
	cr_assert_eq(relay_links(1), 0);
	/* The next link goes to the new list. */
	kill(P.gw, SIGUSR1);
	wait_count(P.gw_log, "is up", 2, 15000);
	wait_links(1, 1);
	echo_ok(2, 7);
	cr_assert_eq(echo_once(fd, "drained, not dropped", 5000), 0);
	close(fd);
	wait_links(0, 1);
}

/* ---- several live links ------------------------------------------- */

Test(topo, relay_links_keeps_a_pool_to_the_first_relay)
{
	start_echo("echo");
	relay_start(0, "", "");
	relay_start(1, "", "");
	gw_start("01", "relay_links = 3\n");
	wait_count(P.gw_log, "is up", 3, 15000);
	echo_ok(12, 8);
	wait_links(0, 3);
	cr_assert_eq(relay_links(1), 0);
	cr_assert_eq(h_file_count(P.gw_log, "(live link 3 of 3)"), 2,
		     "%s", h_read_file(P.gw_log, NULL));
}

Test(topo, spread_links_share_the_streams_and_fail_on_their_own)
{
	int fd[2], ok = 0;

	start_echo("echo");
	relay_start(0, "", "");
	relay_start(1, "", "");
	gw_start("01", "relay_order = spread\nrelay_links = 2\n");
	wait_count(P.gw_log, "is up", 2, 15000);
	wait_links(0, 1);
	wait_links(1, 1);
	/* Each new client goes to the link with fewer streams: one each. */
	for (int k = 0; k < 2; k++) {
		fd[k] = connect_port(P.svc_port);
		cr_assert_geq(fd[k], 0);
		cr_assert_eq(echo_once(fd[k], "hello", 5000), 0);
	}
	kill(R[0].pid, SIGKILL);
	/* Only the stream on the dead relay's link is reset. */
	for (int k = 0; k < 2; k++) {
		ok += echo_once(fd[k], "still there?", 3000) == 0;
		close(fd[k]);
	}
	cr_assert_eq(ok, 1, "%d of the 2 streams survived", ok);
	/* That link fails over to the other relay; the pool is whole again. */
	wait_count(P.gw_log, "failover: link to relay 1 of 2", 1, 5000);
	wait_count(P.gw_log, "is up", 3, 15000);
	wait_links(1, 2);
	echo_ok(8, 9);
}

/* ---- drain on SIGTERM ----------------------------------------------- */

Test(topo, sigterm_lets_a_stream_finish_then_exits)
{
	int fd, fd2;
	int64_t t0;

	start_echo("echo");
	relay_start(0, "drain_timeout = 10s\n", "");
	gw_start("0", "");
	wait_count(P.gw_log, "is up", 1, 15000);
	fd = connect_port(P.svc_port);
	cr_assert_geq(fd, 0);
	cr_assert_eq(echo_once(fd, "one", 5000), 0);
	kill(R[0].pid, SIGTERM);
	cr_assert_eq(h_wait_file_contains(R[0].log, "draining: no new clients", 3000),
		     0, "%s", h_read_file(R[0].log, NULL));
	/* The stream keeps working; the relay waits for it. */
	cr_assert_eq(echo_once(fd, "two", 5000), 0);
	h_sleep_ms(300);
	cr_assert_eq(h_alive(R[0].pid), 1, "the relay left before its stream ended");
	/* A new client is held: the relay takes no new link. */
	fd2 = connect_port(P.svc_port);
	cr_assert_geq(fd2, 0);
	/* The stream ends: the relay exits at once, status 0. */
	shutdown(fd, SHUT_WR);
	cr_assert(closed_within(fd, 3000));
	t0 = h_now_ms();
	cr_assert_eq(h_wait_exit(R[0].pid, 5000), 0, "%s",
		     h_read_file(R[0].log, NULL));
	cr_assert_lt(h_now_ms() - t0, 3000);
	cr_assert_eq(h_file_count(R[0].log, "drained: every link and stream finished"), 1);
	close(fd);
	/* The held client goes to the relay when it is back. */
	relay_start(0, "", "");
	cr_assert_eq(echo_once(fd2, "held", 10000), 0, "%s",
		     h_read_file(P.gw_log, NULL));
	close(fd2);
}

Test(topo, drain_timeout_resets_what_is_left_and_a_second_sigterm_is_immediate)
{
	int fd;
	int64_t t0;

	start_echo("echo");
	relay_start(0, "drain_timeout = 1s\n", "");
	gw_start("0", "drain_timeout = 20s\n");
	wait_count(P.gw_log, "is up", 1, 15000);
	fd = connect_port(P.svc_port);
	cr_assert_geq(fd, 0);
	cr_assert_eq(echo_once(fd, "one", 5000), 0);
	t0 = h_now_ms();
	kill(R[0].pid, SIGTERM);
	/* The stream stays open: the relay resets it after 1 s, and exits. */
	cr_assert_eq(h_wait_exit(R[0].pid, 6000), 0);
	cr_assert_geq(h_now_ms() - t0, 900);
	cr_assert_lt(h_now_ms() - t0, 4000);
	cr_assert_eq(h_file_count(R[0].log, "drain_timeout (1000 ms) passed with 1 streams"),
		     1, "%s", h_read_file(R[0].log, NULL));
	{
		char b;
		struct pollfd pfd = { fd, POLLIN, 0 };

		cr_assert_eq(poll(&pfd, 1, 3000), 1);
		cr_assert_eq(read(fd, &b, 1), -1, "the client saw EOF, not a reset");
		cr_assert_eq(errno, ECONNRESET);
	}
	close(fd);

	/* The gateway: drain_timeout 20 s, but a second SIGTERM ends it. */
	relay_start(0, "", "");
	fd = connect_port(P.svc_port);
	cr_assert_geq(fd, 0);
	cr_assert_eq(echo_once(fd, "two", 10000), 0);
	kill(P.gw, SIGTERM);
	cr_assert_eq(h_wait_file_contains(P.gw_log, "draining: no new clients", 3000), 0);
	cr_assert_eq(connect_port(P.svc_port), -1, "the gateway still listens");
	cr_assert_eq(echo_once(fd, "three", 5000), 0);
	t0 = h_now_ms();
	kill(P.gw, SIGTERM);
	cr_assert_eq(h_wait_exit(P.gw, 5000), 0);
	cr_assert_lt(h_now_ms() - t0, 3000);
	cr_assert_eq(h_wait_file_contains(P.gw_log, "at once (second signal)", 1000), 0);
	cr_assert(closed_within(fd, 2000));
	close(fd);
}

/* ---- restart under load --------------------------------------------- */

#define LOAD_CLIENTS 24
#define LOAD_ROUNDS 4

Test(topo, relay_restart_under_load_loses_no_completed_byte)
{
	static struct client c[LOAD_ROUNDS][LOAD_CLIENTS];
	pthread_t th[LOAD_ROUNDS][LOAD_CLIENTS];
	int count[O_NOCONNECT + 1] = { 0 };
	char bad[2048];
	size_t bl = 0;

	start_echo("echo");
	relay_start(0, "drain_timeout = 10s\n", "");
	gw_start("0", "");
	wait_count(P.gw_log, "is up", 1, 15000);
	bad[0] = '\0';
	for (int r = 0; r < LOAD_ROUNDS; r++) {
		for (int i = 0; i < LOAD_CLIENTS; i++) {
			c[r][i] = (struct client){ .port = P.svc_port,
				.bytes = (size_t)(64 + 37 * i) << 10,
				.seed = 100 + (uint64_t)r, .index = i,
				.timeout_ms = 30000 };
			cr_assert_eq(pthread_create(&th[r][i], NULL, client_run,
						    &c[r][i]), 0);
		}
		if (r == 1) {
			/* Mid-load: SIGTERM the relay (it drains), start it
			 * again at once. */
			h_sleep_ms(100);
			cr_assert_eq(h_stop(R[0].pid, 12000), 0);
			relay_start(0, "drain_timeout = 10s\n", "");
		}
		h_sleep_ms(150);
	}
	for (int r = 0; r < LOAD_ROUNDS; r++)
		for (int i = 0; i < LOAD_CLIENTS; i++) {
			pthread_join(th[r][i], NULL);
			count[c[r][i].out]++;
			if (c[r][i].out != O_COMPLETE && bl < sizeof(bad) - 80)
				bl += (size_t)snprintf(bad + bl, sizeof(bad) - bl,
						       "round %d client %d: %s at %zu of %zu\n",
						       r, i, outcome_name(c[r][i].out),
						       c[r][i].got, c[r][i].bytes);
		}
	cr_assert_eq(count[O_TRUNCATED] + count[O_CORRUPT] + count[O_TIMEOUT] +
		     count[O_NOCONNECT], 0, "%s", bad);
	/* The drain lets every stream finish, including those whose OPEN
	 * crossed the relay's GOAWAY: none needed a reset. */
	cr_assert_eq(count[O_COMPLETE], LOAD_ROUNDS * LOAD_CLIENTS,
		     "%d complete, %d reset:\n%s", count[O_COMPLETE],
		     count[O_RESET], bad);
	cr_assert_eq(h_file_count(P.gw_log, "failover"), 0);
	wait_links(0, 2);
	cr_assert_eq(h_file_count(R[0].log, "drained: every link and stream finished"), 1,
		     "%s", h_read_file(R[0].log, NULL));
	cr_log_info("relay restart under load: %d of %d streams complete and "
		    "intact, %d reset", count[O_COMPLETE],
		    LOAD_ROUNDS * LOAD_CLIENTS, count[O_RESET]);
}
