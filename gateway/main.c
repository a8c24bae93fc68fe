/*
 * tlsplex-gateway: accepts plaintext clients, one listener per service,
 * and carries each connection as a stream over one link to the relay.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/random.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "config.h"
#include "daemon.h"
#include "partner.h"
#include "reload.h"
#include "hook.h"
#include "link.h"
#include "log.h"
#include "frame.h"
#include "guard.h"
#include "net.h"
#include "sticky.h"
#include "tlsio.h"

static const char *const prog = "tlsplex-gateway";

struct gateway;

/* What the gateway keeps per service name across reloads: its live
 * clients (held or streaming) and its listener guard. */
struct gw_svc_state {
	TAILQ_ENTRY(gw_svc_state) entry;
	char name[CFG_NAME_MAX + 1];
	unsigned clients;
	struct guard *guard;
};
TAILQ_HEAD(gw_svc_list, gw_svc_state);

struct gw_listener {
	struct gateway *gw;
	const struct cfg_service *svc;
	struct gw_svc_state *st;
	struct evconnlistener *lis;
	int taken;                 /* taken over from the running set */
};

/* A client accepted while no link was up, waiting for one. */
struct gw_held {
	TAILQ_ENTRY(gw_held) entry;
	struct gateway *gw;
	const struct cfg_service *svc;
	struct gw_svc_state *st;
	evutil_socket_t fd;
	struct event *timer;
	char who[NET_ADDRSTR_MAX];
};
TAILQ_HEAD(gw_held_list, gw_held);

struct gateway {
	const char *path;          /* configuration file, for reloads */
	const struct daemon_opts *opts; /* the command line, for reloads */
	struct daemon_conf conf;   /* the running configuration */
	const struct partner *relay; /* the relay as a partner, from conf */
	struct event_base *base;
	struct link_config lcfg;
	struct link *link;         /* NULL while down */
	struct event *redial_ev;
	uint32_t backoff_ms;       /* next redial delay before jitter */
	struct gw_listener *listeners;
	size_t n_listeners;
	struct gw_held_list held;
	size_t n_held;
	struct event *drain_ev;    /* SIGUSR1 */
	struct event *reload_ev;   /* SIGHUP */
	struct gw_svc_list svcs;
	struct gw_listener *next_listeners; /* staged by a reload */
};

static void gw_client_start(struct gateway *gw, const struct cfg_service *svc,
			    struct gw_svc_state *st, evutil_socket_t fd,
			    const char *who);

/* The state kept for service name, made on first use; NULL when out of
 * memory (logged). */
static struct gw_svc_state *
gw_svc_state(struct gateway *gw, const char *name)
{
	struct gw_svc_state *st;
	char what[CFG_NAME_MAX + 40], inner[CFG_NAME_MAX + 16];

	TAILQ_FOREACH(st, &gw->svcs, entry)
		if (strcmp(st->name, name) == 0)
			return st;
	snprintf(what, sizeof(what), "service %s", name);
	snprintf(inner, sizeof(inner), "[service %s]", name);
	st = calloc(1, sizeof(*st));
	if (st == NULL || (st->guard = guard_new(what, "[gateway]", inner, name)) == NULL) {
		log_err("service %s: out of memory", name);
		free(st);
		return NULL;
	}
	snprintf(st->name, sizeof(st->name), "%s", name);
	TAILQ_INSERT_TAIL(&gw->svcs, st, entry);
	return st;
}

static void gw_dial(struct gateway *gw);

/* Takes h off the held list and stops its timer; the caller owns h->fd. */
static void
gw_held_unlink(struct gateway *gw, struct gw_held *h)
{
	TAILQ_REMOVE(&gw->held, h, entry);
	gw->n_held--;
	h->st->clients--;
	event_free(h->timer);
}

static void
gw_on_up(void *ud, struct link *l)
{
	struct gateway *gw = ud;
	struct gw_held *h;

	gw->backoff_ms = gw->conf.cfg->redial_min_ms;
	log_info("link %llu to the relay (node %s) is up (%s); accepting "
		 "clients%s", (unsigned long long)link_id(l), link_peer_node(l),
		 link_is_tls(l) ? "TLS" : "plaintext",
		 gw->n_held ? ", starting the held ones" : "");
	while ((h = TAILQ_FIRST(&gw->held)) != NULL && link_is_up(gw->link)) {
		gw_held_unlink(gw, h);
		gw_client_start(gw, h->svc, h->st, h->fd, h->who);
		free(h);
	}
}

