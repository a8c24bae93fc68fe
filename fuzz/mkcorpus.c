/*
 * Writes the generated seed corpus: negotiation messages for fuzz_neg
 * and BIND-first frame sequences for fuzz_mux (layout in fuzz_mux.h).
 * Usage: fuzz_mkcorpus DIR  (writes DIR/neg/NAME and DIR/mux/NAME).
 * The output is committed in fuzz/corpus/; rerun only to change seeds.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "frame.h"
#include "fuzz_mux.h"
#include "neg.h"

static const char *outdir;

static void
put(const char *target, const char *name, const uint8_t *p, size_t n)
{
	char path[512];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", outdir, target);
	if (mkdir(path, 0755) != 0 && errno != EEXIST) {
		perror(path);
		exit(1);
	}
	snprintf(path, sizeof(path), "%s/%s/%s", outdir, target, name);
	fp = fopen(path, "wb");
	if (!fp || fwrite(p, 1, n, fp) != n || fclose(fp) != 0) {
		perror(path);
		exit(1);
	}
}

/* ---- negotiation messages ---- */

static void
params(struct neg_params *p, const char *node, uint8_t mode)
{
	static const uint16_t ids[] = { 0x1301, 0x1302, 0x1303, 0xC02F };

	memset(p, 0, sizeof(*p));
	snprintf(p->node, sizeof(p->node), "%s", node);
	p->tls_mode = mode;
	p->tls_min = TLSV_1_2;
	p->tls_max = TLSV_1_3;
	p->n_ciphers = 4;
	memcpy(p->ciphers, ids, sizeof(ids));
	p->cert_present = 1;
	p->cert_want = CERT_WANT_OPTIONAL;
	p->max_streams = 16384;
	p->window = 262144;
	p->max_frame = 16384;
	p->keepalive_ms = 15000;
	for (int i = 0; i < NEG_NONCE_LEN; i++)
		p->nonce[i] = (uint8_t)(0x11 * i);
}

static int
enc(const struct neg_msg *m, uint8_t *out)
{
	int n = neg_encode(m, out, NEG_MAX_LEN);

	if (n < 0) {
		fprintf(stderr, "mkcorpus: cannot encode a seed\n");
		exit(1);
	}
	return n;
}

