/*
 * Listener admission: allow/deny lists, refusal counting, rate-limited
 * refusal logging.
 */
#include "guard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hook.h"
#include "log.h"
#include "neg.h"
#include "net.h"

struct guard {
	char what[128];
	char scope[2][80];  /* outer and inner section names */
	char service[80];   /* for link_refused: the service, or "" */
	uint64_t refused;
	time_t second;      /* the second the counters below belong to */
	unsigned logged;    /* lines logged in that second */
	uint64_t unlogged;  /* refusals not logged since the last line */
};

struct guard *
guard_new(const char *what, const char *outer, const char *inner,
	  const char *service)
{
	struct guard *g = calloc(1, sizeof(*g));

	if (g == NULL)
		return NULL;
	snprintf(g->what, sizeof(g->what), "%s", what);
	snprintf(g->scope[0], sizeof(g->scope[0]), "%s", outer);
	snprintf(g->scope[1], sizeof(g->scope[1]), "%s", inner ? inner : "");
	snprintf(g->service, sizeof(g->service), "%s", service ? service : "");
	return g;
}

void
guard_free(struct guard *g)
{
	free(g);
}

uint64_t
guard_refused(const struct guard *g)
{
	return g != NULL ? g->refused : 0;
}

/* The refusal's event: link_refused at the TCP stage, carrying the
 * refusals the rate limit folded into it. */
static void
guard_report(struct guard *g, const char *who, const char *name,
	     const char *why)
{
	struct hook_event ev;
	char text[512];

	memset(&ev, 0, sizeof(ev));
	ev.type = HOOK_LINK_REFUSED;
	ev.peer = who;
	ev.stage = "tcp";
	ev.by = "local";
	ev.reason_name = name;
	ev.reason_code = strcmp(name, "max_links") == 0 ||
		strcmp(name, "max_links_per_source") == 0 ? NEG_R_BUSY : 0;
	snprintf(text, sizeof(text), "%s: connection refused: %s", g->what, why);
	ev.reason = text;
	ev.service = g->service[0] ? g->service : NULL;
	ev.suppressed = g->unlogged;
	hook_emit(&ev);
}

void
guard_refuse(struct guard *g, const struct sockaddr *sa, const char *name,
	     const char *why)
{
	char who[NET_ADDRSTR_MAX];

	net_ntop(sa, who, sizeof(who));
	guard_refuse_who(g, who, name, why);
}

void
guard_refuse_who(struct guard *g, const char *who, const char *name,
		 const char *why)
{
	struct timespec ts;

	g->refused++;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	if (ts.tv_sec != g->second) {
		g->second = ts.tv_sec;
		g->logged = 0;
	}
	if (g->logged >= GUARD_LOG_PER_SEC) {
		g->unlogged++;
		return;
	}
	g->logged++;
	guard_report(g, who, name, why);
	if (g->unlogged > 0)
		log_warn("%s: connection from %s refused: %s (%llu refused in "
			 "all; %llu more since the last such line, not logged "
			 "one by one)", g->what, who, why,
			 (unsigned long long)g->refused,
			 (unsigned long long)g->unlogged);
	else
		log_warn("%s: connection from %s refused: %s (%llu refused in "
			 "all)", g->what, who, why,
			 (unsigned long long)g->refused);
	g->unlogged = 0;
}

/* Applies one allow/deny pair; returns 0 or -1 after refusing. */
static int
guard_judge(struct guard *g, const struct sockaddr *sa,
	    const struct cfg_acl *allow, const struct cfg_acl *deny,
	    const char *scope)
{
	char why[160];

	switch (cfg_acl_check(allow, deny, sa)) {
	case CFG_ACL_PASS:
		return 0;
	case CFG_ACL_DENIED:
		snprintf(why, sizeof(why), "its address is in the deny list of "
			 "%s", scope);
		guard_refuse(g, sa, "deny_list", why);
		return -1;
	default:
		snprintf(why, sizeof(why), "its address is not in the allow "
			 "list of %s", scope);
		break;
	}
	guard_refuse(g, sa, "allow_list", why);
	return -1;
}

int
guard_admit(struct guard *g, const struct sockaddr *sa,
	    const struct cfg_acl *allow, const struct cfg_acl *deny,
	    const struct cfg_acl *inner_allow,
	    const struct cfg_acl *inner_deny)
{
	if (guard_judge(g, sa, allow, deny, g->scope[0]) < 0)
		return -1;
	if ((inner_allow != NULL || inner_deny != NULL) &&
	    guard_judge(g, sa, inner_allow, inner_deny, g->scope[1]) < 0)
		return -1;
	return 0;
}
