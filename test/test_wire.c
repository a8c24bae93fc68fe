/*
 * What a wire monitor sees: the real daemons on loopback, the link port
 * captured on lo with dumpcap, and tshark with the dissector in
 * contrib/wireshark/tlsplex.lua reading the capture.  The TLS handshake
 * must be found exactly where the hook said TLS starts; a plaintext link
 * must show mux frames at the end of each negotiation message and no TLS;
 * a refused link must show the REFUSE and its reason.
 *
 * The same links, recorded by the tap, are replayed in small segments
 * to check the reassembly of every message, record and frame, in one
 * pass and in two; the negotiation fuzz corpus and mutations of it must
 * raise no Lua error.  The dissector's code tables are checked against
 * proto/neg.h, proto/neg.c and proto/frame.h, so that a code cannot be
 * added or reworded on one side only.
 */
#include <criterion/criterion.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "neg.h"
#include "pair.h"

/* The fields tshark prints for each packet, in this order. */
enum col {
	C_FRAME, C_SRCPORT, C_SEQ, C_LEN, C_TYPE, C_NODE, C_OUTCOME, C_REASON,
	C_REASON_NAME, C_TLS_OFF, C_PEER_TLS_OFF, C_MUX_OFF, C_PEER_MUX_OFF,
	C_STREAM_OFF, C_HS_TYPE, C_FRAME_TYPE, C_MSG_LEN, C_TLS_CONTENT,
	C_TLS_OPAQUE, C_REASON_TEXT, C_TEXT,
	NCOL
};

static const char *const col_fields[NCOL] = {
	"frame.number", "tcp.srcport", "tcp.seq", "tcp.len", "tlsplex.type",
	"tlsplex.node", "tlsplex.outcome", "tlsplex.reason",
	"tlsplex.reason_name", "tlsplex.tls_offset", "tlsplex.peer_tls_offset",
	"tlsplex.mux_offset", "tlsplex.peer_mux_offset",
	"tlsplex.stream_offset", "tls.handshake.type", "tlsplex.frame.type",
	"tlsplex.msg_len", "tls.record.content_type", "tls.record.opaque_type",
	"tlsplex.reason_text", "tlsplex.text",
};

#define MAX_ROWS 20000

struct row {
	char *c[NCOL];
};

static struct row rows[MAX_ROWS];
static int nrows;
static char *tshark_out;
static pid_t capture_pid;
static char capture_file[600];
static int link_port; /* the relay's side of the link in the capture */

/* The first executable dir/name over $PATH and the usual places, or
 * NULL. */
static const char *
find_prog(const char *name)
{
	static char found[600];
	char path[4096];
	const char *env = getenv("PATH");
	char *save, *dir;

	snprintf(path, sizeof(path), "%s:/usr/bin:/usr/sbin:/usr/local/bin",
		 env != NULL ? env : "");
	for (dir = strtok_r(path, ":", &save); dir != NULL;
	     dir = strtok_r(NULL, ":", &save)) {
		snprintf(found, sizeof(found), "%s/%s", dir, name);
		if (dir[0] == '/' && access(found, X_OK) == 0)
			return found;
	}
	return NULL;
}

/* tshark's path; fails the test when it is missing. */
static const char *
tshark_path(void)
{
	static char path[600];
	const char *p = find_prog("tshark");

	cr_assert_not_null(p, "tshark is not installed (scripts/deps.sh installs it)");
	snprintf(path, sizeof(path), "%s", p);
	return path;
}

/* One set of certificates for the run; each test copies it. */
#define CERT_CACHE_ENV "TLSPLEX_WIRE_CERTS"

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
	(void)set;
	cert_cache_make(CERT_CACHE_ENV);
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
	(void)stats;
	cert_cache_remove(CERT_CACHE_ENV);
}

static void
wire_init(void)
{
	pair_init_from(getenv(CERT_CACHE_ENV));
	nrows = 0;
	tshark_out = NULL;
	capture_pid = 0;
}

static void
wire_fini(void)
{
	free(tshark_out);
	tshark_out = NULL;
	pair_fini();
}

/* Starts dumpcap on lo for the link port and waits until it captures.
 * Skips the test when this machine does not let us capture. */
static void
capture_start(void)
{
	const char *dumpcap;
	char prog[600], filter[64], log[600], *text;
	const char *argv[12];
	int64_t end;

	tshark_path();
	dumpcap = find_prog("dumpcap");
	cr_assert_not_null(dumpcap, "dumpcap is not installed (it comes with tshark)");
	snprintf(prog, sizeof(prog), "%s", dumpcap);
	snprintf(filter, sizeof(filter), "tcp port %d", P.relay_port);
	snprintf(capture_file, sizeof(capture_file), "%s/link.pcapng", P.dir);
	link_port = P.relay_port;
	snprintf(log, sizeof(log), "%s/dumpcap.log", P.dir);
	argv[0] = prog;
	argv[1] = "-q";
	argv[2] = "-i";
	argv[3] = "lo";
	argv[4] = "-f";
	argv[5] = filter;
	argv[6] = "-w";
	argv[7] = capture_file;
	argv[8] = "-a";
	argv[9] = "duration:50"; /* a bound even if the test dies */
	argv[10] = NULL;
	capture_pid = h_spawn(argv, log);
	cr_assert_gt(capture_pid, 0);
	/* dumpcap says "Capturing on" before it opens the device; a
	 * refusal follows at once and ends it. */
	end = h_now_ms() + 10000;
	while (h_file_count(log, "Capturing on") == 0 && h_alive(capture_pid) == 1) {
		cr_assert_lt(h_now_ms(), end, "dumpcap did not start capturing:\n%s",
			     h_read_file(log, NULL));
		h_sleep_ms(20);
	}
	h_sleep_ms(300);
	text = h_read_file(log, NULL);
	if (h_alive(capture_pid) != 1 || (text != NULL && strstr(text, "ermission"))) {
		char *why = text != NULL ? strstr(text, "ermission") : NULL;

		h_stop(capture_pid, 2000);
		if (why != NULL) {
			while (why > text && why[-1] != '\n')
				why--;
			why[strcspn(why, "\n")] = '\0';
			cr_skip_test("cannot capture on lo: run as root, or give dumpcap CAP_NET_RAW and CAP_NET_ADMIN (%s)",
				     why);
		}
		cr_assert_fail("dumpcap failed:\n%s", text ? text : "");
	}
	free(text);
}

