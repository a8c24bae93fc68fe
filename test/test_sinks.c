/*
 * The sinks beside the file, in-process: the Unix datagram socket, the
 * external command and syslog.  Each against a receiver or a program the
 * test owns; every wait bounded.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
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

#include "config.h"
#include "daemon.h"
#include "harness.h"
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
	text = h_read_file(file, NULL);
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
	text = h_read_file(file, NULL);
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
	for (i = 0; i < 5000; i++) {
		t0 = h_now_ms();
		hook_emit(&ev);
		if (h_now_ms() - t0 > worst)
			worst = h_now_ms() - t0;
	}
	st = stats_of("socket");
	cr_assert_gt(st->dropped, 0, "the receiver's buffer never filled");
	cr_assert_gt(st->written, 0);
	cr_assert_eq(st->written + st->dropped, 5000);
	/* A blocking send would hang here until the test's timeout; the
	 * bound is loose for a loaded machine under ASan. */
	cr_assert_lt(worst, 1000, "one emit took %lld ms", (long long)worst);
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

/* ---- the external command --------------------------------------------- */

static struct event_base *base;

static void
cmd_setup(void)
{
	setup();
	base = event_base_new();
	cr_assert_not_null(base);
	hook_cmd_set_base(base);
}

static void
cmd_teardown(void)
{
	hook_cmd_set_base(NULL);
	event_base_free(base);
	base = NULL;
	teardown();
}

/* Runs the loop until *flag is nonzero or ms pass; returns *flag. */
static int
loop_until(const int *flag, int ms)
{
	int64_t end = h_now_ms() + ms;
	struct timeval tv = { 0, 20000 };

	while (!*flag && h_now_ms() < end) {
		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
	}
	return *flag;
}

/* Runs the loop for ms. */
static void
loop_for(int ms)
{
	int never = 0;

	loop_until(&never, ms);
}

static int
wait_no_commands(int ms)
{
	int64_t end = h_now_ms() + ms;

	while (hook_cmd_running() > 0 && h_now_ms() < end)
		loop_for(20);
	return hook_cmd_running();
}

/* Children of this process that are zombies (exited, not reaped), from
 * /proc/PID/stat: "pid (comm) state ppid ...". */
