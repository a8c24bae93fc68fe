/*
 * The hook file checker; see hookcheck.h.
 */
#include <criterion/criterion.h>
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "hookcheck.h"

#define HK_LINE_MAX 16384

/*
 * Every check goes through HK_ASSERT: a Criterion failure, or, while
 * hk_probe() runs, a jump back to it with the message (so that a test
 * can show the checker failing on a broken stream).
 */
static jmp_buf *hk_probing;
static char hk_probe_msg[1024];
static struct hk_state *hk_probe_state; /* freed when a probe jumps */

static void hk_failed(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));

#define HK_ASSERT(cond, ...) \
	do { \
		if (!(cond)) \
			hk_failed(__VA_ARGS__); \
	} while (0)

static void
hk_failed(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(hk_probe_msg, sizeof(hk_probe_msg), fmt, ap);
	va_end(ap);
	if (hk_probing != NULL)
		longjmp(*hk_probing, 1);
	cr_assert_fail("%s", hk_probe_msg);
	abort();
}

static const char *const hk_events[] = {
	"daemon_started", "daemon_reloaded", "daemon_stopping", "link_opened",
	"link_refused", "handshake_pending", "handshake_done",
	"handshake_failed", "plaintext_agreed", "link_closed",
	"link_summary", "service_summary", "summary_end", "sink_recovered",
	"relay_switch",
	NULL,
};

static const char *const hk_link_events[] = {
	"link_opened", "link_refused", "handshake_pending", "handshake_done",
	"handshake_failed", "plaintext_agreed", "link_closed", NULL,
};

static const char *const hk_fail_stages[] = {
	"tls", "verify", "bind", "transport", "timeout", "veto", "shutdown",
	"resources", NULL,
};

static const char *const hk_outcomes[] = {
	"tls", "plaintext", "refused", "failed", "aborted", "connect_failed",
	NULL,
};

static const char *const hk_protections[] = {
	"tls", "plaintext", "none", NULL,
};

static int
in_list(const char *s, const char *const *list)
{
	for (; s != NULL && *list != NULL; list++)
		if (strcmp(s, *list) == 0)
			return 1;
	return 0;
}

/* ---- parsing --------------------------------------------------------- */

