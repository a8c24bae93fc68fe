/*
 * The Unix datagram sink: each event is one datagram (the JSON object and
 * a newline) sent with a non-blocking sendto() to a socket path.  The
 * address is named on every send, so a receiver that starts late or
 * restarts is found again without a reopen.  No receiver, or one whose
 * buffer is full, drops the event (HOOK_SINK_DROPPED): the core counts it,
 * logs once per streak and tells the receiver, when it is back, how many
 * it missed (sink_recovered).
 */
#include "hook.h"
#include "hook_sink.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hook_dgram.h"

struct hook_socket {
	struct hook_dgram d;
	uint32_t mask;          /* events it takes */
};

static int
hook_socket_write(void *state, const struct hook_event *ev, const char *json,
		  size_t len)
{
	struct hook_socket *s = state;
	char buf[HOOK_LINE_MAX + 1];

	if (!(s->mask & (1u << ev->type)))
		return HOOK_SINK_SKIPPED;
	if (len > HOOK_LINE_MAX)
		return -1;
	memcpy(buf, json, len);
	buf[len] = '\n';
	return hook_dgram_send(&s->d, "socket", buf, len + 1);
}

static void
hook_socket_free(void *state)
{
	struct hook_socket *s = state;

	if (s == NULL)
		return;
	hook_dgram_close(&s->d);
	free(s);
}

static const struct hook_sink_ops hook_socket_ops = {
	.kind = "socket",
	.write = hook_socket_write,
	.free = hook_socket_free,
};

int
hook_open_socket(const char *path, const char *events, char *err,
		 size_t errlen)
{
	struct hook_socket *s, *old;
	char name[sizeof(s->d.sa.sun_path) + 8];

	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (hook_dgram_init(&s->d, path) < 0) {
		snprintf(err, errlen, "hook_socket '%.200s': a socket path is "
			 "1 to %zu bytes", path, sizeof(s->d.sa.sun_path) - 1);
		goto fail;
	}
	if (hook_event_mask(events, &s->mask, err, errlen) < 0)
		goto fail;
	/* Nothing to let go of: an unchanged sink stays, with its counters
	 * and its failure streak (the receiver still learns what it lost). */
	old = hook_sink_state(&hook_socket_ops);
	if (old != NULL && old->mask == s->mask &&
	    strcmp(old->d.sa.sun_path, s->d.sa.sun_path) == 0) {
		hook_socket_free(s);
		return 0;
	}
	if (hook_dgram_open(&s->d, "hook_socket", err, errlen) < 0)
		goto fail;
	hook_sink_remove(&hook_socket_ops);
	snprintf(name, sizeof(name), "socket:%s", path);
	if (hook_sink_add(name, &hook_socket_ops, s) < 0) {
		snprintf(err, errlen, "too many hook sinks (at most %d)",
			 HOOK_MAX_SINKS);
		goto fail;
	}
	return 0;
fail:
	hook_socket_free(s);
	return -1;
}

void
hook_close_socket(void)
{
	hook_sink_remove(&hook_socket_ops);
}
