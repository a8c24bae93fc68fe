/*
 * tlsplex-report: reads the hook event files of both daemons, groups the
 * events per (instance, link), classifies each link by its link_closed
 * outcome, joins the two sides of a link by transcript (or, for links
 * refused before the decision, by their addresses), and reports how ready
 * the links are for encryption, with stable finding ids and an exit code
 * for CI (docs/MONITORING.md, "The readiness report").
 */
#include "jsonl.h"
#include "report.h"
#include "report_util.h"

#include <errno.h>
#include <getopt.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES (JOBJ_MAX_TEXT - 1)
#define ADDR_JOIN_US (30LL * 1000000) /* start times of two sides, at most */

#define EXIT_READY 0
#define EXIT_FINDING 1
#define EXIT_INPUT RPT_EXIT_INPUT
#define EXIT_USAGE 64

/* ---- names ------------------------------------------------------------ */

static const struct {
	const char *name, *help;
} rpt_ids[TPX_COUNT] = {
	[TPX_PLAINTEXT] = { "TPX-PLAINTEXT", "links that carried plaintext" },
	[TPX_TLS_VERSION] = { "TPX-TLS-VERSION", "TLS below --min-tls" },
	[TPX_CIPHER] = { "TPX-CIPHER", "cipher suite not allowed, or weak" },
	[TPX_CERT_EXPIRED] = { "TPX-CERT-EXPIRED", "certificate expired" },
	[TPX_CERT_EXPIRES] = { "TPX-CERT-EXPIRES",
			       "certificate expires within --cert-warn-days" },
	[TPX_HS_FAILED] = { "TPX-HS-FAILED", "TLS handshake or binding failed" },
	[TPX_REFUSED] = { "TPX-REFUSED", "links or connections refused" },
	[TPX_ABORTED] = { "TPX-ABORTED",
			  "ended in the negotiation, or not tlsplex" },
	[TPX_CONNECT_FAILED] = { "TPX-CONNECT-FAILED",
				 "the dialler could not connect" },
	[TPX_UNCLASSIFIED] = { "TPX-UNCLASSIFIED", "links with no outcome" },
	[TPX_SIDES_DISAGREE] = { "TPX-SIDES-DISAGREE",
				 "the two sides of a link disagree" },
	[TPX_INPUT_GAP] = { "TPX-INPUT-GAP", "events lost or unreadable" },
};

const char *
rpt_id_name(enum rpt_id id)
{
	return rpt_ids[id].name;
}

const char *
rpt_id_help(enum rpt_id id)
{
	return rpt_ids[id].help;
}

static const char *const rpt_classes[RC_COUNT] = {
	"tls", "plaintext", "refused", "failed", "aborted", "connect_failed",
	"none",
};

const char *
rpt_class_name(enum rpt_class c)
{
	return rpt_classes[c];
}

static int
class_from(const char *outcome)
{
	int c;

	for (c = 0; outcome != NULL && c < RC_NONE; c++)
		if (strcmp(outcome, rpt_classes[c]) == 0)
			return c;
	return -1;
}

/* ---- the model -------------------------------------------------------- */

struct side {
	const char *instance;
	int64_t link;
	const char *node, *role, *peer_node, *local, *peer, *transcript;
	const char *outcome, *protection, *protocol, *cipher, *last_state;
	const char *fail_stage, *refuse_stage, *refuse_reason, *refuse_by;
	const char *pt_reason;
	const char *peer_na, *local_na, *peer_subj, *local_subj;
	const char *peer_sha, *local_sha;
	int64_t start_us, end_us;
	int opened, closed, pending, done, failed, plaintext, refused;
	int cls, no_outcome;
	struct side *other;
	int joined;
};

struct inst {
	const char *id, *node, *role;
	int64_t first_us, last_us;
	int started, stopping;
	uint64_t *seq;
	size_t nseq, capseq;
};

struct tcpref {
	const char *node, *role, *peer_ip, *reason_name, *service;
	uint64_t count;
	int64_t ts_us;
};

struct lostrec {
	const char *instance, *node, *sink;
	uint64_t lost;
};

struct opts {
	enum rpt_format format;
	enum rpt_group group_by;
	char **fail_on, **allow_pt, **ciphers;
	size_t nfail_on, nallow_pt, nciphers;
	int ciphers_given;
	int min_tls;
	long warn_days;
	int64_t now_us, since_us, until_us;
	int now_given, since_given, until_given;
	int quiet, strict_input;
};

static struct {
	struct opts o;
	struct map links, insts, dedupe, findings, groups, strings;
	struct map names; /* "gateway node|relay address" -> relay node */
	struct vec sides, instv, tcprefs, losts, services, findv, groupv;
	int64_t latest_us;
	int secondary; /* listing a link under its second group */
	struct report r;
} S;

static void
finding_add(enum rpt_id id, const char *group, const char *subject,
	    uint64_t count, const char *example)
{
	char key[1024];
	struct rpt_finding *f;

	snprintf(key, sizeof(key), "%d\x1f%s\x1f%s", (int)id, group, subject);
	f = map_get(&S.findings, key);
	if (f == NULL) {
		f = arena_alloc(sizeof(*f));
		f->id = id;
		f->group = arena_strdup(group);
		f->subject = arena_strdup(subject);
		f->example = arena_strdup(example);
		map_put(&S.findings, key, f);
		vec_push(&S.findv, f);
	}
	f->count += count;
	/* A link listed under two groups (--group-by node) counts once. */
	if (!S.secondary)
		S.r.id_count[id] += count;
}

static struct rpt_groupstat *
group_get(const char *name)
{
	struct rpt_groupstat *g = map_get(&S.groups, name);

	if (g == NULL) {
		g = arena_alloc(sizeof(*g));
		g->name = arena_strdup(name);
		map_put(&S.groups, name, g);
		vec_push(&S.groupv, g);
	}
	return g;
}

/* ---- input ------------------------------------------------------------ */

/* One arena copy per distinct string: every link repeats the same
 * node names, certificates and ciphers.  Control characters (a decoded
 * \n or ESC in a peer's name) become '?', so that no printer has to
 * care. */
static const char *
intern(const char *in)
{
	char buf[JOBJ_MAX_TEXT];
	const char *v, *s = in;
	size_t i;

	for (i = 0; in[i] != '\0'; i++)
		if ((unsigned char)in[i] < 0x20 || in[i] == 0x7f)
			break;
	if (in[i] != '\0') {
		snprintf(buf, sizeof(buf), "%s", in);
		for (; buf[i] != '\0'; i++)
			if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)
				buf[i] = '?';
		s = buf;
	}
	v = map_get(&S.strings, s);
	if (v == NULL) {
		map_put(&S.strings, s, NULL);
		v = *map_key(&S.strings, s);
		map_put(&S.strings, s, (void *)v);
	}
	return v;
}

