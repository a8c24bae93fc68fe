/*
 * A gateway and a relay on loopback for end-to-end tests; see pair.h.
 */
#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "harness.h"
#include "pair.h"

struct pair P;

void
pair_init_from(const char *certs)
{
	char cmd[1024], out[600];
	const char *argv[5];

	memset(&P, 0, sizeof(P));
	P.dir = h_tmpdir();
	cr_assert_not_null(P.dir);
	snprintf(P.certs, sizeof(P.certs), "%s/certs", P.dir);
	snprintf(out, sizeof(out), "%s/mkcerts.log", P.dir);
	if (certs != NULL) {
		argv[0] = "/bin/cp";
		argv[1] = "-a";
		argv[2] = certs;
		argv[3] = P.certs;
		argv[4] = NULL;
		cr_assert_eq(h_run(argv, out, 10000), 0, "cannot copy %s", certs);
	} else {
		snprintf(cmd, sizeof(cmd), "%s/scripts/mkcerts.sh", h_source_dir());
		argv[0] = cmd;
		argv[1] = P.certs;
		argv[2] = NULL;
		cr_assert_eq(h_run(argv, out, 60000), 0, "mkcerts.sh failed:\n%s",
			     h_read_file(out, NULL));
	}
	P.relay_port = h_free_port();
	P.svc_port = h_free_port();
	P.backend_port = h_free_port();
	snprintf(P.relay_log, sizeof(P.relay_log), "%s/relay.log", P.dir);
	snprintf(P.gw_log, sizeof(P.gw_log), "%s/gateway.log", P.dir);
	snprintf(P.relay_hooks, sizeof(P.relay_hooks), "%s/relay-hooks.jsonl", P.dir);
	snprintf(P.gw_hooks, sizeof(P.gw_hooks), "%s/gw-hooks.jsonl", P.dir);
}

void
pair_init(void)
{
	pair_init_from(NULL);
}

/*
 * Criterion ignores a failure in a test's teardown, so pair_fini() cannot
 * fail the test that made a daemon log an internal error.  It leaves a
 * note for the runner instead (its parent), and the runner fails the run
 * at the end (exit 1), naming how many tests did.
 */
static void
pair_internal_errors_path(char *buf, size_t len, long runner)
{
	snprintf(buf, len, "/tmp/tlsplex-internal-errors-%ld", runner);
}

static void
pair_note_internal_error(void)
{
	char path[64];
	FILE *f;

	fprintf(stderr, "pair_fini: a daemon logged an internal error in "
		"this test; the run will fail\n");
	pair_internal_errors_path(path, sizeof(path), (long)getppid());
	f = fopen(path, "a");
	if (f != NULL) {
		fputs("x\n", f);
		fclose(f);
	}
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
	char path[64];
	char *text;

	(void)stats;
	pair_internal_errors_path(path, sizeof(path), (long)getpid());
	text = h_read_file(path, NULL);
	if (text == NULL)
		return;
	unlink(path);
	fprintf(stderr, "FAILED: %zu test(s) made a daemon log an internal "
		"error (see 'pair_fini' above)\n", strlen(text) / 2);
	free(text);
	exit(1);
}

void
pair_fini(void)
{
	int bad;

	h_stop_all();
	/* A link state change outside the table is logged as an internal
	 * error (io/link.c, link_set_state); no test may cause one. */
	bad = (P.gw_log[0] ? h_file_count(P.gw_log, "internal error") : 0) +
	      (P.relay_log[0] ? h_file_count(P.relay_log, "internal error") : 0);
	tap_stop(P.tap);
	P.tap = NULL;
	if (P.dir != NULL && getenv("TLSPLEX_KEEP") == NULL)
		h_rmtree(P.dir);
	free(P.dir);
	P.dir = NULL;
	if (bad > 0)
		pair_note_internal_error();
}

pid_t
spawn_bin(const char *bin, const char *conf, const char *log)
{
	char path[600];
	const char *argv[4];

	snprintf(path, sizeof(path), "%s/%s", h_build_dir(), bin);
	argv[0] = path;
	argv[1] = "-c";
	argv[2] = conf;
	argv[3] = NULL;
	return h_spawn(argv, log);
}

