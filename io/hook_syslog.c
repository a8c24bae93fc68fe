/*
 * The syslog sink: RFC 5424 messages as datagrams on the syslog daemon's
 * Unix socket (/dev/log), sent with a non-blocking sendto() rather than
 * syslog(3), which blocks when the daemon is stuck.  rfc5424 carries the
 * event's keys as structured data (SD-ID tlsplex@32473); json carries the
 * event's JSON as the message.  Events are INFO; refusals and failures
 * WARNING.  No receiver, or a full one, drops the event (counted by the
 * core, as for the socket sink).
 */
#include "hook.h"
#include "hook_sink.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hook_dgram.h"

/* The private enterprise number in the SD-ID (RFC 5424, 7.2.2). */
#define SYSLOG_SD_ID "tlsplex@32473"
#define SYSLOG_SEV_WARNING 4
#define SYSLOG_SEV_INFO 6
/* A message: the header, and the event's keys escaped (at most twice
 * their length). */
#define SYSLOG_MSG_MAX (2 * HOOK_LINE_MAX + 1024)

struct hook_syslog {
	struct hook_dgram d;
	int format;              /* enum hook_syslog_format */
	int facility;
	char ident[49];          /* APP-NAME: 1*48 PRINTUSASCII */
	char host[256];          /* HOSTNAME: 1*255 PRINTUSASCII */
};

struct sbuf {
	char *p;
	size_t len, cap;
	int err;
};

