/*
 * Configuration loader.
 *
 * Every key is described once, in keys[] below: where it is valid, its
 * default, how its value is parsed and checked, where it is stored and
 * what it means.  Defaults go through the same parser and check as values
 * read from a file, and the reference (cfg_write_reference, for
 * docs/CONFIG.md) and the manual page tlsplex.ini(5) (cfg_write_manpage)
 * are printed from the same table.
 *
 * inih splits key/value lines.  The libinih build shipped by Debian has a
 * fixed 200-byte line buffer, continuation lines switched on and a handler
 * without line numbers, so a reader sits in front of it: it counts lines,
 * handles section headers itself (inih never reports a section that has
 * no keys), strips leading blanks so that indented keys are never taken
 * for continuation lines, and passes a value too long for inih's buffer
 * through a side buffer, leaving a marker in the line inih sees.
 */
#include "config.h"
#include "neg.h"
#include "policy.h"

#include <ini.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define LINE_MAX_LEN 4096  /* longest line accepted, without newline */
#define LIST_MAX 1024      /* at most this many services, and peers */
#define KEYS_MAX 96
#define ITEM_MAX 255       /* one entry of a name or pattern list */
#define HOST_MAX 253
#define STASH_MARK "\x1f"  /* stands for the side buffer in inih's line */
#define ROLE_BOTH (CFG_RELAY | CFG_GATEWAY)

enum sec_kind {
	SEC_NONE = 0,
	SEC_DAEMON = 1,
	SEC_SERVICE = 2,
	SEC_PEER = 4,
	SEC_TEMPLATE = 8,
};

enum key_flag {
	K_REQUIRED = 1,  /* no default; the key must be set */
	K_ZERO_OK = 2,   /* 0 is allowed besides the range */
	K_PORT_ONLY = 4, /* a bare port or ":port" means 127.0.0.1:port */
	K_EMPTY_OK = 8,  /* an address key that may be empty (off) */
};

struct choice {
	const char *name;
	int val;
};

struct ld;
struct key;

/* Parses val into the struct at base; on error reports and returns -1. */
typedef int (*parse_fn)(struct ld *st, const struct key *e, const char *val,
			void *base);
/* Checks the stored value; on error reports and returns -1. */
typedef int (*check_fn)(struct ld *st, const struct key *e, const char *val,
			const void *base);
/* Computes a default that depends on the host or on other keys. */
typedef void (*dflt_fn)(struct ld *st, char *buf, size_t len);

struct key {
	uint8_t sec;           /* enum sec_kind bits */
	uint8_t roles;         /* enum cfg_role bits */
	uint8_t flags;         /* enum key_flag bits */
	const char *name;
	const char *dflt;      /* parsed like a value; NULL: unset or required */
	dflt_fn dflt_fn;       /* computed default, described by dflt_doc */
	const char *dflt_doc;
	parse_fn parse;
	check_fn check;
	const struct choice *choices;
	uint32_t lo, hi;       /* range for numbers */
	size_t off, size;      /* field in struct cfg, cfg_service or cfg_peer */
	const char *help;
};

static int p_enum(struct ld *, const struct key *, const char *, void *);
static int p_name(struct ld *, const struct key *, const char *, void *);
static int p_host(struct ld *, const struct key *, const char *, void *);
static int p_addr(struct ld *, const struct key *, const char *, void *);
static int p_relays(struct ld *, const struct key *, const char *, void *);
static int p_failback(struct ld *, const struct key *, const char *, void *);
static int p_duration(struct ld *, const struct key *, const char *, void *);
static int p_size(struct ld *, const struct key *, const char *, void *);
static int p_count(struct ld *, const struct key *, const char *, void *);
static int p_ciphers(struct ld *, const struct key *, const char *, void *);
static int p_path(struct ld *, const struct key *, const char *, void *);
static int p_acl(struct ld *, const struct key *, const char *, void *);
static int p_names(struct ld *, const struct key *, const char *, void *);
static int p_patterns(struct ld *, const struct key *, const char *, void *);
static int p_issuers(struct ld *, const struct key *, const char *, void *);
static int p_groups(struct ld *, const struct key *, const char *, void *);
static int c_range(struct ld *, const struct key *, const char *,
		   const void *);
static int c_readable(struct ld *, const struct key *, const char *,
		      const void *);
static int c_file_or_dir(struct ld *, const struct key *, const char *,
			 const void *);
static int c_parent_dir(struct ld *, const struct key *, const char *,
			const void *);
static int c_sun_path(struct ld *, const struct key *, const char *,
		      const void *);
static int c_command(struct ld *, const struct key *, const char *,
		     const void *);
static int c_app_name(struct ld *, const struct key *, const char *,
		      const void *);
static void d_node_name(struct ld *, char *, size_t);
static void d_syslog_ident(struct ld *, char *, size_t);
static void d_server_name(struct ld *, char *, size_t);

static const struct choice tls_modes[] = {
	{ "off", TLS_MODE_OFF },
	{ "allow", TLS_MODE_ALLOW },
	{ "prefer", TLS_MODE_PREFER },
	{ "require", TLS_MODE_REQUIRE },
	{ "verify", CFG_TLS_VERIFY },
	{ NULL, 0 },
};

static const struct choice relay_orders[] = {
	{ "ordered", CFG_RELAY_ORDERED },
	{ "spread", CFG_RELAY_SPREAD },
	{ NULL, 0 },
};

static const struct choice tls_versions[] = {
	{ "1.2", TLSV_1_2 },
	{ "1.3", TLSV_1_3 },
	{ NULL, 0 },
};

static const struct choice cert_wants[] = {
	{ "none", CERT_WANT_NONE },
	{ "optional", CERT_WANT_OPTIONAL },
	{ "require", CERT_WANT_REQUIRE },
	{ NULL, 0 },
};

static const struct choice yes_no[] = {
	{ "yes", 1 },
	{ "no", 0 },
	{ NULL, 0 },
};

static const struct choice tls_first_accept[] = {
	{ "off", 0 },
	{ "allow", 1 },
	{ NULL, 0 },
};

static const struct choice key_perms_modes[] = {
	{ "warn", CFG_KEY_PERMS_WARN },
	{ "error", CFG_KEY_PERMS_ERROR },
	{ NULL, 0 },
};

static const struct choice link_budgets[] = {
	{ "auto", CFG_LINK_BUDGET_AUTO },
	{ "off", CFG_LINK_BUDGET_OFF },
	{ NULL, 0 },
};

static const struct choice hook_syslog_modes[] = {
	{ "off", CFG_HOOK_SYSLOG_OFF },
	{ "json", CFG_HOOK_SYSLOG_JSON },
	{ "rfc5424", CFG_HOOK_SYSLOG_RFC5424 },
	{ NULL, 0 },
};

static const struct choice hook_on_timeouts[] = {
	{ "proceed", CFG_HOOK_TIMEOUT_PROCEED },
	{ "veto", CFG_HOOK_TIMEOUT_VETO },
	{ NULL, 0 },
};

/* RFC 5424 facility codes. */
static const struct choice syslog_facilities[] = {
	{ "daemon", 3 }, { "user", 1 }, { "auth", 4 }, { "authpriv", 10 },
	{ "local0", 16 }, { "local1", 17 }, { "local2", 18 }, { "local3", 19 },
	{ "local4", 20 }, { "local5", 21 }, { "local6", 22 }, { "local7", 23 },
	{ NULL, 0 },
};

static const struct choice log_levels[] = {
	{ "error", 0 },
	{ "warn", 1 },
	{ "info", 2 },
	{ "debug", 3 },
	{ NULL, 0 },
};

#define DEFAULT_CIPHERS                                                     \
	"TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"                    \
	"TLS_CHACHA20_POLY1305_SHA256:ECDHE-ECDSA-AES128-GCM-SHA256:"       \
	"ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:"        \
	"ECDHE-RSA-CHACHA20-POLY1305"

#define FIELD(type, f) .off = offsetof(type, f), .size = sizeof(((type *)0)->f)
#define DAE(f) FIELD(struct cfg, f)
#define SVC(f) FIELD(struct cfg_service, f)
#define PEER(f) FIELD(struct cfg_peer, f)
#define SEC_PARTNER (SEC_PEER | SEC_TEMPLATE)

#define MS_HOUR 3600000u

