/*
 * Attacks on the upgrade: the real daemons against a man in the middle,
 * a fake gateway or a fake relay (test/mitm.h).  Each test names what
 * the attacker does and asserts that the link dies (or, for the one
 * case the protocol cannot prevent, what the attacker gets), that the
 * daemons log why, and that nothing reaches a stream.
 */
#include <criterion/criterion.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "mitm.h"
#include "pair.h"
#include "policy.h"

#define RELAY_PREFER \
	"tls = prefer\ncert = certs/relay.crt\nkey = certs/relay.key\n" \
	"client_cert = require\n"
#define GW_REQUIRE "tls = require\ncert = certs/gw1.crt\nkey = certs/gw1.key\n"
#define TLS_12_13 "min_tls = 1.2\nmax_tls = 1.3\n"
#define SECRET "client secret that must never cross in the clear"
/* What the gateway logs when a link is up: "link N to the relay (node
 * relay) is up (TLS)". */
#define UP ") is up ("

static struct mitm *M;
static struct fake_relay *FR;
static struct witness *W;

/*
 * scripts/mkcerts.sh takes about 2 s, longer than most tests here: the
 * runner makes one set of certificates before the first test, and each
 * test copies it.  attack_init() is pair_init() with that copy.
 */
#define CERT_CACHE_ENV "TLSPLEX_ATTACK_CERTS"

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
	cert_cache_make(CERT_CACHE_ENV);
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
	cert_cache_remove(CERT_CACHE_ENV);
}

static void
attack_init(void)
{
	M = NULL;
	FR = NULL;
	W = NULL;
	pair_init_from(getenv(CERT_CACHE_ENV));
}

static void
attack_fini(void)
{
	pair_fini();
	mitm_stop(M);
	fake_relay_stop(FR);
	witness_stop(W);
	M = NULL;
	FR = NULL;
	W = NULL;
}

TestSuite(attack, .init = attack_init, .fini = attack_fini, .timeout = 60);

/* The witness stands in for the echo backend: it counts what arrives. */
static void
start_witness(void)
{
	W = witness_start(P.backend_port);
	cr_assert_not_null(W);
}

/* Gateway -> tap -> MITM -> relay, with the pair's configurations and
 * more sections for the relay. */
static void
start_pair_via_mitm_with(const char *relay_extra, const char *gw_extra,
			 const char *relay_sections, mitm_edit_fn fn, int flags)
{
	start_witness();
	M = mitm_start(P.relay_port, fn, NULL, flags);
	cr_assert_not_null(M);
	P.tap = tap_start(0, mitm_port(M));
	cr_assert_not_null(P.tap);
	start_pair_with(relay_extra, gw_extra, relay_sections, "");
}

static void
start_pair_via_mitm(const char *relay_extra, const char *gw_extra, mitm_edit_fn fn,
		    int flags)
{
	start_pair_via_mitm_with(relay_extra, gw_extra, "", fn, flags);
}

/* A real gateway (and an idle real relay) with the gateway dialling the
 * fake relay through the tap; a client of service echo is connected and
 * has sent SECRET.  Returns the client's descriptor. */
static int
start_gateway_against(fake_relay_fn fn, const char *gw_extra)
{
	int fd;

	start_witness();
	FR = fake_relay_start(fn, NULL);
	cr_assert_not_null(FR);
	P.tap = tap_start(0, fake_relay_port(FR));
	cr_assert_not_null(P.tap);
	start_pair(TLS_RELAY, gw_extra);
	cr_assert_eq(h_wait_port(P.svc_port, 5000), 0);
	fd = connect_port(P.svc_port);
	cr_assert_geq(fd, 0);
	cr_assert_eq(send(fd, SECRET, strlen(SECRET), MSG_NOSIGNAL), (ssize_t)strlen(SECRET));
	return fd;
}

static void
wait_log(const char *log, const char *needle, int ms)
{
	cr_assert_eq(h_wait_file_contains(log, needle, ms), 0, "%s lacks '%s':\n%s",
		     log, needle, h_read_file(log, NULL));
}

/* Waits for either needle in the log. */
static void
wait_log_either(const char *log, const char *a, const char *b, int ms)
{
	int64_t end = h_now_ms() + ms;

	while (h_file_count(log, a) + h_file_count(log, b) == 0 && h_now_ms() < end)
		h_sleep_ms(20);
	cr_assert_gt(h_file_count(log, a) + h_file_count(log, b), 0,
		     "%s has neither '%s' nor '%s':\n%s", log, a, b, h_read_file(log, NULL));
}

/* The MITM saw nothing from the gateway after its OFFER on conn. */
static void
assert_gateway_silent_after_offer(int conn)
{
	size_t len, neg = mitm_neg_len(M, conn, MITM_C2S);

	(void)mitm_bytes(M, conn, MITM_C2S, &len);
	cr_assert_gt(neg, 0u, "no OFFER on connection %d", conn);
	cr_assert_eq(len, neg, "the gateway sent %zu bytes after its OFFER on "
		     "connection %d", len - neg, conn);
}

/* No stream reached a backend; no link came up. */
static void
assert_nothing_carried(void)
{
	cr_assert_eq(witness_conns(W), 0, "a stream reached the backend");
	cr_assert_eq(witness_bytes(W), 0u);
	cr_assert_eq(h_file_count(P.gw_log, UP), 0, "a link came up");
}

/* --- injection: a MITM pipelines bytes in a later segment ------------------ */

/* On the first link, 300 ms after the message going dir, frames that
 * would open a stream to the echo backend and write to it. */
static void
inject_frames_later(struct mitm_edit *e, enum mitm_dir dir)
{
	int n;

	if (e->conn != 0 || e->dir != dir)
		return;
	n = fake_frames("echo", "INJECTED", e->extra, sizeof(e->extra));
	if (n < 0)
		return;
	e->extra_len = (size_t)n;
	e->later_ms = 300;
}

static void
inject_c2s_later(struct mitm_edit *e, void *arg)
{
	inject_frames_later(e, MITM_C2S);
}

