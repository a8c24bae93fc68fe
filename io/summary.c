/*
 * Periodic summaries: links aggregated by key, streams by service; see
 * io/summary.h and docs/MONITORING.md ("Summaries").
 */
#include "summary.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <event2/event.h>

#include "config.h"
#include "link.h"
#include "log.h"

#define LINK_BUCKETS 4096

/* What links are aggregated by, besides the daemon's own role and node
 * (every event carries those). */
struct skey {
	char server_ip[48], client_ip[48];
	uint64_t server_port;
	char peer_node[72];
	char protection[12];
	char protocol[16], cipher[64], group[32];
	char peer_key_type[16];
	uint64_t peer_key_bits;
	char peer_sha256[100];
	char outcome[16], reason_name[40];
};

struct sagg {
	struct skey k;
	uint64_t hash;
	int used;
	uint64_t lifetime, active;             /* now */
	uint64_t lifetime_start, active_start; /* at the interval's start */
	/* in the interval */
	uint64_t opened, closed, shorts, hs_full, hs_resumed, hs_ms_sum,
		 hs_ms_max, streams, bytes_in, bytes_out;
};

struct ssvc {
	char service[128], peer_node[72], protection[12];
	uint64_t hash;
	int used;
	uint64_t opened, refused, bytes_in, bytes_out;
};

/* An open link. */
struct slink {
	struct slink *next;
	uint64_t id;
	int key;           /* index into keys; -1 while not known */
	uint64_t opened_in; /* interval_seq it was opened in */
	int reported;      /* counted under key at an interval's end */
	uint64_t in_done, out_done; /* bytes already counted */
};

struct summary {
	int relay;
	summary_emit_fn emit;
	void *emit_arg;
	summary_bytes_fn bytes;
	uint64_t seq;              /* the current interval's number */
	uint64_t start_us;
	struct sagg keys[SUMMARY_MAX_KEYS + 1]; /* the last is "_other" */
	struct ssvc svcs[SUMMARY_MAX_SERVICES + 1];
	struct slink *links[LINK_BUCKETS];
	uint64_t refused_tcp, folded;
};

/* ---- keys ----------------------------------------------------------------- */

static uint64_t
fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *c = p;

	while (n-- > 0)
		h = (h ^ *c++) * 0x100000001b3ull;
	return h;
}

static uint64_t
fnv_str(uint64_t h, const char *s)
{
	/* The NUL separates fields, so "ab","c" and "a","bc" differ. */
	return fnv(h, s, strlen(s) + 1);
}

static uint64_t
skey_hash(const struct skey *k)
{
	uint64_t h = 0xcbf29ce484222325ull;

	h = fnv_str(h, k->server_ip);
	h = fnv(h, &k->server_port, sizeof(k->server_port));
	h = fnv_str(h, k->client_ip);
	h = fnv_str(h, k->peer_node);
	h = fnv_str(h, k->protection);
	h = fnv_str(h, k->protocol);
	h = fnv_str(h, k->cipher);
	h = fnv_str(h, k->group);
	h = fnv_str(h, k->peer_key_type);
	h = fnv(h, &k->peer_key_bits, sizeof(k->peer_key_bits));
	h = fnv_str(h, k->peer_sha256);
	h = fnv_str(h, k->outcome);
	return fnv_str(h, k->reason_name);
}

#define CPY(dst, src) snprintf(dst, sizeof(dst), "%s", (src) ? (src) : "")

/* The key of the link ev is about, with the given protection. */
static void
skey_of(const struct summary *s, const struct hook_event *ev,
	const char *protection, struct skey *k)
{
	char ip[sizeof(k->server_ip)];
	uint64_t port;

	memset(k, 0, sizeof(*k));
	if (hook_split_addr(s->relay ? ev->local : ev->peer, ip, sizeof(ip),
			    &port) == 0) {
		snprintf(k->server_ip, sizeof(k->server_ip), "%.47s", ip);
		k->server_port = port;
	}
	if (hook_split_addr(s->relay ? ev->peer : ev->local, ip, sizeof(ip),
			    &port) == 0)
		snprintf(k->client_ip, sizeof(k->client_ip), "%.47s", ip);
	CPY(k->peer_node, ev->peer_node);
	CPY(k->protection, protection);
	if (strcmp(protection, "tls") == 0) {
		CPY(k->protocol, ev->protocol);
		CPY(k->cipher, ev->cipher);
		CPY(k->group, ev->group);
		CPY(k->peer_key_type, ev->peer_cert.key_type);
		k->peer_key_bits = ev->peer_cert.key_bits;
		CPY(k->peer_sha256, ev->peer_cert.sha256);
	} else if (strcmp(protection, "none") == 0) {
		CPY(k->outcome, ev->outcome);
		CPY(k->reason_name, ev->reason_name);
	}
}