static const struct key keys[] = {
	/* daemon section: [relay] or [gateway] */
	{ .sec = SEC_DAEMON, .roles = ROLE_BOTH, .name = "node_name",
	  .dflt_fn = d_node_name,
	  .dflt_doc = "the host name, characters other than A-Z a-z 0-9 . _ - replaced by '-', cut to 64",
	  .parse = p_name, DAE(node_name),
	  .help = "Name this node claims in negotiation; its certificate must carry it. 1 to 64 characters from A-Z a-z 0-9 . _ -." },
	{ .sec = SEC_DAEMON, .roles = CFG_RELAY, .name = "listen",
	  .dflt = "127.0.0.1:7400", .parse = p_addr, DAE(listen),
	  .help = "Address the relay accepts links on: host:port, IPv6 as [::1]:7400." },
	{ .sec = SEC_DAEMON, .roles = CFG_GATEWAY, .name = "relay",
	  .flags = K_REQUIRED, .parse = p_relays, DAE(relay),
	  .help = "Relays to dial: one address host:port (IPv6 as [::1]:7400), or up to 8 separated by ','. The gateway keeps one link, to one of them at a time (relay_order), and fails over to the next when a link cannot be made, is refused or dies." },
	{ .sec = SEC_DAEMON, .roles = CFG_GATEWAY, .name = "relay_order",
	  .dflt = "ordered", .parse = p_enum, .choices = relay_orders,
	  DAE(relay_order),
	  .help = "Which relay of the list a new link goes to: ordered (the first that works, in list order) or spread (each new link to the next relay in turn, starting at a random one, so that gateways spread over the relays)." },
	{ .sec = SEC_DAEMON, .roles = CFG_GATEWAY, .name = "relay_links",
	  .dflt = "1", .parse = p_count, .check = c_range,
	  .lo = 1, .hi = CFG_GW_LINKS_MAX, DAE(relay_links),
	  .help = "Live links the gateway keeps at once, 1 to 16, each choosing its relay as relay_order says (ordered: all to the first relay that works, a pool; spread: to different relays in turn) and each failing over on its own. A new client goes to the up link with the fewest streams. Read at start; a reload keeps the running number." },
	{ .sec = SEC_DAEMON, .roles = CFG_GATEWAY, .name = "relay_failback",
	  .dflt = "off", .parse = p_failback, .check = c_range,
	  .flags = K_ZERO_OK, .lo = 100, .hi = MS_HOUR, DAE(relay_failback_ms),
	  .help = "While the link is to a relay other than the first of the list, dial the first one this often, 100ms to 1h; when that link comes up, new streams go to it and the old link drains. off (or 0): stay on the relay that works. With relay_order = spread it does nothing." },
	{ .sec = SEC_DAEMON, .roles = CFG_GATEWAY, .name = "server_name",
	  .dflt_fn = d_server_name, .dflt_doc = "the host part of `relay`",
	  .parse = p_host, DAE(server_name),
	  .help = "Name the relay's certificate must carry (DNS name or IP address). Unset, each relay of the list must carry the host part of its own address." },
	{ .sec = SEC_DAEMON, .roles = ROLE_BOTH, .name = "tls",
	  .dflt = "require", .parse = p_enum, .choices = tls_modes, DAE(tls),
	  .help = "TLS policy for links: off, allow, prefer, require or verify. verify is require plus a verified certificate from the peer: on the relay it makes client_cert = require and refuses, before TLS, a gateway that offers no certificate; on the gateway it is require (the relay's certificate and name are always verified)." },
	{ .sec = SEC_DAEMON, .roles = CFG_RELAY, .name = "tls_first",
	  .dflt = "off", .parse = p_enum, .choices = tls_first_accept,
	  DAE(tls_first),
	  .help = "Links from partners that start TLS at once, without a negotiation message first (TLS first, the order of CICS IPIC): off (refused as not tlsplex) or allow (the relay tells them by their first byte, runs the TLS handshake, then the negotiation inside TLS). The TLS handshake uses the [relay] section's tls versions, ciphers and client_cert, since the partner is known only from the offer inside TLS; a partner with tls = off, or one that requires a client certificate the peer did not present, is refused. Needs tls other than off in [relay]." },
	{ .sec = SEC_DAEMON, .roles = CFG_GATEWAY, .name = "tls_first",
	  .dflt = "no", .parse = p_enum, .choices = yes_no, DAE(tls_first),
	  .help = "yes: dial the relay TLS first (a TLS ClientHello at once, the offer inside TLS; the relay needs tls_first = allow); no link is ever plaintext, and nothing is sent in cleartext. no: the negotiation first, then TLS (the default). Needs tls other than off." },
	{ .sec = SEC_DAEMON, .roles = ROLE_BOTH, .name = "min_tls",
	  .dflt = "1.3", .parse = p_enum, .choices = tls_versions, DAE(min_tls),
	  .help = "Lowest TLS version: 1.2 or 1.3. Must not exceed max_tls." },
	{ .sec = SEC_DAEMON, .roles = ROLE_BOTH, .name = "max_tls",
	  .dflt = "1.3", .parse = p_enum, .choices = tls_versions, DAE(max_tls),
	  .help = "Highest TLS version: 1.2 or 1.3." },
	{ .sec = SEC_DAEMON, .roles = ROLE_BOTH, .name = "ciphers",
	  .dflt = DEFAULT_CIPHERS, .parse = p_ciphers, DAE(ciphers),
	  .help = "Cipher suites in preference order, IANA or wolfSSL names separated by ':' or ','; at most 32, at least one usable with min_tls..max_tls. Left unset, the default suites are ordered for speed: AES-GCM first when the wolfSSL in use has AES-NI and the CPU has AES instructions, ChaCha20-Poly1305 first otherwise." },
	{ .sec = SEC_DAEMON, .roles = ROLE_BOTH, .name = "cert",
	  .dflt = "", .parse = p_path, .check = c_readable, DAE(cert),
	  .help = "PEM certificate chain this node presents in TLS; set together with `key`. Required on the relay when TLS may be used." },
	{ .sec = SEC_DAEMON, .roles = ROLE_BOTH, .name = "key",
	  .dflt = "", .parse = p_path, .check = c_readable, DAE(key),
	  .help = "PEM private key for `cert`." },
	{ .sec = SEC_DAEMON, .roles = ROLE_BOTH, .name = "ca",
	  .dflt = "", .parse = p_path, .check = c_file_or_dir, DAE(ca),
	  .help = "PEM CA bundle that verifies the other side's certificate, or a directory whose every file is a PEM CA certificate (all are loaded). Required on the gateway when TLS may be used, and on the relay when client certificates are wanted." },
	{ .sec = SEC_DAEMON, .roles = ROLE_BOTH, .name = "crl",
	  .dflt = "", .parse = p_path, .check = c_readable, DAE(crl),
	  .help = "PEM certificate revocation list from the CA that issued the peers' certificates; needs `ca`. When set, the peer's certificate is checked against it and a revoked one fails the handshake. Empty: no revocation check." },
	{ .sec = SEC_DAEMON, .roles = ROLE_BOTH, .name = "groups",
	  .dflt = "X25519:P-256:P-384", .parse = p_groups, DAE(groups),
	  .help = "Key-exchange groups in preference order, separated by ':' or ',': X25519, X448, P-256, P-384, P-521, ffdhe2048, ffdhe3072; at most 10. A handshake with a peer that offers none of them fails." },
	{ .sec = SEC_DAEMON, .roles = ROLE_BOTH, .name = "key_perms",
	  .dflt = "warn", .parse = p_enum, .choices = key_perms_modes,
	  DAE(key_perms),
	  .help = "What a private key file (`key`) that group or others may read or write, or that belongs to a user other than the daemon's and root, causes: warn (a log line naming the file and its mode or owner) or error (the daemon, and `-n`, refuse to start)." },
	{ .sec = SEC_DAEMON, .roles = CFG_RELAY, .name = "client_cert",
	  .dflt = "require", .parse = p_enum, .choices = cert_wants,
	  DAE(client_cert),
	  .help = "What the relay asks of a gateway's certificate: none, optional or require." },
	{ .sec = SEC_DAEMON, .roles = ROLE_BOTH, .name = "negotiation_timeout",
	  .dflt = "10s", .parse = p_duration, .check = c_range,
	  .lo = 100, .hi = MS_HOUR, DAE(negotiation_timeout_ms),
	  .help = "Deadline for the plaintext parameter negotiation, 100ms to 1h." },
	{ .sec = SEC_DAEMON, .roles = ROLE_BOTH, .name = "handshake_timeout",
	  .dflt = "10s", .parse = p_duration, .check = c_range,
	  .lo = 100, .hi = MS_HOUR, DAE(handshake_timeout_ms),
	  .help = "Deadline for the TLS handshake, 100ms to 1h." },
	{ .sec = SEC_DAEMON, .roles = ROLE_BOTH, .name = "keepalive",
	  .dflt = "10s", .parse = p_duration, .check = c_range,
	  .flags = K_ZERO_OK, .lo = 100, .hi = MS_HOUR, DAE(keepalive_ms),
	  .help = "Interval between keepalive pings, 100ms to 1h; 0 disables them. The link uses the smaller of the two sides' values." },
	{ .sec = SEC_DAEMON, .roles = ROLE_BOTH, .name = "keepalive_timeout",
	  .dflt = "30s", .parse = p_duration, .check = c_range,
	  .lo = 200, .hi = MS_HOUR, DAE(keepalive_timeout_ms),
	  .help = "A link that has received nothing for this long is declared dead and closed, with all its streams, 200ms to 1h; must exceed keepalive. Applies only while keepalive is on." },
	{ .sec = SEC_DAEMON, .roles = CFG_GATEWAY, .name = "hold_timeout",
	  .dflt = "10s", .parse = p_duration, .check = c_range,
	  .flags = K_ZERO_OK, .lo = 100, .hi = MS_HOUR, DAE(hold_timeout_ms),
	  .help = "How long a client that connects while no link is up is held waiting for one, 100ms to 1h; 0 refuses such clients at once." },
	{ .sec = SEC_DAEMON, .roles = CFG_GATEWAY, .name = "hold_max",
	  .dflt = "1024", .parse = p_count, .check = c_range,
	  .flags = K_ZERO_OK, .lo = 1, .hi = 100000, DAE(hold_max),
	  .help = "Most clients held at once while no link is up, 1 to 100000 (0: none); further clients are refused." },
	{ .sec = SEC_DAEMON, .roles = ROLE_BOTH, .name = "max_streams",
	  .dflt = "16384", .parse = p_count, .check = c_range,
	  .lo = 1, .hi = 1000000, DAE(max_streams),
	  .help = "Most streams open at once on one link, 1 to 1000000." },
	{ .sec = SEC_DAEMON, .roles = ROLE_BOTH, .name = "window",
	  .dflt = "256k", .parse = p_size, .check = c_range,
	  .lo = 16u << 10, .hi = 16u << 20, DAE(window),
	  .help = "Receive window per stream in bytes, 16k to 16m." },
	{ .sec = SEC_DAEMON, .roles = ROLE_BOTH, .name = "max_frame",
	  .dflt = "16375", .parse = p_size, .check = c_range,
	  .lo = 1u << 10, .hi = 16777215, DAE(max_frame),
	  .help = "Largest DATA frame payload in bytes, 1k to 16777215. The default makes a full frame exactly one TLS record, the scheduling quantum." },
	{ .sec = SEC_DAEMON, .roles = ROLE_BOTH, .name = "link_budget",
	  .dflt = "auto", .parse = p_enum, .choices = link_budgets,
	  DAE(link_budget),
	  .help = "Bound on the link's bytes in flight, so that bulk streams cannot queue a whole window per stream ahead of an interactive stream's frames: auto (announce the LINK_ACK capability in negotiation; the bound applies when the peer announces it too) or off (do not announce it; the link carries data as versions without it do, bounded by the per-stream windows only)." },
	{ .sec = SEC_DAEMON, .roles = CFG_GATEWAY, .name = "redial_min",
	  .dflt = "500ms", .parse = p_duration, .check = c_range,
	  .lo = 100, .hi = MS_HOUR, DAE(redial_min_ms),
	  .help = "First delay before dialling the relay again after a failure, 100ms to 1h; doubles up to redial_max." },
	{ .sec = SEC_DAEMON, .roles = CFG_GATEWAY, .name = "redial_max",
	  .dflt = "30s", .parse = p_duration, .check = c_range,
	  .lo = 100, .hi = MS_HOUR, DAE(redial_max_ms),
	  .help = "Longest delay between dial attempts, 100ms to 1h; not below redial_min." },
	{ .sec = SEC_DAEMON, .roles = ROLE_BOTH, .name = "drain_timeout",
	  .dflt = "10s", .parse = p_duration, .check = c_range,
	  .flags = K_ZERO_OK, .lo = 100, .hi = MS_HOUR, DAE(drain_timeout_ms),
	  .help = "On SIGTERM or SIGINT the daemon stops taking new clients or links, sends GOAWAY on every link and lets open streams finish for at most this long, 100ms to 1h, then resets the rest and exits; 0 resets them at once. A second signal exits at once." },
	{ .sec = SEC_DAEMON, .roles = ROLE_BOTH, .name = "hook_file",
	  .dflt = "", .parse = p_path, .check = c_parent_dir, DAE(hook_file),
	  .help = "File that link events are appended to as JSON Lines; its directory must exist. Empty: no events are written." },
	{ .sec = SEC_DAEMON, .roles = ROLE_BOTH, .name = "hook_socket",
	  .dflt = "", .parse = p_path, .check = c_sun_path, DAE(hook_socket),
	  .help = "Unix datagram socket that each event is sent to as one datagram (the JSON object and a newline), without waiting: while nothing receives there, or the receiver is full, events are dropped and counted, and the receiver gets sink_recovered when it is back. At most 107 bytes. Empty: none." },
	{ .sec = SEC_DAEMON, .roles = ROLE_BOTH, .name = "hook_socket_events",
	  .dflt = "all", .parse = p_names, DAE(hook_socket_events),
	  .help = "Events sent to hook_socket: all, or event names separated by ','." },
	{ .sec = SEC_DAEMON, .roles = ROLE_BOTH, .name = "hook_command",
	  .dflt = "", .parse = p_path, .check = c_command, DAE(hook_command),
	  .help = "Absolute path of a program run, without a shell, for each event in hook_command_events: the event's JSON on its standard input, its key fields in TLSPLEX_* environment variables. Checked at load: it must be an executable regular file. Empty: none." },
	{ .sec = SEC_DAEMON, .roles = ROLE_BOTH, .name = "hook_command_events",
	  .dflt = "handshake_pending", .parse = p_names,
	  DAE(hook_command_events),
	  .help = "Events hook_command runs for: all, or event names separated by ','." },
	{ .sec = SEC_DAEMON, .roles = ROLE_BOTH, .name = "hook_command_timeout",
	  .dflt = "2s", .parse = p_duration, .check = c_range,
	  .lo = 100, .hi = 60000, DAE(hook_command_timeout_ms),
	  .help = "How long hook_command may run, 100ms to 60s; then it gets SIGTERM, and SIGKILL 1 s later. With hook_command_veto = yes it must be below handshake_timeout." },
	{ .sec = SEC_DAEMON, .roles = ROLE_BOTH, .name = "hook_command_max",
	  .dflt = "4", .parse = p_count, .check = c_range,
	  .lo = 1, .hi = 256, DAE(hook_command_max),
	  .help = "Most hook_command processes running at once, 1 to 256; an event beyond it is dropped and counted, and with hook_command_veto = yes its handshake is vetoed." },
	{ .sec = SEC_DAEMON, .roles = ROLE_BOTH, .name = "hook_command_veto",
	  .dflt = "no", .parse = p_enum, .choices = yes_no,
	  DAE(hook_command_veto),
	  .help = "yes: before each TLS handshake the link waits (state NOTIFYING, inside handshake_timeout) for hook_command run for handshake_pending; exit status 0 lets the handshake go ahead, anything else vetoes it. no: the command's failures and timeouts are logged and counted only." },
	{ .sec = SEC_DAEMON, .roles = ROLE_BOTH, .name = "hook_command_on_timeout",
	  .dflt = "proceed", .parse = p_enum, .choices = hook_on_timeouts,
	  DAE(hook_command_on_timeout),
	  .help = "With hook_command_veto = yes, what a command that outlives hook_command_timeout means for the handshake: proceed or veto." },
	{ .sec = SEC_DAEMON, .roles = ROLE_BOTH, .name = "hook_syslog",
	  .dflt = "off", .parse = p_enum, .choices = hook_syslog_modes,
	  DAE(hook_syslog),
	  .help = "Events to syslog as RFC 5424 datagrams on hook_syslog_socket, sent without waiting: off, json (the event's JSON is the message) or rfc5424 (its keys are structured data, SD-ID tlsplex@32473). Events are INFO; refusals and failures WARNING." },
	{ .sec = SEC_DAEMON, .roles = ROLE_BOTH, .name = "hook_syslog_facility",
	  .dflt = "daemon", .parse = p_enum, .choices = syslog_facilities,
	  DAE(hook_syslog_facility),
	  .help = "Syslog facility of the events: daemon, user, auth, authpriv or local0 to local7." },
	{ .sec = SEC_DAEMON, .roles = ROLE_BOTH, .name = "hook_syslog_ident",
	  .dflt_fn = d_syslog_ident,
	  .dflt_doc = "the program: `tlsplex-relay` or `tlsplex-gateway`",
	  .parse = p_name, .check = c_app_name, DAE(hook_syslog_ident),
	  .help = "APP-NAME of the syslog messages, 1 to 48 characters from A-Z a-z 0-9 . _ -." },
	{ .sec = SEC_DAEMON, .roles = ROLE_BOTH, .name = "hook_syslog_socket",
	  .dflt = "/dev/log", .parse = p_path, .check = c_sun_path,
	  DAE(hook_syslog_socket),
	  .help = "Unix datagram socket of the syslog daemon. While nothing receives there, events are dropped and counted." },
	{ .sec = SEC_DAEMON, .roles = ROLE_BOTH, .name = "log_level",
	  .dflt = "info", .parse = p_enum, .choices = log_levels,
	  DAE(log_level),
	  .help = "Least important log messages written: error, warn, info or debug." },
	{ .sec = SEC_DAEMON, .roles = ROLE_BOTH, .name = "allow",
	  .dflt = "", .parse = p_acl, DAE(allow),
	  .help = "Source networks admitted before a byte is read: IPv4 or IPv6 addresses or CIDR networks separated by ',' (at most 64). On the relay it guards the link listener, on the gateway every service listener. Empty: every source not denied." },
	{ .sec = SEC_DAEMON, .roles = ROLE_BOTH, .name = "deny",
	  .dflt = "", .parse = p_acl, DAE(deny),
	  .help = "Source networks refused before a byte is read, checked before `allow`; same form and scope as `allow`." },
	{ .sec = SEC_DAEMON, .roles = ROLE_BOTH, .name = "metrics_listen",
	  .dflt = "", .parse = p_addr, .flags = K_EMPTY_OK, DAE(metrics_listen),
	  .help = "Address of the Prometheus metrics endpoint (HTTP GET /metrics), host:port such as 127.0.0.1:9464. Empty: no endpoint." },
	{ .sec = SEC_DAEMON, .roles = ROLE_BOTH, .name = "metrics_allow",
	  .dflt = "127.0.0.0/8,::1", .parse = p_acl, DAE(metrics_allow),
	  .help = "Source networks that may scrape the metrics endpoint, in the form of `allow`; others are closed at once. Empty: every source." },
	{ .sec = SEC_DAEMON, .roles = ROLE_BOTH, .name = "summary_interval",
	  .dflt = "0", .parse = p_duration, .check = c_range,
	  .flags = K_ZERO_OK, .lo = 1000, .hi = 24 * MS_HOUR,
	  DAE(summary_interval_ms),
	  .help = "Interval of the link_summary and service_summary events, 1s to 24h, boundaries at wall-clock multiples of it (15m: :00, :15, ...); 0 turns summaries off." },
	{ .sec = SEC_DAEMON, .roles = CFG_RELAY, .name = "max_links",
	  .dflt = "1024", .parse = p_count, .check = c_range,
	  .lo = 1, .hi = 1000000, DAE(max_links),
	  .help = "Most links open at once, 1 to 1000000; a link beyond it is refused with reason busy." },
	{ .sec = SEC_DAEMON, .roles = CFG_RELAY, .name = "max_links_per_source",
	  .dflt = "16", .parse = p_count, .check = c_range,
	  .lo = 1, .hi = 1000000, DAE(max_links_per_source),
	  .help = "Most links open at once from one source address, 1 to 1000000; a link beyond it is refused with reason busy." },
	{ .sec = SEC_DAEMON, .roles = ROLE_BOTH, .name = "tls_sticky",
	  .dflt = "no", .parse = p_enum, .choices = yes_no, DAE(tls_sticky),
	  .help = "yes: once a peer has completed TLS with this node, remember it in `state_file` and refuse plaintext links with it from then on. Peers and templates may override it." },
	{ .sec = SEC_DAEMON, .roles = ROLE_BOTH, .name = "state_file",
	  .dflt = "", .parse = p_path, .check = c_parent_dir, DAE(state_file),
	  .help = "File that remembers the peers seen with TLS, for tls_sticky; its directory must exist. Required when tls_sticky is used." },

	/* [service NAME] */
	{ .sec = SEC_SERVICE, .roles = ROLE_BOTH, .name = "listen",
	  .flags = K_PORT_ONLY, .parse = p_addr, SVC(listen),
	  .dflt_doc = "none; a service needs listen or backend",
	  .help = "Address clients connect to: host:port, [IPv6]:port, or a bare port or :port meaning 127.0.0.1. On the gateway a forward service: each client becomes a stream the gateway opens to the relay. On the relay a reverse service: each client becomes a stream the relay opens toward `gateway`, which connects it to its own backend. A service has listen or backend, not both." },
	{ .sec = SEC_SERVICE, .roles = ROLE_BOTH, .name = "backend",
	  .parse = p_addr, SVC(backend),
	  .dflt_doc = "none; a service needs listen or backend",
	  .help = "Address each stream of this service is connected to: host:port, IPv6 as [::1]:7400. On the relay a forward service (streams the gateways open). On the gateway a reverse service: the relay may open streams for it, and only for the gateway's services with backend." },
	{ .sec = SEC_SERVICE, .roles = CFG_RELAY, .name = "gateway",
	  .parse = p_name, SVC(gateway),
	  .dflt_doc = "none; required beside listen",
	  .help = "Reverse service (with listen): the node name of the gateway whose link carries its streams. While that gateway has no link up that announced reverse services, clients are refused at once (a TCP reset and a log line)." },
	{ .sec = SEC_SERVICE, .roles = ROLE_BOTH, .name = "tls",
	  .parse = p_enum, .choices = tls_modes, SVC(tls),
	  .help = "TLS policy for this service: off, allow, prefer, require or verify. With require its streams are never carried on a plaintext link; verify on the relay also makes the service's client_cert = require." },
	{ .sec = SEC_SERVICE, .roles = ROLE_BOTH, .name = "allow",
	  .dflt = "", .parse = p_acl, SVC(allow),
	  .help = "Client networks admitted to this service's listener (a service with listen), checked after the daemon section's lists; same form as the daemon key. Empty: every client the daemon section's lists admit." },
	{ .sec = SEC_SERVICE, .roles = ROLE_BOTH, .name = "deny",
	  .dflt = "", .parse = p_acl, SVC(deny),
	  .help = "Client networks refused by this service's listener, besides those the daemon section's lists refuse." },
	{ .sec = SEC_SERVICE, .roles = ROLE_BOTH, .name = "max_clients",
	  .dflt = "4096", .parse = p_count, .check = c_range,
	  .lo = 1, .hi = 1000000, SVC(max_clients),
	  .help = "Most client connections to this service's listener at once, 1 to 1000000; a client beyond it is closed at once and logged. Ignored for a service with backend." },
	{ .sec = SEC_SERVICE, .roles = CFG_RELAY, .name = "client_cert",
	  .parse = p_enum, .choices = cert_wants, SVC(client_cert),
	  .help = "require: streams to this service are refused unless the link's peer presented a verified certificate. none or optional: no extra demand." },

	/* [peer NAME] */
	{ .sec = SEC_PARTNER, .roles = ROLE_BOTH, .name = "tls",
	  .parse = p_enum, .choices = tls_modes, PEER(tls),
	  .help = "TLS policy for links with this peer: off, allow, prefer, require or verify (see the daemon key)." },
	{ .sec = SEC_PARTNER, .roles = ROLE_BOTH, .name = "min_tls",
	  .parse = p_enum, .choices = tls_versions, PEER(min_tls),
	  .help = "Lowest TLS version for this peer: 1.2 or 1.3." },
	{ .sec = SEC_PARTNER, .roles = ROLE_BOTH, .name = "max_tls",
	  .parse = p_enum, .choices = tls_versions, PEER(max_tls),
	  .help = "Highest TLS version for this peer: 1.2 or 1.3." },
	{ .sec = SEC_PARTNER, .roles = CFG_RELAY, .name = "client_cert",
	  .parse = p_enum, .choices = cert_wants, PEER(client_cert),
	  .help = "What the relay asks of this peer's certificate: none, optional or require." },
	{ .sec = SEC_PARTNER, .roles = ROLE_BOTH, .name = "identity",
	  .parse = p_patterns, PEER(identity),
	  .help = "Identities the peer's certificate must carry, one of them at least: names or patterns with '*', separated by ','; matched against its SAN DNS names and URIs, or its CN when it has neither. Unset: the node name the peer claims. On the gateway the [peer] named after server_name applies to the relay." },
	{ .sec = SEC_PARTNER, .roles = CFG_RELAY, .name = "services",
	  .parse = p_names, PEER(services),
	  .help = "Services this peer may open streams to, separated by ','. Unset: every service." },
	{ .sec = SEC_PARTNER, .roles = CFG_RELAY, .name = "max_streams",
	  .parse = p_count, .check = c_range, .lo = 1, .hi = 1000000,
	  PEER(max_streams),
	  .help = "Most streams this peer may hold open on one link, 1 to 1000000. Unset: the daemon's max_streams." },
	{ .sec = SEC_PARTNER, .roles = ROLE_BOTH, .name = "tls_sticky",
	  .parse = p_enum, .choices = yes_no, PEER(tls_sticky),
	  .help = "yes or no: tls_sticky for this peer." },
	{ .sec = SEC_PEER, .roles = CFG_GATEWAY, .name = "tls_first",
	  .parse = p_enum, .choices = yes_no, PEER(tls_first),
	  .help = "yes or no: tls_first for the relay this [peer] names (the one named after server_name)." },

	/* [template NAME] */
	{ .sec = SEC_TEMPLATE, .roles = CFG_RELAY, .name = "match_name",
	  .parse = p_patterns, PEER(match_name),
	  .help = "Node names this template admits: names or patterns with '*', separated by ','. Unset: any name." },
	{ .sec = SEC_TEMPLATE, .roles = CFG_RELAY, .name = "match_issuer",
	  .parse = p_issuers, PEER(match_issuer),
	  .help = "Issuer names the peer's certificate must carry, as the hook prints them (/C=../CN=..), patterns with '*' allowed, separated by ','. Checked after the handshake; a template with it demands TLS and a client certificate. Unset: any issuer." },
	{ .sec = SEC_TEMPLATE, .roles = CFG_RELAY, .name = "match_source",
	  .dflt = "", .parse = p_acl, PEER(match_source),
	  .help = "Source networks this template admits, in the form of `allow`. Empty: any source." },
};