static const char *
skip_ws(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/* A JSON string at p (after the quote) into a malloc'd buffer; returns
 * the position after the closing quote, or NULL. */
static const char *
parse_string(const char *p, char **out)
{
	size_t cap = strlen(p) + 1, n = 0;
	char *s = malloc(cap);

	HK_ASSERT(s != NULL, "out of memory");
	while (*p != '"') {
		if (*p == '\0' || (unsigned char)*p < 0x20) {
			free(s);
			return NULL;
		}
		if (*p != '\\') {
			s[n++] = *p++;
			continue;
		}
		p++;
		switch (*p) {
		case '"': case '\\': case '/':
			s[n++] = *p;
			break;
		case 'b': s[n++] = '\b'; break;
		case 'f': s[n++] = '\f'; break;
		case 'n': s[n++] = '\n'; break;
		case 'r': s[n++] = '\r'; break;
		case 't': s[n++] = '\t'; break;
		case 'u':
			for (int i = 1; i <= 4; i++)
				if (!isxdigit((unsigned char)p[i])) {
					free(s);
					return NULL;
				}
			s[n++] = '?';	/* enough for these checks */
			p += 4;
			break;
		default:
			free(s);
			return NULL;
		}
		p++;
	}
	s[n] = '\0';
	*out = s;
	return p + 1;
}

/* A number, true or false at p; returns the position after it. */
static const char *
parse_scalar(const char *p, char **out)
{
	const char *start = p;

	if (strncmp(p, "true", 4) == 0 || strncmp(p, "false", 5) == 0) {
		p += *p == 't' ? 4 : 5;
	} else {
		if (*p == '-')
			p++;
		if (!isdigit((unsigned char)*p))
			return NULL;
		while (isdigit((unsigned char)*p) || *p == '.' || *p == 'e' ||
		       *p == 'E' || *p == '+' || *p == '-')
			p++;
	}
	*out = strndup(start, (size_t)(p - start));
	HK_ASSERT(*out != NULL, "out of memory");
	return p;
}

static void
parse_line(const char *file, int lineno, const char *line, struct hk_ev *ev)
{
	const char *p = skip_ws(line);
	size_t cap = 0;

	memset(ev, 0, sizeof(*ev));
	ev->line = lineno;
	ev->file = file;
	HK_ASSERT(*p == '{', "%s:%d: not a JSON object: %s", file, lineno,
		  line);
	p = skip_ws(p + 1);
	while (*p != '}') {
		struct hk_kv kv = { NULL, NULL, 0 };

		HK_ASSERT(*p == '"', "%s:%d: expected a key: %s", file,
			  lineno, line);
		p = parse_string(p + 1, &kv.key);
		HK_ASSERT(p != NULL, "%s:%d: bad key: %s", file, lineno,
			  line);
		p = skip_ws(p);
		HK_ASSERT(*p == ':', "%s:%d: expected ':': %s", file,
			  lineno, line);
		p = skip_ws(p + 1);
		HK_ASSERT(*p != '{' && *p != '[',
			  "%s:%d: key %s holds an object or array (the schema "
			  "is flat): %s", file, lineno, kv.key, line);
		if (*p == '"') {
			kv.str = 1;
			p = parse_string(p + 1, &kv.val);
		} else {
			p = parse_scalar(p, &kv.val);
		}
		HK_ASSERT(p != NULL, "%s:%d: bad value of %s: %s", file,
			  lineno, kv.key, line);
		HK_ASSERT(hk_get(ev, kv.key) == NULL,
			  "%s:%d: key %s twice: %s", file, lineno, kv.key,
			  line);
		if (ev->n == cap) {
			cap = cap ? 2 * cap : 32;
			ev->kv = realloc(ev->kv, cap * sizeof(*ev->kv));
			HK_ASSERT(ev->kv != NULL, "out of memory");
		}
		ev->kv[ev->n++] = kv;
		p = skip_ws(p);
		if (*p == ',')
			p = skip_ws(p + 1);
		else
			HK_ASSERT(*p == '}',
				  "%s:%d: expected ',' or '}': %s", file,
				  lineno, line);
	}
	HK_ASSERT(*skip_ws(p + 1) == '\0',
		  "%s:%d: bytes after the object: %s", file, lineno, line);
}

struct hk_log *
hk_load(const char *const *paths, size_t npaths)
{
	struct hk_log *log = calloc(1, sizeof(*log));
	size_t cap = 0;

	HK_ASSERT(log != NULL, "out of memory");
	for (size_t f = 0; f < npaths; f++) {
		size_t len;
		char *buf = h_read_file(paths[f], &len), *line, *next;
		const char *file;
		int lineno = 0;

		HK_ASSERT(f < sizeof(log->files) / sizeof(log->files[0]),
			  "too many files");
		log->files[f] = strdup(strrchr(paths[f], '/') ?
				       strrchr(paths[f], '/') + 1 : paths[f]);
		HK_ASSERT(log->files[f] != NULL, "out of memory");
		file = log->files[f];

		snprintf(log->name + strlen(log->name),
			 sizeof(log->name) - strlen(log->name), "%s%s",
			 f ? " + " : "", file);
		if (buf == NULL)
			continue;
		HK_ASSERT(len == 0 || buf[len - 1] == '\n',
			  "%s: the last line is cut short", paths[f]);
		for (line = buf; *line != '\0'; line = next) {
			next = strchr(line, '\n');
			*next++ = '\0';
			lineno++;
			HK_ASSERT(strlen(line) < HK_LINE_MAX,
				  "%s:%d: line too long", file, lineno);
			if (log->n == cap) {
				cap = cap ? 2 * cap : 64;
				log->ev = realloc(log->ev, cap * sizeof(*log->ev));
				HK_ASSERT(log->ev != NULL, "out of memory");
			}
			parse_line(file, lineno, line, &log->ev[log->n++]);
		}
		free(buf);
	}
	return log;
}

struct hk_log *
hk_load1(const char *path)
{
	return hk_load(&path, 1);
}

void
hk_free(struct hk_log *log)
{
	if (log == NULL)
		return;
	for (size_t i = 0; i < log->n; i++) {
		for (size_t k = 0; k < log->ev[i].n; k++) {
			free(log->ev[i].kv[k].key);
			free(log->ev[i].kv[k].val);
		}
		free(log->ev[i].kv);
	}
	free(log->ev);
	for (size_t f = 0; f < sizeof(log->files) / sizeof(log->files[0]); f++)
		free(log->files[f]);
	free(log);
}

/* ---- access ---------------------------------------------------------- */

const char *
hk_get(const struct hk_ev *ev, const char *key)
{
	for (size_t i = 0; i < ev->n; i++)
		if (strcmp(ev->kv[i].key, key) == 0)
			return ev->kv[i].val;
	return NULL;
}

static const struct hk_kv *
hk_kv(const struct hk_ev *ev, const char *key)
{
	for (size_t i = 0; i < ev->n; i++)
		if (strcmp(ev->kv[i].key, key) == 0)
			return &ev->kv[i];
	return NULL;
}

uint64_t
hk_num(const struct hk_ev *ev, const char *key)
{
	const struct hk_kv *kv = hk_kv(ev, key);

	HK_ASSERT(kv != NULL, "%s:%d: %s has no %s", ev->file, ev->line,
		  hk_get(ev, "event"), key);
	HK_ASSERT(!kv->str && isdigit((unsigned char)kv->val[0]),
		  "%s:%d: %s is not a number: %s", ev->file, ev->line, key,
		  kv->val);
	return strtoull(kv->val, NULL, 10);
}

int
hk_is(const struct hk_ev *ev, const char *key, const char *val)
{
	const char *v;

	if (key == NULL)
		return 1;
	v = hk_get(ev, key);
	return v != NULL && val != NULL && strcmp(v, val) == 0;
}

const struct hk_ev *
hk_nth(const struct hk_log *log, const char *event, const char *key,
       const char *val, size_t i)
{
	for (size_t k = 0; k < log->n; k++) {
		const struct hk_ev *ev = &log->ev[k];

		if ((event == NULL || hk_is(ev, "event", event)) &&
		    hk_is(ev, key, val) && i-- == 0)
			return ev;
	}
	return NULL;
}

size_t
hk_count(const struct hk_log *log, const char *event, const char *key,
	 const char *val)
{
	size_t n = 0;

	while (hk_nth(log, event, key, val, n) != NULL)
		n++;
	return n;
}

static int
same_link(const struct hk_ev *a, const struct hk_ev *b)
{
	const char *la = hk_get(a, "link"), *lb = hk_get(b, "link");

	return la != NULL && lb != NULL && strcmp(la, lb) == 0 &&
	       strcmp(hk_get(a, "instance"), hk_get(b, "instance")) == 0;
}

const struct hk_ev *
hk_link_nth(const struct hk_log *log, const struct hk_ev *ev, size_t i)
{
	for (size_t k = 0; k < log->n; k++)
		if (same_link(&log->ev[k], ev) && i-- == 0)
			return &log->ev[k];
	return NULL;
}

const struct hk_ev *
hk_link_closed(const struct hk_log *log, const struct hk_ev *ev)
{
	const struct hk_ev *e;

	for (size_t i = 0; (e = hk_link_nth(log, ev, i)) != NULL; i++)
		if (hk_is(e, "event", "link_closed"))
			return e;
	return NULL;
}

/* ---- the invariants -------------------------------------------------- */

/* What the checker knows of one link. */
struct hk_link {
	char instance[40];
	uint64_t id;
	const struct hk_ev *opened, *closed, *pending, *answer, *refused;
	const struct hk_ev *plaintext;
	char transcript[40];
	const char *direction;
};

struct hk_state {
	struct hk_link *links;
	size_t n, cap;
};

static struct hk_link *
link_find(struct hk_state *st, const char *instance, uint64_t id)
{
	for (size_t i = 0; i < st->n; i++)
		if (st->links[i].id == id &&
		    strcmp(st->links[i].instance, instance) == 0)
			return &st->links[i];
	return NULL;
}

static struct hk_link *
link_add(struct hk_state *st, const char *instance, uint64_t id)
{
	struct hk_link *l;

	if (st->n == st->cap) {
		st->cap = st->cap ? 2 * st->cap : 16;
		st->links = realloc(st->links, st->cap * sizeof(*st->links));
		HK_ASSERT(st->links != NULL, "out of memory");
	}
	l = &st->links[st->n++];
	memset(l, 0, sizeof(*l));
	snprintf(l->instance, sizeof(l->instance), "%s", instance);
	l->id = id;
	return l;
}

static int
is_hex(const char *s, size_t n)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++)
		if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
			return 0;
	return i == n;
}

