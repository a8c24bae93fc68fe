/*
 * Load: many streams over one link, open/close cycles, a slow consumer
 * and latency beside bulk streams.  The daemons' descriptors and memory
 * are read from /proc.  Sizes come from the environment so that the soak
 * (scripts/soak.sh) runs the same tests at full size:
 *
 *   TLSPLEX_IDLE        idle streams held open at once   (10000)
 *   TLSPLEX_CYCLES      open/echo/close cycles           (20000)
 *   TLSPLEX_SLOW_BYTES  bytes behind the slow consumer   (256 MiB)
 *
 * Memory figures printed here are informative only when the daemons are
 * built without sanitizers.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "pair.h"

#define MIB (1024L * 1024)

/* --- /proc ------------------------------------------------------------ */

/* Open descriptors of pid, or -1. */
static int
fd_count(pid_t pid)
{
	char path[64];
	struct dirent *de;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	d = opendir(path);
	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* The "key: N kB" value in /proc/pid/file, in kB, or -1. */
static long
proc_kb(pid_t pid, const char *file, const char *key)
{
	char path[64], line[256];
	size_t kl = strlen(key);
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	f = fopen(path, "r");
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
			v = strtol(line + kl + 1, NULL, 10);
			break;
		}
	}
	fclose(f);
	return v;
}

static long
pss_kb(pid_t pid)
{
	long v = proc_kb(pid, "smaps_rollup", "Pss");

	cr_assert_geq(v, 0, "cannot read the PSS of %d", (int)pid);
	return v;
}

static long
rss_kb(pid_t pid)
{
	long v = proc_kb(pid, "status", "VmRSS");

	cr_assert_geq(v, 0, "cannot read the RSS of %d", (int)pid);
	return v;
}

/* Waits up to ms for both daemons to hold exactly gw_want and
 * relay_want descriptors; returns 0 when they did. */
static int
wait_fds(int gw_want, int relay_want, int ms, int *gw_got, int *relay_got)
{
	int64_t end = h_now_ms() + ms;

	for (;;) {
		*gw_got = fd_count(P.gw);
		*relay_got = fd_count(P.relay);
		if (*gw_got == gw_want && *relay_got == relay_want)
			return 0;
		if (h_now_ms() >= end)
			return -1;
		h_sleep_ms(50);
	}
}

static long
env_long(const char *name, long dflt)
{
	const char *v = getenv(name);
	char *end;
	long n;

	if (v == NULL || v[0] == '\0')
		return dflt;
	n = strtol(v, &end, 0);
	cr_assert(*end == '\0' && n > 0, "%s must be a positive number, not '%s'", name, v);
	return n;
}

static int
local_port(int fd)
{
	struct sockaddr_in me;
	socklen_t ml = sizeof(me);

	if (getsockname(fd, (struct sockaddr *)&me, &ml) < 0)
		return -1;
	return ntohs(me.sin_port);
}

/* Writes every TCP socket on this host with bytes queued in the kernel
 * (established ones only), for a failure: it shows where a stalled
 * stream's bytes are. */
static void
dump_tcp_queues(void)
{
	FILE *f = fopen("/proc/net/tcp", "r");
	char line[512];
	int shown = 0;

	if (f == NULL)
		return;
	fprintf(stderr, "--- TCP sockets with queued bytes (local -> remote: tx rx) ---\n");
	while (fgets(line, sizeof(line), f) != NULL && shown < 200) {
		unsigned la, lp, ra, rp, st, tx, rx;

		if (sscanf(line, " %*u: %x:%x %x:%x %x %x:%x", &la, &lp, &ra, &rp,
			   &st, &tx, &rx) != 7 || st != 1 || (tx == 0 && rx == 0))
			continue;
		fprintf(stderr, "port %u -> %u: tx %u rx %u\n", lp, rp, tx, rx);
		shown++;
	}
	fclose(f);
}