#define NKEYS (sizeof(keys) / sizeof(keys[0]))
_Static_assert(NKEYS <= KEYS_MAX, "too many keys for the seen arrays");

/* Loader state, one per cfg_load call. */
struct ld {
	struct cfg *c;
	int role;
	const char *name;        /* file name for messages */
	char dir[CFG_PATH_MAX];  /* relative paths resolve against it */
	FILE *fp;                /* source: a file ... */
	const char *s;           /* ... or text in memory */
	char *err;
	size_t errlen;
	bool failed;
	int line;
	char buf[LINE_MAX_LEN + 1];
	char stash[LINE_MAX_LEN + 1];
	bool stashed;
	int kind;                /* enum sec_kind of the current section */
	void *base;              /* struct the current section writes into */
	int daemon_line;         /* line of the daemon header, 0 if none */
	int *seen;               /* line each key was set at, this section */
	int dseen[KEYS_MAX];     /* the daemon section's */
	int sseen[KEYS_MAX];     /* the current service or peer section's */
	size_t cap_services, cap_peers, cap_templates;
	char exp[256];           /* scratch for expected-value text */
};

static const char *
role_name(int role)
{
	return role == CFG_RELAY ? "relay" : "gateway";
}

static const char *
other_role(int role)
{
	return role == CFG_RELAY ? "gateway" : "relay";
}

static void fail(struct ld *st, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
fail(struct ld *st, int line, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	if (st->failed)
		return;
	st->failed = true;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(st->err, st->errlen, "%s:%d: %s", st->name, line, msg);
}

static void kfail(struct ld *st, int line, const char *key,
		  const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void
kfail(struct ld *st, int line, const char *key,
      const char *fmt, ...)
{
	char msg[900];
	va_list ap;

	if (st->failed)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fail(st, line, "key '%s': %s", key, msg);
}

static void *
field(const struct key *e, const void *base)
{
	return (char *)base + e->off;
}

static bool
name_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
}

static bool
valid_name(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n > CFG_NAME_MAX)
		return false;
	for (; *s; s++)
		if (!name_char(*s))
			return false;
	return true;
}

#define NAME_RULE "1 to 64 characters from A-Z a-z 0-9 . _ -"

/* ---- values ----------------------------------------------------------- */

static void
fmt_ms(char *b, size_t n, uint64_t v)
{
	if (v != 0 && v % MS_HOUR == 0)
		snprintf(b, n, "%lluh", (unsigned long long)(v / MS_HOUR));
	else if (v != 0 && v % 60000 == 0)
		snprintf(b, n, "%llum", (unsigned long long)(v / 60000));
	else if (v != 0 && v % 1000 == 0)
		snprintf(b, n, "%llus", (unsigned long long)(v / 1000));
	else
		snprintf(b, n, "%llums", (unsigned long long)v);
}

static void
fmt_bytes(char *b, size_t n, uint64_t v)
{
	if (v != 0 && v % (1u << 20) == 0)
		snprintf(b, n, "%llum", (unsigned long long)(v >> 20));
	else if (v != 0 && v % (1u << 10) == 0)
		snprintf(b, n, "%lluk", (unsigned long long)(v >> 10));
	else
		snprintf(b, n, "%llu", (unsigned long long)v);
}

/* Describes what a key accepts, for the "expected" part of a message. */
static const char *
expect_of(struct ld *st, const struct key *e)
{
	char lo[32], hi[32];
	const char *what = "a whole number";
	void (*fmt)(char *, size_t, uint64_t) = NULL;
	size_t n = 0;

	if (e->choices) {
		n = (size_t)snprintf(st->exp, sizeof(st->exp), "one of");
		for (const struct choice *ch = e->choices; ch->name; ch++)
			n += (size_t)snprintf(st->exp + n, sizeof(st->exp) - n,
					      "%s %s", ch == e->choices ? "" : ",",
					      ch->name);
		return st->exp;
	}
	if (e->parse == p_name)
		return NAME_RULE;
	if (e->parse == p_host)
		return "a DNS name or IP address of 1 to 253 characters from A-Z a-z 0-9 . _ - :";
	if (e->parse == p_relays)
		return "1 to 8 addresses host:port separated by ',' (port 1 to 65535; IPv6 in brackets, as in [::1]:7400), each once";
	if (e->parse == p_addr)
		return e->flags & K_PORT_ONLY ?
		       "host:port, [IPv6]:port, :port or a bare port meaning 127.0.0.1:port (port 1 to 65535)" :
		       "host:port (port 1 to 65535; IPv6 in brackets, as in [::1]:7400)";
	if (e->parse == p_ciphers)
		return "1 to 32 IANA or wolfSSL suite names separated by ':' or ',', such as TLS_AES_128_GCM_SHA256";
	if (e->parse == p_acl)
		return "IPv4 or IPv6 addresses or networks such as 10.0.0.0/8, 192.0.2.7 or fd00::/8, separated by ',', at most 64";
	if (e->parse == p_names)
		return "names of " NAME_RULE ", separated by ','";
	if (e->parse == p_patterns)
		return "names or patterns with '*', separated by ',', each 1 to 255 printable characters without blanks";
	if (e->parse == p_issuers)
		return "issuer names or patterns with '*', separated by ',', each 1 to 255 printable characters";
	if (e->parse == p_path)
		return e->check == c_parent_dir ?
		       "a file path in an existing directory, or nothing" :
		       "the path of a readable PEM file";
	if (e->parse == p_duration || e->parse == p_failback) {
		what = "a duration (500ms, 10s, 2m, 1h; a bare number is seconds)";
		fmt = fmt_ms;
	} else if (e->parse == p_size) {
		what = "a size in bytes (k = 1024, m = 1048576)";
		fmt = fmt_bytes;
	}
	if (fmt) {
		fmt(lo, sizeof(lo), e->lo);
		fmt(hi, sizeof(hi), e->hi);
	} else {
		snprintf(lo, sizeof(lo), "%u", e->lo);
		snprintf(hi, sizeof(hi), "%u", e->hi);
	}
	snprintf(st->exp, sizeof(st->exp), "%s%s from %s to %s",
		 e->flags & K_ZERO_OK ? "0 (off) or " : "", what, lo, hi);
	return st->exp;
}

static void
bad(struct ld *st, const struct key *e, const char *val,
    const char *what)
{
	kfail(st, st->line, e->name, "'%.100s' %s; expected %s", val, what,
	      expect_of(st, e));
}

static int
p_enum(struct ld *st, const struct key *e, const char *val,
       void *base)
{
	for (const struct choice *ch = e->choices; ch->name; ch++) {
		if (strcmp(ch->name, val) == 0) {
			*(int *)field(e, base) = ch->val;
			return 0;
		}
	}
	bad(st, e, val, "is not a valid value");
	return -1;
}

