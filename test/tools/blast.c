/*
 * tpx-blast: concurrent echo clients that verify every byte.
 *
 *   tpx-blast -c HOST:PORT [-n CLIENTS] [-b BYTES] [-s SEED] [-t TIMEOUT_S]
 *
 * Client i sends BYTES of the payload stream (seed, i) from harness.h,
 * half-closes, reads until EOF and checks that the echo is identical and
 * complete.  One line per failed client, then a summary line; exit 0 only
 * if every client was verified.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../echo_clients.h"
#include "net.h"

#define MAX_CLIENTS 10000

static void usage(void)
{
	fprintf(stderr, "usage: tpx-blast -c HOST:PORT [-n CLIENTS] [-b BYTES] [-s SEED] [-t TIMEOUT_S]\n");
	exit(2);
}

static void print_failure(void *arg, int client, const char *msg)
{
	(void)arg;
	printf("client %d: %s\n", client, msg);
}

int main(int argc, char **argv)
{
	const char *target = NULL;
	long nclients = 1;
	unsigned long long bytes = 1 << 20;
	uint64_t seed = 1;
	double timeout = 60, elapsed;
	struct sockaddr_storage ss;
	char errbuf[300];
	socklen_t sl = 0;
	struct ec_result res;
	int opt, rc;
	char *end;

	while ((opt = getopt(argc, argv, "c:n:b:s:t:h")) != -1) {
		errno = 0;
		switch (opt) {
		case 'c':
			target = optarg;
			break;
		case 'n':
			nclients = strtol(optarg, &end, 10);
			if (*end || errno || nclients < 1 || nclients > MAX_CLIENTS)
				usage();
			break;
		case 'b':
			bytes = strtoull(optarg, &end, 10);
			if (*end || errno || optarg[0] == '-')
				usage();
			break;
		case 's':
			seed = strtoull(optarg, &end, 0);
			if (*end || errno)
				usage();
			break;
		case 't':
			timeout = strtod(optarg, &end);
			if (*end || timeout <= 0)
				usage();
			break;
		default:
			usage();
		}
	}
	if (target == NULL || optind != argc)
		usage();
	if (net_resolve(target, 0, &ss, &sl, errbuf, sizeof(errbuf)) < 0) {
		fprintf(stderr, "tpx-blast: %s\n", errbuf);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (timeout > 2000000)
		timeout = 2000000;
	rc = ec_run((struct sockaddr *)&ss, sl, (int)nclients, (size_t)bytes, seed,
		    (int)(timeout * 1000), print_failure, NULL, &res);
	elapsed = (double)res.elapsed_ms / 1000;
	if (elapsed <= 0)
		elapsed = 1e-3;
	printf("tpx-blast: %d/%ld clients ok, %llu bytes each way in %.3f s (%.1f MB/s)\n", res.ok,
	       nclients, bytes, elapsed, (double)bytes * (double)res.ok / 1e6 / elapsed);
	fflush(stdout);
	return rc == 0 ? 0 : 1;
}
