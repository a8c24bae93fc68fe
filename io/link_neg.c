/*
 * The parameter negotiation of a link: our message, the peer's, the
 * decision, and refusals.
 */
#include "link_int.h"

/* ---- negotiation ----------------------------------------------------- */

static int
link_send_neg(struct link *l, const struct neg_msg *m)
{
	int n;

	n = neg_encode(m, l->tx_neg, sizeof(l->tx_neg));
	if (n < 0) {
		link_fail(l, LOG_ERR, "cannot encode our %s message "
			  "(configuration out of range?)", neg_type_str(m->type));
		return -1;
	}
	l->tx_neg_len = (size_t)n;
	if (l->tls != NULL) {
		/* TLS first: the message goes inside TLS. */
		if (tls_conn_write(l->tls, l->tx_neg, (size_t)n) < 0) {
			link_handshake_failed(l, "tls", tls_conn_error(l->tls));
			return -1;
		}
		return 0;
	}
	bufferevent_write(l->bev, l->tx_neg, (size_t)n);
	return 0;
}

void
link_fill_nonce(struct neg_params *p)
{
	size_t got = 0;
	ssize_t r;

	while (got < sizeof(p->nonce)) {
		r = getrandom(p->nonce + got, sizeof(p->nonce) - got, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			/* Not secret: it only makes each transcript unique. */
			uint64_t t = link_now_us();

			memcpy(p->nonce, &t, sizeof(t));
			return;
		}
		got += (size_t)r;
	}
}

void
link_send_offer(struct link *l)
{
	struct neg_msg m;
	struct timeval tv;

	neg_msg_init(&m, NEG_OFFER);
	m.params = l->mine;
	if (link_send_neg(l, &m) < 0)
		return;
	link_set_state(l, LS_NEGOTIATING);
	link_ms_to_tv(l->cfg.negotiation_timeout_ms, &tv);
	evtimer_add(l->deadline_ev, &tv);
	if (link_read_start(l) < 0)
		link_fail(l, LOG_ERR, "out of memory");
}

void
link_send_offer_tls(struct link *l)
{
	struct neg_msg m;

	neg_msg_init(&m, NEG_OFFER);
	m.params = l->mine;
	if (link_send_neg(l, &m) < 0)
		return;
	/* handshake_timeout, started with the handshake, bounds it all. */
	link_set_state(l, LS_NEGOTIATING);
	log_debug("%s: TLS up (%s); our offer went inside it", link_who(l),
		  l->tls_info.protocol);
	link_neg_input(l);
}

static void
link_refuse(struct link *l, uint16_t reason, const char *detail)
{
	struct neg_msg m;

	neg_msg_refusal(&m, l->mine.node, reason, detail);
	if (link_send_neg(l, &m) < 0)
		return;
	if (l->tls != NULL) {
		/* TLS first: the REFUSE went inside TLS; handshake_pending is
		 * answered by a handshake_failed of stage negotiation. */
		l->fail_stage = "negotiation";
		tls_conn_close_notify(l->tls);
	}
	link_close_after_flush(l, LOG_WARN, "refused the link: %s%s%s",
			       neg_reason_str(reason), detail ? ": " : "",
			       detail ? detail : "");
	link_report_refused(l, "local", reason, l->reason);
}

