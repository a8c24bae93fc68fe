/*
 * Periodic summaries in the style of zERT's subtype 12: a hook observer
 * aggregates links by key (server address, client address, peer, the
 * protection and the significant TLS attributes) and streams by service,
 * and every summary_interval emits link_summary and service_summary
 * events and a summary_end; a final set at stop and when the interval
 * changes.  docs/MONITORING.md ("Summaries") has the rules.
 *
 * The aggregation itself (struct summary) takes events and the time from
 * its caller, so tests drive it with synthetic events and their own
 * clock; summary_start() and friends run it in a daemon.
 */
#ifndef TLSPLEX_SUMMARY_H
#define TLSPLEX_SUMMARY_H

#include <stdint.h>

#include "hook.h"

struct cfg;
struct event_base;
struct summary;

#define SUMMARY_MAX_KEYS 1024     /* link keys; more fold into "_other" */
#define SUMMARY_MAX_SERVICES 1024 /* (service, peer, protection) keys */

/* Where records go (hook_emit() in the daemon). */
typedef void (*summary_emit_fn)(struct hook_event *ev, void *arg);
/* Reports every open link's socket bytes so far, by calling fn (as
 * link_bytes_each() does); NULL: bytes are counted at close only. */
typedef void (*summary_bytes_fn)(void (*fn)(void *arg, uint64_t id,
					    uint64_t in, uint64_t out),
				 void *arg);

/* A new aggregation for a relay (relay nonzero) or a gateway, starting
 * its first interval at now_us (wall clock).  Returns NULL when out of
 * memory. */
struct summary *summary_new(int relay, uint64_t now_us, summary_emit_fn emit,
			    void *emit_arg, summary_bytes_fn bytes);
/* NULL is a no-op. */
void summary_free(struct summary *s);
/* Counts one event that happened at now_us. */
void summary_observe(struct summary *s, const struct hook_event *ev,
		     uint64_t now_us);
/* Ends the interval at now_us: emits its records and summary_end (with
 * final set when final is nonzero) and starts the next one. */
void summary_flush(struct summary *s, uint64_t now_us, int final);

/* In a daemon: starts summaries when c sets summary_interval (the
 * observer is registered by the first call).  Returns 0, or -1 (logged). */
int summary_start(struct event_base *base, const struct cfg *c);
/* A reload: a changed summary_interval writes a final set for the
 * interval running and goes on with the new one, the counts carrying on
 * (0 stops summaries; from 0, they start afresh). */
void summary_reload(const struct cfg *c);
/* Writes the final set and stops; after link_close_all(), so that the
 * links closed at shutdown are in it. */
void summary_stop(void);
/* The running summary_interval in seconds; 0 when off. */
uint64_t summary_interval_s(void);

#endif
