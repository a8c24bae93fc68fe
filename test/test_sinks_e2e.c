/*
 * The sinks with the real daemons on loopback: the command's veto before
 * the first TLS byte (checked on the wire with the tap), sinks that fail
 * without hurting the daemon or the other sinks, the socket receiving
 * what the file gets, and a slow command beside a flowing stream.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "harness.h"
#include "pair.h"

TestSuite(sinks_e2e, .init = pair_init, .fini = pair_fini, .timeout = 120);

/* Writes an executable script into the pair's directory. */
static const char *
script(const char *name, const char *body)
{
	static char path[4][700];
	static int next;
	char *p = path[next++ % 4];

	snprintf(p, 700, "%s/%s", P.dir, name);
	cr_assert_eq(h_write_file(p, "#!/bin/sh\n%s\n", body), 0);
	cr_assert_eq(chmod(p, 0755), 0);
	return p;
}

static int
receiver(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "%s",
		     strerror(errno));
	return fd;
}

/* Receives datagrams until one holds needle (returned, malloc'd) or ms
 * pass (NULL).  *n counts every datagram received. */
static char *
recv_until(int fd, const char *needle, int ms, int *n)
{
	int64_t end = h_now_ms() + ms;
	char buf[9000];

	while (h_now_ms() < end) {
		struct pollfd p = { fd, POLLIN, 0 };
		ssize_t len;

		if (poll(&p, 1, 50) <= 0)
			continue;
		len = recv(fd, buf, sizeof(buf) - 1, 0);
		if (len <= 0)
			continue;
		buf[len] = '\0';
		(*n)++;
		if (strstr(buf, needle) != NULL)
			return strdup(buf);
	}
	return NULL;
}

/* Length of the negotiation message at the start of a capture. */
static size_t
neg_len(const uint8_t *p, size_t len)
{
	cr_assert_geq(len, 14);
	cr_assert_eq(p[0], 0x89, "not a negotiation message");
	return 14 + ((size_t)p[12] << 8 | p[13]);
}

Test(sinks_e2e, command_veto_refuses_the_link_before_any_tls_byte)
{
	char extra[1024];
	const uint8_t *c2s;
	size_t len;
	char *line;

	start_echo("echo");
	start_tap();
	snprintf(extra, sizeof(extra), TLS_GW "hook_command = %s\n"
		 "hook_command_veto = yes\nhook_command_timeout = 1s\n",
		 script("deny", "cat > /dev/null\nexit 1"));
	start_pair(TLS_RELAY, extra);
	/* The gateway dials again after the veto. */
	cr_assert_eq(tap_wait_conns(P.tap, 2, 15000), 0,
		     "the gateway did not retry; its log:\n%s",
		     h_read_file(P.gw_log, NULL));
	cr_assert_eq(h_wait_file_contains(P.gw_hooks, "\"outcome\":\"failed\"",
					  5000), 0);
	line = hook_line(P.gw_hooks, "handshake_failed");
	cr_assert_not_null(strstr(line, "\"stage\":\"veto\""), "%s", line);
	cr_assert_not_null(strstr(line, "exited with status 1"), "%s", line);
	free(line);
	line = hook_line(P.gw_hooks, "link_closed");
	cr_assert_not_null(strstr(line, "\"outcome\":\"failed\""), "%s", line);
	cr_assert_not_null(strstr(line, "\"last_state\":\"NOTIFYING\""), "%s", line);
	free(line);
	cr_assert_eq(h_file_count(P.gw_hooks, "handshake_done"), 0);
	/* On the wire: the gateway sent its offer and not one TLS byte. */
	for (int i = 0; i < 100 && tap_conn_closed(P.tap, 0) != 1; i++)
		h_sleep_ms(50);
	cr_assert_eq(tap_conn_closed(P.tap, 0), 1);
	c2s = tap_bytes(P.tap, 0, TAP_C2S, &len);
	cr_assert_eq(len, neg_len(c2s, len), "%zu bytes after the offer: a TLS "
		     "byte left before the veto", len - neg_len(c2s, len));
	cr_assert_eq(h_file_count(P.gw_log, "internal error"), 0);
}

