/*
 * tlsplex-report: the JSON Lines reader on its own, then the real binary
 * on the fixtures of test/fixtures/report (one per link class of
 * docs/MONITORING.md, input problems, certificates), and on the hook
 * files of a real pair.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../tools/jsonl.h"
#include "harness.h"
#include "pair.h"

#define RUN_TIMEOUT_MS 20000

/* ---- the reader ---------------------------------------------------------- */

static struct jobj obj;

static int
parse(const char *s, char *err, size_t errlen)
{
	return jobj_parse(&obj, s, strlen(s), err, errlen);
}

Test(jsonl, decodes_every_escape)
{
	char err[256];
	int64_t n;

	cr_assert_eq(parse("{\"a\":\"q\\\"b\\\\s\\/t\\tn\\nr\\rb\\bf\\f\","
			   "\"u\":\"caf\\u00e9 \\ud83d\\udd12 \\u20ac\","
			   "\"n\":-12,\"x\":1.5e3,\"t\":true,\"f\":false}",
			   err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(obj.n, 6);
	cr_assert_str_eq(jobj_str(&obj, "a"), "q\"b\\s/t\tn\nr\rb\bf\f");
	cr_assert_str_eq(jobj_str(&obj, "u"),
			 "caf\xc3\xa9 \xf0\x9f\x94\x92 \xe2\x82\xac");
	cr_assert_eq(jobj_int(&obj, "n", &n), 0);
	cr_assert_eq(n, -12);
	cr_assert_eq(jobj_int(&obj, "x", &n), -1, "1.5e3 is not an integer");
	cr_assert_eq(jobj_get(&obj, "x")->num, 1500.0);
	cr_assert_eq(jobj_get(&obj, "t")->b, 1);
	cr_assert_eq(jobj_get(&obj, "f")->type, JV_BOOL);
	cr_assert_null(jobj_str(&obj, "n"), "a number is not a string");
	cr_assert_eq(parse(" { } \r", err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(obj.n, 0);
}

Test(jsonl, rejects_what_the_schema_never_writes)
{
	static const struct {
		const char *line, *why;
	} bad[] = {
		{ "", "a line must be one JSON object" },
		{ "[1]", "a line must be one JSON object" },
		{ "{\"a\":{\"b\":1}}", "nested object" },
		{ "{\"a\":[1]}", "nested array" },
		{ "{\"a\":null}", "null" },
		{ "{\"a\":1,\"a\":2}", "duplicate key \"a\"" },
		{ "{\"a\":1} x", "bytes after the object" },
		{ "{\"a\":1", "cut short" },
		{ "{\"a\":\"x", "unterminated string" },
		{ "{\"a\":\"\\q\"}", "bad escape \\q" },
		{ "{\"a\":\"\\u12\"}", "four hex digits" },
		{ "{\"a\":\"\\ud83d\"}", "without its low half" },
		{ "{\"a\":\"\\udd12\"}", "lone low surrogate" },
		{ "{\"a\":\"\\u0000\"}", "\\u0000" },
		{ "{\"a\":\"tab\there\"}", "control character 0x09" },
		{ "{\"a\":01}", "leading zero" },
		{ "{\"a\":1.}", "no digit after '.'" },
		{ "{\"a\":-}", "bad number" },
		{ "{\"a\":tru}", "bad value" },
		{ "{a:1}", "expected a string" },
		{ "{\"a\" 1}", "expected ':'" },
		{ "{\"a\":1,}", "expected a string" },
	};
	char err[256];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(parse(bad[i].line, err, sizeof(err)), -1,
			     "accepted %s", bad[i].line);
		cr_assert_not_null(strstr(err, bad[i].why), "%s: said '%s', "
				   "not '%s'", bad[i].line, err, bad[i].why);
	}
	/* An embedded NUL is a control character, not the end. */
	cr_assert_eq(jobj_parse(&obj, "{\"a\":\"x\0y\"}", 11, err, sizeof(err)), -1);
}

/* ---- running the binary ------------------------------------------------ */

static char *
fixture(const char *name)
{
	static char path[8][600];
	static int n;
	char *p = path[n++ % 8];

	snprintf(p, 600, "%s/test/fixtures/report/%s", h_source_dir(), name);
	return p;
}

/* Runs tlsplex-report with the arguments (NULL-terminated), standard
 * input from in (NULL: /dev/null).  Returns its exit code (-1 when it did
 * not exit by itself within RUN_TIMEOUT_MS) and its output in *out. */
static int
rep_v(const char *in, char **out, va_list ap)
{
	char bin[600], outp[] = "/tmp/tlsplex-report-out-XXXXXX";
	const char *argv[64];
	int argc = 0, fd, status = 0, rc = -1;
	int64_t end;
	pid_t pid, w;

	snprintf(bin, sizeof(bin), "%s/tlsplex-report", h_build_dir());
	argv[argc++] = bin;
	while (argc < 63 && (argv[argc] = va_arg(ap, const char *)) != NULL)
		argc++;
	argv[argc] = NULL;
	fd = mkstemp(outp);
	cr_assert_geq(fd, 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int ifd = open(in ? in : "/dev/null", O_RDONLY);

		if (ifd < 0)
			_exit(126);
		dup2(ifd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		execv(bin, (char *const *)argv);
		_exit(127);
	}
	close(fd);
	end = h_now_ms() + RUN_TIMEOUT_MS;
	while ((w = waitpid(pid, &status, WNOHANG)) == 0 && h_now_ms() < end)
		h_sleep_ms(5);
	if (w == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
	} else if (WIFEXITED(status)) {
		rc = WEXITSTATUS(status);
	}
	*out = h_read_file(outp, NULL);
	unlink(outp);
	cr_assert_not_null(*out);
	cr_assert_neq(rc, 127, "cannot run %s", bin);
	return rc;
}

static int
rep_in(const char *in, char **out, ...)
{
	va_list ap;
	int rc;

	va_start(ap, out);
	rc = rep_v(in, out, ap);
	va_end(ap);
	return rc;
}

static int
rep(char **out, ...)
{
	va_list ap;
	int rc;

	va_start(ap, out);
	rc = rep_v(NULL, out, ap);
	va_end(ap);
	return rc;
}

/* The number after "key": in s, starting at the first occurrence of
 * within (NULL: anywhere). */
static long
num_after(const char *s, const char *within, const char *key)
{
	char k[128];
	const char *p = within ? strstr(s, within) : s;

	cr_assert_not_null(p, "no %s in:\n%s", within, s);
	snprintf(k, sizeof(k), "\"%s\":", key);
	p = strstr(p, k);
	cr_assert_not_null(p, "no %s in:\n%s", key, s);
	return strtol(p + strlen(k), NULL, 10);
}

/* A finding id's total count in JSON output. */
static long
fcount(const char *json, const char *id)
{
	return num_after(json, "\"finding_counts\":{", id);
}

static long
links(const char *json, const char *key)
{
	return num_after(json, "\"links\":{", key);
}

/* Every id's count is zero except the ones named (id, count, ..., NULL). */
static void
only_findings(const char *json, ...)
{
	static const char *const ids[] = {
		"TPX-PLAINTEXT", "TPX-TLS-VERSION", "TPX-CIPHER",
		"TPX-CERT-EXPIRED", "TPX-CERT-EXPIRES", "TPX-HS-FAILED",
		"TPX-REFUSED", "TPX-ABORTED", "TPX-CONNECT-FAILED",
		"TPX-UNCLASSIFIED", "TPX-SIDES-DISAGREE", "TPX-INPUT-GAP",
	};
	size_t i;

	for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		va_list ap;
		const char *id;
		long want = 0;

		va_start(ap, json);
		while ((id = va_arg(ap, const char *)) != NULL) {
			long n = va_arg(ap, long);

			if (strcmp(id, ids[i]) == 0)
				want = n;
		}
		va_end(ap);
		cr_assert_eq(fcount(json, ids[i]), want, "%s: %ld, not %ld:\n%s",
			     ids[i], fcount(json, ids[i]), want, json);
	}
}

#define JSON "--format", "json"

/* ---- one fixture per link class ----------------------------------------- */

TestSuite(report, .timeout = 60);

Test(report, tls_link_is_ready)
{
	char *out;

	cr_assert_eq(rep(&out, JSON, fixture("tls_ok.jsonl"), NULL), 0, "%s", out);
	only_findings(out, NULL);
	cr_assert_eq(links(out, "total"), 1);
	cr_assert_eq(links(out, "joined_by_transcript"), 1);
	cr_assert_eq(links(out, "tls"), 1);
	cr_assert_not_null(strstr(out, "\"readiness\":{\"encrypted\":1,\"carried\":1,"
				  "\"percent\":100.0}"), "%s", out);
	cr_assert_not_null(strstr(out, "\"result\":\"ready\",\"exit\":0"));
	free(out);
	cr_assert_eq(rep(&out, fixture("tls_ok.jsonl"), NULL), 0);
	cr_assert_not_null(strstr(out, "\nreadiness 1/1 links encrypted (100.0%)\n"),
			   "%s", out);
	cr_assert_not_null(strstr(out, "\npeer gw1 -> relay: 1 link (1 tls), 1/1 "
				  "encrypted (100.0%)\n"), "%s", out);
	cr_assert_not_null(strstr(out, "\nresult: ready (exit 0)\n"), "%s", out);
	free(out);
}

Test(report, plaintext_link_fails_unless_allowed)
{
	char *out;

	cr_assert_eq(rep(&out, JSON, fixture("plaintext.jsonl"), NULL), 1, "%s", out);
	only_findings(out, "TPX-PLAINTEXT", 1L, NULL);
	cr_assert_eq(links(out, "plaintext"), 1);
	cr_assert_not_null(strstr(out, "\"subject\":\"plaintext agreed (DIALER_OFF)\""));
	cr_assert_not_null(strstr(out, "\"percent\":0.0}"));
	free(out);
	cr_assert_eq(rep(&out, fixture("plaintext.jsonl"), NULL), 1);
	cr_assert_not_null(strstr(out, "  FAIL TPX-PLAINTEXT "), "%s", out);
	cr_assert_not_null(strstr(out, "\nreadiness 0/1 links encrypted (0.0%)\n"));
	cr_assert_not_null(strstr(out, "\nresult: not ready: TPX-PLAINTEXT (1) (exit 1)\n"),
			   "%s", out);
	free(out);
	/* Exempt by node name, or by address; another peer is not. */
	cr_assert_eq(rep(&out, JSON, "--allow-plaintext", "legacy9,gw1",
			 fixture("plaintext.jsonl"), NULL), 0, "%s", out);
	only_findings(out, NULL);
	cr_assert_eq(links(out, "plaintext_allowed"), 1);
	free(out);
	cr_assert_eq(rep(&out, JSON, "--allow-plaintext", "192.0.2.20",
			 fixture("plaintext.jsonl"), NULL), 0, "%s", out);
	free(out);
	cr_assert_eq(rep(&out, JSON, "--allow-plaintext", "gw2",
			 fixture("plaintext.jsonl"), NULL), 1, "%s", out);
	free(out);
	/* Not in --fail-on: listed as a warning, exit 0. */
	cr_assert_eq(rep(&out, "--fail-on", "TPX-CIPHER", fixture("plaintext.jsonl"),
			 NULL), 0, "%s", out);
	cr_assert_not_null(strstr(out, "  WARN TPX-PLAINTEXT "), "%s", out);
	free(out);
	cr_assert_eq(rep(&out, "--fail-on", "none", fixture("plaintext.jsonl"),
			 NULL), 0, "%s", out);
	free(out);
}

Test(report, negotiation_refusal_joins_both_sides_by_address)
{
	char *out;

	cr_assert_eq(rep(&out, JSON, fixture("refused_negotiation.jsonl"), NULL), 0,
		     "%s", out);
	only_findings(out, "TPX-REFUSED", 1L, NULL);
	cr_assert_eq(links(out, "total"), 1, "the two sides are one link:\n%s", out);
	cr_assert_eq(links(out, "joined_by_address"), 1);
	cr_assert_eq(links(out, "refused"), 1);
	cr_assert_not_null(strstr(out, "\"subject\":\"negotiation REQUIRED_BY_ACCEPTOR "
				  "(by relay)\""), "%s", out);
	free(out);
}

Test(report, tcp_refusals_count_what_was_suppressed)
{
	char *out;

	cr_assert_eq(rep(&out, JSON, fixture("refused_tcp.jsonl"), NULL), 0, "%s", out);
	/* deny_list: 1 + (1 + 4 suppressed); max_clients: 1 */
	only_findings(out, "TPX-REFUSED", 7L, NULL);
	cr_assert_eq(links(out, "total"), 0);
	cr_assert_eq(links(out, "tcp_refused"), 7);
	cr_assert_not_null(strstr(out, "\"group\":\"198.51.100.7 -> relay\",\"subject\":"
				  "\"tcp deny_list (by relay)\",\"count\":6"), "%s", out);
	free(out);
	cr_assert_eq(rep(&out, JSON, "--group-by", "service",
			 fixture("refused_tcp.jsonl"), NULL), 0);
	cr_assert_not_null(strstr(out, "\"group\":\"echo\",\"subject\":\"tcp max_clients, "
				  "service echo (by gw1)\",\"count\":1"), "%s", out);
	cr_assert_eq(num_after(out, "{\"group\":\"echo\"", "tcp_refused"), 1);
	free(out);
}

Test(report, dialler_rejecting_the_decision_is_a_disagreement)
{
	char *out;

	cr_assert_eq(rep(&out, JSON, fixture("sides_disagree.jsonl"), NULL), 0,
		     "%s", out);
	only_findings(out, "TPX-SIDES-DISAGREE", 2L, "TPX-REFUSED", 1L,
		      "TPX-HS-FAILED", 1L, NULL);
	cr_assert_eq(links(out, "total"), 2);
	cr_assert_eq(links(out, "joined_by_address"), 1);
	cr_assert_eq(links(out, "joined_by_transcript"), 1);
	cr_assert_not_null(strstr(out, "\"subject\":\"outcome refused (gw1) / failed "
				  "(relay)\""), "%s", out);
	cr_assert_not_null(strstr(out, "\"subject\":\"protocol TLSv1.2 / TLSv1.3\""));
	free(out);
	cr_assert_eq(rep(&out, "--fail-on", "TPX-SIDES-DISAGREE",
			 fixture("sides_disagree.jsonl"), NULL), 1, "%s", out);
	cr_assert_not_null(strstr(out, "  FAIL TPX-SIDES-DISAGREE "), "%s", out);
	free(out);
}

Test(report, not_tlsplex_is_aborted)
{
	char *out;

	cr_assert_eq(rep(&out, JSON, fixture("aborted.jsonl"), NULL), 0, "%s", out);
	only_findings(out, "TPX-ABORTED", 1L, NULL);
	cr_assert_eq(links(out, "aborted"), 1);
	cr_assert_eq(links(out, "one_side"), 1);
	cr_assert_not_null(strstr(out, "\"group\":\"203.0.113.44 -> relay\""), "%s", out);
	free(out);
}

Test(report, connect_failure)
{
	char *out;

	cr_assert_eq(rep(&out, JSON, fixture("connect_failed.jsonl"), NULL), 0,
		     "%s", out);
	only_findings(out, "TPX-CONNECT-FAILED", 1L, NULL);
	cr_assert_eq(links(out, "connect_failed"), 1);
	/* It never heard the relay's name: the address stands for it... */
	cr_assert_not_null(strstr(out, "{\"group\":\"gw1 -> 192.0.2.10\",\"links\":1,"),
			   "%s", out);
	free(out);
	/* ...unless another link of gw1 heard it at the same address. */
	cr_assert_eq(rep(&out, JSON, fixture("connect_failed.jsonl"),
			 fixture("tls_ok.jsonl"), NULL), 0, "%s", out);
	cr_assert_not_null(strstr(out, "{\"group\":\"gw1 -> relay\",\"links\":2,"),
			   "%s", out);
	free(out);
}

Test(report, handshake_failure_names_its_stage)
{
	char *out;

	cr_assert_eq(rep(&out, JSON, fixture("handshake_failed.jsonl"), NULL), 0,
		     "%s", out);
	only_findings(out, "TPX-HS-FAILED", 1L, NULL);
	cr_assert_eq(links(out, "failed"), 1);
	cr_assert_eq(links(out, "total"), 1);
	cr_assert_not_null(strstr(out, "\"subject\":\"stage tls\""), "%s", out);
	free(out);
}

Test(report, links_with_no_outcome_are_unclassified)
{
	char *out;

	cr_assert_eq(rep(&out, JSON, fixture("no_outcome.jsonl"), NULL), 1, "%s", out);
	only_findings(out, "TPX-UNCLASSIFIED", 2L, NULL);
	free(out);
	cr_assert_eq(rep(&out, fixture("no_outcome.jsonl"), NULL), 1);
	cr_assert_not_null(strstr(out, "FAIL TPX-UNCLASSIFIED        1  gateway side: "
				  "no link_closed, handshake_pending unanswered (still "
				  "open, or the daemon crashed)"),
			   "%s", out);
	free(out);
}

Test(report, weak_versions_and_ciphers)
{
	char *out;

	cr_assert_eq(rep(&out, JSON, fixture("weak_tls.jsonl"), NULL), 1, "%s", out);
	only_findings(out, "TPX-CIPHER", 1L, NULL);
	cr_assert_not_null(strstr(out, "\"subject\":\"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_"
				  "SHA256\""), "%s", out);
	free(out);
	cr_assert_eq(rep(&out, JSON, "--min-tls", "1.3", fixture("weak_tls.jsonl"),
			 NULL), 1);
	only_findings(out, "TPX-CIPHER", 1L, "TPX-TLS-VERSION", 2L, NULL);
	free(out);
	cr_assert_eq(rep(&out, JSON, "--allowed-ciphers",
			 "TLS_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
			 fixture("weak_tls.jsonl"), NULL), 1);
	only_findings(out, "TPX-CIPHER", 1L, NULL);
	cr_assert_not_null(strstr(out, "\"subject\":\"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_"
				  "SHA256\""), "%s", out);
	free(out);
	cr_assert_eq(rep(&out, JSON, "--group-by", "cipher", fixture("weak_tls.jsonl"),
			 NULL), 1);
	cr_assert_not_null(strstr(out, "{\"group\":\"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_"
				  "SHA256\",\"links\":1,"), "%s", out);
	free(out);
}

Test(report, certificate_expiry)
{
	char *out;

	cr_assert_eq(rep(&out, JSON, "--now", "2026-12-01T12:00:00Z",
			 fixture("cert_expiry.jsonl"), NULL), 1, "%s", out);
	only_findings(out, "TPX-CERT-EXPIRED", 1L, "TPX-CERT-EXPIRES", 1L, NULL);
	cr_assert_not_null(strstr(out, "\"subject\":\"/CN=gw1 expired "
				  "2026-11-30T21:00:00Z\""), "%s", out);
	cr_assert_not_null(strstr(out, "\"subject\":\"/CN=relay expires "
				  "2026-12-06T09:00:00Z (in 4 days)\""), "%s", out);
	free(out);
	cr_assert_eq(rep(&out, JSON, "--now", "2026-12-01T12:00:00Z",
			 "--cert-warn-days", "3", fixture("cert_expiry.jsonl"), NULL), 1);
	only_findings(out, "TPX-CERT-EXPIRED", 1L, NULL);
	free(out);
	/* A month earlier: nothing expired, the gateway's within 30 days. */
	cr_assert_eq(rep(&out, JSON, "--now", "2026-11-01T00:00:00+01:00",
			 fixture("cert_expiry.jsonl"), NULL), 0, "%s", out);
	only_findings(out, "TPX-CERT-EXPIRES", 1L, NULL);
	cr_assert_not_null(strstr(out, "\"now\":\"2026-10-31T23:00:00Z\""), "%s", out);
	free(out);
	/* Without --now the latest event is the reference. */
	cr_assert_eq(rep(&out, JSON, fixture("cert_expiry.jsonl"), NULL), 1);
	only_findings(out, "TPX-CERT-EXPIRED", 1L, "TPX-CERT-EXPIRES", 1L, NULL);
	free(out);
}

/* ---- input problems ---------------------------------------------------- */

Test(report, malformed_and_truncated_lines_are_counted)
{
	char *out;

	cr_assert_eq(rep(&out, JSON, fixture("malformed.jsonl"), NULL), 0, "%s", out);
	only_findings(out, "TPX-INPUT-GAP", 7L, NULL);
	cr_assert_eq(num_after(out, "\"input\":", "malformed"), 6);
	cr_assert_eq(num_after(out, "\"input\":", "truncated"), 1);
	/* The line with every kind of escape is an event. */
	cr_assert_eq(num_after(out, "\"input\":", "events"), 13);
	cr_assert_eq(num_after(out, "\"input\":", "lines"), 20);
	cr_assert_eq(links(out, "tls"), 1);
	cr_assert_not_null(strstr(out, "malformed.jsonl:10: not a JSON object: byte 164: "
				  "bad escape \\\\q"), "%s", out);
	free(out);
	cr_assert_eq(rep(&out, "--strict-input", fixture("malformed.jsonl"), NULL), 2);
	cr_assert_not_null(strstr(out, "\nresult: input problem: TPX-INPUT-GAP (7) "
				  "(exit 2)\n"), "%s", out);
	free(out);
}

Test(report, seq_gap)
{
	char *out;

	cr_assert_eq(rep(&out, JSON, fixture("seq_gap.jsonl"), NULL), 0, "%s", out);
	only_findings(out, "TPX-INPUT-GAP", 2L, NULL);
	cr_assert_not_null(strstr(out, "\"example\":\"first missing seq 6\""), "%s", out);
	free(out);
	cr_assert_eq(rep(&out, JSON, "--strict-input", fixture("seq_gap.jsonl"), NULL), 2);
	free(out);
}

Test(report, sink_recovered_explains_its_gap)
{
	char *out;

	cr_assert_eq(rep(&out, JSON, fixture("sink_lost.jsonl"), NULL), 1, "%s", out);
	/* lost 5 = the 5 missing seqs: said once.  The lost link_closed
	 * leaves the gateway's side without an outcome. */
	only_findings(out, "TPX-INPUT-GAP", 5L, "TPX-UNCLASSIFIED", 1L, NULL);
	cr_assert_not_null(strstr(out, "\"subject\":\"sink file:/var/log/tlsplex/"
				  "gw-hooks.jsonl of gw1 lost events\",\"count\":5"),
			   "%s", out);
	cr_assert_not_null(strstr(out, "\"subject\":\"gateway side: no link_closed, "
				  "handshake_pending unanswered (the daemon stopped: "
				  "events lost)\""), "%s", out);
	free(out);
}

Test(report, restart_without_stopping_is_a_crash)
{
	char *out;

	cr_assert_eq(rep(&out, JSON, fixture("crash.jsonl"), NULL), 1, "%s", out);
	only_findings(out, "TPX-INPUT-GAP", 1L, "TPX-UNCLASSIFIED", 1L, NULL);
	cr_assert_eq(num_after(out, "\"input\":", "instances"), 3);
	cr_assert_eq(links(out, "tls"), 2);
	cr_assert_not_null(strstr(out, "\"subject\":\"gateway gw1 restarted without "
				  "daemon_stopping (crash)\""), "%s", out);
	free(out);
}

Test(report, empty_input_is_an_input_problem)
{
	char *out;

	cr_assert_eq(rep(&out, JSON, fixture("empty.jsonl"), NULL), 2, "%s", out);
	cr_assert_eq(num_after(out, "\"input\":", "events"), 0);
	cr_assert_not_null(strstr(out, "\"now\":null,"), "%s", out);
	free(out);
	cr_assert_eq(rep(&out, fixture("empty.jsonl"), NULL), 2);
	cr_assert_not_null(strstr(out, "\nno events in the input\n"), "%s", out);
	free(out);
}

Test(report, unreadable_file_is_an_input_problem)
{
	char *out;

	cr_assert_eq(rep(&out, JSON, fixture("tls_ok.jsonl"), "/nonexistent/x.jsonl",
			 NULL), 2, "%s", out);
	cr_assert_eq(num_after(out, "\"input\":", "unreadable"), 1);
	cr_assert_not_null(strstr(out, "cannot read /nonexistent/x.jsonl: No such file"),
			   "%s", out);
	/* What could be read is still reported. */
	cr_assert_eq(links(out, "tls"), 1);
	free(out);
	cr_assert_eq(rep(&out, "-q", fixture("tls_ok.jsonl"), "/nonexistent/x.jsonl",
			 NULL), 2);
	free(out);
}

Test(report, overlong_line_is_malformed)
{
	char dir[] = "/tmp/tlsplex-report-XXXXXX", path[600], *out;
	FILE *f;
	int i;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/long.jsonl", dir);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fprintf(f, "{\"event\":\"daemon_reloaded\",\"reason\":\"");
	for (i = 0; i < 70000; i++)
		fputc('x', f);
	fprintf(f, "\"}\n");
	fclose(f);
	cr_assert_eq(rep(&out, JSON, fixture("tls_ok.jsonl"), path, NULL), 0, "%s", out);
	only_findings(out, "TPX-INPUT-GAP", 1L, NULL);
	cr_assert_not_null(strstr(out, "long.jsonl:1: line: longer than 65535 bytes"),
			   "%s", out);
	free(out);
	h_rmtree(dir);
}

Test(report, control_characters_never_reach_the_terminal)
{
	char dir[] = "/tmp/tlsplex-report-XXXXXX", path[600], *out;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/esc.jsonl", dir);
	cr_assert_eq(h_write_file(path, "{\"ts\":\"2026-12-01T09:00:00.000000Z\","
		"\"event\":\"link_refused\",\"v\":2,\"seq\":1,\"instance\":"
		"\"0123456789abcdef\",\"node\":\"gw\\u001b[2J1\",\"pid\":7,"
		"\"role\":\"gateway\",\"peer\":\"10.0.0.5:1\",\"peer_ip\":"
		"\"10.0.0.5\",\"stage\":\"tcp\",\"reason_name\":\"max\\nclients\","
		"\"service\":\"echo\"}\n"), 0);
	cr_assert_eq(rep(&out, path, NULL), 0, "%s", out);
	cr_assert_null(strchr(out, '\033'), "%s", out);
	cr_assert_not_null(strstr(out, "tcp max?clients, service echo (by gw?[2J1)"),
			   "%s", out);
	free(out);
	h_rmtree(dir);
}

/* Summaries (when the daemons write them) carry the streams per service. */
Test(report, streams_per_service_from_summaries)
{
	char dir[] = "/tmp/tlsplex-report-XXXXXX", path[600], *out;
	static const char *const rec[] = {
		"\"service\":\"echo\",\"protection\":\"plaintext\",\"streams_opened\":12",
		"\"service\":\"echo\",\"protection\":\"tls\",\"streams_opened\":30",
		"\"service\":\"db\",\"protection\":\"plaintext\",\"streams_opened\":3",
		"\"service\":\"echo\",\"protection\":\"plaintext\",\"streams_opened\":5",
	};
	FILE *f;
	size_t i;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/sum.jsonl", dir);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	for (i = 0; i < 4; i++)
		fprintf(f, "{\"ts\":\"2026-12-01T09:0%zu:00.000000Z\",\"event\":"
			"\"service_summary\",\"v\":2,\"seq\":%zu,\"instance\":"
			"\"00000000000000aa\",\"node\":\"gw1\",\"pid\":9,\"role\":"
			"\"gateway\",%s}\n", i, i + 1, rec[i]);
	fclose(f);
	cr_assert_eq(rep(&out, path, NULL), 0, "%s", out);
	cr_assert_not_null(strstr(out, "\nstreams on plaintext links per service: "
				  "echo 17, db 3\n"), "%s", out);
	free(out);
	cr_assert_eq(rep(&out, JSON, path, NULL), 0, "%s", out);
	cr_assert_not_null(strstr(out, "{\"service\":\"db\",\"protection\":"
				  "\"plaintext\",\"streams\":3}"), "%s", out);
	free(out);
	cr_assert_eq(rep(&out, JSON, fixture("tls_ok.jsonl"), NULL), 0);
	cr_assert_not_null(strstr(out, "\"services\":null"), "%s", out);
	free(out);
	h_rmtree(dir);
}

Test(report, standard_input)
{
	char *out;

	cr_assert_eq(rep_in(fixture("plaintext.jsonl"), &out, JSON, "-", NULL), 1,
		     "%s", out);
	only_findings(out, "TPX-PLAINTEXT", 1L, NULL);
	cr_assert_eq(links(out, "total"), 1);
	free(out);
}

/* A file given twice, or a rotated file and its successor: each event
 * counts once, in any order. */
Test(report, rotated_and_repeated_files)
{
	char dir[] = "/tmp/tlsplex-report-XXXXXX", a[600], b[600], gz[620];
	char *all, *out, *cut;
	const char *gzargv[] = { "/bin/gzip", "-k", gz, NULL };
	size_t len;
	int i;

	cr_assert_eq(rep(&out, JSON, fixture("tls_ok.jsonl"), fixture("tls_ok.jsonl"),
			 NULL), 0, "%s", out);
	only_findings(out, NULL);
	cr_assert_eq(links(out, "total"), 1);
	cr_assert_eq(num_after(out, "\"input\":", "duplicates"), 12);
	cr_assert_eq(num_after(out, "\"input\":", "events"), 12);
	free(out);

	cr_assert_not_null(mkdtemp(dir));
	all = h_read_file(fixture("tls_ok.jsonl"), &len);
	cr_assert_not_null(all);
	for (cut = all, i = 0; i < 5; i++)
		cut = strchr(cut, '\n') + 1;
	snprintf(a, sizeof(a), "%s/hooks.jsonl.1", dir);
	snprintf(b, sizeof(b), "%s/hooks.jsonl", dir);
	cr_assert_eq(h_write_file(a, "%.*s", (int)(cut - all), all), 0);
	cr_assert_eq(h_write_file(b, "%s", cut), 0);
	cr_assert_eq(rep(&out, JSON, b, a, NULL), 0, "%s", out);
	only_findings(out, NULL);
	cr_assert_eq(links(out, "joined_by_transcript"), 1);
	free(out);
	/* Only the newer file: the gateway's side of the link is missing. */
	cr_assert_eq(rep(&out, JSON, b, NULL), 0, "%s", out);
	cr_assert_eq(links(out, "one_side"), 1, "%s", out);
	cr_assert_eq(links(out, "joined_by_transcript"), 0);
	free(out);
	if (access("/bin/gzip", X_OK) == 0) {
		snprintf(gz, sizeof(gz), "%s", a);
		cr_assert_eq(h_run(gzargv, NULL, 10000), 0);
		snprintf(gz, sizeof(gz), "%s.gz", a);
		cr_assert_eq(rep(&out, JSON, gz, b, NULL), 0, "%s", out);
		only_findings(out, NULL);
		free(out);
	}
	free(all);
	h_rmtree(dir);
}

Test(report, since_and_until)
{
	char *out;

	cr_assert_eq(rep(&out, JSON, "--since", "2026-12-02T00:00:00Z",
			 fixture("plaintext.jsonl"), NULL), 2, "%s", out);
	cr_assert_eq(num_after(out, "\"input\":", "events"), 0);
	free(out);
	/* Until the plaintext link was agreed: it has no outcome yet. */
	cr_assert_eq(rep(&out, JSON, "--until", "2026-12-01T09:00:00.200Z",
			 "--fail-on", "TPX-PLAINTEXT", fixture("plaintext.jsonl"),
			 NULL), 1, "%s", out);
	only_findings(out, "TPX-PLAINTEXT", 1L, "TPX-UNCLASSIFIED", 2L, NULL);
	free(out);
}

Test(report, markdown_and_quiet)
{
	char *out;

	cr_assert_eq(rep(&out, "--format", "markdown", fixture("plaintext.jsonl"),
			 NULL), 1);
	cr_assert_not_null(strstr(out, "# tlsplex readiness report\n"), "%s", out);
	cr_assert_not_null(strstr(out, "| FAIL | `TPX-PLAINTEXT` | gw1 -> relay | 1 | "
				  "plaintext agreed (DIALER_OFF) |"), "%s", out);
	cr_assert_not_null(strstr(out, "| gw1 -> relay | 1 | 0 | 1 | 0 |"), "%s", out);
	free(out);
	cr_assert_eq(rep(&out, "-q", fixture("plaintext.jsonl"), NULL), 1);
	cr_assert_str_eq(out, "");
	free(out);
	cr_assert_eq(rep(&out, "-q", fixture("tls_ok.jsonl"), NULL), 0);
	cr_assert_str_eq(out, "");
	free(out);
}

Test(report, group_by_node_counts_a_link_once)
{
	char *out;

	cr_assert_eq(rep(&out, JSON, "--group-by", "node", fixture("plaintext.jsonl"),
			 NULL), 1);
	cr_assert_not_null(strstr(out, "{\"group\":\"gw1\",\"links\":1,"), "%s", out);
	cr_assert_not_null(strstr(out, "{\"group\":\"relay\",\"links\":1,"), "%s", out);
	only_findings(out, "TPX-PLAINTEXT", 1L, NULL);
	free(out);
	cr_assert_eq(rep(&out, JSON, "--group-by", "node", "--allow-plaintext", "gw1",
			 fixture("plaintext.jsonl"), NULL), 0);
	cr_assert_eq(links(out, "plaintext_allowed"), 1, "%s", out);
	free(out);
}

Test(report, usage_errors)
{
	char *out;

	cr_assert_eq(rep(&out, "--bogus", fixture("tls_ok.jsonl"), NULL), 64);
	cr_assert_not_null(strstr(out, "unknown option '--bogus'"), "%s", out);
	free(out);
	cr_assert_eq(rep(&out, "--format", "xml", fixture("tls_ok.jsonl"), NULL), 64);
	free(out);
	cr_assert_eq(rep(&out, "--group-by", "colour", fixture("tls_ok.jsonl"), NULL), 64);
	free(out);
	cr_assert_eq(rep(&out, "--fail-on", "TPX-NOPE", fixture("tls_ok.jsonl"), NULL), 64);
	cr_assert_not_null(strstr(out, "unknown finding id 'TPX-NOPE'"), "%s", out);
	free(out);
	cr_assert_eq(rep(&out, "--min-tls", "2.0", fixture("tls_ok.jsonl"), NULL), 64);
	free(out);
	cr_assert_eq(rep(&out, "--cert-warn-days", "x", fixture("tls_ok.jsonl"), NULL), 64);
	free(out);
	cr_assert_eq(rep(&out, "--now", "yesterday", fixture("tls_ok.jsonl"), NULL), 64);
	free(out);
	cr_assert_eq(rep(&out, fixture("tls_ok.jsonl"), "--format", NULL), 64);
	cr_assert_not_null(strstr(out, "option '--format' needs a value"), "%s", out);
	free(out);
	cr_assert_eq(rep(&out, "--help", NULL), 0);
	cr_assert_not_null(strstr(out, "usage: tlsplex-report"), "%s", out);
	free(out);
	cr_assert_eq(rep(&out, NULL), 64);
	cr_assert_not_null(strstr(out, "no FILE given"), "%s", out);
	free(out);
}

/* ---- a real pair ------------------------------------------------------- */

TestSuite(report_e2e, .init = pair_init, .fini = pair_fini, .timeout = 120);

static void
push_and_stop(void)
{
	char err[4096];

	wait_up();
	cr_assert_eq(h_echo_clients(P.svc_port, 4, 64 * 1024, 9, 60000, err,
				    sizeof(err)), 0, "echo clients failed:\n%s", err);
	cr_assert_eq(h_stop(P.gw, 5000), 0);
	cr_assert_eq(h_stop(P.relay, 5000), 0);
}

Test(report_e2e, tls_pair_is_ready)
{
	char *out;

	start_echo("echo");
	start_pair(TLS_RELAY, TLS_GW);
	push_and_stop();
	cr_assert_eq(rep(&out, JSON, P.gw_hooks, P.relay_hooks, NULL), 0, "%s", out);
	cr_assert_eq(fcount(out, "TPX-PLAINTEXT"), 0);
	cr_assert_eq(fcount(out, "TPX-UNCLASSIFIED"), 0, "%s", out);
	cr_assert_eq(fcount(out, "TPX-INPUT-GAP"), 0, "%s", out);
	cr_assert_eq(fcount(out, "TPX-SIDES-DISAGREE"), 0, "%s", out);
	cr_assert_eq(links(out, "total"), 1, "%s", out);
	cr_assert_eq(links(out, "joined_by_transcript"), 1);
	cr_assert_eq(links(out, "tls"), 1);
	cr_assert_eq(num_after(out, "\"input\":", "instances"), 2);
	free(out);
	cr_assert_eq(rep(&out, P.gw_hooks, P.relay_hooks, NULL), 0, "%s", out);
	cr_assert_not_null(strstr(out, "\nreadiness 1/1 links encrypted (100.0%)\n"),
			   "%s", out);
	free(out);
}

Test(report_e2e, plaintext_pair_fails)
{
	char *out;

	start_echo("echo");
	start_pair("tls = off\n", "tls = off\n");
	push_and_stop();
	cr_assert_eq(rep(&out, JSON, P.gw_hooks, P.relay_hooks, NULL), 1, "%s", out);
	cr_assert_eq(fcount(out, "TPX-PLAINTEXT"), 1, "%s", out);
	cr_assert_eq(fcount(out, "TPX-UNCLASSIFIED"), 0, "%s", out);
	cr_assert_eq(fcount(out, "TPX-INPUT-GAP"), 0, "%s", out);
	cr_assert_eq(links(out, "plaintext"), 1);
	cr_assert_eq(links(out, "joined_by_transcript"), 1);
	free(out);
}
