/*
 * Stage 1 of connection security: what a listener does with a new
 * connection before reading a byte.  A guard judges the source address
 * against allow/deny lists, counts refusals, and logs them at a bounded
 * rate so that a flood cannot fill the disk.
 */
#ifndef TLSPLEX_GUARD_H
#define TLSPLEX_GUARD_H

#include <stdint.h>
#include <sys/socket.h>

#include "config.h"

/* Lines a guard logs per second; further refusals in that second are
 * counted and reported with the next line. */
#define GUARD_LOG_PER_SEC 5

struct guard;

/* A guard for one listener; what names it in log lines ("link listener
 * 127.0.0.1:7400"), outer and inner name the sections whose lists it
 * applies ("[gateway]", "[service echo]"), service (may be NULL) the
 * service its link_refused events name.  Returns NULL on allocation
 * failure. */
struct guard *guard_new(const char *what, const char *outer,
			const char *inner, const char *service);
/* NULL is a no-op. */
void guard_free(struct guard *g);

/*
 * Judges sa against deny then allow of each pair given (a NULL list is
 * skipped): outer first, then inner.  Returns 0 to admit, or -1 after
 * counting and (rate-limited) logging the refusal.
 */
int guard_admit(struct guard *g, const struct sockaddr *sa,
		const struct cfg_acl *allow, const struct cfg_acl *deny,
		const struct cfg_acl *inner_allow,
		const struct cfg_acl *inner_deny);

/* Counts, logs and reports as link_refused (rate-limited: at most
 * GUARD_LOG_PER_SEC a second, the rest counted into the next) a
 * refusal for another reason, such as a limit; name is the reason's
 * name in events ("max_links"), why completes "refused: ...". */
void guard_refuse(struct guard *g, const struct sockaddr *sa,
		  const char *name, const char *why);
/* The same for a peer known by its address string. */
void guard_refuse_who(struct guard *g, const char *who, const char *name,
		      const char *why);

/* Connections this guard refused since it was made. */
uint64_t guard_refused(const struct guard *g);

#endif
