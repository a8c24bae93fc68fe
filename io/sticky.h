/*
 * The tls_sticky state: the peers this node has completed TLS with,
 * kept in a small text file so that a later plaintext link with them is
 * refused, across restarts (the HSTS idea).
 *
 * File format: one "tls NAME" line per remembered peer; lines starting
 * with '#' and blank lines are ignored.  The file is rewritten whole
 * (temporary file, fsync, rename) whenever a peer is added, so a crash
 * leaves either the old or the new contents.
 */
#ifndef TLSPLEX_STICKY_H
#define TLSPLEX_STICKY_H

#include <stddef.h>

/* At most this many peers are remembered; more are refused (logged). */
#define STICKY_MAX 65536

struct sticky;

/* Loads path; a missing file is an empty state.  Returns NULL with a
 * reason ("FILE:LINE: ...") in err on a read error or a malformed line. */
struct sticky *sticky_open(const char *path, char *err, size_t errlen);
/* NULL is a no-op. */
void sticky_free(struct sticky *s);
const char *sticky_path(const struct sticky *s);
/* Nonzero when name was seen with TLS. */
int sticky_has(const struct sticky *s, const char *name);
/* Remembers name and rewrites the file.  Returns 1 if added, 0 if it was
 * known, -1 with a reason in err when it could not be saved (the name is
 * then remembered only until the process ends). */
int sticky_add(struct sticky *s, const char *name, char *err, size_t errlen);
size_t sticky_count(const struct sticky *s);

#endif
