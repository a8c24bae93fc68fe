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
		link_handshake_failed(l, why);
	else
		link_fail(l, LOG_ERR, "TLS error: %s", why);
}

/* ---- TLS ------------------------------------------------------------- */

void
link_handshake_failed(struct link *l, const char *why)
{
	struct hook_event ev;

	link_event_init(l, &ev, HOOK_HANDSHAKE_FAILED);
	ev.reason = why;
	hook_emit(&ev);
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
		link_handshake_failed(l, tls_conn_error(l->tls));
		return;
	}
	/* handshake_done waits for the peer's BIND (link_on_bound). */
	tls_conn_info(l->tls, &l->tls_info);
	if (l->ops->on_verify != NULL) {
		char why[512] = "";

		if (l->ops->on_verify(l->ud, l, l->tls, &l->tls_info, why,
				      sizeof(why)) < 0) {
			link_handshake_failed(l, why[0] ? why :
					      "the peer was not accepted");
			return;
		}
	}
	if (link_start_mux(l) == 0)
		link_up_input(l);
}

void
link_start_tls(struct link *l)
{
	struct hook_event ev;
	struct tls_conn_params p;
	struct timeval tv;
	char err[256];

	if (l->cfg.tls == NULL) {
		link_fail(l, LOG_ERR, "TLS was agreed but this side has no TLS "
			  "context (set cert/key or ca)");
		return;
	}
	/* The hook fires after the negotiation bytes, before any TLS byte. */
	link_event_init(l, &ev, HOOK_HANDSHAKE_PENDING);
	ev.tls_offset_out = l->tx_neg_len;
	ev.tls_offset_in = l->rx_neg_len;
	if (hook_emit(&ev) < 0) {
		link_fail(l, LOG_ERR, "a notification hook vetoed the TLS "
			  "handshake");
		return;
	}
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
		link_handshake_failed(l, err);
		return;
	}
	link_set_state(l, LS_HANDSHAKE);
	l->t_hs_us = link_now_us();
	link_ms_to_tv(l->cfg.handshake_timeout_ms, &tv);
	evtimer_add(l->deadline_ev, &tv);
	link_handshake_step(l);
}
