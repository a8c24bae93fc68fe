/*
 * The relay's reverse services; see reverse.h.  The checks before a
 * stream is opened are the forward services' (io/guard.c stage 1 on the
 * listener, max_clients, tls = require, client_cert = require), applied
 * here because here the relay is the side that opens.
 */
#include "reverse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "config.h"
#include "guard.h"
#include "link.h"
#include "log.h"
#include "neg.h"
#include "net.h"

/* What is kept per service name across reloads: the live clients and
 * the listener's guard (its refusal counts). */
struct rev_svc {
	TAILQ_ENTRY(rev_svc) entry;
	char name[CFG_NAME_MAX + 1];
	unsigned clients;
	struct guard *guard;
};
TAILQ_HEAD(rev_svc_list, rev_svc);

struct rev_lis {
	struct rev *r;
	const struct cfg_service *svc;
	struct rev_svc *st;
	struct evconnlistener *lis;
	int taken;                 /* taken over from the running set */
};

struct rev {
	struct event_base *base;
	rev_pick_fn pick;
	void *ud;
	struct rev_lis *lis;       /* running: one per service of cfg */
	size_t n;
	struct rev_lis *next;      /* staged by rev_stage() */
	size_t next_n;
	struct rev_svc_list svcs;
};

struct rev *
rev_new(struct event_base *base, rev_pick_fn pick, void *ud)
{
	struct rev *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	r->base = base;
	r->pick = pick;
	r->ud = ud;
	TAILQ_INIT(&r->svcs);
	return r;
}

/* The state kept for service name, made on first use; NULL when out of
 * memory (logged). */
static struct rev_svc *
rev_svc_state(struct rev *r, const char *name)
{
	struct rev_svc *st;
	char what[CFG_NAME_MAX + 40], inner[CFG_NAME_MAX + 16];

	TAILQ_FOREACH(st, &r->svcs, entry)
		if (strcmp(st->name, name) == 0)
			return st;
	snprintf(what, sizeof(what), "reverse service %s", name);
	snprintf(inner, sizeof(inner), "[service %s]", name);
	st = calloc(1, sizeof(*st));
	if (st == NULL || (st->guard = guard_new(what, inner, NULL, name)) == NULL) {
		log_err("reverse service %s: out of memory", name);
		free(st);
		return NULL;
	}
	snprintf(st->name, sizeof(st->name), "%s", name);
	TAILQ_INSERT_TAIL(&r->svcs, st, entry);
	return st;
}

/* Resets a refused client and logs why through the listener's guard
 * (rate-limited, counted, reported as link_refused); name is the
 * refusal's short name in the event. */
static void
rev_refuse(struct rev_svc *st, evutil_socket_t fd, const struct sockaddr *sa,
	   const char *name, const char *why)
{
	guard_refuse(st->guard, sa, name, why);
	net_close_reset(fd);
}

/*
 * A client of a reverse service: the TCP-stage guard and max_clients,
 * then the gateway's link, which must be up, have announced reverse
 * services, and be fit for the service (TLS, a verified certificate).
 * Each refusal resets the client and is logged, rate-limited, by the
 * listener's guard.
 */
static void
rev_accept_cb(struct evconnlistener *lis, evutil_socket_t fd,
	      struct sockaddr *sa, int salen, void *arg)
{
	struct rev_lis *rl = arg;
	const struct cfg_service *svc = rl->svc;
	struct rev_svc *st = rl->st;
	struct bufferevent *bev;
	struct link *l;
	char why[CFG_NAME_MAX * 2 + 160];

	evutil_make_socket_closeonexec(fd);
	if (guard_admit(st->guard, sa, &svc->allow, &svc->deny, NULL,
			NULL) < 0) {
		net_close_reset(fd);
		return;
	}
	if (st->clients >= svc->max_clients) {
		snprintf(why, sizeof(why), "max_clients (%u) clients are "
			 "connected", svc->max_clients);
		rev_refuse(st, fd, sa, "max_clients", why);
		return;
	}
	l = rl->r->pick(rl->r->ud, svc->gateway);
	if (l == NULL) {
		snprintf(why, sizeof(why), "gateway %s has no link up to this "
			 "relay", svc->gateway);
		rev_refuse(st, fd, sa, "no_link", why);
		return;
	}
	if (!link_reverse(l)) {
		snprintf(why, sizeof(why), "link %llu from gateway %s did not "
			 "announce reverse services (a version without them, "
			 "or no [service %s] with backend there)",
			 (unsigned long long)link_id(l), svc->gateway,
			 svc->name);
		rev_refuse(st, fd, sa, "no_reverse", why);
		return;
	}
	if (cfg_tls_wire(svc->tls) == TLS_MODE_REQUIRE && !link_is_tls(l)) {
		snprintf(why, sizeof(why), "the service requires TLS and link "
			 "%llu from gateway %s is plaintext",
			 (unsigned long long)link_id(l), svc->gateway);
		rev_refuse(st, fd, sa, "tls_required", why);
		return;
	}
	if (svc->client_cert == CERT_WANT_REQUIRE && !link_peer_has_cert(l)) {
		snprintf(why, sizeof(why), "the service requires a client "
			 "certificate and gateway %s presented none on link "
			 "%llu", svc->gateway, (unsigned long long)link_id(l));
		rev_refuse(st, fd, sa, "client_cert", why);
		return;
	}
	bev = bufferevent_socket_new(rl->r->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		log_err("reverse service %s: out of memory", svc->name);
		net_close_reset(fd);
		return;
	}
	/* On failure the link logged why, and closed the client. */
	link_open_stream(l, svc->name, bev, &st->clients);
}