static void
neg_seeds(void)
{
	uint8_t b[NEG_MAX_LEN + 64];
	struct neg_msg m;
	int n;

	memset(&m, 0, sizeof(m));
	m.type = NEG_OFFER;
	m.ver_min = m.ver_max = 1;
	params(&m.params, "gw1", TLS_MODE_PREFER);
	n = enc(&m, b);
	put("neg", "offer", b, (size_t)n);
	/* Trailing bytes after the message; the last byte splits at 20. */
	memcpy(b + n, "\x16\x03\x01\x00\x14", 5);
	put("neg", "offer-trailing", b, (size_t)n + 5);

	/* An unknown non-critical field is skipped; a critical one fails. */
	n = enc(&m, b);
	memcpy(b + n, "\x00\x63\x00\x03xyz", 7);
	b[12] = (uint8_t)((n + 7 - NEG_HDR_LEN) >> 8);
	b[13] = (uint8_t)(n + 7 - NEG_HDR_LEN);
	put("neg", "offer-unknown-field", b, (size_t)n + 7);
	b[n] = 0x80;
	put("neg", "offer-unknown-critical", b, (size_t)n + 7);

	/* The link-ack capability, and a future bit. */
	m.params.flow_caps = NEG_FLOW_LINK_ACK | 0x100;
	n = enc(&m, b);
	put("neg", "offer-flow", b, (size_t)n);
	m.params.flow_caps = 0;

	m.params.n_ciphers = 0;
	m.params.tls_mode = TLS_MODE_OFF;
	m.params.keepalive_ms = 0;
	m.ver_max = 7;
	n = enc(&m, b);
	put("neg", "offer-off-v1-7", b, (size_t)n);

	memset(&m, 0, sizeof(m));
	m.type = NEG_DECISION;
	m.ver_min = m.ver_max = 1;
	params(&m.params, "relay", TLS_MODE_REQUIRE);
	m.outcome.result = NEG_RESULT_TLS;
	m.outcome.reason = NEG_R_TLS_AGREED;
	m.outcome.tls_min = TLSV_1_3;
	m.outcome.tls_max = TLSV_1_3;
	m.outcome.n_ciphers = 2;
	m.outcome.ciphers[0] = 0x1302;
	m.outcome.ciphers[1] = 0x1301;
	snprintf(m.text, sizeof(m.text), "welcome");
	n = enc(&m, b);
	put("neg", "decision-tls", b, (size_t)n);

	m.params.tls_mode = TLS_MODE_OFF;
	m.outcome.result = NEG_RESULT_PLAINTEXT;
	m.outcome.reason = NEG_R_ACCEPTOR_OFF;
	m.outcome.tls_min = m.outcome.tls_max = 0;
	m.outcome.n_ciphers = 0;
	m.text[0] = '\0';
	n = enc(&m, b);
	put("neg", "decision-plain", b, (size_t)n);

	memset(&m, 0, sizeof(m));
	m.type = NEG_REFUSE;
	m.ver_min = m.ver_max = 1;
	snprintf(m.params.node, sizeof(m.params.node), "relay-1");
	m.outcome.result = NEG_RESULT_REFUSE;
	m.outcome.reason = NEG_R_REQUIRED_BY_ACCEPTOR;
	snprintf(m.text, sizeof(m.text), "tls off");
	n = enc(&m, b);
	put("neg", "refuse", b, (size_t)n);
	m.params.node[0] = '\0';
	m.text[0] = '\0';
	m.outcome.reason = NEG_R_BUSY;
	n = enc(&m, b);
	put("neg", "refuse-bare", b, (size_t)n);

	put("neg", "tls-clienthello",
	    (const uint8_t *)"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11);
	put("neg", "http-get", (const uint8_t *)"GET / HTTP/1.1\r\n\r\n", 18);
}

/* ---- mux inputs ---- */

struct mb {
	uint8_t p[8192];
	size_t n;
};

static void
add(struct mb *b, int len)
{
	if (len < 0) {
		fprintf(stderr, "mkcorpus: cannot encode a frame\n");
		exit(1);
	}
	b->n += (size_t)len;
}

static void
mb_start_flow(struct mb *b, uint8_t bits, uint8_t flow,
	      const uint8_t *script, uint8_t k)
{
	uint8_t hash[FRAME_BIND_LEN];

	b->n = 0;
	b->p[b->n++] = bits;
	b->p[b->n++] = flow;
	b->p[b->n++] = k;
	memcpy(b->p + b->n, script, k);
	b->n += k;
	for (int i = 0; i < FRAME_BIND_LEN; i++)
		hash[i] = FM_BIND_BYTE(i);
	add(b, frame_encode_bind(b->p + b->n, sizeof(b->p) - b->n, hash));
}

static void
mb_start(struct mb *b, uint8_t bits, const uint8_t *script, uint8_t k)
{
	mb_start_flow(b, bits, 0, script, k);
}

#define ROOM(b) ((b)->p + (b)->n), (sizeof((b)->p) - (b)->n)

/* A peer stream's life: open, data, window, ping, data with FIN. */
static void
mb_stream(struct mb *b, uint32_t id, const char *svc, size_t len)
{
	static uint8_t data[2048];

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 13);
	add(b, frame_encode_open(ROOM(b), id, svc));
	add(b, frame_encode_data(ROOM(b), id, data, len, 0));
	add(b, frame_encode_window(ROOM(b), id, 4096));
	add(b, frame_encode_ping(ROOM(b), 0x0102030405060708ull, 0));
	add(b, frame_encode_data(ROOM(b), id, data, len / 2, 1));
}

