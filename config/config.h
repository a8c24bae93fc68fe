/*
 * Configuration: INI files read with inih, every key defined in one
 * table (config.c) with its default, parser, validation and help text.
 */
#ifndef TLSPLEX_CONFIG_H
#define TLSPLEX_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CFG_NAME_MAX 64
#define CFG_ADDR_MAX 300
#define CFG_PATH_MAX 1024
#define CFG_CIPHERS_MAX 32
#define CFG_ACL_MAX 64      /* networks in one allow, deny or match_source */
#define CFG_LIST_MAX 512    /* a comma-separated list of names or patterns */
#define CFG_RELAYS_MAX 8    /* addresses in the gateway's relay list */
#define CFG_GW_LINKS_MAX 16 /* live links a gateway keeps at once */

/* tls = verify: a configuration value only.  On the wire it is require
 * (cfg_tls_wire); on the relay it also demands a verified client
 * certificate (see docs/CONFIG.md, "tls = verify"). */
#define CFG_TLS_VERIFY 4

struct sockaddr;

enum cfg_role {
	CFG_RELAY = 1,
	CFG_GATEWAY = 2,
};

enum cfg_hook_syslog {
	CFG_HOOK_SYSLOG_OFF,
	CFG_HOOK_SYSLOG_JSON,
	CFG_HOOK_SYSLOG_RFC5424,
};

enum cfg_hook_on_timeout {
	CFG_HOOK_TIMEOUT_PROCEED,
	CFG_HOOK_TIMEOUT_VETO,
};

/* Value meaning "not set here; inherit from the daemon section". */
#define CFG_UNSET (-1)

/* An IPv4 or IPv6 network: family 4 or 6, prefix length bits. */
struct cfg_cidr {
	uint8_t family;
	uint8_t bits;
	uint8_t addr[16];
};

/* A list of networks, as set by allow, deny and match_source. */
struct cfg_acl {
	uint8_t n;
	struct cfg_cidr net[CFG_ACL_MAX];
};

/* A [service NAME] section. */
struct cfg_service {
	char name[CFG_NAME_MAX + 1];
	char listen[CFG_ADDR_MAX];  /* host:port clients connect to: the
				       gateway's forward service, or the
				       relay's reverse one; "" = none */
	char backend[CFG_ADDR_MAX]; /* host:port streams connect to: the
				       relay's forward service, or the
				       gateway's reverse one; "" = none */
	char gateway[CFG_NAME_MAX + 1]; /* relay, reverse: the node name of
				       the gateway that carries it */
	int tls;                    /* enum tls_mode or CFG_UNSET; require =
				       never carried on a plaintext link */
	struct cfg_acl allow, deny; /* with listen: clients admitted, beside
				       the daemon section's lists */
	uint32_t max_clients;       /* with listen: client connections at once */
	int client_cert;            /* relay: enum cert_want or CFG_UNSET;
				       require = streams only on links whose
				       peer presented a verified certificate */
	int line;                   /* where the section starts */
};

/* A [peer NAME] section: a known partner and its overrides; or a
 * [template NAME] section, which admits unknown partners that match it. */
struct cfg_peer {
	char name[CFG_NAME_MAX + 1];
	int tls;          /* enum tls_mode or CFG_UNSET */
	int min_tls;      /* TLSV_1_x or CFG_UNSET */
	int max_tls;
	int client_cert;  /* enum cert_want or CFG_UNSET */
	char identity[CFG_LIST_MAX]; /* patterns the certificate must match;
					"" = the node name itself */
	char services[CFG_LIST_MAX]; /* relay: services it may open; "" = all */
	uint32_t max_streams;        /* relay: 0 = the daemon's */
	int tls_sticky;              /* 0, 1 or CFG_UNSET */
	int tls_first;               /* gateway: 0, 1 or CFG_UNSET */
	/* [template NAME] only; every condition that is set must hold. */
	char match_name[CFG_LIST_MAX];   /* node name patterns */
	char match_issuer[CFG_LIST_MAX]; /* certificate issuer patterns */
	struct cfg_acl match_source;     /* source networks */
	int any;          /* a template that admits every peer */
	int line;
};