static void
rev_accept_error_cb(struct evconnlistener *lis, void *arg)
{
	struct rev_lis *rl = arg;

	log_err("reverse service %s: accepting clients failed: %s; still "
		"listening", rl->svc->name,
		evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

/* Hands listeners that next took over back to the running set and
 * closes the ones it opened. */
static void
rev_drop_next(struct rev *r)
{
	for (size_t i = 0; i < r->next_n; i++) {
		struct rev_lis *nl = &r->next[i];

		if (nl->lis == NULL)
			continue;
		if (!nl->taken) {
			evconnlistener_free(nl->lis);
			continue;
		}
		for (size_t j = 0; j < r->n; j++)
			if (r->lis[j].lis == NULL && r->lis[j].svc != NULL &&
			    strcmp(r->lis[j].svc->listen, nl->svc->listen) == 0) {
				r->lis[j].lis = nl->lis;
				evconnlistener_set_cb(nl->lis, rev_accept_cb,
						      &r->lis[j]);
				break;
			}
	}
	free(r->next);
	r->next = NULL;
	r->next_n = 0;
}

int
rev_stage(struct rev *r, const struct cfg *next)
{
	char err[512];
	size_t i, j;
	int fd;

	r->next = calloc(next->n_services ? next->n_services : 1,
			 sizeof(*r->next));
	if (r->next == NULL) {
		log_err("out of memory");
		return -1;
	}
	r->next_n = next->n_services;
	for (i = 0; i < next->n_services; i++) {
		struct rev_lis *nl = &r->next[i];

		nl->r = r;
		if (!cfg_service_reverse(next, &next->services[i]))
			continue;
		nl->svc = &next->services[i];
		nl->st = rev_svc_state(r, nl->svc->name);
		if (nl->st == NULL)
			goto fail;
		for (j = 0; j < r->n; j++)
			if (r->lis[j].lis != NULL &&
			    strcmp(r->lis[j].svc->listen, nl->svc->listen) == 0)
				break;
		if (j < r->n) {
			nl->lis = r->lis[j].lis;
			nl->taken = 1;
			r->lis[j].lis = NULL;
			continue;
		}
		fd = net_listen(nl->svc->listen, err, sizeof(err));
		if (fd < 0) {
			log_err("reverse service %s: %s", nl->svc->name, err);
			goto fail;
		}
		nl->lis = evconnlistener_new(r->base, rev_accept_cb, nl,
					     LEV_OPT_CLOSE_ON_FREE |
					     LEV_OPT_CLOSE_ON_EXEC, -1, fd);
		if (nl->lis == NULL) {
			log_err("reverse service %s: cannot listen on %s",
				nl->svc->name, nl->svc->listen);
			close(fd);
			goto fail;
		}
		evconnlistener_set_error_cb(nl->lis, rev_accept_error_cb);
		log_info("reverse service %s: listening for clients on %s; "
			 "streams go to gateway %s", nl->svc->name,
			 nl->svc->listen, nl->svc->gateway);
	}
	for (i = 0; i < r->next_n; i++)
		if (r->next[i].lis != NULL)
			evconnlistener_set_cb(r->next[i].lis, rev_accept_cb,
					      &r->next[i]);
	return 0;
fail:
	rev_drop_next(r);
	return -1;
}

void
rev_abandon(struct rev *r)
{
	rev_drop_next(r);
}

void
rev_commit(struct rev *r)
{
	for (size_t i = 0; i < r->n; i++)
		if (r->lis[i].lis != NULL)
			evconnlistener_free(r->lis[i].lis);
	free(r->lis);
	r->lis = r->next;
	r->n = r->next_n;
	r->next = NULL;
	r->next_n = 0;
	for (size_t i = 0; i < r->n; i++)
		r->lis[i].taken = 0;
}

void
rev_close(struct rev *r)
{
	for (size_t i = 0; r != NULL && i < r->n; i++)
		if (r->lis[i].lis != NULL) {
			evconnlistener_free(r->lis[i].lis);
			r->lis[i].lis = NULL;
		}
}

void
rev_free(struct rev *r)
{
	struct rev_svc *st;

	if (r == NULL)
		return;
	rev_drop_next(r);
	rev_close(r);
	free(r->lis);
	while ((st = TAILQ_FIRST(&r->svcs)) != NULL) {
		TAILQ_REMOVE(&r->svcs, st, entry);
		guard_free(st->guard);
		free(st);
	}
	free(r);
}
