/*
 * Prints the generated reference sections of the docs: `tpx-docref
 * config` (docs/CONFIG.md's key table) or `tpx-docref hook`
 * (docs/MONITORING.md's event tables).
 */
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "hook.h"

int
main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "config") == 0) {
		cfg_write_reference(stdout);
		return 0;
	}
	if (argc == 2 && strcmp(argv[1], "hook") == 0) {
		hook_write_reference(stdout);
		return 0;
	}
	fprintf(stderr, "usage: tpx-docref config|hook\n");
	return 64;
}
