/*
 * Socket helpers: address parsing, listening sockets, address text.
 */
#ifndef TLSPLEX_NET_H
#define TLSPLEX_NET_H

#include <stddef.h>
#include <sys/socket.h>

#define NET_ADDRSTR_MAX 64

/*
 * Splits "host:port", "[v6]:port" or ":port" into host and port.  An
 * empty host becomes default_host.  Returns 0, or -1 if the text has no
 * port.
 */
int net_split(const char *addr, const char *default_host, char *host,
	      size_t hostlen, char *port, size_t portlen);

/* Resolves addr (see net_split) for a passive or active socket.  Returns
 * 0, or -1 with a reason in err. */
int net_resolve(const char *addr, int passive, struct sockaddr_storage *ss,
		socklen_t *sslen, char *err, size_t errlen);

/* Opens a nonblocking, close-on-exec listening TCP socket bound to addr
 * with SO_REUSEADDR.  Returns the fd, or -1 with a reason in err. */
int net_listen(const char *addr, char *err, size_t errlen);

/* Formats an address as "ip:port" or "[ip6]:port". */
void net_ntop(const struct sockaddr *sa, char *buf, size_t len);
/* Nonzero when a and b hold the same IP address (ports aside). */
int net_same_host(const struct sockaddr *a, const struct sockaddr *b);
/* The local and peer addresses of a connected socket, as text. */
void net_local(int fd, char *buf, size_t len);
void net_peer(int fd, char *buf, size_t len);

/* Turns off Nagle's algorithm: a relay forwards what it has at once,
 * and small control frames must not wait for an ACK. */
void net_nodelay(int fd);

/* Limits the bytes the kernel holds unsent for fd before it reports the
 * socket writable again, so that queued bulk data does not delay later,
 * more urgent frames.  Ignored where unsupported. */
void net_notsent_lowat(int fd, int bytes);

/* Makes the coming close() of fd send a reset rather than an orderly
 * end (for sockets that something else will close). */
void net_reset_on_close(int fd);

/* Closes fd so that the peer sees a reset rather than an orderly end. */
void net_close_reset(int fd);

#endif
