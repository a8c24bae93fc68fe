/*
 * Reverse services end to end: the relay listens for a [service] with
 * `listen` and `gateway`, opens each client's stream toward that
 * gateway over the gateway's own link, and the gateway connects it to
 * its [service] with `backend`.  The real daemons on loopback, an echo
 * backend near the gateway, and a tap on the link where the bytes are
 * looked at.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "frame.h"
#include "neg.h"
#include "harness.h"
#include "pair.h"

TestSuite(reverse, .init = pair_init, .fini = pair_fini, .timeout = 120);

static int rev_port;       /* the relay's listener for [service rev] */

/* The relay's reverse service rev (with extra lines) for gateway gw1,
 * and more relay sections. */
static const char *
relay_rev(const char *extra, const char *more)
{
	static char buf[1024];

	if (rev_port == 0)
		rev_port = h_free_port();
	snprintf(buf, sizeof(buf), "[service rev]\nlisten = 127.0.0.1:%d\n"
		 "gateway = gw1\n%s%s", rev_port, extra, more);
	return buf;
}

/* The gateway's reverse service rev, connected to the echo backend. */
static const char *
gw_rev(const char *extra)
{
	static char buf[512];

	snprintf(buf, sizeof(buf), "[service rev]\nbackend = 127.0.0.1:%d\n%s",
		 P.backend_port, extra);
	return buf;
}

static void
wait_log(const char *log, const char *needle, int ms)
{
	cr_assert_eq(h_wait_file_contains(log, needle, ms), 0,
		     "no '%s' in %s:\n%s", needle, log, h_read_file(log, NULL));
}

/* A client of the relay's reverse listener that must be reset, promptly,
 * without a byte of echo. */
static void
assert_client_refused(int port, int ms)
{
	int fd = connect_port(port);
	int64_t t0 = h_now_ms();

	cr_assert_geq(fd, 0, "cannot connect to the relay's reverse listener");
	(void)send(fd, "hello", 5, MSG_NOSIGNAL);
	cr_assert(closed_within(fd, ms), "the client was not closed within %d ms",
		  ms);
	cr_assert_lt(h_now_ms() - t0, ms);
	close(fd);
}

/* ---- frames on a plaintext link --------------------------------------- */

struct opens {
	size_t n, even, named, data;
};

static int
opens_on_frame(void *ud, const struct frame_hdr *h, const uint8_t *p)
{
	struct opens *o = ud;

	if (h->type != FRAME_OPEN)
		return 0;
	o->n++;
	o->even += (h->stream & 1) == 0;
	o->named += h->len >= 4 && p[0] == 3 && memcmp(p + 1, "rev", 3) == 0;
	return 0;
}

static int
opens_on_data(void *ud, const struct frame_hdr *h, const uint8_t *chunk,
	      size_t n, int last)
{
	if ((h->stream & 1) == 0)
		((struct opens *)ud)->data += n;
	return 0;
}

/* The OPEN frames one direction of the tap's first link carried, and
 * the DATA bytes on even (acceptor-opened) streams. */
static struct opens
count_opens(int dir)
{
	static const struct frame_callbacks cb = {
		.on_frame = opens_on_frame,
		.on_data = opens_on_data,
	};
	struct opens o = { 0, 0, 0, 0 };
	const uint8_t *p;
	size_t len, off;
	struct frame_decoder *dec = frame_decoder_new(FRAME_MAX_PAYLOAD, &cb, &o);

	cr_assert_not_null(dec);
	p = tap_bytes(P.tap, 0, dir, &len);
	cr_assert_geq(len, 14);
	off = 14 + ((size_t)p[12] << 8 | p[13]);
	cr_assert_eq(frame_decoder_feed(dec, p + off, len - off), 0,
		     "the link's frames do not parse");
	frame_decoder_free(dec);
	return o;
}

