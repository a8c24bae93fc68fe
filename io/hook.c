/*
 * The hook's core: the event schema (one field table), identity and
 * sequence numbers, observers, the sink registry and gated delivery.
 */
#include "hook.h"
#include "hook_sink.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static struct {
	hook_fn fn;
	void *arg;
} hook_observers[HOOK_MAX_OBSERVERS];
static int hook_nobservers;

struct hook_sink {
	char name[256];
	const struct hook_sink_ops *ops;
	void *state;
	int failing;
	struct hook_sink_stats stats;
	uint64_t streak_lost; /* events lost in the current failure streak */
	uint64_t async_lost;  /* the sink's lost() when last asked */
};
static struct hook_sink hook_sinks[HOOK_MAX_SINKS];
static int hook_nsinks;

static struct {
	char role[16];
	char node[256];
	char instance[17];
	unsigned long pid;
	uint64_t seq;
} hook_id;

/* ---- the schema --------------------------------------------------------- */

#define B(t) (1u << (t))
#define EV_LINK (B(HOOK_LINK_OPENED) | B(HOOK_LINK_REFUSED) |                \
		 B(HOOK_HANDSHAKE_PENDING) | B(HOOK_HANDSHAKE_DONE) |         \
		 B(HOOK_HANDSHAKE_FAILED) | B(HOOK_PLAINTEXT_AGREED) |        \
		 B(HOOK_LINK_CLOSED) | B(HOOK_STREAM_OPENED) |                \
		 B(HOOK_STREAM_CLOSED))
#define EV_ALL ((1u << HOOK_TYPES) - 1)
#define EV_TLS (B(HOOK_HANDSHAKE_DONE) | B(HOOK_LINK_CLOSED))
#define EV_REASON (B(HOOK_LINK_REFUSED) | B(HOOK_HANDSHAKE_FAILED) |         \
		   B(HOOK_PLAINTEXT_AGREED) | B(HOOK_LINK_CLOSED))
#define EV_LS B(HOOK_LINK_SUMMARY)
#define EV_SS B(HOOK_SERVICE_SUMMARY)
#define EV_SUM (EV_LS | EV_SS | B(HOOK_SUMMARY_END))

static const struct {
	const char *name;
	const char *when;
} hook_events[HOOK_TYPES] = {
	[HOOK_DAEMON_STARTED] = { "daemon_started",
		"the daemon has loaded its configuration and opened its sinks" },
	[HOOK_DAEMON_RELOADED] = { "daemon_reloaded",
		"a SIGHUP reload was applied (`result` ok) or refused (rejected)" },
	[HOOK_DAEMON_STOPPING] = { "daemon_stopping",
		"SIGTERM or SIGINT: the daemon stops; the link_closed of the "
		"links still open follow it" },
	[HOOK_LINK_OPENED] = { "link_opened",
		"a link's TCP connection was accepted, or its dialling started" },
	[HOOK_LINK_REFUSED] = { "link_refused",
		"a connection or link was refused, at the TCP stage (before a "
		"byte is read: allow/deny, limits) or in the negotiation" },
	[HOOK_HANDSHAKE_PENDING] = { "handshake_pending",
		"TLS was agreed: the last event before the first TLS byte" },
	[HOOK_HANDSHAKE_DONE] = { "handshake_done",
		"the TLS handshake succeeded and the peer confirmed the "
		"transcript (its BIND)" },
	[HOOK_HANDSHAKE_FAILED] = { "handshake_failed",
		"a link that had handshake_pending will not carry streams; "
		"exactly once per handshake_pending without handshake_done" },
	[HOOK_PLAINTEXT_AGREED] = { "plaintext_agreed",
		"both policies allow plaintext and neither asked for TLS" },
	[HOOK_LINK_CLOSED] = { "link_closed",
		"the last event of every link_opened; stands alone, like a "
		"termination record" },
	[HOOK_STREAM_OPENED] = { "stream_opened",
		"(observers only) a stream was opened on a link" },
	[HOOK_STREAM_CLOSED] = { "stream_closed",
		"(observers only) a stream ended" },
	[HOOK_LINK_SUMMARY] = { "link_summary",
		"every summary_interval, one per aggregation key that had links "
		"open or activity in the interval" },
	[HOOK_SERVICE_SUMMARY] = { "service_summary",
		"every summary_interval, one per service, peer node and "
		"protection with streams in the interval" },
	[HOOK_SUMMARY_END] = { "summary_end",
		"after each interval's summary records" },
	[HOOK_RELAY_SWITCH] = { "relay_switch",
		"a gateway with several relays moves to another one: a link "
		"failed over, a failback found the first relay again, or every "
		"relay of the list failed" },
	[HOOK_SINK_RECOVERED] = { "sink_recovered",
		"written first to a sink that lost events, once it works again" },
};

enum hook_kind {
	K_STR,    /* const char *, left out when NULL */
	K_U64,    /* uint64_t, always */
	K_U64NZ,  /* uint64_t, left out when 0 */
	K_BOOL,   /* int */
	K_HEAD,   /* computed: see hook_put_head() */
};