/* Writes the last 4 KiB of each daemon's log to stderr, for a failure. */
static void
dump_logs(void)
{
	const char *logs[] = { P.gw_log, P.relay_log };

	for (int i = 0; i < 2; i++) {
		size_t len = 0;
		char *text = h_read_file(logs[i], &len);

		fprintf(stderr, "--- last of %s ---\n%s\n", logs[i],
			text == NULL ? "(unreadable)" :
			len > 4096 ? text + len - 4096 : text);
		free(text);
	}
}

/* --- the pair under load ------------------------------------------------ */

static void
load_init(void)
{
	pair_init();
#ifdef __SANITIZE_ADDRESS__
	{
		/* The daemons inherit this: a small quarantine keeps memory
		 * figures about the daemons rather than about freed blocks
		 * held back by AddressSanitizer.  It must fill up during a
		 * warm-up: a stream cycle frees about 1 KiB, and the growth
		 * allowed over the measured cycles is 2 MiB. */
		const char *old = getenv("ASAN_OPTIONS");
		char opts[512];

		snprintf(opts, sizeof(opts), "%s%squarantine_size_mb=1",
			 old != NULL ? old : "", old != NULL && old[0] ? ":" : "");
		setenv("ASAN_OPTIONS", opts, 1);
	}
#endif
}

TestSuite(load, .init = load_init, .fini = pair_fini, .timeout = 3600);

static int
nonblocking_connect(int port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;

	if (fd < 0)
		return -1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 && errno != EINPROGRESS) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Brings the pair up (TLS, through the tap if with_tap) and pushes one
 * small echo through so that what is opened lazily is open. */
static void
pair_up(int with_tap, const char *relay_sections, const char *gw_sections)
{
	char err[1024];

	start_echo("echo");
	if (with_tap)
		start_tap();
	P.echo_extra = "max_clients = 16384\n";
	start_pair_with(TLS_RELAY "max_streams = 16384\n", TLS_GW "max_streams = 16384\n",
			relay_sections, gw_sections);
	wait_up();
	cr_assert_eq(h_echo_clients(P.svc_port, 2, 1000, 1, 10000, err, sizeof(err)), 0,
		     "%s", err);
}

/* --- a: many idle streams over one link ---------------------------------- */

#define IDLE_MSG 16
#define IDLE_INFLIGHT 256

struct idle_conn {
	int fd;
	int state; /* 0 connecting, 1 sending, 2 reading, 3 verified */
	size_t done;
	char msg[IDLE_MSG + 16];
};