/* The string value of key, interned, or NULL. */
static const char *
istr(const struct jobj *o, const char *key)
{
	const char *v = jobj_str(o, key);

	return v != NULL ? intern(v) : NULL;
}

static void
set_str(const char **dst, const struct jobj *o, const char *key)
{
	const char *v = jobj_str(o, key);

	if (v != NULL && (*dst == NULL || strcmp(*dst, v) != 0))
		*dst = intern(v);
}

static struct inst *
inst_get(const char *id)
{
	struct inst *in = map_get(&S.insts, id);

	if (in == NULL) {
		in = arena_alloc(sizeof(*in));
		in->id = intern(id);
		map_put(&S.insts, id, in);
		vec_push(&S.instv, in);
	}
	return in;
}

/* 1 when (instance, seq, event) was seen before: a file given twice, or
 * a rotated copy overlapping the live file. */
static int
seen_before(const char *instance, int64_t seq, const char *event)
{
	char key[256];

	snprintf(key, sizeof(key), "%s/%lld/%s", instance, (long long)seq, event);
	if (map_get(&S.dedupe, key) != NULL)
		return 1;
	map_put(&S.dedupe, key, (void *)1);
	return 0;
}

static void
link_event(const struct jobj *o, const char *event, const char *instance,
	   int64_t link, int64_t ts)
{
	char key[128];
	struct side *s;
	int64_t v;

	snprintf(key, sizeof(key), "%s/%lld", instance, (long long)link);
	s = map_get(&S.links, key);
	if (s == NULL) {
		s = arena_alloc(sizeof(*s));
		s->instance = intern(instance);
		s->link = link;
		s->start_us = ts;
		map_put(&S.links, key, s);
		vec_push(&S.sides, s);
	}
	if (ts < s->start_us)
		s->start_us = ts;
	set_str(&s->node, o, "node");
	set_str(&s->role, o, "role");
	set_str(&s->peer_node, o, "peer_node");
	set_str(&s->local, o, "local");
	set_str(&s->peer, o, "peer");
	set_str(&s->transcript, o, "transcript");
	if (strcmp(event, "link_opened") == 0) {
		s->opened = 1;
	} else if (strcmp(event, "link_refused") == 0) {
		s->refused = 1;
		set_str(&s->refuse_stage, o, "stage");
		set_str(&s->refuse_reason, o, "reason_name");
		set_str(&s->refuse_by, o, "by");
	} else if (strcmp(event, "handshake_pending") == 0) {
		s->pending = 1;
	} else if (strcmp(event, "handshake_failed") == 0) {
		s->failed = 1;
		set_str(&s->fail_stage, o, "stage");
	} else if (strcmp(event, "plaintext_agreed") == 0) {
		s->plaintext = 1;
		set_str(&s->pt_reason, o, "reason_name");
	} else if (strcmp(event, "handshake_done") == 0 ||
		   strcmp(event, "link_closed") == 0) {
		if (event[0] == 'h') {
			s->done = 1;
		} else {
			s->closed = 1;
			s->end_us = ts;
			set_str(&s->outcome, o, "outcome");
			set_str(&s->protection, o, "protection");
			set_str(&s->last_state, o, "last_state");
			if (jobj_str(o, "start_ts") != NULL &&
			    parse_rfc3339(jobj_str(o, "start_ts"), &v) == 0 &&
			    v < s->start_us)
				s->start_us = v;
		}
		set_str(&s->protocol, o, "protocol");
		set_str(&s->cipher, o, "cipher");
		set_str(&s->peer_na, o, "peer_not_after");
		set_str(&s->local_na, o, "local_not_after");
		set_str(&s->peer_subj, o, "peer_subject");
		set_str(&s->local_subj, o, "local_subject");
		set_str(&s->peer_sha, o, "peer_sha256");
		set_str(&s->local_sha, o, "local_sha256");
	}
}

/* One parsed line.  Returns 0, or -1 with the reason in err when the
 * object is not an event of schema 2. */
static int
take_event(const struct jobj *o, char *err, size_t errlen)
{
	const char *event = jobj_str(o, "event"), *ts = jobj_str(o, "ts");
	const char *instance = jobj_str(o, "instance");
	int64_t ts_us, seq, v, link, n;
	struct inst *in;

	if (event == NULL || ts == NULL) {
		snprintf(err, errlen, "not an event: no \"event\" or \"ts\"");
		return -1;
	}
	if (parse_rfc3339(ts, &ts_us) < 0) {
		snprintf(err, errlen, "\"ts\" is not RFC 3339: %.64s", ts);
		return -1;
	}
	if (jobj_int(o, "v", &v) < 0 || v < 2) {
		snprintf(err, errlen, "not schema version 2 or later (\"v\")");
		return -1;
	}
	if (instance == NULL || jobj_int(o, "seq", &seq) < 0 || seq < 1) {
		snprintf(err, errlen, "no \"instance\" or \"seq\"");
		return -1;
	}
	if ((S.o.since_given && ts_us < S.o.since_us) ||
	    (S.o.until_given && ts_us > S.o.until_us))
		return 0;
	S.r.events++;
	if (ts_us > S.latest_us)
		S.latest_us = ts_us;
	in = inst_get(instance);
	set_str(&in->node, o, "node");
	set_str(&in->role, o, "role");
	if (in->first_us == 0 || ts_us < in->first_us)
		in->first_us = ts_us;
	if (ts_us > in->last_us)
		in->last_us = ts_us;
	if (strcmp(event, "sink_recovered") == 0) {
		struct lostrec *l;

		/* It carries the seq of the event after it: not counted. */
		if (seen_before(instance, seq, event)) {
			S.r.duplicates++;
			return 0;
		}
		if (jobj_int(o, "lost", &n) < 0 || n <= 0)
			return 0;
		l = arena_alloc(sizeof(*l));
		l->instance = in->id;
		l->node = in->node;
		l->sink = istr(o, "sink");
		l->lost = (uint64_t)n;
		vec_push(&S.losts, l);
		return 0;
	}
	if (in->nseq == in->capseq) {
		in->capseq = in->capseq ? 2 * in->capseq : 64;
		in->seq = mem_realloc(in->seq, in->capseq * sizeof(*in->seq));
	}
	in->seq[in->nseq++] = (uint64_t)seq;
	if (strcmp(event, "daemon_started") == 0) {
		in->started = 1;
	} else if (strcmp(event, "daemon_stopping") == 0) {
		in->stopping = 1;
	} else if (strcmp(event, "service_summary") == 0) {
		struct rpt_service *sv;

		if (seen_before(instance, seq, event) ||
		    jobj_str(o, "service") == NULL)
			return 0;
		sv = arena_alloc(sizeof(*sv));
		sv->service = istr(o, "service");
		sv->protection = istr(o, "protection");
		if (jobj_int(o, "streams_opened", &n) == 0 ||
		    jobj_int(o, "streams", &n) == 0)
			sv->streams = n > 0 ? (uint64_t)n : 0;
		vec_push(&S.services, sv);
	} else if (jobj_int(o, "link", &link) == 0 && link > 0) {
		link_event(o, event, instance, link, ts_us);
	} else if (strcmp(event, "link_refused") == 0) {
		struct tcpref *t;

		if (seen_before(instance, seq, event))
			return 0;
		t = arena_alloc(sizeof(*t));
		t->node = in->node;
		t->role = in->role;
		t->peer_ip = istr(o, "peer_ip");
		t->reason_name = istr(o, "reason_name");
		t->service = istr(o, "service");
		t->count = 1;
		if (jobj_int(o, "suppressed", &n) == 0 && n > 0)
			t->count += (uint64_t)n;
		t->ts_us = ts_us;
		vec_push(&S.tcprefs, t);
	}
	return 0;
}

