/*
 * End to end: the real daemons on loopback, an echo backend, and a TCP
 * tap between gateway and relay that records every byte of the link.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <signal.h>
#include <unistd.h>

#include "frame.h"
#include "neg.h"
#include "harness.h"
#include "pair.h"

#define NEG_HDR 14
static const uint8_t magic[8] = { 0x89, 'T', 'P', 'X', '\r', '\n', 0x1a, '\n' };

/* Length of the negotiation message at the start of a capture. */
static size_t
neg_len(const uint8_t *p, size_t len)
{
	cr_assert_geq(len, NEG_HDR);
	cr_assert_eq(memcmp(p, magic, sizeof(magic)), 0,
		     "link does not start with the negotiation magic");
	return NEG_HDR + ((size_t)p[12] << 8 | p[13]);
}

/* Every byte from off to the end parses as TLS records. */
static void
assert_tls_records(const uint8_t *p, size_t len, size_t off, const char *what)
{
	size_t records = 0;

	while (off < len) {
		size_t rl;

		cr_assert_leq(off + 5, len, "%s: truncated TLS record header at %zu",
			      what, off);
		cr_assert(p[off] >= 20 && p[off] <= 23,
			  "%s: byte %zu is not a TLS record type (0x%02x)", what,
			  off, p[off]);
		cr_assert(p[off + 1] == 3 && p[off + 2] >= 1 && p[off + 2] <= 4,
			  "%s: bad TLS record version at %zu", what, off);
		rl = (size_t)p[off + 3] << 8 | p[off + 4];
		cr_assert_leq(rl, 16384 + 256, "%s: oversized TLS record at %zu",
			      what, off);
		off += 5 + rl;
		records++;
	}
	cr_assert_eq(off, len, "%s: last TLS record is cut short", what);
	cr_assert_gt(records, 2);
}

TestSuite(e2e, .init = pair_init, .fini = pair_fini, .timeout = 240);

Test(e2e, hundred_clients_one_tls_link)
{
	char err[4096];
	const uint8_t *c2s, *s2c;
	size_t c2s_len, s2c_len, off_c2s, off_s2c;
	char *line;
	int i;

	start_echo("echo");
	start_tap();
	start_pair(TLS_RELAY, TLS_GW);
	wait_up();
	cr_assert_eq(h_echo_clients(P.svc_port, 100, 1 << 20, 42, 180000, err,
				    sizeof(err)), 0, "echo clients failed:\n%s", err);
	cr_assert_eq(tap_conn_count(P.tap), 1, "more than one link was made");
	h_stop(P.gw, 5000);
	h_stop(P.relay, 5000);
	c2s = tap_bytes(P.tap, 0, TAP_C2S, &c2s_len);
	s2c = tap_bytes(P.tap, 0, TAP_S2C, &s2c_len);
	cr_assert_gt(c2s_len, 100u << 20, "the link carried only %zu bytes", c2s_len);
	cr_assert_eq(tap_overflow(P.tap, 0, TAP_C2S), 0);

	/* Negotiation magic first, then TLS records and nothing else. */
	off_c2s = neg_len(c2s, c2s_len);
	off_s2c = neg_len(s2c, s2c_len);
	assert_tls_records(c2s, c2s_len, off_c2s, "gateway->relay");
	assert_tls_records(s2c, s2c_len, off_s2c, "relay->gateway");

	/* The hook's offsets are where the tap saw TLS start. */
	line = hook_line(P.gw_hooks, "handshake_pending");
	cr_assert_eq(json_num(line, "tls_offset_out"), off_c2s);
	cr_assert_eq(json_num(line, "tls_offset_in"), off_s2c);
	free(line);
	line = hook_line(P.relay_hooks, "handshake_pending");
	cr_assert_eq(json_num(line, "tls_offset_out"), off_s2c);
	cr_assert_eq(json_num(line, "tls_offset_in"), off_c2s);
	free(line);
	line = hook_line(P.gw_hooks, "handshake_done");
	cr_assert_not_null(strstr(line, "\"protocol\":\"TLSv1.3\""), "%s", line);
	cr_assert_not_null(strstr(line, "CN=relay"), "%s", line);
	free(line);
	cr_assert_eq(h_file_count(P.gw_hooks, "handshake_pending"), 1);
	cr_assert_eq(h_file_count(P.gw_hooks, "plaintext_agreed"), 0);

	/* No client's payload appears in the clear, in either direction. */
	for (i = 0; i < 100; i += 33) {
		uint8_t *pay = malloc(1 << 20);
		size_t o;

		h_payload_fill(pay, 1 << 20, 42, (uint64_t)i);
		for (o = 0; o < (1 << 20); o += 256 * 1024 + 17) {
			cr_assert_null(h_memmem(c2s, c2s_len, pay + o, 32),
				       "client %d payload in clear (to relay)", i);
			cr_assert_null(h_memmem(s2c, s2c_len, pay + o, 32),
				       "client %d payload in clear (to gateway)", i);
		}
		free(pay);
	}
}

