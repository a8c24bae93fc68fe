/*
 * The external command sink.  For each event it takes, the command is
 * started with posix_spawn() (no shell, no PATH search, descriptors above
 * 2 closed, signals at their defaults, a process group of its own), the
 * event's JSON on a pipe to its standard input and its key fields in
 * TLSPLEX_* environment variables.  Nothing waits for it: the pipe is
 * written from the event loop, a timer bounds it (SIGTERM to its group,
 * SIGKILL 1 s later) and SIGCHLD, watched by the loop, reaps it.
 *
 * With veto, handshake_pending waits for the command (gate op): exit 0
 * lets the handshake go ahead, anything else vetoes it; a late command
 * proceeds or vetoes as configured.  Without veto, a command that fails
 * or is late is logged (once per streak) and counted as lost.
 *
 * The children are the file's, not the sink state's: a reload replaces
 * the state while the commands it started run on to their end.
 */
#define _GNU_SOURCE
#include "hook.h"
#include "hook_sink.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"

/* After SIGTERM, how long a command has before SIGKILL. */
#define CMD_KILL_GRACE_MS 1000
/* At stop, how long running commands may take to finish by themselves. */
#define CMD_STOP_WAIT_MS 1000
#define CMD_ENV_MAX 16
#define CMD_ENV_LEN 320

struct hook_cmd;

struct cmd_child {
	struct cmd_child *next;
	pid_t pid;
	int fd;                 /* our end of its stdin, -1 once closed */
	char *buf;              /* the event line */
	size_t len, off;
	struct event *wr_ev, *timer_ev;
	struct hook_gate *gate; /* waiting for the verdict, or NULL */
	struct hook_cmd *owner; /* the sink that started it; NULL after a
				   reload replaced it */
	int veto, veto_on_timeout;
	uint32_t timeout_ms;
	int timed_out, killed;
	char what[96];          /* "handshake_pending of link 7" */
	char path[1024];        /* for log lines */
};

struct hook_cmd {
	char path[1024];
	uint32_t mask, timeout_ms, max;
	int veto, veto_on_timeout;
	struct cmd_child *pending; /* started by the last write(), for gate() */
	uint64_t lost;          /* commands that failed or were late */
	int failing;            /* in a failure streak (logged once) */
	int vetoing;            /* vetoing unasked handshakes (logged once) */
	uint64_t streak;
};

static struct event_base *cmd_base;
static struct event *cmd_sigchld_ev;
static struct cmd_child *cmd_children;
static int cmd_nrunning;

int
hook_cmd_running(void)
{
	return cmd_nrunning;
}

static void
cmd_close_stdin(struct cmd_child *c)
{
	if (c->wr_ev != NULL) {
		event_free(c->wr_ev);
		c->wr_ev = NULL;
	}
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
}

static void
cmd_child_free(struct cmd_child *c)
{
	struct cmd_child **pp;

	for (pp = &cmd_children; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			cmd_nrunning--;
			break;
		}
	}
	cmd_close_stdin(c);
	if (c->timer_ev != NULL)
		event_free(c->timer_ev);
	free(c->buf);
	free(c);
}

/* A command's notification failed (veto = no) or could not decide: count
 * it against the sink that started it, and log the first of a streak. */
static void
cmd_failed(struct cmd_child *c, const char *why)
{
	struct hook_cmd *s = c->owner;

	if (s != NULL) {
		s->lost++;
		s->streak++;
		if (s->failing)
			return;
		s->failing = 1;
	}
	log_err("hook_command %s: %s for %s; further failures are counted, "
		"not logged, until it succeeds again", c->path, why, c->what);
}

static void
cmd_succeeded(struct cmd_child *c)
{
	struct hook_cmd *s = c->owner;

	if (s == NULL || !s->failing)
		return;
	log_info("hook_command %s: succeeding again after %" PRIu64
		 " failures", c->path, s->streak);
	s->failing = 0;
	s->streak = 0;
}

static void
cmd_answer(struct cmd_child *c, int verdict, const char *why)
{
	struct hook_gate *g = c->gate;

	if (g == NULL)
		return;
	c->gate = NULL;
	hook_gate_resolve(g, verdict, why);
}

