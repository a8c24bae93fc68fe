/*
 * tlsplex-relay: accepts links from gateways and connects each stream to
 * the backend of the service it names.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "config.h"
#include "daemon.h"
#include "hook.h"
#include "link.h"
#include "log.h"
#include "frame.h"
#include "net.h"
#include "tlsio.h"

static const char *const prog = "tlsplex-relay";

/* A backend address resolved once at start, when it is numeric. */
struct relay_backend {
	struct sockaddr_storage ss;
	int sslen;                 /* 0: resolve by name for each stream */
};

struct relay {
	const char *path;          /* configuration file, for reloads */
	struct cfg *cfg;
	struct relay_backend *backends; /* one per cfg->services[i] */
	struct event_base *base;
	struct evdns_base *dns;
	struct tls_ctx *tls;
	struct evconnlistener *listener;
	struct event *drain_ev;
	struct event *reload_ev;
	struct link_config lcfg;
};

/* What a configuration brings with it; replaced as a whole on reload. */
struct relay_conf {
	struct cfg *cfg;
	struct tls_ctx *tls;
	struct relay_backend *backends;
};

static int
relay_on_offer(void *ud, struct link *l, const struct neg_params *offer,
	       struct neg_params *mine, int *client_cert, uint16_t *reason)
{
	struct relay *r = ud;
	const struct cfg_peer *p = cfg_peer_find(r->cfg, offer->node);

	if (p == NULL)
		return 0;
	daemon_apply_peer(p, mine, client_cert);
	log_debug("link %llu: applying [peer %s] settings",
		  (unsigned long long)link_id(l), p->name);
	return 0;
}

static struct bufferevent *
relay_on_stream(void *ud, struct link *l, const char *service, uint32_t *code)
{
	struct relay *r = ud;
	const struct cfg_service *svc = cfg_service_find(r->cfg, service);
	struct bufferevent *bev;
	struct relay_backend *be;
	char host[256], port[32];
	int rc;

	if (svc == NULL) {
		log_warn("link %llu (node %s): stream for unknown service '%s' "
			 "refused; add a [service %s] section to serve it",
			 (unsigned long long)link_id(l), link_peer_node(l),
			 service, service);
		*code = MUX_C_REFUSED;
		return NULL;
	}
	if (svc->tls == TLS_MODE_REQUIRE && !link_is_tls(l)) {
		log_warn("link %llu (node %s): stream for service '%s' refused: "
			 "the service requires TLS and this link is plaintext",
			 (unsigned long long)link_id(l), link_peer_node(l),
			 service);
		*code = MUX_C_TLS_REQUIRED;
		return NULL;
	}
	bev = bufferevent_socket_new(r->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		*code = MUX_C_INTERNAL;
		return NULL;
	}
	be = &r->backends[svc - r->cfg->services];
	if (be->sslen > 0)
		rc = bufferevent_socket_connect(bev, (struct sockaddr *)&be->ss,
						be->sslen);
	else if (net_split(svc->backend, "127.0.0.1", host, sizeof(host), port,
			   sizeof(port)) == 0)
		rc = bufferevent_socket_connect_hostname(bev, r->dns, AF_UNSPEC,
							 host, atoi(port));
	else
		rc = -1;
	if (rc < 0) {
		log_warn("service %s: cannot start connecting to backend %s",
			 service, svc->backend);
		bufferevent_free(bev);
		*code = MUX_C_CONNECT_FAILED;
		return NULL;
	}
	return bev;
}

/* Numeric backend addresses are resolved once per configuration; names
 * are looked up for each stream, so DNS changes take effect. */