/* The FLOW capabilities of the gateway's OFFER on the tap's link conn. */
static uint32_t
offer_flow(int conn)
{
	struct neg_decoder *dec = neg_decoder_new();
	const uint8_t *p;
	size_t len, used;
	uint32_t caps;

	cr_assert_eq(tap_wait_bytes(P.tap, conn, TAP_C2S, 14, 5000), 0);
	p = tap_bytes(P.tap, conn, TAP_C2S, &len);
	cr_assert_eq(neg_decoder_feed(dec, p, len, &used), NEG_DONE,
		     "the gateway's offer does not decode");
	cr_assert_eq(neg_decoder_msg(dec)->type, NEG_OFFER);
	caps = neg_decoder_msg(dec)->params.flow_caps;
	neg_decoder_free(dec);
	return caps;
}

/* ---- data ------------------------------------------------------------- */

/* Many clients of the relay's listener, each echoed by the backend next
 * to the gateway over TLS: every byte intact both ways, and each client
 * half-closes first and still reads its whole echo and the end. */
Test(reverse, many_clients_both_ways_over_tls)
{
	char err[4096];

	start_echo("echo");
	start_pair_with(TLS_RELAY, TLS_GW, relay_rev("", ""), gw_rev(""));
	wait_up();
	wait_log(P.relay_log, "reverse service rev: listening for clients", 2000);
	cr_assert_eq(h_echo_clients(rev_port, 100, 256 * 1024, 11, 90000, err,
				    sizeof(err)), 0, "reverse clients failed:\n%s",
		     err);
	/* Forward services run beside it on the same link. */
	cr_assert_eq(h_echo_clients(P.svc_port, 8, 64 * 1024, 12, 30000, err,
				    sizeof(err)), 0, "forward clients failed:\n%s",
		     err);
	cr_assert_eq(h_file_count(P.gw_log, "is not a reverse service"), 0);
	cr_assert_eq(h_file_count(P.relay_log, "reverse service rev: connection"), 0,
		     "a client was refused:\n%s", h_read_file(P.relay_log, NULL));
}

/* On a plaintext link the tap sees who opened: the relay's OPENs (even
 * ids) for rev, the gateway's offer with REVERSE, and the data of the
 * reverse streams both ways, larger than a stream window (so WINDOW
 * credit went both ways too). */
Test(reverse, the_relay_opens_even_streams_on_the_gateways_link)
{
	char err[4096];
	struct opens up, down;

	start_echo("echo");
	start_tap();
	start_pair_with("tls = off\n", "tls = off\n", relay_rev("", ""), gw_rev(""));
	wait_up();
	cr_assert_eq(h_echo_clients(rev_port, 16, 1 << 20, 21, 60000, err,
				    sizeof(err)), 0, "%s", err);
	cr_assert(offer_flow(0) & NEG_FLOW_REVERSE,
		  "the gateway did not announce REVERSE");
	down = count_opens(TAP_S2C);
	up = count_opens(TAP_C2S);
	cr_assert_eq(down.n, 16, "the relay sent %zu OPENs", down.n);
	cr_assert_eq(down.even, 16);
	cr_assert_eq(down.named, 16);
	cr_assert_eq(up.n, 0, "the gateway opened streams");
	cr_assert_geq(down.data, 16u << 20, "relay to gateway: %zu bytes", down.data);
	cr_assert_geq(up.data, 16u << 20, "gateway to relay: %zu bytes", up.data);
	cr_assert_eq(tap_conn_count(P.tap), 1);
}

/* A half-closed client keeps receiving: 2 MiB go up, the client shuts
 * its side, and all 2 MiB come back (more than the stream window), then
 * the end. */
