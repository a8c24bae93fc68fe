/*
 * The hook dispatcher: in-process observers, the veto, the JSON Lines
 * sink and JSON escaping.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hook.h"

static int seen[8];
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
	memset(seen, 0, sizeof(seen));
	last_node[0] = '\0';
}

TestSuite(hook, .init = reset, .fini = hook_reset);

Test(hook, observers_see_every_event_and_can_veto_the_handshake)
{
	static int no = 0, yes = 1;
	struct hook_event ev = { .type = HOOK_HANDSHAKE_PENDING, .link_id = 3,
				 .role = "gateway", .peer_node = "relay" };

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

Test(hook, json_has_the_fields_of_each_event)
{
	char buf[2048];
	struct hook_event ev = {
		.type = HOOK_HANDSHAKE_PENDING, .ts_us = 1700000000123456ull,
		.link_id = 7, .role = "relay", .local = "127.0.0.1:7400",
		.peer = "127.0.0.1:5555", .peer_node = "gw1",
		.tls_offset_out = 125, .tls_offset_in = 102,
	};

	cr_assert_gt(hook_format_json(&ev, buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf,
		"{\"ts\":\"2023-11-14T22:13:20.123456Z\",\"event\":\"handshake_pending\","
		"\"link\":7,\"role\":\"relay\",\"local\":\"127.0.0.1:7400\","
		"\"peer\":\"127.0.0.1:5555\",\"peer_node\":\"gw1\","
		"\"tls_offset_out\":125,\"tls_offset_in\":102}");
	ev.type = HOOK_LINK_CLOSED;
	ev.reason = "peer closed";
	ev.bytes_in = 10;
	ev.bytes_out = 20;
	ev.streams = 3;
	cr_assert_gt(hook_format_json(&ev, buf, sizeof(buf)), 0);
	cr_assert_not_null(strstr(buf, "\"reason\":\"peer closed\",\"bytes_in\":10,"
				  "\"bytes_out\":20,\"streams\":3"), "%s", buf);
	cr_assert_null(strstr(buf, "tls_offset"));
}

Test(hook, json_escapes_and_respects_the_buffer_size)
{
	char buf[256];
	struct hook_event ev = { .type = HOOK_HANDSHAKE_FAILED, .ts_us = 1,
				 .reason = "bad \"cert\"\\\n\x01" };
	int n;

	n = hook_format_json(&ev, buf, sizeof(buf));
	cr_assert_gt(n, 0);
	cr_assert_not_null(strstr(buf, "\"reason\":\"bad \\\"cert\\\"\\\\\\u000a\\u0001\""),
			   "%s", buf);
	cr_assert_eq(hook_format_json(&ev, buf, (size_t)n), -1,
		     "a buffer one byte short must be refused");
	cr_assert_eq(hook_format_json(&ev, buf, (size_t)n + 1), n);
}

Test(hook, file_sink_writes_one_line_per_event)
{
	char path[] = "/tmp/tlsplex-hook-XXXXXX";
	char line[4096];
	struct hook_event ev = { .type = HOOK_PLAINTEXT_AGREED, .link_id = 1,
				 .reason = "both sides have TLS off" };
	FILE *f;
	int fd, lines = 0;

	fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	close(fd);
	cr_assert_eq(hook_open_file(path), 0);
	cr_assert_eq(hook_emit(&ev), 0);
	ev.type = HOOK_LINK_CLOSED;
	cr_assert_eq(hook_emit(&ev), 0);
	hook_reset();
	f = fopen(path, "r");
	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f) != NULL) {
		cr_assert_eq(line[0], '{');
		cr_assert_eq(line[strlen(line) - 2], '}');
		lines++;
	}
	fclose(f);
	unlink(path);
	cr_assert_eq(lines, 2);
	cr_assert_eq(hook_open_file("/nonexistent-dir/x.jsonl"), -1);
}