void
start_echo(const char *mode)
{
	char path[600], addr[64], log[600];
	const char *argv[6];

	snprintf(path, sizeof(path), "%s/tpx-echo", h_build_dir());
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", P.backend_port);
	snprintf(log, sizeof(log), "%s/echo.log", P.dir);
	argv[0] = path;
	argv[1] = "-l";
	argv[2] = addr;
	argv[3] = "-m";
	argv[4] = mode;
	argv[5] = NULL;
	P.echo = h_spawn(argv, log);
	cr_assert_gt(P.echo, 0);
	cr_assert_eq(h_wait_port(P.backend_port, 5000), 0, "echo did not start");
}

/* "log_level = LEVEL\n" when $TLSPLEX_DAEMON_LOG_LEVEL is set, for
 * diagnosing a failure with the daemons' debug logs; else "". */
static const char *
daemon_log_line(void)
{
	static char line[64];
	const char *v = getenv("TLSPLEX_DAEMON_LOG_LEVEL");

	if (v == NULL || *v == '\0')
		return "";
	snprintf(line, sizeof(line), "log_level = %.20s\n", v);
	return line;
}

void
start_relay(const char *relay_extra, const char *relay_sections)
{
	char conf[600];
	int before = h_file_count(P.relay_log, "listening for links");

	snprintf(conf, sizeof(conf), "%s/relay.ini", P.dir);
	cr_assert_eq(h_write_file(conf,
		"[relay]\nnode_name = relay\nlisten = 127.0.0.1:%d\n"
		"ca = certs/ca.crt\nhook_file = relay-hooks.jsonl\n"
		"negotiation_timeout = 2s\nhandshake_timeout = 3s\n%s%s\n"
		"[service echo]\nbackend = 127.0.0.1:%d\n"
		"[service dead]\nbackend = 127.0.0.1:%d\n%s%s",
		P.relay_port, daemon_log_line(), relay_extra, P.backend_port,
		P.dead_port ? P.dead_port : h_free_port(),
		strstr(relay_sections, "[peer ") || strstr(relay_sections, "[template ") ?
		"" : "[peer gw1]\n",
		relay_sections), 0);
	P.relay = spawn_bin("tlsplex-relay", conf, P.relay_log);
	cr_assert_gt(P.relay, 0);
	cr_assert_eq(h_wait_count_above(P.relay_log, "listening for links",
				      before, 10000),
		     0, "relay did not start; its log:\n%s",
		     h_read_file(P.relay_log, NULL));
}

void
start_gateway(const char *gw_extra, const char *gw_sections)
{
	char conf[600];

	snprintf(conf, sizeof(conf), "%s/gateway.ini", P.dir);
	cr_assert_eq(h_write_file(conf,
		"[gateway]\nnode_name = %s\nrelay = 127.0.0.1:%d\n"
		"server_name = relay\nca = certs/ca.crt\n"
		"hook_file = gw-hooks.jsonl\nredial_min = 200ms\nredial_max = 1s\n"
		"hold_timeout = 1s\n"
		"negotiation_timeout = 3s\nhandshake_timeout = 3s\n%s%s\n"
		"[service echo]\nlisten = 127.0.0.1:%d\n%s"
		"[service dead]\nlisten = 127.0.0.1:%d\n%s",
		P.gw_node ? P.gw_node : "gw1",
		P.tap != NULL ? tap_port(P.tap) : P.relay_port, daemon_log_line(),
		gw_extra, P.svc_port,
		P.echo_extra ? P.echo_extra : "", h_free_port(), gw_sections), 0);
	P.gw = spawn_bin("tlsplex-gateway", conf, P.gw_log);
	cr_assert_gt(P.gw, 0);
}

void
start_pair_with(const char *relay_extra, const char *gw_extra,
		const char *relay_sections, const char *gw_sections)
{
	start_relay(relay_extra, relay_sections);
	start_gateway(gw_extra, gw_sections);
}

void
start_pair(const char *relay_extra, const char *gw_extra)
{
	start_pair_with(relay_extra, gw_extra, "", "");
}

void
start_tap(void)
{
	P.tap = tap_start(0, P.relay_port);
	cr_assert_not_null(P.tap);
}