/* What a K_HEAD field computes (its table entry's off). */
enum hook_head {
	H_TS, H_EVENT, H_V, H_SEQ, H_INSTANCE, H_NODE, H_PID, H_ROLE,
	H_TLS_ROLE, H_LOCAL_IP, H_LOCAL_PORT, H_PEER_IP, H_PEER_PORT,
};

#define OFF(m) offsetof(struct hook_event, m)

struct hook_field {
	const char *name;
	enum hook_kind kind;
	size_t off;
	uint32_t events;
	const char *type; /* for the reference */
	const char *help;
};

/* The order of this table is the order of keys in every event. */
static const struct hook_field hook_fields[] = {
	{ "ts", K_HEAD, H_TS, EV_ALL, "string",
	  "wall-clock time, RFC 3339 UTC with microseconds" },
	{ "event", K_HEAD, H_EVENT, EV_ALL, "string", "the event's name" },
	{ "link", K_U64NZ, OFF(link_id), EV_LINK, "number",
	  "link id, unique per `instance`; absent for a TCP-stage refusal" },
	{ "v", K_HEAD, H_V, EV_ALL, "number", "schema version (2)" },
	{ "seq", K_HEAD, H_SEQ, EV_ALL, "number",
	  "per-instance event number, +1 per event; a gap is loss" },
	{ "instance", K_HEAD, H_INSTANCE, EV_ALL, "string",
	  "16 hex digits, random at each daemon start" },
	{ "node", K_HEAD, H_NODE, EV_ALL, "string", "this daemon's node_name" },
	{ "pid", K_HEAD, H_PID, EV_ALL, "number", "this daemon's process id" },
	{ "role", K_HEAD, H_ROLE, EV_ALL, "string", "`relay` or `gateway`" },
	{ "tls_role", K_HEAD, H_TLS_ROLE, EV_LINK, "string",
	  "`client` (gateway) or `server` (relay)" },
	{ "local", K_STR, OFF(local), EV_LINK, "string",
	  "local address, ip:port (`[ip6]:port`)" },
	{ "local_ip", K_HEAD, H_LOCAL_IP, EV_LINK, "string", "local address" },
	{ "local_port", K_HEAD, H_LOCAL_PORT, EV_LINK, "number", "local port" },
	{ "peer", K_STR, OFF(peer), EV_LINK, "string",
	  "peer address, ip:port" },
	{ "peer_ip", K_HEAD, H_PEER_IP, EV_LINK, "string", "peer address" },
	{ "peer_port", K_HEAD, H_PEER_PORT, EV_LINK, "number", "peer port" },
	{ "interval_seq", K_U64, OFF(interval_seq), EV_SUM, "number",
	  "the interval's number, from 1; +1 per interval" },
	{ "interval_start", K_STR, OFF(interval_start), EV_SUM, "string",
	  "when the interval began, RFC 3339" },
	{ "interval_end", K_STR, OFF(interval_end), EV_SUM, "string",
	  "when it ended (this record was written), RFC 3339" },
	{ "final", K_BOOL, OFF(final), EV_SUM, "bool",
	  "the close-out set: written at stop, or when a reload changes "
	  "summary_interval" },
	{ "session_key", K_STR, OFF(session_key), EV_LS | EV_SS, "string",
	  "16 hex digits: a hash of the record's key fields, the same for "
	  "the same key in every interval and across restarts" },
	{ "server_ip", K_STR, OFF(server_ip), EV_LS, "string",
	  "the relay's address of the links (relay: local; gateway: peer)" },
	{ "server_port", K_U64NZ, OFF(server_port), EV_LS, "number",
	  "the relay's port of the links" },
	{ "client_ip", K_STR, OFF(client_ip), EV_LS, "string",
	  "the gateway's address of the links (no port)" },
	{ "peer_node", K_STR, OFF(peer_node), EV_LINK | EV_LS | EV_SS, "string",
	  "the node name the peer claimed, once its message arrived" },
	{ "transcript", K_STR, OFF(transcript), EV_LINK, "string",
	  "from the decision on: 32 hex digits, the first 16 bytes of "
	  "SHA-256(OFFER || DECISION); the same on both sides of a link" },
	{ "direction", K_STR, OFF(direction), B(HOOK_LINK_OPENED), "string",
	  "`in` (accepted) or `out` (dialled)" },
	{ "stage", K_STR, OFF(stage),
	  B(HOOK_LINK_REFUSED) | B(HOOK_HANDSHAKE_FAILED), "string",
	  "link_refused: `tcp` or `negotiation`; handshake_failed: `tls`, "
	  "`verify`, `bind`, `transport`, `timeout`, `veto`, `shutdown`, "
	  "`resources`, or `negotiation` (TLS first: refused or failed in "
	  "the negotiation inside TLS)" },
	{ "by", K_STR, OFF(by), B(HOOK_LINK_REFUSED), "string",
	  "who refused: `local` or `peer`" },
	{ "reason_code", K_U64NZ, OFF(reason_code), EV_REASON, "number",
	  "the negotiation reason code (docs/PROTOCOL.md), when one applies" },
	{ "reason_name", K_STR, OFF(reason_name), EV_REASON | EV_LS, "string",
	  "the reason's name: a negotiation reason (`UNKNOWN_PEER`, "
	  "`NEITHER_ASKED`, ...) or a TCP-stage one (`deny_list`, "
	  "`allow_list`, `max_links`, `max_links_per_source`, `max_clients`, "
	  "`hold_full`, `hold_timeout`; a relay's reverse-service listener: "
	  "`no_link`, `no_reverse`, `tls_required`, `client_cert`)" },
	{ "reason", K_STR, OFF(reason),
	  EV_REASON | B(HOOK_DAEMON_RELOADED) | B(HOOK_DAEMON_STOPPING) |
	  B(HOOK_RELAY_SWITCH),
	  "string", "a sentence for a person" },
	{ "suppressed", K_U64NZ, OFF(suppressed), B(HOOK_LINK_REFUSED), "number",
	  "TCP stage: refusals not reported one by one (rate limit) since "
	  "the last link_refused of this listener; absent when none" },
	{ "tls_offset_out", K_U64, OFF(tls_offset_out),
	  B(HOOK_HANDSHAKE_PENDING), "number",
	  "bytes this side sent before its first TLS byte" },
	{ "tls_offset_in", K_U64, OFF(tls_offset_in),
	  B(HOOK_HANDSHAKE_PENDING), "number",
	  "bytes this side received before the peer's first TLS byte" },
	{ "mux_offset_out", K_U64, OFF(tls_offset_out),
	  B(HOOK_PLAINTEXT_AGREED), "number",
	  "bytes this side sent before its first mux frame" },
	{ "mux_offset_in", K_U64, OFF(tls_offset_in),
	  B(HOOK_PLAINTEXT_AGREED), "number",
	  "bytes this side received before the peer's first mux frame" },
	{ "outcome", K_STR, OFF(outcome), B(HOOK_LINK_CLOSED) | EV_LS, "string",
	  "`tls`, `plaintext` (the link carried streams so), `refused`, "
	  "`failed` (the handshake or the binding failed), `aborted` "
	  "(ended in the negotiation, or not tlsplex), `connect_failed`" },
	{ "protection", K_STR, OFF(protection), B(HOOK_LINK_CLOSED) |
	  B(HOOK_STREAM_OPENED) | B(HOOK_STREAM_CLOSED) | EV_LS | EV_SS,
	  "string",
	  "`tls`, `plaintext` or `none` (never carried a stream)" },
	{ "last_state", K_STR, OFF(last_state), B(HOOK_LINK_CLOSED), "string",
	  "the link's state before it closed (`CONNECTING`, `NEGOTIATING`, "
	  "`HANDSHAKE`, `BINDING`, `UP`, `DRAINING`, `CLOSING`)" },
	{ "start_ts", K_STR, OFF(start_ts), B(HOOK_LINK_CLOSED), "string",
	  "when the link was opened, RFC 3339" },
	{ "protocol", K_STR, OFF(protocol), EV_TLS | EV_LS, "string",
	  "TLS version, `TLSv1.3` or `TLSv1.2`" },
	{ "cipher", K_STR, OFF(cipher), EV_TLS | EV_LS, "string",
	  "IANA cipher suite name" },
	{ "group", K_STR, OFF(group), EV_TLS | EV_LS, "string",
	  "key-exchange group" },
	{ "resumed", K_BOOL, OFF(resumed), B(HOOK_HANDSHAKE_DONE), "bool",
	  "the session was resumed" },
#define CERT_FIELDS(who, m, desc, sig)                                      \
	{ who "_subject", K_STR, OFF(m.subject), EV_TLS, "string",          \
	  desc " certificate's subject" },                                   \
	{ who "_issuer", K_STR, OFF(m.issuer), EV_TLS, "string",            \
	  desc " certificate's issuer" },                                    \
	{ who "_serial", K_STR, OFF(m.serial), EV_TLS, "string",            \
	  desc " certificate's serial number, hex" },                        \
	{ who "_sha256", K_STR, OFF(m.sha256), EV_TLS | (sig), "string",    \
	  desc " certificate's SHA-256 fingerprint" },                       \
	{ who "_not_before", K_STR, OFF(m.not_before), EV_TLS, "string",    \
	  desc " certificate's notBefore, RFC 3339" },                       \
	{ who "_not_after", K_STR, OFF(m.not_after), EV_TLS, "string",      \
	  desc " certificate's notAfter, RFC 3339" },                        \
	{ who "_key_type", K_STR, OFF(m.key_type), EV_TLS | (sig), "string",\
	  desc " certificate's key type: `RSA`, `EC`, `Ed25519`, `Ed448`" }, \
	{ who "_key_bits", K_U64NZ, OFF(m.key_bits), EV_TLS | (sig), "number",\
	  desc " certificate's key size in bits" },                          \
	{ who "_sig_alg", K_STR, OFF(m.sig_alg), EV_TLS, "string",          \
	  desc " certificate's signature algorithm" }
	CERT_FIELDS("peer", peer_cert, "the peer's", EV_LS),
	CERT_FIELDS("local", local_cert, "our own", 0),
#undef CERT_FIELDS
	{ "duration_ms", K_U64, OFF(duration_ms), EV_TLS, "number",
	  "handshake_done: the handshake's duration; link_closed: the "
	  "link's (monotonic clock)" },
	{ "links_lifetime_start", K_U64, OFF(links_lifetime_start), EV_LS,
	  "number", "links with this key since summaries started, at the "
	  "interval's start" },
	{ "links_lifetime_end", K_U64, OFF(links_lifetime_end), EV_LS,
	  "number", "the same at its end" },
	{ "links_active_start", K_U64, OFF(links_active_start), EV_LS,
	  "number", "links with this key open at the interval's start" },
	{ "links_active_end", K_U64, OFF(links_active_end), EV_LS, "number",
	  "the same at its end" },
	{ "links_opened", K_U64, OFF(links_opened), EV_LS, "number",
	  "links counted under this key in the interval (a link is counted "
	  "once its key is known; see \"Summaries\")" },
	{ "links_closed", K_U64, OFF(links_closed), EV_LS, "number",
	  "links with this key closed in the interval" },
	{ "links_short", K_U64, OFF(links_short), EV_LS, "number",
	  "links opened and closed within the interval" },
	{ "handshakes_full", K_U64, OFF(handshakes_full), EV_LS, "number",
	  "TLS handshakes done without resumption" },
	{ "handshakes_resumed", K_U64, OFF(handshakes_resumed), EV_LS,
	  "number", "TLS handshakes done by resuming a session" },
	{ "handshake_ms_sum", K_U64, OFF(handshake_ms_sum), EV_LS, "number",
	  "the handshakes' durations added up, milliseconds" },
	{ "handshake_ms_max", K_U64, OFF(handshake_ms_max), EV_LS, "number",
	  "the longest handshake, milliseconds" },
	{ "streams_opened", K_U64, OFF(streams_opened), EV_LS | EV_SS,
	  "number", "streams opened in the interval (refused ones not "
	  "included)" },
	{ "streams_refused", K_U64, OFF(streams_refused), EV_SS, "number",
	  "streams this daemon refused in the interval" },
	{ "bytes_in", K_U64, OFF(bytes_in),
	  B(HOOK_LINK_CLOSED) | B(HOOK_STREAM_CLOSED) | EV_LS | EV_SS, "number",
	  "bytes received on the socket (link: negotiation, TLS and mux "
	  "framing included; summaries: in the interval)" },
	{ "bytes_out", K_U64, OFF(bytes_out),
	  B(HOOK_LINK_CLOSED) | B(HOOK_STREAM_CLOSED) | EV_LS | EV_SS, "number",
	  "bytes sent on the socket" },
	{ "streams", K_U64, OFF(streams), B(HOOK_LINK_CLOSED), "number",
	  "streams the link carried" },
	{ "service", K_STR, OFF(service), B(HOOK_LINK_REFUSED) |
	  B(HOOK_STREAM_OPENED) | B(HOOK_STREAM_CLOSED) | EV_SS, "string",
	  "the service (a gateway's client refused at the TCP stage; a "
	  "stream)" },
	{ "stream", K_U64, OFF(stream_id),
	  B(HOOK_STREAM_OPENED) | B(HOOK_STREAM_CLOSED), "number",
	  "the stream's id on its link" },
	{ "version", K_STR, OFF(version), B(HOOK_DAEMON_STARTED), "string",
	  "tlsplex version" },
	{ "tls_library", K_STR, OFF(tls_library), B(HOOK_DAEMON_STARTED),
	  "string", "the TLS library and its build" },
	{ "config", K_STR, OFF(config),
	  B(HOOK_DAEMON_STARTED) | B(HOOK_DAEMON_RELOADED), "string",
	  "the configuration file" },
	{ "sinks", K_STR, OFF(sinks),
	  B(HOOK_DAEMON_STARTED) | B(HOOK_DAEMON_RELOADED), "string",
	  "the open sinks' kinds, comma-separated: `file`, `socket`, "
	  "`command`, `syslog`" },
	{ "summary_interval_s", K_U64, OFF(summary_interval_s),
	  B(HOOK_DAEMON_STARTED), "number", "summary_interval; 0 = off" },
	{ "result", K_STR, OFF(result), B(HOOK_DAEMON_RELOADED) |
	  B(HOOK_STREAM_CLOSED), "string",
	  "daemon_reloaded: `ok` or `rejected`; stream_closed: `ok`, "
	  "`reset`, or the code that refused it (`REFUSED`, ...)" },
	{ "links_open", K_U64, OFF(links_open), B(HOOK_DAEMON_STOPPING),
	  "number", "links open when the stop began" },
	{ "records", K_U64, OFF(records), B(HOOK_SUMMARY_END), "number",
	  "link_summary and service_summary records of this interval" },
	{ "refused_tcp_stage", K_U64, OFF(refused_tcp_stage),
	  B(HOOK_SUMMARY_END), "number",
	  "connections refused at the TCP stage in the interval (they have "
	  "no link and so no link_summary)" },
	{ "links_pending", K_U64, OFF(links_pending), B(HOOK_SUMMARY_END),
	  "number", "links open at the interval's end whose key is not known "
	  "yet (still negotiating or in the handshake)" },
	{ "links_folded", K_U64, OFF(links_folded), B(HOOK_SUMMARY_END),
	  "number", "links counted under the `_other` record in the interval "
	  "because the number of keys reached its bound" },
	{ "switch", K_STR, OFF(switch_kind), B(HOOK_RELAY_SWITCH), "string",
	  "`failover` (the link to relay_from could not be made, was "
	  "refused or died; relay_to is dialled now), `failback` (the first "
	  "relay is up again and takes new clients; the old link drains) or "
	  "`exhausted` (every relay failed; relay_to is dialled after the "
	  "redial backoff)" },
	{ "relay_from", K_STR, OFF(relay_from), B(HOOK_RELAY_SWITCH), "string",
	  "the relay new links leave, host:port as configured" },
	{ "relay_to", K_STR, OFF(relay_to), B(HOOK_RELAY_SWITCH), "string",
	  "the relay new links go to" },
	{ "sink", K_STR, OFF(sink), B(HOOK_SINK_RECOVERED), "string",
	  "the sink (`file:PATH`, ...)" },
	{ "lost", K_U64, OFF(lost), B(HOOK_SINK_RECOVERED), "number",
	  "events this sink lost before this one" },
};
#define HOOK_NFIELDS (sizeof(hook_fields) / sizeof(hook_fields[0]))