/* Both sides, once the outcome is known: upgrade or start the mux. */
static void
link_proceed(struct link *l)
{
	struct hook_event ev;
	static const char hex[] = "0123456789abcdef";
	size_t i;

	/* The transcript both sides bind (BIND) and report. */
	if (l->cfg.dialer)
		tls_sha256_pair(l->tx_neg, l->tx_neg_len, l->rx_neg,
				l->rx_neg_len, l->transcript);
	else
		tls_sha256_pair(l->rx_neg, l->rx_neg_len, l->tx_neg,
				l->tx_neg_len, l->transcript);
	for (i = 0; i < 16; i++) {
		l->transcript_hex[2 * i] = hex[l->transcript[i] >> 4];
		l->transcript_hex[2 * i + 1] = hex[l->transcript[i] & 15];
	}
	l->transcript_hex[32] = '\0';
	if (l->tls != NULL) {
		/* TLS first: the mux starts inside the running session; the
		 * dialler may already hold the acceptor's BIND. */
		log_info("%s: negotiated inside TLS (TLS first; %s %s): %s",
			 link_who(l), l->tls_info.protocol, l->tls_info.cipher,
			 neg_reason_str(l->outcome.reason));
		if (link_start_mux(l) == 0)
			link_up_input(l);
		return;
	}
	if (l->outcome.result == NEG_RESULT_TLS) {
		log_info("%s: TLS agreed (%s..%s): %s", link_who(l),
			 tls_version_str(l->outcome.tls_min),
			 tls_version_str(l->outcome.tls_max),
			 neg_reason_str(l->outcome.reason));
		link_start_tls(l);
		return;
	}
	link_event_init(l, &ev, HOOK_PLAINTEXT_AGREED);
	ev.reason = neg_reason_str(l->outcome.reason);
	ev.reason_code = l->outcome.reason;
	ev.reason_name = neg_reason_name(l->outcome.reason);
	ev.tls_offset_out = l->tx_neg_len;	/* where the mux starts */
	ev.tls_offset_in = l->rx_neg_len;
	hook_emit(&ev);
	log_info("%s: plaintext agreed: %s", link_who(l), ev.reason);
	/* The dialler may already hold the acceptor's first frames. */
	if (link_start_mux(l) == 0)
		link_up_input(l);
}

/*
 * Acceptor, TLS first: the decision for an offer that came inside TLS.
 * The outcome can only be TLS: a partner with tls = off is refused, any
 * other is raised to require.  The session the handshake made must lie
 * within the outcome; the client certificate was asked for by the
 * daemon section (the partner was not known yet), so a partner that
 * requires one the peer did not present is refused; then the daemon's
 * identity checks run, before the DECISION goes.  Returns 0 with
 * l->outcome set (a refusal there is sent by the caller), or -1 when
 * the link was refused or failed here.
 */
static int
link_tls_first_decide(struct link *l, char *text, size_t textlen)
{
	uint16_t reason = 0;

	if (l->mine.tls_mode == TLS_MODE_OFF) {
		snprintf(text, textlen, "this link started with TLS (TLS first) "
			 "and tls = off applies to node '%s' here",
			 l->peer.params.node);
		link_refuse(l, NEG_R_REQUIRED_BY_DIALER, text);
		return -1;
	}
	l->mine.tls_mode = TLS_MODE_REQUIRE;
	policy_decide(&l->peer.params, &l->mine, &l->outcome);
	if (l->outcome.result != NEG_RESULT_TLS)
		return 0;
	if (link_tls_first_session_ok(l, &reason, text, textlen) < 0) {
		link_refuse(l, reason, text);
		return -1;
	}
	if (l->cfg.client_cert == CERT_WANT_REQUIRE &&
	    l->tls_info.peer.subject[0] == '\0') {
		snprintf(text, textlen, "node '%s' must present a client "
			 "certificate (client_cert = require for it) and "
			 "presented none; on a TLS-first link the certificate "
			 "is asked for by the relay's own client_cert",
			 l->peer.params.node);
		link_refuse(l, NEG_R_CERT_REQUIRED, text);
		return -1;
	}
	return link_verify(l);
}

