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

enum cfg_role {
	CFG_RELAY = 1,
	CFG_GATEWAY = 2,
};

/* Value meaning "not set here; inherit from the daemon section". */
#define CFG_UNSET (-1)

/* A [service NAME] section. */
struct cfg_service {
	char name[CFG_NAME_MAX + 1];
	char listen[CFG_ADDR_MAX];  /* gateway: host:port clients connect to */
	char backend[CFG_ADDR_MAX]; /* relay: host:port streams connect to */
	int tls;                    /* enum tls_mode or CFG_UNSET; require =
				       never carried on a plaintext link */
	int line;                   /* where the section starts */
};

/* A [peer NAME] section: overrides for one node name. */
struct cfg_peer {
	char name[CFG_NAME_MAX + 1];
	int tls;          /* enum tls_mode or CFG_UNSET */
	int min_tls;      /* TLSV_1_x or CFG_UNSET */
	int max_tls;
	int client_cert;  /* enum cert_want or CFG_UNSET */
	int line;
};

struct cfg {
	int role;                        /* enum cfg_role */
	char file[CFG_PATH_MAX];         /* where it was read from */
	char node_name[CFG_NAME_MAX + 1];
	char listen[CFG_ADDR_MAX];       /* relay: link listener */
	char relay[CFG_ADDR_MAX];        /* gateway: relay to dial */
	char server_name[CFG_ADDR_MAX];  /* gateway: name the relay's
					    certificate must carry */
	int tls;                         /* enum tls_mode */
	int min_tls, max_tls;            /* TLSV_1_2 or TLSV_1_3 */
	int client_cert;                 /* enum cert_want (relay) */
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
	uint32_t redial_min_ms, redial_max_ms; /* gateway backoff */
	char hook_file[CFG_PATH_MAX];    /* JSON Lines event sink; "" = none */
	int log_level;                   /* 0 error .. 3 debug */
	struct cfg_service *services;
	size_t n_services;
	struct cfg_peer *peers;
	size_t n_peers;
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
const struct cfg_peer *cfg_peer_find(const struct cfg *c, const char *name);

/* Writes the key reference (section, key, default, help) as Markdown. */
void cfg_write_reference(FILE *out);

#endif