const char *
hook_type_str(int type)
{
	if (type < 0 || type >= HOOK_TYPES)
		return "unknown";
	return hook_events[type].name;
}

int
hook_type_internal(int type)
{
	return type == HOOK_STREAM_OPENED || type == HOOK_STREAM_CLOSED;
}

/* ---- clocks and identity ------------------------------------------------- */

uint64_t
hook_wall_us(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
}

uint64_t
hook_mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000;
}

void
hook_rfc3339(uint64_t ts_us, char *buf, size_t len)
{
	time_t sec = (time_t)(ts_us / 1000000);
	struct tm tm;

	gmtime_r(&sec, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%06uZ",
		 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		 tm.tm_min, tm.tm_sec, (unsigned)(ts_us % 1000000));
}

static void
hook_new_instance(void)
{
	uint8_t r[8];
	uint64_t t;
	size_t i;

	if (getrandom(r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
		/* Not secret: only unique.  Time and pid will do. */
		t = hook_wall_us() ^ ((uint64_t)getpid() << 40);
		memcpy(r, &t, sizeof(r));
	}
	for (i = 0; i < sizeof(r); i++)
		snprintf(hook_id.instance + 2 * i, 3, "%02x", r[i]);
	hook_id.pid = (unsigned long)getpid();
}

void
hook_set_identity(const char *role, const char *node)
{
	if (hook_id.instance[0] == '\0')
		hook_new_instance();
	snprintf(hook_id.role, sizeof(hook_id.role), "%s", role ? role : "");
	snprintf(hook_id.node, sizeof(hook_id.node), "%s", node ? node : "");
}

const char *
hook_instance(void)
{
	if (hook_id.instance[0] == '\0')
		hook_new_instance();
	return hook_id.instance;
}

const char *
hook_role(void)
{
	return hook_id.role;
}

const char *
hook_node(void)
{
	return hook_id.node;
}

int
hook_type_parse(const char *name)
{
	int t;

	for (t = 0; t < HOOK_TYPES; t++)
		if (strcmp(hook_events[t].name, name) == 0)
			return t;
	return -1;
}

int
hook_event_mask(const char *list, uint32_t *mask, char *err, size_t errlen)
{
	char item[64];
	const char *p = list, *end;
	size_t n;
	int t;

	*mask = 0;
	if (list == NULL || *list == '\0' || strcmp(list, "all") == 0) {
		*mask = EV_ALL;
		return 0;
	}
	while (*p != '\0') {
		end = strchr(p, ',');
		if (end == NULL)
			end = p + strlen(p);
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		n = (size_t)(end - p);
		while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
			n--;
		if (n == 0 || n >= sizeof(item)) {
			snprintf(err, errlen, "'%.*s' is not an event name",
				 (int)(n > 60 ? 60 : n), p);
			return -1;
		}
		memcpy(item, p, n);
		item[n] = '\0';
		t = hook_type_parse(item);
		if (t < 0 || hook_type_internal(t)) {
			snprintf(err, errlen, "'%s' is not an event a sink "
				 "receives (see docs/MONITORING.md, Events)",
				 item);
			return -1;
		}
		*mask |= B(t);
		p = *end ? end + 1 : end;
	}
	return 0;
}

uint64_t
hook_seq(void)
{
	return hook_id.seq;
}

/* ---- JSON --------------------------------------------------------------- */

/* A bounded JSON writer: every put reports failure once cap is hit. */
struct jw {
	char *p;
	size_t len, cap;
	int err;
	int first;
};

static void
jw_raw(struct jw *w, const char *s, size_t n)
{
	if (w->err || w->len + n >= w->cap) {
		w->err = 1;
		return;
	}
	memcpy(w->p + w->len, s, n);
	w->len += n;
}

static void
jw_str(struct jw *w, const char *s)
{
	char esc[8];

	jw_raw(w, "\"", 1);
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			jw_raw(w, esc, 2);
		} else if (c < 0x20 || c == 0x7f) {
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			jw_raw(w, esc, 6);
		} else {
			jw_raw(w, (const char *)&c, 1);
		}
	}
	jw_raw(w, "\"", 1);
}