static void
inject_s2c_later(struct mitm_edit *e, void *arg)
{
	inject_frames_later(e, MITM_S2C);
}

Test(attack, bytes_after_offer_in_a_later_segment_kill_the_link)
{
	int fd;

	start_pair_via_mitm(TLS_RELAY, TLS_GW, inject_c2s_later, 0);
	/* The relay answered, started TLS, and got the frames as its
	 * ClientHello: the handshake fails on both sides. */
	wait_log(P.relay_log, "TLS handshake failed", 10000);
	wait_log(P.gw_log, "TLS handshake failed", 5000);
	cr_assert_eq(mitm_wait_closed(M, 0, 5000), 0, "the attacked link stayed open");
	cr_assert_eq(witness_conns(W), 0, "an injected stream reached the backend");
	cr_assert_eq(h_file_count(P.relay_hooks, "handshake_done"), 0);
	/* Only that link: the gateway redials and the next one works. */
	wait_up();
	fd = connect_port(P.svc_port);
	cr_assert_eq(echo_once(fd, "after the attack", 5000), 0);
	close(fd);
	cr_assert_eq(witness_bytes(W), strlen("after the attack"),
		     "the injected DATA reached the backend");
}

Test(attack, bytes_after_decision_in_a_later_segment_kill_the_link)
{
	start_pair_via_mitm(TLS_RELAY, TLS_GW, inject_s2c_later, 0);
	/* The gateway sent its ClientHello and got the frames as the
	 * server's answer. */
	wait_log(P.gw_log, "TLS handshake failed", 10000);
	wait_log(P.relay_log, "TLS handshake failed", 5000);
	cr_assert_eq(mitm_wait_closed(M, 0, 5000), 0, "the attacked link stayed open");
	cr_assert_eq(witness_conns(W), 0, "an injected stream reached the backend");
	cr_assert_eq(h_file_count(P.gw_hooks, "handshake_done"), 0);
}

Test(attack, frames_after_offer_on_a_plaintext_link_fail_the_bind_check)
{
	/* tls = off on both sides: the relay takes the bytes after the
	 * OFFER as mux frames, and a blind injector cannot know the
	 * transcript hash that BIND must carry. */
	start_pair_via_mitm("tls = off\n", "tls = off\n", inject_c2s_later, 0);
	wait_log(P.relay_log, "transcript mismatch", 10000);
	cr_assert_eq(mitm_wait_closed(M, 0, 5000), 0, "the attacked link stayed open");
	/* The gateway got the relay's BIND unharmed and may have called
	 * the link up for the 300 ms the injection waited; it ends now. */
	wait_log(P.gw_log, "link 1 with", 1000);
	wait_log(P.gw_log, "peer closed the link", 5000);
	cr_assert_eq(witness_conns(W), 0, "the injected OPEN reached the backend");
}

/* --- injection: a fake relay -------------------------------------------- */

static struct neg_params relay_params;

static void
answer_tls_decision_then_frames(int conn, const struct neg_msg *offer,
				struct fake_answer *a, void *arg)
{
	int n, k;

	if (offer == NULL)
		return;
	fake_params(&relay_params, "relay", TLS_MODE_REQUIRE);
	n = fake_decision(&offer->params, &relay_params, a->bytes, sizeof(a->bytes));
	if (n < 0)
		return;
	k = fake_frames("echo", "INJECTED", a->bytes + n, sizeof(a->bytes) - (size_t)n);
	if (k > 0)
		a->len = (size_t)(n + k);
}

Test(attack, forged_tls_decision_followed_by_bytes_is_rejected)
{
	int fd = start_gateway_against(answer_tls_decision_then_frames, TLS_GW);
	size_t len;

	wait_log(P.gw_log, "after its decision before TLS started", 10000);
	cr_assert_eq(fake_relay_wait_conns(FR, 2, 5000), 0, "the gateway did not redial");
	cr_assert_eq(fake_relay_got_offer(FR, 0), 1);
	(void)fake_relay_after_offer(FR, 0, &len);
	cr_assert_eq(len, 0u, "the gateway sent %zu bytes after its OFFER", len);
	cr_assert_eq(h_file_count(P.gw_hooks, "handshake_pending"), 0);
	close(fd);
}

static void
answer_plaintext_decision_then_frames(int conn, const struct neg_msg *offer,
				      struct fake_answer *a, void *arg)
{
	int n, k;

	if (offer == NULL)
		return;
	fake_params(&relay_params, "relay", TLS_MODE_OFF);
	n = fake_decision(&offer->params, &relay_params, a->bytes, sizeof(a->bytes));
	if (n < 0)
		return;
	k = fake_frames("echo", "INJECTED", a->bytes + n, sizeof(a->bytes) - (size_t)n);
	if (k > 0)
		a->len = (size_t)(n + k);
}

Test(attack, forged_plaintext_decision_followed_by_frames_fails_the_bind_check)
{
	/* A gateway that accepts plaintext (prefer) believes a relay with
	 * tls = off; the frames after it cannot carry the right BIND. */
	int fd = start_gateway_against(answer_plaintext_decision_then_frames, TLS_GW);
	size_t len;
	const uint8_t *after;

	wait_log(P.gw_log, "transcript mismatch", 10000);
	cr_assert_eq(fake_relay_wait_conns(FR, 1, 5000), 0);
	after = fake_relay_after_offer(FR, 0, &len);
	/* The gateway's own BIND (9 + 32 bytes) at most, never the client. */
	cr_assert_leq(len, (size_t)(FRAME_HDR_LEN + FRAME_BIND_LEN));
	cr_assert_null(h_memmem(after, len, SECRET, strlen(SECRET)));
	cr_assert_eq(h_file_count(P.gw_log, UP), 0);
	close(fd);
}

static void
answer_plaintext_decision_then_bad_bind(int conn, const struct neg_msg *offer,
					struct fake_answer *a, void *arg)
{
	static const uint8_t zero[FRAME_BIND_LEN];
	int n, k;