Test(load, ten_thousand_idle_streams_over_one_link)
{
	int n = (int)env_long("TLSPLEX_IDLE", 10000);
	struct idle_conn *c = calloc((size_t)n, sizeof(*c));
	struct pollfd *pfds = calloc((size_t)n, sizeof(*pfds));
	int *map = calloc((size_t)n, sizeof(*map));
	int gw_fd0, relay_fd0, gw_fd, relay_fd, next = 0, verified = 0;
	long gw_pss0, relay_pss0, gw_pss, relay_pss;
	int64_t t0, deadline;
	int fails = 0, fresh = -1, fresh_ok = 0;
	char failed[256] = "";
	size_t failed_len = 0;

	cr_assert(c != NULL && pfds != NULL && map != NULL);
	cr_assert_lt(n, 16384, "TLSPLEX_IDLE must stay under max_streams");
	pair_up(1, "", "");
	h_sleep_ms(200);
	gw_fd0 = fd_count(P.gw);
	relay_fd0 = fd_count(P.relay);
	gw_pss0 = pss_kb(P.gw);
	relay_pss0 = pss_kb(P.relay);

	/* At most IDLE_INFLIGHT connections are between connect and a
	 * verified echo at any time, so that no accept queue overflows. */
	t0 = h_now_ms();
	deadline = t0 + 120000;
	while (verified < n && h_now_ms() < deadline) {
		int active = 0, inflight = 0;

		for (int i = 0; i < next; i++)
			if (c[i].state < 3)
				inflight++;
		while (next < n && inflight < IDLE_INFLIGHT) {
			c[next].fd = nonblocking_connect(P.svc_port);
			cr_assert_geq(c[next].fd, 0, "connection %d: %s", next, strerror(errno));
			snprintf(c[next].msg, sizeof(c[next].msg), "idle-%09d", next);
			next++;
			inflight++;
		}
		for (int i = 0; i < next; i++) {
			if (c[i].state == 3)
				continue;
			pfds[active] = (struct pollfd){ .fd = c[i].fd,
				.events = c[i].state == 2 ? POLLIN : POLLOUT };
			map[active++] = i;
		}
		if (poll(pfds, (nfds_t)active, 100) <= 0)
			continue;
		for (int k = 0; k < active; k++) {
			struct idle_conn *ic = &c[map[k]];
			char buf[IDLE_MSG];
			ssize_t r;

			if (pfds[k].revents == 0)
				continue;
			if (ic->state == 0) {
				int e = 0;
				socklen_t el = sizeof(e);

				getsockopt(ic->fd, SOL_SOCKET, SO_ERROR, &e, &el);
				cr_assert_eq(e, 0, "connection %d failed: %s", map[k], strerror(e));
				ic->state = 1;
			}
			if (ic->state == 1) {
				r = send(ic->fd, ic->msg + ic->done, IDLE_MSG - ic->done, MSG_NOSIGNAL);
				cr_assert(r > 0 || errno == EAGAIN, "connection %d: send: %s",
					  map[k], strerror(errno));
				if (r > 0 && (ic->done += (size_t)r) == IDLE_MSG) {
					ic->state = 2;
					ic->done = 0;
				}
				continue;
			}
			r = recv(ic->fd, buf, IDLE_MSG - ic->done, 0);
			cr_assert(r > 0 || (r < 0 && errno == EAGAIN),
				  "connection %d closed or failed after %zu bytes of its echo",
				  map[k], ic->done);
			if (r < 0)
				continue;
			cr_assert_eq(memcmp(buf, ic->msg + ic->done, (size_t)r), 0,
				     "connection %d: the echo differs", map[k]);
			if ((ic->done += (size_t)r) == IDLE_MSG) {
				ic->state = 3;
				verified++;
			}
		}
	}
	cr_assert_eq(verified, n, "only %d of %d streams echoed within 120 s", verified, n);
	fprintf(stderr, "load: %d streams opened and echoed in %lld ms\n", n,
		(long long)(h_now_ms() - t0));
	/* All open and idle: one link carries them all. */
	h_sleep_ms(500);
	cr_assert_eq(tap_conn_count(P.tap), 1, "more than one link was made");
	gw_fd = fd_count(P.gw);
	relay_fd = fd_count(P.relay);
	cr_assert_geq(gw_fd, gw_fd0 + n, "the gateway holds %d descriptors", gw_fd);
	cr_assert_geq(relay_fd, relay_fd0 + n, "the relay holds %d descriptors", relay_fd);
	gw_pss = pss_kb(P.gw);
	relay_pss = pss_kb(P.relay);
	fprintf(stderr,
		"load: %d idle streams: gateway PSS %ld -> %ld kB (%.0f B per stream), "
		"relay PSS %ld -> %ld kB (%.0f B per stream)\n", n, gw_pss0, gw_pss,
		(double)(gw_pss - gw_pss0) * 1024 / n, relay_pss0, relay_pss,
		(double)(relay_pss - relay_pss0) * 1024 / n);
	/* Still alive after idling: a sample of them echoes again.  Every
	 * sampled stream is tried before judging, so that a failure says
	 * whether one stream or the whole link stopped. */
	for (int i = 0; i < n; i += n / 10 > 0 ? n / 10 : 1) {
		int r = echo_once(c[i].fd, "still here", 10000);

		if (r != 0 && fails == 0) {
			fprintf(stderr, "load: idle stream %d (client port %d) did "
				"not echo; ports: gateway service %d, relay link %d, "
				"backend %d\n", i, local_port(c[i].fd), P.svc_port,
				P.relay_port, P.backend_port);
			dump_tcp_queues();
		}

		if (r != 0 && failed_len < sizeof(failed) - 40)
			failed_len += (size_t)snprintf(failed + failed_len,
						       sizeof(failed) - failed_len,
						       " %d (port %d)", i,
						       local_port(c[i].fd));
		fails += r != 0;
	}
	if (fails > 0)
		fresh = connect_port(P.svc_port);
	if (fresh >= 0) {
		fresh_ok = echo_once(fresh, "fresh", 5000) == 0;
		close(fresh);
	}
	for (int i = 0; i < n; i++)
		close(c[i].fd);
	free(c);
	free(pfds);
	free(map);
	if (fails > 0)
		dump_logs();
	cr_assert_eq(fails, 0,
		     "%d sampled idle streams no longer echo (streams%s); a new "
		     "connection %s; daemon logs above", fails, failed,
		     fresh < 0 ? "could not be made" :
		     fresh_ok ? "echoes" : "does not echo either");
	cr_assert_eq(wait_fds(gw_fd0, relay_fd0, 30000, &gw_fd, &relay_fd), 0,
		     "descriptors after closing %d streams: gateway %d (was %d), relay %d (was %d)",
		     n, gw_fd, gw_fd0, relay_fd, relay_fd0);
	cr_assert_eq(tap_conn_count(P.tap), 1);
}

