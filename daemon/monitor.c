#include "monitor.h"

#include "metrics.h"

int
daemon_monitor_start(struct event_base *base, const struct cfg *c)
{
	return metrics_start(base, c);
}

void
daemon_monitor_reload(const struct cfg *c)
{
	metrics_reload(c);
}

void
daemon_monitor_stop(void)
{
	metrics_stop();
}