/* Acceptor: the peer's offer is complete. */
static void
link_on_offer(struct link *l)
{
	struct neg_msg m;
	size_t extra = iobuf_len(&l->in);
	uint16_t reason = 0;
	char text[NEG_TEXT_MAX + 1] = "";

	if (l->tls != NULL)
		extra += (size_t)tls_conn_pending(l->tls);
	if (l->peer.type != NEG_OFFER) {
		link_fail(l, LOG_ERR, "peer sent a %s where an OFFER was "
			  "expected", neg_type_str(l->peer.type));
		return;
	}
	if (extra > 0) {
		link_fail(l, LOG_ERR, "peer sent %zu bytes after its offer "
			  "without waiting for the decision; closing without "
			  "reading them (protocol violation or injection)", extra);
		return;
	}
	if (l->ops->on_offer != NULL &&
	    l->ops->on_offer(l->ud, l, &l->peer.params, &l->mine,
			     &l->cfg.client_cert, &reason, text,
			     sizeof(text)) < 0) {
		link_refuse(l, reason, text[0] ? text : NULL);
		return;
	}
	l->mine.cert_want = (uint8_t)l->cfg.client_cert;
	if (l->tls != NULL && link_tls_first_decide(l, text, sizeof(text)) < 0)
		return;
	if (l->tls == NULL)
		policy_decide(&l->peer.params, &l->mine, &l->outcome);
	if (l->outcome.result == NEG_RESULT_REFUSE) {
		link_refuse(l, l->outcome.reason, NULL);
		return;
	}
	neg_msg_init(&m, NEG_DECISION);
	m.params = l->mine;
	m.outcome = l->outcome;
	if (link_send_neg(l, &m) < 0)
		return;
	link_proceed(l);
}