static void
jw_key(struct jw *w, const char *k)
{
	if (!w->first)
		jw_raw(w, ",", 1);
	w->first = 0;
	jw_str(w, k);
	jw_raw(w, ":", 1);
}

static void
jw_kstr(struct jw *w, const char *k, const char *v)
{
	if (v == NULL)
		return;
	jw_key(w, k);
	jw_str(w, v);
}

static void
jw_knum(struct jw *w, const char *k, uint64_t v)
{
	char num[24];
	int n = snprintf(num, sizeof(num), "%" PRIu64, v);

	jw_key(w, k);
	jw_raw(w, num, (size_t)n);
}

int
hook_split_addr(const char *a, char *ip, size_t iplen, uint64_t *port)
{
	const char *colon;
	char *end;
	size_t n;

	if (a == NULL || (colon = strrchr(a, ':')) == NULL)
		return -1;
	n = (size_t)(colon - a);
	if (n >= 2 && a[0] == '[' && a[n - 1] == ']')
		a++, n -= 2;
	if (n == 0 || n >= iplen)
		return -1;
	memcpy(ip, a, n);
	ip[n] = '\0';
	errno = 0;
	*port = strtoull(colon + 1, &end, 10);
	if (errno != 0 || *end != '\0' || *port > 65535)
		return -1;
	return 0;
}