int
hk_rfc3339(const char *s)
{
	static const char pat[] = "dddd-dd-ddTdd:dd:dd";
	size_t i;

	if (s == NULL || strlen(s) < sizeof(pat))
		return 0;
	for (i = 0; pat[i] != '\0'; i++)
		if (pat[i] == 'd' ? !isdigit((unsigned char)s[i]) : s[i] != pat[i])
			return 0;
	if (s[i] == '.') {
		i++;
		if (!isdigit((unsigned char)s[i]))
			return 0;
		while (isdigit((unsigned char)s[i]))
			i++;
	}
	return strcmp(s + i, "Z") == 0;
}

/* The keys every event carries. */
static void
check_head(const struct hk_ev *ev)
{
	const char *e = hk_get(ev, "event"), *inst = hk_get(ev, "instance");
	const char *role = hk_get(ev, "role");

	HK_ASSERT(e != NULL, "%s:%d: no event key", ev->file, ev->line);
	HK_ASSERT(in_list(e, hk_events), "%s:%d: unknown event %s", ev->file,
		  ev->line, e);
	HK_ASSERT(hk_rfc3339(hk_get(ev, "ts")), "%s:%d: ts not RFC 3339: %s",
		  ev->file, ev->line, hk_get(ev, "ts"));
	HK_ASSERT(hk_num(ev, "v") == 2, "%s:%d: schema version", ev->file,
		  ev->line);
	HK_ASSERT(hk_num(ev, "seq") > 0, "%s:%d: seq 0", ev->file, ev->line);
	HK_ASSERT(inst != NULL && is_hex(inst, 16), "%s:%d: instance %s",
		  ev->file, ev->line, inst);
	HK_ASSERT(hk_get(ev, "node") != NULL && hk_get(ev, "node")[0] != '\0',
		  "%s:%d: no node", ev->file, ev->line);
	HK_ASSERT(hk_num(ev, "pid") > 0, "%s:%d: pid 0", ev->file, ev->line);
	HK_ASSERT(role != NULL && (strcmp(role, "relay") == 0 ||
		  strcmp(role, "gateway") == 0), "%s:%d: role %s", ev->file,
		  ev->line, role);
	HK_ASSERT(!in_list(e, (const char *const[]){ "stream_opened",
						     "stream_closed", NULL }),
		  "%s:%d: a sink got an observer-only event", ev->file,
		  ev->line);
}

