/*
 * TLS first (docs/PROTOCOL.md, "TLS first"): a gateway that starts TLS at
 * once and negotiates inside it, against a relay that tells such a link
 * from the first byte.  Real daemons on loopback, with the tap recording
 * both directions of the link.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "neg.h"
#include "pair.h"

static const uint8_t magic[8] = { 0x89, 'T', 'P', 'X', '\r', '\n', 0x1a, '\n' };

/* A node name long enough that a window of it in ciphertext would not be
 * chance; its certificate is gw1's (identity binds it). */
#define LONG_NODE "gateway-tls-first-node-0042"
#define RELAY_FIRST TLS_RELAY "tls_first = allow\n"
#define GW_FIRST TLS_GW "tls_first = yes\n"

/* Every byte of the capture parses as TLS records, from byte 0. */
static void
assert_all_tls(const uint8_t *p, size_t len, const char *what)
{
	size_t off = 0, records = 0;

	cr_assert_gt(len, 5, "%s: only %zu bytes", what, len);
	while (off < len) {
		size_t rl;

		cr_assert_leq(off + 5, len, "%s: truncated TLS record header "
			      "at %zu", what, off);
		cr_assert(p[off] >= 20 && p[off] <= 23, "%s: byte %zu is not a "
			  "TLS record type (0x%02x)", what, off, p[off]);
		cr_assert(p[off + 1] == 3 && p[off + 2] >= 1 && p[off + 2] <= 4,
			  "%s: bad TLS record version at %zu", what, off);
		rl = (size_t)p[off + 3] << 8 | p[off + 4];
		cr_assert_leq(rl, 16384 + 256, "%s: oversized record at %zu",
			      what, off);
		off += 5 + rl;
		records++;
	}
	cr_assert_eq(off, len, "%s: last TLS record is cut short", what);
	cr_assert_gt(records, 2);
}

/* No 6-byte window of s appears in the capture. */
static void
assert_no_window(const uint8_t *p, size_t len, const char *s, const char *what)
{
	size_t n = strlen(s), i;

	for (i = 0; i + 6 <= n; i++)
		cr_assert_null(h_memmem(p, len, s + i, 6), "%s: '%.6s' of '%s' "
			       "is on the wire in cleartext", what, s + i, s);
}

/* The value of "key":"..." in a JSON line, copied into buf. */
static const char *
json_str(const char *line, const char *key, char *buf, size_t len)
{
	char k[64];
	const char *p, *e;

	snprintf(k, sizeof(k), "\"%s\":\"", key);
	p = strstr(line, k);
	cr_assert_not_null(p, "no %s in %s", key, line);
	p += strlen(k);
	e = strchr(p, '"');
	cr_assert_not_null(e);
	snprintf(buf, len, "%.*s", (int)(e - p), p);
	return buf;
}

/* Both sides' events for a TLS-first link that failed before BIND:
 * handshake_pending at offsets 0, answered by exactly one
 * handshake_failed, no handshake_done, one link_closed. */
static void
assert_failed_link(const char *hooks, const char *stage)
{
	char *line;
	char want[64];

	cr_assert_eq(h_wait_file_contains(hooks, "\"event\":\"link_closed\"",
					  5000), 0, "%s", h_read_file(hooks, NULL));
	line = hook_line(hooks, "handshake_pending");
	cr_assert_eq(json_num(line, "tls_offset_out"), 0, "%s", line);
	cr_assert_eq(json_num(line, "tls_offset_in"), 0, "%s", line);
	free(line);
	line = hook_line(hooks, "handshake_failed");
	if (stage != NULL) {
		snprintf(want, sizeof(want), "\"stage\":\"%s\"", stage);
		cr_assert_not_null(strstr(line, want), "%s", line);
	}
	free(line);
	cr_assert_eq(h_file_count(hooks, "\"event\":\"handshake_done\""), 0);
	cr_assert_eq(h_file_count(hooks, "\"event\":\"plaintext_agreed\""), 0);
}

