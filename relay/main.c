/*
 * tlsplex-relay: accepts links from gateways and connects each stream to
 * the backend of the service it names.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

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
#include "reverse.h"
#include "sticky.h"
#include "tlsio.h"

static const char *const prog = "tlsplex-relay";

/* A backend address resolved once at start, when it is numeric. */
struct relay_backend {
	struct sockaddr_storage ss;
	int sslen;                 /* 0: resolve by name for each stream */
};

/* What the relay knows of one link: where it came from and, once its
 * offer is accepted, the partner that admitted it (copied, as the link
 * outlives a reload). */
struct relay_link {
	TAILQ_ENTRY(relay_link) entry;
	struct link *link;
	struct sockaddr_storage ss;
	char node[CFG_NAME_MAX + 1];
	struct partner partner;
};
TAILQ_HEAD(relay_link_list, relay_link);

struct relay {
	const char *path;          /* configuration file, for reloads */
	const struct daemon_opts *opts; /* the command line, for reloads */
	struct relay_link_list links;
	struct guard *guard;       /* the link listener's */
	struct daemon_conf conf;   /* the running configuration */
	struct relay_backend *backends; /* one per conf.cfg->services[i] */
	struct event_base *base;
	struct evdns_base *dns;
	struct evconnlistener *listener;
	/* Staged by a reload until it commits or rolls back. */
	struct relay_backend *next_backends;
	struct evconnlistener *next_listener;
	struct event *drain_ev;
	struct event *reload_ev;
	struct link_config lcfg;
	struct rev *rev;           /* reverse services' listeners */
};

static int
relay_on_offer(void *ud, struct link *l, const struct neg_params *offer,
	       struct neg_params *mine, int *client_cert, uint16_t *reason,
	       char *text, size_t textlen)
{
	struct relay *r = ud;
	struct relay_link *rl = link_data(l);
	const struct sockaddr *sa = (const struct sockaddr *)&rl->ss;
	const struct partner *p;

	p = partners_select(r->conf.partners, offer->node, sa);
	if (p == NULL) {
		log_warn("link %llu: node '%s' matches no [peer] or [template] "
			 "section; refused (add [peer %s] to admit it)",
			 (unsigned long long)link_id(l), offer->node,
			 offer->node);
		snprintf(text, textlen, "node '%s' is not a known partner of "
			 "this relay", offer->node);
		*reason = NEG_R_UNKNOWN_PEER;
		return -1;
	}
	rl->partner = *p;
	snprintf(rl->node, sizeof(rl->node), "%s", offer->node);
	/* The link logs the refusal with its text. */
	if (partner_check_offer(p, offer, reason, text, textlen) < 0)
		return -1;
	if (p->any)
		log_warn("link %llu: node '%s' admitted by %s, which admits any "
			 "peer", (unsigned long long)link_id(l), offer->node,
			 p->label);
	partner_apply(p, mine, client_cert);
	if (partner_sticky_rule(p, sticky_has(r->conf.sticky, offer->node),
				offer, mine) == PARTNER_STICKY_REFUSE) {
		log_warn("link %llu: node '%s' offers plaintext but has used "
			 "TLS with this relay before (tls_sticky, %s); refused",
			 (unsigned long long)link_id(l), offer->node,
			 sticky_path(r->conf.sticky));
		snprintf(text, textlen, "node '%s' has used TLS with this "
			 "relay before (tls_sticky); plaintext is refused",
			 offer->node);
		*reason = NEG_R_REQUIRED_BY_ACCEPTOR;
		return -1;
	}
	/* A template admission is news; a known peer's is routine. */
	log_msg(p->templ && !p->any ? LOG_INFO : LOG_DEBUG,
		"link %llu: node '%s' admitted by %s",
		(unsigned long long)link_id(l), offer->node, p->label);
	return 0;
}

/* Identity, issuer and sticky state, once TLS is up. */
static int
relay_on_verify(void *ud, struct link *l, struct tls_conn *tls,
		const struct tls_info *info, char *why, size_t whylen)
{
	struct relay *r = ud;
	struct relay_link *rl = link_data(l);

	if (partner_verify(&rl->partner, tls, info, rl->node, why, whylen) < 0)
		return -1;
	if (rl->partner.tls_sticky)
		daemon_sticky_remember(r->conf.sticky, rl->node);
	return 0;
}

