/*
 * Mux frame codec (sans-I/O).
 *
 * Frame: u24 length, u8 type, u8 flags, u32 stream id (big endian),
 * then length bytes of payload.  See docs/PROTOCOL.md.
 */
#ifndef TLSPLEX_FRAME_H
#define TLSPLEX_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define FRAME_HDR_LEN 9
#define FRAME_MAX_PAYLOAD 0xffffff
#define FRAME_CTRL_MAX 1024 /* bound on any non-DATA payload */
#define FRAME_BIND_LEN 32
#define FRAME_SERVICE_MAX 64
#define FRAME_LINK_ACK_LEN 8 /* LINK_ACK payload: u64 link byte offset */

enum frame_type {
	FRAME_DATA = 0,   /* stream data; FIN flag half-closes */
	FRAME_OPEN = 1,   /* u8 name length, name: open a stream to a service */
	FRAME_RESET = 2,  /* u32 code: abort a stream */
	FRAME_WINDOW = 3, /* u32 increment: grant send credit on a stream */
	FRAME_PING = 4,   /* 8 opaque bytes; ACK flag on the answer */
	FRAME_GOAWAY = 5, /* u32 last stream id, u32 code, text */
	FRAME_BIND = 6,   /* 32-byte transcript hash; first frame each way */
	FRAME_LINK_ACK = 7, /* u64 link byte offset: a probe, or with the ACK
			       flag its answer (only when negotiated) */
};

#define FRAME_FLAG_FIN 0x01 /* DATA */
#define FRAME_FLAG_ACK 0x01 /* PING, LINK_ACK */

/* Stream reset codes and GOAWAY codes. */
enum mux_code {
	MUX_C_NO_ERROR = 0,
	MUX_C_REFUSED = 1,         /* no such service, or not allowed */
	MUX_C_CONNECT_FAILED = 2,  /* backend connect failed */
	MUX_C_CONN_RESET = 3,      /* client or backend reset the connection */
	MUX_C_FLOW_CONTROL = 4,    /* peer sent beyond its credit */
	MUX_C_PROTOCOL = 5,        /* peer broke the frame protocol */
	MUX_C_LIMIT = 6,           /* too many streams */
	MUX_C_TLS_REQUIRED = 7,    /* service needs a TLS link */
	MUX_C_SHUTDOWN = 8,        /* daemon is stopping */
	MUX_C_INTERNAL = 9,        /* local resource failure */
};
const char *mux_code_str(uint32_t code);

struct frame_hdr {
	uint32_t len;
	uint8_t type;
	uint8_t flags;
	uint32_t stream;
};

/* Writes the 9-byte header. */
void frame_hdr_encode(const struct frame_hdr *h, uint8_t out[FRAME_HDR_LEN]);

/* Each encoder writes a whole frame into out and returns its length, or
 * -1 if cap is too small or an argument is out of range. */
int frame_encode_data(uint8_t *out, size_t cap, uint32_t stream,
		      const uint8_t *p, size_t n, int fin);
int frame_encode_open(uint8_t *out, size_t cap, uint32_t stream,
		      const char *service);
int frame_encode_reset(uint8_t *out, size_t cap, uint32_t stream,
		       uint32_t code);
int frame_encode_window(uint8_t *out, size_t cap, uint32_t stream,
			uint32_t incr);
int frame_encode_ping(uint8_t *out, size_t cap, uint64_t opaque, int ack);
int frame_encode_goaway(uint8_t *out, size_t cap, uint32_t last_stream,
			uint32_t code, const char *text);
int frame_encode_bind(uint8_t *out, size_t cap,
		      const uint8_t hash[FRAME_BIND_LEN]);
/* A LINK_ACK probe (ack = 0) carrying the sender's link byte count up to
 * and including the probe, or (ack != 0) the answer echoing a probe's
 * offset. */
int frame_encode_link_ack(uint8_t *out, size_t cap, uint64_t offset,
			  int ack);

enum frame_err {
	FRAME_ERR_NONE = 0,
	FRAME_ERR_TOO_LARGE,   /* length over the agreed maximum */
	FRAME_ERR_BAD_LENGTH,  /* control frame length wrong for its type */
	FRAME_ERR_BAD_STREAM,  /* stream id 0 where a stream is needed, or the reverse */
	FRAME_ERR_BAD_VALUE,   /* field value out of range */
	FRAME_ERR_TRUNCATED,   /* stream ended inside a frame */
	FRAME_ERR_CALLBACK,    /* a callback asked to stop */
};
const char *frame_err_str(enum frame_err err);

/*
 * Decoder callbacks.  Control frames arrive whole in on_frame.  DATA
 * arrives in chunks through on_data as bytes come in, never buffered;
 * last is set on the chunk that ends the frame (possibly empty).
 * A callback returns 0 to go on, -1 to stop decoding with FRAME_ERR_CALLBACK.
 */
struct frame_callbacks {
	int (*on_frame)(void *ud, const struct frame_hdr *h,
			const uint8_t *payload);
	int (*on_data)(void *ud, const struct frame_hdr *h,
		       const uint8_t *chunk, size_t n, int last);
};

struct frame_decoder;

/* max_payload bounds DATA payloads; control payloads are bounded by
 * FRAME_CTRL_MAX.  Returns NULL on allocation failure. */
struct frame_decoder *frame_decoder_new(uint32_t max_payload,
					const struct frame_callbacks *cb,
					void *ud);
void frame_decoder_free(struct frame_decoder *dec);

/* Feeds bytes; returns 0 when all were consumed, -1 on error (then
 * frame_decoder_error() names it, and the decoder stays failed). */
int frame_decoder_feed(struct frame_decoder *dec, const uint8_t *in,
		       size_t len);
/* At end of stream: 0 if between frames, -1 with FRAME_ERR_TRUNCATED. */
int frame_decoder_finish(struct frame_decoder *dec);
enum frame_err frame_decoder_error(const struct frame_decoder *dec);

#endif