/* docs/MONITORING.md, invariants 1 and 2, over a whole hook file. */
static void
assert_invariants(const char *hooks)
{
	char *all = h_read_file(hooks, NULL);
	int opened, pending;

	if (all == NULL)
		return;
	free(all);
	opened = h_file_count(hooks, "\"event\":\"link_opened\"");
	pending = h_file_count(hooks, "\"event\":\"handshake_pending\"");
	cr_assert_eq(h_file_count(hooks, "\"event\":\"link_closed\""), opened,
		     "%s: a link_opened without its link_closed", hooks);
	cr_assert_eq(h_file_count(hooks, "\"event\":\"handshake_done\"") +
		     h_file_count(hooks, "\"event\":\"handshake_failed\""),
		     pending, "%s: a handshake_pending not answered exactly once",
		     hooks);
}

/* Stops the daemons (their last links close) and checks both hook
 * files; the last step of every test (a .fini cannot fail a test). */
static void
stop_and_check(void)
{
	if (P.gw > 0 && h_alive(P.gw) == 1)
		h_stop(P.gw, 5000);
	if (P.relay > 0 && h_alive(P.relay) == 1)
		h_stop(P.relay, 5000);
	assert_invariants(P.gw_hooks);
	assert_invariants(P.relay_hooks);
}

TestSuite(tlsfirst, .init = pair_init, .fini = pair_fini, .timeout = 120);

Test(tlsfirst, streams_cross_a_link_that_starts_with_tls)
{
	const uint8_t *c2s, *s2c;
	size_t c2s_len, s2c_len;
	char err[4096], a[64], b[64];
	char *gl, *rl;

	P.gw_node = LONG_NODE;
	start_echo("echo");
	start_tap();
	start_pair_with(RELAY_FIRST, GW_FIRST,
			"[peer " LONG_NODE "]\nidentity = gw1\n", "");
	wait_up();
	cr_assert_eq(h_echo_clients(P.svc_port, 12, 256 * 1024, 77, 60000, err,
				    sizeof(err)), 0, "echo clients failed:\n%s", err);
	cr_assert_eq(tap_conn_count(P.tap), 1, "more than one link was made");
	h_stop(P.gw, 5000);
	h_stop(P.relay, 5000);

	c2s = tap_bytes(P.tap, 0, TAP_C2S, &c2s_len);
	s2c = tap_bytes(P.tap, 0, TAP_S2C, &s2c_len);
	cr_assert_gt(c2s_len, 12 * 256 * 1024, "the link carried %zu bytes",
		     c2s_len);
	cr_assert_eq(tap_overflow(P.tap, 0, TAP_C2S), 0);
	/* A ClientHello at byte 0, TLS records only, both ways. */
	cr_assert(c2s[0] == 0x16 && c2s[1] == 0x03 && c2s[5] == 0x01,
		  "the link does not start with a TLS ClientHello "
		  "(%02x %02x ... %02x)", c2s[0], c2s[1], c2s[5]);
	assert_all_tls(c2s, c2s_len, "gateway->relay");
	assert_all_tls(s2c, s2c_len, "relay->gateway");
	/* No negotiation byte in the clear, anywhere. */
	cr_assert_null(h_memmem(c2s, c2s_len, magic, 4), "negotiation magic "
		       "in cleartext (to relay)");
	cr_assert_null(h_memmem(s2c, s2c_len, magic, 4), "negotiation magic "
		       "in cleartext (to gateway)");
	assert_no_window(c2s, c2s_len, LONG_NODE, "gateway->relay");
	assert_no_window(s2c, s2c_len, LONG_NODE, "relay->gateway");

	/* The hook: before the first TLS byte, at offsets 0; then done. */
	gl = hook_line(P.gw_hooks, "handshake_pending");
	cr_assert_eq(json_num(gl, "tls_offset_out"), 0, "%s", gl);
	cr_assert_eq(json_num(gl, "tls_offset_in"), 0, "%s", gl);
	free(gl);
	rl = hook_line(P.relay_hooks, "handshake_pending");
	cr_assert_eq(json_num(rl, "tls_offset_out"), 0, "%s", rl);
	cr_assert_eq(json_num(rl, "tls_offset_in"), 0, "%s", rl);
	free(rl);
	cr_assert_eq(h_file_count(P.gw_hooks, "\"event\":\"handshake_pending\""), 1);
	cr_assert_eq(h_file_count(P.gw_hooks, "\"event\":\"handshake_done\""), 1);
	cr_assert_eq(h_file_count(P.relay_hooks, "\"event\":\"handshake_pending\""), 1);
	cr_assert_eq(h_file_count(P.relay_hooks, "\"event\":\"handshake_done\""), 1);
	cr_assert_eq(h_file_count(P.gw_hooks, "plaintext_agreed"), 0);
	/* The binding: both sides hashed the same OFFER || DECISION. */
	gl = hook_line(P.gw_hooks, "handshake_done");
	rl = hook_line(P.relay_hooks, "handshake_done");
	cr_assert_str_eq(json_str(gl, "transcript", a, sizeof(a)),
			 json_str(rl, "transcript", b, sizeof(b)));
	cr_assert_eq(strlen(a), 32);
	cr_assert_not_null(strstr(gl, "\"protocol\":\"TLSv1.3\""), "%s", gl);
	cr_assert_not_null(strstr(rl, "\"peer_node\":\"" LONG_NODE "\""), "%s", rl);
	free(gl);
	free(rl);
	gl = hook_line(P.gw_hooks, "link_closed");
	cr_assert_not_null(strstr(gl, "\"outcome\":\"tls\""), "%s", gl);
	free(gl);
	cr_assert_eq(h_file_count(P.relay_log, "the peer starts with TLS"), 1);
	stop_and_check();
}

