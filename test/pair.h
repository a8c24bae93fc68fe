/*
 * A gateway and a relay on loopback for end-to-end tests: temporary
 * directory with certificates, an echo backend, an optional recording tap
 * on the link, and helpers that read what the daemons wrote.  Every helper
 * asserts with Criterion and so must run inside a test.
 */
#ifndef TLSPLEX_PAIR_H
#define TLSPLEX_PAIR_H

#include <stdint.h>
#include <sys/types.h>

#include "harness.h"

struct pair {
	char *dir;
	char certs[512];
	int relay_port, svc_port, backend_port;
	int dead_port;          /* backend of [service dead]; 0 = nobody */
	struct tap *tap;
	pid_t echo, relay, gw;
	char relay_log[600], gw_log[600];
	char relay_hooks[600], gw_hooks[600];
	const char *echo_extra; /* more lines for the gateway's [service echo] */
	const char *gw_node;    /* the gateway's node_name; NULL: gw1 */
};

/* The pair of the running test. */
extern struct pair P;

#define TLS_RELAY \
	"tls = require\ncert = certs/relay.crt\nkey = certs/relay.key\n" \
	"client_cert = require\n"
#define TLS_GW "tls = prefer\ncert = certs/gw1.crt\nkey = certs/gw1.key\n"

/* Criterion .init: fresh directory and certificates, free ports. */
void pair_init(void);
/* pair_init() with the certificates copied from directory certs (made
 * once by scripts/mkcerts.sh) instead of made afresh. */
void pair_init_from(const char *certs);
/* One set of certificates for a whole test run: cert_cache_make() (from
 * a ReportHook(PRE_ALL)) runs scripts/mkcerts.sh once into a fresh
 * directory and names it in environment variable env, which each test's
 * init passes to pair_init_from(); cert_cache_remove() (from
 * ReportHook(POST_ALL)) removes it.  Without the variable (mkcerts
 * failed) pair_init_from(NULL) makes certificates per test. */
void cert_cache_make(const char *env);
void cert_cache_remove(const char *env);
/* Criterion .fini: stops every process and the tap, removes the
 * directory unless $TLSPLEX_KEEP is set.  A daemon log holding "internal
 * error" makes the whole run exit 1 at its end (a teardown cannot fail
 * its test in Criterion). */
void pair_fini(void);
/* Starts build_dir/bin -c conf with its output in log.  Returns the pid. */
pid_t spawn_bin(const char *bin, const char *conf, const char *log);
/* Starts tpx-echo in mode (echo, sink, reset) on P.backend_port. */
void start_echo(const char *mode);
/* Starts the tap in front of the relay's link port. */
void start_tap(void);
/* Starts the relay with extra [relay] lines, and the gateway (dialling
 * through the tap when there is one, else the relay directly) with extra
 * [gateway] lines.  Services echo and dead exist on both sides; the relay
 * knows the gateway as [peer gw1] unless relay_sections defines a [peer]
 * or [template] itself. */
void start_pair(const char *relay_extra, const char *gw_extra);
/* start_pair() with more sections appended to each config, e.g.
 * "[service slow]\nbackend = 127.0.0.1:PORT\n" for the relay and
 * "[service slow]\nlisten = 127.0.0.1:PORT\n" for the gateway. */
void start_pair_with(const char *relay_extra, const char *gw_extra,
		     const char *relay_sections, const char *gw_sections);
/* The two halves of start_pair_with(), for tests that restart one
 * daemon; start_relay() waits until the new relay listens. */
void start_relay(const char *relay_extra, const char *relay_sections);
void start_gateway(const char *gw_extra, const char *gw_sections);
/* Waits up to 15 s for the gateway to log that the link is up. */
void wait_up(void);
/* The number after "key": in a JSON line; asserts that it is there. */
uint64_t json_num(const char *line, const char *key);
/* The first line of a hook file holding event (malloc'd), waiting up to 2 s
 * for it to be written. */
char *hook_line(const char *file, const char *event);
/* A blocking connection to 127.0.0.1:port, or -1. */
int connect_port(int port);
/* Waits for the peer to close fd; returns 1 if it did within ms. */
int closed_within(int fd, int ms);
/* Writes msg (under 256 bytes), reads the echo back; 0 when it matched. */
int echo_once(int fd, const char *msg, int timeout_ms);
/* Port of a [service NAME] listener in the gateway config written by
 * start_pair(). */
int gw_service_port(const char *name);

#endif
