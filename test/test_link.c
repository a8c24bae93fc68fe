/*
 * The link state table (io/link.c) against the one in docs/PROTOCOL.md,
 * "Link state machine": every change the document allows, the code
 * allows, and no other.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "link.h"

static int
state_of(const char *name, size_t n)
{
	for (int s = 0; s < LINK_STATES; s++)
		if (strlen(link_state_name(s)) == n &&
		    strncmp(link_state_name(s), name, n) == 0)
			return s;
	return -1;
}

/* Reads the "| from | to |" table of docs/PROTOCOL.md into allowed. */
static void
read_doc_table(int allowed[LINK_STATES][LINK_STATES], int seen[LINK_STATES])
{
	char path[1024], line[1024];
	const char *src = getenv("TLSPLEX_SOURCE_DIR");
	FILE *f;
	int in_table = 0;

	snprintf(path, sizeof(path), "%s/docs/PROTOCOL.md", src ? src : ".");
	f = fopen(path, "r");
	cr_assert_not_null(f, "cannot open %s", path);
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, "| from | to |", 13) == 0) {
			in_table = 1;
			continue;
		}
		if (!in_table || strncmp(line, "|---", 4) == 0)
			continue;
		if (line[0] != '|')
			break;
		char *from = line + 1, *bar = strchr(from, '|');
		cr_assert_not_null(bar, "bad row: %s", line);
		*bar = '\0';
		while (*from == ' ')
			from++;
		size_t n = strcspn(from, " ");
		int fs = state_of(from, n);
		cr_assert_geq(fs, 0, "unknown state '%.*s' in docs/PROTOCOL.md", (int)n, from);
		seen[fs] = 1;
		for (char *to = bar + 1; *to != '\0' && *to != '|';) {
			to += strspn(to, " ,");
			size_t m = strcspn(to, " ,|\n");
			if (m == 0)
				break;
			int ts = state_of(to, m);
			cr_assert_geq(ts, 0, "unknown state '%.*s' in docs/PROTOCOL.md", (int)m, to);
			allowed[fs][ts] = 1;
			to += m;
		}
	}
	fclose(f);
	cr_assert(in_table, "docs/PROTOCOL.md has no '| from | to |' table");
}

Test(link, state_table_matches_the_protocol_document)
{
	int allowed[LINK_STATES][LINK_STATES] = { { 0 } };
	int seen[LINK_STATES] = { 0 };

	read_doc_table(allowed, seen);
	for (int from = 0; from < LINK_STATES; from++) {
		cr_assert(seen[from], "state %s has no row in docs/PROTOCOL.md",
			  link_state_name(from));
		for (int to = 0; to < LINK_STATES; to++)
			cr_expect_eq(link_state_allowed(from, to), allowed[from][to],
				     "%s -> %s: code %s, document %s",
				     link_state_name(from), link_state_name(to),
				     link_state_allowed(from, to) ? "allows" : "refuses",
				     allowed[from][to] ? "allows" : "refuses");
	}
}

Test(link, every_state_is_left_but_dead_and_dead_is_reached)
{
	for (int from = 0; from < LINK_STATES; from++) {
		int out = 0;

		for (int to = 0; to < LINK_STATES; to++)
			out += link_state_allowed(from, to);
		if (from == LS_DEAD)
			cr_assert_eq(out, 0, "DEAD is final");
		else
			cr_assert(link_state_allowed(from, LS_DEAD),
				  "%s cannot fail", link_state_name(from));
		cr_assert_eq(link_state_allowed(from, from), 0,
			     "%s -> itself", link_state_name(from));
	}
	cr_assert_str_eq(link_state_name(LINK_STATES), "?");
}