Test(sinks_e2e, command_exit_0_lets_the_link_up)
{
	char extra[1024], out[700];
	char *text;
	int fd;

	snprintf(out, sizeof(out), "%s/notified", P.dir);
	start_echo("echo");
	snprintf(extra, sizeof(extra), TLS_GW "hook_command = %s\n"
		 "hook_command_veto = yes\nhook_command_timeout = 1s\n",
		 script("allow", "cat > /dev/null\n"
			"echo \"$TLSPLEX_EVENT $TLSPLEX_PEER_NODE "
			"$TLSPLEX_TLS_OFFSET_OUT\" >> \"$0.out\"\nexit 0"));
	snprintf(out, sizeof(out), "%s.out", script("allow2", "exit 0"));
	snprintf(out, sizeof(out), "%s/allow.out", P.dir);
	start_pair(TLS_RELAY, extra);
	wait_up();
	fd = connect_port(P.svc_port);
	cr_assert_geq(fd, 0);
	cr_assert_eq(echo_once(fd, "through a notified link", 5000), 0);
	close(fd);
	text = h_read_file(out, NULL);
	cr_assert_not_null(text);
	cr_assert_not_null(strstr(text, "handshake_pending relay "), "%s", text);
	free(text);
	cr_assert_eq(h_file_count(P.gw_hooks, "handshake_done"), 1);
}

Test(sinks_e2e, failing_sinks_never_stop_the_daemon_or_the_file)
{
	char extra[1024], sock[700];
	int fd, n = 0, lost;
	char *dgram, *line;

	start_echo("echo");
	/* Relay: a socket nobody receives on, a command that always fails. */
	snprintf(extra, sizeof(extra), TLS_RELAY "hook_socket = %s/nobody.sock\n"
		 "hook_command = %s\nhook_command_events = all\n", P.dir,
		 script("fail", "exit 1"));
	start_relay(extra, "");
	/* Gateway: a receiver that is there. */
	snprintf(sock, sizeof(sock), "%s/gw.sock", P.dir);
	fd = receiver(sock);
	snprintf(extra, sizeof(extra), TLS_GW "hook_socket = %s\n", sock);
	start_gateway(extra, "");
	wait_up();
	cr_assert_eq(h_wait_file_contains(P.relay_hooks, "handshake_done", 5000), 0);
	/* The relay's file has every event of the link. */
	cr_assert_eq(h_file_count(P.relay_hooks, "\"event\":\"daemon_started\""), 1);
	cr_assert_eq(h_file_count(P.relay_hooks, "\"event\":\"link_opened\""), 1);
	cr_assert_eq(h_file_count(P.relay_hooks, "\"event\":\"handshake_pending\""), 1);
	cr_assert_eq(h_file_count(P.relay_hooks, "\"event\":\"handshake_done\""), 1);
	line = hook_line(P.relay_hooks, "daemon_started");
	cr_assert_not_null(strstr(line, "\"sinks\":\"file,socket,command\""), "%s", line);
	free(line);
	cr_assert_eq(h_file_count(P.relay_log, "the receiver is not taking events"), 1,
		     "a drop streak is logged once");
	cr_assert_eq(h_wait_file_contains(P.relay_log, "exited with status 1", 5000), 0);
	/* The gateway's receiver got the same handshake_pending as its file. */
	dgram = recv_until(fd, "\"event\":\"handshake_pending\"", 5000, &n);
	cr_assert_not_null(dgram);
	line = hook_line(P.gw_hooks, "handshake_pending");
	cr_assert_eq(strlen(dgram), strlen(line) + 1);
	cr_assert_eq(strncmp(dgram, line, strlen(line)), 0, "%s\n%s", dgram, line);
	free(line);
	free(dgram);
	close(fd);
	/* Both daemons still serve. */
	fd = connect_port(P.svc_port);
	cr_assert_geq(fd, 0);
	cr_assert_eq(echo_once(fd, "still here", 5000), 0);
	close(fd);
	cr_assert_eq(h_alive(P.relay), 1);
	cr_assert_eq(h_alive(P.gw), 1);
	/* The receiver comes later: the next event (a reload's) tells it
	 * how many it missed. */
	snprintf(sock, sizeof(sock), "%s/nobody.sock", P.dir);
	fd = receiver(sock);
	cr_assert_eq(kill(P.relay, SIGHUP), 0);
	dgram = recv_until(fd, "\"event\":\"sink_recovered\"", 5000, &n);
	cr_assert_not_null(dgram, "no sink_recovered; relay log:\n%s",
			   h_read_file(P.relay_log, NULL));
	/* It lost every event the file has so far, the reload's aside. */
	cr_assert_eq(h_wait_file_contains(P.relay_hooks, "daemon_reloaded",
					  5000), 0);
	lost = h_file_count(P.relay_hooks, "\"seq\":") - 1;
	cr_assert_eq(json_num(dgram, "lost"), (uint64_t)lost, "%d lost, got: %s",
		     lost, dgram);
	free(dgram);
	dgram = recv_until(fd, "\"event\":\"daemon_reloaded\"", 5000, &n);
	cr_assert_not_null(dgram, "the reload's event follows sink_recovered");
	free(dgram);
	close(fd);
}

