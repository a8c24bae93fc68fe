/*
 * Hostile parties for end-to-end tests; see mitm.h.  libc, pthreads and
 * the pure codec in proto/ only.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "mitm.h"
#include "policy.h"

#define POLL_MS 20

/* --- sockets ------------------------------------------------------------ */

static int
listen_at(uint32_t addr, int port, int *bound)
{
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = addr;
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(fd, 64) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &sl) < 0) {
		close(fd);
		return -1;
	}
	*bound = ntohs(sin.sin_port);
	return fd;
}

static int
listen_on(int port, int *bound)
{
	return listen_at(htonl(INADDR_LOOPBACK), port, bound);
}

/* A blocking, close-on-exec connection to addr:port, or -1. */
static int
connect_at(uint32_t addr, int port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	sin.sin_addr.s_addr = addr;
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Accepts one connection if one is waiting within POLL_MS; -1 if not. */
static int
accept_poll(int lfd)
{
	struct pollfd pfd = { lfd, POLLIN, 0 };

	if (poll(&pfd, 1, POLL_MS) <= 0)
		return -1;
	return accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
}

static int
send_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n > 0) {
		ssize_t w = send(fd, b, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

/* --- the man in the middle ------------------------------------------------ */

enum phase { PH_NEG, PH_BIND, PH_PASS, PH_DONE };

struct mdir {
	int from, to;
	enum phase phase;
	struct neg_decoder *dec;
	uint8_t msg[NEG_MAX_LEN]; /* the message so far, as received */
	size_t msg_len, neg_len;
	struct neg_msg decoded;
	int decoded_ok;
	uint8_t bind[FRAME_HDR_LEN + FRAME_BIND_LEN];
	size_t bind_len;
	uint8_t later[4096];      /* injection waiting for its time */
	size_t later_len;
	int64_t later_at;
	uint8_t *cap;
	size_t cap_len;
};

struct mconn {
	struct mitm *m;
	int idx;
	pthread_t thread;
	struct mdir d[2];
	int swapped, closed;
	uint8_t inj[2][4096]; /* mitm_inject(), under the mutex */
	size_t inj_len[2];
};

struct mitm {
	int lfd, port, target, flags;
	uint32_t target_addr;
	mitm_edit_fn fn;
	void *arg;
	pthread_t thread;
	pthread_mutex_t mu;
	volatile int stop;
	int n;
	struct mconn *conns[MITM_CONNS_MAX];
};

static void
mdir_record(struct mitm *m, struct mdir *d, const uint8_t *p, size_t n)
{
	pthread_mutex_lock(&m->mu);
	if (d->cap_len + n > MITM_CAPTURE_MAX)
		n = MITM_CAPTURE_MAX - d->cap_len;
	memcpy(d->cap + d->cap_len, p, n);
	d->cap_len += n;
	pthread_mutex_unlock(&m->mu);
}

/* How many bytes the NEG phase may read without passing the end of the
 * message, so that whatever follows stays in the socket. */
static size_t
mdir_neg_want(const struct mdir *d)
{
	size_t body;

	if (d->msg_len < NEG_HDR_LEN)
		return NEG_HDR_LEN - d->msg_len;
	body = (size_t)d->msg[12] << 8 | d->msg[13];
	if (NEG_HDR_LEN + body > NEG_MAX_LEN)
		return 1; /* the decoder fails on it at once */
	return NEG_HDR_LEN + body - d->msg_len;
}

/* Whether the answer as forwarded makes the link plaintext. */
static int
mitm_plaintext(const struct mitm_edit *e)
{
	struct neg_decoder *dec;
	size_t used;
	int plain;

	if (e->raw_len == 0)
		return e->msg.type == NEG_DECISION &&
		       e->msg.outcome.result == NEG_RESULT_PLAINTEXT;
	dec = neg_decoder_new();
	if (dec == NULL)
		return 0;
	plain = neg_decoder_feed(dec, e->raw, e->raw_len, &used) == NEG_DONE &&
		neg_decoder_msg(dec)->type == NEG_DECISION &&
		neg_decoder_msg(dec)->outcome.result == NEG_RESULT_PLAINTEXT;
	neg_decoder_free(dec);
	return plain;
}

static int
mconn_message_done(struct mconn *c, int di)
{
	struct mitm *m = c->m;
	struct mdir *d = &c->d[di], *o = &c->d[!di];
	struct mitm_edit *e = calloc(1, sizeof(*e));
	uint8_t *out = NULL;
	size_t out_len;
	int rc = -1, n;

	if (e == NULL)
		return -1;
	d->decoded = *neg_decoder_msg(d->dec);
	d->decoded_ok = 1;
	pthread_mutex_lock(&m->mu);
	d->neg_len = d->msg_len;
	pthread_mutex_unlock(&m->mu);
	e->conn = c->idx;
	e->dir = (enum mitm_dir)di;
	e->msg = d->decoded;
	e->other = o->decoded_ok ? &o->decoded : NULL;
	if (m->fn != NULL)
		m->fn(e, m->arg);
	out = malloc(NEG_MAX_LEN + sizeof(e->extra));
	if (out == NULL)
		goto out;
	if (e->raw_len > 0) {
		memcpy(out, e->raw, e->raw_len);
		out_len = e->raw_len;
	} else if (memcmp(&e->msg, &d->decoded, sizeof(e->msg)) == 0) {
		memcpy(out, d->msg, d->msg_len);
		out_len = d->msg_len;
	} else {
		n = neg_encode(&e->msg, out, NEG_MAX_LEN);
		if (n < 0)
			goto out;
		out_len = (size_t)n;
	}
	if (e->extra_len > 0 && e->later_ms == 0) {
		memcpy(out + out_len, e->extra, e->extra_len);
		out_len += e->extra_len;
	} else if (e->extra_len > 0) {
		memcpy(d->later, e->extra, e->extra_len);
		d->later_len = e->extra_len;
		d->later_at = h_now_ms() + e->later_ms;
	}
	if (send_all(d->to, out, out_len) < 0)
		goto out;
	d->phase = (m->flags & MITM_SWAP_BIND) ? PH_BIND : PH_PASS;
	if (di == MITM_S2C && !mitm_plaintext(e)) {
		/* TLS or a refusal follows: nothing to swap. */
		d->phase = PH_PASS;
		if (o->phase == PH_BIND)
			o->phase = PH_PASS;
	}
	rc = 0;
out:
	free(out);
	free(e);
	return rc;
}

/* Both BIND frames are in: each side gets the hash the other computed
 * for itself, which is the one it expects. */
static int
mconn_swap_bind(struct mconn *c)
{
	uint8_t h[FRAME_BIND_LEN];
	struct mdir *a = &c->d[0], *b = &c->d[1];

	memcpy(h, a->bind + FRAME_HDR_LEN, FRAME_BIND_LEN);
	memcpy(a->bind + FRAME_HDR_LEN, b->bind + FRAME_HDR_LEN, FRAME_BIND_LEN);
	memcpy(b->bind + FRAME_HDR_LEN, h, FRAME_BIND_LEN);
	if (send_all(a->to, a->bind, sizeof(a->bind)) < 0 ||
	    send_all(b->to, b->bind, sizeof(b->bind)) < 0)
		return -1;
	a->phase = b->phase = PH_PASS;
	pthread_mutex_lock(&c->m->mu);
	c->swapped = 1;
	pthread_mutex_unlock(&c->m->mu);
	return 0;
}

/* Reads what direction di may take now and forwards it.  Returns -1
 * when the connection is over. */
static int
mconn_read(struct mconn *c, int di)
{
	struct mdir *d = &c->d[di];
	uint8_t buf[16384];
	size_t want = sizeof(buf);
	ssize_t n;

	if (d->phase == PH_NEG)
		want = mdir_neg_want(d);
	else if (d->phase == PH_BIND)
		want = sizeof(d->bind) - d->bind_len;
	n = recv(d->from, buf, want, 0);
	if (n < 0 && errno == EINTR)
		return 0;
	if (n <= 0) {
		/* Pass the end on; the other way may still carry bytes. */
		if (n == 0 && d->phase == PH_PASS) {
			shutdown(d->to, SHUT_WR);
			d->phase = PH_DONE;
			return c->d[!di].phase == PH_DONE ? -1 : 0;
		}
		return -1;
	}
	mdir_record(c->m, d, buf, (size_t)n);
	switch (d->phase) {
	case PH_NEG: {
		size_t used = 0;
		enum neg_status st = neg_decoder_feed(d->dec, buf, (size_t)n, &used);

		memcpy(d->msg + d->msg_len, buf, (size_t)n);
		d->msg_len += (size_t)n;
		if (st == NEG_DONE)
			return mconn_message_done(c, di);
		if (st == NEG_FAIL) {
			/* Not a negotiation message: pass it on untouched. */
			d->phase = PH_PASS;
			return send_all(d->to, d->msg, d->msg_len);
		}
		return 0;
	}
	case PH_BIND:
		memcpy(d->bind + d->bind_len, buf, (size_t)n);
		d->bind_len += (size_t)n;
		if (d->bind_len == sizeof(d->bind) &&
		    c->d[!di].bind_len == sizeof(d->bind))
			return mconn_swap_bind(c);
		return 0;
	default:
		return send_all(d->to, buf, (size_t)n);
	}
}

static void *
mconn_main(void *arg)
{
	struct mconn *c = arg;
	struct mitm *m = c->m;
	int i;

	while (!m->stop) {
		struct pollfd pfd[2];
		int64_t now = h_now_ms();

		for (i = 0; i < 2; i++) {
			struct mdir *d = &c->d[i];
			uint8_t inj[4096];
			size_t inj_len;

			pthread_mutex_lock(&m->mu);
			inj_len = c->inj_len[i];
			memcpy(inj, c->inj[i], inj_len);
			c->inj_len[i] = 0;
			pthread_mutex_unlock(&m->mu);
			if (inj_len > 0 && send_all(d->to, inj, inj_len) < 0)
				goto done;
			if (d->later_len > 0 && now >= d->later_at) {
				if (send_all(d->to, d->later, d->later_len) < 0)
					goto done;
				d->later_len = 0;
			}
			pfd[i].fd = d->from;
			pfd[i].events = POLLIN;
			pfd[i].revents = 0;
			/* Hold a direction while its injection waits, while
			 * its BIND waits for the other one, or once ended. */
			if (d->later_len > 0 || d->phase == PH_DONE ||
			    (d->phase == PH_BIND && d->bind_len == sizeof(d->bind)))
				pfd[i].fd = -1;
		}
		if (poll(pfd, 2, POLL_MS) <= 0)
			continue;
		for (i = 0; i < 2; i++)
			if (pfd[i].revents != 0 && mconn_read(c, i) < 0)
				goto done;
	}
done:
	close(c->d[0].from);
	close(c->d[1].from);
	pthread_mutex_lock(&m->mu);
	c->closed = 1;
	pthread_mutex_unlock(&m->mu);
	return NULL;
}

static void *
mitm_main(void *arg)
{
	struct mitm *m = arg;

	while (!m->stop) {
		struct mconn *c;
		int cfd = accept_poll(m->lfd), sfd;

		if (cfd < 0)
			continue;
		sfd = connect_at(m->target_addr, m->target);
		c = calloc(1, sizeof(*c));
		if (sfd < 0 || c == NULL || m->n >= MITM_CONNS_MAX) {
			close(cfd);
			if (sfd >= 0)
				close(sfd);
			free(c);
			continue;
		}
		c->m = m;
		c->idx = m->n;
		c->d[0].from = c->d[1].to = cfd;
		c->d[0].to = c->d[1].from = sfd;
		for (int i = 0; i < 2; i++) {
			c->d[i].dec = neg_decoder_new();
			c->d[i].cap = malloc(MITM_CAPTURE_MAX);
		}
		if (c->d[0].dec == NULL || c->d[1].dec == NULL || c->d[0].cap == NULL ||
		    c->d[1].cap == NULL || pthread_create(&c->thread, NULL, mconn_main, c) != 0) {
			for (int i = 0; i < 2; i++) {
				neg_decoder_free(c->d[i].dec);
				free(c->d[i].cap);
			}
			close(cfd);
			close(sfd);
			free(c);
			continue;
		}
		pthread_mutex_lock(&m->mu);
		m->conns[m->n++] = c;
		pthread_mutex_unlock(&m->mu);
	}
	return NULL;
}

struct mitm *
mitm_start(int target_port, mitm_edit_fn fn, void *arg, int flags)
{
	return mitm_start_at(htonl(INADDR_LOOPBACK), htonl(INADDR_LOOPBACK), target_port, fn, arg,
			     flags);
}

struct mitm *
mitm_start_at(uint32_t listen_addr, uint32_t target_addr, int target_port, mitm_edit_fn fn,
	      void *arg, int flags)
{
	struct mitm *m = calloc(1, sizeof(*m));

	if (m == NULL)
		return NULL;
	m->target = target_port;
	m->target_addr = target_addr;
	m->fn = fn;
	m->arg = arg;
	m->flags = flags;
	pthread_mutex_init(&m->mu, NULL);
	m->lfd = listen_at(listen_addr, 0, &m->port);
	if (m->lfd < 0)
		goto fail;
	if (pthread_create(&m->thread, NULL, mitm_main, m) != 0)
		goto fail;
	return m;
fail:
	if (m->lfd >= 0)
		close(m->lfd);
	pthread_mutex_destroy(&m->mu);
	free(m);
	return NULL;
}

int
mitm_port(const struct mitm *m)
{
	return m->port;
}

int
mitm_conns(struct mitm *m)
{
	int n;

	pthread_mutex_lock(&m->mu);
	n = m->n;
	pthread_mutex_unlock(&m->mu);
	return n;
}

int
mitm_wait_conns(struct mitm *m, int n, int timeout_ms)
{
	int64_t end = h_now_ms() + timeout_ms;

	while (mitm_conns(m) < n) {
		if (h_now_ms() >= end)
			return -1;
		h_sleep_ms(10);
	}
	return 0;
}

static struct mconn *
mitm_conn(struct mitm *m, int conn)
{
	struct mconn *c = NULL;

	pthread_mutex_lock(&m->mu);
	if (conn >= 0 && conn < m->n)
		c = m->conns[conn];
	pthread_mutex_unlock(&m->mu);
	return c;
}

const uint8_t *
mitm_bytes(struct mitm *m, int conn, enum mitm_dir dir, size_t *len)
{
	struct mconn *c = mitm_conn(m, conn);

	*len = 0;
	if (c == NULL)
		return NULL;
	pthread_mutex_lock(&m->mu);
	*len = c->d[dir].cap_len;
	pthread_mutex_unlock(&m->mu);
	return c->d[dir].cap;
}

size_t
mitm_neg_len(struct mitm *m, int conn, enum mitm_dir dir)
{
	struct mconn *c = mitm_conn(m, conn);
	size_t n;

	if (c == NULL)
		return 0;
	pthread_mutex_lock(&m->mu);
	n = c->d[dir].neg_len;
	pthread_mutex_unlock(&m->mu);
	return n;
}

int
mitm_inject(struct mitm *m, int conn, enum mitm_dir dir, const void *p, size_t n)
{
	struct mconn *c = mitm_conn(m, conn);
	int rc = -1;

	if (c == NULL)
		return -1;
	pthread_mutex_lock(&m->mu);
	if (!c->closed && c->inj_len[dir] + n <= sizeof(c->inj[dir])) {
		memcpy(c->inj[dir] + c->inj_len[dir], p, n);
		c->inj_len[dir] += n;
		rc = 0;
	}
	pthread_mutex_unlock(&m->mu);
	return rc;
}

int
mitm_bind_swapped(struct mitm *m, int conn)
{
	struct mconn *c = mitm_conn(m, conn);
	int s;

	if (c == NULL)
		return 0;
	pthread_mutex_lock(&m->mu);
	s = c->swapped;
	pthread_mutex_unlock(&m->mu);
	return s;
}

int
mitm_closed(struct mitm *m, int conn)
{
	struct mconn *c = mitm_conn(m, conn);
	int s;

	if (c == NULL)
		return -1;
	pthread_mutex_lock(&m->mu);
	s = c->closed;
	pthread_mutex_unlock(&m->mu);
	return s;
}

int
mitm_wait_closed(struct mitm *m, int conn, int timeout_ms)
{
	int64_t end = h_now_ms() + timeout_ms;

	while (mitm_closed(m, conn) != 1) {
		if (h_now_ms() >= end)
			return -1;
		h_sleep_ms(10);
	}
	return 0;
}

void
mitm_stop(struct mitm *m)
{
	int i;

	if (m == NULL)
		return;
	m->stop = 1;
	pthread_join(m->thread, NULL);
	for (i = 0; i < m->n; i++) {
		struct mconn *c = m->conns[i];

		pthread_join(c->thread, NULL);
		neg_decoder_free(c->d[0].dec);
		neg_decoder_free(c->d[1].dec);
		free(c->d[0].cap);
		free(c->d[1].cap);
		free(c);
	}
	close(m->lfd);
	pthread_mutex_destroy(&m->mu);
	free(m);
}

void
mitm_strip_offer(struct mitm_edit *e, void *arg)
{
	(void)arg;
	if (e->dir == MITM_C2S)
		e->msg.params.tls_mode = TLS_MODE_OFF;
}

static uint16_t
last_tls13_suite(const struct neg_params *p)
{
	uint16_t id = 0;

	for (int i = 0; i < p->n_ciphers; i++) {
		const struct cipher_info *c = cipher_by_id(p->ciphers[i]);

		if (c != NULL && c->version == TLSV_1_3)
			id = c->id;
	}
	return id;
}

void
mitm_one_cipher(struct mitm_edit *e, void *arg)
{
	struct neg_params *p = &e->msg.params;

	(void)arg;
	if (e->dir == MITM_S2C && (e->conn == 0 || e->other == NULL ||
				   e->msg.type != NEG_DECISION))
		return;
	p->ciphers[0] = last_tls13_suite(e->dir == MITM_C2S ? p : &e->other->params);
	p->n_ciphers = 1;
	if (e->dir == MITM_S2C)
		policy_decide(&e->other->params, p, &e->msg.outcome);
}

/* --- building messages ------------------------------------------------- */

void
fake_params(struct neg_params *p, const char *node, uint8_t mode)
{
	memset(p, 0, sizeof(*p));
	snprintf(p->node, sizeof(p->node), "%s", node);
	p->tls_mode = mode;
	p->tls_min = p->tls_max = TLSV_1_3;
	p->n_ciphers = 3;
	p->ciphers[0] = 0x1301;
	p->ciphers[1] = 0x1302;
	p->ciphers[2] = 0x1303;
	p->max_streams = 256;
	p->window = 256 * 1024;
	p->max_frame = 16384;
	p->keepalive_ms = 0;
	if (getrandom(p->nonce, sizeof(p->nonce), 0) != sizeof(p->nonce))
		memset(p->nonce, 0x5a, sizeof(p->nonce));
}

int
fake_offer(const struct neg_params *p, uint8_t *out, size_t cap)
{
	struct neg_msg m;

	neg_msg_init(&m, NEG_OFFER);
	m.params = *p;
	return neg_encode(&m, out, cap);
}

int
fake_decision(const struct neg_params *offer, const struct neg_params *relay,
	      uint8_t *out, size_t cap)
{
	struct neg_msg m;

	neg_msg_init(&m, NEG_DECISION);
	m.params = *relay;
	policy_decide(offer, relay, &m.outcome);
	if (m.outcome.result == NEG_RESULT_REFUSE)
		return -1;
	return neg_encode(&m, out, cap);
}

int
fake_refuse(uint16_t reason, const char *text, uint8_t *out, size_t cap)
{
	struct neg_msg m;

	neg_msg_refusal(&m, "relay", reason, text);
	return neg_encode(&m, out, cap);
}

int
fake_frames(const char *service, const char *data, uint8_t *out, size_t cap)
{
	static const uint8_t zero[FRAME_BIND_LEN];
	int a, b, c;

	a = frame_encode_bind(out, cap, zero);
	if (a < 0)
		return -1;
	b = frame_encode_open(out + a, cap - (size_t)a, 1, service);
	if (b < 0)
		return -1;
	c = frame_encode_data(out + a + b, cap - (size_t)(a + b), 1,
			      (const uint8_t *)data, strlen(data), 0);
	if (c < 0)
		return -1;
	return a + b + c;
}

static const uint32_t sha_k[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1,
	0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
	0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
	0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
	0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
	0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
	0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
	0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
	0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROR(x, n) ((x) >> (n) | (x) << (32 - (n)))

static void
sha_block(uint32_t h[8], const uint8_t p[64])
{
	uint32_t w[64], v[8], t1, t2;
	int i;

	for (i = 0; i < 16; i++)
		w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
		       (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
	for (; i < 64; i++)
		w[i] = w[i - 16] + (ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3)) +
		       w[i - 7] + (ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10));
	memcpy(v, h, sizeof(v));
	for (i = 0; i < 64; i++) {
		t1 = v[7] + (ROR(v[4], 6) ^ ROR(v[4], 11) ^ ROR(v[4], 25)) +
		     ((v[4] & v[5]) ^ (~v[4] & v[6])) + sha_k[i] + w[i];
		t2 = (ROR(v[0], 2) ^ ROR(v[0], 13) ^ ROR(v[0], 22)) +
		     ((v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]));
		memmove(v + 1, v, 7 * sizeof(v[0]));
		v[4] += t1;
		v[0] = t1 + t2;
	}
	for (i = 0; i < 8; i++)
		h[i] += v[i];
}

void
fake_sha256(const void *a, size_t alen, const void *b, size_t blen, uint8_t out[32])
{
	uint32_t h[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
			  0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };
	uint8_t blk[64];
	size_t fill = 0, total, i;
	const uint8_t *parts[2] = { a, b };
	size_t lens[2] = { alen, b != NULL ? blen : 0 };
	int k;

	total = lens[0] + lens[1];
	for (k = 0; k < 2; k++)
		for (i = 0; i < lens[k]; i++) {
			blk[fill++] = parts[k][i];
			if (fill == 64) {
				sha_block(h, blk);
				fill = 0;
			}
		}
	blk[fill++] = 0x80;
	if (fill > 56) {
		memset(blk + fill, 0, 64 - fill);
		sha_block(h, blk);
		fill = 0;
	}
	memset(blk + fill, 0, 56 - fill);
	for (i = 0; i < 8; i++)
		blk[56 + i] = (uint8_t)((uint64_t)total * 8 >> (56 - 8 * i));
	sha_block(h, blk);
	for (i = 0; i < 8; i++) {
		out[4 * i] = (uint8_t)(h[i] >> 24);
		out[4 * i + 1] = (uint8_t)(h[i] >> 16);
		out[4 * i + 2] = (uint8_t)(h[i] >> 8);
		out[4 * i + 3] = (uint8_t)h[i];
	}
}

/* --- a fake gateway ------------------------------------------------------ */

int
fake_read_neg(int fd, struct neg_msg *msg, int timeout_ms)
{
	struct neg_decoder *dec = neg_decoder_new();
	int64_t end = h_now_ms() + timeout_ms;
	int rc = 0;

	if (dec == NULL)
		return -1;
	while (h_now_ms() < end) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		uint8_t b;
		size_t used;
		enum neg_status st;
		ssize_t n;

		if (poll(&pfd, 1, POLL_MS) <= 0)
			continue;
		/* One byte at a time: nothing after the message is taken. */
		n = recv(fd, &b, 1, 0);
		if (n <= 0)
			break;
		st = neg_decoder_feed(dec, &b, 1, &used);
		if (st == NEG_FAIL) {
			rc = -1;
			break;
		}
		if (st == NEG_DONE) {
			if (msg != NULL)
				*msg = *neg_decoder_msg(dec);
			rc = 1;
			break;
		}
	}
	neg_decoder_free(dec);
	return rc;
}

