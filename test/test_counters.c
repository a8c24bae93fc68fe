/*
 * The summaries (io/summary.c) fed synthetic events on a clock of the
 * test's own, and the metrics' label bounds (io/metrics.c), in-process.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "config.h"
#include "hook.h"
#include "metrics.h"
#include "summary.h"

#define T0 1800000000000000ull /* a wall clock, microseconds */
#define SEC 1000000ull

/* What the summaries emitted, each record as its JSON line. */
static char *rec[4096];
static int nrec;

static void
capture(struct hook_event *ev, void *arg)
{
	char line[8192];

	(void)arg;
	cr_assert_lt(nrec, 4096);
	cr_assert_geq(hook_format_json(ev, line, sizeof(line)), 0);
	rec[nrec++] = strdup(line);
}

static void
forget(void)
{
	while (nrec > 0)
		free(rec[--nrec]);
}

/* The n-th record (from 0) of event type name holding needle (or any,
 * for NULL); NULL when there is none. */
static const char *
find(const char *name, const char *needle, int n)
{
	char ev[64];
	int i;

	snprintf(ev, sizeof(ev), "\"event\":\"%s\"", name);
	for (i = 0; i < nrec; i++)
		if (strstr(rec[i], ev) && (needle == NULL || strstr(rec[i], needle)) &&
		    n-- == 0)
			return rec[i];
	return NULL;
}

static int
count(const char *name, const char *needle)
{
	int n = 0;

	while (find(name, needle, n) != NULL)
		n++;
	return n;
}

static uint64_t
num(const char *line, const char *key)
{
	char k[64];
	const char *p;

	cr_assert_not_null(line);
	snprintf(k, sizeof(k), "\"%s\":", key);
	p = strstr(line, k);
	cr_assert_not_null(p, "no %s in %s", key, line);
	return strtoull(p + strlen(k), NULL, 10);
}

static struct hook_event
link_ev(int type, uint64_t id, const char *client)
{
	struct hook_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.type = type;
	ev.link_id = id;
	ev.local = "10.0.0.1:7400";
	ev.peer = client;
	ev.peer_node = "gw1";
	return ev;
}

static void
tls_attrs(struct hook_event *ev)
{
	ev->protocol = "TLSv1.3";
	ev->cipher = "TLS_AES_128_GCM_SHA256";
	ev->group = "X25519";
	ev->peer_cert.key_type = "EC";
	ev->peer_cert.key_bits = 256;
	ev->peer_cert.sha256 = "AA:BB";
}

static void
open_link(struct summary *s, uint64_t id, const char *client, uint64_t t)
{
	struct hook_event ev = link_ev(HOOK_LINK_OPENED, id, client);

	summary_observe(s, &ev, t);
}

static void
tls_done(struct summary *s, uint64_t id, const char *client, int resumed,
	 uint64_t ms, uint64_t t)
{
	struct hook_event ev = link_ev(HOOK_HANDSHAKE_DONE, id, client);

	tls_attrs(&ev);
	ev.resumed = resumed;
	ev.duration_ms = ms;
	summary_observe(s, &ev, t);
}

static void
close_link(struct summary *s, uint64_t id, const char *client,
	   const char *outcome, const char *protection, uint64_t in,
	   uint64_t out, uint64_t t)
{
	struct hook_event ev = link_ev(HOOK_LINK_CLOSED, id, client);

	ev.outcome = outcome;
	ev.protection = protection;
	if (strcmp(protection, "tls") == 0)
		tls_attrs(&ev);
	ev.bytes_in = in;
	ev.bytes_out = out;
	summary_observe(s, &ev, t);
}

static struct summary *
new_relay(void)
{
	struct summary *s = summary_new(1, T0, capture, NULL, NULL);

	cr_assert_not_null(s);
	return s;
}

TestSuite(summary, .fini = forget);