/* Stops the daemons, then the capture, by PID. */
static void
capture_stop(void)
{
	h_stop(P.gw, 5000);
	h_stop(P.relay, 5000);
	h_sleep_ms(300); /* the last segments reach the capture */
	cr_assert_eq(h_stop(capture_pid, 5000), 0, "dumpcap did not stop cleanly");
}

/* Splits s at sep into at most n fields, keeping empty ones. */
static int
split(char *s, char sep, char **out, int n)
{
	int i = 0;

	out[i++] = s;
	for (; *s != '\0' && i < n; s++) {
		if (*s == sep) {
			*s = '\0';
			out[i++] = s + 1;
		}
	}
	return i;
}

/* Installs the dissector as an operator would, in the personal Lua
 * plugin folder under home. */
static void
install_plugin(const char *home)
{
	static const char *const sub[] = { "/.local", "/.local/lib",
		"/.local/lib/wireshark", "/.local/lib/wireshark/plugins" };
	char path[700], *lua;

	for (size_t i = 0; i < sizeof(sub) / sizeof(sub[0]); i++) {
		snprintf(path, sizeof(path), "%s%s", home, sub[i]);
		cr_assert(mkdir(path, 0755) == 0 || errno == EEXIST, "mkdir %s", path);
	}
	snprintf(path, sizeof(path), "%s/contrib/wireshark/tlsplex.lua", h_source_dir());
	lua = h_read_file(path, NULL);
	cr_assert_not_null(lua, "cannot read %s", path);
	snprintf(path, sizeof(path), "%s%s/tlsplex.lua", home, sub[3]);
	cr_assert_eq(h_write_file(path, "%s", lua), 0);
	free(lua);
}

#define TSHARK_ARGS_MAX 80

/* tshark's output (malloc'd) for the capture, read with the dissector
 * and the options in opts (separated by spaces).  The dissector is
 * loaded with -X lua_script:, or with plugin set from the personal
 * plugin folder.  Fails the test when tshark fails or the script raised
 * a Lua error. */
static char *
tshark_text(const char *opts, int plugin)
{
	char lua[700], home[620], out[620], prog[600], optbuf[2048];
	const char *argv[TSHARK_ARGS_MAX + 16];
	char *o[TSHARK_ARGS_MAX], *text, *p;
	int argc = 0, rc, no;

	snprintf(prog, sizeof(prog), "%s", tshark_path());
	snprintf(lua, sizeof(lua), "lua_script:%s/contrib/wireshark/tlsplex.lua",
		 h_source_dir());
	/* Our own HOME: no personal plugin or preference of the machine's
	 * user (a tlsplex.lua installed there, say) enters the test. */
	snprintf(home, sizeof(home), "HOME=%s", P.dir);
	snprintf(out, sizeof(out), "%s/tshark.out", P.dir);
	cr_assert_lt(strlen(opts), sizeof(optbuf));
	snprintf(optbuf, sizeof(optbuf), "%s", opts);
	argv[argc++] = "/usr/bin/env";
	argv[argc++] = "-u";
	argv[argc++] = "XDG_CONFIG_HOME";
	argv[argc++] = home;
	argv[argc++] = prog;
	argv[argc++] = "-n";
	argv[argc++] = "-r";
	argv[argc++] = capture_file;
	if (plugin) {
		install_plugin(P.dir);
	} else {
		argv[argc++] = "-X";
		argv[argc++] = lua;
	}
	argv[argc++] = "-o";
	argv[argc++] = "tcp.relative_sequence_numbers:TRUE";
	argv[argc++] = "-o";
	argv[argc++] = "tcp.desegment_tcp_streams:TRUE";
	no = split(optbuf, ' ', o, TSHARK_ARGS_MAX);
	for (int i = 0; i < no; i++)
		if (o[i][0] != '\0')
			argv[argc++] = o[i];
	argv[argc] = NULL;
	rc = h_run(argv, out, 30000);
	text = h_read_file(out, NULL);
	cr_assert_eq(rc, 0, "tshark %s failed (%d):\n%.2000s", opts, rc, text);
	p = strstr(text, "Lua Error");
	cr_assert_null(p, "tshark %s: %.300s", opts, p);
	p = strstr(text, "Lua: Error");
	cr_assert_null(p, "tshark %s: %.300s", opts, p);
	return text;
}

/* Runs tshark over the capture with decode options opts and fills rows
 * with the tlsplex packets, one column per field of col_fields. */
