/*
 * libFuzzer target: the configuration loader (config/config.h), as
 * cfg_load_string() for the relay and the gateway role.
 *
 * The input is the file text (up to its first NUL).  The configuration
 * "lives" in a scratch directory that holds empty certs/{relay,gw1,ca}.*
 * files, so the example configurations load and relative paths resolve
 * somewhere harmless, and a FIFO certs/pipe.
 *
 * Checks: a load returns within 2 s; a failed load returns NULL with one
 * message that starts with the file name and fits the buffer; a successful load leaves the
 * message empty and returns a configuration of the asked role with
 * terminated strings, valid ranges and unique service and peer names.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "neg.h"

#define CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)
#define TERMINATED(a) (strnlen((a), sizeof(a)) < sizeof(a))
#define ERRLEN 300
/* A load takes microseconds.  One that blocks (on the FIFO) is cut short
 * by libFuzzer's timeout alarm (EINTR) and would pass as an error; this
 * bound makes it fail instead. */
#define LOAD_MAX_NS 2000000000LL

static char dir[64];
static char name[96];
static const char *const files[] = {
	"certs/relay.crt", "certs/relay.key", "certs/gw1.crt",
	"certs/gw1.key", "certs/ca.crt", "certs/pipe",
};

static void
cleanup(void)
{
	char p[160];

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, files[i]);
		unlink(p);
	}
	snprintf(p, sizeof(p), "%s/certs", dir);
	rmdir(p);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char p[160];
	FILE *fp;

	snprintf(dir, sizeof(dir), "/tmp/tlsplex-fuzz-config.XXXXXX");
	if (!mkdtemp(dir))
		abort();
	snprintf(p, sizeof(p), "%s/certs", dir);
	if (mkdir(p, 0700) != 0)
		abort();
	atexit(cleanup);
	/* A FIFO: a load that opens it must not wait for a writer. */
	snprintf(p, sizeof(p), "%s/certs/pipe", dir);
	if (mkfifo(p, 0600) != 0)
		abort();
	for (size_t i = 0; i + 1 < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, files[i]);
		fp = fopen(p, "w");
		if (!fp)
			abort();
		fclose(fp);
		chmod(p, 0600);
	}
	snprintf(name, sizeof(name), "%s/fuzz.ini", dir);
	return 0;
}

static void
check_cfg(const struct cfg *c, int role)
{
	CHECK(c->role == role);
	CHECK(TERMINATED(c->file) && TERMINATED(c->node_name) &&
	      TERMINATED(c->listen) && TERMINATED(c->relay) &&
	      TERMINATED(c->server_name) && TERMINATED(c->cert) &&
	      TERMINATED(c->key) && TERMINATED(c->ca) &&
	      TERMINATED(c->hook_file));
	CHECK(c->node_name[0] != '\0');
	CHECK(c->tls >= TLS_MODE_OFF && c->tls <= TLS_MODE_REQUIRE);
	CHECK(c->min_tls <= c->max_tls);
	CHECK(c->n_ciphers <= CFG_CIPHERS_MAX);
	CHECK(c->max_streams >= 1 && c->window >= 1024);
	CHECK(c->max_frame >= 1024 && c->max_frame <= 0xffffff);
	CHECK(role != CFG_GATEWAY || c->n_services >= 1);
	for (size_t i = 0; i < c->n_services; i++) {
		const struct cfg_service *s = &c->services[i];

		CHECK(TERMINATED(s->name) && s->name[0] != '\0');
		CHECK(TERMINATED(s->listen) && TERMINATED(s->backend));
		CHECK(cfg_service_find(c, s->name) == s);
	}
	for (size_t i = 0; i < c->n_peers; i++) {
		const struct cfg_peer *p = &c->peers[i];

		CHECK(TERMINATED(p->name) && p->name[0] != '\0');
		CHECK(cfg_peer_find(c, p->name) == p);
	}
}

static long long
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void
load(const char *text, int role)
{
	char *err = malloc(ERRLEN); /* on the heap: ASan sees an overrun */
	struct cfg *c;
	long long t0;

	if (!err)
		abort();
	memset(err, 'x', ERRLEN);
	t0 = now_ns();
	c = cfg_load_string(text, name, role, err, ERRLEN);
	CHECK(now_ns() - t0 < LOAD_MAX_NS);
	CHECK(strnlen(err, ERRLEN) < ERRLEN);
	if (c) {
		CHECK(err[0] == '\0');
		check_cfg(c, role);
	} else {
		CHECK(strncmp(err, name, strlen(name)) == 0);
		CHECK(err[strlen(name)] == ':');
	}
	cfg_free(c);
	free(err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);

	if (!text)
		abort();
	memcpy(text, data, size);
	text[size] = '\0';
	load(text, CFG_RELAY);
	load(text, CFG_GATEWAY);
	free(text);
	return 0;
}