/* A command that takes a second, for every link event, beside a stream
 * that must keep its round-trip time. */
Test(sinks_e2e, slow_commands_never_stall_other_links_traffic)
{
	char extra[1024], started[700];
	int64_t end, t0, worst = 0;
	int fd, rounds = 0;

	snprintf(started, sizeof(started), "%s/slow.started", P.dir);
	start_echo("echo");
	snprintf(extra, sizeof(extra), TLS_RELAY "hook_command = %s\n"
		 "hook_command_events = all\nhook_command_max = 16\n"
		 "hook_command_timeout = 5s\n",
		 script("slow", "echo x >> \"$0.started\"\nsleep 1"));
	start_pair(extra, TLS_GW);
	wait_up();
	fd = connect_port(P.svc_port);
	cr_assert_geq(fd, 0);
	cr_assert_eq(echo_once(fd, "warm up", 5000), 0);
	end = h_now_ms() + 3000;
	while (h_now_ms() < end) {
		/* Each probe is a link to the relay: link_opened and
		 * link_closed, a slow command each. */
		int probe = connect_port(P.relay_port);

		if (probe >= 0)
			close(probe);
		t0 = h_now_ms();
		cr_assert_eq(echo_once(fd, "ping through the relay", 5000), 0);
		if (h_now_ms() - t0 > worst)
			worst = h_now_ms() - t0;
		rounds++;
		h_sleep_ms(50);
	}
	close(fd);
	cr_assert_geq(h_file_count(started, "x"), 8, "too few commands ran (%d)",
		      h_file_count(started, "x"));
	cr_log_info("%d round trips while %d slow commands ran; worst %lld ms",
		    rounds, h_file_count(started, "x"), (long long)worst);
	cr_assert_lt(worst, 500, "a round trip took %lld ms", (long long)worst);
}

Test(sinks_e2e, syslog_gets_the_links_events_as_rfc5424)
{
	char extra[1024], sock[700], want[128];
	char *msg;
	int fd, n = 0;

	start_echo("echo");
	snprintf(sock, sizeof(sock), "%s/log", P.dir);
	fd = receiver(sock);
	snprintf(extra, sizeof(extra), TLS_RELAY "hook_syslog = rfc5424\n"
		 "hook_syslog_socket = %s\nhook_syslog_facility = local0\n", sock);
	start_pair(extra, TLS_GW);
	wait_up();
	msg = recv_until(fd, " daemon_started [tlsplex@32473 ", 5000, &n);
	cr_assert_not_null(msg, "no daemon_started");
	cr_assert_eq(strncmp(msg, "<134>1 ", 7), 0, "local0.info: %s", msg);
	cr_assert_not_null(strstr(msg, " tlsplex-relay "), "%s", msg);
	cr_assert_not_null(strstr(msg, " sinks=\"file,syslog\""), "%s", msg);
	free(msg);
	msg = recv_until(fd, " handshake_done [tlsplex@32473 ", 5000, &n);
	cr_assert_not_null(msg, "no handshake_done");
	snprintf(want, sizeof(want), " protocol=\"TLSv1.3\"");
	cr_assert_not_null(strstr(msg, want), "%s", msg);
	cr_assert_not_null(strstr(msg, " peer_subject=\"/CN=gw1\""), "%s", msg);
	free(msg);
	close(fd);
}