	if (offer == NULL)
		return;
	fake_params(&relay_params, "relay", TLS_MODE_OFF);
	n = fake_decision(&offer->params, &relay_params, a->bytes, sizeof(a->bytes));
	if (n < 0)
		return;
	k = frame_encode_bind(a->bytes + n, sizeof(a->bytes) - (size_t)n, zero);
	if (k > 0)
		a->len = (size_t)(n + k);
}

/*
 * On a plaintext link the side that finds a BIND mismatch still sends its
 * own BIND before it closes, so the peer can name the mismatch too (as
 * over TLS).
 */
Test(attack, plaintext_bind_mismatch_still_sends_our_bind)
{
	int fd = start_gateway_against(answer_plaintext_decision_then_bad_bind, TLS_GW);
	int64_t end = h_now_ms() + 5000;
	const uint8_t *after;
	size_t len;

	wait_log(P.gw_log, "transcript mismatch", 10000);
	while (!fake_relay_closed(FR, 0) && h_now_ms() < end)
		h_sleep_ms(10);
	cr_assert_eq(fake_relay_closed(FR, 0), 1, "the gateway kept the link open");
	after = fake_relay_after_offer(FR, 0, &len);
	close(fd);
	cr_assert_eq(len, (size_t)(FRAME_HDR_LEN + FRAME_BIND_LEN),
		     "BUG: the gateway closed on a BIND mismatch after sending %zu "
		     "bytes, not its own BIND (41 bytes): the peer cannot tell why "
		     "(io/link.c link_mux_failed uses link_fail, which drops queued "
		     "output, on plaintext links)", len);
	cr_assert_eq(after[3], FRAME_BIND);
}

/* A relay with tls = off, complete with the right BIND: anyone who
 * sees the two messages can compute it. */
static void
answer_as_a_plaintext_relay(int conn, const struct neg_msg *offer,
			    struct fake_answer *a, void *arg)
{
	uint8_t hash[FRAME_BIND_LEN];
	int n, k;

	if (offer == NULL || a->offer == NULL)
		return;
	fake_params(&relay_params, "relay", TLS_MODE_OFF);
	n = fake_decision(&offer->params, &relay_params, a->bytes, sizeof(a->bytes));
	if (n < 0)
		return;
	fake_sha256(a->offer, a->offer_len, a->bytes, (size_t)n, hash);
	k = frame_encode_bind(a->bytes + n, sizeof(a->bytes) - (size_t)n, hash);
	if (k > 0)
		a->len = (size_t)(n + k);
}

Test(attack, fake_plaintext_relay_receives_the_clients_of_a_prefer_gateway)
{
	int fd = start_gateway_against(answer_as_a_plaintext_relay, TLS_GW);
	int64_t end = h_now_ms() + 5000;
	const uint8_t *after = NULL;
	size_t len = 0;

	/* Nothing authenticates a plaintext relay: the gateway's held
	 * client goes to whoever answered. */
	wait_log(P.gw_log, "is up (plaintext)", 10000);
	while (h_now_ms() < end) {
		after = fake_relay_after_offer(FR, 0, &len);
		if (h_memmem(after, len, SECRET, strlen(SECRET)) != NULL)
			break;
		h_sleep_ms(10);
	}
	close(fd);
	cr_assert_not_null(h_memmem(after, len, SECRET, strlen(SECRET)),
			   "the client's bytes did not reach the fake relay");
	cr_assert_eq(witness_conns(W), 0);
}

/* A plaintext relay that agrees to LINK_ACK (both sides announce it),
 * binds correctly, and then answers a probe the gateway never sent. */
static void
answer_with_a_forged_link_ack(int conn, const struct neg_msg *offer,
			      struct fake_answer *a, void *arg)
{
	uint8_t hash[FRAME_BIND_LEN];
	int n, k, f;

	if (offer == NULL || a->offer == NULL)
		return;
	cr_assert(offer->params.flow_caps & NEG_FLOW_LINK_ACK,
		  "the gateway did not announce LINK_ACK");
	fake_params(&relay_params, "relay", TLS_MODE_OFF);
	relay_params.flow_caps = NEG_FLOW_LINK_ACK;
	n = fake_decision(&offer->params, &relay_params, a->bytes, sizeof(a->bytes));
	if (n < 0)
		return;
	fake_sha256(a->offer, a->offer_len, a->bytes, (size_t)n, hash);
	k = frame_encode_bind(a->bytes + n, sizeof(a->bytes) - (size_t)n, hash);
	if (k < 0)
		return;
	f = frame_encode_link_ack(a->bytes + n + k, sizeof(a->bytes) - (size_t)(n + k),
				  123456789, 1);
	if (f > 0)
		a->len = (size_t)(n + k + f);
}

Test(attack, forged_link_ack_answer_kills_the_link)
{
	int fd = start_gateway_against(answer_with_a_forged_link_ack, TLS_GW);

	/* Believing it would let the peer make the gateway send beyond the
	 * link budget; it is a protocol error that ends the link. */
	wait_log(P.gw_log, "acknowledged link bytes that were never sent", 10000);
	close(fd);
	cr_assert_eq(witness_conns(W), 0);
}

static void
answer_decision_before_offer(int conn, const struct neg_msg *offer,
			     struct fake_answer *a, void *arg)
{
	struct neg_params gw;
	int n;

	if (offer != NULL)
		return;
	/* Predicted from the gateway's configuration, sent at accept. */
	fake_params(&gw, "gw1", TLS_MODE_PREFER);
	fake_params(&relay_params, "relay", TLS_MODE_REQUIRE);
	n = fake_decision(&gw, &relay_params, a->bytes, sizeof(a->bytes));
	if (n < 0)
		return;
	memcpy(a->bytes + n, "\x17\x03\x03\x00\x02hi", 7);
	a->len = (size_t)n + 7;
}

