/*
 * The metrics endpoint of the real daemons, scraped with curl and with a
 * raw socket: exact counts after known traffic, refusals and reloads, the
 * HTTP rules (404, 405, 431, 503), metrics_allow, and the scrape
 * deadline.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "pair.h"

TestSuite(metrics, .init = pair_init, .fini = pair_fini, .timeout = 120);

/* curl's path, from $PATH (scripts/deps.sh installs it). */
static const char *
curl_path(void)
{
	static char path[512];
	char *dirs, *dir, *save = NULL;

	if (path[0] != '\0')
		return path;
	dirs = strdup(getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
	cr_assert_not_null(dirs);
	for (dir = strtok_r(dirs, ":", &save); dir != NULL;
	     dir = strtok_r(NULL, ":", &save)) {
		snprintf(path, sizeof(path), "%s/curl", dir);
		if (access(path, X_OK) == 0)
			break;
		path[0] = '\0';
	}
	free(dirs);
	cr_assert(path[0] != '\0', "no curl in $PATH; scripts/deps.sh "
		  "installs it");
	return path;
}

/* GET http://127.0.0.1:port/path with curl; returns the body (malloc'd),
 * or NULL when curl failed or found no curl. */
static char *
scrape(int port, const char *path)
{
	char url[128], out[600];
	const char *argv[8];

	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
	snprintf(out, sizeof(out), "%s/scrape.txt", P.dir);
	argv[0] = curl_path();
	argv[1] = "-s";
	argv[2] = "-f";
	argv[3] = "--max-time";
	argv[4] = "5";
	argv[5] = url;
	argv[6] = NULL;
	unlink(out);
	if (h_run(argv, out, 8000) != 0)
		return NULL;
	return h_read_file(out, NULL);
}

/* The value of the series written exactly as series ("name{k=\"v\"}"),
 * or -1 when the scrape has no such line. */
static double
series_value(const char *text, const char *series)
{
	size_t n = strlen(series);
	const char *p = text;

	while ((p = strstr(p, series)) != NULL) {
		if ((p == text || p[-1] == '\n') && p[n] == ' ')
			return strtod(p + n + 1, NULL);
		p += n;
	}
	return -1;
}

/* Scrapes until series has value want, up to 5 s; returns the last
 * scrape's value. */
static double
wait_series(int port, const char *series, double want)
{
	int64_t end = h_now_ms() + 5000;
	double v = -1;

	do {
		char *t = scrape(port, "/metrics");

		cr_assert_not_null(t, "scraping port %d failed", port);
		v = series_value(t, series);
		free(t);
		if (v == want)
			break;
		h_sleep_ms(50);
	} while (h_now_ms() < end);
	return v;
}

#define EXPECT(port, series, want)                                          \
	do {                                                                 \
		double got_ = wait_series(port, series, want);               \
		cr_assert_eq(got_, (double)(want), "%s is %g, not %g",       \
			     series, got_, (double)(want));                 \
	} while (0)

/* Sends req on a new connection and reads what comes back until the
 * peer closes or ms pass; returns the bytes read (0 when none), or -1
 * when the connection was reset.  buf is NUL-terminated. */
static ssize_t
raw_http(int port, const char *req, char *buf, size_t cap, int ms)
{
	int fd = connect_port(port);
	struct pollfd pfd = { fd, POLLIN, 0 };
	int64_t end = h_now_ms() + ms;
	size_t got = 0;
	int reset = 0;

	cr_assert_geq(fd, 0);
	if (req != NULL && *req != '\0' &&
	    send(fd, req, strlen(req), MSG_NOSIGNAL) != (ssize_t)strlen(req)) {
		close(fd);
		return -1;
	}
	while (got + 1 < cap && h_now_ms() < end) {
		ssize_t r;

		if (poll(&pfd, 1, 50) <= 0)
			continue;
		r = read(fd, buf + got, cap - 1 - got);
		if (r < 0 && errno == ECONNRESET)
			reset = 1;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	buf[got] = '\0';
	close(fd);
	return reset && got == 0 ? -1 : (ssize_t)got;
}

static void
echo_stream(int port, const char *msg)
{
	int fd = connect_port(port);

	cr_assert_geq(fd, 0);
	cr_assert_eq(echo_once(fd, msg, 5000), 0, "no echo through port %d", port);
	close(fd);
}

/* Rewrites one of the pair's config files with text appended. */
static void
conf_append(const char *name, const char *text)
{
	char path[600], *old;

	snprintf(path, sizeof(path), "%s/%s", P.dir, name);
	old = h_read_file(path, NULL);
	cr_assert_not_null(old);
	cr_assert_eq(h_write_file(path, "%s%s", old, text), 0);
	free(old);
}

Test(metrics, counts_links_streams_refusals_and_reloads)
{
	char relay_extra[512], gw_extra[256], gw_sections[128];
	char buf[4096], *text;
	int mr = h_free_port(), mg = h_free_port(), nope = h_free_port();
	int raw, i;

	start_echo("echo");
	snprintf(relay_extra, sizeof(relay_extra),
		 TLS_RELAY "metrics_listen = 127.0.0.1:%d\n"
		 "max_links_per_source = 2\n", mr);
	snprintf(gw_extra, sizeof(gw_extra), TLS_GW "metrics_listen = "
		 "127.0.0.1:%d\n", mg);
	snprintf(gw_sections, sizeof(gw_sections),
		 "[service nope]\nlisten = 127.0.0.1:%d\n", nope);
	start_pair_with(relay_extra, gw_extra, "", gw_sections);
	wait_up();

	/* Three streams, and one for a service the relay does not have. */
	for (i = 0; i < 3; i++)
		echo_stream(P.svc_port, "through the link");
	raw = connect_port(nope);
	cr_assert(closed_within(raw, 5000), "the refused stream stayed open");
	close(raw);

	/* A connection that is not tlsplex (aborted), and while it is
	 * open, one over max_links_per_source (refused at the TCP stage). */
	raw = connect_port(P.relay_port);
	cr_assert_geq(raw, 0);
	EXPECT(mr, "tlsplex_links_open{state=\"negotiating\"}", 1);
	cr_assert_gt(raw_http(P.relay_port, NULL, buf, sizeof(buf), 3000), 0,
		     "the busy refusal sent no REFUSE");
	cr_assert_eq(send(raw, "GET / HTTP/1.0\r\n\r\n", 18, MSG_NOSIGNAL), 18);
	cr_assert(closed_within(raw, 5000));
	close(raw);

	/* A reload that applies and one that is rejected. */
	cr_assert_eq(kill(P.relay, SIGHUP), 0);
	EXPECT(mr, "tlsplex_config_reloads_total{result=\"ok\"}", 1);
	conf_append("relay.ini", "[relay]\nno_such_key = 1\n");
	cr_assert_eq(kill(P.relay, SIGHUP), 0);
	EXPECT(mr, "tlsplex_config_reloads_total{result=\"rejected\"}", 1);

	EXPECT(mr, "tlsplex_links_opened_total{direction=\"in\"}", 2);
	EXPECT(mr, "tlsplex_links_opened_total{direction=\"out\"}", 0);
	EXPECT(mr, "tlsplex_links_closed_total{outcome=\"aborted\"}", 1);
	EXPECT(mr, "tlsplex_links_closed_total{outcome=\"tls\"}", 0);
	EXPECT(mr, "tlsplex_links_open{state=\"up\"}", 1);
	EXPECT(mr, "tlsplex_links_open{state=\"negotiating\"}", 0);
	EXPECT(mr, "tlsplex_links_refused_total{stage=\"tcp\",by=\"local\","
	       "reason=\"max_links_per_source\"}", 1);
	EXPECT(mr, "tlsplex_handshakes_total{result=\"done\","
	       "protocol=\"TLSv1.3\"}", 1);
	EXPECT(mr, "tlsplex_handshakes_total{result=\"failed\","
	       "protocol=\"unknown\"}", 0);
	EXPECT(mr, "tlsplex_handshake_duration_seconds_count", 1);
	EXPECT(mr, "tlsplex_handshake_duration_seconds_bucket{le=\"+Inf\"}", 1);
	EXPECT(mr, "tlsplex_streams_opened_total{service=\"echo\","
	       "protection=\"tls\"}", 3);
	EXPECT(mr, "tlsplex_streams_opened_total{service=\"nope\","
	       "protection=\"tls\"}", 0);
	EXPECT(mr, "tlsplex_streams_refused_total{service=\"nope\"}", 1);
	EXPECT(mr, "tlsplex_streams_refused_total{service=\"echo\"}", 0);
	EXPECT(mr, "tlsplex_streams_open{service=\"echo\"}", 0);
	EXPECT(mr, "tlsplex_hook_events_total{event=\"link_opened\"}", 2);
	EXPECT(mr, "tlsplex_hook_events_total{event=\"link_closed\"}", 1);
	EXPECT(mr, "tlsplex_hook_events_total{event=\"stream_opened\"}", 4);
	text = scrape(mr, "/metrics");
	cr_assert_not_null(text);
	cr_assert(strstr(text, ",role=\"relay\",node=\"relay\"} 1\n"), "%s", text);
	cr_assert(strstr(text, "\ntlsplex_hook_sink_errors_total{sink=\"file:"),
		  "%s", text);
	cr_assert(strstr(text, "\ntlsplex_hook_sink_dropped_total{sink=\"file:"),
		  "%s", text);
	cr_assert_gt(series_value(text, "tlsplex_peer_cert_not_after_timestamp_"
				  "seconds{peer_node=\"gw1\"}"), (double)time(NULL));
	cr_assert_gt(series_value(text, "tlsplex_local_cert_not_after_"
				  "timestamp_seconds"), (double)time(NULL));
	cr_assert_gt(series_value(text, "tlsplex_link_bytes_total{direction="
				  "\"in\"}"), 1000, "live bytes are not counted");
	/* Bounded labels: no addresses, no link ids. */
	cr_assert_null(strstr(text, "127.0.0.1"), "an address in a label:\n%s",
		       text);
	cr_assert_null(strstr(text, "link=\""));
	free(text);

	/* The gateway's side of the same traffic. */
	EXPECT(mg, "tlsplex_links_opened_total{direction=\"out\"}", 1);
	EXPECT(mg, "tlsplex_streams_opened_total{service=\"echo\","
	       "protection=\"tls\"}", 3);
	EXPECT(mg, "tlsplex_streams_opened_total{service=\"nope\","
	       "protection=\"tls\"}", 1);
	EXPECT(mg, "tlsplex_streams_refused_total{service=\"nope\"}", 0);
	text = scrape(mg, "/metrics");
	cr_assert_not_null(text);
	cr_assert(strstr(text, ",role=\"gateway\",node=\"gw1\"} 1\n"), "%s", text);
	cr_assert_gt(series_value(text, "tlsplex_peer_cert_not_after_timestamp_"
				  "seconds{peer_node=\"relay\"}"), (double)time(NULL));
	free(text);
}

Test(metrics, http_rules)
{
	char extra[256], buf[8192], big[6000];
	int mr = h_free_port();
	ssize_t n;

	snprintf(extra, sizeof(extra), "tls = off\nclient_cert = none\n"
		 "metrics_listen = 127.0.0.1:%d\n", mr);
	start_relay(extra, "");
	cr_assert_eq(h_wait_port(mr, 5000), 0);

	n = raw_http(mr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", buf,
		     sizeof(buf), 3000);
	cr_assert_gt(n, 0);
	cr_assert(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", buf);
	cr_assert(strstr(buf, "\r\nContent-Type: text/plain; version=0.0.4\r\n"),
		  "%s", buf);
	cr_assert(strstr(buf, "\r\nConnection: close\r\n"), "%s", buf);
	cr_assert(strstr(buf, "\r\n\r\n# HELP tlsplex_build_info "), "%s", buf);

	n = raw_http(mr, "GET /other HTTP/1.1\r\n\r\n", buf, sizeof(buf), 3000);
	cr_assert(n > 0 && strncmp(buf, "HTTP/1.1 404 ", 13) == 0, "%s", buf);
	n = raw_http(mr, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
		     buf, sizeof(buf), 3000);
	cr_assert(n > 0 && strncmp(buf, "HTTP/1.1 405 ", 13) == 0, "%s", buf);
	cr_assert(strstr(buf, "\r\nAllow: GET\r\n"), "%s", buf);
	n = raw_http(mr, "HELLO\r\n\r\n", buf, sizeof(buf), 3000);
	cr_assert(n > 0 && strncmp(buf, "HTTP/1.1 400 ", 13) == 0, "%s", buf);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	memcpy(big, "GET /metrics HTTP/1.1\r\nX: ", 26);
	n = raw_http(mr, big, buf, sizeof(buf), 3000);
	cr_assert(n > 0 && strncmp(buf, "HTTP/1.1 431 ", 13) == 0, "%s", buf);
	/* curl says the same. */
	cr_assert_null(scrape(mr, "/nothing"));
}

/* conf_replace() is below, with the summaries' tests. */
static void conf_replace(const char *name, const char *from, const char *to);

Test(metrics, a_reload_moves_the_endpoint)
{
	char extra[256], from[64], to[64], line[96];
	int mr = h_free_port(), mr2 = h_free_port();
	char *text;

	snprintf(extra, sizeof(extra), "tls = off\nclient_cert = none\n"
		 "metrics_listen = 127.0.0.1:%d\n", mr);
	start_relay(extra, "");
	cr_assert_eq(h_wait_port(mr, 5000), 0);
	snprintf(from, sizeof(from), "metrics_listen = 127.0.0.1:%d", mr);
	snprintf(to, sizeof(to), "metrics_listen = 127.0.0.1:%d", mr2);
	conf_replace("relay.ini", from, to);
	cr_assert_eq(kill(P.relay, SIGHUP), 0);
	snprintf(line, sizeof(line), "metrics endpoint: http://127.0.0.1:%d/", mr2);
	cr_assert_eq(h_wait_file_contains(P.relay_log, line, 5000), 0, "%s",
		     h_read_file(P.relay_log, NULL));
	text = scrape(mr2, "/metrics");
	cr_assert_not_null(text);
	cr_assert_eq(series_value(text, "tlsplex_config_reloads_total{result="
				  "\"ok\"}"), 1);
	free(text);
	cr_assert_eq(h_port_listening(mr), 0, "the old endpoint still listens");
}

Test(metrics, allow_list_refuses_other_sources)
{
	char extra[256], buf[512];
	int mr = h_free_port();

	snprintf(extra, sizeof(extra), "tls = off\nclient_cert = none\n"
		 "metrics_listen = 127.0.0.1:%d\nmetrics_allow = 10.0.0.0/8\n",
		 mr);
	start_relay(extra, "");
	cr_assert_eq(h_wait_port(mr, 5000), 0);
	cr_assert_leq(raw_http(mr, "GET /metrics HTTP/1.1\r\n\r\n", buf,
			       sizeof(buf), 3000), 0,
		      "a source outside metrics_allow got an answer: %s", buf);
	cr_assert_null(scrape(mr, "/metrics"));
	cr_assert_eq(h_wait_file_contains(P.relay_log, "not in metrics_allow",
					  3000), 0);
}

/* Scrapes that never send a request hold a slot each until the deadline;
 * meanwhile a fifth is told 503 and the link carries traffic. */
Test(metrics, silent_scrapes_are_dropped_at_the_deadline)
{
	char extra[512], buf[512];
	int mr = h_free_port(), fds[4], i;
	int64_t t0;

	start_echo("echo");
	snprintf(extra, sizeof(extra), TLS_RELAY "metrics_listen = "
		 "127.0.0.1:%d\n", mr);
	start_pair(extra, TLS_GW);
	wait_up();
	t0 = h_now_ms();
	for (i = 0; i < 4; i++) {
		fds[i] = connect_port(mr);
		cr_assert_geq(fds[i], 0);
	}
	h_sleep_ms(500);
	cr_assert_gt(raw_http(mr, "GET /metrics HTTP/1.1\r\n\r\n", buf,
			      sizeof(buf), 1000), 0);
	cr_assert(strncmp(buf, "HTTP/1.1 503 ", 13) == 0, "%s", buf);
	echo_stream(P.svc_port, "while four scrapes stall");
	for (i = 0; i < 4; i++) {
		cr_assert(closed_within(fds[i], 4000),
			  "a silent scrape was not dropped");
		close(fds[i]);
	}
	cr_assert_geq(h_now_ms() - t0, 1800, "dropped before the deadline");
	cr_assert_leq(h_now_ms() - t0, 4500, "dropped long after the deadline");
	EXPECT(mr, "tlsplex_streams_opened_total{service=\"echo\","
	       "protection=\"tls\"}", 1);
	cr_assert_eq(h_wait_file_contains(P.relay_log, "no complete request "
					  "within 2 s", 1000), 0);
}

/* ---- summaries ------------------------------------------------------------ */

struct sums {
	uint64_t tls_opened, tls_closed, tls_streams, none_opened, none_closed;
	uint64_t svc_streams, ends, finals, last_seq;
	int seq_ok, ports_ok;
};

static uint64_t
num_or_0(const char *line, const char *key)
{
	char k[64];
	const char *p;

	snprintf(k, sizeof(k), "\"%s\":", key);
	p = strstr(line, k);
	return p != NULL ? strtoull(p + strlen(k), NULL, 10) : 0;
}

/* Adds up the summary records of a hook file. */
static void
sum_file(const char *path, struct sums *s)
{
	char *text = h_read_file(path, NULL), *line, *save = NULL;
	char server[64];

	cr_assert_not_null(text);
	memset(s, 0, sizeof(*s));
	s->seq_ok = s->ports_ok = 1;
	snprintf(server, sizeof(server), "\"server_ip\":\"127.0.0.1\","
		 "\"server_port\":%d,\"client_ip\":\"127.0.0.1\"", P.relay_port);
	for (line = strtok_r(text, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		if (strstr(line, "\"event\":\"link_summary\"")) {
			if (!strstr(line, server))
				s->ports_ok = 0;
			if (strstr(line, "\"protection\":\"tls\"")) {
				s->tls_opened += num_or_0(line, "links_opened");
				s->tls_closed += num_or_0(line, "links_closed");
				s->tls_streams += num_or_0(line, "streams_opened");
			} else if (strstr(line, "\"protection\":\"none\"")) {
				s->none_opened += num_or_0(line, "links_opened");
				s->none_closed += num_or_0(line, "links_closed");
			}
		} else if (strstr(line, "\"event\":\"service_summary\"") &&
			   strstr(line, "\"service\":\"echo\"")) {
			s->svc_streams += num_or_0(line, "streams_opened");
		} else if (strstr(line, "\"event\":\"summary_end\"")) {
			uint64_t seq = num_or_0(line, "interval_seq");

			if (seq != s->last_seq + 1)
				s->seq_ok = 0;
			s->last_seq = seq;
			s->ends++;
			s->finals += strstr(line, "\"final\":true") != NULL;
		}
	}
	free(text);
}

/* Rewrites one of the pair's config files, replacing from with to. */
static void
conf_replace(const char *name, const char *from, const char *to)
{
	char path[600], *old, *at;

	snprintf(path, sizeof(path), "%s/%s", P.dir, name);
	old = h_read_file(path, NULL);
	cr_assert_not_null(old);
	at = strstr(old, from);
	cr_assert_not_null(at, "no '%s' in %s", from, name);
	*at = '\0';
	cr_assert_eq(h_write_file(path, "%s%s%s", old, to, at + strlen(from)), 0);
	free(old);
}

Test(metrics, summaries_count_the_links_the_test_made)
{
	struct sums r, g;
	char *line;
	int raw, i;
	int64_t end;

	start_echo("echo");
	start_pair(TLS_RELAY "summary_interval = 1s\n",
		   TLS_GW "summary_interval = 1s\n");
	wait_up();
	line = hook_line(P.relay_hooks, "daemon_started");
	cr_assert_eq(json_num(line, "summary_interval_s"), 1);
	free(line);
	for (i = 0; i < 3; i++)
		echo_stream(P.svc_port, "counted in a summary");
	raw = connect_port(P.relay_port);
	cr_assert_eq(send(raw, "GET / HTTP/1.0\r\n\r\n", 18, MSG_NOSIGNAL), 18);
	cr_assert(closed_within(raw, 5000));
	close(raw);
	end = h_now_ms() + 6000;
	while (h_file_count(P.relay_hooks, "\"event\":\"summary_end\"") < 2 &&
	       h_now_ms() < end)
		h_sleep_ms(50);
	/* A reload that changes the interval writes a final set. */
	conf_replace("relay.ini", "summary_interval = 1s", "summary_interval = 2s");
	cr_assert_eq(kill(P.relay, SIGHUP), 0);
	cr_assert_eq(h_wait_file_contains(P.relay_log, "summaries every 2000 ms",
					  5000), 0);
	echo_stream(P.svc_port, "after the reload");
	cr_assert_eq(h_stop(P.gw, 5000), 0);
	P.gw = 0;
	cr_assert_eq(h_wait_file_contains(P.relay_hooks, "\"outcome\":\"tls\"",
					  5000), 0);
	cr_assert_eq(h_stop(P.relay, 5000), 0);
	P.relay = 0;

	sum_file(P.relay_hooks, &r);
	cr_assert_geq(r.ends, 3, "%s", h_read_file(P.relay_hooks, NULL));
	cr_assert(r.seq_ok, "interval_seq is not 1, 2, 3, ...");
	cr_assert_eq(r.finals, 2, "final sets: at the reload and at stop");
	cr_assert(r.ports_ok, "a link_summary without the link's addresses");
	cr_assert_eq(r.tls_opened, 1);
	cr_assert_eq(r.tls_closed, 1);
	cr_assert_eq(r.tls_streams, 4);
	cr_assert_eq(r.none_opened, 1, "the aborted connection");
	cr_assert_eq(r.none_closed, 1);
	cr_assert_eq(r.svc_streams, 4);
	line = hook_line(P.relay_hooks, "summary_end");
	free(line);

	sum_file(P.gw_hooks, &g);
	cr_assert_geq(g.ends, 2);
	cr_assert(g.seq_ok);
	cr_assert_eq(g.finals, 1);
	cr_assert(g.ports_ok);
	cr_assert_eq(g.tls_opened, 1);
	cr_assert_eq(g.tls_closed, 1);
	cr_assert_eq(g.tls_streams, 4);
	cr_assert_eq(g.none_opened, 0);
	cr_assert_eq(g.svc_streams, 4);
}