/* --- b: open/close cycles ------------------------------------------------ */

#define CYC_MSG 16

struct cycler {
	int fd;
	int state; /* 0 free, 1 connecting, 2 sending, 3 reading */
	size_t done;
	char msg[CYC_MSG + 16];
};

/* Runs count cycles with `workers` at once: connect, send CYC_MSG bytes,
 * half-close, read the echo to EOF, close.  Every echo must be exact. */
static void
run_cycles(int port, long first, long count, int workers)
{
	struct cycler *w = calloc((size_t)workers, sizeof(*w));
	struct pollfd *pfds = calloc((size_t)workers, sizeof(*pfds));
	long started = 0, finished = 0;
	int64_t last_progress = h_now_ms();

	cr_assert(w != NULL && pfds != NULL);
	while (finished < count) {
		for (int i = 0; i < workers; i++) {
			if (w[i].state != 0 || started == count)
				continue;
			w[i].fd = nonblocking_connect(port);
			cr_assert_geq(w[i].fd, 0, "cycle %ld: connect: %s", first + started,
				      strerror(errno));
			snprintf(w[i].msg, sizeof(w[i].msg), "cyc-%011ld", first + started);
			w[i].state = 1;
			w[i].done = 0;
			started++;
		}
		for (int i = 0; i < workers; i++)
			pfds[i] = (struct pollfd){ .fd = w[i].state ? w[i].fd : -1,
				.events = w[i].state == 3 ? POLLIN : POLLOUT };
		if (poll(pfds, (nfds_t)workers, 100) <= 0) {
			cr_assert_lt(h_now_ms() - last_progress, 10000,
				     "no cycle finished for 10 s (%ld of %ld done)", finished, count);
			continue;
		}
		for (int i = 0; i < workers; i++) {
			struct cycler *c = &w[i];
			char buf[CYC_MSG + 1];
			ssize_t r;

			if (pfds[i].revents == 0)
				continue;
			if (c->state == 1) {
				int e = 0;
				socklen_t el = sizeof(e);

				getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &el);
				cr_assert_eq(e, 0, "cycle: connect failed: %s", strerror(e));
				c->state = 2;
			}
			if (c->state == 2) {
				r = send(c->fd, c->msg + c->done, CYC_MSG - c->done, MSG_NOSIGNAL);
				cr_assert(r > 0 || errno == EAGAIN, "%.*s: send: %s", CYC_MSG,
					  c->msg, strerror(errno));
				if (r > 0 && (c->done += (size_t)r) == CYC_MSG) {
					shutdown(c->fd, SHUT_WR);
					c->state = 3;
					c->done = 0;
				}
				continue;
			}
			r = recv(c->fd, buf, sizeof(buf), 0);
			if (r < 0 && errno == EAGAIN)
				continue;
			cr_assert_geq(r, 0, "%.*s: recv after %zu bytes: %s", CYC_MSG, c->msg,
				      c->done, strerror(errno));
			if (r > 0) {
				cr_assert_leq(c->done + (size_t)r, CYC_MSG, "%.*s: extra data",
					      CYC_MSG, c->msg);
				cr_assert_eq(memcmp(buf, c->msg + c->done, (size_t)r), 0,
					     "%.*s: the echo differs", CYC_MSG, c->msg);
				c->done += (size_t)r;
				continue;
			}
			cr_assert_eq(c->done, CYC_MSG, "%.*s: EOF after %zu bytes", CYC_MSG,
				     c->msg, c->done);
			close(c->fd);
			c->fd = -1;
			c->state = 0;
			finished++;
			last_progress = h_now_ms();
		}
	}
	free(w);
	free(pfds);
}