static int
p_name(struct ld *st, const struct key *e, const char *val,
       void *base)
{
	if (!valid_name(val)) {
		bad(st, e, val, "is not a valid name");
		return -1;
	}
	snprintf(field(e, base), e->size, "%s", val);
	return 0;
}

static bool
host_char(char ch)
{
	return name_char(ch) || ch == ':';
}

static int
p_host(struct ld *st, const struct key *e, const char *val,
       void *base)
{
	size_t n = strlen(val);

	for (const char *p = val; *p; p++) {
		if (!host_char(*p)) {
			bad(st, e, val, "is not a valid host name");
			return -1;
		}
	}
	if (n < 1 || n > HOST_MAX) {
		bad(st, e, val, "is not a valid host name");
		return -1;
	}
	snprintf(field(e, base), e->size, "%s", val);
	return 0;
}

/* Parses a decimal number; -1 when empty or not all digits, 1 when it
 * does not fit 64 bits, 0 with *end after the digits otherwise. */
static int
num_prefix(const char *s, uint64_t *out, const char **end)
{
	uint64_t v = 0;
	bool big = false;
	const char *p = s;

	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (UINT64_MAX - 9) / 10)
			big = true;
		else
			v = v * 10 + (uint64_t)(*p - '0');
	}
	if (p == s)
		return -1;
	*out = v;
	*end = p;
	return big ? 1 : 0;
}

static int
port_of(const char *s)
{
	uint64_t v;
	const char *end;

	if (num_prefix(s, &v, &end) != 0 || *end || v < 1 || v > 65535 ||
	    strlen(s) > 5)
		return -1;
	return (int)v;
}

/* Splits and checks host:port; writes the canonical form. */
static const char *
addr_parse(const char *val, bool port_only, char *out,
	   size_t outlen)
{
	char host[HOST_MAX + 1];
	const char *colon, *port;
	size_t hl;
	int pn;

	if (port_only && (port_of(val) > 0 ||
			  (val[0] == ':' && port_of(val + 1) > 0))) {
		snprintf(out, outlen, "127.0.0.1:%d",
			 port_of(val[0] == ':' ? val + 1 : val));
		return NULL;
	}
	if (val[0] == '[') {
		const char *close = strchr(val, ']');

		if (!close)
			return "has no closing ']'";
		hl = (size_t)(close - val - 1);
		if (close[1] != ':')
			return "has no port";
		port = close + 2;
		if (hl == 0 || hl > 45)
			return "is not a valid IPv6 address";
		memcpy(host, val + 1, hl);
		host[hl] = '\0';
		if (!strchr(host, ':'))
			return "has brackets around something that is not an IPv6 address";
		for (const char *p = host, *zone = NULL; *p; p++) {
			if (*p == '%' && !zone && p > host && p[1])
				zone = p;
			else if (zone ? !name_char(*p) :
				 !strchr("0123456789abcdefABCDEF:.", *p))
				return "is not a valid IPv6 address";
		}
	} else {
		colon = strrchr(val, ':');
		if (!colon)
			return "has no port";
		hl = (size_t)(colon - val);
		port = colon + 1;
		if (hl == 0)
			return "has no host";
		if (hl > HOST_MAX)
			return "has a host name longer than 253 characters";
		memcpy(host, val, hl);
		host[hl] = '\0';
		if (strchr(host, ':'))
			return "has an IPv6 address without brackets";
		for (const char *p = host; *p; p++)
			if (!name_char(*p))
				return "is not a valid host name";
	}
	pn = port_of(port);
	if (pn < 0)
		return "has a port that is not a number from 1 to 65535";
	snprintf(out, outlen, val[0] == '[' ? "[%s]:%d" : "%s:%d", host, pn);
	return NULL;
}

static int
p_addr(struct ld *st, const struct key *e, const char *val,
       void *base)
{
	const char *why;

	if ((e->flags & K_EMPTY_OK) && val[0] == '\0') {
		*(char *)field(e, base) = '\0';
		return 0;
	}
	why = addr_parse(val, e->flags & K_PORT_ONLY, field(e, base), e->size);
	if (why) {
		bad(st, e, val, why);
		return -1;
	}
	return 0;
}

static int
p_relays(struct ld *st, const struct key *e, const char *val,
	 void *base)
{
	struct cfg *c = base;
	char item[CFG_ADDR_MAX], one[CFG_ADDR_MAX];
	const char *p = val, *why;
	size_t n = 0, len = 0, k;

	c->relay[0] = '\0';
	for (;;) {
		const char *end = strchr(p, ',');
		size_t il = end ? (size_t)(end - p) : strlen(p);

		while (il > 0 && (*p == ' ' || *p == '\t')) {
			p++;
			il--;
		}
		while (il > 0 && (p[il - 1] == ' ' || p[il - 1] == '\t'))
			il--;
		if (il == 0 || il >= sizeof(item)) {
			bad(st, e, val, il == 0 ? "has an empty entry" :
			    "has an entry that is too long");
			return -1;
		}
		if (n == CFG_RELAYS_MAX) {
			bad(st, e, val, "lists more than 8 relays");
			return -1;
		}
		memcpy(item, p, il);
		item[il] = '\0';
		why = addr_parse(item, false, one, sizeof(one));
		if (why) {
			bad(st, e, item, why);
			return -1;
		}
		for (k = 0; k < n; k++)
			if (strcmp(c->relays[k].addr, one) == 0) {
				bad(st, e, item, "is listed twice");
				return -1;
			}
		snprintf(c->relays[n].addr, sizeof(c->relays[n].addr), "%s", one);
		len += (size_t)snprintf(c->relay + len, sizeof(c->relay) - len,
					"%s%s", n ? ", " : "", one);
		if (len >= sizeof(c->relay)) {
			bad(st, e, val, "is longer than 511 characters");
			return -1;
		}
		n++;
		if (end == NULL)
			break;
		p = end + 1;
	}
	c->n_relays = n;
	return 0;
}

static void
range_fail(struct ld *st, const struct key *e, const char *val)
{
	bad(st, e, val, "is out of range");
}

/* Stores v into the key's uint32_t field, or reports it out of range. */
static int
put_u32(struct ld *st, const struct key *e, const char *val,
	uint64_t v, bool big, void *base)
{
	if (big || v > UINT32_MAX) {
		range_fail(st, e, val);
		return -1;
	}
	*(uint32_t *)field(e, base) = (uint32_t)v;
	return 0;
}

static int
p_duration(struct ld *st, const struct key *e, const char *val,
	   void *base)
{
	static const struct { const char *unit; uint64_t ms; } units[] = {
		{ "", 1000 }, { "ms", 1 }, { "s", 1000 },
		{ "m", 60000 }, { "h", MS_HOUR },
	};
	const char *end;
	uint64_t v;
	int r = num_prefix(val, &v, &end);

	if (r < 0)
		goto syntax;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].unit) != 0)
			continue;
		if (v > UINT64_MAX / units[i].ms)
			r = 1;
		return put_u32(st, e, val, v * units[i].ms, r > 0, base);
	}
syntax:
	bad(st, e, val, "is not a duration");
	return -1;
}

/* A duration, or off (stored as 0). */
static int
p_failback(struct ld *st, const struct key *e, const char *val,
	   void *base)
{
	if (strcmp(val, "off") == 0) {
		*(uint32_t *)field(e, base) = 0;
		return 0;
	}
	return p_duration(st, e, val, base);
}

static int
p_size(struct ld *st, const struct key *e, const char *val,
       void *base)
{
	const char *end;
	uint64_t v, mult = 1;
	int r = num_prefix(val, &v, &end);

	if (r < 0)
		goto syntax;
	if (*end == 'k' || *end == 'K')
		mult = 1u << 10;
	else if (*end == 'm' || *end == 'M')
		mult = 1u << 20;
	else if (*end)
		goto syntax;
	if (mult > 1 && end[1])
		goto syntax;
	if (v > UINT64_MAX / mult)
		r = 1;
	return put_u32(st, e, val, v * mult, r > 0, base);
syntax:
	bad(st, e, val, "is not a size");
	return -1;
}

static int
p_count(struct ld *st, const struct key *e, const char *val,
	void *base)
{
	const char *end;
	uint64_t v;
	int r = num_prefix(val, &v, &end);

	if (r < 0 || *end) {
		bad(st, e, val, "is not a whole number");
		return -1;
	}
	return put_u32(st, e, val, v, r > 0, base);
}

static int
c_range(struct ld *st, const struct key *e, const char *val,
	const void *base)
{
	uint32_t v = *(const uint32_t *)field(e, base);

	if ((v == 0 && (e->flags & K_ZERO_OK)) || (v >= e->lo && v <= e->hi))
		return 0;
	range_fail(st, e, val);
	return -1;
}

static int
p_ciphers(struct ld *st, const struct key *e, const char *val,
	  void *base)
{
	struct cfg *c = base;
	char list[LINE_MAX_LEN + 1];
	uint16_t ids[CFG_CIPHERS_MAX];
	size_t n = 0;
	char *save = NULL, *tok;

	snprintf(list, sizeof(list), "%s", val);
	for (tok = strtok_r(list, ":,", &save); tok;
	     tok = strtok_r(NULL, ":,", &save)) {
		const struct cipher_info *ci;

		while (*tok == ' ' || *tok == '\t')
			tok++;
		for (size_t l = strlen(tok);
		     l && (tok[l - 1] == ' ' || tok[l - 1] == '\t'); l--)
			tok[l - 1] = '\0';
		if (!*tok)
			continue;
		ci = cipher_by_name(tok);
		if (!ci) {
			kfail(st, st->line, e->name,
			      "unknown cipher suite '%.100s'; expected %s",
			      tok, expect_of(st, e));
			return -1;
		}
		for (size_t i = 0; i < n; i++) {
			if (ids[i] == ci->id) {
				kfail(st, st->line, e->name,
				      "suite '%.100s' is listed twice; expected each suite once",
				      tok);
				return -1;
			}
		}
		if (n == CFG_CIPHERS_MAX) {
			bad(st, e, val, "lists too many suites");
			return -1;
		}
		ids[n++] = ci->id;
	}
	if (n == 0) {
		bad(st, e, val, "lists no suite");
		return -1;
	}
	memcpy(c->ciphers, ids, n * sizeof(ids[0]));
	c->n_ciphers = (uint8_t)n;
	return 0;
}

/* Splits val at ',' into blank-trimmed items; calls fn on each.  Returns
 * the first nonzero fn result, or -2 for an empty item, or 0. */