/* The child has exited with status (waitpid's). */
static void
cmd_exited(struct cmd_child *c, int status)
{
	char why[160];

	if (WIFEXITED(status))
		snprintf(why, sizeof(why), "exited with status %d",
			 WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(why, sizeof(why), "was killed by signal %d",
			 WTERMSIG(status));
	else
		snprintf(why, sizeof(why), "ended (wait status %d)", status);
	if (!c->timed_out) {
		int ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;

		if (c->gate != NULL) {
			char msg[sizeof(why) + 1100];

			snprintf(msg, sizeof(msg), "hook_command %s %s", c->path,
				 why);
			/* A verdict, not a failure; killed by a signal is
			 * both. */
			if (WIFSIGNALED(status))
				cmd_failed(c, why);
			else
				cmd_succeeded(c);
			cmd_answer(c, ok ? 0 : -1, msg);
		} else if (ok) {
			cmd_succeeded(c);
		} else {
			cmd_failed(c, why);
		}
	}
	cmd_child_free(c);
}

static void
cmd_reap(void)
{
	struct cmd_child *c, *next;
	int status;
	pid_t r;

	for (c = cmd_children; c != NULL; c = next) {
		next = c->next;
		r = waitpid(c->pid, &status, WNOHANG);
		if (r == c->pid)
			cmd_exited(c, status);
		else if (r < 0 && errno == ECHILD)
			/* Reaped elsewhere: its status is unknown, which is
			 * no "yes". */
			cmd_exited(c, W_EXITCODE(255, 0));
	}
}

static void
cmd_sigchld_cb(evutil_socket_t sig, short what, void *arg)
{
	cmd_reap();
}

static void
cmd_ms_to_tv(uint32_t ms, struct timeval *tv)
{
	tv->tv_sec = ms / 1000;
	tv->tv_usec = (ms % 1000) * 1000;
}

static void
cmd_signal(struct cmd_child *c, int sig)
{
	/* The group: a script's own children (sleep, curl) go too. */
	if (kill(-c->pid, sig) < 0)
		kill(c->pid, sig);
}

/* The deadline: SIGTERM and the late verdict; then SIGKILL; then, in
 * case SIGCHLD went astray, polling. */
static void
cmd_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct cmd_child *c = arg;
	struct timeval tv;
	char why[160];

	if (!c->timed_out) {
		c->timed_out = 1;
		cmd_close_stdin(c);
		cmd_signal(c, SIGTERM);
		snprintf(why, sizeof(why), "did not finish within %" PRIu32
			 " ms (SIGTERM sent)", c->timeout_ms);
		cmd_failed(c, why);
		if (c->gate != NULL) {
			char msg[sizeof(why) + 1100];

			snprintf(msg, sizeof(msg), "hook_command %s %s", c->path,
				 why);
			cmd_answer(c, c->veto_on_timeout ? -1 : 0, msg);
		}
		cmd_ms_to_tv(CMD_KILL_GRACE_MS, &tv);
	} else if (!c->killed) {
		c->killed = 1;
		cmd_signal(c, SIGKILL);
		cmd_ms_to_tv(100, &tv);
	} else {
		cmd_ms_to_tv(100, &tv);
	}
	evtimer_add(c->timer_ev, &tv);
	cmd_reap();
}

static void
cmd_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct cmd_child *c = arg;
	ssize_t n;

	while (c->off < c->len) {
		n = write(c->fd, c->buf + c->off, c->len - c->off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (c->wr_ev == NULL) {
				c->wr_ev = event_new(cmd_base, c->fd,
						     EV_WRITE | EV_PERSIST,
						     cmd_write_cb, c);
				if (c->wr_ev == NULL ||
				    event_add(c->wr_ev, NULL) < 0)
					break;
			}
			return;
		}
		if (n <= 0)
			break;	/* EPIPE: it did not want its input */
		c->off += (size_t)n;
	}
	cmd_close_stdin(c);
}

static void
cmd_env(char env[CMD_ENV_MAX][CMD_ENV_LEN], char *envp[CMD_ENV_MAX + 1],
	const struct hook_event *ev)
{
	int n = 0;

#define ENV_S(k, v)                                                        \
	do {                                                               \
		if ((v) != NULL && (v)[0] != '\0' && n < CMD_ENV_MAX)      \
			snprintf(env[n++], CMD_ENV_LEN, "%s=%s", k, v);    \
	} while (0)
#define ENV_U(k, v)                                                        \
	do {                                                               \
		if (n < CMD_ENV_MAX)                                       \
			snprintf(env[n++], CMD_ENV_LEN, "%s=%" PRIu64, k,  \
				 (uint64_t)(v));                           \
	} while (0)
	ENV_S("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
	      "/sbin:/bin");
	ENV_S("TLSPLEX_EVENT", hook_type_str(ev->type));
	ENV_U("TLSPLEX_SEQ", ev->seq);
	if (ev->link_id != 0)
		ENV_U("TLSPLEX_LINK", ev->link_id);
	ENV_S("TLSPLEX_ROLE", hook_role());
	ENV_S("TLSPLEX_NODE", hook_node());
	ENV_S("TLSPLEX_INSTANCE", hook_instance());
	ENV_S("TLSPLEX_LOCAL", ev->local);
	ENV_S("TLSPLEX_PEER", ev->peer);
	ENV_S("TLSPLEX_PEER_NODE", ev->peer_node);
	ENV_S("TLSPLEX_TRANSCRIPT", ev->transcript);
	if (ev->type == HOOK_HANDSHAKE_PENDING ||
	    ev->type == HOOK_PLAINTEXT_AGREED) {
		ENV_U("TLSPLEX_TLS_OFFSET_OUT", ev->tls_offset_out);
		ENV_U("TLSPLEX_TLS_OFFSET_IN", ev->tls_offset_in);
	}
	ENV_S("TLSPLEX_OUTCOME", ev->outcome);
#undef ENV_S
#undef ENV_U
	for (int i = 0; i < n; i++)
		envp[i] = env[i];
	envp[n] = NULL;
}