Test(attack, decision_and_bytes_sent_before_the_offer_are_rejected)
{
	int fd = start_gateway_against(answer_decision_before_offer, TLS_GW);
	size_t len;

	wait_log(P.gw_log, "after its decision before TLS started", 10000);
	cr_assert_eq(fake_relay_wait_conns(FR, 1, 5000), 0);
	(void)fake_relay_after_offer(FR, 0, &len);
	cr_assert_eq(len, 0u, "the gateway sent %zu bytes after its OFFER", len);
	cr_assert_eq(h_file_count(P.gw_hooks, "handshake_pending"), 0);
	close(fd);
}

/* --- injection: a fake gateway --------------------------------------------- */

/* A fake gateway sends a valid OFFER, then frames 100 ms later without
 * reading the DECISION.  Returns the connection. */
static int
offer_then_frames(void)
{
	struct neg_params gw;
	uint8_t buf[1024];
	int n, fd;

	fake_params(&gw, "gw1", TLS_MODE_PREFER); /* a name the relay admits */
	n = fake_offer(&gw, buf, sizeof(buf));
	cr_assert_gt(n, 0);
	fd = connect_port(P.relay_port);
	cr_assert_geq(fd, 0);
	cr_assert_eq(send(fd, buf, (size_t)n, MSG_NOSIGNAL), n);
	h_sleep_ms(100);
	n = fake_frames("echo", "INJECTED", buf, sizeof(buf));
	cr_assert_eq(send(fd, buf, (size_t)n, MSG_NOSIGNAL), n);
	return fd;
}

Test(attack, fake_gateway_bytes_before_the_decision_kill_the_link)
{
	int fd;
	long got;

	start_witness();
	start_pair(TLS_RELAY, TLS_GW);
	wait_up();
	fd = offer_then_frames();
	/* The relay closes; it sent its DECISION and nothing more. */
	got = fake_wait_close(fd, 5000);
	close(fd);
	cr_assert_geq(got, 0, "the relay kept the connection open");
	/* Normally the frames fail the relay's TLS handshake; on a slow
	 * machine they may already wait behind the OFFER. */
	wait_log_either(P.relay_log, "TLS handshake failed", "bytes after its offer", 2000);
	cr_assert_eq(witness_conns(W), 0, "an injected stream reached the backend");
}

Test(attack, fake_gateway_frames_on_a_plaintext_relay_fail_the_bind_check)
{
	int fd;

	start_witness();
	start_pair("tls = off\n", "tls = off\n");
	wait_up();
	fd = offer_then_frames();
	cr_assert_geq(fake_wait_close(fd, 5000), 0, "the relay kept the connection open");
	close(fd);
	wait_log_either(P.relay_log, "transcript mismatch", "bytes after its offer", 2000);
	cr_assert_eq(witness_conns(W), 0, "the injected OPEN reached the backend");
}

/* --- stripping and downgrade by a MITM ------------------------------------ */

/* The OFFER says off; the DECISION says the relay has TLS off too and
 * decides plaintext, which is what the gateway recomputes. */
static void
strip_both(struct mitm_edit *e, void *arg)
{
	if (e->dir == MITM_C2S) {
		e->msg.params.tls_mode = TLS_MODE_OFF;
		return;
	}
	if (e->msg.type != NEG_DECISION || e->other == NULL)
		return;
	e->msg.params.tls_mode = TLS_MODE_OFF;
	policy_decide(&e->other->params, &e->msg.params, &e->msg.outcome);
	if (e->msg.outcome.result == NEG_RESULT_REFUSE) {
		/* The gateway requires TLS: claim plaintext anyway. */
		memset(&e->msg.outcome, 0, sizeof(e->msg.outcome));
		e->msg.outcome.result = NEG_RESULT_PLAINTEXT;
		e->msg.outcome.reason = NEG_R_ACCEPTOR_OFF;
	}
}

Test(attack, offer_stripped_to_off_is_refused_by_a_require_relay)
{
	start_pair_via_mitm(TLS_RELAY, TLS_GW, mitm_strip_offer, 0);
	wait_log(P.relay_log, "refused the link: the accepting side requires TLS", 10000);
	wait_log(P.gw_log, "the relay refused the link", 5000);
	assert_gateway_silent_after_offer(0);
	cr_assert_eq(h_file_count(P.relay_hooks, "plaintext_agreed"), 0);
	assert_nothing_carried();
}

/* strip_both on the first link; later, the DECISION replaced by a
 * REFUSE. */
static void
strip_then_refuse(struct mitm_edit *e, void *arg)
{
	int n;

	if (e->conn == 0 || e->dir == MITM_C2S) {
		strip_both(e, arg);
		return;
	}
	n = fake_refuse(NEG_R_BUSY, "forged by the MITM", e->raw, sizeof(e->raw));
	if (n > 0)
		e->raw_len = (size_t)n;
}

Test(attack, stripped_decision_is_rejected_by_a_require_gateway)
{
	int fd;

	start_pair_via_mitm(RELAY_PREFER, GW_REQUIRE, strip_then_refuse, 0);
	wait_log(P.gw_log, "the relay's decision is not acceptable", 10000);
	wait_log(P.gw_log, "it says: forged by the MITM", 5000);
	assert_gateway_silent_after_offer(0);
	fd = connect_port(P.svc_port);
	cr_assert_geq(fd, 0);
	(void)send(fd, SECRET, strlen(SECRET), MSG_NOSIGNAL);
	cr_assert(closed_within(fd, 3000), "the client was not turned away");
	close(fd);
	/* The relay was told the gateway has TLS off and agreed to
	 * plaintext; the gateway closed before a single frame. */
	wait_log(P.relay_log, "plaintext agreed", 1000);
	wait_log(P.relay_log, "peer closed the link", 1000);
	for (int i = 0; i < mitm_conns(M); i++)
		assert_gateway_silent_after_offer(i);
	assert_nothing_carried();
}

Test(attack, stripped_offer_alone_is_caught_by_the_gateway_recomputing)
{
	start_pair_via_mitm(RELAY_PREFER, TLS_GW, mitm_strip_offer, 0);
	wait_log(P.gw_log, "the decision does not follow from the two offers", 10000);
	wait_log(P.relay_log, "plaintext agreed", 1000);
	wait_log(P.relay_log, "peer closed the link", 1000);
	assert_gateway_silent_after_offer(0);
	assert_nothing_carried();
}