/* Refuses a held client: closes it with a reset. */
static void
gw_held_free(struct gateway *gw, struct gw_held *h)
{
	gw_held_unlink(gw, h);
	net_close_reset(h->fd);
	free(h);
}

static void
gw_held_expired(evutil_socket_t fd, short what, void *arg)
{
	struct gw_held *h = arg;

	guard_refuse_who(h->st->guard, h->who, "hold_timeout", "no link to the "
			 "relay came up within hold_timeout");
	gw_held_free(h->gw, h);
}

/* Keeps a client until a link is up, within hold_timeout and hold_max. */
static void
gw_client_hold(struct gateway *gw, const struct cfg_service *svc,
	       struct gw_svc_state *st, evutil_socket_t fd, const char *who)
{
	const struct cfg *c = gw->conf.cfg;
	struct gw_held *h;
	struct timeval tv;

	if (c->hold_timeout_ms == 0 || gw->n_held >= c->hold_max) {
		guard_refuse_who(st->guard, who, "hold_full", c->hold_timeout_ms == 0 ?
				 "no link to the relay is up (hold_timeout = 0)" :
				 "no link to the relay is up and hold_max "
				 "clients are already waiting");
		net_close_reset(fd);
		return;
	}
	h = calloc(1, sizeof(*h));
	if (h == NULL || (h->timer = evtimer_new(gw->base, gw_held_expired, h)) == NULL) {
		log_err("client %s for service %s: out of memory", who, svc->name);
		free(h);
		net_close_reset(fd);
		return;
	}
	h->gw = gw;
	h->svc = svc;
	h->st = st;
	st->clients++;
	h->fd = fd;
	snprintf(h->who, sizeof(h->who), "%s", who);
	tv.tv_sec = c->hold_timeout_ms / 1000;
	tv.tv_usec = (suseconds_t)(c->hold_timeout_ms % 1000) * 1000;
	evtimer_add(h->timer, &tv);
	TAILQ_INSERT_TAIL(&gw->held, h, entry);
	gw->n_held++;
	log_info("client %s for service %s held: no link to the relay is up "
		 "yet (%zu waiting)", who, svc->name, gw->n_held);
}

static uint32_t
gw_jitter(uint32_t ms)
{
	uint32_t r = 0;

	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != sizeof(r))
		r = (uint32_t)ms * 2654435761u;
	/* Uniform in [ms/2, ms]. */
	return ms / 2 + (ms > 1 ? r % (ms / 2 + 1) : 0);
}

static void
gw_on_down(void *ud, struct link *l)
{
	struct gateway *gw = ud;
	struct timeval tv;
	uint32_t delay;

	if (l != NULL && gw->link != l)
		return; /* a drained link ended; its successor is in place */
	gw->link = NULL;
	if (gw->redial_ev == NULL)
		return;
	delay = gw_jitter(gw->backoff_ms);
	log_info("link to the relay is down; redialling in %u ms", delay);
	tv.tv_sec = delay / 1000;
	tv.tv_usec = (suseconds_t)(delay % 1000) * 1000;
	evtimer_add(gw->redial_ev, &tv);
	if (gw->backoff_ms < gw->conf.cfg->redial_max_ms / 2)
		gw->backoff_ms *= 2;
	else
		gw->backoff_ms = gw->conf.cfg->redial_max_ms;
}

static struct bufferevent *
gw_on_stream(void *ud, struct link *l, const char *service, uint32_t *code)
{
	log_warn("link %llu: the relay opened a stream for service '%s'; "
		 "reverse services are not configured here, refused",
		 (unsigned long long)link_id(l), service);
	*code = MUX_C_REFUSED;
	return NULL;
}

/* The current link takes no new streams: dial its successor now. */
static void
gw_on_draining(void *ud, struct link *l)
{
	struct gateway *gw = ud;

	if (gw->link != l)
		return;
	log_info("link %llu is draining; dialling a fresh link for new clients",
		 (unsigned long long)link_id(l));
	gw->link = NULL;
	evtimer_del(gw->redial_ev);
	gw_dial(gw);
}

/* The relay's identity beyond server_name, and the sticky state. */
static int
gw_on_verify(void *ud, struct link *l, struct tls_conn *tls,
	     const struct tls_info *info, char *why, size_t whylen)
{
	struct gateway *gw = ud;
	const struct cfg *c = gw->conf.cfg;

	if (partner_verify(gw->relay, tls, info, link_peer_node(l), why,
			   whylen) < 0)
		return -1;
	if (gw->relay->tls_sticky)
		daemon_sticky_remember(gw->conf.sticky, c->server_name);
	return 0;
}