static int
split_items(const char *val, int (*fn)(const char *, void *),
	    void *arg)
{
	char list[LINE_MAX_LEN + 1];
	char *p, *next;
	int any = 0, rc;

	snprintf(list, sizeof(list), "%s", val);
	for (p = list; p != NULL; p = next) {
		char *end;

		next = strchr(p, ',');
		if (next != NULL)
			*next++ = '\0';
		while (*p == ' ' || *p == '\t')
			p++;
		end = p + strlen(p);
		while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		if (*p == '\0') {
			if (next != NULL || any)
				return -2;
			continue;
		}
		any = 1;
		rc = fn(p, arg);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* Parses "ADDR" or "ADDR/BITS" into n.  Returns 0 or -1. */
static int
cidr_parse(const char *s, struct cfg_cidr *n)
{
	char addr[INET6_ADDRSTRLEN + 1];
	const char *slash = strchr(s, '/');
	size_t len = slash ? (size_t)(slash - s) : strlen(s);
	unsigned max;
	uint64_t bits;
	const char *end;

	if (len == 0 || len >= sizeof(addr))
		return -1;
	memcpy(addr, s, len);
	addr[len] = '\0';
	memset(n, 0, sizeof(*n));
	if (inet_pton(AF_INET, addr, n->addr) == 1) {
		n->family = 4;
		max = 32;
	} else if (inet_pton(AF_INET6, addr, n->addr) == 1) {
		n->family = 6;
		max = 128;
	} else {
		return -1;
	}
	n->bits = (uint8_t)max;
	if (slash) {
		if (num_prefix(slash + 1, &bits, &end) != 0 || *end ||
		    bits > max || strlen(slash + 1) > 3)
			return -1;
		n->bits = (uint8_t)bits;
	}
	/* Host bits are cleared, so 10.1.2.3/8 means 10.0.0.0/8. */
	for (unsigned i = n->bits; i < max; i++)
		n->addr[i / 8] &= (uint8_t)~(0x80u >> (i % 8));
	return 0;
}

/* The item a list parser rejected, copied: split_items() hands out
 * pointers into its own stack buffer, gone once it returns. */
struct bad_item {
	char text[101];
};

static const char *
bad_keep(struct bad_item *b, const char *item)
{
	snprintf(b->text, sizeof(b->text), "%s", item);
	return b->text;
}

struct acl_fill {
	struct cfg_acl *acl;
	const char *bad;
	struct bad_item keep;
};

static int
acl_item(const char *item, void *arg)
{
	struct acl_fill *f = arg;

	if (f->acl->n == CFG_ACL_MAX)
		return 2;
	if (cidr_parse(item, &f->acl->net[f->acl->n]) < 0) {
		f->bad = bad_keep(&f->keep, item);
		return 1;
	}
	f->acl->n++;
	return 0;
}

static int
p_acl(struct ld *st, const struct key *e, const char *val,
      void *base)
{
	struct cfg_acl *acl = field(e, base);
	struct acl_fill f = { acl, NULL, { "" } };
	int rc;

	acl->n = 0;
	rc = split_items(val, acl_item, &f);
	if (rc == 1) {
		kfail(st, st->line, e->name, "'%.100s' is not an address or network; expected %s",
		      f.bad, expect_of(st, e));
	} else if (rc == 2) {
		bad(st, e, val, "lists too many networks");
	} else if (rc == -2) {
		bad(st, e, val, "has an empty entry");
	}
	return rc == 0 ? 0 : -1;
}

struct item_check {
	int kind;         /* 0 names, 1 patterns, 2 patterns with blanks */
	const char *bad;
	char *dst;        /* the normalised list: items joined by ',' */
	size_t len, cap;
	struct bad_item keep;
};

static int
item_ok(const char *item, void *arg)
{
	struct item_check *ic = arg;
	size_t n = strlen(item);

	if (ic->kind == 0 ? !valid_name(item) : n > ITEM_MAX) {
		ic->bad = bad_keep(&ic->keep, item);
		return 1;
	}
	for (const char *p = item; *p; p++) {
		if ((unsigned char)*p < ' ' || *p == 0x7f ||
		    (*p == ' ' && ic->kind != 2)) {
			ic->bad = bad_keep(&ic->keep, item);
			return 1;
		}
	}
	if (ic->len + n + 2 > ic->cap)
		return 3;
	if (ic->len > 0)
		ic->dst[ic->len++] = ',';
	memcpy(ic->dst + ic->len, item, n + 1);
	ic->len += n;
	return 0;
}

/* Stores a validated list: items trimmed and joined by ','. */
static int
p_list(struct ld *st, const struct key *e, const char *val,
       void *base, int kind)
{
	struct item_check ic = { kind, NULL, field(e, base), 0, e->size, { "" } };
	int rc;

	ic.dst[0] = '\0';
	rc = split_items(val, item_ok, &ic);
	if (rc == 1) {
		kfail(st, st->line, e->name, "'%.100s' is not a valid entry; expected %s",
		      ic.bad, expect_of(st, e));
		return -1;
	}
	if (rc != 0 || !*val) {
		bad(st, e, val, rc == -2 ? "has an empty entry" :
		    rc == 3 ? "is too long" : "is empty");
		ic.dst[0] = '\0';
		return -1;
	}
	return 0;
}

static int
p_names(struct ld *st, const struct key *e, const char *val,
	void *base)
{
	return p_list(st, e, val, base, 0);
}

static int
p_patterns(struct ld *st, const struct key *e, const char *val,
	   void *base)
{
	return p_list(st, e, val, base, 1);
}

static int
p_issuers(struct ld *st, const struct key *e, const char *val,
	  void *base)
{
	return p_list(st, e, val, base, 2);
}

static int
p_path(struct ld *st, const struct key *e, const char *val,
       void *base)
{
	char *dst = field(e, base);
	int n;

	if (!*val || val[0] == '/')
		n = snprintf(dst, e->size, "%s", val);
	else
		n = snprintf(dst, e->size, "%s%s%s", st->dir,
			     st->dir[strlen(st->dir) - 1] == '/' ? "" : "/",
			     val);
	if (n < 0 || (size_t)n >= e->size) {
		dst[0] = '\0';
		bad(st, e, val, "makes a path that is too long");
		return -1;
	}
	return 0;
}

static int
c_readable(struct ld *st, const struct key *e, const char *val,
	   const void *base)
{
	const char *path = field(e, base);
	struct stat sb;
	int fd, rc = 0;

	if (!*path)
		return 0;
	/* O_NONBLOCK: a FIFO must not make the load wait for a writer; it is
	 * refused below as not a regular file. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		kfail(st, st->line, e->name, "cannot read '%.300s': %s; expected %s",
		      path, strerror(errno), expect_of(st, e));
		return -1;
	}
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		kfail(st, st->line, e->name, "'%.300s' is not a regular file; expected %s",
		      path, expect_of(st, e));
		rc = -1;
	}
	close(fd);
	return rc;
}

static int
c_file_or_dir(struct ld *st, const struct key *e, const char *val,
	      const void *base)
{
	const char *path = field(e, base);
	struct stat sb;

	if (!*path)
		return 0;
	if (stat(path, &sb) != 0) {
		kfail(st, st->line, e->name, "cannot read '%.300s': %s; expected a readable PEM file or a directory of PEM files",
		      path, strerror(errno));
		return -1;
	}
	if (S_ISDIR(sb.st_mode)) {
		if (access(path, R_OK | X_OK) != 0) {
			kfail(st, st->line, e->name, "cannot read directory '%.300s': %s; expected a readable PEM file or a directory of PEM files",
			      path, strerror(errno));
			return -1;
		}
		return 0;
	}
	return c_readable(st, e, val, base);
}

static const struct {
	const char *name;
	uint16_t id;      /* IANA TLS named group */
} group_names[] = {
	{ "X25519", 29 }, { "X448", 30 },
	{ "P-256", 23 }, { "secp256r1", 23 }, { "prime256v1", 23 },
	{ "P-384", 24 }, { "secp384r1", 24 },
	{ "P-521", 25 }, { "secp521r1", 25 },
	{ "ffdhe2048", 256 }, { "ffdhe3072", 257 },
};

#define GROUPS_EXPECT "1 to 10 of X25519, X448, P-256, P-384, P-521, ffdhe2048, ffdhe3072 separated by ':' or ','"

static int
p_groups(struct ld *st, const struct key *e, const char *val,
	 void *base)
{
	struct cfg *c = base;
	const size_t max = sizeof(c->groups) / sizeof(c->groups[0]);
	char list[LINE_MAX_LEN + 1];
	uint16_t ids[sizeof(c->groups) / sizeof(c->groups[0])];
	size_t n = 0, g;
	char *save = NULL, *tok;

	snprintf(list, sizeof(list), "%s", val);
	for (tok = strtok_r(list, ":, \t", &save); tok;
	     tok = strtok_r(NULL, ":, \t", &save)) {
		for (g = 0; g < sizeof(group_names) / sizeof(group_names[0]); g++)
			if (strcasecmp(tok, group_names[g].name) == 0)
				break;
		if (g == sizeof(group_names) / sizeof(group_names[0])) {
			kfail(st, st->line, e->name,
			      "unknown group '%.100s'; expected %s", tok,
			      GROUPS_EXPECT);
			return -1;
		}
		for (size_t i = 0; i < n; i++) {
			if (ids[i] == group_names[g].id) {
				kfail(st, st->line, e->name,
				      "group '%.100s' is listed twice; expected each group once",
				      tok);
				return -1;
			}
		}
		if (n == max) {
			kfail(st, st->line, e->name,
			      "'%.100s' lists too many groups; expected %s",
			      val, GROUPS_EXPECT);
			return -1;
		}
		ids[n++] = group_names[g].id;
	}
	if (n == 0) {
		kfail(st, st->line, e->name, "'%.100s' lists no group; expected %s",
		      val, GROUPS_EXPECT);
		return -1;
	}
	memcpy(c->groups, ids, n * sizeof(ids[0]));
	c->n_groups = (uint8_t)n;
	return 0;
}

static int
c_parent_dir(struct ld *st, const struct key *e, const char *val,
	     const void *base)
{
	const char *path = field(e, base);
	char dir[CFG_PATH_MAX];
	char *slash;
	struct stat sb;

	if (!*path)
		return 0;
	if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
		kfail(st, st->line, e->name, "'%.300s' is a directory; expected %s",
		      path, expect_of(st, e));
		return -1;
	}
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (!slash)
		return 0;
	if (slash == dir)
		slash[1] = '\0';
	else
		*slash = '\0';
	if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
		kfail(st, st->line, e->name,
		      "directory '%.300s' does not exist; expected %s", dir,
		      expect_of(st, e));
		return -1;
	}
	return 0;
}

static int
c_sun_path(struct ld *st, const struct key *e, const char *val,
	   const void *base)
{
	const char *path = field(e, base);

	/* sizeof(sockaddr_un.sun_path) is 108 on Linux, NUL included. */
	if (strlen(path) > 107) {
		kfail(st, st->line, e->name, "'%.300s' is longer than the 107 bytes a Unix socket path may have; expected a shorter path",
		      path);
		return -1;
	}
	return 0;
}

static int
c_command(struct ld *st, const struct key *e, const char *val,
	  const void *base)
{
	const char *path = field(e, base);
	struct stat sb;

	if (!*path)
		return 0;
	if (val[0] != '/') {
		kfail(st, st->line, e->name, "'%.300s' is not an absolute path; expected the absolute path of an executable (it is run without a shell or PATH search)",
		      val);
		return -1;
	}
	if (stat(path, &sb) != 0) {
		kfail(st, st->line, e->name, "cannot find '%.300s': %s; expected the absolute path of an executable",
		      path, strerror(errno));
		return -1;
	}
	if (!S_ISREG(sb.st_mode) || access(path, X_OK) != 0) {
		kfail(st, st->line, e->name, "'%.300s' is not an executable regular file; expected the absolute path of an executable",
		      path);
		return -1;
	}
	return 0;
}

static int
c_app_name(struct ld *st, const struct key *e, const char *val,
	   const void *base)
{
	if (strlen(field(e, base)) > 48) {
		bad(st, e, val, "is longer than 48 characters (RFC 5424 APP-NAME)");
		return -1;
	}
	return 0;
}

static void
d_syslog_ident(struct ld *st, char *buf, size_t len)
{
	snprintf(buf, len, "tlsplex-%s", role_name(st->role));
}

static void
d_node_name(struct ld *st, char *buf, size_t len)
{
	char host[256];
	size_t n = 0;

	if (gethostname(host, sizeof(host)) != 0)
		host[0] = '\0';
	host[sizeof(host) - 1] = '\0';
	for (const char *p = host; *p && n < CFG_NAME_MAX && n + 1 < len; p++)
		buf[n++] = name_char(*p) ? *p : '-';
	buf[n] = '\0';
	if (n == 0)
		snprintf(buf, len, "tlsplex");
}

static void
d_server_name(struct ld *st, char *buf, size_t len)
{
	const char *r = st->c->relays[0].addr;
	const char *end;

	if (r[0] == '[') {
		r++;
		end = strchr(r, ']');
	} else {
		end = strrchr(r, ':');
	}
	if (!end)
		end = r + strlen(r);
	snprintf(buf, len, "%.*s", (int)(end - r), r);
}

/* Parses and checks one value into base.  Returns 0 or -1. */
static int
key_apply(struct ld *st, const struct key *e, const char *val,
	  void *base)
{
	if (e->parse(st, e, val, base) < 0)
		return -1;
	if (e->check && e->check(st, e, val, base) < 0)
		return -1;
	return 0;
}

/* Sets every key of one section to its default or to "unset". */
static int
section_defaults(struct ld *st, int sec, void *base)
{
	for (size_t i = 0; i < NKEYS; i++) {
		const struct key *e = &keys[i];

		if (!(e->sec & sec))
			continue;
		if (!(e->roles & st->role)) {
			/* the other role's keys read as unset, or zero in
			 * the daemon section */
			if (sec != SEC_DAEMON && e->parse == p_enum)
				*(int *)field(e, base) = CFG_UNSET;
			continue;
		}
		if (e->dflt) {
			if (key_apply(st, e, e->dflt, base) < 0)
				return -1;
		} else if (e->parse == p_enum) {
			*(int *)field(e, base) = CFG_UNSET;
		} else {
			memset(field(e, base), 0, e->size);
		}
	}
	return 0;
}

static int
key_index(int sec, const char *name)
{
	for (size_t i = 0; i < NKEYS; i++)
		if ((keys[i].sec & sec) && strcmp(keys[i].name, name) == 0)
			return (int)i;
	return -1;
}

/* ---- sections --------------------------------------------------------- */

static const char *
sec_title(int sec)
{
	switch (sec) {
	case SEC_SERVICE:
		return "service";
	case SEC_PEER:
		return "peer";
	case SEC_TEMPLATE:
		return "template";
	}
	return "daemon";
}

static void
valid_sections(struct ld *st, char *b, size_t n)
{
	snprintf(b, n, st->role == CFG_RELAY ?
		 "[%s], [service NAME], [peer NAME] or [template NAME]" :
		 "[%s], [service NAME] or [peer NAME]", role_name(st->role));
}

static const struct cfg_peer *
template_find(const struct cfg *c,
	      const char *name)
{
	for (size_t i = 0; i < c->n_templates; i++)
		if (strcmp(c->templates[i].name, name) == 0)
			return &c->templates[i];
	return NULL;
}

static void *
list_add(struct ld *st, void **arr, size_t *n, size_t *cap,
	 size_t size, const char *what)
{
	if (*n == LIST_MAX) {
		fail(st, st->line, "too many [%s] sections; expected at most %d",
		     what, LIST_MAX);
		return NULL;
	}
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 4;
		void *p;

		if (ncap > LIST_MAX)
			ncap = LIST_MAX;
		p = realloc(*arr, ncap * size);
		if (!p) {
			fail(st, st->line, "out of memory");
			return NULL;
		}
		*arr = p;
		*cap = ncap;
	}
	memset((char *)*arr + *n * size, 0, size);
	return (char *)*arr + (*n)++ * size;
}

static int
open_named(struct ld *st, int sec, const char *arg)
{
	struct cfg *c = st->c;
	const char *what = sec_title(sec);
	int prev = 0;
	void *item;

	if (!*arg) {
		fail(st, st->line, "section '[%s]' has no name; expected [%s NAME] with NAME of "
		     NAME_RULE, what, what);
		return -1;
	}
	if (!valid_name(arg)) {
		fail(st, st->line, "section '[%s %.100s]' has an invalid name; expected NAME of "
		     NAME_RULE, what, arg);
		return -1;
	}
	if (sec == SEC_SERVICE) {
		const struct cfg_service *s = cfg_service_find(c, arg);

		prev = s ? s->line : 0;
	} else {
		const struct cfg_peer *p = sec == SEC_PEER ?
			cfg_peer_find(c, arg) : template_find(c, arg);

		prev = p ? p->line : 0;
	}
	if (prev) {
		fail(st, st->line, "section '[%s %s]' repeats the one at line %d; expected each %s name once",
		     what, arg, prev, what);
		return -1;
	}
	if (sec == SEC_SERVICE) {
		struct cfg_service *s;

		item = list_add(st, (void **)&c->services, &c->n_services,
				&st->cap_services, sizeof(*s), what);
		if (!item)
			return -1;
		s = item;
		snprintf(s->name, sizeof(s->name), "%s", arg);
		s->line = st->line;
	} else {
		struct cfg_peer *p;

		if (sec == SEC_PEER)
			item = list_add(st, (void **)&c->peers, &c->n_peers,
					&st->cap_peers, sizeof(*p), what);
		else
			item = list_add(st, (void **)&c->templates,
					&c->n_templates, &st->cap_templates,
					sizeof(*p), what);
		if (!item)
			return -1;
		p = item;
		snprintf(p->name, sizeof(p->name), "%s", arg);
		p->line = st->line;
	}
	st->kind = sec;
	st->base = item;
	return section_defaults(st, sec, item);
}