/* One relay the gateway may dial, and the name its certificate must
 * carry: server_name when set, else the host part of addr. */
struct cfg_relay {
	char addr[CFG_ADDR_MAX];
	char server_name[CFG_ADDR_MAX];
};

enum cfg_relay_order {
	CFG_RELAY_ORDERED,  /* the first relay of the list that works */
	CFG_RELAY_SPREAD,   /* each new link to the next relay in turn */
};

struct cfg {
	int role;                        /* enum cfg_role */
	char file[CFG_PATH_MAX];         /* where it was read from */
	char node_name[CFG_NAME_MAX + 1];
	char listen[CFG_ADDR_MAX];       /* relay: link listener */
	char relay[CFG_LIST_MAX];        /* gateway: the relay list as
					    written, canonical, ", "-joined */
	struct cfg_relay relays[CFG_RELAYS_MAX]; /* gateway: the list */
	size_t n_relays;
	int relay_order;                 /* enum cfg_relay_order */
	uint32_t relay_failback_ms;      /* 0 = off: stay where the link is */
	uint32_t relay_links;            /* live links kept at once */
	char server_name[CFG_ADDR_MAX];  /* gateway: name the relay's
					    certificate must carry (the
					    first relay's, when unset) */
	uint32_t drain_timeout_ms;       /* SIGTERM: how long streams may
					    finish before they are reset */
	int tls;                         /* enum tls_mode or CFG_TLS_VERIFY */
	int tls_first;                   /* gateway: dial TLS first (1);
					    relay: accept such links (1) */
	int min_tls, max_tls;            /* TLSV_1_2 or TLSV_1_3 */
	int client_cert;                 /* enum cert_want (relay); require
					    when tls = verify */
	uint8_t n_ciphers;
	uint16_t ciphers[CFG_CIPHERS_MAX]; /* IANA ids, preference order */
	int ciphers_auto;                /* `ciphers` not set: the daemon may
					    order the defaults for this CPU */
	char cert[CFG_PATH_MAX];         /* PEM certificate chain; "" = none */
	char key[CFG_PATH_MAX];          /* PEM private key */
	char ca[CFG_PATH_MAX];           /* PEM CA bundle, or a directory of
					    PEM CA files */
	char crl[CFG_PATH_MAX];          /* PEM CRL; "" = no revocation check */
	uint8_t n_groups;
	uint16_t groups[10];             /* key-exchange groups, IANA ids,
					    preference order (wolfSSL takes
					    at most 10) */
	enum cfg_key_perms {
		CFG_KEY_PERMS_WARN,      /* group/other access: log a warning */
		CFG_KEY_PERMS_ERROR,     /* ... or refuse the key */
	} key_perms;
	uint32_t negotiation_timeout_ms;
	uint32_t handshake_timeout_ms;
	uint32_t keepalive_ms;           /* 0 = no keepalive */
	uint32_t keepalive_timeout_ms;   /* silence that declares a link dead */
	uint32_t hold_timeout_ms;        /* gateway: hold clients while down */
	uint32_t hold_max;               /* gateway: most clients held */
	uint32_t max_streams;
	uint32_t window;                 /* per-stream receive window, bytes */
	uint32_t max_frame;              /* largest DATA frame payload */
	enum cfg_link_budget {
		CFG_LINK_BUDGET_AUTO,    /* announce NEG_FLOW_LINK_ACK */
		CFG_LINK_BUDGET_OFF,     /* do not: no link-level bound */
	} link_budget;
	uint32_t redial_min_ms, redial_max_ms; /* gateway backoff */
	char hook_file[CFG_PATH_MAX];    /* JSON Lines event sink; "" = none */
	char hook_socket[CFG_PATH_MAX];  /* Unix datagram sink; "" = none */
	char hook_socket_events[CFG_LIST_MAX]; /* "all" or event names */
	char hook_command[CFG_PATH_MAX]; /* command sink; "" = none */
	char hook_command_events[CFG_LIST_MAX];
	uint32_t hook_command_timeout_ms;
	uint32_t hook_command_max;       /* commands running at once */
	int hook_command_veto;           /* handshake_pending waits for it */
	int hook_command_on_timeout;     /* enum cfg_hook_on_timeout */
	int hook_syslog;                 /* enum cfg_hook_syslog */
	int hook_syslog_facility;        /* syslog facility code (3 daemon) */
	char hook_syslog_ident[CFG_NAME_MAX + 1]; /* APP-NAME, <= 48 */
	char hook_syslog_socket[CFG_PATH_MAX];    /* /dev/log */
	int log_level;                   /* 0 error .. 3 debug */
	struct cfg_acl allow, deny;      /* relay: link sources; gateway:
					    clients of every service */
	char metrics_listen[CFG_ADDR_MAX]; /* Prometheus endpoint; "" = off */
	struct cfg_acl metrics_allow;    /* who may scrape it */
	uint32_t summary_interval_ms;    /* 0 = no summaries */
	uint32_t max_links;              /* relay: links at once */
	uint32_t max_links_per_source;   /* relay: links from one address */
	int tls_sticky;                  /* remember TLS peers, refuse
					    plaintext from them later */
	char state_file[CFG_PATH_MAX];   /* where sticky peers are kept */
	struct cfg_service *services;
	size_t n_services;
	struct cfg_peer *peers;
	size_t n_peers;
	struct cfg_peer *templates;      /* relay: tried in file order */
	size_t n_templates;
};