static void
input_problem(const char *name, uint64_t lineno, const char *what,
	      const char *err, int truncated)
{
	char subj[512], ex[768];

	snprintf(subj, sizeof(subj), "%s line in %s",
		 truncated ? "truncated last" : "malformed", name);
	snprintf(ex, sizeof(ex), "%s:%llu: %s%s%s", name,
		 (unsigned long long)lineno, what, err ? ": " : "",
		 err ? err : "");
	finding_add(TPX_INPUT_GAP, "(input)", subj, 1, ex);
	if (truncated)
		S.r.truncated++;
	else
		S.r.malformed++;
}

/* A bounded line reader: lines longer than LINE_MAX_BYTES are cut and
 * flagged, never buffered whole. */
struct lreader {
	FILE *f;
	size_t off, len;
	int eof;
	char buf[1 << 16];
};

/* The next line (without its newline) in line, its length in *len.
 * Returns 1 for a line ending in a newline, 0 for a last line without
 * one, -1 at the end.  *toolong is set when the line was cut. */
static int
lreader_next(struct lreader *r, char *line, size_t *len, int *toolong)
{
	size_t n = 0;
	int any = 0;

	*toolong = 0;
	for (;;) {
		const char *p, *start;
		size_t seg;

		if (r->off == r->len) {
			if (r->eof)
				break;
			r->len = fread(r->buf, 1, sizeof(r->buf), r->f);
			r->off = 0;
			if (r->len == 0) {
				r->eof = 1;
				break;
			}
		}
		any = 1;
		start = r->buf + r->off;
		p = memchr(start, '\n', r->len - r->off);
		seg = p ? (size_t)(p - start) : r->len - r->off;
		if (n + seg > LINE_MAX_BYTES) {
			*toolong = 1;
			if (n < LINE_MAX_BYTES)
				memcpy(line + n, start, LINE_MAX_BYTES - n);
			n = LINE_MAX_BYTES;
		} else {
			memcpy(line + n, start, seg);
			n += seg;
		}
		r->off += seg + (p != NULL);
		if (p != NULL) {
			*len = n;
			return 1;
		}
	}
	*len = n;
	return any ? 0 : -1;
}

/* Reads one stream of JSON Lines. */
static void
read_stream(FILE *f, const char *name)
{
	static char line[LINE_MAX_BYTES + 1];
	static struct jobj obj;
	static struct lreader lr;
	char err[256];
	uint64_t lineno = 0;
	size_t len;
	int rc, toolong;

	memset(&lr, 0, offsetof(struct lreader, buf));
	lr.f = f;
	while ((rc = lreader_next(&lr, line, &len, &toolong)) >= 0) {
		lineno++;
		S.r.lines++;
		if (toolong) {
			snprintf(err, sizeof(err), "longer than %d bytes",
				 LINE_MAX_BYTES);
			input_problem(name, lineno, "line", err, rc == 0);
		} else if (jobj_parse(&obj, line, len, err, sizeof(err)) < 0) {
			input_problem(name, lineno, "not a JSON object", err,
				      rc == 0);
		} else if (take_event(&obj, err, sizeof(err)) < 0) {
			input_problem(name, lineno, "not a tlsplex event", err,
				      rc == 0);
		}
	}
	if (ferror(f)) {
		char subj[512];

		snprintf(subj, sizeof(subj), "read error in %s", name);
		finding_add(TPX_INPUT_GAP, "(input)", subj, 1, strerror(errno));
		S.r.unreadable++;
	}
}

/* A FILE argument: "-" is stdin, NAME.gz is read through gzip -dc. */
static void
read_input(const char *name)
{
	size_t n = strlen(name);
	FILE *f;
	char subj[512];
	pid_t pid = -1;
	int fds[2], status;

	S.r.files++;
	if (strcmp(name, "-") == 0) {
		read_stream(stdin, "(stdin)");
		return;
	}
	if (access(name, R_OK) < 0 || (f = fopen(name, "r")) == NULL) {
		snprintf(subj, sizeof(subj), "unreadable %s", name);
		finding_add(TPX_INPUT_GAP, "(input)", subj, 1, strerror(errno));
		S.r.unreadable++;
		fprintf(stderr, "tlsplex-report: cannot read %s: %s\n", name,
			strerror(errno));
		return;
	}
	if (n > 3 && strcmp(name + n - 3, ".gz") == 0) {
		fclose(f);
		if (pipe(fds) < 0 || (pid = fork()) < 0) {
			snprintf(subj, sizeof(subj), "unreadable %s", name);
			finding_add(TPX_INPUT_GAP, "(input)", subj, 1,
				    strerror(errno));
			S.r.unreadable++;
			return;
		}
		if (pid == 0) {
			dup2(fds[1], 1);
			close(fds[0]);
			close(fds[1]);
			execlp("gzip", "gzip", "-dc", "--", name, (char *)NULL);
			_exit(127);
		}
		close(fds[1]);
		f = fdopen(fds[0], "r");
		if (f == NULL) {
			close(fds[0]);
			waitpid(pid, &status, 0);
			S.r.unreadable++;
			return;
		}
	}
	read_stream(f, name);
	fclose(f);
	if (pid > 0 && (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
			WEXITSTATUS(status) != 0)) {
		snprintf(subj, sizeof(subj), "unreadable %s", name);
		finding_add(TPX_INPUT_GAP, "(input)", subj, 1,
			    "gzip -dc failed");
		S.r.unreadable++;
	}
}

