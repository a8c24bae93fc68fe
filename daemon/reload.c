#include "reload.h"

#include <string.h>

#include "hook.h"
#include "log.h"
#include "sticky.h"
#include "tlsio.h"

int
daemon_conf_build(struct cfg *c, const struct daemon_conf *cur,
		  struct daemon_conf *out)
{
	char err[512];

	memset(out, 0, sizeof(*out));
	out->cfg = c;
	if (daemon_needs_tls(c)) {
		out->tls = tls_ctx_new(c, c->role == CFG_RELAY, err, sizeof(err));
		if (out->tls == NULL) {
			log_err("%s: %s", c->file, err);
			goto fail;
		}
	}
	out->partners = partners_new(c);
	if (out->partners == NULL) {
		log_err("out of memory");
		goto fail;
	}
	if (daemon_sticky_open(cur != NULL ? cur->sticky : NULL, c,
			       &out->sticky) < 0)
		goto fail;
	return 0;
fail:
	daemon_conf_free(out, cur);
	return -1;
}

void
daemon_conf_free(struct daemon_conf *conf, const struct daemon_conf *keep)
{
	if (keep == NULL || conf->sticky != keep->sticky)
		sticky_free(conf->sticky);
	partners_free(conf->partners);
	tls_ctx_free(conf->tls);
	cfg_free(conf->cfg);
	memset(conf, 0, sizeof(*conf));
}

int
daemon_reload(struct daemon_conf *cur, const struct daemon_opts *o, int role,
	      const struct daemon_reload_ops *ops, void *ud)
{
	struct daemon_conf next, old;
	struct cfg *c;
	char err[1024];

	/* Load. */
	c = cfg_load(o->config, role, err, sizeof(err));
	if (c == NULL) {
		log_err("SIGHUP: reload rejected, the running configuration "
			"stays: %s", err);
		/* A rotated event file is let go all the same. */
		(void)daemon_open_hooks(cur->cfg);
		daemon_report(HOOK_DAEMON_RELOADED, o->config, "rejected", err);
		return -1;
	}
	/* Build. */
	if (daemon_conf_build(c, cur, &next) < 0)
		goto reject;
	/* Stage. */
	if (ops->stage != NULL && ops->stage(ud, &next) < 0)
		goto reject_built;
	/* Every reload reopens the event file: a rotated one is let go. */
	if (daemon_open_hooks(next.cfg) < 0)
		goto reject_staged;
	/* Commit. */
	old = *cur;
	*cur = next;
	daemon_log_level(cur->cfg, o);
	if (ops->commit != NULL)
		ops->commit(ud, cur, &old);
	daemon_conf_free(&old, cur);
	daemon_report(HOOK_DAEMON_RELOADED, o->config, "ok", NULL);
	return 0;
reject_staged:
	if (ops->abandon != NULL)
		ops->abandon(ud, &next);
reject_built:
	daemon_conf_free(&next, cur);
reject:
	log_err("SIGHUP: reload rejected, the running configuration stays");
	(void)daemon_open_hooks(cur->cfg);
	daemon_report(HOOK_DAEMON_RELOADED, o->config, "rejected",
		      "the new configuration could not be applied; see the log");
	return -1;
}
