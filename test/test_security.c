/*
 * Connection security, stages 1 and 3, end to end with the real daemons:
 * allow/deny lists and limits before a byte is read, partner definitions
 * ([peer], [template]), identity binding, per-peer and per-service
 * settings, and tls_sticky across a restart.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "neg.h"
#include "pair.h"

TestSuite(security, .init = pair_init, .fini = pair_fini, .timeout = 120);

#define PLAIN "tls = off\n"

/* Waits for text in a daemon log, failing with the log when it is not
 * there within ms. */
static void
expect_log(const char *log, const char *text, int ms)
{
	if (h_wait_file_contains(log, text, ms) == 0)
		return;
	cr_assert_fail("'%s' not logged within %d ms; the log:\n%s", text, ms,
		 h_read_file(log, NULL));
}

/* No link comes up within ms: the gateway log still holds only ups
 * "link N to the relay (node R) is up (...)" lines, as many as before
 * this phase of the test. */
static void
expect_no_link_after(int ups, int ms)
{
	h_sleep_ms(ms);
	cr_assert_eq(h_file_count(P.gw_log, ") is up ("), ups,
		     "the link came up; gateway log:\n%s",
		     h_read_file(P.gw_log, NULL));
}

#define expect_no_link(ms) expect_no_link_after(0, ms)

/* A client of port whose echo works; returns its fd. */
static int
echo_client(int port)
{
	int fd = connect_port(port);

	cr_assert_geq(fd, 0, "connect: %s", strerror(errno));
	cr_assert_eq(echo_once(fd, "hello through the pair", 5000), 0,
		     "no echo on port %d; gateway log:\n%s", port,
		     h_read_file(P.gw_log, NULL));
	return fd;
}

/* A client of port that the gateway closes at once. */
static void
expect_client_refused(int port)
{
	int fd = connect_port(port);

	cr_assert_geq(fd, 0);
	send(fd, "x", 1, MSG_NOSIGNAL);
	cr_assert(closed_within(fd, 2000), "the client was not closed");
	close(fd);
}

/* Connects to the relay's link port and decodes its answer, which must be
 * a REFUSE; returns its reason. */
static uint16_t
refusal_on_link_port(void)
{
	struct neg_decoder *dec = neg_decoder_new();
	uint8_t buf[NEG_MAX_LEN];
	int fd = connect_port(P.relay_port);
	int64_t end = h_now_ms() + 3000;
	enum neg_status st = NEG_NEED_MORE;
	uint16_t reason;

	cr_assert_not_null(dec);
	cr_assert_geq(fd, 0);
	while (st == NEG_NEED_MORE && h_now_ms() < end) {
		struct pollfd p = { fd, POLLIN, 0 };
		ssize_t n;
		size_t used = 0;

		if (poll(&p, 1, 100) <= 0)
			continue;
		n = recv(fd, buf, sizeof(buf), 0);
		if (n <= 0)
			break;
		st = neg_decoder_feed(dec, buf, (size_t)n, &used);
	}
	close(fd);
	cr_assert_eq(st, NEG_DONE, "no complete negotiation message came back");
	cr_assert_eq(neg_decoder_msg(dec)->type, NEG_REFUSE);
	reason = neg_decoder_msg(dec)->outcome.reason;
	neg_decoder_free(dec);
	return reason;
}

/* ---- stage 1: before a byte is read ------------------------------------ */

Test(security, relay_deny_list_refuses_links_and_rate_limits_its_log)
{
	int burst = 40;

	start_echo("echo");
	start_pair(PLAIN "deny = 127.0.0.0/8\n", PLAIN);
	expect_log(P.relay_log, "link listener: connection from 127.0.0.1:", 5000);
	expect_log(P.relay_log, "refused: its address is in the deny list of [relay]",
		   1000);
	/* A burst: every connection is closed, few are logged one by one. */
	for (int i = 0; i < burst; i++) {
		int fd = connect_port(P.relay_port);

		cr_assert_geq(fd, 0);
		cr_assert(closed_within(fd, 2000), "connection %d stayed open", i);
		close(fd);
	}
	expect_log(P.relay_log, "not logged one by one", 4000);
	cr_assert_lt(h_file_count(P.relay_log, "refused: its address"), burst,
		     "every refusal of the burst was logged");
	expect_no_link(200);
}

Test(security, relay_allow_list_admits_only_its_networks)
{
	start_echo("echo");
	start_pair(PLAIN "allow = 10.0.0.0/8, fd00::/8\n", PLAIN);
	expect_log(P.relay_log, "refused: its address is not in the allow list of [relay]",
		   5000);
	expect_no_link(300);
	h_stop_all();

	start_echo("echo");
	start_pair(PLAIN "allow = 10.0.0.0/8, 127.0.0.1\n", PLAIN);
	wait_up();
	close(echo_client(P.svc_port));
}

