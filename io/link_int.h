/*
 * What the parts of the link share (io/link.c: the link itself, its
 * states and data path; io/link_neg.c: the negotiation; io/link_tls.c:
 * the TLS upgrade; io/link_stream.c: the streams).  Not for use outside
 * them: the link's interface is io/link.h.
 */
#ifndef TLSPLEX_LINK_INT_H
#define TLSPLEX_LINK_INT_H

#include "link.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "hook.h"
#include "iobuf.h"
#include "log.h"
#include "mux.h"
#include "net.h"
#include "policy.h"
#include "tlsio.h"

/* Link output above this stops the mux from producing; writing resumes
 * when the socket has drained it below LINK_OUT_LOW.  Kept small so that
 * a frame of an interactive stream waits behind little bulk data: the
 * order of frames is decided by the mux scheduler, not by a queue. */
#define LINK_OUT_HIGH (64 * 1024)
#define LINK_OUT_LOW (16 * 1024)
/* Unsent bytes the kernel may hold before the link socket stops being
 * writable (TCP_NOTSENT_LOWAT): what the socket did not take waits in
 * the bufferevent, where the mux's order still applies. */
#define LINK_NOTSENT_LOWAT (16 * 1024)
/* Largest single write of a stream's bufferevent. */
#define SOCKET_IO_MAX (256 * 1024)
/* Bytes of link input processed per turn before other events run, and
 * the most read ahead of processing. */
#define LINK_READ_CHUNK (64 * 1024)
#define LINK_IN_HIGH (128 * 1024)
/* Sealed records gathered by one link_flush() before they are written
 * with one system call. */
#define LINK_STAGE_CAP (64 * 1024)
#define LINK_CLOSE_LINGER_MS 2000
/* Largest TLS record payload: the unit the mux fills per write. */
#define LINK_SEND_CHUNK 16384

/* The link budget's measurements (io/link.c, link_flow_update). */
struct link_flow {
	uint64_t probe_off[MUX_LINK_PROBES_MAX];
	uint64_t probe_us[MUX_LINK_PROBES_MAX];
	unsigned first, n;          /* ring of probes not yet answered */
	uint64_t min_rtt_us, min_rtt_at;
	uint64_t rate, rate_at;     /* bytes per second, windowed maximum */
	uint64_t span_off, span_us; /* start of the current rate sample */
	uint64_t sparse_seen, sparse_at;
	uint32_t budget;
};

struct stream {
	TAILQ_ENTRY(stream) entry;
	struct link *link;      /* NULL once the mux forgot the stream */
	uint32_t id;
	struct bufferevent *bev;
	char service[FRAME_SERVICE_MAX + 1];
	unsigned connecting : 1; /* local connect in progress */
	unsigned rd_eof : 1;     /* local side sent its last byte */
	unsigned peer_fin : 1;   /* peer sent FIN: shut our write side */
	unsigned wr_shut : 1;
	unsigned freeing : 1;
	unsigned orphan : 1;     /* on stream_orphans: the mux is done, the
				    socket is still being written */
	struct event *rd_ev;     /* readiness only; see link_cb_read_data() */
	unsigned rd_on : 1;      /* rd_ev is added */
	unsigned readable : 1;   /* the socket has bytes the mux has not taken */
	int rd_err;              /* errno of a failed read, reported by rd_ev */
	unsigned *count;         /* the opener's count of live connections */
	/* For stream_opened / stream_closed (observers only). */
	uint64_t link_id;
	uint32_t open_id;        /* id stays known after the mux forgot it */
	uint64_t bytes_in, bytes_out; /* read from / written to the socket */
	unsigned reported : 1;   /* stream_opened went out */
	unsigned on_tls : 1;
	unsigned reset : 1;
	char peer_node[NEG_NODE_MAX + 1];
};
TAILQ_HEAD(stream_list, stream);