/* ---- classification and joins ------------------------------------------ */

static void
side_classify(struct side *s)
{
	int c = s->closed ? class_from(s->outcome) : -1;

	if (c >= 0) {
		s->cls = c;
		return;
	}
	/* No link_closed (or an outcome this version does not know): the
	 * events before it say how far the link got. */
	s->no_outcome = 1;
	if (s->refused)
		s->cls = RC_REFUSED;
	else if (s->failed)
		s->cls = RC_FAILED;
	else if (s->done)
		s->cls = RC_TLS;
	else if (s->plaintext)
		s->cls = RC_PLAINTEXT;
	else
		s->cls = RC_NONE;
}

static int
is_dialler(const struct side *s)
{
	return s->role != NULL && strcmp(s->role, "gateway") == 0;
}

static void
join(struct side *a, struct side *b)
{
	a->other = b;
	b->other = a;
	a->joined = b->joined = 1;
}

static void
join_sides(void)
{
	struct map bytx = { 0 }, byaddr = { 0 };
	char key[600];
	size_t i;

	for (i = 0; i < S.sides.n; i++) {
		struct side *s = S.sides.v[i], *o;

		if (s->transcript == NULL)
			continue;
		o = map_get(&bytx, s->transcript);
		if (o != NULL && !o->joined && is_dialler(o) != is_dialler(s)) {
			join(o, s);
			S.r.joined_transcript++;
		} else if (o == NULL) {
			map_put(&bytx, s->transcript, s);
		}
	}
	/* Refused links have no transcript: the dialler's local address is
	 * the acceptor's peer address, and the other way round. */
	for (i = 0; i < S.sides.n; i++) {
		struct side *s = S.sides.v[i];

		if (s->joined || is_dialler(s) || !s->local || !s->peer)
			continue;
		snprintf(key, sizeof(key), "%s|%s", s->peer, s->local);
		map_put(&byaddr, key, s);
	}
	for (i = 0; i < S.sides.n; i++) {
		struct side *s = S.sides.v[i], *o;
		int64_t d;

		if (s->joined || !is_dialler(s) || !s->local || !s->peer)
			continue;
		snprintf(key, sizeof(key), "%s|%s", s->local, s->peer);
		o = map_get(&byaddr, key);
		if (o == NULL || o->joined)
			continue;
		d = o->start_us - s->start_us;
		if (d < -ADDR_JOIN_US || d > ADDR_JOIN_US)
			continue;
		join(s, o);
		S.r.joined_address++;
	}
	map_free(&bytx);
	map_free(&byaddr);
}

/* ---- findings per link ---------------------------------------------------- */

static int
tls_version(const char *p)
{
	if (p == NULL)
		return -1;
	if (strncmp(p, "TLSv", 4) == 0)
		p += 4;
	else if (strncmp(p, "SSLv", 4) == 0)
		return atoi(p + 4) == 3 ? 3 : 2;
	if (strcmp(p, "1") == 0 || strcmp(p, "1.0") == 0)
		return 10;
	if (strncmp(p, "1.", 2) == 0 && p[2] >= '0' && p[2] <= '9' && p[3] == '\0')
		return 10 + (p[2] - '0');
	return -1;
}

static int
cipher_weak(const char *c)
{
	size_t i;

	if (S.o.ciphers_given) {
		for (i = 0; i < S.o.nciphers; i++)
			if (strcmp(S.o.ciphers[i], c) == 0)
				return 0;
		return 1;
	}
	if (strstr(c, "CBC") || strstr(c, "NULL") || strstr(c, "RC4") ||
	    strstr(c, "DES") || strstr(c, "EXPORT") || strstr(c, "anon"))
		return 1;
	return !(strstr(c, "GCM") || strstr(c, "CHACHA20_POLY1305") ||
		 strstr(c, "CCM"));
}

static const char *
ip_of(const char *addr, char *buf, size_t len)
{
	const char *colon;
	size_t n;

	if (addr == NULL)
		return NULL;
	colon = strrchr(addr, ':');
	n = colon ? (size_t)(colon - addr) : strlen(addr);
	if (n >= 2 && addr[0] == '[' && addr[n - 1] == ']')
		addr++, n -= 2;
	if (n >= len)
		n = len - 1;
	memcpy(buf, addr, n);
	buf[n] = '\0';
	return buf;
}

struct lview {
	struct side *d, *a; /* dialler and acceptor sides; one may be NULL */
	const char *gw, *relay;
	char gwbuf[64], relaybuf[64];
};

static void
lview_init(struct lview *v, struct side *s)
{
	char key[600];

	memset(v, 0, sizeof(*v));
	if (is_dialler(s)) {
		v->d = s;
		v->a = s->other;
	} else {
		v->a = s;
		v->d = s->other;
	}
	v->gw = v->d ? v->d->node : v->a->peer_node;
	if (v->gw == NULL && v->a)
		v->gw = ip_of(v->a->peer, v->gwbuf, sizeof(v->gwbuf));
	v->relay = v->a ? v->a->node : v->d->peer_node;
	/* A link that never heard the relay's name (connect_failed) takes
	 * the name another link of the same gateway heard at that address. */
	if (v->relay == NULL && v->d && v->d->node && v->d->peer) {
		snprintf(key, sizeof(key), "%s|%s", v->d->node, v->d->peer);
		v->relay = map_get(&S.names, key);
	}
	if (v->relay == NULL && v->d)
		v->relay = ip_of(v->d->peer, v->relaybuf, sizeof(v->relaybuf));
	if (v->gw == NULL)
		v->gw = "?";
	if (v->relay == NULL)
		v->relay = "?";
}

static int
exempt(const struct lview *v)
{
	char b1[64], b2[64];
	const char *ips[2];
	size_t i;

	ips[0] = v->d ? ip_of(v->d->peer, b1, sizeof(b1)) : NULL;
	ips[1] = v->a ? ip_of(v->a->peer, b2, sizeof(b2)) : NULL;
	for (i = 0; i < S.o.nallow_pt; i++) {
		const char *p = S.o.allow_pt[i];

		if (strcmp(p, v->gw) == 0 || strcmp(p, v->relay) == 0 ||
		    (ips[0] && strcmp(p, ips[0]) == 0) ||
		    (ips[1] && strcmp(p, ips[1]) == 0))
			return 1;
	}
	return 0;
}

