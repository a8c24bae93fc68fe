/*
 * tlsplex-report's shared helpers (tools/report_util.h).
 */
#include "report_util.h"
#include "report.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- the arena --------------------------------------------------------- */

struct arena_block {
	struct arena_block *next;
	size_t used, cap;
	char data[];
};
static struct arena_block *arena_head;

void *
arena_alloc(size_t n)
{
	struct arena_block *b = arena_head;
	void *p;

	n = (n + 15) & ~(size_t)15;
	if (b == NULL || b->used + n > b->cap) {
		size_t cap = n > 65536 ? n : 65536;

		b = malloc(sizeof(*b) + cap);
		if (b == NULL) {
			fprintf(stderr, "tlsplex-report: out of memory\n");
			exit(RPT_EXIT_INPUT);
		}
		b->used = 0;
		b->cap = cap;
		b->next = arena_head;
		arena_head = b;
	}
	p = b->data + b->used;
	b->used += n;
	memset(p, 0, n);
	return p;
}

char *
arena_strdup(const char *s)
{
	size_t n;
	char *p;

	if (s == NULL)
		return NULL;
	n = strlen(s);
	p = arena_alloc(n + 1);
	memcpy(p, s, n + 1);
	return p;
}

char *
arena_printf(const char *fmt, ...)
{
	va_list ap;
	char buf[1024];

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return arena_strdup(buf);
}

void *
mem_realloc(void *p, size_t n)
{
	p = realloc(p, n);
	if (p == NULL) {
		fprintf(stderr, "tlsplex-report: out of memory\n");
		exit(RPT_EXIT_INPUT);
	}
	return p;
}

void
arena_release(void)
{
	while (arena_head != NULL) {
		struct arena_block *n = arena_head->next;

		free(arena_head);
		arena_head = n;
	}
}

/* ---- the map: open addressing, FNV-1a ------------------------------------ */


static uint64_t
map_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static void **
map_slot(struct map *m, const char *key)
{
	size_t i;

	if (m->cap == 0)
		return NULL;
	for (i = map_hash(key) & (m->cap - 1); m->keys[i] != NULL;
	     i = (i + 1) & (m->cap - 1))
		if (strcmp(m->keys[i], key) == 0)
			return &m->vals[i];
	return NULL;
}

const char **
map_key(struct map *m, const char *key)
{
	void **v = map_slot(m, key);

	return &m->keys[v - m->vals];
}

void *
map_get(struct map *m, const char *key)
{
	void **v = map_slot(m, key);

	return v != NULL ? *v : NULL;
}

void
map_put(struct map *m, const char *key, void *val)
{
	void **v = map_slot(m, key);
	size_t i, j, oldcap = m->cap;
	const char **ok = m->keys;
	void **ov = m->vals;

	if (v != NULL) {
		*v = val;
		return;
	}
	if (2 * (m->n + 1) > m->cap) {
		m->cap = m->cap ? 2 * m->cap : 64;
		m->keys = mem_realloc(NULL, m->cap * sizeof(*m->keys));
		m->vals = mem_realloc(NULL, m->cap * sizeof(*m->vals));
		memset(m->keys, 0, m->cap * sizeof(*m->keys));
		for (i = 0; i < oldcap; i++) {
			if (ok[i] == NULL)
				continue;
			for (j = map_hash(ok[i]) & (m->cap - 1); m->keys[j];
			     j = (j + 1) & (m->cap - 1))
				;
			m->keys[j] = ok[i];
			m->vals[j] = ov[i];
		}
		free(ok);
		free(ov);
	}
	for (j = map_hash(key) & (m->cap - 1); m->keys[j];
	     j = (j + 1) & (m->cap - 1))
		;
	m->keys[j] = arena_strdup(key);
	m->vals[j] = val;
	m->n++;
}

void
map_free(struct map *m)
{
	free(m->keys);
	free(m->vals);
	memset(m, 0, sizeof(*m));
}

void
vec_push(struct vec *a, void *p)
{
	if (a->n == a->cap) {
		a->cap = a->cap ? 2 * a->cap : 64;
		a->v = mem_realloc(a->v, a->cap * sizeof(*a->v));
	}
	a->v[a->n++] = p;
}

/* ---- times ------------------------------------------------------------ */

static int
digits(const char *s, int n, int *out)
{
	int v = 0, i;

	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

static int64_t
days_from_civil(int y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

int
parse_rfc3339(const char *s, int64_t *out)
{
	int y, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0;
	int64_t us = 0, scale = 100000;
	size_t n = strlen(s);
	const char *p;

	if (n < 20 || digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) ||
	    s[7] != '-' || digits(s + 8, 2, &d) ||
	    (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
	    digits(s + 11, 2, &h) || s[13] != ':' || digits(s + 14, 2, &mi) ||
	    s[16] != ':' || digits(s + 17, 2, &sec))
		return -1;
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
		return -1;
	p = s + 19;
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return -1;
		for (; *p >= '0' && *p <= '9'; p++) {
			us += (*p - '0') * scale;
			scale /= 10;
		}
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p == '+' ? 1 : -1;
		if (digits(p + 1, 2, &oh) || p[3] != ':' || digits(p + 4, 2, &om))
			return -1;
		p += 6;
	} else {
		return -1;
	}
	if (*p != '\0')
		return -1;
	*out = ((days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec) -
		sign * (oh * 3600 + om * 60)) * 1000000 + us;
	return 0;
}

int
parse_cert_time(const char *s, int64_t *out)
{
	static const char mon[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	int d, h, mi, sec, y, m;
	char ms[4];

	if (parse_rfc3339(s, out) == 0)
		return 0;
	if (sscanf(s, "%3s %d %d:%d:%d %d GMT", ms, &d, &h, &mi, &sec, &y) != 6)
		return -1;
	for (m = 0; m < 12; m++)
		if (strncmp(mon + 3 * m, ms, 3) == 0)
			break;
	if (m == 12)
		return -1;
	*out = (days_from_civil(y, m + 1, d) * 86400 + h * 3600 + mi * 60 + sec) *
	       1000000;
	return 0;
}

void
rpt_time_str(int64_t ts_us, char *buf, size_t len)
{
	int64_t sec = ts_us >= 0 ? ts_us / 1000000 : (ts_us - 999999) / 1000000;
	time_t t = (time_t)sec;
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