Test(attack, stripping_both_messages_is_caught_by_the_plaintext_bind)
{
	start_pair_via_mitm(RELAY_PREFER, TLS_GW, strip_both, 0);
	/* The relay's BIND reaches the gateway with the DECISION, so the
	 * gateway always names the mismatch.  It closes at once, often
	 * before its own BIND is written (the bug shown by
	 * plaintext_bind_mismatch_still_sends_our_bind), so the relay may
	 * only see the close. */
	wait_log(P.gw_log, "transcript mismatch", 10000);
	cr_assert_eq(mitm_wait_closed(M, 0, 5000), 0, "the attacked link stayed open");
	wait_log(P.relay_log, "link 1 with", 1000);
	cr_assert(h_wait_file_contains(P.relay_log, "transcript mismatch", 2000) == 0 ||
		  h_file_count(P.relay_log, "peer closed the link") > 0,
		  "the relay did not end link 1:\n%s", h_read_file(P.relay_log, NULL));
	cr_assert_eq(h_file_count(P.gw_hooks, "handshake_pending"), 0);
	assert_nothing_carried();
}

#define FORGED "written by the man in the middle"

/* Reads n bytes within timeout_ms; returns how many arrived. */
static size_t
read_exactly(int fd, uint8_t *buf, size_t n, int timeout_ms)
{
	int64_t end = h_now_ms() + timeout_ms;
	size_t got = 0;

	while (got < n && h_now_ms() < end) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		ssize_t r;

		if (poll(&pfd, 1, 20) <= 0)
			continue;
		r = recv(fd, buf + got, n - got, 0);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	return got;
}

Test(attack, mitm_rewriting_messages_and_bind_forces_plaintext_under_prefer)
{
	const uint8_t *c2s;
	uint8_t frame[128], buf[128];
	size_t len, got;
	int fd, n;

	/* The limit of an unauthenticated negotiation: with prefer on both
	 * sides, a MITM that rewrites both messages and swaps the plaintext
	 * BIND hashes gets a plaintext link that it reads and writes. */
	start_pair_via_mitm(RELAY_PREFER, TLS_GW, strip_both, MITM_SWAP_BIND);
	wait_up();
	wait_log(P.gw_log, "is up (plaintext)", 1000);
	cr_assert_eq(mitm_bind_swapped(M, 0), 1);
	wait_log(P.gw_hooks, "plaintext_agreed", 1000);
	wait_log(P.relay_hooks, "plaintext_agreed", 1000);
	cr_assert_eq(h_file_count(P.gw_hooks, "handshake_pending"), 0);
	fd = connect_port(P.svc_port);
	cr_assert_eq(echo_once(fd, SECRET, 5000), 0);
	c2s = mitm_bytes(M, 0, MITM_C2S, &len);
	cr_assert_not_null(h_memmem(c2s, len, SECRET, strlen(SECRET)),
			   "the MITM did not see the client's bytes in the clear");
	/* It writes too: a DATA frame of its own on the client's stream. */
	n = frame_encode_data(frame, sizeof(frame), 1, (const uint8_t *)FORGED,
			      strlen(FORGED), 0);
	cr_assert_gt(n, 0);
	cr_assert_eq(mitm_inject(M, 0, MITM_S2C, frame, (size_t)n), 0);
	got = read_exactly(fd, buf, strlen(FORGED), 3000);
	close(fd);
	cr_assert_eq(got, strlen(FORGED), "the client got %zu bytes", got);
	cr_assert_eq(memcmp(buf, FORGED, strlen(FORGED)), 0,
		     "the client did not get the MITM's bytes");
	cr_assert_eq(witness_bytes(W), strlen(SECRET));
	/* Each side logged the reason it was given, which differ. */
	wait_log(P.gw_log, "the accepting side has TLS off", 1000);
	wait_log(P.relay_log, "the dialling side has TLS off", 1000);
}

/* The first link passes untouched; later ones are stripped. */
static void
strip_after_first(struct mitm_edit *e, void *arg)
{
	if (e->conn > 0)
		strip_both(e, arg);
}

Test(attack, sticky_gateway_defeats_forced_plaintext_after_first_contact)
{
	/* tls_sticky on a prefer gateway: once it has completed TLS with
	 * the relay, it offers require, and the same MITM that forces
	 * plaintext on a plain prefer gateway only denies service. */
	start_pair_via_mitm(RELAY_PREFER, TLS_GW "tls_sticky = yes\nstate_file = gw.state\n",
			    strip_after_first, MITM_SWAP_BIND);
	wait_up();
	wait_log(P.gw_log, "is up (TLS)", 1000);
	cr_assert_eq(tap_kill(P.tap), 1);
	wait_log(P.gw_log, "offering tls = require", 5000);
	wait_log(P.gw_log, "the relay's decision is not acceptable", 5000);
	assert_gateway_silent_after_offer(1);
	cr_assert_eq(h_file_count(P.gw_log, UP), 1, "%s", h_read_file(P.gw_log, NULL));
	cr_assert_eq(h_file_count(P.gw_hooks, "plaintext_agreed"), 0);
	cr_assert_eq(witness_conns(W), 0);
}

static void
rename_gateway(struct mitm_edit *e, void *arg)
{
	if (e->dir == MITM_C2S)
		snprintf(e->msg.params.node, sizeof(e->msg.params.node), "legacy");
}

