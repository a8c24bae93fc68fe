/*
 * End-to-end test helpers: temporary files, child processes, a recording
 * TCP tap and an in-process echo client.  Loopback (127.0.0.1) only.
 * Every wait takes a timeout; nothing here blocks without a bound.
 *
 * The payload generator below is header-only so that tpx-blast can use
 * it without linking harness.c.
 */
#ifndef TLSPLEX_HARNESS_H
#define TLSPLEX_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

/* --- deterministic payloads ------------------------------------------ */

/* A byte stream generator: splitmix64 words, emitted little-endian.
 * The stream depends only on (seed, index), not on how it is chunked. */
struct h_prng {
	uint64_t s;
	uint64_t word;
	unsigned left; /* unused bytes left in word */
};

static inline uint64_t h_splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Starts the stream of client `index` for `seed`. */
static inline void h_prng_init(struct h_prng *p, uint64_t seed, uint64_t index)
{
	uint64_t s = seed;

	p->s = h_splitmix64(&s) ^ (index * 0xd1b54a32d192ed03ULL + index);
	p->word = 0;
	p->left = 0;
}

/* Writes the next n bytes of the stream to buf. */
static inline void h_prng_fill(struct h_prng *p, void *buf, size_t n)
{
	uint8_t *o = buf;

	while (n > 0 && p->left > 0) {
		*o++ = (uint8_t)p->word;
		p->word >>= 8;
		p->left--;
		n--;
	}
	while (n >= 8) {
		uint64_t w = h_splitmix64(&p->s);

		for (int i = 0; i < 8; i++)
			o[i] = (uint8_t)(w >> (8 * i));
		o += 8;
		n -= 8;
	}
	if (n > 0) {
		p->word = h_splitmix64(&p->s);
		p->left = 8;
		while (n > 0) {
			*o++ = (uint8_t)p->word;
			p->word >>= 8;
			p->left--;
			n--;
		}
	}
}

/* Fills buf with the first n bytes client `index` sends for `seed`
 * (the same bytes tpx-blast and h_echo_clients send). */
static inline void h_payload_fill(void *buf, size_t n, uint64_t seed, uint64_t index)
{
	struct h_prng p;

	h_prng_init(&p, seed, index);
	h_prng_fill(&p, buf, n);
}

/* memmem(3) without _GNU_SOURCE: first occurrence of needle in hay, or
 * NULL.  An empty needle matches at hay. */
static inline const void *h_memmem(const void *hay, size_t hlen, const void *needle, size_t nlen)
{
	const uint8_t *h = hay, *n = needle;

	if (nlen == 0)
		return hay;
	if (hay == NULL || nlen > hlen)
		return NULL;
	for (size_t i = 0; i + nlen <= hlen; i++) {
		const uint8_t *c = memchr(h + i, n[0], hlen - nlen + 1 - i);

		if (c == NULL)
			return NULL;
		i = (size_t)(c - h);
		if (memcmp(c, n, nlen) == 0)
			return c;
	}
	return NULL;
}

/* --- paths and files -------------------------------------------------- */

/* $TLSPLEX_BUILD_DIR, or "build". */
const char *h_build_dir(void);
/* $TLSPLEX_SOURCE_DIR, or ".". */
const char *h_source_dir(void);
/* Creates a fresh directory /tmp/tlsplex-test-XXXXXX.  Returns its
 * malloc'd path, or NULL. */