static void
mux_seeds(void)
{
	static const uint8_t all[] = { FM_STEP(FM_FEED_ALL, FM_ACT_SEND_BIG) };
	static const uint8_t mixed[] = {
		FM_STEP(6, FM_ACT_SEND_BIG), FM_STEP(3, FM_ACT_OPEN),
		FM_STEP(1, FM_ACT_NONE), FM_STEP(9, FM_ACT_CONSUME),
		FM_STEP(4, FM_ACT_SEND_SMALL), FM_STEP(2, FM_ACT_PING),
	};
	static const uint8_t bytewise[] = { FM_STEP(0, FM_ACT_SEND_SMALL) };
	static const uint8_t closing[] = {
		FM_STEP(5, FM_ACT_OPEN), FM_STEP(5, FM_ACT_SEND_BIG),
		FM_STEP(5, FM_ACT_RESET), FM_STEP(5, FM_ACT_GOAWAY),
		FM_STEP(5, FM_ACT_CONSUME),
	};
	struct mb b;

	/* Acceptor (relay side): the peer opens odd ids. */
	mb_start(&b, 0, all, sizeof(all));
	mb_stream(&b, 1, "echo", 300);
	put("mux", "acceptor-stream", b.p, b.n);

	mb_start(&b, FM_EAGER | FM_CLOSE_ALL, mixed, sizeof(mixed));
	mb_stream(&b, 1, "echo", 1000);
	mb_stream(&b, 3, "rev", 10);
	add(&b, frame_encode_open(ROOM(&b), 5, "xdeny"));
	add(&b, frame_encode_reset(ROOM(&b), 3, MUX_C_CONN_RESET));
	add(&b, frame_encode_goaway(ROOM(&b), 0, MUX_C_SHUTDOWN, "bye"));
	put("mux", "acceptor-mixed", b.p, b.n);

	mb_start(&b, FM_SMALL_FRAME | FM_SMALL_LWIN | FM_SMALL_PWIN | FM_FEW_LOCAL,
		 closing, sizeof(closing));
	mb_stream(&b, 1, "a", 1024);
	mb_stream(&b, 3, "b", 200);
	mb_stream(&b, 5, "c", 10);
	add(&b, frame_encode_data(ROOM(&b), 1, (const uint8_t *)"late", 4, 0));
	put("mux", "acceptor-small-windows", b.p, b.n);

	/* Dialer (gateway side): the peer opens even ids. */
	mb_start(&b, FM_DIALER, mixed, sizeof(mixed));
	mb_stream(&b, 2, "echo", 100);
	add(&b, frame_encode_window(ROOM(&b), 1, 100000));
	add(&b, frame_encode_ping(ROOM(&b), 7, 1));
	put("mux", "dialer-stream", b.p, b.n);

	mb_start(&b, FM_DIALER | FM_FEW_PEER | FM_CLOSE_ALL, bytewise,
		 sizeof(bytewise));
	mb_stream(&b, 2, "svc.x-1", 64);
	put("mux", "dialer-bytewise", b.p, b.n);

	mb_start(&b, FM_DIALER | FM_EAGER, closing, sizeof(closing));
	for (uint32_t id = 2; id <= 20; id += 2)
		add(&b, frame_encode_open(ROOM(&b), id, "s"));
	for (uint32_t id = 2; id <= 20; id += 2)
		add(&b, frame_encode_data(ROOM(&b), id, (const uint8_t *)"hi", 2, 1));
	put("mux", "dialer-many-streams", b.p, b.n);

	/* Stream errors: DATA beyond the window, a WINDOW overflowing the
	 * credit, DATA after FIN. */
	static uint8_t kb[1024];
	mb_start(&b, FM_SMALL_LWIN, all, sizeof(all));
	add(&b, frame_encode_open(ROOM(&b), 1, "echo"));
	add(&b, frame_encode_data(ROOM(&b), 1, kb, sizeof(kb), 0));
	add(&b, frame_encode_data(ROOM(&b), 1, kb, 1, 0));
	add(&b, frame_encode_data(ROOM(&b), 1, kb, 5, 1));
	put("mux", "acceptor-over-window", b.p, b.n);

	mb_start(&b, FM_DIALER, all, sizeof(all));
	add(&b, frame_encode_open(ROOM(&b), 2, "echo"));
	add(&b, frame_encode_window(ROOM(&b), 2, 0x7fffffff));
	add(&b, frame_encode_window(ROOM(&b), 2, 1));
	put("mux", "dialer-window-overflow", b.p, b.n);

	mb_start(&b, 0, all, sizeof(all));
	add(&b, frame_encode_open(ROOM(&b), 1, "echo"));
	add(&b, frame_encode_data(ROOM(&b), 1, kb, 10, 1));
	add(&b, frame_encode_data(ROOM(&b), 1, kb, 10, 0));
	put("mux", "acceptor-data-after-fin", b.p, b.n);

	/* Link errors: a first frame that is not BIND, a wrong hash, and a
	 * frame for a stream never opened. */
	b.n = 0;
	b.p[b.n++] = 0;
	b.p[b.n++] = 0;
	b.p[b.n++] = 0;
	add(&b, frame_encode_ping(ROOM(&b), 1, 0));
	put("mux", "no-bind", b.p, b.n);
	mb_start(&b, 0, all, sizeof(all));
	b.p[b.n - 1] ^= 1;
	put("mux", "bind-mismatch", b.p, b.n);
	mb_start(&b, 0, all, sizeof(all));
	add(&b, frame_encode_window(ROOM(&b), 9, 1));
	put("mux", "unknown-stream", b.p, b.n);

	/* Link budget: the peer probes us (answers coalesced), and then
	 * answers our probes so that DATA under the budget flows on. */
	mb_start_flow(&b, FM_EAGER, FF_LINK_ACK | (1 << FF_BUDGET_SHIFT) |
		      FF_ANSWER, mixed, sizeof(mixed));
	mb_stream(&b, 1, "echo", 2000);
	for (uint64_t off = 100; off <= 400; off += 100)
		add(&b, frame_encode_link_ack(ROOM(&b), off, 0));
	mb_stream(&b, 3, "rev", 500);
	put("mux", "acceptor-link-ack", b.p, b.n);

	mb_start_flow(&b, FM_DIALER | FM_SMALL_FRAME, FF_LINK_ACK |
		      (2 << FF_BUDGET_SHIFT) | FF_ANSWER | FF_ANSWER_OLDEST |
		      FF_REBUDGET | FF_SPARSE, closing, sizeof(closing));
	mb_stream(&b, 2, "echo", 1024);
	add(&b, frame_encode_link_ack(ROOM(&b), 7, 0));
	mb_stream(&b, 4, "svc", 100);
	put("mux", "dialer-link-ack-sparse", b.p, b.n);

	/* An answer to nothing is link-fatal; without link_ack both kinds
	 * are skipped. */
	mb_start_flow(&b, 0, FF_LINK_ACK | (3 << FF_BUDGET_SHIFT), all,
		      sizeof(all));
	add(&b, frame_encode_open(ROOM(&b), 1, "echo"));
	add(&b, frame_encode_link_ack(ROOM(&b), 41, 1));
	put("mux", "link-ack-forged-answer", b.p, b.n);
	mb_start_flow(&b, 0, (1 << FF_BUDGET_SHIFT) | FF_ANSWER | FF_SPARSE,
		      mixed, sizeof(mixed));
	mb_stream(&b, 1, "echo", 700);
	add(&b, frame_encode_link_ack(ROOM(&b), 41, 1));
	add(&b, frame_encode_link_ack(ROOM(&b), 42, 0));
	put("mux", "link-ack-not-negotiated", b.p, b.n);
}

int
main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	outdir = argv[1];
	neg_seeds();
	mux_seeds();
	return 0;
}
