/*
 * Fault tests across hosts: the gateway and its clients, a router and
 * the relay with its backend each in a network namespace of their own,
 * joined by veth pairs, with no address outside them:
 *
 *   [C: clients, gateway] c0 --- m0 [M: router] m1 --- r0 [R: relays, echo]
 *       10.77.1.1                10.77.1.2  10.77.2.2       10.77.2.1
 *
 * M impairs the path: delay (tpx-delay between two TUN devices, since
 * sch_netem is not in this kernel), loss (iptables -m statistic) under
 * a tbf rate limit, a cut link (m0 down), a silent peer (iptables DROP
 * of everything), a man in the middle (nat REDIRECT to test/mitm.c).
 * Every case checks that no stream that completed lost or changed a
 * byte, that what the fault hit was reset toward its clients in
 * bounded time, and that the daemons' descriptors and memory return to
 * their baseline.  Needs root and network namespaces; the runner exits
 * 77 (ctest: skipped) with the reason when the machine has neither.
 * The test process itself moves between namespaces with setns(2).
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "echo_clients.h"
#include "harness.h"
#include "mitm.h"
#include "pair.h"
#include "policy.h"

#define IP_C "10.77.1.1"
#define IP_R "10.77.2.1"
#define RELAY_PORT 7001
#define RELAY2_PORT 7002
#define ECHO_PORT 7100
#define SVC_PORT 7200
#define KEEPALIVE_MS 1000
/* Dead links are declared after keepalive_timeout plus at most one
 * check (every timeout / 4): 1.5 s, within 2 x keepalive.  The other
 * cases keep a longer timeout so that a slow moment is not a death. */
#define KEEPALIVE_SHORT "keepalive = 1s\nkeepalive_timeout = 1200ms\n"
#define KEEPALIVE_LONG "keepalive = 1s\nkeepalive_timeout = 5s\n"
#define RSS_SLACK_KB 2048
#define RUN_ENV "TLSPLEX_FAULTS_RUN"
#define CERT_ENV "TLSPLEX_FAULTS_CERTS"
#define UP ") is up ("

static char NS_C[64], NS_M[64], NS_R[64];
static char IP_BIN[64];
static struct mitm *M;
static struct witness *W;
static pid_t RELAY2;
static const char *KEEPALIVE = KEEPALIVE_LONG;

/* --- the runner: skip or go, certificates once, cleanup by prefix ------- */

static const char *
ip_bin(void)
{
	if (IP_BIN[0] == '\0')
		snprintf(IP_BIN, sizeof(IP_BIN), "%s",
			 access("/usr/sbin/ip", X_OK) == 0 ? "/usr/sbin/ip" : "/sbin/ip");
	return IP_BIN;
}

/* Runs the shell command; its output goes to log.  Returns its status. */
static int
shell_to(const char *log, int timeout_ms, const char *fmt, ...)
{
	char cmd[4096];
	const char *argv[4];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	argv[0] = "/bin/sh";
	argv[1] = "-c";
	argv[2] = cmd;
	argv[3] = NULL;
	return h_run(argv, log, timeout_ms);
}

/* Deletes every namespace whose name starts with prefix. */
static void
ns_delete_prefix(const char *prefix)
{
	DIR *d = opendir("/run/netns");
	struct dirent *e;

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL)
		if (strncmp(e->d_name, prefix, strlen(prefix)) == 0)
			shell_to("/dev/null", 10000, "%s netns del %s", ip_bin(), e->d_name);
	closedir(d);
}

/* Deletes the namespaces of earlier runs whose runner is gone (killed
 * before it could clean up). */
static void
ns_delete_orphans(void)
{
	DIR *d = opendir("/run/netns");
	struct dirent *e;
	int pid;

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL)
		if (sscanf(e->d_name, "tpxf-%d-", &pid) == 1 && pid > 0 &&
		    kill(pid, 0) < 0 && errno == ESRCH)
			shell_to("/dev/null", 10000, "%s netns del %s", ip_bin(), e->d_name);
	closedir(d);
}