Test(attack, mitm_renaming_the_gateway_picks_the_weakest_peer_policy)
{
	const uint8_t *c2s;
	size_t len;
	int fd;

	/* The relay requires TLS except from node "legacy".  The node name
	 * travels in the clear, so a MITM claims it for gw1, and the relay
	 * itself decides plaintext; a prefer gateway accepts that. */
	start_pair_via_mitm_with(TLS_RELAY, TLS_GW, "[peer legacy]\ntls = off\n",
				 rename_gateway, MITM_SWAP_BIND);
	wait_up();
	wait_log(P.gw_log, "is up (plaintext)", 1000);
	wait_log(P.relay_log, "(node legacy): plaintext agreed", 1000);
	fd = connect_port(P.svc_port);
	cr_assert_eq(echo_once(fd, SECRET, 5000), 0);
	close(fd);
	c2s = mitm_bytes(M, 0, MITM_C2S, &len);
	cr_assert_not_null(h_memmem(c2s, len, SECRET, strlen(SECRET)),
			   "the MITM did not see the client's bytes in the clear");
}

/* conn 0: only the OFFER; conn 1 and later: both messages. */
static void
downgrade_version(struct mitm_edit *e, void *arg)
{
	if (e->dir == MITM_C2S) {
		e->msg.params.tls_max = TLSV_1_2;
		return;
	}
	if (e->conn == 0 || e->msg.type != NEG_DECISION || e->other == NULL)
		return;
	e->msg.params.tls_max = TLSV_1_2;
	policy_decide(&e->other->params, &e->msg.params, &e->msg.outcome);
}

/* conn 0 is caught by the gateway's recomputation, conn 1 by BIND
 * inside TLS on both sides. */
static void
assert_downgrade_caught(void)
{
	wait_log(P.gw_log, "the decision does not follow from the two offers", 10000);
	assert_gateway_silent_after_offer(0);
	cr_assert_eq(mitm_wait_conns(M, 2, 5000), 0, "the gateway did not redial");
	wait_log(P.gw_log, "transcript mismatch", 10000);
	wait_log(P.relay_log, "transcript mismatch", 5000);
	/* Both sides completed TLS and then refused the session. */
	cr_assert_geq(h_file_count(P.gw_hooks, "\"reason\":\"transcript mismatch"), 1);
	cr_assert_geq(h_file_count(P.relay_hooks, "\"reason\":\"transcript mismatch"), 1);
	cr_assert_eq(h_file_count(P.gw_hooks, "handshake_done"), 0);
	cr_assert_eq(h_file_count(P.relay_hooks, "handshake_done"), 0);
	assert_nothing_carried();
}

Test(attack, tls_version_downgrade_is_caught)
{
	start_pair_via_mitm(TLS_RELAY TLS_12_13, TLS_GW TLS_12_13, downgrade_version, 0);
	assert_downgrade_caught();
	wait_log(P.relay_log, "TLS agreed (TLSv1.2..TLSv1.2)", 1000);
}

Test(attack, cipher_removal_is_caught)
{
	start_pair_via_mitm(TLS_RELAY, TLS_GW, mitm_one_cipher, 0);
	assert_downgrade_caught();
}

/* --- refusal and forged answers to a require gateway ---------------------- */

static void
answer_badly(int conn, const struct neg_msg *offer, struct fake_answer *a, void *arg)
{
	struct neg_msg m;
	int n = -1;

	if (offer == NULL)
		return;
	memset(&m, 0, sizeof(m));
	m.type = NEG_DECISION;
	m.ver_min = m.ver_max = NEG_PROTO_VERSION;
	fake_params(&m.params, "relay", TLS_MODE_OFF);
	switch (conn) {
	case 0: /* a plaintext decision */
		m.outcome.result = NEG_RESULT_PLAINTEXT;
		m.outcome.reason = NEG_R_ACCEPTOR_OFF;
		n = neg_encode(&m, a->bytes, sizeof(a->bytes));
		break;
	case 1: /* a malformed decision: TLS_MODE value 9 */
		m.params.tls_mode = TLS_MODE_REQUIRE;
		policy_decide(&offer->params, &m.params, &m.outcome);
		n = neg_encode(&m, a->bytes, sizeof(a->bytes));
		for (int i = NEG_HDR_LEN; i + 5 <= n; ) {
			int t = a->bytes[i] << 8 | a->bytes[i + 1];
			int l = a->bytes[i + 2] << 8 | a->bytes[i + 3];

			if (t == NEG_F_TLS_MODE)
				a->bytes[i + 4] = 9;
			i += 4 + l;
		}
		break;
	default: /* a refusal */
		n = fake_refuse(NEG_R_BUSY, "come back later", a->bytes, sizeof(a->bytes));
		break;
	}
	if (n > 0)
		a->len = (size_t)n;
}

Test(attack, forged_answers_never_make_a_require_gateway_continue_in_plaintext)
{
	int fd = start_gateway_against(answer_badly, GW_REQUIRE);
	int64_t gap1, gap2;

	wait_log(P.gw_log, "the decision does not follow from the two offers", 10000);
	wait_log(P.gw_log, "bad negotiation message from peer", 10000);
	wait_log(P.gw_log, "the relay refused the link: the accepting side reached a "
		 "limit; retry later or raise the limit; it says: come back later", 10000);
	cr_assert_eq(fake_relay_wait_conns(FR, 3, 5000), 0);
	for (int i = 0; i < 3; i++) {
		size_t len;
		const uint8_t *after = fake_relay_after_offer(FR, i, &len);

		cr_assert_eq(fake_relay_got_offer(FR, i), 1);
		cr_assert_eq(len, 0u, "connection %d: the gateway sent %zu bytes "
			     "after its OFFER", i, len);
		cr_assert_null(h_memmem(after, len, SECRET, strlen(SECRET)));
	}
	/* It redials with backoff: redial_min 200 ms, doubling, with jitter
	 * down to half. */
	gap1 = fake_relay_accepted_at(FR, 1) - fake_relay_accepted_at(FR, 0);
	gap2 = fake_relay_accepted_at(FR, 2) - fake_relay_accepted_at(FR, 1);
	cr_assert_geq(gap1, 100, "redialled after %lld ms", (long long)gap1);
	cr_assert_geq(gap2, 200, "redialled after %lld ms", (long long)gap2);
	cr_assert_eq(h_file_count(P.gw_hooks, "plaintext_agreed"), 0);
	cr_assert_eq(h_file_count(P.gw_hooks, "handshake_pending"), 0);
	close(fd);
	assert_nothing_carried();
}

