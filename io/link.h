/*
 * A link between a gateway and a relay: the negotiation, the optional
 * TLS upgrade, and the multiplexed streams, driven by libevent.  The
 * same code serves the dialling side (gateway) and the accepting side
 * (relay); only the callbacks differ.
 */
#ifndef TLSPLEX_LINK_H
#define TLSPLEX_LINK_H

#include <stddef.h>
#include <stdint.h>

#include "neg.h"

struct event_base;
struct sockaddr;
struct bufferevent;
struct tls_ctx;
struct tls_conn;
struct tls_info;
struct link;

/* The states of a link; io/link.c has the diagram of the changes. */
enum link_state {
	LS_CONNECTING,  /* dialler: TCP connect in progress */
	LS_NEGOTIATING, /* waiting for the peer's negotiation message */
	LS_NOTIFYING,   /* TLS agreed; a notification sink has not yet
			   answered handshake_pending */
	LS_HANDSHAKE,   /* TLS handshake in progress */
	LS_BINDING,     /* mux running, waiting for the peer's BIND */
	LS_UP,          /* bound: streams may be opened */
	LS_DRAINING,    /* GOAWAY sent or received: no new streams; closes
			   once the last one is done */
	LS_CLOSING,     /* flushing a last message, then destroyed */
	LS_DEAD,        /* destroy scheduled */
};
#define LINK_STATES (LS_DEAD + 1)

/* The state's name as docs/PROTOCOL.md writes it ("CONNECTING", ...). */
const char *link_state_name(enum link_state s);
/* Nonzero when a link may change from state from to state to. */
int link_state_allowed(enum link_state from, enum link_state to);

struct link_config {
	int dialer;                  /* nonzero on the gateway */
	const char *role;            /* "gateway" or "relay", for hooks */
	struct tls_ctx *tls;         /* NULL when TLS is off */
	struct neg_params params;    /* our offer; the nonce is filled in */
	int client_cert;             /* acceptor: enum cert_want */
	const char *server_name;     /* dialler: name the relay cert carries */
	int tls_first;               /* dialler: start TLS at once, negotiate
					inside it; acceptor: accept links that
					do so (docs/PROTOCOL.md, "TLS first") */
	uint32_t negotiation_timeout_ms;
	uint32_t handshake_timeout_ms;
	uint32_t keepalive_timeout_ms; /* silence after which the link is dead */
};

struct link_ops {
	/* Acceptor: the peer's offer arrived.  May adjust *mine and
	 * *client_cert for this peer.  Return 0, or -1 with *reason set,
	 * and optionally text (a sentence for the peer), to refuse the
	 * link. */
	int (*on_offer)(void *ud, struct link *l, const struct neg_params *offer,
			struct neg_params *mine, int *client_cert,
			uint16_t *reason, char *text, size_t textlen);
	/* The TLS handshake succeeded; info describes the session and the
	 * peer certificate.  Return 0 to go on, or -1 with a reason in why
	 * to fail the handshake (the link closes).  May be NULL. */
	int (*on_verify)(void *ud, struct link *l, struct tls_conn *tls,
			 const struct tls_info *info, char *why, size_t whylen);
	/* The link carries streams now. */
	void (*on_up)(void *ud, struct link *l);
	/* The link is closing; it is freed when this returns. */
	void (*on_down)(void *ud, struct link *l);
	/* The link takes no new streams any more (GOAWAY either way); it
	 * closes by itself once its streams are done.  May be NULL. */
	void (*on_draining)(void *ud, struct link *l);
	/* The peer opened a stream to service.  Return a bufferevent for the
	 * local side (connected or connecting), or NULL with *code set. */
	struct bufferevent *(*on_stream)(void *ud, struct link *l,
					 const char *service, uint32_t *code);
};

/*
 * Starts a link.  An acceptor passes the accepted socket fd (the link
 * owns it from here on; it is closed on failure).  A dialler passes
 * fd -1 and the address to connect to.  Returns NULL on failure.
 */
struct link *link_new(struct event_base *base, int fd,
		      const struct sockaddr *sa, int salen,
		      const struct link_config *cfg, const struct link_ops *ops,
		      void *ud);

/* Starts a stream to service for a local connection bev (which the link
 * then owns).  Returns 0, or -1 (bev freed) when the link cannot take it.
 * When count is not NULL it is incremented now and decremented when the
 * connection is released, even after the link itself is gone. */
int link_open_stream(struct link *l, const char *service,
		     struct bufferevent *bev, unsigned *count);

/* Refuses a connection that never became a link: sends a REFUSE naming
 * node, reason and text without waiting, and closes fd. */
void link_refuse_socket(int fd, const char *node, uint16_t reason,
			const char *text);

/* The daemon's pointer for this link (NULL until set). */
void link_set_data(struct link *l, void *data);
void *link_data(const struct link *l);
/* Nonzero when the link runs TLS and the peer presented a certificate
 * that verified. */
int link_peer_has_cert(const struct link *l);

/* Closes the link from the event loop; reason goes to the log and the
 * link_closed event.  Safe to call more than once. */
void link_close(struct link *l, const char *reason);

/* Sends GOAWAY: existing streams finish, new ones are refused, and the
 * link closes when the last stream is done. */
void link_drain(struct link *l, const char *why);
void link_drain_all(const char *why);

/* The daemon has begun to stop (SIGTERM): links not up yet are closed,
 * and a handshake that fails from now on is reported with stage
 * "shutdown". */
void link_begin_shutdown(void);

/* Closes every link and frees what they hold; for daemon shutdown. */
void link_close_all(const char *reason);

/* Nonzero when the link takes new streams: negotiated, confirmed by the
 * peer's BIND, and not draining. */
int link_is_up(const struct link *l);
int link_is_tls(const struct link *l);
/* Nonzero when the relay may open streams on the link: the gateway
 * announced reverse services (NEG_FLOW_REVERSE) in its offer. */
int link_reverse(const struct link *l);
uint64_t link_id(const struct link *l);
const char *link_peer_node(const struct link *l);
size_t link_count(void);
/* Open links in state st. */
size_t link_count_by_state(enum link_state st);
/* Calls fn for every open link with its id and the bytes it has read
 * from and written to its socket so far. */
void link_bytes_each(void (*fn)(void *arg, uint64_t id, uint64_t in,
				uint64_t out), void *arg);
/* Why the link ends, once it does ("" before); for the daemon's log in
 * on_down. */
const char *link_reason(const struct link *l);
/* Streams open on every link, and streams whose link is done with them
 * that are still writing what they received to their socket. */
size_t link_streams_open(void);
/* Streams open on l. */
size_t link_stream_count(const struct link *l);
size_t link_streams_flushing(void);

#endif
