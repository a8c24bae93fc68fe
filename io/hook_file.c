/*
 * The JSON Lines file sink.  Lines are queued (bounded) and written by
 * a thread of the sink's own, so that a slow or stuck disk never stalls
 * the event loop: a full queue drops the event and the core counts it.
 */
#include "hook.h"
#include "hook_sink.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* Bytes of lines waiting for the writer thread. */
#define HOOK_FILE_QUEUE_MAX (1024 * 1024)
/* How long closing waits for the queue to reach the disk. */
#define HOOK_FILE_CLOSE_WAIT_MS 2000

struct hook_file {
	pthread_mutex_t mu;
	pthread_cond_t more, empty;
	pthread_t thread;
	char path[1024];
	int fd;
	char *q;               /* ring of HOOK_FILE_QUEUE_MAX bytes */
	size_t head, len;      /* oldest byte, bytes queued */
	int busy;              /* the thread holds bytes it took */
	int stop, orphaned, finished;
	uint64_t lost;         /* lines the thread could not write */
};

static void
hook_file_destroy(struct hook_file *f)
{
	if (f->fd >= 0)
		close(f->fd);
	pthread_cond_destroy(&f->more);
	pthread_cond_destroy(&f->empty);
	pthread_mutex_destroy(&f->mu);
	free(f->q);
	free(f);
}

/* Takes up to cap bytes of whole lines off the ring. */
static size_t
hook_file_take(struct hook_file *f, char *buf, size_t cap)
{
	size_t n = 0, end = 0;

	while (n < f->len && n < cap) {
		buf[n] = f->q[(f->head + n) % HOOK_FILE_QUEUE_MAX];
		if (buf[n++] == '\n')
			end = n;
	}
	f->head = (f->head + end) % HOOK_FILE_QUEUE_MAX;
	f->len -= end;
	return end;
}

static void *
hook_file_run(void *arg)
{
	struct hook_file *f = arg;
	char *buf = malloc(HOOK_LINE_MAX * 8);
	size_t n, i, start;
	ssize_t w;
	int orphaned;

	pthread_mutex_lock(&f->mu);
	for (;;) {
		while (f->len == 0 && !f->stop)
			pthread_cond_wait(&f->more, &f->mu);
		if (f->len == 0 || buf == NULL)
			break;
		n = hook_file_take(f, buf, HOOK_LINE_MAX * 8);
		f->busy = 1;
		pthread_mutex_unlock(&f->mu);
		/* One write per line: a line is never torn by a short write
		 * of another process appending to the same file. */
		for (start = 0, i = 0; i < n; i++) {
			if (buf[i] != '\n')
				continue;
			w = write(f->fd, buf + start, i + 1 - start);
			if (w != (ssize_t)(i + 1 - start)) {
				pthread_mutex_lock(&f->mu);
				f->lost++;
				pthread_mutex_unlock(&f->mu);
			}
			start = i + 1;
		}
		pthread_mutex_lock(&f->mu);
		f->busy = 0;
		if (f->len == 0)
			pthread_cond_broadcast(&f->empty);
	}
	f->finished = 1;
	pthread_cond_broadcast(&f->empty);
	orphaned = f->orphaned;
	pthread_mutex_unlock(&f->mu);
	free(buf);
	if (orphaned)
		hook_file_destroy(f);
	return NULL;
}

static int
hook_file_write(void *state, const struct hook_event *ev, const char *json,
		size_t len)
{
	struct hook_file *f = state;
	size_t i, at;

	(void)ev;
	pthread_mutex_lock(&f->mu);
	if (f->len + len + 1 > HOOK_FILE_QUEUE_MAX) {
		pthread_mutex_unlock(&f->mu);
		return HOOK_SINK_DROPPED;
	}
	at = (f->head + f->len) % HOOK_FILE_QUEUE_MAX;
	for (i = 0; i < len; i++)
		f->q[(at + i) % HOOK_FILE_QUEUE_MAX] = json[i];
	f->q[(at + len) % HOOK_FILE_QUEUE_MAX] = '\n';
	f->len += len + 1;
	pthread_cond_signal(&f->more);
	pthread_mutex_unlock(&f->mu);
	return 0;
}

static uint64_t
hook_file_lost(void *state)
{
	struct hook_file *f = state;
	uint64_t n;

	pthread_mutex_lock(&f->mu);
	n = f->lost;
	pthread_mutex_unlock(&f->mu);
	return n;
}

/* Waits (bounded) for the queue to reach the disk, then stops the
 * thread; a thread stuck in write() is left to finish on its own. */
static void
hook_file_free(void *state)
{
	struct hook_file *f = state;
	struct timespec until;
	int done;

	if (f == NULL)
		return;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += HOOK_FILE_CLOSE_WAIT_MS / 1000;
	pthread_mutex_lock(&f->mu);
	f->stop = 1;
	pthread_cond_signal(&f->more);
	while (!f->finished &&
	       pthread_cond_timedwait(&f->empty, &f->mu, &until) == 0)
		;
	done = f->finished;
	if (!done)
		f->orphaned = 1;
	pthread_mutex_unlock(&f->mu);
	if (done) {
		pthread_join(f->thread, NULL);
		hook_file_destroy(f);
	} else {
		log_err("hook sink file:%s: the disk did not take the last "
			"events within %d ms; leaving them to a background "
			"write", f->path, HOOK_FILE_CLOSE_WAIT_MS);
		pthread_detach(f->thread);
	}
}

static const struct hook_sink_ops hook_file_ops = {
	.kind = "file",
	.write = hook_file_write,
	.lost = hook_file_lost,
	.free = hook_file_free,
};

int
hook_open_file(const char *path)
{
	struct hook_file *f;
	char name[1100];
	int err;

	f = calloc(1, sizeof(*f));
	if (f == NULL)
		return -1;
	f->fd = -1;
	pthread_mutex_init(&f->mu, NULL);
	pthread_cond_init(&f->more, NULL);
	pthread_cond_init(&f->empty, NULL);
	snprintf(f->path, sizeof(f->path), "%s", path);
	f->q = malloc(HOOK_FILE_QUEUE_MAX);
	if (f->q == NULL)
		goto fail;
	f->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (f->fd < 0)
		goto fail;
	if ((err = pthread_create(&f->thread, NULL, hook_file_run, f)) != 0) {
		errno = err;
		goto fail;
	}
	/* The old file gets what was queued for it, then is let go. */
	hook_sink_remove(&hook_file_ops);
	snprintf(name, sizeof(name), "file:%s", path);
	if (hook_sink_add(name, &hook_file_ops, f) < 0) {
		hook_file_free(f);
		errno = ENOSPC;
		return -1;
	}
	return 0;
fail:
	err = errno;
	hook_file_destroy(f);
	errno = err;
	return -1;
}

void
hook_close_file(void)
{
	hook_sink_remove(&hook_file_ops);
}