/* Why this machine cannot run the suite, or NULL when it can. */
static const char *
cannot_run(void)
{
	static char why[256];
	char probe[64];
	int rc;

	if (geteuid() != 0)
		return "not root: network namespaces need CAP_SYS_ADMIN";
	if (access("/usr/sbin/iptables", X_OK) != 0 || access("/usr/bin/ping", X_OK) != 0 ||
	    access("/usr/sbin/tc", X_OK) != 0)
		return "iptables, ping or tc missing (scripts/deps.sh installs iptables, "
		       "iputils-ping, iproute2)";
	snprintf(probe, sizeof(probe), "tpxf-%d-probe", (int)getpid());
	rc = shell_to("/dev/null", 10000,
		      "set -e; %1$s netns add %2$s; "
		      "%1$s link add a0 netns %2$s type veth peer name b0 netns %2$s; "
		      "%1$s netns exec %2$s iptables -A FORWARD -m statistic --mode random "
		      "--probability 0.01 -j DROP; "
		      "%1$s netns exec %2$s iptables -t nat -A PREROUTING -p tcp --dport 1 "
		      "-j REDIRECT --to-ports 2; "
		      "%1$s -n %2$s tuntap add dev t0 mode tun; "
		      "tc -n %2$s qdisc add dev a0 root tbf rate 10mbit burst 32kb latency 50ms",
		      ip_bin(), probe);
	shell_to("/dev/null", 10000, "%s netns del %s", ip_bin(), probe);
	if (rc != 0) {
		snprintf(why, sizeof(why), "this kernel does not allow network namespaces with "
			 "veth, tun, tbf, iptables statistic and nat REDIRECT (probe exited %d)",
			 rc);
		return why;
	}
	return NULL;
}

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
	char run[32];
	const char *why = cannot_run();

	if (why != NULL) {
		fprintf(stderr, "faults: SKIP: %s\n", why);
		fflush(stderr);
		_exit(77);
	}
	ns_delete_orphans();
	snprintf(run, sizeof(run), "%d", (int)getpid());
	setenv(RUN_ENV, run, 1);
	cert_cache_make(CERT_ENV);
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
	const char *run = getenv(RUN_ENV);
	char prefix[64];

	if (run != NULL) {
		/* Whatever a crashed or timed-out test left behind. */
		snprintf(prefix, sizeof(prefix), "tpxf-%s-", run);
		ns_delete_prefix(prefix);
	}
	cert_cache_remove(CERT_ENV);
}

/* --- namespaces ------------------------------------------------------------ */

/* Runs the command (ip, iptables, ...) and asserts that it succeeded. */
#define SH(...) sh_ok(__FILE__, __LINE__, __VA_ARGS__)

static void
sh_ok(const char *file, int line, const char *fmt, ...)
{
	char cmd[4096], log[600];
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	snprintf(log, sizeof(log), "%s/sh.log", P.dir);
	rc = shell_to(log, 15000, "%s", cmd);
	cr_assert_eq(rc, 0, "%s:%d: '%s' exited %d:\n%s", file, line, cmd, rc,
		     h_read_file(log, NULL));
}

/* Moves the calling thread (and what it forks or creates later) into
 * namespace ns. */
static void
ns_enter(const char *ns)
{
	char path[128];
	int fd;

	snprintf(path, sizeof(path), "/run/netns/%s", ns);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	cr_assert_geq(fd, 0, "cannot open %s", path);
	cr_assert_eq(setns(fd, CLONE_NEWNET), 0, "setns %s failed", ns);
	close(fd);
}

static void
ns_setup(void)
{
	const char *run = getenv(RUN_ENV);
	const char *ip = ip_bin();

	snprintf(NS_C, sizeof(NS_C), "tpxf-%s-%d-c", run ? run : "x", (int)getpid());
	snprintf(NS_M, sizeof(NS_M), "tpxf-%s-%d-m", run ? run : "x", (int)getpid());
	snprintf(NS_R, sizeof(NS_R), "tpxf-%s-%d-r", run ? run : "x", (int)getpid());
	SH("set -e; for n in %2$s %3$s %4$s; do %1$s netns add $n; "
	   "%1$s -n $n link set lo up; done; "
	   "%1$s link add c0 netns %2$s type veth peer name m0 netns %3$s; "
	   "%1$s link add r0 netns %4$s type veth peer name m1 netns %3$s; "
	   "%1$s -n %2$s addr add " IP_C "/24 dev c0; %1$s -n %2$s link set c0 up; "
	   "%1$s -n %2$s route add default via 10.77.1.2; "
	   "%1$s -n %3$s addr add 10.77.1.2/24 dev m0; %1$s -n %3$s link set m0 up; "
	   "%1$s -n %3$s addr add 10.77.2.2/24 dev m1; %1$s -n %3$s link set m1 up; "
	   "%1$s -n %4$s addr add " IP_R "/24 dev r0; %1$s -n %4$s link set r0 up; "
	   "%1$s -n %4$s route add default via 10.77.2.2; "
	   "%1$s netns exec %3$s sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward'; "
	   /* One packet per skb, so that loss and delay apply to packets as
	    * a wire would carry them, not to 64 KiB TSO bursts. */
	   "for d in c0 m0 m1 r0; do for n in %2$s %3$s %4$s; do "
	   "%1$s -n $n link set dev $d gso_max_segs 1 2>/dev/null || true; done; done",
	   ip, NS_C, NS_M, NS_R);
}

static void
ns_teardown(void)
{
	char prefix[64];
	const char *run = getenv(RUN_ENV);

	snprintf(prefix, sizeof(prefix), "tpxf-%s-%d-", run ? run : "x", (int)getpid());
	ns_delete_prefix(prefix);
}

/* ASan keeps freed memory in a 256 MiB quarantine, so a sanitized
 * daemon's RSS grows with every round whether or not it leaks; with a
 * small one, what it frees is reused and its RSS means something. */
static void
small_quarantine(void)
{
	const char *old = getenv("ASAN_OPTIONS");
	char v[1024];

	snprintf(v, sizeof(v), "%s%squarantine_size_mb=1:thread_local_quarantine_size_kb=64",
		 old != NULL ? old : "", old != NULL && *old != '\0' ? ":" : "");
	setenv("ASAN_OPTIONS", v, 1);
}

