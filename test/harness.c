/*
 * End-to-end test helpers; see harness.h.  libc and pthreads only.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "echo_clients.h"
#include "harness.h"

/* --- time ------------------------------------------------------------- */

int64_t
h_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
h_sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* --- paths and files -------------------------------------------------- */

const char *
h_build_dir(void)
{
	const char *d = getenv("TLSPLEX_BUILD_DIR");

	return d != NULL && d[0] != '\0' ? d : "build";
}

const char *
h_source_dir(void)
{
	const char *d = getenv("TLSPLEX_SOURCE_DIR");

	return d != NULL && d[0] != '\0' ? d : ".";
}

char *
h_tmpdir(void)
{
	char tmpl[] = "/tmp/tlsplex-test-XXXXXX";

	if (mkdtemp(tmpl) == NULL)
		return NULL;
	return strdup(tmpl);
}

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return flag == FTW_DP ? rmdir(path) : unlink(path);
}

int
h_rmtree(const char *path)
{
	if (path == NULL)
		return -1;
	return nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int
h_write_file(const char *path, const char *fmt, ...)
{
	va_list ap;
	FILE *f = fopen(path, "w");
	int rc;

	if (f == NULL)
		return -1;
	va_start(ap, fmt);
	rc = vfprintf(f, fmt, ap);
	va_end(ap);
	if (fclose(f) != 0 || rc < 0)
		return -1;
	return 0;
}

char *
h_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL, *nb;
	size_t cap = 0, n = 0, got;

	if (len != NULL)
		*len = 0;
	if (f == NULL)
		return NULL;
	for (;;) {
		if (cap - n < 4096) {
			cap = cap ? cap * 2 : 16384;
			nb = realloc(buf, cap + 1);
			if (nb == NULL)
				goto fail;
			buf = nb;
		}
		got = fread(buf + n, 1, cap - n, f);
		n += got;
		if (got == 0)
			break;
	}
	if (ferror(f))
		goto fail;
	fclose(f);
	buf[n] = '\0';
	if (len != NULL)
		*len = n;
	return buf;
fail:
	free(buf);
	fclose(f);
	return NULL;
}

int
h_file_count(const char *path, const char *needle)
{
	size_t len, nl = strlen(needle);
	char *text = h_read_file(path, &len);
	const char *p;
	int count = 0;

	if (text == NULL || nl == 0) {
		free(text);
		return 0;
	}
	p = text;
	while ((p = h_memmem(p, len - (size_t)(p - text), needle, nl)) != NULL) {
		count++;
		p += nl;
	}
	free(text);
	return count;
}

int
h_wait_count_above(const char *path, const char *needle, int n, int timeout_ms)
{
	int64_t deadline = h_now_ms() + timeout_ms;

	for (;;) {
		if (h_file_count(path, needle) > n)
			return 0;
		if (h_now_ms() >= deadline)
			return -1;
		h_sleep_ms(20);
	}
}

int
h_wait_file_contains(const char *path, const char *needle, int timeout_ms)
{
	return h_wait_count_above(path, needle, 0, timeout_ms);
}

/* --- ports ------------------------------------------------------------ */

static pthread_mutex_t port_mu = PTHREAD_MUTEX_INITIALIZER;
static int ports_given[64];
static unsigned ports_next;

static int
port_given(int port)
{
	for (size_t i = 0; i < sizeof(ports_given) / sizeof(ports_given[0]); i++)
		if (ports_given[i] == port)
			return 1;
	return 0;
}

static int
bind_loopback(int port, int *fdp)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	socklen_t sl = sizeof(sin);
	int fd, one = 1;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &sl) < 0) {
		close(fd);
		return -1;
	}
	*fdp = fd;
	return ntohs(sin.sin_port);
}