/* Waits until both daemons' descriptor counts hold still for 300 ms. */
static void
settle_fds(int *gw, int *relay)
{
	int64_t end = h_now_ms() + 10000;
	int g = fd_count(P.gw), r = fd_count(P.relay);

	for (;;) {
		int g2, r2;

		h_sleep_ms(300);
		g2 = fd_count(P.gw);
		r2 = fd_count(P.relay);
		if ((g2 == g && r2 == r) || h_now_ms() >= end)
			break;
		g = g2;
		r = r2;
	}
	*gw = g;
	*relay = r;
}

Test(load, open_close_cycles_leak_nothing)
{
	long n = env_long("TLSPLEX_CYCLES", 20000), warm = n / 10;
	int workers = 32, gw_fd0, relay_fd0, gw_fd, relay_fd;
	long gw_rss0, relay_rss0, gw_rss, relay_rss, gw_bound, relay_bound;
	int64_t t0, ms;

	pair_up(0, "", "");
	run_cycles(P.svc_port, 0, warm, workers);
	settle_fds(&gw_fd0, &relay_fd0);
	gw_rss0 = rss_kb(P.gw);
	relay_rss0 = rss_kb(P.relay);
	t0 = h_now_ms();
	run_cycles(P.svc_port, warm, n - warm, workers);
	ms = h_now_ms() - t0;
	cr_assert_eq(wait_fds(gw_fd0, relay_fd0, 10000, &gw_fd, &relay_fd), 0,
		     "descriptors after %ld cycles: gateway %d (%d after the warm-up), "
		     "relay %d (%d)", n, gw_fd, gw_fd0, relay_fd, relay_fd0);
	gw_rss = rss_kb(P.gw);
	relay_rss = rss_kb(P.relay);
	fprintf(stderr,
		"load: %ld cycles (%d at once) after %ld warm-up: %.0f cycles/s; "
		"fds gateway %d relay %d; RSS gateway %ld -> %ld kB, relay %ld -> %ld kB\n",
		n - warm, workers, warm, (double)(n - warm) * 1000 / (ms > 0 ? ms : 1),
		gw_fd, relay_fd, gw_rss0, gw_rss, relay_rss0, relay_rss);
	/* Growth allowed: 2 MiB + 1 %. */
	gw_bound = gw_rss0 + 2048 + gw_rss0 / 100;
	relay_bound = relay_rss0 + 2048 + relay_rss0 / 100;
	cr_assert_lt(gw_rss, gw_bound, "gateway RSS grew from %ld to %ld kB over %ld cycles",
		     gw_rss0, gw_rss, n - warm);
	cr_assert_lt(relay_rss, relay_bound, "relay RSS grew from %ld to %ld kB over %ld cycles",
		     relay_rss0, relay_rss, n - warm);
	cr_assert_eq(h_alive(P.gw), 1);
	cr_assert_eq(h_alive(P.relay), 1);
}

