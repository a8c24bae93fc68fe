#include "hook.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static struct {
	hook_fn fn;
	void *arg;
} hook_observers[HOOK_MAX_OBSERVERS];
static int hook_nobservers;
static int hook_fd = -1;
static char hook_path[1024];
static int hook_failing;

static const char *const hook_names[] = {
	"handshake_pending", "handshake_done", "handshake_failed",
	"plaintext_agreed", "link_closed",
};

const char *
hook_type_str(int type)
{
	if (type < 0 || type > HOOK_LINK_CLOSED)
		return "unknown";
	return hook_names[type];
}

int
hook_register(hook_fn fn, void *arg)
{
	if (hook_nobservers >= HOOK_MAX_OBSERVERS)
		return -1;
	hook_observers[hook_nobservers].fn = fn;
	hook_observers[hook_nobservers].arg = arg;
	hook_nobservers++;
	return 0;
}

int
hook_open_file(const char *path)
{
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (fd < 0)
		return -1;
	if (hook_fd >= 0)
		close(hook_fd);
	hook_fd = fd;
	snprintf(hook_path, sizeof(hook_path), "%s", path);
	return 0;
}

void
hook_close_file(void)
{
	if (hook_fd >= 0)
		close(hook_fd);
	hook_fd = -1;
	hook_failing = 0;
}

void
hook_reset(void)
{
	hook_close_file();
	hook_nobservers = 0;
}

/* A bounded JSON writer: every put reports failure once cap is hit. */
struct jw {
	char *p;
	size_t len, cap;
	int err;
	int first;
};

static void
jw_raw(struct jw *w, const char *s, size_t n)
{
	if (w->err || w->len + n >= w->cap) {
		w->err = 1;
		return;
	}
	memcpy(w->p + w->len, s, n);
	w->len += n;
}

static void
jw_str(struct jw *w, const char *s)
{
	char esc[8];

	jw_raw(w, "\"", 1);
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			jw_raw(w, esc, 2);
		} else if (c < 0x20) {
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			jw_raw(w, esc, 6);
		} else {
			jw_raw(w, (const char *)&c, 1);
		}
	}
	jw_raw(w, "\"", 1);
}

static void
jw_key(struct jw *w, const char *k)
{
	if (!w->first)
		jw_raw(w, ",", 1);
	w->first = 0;
	jw_str(w, k);
	jw_raw(w, ":", 1);
}

static void
jw_kstr(struct jw *w, const char *k, const char *v)
{
	if (v == NULL)
		return;
	jw_key(w, k);
	jw_str(w, v);
}

static void
jw_knum(struct jw *w, const char *k, uint64_t v)
{
	char num[24];
	int n = snprintf(num, sizeof(num), "%" PRIu64, v);

	jw_key(w, k);
	jw_raw(w, num, (size_t)n);
}

int
hook_format_json(const struct hook_event *ev, char *buf, size_t cap)
{
	struct jw w = { buf, 0, cap, 0, 1 };
	char ts[64];
	time_t sec = (time_t)(ev->ts_us / 1000000);
	struct tm tm;

	gmtime_r(&sec, &tm);
	snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%06uZ",
		 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		 tm.tm_min, tm.tm_sec, (unsigned)(ev->ts_us % 1000000));
	jw_raw(&w, "{", 1);
	jw_kstr(&w, "ts", ts);
	jw_kstr(&w, "event", hook_type_str(ev->type));
	jw_knum(&w, "link", ev->link_id);
	jw_kstr(&w, "role", ev->role);
	jw_kstr(&w, "local", ev->local);
	jw_kstr(&w, "peer", ev->peer);
	jw_kstr(&w, "peer_node", ev->peer_node);
	switch (ev->type) {
	case HOOK_HANDSHAKE_PENDING:
		jw_knum(&w, "tls_offset_out", ev->tls_offset_out);
		jw_knum(&w, "tls_offset_in", ev->tls_offset_in);
		break;
	case HOOK_HANDSHAKE_DONE:
		jw_kstr(&w, "protocol", ev->protocol);
		jw_kstr(&w, "cipher", ev->cipher);
		jw_kstr(&w, "group", ev->group);
		jw_kstr(&w, "peer_subject", ev->peer_subject);
		jw_kstr(&w, "peer_issuer", ev->peer_issuer);
		jw_kstr(&w, "peer_serial", ev->peer_serial);
		jw_kstr(&w, "peer_sha256", ev->peer_sha256);
		jw_kstr(&w, "peer_not_after", ev->peer_not_after);
		jw_key(&w, "resumed");
		jw_raw(&w, ev->resumed ? "true" : "false", ev->resumed ? 4 : 5);
		jw_knum(&w, "duration_ms", ev->duration_ms);
		break;
	case HOOK_HANDSHAKE_FAILED:
	case HOOK_PLAINTEXT_AGREED:
		jw_kstr(&w, "reason", ev->reason);
		break;
	case HOOK_LINK_CLOSED:
		jw_kstr(&w, "reason", ev->reason);
		jw_knum(&w, "bytes_in", ev->bytes_in);
		jw_knum(&w, "bytes_out", ev->bytes_out);
		jw_knum(&w, "streams", ev->streams);
		jw_knum(&w, "duration_ms", ev->duration_ms);
		break;
	default:
		break;
	}
	jw_raw(&w, "}", 1);
	if (w.err)
		return -1;
	buf[w.len] = '\0';
	return (int)w.len;
}

static void
hook_write_sink(const struct hook_event *ev)
{
	char line[8192];
	int n;
	ssize_t w;

	if (hook_fd < 0)
		return;
	n = hook_format_json(ev, line, sizeof(line) - 1);
	if (n < 0) {
		log_err("hook sink %s: %s event too large to format; dropped",
			hook_path, hook_type_str(ev->type));
		return;
	}
	line[n++] = '\n';
	w = write(hook_fd, line, (size_t)n);
	if (w != n) {
		if (!hook_failing)
			log_err("hook sink %s: write failed: %s; events are "
				"being lost until writes succeed again",
				hook_path, w < 0 ? strerror(errno) : "short write");
		hook_failing = 1;
		return;
	}
	if (hook_failing)
		log_info("hook sink %s: writes succeed again", hook_path);
	hook_failing = 0;
}

int
hook_emit(struct hook_event *ev)
{
	struct timeval tv;
	int i, veto = 0;

	if (ev->ts_us == 0) {
		gettimeofday(&tv, NULL);
		ev->ts_us = (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
	}
	hook_write_sink(ev);
	for (i = 0; i < hook_nobservers; i++)
		if (hook_observers[i].fn(ev, hook_observers[i].arg) < 0)
			veto = 1;
	return veto ? -1 : 0;
}