/* The keys every link event carries, and the TCP-stage refusal's. */
static void
check_link_keys(const struct hk_ev *ev)
{
	const char *e = hk_get(ev, "event");
	const char *tls_role = hk_get(ev, "tls_role");
	int relay = hk_is(ev, "role", "relay");

	HK_ASSERT(hk_get(ev, "peer") != NULL, "%s:%d: %s without peer",
		  ev->file, ev->line, e);
	HK_ASSERT(hk_get(ev, "peer_ip") != NULL, "%s:%d", ev->file, ev->line);
	HK_ASSERT(hk_num(ev, "peer_port") > 0, "%s:%d: peer_port 0", ev->file,
		  ev->line);
	if (hk_get(ev, "local") != NULL) {
		HK_ASSERT(hk_get(ev, "local_ip") != NULL, "%s:%d", ev->file,
			  ev->line);
		HK_ASSERT(hk_num(ev, "local_port") > 0, "%s:%d: local_port 0",
			  ev->file, ev->line);
	}
	if (hk_is(ev, "event", "link_refused") && hk_is(ev, "stage", "tcp")) {
		HK_ASSERT(hk_get(ev, "link") == NULL,
			  "%s:%d: a TCP-stage refusal names a link", ev->file,
			  ev->line);
		HK_ASSERT(hk_get(ev, "reason_name") != NULL, "%s:%d",
			  ev->file, ev->line);
		HK_ASSERT(hk_is(ev, "by", "local"), "%s:%d", ev->file,
			  ev->line);
		return;
	}
	HK_ASSERT(tls_role != NULL &&
		  strcmp(tls_role, relay ? "server" : "client") == 0,
		  "%s:%d: tls_role %s on the %s", ev->file, ev->line, tls_role,
		  hk_get(ev, "role"));
	HK_ASSERT(hk_num(ev, "link") > 0, "%s:%d: link 0", ev->file, ev->line);
	if (hk_get(ev, "transcript") != NULL)
		HK_ASSERT(is_hex(hk_get(ev, "transcript"), 32),
			  "%s:%d: transcript %s", ev->file, ev->line,
			  hk_get(ev, "transcript"));
}