static char *
example_of(const struct side *s)
{
	char ts[32];

	rpt_time_str(s->start_us, ts, sizeof(ts));
	return arena_printf("%s link %lld (instance %s) opened %s",
		       s->node ? s->node : "?", (long long)s->link,
		       s->instance, ts);
}

static void
cert_check(const char *group, const char *subj, const char *na,
	   const char *ex)
{
	int64_t t, left;
	char ts[32], s[600];

	if (na == NULL || parse_cert_time(na, &t) < 0)
		return;
	left = t - S.r.now_us;
	rpt_time_str(t, ts, sizeof(ts));
	if (left < 0) {
		snprintf(s, sizeof(s), "%s expired %s", subj ? subj : "?", ts);
		finding_add(TPX_CERT_EXPIRED, group, s, 1, ex);
	} else if (left < (int64_t)S.o.warn_days * 86400 * 1000000) {
		snprintf(s, sizeof(s), "%s expires %s (in %lld day%s)",
			 subj ? subj : "?", ts,
			 (long long)(left / (86400LL * 1000000)),
			 left / (86400LL * 1000000) == 1 ? "" : "s");
		finding_add(TPX_CERT_EXPIRES, group, s, 1, ex);
	}
}

/* The certificates a link showed, each once (the gateway's peer
 * certificate is the relay's own). */
static void
link_certs(const char *group, const struct lview *v, const char *ex)
{
	const char *subj[4], *na[4], *sha[4];
	int n = 0, i, j;
	const struct side *sd[2] = { v->d, v->a };

	for (i = 0; i < 2; i++) {
		if (sd[i] == NULL || sd[i]->cls != RC_TLS)
			continue;
		subj[n] = sd[i]->peer_subj, na[n] = sd[i]->peer_na;
		sha[n++] = sd[i]->peer_sha;
		subj[n] = sd[i]->local_subj, na[n] = sd[i]->local_na;
		sha[n++] = sd[i]->local_sha;
	}
	for (i = 0; i < n; i++) {
		for (j = 0; j < i; j++)
			if (sha[i] && sha[j] && strcmp(sha[i], sha[j]) == 0)
				break;
		if (j == i)
			cert_check(group, subj[i], na[i], ex);
	}
}

static void
side_findings(const char *group, const struct side *s, const char *ex)
{
	struct inst *in;
	char subj[256];

	if (s->closed && s->pending && !s->done && !s->failed)
		finding_add(TPX_UNCLASSIFIED, group,
			    "handshake_pending with no handshake_done or "
			    "handshake_failed", 1, ex);
	if (!s->no_outcome)
		return;
	in = map_get(&S.insts, s->instance);
	snprintf(subj, sizeof(subj), "%s side: %s%s%s",
		 s->role ? s->role : "?",
		 s->closed ? "link_closed with an unknown outcome" :
		 "no link_closed",
		 s->pending && !s->done && !s->failed ?
		 ", handshake_pending unanswered" : "",
		 s->closed ? "" : in != NULL && in->stopping ?
		 " (the daemon stopped: events lost)" :
		 " (still open, or the daemon crashed)");
	finding_add(TPX_UNCLASSIFIED, group, subj, 1, ex);
}

static int
class_rank(int c)
{
	static const int rank[RC_COUNT] = {
		[RC_PLAINTEXT] = 0, [RC_TLS] = 1, [RC_FAILED] = 2,
		[RC_REFUSED] = 3, [RC_ABORTED] = 4, [RC_CONNECT_FAILED] = 5,
		[RC_NONE] = 6,
	};
	return rank[c];
}

static void
link_findings_in(const char *group, struct lview *v, int cls, int disagree,
		 const char *dis_subj, const char *ex)
{
	struct side *sd[2] = { v->d, v->a }, *any = v->d ? v->d : v->a;
	const char *cipher = NULL, *protocol = NULL, *stage = NULL;
	struct rpt_groupstat *g = group_get(group);
	char subj[512];
	int i;

	g->links++;
	g->cls[cls]++;
	for (i = 0; i < 2; i++) {
		if (sd[i] == NULL)
			continue;
		if (cipher == NULL)
			cipher = sd[i]->cipher;
		if (protocol == NULL)
			protocol = sd[i]->protocol;
		if (stage == NULL && sd[i]->failed)
			stage = sd[i]->fail_stage;
		side_findings(group, sd[i], ex);
	}
	if (disagree)
		finding_add(TPX_SIDES_DISAGREE, group, dis_subj, 1, ex);
	for (i = 0; i < 2; i++) {
		const struct side *r = sd[i];
		const char *by;

		if (r == NULL || !r->refused)
			continue;
		if (r->refuse_by && strcmp(r->refuse_by, "local") == 0)
			by = r->node ? r->node : "?";
		else
			by = r->peer_node ? r->peer_node : "peer";
		snprintf(subj, sizeof(subj), "%s %s (by %s)",
			 r->refuse_stage ? r->refuse_stage : "negotiation",
			 r->refuse_reason ? r->refuse_reason : "?", by);
		finding_add(TPX_REFUSED, group, subj, 1, ex);
		break;
	}
	switch (cls) {
	case RC_PLAINTEXT:
		if (exempt(v)) {
			g->exempt++;
			if (!S.secondary)
				S.r.exempt++;
			break;
		}
		snprintf(subj, sizeof(subj), "plaintext agreed (%s)",
			 (v->d && v->d->pt_reason) ? v->d->pt_reason :
			 (v->a && v->a->pt_reason) ? v->a->pt_reason : "?");
		finding_add(TPX_PLAINTEXT, group, subj, 1, ex);
		break;
	case RC_TLS:
		if (protocol && tls_version(protocol) >= 0 &&
		    tls_version(protocol) < S.o.min_tls) {
			snprintf(subj, sizeof(subj), "%s", protocol);
			finding_add(TPX_TLS_VERSION, group, subj, 1, ex);
		}
		if (cipher && cipher_weak(cipher))
			finding_add(TPX_CIPHER, group, cipher, 1, ex);
		link_certs(group, v, ex);
		break;
	case RC_FAILED:
		snprintf(subj, sizeof(subj), "stage %s", stage ? stage :
			 (any->plaintext || (any->other && any->other->plaintext)) ?
			 "bind (plaintext link)" : "unknown");
		finding_add(TPX_HS_FAILED, group, subj, 1, ex);
		break;
	case RC_ABORTED:
		snprintf(subj, sizeof(subj), "ended in %s",
			 any->last_state ? any->last_state : "?");
		finding_add(TPX_ABORTED, group, subj, 1, ex);
		break;
	case RC_CONNECT_FAILED:
		snprintf(subj, sizeof(subj), "%s could not connect to %s",
			 v->gw, v->d && v->d->peer ? v->d->peer : v->relay);
		finding_add(TPX_CONNECT_FAILED, group, subj, 1, ex);
		break;
	default:
		break;
	}
}