/* --- c: a slow consumer -------------------------------------------------- */

struct sampler {
	pthread_t thread;
	int stop;
	long gw_max, relay_max;
};

static void *
sample_main(void *arg)
{
	struct sampler *s = arg;

	while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE)) {
		long g = proc_kb(P.gw, "smaps_rollup", "Pss");
		long r = proc_kb(P.relay, "smaps_rollup", "Pss");

		if (g > s->gw_max)
			s->gw_max = g;
		if (r > s->relay_max)
			s->relay_max = r;
		h_sleep_ms(50);
	}
	return NULL;
}

/* The per-stream buffering the daemons document, summed for the slow
 * stream and the 4 echo streams: the receive window at the writing
 * side, 256 KiB read-ahead at the reading side, and the link's 64 KiB
 * output buffer, about 3 MiB in all.  16 MiB leaves room for allocator
 * slack; under AddressSanitizer (redzones, a 4 MiB quarantine, measured
 * near +12 MiB) 32 MiB.  Buffering the slow stream would not fit. */
#ifdef __SANITIZE_ADDRESS__
#define SLOW_PSS_BOUND_KB (32 * 1024)
#else
#define SLOW_PSS_BOUND_KB (16 * 1024)
#endif

Test(load, slow_consumer_is_bounded_and_complete)
{
	long slow_bytes = env_long("TLSPLEX_SLOW_BYTES", 256 * MIB);
	char path[600], addr[64], nbytes[32], log[600], rel[128], gwsec[128], err[4096];
	const char *argv[9];
	int slow_backend = h_free_port(), slow_svc = h_free_port(), fd;
	long gw_pss0, relay_pss0;
	struct sampler smp = { 0 };
	struct h_prng want;
	uint8_t *got, *exp;
	long total = 0;
	int64_t t0, ms;

	snprintf(path, sizeof(path), "%s/tpx-echo", h_build_dir());
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", slow_backend);
	snprintf(nbytes, sizeof(nbytes), "%ld", slow_bytes);
	snprintf(log, sizeof(log), "%s/source.log", P.dir);
	argv[0] = path;
	argv[1] = "-l";
	argv[2] = addr;
	argv[3] = "-m";
	argv[4] = "source";
	argv[5] = "-n";
	argv[6] = nbytes;
	argv[7] = NULL;
	cr_assert_gt(h_spawn(argv, log), 0);
	cr_assert_eq(h_wait_port(slow_backend, 5000), 0);
	snprintf(rel, sizeof(rel), "[service slow]\nbackend = 127.0.0.1:%d\n", slow_backend);
	snprintf(gwsec, sizeof(gwsec), "[service slow]\nlisten = 127.0.0.1:%d\n", slow_svc);
	pair_up(0, rel, gwsec);
	h_sleep_ms(200);
	gw_pss0 = pss_kb(P.gw);
	relay_pss0 = pss_kb(P.relay);
	smp.gw_max = gw_pss0;
	smp.relay_max = relay_pss0;
	cr_assert_eq(pthread_create(&smp.thread, NULL, sample_main, &smp), 0);

	fd = connect_port(slow_svc);
	cr_assert_geq(fd, 0);
	t0 = h_now_ms();
	cr_assert_eq(h_echo_clients(P.svc_port, 4, 20 * MIB, 21, 120000, err, sizeof(err)), 0,
		     "echo clients beside the slow consumer:\n%s", err);
	ms = h_now_ms() - t0;
	fprintf(stderr, "load: 4 echo streams beside a slow consumer: 4 x 20 MiB each way "
		"in %lld ms (%.1f MB/s each way)\n", (long long)ms,
		4.0 * 20 * MIB / 1e6 / ((double)(ms > 0 ? ms : 1) / 1000));
	if (h_now_ms() - t0 < 3000)
		h_sleep_ms((int)(3000 - (h_now_ms() - t0)));
	__atomic_store_n(&smp.stop, 1, __ATOMIC_RELEASE);
	pthread_join(smp.thread, NULL);
	fprintf(stderr, "load: slow consumer: PSS peak gateway %ld -> %ld kB, relay %ld -> "
		"%ld kB (bound +%d kB)\n", gw_pss0, smp.gw_max, relay_pss0, smp.relay_max,
		SLOW_PSS_BOUND_KB);
	cr_assert_lt(smp.gw_max, gw_pss0 + SLOW_PSS_BOUND_KB,
		     "gateway PSS rose from %ld to %ld kB behind a slow consumer",
		     gw_pss0, smp.gw_max);
	cr_assert_lt(smp.relay_max, relay_pss0 + SLOW_PSS_BOUND_KB,
		     "relay PSS rose from %ld to %ld kB behind a slow consumer",
		     relay_pss0, smp.relay_max);

	/* Now it reads: every byte arrives, in order, then EOF. */
	got = malloc(MIB);
	exp = malloc(MIB);
	cr_assert(got != NULL && exp != NULL);
	h_prng_init(&want, 1, 0);
	t0 = h_now_ms();
	for (;;) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		ssize_t r;

		cr_assert_gt(poll(&pfd, 1, 10000), 0, "the slow stream stalled after %ld bytes",
			     total);
		r = recv(fd, got, MIB, 0);
		cr_assert_geq(r, 0, "recv after %ld bytes: %s", total, strerror(errno));
		if (r == 0)
			break;
		cr_assert_leq(total + r, slow_bytes, "more than %ld bytes arrived", slow_bytes);
		h_prng_fill(&want, exp, (size_t)r);
		if (memcmp(got, exp, (size_t)r) != 0) {
			long i = 0;

			while (got[i] == exp[i])
				i++;
			cr_assert_fail("the slow stream differs at byte %ld", total + i);
		}
		total += r;
	}
	ms = h_now_ms() - t0;
	cr_assert_eq(total, slow_bytes, "EOF after %ld of %ld bytes", total, slow_bytes);
	fprintf(stderr, "load: slow consumer then read %ld bytes intact in %lld ms (%.1f MB/s)\n",
		total, (long long)ms, (double)total / 1e6 / ((double)(ms > 0 ? ms : 1) / 1000));
	close(fd);
	free(got);
	free(exp);
}

