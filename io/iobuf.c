#include "iobuf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void
iobuf_free(struct iobuf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

int
iobuf_reserve(struct iobuf *b, size_t cap)
{
	uint8_t *p;

	if (cap <= b->cap)
		return 0;
	if (b->off > 0) {
		memmove(b->p, b->p + b->off, b->len);
		b->off = 0;
	}
	p = realloc(b->p, cap);
	if (p == NULL)
		return -1;
	b->p = p;
	b->cap = cap;
	return 0;
}

void
iobuf_drain(struct iobuf *b, size_t n)
{
	if (n >= b->len) {
		b->off = b->len = 0;
		return;
	}
	b->off += n;
	b->len -= n;
}

size_t
iobuf_take(struct iobuf *b, void *out, size_t n)
{
	if (n > b->len)
		n = b->len;
	memcpy(out, b->p + b->off, n);
	iobuf_drain(b, n);
	return n;
}

/* Moves the unread bytes to the front when the tail has less than want
 * bytes of room and the move is cheap (few bytes) or needed (the tail
 * is short of a record). */
static void
iobuf_make_room(struct iobuf *b, size_t want)
{
	size_t tail = b->cap - b->off - b->len;

	if (b->off == 0 || tail >= want)
		return;
	if (b->len > 4096 && tail >= 16384)
		return;
	memmove(b->p, b->p + b->off, b->len);
	b->off = 0;
}

int
iobuf_put(struct iobuf *b, const void *p, size_t n)
{
	if (b->len + n > b->cap)
		return -1;
	if (b->cap - b->off - b->len < n) {
		memmove(b->p, b->p + b->off, b->len);
		b->off = 0;
	}
	memcpy(b->p + b->off + b->len, p, n);
	b->len += n;
	return 0;
}

ssize_t
iobuf_read_fd(struct iobuf *b, int fd, size_t high)
{
	size_t room;
	ssize_t r;

	if (high > b->cap)
		high = b->cap;
	if (b->len >= high) {
		errno = ENOBUFS;
		return -1;
	}
	iobuf_make_room(b, high - b->len);
	room = b->cap - b->off - b->len;
	if (room > high - b->len)
		room = high - b->len;
	do
		r = read(fd, b->p + b->off + b->len, room);
	while (r < 0 && errno == EINTR);
	if (r > 0)
		b->len += (size_t)r;
	return r;
}
