/*
 * The Prometheus metrics endpoint: an in-process hook observer counts
 * what the events say, and a small HTTP/1.1 server on metrics_listen
 * answers GET /metrics from those counters (docs/MONITORING.md,
 * "Metrics").  Label sets are bounded: no per-link or per-address labels,
 * and at most METRICS_MAX_LABELS distinct values of peer_node or service
 * (the rest is counted under "_other").
 */
#ifndef TLSPLEX_METRICS_H
#define TLSPLEX_METRICS_H

#include <stddef.h>

struct cfg;
struct event_base;
struct evbuffer;

#define METRICS_MAX_LABELS 256
#define METRICS_MAX_SCRAPES 4        /* scrapes served at once */
#define METRICS_DEADLINE_MS 2000     /* for the request and the answer */
#define METRICS_REQUEST_MAX 4096     /* request line and headers */

/*
 * Starts counting events (the observer is registered by the first call)
 * for the daemon configuration c describes, and serves the endpoint when
 * c sets metrics_listen.  Returns 0, or -1 (logged) when the endpoint
 * cannot listen.
 */
int metrics_start(struct event_base *base, const struct cfg *c);

/* Applies a reloaded configuration: a changed metrics_listen is opened
 * anew (when that fails the running endpoint stays, logged) and
 * metrics_allow applies to the next scrape.  Counters carry on. */
void metrics_reload(const struct cfg *c);

/* Closes the endpoint and every scrape in progress; counting goes on
 * until hook_reset(). */
void metrics_stop(void);

/* Appends the exposition text (format 0.0.4) of the current counters to
 * out.  Returns 0, or -1 when out of memory. */
int metrics_format(struct evbuffer *out);

#endif
