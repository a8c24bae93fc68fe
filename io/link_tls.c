/*
 * The TLS upgrade of a link: wolfSSL over the link's buffers, the
 * handshake and its failure.
 */
#include "link_int.h"

static size_t
link_tls_recv(void *arg, uint8_t *buf, size_t n)
{
	struct link *l = arg;

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
		ev.stage = stage;
		ev.reason = why;
		hook_emit(&ev);
	}
	link_close_after_flush(l, LOG_ERR, "TLS handshake failed: %s", why);
}

void
link_handshake_step(struct link *l)
{
	int rc;

	rc = tls_conn_handshake(l->tls);
	if (rc == 0)
		return;
	if (rc < 0) {
		link_handshake_failed(l, "tls", tls_conn_error(l->tls));
		return;
	}
	/* handshake_done waits for the peer's BIND (link_on_bound). */
	tls_conn_info(l->tls, &l->tls_info);
	if (l->ops->on_verify != NULL) {
		char why[512] = "";

		if (l->ops->on_verify(l->ud, l, l->tls, &l->tls_info, why,
				      sizeof(why)) < 0) {
			link_handshake_failed(l, "verify", why[0] ? why :
					      "the peer was not accepted");
			return;
		}
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

	if (l->cfg.tls == NULL) {
		link_fail(l, LOG_ERR, "TLS was agreed but this side has no TLS "
			  "context (set cert/key or ca)");
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