Test(e2e, off_with_off_is_plaintext)
{
	char err[4096];
	const uint8_t *c2s;
	size_t len;
	uint8_t pay[4096];

	start_echo("echo");
	start_tap();
	start_pair("tls = off\n", "tls = off\n");
	wait_up();
	cr_assert_eq(h_echo_clients(P.svc_port, 10, 64 * 1024, 7, 60000, err,
				    sizeof(err)), 0, "%s", err);
	cr_assert_eq(h_file_count(P.gw_hooks, "plaintext_agreed"), 1);
	cr_assert_eq(h_file_count(P.relay_hooks, "plaintext_agreed"), 1);
	cr_assert_eq(h_file_count(P.gw_hooks, "handshake_"), 0);
	cr_assert_eq(h_file_count(P.relay_hooks, "handshake_"), 0);
	/* Plaintext really is plaintext: the payload is visible. */
	c2s = tap_bytes(P.tap, 0, TAP_C2S, &len);
	h_payload_fill(pay, sizeof(pay), 7, 3);
	cr_assert_not_null(h_memmem(c2s, len, pay + 1000, 64));
}

struct lack_count {
	size_t probes, answers, data;
};

static int
lack_on_frame(void *ud, const struct frame_hdr *h, const uint8_t *p)
{
	struct lack_count *c = ud;

	if (h->type == FRAME_LINK_ACK)
		(h->flags & FRAME_FLAG_ACK) ? c->answers++ : c->probes++;
	return 0;
}

static int
lack_on_data(void *ud, const struct frame_hdr *h, const uint8_t *chunk,
	     size_t n, int last)
{
	((struct lack_count *)ud)->data += n;
	return 0;
}

/* Counts the LINK_ACK frames of one direction of a plaintext link. */
static struct lack_count
count_link_acks(int dir)
{
	static const struct frame_callbacks cb = {
		.on_frame = lack_on_frame,
		.on_data = lack_on_data,
	};
	struct lack_count c = { 0, 0, 0 };
	const uint8_t *p;
	size_t len, off;
	struct frame_decoder *dec = frame_decoder_new(FRAME_MAX_PAYLOAD, &cb, &c);

	cr_assert_not_null(dec);
	p = tap_bytes(P.tap, 0, dir, &len);
	off = neg_len(p, len);
	cr_assert_eq(frame_decoder_feed(dec, p + off, len - off), 0,
		     "the link's frames do not parse");
	frame_decoder_free(dec);
	return c;
}

/* Runs 8 echo clients of 1 MiB over a plaintext link and counts the
 * LINK_ACK frames each way. */
static void
echo_and_count(const char *gw_extra, struct lack_count *up,
	       struct lack_count *down)
{
	char err[4096];

	start_echo("echo");
	start_tap();
	start_pair("tls = off\n", gw_extra);
	wait_up();
	cr_assert_eq(h_echo_clients(P.svc_port, 8, 1 << 20, 9, 60000, err,
				    sizeof(err)), 0, "%s", err);
	*up = count_link_acks(TAP_C2S);
	*down = count_link_acks(TAP_S2C);
	cr_assert_geq(up->data, 8u << 20);
	cr_assert_geq(down->data, 8u << 20);
}

/* Both sides announce LINK_ACK by default: the sender of bulk data
 * probes and the receiver answers. */
Test(e2e, link_budget_probes_are_answered)
{
	struct lack_count up, down;

	echo_and_count("tls = off\n", &up, &down);
	cr_assert_gt(up.probes, 0, "the gateway sent no probe");
	cr_assert_gt(down.probes, 0, "the relay sent no probe");
	cr_assert_gt(down.answers, 0, "the relay answered no probe");
	cr_assert_gt(up.answers, 0, "the gateway answered no probe");
	cr_assert_leq(down.answers, up.probes);
	cr_assert_leq(up.answers, down.probes);
}

/* A side that does not announce it (link_budget = off, or an older
 * version): no LINK_ACK frame either way, the data arrives as before. */
Test(e2e, link_budget_off_on_one_side_sends_no_link_ack)
{
	struct lack_count up, down;

	echo_and_count("tls = off\nlink_budget = off\n", &up, &down);
	cr_assert_eq(up.probes + up.answers + down.probes + down.answers, 0,
		     "LINK_ACK frames with link_budget = off on the gateway");
}

