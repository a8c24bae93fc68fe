/*
 * The notification hook.  An event goes to every registered in-process
 * observer and to every open sink (io/hook_sink.h).  handshake_pending
 * fires exactly once before each TLS handshake, after the negotiation
 * bytes and before the first TLS byte; a link that stays plaintext gets
 * plaintext_agreed instead.  The schema (docs/MONITORING.md) is the field
 * table in io/hook.c: hook_write_reference() prints it, and test_hook
 * checks that the document holds what it prints.
 */
#ifndef TLSPLEX_HOOK_H
#define TLSPLEX_HOOK_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define HOOK_SCHEMA_VERSION 2

enum hook_type {
	HOOK_DAEMON_STARTED = 0,
	HOOK_DAEMON_RELOADED,
	HOOK_DAEMON_STOPPING,
	HOOK_LINK_OPENED,
	HOOK_LINK_REFUSED,
	HOOK_HANDSHAKE_PENDING,
	HOOK_HANDSHAKE_DONE,
	HOOK_HANDSHAKE_FAILED,
	HOOK_PLAINTEXT_AGREED,
	HOOK_LINK_CLOSED,
	HOOK_STREAM_OPENED,   /* observers only, never written to a sink */
	HOOK_STREAM_CLOSED,   /* observers only */
	HOOK_LINK_SUMMARY,
	HOOK_SERVICE_SUMMARY,
	HOOK_SUMMARY_END,
	HOOK_SINK_RECOVERED,  /* written only to the sink that lost events */
	HOOK_RELAY_SWITCH,    /* gateway: new links go to another relay */
	HOOK_TYPES
};

/* Nonzero for the events that sinks never see (stream_opened/closed). */
int hook_type_internal(int type);

/* A certificate's details, as handshake_done and link_closed carry them
 * for the peer's and our own certificate. */
struct hook_cert {
	const char *subject, *issuer, *serial, *sha256;
	const char *not_before, *not_after; /* RFC 3339 */
	const char *key_type;               /* "RSA", "EC", "Ed25519", ... */
	uint64_t key_bits;
	const char *sig_alg;                /* e.g. "ecdsa-with-SHA256" */
};

/*
 * One event.  String fields may be NULL when not known (the key is then
 * left out); which numeric fields an event carries is the field table's
 * business.  Fields an event does not carry are ignored.
 */
struct hook_event {
	int type;              /* enum hook_type */
	uint64_t ts_us;        /* wall clock, microseconds since the epoch;
				  hook_emit() fills it in when 0 */
	uint64_t seq;          /* filled in by hook_emit() */
	/* link events */
	uint64_t link_id;      /* 0: not about one link (TCP-stage refusal) */
	const char *local;     /* local address, "ip:port" */
	const char *peer;      /* peer address */
	const char *peer_node; /* node name the peer claimed */
	const char *transcript; /* 32 hex: SHA-256(OFFER||DECISION), 16 bytes */
	const char *direction; /* link_opened: "in" or "out" */
	/* handshake_pending: TLS starts at these offsets of the link's byte
	 * streams (bytes this side sent / received before TLS);
	 * plaintext_agreed: the mux does. */
	uint64_t tls_offset_out, tls_offset_in;
	/* handshake_done, link_closed */
	const char *protocol, *cipher, *group;
	struct hook_cert peer_cert, local_cert;
	int resumed;
	uint64_t duration_ms;  /* handshake_done: handshake; link_closed: link;
				  from a monotonic clock */
	/* refusals, failures, plaintext_agreed, link_closed, daemon events */
	const char *stage;     /* link_refused: "tcp" or "negotiation";
				  handshake_failed: where it failed */
	const char *by;        /* link_refused: "local" or "peer" */
	uint64_t reason_code;  /* negotiation reason code; 0 = none */
	const char *reason_name;
	const char *reason;    /* a sentence */
	uint64_t suppressed;   /* link_refused: refusals folded into this one */
	/* link_closed */
	const char *outcome, *protection, *last_state, *start_ts;
	uint64_t bytes_in, bytes_out, streams;
	/* stream events (observers only) */
	const char *service;
	uint64_t stream_id;
	/* daemon events */
	const char *version, *tls_library, *config, *sinks, *result;
	uint64_t links_open, summary_interval_s;
	/* relay_switch: "failover", "failback" or "exhausted"; addresses */
	const char *switch_kind, *relay_from, *relay_to;
	/* sink_recovered */
	const char *sink;
	uint64_t lost;
	/* link_summary, service_summary, summary_end (io/summary.c); the
	 * key also uses peer_node, protection, protocol, cipher, group,
	 * peer_cert's key_type, key_bits and sha256, outcome, reason_name
	 * and service, the counts bytes_in and bytes_out */
	uint64_t interval_seq;
	const char *interval_start, *interval_end; /* RFC 3339 */
	int final;
	const char *session_key;
	const char *server_ip, *client_ip;
	uint64_t server_port;
	uint64_t links_lifetime_start, links_lifetime_end;
	uint64_t links_active_start, links_active_end;
	uint64_t links_opened, links_closed, links_short;
	uint64_t handshakes_full, handshakes_resumed;
	uint64_t handshake_ms_sum, handshake_ms_max;
	uint64_t streams_opened, streams_refused;
	uint64_t records, refused_tcp_stage, links_pending, links_folded;
};

/*
 * An in-process observer.  For handshake_pending, returning -1 vetoes
 * the handshake: the link is closed before any TLS byte is sent.  The
 * return value of other events is ignored.  Observers run on the event
 * loop and must not block.
 */