int
h_connect(int port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* The lowest port the kernel hands out as an ephemeral local port, or
 * -1 if unknown. */
static int
ephemeral_low(void)
{
	FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
	int low = -1, high;

	if (f != NULL) {
		if (fscanf(f, "%d %d", &low, &high) != 2)
			low = -1;
		fclose(f);
	}
	return low;
}

/*
 * A port that was free a moment ago.  Tests bind it later (in a daemon
 * they start), and an outgoing connection made meanwhile could take an
 * ephemeral port as its local port; ports are therefore picked at random
 * below the kernel's ephemeral range when there is room, and only fall
 * back to the kernel's choice otherwise.
 */
int
h_free_port(void)
{
	static uint64_t seed;
	int low = ephemeral_low(), lo = low - 12000, port = -1, fd;

	pthread_mutex_lock(&port_mu);
	if (seed == 0)
		seed = (uint64_t)getpid() << 32 ^ (uint64_t)h_now_ms();
	for (int tries = 0; lo >= 1024 && tries < 200; tries++) {
		int p = lo + (int)(h_splitmix64(&seed) % (uint64_t)(low - lo));

		if (port_given(p) || bind_loopback(p, &fd) < 0)
			continue;
		close(fd);
		port = p;
		break;
	}
	/* Ports handed out recently are skipped so that two calls in one
	 * test do not return the same port before either is bound. */
	for (int tries = 0; port < 0 && tries < 50; tries++) {
		port = bind_loopback(0, &fd);
		if (port < 0)
			break;
		close(fd);
		if (port_given(port))
			port = -1;
	}
	if (port > 0)
		ports_given[ports_next++ % 64] = port;
	pthread_mutex_unlock(&port_mu);
	return port;
}

static int
scan_proc_tcp(const char *file, int port)
{
	FILE *f = fopen(file, "r");
	char line[512];
	int found = 0;

	if (f == NULL)
		return -1;
	while (!found && fgets(line, sizeof(line), f) != NULL) {
		unsigned lport, st;

		if (sscanf(line, " %*u: %*[0-9A-Fa-f]:%X %*[0-9A-Fa-f]:%*X %X", &lport, &st) == 2 &&
		    (int)lport == port && st == 0x0A)
			found = 1;
	}
	fclose(f);
	return found;
}

int
h_port_listening(int port)
{
	int a = scan_proc_tcp("/proc/net/tcp", port);
	int b = scan_proc_tcp("/proc/net/tcp6", port);

	if (a == 1 || b == 1)
		return 1;
	if (a < 0 && b < 0)
		return -1;
	return 0;
}

static int
connect_probe(int port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), rc;

	if (fd < 0)
		return -1;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	rc = connect(fd, (struct sockaddr *)&sin, sizeof(sin));
	close(fd);
	return rc == 0 ? 1 : 0;
}

int
h_wait_port(int port, int timeout_ms)
{
	int64_t deadline = h_now_ms() + timeout_ms;

	for (;;) {
		int l = h_port_listening(port);

		if (l < 0)
			l = connect_probe(port);
		if (l == 1)
			return 0;
		if (h_now_ms() >= deadline)
			return -1;
		h_sleep_ms(20);
	}
}

/* --- processes -------------------------------------------------------- */

#define MAX_PROCS 128

static pthread_mutex_t proc_mu = PTHREAD_MUTEX_INITIALIZER;
static pid_t procs[MAX_PROCS];
static int nprocs;

static int
proc_find(pid_t pid)
{
	for (int i = 0; i < nprocs; i++)
		if (procs[i] == pid)
			return i;
	return -1;
}

static int
proc_known(pid_t pid)
{
	int i;

	pthread_mutex_lock(&proc_mu);
	i = proc_find(pid);
	pthread_mutex_unlock(&proc_mu);
	return i >= 0;
}

static void
proc_forget(pid_t pid)
{
	int i;

	pthread_mutex_lock(&proc_mu);
	i = proc_find(pid);
	if (i >= 0)
		procs[i] = procs[--nprocs];
	pthread_mutex_unlock(&proc_mu);
}

/* 1 if pid has exited (left as a zombie), 0 if it runs, -1 on error. */
static int
proc_exited(pid_t pid)
{
	siginfo_t si;

	memset(&si, 0, sizeof(si));
	if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0)
		return -1;
	return si.si_pid == pid ? 1 : 0;
}

static int
status_code(int st)
{
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return -1;
}

/* pid has exited or was SIGKILLed: kill what is left of its group while
 * the zombie still holds the group id, then reap it. */
static int
proc_reap(pid_t pid)
{
	int64_t deadline = h_now_ms() + 5000;
	int st;

	kill(-pid, SIGKILL);
	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			break;
		if (r < 0 || h_now_ms() >= deadline) {
			proc_forget(pid);
			return -1;
		}
		h_sleep_ms(5);
	}
	proc_forget(pid);
	return status_code(st);
}