static void
assert_refused(const char *relay_extra, const char *gw_extra, const char *why)
{
	int fd;

	start_echo("echo");
	start_tap();
	start_pair(relay_extra, gw_extra);
	cr_assert_eq(h_wait_file_contains(P.gw_log, "refused the link", 10000), 0,
		     "gateway did not log the refusal:\n%s", h_read_file(P.gw_log, NULL));
	cr_assert_eq(h_wait_file_contains(P.relay_log, "refused the link", 10000), 0,
		     "relay did not log the refusal:\n%s", h_read_file(P.relay_log, NULL));
	cr_assert_eq(h_wait_file_contains(P.gw_log, why, 1000), 0,
		     "gateway log lacks '%s'", why);
	cr_assert_eq(h_wait_file_contains(P.relay_log, why, 1000), 0,
		     "relay log lacks '%s'", why);
	cr_assert_eq(h_file_count(P.gw_hooks, "handshake_pending"), 0);
	cr_assert_eq(h_file_count(P.gw_log, "is up"), 0);
	/* A client is held for hold_timeout, then turned away. */
	fd = connect_port(P.svc_port);
	cr_assert_geq(fd, 0);
	cr_assert(closed_within(fd, 3000), "client was not closed");
	close(fd);
}

Test(e2e, require_with_off_is_refused)
{
	assert_refused(TLS_RELAY, "tls = off\n",
		       "the accepting side requires TLS");
}

Test(e2e, off_with_require_is_refused)
{
	assert_refused("tls = off\n", "tls = require\n",
		       "the dialling side requires TLS");
}

Test(e2e, injected_bytes_after_offer_kill_the_link)
{
	static const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

	start_echo("echo");
	start_tap();
	cr_assert_eq(tap_set_inject(P.tap, TAP_C2S, junk, sizeof(junk) - 1), 0);
	start_pair(TLS_RELAY, TLS_GW);
	cr_assert_eq(h_wait_file_contains(P.relay_log, "bytes after its offer", 10000),
		     0, "relay did not reject the injection:\n%s",
		     h_read_file(P.relay_log, NULL));
	cr_assert_geq(tap_inject_offset(P.tap, 0, TAP_C2S), 0);
	/* The first link carried no decision and no TLS: the relay sent
	 * nothing back at all. */
	cr_assert_eq(tap_wait_bytes(P.tap, 0, TAP_S2C, 1, 300), -1);
	/* The gateway redials and the next, clean link works. */
	wait_up();
	cr_assert_eq(h_file_count(P.relay_log, "backend connected"), 0);
	cr_assert_eq(h_file_count(P.relay_hooks, "\"link\":1,"), 2,
		     "link 1 should only have its link_opened and link_closed");
	cr_assert_eq(h_file_count(P.relay_hooks, "\"event\":\"link_closed\",\"link\":1,"),
		     1);
	cr_assert_eq(h_file_count(P.relay_hooks, "\"outcome\":\"aborted\""), 1);
}

Test(e2e, injected_bytes_after_decision_kill_the_link)
{
	static const uint8_t junk[] = { 0x17, 0x03, 0x03, 0x00, 0x05, 'h', 'e', 'l', 'l', 'o' };

	start_echo("echo");
	start_tap();
	cr_assert_eq(tap_set_inject(P.tap, TAP_S2C, junk, sizeof(junk)), 0);
	start_pair(TLS_RELAY, TLS_GW);
	cr_assert_eq(h_wait_file_contains(P.gw_log, "after its decision before TLS", 10000),
		     0, "gateway did not reject the injection:\n%s",
		     h_read_file(P.gw_log, NULL));
	cr_assert_geq(tap_inject_offset(P.tap, 0, TAP_S2C), 0);
	/* The gateway sent nothing after its offer on that link. */
	{
		size_t len, off;
		const uint8_t *c2s = tap_bytes(P.tap, 0, TAP_C2S, &len);

		off = neg_len(c2s, len);
		cr_assert_eq(len, off, "gateway sent %zu bytes after its offer",
			     len - off);
	}
	cr_assert_eq(h_file_count(P.gw_hooks, "\"event\":\"handshake_pending\",\"link\":1,"),
		     0);
}

Test(e2e, wrong_server_certificate_fails_handshake)
{
	start_echo("echo");
	start_tap();
	start_pair("tls = require\ncert = certs/rogue-relay.crt\n"
		   "key = certs/rogue-relay.key\nclient_cert = none\n",
		   TLS_GW);
	cr_assert_eq(h_wait_file_contains(P.gw_log, "TLS handshake failed", 10000), 0,
		     "gateway accepted a relay certificate from the wrong CA:\n%s",
		     h_read_file(P.gw_log, NULL));
	cr_assert_eq(h_wait_file_contains(P.gw_log, "not signed by a CA", 1000), 0,
		     "%s", h_read_file(P.gw_log, NULL));
	cr_assert_eq(h_wait_file_contains(P.gw_hooks, "handshake_failed", 1000), 0);
	cr_assert_eq(h_file_count(P.gw_log, "is up"), 0);
}

Test(e2e, missing_client_certificate_fails_handshake)
{
	start_echo("echo");
	start_tap();
	start_pair(TLS_RELAY, "tls = require\n");
	cr_assert_eq(h_wait_file_contains(P.relay_log, "TLS handshake failed", 10000), 0,
		     "relay accepted a gateway without a certificate:\n%s",
		     h_read_file(P.relay_log, NULL));
	cr_assert_eq(h_wait_file_contains(P.relay_log, "no certificate", 1000), 0,
		     "%s", h_read_file(P.relay_log, NULL));
	cr_assert_eq(h_wait_file_contains(P.gw_log, "TLS handshake failed", 5000), 0,
		     "%s", h_read_file(P.gw_log, NULL));
	cr_assert_eq(h_wait_file_contains(P.relay_hooks, "handshake_failed", 1000), 0);
	cr_assert_eq(h_file_count(P.gw_log, "is up"), 0);
}