char *h_tmpdir(void);
/* Removes path and everything below it.  Returns 0 or -1. */
int h_rmtree(const char *path);
/* Creates or truncates path with the formatted text.  Returns 0 or -1. */
int h_write_file(const char *path, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Reads the whole file.  Returns a malloc'd NUL-terminated buffer and
 * stores its length (without the NUL) in *len if len is not NULL, or
 * NULL if the file cannot be read. */
char *h_read_file(const char *path, size_t *len);
/* Number of non-overlapping occurrences of needle in the file; 0 when
 * the file does not exist. */
int h_file_count(const char *path, const char *needle);
/* Polls the file every 20 ms until it contains needle.  Returns 0, or
 * -1 after timeout_ms. */
int h_wait_file_contains(const char *path, const char *needle, int timeout_ms);
/* Polls the file every 20 ms until it holds needle more than n times.
 * Returns 0, or -1 after timeout_ms. */
int h_wait_count_above(const char *path, const char *needle, int n, int timeout_ms);

/* --- ports ------------------------------------------------------------ */

/* A TCP port on 127.0.0.1 that was free a moment ago, or -1. */
int h_free_port(void);
/* A blocking, close-on-exec connection to 127.0.0.1:port, or -1. */
int h_connect(int port);
/* Whether some socket listens on TCP port (any local address), judged
 * from /proc/net/tcp{,6} so that no connection is made.  1, 0, or -1
 * when /proc cannot be read. */
int h_port_listening(int port);
/* Polls every 20 ms until the port listens.  Returns 0, or -1 after
 * timeout_ms.  Makes no connection unless /proc is unreadable. */
int h_wait_port(int port, int timeout_ms);

/* --- processes -------------------------------------------------------- */

/* Starts argv[0] (a path; PATH is not searched) with argv, in a new
 * process group, stdin from /dev/null, stdout and stderr appended to
 * log_path (created if needed; NULL keeps the test's own).  Descriptors
 * above 2 are closed in the child, and it gets SIGKILL if the calling
 * thread dies (so a crashed test leaves no daemons).  Returns the pid,
 * or -1 if the fork or the exec failed.  The process is remembered for
 * h_stop_all(). */
pid_t h_spawn(const char *const argv[], const char *log_path);
/* Sends SIGTERM, waits up to timeout_ms, then SIGKILLs the process and
 * its whole process group.  Returns the exit code, 128 + signal number
 * if a signal ended it before the timeout, or -1 if it had to be killed
 * or is not a child.  Any other members of its group are killed too. */
int h_stop(pid_t pid, int timeout_ms);
/* Waits up to timeout_ms for the process to exit by itself.  Returns
 * its status as h_stop() does, or -1 on timeout (it keeps running). */
int h_wait_exit(pid_t pid, int timeout_ms);
/* 1 while the process runs, 0 once it has exited (its status is kept
 * for h_stop/h_wait_exit), -1 if it is not a child we spawned. */
int h_alive(pid_t pid);
/* Stops every process spawned and not yet stopped, 3 s each at most.
 * Call from a Criterion .fini. */
void h_stop_all(void);
/* h_spawn + h_wait_exit; kills the process on timeout.  Returns its
 * status as h_stop() does, or -1. */
int h_run(const char *const argv[], const char *log_path, int timeout_ms);

/* --- the tap: a recording TCP proxy on 127.0.0.1 ---------------------- */

enum tap_dir {
	TAP_C2S = 0, /* from the connecting side to the target */
	TAP_S2C = 1, /* from the target back */
};

#define TAP_CAPTURE_MAX (256u << 20) /* bytes recorded per direction */

struct tap;

/* Listens on 127.0.0.1:listen_port (0 picks a free port, see tap_port)
 * and proxies each accepted connection to 127.0.0.1:target_port from a
 * thread of its own.  Returns NULL on error. */
struct tap *tap_start(int listen_port, int target_port);
/* The port the tap listens on. */
int tap_port(const struct tap *tap);
/* Connections accepted so far; they are numbered from 0 in accept order. */
int tap_conn_count(struct tap *tap);
/* Waits until at least n connections were accepted.  0, or -1 on timeout. */
int tap_wait_conns(struct tap *tap, int n, int timeout_ms);
/* The bytes recorded so far for connection conn in direction dir, with
 * their count in *len.  The pointer stays valid until tap_stop(); later
 * bytes are appended after it.  NULL (and *len 0) if conn does not exist. */
const uint8_t *tap_bytes(struct tap *tap, int conn, enum tap_dir dir, size_t *len);
/* Waits until conn exists and has recorded min_len bytes in dir.
 * Returns 0, or -1 on timeout. */
int tap_wait_bytes(struct tap *tap, int conn, enum tap_dir dir, size_t min_len, int timeout_ms);
/* 1 if more than TAP_CAPTURE_MAX bytes passed in dir (the rest was
 * forwarded, not recorded), 0 if not, -1 if conn does not exist. */
int tap_overflow(struct tap *tap, int conn, enum tap_dir dir);
/* 1 once the tap has closed both sockets of conn, 0 before, -1 if conn
 * does not exist. */
int tap_conn_closed(struct tap *tap, int conn);
/* Arms a one-shot injection for the next connection accepted: after the
 * first complete negotiation message (magic, 14-byte header, body) has
 * been read in direction dir, the tap sends the message and these n
 * bytes in one send() call.  If the stream does not start with the
 * magic, nothing is injected.  n is at most 65536.  Returns 0 or -1. */
int tap_set_inject(struct tap *tap, enum tap_dir dir, const void *bytes, size_t n);
/* Where the injected bytes start in the capture of (conn, dir), or -1
 * if nothing was injected there. */
long tap_inject_offset(struct tap *tap, int conn, enum tap_dir dir);
/* Resets (RST) every connection the tap currently proxies, on both
 * sides; new connections are still accepted.  Returns once done (or
 * after 5 s).  Returns the number of connections reset, or -1. */
int tap_kill(struct tap *tap);
/* While paused the tap neither reads nor writes on existing connections
 * (a silent link); new connections are accepted and held the same way.
 * Takes effect before it returns. */
void tap_set_paused(struct tap *tap, int paused);
/* Stops the thread, closes all sockets and frees the tap and every
 * capture.  tap_stop(NULL) is a no-op. */
void tap_stop(struct tap *tap);

/* --- in-process echo clients ------------------------------------------ */

/* Opens nclients concurrent connections to 127.0.0.1:port; client i
 * sends h_payload_fill(.., bytes, seed, i), half-closes, and reads until
 * EOF; the echo must match exactly.  Returns 0 when every client was
 * verified within timeout_ms overall, else -1 with the failures (one per
 * line, "client 7: mismatch at byte 12345") in err. */
int h_echo_clients(int port, int nclients, size_t bytes, uint64_t seed, int timeout_ms,
		   char *err, size_t errlen);

/* --- time ------------------------------------------------------------- */

/* Milliseconds on the monotonic clock. */
int64_t h_now_ms(void);
/* Sleeps ms milliseconds. */
void h_sleep_ms(int ms);

#endif
