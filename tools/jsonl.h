/*
 * A strict reader for the hook's JSON Lines: one flat JSON object per
 * line, keys mapping to strings, numbers or booleans (docs/MONITORING.md,
 * "The schema").  Anything else (nesting, null, duplicate keys, bad
 * escapes, trailing bytes) is an error with a reason.  No allocation:
 * the decoded strings live in the object's own bounded buffer.
 */
#ifndef TLSPLEX_JSONL_H
#define TLSPLEX_JSONL_H

#include <stddef.h>
#include <stdint.h>

#define JOBJ_MAX_FIELDS 128
#define JOBJ_MAX_TEXT 65536 /* decoded keys and strings of one line */

enum jval_type {
	JV_STR,
	JV_NUM,
	JV_BOOL,
};

struct jval {
	const char *key;
	uint32_t hash;   /* of key: lookups compare it first */
	enum jval_type type;
	const char *str; /* JV_STR: NUL-terminated, may not hold a NUL */
	double num;      /* JV_NUM */
	int is_int;      /* JV_NUM: an integer that fits int64 */
	int64_t i;       /* JV_NUM when is_int */
	int b;           /* JV_BOOL */
};

struct jobj {
	struct jval f[JOBJ_MAX_FIELDS];
	int n;
	char text[JOBJ_MAX_TEXT];
	size_t used;
};

/* Parses one line (len bytes, no newline; a trailing '\r' is allowed)
 * into o.  Returns 0, or -1 with a reason in err (e.g. "byte 17: bad
 * escape \q"). */
int jobj_parse(struct jobj *o, const char *line, size_t len, char *err,
	       size_t errlen);
/* The value of key, or NULL when o has no such key. */
const struct jval *jobj_get(const struct jobj *o, const char *key);
/* The string value of key, or NULL when absent or not a string. */
const char *jobj_str(const struct jobj *o, const char *key);
/* Stores key's integer value in *out; returns 0, or -1 when absent or
 * not an integer. */
int jobj_int(const struct jobj *o, const char *key, int64_t *out);

#endif
