/*
 * A bounded byte buffer that is allocated once and reused: bytes are
 * read from a socket into its tail and consumed from its head.  The data
 * path uses it instead of an evbuffer so that a read never allocates and
 * a drained buffer is not given back to the heap, only to be asked for
 * again on the next read.
 */
#ifndef TLSPLEX_IOBUF_H
#define TLSPLEX_IOBUF_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct iobuf {
	uint8_t *p;
	size_t cap;  /* allocated bytes */
	size_t off;  /* start of the unread bytes */
	size_t len;  /* unread bytes */
};

/* Frees the storage; the buffer is then empty with no capacity.  A
 * zeroed iobuf is valid and empty. */
void iobuf_free(struct iobuf *b);

/* Makes the capacity at least cap (never shrinks it).  Returns 0, or -1
 * when out of memory (the buffer is unchanged). */
int iobuf_reserve(struct iobuf *b, size_t cap);

static inline const uint8_t *
iobuf_data(const struct iobuf *b)
{
	return b->p + b->off;
}

static inline size_t
iobuf_len(const struct iobuf *b)
{
	return b->len;
}

/* Consumes n bytes from the head (at most iobuf_len()). */
void iobuf_drain(struct iobuf *b, size_t n);

/* Copies up to n bytes from the head into out and consumes them.
 * Returns the count. */
size_t iobuf_take(struct iobuf *b, void *out, size_t n);

/* Appends n bytes; the capacity must allow it.  Returns 0 or -1. */
int iobuf_put(struct iobuf *b, const void *p, size_t n);

/* Reads from fd into the tail, so that at most high bytes are held.
 * Returns the bytes read, 0 at end of stream, or -1 with errno set
 * (EAGAIN when nothing is there, ENOBUFS when high is already held). */
ssize_t iobuf_read_fd(struct iobuf *b, int fd, size_t high);

#endif