Test(e2e, backend_connect_failure_closes_client)
{
	char err[1024];
	int fd, dead_port;
	char *conf;
	const char *p;

	start_echo("echo");
	start_tap();
	start_pair(TLS_RELAY, TLS_GW);
	wait_up();
	/* [service dead] points at a port nobody listens on. */
	{
		char path[600];

		snprintf(path, sizeof(path), "%s/gateway.ini", P.dir);
		conf = h_read_file(path, NULL);
	}
	p = strstr(conf, "[service dead]\nlisten = 127.0.0.1:");
	cr_assert_not_null(p);
	dead_port = atoi(p + strlen("[service dead]\nlisten = 127.0.0.1:"));
	free(conf);
	fd = connect_port(dead_port);
	cr_assert_geq(fd, 0);
	cr_assert(closed_within(fd, 3000), "client not closed after backend failure");
	close(fd);
	cr_assert_eq(h_wait_file_contains(P.relay_log, "cannot connect to the backend",
					  2000), 0);
	cr_assert_eq(h_wait_file_contains(P.gw_log, "reset by peer", 2000), 0,
		     "%s", h_read_file(P.gw_log, NULL));
	/* The link and other streams are unaffected. */
	cr_assert_eq(h_echo_clients(P.svc_port, 4, 100000, 9, 30000, err, sizeof(err)),
		     0, "%s", err);
	cr_assert_eq(tap_conn_count(P.tap), 1);
}

Test(e2e, tls12_when_both_sides_allow_only_12)
{
	char err[1024];
	char *line;

	start_echo("echo");
	start_tap();
	start_pair("tls = require\ncert = certs/relay.crt\nkey = certs/relay.key\n"
		   "client_cert = require\nmin_tls = 1.2\nmax_tls = 1.2\n",
		   "tls = prefer\ncert = certs/gw1.crt\nkey = certs/gw1.key\n"
		   "min_tls = 1.2\nmax_tls = 1.3\n");
	wait_up();
	cr_assert_eq(h_echo_clients(P.svc_port, 4, 200000, 5, 30000, err, sizeof(err)),
		     0, "%s", err);
	line = hook_line(P.gw_hooks, "handshake_done");
	cr_assert_not_null(strstr(line, "\"protocol\":\"TLSv1.2\""), "%s", line);
	free(line);
}

Test(e2e, tls13_only_against_tls12_only_is_refused)
{
	assert_refused("tls = require\ncert = certs/relay.crt\nkey = certs/relay.key\n"
		       "client_cert = none\nmin_tls = 1.2\nmax_tls = 1.2\n",
		       "tls = prefer\nmin_tls = 1.3\nmax_tls = 1.3\n",
		       "TLS version");
}

Test(e2e, client_cert_none_and_optional_accept_a_gateway_without_one)
{
	char err[1024];

	start_echo("echo");
	start_tap();
	start_pair("tls = require\ncert = certs/relay.crt\nkey = certs/relay.key\n"
		   "client_cert = optional\n",
		   "tls = require\n");
	wait_up();
	cr_assert_eq(h_echo_clients(P.svc_port, 2, 10000, 5, 30000, err, sizeof(err)),
		     0, "%s", err);
	cr_assert_eq(h_wait_file_contains(P.relay_log, "peer certificate none", 1000), 0);
}

Test(e2e, backend_reset_closes_client_and_spares_the_link)
{
	char path[600], addr[64], log[600], err[1024];
	const char *argv[6];
	int fd;

	start_echo("echo");
	P.dead_port = h_free_port();
	snprintf(path, sizeof(path), "%s/tpx-echo", h_build_dir());
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", P.dead_port);
	snprintf(log, sizeof(log), "%s/echo-reset.log", P.dir);
	argv[0] = path;
	argv[1] = "-l";
	argv[2] = addr;
	argv[3] = "-m";
	argv[4] = "reset";
	argv[5] = NULL;
	cr_assert_gt(h_spawn(argv, log), 0);
	cr_assert_eq(h_wait_port(P.dead_port, 5000), 0);
	start_tap();
	start_pair(TLS_RELAY, TLS_GW);
	wait_up();
	/* [service dead] now leads to a backend that resets every connection. */
	fd = connect_port(gw_service_port("dead"));
	cr_assert_geq(fd, 0);
	/* The reset may already have arrived: the send may fail. */
	(void)send(fd, "hello", 5, MSG_NOSIGNAL);
	cr_assert(closed_within(fd, 3000), "client not closed after backend reset");
	close(fd);
	cr_assert_eq(h_wait_file_contains(P.gw_log, "reset by peer", 3000), 0,
		     "%s", h_read_file(P.gw_log, NULL));
	/* The relay logs the stream's end (the reset can race the connect). */
	cr_assert_eq(h_wait_file_contains(P.relay_log, "(service dead) reset by this side",
					  3000), 0, "%s", h_read_file(P.relay_log, NULL));
	cr_assert_eq(h_echo_clients(P.svc_port, 4, 100000, 9, 30000, err, sizeof(err)),
		     0, "%s", err);
	cr_assert_eq(tap_conn_count(P.tap), 1);
}