void
wait_up(void)
{
	cr_assert_eq(h_wait_file_contains(P.gw_log, "is up", 15000), 0,
		     "link did not come up; gateway log:\n%s",
		     h_read_file(P.gw_log, NULL));
}

uint64_t
json_num(const char *line, const char *key)
{
	char k[64];
	const char *p;

	snprintf(k, sizeof(k), "\"%s\":", key);
	p = strstr(line, k);
	cr_assert_not_null(p, "no %s in %s", key, line);
	return strtoull(p + strlen(k), NULL, 10);
}

char *
hook_line(const char *file, const char *event)
{
	char needle[64], *buf, *p, *end;

	snprintf(needle, sizeof(needle), "\"event\":\"%s\"", event);
	/* The file sink writes from a thread of its own: an event may reach
	 * the file a moment after its effect reached the wire. */
	(void)h_wait_file_contains(file, needle, 2000);
	buf = h_read_file(file, NULL);
	cr_assert_not_null(buf, "no hook file %s", file);
	p = strstr(buf, needle);
	cr_assert_not_null(p, "no %s event in %s:\n%s", event, file, buf);
	while (p > buf && p[-1] != '\n')
		p--;
	end = strchr(p, '\n');
	if (end != NULL)
		*end = '\0';
	p = strdup(p);
	free(buf);
	return p;
}

int
connect_port(int port)
{
	return h_connect(port);
}

int
closed_within(int fd, int ms)
{
	struct pollfd pfd = { fd, POLLIN, 0 };
	char buf[256];
	int64_t end = h_now_ms() + ms;

	while (h_now_ms() < end) {
		if (poll(&pfd, 1, 50) > 0) {
			ssize_t n = read(fd, buf, sizeof(buf));

			if (n == 0 || (n < 0 && errno == ECONNRESET))
				return 1;
		}
	}
	return 0;
}

int
echo_once(int fd, const char *msg, int timeout_ms)
{
	char buf[256];
	size_t n = strlen(msg), got = 0;
	struct pollfd pfd = { fd, POLLIN, 0 };
	int64_t end = h_now_ms() + timeout_ms;

	if (n > sizeof(buf))
		return -1;
	if (send(fd, msg, n, MSG_NOSIGNAL) != (ssize_t)n)
		return -1;
	while (got < n && h_now_ms() < end) {
		ssize_t r;

		if (poll(&pfd, 1, 50) <= 0)
			continue;
		r = read(fd, buf + got, n - got);
		if (r <= 0)
			return -1;
		got += (size_t)r;
	}
	return got == n && memcmp(buf, msg, n) == 0 ? 0 : -1;
}

int
gw_service_port(const char *name)
{
	char path[600], needle[96];
	char *conf;
	const char *p;
	int port;

	snprintf(path, sizeof(path), "%s/gateway.ini", P.dir);
	conf = h_read_file(path, NULL);
	cr_assert_not_null(conf);
	snprintf(needle, sizeof(needle), "[service %s]\nlisten = 127.0.0.1:", name);
	p = strstr(conf, needle);
	cr_assert_not_null(p, "no [service %s] in the gateway config", name);
	port = atoi(p + strlen(needle));
	free(conf);
	return port;
}

void
cert_cache_make(const char *env)
{
	char tmpl[] = "/tmp/tlsplex-certs-XXXXXX";
	char cmd[1024], dir[600];
	const char *argv[3];

	if (mkdtemp(tmpl) == NULL)
		return;
	snprintf(cmd, sizeof(cmd), "%s/scripts/mkcerts.sh", h_source_dir());
	snprintf(dir, sizeof(dir), "%s/certs", tmpl);
	argv[0] = cmd;
	argv[1] = dir;
	argv[2] = NULL;
	if (h_run(argv, "/dev/null", 60000) == 0)
		setenv(env, dir, 1);
	else
		h_rmtree(tmpl);
}

void
cert_cache_remove(const char *env)
{
	const char *dir = getenv(env);
	char *top;

	if (dir == NULL)
		return;
	top = strdup(dir);
	if (top != NULL && strrchr(top, '/') != NULL) {
		*strrchr(top, '/') = '\0';
		h_rmtree(top);
	}
	free(top);
}