static int
sagg_idle(const struct sagg *a)
{
	return a->active == 0 && a->active_start == 0 && a->opened == 0 &&
	       a->closed == 0 && a->streams == 0 && a->bytes_in == 0 &&
	       a->bytes_out == 0 && a->hs_full == 0 && a->hs_resumed == 0;
}

/* The index of key k, made when new.  When every slot is taken, an idle
 * key (nothing open, nothing this interval) gives up its slot; when none
 * is idle, the link is counted under "_other". */
static int
skey_find(struct summary *s, const struct skey *k)
{
	uint64_t h = skey_hash(k);
	int i, free_at = -1, idle_at = -1;

	for (i = 0; i < SUMMARY_MAX_KEYS; i++) {
		struct sagg *a = &s->keys[i];

		if (!a->used) {
			if (free_at < 0)
				free_at = i;
			continue;
		}
		if (a->hash == h && memcmp(&a->k, k, sizeof(*k)) == 0)
			return i;
		if (idle_at < 0 && sagg_idle(a))
			idle_at = i;
	}
	if (free_at < 0)
		free_at = idle_at;
	if (free_at < 0) {
		struct sagg *o = &s->keys[SUMMARY_MAX_KEYS];

		if (!o->used) {
			o->used = 1;
			snprintf(o->k.peer_node, sizeof(o->k.peer_node), "_other");
			o->hash = skey_hash(&o->k);
		}
		s->folded++;
		return SUMMARY_MAX_KEYS;
	}
	memset(&s->keys[free_at], 0, sizeof(s->keys[free_at]));
	s->keys[free_at].k = *k;
	s->keys[free_at].hash = h;
	s->keys[free_at].used = 1;
	return free_at;
}

static int
ssvc_idle(const struct ssvc *v)
{
	return v->opened == 0 && v->refused == 0 && v->bytes_in == 0 &&
	       v->bytes_out == 0;
}

/* The entry of ev's (service, peer_node, protection), made when new;
 * like skey_find(), an idle entry gives up its slot when all are taken,
 * and "_other" takes the rest. */
static struct ssvc *
ssvc_find(struct summary *s, const struct hook_event *ev)
{
	const char *svc = ev->service ? ev->service : "";
	const char *peer = ev->peer_node ? ev->peer_node : "";
	const char *prot = ev->protection ? ev->protection : "";
	uint64_t h = fnv_str(fnv_str(fnv_str(0xcbf29ce484222325ull, svc), peer),
			     prot);
	struct ssvc *v, *take = NULL, *idle = NULL;
	int i;

	/* Names longer than the fields are cut; the hash is of the cut
	 * names, so that a found entry compares equal. */
	if (strlen(svc) >= sizeof(v->service) ||
	    strlen(peer) >= sizeof(v->peer_node) ||
	    strlen(prot) >= sizeof(v->protection)) {
		static struct ssvc cut;

		CPY(cut.service, svc);
		CPY(cut.peer_node, peer);
		CPY(cut.protection, prot);
		svc = cut.service, peer = cut.peer_node, prot = cut.protection;
		h = fnv_str(fnv_str(fnv_str(0xcbf29ce484222325ull, svc), peer),
			    prot);
	}
	for (i = 0; i < SUMMARY_MAX_SERVICES; i++) {
		v = &s->svcs[i];
		if (!v->used) {
			if (take == NULL)
				take = v;
			continue;
		}
		if (v->hash == h && strcmp(v->service, svc) == 0 &&
		    strcmp(v->peer_node, peer) == 0 &&
		    strcmp(v->protection, prot) == 0)
			return v;
		if (idle == NULL && ssvc_idle(v))
			idle = v;
	}
	if (take == NULL)
		take = idle;
	if (take == NULL) {
		take = &s->svcs[SUMMARY_MAX_SERVICES];
		if (!take->used) {
			memset(take, 0, sizeof(*take));
			snprintf(take->service, sizeof(take->service), "_other");
			take->hash = fnv_str(0xcbf29ce484222325ull, "_other");
			take->used = 1;
		}
		return take;
	}
	memset(take, 0, sizeof(*take));
	CPY(take->service, svc);
	CPY(take->peer_node, peer);
	CPY(take->protection, prot);
	take->hash = h;
	take->used = 1;
	return take;
}