/* The relay decides: the gateway's ClientHello arrives while the relay's
 * link waits in NOTIFYING, and is served once the command says yes. */
Test(sinks_e2e, relay_waits_for_its_command_then_serves_the_handshake)
{
	char extra[1024];
	char *line;
	int fd;

	start_echo("echo");
	snprintf(extra, sizeof(extra), TLS_RELAY "hook_command = %s\n"
		 "hook_command_veto = yes\nhook_command_timeout = 2s\n",
		 script("think", "sleep 0.5\nexit 0"));
	start_pair(extra, TLS_GW);
	wait_up();
	cr_assert_eq(h_wait_file_contains(P.relay_hooks, "handshake_done", 5000), 0);
	line = hook_line(P.relay_hooks, "handshake_done");
	cr_assert_geq(json_num(line, "duration_ms"), 450,
		      "the wait is part of the handshake's time: %s", line);
	free(line);
	fd = connect_port(P.svc_port);
	cr_assert_geq(fd, 0);
	cr_assert_eq(echo_once(fd, "after the relay's notification", 5000), 0);
	close(fd);
}

static void
late_command(int veto)
{
	char extra[1024];
	char *line;

	start_echo("echo");
	start_tap();
	snprintf(extra, sizeof(extra), TLS_GW "hook_command = %s\n"
		 "hook_command_veto = yes\nhook_command_timeout = 500ms\n"
		 "hook_command_on_timeout = %s\n",
		 script("late", "sleep 10"), veto ? "veto" : "proceed");
	start_pair(TLS_RELAY, extra);
	if (!veto) {
		wait_up();
		cr_assert_eq(h_file_count(P.gw_hooks, "handshake_failed"), 0);
		cr_assert_eq(h_wait_file_contains(P.gw_log, "did not finish within "
						  "500 ms", 5000), 0);
		return;
	}
	cr_assert_eq(tap_wait_conns(P.tap, 2, 15000), 0, "no retry after the veto");
	cr_assert_eq(h_wait_file_contains(P.gw_hooks, "handshake_failed", 5000), 0);
	line = hook_line(P.gw_hooks, "handshake_failed");
	cr_assert_not_null(strstr(line, "\"stage\":\"veto\""), "%s", line);
	cr_assert_not_null(strstr(line, "did not finish within 500 ms"), "%s", line);
	free(line);
	cr_assert_eq(h_file_count(P.gw_hooks, "handshake_done"), 0);
}

Test(sinks_e2e, late_command_with_on_timeout_proceed_lets_the_link_up)
{
	late_command(0);
}

Test(sinks_e2e, late_command_with_on_timeout_veto_refuses_the_link)
{
	late_command(1);
}

/* A receiver that never reads: its queue fills, the relay drops and
 * counts, and keeps serving links and streams. */
Test(sinks_e2e, socket_receiver_that_never_reads_never_stalls_the_relay)
{
	char extra[1024], sock[700];
	int fd, stuck, i;

	start_echo("echo");
	snprintf(sock, sizeof(sock), "%s/stuck.sock", P.dir);
	stuck = receiver(sock);
	snprintf(extra, sizeof(extra), TLS_RELAY "hook_socket = %s\n", sock);
	start_pair(extra, TLS_GW);
	wait_up();
	/* Each probe link is two events more than the queue takes. */
	for (i = 0; i < 20; i++) {
		int probe = connect_port(P.relay_port);

		if (probe >= 0)
			close(probe);
	}
	cr_assert_eq(h_wait_file_contains(P.relay_log, "the receiver is not "
					  "taking events", 10000), 0,
		     "the queue never filled");
	fd = connect_port(P.svc_port);
	cr_assert_geq(fd, 0);
	for (i = 0; i < 10; i++)
		cr_assert_eq(echo_once(fd, "the relay is not stuck", 2000), 0);
	close(fd);
	cr_assert_eq(h_file_count(P.relay_log, "the receiver is not taking events"),
		     1, "one log line per drop streak");
	cr_assert_eq(h_alive(P.relay), 1);
	close(stuck);
}
