/*
 * The hook's core: observers and the veto, the schema (every event's
 * keys, docs/MONITORING.md), sequence numbers and identity, the file
 * sink (queued, reopened), sink failure accounting, gated delivery.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "hook.h"
#include "hook_sink.h"

static int seen[HOOK_TYPES];
static char last_node[64];

static int
observer(const struct hook_event *ev, void *arg)
{
	int *veto = arg;

	seen[ev->type]++;
	snprintf(last_node, sizeof(last_node), "%s",
		 ev->peer_node ? ev->peer_node : "");
	return *veto && ev->type == HOOK_HANDSHAKE_PENDING ? -1 : 0;
}

static void
reset(void)
{
	hook_reset();
	hook_set_identity("relay", "r1");
	memset(seen, 0, sizeof(seen));
	last_node[0] = '\0';
}

TestSuite(hook, .init = reset, .fini = hook_reset);

static int
count_lines(const char *text, const char *needle)
{
	int n = 0;
	const char *p = text, *nl;

	while (p != NULL && *p != '\0') {
		nl = strchr(p, '\n');
		if (nl == NULL)
			nl = p + strlen(p);
		if (needle == NULL || memmem(p, (size_t)(nl - p), needle,
					     strlen(needle)) != NULL)
			n++;
		p = *nl ? nl + 1 : nl;
	}
	return n;
}

Test(hook, observers_see_every_event_and_can_veto_the_handshake)
{
	static int no = 0, yes = 1;
	struct hook_event ev = { .type = HOOK_HANDSHAKE_PENDING, .link_id = 3,
				 .peer_node = "relay" };

	cr_assert_eq(hook_register(observer, &no), 0);
	cr_assert_eq(hook_emit(&ev), 0);
	cr_assert_eq(seen[HOOK_HANDSHAKE_PENDING], 1);
	cr_assert_str_eq(last_node, "relay");
	cr_assert_eq(hook_register(observer, &yes), 0);
	cr_assert_eq(hook_emit(&ev), -1, "a veto must be reported");
	cr_assert_eq(seen[HOOK_HANDSHAKE_PENDING], 3);
	ev.type = HOOK_LINK_CLOSED;
	cr_assert_eq(hook_emit(&ev), 0, "only handshake_pending can be vetoed");
	cr_assert_neq(ev.ts_us, 0, "emit stamps the time");
}

Test(hook, observer_table_is_bounded)
{
	static int no = 0;
	int i;

	for (i = 0; i < HOOK_MAX_OBSERVERS; i++)
		cr_assert_eq(hook_register(observer, &no), 0);
	cr_assert_eq(hook_register(observer, &no), -1);
}

Test(hook, every_event_has_the_common_keys_and_a_rising_seq)
{
	char buf[4096], key[64];
	struct hook_event ev = {
		.type = HOOK_HANDSHAKE_PENDING, .ts_us = 1700000000123456ull,
		.link_id = 7, .local = "127.0.0.1:7400",
		.peer = "[::1]:5555", .peer_node = "gw1",
		.tls_offset_out = 125, .tls_offset_in = 102,
		.transcript = "00112233445566778899aabbccddeeff",
	};
	uint64_t seq0 = hook_seq();
	int t;

	cr_assert_eq(hook_emit(&ev), 0);
	cr_assert_eq(ev.seq, seq0 + 1);
	cr_assert_gt(hook_format_json(&ev, buf, sizeof(buf)), 0);
	snprintf(key, sizeof(key), "\"instance\":\"%s\"", hook_instance());
	cr_assert_eq(strlen(hook_instance()), 16);
	cr_assert_not_null(strstr(buf, key), "%s", buf);
	cr_assert_not_null(strstr(buf, "{\"ts\":\"2023-11-14T22:13:20.123456Z\","
				  "\"event\":\"handshake_pending\",\"link\":7,"
				  "\"v\":2,"), "%s", buf);
	snprintf(key, sizeof(key), "\"seq\":%llu,", (unsigned long long)(seq0 + 1));
	cr_assert_not_null(strstr(buf, key), "%s", buf);
	cr_assert_not_null(strstr(buf, "\"node\":\"r1\",\"pid\":"), "%s", buf);
	cr_assert_not_null(strstr(buf, "\"role\":\"relay\",\"tls_role\":\"server\""),
			   "%s", buf);
	cr_assert_not_null(strstr(buf, "\"local_ip\":\"127.0.0.1\",\"local_port\":7400"),
			   "%s", buf);
	cr_assert_not_null(strstr(buf, "\"peer_ip\":\"::1\",\"peer_port\":5555"),
			   "%s", buf);
	cr_assert_not_null(strstr(buf, "\"transcript\":\"00112233445566778899aabbccddeeff\""),
			   "%s", buf);
	cr_assert_not_null(strstr(buf, "\"tls_offset_out\":125,\"tls_offset_in\":102}"),
			   "%s", buf);
	/* Each event type formats, and carries only its own keys. */
	for (t = 0; t < HOOK_TYPES; t++) {
		ev.type = t;
		cr_assert_gt(hook_format_json(&ev, buf, sizeof(buf)), 0, "type %d", t);
		cr_assert_not_null(strstr(buf, "\"v\":2"));
		if (t != HOOK_HANDSHAKE_PENDING)
			cr_assert_null(strstr(buf, "tls_offset"), "%s", buf);
		if (t <= HOOK_DAEMON_STOPPING)
			cr_assert_null(strstr(buf, "\"link\":"), "%s", buf);
	}
	ev.type = HOOK_PLAINTEXT_AGREED;
	cr_assert_gt(hook_format_json(&ev, buf, sizeof(buf)), 0);
	cr_assert_not_null(strstr(buf, "\"mux_offset_out\":125,\"mux_offset_in\":102"),
			   "%s", buf);
}