pid_t
h_spawn(const char *const argv[], const char *log_path)
{
	int errpipe[2];
	int child_errno = 0;
	ssize_t n;
	pid_t pid, parent;

	if (argv == NULL || argv[0] == NULL)
		return -1;
	pthread_mutex_lock(&proc_mu);
	if (nprocs >= MAX_PROCS) {
		pthread_mutex_unlock(&proc_mu);
		return -1;
	}
	pthread_mutex_unlock(&proc_mu);
	if (pipe2(errpipe, O_CLOEXEC) < 0)
		return -1;
	fflush(NULL);
	parent = getpid();
	pid = fork();
	if (pid < 0) {
		close(errpipe[0]);
		close(errpipe[1]);
		return -1;
	}
	if (pid == 0) {
		struct sigaction sa;
		sigset_t all;
		int fd, e;

		setpgid(0, 0);
		/* A test that crashes must not leave daemons behind. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = SIG_DFL;
		for (int s = 1; s < NSIG; s++)
			sigaction(s, &sa, NULL);
		sigemptyset(&all);
		sigprocmask(SIG_SETMASK, &all, NULL);
		fd = open("/dev/null", O_RDONLY);
		if (fd < 0 || dup2(fd, 0) < 0)
			goto child_fail;
		if (log_path != NULL) {
			fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
			if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
				goto child_fail;
		}
		if (errpipe[1] > 3)
			close_range(3, (unsigned)errpipe[1] - 1, 0);
		close_range((unsigned)errpipe[1] + 1, ~0U, 0);
		execv(argv[0], (char *const *)argv);
child_fail:
		e = errno;
		n = write(errpipe[1], &e, sizeof(e));
		(void)n;
		_exit(127);
	}
	close(errpipe[1]);
	setpgid(pid, pid);
	{
		struct pollfd pfd = { .fd = errpipe[0], .events = POLLIN };

		/* exec either succeeds (the pipe closes) or reports errno. */
		if (poll(&pfd, 1, 10000) > 0) {
			n = read(errpipe[0], &child_errno, sizeof(child_errno));
			if (n <= 0)
				child_errno = 0;
		}
	}
	close(errpipe[0]);
	pthread_mutex_lock(&proc_mu);
	procs[nprocs++] = pid;
	pthread_mutex_unlock(&proc_mu);
	if (child_errno != 0) {
		proc_reap(pid);
		errno = child_errno;
		return -1;
	}
	return pid;
}

int
h_alive(pid_t pid)
{
	if (!proc_known(pid))
		return -1;
	return proc_exited(pid) == 0 ? 1 : 0;
}

int
h_wait_exit(pid_t pid, int timeout_ms)
{
	int64_t deadline = h_now_ms() + timeout_ms;

	if (!proc_known(pid))
		return -1;
	for (;;) {
		int e = proc_exited(pid);

		if (e != 0)
			return proc_reap(pid);
		if (h_now_ms() >= deadline)
			return -1;
		h_sleep_ms(10);
	}
}

int
h_stop(pid_t pid, int timeout_ms)
{
	int64_t deadline = h_now_ms() + timeout_ms;

	if (!proc_known(pid))
		return -1;
	if (proc_exited(pid) == 0)
		kill(pid, SIGTERM);
	for (;;) {
		int e = proc_exited(pid);

		if (e != 0)
			return proc_reap(pid);
		if (h_now_ms() >= deadline)
			break;
		h_sleep_ms(10);
	}
	kill(pid, SIGKILL);
	proc_reap(pid);
	return -1;
}

void
h_stop_all(void)
{
	for (;;) {
		pid_t pid;

		pthread_mutex_lock(&proc_mu);
		pid = nprocs > 0 ? procs[nprocs - 1] : 0;
		pthread_mutex_unlock(&proc_mu);
		if (pid == 0)
			return;
		h_stop(pid, 3000);
		proc_forget(pid); /* in case h_stop could not reap it */
	}
}

int
h_run(const char *const argv[], const char *log_path, int timeout_ms)
{
	pid_t pid = h_spawn(argv, log_path);
	int rc;

	if (pid < 0)
		return -1;
	rc = h_wait_exit(pid, timeout_ms);
	if (rc < 0 && proc_known(pid))
		h_stop(pid, 1000);
	return rc;
}

/* --- the tap ---------------------------------------------------------- */

