/*
 * The hook's sinks: where formatted events go (the JSON Lines file in
 * io/hook_file.c; the others beside it).  A sink is a table of operations
 * and a state; the core (io/hook.c) formats each event once, hands the
 * line to every sink, counts what each delivered, lost or dropped, logs
 * a failure once per streak and, when a sink works again, writes it a
 * sink_recovered event first.  A sink never blocks the event loop.
 */
#ifndef TLSPLEX_HOOK_SINK_H
#define TLSPLEX_HOOK_SINK_H

#include <stddef.h>
#include <stdint.h>

#include "hook.h"

#define HOOK_MAX_SINKS 8
/* The longest event line, the newline not counted. */
#define HOOK_LINE_MAX 8192

/* What write() returns besides 0 (delivered) and -1 (failed: lost). */
#define HOOK_SINK_DROPPED (-2) /* the receiver was not ready: lost */
#define HOOK_SINK_SKIPPED 1    /* not an event this sink takes */

struct hook_sink_ops {
	const char *kind; /* "file", "socket", "command", "syslog" */
	/* Delivers one event (json: len bytes, no newline, NUL-terminated).
	 * Returns 0, HOOK_SINK_SKIPPED, HOOK_SINK_DROPPED or -1. */
	int (*write)(void *state, const struct hook_event *ev,
		     const char *json, size_t len);
	/* May be NULL.  For handshake_pending, when the sink decides
	 * whether the handshake goes ahead: returns 1 after arranging to
	 * call hook_gate_resolve(g, ...) later from the event loop (never
	 * from inside this call), 0 to let it proceed now, or -1 to veto
	 * now.  Called after write(). */
	int (*gate)(void *state, const struct hook_event *ev,
		    const char *json, size_t len, struct hook_gate *g);
	/* May be NULL.  Events lost after write() took them (a sink that
	 * delivers from a queue): a running total. */
	uint64_t (*lost)(void *state);
	/* Frees the state; NULL is a no-op. */
	void (*free)(void *state);
};

struct hook_sink_stats {
	uint64_t written, errors, dropped;
};

/* Adds a sink named name (for log lines and metrics, "file:/var/...");
 * the core owns state from here on.  Returns 0, or -1 when
 * HOOK_MAX_SINKS are open (state is not freed). */
int hook_sink_add(const char *name, const struct hook_sink_ops *ops,
		  void *state);
/* Removes and frees every sink with these operations. */
void hook_sink_remove(const struct hook_sink_ops *ops);
/* The state of the first sink with these operations, or NULL. */
void *hook_sink_state(const struct hook_sink_ops *ops);
/* The i-th sink's name, kind and counters; -1 past the last. */
int hook_sink_stats(int i, const char **name, const char **kind,
		    struct hook_sink_stats *st);
/* The open sinks' kinds, comma-separated. */
void hook_sink_names(char *buf, size_t len);

/* A gating sink's answer: verdict 0 proceed, -1 veto (why says why). */
void hook_gate_resolve(struct hook_gate *g, int verdict, const char *why);

#endif