static struct relay_backend *
relay_resolve_backends(const struct cfg *c)
{
	struct evutil_addrinfo hints, *res;
	struct relay_backend *be;
	char host[256], port[32];
	size_t i;

	be = calloc(c->n_services ? c->n_services : 1, sizeof(*be));
	if (be == NULL)
		return NULL;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = EVUTIL_AI_NUMERICHOST | EVUTIL_AI_NUMERICSERV;
	for (i = 0; i < c->n_services; i++) {
		if (net_split(c->services[i].backend, "127.0.0.1", host,
			      sizeof(host), port, sizeof(port)) < 0 ||
		    evutil_getaddrinfo(host, port, &hints, &res) != 0)
			continue;
		memcpy(&be[i].ss, res->ai_addr, res->ai_addrlen);
		be[i].sslen = (int)res->ai_addrlen;
		evutil_freeaddrinfo(res);
	}
	return be;
}

static void
relay_conf_free(struct relay_conf *rc)
{
	tls_ctx_free(rc->tls);
	free(rc->backends);
	cfg_free(rc->cfg);
	memset(rc, 0, sizeof(*rc));
}

/* Builds the TLS context and backend table for rc->cfg.  Returns 0, or
 * -1 with the reason logged. */
static int
relay_conf_build(struct relay_conf *rc)
{
	char err[512];

	if (rc->cfg->cert[0] != '\0') {
		rc->tls = tls_ctx_new(rc->cfg, 1, err, sizeof(err));
		if (rc->tls == NULL) {
			log_err("%s: %s", rc->cfg->file, err);
			return -1;
		}
	}
	rc->backends = relay_resolve_backends(rc->cfg);
	if (rc->backends == NULL) {
		log_err("out of memory");
		return -1;
	}
	return 0;
}

/* Makes rc the running configuration for new links and streams. */
static void
relay_conf_install(struct relay *r, struct relay_conf *rc)
{
	r->cfg = rc->cfg;
	r->tls = rc->tls;
	r->backends = rc->backends;
	daemon_link_config(r->cfg, r->tls, &r->lcfg);
}

static const struct link_ops relay_ops = {
	.on_offer = relay_on_offer,
	.on_stream = relay_on_stream,
};

static void
relay_accept_cb(struct evconnlistener *lis, evutil_socket_t fd,
		struct sockaddr *sa, int salen, void *arg)
{
	struct relay *r = arg;

	evutil_make_socket_closeonexec(fd);
	link_new(r->base, fd, NULL, 0, &r->lcfg, &relay_ops, r);
}

static void
relay_drain_cb(evutil_socket_t sig, short what, void *arg)
{
	log_info("SIGUSR1: draining %zu links; gateways move new streams to "
		 "fresh links", link_count());
	link_drain_all("the relay asked for a fresh link");
}