Test(tlsfirst, the_same_relay_still_accepts_a_negotiation_first_gateway)
{
	const uint8_t *c2s;
	size_t len;
	char err[4096];
	char *line;

	start_echo("echo");
	start_tap();
	start_pair(RELAY_FIRST, TLS_GW);
	wait_up();
	cr_assert_eq(h_echo_clients(P.svc_port, 4, 64 * 1024, 5, 30000, err,
				    sizeof(err)), 0, "%s", err);
	c2s = tap_bytes(P.tap, 0, TAP_C2S, &len);
	cr_assert_geq(len, 14);
	cr_assert_eq(memcmp(c2s, magic, sizeof(magic)), 0,
		     "the gateway did not negotiate first");
	line = hook_line(P.relay_hooks, "handshake_pending");
	cr_assert_gt(json_num(line, "tls_offset_in"), 14, "%s", line);
	free(line);
	cr_assert_eq(h_file_count(P.relay_log, "the peer starts with TLS"), 0);
	stop_and_check();
}

Test(tlsfirst, a_relay_with_tls_first_off_refuses_and_both_logs_say_why)
{
	start_echo("echo");
	start_pair(TLS_RELAY, GW_FIRST);
	cr_assert_eq(h_wait_file_contains(P.relay_log, "it sent a TLS ClientHello",
					  10000), 0, "%s",
		     h_read_file(P.relay_log, NULL));
	cr_assert_eq(h_wait_file_contains(P.relay_log, "tls_first = allow", 1000),
		     0, "no hint in the relay log:\n%s",
		     h_read_file(P.relay_log, NULL));
	cr_assert_eq(h_wait_file_contains(P.gw_log, "does not accept TLS-first "
					  "links (tls_first = allow on the "
					  "relay)", 5000), 0, "%s",
		     h_read_file(P.gw_log, NULL));
	assert_failed_link(P.gw_hooks, "transport");
	cr_assert_eq(h_file_count(P.gw_log, "is up"), 0);
	stop_and_check();
}