static int
zombies(void)
{
	char path[300], buf[512], state;
	struct dirent *d;
	int n = 0, ppid;
	DIR *dp = opendir("/proc");
	FILE *f;

	cr_assert_not_null(dp);
	while ((d = readdir(dp)) != NULL) {
		char *close_paren;

		if (d->d_name[0] < '0' || d->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", d->d_name);
		f = fopen(path, "r");
		if (f == NULL)
			continue;
		if (fgets(buf, sizeof(buf), f) != NULL &&
		    (close_paren = strrchr(buf, ')')) != NULL &&
		    sscanf(close_paren + 1, " %c %d", &state, &ppid) == 2 &&
		    state == 'Z' && ppid == (int)getpid())
			n++;
		fclose(f);
	}
	closedir(dp);
	return n;
}

/* Writes an executable script dir/name with body; returns its path. */
static const char *
script(const char *name, const char *body)
{
	static char path[8][128];
	static int next;
	char *p = path[next++ % 8];
	FILE *f;

	snprintf(p, 128, "%.60s/%.60s", dir, name);
	f = fopen(p, "w");
	cr_assert_not_null(f);
	fprintf(f, "#!/bin/sh\n%s\n", body);
	fclose(f);
	cr_assert_eq(chmod(p, 0755), 0);
	return p;
}

static int gate_calls, gate_verdict;
static char gate_why[512];

static void
gate_done(void *arg, int verdict, const char *why)
{
	gate_calls++;
	gate_verdict = verdict;
	snprintf(gate_why, sizeof(gate_why), "%s", why ? why : "");
}

/* Opens the command sink, asserting that it opened. */
static void
open_cmd(const struct hook_cmd_conf *cc)
{
	char err[256];

	cr_assert_eq(hook_open_command(cc, err, sizeof(err)), 0, "%s", err);
}

static int
emit_gated(struct hook_event *ev, struct hook_gate **g)
{
	char why[256];

	return hook_emit_gated(ev, gate_done, NULL, g, why, sizeof(why));
}

TestSuite(cmd, .init = cmd_setup, .fini = cmd_teardown, .timeout = 60);

Test(cmd, command_gets_the_event_on_stdin_and_its_fields_in_env)
{
	char out[128], body[1024], json[HOOK_LINE_MAX];
	struct hook_event ev = sample(HOOK_HANDSHAKE_PENDING, 7);
	struct hook_cmd_conf cc = { .events = "handshake_pending",
				    .timeout_ms = 5000, .max = 4 };
	char *text, *want;
	int n;

	/* zombies() sees one. */
	pid_t z = fork();

	cr_assert_geq(z, 0);
	if (z == 0)
		_exit(0);
	for (int i = 0; i < 100 && zombies() == 0; i++)
		usleep(10000);
	cr_assert_eq(zombies(), 1, "zombies() cannot see a zombie");
	waitpid(z, NULL, 0);
	cr_assert_eq(zombies(), 0);

	snprintf(out, sizeof(out), "%s/out", dir);
	snprintf(body, sizeof(body),
		 "cat > %s.stdin\nenv | sort > %s.env\nls /proc/self/fd > %s.fds\n"
		 "touch %s.done", out, out, out, out);
	cc.path = script("notify", body);
	open_cmd(&cc);
	hook_emit(&ev);
	n = hook_format_json(&ev, json, sizeof(json));
	cr_assert_gt(n, 0);
	ev.type = HOOK_LINK_CLOSED;	/* not in its events */
	hook_emit(&ev);
	cr_assert_eq(wait_no_commands(5000), 0, "the command did not finish");
	snprintf(body, sizeof(body), "%s.stdin", out);
	text = h_read_file(body, NULL);
	cr_assert_not_null(text, "the command did not run");
	want = malloc((size_t)n + 2);
	snprintf(want, (size_t)n + 2, "%s\n", json);
	cr_assert_str_eq(text, want, "stdin is the event's JSON line");
	free(want);
	free(text);
	snprintf(body, sizeof(body), "%s.env", out);
	text = h_read_file(body, NULL);
	cr_assert_not_null(text);
	cr_assert_not_null(strstr(text, "TLSPLEX_EVENT=handshake_pending\n"), "%s", text);
	cr_assert_not_null(strstr(text, "TLSPLEX_LINK=7\n"), "%s", text);
	cr_assert_not_null(strstr(text, "TLSPLEX_ROLE=relay\n"), "%s", text);
	cr_assert_not_null(strstr(text, "TLSPLEX_NODE=r1\n"), "%s", text);
	cr_assert_not_null(strstr(text, "TLSPLEX_LOCAL=127.0.0.1:7400\n"), "%s", text);
	cr_assert_not_null(strstr(text, "TLSPLEX_PEER=127.0.0.1:50000\n"), "%s", text);
	cr_assert_not_null(strstr(text, "TLSPLEX_PEER_NODE=gw1\n"), "%s", text);
	cr_assert_not_null(strstr(text, "TLSPLEX_TLS_OFFSET_OUT=125\n"), "%s", text);
	cr_assert_not_null(strstr(text, "TLSPLEX_TLS_OFFSET_IN=102\n"), "%s", text);
	cr_assert_not_null(strstr(text, "TLSPLEX_TRANSCRIPT=00112233445566778899aabbccddeeff\n"),
			   "%s", text);
	snprintf(json, sizeof(json), "TLSPLEX_INSTANCE=%s\n", hook_instance());
	cr_assert_not_null(strstr(text, json), "%s", text);
	/* A clean environment: nothing of the test's own. */
	cr_assert_null(strstr(text, "HOME="), "%s", text);
	cr_assert_null(strstr(text, "TLSPLEX_SOURCE_DIR"), "%s", text);
	free(text);
	/* Only stdin, stdout, stderr and ls's own directory handle. */
	snprintf(body, sizeof(body), "%s.fds", out);
	text = h_read_file(body, NULL);
	cr_assert_not_null(text);
	cr_assert_str_eq(text, "0\n1\n2\n3\n", "descriptors leaked into the command");
	free(text);
	cr_assert_eq(stats_of("command")->written, 1);
	cr_assert_eq(zombies(), 0);
}

Test(cmd, veto_follows_the_exit_status)
{
	struct hook_event ev = sample(HOOK_HANDSHAKE_PENDING, 1);
	struct hook_cmd_conf cc = { .events = "handshake_pending",
				    .timeout_ms = 5000, .max = 4, .veto = 1 };
	struct hook_gate *g;

	cc.path = script("no", "cat >/dev/null; exit 3");
	open_cmd(&cc);
	gate_calls = 0;
	cr_assert_eq(emit_gated(&ev, &g), 1, "the link waits for the command");
	cr_assert_eq(gate_calls, 0);
	cr_assert(loop_until(&gate_calls, 5000), "no verdict");
	cr_assert_eq(gate_verdict, -1);
	cr_assert_not_null(strstr(gate_why, "exited with status 3"), "%s", gate_why);
	cr_assert_not_null(strstr(gate_why, "/no"), "%s", gate_why);
	cr_assert_eq(stats_of("command")->errors, 0, "a veto is an answer, not a loss");

	cc.path = script("yes", "exit 0");
	open_cmd(&cc);
	gate_calls = 0;
	cr_assert_eq(emit_gated(&ev, &g), 1);
	cr_assert(loop_until(&gate_calls, 5000), "no verdict");
	cr_assert_eq(gate_verdict, 0);
	cr_assert_eq(wait_no_commands(2000), 0);
	cr_assert_eq(zombies(), 0);
}

Test(cmd, late_command_proceeds_or_vetoes_and_is_killed_and_reaped)
{
	struct hook_event ev = sample(HOOK_HANDSHAKE_PENDING, 1);
	struct hook_cmd_conf cc = { .events = "handshake_pending",
				    .timeout_ms = 200, .max = 4, .veto = 1 };
	struct hook_gate *g;
	int64_t t0;

	/* It ignores SIGTERM, and so does its sleep: only SIGKILL ends it. */
	cc.path = script("slow", "trap '' TERM\nsleep 30\nexit 0");
	cc.veto_on_timeout = 1;
	open_cmd(&cc);
	gate_calls = 0;
	t0 = h_now_ms();
	cr_assert_eq(emit_gated(&ev, &g), 1);
	cr_assert(loop_until(&gate_calls, 5000), "no verdict");
	cr_assert_eq(gate_verdict, -1, "on_timeout = veto");
	cr_assert_not_null(strstr(gate_why, "did not finish within 200 ms"), "%s",
			   gate_why);
	cr_assert_geq(h_now_ms() - t0, 190);
	cr_assert_lt(h_now_ms() - t0, 1000, "the verdict waits for the deadline only");
	cr_assert_eq(hook_cmd_running(), 1, "SIGTERM is ignored: still running");
	cr_assert_eq(wait_no_commands(3000), 0, "SIGKILL did not follow");
	cr_assert_geq(h_now_ms() - t0, 1150, "SIGKILL came before the 1 s grace");
	cr_assert_eq(zombies(), 0);

	cc.veto_on_timeout = 0;
	cc.path = script("slow2", "sleep 30");
	open_cmd(&cc);
	gate_calls = 0;
	cr_assert_eq(emit_gated(&ev, &g), 1);
	cr_assert(loop_until(&gate_calls, 5000), "no verdict");
	cr_assert_eq(gate_verdict, 0, "on_timeout = proceed");
	cr_assert_eq(wait_no_commands(3000), 0, "SIGTERM did not end it");
	cr_assert_eq(zombies(), 0);
	/* The late commands were counted as lost. */
	ev.type = HOOK_LINK_CLOSED;
	hook_emit(&ev);
	cr_assert_eq(stats_of("command")->errors, 1);
}

Test(cmd, concurrency_is_bounded_drop_or_veto_beyond_it)
{
	struct hook_event ev = sample(HOOK_LINK_OPENED, 1);
	struct hook_cmd_conf cc = { .events = "all", .timeout_ms = 5000,
				    .max = 2 };
	struct hook_gate *g;
	int i;

	cc.path = script("wait", "sleep 1");
	open_cmd(&cc);
	for (i = 0; i < 5; i++)
		hook_emit(&ev);
	cr_assert_eq(hook_cmd_running(), 2);
	cr_assert_eq(stats_of("command")->written, 2);
	cr_assert_eq(stats_of("command")->dropped, 3);
	cr_assert_eq(wait_no_commands(5000), 0);
	/* Deciding: one waits, the one beyond the bound is vetoed now. */
	cc.max = 1;
	cc.veto = 1;
	open_cmd(&cc);
	ev.type = HOOK_HANDSHAKE_PENDING;
	gate_calls = 0;
	cr_assert_eq(emit_gated(&ev, &g), 1);
	cr_assert_eq(emit_gated(&ev, &g), -1, "beyond the bound: a veto");
	cr_assert(loop_until(&gate_calls, 5000));
	cr_assert_eq(gate_verdict, 0);
	cr_assert_eq(wait_no_commands(5000), 0);
}

Test(cmd, failures_without_veto_are_counted_and_others_sinks_unaffected)
{
	struct hook_event ev = sample(HOOK_LINK_OPENED, 1);
	struct hook_cmd_conf cc = {
		.events = "link_opened,handshake_pending,link_closed",
		.timeout_ms = 5000, .max = 8 };
	char file[128], err[256], *text;
	struct hook_gate *g;
	int i, lines = 0;

	snprintf(file, sizeof(file), "%s/events.jsonl", dir);
	cr_assert_eq(hook_open_file(file), 0);
	cc.path = script("fail", "exit 1");
	open_cmd(&cc);
	for (i = 0; i < 3; i++)
		hook_emit(&ev);
	cr_assert_eq(wait_no_commands(5000), 0);
	/* Without veto, handshake_pending goes ahead at once. */
	ev.type = HOOK_HANDSHAKE_PENDING;
	cr_assert_eq(emit_gated(&ev, &g), 0);
	cr_assert_eq(wait_no_commands(5000), 0);
	ev.type = HOOK_LINK_CLOSED;
	hook_emit(&ev);
	cr_assert_eq(stats_of("command")->errors, 4, "each failed command counts");
	/* A command that cannot start at all. */
	cc.path = "/nonexistent/notify";
	open_cmd(&cc);
	hook_emit(&ev);
	cr_assert_eq(stats_of("command")->errors, 1);
	cr_assert_eq(hook_open_command(&(struct hook_cmd_conf){ .path = "rel" },
				       err, sizeof(err)), -1);
	hook_close_file();
	text = h_read_file(file, NULL);
	cr_assert_not_null(text);
	for (char *p = text; (p = strchr(p, '\n')) != NULL; p++)
		lines++;
	cr_assert_eq(lines, 6, "the file got every event:\n%s", text);
	free(text);
}

/* ---- syslog ------------------------------------------------------------- */

/* An RFC 5424 message, taken apart (RFC 5424, section 6). */
struct rfc5424 {
	int pri;
	char ts[64], host[256], app[64], procid[64], msgid[64];
	char sd[HOOK_LINE_MAX * 2];
	const char *msg;
};

/* Parses buf; asserts the grammar of the header and of one SD-ELEMENT
 * (or the NILVALUE). */
static void
parse_5424(char *buf, struct rfc5424 *m)
{
	char *p = buf, *end;
	int n;

	cr_assert_eq(*p, '<', "%s", buf);
	m->pri = (int)strtol(p + 1, &end, 10);
	cr_assert(end > p + 1 && end - p <= 4 && *end == '>', "PRI: %s", buf);
	p = end + 1;
	cr_assert_eq(strncmp(p, "1 ", 2), 0, "VERSION must be 1: %s", buf);
	p += 2;
	cr_assert_eq(sscanf(p, "%63s %255s %63s %63s %63s%n", m->ts, m->host,
			    m->app, m->procid, m->msgid, &n), 5, "%s", buf);
	p += n;
	cr_assert_eq(*p++, ' ');
	/* TIMESTAMP: 2026-12-01T20:33:52.123456Z */
	cr_assert_eq(strlen(m->ts), 27, "%s", m->ts);
	cr_assert(m->ts[4] == '-' && m->ts[7] == '-' && m->ts[10] == 'T' &&
		  m->ts[13] == ':' && m->ts[16] == ':' && m->ts[19] == '.' &&
		  m->ts[26] == 'Z', "TIMESTAMP %s", m->ts);
	cr_assert_leq(strlen(m->app), 48);
	cr_assert_leq(strlen(m->msgid), 32);
	if (*p == '-') {
		m->sd[0] = '\0';
		p++;
	} else {
		char *s = p;

		cr_assert_eq(*p, '[', "%s", p);
		/* To the first ] not escaped. */
		for (p++; *p != '\0' && *p != ']'; p++)
			if (*p == '\\')
				p++;
		cr_assert_eq(*p, ']', "SD-ELEMENT not closed: %s", s);
		p++;
		snprintf(m->sd, sizeof(m->sd), "%.*s", (int)(p - s), s);
	}
	m->msg = *p == ' ' ? p + 1 : p;
}

/* The unescaped value of SD-PARAM name in sd, into out; 0 or -1. */
static int
sd_param(const char *sd, const char *name, char *out, size_t cap)
{
	char key[80];
	const char *p;
	size_t n = 0;

	snprintf(key, sizeof(key), " %s=\"", name);
	p = strstr(sd, key);
	if (p == NULL)
		return -1;
	for (p += strlen(key); *p != '\0' && *p != '"' && n + 1 < cap; p++) {
		if (*p == '\\') {
			p++;
			cr_assert(*p == '"' || *p == '\\' || *p == ']',
				  "bad escape in %s", sd);
		} else {
			cr_assert(*p != ']', "unescaped ] in %s", sd);
		}
		out[n++] = *p;
	}
	out[n] = '\0';
	return *p == '"' ? 0 : -1;
}

Test(sinks, syslog_rfc5424_messages_parse)
{
	char sock[128], buf[HOOK_LINE_MAX * 3], err[256], v[512], host[256];
	struct hook_event ev = sample(HOOK_HANDSHAKE_PENDING, 7);
	struct rfc5424 m;
	int fd, params = 0;

	snprintf(sock, sizeof(sock), "%s/log", dir);
	fd = receiver(sock, 0);
	cr_assert_eq(hook_open_syslog(HOOK_SYSLOG_RFC5424, 19, "tpx-test", sock,
				      err, sizeof(err)), 0, "%s", err);
	hook_emit(&ev);
	cr_assert_gt(recv_one(fd, buf, sizeof(buf), 2000), 0);
	parse_5424(buf, &m);
	cr_assert_eq(m.pri, 19 * 8 + 6, "local3.info: %s", buf);
	gethostname(host, sizeof(host));
	cr_assert_str_eq(m.host, host);
	cr_assert_str_eq(m.app, "tpx-test");
	cr_assert_eq(atoi(m.procid), (int)getpid());
	cr_assert_str_eq(m.msgid, "handshake_pending");
	cr_assert_eq(strncmp(m.sd, "[tlsplex@32473 ", 15), 0, "%s", m.sd);
	cr_assert_eq(sd_param(m.sd, "link", v, sizeof(v)), 0, "%s", m.sd);
	cr_assert_str_eq(v, "7");
	cr_assert_eq(sd_param(m.sd, "tls_offset_out", v, sizeof(v)), 0);
	cr_assert_str_eq(v, "125");
	cr_assert_eq(sd_param(m.sd, "peer_node", v, sizeof(v)), 0);
	cr_assert_str_eq(v, "gw1");
	cr_assert_eq(sd_param(m.sd, "ts", v, sizeof(v)), -1, "ts is in the header");
	for (const char *p = m.sd; (p = strstr(p, "=\"")) != NULL; p++)
		params++;
	cr_assert_geq(params, 15, "%s", m.sd);
	/* A failure: WARNING, and the escapes of RFC 5424, 6.3.3. */
	ev = sample(HOOK_HANDSHAKE_FAILED, 7);
	hook_emit(&ev);
	cr_assert_gt(recv_one(fd, buf, sizeof(buf), 2000), 0);
	parse_5424(buf, &m);
	cr_assert_eq(m.pri, 19 * 8 + 4, "local3.warning: %s", buf);
	cr_assert_str_eq(m.msgid, "handshake_failed");
	cr_assert_not_null(strstr(m.sd, " reason=\"a \\\"quoted\\\" reason with \\] "
				  "and \\\\ in it\""), "%s", m.sd);
	cr_assert_eq(sd_param(m.sd, "reason", v, sizeof(v)), 0);
	cr_assert_str_eq(v, "a \"quoted\" reason with ] and \\ in it");
	cr_assert_eq(sd_param(m.sd, "stage", v, sizeof(v)), 0);
	cr_assert_str_eq(v, "veto");
	cr_assert_str_eq(m.msg, "a \"quoted\" reason with ] and \\ in it");
	cr_assert_eq(stats_of("syslog")->written, 2);
	close(fd);
}

Test(sinks, syslog_json_mode_and_a_missing_syslogd)
{
	char sock[128], buf[HOOK_LINE_MAX * 3], err[256], json[HOOK_LINE_MAX];
	struct hook_event ev = sample(HOOK_LINK_CLOSED, 3);
	struct rfc5424 m;
	int fd;

	snprintf(sock, sizeof(sock), "%s/log", dir);
	cr_assert_eq(hook_open_syslog(HOOK_SYSLOG_JSON, 3, "tlsplex-relay", sock,
				      err, sizeof(err)), 0, "%s", err);
	hook_emit(&ev);
	hook_emit(&ev);
	cr_assert_eq(stats_of("syslog")->dropped, 2, "no syslogd: dropped");
	fd = receiver(sock, 0);
	ev.outcome = "failed";
	hook_emit(&ev);
	cr_assert_gt(recv_one(fd, buf, sizeof(buf), 2000), 0);
	parse_5424(buf, &m);
	cr_assert_str_eq(m.msgid, "sink_recovered");
	cr_assert_not_null(strstr(m.msg, "\"lost\":2"), "%s", m.msg);
	cr_assert_gt(recv_one(fd, buf, sizeof(buf), 2000), 0);
	parse_5424(buf, &m);
	cr_assert_eq(m.pri, 3 * 8 + 4, "daemon.warning for a failed link: %s", buf);
	cr_assert_str_eq(m.sd, "", "json mode: no structured data");
	cr_assert_gt(hook_format_json(&ev, json, sizeof(json)), 0);
	cr_assert_str_eq(m.msg, json, "the message is the event's JSON");
	/* off closes it. */
	cr_assert_eq(hook_open_syslog(HOOK_SYSLOG_OFF, 3, "x", sock, err,
				      sizeof(err)), 0);
	hook_emit(&ev);
	cr_assert_eq(recv_one(fd, buf, sizeof(buf), 100), -1);
	close(fd);
}

/* A reload replaces the sink while its commands run: they finish, are
 * reaped and answer their gates, and the new sink counts on its own. */
Test(cmd, commands_outlive_the_sink_that_started_them)
{
	struct hook_event ev = sample(HOOK_HANDSHAKE_PENDING, 1);
	struct hook_cmd_conf cc = { .events = "handshake_pending",
				    .timeout_ms = 5000, .max = 4, .veto = 1 };
	struct hook_gate *g;

	cc.path = script("old", "sleep 0.3\nexit 0");
	open_cmd(&cc);
	gate_calls = 0;
	cr_assert_eq(emit_gated(&ev, &g), 1);
	cc.path = script("new", "exit 0");
	open_cmd(&cc);
	cr_assert_eq(hook_cmd_running(), 1);
	cr_assert(loop_until(&gate_calls, 5000), "the old command's verdict is lost");
	cr_assert_eq(gate_verdict, 0);
	cr_assert_eq(wait_no_commands(2000), 0);
	cr_assert_eq(stats_of("command")->written, 0);
	cr_assert_eq(zombies(), 0);
	/* Closing the loop with a command running kills and reaps it. */
	cc.path = script("forever", "sleep 30");
	open_cmd(&cc);
	gate_calls = 0;
	cr_assert_eq(emit_gated(&ev, &g), 1);
	hook_cmd_set_base(NULL);
	cr_assert_eq(hook_cmd_running(), 0);
	cr_assert_eq(gate_calls, 1);
	cr_assert_eq(gate_verdict, -1, "no verdict from a killed command");
	cr_assert_eq(zombies(), 0);
}

Test(sinks, event_lists_are_checked_with_the_configuration)
{
	char err[512];
	struct cfg *c;

	c = cfg_load_string("[relay]\ntls = off\nhook_socket = /tmp/x.sock\n"
			    "hook_socket_events = link_closed,link_closd\n",
			    "t.ini", CFG_RELAY, err, sizeof(err));
	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(daemon_check_hooks(c, err, sizeof(err)), -1);
	cr_assert_not_null(strstr(err, "hook_socket_events"), "%s", err);
	cr_assert_not_null(strstr(err, "'link_closd'"), "%s", err);
	cr_assert_eq(daemon_open_hooks(c), -1, "a reload with it is rejected");
	cfg_free(c);
	c = cfg_load_string("[relay]\ntls = off\nhook_command = /bin/true\n"
			    "hook_command_events = all\n",
			    "t.ini", CFG_RELAY, err, sizeof(err));
	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(daemon_check_hooks(c, err, sizeof(err)), 0, "%s", err);
	cfg_free(c);
}

/* rsyslogd itself, on a socket of the test's own, parses what the sink
 * sends as RFC 5424 and hands its fields to a template. */
Test(sinks, rsyslogd_parses_the_messages)
{
	static const char rsyslogd[] = "/usr/sbin/rsyslogd";
	char conf[128], sock[128], out[128], pidf[128], log[128], err[256];
	char ts[40], want[512], host[256], json[HOOK_LINE_MAX], *text = NULL;
	struct hook_event ev = sample(HOOK_HANDSHAKE_FAILED, 9), ev2;
	int64_t end;
	pid_t pid;
	int status;

	if (access(rsyslogd, X_OK) != 0)
		cr_skip_test("%s is not installed (scripts/deps.sh installs "
			     "rsyslog)", rsyslogd);
	snprintf(conf, sizeof(conf), "%s/rsyslog.conf", dir);
	snprintf(sock, sizeof(sock), "%s/log", dir);
	snprintf(out, sizeof(out), "%s/out", dir);
	snprintf(pidf, sizeof(pidf), "%s/rsyslogd.pid", dir);
	snprintf(log, sizeof(log), "%s/rsyslogd.log", dir);
	FILE *f = fopen(conf, "w");
	cr_assert_not_null(f);
	fprintf(f, "global(workDirectory=\"%s\")\n"
		"module(load=\"imuxsock\" SysSock.Use=\"off\")\n"
		"input(type=\"imuxsock\" Socket=\"%s\" UseSpecialParser=\"off\" "
		"ParseHostname=\"on\")\n"
		"template(name=\"t\" type=\"string\" string=\"pri=%%pri%% "
		"ver=%%protocol-version%% ts=%%timereported:::date-rfc3339%% "
		"host=%%hostname%% app=%%app-name%% procid=%%procid%% "
		"msgid=%%msgid%% sd=%%structured-data%% msg=%%msg%%\\n\")\n"
		"*.* action(type=\"omfile\" file=\"%s\" template=\"t\")\n",
		dir, sock, out);
	fclose(f);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execl(rsyslogd, rsyslogd, "-n", "-f", conf, "-i", pidf,
		      (char *)NULL);
		_exit(127);
	}
	for (end = h_now_ms() + 5000; access(sock, F_OK) != 0 && h_now_ms() < end;)
		usleep(20000);
	cr_assert_eq(access(sock, F_OK), 0, "rsyslogd did not listen: %s",
		     h_read_file(log, NULL));
	cr_assert_eq(hook_open_syslog(HOOK_SYSLOG_RFC5424, 19, "tpx-test", sock,
				      err, sizeof(err)), 0, "%s", err);
	hook_emit(&ev);
	hook_rfc3339(ev.ts_us, ts, sizeof(ts));
	cr_assert_eq(hook_open_syslog(HOOK_SYSLOG_JSON, 3, "tpx-test", sock,
				      err, sizeof(err)), 0, "%s", err);
	ev2 = sample(HOOK_LINK_CLOSED, 9);
	hook_emit(&ev2);
	cr_assert_gt(hook_format_json(&ev2, json, sizeof(json)), 0);
	for (end = h_now_ms() + 5000; h_now_ms() < end; usleep(20000)) {
		free(text);
		text = h_read_file(out, NULL);
		if (text != NULL && strstr(text, "msgid=link_closed") != NULL)
			break;
	}
	kill(pid, SIGTERM);
	for (end = h_now_ms() + 3000; waitpid(pid, &status, WNOHANG) == 0;) {
		if (h_now_ms() > end) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			break;
		}
		usleep(20000);
	}
	cr_assert_not_null(text, "rsyslogd wrote nothing: %s", h_read_file(log, NULL));
	gethostname(host, sizeof(host));
	snprintf(want, sizeof(want), "pri=156 ver=1 ts=%.19s", ts);
	cr_assert_not_null(strstr(text, want), "want %s in:\n%s", want, text);
	snprintf(want, sizeof(want), " host=%s app=tpx-test procid=%d "
		 "msgid=handshake_failed sd=[tlsplex@32473 "
		 "event=\"handshake_failed\" link=\"9\" ", host,
		 (int)getpid());
	cr_assert_not_null(strstr(text, want), "want %s in:\n%s", want, text);
	cr_assert_not_null(strstr(text, " reason=\"a \\\"quoted\\\" reason with "
				  "\\] and \\\\ in it\""), "%s", text);
	cr_assert_not_null(strstr(text, " stage=\"veto\" "), "%s", text);
	cr_assert_not_null(strstr(text, "] msg=a \"quoted\" reason with ] and "
				  "\\ in it\n"), "%s", text);
	/* json: daemon.info, no structured data, the event as the message. */
	snprintf(want, sizeof(want), "pri=30 ver=1 ");
	cr_assert_not_null(strstr(text, want), "%s", text);
	cr_assert_not_null(strstr(text, "msgid=link_closed sd=- msg="), "%s", text);
	cr_assert_not_null(strstr(text, json), "want %s in:\n%s", json, text);
	free(text);
}