static void
relay_on_down(void *ud, struct link *l)
{
	struct relay *r = ud;
	struct relay_link *rl = link_data(l);

	if (rl == NULL)
		return;
	TAILQ_REMOVE(&r->links, rl, entry);
	free(rl);
}

static struct bufferevent *
relay_on_stream(void *ud, struct link *l, const char *service, uint32_t *code)
{
	struct relay *r = ud;
	struct relay_link *rl = link_data(l);
	const struct cfg_service *svc = cfg_service_find(r->conf.cfg, service);
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
	if (cfg_service_reverse(r->conf.cfg, svc)) {
		log_warn("link %llu (node %s): stream for service '%s' refused: "
			 "it is a reverse service here (the relay listens for it "
			 "and opens its streams toward gateway %s)",
			 (unsigned long long)link_id(l), link_peer_node(l),
			 service, svc->gateway);
		*code = MUX_C_REFUSED;
		return NULL;
	}
	if (!partner_allows(&rl->partner, service)) {
		log_warn("link %llu (node %s): stream for service '%s' refused: "
			 "%s does not list it in services",
			 (unsigned long long)link_id(l), link_peer_node(l),
			 service, rl->partner.label);
		*code = MUX_C_REFUSED;
		return NULL;
	}
	if (svc->client_cert == CERT_WANT_REQUIRE && !link_peer_has_cert(l)) {
		log_warn("link %llu (node %s): stream for service '%s' refused: "
			 "the service requires a client certificate and the "
			 "peer presented none", (unsigned long long)link_id(l),
			 link_peer_node(l), service);
		*code = MUX_C_REFUSED;
		return NULL;
	}
	if (cfg_tls_wire(svc->tls) == TLS_MODE_REQUIRE && !link_is_tls(l)) {
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
	be = &r->backends[svc - r->conf.cfg->services];
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

static const struct link_ops relay_ops = {
	.on_offer = relay_on_offer,
	.on_verify = relay_on_verify,
	.on_down = relay_on_down,
	.on_stream = relay_on_stream,
};

/* Links open from the address of sa (any port). */
static size_t
relay_links_from(struct relay *r, const struct sockaddr *sa)
{
	struct relay_link *rl;
	size_t n = 0;

	TAILQ_FOREACH(rl, &r->links, entry)
		n += net_same_host((const struct sockaddr *)&rl->ss, sa);
	return n;
}

static void
relay_accept_cb(struct evconnlistener *lis, evutil_socket_t fd,
		struct sockaddr *sa, int salen, void *arg)
{
	struct relay *r = arg;
	struct relay_link *rl;
	struct link *l;
	char why[160];

	evutil_make_socket_closeonexec(fd);
	if (guard_admit(r->guard, sa, &r->conf.cfg->allow, &r->conf.cfg->deny,
			NULL, NULL) < 0) {
		net_close_reset(fd);
		return;
	}
	if (link_count() >= r->conf.cfg->max_links ||
	    relay_links_from(r, sa) >= r->conf.cfg->max_links_per_source) {
		int all = link_count() >= r->conf.cfg->max_links;

		snprintf(why, sizeof(why), "%s (%u) links are open%s; "
			 "refused as busy", all ? "max_links" :
			 "max_links_per_source", all ? r->conf.cfg->max_links :
			 r->conf.cfg->max_links_per_source, all ? "" :
			 " from this address");
		guard_refuse(r->guard, sa, all ? "max_links" :
			     "max_links_per_source", why);
		link_refuse_socket(fd, r->conf.cfg->node_name, NEG_R_BUSY,
				   "the relay has reached a link limit; try later");
		return;
	}
	rl = calloc(1, sizeof(*rl));
	if (rl == NULL || (size_t)salen > sizeof(rl->ss)) {
		log_err("link from a new peer: out of memory; closed");
		free(rl);
		net_close_reset(fd);
		return;
	}
	memcpy(&rl->ss, sa, (size_t)salen);
	l = link_new(r->base, fd, NULL, 0, &r->lcfg, &relay_ops, r);
	if (l == NULL) {
		free(rl);
		return;
	}
	rl->link = l;
	TAILQ_INSERT_TAIL(&r->links, rl, entry);
	link_set_data(l, rl);
}

/* The newest link up from the gateway named node: reverse streams go on
 * it (an older one may be draining toward its successor). */
static struct link *
relay_pick_gateway(void *ud, const char *node)
{
	struct relay *r = ud;
	struct relay_link *rl;

	TAILQ_FOREACH_REVERSE(rl, &r->links, relay_link_list, entry)
		if (link_is_up(rl->link) && strcmp(rl->node, node) == 0)
			return rl->link;
	return NULL;
}

/* SIGTERM: no new links (the listener closes, so a gateway's dial is
 * refused at once and it fails over), no reloads. */
static uint32_t
relay_quiesce(void *ud)
{
	struct relay *r = ud;

	if (r->listener != NULL) {
		evconnlistener_free(r->listener);
		r->listener = NULL;
	}
	rev_close(r->rev);
	event_del(r->reload_ev);
	event_del(r->drain_ev);
	return r->conf.cfg->drain_timeout_ms;
}

/* Logs a warning for every template that admits any peer, and for
 * tls_first = allow that tls = off makes refuse every such link. */
static void
relay_warn_templates(const struct cfg *c)
{
	if (c->tls_first && c->tls == TLS_MODE_OFF)
		log_warn("tls_first = allow with tls = off in [relay]: every "
			 "TLS-first link is refused (it cannot be plaintext)");
	for (size_t i = 0; i < c->n_templates; i++)
		if (c->templates[i].any)
			log_warn("[template %s] (line %d) admits any peer that "
				 "reaches the link port: every node name, every "
				 "source", c->templates[i].name,
				 c->templates[i].line);
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

/* Makes conf, with backends resolved for it, the configuration new
 * links and streams get. */
static void
relay_install(struct relay *r, struct relay_backend *backends)
{
	free(r->backends);
	r->backends = backends;
	daemon_link_config(r->conf.cfg, r->conf.tls, &r->lcfg);
}

/* Reload stage: the backends of next and, when its address changed, its
 * listener. */
static int
relay_stage(void *ud, const struct daemon_conf *next)
{
	struct relay *r = ud;

	r->next_backends = relay_resolve_backends(next->cfg);
	if (r->next_backends == NULL) {
		log_err("out of memory");
		return -1;
	}
	if (strcmp(next->cfg->listen, r->conf.cfg->listen) != 0 &&
	    (r->next_listener = relay_listen(r, next->cfg->listen)) == NULL)
		goto fail;
	if (rev_stage(r->rev, next->cfg) < 0) {
		if (r->next_listener != NULL)
			evconnlistener_free(r->next_listener);
		r->next_listener = NULL;
		goto fail;
	}
	return 0;
fail:
	free(r->next_backends);
	r->next_backends = NULL;
	return -1;
}

static void
relay_abandon(void *ud, const struct daemon_conf *next)
{
	struct relay *r = ud;

	if (r->next_listener != NULL)
		evconnlistener_free(r->next_listener);
	r->next_listener = NULL;
	free(r->next_backends);
	r->next_backends = NULL;
	rev_abandon(r->rev);
}

static void
relay_commit(void *ud, const struct daemon_conf *cur,
	     const struct daemon_conf *old)
{
	struct relay *r = ud;

	if (r->next_listener != NULL) {
		evconnlistener_free(r->listener);
		r->listener = r->next_listener;
		r->next_listener = NULL;
	}
	relay_install(r, r->next_backends);
	r->next_backends = NULL;
	rev_commit(r->rev);
	relay_warn_templates(cur->cfg);
	daemon_monitor_reload(cur->cfg);
	log_info("SIGHUP: configuration reloaded from %s: %zu services, %zu "
		 "peers, listening on %s; running links keep their settings",
		 r->path, cur->cfg->n_services, cur->cfg->n_peers,
		 cur->cfg->listen);
}

static const struct daemon_reload_ops relay_reload_ops = {
	.stage = relay_stage,
	.abandon = relay_abandon,
	.commit = relay_commit,
};

/* SIGHUP: load the file again.  New links and streams get the new
 * settings; running links keep theirs.  A file that does not validate,
 * or whose listener or hook file cannot be opened, changes nothing. */
static void
relay_reload_cb(evutil_socket_t sig, short what, void *arg)
{
	struct relay *r = arg;

	daemon_reload(&r->conf, r->opts, CFG_RELAY, &relay_reload_ops, r);
}

int
main(int argc, char **argv)
{
	struct daemon_opts o;
	struct relay r;
	struct relay_backend *backends;
	struct cfg *c;
	int status;

	memset(&r, 0, sizeof(r));
	TAILQ_INIT(&r.links);
	c = daemon_start(argc, argv, prog, CFG_RELAY, &o, &status);
	if (c == NULL)
		return status;
	status = 1;
	r.path = o.config;
	r.opts = &o;
	if (daemon_conf_build(c, NULL, &r.conf) < 0)
		goto out;
	backends = relay_resolve_backends(r.conf.cfg);
	if (backends == NULL) {
		log_err("out of memory");
		goto out;
	}
	relay_install(&r, backends);
	if (daemon_open_hooks(r.conf.cfg) < 0)
		goto out;
	relay_warn_templates(r.conf.cfg);
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
	r.listener = relay_listen(&r, r.conf.cfg->listen);
	if (r.listener == NULL)
		goto out;
	r.rev = rev_new(r.base, relay_pick_gateway, &r);
	if (r.rev == NULL) {
		log_err("out of memory");
		goto out;
	}
	if (rev_stage(r.rev, r.conf.cfg) < 0)
		goto out;
	rev_commit(r.rev);
	r.guard = guard_new("link listener", "[relay]", NULL, NULL);
	if (r.guard == NULL) {
		log_err("out of memory");
		goto out;
	}
	r.drain_ev = evsignal_new(r.base, SIGUSR1, relay_drain_cb, &r);
	r.reload_ev = evsignal_new(r.base, SIGHUP, relay_reload_cb, &r);
	if (r.drain_ev == NULL || evsignal_add(r.drain_ev, NULL) < 0 ||
	    r.reload_ev == NULL || evsignal_add(r.reload_ev, NULL) < 0) {
		log_err("cannot watch SIGUSR1 and SIGHUP");
		goto out;
	}
	daemon_set_stop(relay_quiesce, &r);
	log_info("node %s listening for links on %s (tls = %s, client_cert = "
		 "%s, %zu services)", r.conf.cfg->node_name, r.conf.cfg->listen,
		 cfg_tls_name(r.conf.cfg->tls),
		 r.conf.cfg->client_cert == 2 ? "require" :
		 r.conf.cfg->client_cert == 1 ? "optional" : "none",
		 r.conf.cfg->n_services);
	if (daemon_monitor_start(r.base, r.conf.cfg) < 0)
		goto out;
	daemon_report(HOOK_DAEMON_STARTED, r.opts->config, NULL, NULL);
	event_base_dispatch(r.base);
	link_close_all("the relay is stopping");
	log_info("stopping: %llu connections were refused before negotiation "
		 "(allow/deny lists and link limits)",
		 (unsigned long long)guard_refused(r.guard));
	status = 0;
out:
	daemon_monitor_stop();
	if (r.drain_ev != NULL)
		event_free(r.drain_ev);
	if (r.reload_ev != NULL)
		event_free(r.reload_ev);
	if (r.listener != NULL)
		evconnlistener_free(r.listener);
	/* After link_close_all: released streams count down its clients. */
	rev_free(r.rev);
	if (r.dns != NULL)
		evdns_base_free(r.dns, 0);
	daemon_base_free(r.base);
	guard_free(r.guard);
	free(r.backends);
	daemon_conf_free(&r.conf, NULL);
	hook_reset();
	tls_global_cleanup();
	return status;
}