Test(tlsfirst, a_relay_with_tls_off_refuses_tls_first_links)
{
	char *line;

	start_echo("echo");
	start_pair("tls = off\ntls_first = allow\n", GW_FIRST);
	cr_assert_eq(h_wait_file_contains(P.relay_log, "every TLS-first link is "
					  "refused", 1000), 0, "no warning at "
		     "start:\n%s", h_read_file(P.relay_log, NULL));
	cr_assert_eq(h_wait_file_contains(P.relay_log, "refused a TLS-first link",
					  10000), 0, "%s",
		     h_read_file(P.relay_log, NULL));
	cr_assert_eq(h_wait_file_contains(P.relay_log, "tls = off in [relay]",
					  1000), 0);
	cr_assert_eq(h_wait_file_contains(P.gw_log, "does not accept TLS-first",
					  5000), 0, "%s",
		     h_read_file(P.gw_log, NULL));
	cr_assert_eq(h_wait_file_contains(P.relay_hooks, "\"event\":\"link_closed\"",
					  5000), 0);
	line = hook_line(P.relay_hooks, "link_refused");
	cr_assert_not_null(strstr(line, "\"reason_name\":\"REQUIRED_BY_DIALER\""),
			   "%s", line);
	free(line);
	line = hook_line(P.relay_hooks, "link_closed");
	cr_assert_not_null(strstr(line, "\"outcome\":\"refused\""), "%s", line);
	free(line);
	cr_assert_eq(h_file_count(P.relay_hooks, "handshake_"), 0,
		     "the relay started no handshake");
	assert_failed_link(P.gw_hooks, "transport");
	stop_and_check();
}

Test(tlsfirst, a_relay_certificate_from_another_ca_fails_the_handshake)
{
	start_echo("echo");
	start_pair("tls = require\ncert = certs/rogue-relay.crt\n"
		   "key = certs/rogue-relay.key\nclient_cert = none\n"
		   "tls_first = allow\n", GW_FIRST);
	cr_assert_eq(h_wait_file_contains(P.gw_log, "TLS handshake failed", 10000),
		     0, "%s", h_read_file(P.gw_log, NULL));
	cr_assert_eq(h_wait_file_contains(P.gw_log, "not signed by a CA", 1000),
		     0, "%s", h_read_file(P.gw_log, NULL));
	assert_failed_link(P.gw_hooks, "tls");
	assert_failed_link(P.relay_hooks, NULL);
	/* The gateway sent no offer to the wrong relay. */
	cr_assert_eq(h_file_count(P.relay_hooks, "peer_node"), 0);
	cr_assert_eq(h_file_count(P.gw_log, "is up"), 0);
	stop_and_check();
}

Test(tlsfirst, an_unknown_node_is_refused_inside_tls)
{
	const uint8_t *s2c;
	size_t len;
	char *line;

	P.gw_node = "stranger-node-77";
	start_echo("echo");
	start_tap();
	start_pair(RELAY_FIRST, GW_FIRST);
	cr_assert_eq(h_wait_file_contains(P.gw_log, "the relay refused the link "
					  "inside TLS", 10000), 0, "%s",
		     h_read_file(P.gw_log, NULL));
	cr_assert_eq(h_wait_file_contains(P.gw_log, "is not a known partner",
					  1000), 0, "%s",
		     h_read_file(P.gw_log, NULL));
	cr_assert_eq(h_wait_file_contains(P.relay_log, "matches no [peer]", 1000),
		     0, "%s", h_read_file(P.relay_log, NULL));
	assert_failed_link(P.gw_hooks, "negotiation");
	assert_failed_link(P.relay_hooks, "negotiation");
	line = hook_line(P.gw_hooks, "link_refused");
	cr_assert_not_null(strstr(line, "\"by\":\"peer\""), "%s", line);
	cr_assert_not_null(strstr(line, "\"reason_name\":\"UNKNOWN_PEER\""), "%s",
			   line);
	free(line);
	line = hook_line(P.relay_hooks, "link_refused");
	cr_assert_not_null(strstr(line, "\"by\":\"local\""), "%s", line);
	cr_assert_not_null(strstr(line, "\"reason_name\":\"UNKNOWN_PEER\""), "%s",
			   line);
	free(line);
	line = hook_line(P.relay_hooks, "link_closed");
	cr_assert_not_null(strstr(line, "\"outcome\":\"refused\""), "%s", line);
	free(line);
	/* The REFUSE went inside TLS: no negotiation magic on the wire. */
	cr_assert_eq(tap_wait_bytes(P.tap, 0, TAP_S2C, 1, 1000), 0);
	s2c = tap_bytes(P.tap, 0, TAP_S2C, &len);
	cr_assert_eq(s2c[0], 0x16);
	cr_assert_null(h_memmem(s2c, len, magic, 4), "a REFUSE in cleartext");
	stop_and_check();
}