static const struct link_ops gw_ops = {
	.on_up = gw_on_up,
	.on_verify = gw_on_verify,
	.on_down = gw_on_down,
	.on_draining = gw_on_draining,
	.on_stream = gw_on_stream,
};

static void
gw_redial_cb(evutil_socket_t fd, short what, void *arg)
{
	gw_dial(arg);
}

static void
gw_dial(struct gateway *gw)
{
	const struct cfg *c = gw->conf.cfg;
	struct sockaddr_storage ss;
	struct link_config lc;
	socklen_t sl;
	char err[512];

	if (net_resolve(c->relay, 0, &ss, &sl, err, sizeof(err)) < 0) {
		log_err("relay %s: %s", c->relay, err);
		gw_on_down(gw, NULL);
		return;
	}
	lc = gw->lcfg;
	if (partner_sticky_rule(gw->relay,
				sticky_has(gw->conf.sticky, c->server_name),
				NULL, &lc.params) == PARTNER_STICKY_RAISE)
		log_info("relay %s has completed TLS with this gateway before "
			 "(tls_sticky): offering tls = require", c->server_name);
	log_info("dialling the relay at %s", c->relay);
	gw->link = link_new(gw->base, -1, (struct sockaddr *)&ss, (int)sl,
			    &lc, &gw_ops, gw);
	if (gw->link == NULL)
		gw_on_down(gw, NULL);
}

/* Starts a stream for a client, or holds or refuses it. */
static void
gw_client_start(struct gateway *gw, const struct cfg_service *svc,
		struct gw_svc_state *st, evutil_socket_t fd, const char *who)
{
	struct bufferevent *bev;

	if (!link_is_up(gw->link)) {
		gw_client_hold(gw, svc, st, fd, who);
		return;
	}
	if (svc->tls == TLS_MODE_REQUIRE && !link_is_tls(gw->link)) {
		log_warn("client %s for service %s refused: the service "
			 "requires TLS and the link is plaintext", who, svc->name);
		net_close_reset(fd);
		return;
	}
	bev = bufferevent_socket_new(gw->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		log_err("client %s for service %s: out of memory", who, svc->name);
		net_close_reset(fd);
		return;
	}
	if (link_open_stream(gw->link, svc->name, bev, &st->clients) < 0)
		log_warn("client %s for service %s refused", who, svc->name);
}

static void
gw_accept_cb(struct evconnlistener *lis, evutil_socket_t fd,
	     struct sockaddr *sa, int salen, void *arg)
{
	struct gw_listener *gl = arg;
	const struct cfg_service *svc = gl->svc;
	const struct cfg *c = gl->gw->conf.cfg;
	struct gw_svc_state *st = gl->st;
	char who[NET_ADDRSTR_MAX], why[96];

	evutil_make_socket_closeonexec(fd);
	if (guard_admit(st->guard, sa, &c->allow, &c->deny, &svc->allow,
			&svc->deny) < 0) {
		net_close_reset(fd);
		return;
	}
	if (st->clients >= svc->max_clients) {
		snprintf(why, sizeof(why), "max_clients (%u) clients are "
			 "connected", svc->max_clients);
		guard_refuse(st->guard, sa, "max_clients", why);
		net_close_reset(fd);
		return;
	}
	net_ntop(sa, who, sizeof(who));
	gw_client_start(gl->gw, svc, st, fd, who);
}

static void
gw_drain_cb(evutil_socket_t sig, short what, void *arg)
{
	struct gateway *gw = arg;

	if (gw->link == NULL || !link_is_up(gw->link)) {
		log_info("SIGUSR1: no link is up; nothing to drain");
		return;
	}
	link_drain(gw->link, "operator asked for a fresh link (SIGUSR1)");
}

/* Undoes gw_listeners_build(): hands taken-over listeners back to the
 * running set and closes the ones it opened. */
static void
gw_listeners_abandon(struct gateway *gw, const struct cfg *c,
		     struct gw_listener *next)
{
	size_t i, j;

	for (i = 0; i < c->n_services; i++) {
		if (next[i].lis == NULL)
			continue;
		if (!next[i].taken) {
			evconnlistener_free(next[i].lis);
			continue;
		}
		for (j = 0; j < gw->n_listeners; j++)
			if (gw->listeners[j].lis == NULL &&
			    strcmp(gw->listeners[j].svc->listen,
				   next[i].svc->listen) == 0) {
				gw->listeners[j].lis = next[i].lis;
				evconnlistener_set_cb(next[i].lis, gw_accept_cb,
						      &gw->listeners[j]);
				break;
			}
	}
	free(next);
}

