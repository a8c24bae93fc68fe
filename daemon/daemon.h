/*
 * What both daemons share around the link code: command line, config
 * loading, signals, hooks and the negotiation parameters from config.
 */
#ifndef TLSPLEX_DAEMON_H
#define TLSPLEX_DAEMON_H

#include "config.h"
#include "neg.h"

struct event_base;

struct daemon_opts {
	const char *config;
	int check_only; /* -n */
	int verbose;    /* each -v raises the log level by one */
};

/*
 * Parses argv.  Returns 0 to run, 1 when the program should exit 0
 * (--version, -h), or -1 after printing usage to stderr.
 */
int daemon_parse_args(int argc, char **argv, const char *prog,
		      struct daemon_opts *o);

/* Sets the log level: c's log_level raised by one for each -v in o. */
void daemon_log_level(const struct cfg *c, const struct daemon_opts *o);

/* Nonzero when configuration c needs a TLS context: the same answer for
 * the daemon at start, on reload and for -n. */
int daemon_needs_tls(const struct cfg *c);

/* Loads and validates the configuration, logging the error; for -n also
 * loads the TLS material.  Returns NULL on failure. */
struct cfg *daemon_load(const char *prog, int role, const struct daemon_opts *o);

/*
 * The common start of both daemons: logging, command line, the TLS
 * library and the configuration.  Returns the configuration to run with;
 * or NULL with *status set to the exit status, after --version, -h or -n
 * (0) or an error (1 or 2, logged).  On success the caller runs
 * tls_global_cleanup() when it exits.
 */
struct cfg *daemon_start(int argc, char **argv, const char *prog, int role,
			 struct daemon_opts *o, int *status);

/* Checks what the io layer knows about the hook keys (event names).
 * Returns 0, or -1 with err. */
int daemon_check_hooks(const struct cfg *c, char *err, size_t errlen);
/* Opens (again: every reload) the hook sinks the config names and closes
 * the others.  Returns 0 or -1 (logged). */
int daemon_open_hooks(const struct cfg *c);
/* Emits a daemon event (daemon_started, daemon_reloaded or
 * daemon_stopping) with what this daemon is; NULL leaves a key out. */
void daemon_report(int type, const char *config, const char *result,
		   const char *reason);

/* Our negotiation parameters as the config sets them (no nonce). */
void daemon_params(const struct cfg *c, struct neg_params *p);

struct link_config;
struct tls_ctx;
struct sticky;

/*
 * The tls_sticky state that configuration c asks for: cur when it is
 * already the file c names, a newly loaded one when c names another file,
 * NULL when c sets no state_file.  Returns 0 with the state in *next, or
 * -1 (logged) when the file cannot be loaded.
 */
int daemon_sticky_open(struct sticky *cur, const struct cfg *c,
		       struct sticky **next);
/* Remembers name as a TLS peer in s, logging the first time. */
void daemon_sticky_remember(struct sticky *s, const char *name);

/* The settings new links get from configuration c and TLS context tls
 * (NULL when TLS is off): role, negotiation parameters, timeouts. */
void daemon_link_config(const struct cfg *c, struct tls_ctx *tls,
			struct link_config *lc);

/* A base with SIGINT/SIGTERM stopping the daemon (daemon_set_stop) and
 * SIGPIPE ignored.  Returns NULL on failure. */
struct event_base *daemon_base_new(void);
void daemon_base_free(struct event_base *base);

/*
 * How SIGTERM and SIGINT stop the daemon.  The first signal calls
 * quiesce(ud), which stops taking new work (closes listeners, refuses
 * held clients, stops dialling) and returns the running configuration's
 * drain_timeout; then GOAWAY goes on every link and open streams may
 * finish: the loop exits once no link and no finishing stream is left,
 * or when drain_timeout has passed (0: at once), and the caller's
 * link_close_all() resets what is left.  A second signal exits the loop
 * at once.  Without a call to this, the first signal exits at once.
 */
void daemon_set_stop(uint32_t (*quiesce)(void *ud), void *ud);

#endif