Test(tlsfirst, a_partner_that_requires_a_certificate_the_peer_did_not_present)
{
	char *line;

	/* The relay asks for no certificate (its own client_cert), as it
	 * cannot know the partner before the offer inside TLS; [peer gw1]
	 * requires one: refused with the reason named. */
	start_echo("echo");
	start_pair_with("tls = require\ncert = certs/relay.crt\nkey = certs/relay.key\n"
		   "client_cert = none\ntls_first = allow\n",
		   "tls = require\ntls_first = yes\n",
		   "[peer gw1]\nclient_cert = require\n", "");
	cr_assert_eq(h_wait_file_contains(P.gw_log, "the relay refused the link "
					  "inside TLS", 10000), 0, "%s",
		     h_read_file(P.gw_log, NULL));
	cr_assert_eq(h_wait_file_contains(P.gw_log, "must present a client "
					  "certificate", 1000), 0, "%s",
		     h_read_file(P.gw_log, NULL));
	assert_failed_link(P.relay_hooks, "negotiation");
	line = hook_line(P.relay_hooks, "link_refused");
	cr_assert_not_null(strstr(line, "\"reason_name\":\"CERT_REQUIRED\""),
			   "%s", line);
	free(line);
	stop_and_check();
}

Test(tlsfirst, a_partner_with_tls_off_is_refused_inside_tls)
{
	char *line;

	start_echo("echo");
	start_pair_with(RELAY_FIRST, GW_FIRST, "[peer gw1]\ntls = off\n", "");
	cr_assert_eq(h_wait_file_contains(P.gw_log, "the relay refused the link "
					  "inside TLS", 10000), 0, "%s",
		     h_read_file(P.gw_log, NULL));
	cr_assert_eq(h_wait_file_contains(P.gw_log, "tls = off applies to node "
					  "'gw1'", 1000), 0, "%s",
		     h_read_file(P.gw_log, NULL));
	line = hook_line(P.relay_hooks, "link_refused");
	cr_assert_not_null(strstr(line, "REQUIRED_BY_DIALER"), "%s", line);
	free(line);
	cr_assert_eq(h_file_count(P.gw_log, "is up"), 0);
	stop_and_check();
}

Test(tlsfirst, the_identity_check_runs_on_the_node_named_inside_tls)
{
	/* gw2 claims its name with gw1's certificate: on_verify refuses it
	 * once the offer names the partner, before any decision. */
	P.gw_node = "gw2";
	start_echo("echo");
	start_pair_with(RELAY_FIRST, GW_FIRST, "[peer gw2]\n", "");
	cr_assert_eq(h_wait_file_contains(P.relay_log, "claims node name 'gw2'",
					  10000), 0, "%s",
		     h_read_file(P.relay_log, NULL));
	assert_failed_link(P.relay_hooks, "verify");
	assert_failed_link(P.gw_hooks, NULL);
	cr_assert_eq(h_file_count(P.relay_hooks, "transcript"), 0,
		     "a decision was made");
	cr_assert_eq(h_file_count(P.gw_log, "is up"), 0);
	stop_and_check();
}

/* ---- a TLS-first client of our own: openssl s_client ------------------ */