/* The computed keys. */
static void
hook_put_head(struct jw *w, const struct hook_field *f,
	      const struct hook_event *ev)
{
	char buf[64];
	uint64_t port;

	switch ((enum hook_head)f->off) {
	case H_TS:
		hook_rfc3339(ev->ts_us, buf, sizeof(buf));
		jw_kstr(w, f->name, buf);
		break;
	case H_EVENT:
		jw_kstr(w, f->name, hook_type_str(ev->type));
		break;
	case H_V:
		jw_knum(w, f->name, HOOK_SCHEMA_VERSION);
		break;
	case H_SEQ:
		jw_knum(w, f->name, ev->seq);
		break;
	case H_INSTANCE:
		jw_kstr(w, f->name, hook_instance());
		break;
	case H_NODE:
		jw_kstr(w, f->name, hook_id.node);
		break;
	case H_PID:
		jw_knum(w, f->name, hook_id.pid ? hook_id.pid :
			(unsigned long)getpid());
		break;
	case H_ROLE:
		jw_kstr(w, f->name, hook_id.role[0] ? hook_id.role : NULL);
		break;
	case H_TLS_ROLE:
		if (hook_id.role[0] != '\0')
			jw_kstr(w, f->name, strcmp(hook_id.role, "relay") == 0 ?
				"server" : "client");
		break;
	case H_LOCAL_IP:
	case H_LOCAL_PORT:
	case H_PEER_IP:
	case H_PEER_PORT:
		if (hook_split_addr(f->off <= H_LOCAL_PORT ? ev->local : ev->peer,
				    buf, sizeof(buf), &port) < 0)
			break;
		if (f->off == H_LOCAL_IP || f->off == H_PEER_IP)
			jw_kstr(w, f->name, buf);
		else
			jw_knum(w, f->name, port);
		break;
	}
}