Test(summary, a_short_tls_link_is_counted_once)
{
	struct summary *s = new_relay();
	const char *r;

	open_link(s, 1, "10.0.0.2:5000", T0 + 1);
	tls_done(s, 1, "10.0.0.2:5000", 0, 12, T0 + 2);
	close_link(s, 1, "10.0.0.2:5000", "tls", "tls", 900, 800, T0 + 3);
	summary_flush(s, T0 + 15 * SEC, 0);

	cr_assert_eq(count("link_summary", NULL), 1);
	r = find("link_summary", NULL, 0);
	cr_assert(strstr(r, "\"server_ip\":\"10.0.0.1\",\"server_port\":7400,"
			 "\"client_ip\":\"10.0.0.2\",\"peer_node\":\"gw1\""), "%s", r);
	cr_assert(strstr(r, "\"protection\":\"tls\""), "%s", r);
	cr_assert(strstr(r, "\"cipher\":\"TLS_AES_128_GCM_SHA256\""), "%s", r);
	cr_assert(strstr(r, "\"peer_key_type\":\"EC\""), "%s", r);
	cr_assert(strstr(r, "\"peer_sha256\":\"AA:BB\""), "%s", r);
	cr_assert(strstr(r, "\"final\":false"), "%s", r);
	cr_assert(strstr(r, "\"interval_start\":\"2027-01-15T08:00:00.000000Z\""),
		  "%s", r);
	cr_assert_null(strstr(r, "\"outcome\""), "%s", r);
	cr_assert_eq(num(r, "interval_seq"), 1);
	cr_assert_eq(num(r, "links_lifetime_start"), 0);
	cr_assert_eq(num(r, "links_lifetime_end"), 1);
	cr_assert_eq(num(r, "links_active_start"), 0);
	cr_assert_eq(num(r, "links_active_end"), 0);
	cr_assert_eq(num(r, "links_opened"), 1);
	cr_assert_eq(num(r, "links_closed"), 1);
	cr_assert_eq(num(r, "links_short"), 1);
	cr_assert_eq(num(r, "handshakes_full"), 1);
	cr_assert_eq(num(r, "handshakes_resumed"), 0);
	cr_assert_eq(num(r, "handshake_ms_sum"), 12);
	cr_assert_eq(num(r, "bytes_in"), 900);
	cr_assert_eq(num(r, "bytes_out"), 800);
	r = find("summary_end", NULL, 0);
	cr_assert_eq(num(r, "records"), 1);
	cr_assert_eq(num(r, "interval_seq"), 1);
	cr_assert_eq(num(r, "links_pending"), 0);
	/* Nothing happened in the next interval: no link_summary. */
	summary_flush(s, T0 + 30 * SEC, 0);
	cr_assert_eq(count("link_summary", NULL), 1);
	cr_assert_eq(count("summary_end", NULL), 2);
	cr_assert_eq(num(find("summary_end", NULL, 1), "interval_seq"), 2);
	cr_assert_eq(num(find("summary_end", NULL, 1), "records"), 0);
	summary_free(s);
}

Test(summary, counts_at_start_and_end_of_intervals)
{
	struct summary *s = new_relay();
	const char *r;
	uint64_t sk;

	/* Two links up in interval 1; one closes in 2, the other in 3. */
	open_link(s, 1, "10.0.0.2:5000", T0 + 1);
	tls_done(s, 1, "10.0.0.2:5000", 0, 10, T0 + 2);
	open_link(s, 2, "10.0.0.2:5001", T0 + 3);
	tls_done(s, 2, "10.0.0.2:5001", 1, 30, T0 + 4);
	summary_flush(s, T0 + 15 * SEC, 0);
	r = find("link_summary", NULL, 0);
	cr_assert_eq(count("link_summary", NULL), 1, "one key: ports aside");
	cr_assert_eq(num(r, "links_opened"), 2);
	cr_assert_eq(num(r, "links_active_end"), 2);
	cr_assert_eq(num(r, "links_short"), 0);
	cr_assert_eq(num(r, "handshakes_full"), 1);
	cr_assert_eq(num(r, "handshakes_resumed"), 1);
	cr_assert_eq(num(r, "handshake_ms_sum"), 40);
	cr_assert_eq(num(r, "handshake_ms_max"), 30);
	sk = strtoull(strstr(r, "\"session_key\":\"") + 15, NULL, 16);

	close_link(s, 1, "10.0.0.2:5000", "tls", "tls", 10, 10, T0 + 16 * SEC);
	summary_flush(s, T0 + 30 * SEC, 0);
	r = find("link_summary", NULL, 1);
	cr_assert_eq(strtoull(strstr(r, "\"session_key\":\"") + 15, NULL, 16), sk,
		     "the session key changed between intervals");
	cr_assert_eq(num(r, "interval_seq"), 2);
	cr_assert_eq(num(r, "links_lifetime_start"), 2);
	cr_assert_eq(num(r, "links_lifetime_end"), 2);
	cr_assert_eq(num(r, "links_active_start"), 2);
	cr_assert_eq(num(r, "links_active_end"), 1);
	cr_assert_eq(num(r, "links_opened"), 0);
	cr_assert_eq(num(r, "links_closed"), 1);
	cr_assert_eq(num(r, "links_short"), 0, "opened in an earlier interval");
	cr_assert_eq(num(r, "handshakes_full"), 0);

	/* An interval with only an open link still reports it. */
	summary_flush(s, T0 + 45 * SEC, 0);
	r = find("link_summary", NULL, 2);
	cr_assert_not_null(r);
	cr_assert_eq(num(r, "links_active_start"), 1);
	cr_assert_eq(num(r, "links_active_end"), 1);

	/* The final set at stop, with the link that closed at shutdown. */
	close_link(s, 2, "10.0.0.2:5001", "tls", "tls", 10, 10, T0 + 50 * SEC);
	summary_flush(s, T0 + 50 * SEC, 1);
	r = find("link_summary", NULL, 3);
	cr_assert(strstr(r, "\"final\":true"), "%s", r);
	cr_assert_eq(num(r, "links_active_end"), 0);
	cr_assert_eq(num(r, "links_closed"), 1);
	cr_assert_eq(num(r, "links_lifetime_end"), 2);
	cr_assert(strstr(find("summary_end", NULL, 3), "\"final\":true"));
	cr_assert_null(strstr(find("summary_end", NULL, 2), "\"final\":true"));
	summary_free(s);
}