Test(security, service_deny_list_resets_clients_at_once)
{
	P.echo_extra = "deny = 127.0.0.0/8\n";
	start_echo("echo");
	start_pair(PLAIN, PLAIN);
	wait_up();
	expect_client_refused(P.svc_port);
	expect_log(P.gw_log, "service echo: connection from 127.0.0.1:", 2000);
	expect_log(P.gw_log, "in the deny list of [service echo]", 1000);
}

Test(security, max_clients_refuses_the_excess_and_counts_down)
{
	int a, b;

	P.echo_extra = "max_clients = 2\n";
	start_echo("echo");
	start_pair(PLAIN, PLAIN);
	wait_up();
	a = echo_client(P.svc_port);
	b = echo_client(P.svc_port);
	expect_client_refused(P.svc_port);
	expect_log(P.gw_log, "refused: max_clients (2) clients are connected", 2000);
	close(a);
	h_sleep_ms(300);
	a = echo_client(P.svc_port);
	cr_assert_eq(echo_once(b, "still served", 5000), 0);
	close(a);
	close(b);
}

Test(security, links_per_source_limit_refuses_as_busy)
{
	start_echo("echo");
	start_pair(PLAIN "max_links_per_source = 1\n", PLAIN);
	wait_up();
	cr_assert_eq(refusal_on_link_port(), NEG_R_BUSY);
	expect_log(P.relay_log, "refused: max_links_per_source (1) links are open from "
		   "this address", 2000);
	close(echo_client(P.svc_port));
}

Test(security, link_limit_refuses_as_busy)
{
	start_echo("echo");
	start_pair(PLAIN "max_links = 1\n", PLAIN);
	wait_up();
	cr_assert_eq(refusal_on_link_port(), NEG_R_BUSY);
	expect_log(P.relay_log, "refused: max_links (1) links are open", 2000);
	close(echo_client(P.svc_port));
}

/* ---- stage 3: partner definitions -------------------------------------- */

Test(security, unknown_peer_is_refused_with_its_reason)
{
	start_echo("echo");
	start_pair_with(PLAIN, PLAIN, "[peer other]\n", "");
	expect_log(P.relay_log, "node 'gw1' matches no [peer] or [template] section",
		   5000);
	expect_log(P.gw_log, "node 'gw1' is not a known partner of this relay", 2000);
	expect_no_link(200);
}

Test(security, template_admits_by_name_and_source)
{
	start_echo("echo");
	start_pair_with(PLAIN, PLAIN,
			"[template lab]\nmatch_name = gw*, x\nmatch_source = 127.0.0.0/8\n",
			"");
	wait_up();
	expect_log(P.relay_log, "node 'gw1' admitted by [template lab]", 1000);
	close(echo_client(P.svc_port));
}

Test(security, template_with_another_source_does_not_admit)
{
	start_echo("echo");
	start_pair_with(PLAIN, PLAIN,
			"[template far]\nmatch_source = 10.0.0.0/8\n"
			"[template named]\nmatch_name = other-*\n", "");
	expect_log(P.gw_log, "is not a known partner of this relay", 5000);
	expect_no_link(200);
}

Test(security, any_peer_template_warns_at_start_and_on_use)
{
	start_echo("echo");
	start_pair_with(PLAIN, PLAIN, "[template all]\n", "");
	wait_up();
	expect_log(P.relay_log, "[template all] (line", 1000);
	expect_log(P.relay_log, "admits any peer that reaches the link port", 1000);
	expect_log(P.relay_log, "admitted by [template all], which admits any peer", 1000);
}

Test(security, template_issuer_is_checked_after_the_handshake)
{
	int ups;

	start_echo("echo");
	start_pair_with(TLS_RELAY, TLS_GW,
			"[template ours]\nmatch_issuer = *tlsplex test CA*\n", "");
	wait_up();
	close(echo_client(P.svc_port));
	h_stop_all();

	ups = h_file_count(P.gw_log, ") is up (");
	start_echo("echo");
	start_pair_with(TLS_RELAY, TLS_GW,
			"[template theirs]\nmatch_issuer = *rogue*\n", "");
	expect_log(P.relay_log, "matches no match_issuer pattern of [template theirs]",
		   5000);
	expect_no_link_after(ups, 300);
}

Test(security, certificate_must_name_the_claimed_node)
{
	P.gw_node = "gw2";
	start_echo("echo");
	start_pair_with(TLS_RELAY, TLS_GW, "[peer gw2]\n", "");
	expect_log(P.relay_log, "the peer claims node name 'gw2' but its certificate "
		   "names", 5000);
	expect_no_link(300);
}

Test(security, identity_setting_binds_another_name)
{
	P.gw_node = "gw2";
	start_echo("echo");
	start_pair_with(TLS_RELAY, TLS_GW, "[peer gw2]\nidentity = gw*\n", "");
	wait_up();
	close(echo_client(P.svc_port));
}