/* An OFFER from gw1 as a TLS-first gateway would send it. */
static size_t
make_offer(uint8_t *buf, size_t cap)
{
	struct neg_msg m;
	int n;

	neg_msg_init(&m, NEG_OFFER);
	snprintf(m.params.node, sizeof(m.params.node), "gw1");
	m.params.tls_mode = TLS_MODE_REQUIRE;
	m.params.tls_min = m.params.tls_max = TLSV_1_3;
	m.params.n_ciphers = 3;
	m.params.ciphers[0] = 0x1301;
	m.params.ciphers[1] = 0x1302;
	m.params.ciphers[2] = 0x1303;
	m.params.cert_present = 1;
	m.params.max_streams = 100;
	m.params.window = 65536;
	m.params.max_frame = 16375;
	m.params.keepalive_ms = 10000;
	memset(m.params.nonce, 7, sizeof(m.params.nonce));
	n = neg_encode(&m, buf, cap);
	cr_assert_gt(n, 0);
	return (size_t)n;
}

/* Connects to the relay with openssl s_client as gw1, TLS first, sends
 * bytes in one write once TLS is up, and writes what the relay sent
 * back inside TLS to out, until the relay closes (or 10 s). */
static void
openssl_client(const uint8_t *bytes, size_t n, const char *out)
{
	char in[600], cmd[3000], log[600];
	const char *argv[4];
	FILE *f;

	snprintf(in, sizeof(in), "%s/client.in", P.dir);
	snprintf(log, sizeof(log), "%s/s_client.log", P.dir);
	f = fopen(in, "wb");
	cr_assert_not_null(f);
	cr_assert_eq(fwrite(bytes, 1, n, f), n);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "exec openssl s_client -connect 127.0.0.1:%d "
		 "-quiet -tls1_3 -CAfile %s/ca.crt -cert %s/gw1.crt -key "
		 "%s/gw1.key < %s > %s", P.relay_port, P.certs, P.certs,
		 P.certs, in, out);
	argv[0] = "/bin/sh";
	argv[1] = "-c";
	argv[2] = cmd;
	argv[3] = NULL;
	cr_assert_geq(h_run(argv, log, 10000), 0, "s_client did not end:\n%s",
		      h_read_file(log, NULL));
}

Test(tlsfirst, bytes_after_the_offer_inside_tls_kill_the_link)
{
	uint8_t buf[NEG_MAX_LEN + 16];
	char out[600], *got;
	size_t n, len;

	snprintf(out, sizeof(out), "%s/client.out", P.dir);
	start_relay(RELAY_FIRST, "");
	/* The offer alone is answered with a DECISION inside TLS. */
	n = make_offer(buf, sizeof(buf));
	openssl_client(buf, n, out);
	got = h_read_file(out, &len);
	cr_assert(got != NULL && h_memmem(got, len, magic, sizeof(magic)),
		  "no DECISION came back:\n%s", h_read_file(P.relay_log, NULL));
	cr_assert_eq(((uint8_t *)h_memmem(got, len, magic, sizeof(magic)))[10],
		     2, "the answer is not a DECISION");
	free(got);
	/* The same offer with 5 bytes after it, in the same record. */
	memcpy(buf + n, "junk!", 5);
	openssl_client(buf, n + 5, out);
	cr_assert_eq(h_wait_file_contains(P.relay_log, "5 bytes after its offer",
					  2000), 0, "%s",
		     h_read_file(P.relay_log, NULL));
	got = h_read_file(out, &len);
	cr_assert(got == NULL || h_memmem(got, len, magic, 4) == NULL,
		  "the relay answered a pipelined offer");
	free(got);
	cr_assert_eq(h_file_count(P.relay_hooks, "\"stage\":\"negotiation\""), 1,
		     "%s", h_read_file(P.relay_hooks, NULL));
	stop_and_check();
}

