#include "monitor.h"

#include "metrics.h"
#include "summary.h"

int
daemon_monitor_start(struct event_base *base, const struct cfg *c)
{
	if (metrics_start(base, c) < 0)
		return -1;
	return summary_start(base, c);
}

void
daemon_monitor_reload(const struct cfg *c)
{
	metrics_reload(c);
	summary_reload(c);
}

void
daemon_monitor_stop(void)
{
	summary_stop();
	metrics_stop();
}
