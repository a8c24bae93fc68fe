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
#include "hook.h"
#include "link.h"
#include "log.h"
#include "frame.h"
#include "net.h"
#include "tlsio.h"

static const char *const prog = "tlsplex-gateway";

struct gateway;

struct gw_listener {
	struct gateway *gw;
	const struct cfg_service *svc;
	struct evconnlistener *lis;
};

/* A client accepted while no link was up, waiting for one. */
struct gw_held {
	TAILQ_ENTRY(gw_held) entry;
	struct gateway *gw;
	const struct cfg_service *svc;
	evutil_socket_t fd;
	struct event *timer;
	char who[NET_ADDRSTR_MAX];
};
TAILQ_HEAD(gw_held_list, gw_held);

struct gateway {
	struct cfg *cfg;
	struct event_base *base;
	struct tls_ctx *tls;
	struct link_config lcfg;
	struct link *link;         /* NULL while down */
	struct event *redial_ev;
	uint32_t backoff_ms;       /* next redial delay before jitter */
	struct gw_listener *listeners;
	size_t n_listeners;
	struct gw_held_list held;
	size_t n_held;
	struct event *drain_ev;    /* SIGUSR1 */
};

static void gw_client_start(struct gateway *gw, const struct cfg_service *svc,
			    evutil_socket_t fd, const char *who);

static void gw_dial(struct gateway *gw);

/* The gateway offers before it learns the relay's node name, so its
 * [peer NAME] section is the one named after the relay it expects. */
static void
gw_apply_peer(const struct cfg *c, struct neg_params *p)
{
	const struct cfg_peer *peer = cfg_peer_find(c, c->server_name);

	if (peer == NULL)
		return;
	if (peer->tls != CFG_UNSET)
		p->tls_mode = (uint8_t)peer->tls;
	if (peer->min_tls != CFG_UNSET)
		p->tls_min = (uint16_t)peer->min_tls;
	if (peer->max_tls != CFG_UNSET)
		p->tls_max = (uint16_t)peer->max_tls;
}

static void
gw_on_up(void *ud, struct link *l)
{
	struct gateway *gw = ud;

	struct gw_held *h;

	gw->backoff_ms = gw->cfg->redial_min_ms;
	log_info("link %llu to the relay (node %s) is up (%s); accepting "
		 "clients%s", (unsigned long long)link_id(l), link_peer_node(l),
		 link_is_tls(l) ? "TLS" : "plaintext",
		 gw->n_held ? ", starting the held ones" : "");
	while ((h = TAILQ_FIRST(&gw->held)) != NULL && link_is_up(gw->link)) {
		TAILQ_REMOVE(&gw->held, h, entry);
		gw->n_held--;
		event_free(h->timer);
		gw_client_start(gw, h->svc, h->fd, h->who);
		free(h);
	}
}

static void
gw_held_free(struct gateway *gw, struct gw_held *h)
{
	TAILQ_REMOVE(&gw->held, h, entry);
	gw->n_held--;
	event_free(h->timer);
	net_close_reset(h->fd);
	free(h);
}

static void
gw_held_expired(evutil_socket_t fd, short what, void *arg)
{
	struct gw_held *h = arg;

	log_warn("client %s for service %s refused: no link to the relay came "
		 "up within hold_timeout", h->who, h->svc->name);
	gw_held_free(h->gw, h);
}