Test(reverse, half_close_keeps_the_other_direction)
{
	static uint8_t out[2 << 20], in[2 << 20];
	size_t got = 0, sent = 0;
	int64_t end;
	int fd;

	start_echo("echo");
	start_pair_with(TLS_RELAY, TLS_GW, relay_rev("", ""), gw_rev(""));
	wait_up();
	fd = connect_port(rev_port);
	cr_assert_geq(fd, 0);
	h_payload_fill(out, sizeof(out), 5, 0);
	end = h_now_ms() + 30000;
	while ((sent < sizeof(out) || got < sizeof(in)) && h_now_ms() < end) {
		struct pollfd pfd = { fd, POLLIN | (sent < sizeof(out) ? POLLOUT : 0), 0 };
		ssize_t n;

		if (poll(&pfd, 1, 100) <= 0)
			continue;
		if ((pfd.revents & POLLOUT) && sent < sizeof(out)) {
			n = send(fd, out + sent, sizeof(out) - sent,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n > 0 && (sent += (size_t)n) == sizeof(out))
				cr_assert_eq(shutdown(fd, SHUT_WR), 0);
		}
		if (pfd.revents & POLLIN) {
			n = recv(fd, in + got, sizeof(in) - got, MSG_DONTWAIT);
			cr_assert(n > 0 || (n < 0 && errno == EAGAIN),
				  "the stream ended after %zu bytes", got);
			if (n > 0)
				got += (size_t)n;
		}
	}
	cr_assert_eq(sent, sizeof(out));
	cr_assert_eq(got, sizeof(in), "%zu bytes came back", got);
	cr_assert_eq(memcmp(in, out, sizeof(in)), 0, "the echo differs");
	cr_assert(closed_within(fd, 5000), "no end after the echo");
	close(fd);
}

/* ---- refusals ------------------------------------------------------- */

/* The gateway's backend refuses: the relay's client is reset at once,
 * and the link carries on. */
Test(reverse, backend_refused_at_the_gateway_resets_the_client)
{
	char gw[256], err[4096];

	start_echo("echo");
	snprintf(gw, sizeof(gw), "[service rev]\nbackend = 127.0.0.1:%d\n",
		 h_free_port());
	start_pair_with(TLS_RELAY, TLS_GW, relay_rev("", ""), gw);
	wait_up();
	assert_client_refused(rev_port, 2000);
	wait_log(P.gw_log, "cannot connect to the backend", 2000);
	wait_log(P.relay_log, "could not connect to the service's backend", 2000);
	/* The link still serves forward streams. */
	cr_assert_eq(h_echo_clients(P.svc_port, 4, 4096, 3, 20000, err,
				    sizeof(err)), 0, "%s", err);
}

/* No link from the gateway: the relay's listener refuses each client at
 * once (a reset, logged); once the gateway links, clients get through. */
Test(reverse, no_link_from_the_gateway_refuses_at_once)
{
	char err[4096];
	int fd;

	start_echo("echo");
	start_relay(TLS_RELAY, relay_rev("", ""));
	wait_log(P.relay_log, "reverse service rev: listening", 2000);
	assert_client_refused(rev_port, 1000);
	wait_log(P.relay_log, "refused: gateway gw1 has no link up to this relay",
		 2000);
	start_gateway(TLS_GW, gw_rev(""));
	wait_up();
	fd = connect_port(rev_port);
	cr_assert_geq(fd, 0);
	cr_assert_eq(echo_once(fd, "after the link came up", 5000), 0);
	close(fd);
	cr_assert_eq(h_echo_clients(rev_port, 4, 4096, 4, 20000, err,
				    sizeof(err)), 0, "%s", err);
}

/* tls = require on the relay's reverse service: never opened on a
 * plaintext link; the client is reset with a logged reason and the
 * gateway sees no stream.  The same service without it works there. */