Test(e2e, daemons_exit_cleanly_on_sigterm)
{
	char err[1024];

	start_echo("echo");
	start_tap();
	start_pair(TLS_RELAY, TLS_GW);
	wait_up();
	cr_assert_eq(h_echo_clients(P.svc_port, 8, 100000, 3, 30000, err, sizeof(err)),
		     0, "%s", err);
	/* Under the sanitizers a leak or an error makes the exit status non-zero. */
	cr_assert_eq(h_stop(P.relay, 10000), 0, "relay did not exit cleanly:\n%s",
		     h_read_file(P.relay_log, NULL));
	cr_assert_eq(h_wait_file_contains(P.gw_log, "GOAWAY", 3000), 0,
		     "the gateway was not told the relay is stopping");
	cr_assert_eq(h_stop(P.gw, 10000), 0, "gateway did not exit cleanly:\n%s",
		     h_read_file(P.gw_log, NULL));
}

Test(e2e, check_flag_reports_file_line_and_key)
{
	char path[600], conf[600], log[600];
	const char *argv[5];
	char *out;

	snprintf(path, sizeof(path), "%s/tlsplex-relay", h_build_dir());
	snprintf(conf, sizeof(conf), "%s/bad.ini", P.dir);
	snprintf(log, sizeof(log), "%s/check.log", P.dir);
	cr_assert_eq(h_write_file(conf, "[relay]\nlisten = 127.0.0.1:1\ntls = sometimes\n"), 0);
	argv[0] = path;
	argv[1] = "-n";
	argv[2] = "-c";
	argv[3] = conf;
	argv[4] = NULL;
	cr_assert_neq(h_run(argv, log, 10000), 0);
	out = h_read_file(log, NULL);
	cr_assert_not_null(strstr(out, "bad.ini:3"), "%s", out);
	cr_assert_not_null(strstr(out, "'tls'"), "%s", out);
	free(out);
	cr_assert_eq(h_write_file(conf, "[relay]\nlisten = 127.0.0.1:1\ntls = off\n"), 0);
	cr_assert_eq(h_run(argv, log, 10000), 0, "%s", h_read_file(log, NULL));
	out = h_read_file(log, NULL);
	cr_assert_not_null(strstr(out, "is valid"), "%s", out);
	free(out);
}

/* Sends bytes on a raw connection to the relay's link port and waits
 * for the relay to close it. */
static void
poke_relay(const void *bytes, size_t n, int close_ms)
{
	int fd = connect_port(P.relay_port);

	cr_assert_geq(fd, 0);
	if (n > 0)
		cr_assert_eq(send(fd, bytes, n, MSG_NOSIGNAL), (ssize_t)n);
	cr_assert(closed_within(fd, close_ms), "relay kept the connection open");
	close(fd);
}

Test(e2e, bad_input_on_the_link_port_is_named_and_closed)
{
	static const uint8_t hello[] = { 0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00 };
	static const char http[] = "GET / HTTP/1.1\r\nHost: relay\r\n\r\n";
	uint8_t big[NEG_HDR];
	char err[1024];

	start_echo("echo");
	start_tap();
	start_pair("tls = require\ncert = certs/relay.crt\nkey = certs/relay.key\n"
		   "client_cert = require\n", TLS_GW);
	wait_up();
	poke_relay(hello, sizeof(hello), 2000);
	cr_assert_eq(h_wait_file_contains(P.relay_log, "it sent a TLS ClientHello", 2000), 0);
	poke_relay(http, sizeof(http) - 1, 2000);
	cr_assert_eq(h_wait_file_contains(P.relay_log, "it sent an HTTP request", 2000), 0);
	/* A header that announces a body over the size limit. */
	memcpy(big, magic, sizeof(magic));
	big[8] = 1, big[9] = 1, big[10] = 1, big[11] = 0, big[12] = 0x20, big[13] = 0;
	poke_relay(big, sizeof(big), 2000);
	cr_assert_eq(h_wait_file_contains(P.relay_log, "refused the link", 2000), 0,
		     "%s", h_read_file(P.relay_log, NULL));
	/* Silent, and one byte then silence: dropped at the deadline. */
	poke_relay(NULL, 0, 4000);
	poke_relay(magic, 1, 4000);
	cr_assert_eq(h_wait_file_contains(P.relay_log, "negotiation not complete", 1000), 0);
	/* None of this disturbed the real link. */
	cr_assert_eq(h_echo_clients(P.svc_port, 4, 100000, 11, 30000, err, sizeof(err)),
		     0, "%s", err);
	cr_assert_eq(tap_conn_count(P.tap), 1);
	cr_assert(h_alive(P.relay) == 1);
}

