#include "daemon.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "hook.h"
#include "hook_sink.h"
#include "link.h"
#include "log.h"
#include "sticky.h"
#include "summary.h"
#include "tlsio.h"

static struct event *daemon_sig_ev[3];

/* The drain that SIGTERM starts: see daemon_set_stop(). */
static struct {
	uint32_t (*quiesce)(void *ud);
	void *ud;
	uint32_t timeout_ms;
	int draining;
	int64_t deadline_ms;
	struct event *tick;
} daemon_stop;

#define DAEMON_DRAIN_TICK_MS 50

static void
daemon_usage(const char *prog, FILE *out)
{
	fprintf(out,
		"usage: %s -c FILE [-n] [-v]...\n"
		"       %s --version\n"
		"  -c FILE    configuration file (INI)\n"
		"  -n         check the configuration and exit\n"
		"  -v         log more (repeat for debug)\n"
		"  --version  print the version and the libraries in use\n",
		prog, prog);
}

int
daemon_parse_args(int argc, char **argv, const char *prog,
		  struct daemon_opts *o)
{
	static const struct option longopts[] = {
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	memset(o, 0, sizeof(*o));
	while ((ch = getopt_long(argc, argv, "c:nvh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			o->config = optarg;
			break;
		case 'n':
			o->check_only = 1;
			break;
		case 'v':
			o->verbose++;
			break;
		case 'V':
			printf("%s %s (%s; libevent %s)\n", prog, TLSPLEX_VERSION,
			       tls_library_version(), event_get_version());
			printf("TLS: %s\n", tls_library_describe());
			return 1;
		case 'h':
			daemon_usage(prog, stdout);
			return 1;
		default:
			daemon_usage(prog, stderr);
			return -1;
		}
	}
	if (optind != argc || o->config == NULL) {
		if (o->config == NULL)
			fprintf(stderr, "%s: -c FILE is required\n", prog);
		else
			fprintf(stderr, "%s: unexpected argument '%s'\n", prog,
				argv[optind]);
		daemon_usage(prog, stderr);
		return -1;
	}
	return 0;
}

void
daemon_log_level(const struct cfg *c, const struct daemon_opts *o)
{
	int level = c->log_level + o->verbose;

	log_set_level(level > LOG_DEBUG ? LOG_DEBUG : level);
}

int
daemon_needs_tls(const struct cfg *c)
{
	/* The relay serves TLS with its certificate; the gateway verifies
	 * the relay's with its CA, and a CA set while tls = off still
	 * serves a [peer] that turns TLS on. */
	if (c->role == CFG_RELAY)
		return c->cert[0] != '\0';
	return c->tls != TLS_MODE_OFF || c->ca[0] != '\0';
}

struct cfg *
daemon_load(const char *prog, int role, const struct daemon_opts *o)
{
	char err[1024];
	struct cfg *c;

	c = cfg_load(o->config, role, err, sizeof(err));
	if (c == NULL) {
		log_err("configuration rejected: %s", err);
		return NULL;
	}
	daemon_log_level(c, o);
	if (daemon_check_hooks(c, err, sizeof(err)) < 0) {
		log_err("configuration rejected: %s", err);
		cfg_free(c);
		return NULL;
	}
	log_info("TLS: %s", tls_library_describe());
	if (o->check_only) {
		struct tls_ctx *t = NULL;

		if (daemon_needs_tls(c)) {
			t = tls_ctx_new(c, role == CFG_RELAY, err, sizeof(err));
			if (t == NULL) {
				log_err("configuration rejected: %s: %s", o->config,
					err);
				cfg_free(c);
				return NULL;
			}
			tls_ctx_free(t);
		}
		printf("%s: configuration %s is valid\n", prog, o->config);
	}
	return c;
}

struct cfg *
daemon_start(int argc, char **argv, const char *prog, int role,
	     struct daemon_opts *o, int *status)
{
	struct cfg *c;
	int rc;

	log_init(prog, LOG_INFO);
	rc = daemon_parse_args(argc, argv, prog, o);
	if (rc != 0) {
		*status = rc > 0 ? 0 : 2;
		return NULL;
	}
	if (tls_global_init() < 0) {
		log_err("cannot initialise the TLS library");
		*status = 1;
		return NULL;
	}
	c = daemon_load(prog, role, o);
	if (c == NULL || o->check_only) {
		*status = c == NULL ? 1 : 0;
		cfg_free(c);
		tls_global_cleanup();
		return NULL;
	}
	return c;
}

int
daemon_check_hooks(const struct cfg *c, char *err, size_t errlen)
{
	uint32_t mask;
	char why[256];

	if (c->hook_socket[0] != '\0' &&
	    hook_event_mask(c->hook_socket_events, &mask, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "%s: key 'hook_socket_events': %s", c->file,
			 why);
		return -1;
	}
	if (c->hook_command[0] != '\0' &&
	    hook_event_mask(c->hook_command_events, &mask, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "%s: key 'hook_command_events': %s",
			 c->file, why);
		return -1;
	}
	return 0;
}

/*
 * What a sink that fails does to the daemon (docs/MONITORING.md, Sinks):
 * a file that cannot be opened and an event list that names no event are
 * configuration errors (start refused, reload rejected; the command's
 * path was checked at load); a socket or syslogd nobody receives on, or
 * a command that fails later, is not: its events are dropped and counted.
 */
int
daemon_open_hooks(const struct cfg *c)
{
	char err[512];

	hook_set_identity(c->role == CFG_RELAY ? "relay" : "gateway",
			  c->node_name);
	if (daemon_check_hooks(c, err, sizeof(err)) < 0) {
		log_err("%s", err);
		return -1;
	}
	if (c->hook_file[0] == '\0') {
		hook_close_file();
	} else if (hook_open_file(c->hook_file) < 0) {
		log_err("cannot open hook_file '%s': %m", c->hook_file);
		return -1;
	}
	if (c->hook_socket[0] == '\0') {
		hook_close_socket();
	} else if (hook_open_socket(c->hook_socket, c->hook_socket_events, err,
				    sizeof(err)) < 0) {
		log_err("%s", err);
		return -1;
	}
	if (c->hook_command[0] == '\0') {
		hook_close_command();
	} else {
		struct hook_cmd_conf cc = {
			.path = c->hook_command,
			.events = c->hook_command_events,
			.timeout_ms = c->hook_command_timeout_ms,
			.max = c->hook_command_max,
			.veto = c->hook_command_veto,
			.veto_on_timeout = c->hook_command_on_timeout ==
					   CFG_HOOK_TIMEOUT_VETO,
		};

		if (hook_open_command(&cc, err, sizeof(err)) < 0) {
			log_err("%s", err);
			return -1;
		}
	}
	if (hook_open_syslog(c->hook_syslog == CFG_HOOK_SYSLOG_JSON ?
			     HOOK_SYSLOG_JSON :
			     c->hook_syslog == CFG_HOOK_SYSLOG_RFC5424 ?
			     HOOK_SYSLOG_RFC5424 : HOOK_SYSLOG_OFF,
			     c->hook_syslog_facility, c->hook_syslog_ident,
			     c->hook_syslog_socket, err, sizeof(err)) < 0) {
		log_err("%s", err);
		return -1;
	}
	return 0;
}

void
daemon_params(const struct cfg *c, struct neg_params *p)
{
	memset(p, 0, sizeof(*p));
	snprintf(p->node, sizeof(p->node), "%s", c->node_name);
	p->tls_mode = (uint8_t)cfg_tls_wire(c->tls);
	p->tls_min = (uint16_t)c->min_tls;
	p->tls_max = (uint16_t)c->max_tls;
	p->n_ciphers = c->n_ciphers;
	memcpy(p->ciphers, c->ciphers, sizeof(p->ciphers[0]) * c->n_ciphers);
	if (c->ciphers_auto)
		tls_order_ciphers(p->ciphers, p->n_ciphers, tls_aes_fast());
	p->cert_present = c->cert[0] != '\0';
	p->cert_want = c->role == CFG_RELAY ? (uint8_t)c->client_cert : 0;
	p->max_streams = c->max_streams;
	p->window = c->window;
	p->max_frame = c->max_frame;
	p->keepalive_ms = c->keepalive_ms;
	p->flow_caps = c->link_budget == CFG_LINK_BUDGET_AUTO ? NEG_FLOW_LINK_ACK
							   : 0;
	/* A gateway without reverse services sends the offer of a version
	 * that has none. */
	if (c->role == CFG_GATEWAY && cfg_reverse_count(c) > 0)
		p->flow_caps |= NEG_FLOW_REVERSE;
}

void
daemon_link_config(const struct cfg *c, struct tls_ctx *tls,
		   struct link_config *lc)
{
	memset(lc, 0, sizeof(*lc));
	daemon_params(c, &lc->params);
	lc->dialer = c->role == CFG_GATEWAY;
	lc->role = c->role == CFG_GATEWAY ? "gateway" : "relay";
	lc->tls = tls;
	lc->client_cert = c->role == CFG_RELAY ? c->client_cert : 0;
	lc->server_name = c->role == CFG_GATEWAY ? c->server_name : NULL;
	lc->tls_first = c->tls_first == 1;
	lc->negotiation_timeout_ms = c->negotiation_timeout_ms;
	lc->handshake_timeout_ms = c->handshake_timeout_ms;
	lc->keepalive_timeout_ms = c->keepalive_timeout_ms;
}

void
daemon_report(int type, const char *config, const char *result,
	      const char *reason)
{
	struct hook_event ev;
	char sinks[128], lib[256];

	memset(&ev, 0, sizeof(ev));
	ev.type = type;
	hook_sink_names(sinks, sizeof(sinks));
	snprintf(lib, sizeof(lib), "%s", tls_library_version());
	ev.version = TLSPLEX_VERSION;
	ev.tls_library = lib;
	ev.config = config;
	ev.sinks = sinks;
	ev.result = result;
	ev.reason = reason;
	ev.links_open = link_count();
	ev.summary_interval_s = summary_interval_s();
	hook_emit(&ev);
}

static int64_t
daemon_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Every tick of a drain: links that came up since are drained too; the
 * loop ends when nothing is left or the deadline has passed. */
static void
daemon_drain_tick(evutil_socket_t fd, short what, void *arg)
{
	struct event_base *base = arg;
	struct timeval tv = { 0, DAEMON_DRAIN_TICK_MS * 1000 };
	size_t links = link_count(), flushing = link_streams_flushing();

	if (links == 0 && flushing == 0) {
		log_info("drained: every link and stream finished; exiting");
		event_base_loopexit(base, NULL);
		return;
	}
	if (daemon_now_ms() >= daemon_stop.deadline_ms) {
		log_warn("drain_timeout (%u ms) passed with %zu streams still "
			 "open on %zu links; resetting them and exiting",
			 daemon_stop.timeout_ms, link_streams_open() + flushing,
			 links);
		event_base_loopexit(base, NULL);
		return;
	}
	link_drain_all("this daemon is stopping");
	evtimer_add(daemon_stop.tick, &tv);
}

static void
daemon_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct event_base *base = arg;
	char why[64];
	struct timeval tv = { 0, 0 };

	snprintf(why, sizeof(why), "%s", sig == SIGINT ? "SIGINT" : "SIGTERM");
	link_begin_shutdown();
	if (daemon_stop.quiesce == NULL || daemon_stop.draining) {
		log_info("signal %d: stopping%s", (int)sig,
			 daemon_stop.draining ? " at once (second signal); "
			 "open streams are reset" : "");
		if (!daemon_stop.draining)
			daemon_report(HOOK_DAEMON_STOPPING, NULL, NULL, why);
		event_base_loopexit(base, NULL);
		return;
	}
	daemon_stop.draining = 1;
	daemon_report(HOOK_DAEMON_STOPPING, NULL, NULL, why);
	daemon_stop.timeout_ms = daemon_stop.quiesce(daemon_stop.ud);
	daemon_stop.deadline_ms = daemon_now_ms() + daemon_stop.timeout_ms;
	log_info("signal %d: draining: no new clients or links; GOAWAY on %zu "
		 "links; %zu open streams may finish within drain_timeout "
		 "(%u ms); a second signal stops at once", (int)sig,
		 link_count(), link_streams_open(), daemon_stop.timeout_ms);
	link_drain_all("this daemon is stopping");
	daemon_stop.tick = evtimer_new(base, daemon_drain_tick, base);
	if (daemon_stop.tick == NULL) {
		event_base_loopexit(base, NULL);
		return;
	}
	evtimer_add(daemon_stop.tick, &tv);
}

void
daemon_set_stop(uint32_t (*quiesce)(void *ud), void *ud)
{
	daemon_stop.quiesce = quiesce;
	daemon_stop.ud = ud;
}

struct event_base *
daemon_base_new(void)
{
	static const int sigs[2] = { SIGINT, SIGTERM };
	struct event_base *base;
	struct event_config *ec;
	int i;

	signal(SIGPIPE, SIG_IGN);
	ec = event_config_new();
	if (ec == NULL)
		return NULL;
	/* One thread, no locks; and with epoll, batch the interest changes
	 * of one loop turn into as few epoll_ctl calls as possible. */
	event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK);
	event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	base = event_base_new_with_config(ec);
	event_config_free(ec);
	if (base == NULL)
		return NULL;
	hook_cmd_set_base(base);
	for (i = 0; i < 2; i++) {
		daemon_sig_ev[i] = evsignal_new(base, sigs[i], daemon_signal_cb, base);
		if (daemon_sig_ev[i] == NULL || evsignal_add(daemon_sig_ev[i], NULL) < 0) {
			daemon_base_free(base);
			return NULL;
		}
	}
	return base;
}