Test(hook, internal_events_reach_observers_but_not_sinks)
{
	static int no = 0;
	char path[] = "/tmp/tlsplex-hook-XXXXXX";
	struct hook_event ev = { .type = HOOK_STREAM_OPENED, .link_id = 1,
				 .service = "db" };
	uint64_t seq0 = hook_seq();
	char *text;
	int fd;

	fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	close(fd);
	cr_assert_eq(hook_open_file(path), 0);
	cr_assert_eq(hook_register(observer, &no), 0);
	hook_emit(&ev);
	cr_assert_eq(seen[HOOK_STREAM_OPENED], 1);
	cr_assert_eq(hook_seq(), seq0, "internal events take no seq");
	hook_close_file();
	text = h_read_file(path, NULL);
	cr_assert_not_null(text);
	cr_assert_eq(text[0], '\0', "sinks never see stream events: %s", text);
	free(text);
	unlink(path);
}

Test(hook, json_escapes_and_respects_the_buffer_size)
{
	char buf[1024];
	struct hook_event ev = { .type = HOOK_HANDSHAKE_FAILED, .ts_us = 1,
				 .reason = "bad \"cert\"\\\n\x01\x7f" };
	int n;

	n = hook_format_json(&ev, buf, sizeof(buf));
	cr_assert_gt(n, 0);
	cr_assert_not_null(strstr(buf, "\"reason\":\"bad \\\"cert\\\"\\\\\\u000a\\u0001\\u007f\""),
			   "%s", buf);
	cr_assert_eq(hook_format_json(&ev, buf, (size_t)n), -1,
		     "a buffer one byte short must be refused");
	cr_assert_eq(hook_format_json(&ev, buf, (size_t)n + 1), n);
}