/* The link_closed's outcome and protection agree with what came before. */
static void
check_closed(const struct hk_link *l, const struct hk_ev *ev, int64_t max_ms)
{
	const char *outcome = hk_get(ev, "outcome");
	const char *prot = hk_get(ev, "protection");
	const char *where = ev->file;
	int line = ev->line;

	HK_ASSERT(in_list(outcome, hk_outcomes), "%s:%d: outcome %s", where,
		  line, outcome);
	HK_ASSERT(in_list(prot, hk_protections), "%s:%d: protection %s", where,
		  line, prot);
	HK_ASSERT(hk_get(ev, "last_state") != NULL, "%s:%d", where, line);
	HK_ASSERT(hk_rfc3339(hk_get(ev, "start_ts")), "%s:%d: start_ts", where,
		  line);
	HK_ASSERT(hk_get(ev, "reason") != NULL, "%s:%d", where, line);
	HK_ASSERT((int64_t)hk_num(ev, "duration_ms") < max_ms,
		  "%s:%d: duration_ms longer than the test", where, line);
	if (strcmp(outcome, "tls") == 0) {
		HK_ASSERT(strcmp(prot, "tls") == 0 && l->answer != NULL &&
			  hk_is(l->answer, "event", "handshake_done"),
			  "%s:%d: outcome tls without handshake_done", where,
			  line);
		HK_ASSERT(hk_get(ev, "protocol") != NULL, "%s:%d", where,
			  line);
	} else if (strcmp(outcome, "plaintext") == 0) {
		HK_ASSERT(strcmp(prot, "plaintext") == 0 &&
			  l->plaintext != NULL,
			  "%s:%d: outcome plaintext without plaintext_agreed",
			  where, line);
	} else {
		HK_ASSERT(strcmp(prot, "none") == 0,
			  "%s:%d: outcome %s with protection %s", where, line,
			  outcome, prot);
	}
	if (strcmp(outcome, "refused") == 0)
		HK_ASSERT(l->refused != NULL &&
			  hk_get(ev, "reason_name") != NULL,
			  "%s:%d: outcome refused without link_refused", where,
			  line);
	else
		HK_ASSERT(l->refused == NULL,
			  "%s:%d: link_refused but outcome %s", where, line,
			  outcome);
	if (l->answer != NULL && hk_is(l->answer, "event", "handshake_done"))
		HK_ASSERT(strcmp(outcome, "tls") == 0,
			  "%s:%d: handshake_done but outcome %s", where, line,
			  outcome);
	if (l->plaintext != NULL)
		HK_ASSERT(strcmp(outcome, "plaintext") == 0 ||
			  strcmp(outcome, "failed") == 0,
			  "%s:%d: plaintext_agreed but outcome %s", where, line,
			  outcome);
	if (l->answer != NULL && hk_is(l->answer, "event", "handshake_failed")) {
		HK_ASSERT(strcmp(outcome, "failed") == 0,
			  "%s:%d: handshake_failed but outcome %s", where, line,
			  outcome);
		/* The failure is reported with the reason the link ends. */
		HK_ASSERT(strstr(hk_get(ev, "reason"),
				 hk_get(l->answer, "reason")) != NULL,
			  "%s:%d: link_closed says '%s', its handshake_failed "
			  "(line %d) '%s'", where, line, hk_get(ev, "reason"),
			  l->answer->line, hk_get(l->answer, "reason"));
	}
	if (strcmp(outcome, "connect_failed") == 0)
		HK_ASSERT(l->direction != NULL &&
			  strcmp(l->direction, "out") == 0,
			  "%s:%d: connect_failed on an accepted link", where,
			  line);
}