Test(reverse, tls_require_is_never_carried_on_a_plaintext_link)
{
	char more[256], gw[512];
	int fd, plain_port = h_free_port();
	struct opens down;

	start_echo("echo");
	start_tap();
	snprintf(more, sizeof(more), "[service plain]\nlisten = 127.0.0.1:%d\n"
		 "gateway = gw1\n", plain_port);
	snprintf(gw, sizeof(gw), "%s[service plain]\nbackend = 127.0.0.1:%d\n",
		 gw_rev(""), P.backend_port);
	/* A relay that may use TLS has a certificate; this link stays
	 * plaintext because both sides have tls = off. */
	start_pair_with("tls = off\ncert = certs/relay.crt\nkey = certs/relay.key\n",
			"tls = off\n", relay_rev("tls = require\n", more), gw);
	wait_up();
	assert_client_refused(rev_port, 1000);
	wait_log(P.relay_log, "the service requires TLS and link", 2000);
	cr_assert_eq(h_file_count(P.gw_log, "service 'rev'"), 0);
	down = count_opens(TAP_S2C);
	cr_assert_eq(down.n, 0, "the relay opened %zu streams", down.n);
	fd = connect_port(plain_port);
	cr_assert_geq(fd, 0);
	cr_assert_eq(echo_once(fd, "a plaintext service", 5000), 0);
	close(fd);
	down = count_opens(TAP_S2C);
	cr_assert_eq(down.n, 1, "the relay opened %zu streams", down.n);
}

/* The gateway's own tls = require on its reverse service: it refuses the
 * relay's stream on a plaintext link (TLS_REQUIRED), whatever the relay
 * thinks of the service. */
Test(reverse, the_gateway_refuses_its_tls_service_on_a_plaintext_link)
{
	start_echo("echo");
	start_pair_with("tls = off\n", "tls = off\n", relay_rev("", ""),
			gw_rev("tls = require\n"));
	wait_up();
	assert_client_refused(rev_port, 2000);
	wait_log(P.gw_log, "stream for reverse service 'rev' refused: the "
		 "service requires TLS", 2000);
	wait_log(P.relay_log, "service requires a TLS link", 2000);
}

/* The gateway connects reverse streams only to its own [service] with
 * backend: a name it does not have, or one of its forward services, is
 * refused (the relay cannot make it connect anywhere it likes). */
Test(reverse, the_gateway_refuses_services_it_has_not_configured)
{
	char more[256], gw[512];
	int fwd_port = h_free_port();

	start_echo("echo");
	/* The relay offers rev and fwd; the gateway has neither as a
	 * reverse service (fwd is a forward service there). */
	snprintf(more, sizeof(more), "[service fwd]\nlisten = 127.0.0.1:%d\n"
		 "gateway = gw1\n", fwd_port);
	snprintf(gw, sizeof(gw), "[service other]\nbackend = 127.0.0.1:%d\n"
		 "[service fwd]\nlisten = 127.0.0.1:%d\n", P.backend_port,
		 h_free_port());
	start_pair_with(TLS_RELAY, TLS_GW, relay_rev("", more), gw);
	wait_up();
	assert_client_refused(rev_port, 2000);
	wait_log(P.gw_log, "opened a stream for service 'rev', which is not a "
		 "reverse service here", 2000);
	assert_client_refused(fwd_port, 2000);
	wait_log(P.gw_log, "opened a stream for service 'fwd', which is not a "
		 "reverse service here", 2000);
	cr_assert_eq(h_file_count(P.relay_log, "stream refused: no such service"), 2,
		     "relay log:\n%s", h_read_file(P.relay_log, NULL));
}

/* A gateway that does not announce REVERSE (as an older version, or one
 * without reverse services, sends its offer) never gets a relay-opened
 * stream: the relay refuses the client itself, with the reason. */
Test(reverse, a_gateway_without_reverse_gets_no_relay_stream)
{
	struct opens down;

	start_echo("echo");
	start_tap();
	start_pair_with("tls = off\n", "tls = off\nlink_budget = off\n",
			relay_rev("", ""), "");
	wait_up();
	cr_assert_eq(offer_flow(0), 0, "an offer without reverse services "
		     "carries FLOW 0x%x", offer_flow(0));
	assert_client_refused(rev_port, 1000);
	wait_log(P.relay_log, "did not announce reverse services", 2000);
	down = count_opens(TAP_S2C);
	cr_assert_eq(down.n, 0, "the relay opened %zu streams", down.n);
	cr_assert_eq(h_file_count(P.gw_log, "opened a stream"), 0);
}