Test(security, peer_services_list_refuses_other_services)
{
	char rsec[200], gsec[200];
	int port2 = h_free_port();

	start_echo("echo");
	snprintf(rsec, sizeof(rsec), "[service echo2]\nbackend = 127.0.0.1:%d\n"
		 "[peer gw1]\nservices = echo\n", P.backend_port);
	snprintf(gsec, sizeof(gsec), "[service echo2]\nlisten = 127.0.0.1:%d\n", port2);
	start_pair_with(PLAIN, PLAIN, rsec, gsec);
	wait_up();
	close(echo_client(P.svc_port));
	expect_client_refused(port2);
	expect_log(P.relay_log, "stream for service 'echo2' refused: [peer gw1] does not "
		   "list it in services", 2000);
}

Test(security, service_client_cert_require_needs_a_certificate)
{
	char rsec[200], gsec[200];
	int port2 = h_free_port();

	start_echo("echo");
	snprintf(rsec, sizeof(rsec), "[service certonly]\nbackend = 127.0.0.1:%d\n"
		 "client_cert = require\n", P.backend_port);
	snprintf(gsec, sizeof(gsec), "[service certonly]\nlisten = 127.0.0.1:%d\n",
		 port2);
	start_pair_with("tls = require\ncert = certs/relay.crt\nkey = certs/relay.key\n"
			"client_cert = optional\n", "tls = prefer\n", rsec, gsec);
	wait_up();
	close(echo_client(P.svc_port));
	expect_client_refused(port2);
	expect_log(P.relay_log, "stream for service 'certonly' refused: the service "
		   "requires a client certificate", 2000);
}

Test(security, peer_max_streams_limits_its_streams)
{
	int a, b;

	start_echo("echo");
	start_pair_with(PLAIN, PLAIN, "[peer gw1]\nmax_streams = 2\n", "");
	wait_up();
	a = echo_client(P.svc_port);
	b = echo_client(P.svc_port);
	expect_client_refused(P.svc_port);
	expect_log(P.gw_log, "stream limit is reached", 2000);
	close(a);
	close(b);
}

/* ---- tls_sticky -------------------------------------------------------- */

#define STICKY_RELAY \
	"tls = allow\ncert = certs/relay.crt\nkey = certs/relay.key\n" \
	"client_cert = require\ntls_sticky = yes\nstate_file = sticky.state\n"

Test(security, sticky_peer_is_refused_plaintext_after_a_restart)
{
	char path[700], *state;

	start_echo("echo");
	/* Not yet seen with TLS: plaintext is accepted. */
	start_pair(STICKY_RELAY, PLAIN);
	wait_up();
	expect_log(P.gw_log, "(plaintext)", 1000);
	h_stop(P.gw, 5000);

	/* TLS once: remembered in the state file. */
	start_gateway(TLS_GW, "");
	expect_log(P.relay_log, "tls_sticky: gw1 completed TLS", 5000);
	snprintf(path, sizeof(path), "%s/sticky.state", P.dir);
	state = h_read_file(path, NULL);
	cr_assert_not_null(state, "no state file");
	cr_assert(strstr(state, "\ntls gw1\n") != NULL, "state file:\n%s", state);
	free(state);
	h_stop(P.gw, 5000);

	/* After a relay restart, plaintext from gw1 is refused. */
	cr_assert_eq(h_stop(P.relay, 5000), 0);
	start_relay(STICKY_RELAY, "");
	expect_log(P.relay_log, "tls_sticky state", 1000);
	start_gateway(PLAIN, "");
	expect_log(P.relay_log, "node 'gw1' offers plaintext but has used TLS with this "
		   "relay before", 5000);
	expect_log(P.gw_log, "plaintext is refused", 2000);
}

Test(security, sticky_gateway_requires_tls_from_a_relay_it_knows)
{
	int ups;

	start_echo("echo");
	start_pair(STICKY_RELAY, TLS_GW "tls_sticky = yes\nstate_file = gw.state\n");
	wait_up();
	expect_log(P.gw_log, "tls_sticky: relay completed TLS", 2000);
	ups = h_file_count(P.gw_log, ") is up (");
	h_stop(P.gw, 5000);
	cr_assert_eq(h_stop(P.relay, 5000), 0);
	/* The relay now says off; the gateway still demands TLS. */
	start_relay(PLAIN, "");
	start_gateway(TLS_GW "tls_sticky = yes\nstate_file = gw.state\n", "");
	expect_log(P.gw_log, "offering tls = require", 5000);
	expect_log(P.gw_log, "the dialling side requires TLS but the accepting "
		   "side has TLS off", 2000);
	expect_no_link_after(ups, 500);
}