typedef int (*hook_fn)(const struct hook_event *ev, void *arg);

/* Adds an observer; returns 0, or -1 when HOOK_MAX_OBSERVERS are set. */
#define HOOK_MAX_OBSERVERS 8
int hook_register(hook_fn fn, void *arg);

/*
 * Sets what every event says about the daemon that wrote it: role
 * ("relay" or "gateway"), own node name.  The instance id (random, new at
 * each start) and the pid are set once, by the first call.
 */
void hook_set_identity(const char *role, const char *node);
/* The instance id, 16 hex digits. */
const char *hook_instance(void);
/* The role and node name set by hook_set_identity() ("" before). */
const char *hook_role(void);
const char *hook_node(void);

/* The event type named name ("link_closed"), or -1. */
int hook_type_parse(const char *name);
/* Parses a sink's event filter: "all" (or empty) or event names
 * separated by ',' into a mask of (1 << type).  Returns 0, or -1 with
 * err saying which name is not an event sinks receive. */
int hook_event_mask(const char *list, uint32_t *mask, char *err,
		    size_t errlen);

/* Opens the JSON Lines file sink (appending), replacing an open one:
 * called on every reload, so that a rotated file is let go.  Returns 0,
 * or -1 with errno (an open sink stays). */
int hook_open_file(const char *path);
/* Closes the file sink; observers and other sinks stay. */
void hook_close_file(void);

/*
 * The other sinks.  Each open replaces the open sink of its kind (so a
 * reload applies new settings), and each close removes it; observers and
 * other sinks stay.  An events list is what hook_event_mask() takes.
 * The opens return 0, or -1 with err (the open sink then stays).
 */
/* Unix datagram socket (io/hook_socket.c): each event is one datagram to
 * path, sent without waiting; no receiver, or a full one, drops it. */
int hook_open_socket(const char *path, const char *events, char *err,
		     size_t errlen);
void hook_close_socket(void);

/* External command (io/hook_cmd.c). */
struct hook_cmd_conf {
	const char *path;       /* absolute path of an executable */
	const char *events;     /* events it runs for */
	uint32_t timeout_ms;    /* then SIGTERM, and SIGKILL 1 s later */
	uint32_t max;           /* commands running at once */
	int veto;               /* handshake_pending waits for its verdict */
	int veto_on_timeout;    /* a late verdict vetoes (else proceeds) */
};
int hook_open_command(const struct hook_cmd_conf *cc, char *err,
		      size_t errlen);
void hook_close_command(void);
struct event_base;
/* The loop commands run from (children, pipes, timers).  NULL kills the
 * commands still running (SIGKILL), reaps them and answers their gates.
 * The caller ignores SIGPIPE (daemon_base_new() does). */
void hook_cmd_set_base(struct event_base *base);
/* Commands running now (started, not yet reaped). */
int hook_cmd_running(void);

/* syslog (io/hook_syslog.c): RFC 5424 datagrams to the Unix socket at
 * path (/dev/log), sent without waiting. */
enum hook_syslog_format {
	HOOK_SYSLOG_OFF = 0,
	HOOK_SYSLOG_JSON,       /* the event's JSON is the MSG */
	HOOK_SYSLOG_RFC5424,    /* its keys are structured data */
};
int hook_open_syslog(int format, int facility, const char *ident,
		     const char *path, char *err, size_t errlen);
void hook_close_syslog(void);
/* Closes every sink and forgets observers. */
void hook_reset(void);

/* Delivers ev; returns -1 if an observer vetoed it, else 0.  A sink
 * failure is counted and logged once per failure streak, and neither
 * vetoes nor keeps other sinks from the event. */
int hook_emit(struct hook_event *ev);

/*
 * handshake_pending, with sinks that may decide (the command sink with
 * hook_command_veto): returns -1 vetoed now (why says by whom), 0
 * proceed now, or 1: the answer comes later through done(arg, verdict,
 * why) from the event loop, unless hook_gate_cancel(*gate) came first.
 */
struct hook_gate;
typedef void (*hook_gate_fn)(void *arg, int verdict, const char *why);
int hook_emit_gated(struct hook_event *ev, hook_gate_fn done, void *arg,
		    struct hook_gate **gate, char *why, size_t whylen);
/* The waiting side is gone: done will not be called.  NULL is a no-op. */
void hook_gate_cancel(struct hook_gate *g);

/* Formats ev as one JSON object without newline.  Returns its length,
 * or -1 if cap is too small. */
int hook_format_json(const struct hook_event *ev, char *buf, size_t cap);

/* The event's name ("handshake_pending"), or "unknown". */
const char *hook_type_str(int type);

/* Prints docs/MONITORING.md's tables: one per event, a row per key. */
void hook_write_reference(FILE *out);

/* Splits "ip:port" or "[ip6]:port" into ip (without brackets) and port.
 * Returns 0, or -1 when a is NULL or not of that form. */
int hook_split_addr(const char *a, char *ip, size_t iplen, uint64_t *port);

/* Events emitted since start (the last seq). */
uint64_t hook_seq(void);

/* Formats a wall-clock time (microseconds since the epoch) as RFC 3339
 * UTC with microseconds into buf (at least 32 bytes). */
void hook_rfc3339(uint64_t ts_us, char *buf, size_t len);
/* Wall-clock and monotonic microseconds. */
uint64_t hook_wall_us(void);
uint64_t hook_mono_us(void);

#endif