/* Starts the command for ev; NULL (errno set) when it cannot. */
static struct cmd_child *
cmd_spawn(struct hook_cmd *s, const struct hook_event *ev, const char *json,
	  size_t len)
{
	static char env[CMD_ENV_MAX][CMD_ENV_LEN];
	char *envp[CMD_ENV_MAX + 1];
	char *argv[2];
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, all;
	struct cmd_child *c;
	struct timeval tv;
	int p[2], err;

	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->fd = -1;
	c->buf = malloc(len + 1);
	c->timer_ev = evtimer_new(cmd_base, cmd_timer_cb, c);
	if (c->buf == NULL || c->timer_ev == NULL) {
		err = ENOMEM;
		goto fail_c;
	}
	memcpy(c->buf, json, len);
	c->buf[len] = '\n';
	c->len = len + 1;
	c->veto = s->veto;
	c->veto_on_timeout = s->veto_on_timeout;
	c->timeout_ms = s->timeout_ms;
	c->owner = s;
	snprintf(c->path, sizeof(c->path), "%s", s->path);
	if (ev->link_id != 0)
		snprintf(c->what, sizeof(c->what), "%s of link %" PRIu64,
			 hook_type_str(ev->type), ev->link_id);
	else
		snprintf(c->what, sizeof(c->what), "%s",
			 hook_type_str(ev->type));
	if (pipe2(p, O_CLOEXEC) < 0) {
		err = errno;
		goto fail_c;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&attr);
	posix_spawn_file_actions_adddup2(&fa, p[0], 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	/* stderr stays: what the command says goes to the daemon's log. */
	/* Without closefrom (before glibc 2.34) only O_CLOEXEC keeps the
	 * daemon's descriptors from the command. */
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 34)
	posix_spawn_file_actions_addclosefrom_np(&fa, 3);
#endif
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &all);
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK |
				 POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
	cmd_env(env, envp, ev);
	argv[0] = s->path;
	argv[1] = NULL;
	err = posix_spawn(&c->pid, s->path, &fa, &attr, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(p[0]);
	if (err != 0) {
		close(p[1]);
		goto fail_c;
	}
	c->fd = p[1];
	fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
	c->next = cmd_children;
	cmd_children = c;
	cmd_nrunning++;
	cmd_ms_to_tv(c->timeout_ms, &tv);
	evtimer_add(c->timer_ev, &tv);
	cmd_write_cb(c->fd, EV_WRITE, c);
	return c;
fail_c:
	if (c->timer_ev != NULL)
		event_free(c->timer_ev);
	free(c->buf);
	free(c);
	errno = err;
	return NULL;
}

static int
hook_cmd_write(void *state, const struct hook_event *ev, const char *json,
	       size_t len)
{
	struct hook_cmd *s = state;
	struct cmd_child *c;

	s->pending = NULL;
	if (!(s->mask & (1u << ev->type)))
		return HOOK_SINK_SKIPPED;
	if (cmd_base == NULL)
		return -1;
	if ((uint32_t)cmd_nrunning >= s->max)
		return HOOK_SINK_DROPPED;
	c = cmd_spawn(s, ev, json, len);
	if (c == NULL) {
		if (!s->failing)
			log_err("hook_command %s: cannot start it: %s; events "
				"for it are lost until it starts again",
				s->path, strerror(errno));
		s->failing = 1;
		return -1;
	}
	if (ev->type == HOOK_HANDSHAKE_PENDING && s->veto)
		s->pending = c;
	return 0;
}