static void
sb_put(struct sbuf *b, const char *s, size_t n)
{
	if (b->err || b->len + n >= b->cap) {
		b->err = 1;
		return;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void
sb_str(struct sbuf *b, const char *s)
{
	sb_put(b, s, strlen(s));
}

/* PRINTUSASCII only (RFC 5424 HOSTNAME, APP-NAME); "-" when empty. */
static void
syslog_token(char *dst, size_t cap, const char *src)
{
	size_t n = 0;

	for (; *src != '\0' && n + 1 < cap; src++)
		if (*src > 32 && *src < 127)
			dst[n++] = *src;
	if (n == 0)
		dst[n++] = '-';
	dst[n] = '\0';
}

static int
syslog_severity(const struct hook_event *ev)
{
	switch (ev->type) {
	case HOOK_LINK_REFUSED:
	case HOOK_HANDSHAKE_FAILED:
		return SYSLOG_SEV_WARNING;
	case HOOK_LINK_CLOSED:
		if (ev->outcome != NULL && strcmp(ev->outcome, "tls") != 0 &&
		    strcmp(ev->outcome, "plaintext") != 0)
			return SYSLOG_SEV_WARNING;
		return SYSLOG_SEV_INFO;
	case HOOK_DAEMON_RELOADED:
		if (ev->result != NULL && strcmp(ev->result, "ok") != 0)
			return SYSLOG_SEV_WARNING;
		return SYSLOG_SEV_INFO;
	default:
		return SYSLOG_SEV_INFO;
	}
}

/* One JSON string at *pp (after its opening quote), written with the
 * PARAM-VALUE escapes of RFC 5424 (", \ and ] take a backslash); control
 * characters become blanks.  Returns -1 if the string is cut short. */
static int
syslog_sd_value(struct sbuf *b, const char **pp)
{
	const char *p = *pp;
	char c;

	for (; *p != '\0' && *p != '"'; p++) {
		c = *p;
		if (c == '\\') {
			p++;
			switch (*p) {
			case 'u':
				if (strlen(p) < 5)
					return -1;
				c = ' ';	/* only control characters */
				p += 4;
				break;
			case 'n': case 't': case 'r': case 'b': case 'f':
				c = ' ';
				break;
			case '\0':
				return -1;
			default:
				c = *p;
				break;
			}
		}
		if (c == '"' || c == '\\' || c == ']')
			sb_put(b, "\\", 1);
		sb_put(b, &c, 1);
	}
	if (*p != '"')
		return -1;
	*pp = p + 1;
	return 0;
}

/* The event's flat JSON object as one SD-ELEMENT; ts is in the header
 * already.  Returns -1 on a malformed object. */
static int
syslog_sd(struct sbuf *b, const char *json)
{
	const char *p = json, *k;
	size_t klen;
	int skip;

	if (*p++ != '{')
		return -1;
	sb_str(b, "[" SYSLOG_SD_ID);
	while (*p != '}') {
		if (*p++ != '"')
			return -1;
		k = p;
		p = strchr(p, '"');
		if (p == NULL || p[1] != ':')
			return -1;
		klen = (size_t)(p - k);
		p += 2;
		skip = klen == 2 && memcmp(k, "ts", 2) == 0;
		if (!skip) {
			sb_put(b, " ", 1);
			sb_put(b, k, klen);
			sb_put(b, "=\"", 2);
		}
		if (*p == '"') {
			struct sbuf scratch = { NULL, 0, 0, 1 };

			p++;
			if (syslog_sd_value(skip ? &scratch : b, &p) < 0)
				return -1;
		} else {
			const char *v = p;

			p += strcspn(p, ",}");
			if (!skip)
				sb_put(b, v, (size_t)(p - v));
		}
		if (!skip)
			sb_put(b, "\"", 1);
		if (*p == ',')
			p++;
		else if (*p != '}')
			return -1;
	}
	sb_put(b, "]", 1);
	return 0;
}

static int
hook_syslog_write(void *state, const struct hook_event *ev, const char *json,
		  size_t len)
{
	struct hook_syslog *s = state;
	char msg[SYSLOG_MSG_MAX], head[400], ts[40];
	struct sbuf b = { msg, 0, sizeof(msg), 0 };

	hook_rfc3339(ev->ts_us, ts, sizeof(ts));
	snprintf(head, sizeof(head), "<%d>1 %s %s %s %lu %s ",
		 s->facility * 8 + syslog_severity(ev), ts, s->host, s->ident,
		 (unsigned long)getpid(), hook_type_str(ev->type));
	sb_str(&b, head);
	if (s->format == HOOK_SYSLOG_JSON) {
		sb_put(&b, "- ", 2);
		sb_put(&b, json, len);
	} else {
		if (syslog_sd(&b, json) < 0)
			return -1;
		/* The message: the event's sentence, on one line. */
		if (ev->reason != NULL && ev->reason[0] != '\0') {
			sb_put(&b, " ", 1);
			for (const char *r = ev->reason; *r != '\0'; r++)
				sb_put(&b, (unsigned char)*r < 32 || *r == 127 ?
				       " " : r, 1);
		}
	}
	if (b.err)
		return -1;
	return hook_dgram_send(&s->d, "syslog", msg, b.len);
}

static void
hook_syslog_free(void *state)
{
	struct hook_syslog *s = state;

	if (s == NULL)
		return;
	hook_dgram_close(&s->d);
	free(s);
}

static const struct hook_sink_ops hook_syslog_ops = {
	.kind = "syslog",
	.write = hook_syslog_write,
	.free = hook_syslog_free,
};

int
hook_open_syslog(int format, int facility, const char *ident,
		 const char *path, char *err, size_t errlen)
{
	struct hook_syslog *s, *old;
	char name[sizeof(s->d.sa.sun_path) + 8], host[256];

	if (format != HOOK_SYSLOG_JSON && format != HOOK_SYSLOG_RFC5424) {
		hook_close_syslog();
		return 0;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (hook_dgram_init(&s->d, path) < 0 || facility < 0 ||
	    facility > 23) {
		snprintf(err, errlen, "hook_syslog: socket path '%.200s' or "
			 "facility %d out of range", path, facility);
		goto fail;
	}
	s->format = format;
	s->facility = facility;
	syslog_token(s->ident, sizeof(s->ident), ident);
	if (gethostname(host, sizeof(host)) != 0)
		host[0] = '\0';
	host[sizeof(host) - 1] = '\0';
	syslog_token(s->host, sizeof(s->host), host);
	old = hook_sink_state(&hook_syslog_ops);
	if (old != NULL && old->format == s->format &&
	    old->facility == s->facility && strcmp(old->ident, s->ident) == 0 &&
	    strcmp(old->host, s->host) == 0 &&
	    strcmp(old->d.sa.sun_path, s->d.sa.sun_path) == 0) {
		hook_syslog_free(s);
		return 0;
	}
	if (hook_dgram_open(&s->d, "hook_syslog", err, errlen) < 0)
		goto fail;
	hook_sink_remove(&hook_syslog_ops);
	snprintf(name, sizeof(name), "syslog:%s", path);
	if (hook_sink_add(name, &hook_syslog_ops, s) < 0) {
		snprintf(err, errlen, "too many hook sinks (at most %d)",
			 HOOK_MAX_SINKS);
		goto fail;
	}
	return 0;
fail:
	hook_syslog_free(s);
	return -1;
}

void
hook_close_syslog(void)
{
	hook_sink_remove(&hook_syslog_ops);
}
