/*
 * The notification hook.  An event is delivered to every registered
 * in-process callback and to the JSON Lines file sink, if one is open.
 * handshake_pending fires exactly once before each TLS handshake, after
 * the negotiation bytes and before the first TLS byte; a link that stays
 * plaintext gets plaintext_agreed instead.
 */
#ifndef TLSPLEX_HOOK_H
#define TLSPLEX_HOOK_H

#include <stddef.h>
#include <stdint.h>

enum hook_type {
	HOOK_HANDSHAKE_PENDING = 0,
	HOOK_HANDSHAKE_DONE,
	HOOK_HANDSHAKE_FAILED,
	HOOK_PLAINTEXT_AGREED,
	HOOK_LINK_CLOSED,
};

/* String fields may be NULL when not known. */
struct hook_event {
	int type;              /* enum hook_type */
	uint64_t ts_us;        /* wall clock, microseconds since the epoch */
	uint64_t link_id;
	const char *role;      /* "relay" or "gateway" */
	const char *local;     /* local address, "ip:port" */
	const char *peer;      /* peer address */
	const char *peer_node; /* node name the peer claimed */
	/* handshake_pending: TLS starts at these offsets of the link's byte
	 * streams (bytes this side sent / received before TLS). */
	uint64_t tls_offset_out, tls_offset_in;
	/* handshake_done */
	const char *protocol, *cipher, *group;
	const char *peer_subject, *peer_issuer, *peer_serial;
	const char *peer_sha256, *peer_not_after;
	int resumed;
	uint64_t duration_ms;  /* handshake_done: handshake; link_closed: link */
	/* handshake_failed, plaintext_agreed, link_closed */
	const char *reason;
	/* link_closed */
	uint64_t bytes_in, bytes_out, streams;
};

/*
 * An in-process observer.  For handshake_pending, returning -1 vetoes
 * the handshake: the link is closed before any TLS byte is sent.  The
 * return value of other events is ignored.
 */
typedef int (*hook_fn)(const struct hook_event *ev, void *arg);

/* Adds an observer; returns 0, or -1 when HOOK_MAX_OBSERVERS are set. */
#define HOOK_MAX_OBSERVERS 8
int hook_register(hook_fn fn, void *arg);

/* Opens the JSON Lines sink (appending).  Returns 0, or -1 with errno. */
int hook_open_file(const char *path);
/* Closes the sink; observers stay. */
void hook_close_file(void);
/* Closes the sink and forgets observers. */
void hook_reset(void);

/* Delivers ev; returns -1 if an observer vetoed it, else 0.  A sink
 * write failure is logged, once per failure streak, and does not veto. */
int hook_emit(struct hook_event *ev);

/* Formats ev as one JSON object without newline.  Returns its length,
 * or -1 if cap is too small. */
int hook_format_json(const struct hook_event *ev, char *buf, size_t cap);

const char *hook_type_str(int type);

#endif