/*
 * Loads and validates a configuration for role.  On failure returns NULL
 * and writes into err one message of the form
 * "FILE:LINE: key 'KEY': what was wrong; what is expected".
 */
struct cfg *cfg_load(const char *path, int role, char *err, size_t errlen);
/* The same, from text in memory; name stands in for the file name. */
struct cfg *cfg_load_string(const char *text, const char *name, int role,
			    char *err, size_t errlen);
/* NULL is a no-op. */
void cfg_free(struct cfg *c);

const struct cfg_service *cfg_service_find(const struct cfg *c,
					   const char *name);
/* Nonzero when s is a reverse service: on the relay one that listens
 * (its streams are opened toward a gateway), on the gateway one with a
 * backend (the relay opens its streams). */
int cfg_service_reverse(const struct cfg *c, const struct cfg_service *s);
/* The number of reverse services in c. */
size_t cfg_reverse_count(const struct cfg *c);
const struct cfg_peer *cfg_peer_find(const struct cfg *c, const char *name);
const struct cfg_peer *cfg_template_find(const struct cfg *c,
					 const char *name);

enum cfg_acl_verdict {
	CFG_ACL_PASS = 0,
	CFG_ACL_DENIED,      /* a deny entry matches */
	CFG_ACL_NOT_ALLOWED, /* the allow list is set and nothing in it matches */
};
/* Judges address sa against deny, then allow (an empty allow list admits
 * everyone).  Either list may be NULL.  IPv4-mapped IPv6 addresses are
 * judged as IPv4.  Unknown address families are not allowed. */
enum cfg_acl_verdict cfg_acl_check(const struct cfg_acl *allow,
				   const struct cfg_acl *deny,
				   const struct sockaddr *sa);
/* Nonzero when acl has an entry matching sa. */
int cfg_acl_match(const struct cfg_acl *acl, const struct sockaddr *sa);
/* Writes network n as text, such as "10.0.0.0/8" or "::1/128". */
void cfg_cidr_format(const struct cfg_cidr *n, char *buf, size_t len);
/* Nonzero when name is one of the comma-separated entries of list. */
int cfg_list_has(const char *list, const char *name);
/* Calls fn for each comma-separated entry of list until fn returns
 * nonzero; returns that value, or 0. */
int cfg_list_each(const char *list, int (*fn)(const char *item, void *arg),
		  void *arg);

/* The tls mode that goes on the wire for configured mode: verify is
 * require there; every other mode is itself. */
int cfg_tls_wire(int mode);
/* The name of a configured tls mode ("off" .. "verify"). */
const char *cfg_tls_name(int mode);

/* Writes the key reference (section, key, default, help) as Markdown. */
void cfg_write_reference(FILE *out);
/* Writes the manual page tlsplex.ini(5) in man(7) markup: the file format
 * in brief and every key of the reference, for tlsplex version, dated
 * date (YYYY-MM-DD). */
void cfg_write_manpage(FILE *out, const char *version, const char *date);

#endif