Test(e2e, gateway_redials_after_the_link_drops)
{
	char err[1024];
	int64_t t0;

	start_echo("echo");
	start_tap();
	start_pair(TLS_RELAY, TLS_GW);
	wait_up();
	cr_assert_eq(tap_kill(P.tap), 1);
	t0 = h_now_ms();
	cr_assert_eq(tap_wait_conns(P.tap, 2, 10000), 0, "the gateway did not redial");
	cr_assert_lt(h_now_ms() - t0, 5000);
	while (h_file_count(P.gw_log, "is up") < 2 && h_now_ms() - t0 < 10000)
		h_sleep_ms(20);
	cr_assert_eq(h_file_count(P.gw_log, "is up"), 2, "%s", h_read_file(P.gw_log, NULL));
	cr_assert_eq(h_echo_clients(P.svc_port, 4, 100000, 13, 30000, err, sizeof(err)),
		     0, "%s", err);
	cr_assert_eq(h_file_count(P.gw_hooks, "link_closed"), 1);
}

Test(e2e, clients_are_held_until_the_link_is_up)
{
	char conf[600];
	int fd;

	start_echo("echo");
	/* The gateway first, with no relay: its clients wait. */
	start_tap();
	snprintf(conf, sizeof(conf), "%s/gateway.ini", P.dir);
	cr_assert_eq(h_write_file(conf,
		"[gateway]\nnode_name = gw1\nrelay = 127.0.0.1:%d\n"
		"server_name = relay\nca = certs/ca.crt\ncert = certs/gw1.crt\n"
		"key = certs/gw1.key\nredial_min = 100ms\nredial_max = 200ms\n"
		"hold_timeout = 20s\n[service echo]\nlisten = 127.0.0.1:%d\n",
		tap_port(P.tap), P.svc_port), 0);
	P.gw = spawn_bin("tlsplex-gateway", conf, P.gw_log);
	cr_assert_eq(h_wait_port(P.svc_port, 5000), 0);
	fd = connect_port(P.svc_port);
	cr_assert_geq(fd, 0);
	cr_assert_eq(h_wait_file_contains(P.gw_log, "held: no link", 3000), 0,
		     "%s", h_read_file(P.gw_log, NULL));
	/* Now the relay comes up; the held client is carried. */
	snprintf(conf, sizeof(conf), "%s/relay.ini", P.dir);
	cr_assert_eq(h_write_file(conf,
		"[relay]\nnode_name = relay\nlisten = 127.0.0.1:%d\n%s"
		"ca = certs/ca.crt\n[service echo]\nbackend = 127.0.0.1:%d\n"
		"[peer gw1]\n", P.relay_port, TLS_RELAY, P.backend_port), 0);
	P.relay = spawn_bin("tlsplex-relay", conf, P.relay_log);
	cr_assert_eq(echo_once(fd, "held and then carried", 10000), 0,
		     "%s", h_read_file(P.gw_log, NULL));
	close(fd);
}

Test(e2e, hold_timeout_zero_refuses_at_once)
{
	char conf[600];
	int fd;

	snprintf(conf, sizeof(conf), "%s/gateway.ini", P.dir);
	cr_assert_eq(h_write_file(conf,
		"[gateway]\nnode_name = gw1\nrelay = 127.0.0.1:%d\ntls = off\n"
		"hold_timeout = 0\n[service echo]\nlisten = 127.0.0.1:%d\n",
		h_free_port(), P.svc_port), 0);
	P.gw = spawn_bin("tlsplex-gateway", conf, P.gw_log);
	cr_assert_eq(h_wait_port(P.svc_port, 5000), 0);
	fd = connect_port(P.svc_port);
	cr_assert_geq(fd, 0);
	cr_assert(closed_within(fd, 1000), "client was not refused at once");
	close(fd);
	cr_assert_eq(h_wait_file_contains(P.gw_log, "hold_timeout = 0", 1000), 0);
}

