/*
 * Stream multiplexer session (sans-I/O), in the style of nghttp2's
 * mem_recv/mem_send: the caller feeds received link bytes to mux_recv()
 * and pulls bytes to transmit from mux_send().  The session never does
 * I/O, never allocates per byte, and never logs.
 *
 * Streams opened by the dialling side have odd ids, by the accepting
 * side even ids; the accepting side opens streams only when the dialler
 * announced that it takes them (settings.reverse).  Each stream has credit-based flow control: a side may
 * send DATA only within the credit its peer granted.  Outgoing data is
 * pulled from the caller through read_data(), one frame per stream per
 * round, so streams share the link round-robin.
 */
#ifndef TLSPLEX_MUX_H
#define TLSPLEX_MUX_H

#include "frame.h"

struct mux;

#define MUX_LINK_BUDGET_MIN (32u * 1024u) /* smallest nonzero link budget */
#define MUX_LINK_PROBES_MAX 8   /* LINK_ACK probes outstanding at most */
#define MUX_SPARSE_QUANTUM 2048 /* suggested sparse_quantum, bytes */

struct mux_settings {
	int dialer;                   /* nonzero: this side opens odd ids */
	uint32_t max_frame;           /* largest DATA payload either way */
	uint32_t local_window;        /* initial credit we grant per stream */
	uint32_t peer_window;         /* initial credit the peer grants us */
	uint32_t local_max_streams;   /* streams the peer may hold open to us */
	uint32_t peer_max_streams;    /* streams we may hold open to the peer */
	uint8_t bind[FRAME_BIND_LEN]; /* transcript hash both sides must send */
	int link_ack;                 /* nonzero: both sides speak LINK_ACK
					 (struct mux_limits.link_ack) */
	uint32_t sparse_quantum;      /* bytes a freshly woken stream sends
					 ahead of the round-robin streams;
					 0: no such priority */
	int reverse;                  /* nonzero: the acceptor may open
					 streams (the dialler announced
					 REVERSE; struct mux_limits) */
};

/*
 * Callbacks.  ud is the session's user pointer; sud is the stream's.
 * Callbacks may call mux_open(), mux_resume(), mux_consumed(), mux_ping()
 * and mux_goaway(), but not mux_reset(), mux_close_all() or mux_free().
 */
struct mux_callbacks {
	/* The peer opened a stream.  Return 0 and set *sud to accept, or a
	 * mux_code to refuse it (a RESET is sent, no on_close follows). */
	uint32_t (*on_open)(void *ud, uint32_t id, const char *service,
			    void **sud);
	/* Stream data.  The bytes use the stream's receive credit until the
	 * caller passes them to mux_consumed().  Return 0, or a mux_code to
	 * reset the stream. */
	uint32_t (*on_data)(void *ud, uint32_t id, void *sud,
			    const uint8_t *p, size_t n);
	/* The peer half-closed the stream: no more data will come. */
	void (*on_fin)(void *ud, uint32_t id, void *sud);
	/* The stream is gone: both sides sent FIN (code MUX_C_NO_ERROR), or
	 * it was reset (by_peer says by whom), or mux_close_all() ran.
	 * The id is invalid afterwards. */
	void (*on_close)(void *ud, uint32_t id, void *sud, uint32_t code,
			 int by_peer);
	/* Pulls up to max outgoing bytes for a stream into buf and returns
	 * the count.  Set *eof once the source has ended and every byte was
	 * handed over; the stream then sends FIN.  Returning 0 without eof
	 * parks the stream until mux_resume(). */
	size_t (*read_data)(void *ud, uint32_t id, void *sud, uint8_t *buf,
			    size_t max, int *eof);
	/* The peer will accept no streams above last_id. */
	void (*on_goaway)(void *ud, uint32_t last_id, uint32_t code,
			  const char *text);
	/* A PING we sent was answered. */
	void (*on_pong)(void *ud, uint64_t opaque);
	/* Optional.  The mux_send() call running now wrote a LINK_ACK probe;
	 * offset counts every link byte mux_send() produced up to and
	 * including it, so the probe leaves with the bytes that call
	 * returns. */
	void (*on_link_probe)(void *ud, uint64_t offset);
	/* Optional.  The peer answered the probe at offset (and every older
	 * one): it has processed every frame up to there.  inflight is
	 * what mux_link_inflight() returns from now on. */
	void (*on_link_ack)(void *ud, uint64_t offset, uint64_t inflight);
};