static void
run_tshark_with(const char *opts, int plugin)
{
	char args[2048];
	char *line, *save;
	size_t n;

	n = (size_t)snprintf(args, sizeof(args),
			     "%s -Y tlsplex -T fields -E separator=| -E occurrence=a -E aggregator=,",
			     opts);
	for (int i = 0; i < NCOL; i++) {
		cr_assert_lt(n, sizeof(args));
		n += (size_t)snprintf(args + n, sizeof(args) - n, " -e %s", col_fields[i]);
	}
	cr_assert_lt(n, sizeof(args));
	tshark_out = tshark_text(args, plugin);
	for (line = strtok_r(tshark_out, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		/* Packet lines start with the frame number; tshark's own
		 * notices ("Running as user ...") do not. */
		if (!isdigit((unsigned char)line[0]))
			continue;
		cr_assert_lt(nrows, MAX_ROWS);
		cr_assert_eq(split(line, '|', rows[nrows].c, NCOL), NCOL,
			     "short tshark line: %s", line);
		nrows++;
	}
	cr_assert_gt(nrows, 0, "tshark found no tlsplex packet in the capture");
}

static void
run_tshark(const char *opts)
{
	run_tshark_with(opts, 0);
}

static long long
num(const struct row *r, enum col c)
{
	cr_assert_neq(r->c[c][0], '\0', "frame %s has no %s", r->c[C_FRAME],
		      col_fields[c]);
	return strtoll(r->c[c], NULL, 10);
}

static int
from_relay(const struct row *r)
{
	return num(r, C_SRCPORT) == link_port;
}

/* Whether the comma list s holds the element v. */
static int
list_has(const char *s, const char *v)
{
	size_t n = strlen(v);

	while (*s != '\0') {
		if (strncmp(s, v, n) == 0 && (s[n] == ',' || s[n] == '\0'))
			return 1;
		s = strchr(s, ',');
		if (s == NULL)
			break;
		s++;
	}
	return 0;
}

/* The rows whose column c lists v, in one direction; the first in *first. */
static int
count_rows(enum col c, const char *v, int relay_side, const struct row **first)
{
	int n = 0;

	for (int i = 0; i < nrows; i++) {
		if (from_relay(&rows[i]) != relay_side || !list_has(rows[i].c[c], v))
			continue;
		if (n++ == 0 && first != NULL)
			*first = &rows[i];
	}
	return n;
}

static int
count_nonempty(enum col c)
{
	int n = 0;

	for (int i = 0; i < nrows; i++)
		n += rows[i].c[c][0] != '\0';
	return n;
}

/* The first row of one direction that hands data on (TLS or mux). */
static const struct row *
first_handoff(int relay_side)
{
	for (int i = 0; i < nrows; i++)
		if (from_relay(&rows[i]) == relay_side &&
		    rows[i].c[C_STREAM_OFF][0] != '\0')
			return &rows[i];
	cr_assert_fail("no data after the negotiation message from the %s",
		       relay_side ? "relay" : "gateway");
	return NULL;
}

/* The byte at stream offset off lies in the TCP segment of r. */
static void
assert_in_segment(const struct row *r, long long off, const char *what)
{
	long long start = num(r, C_SEQ) - 1;

	cr_assert(start <= off && off < start + num(r, C_LEN),
		  "%s: offset %lld is not in frame %s (bytes %lld..%lld)", what,
		  off, r->c[C_FRAME], start, start + num(r, C_LEN));
}

/* --- a tolerant reader of the hook's JSON Lines ------------------------ */

/* Where the value of "key" starts in line (after the colon and any
 * blanks), or NULL. */
static const char *
ev_value(const char *line, const char *key)
{
	char k[64];
	const char *p;

	snprintf(k, sizeof(k), "\"%s\"", key);
	for (p = strstr(line, k); p != NULL; p = strstr(p + 1, k)) {
		const char *v = p + strlen(k);

		while (*v == ' ' || *v == '\t')
			v++;
		if (*v != ':')
			continue;
		v++;
		while (*v == ' ' || *v == '\t')
			v++;
		return v;
	}
	return NULL;
}

/* Copies the lines of file whose "event" is event into out (at most
 * max, malloc'd); returns how many there were. */
static int
ev_lines(const char *file, const char *event, char **out, int max)
{
	char *buf = h_read_file(file, NULL), *line, *save;
	int n = 0;
	size_t el = strlen(event);

	if (buf == NULL)
		return 0;
	for (line = strtok_r(buf, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		const char *v = ev_value(line, "event");

		if (v == NULL || v[0] != '"' || strncmp(v + 1, event, el) != 0 ||
		    v[1 + el] != '"')
			continue;
		if (n < max)
			out[n] = strdup(line);
		n++;
	}
	free(buf);
	return n;
}

static long long
ev_num(const char *line, const char *key)
{
	const char *v = ev_value(line, key);

	cr_assert_not_null(v, "no %s in %s", key, line);
	if (*v == '"')
		v++;
	cr_assert(isdigit((unsigned char)*v), "%s is not a number in %s", key, line);
	return strtoll(v, NULL, 10);
}

/* The tls_offset_out and tls_offset_in of the one handshake_pending in
 * file. */
static void
pending_offsets(const char *file, long long *out, long long *in)
{
	char *line[4] = { NULL };
	int n = ev_lines(file, "handshake_pending", line, 4);

	cr_assert_eq(n, 1, "%d handshake_pending events in %s", n, file);
	*out = ev_num(line[0], "tls_offset_out");
	*in = ev_num(line[0], "tls_offset_in");
	for (int i = 0; i < 4; i++)
		free(line[i]);
}

TestSuite(wire, .init = wire_init, .fini = wire_fini, .timeout = 60);

Test(wire, tls_link_handshake_at_the_hook_offsets)
{
	char err[2048], opts[64];
	long long gw_out, gw_in, relay_out, relay_in;
	const struct row *offer = NULL, *decision = NULL, *ch = NULL, *sh = NULL;

	start_echo("echo");
	capture_start();
	start_pair(TLS_RELAY, TLS_GW);
	wait_up();
	cr_assert_eq(h_echo_clients(P.svc_port, 4, 256 * 1024, 3, 20000, err,
				    sizeof(err)), 0, "echo clients failed:\n%s", err);
	capture_stop();
	pending_offsets(P.gw_hooks, &gw_out, &gw_in);
	pending_offsets(P.relay_hooks, &relay_out, &relay_in);
	cr_assert_eq(gw_out, relay_in);
	cr_assert_eq(gw_in, relay_out);

	/* Decode As by the port preference. */
	snprintf(opts, sizeof(opts), "-o tlsplex.port:%d", P.relay_port);
	run_tshark(opts);

	cr_assert_eq(count_rows(C_TYPE, "1", 0, &offer), 1, "one OFFER from the gateway");
	cr_assert_eq(count_rows(C_TYPE, "2", 1, &decision), 1, "one DECISION from the relay");
	cr_assert_eq(count_rows(C_TYPE, "1", 1, NULL) + count_rows(C_TYPE, "2", 0, NULL) +
		     count_rows(C_TYPE, "3", 0, NULL) + count_rows(C_TYPE, "3", 1, NULL), 0);
	cr_assert_str_eq(offer->c[C_NODE], "gw1");
	cr_assert_eq(num(offer, C_MSG_LEN), gw_out);
	cr_assert_str_eq(decision->c[C_NODE], "relay");
	cr_assert_eq(num(decision, C_OUTCOME), 1, "outcome TLS");
	cr_assert_eq(num(decision, C_REASON), 1);
	cr_assert_str_eq(decision->c[C_REASON_NAME], "TLS_AGREED");
	cr_assert_eq(num(decision, C_MSG_LEN), relay_out);
	cr_assert_eq(num(decision, C_TLS_OFF), relay_out);
	cr_assert_eq(num(decision, C_PEER_TLS_OFF), gw_out);

	/* The ClientHello starts where the gateway said TLS starts, the
	 * ServerHello where the relay said; both are found by Wireshark's
	 * own TLS dissector. */
	cr_assert_eq(count_rows(C_HS_TYPE, "1", 0, &ch), 1, "one ClientHello, from the gateway");
	cr_assert_eq(count_rows(C_HS_TYPE, "1", 1, NULL), 0);
	cr_assert_eq(count_rows(C_HS_TYPE, "2", 1, &sh), 1, "one ServerHello, from the relay");
	cr_assert_eq(count_rows(C_HS_TYPE, "2", 0, NULL), 0);
	cr_assert_eq(ch, first_handoff(0), "the ClientHello is the gateway's first TLS");
	cr_assert_eq(sh, first_handoff(1), "the ServerHello is the relay's first TLS");
	cr_assert_eq(num(ch, C_STREAM_OFF), gw_out);
	cr_assert_eq(num(sh, C_STREAM_OFF), relay_out);
	assert_in_segment(ch, gw_out, "ClientHello");
	assert_in_segment(sh, relay_out, "ServerHello");
	/* Messages this small go out in a segment of their own, so the
	 * ClientHello's record opens its segment. */
	cr_assert_eq(num(ch, C_SEQ) - 1, gw_out);

	/* Everything after is TLS 1.3 application data records (their
	 * outer type), never mux frames. */
	cr_assert_gt(count_rows(C_TLS_OPAQUE, "23", 0, NULL), 2);
	cr_assert_gt(count_rows(C_TLS_OPAQUE, "23", 1, NULL), 2);
	cr_assert_eq(count_nonempty(C_FRAME_TYPE), 0, "mux frames decoded on a TLS link");
	cr_assert_eq(count_nonempty(C_MUX_OFF), 0);
}

Test(wire, plaintext_link_mux_after_the_messages)
{
	char err[2048];
	const struct row *offer = NULL, *decision = NULL, *g, *r;
	char *line[2] = { NULL };
	long long offer_len, decision_len;

	start_echo("echo");
	capture_start();
	start_pair("tls = off\n", "tls = off\n");
	wait_up();
	cr_assert_eq(h_echo_clients(P.svc_port, 4, 64 * 1024, 4, 20000, err,
				    sizeof(err)), 0, "echo clients failed:\n%s", err);
	capture_stop();
	cr_assert_eq(ev_lines(P.gw_hooks, "plaintext_agreed", line, 1), 1);
	free(line[0]);
	cr_assert_eq(ev_lines(P.relay_hooks, "plaintext_agreed", line, 1), 1);
	free(line[0]);
	cr_assert_eq(ev_lines(P.gw_hooks, "handshake_pending", line, 0), 0);

	/* Found by the magic alone: no port preference. */
	run_tshark("-o tlsplex.port:0");

	cr_assert_eq(count_rows(C_TYPE, "1", 0, &offer), 1);
	cr_assert_eq(count_rows(C_TYPE, "2", 1, &decision), 1);
	cr_assert_str_eq(offer->c[C_NODE], "gw1");
	cr_assert_str_eq(decision->c[C_NODE], "relay");
	cr_assert_eq(num(decision, C_OUTCOME), 0, "outcome plaintext");
	cr_assert_eq(num(decision, C_REASON), 3);
	cr_assert_str_eq(decision->c[C_REASON_NAME], "DIALER_OFF");
	offer_len = num(offer, C_MSG_LEN);
	decision_len = num(decision, C_MSG_LEN);
	cr_assert_eq(num(decision, C_MUX_OFF), decision_len);
	cr_assert_eq(num(decision, C_PEER_MUX_OFF), offer_len);
	/* The OFFER is alone in the gateway's first segment. */
	cr_assert_eq(num(offer, C_SEQ) - 1, 0);
	cr_assert_eq(num(offer, C_LEN), offer_len);

	/* The mux starts with BIND right after each message. */
	g = first_handoff(0);
	r = first_handoff(1);
	cr_assert_eq(num(g, C_STREAM_OFF), offer_len);
	cr_assert_eq(num(r, C_STREAM_OFF), decision_len);
	assert_in_segment(g, offer_len, "gateway's BIND");
	assert_in_segment(r, decision_len, "relay's BIND");
	cr_assert_eq(strncmp(g->c[C_FRAME_TYPE], "6", 1), 0, "gateway's first frame: %s",
		     g->c[C_FRAME_TYPE]);
	cr_assert(g->c[C_FRAME_TYPE][1] == ',' || g->c[C_FRAME_TYPE][1] == '\0');
	cr_assert_eq(strncmp(r->c[C_FRAME_TYPE], "6", 1), 0, "relay's first frame: %s",
		     r->c[C_FRAME_TYPE]);
	cr_assert(r->c[C_FRAME_TYPE][1] == ',' || r->c[C_FRAME_TYPE][1] == '\0');
	cr_assert_eq(count_rows(C_FRAME_TYPE, "6", 0, NULL), 1);
	cr_assert_eq(count_rows(C_FRAME_TYPE, "6", 1, NULL), 1);
	/* The streams' data crosses both ways as DATA frames, and no TLS. */
	cr_assert_gt(count_rows(C_FRAME_TYPE, "0", 0, NULL), 0);
	cr_assert_gt(count_rows(C_FRAME_TYPE, "0", 1, NULL), 0);
	cr_assert_gt(count_rows(C_FRAME_TYPE, "1", 0, NULL), 0, "OPEN from the gateway");
	cr_assert_eq(count_nonempty(C_TLS_CONTENT) + count_nonempty(C_TLS_OPAQUE), 0,
		     "TLS records on a plaintext link");
	cr_assert_eq(count_nonempty(C_HS_TYPE), 0);
	cr_assert_eq(count_nonempty(C_TLS_OFF), 0);
}

Test(wire, refused_link_shows_the_reason)
{
	const struct row *refuse = NULL;
	char opts[64];
	int n;

	capture_start();
	start_pair(TLS_RELAY, "tls = off\n");
	cr_assert_eq(h_wait_file_contains(P.gw_log, "the relay refused the link", 10000),
		     0, "gateway log:\n%s", h_read_file(P.gw_log, NULL));
	capture_stop();

	/* Installed in ~/.local/lib/wireshark/plugins, and Decode As on
	 * the command line. */
	snprintf(opts, sizeof(opts), "-o tlsplex.port:0 -d tcp.port==%d,tlsplex",
		 P.relay_port);
	run_tshark_with(opts, 1);

	n = count_rows(C_TYPE, "3", 1, &refuse);
	cr_assert_geq(n, 1, "no REFUSE from the relay");
	cr_assert_geq(count_rows(C_TYPE, "1", 0, NULL), n, "an OFFER before each REFUSE");
	cr_assert_eq(count_rows(C_TYPE, "2", 1, NULL), 0, "no DECISION");
	for (int i = 0; i < nrows; i++) {
		if (strcmp(rows[i].c[C_TYPE], "3") != 0)
			continue;
		cr_assert_str_eq(rows[i].c[C_NODE], "relay");
		cr_assert_eq(num(&rows[i], C_OUTCOME), 2, "outcome REFUSE");
		cr_assert_eq(num(&rows[i], C_REASON), 101);
		cr_assert_str_eq(rows[i].c[C_REASON_NAME], "REQUIRED_BY_ACCEPTOR");
		cr_assert_str_eq(rows[i].c[C_REASON_TEXT], neg_reason_str(101));
		cr_assert_not_null(strstr(rows[i].c[C_TEXT], "requires TLS"), "text: %s",
				   rows[i].c[C_TEXT]);
	}
	cr_assert_eq(count_nonempty(C_STREAM_OFF), 0, "nothing follows a REFUSE");
	cr_assert_eq(count_nonempty(C_TLS_CONTENT) + count_nonempty(C_TLS_OPAQUE), 0);
}

/* --- the same links cut into small segments ----------------------------
 *
 * Loopback carries a link in few, large segments.  To see the dissector
 * reassemble what a real network cuts up, the test records the link with
 * the tap and writes it as a capture of its own: every segment at most
 * SMALL_SEG bytes, so that each negotiation message spans several
 * segments and TLS records and mux frames start inside segments and span
 * many.  The relay's side is port 7400, the preference's default. */

#define SMALL_SEG 37
#define SYN_PORT_GW 40000
#define DEFAULT_LINK_PORT 7400

static void
put16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void
put32(uint8_t *p, uint32_t v)
{
	put16(p, v >> 16);
	put16(p + 2, v & 0xffff);
}

struct pcap_out {
	FILE *f;
	uint32_t usec;
	uint32_t isn[2];  /* per direction: 0 gateway->relay, 1 back */
	unsigned gw_port;
	size_t sent[2];
};

/* Writes one IPv4/TCP packet (LINKTYPE_RAW) from side dir. */
static void
pcap_packet(struct pcap_out *o, int dir, uint8_t flags, const uint8_t *data,
	    size_t n)
{
	uint8_t pkt[40 + SMALL_SEG];
	uint32_t rec[4], sum = 0;
	int syn = (flags & 0x02) != 0;

	cr_assert_leq(n, (size_t)SMALL_SEG);
	memset(pkt, 0, 40);
	pkt[0] = 0x45;
	put16(pkt + 2, (unsigned)(40 + n));
	put16(pkt + 6, 0x4000);
	pkt[8] = 64;
	pkt[9] = 6;
	put32(pkt + 12, 0x7f000001);
	put32(pkt + 16, 0x7f000001);
	for (int i = 0; i < 20; i += 2)
		sum += (uint32_t)pkt[i] << 8 | pkt[i + 1];
	while (sum > 0xffff)
		sum = (sum & 0xffff) + (sum >> 16);
	put16(pkt + 10, ~sum & 0xffff);
	put16(pkt + 20, dir == 0 ? o->gw_port : DEFAULT_LINK_PORT);
	put16(pkt + 22, dir == 0 ? DEFAULT_LINK_PORT : o->gw_port);
	put32(pkt + 24, o->isn[dir] + (syn ? 0 : 1) + (uint32_t)o->sent[dir]);
	put32(pkt + 28, (flags & 0x10) ? o->isn[!dir] + 1 + (uint32_t)o->sent[!dir] : 0);
	pkt[32] = 5 << 4;
	pkt[33] = flags;
	put16(pkt + 34, 65535);
	if (n > 0)
		memcpy(pkt + 40, data, n);
	o->usec += 100;
	rec[0] = 1000000000u + o->usec / 1000000;
	rec[1] = o->usec % 1000000;
	rec[2] = rec[3] = (uint32_t)(40 + n);
	cr_assert_eq(fwrite(rec, sizeof(rec), 1, o->f), 1);
	cr_assert_eq(fwrite(pkt, 40 + n, 1, o->f), 1);
	o->sent[dir] += n;
}

/* Sends bytes [from, to) of direction dir in segments of SMALL_SEG. */
static void
pcap_bytes(struct pcap_out *o, int dir, const uint8_t *p, size_t to)
{
	while (o->sent[dir] < to) {
		size_t n = to - o->sent[dir];

		pcap_packet(o, dir, 0x18, p + o->sent[dir], n < SMALL_SEG ? n : SMALL_SEG);
	}
}

/* The link recorded by the tap, as a capture in small segments: the
 * OFFER, the DECISION (and, when after is 0, what the relay sent with
 * it), the gateway's first after_gw bytes after its OFFER, then both
 * directions in turn. */
static FILE *
pcap_create(const char *name)
{
	uint32_t hdr[6] = { 0xa1b2c3d4, 0x00040002, 0, 0, 262144, 101 };
	FILE *f;

	snprintf(capture_file, sizeof(capture_file), "%s/%s", P.dir, name);
	link_port = DEFAULT_LINK_PORT;
	f = fopen(capture_file, "wb");
	cr_assert_not_null(f);
	cr_assert_eq(fwrite(hdr, sizeof(hdr), 1, f), 1);
	return f;
}

/* One link into the capture f: the handshake, the OFFER (or whatever
 * the gateway sent first, offer_len bytes), the DECISION's first
 * decision_cut bytes, the gateway's next gw_first bytes, then both
 * directions in turn.  Returns the time reached. */
static uint32_t
pcap_link(FILE *f, uint32_t usec, unsigned gw_port, const uint8_t *c2s,
	  size_t c2s_len, size_t offer_len, const uint8_t *s2c, size_t s2c_len,
	  size_t decision_cut, size_t gw_first)
{
	struct pcap_out o = { .f = f, .usec = usec, .isn = { 1000, 50000 },
			      .gw_port = gw_port };

	pcap_packet(&o, 0, 0x02, NULL, 0);
	pcap_packet(&o, 1, 0x12, NULL, 0);
	pcap_packet(&o, 0, 0x10, NULL, 0);
	pcap_bytes(&o, 0, c2s, offer_len < c2s_len ? offer_len : c2s_len);
	pcap_bytes(&o, 1, s2c, decision_cut < s2c_len ? decision_cut : s2c_len);
	if (offer_len + gw_first < c2s_len)
		pcap_bytes(&o, 0, c2s, offer_len + gw_first);
	while (o.sent[0] < c2s_len || o.sent[1] < s2c_len) {
		pcap_bytes(&o, 0, c2s, o.sent[0] + SMALL_SEG < c2s_len ?
			   o.sent[0] + SMALL_SEG : c2s_len);
		pcap_bytes(&o, 1, s2c, o.sent[1] + SMALL_SEG < s2c_len ?
			   o.sent[1] + SMALL_SEG : s2c_len);
	}
	return o.usec;
}

static void
write_small_capture(const uint8_t *c2s, size_t c2s_len, size_t offer_len,
		    const uint8_t *s2c, size_t s2c_len, size_t decision_cut,
		    size_t gw_first)
{
	FILE *f = pcap_create("small.pcap");

	pcap_link(f, 0, SYN_PORT_GW, c2s, c2s_len, offer_len, s2c, s2c_len,
		  decision_cut, gw_first);
	cr_assert_eq(fclose(f), 0);
}

/* The number of TLS records (tls) or mux frames from off to the end; the
 * last must end exactly at len. */
static int
count_units(const uint8_t *p, size_t len, size_t off, int tls)
{
	int n = 0;

	while (off < len) {
		cr_assert_leq(off + (tls ? 5 : 9), len);
		off += tls ? 5 + ((size_t)p[off + 3] << 8 | p[off + 4])
			   : 9 + ((size_t)p[off] << 16 | (size_t)p[off + 1] << 8 | p[off + 2]);
		n++;
	}
	cr_assert_eq(off, len, "the recorded link ends inside a record or frame");
	return n;
}

/* Records and frames the dissector found in one direction. */
static int
count_found(int relay_side, int tls)
{
	int n = 0;

	for (int i = 0; i < nrows; i++) {
		const char *cols[2] = { rows[i].c[C_TLS_CONTENT], rows[i].c[C_TLS_OPAQUE] };

		if (from_relay(&rows[i]) != relay_side)
			continue;
		if (!tls)
			cols[0] = rows[i].c[C_FRAME_TYPE], cols[1] = "";
		for (int k = 0; k < 2; k++)
			for (const char *s = cols[k]; *s != '\0'; s++)
				n += s == cols[k] || *s == ',';
	}
	return n;
}

/* Occurrences of needle in s. */
static int
count_str(const char *s, const char *needle)
{
	int n = 0;

	for (const char *p = strstr(s, needle); p != NULL; p = strstr(p + 1, needle))
		n++;
	return n;
}

static void
two_pass_summary(int tls)
{
	char *text = tshark_text("-2", 0);

	cr_assert_null(strstr(text, "Malformed"), "%s", text);
	cr_assert_null(strstr(text, "Ignored Unknown Record"), "%s", text);
	cr_assert_null(strstr(text, "Continuation Data"), "%s", text);
	cr_assert_eq(count_str(text, "OFFER node=gw1"), 1, "%s", text);
	cr_assert_eq(count_str(text, "DECISION node=relay"), 1, "%s", text);
	if (tls) {
		cr_assert_eq(count_str(text, "Client Hello"), 1, "%s", text);
		cr_assert_eq(count_str(text, "Server Hello"), 1, "%s", text);
	} else {
		cr_assert_eq(count_str(text, "BIND"), 2, "%s", text);
	}
	free(text);
}

/* Runs a link through the tap, stops it, and checks what the dissector
 * makes of it in small segments. */
static void
small_segments(int tls)
{
	char err[2048];
	const uint8_t *c2s, *s2c;
	size_t c2s_len, s2c_len, offer_len, decision_len;
	const struct row *offer = NULL, *decision = NULL, *g, *r;

	start_echo("echo");
	start_tap();
	if (tls)
		start_pair(TLS_RELAY, TLS_GW);
	else
		start_pair("tls = off\n", "tls = off\n");
	wait_up();
	cr_assert_eq(h_echo_clients(P.svc_port, 2, 8 * 1024, 5, 20000, err,
				    sizeof(err)), 0, "echo clients failed:\n%s", err);
	h_stop(P.gw, 5000);
	h_stop(P.relay, 5000);
	cr_assert_eq(tap_conn_count(P.tap), 1);
	c2s = tap_bytes(P.tap, 0, TAP_C2S, &c2s_len);
	s2c = tap_bytes(P.tap, 0, TAP_S2C, &s2c_len);
	cr_assert_geq(c2s_len, 14u);
	cr_assert_geq(s2c_len, 14u);
	offer_len = 14 + ((size_t)c2s[12] << 8 | c2s[13]);
	decision_len = 14 + ((size_t)s2c[12] << 8 | s2c[13]);
	if (tls) {
		long long out, in;

		pending_offsets(P.gw_hooks, &out, &in);
		cr_assert_eq((size_t)out, offer_len);
		cr_assert_eq((size_t)in, decision_len);
		/* The relay answers the ClientHello only once it is whole. */
		write_small_capture(c2s, c2s_len, offer_len, s2c, s2c_len, decision_len,
				    5 + ((size_t)c2s[offer_len + 3] << 8 | c2s[offer_len + 4]));
	} else {
		/* The relay sends its BIND with the DECISION: the segment that
		 * ends the DECISION carries the start of the mux. */
		write_small_capture(c2s, c2s_len, offer_len, s2c, s2c_len,
				    decision_len + 3, 0);
	}

	run_tshark(""); /* the default port preference */

	cr_assert_eq(count_rows(C_TYPE, "1", 0, &offer), 1);
	cr_assert_eq(count_rows(C_TYPE, "2", 1, &decision), 1);
	cr_assert_str_eq(offer->c[C_NODE], "gw1");
	cr_assert_str_eq(decision->c[C_NODE], "relay");
	cr_assert_eq(num(offer, C_MSG_LEN), (long long)offer_len);
	cr_assert_eq(num(decision, C_MSG_LEN), (long long)decision_len);
	cr_assert_eq(num(decision, C_OUTCOME), tls ? 1 : 0);
	cr_assert_eq(num(decision, tls ? C_TLS_OFF : C_MUX_OFF), (long long)decision_len);
	cr_assert_eq(num(decision, tls ? C_PEER_TLS_OFF : C_PEER_MUX_OFF),
		     (long long)offer_len);
	g = first_handoff(0);
	r = first_handoff(1);
	cr_assert_eq(num(g, C_STREAM_OFF), (long long)offer_len);
	cr_assert_eq(num(r, C_STREAM_OFF), (long long)decision_len);
	if (tls) {
		cr_assert(list_has(g->c[C_HS_TYPE], "1"), "frame %s: %s", g->c[C_FRAME],
			  g->c[C_HS_TYPE]);
		cr_assert(list_has(r->c[C_HS_TYPE], "2"), "frame %s: %s", r->c[C_FRAME],
			  r->c[C_HS_TYPE]);
		cr_assert_eq(count_rows(C_HS_TYPE, "1", 0, NULL), 1);
		cr_assert_eq(count_rows(C_HS_TYPE, "2", 1, NULL), 1);
		cr_assert_eq(count_nonempty(C_FRAME_TYPE), 0);
	} else {
		cr_assert_eq(strncmp(g->c[C_FRAME_TYPE], "6", 1), 0);
		cr_assert_eq(strncmp(r->c[C_FRAME_TYPE], "6", 1), 0);
		cr_assert_eq(count_nonempty(C_TLS_CONTENT) + count_nonempty(C_TLS_OPAQUE), 0);
	}
	/* Two passes and no protocol tree in the first (tshark -2 without
	 * a filter): the summary lines say the same. */
	two_pass_summary(tls);

	/* Every record or frame on the wire, each found once, whole. */
	cr_assert_eq(count_found(0, tls), count_units(c2s, c2s_len, offer_len, tls),
		     "gateway->relay");
	cr_assert_eq(count_found(1, tls), count_units(s2c, s2c_len, decision_len, tls),
		     "relay->gateway");
}

Test(wire, tls_link_in_small_segments)
{
	small_segments(1);
}

Test(wire, plaintext_link_in_small_segments)
{
	small_segments(0);
}

/* --- hostile bytes ---------------------------------------------------
 *
 * The negotiation fuzz corpus, and deterministic mutations of it, each
 * sent as a link's first bytes (against a real DECISION, followed by
 * random bytes both ways), each from a port of its own: the dissector
 * raises no Lua error, and decodes every DECISION. */

#define MUTANTS 8

static size_t
corpus_file(const char *name, uint8_t *buf, size_t cap)
{
	char path[700], *text;
	size_t len;

	snprintf(path, sizeof(path), "%s/fuzz/corpus/neg/%s", h_source_dir(), name);
	text = h_read_file(path, &len);
	cr_assert_not_null(text, "cannot read %s", path);
	cr_assert_leq(len, cap);
	memcpy(buf, text, len);
	free(text);
	return len;
}

Test(wire, hostile_bytes_raise_no_lua_error)
{
	static const char *const names[] = {
		"offer", "offer-flow", "offer-off-v1-7", "offer-trailing",
		"offer-unknown-critical", "offer-unknown-field", "decision-plain",
		"decision-tls", "refuse", "refuse-bare", "http-get",
		"tls-clienthello",
	};
	uint8_t dec_plain[4096], dec_tls[4096], c2s[8192], s2c[8192];
	size_t nplain, ntls;
	uint64_t seed = 9;
	uint32_t usec = 0;
	int magic_links = 0, links = 0;
	FILE *f;
	char *text;

	nplain = corpus_file("decision-plain", dec_plain, sizeof(dec_plain));
	ntls = corpus_file("decision-tls", dec_tls, sizeof(dec_tls));
	f = pcap_create("hostile.pcap");
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		uint8_t orig[4096];
		size_t n = corpus_file(names[i], orig, sizeof(orig));

		for (int m = 0; m <= MUTANTS; m++) {
			const uint8_t *dec = m % 2 ? dec_tls : dec_plain;
			size_t dn = m % 2 ? ntls : nplain, cl, sl;
			uint64_t r = h_splitmix64(&seed);

			memcpy(c2s, orig, n);
			/* m = 0: as is; then bytes changed, the length cut or
			 * the body length rewritten. */
			for (int k = 0; m > 0 && k < 1 + (int)(r % 4); k++)
				c2s[h_splitmix64(&seed) % n] = (uint8_t)h_splitmix64(&seed);
			cl = m > 0 && r % 5 == 0 ? h_splitmix64(&seed) % (n + 1) : n;
			if (m > 0 && r % 7 == 0 && n >= 14)
				c2s[12] = (uint8_t)h_splitmix64(&seed);
			sl = (size_t)(h_splitmix64(&seed) % 200);
			h_payload_fill(c2s + cl, sl, seed, 1);
			memcpy(s2c, dec, dn);
			h_payload_fill(s2c + dn, sl, seed, 2);
			magic_links += cl >= 8 && memcmp(c2s, "\x89TPX\r\n\x1a\n", 8) == 0;
			usec = pcap_link(f, usec, (unsigned)(SYN_PORT_GW + links), c2s,
					 cl + sl, cl, s2c, dn + sl, dn, 0);
			links++;
		}
	}
	cr_assert_eq(fclose(f), 0);
	cr_assert_gt(magic_links, 40);

	/* Every packet's tree, in one pass and in two: no Lua error. */
	text = tshark_text("-Y _ws.lua.error", 0);
	cr_assert_eq(count_str(text, "tlsplex"), 0, "%.2000s", text);
	free(text);
	text = tshark_text("-2 -Y _ws.lua.error", 0);
	cr_assert_eq(count_str(text, "tlsplex"), 0, "%.2000s", text);
	free(text);
	run_tshark("");
	cr_assert_eq(count_rows(C_TYPE, "2", 1, NULL), links,
		     "a DECISION was not decoded");
	cr_assert_geq(count_rows(C_TYPE, "1", 0, NULL), magic_links / 2);
}

/* --- the dissector's tables against the C enums ----------------------- */

#define MAX_CODES 64
#define MAX_NAME 256

struct codes {
	int n;
	long code[MAX_CODES];
	char name[MAX_CODES][MAX_NAME];
};

/* The members PREFIX<NAME> = <number> of `enum name` in header. */
static void
c_enum(const char *header, const char *name, const char *prefix, struct codes *out)
{
	char path[600], head[80], *text, *p, *end;
	size_t pl = strlen(prefix);

	snprintf(path, sizeof(path), "%s/%s", h_source_dir(), header);
	text = h_read_file(path, NULL);
	cr_assert_not_null(text, "cannot read %s", path);
	snprintf(head, sizeof(head), "enum %s {", name);
	p = strstr(text, head);
	cr_assert_not_null(p, "no %s in %s", head, header);
	end = strstr(p, "};");
	cr_assert_not_null(end);
	*end = '\0';
	out->n = 0;
	for (p = strstr(p, prefix); p != NULL; p = strstr(p + pl, prefix)) {
		size_t k = 0;
		char *q = p + pl;

		if (p[-1] != '\t' && p[-1] != ' ')
			continue;
		cr_assert_lt(out->n, MAX_CODES);
		while ((isalnum((unsigned char)q[k]) || q[k] == '_') && k < MAX_NAME - 1)
			k++;
		memcpy(out->name[out->n], q, k);
		out->name[out->n][k] = '\0';
		q += k;
		while (*q == ' ')
			q++;
		cr_assert_eq(*q, '=', "%s%s has no explicit value", prefix, out->name[out->n]);
		out->code[out->n++] = strtol(q + 1, NULL, 0);
	}
	free(text);
	cr_assert_gt(out->n, 2, "found too few members of enum %s", name);
}

/* The entries [code] = "string" of `local table = {` in the dissector,
 * with the string's escapes undone. */
static void
lua_table(const char *table, struct codes *out)
{
	char path[600], head[80], *text, *p;

	snprintf(path, sizeof(path), "%s/contrib/wireshark/tlsplex.lua", h_source_dir());
	text = h_read_file(path, NULL);
	cr_assert_not_null(text, "cannot read %s", path);
	snprintf(head, sizeof(head), "local %s = {", table);
	p = strstr(text, head);
	cr_assert_not_null(p, "no %s in tlsplex.lua", head);
	p += strlen(head);
	out->n = 0;
	for (;;) {
		size_t k = 0;

		p += strspn(p, " \t\r\n,");
		if (*p == '}')
			break;
		cr_assert_eq(*p, '[', "tlsplex.lua %s: unexpected %.20s", table, p);
		cr_assert_lt(out->n, MAX_CODES);
		out->code[out->n] = strtol(p + 1, &p, 0);
		p = strchr(p, '"');
		cr_assert_not_null(p, "bad entry in %s", table);
		for (p++; *p != '"'; p++) {
			cr_assert_neq(*p, '\0', "unterminated string in %s", table);
			if (*p == '\\')
				p++;
			cr_assert_lt(k, MAX_NAME - 1);
			out->name[out->n][k++] = *p;
		}
		out->name[out->n++][k] = '\0';
		p++;
	}
	free(text);
}

static void
assert_same(const char *header, const char *enum_name, const char *prefix,
	    const char *table)
{
	struct codes c, l;

	c_enum(header, enum_name, prefix, &c);
	lua_table(table, &l);
	for (int i = 0; i < c.n; i++) {
		int j;

		for (j = 0; j < l.n && l.code[j] != c.code[i]; j++)
			;
		cr_assert_lt(j, l.n, "%s%s = %ld (%s) is missing from the table %s in contrib/wireshark/tlsplex.lua",
			     prefix, c.name[i], c.code[i], header, table);
		cr_assert_str_eq(l.name[j], c.name[i], "tlsplex.lua %s[%ld]", table, c.code[i]);
	}
	cr_assert_eq(l.n, c.n, "tlsplex.lua's %s has %d entries, enum %s %d",
		     table, l.n, enum_name, c.n);
}

Test(wire_tables, dissector_says_what_neg_reason_str_says)
{
	struct codes c, l;

	c_enum("proto/neg.h", "neg_reason", "NEG_R_", &c);
	lua_table("reason_texts", &l);
	cr_assert_eq(l.n, c.n, "tlsplex.lua's reason_texts has %d entries, enum neg_reason %d",
		     l.n, c.n);
	for (int i = 0; i < c.n; i++) {
		int j;

		for (j = 0; j < l.n && l.code[j] != c.code[i]; j++)
			;
		cr_assert_lt(j, l.n, "NEG_R_%s (%ld) has no text in tlsplex.lua", c.name[i],
			     c.code[i]);
		cr_assert_str_eq(l.name[j], neg_reason_str((uint16_t)c.code[i]),
				 "tlsplex.lua reason_texts[%ld]", c.code[i]);
	}
}

Test(wire_tables, dissector_knows_every_code)
{
	assert_same("proto/neg.h", "neg_reason", "NEG_R_", "reasons");
	assert_same("proto/neg.h", "neg_type", "NEG_", "msg_types");
	assert_same("proto/neg.h", "neg_field", "NEG_F_", "field_names");
	assert_same("proto/frame.h", "frame_type", "FRAME_", "frame_types");
	assert_same("proto/frame.h", "mux_code", "MUX_C_", "mux_codes");
}