static void
link_report(struct side *s)
{
	struct lview v;
	struct side *o = s->other;
	int cls = s->cls, disagree = 0;
	char dis[512] = "", *ex;
	const char *keys[2];
	int nkeys = 0, i;

	lview_init(&v, s);
	S.r.links++;
	if (o == NULL) {
		S.r.one_side++;
	} else {
		struct side *d = v.d, *a = v.a;

		if (d->cls != RC_NONE && a->cls != RC_NONE && d->cls != a->cls) {
			disagree = 1;
			snprintf(dis, sizeof(dis), "outcome %s (%s) / %s (%s)",
				 rpt_class_name(d->cls), v.gw,
				 rpt_class_name(a->cls), v.relay);
		} else if (d->protocol && a->protocol &&
			   strcmp(d->protocol, a->protocol) != 0) {
			disagree = 1;
			snprintf(dis, sizeof(dis), "protocol %s / %s",
				 d->protocol, a->protocol);
		} else if (d->cipher && a->cipher &&
			   strcmp(d->cipher, a->cipher) != 0) {
			disagree = 1;
			snprintf(dis, sizeof(dis), "cipher %s / %s", d->cipher,
				 a->cipher);
		}
		cls = class_rank(d->cls) <= class_rank(a->cls) ? d->cls : a->cls;
	}
	S.r.cls[cls]++;
	ex = example_of(v.d ? v.d : v.a);
	switch (S.o.group_by) {
	case RG_PEER:
		keys[nkeys++] = arena_printf("%s -> %s", v.gw, v.relay);
		break;
	case RG_SERVICE:
		keys[nkeys++] = "(links)";
		break;
	case RG_CIPHER:
		if (v.d && v.d->cipher)
			keys[nkeys++] = v.d->cipher;
		else if (v.a && v.a->cipher)
			keys[nkeys++] = v.a->cipher;
		else
			keys[nkeys++] = cls == RC_PLAINTEXT ? "(plaintext)" :
					"(no protection)";
		break;
	case RG_NODE:
		if (v.d)
			keys[nkeys++] = v.d->node ? v.d->node : "?";
		if (v.a && (nkeys == 0 ||
			    strcmp(keys[0], v.a->node ? v.a->node : "?") != 0))
			keys[nkeys++] = v.a->node ? v.a->node : "?";
		break;
	}
	for (i = 0; i < nkeys; i++) {
		S.secondary = i > 0;
		link_findings_in(keys[i], &v, cls, disagree, dis, ex);
	}
	S.secondary = 0;
}

static void
tcp_findings(void)
{
	size_t i;

	for (i = 0; i < S.tcprefs.n; i++) {
		struct tcpref *t = S.tcprefs.v[i];
		const char *group;
		char subj[512], ts[32], ex[512];

		switch (S.o.group_by) {
		case RG_PEER:
			group = arena_printf("%s -> %s", t->peer_ip ? t->peer_ip : "?",
					t->node ? t->node : "?");
			break;
		case RG_SERVICE:
			group = t->service ? t->service : "(links)";
			break;
		case RG_CIPHER:
			group = "(no protection)";
			break;
		default:
			group = t->node ? t->node : "?";
			break;
		}
		group_get(group)->tcp_refused += t->count;
		S.r.tcp_refused += t->count;
		snprintf(subj, sizeof(subj), "tcp %s%s%s (by %s)",
			 t->reason_name ? t->reason_name : "?",
			 t->service ? ", service " : "",
			 t->service ? t->service : "", t->node ? t->node : "?");
		rpt_time_str(t->ts_us, ts, sizeof(ts));
		snprintf(ex, sizeof(ex), "%s at %s", t->peer_ip ? t->peer_ip : "?",
			 ts);
		finding_add(TPX_REFUSED, group, subj, t->count, ex);
	}
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int
cmp_inst(const void *a, const void *b)
{
	const struct inst *x = *(struct inst *const *)a;
	const struct inst *y = *(struct inst *const *)b;
	int c = strcmp(x->node ? x->node : "", y->node ? y->node : "");

	if (c == 0)
		c = strcmp(x->role ? x->role : "", y->role ? y->role : "");
	if (c == 0)
		c = x->first_us < y->first_us ? -1 : x->first_us > y->first_us;
	return c;
}

static void
input_findings(void)
{
	size_t i, j;
	char subj[512], ex[512];

	for (i = 0; i < S.instv.n; i++) {
		struct inst *in = S.instv.v[i];
		uint64_t missing = 0, first = 0, prev;
		size_t k = 0;

		if (in->nseq == 0)
			continue;
		qsort(in->seq, in->nseq, sizeof(*in->seq), cmp_u64);
		for (j = 0; j < in->nseq; j++) {
			if (k > 0 && in->seq[j] == in->seq[k - 1]) {
				S.r.duplicates++;
				continue;
			}
			in->seq[k++] = in->seq[j];
		}
		in->nseq = k;
		for (j = 1, prev = in->seq[0]; j < in->nseq; j++) {
			if (in->seq[j] > prev + 1) {
				if (missing == 0)
					first = prev + 1;
				missing += in->seq[j] - prev - 1;
			}
			prev = in->seq[j];
		}
		if (in->nseq > 0 && in->started && in->seq[0] > 1) {
			if (missing == 0)
				first = 1;
			missing += in->seq[0] - 1;
		}
		/* What a sink_recovered already counted is not said twice. */
		for (j = 0; j < S.losts.n; j++) {
			struct lostrec *l = S.losts.v[j];

			if (strcmp(l->instance, in->id) == 0)
				missing = missing > l->lost ? missing - l->lost : 0;
		}
		if (missing > 0) {
			snprintf(subj, sizeof(subj), "seq gap: events missing "
				 "from %s instance %s", in->node ? in->node : "?",
				 in->id);
			snprintf(ex, sizeof(ex), "first missing seq %llu",
				 (unsigned long long)first);
			finding_add(TPX_INPUT_GAP, "(input)", subj, missing, ex);
		}
	}
	for (i = 0; i < S.losts.n; i++) {
		struct lostrec *l = S.losts.v[i];

		snprintf(subj, sizeof(subj), "sink %s of %s lost events",
			 l->sink ? l->sink : "?", l->node ? l->node : "?");
		snprintf(ex, sizeof(ex), "sink_recovered in instance %s",
			 l->instance);
		finding_add(TPX_INPUT_GAP, "(input)", subj, l->lost, ex);
	}
	/* A daemon_started while the same daemon's previous instance never
	 * said daemon_stopping: it crashed (or was killed). */
	if (S.instv.n > 1)
		qsort(S.instv.v, S.instv.n, sizeof(*S.instv.v), cmp_inst);
	for (i = 1; i < S.instv.n; i++) {
		struct inst *a = S.instv.v[i - 1], *b = S.instv.v[i];
		char ts[32];

		if (!b->started || a->stopping ||
		    strcmp(a->node ? a->node : "", b->node ? b->node : "") != 0 ||
		    strcmp(a->role ? a->role : "", b->role ? b->role : "") != 0)
			continue;
		snprintf(subj, sizeof(subj), "%s %s restarted without "
			 "daemon_stopping (crash)", a->role ? a->role : "?",
			 a->node ? a->node : "?");
		rpt_time_str(a->last_us, ts, sizeof(ts));
		snprintf(ex, sizeof(ex), "instance %s, last event %s", a->id, ts);
		finding_add(TPX_INPUT_GAP, "(input)", subj, 1, ex);
	}
	S.r.instances = S.instv.n;
	S.r.events -= S.r.duplicates;
}

static int
cmp_finding(const void *a, const void *b)
{
	const struct rpt_finding *x = a, *y = b;
	int c = strcmp(x->group, y->group);

	if (c == 0)
		c = y->fail - x->fail;
	if (c == 0)
		c = (int)x->id - (int)y->id;
	if (c == 0)
		c = strcmp(x->subject, y->subject);
	return c;
}

static int
cmp_group(const void *a, const void *b)
{
	return strcmp(((const struct rpt_groupstat *)a)->name,
		      ((const struct rpt_groupstat *)b)->name);
}

static int
listed(char **list, size_t n, const char *s)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(list[i], s) == 0)
			return 1;
	return 0;
}