/* The relay's reverse listener applies the TCP-stage guard (its
 * service's allow and deny) and max_clients. */
Test(reverse, allow_deny_and_max_clients_on_the_relay_listener)
{
	char more[256];
	int fd[3], denied_port = h_free_port();

	start_echo("echo");
	snprintf(more, sizeof(more), "[service shut]\nlisten = 127.0.0.1:%d\n"
		 "gateway = gw1\ndeny = 127.0.0.0/8\n", denied_port);
	start_pair_with(TLS_RELAY, TLS_GW, relay_rev("max_clients = 2\n", more),
			gw_rev(""));
	wait_up();
	assert_client_refused(denied_port, 1000);
	wait_log(P.relay_log, "reverse service shut: connection from 127.0.0.1", 2000);
	for (int i = 0; i < 2; i++) {
		fd[i] = connect_port(rev_port);
		cr_assert_geq(fd[i], 0);
		cr_assert_eq(echo_once(fd[i], "held open", 5000), 0);
	}
	assert_client_refused(rev_port, 1000);
	wait_log(P.relay_log, "max_clients (2) clients are connected", 2000);
	close(fd[0]);
	/* The slot comes back once the stream is gone. */
	for (int tries = 0; tries < 50; tries++) {
		fd[2] = connect_port(rev_port);
		cr_assert_geq(fd[2], 0);
		if (echo_once(fd[2], "a free slot", 2000) == 0)
			break;
		close(fd[2]);
		fd[2] = -1;
		h_sleep_ms(50);
	}
	cr_assert_geq(fd[2], 0, "the freed slot was never reused");
	close(fd[1]);
	close(fd[2]);
}

/* SIGHUP that gives the gateway its first reverse service: the running
 * link announced none, so it drains and the fresh link carries them. */
Test(reverse, a_reload_that_adds_the_first_reverse_service_relinks)
{
	char conf[600];
	FILE *f;

	start_echo("echo");
	start_pair_with(TLS_RELAY, TLS_GW, relay_rev("", ""), "");
	wait_up();
	assert_client_refused(rev_port, 1000);
	snprintf(conf, sizeof(conf), "%s/gateway.ini", P.dir);
	f = fopen(conf, "a");
	cr_assert_not_null(f);
	fputs(gw_rev(""), f);
	fclose(f);
	kill(P.gw, SIGHUP);
	wait_log(P.gw_log, "has reverse services now", 5000);
	for (int tries = 0; tries < 100; tries++) {
		int fd = connect_port(rev_port);

		if (fd >= 0 && echo_once(fd, "after the reload", 2000) == 0) {
			close(fd);
			return;
		}
		if (fd >= 0)
			close(fd);
		h_sleep_ms(50);
	}
	cr_assert_fail("no reverse stream after the reload:\n%s",
		       h_read_file(P.gw_log, NULL));
}

/* A gateway that opens a stream for a name the relay serves in reverse
 * is refused: a reverse service has no backend at the relay. */
Test(reverse, a_forward_stream_for_a_reverse_name_is_refused_by_the_relay)
{
	char gw[256];
	int port = h_free_port(), fd;

	start_echo("echo");
	snprintf(gw, sizeof(gw), "[service rev]\nlisten = 127.0.0.1:%d\n", port);
	start_pair_with(TLS_RELAY, TLS_GW, relay_rev("", ""), gw);
	wait_up();
	fd = connect_port(port);
	cr_assert_geq(fd, 0);
	(void)send(fd, "x", 1, MSG_NOSIGNAL);
	cr_assert(closed_within(fd, 2000), "the client was not closed");
	close(fd);
	wait_log(P.relay_log, "stream for service 'rev' refused: it is a reverse "
		 "service here", 2000);
}