/* The peer's text goes into our log: no control characters. */
static void
link_clean_text(char *text)
{
	char *c;

	for (c = text; *c != '\0'; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?';
}

void
link_tls_first_plain_answer(struct link *l)
{
	struct iobuf *in = &l->in;
	size_t used = 0, len = iobuf_len(in);
	enum neg_status st;

	if (len > NEG_MAX_LEN)
		len = NEG_MAX_LEN;
	st = neg_decoder_feed(l->dec, iobuf_data(in), len, &used);
	iobuf_drain(in, used);
	if (st == NEG_NEED_MORE)
		return;
	l->fail_stage = "negotiation";
	if (st != NEG_DONE || neg_decoder_msg(l->dec)->type != NEG_REFUSE) {
		link_handshake_failed(l, "negotiation",
				      link_tls_first_unanswered(l));
		return;
	}
	l->peer = *neg_decoder_msg(l->dec);
	link_clean_text(l->peer.text);
	link_fail(l, LOG_ERR, "the relay refused the link before TLS: %s%s%s "
		  "(it answered our TLS ClientHello with a plaintext REFUSE)",
		  neg_reason_str(l->peer.outcome.reason),
		  l->peer.text[0] ? "; it says: " : "", l->peer.text);
	link_report_refused(l, "peer", l->peer.outcome.reason, l->reason);
}

/* Dialler: the relay's decision or refusal is complete. */
static void
link_on_decision(struct link *l)
{
	size_t extra = iobuf_len(&l->in);
	uint16_t reason = 0;

	if (l->peer.type == NEG_REFUSE) {
		link_clean_text(l->peer.text);
		if (l->tls != NULL)
			l->fail_stage = "negotiation";
		link_fail(l, LOG_ERR, "the relay refused the link%s: %s%s%s",
			  l->tls != NULL ? " inside TLS" : "",
			  neg_reason_str(l->peer.outcome.reason),
			  l->peer.text[0] ? "; it says: " : "", l->peer.text);
		link_report_refused(l, "peer", l->peer.outcome.reason,
				    l->reason);
		return;
	}
	if (policy_check_decision(&l->mine, &l->peer, &reason) < 0) {
		if (l->tls != NULL)
			l->fail_stage = "negotiation";
		link_fail(l, LOG_ERR, "the relay's decision is not acceptable: %s",
			  neg_reason_str(reason));
		link_report_refused(l, "local", reason, l->reason);
		return;
	}
	l->outcome = l->peer.outcome;
	if (l->tls != NULL) {
		char why[256];

		/* Bytes after the DECISION are the relay's BIND, inside
		 * TLS: authenticated, they go to the mux. */
		if (link_tls_first_session_ok(l, &reason, why, sizeof(why)) < 0) {
			l->fail_stage = "negotiation";
			link_fail(l, LOG_ERR, "the relay's decision is not "
				  "acceptable: %s", why);
			link_report_refused(l, "local", NEG_R_DECISION_MISMATCH,
					    l->reason);
			return;
		}
		link_proceed(l);
		return;
	}
	if (l->outcome.result == NEG_RESULT_TLS && extra > 0) {
		link_fail(l, LOG_ERR, "peer sent %zu bytes after its decision "
			  "before TLS started; closing without reading them "
			  "(protocol violation or injection)", extra);
		return;
	}
	link_proceed(l);
}

static void
link_neg_failed(struct link *l)
{
	enum neg_err e = neg_decoder_error(l->dec);
	const uint8_t *pre;
	size_t n = neg_decoder_prefix(l->dec, &pre);

	if (l->tls != NULL)
		l->fail_stage = "negotiation";
	if (e == NEG_ERR_BAD_MAGIC && l->tls != NULL) {
		link_fail(l, LOG_WARN, "peer sent %s inside TLS instead of a "
			  "negotiation message (a TLS-first peer must send its "
			  "%s first)", neg_sniff(pre, n),
			  l->cfg.dialer ? "DECISION" : "OFFER");
		return;
	}
	if (e == NEG_ERR_BAD_MAGIC) {
		int hello = n > 0 && pre[0] == 0x16 && !l->cfg.dialer;

		link_fail(l, LOG_WARN, "peer does not speak tlsplex: it sent %s "
			  "instead of a negotiation message%s", neg_sniff(pre, n),
			  hello ? " (a TLS-first partner? this relay accepts "
			  "them with tls_first = allow)" : "");
		return;
	}
	if (!l->cfg.dialer && (e == NEG_ERR_BAD_VERSION)) {
		link_refuse(l, NEG_R_NO_COMMON_PROTOCOL, neg_err_str(e));
		return;
	}
	if (!l->cfg.dialer && e != NEG_ERR_TRUNCATED) {
		link_refuse(l, NEG_R_MALFORMED, neg_err_str(e));
		return;
	}
	link_fail(l, LOG_ERR, "bad negotiation message from peer: %s%s",
		  neg_err_str(e), e == NEG_ERR_TRUNCATED ? "" : "");
}

/* TLS first: how many plaintext bytes the message still needs, so that
 * no byte after it is taken from TLS (the header first, then its body;
 * the decoder refuses a length over NEG_MAX_LEN). */
static size_t
link_neg_want(const struct link *l)
{
	size_t total;

	if (l->rx_neg_len < NEG_HDR_LEN)
		return NEG_HDR_LEN - l->rx_neg_len;
	total = NEG_HDR_LEN + ((size_t)l->rx_neg[12] << 8 | l->rx_neg[13]);
	if (total > sizeof(l->rx_neg) || total <= l->rx_neg_len)
		return 1;
	return total - l->rx_neg_len;
}

/* TLS first: the peer's negotiation message, read from inside TLS. */
static void
link_neg_input_tls(struct link *l)
{
	enum neg_status st = NEG_NEED_MORE;
	uint8_t buf[NEG_MAX_LEN];
	size_t used;
	int n;

	while (l->state == LS_NEGOTIATING) {
		n = tls_conn_read(l->tls, buf, link_neg_want(l));
		if (n == 0)
			break;
		if (n == -2 || n == -3) {
			link_handshake_failed(l, "transport", l->cfg.dialer ?
				"the relay closed the link inside TLS before "
				"its decision (see its log: it may not accept "
				"our certificate)" :
				"the peer closed the link inside TLS before "
				"its offer was complete");
			return;
		}
		if (n < 0) {
			link_handshake_failed(l, "tls", tls_conn_error(l->tls));
			return;
		}
		used = 0;
		st = neg_decoder_feed(l->dec, buf, (size_t)n, &used);
		if (l->rx_neg_len + used <= sizeof(l->rx_neg)) {
			memcpy(l->rx_neg + l->rx_neg_len, buf, used);
			l->rx_neg_len += used;
		}
		if (st == NEG_FAIL) {
			link_neg_failed(l);
			return;
		}
		if (st == NEG_DONE)
			break;
	}
	if (l->state == LS_NEGOTIATING && iobuf_len(&l->in) < LINK_IN_HIGH)
		link_read_enable(l, 1);
	if (st != NEG_DONE)
		return;
	/* A failure from here to the decision answers handshake_pending
	 * with stage negotiation (verify and bind failures name theirs). */
	l->fail_stage = "negotiation";
	l->peer = *neg_decoder_msg(l->dec);
	if (l->cfg.dialer)
		link_on_decision(l);
	else
		link_on_offer(l);
}

/*
 * Acceptor: the first byte is a TLS handshake record (a ClientHello) and
 * tls_first = allow.  The daemon section's policy decides whether TLS
 * may start before the partner is known: with tls = off it may not.
 */
static void
link_accept_tls_first(struct link *l)
{
	if (l->mine.tls_mode == TLS_MODE_OFF) {
		link_fail(l, LOG_WARN, "refused a TLS-first link (the peer sent "
			  "a TLS ClientHello first): tls = off in [relay], and "
			  "a link that starts with TLS cannot be plaintext");
		link_report_refused(l, "local", NEG_R_REQUIRED_BY_DIALER,
				    l->reason);
		return;
	}
	log_info("%s: the peer starts with TLS (TLS first); its offer "
		 "follows inside TLS", link_who(l));
	l->tls_first = 1;
	link_start_tls(l);
}

void
link_neg_input(struct link *l)
{
	struct iobuf *in = &l->in;
	enum neg_status st = NEG_NEED_MORE;

	if (l->tls != NULL) {
		link_neg_input_tls(l);
		return;
	}
	if (!l->cfg.dialer && l->cfg.tls_first && l->rx_neg_len == 0 &&
	    iobuf_len(in) > 0 && iobuf_data(in)[0] == 0x16) {
		link_accept_tls_first(l);
		return;
	}

	while (l->state == LS_NEGOTIATING && iobuf_len(in) > 0) {
		size_t len = iobuf_len(in), used = 0;
		const uint8_t *p = iobuf_data(in);

		if (len > NEG_MAX_LEN)
			len = NEG_MAX_LEN;
		st = neg_decoder_feed(l->dec, p, len, &used);
		if (l->rx_neg_len + used <= sizeof(l->rx_neg)) {
			memcpy(l->rx_neg + l->rx_neg_len, p, used);
			l->rx_neg_len += used;
		}
		iobuf_drain(in, used);
		if (st == NEG_FAIL) {
			link_neg_failed(l);
			return;
		}
		if (st == NEG_DONE)
			break;
	}
	if (st != NEG_DONE)
		return;
	l->peer = *neg_decoder_msg(l->dec);
	if (l->cfg.dialer)
		link_on_decision(l);
	else
		link_on_offer(l);
}

void
link_refuse_socket(int fd, const char *node, uint16_t reason,
		   const char *text)
{
	struct neg_msg m;
	uint8_t buf[NEG_MAX_LEN], junk[4096];
	int n;

	neg_msg_refusal(&m, node, reason, text);
	n = neg_encode(&m, buf, sizeof(buf));
	if (n > 0 && send(fd, buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		log_debug("refusal to fd %d not sent: %s", fd, strerror(errno));
	shutdown(fd, SHUT_WR);
	/* What the peer already sent is read, so that close() sends FIN
	 * rather than a reset that could destroy the refusal in flight. */
	while (recv(fd, junk, sizeof(junk), MSG_DONTWAIT) > 0)
		;
	close(fd);
}
