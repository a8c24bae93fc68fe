/*
 * One configuration and what it brings with it, and the reload both
 * daemons run on SIGHUP as one transaction: load the file, build what it
 * needs, stage the daemon's own parts, then commit (swap) or roll back
 * (free the staged parts; the running configuration stays).
 */
#ifndef TLSPLEX_RELOAD_H
#define TLSPLEX_RELOAD_H

#include "daemon.h"
#include "partner.h"

struct sticky;
struct tls_ctx;

/* What one configuration brings with it; replaced as a whole. */
struct daemon_conf {
	struct cfg *cfg;
	struct tls_ctx *tls;         /* NULL unless daemon_needs_tls(cfg) */
	struct partners *partners;   /* resolved from cfg */
	struct sticky *sticky;       /* NULL unless cfg sets state_file;
					may be shared with the running
					configuration (the same file) */
};

/*
 * Builds the parts configuration c needs into *out, taking c: its TLS
 * context, its resolved partners and its tls_sticky state (cur's when
 * cur, which may be NULL, already has the file c names).  Returns 0, or
 * -1 (logged) with c and everything built freed.
 */
int daemon_conf_build(struct cfg *c, const struct daemon_conf *cur,
		      struct daemon_conf *out);

/* Frees conf's parts, except a sticky state it shares with keep (NULL
 * to free all), and clears it. */
void daemon_conf_free(struct daemon_conf *conf,
		      const struct daemon_conf *keep);

/* What a reload asks of the daemon; every member may be NULL. */
struct daemon_reload_ops {
	/* Prepares the daemon's own parts for next (listeners, backends)
	 * without changing what runs.  Returns 0, or -1 (logged) with
	 * nothing staged. */
	int (*stage)(void *ud, const struct daemon_conf *next);
	/* Undoes a successful stage: next will not run. */
	void (*abandon)(void *ud, const struct daemon_conf *next);
	/* Switches the daemon to cur, which now holds the new configuration,
	 * using what stage prepared; old is still intact and is freed after
	 * commit returns.  Cannot fail. */
	void (*commit)(void *ud, const struct daemon_conf *cur,
		       const struct daemon_conf *old);
};

/*
 * Reloads the file o names for role into *cur: load, build, stage, open
 * a changed hook file, then commit, and apply the log level with o's -v.
 * On any failure the staged parts are freed, *cur stays as it was and
 * the reason is logged once with "SIGHUP: reload rejected".  Returns 0
 * when the new configuration runs, -1 otherwise.
 */
int daemon_reload(struct daemon_conf *cur, const struct daemon_opts *o,
		  int role, const struct daemon_reload_ops *ops, void *ud);

#endif