static void
relay_accept_error_cb(struct evconnlistener *lis, void *arg)
{
	log_err("accepting links failed: %s; still listening",
		evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

static struct evconnlistener *
relay_listen(struct relay *r, const char *addr)
{
	struct evconnlistener *lis;
	char err[512];
	int fd;

	fd = net_listen(addr, err, sizeof(err));
	if (fd < 0) {
		log_err("%s", err);
		return NULL;
	}
	lis = evconnlistener_new(r->base, relay_accept_cb, r,
				 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
				 -1, fd);
	if (lis == NULL) {
		log_err("cannot listen on %s", addr);
		close(fd);
		return NULL;
	}
	evconnlistener_set_error_cb(lis, relay_accept_error_cb);
	return lis;
}

/* SIGHUP: load the file again.  New links and streams get the new
 * settings; running links keep theirs.  A file that does not validate,
 * or whose listener or hook file cannot be opened, changes nothing. */
static void
relay_reload_cb(evutil_socket_t sig, short what, void *arg)
{
	struct relay *r = arg;
	struct relay_conf next, old;
	struct evconnlistener *lis = NULL;
	char err[1024];

	memset(&next, 0, sizeof(next));
	next.cfg = cfg_load(r->path, CFG_RELAY, err, sizeof(err));
	if (next.cfg == NULL) {
		log_err("SIGHUP: reload rejected, the running configuration "
			"stays: %s", err);
		return;
	}
	if (relay_conf_build(&next) < 0)
		goto reject;
	if (strcmp(next.cfg->listen, r->cfg->listen) != 0 &&
	    (lis = relay_listen(r, next.cfg->listen)) == NULL)
		goto reject;
	if (strcmp(next.cfg->hook_file, r->cfg->hook_file) != 0 &&
	    daemon_open_hooks(next.cfg) < 0)
		goto reject;
	if (lis != NULL) {
		evconnlistener_free(r->listener);
		r->listener = lis;
	}
	old.cfg = r->cfg;
	old.tls = r->tls;
	old.backends = r->backends;
	relay_conf_install(r, &next);
	relay_conf_free(&old);
	log_set_level(r->cfg->log_level);
	log_info("SIGHUP: configuration reloaded from %s: %zu services, %zu "
		 "peers, listening on %s; running links keep their settings",
		 r->path, r->cfg->n_services, r->cfg->n_peers, r->cfg->listen);
	return;
reject:
	if (lis != NULL)
		evconnlistener_free(lis);
	relay_conf_free(&next);
	log_err("SIGHUP: reload rejected, the running configuration stays");
}

int
main(int argc, char **argv)
{
	struct daemon_opts o;
	struct relay r;
	struct relay_conf boot;
	int status;

	memset(&r, 0, sizeof(r));
	memset(&boot, 0, sizeof(boot));
	boot.cfg = daemon_start(argc, argv, prog, CFG_RELAY, &o, &status);
	if (boot.cfg == NULL)
		return status;
	status = 1;
	r.path = o.config;
	if (relay_conf_build(&boot) < 0) {
		relay_conf_free(&boot);
		goto out;
	}
	relay_conf_install(&r, &boot);
	if (daemon_open_hooks(r.cfg) < 0)
		goto out;
	r.base = daemon_base_new();
	if (r.base == NULL) {
		log_err("cannot create the event loop");
		goto out;
	}
	r.dns = evdns_base_new(r.base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
	if (r.dns == NULL)
		r.dns = evdns_base_new(r.base, 0);
	if (r.dns == NULL) {
		log_err("cannot create the DNS resolver");
		goto out;
	}
	r.listener = relay_listen(&r, r.cfg->listen);
	if (r.listener == NULL)
		goto out;
	r.drain_ev = evsignal_new(r.base, SIGUSR1, relay_drain_cb, &r);
	r.reload_ev = evsignal_new(r.base, SIGHUP, relay_reload_cb, &r);
	if (r.drain_ev == NULL || evsignal_add(r.drain_ev, NULL) < 0 ||
	    r.reload_ev == NULL || evsignal_add(r.reload_ev, NULL) < 0) {
		log_err("cannot watch SIGUSR1 and SIGHUP");
		goto out;
	}
	log_info("node %s listening for links on %s (tls = %s, client_cert = "
		 "%s, %zu services)", r.cfg->node_name, r.cfg->listen,
		 tls_mode_str((uint8_t)r.cfg->tls),
		 r.cfg->client_cert == 2 ? "require" :
		 r.cfg->client_cert == 1 ? "optional" : "none",
		 r.cfg->n_services);
	event_base_dispatch(r.base);
	link_close_all("the relay is stopping");
	status = 0;
out:
	if (r.drain_ev != NULL)
		event_free(r.drain_ev);
	if (r.reload_ev != NULL)
		event_free(r.reload_ev);
	if (r.listener != NULL)
		evconnlistener_free(r.listener);
	if (r.dns != NULL)
		evdns_base_free(r.dns, 0);
	daemon_base_free(r.base);
	boot.cfg = r.cfg;
	boot.tls = r.tls;
	boot.backends = r.backends;
	relay_conf_free(&boot);
	hook_reset();
	tls_global_cleanup();
	return status;
}
