/*
 * The monitors that run beside the hook's sinks in both daemons: the
 * metrics endpoint (io/metrics.c) and the periodic summaries
 * (io/summary.c).
 * Three calls from each daemon: start, reload, stop.
 */
#ifndef TLSPLEX_MONITOR_H
#define TLSPLEX_MONITOR_H

struct cfg;
struct event_base;

/* Starts the monitors configuration c asks for, before daemon_started
 * is reported.  Returns 0, or -1 (logged) when one cannot start. */
int daemon_monitor_start(struct event_base *base, const struct cfg *c);
/* Applies a reloaded configuration (from the reload's commit); a
 * monitor that cannot follow logs it and keeps running as it was. */
void daemon_monitor_reload(const struct cfg *c);
/* Stops them: after link_close_all(), before the sinks close. */
void daemon_monitor_stop(void);

#endif