/* --- slow and silent peers ------------------------------------------------- */

struct slow {
	uint8_t offer[1024];
	size_t len, sent;
	int fd;
	int64_t t0, closed_ms;
};

static void *
slow_sender(void *arg)
{
	struct slow *s = arg;

	s->sent = fake_send_slowly(s->fd, s->offer, s->len, 200);
	/* It stops when the relay has closed, or when the bytes run out. */
	if (fake_wait_close(s->fd, 3000) >= 0)
		s->closed_ms = h_now_ms() - s->t0;
	return NULL;
}

Test(attack, slow_and_silent_gateways_are_dropped_at_the_deadline)
{
	struct neg_params gw;
	struct slow s;
	pthread_t th;
	int base, silent, fd, n;
	int64_t t0, silent_ms, end;

	start_witness();
	start_tap();
	start_pair(TLS_RELAY, TLS_GW);
	wait_up();
	base = fd_count(P.relay);
	cr_assert_gt(base, 0);

	memset(&s, 0, sizeof(s));
	fake_params(&gw, "gw-slow", TLS_MODE_PREFER);
	n = fake_offer(&gw, s.offer, sizeof(s.offer));
	cr_assert_gt(n, 20);
	s.len = (size_t)n;
	s.closed_ms = -1;
	/* The relay's clock starts at accept, after these. */
	t0 = s.t0 = h_now_ms();
	silent = connect_port(P.relay_port);
	s.fd = connect_port(P.relay_port);
	cr_assert(silent >= 0 && s.fd >= 0);
	cr_assert_eq(pthread_create(&th, NULL, slow_sender, &s), 0);
	cr_assert_geq(fake_wait_close(silent, 5000), 0, "the silent peer was kept");
	silent_ms = h_now_ms() - t0;
	pthread_join(th, NULL);
	close(silent);
	close(s.fd);
	/* negotiation_timeout = 2s on the relay; libevent's timers run on
	 * the coarse monotonic clock (a few ms per tick), hence the 10 ms. */
	cr_assert(silent_ms >= 1990 && silent_ms < 3500, "silent peer closed after %lld ms",
		  (long long)silent_ms);
	cr_assert(s.closed_ms >= 1990 && s.closed_ms < 3500, "slow peer closed after %lld ms",
		  (long long)s.closed_ms);
	cr_assert_lt(s.sent, s.len, "the slow OFFER was complete before the deadline");
	wait_log(P.relay_log, "negotiation not complete after 2000 ms (negotiation_timeout); "
		 "0 bytes received", 1000);
	cr_assert_eq(h_file_count(P.relay_log, "negotiation not complete after 2000 ms"), 2,
		     "%s", h_read_file(P.relay_log, NULL));
	/* They hold nothing afterwards. */
	end = h_now_ms() + 2000;
	while (fd_count(P.relay) != base && h_now_ms() < end)
		h_sleep_ms(20);
	cr_assert_eq(fd_count(P.relay), base, "relay holds %d descriptors, %d before",
		     fd_count(P.relay), base);
	/* And a real gateway still links up: cut its link, it redials. */
	cr_assert_eq(tap_kill(P.tap), 1);
	end = h_now_ms() + 10000;
	while (h_file_count(P.gw_log, UP) < 2 && h_now_ms() < end)
		h_sleep_ms(20);
	cr_assert_eq(h_file_count(P.gw_log, UP), 2, "%s", h_read_file(P.gw_log, NULL));
	fd = connect_port(P.svc_port);
	cr_assert_eq(echo_once(fd, "still serving", 5000), 0);
	close(fd);
}

/* conn 0 never answers; conn 1 sends a valid DECISION one byte per
 * 200 ms. */
static void
answer_silently_then_slowly(int conn, const struct neg_msg *offer,
			    struct fake_answer *a, void *arg)
{
	int n;

	if (offer == NULL || conn != 1)
		return;
	fake_params(&relay_params, "relay", TLS_MODE_REQUIRE);
	n = fake_decision(&offer->params, &relay_params, a->bytes, sizeof(a->bytes));
	if (n > 0)
		a->len = (size_t)n;
	a->gap_ms = 200;
}

/* Waits for the gateway to drop conn; returns the ms since accept. */
static int64_t
gateway_drop_ms(int conn)
{
	int64_t t0;

	cr_assert_eq(fake_relay_wait_conns(FR, conn + 1, 5000), 0,
		     "the gateway did not dial (again)");
	t0 = fake_relay_accepted_at(FR, conn);
	while (!fake_relay_closed(FR, conn) && h_now_ms() - t0 < 6000)
		h_sleep_ms(5);
	return h_now_ms() - t0;
}

Test(attack, silent_and_slow_relays_are_dropped_by_the_gateway_at_its_deadline)
{
	int fd = start_gateway_against(answer_silently_then_slowly, TLS_GW);
	int64_t ms;
	size_t len;

	/* negotiation_timeout = 3s on the gateway (10 ms: see above). */
	ms = gateway_drop_ms(0);
	cr_assert(ms >= 2990 && ms < 4500, "silent relay dropped after %lld ms",
		  (long long)ms);
	wait_log(P.gw_log, "negotiation not complete after 3000 ms (negotiation_timeout); "
		 "0 bytes received", 1000);
	ms = gateway_drop_ms(1);
	cr_assert(ms >= 2990 && ms < 4500, "slow relay dropped after %lld ms",
		  (long long)ms);
	cr_assert_eq(h_wait_file_contains(P.gw_log, "negotiation not complete after 3000 ms "
					  "(negotiation_timeout); 1", 1000), 0,
		     "%s", h_read_file(P.gw_log, NULL));
	for (int i = 0; i < 2; i++) {
		(void)fake_relay_after_offer(FR, i, &len);
		cr_assert_eq(len, 0u, "connection %d: %zu bytes after the OFFER", i, len);
	}
	cr_assert_eq(fake_relay_wait_conns(FR, 3, 3000), 0, "the gateway did not redial");
	close(fd);
	assert_nothing_carried();
}

