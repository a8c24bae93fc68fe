/*
 * Hostile parties for end-to-end tests, on 127.0.0.1 only: a man in the
 * middle that decodes and rewrites the negotiation messages, a fake
 * relay that answers the gateway's OFFER with whatever a test forges,
 * helpers for a fake gateway that dials the relay, and a witness
 * backend that counts what reaches it.  Every wait is bounded; the
 * helpers do not use Criterion and may run on any thread.
 */
#ifndef TLSPLEX_MITM_H
#define TLSPLEX_MITM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "frame.h"
#include "neg.h"

#define MITM_CAPTURE_MAX (1u << 20) /* bytes recorded per direction */
#define MITM_CONNS_MAX 32           /* connections served per MITM */

enum mitm_dir {
	MITM_C2S = 0, /* dialler (gateway) to target (relay) */
	MITM_S2C = 1, /* target back to the dialler */
};

/* One negotiation message in transit, handed to the edit callback. */
struct mitm_edit {
	int conn;                    /* connection number, from 0 */
	enum mitm_dir dir;
	struct neg_msg msg;          /* as decoded; change it to rewrite */
	const struct neg_msg *other; /* the message seen the other way, or NULL */
	/* raw_len > 0: send these bytes instead of the message. */
	uint8_t raw[NEG_MAX_LEN];
	size_t raw_len;
	/* Bytes after the message: in the same send() when later_ms is 0,
	 * else in a send() of their own later_ms after it, and nothing
	 * else passes that way in between. */
	uint8_t extra[4096];
	size_t extra_len;
	int later_ms;
};

/* Called on the MITM's thread for the first message each way. */
typedef void (*mitm_edit_fn)(struct mitm_edit *e, void *arg);

/* When the DECISION as forwarded is plaintext, also hold the first mux
 * frame each way (BIND) until both arrived, and forward each with the
 * other's hash: what an active MITM does to make the plaintext BIND
 * check pass.  Links that go on to TLS are relayed as they are. */
#define MITM_SWAP_BIND 0x1

struct mitm;

/* Listens on a free port and proxies each connection to
 * 127.0.0.1:target_port from a thread, rewriting as above (fn may be
 * NULL: forward unchanged).  Returns NULL on error. */
struct mitm *mitm_start(int target_port, mitm_edit_fn fn, void *arg, int flags);
/* mitm_start() listening on listen_addr and proxying to
 * target_addr:target_port (IPv4, network byte order): a MITM on another
 * host, in a network namespace of its own. */
struct mitm *mitm_start_at(uint32_t listen_addr, uint32_t target_addr, int target_port,
			   mitm_edit_fn fn, void *arg, int flags);
int mitm_port(const struct mitm *m);
/* Connections accepted so far. */
int mitm_conns(struct mitm *m);
/* Waits until n connections were accepted.  0, or -1 on timeout. */
int mitm_wait_conns(struct mitm *m, int n, int timeout_ms);
/* The bytes received from the source of dir on conn (before any
 * rewrite), with their count in *len.  The pointer stays valid until
 * mitm_stop(); later bytes are appended.  NULL if conn does not exist. */
const uint8_t *mitm_bytes(struct mitm *m, int conn, enum mitm_dir dir, size_t *len);
/* Length of the first negotiation message received in dir, or 0 when
 * none was complete (or the stream did not start with one). */
size_t mitm_neg_len(struct mitm *m, int conn, enum mitm_dir dir);
/* Queues n bytes (at most 4096 pending) to be sent to the destination
 * of dir on conn between two forwarded reads, within about 20 ms.  The
 * caller picks a moment when no frame is half-way through.  0, or -1
 * when conn is closed, unknown or the queue is full. */
int mitm_inject(struct mitm *m, int conn, enum mitm_dir dir, const void *p, size_t n);
/* 1 once both BIND frames of conn were swapped, else 0. */
int mitm_bind_swapped(struct mitm *m, int conn);
/* 1 once both sockets of conn are closed, 0 before, -1 if no conn. */
int mitm_closed(struct mitm *m, int conn);
/* Waits until conn is closed.  0, or -1 on timeout. */
int mitm_wait_closed(struct mitm *m, int conn, int timeout_ms);
/* Stops every thread and frees everything.  mitm_stop(NULL) is a no-op. */
void mitm_stop(struct mitm *m);

/* mitm_edit_fn edits shared by the suites (arg unused).  The OFFER's
 * tls_mode set to off. */
void mitm_strip_offer(struct mitm_edit *e, void *arg);
/* Both cipher lists cut to one suite, the last TLS 1.3 one the gateway
 * offered; from the second link on the DECISION's outcome is recomputed
 * to match, so only the transcript (BIND) catches it. */
