/*
 * What tlsplex-report's files share: an arena for everything that lives
 * as long as the run, a string-keyed hash map, a pointer array, and
 * RFC 3339 times.  Allocation failure ends the program (exit 2).
 */
#ifndef TLSPLEX_REPORT_UTIL_H
#define TLSPLEX_REPORT_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define RPT_EXIT_INPUT 2

/* Zeroed memory that lives until arena_release(). */
void *arena_alloc(size_t n);
/* Copies of s (NULL stays NULL) and of a formatted string (at most
 * 1023 bytes), in the arena. */
char *arena_strdup(const char *s);
char *arena_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Frees everything arena_alloc() gave out. */
void arena_release(void);
/* realloc(3) that ends the program when memory runs out. */
void *mem_realloc(void *p, size_t n);

struct map {
	const char **keys;
	void **vals;
	size_t cap, n;
};

/* The value under key, or NULL. */
void *map_get(struct map *m, const char *key);
/* Stores val under key (copied into the arena); replaces an old value. */
void map_put(struct map *m, const char *key, void *val);
/* The map's own copy of key (a slot in m->keys); key must be in m. */
const char **map_key(struct map *m, const char *key);
/* Frees the table (keys and values stay in the arena). */
void map_free(struct map *m);

/* A growing array of pointers. */
struct vec {
	void **v;
	size_t n, cap;
};
/* Appends p. */
void vec_push(struct vec *a, void *p);

/* RFC 3339 ("2026-12-01T20:35:29.755239Z", "...+02:00") to microseconds
 * since the epoch.  Returns 0, or -1 when s is not one. */
int parse_rfc3339(const char *s, int64_t *out);
/* A certificate date: RFC 3339, or the "Dec  3 20:35:30 2026 GMT" of
 * schema 1 files.  Returns 0 or -1. */
int parse_cert_time(const char *s, int64_t *out);

#endif
