/*
 * Parameter-negotiation message codec (sans-I/O).
 *
 * Every link starts with one message from each side, in plaintext:
 * the dialling side sends an OFFER, the accepting side answers with a
 * DECISION or a REFUSE.  A message is a fixed 14-byte header followed by
 * a body of TLV fields.  See docs/PROTOCOL.md for the byte layout.
 */
#ifndef TLSPLEX_NEG_H
#define TLSPLEX_NEG_H

#include <stddef.h>
#include <stdint.h>

#define NEG_MAGIC_LEN 8
#define NEG_HDR_LEN 14
#define NEG_MAX_LEN 4096 /* whole message, header included */
#define NEG_PROTO_VERSION 1
#define NEG_NODE_MAX 64
#define NEG_TEXT_MAX 255
#define NEG_CIPHERS_MAX 32
#define NEG_NONCE_LEN 16

extern const uint8_t neg_magic[NEG_MAGIC_LEN];

enum neg_type {
	NEG_OFFER = 1,
	NEG_DECISION = 2,
	NEG_REFUSE = 3,
};

/* TLS policy modes, ordered from weakest to strongest demand. */
enum tls_mode {
	TLS_MODE_OFF = 0,
	TLS_MODE_ALLOW = 1,
	TLS_MODE_PREFER = 2,
	TLS_MODE_REQUIRE = 3,
};

/* What the accepting side asks of the dialler's certificate. */
enum cert_want {
	CERT_WANT_NONE = 0,
	CERT_WANT_OPTIONAL = 1,
	CERT_WANT_REQUIRE = 2,
};

/* TLS protocol versions, as on the TLS wire. */
#define TLSV_1_2 0x0303
#define TLSV_1_3 0x0304

/* TLV field types.  Bit 15 set on the wire marks a field critical:
 * a receiver that does not know a critical field rejects the message. */
enum neg_field {
	NEG_F_NODE = 1,        /* string, 1..64 bytes of [A-Za-z0-9._-] */
	NEG_F_TLS_MODE = 2,    /* u8 enum tls_mode */
	NEG_F_TLS_VERSIONS = 3, /* u16 min, u16 max */
	NEG_F_CIPHERS = 4,     /* u16 IANA suite ids, preference order */
	NEG_F_CERT = 5,        /* u8 present (0/1), u8 enum cert_want */
	NEG_F_MUX = 6,         /* u32 max_streams, u32 window, u32 max_frame */
	NEG_F_KEEPALIVE = 7,   /* u32 milliseconds, 0 = none */
	NEG_F_NONCE = 8,       /* 16 random bytes */
	NEG_F_OUTCOME = 9,     /* u8 result, u16 reason, u16 tls_min, u16 tls_max */
	NEG_F_COMMON_CIPHERS = 10, /* u16 suite ids both sides accept */
	NEG_F_TEXT = 11,       /* UTF-8 text for a person, <= 255 bytes */
	NEG_F_FLOW = 12,       /* u32 capability bits NEG_FLOW_*; absent = 0 */
};
#define NEG_F_CRITICAL 0x8000

/* NEG_F_FLOW capability bits.  Unknown bits are kept on decode and mean
 * nothing to this version. */
#define NEG_FLOW_LINK_ACK 0x00000001u /* speaks LINK_ACK probes and answers */
#define NEG_FLOW_REVERSE  0x00000002u /* dialler: takes streams the acceptor
					 opens (reverse services) */

enum neg_result {
	NEG_RESULT_PLAINTEXT = 0,
	NEG_RESULT_TLS = 1,
	NEG_RESULT_REFUSE = 2,
};

/* Reason codes carried in an outcome.  Codes below 100 explain a
 * plaintext or TLS outcome; codes from 100 explain a refusal. */
enum neg_reason {
	NEG_R_NONE = 0,
	NEG_R_TLS_AGREED = 1,         /* one side asked for TLS, neither forbids it */
	NEG_R_NEITHER_ASKED = 2,      /* both sides at most allow TLS */
	NEG_R_DIALER_OFF = 3,         /* dialler has TLS off, acceptor does not require it */
	NEG_R_ACCEPTOR_OFF = 4,       /* acceptor has TLS off, dialler does not require it */
	NEG_R_REQUIRED_BY_DIALER = 100,   /* dialler requires TLS, acceptor has it off */
	NEG_R_REQUIRED_BY_ACCEPTOR = 101, /* acceptor requires TLS, dialler has it off */
	NEG_R_NO_COMMON_VERSION = 102,    /* TLS version ranges do not overlap */
	NEG_R_NO_COMMON_CIPHER = 103,     /* no cipher suite usable by both */
	NEG_R_NO_COMMON_PROTOCOL = 104,   /* negotiation protocol versions do not overlap */
	NEG_R_MALFORMED = 105,            /* the offer could not be decoded */
	NEG_R_UNKNOWN_PEER = 106,         /* node name matches no partner definition */
	NEG_R_BUSY = 107,                 /* a limit was reached; try later */
	NEG_R_DECISION_MISMATCH = 108,    /* decision does not follow from the offers */
	NEG_R_POLICY_VIOLATION = 109,     /* decision breaks the dialler's own policy */
	NEG_R_CERT_REQUIRED = 110,        /* the acceptor needs a client
					     certificate the dialler does not
					     offer (tls = verify) or did not
					     present (TLS first) */
};

