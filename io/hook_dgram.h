/*
 * What the socket and syslog sinks share: a non-blocking Unix datagram
 * socket that names its receiver's path on every send, and one reading of
 * a failed send (the receiver away or full drops the event; anything else
 * is logged once per kind).
 */
#ifndef TLSPLEX_HOOK_DGRAM_H
#define TLSPLEX_HOOK_DGRAM_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

struct hook_dgram {
	int fd;
	struct sockaddr_un sa;
	socklen_t salen;
	int last_errno;         /* the last failure logged, 0 after a send */
};

/* Sets d's receiver to path, with no socket yet.  Returns -1 if path is
 * empty or does not fit in sun_path. */
int hook_dgram_init(struct hook_dgram *d, const char *path);
/* Makes d's socket; on failure writes "who: cannot make a socket: why"
 * into err and returns -1. */
int hook_dgram_open(struct hook_dgram *d, const char *who, char *err,
		    size_t errlen);
/* Sends len bytes without blocking.  Returns 0 when sent whole,
 * HOOK_SINK_DROPPED when the receiver is missing or full, -1 otherwise
 * (logged as "hook sink kind:path" when the reason is new). */
int hook_dgram_send(struct hook_dgram *d, const char *kind, const void *buf,
		    size_t len);
/* Closes d's socket, if it has one. */
void hook_dgram_close(struct hook_dgram *d);

#endif