void
daemon_base_free(struct event_base *base)
{
	int i;

	for (i = 0; i < 3; i++) {
		if (daemon_sig_ev[i] != NULL)
			event_free(daemon_sig_ev[i]);
		daemon_sig_ev[i] = NULL;
	}
	if (daemon_stop.tick != NULL)
		event_free(daemon_stop.tick);
	memset(&daemon_stop, 0, sizeof(daemon_stop));
	if (base != NULL) {
		hook_cmd_set_base(NULL);
		event_base_free(base);
	}
}

int
daemon_sticky_open(struct sticky *cur, const struct cfg *c,
		   struct sticky **next)
{
	char err[1200];

	if (c->state_file[0] == '\0') {
		*next = NULL;
		return 0;
	}
	if (cur != NULL && strcmp(sticky_path(cur), c->state_file) == 0) {
		*next = cur;
		return 0;
	}
	*next = sticky_open(c->state_file, err, sizeof(err));
	if (*next == NULL) {
		log_err("%s", err);
		return -1;
	}
	log_info("tls_sticky state %s: %zu peers remembered", c->state_file,
		 sticky_count(*next));
	return 0;
}

void
daemon_sticky_remember(struct sticky *s, const char *name)
{
	char err[1200];
	int rc;

	if (s == NULL)
		return;
	rc = sticky_add(s, name, err, sizeof(err));
	if (rc > 0)
		log_info("tls_sticky: %s completed TLS; plaintext links with it "
			 "are refused from now on (remembered in %s)", name,
			 sticky_path(s));
	else if (rc < 0)
		log_err("tls_sticky: cannot remember %s: %s; it is remembered "
			"only until this process ends", name, err);
}