Test(tlsfirst, the_negotiation_inside_tls_is_bounded)
{
	uint8_t hdr[NEG_HDR_LEN + 64];
	char out[600], *got, *line;
	size_t len;

	snprintf(out, sizeof(out), "%s/client.out", P.dir);
	start_relay(RELAY_FIRST, "");
	/* A header announcing a body over NEG_MAX_LEN, and a little of it. */
	memset(hdr, 0, sizeof(hdr));
	memcpy(hdr, magic, sizeof(magic));
	hdr[8] = 1, hdr[9] = 1, hdr[10] = NEG_OFFER;
	hdr[12] = (NEG_MAX_LEN >> 8) & 0xff, hdr[13] = 0;
	openssl_client(hdr, sizeof(hdr), out);
	cr_assert_eq(h_wait_file_contains(P.relay_log, "refused the link", 2000),
		     0, "%s", h_read_file(P.relay_log, NULL));
	/* Refused at once, inside TLS: the REFUSE is what came back. */
	got = h_read_file(out, &len);
	cr_assert(got != NULL && h_memmem(got, len, magic, sizeof(magic)),
		  "no REFUSE came back");
	cr_assert_eq(((uint8_t *)h_memmem(got, len, magic, sizeof(magic)))[10],
		     NEG_REFUSE);
	free(got);
	line = hook_line(P.relay_hooks, "link_refused");
	cr_assert_not_null(strstr(line, "\"reason_name\":\"MALFORMED\""), "%s", line);
	free(line);
	stop_and_check();
}

Test(tlsfirst, a_busy_refusal_in_plaintext_is_read_and_named)
{
	char *line;
	int64_t end;
	int fd;

	start_echo("echo");
	start_relay(RELAY_FIRST "max_links = 1\n", "");
	/* A silent connection holds the only link slot until the relay's
	 * negotiation_timeout (2 s); another takes its place at once. */
	fd = connect_port(P.relay_port);
	cr_assert_geq(fd, 0);
	cr_assert_eq(h_wait_file_contains(P.relay_log, "accepted", 2000), 0);
	start_gateway(GW_FIRST, "");
	end = h_now_ms() + 15000;
	while (h_file_count(P.gw_log, "the relay refused the link before TLS") == 0 &&
	       h_now_ms() < end) {
		if (closed_within(fd, 50)) {
			close(fd);
			fd = connect_port(P.relay_port);
			cr_assert_geq(fd, 0);
		}
	}
	cr_assert_eq(h_wait_file_contains(P.gw_log, "the relay refused the link "
					  "before TLS", 100), 0, "%s",
		     h_read_file(P.gw_log, NULL));
	cr_assert_eq(h_wait_file_contains(P.gw_log, "reached a limit", 1000), 0,
		     "%s", h_read_file(P.gw_log, NULL));
	line = hook_line(P.gw_hooks, "link_refused");
	cr_assert_not_null(strstr(line, "\"reason_name\":\"BUSY\""), "%s", line);
	cr_assert_not_null(strstr(line, "\"by\":\"peer\""), "%s", line);
	free(line);
	line = hook_line(P.gw_hooks, "handshake_failed");
	cr_assert_not_null(strstr(line, "\"stage\":\"negotiation\""), "%s", line);
	free(line);
	/* Once the slot is free the gateway's redial links up. */
	close(fd);
	wait_up();
	stop_and_check();
}

Test(tlsfirst, a_session_outside_the_partners_versions_is_refused)
{
	char *line;

	/* The handshake runs with [relay]'s 1.2..1.3 and makes TLS 1.3; the
	 * offer then names gw1, whose partner allows 1.2 only. */
	start_echo("echo");
	start_pair_with(RELAY_FIRST "min_tls = 1.2\n", GW_FIRST "min_tls = 1.2\n",
			"[peer gw1]\nmax_tls = 1.2\n", "");
	cr_assert_eq(h_wait_file_contains(P.gw_log, "the relay refused the link "
					  "inside TLS", 10000), 0, "%s",
		     h_read_file(P.gw_log, NULL));
	cr_assert_eq(h_wait_file_contains(P.gw_log, "the TLS session (TLSv1.3) "
					  "is outside the versions both sides "
					  "allow (TLSv1.2..TLSv1.2)", 1000), 0,
		     "%s", h_read_file(P.gw_log, NULL));
	assert_failed_link(P.relay_hooks, "negotiation");
	line = hook_line(P.relay_hooks, "link_refused");
	cr_assert_not_null(strstr(line, "NO_COMMON_VERSION"), "%s", line);
	free(line);
	cr_assert_eq(h_file_count(P.gw_log, "is up"), 0);
	stop_and_check();
}