static void
analyse(void)
{
	size_t i;
	int id, fail = 0;

	S.r.now_us = S.o.now_given ? S.o.now_us : S.latest_us;
	S.r.now_given = S.o.now_given;
	for (i = 0; i < S.sides.n; i++) {
		struct side *s = S.sides.v[i];
		char key[600];

		side_classify(s);
		if (is_dialler(s) && s->node && s->peer && s->peer_node) {
			snprintf(key, sizeof(key), "%s|%s", s->node, s->peer);
			map_put(&S.names, key, (void *)s->peer_node);
		}
	}
	join_sides();
	for (i = 0; i < S.sides.n; i++) {
		struct side *s = S.sides.v[i];

		/* A joined link is reported once, from its dialler. */
		if (s->other == NULL || is_dialler(s))
			link_report(s);
	}
	tcp_findings();
	input_findings();
	for (id = 0; id < TPX_COUNT; id++)
		S.r.id_fail[id] = listed(S.o.fail_on, S.o.nfail_on,
					 rpt_id_name(id));
	S.r.nfindings = S.findv.n;
	S.r.findings = arena_alloc((S.findv.n + 1) * sizeof(*S.r.findings));
	for (i = 0; i < S.findv.n; i++) {
		struct rpt_finding *f = S.findv.v[i];

		f->fail = S.r.id_fail[f->id];
		S.r.findings[i] = *f;
		fail |= f->fail;
	}
	qsort(S.r.findings, S.r.nfindings, sizeof(*S.r.findings), cmp_finding);
	S.r.ngroups = S.groupv.n;
	S.r.groups = arena_alloc((S.groupv.n + 1) * sizeof(*S.r.groups));
	for (i = 0; i < S.groupv.n; i++)
		S.r.groups[i] = *(struct rpt_groupstat *)S.groupv.v[i];
	qsort(S.r.groups, S.r.ngroups, sizeof(*S.r.groups), cmp_group);
	S.r.service_data = S.services.n > 0;
	S.r.nservices = S.services.n;
	S.r.services = arena_alloc((S.services.n + 1) * sizeof(*S.r.services));
	for (i = 0; i < S.services.n; i++)
		S.r.services[i] = *(struct rpt_service *)S.services.v[i];
	if (S.r.unreadable > 0 || S.r.events == 0 ||
	    (S.o.strict_input && S.r.id_count[TPX_INPUT_GAP] > 0))
		S.r.exit_code = EXIT_INPUT;
	else
		S.r.exit_code = fail ? EXIT_FINDING : EXIT_READY;
}

/* ---- the command line -------------------------------------------------- */

static const char usage[] =
"usage: tlsplex-report [options] FILE...   (FILE '-' is standard input;\n"
"       FILE.gz is read through gzip -dc)\n"
"  --format text|json|markdown   output (default text)\n"
"  --group-by peer|service|cipher|node   (default peer)\n"
"  --fail-on ID,...              findings that make the exit code 1\n"
"                                (default TPX-PLAINTEXT,TPX-TLS-VERSION,\n"
"                                TPX-CIPHER,TPX-CERT-EXPIRED,TPX-UNCLASSIFIED;\n"
"                                'none' for no finding)\n"
"  --allow-plaintext PEER,...    node names or addresses whose plaintext\n"
"                                links are not a finding\n"
"  --min-tls 1.2|1.3             lowest TLS version that is fine (default 1.2)\n"
"  --allowed-ciphers NAME,...    IANA suite names that are fine (default:\n"
"                                any AEAD suite, no CBC)\n"
"  --cert-warn-days N            certificate expiry warning (default 30)\n"
"  --now RFC3339                 reference time (default: the latest event)\n"
"  --since RFC3339, --until RFC3339   only events in this window\n"
"  --strict-input                any TPX-INPUT-GAP makes the exit code 2\n"
"  -q                            print nothing; only the exit code\n"
"exit: 0 ready, 1 a --fail-on finding, 2 an input problem, 64 usage\n";

static int
usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "tlsplex-report: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n%s", usage);
	return EXIT_USAGE;
}