#define TAP_READ_CHUNK 65536
#define TAP_INJECT_MAX 65536
#define TAP_HDR_LEN 14
#define TAP_MSG_MAX (TAP_HDR_LEN + 65535)
#define TAP_BUF (TAP_MSG_MAX + TAP_INJECT_MAX + TAP_READ_CHUNK)
#define TAP_MAX_CONNS 4096
#define TAP_POLL_MS 50

static const uint8_t tap_magic[8] = { 0x89, 'T', 'P', 'X', '\r', '\n', 0x1a, '\n' };

struct tap_flow {
	int src_eof;  /* the source sent FIN */
	int shut;     /* FIN passed on to the destination */
	uint8_t *buf; /* bytes read, not yet written */
	size_t off, len;
	size_t first_send; /* when > 0, the next send is exactly this long */
	/* capture: written by the tap thread, cap_len published under mu */
	uint8_t *cap;
	size_t cap_len;
	int overflow;
	/* injection */
	uint8_t *inj;
	size_t inj_len;
	int scanning; /* holding bytes until the first message is complete */
	long inj_off;
};

struct tap_conn {
	int fd[2]; /* [0] accepted from the client, [1] dialled to the target */
	int connecting;
	int closed;
	struct tap_flow f[2]; /* indexed by enum tap_dir */
};

struct tap {
	int lfd;
	int port, target;
	int wake[2];
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	struct tap_conn **conns;
	int nconns, conns_cap;
	int stop;
	int paused;
	unsigned loop_gen; /* counts loop iterations of the tap thread */
	unsigned kill_req, kill_done;
	int kill_count;
	uint8_t *inj[2];
	size_t inj_len[2];
	int inj_armed[2];
};

static void
tap_wake(struct tap *tap)
{
	char c = 1;
	ssize_t n = write(tap->wake[1], &c, 1);

	(void)n;
}