static int
hook_cmd_gate(void *state, const struct hook_event *ev, const char *json,
	      size_t len, struct hook_gate *g)
{
	struct hook_cmd *s = state;
	struct cmd_child *c = s->pending;

	s->pending = NULL;
	if (ev->type != HOOK_HANDSHAKE_PENDING || !s->veto ||
	    !(s->mask & (1u << ev->type)))
		return 0;
	if (c == NULL || c->timed_out) {
		/* It could not be asked: no verdict is a veto. */
		if (!s->vetoing)
			log_err("hook_command %s: not run for link %" PRIu64
				" (%d of hook_command_max %" PRIu32 " running, "
				"or it cannot start): its handshake is vetoed; "
				"further such vetoes are not logged until a "
				"command runs again", s->path, ev->link_id,
				cmd_nrunning, s->max);
		s->vetoing = 1;
		return -1;
	}
	s->vetoing = 0;
	c->gate = g;
	return 1;
}

static uint64_t
hook_cmd_lost(void *state)
{
	return ((struct hook_cmd *)state)->lost;
}

static void
hook_cmd_free(void *state)
{
	struct hook_cmd *s = state;
	struct cmd_child *c;

	if (s == NULL)
		return;
	for (c = cmd_children; c != NULL; c = c->next)
		if (c->owner == s)
			c->owner = NULL;
	free(s);
}

static const struct hook_sink_ops hook_cmd_ops = {
	.kind = "command",
	.write = hook_cmd_write,
	.gate = hook_cmd_gate,
	.lost = hook_cmd_lost,
	.free = hook_cmd_free,
};

int
hook_open_command(const struct hook_cmd_conf *cc, char *err, size_t errlen)
{
	struct hook_cmd *s, *old;
	char name[sizeof(s->path) + 8];

	if (cc->path == NULL || cc->path[0] != '/' ||
	    strlen(cc->path) >= sizeof(s->path)) {
		snprintf(err, errlen, "hook_command must be an absolute path");
		return -1;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (hook_event_mask(cc->events, &s->mask, err, errlen) < 0) {
		free(s);
		return -1;
	}
	snprintf(s->path, sizeof(s->path), "%s", cc->path);
	s->timeout_ms = cc->timeout_ms ? cc->timeout_ms : 2000;
	s->max = cc->max ? cc->max : 1;
	s->veto = cc->veto;
	s->veto_on_timeout = cc->veto_on_timeout;
	/* Unchanged: it stays, with its counters and failure streak. */
	old = hook_sink_state(&hook_cmd_ops);
	if (old != NULL && strcmp(old->path, s->path) == 0 &&
	    old->mask == s->mask && old->timeout_ms == s->timeout_ms &&
	    old->max == s->max && old->veto == s->veto &&
	    old->veto_on_timeout == s->veto_on_timeout) {
		free(s);
		return 0;
	}
	hook_sink_remove(&hook_cmd_ops);
	snprintf(name, sizeof(name), "command:%s", cc->path);
	if (hook_sink_add(name, &hook_cmd_ops, s) < 0) {
		snprintf(err, errlen, "too many hook sinks (at most %d)",
			 HOOK_MAX_SINKS);
		free(s);
		return -1;
	}
	return 0;
}

void
hook_close_command(void)
{
	hook_sink_remove(&hook_cmd_ops);
}

/* The loop is going: commands still running get a moment, then SIGKILL;
 * every one is reaped here, and its verdict (if one is awaited) is a
 * veto. */
static void
cmd_stop_all(void)
{
	struct timespec pause = { 0, 10 * 1000000 };
	struct cmd_child *c;
	int waited = 0, status;

	for (c = cmd_children; c != NULL; c = c->next)
		cmd_close_stdin(c);
	while (cmd_children != NULL && waited < CMD_STOP_WAIT_MS) {
		cmd_reap();
		if (cmd_children == NULL)
			break;
		nanosleep(&pause, NULL);
		waited += 10;
	}
	while ((c = cmd_children) != NULL) {
		cmd_signal(c, SIGKILL);
		while (waitpid(c->pid, &status, 0) < 0 && errno == EINTR)
			;
		cmd_answer(c, -1, "the daemon is stopping");
		cmd_child_free(c);
	}
}

void
hook_cmd_set_base(struct event_base *base)
{
	if (base == cmd_base)
		return;
	if (cmd_base != NULL) {
		cmd_stop_all();
		if (cmd_sigchld_ev != NULL)
			event_free(cmd_sigchld_ev);
		cmd_sigchld_ev = NULL;
		cmd_base = NULL;
	}
	if (base == NULL)
		return;
	cmd_sigchld_ev = evsignal_new(base, SIGCHLD, cmd_sigchld_cb, NULL);
	if (cmd_sigchld_ev == NULL || evsignal_add(cmd_sigchld_ev, NULL) < 0) {
		/* Reaping still happens: each command's timer polls once
		 * its deadline has passed. */
		log_err("hook_command: cannot watch SIGCHLD; commands are "
			"reaped only at their deadline");
		if (cmd_sigchld_ev != NULL)
			event_free(cmd_sigchld_ev);
		cmd_sigchld_ev = NULL;
	}
	cmd_base = base;
}
