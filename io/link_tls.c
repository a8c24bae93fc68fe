/*
 * The TLS upgrade of a link: wolfSSL over the link's buffers, the
 * handshake and its failure.
 */
#include "link_int.h"

static size_t
link_tls_recv(void *arg, uint8_t *buf, size_t n)
{
	struct link *l = arg;

	/* TLS first, dialler: the handshake may start before any input. */
	if (iobuf_len(&l->in) == 0)
		return 0;
	return iobuf_take(&l->in, buf, n);
}

static int
link_tls_send(void *arg, const uint8_t *buf, size_t n)
{
	return link_emit(arg, buf, n);
}

static const struct tls_io link_tls_io = {
	.recv = link_tls_recv,
	.send = link_tls_send,
};

/* A TLS read failed: before the peer's BIND that means the peer
 * rejected our handshake (TLS 1.3 clients finish before the server has
 * checked their certificate). */
void
link_tls_read_failed(struct link *l, const char *why)
{
	if (l->state == LS_BINDING)
		link_handshake_failed(l, "tls", why);
	else
		link_fail(l, LOG_ERR, "TLS error: %s", why);
}

/* ---- TLS ------------------------------------------------------------- */

void
link_handshake_failed(struct link *l, const char *stage, const char *why)
{
	struct hook_event ev;

	if (l->hs_pending) {
		l->hs_pending = 0;
		l->hs_failed = 1;
		link_event_init(l, &ev, HOOK_HANDSHAKE_FAILED);
		ev.stage = link_shutdown ? "shutdown" : stage;
		ev.reason = why;
		hook_emit(&ev);
	}
	link_close_after_flush(l, LOG_ERR, "TLS handshake failed: %s", why);
}

/* The daemon's checks of the peer (identity, issuer), once TLS is up
 * and the partner is known.  0, or -1 after failing the handshake. */
int
link_verify(struct link *l)
{
	char why[512] = "";

	if (l->ops->on_verify == NULL ||
	    l->ops->on_verify(l->ud, l, l->tls, &l->tls_info, why,
			      sizeof(why)) == 0)
		return 0;
	link_handshake_failed(l, "verify", why[0] ? why :
			      "the peer was not accepted");
	return -1;
}

const char *
link_tls_first_unanswered(const struct link *l)
{
	if (!l->tls_first || !l->cfg.dialer || l->state != LS_HANDSHAKE)
		return NULL;
	if (l->first_rx < 0)
		return "the relay closed the connection without answering our "
		       "TLS ClientHello: it does not accept TLS-first links "
		       "(tls_first = allow on the relay), or refused this one "
		       "(see its log)";
	if (l->first_rx == 0x89)
		return "the relay answered our TLS ClientHello with a "
		       "negotiation message in plaintext: it refused the link "
		       "before reading it (busy?) or does not accept TLS-first "
		       "links (tls_first = allow on the relay)";
	return NULL;
}

static uint16_t
link_tls_version_id(const char *protocol)
{
	if (strcmp(protocol, "TLSv1.3") == 0)
		return TLSV_1_3;
	if (strcmp(protocol, "TLSv1.2") == 0)
		return TLSV_1_2;
	return 0;
}

int
link_tls_first_session_ok(struct link *l, uint16_t *reason, char *why,
			  size_t whylen)
{
	const struct neg_outcome *o = &l->outcome;
	const struct cipher_info *ci = cipher_by_name(l->tls_info.cipher);
	uint16_t v = link_tls_version_id(l->tls_info.protocol);
	uint8_t i;

	if (v == 0 || v < o->tls_min || v > o->tls_max) {
		*reason = NEG_R_NO_COMMON_VERSION;
		snprintf(why, whylen, "the TLS session (%s) is outside the "
			 "versions both sides allow (%s..%s)",
			 l->tls_info.protocol, tls_version_str(o->tls_min),
			 tls_version_str(o->tls_max));
		return -1;
	}
	for (i = 0; ci != NULL && i < o->n_ciphers; i++)
		if (o->ciphers[i] == ci->id)
			return 0;
	*reason = NEG_R_NO_COMMON_CIPHER;
	snprintf(why, whylen, "the TLS session's cipher suite %s is not one "
		 "both sides allow", l->tls_info.cipher);
	return -1;
}