/* Handles a line starting with '['. */
static int
section_open(struct ld *st, char *p)
{
	char valid[80];
	char *end = strchr(p, ']');
	char *inner, *arg, *q;

	valid_sections(st, valid, sizeof(valid));
	if (!end) {
		fail(st, st->line, "section header has no closing ']'; expected %s",
		     valid);
		return -1;
	}
	for (q = end + 1; *q == ' ' || *q == '\t'; q++)
		;
	if (*q && *q != ';' && *q != '#') {
		fail(st, st->line, "text after the section header; expected %s alone on its line",
		     valid);
		return -1;
	}
	*end = '\0';
	for (inner = p + 1; *inner == ' ' || *inner == '\t'; inner++)
		;
	for (q = end; q > inner && (q[-1] == ' ' || q[-1] == '\t'); q--)
		q[-1] = '\0';
	for (arg = inner; *arg && *arg != ' ' && *arg != '\t'; arg++)
		;
	if (*arg) {
		*arg++ = '\0';
		while (*arg == ' ' || *arg == '\t')
			arg++;
	}

	memset(st->sseen, 0, sizeof(st->sseen));
	st->seen = st->sseen;
	if (strcmp(inner, role_name(st->role)) == 0) {
		if (*arg) {
			fail(st, st->line, "section '[%s %.100s]' takes no name; expected [%s]",
			     inner, arg, inner);
			return -1;
		}
		if (st->daemon_line) {
			fail(st, st->line, "section '[%s]' repeats the one at line %d; expected one [%s] section",
			     inner, st->daemon_line, inner);
			return -1;
		}
		st->daemon_line = st->line;
		st->kind = SEC_DAEMON;
		st->base = st->c;
		st->seen = st->dseen;
		return 0;
	}
	if (strcmp(inner, other_role(st->role)) == 0) {
		fail(st, st->line, "section '[%s]' belongs in a %s configuration; this is a %s configuration; expected %s",
		     inner, inner, role_name(st->role), valid);
		return -1;
	}
	if (strcmp(inner, "service") == 0)
		return open_named(st, SEC_SERVICE, arg);
	if (strcmp(inner, "peer") == 0)
		return open_named(st, SEC_PEER, arg);
	if (strcmp(inner, "template") == 0 && st->role == CFG_RELAY)
		return open_named(st, SEC_TEMPLATE, arg);
	if (strcmp(inner, "template") == 0) {
		fail(st, st->line, "section '[template %.60s]' belongs in a relay configuration: templates admit unknown gateways; expected %s",
		     arg, valid);
		return -1;
	}
	fail(st, st->line, "unknown section '[%.60s%s%.60s]'; expected %s", inner,
	     *arg ? " " : "", arg, valid);
	return -1;
}

/* ---- reading ---------------------------------------------------------- */

/* Reads one physical line into st->buf.  Returns 1, 0 at the end, or -1
 * after reporting an error. */
static int
read_line(struct ld *st)
{
	size_t n = 0;
	bool any = false, ctrl = false, toolong = false;
	int ch;

	for (;;) {
		if (st->fp)
			ch = getc(st->fp);
		else
			ch = *st->s ? (unsigned char)*st->s++ : EOF;
		if (ch == EOF)
			break;
		any = true;
		if (ch == '\n')
			break;
		if ((ch < 0x20 && ch != '\t' && ch != '\r') || ch == 0x7f)
			ctrl = true;
		if (n == LINE_MAX_LEN)
			toolong = true;
		else
			st->buf[n++] = (char)ch;
	}
	if (st->fp && ferror(st->fp)) {
		fail(st, st->line + 1, "cannot read: %s; expected a readable configuration file",
		     strerror(errno));
		return -1;
	}
	if (!any)
		return 0;
	st->line++;
	if (n && st->buf[n - 1] == '\r')
		n--;
	st->buf[n] = '\0';
	if (toolong) {
		fail(st, st->line, "line is longer than %d characters; expected shorter lines",
		     LINE_MAX_LEN);
		return -1;
	}
	if (ctrl || strchr(st->buf, '\r')) {
		fail(st, st->line, "line holds a control character; expected printable text");
		return -1;
	}
	return 1;
}

/* Where inih would end the key of a key line: the first '=' or ':', or an
 * inline comment (';' after a blank). */
static char *
key_end(char *p)
{
	bool blank = false;

	for (; *p; p++) {
		if (*p == '=' || *p == ':')
			return p;
		if (*p == ';' && blank)
			return p;
		blank = *p == ' ' || *p == '\t';
	}
	return p;
}

/* Where inih would end a value: at an inline comment. */
static char *
comment_start(char *p)
{
	bool blank = false;

	for (; *p; p++) {
		if (*p == ';' && blank)
			return p;
		blank = *p == ' ' || *p == '\t';
	}
	return p;
}

/* Splits a key line itself: its value goes to the side buffer and inih
 * gets "key=" followed by the marker. */
static int
stash_line(struct ld *st, char *p, char *sep, char *str, int num)
{
	char *v = sep + 1, *end;
	size_t kl;

	for (end = sep; end > p && (end[-1] == ' ' || end[-1] == '\t'); end--)
		;
	kl = (size_t)(end - p);
	if (kl + sizeof(STASH_MARK) + 2 > (size_t)num) {
		fail(st, st->line, "key name '%.40s...' is too long; expected a key from the reference",
		     p);
		return -1;
	}
	while (*v == ' ' || *v == '\t')
		v++;
	*comment_start(v) = '\0';
	end = v + strlen(v);
	while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
		*--end = '\0';
	snprintf(st->stash, sizeof(st->stash), "%s", v);
	st->stashed = true;
	snprintf(str, (size_t)num, "%.*s=" STASH_MARK "\n", (int)kl, p);
	return 0;
}

static char *
reader(char *str, int num, void *stream)
{
	struct ld *st = stream;
	char *p, *sep;

	st->stashed = false;
	if (st->failed)
		return NULL;
	if (num < 8) {
		fail(st, st->line, "inih line buffer of %d bytes is too small",
		     num);
		return NULL;
	}
	if (read_line(st) <= 0)
		return NULL;
	p = st->buf;
	if (st->line == 1 && memcmp(p, "\xef\xbb\xbf", 3) == 0)
		p += 3;
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p == '[') {
		if (section_open(st, p) < 0)
			return NULL;
		p = "";
	} else if (*p && *p != ';' && *p != '#') {
		sep = key_end(p);
		if (*sep != '=' && *sep != ':') {
			fail(st, st->line, "line is not a section header, a key = value pair or a comment; expected key = value");
			return NULL;
		}
		if (strlen(p) + 2 > (size_t)num) {
			if (stash_line(st, p, sep, str, num) < 0)
				return NULL;
			return str;
		}
	} else {
		p = "";
	}
	snprintf(str, (size_t)num, "%s\n", p);
	return str;
}

static void
key_list(struct ld *st, int sec, char *b, size_t n)
{
	size_t len = 0;

	b[0] = '\0';
	for (size_t i = 0; i < NKEYS && len < n; i++) {
		if (!(keys[i].sec & sec) || !(keys[i].roles & st->role))
			continue;
		len += (size_t)snprintf(b + len, n - len, "%s%s",
					len ? ", " : "", keys[i].name);
	}
}

static int
on_pair(void *user, const char *section, const char *name,
	const char *value)
{
	struct ld *st = user;
	char valid[80], list[512];
	const struct key *e = NULL;
	int idx, other = -1;

	(void)section; /* the reader tracks sections itself */
	if (st->failed)
		return 0;
	if (st->stashed && strcmp(value, STASH_MARK) == 0)
		value = st->stash;
	if (st->kind == SEC_NONE) {
		valid_sections(st, valid, sizeof(valid));
		kfail(st, st->line, name, "set before any section; expected it under %s",
		      valid);
		return 0;
	}
	for (size_t i = 0; i < NKEYS; i++) {
		if (!(keys[i].sec & st->kind) || strcmp(keys[i].name, name))
			continue;
		if (keys[i].roles & st->role) {
			e = &keys[i];
			break;
		}
		other = (int)i;
	}
	if (!e)
		key_list(st, st->kind, list, sizeof(list));
	if (!e && other >= 0) {
		kfail(st, st->line, name, "'%s' is a %s key; this is a %s configuration; expected one of %s",
		      name, other_role(st->role), role_name(st->role), list);
		return 0;
	}
	if (!e) {
		int d = key_index(SEC_DAEMON, name);

		if (st->kind != SEC_DAEMON && d >= 0 &&
		    (keys[d].roles & st->role))
			kfail(st, st->line, name, "not valid in a [%s] section; expected it in the [%s] section",
			      sec_title(st->kind), role_name(st->role));
		else
			kfail(st, st->line, name, "unknown key in a [%s] section; expected one of %s",
			      st->kind == SEC_DAEMON ? role_name(st->role) :
			      sec_title(st->kind), list);
		return 0;
	}
	idx = (int)(e - keys);
	if (st->seen[idx]) {
		kfail(st, st->line, name, "set twice in this section (first at line %d); expected it once",
		      st->seen[idx]);
		return 0;
	}
	st->seen[idx] = st->line;
	return key_apply(st, e, value, st->base) < 0 ? 0 : 1;
}

/* ---- whole-configuration checks --------------------------------------- */

static int
dline(struct ld *st, const char *name)
{
	int i = key_index(SEC_DAEMON, name);

	return i >= 0 && st->dseen[i] ? st->dseen[i] : st->daemon_line;
}

static const char *
choice_name(const struct choice *ch, int v)
{
	for (; ch->name; ch++)
		if (ch->val == v)
			return ch->name;
	return "?";
}

/* Reports min > max for a pair of keys; line is where the later was set. */
static int
check_order(struct ld *st, const char *lo_key, const char *hi_key,
	    int line_lo, int line_hi, const char *lo_s,
	    const char *hi_s, const char *where)
{
	bool hi_later = line_hi > line_lo;

	if (hi_later)
		kfail(st, line_hi, hi_key, "%s is below %s %s%s; expected %s >= %s",
		      hi_s, lo_key, lo_s, where, hi_key, lo_key);
	else
		kfail(st, line_lo, lo_key, "%s is above %s %s%s; expected %s <= %s",
		      lo_s, hi_key, hi_s, where, lo_key, hi_key);
	return -1;
}

static int
check_ranges(struct ld *st)
{
	struct cfg *c = st->c;
	char a[32], b[32];

	if (c->min_tls > c->max_tls)
		return check_order(st, "min_tls", "max_tls", dline(st, "min_tls"),
				   dline(st, "max_tls"),
				   choice_name(tls_versions, c->min_tls),
				   choice_name(tls_versions, c->max_tls), "");
	if (c->keepalive_ms != 0 && c->keepalive_timeout_ms <= c->keepalive_ms) {
		fmt_ms(a, sizeof(a), c->keepalive_ms);
		fmt_ms(b, sizeof(b), c->keepalive_timeout_ms);
		return check_order(st, "keepalive", "keepalive_timeout",
				   dline(st, "keepalive"),
				   dline(st, "keepalive_timeout"), a, b, "");
	}
	if (st->role == CFG_GATEWAY && c->redial_min_ms > c->redial_max_ms) {
		fmt_ms(a, sizeof(a), c->redial_min_ms);
		fmt_ms(b, sizeof(b), c->redial_max_ms);
		return check_order(st, "redial_min", "redial_max",
				   dline(st, "redial_min"),
				   dline(st, "redial_max"), a, b, "");
	}
	for (size_t i = 0; i < c->n_peers + c->n_templates; i++) {
		const struct cfg_peer *p = i < c->n_peers ? &c->peers[i] :
					   &c->templates[i - c->n_peers];
		int lo = p->min_tls != CFG_UNSET ? p->min_tls : c->min_tls;
		int hi = p->max_tls != CFG_UNSET ? p->max_tls : c->max_tls;
		char where[CFG_NAME_MAX + 40];

		if (lo <= hi)
			continue;
		snprintf(where, sizeof(where), " (in or inherited by [%s %s])",
			 i < c->n_peers ? "peer" : "template", p->name);
		return check_order(st, "min_tls", "max_tls",
				   p->min_tls != CFG_UNSET ? p->line : 0,
				   p->max_tls != CFG_UNSET ? p->line : 0,
				   choice_name(tls_versions, lo),
				   choice_name(tls_versions, hi), where);
	}
	return 0;
}

static int
check_ciphers(struct ld *st)
{
	struct cfg *c = st->c;

	for (size_t i = 0; i < c->n_ciphers; i++) {
		const struct cipher_info *ci = cipher_by_id(c->ciphers[i]);

		if (ci && ci->version >= c->min_tls && ci->version <= c->max_tls)
			return 0;
	}
	kfail(st, dline(st, "ciphers"), "ciphers",
	      "no listed suite works with TLS %s to %s; expected at least one suite for a version in min_tls..max_tls",
	      choice_name(tls_versions, c->min_tls),
	      choice_name(tls_versions, c->max_tls));
	return -1;
}

/* Whether any link may use TLS, and why, for messages. */
static bool
tls_possible(struct ld *st, char *why, size_t n)
{
	struct cfg *c = st->c;

	if (c->tls != TLS_MODE_OFF) {
		snprintf(why, n, "tls is '%s'", choice_name(tls_modes, c->tls));
		return true;
	}
	for (size_t i = 0; i < c->n_peers; i++) {
		if (c->peers[i].tls > TLS_MODE_OFF) {
			snprintf(why, n, "[peer %s] sets tls", c->peers[i].name);
			return true;
		}
	}
	for (size_t i = 0; i < c->n_templates; i++) {
		if (c->templates[i].tls > TLS_MODE_OFF ||
		    c->templates[i].match_issuer[0]) {
			snprintf(why, n, "[template %s] needs TLS",
				 c->templates[i].name);
			return true;
		}
	}
	for (size_t i = 0; i < c->n_services; i++) {
		if (c->services[i].tls > TLS_MODE_OFF) {
			snprintf(why, n, "[service %s] sets tls",
				 c->services[i].name);
			return true;
		}
	}
	return false;
}