Test(hook, file_sink_writes_one_line_per_event)
{
	char path[] = "/tmp/tlsplex-hook-XXXXXX";
	char *text, *line, *save = NULL;
	struct hook_event ev = { .type = HOOK_PLAINTEXT_AGREED, .link_id = 1,
				 .reason = "both sides have TLS off" };
	int fd, lines = 0, i;

	fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	close(fd);
	cr_assert_eq(hook_open_file(path), 0);
	for (i = 0; i < 1000; i++)
		cr_assert_eq(hook_emit(&ev), 0);
	ev.type = HOOK_LINK_CLOSED;
	cr_assert_eq(hook_emit(&ev), 0);
	hook_reset();	/* closing waits for the queue to reach the file */
	text = h_read_file(path, NULL);
	cr_assert_not_null(text);
	for (line = strtok_r(text, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		cr_assert_eq(line[0], '{');
		cr_assert_eq(line[strlen(line) - 1], '}');
		lines++;
	}
	free(text);
	unlink(path);
	cr_assert_eq(lines, 1001);
	cr_assert_eq(hook_open_file("/nonexistent-dir/x.jsonl"), -1);
}

/* Rename-based rotation: after the rename, a reopen writes to the new
 * file and the rotated one gets nothing more. */
Test(hook, reopening_the_file_lets_a_rotated_one_go)
{
	char dir[] = "/tmp/tlsplex-rot-XXXXXX", path[256], old[256];
	struct hook_event ev = { .type = HOOK_LINK_OPENED, .link_id = 1,
				 .direction = "in" };
	char *a, *b;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/events.jsonl", dir);
	snprintf(old, sizeof(old), "%s/events.jsonl.1", dir);
	cr_assert_eq(hook_open_file(path), 0);
	hook_emit(&ev);
	hook_emit(&ev);
	cr_assert_eq(rename(path, old), 0);
	cr_assert_eq(hook_open_file(path), 0, "the reopen (SIGHUP) succeeds");
	hook_emit(&ev);
	hook_close_file();
	a = h_read_file(old, NULL);
	b = h_read_file(path, NULL);
	cr_assert(a != NULL && b != NULL);
	cr_assert_eq(count_lines(a, "link_opened"), 2, "%s", a);
	cr_assert_eq(count_lines(b, "link_opened"), 1, "%s", b);
	free(a);
	free(b);
	unlink(old);
	unlink(path);
	rmdir(dir);
}

/* ---- a test sink: fails on demand, may decide ------------------------ */

struct tsink {
	int fail;         /* write() returns this when nonzero */
	int gate;         /* gate() returns this */
	int writes;
	struct hook_gate *g;
	char last[HOOK_LINE_MAX];
};

static int
tsink_write(void *state, const struct hook_event *ev, const char *json,
	    size_t len)
{
	struct tsink *t = state;

	if (t->fail)
		return t->fail;
	t->writes++;
	snprintf(t->last, sizeof(t->last), "%.*s", (int)len, json);
	return 0;
}

static int
tsink_gate(void *state, const struct hook_event *ev, const char *json,
	   size_t len, struct hook_gate *g)
{
	struct tsink *t = state;

	if (t->gate == 1)
		t->g = g;
	return t->gate;
}

static const struct hook_sink_ops tsink_ops = {
	.kind = "test", .write = tsink_write, .gate = tsink_gate,
};

Test(hook, a_failing_sink_loses_only_its_events_and_says_how_many)
{
	static struct tsink bad, good;
	struct hook_event ev = { .type = HOOK_LINK_OPENED, .link_id = 1 };
	struct hook_sink_stats st;
	const char *name, *kind;
	int i;

	memset(&bad, 0, sizeof(bad));
	memset(&good, 0, sizeof(good));
	cr_assert_eq(hook_sink_add("test:bad", &tsink_ops, &bad), 0);
	cr_assert_eq(hook_sink_add("test:good", &tsink_ops, &good), 0);
	bad.fail = HOOK_SINK_DROPPED;
	for (i = 0; i < 5; i++)
		hook_emit(&ev);
	cr_assert_eq(good.writes, 5, "the other sink gets every event");
	cr_assert_eq(bad.writes, 0);
	bad.fail = 0;
	hook_emit(&ev);
	cr_assert_eq(bad.writes, 2, "sink_recovered, then the event");
	cr_assert_not_null(strstr(bad.last, "\"event\":\"link_opened\""));
	cr_assert_eq(hook_sink_stats(0, &name, &kind, &st), 0);
	cr_assert_str_eq(name, "test:bad");
	cr_assert_eq(st.dropped, 5);
	cr_assert_eq(st.written, 1);
	cr_assert_eq(hook_sink_stats(2, &name, &kind, &st), -1);
}

static int gate_calls, gate_verdict;
static char gate_why[128];

static void
gate_done(void *arg, int verdict, const char *why)
{
	gate_calls++;
	gate_verdict = verdict;
	snprintf(gate_why, sizeof(gate_why), "%s", why);
}

Test(hook, a_deciding_sink_answers_later_or_is_cancelled)
{
	static struct tsink t;
	struct hook_event ev = { .type = HOOK_HANDSHAKE_PENDING, .link_id = 1 };
	struct hook_gate *g;
	char why[128];

	memset(&t, 0, sizeof(t));
	gate_calls = 0;
	cr_assert_eq(hook_sink_add("test:gate", &tsink_ops, &t), 0);
	t.gate = 0;
	cr_assert_eq(hook_emit_gated(&ev, gate_done, NULL, &g, why, sizeof(why)), 0);
	cr_assert_null(g);
	t.gate = -1;
	cr_assert_eq(hook_emit_gated(&ev, gate_done, NULL, &g, why, sizeof(why)), -1);
	cr_assert_not_null(strstr(why, "test:gate"), "%s", why);
	t.gate = 1;
	cr_assert_eq(hook_emit_gated(&ev, gate_done, NULL, &g, why, sizeof(why)), 1);
	cr_assert_not_null(g);
	cr_assert_eq(gate_calls, 0);
	hook_gate_resolve(t.g, -1, "the notifier said no");
	cr_assert_eq(gate_calls, 1);
	cr_assert_eq(gate_verdict, -1);
	cr_assert_str_eq(gate_why, "the notifier said no");
	/* The waiting side goes first: the answer reaches nobody. */
	cr_assert_eq(hook_emit_gated(&ev, gate_done, NULL, &g, why, sizeof(why)), 1);
	hook_gate_cancel(g);
	hook_gate_resolve(t.g, 0, NULL);
	cr_assert_eq(gate_calls, 1);
}

/* ---- the schema document ---------------------------------------------- */

Test(hook, the_reference_matches_docs_monitoring)
{
	char path[4096];
	char *ref = NULL, *doc, *line, *save = NULL;
	size_t reflen = 0;
	int rows = 0;
	FILE *f = open_memstream(&ref, &reflen);
	const char *src = getenv("TLSPLEX_SOURCE_DIR");

	cr_assert_not_null(f);
	hook_write_reference(f);
	fclose(f);
	snprintf(path, sizeof(path), "%s/docs/MONITORING.md", src && *src ? src : ".");
	doc = h_read_file(path, NULL);
	cr_assert_not_null(doc, "cannot read %s", path);
	for (line = strtok_r(ref, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "| `", 3) != 0 && strncmp(line, "### ", 4) != 0)
			continue;
		rows++;
		cr_assert_not_null(strstr(doc, line),
				   "docs/MONITORING.md lacks this line (regenerate "
				   "with tpx-docref hook):\n%s", line);
	}
	cr_assert_gt(rows, 100);
	free(doc);
	free(ref);
}
