/*
 * tpx-mkman: writes the manual page tlsplex.ini(5) from the key table, at
 * build time, so that the page lists exactly the keys the daemons read.
 *
 *   tpx-mkman VERSION DATE OUTPUT
 */
#include "config.h"

#include <stdio.h>

int
main(int argc, char **argv)
{
	FILE *out;

	if (argc != 4) {
		fprintf(stderr, "usage: %s VERSION DATE OUTPUT\n", argv[0]);
		return 2;
	}
	out = fopen(argv[3], "w");
	if (out == NULL) {
		perror(argv[3]);
		return 1;
	}
	cfg_write_manpage(out, argv[1], argv[2]);
	if (ferror(out) | fclose(out)) {
		fprintf(stderr, "%s: cannot write %s\n", argv[0], argv[3]);
		remove(argv[3]);
		return 1;
	}
	return 0;
}