/* --- d: a ping-pong beside bulk streams ---------------------------------- */

#define BULK_STREAMS 4

struct bulk {
	pthread_t thread;
	int port;
	int stop;
	int failed;
	long rcvd; /* echo bytes received, all streams */
};

static void *
bulk_main(void *arg)
{
	static uint8_t out[65536], in[65536];
	struct bulk *b = arg;
	struct pollfd pfd[BULK_STREAMS];

	h_payload_fill(out, sizeof(out), 3, 0);
	for (int i = 0; i < BULK_STREAMS; i++) {
		pfd[i].fd = nonblocking_connect(b->port);
		pfd[i].events = POLLIN | POLLOUT;
		if (pfd[i].fd < 0)
			b->failed = 1;
	}
	while (!b->failed && !__atomic_load_n(&b->stop, __ATOMIC_ACQUIRE)) {
		if (poll(pfd, BULK_STREAMS, 100) <= 0)
			continue;
		for (int i = 0; i < BULK_STREAMS; i++) {
			ssize_t r;

			if (pfd[i].revents & (POLLERR | POLLHUP))
				b->failed = 1;
			if (pfd[i].revents & POLLOUT)
				(void)send(pfd[i].fd, out, sizeof(out), MSG_NOSIGNAL);
			if (pfd[i].revents & POLLIN) {
				r = recv(pfd[i].fd, in, sizeof(in), 0);
				if (r == 0 || (r < 0 && errno != EAGAIN))
					b->failed = 1;
				else if (r > 0)
					__atomic_add_fetch(&b->rcvd, r, __ATOMIC_RELAXED);
			}
		}
	}
	for (int i = 0; i < BULK_STREAMS; i++)
		if (pfd[i].fd >= 0)
			close(pfd[i].fd);
	return NULL;
}