/* Events of one link, in order. */
static void
check_link_event(struct hk_state *st, const struct hk_ev *ev, int stopping,
		 int64_t max_ms)
{
	const char *e = hk_get(ev, "event");
	const char *inst = hk_get(ev, "instance");
	const char *tr = hk_get(ev, "transcript");
	uint64_t id = hk_num(ev, "link");
	struct hk_link *l = link_find(st, inst, id);

	if (strcmp(e, "link_opened") == 0) {
		HK_ASSERT(l == NULL,
			  "%s:%d: link %llu of instance %s opened twice",
			  ev->file, ev->line, (unsigned long long)id, inst);
		HK_ASSERT(!stopping, "%s:%d: link opened after daemon_stopping",
			  ev->file, ev->line);
		l = link_add(st, inst, id);
		l->opened = ev;
		l->direction = hk_get(ev, "direction");
		HK_ASSERT(l->direction != NULL &&
			  strcmp(l->direction,
				 hk_is(ev, "role", "relay") ? "in" : "out") == 0,
			  "%s:%d: direction", ev->file, ev->line);
		HK_ASSERT(tr == NULL,
			  "%s:%d: a transcript before the decision", ev->file,
			  ev->line);
		return;
	}
	HK_ASSERT(l != NULL, "%s:%d: %s for link %llu, never opened",
		  ev->file, ev->line, e, (unsigned long long)id);
	HK_ASSERT(l->closed == NULL,
		  "%s:%d: %s for link %llu after its link_closed (line %d)",
		  ev->file, ev->line, e, (unsigned long long)id,
		  l->closed ? l->closed->line : 0);
	if (l->transcript[0] != '\0')
		HK_ASSERT(tr != NULL && strcmp(tr, l->transcript) == 0,
			  "%s:%d: %s of link %llu has transcript %s, not %s",
			  ev->file, ev->line, e, (unsigned long long)id,
			  tr ? tr : "(none)", l->transcript);
	else if (tr != NULL)
		snprintf(l->transcript, sizeof(l->transcript), "%s", tr);
	if (stopping)
		HK_ASSERT(strcmp(e, "link_closed") == 0 ||
			  (strcmp(e, "handshake_failed") == 0 &&
			  hk_is(ev, "stage", "shutdown")),
			  "%s:%d: %s after daemon_stopping", ev->file, ev->line,
			  e);
	if (strcmp(e, "handshake_pending") == 0 ||
	    strcmp(e, "plaintext_agreed") == 0) {
		HK_ASSERT(l->pending == NULL && l->plaintext == NULL,
			  "%s:%d: a second decision for link %llu", ev->file,
			  ev->line, (unsigned long long)id);
		HK_ASSERT(tr != NULL, "%s:%d: %s without transcript",
			  ev->file, ev->line, e);
		if (e[0] == 'h') {
			l->pending = ev;
			hk_num(ev, "tls_offset_out");
			hk_num(ev, "tls_offset_in");
		} else {
			l->plaintext = ev;
			hk_num(ev, "mux_offset_out");
			hk_num(ev, "mux_offset_in");
		}
		return;
	}
	if (strcmp(e, "handshake_done") == 0 || strcmp(e, "handshake_failed") == 0) {
		HK_ASSERT(l->pending != NULL,
			  "%s:%d: %s without handshake_pending", ev->file,
			  ev->line, e);
		HK_ASSERT(l->answer == NULL,
			  "%s:%d: handshake_pending of link %llu answered "
			  "twice (first at line %d)", ev->file, ev->line,
			  (unsigned long long)id,
			  l->answer ? l->answer->line : 0);
		l->answer = ev;
		if (e[10] == 'f')
			HK_ASSERT(in_list(hk_get(ev, "stage"), hk_fail_stages) &&
				  hk_get(ev, "reason") != NULL,
				  "%s:%d: handshake_failed stage %s (and a reason)", ev->file,
				  ev->line, hk_get(ev, "stage"));
		else
			HK_ASSERT((int64_t)hk_num(ev, "duration_ms") < max_ms,
				  "%s:%d: duration_ms longer than the test",
				  ev->file, ev->line);
		return;
	}
	if (strcmp(e, "link_refused") == 0) {
		HK_ASSERT(l->refused == NULL, "%s:%d: link refused twice",
			  ev->file, ev->line);
		HK_ASSERT(hk_is(ev, "stage", "negotiation"), "%s:%d: stage %s",
			  ev->file, ev->line, hk_get(ev, "stage"));
		HK_ASSERT(hk_is(ev, "by", "local") || hk_is(ev, "by", "peer"),
			  "%s:%d: by %s", ev->file, ev->line, hk_get(ev, "by"));
		HK_ASSERT(hk_num(ev, "reason_code") > 0 &&
			  hk_get(ev, "reason_name") != NULL,
			  "%s:%d: a refusal without its reason", ev->file,
			  ev->line);
		l->refused = ev;
		return;
	}
	/* link_closed */
	HK_ASSERT(l->pending == NULL || l->answer != NULL,
		  "%s:%d: link %llu closed with its handshake_pending (line "
		  "%d) unanswered", ev->file, ev->line, (unsigned long long)id,
		  l->pending ? l->pending->line : 0);
	check_closed(l, ev, max_ms);
	l->closed = ev;
}

/* One instance ends (at i, exclusive): its links are all closed. */
static void
check_instance_end(struct hk_state *st, const char *inst, int stopped,
		   int killed, const char *name)
{
	HK_ASSERT(stopped || killed, "%s: instance %s has no daemon_stopping",
		  name, inst);
	for (size_t i = 0; stopped && i < st->n; i++)
		if (strcmp(st->links[i].instance, inst) == 0)
			HK_ASSERT(st->links[i].closed != NULL,
				  "%s:%d: link %llu of instance %s never closed",
				  name, st->links[i].opened->line,
				  (unsigned long long)st->links[i].id, inst);
}