/* --- wrong protocol ---------------------------------------------------------- */

Test(attack, random_bytes_and_an_ssh_banner_on_the_link_port_are_named)
{
	static const uint8_t junk[] = { 0x3c, 0xa7, 0x01, 0xfe, 0x42, 0x00, 0x99, 0x10 };
	static const char ssh[] = "SSH-2.0-OpenSSH_9.2p1\r\n";
	int fd;

	start_witness();
	start_pair(TLS_RELAY, TLS_GW);
	wait_up();
	fd = connect_port(P.relay_port);
	cr_assert_eq(send(fd, junk, sizeof(junk), MSG_NOSIGNAL), (ssize_t)sizeof(junk));
	cr_assert_geq(fake_wait_close(fd, 2000), 0, "the relay kept the connection open");
	close(fd);
	wait_log(P.relay_log, "it sent unrecognised bytes instead of a negotiation message",
		 1000);
	fd = connect_port(P.relay_port);
	cr_assert_eq(send(fd, ssh, sizeof(ssh) - 1, MSG_NOSIGNAL), (ssize_t)sizeof(ssh) - 1);
	cr_assert_eq(fake_wait_close(fd, 2000), 0, "the relay answered an SSH client");
	close(fd);
	wait_log(P.relay_log, "it sent an SSH banner", 1000);
	cr_assert(h_alive(P.relay) == 1);
}

static void
answer_other_protocols(int conn, const struct neg_msg *offer, struct fake_answer *a,
		       void *arg)
{
	static const char http[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
	static const uint8_t alert[] = { 0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46 };
	static const char ssh[] = "SSH-2.0-OpenSSH_9.2p1\r\n";

	if (conn == 2 && offer == NULL) { /* an SSH server speaks first */
		memcpy(a->bytes, ssh, sizeof(ssh) - 1);
		a->len = sizeof(ssh) - 1;
		return;
	}
	if (offer == NULL || conn > 2)
		return;
	if (conn == 0) { /* an HTTP server answers the OFFER */
		memcpy(a->bytes, http, sizeof(http) - 1);
		a->len = sizeof(http) - 1;
	} else { /* a TLS server answers with an alert */
		memcpy(a->bytes, alert, sizeof(alert));
		a->len = sizeof(alert);
	}
	a->close_after = 1;
}

Test(attack, gateway_facing_another_protocol_names_it_and_redials)
{
	int fd = start_gateway_against(answer_other_protocols, TLS_GW);

	wait_log(P.gw_log, "it sent an HTTP response instead of a negotiation", 10000);
	wait_log(P.gw_log, "it sent a TLS record instead of a negotiation", 10000);
	wait_log(P.gw_log, "it sent an SSH banner instead of a negotiation", 10000);
	cr_assert_eq(fake_relay_wait_conns(FR, 4, 5000), 0, "the gateway stopped redialling");
	for (int i = 0; i < 3; i++) {
		size_t len;

		(void)fake_relay_after_offer(FR, i, &len);
		cr_assert_eq(len, 0u, "connection %d: %zu bytes after the OFFER", i, len);
	}
	close(fd);
	assert_nothing_carried();
}

/* --- the handshake deadline ------------------------------------------------ */

Test(attack, gateway_silent_after_the_decision_is_dropped_at_the_handshake_deadline)
{
	struct neg_params gw;
	struct neg_msg m;
	uint8_t buf[NEG_MAX_LEN];
	int fd, n, base;
	int64_t t0, ms;

	start_witness();
	start_pair(TLS_RELAY, TLS_GW);
	wait_up();
	base = fd_count(P.relay);
	fake_params(&gw, "gw1", TLS_MODE_PREFER);
	n = fake_offer(&gw, buf, sizeof(buf));
	cr_assert_gt(n, 20);
	fd = connect_port(P.relay_port);
	cr_assert_geq(fd, 0);
	cr_assert_eq(send(fd, buf, (size_t)n, MSG_NOSIGNAL), n);
	cr_assert_eq(fake_read_neg(fd, &m, 3000), 1, "no answer to the OFFER");
	cr_assert_eq(m.type, NEG_DECISION);
	cr_assert_eq(m.outcome.result, NEG_RESULT_TLS);
	/* No ClientHello follows: handshake_timeout = 3s on the relay. */
	t0 = h_now_ms();
	cr_assert_geq(fake_wait_close(fd, 6000), 0, "the relay kept the silent peer");
	ms = h_now_ms() - t0;
	close(fd);
	cr_assert(ms >= 2900 && ms < 4500, "closed after %lld ms", (long long)ms);
	wait_log(P.relay_log, "TLS handshake not complete within handshake_timeout", 1000);
	for (int64_t end = h_now_ms() + 2000; fd_count(P.relay) != base && h_now_ms() < end;)
		h_sleep_ms(20);
	cr_assert_eq(fd_count(P.relay), base, "the relay holds %d descriptors, %d before",
		     fd_count(P.relay), base);
	cr_assert_eq(witness_conns(W), 0);
}

static void
answer_tls_decision_then_nothing(int conn, const struct neg_msg *offer,
				 struct fake_answer *a, void *arg)
{
	int n;

	if (offer == NULL)
		return;
	fake_params(&relay_params, "relay", TLS_MODE_REQUIRE);
	n = fake_decision(&offer->params, &relay_params, a->bytes, sizeof(a->bytes));
	if (n > 0)
		a->len = (size_t)n;
}

Test(attack, relay_silent_in_the_handshake_is_dropped_by_the_gateway)
{
	int fd = start_gateway_against(answer_tls_decision_then_nothing, TLS_GW);

	/* handshake_timeout = 3s on the gateway; it then redials. */
	wait_log(P.gw_log, "TLS handshake not complete within handshake_timeout", 8000);
	cr_assert_eq(fake_relay_wait_conns(FR, 2, 5000), 0, "the gateway did not redial");
	cr_assert_eq(h_file_count(P.gw_log, ") is up ("), 0, "a link came up");
	close(fd);
}