/*
 * Builds the listeners for configuration c into *out.  A listener whose
 * address is unchanged is taken over from the running set (no rebind);
 * the others are opened.  Returns 0, or -1 (logged) with nothing changed.
 */
static int
gw_listeners_build(struct gateway *gw, const struct cfg *c,
		   struct gw_listener **out)
{
	struct gw_listener *next;
	char err[512];
	size_t i, j;
	int fd;

	next = calloc(c->n_services ? c->n_services : 1, sizeof(*next));
	if (next == NULL) {
		log_err("out of memory");
		return -1;
	}
	for (i = 0; i < c->n_services; i++) {
		struct gw_listener *gl = &next[i];

		gl->gw = gw;
		gl->svc = &c->services[i];
		gl->st = gw_svc_state(gw, gl->svc->name);
		if (gl->st == NULL)
			goto fail;
		for (j = 0; j < gw->n_listeners; j++)
			if (gw->listeners[j].lis != NULL &&
			    strcmp(gw->listeners[j].svc->listen,
				   gl->svc->listen) == 0)
				break;
		if (j < gw->n_listeners) {
			gl->lis = gw->listeners[j].lis;
			gl->taken = 1;
			gw->listeners[j].lis = NULL;
			continue;
		}
		fd = net_listen(gl->svc->listen, err, sizeof(err));
		if (fd < 0) {
			log_err("service %s: %s", gl->svc->name, err);
			goto fail;
		}
		gl->lis = evconnlistener_new(gw->base, gw_accept_cb, gl,
					     LEV_OPT_CLOSE_ON_FREE |
					     LEV_OPT_CLOSE_ON_EXEC, -1, fd);
		if (gl->lis == NULL) {
			log_err("service %s: cannot listen on %s", gl->svc->name,
				gl->svc->listen);
			close(fd);
			goto fail;
		}
		log_info("service %s: listening for clients on %s",
			 gl->svc->name, gl->svc->listen);
	}
	for (i = 0; i < c->n_services; i++)
		evconnlistener_set_cb(next[i].lis, gw_accept_cb, &next[i]);
	*out = next;
	return 0;
fail:
	gw_listeners_abandon(gw, c, next);
	return -1;
}

/* Replaces the running listener set by next (for c), closing what it
 * no longer uses. */
static void
gw_listeners_install(struct gateway *gw, const struct cfg *c,
		     struct gw_listener *next)
{
	size_t i;

	for (i = 0; i < gw->n_listeners; i++)
		if (gw->listeners[i].lis != NULL)
			evconnlistener_free(gw->listeners[i].lis);
	free(gw->listeners);
	gw->listeners = next;
	gw->n_listeners = c->n_services;
	for (i = 0; i < gw->n_listeners; i++)
		next[i].taken = 0;
}

/* Link settings for new links, from the running configuration. */
static void
gw_conf_install(struct gateway *gw)
{
	const struct partners *ps = gw->conf.partners;

	/* The gateway offers before it learns the relay's node name, so
	 * its partner is the [peer NAME] named after the relay it expects,
	 * or the daemon section alone. */
	gw->relay = partners_find(ps, gw->conf.cfg->server_name);
	if (gw->relay == NULL)
		gw->relay = &ps->deflt;
	daemon_link_config(gw->conf.cfg, gw->conf.tls, &gw->lcfg);
	partner_apply(gw->relay, &gw->lcfg.params, NULL);
	gw->lcfg.tls_first = gw->relay->tls_first;
}

/* Reload stage: the listeners of next, taking over unchanged ones. */
static int
gw_stage(void *ud, const struct daemon_conf *next)
{
	struct gateway *gw = ud;

	return gw_listeners_build(gw, next->cfg, &gw->next_listeners);
}

static void
gw_abandon(void *ud, const struct daemon_conf *next)
{
	struct gateway *gw = ud;

	gw_listeners_abandon(gw, next->cfg, gw->next_listeners);
	gw->next_listeners = NULL;
}