Test(summary, refusals_failures_and_pending_links)
{
	struct summary *s = new_relay();
	struct hook_event ev;
	const char *r;

	/* Plaintext agreed, then the BIND failed: counted as failed only. */
	open_link(s, 1, "10.0.0.3:5000", T0 + 1);
	ev = link_ev(HOOK_PLAINTEXT_AGREED, 1, "10.0.0.3:5000");
	summary_observe(s, &ev, T0 + 2);
	close_link(s, 1, "10.0.0.3:5000", "failed", "none", 50, 40, T0 + 3);
	/* Refused in the negotiation. */
	open_link(s, 2, "10.0.0.4:5000", T0 + 4);
	ev = link_ev(HOOK_LINK_CLOSED, 2, "10.0.0.4:5000");
	ev.outcome = "refused";
	ev.protection = "none";
	ev.reason_name = "UNKNOWN_PEER";
	summary_observe(s, &ev, T0 + 5);
	/* Refused at the TCP stage: 1 reported + 4 folded in. */
	memset(&ev, 0, sizeof(ev));
	ev.type = HOOK_LINK_REFUSED;
	ev.stage = "tcp";
	ev.suppressed = 4;
	summary_observe(s, &ev, T0 + 6);
	/* Still negotiating at the boundary. */
	open_link(s, 3, "10.0.0.5:5000", T0 + 7);
	summary_flush(s, T0 + 15 * SEC, 0);

	cr_assert_eq(count("link_summary", "\"protection\":\"plaintext\""), 0);
	r = find("link_summary", "\"outcome\":\"failed\"", 0);
	cr_assert_not_null(r);
	cr_assert(strstr(r, "\"protection\":\"none\""), "%s", r);
	cr_assert_eq(num(r, "links_opened"), 1);
	cr_assert_eq(num(r, "links_closed"), 1);
	cr_assert_eq(num(r, "bytes_in"), 50);
	r = find("link_summary", "\"reason_name\":\"UNKNOWN_PEER\"", 0);
	cr_assert_not_null(r);
	cr_assert(strstr(r, "\"outcome\":\"refused\""), "%s", r);
	cr_assert_eq(num(r, "links_short"), 1);
	r = find("summary_end", NULL, 0);
	cr_assert_eq(num(r, "records"), 2);
	cr_assert_eq(num(r, "refused_tcp_stage"), 5);
	cr_assert_eq(num(r, "links_pending"), 1);

	/* The pending link settles in interval 2: opened there, not short. */
	tls_done(s, 3, "10.0.0.5:5000", 0, 5, T0 + 16 * SEC);
	close_link(s, 3, "10.0.0.5:5000", "tls", "tls", 1, 1, T0 + 17 * SEC);
	summary_flush(s, T0 + 30 * SEC, 0);
	r = find("link_summary", "\"client_ip\":\"10.0.0.5\"", 0);
	cr_assert_not_null(r);
	cr_assert_eq(num(r, "interval_seq"), 2);
	cr_assert_eq(num(r, "links_opened"), 1);
	cr_assert_eq(num(r, "links_closed"), 1);
	cr_assert_eq(num(r, "links_short"), 0);
	r = find("summary_end", NULL, 1);
	cr_assert_eq(num(r, "refused_tcp_stage"), 0);
	cr_assert_eq(num(r, "links_pending"), 0);
	summary_free(s);
}