/* SIGTERM on the relay closes the reverse listener at once (new clients
 * are refused by the kernel) while an open reverse stream finishes; then
 * the relay exits 0. */
Test(reverse, sigterm_closes_the_listener_and_lets_open_streams_finish)
{
	int fd, late;

	start_echo("echo");
	start_pair_with(TLS_RELAY, TLS_GW, relay_rev("", ""), gw_rev(""));
	wait_up();
	fd = connect_port(rev_port);
	cr_assert_geq(fd, 0);
	cr_assert_eq(echo_once(fd, "before the signal", 5000), 0);
	kill(P.relay, SIGTERM);
	for (int i = 0; i < 100 && h_port_listening(rev_port) == 1; i++)
		h_sleep_ms(20);
	cr_assert_eq(h_port_listening(rev_port), 0,
		     "the reverse listener is still open");
	late = connect_port(rev_port);
	cr_assert_lt(late, 0, "a client connected while the relay drains");
	cr_assert_eq(echo_once(fd, "while the relay drains", 5000), 0);
	close(fd);
	cr_assert_eq(h_wait_exit(P.relay, 8000), 0, "the relay did not exit 0");
}

/* client_cert = require on a reverse service: only on links whose
 * gateway presented a verified certificate. */
Test(reverse, client_cert_require_needs_the_gateways_certificate)
{
	char more[256], gw[512];
	int open_port = h_free_port(), fd;

	start_echo("echo");
	snprintf(more, sizeof(more), "[service open]\nlisten = 127.0.0.1:%d\n"
		 "gateway = gw1\n", open_port);
	snprintf(gw, sizeof(gw), "%s[service open]\nbackend = 127.0.0.1:%d\n",
		 gw_rev(""), P.backend_port);
	/* A TLS link from a gateway without a certificate. */
	start_pair_with("tls = require\ncert = certs/relay.crt\nkey = certs/relay.key\n"
			"client_cert = optional\n", "tls = prefer\n",
			relay_rev("client_cert = require\n", more), gw);
	wait_up();
	assert_client_refused(rev_port, 1000);
	wait_log(P.relay_log, "requires a client certificate and gateway gw1 "
		 "presented none", 2000);
	/* The same link carries a service without the demand. */
	fd = connect_port(open_port);
	cr_assert_geq(fd, 0);
	cr_assert_eq(echo_once(fd, "no certificate needed", 5000), 0);
	close(fd);
}

/* A pool of live links from one gateway (relay_links = 3): the relay
 * opens reverse streams on one of them that is up, and every byte comes
 * back; after SIGUSR1 on the relay drains them all and the gateway has
 * made fresh ones, the streams go on the fresh links. */
Test(reverse, a_pool_of_links_from_one_gateway_carries_reverse_streams)
{
	char err[4096];
	int64_t end;

	start_echo("echo");
	start_pair_with(TLS_RELAY, TLS_GW "relay_links = 3\n", relay_rev("", ""),
			gw_rev(""));
	end = h_now_ms() + 15000;
	while (h_file_count(P.gw_log, "is up") < 3 && h_now_ms() < end)
		h_sleep_ms(20);
	cr_assert_eq(h_file_count(P.gw_log, "is up"), 3, "gateway log:\n%s",
		     h_read_file(P.gw_log, NULL));
	cr_assert_eq(h_echo_clients(rev_port, 30, 64 * 1024, 31, 30000, err,
				    sizeof(err)), 0, "%s", err);
	kill(P.relay, SIGUSR1);
	end = h_now_ms() + 15000;
	while (h_file_count(P.gw_log, "is up") < 6 && h_now_ms() < end)
		h_sleep_ms(20);
	cr_assert_geq(h_file_count(P.gw_log, "is up"), 6, "no fresh links:\n%s",
		      h_read_file(P.gw_log, NULL));
	cr_assert_eq(h_echo_clients(rev_port, 30, 64 * 1024, 32, 30000, err,
				    sizeof(err)), 0, "after the drain: %s", err);
}