enum mux_err {
	MUX_ERR_NONE = 0,
	MUX_ERR_FRAME,         /* frame codec error; see mux_frame_error() */
	MUX_ERR_NO_BIND,       /* first frame was not BIND */
	MUX_ERR_BIND_MISMATCH, /* peer saw different negotiation bytes */
	MUX_ERR_BAD_STREAM,    /* frame names a stream that never existed */
	MUX_ERR_OVERLOAD,      /* peer makes us queue unbounded control frames */
	MUX_ERR_NOMEM,
	MUX_ERR_FLOW,          /* LINK_ACK answer for bytes never probed */
};

/* Returns a session, or NULL on allocation failure or bad settings. */
struct mux *mux_new(const struct mux_settings *s,
		    const struct mux_callbacks *cb, void *ud);
/* Frees the session without calling callbacks.  NULL is a no-op. */
void mux_free(struct mux *m);

/* Feeds received link bytes.  Returns 0, or -1 on a link-fatal error
 * (see mux_error()); the session then refuses further input. */
int mux_recv(struct mux *m, const uint8_t *in, size_t len);
/* Tells the session the peer closed the link.  Returns 0 if between
 * frames, -1 with MUX_ERR_FRAME/FRAME_ERR_TRUNCATED otherwise. */
int mux_recv_eof(struct mux *m);

/* Writes frames to send into buf, at most cap bytes (cap must be at
 * least FRAME_HDR_LEN + FRAME_CTRL_MAX).  Returns the byte count, 0 when
 * there is nothing to send now. */
size_t mux_send(struct mux *m, uint8_t *buf, size_t cap);
/* Nonzero when mux_send() may have bytes to produce.  DATA held back by
 * the link budget does not count, so the caller may wait for input; it
 * counts again once an answer frees the budget. */
int mux_want_write(const struct mux *m);

/* Sets the link budget: how many link bytes may be produced and not yet
 * acknowledged before DATA is held back.  0 means no bound; a nonzero
 * value below MUX_LINK_BUDGET_MIN is raised to it.  It applies only when
 * settings.link_ack is set, and may change at any time.  A new session
 * has no bound. */
void mux_set_link_budget(struct mux *m, uint32_t bytes);
/* Bytes mux_send() produced that the peer has not acknowledged yet (with
 * link_ack off nothing is ever acknowledged: every byte produced). */
uint64_t mux_link_inflight(const struct mux *m);
/* How many bursts of freshly woken streams ended within the quantum:
 * the stream sent what it had and went idle (interactive traffic).  A
 * stream that used up its quantum in a recent burst is bulk: its short
 * bursts count again only after 8 in a row. */
uint64_t mux_sparse_served(const struct mux *m);

/* Opens a stream to service.  Returns its id, or 0 when the peer's
 * stream limit is reached, a GOAWAY was received, name is invalid, or
 * this side is the acceptor and settings.reverse is off. */
uint32_t mux_open(struct mux *m, const char *service, void *sud);
/* Wakes a stream parked by read_data(). */
void mux_resume(struct mux *m, uint32_t id);
/* The caller has delivered n bytes of the stream's data; credit is
 * returned to the peer in WINDOW frames. */
void mux_consumed(struct mux *m, uint32_t id, size_t n);
/* Aborts a stream: queues RESET and calls on_close(by_peer = 0). */
void mux_reset(struct mux *m, uint32_t id, uint32_t code);
/* Calls on_close with code for every open stream, and forgets them. */
void mux_close_all(struct mux *m, uint32_t code);

/* Queues a PING; on_pong fires when the answer arrives. */
void mux_ping(struct mux *m, uint64_t opaque);
/* Queues a GOAWAY naming the last peer stream accepted.  Peer OPENs
 * that cross it (arrive before the peer's own GOAWAY, so the peer sent
 * them before it learned of ours) are still accepted; later ones are
 * refused. */
void mux_goaway(struct mux *m, uint32_t code, const char *text);
/* Nonzero once the peer's GOAWAY has arrived: it opens no more streams. */
int mux_goaway_received(const struct mux *m);

/* A stream's user pointer; NULL for unknown ids. */
void *mux_stream_data(const struct mux *m, uint32_t id);
size_t mux_stream_count(const struct mux *m);
/* Streams opened in total, by either side. */
uint64_t mux_streams_total(const struct mux *m);

/* Nonzero once the peer's BIND arrived and matched ours: the peer saw
 * the same negotiation bytes, and (over TLS) accepted our handshake. */
int mux_bound(const struct mux *m);

enum mux_err mux_error(const struct mux *m);
enum frame_err mux_frame_error(const struct mux *m);
const char *mux_err_str(enum mux_err err);

#endif
