/*
 * libFuzzer target: tlsplex-report's JSON Lines reader (tools/jsonl.h).
 *
 * A line is parsed; an accepted object must have unique keys that
 * jobj_get() finds, and writing it out again as JSON (as the hook writes
 * events) must parse to the same keys and values.  The same line with a
 * trailing '\r' must get the same answer.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonl.h"

#define CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)

static struct jobj a, b;
static char out[4 * JOBJ_MAX_TEXT + 16 * JOBJ_MAX_FIELDS + 64];

/* Appends s as a JSON string; returns the new length. */
static size_t
put_str(size_t n, const char *s)
{
	out[n++] = '"';
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			out[n++] = '\\';
			out[n++] = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			n += (size_t)snprintf(out + n, 7, "\\u%04x", c);
		} else {
			out[n++] = (char)c;
		}
	}
	out[n++] = '"';
	return n;
}

/* Writes a as JSON into out; returns its length, or 0 when a holds a
 * number that has no JSON spelling (inf). */
static size_t
write_obj(const struct jobj *o)
{
	size_t n = 0;
	int i;

	out[n++] = '{';
	for (i = 0; i < o->n; i++) {
		const struct jval *v = &o->f[i];

		if (i > 0)
			out[n++] = ',';
		n = put_str(n, v->key);
		out[n++] = ':';
		switch (v->type) {
		case JV_STR:
			n = put_str(n, v->str);
			break;
		case JV_BOOL:
			n += (size_t)sprintf(out + n, "%s", v->b ? "true" : "false");
			break;
		case JV_NUM:
			if (v->is_int) {
				n += (size_t)sprintf(out + n, "%lld", (long long)v->i);
			} else {
				if (!isfinite(v->num))
					return 0;
				n += (size_t)sprintf(out + n, "%.17g", v->num);
			}
			break;
		}
	}
	out[n++] = '}';
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char line[JOBJ_MAX_TEXT + 2];
	char err[256], err2[256];
	int rc, rc2, i, j;
	size_t n;

	if (size > JOBJ_MAX_TEXT)
		return 0;
	memcpy(line, data, size);
	err[0] = '\0';
	rc = jobj_parse(&a, line, size, err, sizeof(err));
	CHECK(rc == 0 || rc == -1);
	if (rc < 0) {
		CHECK(err[0] != '\0');
	} else {
		CHECK(a.n >= 0 && a.n <= JOBJ_MAX_FIELDS);
		for (i = 0; i < a.n; i++) {
			CHECK(jobj_get(&a, a.f[i].key) == &a.f[i]);
			for (j = 0; j < i; j++)
				CHECK(strcmp(a.f[i].key, a.f[j].key) != 0);
		}
		n = write_obj(&a);
		if (n > 0) {
			CHECK(jobj_parse(&b, out, n, err2, sizeof(err2)) == 0);
			CHECK(b.n == a.n);
			for (i = 0; i < a.n; i++) {
				const struct jval *x = &a.f[i], *y = &b.f[i];

				CHECK(strcmp(x->key, y->key) == 0);
				CHECK(x->type == y->type);
				if (x->type == JV_STR)
					CHECK(strcmp(x->str, y->str) == 0);
				else if (x->type == JV_BOOL)
					CHECK(x->b == y->b);
				else if (x->is_int)
					CHECK(y->is_int && x->i == y->i);
				else
					CHECK(x->num == y->num);
			}
		}
	}
	/* A trailing '\r' (a file written on another system) changes
	 * nothing, unless the line already ended in one. */
	if (size > 0 && line[size - 1] == '\r')
		return 0;
	line[size] = '\r';
	rc2 = jobj_parse(&b, line, size + 1, err2, sizeof(err2));
	CHECK(rc2 == rc);
	return 0;
}