static void
sock_rst_close(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	if (fd < 0)
		return;
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

static void
set_nodelay(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void
tap_capture(struct tap *tap, struct tap_flow *f, const uint8_t *p, size_t n)
{
	size_t room = f->cap != NULL ? TAP_CAPTURE_MAX - f->cap_len : 0;
	size_t take = n < room ? n : room;

	if (take > 0)
		memcpy(f->cap + f->cap_len, p, take);
	pthread_mutex_lock(&tap->mu);
	f->cap_len += take;
	if (take < n)
		f->overflow = 1;
	pthread_cond_broadcast(&tap->cond);
	pthread_mutex_unlock(&tap->mu);
}

static void
conn_finish(struct tap *tap, struct tap_conn *c, int rst)
{
	for (int i = 0; i < 2; i++) {
		if (rst)
			sock_rst_close(c->fd[i]);
		else if (c->fd[i] >= 0)
			close(c->fd[i]);
		c->fd[i] = -1;
		free(c->f[i].buf);
		c->f[i].buf = NULL;
		c->f[i].len = 0;
		free(c->f[i].inj);
		c->f[i].inj = NULL;
	}
	pthread_mutex_lock(&tap->mu);
	c->closed = 1;
	pthread_cond_broadcast(&tap->cond);
	pthread_mutex_unlock(&tap->mu);
}

/* The held bytes of a scanning flow are released: inject if they begin
 * with a complete negotiation message, then record them. */
static void
flow_scan(struct tap *tap, struct tap_flow *f)
{
	size_t have = f->len, total, cmp;
	int give_up = 0;

	cmp = have < 8 ? have : 8;
	if (memcmp(f->buf, tap_magic, cmp) != 0)
		give_up = 1;
	else if (have < TAP_HDR_LEN)
		give_up = f->src_eof;
	if (!give_up && have >= TAP_HDR_LEN) {
		total = TAP_HDR_LEN + ((size_t)f->buf[12] << 8 | f->buf[13]);
		if (have >= total) {
			memmove(f->buf + total + f->inj_len, f->buf + total, have - total);
			memcpy(f->buf + total, f->inj, f->inj_len);
			f->len += f->inj_len;
			f->first_send = total + f->inj_len;
			f->inj_off = (long)(f->cap_len + total);
			f->scanning = 0;
			tap_capture(tap, f, f->buf, f->len);
			return;
		}
		give_up = f->src_eof;
	}
	if (give_up) {
		f->scanning = 0;
		tap_capture(tap, f, f->buf, f->len);
	}
}

static int
flow_want_read(const struct tap_flow *f)
{
	if (f->src_eof)
		return 0;
	if (f->scanning)
		return f->len + TAP_INJECT_MAX + TAP_READ_CHUNK <= TAP_BUF;
	return f->len == 0;
}

/* Returns -1 when the connection must be reset. */
static int
flow_read(struct tap *tap, struct tap_flow *f, int src)
{
	uint8_t *dst;
	ssize_t n;

	if (f->len == 0)
		f->off = 0;
	dst = f->buf + f->off + f->len;
	n = recv(src, dst, TAP_READ_CHUNK, 0);
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
	if (n == 0)
		f->src_eof = 1;
	f->len += (size_t)n;
	if (f->scanning)
		flow_scan(tap, f);
	else if (n > 0)
		tap_capture(tap, f, dst, (size_t)n);
	return 0;
}

static int
flow_write(struct tap_flow *f, int dst)
{
	while (f->len > 0 && !f->scanning) {
		size_t want = f->first_send > 0 ? f->first_send : f->len;
		ssize_t n = send(dst, f->buf + f->off, want, MSG_NOSIGNAL);

		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
		f->off += (size_t)n;
		f->len -= (size_t)n;
		f->first_send -= f->first_send > 0 ? (size_t)n : 0;
	}
	if (f->len == 0)
		f->off = 0;
	return 0;
}

static void
tap_accept(struct tap *tap)
{
	for (int rounds = 0; rounds < 64; rounds++) {
		struct sockaddr_in sin = { .sin_family = AF_INET };
		struct tap_conn *c;
		int cfd, sfd;

		cfd = accept4(tap->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd < 0)
			return;
		if (tap->nconns >= TAP_MAX_CONNS) {
			sock_rst_close(cfd);
			continue;
		}
		c = calloc(1, sizeof(*c));
		if (c == NULL) {
			sock_rst_close(cfd);
			continue;
		}
		c->fd[0] = cfd;
		c->fd[1] = -1;
		set_nodelay(cfd);
		for (int d = 0; d < 2; d++) {
			struct tap_flow *f = &c->f[d];
			void *m = mmap(NULL, TAP_CAPTURE_MAX, PROT_READ | PROT_WRITE,
				       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

			f->cap = m == MAP_FAILED ? NULL : m;
			f->buf = malloc(TAP_BUF);
			f->inj_off = -1;
		}
		pthread_mutex_lock(&tap->mu);
		for (int d = 0; d < 2; d++) {
			if (tap->inj_armed[d]) {
				c->f[d].inj = tap->inj[d];
				c->f[d].inj_len = tap->inj_len[d];
				c->f[d].scanning = 1;
				tap->inj[d] = NULL;
				tap->inj_armed[d] = 0;
			}
		}
		if (tap->nconns == tap->conns_cap) {
			int ncap = tap->conns_cap ? tap->conns_cap * 2 : 16;
			struct tap_conn **nc = realloc(tap->conns, (size_t)ncap * sizeof(*nc));

			if (nc != NULL) {
				tap->conns = nc;
				tap->conns_cap = ncap;
			}
		}
		if (tap->nconns == tap->conns_cap || c->f[0].buf == NULL || c->f[1].buf == NULL) {
			pthread_mutex_unlock(&tap->mu);
			sock_rst_close(cfd);
			for (int d = 0; d < 2; d++) {
				free(c->f[d].buf);
				free(c->f[d].inj);
				if (c->f[d].cap != NULL)
					munmap(c->f[d].cap, TAP_CAPTURE_MAX);
			}
			free(c);
			continue;
		}
		tap->conns[tap->nconns++] = c;
		pthread_cond_broadcast(&tap->cond);
		pthread_mutex_unlock(&tap->mu);

		sfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (sfd < 0) {
			conn_finish(tap, c, 1);
			continue;
		}
		set_nodelay(sfd);
		c->fd[1] = sfd;
		sin.sin_port = htons((uint16_t)tap->target);
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (connect(sfd, (struct sockaddr *)&sin, sizeof(sin)) == 0)
			c->connecting = 0;
		else if (errno == EINPROGRESS)
			c->connecting = 1;
		else
			conn_finish(tap, c, 1);
	}
}

static void
tap_step_conn(struct tap *tap, struct tap_conn *c, const struct pollfd *p)
{
	if (c->connecting) {
		int err = 0;
		socklen_t el = sizeof(err);

		if (p[1].revents == 0)
			return;
		getsockopt(c->fd[1], SOL_SOCKET, SO_ERROR, &err, &el);
		if (err != 0) {
			conn_finish(tap, c, 1);
			return;
		}
		c->connecting = 0;
	}
	for (int d = 0; d < 2; d++) {
		struct tap_flow *f = &c->f[d];
		int src = c->fd[d], dst = c->fd[1 - d];

		if (p[d].revents != 0 && flow_want_read(f) && flow_read(tap, f, src) < 0)
			goto reset;
		if (f->len > 0 && flow_write(f, dst) < 0)
			goto reset;
		if (f->src_eof && f->len == 0 && !f->scanning && !f->shut) {
			shutdown(dst, SHUT_WR);
			f->shut = 1;
		}
	}
	if (c->f[0].shut && c->f[1].shut)
		conn_finish(tap, c, 0);
	return;
reset:
	conn_finish(tap, c, 1);
}

static int
tap_kill_all(struct tap *tap)
{
	int n = 0;

	for (int i = 0; i < tap->nconns; i++) {
		if (!tap->conns[i]->closed) {
			conn_finish(tap, tap->conns[i], 1);
			n++;
		}
	}
	return n;
}

static void *
tap_main(void *arg)
{
	struct tap *tap = arg;
	struct pollfd *pfds = NULL;
	int pcap = 0;

	for (;;) {
		int nconns, paused, np, stop;
		unsigned kreq;

		pthread_mutex_lock(&tap->mu);
		tap->loop_gen++;
		pthread_cond_broadcast(&tap->cond);
		stop = tap->stop;
		paused = tap->paused;
		kreq = tap->kill_req;
		nconns = tap->nconns;
		pthread_mutex_unlock(&tap->mu);
		if (stop)
			break;
		if (kreq != tap->kill_done) {
			int n = tap_kill_all(tap);

			pthread_mutex_lock(&tap->mu);
			tap->kill_done = kreq;
			tap->kill_count = n;
			pthread_cond_broadcast(&tap->cond);
			pthread_mutex_unlock(&tap->mu);
		}
		if (2 + 2 * nconns > pcap) {
			int ncap = 2 + 2 * nconns + 64;
			struct pollfd *np2 = realloc(pfds, (size_t)ncap * sizeof(*np2));

			if (np2 == NULL) {
				h_sleep_ms(TAP_POLL_MS);
				continue;
			}
			pfds = np2;
			pcap = ncap;
		}
		pfds[0] = (struct pollfd){ .fd = tap->wake[0], .events = POLLIN };
		pfds[1] = (struct pollfd){ .fd = tap->lfd, .events = POLLIN };
		for (int i = 0; i < nconns; i++) {
			struct tap_conn *c = tap->conns[i];
			struct pollfd *p = &pfds[2 + 2 * i];

			p[0] = (struct pollfd){ .fd = -1 };
			p[1] = (struct pollfd){ .fd = -1 };
			if (c->closed || paused)
				continue;
			if (c->connecting) {
				p[1] = (struct pollfd){ .fd = c->fd[1], .events = POLLOUT };
				continue;
			}
			for (int d = 0; d < 2; d++) {
				if (flow_want_read(&c->f[d]))
					p[d].events |= POLLIN;
				if (c->f[d].len > 0 && !c->f[d].scanning)
					p[1 - d].events |= POLLOUT;
			}
			for (int k = 0; k < 2; k++)
				if (p[k].events != 0)
					p[k].fd = c->fd[k];
		}
		np = poll(pfds, (nfds_t)(2 + 2 * nconns), TAP_POLL_MS);
		if (np <= 0)
			continue;
		if (pfds[0].revents) {
			char junk[64];

			while (read(tap->wake[0], junk, sizeof(junk)) > 0)
				;
		}
		for (int i = 0; i < nconns; i++) {
			struct tap_conn *c = tap->conns[i];
			struct pollfd *p = &pfds[2 + 2 * i];

			if (!c->closed && (p[0].revents | p[1].revents))
				tap_step_conn(tap, c, p);
		}
		if (pfds[1].revents)
			tap_accept(tap);
	}
	free(pfds);
	return NULL;
}

struct tap *
tap_start(int listen_port, int target_port)
{
	struct tap *tap = calloc(1, sizeof(*tap));
	pthread_condattr_t ca;
	int lfd = -1;

	if (tap == NULL)
		return NULL;
	tap->lfd = -1;
	tap->wake[0] = tap->wake[1] = -1;
	tap->target = target_port;
	pthread_mutex_init(&tap->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&tap->cond, &ca);
	pthread_condattr_destroy(&ca);
	tap->port = bind_loopback(listen_port, &lfd);
	if (tap->port < 0)
		goto fail;
	tap->lfd = lfd;
	if (listen(lfd, 512) < 0 || fcntl(lfd, F_SETFL, O_NONBLOCK) < 0)
		goto fail;
	if (pipe2(tap->wake, O_NONBLOCK | O_CLOEXEC) < 0)
		goto fail;
	if (pthread_create(&tap->thread, NULL, tap_main, tap) != 0)
		goto fail;
	return tap;
fail:
	if (tap->wake[0] >= 0) {
		close(tap->wake[0]);
		close(tap->wake[1]);
	}
	if (tap->lfd >= 0)
		close(tap->lfd);
	pthread_cond_destroy(&tap->cond);
	pthread_mutex_destroy(&tap->mu);
	free(tap);
	return NULL;
}

int
tap_port(const struct tap *tap)
{
	return tap->port;
}

int
tap_conn_count(struct tap *tap)
{
	int n;

	pthread_mutex_lock(&tap->mu);
	n = tap->nconns;
	pthread_mutex_unlock(&tap->mu);
	return n;
}

/* One bounded wait (at most 50 ms) on the tap's condition, with mu held.
 * Returns -1 once the deadline has passed. */
static int
tap_timedwait(struct tap *tap, int64_t deadline)
{
	int64_t now = h_now_ms();
	struct timespec ts;

	if (now >= deadline)
		return -1;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	{
		int64_t ms = deadline - now;
		if (ms > 50)
			ms = 50;
		ts.tv_sec += ms / 1000;
		ts.tv_nsec += (ms % 1000) * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
	}
	pthread_cond_timedwait(&tap->cond, &tap->mu, &ts);
	return 0;
}

int
tap_wait_conns(struct tap *tap, int n, int timeout_ms)
{
	int64_t deadline = h_now_ms() + timeout_ms;
	int rc = 0;

	pthread_mutex_lock(&tap->mu);
	while (tap->nconns < n && rc == 0)
		rc = tap_timedwait(tap, deadline);
	rc = tap->nconns >= n ? 0 : -1;
	pthread_mutex_unlock(&tap->mu);
	return rc;
}

static struct tap_flow *
tap_flow_locked(struct tap *tap, int conn, enum tap_dir dir)
{
	if (conn < 0 || conn >= tap->nconns || (dir != TAP_C2S && dir != TAP_S2C))
		return NULL;
	return &tap->conns[conn]->f[dir];
}

const uint8_t *
tap_bytes(struct tap *tap, int conn, enum tap_dir dir, size_t *len)
{
	const uint8_t *p = NULL;
	struct tap_flow *f;
	size_t l = 0;

	pthread_mutex_lock(&tap->mu);
	f = tap_flow_locked(tap, conn, dir);
	if (f != NULL) {
		l = f->cap_len;
		p = f->cap != NULL ? f->cap : (const uint8_t *)"";
	}
	pthread_mutex_unlock(&tap->mu);
	if (len != NULL)
		*len = l;
	return p;
}

int
tap_wait_bytes(struct tap *tap, int conn, enum tap_dir dir, size_t min_len, int timeout_ms)
{
	int64_t deadline = h_now_ms() + timeout_ms;
	int rc = 0;

	pthread_mutex_lock(&tap->mu);
	for (;;) {
		struct tap_flow *f = tap_flow_locked(tap, conn, dir);

		if (f != NULL && f->cap_len >= min_len) {
			rc = 0;
			break;
		}
		if (tap_timedwait(tap, deadline) < 0) {
			rc = -1;
			break;
		}
	}
	pthread_mutex_unlock(&tap->mu);
	return rc;
}

int
tap_overflow(struct tap *tap, int conn, enum tap_dir dir)
{
	struct tap_flow *f;
	int rc;

	pthread_mutex_lock(&tap->mu);
	f = tap_flow_locked(tap, conn, dir);
	rc = f != NULL ? f->overflow : -1;
	pthread_mutex_unlock(&tap->mu);
	return rc;
}

int
tap_conn_closed(struct tap *tap, int conn)
{
	int rc = -1;

	pthread_mutex_lock(&tap->mu);
	if (conn >= 0 && conn < tap->nconns)
		rc = tap->conns[conn]->closed;
	pthread_mutex_unlock(&tap->mu);
	return rc;
}

int
tap_set_inject(struct tap *tap, enum tap_dir dir, const void *bytes, size_t n)
{
	uint8_t *copy;

	if ((dir != TAP_C2S && dir != TAP_S2C) || n > TAP_INJECT_MAX || (n > 0 && bytes == NULL))
		return -1;
	copy = malloc(n ? n : 1);
	if (copy == NULL)
		return -1;
	if (n > 0)
		memcpy(copy, bytes, n);
	pthread_mutex_lock(&tap->mu);
	free(tap->inj[dir]);
	tap->inj[dir] = copy;
	tap->inj_len[dir] = n;
	tap->inj_armed[dir] = 1;
	pthread_mutex_unlock(&tap->mu);
	return 0;
}

long
tap_inject_offset(struct tap *tap, int conn, enum tap_dir dir)
{
	struct tap_flow *f;
	long off;

	pthread_mutex_lock(&tap->mu);
	f = tap_flow_locked(tap, conn, dir);
	off = f != NULL ? f->inj_off : -1;
	pthread_mutex_unlock(&tap->mu);
	return off;
}

int
tap_kill(struct tap *tap)
{
	int64_t deadline = h_now_ms() + 5000;
	unsigned want;
	int rc;

	pthread_mutex_lock(&tap->mu);
	want = ++tap->kill_req;
	pthread_mutex_unlock(&tap->mu);
	tap_wake(tap);
	pthread_mutex_lock(&tap->mu);
	while (tap->kill_done != want && tap_timedwait(tap, deadline) == 0)
		;
	rc = tap->kill_done == want ? tap->kill_count : -1;
	pthread_mutex_unlock(&tap->mu);
	return rc;
}

void
tap_set_paused(struct tap *tap, int paused)
{
	int64_t deadline = h_now_ms() + 5000;
	unsigned gen;

	pthread_mutex_lock(&tap->mu);
	tap->paused = paused != 0;
	gen = tap->loop_gen;
	pthread_mutex_unlock(&tap->mu);
	tap_wake(tap);
	/* Once a new iteration has begun, the one that may have missed the
	 * flag is over. */
	pthread_mutex_lock(&tap->mu);
	while (tap->loop_gen == gen && tap_timedwait(tap, deadline) == 0)
		;
	pthread_mutex_unlock(&tap->mu);
}

void
tap_stop(struct tap *tap)
{
	if (tap == NULL)
		return;
	pthread_mutex_lock(&tap->mu);
	tap->stop = 1;
	pthread_mutex_unlock(&tap->mu);
	tap_wake(tap);
	pthread_join(tap->thread, NULL);
	for (int i = 0; i < tap->nconns; i++) {
		struct tap_conn *c = tap->conns[i];

		if (!c->closed)
			conn_finish(tap, c, 1);
		for (int d = 0; d < 2; d++)
			if (c->f[d].cap != NULL)
				munmap(c->f[d].cap, TAP_CAPTURE_MAX);
		free(c);
	}
	free(tap->conns);
	free(tap->inj[0]);
	free(tap->inj[1]);
	close(tap->lfd);
	close(tap->wake[0]);
	close(tap->wake[1]);
	pthread_cond_destroy(&tap->cond);
	pthread_mutex_destroy(&tap->mu);
	free(tap);
}

/* --- in-process echo clients: echo_clients.c does the work ------------ */

struct ec_errbuf {
	char *err;
	size_t len, used;
};

static void
ec_collect(void *arg, int client, const char *msg)
{
	struct ec_errbuf *b = arg;
	int k;

	if (b->err == NULL || b->used + 1 >= b->len)
		return;
	k = snprintf(b->err + b->used, b->len - b->used, "client %d: %s\n", client, msg);
	if (k > 0)
		b->used += (size_t)k;
	if (b->used >= b->len)
		b->used = b->len - 1;
}

int
h_echo_clients(int port, int nclients, size_t bytes, uint64_t seed, int timeout_ms,
	       char *err, size_t errlen)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct ec_errbuf b = { .err = errlen > 0 ? err : NULL, .len = errlen };

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return ec_run((struct sockaddr *)&sin, sizeof(sin), nclients, bytes, seed, timeout_ms,
		      ec_collect, &b, NULL);
}