/* Keeps a client until a link is up, within hold_timeout and hold_max. */
static void
gw_client_hold(struct gateway *gw, const struct cfg_service *svc,
	       evutil_socket_t fd, const char *who)
{
	struct gw_held *h;
	struct timeval tv;

	if (gw->cfg->hold_timeout_ms == 0 || gw->n_held >= gw->cfg->hold_max) {
		log_warn("client %s for service %s refused: no link to the relay "
			 "is up%s", who, svc->name,
			 gw->cfg->hold_timeout_ms == 0 ? " (hold_timeout = 0)" :
			 " and hold_max clients are already waiting");
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
	h->fd = fd;
	snprintf(h->who, sizeof(h->who), "%s", who);
	tv.tv_sec = gw->cfg->hold_timeout_ms / 1000;
	tv.tv_usec = (suseconds_t)(gw->cfg->hold_timeout_ms % 1000) * 1000;
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
	if (gw->backoff_ms < gw->cfg->redial_max_ms / 2)
		gw->backoff_ms *= 2;
	else
		gw->backoff_ms = gw->cfg->redial_max_ms;
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

static const struct link_ops gw_ops = {
	.on_up = gw_on_up,
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
	struct sockaddr_storage ss;
	socklen_t sl;
	char err[512];

	if (net_resolve(gw->cfg->relay, 0, &ss, &sl, err, sizeof(err)) < 0) {
		log_err("relay %s: %s", gw->cfg->relay, err);
		gw_on_down(gw, NULL);
		return;
	}
	log_info("dialling the relay at %s", gw->cfg->relay);
	gw->link = link_new(gw->base, -1, (struct sockaddr *)&ss, (int)sl,
			    &gw->lcfg, &gw_ops, gw);
	if (gw->link == NULL)
		gw_on_down(gw, NULL);
}

/* Starts a stream for a client, or holds or refuses it. */
static void
gw_client_start(struct gateway *gw, const struct cfg_service *svc,
		evutil_socket_t fd, const char *who)
{
	struct bufferevent *bev;

	if (!link_is_up(gw->link)) {
		gw_client_hold(gw, svc, fd, who);
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
	if (link_open_stream(gw->link, svc->name, bev) < 0)
		log_warn("client %s for service %s refused", who, svc->name);
}

static void
gw_accept_cb(struct evconnlistener *lis, evutil_socket_t fd,
	     struct sockaddr *sa, int salen, void *arg)
{
	struct gw_listener *gl = arg;
	char who[NET_ADDRSTR_MAX];

	evutil_make_socket_closeonexec(fd);
	net_ntop(sa, who, sizeof(who));
	gw_client_start(gl->gw, gl->svc, fd, who);
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

static int
gw_listen(struct gateway *gw)
{
	char err[512];
	size_t i;
	int fd;

	gw->listeners = calloc(gw->cfg->n_services, sizeof(*gw->listeners));
	if (gw->listeners == NULL)
		return -1;
	for (i = 0; i < gw->cfg->n_services; i++) {
		struct gw_listener *gl = &gw->listeners[i];

		gl->gw = gw;
		gl->svc = &gw->cfg->services[i];
		fd = net_listen(gl->svc->listen, err, sizeof(err));
		if (fd < 0) {
			log_err("service %s: %s", gl->svc->name, err);
			return -1;
		}
		gl->lis = evconnlistener_new(gw->base, gw_accept_cb, gl,
					     LEV_OPT_CLOSE_ON_FREE |
					     LEV_OPT_CLOSE_ON_EXEC, -1, fd);
		if (gl->lis == NULL) {
			log_err("service %s: cannot listen on %s", gl->svc->name,
				gl->svc->listen);
			return -1;
		}
		gw->n_listeners++;
		log_info("service %s: listening for clients on %s",
			 gl->svc->name, gl->svc->listen);
	}
	return 0;
}

int
main(int argc, char **argv)
{
	struct daemon_opts o;
	struct gateway gw;
	char err[512];
	size_t i;
	int rc, status = 1;

	log_init(prog, LOG_INFO);
	rc = daemon_parse_args(argc, argv, prog, &o);
	if (rc != 0)
		return rc > 0 ? 0 : 2;
	memset(&gw, 0, sizeof(gw));
	TAILQ_INIT(&gw.held);
	if (tls_global_init() < 0) {
		log_err("cannot initialise the TLS library");
		return 1;
	}
	gw.cfg = daemon_load(prog, CFG_GATEWAY, &o);
	if (gw.cfg == NULL)
		goto out;
	if (o.check_only) {
		status = 0;
		goto out;
	}
	if (gw.cfg->tls != TLS_MODE_OFF || gw.cfg->ca[0] != '\0') {
		gw.tls = tls_ctx_new(gw.cfg, 0, err, sizeof(err));
		if (gw.tls == NULL) {
			log_err("%s: %s", gw.cfg->file, err);
			goto out;
		}
	}
	if (daemon_open_hooks(gw.cfg) < 0)
		goto out;
	gw.base = daemon_base_new();
	if (gw.base == NULL) {
		log_err("cannot create the event loop");
		goto out;
	}
	daemon_params(gw.cfg, &gw.lcfg.params);
	gw_apply_peer(gw.cfg, &gw.lcfg.params);
	gw.lcfg.dialer = 1;
	gw.lcfg.role = "gateway";
	gw.lcfg.tls = gw.tls;
	gw.lcfg.server_name = gw.cfg->server_name;
	gw.lcfg.negotiation_timeout_ms = gw.cfg->negotiation_timeout_ms;
	gw.lcfg.handshake_timeout_ms = gw.cfg->handshake_timeout_ms;
	gw.lcfg.keepalive_timeout_ms = gw.cfg->keepalive_timeout_ms;
	gw.backoff_ms = gw.cfg->redial_min_ms;
	gw.redial_ev = evtimer_new(gw.base, gw_redial_cb, &gw);
	gw.drain_ev = evsignal_new(gw.base, SIGUSR1, gw_drain_cb, &gw);
	if (gw.redial_ev == NULL || gw.drain_ev == NULL ||
	    evsignal_add(gw.drain_ev, NULL) < 0 || gw_listen(&gw) < 0)
		goto out;
	log_info("node %s (tls = %s) serving %zu services through relay %s",
		 gw.cfg->node_name, tls_mode_str((uint8_t)gw.cfg->tls),
		 gw.cfg->n_services, gw.cfg->relay);
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
	link_close_all("the gateway is stopping");
	for (i = 0; i < gw.n_listeners; i++)
		evconnlistener_free(gw.listeners[i].lis);
	free(gw.listeners);
	daemon_base_free(gw.base);
	tls_ctx_free(gw.tls);
	hook_reset();
	cfg_free(gw.cfg);
	tls_global_cleanup();
	return status;
}