struct link {
	TAILQ_ENTRY(link) entry;
	uint64_t id;
	struct event_base *base;
	struct bufferevent *bev;
	struct link_config cfg;
	struct event *rd_ev;       /* our own reads: link_sock_read_cb() */
	struct iobuf in;           /* bytes read from the socket */
	struct iobuf stage;        /* sealed records of one link_flush() */
	int corked;                /* inside link_flush(): records go to stage */
	int rd_on;
	int close_gently;          /* drained: FIN, then read to the peer's */
	int fin_sent;
	char server_name[256];     /* cfg.server_name points here */
	const struct link_ops *ops;
	void *ud;
	enum link_state state;
	char reason[512];
	struct event *deadline_ev;
	struct event *kick_ev;
	struct event *free_ev;
	struct event *ka_ev;
	struct neg_decoder *dec;
	uint8_t tx_neg[NEG_MAX_LEN];
	size_t tx_neg_len;
	uint8_t rx_neg[NEG_MAX_LEN];
	size_t rx_neg_len;
	struct neg_params mine;
	struct neg_msg peer;
	struct neg_outcome outcome;
	struct tls_conn *tls;
	struct mux *mux;
	uint8_t *sendbuf;          /* LINK_SEND_CHUNK bytes, once the mux runs */
	uint32_t keepalive_ms;
	char local[NET_ADDRSTR_MAX];
	char peer_addr[NET_ADDRSTR_MAX];
	uint64_t bytes_in, bytes_out;
	uint64_t t_start_us, t_hs_us, last_rx_us, last_ping_us; /* monotonic */
	uint64_t t_open_wall_us;   /* for link_closed's start_ts */
	/* What the hook reports (io/link.c, link_destroy). */
	enum link_state last_state; /* the state before DEAD */
	unsigned connected : 1;    /* the TCP connection exists */
	unsigned hs_pending : 1;   /* handshake_pending not yet answered by
				      handshake_done or handshake_failed */
	unsigned hs_failed : 1;    /* handshake_failed reported */
	unsigned bound : 1;        /* reached UP */
	unsigned refused : 1;      /* a REFUSE went or came, or we refused
				      the peer's decision */
	unsigned tls_first : 1;    /* TLS runs before the negotiation, which
				      is then carried inside it */
	int first_rx;              /* the peer's first byte; -1 until one came */
	uint16_t refuse_code;      /* enum neg_reason */
	const char *fail_stage;    /* handshake_failed's stage, if destroy
				      must report it */
	uint8_t transcript[32];    /* SHA-256(OFFER || DECISION) */
	char transcript_hex[33];   /* its first 16 bytes; "" until known */
	struct hook_gate *gate;    /* NOTIFYING: the sinks' answer */
	void *data;            /* the daemon's, see link_set_data() */
	struct tls_info tls_info;
	struct stream_list streams;
	struct link_flow flow;
};
TAILQ_HEAD(link_list, link);

extern struct stream_list stream_orphans;
extern int link_stopping;
extern int link_shutdown;

/* io/link.c: the link itself. */
uint64_t link_now_us(void);
void link_ms_to_tv(uint32_t ms, struct timeval *tv);
/* "link N with ADDRESS (node NAME)", for log lines; a static buffer. */
const char *link_who(const struct link *l);
void link_event_init(struct link *l, struct hook_event *ev, int type);
/* Fills in ev's TLS attributes and both certificates from the session. */
void link_event_tls(struct link *l, struct hook_event *ev);
/* Reports a refusal of this link (link_refused): by "local" or "peer". */
void link_report_refused(struct link *l, const char *by, uint16_t code,
			 const char *text);
/* The one place a link changes state (checked against the table). */
void link_set_state(struct link *l, enum link_state to);
/* Logs the reason once and schedules the link's destruction. */
void link_fail(struct link *l, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Sends what is queued, then closes (a refusal, an alert). */
void link_close_after_flush(struct link *l, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Asks the loop for a flush; requests before it runs are merged. */
void link_kick(struct link *l);
/* Link bytes on their way out (gathered while link_flush() runs). */
int link_emit(struct link *l, const uint8_t *p, size_t n);
void link_up_input(struct link *l);
/* Starts the mux: BIND goes out, the link is BINDING.  0 or -1. */
int link_start_mux(struct link *l);
int link_read_start(struct link *l);
/* Starts or stops reading the link socket. */
void link_read_enable(struct link *l, int on);

/* io/link_stream.c: the streams and the mux callbacks for them. */
/* Detaches s from its link and frees it; reset closes its socket with
 * a TCP reset. */
void stream_release(struct stream *s, int reset);
uint32_t link_cb_open(void *ud, uint32_t id, const char *service, void **sud);
uint32_t link_cb_data(void *ud, uint32_t id, void *sud, const uint8_t *p,
		      size_t n);
void link_cb_fin(void *ud, uint32_t id, void *sud);
void link_cb_close(void *ud, uint32_t id, void *sud, uint32_t code,
		   int by_peer);
size_t link_cb_read_data(void *ud, uint32_t id, void *sud, uint8_t *buf,
			 size_t max, int *eof);

/* io/link_tls.c: the TLS upgrade. */
void link_start_tls(struct link *l);
void link_handshake_step(struct link *l);
/* Emits handshake_failed and closes after the alert is flushed. */
void link_handshake_failed(struct link *l, const char *stage, const char *why);
void link_tls_read_failed(struct link *l, const char *why);
/* Runs the daemon's on_verify; 0, or -1 after failing the handshake. */
int link_verify(struct link *l);
/* TLS first: whether the TLS session lies within the agreed outcome (its
 * version and suite).  0, or -1 with *reason and a sentence in why. */
int link_tls_first_session_ok(struct link *l, uint16_t *reason, char *why,
			      size_t whylen);
/* TLS first, dialler: why the handshake ended when the relay sent
 * nothing or a negotiation message back; NULL otherwise. */
const char *link_tls_first_unanswered(const struct link *l);

/* io/link_neg.c: the negotiation. */
void link_fill_nonce(struct neg_params *p);
void link_send_offer(struct link *l);
void link_neg_input(struct link *l);
/* TLS first, dialler: the handshake is done; sends the OFFER inside TLS. */
void link_send_offer_tls(struct link *l);
/* TLS first, dialler: the relay answered the ClientHello with a plaintext
 * negotiation message (a REFUSE sent without reading, such as busy):
 * decodes it from the link input, never giving it to TLS, and ends the
 * link with its reason. */
void link_tls_first_plain_answer(struct link *l);

#endif
