/*
 * The flat-object JSON reader (tools/jsonl.h).  Grammar: RFC 8259 for one
 * object whose values are strings, numbers, true or false.  Bytes from
 * 0x80 up are taken as they come: the daemons pass names from
 * certificates and peers through without re-encoding them.
 */
#include "jsonl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t
key_hash(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

struct jp {
	const char *p, *end, *start;
	struct jobj *o;
	char *err;
	size_t errlen;
};

static int
jp_fail(struct jp *j, const char *fmt, ...)
{
	va_list ap;
	int n;

	n = snprintf(j->err, j->errlen, "byte %zu: ", (size_t)(j->p - j->start) + 1);
	if (n < 0 || (size_t)n >= j->errlen)
		return -1;
	va_start(ap, fmt);
	vsnprintf(j->err + n, j->errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return -1;
}

static void
jp_ws(struct jp *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t'))
		j->p++;
}

static int
jp_put(struct jp *j, const char *s, size_t n)
{
	if (j->o->used + n >= sizeof(j->o->text))
		return jp_fail(j, "strings longer than %d bytes in one line",
			       JOBJ_MAX_TEXT);
	memcpy(j->o->text + j->o->used, s, n);
	j->o->used += n;
	return 0;
}

static int
jp_hex4(struct jp *j, unsigned *out)
{
	unsigned v = 0;
	int i;

	if (j->end - j->p < 4)
		return jp_fail(j, "\\u needs four hex digits");
	for (i = 0; i < 4; i++) {
		char c = j->p[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return jp_fail(j, "\\u needs four hex digits");
	}
	j->p += 4;
	*out = v;
	return 0;
}

static int
jp_utf8(struct jp *j, unsigned cp)
{
	char b[4];
	size_t n;

	if (cp < 0x80) {
		b[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		b[0] = (char)(0xc0 | cp >> 6);
		b[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = (char)(0xe0 | cp >> 12);
		b[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		b[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		b[0] = (char)(0xf0 | cp >> 18);
		b[1] = (char)(0x80 | (cp >> 12 & 0x3f));
		b[2] = (char)(0x80 | (cp >> 6 & 0x3f));
		b[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	return jp_put(j, b, n);
}

/* A string at j->p (at its opening quote); *out points into o->text. */
static int
jp_string(struct jp *j, const char **out)
{
	size_t at = j->o->used;
	unsigned cp, lo;

	if (j->p >= j->end || *j->p != '"')
		return jp_fail(j, "expected a string");
	j->p++;
	for (;;) {
		const char *run = j->p;
		unsigned char c;

		while (j->p < j->end && *j->p != '"' && *j->p != '\\' &&
		       (unsigned char)*j->p >= 0x20)
			j->p++;
		if (jp_put(j, run, (size_t)(j->p - run)) < 0)
			return -1;
		if (j->p >= j->end)
			return jp_fail(j, "unterminated string");
		c = (unsigned char)*j->p;
		if (c == '"')
			break;
		if (c < 0x20)
			return jp_fail(j, "control character 0x%02x in a string", c);
		j->p++; /* the backslash */
		if (j->p >= j->end)
			return jp_fail(j, "unterminated escape");
		c = (unsigned char)*j->p++;
		switch (c) {
		case '"': case '\\': case '/':
			if (jp_put(j, (const char *)&c, 1) < 0)
				return -1;
			break;
		case 'b': if (jp_put(j, "\b", 1) < 0) return -1; break;
		case 'f': if (jp_put(j, "\f", 1) < 0) return -1; break;
		case 'n': if (jp_put(j, "\n", 1) < 0) return -1; break;
		case 'r': if (jp_put(j, "\r", 1) < 0) return -1; break;
		case 't': if (jp_put(j, "\t", 1) < 0) return -1; break;
		case 'u':
			if (jp_hex4(j, &cp) < 0)
				return -1;
			if (cp >= 0xdc00 && cp <= 0xdfff)
				return jp_fail(j, "lone low surrogate \\u%04x", cp);
			if (cp >= 0xd800 && cp <= 0xdbff) {
				if (j->end - j->p < 2 || j->p[0] != '\\' ||
				    j->p[1] != 'u')
					return jp_fail(j, "high surrogate \\u%04x "
						       "without its low half", cp);
				j->p += 2;
				if (jp_hex4(j, &lo) < 0)
					return -1;
				if (lo < 0xdc00 || lo > 0xdfff)
					return jp_fail(j, "high surrogate \\u%04x "
						       "without its low half", cp);
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			}
			if (cp == 0)
				return jp_fail(j, "\\u0000 in a string");
			if (jp_utf8(j, cp) < 0)
				return -1;
			break;
		default:
			j->p--;
			return jp_fail(j, "bad escape \\%c", c);
		}
	}
	j->p++; /* the closing quote */
	if (jp_put(j, "", 1) < 0)
		return -1;
	*out = j->o->text + at;
	return 0;
}

static int
jp_number(struct jp *j, struct jval *v)
{
	const char *s = j->p;
	char tmp[64], *end;
	int frac = 0;
	size_t n;

	if (j->p < j->end && *j->p == '-')
		j->p++;
	if (j->p >= j->end || *j->p < '0' || *j->p > '9')
		return jp_fail(j, "bad number");
	if (*j->p == '0') {
		j->p++;
		if (j->p < j->end && *j->p >= '0' && *j->p <= '9')
			return jp_fail(j, "number with a leading zero");
	} else {
		while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
			j->p++;
	}
	if (j->p < j->end && *j->p == '.') {
		frac = 1;
		j->p++;
		if (j->p >= j->end || *j->p < '0' || *j->p > '9')
			return jp_fail(j, "bad number: no digit after '.'");
		while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
			j->p++;
	}
	if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
		frac = 1;
		j->p++;
		if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
			j->p++;
		if (j->p >= j->end || *j->p < '0' || *j->p > '9')
			return jp_fail(j, "bad number: no digit in the exponent");
		while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
			j->p++;
	}
	n = (size_t)(j->p - s);
	if (n >= sizeof(tmp))
		return jp_fail(j, "number too long");
	memcpy(tmp, s, n);
	tmp[n] = '\0';
	v->type = JV_NUM;
	v->num = strtod(tmp, NULL);
	v->is_int = 0;
	if (!frac) {
		errno = 0;
		v->i = strtoll(tmp, &end, 10);
		v->is_int = errno == 0;
	}
	return 0;
}

static int
jp_value(struct jp *j, struct jval *v)
{
	if (j->p >= j->end)
		return jp_fail(j, "missing value");
	switch (*j->p) {
	case '"':
		v->type = JV_STR;
		return jp_string(j, &v->str);
	case 't':
		if (j->end - j->p >= 4 && memcmp(j->p, "true", 4) == 0) {
			j->p += 4;
			v->type = JV_BOOL;
			v->b = 1;
			return 0;
		}
		break;
	case 'f':
		if (j->end - j->p >= 5 && memcmp(j->p, "false", 5) == 0) {
			j->p += 5;
			v->type = JV_BOOL;
			v->b = 0;
			return 0;
		}
		break;
	case 'n':
		return jp_fail(j, "null is not a value in this schema");
	case '{': case '[':
		return jp_fail(j, "nested %s: events are flat objects",
			       *j->p == '{' ? "object" : "array");
	default:
		if (*j->p == '-' || (*j->p >= '0' && *j->p <= '9'))
			return jp_number(j, v);
		break;
	}
	return jp_fail(j, "bad value");
}

int
jobj_parse(struct jobj *o, const char *line, size_t len, char *err,
	   size_t errlen)
{
	struct jp j = { line, line + len, line, o, err, errlen };
	int i;

	o->n = 0;
	o->used = 0;
	if (len > 0 && line[len - 1] == '\r')
		j.end--;
	jp_ws(&j);
	if (j.p >= j.end || *j.p != '{')
		return jp_fail(&j, "a line must be one JSON object");
	j.p++;
	jp_ws(&j);
	if (j.p < j.end && *j.p == '}') {
		j.p++;
	} else {
		for (;;) {
			struct jval *v;

			if (o->n >= JOBJ_MAX_FIELDS)
				return jp_fail(&j, "more than %d keys",
					       JOBJ_MAX_FIELDS);
			v = &o->f[o->n];
			jp_ws(&j);
			if (jp_string(&j, &v->key) < 0)
				return -1;
			v->hash = key_hash(v->key);
			for (i = 0; i < o->n; i++)
				if (o->f[i].hash == v->hash &&
				    strcmp(o->f[i].key, v->key) == 0)
					return jp_fail(&j, "duplicate key \"%s\"",
						       v->key);
			jp_ws(&j);
			if (j.p >= j.end || *j.p != ':')
				return jp_fail(&j, "expected ':'");
			j.p++;
			jp_ws(&j);
			if (jp_value(&j, v) < 0)
				return -1;
			o->n++;
			jp_ws(&j);
			if (j.p < j.end && *j.p == ',') {
				j.p++;
				continue;
			}
			if (j.p < j.end && *j.p == '}') {
				j.p++;
				break;
			}
			return jp_fail(&j, j.p >= j.end ? "the object is cut "
				       "short" : "expected ',' or '}'");
		}
	}
	jp_ws(&j);
	if (j.p != j.end)
		return jp_fail(&j, "bytes after the object");
	return 0;
}

const struct jval *
jobj_get(const struct jobj *o, const char *key)
{
	uint32_t h = key_hash(key);
	int i;

	for (i = 0; i < o->n; i++)
		if (o->f[i].hash == h && strcmp(o->f[i].key, key) == 0)
			return &o->f[i];
	return NULL;
}

const char *
jobj_str(const struct jobj *o, const char *key)
{
	const struct jval *v = jobj_get(o, key);

	return v != NULL && v->type == JV_STR ? v->str : NULL;
}

int
jobj_int(const struct jobj *o, const char *key, int64_t *out)
{
	const struct jval *v = jobj_get(o, key);

	if (v == NULL || v->type != JV_NUM || !v->is_int)
		return -1;
	*out = v->i;
	return 0;
}