static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

static int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

#define PINGS 1000

Test(load, ping_pong_beside_bulk_streams)
{
	static int64_t lat[PINGS];
	struct bulk b = { 0 };
	char msg[64], buf[64];
	long rcvd0, rcvd1;
	int fd, one = 1;
	int64_t t0;

	pair_up(0, "", "");
	b.port = P.svc_port;
	cr_assert_eq(pthread_create(&b.thread, NULL, bulk_main, &b), 0);
	/* Bulk data flows before the first ping. */
	t0 = h_now_ms();
	while (__atomic_load_n(&b.rcvd, __ATOMIC_RELAXED) < 8 * MIB && h_now_ms() - t0 < 20000)
		h_sleep_ms(10);
	rcvd0 = __atomic_load_n(&b.rcvd, __ATOMIC_RELAXED);
	cr_assert_geq(rcvd0, 8 * MIB, "the bulk streams moved only %ld bytes", rcvd0);

	fd = connect_port(P.svc_port);
	cr_assert_geq(fd, 0);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	t0 = h_now_ms();
	for (int i = 0; i < PINGS; i++) {
		size_t got = 0;
		int64_t s = now_us();

		memset(msg, 'a' + i % 26, sizeof(msg));
		snprintf(msg, sizeof(msg), "ping %d", i);
		cr_assert_eq(send(fd, msg, sizeof(msg), MSG_NOSIGNAL), (ssize_t)sizeof(msg));
		while (got < sizeof(msg)) {
			struct pollfd pfd = { fd, POLLIN, 0 };
			ssize_t r;

			cr_assert_gt(poll(&pfd, 1, 5000), 0, "ping %d: no answer in 5 s", i);
			r = recv(fd, buf + got, sizeof(buf) - got, 0);
			cr_assert_gt(r, 0, "ping %d: the stream closed", i);
			got += (size_t)r;
		}
		lat[i] = now_us() - s;
		cr_assert_eq(memcmp(buf, msg, sizeof(msg)), 0, "ping %d: wrong answer", i);
	}
	rcvd1 = __atomic_load_n(&b.rcvd, __ATOMIC_RELAXED);
	__atomic_store_n(&b.stop, 1, __ATOMIC_RELEASE);
	pthread_join(b.thread, NULL);
	close(fd);
	cr_assert_eq(b.failed, 0, "a bulk stream failed");
	qsort(lat, PINGS, sizeof(lat[0]), cmp_i64);
	fprintf(stderr, "load: %d pings beside %d bulk streams (%.1f MB/s echoed meanwhile): "
		"p50 %.3f ms, p99 %.3f ms, max %.3f ms\n", PINGS, BULK_STREAMS,
		(double)(rcvd1 - rcvd0) / 1e6 / ((double)(h_now_ms() - t0 + 1) / 1000),
		lat[PINGS / 2] / 1000.0, lat[PINGS * 99 / 100] / 1000.0, lat[PINGS - 1] / 1000.0);
	cr_assert_gt(rcvd1, rcvd0, "the bulk streams stalled during the pings");
	cr_assert_lt(lat[PINGS * 99 / 100], 1000000, "p99 %.1f ms",
		     lat[PINGS * 99 / 100] / 1000.0);
}