static void
gw_commit(void *ud, const struct daemon_conf *cur,
	  const struct daemon_conf *old)
{
	struct gateway *gw = ud;
	struct gw_held *h, *tmp;

	gw_listeners_install(gw, cur->cfg, gw->next_listeners);
	gw->next_listeners = NULL;
	/* Held clients follow their service by name. */
	for (h = TAILQ_FIRST(&gw->held); h != NULL; h = tmp) {
		const struct cfg_service *svc = cfg_service_find(cur->cfg,
								 h->svc->name);

		tmp = TAILQ_NEXT(h, entry);
		if (svc == NULL) {
			log_warn("client %s refused: service %s was removed by "
				 "the reload", h->who, h->svc->name);
			gw_held_free(gw, h);
			continue;
		}
		h->svc = svc;
	}
	gw_conf_install(gw);
	log_info("SIGHUP: configuration reloaded from %s: %zu services, relay "
		 "%s; the running link keeps its settings", gw->path,
		 cur->cfg->n_services, cur->cfg->relay);
}

static const struct daemon_reload_ops gw_reload_ops = {
	.stage = gw_stage,
	.abandon = gw_abandon,
	.commit = gw_commit,
};

/* SIGHUP: new links, streams and clients get the new settings; the
 * running link and its streams keep theirs.  A file that does not
 * validate, or a listener or hook file that cannot be opened, changes
 * nothing. */
static void
gw_reload_cb(evutil_socket_t sig, short what, void *arg)
{
	struct gateway *gw = arg;

	daemon_reload(&gw->conf, gw->opts, CFG_GATEWAY, &gw_reload_ops, gw);
}

int
main(int argc, char **argv)
{
	struct daemon_opts o;
	struct gateway gw;
	struct gw_listener *next;
	struct cfg *c;
	size_t i;
	int status;

	memset(&gw, 0, sizeof(gw));
	TAILQ_INIT(&gw.held);
	TAILQ_INIT(&gw.svcs);
	c = daemon_start(argc, argv, prog, CFG_GATEWAY, &o, &status);
	if (c == NULL)
		return status;
	status = 1;
	gw.path = o.config;
	gw.opts = &o;
	if (daemon_conf_build(c, NULL, &gw.conf) < 0 ||
	    daemon_open_hooks(gw.conf.cfg) < 0)
		goto out;
	gw.base = daemon_base_new();
	if (gw.base == NULL) {
		log_err("cannot create the event loop");
		goto out;
	}
	gw_conf_install(&gw);
	gw.backoff_ms = gw.conf.cfg->redial_min_ms;
	gw.redial_ev = evtimer_new(gw.base, gw_redial_cb, &gw);
	gw.drain_ev = evsignal_new(gw.base, SIGUSR1, gw_drain_cb, &gw);
	gw.reload_ev = evsignal_new(gw.base, SIGHUP, gw_reload_cb, &gw);
	if (gw.redial_ev == NULL || gw.drain_ev == NULL || gw.reload_ev == NULL ||
	    evsignal_add(gw.drain_ev, NULL) < 0 ||
	    evsignal_add(gw.reload_ev, NULL) < 0)
		goto out;
	if (gw_listeners_build(&gw, gw.conf.cfg, &next) < 0)
		goto out;
	gw_listeners_install(&gw, gw.conf.cfg, next);
	log_info("node %s (tls = %s) serving %zu services through relay %s",
		 gw.conf.cfg->node_name, tls_mode_str((uint8_t)gw.conf.cfg->tls),
		 gw.conf.cfg->n_services, gw.conf.cfg->relay);
	daemon_report(HOOK_DAEMON_STARTED, gw.opts->config, NULL, NULL);
	gw_dial(&gw);
	event_base_dispatch(gw.base);
	status = 0;
out:
	if (gw.redial_ev != NULL) {
		event_free(gw.redial_ev);
		gw.redial_ev = NULL;
	}
	while (!TAILQ_EMPTY(&gw.held))
		gw_held_free(&gw, TAILQ_FIRST(&gw.held));
	if (gw.drain_ev != NULL)
		event_free(gw.drain_ev);
	if (gw.reload_ev != NULL)
		event_free(gw.reload_ev);
	link_close_all("the gateway is stopping");
	for (i = 0; i < gw.n_listeners; i++)
		if (gw.listeners[i].lis != NULL)
			evconnlistener_free(gw.listeners[i].lis);
	free(gw.listeners);
	while (!TAILQ_EMPTY(&gw.svcs)) {
		struct gw_svc_state *st = TAILQ_FIRST(&gw.svcs);

		TAILQ_REMOVE(&gw.svcs, st, entry);
		guard_free(st->guard);
		free(st);
	}
	daemon_base_free(gw.base);
	hook_reset();
	daemon_conf_free(&gw.conf, NULL);
	tls_global_cleanup();
	return status;
}