Test(e2e, dead_link_is_detected_and_its_streams_closed)
{
	int fd;
	int64_t t0;

	start_echo("echo");
	start_tap();
	start_pair("tls = require\ncert = certs/relay.crt\nkey = certs/relay.key\n"
		   "client_cert = require\nkeepalive = 200ms\nkeepalive_timeout = 1s\n",
		   TLS_GW "keepalive = 200ms\nkeepalive_timeout = 1s\n");
	wait_up();
	fd = connect_port(P.svc_port);
	cr_assert_geq(fd, 0);
	cr_assert_eq(echo_once(fd, "before the silence", 5000), 0);
	/* The network goes silent: nothing passes, nothing is reset. */
	tap_set_paused(P.tap, 1);
	t0 = h_now_ms();
	cr_assert(closed_within(fd, 5000), "stream not closed on a dead link");
	cr_assert_lt(h_now_ms() - t0, 2500, "dead link noticed after %lld ms",
		     (long long)(h_now_ms() - t0));
	close(fd);
	cr_assert_eq(h_wait_file_contains(P.gw_log, "the link is dead", 2000), 0);
	cr_assert_eq(h_wait_file_contains(P.relay_log, "the link is dead", 2000), 0);
	/* The network returns; the gateway redials and works again. */
	tap_set_paused(P.tap, 0);
	while (h_file_count(P.gw_log, "is up") < 2 && h_now_ms() - t0 < 15000)
		h_sleep_ms(20);
	fd = connect_port(P.svc_port);
	cr_assert_eq(echo_once(fd, "after the silence", 10000), 0,
		     "%s", h_read_file(P.gw_log, NULL));
	close(fd);
}

Test(e2e, goaway_drains_the_link_and_new_streams_use_a_fresh_one)
{
	int old_fd;
	char err[1024];

	start_echo("echo");
	start_tap();
	start_pair(TLS_RELAY, TLS_GW);
	wait_up();
	old_fd = connect_port(P.svc_port);
	cr_assert_eq(echo_once(old_fd, "an old stream", 5000), 0);
	cr_assert_eq(kill(P.relay, SIGUSR1), 0);
	cr_assert_eq(tap_wait_conns(P.tap, 2, 5000), 0, "no fresh link was dialled");
	while (h_file_count(P.gw_log, "is up") < 2)
		h_sleep_ms(20);
	/* New clients go over the fresh link... */
	cr_assert_eq(h_echo_clients(P.svc_port, 4, 50000, 17, 30000, err, sizeof(err)),
		     0, "%s", err);
	cr_assert_gt(tap_bytes(P.tap, 1, TAP_C2S, &(size_t){0}) != NULL, 0);
	/* ...while the old stream still works on the old one. */
	cr_assert_eq(echo_once(old_fd, "still served while draining", 5000), 0);
	cr_assert_eq(tap_conn_closed(P.tap, 0), 0, "the old link closed too early");
	close(old_fd);
	/* With its last stream gone the old link closes by itself. */
	{
		int64_t t0 = h_now_ms();

		while (tap_conn_closed(P.tap, 0) != 1 && h_now_ms() - t0 < 5000)
			h_sleep_ms(20);
	}
	cr_assert_eq(tap_conn_closed(P.tap, 0), 1, "the drained link stayed open");
	cr_assert(h_file_count(P.gw_log, "drained") + h_file_count(P.relay_log, "drained") >= 1);
	cr_assert_eq(tap_conn_count(P.tap), 2);
}

/* Appends text to one of the pair's config files. */
static void
conf_append(const char *name, const char *fmt, int port)
{
	char path[600], add[256], *text;

	snprintf(path, sizeof(path), "%s/%s", P.dir, name);
	text = h_read_file(path, NULL);
	cr_assert_not_null(text);
	snprintf(add, sizeof(add), fmt, port);
	cr_assert_eq(h_write_file(path, "%s%s", text, add), 0);
	free(text);
}

Test(e2e, sighup_reload_adds_a_service_without_dropping_streams)
{
	int old_fd, fd, port2 = h_free_port();

	start_echo("echo");
	start_tap();
	start_pair(TLS_RELAY, TLS_GW);
	wait_up();
	old_fd = connect_port(P.svc_port);
	cr_assert_eq(echo_once(old_fd, "before the reload", 5000), 0);

	conf_append("relay.ini", "[service echo2]\nbackend = 127.0.0.1:%d\n",
		    P.backend_port);
	cr_assert_eq(kill(P.relay, SIGHUP), 0);
	cr_assert_eq(h_wait_file_contains(P.relay_log, "configuration reloaded", 5000), 0,
		     "%s", h_read_file(P.relay_log, NULL));
	conf_append("gateway.ini", "[service echo2]\nlisten = 127.0.0.1:%d\n", port2);
	cr_assert_eq(kill(P.gw, SIGHUP), 0);
	cr_assert_eq(h_wait_file_contains(P.gw_log, "configuration reloaded", 5000), 0,
		     "%s", h_read_file(P.gw_log, NULL));
	cr_assert_eq(h_wait_port(port2, 3000), 0, "the new service does not listen");

	/* The new service works, over the same link; the old stream too. */
	fd = connect_port(port2);
	cr_assert_eq(echo_once(fd, "a new service after the reload", 5000), 0,
		     "%s", h_read_file(P.relay_log, NULL));
	close(fd);
	fd = connect_port(P.svc_port);
	cr_assert_eq(echo_once(fd, "an old service after the reload", 5000), 0);
	close(fd);
	cr_assert_eq(echo_once(old_fd, "a stream older than the reload", 5000), 0);
	close(old_fd);
	cr_assert_eq(tap_conn_count(P.tap), 1, "the reload dropped the link");
}

