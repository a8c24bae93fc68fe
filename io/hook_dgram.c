/*
 * The Unix datagram transport under the socket and syslog sinks.
 */
#include "hook_dgram.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "hook_sink.h"
#include "log.h"

int
hook_dgram_init(struct hook_dgram *d, const char *path)
{
	size_t plen = strlen(path);

	memset(d, 0, sizeof(*d));
	d->fd = -1;
	if (plen == 0 || plen >= sizeof(d->sa.sun_path))
		return -1;
	d->sa.sun_family = AF_UNIX;
	memcpy(d->sa.sun_path, path, plen + 1);
	d->salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen + 1);
	return 0;
}

int
hook_dgram_open(struct hook_dgram *d, const char *who, char *err,
		size_t errlen)
{
	d->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (d->fd < 0) {
		snprintf(err, errlen, "%s: cannot make a socket: %s", who,
			 strerror(errno));
		return -1;
	}
	return 0;
}

int
hook_dgram_send(struct hook_dgram *d, const char *kind, const void *buf,
		size_t len)
{
	ssize_t n;

	n = sendto(d->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL,
		   (const struct sockaddr *)&d->sa, d->salen);
	if (n == (ssize_t)len) {
		d->last_errno = 0;
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
		if (errno != d->last_errno)
			log_err("hook sink %s:%s: %s", kind, d->sa.sun_path,
				strerror(errno));
		d->last_errno = errno;
		return -1;
	}
}

void
hook_dgram_close(struct hook_dgram *d)
{
	if (d->fd >= 0)
		close(d->fd);
	d->fd = -1;
}