static void
stream_ev(struct summary *s, int type, const char *service, const char *result,
	  uint64_t in, uint64_t out)
{
	struct hook_event ev = link_ev(type, 1, "10.0.0.2:5000");

	ev.service = service;
	ev.protection = "tls";
	ev.result = result;
	ev.bytes_in = in;
	ev.bytes_out = out;
	summary_observe(s, &ev, T0 + 10);
}

static uint64_t live_in, live_out;

static void
live_bytes(void (*fn)(void *arg, uint64_t id, uint64_t in, uint64_t out),
	   void *arg)
{
	fn(arg, 1, live_in, live_out);
}

Test(summary, streams_services_and_live_bytes)
{
	struct summary *s = summary_new(1, T0, capture, NULL, live_bytes);
	const char *r;

	open_link(s, 1, "10.0.0.2:5000", T0 + 1);
	tls_done(s, 1, "10.0.0.2:5000", 0, 3, T0 + 2);
	stream_ev(s, HOOK_STREAM_OPENED, "db", NULL, 0, 0);
	stream_ev(s, HOOK_STREAM_CLOSED, "db", "ok", 100, 200);
	stream_ev(s, HOOK_STREAM_OPENED, "db", NULL, 0, 0);
	stream_ev(s, HOOK_STREAM_CLOSED, "db", "reset", 1, 2);
	stream_ev(s, HOOK_STREAM_OPENED, "nope", NULL, 0, 0);
	stream_ev(s, HOOK_STREAM_CLOSED, "nope", "REFUSED", 0, 0);
	{
		/* A name longer than the record keeps: cut, counted together. */
		char lng[201];

		memset(lng, 'x', 200);
		lng[200] = '\0';
		stream_ev(s, HOOK_STREAM_OPENED, lng, NULL, 0, 0);
		stream_ev(s, HOOK_STREAM_CLOSED, lng, "ok", 0, 0);
		stream_ev(s, HOOK_STREAM_OPENED, lng, NULL, 0, 0);
	}
	live_in = 1000;
	live_out = 3000;
	summary_flush(s, T0 + 15 * SEC, 0);

	r = find("service_summary", "\"service\":\"db\"", 0);
	cr_assert_not_null(r);
	cr_assert(strstr(r, "\"peer_node\":\"gw1\",\"protection\":\"tls\""), "%s", r);
	cr_assert_eq(num(r, "streams_opened"), 2);
	cr_assert_eq(num(r, "streams_refused"), 0);
	cr_assert_eq(num(r, "bytes_in"), 101);
	cr_assert_eq(num(r, "bytes_out"), 202);
	r = find("service_summary", "\"service\":\"nope\"", 0);
	cr_assert_eq(num(r, "streams_opened"), 0);
	cr_assert_eq(num(r, "streams_refused"), 1);
	r = find("link_summary", NULL, 0);
	cr_assert_eq(num(r, "streams_opened"), 4);
	cr_assert_eq(num(r, "bytes_in"), 1000, "live bytes not counted");
	cr_assert_eq(count("service_summary", "\"service\":\"xxxx"), 1);
	cr_assert_eq(num(find("service_summary", "\"service\":\"xxxx", 0),
			 "streams_opened"), 2);
	cr_assert_eq(num(r, "bytes_out"), 3000);
	cr_assert_eq(num(find("summary_end", NULL, 0), "records"), 4);

	/* At close only what the earlier intervals did not count. */
	close_link(s, 1, "10.0.0.2:5000", "tls", "tls", 1500, 3001, T0 + 20 * SEC);
	summary_flush(s, T0 + 30 * SEC, 0);
	r = find("link_summary", NULL, 1);
	cr_assert_eq(num(r, "bytes_in"), 500);
	cr_assert_eq(num(r, "bytes_out"), 1);
	summary_free(s);
}