static void
faults_init(void)
{
	small_quarantine();
	M = NULL;
	W = NULL;
	RELAY2 = 0;
	KEEPALIVE = KEEPALIVE_LONG;
	pair_init_from(getenv(CERT_ENV));
	ns_setup();
	ns_enter(NS_C);
}

static void
faults_fini(void)
{
	char relay2_log[600];
	int bad;

	mitm_stop(M);
	M = NULL;
	witness_stop(W);
	W = NULL;
	h_stop_all();
	ns_teardown();
	/* Under ASan a daemon that leaked or overran says so as it exits. */
	snprintf(relay2_log, sizeof(relay2_log), "%s/relay2.log", P.dir);
	bad = h_file_count(P.gw_log, "Sanitizer") + h_file_count(P.relay_log, "Sanitizer") +
	      h_file_count(relay2_log, "Sanitizer");
	pair_fini();
	cr_assert_eq(bad, 0, "a daemon reported a sanitizer error");
}

TestSuite(faults, .init = faults_init, .fini = faults_fini, .timeout = 60);

/* --- the daemons in their namespaces ---------------------------------------- */

/* Starts bin (a file in the build directory, or a path) with args in
 * namespace ns via ip netns exec; ip execs it, so the pid is the
 * program's own. */
static pid_t
spawn_in(const char *ns, const char *bin, const char *a1, const char *a2,
	 const char *a3, const char *a4, const char *log)
{
	char path[600];
	const char *argv[10];

	snprintf(path, sizeof(path), "%s/%s", h_build_dir(), bin);
	argv[0] = ip_bin();
	argv[1] = "netns";
	argv[2] = "exec";
	argv[3] = ns;
	argv[4] = path;
	argv[5] = a1;
	argv[6] = a2;
	argv[7] = a3;
	argv[8] = a4;
	argv[9] = NULL;
	return h_spawn(argv, log);
}

static void
start_echo_r(void)
{
	char log[600];

	snprintf(log, sizeof(log), "%s/echo.log", P.dir);
	P.echo = spawn_in(NS_R, "tpx-echo", "-l", "127.0.0.1:7100", "-m", "echo", log);
	cr_assert_gt(P.echo, 0);
	ns_enter(NS_R);
	cr_assert_eq(h_wait_port(ECHO_PORT, 5000), 0, "echo did not start");
	ns_enter(NS_C);
}

/* Starts a relay in R listening on port, logging to log. */
static pid_t
start_relay_r(int port, const char *name, const char *log)
{
	char conf[600];
	pid_t pid;

	snprintf(conf, sizeof(conf), "%s/%s.ini", P.dir, name);
	cr_assert_eq(h_write_file(conf,
		"[relay]\nnode_name = relay\nlisten = " IP_R ":%d\n" TLS_RELAY
		"ca = certs/ca.crt\nhook_file = %s-hooks.jsonl\n"
		"negotiation_timeout = 3s\nhandshake_timeout = 5s\n%s"
		"[service echo]\nbackend = 127.0.0.1:%d\n[peer gw1]\n",
		port, name, KEEPALIVE, ECHO_PORT), 0);
	pid = spawn_in(NS_R, "tlsplex-relay", "-c", conf, NULL, NULL, log);
	cr_assert_gt(pid, 0);
	cr_assert_eq(h_wait_file_contains(log, "listening for links", 10000), 0,
		     "relay did not start:\n%s", h_read_file(log, NULL));
	return pid;
}

/* The gateway's configuration, dialling relays (e.g. "10.77.2.1:7001"). */
static void
write_gateway_conf(const char *conf, const char *relays)
{
	cr_assert_eq(h_write_file(conf,
		"[gateway]\nnode_name = gw1\nrelay = %s\nserver_name = relay\n"
		"ca = certs/ca.crt\n" TLS_GW "hook_file = gw-hooks.jsonl\n"
		"redial_min = 200ms\nredial_max = 1s\nhold_timeout = 3s\n"
		"negotiation_timeout = 3s\nhandshake_timeout = 5s\n%s"
		"[service echo]\nlisten = 127.0.0.1:%d\n", relays, KEEPALIVE, SVC_PORT), 0);
}

static void
start_gateway_c(const char *relays)
{
	char conf[600];

	snprintf(conf, sizeof(conf), "%s/gateway.ini", P.dir);
	write_gateway_conf(conf, relays);
	P.gw = spawn_in(NS_C, "tlsplex-gateway", "-c", conf, NULL, NULL, P.gw_log);
	cr_assert_gt(P.gw, 0);
}

/* Echo backend and relay in R, gateway in C, and the link up. */
static void
start_all(void)
{
	start_echo_r();
	P.relay = start_relay_r(RELAY_PORT, "relay", P.relay_log);
	start_gateway_c(IP_R ":7001");
	cr_assert_eq(h_wait_file_contains(P.gw_log, UP, 20000), 0,
		     "the link did not come up:\n%s\n%s", h_read_file(P.gw_log, NULL),
		     h_read_file(P.relay_log, NULL));
}

/* --- clients ------------------------------------------------------------------ */

/* One round of verifying echo clients (test/echo_clients.h) and what
 * became of each: completed intact, cut short (reset or early EOF with
 * every byte before it right), corrupted, or still waiting. */