int
hook_format_json(const struct hook_event *ev, char *buf, size_t cap)
{
	struct jw w = { buf, 0, cap, 0, 1 };
	const char *base = (const char *)ev;
	size_t i;

	if (ev->type < 0 || ev->type >= HOOK_TYPES)
		return -1;
	jw_raw(&w, "{", 1);
	for (i = 0; i < HOOK_NFIELDS; i++) {
		const struct hook_field *f = &hook_fields[i];
		uint64_t u;

		if (!(f->events & B(ev->type)))
			continue;
		switch (f->kind) {
		case K_HEAD:
			hook_put_head(&w, f, ev);
			break;
		case K_STR:
			jw_kstr(&w, f->name, *(const char *const *)(base + f->off));
			break;
		case K_U64:
		case K_U64NZ:
			memcpy(&u, base + f->off, sizeof(u));
			if (f->kind == K_U64 || u != 0)
				jw_knum(&w, f->name, u);
			break;
		case K_BOOL:
			jw_key(&w, f->name);
			if (*(const int *)(base + f->off))
				jw_raw(&w, "true", 4);
			else
				jw_raw(&w, "false", 5);
			break;
		}
	}
	jw_raw(&w, "}", 1);
	if (w.err)
		return -1;
	buf[w.len] = '\0';
	return (int)w.len;
}