size_t
fake_send_slowly(int fd, const void *p, size_t n, int gap_ms)
{
	const uint8_t *b = p;
	size_t i;

	for (i = 0; i < n; i++) {
		struct pollfd pfd = { fd, POLLIN, 0 };

		if (send(fd, b + i, 1, MSG_NOSIGNAL) != 1)
			break;
		/* Sleep by polling, so that a close ends the wait. */
		if (poll(&pfd, 1, gap_ms) > 0) {
			uint8_t tmp[256];

			if (recv(fd, tmp, sizeof(tmp), MSG_DONTWAIT) <= 0) {
				i++;
				break;
			}
		}
	}
	return i;
}

long
fake_wait_close(int fd, int timeout_ms)
{
	int64_t end = h_now_ms() + timeout_ms;
	long got = 0;

	while (h_now_ms() < end) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		uint8_t buf[4096];
		ssize_t n;

		if (poll(&pfd, 1, POLL_MS) <= 0)
			continue;
		n = recv(fd, buf, sizeof(buf), 0);
		if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
			return got;
		if (n > 0)
			got += n;
	}
	return -1;
}

int
fd_count(pid_t pid)
{
	char path[64];
	DIR *d;
	struct dirent *e;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	d = opendir(path);
	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* --- a fake relay ---------------------------------------------------------- */

struct fconn {
	struct fake_relay *fr;
	int idx, fd;
	pthread_t thread;
	int64_t accepted_at;
	int got_offer, closed;
	uint8_t after[65536];
	size_t after_len;
};

struct fake_relay {
	int lfd, port;
	fake_relay_fn fn;
	void *arg;
	pthread_t thread;
	pthread_mutex_t mu;
	volatile int stop;
	int n;
	struct fconn *conns[MITM_CONNS_MAX];
};

static void
fconn_record(struct fconn *c, const uint8_t *p, size_t n)
{
	pthread_mutex_lock(&c->fr->mu);
	if (c->after_len + n <= sizeof(c->after)) {
		memcpy(c->after + c->after_len, p, n);
		c->after_len += n;
	}
	pthread_mutex_unlock(&c->fr->mu);
}

/* Sends the answer, slowly if asked.  -1 once the connection is over. */
static int
fconn_answer(struct fconn *c, const struct fake_answer *a)
{
	size_t i;

	if (a->gap_ms <= 0)
		return send_all(c->fd, a->bytes, a->len);
	for (i = 0; i < a->len && !c->fr->stop; i++) {
		struct pollfd pfd = { c->fd, POLLIN, 0 };

		if (send(c->fd, a->bytes + i, 1, MSG_NOSIGNAL) != 1)
			return -1;
		if (poll(&pfd, 1, a->gap_ms) > 0) {
			uint8_t buf[4096];
			ssize_t n = recv(c->fd, buf, sizeof(buf), 0);

			if (n <= 0)
				return -1;
			fconn_record(c, buf, (size_t)n);
		}
	}
	return 0;
}

static void *
fconn_main(void *arg)
{
	struct fconn *c = arg;
	struct fake_relay *fr = c->fr;
	struct fake_answer *a = calloc(1, sizeof(*a));
	struct neg_decoder *dec = neg_decoder_new();
	int answered = 0, offer_done = 0;
	uint8_t offer[NEG_MAX_LEN];
	size_t offer_len = 0;

	if (a == NULL || dec == NULL)
		goto done;
	fr->fn(c->idx, NULL, a, fr->arg);
	if (a->len > 0) {
		answered = 1;
		if (fconn_answer(c, a) < 0 || a->close_after)
			goto done;
	}
	while (!fr->stop) {
		struct pollfd pfd = { c->fd, POLLIN, 0 };
		uint8_t buf[4096];
		size_t used = 0;
		ssize_t n;

		if (poll(&pfd, 1, POLL_MS) <= 0)
			continue;
		n = recv(c->fd, buf, sizeof(buf), 0);
		if (n <= 0)
			break;
		if (!offer_done) {
			enum neg_status st = neg_decoder_feed(dec, buf, (size_t)n, &used);

			if (offer_len + used <= sizeof(offer))
				memcpy(offer + offer_len, buf, used);
			offer_len += used;

			if (st == NEG_NEED_MORE)
				continue;
			offer_done = 1;
			pthread_mutex_lock(&fr->mu);
			c->got_offer = st == NEG_DONE;
			if (st != NEG_DONE)
				used = 0;
			pthread_mutex_unlock(&fr->mu);
			if (!answered) {
				answered = 1;
				memset(a, 0, sizeof(*a));
				if (st == NEG_DONE) {
					a->offer = offer;
					a->offer_len = offer_len;
				}
				fr->fn(c->idx, st == NEG_DONE ? neg_decoder_msg(dec) : NULL,
				       a, fr->arg);
				if (a->len > 0 && fconn_answer(c, a) < 0)
					break;
				if (a->close_after)
					break;
			}
		}
		if ((size_t)n > used)
			fconn_record(c, buf + used, (size_t)n - used);
	}
done:
	close(c->fd);
	pthread_mutex_lock(&fr->mu);
	c->closed = 1;
	pthread_mutex_unlock(&fr->mu);
	neg_decoder_free(dec);
	free(a);
	return NULL;
}

static void *
fake_relay_main(void *arg)
{
	struct fake_relay *fr = arg;

	while (!fr->stop) {
		struct fconn *c;
		int fd = accept_poll(fr->lfd);

		if (fd < 0)
			continue;
		c = calloc(1, sizeof(*c));
		if (c == NULL || fr->n >= MITM_CONNS_MAX) {
			close(fd);
			free(c);
			continue;
		}
		c->fr = fr;
		c->fd = fd;
		c->idx = fr->n;
		c->accepted_at = h_now_ms();
		if (pthread_create(&c->thread, NULL, fconn_main, c) != 0) {
			close(fd);
			free(c);
			continue;
		}
		pthread_mutex_lock(&fr->mu);
		fr->conns[fr->n++] = c;
		pthread_mutex_unlock(&fr->mu);
	}
	return NULL;
}

struct fake_relay *
fake_relay_start(fake_relay_fn fn, void *arg)
{
	struct fake_relay *fr = calloc(1, sizeof(*fr));

	if (fr == NULL)
		return NULL;
	fr->fn = fn;
	fr->arg = arg;
	pthread_mutex_init(&fr->mu, NULL);
	fr->lfd = listen_on(0, &fr->port);
	if (fr->lfd < 0)
		goto fail;
	if (pthread_create(&fr->thread, NULL, fake_relay_main, fr) != 0)
		goto fail;
	return fr;
fail:
	if (fr->lfd >= 0)
		close(fr->lfd);
	pthread_mutex_destroy(&fr->mu);
	free(fr);
	return NULL;
}

int
fake_relay_port(const struct fake_relay *fr)
{
	return fr->port;
}

int
fake_relay_conns(struct fake_relay *fr)
{
	int n;

	pthread_mutex_lock(&fr->mu);
	n = fr->n;
	pthread_mutex_unlock(&fr->mu);
	return n;
}

int
fake_relay_wait_conns(struct fake_relay *fr, int n, int timeout_ms)
{
	int64_t end = h_now_ms() + timeout_ms;

	while (fake_relay_conns(fr) < n) {
		if (h_now_ms() >= end)
			return -1;
		h_sleep_ms(10);
	}
	return 0;
}

static struct fconn *
fake_relay_conn(struct fake_relay *fr, int conn)
{
	struct fconn *c = NULL;

	pthread_mutex_lock(&fr->mu);
	if (conn >= 0 && conn < fr->n)
		c = fr->conns[conn];
	pthread_mutex_unlock(&fr->mu);
	return c;
}

int64_t
fake_relay_accepted_at(struct fake_relay *fr, int conn)
{
	struct fconn *c = fake_relay_conn(fr, conn);

	return c == NULL ? -1 : c->accepted_at;
}

const uint8_t *
fake_relay_after_offer(struct fake_relay *fr, int conn, size_t *len)
{
	struct fconn *c = fake_relay_conn(fr, conn);

	*len = 0;
	if (c == NULL)
		return NULL;
	pthread_mutex_lock(&fr->mu);
	*len = c->after_len;
	pthread_mutex_unlock(&fr->mu);
	return c->after;
}

int
fake_relay_got_offer(struct fake_relay *fr, int conn)
{
	struct fconn *c = fake_relay_conn(fr, conn);
	int v;

	if (c == NULL)
		return -1;
	pthread_mutex_lock(&fr->mu);
	v = c->got_offer;
	pthread_mutex_unlock(&fr->mu);
	return v;
}

int
fake_relay_closed(struct fake_relay *fr, int conn)
{
	struct fconn *c = fake_relay_conn(fr, conn);
	int v;

	if (c == NULL)
		return 0;
	pthread_mutex_lock(&fr->mu);
	v = c->closed;
	pthread_mutex_unlock(&fr->mu);
	return v;
}

void
fake_relay_stop(struct fake_relay *fr)
{
	int i;

	if (fr == NULL)
		return;
	fr->stop = 1;
	pthread_join(fr->thread, NULL);
	for (i = 0; i < fr->n; i++) {
		pthread_join(fr->conns[i]->thread, NULL);
		free(fr->conns[i]);
	}
	close(fr->lfd);
	pthread_mutex_destroy(&fr->mu);
	free(fr);
}

/* --- a witness backend ------------------------------------------------------- */

struct witness {
	int lfd, port;
	pthread_t thread;
	pthread_mutex_t mu;
	volatile int stop;
	int conns;
	size_t bytes;
};

static void *
witness_main(void *arg)
{
	struct witness *w = arg;
	struct pollfd pfd[MITM_CONNS_MAX + 1];
	int n = 0, i;

	while (!w->stop) {
		pfd[0].fd = w->lfd;
		pfd[0].events = POLLIN;
		for (i = 0; i <= n; i++)
			pfd[i].revents = 0;
		if (poll(pfd, (nfds_t)n + 1, POLL_MS) <= 0)
			continue;
		if (pfd[0].revents & POLLIN) {
			int fd = accept4(w->lfd, NULL, NULL, SOCK_CLOEXEC);

			if (fd >= 0 && n < MITM_CONNS_MAX) {
				n++;
				pfd[n].fd = fd;
				pfd[n].events = POLLIN;
				pfd[n].revents = 0;
				pthread_mutex_lock(&w->mu);
				w->conns++;
				pthread_mutex_unlock(&w->mu);
			} else if (fd >= 0) {
				close(fd);
			}
		}
		for (i = 1; i <= n; i++) {
			uint8_t buf[16384];
			ssize_t r;

			if (pfd[i].fd < 0 || pfd[i].revents == 0)
				continue;
			r = recv(pfd[i].fd, buf, sizeof(buf), 0);
			/* Counted before the echo, so that a client that has
			 * its echo back reads a count that includes it. */
			if (r > 0) {
				pthread_mutex_lock(&w->mu);
				w->bytes += (size_t)r;
				pthread_mutex_unlock(&w->mu);
			}
			if (r <= 0 || send_all(pfd[i].fd, buf, (size_t)r) < 0) {
				close(pfd[i].fd);
				pfd[i].fd = -1;
				continue;
			}
		}
	}
	for (i = 1; i <= n; i++)
		if (pfd[i].fd >= 0)
			close(pfd[i].fd);
	return NULL;
}

struct witness *
witness_start(int port)
{
	struct witness *w = calloc(1, sizeof(*w));

	if (w == NULL)
		return NULL;
	pthread_mutex_init(&w->mu, NULL);
	w->lfd = listen_on(port, &w->port);
	if (w->lfd < 0 || pthread_create(&w->thread, NULL, witness_main, w) != 0) {
		if (w->lfd >= 0)
			close(w->lfd);
		pthread_mutex_destroy(&w->mu);
		free(w);
		return NULL;
	}
	return w;
}

int
witness_conns(struct witness *w)
{
	int n;

	pthread_mutex_lock(&w->mu);
	n = w->conns;
	pthread_mutex_unlock(&w->mu);
	return n;
}

size_t
witness_bytes(struct witness *w)
{
	size_t n;

	pthread_mutex_lock(&w->mu);
	n = w->bytes;
	pthread_mutex_unlock(&w->mu);
	return n;
}

void
witness_stop(struct witness *w)
{
	if (w == NULL)
		return;
	w->stop = 1;
	pthread_join(w->thread, NULL);
	close(w->lfd);
	pthread_mutex_destroy(&w->mu);
	free(w);
}