struct round {
	int n;
	size_t bytes;
	uint64_t seed;
	int timeout_ms;
	int ok, cut, corrupt, hung, refused;
	int64_t start_ms, end_ms;
	char first[512];
	pthread_t th;
	pthread_mutex_t mu;
};

static void
round_fail(void *arg, int client, const char *msg)
{
	struct round *r = arg;
	size_t l;

	pthread_mutex_lock(&r->mu);
	if (strstr(msg, "mismatch") != NULL || strstr(msg, "extra data") != NULL)
		r->corrupt++;
	else if (strstr(msg, "timed out") != NULL)
		r->hung++;
	else if (strstr(msg, "connect failed") != NULL)
		r->refused++;
	else
		r->cut++;
	l = strlen(r->first);
	if (l + 80 < sizeof(r->first))
		snprintf(r->first + l, sizeof(r->first) - l, "client %d: %s\n", client, msg);
	pthread_mutex_unlock(&r->mu);
}

static void *
round_main(void *arg)
{
	struct round *r = arg;
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(SVC_PORT) };
	struct ec_result res = { 0, 0 };

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	r->start_ms = h_now_ms();
	ec_run((struct sockaddr *)&sin, sizeof(sin), r->n, r->bytes, r->seed, r->timeout_ms,
	       round_fail, r, &res);
	r->ok = res.ok;
	r->end_ms = h_now_ms();
	return NULL;
}

static void
round_init(struct round *r, int n, size_t bytes, uint64_t seed, int timeout_ms)
{
	memset(r, 0, sizeof(*r));
	r->n = n;
	r->bytes = bytes;
	r->seed = seed;
	r->timeout_ms = timeout_ms;
	pthread_mutex_init(&r->mu, NULL);
}

/* Runs a round on a thread of its own (in the caller's namespace). */
static void
round_start(struct round *r, int n, size_t bytes, uint64_t seed, int timeout_ms)
{
	round_init(r, n, bytes, seed, timeout_ms);
	cr_assert_eq(pthread_create(&r->th, NULL, round_main, r), 0);
}

static void
round_join(struct round *r)
{
	pthread_join(r->th, NULL);
	cr_assert_eq(r->corrupt, 0, "corrupted streams:\n%s", r->first);
	cr_assert_eq(r->ok + r->cut + r->hung + r->refused + r->corrupt, r->n,
		     "clients unaccounted for:\n%s", r->first);
}

/* A round in which every client must come back whole. */
static void
round_all_ok(int n, size_t bytes, uint64_t seed, int timeout_ms, const char *what)
{
	struct round r;

	round_init(&r, n, bytes, seed, timeout_ms);
	round_main(&r);
	cr_assert_eq(r.corrupt, 0, "%s: corrupted streams:\n%s", what, r.first);
	cr_assert_eq(r.ok, n, "%s: %d of %d clients verified:\n%s\ngateway:\n%s", what, r.ok, n,
		     r.first, h_read_file(P.gw_log, NULL));
	fprintf(stderr, "faults: %s: %d x %zu bytes echoed intact in %lld ms\n", what, n, bytes,
		(long long)(r.end_ms - r.start_ms));
}

/* --- descriptors and memory ------------------------------------------------------ */

struct usage {
	int fds;
	long rss_kb;
};

static long
rss_kb(pid_t pid)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/* The fewest descriptors seen over 300 ms (a redial in flight holds
 * one more for a moment), and the resident size. */
static struct usage
usage_take(pid_t pid)
{
	struct usage u = { fd_count(pid), rss_kb(pid) };

	for (int i = 0; i < 15; i++) {
		int n = fd_count(pid);

		if (n >= 0 && n < u.fds)
			u.fds = n;
		h_sleep_ms(20);
	}
	cr_assert_gt(u.fds, 0, "cannot read /proc/%d/fd", (int)pid);
	cr_assert_gt(u.rss_kb, 0, "cannot read /proc/%d/status", (int)pid);
	return u;
}

/* Waits up to 5 s for pid's descriptors to drop back to the baseline
 * and checks its memory did not grow by more than RSS_SLACK_KB. */
static void
usage_back(const char *who, pid_t pid, const struct usage *base)
{
	int64_t end = h_now_ms() + 5000;
	int n = fd_count(pid);
	long rss;

	while (n > base->fds && h_now_ms() < end) {
		h_sleep_ms(20);
		n = fd_count(pid);
	}
	rss = rss_kb(pid);
	fprintf(stderr, "faults: %s: descriptors %d -> %d, RSS %ld -> %ld kB\n", who, base->fds,
		n, base->rss_kb, rss);
	cr_assert_eq(n, base->fds, "%s holds %d descriptors, %d before the clients", who, n,
		     base->fds);
	cr_assert_leq(rss, base->rss_kb + RSS_SLACK_KB, "%s grew from %ld to %ld kB", who,
		      base->rss_kb, rss);
}

/* --- impairments ------------------------------------------------------------------- */