static bool
client_cert_wanted(const struct cfg *c)
{
	if (c->client_cert != CERT_WANT_NONE)
		return true;
	for (size_t i = 0; i < c->n_peers; i++)
		if (c->peers[i].client_cert > CERT_WANT_NONE)
			return true;
	for (size_t i = 0; i < c->n_templates; i++)
		if (c->templates[i].client_cert > CERT_WANT_NONE ||
		    c->templates[i].match_issuer[0])
			return true;
	for (size_t i = 0; i < c->n_services; i++)
		if (c->services[i].client_cert > CERT_WANT_NONE)
			return true;
	return false;
}

static int
check_tls_files(struct ld *st)
{
	struct cfg *c = st->c;
	const char *d = role_name(st->role);
	int hl = st->daemon_line;
	char why[CFG_NAME_MAX + 32];

	if (tls_possible(st, why, sizeof(why))) {
		if (st->role == CFG_RELAY && !c->cert[0]) {
			kfail(st, hl, "cert", "missing key in [%s]; expected the relay's PEM certificate chain because %s",
			      d, why);
			return -1;
		}
		if (st->role == CFG_RELAY && !c->key[0]) {
			kfail(st, hl, "key", "missing key in [%s]; expected the relay's PEM private key because %s",
			      d, why);
			return -1;
		}
		if (st->role == CFG_GATEWAY && !c->ca[0]) {
			kfail(st, hl, "ca", "missing key in [%s]; expected a PEM CA bundle that verifies the relay's certificate because %s",
			      d, why);
			return -1;
		}
		if (st->role == CFG_RELAY && client_cert_wanted(c) &&
		    !c->ca[0]) {
			kfail(st, hl, "ca", "missing key in [%s]; expected a PEM CA bundle that verifies gateway certificates because %s and client certificates are wanted (client_cert)",
			      d, why);
			return -1;
		}
	}
	if (c->cert[0] && !c->key[0]) {
		kfail(st, hl, "key", "missing key in [%s]; expected the private key for cert (line %d)",
		      d, dline(st, "cert"));
		return -1;
	}
	if (c->key[0] && !c->cert[0]) {
		kfail(st, hl, "cert", "missing key in [%s]; expected the certificate for key (line %d)",
		      d, dline(st, "key"));
		return -1;
	}
	return 0;
}

/*
 * A service is forward or reverse: listen (the gateway's clients, or the
 * relay's reverse listener, which also names its gateway) or backend
 * (the relay's forward target, or the gateway's reverse target), never
 * both.  The listener's keys need a listener.
 */
static int
check_service_kind(struct ld *st, const struct cfg_service *s)
{
	const struct key *lk = &keys[key_index(SEC_SERVICE, "listen")];
	const struct key *bk = &keys[key_index(SEC_SERVICE, "backend")];
	int relay = st->role == CFG_RELAY;

	if (s->listen[0] == '\0' && s->backend[0] == '\0') {
		char le[256];

		snprintf(le, sizeof(le), "%s", expect_of(st, lk));
		kfail(st, s->line, relay ? "backend" : "listen",
		      "missing key in [service %s]; expected %s (%s) or %s (%s)",
		      s->name, relay ? "backend" : "listen",
		      relay ? expect_of(st, bk) : le,
		      relay ? "listen, for a reverse service" :
		      "backend, for a reverse service",
		      relay ? le : expect_of(st, bk));
		return -1;
	}
	if (s->listen[0] != '\0' && s->backend[0] != '\0') {
		kfail(st, s->line, "backend", "[service %s] sets both listen and backend; expected one: listen for a service whose clients connect to this %s, backend for one whose streams the %s opens",
		      s->name, relay ? "relay" : "gateway",
		      relay ? "gateway" : "relay");
		return -1;
	}
	if (relay && s->listen[0] != '\0' && s->gateway[0] == '\0') {
		kfail(st, s->line, "gateway", "missing key in [service %s], which listens (a reverse service); expected the node name of the gateway that carries its streams",
		      s->name);
		return -1;
	}
	if (relay && s->listen[0] == '\0' && s->gateway[0] != '\0') {
		kfail(st, s->line, "gateway", "[service %s] names a gateway but has no listen; expected gateway only beside listen (a reverse service)",
		      s->name);
		return -1;
	}
	if (s->listen[0] == '\0' && (s->allow.n > 0 || s->deny.n > 0)) {
		kfail(st, s->line, s->allow.n > 0 ? "allow" : "deny", "[service %s] has no listener; expected allow and deny only beside listen",
		      s->name);
		return -1;
	}
	if (relay && s->listen[0] != '\0' &&
	    strcmp(s->listen, st->c->listen) == 0) {
		kfail(st, s->line, "listen", "[service %s] listens on %s, the relay's link address; expected a different address",
		      s->name, s->listen);
		return -1;
	}
	return 0;
}

static int
check_services(struct ld *st)
{
	struct cfg *c = st->c;

	if (st->role == CFG_GATEWAY && c->n_services == 0) {
		fail(st, 0, "no [service NAME] section; expected at least one service in a gateway configuration");
		return -1;
	}
	for (size_t i = 0; i < c->n_services; i++) {
		const struct cfg_service *s = &c->services[i];

		if (check_service_kind(st, s) < 0)
			return -1;
		for (size_t j = 0; j < i && s->listen[0]; j++) {
			if (strcmp(c->services[j].listen, s->listen) == 0) {
				kfail(st, s->line, "listen", "[service %s] listens on %s like [service %s] (line %d); expected a different address",
				      s->name, s->listen, c->services[j].name,
				      c->services[j].line);
				return -1;
			}
		}
	}
	return 0;
}

static int
check_partners(struct ld *st)
{
	struct cfg *c = st->c;
	bool sticky = c->tls_sticky == 1;
	const char *sticky_where = "[relay] or [gateway]";
	char where[CFG_NAME_MAX + 16];

	for (size_t i = 0; i < c->n_peers + c->n_templates; i++) {
		struct cfg_peer *p = i < c->n_peers ? &c->peers[i] :
				     &c->templates[i - c->n_peers];
		const char *kind = i < c->n_peers ? "peer" : "template";
		char list[CFG_LIST_MAX], *tok, *save = NULL;

		if (p->tls_sticky == 1 && !sticky) {
			sticky = true;
			snprintf(where, sizeof(where), "[%s %s]", kind, p->name);
			sticky_where = where;
		}
		snprintf(list, sizeof(list), "%s", p->services);
		for (tok = strtok_r(list, ",", &save); tok;
		     tok = strtok_r(NULL, ",", &save)) {
			if (cfg_service_find(c, tok))
				continue;
			kfail(st, p->line, "services", "[%s %s] names service '%s', which has no [service %s] section; expected defined services",
			      kind, p->name, tok, tok);
			return -1;
		}
		if (i < c->n_peers)
			continue;
		if (p->match_issuer[0] &&
		    ((p->tls != CFG_UNSET && p->tls != TLS_MODE_REQUIRE &&
		      p->tls != CFG_TLS_VERIFY) ||
		     (p->client_cert != CFG_UNSET &&
		      p->client_cert != CERT_WANT_REQUIRE))) {
			kfail(st, p->line, "match_issuer", "[template %s] checks the certificate issuer but lets a peer in without TLS or without a certificate; expected tls = require and client_cert = require, or neither set",
			      p->name);
			return -1;
		}
		p->any = (!p->match_name[0] || cfg_list_has(p->match_name, "*")) &&
			 !p->match_issuer[0] && p->match_source.n == 0;
	}
	for (size_t i = 0; st->role == CFG_GATEWAY && i <= c->n_peers; i++) {
		const struct cfg_peer *p = i < c->n_peers ? &c->peers[i] : NULL;
		int first = p && p->tls_first != CFG_UNSET ? p->tls_first :
			    c->tls_first;
		int tls = p && p->tls != CFG_UNSET ? p->tls : c->tls;

		if (first != 1 || tls != TLS_MODE_OFF)
			continue;
		kfail(st, p ? p->line : st->daemon_line, "tls_first", "%s%s%s dials TLS first but has tls = off; expected tls = allow, prefer or require, or tls_first = no",
		      p ? "[peer " : "[gateway]", p ? p->name : "", p ? "]" : "");
		return -1;
	}
	if (sticky && !c->state_file[0]) {
		kfail(st, st->daemon_line, "state_file", "missing key in [%s]; expected a file to remember TLS peers in, because %s sets tls_sticky = yes",
		      role_name(st->role), sticky_where);
		return -1;
	}
	return 0;
}

/* Each relay's certificate name: server_name when it is set, else the
 * host part of the relay's own address. */
static void
relay_names(struct ld *st)
{
	struct cfg *c = st->c;
	bool set = st->dseen[key_index(SEC_DAEMON, "server_name")] != 0;

	if (st->role != CFG_GATEWAY)
		return;
	for (size_t i = 0; i < c->n_relays; i++) {
		const char *r = c->relays[i].addr, *end;

		if (set || i == 0) {
			snprintf(c->relays[i].server_name,
				 sizeof(c->relays[i].server_name), "%s",
				 c->server_name);
			continue;
		}
		if (r[0] == '[') {
			r++;
			end = strchr(r, ']');
		} else {
			end = strrchr(r, ':');
		}
		snprintf(c->relays[i].server_name,
			 sizeof(c->relays[i].server_name), "%.*s",
			 (int)(end ? end - r : (long)strlen(r)), r);
	}
}

/*
 * tls = verify on the relay: client_cert = require wherever verify is
 * set (the daemon section, a [peer], [template] or [service]); a
 * client_cert set to anything else beside it is an error.  This is the
 * one place where verify gains its certificate demand.
 */
static int
verify_cert(struct ld *st, int tls, int *client_cert, bool cert_set,
	    int line, const char *where)
{
	if (tls != CFG_TLS_VERIFY || st->role != CFG_RELAY)
		return 0;
	if (cert_set && *client_cert != CERT_WANT_REQUIRE) {
		kfail(st, line, "client_cert", "'%s' in %s, which sets tls = verify; expected client_cert = require or unset (verify demands a verified certificate)",
		      choice_name(cert_wants, *client_cert), where);
		return -1;
	}
	*client_cert = CERT_WANT_REQUIRE;
	return 0;
}

static int
check_verify(struct ld *st)
{
	struct cfg *c = st->c;
	char where[CFG_NAME_MAX + 16];
	int ci = key_index(SEC_DAEMON, "client_cert");

	if (verify_cert(st, c->tls, &c->client_cert, st->dseen[ci] != 0,
			st->dseen[ci], "[relay]") < 0)
		return -1;
	for (size_t i = 0; i < c->n_peers + c->n_templates; i++) {
		struct cfg_peer *p = i < c->n_peers ? &c->peers[i] :
				     &c->templates[i - c->n_peers];

		snprintf(where, sizeof(where), "[%s %s]",
			 i < c->n_peers ? "peer" : "template", p->name);
		if (verify_cert(st, p->tls, &p->client_cert,
				p->client_cert != CFG_UNSET, p->line, where) < 0)
			return -1;
	}
	for (size_t i = 0; i < c->n_services; i++) {
		struct cfg_service *s = &c->services[i];

		snprintf(where, sizeof(where), "[service %s]", s->name);
		if (verify_cert(st, s->tls, &s->client_cert,
				s->client_cert != CFG_UNSET, s->line, where) < 0)
			return -1;
	}
	return 0;
}

static int
check_hooks(struct ld *st)
{
	struct cfg *c = st->c;
	char a[32], b[32];

	if (!c->hook_command_veto)
		return 0;
	if (!c->hook_command[0]) {
		kfail(st, dline(st, "hook_command_veto"), "hook_command_veto",
		      "yes needs a command to decide; expected hook_command to be set, or hook_command_veto = no");
		return -1;
	}
	if (!cfg_list_has(c->hook_command_events, "all") &&
	    !cfg_list_has(c->hook_command_events, "handshake_pending")) {
		kfail(st, dline(st, "hook_command_veto"), "hook_command_veto",
		      "yes decides handshake_pending, which hook_command_events '%.200s' leaves out; expected handshake_pending in hook_command_events",
		      c->hook_command_events);
		return -1;
	}
	if (c->hook_command_timeout_ms >= c->handshake_timeout_ms) {
		fmt_ms(a, sizeof(a), c->hook_command_timeout_ms);
		fmt_ms(b, sizeof(b), c->handshake_timeout_ms);
		kfail(st, dline(st, "hook_command_timeout"), "hook_command_timeout",
		      "%s is not below handshake_timeout %s, inside which a link waits for the command; expected hook_command_timeout < handshake_timeout",
		      a, b);
		return -1;
	}
	return 0;
}

static int
finish(struct ld *st)
{
	char buf[CFG_ADDR_MAX];

	for (size_t i = 0; i < NKEYS; i++) {
		const struct key *e = &keys[i];

		if (e->sec != SEC_DAEMON || !(e->roles & st->role) ||
		    !(e->flags & K_REQUIRED) || st->dseen[i])
			continue;
		kfail(st, st->daemon_line, e->name, "missing key in [%s]; expected %s",
		      role_name(st->role), expect_of(st, e));
		return -1;
	}
	st->line = st->daemon_line;
	for (size_t i = 0; i < NKEYS; i++) {
		const struct key *e = &keys[i];

		if (e->sec != SEC_DAEMON || !(e->roles & st->role) ||
		    !e->dflt_fn || st->dseen[i])
			continue;
		e->dflt_fn(st, buf, sizeof(buf));
		if (key_apply(st, e, buf, st->c) < 0)
			return -1;
	}
	relay_names(st);
	if (check_verify(st) < 0 ||
	    check_services(st) < 0 || check_partners(st) < 0 ||
	    check_ranges(st) < 0 ||
	    check_ciphers(st) < 0 || check_tls_files(st) < 0 ||
	    check_hooks(st) < 0)
		return -1;
	st->c->ciphers_auto = st->dseen[key_index(SEC_DAEMON, "ciphers")] == 0;
	return 0;
}

/* ---- entry points ----------------------------------------------------- */

static void
set_dir(struct ld *st, const char *name)
{
	char d[CFG_PATH_MAX];
	const char *slash = strrchr(name, '/');
	char *real;

	if (!slash)
		snprintf(d, sizeof(d), ".");
	else if (slash == name)
		snprintf(d, sizeof(d), "/");
	else
		snprintf(d, sizeof(d), "%.*s", (int)(slash - name), name);
	real = realpath(d, NULL);
	snprintf(st->dir, sizeof(st->dir), "%s", real ? real : d);
	free(real);
}