void
link_handshake_step(struct link *l)
{
	int rc;

	if (l->tls_first && l->cfg.dialer && l->first_rx == 0x89) {
		link_tls_first_plain_answer(l);
		return;
	}
	rc = tls_conn_handshake(l->tls);
	if (rc == 0) {
		if (iobuf_len(&l->in) < LINK_IN_HIGH)
			link_read_enable(l, 1);
		return;
	}
	if (rc < 0) {
		const char *why = link_tls_first_unanswered(l);

		link_handshake_failed(l, "tls", why ? why :
				      tls_conn_error(l->tls));
		return;
	}
	/* handshake_done waits for the peer's BIND (link_on_bound). */
	tls_conn_info(l->tls, &l->tls_info);
	if (l->tls_first && !l->cfg.dialer) {
		/* The partner, and so its checks, come with the OFFER. */
		link_set_state(l, LS_NEGOTIATING);
		if (iobuf_len(&l->in) < LINK_IN_HIGH)
			link_read_enable(l, 1);
		link_neg_input(l);
		return;
	}
	if (link_verify(l) < 0)
		return;
	if (l->tls_first) {
		link_send_offer_tls(l);
		return;
	}
	if (link_start_mux(l) == 0)
		link_up_input(l);
}

/* The sinks let the handshake go ahead: the first TLS byte may go. */
static void
link_begin_handshake(struct link *l)
{
	struct tls_conn_params p;
	char err[256];

	memset(&p, 0, sizeof(p));
	p.tls_min = l->outcome.tls_min;
	p.tls_max = l->outcome.tls_max;
	p.ciphers = l->outcome.ciphers;
	p.n_ciphers = l->outcome.n_ciphers;
	if (l->tls_first) {
		/* Nothing is agreed yet: each side offers its own (the
		 * acceptor its daemon section's, as the partner is not known
		 * before the OFFER), and the negotiation inside checks the
		 * session against the outcome. */
		p.tls_min = l->mine.tls_min;
		p.tls_max = l->mine.tls_max;
		p.ciphers = l->mine.ciphers;
		p.n_ciphers = l->mine.n_ciphers;
	}
	p.server_name = l->cfg.server_name;
	p.client_cert = l->cfg.client_cert;
	l->tls = tls_conn_new_io(l->cfg.tls, &link_tls_io, l, &p, err,
				 sizeof(err));
	if (l->tls == NULL) {
		link_handshake_failed(l, "tls", err);
		return;
	}
	link_set_state(l, LS_HANDSHAKE);
	link_handshake_step(l);
}

static void
link_gate_done(void *arg, int verdict, const char *why)
{
	struct link *l = arg;

	l->gate = NULL;
	if (l->state != LS_NOTIFYING)
		return;
	if (verdict < 0) {
		l->fail_stage = "veto";
		link_handshake_failed(l, "veto", why);
		return;
	}
	link_begin_handshake(l);
}

void
link_start_tls(struct link *l)
{
	struct hook_event ev;
	struct timeval tv;
	char why[256] = "";
	int rc;

	if (l->tls_first && l->mine.tls_mode == TLS_MODE_OFF) {
		link_fail(l, LOG_ERR, "tls_first is set but tls = off: a link "
			  "that starts with TLS cannot be plaintext");
		return;
	}
	if (l->cfg.tls == NULL) {
		link_fail(l, LOG_ERR, "%s but this side has no TLS context (set "
			  "cert/key or ca)", l->tls_first ? "the link starts "
			  "with TLS (TLS first)" : "TLS was agreed");
		return;
	}
	/* The hook fires after the negotiation bytes, before any TLS byte;
	 * the wait for a sink that decides counts in handshake_timeout. */
	l->t_hs_us = link_now_us();
	link_ms_to_tv(l->cfg.handshake_timeout_ms, &tv);
	evtimer_add(l->deadline_ev, &tv);
	link_event_init(l, &ev, HOOK_HANDSHAKE_PENDING);
	ev.tls_offset_out = l->tx_neg_len;
	ev.tls_offset_in = l->rx_neg_len;
	l->hs_pending = 1;
	rc = hook_emit_gated(&ev, link_gate_done, l, &l->gate, why, sizeof(why));
	if (rc < 0) {
		char msg[512];

		snprintf(msg, sizeof(msg), "a notification hook vetoed the TLS "
			 "handshake: %s", why);
		l->fail_stage = "veto";
		link_handshake_failed(l, "veto", msg);
		return;
	}
	if (rc == 1) {
		link_set_state(l, LS_NOTIFYING);
		return;
	}
	link_begin_handshake(l);
}