void
hook_write_reference(FILE *out)
{
	int t;
	size_t i;

	for (t = 0; t < HOOK_TYPES; t++) {
		fprintf(out, "### `%s`\n\n%c%s.\n\n| key | type | meaning |\n"
			"|---|---|---|\n", hook_events[t].name,
			toupper((unsigned char)hook_events[t].when[0]),
			hook_events[t].when + 1);
		for (i = 0; i < HOOK_NFIELDS; i++)
			if (hook_fields[i].events & B(t))
				fprintf(out, "| `%s` | %s | %s |\n",
					hook_fields[i].name, hook_fields[i].type,
					hook_fields[i].help);
		fprintf(out, "\n");
	}
}

/* ---- observers and sinks ------------------------------------------------ */

int
hook_register(hook_fn fn, void *arg)
{
	if (hook_nobservers >= HOOK_MAX_OBSERVERS)
		return -1;
	hook_observers[hook_nobservers].fn = fn;
	hook_observers[hook_nobservers].arg = arg;
	hook_nobservers++;
	return 0;
}

int
hook_sink_add(const char *name, const struct hook_sink_ops *ops, void *state)
{
	struct hook_sink *s;

	if (hook_nsinks >= HOOK_MAX_SINKS)
		return -1;
	s = &hook_sinks[hook_nsinks++];
	memset(s, 0, sizeof(*s));
	snprintf(s->name, sizeof(s->name), "%s", name);
	s->ops = ops;
	s->state = state;
	return 0;
}

void
hook_sink_remove(const struct hook_sink_ops *ops)
{
	int i, j;

	for (i = 0; i < hook_nsinks;) {
		if (hook_sinks[i].ops != ops) {
			i++;
			continue;
		}
		if (ops->free != NULL)
			ops->free(hook_sinks[i].state);
		for (j = i; j + 1 < hook_nsinks; j++)
			hook_sinks[j] = hook_sinks[j + 1];
		hook_nsinks--;
	}
}

void *
hook_sink_state(const struct hook_sink_ops *ops)
{
	int i;

	for (i = 0; i < hook_nsinks; i++)
		if (hook_sinks[i].ops == ops)
			return hook_sinks[i].state;
	return NULL;
}

int
hook_sink_stats(int i, const char **name, const char **kind,
		struct hook_sink_stats *st)
{
	if (i < 0 || i >= hook_nsinks)
		return -1;
	*name = hook_sinks[i].name;
	*kind = hook_sinks[i].ops->kind;
	*st = hook_sinks[i].stats;
	return 0;
}

void
hook_sink_names(char *buf, size_t len)
{
	size_t n = 0;
	int i;

	buf[0] = '\0';
	for (i = 0; i < hook_nsinks && n < len; i++)
		n += (size_t)snprintf(buf + n, len - n, "%s%s", i ? "," : "",
				      hook_sinks[i].ops->kind);
}

void
hook_reset(void)
{
	while (hook_nsinks > 0)
		hook_sink_remove(hook_sinks[0].ops);
	hook_nobservers = 0;
}

/* Offers a sink that lost events a sink_recovered saying how many;
 * returns what its write() did. */
static int
hook_sink_recover(struct hook_sink *s, const struct hook_event *after)
{
	struct hook_event rec;
	char line[1024];
	int n, rc;

	memset(&rec, 0, sizeof(rec));
	rec.type = HOOK_SINK_RECOVERED;
	rec.ts_us = after->ts_us;
	rec.seq = after->seq;
	rec.sink = s->name;
	rec.lost = s->streak_lost;
	n = hook_format_json(&rec, line, sizeof(line));
	if (n < 0)
		return -1;
	rc = s->ops->write(s->state, &rec, line, (size_t)n);
	if (rc != 0)
		return rc;
	log_info("hook sink %s: delivering again after %llu lost events",
		 s->name, (unsigned long long)s->streak_lost);
	s->streak_lost = 0;
	s->failing = 0;
	return 0;
}

static void
hook_sink_failed(struct hook_sink *s, int rc, uint64_t n)
{
	if (rc == HOOK_SINK_DROPPED)
		s->stats.dropped += n;
	else
		s->stats.errors += n;
	s->streak_lost += n;
	if (!s->failing)
		log_err("hook sink %s: %s; events are being lost until it "
			"works again", s->name, rc == HOOK_SINK_DROPPED ?
			"the receiver is not taking events (dropped)" :
			"delivery failed");
	s->failing = 1;
}