static struct cfg *
load(struct ld *st)
{
	struct cfg *c;
	int rc;

	if (st->role != CFG_RELAY && st->role != CFG_GATEWAY) {
		fail(st, 0, "unknown role %d; expected relay or gateway",
		     st->role);
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		fail(st, 0, "out of memory");
		return NULL;
	}
	st->c = c;
	c->role = st->role;
	if (strlen(st->name) >= sizeof(c->file)) {
		fail(st, 0, "file name is too long; expected at most %d characters",
		     CFG_PATH_MAX - 1);
		goto err;
	}
	snprintf(c->file, sizeof(c->file), "%s", st->name);
	set_dir(st, st->name);
	st->seen = st->sseen;
	if (section_defaults(st, SEC_DAEMON, c) < 0)
		goto err;
	rc = ini_parse_stream(reader, st, on_pair, st);
	if (!st->failed && rc != 0)
		fail(st, rc > 0 ? rc : 0, rc > 0 ?
		     "line is not valid; expected key = value" :
		     "cannot parse: out of memory");
	if (st->failed || finish(st) < 0)
		goto err;
	return c;
err:
	cfg_free(c);
	return NULL;
}

static void
ld_init(struct ld *st, const char *name, int role, char *err,
	size_t errlen, char *fallback, size_t fblen)
{
	memset(st, 0, sizeof(*st));
	st->name = name;
	st->role = role;
	st->err = err && errlen ? err : fallback;
	st->errlen = err && errlen ? errlen : fblen;
	st->err[0] = '\0';
}

struct cfg *
cfg_load(const char *path, int role, char *err, size_t errlen)
{
	char fallback[16];
	struct ld *st;
	struct cfg *c = NULL;
	FILE *fp;

	if (err && errlen)
		err[0] = '\0';
	fp = fopen(path, "r");
	if (!fp) {
		if (err && errlen)
			snprintf(err, errlen, "%s: cannot open: %s; expected a readable configuration file",
				 path, strerror(errno));
		return NULL;
	}
	st = malloc(sizeof(*st));
	if (!st) {
		if (err && errlen)
			snprintf(err, errlen, "%s: out of memory", path);
		goto out;
	}
	ld_init(st, path, role, err, errlen, fallback, sizeof(fallback));
	st->fp = fp;
	c = load(st);
	free(st);
out:
	fclose(fp);
	return c;
}

struct cfg *
cfg_load_string(const char *text, const char *name, int role,
		char *err, size_t errlen)
{
	char fallback[16];
	struct ld *st;
	struct cfg *c;

	if (err && errlen)
		err[0] = '\0';
	st = malloc(sizeof(*st));
	if (!st) {
		if (err && errlen)
			snprintf(err, errlen, "%s: out of memory", name);
		return NULL;
	}
	ld_init(st, name, role, err, errlen, fallback, sizeof(fallback));
	st->s = text;
	c = load(st);
	free(st);
	return c;
}

void
cfg_free(struct cfg *c)
{
	if (!c)
		return;
	free(c->services);
	free(c->peers);
	free(c->templates);
	free(c);
}

int
cfg_service_reverse(const struct cfg *c, const struct cfg_service *s)
{
	return c->role == CFG_RELAY ? s->listen[0] != '\0'
				    : s->backend[0] != '\0';
}

size_t
cfg_reverse_count(const struct cfg *c)
{
	size_t n = 0;

	for (size_t i = 0; i < c->n_services; i++)
		n += cfg_service_reverse(c, &c->services[i]) != 0;
	return n;
}

const struct cfg_service *
cfg_service_find(const struct cfg *c,
		 const char *name)
{
	if (!c || !name)
		return NULL;
	for (size_t i = 0; i < c->n_services; i++)
		if (strcmp(c->services[i].name, name) == 0)
			return &c->services[i];
	return NULL;
}

const struct cfg_peer *
cfg_peer_find(const struct cfg *c, const char *name)
{
	if (!c || !name)
		return NULL;
	for (size_t i = 0; i < c->n_peers; i++)
		if (strcmp(c->peers[i].name, name) == 0)
			return &c->peers[i];
	return NULL;
}

const struct cfg_peer *
cfg_template_find(const struct cfg *c,
		  const char *name)
{
	return c && name ? template_find(c, name) : NULL;
}

/* The address of sa as a family-4 or family-6 network of full length;
 * IPv4-mapped IPv6 addresses become IPv4.  Returns -1 for other
 * families. */
static int
sa_cidr(const struct sockaddr *sa, struct cfg_cidr *n)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
					    0xff, 0xff };

	memset(n, 0, sizeof(*n));
	if (sa == NULL)
		return -1;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;

		memcpy(n->addr, &in->sin_addr, 4);
		n->family = 4;
		n->bits = 32;
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;

		if (memcmp(in6->sin6_addr.s6_addr, mapped, 12) == 0) {
			memcpy(n->addr, in6->sin6_addr.s6_addr + 12, 4);
			n->family = 4;
			n->bits = 32;
		} else {
			memcpy(n->addr, in6->sin6_addr.s6_addr, 16);
			n->family = 6;
			n->bits = 128;
		}
		return 0;
	}
	return -1;
}

static bool
cidr_contains(const struct cfg_cidr *net, const struct cfg_cidr *a)
{
	unsigned full = net->bits / 8, rest = net->bits % 8;

	if (net->family != a->family)
		return false;
	if (memcmp(net->addr, a->addr, full) != 0)
		return false;
	return rest == 0 ||
	       ((net->addr[full] ^ a->addr[full]) & (0xff00u >> rest)) == 0;
}

int
cfg_acl_match(const struct cfg_acl *acl, const struct sockaddr *sa)
{
	struct cfg_cidr a;

	if (acl == NULL || sa_cidr(sa, &a) < 0)
		return 0;
	for (unsigned i = 0; i < acl->n; i++)
		if (cidr_contains(&acl->net[i], &a))
			return 1;
	return 0;
}

enum cfg_acl_verdict
cfg_acl_check(const struct cfg_acl *allow,
	      const struct cfg_acl *deny,
	      const struct sockaddr *sa)
{
	struct cfg_cidr a;

	if (sa_cidr(sa, &a) < 0)
		return CFG_ACL_NOT_ALLOWED;
	if (deny != NULL && cfg_acl_match(deny, sa))
		return CFG_ACL_DENIED;
	if (allow != NULL && allow->n > 0 && !cfg_acl_match(allow, sa))
		return CFG_ACL_NOT_ALLOWED;
	return CFG_ACL_PASS;
}

void
cfg_cidr_format(const struct cfg_cidr *n, char *buf, size_t len)
{
	char a[INET6_ADDRSTRLEN];

	if (inet_ntop(n->family == 4 ? AF_INET : AF_INET6, n->addr, a,
		      sizeof(a)) == NULL)
		snprintf(a, sizeof(a), "?");
	snprintf(buf, len, "%s/%u", a, n->bits);
}

int
cfg_list_each(const char *list, int (*fn)(const char *item, void *arg),
	      void *arg)
{
	char item[ITEM_MAX + 1];
	const char *p = list;

	while (p != NULL && *p) {
		const char *comma = strchr(p, ',');
		size_t n = comma ? (size_t)(comma - p) : strlen(p);
		int rc;

		snprintf(item, sizeof(item), "%.*s", (int)n, p);
		rc = fn(item, arg);
		if (rc != 0)
			return rc;
		p = comma ? comma + 1 : NULL;
	}
	return 0;
}

static int
item_equal(const char *item, void *arg)
{
	return strcmp(item, arg) == 0;
}

int
cfg_list_has(const char *list, const char *name)
{
	return cfg_list_each(list, item_equal, (void *)name);
}

int
cfg_tls_wire(int mode)
{
	return mode == CFG_TLS_VERIFY ? TLS_MODE_REQUIRE : mode;
}

const char *
cfg_tls_name(int mode)
{
	return choice_name(tls_modes, mode);
}

/* The sections of the reference, in the order both formats print them. */
static const struct { int sec; const char *title; } ref_secs[] = {
	{ SEC_DAEMON, "Daemon section: [relay] or [gateway]" },
	{ SEC_SERVICE, "[service NAME]" },
	{ SEC_PEER, "[peer NAME] and [template NAME]" },
	{ SEC_TEMPLATE, "[template NAME] only" },
};
#define NREF_SECS (sizeof(ref_secs) / sizeof(ref_secs[0]))

static int
ref_in_section(const struct key *e, int sec)
{
	return (e->sec & sec) &&
	       (sec != SEC_TEMPLATE || e->sec == SEC_TEMPLATE);
}

static const char *
ref_roles(const struct key *e)
{
	return e->roles == ROLE_BOTH ? "both" : role_name(e->roles);
}

/* The default as the reference states it; *code is set when the text is
 * a literal value. */
static const char *
ref_default(const struct key *e, int *code)
{
	*code = 0;
	if (e->dflt_doc)
		return e->dflt_doc;
	if (e->flags & K_REQUIRED)
		return "required";
	if (!e->dflt)
		return "unset (inherits)";
	if (!*e->dflt)
		return "none";
	*code = 1;
	return e->dflt;
}

void
cfg_write_reference(FILE *out)
{
	for (size_t s = 0; s < NREF_SECS; s++) {
		fprintf(out, "%s### %s\n\n| key | roles | default | meaning |\n|---|---|---|---|\n",
			s ? "\n" : "", ref_secs[s].title);
		for (size_t i = 0; i < NKEYS; i++) {
			const struct key *e = &keys[i];
			int code;
			const char *d = ref_default(e, &code);

			if (!ref_in_section(e, ref_secs[s].sec))
				continue;
			fprintf(out, "| `%s` | %s | %s%s%s | %s |\n", e->name,
				ref_roles(e), code ? "`" : "", d, code ? "`" : "",
				e->help);
		}
	}
}

/* Writes text as roff input lines of at most about 72 bytes, starting on
 * a fresh line: `code` spans (or all of it, with bold) in bold, break
 * points after ':' in them, backslashes escaped, and a line's leading
 * control character neutralised. */
static void
man_text(FILE *out, const char *text, int bold)
{
	size_t col = 0;
	int code = 0;

	if (bold)
		fputs("\\fB", out);
	for (const char *p = text; *p; p++) {
		if (*p == ' ' && col >= 64 && strchr(p + 1, ' ') != NULL) {
			fputc('\n', out);
			col = 0;
			continue;
		}
		if (col == 0 && (*p == '.' || *p == '\''))
			fputs("\\&", out);
		if (*p == '`') {
			code = !code;
			fputs(code || bold ? "\\fB" : "\\fR", out);
		} else if (*p == '\\') {
			fputs("\\e", out);
		} else if (*p == ':' && (code || bold)) {
			fputs(":\\:", out);
		} else {
			fputc(*p, out);
		}
		col++;
	}
	if (bold || code)
		fputs("\\fR", out);
	fputc('\n', out);
}

void
cfg_write_manpage(FILE *out, const char *version, const char *date)
{
	fprintf(out,
		".\\\" Generated by tpx-mkman from the key table in config/config.c.\n"
		".TH TLSPLEX.INI 5 %s \"tlsplex %s\"\n"
		".SH NAME\n"
		"tlsplex.ini \\- configuration file of tlsplex-relay and tlsplex-gateway\n"
		".SH SYNOPSIS\n"
		"/etc/tlsplex/relay.ini, /etc/tlsplex/gateway.ini\n"
		".SH DESCRIPTION\n"
		"Both daemons read one INI file, named with their\n"
		".B \\-c\n"
		"option.\n"
		"A section starts with a header on its own line:\n"
		".BR [relay] \", \" [gateway] ,\n"
		".B \"[service NAME]\"\n"
		"or\n"
		".BR \"[peer NAME]\" ,\n"
		"and inside a section each line is\n"
		".IR key \" = \" value .\n"
		"A line whose first non-blank character is\n"
		".B ;\n"
		"or\n"
		".B #\n"
		"is a comment; an inline comment starts with\n"
		".B ;\n"
		"preceded by a blank.\n"
		"Each key may appear once per section, and keys are lower case.\n"
		"Relative paths are taken relative to the directory of the\n"
		"configuration file.\n"
		".PP\n"
		"Durations are a whole number followed by\n"
		".BR ms \", \" s \", \" m\n"
		"or\n"
		".BR h ;\n"
		"a bare number is seconds.\n"
		"Sizes are a number of bytes, optionally followed by\n"
		".B k\n"
		"or\n"
		".BR m .\n"
		"Addresses are\n"
		".IR host : port ,\n"
		"an IPv6 address in brackets.\n"
		"The value syntax, the TLS policies and the partner rules are\n"
		"described at length in\n"
		".IR /usr/share/doc/tlsplex/CONFIG.md .\n"
		".PP\n"
		"The\n"
		".I roles\n"
		"of a key say which daemon reads it:\n"
		".BR relay \", \" gateway\n"
		"or\n"
		".BR both .\n"
		"A key given in a\n"
		".B [peer]\n"
		"or\n"
		".B [template]\n"
		"section overrides the daemon section's value for that partner;\n"
		"left unset there, it inherits it.\n",
		date, version);
	for (size_t s = 0; s < NREF_SECS; s++) {
		fprintf(out, ".SS \"%s\"\n", ref_secs[s].title);
		for (size_t i = 0; i < NKEYS; i++) {
			const struct key *e = &keys[i];
			int code;
			const char *d = ref_default(e, &code);

			if (!ref_in_section(e, ref_secs[s].sec))
				continue;
			fprintf(out, ".TP\n.BR %s \" (%s)\"\n", e->name,
				ref_roles(e));
			man_text(out, e->help, 0);
			fputs(".IP\n.ad l\nDefault:\n", out);
			man_text(out, d, code);
			fputs(".ad\n", out);
		}
	}
	fputs(".SH FILES\n"
	      ".TP\n.I /etc/tlsplex/relay.ini\nThe relay's configuration.\n"
	      ".TP\n.I /etc/tlsplex/gateway.ini\nThe gateway's configuration.\n"
	      ".TP\n.I /usr/share/doc/tlsplex/examples/\n"
	      "A commented relay and gateway pair.\n"
	      ".SH SEE ALSO\n"
	      ".BR tlsplex-gateway (8),\n"
	      ".BR tlsplex-relay (8)\n", out);
}