void mitm_one_cipher(struct mitm_edit *e, void *arg);

/* --- building messages --------------------------------------------- */

/* Fills p with plausible parameters: node, mode, TLS 1.3 only, the
 * three TLS 1.3 suites, no certificate, default mux limits, a nonce. */
void fake_params(struct neg_params *p, const char *node, uint8_t mode);
/* Encodes an OFFER carrying p.  Returns its length or -1. */
int fake_offer(const struct neg_params *p, uint8_t *out, size_t cap);
/* Encodes the DECISION an acceptor with parameters relay would send
 * for offer (outcome from policy_decide).  Returns its length or -1
 * (also when the outcome would be a refusal). */
int fake_decision(const struct neg_params *offer, const struct neg_params *relay,
		  uint8_t *out, size_t cap);
/* Encodes a REFUSE.  Returns its length or -1. */
int fake_refuse(uint16_t reason, const char *text, uint8_t *out, size_t cap);
/* Encodes BIND (all-zero hash), OPEN of stream 1 for service, and DATA
 * on stream 1: what an injector would send to reach a backend over a
 * plaintext link.  Returns the length or -1. */
int fake_frames(const char *service, const char *data, uint8_t *out, size_t cap);

/* SHA-256 of a then b (b may be NULL): the BIND hash of OFFER ‖ DECISION,
 * which anyone who saw both messages can compute. */
void fake_sha256(const void *a, size_t alen, const void *b, size_t blen,
		 uint8_t out[32]);

/* --- a fake gateway: plain blocking sockets -------------------------- */

/* Reads one negotiation message from fd within timeout_ms.  1 when one
 * was decoded into *msg (if not NULL), 0 on EOF or timeout, -1 when
 * the bytes are not a valid message. */
int fake_read_neg(int fd, struct neg_msg *msg, int timeout_ms);
/* Sends n bytes one at a time, gap_ms apart, until done or the peer
 * closes.  Returns the bytes sent. */
size_t fake_send_slowly(int fd, const void *p, size_t n, int gap_ms);
/* Waits for the peer to close fd, discarding what it sends.  Returns
 * the bytes read before the close, or -1 on timeout. */
long fake_wait_close(int fd, int timeout_ms);
/* Open descriptors of process pid (from /proc/PID/fd), or -1. */
int fd_count(pid_t pid);

/* --- a fake relay ---------------------------------------------------- */

struct fake_answer {
	const uint8_t *offer; /* in: the OFFER's bytes as received, or NULL */
	size_t offer_len;
	uint8_t bytes[8192]; /* sent in one send() */
	size_t len;
	int close_after;     /* close the connection once sent */
	int gap_ms;          /* > 0: send one byte at a time, this far apart */
};

/*
 * Called on the fake relay's thread twice per connection: first with
 * offer NULL as soon as it is accepted (an answer filled then is sent
 * before the OFFER is read), then, if nothing was sent, with the
 * decoded OFFER (NULL again if the gateway sent no valid one).
 */
typedef void (*fake_relay_fn)(int conn, const struct neg_msg *offer,
			      struct fake_answer *a, void *arg);

struct fake_relay;

/* Listens on a free port.  Returns NULL on error. */
struct fake_relay *fake_relay_start(fake_relay_fn fn, void *arg);
int fake_relay_port(const struct fake_relay *fr);
int fake_relay_conns(struct fake_relay *fr);
int fake_relay_wait_conns(struct fake_relay *fr, int n, int timeout_ms);
/* Milliseconds (h_now_ms clock) when conn was accepted, or -1. */
int64_t fake_relay_accepted_at(struct fake_relay *fr, int conn);
/* Bytes the gateway sent on conn after its OFFER (when the stream held
 * no valid OFFER: from the read in which decoding failed); count in
 * *len; valid until fake_relay_stop(). */
const uint8_t *fake_relay_after_offer(struct fake_relay *fr, int conn, size_t *len);
/* 1 if a whole valid OFFER arrived on conn, 0 if not, -1 if no conn. */
int fake_relay_got_offer(struct fake_relay *fr, int conn);
/* 1 once the gateway closed conn (or the fake relay did), 0 before. */
int fake_relay_closed(struct fake_relay *fr, int conn);
void fake_relay_stop(struct fake_relay *fr);

/* --- a witness backend ------------------------------------------------ */

struct witness;

/* Listens on 127.0.0.1:port and echoes every connection, counting
 * connections and bytes.  Returns NULL on error. */
struct witness *witness_start(int port);
int witness_conns(struct witness *w);
size_t witness_bytes(struct witness *w);
void witness_stop(struct witness *w);

#endif