/* ---- links ---------------------------------------------------------------- */

static struct slink **
slink_slot(struct summary *s, uint64_t id)
{
	struct slink **p = &s->links[id % LINK_BUCKETS];

	while (*p != NULL && (*p)->id != id)
		p = &(*p)->next;
	return p;
}

static struct slink *
slink_get(struct summary *s, uint64_t id)
{
	return *slink_slot(s, id);
}

/* Counts link l under key k from now on. */
static void
slink_settle(struct summary *s, struct slink *l, int k)
{
	struct sagg *a = &s->keys[k];

	l->key = k;
	a->lifetime++;
	a->active++;
	a->opened++;
}

/* Takes link l off its key, for a link whose key turned out otherwise
 * before any interval reported it (a plaintext link that failed BIND). */
static void
slink_unsettle(struct summary *s, struct slink *l)
{
	struct sagg *a = &s->keys[l->key];

	a->lifetime--;
	a->active--;
	a->opened--;
	l->key = -1;
}

static void
summary_opened(struct summary *s, const struct hook_event *ev)
{
	struct slink **p = slink_slot(s, ev->link_id), *l;

	if (*p != NULL)
		return;
	l = calloc(1, sizeof(*l));
	if (l == NULL) {
		log_err("summaries: out of memory; link %llu is counted when it "
			"closes", (unsigned long long)ev->link_id);
		return;
	}
	l->id = ev->link_id;
	l->key = -1;
	l->opened_in = s->seq;
	*p = l;
}

static void
summary_settled(struct summary *s, const struct hook_event *ev,
		const char *protection)
{
	struct slink *l = slink_get(s, ev->link_id);
	struct skey k;
	struct sagg *a;

	if (l == NULL || l->key >= 0)
		return;
	skey_of(s, ev, protection, &k);
	slink_settle(s, l, skey_find(s, &k));
	if (ev->type != HOOK_HANDSHAKE_DONE)
		return;
	a = &s->keys[l->key];
	if (ev->resumed)
		a->hs_resumed++;
	else
		a->hs_full++;
	a->hs_ms_sum += ev->duration_ms;
	if (ev->duration_ms > a->hs_ms_max)
		a->hs_ms_max = ev->duration_ms;
}

static void
summary_closed(struct summary *s, const struct hook_event *ev)
{
	struct slink **p = slink_slot(s, ev->link_id), *l = *p, tmp;
	const char *prot = ev->protection ? ev->protection : "none";
	struct skey k;
	struct sagg *a;
	int final;

	if (l == NULL) {
		/* Not seen opening (summaries started later, or no memory):
		 * counted now, as opened in this interval. */
		memset(&tmp, 0, sizeof(tmp));
		tmp.key = -1;
		tmp.opened_in = s->seq;
		l = &tmp;
	}
	skey_of(s, ev, prot, &k);
	final = skey_find(s, &k);
	if (l->key >= 0 && l->key != final && !l->reported)
		slink_unsettle(s, l);
	if (l->key < 0)
		slink_settle(s, l, final);
	a = &s->keys[l->key];
	a->closed++;
	if (a->active > 0)
		a->active--;
	if (l->opened_in == s->seq)
		a->shorts++;
	if (ev->bytes_in > l->in_done)
		a->bytes_in += ev->bytes_in - l->in_done;
	if (ev->bytes_out > l->out_done)
		a->bytes_out += ev->bytes_out - l->out_done;
	if (l != &tmp) {
		*p = l->next;
		free(l);
	}
}