Test(summary, keys_are_bounded)
{
	struct summary *s = new_relay();
	char client[64];
	int i, n = SUMMARY_MAX_KEYS + 76;

	for (i = 0; i < n; i++) {
		snprintf(client, sizeof(client), "10.1.%d.%d:5000", i / 250,
			 i % 250);
		open_link(s, (uint64_t)i + 1, client, T0 + 1);
		close_link(s, (uint64_t)i + 1, client, "aborted", "none", 1, 1,
			   T0 + 2);
	}
	summary_flush(s, T0 + 15 * SEC, 0);
	cr_assert_eq(count("link_summary", NULL), SUMMARY_MAX_KEYS + 1);
	cr_assert_eq(num(find("link_summary", "\"peer_node\":\"_other\"", 0),
			 "links_closed"), 76);
	cr_assert_eq(num(find("summary_end", NULL, 0), "links_folded"), 76);
	cr_assert_eq(num(find("summary_end", NULL, 0), "records"),
		     SUMMARY_MAX_KEYS + 1);
	/* Idle keys give their slots to new ones in the next interval. */
	open_link(s, 100000, "10.9.9.9:5000", T0 + 16 * SEC);
	close_link(s, 100000, "10.9.9.9:5000", "aborted", "none", 1, 1,
		   T0 + 17 * SEC);
	summary_flush(s, T0 + 30 * SEC, 0);
	cr_assert_not_null(find("link_summary", "\"client_ip\":\"10.9.9.9\"", 0));
	cr_assert_eq(num(find("summary_end", NULL, 1), "links_folded"), 0);
	summary_free(s);
}

/* ---- metrics ------------------------------------------------------------ */

static int
lines_with(const char *text, const char *prefix)
{
	const char *p = text;
	int n = 0;

	while ((p = strstr(p, prefix)) != NULL) {
		if (p == text || p[-1] == '\n')
			n++;
		p++;
	}
	return n;
}

Test(metrics_labels, service_and_peer_labels_are_bounded)
{
	char err[256], name[64], *text;
	struct evbuffer *b = evbuffer_new();
	struct hook_event ev;
	struct cfg *c;
	size_t len;
	int i;

	c = cfg_load_string("[relay]\nnode_name = r\ntls = off\n"
			    "client_cert = none\n", "t.ini", CFG_RELAY, err,
			    sizeof(err));
	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(metrics_start(NULL, c), 0);
	for (i = 0; i < METRICS_MAX_LABELS + 44; i++) {
		snprintf(name, sizeof(name), "svc-%d\"\\\n", i);
		memset(&ev, 0, sizeof(ev));
		ev.type = HOOK_STREAM_OPENED;
		ev.service = name;
		ev.protection = "plaintext";
		hook_emit(&ev);
		memset(&ev, 0, sizeof(ev));
		ev.type = HOOK_HANDSHAKE_DONE;
		snprintf(name, sizeof(name), "peer-%d", i);
		ev.peer_node = name;
		ev.peer_cert.not_after = i == 290 ? "2030-01-01T00:00:00Z" :
			"2031-01-01T00:00:00Z";
		ev.protocol = "TLSv1.3";
		hook_emit(&ev);
	}
	cr_assert_eq(metrics_format(b), 0);
	len = evbuffer_get_length(b);
	text = malloc(len + 1);
	evbuffer_remove(b, text, len);
	text[len] = '\0';
	cr_assert_eq(lines_with(text, "tlsplex_streams_open{"),
		     METRICS_MAX_LABELS + 1);
	cr_assert(strstr(text, "\ntlsplex_streams_open{service=\"_other\"} 44\n"));
	cr_assert(strstr(text, "\ntlsplex_streams_open{service=\"svc-7\\\"\\\\\\n\"} 1\n"),
		  "label values are not escaped");
	cr_assert_eq(lines_with(text, "tlsplex_peer_cert_not_after_timestamp_"
				"seconds{"), METRICS_MAX_LABELS + 1);
	/* The overflow keeps the soonest expiry (2030-01-01). */
	cr_assert(strstr(text, "seconds{peer_node=\"_other\"} 1893456000\n"), "%s",
		  strstr(text, "peer_node=\"_other\""));
	cr_assert(strstr(text, "\ntlsplex_handshakes_total{result=\"done\","
			 "protocol=\"TLSv1.3\"} 300\n"));
	cr_assert(strstr(text, "\ntlsplex_hook_events_total{event=\"stream_opened\"} 300\n"));
	free(text);
	evbuffer_free(b);
	cfg_free(c);
}