void
hk_check(const struct hk_log *log, int64_t max_ms, int flags)
{
	struct hk_state *stp = calloc(1, sizeof(*stp));
	char inst[40] = "";
	char seen[16][40];
	size_t nseen = 0;
	uint64_t seq = 0;
	int stopping = 0;

	HK_ASSERT(stp != NULL, "out of memory");
	hk_probe_state = stp;

	for (size_t i = 0; i < log->n; i++) {
		const struct hk_ev *ev = &log->ev[i];
		const char *e;

		check_head(ev);
		e = hk_get(ev, "event");
		if (strcmp(hk_get(ev, "instance"), inst) != 0) {
			if (inst[0] != '\0')
				check_instance_end(stp, inst, stopping, 0, log->name);
			for (size_t k = 0; k < nseen; k++)
				HK_ASSERT(
					  strcmp(seen[k], hk_get(ev, "instance")) != 0,
					  "%s:%d: instance %s comes back",
					  ev->file, ev->line, seen[k]);
			snprintf(inst, sizeof(inst), "%s", hk_get(ev, "instance"));
			HK_ASSERT(nseen < 16, "%s: too many instances",
				  log->name);
			snprintf(seen[nseen++], sizeof(seen[0]), "%s", inst);
			stopping = 0;
			if (i == 0 && (flags & HK_RESUMED)) {
				seq = hk_num(ev, "seq");
			} else {
				HK_ASSERT(strcmp(e, "daemon_started") == 0,
					  "%s:%d: instance %s starts with %s",
					  ev->file, ev->line, inst, e);
				HK_ASSERT(hk_num(ev, "seq") == 1,
					  "%s:%d: the first seq of an instance",
					  ev->file, ev->line);
				seq = 1;
			}
		} else {
			HK_ASSERT(hk_num(ev, "seq") == seq + 1,
				  "%s:%d: seq %llu after %llu (no sink failed: "
				  "no gap allowed)", ev->file, ev->line,
				  (unsigned long long)hk_num(ev, "seq"),
				  (unsigned long long)seq);
			seq++;
			HK_ASSERT(strcmp(e, "daemon_started") != 0, "%s:%d",
				  ev->file, ev->line);
		}
		if (in_list(e, hk_link_events)) {
			check_link_keys(ev);
			if (hk_get(ev, "link") != NULL)
				check_link_event(stp, ev, stopping, max_ms);
			else
				HK_ASSERT(!stopping,
					  "%s:%d: a refusal after "
					  "daemon_stopping", ev->file,
					  ev->line);
			continue;
		}
		if (strcmp(e, "daemon_stopping") == 0) {
			HK_ASSERT(!stopping, "%s:%d: stopping twice", ev->file,
				  ev->line);
			hk_num(ev, "links_open");
			stopping = 1;
		} else if (strcmp(e, "daemon_started") == 0) {
			HK_ASSERT(hk_get(ev, "version") != NULL &&
				  hk_get(ev, "config") != NULL,
				  "%s:%d: daemon_started without version or "
				  "config", ev->file, ev->line);
		} else if (strcmp(e, "daemon_reloaded") == 0) {
			HK_ASSERT(hk_is(ev, "result", "ok") ||
				  hk_is(ev, "result", "rejected"),
				  "%s:%d: result", ev->file, ev->line);
			HK_ASSERT(!stopping, "%s:%d", ev->file, ev->line);
		} else if (strcmp(e, "sink_recovered") == 0) {
			HK_ASSERT(0, "%s:%d: sink_recovered: a sink failed",
				  ev->file, ev->line);
		}
	}
	if (inst[0] != '\0' && !(flags & HK_ROTATED))
		check_instance_end(stp, inst, stopping, flags & HK_KILLED,
				   log->name);
	free(stp->links);
	free(stp);
	hk_probe_state = NULL;
}

/* ---- both sides ------------------------------------------------------ */

/* The first event of log carrying transcript tr, or NULL. */
static const struct hk_ev *
by_transcript(const struct hk_log *log, const char *tr)
{
	return hk_nth(log, NULL, "transcript", tr, 0);
}