static void
summary_stream(struct summary *s, const struct hook_event *ev)
{
	struct slink *l = slink_get(s, ev->link_id);
	struct sagg *a = l != NULL && l->key >= 0 ? &s->keys[l->key] : NULL;
	struct ssvc *v = ssvc_find(s, ev);

	if (ev->type == HOOK_STREAM_OPENED) {
		v->opened++;
		if (a != NULL)
			a->streams++;
		return;
	}
	/* A refusal is reported as an open and a close in the same turn. */
	if (ev->result != NULL && strcmp(ev->result, "ok") != 0 &&
	    strcmp(ev->result, "reset") != 0) {
		if (v->opened > 0)
			v->opened--;
		v->refused++;
		if (a != NULL && a->streams > 0)
			a->streams--;
	}
	v->bytes_in += ev->bytes_in;
	v->bytes_out += ev->bytes_out;
}

void
summary_observe(struct summary *s, const struct hook_event *ev,
		uint64_t now_us)
{
	(void)now_us;
	if (s == NULL)
		return;
	switch (ev->type) {
	case HOOK_LINK_OPENED:
		summary_opened(s, ev);
		break;
	case HOOK_HANDSHAKE_DONE:
		summary_settled(s, ev, "tls");
		break;
	case HOOK_PLAINTEXT_AGREED:
		summary_settled(s, ev, "plaintext");
		break;
	case HOOK_LINK_CLOSED:
		summary_closed(s, ev);
		break;
	case HOOK_STREAM_OPENED:
	case HOOK_STREAM_CLOSED:
		summary_stream(s, ev);
		break;
	case HOOK_LINK_REFUSED:
		if (ev->stage != NULL && strcmp(ev->stage, "tcp") == 0)
			s->refused_tcp += 1 + ev->suppressed;
		break;
	default:
		break;
	}
}

/* ---- intervals ------------------------------------------------------------ */

struct summary *
summary_new(int relay, uint64_t now_us, summary_emit_fn emit, void *emit_arg,
	    summary_bytes_fn bytes)
{
	struct summary *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->relay = relay;
	s->emit = emit;
	s->emit_arg = emit_arg;
	s->bytes = bytes;
	s->seq = 1;
	s->start_us = now_us;
	return s;
}

void
summary_free(struct summary *s)
{
	size_t i;

	if (s == NULL)
		return;
	for (i = 0; i < LINK_BUCKETS; i++)
		while (s->links[i] != NULL) {
			struct slink *l = s->links[i];

			s->links[i] = l->next;
			free(l);
		}
	free(s);
}

static void
summary_live_bytes(void *arg, uint64_t id, uint64_t in, uint64_t out)
{
	struct summary *s = arg;
	struct slink *l = slink_get(s, id);
	struct sagg *a;

	if (l == NULL || l->key < 0)
		return; /* counted once its key is known */
	a = &s->keys[l->key];
	if (in > l->in_done)
		a->bytes_in += in - l->in_done;
	if (out > l->out_done)
		a->bytes_out += out - l->out_done;
	l->in_done = in;
	l->out_done = out;
}

#define STR(f) ((f)[0] ? (f) : NULL)