/* One side's parameters, as carried by OFFER and DECISION. */
struct neg_params {
	char node[NEG_NODE_MAX + 1];
	uint8_t tls_mode;
	uint16_t tls_min, tls_max;
	uint8_t n_ciphers;
	uint16_t ciphers[NEG_CIPHERS_MAX];
	uint8_t cert_present;
	uint8_t cert_want;
	uint32_t max_streams;
	uint32_t window;
	uint32_t max_frame;
	uint32_t keepalive_ms;
	uint8_t nonce[NEG_NONCE_LEN];
	uint32_t flow_caps;   /* NEG_FLOW_* bits; 0 when the field is absent
				 (an older peer), and then not encoded */
};

/* The accepting side's verdict. */
struct neg_outcome {
	uint8_t result;   /* enum neg_result */
	uint16_t reason;  /* enum neg_reason */
	uint16_t tls_min, tls_max;
	uint8_t n_ciphers;
	uint16_t ciphers[NEG_CIPHERS_MAX];
};

struct neg_msg {
	uint8_t type;             /* enum neg_type */
	uint8_t ver_min, ver_max; /* negotiation protocol versions spoken */
	struct neg_params params; /* OFFER, DECISION; REFUSE carries node only */
	struct neg_outcome outcome; /* DECISION, REFUSE */
	char text[NEG_TEXT_MAX + 1]; /* REFUSE: reason for a person; may be empty */
};

enum neg_err {
	NEG_ERR_NONE = 0,
	NEG_ERR_BAD_MAGIC,      /* first bytes are not the tlsplex magic */
	NEG_ERR_BAD_VERSION,    /* protocol version range excludes ours */
	NEG_ERR_TOO_LARGE,      /* declared length exceeds NEG_MAX_LEN */
	NEG_ERR_TRUNCATED,      /* stream ended inside a message */
	NEG_ERR_BAD_TYPE,       /* unknown message type */
	NEG_ERR_MALFORMED,      /* TLV framing broken */
	NEG_ERR_BAD_FIELD,      /* a field has a bad length or value */
	NEG_ERR_MISSING_FIELD,  /* a required field is absent */
	NEG_ERR_DUPLICATE_FIELD,
	NEG_ERR_UNKNOWN_CRITICAL, /* unknown field marked critical */
};

/* Clears m and sets its type and the protocol versions we speak. */
void neg_msg_init(struct neg_msg *m, uint8_t type);
/* Makes m a REFUSE from node with reason and text for a person (NULL:
 * the reason's own words, neg_reason_str()). */
void neg_msg_refusal(struct neg_msg *m, const char *node, uint16_t reason,
		     const char *text);

/* Encodes msg into out.  Returns the length written, or -1 when msg is
 * invalid or cap is too small. */
int neg_encode(const struct neg_msg *msg, uint8_t *out, size_t cap);

struct neg_decoder;

/* Returns a decoder ready for one message, or NULL on allocation failure. */
struct neg_decoder *neg_decoder_new(void);
void neg_decoder_free(struct neg_decoder *dec);

enum neg_status {
	NEG_FAIL = -1,
	NEG_NEED_MORE = 0,
	NEG_DONE = 1,
};

/* Feeds len bytes.  Sets *consumed to the bytes taken; on NEG_DONE it
 * stops exactly at the end of the message, so the caller sees any bytes
 * that follow.  After NEG_DONE or NEG_FAIL further feeds return the same
 * status and consume nothing. */
enum neg_status neg_decoder_feed(struct neg_decoder *dec, const uint8_t *in,
				 size_t len, size_t *consumed);

/* Tells the decoder the stream ended.  Returns NEG_DONE if a message was
 * complete, otherwise NEG_FAIL with NEG_ERR_TRUNCATED. */
enum neg_status neg_decoder_finish(struct neg_decoder *dec);

/* The decoded message; valid only after NEG_DONE. */
const struct neg_msg *neg_decoder_msg(const struct neg_decoder *dec);
enum neg_err neg_decoder_error(const struct neg_decoder *dec);
/* The TLV type that caused NEG_ERR_BAD_FIELD and similar, or 0. */
uint16_t neg_decoder_error_field(const struct neg_decoder *dec);
/* Bytes consumed so far, the message length once done. */
size_t neg_decoder_offset(const struct neg_decoder *dec);
/* The first bytes the decoder saw (up to 16), for neg_sniff(). */
size_t neg_decoder_prefix(const struct neg_decoder *dec, const uint8_t **p);

const char *neg_err_str(enum neg_err err);
/* A reason code's sentence, and its name ("UNKNOWN_PEER"; "UNKNOWN" for
 * a code this version does not know). */
const char *neg_reason_str(uint16_t reason);
const char *neg_reason_name(uint16_t reason);
const char *neg_type_str(uint8_t type);
const char *tls_mode_str(uint8_t mode);
const char *tls_version_str(uint16_t v);

/* Names what the first bytes of a stream look like, for a log line when
 * they are not a negotiation message: "a TLS ClientHello", "an HTTP
 * request", "an SSH banner", or "unrecognised bytes". */
const char *neg_sniff(const uint8_t *p, size_t len);

#endif