static void
hook_sink_deliver(struct hook_sink *s, const struct hook_event *ev,
		  const char *line, size_t n)
{
	uint64_t lost;
	int rc;

	if (s->ops->lost != NULL) {
		lost = s->ops->lost(s->state);
		if (lost > s->async_lost)
			hook_sink_failed(s, -1, lost - s->async_lost);
		s->async_lost = lost;
	}
	if (s->failing) {
		rc = hook_sink_recover(s, ev);
		if (rc == HOOK_SINK_SKIPPED) {	/* it takes no such event */
			s->streak_lost = 0;
			s->failing = 0;
		} else if (rc != 0) {
			hook_sink_failed(s, rc, 1);
			return;
		}
	}
	rc = s->ops->write(s->state, ev, line, n);
	if (rc == HOOK_SINK_SKIPPED)
		return;
	if (rc == 0) {
		s->stats.written++;
		return;
	}
	hook_sink_failed(s, rc, 1);
}

/* Fills in ts and seq and writes ev to every sink. */
static void
hook_to_sinks(struct hook_event *ev, const char *line, int n)
{
	int i;

	if (hook_type_internal(ev->type))
		return;
	if (n < 0) {
		log_err("hook: %s event too large to format; dropped",
			hook_type_str(ev->type));
		for (i = 0; i < hook_nsinks; i++) {
			hook_sinks[i].stats.errors++;
			hook_sinks[i].streak_lost++;
			hook_sinks[i].failing = 1;
		}
		return;
	}
	for (i = 0; i < hook_nsinks; i++)
		hook_sink_deliver(&hook_sinks[i], ev, line, (size_t)n);
}

static int
hook_prepare(struct hook_event *ev, char *line, size_t cap)
{
	if (ev->ts_us == 0)
		ev->ts_us = hook_wall_us();
	if (!hook_type_internal(ev->type))
		ev->seq = ++hook_id.seq;
	if (hook_type_internal(ev->type) || hook_nsinks == 0)
		return 0;
	return hook_format_json(ev, line, cap);
}

static int
hook_to_observers(const struct hook_event *ev)
{
	int i, veto = 0;

	for (i = 0; i < hook_nobservers; i++)
		if (hook_observers[i].fn(ev, hook_observers[i].arg) < 0)
			veto = 1;
	return veto && ev->type == HOOK_HANDSHAKE_PENDING ? -1 : 0;
}

int
hook_emit(struct hook_event *ev)
{
	char line[HOOK_LINE_MAX];
	int n = hook_prepare(ev, line, sizeof(line));

	hook_to_sinks(ev, line, n);
	return hook_to_observers(ev);
}

/* ---- gated delivery ----------------------------------------------------- */

struct hook_gate {
	hook_gate_fn done;
	void *arg;
	int waiting;   /* sinks that have not answered */
	int cancelled;
	int vetoed;
	char why[300];
};

static void
hook_gate_put(struct hook_gate *g)
{
	if (g->waiting > 0)
		return;
	if (!g->cancelled)
		g->done(g->arg, g->vetoed ? -1 : 0, g->why);
	free(g);
}

void
hook_gate_resolve(struct hook_gate *g, int verdict, const char *why)
{
	if (verdict < 0 && !g->vetoed) {
		g->vetoed = 1;
		snprintf(g->why, sizeof(g->why), "%s", why ? why : "vetoed");
	}
	g->waiting--;
	hook_gate_put(g);
}

void
hook_gate_cancel(struct hook_gate *g)
{
	if (g == NULL)
		return;
	g->cancelled = 1;
	if (g->waiting == 0)
		free(g);
}

int
hook_emit_gated(struct hook_event *ev, hook_gate_fn done, void *arg,
		struct hook_gate **gate, char *why, size_t whylen)
{
	char line[HOOK_LINE_MAX];
	struct hook_gate *g;
	int n, i, rc;

	*gate = NULL;
	n = hook_prepare(ev, line, sizeof(line));
	hook_to_sinks(ev, line, n);
	if (hook_to_observers(ev) < 0) {
		snprintf(why, whylen, "an in-process observer vetoed it");
		return -1;
	}
	g = NULL;
	for (i = 0; i < hook_nsinks && n >= 0; i++) {
		struct hook_sink *s = &hook_sinks[i];

		if (s->ops->gate == NULL)
			continue;
		if (g == NULL && (g = calloc(1, sizeof(*g))) == NULL) {
			snprintf(why, whylen, "out of memory starting a "
				 "notification");
			return -1;
		}
		g->waiting++;
		rc = s->ops->gate(s->state, ev, line, (size_t)n, g);
		if (rc == 1)
			continue;
		g->waiting--;
		if (rc < 0 && !g->vetoed) {
			g->vetoed = 1;
			snprintf(g->why, sizeof(g->why), "sink %s vetoed it",
				 s->name);
		}
	}
	if (g == NULL)
		return 0;
	if (g->waiting > 0) {
		g->done = done;
		g->arg = arg;
		*gate = g;
		return 1;
	}
	rc = g->vetoed ? -1 : 0;
	snprintf(why, whylen, "%s", g->why);
	free(g);
	return rc;
}
