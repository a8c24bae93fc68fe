/*
 * tlsplex-relay: accepts links from gateways and connects each stream to
 * the backend of the service it names.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
	struct cfg *cfg;
	struct relay_backend *backends; /* one per cfg->services[i] */
	struct event_base *base;
	struct evdns_base *dns;
	struct tls_ctx *tls;
	struct evconnlistener *listener;
	struct event *drain_ev;
	struct link_config lcfg;
};

static int
relay_on_offer(void *ud, struct link *l, const struct neg_params *offer,
	       struct neg_params *mine, int *client_cert, uint16_t *reason)
{
	struct relay *r = ud;
	const struct cfg_peer *p = cfg_peer_find(r->cfg, offer->node);

	if (p == NULL)
		return 0;
	if (p->tls != CFG_UNSET)
		mine->tls_mode = (uint8_t)p->tls;
	if (p->min_tls != CFG_UNSET)
		mine->tls_min = (uint16_t)p->min_tls;
	if (p->max_tls != CFG_UNSET)
		mine->tls_max = (uint16_t)p->max_tls;
	if (p->client_cert != CFG_UNSET)
		*client_cert = p->client_cert;
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

/* Numeric backend addresses are resolved once; names are looked up for
 * each stream, so DNS changes take effect. */
static int
relay_resolve_backends(struct relay *r)
{
	struct evutil_addrinfo hints, *res;
	char host[256], port[32];
	size_t i;

	r->backends = calloc(r->cfg->n_services ? r->cfg->n_services : 1,
			     sizeof(*r->backends));
	if (r->backends == NULL) {
		log_err("out of memory");
		return -1;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = EVUTIL_AI_NUMERICHOST | EVUTIL_AI_NUMERICSERV;
	for (i = 0; i < r->cfg->n_services; i++) {
		const struct cfg_service *svc = &r->cfg->services[i];

		if (net_split(svc->backend, "127.0.0.1", host, sizeof(host), port,
			      sizeof(port)) < 0 ||
		    evutil_getaddrinfo(host, port, &hints, &res) != 0)
			continue;
		memcpy(&r->backends[i].ss, res->ai_addr, res->ai_addrlen);
		r->backends[i].sslen = (int)res->ai_addrlen;
		evutil_freeaddrinfo(res);
	}
	return 0;
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

int
main(int argc, char **argv)
{
	struct daemon_opts o;
	struct relay r;
	char err[512];
	int rc, fd, status = 1;

	log_init(prog, LOG_INFO);
	rc = daemon_parse_args(argc, argv, prog, &o);
	if (rc != 0)
		return rc > 0 ? 0 : 2;
	memset(&r, 0, sizeof(r));
	if (tls_global_init() < 0) {
		log_err("cannot initialise the TLS library");
		return 1;
	}
	r.cfg = daemon_load(prog, CFG_RELAY, &o);
	if (r.cfg == NULL)
		goto out;
	if (o.check_only) {
		status = 0;
		goto out;
	}
	if (r.cfg->cert[0] != '\0') {
		r.tls = tls_ctx_new(r.cfg, 1, err, sizeof(err));
		if (r.tls == NULL) {
			log_err("%s: %s", r.cfg->file, err);
			goto out;
		}
	}
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
	if (relay_resolve_backends(&r) < 0)
		goto out;
	daemon_params(r.cfg, &r.lcfg.params);
	r.lcfg.dialer = 0;
	r.lcfg.role = "relay";
	r.lcfg.tls = r.tls;
	r.lcfg.client_cert = r.cfg->client_cert;
	r.lcfg.negotiation_timeout_ms = r.cfg->negotiation_timeout_ms;
	r.lcfg.handshake_timeout_ms = r.cfg->handshake_timeout_ms;
	r.lcfg.keepalive_timeout_ms = r.cfg->keepalive_timeout_ms;
	fd = net_listen(r.cfg->listen, err, sizeof(err));
	if (fd < 0) {
		log_err("%s", err);
		goto out;
	}
	r.listener = evconnlistener_new(r.base, relay_accept_cb, &r,
					LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
					-1, fd);
	if (r.listener == NULL) {
		log_err("cannot listen on %s", r.cfg->listen);
		goto out;
	}
	evconnlistener_set_error_cb(r.listener, relay_accept_error_cb);
	r.drain_ev = evsignal_new(r.base, SIGUSR1, relay_drain_cb, &r);
	if (r.drain_ev == NULL || evsignal_add(r.drain_ev, NULL) < 0) {
		log_err("cannot watch SIGUSR1");
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
	if (r.listener != NULL)
		evconnlistener_free(r.listener);
	if (r.dns != NULL)
		evdns_base_free(r.dns, 0);
	daemon_base_free(r.base);
	tls_ctx_free(r.tls);
	hook_reset();
	free(r.backends);
	cfg_free(r.cfg);
	tls_global_cleanup();
	return status;
}