/* Round-trip times from ping C -> R: min and avg in ms. */
static void
ping_rtt(int count, double *min, double *avg, int *lost)
{
	char log[600], *out, *p;
	double mx, md;
	int sent = 0, rcvd = 0;

	snprintf(log, sizeof(log), "%s/ping.log", P.dir);
	unlink(log);
	shell_to(log, 30000, "/usr/bin/ping -n -q -c %d -i 0.05 -W 2 " IP_R, count);
	out = h_read_file(log, NULL);
	cr_assert_not_null(out);
	p = strstr(out, "packets transmitted");
	cr_assert_not_null(p, "ping printed no summary:\n%s", out);
	while (p > out && p[-1] != '\n')
		p--;
	cr_assert_eq(sscanf(p, "%d packets transmitted, %d received", &sent, &rcvd), 2, "%s", out);
	*lost = sent - rcvd;
	*min = *avg = -1;
	p = strstr(out, "rtt min/avg/max/mdev = ");
	if (p != NULL)
		sscanf(p, "rtt min/avg/max/mdev = %lf/%lf/%lf/%lf", min, avg, &mx, &md);
	free(out);
}

/* Starts tpx-delay in M, delay_ms each way: packets from m0 are routed
 * into tda, from m1 into tdb, and tpx-delay moves them across.  Checks
 * with ping that the delay is real. */
static void
delay_on(int delay_ms)
{
	char log[600], dly[16], path[600];
	const char *argv[12];
	double min, avg;
	int lost;

	SH("set -e; %1$s -n %2$s tuntap add dev tda mode tun; "
	   "%1$s -n %2$s tuntap add dev tdb mode tun; "
	   "%1$s -n %2$s link set tda up; %1$s -n %2$s link set tdb up; "
	   "%1$s netns exec %2$s sh -c 'for f in /proc/sys/net/ipv4/conf/*/rp_filter; "
	   "do echo 0 > $f; done'; "
	   "%1$s -n %2$s route add default dev tda table 100; "
	   "%1$s -n %2$s route add default dev tdb table 101; "
	   "%1$s -n %2$s rule add iif m0 table 100 pref 100; "
	   "%1$s -n %2$s rule add iif m1 table 101 pref 101",
	   ip_bin(), NS_M);
	snprintf(log, sizeof(log), "%s/delay.log", P.dir);
	snprintf(dly, sizeof(dly), "%d", delay_ms);
	snprintf(path, sizeof(path), "%s/tpx-delay", h_build_dir());
	argv[0] = ip_bin();
	argv[1] = "netns";
	argv[2] = "exec";
	argv[3] = NS_M;
	argv[4] = path;
	argv[5] = "-a";
	argv[6] = "tda";
	argv[7] = "-b";
	argv[8] = "tdb";
	argv[9] = "-d";
	argv[10] = dly;
	argv[11] = NULL;
	cr_assert_gt(h_spawn(argv, log), 0);
	cr_assert_eq(h_wait_file_contains(log, "each way", 5000), 0, "tpx-delay did not start:\n%s",
		     h_read_file(log, NULL));
	ping_rtt(10, &min, &avg, &lost);
	fprintf(stderr, "faults: delay %d ms each way: ping rtt min %.1f avg %.1f ms, %d lost\n",
		delay_ms, min, avg, lost);
	cr_assert_eq(lost, 0);
	cr_assert_geq(min, 2.0 * delay_ms - 0.5, "ping rtt %.1f ms, below 2 x %d ms", min, delay_ms);
	cr_assert_lt(avg, 2.0 * delay_ms + 30, "ping rtt %.1f ms, far above 2 x %d ms", avg,
		     delay_ms);
}

/* A rate limit on both sides of M. */
static void
rate_limit(const char *rate)
{
	SH("set -e; for d in m0 m1; do tc -n %s qdisc add dev $d root tbf rate %s "
	   "burst 64kb latency 100ms; done", NS_M, rate);
}

/* Drops each forwarded packet with probability pct %, after a rule
 * that counts them all. */
static void
loss_on(int pct)
{
	SH("set -e; %1$s netns exec %2$s iptables -A FORWARD; "
	   "%1$s netns exec %2$s iptables -A FORWARD -m statistic --mode random "
	   "--probability 0.%3$02d -j DROP",
	   ip_bin(), NS_M, pct);
}

/* Packets counted by rule n (from 1) of M's FORWARD chain. */
static long
forward_count(int n)
{
	char log[600], *out, *line;
	long pk = -1;
	int i = 0;

	snprintf(log, sizeof(log), "%s/ipt.log", P.dir);
	unlink(log);
	cr_assert_eq(shell_to(log, 10000, "%s netns exec %s iptables -L FORWARD -v -x -n",
			      ip_bin(), NS_M), 0);
	out = h_read_file(log, NULL);
	cr_assert_not_null(out);
	for (line = strtok(out, "\n"); line != NULL; line = strtok(NULL, "\n")) {
		long v;

		if (sscanf(line, " %ld", &v) == 1 && ++i == n) {
			pk = v;
			break;
		}
	}
	free(out);
	return pk;
}

/* --- delay and loss -------------------------------------------------------------- */

static void
impaired_round(const char *what)
{
	struct usage g, r;

	/* The first round grows the buffers and the allocator's pools; the
	 * baseline is taken after it, and the second round must not add. */
	round_all_ok(8, 256 << 10, 1, 40000, "warm-up");
	g = usage_take(P.gw);
	r = usage_take(P.relay);
	round_all_ok(8, 256 << 10, 2, 40000, what);
	usage_back("gateway", P.gw, &g);
	usage_back("relay", P.relay, &r);
}