/* -v raises the file's log_level at start and again after a reload: with
 * log_level = error and -vv the reload's info line is written. */
Test(e2e, sighup_keeps_the_verbosity_of_the_command_line)
{
	char path[600], conf[600], log[600];
	const char *argv[5];
	int port = h_free_port();

	snprintf(path, sizeof(path), "%s/tlsplex-relay", h_build_dir());
	snprintf(conf, sizeof(conf), "%s/verbose.ini", P.dir);
	snprintf(log, sizeof(log), "%s/verbose.log", P.dir);
	cr_assert_eq(h_write_file(conf, "[relay]\nlisten = 127.0.0.1:%d\n"
				  "tls = off\nlog_level = error\n", port), 0);
	argv[0] = path;
	argv[1] = "-vv";
	argv[2] = "-c";
	argv[3] = conf;
	argv[4] = NULL;
	P.relay = h_spawn(argv, log);
	cr_assert_gt(P.relay, 0);
	cr_assert_eq(h_wait_port(port, 5000), 0, "%s", h_read_file(log, NULL));
	cr_assert_eq(h_wait_file_contains(log, "listening for links", 2000), 0,
		     "%s", h_read_file(log, NULL));
	cr_assert_eq(kill(P.relay, SIGHUP), 0);
	cr_assert_eq(h_wait_file_contains(log, "configuration reloaded", 5000),
		     0, "-vv was lost in the reload:\n%s", h_read_file(log, NULL));
	cr_assert_eq(h_alive(P.relay), 1);
}

Test(e2e, sighup_with_a_bad_file_keeps_the_running_configuration)
{
	char path[600];
	int fd;

	start_echo("echo");
	start_tap();
	start_pair(TLS_RELAY, TLS_GW);
	wait_up();
	snprintf(path, sizeof(path), "%s/relay.ini", P.dir);
	cr_assert_eq(h_write_file(path, "[relay]\nlisten = 127.0.0.1:1\nbogus = 1\n"), 0);
	cr_assert_eq(kill(P.relay, SIGHUP), 0);
	cr_assert_eq(h_wait_file_contains(P.relay_log, "reload rejected", 5000), 0,
		     "%s", h_read_file(P.relay_log, NULL));
	cr_assert_eq(h_wait_file_contains(P.relay_log, "relay.ini:3", 1000), 0);
	snprintf(path, sizeof(path), "%s/gateway.ini", P.dir);
	cr_assert_eq(h_write_file(path, "[gateway]\nrelay = nowhere\n"), 0);
	cr_assert_eq(kill(P.gw, SIGHUP), 0);
	cr_assert_eq(h_wait_file_contains(P.gw_log, "reload rejected", 5000), 0,
		     "%s", h_read_file(P.gw_log, NULL));
	fd = connect_port(P.svc_port);
	cr_assert_eq(echo_once(fd, "still running as before", 5000), 0);
	close(fd);
	cr_assert(h_alive(P.relay) == 1 && h_alive(P.gw) == 1);
}

Test(e2e, verify_refuses_a_gateway_without_a_certificate_before_tls)
{

	/* The relay verifies (tls = verify); the gateway has no cert. */
	assert_refused("tls = verify\ncert = certs/relay.crt\nkey = certs/relay.key\n",
		       "tls = require\n",
		       "the accepting side requires a client certificate of this peer (tls = verify");
	cr_assert_eq(h_wait_file_contains(P.relay_log, "[peer gw1] has tls = verify: node "
					  "'gw1' must present a certificate", 1000), 0,
		     "%s", h_read_file(P.relay_log, NULL));
	/* The REFUSE on the wire names CERT_REQUIRED. */
	{
		size_t len, used;
		const uint8_t *s2c = tap_bytes(P.tap, 0, TAP_S2C, &len);
		struct neg_decoder *d = neg_decoder_new();

		cr_assert_not_null(s2c);
		cr_assert_eq(neg_decoder_feed(d, s2c, len, &used), NEG_DONE);
		cr_assert_eq(neg_decoder_msg(d)->type, NEG_REFUSE);
		cr_assert_eq(neg_decoder_msg(d)->outcome.reason, NEG_R_CERT_REQUIRED);
		neg_decoder_free(d);
	}
	cr_assert_eq(h_file_count(P.relay_hooks, "handshake_pending"), 0);
}

Test(e2e, verify_with_a_certificate_links_like_require)
{
	char err[1024];
	char *line;

	start_echo("echo");
	start_tap();
	start_pair("tls = verify\ncert = certs/relay.crt\nkey = certs/relay.key\n",
		   "tls = verify\n" "cert = certs/gw1.crt\nkey = certs/gw1.key\n");
	wait_up();
	cr_assert_eq(h_echo_clients(P.svc_port, 2, 10000, 5, 30000, err, sizeof(err)),
		     0, "%s", err);
	line = hook_line(P.relay_hooks, "handshake_done");
	cr_assert_not_null(strstr(line, "CN=gw1"), "%s", line);
	free(line);
}
