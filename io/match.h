/*
 * Name patterns for certificate identities.  Pure: no I/O, no library
 * calls beyond libc.
 */
#ifndef TLSPLEX_MATCH_H
#define TLSPLEX_MATCH_H

/*
 * 1 when s matches pattern, 0 otherwise.  In the pattern '*' matches any
 * run of characters (none included), '/' and '.' too; every other
 * character matches itself, ignoring ASCII case when nocase is set.
 * There is no escape: a pattern cannot match a literal '*' other than
 * through '*'.
 */
int match_glob(const char *pattern, const char *s, int nocase);

#endif