static void
summary_emit_key(struct summary *s, struct sagg *a, struct hook_event *ev)
{
	char sk[17];

	snprintf(sk, sizeof(sk), "%016llx", (unsigned long long)a->hash);
	ev->type = HOOK_LINK_SUMMARY;
	ev->session_key = sk;
	ev->server_ip = STR(a->k.server_ip);
	ev->server_port = a->k.server_port;
	ev->client_ip = STR(a->k.client_ip);
	ev->peer_node = STR(a->k.peer_node);
	ev->protection = STR(a->k.protection);
	ev->protocol = STR(a->k.protocol);
	ev->cipher = STR(a->k.cipher);
	ev->group = STR(a->k.group);
	ev->peer_cert.key_type = STR(a->k.peer_key_type);
	ev->peer_cert.key_bits = a->k.peer_key_bits;
	ev->peer_cert.sha256 = STR(a->k.peer_sha256);
	ev->outcome = STR(a->k.outcome);
	ev->reason_name = STR(a->k.reason_name);
	ev->links_lifetime_start = a->lifetime_start;
	ev->links_lifetime_end = a->lifetime;
	ev->links_active_start = a->active_start;
	ev->links_active_end = a->active;
	ev->links_opened = a->opened;
	ev->links_closed = a->closed;
	ev->links_short = a->shorts;
	ev->handshakes_full = a->hs_full;
	ev->handshakes_resumed = a->hs_resumed;
	ev->handshake_ms_sum = a->hs_ms_sum;
	ev->handshake_ms_max = a->hs_ms_max;
	ev->streams_opened = a->streams;
	ev->bytes_in = a->bytes_in;
	ev->bytes_out = a->bytes_out;
	s->emit(ev, s->emit_arg);
}

static void
summary_emit_svc(struct summary *s, struct ssvc *v, struct hook_event *ev)
{
	char sk[17];

	snprintf(sk, sizeof(sk), "%016llx", (unsigned long long)v->hash);
	ev->type = HOOK_SERVICE_SUMMARY;
	ev->session_key = sk;
	ev->service = STR(v->service);
	ev->peer_node = STR(v->peer_node);
	ev->protection = STR(v->protection);
	ev->streams_opened = v->opened;
	ev->streams_refused = v->refused;
	ev->bytes_in = v->bytes_in;
	ev->bytes_out = v->bytes_out;
	s->emit(ev, s->emit_arg);
}

/* A record's common part: the interval. */
static void
summary_base(const struct summary *s, struct hook_event *ev, uint64_t now_us,
	     int final, const char *start, const char *end)
{
	memset(ev, 0, sizeof(*ev));
	ev->ts_us = now_us;
	ev->interval_seq = s->seq;
	ev->interval_start = start;
	ev->interval_end = end;
	ev->final = final != 0;
}

void
summary_flush(struct summary *s, uint64_t now_us, int final)
{
	char start[40], end[40];
	struct hook_event ev;
	uint64_t records = 0, pending = 0;
	size_t i;

	if (s == NULL)
		return;
	if (s->bytes != NULL)
		s->bytes(summary_live_bytes, s);
	hook_rfc3339(s->start_us, start, sizeof(start));
	hook_rfc3339(now_us, end, sizeof(end));
	for (i = 0; i <= SUMMARY_MAX_KEYS; i++) {
		struct sagg *a = &s->keys[i];

		if (!a->used || (sagg_idle(a) && a->active == 0))
			continue;
		summary_base(s, &ev, now_us, final, start, end);
		summary_emit_key(s, a, &ev);
		records++;
	}
	for (i = 0; i <= SUMMARY_MAX_SERVICES; i++) {
		struct ssvc *v = &s->svcs[i];

		if (!v->used || (v->opened == 0 && v->refused == 0 &&
				 v->bytes_in == 0 && v->bytes_out == 0))
			continue;
		summary_base(s, &ev, now_us, final, start, end);
		summary_emit_svc(s, v, &ev);
		records++;
	}
	for (i = 0; i < LINK_BUCKETS; i++)
		for (struct slink *l = s->links[i]; l != NULL; l = l->next) {
			if (l->key >= 0)
				l->reported = 1;
			else
				pending++;
		}
	summary_base(s, &ev, now_us, final, start, end);
	ev.type = HOOK_SUMMARY_END;
	ev.records = records;
	ev.refused_tcp_stage = s->refused_tcp;
	ev.links_pending = pending;
	ev.links_folded = s->folded;
	s->emit(&ev, s->emit_arg);
	/* The next interval. */
	for (i = 0; i <= SUMMARY_MAX_KEYS; i++) {
		struct sagg *a = &s->keys[i];

		a->lifetime_start = a->lifetime;
		a->active_start = a->active;
		a->opened = a->closed = a->shorts = a->hs_full = 0;
		a->hs_resumed = a->hs_ms_sum = a->hs_ms_max = a->streams = 0;
		a->bytes_in = a->bytes_out = 0;
	}
	for (i = 0; i <= SUMMARY_MAX_SERVICES; i++) {
		struct ssvc *v = &s->svcs[i];

		v->opened = v->refused = v->bytes_in = v->bytes_out = 0;
	}
	s->refused_tcp = s->folded = 0;
	s->seq++;
	s->start_us = now_us;
}