static void
delay_case(int ms)
{
	char what[64];
	int64_t t0;

	delay_on(ms);
	t0 = h_now_ms();
	start_all();
	fprintf(stderr, "faults: delay %d ms: link up %lld ms after the relay started\n", ms,
		(long long)(h_now_ms() - t0));
	snprintf(what, sizeof(what), "delay %d ms each way", ms);
	impaired_round(what);
}

Test(faults, delay_20ms_each_way)
{
	delay_case(20);
}

Test(faults, delay_100ms_each_way)
{
	delay_case(100);
}

static void
loss_case(int pct)
{
	char what[64];
	long all, dropped;

	rate_limit("100mbit");
	loss_on(pct);
	start_all();
	snprintf(what, sizeof(what), "%d %% loss", pct);
	impaired_round(what);
	all = forward_count(1);
	dropped = forward_count(2);
	fprintf(stderr, "faults: %d %% loss: %ld of %ld forwarded packets dropped (%.2f %%)\n", pct,
		dropped, all, all > 0 ? 100.0 * (double)dropped / (double)all : 0.0);
	cr_assert_gt(all, 1000, "too few packets crossed M: %ld", all);
	cr_assert_gt(dropped, 0);
	cr_assert_gt(100.0 * (double)dropped / (double)all, pct / 3.0);
	cr_assert_lt(100.0 * (double)dropped / (double)all, pct * 3.0);
}

Test(faults, loss_1pct)
{
	loss_case(1);
}

Test(faults, loss_5pct)
{
	loss_case(5);
}

/* --- a dead path: cut link, silent peer, killed relay ------------------------- */

static const size_t MIXED[3] = { 64 << 10, 256 << 10, 1 << 20 };

/* 12 clients, 4 each of 64 KiB, 256 KiB and 1 MiB: over 20 Mbit/s some
 * finish within the first 700 ms, the rest are still running then. */
static void
mixed_start(struct round rd[3], uint64_t seed)
{
	for (int i = 0; i < 3; i++)
		round_start(&rd[i], 4, MIXED[i], seed + (uint64_t)i, 30000);
}

/* Joins the rounds: none corrupted, hung or refused.  Adds up the
 * completed and the cut streams; *end_ms is when the last one ended. */
static void
mixed_join(struct round rd[3], int *ok, int *cut, int64_t *end_ms)
{
	*ok = *cut = 0;
	*end_ms = 0;
	for (int i = 0; i < 3; i++) {
		round_join(&rd[i]);
		cr_assert_eq(rd[i].hung, 0, "streams left hanging:\n%s", rd[i].first);
		cr_assert_eq(rd[i].refused, 0, "%s", rd[i].first);
		*ok += rd[i].ok;
		*cut += rd[i].cut;
		if (rd[i].end_ms > *end_ms)
			*end_ms = rd[i].end_ms;
	}
}

/*
 * Starts 12 clients, 4 each of 64 KiB, 256 KiB and 1 MiB, over a 20 Mbit/s
 * path (about 2 s in all), applies the fault 700 ms in, and checks:
 * both daemons name the dead link within 2 x keepalive (when detect is
 * set), the streams still open then end (reset or EOF) soon after, every
 * completed one is intact, and after heal the gateway redials, a new
 * round passes whole, and the descriptors and memory come back.
 */
static void
dead_path_case(const char *what, const char *fault, const char *heal, int detect)
{
	struct usage g, r;
	struct round rd[3];
	int64_t t0, t_gw = -1, t_relay = -1, t_up, end_ms;
	int ups, ok, cut;

	KEEPALIVE = KEEPALIVE_SHORT;
	rate_limit("20mbit");
	start_all();
	round_all_ok(12, 256 << 10, 3, 20000, "warm-up");
	g = usage_take(P.gw);
	r = usage_take(P.relay);
	mixed_start(rd, 10);
	h_sleep_ms(700);
	t0 = h_now_ms();
	SH("%s", fault);
	if (detect) {
		while (h_now_ms() < t0 + 5000 && (t_gw < 0 || t_relay < 0)) {
			if (t_gw < 0 && h_file_count(P.gw_log, "(keepalive_timeout)") > 0)
				t_gw = h_now_ms() - t0;
			if (t_relay < 0 && h_file_count(P.relay_log, "(keepalive_timeout)") > 0)
				t_relay = h_now_ms() - t0;
			h_sleep_ms(5);
		}
		fprintf(stderr, "faults: %s: gateway detected it after %lld ms, relay after %lld ms "
			"(keepalive %d ms)\n", what, (long long)t_gw, (long long)t_relay,
			KEEPALIVE_MS);
		cr_assert_geq(t_gw, 0, "the gateway never declared the link dead:\n%s",
			      h_read_file(P.gw_log, NULL));
		cr_assert_geq(t_relay, 0, "the relay never declared the link dead:\n%s",
			      h_read_file(P.relay_log, NULL));
		cr_assert_leq(t_gw, 2 * KEEPALIVE_MS, "gateway: %lld ms", (long long)t_gw);
		cr_assert_leq(t_relay, 2 * KEEPALIVE_MS, "relay: %lld ms", (long long)t_relay);
	}
	mixed_join(rd, &ok, &cut, &end_ms);
	fprintf(stderr, "faults: %s: %d streams completed intact, %d reset toward their clients "
		"(all ended %lld ms after the fault)\n", what, ok, cut, (long long)(end_ms - t0));
	cr_assert_gt(cut, 0, "the fault hit no stream");
	cr_assert_leq(end_ms - t0, 2 * KEEPALIVE_MS + 1000,
		      "the streams were not reset at once: %lld ms", (long long)(end_ms - t0));
	ups = h_file_count(P.gw_log, UP);
	if (heal != NULL) {
		t0 = h_now_ms();
		SH("%s", heal);
	}
	cr_assert_eq(h_wait_count_above(P.gw_log, UP, ups, 20000), 0,
		     "the gateway did not redial:\n%s", h_read_file(P.gw_log, NULL));
	t_up = h_now_ms() - t0;
	fprintf(stderr, "faults: %s: link up again %lld ms after the %s\n", what,
		(long long)t_up, heal != NULL ? "repair" : "fault");
	round_all_ok(8, 64 << 10, 5, 20000, "after the repair");
	usage_back("gateway", P.gw, &g);
	if (heal != NULL)
		usage_back("relay", P.relay, &r);
}

