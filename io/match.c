#include "match.h"

#include <ctype.h>
#include <stddef.h>

static int
match_char(char p, char c, int nocase)
{
	if (nocase)
		return tolower((unsigned char)p) == tolower((unsigned char)c);
	return p == c;
}

/* Iterative, with one backtrack point: the last '*' seen.  Linear in
 * practice and at worst O(len(pattern) * len(s)), never exponential. */
int
match_glob(const char *pattern, const char *s, int nocase)
{
	const char *star = NULL, *resume = NULL;

	while (*s != '\0') {
		if (*pattern == '*') {
			star = ++pattern;
			resume = s;
		} else if (*pattern != '\0' && match_char(*pattern, *s, nocase)) {
			pattern++;
			s++;
		} else if (star != NULL) {
			pattern = star;
			s = ++resume;
		} else {
			return 0;
		}
	}
	while (*pattern == '*')
		pattern++;
	return *pattern == '\0';
}
