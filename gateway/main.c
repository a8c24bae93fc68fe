/*
 * tlsplex-gateway: accepts plaintext clients, one listener per service,
 * and carries each connection as a stream over one link to the relay.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <stdint.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "config.h"
#include "daemon.h"
#include "partner.h"
#include "reload.h"
#include "hook.h"
#include "link.h"
#include "log.h"
#include "monitor.h"
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

/* One of the relay_links live links, and how it finds its relay. */
struct gw_slot {
	struct gateway *gw;
	size_t index;
	struct link *link;         /* NULL while down */
	size_t cur;                /* relay list entry of link, or of the
				      next dial */
	size_t tried;              /* relays failed since a link was up */
	uint32_t backoff_ms;       /* next redial delay before jitter */
	struct event *redial_ev;
	struct link *probe;        /* relay_failback: a link to the first
				      relay, being set up */
	struct event *failback_ev;
};

struct gateway {
	const char *path;          /* configuration file, for reloads */
	const struct daemon_opts *opts; /* the command line, for reloads */
	struct daemon_conf conf;   /* the running configuration */
	struct event_base *base;
	struct link_config lcfg;
	struct gw_slot slots[CFG_GW_LINKS_MAX]; /* the live links */
	size_t n_slots;            /* relay_links at start */
	int stopping;              /* SIGTERM: drain, no new work */
	struct gw_listener *listeners;
	size_t n_listeners;
	struct gw_held_list held;
	size_t n_held;
	struct event *drain_ev;    /* SIGUSR1 */
	struct event *reload_ev;   /* SIGHUP */
	struct gw_svc_list svcs;
	struct gw_listener *next_listeners; /* staged by a reload */
	struct evdns_base *dns;    /* reverse backends given by name; made
				      on first use */
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

static void gw_dial(struct gw_slot *sl);

/* Takes h off the held list and stops its timer; the caller owns h->fd. */
static void
gw_held_unlink(struct gateway *gw, struct gw_held *h)
{
	TAILQ_REMOVE(&gw->held, h, entry);
	gw->n_held--;
	h->st->clients--;
	event_free(h->timer);
}

/* A link's data: the slot it belongs to and the relay list entry it was
 * dialled to. */
static void
gw_link_tag(struct link *l, const struct gw_slot *sl, size_t i)
{
	link_set_data(l, (void *)(((uintptr_t)sl->index << 8 | i) + 1));
}

static size_t
gw_link_relay(const struct link *l)
{
	return ((uintptr_t)link_data(l) - 1) & 0xff;
}

static struct gw_slot *
gw_link_slot(struct gateway *gw, const struct link *l)
{
	return &gw->slots[((uintptr_t)link_data(l) - 1) >> 8];
}

/* "relay 2 of 3 (ADDRESS)", or "the relay (ADDRESS)" when there is one. */
static const char *
gw_relay_label(const struct gateway *gw, size_t i)
{
	static char buf[2][CFG_ADDR_MAX + 40];
	static int which;
	const struct cfg *c = gw->conf.cfg;
	char *b = buf[which ^= 1];

	if (i >= c->n_relays)
		snprintf(b, sizeof(buf[0]), "a relay no longer in the list");
	else if (c->n_relays == 1)
		snprintf(b, sizeof(buf[0]), "the relay (%s)", c->relays[i].addr);
	else
		snprintf(b, sizeof(buf[0]), "relay %zu of %zu (%s)", i + 1,
			 c->n_relays, c->relays[i].addr);
	return b;
}

/* " (live link 2 of 3)" when the gateway keeps several, else "". */
static const char *
gw_slot_label(const struct gw_slot *sl)
{
	static char buf[48];

	if (sl->gw->n_slots < 2)
		return "";
	snprintf(buf, sizeof(buf), " (live link %zu of %zu)", sl->index + 1,
		 sl->gw->n_slots);
	return buf;
}

/* The partner the gateway sees in relay i: the [peer NAME] named after
 * the name its certificate must carry, or the daemon section alone. */
static const struct partner *
gw_relay_partner(const struct gateway *gw, size_t i)
{
	const struct partners *ps = gw->conf.partners;
	const struct partner *p = NULL;

	if (i < gw->conf.cfg->n_relays)
		p = partners_find(ps, gw->conf.cfg->relays[i].server_name);
	return p != NULL ? p : &ps->deflt;
}

/* relay_switch: new links leave relay from for relay to. */
static void
gw_report_switch(struct gateway *gw, const char *kind, size_t from, size_t to,
		 const char *why)
{
	const struct cfg *c = gw->conf.cfg;
	struct hook_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.type = HOOK_RELAY_SWITCH;
	ev.switch_kind = kind;
	ev.relay_from = from < c->n_relays ? c->relays[from].addr : NULL;
	ev.relay_to = to < c->n_relays ? c->relays[to].addr : NULL;
	ev.reason = why;
	hook_emit(&ev);
}

/* The up link with the fewest open streams, or NULL when none is up. */
static struct link *
gw_pick_link(struct gateway *gw)
{
	struct link *best = NULL;
	size_t best_n = 0;

	for (size_t k = 0; k < gw->n_slots; k++) {
		struct link *l = gw->slots[k].link;
		size_t n;

		if (!link_is_up(l))
			continue;
		n = link_stream_count(l);
		if (best == NULL || n < best_n) {
			best = l;
			best_n = n;
		}
	}
	return best;
}

static void
gw_failback_arm(struct gw_slot *sl)
{
	const struct cfg *c = sl->gw->conf.cfg;
	struct timeval tv;

	if (c->relay_failback_ms == 0 || c->relay_order != CFG_RELAY_ORDERED ||
	    sl->gw->stopping || sl->link == NULL || sl->cur == 0 ||
	    sl->probe != NULL)
		return;
	tv.tv_sec = c->relay_failback_ms / 1000;
	tv.tv_usec = (suseconds_t)(c->relay_failback_ms % 1000) * 1000;
	evtimer_add(sl->failback_ev, &tv);
}

static void
gw_start_held(struct gateway *gw)
{
	struct gw_held *h;

	while ((h = TAILQ_FIRST(&gw->held)) != NULL && gw_pick_link(gw) != NULL) {
		gw_held_unlink(gw, h);
		gw_client_start(gw, h->svc, h->st, h->fd, h->who);
		free(h);
	}
}

static void
gw_on_up(void *ud, struct link *l)
{
	struct gateway *gw = ud;
	struct gw_slot *sl = gw_link_slot(gw, l);
	size_t i = gw_link_relay(l);

	if (gw->stopping) {
		link_drain(l, "the gateway is stopping");
		return;
	}
	if (l == sl->probe) {
		struct link *old = sl->link;
		size_t from = sl->cur;

		sl->probe = NULL;
		sl->link = l;
		sl->cur = i;
		log_info("link %llu to %s (node %s) is up (%s)%s: failback to "
			 "the preferred relay; new clients go to it%s",
			 (unsigned long long)link_id(l), gw_relay_label(gw, i),
			 link_peer_node(l), link_is_tls(l) ? "TLS" : "plaintext",
			 gw_slot_label(sl),
			 old != NULL ? ", the old link drains" : "");
		gw_report_switch(gw, "failback", from, i, "the first relay of "
				 "the list is up again");
		if (old != NULL)
			link_drain(old, "failback to the preferred relay");
		gw_start_held(gw);
		return;
	}
	if (l != sl->link)
		return;
	sl->backoff_ms = gw->conf.cfg->redial_min_ms;
	sl->tried = 0;
	log_info("link %llu to %s (node %s) is up (%s)%s; accepting clients%s",
		 (unsigned long long)link_id(l), gw_relay_label(gw, i),
		 link_peer_node(l), link_is_tls(l) ? "TLS" : "plaintext",
		 gw_slot_label(sl), gw->n_held ? ", starting the held ones" : "");
	gw_start_held(gw);
	gw_failback_arm(sl);
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
gw_random(void)
{
	uint32_t r = 0;

	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != sizeof(r))
		r = (uint32_t)time(NULL) * 2654435761u;
	return r;
}

static uint32_t
gw_jitter(uint32_t ms)
{
	/* Uniform in [ms/2, ms]. */
	return ms / 2 + (ms > 1 ? gw_random() % (ms / 2 + 1) : 0);
}

/* Where a slot's fresh link goes (at start, after a drain, or for a new
 * round after every relay failed): the first relay when ordered, the
 * next one in turn when spread. */
static void
gw_fresh_relay(struct gw_slot *sl)
{
	const struct cfg *c = sl->gw->conf.cfg;

	sl->tried = 0;
	if (c->relay_order == CFG_RELAY_SPREAD)
		sl->cur = (sl->cur + 1) % c->n_relays;
	else
		sl->cur = 0;
}

/*
 * The slot's link to relay sl->cur ended (or could not start, l NULL):
 * fail over to the next relay at once while some relay of the list has
 * not been tried since the slot's last link was up; after a whole round,
 * wait the redial backoff and start a fresh round.
 */
static void
gw_slot_down(struct gw_slot *sl, struct link *l)
{
	struct gateway *gw = sl->gw;
	const struct cfg *c = gw->conf.cfg;
	const char *why = l != NULL && link_reason(l)[0] ? link_reason(l) :
			  "no connection";
	struct timeval tv;
	size_t from = sl->cur;
	uint32_t delay;

	if (l != NULL && l == sl->probe) {
		sl->probe = NULL;
		log_info("failback: %s is still unavailable (%s); staying on "
			 "%s%s, next try in %u ms", gw_relay_label(gw, 0), why,
			 gw_relay_label(gw, sl->cur), gw_slot_label(sl),
			 c->relay_failback_ms);
		gw_failback_arm(sl);
		return;
	}
	if (l != NULL && sl->link != l)
		return; /* a drained link ended; its successor is in place */
	sl->link = NULL;
	if (gw->stopping || sl->redial_ev == NULL)
		return;
	evtimer_del(sl->failback_ev);
	if (sl->cur >= c->n_relays)
		sl->cur = 0; /* a reload shortened the list */
	sl->tried++;
	if (sl->tried < c->n_relays) {
		sl->cur = (sl->cur + 1) % c->n_relays;
		log_warn("failover: link to %s is down (%s)%s; dialling %s now",
			 gw_relay_label(gw, from), why, gw_slot_label(sl),
			 gw_relay_label(gw, sl->cur));
		gw_report_switch(gw, "failover", from, sl->cur, why);
		gw_dial(sl);
		return;
	}
	gw_fresh_relay(sl);
	delay = gw_jitter(sl->backoff_ms);
	if (c->n_relays > 1) {
		log_warn("link to %s is down (%s)%s; none of the %zu relays "
			 "answered, dialling %s in %u ms", gw_relay_label(gw, from),
			 why, gw_slot_label(sl), c->n_relays,
			 gw_relay_label(gw, sl->cur), delay);
		gw_report_switch(gw, "exhausted", from, sl->cur, why);
	} else {
		log_info("link to the relay is down%s; redialling in %u ms",
			 gw_slot_label(sl), delay);
	}
	tv.tv_sec = delay / 1000;
	tv.tv_usec = (suseconds_t)(delay % 1000) * 1000;
	evtimer_add(sl->redial_ev, &tv);
	if (sl->backoff_ms < c->redial_max_ms / 2)
		sl->backoff_ms *= 2;
	else
		sl->backoff_ms = c->redial_max_ms;
}

static void
gw_on_down(void *ud, struct link *l)
{
	gw_slot_down(gw_link_slot(ud, l), l);
}

/*
 * A stream the relay opened (a reverse service): connected only to a
 * service this gateway configured with a backend, so the relay cannot
 * make the gateway connect anywhere else.
 */
static struct bufferevent *
gw_on_stream(void *ud, struct link *l, const char *service, uint32_t *code)
{
	struct gateway *gw = ud;
	const struct cfg_service *svc = cfg_service_find(gw->conf.cfg, service);
	struct evutil_addrinfo hints, *res = NULL;
	struct bufferevent *bev;
	char host[256], port[32];
	int rc = -1;

	*code = MUX_C_REFUSED;
	if (svc == NULL || !cfg_service_reverse(gw->conf.cfg, svc)) {
		log_warn("link %llu (node %s): the relay opened a stream for "
			 "service '%s', which is not a reverse service here; "
			 "refused (the relay may open streams only to a "
			 "[service %s] with backend)",
			 (unsigned long long)link_id(l), link_peer_node(l),
			 service, service);
		return NULL;
	}
	if (cfg_tls_wire(svc->tls) == TLS_MODE_REQUIRE && !link_is_tls(l)) {
		log_warn("link %llu (node %s): stream for reverse service '%s' "
			 "refused: the service requires TLS and this link is "
			 "plaintext", (unsigned long long)link_id(l),
			 link_peer_node(l), service);
		*code = MUX_C_TLS_REQUIRED;
		return NULL;
	}
	*code = MUX_C_CONNECT_FAILED;
	if (net_split(svc->backend, "127.0.0.1", host, sizeof(host), port,
		      sizeof(port)) < 0)
		goto fail;
	bev = bufferevent_socket_new(gw->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		*code = MUX_C_INTERNAL;
		return NULL;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = EVUTIL_AI_NUMERICHOST | EVUTIL_AI_NUMERICSERV;
	if (evutil_getaddrinfo(host, port, &hints, &res) == 0) {
		rc = bufferevent_socket_connect(bev, res->ai_addr,
						(int)res->ai_addrlen);
		evutil_freeaddrinfo(res);
	} else {
		if (gw->dns == NULL)
			gw->dns = evdns_base_new(gw->base,
						 EVDNS_BASE_INITIALIZE_NAMESERVERS);
		if (gw->dns != NULL)
			rc = bufferevent_socket_connect_hostname(bev, gw->dns,
								 AF_UNSPEC, host,
								 atoi(port));
	}
	if (rc < 0) {
		bufferevent_free(bev);
		goto fail;
	}
	return bev;
fail:
	log_warn("reverse service %s: cannot start connecting to backend %s",
		 service, svc->backend);
	return NULL;
}

/* The slot's link takes no new streams: dial its successor now. */
static void
gw_on_draining(void *ud, struct link *l)
{
	struct gateway *gw = ud;
	struct gw_slot *sl = gw_link_slot(gw, l);
	size_t from = gw_link_relay(l);

	if (sl->link != l || gw->stopping)
		return;
	sl->link = NULL;
	evtimer_del(sl->redial_ev);
	evtimer_del(sl->failback_ev);
	gw_fresh_relay(sl);
	log_info("link %llu to %s is draining%s; dialling %s for new clients",
		 (unsigned long long)link_id(l), gw_relay_label(gw, from),
		 gw_slot_label(sl), gw_relay_label(gw, sl->cur));
	gw_dial(sl);
}

/* The relay's identity beyond server_name, and the sticky state. */
static int
gw_on_verify(void *ud, struct link *l, struct tls_conn *tls,
	     const struct tls_info *info, char *why, size_t whylen)
{
	struct gateway *gw = ud;
	const struct cfg *c = gw->conf.cfg;
	size_t i = gw_link_relay(l);
	const struct partner *p = gw_relay_partner(gw, i);

	if (partner_verify(p, tls, info, link_peer_node(l), why, whylen) < 0)
		return -1;
	if (p->tls_sticky && i < c->n_relays)
		daemon_sticky_remember(gw->conf.sticky,
				       c->relays[i].server_name);
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

/* Starts a link for slot sl to relay i with its partner's settings; NULL
 * when the address does not resolve or the link cannot start (logged). */
static struct link *
gw_link_to(struct gw_slot *sl, size_t i)
{
	struct gateway *gw = sl->gw;
	const struct cfg_relay *r = &gw->conf.cfg->relays[i];
	const struct partner *p = gw_relay_partner(gw, i);
	struct sockaddr_storage ss;
	struct link_config lc;
	struct link *l;
	socklen_t sl_len;
	char err[512];

	if (net_resolve(r->addr, 0, &ss, &sl_len, err, sizeof(err)) < 0) {
		log_err("%s: %s", gw_relay_label(gw, i), err);
		return NULL;
	}
	lc = gw->lcfg;
	lc.server_name = r->server_name;
	partner_apply(p, &lc.params, NULL);
	lc.tls_first = p->tls_first;
	if (partner_sticky_rule(p, sticky_has(gw->conf.sticky, r->server_name),
				NULL, &lc.params) == PARTNER_STICKY_RAISE)
		log_info("relay %s has completed TLS with this gateway before "
			 "(tls_sticky): offering tls = require", r->server_name);
	log_info("dialling %s%s", gw_relay_label(gw, i), gw_slot_label(sl));
	l = link_new(gw->base, -1, (struct sockaddr *)&ss, (int)sl_len, &lc,
		     &gw_ops, gw);
	if (l != NULL)
		gw_link_tag(l, sl, i);
	return l;
}

static void
gw_dial(struct gw_slot *sl)
{
	if (sl->cur >= sl->gw->conf.cfg->n_relays)
		sl->cur = 0;
	sl->link = gw_link_to(sl, sl->cur);
	if (sl->link == NULL)
		gw_slot_down(sl, NULL);
}

/* relay_failback: dial the preferred relay beside the slot's running
 * link; it takes over when it comes up (gw_on_up). */
static void
gw_failback_cb(evutil_socket_t fd, short what, void *arg)
{
	struct gw_slot *sl = arg;
	struct gateway *gw = sl->gw;

	if (gw->stopping || sl->probe != NULL || sl->cur == 0 ||
	    !link_is_up(sl->link))
		return;
	log_info("failback: trying %s while %s carries the clients%s",
		 gw_relay_label(gw, 0), gw_relay_label(gw, sl->cur),
		 gw_slot_label(sl));
	sl->probe = gw_link_to(sl, 0);
	if (sl->probe == NULL)
		gw_failback_arm(sl);
}

/* Starts a stream for a client on the least busy up link, or holds or
 * refuses it. */
static void
gw_client_start(struct gateway *gw, const struct cfg_service *svc,
		struct gw_svc_state *st, evutil_socket_t fd, const char *who)
{
	struct link *l = gw_pick_link(gw);
	struct bufferevent *bev;

	if (l == NULL) {
		gw_client_hold(gw, svc, st, fd, who);
		return;
	}
	if (cfg_tls_wire(svc->tls) == TLS_MODE_REQUIRE && !link_is_tls(l)) {
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
	if (link_open_stream(l, svc->name, bev, &st->clients) < 0)
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

/* SIGTERM: no new clients (the listeners close, held clients are
 * refused), no new links, no reloads; the links drain. */
static uint32_t
gw_quiesce(void *ud)
{
	struct gateway *gw = ud;
	size_t i;

	gw->stopping = 1;
	for (i = 0; i < gw->n_slots; i++) {
		struct gw_slot *sl = &gw->slots[i];

		evtimer_del(sl->redial_ev);
		evtimer_del(sl->failback_ev);
		if (sl->probe != NULL)
			link_close(sl->probe, "the gateway is stopping");
		sl->probe = NULL;
	}
	event_del(gw->reload_ev);
	event_del(gw->drain_ev);
	for (i = 0; i < gw->n_listeners; i++)
		if (gw->listeners[i].lis != NULL) {
			evconnlistener_free(gw->listeners[i].lis);
			gw->listeners[i].lis = NULL;
		}
	if (gw->n_held > 0)
		log_warn("refusing %zu held clients: the gateway is stopping",
			 gw->n_held);
	while (!TAILQ_EMPTY(&gw->held))
		gw_held_free(gw, TAILQ_FIRST(&gw->held));
	return gw->conf.cfg->drain_timeout_ms;
}

static void
gw_drain_cb(evutil_socket_t sig, short what, void *arg)
{
	struct gateway *gw = arg;
	size_t i, n = 0;

	for (i = 0; i < gw->n_slots; i++) {
		struct link *l = gw->slots[i].link;

		if (!link_is_up(l))
			continue;
		n++;
		link_drain(l, "operator asked for a fresh link (SIGUSR1)");
	}
	if (n == 0)
		log_info("SIGUSR1: no link is up; nothing to drain");
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
		if (cfg_service_reverse(c, gl->svc))
			continue; /* the relay opens its streams */
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
		if (next[i].lis != NULL)
			evconnlistener_set_cb(next[i].lis, gw_accept_cb,
					      &next[i]);
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

/* Link settings for new links, from the running configuration; the
 * relay's partner (gw_relay_partner) is applied per dial, because the
 * gateway offers before it learns the relay's node name. */
static void
gw_conf_install(struct gateway *gw)
{
	daemon_link_config(gw->conf.cfg, gw->conf.tls, &gw->lcfg);
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

/* A reload that gave the gateway its first reverse service, or took its
 * last away: the running links announced the old state (REVERSE), so
 * they drain and fresh links announce the new one. */
static void
gw_reverse_changed(struct gateway *gw, const struct cfg *cur,
		   const struct cfg *old)
{
	int now = cfg_reverse_count(cur) > 0;
	size_t i;

	if (now == (cfg_reverse_count(old) > 0))
		return;
	for (i = 0; i < gw->n_slots; i++) {
		struct link *l = gw->slots[i].link;

		if (!link_is_up(l))
			continue;
		log_info("SIGHUP: this gateway %s reverse services now; a fresh "
			 "link announces it", now ? "has" : "has no");
		link_drain(l, now ? "reverse services were added" :
			   "the last reverse service was removed");
	}
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
		if (svc == NULL || cfg_service_reverse(cur->cfg, svc)) {
			log_warn("client %s refused: service %s was removed by "
				 "the reload", h->who, h->svc->name);
			gw_held_free(gw, h);
			continue;
		}
		h->svc = svc;
	}
	gw_conf_install(gw);
	daemon_monitor_reload(cur->cfg);
	if (cur->cfg->relay_links != gw->n_slots)
		log_warn("SIGHUP: relay_links = %u applies when the gateway "
			 "starts; it keeps %zu live links", cur->cfg->relay_links,
			 gw->n_slots);
	gw_reverse_changed(gw, cur->cfg, old->cfg);
	log_info("SIGHUP: configuration reloaded from %s: %zu services, relays "
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
	size_t i, start;
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
	gw.n_slots = gw.conf.cfg->relay_links;
	start = gw.conf.cfg->relay_order == CFG_RELAY_SPREAD ?
		gw_random() % gw.conf.cfg->n_relays : 0;
	for (i = 0; i < gw.n_slots; i++) {
		struct gw_slot *sl = &gw.slots[i];

		sl->gw = &gw;
		sl->index = i;
		sl->backoff_ms = gw.conf.cfg->redial_min_ms;
		/* spread: the live links start on different relays */
		sl->cur = gw.conf.cfg->relay_order == CFG_RELAY_SPREAD ?
			  (start + i) % gw.conf.cfg->n_relays : 0;
		sl->redial_ev = evtimer_new(gw.base, gw_redial_cb, sl);
		sl->failback_ev = evtimer_new(gw.base, gw_failback_cb, sl);
		if (sl->redial_ev == NULL || sl->failback_ev == NULL)
			goto out;
	}
	gw.drain_ev = evsignal_new(gw.base, SIGUSR1, gw_drain_cb, &gw);
	gw.reload_ev = evsignal_new(gw.base, SIGHUP, gw_reload_cb, &gw);
	if (gw.drain_ev == NULL || gw.reload_ev == NULL ||
	    evsignal_add(gw.drain_ev, NULL) < 0 ||
	    evsignal_add(gw.reload_ev, NULL) < 0)
		goto out;
	if (gw_listeners_build(&gw, gw.conf.cfg, &next) < 0)
		goto out;
	gw_listeners_install(&gw, gw.conf.cfg, next);
	daemon_set_stop(gw_quiesce, &gw);
	log_info("node %s (tls = %s) serving %zu services through relay %s%s",
		 gw.conf.cfg->node_name, cfg_tls_name(gw.conf.cfg->tls),
		 gw.conf.cfg->n_services, gw.conf.cfg->relay,
		 gw.conf.cfg->n_relays < 2 ? "" :
		 gw.conf.cfg->relay_order == CFG_RELAY_SPREAD ?
		 " (spread)" : " (ordered)");
	if (daemon_monitor_start(gw.base, gw.conf.cfg) < 0)
		goto out;
	daemon_report(HOOK_DAEMON_STARTED, gw.opts->config, NULL, NULL);
	for (i = 0; i < gw.n_slots; i++)
		gw_dial(&gw.slots[i]);
	event_base_dispatch(gw.base);
	status = 0;
out:
	gw.stopping = 1;
	for (i = 0; i < CFG_GW_LINKS_MAX; i++) {
		struct gw_slot *sl = &gw.slots[i];

		if (sl->redial_ev != NULL)
			event_free(sl->redial_ev);
		sl->redial_ev = NULL;
		if (sl->failback_ev != NULL)
			event_free(sl->failback_ev);
		sl->failback_ev = NULL;
	}
	while (!TAILQ_EMPTY(&gw.held))
		gw_held_free(&gw, TAILQ_FIRST(&gw.held));
	if (gw.drain_ev != NULL)
		event_free(gw.drain_ev);
	if (gw.reload_ev != NULL)
		event_free(gw.reload_ev);
	link_close_all("the gateway is stopping");
	daemon_monitor_stop();
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
	if (gw.dns != NULL)
		evdns_base_free(gw.dns, 0);
	daemon_base_free(gw.base);
	hook_reset();
	daemon_conf_free(&gw.conf, NULL);
	tls_global_cleanup();
	return status;
}