Test(faults, cut_link_is_detected_reset_and_redialled)
{
	char down[256], up[256];

	snprintf(down, sizeof(down), "%s -n %s link set m0 down", ip_bin(), NS_M);
	snprintf(up, sizeof(up), "%s -n %s link set m0 up", ip_bin(), NS_M);
	dead_path_case("cut link", down, up, 1);
}

Test(faults, half_open_link_is_detected_by_keepalive)
{
	char drop[256], undrop[256];

	snprintf(drop, sizeof(drop), "%s netns exec %s iptables -I FORWARD 1 -j DROP", ip_bin(),
		 NS_M);
	snprintf(undrop, sizeof(undrop), "%s netns exec %s iptables -D FORWARD 1", ip_bin(),
		 NS_M);
	dead_path_case("half-open link", drop, undrop, 1);
}

Test(faults, killed_relay_fails_over_to_the_second)
{
	char conf[600], log[600], *out;
	const char *argv[5];
	char gwbin[600], relay2_log[600];
	const char *survivor_log;
	struct usage g;
	struct round rd[3];
	int64_t t0, end_ms;
	int ups, ok, cut, before;
	pid_t victim;

	snprintf(conf, sizeof(conf), "%s/gateway.ini", P.dir);
	write_gateway_conf(conf, IP_R ":7001, " IP_R ":7002");
	snprintf(gwbin, sizeof(gwbin), "%s/tlsplex-gateway", h_build_dir());
	snprintf(log, sizeof(log), "%s/check.log", P.dir);
	argv[0] = gwbin;
	argv[1] = "-n";
	argv[2] = "-c";
	argv[3] = conf;
	argv[4] = NULL;
	if (h_run(argv, log, 10000) != 0) {
		out = h_read_file(log, NULL);
		fprintf(stderr, "faults: SKIP killed_relay_fails_over_to_the_second: this gateway "
			"does not take a relay list ('relay = A, B'): %s", out ? out : "");
		free(out);
		cr_skip_test("the gateway does not take 'relay = A, B' yet");
	}
	rate_limit("20mbit");
	start_echo_r();
	P.relay = start_relay_r(RELAY_PORT, "relay", P.relay_log);
	snprintf(relay2_log, sizeof(relay2_log), "%s/relay2.log", P.dir);
	RELAY2 = start_relay_r(RELAY2_PORT, "relay2", relay2_log);
	P.gw = spawn_in(NS_C, "tlsplex-gateway", "-c", conf, NULL, NULL, P.gw_log);
	cr_assert_gt(P.gw, 0);
	cr_assert_eq(h_wait_file_contains(P.gw_log, UP, 20000), 0, "%s",
		     h_read_file(P.gw_log, NULL));
	round_all_ok(8, 256 << 10, 6, 20000, "warm-up");
	/* The victim is the relay that carries the link (the gateway may
	 * have picked either); the other must take over. */
	cr_assert(h_file_count(P.relay_log, "TLS up") + h_file_count(relay2_log, "TLS up") > 0);
	victim = h_file_count(P.relay_log, "TLS up") > 0 ? P.relay : RELAY2;
	survivor_log = victim == P.relay ? relay2_log : P.relay_log;
	before = h_file_count(survivor_log, "TLS up");
	g = usage_take(P.gw);
	mixed_start(rd, 20);
	h_sleep_ms(700);
	ups = h_file_count(P.gw_log, UP);
	t0 = h_now_ms();
	cr_assert_eq(kill(victim, SIGKILL), 0);
	mixed_join(rd, &ok, &cut, &end_ms);
	fprintf(stderr, "faults: relay killed: %d streams completed intact, %d reset "
		"(all ended %lld ms after the kill)\n", ok, cut, (long long)(end_ms - t0));
	cr_assert_gt(cut, 0, "the kill hit no stream");
	cr_assert_leq(end_ms - t0, 2000, "the streams were not reset at once");
	cr_assert_eq(h_wait_count_above(P.gw_log, UP, ups, 20000), 0,
		     "the gateway did not fail over:\n%s", h_read_file(P.gw_log, NULL));
	cr_assert_eq(h_wait_count_above(survivor_log, "TLS up", before, 5000), 0,
		     "the other relay got no link:\n%s", h_read_file(survivor_log, NULL));
	fprintf(stderr, "faults: relay killed: link to the other relay up %lld ms after the kill\n",
		(long long)(h_now_ms() - t0));
	round_all_ok(8, 64 << 10, 8, 20000, "after the failover");
	usage_back("gateway", P.gw, &g);
}