/* ---- in a daemon ---------------------------------------------------------- */

static struct {
	int registered;
	struct event_base *base;
	struct event *timer;
	struct summary *s;
	uint64_t interval_us;
} D;

static void
summary_to_hook(struct hook_event *ev, void *arg)
{
	(void)arg;
	hook_emit(ev);
}

static int
summary_hook_cb(const struct hook_event *ev, void *arg)
{
	(void)arg;
	if (D.s != NULL)
		summary_observe(D.s, ev, ev->ts_us);
	return 0;
}

/* Arms the timer for the next wall-clock multiple of the interval; a
 * boundary less than a tenth of an interval away is skipped, so that a
 * timer that fires a little early does not make a tiny interval. */
static void
summary_arm(void)
{
	uint64_t now = hook_wall_us(), next;
	struct timeval tv;

	next = (now / D.interval_us + 1) * D.interval_us;
	if (next - now < D.interval_us / 10)
		next += D.interval_us;
	tv.tv_sec = (time_t)((next - now) / 1000000);
	tv.tv_usec = (suseconds_t)((next - now) % 1000000);
	evtimer_add(D.timer, &tv);
}

static void
summary_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what, (void)arg;
	summary_flush(D.s, hook_wall_us(), 0);
	summary_arm();
}

/* Starts summaries of interval_ms for a relay or a gateway. */
static int
summary_begin(int relay, uint32_t interval_ms)
{
	D.interval_us = (uint64_t)interval_ms * 1000;
	D.s = summary_new(relay, hook_wall_us(), summary_to_hook, NULL,
			  link_bytes_each);
	if (D.timer == NULL)
		D.timer = evtimer_new(D.base, summary_timer_cb, NULL);
	if (D.s == NULL || D.timer == NULL) {
		log_err("summaries: out of memory; none are written");
		summary_free(D.s);
		D.s = NULL;
		D.interval_us = 0;
		return -1;
	}
	summary_arm();
	return 0;
}

/* Writes the final set and stops the interval. */
static void
summary_end(void)
{
	if (D.s == NULL)
		return;
	if (D.timer != NULL)
		evtimer_del(D.timer);
	summary_flush(D.s, hook_wall_us(), 1);
	summary_free(D.s);
	D.s = NULL;
	D.interval_us = 0;
}

int
summary_start(struct event_base *base, const struct cfg *c)
{
	if (!D.registered) {
		if (hook_register(summary_hook_cb, NULL) < 0) {
			log_err("summaries: too many hook observers");
			return -1;
		}
		D.registered = 1;
	}
	D.base = base;
	if (c->summary_interval_ms == 0)
		return 0;
	return summary_begin(c->role == CFG_RELAY, c->summary_interval_ms);
}

void
summary_reload(const struct cfg *c)
{
	uint64_t us = (uint64_t)c->summary_interval_ms * 1000;

	if (us == D.interval_us)
		return;
	if (us == 0) {
		summary_end();
		log_info("summaries stopped (summary_interval = 0)");
		return;
	}
	if (D.s == NULL) {
		if (summary_begin(c->role == CFG_RELAY, c->summary_interval_ms) == 0)
			log_info("summaries every %u ms from now on",
				 c->summary_interval_ms);
		return;
	}
	/* The close-out set of the old interval; the counts go on. */
	evtimer_del(D.timer);
	summary_flush(D.s, hook_wall_us(), 1);
	D.interval_us = us;
	summary_arm();
	log_info("summaries every %u ms from now on", c->summary_interval_ms);
}

void
summary_stop(void)
{
	summary_end();
	if (D.timer != NULL)
		event_free(D.timer);
	D.timer = NULL;
}

uint64_t
summary_interval_s(void)
{
	return D.interval_us / 1000000;
}
