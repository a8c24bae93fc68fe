/*
 * Concurrent verifying echo clients: the one engine behind
 * h_echo_clients() and tpx-blast.  libc only; one thread, poll().
 *
 * Client i connects, sends the first `bytes` bytes of the payload stream
 * (seed, i) from harness.h, half-closes, reads until EOF and checks that
 * the echo is exactly what it sent.
 */
#ifndef TLSPLEX_ECHO_CLIENTS_H
#define TLSPLEX_ECHO_CLIENTS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Called once per failed client with a message such as
 * "mismatch at byte 12345" (no client number, no newline). */
typedef void (*ec_fail_fn)(void *arg, int client, const char *msg);

struct ec_result {
	int ok;          /* clients verified */
	int64_t elapsed_ms; /* from the first connect to the end */
};

/* Runs nclients clients against addr (IPv4 or IPv6) until every one has
 * finished or timeout_ms has passed; the ones still running then fail
 * with "timed out after N of M bytes".  on_fail may be NULL.  res may be
 * NULL.  Returns 0 when every client was verified, else -1 (also for
 * nclients < 1 or when memory runs out, reported as client -1). */
int ec_run(const struct sockaddr *addr, socklen_t addrlen, int nclients, size_t bytes,
	   uint64_t seed, int timeout_ms, ec_fail_fn on_fail, void *arg,
	   struct ec_result *res);

#endif
