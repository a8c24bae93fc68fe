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

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

struct hook_socket {
	int fd;
	uint32_t mask;          /* events it takes */
	struct sockaddr_un sa;
	socklen_t salen;
	int last_errno;         /* the last failure logged, 0 after a send */
};

static int
hook_socket_write(void *state, const struct hook_event *ev, const char *json,
		  size_t len)
{
	struct hook_socket *s = state;
	char buf[HOOK_LINE_MAX + 1];
	ssize_t n;

	if (!(s->mask & (1u << ev->type)))
		return HOOK_SINK_SKIPPED;
	if (len > HOOK_LINE_MAX)
		return -1;
	memcpy(buf, json, len);
	buf[len] = '\n';
	n = sendto(s->fd, buf, len + 1, MSG_DONTWAIT | MSG_NOSIGNAL,
		   (const struct sockaddr *)&s->sa, s->salen);
	if (n == (ssize_t)(len + 1)) {
		s->last_errno = 0;
		return 0;
	}
	if (n >= 0)
		return -1;
	switch (errno) {
	case EAGAIN:
#if EWOULDBLOCK != EAGAIN
	case EWOULDBLOCK:
#endif
	case ENOBUFS:
	case ECONNREFUSED:
	case ENOENT:
		return HOOK_SINK_DROPPED;
	default:
		/* Not the receiver being away: a permission or a size the
		 * operator must see, once per kind. */
		if (errno != s->last_errno)
			log_err("hook sink socket:%s: %s", s->sa.sun_path,
				strerror(errno));
		s->last_errno = errno;
		return -1;
	}
}

static void
hook_socket_free(void *state)
{
	struct hook_socket *s = state;

	if (s == NULL)
		return;
	if (s->fd >= 0)
		close(s->fd);
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
	char name[sizeof(s->sa.sun_path) + 8];
	size_t plen = strlen(path);

	if (plen == 0 || plen >= sizeof(s->sa.sun_path)) {
		snprintf(err, errlen, "hook_socket '%.200s': a socket path is "
			 "1 to %zu bytes", path, sizeof(s->sa.sun_path) - 1);
		return -1;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	s->fd = -1;
	if (hook_event_mask(events, &s->mask, err, errlen) < 0)
		goto fail;
	s->sa.sun_family = AF_UNIX;
	memcpy(s->sa.sun_path, path, plen + 1);
	s->salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen + 1);
	/* Nothing to let go of: an unchanged sink stays, with its counters
	 * and its failure streak (the receiver still learns what it lost). */
	old = hook_sink_state(&hook_socket_ops);
	if (old != NULL && old->mask == s->mask &&
	    strcmp(old->sa.sun_path, s->sa.sun_path) == 0) {
		hook_socket_free(s);
		return 0;
	}
	s->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd < 0) {
		snprintf(err, errlen, "hook_socket: cannot make a socket: %s",
			 strerror(errno));
		goto fail;
	}
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