/* --- a man in the middle on the router ------------------------------------------- */

#define SECRET "client secret that must never reach the backend this way"

/* The MITM in M, with the relay's link port redirected to it. */
static void
mitm_on(mitm_edit_fn fn)
{
	ns_enter(NS_M);
	M = mitm_start_at(htonl(INADDR_ANY), inet_addr(IP_R), RELAY_PORT, fn, NULL, 0);
	ns_enter(NS_C);
	cr_assert_not_null(M);
	SH("%s netns exec %s iptables -t nat -A PREROUTING -i m0 -p tcp -d " IP_R
	   " --dport %d -j REDIRECT --to-ports %d", ip_bin(), NS_M, RELAY_PORT, mitm_port(M));
}

/* The witness backend in R, the MITM in M, both daemons, and one
 * client who must be turned away with nothing carried.  The relay and
 * the gateway must log relay_says (unless NULL) and gw_says, and then
 * both_say (unless NULL) on a later link. */
static void
mitm_case(mitm_edit_fn fn, const char *relay_says, const char *gw_says, const char *both_say)
{
	struct usage g, r;
	int fd;

	ns_enter(NS_R);
	W = witness_start(ECHO_PORT);
	ns_enter(NS_C);
	cr_assert_not_null(W);
	mitm_on(fn);
	P.relay = start_relay_r(RELAY_PORT, "relay", P.relay_log);
	start_gateway_c(IP_R ":7001");
	cr_assert_eq(mitm_wait_conns(M, 1, 10000), 0, "the MITM saw no link");
	if (relay_says != NULL)
		cr_assert_eq(h_wait_file_contains(P.relay_log, relay_says, 10000), 0,
			     "the relay did not say '%s':\n%s", relay_says,
			     h_read_file(P.relay_log, NULL));
	cr_assert_eq(h_wait_file_contains(P.gw_log, gw_says, 10000), 0,
		     "the gateway did not say '%s':\n%s", gw_says, h_read_file(P.gw_log, NULL));
	if (both_say != NULL) {
		cr_assert_eq(mitm_wait_conns(M, 2, 5000), 0, "the gateway did not redial");
		cr_assert_eq(h_wait_file_contains(P.gw_log, both_say, 10000), 0, "%s",
			     h_read_file(P.gw_log, NULL));
		cr_assert_eq(h_wait_file_contains(P.relay_log, both_say, 5000), 0, "%s",
			     h_read_file(P.relay_log, NULL));
	}
	/* The baseline: after the first links were refused, so that what
	 * one attempt costs is in it. */
	g = usage_take(P.gw);
	r = usage_take(P.relay);
	fd = connect_port(SVC_PORT);
	cr_assert_geq(fd, 0);
	(void)send(fd, SECRET, strlen(SECRET), MSG_NOSIGNAL);
	cr_assert(closed_within(fd, 8000), "the client was not turned away");
	close(fd);
	fprintf(stderr, "faults: MITM: %d links through the man in the middle, none up; "
		"gateway: '%s'\n", mitm_conns(M), gw_says);
	cr_assert_eq(h_file_count(P.gw_log, UP), 0, "a link came up through the MITM:\n%s",
		     h_read_file(P.gw_log, NULL));
	cr_assert_eq(h_file_count(P.relay_hooks, "handshake_done"), 0);
	cr_assert_eq(witness_conns(W), 0, "the backend was reached");
	cr_assert_eq(witness_bytes(W), 0);
	usage_back("gateway", P.gw, &g);
	usage_back("relay", P.relay, &r);
}

Test(faults, mitm_on_the_router_stripping_tls_is_refused)
{
	mitm_case(mitm_strip_offer, "refused the link: the accepting side requires TLS",
		  "the relay refused the link", NULL);
}

Test(faults, mitm_on_the_router_removing_ciphers_fails_the_transcript)
{
	/* Link 1: the gateway recomputes the DECISION from the two OFFERs;
	 * link 2 on: both sides finish TLS and then compare transcripts. */
	mitm_case(mitm_one_cipher, NULL, "the decision does not follow from the two offers",
		  "transcript mismatch");
	cr_assert_geq(h_file_count(P.gw_hooks, "\"reason\":\"transcript mismatch"), 1);
	cr_assert_geq(h_file_count(P.relay_hooks, "\"reason\":\"transcript mismatch"), 1);
	cr_assert_eq(h_file_count(P.gw_hooks, "handshake_done"), 0);
}