/* Splits a comma-separated list into arena strings. */
static char **
split_list(const char *s, size_t *n)
{
	char **v, *copy = arena_strdup(s), *tok, *save = NULL;
	size_t cap = 1;
	const char *p;

	for (p = s; *p; p++)
		cap += *p == ',';
	v = arena_alloc(cap * sizeof(*v));
	*n = 0;
	for (tok = strtok_r(copy, ",", &save); tok != NULL;
	     tok = strtok_r(NULL, ",", &save)) {
		while (*tok == ' ')
			tok++;
		if (*tok != '\0')
			v[(*n)++] = tok;
	}
	return v;
}

static int
parse_args(int argc, char **argv)
{
	enum { O_FORMAT = 256, O_GROUP, O_FAIL, O_ALLOW, O_MINTLS, O_CIPHERS,
	       O_WARN, O_NOW, O_SINCE, O_UNTIL, O_STRICT, O_HELP };
	static const struct option lo[] = {
		{ "format", required_argument, NULL, O_FORMAT },
		{ "group-by", required_argument, NULL, O_GROUP },
		{ "fail-on", required_argument, NULL, O_FAIL },
		{ "allow-plaintext", required_argument, NULL, O_ALLOW },
		{ "min-tls", required_argument, NULL, O_MINTLS },
		{ "allowed-ciphers", required_argument, NULL, O_CIPHERS },
		{ "cert-warn-days", required_argument, NULL, O_WARN },
		{ "now", required_argument, NULL, O_NOW },
		{ "since", required_argument, NULL, O_SINCE },
		{ "until", required_argument, NULL, O_UNTIL },
		{ "strict-input", no_argument, NULL, O_STRICT },
		{ "help", no_argument, NULL, O_HELP },
		{ NULL, 0, NULL, 0 },
	};
	struct opts *o = &S.o;
	char *end;
	size_t i;
	int c, id;

	o->fail_on = split_list("TPX-PLAINTEXT,TPX-TLS-VERSION,TPX-CIPHER,"
				"TPX-CERT-EXPIRED,TPX-UNCLASSIFIED", &o->nfail_on);
	o->min_tls = 12;
	o->warn_days = 30;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":qh", lo, NULL)) != -1) {
		switch (c) {
		case O_FORMAT:
			if (strcmp(optarg, "text") == 0)
				o->format = RF_TEXT;
			else if (strcmp(optarg, "json") == 0)
				o->format = RF_JSON;
			else if (strcmp(optarg, "markdown") == 0 ||
				 strcmp(optarg, "md") == 0)
				o->format = RF_MARKDOWN;
			else
				return usage_error("--format: '%s' is not text, "
						   "json or markdown", optarg);
			break;
		case O_GROUP:
			if (strcmp(optarg, "peer") == 0)
				o->group_by = RG_PEER;
			else if (strcmp(optarg, "service") == 0)
				o->group_by = RG_SERVICE;
			else if (strcmp(optarg, "cipher") == 0)
				o->group_by = RG_CIPHER;
			else if (strcmp(optarg, "node") == 0)
				o->group_by = RG_NODE;
			else
				return usage_error("--group-by: '%s' is not peer, "
						   "service, cipher or node", optarg);
			break;
		case O_FAIL:
			o->fail_on = split_list(optarg, &o->nfail_on);
			if (o->nfail_on == 1 && strcmp(o->fail_on[0], "none") == 0)
				o->nfail_on = 0;
			for (i = 0; i < o->nfail_on; i++) {
				for (id = 0; id < TPX_COUNT; id++)
					if (strcmp(o->fail_on[i], rpt_id_name(id)) == 0)
						break;
				if (id == TPX_COUNT)
					return usage_error("--fail-on: unknown "
							   "finding id '%s'",
							   o->fail_on[i]);
			}
			break;
		case O_ALLOW:
			o->allow_pt = split_list(optarg, &o->nallow_pt);
			break;
		case O_MINTLS:
			o->min_tls = tls_version(optarg);
			if (o->min_tls < 10)
				return usage_error("--min-tls: '%s' is not 1.0, "
						   "1.1, 1.2 or 1.3", optarg);
			break;
		case O_CIPHERS:
			o->ciphers = split_list(optarg, &o->nciphers);
			o->ciphers_given = 1;
			break;
		case O_WARN:
			errno = 0;
			o->warn_days = strtol(optarg, &end, 10);
			if (errno || end == optarg || *end || o->warn_days < 0 ||
			    o->warn_days > 100000)
				return usage_error("--cert-warn-days: '%s' is "
						   "not a number of days", optarg);
			break;
		case O_NOW:
		case O_SINCE:
		case O_UNTIL: {
			int64_t *t = c == O_NOW ? &o->now_us :
				     c == O_SINCE ? &o->since_us : &o->until_us;

			if (parse_rfc3339(optarg, t) < 0)
				return usage_error("--%s: '%s' is not an RFC 3339 "
						   "time (2026-12-01T20:00:00Z)",
						   c == O_NOW ? "now" : c == O_SINCE ?
						   "since" : "until", optarg);
			*(c == O_NOW ? &o->now_given : c == O_SINCE ?
			  &o->since_given : &o->until_given) = 1;
			break;
		}
		case O_STRICT:
			o->strict_input = 1;
			break;
		case 'q':
			o->quiet = 1;
			break;
		case 'h':
		case O_HELP:
			fputs(usage, stdout);
			exit(0);
		case ':':
			return usage_error("option '%s' needs a value",
					   argv[optind - 1]);
		default:
			return usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind >= argc)
		return usage_error("no FILE given");
	return 0;
}

int
main(int argc, char **argv)
{
	int rc, i;

	rc = parse_args(argc, argv);
	if (rc != 0)
		goto out;
	S.r.format = S.o.format;
	S.r.group_by = S.o.group_by;
	S.r.min_tls = S.o.min_tls;
	S.r.cert_warn_days = S.o.warn_days;
	for (i = optind; i < argc; i++)
		read_input(argv[i]);
	analyse();
	if (!S.o.quiet)
		report_print(stdout, &S.r);
	if (fflush(stdout) != 0 && !S.o.quiet)
		fprintf(stderr, "tlsplex-report: writing the report: %s\n",
			strerror(errno));
	rc = S.r.exit_code;
out:
	for (i = 0; i < (int)S.instv.n; i++)
		free(((struct inst *)S.instv.v[i])->seq);
	map_free(&S.links);
	map_free(&S.insts);
	map_free(&S.dedupe);
	map_free(&S.findings);
	map_free(&S.groups);
	map_free(&S.strings);
	map_free(&S.names);
	free(S.sides.v);
	free(S.instv.v);
	free(S.tcprefs.v);
	free(S.losts.v);
	free(S.services.v);
	free(S.findv.v);
	free(S.groupv.v);
	arena_release();
	return rc;
}