/* Both link_closed of a joined link agree on the outcome. */
static void
check_agree(const struct hk_log *gw, const struct hk_ev *g,
	    const struct hk_log *relay, const struct hk_ev *r)
{
	const struct hk_ev *gc = hk_link_closed(gw, g);
	const struct hk_ev *rc = hk_link_closed(relay, r);
	const struct hk_ev *refused;
	const char *go, *ro;

	if (gc == NULL || rc == NULL)
		return;	/* a killed side */
	go = hk_get(gc, "outcome");
	ro = hk_get(rc, "outcome");
	if (strcmp(go, ro) == 0)
		return;
	for (size_t i = 0; (refused = hk_link_nth(gw, g, i)) != NULL; i++)
		if (hk_is(refused, "event", "link_refused"))
			break;
	HK_ASSERT(refused != NULL && hk_is(refused, "by", "local") &&
		  (hk_is(refused, "reason_name", "DECISION_MISMATCH") ||
		  hk_is(refused, "reason_name", "POLICY_VIOLATION")) &&
		  (strcmp(ro, "failed") == 0 || strcmp(ro, "aborted") == 0),
		  "the sides disagree on transcript %s: gateway %s (%s:%d), "
		  "relay %s (%s:%d)", hk_get(gc, "transcript"), go, gc->file,
		  gc->line, ro, rc->file, rc->line);
}

/* Gateway links that ended before a decision arrived: no transcript,
 * closed while negotiating. */
static size_t
undecided(const struct hk_log *log)
{
	const struct hk_ev *c;
	size_t n = 0;

	for (size_t i = 0; (c = hk_nth(log, "link_closed", NULL, NULL, i)); i++)
		n += hk_get(c, "transcript") == NULL &&
		     hk_is(c, "last_state", "NEGOTIATING") &&
		     hk_is(c, "outcome", "aborted");
	return n;
}

/*
 * Every event of a's link carries a's transcript, which b must know.
 * The one exception: the relay has sent its decision and the gateway
 * ended (was stopped, lost the connection) before it arrived; the
 * relay's link then never carried a stream.  Those are counted in
 * *unknown.
 */
static size_t
join_side(const struct hk_log *a, const struct hk_log *b, int flags, int gw,
	  size_t *unknown)
{
	size_t joined = 0;

	for (size_t i = 0; i < a->n; i++) {
		const struct hk_ev *ev = &a->ev[i], *other, *closed;
		const char *tr = hk_get(ev, "transcript");

		if (tr == NULL || by_transcript(a, tr) != ev)
			continue;	/* only the first event of each link */
		for (size_t k = 0; k < a->n; k++) {
			const char *t2 = hk_get(&a->ev[k], "transcript");

			if (t2 != NULL && strcmp(t2, tr) == 0)
				HK_ASSERT(same_link(&a->ev[k], ev),
					  "%s:%d: transcript %s on two links",
					  a->ev[k].file, a->ev[k].line, tr);
		}
		other = by_transcript(b, tr);
		if (other == NULL) {
			closed = hk_link_closed(a, ev);
			HK_ASSERT((flags & HK_UNMATCHED_OK) ||
				  (!gw && closed != NULL &&
				   hk_is(closed, "protection", "none")),
				  "%s:%d: transcript %s is not in %s", ev->file,
				  ev->line, tr, b->name);
			*unknown += !(flags & HK_UNMATCHED_OK);
			continue;
		}
		HK_ASSERT(strcmp(hk_get(ev, "role"), hk_get(other, "role")) != 0,
			  "%s:%d: transcript %s joins two %ss", ev->file,
			  ev->line, tr, hk_get(ev, "role"));
		if (gw)
			check_agree(a, ev, b, other);
		joined++;
	}
	return joined;
}

size_t
hk_check_pair(const struct hk_log *gw, const struct hk_log *relay, int flags)
{
	size_t unknown = 0, n = join_side(gw, relay, flags, 1, &unknown);

	HK_ASSERT(join_side(relay, gw, flags, 0, &unknown) == n,
		  "the relay's links with a transcript are not the gateway's");
	HK_ASSERT(unknown <= undecided(gw), "%zu of the relay's transcripts "
		  "are not in %s, which has only %zu links that ended before "
		  "a decision", unknown, gw->name, undecided(gw));
	return n;
}

const char *
hk_probe(void (*fn)(void *), void *arg)
{
	jmp_buf jb;

	hk_probing = &jb;
	if (setjmp(jb) != 0) {
		hk_probing = NULL;
		if (hk_probe_state != NULL) {
			free(hk_probe_state->links);
			free(hk_probe_state);
			hk_probe_state = NULL;
		}
		return hk_probe_msg;
	}
	fn(arg);
	hk_probing = NULL;
	return NULL;
}
